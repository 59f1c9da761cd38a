-- Least privilege for the database's own calls to edge functions.
--
-- pg_net (from triggers) and pg_cron wake functions over HTTP. Until now the
-- router's wake-up carried the service role key, stored in
-- integration.router_signal and copied into pg_net's queue on every wake-up.
-- Now each function the database invokes has a dedicated invocation token: the
-- function accepts it as a caller (Auth::Platform) and it grants nothing else,
-- not even a PostgREST call. A leak of this table or of pg_net's queue lets
-- someone wake a function early, no more. The service role key is never stored
-- in a table.

create schema if not exists edge;
revoke all on schema edge from public;

-- Where each function is and what the database presents to it. Readable by no
-- API role; on Supabase, Vault is the alternative home for the token.
create table edge.functions (
  name text primary key check (name ~ '^[a-z][a-z0-9-]{0,62}$'),
  url text not null check (url ~ '^https?://'),
  invocation_token text not null check (length(invocation_token) between 32 and 256),
  updated_at timestamptz not null default now()
);
alter table edge.functions enable row level security;
revoke all on edge.functions from public, anon, authenticated, service_role;

-- Registers (or, with a null url, removes) a function the database invokes.
-- A JWT is refused as a token: that would be an API key (the service role's,
-- typically), which is exactly what must not be stored here.
create function edge.configure_function(p_name text, p_url text, p_invocation_token text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_url is null then
    delete from edge.functions where name = p_name;
    return;
  end if;
  if p_invocation_token ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$' then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'an invocation token is an opaque random string, not a JWT or API key', hint = 'p_invocation_token';
  end if;
  insert into edge.functions (name, url, invocation_token)
  values (p_name, p_url, p_invocation_token)
  on conflict (name) do update set
    url = excluded.url, invocation_token = excluded.invocation_token, updated_at = now();
end;
$$;

create function edge.is_configured(p_name text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$ select exists (select 1 from edge.functions where name = p_name) $$;

-- Sends one POST to a function through pg_net, after the calling transaction
-- commits. Returns pg_net's request id, or null when the function is not
-- configured (or paused by removing it).
create function edge.invoke(p_name text, p_body jsonb, p_timeout_ms integer default 5000)
returns bigint
language sql
security definer
set search_path = ''
as $$
  select net.http_post(
    url => f.url,
    body => p_body,
    headers => jsonb_build_object(
      'Content-Type', 'application/json',
      'Authorization', 'Bearer ' || f.invocation_token),
    timeout_milliseconds => p_timeout_ms)
  from edge.functions f
  where f.name = p_name
$$;

revoke execute on all functions in schema edge from public, anon, authenticated, service_role;

-- The router moves to it. Its URL and bearer leave router_signal, which keeps
-- only the coalescing state.
insert into edge.functions (name, url, invocation_token)
select 'outbox-router', s.target_url, s.bearer
from integration.router_signal s
where s.target_url is not null
  and s.bearer is not null
  -- A stored service role key (a JWT) is not carried over: the operator sets a
  -- token with configure_router, and until then wake-ups are not sent.
  and s.bearer !~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$'
  and length(s.bearer) between 32 and 256;

-- The old functions read the columns about to be dropped.
drop function integration.configure_router(text, text);
alter table integration.router_signal drop column target_url, drop column bearer;

create function integration.configure_router(p_target_url text, p_invocation_token text)
returns void
language sql
security definer
set search_path = ''
as $$ select edge.configure_function('outbox-router', p_target_url, p_invocation_token) $$;

create or replace function integration.wake_router(p_reason text)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_request bigint;
begin
  v_request := edge.invoke('outbox-router', jsonb_build_object('reason', p_reason));
  if v_request is null then
    return null;
  end if;
  update integration.router_signal set
    active_until = greatest(active_until, clock_timestamp() + integration.router_active_window()),
    wakes_sent = wakes_sent + 1,
    last_wake_at = clock_timestamp(),
    last_wake_reason = p_reason;
  return v_request;
end;
$$;

create or replace function integration.wake_router_unless_active(p_reason text)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- Not configured (or paused by removing it): nothing to wake, and no
  -- active window that would suppress the wake-ups after it is configured.
  if not edge.is_configured('outbox-router')
     or exists (select 1 from integration.router_signal where active_until > clock_timestamp()) then
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

-- The last internal assertion that raised a message no function knows.
create or replace function integration.ingest_event(
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
      raise exception using errcode = 'PT422', message = 'validation_failed',
        detail = 'p_replay_expires_at_ms is required with p_replay_digest', hint = 'p_replay_expires_at_ms';
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

revoke execute on all functions in schema integration from public, anon;
