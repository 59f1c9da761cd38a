-- Who may do what on the integration bus, and that event_log is immutable
-- for every role, the superuser included.
begin;
set search_path = extensions, public;
select plan(23);

create temp table baseline on commit drop as select
  (select count(*) from integration.outbox) as outbox, (select count(*) from integration.event_log) as event_log;
grant select on baseline to authenticated, service_role;
select integration.ingest_event('odoo', 'k-' || gen_random_uuid(), 'test', 'test', '1', '{"v": 1}', 'cid-1', 'ipai-hmac', 'key_test');

-- event_log is append-only.
select throws_ok($$ update integration.event_log set payload = '{}' $$, 'PT403', 'event_log_immutable',
  'UPDATE on event_log is refused, even for the superuser');
select throws_ok($$ delete from integration.event_log $$, 'PT403', 'event_log_immutable',
  'DELETE on event_log is refused, even for the superuser');
select throws_ok($$ truncate integration.event_log $$, 'PT403', 'event_log_immutable',
  'TRUNCATE on event_log is refused');
set local role service_role;
select throws_ok($$ update integration.event_log set payload = '{}' $$, 'PT403', 'event_log_immutable',
  'UPDATE on event_log is refused for service_role');
select throws_ok($$ delete from integration.event_log $$, 'PT403', 'event_log_immutable',
  'DELETE on event_log is refused for service_role');
reset role;
select is((select count(*) - event_log from integration.event_log, baseline group by event_log)::int, 1,
  'the event_log rows are intact');

-- anon: nothing.
set local role anon;
select throws_ok($$ select integration.ingest_event('odoo', 'k-anon', 't', 't', '1', '{}', 'c', 's', 'k') $$,
  '42501', null, 'anon cannot call ingest_event');
select throws_ok($$ select * from integration.outbox $$, '42501', null, 'anon cannot read the outbox');
select throws_ok($$ select * from integration.event_log $$, '42501', null, 'anon cannot read event_log');
reset role;

-- authenticated: a signed-up user who is not an operator sees nothing; an
-- operator (app_metadata.role in the JWT PostgREST verified) reads.
set local role authenticated;
select is((select count(*)::int from integration.outbox), 0,
  'a signed-in user who is not an operator sees no outbox rows');
select is((select count(*)::int from integration.event_log), 0,
  'a signed-in user who is not an operator sees no event_log rows');
set local request.jwt.claims = '{"role":"authenticated","app_metadata":{"role":"operator"}}';
select is((select count(*) - outbox from integration.outbox, baseline group by outbox)::int, 1,
  'an operator can read the outbox');
select is((select count(*) - event_log from integration.event_log, baseline group by event_log)::int, 1,
  'an operator can read event_log');
select throws_ok($$ select integration.ingest_event('odoo', 'k-auth', 't', 't', '1', '{}', 'c', 's', 'k') $$,
  '42501', null, 'authenticated cannot call ingest_event');
select throws_ok($$ insert into integration.outbox (source, idempotency_key, event_type, aggregate_type,
  aggregate_id, payload, correlation_id) values ('odoo', 'k', 't', 't', '1', '{}', 'c') $$,
  '42501', null, 'authenticated cannot insert into the outbox');
select throws_ok($$ update integration.outbox set status = 'completed' $$, '42501', null,
  'authenticated cannot update the outbox');
select throws_ok($$ select * from integration.replay_guard $$, '42501', null,
  'authenticated cannot read the replay guard');
reset role;

-- service_role: the RPC.
set local role service_role;
select lives_ok($$ select integration.ingest_event('odoo', 'k-' || gen_random_uuid(), 't', 't', '1', '{}', 'c', 's', 'k') $$,
  'service_role can call ingest_event');
reset role;
select is((select count(*) - outbox from integration.outbox, baseline group by outbox)::int, 2,
  'only the service_role call wrote');

-- Every function in the schema: fixed search_path (or a SQL-standard body,
-- bound when created, which a SET clause would keep from being inlined:
-- integration.dead_letter_matches); none callable by PUBLIC or anon, and by
-- authenticated only the operators' RPCs; whatever service_role may call is
-- SECURITY DEFINER.
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.pronamespace = 'integration'::regnamespace
    and not coalesce(p.proconfig @> array['search_path=""'], false)
    and p.prosqlbody is null
$$, 'every integration function pins search_path to empty or has a SQL-standard body');
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.pronamespace = 'integration'::regnamespace
    and has_function_privilege('anon', p.oid, 'execute')
$$, 'no integration function is executable by anon');
select set_eq($$
  select p.proname::text from pg_proc p
  where p.pronamespace = 'integration'::regnamespace
    and has_function_privilege('authenticated', p.oid, 'execute')
$$, array['outbox_stats', 'event_types_last_hour', 'failures_needing_attention',
    -- the console's dead letters (20261124090000_ops_console.sql; ops_console.test.sql)
    'list_dead_letters', 'redrive_outbox'],
  'authenticated may call only the monitoring functions and the console''s dead-letter list and redrive');
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.pronamespace = 'integration'::regnamespace
    and has_function_privilege('service_role', p.oid, 'execute') and not p.prosecdef
$$, 'every function service_role may call is SECURITY DEFINER');

select * from finish();
rollback;
