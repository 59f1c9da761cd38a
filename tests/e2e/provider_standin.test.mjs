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

// ---- ChatOps' slice: issues, refs, commits, pull requests, labels ----
const MAIN = "a410d51a495ee5fc52ccbbb5a0285ac76d494c41"; // every repository's main
const TAG = "1383d7cbaa251e68f4331d2f5868f0b0ffa1ddd8"; // and its v1.2.3, main's parent
const MAIN_TREE = "25dc82236a65d30641373425797a975db682a954";
const ghError = (status, message, doc, extra = {}) => ({ message, documentation_url: `https://docs.github.com/rest/${doc}`, status: String(status), ...extra });
const DOC = {
  issue: "issues/issues#get-an-issue", labels: "issues/labels#add-labels-to-an-issue", ref: "git/refs#get-a-reference",
  refCreate: "git/refs#create-a-reference", commitCreate: "git/commits#create-a-commit", commit: "commits/commits#get-a-commit",
  pull: "pulls/pulls#create-a-pull-request",
};
const validationFailed = (errors) => ghError(422, "Validation Failed", DOC.pull, { errors });
const withoutIds = ({ id, node_id, ...rest }) => rest; // ids are stable but opaque

/** A commit on top of `parent` (as the Git Data API makes one: same tree, one parent). */
async function commitOn(repo, parent = MAIN, message = "Start the fix") {
  const res = await gh("POST", `/repos/${repo}/git/commits`, { message, tree: MAIN_TREE, parents: [parent] });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.sha;
}
async function branch(repo, name, at) {
  const res = await gh("POST", `/repos/${repo}/git/refs`, { ref: `refs/heads/${name}`, sha: at });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

test("every repository starts with issues #123 and #124, branch main and tag v1.2.3", async () => {
  const repo = "acme/seeded";
  const open = await gh("GET", `/repos/${repo}/issues/123`);
  assert.equal(open.status, 200);
  const i = open.body;
  assert.equal(i.number, 123);
  assert.equal(i.title, "Login fails on Safari");
  assert.equal(i.state, "open");
  assert.equal(i.state_reason, null);
  assert.equal(i.closed_at, null);
  assert.equal(i.url, `${base}/repos/${repo}/issues/123`);
  assert.equal(i.html_url, `${base}/${repo}/issues/123`);
  assert.equal(i.user.login, "issue-reporter");
  assert.equal(typeof i.body, "string");
  assert.match(i.created_at, ISO_SECONDS);
  assert.match(i.node_id, /^I_/);
  assert.equal(i.pull_request, undefined, "an issue, not a pull request");
  assert.equal(typeof i.labels[0].id, "number");
  assert.deepEqual(i.labels.map(withoutIds), [{ url: `${base}/repos/${repo}/labels/bug`, name: "bug", color: "d73a4a", default: true, description: "Something isn't working" }]);

  const closed = (await gh("GET", `/repos/${repo}/issues/124`)).body;
  assert.deepEqual([closed.title, closed.state, closed.state_reason, closed.labels.map((l) => l.name)], ["Typo in footer", "closed", "completed", ["documentation"]]);
  assert.match(closed.closed_at, ISO_SECONDS);
  assert.equal((await gh("GET", "/repos/ACME/Seeded/issues/124")).body.id, closed.id, "owner and name without regard to case");

  const missing = await gh("GET", `/repos/${repo}/issues/999`);
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.body, ghError(404, "Not Found", DOC.issue));

  const main = await gh("GET", `/repos/${repo}/git/ref/heads/main`);
  assert.equal(main.status, 200);
  assert.match(main.body.node_id, /^REF_/);
  assert.deepEqual(withoutIds(main.body), {
    ref: "refs/heads/main", url: `${base}/repos/${repo}/git/refs/heads/main`,
    object: { sha: MAIN, type: "commit", url: `${base}/repos/${repo}/git/commits/${MAIN}` },
  });
  const tag = (await gh("GET", `/repos/${repo}/git/ref/tags/v1.2.3`)).body;
  assert.deepEqual([tag.ref, tag.object.sha, tag.object.type], ["refs/tags/v1.2.3", TAG, "commit"]);
  for (const ref of ["heads/nope", "tags/v9.9.9", "heads/v1.2.3", "tags/main"]) {
    const res = await gh("GET", `/repos/${repo}/git/ref/${ref}`);
    assert.equal(res.status, 404, ref);
    assert.deepEqual(res.body, ghError(404, "Not Found", DOC.ref));
  }
  assert.equal((await gh("GET", `/repos/${repo}/git/ref/main`)).status, 404, "heads/ or tags/ is required");

  const commit = await gh("GET", `/repos/${repo}/commits/main`);
  assert.equal(commit.status, 200);
  const c = commit.body;
  assert.equal(c.sha, MAIN);
  assert.equal(c.url, `${base}/repos/${repo}/commits/${MAIN}`);
  assert.equal(c.html_url, `${base}/${repo}/commit/${MAIN}`);
  assert.equal(c.commit.message, "Fix flaky checkout test");
  assert.equal(c.commit.tree.sha, MAIN_TREE);
  assert.equal(c.commit.url, `${base}/repos/${repo}/git/commits/${MAIN}`);
  assert.match(c.commit.author.date, ISO_SECONDS);
  assert.deepEqual(c.parents, [{ sha: TAG, url: `${base}/repos/${repo}/commits/${TAG}`, html_url: `${base}/${repo}/commit/${TAG}` }]);
  for (const [ref, want] of [["heads/main", MAIN], ["refs/heads/main", MAIN], [MAIN, MAIN], [MAIN.toUpperCase(), MAIN], [MAIN.slice(0, 7), MAIN],
    ["v1.2.3", TAG], ["tags/v1.2.3", TAG], ["refs/tags/v1.2.3", TAG], [TAG.slice(0, 10), TAG]]) {
    const res = await gh("GET", `/repos/${repo}/commits/${ref}`);
    assert.deepEqual([res.status, res.body.sha], [200, want], ref);
  }
  assert.equal((await gh("GET", `/repos/${repo}/commits/${TAG}`)).body.commit.message, "Release v1.2.3");
  for (const ref of ["nope", "v9.9.9", MAIN.slice(0, 6), "0000000", "f".repeat(40)]) {
    const res = await gh("GET", `/repos/${repo}/commits/${ref}`);
    assert.equal(res.status, 422, ref);
    assert.deepEqual(res.body, ghError(422, `No commit found for SHA: ${ref}`, DOC.commit));
  }
});

