// The local stack's GitHub: the slice of GitHub's REST API that ops-runner uses to build and
// deploy a project (Actions dispatch and runs, GHCR container package versions, Deployments),
// plus the deployed apps' health endpoints. GitHub is out of reach here, so this speaks the
// same shapes, drives runs and deployments forward with time (evaluated lazily on each
// request, so nothing ticks in the background), and fails, hangs or dawdles when a test asks.
//
//   POST /repos/<o>/<r>/actions/workflows/<wf>/dispatches    a run: queued -> in_progress -> completed
//   GET  /repos/<o>/<r>/actions/runs[/<id>[/artifacts]]      and .../actions/workflows/<wf>/runs
//   POST /repos/<o>/<r>/actions/runs/<id>/cancel
//   GET  /orgs|users/<owner>/packages/container/<name>/versions   published by successful runs
//   POST /repos/<o>/<r>/deployments, GET .../deployments[/<id>[/statuses]]
//   GET  /apps/<o>/<r>/<env>/health      (no auth) the app as the last successful deployment left it
//   POST /_control/rules {"match","behaviour","times"}, DELETE /_control/rules[/<id>]
//   GET  /_calls?sha=&repo=&kind=&since=, GET /_state, GET /      (no auth) for people and tests
//
// Every call is appended to <dir>/provider-standin.jsonl and printed as one line. The token is
// compared, never printed or recorded.
//
//   node provider-standin.mjs <port> <dir> [token]      (port 0: any free port; prints "listening on <port>")
//   The token may come from PROVIDER_STANDIN_TOKEN instead, which keeps it out of `ps`.
import { appendFileSync, mkdirSync } from "node:fs";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import path from "node:path";

const [portArg, dir, tokenArg] = process.argv.slice(2);
const token = tokenArg ?? process.env.PROVIDER_STANDIN_TOKEN;
if (portArg === undefined || !dir || !token) {
  console.error("usage: provider-standin.mjs <port> <dir> [token] (or PROVIDER_STANDIN_TOKEN)");
  process.exit(2);
}
mkdirSync(dir, { recursive: true });
const logFile = path.join(dir, "provider-standin.jsonl");
const DOCS = "https://docs.github.com/rest";
const CREATOR = { login: "switchyard-standin", id: 1, node_id: "U_standin", type: "User", site_admin: false };
let base = ""; // http://127.0.0.1:<port>, known once listening

// ---- state (memory only: a restart is a fresh GitHub) ----
const runs = [];
const deployments = [];
const packages = new Map(); // "owner/name" (lower case) -> versions, oldest first
const calls = [];
let rules = []; // newest first
let timeline = []; // [{at, seq, key, fn}]: transitions due at a time, applied on the next request
const counters = { run: 1000000000, deployment: 2000000000, status: 3000000000, version: 4000000000, artifact: 5000000000, rule: 0, seq: 0 };
const runNumbers = new Map();
const next = (k) => ++counters[k];

const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z"); // GitHub answers in whole seconds
const sha256 = (s) => createHash("sha256").update(s).digest("hex");
const hex40 = () => randomBytes(20).toString("hex");
const nodeId = (prefix, id) => `${prefix}_${Buffer.from(String(id)).toString("base64url")}`;
const numericId = (s) => parseInt(sha256(s).slice(0, 8), 16); // stable ids for things we only know by name
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const repoKey = (owner, repo) => `${owner}/${repo}`.toLowerCase();
const error = (status, message, extra = {}) => ({ status, body: { message, documentation_url: DOCS, status: String(status), ...extra } });
const NOT_FOUND = () => error(404, "Not Found");

function schedule(key, at, fn) {
  timeline.push({ at, seq: next("seq"), key, fn });
}
// Apply every transition that is due, in time order, so ids and timestamps read as if it had all
// happened live.
function advance(now = Date.now()) {
  const due = timeline.filter((t) => t.at <= now).sort((a, b) => a.at - b.at || a.seq - b.seq);
  if (!due.length) return;
  timeline = timeline.filter((t) => t.at > now);
  for (const t of due) t.fn(t.at);
}

// ---- behaviour rules ----
const ENUMS = {
  dispatch: ["ok", "fail", "unauthorized", "error", "error_after_create", "hang_after_create"],
  build: ["success", "failure", "cancelled", "hang"],
  deploy_request: ["ok", "error", "hang_after_create"],
  deploy: ["success", "failure", "error", "hang"],
  health: ["ok", "fail", "wrong_sha", "slow"],
};
const DURATIONS = ["queue_ms", "build_ms", "deploy_ms", "health_delay_ms", "api_delay_ms"];
// Which behaviour keys each kind of request consults; a rule without any of them is not used up by it.
const KEYS = {
  dispatch: ["dispatch", "queue_ms", "build_ms", "build", "package", "publish_image", "api_delay_ms"],
  deployment_create: ["deploy_request", "deploy_ms", "deploy", "api_delay_ms"],
  health: ["health", "health_delay_ms"],
};

