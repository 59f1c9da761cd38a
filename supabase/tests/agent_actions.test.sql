-- Agent actions: approval handles (ops.request_action, get_action,
-- decide_action), validation per tool, the handle's format and expiry, four
-- eyes, who may call what, rejection, approval carrying the action out
-- (deploy_release to a protected and an unprotected environment,
-- rollback_release, redrive_dead_letters), failing actions (the handle ends
-- `failed`, what the action had begun is undone), the audit of every tool
-- call and decision in ops.run_events (run_id null), ops.record_tool_call,
-- and the agents' reads (get_job, list_recent_jobs, list_runs, get_run,
-- get_service_probe).
begin;
-- The dev database is shared. ops.runs is held against writers and row locks
-- until the rollback (readers go on), and every run of another session that
-- has not ended is parked, so the claims that build this test's successful
-- runs take only its own runs. Every count below is scoped to this test's
-- projects, handles, requesters and ids. All of it is rolled back.
lock table ops.runs in exclusive mode;
update ops.runs set status = 'cancelled', finished_at = now(), lease_token = null, lease_expires_at = null
where status in ('awaiting_approval', 'queued', 'claimed', 'running');
update ops.settings set action_ttl_seconds = 3600, lease_seconds = 60;
set search_path = extensions, public;
select plan(199);

-- Projects unique to this run: P (the default phases, production protected),
-- R (build and deploy, nothing protected yet) for rollbacks. The agent, the
-- approver and the correlation id are unique too.
select 'pgtap-' || substr(md5(random()::text), 1, 10) as p \gset
select :'p' || '-r' as rp, 'agent:' || :'p' as agent, 'bob-' || :'p' || '@example.com' as bob,
  'cid-' || :'p' as cid \gset
insert into ops.projects (project_id, name, repository, protected_envs)
values (:'p', 'pgTAP agent actions', 'example/switchyard', '{production}');
insert into ops.projects (project_id, name, repository, phases, protected_envs)
values (:'rp', 'pgTAP agent rollbacks', 'example/rollbacks',
  '[{"name": "build", "provider": "github-actions"}, {"name": "deploy", "provider": "github-deployments"}]', '{}');

-- A refusal as 'SQLSTATE message hint'.
\ir lib/refusal.sql
\ir lib/call.sql
-- A call's answer, or {"error": "SQLSTATE message"} when it raises (a read
-- that fails then fails its assertions instead of ending the test).
create function pg_temp.try(p_sql text) returns jsonb language plpgsql as $$
declare v_result jsonb;
begin
  execute p_sql into v_result;
  return v_result;
exception when others then
  return jsonb_build_object('error', sqlstate || ' ' || sqlerrm);
end $$;
-- A handle as stored: status/decided_by/run_id/error.
create function pg_temp.h(p_handle text) returns text language sql as $$
  select concat_ws('/', a.status, coalesce(a.decided_by, '-'), coalesce(a.run_id, '-'), coalesce(a.error, '-'))
  from ops.action_requests a where a.handle = p_handle
$$;
-- The audit of a handle: 'actor:outcome:run_id' per tool call, in order.
create function pg_temp.audit(p_handle text) returns text[] language sql as $$
  select coalesce(array_agg(concat_ws(':', e.actor, e.payload ->> 'outcome', coalesce(e.run_id, '-')) order by e.id), '{}')
  from ops.run_events e where e.payload -> 'detail' ->> 'handle' = p_handle
$$;
-- The last audit row of a handle.
create function pg_temp.last_audit(p_handle text) returns ops.run_events language sql as $$
  select e from ops.run_events e where e.payload -> 'detail' ->> 'handle' = p_handle order by e.id desc limit 1
$$;
create function pg_temp.events(p_run text) returns text[] language sql as $$
  select coalesce(array_agg(e.level || ':' || e.message order by e.id), '{}') from ops.run_events e where e.run_id = p_run
$$;
-- Every phase of the run's project that is not done: started and completed.
create function pg_temp.drive(p_run text, p_token uuid, p_build_output jsonb default '{}') returns void
language plpgsql as $$
declare v_phase text;
begin
  for v_phase in
    select p.phase ->> 'name' from ops.runs r join ops.projects pr on pr.project_id = r.project_id
    cross join lateral jsonb_array_elements(pr.phases) with ordinality p(phase, n)
    where r.run_id = p_run and not coalesce((r.progress -> (p.phase ->> 'name') ->> 'done')::boolean, false)
    order by p.n
  loop
    perform ops.start_phase(p_run, p_token, v_phase);
    perform ops.complete_phase(p_run, p_token, v_phase,
      case when v_phase = 'build' then p_build_output else '{}'::jsonb end);
  end loop;
end $$;
-- A successful run of a project/environment: queued, claimed, driven, finished.
create function pg_temp.succeed(p_project text, p_env text, p_sha text, p_digest text) returns text
language plpgsql as $$
declare v_run text; v_claim jsonb;
begin
  v_run := ops.queue_run(p_project, p_env, p_sha, 'refs/heads/main') ->> 'run_id';
  select c into v_claim from ops.claim_next_run('pgtap-agent-worker') c;
  if v_claim ->> 'run_id' is distinct from v_run then
    raise exception 'claimed % instead of %', v_claim ->> 'run_id', v_run;
  end if;
  perform pg_temp.drive(v_run, (v_claim ->> 'lease_token')::uuid, jsonb_build_object('image_digest', p_digest));
  perform ops.finish_run(v_run, 'success', p_lease_token => (v_claim ->> 'lease_token')::uuid);
  return v_run;
end $$;

