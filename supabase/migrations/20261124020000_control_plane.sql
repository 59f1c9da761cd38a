-- Control plane: the job ledger (schema `observability`: jobs, one run per
-- attempt, and an audit row for every transition, written by a trigger),
-- service health with down/recovery alerts, hourly metrics, retention; schema
-- `ops` with the event-style view, queue depth and one trace per correlation
-- id across every schema; alerts as outbox events (integration.raise_alert,
-- routes with a `chat` format); and operational data readable by operators
-- (JWT app_metadata.role = 'operator') and the service role only.
--
-- RPCs the seed's n8n nodes call keep the seed's parameter names (no p_
-- prefix): a PostgREST body's keys are the parameter names.

-- ------------------------------------------------------------------ ops: who

create schema if not exists ops;
revoke all on schema ops from public;
grant usage on schema ops to authenticated, service_role;

create schema if not exists observability;
revoke all on schema observability from public;
grant usage on schema observability to authenticated, service_role;

-- Whether the caller is an operator: a signed-in user whose JWT carries
-- app_metadata.role = 'operator' (PostgREST puts the verified claims in
-- request.jwt.claims). SECURITY INVOKER: RLS policies call it as the user.
create function ops.is_operator()
returns boolean
language sql
stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claims', true), '')::jsonb #>> '{app_metadata,role}' = 'operator',
    false)
$$;

-- The first statement of every SECURITY DEFINER read RPC that authenticated
-- may call: operators and the service role pass, any other user is refused.
-- current_setting('role') is the role PostgREST (or SET ROLE) switched to; a
-- SECURITY DEFINER function changes current_user, not this setting. 'none' is
-- a direct connection (the database owner, pg_cron).
create function ops.require_operator()
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if current_setting('role') in ('none', 'service_role') or ops.is_operator() then
    return;
  end if;
  raise exception using errcode = 'PT403', message = 'forbidden',
    detail = 'operational data is for operators (app_metadata.role = operator) and the service role only';
end;
$$;

-- --------------------------------------------------- integration: operators

-- Every signed-up user is `authenticated`; only operators read the bus.
drop policy outbox_authenticated_read on integration.outbox;
drop policy event_log_authenticated_read on integration.event_log;
drop policy redrive_log_authenticated_read on integration.redrive_log;
create policy outbox_operator_read on integration.outbox
  for select to authenticated using ((select ops.is_operator()));
create policy event_log_operator_read on integration.event_log
  for select to authenticated using ((select ops.is_operator()));
create policy redrive_log_operator_read on integration.redrive_log
  for select to authenticated using ((select ops.is_operator()));

-- The seed's monitoring queries, unchanged in what they answer, refuse
-- authenticated users who are not operators (they are SECURITY DEFINER, so
-- RLS would not).
create or replace function integration.outbox_stats()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform ops.require_operator();
  return jsonb_build_object(
    'by_status', coalesce((select jsonb_object_agg(s.status, s.n) from (
        select o.status, count(*) as n from integration.outbox o group by o.status) s), '{}'),
    'oldest_pending_age_seconds', (select extract(epoch from now() - min(o.created_at))::integer
        from integration.outbox o where o.status = 'pending'),
    'leased', (select count(*) from integration.outbox o where o.status = 'processing'),
    'expired_leases', (select count(*) from integration.outbox o
        where o.status = 'processing' and o.lease_expires_at < now()));
end;
$$;

create or replace function integration.event_types_last_hour()
returns table (event_type text, events bigint, last_seen timestamptz)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform ops.require_operator();
  return query
  select l.event_type, count(*), max(l.created_at)
  from integration.event_log l
  where l.created_at > now() - interval '1 hour'
  group by l.event_type
  order by count(*) desc, l.event_type;
end;
$$;

create or replace function integration.failures_needing_attention(p_limit integer default 100)
returns table (id uuid, event_type text, attempts integer, last_error text, dead_at timestamptz,
               created_at timestamptz, correlation_id text)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform ops.require_operator();
  return query
  select o.id, o.event_type, o.attempts, o.last_error, o.dead_at, o.created_at, o.correlation_id
  from integration.outbox o
  where o.status = 'failed'
  order by o.dead_at desc nulls last
  limit least(greatest(p_limit, 1), 1000);
end;
$$;

-- Traces look rows up by correlation id in every source.
create index outbox_correlation_id_idx on integration.outbox (correlation_id);
create index event_log_correlation_id_idx on integration.event_log (correlation_id);

-- ------------------------------------------------------- integration: alerts

-- How a route wants its body: Standard Webhooks (signed JSON), or `chat`, an
-- incoming-webhook body {"text": ...} for Mattermost or Slack.
alter table integration.routes
  add column format text not null default 'standard-webhooks'
    check (format in ('standard-webhooks', 'chat'));

-- lease_batch returns an explicit column list: recreated with the route's
-- format. claim_outbox (and so router_claim) returns to_jsonb of each row, so
-- its JSON gains the key `format`.
drop function integration.lease_batch(text, integer, integer);
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
  max_concurrency integer,
  format text
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
         r.target_url, r.signing_secret, r.timeout_ms, r.max_concurrency, r.format
  from claimed c
  left join lateral integration.route_for(c.event_type) r on true
  order by c.created_at;
end;
$$;

-- One row: alert grouping. Alerts of the same kind and subject raised within
-- one window (fixed windows of this many seconds, aligned to the epoch) are
-- one outbox event.
create table integration.alert_policy (
  singleton boolean primary key default true check (singleton),
  group_window_seconds integer not null default 600 check (group_window_seconds between 60 and 86400),
  updated_at timestamptz not null default now()
);
insert into integration.alert_policy default values;

