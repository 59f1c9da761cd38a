// The GitHub stand-in (scripts/local/provider-standin.mjs) that ops-runner builds and deploys
// against: it must answer in GitHub's shapes, move runs and deployments along with time, publish
// images and serve health as a deployed app would, and fail, hang or dawdle when told to. Runs
// its own instance on a free port, so it needs nothing else of the stack; each test uses its own
// repository so the tests do not see each other's runs.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const TOKEN = `standin-${randomBytes(12).toString("hex")}`;
const ISO_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
let child;
let dir;
let base;
let stdout = "";

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "provider-standin-"));
  child = spawn(process.execPath, [path.join(ROOT, "scripts/local/provider-standin.mjs"), "0", dir, TOKEN], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  child.stdout.setEncoding("utf8");
  base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on" line: ${stdout}`)), 5000);
    child.once("exit", (code) => reject(new Error(`stand-in exited (${code}): ${stdout}`)));
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      const port = /^listening on (\d+)\n/.exec(stdout)?.[1];
      if (port) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${port}`);
      }
    });
  });
});

after(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    process.kill(child.pid);
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  await fetch(`${base}/_control/rules`, { method: "DELETE" });
});

const sha = (label) => createHash("sha1").update(`${label}:${process.pid}`).digest("hex");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A request as ops-runner makes it; `auth: false` leaves the token out, a string replaces the header. */
async function gh(method, urlPath, body, { auth = true, headers = {}, signal } = {}) {
  const h = { "user-agent": "switchyard-e2e", ...headers };
  if (auth === true) h.authorization = `Bearer ${TOKEN}`;
  else if (typeof auth === "string") h.authorization = auth;
  if (body !== undefined) h["content-type"] = "application/json";
  const res = await fetch(`${base}${urlPath}`, { method, headers: h, signal, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

async function rule(match, behaviour, times) {
  const res = await gh("POST", "/_control/rules", { match, behaviour, times }, { auth: false });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.id;
}

async function waitFor(what, probe, ms = 5000) {
  const until = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const dispatch = (repo, git_sha, extra = {}, workflow = "build.yml") =>
  gh("POST", `/repos/${repo}/actions/workflows/${workflow}/dispatches`, {
    ref: "refs/heads/main", inputs: { git_sha, switchyard_dispatch_id: `d-${git_sha.slice(0, 8)}` }, return_run_details: true, ...extra,
  });
const state = async () => (await gh("GET", "/_state", undefined, { auth: false })).body;
const runsOf = async (repo) => (await state()).runs.filter((r) => r.repo === repo);
const deploymentsOf = async (repo) => (await state()).deployments.filter((d) => d.repo === repo);
const runState = async (repo, id) => (await gh("GET", `/repos/${repo}/actions/runs/${id}`)).body;

test("prints its port first, wants the token, and answers GitHub's errors", async () => {
  assert.match(stdout.split("\n")[0], /^listening on \d+$/);
  const unauthorized = { message: "Bad credentials", documentation_url: "https://docs.github.com/rest", status: "401" };
  for (const auth of [false, "Bearer wrong", `Basic ${TOKEN}`]) {
    const res = await gh("GET", "/repos/acme/auth/actions/runs", undefined, { auth });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
    assert.deepEqual(res.body, unauthorized);
  }
  assert.equal((await gh("GET", "/orgs/acme/packages/container/auth/versions", undefined, { auth: false })).status, 401);
  assert.equal((await gh("GET", "/users/acme/packages/container/auth/versions", undefined, { auth: false })).status, 401);
  assert.equal((await gh("POST", "/repos/acme/auth/deployments", { ref: "main" }, { auth: false })).status, 401);
  assert.equal((await gh("GET", "/repos/acme/auth/actions/runs", undefined, { auth: `token ${TOKEN}` })).status, 200);

  const missing = await gh("GET", "/repos/acme/auth/actions/runs/1/logs");
  assert.equal(missing.status, 404);
  assert.equal(missing.body.message, "Not Found");
  assert.equal(typeof missing.body.documentation_url, "string");
  assert.equal((await gh("GET", "/repos/acme/auth/actions/runs/999")).status, 404);
  const garbled = await gh("POST", "/repos/acme/auth/deployments", "{not json");
  assert.equal(garbled.status, 400);
  assert.equal(garbled.body.message, "Problems parsing JSON");
  assert.equal((await gh("GET", "/nowhere", undefined, { auth: false })).status, 404);
});

test("a dispatch is validated and nothing is created when it is refused", async () => {
  const repo = "acme/validate";
  const url = `/repos/${repo}/actions/workflows/build.yml/dispatches`;
  for (const body of [{}, { ref: "" }, { ref: 5 }, { ref: "main", inputs: [] }, { ref: "main", inputs: { git_sha: 42 } },
    { ref: "main", inputs: Object.fromEntries(Array.from({ length: 26 }, (_, i) => [`k${i}`, "v"])) }]) {
    const res = await gh("POST", url, body);
    assert.equal(res.status, 422, JSON.stringify(body));
    assert.match(res.body.message, /^Invalid request/);
  }
  assert.deepEqual(await runsOf(repo), []);
});

test("a dispatched run goes queued, in_progress, completed/success and publishes its image", async () => {
  const repo = "acme/lifecycle";
  const head = sha("lifecycle");
  await rule({ sha: head }, { queue_ms: 400 }); // room to see it queued; the build takes the default 1500 ms
  const res = await dispatch(repo, head);
  assert.equal(res.status, 200);
  assert.deepEqual(Object.keys(res.body).sort(), ["html_url", "run_url", "workflow_run_id"]);
  const id = res.body.workflow_run_id;
  assert.ok(Number.isInteger(id) && id > 1000000000);
  assert.equal(res.body.run_url, `${base}/repos/${repo}/actions/runs/${id}`);
  assert.equal(res.body.html_url, `${base}/${repo}/actions/runs/${id}`);

  const queued = await runState(repo, id);
  assert.equal(queued.status, "queued");
  assert.equal(queued.conclusion, null);
  assert.equal(queued.id, id);
  assert.equal(queued.name, "build.yml");
  assert.equal(queued.display_title, `switchyard d-${head.slice(0, 8)}`);
  assert.equal(queued.head_sha, head);
  assert.equal(queued.head_branch, "main");
  assert.equal(queued.event, "workflow_dispatch");
  assert.equal(queued.run_attempt, 1);
  assert.equal(queued.url, res.body.run_url);
  assert.equal(queued.html_url, res.body.html_url);
  assert.equal(queued.logs_url, `${res.body.run_url}/logs`);
  assert.equal(queued.artifacts_url, `${res.body.run_url}/artifacts`);
  for (const k of ["created_at", "updated_at", "run_started_at"]) assert.match(queued[k], ISO_SECONDS);
  assert.equal(queued.inputs, undefined, "GitHub's run object has no inputs");
  assert.deepEqual((await gh("GET", `/repos/${repo}/actions/runs/${id}/artifacts`)).body, { total_count: 0, artifacts: [] });
  assert.equal((await gh("GET", `/orgs/acme/packages/container/lifecycle/versions`)).status, 404);

  await waitFor("in_progress", async () => (await runState(repo, id)).status === "in_progress");
  const done = await waitFor("completed", async () => { const r = await runState(repo, id); return r.status === "completed" && r; });
  assert.equal(done.conclusion, "success");

  const artifacts = (await gh("GET", `/repos/${repo}/actions/runs/${id}/artifacts`)).body;
  assert.equal(artifacts.total_count, 2);
  assert.deepEqual(artifacts.artifacts.map((a) => a.name).sort(), ["build-log", "sbom"]);
  for (const a of artifacts.artifacts) {
    for (const k of ["id", "node_id", "name", "size_in_bytes", "url", "archive_download_url", "created_at", "expires_at", "updated_at"]) assert.ok(a[k] !== undefined, k);
    assert.equal(a.expired, false);
    assert.equal(a.workflow_run.id, id);
    assert.equal(a.workflow_run.head_sha, head);
  }

  const digest = `sha256:${createHash("sha256").update(`${head}:${id}`).digest("hex")}`;
  for (const scope of ["orgs", "users"]) {
    const versions = await gh("GET", `/${scope}/acme/packages/container/lifecycle/versions`);
    assert.equal(versions.status, 200);
    assert.equal(versions.body.length, 1);
    const [v] = versions.body;
    assert.equal(v.name, digest);
    assert.deepEqual(v.metadata, { package_type: "container", container: { tags: [head, head.slice(0, 12)] } });
    for (const k of ["id", "url", "package_html_url", "html_url", "created_at", "updated_at"]) assert.ok(v[k] !== undefined, k);
    assert.ok(v.url.includes(`/${scope}/acme/packages/container/lifecycle/versions/${v.id}`));
  }
});

test("runs are listed newest first, filtered, paged, and per workflow", async () => {
  const repo = "acme/listing";
  await rule({ repo }, { queue_ms: 0, build_ms: 0 });
  const before = new Date(Date.now() - 2000).toISOString().replace(/\.\d{3}Z$/, "Z");
  const plain = await gh("POST", `/repos/${repo}/actions/workflows/build.yml/dispatches`, { ref: "main" });
  assert.equal(plain.status, 204);
  assert.equal(plain.body, null);
  const a = sha("list-a");
  const b = sha("list-b");
  await dispatch(repo, a);
  await dispatch(repo, b, {}, "deploy.yml");

  const all = (await gh("GET", `/repos/${repo}/actions/runs`)).body;
  assert.equal(all.total_count, 3);
  const ids = all.workflow_runs.map((r) => r.id);
  assert.deepEqual(ids, [...ids].sort((x, y) => y - x), "newest first");
  const anonymous = all.workflow_runs[2];
  assert.match(anonymous.head_sha, /^[0-9a-f]{40}$/);
  assert.equal(anonymous.display_title, "build.yml");
  assert.ok(all.workflow_runs.every((r) => r.status === "completed" && r.conclusion === "success"));

  const q = async (query) => (await gh("GET", `/repos/${repo}/actions/runs?${query}`)).body;
  assert.deepEqual((await q(`head_sha=${a}`)).workflow_runs.map((r) => r.head_sha), [a]);
  assert.equal((await q("event=workflow_dispatch")).total_count, 3);
  assert.equal((await q("event=push")).total_count, 0);
  assert.equal((await q(`created=${encodeURIComponent(`>=${before}`)}`)).total_count, 3);
  assert.equal((await q(`created=${encodeURIComponent(">=2999-01-01T00:00:00Z")}`)).total_count, 0);
  assert.equal((await q("created=yesterday")).total_count, 3, "other forms are ignored");
  assert.equal((await q("status=success")).total_count, 3);
  assert.equal((await q("status=in_progress")).total_count, 0);

  const paged = await gh("GET", `/repos/${repo}/actions/runs?per_page=1&page=2`);
  assert.equal(paged.body.total_count, 3);
  assert.deepEqual(paged.body.workflow_runs.map((r) => r.id), [ids[1]]);
  assert.match(paged.headers.get("link"), /page=3>; rel="next"/);

  const deploys = (await gh("GET", `/repos/${repo}/actions/workflows/deploy.yml/runs`)).body;
  assert.deepEqual(deploys.workflow_runs.map((r) => r.head_sha), [b]);
  assert.equal((await gh("GET", `/repos/${repo}/actions/workflows/build.yml/runs?head_sha=${b}`)).body.total_count, 0);
});

test("a run that is not finished can be cancelled once; a completed one cannot", async () => {
  const repo = "acme/cancel";
  const head = sha("cancel");
  await rule({ sha: head }, { queue_ms: 0, build: "hang" });
  const id = (await dispatch(repo, head)).body.workflow_run_id;
  await waitFor("in_progress", async () => (await runState(repo, id)).status === "in_progress");
  await sleep(200);
  assert.equal((await runState(repo, id)).status, "in_progress", "a hanging build stays in progress");

  const cancel = await gh("POST", `/repos/${repo}/actions/runs/${id}/cancel`);
  assert.equal(cancel.status, 202);
  assert.deepEqual(cancel.body, {});
  const run = await runState(repo, id);
  assert.equal(run.status, "completed");
  assert.equal(run.conclusion, "cancelled");
  const again = await gh("POST", `/repos/${repo}/actions/runs/${id}/cancel`);
  assert.equal(again.status, 409);
  assert.equal(again.body.message, "Cannot cancel a workflow run that is completed.");
  assert.equal((await gh("POST", `/repos/${repo}/actions/runs/12345/cancel`)).status, 404);
  assert.equal((await gh("GET", `/repos/${repo}/actions/runs/${id}/artifacts`)).body.total_count, 0);
  const none = await gh("GET", "/orgs/acme/packages/container/cancel/versions");
  assert.equal(none.status, 404);
  assert.equal(none.body.message, "Package not found.");
});

test("build outcomes and where (or whether) the image is published", async () => {
  const repo = "acme/outcomes";
  const fast = { queue_ms: 0, build_ms: 50 };
  const [failed, cancelled, elsewhere, unpublished] = ["failed", "cancelled", "elsewhere", "unpublished"].map(sha);
  await rule({ sha: failed }, { ...fast, build: "failure" });
  await rule({ sha: cancelled }, { ...fast, build: "cancelled" });
  await rule({ sha: elsewhere }, { ...fast, package: "acme/stack/web" });
  await rule({ sha: unpublished }, { ...fast, publish_image: false });
  const ids = {};
  for (const [name, head] of Object.entries({ failed, cancelled, elsewhere, unpublished })) ids[name] = (await dispatch(repo, head)).body.workflow_run_id;
  for (const id of Object.values(ids)) await waitFor(`run ${id}`, async () => (await runState(repo, id)).status === "completed");

  assert.equal((await runState(repo, ids.failed)).conclusion, "failure");
  assert.deepEqual((await gh("GET", `/repos/${repo}/actions/runs/${ids.failed}/artifacts`)).body.artifacts.map((a) => a.name), ["build-log"]);
  assert.equal((await runState(repo, ids.cancelled)).conclusion, "cancelled");
  assert.equal((await runState(repo, ids.unpublished)).conclusion, "success");

  const versions = await gh("GET", `/orgs/acme/packages/container/${encodeURIComponent("stack/web")}/versions`);
  assert.equal(versions.status, 200);
  assert.deepEqual(versions.body.map((v) => v.metadata.container.tags[0]), [elsewhere]);
  assert.ok(versions.body[0].url.includes("/packages/container/stack%2Fweb/versions/"));
  assert.equal((await gh("GET", "/orgs/acme/packages/container/outcomes/versions")).status, 404, "nothing published under the repo's own name");
});

test("dispatch failure modes: refused, unauthorized, 500, 502 after creating, hanging after creating, used up", async () => {
  const repo = "acme/dispatch-faults";
  const modes = { fail: [422, "Workflow does not have 'workflow_dispatch' trigger"], unauthorized: [401, "Bad credentials"], error: [500] };
  for (const [mode, [status, message]] of Object.entries(modes)) {
    const head = sha(`fault-${mode}`);
    await rule({ sha: head }, { dispatch: mode });
    const res = await dispatch(repo, head);
    assert.equal(res.status, status, mode);
    if (message) assert.equal(res.body.message, message);
  }
  assert.deepEqual(await runsOf(repo), [], "no run for a refused or failed dispatch");

  const after502 = sha("fault-502");
  await rule({ sha: after502 }, { dispatch: "error_after_create" });
  assert.equal((await dispatch(repo, after502)).status, 502);
  assert.deepEqual((await runsOf(repo)).map((r) => r.head_sha), [after502]);

  const hung = sha("fault-hang");
  await rule({ sha: hung }, { dispatch: "hang_after_create" });
  await assert.rejects(
    gh("POST", `/repos/${repo}/actions/workflows/build.yml/dispatches`, { ref: "main", inputs: { git_sha: hung } }, { signal: AbortSignal.timeout(300) }),
    (err) => err.name === "TimeoutError",
  );
  assert.ok((await runsOf(repo)).some((r) => r.head_sha === hung), "the run exists although no answer came");

  const once = sha("fault-once");
  await rule({ sha: once }, { dispatch: "error" }, 1);
  assert.equal((await dispatch(repo, once)).status, 500);
  assert.equal((await dispatch(repo, once)).status, 200, "a rule with times is used up");

  const other = sha("fault-deleted");
  const id = await rule({ repo }, { dispatch: "fail" });
  assert.equal((await gh("DELETE", `/_control/rules/${id}`, undefined, { auth: false })).status, 200);
  assert.equal((await gh("DELETE", `/_control/rules/${id}`, undefined, { auth: false })).status, 404);
  assert.equal((await dispatch(repo, other)).status, 200);
  await rule({ repo }, { dispatch: "fail" });
  await gh("DELETE", "/_control/rules", undefined, { auth: false });
  assert.equal((await dispatch(repo, sha("fault-cleared"))).status, 200);

  for (const bad of [{ behaviour: { dispatch: "explode" } }, { match: { branch: "x" }, behaviour: {} }, { behaviour: { build_ms: -1 } }, { behaviour: {}, times: 0 }, {}]) {
    assert.equal((await gh("POST", "/_control/rules", bad, { auth: false })).status, 400, JSON.stringify(bad));
  }
});

test("a deployment gets statuses over time and the app then serves it", async () => {
  const repo = "acme/deploy";
  const head = sha("deploy");
  assert.equal((await gh("POST", `/repos/${repo}/deployments`, { environment: "staging" })).status, 422);
  assert.match((await gh("POST", `/repos/${repo}/deployments`, {})).body.message, /^Invalid request/);

  const health0 = await gh("GET", `/apps/${repo}/staging/health`, undefined, { auth: false });
  assert.equal(health0.status, 503);
  assert.equal(health0.body.status, "not_deployed");

  const created = await gh("POST", `/repos/${repo}/deployments`, {
    ref: head, environment: "staging", payload: { image_digest: "sha256:abc" }, description: "e2e", auto_merge: false, required_contexts: [],
  });
  assert.equal(created.status, 201);
  const d = created.body;
  for (const k of ["id", "node_id", "url", "created_at", "updated_at", "statuses_url", "repository_url"]) assert.ok(d[k] !== undefined, k);
  assert.equal(d.sha, head);
  assert.equal(d.ref, head);
  assert.equal(d.task, "deploy");
  assert.deepEqual(d.payload, { image_digest: "sha256:abc" });
  assert.equal(d.environment, "staging");
  assert.equal(d.original_environment, "staging");
  assert.equal(d.description, "e2e");
  assert.equal(d.creator.login, "switchyard-standin");
  assert.equal(d.transient_environment, false);
  assert.equal(d.production_environment, false);
  assert.equal(d.url, `${base}/repos/${repo}/deployments/${d.id}`);
  assert.equal(d.statuses_url, `${d.url}/statuses`);

  const statuses = async () => (await gh("GET", `/repos/${repo}/deployments/${d.id}/statuses`)).body;
  const early = (await statuses()).map((s) => s.state).reverse(); // "queued" at once, then on a clock
  assert.deepEqual(early, ["queued", "in_progress", "success"].slice(0, early.length));
  assert.equal(early[0], "queued");
  const final = await waitFor("success", async () => { const s = await statuses(); return s[0].state === "success" && s; });
  assert.deepEqual(final.map((s) => s.state), ["success", "in_progress", "queued"], "newest first");
  const ok = final[0];
  for (const k of ["id", "node_id", "description", "target_url", "log_url", "created_at", "updated_at"]) assert.ok(ok[k] !== undefined, k);
  assert.equal(ok.environment, "staging");
  assert.equal(ok.environment_url, `${base}/apps/${repo}/staging`);
  assert.equal(ok.deployment_url, d.url);
  assert.equal(ok.repository_url, d.repository_url);
  assert.equal(final[1].environment_url, "");

  const health = await gh("GET", `/apps/${repo}/staging/health`, undefined, { auth: false });
  assert.equal(health.status, 200);
  assert.deepEqual(health.body, { status: "ok", repo, environment: "staging", sha: head, image_digest: "sha256:abc", deployment_id: d.id });
  assert.equal((await gh("GET", `/apps/${repo}/production/health`, undefined, { auth: false })).status, 503);

  // A branch ref gets a made-up commit, a string payload is kept as given, production is the default.
  const prod = (await gh("POST", `/repos/${repo}/deployments`, { ref: "release", payload: JSON.stringify({ image_digest: "sha256:def" }), task: "deploy:migrate" })).body;
  assert.match(prod.sha, /^[0-9a-f]{40}$/);
  assert.equal(prod.environment, "production");
  assert.equal(prod.production_environment, true);
  assert.equal(typeof prod.payload, "string");
  await waitFor("production deployed", async () => (await gh("GET", `/apps/${repo}/production/health`)).body.image_digest === "sha256:def");

  const list = async (query) => (await gh("GET", `/repos/${repo}/deployments${query}`)).body.map((x) => x.id);
  assert.deepEqual(await list(""), [prod.id, d.id], "newest first");
  assert.deepEqual(await list(`?sha=${head}`), [d.id]);
  assert.deepEqual(await list("?ref=release"), [prod.id]);
  assert.deepEqual(await list("?task=deploy:migrate"), [prod.id]);
  assert.deepEqual(await list("?environment=staging"), [d.id]);
  assert.deepEqual(await list("?per_page=1&page=2"), [d.id]);
  assert.equal((await gh("GET", `/repos/${repo}/deployments/${d.id}`)).body.sha, head);
  assert.equal((await gh("GET", `/repos/${repo}/deployments/99`)).status, 404);
  assert.equal((await gh("GET", `/repos/${repo}/deployments/99/statuses`)).status, 404);
});

test("deployment failure modes leave the app on what it ran before", async () => {
  const repo = "acme/deploy-faults";
  const good = sha("deploy-good");
  await rule({ repo }, { deploy_ms: 0 });
  const first = (await gh("POST", `/repos/${repo}/deployments`, { ref: good })).body;
  await waitFor("first deployed", async () => (await gh("GET", `/apps/${repo}/production/health`)).body.sha === good);

  for (const outcome of ["failure", "error"]) {
    const head = sha(`deploy-${outcome}`);
    await rule({ sha: head }, { deploy_ms: 0, deploy: outcome });
    const d = (await gh("POST", `/repos/${repo}/deployments`, { ref: head })).body;
    const states = await waitFor(outcome, async () => {
      const s = (await gh("GET", `/repos/${repo}/deployments/${d.id}/statuses`)).body;
      return s.length === 3 && s.map((x) => x.state);
    });
    assert.deepEqual(states, [outcome, "in_progress", "queued"]);
  }
  const hanging = sha("deploy-hang");
  await rule({ sha: hanging }, { deploy: "hang" });
  const h = (await gh("POST", `/repos/${repo}/deployments`, { ref: hanging })).body;
  await waitFor("in_progress", async () => (await gh("GET", `/repos/${repo}/deployments/${h.id}/statuses`)).body[0].state === "in_progress");
  await sleep(300);
  assert.equal((await gh("GET", `/repos/${repo}/deployments/${h.id}/statuses`)).body[0].state, "in_progress");
  const health = (await gh("GET", `/apps/${repo}/production/health`)).body;
  assert.equal(health.sha, good);
  assert.equal(health.deployment_id, first.id);

  const refused = sha("deploy-refused");
  await rule({ sha: refused }, { deploy_request: "error" });
  assert.equal((await gh("POST", `/repos/${repo}/deployments`, { ref: refused })).status, 500);
  assert.ok(!(await deploymentsOf(repo)).some((d) => d.sha === refused), "nothing created");

  const lost = sha("deploy-lost");
  await rule({ sha: lost }, { deploy_request: "hang_after_create" });
  await assert.rejects(gh("POST", `/repos/${repo}/deployments`, { ref: lost }, { signal: AbortSignal.timeout(300) }), (err) => err.name === "TimeoutError");
  assert.ok((await deploymentsOf(repo)).some((d) => d.sha === lost), "created although no answer came");
});

test("health can fail, report the wrong sha, or be slow; api_delay_ms slows matching API calls", async () => {
  const repo = "acme/health";
  const head = sha("health");
  await rule({ repo }, { deploy_ms: 0 });
  await gh("POST", `/repos/${repo}/deployments`, { ref: head, environment: "qa" });
  const url = `/apps/${repo}/qa/health`;
  await waitFor("deployed", async () => (await gh("GET", url)).status === 200);

  await rule({ sha: head, environment: "qa" }, { health: "fail" }, 1);
  assert.deepEqual(await gh("GET", url).then((r) => [r.status, r.body]), [500, { status: "error" }]);
  assert.equal((await gh("GET", url)).status, 200, "used up");

  await rule({ sha: head }, { health: "wrong_sha" }, 1);
  const wrong = await gh("GET", url);
  assert.equal(wrong.status, 200);
  assert.match(wrong.body.sha, /^[0-9a-f]{40}$/);
  assert.notEqual(wrong.body.sha, head);

  await rule({ repo }, { health: "slow", health_delay_ms: 400 }, 1);
  let t = Date.now();
  assert.equal((await gh("GET", url)).status, 200);
  assert.ok(Date.now() - t >= 400, "slow health");

  const run = sha("health-run");
  await rule({ sha: run }, { queue_ms: 0, build_ms: 0 });
  const id = (await dispatch(repo, run)).body.workflow_run_id;
  await rule({ sha: run }, { api_delay_ms: 400 });
  t = Date.now();
  assert.equal((await runState(repo, id)).id, id);
  assert.ok(Date.now() - t >= 400, "matching call delayed");
  t = Date.now();
  await gh("GET", `/repos/${repo}/deployments`);
  assert.ok(Date.now() - t < 400, "other calls are not");
});

test("calls are recorded and logged without the token; state and page show runs and deployments escaped", async () => {
  const repo = "acme/observe";
  const head = sha("observe");
  const since = Date.now();
  await rule({ repo }, { queue_ms: 0, build_ms: 0, deploy_ms: 0 });
  await gh("POST", `/repos/${repo}/actions/workflows/build.yml/dispatches`,
    { ref: "main", inputs: { git_sha: head, switchyard_dispatch_id: "<script>alert(1)</script>" } },
    { headers: { "x-correlation-id": "corr-observe-1", "user-agent": "ops-runner/e2e" } });
  await gh("GET", `/repos/${repo}/actions/runs?head_sha=${head}`, undefined, { auth: false });

  const calls = (await gh("GET", `/_calls?repo=${repo}&since=${since}`, undefined, { auth: false })).body;
  assert.deepEqual(calls.map((c) => [c.kind, c.status, c.authorized]), [["dispatch", 204, true], ["runs_list", 401, false]]);
  const [d] = calls;
  assert.equal(d.method, "POST");
  assert.equal(d.path, `/repos/${repo}/actions/workflows/build.yml/dispatches`);
  assert.equal(d.repo, repo);
  assert.equal(d.sha, head);
  assert.equal(d.correlation_id, "corr-observe-1");
  assert.equal(d.user_agent, "ops-runner/e2e");
  assert.match(d.at, /^\d{4}-\d{2}-\d{2}T/);
  assert.deepEqual(Object.keys(d).sort(), ["at", "authorized", "correlation_id", "kind", "method", "path", "repo", "sha", "status", "user_agent"]);
  assert.equal((await gh("GET", `/_calls?sha=${head}&kind=dispatch`, undefined, { auth: false })).body.length, 1);
  assert.equal((await gh("GET", "/_calls?since=yesterday", undefined, { auth: false })).status, 400);

  // Every kind of call the brief names has been seen by now (this test runs last).
  const kinds = new Set((await gh("GET", "/_calls", undefined, { auth: false })).body.map((c) => c.kind));
  for (const k of ["dispatch", "run_get", "runs_list", "artifacts", "cancel", "package_versions", "deployment_create", "deployment_list", "deployment_get", "deployment_statuses", "health"]) {
    assert.ok(kinds.has(k), k);
  }

  const s = await state();
  const run = s.runs.find((r) => r.head_sha === head);
  assert.equal(run.display_title, "switchyard <script>alert(1)</script>");
  assert.ok(["queued", "in_progress", "completed"].includes(run.status));
  assert.ok(s.deployments.length > 0 && s.deployments.every((x) => x.id && x.sha && x.environment && x.state));

  const page = await fetch(`${base}/`);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  const html = await page.text();
  assert.ok(html.includes("switchyard &lt;script&gt;alert(1)&lt;/script&gt;"));
  assert.ok(!html.includes("<script>"));

  const log = readFileSync(path.join(dir, "provider-standin.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const entry = log.find((e) => e.headers["x-correlation-id"] === "corr-observe-1");
  assert.equal(entry.kind, "dispatch");
  assert.equal(entry.method, "POST");
  assert.equal(entry.status, 204);
  assert.equal(entry.headers["user-agent"], "ops-runner/e2e");
  assert.equal(entry.body.inputs.git_sha, head);
  assert.ok(stdout.includes(`[dispatch] sha=${head.slice(0, 12)} corr=corr-observe-1`));
  for (const text of [stdout, readFileSync(path.join(dir, "provider-standin.jsonl"), "utf8"), JSON.stringify(await state())]) {
    assert.ok(!text.includes(TOKEN), "the token is never written");
    assert.ok(!/bearer|authorization/i.test(text), "nor the header");
  }
});
