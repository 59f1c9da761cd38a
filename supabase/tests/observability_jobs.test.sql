-- observability: the job state machine. Enqueue and idempotency, claims in
-- priority order, fencing by lease token (a late settle after a reclaim is
-- refused and changes nothing), backoff, dead + alert, the unclaimed pattern
-- (enqueue, execute, complete), cancel, heartbeat, requeue; every transition
-- writes exactly one job_events row, and job_events is append-only.
begin;
set search_path = extensions, public;
select plan(137);

-- Job types unique to this run: other rows exist in the dev database.
select 'pgtap' || substr(md5(random()::text), 1, 10) as tag \gset
select :'tag' || '.deploy' as deploy, :'tag' || '.backup' as backup, :'tag' || '.other' as other \gset

-- Park the dev database's leases (rolled back at the end) so a reclaim here
-- touches only this test's jobs; a known schedule.
update observability.jobs set lease_expires_at = now() + interval '100 years' where status = 'running';
update observability.settings set job_backoff_seconds = '{30,120,600}', lease_seconds = 60;

create temp table run as select :'deploy'::text as deploy, :'backup'::text as backup;

-- Every transition of a job, in order: 'from>to' ('-' for the creation).
create function pg_temp.transitions(p_job uuid) returns text[] language sql as $$
  select coalesce(array_agg(coalesce(e.from_status, '-') || '>' || e.to_status order by e.id), '{}')
  from observability.job_events e where e.job_id = p_job
$$;
create function pg_temp.events(p_job uuid) returns integer language sql as $$
  select count(*)::integer from observability.job_events e where e.job_id = p_job
$$;
create function pg_temp.state(p_job uuid) returns text language sql as $$
  select j.status || '/' || j.attempts from observability.jobs j where j.id = p_job
$$;
create function pg_temp.wait_of(p_job uuid) returns integer language sql as $$
  select round(extract(epoch from j.available_at - now()))::integer from observability.jobs j where j.id = p_job
$$;
create function pg_temp.enqueue(p_type text, p_key text default null, p_priority integer default 0,
                                p_max_attempts integer default 3) returns uuid language sql as $$
  select (observability.enqueue_job(source => 'pgtap', job_type => p_type, payload => jsonb_build_object('k', p_key),
          priority => p_priority, idempotency_key => p_key, max_attempts => p_max_attempts) ->> 'job_id')::uuid
$$;
create function pg_temp.claim(p_job uuid, p_worker text default 'worker-a') returns uuid language plpgsql as $$
declare v_token uuid;
begin
  update observability.jobs set available_at = now() where id = p_job;
  select (c ->> 'lease_token')::uuid into v_token
  from observability.claim_job(p_worker, array[(select job_type from observability.jobs where id = p_job)], 100, 60) c
  where c ->> 'job_id' = p_job::text;
  return v_token;
end $$;
-- A refusal as 'SQLSTATE message hint'.
\ir lib/refusal.sql
-- This run's rows, to show that refusals write nothing.
create function pg_temp.counts() returns text language sql as $$
  with mine as (
    select j.id from observability.jobs j, pg_temp.run r
    where j.source = 'pgtap' and j.job_type in (r.deploy, r.backup))
  select format('jobs=%s events=%s runs=%s',
    (select count(*) from mine),
    (select count(*) from observability.job_events e join mine on mine.id = e.job_id),
    (select count(*) from observability.job_runs x join mine on mine.id = x.job_id))
$$;

-- Enqueue and idempotency.
create temp table first_call as select observability.enqueue_job(
  source => 'pgtap', job_type => :'deploy', payload => '{"target": "staging", "sha": "abc"}',
  context => '{"triggered_by": "test"}', priority => 5, idempotency_key => 'deploy-1',
  correlation_id => 'cid-' || :'tag', max_attempts => 3) as r;
