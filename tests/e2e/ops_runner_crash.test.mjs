// The ops runner under races, crashes and lost answers, end to end: the real
// database (claim_next_run with SKIP LOCKED and fenced leases, yield_run, the
// coalesced wake-ups through pg_net), the real ops-runner in workerd, and the
// GitHub stand-in (scripts/local/provider-standin.mjs), whose rules make a
// test's builds fast, slow, or lose their dispatch answer. Locally a lease is
// 15 s and an invocation works 8 s (scripts/local/functions.env).
//
//   flock /tmp/switchyard-e2e.lock node --test --test-concurrency=1 tests/e2e/ops_runner_crash.test.mjs
//
// Every test deletes its stand-in rules and restores ops.settings; the crash
// test SIGKILLs only the workerd in .local/workerd.pid and always restarts it.
// Runs are never deleted (ops.run_events is append-only): each test uses its
// own shas and environments (`<kind>-<tag>-<n>`), so tests never see each
// other's runs. Takes about three minutes.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, statSync, openSync, readSync, closeSync } from "node:fs";
import path from "node:path";
import { ROOT, env, sql, stack, waitFor } from "./helpers.mjs";

const PROJECT = "test-project";
const REPO = "switchyard/test-project";
const TAG = randomBytes(3).toString("hex");
const STANDIN = env.GITHUB_STANDIN_URL;
const WORKERD_PID = path.join(ROOT, ".local/workerd.pid");
const WORKERD_LOG = path.join(ROOT, ".local/workerd.log");
const FINISHED = ["success", "failed", "cancelled"];
let PHASES = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freshSha = () => randomBytes(20).toString("hex");
const sqlJson = (query) => JSON.parse(sql(query) || "null");

// ---------------------------------------------------------------- stand-in

async function standin(method, urlPath, body) {
  // A read or a delete is retried on a network fault (an idle keep-alive socket the server
  // closed just as it was reused); a POST is not, so a rule is never added twice.
  const attempts = method === "POST" ? 1 : 3;
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await fetch(`${STANDIN}${urlPath}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    } catch (err) {
      if (attempt >= attempts) {
        throw new Error(`${method} ${STANDIN}${urlPath}: ${err.message} (${err.cause?.code ?? err.cause?.message ?? err.name})`);
      }
      console.error(`# stand-in ${method} ${urlPath} failed (${err.cause?.code ?? err.name}); retrying`);
    }
  }
}

/** The stand-in rules a test adds, deleted by `drop()` in its finally. */
function ruleSet() {
  const ids = [];
  return {
    ids,
    async add(match, behaviour, times) {
      const res = await standin("POST", "/_control/rules", { match, behaviour, times });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      ids.push(res.body.id);
      return res.body.id;
    },
    async drop() {
      // A rule with `times` is gone once used up: 404 is fine.
      await Promise.all(ids.splice(0).map((id) => standin("DELETE", `/_control/rules/${id}`)));
    },
  };
}

/** What the stand-in received: `/_calls?kind=&sha=&since=`. */
async function calls(query) {
  const res = await standin("GET", `/_calls?${new URLSearchParams(query)}`);
  assert.equal(res.status, 200);
  return res.body;
}

async function workflowRunsOf(sha) {
  const res = await standin("GET", "/_state");
  return res.body.runs.filter((r) => r.head_sha === sha);
}

// ------------------------------------------------------------------ runner

