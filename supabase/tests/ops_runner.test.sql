-- ops runner: queueing (queued or awaiting approval, idempotency, who is
-- acting), the seed's Integration Testing block, claims (queue order, one run
-- per environment, frozen environments, expired leases, the lease expiry
-- limit, yields), fencing by lease token, phases and artifacts, finishing,
-- cancelling, approvals, requeues, rollbacks, waking the runner through
-- pg_net (coalesced, fanned out, capped at max_runners) and the trace.
-- Privileges and RLS: ops_runner_privileges.test.sql.
begin;
-- The dev database is shared (an ops-runner may be working runs of a
-- test-project). ops.runs is held against writers and row locks until the
-- rollback (readers go on; a runner's calls wait for this test, a second or
-- so): no run another session queues or moves meanwhile can reach the claims
-- here, and no session holds a run's row while waiting for this one. The trigger that wakes
-- the runner is enabled (a benchmark disables it for a while). A known signal
-- and settings; every run that has not ended parked, so claims, busy runners
-- and wake-ups see only this test's runs; a runner registered at a port nobody
-- listens on (pg_net sends nothing before commit anyway). All of it is rolled
-- back.
lock table ops.runs in exclusive mode;
do $$
begin
  if exists (select 1 from pg_trigger where tgrelid = 'ops.runs'::regclass and tgname = 'runs_trigger_runner'
             and tgenabled = 'D') then
    alter table ops.runs enable trigger runs_trigger_runner;
  end if;
end $$;
update ops.runner_signal set wake_pending_until = null, wakes_sent = 0, wakes_coalesced = 0, last_wake_at = null,
  last_wake_reason = null;
update ops.settings set lease_seconds = 60, max_runners = 4, wake_window_seconds = 300, max_lease_expiries = 3;
update ops.runs set status = 'cancelled', finished_at = now(), lease_token = null, lease_expires_at = null
where status in ('awaiting_approval', 'queued', 'claimed', 'running');
select edge.configure_function('ops-runner', 'http://127.0.0.1:9/functions/v1/ops-runner', 'syi_' || repeat('a', 40))
\g /dev/null
set search_path = extensions, public;
select plan(292);

-- Projects unique to this run: P (the default four phases, production
-- protected), R (build and deploy, nothing protected) for rollbacks.
select 'pgtap-' || substr(md5(random()::text), 1, 10) as p \gset
select :'p' || '-r' as rp, 'http://127.0.0.1:9/functions/v1/ops-runner' as url, session_user as me \gset
insert into ops.projects (project_id, name, repository) values (:'p', 'pgTAP ops runner', 'example/switchyard');
insert into ops.projects (project_id, name, repository, phases, protected_envs)
values (:'rp', 'pgTAP rollbacks', 'example/rollbacks',
  '[{"name": "build", "provider": "github-actions"}, {"name": "deploy", "provider": "github-deployments"}]', '{}');

-- A refusal as 'SQLSTATE message hint'.
\ir lib/refusal.sql
create function pg_temp.q(p_project text, p_env text, p_sha text default 'abcdef1', p_key text default null)
returns text language sql as $$
  select ops.queue_run(p_project, p_env, p_sha, 'refs/heads/main', p_idempotency_key => p_key) ->> 'run_id'
$$;
-- The claim's row, or null when nothing was claimable.
create function pg_temp.claim(p_worker text, p_lease integer default null) returns jsonb language sql as $$
  select c from ops.claim_next_run(p_worker, p_lease) c
$$;
create function pg_temp.events(p_run text) returns text[] language sql as $$
  select coalesce(array_agg(e.level || ':' || e.message order by e.id), '{}') from ops.run_events e where e.run_id = p_run
$$;
create function pg_temp.last_event(p_run text) returns text language sql as $$
  select e.level || ':' || e.message from ops.run_events e where e.run_id = p_run order by e.id desc limit 1
$$;
-- status/phase/invocations/lease_expiries/claimed_by
create function pg_temp.state(p_run text) returns text language sql as $$
  select concat_ws('/', r.status, coalesce(r.phase, '-'), r.invocations, r.lease_expiries, coalesce(r.claimed_by, '-'))
  from ops.runs r where r.run_id = p_run
$$;
-- Everything a refused call must leave as it was.
create function pg_temp.snap(p_run text) returns text language sql as $$
  select concat_ws(' | ', r.status, r.phase, r.progress::text, r.lease_token::text, r.lease_expires_at::text,
    r.finished_at::text, r.cancel_requested_at::text, r.error,
    (select count(*) from ops.run_events e where e.run_id = p_run),
    (select count(*) from ops.artifacts a where a.run_id = p_run),
    (select string_agg(l.project_id || '/' || l.env || '=' || coalesce(l.run_id, '-'), ',') from ops.environment_locks l
     where l.project_id = r.project_id))
  from ops.runs r where r.run_id = p_run
$$;
create function pg_temp.lease(p_run text) returns uuid language sql as $$
  select r.lease_token from ops.runs r where r.run_id = p_run
$$;
-- Every phase of the run's project that is not done: started and completed
-- (the build with p_build_output).
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
-- Ends every run not yet ended (the parked ones are ended already): what
-- waits is cancelled, what is leased is finished cancelled with its token,
-- a started run nobody holds is finished cancelled without one.
create function pg_temp.settle() returns integer language plpgsql as $$
declare v_run ops.runs; v_n integer := 0;
begin
  for v_run in select * from ops.runs r where r.status in ('awaiting_approval', 'queued', 'claimed', 'running')
  loop
    if v_run.lease_expires_at > now() then
      perform ops.finish_run(v_run.run_id, 'cancelled', '{}', v_run.lease_token, 'pgtap: settled');
    elsif v_run.status in ('claimed', 'running') then
      perform ops.finish_run(v_run.run_id, 'cancelled', '{}', null, 'pgtap: settled');
    else
      perform ops.cancel_run(v_run.run_id, 'pgtap: settled');
    end if;
    v_n := v_n + 1;
  end loop;
  return v_n;
end $$;
create function pg_temp.wakes() returns integer language sql as $$
  select count(*)::integer from net.http_request_queue q where q.url = 'http://127.0.0.1:9/functions/v1/ops-runner'
$$;
create function pg_temp.last_wake() returns jsonb language sql as $$
  select jsonb_build_object('method', q.method, 'headers', q.headers, 'body', convert_from(q.body, 'UTF8')::jsonb)
  from net.http_request_queue q where q.url = 'http://127.0.0.1:9/functions/v1/ops-runner' order by q.id desc limit 1
$$;
create function pg_temp.signal() returns text language sql as $$
  select concat_ws('/', s.wakes_sent, s.wakes_coalesced, coalesce(s.wake_pending_until > clock_timestamp(), false)::text,
    coalesce(s.last_wake_reason, '-'))
  from ops.runner_signal s
$$;
-- The run_failed alert of a project/environment: correlation id, count, run.
create function pg_temp.alert(p_subject text) returns text language sql as $$
  select concat_ws('/', o.event_type, o.correlation_id, o.payload ->> 'count', o.payload -> 'details' ->> 'run_id')
  from integration.outbox o
  where o.source = 'switchyard' and o.event_type like 'alert.%' and o.aggregate_id = p_subject
$$;

-- ---------------------------------------------------------------- queue_run

create temp table first_call as select ops.queue_run(:'p', 'dev', 'abcdef1', 'refs/heads/main',
  p_metadata => '{"ticket": "OPS-1"}', p_correlation_id => 'cid-' || :'p', p_idempotency_key => 'deploy-1') as r;
select r ->> 'run_id' as r_first from first_call \gset
select is((select array_agg(k order by k) from first_call, jsonb_object_keys(r) k),
  array['approval_required', 'correlation_id', 'duplicate', 'run_id', 'status'], 'queue_run returns its five keys');
select is((select r - 'run_id' from first_call),
  jsonb_build_object('status', 'queued', 'correlation_id', 'cid-' || :'p', 'approval_required', false, 'duplicate', false),
  'a run to an unprotected environment is queued at once');
select matches(:'r_first'::text, '^run-[a-z0-9]{20}$', 'the run id is run- and 20 characters');
select is((select row(project_id, env, git_sha, git_ref, kind, status, requested_by, metadata ->> 'ticket',
    rollback_of is null and requeue_of is null and lease_token is null and finished_at is null)::text
  from ops.runs where run_id = :'r_first'),
  row(:'p', 'dev', 'abcdef1', 'refs/heads/main', 'deploy', 'queued', :'me', 'OPS-1', true)::text,
  'the run is stored as given; a direct connection acts as the database user');
