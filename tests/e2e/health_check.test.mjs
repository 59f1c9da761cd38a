// health-check end to end: the release wasm in workerd probes services that
// are local receivers (fast, slow, failing, unreachable), records the whole
// sweep in one RPC, moves each service's status, and a service that goes down
// (after failures_to_down consecutive failures) or recovers raises exactly one
// alert, which the router delivers to the Mattermost stand-in as a chat message.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { env, secrets, sql, startReceiver, tableCounts, waitFor } from "./helpers.mjs";

const URL = `${env.FUNCTIONS_URL}/health-check`;
const prefix = `hc${process.pid}`;
const receivers = [];

after(async () => {
  sql(`delete from observability.service_health where service_id in (select id from observability.services where name like '${prefix}%')`);
  sql(`delete from observability.services where name like '${prefix}%'`);
  for (const r of receivers) await r.close();
});

async function sweep(bearer = env.HEALTH_CHECK_INVOCATION_TOKEN) {
  const response = await fetch(`${URL}?wait=true`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: JSON.stringify({ reason: "manual" }),
  });
  return { status: response.status, json: await response.json() };
}

function service(name, url, extra = {}) {
  const columns = { name: `${prefix}-${name}`, kind: "http", url, interval_seconds: 60, failures_to_down: 2, ...extra };
  const keys = Object.keys(columns).join(", ");
  const values = Object.values(columns).map((v) => (typeof v === "number" ? v : `'${String(v).replaceAll("'", "''")}'`)).join(", ");
  return sql(`insert into observability.services (${keys}) values (${values}) returning id`).split("\n")[0];
}

function state(id) {
  return sql(`select status || '|' || consecutive_failures from observability.services where id = ${id}`);
}

function due() {
  // Every test service due again, as if its interval had passed.
  sql(`update observability.services set last_checked_at = now() - interval '1 hour' where name like '${prefix}%'`);
}

test("a sweep probes every due service, records one sample each, and grades them", async () => {
  const fast = await startReceiver(() => ({ status: 200, body: '{"status":"ok"}' }));
  const slow = await startReceiver(() => ({ status: 200, body: "ok", delayMs: 300 }));
  const wrongBody = await startReceiver(() => ({ status: 200, body: "maintenance" }));
  receivers.push(fast, slow, wrongBody);
  const ids = {
    fast: service("fast", `${fast.url}/health`, { body_match: "ok" }),
    slow: service("slow", `${slow.url}/health`, { degraded_ms: 100 }),
    body: service("body", `${wrongBody.url}/health`, { body_match: "ok" }),
    timeout: service("timeout", `${slow.url}/slow`, { timeout_ms: 100, degraded_ms: 50 }),
    unreachable: service("unreachable", "http://127.0.0.1:9/health"),
  };
  const run = await sweep();
  assert.equal(run.status, 200, JSON.stringify(run.json));
  assert.ok(run.json.summary.probed >= 5, JSON.stringify(run.json.summary));
  assert.ok(fast.received.length >= 1 && fast.received[0].headers["x-correlation-id"] === run.json.correlation_id,
    "probes carry the sweep's correlation id");
  const sample = (id) =>
    sql(`select status || '|' || coalesce(http_status::text, '') || '|' || coalesce(error, '')
         from observability.service_health where service_id = ${id} order by checked_at desc limit 1`);
  assert.equal(sample(ids.fast), "healthy|200|");
  assert.equal(sample(ids.slow), "degraded|200|");
  assert.equal(sample(ids.body), 'failing|200|the answer does not contain "ok"');
  assert.equal(sample(ids.timeout), "failing||no answer within 100 ms");
  assert.match(sample(ids.unreachable), /^failing\|\|unreachable: /);
  // One failure is not an incident: failures_to_down is 2.
  assert.equal(state(ids.body), "unknown|1");
  assert.equal(state(ids.fast), "healthy|0");
  assert.equal(state(ids.slow), "degraded|0");
  // Nothing was due a moment later: a sweep right after probes none of them.
  const again = await sweep();
  assert.equal(again.status, 200);
  assert.equal(sample(ids.fast), "healthy|200|");
  assert.equal(
    sql(`select count(*) from observability.service_health where service_id = ${ids.fast}`),
    "1",
    "a service probed a moment ago is not due",
  );
});