/** Runs the runner inside the request (`?wait=true`) with its invocation token, as the database does. */
async function invokeRunner(reason) {
  const started = Date.now();
  try {
    const response = await fetch(`${env.FUNCTIONS_URL}/ops-runner?wait=true`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${env.OPS_RUNNER_INVOCATION_TOKEN}` },
      body: JSON.stringify({ reason }),
    });
    const text = await response.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: response.status, summary: json?.summary ?? null, text, started, ended: Date.now() };
  } catch (err) {
    return { status: 0, summary: null, text: String(err), started, ended: Date.now() };
  }
}

// -------------------------------------------------------------------- runs

/** Queues runs of test-project in one transaction; returns [{run_id, env, git_sha}] in the given order. */
function queueRuns(pairs) {
  const envs = pairs.map(([e]) => `'${e}'`).join(",");
  const shas = pairs.map(([, s]) => `'${s}'`).join(",");
  const rows = sqlJson(`select coalesce(jsonb_agg(q.r order by q.n), '[]') from (
      select t.n, ops.queue_run('${PROJECT}', t.e, t.s, 'refs/heads/main', 'e2e-ops-crash') as r
      from unnest(array[${envs}]::text[], array[${shas}]::text[]) with ordinality as t(e, s, n)) q`);
  return rows.map((r, i) => {
    assert.equal(r.status, "queued", JSON.stringify(r));
    return { run_id: r.run_id, env: pairs[i][0], git_sha: pairs[i][1] };
  });
}

function run(runId) {
  return sqlJson(`select to_jsonb(r) from ops.runs r where run_id = '${runId}'`);
}

function runsByIds(ids) {
  return sqlJson(`select coalesce(jsonb_agg(to_jsonb(r)), '[]') from ops.runs r
    where run_id = any(array[${ids.map((id) => `'${id}'`).join(",")}]::text[])`);
}

function events(runId) {
  return sqlJson(`select coalesce(jsonb_agg(jsonb_build_object('level', level, 'message', message,
      'phase', phase, 'actor', actor, 'at', created_at) order by id), '[]')
    from ops.run_events where run_id = '${runId}'`);
}

function finishedCount(ids) {
  return Number(sql(`select count(*) from ops.runs where run_id = any(array[${ids.map((id) => `'${id}'`).join(",")}]::text[])
    and status in ('success', 'failed', 'cancelled')`));
}

async function waitFinished(ids, timeoutMs, what = `${ids.length} run(s) to finish`) {
  await waitFor(what, () => finishedCount(ids) === ids.length, timeoutMs, 250);
  return runsByIds(ids);
}

/** A run's one-line story for an assertion message. */
function story(runId) {
  const r = run(runId);
  return `${runId}: ${r?.status} at ${r?.phase} (${r?.error ?? "no error"}), invocations ${r?.invocations}, ` +
    `lease_expiries ${r?.lease_expiries}; events: ${events(runId).map((e) => `[${e.level}] ${e.message}`).join(" | ")}`;
}

/** assert.equal, with the run's story in the message only when it fails (it costs two queries). */
function equalFor(runId, actual, expected, what) {
  if (actual !== expected) assert.equal(actual, expected, `${what}: ${story(runId)}`);
}

/** Each phase started and completed exactly once, the run succeeded once. */
function assertPhasesOnce(runId) {
  const messages = events(runId).map((e) => e.message);
  const count = (m) => messages.filter((x) => x === m).length;
  for (const phase of PHASES) {
    equalFor(runId, count(`Starting ${phase}`), 1, `one "Starting ${phase}"`);
    equalFor(runId, count(`Completed ${phase}`), 1, `one "Completed ${phase}"`);
  }
  equalFor(runId, count("Run succeeded"), 1, `one "Run succeeded"`);
}

function runnerSignal() {
  return sqlJson(`select jsonb_build_object('wakes_sent', wakes_sent, 'wakes_coalesced', wakes_coalesced,
    'pg_net', (select last_value from net.http_request_queue_id_seq)) from ops.runner_signal`);
}

// ------------------------------------------------------------------ workerd

function workerdPid() {
  return Number(readFileSync(WORKERD_PID, "utf8").trim());
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts workerd if the one in the pid file is not running (always called after a kill). */
function ensureWorkerd() {
  if (!alive(workerdPid())) stack("start_workerd");
}

/** The function log from a byte offset on: its JSON lines. */
function logLinesSince(offset) {
  const size = statSync(WORKERD_LOG).size;
  if (size <= offset) return [];
  const fd = openSync(WORKERD_LOG, "r");
  const buffer = Buffer.alloc(size - offset);
  readSync(fd, buffer, 0, buffer.length, offset);
  closeSync(fd);
  return buffer.toString("utf8").split("\n").flatMap((line) => {
    const at = line.indexOf("{");
    if (at < 0) return [];
    try {
      return [JSON.parse(line.slice(at))];
    } catch {
      return [];
    }
  });
}

before(() => {
  assert.equal(sql("select edge.is_configured('ops-runner')"), "t",
    "the ops runner is registered (edge.configure_function('ops-runner', ...), scripts/dev up does it)");
  assert.equal(sql("select tgenabled from pg_trigger where tgname = 'runs_trigger_runner'"), "O",
    "ops.runs' runs_trigger_runner is enabled (scripts/bench runs disables it while it measures pg_cron alone)");
  PHASES = sqlJson(`select jsonb_path_query_array(phases, '$[*].name') from ops.projects where project_id = '${PROJECT}'`);
  assert.deepEqual(PHASES, ["build", "deploy", "smoke", "artifacts"]);
  ensureWorkerd();
});

// ---------------------------------------------------------------------------------------------

test("four runners racing over 50 queued runs execute each exactly once", { timeout: 330_000 }, async (t) => {
  const N = 50;
  const rules = ruleSet();
  const maxRunners = sql("select max_runners from ops.settings");
  const startMs = Date.now();
  const pairs = Array.from({ length: N }, (_, n) => [`race-${TAG}-${n}`, freshSha()]);
  let stop = false;
  try {
    sql("update ops.settings set max_runners = 4, updated_at = now()");
    for (const [, sha] of pairs) await rules.add({ sha }, { queue_ms: 0, build_ms: 200, deploy_ms: 100 });
    const signalBefore = runnerSignal();

    // The database's own wake-ups (trigger, fan-out) start at the commit...
    const runs = queueRuns(pairs);
    const ids = runs.map((r) => r.run_id);
    const queuedAt = Date.now();

    // ...and four more runners race them in a loop, plus a sampler of how many hold a lease at once.
    const invocations = [];
    const loop = async (k) => {
      while (!stop && Date.now() - queuedAt < 240_000 && finishedCount(ids) < N) {
        const result = await invokeRunner("race");
        invocations.push({ loop: k, ...result });
        if (!result.summary?.claimed) await sleep(250);
      }
    };
    let maxBusy = 0;
    const sampler = (async () => {
      while (!stop) {
        maxBusy = Math.max(maxBusy, Number(sql("select ops.busy_runners()")));
        await sleep(100);
      }
    })();
    const loops = [0, 1, 2, 3].map(loop);
    try {
      await waitFinished(ids, 240_000, `all ${N} race runs to finish`);
    } finally {
      stop = true;
      await Promise.all([...loops, sampler]);
    }
    const signalAfter = runnerSignal();

    const rows = runsByIds(ids);
    const notSuccess = rows.filter((r) => r.status !== "success");
    const span = sqlJson(`select jsonb_build_object('first_queued', min(queued_at), 'last_finished', max(finished_at),
        'seconds', extract(epoch from max(finished_at) - min(queued_at)),
        'workers', count(distinct claimed_by), 'invocations', sum(invocations),
        'max_invocations', max(invocations), 'expiries', sum(lease_expiries))
      from ops.runs where run_id = any(array[${ids.map((id) => `'${id}'`).join(",")}]::text[])`);
    const claimedByActors = sqlJson(`select coalesce(jsonb_agg(distinct actor), '[]') from ops.run_events
      where run_id = any(array[${ids.map((id) => `'${id}'`).join(",")}]::text[]) and message like 'Claimed by %'`);
    const explicit = invocations.filter((i) => i.summary);
    const explicitClaims = explicit.reduce((n, i) => n + i.summary.claimed, 0);
    const claimingLoops = new Set(explicit.filter((i) => i.summary.claimed > 0).map((i) => i.loop)).size;
    t.diagnostic(`${N} runs in ${Number(span.seconds).toFixed(1)} s: ${(N / (span.seconds / 60)).toFixed(1)} runs/min ` +
      `(queue -> last finish; test wall ${((Date.now() - queuedAt) / 1000).toFixed(1)} s)`);
    t.diagnostic(`claims: ${span.invocations} over ${N} runs (max ${span.max_invocations} for one run), ` +
      `${explicitClaims} by the test's ${explicit.length} ?wait=true invocations (${claimingLoops} of 4 loops claimed), ` +
      `the rest by database wake-ups; at most ${maxBusy} leases held at once`);
    t.diagnostic(`distinct workers: ${span.workers} in ops.runs.claimed_by, ${claimedByActors.length} in "Claimed by" events ` +
      `(one worker id per invocation)`);
    t.diagnostic(`wake-ups during the race: ${signalAfter.wakes_sent - signalBefore.wakes_sent} sent, ` +
      `${signalAfter.wakes_coalesced - signalBefore.wakes_coalesced} coalesced; ` +
      `${signalAfter.pg_net - signalBefore.pg_net} pg_net requests`);
    const failedHttp = invocations.filter((i) => i.status !== 200);
    assert.deepEqual(failedHttp.map((i) => `${i.status} ${i.text.slice(0, 200)}`), [], "every invocation answered 200");

    assert.deepEqual(notSuccess.map((r) => story(r.run_id)), [], "every run succeeded");
    for (const id of ids) {
      assertPhasesOnce(id);
      equalFor(id, events(id).filter((e) => e.message.startsWith("Claimed by ")).length, 1, "claimed from the queue once");
    }
    assert.equal(Number(span.expiries), 0, "no runner's lease expired");

    const shas = new Set(pairs.map(([, s]) => s));
    for (const kind of ["dispatch", "deployment_create"]) {
      const perSha = new Map();
      for (const c of await calls({ kind, since: String(startMs) })) {
        if (shas.has(c.sha)) perSha.set(c.sha, (perSha.get(c.sha) ?? 0) + 1);
      }
      const wrong = pairs.filter(([, s]) => perSha.get(s) !== 1).map(([e, s]) => `${e} ${s}: ${perSha.get(s) ?? 0}`);
      assert.deepEqual(wrong, [], `exactly one ${kind} per sha`);
    }
    // More than one runner really raced: several workers claimed, several leases were held at once.
    assert.ok(span.workers > 1, `ops.runs.claimed_by names more than one worker: ${span.workers}`);
    assert.ok(claimedByActors.length > 1, `more than one worker claimed from the queue: ${claimedByActors.join(", ")}`);
    assert.ok(maxBusy > 1, `more than one runner held a lease at once (max ${maxBusy})`);
    assert.ok(span.invocations >= N);
  } finally {
    stop = true;
    await rules.drop();
    sql(`update ops.settings set max_runners = ${maxRunners}, updated_at = now()`);
  }
});