select (r ->> 'job_id') as j1 from first_call \gset
select is((select r - 'job_id' from first_call),
  jsonb_build_object('status', 'queued', 'correlation_id', 'cid-' || :'tag', 'duplicate', false),
  'enqueue_job returns the job queued with its correlation id');
select is((select row(status, attempts, priority, max_attempts, payload ->> 'target', context ->> 'triggered_by')::text
  from observability.jobs where id = :'j1'), '(queued,0,5,3,staging,test)', 'the job is stored as given');
select is(pg_temp.transitions(:'j1'), array['->queued'], 'the insert wrote exactly one job_events row');
select is((select detail ->> 'job_type' from observability.job_events where job_id = :'j1'), :'deploy',
  'the creation event names the job type');
select is(observability.enqueue_job('pgtap', :'deploy', '{"sha": "abc", "target": "staging"}', '{"triggered_by": "test"}',
    5, 'deploy-1'),
  jsonb_build_object('job_id', :'j1', 'status', 'queued', 'correlation_id', 'cid-' || :'tag', 'duplicate', true),
  'the same job under the same key is a duplicate: the original id, its correlation id');
select is(pg_temp.counts(), 'jobs=1 events=1 runs=0', 'a duplicate writes nothing');
select is(pg_temp.refusal(format($$ select observability.enqueue_job('pgtap', %L, '{"target": "production"}', '{}', 5, 'deploy-1') $$, :'deploy')),
  'PT409 idempotency_conflict idempotency_key', 'the key with a different payload is idempotency_conflict');
select is(pg_temp.refusal(format($$ select observability.enqueue_job('pgtap', %L, '{"sha": "abc", "target": "staging"}',
    '{"triggered_by": "test"}', 5, 'deploy-1', 'another-cid') $$, :'deploy')),
  'PT409 idempotency_conflict idempotency_key', 'the key with another correlation id is idempotency_conflict');
select is(pg_temp.counts(), 'jobs=1 events=1 runs=0', 'a conflict writes nothing');
select is(observability.enqueue_job('pgtap-other', :'other', '{"sha": "abc", "target": "staging"}',
    '{"triggered_by": "test"}', 5, 'deploy-1') ->> 'duplicate', 'false', 'idempotency keys are per source');
select isnt(pg_temp.enqueue(:'other'), pg_temp.enqueue(:'other'), 'without a key every call is a new job');
select ok((select correlation_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
  from observability.jobs where job_type = :'other' limit 1), 'without a correlation id the job gets a new UUID');

