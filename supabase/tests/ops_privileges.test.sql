-- Who may read and call what: operational data (the integration bus, every
-- observability table, the ops views and RPCs) is for operators (JWT
-- app_metadata.role = 'operator') and the service role. Every table and RPC
-- against anon, a signed-up user who is not an operator, an operator, and
-- service_role; and the catalog rules for schemas observability and ops.
begin;
set search_path = extensions, public;
select plan(146);

select 'pgtap' || substr(md5(random()::text), 1, 10) as tag \gset

-- At least one row everywhere, so "sees nothing" means RLS, not emptiness.
select integration.ingest_event('odoo', 'k-' || :'tag', 'expense.submitted', 'hr.expense', '1', '{}', 'cid-' || :'tag',
  'ipai-hmac', 'key_test');
select integration.redrive_outbox('pgtap', p_ids => array[gen_random_uuid()]);
select observability.enqueue_job('pgtap', :'tag' || '.a', correlation_id => 'cid-' || :'tag') ->> 'job_id' as j_queued \gset
select observability.enqueue_job('pgtap', :'tag' || '.b') ->> 'job_id' as j_leased \gset
select observability.enqueue_job('pgtap', :'tag' || '.c') ->> 'job_id' as j_fail \gset
select observability.enqueue_job('pgtap', :'tag' || '.d') ->> 'job_id' as j_cancel \gset
select observability.enqueue_job('pgtap', :'tag' || '.f') ->> 'job_id' as j_start \gset
select observability.enqueue_job('pgtap', :'tag' || '.e', max_attempts => 1) ->> 'job_id' as j_dead \gset
select observability.fail_job(:'j_dead', 'boom');
select (c ->> 'lease_token') as t_leased from observability.claim_job('w', array[:'tag' || '.b']) c \gset
insert into observability.services (name, url) values (:'tag', 'https://example.com/') returning id as svc \gset
select observability.record_health(:svc, 'healthy', 10, 200, null, 'cid-' || :'tag');
insert into observability.job_metrics (hour, job_type, enqueued) values (date_trunc('hour', now()), :'tag' || '.a', 1);
insert into observability.service_metrics (hour, service_id, samples) values (date_trunc('hour', now()), :svc, 1);

create temp table relations (name text primary key);
insert into relations values
  ('observability.settings'), ('observability.jobs'), ('observability.job_runs'), ('observability.job_events'),
  ('observability.services'), ('observability.service_health'), ('observability.job_metrics'),
  ('observability.service_metrics'), ('observability.dead_jobs'), ('ops.events'), ('ops.trace_rows'),
  ('integration.outbox'), ('integration.event_log'), ('integration.redrive_log');
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
-- What happens when the current role makes a call: 'ok', or SQLSTATE and message.
create function pg_temp.call(p_sql text) returns text language plpgsql as $$
declare v_state text; v_message text;
begin
  execute p_sql;
  return 'ok';
exception when others then
  get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
  return case when v_state = '42501' then '42501' else v_state || ' ' || v_message end;
end $$;
-- The same, undone whatever happened (so the service role's call below finds
-- the job as it was).
create function pg_temp.call_undone(p_sql text) returns text language plpgsql as $$
declare v_result text;
begin
  v_result := pg_temp.call(p_sql);
  raise exception using errcode = 'PTUND', message = v_result;
exception when sqlstate 'PTUND' then
  return sqlerrm;
end $$;

