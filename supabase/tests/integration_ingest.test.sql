-- integration.ingest_event: atomic outbox + event_log write, idempotency,
-- conflicts, replay refusal, and that a refused call writes nothing.
begin;
set search_path = extensions, public;
select plan(29);

-- Digests unique to this run, so rows left by earlier runs cannot collide.
create temp table run (tag text) on commit drop;
insert into run values (md5(random()::text));
grant select on run to service_role;
create function pg_temp.digest(p_letter text) returns text language sql as $$
  select substr(md5(p_letter || (select tag from run)) || md5((select tag from run) || p_letter), 1, 64)
$$;

create function pg_temp.ingest(p_key text, p_payload jsonb, p_digest text default null, p_aggregate_id text default '42')
returns jsonb language sql as $$
  select integration.ingest_event(
    p_source => 'odoo', p_idempotency_key => p_key || '#' || (select tag from run), p_event_type => 'expense.submitted',
    p_aggregate_type => 'hr.expense', p_aggregate_id => p_aggregate_id, p_payload => p_payload,
    p_correlation_id => 'cid-' || p_key, p_scheme => 'ipai-hmac', p_signing_key_id => 'key_test',
    p_replay_digest => p_digest,
    p_replay_expires_at_ms => (extract(epoch from now() + interval '5 minutes') * 1000)::bigint)
$$;

-- Row counts relative to the start of this test (the event_log of a dev
-- database keeps every earlier event: it is append-only).
create temp table baseline on commit drop as select
  (select count(*) from integration.outbox) as outbox,
  (select count(*) from integration.event_log) as event_log,
  (select count(*) from integration.replay_guard) as guard;
grant select on baseline to service_role;
create function pg_temp.counts() returns text language sql security definer as $$
  select format('outbox=%s event_log=%s guard=%s',
    (select count(*) from integration.outbox) - b.outbox,
    (select count(*) from integration.event_log) - b.event_log,
    (select count(*) from integration.replay_guard) - b.guard)
  from pg_temp.baseline b
$$;

-- The outbox row is inserted before the digest is checked: the refusal must
-- roll it back.
select throws_ok(
  $$ select integration.ingest_event('odoo', 'k-x' || (select tag from run), 't', 't', '1', '{}', 'c', 'ipai-hmac', 'key', null, pg_temp.digest('c'), null) $$,
  'PT422', 'validation_failed', 'a digest without its expiry is refused');
select is(pg_temp.counts(), 'outbox=0 event_log=0 guard=0', 'the refused call left no outbox row behind');

set local role service_role;
create temp table first_call on commit drop as
  select pg_temp.ingest('expense.submitted:42:1', '{"amount": 12.5, "currency": "PHP"}', pg_temp.digest('a')) as r;
reset role;

select is((select r ->> 'duplicate' from first_call), 'false', 'a new event is not a duplicate');
select ok((select (r ->> 'event_id')::uuid is not null from first_call), 'a new event gets an id');
select is(pg_temp.counts(), 'outbox=1 event_log=1 guard=1', 'one outbox row, one event_log row, one guard entry');

select is(
  (select row(o.status, o.attempts, o.correlation_id, o.payload ->> 'currency')::text
   from integration.outbox o where o.id = (select (r ->> 'event_id')::uuid from first_call)),
  '(pending,0,cid-expense.submitted:42:1,PHP)',
  'the outbox row is pending, unattempted, with the correlation id and payload');
select is(
  (select row(l.event_id = (select (r ->> 'event_id')::uuid from first_call), l.correlation_id, l.scheme, l.signing_key_id)::text
   from integration.event_log l where l.event_id = (select (r ->> 'event_id')::uuid from first_call)),
  '(t,cid-expense.submitted:42:1,ipai-hmac,key_test)',
  'the event_log row points at the outbox row and records scheme and key id');

-- Same key, same event (key order in the payload does not matter): the original id, nothing new.
select is(
  pg_temp.ingest('expense.submitted:42:1', '{"currency": "PHP", "amount": 12.5}', pg_temp.digest('b')),
  jsonb_build_object('event_id', (select r ->> 'event_id' from first_call), 'duplicate', true),
  'the same event again returns the original id with duplicate = true');
