// The HTTP halves of `scripts/bench drain`. Each mode drains the bench events
// already queued and prints one JSON line: rows, seconds, rows_per_s.
//
//   node drain-client.mjs rpc CONCURRENCY      (b) router_claim + settle_outbox over PostgREST, no delivery
//   node drain-client.mjs router CONCURRENCY   (c) outbox-router runs (?wait=true): claim, deliver, settle
// (c) needs the receiver: `node drain-client.mjs receiver PORT` answers 204 at
// once and prints the number of deliveries it got when stopped (SIGTERM).
// Reads SUPABASE_URL and SERVICE_ROLE_KEY from the environment.
import http from "node:http";

const [mode, arg] = [process.argv[2], Number(process.argv[3])];
const base = process.env.SUPABASE_URL;
const key = process.env.SERVICE_ROLE_KEY;
const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };

async function rpc(name, args) {
  const response = await fetch(`${base}/rest/v1/rpc/${name}`, {
    method: "POST",
    headers: { ...headers, apikey: key, "content-profile": "integration" },
    body: JSON.stringify(args),
  });
  if (response.status !== 200) throw new Error(`${name}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

async function rpcWorker(worker) {
  let rows = 0;
  for (;;) {
    const events = await rpc("router_claim", { p_worker: worker, p_batch_size: 25, p_lease_seconds: 60 });
    if (events.length === 0) return rows;
    await rpc("settle_outbox", { p_results: events.map((e) => ({ id: e.id, lease_token: e.lease_token, ok: true })) });
    rows += events.length;
  }
}

async function routerWorker() {
  let rows = 0;
  for (;;) {
    const response = await fetch(`${base}/functions/v1/outbox-router?wait=true`, {
      method: "POST",
      headers,
      body: '{"reason":"bench"}',
    });
    const body = await response.json();
    if (response.status !== 200) throw new Error(`router: HTTP ${response.status} ${JSON.stringify(body)}`);
    rows += body.summary.acked;
    if (body.summary.claimed === 0) return rows;
  }
}

if (mode === "receiver") {
  let deliveries = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      deliveries++;
      res.writeHead(204).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(arg, "127.0.0.1", () => console.error("receiver ready"));
  process.on("SIGTERM", () => {
    console.log(JSON.stringify({ deliveries }));
    process.exit(0);
  });
} else {
  const started = performance.now();
  const workers = Array.from({ length: arg }, (_, i) => (mode === "rpc" ? rpcWorker(`bench-rpc-${i}`) : routerWorker()));
  const rows = (await Promise.all(workers)).reduce((a, b) => a + b, 0);
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ rows, seconds: +seconds.toFixed(3), rows_per_s: +(rows / seconds).toFixed(1) }));
}