test("a runner killed mid-build is resumed after its lease expires, without a second dispatch", { timeout: 300_000 }, async (t) => {
  const rules = ruleSet();
  const sha = freshSha();
  const startMs = Date.now();
  try {
    await rules.add({ sha }, { queue_ms: 0, build_ms: 20_000, deploy_ms: 100 });
    const [{ run_id: runId }] = queueRuns([[`crash-${TAG}-0`, sha]]);

    // Kill while a runner holds the run mid-build. The run is yielded every 8 s; a kill that
    // lands in a handoff (no lease held) is retried with the next runner.
    let killedAt;
    let atKill;
    for (let attempt = 1; ; attempt++) {
      await waitFor("the build dispatched and running under a lease", async () => {
        const r = run(runId);
        const state = r?.progress?.build?.state;
        return state?.stage === "running" && state.workflow_run_id && r.lease_token &&
          (await calls({ sha, kind: "dispatch" })).length >= 1;
      }, 30_000, 20);
      const pid = workerdPid();
      process.kill(pid, "SIGKILL");
      killedAt = Date.now();
      try {
        await waitFor("workerd to be gone", () => !alive(pid), 10_000, 20);
        atKill = run(runId);
      } finally {
        ensureWorkerd();
      }
      if (atKill.lease_token) break;
      t.diagnostic(`attempt ${attempt}: the kill landed between two invocations (no lease held); again`);
      assert.ok(attempt < 3, "killed a runner holding the lease within three attempts");
    }
    t.diagnostic(`killed workerd ${killedAt - startMs} ms after queueing, at invocation ${atKill.invocations}, ` +
      `lease until ${atKill.lease_expires_at}; restarted in ${Date.now() - killedAt} ms`);
    assert.equal(atKill.progress.build.state.stage, "running");
    assert.equal(atKill.status, "running");

    // The dead runner's lease runs out (15 s after its last write); then a runner resumes the
    // run: pg_cron's per-minute wake_runner_if_due, or, to keep this short, the test.
    await waitFor("the dead runner's lease to expire", () =>
      sql(`select lease_expires_at <= now() or lease_token is distinct from '${atKill.lease_token}'
           from ops.runs where run_id = '${runId}'`) === "t", 30_000, 100);
    const expiredAt = Date.now();
    while (finishedCount([runId]) < 1 && Date.now() - expiredAt < 180_000) {
      const result = await invokeRunner("crash_resume");
      if (!result.summary?.claimed) await sleep(500);
    }
    const r = (await waitFinished([runId], 10_000))[0];
    t.diagnostic(`lease expired ${expiredAt - killedAt} ms after the kill; finished ${Date.parse(r.finished_at) - killedAt} ms ` +
      `after it, ${r.invocations} invocations`);

    equalFor(runId, r.status, "success", "the run succeeded");
    const dispatches = await calls({ sha, kind: "dispatch" });
    assert.equal(dispatches.length, 1, `exactly one dispatch: ${JSON.stringify(dispatches)}`);
    assert.equal((await calls({ sha, kind: "deployment_create" })).length, 1, "exactly one deployment");
    equalFor(runId, r.lease_expiries, 1, "one lease expiry");
    const evs = events(runId);
    const resumed = evs.filter((e) => e.level === "warn" && /stopped without releasing the run \(its lease expired\)/.test(e.message));
    equalFor(runId, resumed.length, 1, "one 'lease expired' warning");
    assert.equal(resumed[0].phase, "build");
    t.diagnostic(`resume event: ${resumed[0].message}`);
    assert.equal(r.progress.build.output.workflow_run_id, atKill.progress.build.state.workflow_run_id,
      "the resumed runner followed the workflow run the dead one dispatched");
    assertPhasesOnce(runId);
  } finally {
    ensureWorkerd();
    await rules.drop();
  }
});