-- Two successful runs of R/prod for the rollbacks below (first, while only
-- this test's runs are claimable).
select pg_temp.succeed(:'rp', 'prod', 'aaaaaaa', 'sha256:111') as s1 \gset
select pg_temp.succeed(:'rp', 'prod', 'bbbbbbb', 'sha256:222') as s2 \gset
select is((select string_agg(status, ',' order by queued_at) from ops.runs where project_id = :'rp'), 'success,success',
  'two successful runs of R/prod to roll back to');

-- ------------------------------------------------------ request validation

-- Agents and chat request as the service role.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is(pg_temp.refusal(format($$ select ops.request_action('drop_database', '{}', %L, 'mcp') $$, :'agent')),
  'PT422 validation_failed tool', 'an unknown tool');
select is(pg_temp.refusal(format($$ select ops.request_action(null, '{}', %L, 'mcp') $$, :'agent')),
  'PT422 validation_failed tool', 'no tool');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release', '[]', %L, 'mcp') $$, :'agent')),
  'PT422 validation_failed arguments', 'arguments that are not an object');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release', null, %L, 'mcp') $$, :'agent')),
  'PT422 validation_failed arguments', 'no arguments');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  '{"project_id": "pgtap-no-such-project", "env": "dev", "git_sha": "abcdef1"}', %L, 'mcp') $$, :'agent')),
  'PT422 validation_failed project_id', 'deploy_release of an unknown project');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release', '{"env": "dev", "git_sha": "abcdef1"}', %L,
  'mcp') $$, :'agent')), 'PT422 validation_failed project_id', 'deploy_release without a project');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  jsonb_build_object('project_id', %L, 'env', 'Prod', 'git_sha', 'abcdef1'), %L, 'mcp') $$, :'p', :'agent')),
  'PT422 validation_failed env', 'deploy_release to an environment in capitals');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  jsonb_build_object('project_id', %L, 'git_sha', 'abcdef1'), %L, 'mcp') $$, :'p', :'agent')),
  'PT422 validation_failed env', 'deploy_release without an environment');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  jsonb_build_object('project_id', %L, 'env', 'dev', 'git_sha', 'ABCDEF1'), %L, 'mcp') $$, :'p', :'agent')),
  'PT422 validation_failed git_sha', 'a sha in capitals');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  jsonb_build_object('project_id', %L, 'env', 'dev', 'git_sha', 'main'), %L, 'mcp') $$, :'p', :'agent')),
  'PT422 validation_failed git_sha', 'a branch name as sha');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  jsonb_build_object('project_id', %L, 'env', 'dev'), %L, 'mcp') $$, :'p', :'agent')),
  'PT422 validation_failed git_sha', 'deploy_release without a sha');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  jsonb_build_object('project_id', %L, 'env', 'dev', 'git_sha', 'abcdef1', 'git_ref', 'main'), %L, 'mcp') $$,
  :'p', :'agent')), 'PT422 validation_failed git_ref', 'a ref that is not a full ref');
select is(pg_temp.refusal(format($$ select ops.request_action('rollback_release',
  '{"project_id": "pgtap-no-such-project", "env": "prod"}', %L, 'mcp') $$, :'agent')),
  'PT422 validation_failed project_id', 'rollback_release of an unknown project');
select is(pg_temp.refusal(format($$ select ops.request_action('rollback_release',
  jsonb_build_object('project_id', %L, 'env', 'prod!'), %L, 'mcp') $$, :'rp', :'agent')),
  'PT422 validation_failed env', 'rollback_release to a bad environment');
select is(pg_temp.refusal(format($$ select ops.request_action('rollback_release',
  jsonb_build_object('project_id', %L, 'env', 'prod', 'to_run_id', 'run-nosuchrun'), %L, 'mcp') $$, :'rp', :'agent')),
  'PT422 validation_failed to_run_id', 'rollback_release to an unknown run');
select is(pg_temp.refusal(format($$ select ops.request_action('redrive_dead_letters', '{}', %L, 'mcp') $$, :'agent')),
  'PT422 validation_failed arguments', 'redrive_dead_letters without a filter');
select is(pg_temp.refusal(format($$ select ops.request_action('redrive_dead_letters', '{"dry_run": false}', %L, 'mcp') $$,
  :'agent')), 'PT422 validation_failed arguments', 'redrive_dead_letters with nothing that filters');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  jsonb_build_object('project_id', %L, 'env', 'dev', 'git_sha', 'abcdef1'), '', 'mcp') $$, :'p')),
  'PT422 validation_failed p_requested_by', 'an empty requester');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  jsonb_build_object('project_id', %L, 'env', 'dev', 'git_sha', 'abcdef1'), repeat('x', 201), 'mcp') $$, :'p')),
  'PT422 validation_failed p_requested_by', 'a requester over 200 characters');
select is(pg_temp.refusal(format($$ select ops.request_action('deploy_release',
  jsonb_build_object('project_id', %L, 'env', 'dev', 'git_sha', 'abcdef1'), %L, 'slack') $$, :'p', :'agent')),
  'PT422 validation_failed p_via', 'a channel that is not one');
reset role;
set local request.jwt.claims = '';
select is((select count(*) from ops.action_requests where requested_by = :'agent') || '/'
    || (select count(*) from ops.run_events where actor = :'agent') || '/'
    || (select count(*) from ops.runs where project_id = :'p'),
  '0/0/0', 'refused requests wrote nothing: no handle, no audit row, no run');

-- ------------------------------------------------------------ a request

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'production',
  'git_sha', 'abcdef1'), :'agent', 'mcp', :'cid') as r_prod \gset
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'production',
  'git_sha', 'abcdef1'), :'agent', 'mcp') as r_other \gset
reset role;
set local request.jwt.claims = '';
select :'r_prod'::jsonb ->> 'handle' as h_prod, :'r_other'::jsonb ->> 'handle' as h_other \gset

select is((select array_agg(k order by k) from jsonb_object_keys(:'r_prod'::jsonb) k),
  array['arguments', 'expires_at', 'handle', 'requested_by', 'status', 'tool'], 'request_action returns the handle''s summary');
select is(:'r_prod'::jsonb - 'handle' - 'expires_at', jsonb_build_object('tool', 'deploy_release',
    'arguments', jsonb_build_object('project_id', :'p', 'env', 'production', 'git_sha', 'abcdef1'),
    'status', 'awaiting_approval', 'requested_by', :'agent'),
  'a request awaits approval, with its tool, arguments and requester');
select matches(:'h_prod'::text, '^apr_[A-Za-z0-9_-]{43}$', 'the handle is apr_ and 43 base64url characters');
select isnt(:'h_prod'::text, :'h_other'::text, 'every request gets its own handle');
select is((:'r_prod'::jsonb ->> 'expires_at')::timestamptz, now() + interval '3600 seconds',
  'it expires after the settings'' action_ttl_seconds');
select is((select row(tool, requested_by, requested_via, status, correlation_id, decided_by, decided_at, result, error,
    run_id)::text from ops.action_requests where handle = :'h_prod'),
  row('deploy_release', :'agent', 'mcp', 'awaiting_approval', :'cid', null, null, null, null, null)::text,
  'the handle is stored with its channel and correlation id, undecided');
select is((select count(*)::integer from ops.runs where project_id = :'p'), 0, 'nothing happens until it is approved');
select is(pg_temp.audit(:'h_prod'), array[:'agent' || ':awaiting_approval:-'], 'the request is audited once, without a run');
select is((select row(e.run_id, e.level, e.message, e.actor, e.correlation_id, e.payload - 'detail')::text
    from ops.run_events e where e.payload -> 'detail' ->> 'handle' = :'h_prod'),
  row(null, 'info', 'mcp deploy_release: awaiting_approval', :'agent', :'cid',
    jsonb_build_object('via', 'mcp', 'tool', 'deploy_release', 'outcome', 'awaiting_approval',
      'arguments', jsonb_build_object('project_id', :'p', 'env', 'production', 'git_sha', 'abcdef1')))::text,
  'the audit row names the requester, the channel, the tool, its arguments and the outcome, under the correlation id');
