// ops-runner end to end: the release wasm in workerd drives runs of the seed's
// `test-project` through build -> deploy -> smoke -> artifacts against the
// GitHub stand-in (scripts/local/provider-standin.mjs, rules matched by sha),
// woken by the database through pg_net. Covers the seed's "Integration
// Testing" block, a failure in each phase (alert, no automatic retry, requeue),
// approvals (service role for named people, an operator's JWT, refusals),
// freezes and one deploy at a time per environment, rollback, cancel, and bad
// input to the function and to the RPCs.
//
// Every run but the seed's uses a random 40-hex sha (stand-in rules match on
// it) and, where runs of one environment must not wait for each other, its
// own `e2e-<random>` environment. Waits are bounded; a run that looks stalled
// (claimable, nobody holds it) gets the runner invoked again, as an operator
// would (see the wake-up test at the end for why that can be needed).
//
//   flock /tmp/switchyard-e2e.lock node --test --test-concurrency=1 tests/e2e/ops_runner.test.mjs
import { test, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, env, secrets, sql, waitFor } from "./helpers.mjs";

const RUNNER_URL = `${env.FUNCTIONS_URL}/ops-runner`;
const GITHUB = env.GITHUB_STANDIN_URL ?? "http://127.0.0.1:54380";
const MATTERMOST = env.MATTERMOST_URL ?? "http://127.0.0.1:54360";
const PROJECT = "test-project";
const PHASES = ["build", "deploy", "smoke", "artifacts"];
const FINAL = ["success", "failed", "cancelled"];
const RUN_TIMEOUT_MS = 150_000; // covers pg_cron's minute as the safety net
const TEST_TIMEOUT_MS = 300_000;

/** Every body this file got back from the function and PostgREST, for the secrets check. */
const seen = [];
/** Runs this file queued, for the secrets check and the final cleanup. */
const mine = new Set();

after(() => {
  // Nothing this file started keeps running: a run a failed test left behind is cancelled.
  for (const id of mine) cancelIfActive(id);
});

// ----------------------------------------------------------------- helpers

const newSha = () => randomBytes(20).toString("hex");
const newEnv = () => `e2e-${randomBytes(5).toString("hex")}`;
const lit = (s) => `'${String(s).replaceAll("'", "''")}'`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One jsonb value from SQL, parsed. */
function sqlJson(query) {
  const out = sql(query);
  return out === "" ? null : JSON.parse(out);
}

function runRow(runId) {
  return sqlJson(`select to_jsonb(r) from ops.runs r where run_id = ${lit(runId)}`);
}

function events(runId) {
  return sqlJson(`select coalesce(jsonb_agg(jsonb_build_object('level', level, 'message', message,
      'phase', phase, 'actor', actor, 'correlation_id', correlation_id) order by id), '[]')
    from ops.run_events where run_id = ${lit(runId)}`);
}

function artifacts(runId) {
  return sqlJson(`select coalesce(jsonb_agg(jsonb_build_object('phase', phase, 'kind', kind, 'name', name,
      'url', url, 'digest', digest, 'metadata', metadata) order by id), '[]')
    from ops.artifacts where run_id = ${lit(runId)}`);
}

// When the current test started: the rows a refusal must not write are
// those of runs queued since (an earlier test's cancelled runs may still be
// finishing in the background, writing their own events).
let testStart = "-infinity";
beforeEach(() => {
  testStart = sql("select clock_timestamp()");
});

function opsCounts() {
  const mine = `(select run_id from ops.runs where queued_at >= ${lit(testStart)})`;
  return sql(`select format('runs=%s events=%s artifacts=%s approvals=%s locks=%s run_alerts=%s',
    (select count(*) from ${mine} r), (select count(*) from ops.run_events where run_id in ${mine}),
    (select count(*) from ops.artifacts where run_id in ${mine}), (select count(*) from ops.approvals where run_id in ${mine}),
    (select count(*) from ops.environment_locks l where l.updated_at >= ${lit(testStart)}
       and not exists (select 1 from ops.runs o where o.project_id = l.project_id and o.env = l.env
                       and o.queued_at < ${lit(testStart)})),
    (select count(*) from integration.outbox where event_type like 'alert.run%' and created_at >= ${lit(testStart)}))`);
}

function alertRows(correlationId) {
  return Number(sql(`select count(*) from integration.outbox
    where event_type = 'alert.run_failed' and correlation_id = ${lit(correlationId)}`));
}

/** Queues a run as the database owner (psql), as the seed does. */
function queue(envName, sha, { ref = "refs/heads/e2e", requestedBy = "e2e" } = {}) {
  const queued = sqlJson(`select ops.queue_run(p_project_id := ${lit(PROJECT)}, p_env := ${lit(envName)},
    p_git_sha := ${lit(sha)}, p_git_ref := ${lit(ref)}, p_requested_by := ${lit(requestedBy)})`);
  mine.add(queued.run_id);
  return queued;
}

function cancelIfActive(runId) {
  try {
    sql(`select ops.cancel_run(run_id, 'e2e cleanup') from ops.runs
         where run_id = ${lit(runId)} and status not in ('success', 'failed', 'cancelled')`);
  } catch {}
}

function unfreeze(envName) {
  sql(`select ops.unlock_environment(project_id, env) from ops.environment_locks
       where project_id = ${lit(PROJECT)} and env = ${lit(envName)} and frozen`);
}

/** Invokes the runner as the database does (its invocation token). */
async function invokeRunner({ wait = true, bearer = env.OPS_RUNNER_INVOCATION_TOKEN, body = '{"reason":"e2e"}',
  method = "POST", query, headers = {} } = {}) {
  const q = query ?? (wait ? "?wait=true" : "");
  const h = { "content-type": "application/json", ...headers };
  if (bearer !== null) h.authorization = `Bearer ${bearer}`;
  const response = await fetch(`${RUNNER_URL}${q}`, {
    method,
    headers: h,
    body: ["GET", "HEAD"].includes(method) ? undefined : body,
  });
  const text = await response.text();
  seen.push(text);
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: response.status, headers: response.headers, text, json };
}

/** Wakes a runner in the background (202), without waiting for its work. */
async function kick() {
  const answer = await invokeRunner({ wait: false });
  assert.equal(answer.status, 202, answer.text);
}

/**
 * Waits until the run is in one of `statuses`. A run that sits claimable
 * (queued in a free environment, or started and not leased) for a while gets
 * the runner invoked again; `kick: false` leaves it to the database.
 */
