-- Push delivery: wake-ups through pg_net (coalesced), the router's claim,
-- batch settlement, release and hand-off, the pg_cron safety net, privileges.
begin;
set search_path = extensions, public;
select plan(45);

-- Park the dev database's rows (rolled back at the end) and start idle.
update integration.outbox set available_at = now() + interval '100 years' where status = 'pending';
update integration.outbox set lease_expires_at = now() + interval '100 years' where status = 'processing';
delete from integration.routes;
insert into integration.routes (event_pattern, target_url, signing_secret) values
  ('expense.*', 'http://127.0.0.1:9/expense', 'whsec_ZXhwZW5zZS1zZWNyZXQtMDEyMzQ1Njc4OQ==');
select integration.configure_router('http://127.0.0.1:9/functions/v1/outbox-router', 'syi_token-for-test-0123456789abcdef');
update integration.router_signal set active_until = null, wakes_sent = 0;

create function pg_temp.wakes() returns bigint language sql as $$
  select wakes_sent from integration.router_signal
$$;
create function pg_temp.queued() returns bigint language sql as $$
  select count(*) from net.http_request_queue
$$;
create function pg_temp.add(p_key text) returns uuid language sql as $$
  insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
  values ('odoo', 'r-' || p_key || '-' || gen_random_uuid(), 'expense.submitted', 'hr.expense', '1', '{}', 'cid-' || p_key)
  returning id
$$;

-- pg_net's API.
select has_function('net', 'http_post', array['text', 'jsonb', 'jsonb', 'jsonb', 'integer'],
  'net.http_post has pg_net''s signature');
select pg_temp.queued() as queued0 \gset

-- Wake-ups on insert, coalesced.
select pg_temp.add('w1') as w1 \gset
select is(pg_temp.wakes(), 1::bigint, 'an insert while no router is active wakes one');
select is(pg_temp.queued(), :queued0 + 1::bigint, 'the wake-up is queued through net.http_post');
select is((select url from net.http_request_queue order by id desc limit 1),
  'http://127.0.0.1:9/functions/v1/outbox-router', 'the wake-up goes to the configured router URL');
select is((select headers ->> 'Authorization' from net.http_request_queue order by id desc limit 1),
  'Bearer syi_token-for-test-0123456789abcdef', 'the wake-up carries the router''s invocation token');
select is((select convert_from(body, 'UTF8')::jsonb ->> 'reason' from net.http_request_queue order by id desc limit 1),
  'insert', 'the wake-up says why');
select ok((select active_until > clock_timestamp() from integration.router_signal), 'the router counts as active');
select pg_temp.add('w2');
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
select 'odoo', 'burst-' || g || '-' || gen_random_uuid(), 'expense.submitted', 'hr.expense', g::text, '{}', 'burst'
from generate_series(1, 100) g;
select is(pg_temp.wakes(), 1::bigint, 'inserts while a router is active send nothing');

update integration.router_signal set active_until = null;
insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id)
select 'odoo', 'burst2-' || g || '-' || gen_random_uuid(), 'expense.submitted', 'hr.expense', g::text, '{}', 'burst2'
from generate_series(1, 50) g;
select is(pg_temp.wakes(), 2::bigint, 'a 50-row insert into an idle queue wakes once');

update integration.router_signal set active_until = now() - interval '1 second';
select pg_temp.add('w3');
select is(pg_temp.wakes(), 3::bigint, 'an expired active window no longer suppresses wake-ups');

-- The router's claim keeps it active.
update integration.outbox set created_at = created_at - interval '1 hour', available_at = available_at - interval '1 hour'
where id = :'w1';
update integration.router_signal set active_until = clock_timestamp() + interval '1 second';
create temp table claimed on commit drop as
  select to_jsonb(c) as c from integration.router_claim('router-1', 5, 30) as c;
select is((select count(*)::int from claimed), 5, 'router_claim claims a batch');
select ok((select active_until > clock_timestamp() + interval '5 seconds' from integration.router_signal),
  'router_claim extends the active window');
select is((select c ->> 'id' from claimed order by c ->> 'created_at' limit 1), :'w1'::text, 'oldest first');

-- Settling a batch in one call.
select (array_agg(c ->> 'id' order by c ->> 'created_at'))[1] as s1,
       (array_agg(c ->> 'lease_token' order by c ->> 'created_at'))[1] as t1,
       (array_agg(c ->> 'id' order by c ->> 'created_at'))[2] as s2,
       (array_agg(c ->> 'lease_token' order by c ->> 'created_at'))[2] as t2,
       (array_agg(c ->> 'id' order by c ->> 'created_at'))[3] as s3,
       (array_agg(c ->> 'lease_token' order by c ->> 'created_at'))[3] as t3
from claimed \gset
select is(integration.settle_outbox(jsonb_build_array(
    jsonb_build_object('id', :'s1', 'lease_token', :'t1', 'ok', true),
    jsonb_build_object('id', :'s2', 'lease_token', :'t2', 'ok', false, 'error', 'HTTP 503', 'retry_after_seconds', 120),
    jsonb_build_object('id', :'s3', 'lease_token', gen_random_uuid(), 'ok', true))),
  jsonb_build_object('acked', 1, 'failed', 1, 'stale', jsonb_build_array(:'s3')),
  'settle acks, fails and counts stale leases in one call');
select is((select status || '/' || (archived_at is not null) from integration.outbox_and_archive where id = :'s1'), 'completed/true',
  'an ok result completes the event into the archive');
