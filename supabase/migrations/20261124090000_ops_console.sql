-- The operators' web console (functions/ops-console): it runs in the browser
-- with the operator's own session, so what it reads and does goes through
-- RPCs that admit operators (JWT app_metadata.role = 'operator', through
-- ops.require_operator) and the service role, and name the operator by their
-- verified JWT (ops.actor), whatever the page sends.
--
-- What changes for existing RPCs: integration.redrive_outbox,
-- observability.requeue_job and observability.cancel_job become callable by
-- operators (same parameters; the requester's parameter gains a default of
-- NULL, which an operator need not send). The dead-letter filter is one
-- predicate, integration.dead_letter_matches, shared by the redrive and the
-- console's list, so a list and a redrive with the same filter always agree.
-- New: integration.list_dead_letters and ops.console_overview.

-- ------------------------------------------------------------ dead letters

-- The overview counts deliveries per minute of the last hour.
create index outbox_completed_idx on integration.outbox (completed_at) where status = 'completed';

-- Whether an outbox row is a dead letter that the redrive filter selects: by
-- ids, event type pattern (as in routes), created_at range [from, to), text in
-- the last error; a NULL argument does not filter. A SQL-standard body
-- (RETURN) with no SET clause, so the planner inlines it into the caller's
-- query (status = 'failed' then reaches the partial index); the body is bound
-- when the function is created, so no search_path can change what it calls.
create function integration.dead_letter_matches(
  o integration.outbox,
  p_ids uuid[],
  p_event_pattern text,
  p_created_from timestamptz,
  p_created_to timestamptz,
  p_error_contains text
)
returns boolean
language sql
immutable
parallel safe
return o.status = 'failed'
  and (p_ids is null or o.id = any (p_ids))
  and (p_event_pattern is null or integration.pattern_matches(p_event_pattern, o.event_type))
  and (p_created_from is null or o.created_at >= p_created_from)
  and (p_created_to is null or o.created_at < p_created_to)
  and (p_error_contains is null or strpos(o.last_error, p_error_contains) > 0);

