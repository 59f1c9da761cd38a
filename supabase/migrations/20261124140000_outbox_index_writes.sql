-- Fewer index writes per claim and per ack (issue "Scale and faults", the
-- table shapes measured in docs/scale.md).
--
-- A claim and an ack each write a new row version (neither update is HOT:
-- `status` is in partial index predicates), and each version went into five
-- of the outbox's indexes. Two of them exist for readers that look back
-- (traces by correlation_id, the event stream by created_at), and a leased
-- row is only ever looked up by its id or through outbox_leased_idx: they now
-- skip 'processing' versions. The unique (source, idempotency_key) guarded
-- ingest twice: event_log holds that key and ingest writes the outbox row
-- under the event_log row's id, so only raise_alert, which groups repeats
-- into one outbox row, still needs it, for its own source.

drop index integration.outbox_correlation_id_idx;
create index outbox_correlation_id_idx on integration.outbox (correlation_id) where status <> 'processing';
drop index integration.outbox_created_at_idx;
create index outbox_created_at_idx on integration.outbox (created_at) where status <> 'processing';

alter table integration.outbox drop constraint outbox_source_idempotency_key_key;
create unique index outbox_alert_key_idx on integration.outbox (source, idempotency_key)
  where source = 'switchyard';

-- An alert's key, once per group window.
create or replace function integration.raise_alert(
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
  on conflict (source, idempotency_key) where source = 'switchyard' do nothing
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

-- The hot table in two parts, so that a reader's condition on correlation_id
-- or created_at meets each part with a status condition its index can use
-- (leased rows are few and read through outbox_leased_idx).
create or replace view integration.outbox_and_archive with (security_invoker = true) as
select o.id, o.source, o.idempotency_key, o.event_type, o.aggregate_type, o.aggregate_id, o.payload,
       o.occurred_at, o.correlation_id, o.status, o.attempts, o.last_error, o.error_history, o.receipt,
       o.created_at, o.completed_at, o.dead_at, null::timestamptz as archived_at
from integration.outbox o
where o.status <> 'processing'
union all
select o.id, o.source, o.idempotency_key, o.event_type, o.aggregate_type, o.aggregate_id, o.payload,
       o.occurred_at, o.correlation_id, o.status, o.attempts, o.last_error, o.error_history, o.receipt,
       o.created_at, o.completed_at, o.dead_at, null::timestamptz
from integration.outbox o
where o.status = 'processing'
union all
select a.id, a.source, a.idempotency_key, a.event_type, a.aggregate_type, a.aggregate_id, a.payload,
       a.occurred_at, a.correlation_id, 'completed', a.attempts, a.last_error, a.error_history, a.receipt,
       a.created_at, a.completed_at, null, a.archived_at
from integration.outbox_archive a;

-- A trace's dead events: `status = 'failed'` (exactly the rows with dead_at)
-- lets the lookup by correlation_id use the partial index.
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
  WHERE o.status = 'failed'
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