async function waitForRun(runId, { statuses = FINAL, timeoutMs = RUN_TIMEOUT_MS, kick: mayKick = true } = {}) {
  let stalledSince = null;
  await waitFor(`run ${runId} to be ${statuses.join("|")}`, async () => {
    const [status, claimable] = sql(`select r.status, (r.status in ('queued', 'claimed', 'running')
        and coalesce(r.lease_expires_at <= now(), true)
        and not exists (select 1 from ops.environment_locks l where l.project_id = r.project_id and l.env = r.env
          and (l.frozen or (r.status = 'queued' and l.run_id is not null and l.run_id <> r.run_id))))
      from ops.runs r where r.run_id = ${lit(runId)}`).split("|");
    if (statuses.includes(status)) return true;
    if (mayKick && claimable === "t") {
      stalledSince ??= Date.now();
      if (Date.now() - stalledSince > 5000) {
        stalledSince = null;
        await kick();
      }
    } else {
      stalledSince = null;
    }
    return false;
  }, timeoutMs, 250);
  return runRow(runId);
}

/** A PostgREST RPC in schema ops, as the service role unless `bearer` says otherwise. */
async function rest(name, args, { bearer = env.SERVICE_ROLE_KEY, apikey } = {}) {
  const response = await fetch(`${env.REST_URL}/rpc/${name}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "content-profile": "ops",
      apikey: apikey ?? (bearer === env.SERVICE_ROLE_KEY ? env.SERVICE_ROLE_KEY : env.ANON_KEY),
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
    },
    body: JSON.stringify(args),
  });
  const text = await response.text();
  seen.push(text);
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, body, text };
}

/** A table of schema ops through PostgREST. */
async function restGet(pathAndQuery, { bearer = env.SERVICE_ROLE_KEY, apikey } = {}) {
  const response = await fetch(`${env.REST_URL}/${pathAndQuery}`, {
    headers: {
      "accept-profile": "ops",
      apikey: apikey ?? (bearer === env.SERVICE_ROLE_KEY ? env.SERVICE_ROLE_KEY : env.ANON_KEY),
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
    },
  });
  const text = await response.text();
  seen.push(text);
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, body, text };
}

/** An HS256 JWT as the gateway and PostgREST accept it. */
function jwt(claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({
    aud: "authenticated",
    exp: Math.floor(Date.now() / 1000) + 600,
    ...claims,
  })}`;
  return `${unsigned}.${createHmac("sha256", env.JWT_SECRET).update(unsigned).digest("base64url")}`;
}

// ---- the GitHub stand-in ----

/** Adds a stand-in rule for this test and removes it when the test ends. */
async function rule(t, match, behaviour, times) {
  const response = await fetch(`${GITHUB}/_control/rules`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ match, behaviour, times }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  let removed = false;
  const remove = async () => {
    if (removed) return;
    removed = true;
    await fetch(`${GITHUB}/_control/rules/${body.id}`, { method: "DELETE" });
  };
  t.after(remove);
  return remove;
}

async function calls(params = {}) {
  const q = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  const response = await fetch(`${GITHUB}/_calls?${q}`);
  assert.equal(response.status, 200);
  return response.json();
}

async function dispatches(sha, since) {
  return (await calls({ sha, kind: "dispatch", since })).length;
}

async function standinState() {
  return (await fetch(`${GITHUB}/_state`)).json();
}

async function mattermost(since) {
  const response = await fetch(`${MATTERMOST}/messages?since=${since}&limit=10000`);
  assert.equal(response.status, 200);
  return response.json();
}

const messages = (evs) => evs.map((e) => e.message);
const started = (evs) => evs.filter((e) => /^Starting /.test(e.message)).map((e) => e.message.slice(9));

/** The trail of a successful deploy run, in order. */
function assertSuccessfulTrail(evs, { queuedBy = /^Run queued by \S+/ } = {}) {
  const list = messages(evs);
  assert.equal(list.length, 11, list.join("\n"));
  assert.match(list[0], queuedBy);
  assert.match(list[1], /^Claimed by \S+$/);
  assert.deepEqual(list.slice(2), [
    "Starting build", "Completed build",
    "Starting deploy", "Completed deploy",
    "Starting smoke", "Completed smoke",
    "Starting artifacts", "Completed artifacts",
    "Run succeeded",
  ]);
  assert.ok(evs.every((e) => e.level === "info"), JSON.stringify(evs));
}

// ------------------------------------------------------- 1. the seed block

// The seed's "Integration Testing" statements, unchanged.
const SEED_QUEUE = `SELECT ops.queue_run(
  p_project_id := 'test-project',
  p_env := 'dev',
  p_git_sha := 'abc123def456',
  p_git_ref := 'refs/heads/feature/test'
);`;
const SEED_STATUS = `SELECT run_id, status, finished_at
FROM ops.runs
WHERE project_id = 'test-project'
ORDER BY queued_at DESC
LIMIT 1;`;
const SEED_EVENTS = `SELECT level, message
FROM ops.run_events
WHERE run_id = (
  SELECT run_id FROM ops.runs
  WHERE project_id = 'test-project'
  ORDER BY queued_at DESC
  LIMIT 1
);`;

test("the seed's Integration Testing block: queued, woken by the database, built, deployed, checked and recorded", { timeout: TEST_TIMEOUT_MS }, async () => {
  const since = Date.now() - 1;
  const queued = JSON.parse(sql(SEED_QUEUE));
  mine.add(queued.run_id);
  assert.equal(queued.status, "queued");
  assert.equal(queued.approval_required, false);
  assert.equal(queued.duplicate, false);

  // Nobody invokes the runner here: the database wakes it (pg_net, or pg_cron's minute).
  await waitFor("the latest test-project run to finish", () =>
    FINAL.includes(sql(`select status from ops.runs where project_id = 'test-project' order by queued_at desc limit 1`)),
  RUN_TIMEOUT_MS, 250);

  const [runId, status, finishedAt] = sql(SEED_STATUS).split("|");
  assert.equal(runId, queued.run_id);
  assert.equal(status, "success", JSON.stringify(runRow(runId)));
  assert.ok(finishedAt, "finished_at is set");

  const parse = (out) => out.split("\n").map((line) => {
    const i = line.indexOf("|");
    return { level: line.slice(0, i), message: line.slice(i + 1) };
  });
  // The seed's statement has no ORDER BY, so PostgreSQL returns the rows in
  // whatever order its plan reads them (a bitmap heap scan: physical order,
  // seen out of order here). Its rows are checked as a set, and their order
  // with the same statement ordered by the events' ids.
  const seedRows = parse(sql(SEED_EVENTS));
  const rows = parse(sql(SEED_EVENTS.replace(/\n\);$/, "\n)\nORDER BY id;")));
  const key = (r) => `${r.level}|${r.message}`;
  assert.deepEqual(seedRows.map(key).sort(), rows.map(key).sort(), "the seed's statement returns the run's events");
  assertSuccessfulTrail(rows, { queuedBy: /^Run queued by postgres$/ });

  const run = runRow(runId);
  assert.equal(run.kind, "deploy");
  assert.equal(run.env, "dev");
  assert.equal(run.git_ref, "refs/heads/feature/test");
  assert.equal(run.error, null);
  assert.equal(run.lease_token, null, "a finished run holds no lease");

  // What the run recorded.
  const digest = run.progress.build.output.image_digest;
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(run.progress.build.output.image, `ghcr.io/switchyard/test-project@${digest}`);
  for (const phase of PHASES) assert.equal(run.progress[phase].done, true, phase);
  const recorded = artifacts(runId);
  const kinds = new Set(recorded.map((a) => a.kind));
  for (const kind of ["build_log", "image", "deployment", "evidence", "sbom"]) assert.ok(kinds.has(kind), `artifact ${kind}: ${JSON.stringify(recorded)}`);
  const image = recorded.find((a) => a.kind === "image");
  assert.equal(image.name, "ghcr.io/switchyard/test-project");
  assert.equal(image.digest, digest);
  assert.equal(image.phase, "build");
  assert.equal(recorded.find((a) => a.kind === "deployment").digest, digest, "the deployment names the image it deployed");
  assert.equal(recorded.find((a) => a.kind === "evidence" && a.phase === "artifacts").metadata.git_sha, "abc123def456");
  const state = await standinState();
  const published = state.packages.find((p) => p.name === "switchyard/test-project");
  assert.ok(published.versions.some((v) => v.name === digest && v.tags.includes("abc123def456")), "the digest is the one the build published");
  const deployed = state.deployments.filter((d) => d.id === run.progress.deploy.output.deployment_id);
  assert.equal(deployed.length, 1);
  assert.equal(deployed[0].image_digest, digest);
  assert.equal(deployed[0].environment, "dev");

  // Exactly one dispatch for this run, and every call carried the run's correlation id.
  assert.equal(await dispatches("abc123def456", since), 1);
  const all = await calls({ since });
  const forRun = all.filter((c) => c.sha === "abc123def456" || c.correlation_id === run.correlation_id);
  const kindsCalled = new Set(forRun.map((c) => c.kind));
  for (const kind of ["dispatch", "run_get", "package_versions", "deployment_create", "deployment_statuses", "health", "artifacts"]) {
    assert.ok(kindsCalled.has(kind), `no ${kind} call: ${JSON.stringify([...kindsCalled])}`);
  }
  for (const c of forRun) {
    assert.equal(c.correlation_id, run.correlation_id, `${c.kind} ${c.path}`);
    assert.equal(c.user_agent, "switchyard-ops-runner");
    // The deployed app's health endpoint takes no token; everything on the API does.
    if (c.kind !== "health") assert.equal(c.authorized, true, `${c.kind} ${c.path} was not authorized`);
  }

  // The trace, as an operator tool reads it.
  const trace = await rest("get_trace", { correlation_id: run.correlation_id });
  assert.equal(trace.status, 200, trace.text);
  const runRows = trace.body.filter((r) => r.source === "ops.runs");
  assert.equal(runRows.length, 1);
  assert.equal(runRows[0].subject_id, runId);
  assert.equal(runRows[0].kind, "run.deploy");
  assert.equal(runRows[0].detail.status, "success");
  const eventRows = trace.body.filter((r) => r.source === "ops.run_events");
  assert.deepEqual(eventRows.map((r) => r.detail.message), rows.map((r) => r.message));
  assert.ok(eventRows.every((r) => r.subject_id === runId));
  assert.equal(alertRows(run.correlation_id), 0, "a successful run raises no alert");
});