test("a dispatch whose answer is lost (hang, 502 after create) is looked up by its dispatch id, not sent again", { timeout: 240_000 }, async (t) => {
  const rules = ruleSet();
  const cases = [
    { mode: "hang_after_create", sha: freshSha(), env: `lost-${TAG}-hang` },
    { mode: "error_after_create", sha: freshSha(), env: `lost-${TAG}-502` },
  ];
  try {
    for (const c of cases) await rules.add({ sha: c.sha }, { dispatch: c.mode, queue_ms: 0, build_ms: 1000, deploy_ms: 100 });
    const startMs = Date.now();
    const runs = queueRuns(cases.map((c) => [c.env, c.sha]));
    runs.forEach((r, i) => (cases[i].runId = r.run_id));

    // Both stored as `dispatching` before the request: what a runner dying in it would leave.
    for (const c of cases) {
      c.dispatching = await waitFor(`${c.mode}: the dispatch stored before it is sent`, () => {
        const state = run(c.runId)?.progress?.build?.state;
        return state?.stage && state.stage !== "" ? state : null;
      }, 20_000, 10);
    }
    const rows = await waitFinished(runs.map((r) => r.run_id), 180_000);
    for (const c of cases) {
      const r = rows.find((x) => x.run_id === c.runId);
      t.diagnostic(`${c.mode}: ${r.status} in ${Date.parse(r.finished_at) - startMs} ms, ${r.invocations} invocations; ` +
        `first stored stage ${c.dispatching.stage}`);
      equalFor(c.runId, r.status, "success", `${c.mode}: the run succeeded`);
      const dispatches = await calls({ sha: c.sha, kind: "dispatch" });
      assert.equal(dispatches.length, 1, `${c.mode}: exactly one dispatch: ${JSON.stringify(dispatches)}`);
      assert.equal(dispatches[0].status, c.mode === "hang_after_create" ? null : 502, "the answer was lost");
      const workflowRuns = await workflowRunsOf(c.sha);
      assert.equal(workflowRuns.length, 1, "one workflow run exists");
      assert.equal(workflowRuns[0].display_title, `switchyard ${c.runId}-build`, "named for its dispatch id");
      assert.equal(r.progress.build.output.workflow_run_id, workflowRuns[0].id, "found by its dispatch id");
      assert.equal(c.dispatching.dispatch_id, `${c.runId}-build`);
      assert.ok(["dispatching", "locating", "running"].includes(c.dispatching.stage));
      assert.equal((await calls({ sha: c.sha, kind: "deployment_create" })).length, 1);
      equalFor(c.runId, r.lease_expiries, 0, "no lease expired");
      assertPhasesOnce(c.runId);
    }
  } finally {
    await rules.drop();
  }
});