function validateRule(body) {
  const { match = {}, behaviour, times } = body ?? {};
  if (typeof match !== "object" || Array.isArray(match) || match === null) return "match must be an object";
  for (const [k, v] of Object.entries(match)) {
    if (!["sha", "repo", "environment"].includes(k) || typeof v !== "string") return `match.${k}: expected sha, repo or environment, a string`;
  }
  if (typeof behaviour !== "object" || Array.isArray(behaviour) || behaviour === null) return "behaviour must be an object";
  for (const [k, v] of Object.entries(behaviour)) {
    if (ENUMS[k]) { if (!ENUMS[k].includes(v)) return `behaviour.${k}: one of ${ENUMS[k].join(", ")}`; }
    else if (DURATIONS.includes(k)) { if (!Number.isFinite(v) || v < 0) return `behaviour.${k}: milliseconds, >= 0`; }
    else if (k === "package") { if (typeof v !== "string" || !/^[^/]+\/.+$/.test(v)) return "behaviour.package: owner/name"; }
    else if (k === "publish_image") { if (typeof v !== "boolean") return "behaviour.publish_image: a boolean"; }
    else return `behaviour.${k}: unknown key`;
  }
  if (times !== undefined && !(Number.isInteger(times) && times > 0)) return "times must be a positive integer";
  return null;
}

const matches = (match, ctx) => Object.entries(match).every(([k, v]) => {
  const want = v.toLowerCase();
  if (k === "sha") return [ctx.sha, ctx.ref].some((x) => typeof x === "string" && x.toLowerCase() === want);
  if (k === "repo") return ctx.repo?.toLowerCase() === want;
  return ctx.environment === v;
});

// The behaviour of the newest matching rule that says anything about this kind of request; a
// rule with `times` is used up after that many requests.
function pick(ctx, keys) {
  const rule = rules.find((r) => keys.some((k) => k in r.behaviour) && matches(r.match, ctx));
  if (!rule) return {};
  rule.applied += 1;
  if (rule.times !== undefined && rule.applied >= rule.times) rules = rules.filter((r) => r !== rule);
  return rule.behaviour;
}

// ---- workflow runs ----
const apiRepo = (o, r) => `${base}/repos/${o}/${r}`;
const repoLite = (o, r) => ({ id: numericId(repoKey(o, r)), node_id: nodeId("R", repoKey(o, r)), name: r, full_name: `${o}/${r}`, owner: { login: o }, private: true, url: apiRepo(o, r), html_url: `${base}/${o}/${r}` });

function runJson(run) {
  const api = `${apiRepo(run.owner, run.repo)}/actions/runs/${run.id}`;
  return {
    id: run.id, name: run.workflow, node_id: nodeId("WFR", run.id), head_branch: run.head_branch, head_sha: run.head_sha,
    path: `.github/workflows/${run.workflow}`, display_title: run.display_title, run_number: run.number, event: "workflow_dispatch",
    status: run.status, conclusion: run.conclusion, workflow_id: run.workflow_id,
    check_suite_id: run.id + 7000000000, check_suite_node_id: nodeId("CS", run.id), check_suite_url: `${apiRepo(run.owner, run.repo)}/check-suites/${run.id + 7000000000}`,
    url: api, html_url: `${base}/${run.owner}/${run.repo}/actions/runs/${run.id}`, pull_requests: [],
    created_at: iso(run.created), updated_at: iso(run.updated), run_started_at: iso(run.created), run_attempt: 1,
    previous_attempt_url: null, referenced_workflows: [], actor: CREATOR, triggering_actor: CREATOR,
    jobs_url: `${api}/jobs`, logs_url: `${api}/logs`, artifacts_url: `${api}/artifacts`, cancel_url: `${api}/cancel`, rerun_url: `${api}/rerun`,
    workflow_url: `${apiRepo(run.owner, run.repo)}/actions/workflows/${run.workflow_id}`,
    head_commit: { id: run.head_sha, tree_id: sha256(`tree:${run.head_sha}`).slice(0, 40), message: `switchyard ${run.head_sha.slice(0, 12)}`, timestamp: iso(run.created), author: { name: "switchyard", email: "switchyard@localhost" }, committer: { name: "switchyard", email: "switchyard@localhost" } },
    repository: repoLite(run.owner, run.repo), head_repository: repoLite(run.owner, run.repo),
  };
}

