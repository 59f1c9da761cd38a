// outbox-router end to end: events ingested by odoo-webhook are pushed to
// their route's target right after commit (woken through the pg_net stand-in),
// signed with Standard Webhooks; failures back off, honour Retry-After, end in
// the dead letter queue and come back through redrive.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Webhook } from "standardwebhooks";
import { createHmac } from "node:crypto";
import {
  ROOT,
  ROUTER_URL,
  env,
  event,
  postSigned,
  rpc,
  runRouter,
  secrets,
  sql,
  stack,
  startReceiver,
  tableCounts,
  uniqueKey,
  waitFor,
} from "./helpers.mjs";

const ROUTE_SECRET = "whsec_" + Buffer.from(uniqueKey("route-secret").padEnd(32, "x")).toString("base64");
const prefix = `routertest${process.pid}`;
const routes = [];

/** A route for a fresh event-type prefix to `target`; removed after the file. */
function route(name, target, { timeoutMs = 5000, maxConcurrency = 8 } = {}) {
  const pattern = `${prefix}${name}.*`;
  sql(`insert into integration.routes (event_pattern, target_url, signing_secret, timeout_ms, max_concurrency)
       values ('${pattern}', '${target}', '${ROUTE_SECRET}', ${timeoutMs}, ${maxConcurrency})`);
  routes.push(pattern);
  return `${prefix}${name}.created`;
}