// ---------------------------------------------------- 2. failure per phase

/** Queues a run whose sha a stand-in rule makes fail, and checks how it failed. */
async function failingRun(t, behaviour, phase, cause) {
  const sha = newSha();
  const envName = newEnv();
  const removeRule = await rule(t, { sha }, behaviour);
  const since = Date.now() - 1;
  const queued = queue(envName, sha);
  t.after(() => cancelIfActive(queued.run_id));
  const run = await waitForRun(queued.run_id);
  assert.equal(run.status, "failed", JSON.stringify(run));
  assert.equal(run.phase, phase);
  assert.match(run.error, cause);
  assert.ok(run.error.startsWith(`${phase}: `), run.error);
  const evs = events(queued.run_id);
  const errors = evs.filter((e) => e.level === "error");
  assert.equal(errors.length, 1, JSON.stringify(evs));
  assert.ok(errors[0].message.startsWith(`Run failed at ${phase}: ${phase}: `), errors[0].message);
  assert.match(errors[0].message, cause);
  assert.equal(errors[0].phase, phase);
  assert.equal(messages(evs).at(-1), errors[0].message, "the failure is the last event");
  const reached = started(evs);
  assert.deepEqual(reached, PHASES.slice(0, PHASES.indexOf(phase) + 1), "later phases never start");
  assert.equal(alertRows(run.correlation_id), 1, "one alert.run_failed for the run");
  const alert = sqlJson(`select payload from integration.outbox
    where event_type = 'alert.run_failed' and correlation_id = ${lit(run.correlation_id)}`);
  assert.equal(alert.details.run_id, run.run_id);
  assert.equal(alert.details.phase, phase);
  assert.equal(alert.details.env, envName);
  assert.equal(alert.details.project_id, PROJECT);

  // No automatic retry: a runner invoked again finds nothing of this run to do.
  const again = await invokeRunner();
  assert.equal(again.status, 200, again.text);
  assert.equal(runRow(run.run_id).status, "failed");
  assert.equal(sql(`select count(*) from ops.runs where git_sha = ${lit(sha)}`), "1");
  assert.equal(await dispatches(sha, since), 1, "one dispatch, never a second");
  return { sha, envName, run, since, removeRule };
}

