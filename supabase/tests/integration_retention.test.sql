-- Retention: completed events past the hot window move to the day-partitioned
-- archive in batches; an alert stays hot for its group window; event_log keeps
-- every key taken, so a repeat after archiving is still a duplicate (or a
-- conflict); the readers that look back see archived rows; expired partitions
-- are dropped; only the owner (pg_cron) runs the moves.
begin;
set search_path = extensions, public;
select plan(28);
\ir lib/call.sql

select gen_random_uuid()::text as tag \gset
select
  json_build_object('role', 'authenticated', 'sub', '00000000-0000-4000-8000-0000000000f1',
    'email', 'op-' || :'tag' || '@example.com', 'app_metadata', json_build_object('role', 'operator'))::text as jwt_op,
  json_build_object('role', 'authenticated', 'sub', '00000000-0000-4000-8000-0000000000f2',
    'email', 'user-' || :'tag' || '@example.com', 'app_metadata', json_build_object('provider', 'email'))::text as jwt_user
\gset

update integration.retention_policy set hot_seconds = 300, archive_days = 30;
update integration.alert_policy set group_window_seconds = 600;

create function pg_temp.ingest(p_key text, p_payload jsonb) returns jsonb language sql as $$
  select integration.ingest_event('odoo', p_key, 'expense.approved', 'hr.expense', '7', p_payload,
    'ret-' || p_key, 'hmac-sha256', 'k1')
$$;
-- Marks an event delivered p_ago ago, as settle_outbox would.
create function pg_temp.delivered(p_id uuid, p_ago interval) returns void language sql as $$
  update integration.outbox set status = 'completed', completed_at = now() - p_ago, attempts = 2,
    receipt = '{"http_status": 200}', error_history = '[{"attempt": 1, "error": "HTTP 503"}]'
  where id = p_id
$$;

select (pg_temp.ingest(:'tag' || '-old', '{"amount": 1}') ->> 'event_id') as old_id,
       (pg_temp.ingest(:'tag' || '-old2', '{"amount": 2}') ->> 'event_id') as old2_id,
       (pg_temp.ingest(:'tag' || '-old3', '{"amount": 3}') ->> 'event_id') as old3_id,
       (pg_temp.ingest(:'tag' || '-hot', '{"amount": 4}') ->> 'event_id') as hot_id,
       (pg_temp.ingest(:'tag' || '-pending', '{"amount": 5}') ->> 'event_id') as pending_id,
       (integration.raise_alert('retention_test', :'tag', 'an alert delivered 7 minutes ago') ->> 'event_id') as alert_id
\gset
select pg_temp.delivered(:'old_id', interval '2 days');
select pg_temp.delivered(:'old2_id', interval '2 hours');
select pg_temp.delivered(:'old3_id', interval '1 hour');
select pg_temp.delivered(:'hot_id', interval '2 minutes');
select pg_temp.delivered(:'alert_id', interval '7 minutes');
update integration.outbox set created_at = now() - interval '3 days' where id = :'pending_id';

-- Other completed rows of the dev database stay out of the way (rolled back).
update integration.outbox set completed_at = now()
where status = 'completed' and id not in (:'old_id', :'old2_id', :'old3_id', :'hot_id', :'alert_id');

-- Out-of-range batch arguments are refused before anything moves.
select is(pg_temp.call('select integration.archive_completed(0, 2)') || ' / ' ||
          (select count(*) from integration.outbox where id in (:'old_id', :'old2_id', :'old3_id'))::text,
  'PT422 validation_failed / 3', 'a batch size out of range is refused and nothing moves');

-- Batches: one row per batch, two batches, oldest first.
select is(integration.archive_completed(1, 2) ->> 'archived', '2', 'a run moves at most p_batch_size x p_max_batches rows');
select ok(exists (select from integration.outbox_archive where id = :'old_id'), 'the oldest completed event went first');
select isnt(integration.archive_completed() ->> 'archived', '0', 'the next run moves the rest');

