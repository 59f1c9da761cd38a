// odoo-webhook end to end: the release wasm in workerd, behind the gateway,
// writing through the real PostgREST into the real Postgres.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createClient } from "@supabase/supabase-js";
import standardwebhooks from "standardwebhooks";
import ws from "ws";
import {
  ROOT,
  WEBHOOK_URL,
  env,
  event,
  ipaiSignature,
  keyId,
  postSigned,
  secrets,
  sql,
  stack,
  tableCounts,
  uniqueKey,
} from "./helpers.mjs";

const { Webhook } = standardwebhooks;

function assertEnvelope(res, status, code) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.json?.ok, false, res.text);
  assert.equal(res.json.error.code, code, res.text);
  assert.equal(typeof res.json.error.message, "string");
  assert.equal(res.json.correlation_id, res.headers.get("x-correlation-id"));
  for (const secret of secrets()) assert.ok(!res.text.includes(secret), "a secret leaked into a response");
}

test("a signed event lands in outbox and event_log with its correlation id", async () => {
  const key = uniqueKey("expense.submitted");
  const body = event();
  const res = await postSigned(body, { key, headers: { "x-correlation-id": "e2e-corr-1" } });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.ok, true);
  assert.equal(res.json.duplicate, false);
  assert.equal(res.headers.get("x-correlation-id"), "e2e-corr-1");
  assert.equal(res.json.correlation_id, "e2e-corr-1");

  const outbox = sql(`select status || '|' || correlation_id || '|' || event_type || '|' || aggregate_id || '|' || (payload->>'amount')
    from integration.outbox_and_archive where id = '${res.json.event_id}' and idempotency_key = '${key}'`);
  // The stack's router may already have delivered it to the n8n handler.
  assert.match(outbox, new RegExp(`^(pending|processing|completed)\\|e2e-corr-1\\|expense\\.submitted\\|${body.aggregate_id}\\|125\\.5$`));
  const log = sql(`select correlation_id || '|' || scheme || '|' || signing_key_id
    from integration.event_log where event_id = '${res.json.event_id}'`);
  assert.equal(log, `e2e-corr-1|ipai-hmac|${keyId(Buffer.from(env.ODOO_WEBHOOK_SECRET))}`);
});

test("without x-correlation-id the function generates one and echoes it", async () => {
  const res = await postSigned(event());
  assert.equal(res.status, 200, res.text);
  const id = res.headers.get("x-correlation-id");
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(sql(`select correlation_id from integration.outbox_and_archive where id = '${res.json.event_id}'`), id);
});

test("the same event under the same key is a duplicate and writes nothing", async () => {
  const key = uniqueKey();
  const body = event();
  const first = await postSigned(body, { key });
  assert.equal(first.status, 200, first.text);
  const before = tableCounts();
  // A retry by Odoo: same key and body, newly signed a moment later.
  const again = await postSigned(body, { key, timestamp: Date.now() + 5 });
  assert.equal(again.status, 200, again.text);
  assert.deepEqual([again.json.event_id, again.json.duplicate], [first.json.event_id, true]);
  assert.equal(tableCounts(), before);
});

test("the same key with a different payload is idempotency_conflict and writes nothing", async () => {
  const key = uniqueKey();
  const first = await postSigned(event({ aggregate_id: "7" }), { key });
  assert.equal(first.status, 200, first.text);
  const before = tableCounts();
  const res = await postSigned(event({ aggregate_id: "7", payload: { amount: 999 } }), { key });
  assertEnvelope(res, 409, "idempotency_conflict");
  assert.equal(tableCounts(), before);
});

test("a captured request re-sent under a new idempotency key is refused and writes nothing", async () => {
  const body = JSON.stringify(event());
  const timestamp = Date.now();
  const signature = ipaiSignature(env.ODOO_WEBHOOK_SECRET, timestamp, body);
  const original = await postSigned(null, { rawBody: body, timestamp, signature });
  assert.equal(original.status, 200, original.text);
  const before = tableCounts();
  const replay = await postSigned(null, { rawBody: body, timestamp, signature, key: uniqueKey("attacker") });
  assertEnvelope(replay, 409, "replayed_request");
  assert.equal(tableCounts(), before);
});

