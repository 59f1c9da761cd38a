-- integration.ingest_event_group (20261124160000_ingest_event_group.sql):
-- odoo-webhook's group commit. Each event is recorded or refused exactly as
-- ingest_event would alone; a refusal undoes that event's writes only and is
-- answered in PostgREST's error shape; who may call it.
begin;
set search_path = extensions, public;
select plan(17);

select 'pgtap' || substr(md5(random()::text), 1, 10) as tag \gset

-- A signature digest as the function computes it: 64 hex digits.
create function pg_temp.dg(p_text text) returns text
language sql as $$ select encode(sha256(convert_to(p_text, 'utf8')), 'hex') $$;

-- One event as odoo-webhook sends it: ingest_event's arguments by name.
create function pg_temp.ev(p_key text, p_aggregate text default 'a', p_extra jsonb default '{}') returns jsonb
language sql as $$
  select jsonb_build_object('p_source', 'odoo', 'p_idempotency_key', p_key, 'p_event_type', 'expense.submitted',
    'p_aggregate_type', 'hr.expense', 'p_aggregate_id', p_aggregate, 'p_payload', jsonb_build_object('amount', 1),
    'p_occurred_at', null, 'p_correlation_id', 'cid-' || p_key, 'p_scheme', 'ipai-hmac',
    'p_signing_key_id', 'key_test', 'p_replay_digest', pg_temp.dg(p_key),
    'p_replay_expires_at_ms', 4102444800000) || p_extra
$$;

select integration.ingest_event_group(jsonb_build_array(
    pg_temp.ev(:'tag' || '-b'),                                            -- 0 accepted
    pg_temp.ev(:'tag' || '-a'),                                            -- 1 accepted
    pg_temp.ev(:'tag' || '-a', 'a', jsonb_build_object('p_replay_digest', pg_temp.dg(:'tag' || '-resent'))), -- 2 duplicate of 1
    pg_temp.ev(:'tag' || '-a', 'other', jsonb_build_object('p_replay_digest', pg_temp.dg(:'tag' || '-x'))),  -- 3 conflict with 1
    pg_temp.ev(:'tag' || '-c', 'a', jsonb_build_object('p_replay_digest', pg_temp.dg(:'tag' || '-b'))), -- 4 replay of 0
    pg_temp.ev(:'tag' || '-d', 'a', '{"p_occurred_at": "not a time"}'),    -- 5 a value it cannot store
    pg_temp.ev(:'tag' || '-e', 'a', '{"p_event_type": ""}')                -- 6 one the table refuses
  )) as r \gset

select is(jsonb_array_length(:'r'::jsonb), 7, 'one result per event, in the order sent');
select ok(:'r'::jsonb -> 0 ? 'event_id' and :'r'::jsonb -> 1 ? 'event_id'
  and not (:'r'::jsonb -> 0 -> 'duplicate')::boolean and not (:'r'::jsonb -> 1 -> 'duplicate')::boolean,
  'new events are accepted with ingest_event''s answer');
select is(:'r'::jsonb -> 2, jsonb_build_object('event_id', :'r'::jsonb -> 1 -> 'event_id', 'duplicate', true),
  'the same event again under its key is a duplicate naming the first');
select is(:'r'::jsonb -> 3 -> 'error', jsonb_build_object('code', 'PT409', 'message', 'idempotency_conflict',
    'details', 'this idempotency key was already used for a different event', 'hint', null),
  'a key reused for another event is a conflict, in PostgREST''s error shape');
select is(:'r'::jsonb -> 4 -> 'error' ->> 'message', 'replayed_request', 'a signature used under another key is a replay');
select is(:'r'::jsonb -> 5 -> 'error' ->> 'code', '22007', 'a value Postgres cannot read is refused with its SQLSTATE');
select is(:'r'::jsonb -> 6 -> 'error' ->> 'code', '23514', 'and so is one the table''s constraints refuse');

select is((select count(*)::int from integration.outbox where idempotency_key like :'tag' || '-%'), 2,
  'only the two accepted events are in the outbox');
select is((select array_agg(idempotency_key order by idempotency_key) from integration.event_log
           where idempotency_key like :'tag' || '-%'),
  array[:'tag' || '-a', :'tag' || '-b'], 'and in event_log: each refusal undid its own event_log row');
select is((select count(*)::int from integration.replay_guard
           where digest in (pg_temp.dg(:'tag' || '-a'), pg_temp.dg(:'tag' || '-b'), pg_temp.dg(:'tag' || '-x'),
                            pg_temp.dg(:'tag' || '-d'))), 2,
  'the accepted events'' signatures are remembered, the refused ones'' are not');
select is((select correlation_id || '|' || scheme || '|' || signing_key_id from integration.event_log
           where idempotency_key = :'tag' || '-b'),
  'cid-' || :'tag' || '-b|ipai-hmac|key_test', 'each event keeps its own correlation id and signature');
select is((select id::text from integration.outbox where idempotency_key = :'tag' || '-a'),
  :'r'::jsonb -> 1 ->> 'event_id', 'the answer names the recorded event');

-- ------------------------------------------------------------ refusals of the whole group

select throws_ok($$ select integration.ingest_event_group('[]') $$, 'PT422', 'validation_failed', 'an empty group is refused');
select throws_ok($$ select integration.ingest_event_group('{}') $$, 'PT422', 'validation_failed', 'so is one that is not an array');
select throws_ok(format($$ select integration.ingest_event_group(
    (select jsonb_agg(pg_temp.ev(%L || g)) from generate_series(1, 51) g)) $$, :'tag' || '-big-'),
  'PT422', 'validation_failed', 'and one of more than 50 events');

-- ------------------------------------------------------------ who may call it

select ok(has_function_privilege('service_role', 'integration.ingest_event_group(jsonb)', 'execute'),
  'the service role may ingest a group');
select ok(not has_function_privilege('anon', 'integration.ingest_event_group(jsonb)', 'execute')
  and not has_function_privilege('authenticated', 'integration.ingest_event_group(jsonb)', 'execute'),
  'anon and signed-in users may not');

select * from finish();
rollback;
