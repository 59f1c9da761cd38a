-- Push delivery: waking the outbox-router function from the database.
--
-- An AFTER INSERT trigger on the outbox wakes the router through pg_net's
-- `net.http_post` as soon as the inserting transaction commits; a pg_cron job
-- checks every minute as a safety net (expired leases, retries whose backoff
-- ended, a lost wake-up). Wake-ups are coalesced: while a router is active
-- (`router_signal.active_until` in the future) inserts send nothing, because
-- the active router keeps claiming until the queue is empty and may only go
-- idle through `release_router`, which waits for every in-flight inserting
-- transaction (an advisory lock: shared per insert, exclusive on release) so
-- no event committed during its run is left behind.
--
-- pg_net is fire-and-forget; the durable record is the outbox itself.

do $$
begin
  -- On Supabase pg_net is an extension; the local stack provides a compatible
  -- `net` schema (scripts/local/pg_net.sql) because pg_net cannot be built here.
  if to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is null then
    create extension if not exists pg_net;
  end if;
end
$$;

-- One row: where the router is, and whether one is active.
create table integration.router_signal (
  singleton boolean primary key default true check (singleton),
  -- The router's URL and the bearer it accepts (the service role key). Set per
  -- environment with integration.configure_router, never in a migration.
  target_url text check (target_url ~ '^https?://'),
  bearer text,
  -- A router is draining until then; it extends this at every claim.
  active_until timestamptz,
  wakes_sent bigint not null default 0,
  last_wake_at timestamptz,
  last_wake_reason text
) with (fillfactor = 50);  -- room for HOT updates of this one hot row
insert into integration.router_signal default values;

-- How long a router counts as active after a wake-up or a claim. An active
-- router that died stops suppressing wake-ups once this has passed.
create function integration.router_active_window()
returns interval
language sql
immutable
set search_path = ''
as $$ select interval '10 seconds' $$;

-- The advisory lock key that orders inserts against release_router.
create function integration.router_lock_key()
returns bigint
language sql
immutable
set search_path = ''
as $$ select 7256314870091823001::bigint $$;

create function integration.configure_router(p_target_url text, p_bearer text)
returns void
language sql
security definer
set search_path = ''
as $$
  update integration.router_signal set target_url = p_target_url, bearer = p_bearer;
$$;

-- Sends one wake-up request through pg_net (after commit) and counts it.
-- Returns the pg_net request id, or null when no router is configured.
create function integration.wake_router(p_reason text)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_signal integration.router_signal;
  v_request bigint;
begin
  select * into v_signal from integration.router_signal;
  if v_signal.target_url is null then
    return null;
  end if;
  v_request := net.http_post(
    url => v_signal.target_url,
    body => jsonb_build_object('reason', p_reason),
    headers => jsonb_build_object(
      'Content-Type', 'application/json',
      'Authorization', 'Bearer ' || v_signal.bearer),
    timeout_milliseconds => 5000);
  update integration.router_signal set
    active_until = greatest(active_until, clock_timestamp() + integration.router_active_window()),
    wakes_sent = wakes_sent + 1,
    last_wake_at = clock_timestamp(),
    last_wake_reason = p_reason;
  return v_request;
end;
$$;

-- Wakes a router unless one is active. The conditional UPDATE lets exactly
-- one of several concurrent callers win; the others see an active router.
create function integration.wake_router_unless_active(p_reason text)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- Not configured (or paused by clearing the URL): nothing to wake, and no
  -- active window that would suppress the wake-ups after it is configured.
  if exists (select 1 from integration.router_signal
             where target_url is null or active_until > clock_timestamp()) then
    return null;
  end if;
  update integration.router_signal
  set active_until = clock_timestamp() + integration.router_active_window()
  where active_until is null or active_until <= clock_timestamp();
  if not found then
    return null;
  end if;
  return integration.wake_router(p_reason);
end;
$$;

-- For a transaction that makes events available (an insert, a redrive). The
-- shared lock is held to commit, so release_router cannot go idle while such
-- a transaction is in flight and its events would be left behind.
create function integration.request_router(p_reason text)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform pg_advisory_xact_lock_shared(integration.router_lock_key());
  return integration.wake_router_unless_active(p_reason);
end;
$$;

create function integration.on_outbox_insert()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform integration.request_router('insert');
  return null;
end;
$$;

-- Once per statement, so a multi-row insert wakes at most once.
create trigger outbox_wake_router
after insert on integration.outbox
for each statement execute function integration.on_outbox_insert();

-- The safety net run by pg_cron: a router only when there is work and none is
-- active (a crashed router, a retry whose backoff ended, a lost wake-up).
create function integration.wake_router_if_due()
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform integration.reclaim_expired_leases();
  if not exists (select 1 from integration.outbox where status = 'pending' and available_at <= now()) then
    return null;
  end if;
  return integration.wake_router_unless_active('cron');
end;
$$;

select cron.schedule(
  'integration-outbox-router-safety-net',
  '* * * * *',
  'select integration.wake_router_if_due()'
);

-- The router's claim: claim_outbox, and the router stays active.
create function integration.router_claim(
  p_worker text,
  p_batch_size integer default 25,
  p_lease_seconds integer default 60
)
returns setof jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  update integration.router_signal
  set active_until = greatest(active_until, clock_timestamp() + integration.router_active_window());
  return query select * from integration.claim_outbox(p_worker, p_batch_size, p_lease_seconds);
end;
$$;

-- Whether p_lease_token holds p_id's lease; when it does the row is locked
-- for settling. The fence under lock_lease (which refuses) and settle_outbox
-- (which counts).
create function integration.holds_lease(p_id uuid, p_lease_token uuid)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform 1 from integration.outbox
  where id = p_id and lock_token = p_lease_token and status = 'processing'
  for update;
  return found;
