// The local stack's GitHub: the slice of GitHub's REST API that ops-runner uses to build and
// deploy a project (Actions dispatch and runs, GHCR container package versions, Deployments), and
// ChatOps uses for /hotfix and /deploy (issues, refs, commits, pull requests, labels), plus the
// deployed apps' health endpoints. GitHub is out of reach here, so this speaks the
// same shapes, drives runs and deployments forward with time (evaluated lazily on each
// request, so nothing ticks in the background), and fails, hangs or dawdles when a test asks.
//
//   POST /repos/<o>/<r>/actions/workflows/<wf>/dispatches    a run: queued -> in_progress -> completed
//   GET  /repos/<o>/<r>/actions/runs[/<id>[/artifacts]]      and .../actions/workflows/<wf>/runs
//   POST /repos/<o>/<r>/actions/runs/<id>/cancel
//   GET  /orgs|users/<owner>/packages/container/<name>/versions   published by successful runs
//   POST /repos/<o>/<r>/deployments, GET .../deployments[/<id>[/statuses]]
//   GET  /repos/<o>/<r>/issues/<n>, POST .../issues/<n>/labels    #123 and #124 seeded in every repo
//   GET  /repos/<o>/<r>/git/ref/(heads|tags)/<name>, POST .../git/refs, POST .../git/commits
//   GET  /repos/<o>/<r>/commits/<sha|branch|tag>, POST .../pulls     main and v1.2.3 seeded in every repo
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
  // Any other API request (issues, refs, commits, pull requests, labels, and the reads of runs,
  // packages and deployments); dispatch and deployment creation have their own keys above.
  api: ["ok", "error", "unauthorized", "forbidden", "hang", "error_after_create", "hang_after_create"],
};
const DURATIONS = ["queue_ms", "build_ms", "deploy_ms", "health_delay_ms", "api_delay_ms"];
// Which behaviour keys each kind of request consults; a rule without any of them is not used up by it.
const KEYS = {
  dispatch: ["dispatch", "queue_ms", "build_ms", "build", "package", "publish_image", "api_delay_ms"],
  deployment_create: ["deploy_request", "deploy_ms", "deploy", "api_delay_ms"],
  health: ["health", "health_delay_ms"],
};
const OTHER_KEYS = ["api", "api_delay_ms"];

