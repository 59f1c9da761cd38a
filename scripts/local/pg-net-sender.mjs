// The background worker of the local pg_net stand-in (scripts/local/pg_net.sql):
// sends what `net.http_post` queued, once committed, and records each outcome in
// `net._http_response` like pg_net does. Woken by NOTIFY pg_net_local, and
// polls once a second in case a notification was missed.
//
//   node pg-net-sender.mjs <postgres url>
import pg from "pg";

const BATCH = 200;
const RESPONSE_TTL = "6 hours"; // pg_net's default pg_net.ttl

const url = process.argv[2];
if (!url) {
  console.error("usage: pg-net-sender.mjs <postgres url>");
  process.exit(2);
}

const log = (msg, fields = {}) =>
  console.log(JSON.stringify({ ts: new Date().toISOString(), component: "pg-net-sender", msg, ...fields }));

let client;
let draining = false;
let again = false;

async function send(request) {
  const started = Date.now();
  const headers = { ...request.headers };
  try {
    const response = await fetch(request.url, {
      method: request.method,
      headers,
      body: request.body,
      signal: AbortSignal.timeout(request.timeout_milliseconds),
    });
    const content = await response.text();
    return {
      id: request.id,
      status_code: response.status,
      content_type: response.headers.get("content-type"),
      headers: Object.fromEntries(response.headers),
      content,
      timed_out: false,
      error_msg: null,
      ms: Date.now() - started,
    };
  } catch (err) {
    const timedOut = err.name === "TimeoutError";
    return {
      id: request.id,
      status_code: null,
      content_type: null,
      headers: null,
      content: null,
      timed_out: timedOut,
      error_msg: timedOut ? `Timeout of ${request.timeout_milliseconds} ms reached` : String(err.cause?.code ?? err.message),
      ms: Date.now() - started,
    };
  }
}

async function drainOnce() {
  const { rows } = await client.query(
    `delete from net.http_request_queue
     where id in (select id from net.http_request_queue order by id limit $1 for update skip locked)
     returning id, method, url, headers, body, timeout_milliseconds`,
    [BATCH],
  );
  if (rows.length === 0) return 0;
  const results = await Promise.all(rows.map(send));
  await client.query(
    `insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
     select * from jsonb_to_recordset($1::jsonb)
       as r(id bigint, status_code integer, content_type text, headers jsonb, content text, timed_out boolean, error_msg text)`,
    [JSON.stringify(results)],
  );
  for (const r of results) {
    // Never the headers: they carry the bearer.
    log("sent", { id: r.id, status: r.status_code, error: r.error_msg, ms: r.ms });
  }
  return rows.length;
}

async function drain() {
  if (draining) {
    again = true;
    return;
  }
  draining = true;
  try {
    do {
      again = false;
      while ((await drainOnce()) === BATCH);
    } while (again);
  } catch (err) {
    log("drain_failed", { error: err.message });
    await reconnect();
  } finally {
    draining = false;
  }
}

async function connect() {
  client = new pg.Client({ connectionString: url, application_name: "pg-net-sender" });
  client.on("error", (err) => log("connection_error", { error: err.message }));
  client.on("notification", () => drain());
  await client.connect();
  await client.query("listen pg_net_local");
  log("listening");
}

async function reconnect() {
  try {
    await client?.end();
  } catch {
    // already gone
  }
  for (;;) {
    try {
      await connect();
      return;
    } catch (err) {
      log("connect_failed", { error: err.message });
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

await reconnect();
await drain();
setInterval(drain, 1000);
setInterval(async () => {
  try {
    await client.query(`delete from net._http_response where created < now() - interval '${RESPONSE_TTL}'`);
  } catch (err) {
    log("cleanup_failed", { error: err.message });
  }
}, 60_000);
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    await client?.end().catch(() => {});
    process.exit(0);
  });
}