test("a refused dispatch fails the build, alerts Mattermost, and is not retried", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const since = Date.now() - 1;
  const { run } = await failingRun(t, { dispatch: "fail" }, "build",
    /GitHub refused to dispatch build-image\.yml on switchyard\/test-project: HTTP 422: Workflow does not have 'workflow_dispatch' trigger/);
  assert.equal(run.progress.build.done, undefined);
  // The router delivers the alert to the Mattermost stand-in's alerts hook.
  const delivered = await waitFor("the run_failed alert in Mattermost", async () =>
    (await mattermost(since)).find((m) => m.hook === "alerts" && JSON.stringify(m.message).includes(run.run_id)),
  60_000, 250);
  assert.match(delivered.message.text, /failed/i);
  assert.ok(delivered.message.text.includes(run.correlation_id), delivered.message.text);
  // The router settles its batch after the deliveries: the row follows.
  await waitFor("the alert's outbox row to be completed", () =>
    sql(`select status from integration.outbox where event_type = 'alert.run_failed' and correlation_id = ${lit(run.correlation_id)}`)
      === "completed",
  15_000, 100);
});

test("a build that concludes failure fails the run; requeued without the fault, it succeeds under the same correlation id", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { sha, run, since, removeRule } = await failingRun(t, { build: "failure" }, "build",
    /the build workflow concluded failure: http:\/\/127\.0\.0\.1:54380\/switchyard\/test-project\/actions\/runs\/\d+/);
  assert.ok(artifacts(run.run_id).length === 0, "a failed phase records no artifacts");

  await removeRule();
  const requeued = sqlJson(`select ops.requeue_run(${lit(run.run_id)}, 'e2e-requeue')`);
  mine.add(requeued.run_id);
  assert.notEqual(requeued.run_id, run.run_id);
  assert.equal(requeued.status, "queued");
  assert.equal(requeued.correlation_id, run.correlation_id);
  const second = await waitForRun(requeued.run_id);
  assert.equal(second.status, "success", JSON.stringify(second));
  assert.equal(second.requeue_of, run.run_id);
  assert.equal(second.git_sha, sha);
  assert.equal(second.env, run.env);
  assert.equal(runRow(run.run_id).status, "failed", "the failed run stays failed");
  assertSuccessfulTrail(events(requeued.run_id), { queuedBy: /^Run queued by e2e-requeue$/ });
  assert.equal(await dispatches(sha, since), 2, "one dispatch per run");
  // One trace holds both.
  const trace = await rest("get_trace", { correlation_id: run.correlation_id });
  assert.equal(trace.status, 200, trace.text);
  assert.deepEqual(
    new Set(trace.body.filter((r) => r.source === "ops.runs").map((r) => r.subject_id)),
    new Set([run.run_id, requeued.run_id]),
  );
});

test("a deployment that ends in failure fails the run at deploy; smoke and artifacts never start", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { run } = await failingRun(t, { deploy: "failure" }, "deploy",
    /deployment \d+ to e2e-[0-9a-f]+ ended in failure: Deploying [0-9a-f]{12} failed/);
  assert.equal(run.progress.build.done, true, "the build had completed");
  assert.deepEqual(artifacts(run.run_id).map((a) => a.phase), ["build", "build"]);
});

test("a failing smoke check fails the run at smoke after its attempts; artifacts never start", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { run } = await failingRun(t, { health: "fail" }, "smoke",
    /smoke check health failed after 3 attempt\(s\): HTTP 500, expected 200/);
  assert.equal(run.progress.deploy.done, true);
  assert.ok(!artifacts(run.run_id).some((a) => a.phase === "smoke" || a.phase === "artifacts"));
});

test("each failed run is announced: a second failure in the same environment gets its own alert", {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const envName = newEnv();
  const runs = [];
  for (let i = 0; i < 2; i++) {
    const sha = newSha();
    await rule(t, { sha }, { dispatch: "fail" });
    const queued = queue(envName, sha);
    t.after(() => cancelIfActive(queued.run_id));
    const run = await waitForRun(queued.run_id);
    assert.equal(run.status, "failed");
    runs.push(run);
  }
  assert.equal(alertRows(runs[0].correlation_id), 1);
  assert.equal(alertRows(runs[1].correlation_id), 1, "the second failed run has an alert of its own");
});

// ---------------------------------------------------------- 3. approvals

test("a protected environment waits for someone other than the requester; reject cancels", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const who = randomBytes(3).toString("hex");
  const alice = `alice-${who}`;
  const bob = `bob-${who}`;
  const sha = newSha();
  const since = Date.now() - 1;
  const queued = await rest("queue_run", {
    p_project_id: PROJECT, p_env: "production", p_git_sha: sha, p_git_ref: "refs/heads/main", p_requested_by: alice,
  });
  assert.equal(queued.status, 200, queued.text);
  mine.add(queued.body.run_id);
  t.after(() => cancelIfActive(queued.body.run_id));
  assert.equal(queued.body.status, "awaiting_approval");
  assert.equal(queued.body.approval_required, true);
  const runId = queued.body.run_id;

  // A runner finds nothing to do with it.
  assert.equal((await invokeRunner()).status, 200);
  assert.equal(runRow(runId).status, "awaiting_approval");
  assert.equal(await dispatches(sha, since), 0, "nothing is dispatched before approval");
  assert.deepEqual(messages(events(runId)), [`Run queued by ${alice}`, "Waiting for approval: production is a protected environment"]);

  // Four eyes: the requester may not approve.
  const before = opsCounts();
  const own = await rest("approve_run", { p_run_id: runId, p_approved_by: alice });
  assert.equal(own.status, 403, own.text);
  assert.equal(own.body.message, "forbidden");
  assert.equal(opsCounts(), before, "a refused approval writes nothing");
  assert.equal(runRow(runId).status, "awaiting_approval");

  const approved = await rest("approve_run", { p_run_id: runId, p_approved_by: bob, p_comment: "ship it" });
  assert.equal(approved.status, 200, approved.text);
  assert.deepEqual(approved.body, { run_id: runId, status: "queued", decided_by: bob });
  const approval = sqlJson(`select to_jsonb(a) from ops.approvals a where run_id = ${lit(runId)}`);
  assert.equal(approval.status, "approved");
  assert.equal(approval.requested_by, alice);
  assert.equal(approval.decided_by, bob);
  assert.equal(approval.comment, "ship it");
  assert.ok(approval.decided_at);

  const run = await waitForRun(runId);
  assert.equal(run.status, "success", JSON.stringify(run));
  const evs = messages(events(runId));
  assert.deepEqual(evs.slice(0, 3), [`Run queued by ${alice}`, "Waiting for approval: production is a protected environment", `Approved by ${bob}`]);
  assert.equal(evs.at(-1), "Run succeeded");
  assert.equal(await dispatches(sha, since), 1);
  const deployed = (await standinState()).deployments.find((d) => d.id === run.progress.deploy.output.deployment_id);
  assert.equal(deployed.environment, "production");

  // Another production run, rejected.
  const other = await rest("queue_run", {
    p_project_id: PROJECT, p_env: "production", p_git_sha: newSha(), p_git_ref: "refs/heads/main", p_requested_by: alice,
  });
  assert.equal(other.status, 200, other.text);
  mine.add(other.body.run_id);
  t.after(() => cancelIfActive(other.body.run_id));
  const rejected = await rest("reject_run", { p_run_id: other.body.run_id, p_rejected_by: bob, p_comment: "not today" });
  assert.equal(rejected.status, 200, rejected.text);
  assert.equal(rejected.body.status, "cancelled");
  const gone = runRow(other.body.run_id);
  assert.equal(gone.status, "cancelled");
  assert.equal(gone.error, `rejected by ${bob}`);
  assert.ok(gone.finished_at);
  assert.equal(sql(`select status || '|' || decided_by from ops.approvals where run_id = ${lit(other.body.run_id)}`), `rejected|${bob}`);
  // Decided once: approving it now is a refused state change.
  const late = await rest("approve_run", { p_run_id: other.body.run_id, p_approved_by: `carol-${who}` });
  assert.equal(late.status, 409, late.text);
  assert.equal(late.body.message, "invalid_state");
});

