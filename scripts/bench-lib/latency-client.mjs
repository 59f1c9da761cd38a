// `scripts/bench latency`: EVENTS events posted to odoo-webhook at RATE a
// second, spread over the seed's three domains. For each event it takes the
// moment odoo-webhook answered 200 and the moment the handler got it, and
// prints one JSON line of percentiles (ms).
//
//   node latency-client.mjs n8n       handlers in n8n; receipt time from the workflow
//                                     (props.handler_received_at), via the Mattermost stand-in
//   node latency-client.mjs receiver  a local receiver on its own route: the router alone
// Reads SUPABASE_URL, ODOO_WEBHOOK_SECRET, DB_URL, EVENTS, RATE, MATTERMOST_PORT, and WAIT_S (120):
// how long to wait for the last deliveries once every event is answered. Besides the
// percentiles it reports the delivery rate, the drain time after the last answer, the
// backlog sampled every 5 s and the latency by 30 s of sending (`scripts/bench backpressure`).
import http from "node:http";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { signedOdooRequest } from "./odoo.mjs";

const mode = process.argv[2];
const events = Number(process.env.EVENTS ?? 1000);
const rate = Number(process.env.RATE ?? 10);
const waitMs = Number(process.env.WAIT_S ?? 120) * 1000;
const sql = (q) => execFileSync("psql", [process.env.DB_URL, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", q], { encoding: "utf8" }).trim();

const answeredAt = new Map(); // event id -> ms since epoch
const receivedAt = new Map();
const postedAt = new Map(); // Mattermost stand-in arrival, n8n mode only

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const now = Date.now();
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    if (mode === "n8n") {
      receivedAt.set(body.props.event_id, body.props.handler_received_at);
      postedAt.set(body.props.event_id, now);
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    } else {
      receivedAt.set(body.id, now);
      res.writeHead(204).end();
    }
  });
});
server.keepAliveTimeout = 60_000;
await new Promise((r) => server.listen(mode === "n8n" ? Number(process.env.MATTERMOST_PORT) : 0, "127.0.0.1", r));

const domains = mode === "n8n"
  ? [["expense.submitted", "hr.expense"], ["asset.depreciation_posted", "account.asset"], ["finance_task.overdue", "project.task"]]
  : [["benchlatency.created", "hr.expense"]];
if (mode === "receiver") {
  sql(`insert into integration.routes (event_pattern, target_url, signing_secret)
       values ('benchlatency.*', 'http://127.0.0.1:${server.address().port}/bench', 'whsec_YmVuY2gtbGF0ZW5jeS1zZWNyZXQtMDEyMzQ1Njc=')
       on conflict (event_pattern) do update set target_url = excluded.target_url`);
}
const wakesBefore = Number(sql("select wakes_sent from integration.router_signal"));

// Keys stay taken in event_log for good, so every run needs keys of its own.
const run = randomUUID().slice(0, 8);
let errors = 0;
const sends = [];
const started = performance.now();
// Backlog, sampled from the first send: this run's events answered but not yet at the handler.
const backlog = [];
const sampleBacklog = () => backlog.push({ s: Math.round((performance.now() - started) / 1000),
  waiting: [...answeredAt.keys()].filter((id) => !receivedAt.has(id)).length });
const sampler = setInterval(sampleBacklog, 5000);
for (let i = 0; i < events; i++) {
  const due = started + (i * 1000) / rate;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const [type, aggregate] = domains[i % domains.length];
  const [url, init] = signedOdooRequest(process.env.SUPABASE_URL, process.env.ODOO_WEBHOOK_SECRET,
    `bench-latency-${run}-${i}`, { event_type: type, aggregate_type: aggregate, aggregate_id: String(i), payload: { n: i } });
  sends.push(fetch(url, init).then(async (response) => {
    const at = Date.now();
    const body = await response.json();
    if (response.status === 200) answeredAt.set(body.event_id, at);
    else errors++;
  }, () => errors++));
}
await Promise.all(sends);
const answeredAll = Date.now();
const deadline = answeredAll + waitMs;
while ([...answeredAt.keys()].some((id) => !receivedAt.has(id)) && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 100));
}
clearInterval(sampler);
sampleBacklog();
server.close();
if (mode === "receiver") sql("delete from integration.routes where event_pattern = 'benchlatency.*'");

const ids = [...answeredAt.keys()];
const lost = ids.filter((id) => !receivedAt.has(id)).length;
function percentiles(of) {
  const values = ids.filter((id) => of.has(id)).map((id) => of.get(id) - answeredAt.get(id)).sort((a, b) => a - b);
  const pct = (p) => values[Math.min(values.length - 1, Math.floor((p / 100) * values.length))];
  return { p50: pct(50), p90: pct(90), p99: pct(99), max: values[values.length - 1] };
}
const receipts = ids.filter((id) => receivedAt.has(id)).map((id) => receivedAt.get(id));
const firstAnswer = Math.min(...answeredAt.values());
const lastReceipt = Math.max(...receipts);
// Latency by when the event was answered, 30 s windows: does it grow, and come back?
const windows = new Map();
for (const id of ids.filter((id) => receivedAt.has(id))) {
  const w = Math.floor((answeredAt.get(id) - firstAnswer) / 30_000) * 30;
  if (!windows.has(w)) windows.set(w, []);
  windows.get(w).push(receivedAt.get(id) - answeredAt.get(id));
}
const median = (v) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];
console.log(JSON.stringify({
  events: ids.length,
  delivered_per_s: +(receipts.length / ((lastReceipt - firstAnswer) / 1000)).toFixed(1),
  drain_s: +((lastReceipt - answeredAll) / 1000).toFixed(1),
  backlog,
  p50_by_window: [...windows].sort((a, b) => a[0] - b[0]).map(([w, v]) => ({ from_s: w, events: v.length, p50_ms: median(v) })),
  errors,
  not_received: lost,
  wakes: Number(sql("select wakes_sent from integration.router_signal")) - wakesBefore,
  handler: percentiles(receivedAt),
  ...(mode === "n8n" ? { mattermost: percentiles(postedAt) } : {}),
}));
