// odoo-webhook's group commit: single events that reach the isolate together
// are recorded in one call to integration.ingest_event_group, and each request
// is answered exactly as if it had been sent alone. Concurrent requests, the
// release wasm in workerd, the real PostgREST and Postgres.
//
//   node --test tests/e2e/odoo_webhook_group.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Agent } from "undici";
import { ROOT, env, event, ipaiSignature, postSigned, sql, stack, uniqueKey } from "./helpers.mjs";

/** The `group` each request's log line names, by correlation id. */
function groupSizes(correlationIds) {
  const wanted = new Set(correlationIds);
  const sizes = new Map();
  for (const line of readFileSync(path.join(ROOT, ".local/workerd.log"), "utf8").split("\n")) {
    if (!line.startsWith("{") || !line.includes('"group"')) continue;
    const entry = JSON.parse(line);
    if (wanted.has(entry.correlation_id)) sizes.set(entry.correlation_id, entry.group);
  }
  return sizes;
}

const rowsOf = (keys) =>
  sql(`select format('outbox=%s event_log=%s',
    (select count(*) from integration.outbox_and_archive where idempotency_key = any(array[${keys.map((k) => `'${k}'`).join(",")}])),
    (select count(*) from integration.event_log where idempotency_key = any(array[${keys.map((k) => `'${k}'`).join(",")}])))`);

test("concurrent events share calls, and each is answered as if alone", async () => {
  const run = uniqueKey("group");
  const cid = (name) => `${run}:${name}`;
  const requests = [];
  // Fresh events: accepted.
  for (let i = 0; i < 24; i++) {
    requests.push({ name: `fresh${i}`, body: event(), options: { key: `${run}:fresh${i}` }, expect: "accepted" });
  }
  // One event sent twice at once under its key: one records it, the other is its duplicate.
  const twice = event();
  requests.push({ name: "twiceA", body: twice, options: { key: `${run}:twice` }, expect: "same-event" });
  requests.push({ name: "twiceB", body: twice, options: { key: `${run}:twice`, timestamp: Date.now() + 3 }, expect: "same-event" });
  // One key, two different events at once: one is recorded, the other a conflict.
  requests.push({ name: "clashA", body: event({ aggregate_id: "1" }), options: { key: `${run}:clash` }, expect: "one-of-two" });
  requests.push({ name: "clashB", body: event({ aggregate_id: "2" }), options: { key: `${run}:clash` }, expect: "one-of-two" });
  // One signed request sent under two keys at once: one is recorded, the other a replay.
  const raw = JSON.stringify(event());
  const timestamp = Date.now();
  const signature = ipaiSignature(env.ODOO_WEBHOOK_SECRET, timestamp, raw);
  for (const name of ["replayA", "replayB"]) {
    requests.push({ name, body: null, options: { rawBody: raw, timestamp, signature, key: `${run}:${name}` }, expect: "one-of-two" });
  }

  const answers = await Promise.all(
    requests.map((r) => postSigned(r.body, { ...r.options, headers: { "x-correlation-id": cid(r.name) } })),
  );
  const by = Object.fromEntries(requests.map((r, i) => [r.name, answers[i]]));

  for (let i = 0; i < 24; i++) {
    const res = by[`fresh${i}`];
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.duplicate, false);
    assert.equal(res.json.correlation_id, cid(`fresh${i}`));
    assert.equal(sql(`select correlation_id from integration.outbox_and_archive where id = '${res.json.event_id}'`), cid(`fresh${i}`),
      "each event keeps its own request's correlation id");
  }

  const [a, b] = [by.twiceA, by.twiceB];
  assert.deepEqual([a.status, b.status], [200, 200], `${a.text} ${b.text}`);
  assert.equal(a.json.event_id, b.json.event_id, "both name the one recorded event");
  assert.deepEqual([a.json.duplicate, b.json.duplicate].sort(), [false, true]);

  const clash = [by.clashA, by.clashB].map((r) => r.status).sort();
  assert.deepEqual(clash, [200, 409], `${by.clashA.text} ${by.clashB.text}`);
  const conflict = [by.clashA, by.clashB].find((r) => r.status === 409);
  assert.equal(conflict.json.error.code, "idempotency_conflict");
  assert.equal(conflict.json.error.message, "this idempotency key was already used for a different event");

  const replay = [by.replayA, by.replayB].map((r) => r.status).sort();
  assert.deepEqual(replay, [200, 409], `${by.replayA.text} ${by.replayB.text}`);
  const replayed = [by.replayA, by.replayB].find((r) => r.status === 409);
  assert.equal(replayed.json.error.code, "replayed_request");
  assert.equal(replayed.json.ok, false);

  // Written: the 24 fresh events, one for "twice", one for "clash", one
  // replay. The refused replay wrote nothing, not even its event_log row.
  const keys = [...Array.from({ length: 24 }, (_, i) => `${run}:fresh${i}`), `${run}:twice`, `${run}:clash`, `${run}:replayA`, `${run}:replayB`];
  assert.equal(rowsOf(keys), "outbox=27 event_log=27");
  const refusedReplayKey = by.replayA.status === 409 ? `${run}:replayA` : `${run}:replayB`;
  assert.equal(rowsOf([refusedReplayKey]), "outbox=0 event_log=0");

  // The requests really were grouped: some shared a call (the log line of
  // every request names the size of the call its event went in).
  const sizes = groupSizes(requests.map((r) => cid(r.name)));
  const accepted = requests.filter((r, i) => answers[i].status === 200).map((r) => cid(r.name));
  assert.equal(accepted.filter((c) => sizes.has(c)).length, accepted.length, "every accepted request logs its group");
  assert.ok(Math.max(...sizes.values()) > 1, `no two events shared a call: ${[...sizes.values()]}`);
});

test("PostgREST down under concurrent events: every one is 503 and none is written", async () => {
  const run = uniqueKey("group-down");
  // Connections of their own: with PostgREST stopped after a burst, the
  // gateway may close a kept-alive connection from the burst just as it is
  // reused (seen before group commit too), and that request gets no answer.
  const dispatcher = new Agent();
  stack("stop_process postgrest");
  try {
    const keys = Array.from({ length: 12 }, (_, i) => `${run}:${i}`);
    const answers = await Promise.all(keys.map((key) => postSigned(event(), { key, dispatcher })));
    for (const res of answers) {
      assert.equal(res.status, 503, res.text);
      assert.equal(res.json.error.code, "upstream_unavailable");
      assert.equal(res.headers.get("retry-after"), "5");
    }
    stack("start_postgrest");
    assert.equal(rowsOf(keys), "outbox=0 event_log=0");
    // Sent again once PostgREST is back, each is accepted once.
    const again = await Promise.all(keys.map((key) => postSigned(event(), { key, dispatcher })));
    assert.deepEqual(again.map((r) => r.status), keys.map(() => 200));
    assert.equal(rowsOf(keys), "outbox=12 event_log=12");
  } finally {
    stack("start_postgrest");
    await dispatcher.close();
  }
});