select is((select count(*) from integration.outbox where id in (:'old_id', :'old2_id', :'old3_id')), 0::bigint,
  'completed events past the hot window left the outbox');
select is((select count(*) from integration.outbox_archive where id in (:'old_id', :'old2_id', :'old3_id')), 3::bigint,
  'and are in the archive, once each');
select is((select to_jsonb(a) - 'archived_at' from integration.outbox_archive a where id = :'old2_id'),
  jsonb_build_object('id', :'old2_id', 'source', 'odoo', 'idempotency_key', :'tag' || '-old2',
    'event_type', 'expense.approved', 'aggregate_type', 'hr.expense', 'aggregate_id', '7',
    'payload', '{"amount": 2}'::jsonb, 'occurred_at', null, 'correlation_id', 'ret-' || :'tag' || '-old2',
    'attempts', 2, 'last_error', null, 'error_history', '[{"attempt": 1, "error": "HTTP 503"}]'::jsonb,
    'receipt', '{"http_status": 200}'::jsonb,
    'created_at', (select created_at from integration.event_log where event_id = :'old2_id'),
    'completed_at', now() - interval '2 hours'),
  'an archived row keeps the event, its attempts, error history and receipt');
select is((select tableoid::regclass::text from integration.outbox_archive where id = :'old_id'),
  'integration.outbox_archive_p' || to_char((now() - interval '2 days') at time zone 'UTC', 'YYYYMMDD'),
  'each row lands in the partition of its UTC completion day');
select is((select status from integration.outbox where id = :'hot_id'), 'completed',
  'an event completed within the hot window stays');
select is((select status from integration.outbox where id = :'alert_id'), 'completed',
  'an alert stays for its group window even past the hot window');
select is((select status from integration.outbox where id = :'pending_id'), 'pending',
  'a pending event stays, however old');
select is((select count(*) from integration.event_log where idempotency_key like :'tag' || '-%'), 5::bigint,
  'event_log keeps every event');

-- The key outlives the outbox row.
select is(pg_temp.ingest(:'tag' || '-old', '{"amount": 1}'),
  jsonb_build_object('event_id', :'old_id', 'duplicate', true), 'a repeat of an archived event is a duplicate');
select is(pg_temp.call(format('select pg_temp.ingest(%L, %L)', :'tag' || '-old', '{"amount": 99}')),
  'PT409 idempotency_conflict', 'the key of an archived event with another payload is a conflict');
select is(integration.ingest_events('odoo', jsonb_build_array(
    jsonb_build_object('idempotency_key', :'tag' || '-old2', 'event_type', 'expense.approved',
      'aggregate_type', 'hr.expense', 'aggregate_id', '7', 'payload', '{"amount": 2}'::jsonb),
    jsonb_build_object('idempotency_key', :'tag' || '-old3', 'event_type', 'expense.approved',
      'aggregate_type', 'hr.expense', 'aggregate_id', '7', 'payload', '{"amount": 300}'::jsonb),
    jsonb_build_object('idempotency_key', :'tag' || '-new', 'event_type', 'expense.approved',
      'aggregate_type', 'hr.expense', 'aggregate_id', '7', 'payload', '{"amount": 6}'::jsonb)),
    'ret-batch', 'hmac-sha256', 'k1') -> 0,
  jsonb_build_object('status', 'duplicate', 'event_id', :'old2_id'), 'a batch reports an archived event as a duplicate');