-- Every bad argument is validation_failed naming it, and writes nothing.
select is(pg_temp.refusal($$ select observability.enqueue_job('', 'a.b') $$), 'PT422 validation_failed source', 'empty source');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n workflow', 'a.b') $$), 'PT422 validation_failed source', 'a source with a space');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n', 'deploy staging') $$), 'PT422 validation_failed job_type', 'a job type that is not a dotted name');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n', '.deploy') $$), 'PT422 validation_failed job_type', 'a job type with an empty segment');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n', null) $$), 'PT422 validation_failed job_type', 'no job type');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n', 'a.b', '[1]') $$), 'PT422 validation_failed payload', 'a payload that is not an object');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n', 'a.b', '{}', '"x"') $$), 'PT422 validation_failed context', 'a context that is not an object');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n', 'a.b', priority => 101) $$), 'PT422 validation_failed priority', 'priority over 100');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n', 'a.b', idempotency_key => '') $$), 'PT422 validation_failed idempotency_key', 'an empty idempotency key');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n', 'a.b', correlation_id => repeat('c', 129)) $$), 'PT422 validation_failed correlation_id', 'a correlation id over 128 characters');
select is(pg_temp.refusal($$ select observability.enqueue_job('n8n', 'a.b', max_attempts => 0) $$), 'PT422 validation_failed max_attempts', 'max_attempts under 1');
select is(pg_temp.refusal($$ select observability.claim_job('', array['a.b']) $$), 'PT422 validation_failed worker', 'claim without a worker');
select is(pg_temp.refusal($$ select observability.claim_job('w', '{}') $$), 'PT422 validation_failed job_types', 'claim without job types');
select is(pg_temp.refusal($$ select observability.claim_job('w', array['a b']) $$), 'PT422 validation_failed job_types', 'claim with a bad job type');
select is(pg_temp.refusal($$ select observability.claim_job('w', array['a.b'], 0) $$), 'PT422 validation_failed batch_size', 'claim with batch size 0');
select is(pg_temp.refusal($$ select observability.claim_job('w', array['a.b'], 1, 1) $$), 'PT422 validation_failed lease_seconds', 'claim with a 1 s lease');
select is(pg_temp.refusal(format($$ select observability.complete_job(%L, metrics => '[1]') $$, :'j1')), 'PT422 validation_failed metrics', 'metrics that are not an object');
select is(pg_temp.refusal($$ select observability.complete_job(gen_random_uuid()) $$), 'PT422 validation_failed job_id', 'complete an unknown job');
select is(pg_temp.refusal(format($$ select observability.fail_job(%L, '  ') $$, :'j1')), 'PT422 validation_failed error', 'fail without an error');
select is(pg_temp.refusal(format($$ select observability.fail_job(%L, 'x', retry_after_seconds => -1) $$, :'j1')), 'PT422 validation_failed retry_after_seconds', 'a negative retry_after_seconds');
select is(pg_temp.refusal(format($$ select observability.cancel_job(%L, '', 'ops') $$, :'j1')), 'PT422 validation_failed reason', 'cancel without a reason');
select is(pg_temp.refusal(format($$ select observability.cancel_job(%L, 'why', null) $$, :'j1')), 'PT422 validation_failed requested_by', 'cancel without requested_by');
select is(pg_temp.refusal(format($$ select observability.heartbeat_job(%L, null) $$, :'j1')), 'PT422 validation_failed lease_token', 'heartbeat without a token');
select is(pg_temp.refusal(format($$ select observability.requeue_job(%L, '') $$, :'j1')), 'PT422 validation_failed requested_by', 'requeue without requested_by');
select is(pg_temp.counts(), 'jobs=1 events=1 runs=0', 'refused calls wrote nothing');
select is(pg_temp.state(:'j1'), 'queued/0', 'and left the job as it was');

-- Claims: highest priority first, SKIP LOCKED, an attempt counted, a run opened.
select pg_temp.enqueue(:'deploy', 'deploy-low', 0) as j_low \gset
select pg_temp.enqueue(:'deploy', 'deploy-high', 10) as j_high \gset
select pg_temp.enqueue(:'backup', 'backup-1', 50) as j_backup \gset
create temp table claim1 as select * from observability.claim_job('worker-a', array[:'deploy'], 2, 30) as c;
select is((select array_agg(c ->> 'job_id' order by (c ->> 'priority')::int desc) from claim1),
  array[:'j_high', :'j1'], 'claim returns the highest priority first, only of the asked types, up to batch_size');
select ok((select bool_and((c ->> 'lease_token') is not null and (c ->> 'attempt')::int = 1) from claim1),
  'each claimed job carries its lease token and attempt number');
select is((select c ->> 'correlation_id' from claim1 where c ->> 'job_id' = :'j1'), 'cid-' || :'tag',
  'and its correlation id');
select (c ->> 'lease_token') as t_high from claim1 where c ->> 'job_id' = :'j_high' \gset
select (c ->> 'lease_token') as t1 from claim1 where c ->> 'job_id' = :'j1' \gset
select is((select status || '/' || attempts || '/' || locked_by from observability.jobs where id = :'j_high'),
  'running/1/worker-a', 'a claimed job is running, its attempt counted, its worker recorded');
select ok((select lease_expires_at = now() + interval '30 seconds' from observability.jobs where id = :'j_high'),
  'the lease lasts lease_seconds');
