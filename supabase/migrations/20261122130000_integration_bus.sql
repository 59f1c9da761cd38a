-- Integration bus, ingress side: the durable outbox, the append-only event
-- log, the replay guard, and the one RPC that records a signed event.

create extension if not exists pg_cron;

create schema if not exists integration;
revoke all on schema integration from public;
grant usage on schema integration to authenticated, service_role;

-- The durable queue. Consumers claim rows with FOR UPDATE SKIP LOCKED and a
-- lease (locked_by/locked_at/lock_token); retries move available_at forward.
create table integration.outbox (
  id uuid primary key default gen_random_uuid(),
  source text not null check (source ~ '^[a-z][a-z0-9_-]{0,31}$'),
  idempotency_key text not null check (length(idempotency_key) between 1 and 255),
  event_type text not null check (length(event_type) between 1 and 100),
  aggregate_type text not null check (length(aggregate_type) between 1 and 100),
  aggregate_id text not null check (length(aggregate_id) between 1 and 128),
  payload jsonb not null check (jsonb_typeof(payload) = 'object'),
  occurred_at timestamptz,
  correlation_id text not null check (length(correlation_id) between 1 and 128),
  status text not null default 'pending'
    check (status in ('pending', 'processing', 'completed', 'failed')),
  attempts integer not null default 0 check (attempts >= 0),
  available_at timestamptz not null default now(),
  locked_at timestamptz,
  locked_by text,
  lock_token uuid,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint outbox_source_idempotency_key_key unique (source, idempotency_key),
  constraint outbox_lease_only_while_processing
    check ((status = 'processing') = (lock_token is not null))
) with (
  -- Queue churn: vacuum by row count, not by a fraction of a growing table.
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_analyze_scale_factor = 0,
  autovacuum_analyze_threshold = 5000
);

create index outbox_claimable_idx on integration.outbox (available_at, created_at)
  where status = 'pending';
create index outbox_created_at_idx on integration.outbox (created_at);

comment on table integration.outbox is
  'Durable queue of events from Odoo and other sources; one row per (source, idempotency_key).';

-- The audit trail: one row per accepted event, never changed or removed.
create table integration.event_log (
  id bigint generated always as identity primary key,
  -- The outbox row's id. No foreign key: the log outlives outbox pruning.
  event_id uuid not null,
  source text not null,
  idempotency_key text not null,
  event_type text not null,
  aggregate_type text not null,
  aggregate_id text not null,
  payload jsonb not null,
  occurred_at timestamptz,
  correlation_id text not null,
  -- How the request was authenticated and by which key (an id, not the key).
  scheme text not null,
  signing_key_id text not null,
  created_at timestamptz not null default now()
);

create index event_log_created_at_idx on integration.event_log (created_at);
create index event_log_event_id_idx on integration.event_log (event_id);

comment on table integration.event_log is
  'Append-only audit trail of accepted events; UPDATE, DELETE and TRUNCATE are refused for every role.';

create function integration.refuse_event_log_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = 'PT403',
    message = 'event_log_immutable',
    detail = format('integration.event_log is append-only; %s is refused', tg_op);
end;
$$;

create trigger event_log_append_only
  before update or delete on integration.event_log
  for each row execute function integration.refuse_event_log_change();

create trigger event_log_no_truncate
  before truncate on integration.event_log
  for each statement execute function integration.refuse_event_log_change();

