-- Alerts ("fail loudly"): integration.raise_alert queues alert.<kind> in the
-- outbox in the caller's transaction, grouped per kind, subject and window;
-- dead jobs alert through it; routes have a format (chat for Mattermost or
-- Slack) that claims carry.
begin;
set search_path = extensions, public;
select plan(39);

select 'pgtap-' || substr(md5(random()::text), 1, 10) as tag \gset
update integration.alert_policy set group_window_seconds = 600;

\ir lib/refusal.sql
-- This run's alert events: 'kind/subject/count/status' in order.
create temp table run as select :'tag'::text as tag;
create function pg_temp.alerts() returns text[] language sql as $$
  select coalesce(array_agg(concat_ws('/', o.payload ->> 'kind', o.aggregate_id, o.payload ->> 'count', o.status)
                            order by o.created_at, o.idempotency_key), '{}')
  from integration.outbox o
  where o.source = 'switchyard' and o.aggregate_id like (select tag from pg_temp.run) || '%'
$$;
create function pg_temp.window_start(p_seconds integer) returns text language sql as $$
  select to_char(to_timestamp(floor(extract(epoch from now()) / p_seconds) * p_seconds) at time zone 'UTC',
                 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

-- A new alert.
select is(integration.raise_alert('job_dead', :'tag' || '.deploy', 'deploy.staging failed after 3 attempts',
    '{"error": "HTTP 502", "link": "https://ci.example.com/1"}', 'cid-' || :'tag') - 'event_id',
  '{"grouped": false, "count": 1}'::jsonb, 'a first alert is a new event');
select is((select row(o.event_type, o.aggregate_type, o.aggregate_id, o.correlation_id, o.status)::text
  from integration.outbox o where o.source = 'switchyard' and o.aggregate_id = :'tag' || '.deploy'),
  format('(alert.job_dead,alert,%s.deploy,cid-%s,pending)', :'tag', :'tag'),
  'queued in the outbox as alert.<kind> from switchyard, for the router to deliver');
select is((select o.idempotency_key from integration.outbox o where o.source = 'switchyard' and o.aggregate_id = :'tag' || '.deploy'),
  'alert.job_dead:' || :'tag' || '.deploy:' || pg_temp.window_start(600),
  'its idempotency key is alert.<kind>:<subject>:<window start>');
select is((select o.payload - 'first_at' - 'last_at' from integration.outbox o
  where o.source = 'switchyard' and o.aggregate_id = :'tag' || '.deploy'),
  jsonb_build_object('kind', 'job_dead', 'subject', :'tag' || '.deploy', 'summary', 'deploy.staging failed after 3 attempts',
    'details', '{"error": "HTTP 502", "link": "https://ci.example.com/1"}'::jsonb, 'count', 1,
    'correlation_id', 'cid-' || :'tag'), 'the payload says what, about what, how often, and the correlation id');
select ok((select (o.payload ->> 'first_at')::timestamptz = now() and (o.payload ->> 'last_at')::timestamptz = now()
  from integration.outbox o where o.source = 'switchyard' and o.aggregate_id = :'tag' || '.deploy'),
  'with the first and last time it was raised');

-- Grouping within the window.
select is(integration.raise_alert('job_dead', :'tag' || '.deploy', 'another deploy failed', '{}', 'cid-2') - 'event_id',
  '{"grouped": true, "count": 2}'::jsonb, 'a repeat within the window is grouped');
select is(pg_temp.alerts(), array['job_dead/' || :'tag' || '.deploy/2/pending'],
  'still one event, its count raised while it is pending');
select is((select o.payload ->> 'summary' || ' / ' || o.correlation_id from integration.outbox o
  where o.source = 'switchyard' and o.aggregate_id = :'tag' || '.deploy'),
  'deploy.staging failed after 3 attempts / cid-' || :'tag', 'the first summary and correlation id are kept');
select is(integration.raise_alert('job_dead', :'tag' || '.backup', 'backup failed', '{}') ->> 'grouped', 'false',
  'another subject is another alert');
select is(integration.raise_alert('service_down', :'tag' || '.deploy', 'x is down', '{}') ->> 'grouped', 'false',
  'another kind is another alert');
update integration.outbox set status = 'completed', completed_at = now()
where source = 'switchyard' and aggregate_id = :'tag' || '.deploy' and event_type = 'alert.job_dead';
select is(integration.raise_alert('job_dead', :'tag' || '.deploy', 'a third deploy failed', '{}') - 'event_id',
  '{"grouped": true, "count": 3}'::jsonb, 'a repeat after delivery within the window is only counted');
select is(pg_temp.alerts(), array['job_dead/' || :'tag' || '.backup/1/pending', 'job_dead/' || :'tag' || '.deploy/3/completed',
    'service_down/' || :'tag' || '.deploy/1/pending'],
  'nothing new is queued: the delivered event keeps its status');
-- The same alert in a later window: the earlier event's key names an earlier window.
update integration.outbox set idempotency_key = 'alert.job_dead:' || :'tag' || '.deploy:2000-01-01T00:00:00Z'
where source = 'switchyard' and aggregate_id = :'tag' || '.deploy' and event_type = 'alert.job_dead';
select is(integration.raise_alert('job_dead', :'tag' || '.deploy', 'deploy failed again', '{}') - 'event_id',
  '{"grouped": false, "count": 1}'::jsonb, 'in a new window the alert is sent again');
select is((select count(*)::int from integration.outbox where source = 'switchyard' and aggregate_id = :'tag' || '.deploy'
  and event_type = 'alert.job_dead'), 2, 'as a second event');
update integration.alert_policy set group_window_seconds = 86400;
select is(integration.raise_alert('job_dead', :'tag' || '.daily', 'x', '{}') ->> 'grouped', 'false', 'a daily window');
select is((select o.idempotency_key from integration.outbox o where o.source = 'switchyard' and o.aggregate_id = :'tag' || '.daily'),
  'alert.job_dead:' || :'tag' || '.daily:' || to_char(now() at time zone 'UTC', 'YYYY-MM-DD') || 'T00:00:00Z',
  'the window length is alert_policy.group_window_seconds');
update integration.alert_policy set group_window_seconds = 600;
select ok((select o.correlation_id ~ '^[0-9a-f-]{36}$' and o.payload ->> 'correlation_id' = o.correlation_id
  from integration.outbox o where o.source = 'switchyard' and o.aggregate_id = :'tag' || '.daily'),
  'an alert raised without a correlation id gets a new one');

-- Refusals write nothing.
select pg_temp.alerts() as before_refusals \gset
select is(pg_temp.refusal($$ select integration.raise_alert('Job-Dead', 'x', 'y', '{}') $$),
  'PT422 validation_failed p_kind', 'a kind must be a lower-case word');
select is(pg_temp.refusal($$ select integration.raise_alert('job_dead', '', 'y', '{}') $$),
  'PT422 validation_failed p_subject', 'a subject is required');
select is(pg_temp.refusal($$ select integration.raise_alert('job_dead', 'x', null, '{}') $$),
  'PT422 validation_failed p_summary', 'a summary is required');
select is(pg_temp.refusal($$ select integration.raise_alert('job_dead', 'x', 'y', '[]') $$),
  'PT422 validation_failed p_details', 'details are an object');
select is(pg_temp.alerts()::text, :'before_refusals', 'refused alerts wrote nothing');

-- Dead jobs of one type within the window are one alert, with a count.
create function pg_temp.dead_job(p_type text) returns text language sql as $$
  select observability.fail_job((observability.enqueue_job('pgtap', p_type, max_attempts => 1) ->> 'job_id')::uuid,
                                'HTTP 500') ->> 'status'
$$;
select is(pg_temp.dead_job(:'tag' || '.sync') || ' ' || pg_temp.dead_job(:'tag' || '.sync'), 'dead dead', 'two jobs of one type die');
select is((select concat_ws('/', o.payload ->> 'count', o.payload -> 'details' ->> 'error') from integration.outbox o
  where o.source = 'switchyard' and o.aggregate_id = :'tag' || '.sync'), '2/HTTP 500',
  'one alert.job_dead for the type, count 2, with the error');
select is(pg_temp.refusal(format($$ select 1 / (0 * length(observability.fail_job(
    (observability.enqueue_job('pgtap', %L, max_attempts => 1) ->> 'job_id')::uuid, 'HTTP 500')::text)) $$, :'tag' || '.atomic')),
  '22012 division by zero', 'a transaction that fails after a job died');
select is((select count(*)::int from integration.outbox where source = 'switchyard' and aggregate_id = :'tag' || '.atomic'), 0,
  'leaves no alert behind: the alert is written in the caller''s transaction');

-- Route formats: claims carry them.
select is((select column_default from information_schema.columns
  where table_schema = 'integration' and table_name = 'routes' and column_name = 'format'),
  '''standard-webhooks''::text', 'routes default to Standard Webhooks');
select throws_ok($$ insert into integration.routes (event_pattern, target_url, signing_secret, format)
  values ('pgtap.*', 'http://127.0.0.1:9/x', 'whsec_x', 'xml') $$, '23514', null, 'a route format is standard-webhooks or chat');
select is((select (array_agg(a.attname::text order by a.attnum))[15:16] from pg_attribute a
  where a.attrelid = 'integration.leased_event'::regclass and a.attnum > 0), array['max_concurrency', 'format'],
  'a leased event carries the route''s format after max_concurrency');
update integration.outbox set available_at = now() + interval '100 years' where status = 'pending';
update integration.outbox set available_at = now()
where source = 'switchyard' and aggregate_id like :'tag' || '%' and status = 'pending';
delete from integration.routes;
insert into integration.routes (event_pattern, target_url, signing_secret, format) values
  ('alert.*', 'http://127.0.0.1:9/hooks/ops', 'whsec_YWxlcnQtc2VjcmV0LTAxMjM0NTY3ODkwMTI=', 'chat');
insert into integration.routes (event_pattern, target_url, signing_secret) values
  ('expense.*', 'http://127.0.0.1:9/expense', 'whsec_ZXhwZW5zZS1zZWNyZXQtMDEyMzQ1Njc4OQ==');
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
values ('odoo', 'pgtap-' || :'tag', 'expense.submitted', 'hr.expense', :'tag' || '-42', '{}', 'cid-' || :'tag');
create temp table claimed as select to_jsonb(c) as c from integration.claim_outbox('pgtap-worker', 100, 60) as c;
select is((select array_agg(distinct c ->> 'format') from claimed where c ->> 'event_type' like 'alert.%'), array['chat'],
  'claimed alerts carry their route''s format, chat');
select is((select c ->> 'format' from claimed where c ->> 'event_type' = 'expense.submitted'), 'standard-webhooks',
  'other events carry standard-webhooks');
select is((select count(*)::int from claimed where c ->> 'event_type' like 'alert.%'),
  (select count(*)::int from integration.outbox where source = 'switchyard' and aggregate_id like :'tag' || '%'
     and status = 'processing'), 'every pending alert of this run was claimed');
update integration.outbox set available_at = now(), status = 'pending', lock_token = null, lease_expires_at = null,
  locked_by = null, locked_at = null
where source = 'switchyard' and aggregate_id like :'tag' || '%' and status = 'processing';
select is((select array_agg(distinct c.format) from integration.router_claim('pgtap-router', 100, 60) c), array['chat'],
  'router_claim carries the format too');
-- A delivered alert stays hot: raise_alert counts a repeat into its row.
select integration.settle_outbox((select jsonb_agg(jsonb_build_object('id', o.id, 'lease_token', o.lock_token, 'ok', true))
  from integration.outbox o where o.source = 'switchyard' and o.aggregate_id like :'tag' || '%' and o.status = 'processing'))
  ->> 'acked' as alerts_acked \gset
select ok(:alerts_acked > 0, 'the run''s alerts are acked');
select ok((select count(*) filter (where o.status = 'completed' and o.lock_token is null) >= :alerts_acked
                  and count(*) filter (where o.status <> 'completed') = 0
           from integration.outbox o where o.source = 'switchyard' and o.aggregate_id like :'tag' || '%'),
  'a delivered alert stays in the hot table, completed, for its group window');

-- A job nobody takes: one alert.job_stuck for its type, counted, not repeated.
insert into observability.jobs (source, job_type, available_at, created_at)
values ('pgtap', :'tag' || '.stuck', now() - interval '1 hour', now() - interval '1 hour'),
       ('pgtap', :'tag' || '.stuck', now() - interval '20 minutes', now() - interval '20 minutes'),
       ('pgtap', :'tag' || '.fresh', now(), now());
select ok(observability.alert_stuck_jobs() >= 1, 'a job type waiting longer than stuck_after_seconds is alerted');
select is((select (o.payload #>> '{details,waiting}') || ' ' || (o.payload ->> 'count') from integration.outbox o
           where o.source = 'switchyard' and o.event_type = 'alert.job_stuck' and o.aggregate_id = :'tag' || '.stuck'),
  '2 1', 'one alert for the type, with how many jobs wait');
select observability.alert_stuck_jobs();
select ok((select (o.payload ->> 'count')::int from integration.outbox o
       where o.source = 'switchyard' and o.event_type = 'alert.job_stuck' and o.aggregate_id = :'tag' || '.stuck') = 2
  and not exists (select 1 from integration.outbox o
                  where o.event_type = 'alert.job_stuck' and o.aggregate_id = :'tag' || '.fresh'),
  'the next run counts the same alert, and a job that just became due is not stuck');
select is((select schedule || ' ' || command from cron.job where jobname = 'observability-alert-stuck-jobs'),
  '* * * * * select observability.alert_stuck_jobs()', 'pg_cron looks for stuck jobs every minute');

select * from finish();
rollback;