test("a run longer than one invocation's budget completes across invocations, its lease released between them", { timeout: 240_000 }, async (t) => {
  const rules = ruleSet();
  const sha = freshSha();
  const logFrom = statSync(WORKERD_LOG).size;
  try {
    await rules.add({ sha }, { queue_ms: 0, build_ms: 20_000, deploy_ms: 100 });
    const startMs = Date.now();
    const [{ run_id: runId }] = queueRuns([[`long-${TAG}-0`, sha]]);
    // Only the database's wake-ups (the trigger, then each yield's handoff) drive it.
    const r = (await waitFinished([runId], 180_000))[0];
    const log = logLinesSince(logFrom);
    const yielded = log.filter((l) => l.event === "run_yielded" && l.run_id === runId);
    const lost = log.filter((l) => l.event === "run_lost" && l.run_id === runId);
    const failedWork = log.filter((l) => l.event === "work_failed" && l.correlation_id === r.correlation_id);
    const stale = log.filter((l) => l.correlation_id === r.correlation_id && JSON.stringify(l).includes("stale_lease"));
    t.diagnostic(`${r.status} in ${Date.parse(r.finished_at) - startMs} ms over ${r.invocations} invocations; ` +
      `${yielded.length} run_yielded lines (successor woken: ${yielded.map((y) => y.successor_woken).join(", ")})`);

    equalFor(runId, r.status, "success", "the run succeeded");
    assert.ok(r.invocations >= 3, `at least three invocations (20 s build, 8 s budget): ${r.invocations}`);
    assert.ok(yielded.length >= 2, `the run was yielded between invocations: ${yielded.length}`);
    assert.equal(yielded.length, r.invocations - 1, "every invocation but the last yielded it");
    assert.equal((await calls({ sha, kind: "dispatch" })).length, 1, "still exactly one dispatch");
    assert.equal((await calls({ sha, kind: "deployment_create" })).length, 1);
    equalFor(runId, r.lease_expiries, 0, "each invocation released the lease");
    assert.deepEqual(events(runId).filter((e) => e.level === "warn" || e.level === "error").map((e) => e.message), [],
      "no lease-expired warning, no error");
    assert.deepEqual([...lost, ...failedWork, ...stale], [], "no stale_lease, no lost run, no failed work");
    assertPhasesOnce(runId);
  } finally {
    await rules.drop();
  }
});

