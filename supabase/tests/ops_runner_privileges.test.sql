-- ops runner: who may read and call what. Every ops runner table against
-- anon, a signed-in user who is not an operator, an operator and the service
-- role (RLS: operators and the service role read, nobody writes but through
-- the RPCs); every RPC against the same four (operators and the service role
-- request and decide; only the service role runs runs and appends to the
-- trail); run_events is append-only; pg_cron's ops-runner-scheduler.
begin;
-- ops.runs is held against other writers and row locks until the rollback
-- (readers go on), and other sessions' runs that have not ended are parked,
-- so the claims here take this test's runs.
lock table ops.runs in exclusive mode;
update ops.runs set status = 'cancelled', finished_at = now(), lease_token = null, lease_expires_at = null
where status in ('awaiting_approval', 'queued', 'claimed', 'running');
set search_path = extensions, public;
select plan(137);

select 'pgtap-' || substr(md5(random()::text), 1, 10) as p \gset
insert into ops.projects (project_id, name, repository) values (:'p', 'pgTAP ops runner privileges', 'example/switchyard');

-- At least one row in every table, so "sees nothing" means RLS, not emptiness.
select ops.queue_run(:'p', 'production', 'abcdef1', 'refs/heads/main', 'alice@example.com') ->> 'run_id' as r_prod \gset
select ops.queue_run(:'p', 'dev', 'abcdef1', 'refs/heads/main') ->> 'run_id' as r_dev \gset
select c ->> 'lease_token' as t_dev from ops.claim_next_run('pgtap-worker') c \gset
select ops.start_phase(:'r_dev', :'t_dev', 'build') \g /dev/null
select ops.complete_phase(:'r_dev', :'t_dev', 'build', '{"image_digest": "sha256:abc"}',
  '[{"kind": "image", "name": "ghcr.io/example/switchyard:abcdef1", "digest": "sha256:abc"}]') \g /dev/null

create temp table relations (name text primary key);
insert into relations values ('ops.settings'), ('ops.projects'), ('ops.runs'), ('ops.run_events'), ('ops.artifacts'),
  ('ops.approvals'), ('ops.environment_locks'), ('ops.runner_signal');
grant select on relations to anon, authenticated, service_role;

-- What the current role sees of a relation: 'denied', 'nothing' or 'rows'.
create function pg_temp.sees(p_relation text) returns text language plpgsql as $$
declare v_any boolean;
begin
  execute format('select exists (select 1 from %s)', p_relation) into v_any;
  return case when v_any then 'rows' else 'nothing' end;
exception when insufficient_privilege then
  return 'denied';
end $$;
\ir lib/call.sql

