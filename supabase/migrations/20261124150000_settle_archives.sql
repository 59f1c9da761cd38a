-- The claim/settle path closer to pgmq (issue "Scale and faults", figures in
-- docs/scale.md).
--
-- 1. A delivered event leaves the hot table in the settle that acks it: one
--    DELETE ... RETURNING feeds one INSERT into outbox_archive, as pgmq's
--    archive does. The ack no longer writes a 'completed' row version into the
--    hot table's indexes, and archive_completed no longer rewrites every
--    delivered event a second time. Alerts (source 'switchyard') stay hot as
--    'completed' for their group window: raise_alert counts a repeat into the
--    row with the same key, and archive_completed moves them later.
-- 2. claim_outbox and router_claim return rows of one composite type instead
--    of a jsonb document each: PostgREST renders the same JSON, and the claim
--    no longer builds and re-parses a document per event.
-- 3. The settle checks ids by casting them, not by regex, and finds its rows
--    by primary key; the lease plans once per session.

-- ------------------------------------------------------------------ the claim

create type integration.leased_event as (
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
  max_concurrency integer,
  format text
);
comment on type integration.leased_event is
  'One leased outbox event with its route (target_url null: no route matches), as claim_outbox returns it.';

drop function integration.router_claim(text, integer, integer);
drop function integration.claim_outbox(text, integer, integer);
drop function integration.lease_batch(text, integer, integer);

create function integration.lease_batch(
  p_worker text,
  p_batch_size integer default 25,
  p_lease_seconds integer default 60
)
returns setof integration.leased_event
language plpgsql
security definer
set search_path = ''
-- The claim's plan does not depend on its arguments (the array form below),
-- yet the plan cache kept choosing a custom plan: a fresh plan per claim was
-- 7% of the queue's CPU under perf.
set plan_cache_mode = force_generic_plan
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

  if exists (select from integration.outbox o where o.status = 'processing' and o.lease_expires_at < now()) then
    perform integration.reclaim_expired_leases();
  end if;

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
  ), routed as materialized (
    -- A batch holds a few event types: one route lookup each, not one per event.
    select t.event_type, r.target_url, r.signing_secret, r.timeout_ms, r.max_concurrency, r.format
    from (select distinct c.event_type from claimed c) t
    left join lateral integration.route_for(t.event_type) r on true
  )
  select c.id, c.lock_token, c.source, c.event_type, c.aggregate_type, c.aggregate_id, c.payload,
         c.occurred_at, c.correlation_id, c.attempts, c.created_at,
         r.target_url, r.signing_secret, r.timeout_ms, r.max_concurrency, r.format
  from claimed c
  join routed r on r.event_type = c.event_type
  order by c.created_at;
end;
$$;

create function integration.claim_outbox(
  p_worker text,
  p_batch_size integer default 25,
  p_lease_seconds integer default 60
)
returns setof integration.leased_event
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_leased integration.leased_event[];
  v_routed integer;
  v_returned integer := 0;
begin
  -- An event no route matches fails at once; the claim leases again so that a
  -- batch of them does not read as an empty queue.
  for round in 1..10 loop
    select coalesce(array_agg(l order by l.created_at), '{}') into v_leased
    from integration.lease_batch(p_worker, p_batch_size - v_returned, p_lease_seconds) l;
    return query select * from unnest(v_leased) u where u.target_url is not null;
    get diagnostics v_routed = row_count;
    v_returned := v_returned + v_routed;
    exit when v_routed = cardinality(v_leased);
    perform integration.record_failure(u.id, 'no_route', null, p_final => true)
    from unnest(v_leased) u where u.target_url is null;
    exit when v_returned >= p_batch_size;
  end loop;
end;
$$;

create function integration.router_claim(
  p_worker text,
  p_batch_size integer default 25,
  p_lease_seconds integer default 60
)
returns setof integration.leased_event
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

revoke execute on function integration.lease_batch(text, integer, integer),
  integration.claim_outbox(text, integer, integer), integration.router_claim(text, integer, integer)
  from public, anon, authenticated;
grant execute on function integration.claim_outbox(text, integer, integer),
  integration.router_claim(text, integer, integer) to service_role;

-- ------------------------------------------------------------------ the archive

-- Two settles may both find a day's partition missing; the lock makes the
-- second one see the first one's table instead of failing on the name.
create or replace function integration.archive_partition(p_day date)
returns regclass
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_name text := 'outbox_archive_p' || to_char(p_day, 'YYYYMMDD');
  v_partition regclass := to_regclass('integration.' || v_name);
begin
  if v_partition is not null then
    return v_partition;
  end if;
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('integration.archive_partition'));
  v_partition := to_regclass('integration.' || v_name);
  if v_partition is not null then
    return v_partition;
  end if;
  execute format(
    'create table integration.%I partition of integration.outbox_archive for values from (%L) to (%L)',
    v_name, p_day::timestamp at time zone 'UTC', (p_day + 1)::timestamp at time zone 'UTC');
  execute format('alter table integration.%I enable row level security', v_name);
  execute format('revoke all on integration.%I from public, anon, authenticated, service_role', v_name);
  return ('integration.' || v_name)::regclass;