test("a hotfix: the issue, its base branch, a commit on it, the branch, a draft pull request, labels", async () => {
  const repo = "acme/hotfix";
  const issue = (await gh("GET", `/repos/${repo}/issues/123`)).body;
  const baseRef = (await gh("GET", `/repos/${repo}/git/ref/heads/main`)).body;
  assert.equal(baseRef.object.sha, MAIN);
  const baseCommit = (await gh("GET", `/repos/${repo}/commits/${baseRef.object.sha}`)).body;

  // GitHub opens no pull request for a branch with no commits of its own, so the branch gets one.
  const made = await gh("POST", `/repos/${repo}/git/commits`, { message: `Hotfix #123: ${issue.title}`, tree: baseCommit.commit.tree.sha, parents: [MAIN] });
  assert.equal(made.status, 201);
  const sha = made.body.sha;
  assert.match(sha, /^[0-9a-f]{40}$/);
  assert.notEqual(sha, MAIN);
  assert.equal(made.headers.get("location"), made.body.url);
  assert.match(made.body.node_id, /^C_/);
  assert.match(made.body.author.date, ISO_SECONDS);
  assert.deepEqual(made.body.author, made.body.committer);
  const { node_id, author, committer, ...rest } = made.body;
  assert.deepEqual(rest, {
    sha, url: `${base}/repos/${repo}/git/commits/${sha}`, html_url: `${base}/${repo}/commit/${sha}`,
    tree: { sha: MAIN_TREE, url: `${base}/repos/${repo}/git/trees/${MAIN_TREE}` }, message: "Hotfix #123: Login fails on Safari",
    parents: [{ sha: MAIN, url: `${base}/repos/${repo}/git/commits/${MAIN}`, html_url: `${base}/${repo}/commit/${MAIN}` }],
    verification: { verified: false, reason: "unsigned", signature: null, payload: null, verified_at: null },
  });

  const created = await gh("POST", `/repos/${repo}/git/refs`, { ref: "refs/heads/hotfix/issue-123", sha });
  assert.equal(created.status, 201);
  assert.deepEqual(withoutIds(created.body), {
    ref: "refs/heads/hotfix/issue-123", url: `${base}/repos/${repo}/git/refs/heads/hotfix/issue-123`,
    object: { sha, type: "commit", url: `${base}/repos/${repo}/git/commits/${sha}` },
  });
  assert.equal(created.headers.get("location"), created.body.url);
  assert.deepEqual((await gh("GET", `/repos/${repo}/git/ref/heads/hotfix/issue-123`)).body, created.body);
  assert.equal((await gh("GET", `/repos/${repo}/commits/hotfix/issue-123`)).body.sha, sha);

  const opened = await gh("POST", `/repos/${repo}/pulls`, {
    title: "Hotfix #123: Login fails on Safari", head: "hotfix/issue-123", base: "main", body: "Fixes #123.", draft: true,
  });
  assert.equal(opened.status, 201, JSON.stringify(opened.body));
  const pr = opened.body;
  assert.equal(pr.number, 125, "after the highest issue number");
  assert.equal(pr.url, `${base}/repos/${repo}/pulls/125`);
  assert.equal(pr.html_url, `${base}/${repo}/pull/125`);
  assert.equal(pr.issue_url, `${base}/repos/${repo}/issues/125`);
  assert.equal(opened.headers.get("location"), pr.url);
  assert.deepEqual([pr.state, pr.draft, pr.merged, pr.title, pr.body, pr.labels, pr.commits], ["open", true, false, "Hotfix #123: Login fails on Safari", "Fixes #123.", [], 1]);
  assert.equal(pr.user.login, "switchyard-standin");
  assert.equal(typeof pr.id, "number");
  assert.match(pr.node_id, /^PR_/);
  assert.match(pr.created_at, ISO_SECONDS);
  const side = ({ label, ref, sha: s, repo: r }) => ({ label, ref, sha: s, repo: r.full_name });
  assert.deepEqual(side(pr.head), { label: "acme:hotfix/issue-123", ref: "hotfix/issue-123", sha, repo });
  assert.deepEqual(side(pr.base), { label: "acme:main", ref: "main", sha: MAIN, repo });

  const labelled = await gh("POST", `/repos/${repo}/issues/${pr.number}/labels`, { labels: ["hotfix", "bug"] });
  assert.equal(labelled.status, 200);
  assert.ok(labelled.body.every((l) => typeof l.id === "number" && /^LA_/.test(l.node_id)));
  assert.deepEqual(labelled.body.map(withoutIds), [
    { url: `${base}/repos/${repo}/labels/hotfix`, name: "hotfix", color: "ededed", default: false, description: null },
    { url: `${base}/repos/${repo}/labels/bug`, name: "bug", color: "d73a4a", default: true, description: "Something isn't working" },
  ]);

  const asIssue = (await gh("GET", `/repos/${repo}/issues/125`)).body;
  assert.equal(asIssue.id !== pr.id && asIssue.node_id, pr.node_id, "the issue of a pull request has its node id, not its id");
  assert.equal(asIssue.html_url, pr.html_url);
  assert.equal(asIssue.draft, true);
  assert.deepEqual(asIssue.labels.map((l) => l.name), ["hotfix", "bug"]);
  assert.deepEqual(asIssue.pull_request, { url: pr.url, html_url: pr.html_url, diff_url: `${pr.html_url}.diff`, patch_url: `${pr.html_url}.patch`, merged_at: null });

  const s = await state();
  assert.deepEqual(s.refs.filter((r) => r.repo === repo).map(({ created_at, ...r }) => r), [{ repo, ref: "refs/heads/hotfix/issue-123", sha }]);
  assert.deepEqual(s.commits.filter((c) => c.repo === repo).map((c) => [c.sha, c.parents]), [[sha, [MAIN]]]);
  const [listed] = s.pull_requests.filter((p) => p.repo === repo);
  assert.match(listed.created_at, ISO_SECONDS);
  assert.deepEqual({ ...listed, created_at: undefined }, {
    repo, number: 125, title: "Hotfix #123: Login fails on Safari", head: "hotfix/issue-123", head_sha: sha, base: "main",
    draft: true, state: "open", labels: ["hotfix", "bug"], html_url: pr.html_url, created_at: undefined,
  });
  assert.deepEqual(s.label_additions.filter((l) => l.repo === repo).map(({ at, ...l }) => l), [{ repo, number: 125, added: ["hotfix", "bug"], labels: ["hotfix", "bug"] }]);
  const calls = (await gh("GET", `/_calls?repo=${repo}`, undefined, { auth: false })).body;
  assert.deepEqual(calls.map((c) => [c.kind, c.status]), [["issue_get", 200], ["ref_get", 200], ["commit_get", 200], ["commit_create", 201], ["ref_create", 201],
    ["ref_get", 200], ["commit_get", 200], ["pull_create", 201], ["labels_add", 200], ["issue_get", 200]]);
  assert.equal(calls.find((c) => c.kind === "ref_create").sha, sha);
});