select is(pg_temp.events(:'r_first'), array['info:Run queued by ' || :'me'], 'its first event: queued');
select is((select actor || ' ' || correlation_id || ' ' || (payload ->> 'git_sha') || ' ' || (payload ->> 'env')
  from ops.run_events where run_id = :'r_first'), :'me' || ' cid-' || :'p' || ' abcdef1 dev',
  'the event names the requester, carries the correlation id and what is deployed');
select is(ops.queue_run(:'p', 'dev', 'abcdef1', 'refs/heads/main', p_idempotency_key => 'deploy-1'),
  jsonb_build_object('run_id', :'r_first', 'status', 'queued', 'correlation_id', 'cid-' || :'p',
    'approval_required', false, 'duplicate', true),
  'the same run under the same key is a duplicate: the first run');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef2', 'refs/heads/main',
  p_idempotency_key => 'deploy-1') $$, :'p')), 'PT409 idempotency_conflict', 'the key with another sha is idempotency_conflict');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'staging', 'abcdef1', 'refs/heads/main',
  p_idempotency_key => 'deploy-1') $$, :'p')), 'PT409 idempotency_conflict', 'the key with another environment too');
select is((select count(*)::integer from ops.runs where project_id = :'p') || '/' || array_length(pg_temp.events(:'r_first'), 1),
  '1/1', 'a duplicate and a conflict write nothing');
select isnt(pg_temp.q(:'p', 'dev'), pg_temp.q(:'p', 'dev'), 'without a key every call is a new run');
select ok((select bool_and(correlation_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
  from ops.runs where project_id = :'p' and run_id <> :'r_first'), 'without a correlation id a run gets a new UUID');

create temp table protected_call as select ops.queue_run(:'p', 'production', 'abcdef1', 'refs/heads/main') as r;
select r ->> 'run_id' as r_prod from protected_call \gset
select is((select r - 'run_id' - 'correlation_id' from protected_call),
  '{"status": "awaiting_approval", "approval_required": true, "duplicate": false}'::jsonb,
  'a run to a protected environment awaits approval');
select is(pg_temp.events(:'r_prod'), array['info:Run queued by ' || :'me',
  'info:Waiting for approval: production is a protected environment'], 'its events: queued, waiting for approval');
select is((select status || '/' || requested_by || '/' || (decided_at is null)::text from ops.approvals where run_id = :'r_prod'),
  'pending/' || :'me' || '/true', 'an approval is requested');

-- Every bad argument is validation_failed naming it, and writes nothing.
select count(*) as n_runs from ops.runs where project_id = :'p' \gset
select is(pg_temp.refusal($$ select ops.queue_run('pgtap-no-such-project', 'dev', 'abcdef1', 'refs/heads/main') $$),
  'PT422 validation_failed p_project_id', 'an unknown project');
select is(pg_temp.refusal($$ select ops.queue_run(null, 'dev', 'abcdef1', 'refs/heads/main') $$),
  'PT422 validation_failed p_project_id', 'no project');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'Dev', 'abcdef1', 'refs/heads/main') $$, :'p')),
  'PT422 validation_failed p_env', 'an environment in capitals');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, null, 'abcdef1', 'refs/heads/main') $$, :'p')),
  'PT422 validation_failed p_env', 'no environment');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'ABCDEF1', 'refs/heads/main') $$, :'p')),
  'PT422 validation_failed p_git_sha', 'a sha in capitals');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abc123', 'refs/heads/main') $$, :'p')),
  'PT422 validation_failed p_git_sha', 'a sha under 7 digits');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'main', 'refs/heads/main') $$, :'p')),
  'PT422 validation_failed p_git_sha', 'a branch name as sha');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', '') $$, :'p')),
  'PT422 validation_failed p_git_ref', 'an empty ref');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/a' || chr(10) || 'b') $$, :'p')),
  'PT422 validation_failed p_git_ref', 'a ref with a control character');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/main', '') $$, :'p')),
  'PT422 validation_failed p_requested_by', 'an empty requester');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/main', repeat('x', 201)) $$, :'p')),
  'PT422 validation_failed p_requested_by', 'a requester over 200 characters');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/main', p_metadata => '[1]') $$, :'p')),
  'PT422 validation_failed p_metadata', 'metadata that is not an object');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/main',
  p_correlation_id => repeat('c', 129)) $$, :'p')), 'PT422 validation_failed p_correlation_id', 'a correlation id over 128 characters');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/main', p_correlation_id => '') $$, :'p')),
  'PT422 validation_failed p_correlation_id', 'an empty correlation id');
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/main', p_idempotency_key => '') $$, :'p')),
  'PT422 validation_failed p_idempotency_key', 'an empty idempotency key');
select is((select count(*) from ops.runs where project_id = :'p'), :'n_runs'::bigint, 'refused calls wrote nothing');

-- Who is acting. The service role names the person it acts for.
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.queue_run(:'p', 'dev', 'abcdef1', 'refs/heads/main', 'alice@example.com') ->> 'run_id' as r_svc \gset
select ops.queue_run(:'p', 'dev', 'abcdef1', 'refs/heads/main') ->> 'run_id' as r_svc_anonymous \gset
-- An operator is named by their JWT, whatever they pass.
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000b0", "email": "op@example.com", "app_metadata": {"role": "operator"}}';
select ops.queue_run(:'p', 'dev', 'abcdef1', 'refs/heads/main', 'mallory@example.com') ->> 'run_id' as r_op \gset
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/main', '') $$, :'p')),
  'accepted', 'an operator''s p_requested_by is not even read');
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000b1", "app_metadata": {"role": "operator"}}';
select ops.queue_run(:'p', 'dev', 'abcdef1', 'refs/heads/main') ->> 'run_id' as r_op_sub \gset
-- A signed-up user who is not an operator, and anon.
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000b2", "email": "user@example.com", "app_metadata": {"provider": "email"}}';
select is(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/main') $$, :'p')),
  'PT403 forbidden', 'a signed-in user who is not an operator is refused');
set local role anon;
set local request.jwt.claims = '{"role": "anon"}';
select is(left(pg_temp.refusal(format($$ select ops.queue_run(%L, 'dev', 'abcdef1', 'refs/heads/main') $$, :'p')), 5),
  '42501', 'anon cannot execute queue_run');
reset role;
set local request.jwt.claims = '';
select is((select requested_by from ops.runs where run_id = :'r_svc'), 'alice@example.com',
  'the service role: requested_by is p_requested_by');
select is((select requested_by from ops.runs where run_id = :'r_svc_anonymous'), 'service_role',
  'the service role naming nobody: service_role');
select is((select requested_by || ' ' || (select actor from ops.run_events e where e.run_id = r.run_id)
  from ops.runs r where run_id = :'r_op'), 'op@example.com op@example.com',
  'an operator: their JWT email, in the run and its event, even with p_requested_by given');
select is((select requested_by from ops.runs where run_id = :'r_op_sub'), '00000000-0000-4000-8000-0000000000b1',
  'an operator without an email: their JWT sub');
select is((select count(*)::integer from ops.runs where project_id = :'p' and requested_by = 'user@example.com'), 0,
  'the refused user queued nothing');

-- --------------------------------------------- the seed's Integration Testing

insert into ops.projects (project_id, name, repository) values ('test-project', 'Test project', 'example/test-project')
on conflict do nothing;
create temp table seed_call as
-- Queue test run
SELECT ops.queue_run(
  p_project_id := 'test-project',
  p_env := 'dev',
  p_git_sha := 'abc123def456',
  p_git_ref := 'refs/heads/feature/test'
) as r;
select r ->> 'run_id' as r_seed from seed_call \gset
select is((select r ->> 'status' from seed_call), 'queued', 'the seed''s queue_run with named arguments queues a run');
select results_eq($$
-- Verify run completed
SELECT run_id, status, finished_at
FROM ops.runs
WHERE project_id = 'test-project'
ORDER BY queued_at DESC
LIMIT 1;
$$, format($$ values (%L::text, 'queued'::text, null::timestamptz) $$, :'r_seed'),
  'the seed''s first verify query finds the run');
select results_eq($$
-- Verify events logged
SELECT level, message
FROM ops.run_events
WHERE run_id = (
  SELECT run_id FROM ops.runs
  WHERE project_id = 'test-project'
  ORDER BY queued_at DESC
  LIMIT 1
);
$$, format($$ values ('info'::text, %L::text) $$, 'Run queued by ' || :'me'),
  'the seed''s second verify query finds its event');

-- ------------------------------------------------------------------ cancel

select is(ops.cancel_run(:'r_first', 'superseded', 'ops@example.com'),
  jsonb_build_object('run_id', :'r_first', 'status', 'cancelled', 'cancel_requested', false),
  'a queued run is cancelled at once');
select is((select row(status, error, finished_at is not null, cancel_requested_by)::text from ops.runs where run_id = :'r_first'),
  '(cancelled,"cancelled by ops@example.com: superseded",t,ops@example.com)', 'with who and why');
