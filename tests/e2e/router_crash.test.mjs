// The router killed mid-batch: workerd is SIGKILLed while deliveries are in
// flight. Nothing is lost and nothing is settled twice: the dead router's
// leases expire (15 s locally) and count as a failed attempt (30 s backoff),
// pg_cron's per-minute safety net wakes a new router, events in flight at the
// kill are delivered again (at least once), and every event goes to
// `completed` exactly once. Takes one to three minutes, mostly waiting for
// those timers. CRASH_EVENTS sets the size (scripts/bench crash).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, sql, stack, startReceiver, uniqueKey, waitFor } from "./helpers.mjs";

const EVENTS = Number(process.env.CRASH_EVENTS ?? 300);

test(`killing the router mid-batch loses nothing and completes each of ${EVENTS} events exactly once`, async (t) => {
  const deliveries = new Map();
  const receiver = await startReceiver(async (request) => {
    const id = request.headers["webhook-id"];
    deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
    return { status: 200, delayMs: 20 };
  });
  const pattern = `crash${process.pid}.*`;
  const type = pattern.replace("*", "created");
  const audit = `crash_completions_${process.pid}`;
  // Counts every event entering the archive: a delivery settles it there, the
  // thing that must happen exactly once.
  sql(`create table public.${audit} (id uuid not null, at timestamptz not null default clock_timestamp());
       create function public.${audit}_record() returns trigger language plpgsql as $$
       begin insert into public.${audit} (id) values (new.id); return null; end $$;
       create trigger ${audit} after insert on integration.outbox_archive for each row
         when (new.event_type = '${type}')
         execute function public.${audit}_record();
       insert into integration.routes (event_pattern, target_url, signing_secret, timeout_ms, max_concurrency)
       values ('${pattern}', '${receiver.url}/hooks/crash', 'whsec_Y3Jhc2gtdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OQ==', 5000, 4);`);
  try {
    const started = Date.now();
    sql(`insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
         select 'odoo', '${uniqueKey("crash")}-' || n, '${type}', 't', n::text, '{}', 'crash' from generate_series(1, ${EVENTS}) n`);
    await waitFor("the router to be mid-run", () => deliveries.size >= EVENTS / 4, 30_000, 5);
    const pid = readFileSync(path.join(ROOT, ".local/workerd.pid"), "utf8").trim();
    process.kill(Number(pid), "SIGKILL");
    const killedAt = Date.now();
    const deliveredBeforeKill = deliveries.size;
    await waitFor("workerd to be gone", () => {
      try {
        process.kill(Number(pid), 0);
        return false;
      } catch {
        return true;
      }
    });
    stack("start_workerd");
    const leased = Number(sql(`select count(*) from integration.outbox where event_type = '${type}' and status = 'processing'`));
    t.diagnostic(`killed after ${killedAt - started} ms with ${deliveredBeforeKill} events delivered and ${leased} leased`);

    await waitFor(`all ${EVENTS} events completed`, () =>
      sql(`select count(*) from integration.outbox_and_archive where event_type = '${type}' and status = 'completed'`) === String(EVENTS),
    240_000, 250);
    const recoveredMs = Date.now() - killedAt;

    const [completions, distinct, maxPerEvent] = sql(
      `select count(*), count(distinct id), coalesce(max(n), 0) from
         (select id, count(*) over (partition by id) n from public.${audit}) c`).split("|").map(Number);
    const total = [...deliveries.values()].reduce((a, b) => a + b, 0);
    const redelivered = [...deliveries.values()].filter((n) => n > 1).length;
    const reclaimed = Number(sql(`select count(*) from integration.outbox_and_archive where event_type = '${type}'
      and exists (select 1 from jsonb_array_elements(error_history) e where e ->> 'error' like 'lease expired%')`));
    t.diagnostic(`recovered in ${recoveredMs} ms: ${total} deliveries for ${EVENTS} events, ` +
      `${redelivered} delivered more than once, ${reclaimed} leases reclaimed, ${completions} completions`);

    assert.equal(deliveries.size, EVENTS, "every event reached the receiver (none lost)");
    assert.equal(distinct, EVENTS, "every event was completed");
    assert.equal(completions, EVENTS, "no event was completed twice");
    assert.equal(maxPerEvent, 1);
    assert.ok(leased > 0, "the kill left leases behind");
    assert.ok(reclaimed > 0 && redelivered <= reclaimed,
      "only events whose lease expired were delivered again");
  } finally {
    sql(`drop trigger if exists ${audit} on integration.outbox_archive;
         drop function if exists public.${audit}_record();
         drop table if exists public.${audit};
         delete from integration.routes where event_pattern = '${pattern}';`);
    await receiver.close();
  }
});
