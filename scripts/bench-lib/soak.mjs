// `scripts/bench soak`: SOAK_RATE signed events a second (open loop) to
// odoo-webhook for SOAK_SECONDS while the router delivers them to a local
// receiver. Every 10 s it samples the memory of workerd and PostgREST (RSS)
// and of Postgres (PSS summed over its processes, so shared buffers count
// once), the queue depth of this run's events, and the answers so far. At the
// end it waits (bounded) for every accepted event to be delivered and
// completed, prints the samples and a summary, and writes .local/soak.json.
// 127.0.0.1 only; stops by itself.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT, signedLoad, sql, startReceiver, waitFor } from "../../tests/e2e/helpers.mjs";

const RATE = Number(process.env.SOAK_RATE ?? 250);
const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const SAMPLE_MS = 10_000;
const DRAIN_MS = 180_000;
const pattern = `soak${process.pid}.*`;
const type = pattern.replace("*", "created");

const kib = (text, field) => Number(text.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0);
const pidOf = (name) => Number(readFileSync(path.join(ROOT, `.local/${name}.pid`), "utf8").trim());
const rssMb = (pid) => kib(readFileSync(`/proc/${pid}/status`, "utf8"), "VmRSS") / 1024;

/** PSS of every process owned by the postgres user, in MB. */
function postgresPssMb() {
  const uid = Number(readFileSync("/etc/passwd", "utf8").match(/^postgres:[^:]*:(\d+):/m)[1]);
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, "utf8");
      if (Number(status.match(/^Uid:\s+(\d+)/m)[1]) !== uid) continue;
      total += kib(readFileSync(`/proc/${entry}/smaps_rollup`, "utf8"), "Pss");
    } catch {
      // The process ended meanwhile.
    }
  }
  return total / 1024;
}

const delivered = new Set();
const receiver = await startReceiver((request) => {
  delivered.add(request.headers["webhook-id"]);
  return { status: 200 };
});
sql(`insert into integration.routes (event_pattern, target_url, signing_secret, timeout_ms, max_concurrency)
     values ('${pattern}', '${receiver.url}/hooks/soak', 'whsec_c29hay1ydW4tc2lnbmluZy1zZWNyZXQtMDEyMzQ1Njc4', 5000, 8)`);

const samples = [];
let load;
try {
  const workerd = pidOf("workerd");
  const postgrest = pidOf("postgrest");
  const started = Date.now();
  load = signedLoad(RATE, type);
  const sample = () => {
    const answers = load.answers;
    samples.push({
      t_s: Math.round((Date.now() - started) / 1000),
      workerd_rss_mb: +rssMb(workerd).toFixed(1),
      postgrest_rss_mb: +rssMb(postgrest).toFixed(1),
      postgres_pss_mb: +postgresPssMb().toFixed(1),
      queue_depth: Number(sql(`select count(*) from integration.outbox where event_type = '${type}'
                               and status in ('pending', 'processing')`)),
      answered: answers.length,
      errors: answers.filter((a) => a.status !== 200).length,
    });
    const s = samples.at(-1);
    console.log(`${String(s.t_s).padStart(5)} s  workerd ${s.workerd_rss_mb} MB  postgrest ${s.postgrest_rss_mb} MB  ` +
      `postgres ${s.postgres_pss_mb} MB  queue ${s.queue_depth}  answered ${s.answered}  errors ${s.errors}`);
  };
  sample();
  const timer = setInterval(sample, SAMPLE_MS);
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  clearInterval(timer);
  const answers = await load.stop();
  sample();
  const ok = answers.filter((a) => a.status === 200).map((a) => a.id);
  let drainedS = null;
  const drainStart = Date.now();
  try {
    // Completed: every event of this run's type (those answered 200 and any
    // written without an answer) has left the queue.
    await waitFor("every accepted event delivered and completed", () => ok.every((id) => delivered.has(id)) &&
      sql(`select count(*) from integration.outbox where event_type = '${type}' and status <> 'completed'`) === "0",
    DRAIN_MS, 1000);
    drainedS = +((Date.now() - drainStart) / 1000).toFixed(1);
  } catch {
    // Reported below as lost.
  }
  // The whole run, and its second half, after the isolates' heaps and
  // Postgres's shared buffers have filled: flat there means no leak.
  const secondHalf = samples.filter((s) => s.t_s >= SECONDS / 2);
  const growth = (key) => {
    const half = secondHalf.map((s) => s[key]);
    return {
      start: samples[0][key],
      end: samples.at(-1)[key],
      second_half_min: Math.min(...half),
      second_half_max: Math.max(...half),
      second_half_change_pct: +(((half.at(-1) - half[0]) / half[0]) * 100).toFixed(1),
    };
  };
  const summary = {
    rate_per_s: RATE,
    seconds: SECONDS,
    achieved_per_s: +(answers.length / SECONDS).toFixed(1),
    requests: answers.length,
    ok: ok.length,
    errors: answers.length - ok.length,
    error_codes: [...new Set(answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.code}`))],
    lost: ok.filter((id) => !delivered.has(id)).length,
    max_queue_depth: Math.max(...samples.map((s) => s.queue_depth)),
    drained_after_s: drainedS,
    workerd_rss_mb: growth("workerd_rss_mb"),
    postgrest_rss_mb: growth("postgrest_rss_mb"),
    postgres_pss_mb: growth("postgres_pss_mb"),
  };
  console.log(JSON.stringify(summary, null, 2));
  writeFileSync(path.join(ROOT, ".local/soak.json"), JSON.stringify({ summary, samples }, null, 2));
  if (summary.errors > 0 || summary.lost > 0) process.exitCode = 1;
} finally {
  await load?.stop();
  await receiver.close();
  sql(`delete from integration.routes where event_pattern = '${pattern}'`);
  sql(`delete from integration.outbox_archive where event_type = '${type}'`);
}
