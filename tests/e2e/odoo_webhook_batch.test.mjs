// odoo-webhook's batch form (POST /functions/v1/odoo-webhook/batch): one
// signature over the whole body, an idempotency key per event, a result per
// event (accepted / duplicate / conflict / invalid), the accepted written in
// one transaction; every refusal of the whole batch answered in the envelope
// with nothing written.
//
//   node --test tests/e2e/odoo_webhook_batch.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import standardwebhooks from "standardwebhooks";
import { WEBHOOK_URL, env, event, postSigned, secrets, sql, stack, tableCounts, uniqueKey } from "./helpers.mjs";

const BATCH_URL = `${WEBHOOK_URL}/batch`;
const { Webhook } = standardwebhooks;

/** An event of a batch, with its own idempotency key. */
function item(overrides = {}) {
  return { idempotency_key: uniqueKey("batch"), ...event({ event_type: "finance_task.overdue", aggregate_type: "project.task" }), ...overrides };
}

const postBatch = (events, options = {}) => postSigned({ events }, { url: BATCH_URL, ...options });

function assertRefused(res, status, code) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.json?.ok, false, res.text);
  assert.equal(res.json.error.code, code, res.text);
  assert.equal(res.json.correlation_id, res.headers.get("x-correlation-id"));
  for (const secret of secrets()) assert.ok(!res.text.includes(secret), "a secret leaked into a response");
}

test("a signed batch lands each event in outbox and event_log under the request's correlation id", async () => {
  const events = [item(), item({ aggregate_id: 7 }), item({ correlation_id: uniqueKey("own-cid") })];
  const correlationId = uniqueKey("batch-cid");
  const res = await postBatch(events, { headers: { "x-correlation-id": correlationId } });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.ok, true);
  assert.deepEqual([res.json.accepted, res.json.duplicates, res.json.conflicts, res.json.invalid], [3, 0, 0, 0]);
  assert.deepEqual(res.json.results.map((r) => [r.idempotency_key, r.status]), events.map((e) => [e.idempotency_key, "accepted"]));
  const ids = res.json.results.map((r) => `'${r.event_id}'`).join(",");
  const rows = sql(`select idempotency_key || '|' || correlation_id || '|' || aggregate_id from integration.outbox_and_archive
    where id in (${ids}) order by idempotency_key`).split("\n");
  assert.deepEqual(rows, events
    .map((e) => `${e.idempotency_key}|${e.correlation_id ?? correlationId}|${e.aggregate_id}`)
    .sort());
  assert.equal(sql(`select count(*) from integration.event_log where event_id in (${ids}) and scheme = 'ipai-hmac'`), "3");
});

test("per event: a resent event is a duplicate, a reused key a conflict, an invalid event refused alone", async () => {
  const first = [item(), item()];
  const accepted = await postBatch(first);
  assert.equal(accepted.status, 200, accepted.text);
  const before = tableCounts();
  const fresh = item();
  const res = await postBatch([
    first[0],
    { ...first[1], payload: { changed: true } },
    { ...item(), event_type: "" },
    fresh,
  ]);
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json.results.map((r) => r.status), ["duplicate", "conflict", "invalid", "accepted"]);
  assert.equal(res.json.results[0].event_id, accepted.json.results[0].event_id);
  assert.equal(res.json.results[1].error.code, "idempotency_conflict");
  assert.equal(res.json.results[1].event_id, undefined, "a conflict does not reveal the other event");
  assert.equal(res.json.results[2].error.code, "validation_failed");
  assert.deepEqual(res.json.results[2].error.details.map((d) => d.field), ["event_type"]);
  assert.deepEqual([res.json.accepted, res.json.duplicates, res.json.conflicts, res.json.invalid], [1, 1, 1, 1]);
  const [outbox, log] = before.match(/\d+/g).map(Number);
  assert.equal(tableCounts(), `outbox=${outbox + 1} event_log=${log + 1}`, "only the new event was written");
  assert.equal(sql(`select payload = '${JSON.stringify(first[1].payload)}'::jsonb from integration.outbox_and_archive
    where idempotency_key = '${first[1].idempotency_key}'`), "t", "the conflict left the first event as it was");
});