select is((select (e.payload -> 'detail' ->> 'expires_at')::timestamptz from ops.run_events e
    where e.payload -> 'detail' ->> 'handle' = :'h_prod'), now() + interval '3600 seconds',
  'and the handle''s expiry');
select ok((select correlation_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
  from ops.action_requests where handle = :'h_other'), 'without a correlation id a request gets a new UUID');
select is((select count(*)::integer from ops.get_trace(:'cid') t where t.source = 'ops.run_events'
    and t.detail ->> 'actor' = :'agent'), 1, 'the trace of the correlation id shows the tool call');

update ops.settings set action_ttl_seconds = 120;
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is((ops.request_action('redrive_dead_letters', '{"event_pattern": "pgtap.*"}', :'agent', 'chatops')
  ->> 'expires_at')::timestamptz, now() + interval '120 seconds', 'action_ttl_seconds sets how long a handle waits');
select is(ops.get_action(:'h_prod'), :'r_prod'::jsonb, 'get_action answers the summary (the service role)');
reset role;
set local request.jwt.claims = '';
update ops.settings set action_ttl_seconds = 3600;
select throws_ok($$ update ops.settings set action_ttl_seconds = 59 $$, '23514', null,
  'a handle waits at least a minute');

-- ------------------------------------------------------------ who may call

-- Every RPC with a probe that passes the privilege and operator checks and is
-- then refused by its own validation (so nothing is written). service_only:
-- the requests and the audit (agents and chat through the service role).
create temp table rpcs (name text primary key, probe text not null, allowed text not null, service_only boolean not null);
insert into rpcs values
  ('ops.request_action', $$ select ops.request_action('drop_database', '{}', 'x', 'mcp') $$,
   'PT422 validation_failed tool', true),
  ('ops.record_tool_call', $$ select ops.record_tool_call('', 'mcp', 'get_job', '{}', 'ok') $$,
   'PT422 validation_failed p_caller', true),
  ('ops.get_action', $$ select ops.get_action('apr_nosuchhandle') $$, 'PT404 not_found', false),
  ('ops.decide_action', $$ select ops.decide_action('apr_nosuchhandle', true, null, 'bob@example.com') $$,
   'PT404 not_found', false),
  ('observability.get_job', $$ select observability.get_job(gen_random_uuid()) $$, 'PT404 not_found', false),
  ('observability.list_recent_jobs', $$ select observability.list_recent_jobs(0) $$, 'PT422 validation_failed limit', false),
  ('ops.list_runs', $$ select ops.list_runs(0) $$, 'PT422 validation_failed limit', false),
  ('ops.get_run', $$ select ops.get_run('run-nosuchrun') $$, 'PT404 not_found', false),
  ('observability.get_service_probe', $$ select observability.get_service_probe('pgtap no such service') $$,
   'PT404 not_found', false);
grant select on rpcs to anon, authenticated, service_role;
create temp table handle_seen as select :'h_prod'::text as handle;
grant select on handle_seen to anon, authenticated, service_role;

-- anon: nothing at all.
set local role anon;
set local request.jwt.claims = '{"role": "anon"}';
select is(pg_temp.call(probe), '42501', 'anon cannot execute ' || name) from rpcs order by name;
select is(pg_temp.call($$ select 1 from ops.action_requests $$), '42501', 'anon cannot read ops.action_requests');
reset role;

-- A signed-in user who is not an operator: refused, sees no handle.
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000d1", "email": "user@example.com", "app_metadata": {"provider": "email"}}';
select is(pg_temp.call(probe), '42501', 'a user who is not an operator cannot execute ' || name)
from rpcs where service_only order by name;
select is(pg_temp.call(probe), 'PT403 forbidden', 'a user who is not an operator is refused ' || name)
from rpcs where not service_only order by name;
select is(pg_temp.call(format($$ select ops.decide_action(%L, true) $$, handle)), 'PT403 forbidden',
  'a user who is not an operator cannot decide a real handle') from handle_seen;
select is(pg_temp.call(format($$ select ops.get_action(%L) $$, handle)), 'PT403 forbidden',
  'nor get it') from handle_seen;
select is((select count(*)::integer from ops.action_requests a join handle_seen s using (handle)), 0,
  'and sees no handle');
reset role;

-- An operator (their JWT): decides and reads, does not request.
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000d2", "email": "op@example.com", "app_metadata": {"role": "operator"}}';
select is(pg_temp.call(probe), '42501', 'an operator cannot execute ' || name) from rpcs where service_only order by name;
select is(pg_temp.call(probe), allowed, 'an operator may call ' || name) from rpcs where not service_only order by name;
select is((select count(*)::integer from ops.action_requests a join handle_seen s using (handle)), 1,
  'an operator reads the handles');
select is((select ops.get_action(handle) ->> 'status' from handle_seen), 'awaiting_approval', 'and gets one');
reset role;

-- The service role: everything.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is(pg_temp.call(probe), allowed, 'service_role may call ' || name) from rpcs order by name;
reset role;
set local request.jwt.claims = '';
select is(pg_temp.h(:'h_prod'), 'awaiting_approval/-/-/-', 'the refused decisions left the handle as it was');

-- ---------------------------------------------- decision checks, four eyes

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, true, null, %L) $$, :'h_prod', :'agent')),
  'PT403 forbidden', 'four eyes: the requester cannot approve');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, false, null, %L) $$, :'h_prod', :'agent')),
  'PT403 forbidden', 'nor reject');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, null, null, %L) $$, :'h_prod', :'bob')),
  'PT422 validation_failed p_approve', 'a decision that is neither');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, true, repeat('c', 2001), %L) $$, :'h_prod', :'bob')),
  'PT422 validation_failed p_comment', 'a comment over 2000 characters');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, true, null, '') $$, :'h_prod')),
  'PT422 validation_failed p_decided_by', 'an empty decider');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, true, null, %L) $$, 'apr_' || repeat('x', 43), :'bob')),
  'PT404 not_found', 'an unknown handle');
select is(pg_temp.refusal(format($$ select ops.get_action(%L) $$, 'apr_' || repeat('x', 43))), 'PT404 not_found',
  'get_action of an unknown handle');
-- A person who asked through chat cannot approve with their own JWT.
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'dev', 'git_sha', 'abcdef1'),
  'op@example.com', 'chatops') ->> 'handle' as h_own \gset
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000d2", "email": "op@example.com", "app_metadata": {"role": "operator"}}';
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, true, null, 'somebody-else@example.com') $$, :'h_own')),
  'PT403 forbidden', 'four eyes: an operator cannot approve their own request, whoever they name');
reset role;
set local request.jwt.claims = '';
select is(pg_temp.h(:'h_prod') || ' ' || pg_temp.h(:'h_own'), 'awaiting_approval/-/-/- awaiting_approval/-/-/-',
  'refused decisions change nothing');
select is(pg_temp.audit(:'h_prod') || pg_temp.audit(:'h_own'),
  array[:'agent' || ':awaiting_approval:-', 'op@example.com:awaiting_approval:-'], 'and audit nothing');