test("creating refs and commits: already exists, unknown objects, bad names, nothing made when refused", async () => {
  const repo = "acme/refs";
  const refuse = async (body, message, doc = DOC.refCreate, url = `/repos/${repo}/git/refs`) => {
    const res = await gh("POST", url, body);
    assert.equal(res.status, 422, JSON.stringify(body));
    assert.deepEqual(res.body, ghError(422, message, doc), JSON.stringify(body));
  };
  await refuse({ ref: "refs/heads/main", sha: MAIN }, "Reference already exists");
  await refuse({ ref: "refs/tags/v1.2.3", sha: TAG }, "Reference already exists");
  await refuse({ ref: "refs/heads/new", sha: "0".repeat(40) }, "Object does not exist");
  await refuse({ ref: "refs/heads/new", sha: MAIN.slice(0, 7) }, "Object does not exist");
  await refuse({ ref: "heads/new", sha: MAIN }, "Reference name must contain at least three slash-separated components.");
  await refuse({ ref: "refs/heads", sha: MAIN }, "Reference name must contain at least three slash-separated components.");
  for (const ref of ["refs/heads/bad name", "refs/heads/a..b", "refs/heads/x.lock", "refs/heads/x/", "refs/heads/a~1", "refs/heads/.hidden"]) {
    await refuse({ ref, sha: MAIN }, `${ref} is not a valid ref name.`);
  }
  await refuse({}, 'Invalid request.\n\n"ref" wasn\'t supplied.');
  await refuse({ ref: "refs/heads/new" }, 'Invalid request.\n\n"sha" wasn\'t supplied.');
  await refuse({ ref: 5, sha: MAIN }, "Invalid request.\n\nFor 'properties/ref', 5 is not a string.");

  await branch(repo, "release", TAG);
  await refuse({ ref: "refs/heads/release/1.x", sha: MAIN }, "Reference update failed");
  await refuse({ ref: "refs/heads/main/sub", sha: MAIN }, "Reference update failed");
  const tagged = await gh("POST", `/repos/${repo}/git/refs`, { ref: "refs/tags/v1.2.4", sha: MAIN.toUpperCase() });
  assert.equal(tagged.status, 201);
  assert.equal(tagged.body.object.sha, MAIN);
  assert.equal((await gh("GET", `/repos/${repo}/git/ref/tags/v1.2.4`)).body.object.sha, MAIN);
  assert.equal((await gh("GET", `/repos/${repo}/commits/v1.2.4`)).body.sha, MAIN);
  assert.equal((await gh("GET", `/repos/${repo}/commits/release`)).body.sha, TAG);
  assert.equal((await gh("GET", "/repos/acme/elsewhere/git/ref/heads/release")).status, 404, "refs belong to their repository");

  const commits = `/repos/${repo}/git/commits`;
  await refuse({ message: "x", tree: "0".repeat(40), parents: [MAIN] }, "Tree SHA does not exist", DOC.commitCreate, commits);
  await refuse({ message: "x", tree: MAIN_TREE, parents: ["0".repeat(40)] }, "Parent SHA does not exist or is not a commit object", DOC.commitCreate, commits);
  await refuse({ tree: MAIN_TREE, parents: [MAIN] }, 'Invalid request.\n\n"message" wasn\'t supplied.', DOC.commitCreate, commits);
  await refuse({ message: "x", tree: MAIN_TREE, parents: MAIN }, `Invalid request.\n\nFor 'properties/parents', "${MAIN}" is not an array.`, DOC.commitCreate, commits);
  const authored = await gh("POST", commits, { message: "x", tree: MAIN_TREE, parents: [MAIN], author: { name: "Olivia", email: "olivia@example.com", date: "2026-11-01T10:00:00Z" } });
  assert.deepEqual(authored.body.author, { name: "Olivia", email: "olivia@example.com", date: "2026-11-01T10:00:00Z" });
  const other = await commitOn(repo);
  assert.notEqual(other, authored.body.sha, "two commits never share a sha");

  const s = await state();
  assert.deepEqual(s.refs.filter((r) => r.repo === repo).map((r) => [r.ref, r.sha]), [["refs/heads/release", TAG], ["refs/tags/v1.2.4", MAIN]]);
  assert.equal(s.commits.filter((c) => c.repo === repo).length, 2);
});