select is(pg_temp.last_event(:'r_first'), 'warn:Run cancelled: cancelled by ops@example.com: superseded',
  'and a warn event');
select is(ops.cancel_run(:'r_prod', 'not this week') ->> 'status', 'cancelled', 'a run awaiting approval is cancelled at once');
select is((select status || '/' || decided_by from ops.approvals where run_id = :'r_prod'), 'withdrawn/' || :'me',
  'its approval is withdrawn');
select is(pg_temp.refusal(format($$ select ops.cancel_run(%L, 'again') $$, :'r_first')), 'PT409 invalid_state',
  'an ended run is not cancelled');
select is(pg_temp.refusal($$ select ops.cancel_run('run-nosuchrun', 'why') $$), 'PT422 validation_failed p_run_id',
  'an unknown run');
select is(pg_temp.refusal(format($$ select ops.cancel_run(%L, '') $$, :'r_svc')), 'PT422 validation_failed p_reason',
  'cancel without a reason');
select is(pg_temp.refusal(format($$ select ops.cancel_run(%L, 'why', '') $$, :'r_svc')),
  'PT422 validation_failed p_requested_by', 'cancel with an empty requester');
select is(pg_temp.state(:'r_svc'), 'queued/-/0/0/-', 'refused cancels change nothing');
select cmp_ok(pg_temp.settle(), '>', 0, 'the queued runs so far are cancelled');
select ok(not ops.has_claimable_run(), 'nothing is claimable now');

-- ------------------------------------------------------------------- claims

select is(pg_temp.refusal($$ select ops.claim_next_run('') $$), 'PT422 validation_failed p_worker_id', 'claim without a worker');
select is(pg_temp.refusal($$ select ops.claim_next_run(null) $$), 'PT422 validation_failed p_worker_id', 'claim with a null worker');
select is(pg_temp.refusal($$ select ops.claim_next_run(repeat('w', 101)) $$), 'PT422 validation_failed p_worker_id',
  'claim with a worker id over 100 characters');
select is(pg_temp.refusal($$ select ops.claim_next_run('w', 4) $$), 'PT422 validation_failed p_lease_seconds', 'a 4 s lease');
select is(pg_temp.refusal($$ select ops.claim_next_run('w', 3601) $$), 'PT422 validation_failed p_lease_seconds',
  'a lease over an hour');
select is(pg_temp.claim('worker-a'), null, 'nothing claimable: no row');

select pg_temp.q(:'p', 'dev', '1111111') as r1 \gset
select pg_temp.q(:'p', 'dev', '2222222') as r2 \gset
select pg_temp.q(:'p', 'staging', '3333333') as r3 \gset
create temp table c1 as select pg_temp.claim('worker-a') as c;
select c ->> 'lease_token' as t1 from c1 \gset
select is((select c ->> 'run_id' from c1), :'r1', 'claim_next_run takes the oldest queued run');
select is((select c - 'lease_token' - 'lease_expires_at' from c1), jsonb_build_object(
    'run_id', :'r1', 'project_id', :'p', 'repository', 'example/switchyard', 'env', 'dev', 'git_sha', '1111111',
    'git_ref', 'refs/heads/main', 'kind', 'deploy', 'rollback_of', null, 'status', 'claimed', 'phase', null,
    'phases', (select phases from ops.projects where project_id = :'p'), 'progress', '{}'::jsonb, 'invocation', 1,
    'resumed', false, 'correlation_id', (select correlation_id from ops.runs where run_id = :'r1'), 'metadata', '{}'::jsonb),
  'the claim returns the run, its phases and progress');
select is((select (c ->> 'lease_expires_at')::timestamptz from c1), now() + interval '60 seconds',
  'with a lease of the settings'' lease_seconds');
select is((select row(status, claimed_by, lease_token::text, lease_expires_at = now() + interval '60 seconds',
    claimed_at = now(), invocations)::text from ops.runs where run_id = :'r1'),
  row('claimed', 'worker-a', :'t1', true, true, 1)::text, 'the run is claimed by the worker under that token');
select is((select run_id from ops.environment_locks where project_id = :'p' and env = 'dev'), :'r1',
  'the run holds its environment');
select is(pg_temp.last_event(:'r1'), 'info:Claimed by worker-a', 'the claim is an event');
select is(pg_temp.claim('worker-b') ->> 'run_id', :'r3', 'another environment is claimed in parallel');
select pg_temp.lease(:'r3') as t3 \gset
select is(pg_temp.claim('worker-c'), null, 'a second run for a held environment is not claimed');
select is(pg_temp.state(:'r2'), 'queued/-/0/0/-', 'it stays queued');
select ok(not ops.has_claimable_run(), 'has_claimable_run agrees');

-- -------------------------------------------------------- fencing and phases

select pg_temp.snap(:'r1') as snap_r1 \gset
select is(pg_temp.refusal(format($$ select ops.start_phase(%L, gen_random_uuid(), 'build') $$, :'r1')),
  'PT409 stale_lease', 'start_phase with a wrong token is stale_lease');
select is(pg_temp.refusal(format($$ select ops.start_phase(%L, %L, 'build') $$, :'r1', :'t3')),
  'PT409 stale_lease', 'and with another run''s token');
select is(pg_temp.refusal(format($$ select ops.start_phase(%L, null, 'build') $$, :'r1')),
  'PT422 validation_failed p_lease_token', 'start_phase without a token');
select is(pg_temp.refusal(format($$ select ops.start_phase('run-nosuchrun', %L, 'build') $$, :'t1')),
  'PT422 validation_failed p_run_id', 'start_phase of an unknown run');
select is(pg_temp.refusal(format($$ select ops.start_phase(%L, %L, 'Build') $$, :'r1', :'t1')),
  'PT422 validation_failed p_phase', 'a phase that is not a phase name');
select is(pg_temp.refusal(format($$ select ops.start_phase(%L, %L, 'build', 1) $$, :'r1', :'t1')),
  'PT422 validation_failed p_lease_seconds', 'a 1 s lease');
select is(pg_temp.snap(:'r1'), :'snap_r1', 'refused starts changed nothing');
select is(ops.start_phase(:'r1', :'t1', 'build', 120),
  jsonb_build_object('lease_expires_at', now() + interval '120 seconds', 'cancel_requested', false),
  'start_phase answers the renewed lease and no cancel');
select is((select row(status, phase, started_at is not null, progress -> 'build' -> 'state')::text from ops.runs where run_id = :'r1'),
  '(running,build,t,{})', 'the run is running at the phase, with an empty state');
select is(ops.start_phase(:'r1', :'t1', 'build') ->> 'cancel_requested', 'false', 'starting it again is accepted');
select is((select count(*)::integer from ops.run_events where run_id = :'r1' and message = 'Starting build'), 1,
  'and writes one "Starting build" event in all');
select is(pg_temp.refusal(format($$ select ops.save_progress(%L, %L, 'deploy', '{}') $$, :'r1', :'t1')),
  'PT409 invalid_state', 'save_progress on a phase not started is invalid_state');
select is(pg_temp.refusal(format($$ select ops.save_progress(%L, %L, null, '{}') $$, :'r1', :'t1')),
  'PT422 validation_failed p_phase', 'save_progress without a phase');
select is(pg_temp.refusal(format($$ select ops.save_progress(%L, %L, 'build', '[1]') $$, :'r1', :'t1')),
  'PT422 validation_failed p_state', 'a state that is not an object');
select is(pg_temp.refusal(format($$ select ops.save_progress(%L, gen_random_uuid(), 'build', '{"x": 1}') $$, :'r1')),
  'PT409 stale_lease', 'save_progress with a wrong token');
select is(ops.save_progress(:'r1', :'t1', 'build', '{"github_run_id": 42}') ->> 'cancel_requested', 'false',
  'save_progress stores the provider''s state');
select is((select progress -> 'build' -> 'state' from ops.runs where run_id = :'r1'), '{"github_run_id": 42}'::jsonb,
  'under the phase');
select is(pg_temp.refusal(format($$ select ops.heartbeat_run(%L, gen_random_uuid()) $$, :'r1')),
  'PT409 stale_lease', 'heartbeat with a wrong token');
select is(ops.heartbeat_run(:'r1', :'t1', 300) ->> 'lease_expires_at', to_jsonb(now() + interval '300 seconds') #>> '{}',
  'heartbeat renews the lease');