function artifactJson(run, a) {
  const api = `${apiRepo(run.owner, run.repo)}/actions/artifacts/${a.id}`;
  return {
    id: a.id, node_id: nodeId("A", a.id), name: a.name, size_in_bytes: a.size, url: api, archive_download_url: `${api}/zip`,
    expired: false, created_at: iso(a.created), expires_at: iso(a.created + 90 * 86400_000), updated_at: iso(a.created),
    digest: `sha256:${sha256(`${a.name}:${run.id}`)}`,
    workflow_run: { id: run.id, repository_id: numericId(repoKey(run.owner, run.repo)), head_repository_id: numericId(repoKey(run.owner, run.repo)), head_branch: run.head_branch, head_sha: run.head_sha },
  };
}

function finishRun(run, conclusion, at) {
  timeline = timeline.filter((t) => t.key !== run);
  Object.assign(run, { status: "completed", conclusion, updated: at });
  // A failed build still uploads its log; a cancelled one uploads nothing.
  const names = { success: [["build-log", 48213], ["sbom", 18734]], failure: [["build-log", 9120]] }[conclusion] ?? [];
  run.artifacts = names.map(([name, size]) => ({ id: next("artifact"), name, size, created: at }));
  if (conclusion !== "success" || !run.publish) return;
  const key = run.publish.toLowerCase();
  if (!packages.has(key)) packages.set(key, []);
  packages.get(key).push({ id: next("version"), name: `sha256:${sha256(`${run.head_sha}:${run.id}`)}`, tags: [run.head_sha, run.head_sha.slice(0, 12)], created: at, run: run.id });
}

function versionJson(scope, owner, name, v) {
  const enc = encodeURIComponent(name);
  return {
    id: v.id, name: v.name, url: `${base}/${scope}/${owner}/packages/container/${enc}/versions/${v.id}`,
    package_html_url: `${base}/${scope}/${owner}/packages/container/package/${enc}`, html_url: `${base}/${scope}/${owner}/packages/container/${enc}/${v.id}`,
    created_at: iso(v.created), updated_at: iso(v.created), metadata: { package_type: "container", container: { tags: v.tags } },
  };
}

// ---- deployments ----
function deploymentJson(d) {
  const api = `${apiRepo(d.owner, d.repo)}/deployments/${d.id}`;
  return {
    url: api, id: d.id, node_id: nodeId("DE", d.id), sha: d.sha, ref: d.ref, task: d.task, payload: d.payload,
    original_environment: d.environment, environment: d.environment, description: d.description, creator: CREATOR,
    created_at: iso(d.created), updated_at: iso(d.statuses.at(-1)?.created ?? d.created), statuses_url: `${api}/statuses`,
    repository_url: apiRepo(d.owner, d.repo), transient_environment: d.transient_environment,
    production_environment: d.production_environment, performed_via_github_app: null,
  };
}

function statusJson(d, s) {
  const api = `${apiRepo(d.owner, d.repo)}/deployments/${d.id}`;
  const log = `${base}/${d.owner}/${d.repo}/deployments/${d.id}`;
  return {
    url: `${api}/statuses/${s.id}`, id: s.id, node_id: nodeId("DES", s.id), state: s.state, creator: CREATOR,
    description: s.description, environment: d.environment, target_url: log, log_url: log, environment_url: s.environment_url,
    created_at: iso(s.created), updated_at: iso(s.created), deployment_url: api, repository_url: apiRepo(d.owner, d.repo),
    performed_via_github_app: null,
  };
}

function addStatus(d, state, at) {
  const short = d.sha.slice(0, 12);
  const description = { queued: "Deployment queued", in_progress: `Deploying ${short} to ${d.environment}`, success: `Deployed ${short} to ${d.environment}`, failure: `Deploying ${short} failed`, error: `Deploying ${short} errored` }[state];
  const environment_url = state === "success" ? `${base}/apps/${d.owner}/${d.repo}/${encodeURIComponent(d.environment)}` : "";
  d.statuses.push({ id: next("status"), state, description, environment_url, created: at });
  if (state === "success") d.deployed = at;
}

// The deployment the app at /apps/<o>/<r>/<env> runs: the last one to succeed there.
const deployedIn = (owner, repo, env) => deployments
  .filter((d) => d.deployed !== undefined && repoKey(d.owner, d.repo) === repoKey(owner, repo) && d.environment === env)
  .sort((a, b) => a.deployed - b.deployed || a.id - b.id).at(-1);