test("pull requests: no commits between, one open per head and base, unknown branches, bad fields; numbered after the issues", async () => {
  const repo = "acme/pulls";
  const open = (body) => gh("POST", `/repos/${repo}/pulls`, { title: "Fix", ...body });
  const refused = async (body, errors) => {
    const res = await open(body);
    assert.equal(res.status, 422, JSON.stringify(body));
    assert.deepEqual(res.body, validationFailed(errors), JSON.stringify(body));
  };
  await branch(repo, "empty", MAIN);
  await branch(repo, "behind", TAG);
  const noCommits = (b, h) => [{ resource: "PullRequest", code: "custom", message: `No commits between ${b} and ${h}` }];
  await refused({ head: "empty", base: "main" }, noCommits("main", "empty"));
  await refused({ head: "main", base: "main" }, noCommits("main", "main"));
  await refused({ head: "behind", base: "main", draft: true }, noCommits("main", "behind"));
  const invalid = (...fields) => fields.map((field) => ({ resource: "PullRequest", field, code: "invalid" }));
  await refused({ head: "nope", base: "main" }, invalid("head"));
  await refused({ head: "main", base: "nope" }, invalid("base"));
  await refused({ head: "nope", base: "nope" }, invalid("base", "head"));
  await refused({ head: "main", base: "v1.2.3" }, invalid("base"));
  await refused({ head: "someone:main", base: "behind" }, invalid("head"));
  await refused({ head: "main", base: "behind", title: "" }, [{ resource: "PullRequest", code: "missing_field", field: "title" }]);
  for (const [body, message] of [
    [{ base: "main" }, 'Invalid request.\n\n"head" wasn\'t supplied.'],
    [{ head: "main" }, 'Invalid request.\n\n"base" wasn\'t supplied.'],
    [{ head: "main", base: "behind", draft: "yes" }, "Invalid request.\n\nFor 'properties/draft', \"yes\" is not a boolean."],
    [{ head: "main", base: "behind", title: 7 }, "Invalid request.\n\nFor 'properties/title', 7 is not a string."],
  ]) {
    const res = await open(body);
    assert.equal(res.status, 422);
    assert.deepEqual(res.body, ghError(422, message, DOC.pull));
  }
  assert.deepEqual((await state()).pull_requests.filter((p) => p.repo === repo), [], "nothing opened so far");

  await branch(repo, "feature", await commitOn(repo));
  const first = await open({ head: "feature", base: "main" });
  assert.equal(first.status, 201);
  assert.deepEqual([first.body.number, first.body.draft, first.body.body, first.body.commits], [125, false, null, 1]);
  const again = [{ resource: "PullRequest", code: "custom", message: "A pull request already exists for acme:feature." }];
  await refused({ head: "feature", base: "main", draft: true }, again);
  await refused({ head: "acme:feature", base: "main" }, again);
  const toRelease = await open({ head: "acme:feature", base: "behind" });
  assert.equal(toRelease.status, 201, "the same head may go to another base");
  assert.deepEqual([toRelease.body.number, toRelease.body.commits, toRelease.body.base.sha], [126, 2, TAG]);
  assert.deepEqual((await state()).pull_requests.filter((p) => p.repo === repo).map((p) => [p.number, p.head, p.base]), [[125, "feature", "main"], [126, "feature", "behind"]]);
  assert.equal((await gh("GET", `/repos/${repo}/issues/127`)).status, 404);
  assert.equal((await gh("POST", "/repos/acme/pulls-other/pulls", { title: "x", head: "feature", base: "main" })).status, 422, "branches belong to their repository");
});

