-- Agents and chat (seed: master-pattern.md, "MCP = Agent Interface
-- Standard" and "ChatOps"): tools over direct database access, approval for
-- whatever changes production, every tool call audited in ops.run_events.
--
-- Agents (ops-mcp) and chat (chatops) only request: an approval-required
-- action becomes an opaque, expiring handle that a person other than the
-- requester approves (ChatOps, the console, or this RPC as an operator). Only
-- then does it happen, through the same RPCs as every other surface (a run is
-- queued and approved, dead letters are redriven). Deploy authority stays
-- with the runner and CI.

-- Tool calls and chat commands are audited in ops.run_events even when no
-- run is involved (run_id null), with the caller as actor, so one trace shows
-- them by correlation id.
alter table ops.run_events alter column run_id drop not null;

create table ops.action_requests (
  -- Opaque and unguessable: `apr_` and the 32 bytes of two random UUIDs
  -- (244 random bits), base64url.
  handle text primary key check (handle ~ '^apr_[A-Za-z0-9_-]{43}$'),
  tool text not null check (tool in ('deploy_release', 'rollback_release', 'redrive_dead_letters')),
  arguments jsonb not null check (jsonb_typeof(arguments) = 'object'),
  requested_by text not null check (length(requested_by) between 1 and 200),
  requested_via text not null check (requested_via in ('mcp', 'chatops', 'console', 'sql')),
  status text not null default 'awaiting_approval'
    check (status in ('awaiting_approval', 'rejected', 'expired', 'done', 'failed')),
  expires_at timestamptz not null,
  decided_by text,
  decided_at timestamptz,
  decision_comment text check (length(decision_comment) <= 2000),
  -- What the action did once approved: the run it queued, the redrive's counts.
  result jsonb,
  error text,
  run_id text references ops.runs (run_id),
  correlation_id text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index action_requests_awaiting on ops.action_requests (expires_at) where status = 'awaiting_approval';

alter table ops.action_requests enable row level security;
revoke all on ops.action_requests from public, anon, authenticated, service_role;
-- Written only through the RPCs below, by every role.
grant select on ops.action_requests to service_role;
grant select on ops.action_requests to authenticated;
create policy action_requests_operator_read on ops.action_requests for select to authenticated
  using ((select ops.is_operator()));

-- How long a handle waits for a decision (seconds).
alter table ops.settings add column action_ttl_seconds integer not null default 3600
  check (action_ttl_seconds between 60 and 604800);

-- ------------------------------------------------------------ audit

-- One tool call or chat command: allowed, refused or failed. The arguments
-- are stored as given (tools take no secrets); `p_detail` holds the outcome.
create function ops.record_tool_call(
  p_caller text,
  p_via text,
  p_tool text,
  p_arguments jsonb,
  p_outcome text,
  p_detail jsonb default '{}',
  p_correlation_id text default null,
  p_run_id text default null
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id bigint;
begin
  if p_caller is null or length(p_caller) not between 1 and 200 then
    perform observability.reject('p_caller', 'p_caller must be 1 to 200 characters');
  end if;
  if p_via is null or p_via not in ('mcp', 'chatops', 'console', 'sql') then
    perform observability.reject('p_via', 'p_via must be mcp, chatops, console or sql');
  end if;
  if p_tool is null or p_tool !~ '^[a-z][a-z0-9_/.-]{0,63}$' then
    perform observability.reject('p_tool', 'p_tool must be a tool or command name');
  end if;
  if p_outcome is null or p_outcome not in ('ok', 'refused', 'failed', 'awaiting_approval') then
    perform observability.reject('p_outcome', 'p_outcome must be ok, refused, failed or awaiting_approval');
  end if;
  if p_arguments is not null and jsonb_typeof(p_arguments) <> 'object' then
    perform observability.reject('p_arguments', 'p_arguments must be a JSON object');
  end if;
  if p_run_id is not null and not exists (select 1 from ops.runs where run_id = p_run_id) then
    p_run_id := null; -- an agent's guess at a run id is audited, not trusted
  end if;
  insert into ops.run_events (run_id, level, message, payload, actor, correlation_id)
  values (p_run_id,
    case p_outcome when 'ok' then 'info' when 'awaiting_approval' then 'info' else 'warn' end,
    left(format('%s %s: %s', p_via, p_tool, p_outcome), 2000),
    jsonb_build_object('via', p_via, 'tool', p_tool, 'arguments', coalesce(p_arguments, '{}'),
      'outcome', p_outcome, 'detail', coalesce(p_detail, '{}')),
    p_caller, coalesce(p_correlation_id, gen_random_uuid()::text))
  returning id into v_id;
  return v_id;
end;
$$;

-- Who is acting: as before, plus one case. While ops.decide_action carries
-- out an approved request, the request is made in the requester's name even
-- when an operator decides with their own JWT (which ops.actor would
-- otherwise name): the agent asked, the operator approved. `ops.acting_for`
-- is set only by decide_action, transaction-locally; no RPC lets a caller
-- set it.
create or replace function ops.actor(p_given text, p_field text default 'p_requested_by')
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
  v_claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  v_role text := current_setting('role');
  v_acting_for text := nullif(current_setting('ops.acting_for', true), '');
begin
  if v_acting_for is not null then
    return v_acting_for;
  end if;
  if v_role = 'authenticated' then
    return coalesce(v_claims ->> 'email', v_claims ->> 'sub', 'authenticated');
  end if;
  if p_given is not null and length(p_given) not between 1 and 200 then
    perform observability.reject(p_field, format('%s must be 1 to 200 characters', p_field));
  end if;
  return coalesce(p_given, case when v_role = 'none' then session_user::text else v_role end);
end;
$$;

-- ------------------------------------------------------------ requests

-- Checks a tool's arguments; refuses with validation_failed naming the field.
create function ops.check_action_arguments(p_tool text, p_arguments jsonb)
returns void
language plpgsql
stable
set search_path = ''
as $$
declare
  v_project ops.projects;
begin
  if p_arguments is null or jsonb_typeof(p_arguments) <> 'object' then
    perform observability.reject('arguments', 'arguments must be a JSON object');
  end if;
  if p_tool in ('deploy_release', 'rollback_release') then
    select * into v_project from ops.projects where project_id = p_arguments ->> 'project_id';
    if not found then
      perform observability.reject('project_id', 'no project has this id');
    end if;
    if coalesce(p_arguments ->> 'env', '') !~ '^[a-z][a-z0-9-]{0,31}$' then
      perform observability.reject('env', 'env must be an environment name such as staging or production');
    end if;
  end if;
  if p_tool = 'deploy_release' then
    if coalesce(p_arguments ->> 'git_sha', '') !~ '^[0-9a-f]{7,40}$' then
      perform observability.reject('git_sha', 'git_sha must be 7 to 40 lowercase hex characters');
    end if;
    if coalesce(p_arguments ->> 'git_ref', 'refs/heads/main') !~ '^refs/[A-Za-z0-9._/-]{1,200}$' then
      perform observability.reject('git_ref', 'git_ref must be a full ref such as refs/tags/v1.2.3');
    end if;
  elsif p_tool = 'rollback_release' then
    if p_arguments ? 'to_run_id' and not exists (select 1 from ops.runs where run_id = p_arguments ->> 'to_run_id') then
      perform observability.reject('to_run_id', 'no run has this id');
    end if;
  elsif p_tool = 'redrive_dead_letters' then
    if not (p_arguments ?| array['event_pattern', 'error_contains', 'created_from', 'created_to', 'ids']) then
      perform observability.reject('arguments', 'give event_pattern, error_contains, a time range or ids: redriving every dead event needs a filter');
    end if;
  else
    perform observability.reject('tool', 'tool must be deploy_release, rollback_release or redrive_dead_letters');
  end if;
end;
$$;

-- Records an approval-required action and returns its handle; nothing
-- happens until someone else approves it (ops.decide_action).
create function ops.request_action(
  p_tool text,
  p_arguments jsonb,
  p_requested_by text,
  p_via text,
  p_correlation_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_request ops.action_requests;
  v_correlation_id text := coalesce(p_correlation_id, gen_random_uuid()::text);
begin
  if p_requested_by is null or length(p_requested_by) not between 1 and 200 then
    perform observability.reject('p_requested_by', 'p_requested_by must be 1 to 200 characters');
  end if;
  if p_via is null or p_via not in ('mcp', 'chatops', 'console', 'sql') then
    perform observability.reject('p_via', 'p_via must be mcp, chatops, console or sql');
  end if;
  perform ops.check_action_arguments(p_tool, p_arguments);
  insert into ops.action_requests (handle, tool, arguments, requested_by, requested_via, expires_at, correlation_id)
  values ('apr_' || translate(encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64'), '+/=', '-_'),
    p_tool, p_arguments, p_requested_by, p_via,
    now() + make_interval(secs => (select action_ttl_seconds from ops.settings)), v_correlation_id)
  returning * into v_request;
  perform ops.record_tool_call(p_requested_by, p_via, p_tool, p_arguments, 'awaiting_approval',
    jsonb_build_object('handle', v_request.handle, 'expires_at', v_request.expires_at), v_correlation_id);
  return ops.action_summary(v_request);
end;
$$;

-- A handle as callers see it.
create function ops.action_summary(p_request ops.action_requests)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_strip_nulls(jsonb_build_object(
    'handle', p_request.handle,
    'tool', p_request.tool,
    'arguments', p_request.arguments,
    'status', case when p_request.status = 'awaiting_approval' and p_request.expires_at <= now()
      then 'expired' else p_request.status end,
    'requested_by', p_request.requested_by,
    'expires_at', p_request.expires_at,
    'decided_by', p_request.decided_by,
    'decided_at', p_request.decided_at,
    'result', p_request.result,
    'error', p_request.error,
    'run_id', p_request.run_id,
    'run_status', (select r.status from ops.runs r where r.run_id = p_request.run_id)))
$$;

-- What became of a handle (agents poll it).
create function ops.get_action(p_handle text)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_request ops.action_requests;
begin
  perform ops.require_operator();
  select * into v_request from ops.action_requests where handle = p_handle;
  if not found then
    raise exception using errcode = 'PT404', message = 'not_found', detail = 'no action has this handle';
  end if;
  return ops.action_summary(v_request);
end;
$$;

-- Approves or rejects a handle: operators (their JWT) or the service role
-- naming the person (ChatOps checks who may approve before calling). Four
-- eyes: the requester cannot decide. An expired or already decided handle is
-- invalid_state. Approval carries the action out at once, in this
-- transaction, through the same RPCs as every other surface:
--   deploy_release    ops.queue_run, and its approval by the same person when
--                     the environment is protected;
--   rollback_release  ops.queue_rollback, likewise;
--   redrive_dead_letters integration.redrive_dead_letters (not a dry run).
-- The handle ends `done` (result: what happened) or `failed` (error).
create function ops.decide_action(
  p_handle text,
  p_approve boolean,
  p_comment text default null,
  p_decided_by text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_request ops.action_requests;
  v_actor text;
  v_result jsonb;
  v_run jsonb;
  v_args jsonb;
  v_detail text;
begin
  perform ops.require_operator();
  v_actor := ops.actor(p_decided_by, 'p_decided_by');
  if p_approve is null then
    perform observability.reject('p_approve', 'p_approve must be true or false');
  end if;
  if p_comment is not null and length(p_comment) > 2000 then
    perform observability.reject('p_comment', 'p_comment must be at most 2000 characters');
  end if;
  select * into v_request from ops.action_requests where handle = p_handle for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'not_found', detail = 'no action has this handle';
  end if;
  if v_request.status = 'awaiting_approval' and v_request.expires_at <= now() then
    update ops.action_requests set status = 'expired', updated_at = now() where handle = p_handle;
    -- The expiry is recorded even though the decision is refused.
    return jsonb_build_object('handle', p_handle, 'status', 'expired', 'refused', 'the handle expired before a decision');
  end if;
  if v_request.status <> 'awaiting_approval' then
    perform ops.refuse_state(format('this handle was already decided: it is %s', v_request.status));
  end if;
  if v_actor = v_request.requested_by then
    raise exception using errcode = 'PT403', message = 'forbidden',
      detail = 'an action is approved or rejected by someone other than whoever requested it';
  end if;

  if not p_approve then
    update ops.action_requests set status = 'rejected', decided_by = v_actor, decided_at = now(),
      decision_comment = p_comment, updated_at = now()
    where handle = p_handle returning * into v_request;
    perform ops.record_tool_call(v_actor, v_request.requested_via, v_request.tool, v_request.arguments, 'refused',
      jsonb_build_object('handle', p_handle, 'decision', 'rejected', 'comment', p_comment), v_request.correlation_id);
    return ops.action_summary(v_request);
  end if;

  v_args := v_request.arguments;
  begin
    -- The run is requested in the requester's name (see ops.actor) ...
    perform set_config('ops.acting_for', v_request.requested_by, true);
    if v_request.tool = 'deploy_release' then
      v_run := ops.queue_run(v_args ->> 'project_id', v_args ->> 'env', v_args ->> 'git_sha',
        coalesce(v_args ->> 'git_ref', 'refs/heads/main'), v_request.requested_by,
        jsonb_build_object('action_handle', p_handle, 'requested_via', v_request.requested_via),
        v_request.correlation_id);
    elsif v_request.tool = 'rollback_release' then
      v_run := ops.queue_rollback(v_args ->> 'project_id', v_args ->> 'env', v_args ->> 'to_run_id',
        v_request.requested_by, v_request.correlation_id);
    end if;
    -- ... and approved in the decider's.
    perform set_config('ops.acting_for', '', true);
    if v_run is not null and v_run ->> 'status' = 'awaiting_approval' then
      v_run := v_run || ops.decide(v_run ->> 'run_id', true,
        coalesce(p_comment, format('approved with action %s', p_handle)), v_actor);
    end if;
    if v_request.tool = 'redrive_dead_letters' then
      v_result := integration.redrive_dead_letters(
        format('%s (approved by %s)', v_request.requested_by, v_actor),
        (select array_agg(x::uuid) from jsonb_array_elements_text(v_args -> 'ids') x),
        v_args ->> 'event_pattern', (v_args ->> 'created_from')::timestamptz, (v_args ->> 'created_to')::timestamptz,
        v_args ->> 'error_contains', false);
      if (v_result ->> 'redriven')::integer > 0 then
        perform integration.request_router('redrive');
      end if;
    else
      v_result := v_run;
    end if;
    update ops.action_requests set status = 'done', decided_by = v_actor, decided_at = now(),
      decision_comment = p_comment, result = v_result, run_id = v_run ->> 'run_id', updated_at = now()
    where handle = p_handle returning * into v_request;
  -- The action's own refusals only (ours are PTnnn; bad values are classes
  -- 22 and 23); a server fault (a deadlock, a timeout) is raised, so the
  -- caller retries and the handle keeps waiting.
  exception when sqlstate 'PT400' or sqlstate 'PT403' or sqlstate 'PT404' or sqlstate 'PT409'
      or sqlstate 'PT422' or data_exception or integrity_constraint_violation then
    get stacked diagnostics v_detail = pg_exception_detail;
    perform set_config('ops.acting_for', '', true);
    -- The action's own refusal (a frozen environment, a bad filter) fails
    -- the handle; what it had begun is undone with this block.
    update ops.action_requests set status = 'failed', decided_by = v_actor, decided_at = now(),
      decision_comment = p_comment, error = left(concat_ws(': ', sqlerrm, nullif(v_detail, '')), 2000),
      updated_at = now()
    where handle = p_handle returning * into v_request;
  end;
  perform ops.record_tool_call(v_actor, v_request.requested_via, v_request.tool, v_request.arguments,
    case when v_request.status = 'done' then 'ok' else 'failed' end,
    jsonb_build_object('handle', p_handle, 'decision', 'approved', 'result', v_request.result, 'error', v_request.error),
    v_request.correlation_id, v_request.run_id);
  return ops.action_summary(v_request);
end;
$$;

revoke all on function ops.record_tool_call(text, text, text, jsonb, text, jsonb, text, text),
  ops.check_action_arguments(text, jsonb),
  ops.request_action(text, jsonb, text, text, text),
  ops.action_summary(ops.action_requests),
  ops.get_action(text),
  ops.decide_action(text, boolean, text, text) from public, anon, authenticated;
grant execute on function ops.record_tool_call(text, text, text, jsonb, text, jsonb, text, text),
  ops.request_action(text, jsonb, text, text, text),
  ops.get_action(text),
  ops.decide_action(text, boolean, text, text) to service_role;
-- Operators decide with their own JWT (ops.require_operator inside).
grant execute on function ops.decide_action(text, boolean, text, text), ops.get_action(text) to authenticated;

-- ------------------------------------------------------------ reads for agents

-- One job with its recent events: the seed's get_job_status.
create function observability.get_job(p_job_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_job observability.jobs;
begin
  perform ops.require_operator();
  select * into v_job from observability.jobs where id = p_job_id;
  if not found then
    raise exception using errcode = 'PT404', message = 'not_found', detail = 'no job has this id';
  end if;
  return jsonb_build_object(
    'id', v_job.id, 'source', v_job.source, 'job_type', v_job.job_type, 'status', v_job.status,
    'attempts', v_job.attempts, 'max_attempts', v_job.max_attempts, 'priority', v_job.priority,
    'available_at', v_job.available_at, 'locked_by', v_job.locked_by, 'last_error', v_job.last_error,
    'result', v_job.result, 'correlation_id', v_job.correlation_id, 'created_at', v_job.created_at,
    'updated_at', v_job.updated_at, 'finished_at', v_job.finished_at,
    'events', coalesce((select jsonb_agg(to_jsonb(e) - 'job_id' order by e.at desc)
      from (select * from observability.job_events where job_id = p_job_id order by at desc limit 20) e), '[]'));
end;
$$;

-- The newest jobs, optionally of one status or type: the seed's list_recent_jobs.
create function observability.list_recent_jobs(
  p_limit integer default 20,
  p_status text default null,
  p_job_type text default null
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform ops.require_operator();
  if p_limit is null or p_limit not between 1 and 200 then
    perform observability.reject('limit', 'limit must be 1 to 200');
  end if;
  if p_status is not null and p_status not in ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled') then
    perform observability.reject('status', 'status must be queued, running, succeeded, failed, dead or cancelled');
  end if;
  return coalesce((
    select jsonb_agg(jsonb_build_object('id', j.id, 'job_type', j.job_type, 'source', j.source,
      'status', j.status, 'attempts', j.attempts, 'last_error', j.last_error,
      'correlation_id', j.correlation_id, 'created_at', j.created_at, 'finished_at', j.finished_at)
      order by j.created_at desc)
    from (select * from observability.jobs
          where (p_status is null or status = p_status) and (p_job_type is null or job_type = p_job_type)
          order by created_at desc limit p_limit) j), '[]');
end;
$$;

-- The newest runs, optionally of one project or status.
create function ops.list_runs(p_limit integer default 20, p_project_id text default null, p_status text default null)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform ops.require_operator();
  if p_limit is null or p_limit not between 1 and 200 then
    perform observability.reject('limit', 'limit must be 1 to 200');
  end if;
  return coalesce((
    select jsonb_agg(jsonb_build_object('run_id', r.run_id, 'project_id', r.project_id, 'env', r.env,
      'kind', r.kind, 'status', r.status, 'phase', r.phase, 'git_sha', r.git_sha, 'git_ref', r.git_ref,
      'requested_by', r.requested_by, 'correlation_id', r.correlation_id, 'queued_at', r.queued_at,
      'finished_at', r.finished_at, 'error', r.error) order by r.queued_at desc)
    from (select * from ops.runs
          where (p_project_id is null or project_id = p_project_id) and (p_status is null or status = p_status)
          order by queued_at desc limit p_limit) r), '[]');
end;
$$;

-- One run with its events and artifacts.
create function ops.get_run(p_run_id text)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
begin
  perform ops.require_operator();
  select * into v_run from ops.runs where run_id = p_run_id;
  if not found then
    raise exception using errcode = 'PT404', message = 'not_found', detail = 'no run has this id';
  end if;
  return (to_jsonb(v_run) - 'lease_token' - 'progress') || jsonb_build_object(
    'events', coalesce((select jsonb_agg(jsonb_build_object('at', e.created_at, 'level', e.level,
      'message', e.message, 'phase', e.phase, 'actor', e.actor) order by e.id)
      from ops.run_events e where e.run_id = p_run_id), '[]'),
    'artifacts', coalesce((select jsonb_agg(jsonb_build_object('kind', a.kind, 'name', a.name,
      'url', a.url, 'digest', a.digest)) from ops.artifacts a where a.run_id = p_run_id), '[]'));
end;
$$;

revoke all on function observability.get_job(uuid), observability.list_recent_jobs(integer, text, text),
  ops.list_runs(integer, text, text), ops.get_run(text) from public, anon;
grant execute on function observability.get_job(uuid), observability.list_recent_jobs(integer, text, text),
  ops.list_runs(integer, text, text), ops.get_run(text) to authenticated, service_role;

-- A registered service's probe, by name: what smoke_test checks (only
-- registered URLs, so an agent cannot make the function fetch anything else).
create function observability.get_service_probe(p_name text)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_service observability.services;
begin
  perform ops.require_operator();
  select * into v_service from observability.services where name = p_name;
  if not found then
    raise exception using errcode = 'PT404', message = 'not_found', detail = 'no service has this name';
  end if;
  return jsonb_build_object('id', v_service.id, 'name', v_service.name, 'url', v_service.url,
    'method', v_service.method, 'expected_status', v_service.expected_status,
    'body_match', v_service.body_match, 'timeout_ms', v_service.timeout_ms);
end;
$$;

revoke all on function observability.get_service_probe(text) from public, anon;
grant execute on function observability.get_service_probe(text) to authenticated, service_role;

-- Who a signed-in caller is, for surfaces that admit operators only (ops-mcp):
-- PostgREST has verified the JWT before this runs.
create function ops.whoami()
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'role', current_setting('role'),
    'sub', nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub',
    'email', nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email',
    'operator', ops.is_operator())
$$;

revoke all on function ops.whoami() from public, anon;
grant execute on function ops.whoami() to authenticated, service_role;