-- "Fail loudly": queues an `alert.<kind>` event (source 'switchyard') in the
-- caller's transaction, which the router delivers like any other event (route
-- `alert.*`, typically with format 'chat'). Its idempotency key is
-- alert.<kind>:<subject>:<window start>, so a repeat within the window is
-- grouped into the first: its payload's count goes up and last_at moves,
-- whatever the event's status. A repeat while the event is still pending is
-- therefore delivered once, with the count; a repeat after the event was
-- delivered is only counted on its row and sends nothing new. A service that
-- flaps thus sends at most one down and one recovery alert per window.
-- Payload: kind, subject, summary, details, count, first_at, last_at,
-- correlation_id. Returns {event_id, grouped, count}.
create function integration.raise_alert(
  p_kind text,
  p_subject text,
  p_summary text,
  p_details jsonb default '{}',
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_window integer;
  v_key text;
  v_correlation_id text := coalesce(p_correlation_id, gen_random_uuid()::text);
  v_id uuid;
  v_count integer;
begin
  if p_kind is null or p_kind !~ '^[a-z][a-z0-9_]{0,39}$' then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'p_kind must be 1 to 40 characters of a-z, 0-9 and _, starting with a letter', hint = 'p_kind';
  end if;
  if p_subject is null or length(p_subject) not between 1 and 128 then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'p_subject must be 1 to 128 characters', hint = 'p_subject';
  end if;
  if p_summary is null or length(p_summary) not between 1 and 2000 then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'p_summary must be 1 to 2000 characters', hint = 'p_summary';
  end if;
  if p_details is not null and jsonb_typeof(p_details) <> 'object' then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'p_details must be a JSON object', hint = 'p_details';
  end if;
  if length(p_correlation_id) not between 1 and 128 then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'p_correlation_id must be 1 to 128 characters', hint = 'p_correlation_id';
  end if;

  select a.group_window_seconds into v_window from integration.alert_policy a;
  v_key := format('alert.%s:%s:%s', p_kind, p_subject,
    to_char(to_timestamp(floor(extract(epoch from now()) / v_window) * v_window) at time zone 'UTC',
            'YYYY-MM-DD"T"HH24:MI:SS"Z"'));

  insert into integration.outbox as o
    (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
  values
    ('switchyard', v_key, 'alert.' || p_kind, 'alert', p_subject,
     jsonb_build_object('kind', p_kind, 'subject', p_subject, 'summary', p_summary,
       'details', coalesce(p_details, '{}'), 'count', 1, 'first_at', now(), 'last_at', now(),
       'correlation_id', v_correlation_id),
     v_correlation_id)
  on conflict (source, idempotency_key) do nothing
  returning o.id into v_id;
  if v_id is not null then
    return jsonb_build_object('event_id', v_id, 'grouped', false, 'count', 1);
  end if;

  update integration.outbox o set
    payload = o.payload || jsonb_build_object(
      'count', coalesce((o.payload ->> 'count')::integer, 1) + 1, 'last_at', now()),
    updated_at = now()
  where o.source = 'switchyard' and o.idempotency_key = v_key
  returning o.id, (o.payload ->> 'count')::integer into v_id, v_count;
  return jsonb_build_object('event_id', v_id, 'grouped', true, 'count', v_count);
end;
$$;

-- ------------------------------------------------------ observability: jobs

-- One row: retention, job retry backoff, default lease.
-- job_backoff_seconds[n] is the wait after the n-th failed attempt (the last
-- step repeats when max_attempts is longer than the schedule).
create table observability.settings (
  singleton boolean primary key default true check (singleton),
  job_events_retention_days integer not null default 30 check (job_events_retention_days between 1 and 3650),
  job_runs_retention_days integer not null default 30 check (job_runs_retention_days between 1 and 3650),
  service_health_retention_days integer not null default 14
    check (service_health_retention_days between 1 and 3650),
  job_backoff_seconds integer[] not null default '{30,120,600}'
    check (cardinality(job_backoff_seconds) between 1 and 20 and 0 < all (job_backoff_seconds)
           and array_position(job_backoff_seconds, null) is null),
  lease_seconds integer not null default 60 check (lease_seconds between 5 and 3600),
  -- A job due this long ago that nobody has taken raises alert.job_stuck.
  stuck_after_seconds integer not null default 900 check (stuck_after_seconds between 60 and 86400),
  updated_at timestamptz not null default now()
);
insert into observability.settings default values;

-- A dotted job type such as `deploy.staging`.
create function observability.valid_job_type(p_job_type text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select length(p_job_type) between 1 and 100
     and p_job_type ~ '^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$'
$$;

-- The job queue and its state machine:
--   queued    -> running (claim_job, or start_job by the executor that
--                enqueued it), succeeded/failed/dead (complete_job or
--                fail_job without a claim), cancelled
--   running   -> succeeded, failed (an attempt failed, a retry is scheduled at
--                available_at), dead (the last attempt failed), cancelled;
--                an expired lease is a failed attempt (reclaim)
--   failed    -> running (claimed again once available, or start_job),
--                succeeded/failed/dead
--                (settled without a claim), cancelled
--   dead      -> queued (requeue_job), cancelled (dismissed)
--   cancelled -> queued (requeue_job)
-- Every transition writes one job_events row (trigger below).
create table observability.jobs (
  id uuid primary key default gen_random_uuid(),
  source text not null check (source ~ '^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,63}$'),
  job_type text not null check (observability.valid_job_type(job_type)),
  payload jsonb not null default '{}' check (jsonb_typeof(payload) = 'object'),
  context jsonb not null default '{}' check (jsonb_typeof(context) = 'object'),
  -- Higher runs first.
  priority integer not null default 0 check (priority between -100 and 100),
  status text not null default 'queued'
    check (status in ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')),
  attempts integer not null default 0 check (attempts >= 0),
  max_attempts integer not null default 3 check (max_attempts between 1 and 20),
  available_at timestamptz not null default now(),
  locked_by text,
  locked_at timestamptz,
  lease_token uuid,
  lease_expires_at timestamptz,
  idempotency_key text check (length(idempotency_key) between 1 and 255),
  correlation_id text not null default gen_random_uuid()::text check (length(correlation_id) between 1 and 128),
  result jsonb,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz,
  -- Unique per source when set (NULLs are distinct).
  constraint jobs_source_idempotency_key_key unique (source, idempotency_key),
  constraint jobs_lease_only_while_running check ((status = 'running') = (lease_token is not null)),
  constraint jobs_finished_only_when_final
    check ((status in ('succeeded', 'dead', 'cancelled')) = (finished_at is not null))
) with (
  -- Queue churn: vacuum by row count, not by a fraction of a growing table.
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_analyze_scale_factor = 0,
  autovacuum_analyze_threshold = 5000
);

-- The claim's order within each job type.
create index jobs_claimable_idx on observability.jobs (job_type, priority desc, available_at, created_at)
  where status in ('queued', 'failed');
create index jobs_leased_idx on observability.jobs (lease_expires_at) where status = 'running';
-- Queue depth and the dead-letter view: the jobs that are not finished well.
create index jobs_open_idx on observability.jobs (status, job_type, created_at)
  where status in ('queued', 'running', 'failed', 'dead');
create index jobs_correlation_id_idx on observability.jobs (correlation_id);
create index jobs_created_at_idx on observability.jobs (created_at);

comment on table observability.jobs is
  'Job queue with a state machine; every status change is audited in job_events.';

-- One row per attempt. A claim (or start_job) opens a run; complete, fail,
-- cancel or the lease reclaim closes it. Completing or failing a job that was
-- never claimed (enqueue, execute, complete) records a run that started when
-- the job last changed. At most one run per job is open.
create table observability.job_runs (
  id bigint generated always as identity primary key,
  job_id uuid not null references observability.jobs (id) on delete cascade,
  attempt integer not null check (attempt >= 1),
  worker text,
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz,
  outcome text check (outcome in ('succeeded', 'failed', 'lease_expired', 'cancelled')),
  result jsonb,
  metrics jsonb check (jsonb_typeof(metrics) = 'object'),
  error text,
  constraint job_runs_outcome_when_finished check ((finished_at is null) = (outcome is null))
);

create index job_runs_job_id_idx on observability.job_runs (job_id, started_at);
create unique index job_runs_one_open_per_job on observability.job_runs (job_id) where finished_at is null;
create index job_runs_finished_at_idx on observability.job_runs (finished_at);

-- The audit trail: one row per transition of a job (a change of status, or an
-- attempt counted), written by triggers on jobs, so no code path can skip it.
-- Append-only: UPDATE and TRUNCATE are refused for every role; DELETE only
-- inside observability.purge_retention, which sets the transaction-local flag
-- observability.purging. No foreign key: the trail is kept whatever happens
-- to the job row.
create table observability.job_events (
  id bigint generated always as identity primary key,
  job_id uuid not null,
  from_status text,
  to_status text not null,
  at timestamptz not null default clock_timestamp(),
  attempt integer not null,
  worker text,
  correlation_id text not null,
  detail jsonb not null default '{}' check (jsonb_typeof(detail) = 'object')
);

create index job_events_job_id_idx on observability.job_events (job_id, id);
create index job_events_correlation_id_idx on observability.job_events (correlation_id);
create index job_events_at_idx on observability.job_events (at);

comment on table observability.job_events is
  'Append-only: one row per job status change; rows leave only through purge_retention.';

-- Writes the job_events row of a status change. What happened comes from the
-- row (error, retry time, lease); an RPC adds who and why (requested_by,
-- reason) through the transaction-local setting observability.job_event_detail,
-- which is used for one row and cleared.
create function observability.record_job_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_extra text := current_setting('observability.job_event_detail', true);
  v_detail jsonb;
begin
  v_detail := jsonb_strip_nulls(jsonb_build_object(
    'job_type', case when tg_op = 'INSERT' then new.job_type end,
    'source', case when tg_op = 'INSERT' then new.source end,
    'error', case when new.status in ('failed', 'dead') then new.last_error end,
    'retry_at', case when new.status = 'failed' then new.available_at end,
    'lease_expires_at', case when new.status = 'running' then new.lease_expires_at end));
  if coalesce(v_extra, '') <> '' then
    v_detail := v_detail || v_extra::jsonb;
    perform set_config('observability.job_event_detail', '', true);
  end if;
  insert into observability.job_events (job_id, from_status, to_status, attempt, worker, correlation_id, detail)
  values (new.id, case when tg_op = 'UPDATE' then old.status end, new.status, new.attempts,
          coalesce(new.locked_by, case when tg_op = 'UPDATE' then old.locked_by end), new.correlation_id, v_detail);
  return null;
end;
$$;

create trigger jobs_event_on_insert
  after insert on observability.jobs
  for each row execute function observability.record_job_event();

-- A failed attempt of a job settled without a claim can leave the status as
-- it was (failed -> failed): a counted attempt is a transition too.
create trigger jobs_event_on_transition
  after update of status, attempts on observability.jobs
  for each row when (old.status is distinct from new.status or old.attempts is distinct from new.attempts)
  execute function observability.record_job_event();

create function observability.refuse_job_event_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' and current_setting('observability.purging', true) = 'on' then
    return old;
  end if;
  raise exception using errcode = 'PT403', message = 'forbidden',
    detail = format('observability.job_events is append-only: %s is refused (rows leave only through purge_retention)', tg_op);
end;
$$;

create trigger job_events_append_only
  before update or delete on observability.job_events
  for each row execute function observability.refuse_job_event_change();

create trigger job_events_no_truncate
  before truncate on observability.job_events
  for each statement execute function observability.refuse_job_event_change();

-- The dead letters: jobs whose last attempt failed.
create view observability.dead_jobs with (security_invoker = true) as
select j.id as job_id, j.source, j.job_type, j.attempts, j.max_attempts, j.last_error,
       j.finished_at as dead_at, j.correlation_id, j.payload, j.context, j.created_at
from observability.jobs j
where j.status = 'dead';

-- Refusals shared by the RPCs below. `validation_failed` names the argument
-- in its hint (the functions turn it into details[0].field).
create function observability.reject(p_field text, p_detail text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using errcode = 'PT422', message = 'validation_failed', detail = p_detail, hint = p_field;
end;
$$;

create function observability.refuse_stale(p_detail text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using errcode = 'PT409', message = 'stale_lease', detail = p_detail;
end;
$$;

-- When a failed attempt may be retried: after the settings' step for this
-- attempt, or after retry_after_seconds when the caller gives it. Null when
-- the job has used its attempts: dead.
create function observability.next_retry_at(p_attempts integer, p_max_attempts integer, p_retry_after_seconds integer)
returns timestamptz
language sql
stable
security definer
set search_path = ''
as $$
  select case
    when p_attempts >= p_max_attempts then null
    else now() + make_interval(secs => coalesce(p_retry_after_seconds,
      s.job_backoff_seconds[least(greatest(p_attempts, 1), cardinality(s.job_backoff_seconds))]))
  end
  from observability.settings s
$$;

-- The job with this id, locked for a state change; a missing id or an unknown
-- job is validation_failed naming job_id.
create function observability.job_for_update(p_job_id uuid)
returns observability.jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
begin
  if p_job_id is null then
    perform observability.reject('job_id', 'job_id is required');
  end if;
  select * into v_job from observability.jobs j where j.id = p_job_id for update;
  if not found then
    perform observability.reject('job_id', 'no job has this id');
  end if;
  return v_job;
end;
$$;

-- Locks a job for settling (complete_job, fail_job), or refuses. The fence: a
-- leased (running) job is settled only with its current lease token; a job
-- that waits (queued, or failed with a retry scheduled) and is not leased may
-- be settled without a token by the caller that executes it (the seed's
-- enqueue, execute, complete); a token for a job it does not lease (the lease
-- expired and was reclaimed, or it was already settled) and a finished job
-- are stale_lease.
create function observability.lock_job(p_job_id uuid, p_lease_token uuid)
returns observability.jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
begin
  v_job := observability.job_for_update(p_job_id);
  if v_job.status in ('succeeded', 'dead', 'cancelled') then
    perform observability.refuse_stale(format('the job is already %s', v_job.status));
  end if;
  if p_lease_token is null and v_job.status = 'running' then
    perform observability.refuse_stale('the job is leased by a worker: only its lease_token settles it');
  end if;
  if p_lease_token is not null and v_job.lease_token is distinct from p_lease_token then
    perform observability.refuse_stale(
      'the job is not leased with this token (the lease expired and was reclaimed, or it was already settled)');
  end if;
  return v_job;
end;
$$;

-- Closes the job's open run, or records a run for a job settled without a
-- claim.
create function observability.finish_run(
  p_job observability.jobs,
  p_attempt integer,
  p_outcome text,
  p_result jsonb,
  p_metrics jsonb,
  p_error text
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  update observability.job_runs r set
    finished_at = clock_timestamp(), outcome = p_outcome, result = p_result, metrics = p_metrics, error = p_error
  where r.job_id = p_job.id and r.finished_at is null;
  if not found then
    insert into observability.job_runs (job_id, attempt, worker, started_at, finished_at, outcome, result, metrics, error)
    values (p_job.id, p_attempt, null, p_job.updated_at, clock_timestamp(), p_outcome, p_result, p_metrics, p_error);
  end if;
end;
$$;

-- A failed attempt (fail_job, or a lease that expired): closes the run, then
-- schedules a retry ('failed') or, when the attempts are used up, marks the job
-- 'dead' and raises an alert.job_dead in the same transaction. Returns the
-- new status.
create function observability.settle_failure(
  p_job observability.jobs,
  p_attempt integer,
  p_error text,
  p_retry_after_seconds integer,
  p_outcome text
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_next timestamptz := observability.next_retry_at(p_attempt, p_job.max_attempts, p_retry_after_seconds);
  v_status text := case when v_next is null then 'dead' else 'failed' end;
begin
  perform observability.finish_run(p_job, p_attempt, p_outcome, null, null, p_error);
  update observability.jobs j set
    status = v_status,
    attempts = p_attempt,
    available_at = coalesce(v_next, j.available_at),
    last_error = p_error,
    finished_at = case when v_next is null then now() end,
    locked_by = null, locked_at = null, lease_token = null, lease_expires_at = null,
    updated_at = now()
  where j.id = p_job.id;
  if v_status = 'dead' then
    perform integration.raise_alert(
      'job_dead',
      p_job.job_type,
      format('%s job %s is dead after %s attempt(s)', p_job.job_type, p_job.id, p_attempt),
      jsonb_build_object('job_id', p_job.id, 'job_type', p_job.job_type, 'source', p_job.source,
                         'attempts', p_attempt, 'error', p_error),
      p_job.correlation_id);
  end if;
  return v_status;
end;
$$;

-- Records a job. Idempotent per (source, idempotency_key) when a key is
-- given: the same job again returns the original with duplicate = true and
-- writes nothing; the key with a different job (type, payload, context,
-- priority, max_attempts, or a given correlation id) is idempotency_conflict.
-- Returns {job_id, status, correlation_id, duplicate}.
create function observability.enqueue_job(
  source text,
  job_type text,
  payload jsonb default '{}',
  context jsonb default '{}',
  priority integer default 0,
  idempotency_key text default null,
  correlation_id text default null,
  max_attempts integer default 3
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_payload jsonb := coalesce(enqueue_job.payload, '{}');
  v_context jsonb := coalesce(enqueue_job.context, '{}');
  v_priority integer := coalesce(enqueue_job.priority, 0);
  v_max_attempts integer := coalesce(enqueue_job.max_attempts, 3);
  v_id uuid;
  v_correlation_id text;
  v_existing observability.jobs;
begin
  if enqueue_job.source is null or enqueue_job.source !~ '^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,63}$' then
    perform observability.reject('source',
      'source must be 1 to 64 characters (letters, digits and _ . : @ / -), starting with a letter or digit');
  end if;
  if not coalesce(observability.valid_job_type(enqueue_job.job_type), false) then
    perform observability.reject('job_type',
      'job_type must be a dotted name such as deploy.staging: 1 to 100 characters, letters, digits, _ and - between dots');
  end if;
  if jsonb_typeof(v_payload) <> 'object' then
    perform observability.reject('payload', 'payload must be a JSON object');
  end if;
  if jsonb_typeof(v_context) <> 'object' then
    perform observability.reject('context', 'context must be a JSON object');
  end if;
  if v_priority not between -100 and 100 then
    perform observability.reject('priority', 'priority must be -100 to 100 (higher runs first)');
  end if;
  if length(enqueue_job.idempotency_key) not between 1 and 255 then
    perform observability.reject('idempotency_key', 'idempotency_key must be 1 to 255 characters when given');
  end if;
  if length(enqueue_job.correlation_id) not between 1 and 128 then
    perform observability.reject('correlation_id', 'correlation_id must be 1 to 128 characters when given');
  end if;
  if v_max_attempts not between 1 and 20 then
    perform observability.reject('max_attempts', 'max_attempts must be 1 to 20');
  end if;

  insert into observability.jobs as j
    (source, job_type, payload, context, priority, idempotency_key, correlation_id, max_attempts)
  values
    (enqueue_job.source, enqueue_job.job_type, v_payload, v_context, v_priority, enqueue_job.idempotency_key,
     coalesce(enqueue_job.correlation_id, gen_random_uuid()::text), v_max_attempts)
  on conflict on constraint jobs_source_idempotency_key_key do nothing
  returning j.id, j.correlation_id into v_id, v_correlation_id;

  if v_id is not null then
    return jsonb_build_object('job_id', v_id, 'status', 'queued', 'correlation_id', v_correlation_id,
                              'duplicate', false);
  end if;

  select * into v_existing from observability.jobs j
  where j.source = enqueue_job.source and j.idempotency_key = enqueue_job.idempotency_key;
  if v_existing.job_type = enqueue_job.job_type
     and v_existing.payload = v_payload
     and v_existing.context = v_context
     and v_existing.priority = v_priority
     and v_existing.max_attempts = v_max_attempts
     and (enqueue_job.correlation_id is null or v_existing.correlation_id = enqueue_job.correlation_id) then
    return jsonb_build_object('job_id', v_existing.id, 'status', v_existing.status,
                              'correlation_id', v_existing.correlation_id, 'duplicate', true);
  end if;
  raise exception using errcode = 'PT409', message = 'idempotency_conflict',
    detail = 'this idempotency key was already used by this source for a different job', hint = 'idempotency_key';
end;
$$;

-- Returns running jobs whose lease expired to the queue: each expiry is a
-- failed attempt (backoff, or dead with an alert). Run by pg_cron every minute
-- and by every claim.
create function observability.reclaim_expired_jobs()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
  v_count integer := 0;
begin
  for v_job in
    select * from observability.jobs j
    where j.status = 'running' and j.lease_expires_at < now()
    order by j.lease_expires_at
    for update skip locked
  loop
    perform observability.settle_failure(v_job, v_job.attempts, 'lease expired before complete or fail', null,
                                         'lease_expired');
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- Jobs due for longer than settings.stuck_after_seconds that nobody has taken
-- (no worker claims their type, or the executor that enqueued them never
-- started them and could not fail them): one alert.job_stuck per job type,
-- grouped per window like every alert, so the pg_cron run every minute raises
-- its count rather than new messages. Returns the job types alerted.
create function observability.alert_stuck_jobs()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stuck record;
  v_count integer := 0;
begin
  for v_stuck in
    select j.job_type, count(*) as waiting, min(j.available_at) as oldest
    from observability.jobs j
    cross join observability.settings s
    where j.status in ('queued', 'failed')
      and j.available_at < now() - make_interval(secs => s.stuck_after_seconds)
    group by j.job_type
    order by j.job_type
  loop
    perform integration.raise_alert('job_stuck', v_stuck.job_type,
      format('%s job(s) of type %s due since %s and not taken by any worker', v_stuck.waiting, v_stuck.job_type,
             to_char(v_stuck.oldest at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')),
      jsonb_build_object('waiting', v_stuck.waiting, 'oldest_available_at', v_stuck.oldest));
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- Leases up to batch_size available jobs of the given types, highest priority
-- first, then oldest, with FOR UPDATE SKIP LOCKED, after reclaiming expired
-- leases. Each claim counts an attempt and opens a run. lease_seconds
-- defaults to the settings' (60). Returns one JSON object per job:
-- {job_id, lease_token, lease_expires_at, source, job_type, payload, context,
--  priority, attempt, max_attempts, correlation_id, idempotency_key, created_at}.
create function observability.claim_job(
  worker text,
  job_types text[],
  batch_size integer default 1,
  lease_seconds integer default null
)
returns setof jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_lease_seconds integer;
begin
  if claim_job.worker is null or length(claim_job.worker) not between 1 and 100 then
    perform observability.reject('worker', 'worker must be 1 to 100 characters');
  end if;
  if claim_job.job_types is null or cardinality(claim_job.job_types) not between 1 and 50
     or exists (select 1 from unnest(claim_job.job_types) t(job_type)
                where not coalesce(observability.valid_job_type(t.job_type), false)) then
    perform observability.reject('job_types',
      'job_types must list 1 to 50 job types, each a dotted name such as deploy.staging');
  end if;
  if claim_job.batch_size is null or claim_job.batch_size not between 1 and 100 then
    perform observability.reject('batch_size', 'batch_size must be 1 to 100');
  end if;
  v_lease_seconds := coalesce(claim_job.lease_seconds, (select s.lease_seconds from observability.settings s));
  if v_lease_seconds not between 5 and 3600 then
    perform observability.reject('lease_seconds', 'lease_seconds must be 5 to 3600');
  end if;

  perform observability.reclaim_expired_jobs();

  -- ANY(ARRAY(...)) rather than a CTE join, as in integration.lease_batch.
  -- One index walk per job type (job_type = t, in the index's order), not
  -- job_type = any(...): with the array, Postgres reads every queued job of
  -- those types and sorts them to take the first few (measured: 3 ms per
  -- claim at 4,000 queued, growing with the queue).
  return query
  with claimed as (
    update observability.jobs j set
      status = 'running',
      attempts = j.attempts + 1,
      locked_by = claim_job.worker,
      locked_at = now(),
      lease_token = gen_random_uuid(),
      lease_expires_at = now() + make_interval(secs => v_lease_seconds),
      updated_at = now()
    where j.id = any(array(
      select c.id
      from unnest(claim_job.job_types) t(job_type)
      cross join lateral (
        select c.id, c.priority, c.available_at, c.created_at from observability.jobs c
        where c.status in ('queued', 'failed')
          and c.job_type = t.job_type
          and c.available_at <= now()
        order by c.priority desc, c.available_at, c.created_at
        limit claim_job.batch_size
        for update skip locked) c
      order by c.priority desc, c.available_at, c.created_at
      limit claim_job.batch_size))
    returning j.*
  ), runs as (
    insert into observability.job_runs (job_id, attempt, worker)
    select c.id, c.attempts, c.locked_by from claimed c
  )
  select jsonb_build_object(
    'job_id', c.id, 'lease_token', c.lease_token, 'lease_expires_at', c.lease_expires_at,
    'source', c.source, 'job_type', c.job_type, 'payload', c.payload, 'context', c.context,
    'priority', c.priority, 'attempt', c.attempts, 'max_attempts', c.max_attempts,
    'correlation_id', c.correlation_id, 'idempotency_key', c.idempotency_key, 'created_at', c.created_at)
  from claimed c
  order by c.priority desc, c.available_at, c.created_at;
end;
$$;

-- Leases one job to the executor that enqueued it (n8n: enqueue, start,
-- execute, complete): a job that waits (queued, or failed with a retry
-- scheduled) and is not leased is set running now, whatever its available_at,
-- with an attempt counted and a run opened, as a claim does. From then on only
-- the returned lease_token settles it, and if the executor dies the lease
-- expires: the reclaim makes that a failed attempt (at the last one, a dead
-- job and an alert). lease_seconds defaults to the settings' (60). A job that
-- is not waiting (running, succeeded, dead, cancelled) is stale_lease.
-- Returns {job_id, lease_token, lease_expires_at, attempt, correlation_id}.
create function observability.start_job(job_id uuid, worker text, lease_seconds integer default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
  v_lease_seconds integer;
begin
  if start_job.worker is null or length(start_job.worker) not between 1 and 100 then
    perform observability.reject('worker', 'worker must be 1 to 100 characters');
  end if;
  v_lease_seconds := coalesce(start_job.lease_seconds, (select s.lease_seconds from observability.settings s));
  if v_lease_seconds not between 5 and 3600 then
    perform observability.reject('lease_seconds', 'lease_seconds must be 5 to 3600');
  end if;
  v_job := observability.job_for_update(start_job.job_id);
  if v_job.status not in ('queued', 'failed') or v_job.lease_token is not null then
    perform observability.refuse_stale(format('only a waiting job is started; this one is %s', v_job.status));
  end if;
  perform set_config('observability.job_event_detail', jsonb_build_object('started_by', 'start_job')::text, true);
  update observability.jobs j set
    status = 'running',
    attempts = j.attempts + 1,
    locked_by = start_job.worker,
    locked_at = now(),
    lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => v_lease_seconds),
    updated_at = now()
  where j.id = v_job.id
  returning j.* into v_job;
  insert into observability.job_runs (job_id, attempt, worker) values (v_job.id, v_job.attempts, v_job.locked_by);
  return jsonb_build_object('job_id', v_job.id, 'lease_token', v_job.lease_token,
    'lease_expires_at', v_job.lease_expires_at, 'attempt', v_job.attempts, 'correlation_id', v_job.correlation_id);
end;
$$;

-- Completes a job (fenced, see lock_job). Returns {job_id, status, attempts,
-- correlation_id}.
create function observability.complete_job(
  job_id uuid,
  result jsonb default null,
  metrics jsonb default null,
  lease_token uuid default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
  v_attempt integer;
begin
  if complete_job.metrics is not null and jsonb_typeof(complete_job.metrics) <> 'object' then
    perform observability.reject('metrics', 'metrics must be a JSON object');
  end if;
  v_job := observability.lock_job(complete_job.job_id, complete_job.lease_token);
  -- A claim counted the attempt already; settling without a claim counts it now.
  v_attempt := case when v_job.status = 'running' then v_job.attempts else v_job.attempts + 1 end;
  perform observability.finish_run(v_job, v_attempt, 'succeeded', complete_job.result, complete_job.metrics, null);
  update observability.jobs j set
    status = 'succeeded', attempts = v_attempt, result = complete_job.result, finished_at = now(),
    locked_by = null, locked_at = null, lease_token = null, lease_expires_at = null, updated_at = now()
  where j.id = v_job.id;
  return jsonb_build_object('job_id', v_job.id, 'status', 'succeeded', 'attempts', v_attempt,
                            'correlation_id', v_job.correlation_id);
end;
$$;

-- Records a failed attempt (fenced, see lock_job): a retry after the
-- settings' backoff step (or after retry_after_seconds, 0 to 86400, when
-- given), or 'dead' with an alert once max_attempts are used. Returns
-- {job_id, status, attempts, retry_at, correlation_id}.
create function observability.fail_job(
  job_id uuid,
  error text,
  lease_token uuid default null,
  retry_after_seconds integer default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
  v_attempt integer;
  v_status text;
begin
  if fail_job.error is null or btrim(fail_job.error) = '' then
    perform observability.reject('error', 'error is required: what went wrong');
  end if;
  if fail_job.retry_after_seconds not between 0 and 86400 then
    perform observability.reject('retry_after_seconds', 'retry_after_seconds must be 0 to 86400 when given');
  end if;
  v_job := observability.lock_job(fail_job.job_id, fail_job.lease_token);
  v_attempt := case when v_job.status = 'running' then v_job.attempts else v_job.attempts + 1 end;
  v_status := observability.settle_failure(v_job, v_attempt, left(fail_job.error, 4000),
                                           fail_job.retry_after_seconds, 'failed');
  return jsonb_build_object('job_id', v_job.id, 'status', v_status, 'attempts', v_attempt,
    'retry_at', (select j.available_at from observability.jobs j where j.id = v_job.id and v_status = 'failed'),
    'correlation_id', v_job.correlation_id);
end;
$$;

-- Cancels a job that is queued, failed (waiting for a retry), running (its
-- lease is revoked: the worker's complete or fail is then stale_lease) or dead
-- (dismissed from the dead letters). The reason and who asked are in the
-- job_events row. Returns {job_id, status, previous_status}.
create function observability.cancel_job(job_id uuid, reason text, requested_by text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
begin
  if cancel_job.reason is null or length(btrim(cancel_job.reason)) not between 1 and 1000 then
    perform observability.reject('reason', 'reason must be 1 to 1000 characters');
  end if;
  if cancel_job.requested_by is null or length(btrim(cancel_job.requested_by)) not between 1 and 200 then
    perform observability.reject('requested_by', 'requested_by must be 1 to 200 characters');
  end if;
  v_job := observability.job_for_update(cancel_job.job_id);
  if v_job.status in ('succeeded', 'cancelled') then
    perform observability.refuse_stale(format('the job is already %s', v_job.status));
  end if;
  if v_job.status = 'running' then
    perform observability.finish_run(v_job, v_job.attempts, 'cancelled', null, null, cancel_job.reason);
  end if;
  perform set_config('observability.job_event_detail',
    jsonb_build_object('reason', cancel_job.reason, 'requested_by', cancel_job.requested_by)::text, true);
  update observability.jobs j set
    status = 'cancelled', finished_at = now(),
    locked_by = null, locked_at = null, lease_token = null, lease_expires_at = null, updated_at = now()
  where j.id = v_job.id;
  return jsonb_build_object('job_id', v_job.id, 'status', 'cancelled', 'previous_status', v_job.status);
end;
$$;

-- Extends a lease the caller holds (a stale token is stale_lease). Returns
-- {job_id, lease_expires_at}.
create function observability.heartbeat_job(job_id uuid, lease_token uuid, lease_seconds integer default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
  v_lease_seconds integer;
  v_expires timestamptz;
begin
  if heartbeat_job.lease_token is null then
    perform observability.reject('lease_token', 'lease_token is required');
  end if;
  v_lease_seconds := coalesce(heartbeat_job.lease_seconds, (select s.lease_seconds from observability.settings s));
  if v_lease_seconds not between 5 and 3600 then
    perform observability.reject('lease_seconds', 'lease_seconds must be 5 to 3600');
  end if;
  v_job := observability.lock_job(heartbeat_job.job_id, heartbeat_job.lease_token);
  update observability.jobs j set
    lease_expires_at = now() + make_interval(secs => v_lease_seconds), updated_at = now()
  where j.id = v_job.id
  returning j.lease_expires_at into v_expires;
  return jsonb_build_object('job_id', v_job.id, 'lease_expires_at', v_expires);
end;
$$;

-- Returns a dead or cancelled job to the queue, attempts reset; who asked,
-- and the attempts it had, are in the job_events row. Returns {job_id,
-- status, previous_status, correlation_id}.
create function observability.requeue_job(job_id uuid, requested_by text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
begin
  if requeue_job.requested_by is null or length(btrim(requeue_job.requested_by)) not between 1 and 200 then
    perform observability.reject('requested_by', 'requested_by must be 1 to 200 characters');
  end if;
  v_job := observability.job_for_update(requeue_job.job_id);
  if v_job.status not in ('dead', 'cancelled') then
    perform observability.refuse_stale(format('only dead or cancelled jobs are requeued; this one is %s', v_job.status));
  end if;
  perform set_config('observability.job_event_detail',
    jsonb_build_object('requested_by', requeue_job.requested_by, 'previous_attempts', v_job.attempts)::text, true);
  update observability.jobs j set
    status = 'queued', attempts = 0, available_at = now(), finished_at = null, result = null, updated_at = now()
  where j.id = v_job.id;
  return jsonb_build_object('job_id', v_job.id, 'status', 'queued', 'previous_status', v_job.status,
                            'correlation_id', v_job.correlation_id);
end;
$$;

-- ---------------------------------------------------- observability: health

-- The services the health check probes, and each one's current state. Status
-- moves only through record_health / record_health_batch: a healthy or
-- degraded probe sets that status and resets consecutive_failures; a failing
-- probe counts, and the service is 'down' once consecutive_failures reaches
-- failures_to_down (below that its status stays as it was).
create table observability.services (
  id bigint generated always as identity primary key,
  name text not null unique check (length(name) between 1 and 100 and name = btrim(name)),
  kind text not null default 'http' check (kind ~ '^[a-z][a-z0-9_-]{0,31}$'),
  url text not null check (url ~ '^https?://[^[:space:]]+$' and length(url) <= 2048),
  method text not null default 'GET' check (method in ('GET', 'HEAD', 'POST')),
  expected_status integer not null default 200 check (expected_status between 100 and 599),
  -- A substring the body must contain.
  body_match text check (length(body_match) between 1 and 1000),
  timeout_ms integer not null default 5000 check (timeout_ms between 100 and 60000),
  -- An answer slower than this is degraded.
  degraded_ms integer not null default 1000 check (degraded_ms between 1 and 60000),
  interval_seconds integer not null default 300 check (interval_seconds between 60 and 86400),
  failures_to_down integer not null default 3 check (failures_to_down between 1 and 100),
  enabled boolean not null default true,
  status text not null default 'unknown' check (status in ('unknown', 'healthy', 'degraded', 'down')),
  consecutive_failures integer not null default 0 check (consecutive_failures >= 0),
  last_checked_at timestamptz,
  last_change_at timestamptz,
  last_response_time_ms integer,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint services_degraded_within_timeout check (degraded_ms <= timeout_ms),
  constraint services_no_body_match_for_head check (method <> 'HEAD' or body_match is null)
) with (fillfactor = 70);  -- every sweep updates each row: room for HOT updates

-- One row per probe: what it saw.
create table observability.service_health (
  id bigint generated always as identity primary key,
  service_id bigint not null references observability.services (id) on delete cascade,
  checked_at timestamptz not null default now(),
  status text not null check (status in ('healthy', 'degraded', 'failing')),
  response_time_ms integer check (response_time_ms between 0 and 3600000),
  http_status integer check (http_status between 100 and 599),
  error text check (length(error) <= 2000),
  correlation_id text check (length(correlation_id) between 1 and 128)
);

create index service_health_service_idx on observability.service_health (service_id, checked_at);
create index service_health_checked_at_idx on observability.service_health (checked_at);
create index service_health_correlation_id_idx on observability.service_health (correlation_id)
  where correlation_id is not null;

-- Records one probe and applies the state machine. A change into 'down'
-- raises one alert.service_down, a change out of 'down' one
-- alert.service_recovered (both grouped per window by raise_alert); probes
-- while a service stays down raise nothing. p_field prefixes the hint of a
-- refusal (record_health_batch names the sample). Returns {service_id, name,
-- from, to, changed, consecutive_failures, alert}.
create function observability.apply_health_sample(
  p_service_id bigint,
  p_status text,
  p_response_time_ms integer,
  p_http_status integer,
  p_error text,
  p_correlation_id text,
  p_field text default ''
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_service observability.services;
  v_failures integer;
  v_status text;
  v_error text := left(nullif(p_error, ''), 2000);
  v_alert text;
begin
  if p_service_id is null then
    perform observability.reject(p_field || 'service_id', 'service_id is required');
  end if;
  if p_status is null or p_status not in ('healthy', 'degraded', 'failing') then
    perform observability.reject(p_field || 'status', 'status must be healthy, degraded or failing (what the probe saw)');
  end if;
  if p_response_time_ms not between 0 and 3600000 then
    perform observability.reject(p_field || 'response_time_ms', 'response_time_ms must be 0 to 3600000');
  end if;
  if p_http_status not between 100 and 599 then
    perform observability.reject(p_field || 'http_status', 'http_status must be 100 to 599 when given');
  end if;
  if length(p_correlation_id) not between 1 and 128 then
    perform observability.reject('correlation_id', 'correlation_id must be 1 to 128 characters when given');
  end if;
  select * into v_service from observability.services s where s.id = p_service_id for update;
  if not found then
    perform observability.reject(p_field || 'service_id', format('no service has id %s', p_service_id));
  end if;

  insert into observability.service_health (service_id, status, response_time_ms, http_status, error, correlation_id)
  values (v_service.id, p_status, p_response_time_ms, p_http_status, v_error, p_correlation_id);

  if p_status = 'failing' then
    v_failures := v_service.consecutive_failures + 1;
    v_status := case when v_failures >= v_service.failures_to_down then 'down' else v_service.status end;
  else
    v_failures := 0;
    v_status := p_status;
  end if;

  update observability.services s set
    status = v_status,
    consecutive_failures = v_failures,
    last_checked_at = now(),
    last_response_time_ms = p_response_time_ms,
    last_change_at = case when v_status <> v_service.status then now() else s.last_change_at end,
    updated_at = now()
  where s.id = v_service.id;

  if v_status = 'down' and v_service.status <> 'down' then
    v_alert := 'service_down';
    perform integration.raise_alert('service_down', v_service.name,
      format('%s is down: %s failed checks in a row', v_service.name, v_failures),
      jsonb_strip_nulls(jsonb_build_object('service_id', v_service.id, 'url', v_service.url,
        'consecutive_failures', v_failures, 'http_status', p_http_status, 'error', v_error,
        'response_time_ms', p_response_time_ms)),
      p_correlation_id);
  elsif v_service.status = 'down' and v_status <> 'down' then
    v_alert := 'service_recovered';
    perform integration.raise_alert('service_recovered', v_service.name,
      format('%s is %s again', v_service.name, v_status),
      jsonb_strip_nulls(jsonb_build_object('service_id', v_service.id, 'url', v_service.url,
        'down_since', v_service.last_change_at, 'http_status', p_http_status,
        'response_time_ms', p_response_time_ms)),
      p_correlation_id);
  end if;

  return jsonb_build_object('service_id', v_service.id, 'name', v_service.name, 'from', v_service.status,
    'to', v_status, 'changed', v_status <> v_service.status, 'consecutive_failures', v_failures,
    'alert', v_alert);
end;
$$;

-- The seed's call: one probe result.
create function observability.record_health(
  service_id bigint,
  status text,
  response_time_ms integer,
  http_status integer default null,
  error text default null,
  correlation_id text default null
)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  select observability.apply_health_sample(record_health.service_id, record_health.status,
    record_health.response_time_ms, record_health.http_status, record_health.error, record_health.correlation_id)
$$;

-- A whole sweep in one call: samples is an array of {service_id, status,
-- response_time_ms, http_status?, error?}, each service at most once; a bad
-- sample refuses the whole batch. The services are locked in id order first,
-- so two overlapping sweeps cannot deadlock. Returns {recorded, transitions:
-- [{service_id, name, from, to, alert}]} with the services whose status changed.
create function observability.record_health_batch(samples jsonb, correlation_id text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_sample jsonb;
  v_index integer := 0;
  v_field text;
  v_service_id bigint;
  v_response_time_ms integer;
  v_http_status integer;
  v_ids bigint[] := '{}';
  v_result jsonb;
  v_transitions jsonb := '[]';
begin
  if jsonb_typeof(record_health_batch.samples) is distinct from 'array'
     or jsonb_array_length(record_health_batch.samples) not between 1 and 1000 then
    perform observability.reject('samples', 'samples must be an array of 1 to 1000 probe results');
  end if;
  for v_sample in select e.value from jsonb_array_elements(record_health_batch.samples) e loop
    v_field := format('samples[%s]', v_index);
    if jsonb_typeof(v_sample) <> 'object' then
      perform observability.reject(v_field,
        'each sample is an object {service_id, status, response_time_ms, http_status?, error?}');
    end if;
    begin
      v_service_id := (v_sample ->> 'service_id')::bigint;
      v_response_time_ms := (v_sample ->> 'response_time_ms')::integer;
      v_http_status := (v_sample ->> 'http_status')::integer;
    exception when invalid_text_representation or numeric_value_out_of_range then
      perform observability.reject(v_field, 'service_id, response_time_ms and http_status are integers');
    end;
    if v_service_id = any(v_ids) then
      perform observability.reject(v_field || '.service_id', 'each service appears at most once in a batch');
    end if;
    v_ids := v_ids || v_service_id;
    v_index := v_index + 1;
  end loop;

  perform 1 from observability.services s where s.id = any(v_ids) order by s.id for update;

  v_index := 0;
  for v_sample in select e.value from jsonb_array_elements(record_health_batch.samples) e loop
    v_result := observability.apply_health_sample((v_sample ->> 'service_id')::bigint, v_sample ->> 'status',
      (v_sample ->> 'response_time_ms')::integer, (v_sample ->> 'http_status')::integer, v_sample ->> 'error',
      record_health_batch.correlation_id, format('samples[%s].', v_index));
    if (v_result ->> 'changed')::boolean then
      v_transitions := v_transitions || jsonb_build_array(jsonb_build_object(
        'service_id', v_result -> 'service_id', 'name', v_result -> 'name',
        'from', v_result -> 'from', 'to', v_result -> 'to', 'alert', v_result -> 'alert'));
    end if;
    v_index := v_index + 1;
  end loop;
  return jsonb_build_object('recorded', v_index, 'transitions', v_transitions);
end;
$$;

-- What the health check probes now: enabled services whose interval has
-- passed (less 30 seconds, so a sweep every 5 minutes does not skip a
-- 5-minute service over its own jitter), least recently checked first.
create function observability.list_services_to_probe(max_services integer default 100)
returns table (id bigint, name text, url text, method text, expected_status integer, body_match text,
               timeout_ms integer, degraded_ms integer)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if list_services_to_probe.max_services is null or list_services_to_probe.max_services not between 1 and 1000 then
    perform observability.reject('max_services', 'max_services must be 1 to 1000');
  end if;
  return query
  select s.id, s.name, s.url, s.method, s.expected_status, s.body_match, s.timeout_ms, s.degraded_ms
  from observability.services s
  where s.enabled
    and (s.last_checked_at is null
         or s.last_checked_at <= now() - make_interval(secs => s.interval_seconds) + interval '30 seconds')
  order by s.last_checked_at nulls first, s.id
  limit list_services_to_probe.max_services;
end;
$$;

-- Per service: its state, last answer, and uptime over the last 24 hours
-- (the share of samples that were not failing, 0 to 1; null without samples).
create function observability.get_health_summary()
returns table (service_id bigint, name text, kind text, enabled boolean, status text,
               last_checked_at timestamptz, last_change_at timestamptz, last_response_time_ms integer,
               consecutive_failures integer, samples_24h bigint, uptime_24h numeric)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform ops.require_operator();
  return query
  select s.id, s.name, s.kind, s.enabled, s.status, s.last_checked_at, s.last_change_at,
         s.last_response_time_ms, s.consecutive_failures, h.samples,
         round(h.up::numeric / nullif(h.samples, 0), 4)
  from observability.services s
  cross join lateral (
    select count(*) as samples, count(*) filter (where x.status <> 'failing') as up
    from observability.service_health x
    where x.service_id = s.id and x.checked_at > now() - interval '24 hours') h
  order by s.name;
end;
$$;

-- -------------------------------------------- observability: metrics, purge

-- Hourly aggregates (hours in UTC). Jobs: enqueued (created in the hour),
-- succeeded and failed attempts (runs finished in the hour; an expired lease
-- is a failed attempt), dead (jobs that died in the hour), and the run
-- duration of those attempts.
create table observability.job_metrics (
  hour timestamptz not null,
  job_type text not null,
  enqueued integer not null default 0,
  succeeded integer not null default 0,
  failed_attempts integer not null default 0,
  dead integer not null default 0,
  avg_duration_ms numeric,
  p95_duration_ms numeric,
  computed_at timestamptz not null default now(),
  primary key (hour, job_type)
);

-- Services: the samples of the hour by what the probe saw.
create table observability.service_metrics (
  hour timestamptz not null,
  service_id bigint not null references observability.services (id) on delete cascade,
  samples integer not null default 0,
  healthy integer not null default 0,
  degraded integer not null default 0,
  failing integer not null default 0,
  avg_response_ms numeric,
  p95_response_ms numeric,
  computed_at timestamptz not null default now(),
  primary key (hour, service_id)
);

-- Recomputes the last p_hours complete hours and upserts them: idempotent, so
-- late rows of an hour are counted when it is recomputed. Run by pg_cron at
-- minute 5 of every hour (the last 2 hours). Returns the rows written.
create function observability.rollup_metrics(p_hours integer default 2)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_to timestamptz := date_trunc('hour', now(), 'UTC');
  v_from timestamptz;
  v_jobs integer;
  v_services integer;
begin
  if p_hours is null or p_hours not between 1 and 720 then
    perform observability.reject('p_hours', 'p_hours must be 1 to 720');
  end if;
  v_from := v_to - make_interval(hours => p_hours);

  with parts as (
    select date_trunc('hour', j.created_at, 'UTC') as hour, j.job_type,
           1 as enqueued, 0 as succeeded, 0 as failed, 0 as dead, null::double precision as duration_ms
    from observability.jobs j
    where j.created_at >= v_from and j.created_at < v_to
    union all
    select date_trunc('hour', r.finished_at, 'UTC'), j.job_type,
           0, (r.outcome = 'succeeded')::integer, (r.outcome in ('failed', 'lease_expired'))::integer, 0,
           extract(epoch from r.finished_at - r.started_at)::double precision * 1000
    from observability.job_runs r
    join observability.jobs j on j.id = r.job_id
    where r.finished_at >= v_from and r.finished_at < v_to and r.outcome <> 'cancelled'
    union all
    select date_trunc('hour', e.at, 'UTC'), j.job_type, 0, 0, 0, 1, null
    from observability.job_events e
    join observability.jobs j on j.id = e.job_id
    where e.to_status = 'dead' and e.at >= v_from and e.at < v_to
  )
  insert into observability.job_metrics as m
    (hour, job_type, enqueued, succeeded, failed_attempts, dead, avg_duration_ms, p95_duration_ms, computed_at)
  select p.hour, p.job_type, sum(p.enqueued), sum(p.succeeded), sum(p.failed), sum(p.dead),
         round(avg(p.duration_ms)::numeric, 3),
         round((percentile_cont(0.95) within group (order by p.duration_ms))::numeric, 3),
         now()
  from parts p
  group by p.hour, p.job_type
  on conflict (hour, job_type) do update set
    enqueued = excluded.enqueued, succeeded = excluded.succeeded, failed_attempts = excluded.failed_attempts,
    dead = excluded.dead, avg_duration_ms = excluded.avg_duration_ms, p95_duration_ms = excluded.p95_duration_ms,
    computed_at = excluded.computed_at;
  get diagnostics v_jobs = row_count;

  insert into observability.service_metrics as m
    (hour, service_id, samples, healthy, degraded, failing, avg_response_ms, p95_response_ms, computed_at)
  select date_trunc('hour', h.checked_at, 'UTC'), h.service_id, count(*),
         count(*) filter (where h.status = 'healthy'),
         count(*) filter (where h.status = 'degraded'),
         count(*) filter (where h.status = 'failing'),
         round(avg(h.response_time_ms), 3),
         round((percentile_cont(0.95) within group (order by h.response_time_ms))::numeric, 3),
         now()
  from observability.service_health h
  where h.checked_at >= v_from and h.checked_at < v_to
  group by 1, 2
  on conflict (hour, service_id) do update set
    samples = excluded.samples, healthy = excluded.healthy, degraded = excluded.degraded,
    failing = excluded.failing, avg_response_ms = excluded.avg_response_ms,
    p95_response_ms = excluded.p95_response_ms, computed_at = excluded.computed_at;
  get diagnostics v_services = row_count;

  return v_jobs + v_services;
end;
$$;

-- Deletes job_events, finished job_runs and service_health samples older than
-- the settings' retention. The only way rows leave job_events: the flag it
-- sets is what that table's append-only trigger lets through. Run daily by
-- pg_cron. Returns {job_events, job_runs, service_health} (rows deleted).
create function observability.purge_retention()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settings observability.settings;
  v_events integer;
  v_runs integer;
  v_health integer;
begin
  select * into v_settings from observability.settings;

  perform set_config('observability.purging', 'on', true);
  delete from observability.job_events e
  where e.at < now() - make_interval(days => v_settings.job_events_retention_days);
  get diagnostics v_events = row_count;
  perform set_config('observability.purging', '', true);

  delete from observability.job_runs r
  where r.finished_at < now() - make_interval(days => v_settings.job_runs_retention_days);
  get diagnostics v_runs = row_count;

  delete from observability.service_health h
  where h.checked_at < now() - make_interval(days => v_settings.service_health_retention_days);
  get diagnostics v_health = row_count;

  return jsonb_build_object('job_events', v_events, 'job_runs', v_runs, 'service_health', v_health);
end;
$$;

-- ------------------------------------------------------ ops: events, traces

-- The seed's event-style interface: one row per job status change and one
-- per integration event (the outbox: received from Odoo, or raised here).
create view ops.events with (security_invoker = true) as
select 'job'::text as stream, j.source, j.job_type as type, e.job_id::text as subject_id,
       e.to_status as status, e.correlation_id, e.at
from observability.job_events e
join observability.jobs j on j.id = e.job_id
union all
select 'integration', o.source, o.event_type, o.id::text, o.status, o.correlation_id, o.created_at
from integration.outbox o;

-- Every row that carries a correlation id, one SELECT per source; get_trace
-- reads this view, so a later source (ops.runs, campaign audit rows) adds one
-- more UNION ALL branch here and nothing else. source_rank and seq order
-- rows of the same instant (an event received before it is queued).
create view ops.trace_rows with (security_invoker = true) as
select l.created_at as at, 'integration.event_log'::text as source, 'event.received'::text as kind,
       l.event_id::text as subject_id,
       jsonb_build_object('event_type', l.event_type, 'source', l.source, 'aggregate_type', l.aggregate_type,
         'aggregate_id', l.aggregate_id, 'idempotency_key', l.idempotency_key, 'scheme', l.scheme) as detail,
       l.correlation_id, 1 as source_rank, l.id as seq
from integration.event_log l
union all
select o.created_at, 'integration.outbox', 'outbox.queued', o.id::text,
       jsonb_build_object('event_type', o.event_type, 'source', o.source, 'aggregate_type', o.aggregate_type,
         'aggregate_id', o.aggregate_id, 'status', o.status, 'attempts', o.attempts),
       o.correlation_id, 2, 0::bigint
from integration.outbox o
union all
select j.created_at, 'observability.jobs', 'job.enqueued', j.id::text,
       jsonb_strip_nulls(jsonb_build_object('job_type', j.job_type, 'source', j.source, 'priority', j.priority,
         'max_attempts', j.max_attempts, 'idempotency_key', j.idempotency_key, 'status', j.status)),
       j.correlation_id, 3, 0::bigint
from observability.jobs j
union all
-- The job's creation is the jobs row above; its later changes are here.
select e.at, 'observability.job_events', 'job.' || e.to_status, e.job_id::text,
       jsonb_strip_nulls(jsonb_build_object('from', e.from_status, 'to', e.to_status, 'attempt', e.attempt,
         'worker', e.worker)) || e.detail,
       e.correlation_id, 4, e.id
from observability.job_events e
where e.from_status is not null
union all
select r.finished_at, 'observability.job_runs', 'job.run_' || r.outcome, r.job_id::text,
       jsonb_strip_nulls(jsonb_build_object('attempt', r.attempt, 'worker', r.worker, 'outcome', r.outcome,
         'started_at', r.started_at,
         'duration_ms', round(extract(epoch from r.finished_at - r.started_at) * 1000, 3),
         'result', r.result, 'metrics', r.metrics, 'error', r.error)),
       j.correlation_id, 5, r.id
from observability.job_runs r
join observability.jobs j on j.id = r.job_id
where r.finished_at is not null
union all
select (a.value ->> 'at')::timestamptz, 'integration.outbox', 'outbox.attempt_failed', o.id::text,
       jsonb_build_object('event_type', o.event_type, 'attempt', a.value -> 'attempt', 'worker', a.value -> 'worker',
         'error', a.value -> 'error'),
       o.correlation_id, 6, a.ordinality
from integration.outbox o
cross join lateral jsonb_array_elements(o.error_history) with ordinality as a(value, ordinality)
union all
select o.completed_at, 'integration.outbox', 'outbox.delivered', o.id::text,
       jsonb_build_object('event_type', o.event_type, 'attempts', o.attempts),
       o.correlation_id, 7, 0::bigint
from integration.outbox o
where o.completed_at is not null
union all
select o.dead_at, 'integration.outbox', 'outbox.dead', o.id::text,
       jsonb_build_object('event_type', o.event_type, 'attempts', o.attempts, 'error', o.last_error),
       o.correlation_id, 7, 0::bigint
from integration.outbox o
where o.dead_at is not null
union all
select h.checked_at, 'observability.service_health', 'health.' || h.status, h.service_id::text,
       jsonb_strip_nulls(jsonb_build_object('service', s.name, 'status', h.status,
         'response_time_ms', h.response_time_ms, 'http_status', h.http_status, 'error', h.error)),
       h.correlation_id, 8, h.id
from observability.service_health h
join observability.services s on s.id = h.service_id;

-- One correlation id's timeline across every schema, in time order, with the
-- milliseconds since the previous row (null for the first).
create function ops.get_trace(correlation_id text)
returns table (at timestamptz, source text, kind text, subject_id text, detail jsonb, duration_ms numeric)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform ops.require_operator();
  if get_trace.correlation_id is null or length(get_trace.correlation_id) not between 1 and 128 then
    perform observability.reject('correlation_id', 'correlation_id must be 1 to 128 characters');
  end if;
  return query
  select t.at, t.source, t.kind, t.subject_id, t.detail,
         round(extract(epoch from t.at - lag(t.at) over w) * 1000, 3)
  from ops.trace_rows t
  where t.correlation_id = get_trace.correlation_id
  window w as (order by t.at, t.source_rank, t.seq)
  order by t.at, t.source_rank, t.seq;
end;
$$;

-- Queue depth: what is waiting, leased or dead, per queue. The outbox by
-- status (pending, processing, failed = dead letters); jobs by type and status
-- (queued, running, failed = retry scheduled, dead). Finished rows are not
-- depth. oldest_* is the oldest row's creation.
create function ops.get_queue_depth()
returns table (queue text, job_type text, status text, depth bigint, oldest_at timestamptz,
               oldest_age_seconds bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform ops.require_operator();
  return query
  select d.queue, d.job_type, d.status, d.depth, d.oldest_at,
         extract(epoch from now() - d.oldest_at)::bigint
  from (
    -- One branch per status: each matches one of the outbox's partial indexes.
    select 'integration.outbox'::text as queue, null::text as job_type, 'pending'::text as status,
           count(*) as depth, min(o.created_at) as oldest_at
    from integration.outbox o where o.status = 'pending' having count(*) > 0
    union all
    select 'integration.outbox', null, 'processing', count(*), min(o.created_at)
    from integration.outbox o where o.status = 'processing' having count(*) > 0
    union all
    select 'integration.outbox', null, 'failed', count(*), min(o.created_at)
    from integration.outbox o where o.status = 'failed' having count(*) > 0
    union all
    select 'observability.jobs', j.job_type, j.status, count(*), min(j.created_at)
    from observability.jobs j
    where j.status in ('queued', 'running', 'failed', 'dead')
    group by j.job_type, j.status
  ) d
  order by d.queue, d.job_type nulls first, d.status;
end;
$$;

-- --------------------------------------------------------------- privileges

-- Operational data: operators (RLS) and the service role (BYPASSRLS) read it;
-- other authenticated users see no rows; anon cannot use the schemas. Writes
-- go through the RPCs, except the service registry and settings, which the
-- service role maintains directly (like integration.routes).
alter table observability.settings enable row level security;
alter table observability.jobs enable row level security;
alter table observability.job_runs enable row level security;
alter table observability.job_events enable row level security;
alter table observability.services enable row level security;
alter table observability.service_health enable row level security;
alter table observability.job_metrics enable row level security;
alter table observability.service_metrics enable row level security;
alter table integration.alert_policy enable row level security;

create policy settings_operator_read on observability.settings
  for select to authenticated using ((select ops.is_operator()));
create policy jobs_operator_read on observability.jobs
  for select to authenticated using ((select ops.is_operator()));
create policy job_runs_operator_read on observability.job_runs
  for select to authenticated using ((select ops.is_operator()));
create policy job_events_operator_read on observability.job_events
  for select to authenticated using ((select ops.is_operator()));
create policy services_operator_read on observability.services
  for select to authenticated using ((select ops.is_operator()));
create policy service_health_operator_read on observability.service_health
  for select to authenticated using ((select ops.is_operator()));
create policy job_metrics_operator_read on observability.job_metrics
  for select to authenticated using ((select ops.is_operator()));
create policy service_metrics_operator_read on observability.service_metrics
  for select to authenticated using ((select ops.is_operator()));

-- Tables and views (the views are security_invoker: the tables' RLS applies).
revoke all on all tables in schema observability from public, anon, authenticated, service_role;
revoke all on all tables in schema ops from public, anon, authenticated, service_role;
grant select on all tables in schema observability to authenticated, service_role;
grant select on all tables in schema ops to authenticated, service_role;
grant insert, update, delete on observability.services to service_role;
grant update on observability.settings to service_role;
revoke all on integration.alert_policy from public, anon, authenticated, service_role;
grant select, update on integration.alert_policy to service_role;

-- Functions: new ones are executable by PUBLIC until revoked.
revoke execute on all functions in schema observability from public, anon, authenticated, service_role;
revoke execute on all functions in schema ops from public, anon, authenticated, service_role;
revoke execute on all functions in schema integration from public, anon;
grant execute on function ops.is_operator() to authenticated, service_role;
grant execute on function observability.enqueue_job(text, text, jsonb, jsonb, integer, text, text, integer)
  to service_role;
grant execute on function observability.claim_job(text, text[], integer, integer) to service_role;
grant execute on function observability.start_job(uuid, text, integer) to service_role;
grant execute on function observability.complete_job(uuid, jsonb, jsonb, uuid) to service_role;
grant execute on function observability.fail_job(uuid, text, uuid, integer) to service_role;
grant execute on function observability.cancel_job(uuid, text, text) to service_role;
grant execute on function observability.heartbeat_job(uuid, uuid, integer) to service_role;
grant execute on function observability.requeue_job(uuid, text) to service_role;
grant execute on function observability.record_health(bigint, text, integer, integer, text, text) to service_role;
grant execute on function observability.record_health_batch(jsonb, text) to service_role;
grant execute on function observability.list_services_to_probe(integer) to service_role;
grant execute on function observability.get_health_summary() to authenticated, service_role;
grant execute on function ops.get_queue_depth() to authenticated, service_role;
grant execute on function ops.get_trace(text) to authenticated, service_role;
-- n8n's "alert on failure" step.
grant execute on function integration.raise_alert(text, text, text, jsonb, text) to service_role;

-- ----------------------------------------------------------------- pg_cron

select cron.schedule('observability-reclaim-expired-jobs', '* * * * *',
  'select observability.reclaim_expired_jobs()');
select cron.schedule('observability-alert-stuck-jobs', '* * * * *',
  'select observability.alert_stuck_jobs()');
select cron.schedule('observability-rollup-metrics', '5 * * * *',
  'select observability.rollup_metrics()');
select cron.schedule('observability-purge-retention', '30 3 * * *',
  'select observability.purge_retention()');
-- The health-check sweep; edge.invoke sends nothing until the function is
-- registered with edge.configure_function('health-check', url, token).
select cron.schedule('observability-health-check', '*/5 * * * *',
  $$select edge.invoke('health-check', '{"reason":"cron"}')$$);
