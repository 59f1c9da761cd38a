-- integration.ingest_events (20261124100000_batch_ingest.sql): a batch's
-- events accepted, duplicate or conflict, each in batch order; the accepted
-- written to outbox and event_log in one transaction; a bad batch refused
-- whole; who may call it.
begin;
set search_path = extensions, public;
select plan(22);

select 'pgtap' || substr(md5(random()::text), 1, 10) as tag \gset

create function pg_temp.ev(p_key text, p_amount int default 1, p_extra jsonb default '{}') returns jsonb
language sql as $$
  select jsonb_build_object('idempotency_key', p_key, 'event_type', 'finance_task.overdue',
    'aggregate_type', 'project.task', 'aggregate_id', p_key, 'payload', jsonb_build_object('amount', p_amount),
    'occurred_at', '2026-11-24T08:00:00.000000Z') || p_extra
$$;

-- ------------------------------------------------------------ accepted

select integration.ingest_events('odoo', jsonb_build_array(
    pg_temp.ev(:'tag' || '-1'), pg_temp.ev(:'tag' || '-2'),
    pg_temp.ev(:'tag' || '-3', 1, jsonb_build_object('correlation_id', 'own-' || :'tag'))),
  'cid-' || :'tag', 'ipai-hmac', 'key_test') as first \gset
select is(jsonb_array_length(:'first'::jsonb), 3, 'one result per event');
select is((select array_agg(r ->> 'status' order by o) from jsonb_array_elements(:'first'::jsonb) with ordinality r(r, o)),
  array['accepted', 'accepted', 'accepted'], 'new events are accepted');
select is((select count(*)::int from integration.outbox where idempotency_key like :'tag' || '-%'), 3, 'three outbox rows');
select is((select count(*)::int from integration.event_log where idempotency_key like :'tag' || '-%'), 3,
  'and three event_log rows');
select is((select array_agg(o.id::text order by o.idempotency_key) from integration.outbox o
           where o.idempotency_key like :'tag' || '-%'),
  (select array_agg(r ->> 'event_id' order by o) from jsonb_array_elements(:'first'::jsonb) with ordinality r(r, o)),
  'each result names its event');
select is((select array_agg(l.idempotency_key order by l.id) from integration.event_log l
           where l.idempotency_key like :'tag' || '-%'),
  array[:'tag' || '-1', :'tag' || '-2', :'tag' || '-3'], 'event_log keeps the batch order');
select is((select array_agg(correlation_id order by idempotency_key) from integration.outbox
           where idempotency_key like :'tag' || '-%'),
  array['cid-' || :'tag', 'cid-' || :'tag', 'own-' || :'tag'], 'the request''s correlation id unless the event has one');
select is((select scheme || '/' || signing_key_id from integration.event_log where idempotency_key = :'tag' || '-1'),
  'ipai-hmac/key_test', 'the batch''s signature is recorded with each event');
select is((select occurred_at from integration.outbox where idempotency_key = :'tag' || '-1'),
  '2026-11-24T08:00:00Z'::timestamptz, 'occurred_at is kept');

-- ------------------------------------------------------------ duplicates and conflicts

select integration.ingest_events('odoo', jsonb_build_array(
    pg_temp.ev(:'tag' || '-1'), pg_temp.ev(:'tag' || '-2', 99), pg_temp.ev(:'tag' || '-4'),
    pg_temp.ev(:'tag' || '-4'), pg_temp.ev(:'tag' || '-5'), pg_temp.ev(:'tag' || '-5', 7)),
  'cid2-' || :'tag', 'ipai-hmac', 'key_test') as second \gset
select is((select array_agg(r ->> 'status' order by o) from jsonb_array_elements(:'second'::jsonb) with ordinality r(r, o)),
  array['duplicate', 'conflict', 'accepted', 'duplicate', 'accepted', 'conflict'],
  'a resent event is a duplicate, a key reused for another event a conflict, also within one batch');
select is(:'second'::jsonb -> 0 ->> 'event_id', :'first'::jsonb -> 0 ->> 'event_id', 'a duplicate names the first event');
select is(:'second'::jsonb -> 3 ->> 'event_id', :'second'::jsonb -> 2 ->> 'event_id',
  'a key repeated in the batch names the event it first recorded');
select is((select payload from integration.outbox where idempotency_key = :'tag' || '-2'), '{"amount": 1}'::jsonb,
  'a conflict leaves the recorded event as it was');
select is((select count(*)::int from integration.outbox where idempotency_key like :'tag' || '-%'), 5,
  'only the new keys were written');
select is((select count(*)::int from integration.event_log where idempotency_key like :'tag' || '-%'), 5,
  'to event_log as well');

-- ------------------------------------------------------------ refusals

select throws_ok($$ select integration.ingest_events('odoo', '[]', 'c', 'ipai-hmac', 'k') $$,
  'PT422', 'validation_failed', 'an empty batch is refused');
select throws_ok($$ select integration.ingest_events('odoo', '{}', 'c', 'ipai-hmac', 'k') $$,
  'PT422', 'validation_failed', 'so is one that is not an array');
select throws_ok(format($$ select integration.ingest_events('odoo',
    (select jsonb_agg(pg_temp.ev(%L || g)) from generate_series(1, 501) g), 'c', 'ipai-hmac', 'k') $$, :'tag' || '-big-'),
  'PT422', 'validation_failed', 'and one of more than 500 events');
-- One event the table refuses (an empty event type): the whole batch is refused, nothing written.
select throws_ok(format($$ select integration.ingest_events('odoo', jsonb_build_array(pg_temp.ev(%L),
    pg_temp.ev(%L, 1, '{"event_type": ""}')), 'c', 'ipai-hmac', 'k') $$, :'tag' || '-6', :'tag' || '-7'),
  '23514', null, 'an event the table cannot hold refuses the batch');
select is((select count(*)::int from integration.outbox where idempotency_key in (:'tag' || '-6', :'tag' || '-7')), 0,
  'and writes none of it');

-- ------------------------------------------------------------ who may call it

select ok(has_function_privilege('service_role', 'integration.ingest_events(text, jsonb, text, text, text)', 'execute'),
  'the service role may ingest a batch');
select ok(not has_function_privilege('anon', 'integration.ingest_events(text, jsonb, text, text, text)', 'execute')
  and not has_function_privilege('authenticated', 'integration.ingest_events(text, jsonb, text, text, text)', 'execute'),
  'anon and signed-in users may not');

select * from finish();
rollback;