select is((select status || '/' || last_error from integration.outbox where id = :'s2'), 'pending/HTTP 503',
  'a failed result goes back to the queue with its error');
select ok((select available_at between now() + interval '119 seconds' and now() + interval '121 seconds'
  from integration.outbox where id = :'s2'), 'Retry-After sets the next attempt');
select is((select status from integration.outbox where id = :'s3'), 'processing',
  'a stale lease changes nothing');
select is(integration.settle_outbox(jsonb_build_array(jsonb_build_object('id', :'s1', 'lease_token', :'t1', 'ok', true))),
  jsonb_build_object('acked', 0, 'failed', 0, 'stale', jsonb_build_array(:'s1')),
  'settling twice is refused per event, not per batch');
select throws_ok($$ select integration.settle_outbox('{"id": 1}') $$, 'PT422', 'validation_failed',
  'settle needs an array');
select throws_ok($$ select integration.settle_outbox('[{"id": "nope", "lease_token": "x", "ok": true}]') $$,
  'PT422', 'validation_failed', 'settle needs uuids');
select throws_ok(format($$ select integration.settle_outbox('[{"id": "%s", "lease_token": "%s"}]') $$, :'s3', :'t3'),
  'PT422', 'validation_failed', 'settle needs a boolean ok');
select throws_ok(format($$ select integration.settle_outbox('[{"id": "%s", "lease_token": "%s", "ok": false, "retry_after_seconds": -1}]') $$, :'s3', :'t3'),
  'PT422', 'validation_failed', 'settle refuses a negative Retry-After');
select is((select status from integration.outbox where id = :'s3'), 'processing', 'a refused settle changes nothing');

-- Release: stay while work is available, hand off when out of time, idle when empty.
select pg_temp.wakes() as wakes_before_release \gset
select is(integration.release_router('router-1'), '{"released": false, "handed_off": false}'::jsonb,
  'release refuses while events are available');
select ok((select active_until is not null from integration.router_signal), 'the router stays active');
select is(integration.release_router('router-1', p_out_of_time => true), '{"released": true, "handed_off": true}'::jsonb,
  'out of time with work left, the router hands off');
select is(pg_temp.wakes(), :wakes_before_release + 1::bigint, 'the hand-off is a wake-up');
select is((select last_wake_reason from integration.router_signal), 'handoff', 'recorded as a hand-off');
update integration.outbox set available_at = now() + interval '1 hour' where status = 'pending';
select is(integration.release_router('router-1'), '{"released": true, "handed_off": false}'::jsonb,
  'with nothing available the router goes idle');
select is((select active_until from integration.router_signal), null, 'idle: the next insert wakes a router');

-- The per-minute safety net.
select is((select schedule from cron.job where jobname = 'integration-outbox-router-safety-net'), '* * * * *',
  'pg_cron runs the safety net every minute');
select is(integration.wake_router_if_due(), null, 'the safety net does nothing when nothing is due');
update integration.outbox set available_at = now() where id = :'s2';
select isnt(integration.wake_router_if_due(), null, 'the safety net wakes a router when an event is due');
select is((select last_wake_reason from integration.router_signal), 'cron', 'recorded as the safety net');
select is(integration.wake_router_if_due(), null, 'and not again while that router is active');

-- Redrive wakes a router; a dry run does not.
update integration.outbox set status = 'failed', dead_at = now(), last_error = 'HTTP 500' where id = :'s2';
update integration.router_signal set active_until = null;
select pg_temp.wakes() as wakes_before_redrive \gset
select is((integration.redrive_outbox('pgtap', p_ids => array[:'s2'::uuid]) ->> 'matched')::int, 1, 'a dry-run redrive counts');
select is(pg_temp.wakes(), :wakes_before_redrive::bigint, 'a dry run wakes nothing');
select is((integration.redrive_outbox('pgtap', p_ids => array[:'s2'::uuid], p_dry_run => false) ->> 'redriven')::int, 1,
  'a redrive returns the event');
select is((select last_wake_reason from integration.router_signal), 'redrive', 'and wakes a router for it');

-- No router configured: nothing is sent.
select integration.configure_router(null, null);
update integration.router_signal set active_until = null;
select is(integration.wake_router('manual'), null, 'without a configured router no request is queued');
select pg_temp.add('w4');
select is((select active_until from integration.router_signal), null,
  'an insert with no router configured leaves no active window behind');

-- Privileges.
select ok(has_function_privilege('service_role', 'integration.router_claim(text, integer, integer)', 'execute')
  and has_function_privilege('service_role', 'integration.settle_outbox(jsonb)', 'execute')
  and has_function_privilege('service_role', 'integration.release_router(text, boolean)', 'execute'),
  'the router (service_role) may claim, settle and release');
select ok(not has_function_privilege('service_role', 'integration.wake_router(text)', 'execute')
  and not has_function_privilege('service_role', 'integration.configure_router(text, text)', 'execute')
  and not has_function_privilege('service_role', 'integration.redrive_dead_letters(text, uuid[], text, timestamptz, timestamptz, text, boolean)', 'execute'),
  'service_role cannot send wake-ups, reconfigure the router or bypass the redrive RPC');
select ok(not has_table_privilege('service_role', 'integration.router_signal', 'select')
  and not has_table_privilege('authenticated', 'integration.router_signal', 'select'),
  'the router''s coalescing state is readable by no API role');

select * from finish();
rollback;
