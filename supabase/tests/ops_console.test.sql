-- The ops console's RPCs (20261124090000_ops_console.sql): the dead-letter
-- list (filters, empty inputs as no filter, keyset pages, total) and its
-- agreement with the redrive's dry run; redrive, requeue and cancel by an
-- operator, recorded under the operator's JWT email; who may call what;
-- ops.console_overview's shape and counts; and delivery receipts in traces.
begin;
set search_path = extensions, public;
select plan(91);

-- Names unique to this run: the dev database is shared. Everything is rolled back.
select 'pgtap' || substr(md5(random()::text), 1, 10) as tag \gset
select :'tag' || '.*' as pattern, 'op-' || :'tag' || '@example.com' as op_email,
  json_build_object('role', 'authenticated', 'sub', '00000000-0000-4000-8000-0000000000e1',
    'email', 'op-' || :'tag' || '@example.com', 'app_metadata', json_build_object('role', 'operator'))::text as jwt_op,
  json_build_object('role', 'authenticated', 'sub', '00000000-0000-4000-8000-0000000000e2',
    'email', 'user-' || :'tag' || '@example.com', 'app_metadata', json_build_object('provider', 'email'))::text as jwt_user
\gset

\ir lib/refusal.sql
\ir lib/call.sql

-- ------------------------------------------------------------ dead letters

create temp table run as select :'tag'::text as tag;
-- A dead letter of this test: event type suffix, when it was created and
-- died (minutes ago), its last error.
create function pg_temp.dead(p_type text, p_created_ago integer, p_dead_ago numeric, p_error text)
returns uuid language sql as $$
  insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
                                  correlation_id, status, attempts, last_error, dead_at, error_history, created_at)
  select 'pgtap', 'console-' || gen_random_uuid(), r.tag || '.' || p_type, 'pgtap.order', '1', '{}',
         'cid-' || r.tag, 'failed', 4, p_error, now() - make_interval(secs => p_dead_ago * 60),
         jsonb_build_array(jsonb_build_object('error', p_error)), now() - make_interval(mins => p_created_ago)
  from run r
  returning id
$$;
select pg_temp.dead('orders.created', 120, 30, 'HTTP 500 upstream') as d1 \gset
select pg_temp.dead('orders.created', 100, 20, 'HTTP 503 unavailable') as d2 \gset
select pg_temp.dead('orders.paid', 90, 20, 'HTTP 500 upstream') as d3 \gset
select pg_temp.dead('invoices.sent', 60, 20, 'timeout after 10000 ms') as d4 \gset
select pg_temp.dead('invoices.sent', 30, 5, 'no_route ' || :'tag') as d5 \gset
-- Not a dead letter: delivered.
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
  correlation_id, status, completed_at)
values ('pgtap', 'console-' || gen_random_uuid(), :'tag' || '.orders.created', 'pgtap.order', '1', '{}',
  'cid-' || :'tag', 'completed', now());

-- The ids of a list, in order.
create function pg_temp.ids(p_list jsonb) returns uuid[] language sql as $$
  select coalesce(array_agg((r ->> 'id')::uuid order by n), '{}') from jsonb_array_elements(p_list -> 'rows') with ordinality x(r, n)
$$;

select is(integration.list_dead_letters(:'pattern') -> 'total', '5', 'the list counts every dead letter the pattern matches');
select is(pg_temp.ids(integration.list_dead_letters(:'pattern')),
  -- d2, d3 and d4 died at the same instant: the larger id first.
  array[:'d5'::uuid] || (select array_agg(u order by u desc) from unnest(array[:'d2', :'d3', :'d4']::uuid[]) u)
    || array[:'d1'::uuid],
  'newest death first, ties by id');
select is(pg_temp.ids(integration.list_dead_letters(:'pattern')),
  (select array_agg(id order by dead_at desc, id desc) from integration.outbox where event_type like :'tag' || '.%'
     and status = 'failed'),
  'ordered by dead_at desc, id desc (ties by id)');
select is((integration.list_dead_letters(:'tag' || '.orders.*') -> 'total')::int, 3, 'a prefix pattern');
select is(pg_temp.ids(integration.list_dead_letters(:'tag' || '.invoices.sent')), array[:'d5', :'d4']::uuid[],
  'an exact event type');
select is((integration.list_dead_letters(:'pattern', p_created_from => now() - interval '95 minutes',
  p_created_to => now() - interval '30 minutes') -> 'total')::int, 2,
  'a created_at range [from, to): the ones created 90 and 60 minutes ago');
