// The outbox queue RPCs through the real PostgREST: concurrent claimers never
// receive the same event, and fenced acks settle each event exactly once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pauseRouter, resumeRouter, rpc, sql, uniqueKey } from "./helpers.mjs";

test("4 concurrent claimers never receive the same event; each event is acked exactly once", async () => {
  const events = 400;
  const type = `claimtest${process.pid}.created`;
  sql(`insert into integration.routes (event_pattern, target_url, signing_secret)
       values ('claimtest${process.pid}.*', 'http://127.0.0.1:9/unused', 'whsec_Y2xhaW10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5')`);
  const prefix = uniqueKey("claim");
  // These claimers stand in for the router, so the router stays out of the way.
  await pauseRouter();
  sql(`insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
       select 'odoo', '${prefix}-' || n, '${type}', 't', n::text, '{}', 'claimtest' from generate_series(1, ${events}) n`);
  try {
    const claimedBy = new Map();
    let duplicates = 0;
    let ackFailures = 0;
    async function claimer(worker) {
      for (;;) {
        const { status, body } = await rpc("claim_outbox", { p_worker: worker, p_batch_size: 25, p_lease_seconds: 60 });
        assert.equal(status, 200, JSON.stringify(body));
        const mine = body.filter((e) => e.event_type === type);
        if (body.length === 0) return;
        for (const e of mine) {
          if (claimedBy.has(e.id)) duplicates++;
          claimedBy.set(e.id, worker);
          const ack = await rpc("ack_outbox", { p_id: e.id, p_lease_token: e.lease_token });
          if (ack.status !== 200) ackFailures++;
        }
      }
    }
    await Promise.all(["w1", "w2", "w3", "w4"].map(claimer));
    assert.equal(duplicates, 0, "an event was handed to two claimers");
    assert.equal(ackFailures, 0);
    assert.equal(claimedBy.size, events);
    assert.ok(new Set(claimedBy.values()).size >= 2, "the claimers shared the work");
    assert.equal(
      sql(`select count(*) filter (where status = 'completed') || '/' || count(*) || '/' || max(attempts)
           from integration.outbox where event_type = '${type}'`),
      `${events}/${events}/1`,
    );
  } finally {
    sql(`delete from integration.routes where event_pattern = 'claimtest${process.pid}.*'`);
    resumeRouter();
  }
});

test("a stale lease token is refused over HTTP with 409 stale_lease", async () => {
  const { status, body } = await rpc("ack_outbox", {
    p_id: "00000000-0000-4000-8000-000000000000",
    p_lease_token: "00000000-0000-4000-8000-000000000000",
  });
  assert.equal(status, 409);
  assert.equal(body.message, "stale_lease");
});