select pg_temp.snap(:'r1') as snap_r1 \gset
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, gen_random_uuid(), 'build') $$, :'r1')),
  'PT409 stale_lease', 'complete_phase with a wrong token');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, 'deploy') $$, :'r1', :'t1')),
  'PT409 invalid_state', 'complete_phase of a phase not started');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, null) $$, :'r1', :'t1')),
  'PT422 validation_failed p_phase', 'complete_phase without a phase');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, 'build', '[1]') $$, :'r1', :'t1')),
  'PT422 validation_failed p_output', 'an output that is not an object');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, 'build', '{}', '{}') $$, :'r1', :'t1')),
  'PT422 validation_failed p_artifacts', 'artifacts that are not an array');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, 'build', '{}', '[{"kind": "Image", "name": "x"}]') $$,
  :'r1', :'t1')), 'PT422 validation_failed p_artifacts', 'an artifact kind that is not a name');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, 'build', '{}', '[{"kind": "image"}]') $$,
  :'r1', :'t1')), 'PT422 validation_failed p_artifacts', 'an artifact without a name');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, 'build', '{}',
  '[{"kind": "image", "name": "x", "metadata": [1]}]') $$, :'r1', :'t1')), 'PT422 validation_failed p_artifacts',
  'artifact metadata that is not an object');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, 'build', '{}',
  jsonb_build_array(jsonb_build_object('kind', 'image', 'name', 'x', 'url', repeat('u', 2001)))) $$, :'r1', :'t1')),
  'PT422 validation_failed p_artifacts', 'an artifact url over 2000 characters');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, 'build', '{}', '["x"]') $$, :'r1', :'t1')),
  'PT422 validation_failed p_artifacts', 'an artifact that is not an object');
select is(pg_temp.snap(:'r1'), :'snap_r1', 'refused completions changed nothing');
select is(ops.complete_phase(:'r1', :'t1', 'build', '{"image_digest": "sha256:aaa"}',
  '[{"kind": "image", "name": "ghcr.io/example/switchyard:1111111", "digest": "sha256:aaa"},
    {"kind": "build_log", "name": "build.log", "url": "https://github.com/example/switchyard/actions/runs/42"}]')
  ->> 'cancel_requested', 'false', 'complete_phase with its output and artifacts');
select is((select (progress -> 'build') - 'started_at' - 'finished_at' from ops.runs where run_id = :'r1'),
  '{"done": true, "output": {"image_digest": "sha256:aaa"}}'::jsonb, 'the phase is done with its output');
select ok((select (progress -> 'build' ->> 'finished_at')::timestamptz >= (progress -> 'build' ->> 'started_at')::timestamptz
  from ops.runs where run_id = :'r1'), 'and its start and finish times');
select is((select array_agg(kind || ':' || name || ':' || phase || ':' || coalesce(digest, url) order by kind)
  from ops.artifacts where run_id = :'r1'),
  array['build_log:build.log:build:https://github.com/example/switchyard/actions/runs/42',
        'image:ghcr.io/example/switchyard:1111111:build:sha256:aaa'], 'the artifacts are recorded');
select is((select message || ' ' || (payload ->> 'artifacts') || ' ' || (payload -> 'output' ->> 'image_digest') || ' '
    || ((payload ->> 'duration_ms')::numeric >= 0)::text || ' ' || phase
  from ops.run_events where run_id = :'r1' order by id desc limit 1), 'Completed build 2 sha256:aaa true build',
  'a "Completed build" event with its duration, output and artifact count');
select is(pg_temp.refusal(format($$ select ops.complete_phase(%L, %L, 'build') $$, :'r1', :'t1')),
  'PT409 invalid_state', 'a done phase is not completed again');
select is(pg_temp.refusal(format($$ select ops.save_progress(%L, %L, 'build', '{}') $$, :'r1', :'t1')),
  'PT409 invalid_state', 'nor is its progress saved');
select is(ops.start_phase(:'r1', :'t1', 'build') ->> 'cancel_requested', 'false', 'starting a done phase again changes nothing');
select is((select progress -> 'build' ->> 'done' from ops.runs where run_id = :'r1'), 'true', 'it stays done');
select ops.start_phase(:'r1', :'t1', 'deploy') \g /dev/null
select is(ops.complete_phase(:'r1', :'t1', 'deploy', '{"url": "https://dev.example.com"}',
  '[{"kind": "deployment", "name": "dev"},
    {"kind": "image", "name": "ghcr.io/example/switchyard:1111111", "digest": "sha256:bbb"},
    {"kind": "deployment", "name": "dev", "url": "https://dev.example.com"}]') ->> 'cancel_requested', 'false',
  'an artifact recorded again, and twice in one call, is accepted');
select is((select array_agg(kind || ':' || phase || ':' || coalesce(digest, url, '-') order by kind)
  from ops.artifacts where run_id = :'r1'),
  array['build_log:build:https://github.com/example/switchyard/actions/runs/42', 'deployment:deploy:https://dev.example.com',
        'image:deploy:sha256:bbb'], 'one row per (run, kind, name), as last recorded');

-- ---------------------------------------------------------------- finish_run

select is(pg_temp.refusal(format($$ select ops.finish_run(%L, 'success', p_lease_token => %L) $$, :'r1', :'t1')),
  'PT409 invalid_state', 'success is refused while a phase is not done');
select is(pg_temp.refusal(format($$ select ops.finish_run(%L, 'success') $$, :'r1')),
  'PT409 stale_lease', 'a leased run is not finished without its token');
select is(pg_temp.refusal(format($$ select ops.finish_run(%L, 'failed', p_lease_token => gen_random_uuid()) $$, :'r1')),
  'PT409 stale_lease', 'nor with a wrong token');
select is(pg_temp.refusal(format($$ select ops.yield_run(%L, gen_random_uuid()) $$, :'r1')),
  'PT409 stale_lease', 'nor yielded with one');
select is(pg_temp.refusal(format($$ select ops.finish_run(%L, 'done', p_lease_token => %L) $$, :'r1', :'t1')),
  'PT422 validation_failed p_status', 'a status that does not end a run');
select is(pg_temp.refusal(format($$ select ops.finish_run(%L, null, p_lease_token => %L) $$, :'r1', :'t1')),
  'PT422 validation_failed p_status', 'no status');
select is(pg_temp.refusal(format($$ select ops.finish_run(%L, 'failed', '[1]', %L) $$, :'r1', :'t1')),
  'PT422 validation_failed p_metadata', 'metadata that is not an object');
select is(pg_temp.refusal(format($$ select ops.finish_run(%L, 'failed', '{}', %L, repeat('e', 4001)) $$, :'r1', :'t1')),
  'PT422 validation_failed p_error', 'an error over 4000 characters');
select is(pg_temp.refusal($$ select ops.finish_run('run-nosuchrun', 'failed') $$), 'PT422 validation_failed p_run_id',
  'an unknown run');
select pg_temp.drive(:'r1', :'t1') \g /dev/null
select is(ops.finish_run(:'r1', 'success', '{"worker_id": "worker-a", "phases_completed": 4}', :'t1'),
  jsonb_build_object('run_id', :'r1', 'status', 'success'), 'with every phase done the run succeeds');
select is((select row(status, error, finished_at is not null, lease_token, lease_expires_at, metadata)::text
  from ops.runs where run_id = :'r1'), '(success,,t,,,"{""worker_id"": ""worker-a"", ""phases_completed"": 4}")',
  'finished, its lease released, the metadata merged');
select is(pg_temp.last_event(:'r1'), 'info:Run succeeded', 'the last event');
select is((select coalesce(run_id, 'free') from ops.environment_locks where project_id = :'p' and env = 'dev'), 'free',
  'the environment is released');
select is(pg_temp.refusal(format($$ select ops.finish_run(%L, 'failed', p_lease_token => %L) $$, :'r1', :'t1')),
  'PT409 stale_lease', 'finishing an ended run is stale_lease');
select is(pg_temp.refusal(format($$ select ops.finish_run(%L, 'failed') $$, :'r1')),
  'PT409 stale_lease', 'with or without a token');
select is(pg_temp.refusal(format($$ select ops.heartbeat_run(%L, %L) $$, :'r1', :'t1')),
  'PT409 stale_lease', 'the old token writes nothing more');
select is(pg_temp.claim('worker-c') ->> 'run_id', :'r2', 'the next run for the released environment is claimed');
select pg_temp.lease(:'r2') as t2 \gset

-- ------------------------------------------------- a cancel while leased

select is(ops.cancel_run(:'r3', 'superseded by r2', 'ops@example.com'),
  jsonb_build_object('run_id', :'r3', 'status', 'claimed', 'cancel_requested', true),
  'a leased run: the cancel is requested');
select is((select row(status, cancel_requested_by, cancel_requested_at is not null, finished_at is null)::text
  from ops.runs where run_id = :'r3'), '(claimed,ops@example.com,t,t)', 'the run goes on until its runner stops');