test("an operator's JWT approves in their own name; a plain user and anon may not, nor read runs", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const who = randomBytes(3).toString("hex");
  const operatorEmail = `operator-${who}@example.com`;
  const operator = jwt({ role: "authenticated", sub: randomUUID(), email: operatorEmail, app_metadata: { role: "operator" } });
  const user = jwt({ role: "authenticated", sub: randomUUID(), email: `user-${who}@example.com`, app_metadata: {} });
  const queued = await rest("queue_run", {
    p_project_id: PROJECT, p_env: "production", p_git_sha: newSha(), p_git_ref: "refs/heads/main", p_requested_by: `alice-${who}`,
  });
  assert.equal(queued.status, 200, queued.text);
  const runId = queued.body.run_id;
  mine.add(runId);
  t.after(() => cancelIfActive(runId));

  // A signed-in user who is not an operator: refused, and sees no runs.
  const before = opsCounts();
  const byUser = await rest("approve_run", { p_run_id: runId }, { bearer: user });
  assert.equal(byUser.status, 403, byUser.text);
  assert.equal(byUser.body.message, "forbidden");
  const userQueue = await rest("queue_run", { p_project_id: PROJECT, p_env: newEnv(), p_git_sha: newSha(), p_git_ref: "refs/heads/main" }, { bearer: user });
  assert.equal(userQueue.status, 403, userQueue.text);
  const userRead = await restGet(`runs?run_id=eq.${runId}`, { bearer: user });
  assert.equal(userRead.status, 200, userRead.text);
  assert.deepEqual(userRead.body, [], "row level security hides runs from non-operators");
  const userEvents = await restGet(`run_events?run_id=eq.${runId}`, { bearer: user });
  assert.deepEqual(userEvents.body, []);
  // Anonymous: no access to the schema at all.
  const anonApprove = await rest("approve_run", { p_run_id: runId }, { bearer: env.ANON_KEY });
  assert.ok([401, 403].includes(anonApprove.status), anonApprove.text);
  const anonRead = await restGet(`runs?run_id=eq.${runId}`, { bearer: env.ANON_KEY });
  assert.ok([401, 403].includes(anonRead.status), anonRead.text);
  assert.equal(opsCounts(), before, "refused calls write nothing");
  assert.equal(runRow(runId).status, "awaiting_approval");

  // The operator reads it, and approves: their verified email decides, whatever they pass.
  const opRead = await restGet(`runs?run_id=eq.${runId}&select=run_id,status`, { bearer: operator });
  assert.equal(opRead.status, 200, opRead.text);
  assert.deepEqual(opRead.body, [{ run_id: runId, status: "awaiting_approval" }]);
  const approved = await rest("approve_run", { p_run_id: runId, p_approved_by: "someone-else" }, { bearer: operator });
  assert.equal(approved.status, 200, approved.text);
  assert.equal(approved.body.decided_by, operatorEmail);
  assert.equal(sql(`select decided_by from ops.approvals where run_id = ${lit(runId)}`), operatorEmail);
  assert.ok(messages(events(runId)).includes(`Approved by ${operatorEmail}`));
  const run = await waitForRun(runId);
  assert.equal(run.status, "success", JSON.stringify(run));

  // An operator who requested a run may not approve it either.
  const own = await rest("queue_run", { p_project_id: PROJECT, p_env: "production", p_git_sha: newSha(), p_git_ref: "refs/heads/main", p_requested_by: "ignored" }, { bearer: operator });
  assert.equal(own.status, 200, own.text);
  mine.add(own.body.run_id);
  t.after(() => cancelIfActive(own.body.run_id));
  assert.equal(runRow(own.body.run_id).requested_by, operatorEmail);
  const ownApprove = await rest("approve_run", { p_run_id: own.body.run_id }, { bearer: operator });
  assert.equal(ownApprove.status, 403, ownApprove.text);
  const withdrawn = await rest("cancel_run", { p_run_id: own.body.run_id, p_reason: "e2e: not needed" }, { bearer: operator });
  assert.equal(withdrawn.status, 200, withdrawn.text);
  assert.equal(withdrawn.body.status, "cancelled");
  assert.equal(sql(`select status || '|' || decided_by from ops.approvals where run_id = ${lit(own.body.run_id)}`), `withdrawn|${operatorEmail}`);
});

// ------------------------------------------------- 4. freezes and the lock