select is((select attempt || '/' || worker || '/' || (finished_at is null)::text from observability.job_runs where job_id = :'j_high'),
  '1/worker-a/true', 'the claim opened a run');
select is(pg_temp.transitions(:'j_high'), array['->queued', 'queued>running'], 'the claim wrote one job_events row');
select is((select worker from observability.job_events where job_id = :'j_high' and to_status = 'running'), 'worker-a',
  'the event names the worker');
create temp table claim2 as select * from observability.claim_job('worker-b', array[:'deploy'], 10) as c;
select is((select array_agg(c ->> 'job_id') from claim2), array[:'j_low'], 'a second claimer gets only what is not leased');
select is(pg_temp.state(:'j_backup'), 'queued/0', 'other job types are not claimed');

-- Complete with the lease token.
select is(observability.complete_job(:'j_high', '{"url": "https://staging"}', '{"duration_ms": 1200}', :'t_high'),
  jsonb_build_object('job_id', :'j_high', 'status', 'succeeded', 'attempts', 1, 'correlation_id',
    (select correlation_id from observability.jobs where id = :'j_high')),
  'complete_job with the lease token succeeds');
select is((select row(status, result ->> 'url', lease_token is null, locked_by is null, finished_at is not null)::text
  from observability.jobs where id = :'j_high'), '(succeeded,https://staging,t,t,t)',
  'the job keeps its result, holds no lease, and is finished');
select is((select outcome || '/' || (metrics ->> 'duration_ms') || '/' || (finished_at >= started_at)::text
  from observability.job_runs where job_id = :'j_high'), 'succeeded/1200/true', 'the run is closed with its metrics');
select is(pg_temp.transitions(:'j_high'), array['->queued', 'queued>running', 'running>succeeded'],
  'completion wrote one job_events row');
select is(pg_temp.refusal(format($$ select observability.complete_job(%L, lease_token => %L) $$, :'j_high', :'t_high')),
  'PT409 stale_lease', 'completing a finished job again is stale_lease');

-- Fencing: only the current token settles a leased job.
select is(pg_temp.refusal(format($$ select observability.complete_job(%L, lease_token => gen_random_uuid()) $$, :'j1')),
  'PT409 stale_lease', 'a wrong token is stale_lease');
select is(pg_temp.refusal(format($$ select observability.complete_job(%L) $$, :'j1')),
  'PT409 stale_lease', 'a leased job is not completed without its token');
select is(pg_temp.refusal(format($$ select observability.fail_job(%L, 'x', gen_random_uuid()) $$, :'j1')),
  'PT409 stale_lease', 'nor failed with a wrong token');
select is(pg_temp.state(:'j1') || '/' || pg_temp.events(:'j1'), 'running/1/2', 'refused settles changed nothing');