// A ref as GitHub would resolve it: a full sha stands, a short one or a branch resolves through
// the runs seen here, anything else gets a made-up commit.
function resolveSha(owner, repo, ref) {
  const mine = runs.filter((r) => repoKey(r.owner, r.repo) === repoKey(owner, repo)).reverse();
  if (/^[0-9a-f]{40}$/i.test(ref)) return ref.toLowerCase();
  if (/^[0-9a-f]{7,39}$/i.test(ref)) return mine.find((r) => r.head_sha.startsWith(ref.toLowerCase()))?.head_sha ?? ref.toLowerCase();
  const branch = ref.replace(/^refs\/heads\//, "");
  return mine.find((r) => r.head_branch === branch)?.head_sha ?? hex40();
}

const payloadDigest = (payload) => {
  let p = payload;
  if (typeof p === "string") { try { p = JSON.parse(p); } catch { return null; } }
  return typeof p?.image_digest === "string" ? p.image_digest : null;
};

// ---- listing helpers ----
function paginate(items, q, url) {
  const perPage = Math.min(100, Math.max(1, parseInt(q.get("per_page"), 10) || 30));
  const page = Math.max(1, parseInt(q.get("page"), 10) || 1);
  const last = Math.max(1, Math.ceil(items.length / perPage));
  const link = (n, rel) => { const u = new URL(url); u.searchParams.set("page", n); return `<${base}${u.pathname}${u.search}>; rel="${rel}"`; };
  const links = [];
  if (page < last) links.push(link(page + 1, "next"), link(last, "last"));
  if (page > 1) links.push(link(1, "first"), link(page - 1, "prev"));
  return { items: items.slice((page - 1) * perPage, page * perPage), headers: links.length ? { link: links.join(", ") } : {} };
}

// GitHub's search-style `created` qualifier; only the comparison forms, other forms are ignored.
function createdFilter(value) {
  const m = /^(>=|<=|>|<)(\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})?)?)$/.exec(value ?? "");
  const at = m && Date.parse(m[2]);
  if (!m || Number.isNaN(at)) return () => true;
  return (ms) => {
    const s = Math.floor(ms / 1000) * 1000;
    return { ">=": s >= at, "<=": s <= at, ">": s > at, "<": s < at }[m[1]];
  };
}

function listRuns(owner, repo, q, url, workflow) {
  const created = createdFilter(q.get("created"));
  const want = (k) => q.get(k) || null;
  const chosen = runs.filter((r) => repoKey(r.owner, r.repo) === repoKey(owner, repo)
    && (!workflow || r.workflow === workflow || String(r.workflow_id) === workflow)
    && (!want("event") || want("event") === "workflow_dispatch")
    && (!want("head_sha") || r.head_sha === want("head_sha").toLowerCase())
    && (!want("branch") || r.head_branch === want("branch"))
    && (!want("status") || r.status === want("status") || r.conclusion === want("status"))
    && created(r.created)).reverse();
  const { items, headers } = paginate(chosen, q, url);
  return { status: 200, headers, body: { total_count: chosen.length, workflow_runs: items.map(runJson) } };
}

// ---- API handlers: (params, query, body, behaviour, call, url) -> {status, body, headers} | {hang: true} ----
const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v) => (typeof v === "string" ? v : undefined); // request fields rules may match on

