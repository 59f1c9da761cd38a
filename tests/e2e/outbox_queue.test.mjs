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
           from integration.outbox_and_archive where event_type = '${type}'`),
      `${events}/${events}/1`,
    );
  } finally {
    sql(`delete from integration.routes where event_pattern = 'claimtest${process.pid}.*'`);
    resumeRouter();
  }
});

test("an ack whose lease expired and was reclaimed is refused with 409 stale_lease and changes nothing", async () => {
  const pattern = `staletest${process.pid}.*`;
  const type = pattern.replace("*", "created");
  sql(`insert into integration.routes (event_pattern, target_url, signing_secret)
       values ('${pattern}', 'http://127.0.0.1:9/unused', 'whsec_Y2xhaW10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5')`);
  await pauseRouter();
  try {
    const [id] = sql(`insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
         values ('odoo', '${uniqueKey("stale")}', '${type}', 't', '1', '{}', 'staletest') returning id`).split("\n");
    // Claim until this event is leased (older pending events may come first).
    let leased;
    for (let round = 0; !leased && round < 100; round++) {
      const { status, body } = await rpc("claim_outbox", { p_worker: "stale-test", p_batch_size: 100, p_lease_seconds: 60 });
      assert.equal(status, 200, JSON.stringify(body));
      leased = body.find((e) => e.id === id);
    }
    assert.ok(leased, "the event was claimed");
    // Its lease runs out and pg_cron's reclaim hands it back to the queue.
    sql(`update integration.outbox set lease_expires_at = now() - interval '1 second' where id = '${id}'`);
    sql("select integration.reclaim_expired_leases()");
    const before = sql(`select status || '|' || attempts || '|' || last_error || '|' || updated_at from integration.outbox where id = '${id}'`);
    assert.match(before, /^pending\|1\|lease expired before ack or fail\|/);

    const late = await rpc("ack_outbox", { p_id: id, p_lease_token: leased.lease_token });
    assert.equal(late.status, 409, JSON.stringify(late.body));
    assert.equal(late.body.message, "stale_lease");
    const lateFail = await rpc("fail_outbox", { p_id: id, p_lease_token: leased.lease_token, p_error: "late" });
    assert.equal(lateFail.status, 409, JSON.stringify(lateFail.body));
    assert.equal(
      sql(`select status || '|' || attempts || '|' || last_error || '|' || updated_at from integration.outbox where id = '${id}'`),
      before,
      "the late ack and fail changed nothing",
    );
  } finally {
    sql(`delete from integration.routes where event_pattern = '${pattern}'`);
    resumeRouter();
  }
});