select is((select count(*)::integer from ops.runs where project_id = :'p'), 0, 'and queue nothing');

-- ------------------------------------------------------------- rejection

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'production',
  'git_sha', 'abcdef2'), :'agent', 'mcp', :'cid') ->> 'handle' as h_rej \gset
create temp table rejected as select ops.decide_action(:'h_rej', false, 'not during the freeze', :'bob') as r;
reset role;
set local request.jwt.claims = '';
select is((select r - 'handle' - 'expires_at' - 'decided_at' - 'arguments' from rejected),
  jsonb_build_object('tool', 'deploy_release', 'status', 'rejected', 'requested_by', :'agent', 'decided_by', :'bob'),
  'a rejection: status rejected, by the decider, no result, no run');
select is((select row(status, decided_by, decided_at = now(), decision_comment, result, run_id)::text
  from ops.action_requests where handle = :'h_rej'),
  row('rejected', :'bob', true, 'not during the freeze', null, null)::text, 'stored with the comment');
select is((select count(*)::integer from ops.runs where project_id = :'p'), 0, 'nothing was queued');
select is(pg_temp.audit(:'h_rej'), array[:'agent' || ':awaiting_approval:-', :'bob' || ':refused:-'],
  'the rejection is audited under the decider, without a run');
select is((select row(e.level, e.message, e.correlation_id, e.payload ->> 'tool', e.payload -> 'detail' ->> 'decision',
    e.payload -> 'detail' ->> 'comment')::text from pg_temp.last_audit(:'h_rej') e),
  row('warn', 'mcp deploy_release: refused', :'cid', 'deploy_release', 'rejected', 'not during the freeze')::text,
  'with the decision and the comment, under the request''s correlation id');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, true, null, %L) $$, :'h_rej', 'carol@example.com')),
  'PT409 invalid_state', 'a rejected handle is not decided again');
-- An operator rejects with their JWT.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('rollback_release', jsonb_build_object('project_id', :'rp', 'env', 'prod'), :'agent', 'mcp')
  ->> 'handle' as h_rej_op \gset
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000d2", "email": "op@example.com", "app_metadata": {"role": "operator"}}';
select is(ops.decide_action(:'h_rej_op', false, p_decided_by => 'ignored@example.com') ->> 'decided_by', 'op@example.com',
  'an operator decides with their JWT (named by it, whatever they pass)');
reset role;
set local request.jwt.claims = '';
select is(pg_temp.h(:'h_rej_op'), 'rejected/op@example.com/-/-', 'the handle is rejected by the operator');
select is((select count(*)::integer from ops.runs where project_id = :'rp'), 2, 'and no rollback was queued');

-- ---------------------------------- approval: deploy to a protected environment

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
create temp table approved as select ops.decide_action(:'h_prod', true, null, :'bob') as r;
reset role;
set local request.jwt.claims = '';
select r ->> 'run_id' as run_prod from approved \gset
select is((select r ->> 'status' from approved), 'done', 'approval carries the action out: done');
select is((select row(r ->> 'decided_by', r ->> 'run_status', r ->> 'run_id' is not null)::text from approved),
  row(:'bob', 'queued', true)::text, 'decided by the approver; its run is queued');
select is((select r -> 'result' from approved), jsonb_build_object('run_id', :'run_prod', 'status', 'queued',
    'correlation_id', :'cid', 'approval_required', true, 'duplicate', false, 'decided_by', :'bob'),
  'the result is the run queue_run queued and the approval that let it in');
select is((select row(project_id, env, git_sha, git_ref, kind, status, requested_by, correlation_id,
    metadata ->> 'action_handle', metadata ->> 'requested_via')::text from ops.runs where run_id = :'run_prod'),
  row(:'p', 'production', 'abcdef1', 'refs/heads/main', 'deploy', 'queued', :'agent', :'cid', :'h_prod', 'mcp')::text,
  'the run deploys what was asked for, requested by the agent, under the request''s correlation id and handle');
select is((select row(status, requested_by, decided_by, comment)::text from ops.approvals where run_id = :'run_prod'),
  row('approved', :'agent', :'bob', 'approved with action ' || :'h_prod')::text,
  'the protected environment''s approval is given by the decider');
select is(pg_temp.events(:'run_prod'), array['info:Run queued by ' || :'agent',
    'info:Waiting for approval: production is a protected environment', 'info:Approved by ' || :'bob',
    'info:mcp deploy_release: ok'], 'the run''s trail: queued, waiting, approved, and the tool call');
select is((select row(status, decided_by, decided_at = now(), run_id, result ->> 'run_id', error)::text
  from ops.action_requests where handle = :'h_prod'),
  row('done', :'bob', true, :'run_prod', :'run_prod', null)::text, 'the handle is done with its run');
select is(pg_temp.audit(:'h_prod'), array[:'agent' || ':awaiting_approval:-', :'bob' || ':ok:' || :'run_prod'],
  'the approval is audited under the decider, with the run');
select is((select row(e.level, e.message, e.correlation_id, e.payload -> 'detail' ->> 'decision',
    e.payload -> 'detail' -> 'result' ->> 'run_id')::text from pg_temp.last_audit(:'h_prod') e),
  row('info', 'mcp deploy_release: ok', :'cid', 'approved', :'run_prod')::text, 'with the decision and the result');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, false, null, %L) $$, :'h_prod', 'carol@example.com')),
  'PT409 invalid_state', 'one decision per handle: a done handle is not decided again');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, true, null, %L) $$, :'h_prod', :'bob')),
  'PT409 invalid_state', 'not even approved twice');
select is((select count(*)::integer from ops.runs where project_id = :'p'), 1, 'so the run is queued once');
select r -> 'result' as result_prod from approved \gset
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000d2", "email": "op@example.com", "app_metadata": {"role": "operator"}}';
select is(ops.get_action(:'h_prod') - 'expires_at' - 'decided_at', jsonb_build_object('handle', :'h_prod',
    'tool', 'deploy_release', 'arguments', jsonb_build_object('project_id', :'p', 'env', 'production', 'git_sha', 'abcdef1'),
    'status', 'done', 'requested_by', :'agent', 'decided_by', :'bob',
    'result', :'result_prod'::jsonb, 'run_id', :'run_prod', 'run_status', 'queued'),
  'an operator polls the handle: done, its result, its run and the run''s status');
reset role;
set local request.jwt.claims = '';

-- ------------------------------- approval: deploy to an unprotected environment

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'staging',
  'git_sha', '1234567', 'git_ref', 'refs/tags/v1.2.3'), :'agent', 'chatops') ->> 'handle' as h_stg \gset
create temp table approved_stg as select ops.decide_action(:'h_stg', true, 'ship it', :'bob') as r;
reset role;
set local request.jwt.claims = '';
select r ->> 'run_id' as run_stg from approved_stg \gset
select is((select r ->> 'status' || '/' || ((r -> 'result') - 'run_id' - 'correlation_id')::text from approved_stg),
  'done/{"status": "queued", "duplicate": false, "approval_required": false}',
  'an approval to an unprotected environment queues the run directly');