select is(pg_temp.counts(), 'outbox=1 event_log=1 guard=1', 'a duplicate writes nothing');

-- Same key, different event.
select throws_ok(
  $$ select pg_temp.ingest('expense.submitted:42:1', '{"amount": 99}') $$,
  'PT409', 'idempotency_conflict', 'the same key with another payload is idempotency_conflict');
select throws_ok(
  $$ select pg_temp.ingest('expense.submitted:42:1', '{"currency": "PHP", "amount": 12.5}', null, '43') $$,
  'PT409', 'idempotency_conflict', 'the same key for another aggregate is idempotency_conflict');
select is(pg_temp.counts(), 'outbox=1 event_log=1 guard=1', 'a conflict writes nothing');

-- A captured signature re-sent under a new key.
select throws_ok(
  $$ select pg_temp.ingest('expense.submitted:42:replayed', '{"amount": 12.5, "currency": "PHP"}', pg_temp.digest('a')) $$,
  'PT409', 'replayed_request', 'a reused signature under a new key is replayed_request');
select is(pg_temp.counts(), 'outbox=1 event_log=1 guard=1', 'a replay writes nothing (the outbox insert is rolled back)');

-- Events without a replay digest (Standard Webhooks: the id is signed).
select is(pg_temp.ingest('msg_1', '{}') ->> 'duplicate', 'false', 'an event without a digest is accepted');
select is(pg_temp.counts(), 'outbox=2 event_log=2 guard=1', 'and writes no guard entry');

-- Table constraints back the function's validation.
select throws_ok(
  $$ select pg_temp.ingest('k-array', '[]') $$, '23514', null, 'a non-object payload is refused by the table');
select throws_ok(
  $$ select pg_temp.ingest(repeat('k', 240), '{}') $$, '23514', null, 'an over-long idempotency key is refused');
select is(pg_temp.counts(), 'outbox=2 event_log=2 guard=1', 'refused calls wrote nothing');

-- Idempotency is per source.
select is(
  integration.ingest_event('n8n', 'msg_1#' || (select tag from run), 'test', 'test', '1', '{}', 'c', 'standard-webhooks', 'key') ->> 'duplicate',
  'false', 'the same key from another source is a new event');

-- The replay guard is purged once signatures leave the window.
insert into integration.replay_guard values (pg_temp.digest('d'), now() - interval '1 second');
select cmp_ok(integration.purge_replay_guard(), '>=', 1, 'purge reports what it removed');
select is((select count(*)::int from integration.replay_guard where digest = pg_temp.digest('d')), 0,
  'expired entries are removed');
select is((select count(*)::int from integration.replay_guard where digest = pg_temp.digest('a')), 1,
  'live entries stay');
select isnt_empty(
  $$ select 1 from cron.job where jobname = 'integration-purge-replay-guard' and schedule = '* * * * *' $$,
  'pg_cron purges the replay guard every minute');

-- Concurrent claim-friendly shape and churn settings.
select has_index('integration', 'outbox', 'outbox_claimable_idx', 'pending rows have a claim index');
select ok(
  (select reloptions @> array['autovacuum_vacuum_scale_factor=0'] from pg_class where oid = 'integration.outbox'::regclass),
  'the outbox vacuums by row count');
select col_is_unique('integration', 'event_log', array['source', 'idempotency_key'],
  'idempotency keys are unique per source, in event_log');
select index_is_unique('integration', 'outbox', 'outbox_alert_key_idx',
  'the outbox keeps a unique key for its own alerts only (raise_alert groups repeats into one row)');
select is(
  (select (integration.ingest_event('odoo', 'k-occ' || (select tag from run), 't', 't', '1', '{}', 'c', 'ipai-hmac', 'key',
     '2026-01-22T07:26:26+08:00') ->> 'duplicate')),
  'false', 'occurred_at is stored when given');

select * from finish();
rollback;