test("a frozen environment holds its queued runs (not failed, nothing dispatched) until unfrozen", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const envName = newEnv();
  const sha = newSha();
  const since = Date.now() - 1;
  const frozen = sqlJson(`select ops.lock_environment('test-project', ${lit(envName)}, 'release freeze')`);
  t.after(() => unfreeze(envName));
  assert.equal(frozen.frozen, true);
  assert.equal(frozen.frozen_by, "postgres");
  const queued = queue(envName, sha);
  t.after(() => cancelIfActive(queued.run_id));
  assert.equal(queued.status, "queued");

  const invoked = await invokeRunner();
  assert.equal(invoked.status, 200, invoked.text);
  assert.equal(invoked.json.ok, true);
  for (const key of ["worker_id", "claimed", "succeeded", "failed", "cancelled", "yielded", "lost", "elapsed_ms"]) {
    assert.ok(key in invoked.json.summary, `summary.${key}: ${invoked.text}`);
  }
  assert.equal(invoked.json.correlation_id, invoked.headers.get("x-correlation-id"));
  // It stays queued for a while: checked repeatedly, with the runner invoked in between.
  for (let i = 0; i < 8; i++) {
    await sleep(500);
    if (i === 4) assert.equal((await invokeRunner()).status, 200);
    const run = runRow(queued.run_id);
    assert.equal(run.status, "queued", JSON.stringify(run));
    assert.equal(run.claimed_by, null);
  }
  assert.equal(await dispatches(sha, since), 0, "nothing dispatched into a frozen environment");
  assert.deepEqual(messages(events(queued.run_id)), ["Run queued by e2e"]);

  const unfrozen = sqlJson(`select ops.unlock_environment('test-project', ${lit(envName)})`);
  assert.equal(unfrozen.frozen, false);
  const run = await waitForRun(queued.run_id);
  assert.equal(run.status, "success", JSON.stringify(run));
  assertSuccessfulTrail(events(queued.run_id));
  assert.equal(await dispatches(sha, since), 1);
  assert.equal(sql(`select frozen_reason || '|' || unfrozen_by from ops.environment_locks
    where project_id = 'test-project' and env = ${lit(envName)}`), "release freeze|postgres");
});

test("one deploy at a time per environment: the second run starts only after the first finished", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const envName = newEnv();
  const first = newSha();
  const second = newSha();
  await rule(t, { sha: first }, { build_ms: 6000 });
  const a = queue(envName, first);
  const b = queue(envName, second);
  t.after(() => { cancelIfActive(a.run_id); cancelIfActive(b.run_id); });

  await waitForRun(a.run_id, { statuses: ["running"] });
  await waitFor("the first run's build to be under way", () =>
    sql(`select progress -> 'build' -> 'state' ? 'workflow_run_id' from ops.runs where run_id = ${lit(a.run_id)}`) === "t",
  60_000, 250);
  // While the first deploys, the environment is its and the second waits.
  assert.equal(sql(`select run_id from ops.environment_locks where project_id = 'test-project' and env = ${lit(envName)}`), a.run_id);
  assert.equal(runRow(b.run_id).status, "queued");
  assert.equal((await invokeRunner()).status, 200);
  assert.equal(runRow(b.run_id).status, "queued", "a runner does not take a busy environment");

  const runA = await waitForRun(a.run_id);
  const runB = await waitForRun(b.run_id);
  assert.equal(runA.status, "success", JSON.stringify(runA));
  assert.equal(runB.status, "success", JSON.stringify(runB));
  assert.equal(sql(`select
      (select min(created_at) from ops.run_events where run_id = ${lit(b.run_id)} and message like 'Starting %')
        >= (select finished_at from ops.runs where run_id = ${lit(a.run_id)})
      and (select claimed_at from ops.runs where run_id = ${lit(b.run_id)})
        >= (select finished_at from ops.runs where run_id = ${lit(a.run_id)})`), "t",
  "the second run was claimed and started its first phase after the first run finished");
  assert.equal(sql(`select coalesce(run_id, '') from ops.environment_locks where project_id = 'test-project' and env = ${lit(envName)}`), "", "released at the end");
});

// ------------------------------------------------------------ 5. rollback

test("a rollback redeploys the earlier run's image without building", { timeout: TEST_TIMEOUT_MS }, async () => {
  const envName = newEnv();
  const since = Date.now() - 1;
  const shas = [newSha(), newSha()];
  const done = [];
  for (const sha of shas) {
    const queued = queue(envName, sha);
    const run = await waitForRun(queued.run_id);
    assert.equal(run.status, "success", JSON.stringify(run));
    done.push(run);
  }
  const [earlier, latest] = done;
  const earlierDigest = earlier.progress.build.output.image_digest;
  assert.notEqual(earlierDigest, latest.progress.build.output.image_digest);
  assert.equal(await dispatches(shas[0], since), 1);

  const queued = sqlJson(`select ops.queue_rollback(p_project_id := 'test-project', p_env := ${lit(envName)})`);
  mine.add(queued.run_id);
  const rollback = await waitForRun(queued.run_id);
  assert.equal(rollback.status, "success", JSON.stringify(rollback));
  assert.equal(rollback.kind, "rollback");
  assert.equal(rollback.rollback_of, earlier.run_id);
  assert.equal(rollback.git_sha, shas[0]);
  assert.equal(rollback.progress.build.skipped, true);
  assert.equal(rollback.progress.build.output.image_digest, earlierDigest);
  assert.equal(rollback.progress.build.output.rollback_of, earlier.run_id);

  const evs = messages(events(queued.run_id));
  assert.equal(evs[0], `Rollback to ${earlier.run_id} queued by postgres`);
  assert.ok(!evs.includes("Starting build"), evs.join("\n"));
  assert.deepEqual(started(events(queued.run_id)), ["deploy", "smoke", "artifacts"]);
  assert.equal(evs.at(-1), "Run succeeded");
  assert.equal(await dispatches(shas[0], since), 1, "no new dispatch for the rolled-back sha");

  const deployment = (await standinState()).deployments.find((d) => d.id === rollback.progress.deploy.output.deployment_id);
  assert.equal(deployment.sha, shas[0]);
  assert.equal(deployment.environment, envName);
  assert.equal(deployment.image_digest, earlierDigest, "the deployment payload carries the earlier image");
  assert.equal(artifacts(queued.run_id).find((a) => a.kind === "deployment").digest, earlierDigest);
  assert.ok(!artifacts(queued.run_id).some((a) => a.kind === "image"), "nothing was built");
});

// -------------------------------------------------------------- 6. cancel