-- Heartbeat extends the lease, writes no event.
select is(observability.heartbeat_job(:'j1', :'t1', 300) ->> 'lease_expires_at',
  to_jsonb(now() + interval '300 seconds') #>> '{}', 'heartbeat extends the lease');
select is(pg_temp.refusal(format($$ select observability.heartbeat_job(%L, gen_random_uuid()) $$, :'j1')),
  'PT409 stale_lease', 'a heartbeat with a wrong token is stale_lease');
select is(pg_temp.events(:'j1'), 2, 'a heartbeat is not a transition');

-- Failures: backoff 30 s, 120 s, then dead with an alert in the same transaction.
select is(observability.fail_job(:'j1', 'HTTP 502 from the deploy hook', :'t1') ->> 'status', 'failed',
  'a first failure schedules a retry');
select is(pg_temp.wait_of(:'j1'), 30, 'after the first failure the job waits 30 s');
select is((select detail ->> 'error' from observability.job_events where job_id = :'j1' and to_status = 'failed'),
  'HTTP 502 from the deploy hook', 'the failed event carries the error');
select is((select count(*)::int from observability.claim_job('worker-a', array[:'deploy'], 10) c where c ->> 'job_id' = :'j1'), 0,
  'a job waiting for its retry is not claimed');
select is(observability.fail_job(:'j1', 'HTTP 502 again', pg_temp.claim(:'j1')) ->> 'status', 'failed', 'second failure');
select is(pg_temp.wait_of(:'j1'), 120, 'after the second failure it waits 120 s');
select is(observability.fail_job(:'j1', 'HTTP 503', pg_temp.claim(:'j1')) ->> 'status', 'dead',
  'the third failure of max_attempts 3 is dead');
select is((select row(status, attempts, last_error, finished_at is not null, lease_token is null)::text
  from observability.jobs where id = :'j1'), '(dead,3,"HTTP 503",t,t)', 'the dead job keeps its attempts and last error');
select is(pg_temp.transitions(:'j1'), array['->queued', 'queued>running', 'running>failed', 'failed>running',
  'running>failed', 'failed>running', 'running>dead'], 'every transition wrote exactly one job_events row');
select is((select array_agg(outcome || ':' || attempt order by id) from observability.job_runs where job_id = :'j1'),
  array['failed:1', 'failed:2', 'failed:3'], 'one run per attempt');
select is((select job_id::text from observability.dead_jobs where job_id = :'j1'), :'j1', 'the job is in dead_jobs');
select is((select event_type || '/' || aggregate_id || '/' || correlation_id || '/' || (payload -> 'details' ->> 'job_id')
  from integration.outbox where source = 'switchyard' and idempotency_key like 'alert.job_dead:' || :'deploy' || ':%'),
  'alert.job_dead/' || :'deploy' || '/cid-' || :'tag' || '/' || :'j1', 'a dead job raises alert.job_dead for its type, with its correlation id');
select pg_temp.enqueue(:'deploy', 'deploy-retry-after') as j_ra \gset
select is(observability.fail_job(:'j_ra', 'HTTP 429', pg_temp.claim(:'j_ra'), 5) ->> 'status', 'failed', 'fail with retry_after_seconds');
select is(pg_temp.wait_of(:'j_ra'), 5, 'retry_after_seconds replaces the backoff step');

-- An expired lease is reclaimed as a failed attempt; the old token is fenced out.
select pg_temp.enqueue(:'deploy', 'deploy-reclaim') as j_r \gset
select pg_temp.claim(:'j_r') as t_r \gset
update observability.jobs set lease_expires_at = now() - interval '1 second' where id = :'j_r';
select is(observability.reclaim_expired_jobs(), 1, 'reclaim returns the expired lease to the queue');
select is((select status || '/' || attempts || '/' || last_error from observability.jobs where id = :'j_r'),
  'failed/1/lease expired before complete or fail', 'the expiry is a failed attempt with backoff');
select is((select outcome from observability.job_runs where job_id = :'j_r'), 'lease_expired', 'the run ends lease_expired');
select is(pg_temp.transitions(:'j_r'), array['->queued', 'queued>running', 'running>failed'],
  'the reclaim wrote exactly one job_events row');
select is((select worker from observability.job_events where job_id = :'j_r' and to_status = 'failed'), 'worker-a',
  'naming the worker that lost the lease');
select is(pg_temp.refusal(format($$ select observability.complete_job(%L, '{"late": true}', lease_token => %L) $$, :'j_r', :'t_r')),
  'PT409 stale_lease', 'a late complete after the reclaim is refused');
select is(pg_temp.refusal(format($$ select observability.fail_job(%L, 'late', %L) $$, :'j_r', :'t_r')),
  'PT409 stale_lease', 'and so is a late fail');
select is((select status || '/' || attempts || '/' || coalesce(result::text, 'no result') from observability.jobs where id = :'j_r')
  || '/' || pg_temp.events(:'j_r') || '/' || (select count(*) from observability.job_runs where job_id = :'j_r'),
  'failed/1/no result/3/1', 'and changes nothing');
select pg_temp.claim(:'j_r') as t_r2 \gset
update observability.jobs set lease_expires_at = now() - interval '1 second', available_at = now() where id = :'j_r';
select is((select count(*)::int from observability.claim_job('worker-c', array[:'deploy'], 10) c where c ->> 'job_id' = :'j_r'), 0,
  'a claim reclaims expired leases itself (the job backs off)');
select is(pg_temp.state(:'j_r'), 'failed/2', 'the reclaimed job waits for its retry');
select is((select command from cron.job where jobname = 'observability-reclaim-expired-jobs' and schedule = '* * * * *'),
  'select observability.reclaim_expired_jobs()', 'pg_cron reclaims expired job leases every minute');

-- The seed's pattern: enqueue, execute, complete, without a claim.
select pg_temp.enqueue(:'backup', 'backup-2') as j_u \gset
select is(observability.complete_job(:'j_u', '{"bytes": 42}') ->> 'status', 'succeeded', 'a queued job is completed without a token');
select is((select attempt || '/' || coalesce(worker, 'no worker') || '/' || outcome from observability.job_runs where job_id = :'j_u'),
  '1/no worker/succeeded', 'the run is recorded, attempt 1');
select is(pg_temp.transitions(:'j_u'), array['->queued', 'queued>succeeded'], 'one transition');
select pg_temp.enqueue(:'backup', 'backup-3') as j_u2 \gset
select is(observability.fail_job(:'j_u2', 'disk full') ->> 'status', 'failed', 'a queued job is failed without a token');
select is(observability.fail_job(:'j_u2', 'disk still full') ->> 'attempts', '2', 'and again while it waits for the retry');
select is(pg_temp.transitions(:'j_u2'), array['->queued', 'queued>failed', 'failed>failed'],
  'an attempt counted without a change of status is a transition too');
select pg_temp.enqueue(:'backup', 'backup-once', 0, 1) as j_once \gset
select is(observability.fail_job(:'j_once', 'no space') ->> 'status', 'dead', 'max_attempts 1: the first failure is dead');

-- The executor's own lease (n8n: enqueue, start_job, execute, complete with
-- the token): the job is running while it executes, and an executor that dies
-- leaves a lease that expires.
select pg_temp.enqueue(:'deploy', 'deploy-start') as j_s \gset
select is(pg_temp.refusal($$ select observability.start_job(null, 'n8n:x') $$), 'PT422 validation_failed job_id', 'start without a job id');
select is(pg_temp.refusal(format($$ select observability.start_job(%L, '') $$, :'j_s')), 'PT422 validation_failed worker', 'start without a worker');
select is(pg_temp.refusal(format($$ select observability.start_job(%L, repeat('w', 101)) $$, :'j_s')), 'PT422 validation_failed worker', 'start with a worker over 100 characters');
select is(pg_temp.refusal(format($$ select observability.start_job(%L, 'n8n:x', 1) $$, :'j_s')), 'PT422 validation_failed lease_seconds', 'start with a 1 s lease');
select is(pg_temp.refusal($$ select observability.start_job(gen_random_uuid(), 'n8n:x') $$), 'PT422 validation_failed job_id', 'start an unknown job');
select is(pg_temp.state(:'j_s') || '/' || pg_temp.events(:'j_s') || '/' || (select count(*) from observability.job_runs where job_id = :'j_s'),
  'queued/0/1/0', 'refused starts wrote nothing');