select is(pg_temp.last_event(:'r3'), 'warn:Cancel requested by ops@example.com: superseded by r2', 'the request is an event');
select is(ops.heartbeat_run(:'r3', :'t3') ->> 'cancel_requested', 'true', 'the next heartbeat answers cancel_requested');
select ops.start_phase(:'r3', :'t3', 'build') \g /dev/null
select is(ops.save_progress(:'r3', :'t3', 'build', '{}') ->> 'cancel_requested', 'true', 'and so does save_progress');
select is(ops.finish_run(:'r3', 'cancelled', p_lease_token => :'t3', p_error => 'cancel requested') ->> 'status', 'cancelled',
  'the runner finishes it cancelled');
select is(pg_temp.last_event(:'r3'), 'warn:Run cancelled: cancel requested', 'its last event');

-- A started run nobody holds (yielded between invocations, or its runner
-- died): the cancel is requested, the run stays claimable, and the runner that
-- takes it hears of the cancel at its first write (and stops the build).
select pg_temp.q(:'p', 'cancel-unheld', 'cccccc1') as ru \gset
select pg_temp.claim('worker-u') \g /dev/null
select ops.start_phase(:'ru', pg_temp.lease(:'ru'), 'build') \g /dev/null
select ops.yield_run(:'ru', pg_temp.lease(:'ru')) \g /dev/null
select is(ops.cancel_run(:'ru', 'wrong sha', 'ops@example.com'),
  jsonb_build_object('run_id', :'ru', 'status', 'running', 'cancel_requested', true),
  'a started run nobody holds: the cancel is requested, not done behind the runner''s back');
select ok(ops.has_claimable_run(), 'and the run is claimable, for a runner to stop its build');
select is(ops.cancel_run(:'ru', 'really', 'ops@example.com') ->> 'cancel_requested', 'true', 'asking again is the same request');
select is((select count(*)::integer from ops.run_events where run_id = :'ru' and message like 'Cancel requested%'), 1,
  'with one event');
select is(pg_temp.claim('worker-v') ->> 'run_id', :'ru', 'a runner takes it');
select is(ops.start_phase(:'ru', pg_temp.lease(:'ru'), 'build') ->> 'cancel_requested', 'true',
  'and its first write answers cancel_requested');
select is(ops.finish_run(:'ru', 'cancelled', p_lease_token => pg_temp.lease(:'ru'), p_error => 'cancelled on request')
  ->> 'status', 'cancelled', 'the runner finishes it cancelled');

-- ---------------------------------------------------- expired leases

select ops.start_phase(:'r2', :'t2', 'build') \g /dev/null
select ops.save_progress(:'r2', :'t2', 'build', '{"github_run_id": 7}') \g /dev/null
select is(pg_temp.claim('worker-d'), null, 'a live lease is not taken over');
update ops.runs set lease_expires_at = now() - interval '1 second' where run_id = :'r2';
select ok(ops.has_claimable_run(), 'a run whose lease expired is claimable');
create temp table c2 as select pg_temp.claim('worker-d') as c;
select is((select (c ->> 'run_id') || '/' || (c ->> 'resumed') || '/' || (c ->> 'invocation') || '/' || (c ->> 'status')
    || '/' || (c ->> 'phase') || '/' || (c -> 'progress' -> 'build' -> 'state' ->> 'github_run_id') from c2),
  :'r2' || '/true/2/running/build/7', 'it is claimed again and resumes at its phase with its progress');
select isnt((select c ->> 'lease_token' from c2), :'t2', 'under a new token');
select is(pg_temp.state(:'r2'), 'running/build/2/1/worker-d', 'the expiry is counted');
select is((select level || ':' || message || ':' || (payload ->> 'previous_worker') || ':' || actor
  from ops.run_events where run_id = :'r2' order by id desc limit 1),
  'warn:Runner worker-c stopped without releasing the run (its lease expired); worker-d resumes it at build:worker-c:worker-d',
  'a warn event names the previous worker');
select pg_temp.snap(:'r2') as snap_r2 \gset
select is(pg_temp.refusal(format($$ select ops.save_progress(%L, %L, 'build', '{"late": true}') $$, :'r2', :'t2')),
  'PT409 stale_lease', 'the previous runner''s late write is stale_lease');
select is(pg_temp.refusal(format($$ select ops.finish_run(%L, 'failed', p_lease_token => %L) $$, :'r2', :'t2')),
  'PT409 stale_lease', 'and so is its late finish');
select is(pg_temp.snap(:'r2'), :'snap_r2', 'and they change nothing');

-- The limit: max_lease_expiries runners die on one run, and it is failed.
update ops.settings set max_lease_expiries = 2;
select pg_temp.q(:'p', 'staging', '4444444') as r4 \gset
update ops.runs set lease_expires_at = now() - interval '1 second' where run_id = :'r2';
select is(pg_temp.claim('worker-e') ->> 'run_id', :'r4', 'a claim fails the run at the limit and returns the next run');
select is(pg_temp.state(:'r2'), 'failed/build/2/2/worker-d', 'the run failed with every expiry counted');
select is((select error from ops.runs where run_id = :'r2'),
  '2 runners died working on this run (the last was worker-d); it is not resumed again', 'its error says why');
select is(pg_temp.last_event(:'r2'),
  'error:Run failed at build: 2 runners died working on this run (the last was worker-d); it is not resumed again',
  'an error event');
select is(pg_temp.alert(:'r2'), 'alert.run_failed/' || (select correlation_id from ops.runs where run_id = :'r2')
  || '/1/' || :'r2', 'alert.run_failed is on the outbox for the run, with the run''s correlation id');
select is((select coalesce(run_id, 'free') from ops.environment_locks where project_id = :'p' and env = 'dev'), 'free',
  'the environment is released');
select pg_temp.lease(:'r4') as t4 \gset
select ops.start_phase(:'r4', :'t4', 'build') \g /dev/null
update ops.runs set lease_expires_at = now() - interval '1 second', lease_expiries = 1 where run_id = :'r4';
select is(pg_temp.claim('worker-f'), null, 'failing the only claimable run returns nothing');
select is(pg_temp.state(:'r4'), 'failed/build/1/2/worker-e', 'and that run failed');
update ops.settings set max_lease_expiries = 3;

-- A yielded run is claimable at once, with no expiry counted.
select pg_temp.q(:'p', 'staging', '5555555') as r5 \gset
select is(pg_temp.claim('worker-g') ->> 'run_id', :'r5', 'claimed');
select pg_temp.lease(:'r5') as t5 \gset
select ops.start_phase(:'r5', :'t5', 'build') \g /dev/null
select is(ops.yield_run(:'r5', :'t5') ->> 'run_id', :'r5', 'yield_run releases the run');
select is((select row(status, lease_token, lease_expires_at, claimed_by)::text from ops.runs where run_id = :'r5'),
  '(running,,,worker-g)', 'it keeps its status without a lease');
select is(pg_temp.refusal(format($$ select ops.yield_run(%L, %L) $$, :'r5', :'t5')), 'PT409 stale_lease',
  'the yielded token is spent');
create temp table c3 as select pg_temp.claim('worker-h') as c;
select is((select (c ->> 'run_id') || '/' || (c ->> 'resumed') || '/' || (c ->> 'invocation') from c3), :'r5' || '/true/2',
  'a yielded run is claimed again at once');
select is(pg_temp.state(:'r5'), 'running/build/2/0/worker-h', 'no lease expiry counted');
select is((select count(*)::integer from ops.run_events where run_id = :'r5' and level = 'warn'), 0, 'no warning written');
-- Yielded in the middle of a long wait: nobody takes it before the wait is over.
select is(ops.yield_run(:'r5', pg_temp.lease(:'r5'), 60000), jsonb_build_object('run_id', :'r5', 'woken', false),
  'a yield in the middle of a wait wakes nobody');
select ok((select resume_at > now() + interval '50 seconds' from ops.runs where run_id = :'r5'), 'resume_at is the end of the wait');
select ok(not ops.has_claimable_run(), 'the run is not claimable before then');
select is(pg_temp.claim('worker-i'), null, 'and not claimed');
select is(pg_temp.refusal(format($$ select ops.yield_run(%L, %L, -1) $$, :'r5', gen_random_uuid())), 'PT409 stale_lease',
  'a yield needs the lease first');
update ops.runs set resume_at = now() - interval '1 second' where run_id = :'r5';
select is(pg_temp.claim('worker-i') ->> 'run_id', :'r5', 'once the wait is over it is claimed');
select is((select resume_at from ops.runs where run_id = :'r5'), null, 'and the claim clears resume_at');
select is(pg_temp.refusal(format($$ select ops.yield_run(%L, %L, -1) $$, :'r5', pg_temp.lease(:'r5'))),
  'PT422 validation_failed p_resume_in_ms', 'a negative wait is refused');
