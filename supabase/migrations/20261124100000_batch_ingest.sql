-- Batch ingest: many signed events in one request (an Odoo cron reporting
-- 500 overdue tasks), recorded in one round trip. odoo-webhook checks the one
-- signature over the whole body and every event's fields; this RPC records
-- the valid ones.
--
-- Semantics, per event: each is accepted (new), a duplicate (its key was
-- used for the same event) or a conflict (its key was used for a different
-- event, which is left as it was). The accepted ones are written in one
-- transaction, outbox and event_log together: all of them or, on any fault,
-- none. No replay guard is needed: every event's idempotency key is inside
-- the signed body, so a replayed batch only meets its own duplicates.

-- The events of a batch as rows, in batch order; correlation_id defaults to
-- the request's.
create function integration.batch_rows(p_events jsonb, p_correlation_id text)
returns table (ord bigint, idempotency_key text, event_type text, aggregate_type text, aggregate_id text,
               payload jsonb, occurred_at timestamptz, correlation_id text)
language sql
stable
set search_path = ''
as $$
  select e.ord, e.value ->> 'idempotency_key', e.value ->> 'event_type', e.value ->> 'aggregate_type',
         e.value ->> 'aggregate_id', e.value -> 'payload', (e.value ->> 'occurred_at')::timestamptz,
         coalesce(e.value ->> 'correlation_id', p_correlation_id)
  from jsonb_array_elements(p_events) with ordinality as e(value, ord)
$$;

create function integration.ingest_events(
  p_source text,
  p_events jsonb,
  p_correlation_id text,
  p_scheme text,
  p_signing_key_id text
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_inserted jsonb;
  v_results jsonb;
begin
  if jsonb_typeof(p_events) is distinct from 'array' or jsonb_array_length(p_events) not between 1 and 500 then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'p_events must be an array of 1 to 500 events';
  end if;

  -- One statement writes the new events, outbox and event_log, in batch
  -- order; a key met twice in the batch is written once. Malformed fields are
  -- the caller's mistake (the function checks them first): the table's
  -- constraints refuse what slips through, and the whole batch with it.
  with firsts as (
    select distinct on (b.idempotency_key) b.*
    from integration.batch_rows(p_events, p_correlation_id) b
    order by b.idempotency_key, b.ord
  ), inserted as (
    insert into integration.outbox as o
      (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at, correlation_id)
    select p_source, f.idempotency_key, f.event_type, f.aggregate_type, f.aggregate_id, f.payload, f.occurred_at,
           f.correlation_id
    from firsts f
    order by f.ord
    on conflict (source, idempotency_key) do nothing
    returning o.id, o.idempotency_key
  ), logged as (
    insert into integration.event_log
      (event_id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at,
       correlation_id, scheme, signing_key_id)
    select i.id, p_source, f.idempotency_key, f.event_type, f.aggregate_type, f.aggregate_id, f.payload,
           f.occurred_at, f.correlation_id, p_scheme, p_signing_key_id
    from inserted i
    join firsts f on f.idempotency_key = i.idempotency_key
    order by f.ord
    returning event_id, idempotency_key
  )
  select coalesce(jsonb_object_agg(l.idempotency_key, l.event_id), '{}') into v_inserted from logged l;

  -- A second statement: it also sees the rows of concurrent batches that
  -- committed while this one waited on their keys.
  select jsonb_agg(case
      when x.ord = x.first_ord and v_inserted ? x.idempotency_key
        then jsonb_build_object('status', 'accepted', 'event_id', v_inserted ->> x.idempotency_key)
      when o.event_type = x.event_type and o.aggregate_type = x.aggregate_type and o.aggregate_id = x.aggregate_id
           and o.payload = x.payload and o.occurred_at is not distinct from x.occurred_at
        then jsonb_build_object('status', 'duplicate', 'event_id', o.id)
      else jsonb_build_object('status', 'conflict', 'event_id', o.id)
    end order by x.ord)
  into v_results
  from (
    select b.*, min(b.ord) over (partition by b.idempotency_key) as first_ord
    from integration.batch_rows(p_events, p_correlation_id) b
  ) x
  left join integration.outbox o on o.source = p_source and o.idempotency_key = x.idempotency_key;

  return v_results;
end;
$$;

comment on function integration.ingest_events(text, jsonb, text, text, text) is
  'Records a signed batch of events: each accepted, duplicate or conflict; the accepted in one transaction.';

revoke all on function integration.batch_rows(jsonb, text) from public, anon, authenticated;
revoke all on function integration.ingest_events(text, jsonb, text, text, text) from public, anon, authenticated;
grant execute on function integration.ingest_events(text, jsonb, text, text, text) to service_role;