-- MACs already used by schemes whose signature does not cover the
-- idempotency key (the seed's x-ipai scheme): a second use under another key
-- is a replay. Rows are kept until the signed timestamp leaves the window.
create table integration.replay_guard (
  digest text primary key check (digest ~ '^[0-9a-f]{64}$'),
  expires_at timestamptz not null
);

create index replay_guard_expires_at_idx on integration.replay_guard (expires_at);

-- Records one signed event: the outbox row and its event_log row in one
-- transaction. Idempotent per (source, idempotency_key): the same event again
-- returns the original id with duplicate = true and writes nothing; the same
-- key with a different event is idempotency_conflict (HTTP 409); a reused
-- signature under a new key is replayed_request (HTTP 409).
create function integration.ingest_event(
  p_source text,
  p_idempotency_key text,
  p_event_type text,
  p_aggregate_type text,
  p_aggregate_id text,
  p_payload jsonb,
  p_correlation_id text,
  p_scheme text,
  p_signing_key_id text,
  p_occurred_at timestamptz default null,
  p_replay_digest text default null,
  p_replay_expires_at_ms bigint default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_existing integration.outbox%rowtype;
begin
  insert into integration.outbox as o
    (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at, correlation_id)
  values
    (p_source, p_idempotency_key, p_event_type, p_aggregate_type, p_aggregate_id, p_payload, p_occurred_at,
     p_correlation_id)
  on conflict (source, idempotency_key) do nothing
  returning o.id into v_id;

  if v_id is null then
    select * into v_existing
    from integration.outbox o
    where o.source = p_source and o.idempotency_key = p_idempotency_key;

    if v_existing.event_type = p_event_type
       and v_existing.aggregate_type = p_aggregate_type
       and v_existing.aggregate_id = p_aggregate_id
       and v_existing.payload = p_payload
       and v_existing.occurred_at is not distinct from p_occurred_at then
      return jsonb_build_object('event_id', v_existing.id, 'duplicate', true);
    end if;
    raise exception using
      errcode = 'PT409',
      message = 'idempotency_conflict',
      detail = 'this idempotency key was already used for a different event';
  end if;

  if p_replay_digest is not null then
    if p_replay_expires_at_ms is null then
      raise exception using errcode = '22023', message = 'p_replay_expires_at_ms is required with p_replay_digest';
    end if;
    insert into integration.replay_guard (digest, expires_at)
    values (p_replay_digest, to_timestamp(p_replay_expires_at_ms / 1000.0))
    on conflict (digest) do nothing;
    if not found then
      -- Raising rolls back the outbox row inserted above.
      raise exception using
        errcode = 'PT409',
        message = 'replayed_request',
        detail = 'this signature was already used with another idempotency key';
    end if;
  end if;

  insert into integration.event_log
    (event_id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at,
     correlation_id, scheme, signing_key_id)
  values
    (v_id, p_source, p_idempotency_key, p_event_type, p_aggregate_type, p_aggregate_id, p_payload, p_occurred_at,
     p_correlation_id, p_scheme, p_signing_key_id);

  return jsonb_build_object('event_id', v_id, 'duplicate', false);
end;
$$;

comment on function integration.ingest_event is
  'Records one signed event in outbox + event_log atomically; idempotent per (source, idempotency_key).';

-- Drops replay-guard entries whose signatures can no longer pass the
-- timestamp window. Run every minute by pg_cron.
create function integration.purge_replay_guard()
returns integer
language sql
security definer
set search_path = ''
as $$
  with purged as (
    delete from integration.replay_guard where expires_at < now() returning 1
  )
  select count(*)::integer from purged;
$$;

select cron.schedule(
  'integration-purge-replay-guard',
  '* * * * *',
  'select integration.purge_replay_guard()'
);

-- Privileges: service_role writes through the RPC, authenticated reads, anon
-- gets nothing. EXECUTE is granted to PUBLIC by default on every function, so
-- it is revoked explicitly.
alter table integration.outbox enable row level security;
alter table integration.event_log enable row level security;
alter table integration.replay_guard enable row level security;

create policy outbox_authenticated_read on integration.outbox
  for select to authenticated using (true);
create policy event_log_authenticated_read on integration.event_log
  for select to authenticated using (true);

revoke all on all tables in schema integration from public, anon, authenticated, service_role;
grant select on integration.outbox, integration.event_log to authenticated;
grant select, insert, update, delete on integration.outbox to service_role;
-- The seed's service_role CRUD; on event_log the trigger still refuses
-- UPDATE, DELETE and TRUNCATE.
grant select, insert, update, delete on integration.event_log to service_role;

revoke execute on all functions in schema integration from public, anon, authenticated;
grant execute on function integration.ingest_event(
  text, text, text, text, text, jsonb, text, text, text, timestamptz, text, bigint
) to service_role;