test("labels: the issue's whole list back, names matched without regard to case, unknown ones created", async () => {
  const repo = "acme/labels";
  const add = (n, body) => gh("POST", `/repos/${repo}/issues/${n}/labels`, body);
  const names = (res) => res.body.map((l) => l.name);
  const first = await add(123, { labels: ["Bug", "needs-triage"] });
  assert.equal(first.status, 200);
  assert.deepEqual(names(first), ["bug", "needs-triage"]);
  assert.deepEqual(withoutIds(first.body[1]), { url: `${base}/repos/${repo}/labels/needs-triage`, name: "needs-triage", color: "ededed", default: false, description: null });
  assert.deepEqual(names(await add(123, { labels: ["NEEDS-TRIAGE"] })), ["bug", "needs-triage"], "nothing twice");
  assert.deepEqual(names(await add(123, { labels: [{ name: "p1" }] })), ["bug", "needs-triage", "p1"]);
  assert.deepEqual(names(await add(123, { labels: [] })), ["bug", "needs-triage", "p1"]);
  assert.deepEqual((await gh("GET", `/repos/${repo}/issues/123`)).body.labels.map((l) => l.name), ["bug", "needs-triage", "p1"]);
  assert.deepEqual(names(await add(124, { labels: ["wontfix"] })), ["documentation", "wontfix"], "a closed issue too");
  assert.equal(first.body[1].id, (await add(124, { labels: ["needs-triage"] })).body[2].id, "one label per repository");

  const missing = await add(999, { labels: ["bug"] });
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.body, ghError(404, "Not Found", DOC.labels));
  for (const [body, message] of [[{}, 'Invalid request.\n\n"labels" wasn\'t supplied.'], [{ labels: "bug" }, "Invalid request.\n\nFor 'properties/labels', \"bug\" is not an array."]]) {
    const res = await add(123, body);
    assert.equal(res.status, 422);
    assert.deepEqual(res.body, ghError(422, message, DOC.labels));
  }
  const bad = await add(123, { labels: [5] });
  assert.equal(bad.status, 422);
  assert.deepEqual(bad.body, ghError(422, "Validation Failed", DOC.labels, { errors: [{ resource: "Label", code: "invalid", field: "name", value: 5 }] }));
});