function dispatch([owner, repo, workflow], q, body, b, call) {
  if (typeof body.ref !== "string" || !body.ref) return error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.');
  const inputs = body.inputs ?? {};
  if (!isObject(inputs)) return error(422, "Invalid request.\n\nFor 'properties/inputs', the value is not an object.");
  const bad = Object.entries(inputs).find(([, v]) => typeof v !== "string");
  if (bad) return error(422, `Invalid request.\n\nFor 'properties/${bad[0]}', ${JSON.stringify(bad[1])} is not a string.`);
  if (Object.keys(inputs).length > 25) return error(422, `Invalid request.\n\nNo more than 25 properties are allowed; ${Object.keys(inputs).length} were supplied.`);
  if (body.return_run_details !== undefined && typeof body.return_run_details !== "boolean") return error(422, "Invalid request.\n\nFor 'properties/return_run_details', the value is not a boolean.");
  const mode = b.dispatch ?? "ok";
  if (mode === "fail") return error(422, "Workflow does not have 'workflow_dispatch' trigger");
  if (mode === "unauthorized") return error(401, "Bad credentials");
  if (mode === "error") return error(500, "Server Error");

  const now = Date.now();
  const head_sha = typeof inputs.git_sha === "string" && inputs.git_sha ? inputs.git_sha.toLowerCase() : hex40();
  const numberKey = `${repoKey(owner, repo)}/${workflow}`;
  runNumbers.set(numberKey, (runNumbers.get(numberKey) ?? 0) + 1);
  const run = {
    id: next("run"), owner, repo, workflow, workflow_id: /^\d+$/.test(workflow) ? Number(workflow) : numericId(numberKey),
    number: runNumbers.get(numberKey), ref: body.ref, head_branch: body.ref.replace(/^refs\/(heads|tags)\//, ""), head_sha, inputs,
    // Stands for the workflow's `run-name: switchyard ${{ inputs.switchyard_dispatch_id }}`.
    display_title: inputs.switchyard_dispatch_id ? `switchyard ${inputs.switchyard_dispatch_id}` : workflow,
    status: "queued", conclusion: null, created: now, updated: now, artifacts: [],
    publish: b.publish_image === false ? null : b.package ?? `${owner}/${repo}`,
  };
  runs.push(run);
  call.sha = head_sha;
  const started = now + (b.queue_ms ?? 100);
  schedule(run, started, (at) => Object.assign(run, { status: "in_progress", updated: at }));
  const outcome = b.build ?? "success";
  if (outcome !== "hang") schedule(run, started + (b.build_ms ?? 1500), (at) => finishRun(run, outcome, at));

  if (mode === "error_after_create") return error(502, "Server Error");
  if (mode === "hang_after_create") return { hang: true };
  const json = runJson(run);
  if (body.return_run_details === true) return { status: 200, body: { workflow_run_id: run.id, run_url: json.url, html_url: json.html_url } };
  return { status: 204 };
}

function findRun(owner, repo, id) {
  return runs.find((r) => r.id === Number(id) && repoKey(r.owner, r.repo) === repoKey(owner, repo));
}

function createDeployment([owner, repo], q, body, b, call) {
  if (typeof body.ref !== "string" || !body.ref) return error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.');
  const payload = body.payload ?? {};
  if (!isObject(payload) && typeof payload !== "string") return error(422, "Invalid request.\n\nFor 'properties/payload', the value is not an object or a string.");
  for (const k of ["environment", "task", "description"]) {
    if (body[k] !== undefined && body[k] !== null && typeof body[k] !== "string") return error(422, `Invalid request.\n\nFor 'properties/${k}', the value is not a string.`);
  }
  if (b.deploy_request === "error") return error(500, "Server Error");
  const now = Date.now();
  const environment = body.environment || "production";
  const d = {
    id: next("deployment"), owner, repo, ref: body.ref, sha: resolveSha(owner, repo, body.ref), task: body.task || "deploy",
    payload, environment, description: body.description ?? "", created: now, statuses: [],
    transient_environment: body.transient_environment === true,
    production_environment: typeof body.production_environment === "boolean" ? body.production_environment : environment === "production",
  };
  deployments.push(d);
  call.sha = d.sha;
  // GitHub itself posts no statuses; here a pretend deployer does, on a clock.
  addStatus(d, "queued", now);
  schedule(d, now + 100, (at) => addStatus(d, "in_progress", at));
  const outcome = b.deploy ?? "success";
  if (outcome !== "hang") schedule(d, now + 100 + (b.deploy_ms ?? 500), (at) => addStatus(d, outcome, at));
  if (b.deploy_request === "hang_after_create") return { hang: true };
  return { status: 201, body: deploymentJson(d) };
}

function findDeployment(owner, repo, id) {
  return deployments.find((d) => d.id === Number(id) && repoKey(d.owner, d.repo) === repoKey(owner, repo));
}

const R = "/repos/([^/]+)/([^/]+)";
// [method, pattern, kind, context (what rules match on), handler]
const routes = [
  ["POST", `${R}/actions/workflows/([^/]+)/dispatches`, "dispatch",
    ([o, r], q, body) => ({ repo: `${o}/${r}`, sha: str(body.inputs?.git_sha), environment: str(body.inputs?.environment) }), dispatch],
  ["GET", `${R}/actions/runs`, "runs_list", ([o, r], q) => ({ repo: `${o}/${r}`, sha: q.get("head_sha") }),
    ([o, r], q, body, b, call, url) => listRuns(o, r, q, url)],
  ["GET", `${R}/actions/workflows/([^/]+)/runs`, "runs_list", ([o, r], q) => ({ repo: `${o}/${r}`, sha: q.get("head_sha") }),
    ([o, r, wf], q, body, b, call, url) => listRuns(o, r, q, url, wf)],
  ["GET", `${R}/actions/runs/(\\d+)`, "run_get", ([o, r, id]) => ({ repo: `${o}/${r}`, sha: findRun(o, r, id)?.head_sha }),
    ([o, r, id]) => { const run = findRun(o, r, id); return run ? { status: 200, body: runJson(run) } : NOT_FOUND(); }],
  ["GET", `${R}/actions/runs/(\\d+)/artifacts`, "artifacts", ([o, r, id]) => ({ repo: `${o}/${r}`, sha: findRun(o, r, id)?.head_sha }),
    ([o, r, id], q, body, b, call, url) => {
      const run = findRun(o, r, id);
      if (!run) return NOT_FOUND();
      const { items, headers } = paginate(run.artifacts, q, url);
      return { status: 200, headers, body: { total_count: run.artifacts.length, artifacts: items.map((a) => artifactJson(run, a)) } };
    }],
  ["POST", `${R}/actions/runs/(\\d+)/cancel`, "cancel", ([o, r, id]) => ({ repo: `${o}/${r}`, sha: findRun(o, r, id)?.head_sha }),
    ([o, r, id]) => {
      const run = findRun(o, r, id);
      if (!run) return NOT_FOUND();
      if (run.status === "completed") return error(409, "Cannot cancel a workflow run that is completed.");
      finishRun(run, "cancelled", Date.now());
      return { status: 202, body: {} };
    }],
  ["GET", "/(orgs|users)/([^/]+)/packages/container/([^/]+)/versions", "package_versions", ([, owner, enc]) => ({ repo: `${owner}/${decodeURIComponent(enc)}` }),
    ([scope, owner, enc], q, body, b, call, url) => {
      const name = decodeURIComponent(enc);
      const versions = packages.get(`${owner}/${name}`.toLowerCase()) ?? [];
      if (!versions.length) return error(404, "Package not found.");
      const { items, headers } = paginate([...versions].reverse(), q, url);
      return { status: 200, headers, body: items.map((v) => versionJson(scope, owner, name, v)) };
    }],
  ["POST", `${R}/deployments`, "deployment_create",
    ([o, r], q, body) => ({ repo: `${o}/${r}`, sha: str(body.ref) && resolveShaQuiet(o, r, body.ref), ref: str(body.ref), environment: str(body.environment) || "production" }),
    createDeployment],
  ["GET", `${R}/deployments`, "deployment_list", ([o, r], q) => ({ repo: `${o}/${r}`, sha: q.get("sha"), environment: q.get("environment") }),
    ([o, r], q, body, b, call, url) => {
      const want = (k) => q.get(k) || null;
      const chosen = deployments.filter((d) => repoKey(d.owner, d.repo) === repoKey(o, r)
        && (!want("sha") || d.sha === want("sha").toLowerCase()) && (!want("ref") || d.ref === want("ref"))
        && (!want("task") || d.task === want("task")) && (!want("environment") || d.environment === want("environment"))).reverse();
      const { items, headers } = paginate(chosen, q, url);
      return { status: 200, headers, body: items.map(deploymentJson) };
    }],
  ["GET", `${R}/deployments/(\\d+)`, "deployment_get", ([o, r, id]) => deploymentContext(o, r, id),
    ([o, r, id]) => { const d = findDeployment(o, r, id); return d ? { status: 200, body: deploymentJson(d) } : NOT_FOUND(); }],
  ["GET", `${R}/deployments/(\\d+)/statuses`, "deployment_statuses", ([o, r, id]) => deploymentContext(o, r, id),
    ([o, r, id], q, body, b, call, url) => {
      const d = findDeployment(o, r, id);
      if (!d) return NOT_FOUND();
      const { items, headers } = paginate([...d.statuses].reverse(), q, url); // newest first, as GitHub lists them
      return { status: 200, headers, body: items.map((s) => statusJson(d, s)) };
    }],
].map(([method, pattern, kind, context, handler]) => ({ method, re: new RegExp(`^${pattern}$`), kind, context, handler }));

// For matching rules only: a full or short sha as given, without inventing one for a branch.
function resolveShaQuiet(o, r, ref) {
  const branch = ref.replace(/^refs\/heads\//, "");
  const known = runs.some((x) => repoKey(x.owner, x.repo) === repoKey(o, r) && x.head_branch === branch);
  return /^[0-9a-f]{7,40}$/i.test(ref) || known ? resolveSha(o, r, ref) : null;
}
function deploymentContext(o, r, id) {
  const d = findDeployment(o, r, id);
  return { repo: `${o}/${r}`, sha: d?.sha, ref: d?.ref, environment: d?.environment };
}

// ---- recording ----
function authorized(req) {
  const m = /^(?:bearer|token)\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
  if (!m) return false;
  const given = Buffer.from(m[1]);
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

function record(call, status) {
  const at = new Date().toISOString();
  const entry = { at, kind: call.kind, method: call.method, path: call.path, repo: call.repo ?? null, sha: call.sha ?? null, status, correlation_id: call.correlation_id, user_agent: call.user_agent, authorized: call.authorized };
  calls.push(entry);
  if (calls.length > 50_000) calls.splice(0, calls.length - 50_000);
  appendFileSync(logFile, JSON.stringify({
    at, kind: call.kind, method: call.method, path: call.path,
    headers: { "x-correlation-id": call.correlation_id, "user-agent": call.user_agent }, body: call.body ?? null, status,
  }) + "\n");
  const extra = [call.sha && `sha=${call.sha.slice(0, 12)}`, call.correlation_id && `corr=${call.correlation_id}`, !call.authorized && call.kind !== "health" && "unauthorized"].filter(Boolean);
  console.log(`${at} ${status ?? "hang"} ${call.method} ${call.path} [${call.kind}]${extra.length ? " " + extra.join(" ") : ""}`);
}

function send(res, { status, body, headers = {} }) {
  if (status === 204 || body === undefined) return res.writeHead(status, headers).end();
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), ...headers }).end(text);
}