-- As before (20261122150000_integration_queue.sql), with the filter in
-- integration.dead_letter_matches.
create or replace function integration.redrive_dead_letters(
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
    where integration.dead_letter_matches(o, p_ids, p_event_pattern, p_created_from, p_created_to, p_error_contains)
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

-- The redrive RPC, now for operators too: the console's dry run and redrive.
-- The audit row names the operator by their JWT (ops.actor); the service role
-- names whoever it acts for, else itself. Empty filters are no filter (the
-- console sends empty inputs), as in integration.list_dead_letters, so a dry
-- run counts what the list showed.
create or replace function integration.redrive_outbox(
  p_requested_by text default null,
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
  perform ops.require_operator();
  v_result := integration.redrive_dead_letters(ops.actor(p_requested_by), p_ids, nullif(p_event_pattern, ''),
    p_created_from, p_created_to, nullif(p_error_contains, ''), p_dry_run);
  if (v_result->>'redriven')::integer > 0 then
    perform integration.request_router('redrive');
  end if;
  return v_result;
end;
$$;

-- The dead letters the redrive filter selects, newest death first, a page at
-- a time: pass the last row's dead_at and id as p_before_dead_at and
-- p_before_id for the next page. total counts every match, not the page.
-- Returns {total, rows: [{id, event_type, source, aggregate_type,
-- aggregate_id, correlation_id, attempts, last_error, error_history,
-- created_at, dead_at}]}.
create function integration.list_dead_letters(
  p_event_pattern text default null,
  p_created_from timestamptz default null,
  p_created_to timestamptz default null,
  p_error_contains text default null,
  p_limit integer default 50,
  p_before_dead_at timestamptz default null,
  p_before_id uuid default null
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  -- Empty inputs are no filter, as in integration.redrive_outbox.
  v_pattern text := nullif(p_event_pattern, '');
  v_error text := nullif(p_error_contains, '');
begin
  perform ops.require_operator();
  if p_limit is null or p_limit not between 1 and 200 then
    perform observability.reject('p_limit', 'p_limit must be 1 to 200');
  end if;
  if (p_before_dead_at is null) <> (p_before_id is null) then
    perform observability.reject(case when p_before_id is null then 'p_before_id' else 'p_before_dead_at' end,
      'give p_before_dead_at and p_before_id together: the last row''s dead_at and id');
  end if;
  return jsonb_build_object(
    'total', (select count(*) from integration.outbox o
              where integration.dead_letter_matches(o, null, v_pattern, p_created_from, p_created_to, v_error)),
    'rows', coalesce((
      select jsonb_agg(jsonb_build_object('id', d.id, 'event_type', d.event_type, 'source', d.source,
        'aggregate_type', d.aggregate_type, 'aggregate_id', d.aggregate_id, 'correlation_id', d.correlation_id,
        'attempts', d.attempts, 'last_error', d.last_error, 'error_history', d.error_history,
        'created_at', d.created_at, 'dead_at', d.dead_at) order by d.dead_at desc, d.id desc)
      from (select * from integration.outbox o
            where integration.dead_letter_matches(o, null, v_pattern, p_created_from, p_created_to, v_error)
              and (p_before_dead_at is null or (o.dead_at, o.id) < (p_before_dead_at, p_before_id))
            order by o.dead_at desc, o.id desc
            limit p_limit) d), '[]'));
end;
$$;

-- ------------------------------------------------------------ jobs

-- As before (20261124020000_control_plane.sql), for operators too (the
-- console's requeue): an operator is named by their JWT, whatever
-- requested_by says; the service role must still name the person.
create or replace function observability.requeue_job(job_id uuid, requested_by text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
  v_actor text;
begin
  perform ops.require_operator();
  if current_setting('role') <> 'authenticated'
     and (requeue_job.requested_by is null or length(btrim(requeue_job.requested_by)) not between 1 and 200) then
    perform observability.reject('requested_by', 'requested_by must be 1 to 200 characters');
  end if;
  v_actor := ops.actor(requeue_job.requested_by, 'requested_by');
  v_job := observability.job_for_update(requeue_job.job_id);
  if v_job.status not in ('dead', 'cancelled') then
    perform observability.refuse_stale(format('only dead or cancelled jobs are requeued; this one is %s', v_job.status));
  end if;
  perform set_config('observability.job_event_detail',
    jsonb_build_object('requested_by', v_actor, 'previous_attempts', v_job.attempts)::text, true);
  update observability.jobs j set
    status = 'queued', attempts = 0, available_at = now(), finished_at = null, result = null, updated_at = now()
  where j.id = v_job.id;
  return jsonb_build_object('job_id', v_job.id, 'status', 'queued', 'previous_status', v_job.status,
                            'correlation_id', v_job.correlation_id);
end;
$$;

-- As before, for operators too (the console's cancel), named as in requeue_job.
create or replace function observability.cancel_job(job_id uuid, reason text, requested_by text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
  v_actor text;
begin
  perform ops.require_operator();
  if cancel_job.reason is null or length(btrim(cancel_job.reason)) not between 1 and 1000 then
    perform observability.reject('reason', 'reason must be 1 to 1000 characters');
  end if;
  if current_setting('role') <> 'authenticated'
     and (cancel_job.requested_by is null or length(btrim(cancel_job.requested_by)) not between 1 and 200) then
    perform observability.reject('requested_by', 'requested_by must be 1 to 200 characters');
  end if;
  v_actor := ops.actor(cancel_job.requested_by, 'requested_by');
  v_job := observability.job_for_update(cancel_job.job_id);
  if v_job.status in ('succeeded', 'cancelled') then
    perform observability.refuse_stale(format('the job is already %s', v_job.status));
  end if;
  if v_job.status = 'running' then
    perform observability.finish_run(v_job, v_job.attempts, 'cancelled', null, null, cancel_job.reason);
  end if;
  perform set_config('observability.job_event_detail',
    jsonb_build_object('reason', cancel_job.reason, 'requested_by', v_actor)::text, true);
  update observability.jobs j set
    status = 'cancelled', finished_at = now(),
    locked_by = null, locked_at = null, lease_token = null, lease_expires_at = null, updated_at = now()
  where j.id = v_job.id;
  return jsonb_build_object('job_id', v_job.id, 'status', 'cancelled', 'previous_status', v_job.status);
end;
$$;

-- ------------------------------------------------------------ overview

-- The console's overview screen in one round trip (it polls every 10 s):
--   bus       outbox counts by status, oldest pending, expired leases,
--             retrying (pending after a failed attempt), and per minute of
--             the last hour (60 buckets, oldest first, zeros included): events
--             received (event_log), delivered (completed_at), dead-lettered
--             (dead_at; an event redriven since is no longer counted);
--   jobs      counts of the open statuses, oldest queued;
--   services  each with its 24 h uptime and last 30 samples, oldest first;
--   runs_in_flight  the 20 newest runs not finished;
--   approvals runs awaiting approval, and agents' handles awaiting a decision
--             that have not expired;
--   frozen    frozen environments;
--   campaigns linked campaigns out of sync with n8n (a sync error, status
--             active on one side only, or unresolved sync failures): the
--             count and the 10 longest out of sync, with the reasons.
-- Every count uses a partial or time index: no scan of the whole outbox.
create function ops.console_overview()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_from timestamptz := date_trunc('minute', now(), 'UTC') - interval '59 minutes';
begin
  perform ops.require_operator();
  return jsonb_build_object(
    'generated_at', now(),
    'bus', jsonb_build_object(
      -- One count per status: each matches one of the outbox's partial indexes.
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
                   from integration.outbox o where o.status = 'completed' and o.completed_at >= v_from
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
$$;

-- ------------------------------------------------------------ receipts

-- What a receiver said it ran when it acknowledged a delivery: the n8n
-- handlers answer with their execution (and workflow) id, which the router
-- passes to settle_outbox, so a trace reaches from the Odoo event to the n8n
-- execution that handled it.
alter table integration.outbox add column receipt jsonb
  constraint outbox_receipt_check check (receipt is null or (jsonb_typeof(receipt) = 'object' and length(receipt::text) <= 500));

-- complete_leased gains the receipt (NULL when the answer had none).
drop function integration.complete_leased(uuid);
create function integration.complete_leased(p_id uuid, p_receipt jsonb default null)
returns void
language sql
security definer
set search_path = ''
as $$
  update integration.outbox set
    status = 'completed', completed_at = now(), receipt = p_receipt,
    locked_at = null, locked_by = null, lock_token = null, lease_expires_at = null, updated_at = now()
  where id = p_id;
$$;
revoke all on function integration.complete_leased(uuid, jsonb) from public;

-- As before (20261122170000_integration_router.sql), keeping each
-- acknowledgement's receipt: an object of at most 500 characters, else 422.
create or replace function integration.settle_outbox(p_results jsonb)
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
    if v_result ? 'receipt' and (jsonb_typeof(v_result->'receipt') is distinct from 'object'
                                 or length((v_result->'receipt')::text) > 500) then
      raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'a receipt is an object of at most 500 characters';
    end if;
    if not integration.holds_lease(v_id, v_token) then
      v_stale := v_stale || to_jsonb(v_id);
    elsif (v_result->>'ok')::boolean then
      perform integration.complete_leased(v_id, v_result->'receipt');
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

-- As before (20261124030000_ops_runner.sql); a delivery's step carries its receipt.
create or replace view ops.trace_rows with (security_invoker = true) as
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
       jsonb_strip_nulls(jsonb_build_object('event_type', o.event_type, 'attempts', o.attempts,
         'receipt', o.receipt)),
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
join observability.services s on s.id = h.service_id
union all
select r.queued_at, 'ops.runs', 'run.' || r.kind, r.run_id,
       jsonb_strip_nulls(jsonb_build_object('project_id', r.project_id, 'env', r.env, 'git_sha', r.git_sha,
         'git_ref', r.git_ref, 'status', r.status, 'requested_by', r.requested_by, 'rollback_of', r.rollback_of,
         'requeue_of', r.requeue_of)),
       r.correlation_id, 9, 0::bigint
from ops.runs r
union all
select e.created_at, 'ops.run_events', 'run.event.' || e.level, e.run_id,
       jsonb_strip_nulls(jsonb_build_object('message', e.message, 'phase', e.phase, 'actor', e.actor,
         'payload', nullif(e.payload, '{}'::jsonb))),
       e.correlation_id, 10, e.id
from ops.run_events e;

-- ------------------------------------------------------------ privileges

revoke all on function integration.dead_letter_matches(integration.outbox, uuid[], text, timestamptz, timestamptz, text),
  integration.list_dead_letters(text, timestamptz, timestamptz, text, integer, timestamptz, uuid),
  ops.console_overview() from public, anon, authenticated;
-- redrive_outbox, requeue_job and cancel_job keep their grants to the service
-- role; operators call them with their own JWT (ops.require_operator inside).
revoke all on function integration.redrive_outbox(text, uuid[], text, timestamptz, timestamptz, text, boolean),
  observability.requeue_job(uuid, text),
  observability.cancel_job(uuid, text, text) from public, anon;
grant execute on function integration.redrive_outbox(text, uuid[], text, timestamptz, timestamptz, text, boolean),
  observability.requeue_job(uuid, text),
  observability.cancel_job(uuid, text, text),
  integration.list_dead_letters(text, timestamptz, timestamptz, text, integer, timestamptz, uuid),
  ops.console_overview() to authenticated, service_role;