-- Every RPC with a probe that passes the privilege and operator checks and is
-- then refused by its own validation (so nothing is written): what a caller
-- who may call it gets. runner: the runner's calls (the service role only).
create temp table rpcs (name text primary key, probe text not null, allowed text not null, runner boolean not null);
insert into rpcs values
  ('ops.queue_run', $$ select ops.queue_run('pgtap-no-such-project', 'dev', 'abcdef1', 'refs/heads/main') $$,
   'PT422 validation_failed p_project_id', false),
  ('ops.queue_rollback', $$ select ops.queue_rollback('pgtap-no-such-project', 'dev') $$,
   'PT422 validation_failed p_project_id', false),
  ('ops.requeue_run', $$ select ops.requeue_run('run-nosuchrun') $$, 'PT422 validation_failed p_run_id', false),
  ('ops.approve_run', $$ select ops.approve_run('run-nosuchrun', p_approved_by => 'bob@example.com') $$,
   'PT422 validation_failed p_run_id', false),
  ('ops.reject_run', $$ select ops.reject_run('run-nosuchrun', p_rejected_by => 'bob@example.com') $$,
   'PT422 validation_failed p_run_id', false),
  ('ops.cancel_run', $$ select ops.cancel_run('run-nosuchrun', 'why') $$, 'PT422 validation_failed p_run_id', false),
  ('ops.lock_environment', $$ select ops.lock_environment('pgtap-no-such-project', 'dev', 'why') $$,
   'PT422 validation_failed p_project_id', false),
  ('ops.unlock_environment', $$ select ops.unlock_environment('pgtap-no-such-project', 'dev') $$,
   'PT409 invalid_state', false),
  ('ops.append_run_event', $$ select ops.append_run_event('run-nosuchrun', 'info', 'x') $$,
   'PT422 validation_failed p_run_id', true),
  ('ops.claim_next_run', $$ select ops.claim_next_run('') $$, 'PT422 validation_failed p_worker_id', true),
  ('ops.start_phase', $$ select ops.start_phase('run-nosuchrun', gen_random_uuid(), 'build') $$,
   'PT422 validation_failed p_run_id', true),
  ('ops.save_progress', $$ select ops.save_progress('run-nosuchrun', gen_random_uuid(), 'build', '{}') $$,
   'PT422 validation_failed p_run_id', true),
  ('ops.heartbeat_run', $$ select ops.heartbeat_run('run-nosuchrun', gen_random_uuid()) $$,
   'PT422 validation_failed p_run_id', true),
  ('ops.complete_phase', $$ select ops.complete_phase('run-nosuchrun', gen_random_uuid(), 'build') $$,
   'PT422 validation_failed p_run_id', true),
  ('ops.yield_run', $$ select ops.yield_run('run-nosuchrun', gen_random_uuid()) $$, 'PT422 validation_failed p_run_id', true),
  ('ops.finish_run', $$ select ops.finish_run('run-nosuchrun', 'failed') $$, 'PT422 validation_failed p_run_id', true),
  ('ops.wake_runner_if_due', $$ select ops.wake_runner_if_due('Not a reason') $$, 'PT422 validation_failed p_reason', true);
grant select on rpcs to anon, authenticated, service_role;

-- anon: nothing at all.
set local role anon;
set local request.jwt.claims = '{"role": "anon"}';
select is(pg_temp.sees(name), 'denied', 'anon cannot read ' || name) from relations order by name;
select is(pg_temp.call(probe), '42501', 'anon cannot call ' || name) from rpcs order by name;
reset role;

-- A signed-in user who is not an operator: no rows; requests are forbidden,
-- the runner's calls are not even executable.
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000c1", "email": "user@example.com", "app_metadata": {"provider": "email"}}';
select is(pg_temp.sees(name), 'nothing', 'a user who is not an operator sees no rows of ' || name)
from relations order by name;
select is(pg_temp.call(probe), 'PT403 forbidden', 'a user who is not an operator is refused ' || name)
from rpcs where not runner order by name;
select is(pg_temp.call(probe), '42501', 'a user who is not an operator cannot call ' || name)
from rpcs where runner order by name;
reset role;

-- An operator: reads everything, requests and decides, runs nothing.
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000c2", "email": "op@example.com", "app_metadata": {"role": "operator"}}';
select is(pg_temp.sees(name), 'rows', 'an operator reads ' || name) from relations order by name;
select is(pg_temp.call(probe), allowed, 'an operator may call ' || name) from rpcs where not runner order by name;
select is(pg_temp.call(probe), '42501', 'an operator cannot call ' || name) from rpcs where runner order by name;
select is(pg_temp.call(format($$ select ops.approve_run(%L, 'ok to ship') $$, :'r_prod')), 'ok',
  'an operator approves another person''s run');
select is(pg_temp.call(format($$ select ops.lock_environment(%L, 'dev', 'incident') $$, :'p')), 'ok',
  'an operator freezes an environment');
select is(pg_temp.call(format($$ select ops.unlock_environment(%L, 'dev') $$, :'p')), 'ok', 'and unfreezes it');
select is(pg_temp.call(format($$ update ops.runs set status = 'success' where run_id = %L $$, :'r_dev')), '42501',
  'an operator changes runs only through the RPCs');
select is(pg_temp.call(format($$ insert into ops.projects (project_id, name, repository) values (%L, 'x', 'o/r') $$,
  :'p' || '-op')), '42501', 'an operator cannot register projects');