test("cancelling a run whose build hangs stops the workflow run and ends it cancelled", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const envName = newEnv();
  const sha = newSha();
  await rule(t, { sha }, { build: "hang" });
  const since = Date.now() - 1;
  const queued = queue(envName, sha);
  t.after(() => cancelIfActive(queued.run_id));
  await waitFor("the hanging build to be followed", () =>
    sql(`select status = 'running' and progress -> 'build' -> 'state' ->> 'stage' = 'running'
           and lease_expires_at > now()
         from ops.runs where run_id = ${lit(queued.run_id)}`) === "t",
  RUN_TIMEOUT_MS, 200);
  const workflowRunId = runRow(queued.run_id).progress.build.state.workflow_run_id;

  const cancel = sqlJson(`select ops.cancel_run(${lit(queued.run_id)}, 'e2e cancel')`);
  assert.equal(cancel.cancel_requested, true, "the run was held by a runner: the cancel is requested");
  const run = await waitForRun(queued.run_id, { timeoutMs: 60_000 });
  assert.equal(run.status, "cancelled", JSON.stringify(run));
  assert.equal(run.cancel_requested_by, "postgres");
  const evs = events(queued.run_id);
  assert.ok(messages(evs).includes("Cancel requested by postgres: e2e cancel"), messages(evs).join("\n"));
  assert.match(messages(evs).at(-1), /^Run cancelled: /);
  assert.deepEqual(started(evs), ["build"]);
  assert.equal(alertRows(run.correlation_id), 0, "a cancel is not a failure");

  const cancels = await calls({ kind: "cancel", since });
  const mineCancel = cancels.filter((c) => c.path === `/repos/switchyard/test-project/actions/runs/${workflowRunId}/cancel`);
  assert.equal(mineCancel.length, 1, JSON.stringify(cancels));
  assert.equal(mineCancel[0].method, "POST");
  assert.equal(mineCancel[0].correlation_id, run.correlation_id);
  assert.equal(mineCancel[0].authorized, true);
  const workflowRun = (await standinState()).runs.find((r) => r.id === workflowRunId);
  assert.equal(workflowRun.conclusion, "cancelled");
  assert.equal(await dispatches(sha, since), 1);
});

// ------------------------------------------------- 7. the function's input

test("the function refuses bad invocations with a stable code and writes nothing", { timeout: TEST_TIMEOUT_MS }, async () => {
  const before = opsCounts();
  const cases = [
    { name: "no bearer", bearer: null, status: 401, code: "unauthorized" },
    // A bearer that is not the platform's: 403, as for every Auth::Platform function (shared/src/auth.rs).
    { name: "the anon key", bearer: env.ANON_KEY, status: 403, code: "forbidden" },
    { name: "the health checker's token", bearer: env.HEALTH_CHECK_INVOCATION_TOKEN, status: 403, code: "forbidden" },
    { name: "the router's token", bearer: env.OUTBOX_ROUTER_INVOCATION_TOKEN, status: 403, code: "forbidden" },
    { name: "GET", method: "GET", status: 405, code: "method_not_allowed" },
    { name: "a number as reason", body: '{"reason": 7}', status: 422, code: "validation_failed" },
    { name: "not JSON", body: "{not json", status: 400, code: "invalid_json" },
    { name: "wait=maybe", query: "?wait=maybe", status: 422, code: "validation_failed" },
    { name: "an unknown parameter", query: "?wait=true&batch=9", status: 422, code: "validation_failed" },
    { name: "too large", body: JSON.stringify({ reason: "x".repeat(5000) }), status: 413, code: "payload_too_large" },
  ];
  for (const c of cases) {
    const answer = await invokeRunner({ bearer: c.bearer === undefined ? env.OPS_RUNNER_INVOCATION_TOKEN : c.bearer, method: c.method, body: c.body, query: c.query });
    assert.equal(answer.status, c.status, `${c.name}: ${answer.text}`);
    assert.equal(answer.json?.ok, false, c.name);
    assert.equal(answer.json.error.code, c.code, c.name);
    assert.equal(typeof answer.json.error.message, "string");
    assert.ok(answer.json.correlation_id, c.name);
    assert.equal(answer.json.correlation_id, answer.headers.get("x-correlation-id"), c.name);
    if (c.method === "GET") assert.equal(answer.headers.get("allow"), "POST");
    for (const secret of secrets().filter(Boolean)) assert.ok(!answer.text.includes(secret), `${c.name} leaks a secret`);
  }
  assert.equal(opsCounts(), before, "refused invocations write nothing");
});

// ---------------------------------------------------- 8. the RPCs' input