select is((select (r -> 0 ->> 'status') || ',' || (r -> 1 ->> 'status') || ',' || (r -> 2 ->> 'status') from (select integration.ingest_events('odoo', jsonb_build_array(
    jsonb_build_object('idempotency_key', :'tag' || '-old3', 'event_type', 'expense.approved',
      'aggregate_type', 'hr.expense', 'aggregate_id', '7', 'payload', '{"amount": 300}'::jsonb),
    jsonb_build_object('idempotency_key', :'tag' || '-old3', 'event_type', 'expense.approved',
      'aggregate_type', 'hr.expense', 'aggregate_id', '7', 'payload', '{"amount": 300}'::jsonb),
    jsonb_build_object('idempotency_key', :'tag' || '-new', 'event_type', 'expense.approved',
      'aggregate_type', 'hr.expense', 'aggregate_id', '7', 'payload', '{"amount": 6}'::jsonb)),
    'ret-batch', 'hmac-sha256', 'k1') r) x),
  'conflict,conflict,duplicate', 'in a batch: a changed archived event is a conflict (each time); an event accepted before, a duplicate');
select is((select count(*) from integration.outbox where idempotency_key in (:'tag' || '-old', :'tag' || '-old2', :'tag' || '-old3')),
  0::bigint, 'no repeat put an archived event back in the outbox');
select is((select count(*) from integration.outbox o join integration.event_log l on l.event_id = o.id
           where o.idempotency_key = :'tag' || '-new'), 1::bigint,
  'a new event in a batch is in the outbox and event_log under one id');

-- Readers that look back.
select is((select detail ->> 'receipt' from ops.trace_rows
           where correlation_id = 'ret-' || :'tag' || '-old' and kind = 'outbox.delivered'),
  '{"http_status": 200}', 'a trace shows the delivery of an archived event');
select is((select count(*) from ops.trace_rows
           where correlation_id = 'ret-' || :'tag' || '-old' and kind = 'outbox.attempt_failed'), 1::bigint,
  'and its failed attempts');
select is((select status from ops.events where subject_id = :'old_id'), 'completed',
  'the event stream lists archived events as completed');

set local role authenticated;
select set_config('request.jwt.claims', :'jwt_user', true) \g /dev/null
select is((select count(*) from integration.outbox_archive), 0::bigint, 'a signed-up user reads no archived event');
select set_config('request.jwt.claims', :'jwt_op', true) \g /dev/null
select ok((select count(*) from integration.outbox_archive where id = :'old_id') = 1
          and ((integration.outbox_stats() -> 'archive' ->> 'partitions')::int >= 3),
  'an operator reads the archive, and outbox_stats counts its partitions');
select is(pg_temp.call('select integration.archive_completed()') || ',' || pg_temp.call('select integration.drop_expired_archive()'),
  '42501,42501', 'an operator cannot run the moves: only pg_cron (the owner) does');
reset role;
set local request.jwt.claims = '';

select ok(not has_table_privilege('service_role', 'integration.outbox_archive', 'insert, update, delete')
          and not has_table_privilege('authenticated', 'integration.outbox_archive_p'
                || to_char((now() - interval '2 days') at time zone 'UTC', 'YYYYMMDD'), 'select'),
  'nobody writes the archive through the API, and partitions are reached only through it');
select is(pg_temp.call('update integration.retention_policy set hot_seconds = 30'),
  '23514 new row for relation "retention_policy" violates check constraint "retention_policy_hot_seconds_check"',
  'the hot window is at least a minute');

-- Expired partitions: archive_days = 30 keeps day -30 and drops day -31.
select integration.archive_partition(((now() at time zone 'UTC')::date - 31));
select integration.archive_partition(((now() at time zone 'UTC')::date - 30));
select ok(integration.drop_expired_archive() -> 'dropped' ? ('outbox_archive_p' || to_char((now() at time zone 'UTC')::date - 31, 'YYYYMMDD')),
  'a partition older than archive_days is dropped');
select ok(to_regclass('integration.outbox_archive_p' || to_char((now() at time zone 'UTC')::date - 30, 'YYYYMMDD')) is not null
          and to_regclass('integration.outbox_archive_p' || to_char((now() at time zone 'UTC')::date - 31, 'YYYYMMDD')) is null,
  'the last day within archive_days is kept');

select * from finish();
rollback;
