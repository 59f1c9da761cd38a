-- Integration bus, consumer side: routes, leased claims with fenced ack/fail,
-- exponential backoff, dead letters, automatic lease reclaim, redrive, and the
-- monitoring queries of the seed as RPCs.

-- One row: how deliveries are retried. `backoff_seconds[n]` is the wait after
-- the n-th failed attempt; once every step is used the event is dead-lettered
-- (status 'failed', as the seed calls it). The seed's schedule is 30 s, 90 s, 5 min.
create table integration.delivery_policy (
  singleton boolean primary key default true check (singleton),
  backoff_seconds integer[] not null default '{30,90,300}'
    check (cardinality(backoff_seconds) between 0 and 20 and 0 < all (backoff_seconds)),
  max_retry_after_seconds integer not null default 3600 check (max_retry_after_seconds > 0),
  updated_at timestamptz not null default now()
);
insert into integration.delivery_policy default values;

-- Where events go. `event_pattern` is an exact event type (`expense.approved`)
-- or a prefix ending in `.*` (`expense.*`); the most specific route wins.
create table integration.routes (
  id bigint generated always as identity primary key,
  event_pattern text not null unique
    check (event_pattern ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*(\.\*)?$' or event_pattern = '*'),
  target_url text not null check (target_url ~ '^https?://'),
  -- Standard Webhooks secret (whsec_...) the deliveries are signed with.
  signing_secret text not null check (signing_secret like 'whsec_%'),
  timeout_ms integer not null default 10000 check (timeout_ms between 100 and 60000),
  max_concurrency integer not null default 8 check (max_concurrency between 1 and 256),
  enabled boolean not null default true,
  created_at timestamptz not null default now()
);

alter table integration.outbox
  add column lease_expires_at timestamptz,
  add column completed_at timestamptz,
  add column dead_at timestamptz,
  add column error_history jsonb not null default '[]' check (jsonb_typeof(error_history) = 'array');

create index outbox_leased_idx on integration.outbox (lease_expires_at) where status = 'processing';
create index outbox_dead_idx on integration.outbox (dead_at) where status = 'failed';

-- Audit of every redrive request, dry runs included.
create table integration.redrive_log (
  id bigint generated always as identity primary key,
  requested_by text not null,
  filter jsonb not null,
  dry_run boolean not null,
  matched integer not null,
  redriven integer not null,
  created_at timestamptz not null default now()
);

-- Whether a route pattern (`exact.type`, `prefix.*` or `*`) covers an event type.
create function integration.pattern_matches(p_pattern text, p_event_type text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_pattern = p_event_type
      or p_pattern = '*'
      or (p_pattern like '%.*'
          and left(p_event_type, length(p_pattern) - 1) = left(p_pattern, length(p_pattern) - 1))
$$;

-- The route for an event type: an exact match, else the longest matching prefix
-- pattern, else '*'. Null when nothing matches.
create function integration.route_for(p_event_type text)
returns integration.routes
language sql
stable
security definer
set search_path = ''
as $$
  select r.*
  from integration.routes r
  where r.enabled and integration.pattern_matches(r.event_pattern, p_event_type)
  order by (r.event_pattern = p_event_type) desc, length(r.event_pattern) desc
  limit 1
$$;

-- When a failed attempt may be retried: after the policy's step for this
-- attempt, or the receiver's Retry-After if that is longer (capped). Null when
-- the schedule is used up: dead-letter.
create function integration.next_attempt_at(p_attempts integer, p_retry_after_seconds integer)
returns timestamptz
language sql
stable
security definer
set search_path = ''
as $$
  select case
    when p_attempts > cardinality(p.backoff_seconds) then null
    else now() + make_interval(secs => greatest(
      p.backoff_seconds[p_attempts],
      least(coalesce(p_retry_after_seconds, 0), p.max_retry_after_seconds)))
  end
  from integration.delivery_policy p
$$;

-- Records a failed attempt on a leased row: back to pending with backoff, or
-- dead-lettered when the schedule is used up or p_final says no retry can
-- help (no_route). Shared by fail_outbox, lease reclaim and claim.
create function integration.record_failure(
  p_id uuid,
  p_error text,
  p_retry_after_seconds integer,
  p_final boolean default false
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row integration.outbox%rowtype;
  v_next timestamptz;
begin
  select * into v_row from integration.outbox where id = p_id;
  v_next := case when not p_final then integration.next_attempt_at(v_row.attempts, p_retry_after_seconds) end;
  update integration.outbox set
    status = case when v_next is null then 'failed' else 'pending' end,
    available_at = coalesce(v_next, available_at),
    dead_at = case when v_next is null then now() end,
    last_error = left(p_error, 2000),
    error_history = error_history || jsonb_build_array(jsonb_build_object(
      'attempt', v_row.attempts, 'at', now(), 'worker', v_row.locked_by, 'error', left(p_error, 2000))),
    locked_at = null, locked_by = null, lock_token = null, lease_expires_at = null,
    updated_at = now()
  where id = p_id;
  return case when v_next is null then 'failed' else 'pending' end;
end;
$$;

-- Returns expired leases to the queue (each expiry is a failed attempt).
-- Run by pg_cron every minute and by every claim, so the seed's manual
-- "unlock stuck events" query is never needed.
create function integration.reclaim_expired_leases()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_count integer := 0;
begin
  for v_id in
    select id from integration.outbox
    where status = 'processing' and lease_expires_at < now()
    order by lease_expires_at
    for update skip locked
  loop
    perform integration.record_failure(v_id, 'lease expired before ack or fail', null);
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- Leases up to p_batch_size available events, oldest first, for
-- p_lease_seconds, and joins each to its route. Internal: claim_outbox is the RPC.
create function integration.lease_batch(
  p_worker text,
  p_batch_size integer default 25,
  p_lease_seconds integer default 60
)
returns table (
  id uuid,
  lease_token uuid,
  source text,
  event_type text,
  aggregate_type text,
  aggregate_id text,
  payload jsonb,
  occurred_at timestamptz,
  correlation_id text,
  attempts integer,
  created_at timestamptz,
  target_url text,
  signing_secret text,
  timeout_ms integer,
  max_concurrency integer
)
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_worker is null or length(p_worker) not between 1 and 100 then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'p_worker must be 1 to 100 characters';
  end if;
  if p_batch_size not between 1 and 1000 then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'p_batch_size must be 1 to 1000';
  end if;
  if p_lease_seconds not between 5 and 3600 then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'p_lease_seconds must be 5 to 3600';
  end if;

  perform integration.reclaim_expired_leases();

  -- ANY(ARRAY(...)) rather than a CTE join: inside a function the join form
  -- gets a generic plan that scans the whole table.
  return query
  with claimed as (
    update integration.outbox o set
      status = 'processing',
      attempts = o.attempts + 1,
      locked_at = now(),
      locked_by = p_worker,
      lock_token = gen_random_uuid(),
      lease_expires_at = now() + make_interval(secs => p_lease_seconds),
      updated_at = now()
    where o.id = any(array(
      select c.id from integration.outbox c
      where c.status = 'pending' and c.available_at <= now()
      order by c.available_at, c.created_at
      limit p_batch_size
      for update skip locked))
    returning o.*
  )
  select c.id, c.lock_token, c.source, c.event_type, c.aggregate_type, c.aggregate_id, c.payload,
         c.occurred_at, c.correlation_id, c.attempts, c.created_at,
         r.target_url, r.signing_secret, r.timeout_ms, r.max_concurrency
  from claimed c
  left join lateral integration.route_for(c.event_type) r on true
  order by c.created_at;
end;
$$;

-- Claims up to p_batch_size available events, oldest first, for p_lease_seconds.
-- Each returned event carries its lease token (ack and fail must present it)
-- and its route. Events without a route are dead-lettered with 'no_route'
-- instead of being returned, and the claim leases again (a bounded number of
-- times) so that an empty answer means nothing routable is available.
create function integration.claim_outbox(
  p_worker text,
  p_batch_size integer default 25,
  p_lease_seconds integer default 60
)
returns setof jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_event record;
  v_returned integer := 0;
  v_unrouted integer;
begin
  for round in 1..10 loop
    v_unrouted := 0;
    for v_event in
      select * from integration.lease_batch(p_worker, p_batch_size - v_returned, p_lease_seconds)
    loop
      if v_event.target_url is null then
        perform integration.record_failure(v_event.id, 'no_route', null, p_final => true);
        v_unrouted := v_unrouted + 1;
      else
        v_returned := v_returned + 1;
        return next to_jsonb(v_event);
      end if;
    end loop;
    exit when v_unrouted = 0 or v_returned >= p_batch_size;
  end loop;
end;
$$;

-- Locks a leased row for settling, or refuses: the fence that keeps a late
-- ack or fail (its lease expired and was reclaimed) from changing anything.
create function integration.lock_lease(p_id uuid, p_lease_token uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform 1 from integration.outbox
  where id = p_id and lock_token = p_lease_token and status = 'processing'
  for update;
  if not found then
    raise exception using
      errcode = 'PT409', message = 'stale_lease',
      detail = 'the event is not leased with this token (the lease expired and was reclaimed, or it was already settled)';
  end if;
end;
$$;

create function integration.ack_outbox(p_id uuid, p_lease_token uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform integration.lock_lease(p_id, p_lease_token);
  update integration.outbox set
    status = 'completed', completed_at = now(),
    locked_at = null, locked_by = null, lock_token = null, lease_expires_at = null, updated_at = now()
  where id = p_id;
  return jsonb_build_object('id', p_id, 'status', 'completed');
end;
$$;

create function integration.fail_outbox(
  p_id uuid,
  p_lease_token uuid,
  p_error text,
  p_retry_after_seconds integer default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform integration.lock_lease(p_id, p_lease_token);
  if p_retry_after_seconds < 0 then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'p_retry_after_seconds must not be negative';
  end if;
  perform integration.record_failure(p_id, coalesce(nullif(p_error, ''), 'unspecified error'), p_retry_after_seconds);
  return (select jsonb_build_object('id', o.id, 'status', o.status, 'attempts', o.attempts, 'available_at', o.available_at)
          from integration.outbox o where o.id = p_id);
end;
$$;

-- Returns dead-lettered events to the queue: by ids, or by a filter (event
-- type pattern as in routes, created_at range, error text). With p_dry_run
-- (the default) it only counts. Every call is audited in redrive_log.
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
  v_filter jsonb;
  v_matched integer;
  v_redriven integer := 0;
begin
  if p_requested_by is null or length(p_requested_by) not between 1 and 200 then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'p_requested_by is required';
  end if;
  if p_ids is null and p_event_pattern is null and p_created_from is null and p_created_to is null
     and p_error_contains is null then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'give ids or at least one filter; redriving every dead event needs an explicit filter';
  end if;
  v_filter := jsonb_strip_nulls(jsonb_build_object(
    'ids', p_ids, 'event_pattern', p_event_pattern, 'created_from', p_created_from,
    'created_to', p_created_to, 'error_contains', p_error_contains));

  with matched as (
    select o.id from integration.outbox o
    where o.status = 'failed'
      and (p_ids is null or o.id = any(p_ids))
      and (p_event_pattern is null or integration.pattern_matches(p_event_pattern, o.event_type))
      and (p_created_from is null or o.created_at >= p_created_from)
      and (p_created_to is null or o.created_at < p_created_to)
      and (p_error_contains is null or strpos(o.last_error, p_error_contains) > 0)
    for update
  ), redriven as (
    update integration.outbox o set
      status = 'pending', attempts = 0, available_at = now(), dead_at = null, updated_at = now()
    from matched m
    where o.id = m.id and not p_dry_run
    returning 1
  )
  select (select count(*) from matched), (select count(*) from redriven) into v_matched, v_redriven;

  insert into integration.redrive_log (requested_by, filter, dry_run, matched, redriven)
  values (p_requested_by, v_filter, p_dry_run, v_matched, v_redriven);

  return jsonb_build_object('matched', v_matched, 'redriven', v_redriven, 'dry_run', p_dry_run);
end;
$$;

-- The seed's monitoring queries.
create function integration.outbox_stats()
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'by_status', coalesce((select jsonb_object_agg(status, n) from (
        select status, count(*) as n from integration.outbox group by status) s), '{}'),
    'oldest_pending_age_seconds', (select extract(epoch from now() - min(created_at))::integer
        from integration.outbox where status = 'pending'),
    'leased', (select count(*) from integration.outbox where status = 'processing'),
    'expired_leases', (select count(*) from integration.outbox
        where status = 'processing' and lease_expires_at < now()))
$$;

create function integration.event_types_last_hour()
returns table (event_type text, events bigint, last_seen timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
  select l.event_type, count(*), max(l.created_at)
  from integration.event_log l
  where l.created_at > now() - interval '1 hour'
  group by l.event_type
  order by count(*) desc, l.event_type
$$;

create function integration.failures_needing_attention(p_limit integer default 100)
returns table (id uuid, event_type text, attempts integer, last_error text, dead_at timestamptz,
               created_at timestamptz, correlation_id text)
language sql
stable
security definer
set search_path = ''
as $$
  select o.id, o.event_type, o.attempts, o.last_error, o.dead_at, o.created_at, o.correlation_id
  from integration.outbox o
  where o.status = 'failed'
  order by o.dead_at desc nulls last
  limit least(greatest(p_limit, 1), 1000)
$$;

select cron.schedule(
  'integration-reclaim-expired-leases',
  '* * * * *',
  'select integration.reclaim_expired_leases()'
);

-- Privileges: the consumer (service_role) claims, acks, fails and redrives;
-- authenticated operators may read the monitoring views; anon nothing.
alter table integration.delivery_policy enable row level security;
alter table integration.routes enable row level security;
alter table integration.redrive_log enable row level security;
revoke all on integration.delivery_policy, integration.routes, integration.redrive_log
  from public, anon, authenticated, service_role;
grant select, update on integration.delivery_policy to service_role;
grant select, insert, update, delete on integration.routes to service_role;
grant select on integration.redrive_log to service_role;
create policy redrive_log_authenticated_read on integration.redrive_log for select to authenticated using (true);
grant select on integration.redrive_log to authenticated;

-- Revoking from PUBLIC, anon and authenticated is idempotent across the
-- schema and leaves earlier explicit grants to service_role in place.
revoke execute on all functions in schema integration from public, anon, authenticated;
grant execute on function integration.claim_outbox(text, integer, integer) to service_role;
grant execute on function integration.ack_outbox(uuid, uuid) to service_role;
grant execute on function integration.fail_outbox(uuid, uuid, text, integer) to service_role;
grant execute on function integration.redrive_outbox(text, uuid[], text, timestamptz, timestamptz, text, boolean)
  to service_role;
grant execute on function integration.outbox_stats() to service_role, authenticated;
grant execute on function integration.event_types_last_hour() to service_role, authenticated;
grant execute on function integration.failures_needing_attention(integer) to service_role, authenticated;
