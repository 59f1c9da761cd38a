// Closed-loop HTTP load for `scripts/bench ingest`: N concurrent clients post
// for D seconds (after a warm-up), each waiting for its answer before the next
// request. Prints one JSON line: count (events), errors, seconds, rps
// (events/s), requests_per_s, p50_ms, p99_ms (per request).
//
//   node ingest-client.mjs rpc|function|batch CONCURRENCY SECONDS WARMUP_SECONDS
// Reads SUPABASE_URL, SERVICE_ROLE_KEY, ODOO_WEBHOOK_SECRET and, for batch,
// BATCH (events a request, 500) from the environment.
import { randomBytes, randomUUID, createHash } from "node:crypto";
import { signedOdooRequest } from "./odoo.mjs";

const [mode, concurrency, seconds, warmup] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const base = process.env.SUPABASE_URL;
const payload = JSON.parse(process.env.BENCH_PAYLOAD);
let sequence = 0;
// Keys stay taken in event_log for good, so every run needs keys of its own.
const run = randomUUID().slice(0, 8);

// Each event is distinct (its own key and aggregate id), as Odoo's are: two
// identical bodies signed in the same millisecond would carry the same MAC and
// the second would rightly be refused as a replay.
function nextKey() {
  return `bench-${mode}-${run}-${++sequence}`;
}

// (b) The RPC exactly as the function sends it, including a replay digest.
function rpcRequest() {
  const body = JSON.stringify({
    p_source: "odoo",
    p_idempotency_key: nextKey(),
    p_event_type: "expense.submitted",
    p_aggregate_type: "hr.expense",
    p_aggregate_id: String(sequence),
    p_payload: payload,
    p_correlation_id: "bench",
    p_scheme: "ipai-hmac",
    p_signing_key_id: "key_bench",
    p_replay_digest: createHash("sha256").update(randomBytes(16)).digest("hex"),
    p_replay_expires_at_ms: Date.now() + 300_000,
  });
  return [
    `${base}/rest/v1/rpc/ingest_event`,
    {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "content-profile": "integration",
        apikey: process.env.SERVICE_ROLE_KEY,
        authorization: `Bearer ${process.env.SERVICE_ROLE_KEY}`,
      },
      body,
    },
  ];
}

// (c) A signed event as Odoo sends it.
function functionRequest() {
  const key = nextKey();
  const event = { event_type: "expense.submitted", aggregate_type: "hr.expense", aggregate_id: String(sequence), payload };
  return signedOdooRequest(base, process.env.ODOO_WEBHOOK_SECRET, key, event);
}

// (d) A signed batch of BATCH distinct events, as an Odoo cron would send.
const BATCH = Number(process.env.BATCH ?? 500);
function batchRequest() {
  const events = Array.from({ length: BATCH }, () => {
    const key = nextKey();
    return { idempotency_key: key, event_type: "expense.submitted", aggregate_type: "hr.expense", aggregate_id: String(sequence), payload };
  });
  return signedOdooRequest(base, process.env.ODOO_WEBHOOK_SECRET, nextKey(), { events }, "odoo-webhook/batch");
}

const build = { rpc: rpcRequest, function: functionRequest, batch: batchRequest }[mode];
const perRequest = mode === "batch" ? BATCH : 1;
const latencies = [];
let errors = 0;
let measuring = false;
let stopping = false;

async function client() {
  while (!stopping) {
    const [url, init] = build();
    const started = performance.now();
    try {
      const response = await fetch(url, init);
      await response.arrayBuffer();
      if (!measuring) continue;
      if (response.status === 200) latencies.push(performance.now() - started);
      else errors++;
    } catch {
      if (measuring) errors++;
    }
  }
}

const clients = Array.from({ length: concurrency }, client);
await new Promise((r) => setTimeout(r, warmup * 1000));
measuring = true;
const began = performance.now();
await new Promise((r) => setTimeout(r, seconds * 1000));
measuring = false;
const elapsed = (performance.now() - began) / 1000;
stopping = true;
await Promise.all(clients);

latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : NaN);
console.log(
  JSON.stringify({
    count: latencies.length * perRequest,
    errors,
    seconds: +elapsed.toFixed(2),
    rps: +((latencies.length * perRequest) / elapsed).toFixed(1),
    requests_per_s: +(latencies.length / elapsed).toFixed(1),
    p50_ms: +pct(50).toFixed(2),
    p99_ms: +pct(99).toFixed(2),
  }),
);
