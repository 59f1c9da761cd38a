// scripts/bench runs: the ops runner measured side by side in one run.
//
//   1. Wake-up latency: time from queue_run to the first phase starting, with
//      the database trigger (pg_net wake-up on queued) and with pg_cron only
//      (the trigger disabled: the per-minute ops-runner-scheduler wakes it).
//   2. Throughput: runs/minute with instant providers (the GitHub stand-in
//      answers builds and deployments at once) at max_runners 1 and 4.
//
// Times come from the database's clock (queued_at, run_events.created_at).
// A bench project of its own (deleted afterwards with its runs) keeps the
// numbers apart from other rows; the stand-in rule makes its builds instant.
//
//   node runs-client.mjs <db_url> <github_standin_url>
//   env: TRIGGER_SAMPLES (20), CRON_SAMPLES (6), THROUGHPUT_RUNS (16)
import { execFileSync } from "node:child_process";

const [dbUrl, github] = process.argv.slice(2);
const TRIGGER_SAMPLES = Number(process.env.TRIGGER_SAMPLES ?? 20);
const CRON_SAMPLES = Number(process.env.CRON_SAMPLES ?? 6);
const THROUGHPUT_RUNS = Number(process.env.THROUGHPUT_RUNS ?? 16);
const project = `bench-runs-${process.pid}`;
const repo = `switchyard/${project}`;

