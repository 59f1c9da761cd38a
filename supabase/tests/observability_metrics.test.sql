-- observability: the hourly metrics rollup (idempotent upsert of complete
-- hours), the retention purge (the only way rows leave job_events), and the
-- pg_cron jobs that run them.
begin;
set search_path = extensions, public;
select plan(22);

select 'pgtap' || substr(md5(random()::text), 1, 10) as tag \gset
select :'tag' || '.sync' as jt, date_trunc('hour', now(), 'UTC') - interval '1 hour' as h \gset
update observability.settings set job_events_retention_days = 30, job_runs_retention_days = 30,
  service_health_retention_days = 14;

\ir lib/refusal.sql

-- The last complete hour h: three jobs enqueued (and one the hour before),
-- four attempts finished (100, 300 ms succeeded; 200 ms failed; a lease that
-- expired after 1000 ms), a cancelled run (not an attempt), one job died.
insert into observability.jobs (id, source, job_type, created_at) values
  ('00000000-0000-4000-8000-0000000000a1', 'pgtap', :'jt', :'h'::timestamptz + interval '10 minutes'),
  ('00000000-0000-4000-8000-0000000000a2', 'pgtap', :'jt', :'h'::timestamptz + interval '11 minutes'),
  ('00000000-0000-4000-8000-0000000000a3', 'pgtap', :'jt', :'h'::timestamptz + interval '59 minutes'),
  ('00000000-0000-4000-8000-0000000000a4', 'pgtap', :'jt', :'h'::timestamptz - interval '30 minutes');
insert into observability.job_runs (job_id, attempt, started_at, finished_at, outcome)
select '00000000-0000-4000-8000-0000000000a1', n, :'h'::timestamptz + make_interval(mins => 20 + n),
       :'h'::timestamptz + make_interval(mins => 20 + n) + make_interval(secs => ms / 1000.0), outcome
from (values (1, 100, 'succeeded'), (2, 300, 'succeeded'), (3, 200, 'failed'), (4, 1000, 'lease_expired'),
             (5, 50, 'cancelled')) v(n, ms, outcome);
insert into observability.job_events (job_id, from_status, to_status, at, attempt, correlation_id)
values ('00000000-0000-4000-8000-0000000000a2', 'running', 'dead', :'h'::timestamptz + interval '30 minutes', 3, 'c');
insert into observability.services (name, url) values (:'tag', 'https://example.com/') returning id as svc \gset
insert into observability.service_health (service_id, checked_at, status, response_time_ms) values
  (:svc, :'h'::timestamptz + interval '5 minutes', 'healthy', 10),
  (:svc, :'h'::timestamptz + interval '10 minutes', 'degraded', 1500),
  (:svc, :'h'::timestamptz + interval '15 minutes', 'failing', null),
  (:svc, now(), 'healthy', 20);

select cmp_ok(observability.rollup_metrics(2), '>=', 3, 'the rollup reports the rows it wrote');
select is((select row(enqueued, succeeded, failed_attempts, dead, avg_duration_ms, p95_duration_ms)::text
  from observability.job_metrics where hour = :'h' and job_type = :'jt'), '(3,2,2,1,400.000,895.000)',
  'per hour and job type: enqueued, succeeded and failed attempts, dead, average and p95 run duration');
select is((select row(enqueued, succeeded, failed_attempts, dead, avg_duration_ms)::text
  from observability.job_metrics where hour = :'h'::timestamptz - interval '1 hour' and job_type = :'jt'),
  '(1,0,0,0,)', 'the hour before is rolled up too');
select is((select row(samples, healthy, degraded, failing, avg_response_ms)::text
  from observability.service_metrics where hour = :'h' and service_id = :svc), '(3,1,1,1,755.000)',
  'per hour and service: samples by what the probe saw and the average response time');
select is((select count(*)::int from observability.job_metrics where job_type = :'jt' and hour >= date_trunc('hour', now(), 'UTC'))
  + (select count(*)::int from observability.service_metrics where service_id = :svc and hour >= date_trunc('hour', now(), 'UTC')),
  0, 'the current hour is not complete and not rolled up');

create temp table first_rollup as select * from observability.job_metrics where job_type = :'jt';
select observability.rollup_metrics(2);
select is((select array_agg(row(m.hour, m.enqueued, m.succeeded, m.failed_attempts, m.dead, m.avg_duration_ms,
    m.p95_duration_ms)::text order by m.hour) from observability.job_metrics m where m.job_type = :'jt'),
  (select array_agg(row(f.hour, f.enqueued, f.succeeded, f.failed_attempts, f.dead, f.avg_duration_ms,
    f.p95_duration_ms)::text order by f.hour) from first_rollup f),
  'running it again changes nothing (idempotent)');