end;
$$;

-- pg_cron's minute job keeps today's and tomorrow's partitions ready, so a
-- settle creates one only if that job has not run since midnight UTC.
create or replace function integration.archive_completed(
  p_batch_size integer default 10000,
  p_max_batches integer default 20
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_today date := (now() at time zone 'UTC')::date;
  v_cutoff timestamptz;
  v_oldest timestamptz;
  v_day date;
  v_moved integer;
  v_total bigint := 0;
  v_batches integer := 0;
begin
  if p_batch_size is null or p_batch_size not between 1 and 100000
     or p_max_batches is null or p_max_batches not between 1 and 1000 then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'p_batch_size must be 1 to 100000 and p_max_batches 1 to 1000';
  end if;

  perform integration.archive_partition(v_today);
  perform integration.archive_partition(v_today + 1);

  -- An alert stays hot for its whole group window: raise_alert counts a
  -- repeat into the outbox row with the same key.
  select now() - make_interval(secs => greatest(r.hot_seconds, a.group_window_seconds))
  into v_cutoff
  from integration.retention_policy r cross join integration.alert_policy a;

  select min(o.completed_at) into v_oldest
  from integration.outbox o where o.status = 'completed';
  if v_oldest is null or v_oldest >= v_cutoff then
    return jsonb_build_object('archived', 0, 'cutoff', v_cutoff);
  end if;

  for v_day in
    select d::date from generate_series((v_oldest at time zone 'UTC')::date,
                                        (v_cutoff at time zone 'UTC')::date, interval '1 day') d
  loop
    perform integration.archive_partition(v_day);
  end loop;

  loop
    -- The pick is an array, evaluated once, as in claim_outbox: as a subquery
    -- under IN a plan may rescan it, and each rescan skips the rows already
    -- locked and picks others (a fresh database moved 3 rows in a batch of 1).
    with moved as (
      delete from integration.outbox o
      where o.id = any(array(
          select c.id from integration.outbox c
          where c.status = 'completed' and c.completed_at < v_cutoff
          order by c.completed_at
          limit p_batch_size
          for update skip locked))
      returning o.*
    )
    insert into integration.outbox_archive
      (id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at,
       correlation_id, attempts, last_error, error_history, receipt, created_at, completed_at)
    select m.id, m.source, m.idempotency_key, m.event_type, m.aggregate_type, m.aggregate_id, m.payload,
           m.occurred_at, m.correlation_id, m.attempts, m.last_error, m.error_history, m.receipt,
           m.created_at, m.completed_at
    from moved m;
    get diagnostics v_moved = row_count;
    v_total := v_total + v_moved;
    v_batches := v_batches + 1;
    exit when v_moved < p_batch_size or v_batches >= p_max_batches;
  end loop;

  return jsonb_build_object('archived', v_total, 'cutoff', v_cutoff);
end;
$$;

comment on function integration.archive_completed(integer, integer) is
  'Keeps today''s and tomorrow''s archive partitions ready and moves completed outbox rows older than the hot window (retention_policy.hot_seconds, at least the alert group window) into outbox_archive: alerts, since settle_outbox archives every other delivered event at once.';
comment on table integration.outbox_archive is
  'Delivered outbox events, one partition per UTC day (outbox_archive_pYYYYMMDD): written by settle_outbox as it acks and by archive_completed for alerts, dropped by drop_expired_archive.';
comment on table integration.retention_policy is
  'How long a delivered alert stays in the hot outbox at least (hot_seconds; other events are archived as they are acked) and how long the archive keeps delivered events (archive_days).';

-- ------------------------------------------------------------------ the settle

-- Also faster to check: the uuid regex cost about 120 us a settle of 25
-- (PostgreSQL's regex engine with bounded repeats), more than the DELETE; the
-- cast checks the same ids. The acks are found by primary key: a join with
-- the results let the planner hash every leased row, dead versions included.
create or replace function integration.settle_outbox(p_results jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_tokens uuid[];
  v_ok boolean[];
  v_receipts jsonb[];
  v_acked uuid[];
  v_alerts uuid[];
  v_failed uuid[] := '{}';
  v_failure record;
begin
  if jsonb_typeof(p_results) is distinct from 'array' or jsonb_array_length(p_results) > 1000 then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'p_results must be an array of at most 1000 results';
  end if;
  -- One pass checks every result before anything is written.
  if exists (
    select from jsonb_array_elements(p_results) e(v)
    where jsonb_typeof(v) is distinct from 'object'
       or jsonb_typeof(v -> 'id') is distinct from 'string'
       or jsonb_typeof(v -> 'lease_token') is distinct from 'string'
       or jsonb_typeof(v -> 'ok') is distinct from 'boolean'
       or coalesce(jsonb_typeof(v -> 'retry_after_seconds'), 'null') <> 'null'
          and coalesce(v ->> 'retry_after_seconds' !~ '^[0-9]{1,9}$', true)) then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'each result needs a uuid id and lease_token and a boolean ok; retry_after_seconds is a non-negative integer';
  end if;
  if exists (
    select from jsonb_array_elements(p_results) e(v)
    where v ? 'receipt' and (jsonb_typeof(v -> 'receipt') is distinct from 'object' or length((v -> 'receipt')::text) > 500)) then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'a receipt is an object of at most 500 characters';
  end if;
  begin
    select array_agg((r.v ->> 'id')::uuid order by r.ord), array_agg((r.v ->> 'lease_token')::uuid order by r.ord),
           array_agg((r.v ->> 'ok')::boolean order by r.ord), array_agg(r.v -> 'receipt' order by r.ord)
    into v_ids, v_tokens, v_ok, v_receipts
    from jsonb_array_elements(p_results) with ordinality r(v, ord);
  exception when invalid_text_representation then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'each result needs a uuid id and lease_token and a boolean ok; retry_after_seconds is a non-negative integer';
  end;
  if v_ids is null then
    return jsonb_build_object('acked', 0, 'failed', 0, 'stale', '[]'::jsonb);
  end if;

  perform integration.archive_partition((now() at time zone 'UTC')::date);

  -- Every success in one statement: the row leaves the hot table for the
  -- archive. A row whose lease was reclaimed or settled meanwhile no longer
  -- matches (the DELETE rechecks it after any lock wait).
  with delivered as (
    delete from integration.outbox o
    using unnest(v_ids, v_tokens, v_ok, v_receipts) r(id, lease_token, ok, receipt)
    where o.id = any(v_ids)
      and o.id = r.id and r.ok and o.lock_token = r.lease_token and o.status = 'processing'
      and o.source <> 'switchyard'
    returning o.id, o.source, o.idempotency_key, o.event_type, o.aggregate_type, o.aggregate_id, o.payload,
              o.occurred_at, o.correlation_id, o.attempts, o.last_error, o.error_history, r.receipt, o.created_at
  ), archived as (
    insert into integration.outbox_archive
      (id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at,
       correlation_id, attempts, last_error, error_history, receipt, created_at, completed_at)
    select d.id, d.source, d.idempotency_key, d.event_type, d.aggregate_type, d.aggregate_id, d.payload,
           d.occurred_at, d.correlation_id, d.attempts, d.last_error, d.error_history, d.receipt,
           d.created_at, now()
    from delivered d
    returning id)
  select coalesce(array_agg(a.id), '{}') into v_acked from archived a;

  -- Alerts stay hot as 'completed' for their group window; only a batch with
  -- an ack the statement above did not take pays for this one.
  if cardinality(v_acked) < cardinality(array_positions(v_ok, true)) then
    with acked as (
      update integration.outbox o set
        status = 'completed', completed_at = now(), receipt = r.receipt,
        locked_at = null, locked_by = null, lock_token = null, lease_expires_at = null, updated_at = now()
      from unnest(v_ids, v_tokens, v_ok, v_receipts) r(id, lease_token, ok, receipt)
      where o.id = any(v_ids)
        and o.id = r.id and r.ok and o.lock_token = r.lease_token and o.status = 'processing'
        and o.source = 'switchyard'
      returning o.id)
    select coalesce(array_agg(a.id), '{}') into v_alerts from acked a;
    v_acked := v_acked || v_alerts;
  end if;

  for v_failure in
    select (r.v ->> 'id')::uuid as id, (r.v ->> 'lease_token')::uuid as lease_token,
           coalesce(nullif(left(r.v ->> 'error', 1000), ''), 'unspecified error') as error,
           (r.v ->> 'retry_after_seconds')::integer as retry_after
    from jsonb_array_elements(p_results) with ordinality r(v, ord)
    where not (r.v ->> 'ok')::boolean
    order by r.ord
  loop
    if integration.holds_lease(v_failure.id, v_failure.lease_token) then
      perform integration.record_failure(v_failure.id, v_failure.error, v_failure.retry_after);
      v_failed := v_failed || v_failure.id;
    end if;
  end loop;

  return jsonb_build_object(
    'acked', cardinality(v_acked),
    'failed', cardinality(v_failed),
    'stale', (select coalesce(jsonb_agg(r.id order by r.ord), '[]')
              from unnest(v_ids) with ordinality r(id, ord)
              where r.id <> all (v_acked || v_failed)));
end;
$$;

-- The single ack is a settle of one: one place decides where a delivered
-- event goes.
create or replace function integration.ack_outbox(p_id uuid, p_lease_token uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform integration.lock_lease(p_id, p_lease_token);
  perform integration.settle_outbox(jsonb_build_array(
    jsonb_build_object('id', p_id, 'lease_token', p_lease_token, 'ok', true)));
  return jsonb_build_object('id', p_id, 'status', 'completed');
end;
$$;

drop function integration.complete_leased(uuid, jsonb);