end;
$$;

-- Completes an event whose lease the caller holds.
create function integration.complete_leased(p_id uuid)
returns void
language sql
security definer
set search_path = ''
as $$
  update integration.outbox set
    status = 'completed', completed_at = now(),
    locked_at = null, locked_by = null, lock_token = null, lease_expires_at = null, updated_at = now()
  where id = p_id;
$$;

-- ack_outbox and lock_lease, unchanged in behaviour, on the two helpers above.
create or replace function integration.lock_lease(p_id uuid, p_lease_token uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not integration.holds_lease(p_id, p_lease_token) then
    raise exception using
      errcode = 'PT409', message = 'stale_lease',
      detail = 'the event is not leased with this token (the lease expired and was reclaimed, or it was already settled)';
  end if;
end;
$$;

create or replace function integration.ack_outbox(p_id uuid, p_lease_token uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform integration.lock_lease(p_id, p_lease_token);
  perform integration.complete_leased(p_id);
  return jsonb_build_object('id', p_id, 'status', 'completed');
end;
$$;

-- Settles a delivered batch in one call: each element is
-- {id, lease_token, ok, error?, retry_after_seconds?}. An element whose lease
-- is stale (expired and reclaimed, or already settled) changes nothing and is
-- counted, so one late result cannot fail the rest of the batch.
create function integration.settle_outbox(p_results jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_result jsonb;
  v_id uuid;
  v_token uuid;
  v_retry_after integer;
  v_acked integer := 0;
  v_failed integer := 0;
  v_stale jsonb := '[]';
begin
  if jsonb_typeof(p_results) is distinct from 'array' or jsonb_array_length(p_results) > 1000 then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'p_results must be an array of at most 1000 results';
  end if;
  for v_result in select value from jsonb_array_elements(p_results) loop
    begin
      v_id := (v_result->>'id')::uuid;
      v_token := (v_result->>'lease_token')::uuid;
      v_retry_after := (v_result->>'retry_after_seconds')::integer;
    exception when invalid_text_representation or numeric_value_out_of_range then
      raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'each result needs a uuid id and lease_token; retry_after_seconds is an integer';
    end;
    if v_id is null or v_token is null or jsonb_typeof(v_result->'ok') is distinct from 'boolean'
       or v_retry_after < 0 then
      raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'each result needs id, lease_token and a boolean ok; retry_after_seconds must not be negative';
    end if;
    if not integration.holds_lease(v_id, v_token) then
      v_stale := v_stale || to_jsonb(v_id);
    elsif (v_result->>'ok')::boolean then
      perform integration.complete_leased(v_id);
      v_acked := v_acked + 1;
    else
      perform integration.record_failure(
        v_id, coalesce(nullif(left(v_result->>'error', 1000), ''), 'unspecified error'), v_retry_after);
      v_failed := v_failed + 1;
    end if;
  end loop;
  return jsonb_build_object('acked', v_acked, 'failed', v_failed, 'stale', v_stale);
end;
$$;

-- The router's last call. With work available it stays active and answers
-- released = false (the router claims again), or, when the router is out of
-- time, hands off to a fresh invocation. Otherwise it goes idle, after every
-- in-flight insert has committed (see the header).
create function integration.release_router(p_worker text, p_out_of_time boolean default false)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform set_config('lock_timeout', '2s', true);
  begin
    perform pg_advisory_xact_lock(integration.router_lock_key());
  exception when lock_not_available then
    -- A long transaction is inserting: stay active and look again.
    return jsonb_build_object('released', false, 'handed_off', false);
  end;
  if exists (select 1 from integration.outbox where status = 'pending' and available_at <= now()) then
    if p_out_of_time then
      perform integration.wake_router('handoff');
      return jsonb_build_object('released', true, 'handed_off', true);
    end if;
    return jsonb_build_object('released', false, 'handed_off', false);
  end if;
  update integration.router_signal set active_until = null;
  return jsonb_build_object('released', true, 'handed_off', false);
end;
$$;

-- A redrive returns events to the queue: wake a router for them. The body
-- stays in the earlier function, renamed; the RPC keeps its name and arguments.
alter function integration.redrive_outbox(text, uuid[], text, timestamptz, timestamptz, text, boolean)
  rename to redrive_dead_letters;
revoke execute on function integration.redrive_dead_letters(text, uuid[], text, timestamptz, timestamptz, text, boolean)
  from service_role;

create function integration.redrive_outbox(
  p_requested_by text,
  p_ids uuid[] default null,
  p_event_pattern text default null,
  p_created_from timestamptz default null,
  p_created_to timestamptz default null,
  p_error_contains text default null,
  p_dry_run boolean default true
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  v_result := integration.redrive_dead_letters(p_requested_by, p_ids, p_event_pattern, p_created_from,
                                                p_created_to, p_error_contains, p_dry_run);
  if (v_result->>'redriven')::integer > 0 then
    perform integration.request_router('redrive');
  end if;
  return v_result;
end;
$$;

alter table integration.router_signal enable row level security;
revoke all on integration.router_signal from public, anon, authenticated, service_role;

-- New functions are executable by PUBLIC until revoked; authenticated keeps
-- its explicit grants on the monitoring RPCs.
revoke execute on all functions in schema integration from public, anon;
grant execute on function integration.router_claim(text, integer, integer) to service_role;
grant execute on function integration.settle_outbox(jsonb) to service_role;
grant execute on function integration.release_router(text, boolean) to service_role;
grant execute on function integration.redrive_outbox(text, uuid[], text, timestamptz, timestamptz, text, boolean)
  to service_role;