select is((select row(env, git_sha, git_ref, status, requested_by, metadata ->> 'requested_via')::text
  from ops.runs where run_id = :'run_stg'),
  row('staging', '1234567', 'refs/tags/v1.2.3', 'queued', :'agent', 'chatops')::text, 'with the ref asked for');
select is((select count(*)::integer from ops.approvals where run_id = :'run_stg'), 0, 'no run approval is needed');
select is((select decision_comment || '/' || run_id from ops.action_requests where handle = :'h_stg'),
  'ship it/' || :'run_stg', 'the handle keeps the comment and the run');
select is(pg_temp.audit(:'h_stg'), array[:'agent' || ':awaiting_approval:-', :'bob' || ':ok:' || :'run_stg'],
  'both audited');
select is((select message from pg_temp.last_audit(:'h_stg')), 'chatops deploy_release: ok', 'under the request''s channel');

-- A frozen environment does not refuse queue_run (its runs wait until it is
-- unfrozen): the approval is done and the run waits queued.
select ops.lock_environment(:'p', 'frozen', 'pgTAP incident') \g /dev/null
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'frozen', 'git_sha', 'abcdef1'),
  :'agent', 'mcp') ->> 'handle' as h_frozen \gset
select ops.decide_action(:'h_frozen', true, null, :'bob') ->> 'status' as frozen_status \gset
reset role;
set local request.jwt.claims = '';
select is(:'frozen_status' || '/' || (select r.status from ops.runs r join ops.action_requests a using (run_id)
  where a.handle = :'h_frozen'), 'done/queued', 'an approval to a frozen environment queues a run that waits');

-- ------------------------------------- approval by an operator with their JWT

-- The run is requested by whoever asked for the action, and a protected
-- environment's approval is given by the operator deciding.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'production',
  'git_sha', 'abcdef3'), :'agent', 'mcp') ->> 'handle' as h_op_prod \gset
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'qa',
  'git_sha', 'abcdef3'), :'agent', 'mcp') ->> 'handle' as h_op_qa \gset
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000d2", "email": "op@example.com", "app_metadata": {"role": "operator"}}';
select ops.decide_action(:'h_op_prod', true) \g /dev/null
select ops.decide_action(:'h_op_qa', true) \g /dev/null
reset role;
set local request.jwt.claims = '';
select is((select status || '/' || decided_by || '/' || coalesce(error, '-') from ops.action_requests
  where handle = :'h_op_prod'), 'done/op@example.com/-',
  'an operator (JWT) approves a deploy to a protected environment: done');
select is((select r.status || '/' || r.requested_by || '/' || ap.status || '/' || ap.decided_by
    from ops.action_requests a join ops.runs r using (run_id) join ops.approvals ap on ap.run_id = r.run_id
    where a.handle = :'h_op_prod'),
  'queued/' || :'agent' || '/approved/op@example.com', 'its run is requested by the agent and approved by the operator');
select is((select r.status || '/' || r.requested_by from ops.action_requests a join ops.runs r using (run_id)
    where a.handle = :'h_op_qa'), 'queued/' || :'agent',
  'an operator''s approval to an unprotected environment queues the run as requested by the agent');

-- ------------------------------------------------------------- rollbacks

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('rollback_release', jsonb_build_object('project_id', :'rp', 'env', 'prod'), :'agent', 'mcp',
  'cid-rollback-' || :'p') ->> 'handle' as h_rb \gset
create temp table approved_rb as select ops.decide_action(:'h_rb', true, null, :'bob') as r;
reset role;
set local request.jwt.claims = '';
select r ->> 'run_id' as run_rb from approved_rb \gset
select is((select r ->> 'status' || '/' || (r ->> 'run_status') from approved_rb), 'done/queued',
  'a rollback approval is done and queues a run');
select is((select r -> 'result' from approved_rb), jsonb_build_object('run_id', :'run_rb', 'status', 'queued',
    'correlation_id', 'cid-rollback-' || :'p', 'approval_required', false, 'duplicate', false),
  'its result is what queue_rollback answered');
select is((select row(kind, rollback_of, git_sha, env, requested_by, correlation_id,
    progress -> 'build' -> 'output' ->> 'image_digest')::text from ops.runs where run_id = :'run_rb'),
  row('rollback', :'s1', 'aaaaaaa', 'prod', :'agent', 'cid-rollback-' || :'p', 'sha256:111')::text,
  'a rollback to the earlier successful run, requested by the agent');
select is(pg_temp.audit(:'h_rb'), array[:'agent' || ':awaiting_approval:-', :'bob' || ':ok:' || :'run_rb'],
  'the rollback request and approval are audited');
-- to_run_id, in a protected environment: queued and approved by the decider.
update ops.projects set protected_envs = '{prod}' where project_id = :'rp';
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('rollback_release', jsonb_build_object('project_id', :'rp', 'env', 'prod', 'to_run_id', :'s2'),
  :'agent', 'mcp') ->> 'handle' as h_rb2 \gset
select ops.decide_action(:'h_rb2', true, 'roll back', :'bob') ->> 'run_id' as run_rb2 \gset
reset role;
set local request.jwt.claims = '';
select is((select row(a.status, r.kind, r.rollback_of, r.git_sha, r.status, ap.status, ap.decided_by, ap.comment)::text
    from ops.action_requests a join ops.runs r using (run_id) join ops.approvals ap on ap.run_id = r.run_id
    where a.handle = :'h_rb2'),
  row('done', 'rollback', :'s2', 'bbbbbbb', 'queued', 'approved', :'bob', 'roll back')::text,
  'a rollback to a named run of a protected environment is queued and approved by the decider');
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('rollback_release', jsonb_build_object('project_id', :'rp', 'env', 'prod', 'to_run_id', :'s1'),
  :'agent', 'mcp') ->> 'handle' as h_rb_op \gset
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000d2", "email": "op@example.com", "app_metadata": {"role": "operator"}}';
select ops.decide_action(:'h_rb_op', true) \g /dev/null
reset role;
set local request.jwt.claims = '';
select is((select status || '/' || coalesce(error, '-') from ops.action_requests where handle = :'h_rb_op'), 'done/-',
  'an operator (JWT) approves a rollback in a protected environment: done');

-- Nothing to roll back to: the action's refusal fails the handle.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('rollback_release', jsonb_build_object('project_id', :'rp', 'env', 'nohistory'), :'agent', 'mcp')
  ->> 'handle' as h_rb_fail \gset
