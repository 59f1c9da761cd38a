-- observability: service health. The state machine (failures_to_down
-- consecutive failing probes make a service down; a healthy or degraded probe
-- resets), exactly one alert into down and one out of it, the batch of a
-- whole sweep in one call (refused whole, writing nothing), what is due for
-- probing, and the summary with 24 h uptime.
begin;
set search_path = extensions, public;
select plan(43);

select 'pgtap-' || substr(md5(random()::text), 1, 10) as tag \gset

\ir lib/refusal.sql
create function pg_temp.state(p_service bigint) returns text language sql as $$
  select s.status || '/' || s.consecutive_failures from observability.services s where s.id = p_service
$$;
create function pg_temp.samples(p_service bigint) returns integer language sql as $$
  select count(*)::integer from observability.service_health h where h.service_id = p_service
$$;
-- The alerts raised for a service: 'kind:count' per outbox event.
create function pg_temp.alerts(p_name text) returns text[] language sql as $$
  select coalesce(array_agg((o.payload ->> 'kind') || ':' || (o.payload ->> 'count') order by o.created_at, o.event_type), '{}')
  from integration.outbox o
  where o.source = 'switchyard' and o.event_type in ('alert.service_down', 'alert.service_recovered')
    and o.aggregate_id = p_name
$$;

insert into observability.services (name, kind, url, failures_to_down)
values (:'tag' || '-odoo', 'odoo', 'https://odoo.example.com/web/health', 3) returning id as odoo \gset
insert into observability.services (name, url, method, body_match, failures_to_down)
values (:'tag' || '-n8n', 'https://n8n.example.com/healthz', 'GET', 'ok', 1) returning id as n8n \gset
insert into observability.services (name, url, enabled)
values (:'tag' || '-off', 'https://off.example.com/', false) returning id as off \gset
insert into observability.services (name, url, interval_seconds, last_checked_at)
values (:'tag' || '-fresh', 'https://fresh.example.com/', 300, now() - interval '4 minutes') returning id as fresh \gset
insert into observability.services (name, url, interval_seconds, last_checked_at)
values (:'tag' || '-due', 'https://due.example.com/', 300, now() - interval '4 minutes 40 seconds') returning id as due \gset

select is(pg_temp.state(:odoo), 'unknown/0', 'a new service is unknown');

