-- ops: one timeline per correlation id across schemas (get_trace over
-- ops.trace_rows), indexed lookups in every source, the event-style view
-- ops.events, and queue depth.
begin;
set search_path = extensions, public;
select plan(20);

select 'pgtap-' || substr(md5(random()::text), 1, 10) as tag \gset
select 'cid-' || :'tag' as cid, '2026-01-01 00:00:00+00'::timestamptz as t0 \gset

-- A timeline with known instants, one row per source, interleaved.
insert into integration.event_log (event_id, source, idempotency_key, event_type, aggregate_type, aggregate_id,
                                   payload, correlation_id, scheme, signing_key_id, created_at)
values ('00000000-0000-4000-8000-000000000001', 'odoo', :'tag', 'expense.submitted', 'hr.expense', '42', '{}',
        :'cid', 'ipai-hmac', 'key_test', :'t0');
insert into integration.outbox (id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
                                correlation_id, created_at, status, attempts, completed_at, error_history)
values ('00000000-0000-4000-8000-000000000001', 'odoo', :'tag', 'expense.submitted', 'hr.expense', '42', '{}', :'cid',
        :'t0', 'completed', 2, :'t0'::timestamptz + interval '6 seconds',
        jsonb_build_array(jsonb_build_object('attempt', 1, 'at', :'t0'::timestamptz + interval '3 seconds',
                                             'worker', 'router-1', 'error', 'HTTP 503')));
insert into observability.jobs (id, source, job_type, correlation_id, status, attempts, created_at, updated_at, finished_at)
values ('00000000-0000-4000-8000-000000000002', 'n8n', 'expense.approve', :'cid', 'succeeded', 1,
        :'t0'::timestamptz + interval '1 second', :'t0'::timestamptz + interval '5.5 seconds',
        :'t0'::timestamptz + interval '5.5 seconds');
insert into observability.job_events (job_id, from_status, to_status, at, attempt, worker, correlation_id) values
  ('00000000-0000-4000-8000-000000000002', 'queued', 'running', :'t0'::timestamptz + interval '2 seconds', 1, 'w1', :'cid'),
  ('00000000-0000-4000-8000-000000000002', 'running', 'succeeded', :'t0'::timestamptz + interval '5.5 seconds', 1, 'w1', :'cid');
insert into observability.job_runs (job_id, attempt, worker, started_at, finished_at, outcome, result)
values ('00000000-0000-4000-8000-000000000002', 1, 'w1', :'t0'::timestamptz + interval '2 seconds',
        :'t0'::timestamptz + interval '5 seconds', 'succeeded', '{"approved": true}');
insert into observability.services (name, url) values (:'tag', 'https://odoo.example.com/health') returning id as svc \gset
insert into observability.service_health (service_id, checked_at, status, response_time_ms, http_status, correlation_id)
values (:svc, :'t0'::timestamptz + interval '4 seconds', 'healthy', 85, 200, :'cid');
-- Rows of another correlation id are not in the trace.
insert into observability.service_health (service_id, checked_at, status, correlation_id)
values (:svc, :'t0'::timestamptz + interval '4 seconds', 'failing', :'cid' || '-other');

create temp table trace as select row_number() over () as n, t.* from ops.get_trace(:'cid') t;
select is((select array_agg(kind order by n) from trace),
  array['event.received', 'outbox.queued', 'job.enqueued', 'job.running', 'outbox.attempt_failed', 'health.healthy',
        'job.run_succeeded', 'job.succeeded', 'outbox.delivered'],
  'get_trace interleaves every source in time order (received before queued at the same instant)');
select is((select array_agg(source order by n) from trace),
  array['integration.event_log', 'integration.outbox', 'observability.jobs', 'observability.job_events', 'integration.outbox',
        'observability.service_health', 'observability.job_runs', 'observability.job_events', 'integration.outbox'],
  'each row names the table it comes from');
select is((select array_agg(coalesce(duration_ms::text, '-') order by n) from trace),
  array['-', '0.000', '1000.000', '1000.000', '1000.000', '1000.000', '1000.000', '500.000', '500.000'],
  'each row carries the milliseconds since the previous one');
select is((select array_agg(subject_id order by n) from trace where source like 'integration.%'),
  array['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000001',
        '00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000001'],
  'integration rows name the event');
select is((select detail from trace where kind = 'outbox.attempt_failed'),
  '{"event_type": "expense.submitted", "attempt": 1, "worker": "router-1", "error": "HTTP 503"}'::jsonb,
  'a failed delivery attempt comes from the outbox''s error history');
select is((select detail - 'started_at' from trace where kind = 'job.run_succeeded'),
  '{"attempt": 1, "worker": "w1", "outcome": "succeeded", "duration_ms": 3000.000, "result": {"approved": true}}'::jsonb,
  'a run says how long it took and what it returned');