update observability.jobs set available_at = now() + interval '1 hour' where id = :'j_s';
create temp table start1 as select observability.start_job(:'j_s', 'n8n:switchyard deploy-trigger', 300) as r;
select (r ->> 'lease_token') as t_s from start1 \gset
select is((select r - 'lease_token' from start1),
  jsonb_build_object('job_id', :'j_s', 'lease_expires_at', now() + interval '300 seconds', 'attempt', 1,
    'correlation_id', (select correlation_id from observability.jobs where id = :'j_s')),
  'start_job leases the job (whatever its available_at) and returns its lease, attempt and correlation id');
select is((select row(status, attempts, locked_by, lease_token::text)::text from observability.jobs where id = :'j_s'),
  row('running', 1, 'n8n:switchyard deploy-trigger', :'t_s')::text, 'the started job is running under its token, its attempt counted');
select is(pg_temp.transitions(:'j_s'), array['->queued', 'queued>running'], 'start_job wrote exactly one job_events row');
select is((select worker || '/' || (detail ->> 'started_by') from observability.job_events where job_id = :'j_s' and to_status = 'running'),
  'n8n:switchyard deploy-trigger/start_job', 'the event names the executor and start_job');
select is((select attempt || '/' || worker || '/' || (finished_at is null)::text from observability.job_runs where job_id = :'j_s'),
  '1/n8n:switchyard deploy-trigger/true', 'start_job opened a run');