select ops.yield_run(:'r5', pg_temp.lease(:'r5')) \g /dev/null
select is(ops.finish_run(:'r5', 'failed', p_error => 'deploy hook 502') ->> 'status', 'failed',
  'an unleased run is finished without a token');
select is((select row(status, error, lease_token)::text from ops.runs where run_id = :'r5'), '(failed,"deploy hook 502",)',
  'failed with its error');
select is(pg_temp.last_event(:'r5'), 'error:Run failed at build: deploy hook 502', 'an error event');
select is(pg_temp.alert(:'r4'), 'alert.run_failed/' || (select correlation_id from ops.runs where run_id = :'r4')
  || '/1/' || :'r4', 'and an alert.run_failed of its own: each failed run is announced, none grouped into another');
select is((select coalesce(run_id, 'free') from ops.environment_locks where project_id = :'p' and env = 'staging'), 'free',
  'the environment is released');
select ok(not ops.has_claimable_run(), 'nothing is claimable now');

-- ------------------------------------------------------------ frozen environments

select is(pg_temp.refusal($$ select ops.lock_environment('pgtap-no-such-project', 'qa', 'freeze') $$),
  'PT422 validation_failed p_project_id', 'lock an unknown project');
select is(pg_temp.refusal(format($$ select ops.lock_environment(%L, 'Q A', 'freeze') $$, :'p')),
  'PT422 validation_failed p_env', 'lock a bad environment');
select is(pg_temp.refusal(format($$ select ops.lock_environment(%L, 'qa', '') $$, :'p')),
  'PT422 validation_failed p_reason', 'lock without a reason');
select is(pg_temp.refusal(format($$ select ops.lock_environment(%L, 'qa', 'freeze', '') $$, :'p')),
  'PT422 validation_failed p_locked_by', 'lock with an empty p_locked_by');
select is(ops.lock_environment(:'p', 'qa', 'release freeze', 'ops@example.com'),
  jsonb_build_object('project_id', :'p', 'env', 'qa', 'frozen', true, 'frozen_by', 'ops@example.com'),
  'lock_environment freezes an environment');
select pg_temp.q(:'p', 'qa', '6666666') as r6 \gset
select is(pg_temp.claim('worker-i'), null, 'a queued run in a frozen environment is not claimed');
select is(pg_temp.state(:'r6'), 'queued/-/0/0/-', 'and is not failed: it waits');
select ok(not ops.has_claimable_run(), 'has_claimable_run agrees');
select is(ops.lock_environment(:'p', 'qa', 'release freeze, day 2', 'other@example.com') ->> 'frozen_by', 'ops@example.com',
  'locking again keeps who froze it');
select is((select frozen_reason from ops.environment_locks where project_id = :'p' and env = 'qa'), 'release freeze, day 2',
  'and updates the reason');
select is(pg_temp.refusal(format($$ select ops.unlock_environment(%L, 'qa', '') $$, :'p')),
  'PT422 validation_failed p_unlocked_by', 'unlock with an empty p_unlocked_by');
select is(ops.unlock_environment(:'p', 'qa'),
  jsonb_build_object('project_id', :'p', 'env', 'qa', 'frozen', false, 'unfrozen_by', :'me'),
  'unlock_environment releases it');
select is(pg_temp.refusal(format($$ select ops.unlock_environment(%L, 'qa') $$, :'p')), 'PT409 invalid_state',
  'an environment that is not frozen is not unlocked');
select is(pg_temp.claim('worker-i') ->> 'run_id', :'r6', 'the waiting run is claimed');
select is(ops.lock_environment(:'p', 'qa', 'incident') ->> 'frozen', 'true', 'a freeze while a run deploys');
select pg_temp.lease(:'r6') as t6 \gset
select is(ops.start_phase(:'r6', :'t6', 'build') ->> 'cancel_requested', 'false', 'lets that run go on');
select is(pg_temp.settle(), 1, 'which is then ended');
select ops.unlock_environment(:'p', 'qa') \g /dev/null

-- ------------------------------------------------------------------ approvals

set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.queue_run(:'p', 'production', 'abcdef1', 'refs/heads/main', 'alice@example.com') ->> 'run_id' as ra \gset
select ops.queue_run(:'p', 'production', 'abcdef1', 'refs/heads/main', 'alice@example.com') ->> 'run_id' as rb \gset
reset role;
set local request.jwt.claims = '';
select is(pg_temp.refusal(format($$ select ops.approve_run(%L, p_approved_by => 'alice@example.com') $$, :'ra')),
  'PT403 forbidden', 'the requester does not approve their own run');
set local role authenticated;
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000a1", "email": "alice@example.com", "app_metadata": {"role": "operator"}}';
select is(pg_temp.refusal(format($$ select ops.approve_run(%L, p_approved_by => 'bob@example.com') $$, :'ra')),
  'PT403 forbidden', 'not even by naming someone else: an operator is their JWT');
set local request.jwt.claims = '{"role": "authenticated", "sub": "00000000-0000-4000-8000-0000000000a2", "email": "bob@example.com", "app_metadata": {"role": "operator"}}';
select is(ops.approve_run(:'ra', 'LGTM'),
  jsonb_build_object('run_id', :'ra', 'status', 'queued', 'decided_by', 'bob@example.com'),
  'another operator approves: the run is queued');
reset role;
set local request.jwt.claims = '';
select is((select row(status, requested_by, decided_by, decided_at is not null, comment)::text from ops.approvals where run_id = :'ra'),
  '(approved,alice@example.com,bob@example.com,t,LGTM)', 'the approval is recorded');
select is((select level || ':' || message || ':' || (payload ->> 'comment') || ':' || actor
  from ops.run_events where run_id = :'ra' order by id desc limit 1), 'info:Approved by bob@example.com:LGTM:bob@example.com',
  'an approved event');
select is(pg_temp.refusal(format($$ select ops.approve_run(%L, p_approved_by => 'carol') $$, :'ra')),
  'PT409 invalid_state', 'a queued run is not approved');
select is(pg_temp.refusal(format($$ select ops.reject_run(%L, p_rejected_by => 'carol') $$, :'ra')),
  'PT409 invalid_state', 'nor rejected');
select is(pg_temp.refusal($$ select ops.approve_run('run-nosuchrun', p_approved_by => 'carol') $$),
  'PT422 validation_failed p_run_id', 'approve an unknown run');
select is(pg_temp.refusal(format($$ select ops.approve_run(%L, repeat('c', 2001), 'carol') $$, :'rb')),
  'PT422 validation_failed p_comment', 'a comment over 2000 characters');
select is(pg_temp.refusal(format($$ select ops.approve_run(%L, p_approved_by => '') $$, :'rb')),
  'PT422 validation_failed p_approved_by', 'an empty p_approved_by');
select is(pg_temp.refusal(format($$ select ops.reject_run(%L, p_rejected_by => '') $$, :'rb')),
  'PT422 validation_failed p_rejected_by', 'an empty p_rejected_by');
select is(ops.reject_run(:'rb', 'change freeze', 'carol@example.com'),
  jsonb_build_object('run_id', :'rb', 'status', 'cancelled', 'decided_by', 'carol@example.com'), 'a rejected run is cancelled');
select is((select row(status, error, finished_at is not null)::text from ops.runs where run_id = :'rb'),
  '(cancelled,"rejected by carol@example.com",t)', 'with the rejecter as its error');
select is((select status || '/' || decided_by || '/' || comment from ops.approvals where run_id = :'rb'),
  'rejected/carol@example.com/change freeze', 'the rejection is recorded');
select is(pg_temp.last_event(:'rb'), 'warn:Rejected by carol@example.com', 'a rejected event');
select is(pg_temp.refusal(format($$ select ops.reject_run(%L, p_rejected_by => 'dave') $$, :'rb')), 'PT409 invalid_state',
  'a rejected run is not rejected again');

-- ------------------------------------------------------------------ requeue

select is(pg_temp.refusal(format($$ select ops.requeue_run(%L) $$, :'ra')), 'PT409 invalid_state',
  'a queued run is not requeued');
select is(pg_temp.refusal(format($$ select ops.requeue_run(%L) $$, :'r1')), 'PT409 invalid_state',
  'nor a successful one');
select is(pg_temp.refusal($$ select ops.requeue_run('run-nosuchrun') $$), 'PT422 validation_failed p_run_id',
  'requeue an unknown run');
select is(pg_temp.refusal(format($$ select ops.requeue_run(%L, '') $$, :'r2')), 'PT422 validation_failed p_requested_by',
  'requeue with an empty requester');
