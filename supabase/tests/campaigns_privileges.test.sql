-- Campaigns: who may read and call what. Every campaigns table against anon,
-- members of a workspace (owner, viewer), a signed-in user of no workspace,
-- an operator and the service role (RLS: members read their workspaces'
-- campaigns, memberships and audit; sync and rate-limit state is for
-- operators and the service role; nobody writes but through the RPCs); every
-- RPC against the same (users start and finish toggles, the rest is the
-- service role's); the audit log is append-only; pg_cron's two jobs.
begin;
set search_path = extensions, public;
select plan(162);

\ir lib/refusal.sql
select 'pgtap' || substr(md5(random()::text), 1, 10) as tag \gset
select :'tag' || '-owner' as u_owner, :'tag' || '-viewer' as u_viewer, :'tag' || '-owner-b' as u_owner_b,
  :'tag' || '-stranger' as u_stranger, :'tag' || '-operator' as u_operator \gset
select json_build_object('role', 'authenticated', 'sub', :'u_owner', 'app_metadata', json_build_object('provider', 'email'))::text as jwt_owner,
  json_build_object('role', 'authenticated', 'sub', :'u_viewer')::text as jwt_viewer,
  json_build_object('role', 'authenticated', 'sub', :'u_owner_b')::text as jwt_owner_b,
  json_build_object('role', 'authenticated', 'sub', :'u_stranger')::text as jwt_stranger,
  json_build_object('role', 'authenticated', 'sub', :'u_operator',
    'app_metadata', json_build_object('role', 'operator'))::text as jwt_operator \gset

-- Two workspaces, a campaign each, and a row in every table, so "sees
-- nothing" means RLS, not emptiness.
insert into campaigns.workspaces (name) values (:'tag' || ' A') returning id as ws_a \gset
insert into campaigns.workspaces (name) values (:'tag' || ' B') returning id as ws_b \gset
insert into campaigns.workspace_members (workspace_id, user_id, role) values
  (:'ws_a', :'u_owner', 'owner'), (:'ws_a', :'u_viewer', 'viewer'), (:'ws_b', :'u_owner_b', 'owner');
insert into campaigns.campaigns (workspace_id, name, status, n8n_workflow_id, n8n_status)
values (:'ws_a', 'A1', 'paused', :'tag' || '-a', 'inactive') returning id as c_a \gset
insert into campaigns.campaigns (workspace_id, name, status, n8n_workflow_id, n8n_status)
values (:'ws_b', 'B1', 'active', :'tag' || '-b', 'active') returning id as c_b \gset
-- n8n changes both (audit entries in each workspace, workflow_events).
select campaigns.apply_workflow_event(:'tag' || '-e1', :'tag' || '-a', 'A1', true, 'activation', now() - interval '5 seconds', 'alice') \g /dev/null
select campaigns.apply_workflow_event(:'tag' || '-e2', :'tag' || '-b', 'B1', false, 'deactivation', now() - interval '5 seconds', 'bob') \g /dev/null
-- A toggle with a key (toggle_attempts, toggle_requests), a sync failure, a finished sweep.
select campaigns.toggle_begin(:'c_a', 'activate', 'key-1', 'hash-1', p_user_id => :'u_owner') \g /dev/null
select campaigns.record_sync_failure('webhook', jsonb_build_object('event_id', :'tag' || '-e3', 'workflow_id', :'tag' || '-a'), 'x') \g /dev/null
insert into campaigns.reconciler_runs (worker, lease_expires_at, finished_at) values ('pgtap', now(), now());

create temp table relations (name text primary key, col text not null, private boolean not null, operators boolean not null);
insert into relations values
  ('campaigns.workspaces', 'name', false, false),
  ('campaigns.workspace_members', 'role', false, false),
  ('campaigns.campaigns', 'status', false, false),
  ('campaigns.campaign_audit_log', 'outcome', false, false),
  -- read by operators only
  ('campaigns.sync_failures', 'retry_count', false, true),
  ('campaigns.reconciler_runs', 'worker', false, true),
  ('campaigns.n8n_breaker', 'consecutive_failures', false, true),
  ('campaigns.settings', 'toggles_per_minute', false, true),
  -- the service role's alone
  ('campaigns.workflow_events', 'event_type', true, false),
  ('campaigns.toggle_requests', 'request_hash', true, false),
  ('campaigns.toggle_attempts', 'user_id', true, false);
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

-- Every RPC with a probe that passes the privilege check and is then refused
-- by its own validation (or changes nothing that outlives the rollback):
-- what a caller who may call it gets. users: authenticated may call it.
create temp table rpcs (name text primary key, probe text not null, allowed text not null, users boolean not null);
insert into rpcs values
  ('toggle_begin', $$ select campaigns.toggle_begin(gen_random_uuid(), 'start') $$, 'PT422 validation_failed action', true),
  ('toggle_finish', $$ select campaigns.toggle_finish(gen_random_uuid(), gen_random_uuid(), 1, 'done') $$,
   'PT422 validation_failed p_outcome', false),
  ('breaker_record', $$ select campaigns.breaker_record(true) $$, 'ok', false),
  ('breaker_state', $$ select campaigns.breaker_state() $$, 'ok', false),
  ('apply_workflow_event', $$ select campaigns.apply_workflow_event('', 'wf', null, true, 'activation', now()) $$,
   'PT422 validation_failed event_id', false),
  ('record_sync_failure', $$ select campaigns.record_sync_failure('api', '{}', 'x') $$, 'PT422 validation_failed p_source', false),
  ('retry_sync_failures', $$ select campaigns.retry_sync_failures() $$, 'ok', false),
  ('reconcile_begin', $$ select campaigns.reconcile_begin('') $$, 'PT422 validation_failed p_worker', false),
  ('reconcile_apply', $$ select campaigns.reconcile_apply(gen_random_uuid(), now(), '[]') $$, 'PT409 invalid_state', false),
  ('record_republish', $$ select campaigns.record_republish(gen_random_uuid(), gen_random_uuid(), true) $$,
   'PT409 invalid_state', false),
  ('reconcile_finish', $$ select campaigns.reconcile_finish(gen_random_uuid()) $$, 'PT409 invalid_state', false),
  ('wake_reconciler', $$ select campaigns.wake_reconciler() $$, 'ok', false);
grant select on rpcs to anon, authenticated, service_role;

-- ---------------------------------------------------------------- anon: nothing at all

set local role anon;
set local request.jwt.claims = '{"role": "anon"}';
select is(pg_temp.sees(name), 'denied', 'anon cannot read ' || name) from relations order by name;
select is(pg_temp.call(probe), '42501', 'anon cannot call ' || name) from rpcs order by name;
reset role;

-- ---------------------------------------------------------------- a workspace owner

set local role authenticated;
set local request.jwt.claims = :'jwt_owner';
select is(array(select id from campaigns.workspaces), array[:'ws_a'::uuid], 'an owner reads their workspace and no other');
select is(array(select workspace_id || ' ' || user_id || ' ' || role from campaigns.workspace_members order by user_id),
  array[:'ws_a' || ' ' || :'u_owner' || ' owner', :'ws_a' || ' ' || :'u_viewer' || ' viewer'],
  'its memberships and no other workspace''s');
select is(array(select id from campaigns.campaigns), array[:'c_a'::uuid], 'its campaigns and no other');
select is(array(select distinct campaign_id from campaigns.campaign_audit_log), array[:'c_a'::uuid],
  'its campaigns'' audit and no other');
select is(pg_temp.sees(name), 'nothing', 'a member sees no rows of ' || name) from relations where operators order by name;
select is(pg_temp.sees(name), 'denied', 'a member cannot read ' || name) from relations where private order by name;
select is(pg_temp.call(probe), allowed, 'a user may call ' || name) from rpcs where users order by name;
select is(pg_temp.call(probe), '42501', 'a user cannot call ' || name) from rpcs where not users order by name;
-- No direct writes, even to the owner's own rows.
select is(pg_temp.call(format('insert into %s select * from %s where false', name, name)), '42501',
  'a member cannot insert into ' || name) from relations order by name;
select is(pg_temp.call(format('update %s set %I = %I', name, col, col)), '42501',
  'a member cannot update ' || name) from relations order by name;
select is(pg_temp.call(format('delete from %s', name)), '42501', 'a member cannot delete from ' || name)
from relations order by name;
-- The owner toggles through the RPCs.
select is(campaigns.toggle_begin(:'c_a', 'pause') ->> 'outcome', 'proceed', 'an owner toggles their campaign');
select is(campaigns.member_role(:'ws_a') || ' ' || campaigns.can_write(:'ws_a')::text || ' '
    || coalesce(campaigns.member_role(:'ws_b'), 'none') || ' ' || campaigns.can_read(:'ws_b')::text,
  'owner true none false', 'the RLS helpers: owner of A, nothing in B');
reset role;
set local request.jwt.claims = '';

-- ---------------------------------------------------------------- a viewer

set local role authenticated;
set local request.jwt.claims = :'jwt_viewer';
select is(array(select id from campaigns.campaigns), array[:'c_a'::uuid], 'a viewer reads their workspace''s campaigns');
select is(array(select distinct campaign_id from campaigns.campaign_audit_log), array[:'c_a'::uuid], 'and their audit');
select is(pg_temp.call(format($$ select campaigns.toggle_begin(%L, 'activate') $$, :'c_a')), 'PT403 forbidden',
  'but may not toggle them');
select is(campaigns.member_role(:'ws_a') || ' ' || campaigns.can_read(:'ws_a')::text || ' ' || campaigns.can_write(:'ws_a')::text,
  'viewer true false', 'the RLS helpers: a viewer reads and does not write');
reset role;
set local request.jwt.claims = '';

-- ---------------------------------------------------------------- the owner of another workspace

set local role authenticated;
set local request.jwt.claims = :'jwt_owner_b';
select is(array(select id from campaigns.campaigns), array[:'c_b'::uuid], 'another workspace''s owner reads only its campaigns');
select is(array(select user_id from campaigns.workspace_members), array[:'u_owner_b'], 'and its memberships');
select is(pg_temp.call(format($$ select campaigns.toggle_begin(%L, 'activate') $$, :'c_a')), 'PT404 not_found',
  'and cannot find, let alone toggle, a campaign of workspace A');
reset role;
set local request.jwt.claims = '';

-- ---------------------------------------------------------------- a user of no workspace

set local role authenticated;
set local request.jwt.claims = :'jwt_stranger';
select is(pg_temp.sees(name), 'nothing', 'a user of no workspace sees no rows of ' || name)
from relations where not private order by name;
select is(pg_temp.call(format($$ select campaigns.toggle_begin(%L, 'activate') $$, :'c_a')), 'PT404 not_found',
  'nor finds a campaign to toggle');
reset role;
set local request.jwt.claims = '';

-- ---------------------------------------------------------------- an operator

set local role authenticated;
set local request.jwt.claims = :'jwt_operator';
select is(pg_temp.sees(name), 'rows', 'an operator reads ' || name) from relations where not private order by name;
select is(pg_temp.sees(name), 'denied', 'an operator cannot read ' || name) from relations where private order by name;
select is((select count(*)::integer from campaigns.campaigns where id in (:'c_a', :'c_b')), 2,
  'an operator reads the campaigns of every workspace');
select is((select count(distinct workspace_id)::integer from campaigns.campaign_audit_log where workspace_id in (:'ws_a', :'ws_b')), 2,
  'and their audit');
select is(campaigns.toggle_begin(:'c_b', 'activate') - 'toggle_id' - 'campaign',
  jsonb_build_object('outcome', 'proceed', 'version', 2, 'workflow_id', :'tag' || '-b', 'publish', true, 'user_id', :'u_operator'),
  'an operator toggles a campaign of any workspace, as themselves');
select is(pg_temp.call(probe), '42501', 'an operator cannot call ' || name) from rpcs where not users order by name;
select is(pg_temp.call(format($$ update campaigns.campaigns set status = 'archived' where id = %L $$, :'c_b')), '42501',
  'an operator changes campaigns only through the RPCs');
select is(pg_temp.call($$ update campaigns.settings set toggles_per_minute = 1000 $$), '42501', 'nor the settings');
reset role;
set local request.jwt.claims = '';

-- ---------------------------------------------------------------- service_role

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is(pg_temp.sees(name), 'rows', 'service_role reads ' || name) from relations order by name;
select is(pg_temp.call(probe), allowed, 'service_role may call ' || name) from rpcs order by name;
reset role;
set local request.jwt.claims = '';

-- ---------------------------------------------------------------- the audit log is append-only

select throws_ok(format($$ update campaigns.campaign_audit_log set outcome = 'failed' where campaign_id = %L $$, :'c_a'),
  'P0001', 'campaign_audit_log is append-only', 'UPDATE on the audit log is refused, even for its owner');
select throws_ok(format($$ delete from campaigns.campaign_audit_log where campaign_id = %L $$, :'c_a'),
  'P0001', 'campaign_audit_log is append-only', 'DELETE on the audit log is refused');
select throws_ok($$ truncate campaigns.campaign_audit_log $$,
  'P0001', 'campaign_audit_log is append-only', 'TRUNCATE on the audit log is refused');
set local role service_role;
select is(pg_temp.call(format($$ update campaigns.campaign_audit_log set outcome = 'failed' where campaign_id = %L $$, :'c_a')),
  'P0001 campaign_audit_log is append-only', 'and for the service role, which holds the privilege');
reset role;
select is((select count(*)::integer from campaigns.campaign_audit_log where campaign_id = :'c_a' and outcome = 'changed'), 1,
  'the entry is as it was written');

-- ---------------------------------------------------------------- the catalog

select is_empty($$
  select c.oid::regclass::text from pg_class c
  where c.relnamespace = 'campaigns'::regnamespace and c.relkind = 'r' and not c.relrowsecurity
$$, 'every campaigns table has row level security');
select is_empty($$
  select c.oid::regclass::text || ' ' || p.privilege from pg_class c
  cross join (values ('select'), ('insert'), ('update'), ('delete'), ('truncate'), ('references'), ('trigger')) p(privilege)
  where c.relnamespace = 'campaigns'::regnamespace and c.relkind in ('r', 'v')
    and has_table_privilege('anon', c.oid, p.privilege)
$$, 'anon holds no privilege on any campaigns table');
select ok(not has_schema_privilege('anon', 'campaigns', 'usage'), 'nor on the schema');
select is_empty($$
  select c.oid::regclass::text || ' ' || p.privilege from pg_class c
  cross join (values ('insert'), ('update'), ('delete'), ('truncate')) p(privilege)
  where c.relnamespace = 'campaigns'::regnamespace and c.relkind in ('r', 'v')
    and has_table_privilege('authenticated', c.oid, p.privilege)
$$, 'authenticated may write no campaigns table');
select set_eq($$
  select c.oid::regclass::text from pg_class c
  where c.relnamespace = 'campaigns'::regnamespace and c.relkind in ('r', 'v')
    and has_table_privilege('authenticated', c.oid, 'select')
$$, $$ select name from relations where not private $$,
  'authenticated may select all but the idempotency, rate-limit and webhook tables (RLS decides the rows)');
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.pronamespace = 'campaigns'::regnamespace and has_function_privilege('anon', p.oid, 'execute')
$$, 'anon may call no campaigns function');
select set_eq($$
  select p.proname::text from pg_proc p
  where p.pronamespace = 'campaigns'::regnamespace and has_function_privilege('authenticated', p.oid, 'execute')
$$, array['toggle_begin', 'caller_id', 'is_platform', 'member_role', 'can_read', 'can_write'],
  'authenticated may call the toggles and the RLS helpers, nothing else');
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.pronamespace = 'campaigns'::regnamespace and not has_function_privilege('service_role', p.oid, 'execute')
$$, 'service_role may call every campaigns function');
select is((select schedule || ' ' || command || ' ' || active::text from cron.job where jobname = 'campaigns-reconciler'),
  '*/5 * * * * select campaigns.wake_reconciler() true', 'pg_cron wakes the reconciler every 5 minutes');
select is((select schedule || ' ' || command || ' ' || active::text from cron.job where jobname = 'campaigns-sync-retry'),
  '* * * * * select campaigns.retry_sync_failures() true', 'and retries sync failures every minute');

select * from finish();
rollback;