const sql = (query) =>
  execFileSync("psql", [dbUrl, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", query], { encoding: "utf8" }).trim();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha = () => [...crypto.getRandomValues(new Uint8Array(20))].map((b) => b.toString(16).padStart(2, "0")).join("");

async function until(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function queue(env) {
  return JSON.parse(sql(`select ops.queue_run('${project}', '${env}', '${sha()}', 'refs/heads/main', 'bench')`)).run_id;
}

/** ms from queued_at to the first phase's start, for runs that started. */
function startLatencies(runIds) {
  const list = runIds.map((id) => `'${id}'`).join(",");
  return sql(`select round(extract(epoch from min(e.created_at) - r.queued_at) * 1000, 1)
    from ops.runs r join ops.run_events e on e.run_id = r.run_id and e.message like 'Starting %'
    where r.run_id in (${list}) group by r.run_id, r.queued_at`)
    .split("\n").filter(Boolean).map(Number).sort((a, b) => a - b);
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
const finished = (ids) => Number(sql(`select count(*) from ops.runs where run_id in (${ids.map((i) => `'${i}'`).join(",")}) and finished_at is not null`));

let ruleId = null;
let settings = null;
try {
  settings = sql("select max_runners from ops.settings");
  const phases = JSON.stringify([
    { name: "build", provider: "github-actions", workflow: "build-image.yml", api_url: github, poll_seconds: 1 },
    { name: "deploy", provider: "github-deployments", api_url: github, poll_seconds: 1 },
    { name: "smoke", provider: "http-checks", retry_seconds: 1,
      checks: [{ name: "health", url: "{environment_url}/health", body_contains: "{git_sha}" }] },
    { name: "artifacts", provider: "github-artifacts", api_url: github },
  ]);
  sql(`insert into ops.projects (project_id, name, repository, phases, protected_envs)
       values ('${project}', 'bench', '${repo}', '${phases}', '{}')`);
  const rule = await fetch(`${github}/_control/rules`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ match: { repo }, behaviour: { queue_ms: 0, build_ms: 0, deploy_ms: 0 } }),
  });
  ruleId = (await rule.json()).id;

  // 1a. With the trigger: one run at a time on an idle runner.
  const triggered = [];
  for (let i = 0; i < TRIGGER_SAMPLES; i++) {
    const id = queue(`lat-trigger-${i}`);
    triggered.push(id);
    await until(`run ${id}`, () => finished([id]) === 1, 120_000);
  }
  const viaTrigger = startLatencies(triggered);

  // 1b. pg_cron only: the trigger disabled; again one run at a time on an
  // idle runner (a busy one would pick a new run up in its loop), each queued
  // at a random moment of the minute.
  const viaCronIds = [];
  sql("alter table ops.runs disable trigger runs_trigger_runner");
  try {
    for (let i = 0; i < CRON_SAMPLES; i++) {
      await sleep(Math.random() * 10_000);
      const id = queue(`lat-cron-${i}`);
      viaCronIds.push(id);
      await until(`run ${id}`, () => finished([id]) === 1, 150_000);
    }
  } finally {
    sql("alter table ops.runs enable trigger runs_trigger_runner");
  }
  const viaCron = startLatencies(viaCronIds);

  // 2. Throughput at 1 and 4 runners: a burst of runs to distinct environments.
  const throughput = {};
  for (const runners of [1, 4]) {
    sql(`update ops.settings set max_runners = ${runners}`);
    const started = Date.now();
    const ids = [];
    for (let i = 0; i < THROUGHPUT_RUNS; i++) ids.push(queue(`tp${runners}-${i}`));
    await until(`${THROUGHPUT_RUNS} runs at ${runners} runner(s)`, () => finished(ids) === THROUGHPUT_RUNS, 600_000);
    const list = ids.map((i) => `'${i}'`).join(",");
    const [span, workers, ok] = sql(`select extract(epoch from max(finished_at) - min(queued_at)),
        count(distinct claimed_by), count(*) filter (where status = 'success')
      from ops.runs where run_id in (${list})`).split("|").map(Number);
    // Most runs held at one moment: the concurrency reached.
    const peakConcurrent = Number(sql(`select max(c) from (select sum(d) over (order by t, d) as c from (
        select claimed_at as t, 1 as d from ops.runs where run_id in (${list})
        union all select finished_at, -1 from ops.runs where run_id in (${list})) e) x`));
    throughput[runners] = { span, perMinute: (THROUGHPUT_RUNS / span) * 60, workers, ok, peakConcurrent, wallMs: Date.now() - started };
  }

  const row = (label, s) =>
    console.log(`${label.padEnd(34)} ${String(s.length).padStart(7)} ${pct(s, 50).toFixed(1).padStart(10)} ${pct(s, 99).toFixed(1).padStart(10)} ${s[s.length - 1].toFixed(1).padStart(10)}`);
  console.log("\nqueue_run -> first phase starting (ms, database clock)");
  console.log(`${"path".padEnd(34)} ${"samples".padStart(7)} ${"p50".padStart(10)} ${"p99".padStart(10)} ${"max".padStart(10)}`);
  row("trigger (pg_net wake-up on queued)", viaTrigger);
  row("pg_cron only (every minute)", viaCron);
  console.log(`ratio p50 cron-only / trigger: ${(pct(viaCron, 50) / pct(viaTrigger, 50)).toFixed(1)}x`);

  console.log(`\nthroughput: ${THROUGHPUT_RUNS} runs queued at once to distinct environments, instant providers (1 s polls)`);
  console.log(`${"max_runners".padEnd(12)} ${"runs/min".padStart(9)} ${"span s".padStart(8)} ${"succeeded".padStart(10)} ${"workers".padStart(8)} ${"peak leased".padStart(12)}`);
  for (const [runners, t] of Object.entries(throughput)) {
    console.log(`${runners.padEnd(12)} ${t.perMinute.toFixed(1).padStart(9)} ${t.span.toFixed(1).padStart(8)} ${String(t.ok).padStart(10)} ${String(t.workers).padStart(8)} ${String(t.peakConcurrent).padStart(12)}`);
  }
  console.log(`ratio runs/min 4 / 1 runners: ${(throughput[4].perMinute / throughput[1].perMinute).toFixed(2)}x`);
} finally {
  if (ruleId) await fetch(`${github}/_control/rules/${ruleId}`, { method: "DELETE" }).catch(() => {});
  if (settings) sql(`update ops.settings set max_runners = ${settings}`);
  // The bench's rows: events are append-only, so they are dropped with the
  // trigger that guards them disabled, inside one transaction.
  sql(`begin;
    alter table ops.run_events disable trigger run_events_append_only;
    delete from ops.run_events where run_id in (select run_id from ops.runs where project_id = '${project}');
    alter table ops.run_events enable trigger run_events_append_only;
    delete from ops.artifacts where run_id in (select run_id from ops.runs where project_id = '${project}');
    delete from ops.approvals where run_id in (select run_id from ops.runs where project_id = '${project}');
    delete from ops.environment_locks where project_id = '${project}';
    delete from ops.runs where project_id = '${project}';
    delete from ops.projects where project_id = '${project}';
    commit;`);
}
