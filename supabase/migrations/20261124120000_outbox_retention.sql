-- Retention (issue: queues at scale): delivered events leave the hot outbox
-- for an archive partitioned by day, and event_log becomes the idempotency
-- authority.
--
-- Measured before: with 10M completed events in the outbox, claims, acks and
-- ingest kept their latency but the counting RPCs did not (outbox_stats 3.4 s,
-- console_overview 7.0 s), and the table only grew. Completed rows could not
-- simply be purged: the outbox's unique (source, idempotency_key) was what
-- made ingest idempotent.
--
-- Now ingest claims the key in event_log first (append-only, never purged, so
-- a key stays taken after its outbox row is gone), and a pg_cron job moves
-- completed rows older than the hot window into integration.outbox_archive,
-- one partition per UTC day; a daily job drops partitions past the retention
-- window. Settling stays one UPDATE: the move happens off the delivery path,
-- in batches.

alter table integration.event_log
  add constraint event_log_source_idempotency_key_key unique (source, idempotency_key);

comment on table integration.event_log is
  'Append-only audit trail of accepted events and the idempotency authority: one row per (source, idempotency_key), '
  'kept after the outbox row is archived; UPDATE, DELETE and TRUNCATE are refused for every role.';

create table integration.retention_policy (
  singleton boolean primary key default true check (singleton),
  -- Completed events stay in the outbox this long (at least the alert group
  -- window, whose grouping updates the row in place) before archive_completed
  -- moves them.
  hot_seconds integer not null default 900 check (hot_seconds between 60 and 86400),
  -- Archive partitions older than this many days are dropped; event_log keeps
  -- every event regardless.
  archive_days integer not null default 30 check (archive_days between 1 and 3650),
  updated_at timestamptz not null default now()
);
insert into integration.retention_policy default values;

comment on table integration.retention_policy is
  'How long delivered events stay in the hot outbox (hot_seconds) and in its archive (archive_days).';

create table integration.outbox_archive (
  id uuid not null,
  source text not null,
  idempotency_key text not null,
  event_type text not null,
  aggregate_type text not null,
  aggregate_id text not null,
  payload jsonb not null,
  occurred_at timestamptz,
  correlation_id text not null,
  attempts integer not null,
  last_error text,
  error_history jsonb not null,
  receipt jsonb,
  created_at timestamptz not null,
  completed_at timestamptz not null,
  archived_at timestamptz not null default now()
) partition by range (completed_at);

create index outbox_archive_id_idx on integration.outbox_archive (id);
create index outbox_archive_correlation_id_idx on integration.outbox_archive (correlation_id);
create index outbox_archive_completed_at_idx on integration.outbox_archive (completed_at);

comment on table integration.outbox_archive is
  'Delivered outbox events past the hot window, one partition per UTC day (outbox_archive_pYYYYMMDD); '
  'written only by archive_completed, dropped by drop_expired_archive.';

alter table integration.outbox_archive enable row level security;
create policy outbox_archive_operator_read on integration.outbox_archive
  for select to authenticated using ((select ops.is_operator()));
revoke all on integration.outbox_archive from public, anon, authenticated, service_role;
grant select on integration.outbox_archive to authenticated, service_role;

alter table integration.retention_policy enable row level security;
revoke all on integration.retention_policy from public, anon, authenticated, service_role;