test("the RPCs refuse bad input through PostgREST with their codes and write nothing", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  // A queued run that stays queued (its environment is frozen), and a finished one.
  const envName = newEnv();
  sql(`select ops.lock_environment('test-project', ${lit(envName)}, 'e2e: rpc input')`);
  t.after(() => unfreeze(envName));
  const waiting = queue(envName, newSha());
  t.after(() => cancelIfActive(waiting.run_id));
  const ended = queue(newEnv(), newSha());
  sql(`select ops.cancel_run(${lit(ended.run_id)}, 'e2e: ended')`);
  // A runner may have claimed it first: then the cancel goes through the runner.
  await waitFor("the cancelled run to end", () => runRow(ended.run_id).status === "cancelled", 30_000, 100);
  const wrongToken = randomUUID();
  const good = { p_project_id: PROJECT, p_env: "dev", p_git_sha: newSha(), p_git_ref: "refs/heads/main" };

  const cases = [
    ["queue_run", { ...good, p_project_id: "no-such-project" }, 422, "validation_failed", "p_project_id"],
    ["queue_run", { ...good, p_git_sha: "NOT-A-SHA" }, 422, "validation_failed", "p_git_sha"],
    ["queue_run", { ...good, p_env: "Prod Env" }, 422, "validation_failed", "p_env"],
    ["queue_run", { ...good, p_git_ref: "" }, 422, "validation_failed", "p_git_ref"],
    ["queue_run", { ...good, p_metadata: [1] }, 422, "validation_failed", "p_metadata"],
    ["queue_rollback", { p_project_id: PROJECT, p_env: newEnv() }, 409, "invalid_state", null],
    ["requeue_run", { p_run_id: waiting.run_id }, 409, "invalid_state", null],
    ["finish_run", { p_run_id: "run-nosuchrun", p_status: "failed" }, 422, "validation_failed", "p_run_id"],
    ["finish_run", { p_run_id: waiting.run_id, p_status: "done" }, 422, "validation_failed", "p_status"],
    ["finish_run", { p_run_id: ended.run_id, p_status: "failed" }, 409, "stale_lease", null],
    ["approve_run", { p_run_id: waiting.run_id, p_approved_by: "bob" }, 409, "invalid_state", null],
    ["reject_run", { p_run_id: waiting.run_id, p_rejected_by: "bob" }, 409, "invalid_state", null],
    ["approve_run", { p_run_id: "run-nosuchrun", p_approved_by: "bob" }, 422, "validation_failed", "p_run_id"],
    ["cancel_run", { p_run_id: waiting.run_id, p_reason: "" }, 422, "validation_failed", "p_reason"],
    ["cancel_run", { p_run_id: ended.run_id, p_reason: "again" }, 409, "invalid_state", null],
    ["unlock_environment", { p_project_id: PROJECT, p_env: newEnv() }, 409, "invalid_state", null],
    ["lock_environment", { p_project_id: PROJECT, p_env: newEnv(), p_reason: "" }, 422, "validation_failed", "p_reason"],
    ["claim_next_run", { p_worker_id: "" }, 422, "validation_failed", "p_worker_id"],
    ["claim_next_run", { p_worker_id: "e2e", p_lease_seconds: 1 }, 422, "validation_failed", "p_lease_seconds"],
    ["start_phase", { p_run_id: waiting.run_id, p_lease_token: wrongToken, p_phase: "build" }, 409, "stale_lease", null],
    ["save_progress", { p_run_id: waiting.run_id, p_lease_token: wrongToken, p_phase: "build", p_state: {} }, 409, "stale_lease", null],
    ["heartbeat_run", { p_run_id: waiting.run_id, p_lease_token: wrongToken }, 409, "stale_lease", null],
    ["complete_phase", { p_run_id: waiting.run_id, p_lease_token: wrongToken, p_phase: "build", p_output: {}, p_artifacts: [] }, 409, "stale_lease", null],
    ["yield_run", { p_run_id: waiting.run_id, p_lease_token: wrongToken }, 409, "stale_lease", null],
    ["finish_run", { p_run_id: waiting.run_id, p_status: "failed", p_lease_token: wrongToken }, 409, "stale_lease", null],
    ["complete_phase", { p_run_id: ended.run_id, p_lease_token: wrongToken, p_phase: "build" }, 409, "stale_lease", null],
    ["append_run_event", { p_run_id: waiting.run_id, p_level: "fatal", p_message: "x" }, 422, "validation_failed", "p_level"],
    ["get_trace", { correlation_id: "" }, 422, "validation_failed", "correlation_id"],
  ];
  const runBefore = JSON.stringify(runRow(waiting.run_id));
  for (const [name, args, status, message, hint] of cases) {
    const before = opsCounts();
    const answer = await rest(name, args);
    const label = `${name}(${JSON.stringify(args)})`;
    assert.equal(answer.status, status, `${label}: ${answer.text}`);
    assert.equal(answer.body.message, message, label);
    if (hint) assert.equal(answer.body.hint, hint, label);
    assert.ok(answer.body.details, `${label} says why`);
    assert.equal(opsCounts(), before, `${label} writes nothing`);
  }
  assert.equal(JSON.stringify(runRow(waiting.run_id)), runBefore, "the waiting run is untouched");
  assert.equal(runRow(waiting.run_id).status, "queued");
});

// ------------------------------------------------------------- wake-ups

test("unfreezing wakes a runner even when the wake-up sent for the frozen run found nothing to claim", {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const envName = newEnv();
  sql(`select ops.lock_environment('test-project', ${lit(envName)}, 'e2e: wake-up')`);
  t.after(() => unfreeze(envName));
  const queued = queue(envName, newSha());
  t.after(() => cancelIfActive(queued.run_id));
  // The wake-up queueing sent (or one already on its way) has reached a runner,
  // and a runner (this invocation) has looked and found nothing to claim.
  await waitFor("the wake-up to be delivered", () =>
    sql(`select exists (select 1 from net._http_response n where n.created >= s.last_wake_at)
         from ops.runner_signal s`) === "t",
  10_000, 100);
  assert.equal((await invokeRunner()).status, 200);
  assert.equal(runRow(queued.run_id).status, "queued");

  const [sentBefore, , sentAfter, reason] = sql(`select wakes_sent from ops.runner_signal;
    select ops.unlock_environment('test-project', ${lit(envName)});
    select wakes_sent from ops.runner_signal;
    select last_wake_reason from ops.runner_signal;`).split("\n");
  try {
    assert.equal(Number(sentAfter), Number(sentBefore) + 1, "unlock_environment sent a wake-up");
    assert.equal(reason, "unfrozen");
  } finally {
    // Either way the run is finished, not left for the next test.
    const run = await waitForRun(queued.run_id);
    assert.equal(run.status, "success", JSON.stringify(run));
  }
});

// -------------------------------------------------------------- secrets

test("no response, run row, event, artifact or log holds a secret", { timeout: TEST_TIMEOUT_MS }, () => {
  const values = secrets().filter((s) => typeof s === "string" && s.length >= 8);
  assert.ok(values.includes(env.OPS_RUNNER_GITHUB_TOKEN));
  assert.ok(seen.length > 0);
  for (const body of seen) for (const secret of values) assert.ok(!body.includes(secret), "a response leaks a secret");
  const ids = [...mine].map(lit).join(", ");
  assert.ok(ids, "this file queued runs");
  const stored = [
    sql(`select coalesce(string_agg(to_jsonb(r)::text, E'\\n'), '') from ops.runs r where run_id in (${ids})`),
    sql(`select coalesce(string_agg(to_jsonb(e)::text, E'\\n'), '') from ops.run_events e where run_id in (${ids})`),
    sql(`select coalesce(string_agg(to_jsonb(a)::text, E'\\n'), '') from ops.artifacts a where run_id in (${ids})`),
    sql(`select coalesce(string_agg(to_jsonb(o)::text, E'\\n'), '') from integration.outbox o where event_type = 'alert.run_failed'`),
  ];
  assert.ok(stored[1].length > 0);
  for (const text of stored) for (const secret of values) assert.ok(!text.includes(secret), "a stored row holds a secret");
  for (const log of [".local/workerd.log", ".local/github.log", ".local/provider-standin.jsonl"]) {
    const file = path.join(ROOT, log);
    if (!existsSync(file)) {
      assert.notEqual(log, ".local/workerd.log", "workerd.log exists");
      continue;
    }
    const text = readFileSync(file, "utf8");
    assert.ok(!text.includes(env.OPS_RUNNER_GITHUB_TOKEN), `${log} holds the GitHub token`);
  }
});