create temp table requeued as select ops.requeue_run(:'r2', 'ops@example.com') as r;
select r ->> 'run_id' as r2b from requeued \gset
select is((select r - 'run_id' from requeued), jsonb_build_object('status', 'queued', 'correlation_id',
  (select correlation_id from ops.runs where run_id = :'r2'), 'approval_required', false, 'duplicate', false),
  'a failed run is requeued as a new run under the same correlation id');
select is((select row(requeue_of, git_sha, env, kind, requested_by, progress)::text from ops.runs where run_id = :'r2b'),
  row(:'r2', '2222222', 'dev', 'deploy', 'ops@example.com', '{}')::text, 'the new run names the one it requeues and starts afresh');
select is((select payload ->> 'requeue_of' from ops.run_events where run_id = :'r2b'), :'r2', 'its first event says so');
select is(ops.requeue_run(:'rb', 'ops@example.com') ->> 'status', 'awaiting_approval',
  'a requeued run to a protected environment awaits approval again');
select cmp_ok(pg_temp.settle(), '>', 0, 'the runs so far are ended');

-- ---------------------------------------------------------------- rollbacks

select is(pg_temp.refusal(format($$ select ops.queue_rollback(%L, 'prod') $$, :'rp')), 'PT409 invalid_state',
  'no successful run: nothing to roll back to');
select is(pg_temp.refusal($$ select ops.queue_rollback('pgtap-no-such-project', 'prod') $$),
  'PT422 validation_failed p_project_id', 'rollback of an unknown project');
select is(pg_temp.refusal(format($$ select ops.queue_rollback(%L, 'Prod') $$, :'rp')), 'PT422 validation_failed p_env',
  'rollback of a bad environment');
select pg_temp.q(:'rp', 'prod', 'aaaaaaa') as s1 \gset
select pg_temp.claim('worker-r') ->> 'lease_token' as ts1 \gset
select pg_temp.drive(:'s1', :'ts1', '{"image_digest": "sha256:111"}') \g /dev/null
select is(ops.finish_run(:'s1', 'success', p_lease_token => :'ts1') ->> 'status', 'success', 'a first successful run');
select is(pg_temp.refusal(format($$ select ops.queue_rollback(%L, 'prod') $$, :'rp')), 'PT409 invalid_state',
  'one successful run: nothing earlier to roll back to');
select pg_temp.q(:'rp', 'prod', 'bbbbbbb') as s2 \gset
select pg_temp.claim('worker-r') ->> 'lease_token' as ts2 \gset
select pg_temp.drive(:'s2', :'ts2', '{"image_digest": "sha256:222"}') \g /dev/null
select is(ops.finish_run(:'s2', 'success', p_lease_token => :'ts2') ->> 'status', 'success', 'a second successful run');
create temp table rollback1 as select ops.queue_rollback(:'rp', 'prod', p_correlation_id => 'cid-rollback-' || :'p') as r;
select r ->> 'run_id' as rb1 from rollback1 \gset
select is((select r - 'run_id' from rollback1), jsonb_build_object('status', 'queued', 'correlation_id', 'cid-rollback-' || :'p',
  'approval_required', false, 'duplicate', false), 'queue_rollback queues a run');
select is((select row(kind, rollback_of, git_sha, git_ref)::text from ops.runs where run_id = :'rb1'),
  row('rollback', :'s1', 'aaaaaaa', 'refs/heads/main')::text, 'a rollback to the earlier successful run');
select is((select (progress -> 'build') - 'finished_at' from ops.runs where run_id = :'rb1'),
  jsonb_build_object('done', true, 'skipped', true, 'output', jsonb_build_object('image_digest', 'sha256:111', 'rollback_of', :'s1')),
  'its build is done and skipped, with the earlier digest');
select is(pg_temp.events(:'rb1'), array['info:Rollback to ' || :'s1' || ' queued by ' || :'me'], 'its first event');
create temp table c4 as select pg_temp.claim('worker-r') as c;
select is((select (c ->> 'run_id') || '/' || (c ->> 'kind') || '/' || (c ->> 'rollback_of') || '/'
    || (c -> 'progress' -> 'build' ->> 'done') || '/' || (c -> 'progress' -> 'build' -> 'output' ->> 'image_digest') from c4),
  :'rb1' || '/rollback/' || :'s1' || '/true/sha256:111', 'the claimed rollback lists its build as done');
select pg_temp.drive(:'rb1', (select (c ->> 'lease_token')::uuid from c4)) \g /dev/null
select is(ops.finish_run(:'rb1', 'success', p_lease_token => (select (c ->> 'lease_token')::uuid from c4)) ->> 'status',
  'success', 'it succeeds without building');
select is((select array_agg(e.message order by e.id) filter (where e.message like 'Starting %') from ops.run_events e
  where e.run_id = :'rb1'), array['Starting deploy'], 'only the deploy ran');
select is(ops.queue_rollback(:'rp', 'prod', p_to_run_id => :'s2') - 'run_id' - 'correlation_id',
  '{"status": "queued", "approval_required": false, "duplicate": false}'::jsonb, 'p_to_run_id names the run');
select is((select rollback_of || '/' || git_sha || '/' || (progress -> 'build' -> 'output' ->> 'image_digest')
  from ops.runs where kind = 'rollback' and project_id = :'rp' and status = 'queued'),
  :'s2' || '/bbbbbbb/sha256:222', 'and its digest is redeployed');
select is(pg_temp.refusal(format($$ select ops.queue_rollback(%L, 'prod', p_to_run_id => 'run-nosuchrun') $$, :'rp')),
  'PT422 validation_failed p_to_run_id', 'an unknown target');
select is(pg_temp.refusal(format($$ select ops.queue_rollback(%L, 'staging', p_to_run_id => %L) $$, :'rp', :'s1')),
  'PT422 validation_failed p_to_run_id', 'a target of another environment');
select is(pg_temp.refusal(format($$ select ops.queue_rollback(%L, 'dev', p_to_run_id => %L) $$, :'rp', :'r1')),
  'PT422 validation_failed p_to_run_id', 'a target of another project');
select is(pg_temp.refusal(format($$ select ops.queue_rollback(%L, 'prod', p_to_run_id => %L) $$, :'rp',
  (select run_id from ops.runs where kind = 'rollback' and project_id = :'rp' and status = 'queued'))),
  'PT409 invalid_state', 'a target that did not succeed');
select is(pg_temp.refusal(format($$ select ops.queue_rollback(%L, 'prod', p_requested_by => '') $$, :'rp')),
  'PT422 validation_failed p_requested_by', 'an empty requester');
select cmp_ok(pg_temp.settle(), '>', 0, 'the queued rollback is cancelled');
select pg_temp.q(:'rp', 'prod', 'ccccccc') as s3 \gset
select pg_temp.claim('worker-r') ->> 'lease_token' as ts3 \gset
select pg_temp.drive(:'s3', :'ts3', '{"log": "no image"}') \g /dev/null
select ops.finish_run(:'s3', 'success', p_lease_token => :'ts3') \g /dev/null
select is(pg_temp.refusal(format($$ select ops.queue_rollback(%L, 'prod', p_to_run_id => %L) $$, :'rp', :'s3')),
  'PT409 invalid_state', 'a run that recorded no image digest is not rolled back to');

-- -------------------------------------------------------------- append_run_event

select is(pg_temp.refusal($$ select ops.append_run_event('run-nosuchrun', 'info', 'x') $$),
  'PT422 validation_failed p_run_id', 'an event for an unknown run');
select is(pg_temp.refusal(format($$ select ops.append_run_event(%L, 'fatal', 'x') $$, :'s3')),
  'PT422 validation_failed p_level', 'a level that is not one');
select is(pg_temp.refusal(format($$ select ops.append_run_event(%L, 'info', '') $$, :'s3')),
  'PT422 validation_failed p_message', 'an empty message');
select is(pg_temp.refusal(format($$ select ops.append_run_event(%L, 'info', 'x', '[]') $$, :'s3')),
  'PT422 validation_failed p_payload', 'a payload that is not an object');
select is(pg_temp.refusal(format($$ select ops.append_run_event(%L, 'info', 'x', '{}', 'Deploy!') $$, :'s3')),
  'PT422 validation_failed p_phase', 'a phase that is not a phase name');
select is(pg_temp.refusal(format($$ select ops.append_run_event(%L, 'info', 'x', '{}', null, '') $$, :'s3')),
  'PT422 validation_failed p_actor', 'an empty actor');
select ops.append_run_event(:'s3', 'info', 'Agent read the deploy log', '{"tool": "logs"}', 'deploy', 'agent:triage') as ev \gset
select is((select row(level, message, phase, payload ->> 'tool', actor, correlation_id)::text from ops.run_events where id = :ev),
  row('info', 'Agent read the deploy log', 'deploy', 'logs', 'agent:triage',
    (select correlation_id from ops.runs where run_id = :'s3'))::text, 'append_run_event adds a line to a run''s trail');