test("the ChatOps endpoints want the token and make nothing without it", async () => {
  const repo = "acme/chatops-auth";
  const unauthorized = { message: "Bad credentials", documentation_url: "https://docs.github.com/rest", status: "401" };
  const requests = [
    ["GET", `/repos/${repo}/issues/123`], ["GET", `/repos/${repo}/git/ref/heads/main`], ["GET", `/repos/${repo}/commits/main`],
    ["POST", `/repos/${repo}/git/commits`, { message: "x", tree: MAIN_TREE, parents: [MAIN] }],
    ["POST", `/repos/${repo}/git/refs`, { ref: "refs/heads/x", sha: MAIN }],
    ["POST", `/repos/${repo}/pulls`, { title: "x", head: "main", base: "main" }],
    ["POST", `/repos/${repo}/issues/123/labels`, { labels: ["x"] }],
  ];
  for (const auth of [false, "Bearer wrong"]) {
    for (const [method, url, body] of requests) {
      const res = await gh(method, url, body, { auth });
      assert.equal(res.status, 401, `${method} ${url}`);
      assert.deepEqual(res.body, unauthorized);
    }
  }
  const s = await state();
  assert.deepEqual([s.refs, s.commits, s.pull_requests, s.label_additions].map((xs) => xs.filter((x) => x.repo === repo)), [[], [], [], []]);
  assert.deepEqual((await gh("GET", `/repos/${repo}/issues/123`)).body.labels.map((l) => l.name), ["bug"]);
  const calls = (await gh("GET", `/_calls?repo=${repo}`, undefined, { auth: false })).body;
  assert.deepEqual(calls.slice(0, 7).map((c) => [c.kind, c.status, c.authorized]), ["issue_get", "ref_get", "commit_get", "commit_create", "ref_create", "pull_create", "labels_add"].map((k) => [k, 401, false]));
  const garbled = await gh("POST", `/repos/${repo}/pulls`, "{not json");
  assert.deepEqual([garbled.status, garbled.body.message], [400, "Problems parsing JSON"]);
});