function validateRule(body) {
  const { match = {}, behaviour, times } = body ?? {};
  if (typeof match !== "object" || Array.isArray(match) || match === null) return "match must be an object";
  for (const [k, v] of Object.entries(match)) {
    if (!["sha", "repo", "environment", "kind"].includes(k) || typeof v !== "string") return `match.${k}: expected sha, repo, environment or kind, a string`;
    if (k === "kind" && !KINDS.includes(v)) return `match.kind: one of ${KINDS.join(", ")}`;
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
  if (k === "kind") return ctx.kind === v;
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

// ---- issues, git data and pull requests (what ChatOps' /hotfix and /deploy use) ----
// Every repository exists and starts alike: `main` at MAIN_SHA, one commit on top of the
// lightweight tag `v1.2.3` at TAG_SHA; GitHub's default labels; issue #123 (open, "bug") and #124
// (closed, "documentation"). Pull requests take the next number after the highest issue, as GitHub
// numbers issues and pull requests together. Commits exist only as seeded or made with
// POST .../git/commits; nothing here pushes.
const MAIN_SHA = "a410d51a495ee5fc52ccbbb5a0285ac76d494c41";
const TAG_SHA = "1383d7cbaa251e68f4331d2f5868f0b0ffa1ddd8";
const SEED_COMMITS = [
  { sha: TAG_SHA, tree: "ea266285ae36585ac5e8d6b621f9fb0f42230f23", parents: [], message: "Release v1.2.3", date: "2026-11-02T09:30:00Z" },
  { sha: MAIN_SHA, tree: "25dc82236a65d30641373425797a975db682a954", parents: [TAG_SHA], message: "Fix flaky checkout test", date: "2026-11-20T14:05:00Z" },
];
const DEFAULT_LABELS = [
  ["bug", "d73a4a", "Something isn't working"], ["documentation", "0075ca", "Improvements or additions to documentation"],
  ["duplicate", "cfd3d7", "This issue or pull request already exists"], ["enhancement", "a2eeef", "New feature or request"],
  ["good first issue", "7057ff", "Good for newcomers"], ["help wanted", "008672", "Extra attention is needed"],
  ["invalid", "e4e669", "This doesn't seem right"], ["question", "d876e3", "Further information is requested"],
  ["wontfix", "ffffff", "This will not be worked on"],
];
const REPORTER = { login: "issue-reporter", id: 2, node_id: "U_reporter", type: "User", site_admin: false };
const SEED_ISSUES = [
  { number: 123, title: "Login fails on Safari", body: "Signing in from Safari 17 goes back to the login page without an error.", labels: ["bug"], created: "2026-11-18T08:12:00Z" },
  { number: 124, title: "Typo in footer", body: "The footer says \"Copyrigth\".", labels: ["documentation"], created: "2026-11-10T16:40:00Z", closed: "2026-11-12T10:02:00Z" },
];
// GitHub points each error at the endpoint's documentation.
const DOC = {
  issue: `${DOCS}/issues/issues#get-an-issue`, labels: `${DOCS}/issues/labels#add-labels-to-an-issue`,
  ref: `${DOCS}/git/refs#get-a-reference`, refCreate: `${DOCS}/git/refs#create-a-reference`,
  commitCreate: `${DOCS}/git/commits#create-a-commit`, commit: `${DOCS}/commits/commits#get-a-commit`,
  pull: `${DOCS}/pulls/pulls#create-a-pull-request`,
};
const UNSIGNED = { verified: false, reason: "unsigned", signature: null, payload: null, verified_at: null };
const repos = new Map(); // "owner/repo" (lower case) -> {owner, repo, commits, refs, labels, issues}
const labelAdditions = []; // for /_state

function gitRepo(owner, repo) {
  const key = repoKey(owner, repo);
  if (repos.has(key)) return repos.get(key);
  const g = { owner, repo, commits: new Map(), refs: new Map(), labels: new Map(), issues: new Map() };
  for (const c of SEED_COMMITS) g.commits.set(c.sha, { ...c, created: Date.parse(c.date), author: null, seeded: true });
  g.refs.set("refs/heads/main", { sha: MAIN_SHA, seeded: true });
  g.refs.set("refs/tags/v1.2.3", { sha: TAG_SHA, seeded: true });
  for (const [name, color, description] of DEFAULT_LABELS) g.labels.set(name, { id: numericId(`${key}:label:${name}`), name, color, description, default: true });
  for (const i of SEED_ISSUES) {
    g.issues.set(i.number, {
      id: numericId(`${key}#${i.number}`), number: i.number, title: i.title, body: i.body, user: REPORTER,
      labels: i.labels.map((n) => g.labels.get(n)), state: i.closed ? "closed" : "open",
      created: Date.parse(i.created), updated: Date.parse(i.closed ?? i.created), closed: i.closed ? Date.parse(i.closed) : null, pull: null,
    });
  }
  repos.set(key, g);
  return g;
}

const decode = (s) => { try { return decodeURIComponent(s); } catch { return s; } };
const validation = (doc, errors) => error(422, "Validation Failed", { documentation_url: doc, errors });
// GitHub's schema check: a missing field "wasn't supplied", a wrong type "is not a <type>".
function fieldProblem(body, field, type, doc, required = true) {
  const v = body[field];
  if (v === undefined) return required ? error(422, `Invalid request.\n\n"${field}" wasn't supplied.`, { documentation_url: doc }) : null;
  const ok = type === "array" ? Array.isArray(v) : type === "string" && !required ? v === null || typeof v === "string" : typeof v === type;
  return ok ? null : error(422, `Invalid request.\n\nFor 'properties/${field}', ${JSON.stringify(v)} is not ${type === "array" ? "an" : "a"} ${type}.`, { documentation_url: doc });
}

// A commit named the way GET /commits/{ref} takes it: a full sha, a branch or tag (bare,
// heads/..., tags/..., refs/...), or 7 or more leading hex digits of a sha.
function findCommit(g, ref) {
  if (/^[0-9a-f]{40}$/i.test(ref) && g.commits.has(ref.toLowerCase())) return g.commits.get(ref.toLowerCase());
  const name = ref.replace(/^refs\//, "");
  const named = g.refs.get(`refs/${name}`) ?? g.refs.get(`refs/heads/${name}`) ?? g.refs.get(`refs/tags/${name}`);
  if (named) return g.commits.get(named.sha);
  if (!/^[0-9a-f]{7,39}$/i.test(ref)) return undefined;
  const matching = [...g.commits.values()].filter((c) => c.sha.startsWith(ref.toLowerCase()));
  return matching.length === 1 ? matching[0] : undefined;
}
function ancestry(g, sha) {
  const seen = new Set();
  for (const stack = [sha]; stack.length;) {
    const s = stack.pop();
    if (seen.has(s)) continue;
    seen.add(s);
    stack.push(...(g.commits.get(s)?.parents ?? []));
  }
  return seen;
}
// How many commits head has that base does not: 0 is GitHub's "No commits between".
const commitsAhead = (g, head, baseSha) => { const inBase = ancestry(g, baseSha); return [...ancestry(g, head)].filter((s) => !inBase.has(s)).length; };

// git check-ref-format, as GitHub applies it to a new ref's name.
const validRefName = (ref) => !/[\x00-\x20\x7f~^:?*[\\]|\.\.|@\{|\/\/|\/\.|\.lock(\/|$)|[/.]$/.test(ref) && ref !== "@";

// ---- shapes ----
const labelJson = (o, r, l) => ({ id: l.id, node_id: nodeId("LA", l.id), url: `${apiRepo(o, r)}/labels/${encodeURIComponent(l.name)}`, name: l.name, color: l.color, default: l.default, description: l.description });
const refJson = (o, r, ref, sha) => ({
  ref, node_id: nodeId("REF", `${repoKey(o, r)}:${ref}`), url: `${apiRepo(o, r)}/git/${ref}`,
  object: { sha, type: "commit", url: `${apiRepo(o, r)}/git/commits/${sha}` },
});
const person = (c) => c.author ?? { name: "switchyard", email: "switchyard@localhost", date: iso(c.created) };

function commitJson(o, r, c) {
  const api = apiRepo(o, r);
  return {
    sha: c.sha, node_id: nodeId("C", c.sha), url: `${api}/commits/${c.sha}`, html_url: `${base}/${o}/${r}/commit/${c.sha}`, comments_url: `${api}/commits/${c.sha}/comments`,
    commit: {
      author: person(c), committer: person(c), message: c.message, tree: { sha: c.tree, url: `${api}/git/trees/${c.tree}` },
      url: `${api}/git/commits/${c.sha}`, comment_count: 0, verification: UNSIGNED,
    },
    author: CREATOR, committer: CREATOR,
    parents: c.parents.map((p) => ({ sha: p, url: `${api}/commits/${p}`, html_url: `${base}/${o}/${r}/commit/${p}` })),
    stats: { total: 0, additions: 0, deletions: 0 }, files: [],
  };
}

function gitCommitJson(o, r, c) {
  const api = apiRepo(o, r);
  return {
    sha: c.sha, node_id: nodeId("C", c.sha), url: `${api}/git/commits/${c.sha}`, html_url: `${base}/${o}/${r}/commit/${c.sha}`,
    author: person(c), committer: person(c), tree: { sha: c.tree, url: `${api}/git/trees/${c.tree}` }, message: c.message,
    parents: c.parents.map((p) => ({ sha: p, url: `${api}/git/commits/${p}`, html_url: `${base}/${o}/${r}/commit/${p}` })),
    verification: UNSIGNED,
  };
}

const issueHtml = (o, r, i) => `${base}/${o}/${r}/${i.pull ? "pull" : "issues"}/${i.number}`;
// An issue as the Issues API shows it; a pull request is one too, with `pull_request` and `draft`.
function issueJson(o, r, i) {
  const api = `${apiRepo(o, r)}/issues/${i.number}`;
  const json = {
    url: api, repository_url: apiRepo(o, r), labels_url: `${api}/labels{/name}`, comments_url: `${api}/comments`, events_url: `${api}/events`,
    html_url: issueHtml(o, r, i), id: i.id, node_id: nodeId(i.pull ? "PR" : "I", i.id), number: i.number, title: i.title, user: i.user,
    labels: i.labels.map((l) => labelJson(o, r, l)), state: i.state, locked: false, assignee: null, assignees: [], milestone: null, comments: 0,
    created_at: iso(i.created), updated_at: iso(i.updated), closed_at: i.closed === null ? null : iso(i.closed),
    author_association: i.pull ? "NONE" : "MEMBER", active_lock_reason: null, body: i.body, closed_by: i.closed === null ? null : i.user,
    reactions: { url: `${api}/reactions`, total_count: 0, "+1": 0, "-1": 0, laugh: 0, hooray: 0, confused: 0, heart: 0, rocket: 0, eyes: 0 },
    timeline_url: `${api}/timeline`, performed_via_github_app: null, state_reason: i.state === "closed" ? "completed" : null,
  };
  if (i.pull) {
    const html = issueHtml(o, r, i);
    json.draft = i.pull.draft;
    json.pull_request = { url: `${apiRepo(o, r)}/pulls/${i.number}`, html_url: html, diff_url: `${html}.diff`, patch_url: `${html}.patch`, merged_at: null };
  }
  return json;
}

function pullJson(o, r, i) {
  const api = `${apiRepo(o, r)}/pulls/${i.number}`;
  const html = issueHtml(o, r, i);
  const issueApi = `${apiRepo(o, r)}/issues/${i.number}`;
  const side = (ref, sha) => ({ label: `${o}:${ref}`, ref, sha, user: { login: o }, repo: repoLite(o, r) });
  const p = i.pull;
  return {
    url: api, id: p.id, node_id: nodeId("PR", i.id), html_url: html, diff_url: `${html}.diff`, patch_url: `${html}.patch`, issue_url: issueApi,
    commits_url: `${api}/commits`, review_comments_url: `${api}/comments`, review_comment_url: `${apiRepo(o, r)}/pulls/comments{/number}`,
    comments_url: `${issueApi}/comments`, statuses_url: `${apiRepo(o, r)}/statuses/${p.head_sha}`,
    number: i.number, state: i.state, locked: false, title: i.title, user: i.user, body: i.body, labels: i.labels.map((l) => labelJson(o, r, l)),
    milestone: null, active_lock_reason: null, created_at: iso(i.created), updated_at: iso(i.updated), closed_at: null, merged_at: null,
    merge_commit_sha: null, assignee: null, assignees: [], requested_reviewers: [], requested_teams: [],
    head: side(p.head, p.head_sha), base: side(p.base, p.base_sha),
    _links: {
      self: { href: api }, html: { href: html }, issue: { href: issueApi }, comments: { href: `${issueApi}/comments` },
      review_comments: { href: `${api}/comments` }, review_comment: { href: `${apiRepo(o, r)}/pulls/comments{/number}` },
      commits: { href: `${api}/commits` }, statuses: { href: `${apiRepo(o, r)}/statuses/${p.head_sha}` },
    },
    author_association: "NONE", auto_merge: null, draft: p.draft, merged: false, mergeable: null, rebaseable: null,
    mergeable_state: "unknown", merged_by: null, comments: 0, review_comments: 0, maintainer_can_modify: false,
    commits: p.commits, additions: 0, deletions: 0, changed_files: 0,
  };
}

// ---- handlers ----
function getIssue([o, r, n]) {
  const i = gitRepo(o, r).issues.get(Number(n));
  return i ? { status: 200, body: issueJson(o, r, i) } : error(404, "Not Found", { documentation_url: DOC.issue });
}

function getRef([o, r, kind, name]) {
  const ref = `refs/${kind}/${decode(name)}`;
  const found = gitRepo(o, r).refs.get(ref);
  return found ? { status: 200, body: refJson(o, r, ref, found.sha) } : error(404, "Not Found", { documentation_url: DOC.ref });
}

function createRef([o, r], q, body, b, call) {
  const g = gitRepo(o, r);
  const doc = { documentation_url: DOC.refCreate };
  const problem = fieldProblem(body, "ref", "string", DOC.refCreate) ?? fieldProblem(body, "sha", "string", DOC.refCreate);
  if (problem) return problem;
  const { ref } = body;
  if (!/^refs\/[^/]+\/./.test(ref)) return error(422, "Reference name must contain at least three slash-separated components.", doc);
  if (!validRefName(ref)) return error(422, `${ref} is not a valid ref name.`, doc);
  const sha = body.sha.toLowerCase();
  if (!g.commits.has(sha)) return error(422, "Object does not exist", doc);
  if (g.refs.has(ref)) return error(422, "Reference already exists", doc);
  // refs/heads/a and refs/heads/a/b cannot both exist (a ref is a file, its prefix a directory).
  if ([...g.refs.keys()].some((k) => k.startsWith(`${ref}/`) || ref.startsWith(`${k}/`))) return error(422, "Reference update failed", doc);
  g.refs.set(ref, { sha, created: Date.now() });
  call.sha = sha;
  const json = refJson(o, r, ref, sha);
  return { status: 201, headers: { location: json.url }, body: json };
}

function createCommit([o, r], q, body, b, call) {
  const g = gitRepo(o, r);
  const doc = { documentation_url: DOC.commitCreate };
  const problem = fieldProblem(body, "message", "string", DOC.commitCreate) ?? fieldProblem(body, "tree", "string", DOC.commitCreate)
    ?? fieldProblem(body, "parents", "array", DOC.commitCreate, false);
  if (problem) return problem;
  const parents = (body.parents ?? []).map((p) => (typeof p === "string" ? p.toLowerCase() : p));
  const tree = body.tree.toLowerCase();
  if (![...g.commits.values()].some((c) => c.tree === tree)) return error(422, "Tree SHA does not exist", doc);
  if (parents.some((p) => !g.commits.has(p))) return error(422, "Parent SHA does not exist or is not a commit object", doc);
  const now = Date.now();
  const a = body.author;
  const author = isObject(a) && typeof a.name === "string" && typeof a.email === "string"
    ? { name: a.name, email: a.email, date: typeof a.date === "string" ? a.date : iso(now) } : null;
  const sha = createHash("sha1").update(`tree ${tree}\n${parents.map((p) => `parent ${p}\n`).join("")}${now} ${next("seq")}\n\n${body.message}`).digest("hex");
  const c = { sha, tree, parents, message: body.message, created: now, author };
  g.commits.set(sha, c);
  call.sha = sha;
  const json = gitCommitJson(o, r, c);
  return { status: 201, headers: { location: json.url }, body: json };
}

function createPull([o, r], q, body, b, call) {
  const g = gitRepo(o, r);
  for (const [field, type, required] of [["head", "string", true], ["base", "string", true], ["title", "string", false], ["body", "string", false], ["draft", "boolean", false]]) {
    const problem = fieldProblem(body, field, type, DOC.pull, required);
    if (problem) return problem;
  }
  if (!body.title) return validation(DOC.pull, [{ resource: "PullRequest", code: "missing_field", field: "title" }]);
  // head is "branch" or "owner:branch"; forks are not modelled, so another owner's head is invalid.
  const [headOwner, head] = body.head.includes(":") ? [body.head.slice(0, body.head.indexOf(":")), body.head.slice(body.head.indexOf(":") + 1)] : [o, body.head];
  const headSha = headOwner.toLowerCase() === o.toLowerCase() ? g.refs.get(`refs/heads/${head}`)?.sha : undefined;
  const baseSha = g.refs.get(`refs/heads/${body.base}`)?.sha;
  const invalid = [!baseSha && "base", !headSha && "head"].filter(Boolean).map((field) => ({ resource: "PullRequest", field, code: "invalid" }));
  if (invalid.length) return validation(DOC.pull, invalid);
  call.sha = headSha;
  // One open pull request per head and base.
  if ([...g.issues.values()].some((i) => i.pull && i.state === "open" && i.pull.head === head && i.pull.base === body.base)) {
    return validation(DOC.pull, [{ resource: "PullRequest", code: "custom", message: `A pull request already exists for ${o}:${head}.` }]);
  }
  const ahead = commitsAhead(g, headSha, baseSha);
  if (!ahead) return validation(DOC.pull, [{ resource: "PullRequest", code: "custom", message: `No commits between ${body.base} and ${head}` }]);
  const number = Math.max(...g.issues.keys()) + 1;
  const now = Date.now();
  const key = repoKey(o, r);
  const i = {
    id: numericId(`${key}#${number}`), number, title: body.title, body: body.body ?? null, user: CREATOR, labels: [], state: "open",
    created: now, updated: now, closed: null,
    pull: { id: numericId(`${key}!${number}`), head, head_sha: headSha, base: body.base, base_sha: baseSha, draft: body.draft === true, commits: ahead },
  };
  g.issues.set(number, i);
  const json = pullJson(o, r, i);
  return { status: 201, headers: { location: json.url }, body: json };
}

function addLabels([o, r, n], q, body) {
  const g = gitRepo(o, r);
  const i = g.issues.get(Number(n));
  if (!i) return error(404, "Not Found", { documentation_url: DOC.labels });
  const problem = fieldProblem(body, "labels", "array", DOC.labels);
  if (problem) return problem;
  const names = body.labels.map((l) => (isObject(l) ? l.name : l));
  const bad = names.findIndex((l) => typeof l !== "string" || !l.trim());
  if (bad >= 0) return validation(DOC.labels, [{ resource: "Label", code: "invalid", field: "name", value: names[bad] ?? null }]);
  for (const name of names) {
    // Label names are matched without regard to case; an unknown one is created, grey.
    const key = name.toLowerCase();
    if (!g.labels.has(key)) g.labels.set(key, { id: numericId(`${repoKey(o, r)}:label:${key}`), name, color: "ededed", description: null, default: false });
    const label = g.labels.get(key);
    if (!i.labels.includes(label)) i.labels.push(label);
  }
  i.updated = Date.now();
  labelAdditions.push({ repo: `${g.owner}/${g.repo}`, number: i.number, added: names, labels: i.labels.map((l) => l.name), at: iso(i.updated) });
  return { status: 200, body: i.labels.map((l) => labelJson(o, r, l)) };
}

function getCommit([o, r, ref], q, body, b, call) {
  const name = decode(ref);
  const c = findCommit(gitRepo(o, r), name);
  if (!c) return error(422, `No commit found for SHA: ${name}`, { documentation_url: DOC.commit });
  call.sha = c.sha;
  return { status: 200, body: commitJson(o, r, c) };
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
  ["GET", `${R}/issues/(\\d+)`, "issue_get", ([o, r]) => ({ repo: `${o}/${r}` }), getIssue],
  ["POST", `${R}/issues/(\\d+)/labels`, "labels_add", ([o, r]) => ({ repo: `${o}/${r}` }), addLabels],
  ["GET", `${R}/git/ref/(heads|tags)/(.+)`, "ref_get",
    ([o, r, kind, name]) => ({ repo: `${o}/${r}`, ref: decode(name), sha: gitRepo(o, r).refs.get(`refs/${kind}/${decode(name)}`)?.sha }), getRef],
  ["POST", `${R}/git/refs`, "ref_create", ([o, r], q, body) => ({ repo: `${o}/${r}`, ref: str(body.ref), sha: str(body.sha)?.toLowerCase() }), createRef],
  ["POST", `${R}/git/commits`, "commit_create", ([o, r]) => ({ repo: `${o}/${r}` }), createCommit],
  ["POST", `${R}/pulls`, "pull_create",
    ([o, r], q, body) => ({ repo: `${o}/${r}`, ref: str(body.head), sha: str(body.head) && gitRepo(o, r).refs.get(`refs/heads/${body.head.replace(/^[^:]*:/, "")}`)?.sha }), createPull],
  ["GET", `${R}/commits/(.+)`, "commit_get", ([o, r, ref]) => ({ repo: `${o}/${r}`, ref: decode(ref), sha: findCommit(gitRepo(o, r), decode(ref))?.sha }), getCommit],
].map(([method, pattern, kind, context, handler]) => ({ method, re: new RegExp(`^${pattern}$`), kind, context, handler }));
const KINDS = [...new Set([...routes.map((r) => r.kind), "health"])]; // what a rule's match.kind may name

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
  const ctx = { ...(route && isObject(body ?? {}) ? route.context(params, url.searchParams, body ?? {}) : {}), kind: call.kind };
  call.repo = ctx.repo ?? null;
  call.sha = ctx.sha ?? null;
  if (!call.authorized) return answer(error(401, "Bad credentials"));
  if (!route) return answer(NOT_FOUND());
  if (req.method === "POST" && ((raw && body === undefined) || !isObject(body ?? {}))) return answer(error(400, "Problems parsing JSON"));
  const behaviour = pick(ctx, KEYS[route.kind] ?? OTHER_KEYS);
  if (behaviour.api_delay_ms) await sleep(behaviour.api_delay_ms);
  advance();
  const mode = behaviour.api ?? "ok";
  const refused = { error: [500, "Server Error"], unauthorized: [401, "Bad credentials"], forbidden: [403, "Resource not accessible by integration"] }[mode];
  if (refused) return answer(error(...refused));
  if (mode === "hang") { record(call, null); return hang(req); }
  let result = route.handler(params, url.searchParams, body ?? {}, behaviour, call, url);
  // The request has done its work (a ref, commit or pull request exists) when these answer.
  if (mode === "error_after_create") result = error(502, "Server Error");
  if (mode === "hang_after_create" || result.hang) { record(call, null); return hang(req); }
  answer(result);
}

async function health(req, res, url, owner, repo, env) {
  const d = deployedIn(owner, repo, env);
  const call = { kind: "health", method: req.method, path: url.pathname + url.search, repo: `${owner}/${repo}`, sha: d?.sha ?? null, authorized: authorized(req), correlation_id: req.headers["x-correlation-id"] ?? null, user_agent: req.headers["user-agent"] ?? null };
  const b = pick({ repo: `${owner}/${repo}`, sha: d?.sha, ref: d?.ref, environment: env, kind: "health" }, KEYS.health);
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
    // What was made through the API; the seeded refs, commits and issues are left out.
    refs: [...repos.values()].flatMap((g) => [...g.refs].filter(([, x]) => !x.seeded).map(([ref, x]) => ({ repo: `${g.owner}/${g.repo}`, ref, sha: x.sha, created_at: iso(x.created) }))),
    commits: [...repos.values()].flatMap((g) => [...g.commits.values()].filter((c) => !c.seeded).map((c) => ({ repo: `${g.owner}/${g.repo}`, sha: c.sha, message: c.message, tree: c.tree, parents: c.parents, created_at: iso(c.created) }))),
    pull_requests: pullRequests().map(({ g, i }) => ({
      repo: `${g.owner}/${g.repo}`, number: i.number, title: i.title, head: i.pull.head, head_sha: i.pull.head_sha, base: i.pull.base,
      draft: i.pull.draft, state: i.state, labels: i.labels.map((l) => l.name), html_url: issueHtml(g.owner, g.repo, i), created_at: iso(i.created),
    })),
    label_additions: labelAdditions,
    rules,
  };
}
const pullRequests = () => [...repos.values()].flatMap((g) => [...g.issues.values()].filter((i) => i.pull).map((i) => ({ g, i })));

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
<h2>Pull requests</h2>${table(["repo", "number", "title", "head", "base", "draft", "labels", "created"],
    pullRequests().slice(-50).reverse().map(({ g, i }) => [`${g.owner}/${g.repo}`, i.number, i.title, i.pull.head, i.pull.base, i.pull.draft, i.labels.map((l) => l.name).join(", "), iso(i.created)]))}
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