-- ------------------------------------------------------------------ waking

select pg_temp.settle() \g /dev/null
select ok(not ops.has_claimable_run(), 'waking starts with nothing claimable');
update ops.runner_signal set wake_pending_until = null, wakes_sent = 0, wakes_coalesced = 0, last_wake_reason = null;
update ops.settings set max_runners = 2;
select pg_temp.wakes() as w0 \gset
select pg_temp.q(:'p', 'w0', '7777777') as w_first \gset
select is(pg_temp.wakes() - :w0, 1, 'a queued run sends one wake-up');
select is(pg_temp.signal(), '1/0/true/queued', 'the wake-up is pending, its reason queued');
select is(pg_temp.last_wake() -> 'headers', jsonb_build_object('Content-Type', 'application/json',
  'Authorization', 'Bearer syi_' || repeat('a', 40)), 'it carries the runner''s invocation token');
select unalike(pg_temp.last_wake()::text, '%eyJ%', 'and no JWT (the service role key is never sent)');
select is(pg_temp.last_wake() - 'headers', '{"method": "POST", "body": {"reason": "queued"}}'::jsonb,
  'a POST saying why');
select pg_temp.q(:'p', 'w' || n, '7777777') from generate_series(1, 10) n \g /dev/null
select is(pg_temp.wakes() - :w0, 1, 'a burst of 10 more queued runs sends no more');
select is(pg_temp.signal(), '1/10/true/queued', 'they are coalesced into the pending one');
select is(pg_temp.claim('worker-w1') ->> 'run_id', :'w_first', 'a runner claims');
select is(pg_temp.wakes() - :w0, 2, 'the claim answers the wake-up and fans out: another one while runs wait');
select is(pg_temp.signal(), '2/10/true/fanout', 'its reason fanout');
select is(pg_temp.claim('worker-w2') ->> 'env', 'w1', 'a second runner claims');
select is(pg_temp.wakes() - :w0, 2, 'with max_runners (2) at work, no further fan-out');
select is(pg_temp.signal(), '2/11/false/fanout', 'the claim cleared the pending wake-up; the fan-out was coalesced');
select is(ops.wake_runner('pgtap'), null, 'wake_runner sends nothing while busy_runners >= max_runners');
select is(pg_temp.wakes() - :w0 || '/' || pg_temp.signal(), '2/2/12/false/fanout', 'only counting it');
update ops.settings set max_runners = 4;
select isnt(ops.wake_runner_if_due(), null, 'wake_runner_if_due sends when a run is claimable');
select is(pg_temp.wakes() - :w0 || '/' || pg_temp.signal(), '3/3/12/true/cron', 'reason cron');
select is(ops.wake_runner_if_due(), null, 'not again while that one is pending');
select is(ops.yield_run(:'w_first', pg_temp.lease(:'w_first')), jsonb_build_object('run_id', :'w_first', 'woken', false),
  'a yield while a wake-up is pending is coalesced');
update ops.runner_signal set wake_pending_until = null;
select ops.claim_next_run('worker-w3') \g /dev/null
select is(pg_temp.signal(), '4/14/true/fanout', 'a claim fans out (the yield counted as coalesced)');
update ops.runner_signal set wake_pending_until = null;
select is(ops.yield_run(:'w_first', pg_temp.lease(:'w_first')), jsonb_build_object('run_id', :'w_first', 'woken', true),
  'a yield hands the run off with a wake-up');
select is(pg_temp.signal(), '5/14/true/handoff', 'reason handoff');
select pg_temp.settle() \g /dev/null
update ops.runner_signal set wake_pending_until = null, wakes_sent = 0, wakes_coalesced = 0, last_wake_reason = null;
select pg_temp.wakes() as w1 \gset
select is(ops.wake_runner_if_due(), null, 'with nothing claimable wake_runner_if_due sends nothing');
select is(pg_temp.wakes() - :w1 || '/' || pg_temp.signal(), '0/0/0/false/-', 'no request, nothing counted');
select pg_temp.q(:'p', 'wz', '7777777') as wz \gset
select pg_temp.claim('worker-wz') \g /dev/null
update ops.runner_signal set wake_pending_until = null;
select is(ops.wake_runner_if_due(), null, 'nor while the only run is leased');
update ops.runs set lease_expires_at = now() - interval '1 second' where run_id = :'wz';
select isnt(ops.wake_runner_if_due(), null, 'a lease that expired is due: a wake-up');
select is(pg_temp.signal(), '2/0/true/cron', 'by default for the reason cron');
update ops.runner_signal set wake_pending_until = null;
select isnt(ops.wake_runner_if_due('handoff'), null, 'a runner handing off names its reason');
select is(pg_temp.signal(), '3/0/true/handoff', 'and it is recorded');
select is(pg_temp.refusal($$ select ops.wake_runner_if_due('Not a reason') $$), 'PT422 validation_failed p_reason',
  'a reason that is not a name is refused');
select pg_temp.settle() \g /dev/null
select ops.lock_environment(:'p', 'wz', 'freeze') \g /dev/null
select pg_temp.q(:'p', 'wz', '7777777') \g /dev/null
update ops.runner_signal set wake_pending_until = null, wakes_sent = 0, wakes_coalesced = 0, last_wake_reason = null;
select is(ops.wake_runner_if_due(), null, 'a run in a frozen environment is not due');
select pg_temp.wakes() as w2 \gset
select ops.unlock_environment(:'p', 'wz') \g /dev/null
select is(pg_temp.wakes() - :w2 || '/' || pg_temp.signal(), '1/1/0/true/unfrozen', 'unfreezing wakes a runner');
select pg_temp.settle() \g /dev/null
update ops.runner_signal set wake_pending_until = null, wakes_sent = 0, wakes_coalesced = 0, last_wake_reason = null;
select pg_temp.wakes() as w3 \gset
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select ops.queue_run(:'p', 'production', '7777777', 'refs/heads/main', 'alice@example.com') ->> 'run_id' as wa \gset
reset role;
set local request.jwt.claims = '';
select is(pg_temp.wakes() - :w3 || '/' || pg_temp.signal(), '0/0/0/false/-', 'a run awaiting approval wakes nobody');
select ops.approve_run(:'wa', p_approved_by => 'bob@example.com') \g /dev/null
select is(pg_temp.wakes() - :w3 || '/' || pg_temp.signal(), '1/1/0/true/queued', 'its approval does');
select edge.configure_function('ops-runner', null, null) \g /dev/null
update ops.runner_signal set wake_pending_until = null;
select is(ops.wake_runner('pgtap'), null, 'an unregistered runner is not woken');
select is(pg_temp.wakes() - :w3 || '/' || pg_temp.signal(), '1/1/0/false/queued', 'and nothing is counted');
select pg_temp.settle() \g /dev/null

-- -------------------------------------------------------------------- trace

select ops.queue_run(:'p', 'trace', 'abcdef1', 'refs/heads/main', p_correlation_id => 'cid-trace-' || :'p') ->> 'run_id' as rt \gset
select pg_temp.claim('worker-t') ->> 'lease_token' as tt \gset
select ops.start_phase(:'rt', :'tt', 'build') \g /dev/null
select ops.finish_run(:'rt', 'failed', p_lease_token => :'tt', p_error => 'boom') \g /dev/null
select is((select array_agg(t.kind || ':' || t.subject_id || ':' || coalesce(t.detail ->> 'message', t.detail ->> 'status'))
    from ops.get_trace('cid-trace-' || :'p') t where t.source in ('ops.runs', 'ops.run_events')),
  array['run.deploy:' || :'rt' || ':failed', 'run.event.info:' || :'rt' || ':Run queued by ' || :'me',
        'run.event.info:' || :'rt' || ':Claimed by worker-t', 'run.event.info:' || :'rt' || ':Starting build',
        'run.event.error:' || :'rt' || ':Run failed at build: boom'],
  'the trace holds the run and its events, in order');
select is((select t.detail ->> 'event_type' from ops.get_trace('cid-trace-' || :'p') t where t.kind = 'outbox.queued'),
  'alert.run_failed', 'and the alert its failure raised');
select is((select depth from ops.get_queue_depth() d where d.queue = 'ops.runs' and d.job_type = :'p' || '/dev'
  and d.status = 'queued'), null::bigint, 'queue depth: nothing waits for dev');
select pg_temp.q(:'p', 'dev') \g /dev/null
select pg_temp.q(:'p', 'dev') \g /dev/null
select is((select depth from ops.get_queue_depth() d where d.queue = 'ops.runs' and d.job_type = :'p' || '/dev'
  and d.status = 'queued'), 2::bigint, 'queue depth counts the queued runs per project/environment');

select * from finish();
rollback;