test("a burst of 20 queued runs is coalesced into a few wake-ups", { timeout: 240_000 }, async (t) => {
  const N = 20;
  const rules = ruleSet();
  const pairs = Array.from({ length: N }, (_, n) => [`burst-${TAG}-${n}`, freshSha()]);
  try {
    assert.equal(sql("select edge.is_configured('ops-runner')"), "t", "the runner is registered");
    for (const [, sha] of pairs) await rules.add({ sha }, { queue_ms: 0, build_ms: 200, deploy_ms: 100 });
    const maxRunners = Number(sql("select max_runners from ops.settings"));
    const before = runnerSignal();
    // Separate statements, each its own transaction: each insert fires the trigger.
    const burstStarted = Date.now();
    const script = pairs.map(([e, s]) =>
      `select ops.queue_run('${PROJECT}', '${e}', '${s}', 'refs/heads/main', 'e2e-ops-burst') ->> 'run_id';`).join("\n");
    const ids = execFileSync("psql", [env.DB_URL, "-qAtX", "-v", "ON_ERROR_STOP=1"], { input: script, encoding: "utf8" })
      .trim().split("\n");
    const burstMs = Date.now() - burstStarted;
    const afterBurst = runnerSignal();
    assert.equal(ids.length, N);

    const rows = await waitFinished(ids, 180_000, `all ${N} burst runs to finish`);
    const afterAll = runnerSignal();
    const d = (a, b, k) => b[k] - a[k];
    t.diagnostic(`burst of ${N} queue_run transactions in ${burstMs} ms: wakes_sent +${d(before, afterBurst, "wakes_sent")}, ` +
      `wakes_coalesced +${d(before, afterBurst, "wakes_coalesced")}, pg_net requests +${d(before, afterBurst, "pg_net")}`);
    t.diagnostic(`until all ${N} finished: wakes_sent +${d(before, afterAll, "wakes_sent")}, ` +
      `wakes_coalesced +${d(before, afterAll, "wakes_coalesced")}, pg_net requests +${d(before, afterAll, "pg_net")} ` +
      `(max_runners ${maxRunners}, fan-out and handoffs included)`);

    const sent = d(before, afterBurst, "wakes_sent");
    const coalesced = d(before, afterBurst, "wakes_coalesced");
    assert.ok(sent >= 1, "the burst woke a runner");
    assert.ok(sent <= maxRunners + 2, `far fewer wake-ups than runs queued: ${sent} for ${N}`);
    assert.ok(d(before, afterBurst, "pg_net") < N / 2, `far fewer pg_net requests than runs: ${d(before, afterBurst, "pg_net")}`);
    assert.ok(coalesced > 0, "later wake-ups were coalesced");
    assert.ok(sent + coalesced >= N, `every queued run asked for a wake-up: ${sent} sent + ${coalesced} coalesced`);
    assert.deepEqual(rows.filter((r) => r.status !== "success").map((r) => story(r.run_id)), [], "every run succeeded");
    for (const id of ids) assertPhasesOnce(id);
    assert.ok(d(before, afterAll, "wakes_sent") < N, `fewer wake-ups than runs overall: ${d(before, afterAll, "wakes_sent")}`);
  } finally {
    await rules.drop();
  }
});