select is(pg_temp.refusal(format($$ select observability.start_job(%L, 'n8n:x') $$, :'j_s')),
  'PT409 stale_lease', 'a running job is not started again');
select is(pg_temp.refusal(format($$ select observability.complete_job(%L) $$, :'j_s')),
  'PT409 stale_lease', 'a started job is not completed without its token');
select is(pg_temp.refusal(format($$ select observability.complete_job(%L, lease_token => gen_random_uuid()) $$, :'j_s')),
  'PT409 stale_lease', 'nor with a wrong token');
select is(pg_temp.refusal(format($$ select observability.fail_job(%L, 'x') $$, :'j_s')),
  'PT409 stale_lease', 'nor failed without its token');
select is(pg_temp.state(:'j_s') || '/' || pg_temp.events(:'j_s') || '/' || (select count(*) from observability.job_runs where job_id = :'j_s'),
  'running/1/2/1', 'refused settles changed nothing');
select is(observability.complete_job(:'j_s', '{"http_status": 200}', lease_token => :'t_s') ->> 'status', 'succeeded',
  'complete_job with the start token succeeds');
select is(pg_temp.transitions(:'j_s'), array['->queued', 'queued>running', 'running>succeeded'], 'queued, running, succeeded');
select is((select attempt || '/' || outcome || '/' || worker from observability.job_runs where job_id = :'j_s'),
  '1/succeeded/n8n:switchyard deploy-trigger', 'one run, closed');
select is(pg_temp.refusal(format($$ select observability.start_job(%L, 'n8n:x') $$, :'j_s')),
  'PT409 stale_lease', 'a finished job is not started');
select is(observability.start_job(:'j_u2', 'n8n:x') ->> 'attempt', '3', 'a failed job waiting for its retry is started now, its next attempt');
select (observability.enqueue_job('pgtap', :'tag' || '.once', correlation_id => 'cid-once-' || :'tag', max_attempts => 1)
  ->> 'job_id')::uuid as j_sd \gset
select observability.start_job(:'j_sd', 'n8n:switchyard backup-scheduler', 300) ->> 'lease_token' as t_sd \gset
update observability.jobs set lease_expires_at = now() - interval '1 second' where id = :'j_sd';
select is(observability.reclaim_expired_jobs(), 1, 'the lease of an executor that died expires and is reclaimed');
select is((select row(status, attempts, last_error, finished_at is not null)::text from observability.jobs where id = :'j_sd'),
  '(dead,1,"lease expired before complete or fail",t)', 'as a failed attempt: with max_attempts 1 the job is dead');
select is((select outcome || '/' || worker from observability.job_runs where job_id = :'j_sd'),
  'lease_expired/n8n:switchyard backup-scheduler', 'its run ends lease_expired');