-- Every delivery record, hot or archived, for the readers that look back
-- (traces, the event stream, the console's activity).
create view integration.outbox_and_archive with (security_invoker = true) as
select o.id, o.source, o.idempotency_key, o.event_type, o.aggregate_type, o.aggregate_id, o.payload,
       o.occurred_at, o.correlation_id, o.status, o.attempts, o.last_error, o.error_history, o.receipt,
       o.created_at, o.completed_at, o.dead_at, null::timestamptz as archived_at
from integration.outbox o
union all
select a.id, a.source, a.idempotency_key, a.event_type, a.aggregate_type, a.aggregate_id, a.payload,
       a.occurred_at, a.correlation_id, 'completed', a.attempts, a.last_error, a.error_history, a.receipt,
       a.created_at, a.completed_at, null, a.archived_at
from integration.outbox_archive a;

comment on view integration.outbox_and_archive is
  'The hot outbox and its archive as one relation (archived rows are completed).';

revoke all on integration.outbox_and_archive from public, anon, authenticated, service_role;
grant select on integration.outbox_and_archive to authenticated, service_role;

-- The partition that holds completed_at values of one UTC day, created on
-- first use. Partitions are reached only through the parent, so each one is
-- closed to every API role and keeps row level security on.
create function integration.archive_partition(p_day date)
returns regclass
language plpgsql security definer set search_path = '' as $$
declare
  v_name text := 'outbox_archive_p' || to_char(p_day, 'YYYYMMDD');
  v_partition regclass := to_regclass('integration.' || v_name);
begin
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

-- Moves completed events older than the hot window into the archive, oldest
-- first, in batches of p_batch_size until none is left or p_max_batches ran
-- (the every-minute job then moves up to 200,000 a minute). Locked rows are
-- skipped, never waited for.
create function integration.archive_completed(p_batch_size integer default 10000, p_max_batches integer default 20)
returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
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
  'Moves completed outbox events older than the hot window (retention_policy.hot_seconds, at least the alert group window) into outbox_archive.';

-- Drops the archive partitions whose whole day is older than archive_days.
-- Dropping a partition locks the archive for an instant, so it runs daily,
-- apart from the every-minute move.
create function integration.drop_expired_archive()
returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_keep_from date;
  v_partition record;
  v_dropped text[] := '{}';
begin
  select (now() at time zone 'UTC')::date - r.archive_days into v_keep_from
  from integration.retention_policy r;

  for v_partition in
    select c.relname
    from pg_catalog.pg_inherits i
    join pg_catalog.pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'integration.outbox_archive'::regclass
      and c.relname ~ '^outbox_archive_p[0-9]{8}$'
      and to_date(substr(c.relname, 17), 'YYYYMMDD') < v_keep_from
    order by c.relname
  loop
    execute format('drop table integration.%I', v_partition.relname);
    v_dropped := v_dropped || v_partition.relname::text;
  end loop;

  return jsonb_build_object('dropped', to_jsonb(v_dropped), 'kept_from', v_keep_from);
end;
$$;

comment on function integration.drop_expired_archive() is
  'Drops outbox_archive partitions older than retention_policy.archive_days; event_log is never purged.';

revoke all on function integration.archive_partition(date) from public, anon, authenticated, service_role;
revoke all on function integration.archive_completed(integer, integer) from public, anon, authenticated, service_role;
revoke all on function integration.drop_expired_archive() from public, anon, authenticated, service_role;

select cron.schedule('integration-archive-completed', '* * * * *', 'select integration.archive_completed()');
select cron.schedule('integration-drop-expired-archive', '40 3 * * *', 'select integration.drop_expired_archive()');

-- Ingest claims the key in event_log first. A repeat compares with the logged
-- event, which outlives the outbox row.
create or replace function integration.ingest_event(
  p_source text, p_idempotency_key text, p_event_type text, p_aggregate_type text, p_aggregate_id text,
  p_payload jsonb, p_correlation_id text, p_scheme text, p_signing_key_id text,
  p_occurred_at timestamptz default null, p_replay_digest text default null,
  p_replay_expires_at_ms bigint default null)
returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_id uuid := gen_random_uuid();
  v_logged integration.event_log%rowtype;
begin
  insert into integration.event_log
    (event_id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at,
     correlation_id, scheme, signing_key_id)
  values
    (v_id, p_source, p_idempotency_key, p_event_type, p_aggregate_type, p_aggregate_id, p_payload, p_occurred_at,
     p_correlation_id, p_scheme, p_signing_key_id)
  on conflict (source, idempotency_key) do nothing;

  if not found then
    select * into v_logged
    from integration.event_log l
    where l.source = p_source and l.idempotency_key = p_idempotency_key;

    if v_logged.event_type = p_event_type
       and v_logged.aggregate_type = p_aggregate_type
       and v_logged.aggregate_id = p_aggregate_id
       and v_logged.payload = p_payload
       and v_logged.occurred_at is not distinct from p_occurred_at then
      return jsonb_build_object('event_id', v_logged.event_id, 'duplicate', true);
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
      -- Raising rolls back the event_log row inserted above.
      raise exception using
        errcode = 'PT409',
        message = 'replayed_request',
        detail = 'this signature was already used with another idempotency key';
    end if;
  end if;

  insert into integration.outbox
    (id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at, correlation_id)
  values
    (v_id, p_source, p_idempotency_key, p_event_type, p_aggregate_type, p_aggregate_id, p_payload, p_occurred_at,
     p_correlation_id);

  return jsonb_build_object('event_id', v_id, 'duplicate', false);
end;
$$;

create or replace function integration.ingest_events(
  p_source text, p_events jsonb, p_correlation_id text, p_scheme text, p_signing_key_id text)
returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_inserted jsonb;
  v_results jsonb;
begin
  if jsonb_typeof(p_events) is distinct from 'array' or jsonb_array_length(p_events) not between 1 and 500 then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'p_events must be an array of 1 to 500 events';
  end if;

  -- One statement writes the new events, event_log and outbox, in batch
  -- order; a key met twice in the batch is written once. Malformed fields are
  -- the caller's mistake (the function checks them first): the table's
  -- constraints refuse what slips through, and the whole batch with it.
  with firsts as (
    select distinct on (b.idempotency_key) b.*, gen_random_uuid() as event_id
    from integration.batch_rows(p_events, p_correlation_id) b
    order by b.idempotency_key, b.ord
  ), logged as (
    insert into integration.event_log as l
      (event_id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at,
       correlation_id, scheme, signing_key_id)
    select f.event_id, p_source, f.idempotency_key, f.event_type, f.aggregate_type, f.aggregate_id, f.payload,
           f.occurred_at, f.correlation_id, p_scheme, p_signing_key_id
    from firsts f
    order by f.ord
    on conflict (source, idempotency_key) do nothing
    returning l.event_id, l.idempotency_key
  ), queued as (
    insert into integration.outbox
      (id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at, correlation_id)
    select f.event_id, p_source, f.idempotency_key, f.event_type, f.aggregate_type, f.aggregate_id, f.payload,
           f.occurred_at, f.correlation_id
    from logged l
    join firsts f on f.event_id = l.event_id
    order by f.ord
  )
  select coalesce(jsonb_object_agg(l.idempotency_key, l.event_id), '{}') into v_inserted from logged l;

  -- A second statement: it also sees the events of concurrent batches that
  -- committed while this one waited on their keys.
  select jsonb_agg(case
      when x.ord = x.first_ord and v_inserted ? x.idempotency_key
        then jsonb_build_object('status', 'accepted', 'event_id', v_inserted ->> x.idempotency_key)
      when l.event_type = x.event_type and l.aggregate_type = x.aggregate_type and l.aggregate_id = x.aggregate_id
           and l.payload = x.payload and l.occurred_at is not distinct from x.occurred_at
        then jsonb_build_object('status', 'duplicate', 'event_id', l.event_id)
      else jsonb_build_object('status', 'conflict', 'event_id', l.event_id)
    end order by x.ord)
  into v_results
  from (
    select b.*, min(b.ord) over (partition by b.idempotency_key) as first_ord
    from integration.batch_rows(p_events, p_correlation_id) b
  ) x
  left join integration.event_log l on l.source = p_source and l.idempotency_key = x.idempotency_key;

  return v_results;
end;
$$;

create or replace function integration.outbox_stats()
returns jsonb
language plpgsql stable security definer set search_path = '' as $$
begin
  perform ops.require_operator();
  return jsonb_build_object(
    -- 'completed' counts delivered events not yet archived.
    'by_status', jsonb_strip_nulls(jsonb_build_object(
      'pending', nullif((select count(*) from integration.outbox o where o.status = 'pending'), 0),
      'processing', nullif((select count(*) from integration.outbox o where o.status = 'processing'), 0),
      'completed', nullif((select count(*) from integration.outbox o where o.status = 'completed'), 0),
      'failed', nullif((select count(*) from integration.outbox o where o.status = 'failed'), 0))),
    'oldest_pending_age_seconds', (select extract(epoch from now() - min(o.created_at))::integer
        from integration.outbox o where o.status = 'pending'),
    'leased', (select count(*) from integration.outbox o where o.status = 'processing'),
    'expired_leases', (select count(*) from integration.outbox o
        where o.status = 'processing' and o.lease_expires_at < now()),
    -- The planner's estimate: counting a month of deliveries would cost seconds.
    'archive', (select jsonb_build_object('partitions', count(*),
                  'rows_estimate', coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint)
        from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'integration.outbox_archive'::regclass));
end;
$$;


-- The readers that look back see archived deliveries too.
create or replace view ops.events with (security_invoker = true) as
 SELECT 'job'::text AS stream,
    j.source,
    j.job_type AS type,
    e.job_id::text AS subject_id,
    e.to_status AS status,
    e.correlation_id,
    e.at
   FROM observability.job_events e
     JOIN observability.jobs j ON j.id = e.job_id
UNION ALL
 SELECT 'integration'::text AS stream,
    o.source,
    o.event_type AS type,
    o.id::text AS subject_id,
    o.status,
    o.correlation_id,
    o.created_at AS at
   FROM integration.outbox_and_archive o;

create or replace view ops.trace_rows with (security_invoker = true) as
 SELECT l.created_at AS at,
    'integration.event_log'::text AS source,
    'event.received'::text AS kind,
    l.event_id::text AS subject_id,
    jsonb_build_object('event_type', l.event_type, 'source', l.source, 'aggregate_type', l.aggregate_type, 'aggregate_id', l.aggregate_id, 'idempotency_key', l.idempotency_key, 'scheme', l.scheme) AS detail,
    l.correlation_id,
    1 AS source_rank,
    l.id AS seq
   FROM integration.event_log l
UNION ALL
 SELECT o.created_at AS at,
    'integration.outbox'::text AS source,
    'outbox.queued'::text AS kind,
    o.id::text AS subject_id,
    jsonb_build_object('event_type', o.event_type, 'source', o.source, 'aggregate_type', o.aggregate_type, 'aggregate_id', o.aggregate_id, 'status', o.status, 'attempts', o.attempts) AS detail,
    o.correlation_id,
    2 AS source_rank,
    0::bigint AS seq
   FROM integration.outbox_and_archive o
UNION ALL
 SELECT j.created_at AS at,
    'observability.jobs'::text AS source,
    'job.enqueued'::text AS kind,
    j.id::text AS subject_id,
    jsonb_strip_nulls(jsonb_build_object('job_type', j.job_type, 'source', j.source, 'priority', j.priority, 'max_attempts', j.max_attempts, 'idempotency_key', j.idempotency_key, 'status', j.status)) AS detail,
    j.correlation_id,
    3 AS source_rank,
    0::bigint AS seq
   FROM observability.jobs j
UNION ALL
 SELECT e.at,
    'observability.job_events'::text AS source,
    'job.'::text || e.to_status AS kind,
    e.job_id::text AS subject_id,
    jsonb_strip_nulls(jsonb_build_object('from', e.from_status, 'to', e.to_status, 'attempt', e.attempt, 'worker', e.worker)) || e.detail AS detail,
    e.correlation_id,
    4 AS source_rank,
    e.id AS seq
   FROM observability.job_events e
  WHERE e.from_status IS NOT NULL
UNION ALL
 SELECT r.finished_at AS at,
    'observability.job_runs'::text AS source,
    'job.run_'::text || r.outcome AS kind,
    r.job_id::text AS subject_id,
    jsonb_strip_nulls(jsonb_build_object('attempt', r.attempt, 'worker', r.worker, 'outcome', r.outcome, 'started_at', r.started_at, 'duration_ms', round(EXTRACT(epoch FROM r.finished_at - r.started_at) * 1000::numeric, 3), 'result', r.result, 'metrics', r.metrics, 'error', r.error)) AS detail,
    j.correlation_id,
    5 AS source_rank,
    r.id AS seq
   FROM observability.job_runs r
     JOIN observability.jobs j ON j.id = r.job_id
  WHERE r.finished_at IS NOT NULL
UNION ALL
 SELECT (a.value ->> 'at'::text)::timestamp with time zone AS at,
    'integration.outbox'::text AS source,
    'outbox.attempt_failed'::text AS kind,
    o.id::text AS subject_id,
    jsonb_build_object('event_type', o.event_type, 'attempt', a.value -> 'attempt'::text, 'worker', a.value -> 'worker'::text, 'error', a.value -> 'error'::text) AS detail,
    o.correlation_id,
    6 AS source_rank,
    a.ordinality AS seq
   FROM integration.outbox_and_archive o
     CROSS JOIN LATERAL jsonb_array_elements(o.error_history) WITH ORDINALITY a(value, ordinality)
UNION ALL
 SELECT o.completed_at AS at,
    'integration.outbox'::text AS source,
    'outbox.delivered'::text AS kind,
    o.id::text AS subject_id,
    jsonb_strip_nulls(jsonb_build_object('event_type', o.event_type, 'attempts', o.attempts, 'receipt', o.receipt)) AS detail,
    o.correlation_id,
    7 AS source_rank,
    0::bigint AS seq
   FROM integration.outbox_and_archive o
  WHERE o.completed_at IS NOT NULL
UNION ALL
 SELECT o.dead_at AS at,
    'integration.outbox'::text AS source,
    'outbox.dead'::text AS kind,
    o.id::text AS subject_id,
    jsonb_build_object('event_type', o.event_type, 'attempts', o.attempts, 'error', o.last_error) AS detail,
    o.correlation_id,
    7 AS source_rank,
    0::bigint AS seq
   FROM integration.outbox o
  WHERE o.dead_at IS NOT NULL
UNION ALL
 SELECT h.checked_at AS at,
    'observability.service_health'::text AS source,
    'health.'::text || h.status AS kind,
    h.service_id::text AS subject_id,
    jsonb_strip_nulls(jsonb_build_object('service', s.name, 'status', h.status, 'response_time_ms', h.response_time_ms, 'http_status', h.http_status, 'error', h.error)) AS detail,
    h.correlation_id,
    8 AS source_rank,
    h.id AS seq
   FROM observability.service_health h
     JOIN observability.services s ON s.id = h.service_id
UNION ALL
 SELECT r.queued_at AS at,
    'ops.runs'::text AS source,
    'run.'::text || r.kind AS kind,
    r.run_id AS subject_id,
    jsonb_strip_nulls(jsonb_build_object('project_id', r.project_id, 'env', r.env, 'git_sha', r.git_sha, 'git_ref', r.git_ref, 'status', r.status, 'requested_by', r.requested_by, 'rollback_of', r.rollback_of, 'requeue_of', r.requeue_of)) AS detail,
    r.correlation_id,
    9 AS source_rank,
    0::bigint AS seq
   FROM ops.runs r
UNION ALL
 SELECT e.created_at AS at,
    'ops.run_events'::text AS source,
    'run.event.'::text || e.level AS kind,
    e.run_id AS subject_id,
    jsonb_strip_nulls(jsonb_build_object('message', e.message, 'phase', e.phase, 'actor', e.actor, 'payload', NULLIF(e.payload, '{}'::jsonb))) AS detail,
    e.correlation_id,
    10 AS source_rank,
    e.id AS seq
   FROM ops.run_events e;

create or replace function ops.console_overview()
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_from timestamptz := date_trunc('minute', now(), 'UTC') - interval '59 minutes';
begin
  perform ops.require_operator();
  return jsonb_build_object(
    'generated_at', now(),
    'bus', jsonb_build_object(
      -- One count per status: each matches one of the outbox's partial indexes.
      -- 'completed' counts the delivered events not yet archived (retention_policy).
      'by_status', jsonb_build_object(
        'pending', (select count(*) from integration.outbox o where o.status = 'pending'),
        'processing', (select count(*) from integration.outbox o where o.status = 'processing'),
        'completed', (select count(*) from integration.outbox o where o.status = 'completed'),
        'failed', (select count(*) from integration.outbox o where o.status = 'failed')),
      'oldest_pending_age_seconds', (select extract(epoch from now() - min(o.created_at))::integer
        from integration.outbox o where o.status = 'pending'),
      'expired_leases', (select count(*) from integration.outbox o
        where o.status = 'processing' and o.lease_expires_at < now()),
      'retrying', (select count(*) from integration.outbox o where o.status = 'pending' and o.attempts > 0),
      'activity', (
        select jsonb_agg(jsonb_build_object('minute', m.minute, 'received', coalesce(r.n, 0),
          'delivered', coalesce(d.n, 0), 'dead_lettered', coalesce(x.n, 0)) order by m.minute)
        from generate_series(v_from, v_from + interval '59 minutes', interval '1 minute') m(minute)
        left join (select date_trunc('minute', l.created_at, 'UTC') as minute, count(*) as n
                   from integration.event_log l where l.created_at >= v_from group by 1) r on r.minute = m.minute
        left join (select date_trunc('minute', o.completed_at, 'UTC') as minute, count(*) as n
                   from integration.outbox_and_archive o where o.status = 'completed' and o.completed_at >= v_from
                   group by 1) d on d.minute = m.minute
        left join (select date_trunc('minute', o.dead_at, 'UTC') as minute, count(*) as n
                   from integration.outbox o where o.status = 'failed' and o.dead_at >= v_from
                   group by 1) x on x.minute = m.minute)),
    'jobs', jsonb_build_object(
      'by_status', jsonb_build_object(
        'queued', (select count(*) from observability.jobs j where j.status = 'queued'),
        'running', (select count(*) from observability.jobs j where j.status = 'running'),
        'failed', (select count(*) from observability.jobs j where j.status = 'failed'),
        'dead', (select count(*) from observability.jobs j where j.status = 'dead')),
      'oldest_queued_age_seconds', (select extract(epoch from now() - min(j.created_at))::integer
        from observability.jobs j where j.status = 'queued')),
    'services', coalesce((
      select jsonb_agg(jsonb_build_object('service_id', s.id, 'name', s.name, 'kind', s.kind,
        'enabled', s.enabled, 'status', s.status, 'last_checked_at', s.last_checked_at,
        'last_response_time_ms', s.last_response_time_ms, 'consecutive_failures', s.consecutive_failures,
        'uptime_24h', round(h.up::numeric / nullif(h.samples, 0), 4), 'samples', l.samples) order by s.name)
      from observability.services s
      -- Uptime as observability.get_health_summary counts it.
      cross join lateral (
        select count(*) as samples, count(*) filter (where x.status <> 'failing') as up
        from observability.service_health x
        where x.service_id = s.id and x.checked_at > now() - interval '24 hours') h
      cross join lateral (
        select coalesce(jsonb_agg(jsonb_build_object('checked_at', y.checked_at, 'status', y.status,
          'response_time_ms', y.response_time_ms) order by y.checked_at, y.id), '[]') as samples
        from (select x.id, x.checked_at, x.status, x.response_time_ms from observability.service_health x
              where x.service_id = s.id order by x.checked_at desc, x.id desc limit 30) y) l), '[]'),
    'runs_in_flight', coalesce((
      select jsonb_agg(jsonb_build_object('run_id', r.run_id, 'project_id', r.project_id, 'env', r.env,
        'kind', r.kind, 'status', r.status, 'phase', r.phase, 'git_sha', r.git_sha,
        'requested_by', r.requested_by, 'correlation_id', r.correlation_id, 'queued_at', r.queued_at,
        'started_at', r.started_at) order by r.queued_at desc, r.run_id)
      from (select * from ops.runs
            where status in ('awaiting_approval', 'queued', 'claimed', 'running')
            order by queued_at desc, run_id limit 20) r), '[]'),
    'approvals', jsonb_build_object(
      'runs', coalesce((
        select jsonb_agg(jsonb_build_object('run_id', r.run_id, 'project_id', r.project_id, 'env', r.env,
          'kind', r.kind, 'git_sha', r.git_sha, 'git_ref', r.git_ref, 'correlation_id', r.correlation_id,
          'queued_at', r.queued_at, 'requested_by', a.requested_by, 'requested_at', a.requested_at)
          order by a.requested_at, r.run_id)
        from ops.runs r
        join ops.approvals a on a.run_id = r.run_id and a.status = 'pending'
        where r.status = 'awaiting_approval'), '[]'),
      'actions', coalesce((
        select jsonb_agg(jsonb_build_object('handle', q.handle, 'tool', q.tool, 'arguments', q.arguments,
          'requested_by', q.requested_by, 'requested_via', q.requested_via, 'correlation_id', q.correlation_id,
          'created_at', q.created_at, 'expires_at', q.expires_at) order by q.created_at, q.handle)
        from ops.action_requests q
        where q.status = 'awaiting_approval' and q.expires_at > now()), '[]')),
    'frozen', coalesce((
      select jsonb_agg(jsonb_build_object('project_id', e.project_id, 'env', e.env, 'frozen_by', e.frozen_by,
        'frozen_reason', e.frozen_reason, 'frozen_at', e.frozen_at) order by e.frozen_at, e.project_id, e.env)
      from ops.environment_locks e where e.frozen), '[]'),
    'campaigns', (
      with unresolved as (
        select f.campaign_id, count(*) as n from campaigns.sync_failures f
        where f.resolved_at is null and f.campaign_id is not null group by f.campaign_id
      ), drift as (
        select c.id, c.name, c.workspace_id, w.name as workspace, c.status, c.n8n_status, c.sync_error,
               c.last_sync_at, coalesce(u.n, 0) as unresolved
        from campaigns.campaigns c
        join campaigns.workspaces w on w.id = c.workspace_id
        left join unresolved u on u.campaign_id = c.id
        where c.n8n_workflow_id is not null
          and (c.sync_error is not null or (c.status = 'active') <> (c.n8n_status = 'active') or u.n > 0)
      )
      select jsonb_build_object(
        'out_of_sync', (select count(*) from drift),
        'rows', coalesce((
          select jsonb_agg(jsonb_build_object('id', d.id, 'name', d.name, 'workspace_id', d.workspace_id,
            'workspace', d.workspace, 'status', d.status, 'n8n_status', d.n8n_status, 'sync_error', d.sync_error,
            'last_sync_at', d.last_sync_at, 'unresolved_sync_failures', d.unresolved,
            'reasons', to_jsonb(array_remove(array[
              case when d.sync_error is not null then 'sync error: ' || d.sync_error end,
              case when (d.status = 'active') <> (d.n8n_status = 'active')
                then format('status %s but n8n %s', d.status, d.n8n_status) end,
              case when d.unresolved > 0 then format('%s unresolved sync failure(s)', d.unresolved) end], null)))
            order by d.last_sync_at nulls first, d.name, d.id)
          from (select * from drift order by last_sync_at nulls first, name, id limit 10) d), '[]'))));
end;
$function$;