-- The RPCs, each with a call that succeeds for the service role. operators:
-- operators may call it too (the reads, and the console's requeue and cancel).
create temp table rpcs (name text primary key, call text not null, operators boolean not null);
insert into rpcs values
  ('observability.enqueue_job', format($$ select observability.enqueue_job('pgtap', %L) $$, :'tag' || '.x'), false),
  ('observability.claim_job', format($$ select observability.claim_job('w', array[%L]) $$, :'tag' || '.x'), false),
  ('observability.start_job', format($$ select observability.start_job(%L, 'w') $$, :'j_start'), false),
  ('observability.complete_job', format($$ select observability.complete_job(%L) $$, :'j_queued'), false),
  ('observability.fail_job', format($$ select observability.fail_job(%L, 'x') $$, :'j_fail'), false),
  ('observability.cancel_job', format($$ select observability.cancel_job(%L, 'why', 'who') $$, :'j_cancel'), true),
  ('observability.heartbeat_job', format($$ select observability.heartbeat_job(%L, %L) $$, :'j_leased', :'t_leased'), false),
  ('observability.requeue_job', format($$ select observability.requeue_job(%L, 'who') $$, :'j_dead'), true),
  ('observability.record_health', format($$ select observability.record_health(%s, 'healthy', 1) $$, :svc), false),
  ('observability.record_health_batch', format($$ select observability.record_health_batch('[{"service_id": %s,
     "status": "healthy", "response_time_ms": 1}]', 'sweep') $$, :svc), false),
  ('observability.list_services_to_probe', $$ select * from observability.list_services_to_probe(1) $$, false),
  ('integration.raise_alert', format($$ select integration.raise_alert('test', %L, 'x', '{}') $$, :'tag'), false),
  ('observability.get_health_summary', $$ select * from observability.get_health_summary() $$, true),
  ('ops.get_queue_depth', $$ select * from ops.get_queue_depth() $$, true),
  ('ops.get_trace', format($$ select * from ops.get_trace(%L) $$, 'cid-' || :'tag'), true),
  ('integration.outbox_stats', $$ select integration.outbox_stats() $$, true),
  ('integration.event_types_last_hour', $$ select * from integration.event_types_last_hour() $$, true),
  ('integration.failures_needing_attention', $$ select * from integration.failures_needing_attention(1) $$, true);
grant select on rpcs to anon, authenticated, service_role;

-- anon: nothing at all.
set local role anon;
select is(pg_temp.sees(name), 'denied', 'anon cannot read ' || name) from relations order by name;
select is(pg_temp.call(call), '42501', 'anon cannot call ' || name) from rpcs order by name;
reset role;

-- A signed-up user who is not an operator: no rows, no RPC; the operators' RPCs
-- are forbidden, the others not even executable.
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "user-1", "app_metadata": {"provider": "email"}}';
select is(pg_temp.sees(name), 'nothing', 'a user who is not an operator sees no rows of ' || name)
from relations order by name;
select is(pg_temp.call(call), '42501', 'a user who is not an operator cannot call ' || name)
from rpcs where not operators order by name;
select is(pg_temp.call(call), 'PT403 forbidden', 'a user who is not an operator is refused ' || name)
from rpcs where operators order by name;
reset role;

-- An operator: reads everything, changes nothing but through the console's
-- requeue and cancel.
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "user-2", "app_metadata": {"role": "operator"}}';
select is(pg_temp.sees(name), 'rows', 'an operator reads ' || name) from relations order by name;
select is(pg_temp.call(call), '42501', 'an operator cannot call ' || name) from rpcs where not operators order by name;
select is(pg_temp.call_undone(call), 'ok', 'an operator may call ' || name) from rpcs where operators order by name;
select is(pg_temp.call($$ update observability.settings set lease_seconds = 30 $$), '42501',
  'an operator cannot change the settings');
select is(pg_temp.call($$ insert into observability.services (name, url) values ('x', 'https://x') $$), '42501',
  'an operator cannot register services');
reset role;

-- service_role: everything, through the RPCs.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is(pg_temp.sees(name), 'rows', 'service_role reads ' || name) from relations order by name;
select is(pg_temp.call(call), 'ok', 'service_role may call ' || name) from rpcs order by name;
select is(pg_temp.call(format($$ insert into observability.services (name, url) values (%L, 'https://y.example.com')
  $$, :'tag' || '-y')), 'ok', 'service_role registers services');
select is(pg_temp.call($$ update observability.settings set lease_seconds = lease_seconds $$), 'ok',
  'service_role maintains the settings');
select is(pg_temp.call(format($$ update observability.jobs set status = 'succeeded' where id = %L $$, :'j_queued')),
  '42501', 'service_role changes jobs only through the RPCs');
select is(pg_temp.call($$ insert into observability.service_health (service_id, status) values (1, 'healthy') $$),
  '42501', 'and records health only through the RPCs');
reset role;

-- The operator check reads the verified claims PostgREST sets, nothing else.
set local role authenticated;
set local request.jwt.claims = '{"role": "operator", "app_metadata": {"role": "admin"}}';
select is(ops.is_operator(), false, 'a top-level role claim does not make an operator');
set local request.jwt.claims = '';
select is(ops.is_operator(), false, 'no claims: not an operator');
reset role;