// The response is never sent: the socket stays open until the client gives up, or 120 s pass.
function hang(req) {
  const timer = setTimeout(() => req.socket.destroy(), 120_000);
  req.socket.once("close", () => clearTimeout(timer));
}

async function api(req, res, url, body, raw) {
  const route = routes.find((r) => r.method === req.method && r.re.test(url.pathname));
  const params = route ? route.re.exec(url.pathname).slice(1) : [];
  const call = {
    kind: route?.kind ?? "unknown", method: req.method, path: url.pathname + url.search, authorized: authorized(req),
    correlation_id: req.headers["x-correlation-id"] ?? null, user_agent: req.headers["user-agent"] ?? null,
    body: body ?? (raw ? raw.slice(0, 2000) : null),
  };
  const answer = (result) => { record(call, result.status); send(res, result); };
  const ctx = route && isObject(body ?? {}) ? route.context(params, url.searchParams, body ?? {}) : {};
  call.repo = ctx.repo ?? null;
  call.sha = ctx.sha ?? null;
  if (!call.authorized) return answer(error(401, "Bad credentials"));
  if (!route) return answer(NOT_FOUND());
  if (req.method === "POST" && ((raw && body === undefined) || !isObject(body ?? {}))) return answer(error(400, "Problems parsing JSON"));
  const behaviour = pick(ctx, KEYS[route.kind] ?? ["api_delay_ms"]);
  if (behaviour.api_delay_ms) await sleep(behaviour.api_delay_ms);
  advance();
  const result = route.handler(params, url.searchParams, body ?? {}, behaviour, call, url);
  if (result.hang) { record(call, null); return hang(req); }
  answer(result);
}