create temp table failed_rb as select ops.decide_action(:'h_rb_fail', true, null, :'bob') as r;
reset role;
set local request.jwt.claims = '';
select is((select r - 'handle' - 'expires_at' - 'decided_at' - 'arguments' from failed_rb),
  jsonb_build_object('tool', 'rollback_release', 'status', 'failed', 'requested_by', :'agent', 'decided_by', :'bob',
    'error', format('invalid_state: %s/nohistory has no earlier successful run to roll back to', :'rp')),
  'an approved rollback with nothing to roll back to fails with the refusal''s message');
select is(pg_temp.h(:'h_rb_fail'), 'failed/' || :'bob' || '/-/' ||
  format('invalid_state: %s/nohistory has no earlier successful run to roll back to', :'rp'), 'stored failed, without a run');
select is((select count(*)::integer from ops.runs where project_id = :'rp' and env = 'nohistory'), 0, 'nothing was queued');
select is(pg_temp.audit(:'h_rb_fail'), array[:'agent' || ':awaiting_approval:-', :'bob' || ':failed:-'],
  'the failure is audited');
select is((select row(e.level, e.message, e.payload -> 'detail' ->> 'decision', e.payload -> 'detail' ->> 'error')::text
    from pg_temp.last_audit(:'h_rb_fail') e),
  row('warn', 'mcp rollback_release: failed', 'approved',
    format('invalid_state: %s/nohistory has no earlier successful run to roll back to', :'rp'))::text,
  'as a warning with the error');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, true, null, %L) $$, :'h_rb_fail', 'carol@example.com')),
  'PT409 invalid_state', 'a failed handle is not decided again');

-- ------------------------------------------- a failure undoes what was begun

-- The protected environment's approval is refused after queue_run has
-- inserted the run, its approval request and its events: all of it is undone
-- with the handle's failure.
create function pg_temp.refuse_approval() returns trigger language plpgsql as $$
begin
  -- A refusal (PTnnn) fails the handle; a server fault would be raised.
  raise exception using errcode = 'PT409', message = 'pgtap: approval refused';
end $$;
create trigger pgtap_refuse_approval before update on ops.runs for each row
  when (new.git_sha = 'badc0de' and new.status = 'queued') execute function pg_temp.refuse_approval();
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'production',
  'git_sha', 'badc0de'), :'agent', 'mcp', 'cid-undo-' || :'p') ->> 'handle' as h_undo \gset
select ops.decide_action(:'h_undo', true, null, :'bob') as r_undo \gset
reset role;
set local request.jwt.claims = '';
select is(:'r_undo'::jsonb ->> 'status' || '/' || (:'r_undo'::jsonb ->> 'error'), 'failed/pgtap: approval refused',
  'an action that fails part-way fails the handle with the error');
select is(pg_temp.h(:'h_undo'), 'failed/' || :'bob' || '/-/pgtap: approval refused', 'stored failed, without a run');
select is((select count(*)::integer from ops.runs where project_id = :'p' and git_sha = 'badc0de') || '/'
    || (select count(*) from ops.run_events where correlation_id = 'cid-undo-' || :'p' and run_id is not null),
  '0/0', 'the run queue_run had inserted, its approval request and its events are undone');
select is((select array_agg(e.message order by e.id) from ops.run_events e where e.correlation_id = 'cid-undo-' || :'p'),
  array['mcp deploy_release: awaiting_approval', 'mcp deploy_release: failed'], 'only the tool calls remain');

-- A redrive whose ids are not uuids fails when it is carried out.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('redrive_dead_letters', '{"ids": ["not-a-uuid"]}', :'agent', 'mcp') ->> 'handle' as h_bad_ids \gset
select ops.decide_action(:'h_bad_ids', true, null, :'bob') ->> 'status' as bad_ids_status \gset
reset role;
set local request.jwt.claims = '';
select is(:'bad_ids_status' || '/' || (select error from ops.action_requests where handle = :'h_bad_ids'),
  'failed/invalid input syntax for type uuid: "not-a-uuid"', 'a redrive of ids that are not uuids fails the handle');

-- ------------------------------------------------------------- redrive

create function pg_temp.dead(p_key text, p_error text) returns uuid language sql as $$
  insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
                                  correlation_id, status, attempts, last_error, dead_at, error_history)
  values ('pgtap', 'agent-' || p_key || '-' || gen_random_uuid(), 'pgtap.agent', 't', '1', '{}', 'cid-' || p_key,
          'failed', 4, p_error, now(), jsonb_build_array(jsonb_build_object('error', p_error)))
  returning id
$$;
select pg_temp.dead(:'p', 'HTTP 503') as dead1 \gset
select pg_temp.dead(:'p', 'HTTP 500 ' || :'p') as dead2 \gset
select pg_temp.dead(:'p', 'HTTP 502') as dead3 \gset
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('redrive_dead_letters', jsonb_build_object('ids', jsonb_build_array(:'dead1')), :'agent',
  'chatops') ->> 'handle' as h_redrive \gset
select is((select status from integration.outbox where id = :'dead1'), 'failed', 'a redrive request changes nothing yet');
create temp table redriven as select ops.decide_action(:'h_redrive', true, null, :'bob') as r;
select ops.request_action('redrive_dead_letters', jsonb_build_object('error_contains', 'HTTP 500 ' || :'p'), :'agent',
  'chatops') ->> 'handle' as h_redrive2 \gset
select ops.decide_action(:'h_redrive2', true, null, :'bob') -> 'result' as redrive2_result \gset
reset role;
set local request.jwt.claims = '';
select is((select r ->> 'status' from redriven), 'done', 'an approved redrive is done');
select is((select r -> 'result' from redriven), '{"matched": 1, "redriven": 1, "dry_run": false}'::jsonb,
  'its result: what integration.redrive_dead_letters redrove, not a dry run');
select is((select row(status, attempts, dead_at, jsonb_array_length(error_history))::text
  from integration.outbox where id = :'dead1'), row('pending', 0, null, 1)::text,
  'the dead letter is pending again, its attempts reset, its history kept');
select is((select row(filter, dry_run, matched, redriven)::text from integration.redrive_log
    where requested_by = format('%s (approved by %s)', :'agent', :'bob') and filter ? 'ids'),
  row(jsonb_build_object('ids', jsonb_build_array(:'dead1')), false, 1, 1)::text,
  'the redrive is logged for the requester and the approver');
select is((select run_id from ops.action_requests where handle = :'h_redrive'), null, 'a redrive has no run');
select is(pg_temp.audit(:'h_redrive'), array[:'agent' || ':awaiting_approval:-', :'bob' || ':ok:-'],
  'the redrive request and approval are audited without a run');
select is(:'redrive2_result'::jsonb || jsonb_build_object('dead2', (select status from integration.outbox where id = :'dead2'),
    'dead3', (select status from integration.outbox where id = :'dead3')),
  '{"matched": 1, "redriven": 1, "dry_run": false, "dead2": "pending", "dead3": "failed"}'::jsonb,
  'a redrive by error text redrives only what matches');