test("every rejection class answers its code in the envelope and writes nothing", async () => {
  const good = JSON.stringify(event());
  const old = Date.now() - 6 * 60 * 1000;
  const future = Date.now() + 6 * 60 * 1000;
  const cases = [
    ["GET", 405, "method_not_allowed", { method: "GET" }],
    ["PUT", 405, "method_not_allowed", { method: "PUT" }],
    ["body over 256 KiB", 413, "payload_too_large", { rawBody: JSON.stringify(event({ payload: { blob: "x".repeat(270_000) } })) }],
    ["no timestamp", 400, "missing_header", { headers: { "x-ipai-timestamp": undefined } }],
    ["no signature", 400, "missing_header", { headers: { "x-ipai-signature": undefined } }],
    ["no idempotency key", 400, "missing_header", { headers: { "x-idempotency-key": undefined } }],
    ["timestamp not digits", 400, "invalid_header", { headers: { "x-ipai-timestamp": "yesterday" } }],
    ["signature not hex", 400, "invalid_header", { signature: "not-a-signature" }],
    ["idempotency key with spaces", 400, "invalid_header", { key: "has spaces" }],
    ["unknown secret", 401, "invalid_signature", { secret: "f".repeat(64) }],
    ["signature of other content", 401, "invalid_signature", { signature: ipaiSignature(env.ODOO_WEBHOOK_SECRET, 1, good) }],
    ["timestamp 6 minutes old", 401, "timestamp_out_of_window", { rawBody: good, timestamp: old }],
    ["timestamp 6 minutes ahead", 401, "timestamp_out_of_window", { rawBody: good, timestamp: future }],
    ["signed non-JSON", 400, "invalid_json", { rawBody: "{not json" }],
    ["signed empty object", 422, "validation_failed", { rawBody: "{}" }],
    ["signed array payload", 422, "validation_failed", { rawBody: JSON.stringify(event({ payload: [] })) }],
    // Authentic events the database could not store: 422 naming the field, not a 500.
    ["NUL in a payload string", 422, "validation_failed", { rawBody: JSON.stringify(event({ payload: { note: "a\u0000b" } })) }],
    ["NUL in a payload key", 422, "validation_failed", { rawBody: JSON.stringify(event({ payload: { "k\u0000": 1 } })) }],
    ["February 30th", 422, "validation_failed", { rawBody: JSON.stringify(event({ occurred_at: "2026-02-30T10:00:00Z" })) }],
    ["offset beyond Postgres' ±15:59", 422, "validation_failed", { rawBody: JSON.stringify(event({ occurred_at: "2026-01-01T10:00:00+23:00" })) }],
    ["year 0000", 422, "validation_failed", { rawBody: JSON.stringify(event({ occurred_at: "0000-01-01T00:00:00Z" })) }],
    ["standard scheme without its headers", 400, "missing_header", { headers: { "webhook-signature": "v1,abc" } }],
  ];
  for (const [name, status, code, options] of cases) {
    const before = tableCounts();
    const res = await postSigned(null, { rawBody: good, ...options });
    assertEnvelope(res, status, code);
    assert.equal(tableCounts(), before, `${name} wrote something`);
    if (status === 405) assert.equal(res.headers.get("allow"), "POST");
    if (code === "validation_failed") assert.ok(Array.isArray(res.json.error.details), name);
  }
});

test("a value the database cannot store is named by its path", async () => {
  const res = await postSigned(null, {
    rawBody: JSON.stringify(event({ payload: { lines: [{ ok: 1 }, { name: "x\u0000" }] }, occurred_at: "2027-02-29T00:00:00Z" })),
  });
  assertEnvelope(res, 422, "validation_failed");
  assert.deepEqual(res.json.error.details.map((d) => d.field), ["payload.lines[1].name", "occurred_at"]);
});