async function health(req, res, url, owner, repo, env) {
  const d = deployedIn(owner, repo, env);
  const call = { kind: "health", method: req.method, path: url.pathname + url.search, repo: `${owner}/${repo}`, sha: d?.sha ?? null, authorized: authorized(req), correlation_id: req.headers["x-correlation-id"] ?? null, user_agent: req.headers["user-agent"] ?? null };
  const b = pick({ repo: `${owner}/${repo}`, sha: d?.sha, ref: d?.ref, environment: env }, KEYS.health);
  if (b.health === "slow") { await sleep(b.health_delay_ms ?? 2000); advance(); }
  const now = deployedIn(owner, repo, env) ?? d;
  call.sha = now?.sha ?? null;
  let result;
  if (b.health === "fail") result = { status: 500, body: { status: "error" } };
  else if (!now) result = { status: 503, body: { status: "not_deployed", repo: `${owner}/${repo}`, environment: env } };
  else {
    const sha = b.health === "wrong_sha" ? sha256(`wrong:${now.sha}`).slice(0, 40) : now.sha;
    result = { status: 200, body: { status: "ok", repo: `${now.owner}/${now.repo}`, environment: env, sha, image_digest: payloadDigest(now.payload), deployment_id: now.id } };
  }
  record(call, result.status);
  send(res, result);
}

// ---- observation and control ----
function selectCalls(q) {
  const since = q.get("since");
  const from = since === null ? 0 : /^\d+$/.test(since) ? Number(since) : Date.parse(since);
  if (Number.isNaN(from)) return null;
  return calls.filter((c) => Date.parse(c.at) >= from
    && (!q.get("sha") || c.sha === q.get("sha").toLowerCase())
    && (!q.get("repo") || c.repo?.toLowerCase() === q.get("repo").toLowerCase())
    && (!q.get("kind") || c.kind === q.get("kind")));
}