-- The state machine through record_health (the seed's call).
select is(observability.record_health(:odoo, 'healthy', 120, 200),
  jsonb_build_object('service_id', :odoo, 'name', :'tag' || '-odoo', 'from', 'unknown', 'to', 'healthy', 'changed', true,
    'consecutive_failures', 0, 'alert', null), 'a healthy probe makes it healthy');
select is(observability.record_health(:odoo, 'failing', 5000, null, 'timeout after 5000 ms') ->> 'to', 'healthy',
  'one failing probe of three needed: still healthy');
select is(observability.record_health(:odoo, 'failing', 20, 502, 'HTTP 502') ->> 'consecutive_failures', '2',
  'the failures are counted');
select is(pg_temp.alerts(:'tag' || '-odoo'), '{}'::text[], 'no alert below failures_to_down');
select is(observability.record_health(:odoo, 'failing', 20, 502, 'HTTP 502'),
  jsonb_build_object('service_id', :odoo, 'name', :'tag' || '-odoo', 'from', 'healthy', 'to', 'down', 'changed', true,
    'consecutive_failures', 3, 'alert', 'service_down'), 'the third failing probe in a row makes it down');
select is(pg_temp.alerts(:'tag' || '-odoo'), array['service_down:1'], 'the transition into down raised one alert');
select is((select payload ->> 'summary' || ' / ' || (payload -> 'details' ->> 'error') from integration.outbox
  where source = 'switchyard' and event_type = 'alert.service_down' and aggregate_id = :'tag' || '-odoo'),
  :'tag' || '-odoo is down: 3 failed checks in a row / HTTP 502', 'the alert says what and why');
select is(observability.record_health(:odoo, 'failing', 20, 502, 'HTTP 502') ->> 'alert', null, 'still down: no alert');
select is(observability.record_health(:odoo, 'failing', null, null, 'connection refused') ->> 'changed', 'false',
  'still down: no change');
select is(pg_temp.state(:odoo), 'down/5', 'the failures keep counting while down');
select is(pg_temp.alerts(:'tag' || '-odoo'), array['service_down:1'], 'no alert per probe while it stays down');
select is(observability.record_health(:odoo, 'degraded', 1800, 200),
  jsonb_build_object('service_id', :odoo, 'name', :'tag' || '-odoo', 'from', 'down', 'to', 'degraded', 'changed', true,
    'consecutive_failures', 0, 'alert', 'service_recovered'), 'a degraded probe ends down');
select is(pg_temp.alerts(:'tag' || '-odoo'), array['service_down:1', 'service_recovered:1'],
  'the transition out of down raised one recovery alert');
select is(observability.record_health(:odoo, 'healthy', 90, 200) ->> 'alert', null, 'degraded to healthy raises nothing');
select is(pg_temp.state(:odoo), 'healthy/0', 'healthy again');
select is((select last_response_time_ms from observability.services where id = :odoo), 90,
  'the service keeps its last response time');
select is(pg_temp.samples(:odoo), 8, 'every probe is a sample');
select is((select array_agg(status order by id) from observability.service_health where service_id = :odoo),
  array['healthy', 'failing', 'failing', 'failing', 'failing', 'failing', 'degraded', 'healthy'],
  'each sample holds what its probe saw');

-- A whole sweep in one call.
create temp table sweep1 as select observability.record_health_batch(jsonb_build_array(
    jsonb_build_object('service_id', :odoo, 'status', 'healthy', 'response_time_ms', 80, 'http_status', 200),
    jsonb_build_object('service_id', :n8n, 'status', 'failing', 'response_time_ms', 3, 'http_status', 500,
                       'error', 'HTTP 500')),
  'sweep-' || :'tag') as r;
select is((select r from sweep1), jsonb_build_object('recorded', 2, 'transitions', jsonb_build_array(
    jsonb_build_object('service_id', :n8n, 'name', :'tag' || '-n8n', 'from', 'unknown', 'to', 'down', 'alert', 'service_down'))),
  'the batch records every sample and returns the transitions');
select is((select count(*)::int from observability.service_health where correlation_id = 'sweep-' || :'tag'), 2,
  'the samples carry the sweep''s correlation id');
select is(pg_temp.alerts(:'tag' || '-n8n'), array['service_down:1'], 'failures_to_down 1: the first failure is down, one alert');
select is((select correlation_id from integration.outbox where source = 'switchyard' and aggregate_id = :'tag' || '-n8n'),
  'sweep-' || :'tag', 'the alert carries the sweep''s correlation id');
select is(observability.record_health_batch(jsonb_build_array(
    jsonb_build_object('service_id', :n8n, 'status', 'failing', 'response_time_ms', 3, 'http_status', 500)), 'sweep2-' || :'tag'),
  '{"recorded": 1, "transitions": []}'::jsonb, 'a service that stays down is no transition');

-- Refusals: the whole batch, writing nothing.
create temp table before_refusals as
  select pg_temp.samples(:odoo) as odoo_samples, pg_temp.samples(:n8n) as n8n_samples,
         pg_temp.state(:odoo) as odoo_state, pg_temp.state(:n8n) as n8n_state,
         (select count(*) from integration.outbox where source = 'switchyard') as alerts;
select is(pg_temp.refusal(format($$ select observability.record_health_batch(jsonb_build_array(
    jsonb_build_object('service_id', %s, 'status', 'failing', 'response_time_ms', 1),
    jsonb_build_object('service_id', %s, 'status', 'up', 'response_time_ms', 1))) $$, :odoo, :n8n)),
  'PT422 validation_failed samples[1].status', 'a bad status in the second sample is refused, naming it');
select is(pg_temp.refusal(format($$ select observability.record_health_batch(jsonb_build_array(
    jsonb_build_object('service_id', %s, 'status', 'failing', 'response_time_ms', 1),
    jsonb_build_object('service_id', %s, 'status', 'failing', 'response_time_ms', 1))) $$, :odoo, :odoo)),
  'PT422 validation_failed samples[1].service_id', 'a service twice in one batch is refused');
select is(pg_temp.refusal($$ select observability.record_health_batch(jsonb_build_array(
    jsonb_build_object('service_id', -1, 'status', 'healthy', 'response_time_ms', 1))) $$),
  'PT422 validation_failed samples[0].service_id', 'an unknown service is refused');
select is(pg_temp.refusal($$ select observability.record_health_batch('[{"service_id": "x", "status": "healthy"}]') $$),
  'PT422 validation_failed samples[0]', 'a service id that is not an integer is refused');
select is(pg_temp.refusal($$ select observability.record_health_batch('[1]') $$),
  'PT422 validation_failed samples[0]', 'a sample that is not an object is refused');
select is(pg_temp.refusal($$ select observability.record_health_batch('{"service_id": 1}') $$),
  'PT422 validation_failed samples', 'samples that are not an array are refused');
select is(pg_temp.refusal($$ select observability.record_health_batch('[]') $$),
  'PT422 validation_failed samples', 'an empty batch is refused');
select is(pg_temp.refusal(format($$ select observability.record_health(%s, 'sick', 1) $$, :odoo)),
  'PT422 validation_failed status', 'record_health refuses a status that is not a probe result');
select is(pg_temp.refusal(format($$ select observability.record_health(%s, 'failing', -1) $$, :odoo)),
  'PT422 validation_failed response_time_ms', 'and a negative response time');
select is(pg_temp.refusal(format($$ select observability.record_health(%s, 'failing', 1, 700) $$, :odoo)),
  'PT422 validation_failed http_status', 'and an HTTP status out of range');
select is(pg_temp.refusal($$ select observability.record_health(null, 'healthy', 1) $$),
  'PT422 validation_failed service_id', 'and a missing service');
select is((select row(pg_temp.samples(:odoo) - odoo_samples, pg_temp.samples(:n8n) - n8n_samples,
    pg_temp.state(:odoo) = odoo_state, pg_temp.state(:n8n) = n8n_state,
    (select count(*) from integration.outbox where source = 'switchyard') - alerts)::text from before_refusals),
  '(0,0,t,t,0)', 'refused calls wrote no sample, changed no service and raised no alert');

-- What the health check probes: enabled services whose interval has passed.
select is((select array_agg(p.name order by p.name) from observability.list_services_to_probe(1000) p
           where p.name like :'tag' || '-%'),
  array[:'tag' || '-due'], 'only enabled services whose interval has passed (less 30 s) are due');
update observability.services set last_checked_at = null where id in (:odoo, :fresh);
select is((select array_agg(p.name order by p.name) from observability.list_services_to_probe(1000) p
           where p.name like :'tag' || '-%'),
  array[:'tag' || '-due', :'tag' || '-fresh', :'tag' || '-odoo'], 'never checked services are due');
select is((select row(p.url, p.method, p.expected_status, p.body_match, p.timeout_ms, p.degraded_ms)::text
  from observability.list_services_to_probe(1000) p where p.id = :n8n), null,
  'a service checked just now is not due');
update observability.services set last_checked_at = null where id = :n8n;
select is((select row(p.url, p.method, p.expected_status, p.body_match, p.timeout_ms, p.degraded_ms)::text
  from observability.list_services_to_probe(1000) p where p.id = :n8n),
  '(https://n8n.example.com/healthz,GET,200,ok,5000,1000)', 'each due service comes with what the probe needs');
select is(pg_temp.refusal($$ select observability.list_services_to_probe(0) $$),
  'PT422 validation_failed max_services', 'max_services is validated');

-- The summary: state and 24 h uptime.
insert into observability.service_health (service_id, checked_at, status, response_time_ms)
values (:odoo, now() - interval '25 hours', 'failing', null);
select is((select row(s.status, s.consecutive_failures, s.samples_24h, s.uptime_24h, s.last_response_time_ms)::text
  from observability.get_health_summary() s where s.service_id = :odoo),
  '(healthy,0,9,0.4444,80)', 'uptime over 24 h is the share of samples not failing (4 of 9); older samples do not count');
select is((select s.uptime_24h from observability.get_health_summary() s where s.service_id = :off), null,
  'a service without samples has no uptime');

select * from finish();
rollback;