// The runner stores a provider's new state (`requesting`, `dispatching`) before the request that
// state stands for, and only then checks whether the budget still allows a request: with 1 s or
// less left it yields, and the request is never sent. The next runner reads `requesting` as "sent,
// answer lost", looks the deployment up, never finds it, and fails the run after locate_seconds.
// Here the build's last request (the GHCR versions lookup, delayed 7 s by the stand-in) returns
// with under 1 s of the 8 s budget left, so the deploy phase starts at the end of the budget.
test("a request prepared at the end of an invocation's budget is still sent exactly once", { timeout: 240_000 }, async (t) => {
  const rules = ruleSet();
  const sha = freshSha();
  try {
    // Oldest first: the versions lookup (its request names the repository, not the sha) is
    // delayed once; every request that names the sha takes the newer rule and is not delayed.
    await rules.add({ repo: REPO }, { api_delay_ms: 7000 }, 1);
    await rules.add({ sha }, { api_delay_ms: 0, queue_ms: 0, build_ms: 1500, deploy_ms: 100 });
    const startMs = Date.now();
    const [{ run_id: runId }] = queueRuns([[`edge-${TAG}-0`, sha]]);
    const requesting = await waitFor("the deploy phase started", () => run(runId)?.progress?.deploy ? run(runId) : null,
      60_000, 50);
    t.diagnostic(`deploy started ${Date.now() - startMs} ms after queueing, stored state ` +
      `${JSON.stringify(requesting.progress.deploy.state)}, lease ${requesting.lease_token ? "held" : "released"}`);
    const r = (await waitFinished([runId], 180_000))[0];
    const creates = await calls({ sha, kind: "deployment_create" });
    t.diagnostic(`${r.status} after ${Date.parse(r.finished_at) - startMs} ms, ${r.invocations} invocations, ` +
      `${creates.length} deployment request(s); error: ${r.error ?? "none"}`);
    equalFor(runId, creates.length, 1, "the deployment was requested exactly once");
    equalFor(runId, r.status, "success", "the run succeeded");
    assert.equal((await calls({ sha, kind: "dispatch" })).length, 1);
    assertPhasesOnce(runId);
  } finally {
    await rules.drop();
  }
});