select is(pg_temp.call($$ update ops.settings set max_runners = 64 $$), '42501', 'nor change the settings');
select is(pg_temp.call($$ update ops.runner_signal set wake_pending_until = null $$), '42501', 'nor the runner signal');
reset role;
set local request.jwt.claims = '';
select is((select status || '/' || decided_by from ops.approvals where run_id = :'r_prod'), 'approved/op@example.com',
  'the operator''s approval is recorded under their JWT email');

-- service_role: reads everything; calls every RPC; runs a run end to end.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is(pg_temp.sees(name), 'rows', 'service_role reads ' || name) from relations order by name;
select is(pg_temp.call(probe), allowed, 'service_role may call ' || name) from rpcs order by name;
select is(pg_temp.call(format($$ select ops.append_run_event(%L, 'info', 'agent note', '{}', null, 'agent:pgtap') $$, :'r_dev')),
  'ok', 'service_role appends to a run''s trail');
select is(pg_temp.call(format($$ select ops.save_progress(%L, %L, 'build', '{}') $$, :'r_dev', :'t_dev')),
  'PT409 invalid_state', 'service_role reaches the runner''s state checks');
select is(pg_temp.call(format($$ select ops.start_phase(%L, %L, 'deploy') $$, :'r_dev', :'t_dev')), 'ok',
  'service_role starts a phase');
select is(pg_temp.call(format($$ select ops.save_progress(%L, %L, 'deploy', '{"deployment_id": 1}') $$, :'r_dev', :'t_dev')),
  'ok', 'saves its progress');
select is(pg_temp.call(format($$ select ops.heartbeat_run(%L, %L) $$, :'r_dev', :'t_dev')), 'ok', 'renews the lease');
select is(pg_temp.call(format($$ select ops.complete_phase(%L, %L, 'deploy') $$, :'r_dev', :'t_dev')), 'ok',
  'completes the phase');
select is(pg_temp.call(format($$ select ops.yield_run(%L, %L) $$, :'r_dev', :'t_dev')), 'ok', 'yields the run');
select is(pg_temp.call(format($$ select ops.cancel_run(%L, 'not today', 'alice@example.com') $$, :'r_prod')), 'ok',
  'service_role cancels for a person');
select is((select c ->> 'run_id' from ops.claim_next_run('pgtap-worker-2') c), :'r_dev', 'claims it again');
select is(pg_temp.call(format($$ select ops.finish_run(%L, 'failed', p_lease_token => %L, p_error => 'pgtap') $$, :'r_dev',
  (select lease_token from ops.runs where run_id = :'r_dev'))), 'ok', 'and finishes it');
select is(pg_temp.call(format($$ select ops.requeue_run(%L, 'alice@example.com') $$, :'r_dev')), 'ok',
  'service_role requeues for a person');
select is(pg_temp.call(format($$ insert into ops.projects (project_id, name, repository) values (%L, 'x', 'o/r') $$,
  :'p' || '-svc')), 'ok', 'service_role registers projects (their CHECK runs with its rights)');
select is(pg_temp.call(format($$ insert into ops.projects (project_id, name, repository, phases) values (%L, 'x', 'o/r',
  '[{"name": "Build", "provider": "github-actions"}]') $$, :'p' || '-bad')), '23514 new row for relation "projects" violates check constraint "projects_phases_check"',
  'and the phases are checked');
select is(pg_temp.call(format($$ update ops.projects set protected_envs = '{production,staging}' where project_id = %L $$,
  :'p' || '-svc')), 'ok', 'and maintains them');
select is(pg_temp.call($$ update ops.settings set max_runners = max_runners $$), 'ok', 'service_role maintains the settings');
select is(pg_temp.call(format($$ update ops.runs set status = 'success' where run_id = %L $$, :'r_dev')), '42501',
  'service_role changes runs only through the RPCs');