-- ------------------------------------------------------------- expiry

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'expiry', 'git_sha', 'abcdef1'),
  :'agent', 'mcp') ->> 'handle' as h_exp \gset
reset role;
set local request.jwt.claims = '';
update ops.action_requests set expires_at = now() - interval '1 second' where handle = :'h_exp';
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is(ops.get_action(:'h_exp') ->> 'status', 'expired', 'a handle past its expiry reads as expired');
select is(ops.decide_action(:'h_exp', true, null, :'bob'),
  jsonb_build_object('handle', :'h_exp', 'status', 'expired', 'refused', 'the handle expired before a decision'),
  'deciding an expired handle answers expired');
reset role;
set local request.jwt.claims = '';
select is(pg_temp.h(:'h_exp'), 'expired/-/-/-', 'the handle stays expired, undecided');
select is((select count(*)::integer from ops.runs where project_id = :'p' and env = 'expiry'), 0, 'nothing was queued');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, true, null, %L) $$, :'h_exp', :'bob')),
  'PT409 invalid_state', 'a second decision of an expired handle is invalid_state');
select is(pg_temp.refusal(format($$ select ops.decide_action(%L, false, null, %L) $$, :'h_exp', :'bob')),
  'PT409 invalid_state', 'a rejection too');
select is(ops.get_action(:'h_exp') ->> 'status', 'expired', 'and it reads as expired');
-- A short TTL from the settings.
update ops.settings set action_ttl_seconds = 60;
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'expiry', 'git_sha', 'abcdef2'),
  :'agent', 'mcp') ->> 'handle' as h_exp2 \gset
reset role;
set local request.jwt.claims = '';
update ops.settings set action_ttl_seconds = 3600;
select is((select expires_at from ops.action_requests where handle = :'h_exp2'), now() + interval '60 seconds',
  'a handle requested under a 60 s TTL expires after 60 s');
update ops.action_requests set expires_at = now() where handle = :'h_exp2';
select is(ops.decide_action(:'h_exp2', false, null, :'bob') ->> 'status', 'expired',
  'at its expiry it can no longer be decided, not even rejected');

-- ---------------------------------------------------------------- audit

-- Every handle this test requested: one request row (run_id null, the
-- requester, tool, outcome awaiting_approval), and one decision row per
-- decision (the decider; ok, refused or failed).
select is((select count(*)::integer from ops.action_requests a where a.requested_by = :'agent'
    and (select count(*) from ops.run_events e where e.payload -> 'detail' ->> 'handle' = a.handle
         and e.run_id is null and e.actor = a.requested_by and e.payload ->> 'tool' = a.tool
         and e.payload ->> 'outcome' = 'awaiting_approval' and e.correlation_id = a.correlation_id) = 1),
  (select count(*)::integer from ops.action_requests where requested_by = :'agent'),
  'every request is audited once, without a run, under the requester');
select is((select count(*)::integer from ops.action_requests a where a.requested_by = :'agent'
    and a.status in ('rejected', 'done', 'failed')
    and (select count(*) from ops.run_events e where e.payload -> 'detail' ->> 'handle' = a.handle
         and e.actor = a.decided_by and e.payload ->> 'tool' = a.tool and e.run_id is not distinct from a.run_id
         and e.payload ->> 'outcome' = case a.status when 'rejected' then 'refused' when 'done' then 'ok' else 'failed' end)
        = 1),
  (select count(*)::integer from ops.action_requests where requested_by = :'agent' and status in ('rejected', 'done', 'failed')),
  'every decision is audited once, under the decider, with its outcome');

-- ----------------------------------------------------------- record_tool_call

select 'agent-rtc:' || :'p' as caller \gset
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is(pg_temp.refusal($$ select ops.record_tool_call('', 'mcp', 'get_job', '{}', 'ok') $$),
  'PT422 validation_failed p_caller', 'an empty caller');
select is(pg_temp.refusal($$ select ops.record_tool_call(null, 'mcp', 'get_job', '{}', 'ok') $$),
  'PT422 validation_failed p_caller', 'no caller');
select is(pg_temp.refusal($$ select ops.record_tool_call(repeat('c', 201), 'mcp', 'get_job', '{}', 'ok') $$),
  'PT422 validation_failed p_caller', 'a caller over 200 characters');
select is(pg_temp.refusal(format($$ select ops.record_tool_call(%L, 'slack', 'get_job', '{}', 'ok') $$, :'caller')),
  'PT422 validation_failed p_via', 'a channel that is not one');
select is(pg_temp.refusal(format($$ select ops.record_tool_call(%L, null, 'get_job', '{}', 'ok') $$, :'caller')),
  'PT422 validation_failed p_via', 'no channel');
select is(pg_temp.refusal(format($$ select ops.record_tool_call(%L, 'mcp', 'Get Job', '{}', 'ok') $$, :'caller')),
  'PT422 validation_failed p_tool', 'a tool that is not a name');
select is(pg_temp.refusal(format($$ select ops.record_tool_call(%L, 'mcp', null, '{}', 'ok') $$, :'caller')),
  'PT422 validation_failed p_tool', 'no tool');
select is(pg_temp.refusal(format($$ select ops.record_tool_call(%L, 'mcp', 'get_job', '{}', 'maybe') $$, :'caller')),
  'PT422 validation_failed p_outcome', 'an outcome that is not one');
select is(pg_temp.refusal(format($$ select ops.record_tool_call(%L, 'mcp', 'get_job', '{}', null) $$, :'caller')),
  'PT422 validation_failed p_outcome', 'no outcome');
select is(pg_temp.refusal(format($$ select ops.record_tool_call(%L, 'mcp', 'get_job', '[1]', 'ok') $$, :'caller')),
  'PT422 validation_failed p_arguments', 'arguments that are not an object');
select is((select count(*)::integer from ops.run_events where actor = :'caller'), 0, 'refused calls wrote nothing');
select ops.record_tool_call(:'caller', 'mcp', 'get_job', '{"job_id": "x"}', 'ok', '{"found": false}',
  'cid-rtc-' || :'p') as ev_ok \gset
select ops.record_tool_call(:'caller', 'chatops', 'approve', '{}', 'refused', '{"reason": "not an approver"}') as ev_refused \gset
select ops.record_tool_call(:'caller', 'console', 'smoke_test', null, 'failed', null) as ev_failed \gset
select ops.record_tool_call(:'caller', 'sql', 'deploy_release', '{}', 'awaiting_approval') as ev_waiting \gset
select ops.record_tool_call(:'caller', 'mcp', 'get_run', '{}', 'ok', '{}', null, 'run-nosuchrun') as ev_guess \gset
select ops.record_tool_call(:'caller', 'mcp', 'get_run', '{}', 'ok', '{}', null, :'run_stg') as ev_run \gset
reset role;
set local request.jwt.claims = '';
select is((select row(run_id, level, message, phase, actor, correlation_id, payload)::text from ops.run_events where id = :ev_ok),
  row(null, 'info', 'mcp get_job: ok', null, :'caller', 'cid-rtc-' || :'p', jsonb_build_object('via', 'mcp', 'tool', 'get_job',
    'arguments', '{"job_id": "x"}'::jsonb, 'outcome', 'ok', 'detail', '{"found": false}'::jsonb))::text,
  'record_tool_call writes one audit row: no run, the caller as actor, what was called and how it went');
