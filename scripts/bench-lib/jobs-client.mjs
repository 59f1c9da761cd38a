// The Node halves of `scripts/bench jobs`. Each mode prints one JSON line:
// jobs, errors, seconds, rps, and p50_ms/p99_ms where there is a call to time.
//
//   node jobs-client.mjs enqueue N CONCURRENCY JOB_TYPE CORRELATION_ID
//        enqueue_job through the gateway to PostgREST, CONCURRENCY clients, N jobs in all
//   node jobs-client.mjs work rpc|sql CONCURRENCY BATCH JOB_TYPE
//        CONCURRENCY workers, each looping claim_job(batch_size BATCH) and complete_job
//        for every job it got, until a claim comes back empty; through PostgREST (rpc)
//        or as SQL over node-postgres (sql). p50/p99: one claim with its completes.
//   node jobs-client.mjs graphile-migrate DB_URL
//   node jobs-client.mjs graphile N CONCURRENCY DB_URL
//        graphile-worker's runner (concurrency CONCURRENCY, a no-op task) over the N
//        `noop` jobs already queued in DB_URL; stops once its jobs table is empty.
// Reads SUPABASE_URL, SERVICE_ROLE_KEY and DB_URL from the environment.
import { EventEmitter } from "node:events";
import pg from "pg";
import { Logger, run, runMigrations } from "graphile-worker";

const [mode, ...args] = process.argv.slice(2);
const key = process.env.SERVICE_ROLE_KEY;

async function rpc(name, body) {
  const response = await fetch(`${process.env.SUPABASE_URL}/rest/v1/rpc/${name}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "content-profile": "observability",
      apikey: key,
      authorization: `Bearer ${key}`,
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${name}: HTTP ${response.status} ${text}`);
  return JSON.parse(text);
}

function report(jobs, errors, started, latencies = []) {
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p) => (latencies.length ? +latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))].toFixed(2) : null);
  console.log(JSON.stringify({ jobs, errors, seconds: +seconds.toFixed(3), rps: +(jobs / seconds).toFixed(1), p50_ms: pct(50), p99_ms: pct(99) }));
}

async function enqueue(n, concurrency, jobType, correlationId) {
  let next = 0, jobs = 0, errors = 0;
  const latencies = [];
  const client = async () => {
    while (next < n) {
      next++;
      const t = performance.now();
      try {
        await rpc("enqueue_job", { source: "bench", job_type: jobType, correlation_id: correlationId });
        latencies.push(performance.now() - t);
        jobs++;
      } catch (e) {
        if (++errors === 1) console.error(e.message);
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, client));
  report(jobs, errors, started, latencies);
}

async function work(how, concurrency, batch, jobType) {
  const latencies = [];
  let errors = 0;
  const worker = async (i) => {
    const name = `bench-${how}-${i}`;
    let claim, complete;
    if (how === "rpc") {
      claim = () => rpc("claim_job", { worker: name, job_types: [jobType], batch_size: batch });
      complete = (job) => rpc("complete_job", { job_id: job.job_id, lease_token: job.lease_token });
    } else {
      const db = clients[i];
      // Named statements, as PostgREST and graphile-worker prepare theirs.
      claim = async () => (await db.query({ name: "claim", text: "select j from observability.claim_job($1, $2::text[], $3) j",
        values: [name, [jobType], batch] })).rows.map((r) => r.j);
      complete = (job) => db.query({ name: "complete", text: "select observability.complete_job($1::uuid, null, null, $2::uuid)",
        values: [job.job_id, job.lease_token] });
    }
    let jobs = 0;
    for (;;) {
      const t = performance.now();
      const claimed = await claim();
      if (claimed.length === 0) return jobs;
      for (const job of claimed) {
        try {
          await complete(job);
          jobs++;
        } catch (e) {
          if (++errors === 1) console.error(e.message);
        }
      }
      latencies.push(performance.now() - t);
    }
  };
  // Connections are opened before the clock starts (PostgREST's pool is open already).
  const clients = [];
  for (let i = 0; how === "sql" && i < concurrency; i++) {
    clients.push(new pg.Client({ connectionString: process.env.DB_URL }));
    await clients[i].connect();
  }
  const started = performance.now();
  const jobs = (await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)))).reduce((a, b) => a + b, 0);
  report(jobs, errors, started, latencies);
  await Promise.all(clients.map((c) => c.end()));
}

async function graphile(n, concurrency, connectionString) {
  const quiet = new Logger(() => (level, message) => { if (level === "error") console.error(message); });
  const events = new EventEmitter();
  let done = 0, errors = 0;
  events.on("job:success", () => done++);
  events.on("job:error", () => errors++);
  const pool = new pg.Pool({ connectionString, max: 1 });
  // Timed from the first fetch of a job, as the other paths from their first
  // claim: the runner's start-up (pool, migration check) is not counted.
  let started = performance.now();
  events.once("worker:getJob:start", () => (started = performance.now()));
  const runner = await run({
    connectionString, concurrency, maxPoolSize: Math.max(10, concurrency + 2), noHandleSignals: true,
    logger: quiet, events, taskList: { noop: async () => {} },
  });
  // A job is finished once graphile-worker has deleted its row; the event
  // fires before that write, so wait for the table, not the counter.
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    if (done + errors >= n && (errors > 0 || Number((await pool.query("select count(*) from graphile_worker._private_jobs")).rows[0].count) === 0)) break;
    await new Promise((r) => setTimeout(r, done + errors >= n ? 2 : 20));
  }
  report(done, errors, started);
  await runner.stop();
  await pool.end();
}

if (mode === "enqueue") await enqueue(+args[0], +args[1], args[2], args[3]);
else if (mode === "work") await work(args[0], +args[1], +args[2], args[3]);
else if (mode === "graphile-migrate") await runMigrations({ connectionString: args[0], logger: new Logger(() => () => {}) });
else if (mode === "graphile") await graphile(+args[0], +args[1], args[2]);
else throw new Error(`unknown mode ${mode}`);