test("rules fail, hang or slow the ChatOps endpoints, matched by kind, repo or sha", async () => {
  const repo = "acme/chatops-faults";
  const fix = await commitOn(repo);

  await rule({ repo, kind: "ref_create" }, { api: "error" }, 1);
  const failed = await gh("POST", `/repos/${repo}/git/refs`, { ref: "refs/heads/fix", sha: fix });
  assert.deepEqual([failed.status, failed.body], [500, { message: "Server Error", documentation_url: "https://docs.github.com/rest", status: "500" }]);
  assert.equal((await gh("GET", `/repos/${repo}/git/ref/heads/fix`)).status, 404, "nothing made");
  await branch(repo, "fix", fix); // used up

  await rule({ kind: "pull_create", sha: fix }, { api: "error_after_create" }, 1);
  assert.equal((await gh("POST", `/repos/${repo}/pulls`, { title: "Fix", head: "fix", base: "main", draft: true })).status, 502);
  assert.deepEqual((await state()).pull_requests.filter((p) => p.repo === repo).map((p) => p.number), [125], "opened although the answer was an error");
  const retried = await gh("POST", `/repos/${repo}/pulls`, { title: "Fix", head: "fix", base: "main", draft: true });
  assert.equal(retried.status, 422);
  assert.equal(retried.body.errors[0].message, "A pull request already exists for acme:fix.");

  await rule({ repo, kind: "labels_add" }, { api: "forbidden" });
  const forbidden = await gh("POST", `/repos/${repo}/issues/125/labels`, { labels: ["hotfix"] });
  assert.deepEqual([forbidden.status, forbidden.body.message], [403, "Resource not accessible by integration"]);
  assert.equal((await gh("GET", `/repos/${repo}/issues/125`)).status, 200, "other kinds are not affected");
  assert.deepEqual((await gh("GET", `/repos/${repo}/issues/125`)).body.labels, []);

  await rule({ repo, kind: "ref_get" }, { api: "unauthorized" }, 1);
  assert.equal((await gh("GET", `/repos/${repo}/git/ref/heads/main`)).status, 401);
  assert.equal((await gh("GET", `/repos/${repo}/git/ref/heads/main`)).status, 200, "used up");

  await rule({ repo, kind: "issue_get" }, { api: "hang" }, 1);
  await assert.rejects(gh("GET", `/repos/${repo}/issues/123`, undefined, { signal: AbortSignal.timeout(300) }), (err) => err.name === "TimeoutError");
  assert.equal((await gh("GET", `/repos/${repo}/issues/123`)).status, 200);

  const late = await commitOn(repo, MAIN, "late");
  await rule({ kind: "ref_create", sha: late }, { api: "hang_after_create" }, 1);
  await assert.rejects(gh("POST", `/repos/${repo}/git/refs`, { ref: "refs/heads/late", sha: late }, { signal: AbortSignal.timeout(300) }), (err) => err.name === "TimeoutError");
  assert.equal((await gh("GET", `/repos/${repo}/git/ref/heads/late`)).body.object.sha, late, "made although no answer came");

  await rule({ kind: "commit_get", sha: "v1.2.3" }, { api_delay_ms: 400 }); // sha matches the ref as asked for, too
  let t = Date.now();
  assert.equal((await gh("GET", `/repos/${repo}/commits/v1.2.3`)).body.sha, TAG);
  assert.ok(Date.now() - t >= 400, "matching call delayed");
  t = Date.now();
  assert.equal((await gh("GET", `/repos/${repo}/commits/main`)).status, 200);
  assert.ok(Date.now() - t < 400, "other refs are not");

  await rule({ repo, kind: "runs_list" }, { api: "error" }, 1);
  assert.equal((await gh("GET", `/repos/${repo}/actions/runs`)).status, 500, "api rules reach the older reads too");

  const calls = (await gh("GET", `/_calls?repo=${repo}&kind=ref_create`, undefined, { auth: false })).body;
  assert.deepEqual(calls.map((c) => c.status), [500, 201, null]);
  for (const bad of [{ match: { kind: "nope" }, behaviour: { api: "error" } }, { behaviour: { api: "explode" } }, { match: { kind: 5 }, behaviour: {} }]) {
    assert.equal((await gh("POST", "/_control/rules", bad, { auth: false })).status, 400, JSON.stringify(bad));
  }
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
  for (const k of ["dispatch", "run_get", "runs_list", "artifacts", "cancel", "package_versions", "deployment_create", "deployment_list", "deployment_get", "deployment_statuses", "health",
    "issue_get", "ref_get", "ref_create", "commit_create", "commit_get", "pull_create", "labels_add"]) {
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