test("going down and recovering each raise exactly one alert, delivered to Mattermost as a chat message", async () => {
  let healthy = false;
  const flaky = await startReceiver(() => (healthy ? { status: 200, body: "ok" } : { status: 503, body: "down" }));
  receivers.push(flaky);
  const id = service("flaky", `${flaky.url}/health`);
  const since = new Date().toISOString();
  const alerts = async () => {
    const response = await fetch(`${env.MATTERMOST_URL}/messages?since=${encodeURIComponent(since)}&limit=1000`);
    return (await response.json()).filter((m) => m.hook === "alerts" && m.message.text.includes(`${prefix}-flaky`));
  };
  for (const expected of ["unknown|1", "down|2", "down|3"]) {
    due();
    const run = await sweep();
    assert.equal(run.status, 200, JSON.stringify(run.json));
    assert.equal(state(id), expected);
  }
  await waitFor("the down alert in Mattermost", async () => (await alerts()).length >= 1, 20_000);
  healthy = true;
  due();
  await sweep();
  assert.equal(state(id), "healthy|0");
  await waitFor("the recovery alert in Mattermost", async () => (await alerts()).length >= 2, 20_000);
  const texts = (await alerts()).map((m) => m.message.text);
  assert.equal(texts.length, 2, texts.join("\n---\n"));
  assert.match(texts[0], /^🔴 \*\*Service down\*\* `hc\d+-flaky`/);
  assert.match(texts[0], /HTTP 503, expected 200/);
  assert.match(texts[1], /^✅ \*\*Service recovered\*\* `hc\d+-flaky`/);
  assert.match(texts[0], /correlation id: `[^`]+`/);
});

test("only the platform may sweep; bad input is refused and probes nothing", async () => {
  const countsBefore = tableCounts();
  const samplesBefore = sql("select count(*) from observability.service_health");
  const cases = [
    { name: "no bearer", headers: {}, status: 401, code: "unauthorized" },
    { name: "anon key", headers: { authorization: `Bearer ${env.ANON_KEY}` }, status: 403, code: "forbidden" },
    { name: "the router's token", headers: { authorization: `Bearer ${env.OUTBOX_ROUTER_INVOCATION_TOKEN}` }, status: 403, code: "forbidden" },
    { name: "GET", method: "GET", status: 405, code: "method_not_allowed" },
    { name: "not JSON", body: "{", status: 400, code: "invalid_json" },
    { name: "bad reason", body: '{"reason":"Sweep Now"}', status: 422, code: "validation_failed" },
    { name: "too large", body: JSON.stringify({ reason: "x".repeat(5000) }), status: 413, code: "payload_too_large" },
  ];
  for (const c of cases) {
    const response = await fetch(URL + "?wait=true", {
      method: c.method ?? "POST",
      headers: c.headers ?? { authorization: `Bearer ${env.HEALTH_CHECK_INVOCATION_TOKEN}` },
      body: c.method === "GET" ? undefined : (c.body ?? "{}"),
    });
    const body = await response.json();
    assert.equal(response.status, c.status, `${c.name}: ${JSON.stringify(body)}`);
    assert.equal(body.error.code, c.code, c.name);
    assert.equal(body.correlation_id, response.headers.get("x-correlation-id"));
    for (const secret of secrets()) assert.ok(!JSON.stringify(body).includes(secret), `${c.name} leaks a secret`);
  }
  assert.equal(tableCounts(), countsBefore);
  assert.equal(sql("select count(*) from observability.service_health"), samplesBefore, "refused calls probe nothing");
});

test("pg_cron's sweep goes through pg_net with the health checker's own token", () => {
  assert.equal(sql("select count(*) from edge.functions where name = 'health-check'"), "1");
  assert.equal(
    sql("select schedule from cron.job where jobname = 'observability-health-check'"),
    "*/5 * * * *",
  );
  assert.equal(
    sql(`select count(*) from edge.functions where name = 'health-check' and invocation_token = '${env.HEALTH_CHECK_INVOCATION_TOKEN}'`),
    "1",
  );
});
