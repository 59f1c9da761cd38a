-- `scripts/bench scale`: tops the bench events (event type benchdrain.created,
-- deleted after the run) up to what a live system holds under retention after
-- :completed deliveries spread over the last 14 days, and :pending waiting:
-- - event_log: every delivered event (it keeps them all and holds their keys);
-- - outbox_archive: every completed one, in day partitions (settle_outbox
--   archives a delivered event as it acks it; only alerts stay hot);
-- - outbox: the pending ones.
select integration.archive_partition(((now() - interval '14 days' - interval '1 day') at time zone 'UTC')::date + d)
from generate_series(0, 15) d \g /dev/null

create temp table fill as
select 'bench-scale-' || gen_random_uuid() as key, n,
       now() - interval '14 days' * random() as t
from generate_series(1, greatest(0, :completed - (select count(*) from integration.event_log
       where source = 'odoo' and idempotency_key like 'bench-scale-%' and event_type = 'benchdrain.created'))) n;

insert into integration.event_log (event_id, source, idempotency_key, event_type, aggregate_type, aggregate_id,
  payload, correlation_id, scheme, signing_key_id, created_at)
select gen_random_uuid(), 'odoo', f.key, 'benchdrain.created', 'hr.expense', f.n::text, :'payload'::jsonb,
       'bench-scale-' || (f.n % 100000), 'ipai-hmac', 'key_bench', f.t
from fill f;

insert into integration.outbox_archive (id, source, idempotency_key, event_type, aggregate_type, aggregate_id,
  payload, correlation_id, attempts, error_history, receipt, created_at, completed_at)
select l.event_id, l.source, l.idempotency_key, l.event_type, l.aggregate_type, l.aggregate_id, l.payload,
       l.correlation_id, 1, '[]', '{"ok":true}', l.created_at, l.created_at + interval '1 second'
from integration.event_log l join fill f on f.key = l.idempotency_key and l.source = 'odoo';

insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
select 'odoo', 'bench-scale-' || gen_random_uuid(), 'benchdrain.created', 'hr.expense', n::text, :'payload'::jsonb,
       'bench-scale-' || (n % 100000)
from generate_series(1, greatest(0, :pending - (select count(*) from integration.outbox
       where event_type = 'benchdrain.created' and status = 'pending'))) n;