select is(pg_temp.transitions(:'j_sd'), array['->queued', 'queued>running', 'running>dead'], 'queued, running, dead');
select is((select event_type || '/' || aggregate_id || '/' || correlation_id || '/' || (payload -> 'details' ->> 'job_id')
  from integration.outbox where source = 'switchyard' and idempotency_key like 'alert.job_dead:' || :'tag' || '.once:%'),
  'alert.job_dead/' || :'tag' || '.once/cid-once-' || :'tag' || '/' || :'j_sd', 'and alert.job_dead is on the outbox, with its correlation id');
select is(pg_temp.refusal(format($$ select observability.complete_job(%L, lease_token => %L) $$, :'j_sd', :'t_sd')),
  'PT409 stale_lease', 'the executor''s late complete is refused');

-- Cancel and requeue.
select is(observability.cancel_job(:'j_low', 'superseded by deploy-high', 'ops@example.com'),
  jsonb_build_object('job_id', :'j_low', 'status', 'cancelled', 'previous_status', 'running'), 'a running job is cancelled');
select is((select outcome || '/' || error from observability.job_runs where job_id = :'j_low'),
  'cancelled/superseded by deploy-high', 'its run ends cancelled');
select is((select detail ->> 'requested_by' || ': ' || (detail ->> 'reason') from observability.job_events
  where job_id = :'j_low' and to_status = 'cancelled'), 'ops@example.com: superseded by deploy-high',
  'the cancel event records who and why');
select is(pg_temp.refusal(format($$ select observability.complete_job(%L, lease_token => %L) $$, :'j_low',
  (select c ->> 'lease_token' from claim2))), 'PT409 stale_lease', 'the worker whose job was cancelled cannot complete it');
select is(pg_temp.refusal(format($$ select observability.cancel_job(%L, 'again', 'ops') $$, :'j_high')),
  'PT409 stale_lease', 'a succeeded job cannot be cancelled');
select is(pg_temp.refusal(format($$ select observability.requeue_job(%L, 'ops') $$, :'j_backup')),
  'PT409 stale_lease', 'only dead or cancelled jobs are requeued');
select is(observability.requeue_job(:'j_once', 'ops@example.com') ->> 'status', 'queued', 'a dead job is requeued');
select is((select row(status, attempts, finished_at is null)::text from observability.jobs where id = :'j_once'),
  '(queued,0,t)', 'with its attempts reset');
select is((select detail from observability.job_events where job_id = :'j_once' and from_status = 'dead'),
  '{"requested_by": "ops@example.com", "previous_attempts": 1}'::jsonb, 'the requeue is audited');
select is(observability.cancel_job(:'j1', 'will not fix', 'ops') ->> 'previous_status', 'dead',
  'a dead job is dismissed by cancelling it');
select is((select count(*)::int from observability.dead_jobs where job_id = :'j1'), 0, 'and leaves dead_jobs');

-- job_events is append-only, for every role.
select throws_ok(format($$ update observability.job_events set detail = '{}' where job_id = %L $$, :'j1'),
  'PT403', 'forbidden', 'UPDATE on job_events is refused, even for the superuser');
select throws_ok(format($$ delete from observability.job_events where job_id = %L $$, :'j1'),
  'PT403', 'forbidden', 'DELETE on job_events is refused outside the retention purge');
select throws_ok($$ truncate observability.job_events $$, 'PT403', 'forbidden', 'TRUNCATE on job_events is refused');
set local role service_role;
select throws_ok(format($$ delete from observability.job_events where job_id = %L $$, :'j1'), '42501', null,
  'service_role may not delete job_events');
select throws_ok($$ update observability.jobs set status = 'succeeded' $$, '42501', null,
  'service_role changes jobs only through the RPCs');
reset role;

-- The claim's shape and churn settings.
select has_index('observability', 'jobs', 'jobs_claimable_idx', 'claimable jobs have a claim index');
select ok((select reloptions @> array['autovacuum_vacuum_scale_factor=0', 'autovacuum_vacuum_threshold=5000']
  from pg_class where oid = 'observability.jobs'::regclass), 'jobs vacuums by row count');

select * from finish();
rollback;