function state() {
  return {
    runs: runs.map((r) => ({ id: r.id, repo: `${r.owner}/${r.repo}`, workflow: r.workflow, head_sha: r.head_sha, head_branch: r.head_branch, display_title: r.display_title, status: r.status, conclusion: r.conclusion, inputs: r.inputs, created_at: iso(r.created), updated_at: iso(r.updated), artifacts: r.artifacts.map((a) => a.name) })),
    deployments: deployments.map((d) => ({ id: d.id, repo: `${d.owner}/${d.repo}`, sha: d.sha, ref: d.ref, environment: d.environment, task: d.task, state: d.statuses.at(-1)?.state ?? null, image_digest: payloadDigest(d.payload), created_at: iso(d.created) })),
    packages: [...packages].map(([name, versions]) => ({ name, versions: versions.map((v) => ({ id: v.id, name: v.name, tags: v.tags, run_id: v.run })) })),
    rules,
  };
}

const escapeHtml = (s) =>
  String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const table = (head, rows) => `<table><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr>\n${rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join("")}</tr>`).join("\n")}</table>`;

function page() {
  return `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>GitHub stand-in</title>
<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left;vertical-align:top}</style>
<h1>GitHub stand-in</h1><p>JSON at <a href="/_state">/_state</a> and <a href="/_calls">/_calls</a>; ${calls.length} call(s) recorded.</p>
<h2>Workflow runs</h2>${table(["id", "repo", "workflow", "title", "sha", "status", "conclusion", "created"],
    runs.slice(-50).reverse().map((r) => [r.id, `${r.owner}/${r.repo}`, r.workflow, r.display_title, r.head_sha.slice(0, 12), r.status, r.conclusion ?? "", iso(r.created)]))}
<h2>Deployments</h2>${table(["id", "repo", "environment", "sha", "state", "created"],
    deployments.slice(-50).reverse().map((d) => [d.id, `${d.owner}/${d.repo}`, d.environment, d.sha.slice(0, 12), d.statuses.at(-1)?.state ?? "", iso(d.created)]))}
`;
}

function control(req, res, url, body) {
  const json = (status, b) => send(res, { status, body: b });
  if (req.method === "GET" && url.pathname === "/_calls") {
    const chosen = selectCalls(url.searchParams);
    return chosen ? json(200, chosen) : json(400, { message: "since must be an ISO time or Unix ms" });
  }
  if (req.method === "GET" && url.pathname === "/_state") return json(200, state());
  if (req.method === "POST" && url.pathname === "/_control/rules") {
    const problem = validateRule(body);
    if (problem) return json(400, { message: problem });
    const rule = { id: next("rule"), match: body.match ?? {}, behaviour: body.behaviour, times: body.times, applied: 0 };
    rules.unshift(rule);
    console.log(`${new Date().toISOString()} rule ${rule.id}: ${JSON.stringify({ match: rule.match, behaviour: rule.behaviour, times: rule.times })}`);
    return json(200, { id: rule.id });
  }
  if (req.method === "DELETE" && url.pathname === "/_control/rules") { rules = []; return json(200, {}); }
  const id = url.pathname.match(/^\/_control\/rules\/(\d+)$/)?.[1];
  if (req.method === "DELETE" && id) {
    const before = rules.length;
    rules = rules.filter((r) => r.id !== Number(id));
    return rules.length < before ? json(200, {}) : json(404, { message: "Not Found" });
  }
  if (req.method === "GET" && url.pathname === "/") return res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page());
  json(404, { message: "Not Found", documentation_url: DOCS, status: "404" });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const url = new URL(req.url, "http://127.0.0.1");
    const raw = Buffer.concat(chunks).toString("utf8");
    let body;
    if (raw) { try { body = JSON.parse(raw); } catch {} }
    advance();
    const app = url.pathname.match(/^\/apps\/([^/]+)\/([^/]+)\/([^/]+)\/health$/);
    const work = app && req.method === "GET" ? health(req, res, url, ...app.slice(1).map(decodeURIComponent))
      : /^\/(repos|orgs|users)\//.test(url.pathname) ? api(req, res, url, body, raw)
      : Promise.resolve(control(req, res, url, body));
    work.catch((err) => {
      console.error(`${new Date().toISOString()} ${req.method} ${url.pathname}: ${err.stack}`);
      if (!res.headersSent) send(res, error(500, "Server Error"));
    });
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(portArg), "127.0.0.1", () => {
  const { port } = server.address();
  base = `http://127.0.0.1:${port}`;
  console.log(`listening on ${port}`);
});