test("a body streamed without a length is cut off at 256 KiB: 413, nothing written", async () => {
  const before = tableCounts();
  const correlationId = `e2e-stream-${process.pid}-${Date.now()}`;
  const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
  let sent = 0;
  const body = new ReadableStream({
    pull(controller) {
      // 1 MiB in all, unless the function stops reading first.
      if (sent++ < 16) controller.enqueue(chunk);
      else controller.close();
    },
  });
  let answer = null;
  try {
    const response = await fetch(WEBHOOK_URL, {
      method: "POST",
      body,
      duplex: "half",
      headers: {
        "content-type": "application/json",
        "x-correlation-id": correlationId,
        "x-ipai-timestamp": String(Date.now()),
        "x-ipai-signature": "0".repeat(64),
        "x-idempotency-key": uniqueKey(),
      },
    });
    answer = { status: response.status, json: await response.json() };
  } catch (error) {
    // The function answered before the client finished sending and the
    // connection closed under the upload: the log below says what it answered.
    assert.equal(error.cause?.code, "ECONNRESET", String(error));
  }
  if (answer) {
    assert.equal(answer.status, 413, JSON.stringify(answer.json));
    assert.equal(answer.json.error.code, "payload_too_large");
  }
  const line = readFileSync(path.join(ROOT, ".local/workerd.log"), "utf8")
    .split("\n")
    .find((l) => l.includes(`"correlation_id":"${correlationId}"`));
  assert.ok(line, "the request was logged");
  assert.match(line, /"code":"payload_too_large"/);
  assert.equal(tableCounts(), before);
});

test("a validation failure names every invalid field", async () => {
  const res = await postSigned(null, { rawBody: JSON.stringify({ event_type: "bad type", payload: "x" }) });
  assertEnvelope(res, 422, "validation_failed");
  assert.deepEqual(
    res.json.error.details.map((d) => d.field),
    ["event_type", "aggregate_type", "aggregate_id", "payload"],
  );
});

test("Standard Webhooks: a request signed by the official library is accepted", async () => {
  const signer = new Webhook(env.ODOO_WEBHOOK_STANDARD_SECRET);
  const msgId = `msg_${uniqueKey("std").replace(/[^A-Za-z0-9]/g, "")}`;
  const now = new Date();
  const body = JSON.stringify(event({ event_type: "asset.reserved", aggregate_type: "maintenance.equipment" }));
  const headers = {
    "content-type": "application/json",
    "webhook-id": msgId,
    "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
    "webhook-signature": signer.sign(msgId, now, body),
  };
  const res = await fetch(WEBHOOK_URL, { method: "POST", headers, body });
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  assert.equal(json.duplicate, false);
  const secretBytes = Buffer.from(env.ODOO_WEBHOOK_STANDARD_SECRET.slice(6), "base64");
  assert.equal(
    sql(`select idempotency_key || '|' || scheme || '|' || signing_key_id from integration.event_log where event_id = '${json.event_id}'`),
    `${msgId}|standard-webhooks|${keyId(secretBytes)}`,
  );

  // The same delivery again (a sender retry) is a duplicate; a changed id breaks the signature.
  const before = tableCounts();
  const again = await fetch(WEBHOOK_URL, { method: "POST", headers, body });
  assert.deepEqual(await again.json().then((j) => [j.event_id, j.duplicate]), [json.event_id, true]);
  const forged = await fetch(WEBHOOK_URL, { method: "POST", headers: { ...headers, "webhook-id": `${msgId}x` }, body });
  assert.equal(forged.status, 401);
  assert.equal((await forged.json()).error.code, "invalid_signature");
  assert.equal(tableCounts(), before);
});