select is(pg_temp.ids(integration.list_dead_letters(:'pattern', p_error_contains => 'HTTP 500')),
  (select array_agg(id order by dead_at desc, id desc) from integration.outbox where id in (:'d1', :'d3')),
  'text in the last error');
select is(pg_temp.ids(integration.list_dead_letters(p_event_pattern => '', p_error_contains => 'no_route ' || :'tag')),
  array[:'d5']::uuid[], 'an empty pattern is no filter');
select is(integration.list_dead_letters(:'pattern', p_error_contains => '') -> 'total', '5',
  'empty error text is no filter');
select is((select (integration.list_dead_letters('', null, null, '') ->> 'total')::int
    = (select count(*)::int from integration.outbox where status = 'failed')), true,
  'all filters empty: every dead letter');
select is((integration.list_dead_letters(:'tag' || '.nothing.*')), '{"total": 0, "rows": []}'::jsonb,
  'no match: total 0 and no rows');
select is((select array_agg(k order by k) from jsonb_object_keys(integration.list_dead_letters(:'pattern', p_limit => 1)
    #> '{rows,0}') k),
  array['aggregate_id', 'aggregate_type', 'attempts', 'correlation_id', 'created_at', 'dead_at', 'error_history',
    'event_type', 'id', 'last_error', 'source'],
  'a row''s fields');
select is(integration.list_dead_letters(:'pattern', p_limit => 1) #> '{rows,0}',
  (select jsonb_build_object('id', id, 'event_type', event_type, 'source', source, 'aggregate_type', aggregate_type,
     'aggregate_id', aggregate_id, 'correlation_id', correlation_id, 'attempts', attempts, 'last_error', last_error,
     'error_history', error_history, 'created_at', created_at, 'dead_at', dead_at)
   from integration.outbox where id = :'d5'),
  'and their values');

-- Keyset pages of 2.
create temp table pages as select 1 as page, integration.list_dead_letters(:'pattern', p_limit => 2) as body;
insert into pages select 2, integration.list_dead_letters(:'pattern', p_limit => 2,
  p_before_dead_at => (body #>> '{rows,1,dead_at}')::timestamptz, p_before_id => (body #>> '{rows,1,id}')::uuid)
  from pages where page = 1;
insert into pages select 3, integration.list_dead_letters(:'pattern', p_limit => 2,
  p_before_dead_at => (body #>> '{rows,1,dead_at}')::timestamptz, p_before_id => (body #>> '{rows,1,id}')::uuid)
  from pages where page = 2;
insert into pages select 4, integration.list_dead_letters(:'pattern', p_limit => 2,
  p_before_dead_at => (body #>> '{rows,0,dead_at}')::timestamptz, p_before_id => (body #>> '{rows,0,id}')::uuid)
  from pages where page = 3;
select is((select array_agg(jsonb_array_length(body -> 'rows') order by page) from pages), array[2, 2, 1, 0],
  'pages of 2, 2, 1, then none');
select is((select array_agg(u order by page, n) from pages, unnest(pg_temp.ids(body)) with ordinality x(u, n)),
  pg_temp.ids(integration.list_dead_letters(:'pattern')),
  'the pages in turn are the whole list, in order, each row once (a tie in dead_at spans pages 1 and 2)');
select is((select array_agg(distinct (body ->> 'total')::int) from pages), array[5], 'every page has the total');
select is(pg_temp.refusal($$ select integration.list_dead_letters(p_limit => 0) $$),
  'PT422 validation_failed p_limit', 'a limit under 1');
select is(pg_temp.refusal($$ select integration.list_dead_letters(p_limit => 201) $$),
  'PT422 validation_failed p_limit', 'a limit over 200');
select is(pg_temp.refusal($$ select integration.list_dead_letters(p_limit => null) $$),
  'PT422 validation_failed p_limit', 'no limit');
select is(pg_temp.refusal($$ select integration.list_dead_letters(p_before_dead_at => now()) $$),
  'PT422 validation_failed p_before_id', 'a page''s dead_at without its id');
select is(pg_temp.refusal($$ select integration.list_dead_letters(p_before_id => gen_random_uuid()) $$),
  'PT422 validation_failed p_before_dead_at', 'a page''s id without its dead_at');

-- The list and the redrive's dry run agree, filter for filter (empty inputs
-- included, as the console sends them).
create temp table filters (f jsonb);
insert into filters values
  (jsonb_build_object('p_event_pattern', :'pattern')),
  (jsonb_build_object('p_event_pattern', :'tag' || '.orders.*', 'p_error_contains', '')),
  (jsonb_build_object('p_event_pattern', '', 'p_error_contains', 'HTTP 500')),
  (jsonb_build_object('p_event_pattern', :'pattern', 'p_created_from', now() - interval '95 minutes',
     'p_created_to', now() - interval '30 minutes')),
  (jsonb_build_object('p_error_contains', 'no_route ' || :'tag', 'p_created_from', now() - interval '1 day'));
select is(
  (select array_agg((integration.redrive_outbox('pgtap-console', null, f ->> 'p_event_pattern',
     (f ->> 'p_created_from')::timestamptz, (f ->> 'p_created_to')::timestamptz, f ->> 'p_error_contains') ->> 'matched')::int
     order by f::text) from filters),
  (select array_agg((integration.list_dead_letters(f ->> 'p_event_pattern', (f ->> 'p_created_from')::timestamptz,
     (f ->> 'p_created_to')::timestamptz, f ->> 'p_error_contains') ->> 'total')::int order by f::text) from filters),
  'a dry run matches what the list totals, for each filter');
select is((select count(*)::int from integration.redrive_log where requested_by = 'pgtap-console' and dry_run
    and matched > 0 and redriven = 0), 5, 'each dry run is audited and changed nothing');
select is((select filter from integration.redrive_log where requested_by = 'pgtap-console'
    and filter ->> 'error_contains' = 'HTTP 500'), '{"error_contains": "HTTP 500"}'::jsonb,
  'an empty input is not part of the audited filter');
select is(pg_temp.refusal($$ select integration.redrive_outbox('pgtap-console', p_event_pattern => '', p_error_contains => '') $$),
  'PT422 validation_failed', 'empty inputs alone are no filter: a redrive needs one');

-- An operator redrives, with their own JWT.
set local role authenticated;
select set_config('request.jwt.claims', :'jwt_op', true) \g /dev/null
select is(integration.redrive_outbox(p_requested_by => 'someone-else', p_event_pattern => :'tag' || '.orders.*',
    p_error_contains => 'HTTP 500', p_dry_run => false),
  '{"matched": 2, "redriven": 2, "dry_run": false}'::jsonb, 'an operator redrives dead letters');
select is((integration.list_dead_letters(:'pattern') ->> 'total')::int, 3, 'which leave the list');
reset role;
set local request.jwt.claims = '';
select is((select array_agg(status || '/' || attempts || '/' || coalesce(dead_at::text, '-') order by id)
  from integration.outbox where id in (:'d1', :'d3')), array['pending/0/-', 'pending/0/-'],
  'they are pending again, attempts reset');
select is((select requested_by || ' ' || filter::text from integration.redrive_log
    where filter ->> 'event_pattern' = :'tag' || '.orders.*' and not dry_run),
  :'op_email' || ' {"event_pattern": "' || :'tag' || '.orders.*", "error_contains": "HTTP 500"}',
  'the redrive log names the operator by their JWT email, not what they passed');

-- The service role names whoever it acts for, else itself.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select integration.redrive_outbox('chatops:alice-' || :'tag', p_ids => array[:'d4']::uuid[]) \g /dev/null
select integration.redrive_outbox(p_ids => array[:'d5']::uuid[]) \g /dev/null
reset role;
set local request.jwt.claims = '';
select is((select array_agg(requested_by order by id) from integration.redrive_log
    where filter -> 'ids' ?| array[:'d4', :'d5']),
  array['chatops:alice-' || :'tag', 'service_role'], 'the service role names the person, else itself');

-- ------------------------------------------------------------ jobs

select observability.enqueue_job('pgtap', :'tag' || '.job', max_attempts => 1) ->> 'job_id' as j_dead \gset
select observability.fail_job(:'j_dead', 'boom') \g /dev/null
select observability.enqueue_job('pgtap', :'tag' || '.job') ->> 'job_id' as j_queued \gset
select observability.enqueue_job('pgtap', :'tag' || '.job') ->> 'job_id' as j_svc \gset

set local role authenticated;
select set_config('request.jwt.claims', :'jwt_op', true) \g /dev/null
select is(observability.requeue_job(:'j_dead', 'someone-else') ->> 'status', 'queued', 'an operator requeues a dead job');
select is(observability.cancel_job(:'j_queued', 'not needed') ->> 'status', 'cancelled',
  'an operator cancels a job without naming themselves');
reset role;
set local request.jwt.claims = '';
select is((select detail ->> 'requested_by' from observability.job_events
    where job_id = :'j_dead' and from_status = 'dead' and to_status = 'queued'), :'op_email',
  'the requeue''s job event names the operator by their JWT email');
select is((select (detail ->> 'requested_by') || ' / ' || (detail ->> 'reason') from observability.job_events
    where job_id = :'j_queued' and to_status = 'cancelled'), :'op_email' || ' / not needed',
  'so does the cancel''s, with the reason');

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is(pg_temp.refusal(format($$ select observability.cancel_job(%L, 'why', null) $$, :'j_svc')),
  'PT422 validation_failed requested_by', 'the service role must still name who asked to cancel');
select is(pg_temp.refusal(format($$ select observability.requeue_job(%L) $$, :'j_queued')),
  'PT422 validation_failed requested_by', 'and who asked to requeue');
select is(observability.cancel_job(:'j_svc', 'superseded', 'n8n:' || :'tag') ->> 'status', 'cancelled',
  'the service role cancels for a person');
reset role;
set local request.jwt.claims = '';
select is((select detail ->> 'requested_by' from observability.job_events where job_id = :'j_svc' and to_status = 'cancelled'),
  'n8n:' || :'tag', 'and the job event names that person');

-- ------------------------------------------------------------ who may call

create temp table rpcs (name text primary key, call text not null);
insert into rpcs values
  ('integration.list_dead_letters', $$ select integration.list_dead_letters() $$),
  ('ops.console_overview', $$ select ops.console_overview() $$),
  ('integration.redrive_outbox', format($$ select integration.redrive_outbox('x', p_event_pattern => %L) $$, :'pattern')),
  ('observability.requeue_job', format($$ select observability.requeue_job(%L, 'x') $$, :'j_queued')),
  ('observability.cancel_job', format($$ select observability.cancel_job(%L, 'why', 'x') $$, :'j_dead'));
grant select on rpcs to anon, authenticated;

set local role anon;
set local request.jwt.claims = '{"role": "anon"}';
select is(pg_temp.call(call), '42501', 'anon cannot call ' || name) from rpcs order by name;
reset role;
set local role authenticated;
select set_config('request.jwt.claims', :'jwt_user', true) \g /dev/null
select is(pg_temp.call(call), 'PT403 forbidden', 'a signed-in user who is not an operator is refused ' || name)
from rpcs order by name;
reset role;
set local request.jwt.claims = '';
select is((select status from observability.jobs where id = :'j_dead'), 'queued', 'and the refused calls changed nothing');
select ok(not has_function_privilege('authenticated',
    'integration.dead_letter_matches(integration.outbox, uuid[], text, timestamptz, timestamptz, text)', 'execute')
  and not has_function_privilege('service_role',
    'integration.dead_letter_matches(integration.outbox, uuid[], text, timestamptz, timestamptz, text)', 'execute'),
  'the filter predicate is internal');

-- ------------------------------------------------------------ overview

-- A project with a protected production: a run there awaits approval.
select 'pgtap-' || substr(md5(random()::text), 1, 10) as p \gset
insert into ops.projects (project_id, name, repository, protected_envs)
values (:'p', 'pgTAP console', 'example/switchyard', '{production}');
select ops.queue_run(:'p', 'production', 'abcdef1', 'refs/heads/main', 'alice-' || :'tag' || '@example.com')
  ->> 'run_id' as r_prod \gset
select ops.lock_environment(:'p', 'staging', 'incident ' || :'tag', 'ops-' || :'tag') \g /dev/null
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'production',
  'git_sha', 'abcdef2'), 'agent:' || :'tag', 'mcp') ->> 'handle' as h_live \gset
select ops.request_action('deploy_release', jsonb_build_object('project_id', :'p', 'env', 'production',
  'git_sha', 'abcdef3'), 'agent:' || :'tag', 'mcp') ->> 'handle' as h_expired \gset
update ops.action_requests set expires_at = now() - interval '1 second' where handle = :'h_expired';

-- Services: one with 35 recent samples (the oldest 5 failing) and one from
-- two days ago; one never probed.
insert into observability.services (name, url) values (:'tag' || '-a', 'https://a.example.com/') returning id as svc_a \gset
insert into observability.services (name, url) values (:'tag' || '-b', 'https://b.example.com/') returning id as svc_b \gset
insert into observability.service_health (service_id, checked_at, status, response_time_ms)
select :svc_a, now() - make_interval(mins => 36 - i), case when i <= 5 then 'failing' else 'healthy' end, i
from generate_series(1, 35) i;
insert into observability.service_health (service_id, checked_at, status, response_time_ms)
values (:svc_a, now() - interval '2 days', 'failing', 999);

-- Bus activity: events received, delivered and dead-lettered 10 minutes ago,
-- and some two hours ago (outside the window).
select date_trunc('minute', now(), 'UTC') - interval '10 minutes' as m10 \gset
insert into integration.event_log (event_id, source, idempotency_key, event_type, aggregate_type, aggregate_id,
  payload, correlation_id, scheme, signing_key_id, created_at)
select gen_random_uuid(), 'pgtap', 'console-' || gen_random_uuid(), :'tag' || '.x', 't', '1', '{}', 'cid-' || :'tag',
  'ipai-hmac', 'key_test', t
from unnest(array[:'m10'::timestamptz + interval '1 second', :'m10'::timestamptz + interval '59 seconds',
  now() - interval '2 hours']) t;
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
  correlation_id, status, completed_at)
select 'pgtap', 'console-' || gen_random_uuid(), :'tag' || '.x', 't', '1', '{}', 'cid-' || :'tag', 'completed', t
from unnest(array[:'m10'::timestamptz + interval '30 seconds', now() - interval '2 hours']) t;
select pg_temp.dead('late', 1, extract(epoch from now() - (:'m10'::timestamptz + interval '20 seconds')) / 60, 'x')
  as d_m10 \gset
-- Pending: one retrying.
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
  correlation_id, status, attempts, created_at)
values ('pgtap', 'console-' || gen_random_uuid(), :'tag' || '.x', 't', '1', '{}', 'cid-' || :'tag', 'pending', 2,
  now() - interval '1 day');

-- Campaigns: linked and in sync; a sync error; active here but not in n8n; an
-- unresolved sync failure; a resolved one only (in sync); unlinked (ignored).
insert into campaigns.workspaces (name) values ('ws-' || :'tag') returning id as ws \gset
create function pg_temp.campaign(p_ws uuid, p_name text, p_status text, p_workflow text, p_n8n_status text,
  p_sync_error text default null) returns uuid language sql as $$
  insert into campaigns.campaigns (workspace_id, name, status, n8n_workflow_id, n8n_status, sync_error)
  values (p_ws, p_name, p_status, p_workflow, p_n8n_status, p_sync_error) returning id
$$;
select pg_temp.campaign(:'ws', :'tag' || ' ok', 'active', 'wf-ok-' || :'tag', 'active') as c_ok,
  pg_temp.campaign(:'ws', :'tag' || ' error', 'paused', 'wf-err-' || :'tag', 'inactive', 'n8n said 500') as c_err,
  pg_temp.campaign(:'ws', :'tag' || ' mismatch', 'active', 'wf-mis-' || :'tag', 'inactive') as c_mismatch,
  pg_temp.campaign(:'ws', :'tag' || ' failing', 'paused', 'wf-fail-' || :'tag', 'inactive') as c_fail,
  pg_temp.campaign(:'ws', :'tag' || ' resolved', 'paused', 'wf-res-' || :'tag', 'error') as c_resolved,
  pg_temp.campaign(:'ws', :'tag' || ' unlinked', 'active', null, 'unknown') as c_unlinked \gset
insert into campaigns.sync_failures (campaign_id, source, payload, error_message, resolved_at) values
  (:'c_fail', 'webhook', '{}', 'row locked', null), (:'c_fail', 'cron', '{}', 'row locked', null),
  (:'c_resolved', 'webhook', '{}', 'row locked', now());

create temp table overview as select ops.console_overview() as o;

select is((select array_agg(k order by k) from overview, jsonb_object_keys(o) k),
  array['approvals', 'bus', 'campaigns', 'frozen', 'generated_at', 'jobs', 'runs_in_flight', 'services'],
  'the overview''s sections');
select is((select array_agg(k order by k) from overview, jsonb_object_keys(o -> 'bus') k),
  array['activity', 'by_status', 'expired_leases', 'oldest_pending_age_seconds', 'retrying'], 'the bus''s fields');
-- Counts against the tables, in the same statement (one snapshot).
select is(o -> 'bus' -> 'by_status', (select jsonb_build_object(
    'pending', count(*) filter (where status = 'pending'), 'processing', count(*) filter (where status = 'processing'),
    'completed', count(*) filter (where status = 'completed'), 'failed', count(*) filter (where status = 'failed'))
  from integration.outbox), 'the bus counts by status')
from (select ops.console_overview() as o) x;
select is(jsonb_build_array(o -> 'bus' -> 'retrying', o -> 'bus' -> 'expired_leases',
    o -> 'bus' -> 'oldest_pending_age_seconds'),
  jsonb_build_array((select count(*) from integration.outbox where status = 'pending' and attempts > 0),
   (select count(*) from integration.outbox where status = 'processing' and lease_expires_at < now()),
   (select extract(epoch from now() - min(created_at))::integer from integration.outbox where status = 'pending')),
  'retrying, expired leases and the oldest pending age')
from (select ops.console_overview() as o) x;
select ok((o -> 'bus' ->> 'retrying')::int >= 1 and (o -> 'bus' ->> 'oldest_pending_age_seconds')::int >= 86400,
  'the retrying event counts and is the oldest pending') from overview;
select is(jsonb_array_length(o #> '{bus,activity}'), 60, '60 minutes of activity') from overview;
select is((select array_agg((m ->> 'minute')::timestamptz order by n) from overview,
    jsonb_array_elements(o #> '{bus,activity}') with ordinality x(m, n)),
  (select array_agg(t order by t) from generate_series(date_trunc('minute', now(), 'UTC') - interval '59 minutes',
    date_trunc('minute', now(), 'UTC'), interval '1 minute') t),
  'every minute of the last hour, oldest first');
select is((select array_agg(k order by k) from overview, jsonb_object_keys(o #> '{bus,activity,0}') k),
  array['dead_lettered', 'delivered', 'minute', 'received'], 'a minute''s fields');
select is((select jsonb_agg(m - 'minute' order by n) from jsonb_array_elements(o #> '{bus,activity}') with ordinality x(m, n)),
  (select jsonb_agg(jsonb_build_object(
     'received', (select count(*) from integration.event_log l where l.created_at >= t and l.created_at < t + interval '1 minute'),
     'delivered', (select count(*) from integration.outbox_and_archive b where b.status = 'completed'
       and b.completed_at >= t and b.completed_at < t + interval '1 minute'),
     'dead_lettered', (select count(*) from integration.outbox b where b.status = 'failed'
       and b.dead_at >= t and b.dead_at < t + interval '1 minute')) order by t)
   from generate_series(date_trunc('minute', now(), 'UTC') - interval '59 minutes', date_trunc('minute', now(), 'UTC'),
     interval '1 minute') t),
  'each minute counts what the tables hold for it')
from (select ops.console_overview() as o) x;
select ok((m ->> 'received')::int >= 2 and (m ->> 'delivered')::int >= 1 and (m ->> 'dead_lettered')::int >= 1,
  'the minute 10 minutes ago has this test''s two received, one delivered and one dead-lettered events')
from overview, jsonb_array_elements(o #> '{bus,activity}') m where (m ->> 'minute')::timestamptz = :'m10';
select is(o -> 'jobs', (select jsonb_build_object('by_status', jsonb_build_object(
    'queued', count(*) filter (where status = 'queued'), 'running', count(*) filter (where status = 'running'),
    'failed', count(*) filter (where status = 'failed'), 'dead', count(*) filter (where status = 'dead')),
    'oldest_queued_age_seconds', extract(epoch from now() - min(created_at) filter (where status = 'queued'))::int)
  from observability.jobs), 'jobs by open status and the oldest queued')
from (select ops.console_overview() as o) x;

-- Services.
select is((select s - 'samples' - 'service_id' from overview, jsonb_array_elements(o -> 'services') s
    where s ->> 'name' = :'tag' || '-a'),
  jsonb_build_object('name', :'tag' || '-a', 'kind', 'http', 'enabled', true, 'status', 'unknown',
    'last_checked_at', null, 'last_response_time_ms', null, 'consecutive_failures', 0, 'uptime_24h', 0.8571),
  'a service with its 24 h uptime (30 of 35 samples up; the one from two days ago does not count)');
select is((select array_agg((x ->> 'response_time_ms')::int order by n) from overview,
    jsonb_array_elements(o -> 'services') s, jsonb_array_elements(s -> 'samples') with ordinality y(x, n)
    where s ->> 'name' = :'tag' || '-a'),
  (select array_agg(i) from generate_series(6, 35) i), 'its last 30 samples, oldest first');
select is((select array_agg(k order by k) from overview, jsonb_array_elements(o -> 'services') s,
    jsonb_object_keys(s #> '{samples,0}') k where s ->> 'name' = :'tag' || '-a'),
  array['checked_at', 'response_time_ms', 'status'], 'a sample''s fields');
select is((select (s ->> 'service_id')::bigint from overview, jsonb_array_elements(o -> 'services') s
    where s ->> 'name' = :'tag' || '-a'), :svc_a::bigint, 'a service is named by its id');
select is((select s -> 'samples' || jsonb_build_object('uptime', s -> 'uptime_24h') from overview,
    jsonb_array_elements(o -> 'services') s where s ->> 'name' = :'tag' || '-b'),
  '[{"uptime": null}]'::jsonb, 'a service never probed: no samples, no uptime');
select ok((select bool_and(jsonb_array_length(s -> 'samples') <= 30) from overview, jsonb_array_elements(o -> 'services') s),
  'no service has more than 30 samples');
select is((select array_agg(s ->> 'name' order by n) from overview, jsonb_array_elements(o -> 'services') with ordinality x(s, n)),
  (select array_agg(name order by name) from observability.services), 'every service, by name');

-- Runs, approvals, frozen environments.
select is((select r ->> 'status' || ' ' || (r ->> 'requested_by') from overview, jsonb_array_elements(o -> 'runs_in_flight') r
    where r ->> 'run_id' = :'r_prod'), 'awaiting_approval alice-' || :'tag' || '@example.com',
  'the run awaiting approval is in flight');
select is((select array_agg(k order by k) from overview, jsonb_object_keys(o #> '{runs_in_flight,0}') k),
  array['correlation_id', 'env', 'git_sha', 'kind', 'phase', 'project_id', 'queued_at', 'requested_by', 'run_id',
    'started_at', 'status'], 'a run''s fields');
select ok((select jsonb_array_length(o -> 'runs_in_flight') <= 20 from overview)
  and (select bool_and(r ->> 'status' in ('awaiting_approval', 'queued', 'claimed', 'running'))
       from overview, jsonb_array_elements(o -> 'runs_in_flight') r), 'at most 20 runs, none finished');
select is((select r - 'queued_at' - 'requested_at' - 'correlation_id' from overview, jsonb_array_elements(o #> '{approvals,runs}') r
    where r ->> 'run_id' = :'r_prod'),
  jsonb_build_object('run_id', :'r_prod', 'project_id', :'p', 'env', 'production', 'kind', 'deploy',
    'git_sha', 'abcdef1', 'git_ref', 'refs/heads/main', 'requested_by', 'alice-' || :'tag' || '@example.com'),
  'the run awaits approval, with who asked');
select is((select (r ->> 'requested_at')::timestamptz from overview, jsonb_array_elements(o #> '{approvals,runs}') r
    where r ->> 'run_id' = :'r_prod'), (select requested_at from ops.approvals where run_id = :'r_prod'),
  'and when (the approval''s request)');
select is((select a - 'created_at' - 'expires_at' - 'correlation_id' from overview,
    jsonb_array_elements(o #> '{approvals,actions}') a where a ->> 'handle' = :'h_live'),
  jsonb_build_object('handle', :'h_live', 'tool', 'deploy_release', 'arguments',
    jsonb_build_object('project_id', :'p', 'env', 'production', 'git_sha', 'abcdef2'),
    'requested_by', 'agent:' || :'tag', 'requested_via', 'mcp'),
  'an agent''s handle awaits a decision');
select ok(not exists (select 1 from overview, jsonb_array_elements(o #> '{approvals,actions}') a
    where a ->> 'handle' = :'h_expired'), 'an expired handle is not listed');
select is((select f - 'frozen_at' from overview, jsonb_array_elements(o -> 'frozen') f where f ->> 'project_id' = :'p'),
  jsonb_build_object('project_id', :'p', 'env', 'staging', 'frozen_by', 'ops-' || :'tag',
    'frozen_reason', 'incident ' || :'tag'), 'the frozen environment');
select is((select count(*)::int from overview, jsonb_array_elements(o -> 'frozen') f),
  (select count(*)::int from ops.environment_locks where frozen), 'only frozen environments');

-- Campaigns out of sync.
select is((select array_agg(c ->> 'name' order by c ->> 'name') from overview, jsonb_array_elements(o #> '{campaigns,rows}') c
    where c ->> 'workspace_id' = :'ws'),
  array[:'tag' || ' error', :'tag' || ' failing', :'tag' || ' mismatch'],
  'out of sync: a sync error, active on one side only, unresolved sync failures; not in sync, resolved or unlinked');
select is((select c -> 'reasons' from overview, jsonb_array_elements(o #> '{campaigns,rows}') c where c ->> 'id' = :'c_err'),
  '["sync error: n8n said 500"]'::jsonb, 'the reason: the sync error');
select is((select c -> 'reasons' from overview, jsonb_array_elements(o #> '{campaigns,rows}') c where c ->> 'id' = :'c_mismatch'),
  '["status active but n8n inactive"]'::jsonb, 'the reason: active here, not in n8n');
select is((select (c -> 'reasons') || (c -> 'unresolved_sync_failures') from overview,
    jsonb_array_elements(o #> '{campaigns,rows}') c where c ->> 'id' = :'c_fail'),
  '["2 unresolved sync failure(s)", 2]'::jsonb, 'the reason: unresolved sync failures');
select is((select c - 'id' - 'workspace_id' - 'reasons' - 'unresolved_sync_failures' from overview,
    jsonb_array_elements(o #> '{campaigns,rows}') c where c ->> 'id' = :'c_err'),
  jsonb_build_object('name', :'tag' || ' error', 'workspace', 'ws-' || :'tag', 'status', 'paused',
    'n8n_status', 'inactive', 'sync_error', 'n8n said 500', 'last_sync_at', null), 'a campaign''s fields');
select is((o #>> '{campaigns,out_of_sync}')::int, (select count(*)::int from campaigns.campaigns c
    where c.n8n_workflow_id is not null and (c.sync_error is not null or (c.status = 'active') <> (c.n8n_status = 'active')
      or exists (select 1 from campaigns.sync_failures f where f.campaign_id = c.id and f.resolved_at is null))),
  'out_of_sync counts every linked campaign out of sync')
from (select ops.console_overview() as o) x;
select ok((select jsonb_array_length(o #> '{campaigns,rows}') <= 10 from overview), 'at most 10 rows');

-- Who may read the overview: an operator, not another user (above).
set local role authenticated;
select set_config('request.jwt.claims', :'jwt_op', true) \g /dev/null
select is((select jsonb_array_length(ops.console_overview() #> '{bus,activity}')), 60, 'an operator reads the overview');
reset role;
set local request.jwt.claims = '';

-- ------------------------------------------------------------ receipts

-- An event the router holds; settling it with the receiver's receipt keeps it.
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
  correlation_id, status, attempts, lock_token, locked_by, locked_at, lease_expires_at)
values ('pgtap', 'rcpt-' || :'tag', :'tag' || '.receipt', 't', '1', '{}', 'cid-rcpt-' || :'tag', 'processing', 1,
  gen_random_uuid(), 'pgtap-router', now(), now() + interval '1 minute')
returning id as rcpt_id, lock_token as rcpt_token \gset
select throws_ok(format($$ select integration.settle_outbox(jsonb_build_array(jsonb_build_object(
    'id', %L, 'lease_token', %L, 'ok', true, 'receipt', '["4711"]'::jsonb))) $$, :'rcpt_id', :'rcpt_token'),
  'PT422', 'validation_failed', 'a receipt that is not an object is refused');
select throws_ok(format($$ select integration.settle_outbox(jsonb_build_array(jsonb_build_object(
    'id', %L, 'lease_token', %L, 'ok', true, 'receipt', jsonb_build_object('execution_id', repeat('x', 600))))) $$,
    :'rcpt_id', :'rcpt_token'),
  'PT422', 'validation_failed', 'so is a receipt over 500 characters');
select is(integration.settle_outbox(jsonb_build_array(jsonb_build_object('id', :'rcpt_id', 'lease_token', :'rcpt_token',
    'ok', true, 'receipt', '{"execution_id":"4711","workflow_id":"wf1"}'::jsonb))) ->> 'acked', '1',
  'an acknowledgement with a receipt settles');
select is((select receipt from integration.outbox_and_archive where id = :'rcpt_id'), '{"execution_id":"4711","workflow_id":"wf1"}'::jsonb,
  'the receipt is kept on the event');
select is((select detail -> 'receipt' from ops.get_trace('cid-rcpt-' || :'tag') where kind = 'outbox.delivered'),
  '{"execution_id":"4711","workflow_id":"wf1"}'::jsonb, 'the trace''s delivery step carries it');
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
  correlation_id, status, attempts, lock_token, locked_by, locked_at, lease_expires_at)
values ('pgtap', 'rcpt2-' || :'tag', :'tag' || '.receipt', 't', '2', '{}', 'cid-rcpt-' || :'tag', 'processing', 2,
  gen_random_uuid(), 'pgtap-router', now(), now() + interval '1 minute')
returning id as rcpt2_id, lock_token as rcpt2_token \gset
select integration.settle_outbox(jsonb_build_array(jsonb_build_object('id', :'rcpt2_id', 'lease_token', :'rcpt2_token',
  'ok', true))) \g /dev/null
select is((select status || '/' || coalesce(receipt::text, 'none') from integration.outbox_and_archive where id = :'rcpt2_id'),
  'completed/none', 'an acknowledgement without a receipt (a redelivery answered plainly) keeps none');

select * from finish();
rollback;