test("the same batch sent again (a sender's retry) is all duplicates and writes nothing", async () => {
  const events = [item(), item(), item()];
  const res = await postBatch(events);
  assert.equal(res.status, 200, res.text);
  const before = tableCounts();
  const again = await postBatch(events);
  assert.equal(again.status, 200, again.text);
  assert.deepEqual(again.json.results.map((r) => r.status), ["duplicate", "duplicate", "duplicate"]);
  assert.deepEqual(again.json.results.map((r) => r.event_id), res.json.results.map((r) => r.event_id));
  assert.equal(tableCounts(), before);
});

test("Standard Webhooks: a batch signed by the official library is accepted", async () => {
  const signer = new Webhook(env.ODOO_WEBHOOK_STANDARD_SECRET);
  const msgId = `msg_${uniqueKey("stdbatch").replace(/[^A-Za-z0-9]/g, "")}`;
  const now = new Date();
  const body = JSON.stringify({ events: [item(), item()] });
  const res = await fetch(BATCH_URL, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": msgId,
      "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "webhook-signature": signer.sign(msgId, now, body),
    },
    body,
  });
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  assert.equal(json.accepted, 2);
  assert.equal(sql(`select string_agg(distinct scheme, ',') from integration.event_log
    where event_id in (${json.results.map((r) => `'${r.event_id}'`).join(",")})`), "standard-webhooks");
});

test("every refusal of a whole batch answers its code in the envelope and writes nothing", async () => {
  const before = tableCounts();
  const good = [item()];
  const cases = [
    ["a forged signature", await postBatch(good, { signature: "0".repeat(64) }), 401, "invalid_signature"],
    ["another secret", await postBatch(good, { secret: "not-the-secret" }), 401, "invalid_signature"],
    ["no signature", await postBatch(good, { headers: { "x-ipai-signature": undefined } }), 400, "missing_header"],
    ["not JSON", await postSigned(null, { url: BATCH_URL, rawBody: "{\"events\":[" }), 400, "invalid_json"],
    ["no events", await postBatch([]), 422, "validation_failed"],
    ["events not a list", await postSigned({ events: {} }, { url: BATCH_URL }), 422, "validation_failed"],
    ["501 events", await postBatch(Array.from({ length: 501 }, () => ({ idempotency_key: "k" }))), 422, "validation_failed"],
    ["no valid event", await postBatch([{ ...item(), payload: [] }, 3]), 422, "validation_failed"],
    ["GET", await postSigned(null, { url: BATCH_URL, method: "GET" }), 405, "method_not_allowed"],
    ["another path", await postBatch(good, { url: `${WEBHOOK_URL}/batches` }), 404, "not_found"],
  ];
  for (const [what, res, status, code] of cases) {
    try {
      assertRefused(res, status, code);
    } catch (error) {
      error.message = `${what}: ${error.message}`;
      throw error;
    }
  }
  const noneValid = cases.find(([what]) => what === "no valid event")[1];
  assert.deepEqual(noneValid.json.error.details.map((d) => d.field), ["events[0].payload", "events[1].(event)"]);
  assert.equal(tableCounts(), before);
});

test("a batch over 256 KiB is refused with 413 and writes nothing", async () => {
  const before = tableCounts();
  const big = Array.from({ length: 300 }, () => item({ payload: { note: "x".repeat(1000) } }));
  const res = await postBatch(big);
  assertRefused(res, 413, "payload_too_large");
  assert.equal(tableCounts(), before);
});

test("PostgREST down: a batch is answered 503 and nothing is written; accepted after the restart", async () => {
  const before = tableCounts();
  stack("stop_process postgrest");
  try {
    const res = await postBatch([item(), item()]);
    assertRefused(res, 503, "upstream_unavailable");
  } finally {
    stack("start_postgrest");
  }
  assert.equal(tableCounts(), before);
  const res = await postBatch([item()]);
  assert.equal(res.status, 200, res.text);
});