select is((select array_agg(level || ' ' || message order by id) from ops.run_events
    where id in (:ev_refused, :ev_failed, :ev_waiting)),
  array['warn chatops approve: refused', 'warn console smoke_test: failed', 'info sql deploy_release: awaiting_approval'],
  'refused and failed calls are warnings');
select is((select (payload -> 'arguments') || (payload -> 'detail') from ops.run_events where id = :ev_failed), '{}'::jsonb,
  'no arguments or detail: empty objects');
select ok((select correlation_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
  from ops.run_events where id = :ev_refused), 'without a correlation id the call gets a new UUID');
select is((select run_id from ops.run_events where id = :ev_guess), null, 'an unknown run id is audited without a run');
select is((select run_id from ops.run_events where id = :ev_run), :'run_stg', 'a known run id puts the call in the run''s trail');

-- ------------------------------------------------------------- the reads

insert into observability.jobs (source, job_type, payload, correlation_id)
values ('pgtap', :'p' || '.agent', '{"k": 1}', 'cid-job-' || :'p') returning id as job \gset
insert into observability.services (name, url, body_match) values (:'p' || '-probe', 'https://probe.example.com/health', 'ok')
returning id as service \gset
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000d2", "email": "op@example.com", "app_metadata": {"role": "operator"}}';
create temp table reads as select
  pg_temp.try(format('select observability.get_job(%L)', :'job')) as job,
  observability.list_recent_jobs(20, null, :'p' || '.agent') as jobs,
  observability.list_recent_jobs(20, 'succeeded', :'p' || '.agent') as jobs_succeeded,
  ops.list_runs(200, :'p') as runs,
  ops.list_runs(200, :'p', 'awaiting_approval') as runs_waiting,
  ops.get_run(:'run_prod') as run,
  observability.get_service_probe(:'p' || '-probe') as probe;
select is(pg_temp.refusal(format($$ select observability.get_job(%L) $$, gen_random_uuid())), 'PT404 not_found',
  'get_job of an unknown job');
select is(pg_temp.refusal(format($$ select observability.list_recent_jobs(201) $$)), 'PT422 validation_failed limit',
  'list_recent_jobs over 200');
select is(pg_temp.refusal(format($$ select observability.list_recent_jobs(null) $$)), 'PT422 validation_failed limit',
  'list_recent_jobs without a limit');
select is(pg_temp.refusal(format($$ select observability.list_recent_jobs(20, 'bogus') $$)), 'PT422 validation_failed status',
  'list_recent_jobs of a status that is not one');
select is(pg_temp.refusal(format($$ select ops.list_runs(201) $$)), 'PT422 validation_failed limit', 'list_runs over 200');
select is(pg_temp.refusal(format($$ select ops.get_run('run-nosuchrun') $$)), 'PT404 not_found', 'get_run of an unknown run');
select is(pg_temp.refusal(format($$ select observability.get_service_probe(%L) $$, :'p' || '-nosuch')), 'PT404 not_found',
  'get_service_probe of an unknown service');
reset role;
set local request.jwt.claims = '';
grant select on reads to authenticated;

select is((select job ->> 'error' from reads), null, 'get_job answers for a job that exists');
select is((select array_agg(k order by k) from reads, jsonb_object_keys(job) k),
  array['attempts', 'available_at', 'correlation_id', 'created_at', 'events', 'finished_at', 'id', 'job_type',
    'last_error', 'locked_by', 'max_attempts', 'priority', 'result', 'source', 'status', 'updated_at'],
  'get_job: the job''s state, without its payload or lease');
select is((select row(job ->> 'id', job ->> 'source', job ->> 'job_type', job ->> 'status', job ->> 'correlation_id')::text
  from reads), row(:'job', 'pgtap', :'p' || '.agent', 'queued', 'cid-job-' || :'p')::text, 'the job asked for');
select is((select jsonb_array_length(job -> 'events') || '/' || (job -> 'events' -> 0 ->> 'to_status') || '/'
    || (job -> 'events' -> 0 ? 'job_id')::text from reads), '1/queued/false', 'with its events, newest first');
select is((select jsonb_array_length(jobs) || '/' || (jobs -> 0 ->> 'id') from reads), '1/' || :'job',
  'list_recent_jobs of a job type');
select is((select array_agg(k order by k) from reads, jsonb_object_keys(jobs -> 0) k),
  array['attempts', 'correlation_id', 'created_at', 'finished_at', 'id', 'job_type', 'last_error', 'source', 'status'],
  'each job in brief');
select is((select jobs_succeeded from reads), '[]'::jsonb, 'of a status: none succeeded');
select is((select jsonb_array_length(runs) from reads), (select count(*)::integer from ops.runs where project_id = :'p'),
  'list_runs of a project lists its runs');
select is((select array_agg(x ->> 'run_id' order by n) from reads, jsonb_array_elements(runs) with ordinality e(x, n)),
  (select array_agg(run_id order by queued_at desc) from ops.runs where project_id = :'p'), 'newest first');
select is((select array_agg(k order by k) from reads, jsonb_object_keys(runs -> 0) k),
  array['correlation_id', 'env', 'error', 'finished_at', 'git_ref', 'git_sha', 'kind', 'phase', 'project_id',
    'queued_at', 'requested_by', 'run_id', 'status'], 'each run in brief');
select is((select runs_waiting from reads), '[]'::jsonb, 'of a status: none of this project awaits approval');
select is((select run ->> 'run_id' || '/' || (run ->> 'status') || '/' || (run ? 'lease_token')::text || '/'
    || (run ? 'progress')::text from reads), :'run_prod' || '/queued/false/false',
  'get_run: the run, without its lease token or progress');
select is((select array(select x ->> 'level' || ':' || (x ->> 'message') from reads, jsonb_array_elements(run -> 'events') x)),
  pg_temp.events(:'run_prod'), 'with its events in order');
select is((select array_agg(k order by k) from reads, jsonb_array_elements(run -> 'events') x, jsonb_object_keys(x) k
    where x ->> 'message' like 'Approved%'), array['actor', 'at', 'level', 'message', 'phase'], 'each event in brief');
select is((select run -> 'artifacts' from reads), '[]'::jsonb, 'and its artifacts (none yet)');
select is((select probe from reads), jsonb_build_object('id', :service, 'name', :'p' || '-probe',
    'url', 'https://probe.example.com/health', 'method', 'GET', 'expected_status', 200, 'body_match', 'ok',
    'timeout_ms', 5000), 'get_service_probe: the registered probe');

select * from finish();
rollback;