-- Schemas and catalog rules.
select ok(not has_schema_privilege('anon', 'observability', 'usage') and not has_schema_privilege('anon', 'ops', 'usage'),
  'anon may not use schemas observability and ops');
select ok(has_schema_privilege('authenticated', 'observability', 'usage') and has_schema_privilege('service_role', 'ops', 'usage'),
  'authenticated and service_role may');
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.pronamespace in ('observability'::regnamespace, 'ops'::regnamespace)
    and not coalesce(p.proconfig @> array['search_path=""'], false)
$$, 'every observability and ops function pins search_path to empty');
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.pronamespace in ('observability'::regnamespace, 'ops'::regnamespace, 'integration'::regnamespace)
    and has_function_privilege('anon', p.oid, 'execute')
$$, 'no observability, ops or integration function is executable by anon');
-- The ops runner's functions in schema ops have their exact lists in
-- ops_runner_privileges.test.sql; here, the control plane's.
create temp table ops_runner_functions as
  select p.oid from pg_proc p where p.pronamespace = 'ops'::regnamespace
    and p.proname not in ('is_operator', 'require_operator', 'get_queue_depth', 'get_trace');
grant select on ops_runner_functions to anon, authenticated, service_role;
select set_eq($$
  select p.pronamespace::regnamespace || '.' || p.proname from pg_proc p
  where p.pronamespace in ('observability'::regnamespace, 'ops'::regnamespace)
    and has_function_privilege('authenticated', p.oid, 'execute')
    and p.oid not in (select oid from ops_runner_functions)
$$, array['ops.is_operator', 'observability.get_health_summary', 'ops.get_queue_depth', 'ops.get_trace',
    -- the agents' reads (20261124070000_agent_actions.sql; agent_actions.test.sql)
    'observability.get_job', 'observability.list_recent_jobs', 'observability.get_service_probe',
    -- the console's requeue and cancel (20261124090000_ops_console.sql; ops_console.test.sql)
    'observability.requeue_job', 'observability.cancel_job'],
  'authenticated may call only the operator check, the read RPCs and the console''s requeue and cancel');
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.pronamespace in ('observability'::regnamespace, 'ops'::regnamespace)
    and has_function_privilege('service_role', p.oid, 'execute') and not p.prosecdef
    and p.oid not in ('ops.is_operator()'::regprocedure, 'ops.whoami()'::regprocedure)
$$, 'every function service_role may call is SECURITY DEFINER (but the invoker-side operator check and whoami)');
select set_eq($$
  select p.pronamespace::regnamespace || '.' || p.proname from pg_proc p
  where p.pronamespace in ('observability'::regnamespace, 'ops'::regnamespace)
    and has_function_privilege('service_role', p.oid, 'execute')
    and p.oid not in (select oid from ops_runner_functions)
$$, $$ select name from rpcs where name not like 'integration.%' union all select 'ops.is_operator'
      union all values ('observability.get_job'), ('observability.list_recent_jobs'), ('observability.get_service_probe') $$,
  'service_role may call exactly the RPCs (internal helpers are callable by no API role)');
select is_empty($$
  select c.oid::regclass::text from pg_class c
  where c.relnamespace in ('observability'::regnamespace, 'integration'::regnamespace)
    and c.relkind = 'r' and not c.relrowsecurity
$$, 'every observability and integration table has row level security');
select is_empty($$
  select c.oid::regclass::text from pg_class c
  where c.relnamespace in ('observability'::regnamespace, 'ops'::regnamespace) and c.relkind = 'v'
    and not coalesce(c.reloptions @> array['security_invoker=true'], false)
$$, 'every view reads with the caller''s rights (security_invoker), so RLS applies');
select is_empty($$
  select c.oid::regclass::text || ' ' || p.privilege from pg_class c
  cross join (values ('insert'), ('update'), ('delete'), ('truncate')) p(privilege)
  where c.relnamespace in ('observability'::regnamespace, 'ops'::regnamespace, 'integration'::regnamespace)
    and c.relkind in ('r', 'v') and has_table_privilege('authenticated', c.oid, p.privilege)
$$, 'authenticated may write no operational table');

select * from finish();
rollback;