insert into observability.job_runs (job_id, attempt, started_at, finished_at, outcome)
values ('00000000-0000-4000-8000-0000000000a3', 1, :'h'::timestamptz + interval '40 minutes',
        :'h'::timestamptz + interval '40 minutes 0.4 seconds', 'succeeded');
select observability.rollup_metrics(2);
select is((select row(succeeded, avg_duration_ms)::text from observability.job_metrics where hour = :'h' and job_type = :'jt'),
  '(3,400.000)', 'a late row is counted when its hour is rolled up again (upsert)');
select is(pg_temp.refusal($$ select observability.rollup_metrics(0) $$), 'PT422 validation_failed p_hours',
  'the number of hours is validated');
select is((select schedule || ' ' || command from cron.job where jobname = 'observability-rollup-metrics'),
  '5 * * * * select observability.rollup_metrics()', 'pg_cron rolls up the last complete hours at minute 5');

-- Retention: older than the settings' days is deleted, younger stays.
insert into observability.job_events (job_id, from_status, to_status, at, attempt, correlation_id) values
  ('00000000-0000-4000-8000-0000000000a4', 'queued', 'running', now() - interval '31 days', 1, 'old-' || :'tag'),
  ('00000000-0000-4000-8000-0000000000a4', 'running', 'failed', now() - interval '29 days', 1, 'young-' || :'tag');
insert into observability.job_runs (job_id, attempt, started_at, finished_at, outcome, error) values
  ('00000000-0000-4000-8000-0000000000a4', 1, now() - interval '32 days', now() - interval '31 days', 'failed', 'old-' || :'tag'),
  ('00000000-0000-4000-8000-0000000000a4', 2, now() - interval '30 days', now() - interval '29 days', 'failed', 'young-' || :'tag');
insert into observability.service_health (service_id, checked_at, status, correlation_id) values
  (:svc, now() - interval '15 days', 'failing', 'old-' || :'tag'),
  (:svc, now() - interval '13 days', 'failing', 'young-' || :'tag');

create temp table purged as select observability.purge_retention() as r;
select ok((select (r ->> 'job_events')::int >= 1 and (r ->> 'job_runs')::int >= 1 and (r ->> 'service_health')::int >= 1
  from purged), 'the purge reports what it deleted per table');
select is((select array_agg(correlation_id) from observability.job_events
  where correlation_id in ('old-' || :'tag', 'young-' || :'tag')), array['young-' || :'tag'],
  'job_events older than job_events_retention_days are deleted');
select is((select array_agg(error) from observability.job_runs where error in ('old-' || :'tag', 'young-' || :'tag')),
  array['young-' || :'tag'], 'finished job_runs older than job_runs_retention_days are deleted');
select is((select array_agg(correlation_id) from observability.service_health
  where correlation_id in ('old-' || :'tag', 'young-' || :'tag')), array['young-' || :'tag'],
  'service_health samples older than service_health_retention_days are deleted');
select is((select count(*)::int from observability.job_metrics where job_type = :'jt'), 2, 'metrics are kept');
select throws_ok(format($$ delete from observability.job_events where correlation_id = %L $$, 'young-' || :'tag'),
  'PT403', 'forbidden', 'after the purge, deleting job_events is refused again (the flag is cleared)');
select is(current_setting('observability.purging', true), '', 'the purge flag is off');
update observability.settings set service_health_retention_days = 7;
select is((observability.purge_retention() ->> 'service_health')::int >= 1, true, 'retention follows the settings');
select is((select count(*)::int from observability.service_health where correlation_id = 'young-' || :'tag'), 0,
  'a 13-day-old sample goes under a 7-day retention');
select throws_ok($$ update observability.settings set job_backoff_seconds = '{30,null}' $$, '23514', null,
  'the backoff schedule has no gaps');
select is((select schedule || ' ' || command from cron.job where jobname = 'observability-purge-retention'),
  '30 3 * * * select observability.purge_retention()', 'pg_cron purges once a day');
select is((select schedule || ' ' || command from cron.job where jobname = 'observability-health-check'),
  '*/5 * * * * select edge.invoke(''health-check'', ''{"reason":"cron"}'')', 'pg_cron invokes the health check every 5 minutes');
select is(edge.invoke('health-check', '{"reason":"cron"}'), null, 'which sends nothing while the function is not registered')
  where not edge.is_configured('health-check')
union all
select isnt(edge.invoke('health-check', '{"reason":"cron"}'), null, 'which queues a request now the function is registered')
  where edge.is_configured('health-check');

select * from finish();
rollback;