test("rotation: the previous secret still verifies and the matching key is recorded", async () => {
  const res = await postSigned(event(), { secret: env.ODOO_WEBHOOK_SECRET_PREVIOUS });
  assert.equal(res.status, 200, res.text);
  const recorded = sql(`select signing_key_id from integration.event_log where event_id = '${res.json.event_id}'`);
  assert.equal(recorded, keyId(Buffer.from(env.ODOO_WEBHOOK_SECRET_PREVIOUS)));
  assert.notEqual(recorded, keyId(Buffer.from(env.ODOO_WEBHOOK_SECRET)));
});

test("supabase-js functions.invoke reaches odoo-webhook through the gateway", async () => {
  const supabase = createClient(env.SUPABASE_URL, env.ANON_KEY, { realtime: { transport: ws } });
  const body = JSON.stringify(event({ event_type: "finance_task.created", aggregate_type: "project.task" }));
  const timestamp = Date.now();
  const { data, error } = await supabase.functions.invoke("odoo-webhook", {
    body,
    headers: {
      "content-type": "application/json",
      "x-ipai-timestamp": String(timestamp),
      "x-ipai-signature": ipaiSignature(env.ODOO_WEBHOOK_SECRET, timestamp, body),
      "x-idempotency-key": uniqueKey("invoke"),
    },
  });
  assert.equal(error, null, String(error));
  assert.equal(data.ok, true);
  assert.equal(sql(`select event_type from integration.outbox_and_archive where id = '${data.event_id}'`), "finance_task.created");
});

test("supabase-js reads the outbox as authenticated-only data: anon is refused", async () => {
  const anon = createClient(env.SUPABASE_URL, env.ANON_KEY, { realtime: { transport: ws }, db: { schema: "integration" } });
  const { error } = await anon.from("outbox").select("id").limit(1);
  assert.ok(error, "anon must not read integration.outbox");
  const service = createClient(env.SUPABASE_URL, env.SERVICE_ROLE_KEY, { realtime: { transport: ws }, db: { schema: "integration" } });
  const { data, error: serviceError } = await service.from("outbox").select("id").limit(1);
  assert.equal(serviceError, null, String(serviceError?.message));
  assert.equal(data.length, 1);
});

test("PostgREST down: 503 upstream_unavailable with retry-after, nothing written; accepted again after restart", async () => {
  const before = tableCounts();
  stack("stop_process postgrest");
  try {
    const res = await postSigned(event());
    assertEnvelope(res, 503, "upstream_unavailable");
    assert.equal(res.headers.get("retry-after"), "5");
  } finally {
    stack("start_postgrest");
  }
  assert.equal(tableCounts(), before);
  const res = await postSigned(event());
  assert.equal(res.status, 200, res.text);
});

test("Postgres down: 503 upstream_unavailable, nothing written; accepted again after restart", async () => {
  const before = tableCounts();
  stack("stop_postgres");
  try {
    const res = await postSigned(event());
    assertEnvelope(res, 503, "upstream_unavailable");
  } finally {
    stack("start_postgres");
  }
  assert.equal(tableCounts(), before);
  // PostgREST reconnects on its own; allow it a few attempts.
  let res;
  for (let attempt = 0; attempt < 50; attempt++) {
    res = await postSigned(event());
    if (res.status === 200) break;
    assert.equal(res.status, 503, res.text);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(res.status, 200, res.text);
});

test("no secret and no expected signature appears in the function's log", async () => {
  const body = JSON.stringify(event());
  const timestamp = Date.now();
  const expected = ipaiSignature(env.ODOO_WEBHOOK_SECRET, timestamp, body);
  const res = await postSigned(null, { rawBody: body, timestamp, signature: "0".repeat(64) });
  assertEnvelope(res, 401, "invalid_signature");
  assert.ok(!res.text.includes(expected));
  const log = readFileSync(path.join(ROOT, ".local/workerd.log"), "utf8");
  assert.ok(log.includes(res.json.correlation_id), "the rejection is logged under its correlation id");
  for (const secret of [...secrets(), expected]) assert.ok(!log.includes(secret), "a secret leaked into the log");
});