/** An HS256 JWT signed with the stack's secret, as Supabase Auth would issue it. */
function jwt(claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ exp: Math.floor(Date.now() / 1000) + 600, ...claims })}`;
  return `${unsigned}.${createHmac("sha256", env.JWT_SECRET).update(unsigned).digest("base64url")}`;
}

after(() => {
  for (const pattern of routes) sql(`delete from integration.routes where event_pattern = '${pattern}'`);
  sql("update integration.delivery_policy set backoff_seconds = '{30,90,300}'");
});

async function ingest(type, count = 1) {
  const answers = await Promise.all(
    Array.from({ length: count }, () => postSigned(event({ event_type: type }))),
  );
  for (const a of answers) assert.equal(a.status, 200, a.text);
  return answers.map((a) => a.json.event_id);
}

function row(id) {
  const [status, attempts, lastError, history] = sql(
    `select status, attempts, coalesce(last_error, ''), jsonb_array_length(error_history)
     from integration.outbox_and_archive where id = '${id}'`,
  ).split("|");
  return { status, attempts: Number(attempts), lastError, history: Number(history) };
}

test("ingested events are pushed to their target at once, signed with Standard Webhooks", async () => {
  const receiver = await startReceiver();
  try {
    const type = route("push", receiver.url + "/hooks/push");
    const ids = await ingest(type, 20);
    await waitFor("20 deliveries", () => receiver.received.length >= 20);
    await waitFor("20 acks", () => ids.every((id) => row(id).status === "completed"));
    const verifier = new Webhook(ROUTE_SECRET);
    const seen = new Map();
    for (const request of receiver.received) {
      const payload = verifier.verify(request.body, request.headers); // throws if the signature is wrong
      assert.equal(request.headers["webhook-id"], payload.id);
      assert.equal(payload.type, type);
      assert.equal(payload.source, "odoo");
      assert.equal(payload.attempt, 1);
      assert.equal(payload.data.currency, "PHP");
      assert.ok(payload.correlation_id);
      assert.equal(request.headers["x-correlation-id"], payload.correlation_id);
      seen.set(payload.id, (seen.get(payload.id) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), [...ids].sort(), "exactly the ingested events arrived");
    assert.ok([...seen.values()].every((n) => n === 1), "each event was delivered once");
    for (const id of ids) assert.deepEqual(row(id), { status: "completed", attempts: 1, lastError: "", history: 0 });
  } finally {
    await receiver.close();
  }
});

test("a burst of inserts wakes the router a few times, not once per event", async () => {
  const receiver = await startReceiver();
  try {
    const type = route("burst", receiver.url + "/hooks/burst");
    const wakesBefore = Number(sql("select wakes_sent from integration.router_signal"));
    const ids = [];
    for (let round = 0; round < 5; round++) ids.push(...(await ingest(type, 40)));
    await waitFor("200 acks", () =>
      sql(`select count(*) from integration.outbox_and_archive where event_type = '${type}' and status = 'completed'`) === "200",
    30_000);
    const wakes = Number(sql("select wakes_sent from integration.router_signal")) - wakesBefore;
    assert.equal(receiver.received.length, 200);
    assert.ok(wakes >= 1 && wakes <= 50, `200 events in 5 bursts caused ${wakes} wake-ups`);
  } finally {
    await receiver.close();
  }
});

test("deliveries to one target never exceed the route's max_concurrency", async () => {
  let inFlight = 0;
  let peak = 0;
  const receiver = await startReceiver(async () => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise((r) => setTimeout(r, 40));
    inFlight--;
    return { status: 204 };
  });
  try {
    const type = route("bounded", receiver.url + "/hooks/bounded", { maxConcurrency: 3 });
    sql(`insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
         select 'odoo', '${uniqueKey("bounded")}-' || n, '${type}', 't', n::text, '{}', 'bounded' from generate_series(1, 30) n`);
    await waitFor("30 acks", () =>
      sql(`select count(*) from integration.outbox_and_archive where event_type = '${type}' and status = 'completed'`) === "30",
    20_000);
    assert.equal(peak, 3, `peak concurrency was ${peak}`);
  } finally {
    await receiver.close();
  }
});

test("503 with Retry-After is honoured; the next attempt is delivered and acked", async () => {
  const receiver = await startReceiver((_, i) =>
    i === 0 ? { status: 503, headers: { "retry-after": "45" }, body: '{"busy":true}' } : { status: 200 },
  );
  try {
    const type = route("retry", receiver.url + "/hooks/retry");
    const [id] = await ingest(type);
    await waitFor("the failed first attempt", () => row(id).lastError.startsWith("HTTP 503"));
    const wait = Number(sql(`select extract(epoch from available_at - updated_at) from integration.outbox where id = '${id}'`));
    // Retry-After only ever lengthens the backoff (30 s for a first failure).
    assert.ok(Math.abs(wait - 45) < 1, `Retry-After: 45 set the next attempt ${wait} s later`);
    assert.equal(row(id).status, "pending");
    sql(`update integration.outbox set available_at = now() where id = '${id}'`); // 45 s pass
    const run = await runRouter();
    assert.equal(run.status, 200, JSON.stringify(run.json));
    assert.ok(run.json.summary.acked >= 1);
    assert.deepEqual(row(id), { status: "completed", attempts: 2, lastError: 'HTTP 503: {"busy":true}', history: 1 });
    assert.equal(receiver.received.length, 2);
    assert.equal(receiver.received[0].headers["webhook-id"], receiver.received[1].headers["webhook-id"],
      "a retry keeps the webhook-id so receivers can deduplicate");
  } finally {
    await receiver.close();
  }
});

test("failures back off, dead-letter after the last attempt, and redrive delivers them", async () => {
  let healthy = false;
  const receiver = await startReceiver(() => (healthy ? { status: 200 } : { status: 500, body: "boom" }));
  try {
    sql("update integration.delivery_policy set backoff_seconds = '{1,1}'");
    const type = route("dead", receiver.url + "/hooks/dead");
    const [id] = await ingest(type);
    await waitFor("attempt 1", () => row(id).attempts === 1 && row(id).status === "pending");
    for (const attempt of [2, 3]) {
      await new Promise((r) => setTimeout(r, 1100));
      await runRouter();
      assert.equal(row(id).attempts, attempt);
    }
    assert.deepEqual(row(id), { status: "failed", attempts: 3, lastError: "HTTP 500: boom", history: 3 });
    const stats = await rpc("failures_needing_attention", { p_limit: 1000 });
    assert.ok(stats.body.some((f) => f.id === id), "the dead letter is listed for operators");

    const dry = await rpc("redrive_outbox", { p_requested_by: "e2e", p_event_pattern: `${prefix}dead.*` });
    assert.deepEqual(dry.body, { matched: 1, redriven: 0, dry_run: true });
    assert.equal(row(id).status, "failed", "a dry run changes nothing");
    healthy = true;
    const redrive = await rpc("redrive_outbox", { p_requested_by: "e2e", p_event_pattern: `${prefix}dead.*`, p_dry_run: false });
    assert.deepEqual(redrive.body, { matched: 1, redriven: 1, dry_run: false });
    await waitFor("the redriven event to be delivered", () => row(id).status === "completed");
    assert.equal(receiver.received.length, 4);
  } finally {
    sql("update integration.delivery_policy set backoff_seconds = '{30,90,300}'");
    await receiver.close();
  }
});

test("a target slower than the route timeout fails the attempt as a timeout", async () => {
  const receiver = await startReceiver(() => ({ status: 200, delayMs: 1500 }));
  try {
    const type = route("slow", receiver.url + "/hooks/slow", { timeoutMs: 300 });
    const [id] = await ingest(type);
    await waitFor("the timed-out attempt", () => row(id).lastError !== "");
    assert.deepEqual(row(id), { status: "pending", attempts: 1, lastError: "timeout: no answer within 300 ms", history: 1 });
  } finally {
    await receiver.close();
  }
});

test("an unreachable target and an event without a route are kept, not lost", async () => {
  const type = route("down", "http://127.0.0.1:9/nothing-listens");
  const [down] = await ingest(type);
  const [unrouted] = await ingest(`${prefix}nomatch.created`);
  await waitFor("both outcomes", () => row(down).lastError !== "" && row(unrouted).status === "failed");
  assert.equal(row(down).status, "pending");
  assert.match(row(down).lastError, /^unreachable: /);
  assert.deepEqual(row(unrouted), { status: "failed", attempts: 1, lastError: "no_route", history: 1 });
});

test("only the platform may run the router; bad input is refused and runs nothing", async () => {
  const before = sql("select wakes_sent || '/' || coalesce(last_wake_at::text, '') from integration.router_signal");
  const countsBefore = tableCounts();
  const userJwt = jwt({ role: "authenticated", sub: "user-1", app_metadata: { role: "operator" } });
  const cases = [
    { name: "no bearer", headers: {}, status: 401, code: "unauthorized" },
    { name: "not a bearer", headers: { authorization: `Basic ${env.SERVICE_ROLE_KEY}` }, status: 401, code: "unauthorized" },
    { name: "anon key", headers: { authorization: `Bearer ${env.ANON_KEY}` }, status: 403, code: "forbidden" },
    { name: "a user's JWT, an operator's even", headers: { authorization: `Bearer ${userJwt}` }, status: 403, code: "forbidden" },
    { name: "a token one character off", headers: { authorization: `Bearer ${env.OUTBOX_ROUTER_INVOCATION_TOKEN}x` }, status: 403, code: "forbidden" },
    { name: "GET", method: "GET", status: 405, code: "method_not_allowed" },
    { name: "not JSON", body: "{", status: 400, code: "invalid_json" },
    { name: "bad reason", body: '{"reason":"DROP"}', status: 422, code: "validation_failed" },
    { name: "bad query", query: "?batch=1000", status: 422, code: "validation_failed" },
    { name: "too large", body: JSON.stringify({ reason: "x".repeat(5000) }), status: 413, code: "payload_too_large" },
  ];
  for (const c of cases) {
    const response = await fetch(ROUTER_URL + (c.query ?? ""), {
      method: c.method ?? "POST",
      headers: c.headers ?? { authorization: `Bearer ${env.OUTBOX_ROUTER_INVOCATION_TOKEN}` },
      body: c.method === "GET" ? undefined : (c.body ?? "{}"),
    });
    const body = await response.json();
    assert.equal(response.status, c.status, `${c.name}: ${JSON.stringify(body)}`);
    assert.equal(body.ok, false);
    assert.equal(body.error.code, c.code, c.name);
    assert.equal(body.correlation_id, response.headers.get("x-correlation-id"), c.name);
    if (c.status === 405) assert.equal(response.headers.get("allow"), "POST");
    const text = JSON.stringify(body);
    for (const secret of secrets()) assert.ok(!text.includes(secret), `${c.name} leaks a secret`);
  }
  assert.equal(tableCounts(), countsBefore, "refused calls write nothing");
  assert.equal(sql("select wakes_sent || '/' || coalesce(last_wake_at::text, '') from integration.router_signal"), before);
  for (const bearer of [env.OUTBOX_ROUTER_INVOCATION_TOKEN, env.SERVICE_ROLE_KEY]) {
    const ok = await runRouter("manual", bearer);
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.equal(ok.json.summary.released, true);
  }
});

test("the database wakes the router with its invocation token; the service role key is stored nowhere", async () => {
  const receiver = await startReceiver();
  try {
    const type = route("token", receiver.url + "/hooks/token");
    const logPath = path.join(ROOT, ".local/workerd.log");
    const logStart = readFileSync(logPath).length;
    await ingest(type);
    await waitFor("the delivery", () => receiver.received.length === 1);
    // Only this test's part of the log: other tests call the router too.
    const lines = readFileSync(logPath)
      .subarray(logStart)
      .toString("utf8")
      .split("\n")
      .filter((l) => l.includes('"event":"woken"'))
      .map((l) => JSON.parse(l.slice(l.indexOf("{"))));
    const byDatabase = lines.filter((l) => ["insert", "cron", "handoff", "redrive"].includes(l.reason));
    assert.ok(byDatabase.length > 0, "wake-ups by the database are logged");
    assert.deepEqual([...new Set(byDatabase.map((l) => l.caller))], ["invocation_token"]);
    assert.equal(sql("select count(*) from edge.functions where name = 'outbox-router'"), "1");
    const key = env.SERVICE_ROLE_KEY.replaceAll("'", "''");
    assert.equal(
      sql(`select count(*) from edge.functions where invocation_token = '${key}'`) +
        sql(`select count(*) from net.http_request_queue where headers::text like '%${key}%'`),
      "00",
      "the service role key is in no table and no pg_net request",
    );
  } finally {
    await receiver.close();
  }
});

test("PostgREST down: the router answers 503 upstream_unavailable and runs again after restart", async () => {
  stack("stop_process postgrest");
  try {
    const down = await runRouter();
    assert.equal(down.status, 503, JSON.stringify(down.json));
    assert.equal(down.json.error.code, "upstream_unavailable");
  } finally {
    stack("start_postgrest");
  }
  const up = await runRouter();
  assert.equal(up.status, 200, JSON.stringify(up.json));
});

test("no secret, bearer or route secret appears in the router's or the pg_net sender's log", () => {
  const workerd = readFileSync(path.join(ROOT, ".local/workerd.log"), "utf8");
  const sender = readFileSync(path.join(ROOT, ".local/pg-net-sender.log"), "utf8");
  assert.ok(workerd.includes('"event":"drained"'), "router runs are logged");
  assert.ok(sender.includes('"msg":"sent"'), "wake-ups are logged");
  const routeSecret = ROUTE_SECRET.slice("whsec_".length);
  for (const secret of [...secrets(), ROUTE_SECRET, routeSecret]) {
    assert.ok(!workerd.includes(secret), "a secret leaked into the workerd log");
    assert.ok(!sender.includes(secret), "a secret leaked into the pg_net sender log");
  }
});