select is(pg_temp.call(format($$ insert into ops.run_events (run_id, level, message, correlation_id) values (%L, 'info', 'x', 'x') $$,
  :'r_dev')), '42501', 'and writes events only through them');
select is(pg_temp.call($$ update ops.runner_signal set wake_pending_until = null $$), '42501',
  'the runner signal is the database''s own');
select is(pg_temp.call(format($$ delete from ops.run_events where run_id = %L $$, :'r_dev')), '42501',
  'service_role may not delete run events');
reset role;
set local request.jwt.claims = '';

-- run_events is append-only, even for the superuser.
select throws_ok(format($$ update ops.run_events set message = 'rewritten' where run_id = %L $$, :'r_dev'),
  'PT403', 'forbidden', 'UPDATE on run_events is refused');
select throws_ok(format($$ delete from ops.run_events where run_id = %L $$, :'r_dev'),
  'PT403', 'forbidden', 'DELETE on run_events is refused');
select throws_ok($$ truncate ops.run_events $$, 'PT403', 'forbidden', 'TRUNCATE on run_events is refused');

-- The catalog.
select is_empty($$
  select c.oid::regclass::text from pg_class c
  where c.relnamespace = 'ops'::regnamespace and c.relkind = 'r' and not c.relrowsecurity
$$, 'every ops table has row level security');
select is_empty($$
  select c.oid::regclass::text || ' ' || p.privilege from pg_class c
  cross join (values ('insert'), ('update'), ('delete'), ('truncate')) p(privilege)
  where c.relnamespace = 'ops'::regnamespace and c.relkind in ('r', 'v')
    and has_table_privilege('authenticated', c.oid, p.privilege)
$$, 'authenticated may write no ops table');
select set_eq($$
  select c.oid::regclass::text || ' ' || p.privilege from pg_class c
  cross join (values ('insert'), ('update'), ('delete'), ('truncate')) p(privilege)
  where c.relnamespace = 'ops'::regnamespace and c.relkind in ('r', 'v')
    and has_table_privilege('service_role', c.oid, p.privilege)
$$, array['ops.projects insert', 'ops.projects update', 'ops.projects delete', 'ops.settings update'],
  'service_role writes only projects and settings directly');
select set_eq($$
  select p.proname::text from pg_proc p
  where p.pronamespace = 'ops'::regnamespace and has_function_privilege('authenticated', p.oid, 'execute')
$$, array['is_operator', 'get_queue_depth', 'get_trace', 'queue_run', 'queue_rollback', 'requeue_run', 'approve_run',
    'reject_run', 'cancel_run', 'lock_environment', 'unlock_environment',
    -- agents and chat (agent_actions.test.sql holds their rules)
    'decide_action', 'get_action', 'list_runs', 'get_run', 'whoami',
    -- the console's overview (ops_console.test.sql)
    'console_overview'],
  'authenticated may call the operator check, the reads, and the requests and decisions');
select set_eq($$
  select p.proname::text from pg_proc p
  where p.pronamespace = 'ops'::regnamespace and has_function_privilege('service_role', p.oid, 'execute')
$$, $$ select substr(name, 5) from rpcs union all values ('is_operator'), ('get_queue_depth'), ('get_trace'), ('valid_phases'),
      ('request_action'), ('record_tool_call'), ('decide_action'), ('get_action'), ('list_runs'), ('get_run'), ('whoami'),
      ('console_overview') $$,
  'service_role may call those, the runner''s calls and the projects'' phase check, no internal helper');
select ok(not has_function_privilege('service_role', 'ops.wake_runner(text)', 'execute')
  and not has_function_privilege('service_role', 'ops.end_run(ops.runs, text, text, jsonb, text)', 'execute')
  and not has_function_privilege('service_role', 'ops.actor(text, text)', 'execute'),
  'waking, ending and naming the actor are internal');
select is((select schedule || ' ' || command || ' ' || active::text from cron.job where jobname = 'ops-runner-scheduler'),
  '* * * * * select ops.wake_runner_if_due() true', 'pg_cron''s ops-runner-scheduler runs every minute');

select * from finish();
rollback;