select is((select detail ->> 'service' from trace where kind = 'health.healthy'), :'tag', 'a health sample names the service');
select is((select count(*)::int from ops.get_trace(:'cid' || '-none')), 0, 'an unknown correlation id has no rows');

-- The live path: enqueue, claim, complete, a dead job's alert, in causal order.
select observability.enqueue_job('pgtap', :'tag' || '.live', correlation_id => :'cid' || '-live') ->> 'job_id' as live \gset
select observability.complete_job(:'live', '{}', null,
  (select (c ->> 'lease_token')::uuid from observability.claim_job('w2', array[:'tag' || '.live']) c));
select observability.fail_job((observability.enqueue_job('pgtap', :'tag' || '.live', correlation_id => :'cid' || '-live',
                                                         max_attempts => 1) ->> 'job_id')::uuid, 'boom');
select is((select array_agg(kind) from ops.get_trace(:'cid' || '-live') t where t.subject_id = :'live'),
  array['job.enqueued', 'job.running', 'job.run_succeeded', 'job.succeeded'],
  'a job''s trace follows its life');
select is((select count(*)::int from ops.get_trace(:'cid' || '-live') t where t.kind = 'outbox.queued'
  and t.detail ->> 'event_type' = 'alert.job_dead'), 1, 'the alert a job raised is in its trace');
select is((select array_agg(distinct t.kind order by t.kind) from ops.get_trace(:'cid' || '-live') t
  where t.kind like 'job.%' and t.subject_id <> :'live'),
  array['job.dead', 'job.enqueued', 'job.run_failed'], 'so is the job that died');

select throws_ok($$ select * from ops.get_trace('') $$, 'PT422', 'validation_failed', 'a correlation id is required');

-- Every source is looked up by an index (with sequential scans priced out, a
-- missing index would still show one).
set local enable_seqscan = off;
create function pg_temp.plan(p_sql text) returns text language plpgsql as $$
declare v_line text; v_plan text := '';
begin
  for v_line in execute 'explain ' || p_sql loop v_plan := v_plan || v_line || E'\n'; end loop;
  return v_plan;
end $$;
select unalike(pg_temp.plan(format('select * from ops.trace_rows where correlation_id = %L', :'cid')), '%Seq Scan%',
  'looking up a correlation id scans no table');
reset enable_seqscan;

-- The event-style interface.
select is((select array_agg(e.status order by e.at) from ops.events e where e.subject_id = :'live'),
  array['queued', 'running', 'succeeded'], 'ops.events has one row per job status change');
select is((select row(e.stream, e.source, e.type, e.status, e.correlation_id)::text from ops.events e
  where e.subject_id = :'live' and e.status = 'succeeded'),
  format('(job,pgtap,%s.live,succeeded,%s-live)', :'tag', :'cid'), 'with source, type, status and correlation id');
select is((select row(e.stream, e.source, e.type, e.status)::text from ops.events e
  where e.subject_id = '00000000-0000-4000-8000-000000000001'), '(integration,odoo,expense.submitted,completed)',
  'and one row per integration event');

-- Queue depth.
select observability.enqueue_job('pgtap', :'tag' || '.depth') ->> 'job_id' as d1 \gset
select observability.enqueue_job('pgtap', :'tag' || '.depth') ->> 'job_id' as d2 \gset
select observability.enqueue_job('pgtap', :'tag' || '.depth') ->> 'job_id' as d3 \gset
update observability.jobs set created_at = now() - interval '1 hour' where id = :'d1';
select observability.claim_job('w3', array[:'tag' || '.depth'], 1);
select is((select array_agg(row(q.status, q.depth, q.oldest_age_seconds)::text order by q.status)
  from ops.get_queue_depth() q where q.queue = 'observability.jobs' and q.job_type = :'tag' || '.depth'),
  array['(queued,2,0)', '(running,1,3600)'], 'jobs by type and status, with the oldest one''s age');
select is((select array_agg(q.status order by q.status) from ops.get_queue_depth() q
  where q.queue = 'observability.jobs' and q.job_type = :'tag' || '.live'), array['dead'],
  'dead jobs count; succeeded ones are not depth');
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id,
                                created_at)
values ('odoo', :'tag' || '-old', 'expense.submitted', 'hr.expense', '1', '{}', :'cid', now() - interval '100 years');
select is((select q.oldest_at from ops.get_queue_depth() q where q.queue = 'integration.outbox' and q.status = 'pending'),
  now() - interval '100 years', 'the outbox by status, with its oldest pending event');
select ok((select bool_and(q.depth > 0) and bool_and(q.status in ('pending', 'processing', 'failed'))
  from ops.get_queue_depth() q where q.queue = 'integration.outbox'),
  'outbox rows: waiting, leased or dead, never completed');

select * from finish();
rollback;
