-- `scripts/bench scale`: tops the outbox up to :completed completed and :pending
-- pending bench events (event type benchdrain.created, deleted after the run).
-- Completed rows spread over the last 14 days, as a live system's would.
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
  correlation_id, status, attempts, created_at, updated_at, completed_at, receipt)
select 'odoo', 'bench-scale-' || gen_random_uuid(), 'benchdrain.created', 'hr.expense', n::text, :'payload'::jsonb,
       'bench-scale-' || (n % 100000), 'completed', 1, t, t, t + interval '1 second', '{"ok":true}'
from generate_series(1, greatest(0, :completed - (select count(*) from integration.outbox
       where event_type = 'benchdrain.created' and status = 'completed'))) n,
     lateral (select now() - interval '14 days' * random() as t) at;
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
select 'odoo', 'bench-scale-' || gen_random_uuid(), 'benchdrain.created', 'hr.expense', n::text, :'payload'::jsonb,
       'bench-scale-' || (n % 100000)
from generate_series(1, greatest(0, :pending - (select count(*) from integration.outbox
       where event_type = 'benchdrain.created' and status = 'pending'))) n;
