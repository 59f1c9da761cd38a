-- The set-based claim and settle: one route lookup per event type, unrouted
-- events mixed with routed ones, a settle that acks, fails and refuses stale
-- leases in one call, validation before any write, and the expired-lease
-- sweep that now runs only when a lease has expired.
begin;
set search_path = extensions, public;
select plan(22);

-- Park the dev database's rows (rolled back at the end).
update integration.outbox set available_at = now() + interval '100 years' where status = 'pending';
update integration.outbox set lease_expires_at = now() + interval '100 years' where status = 'processing';
delete from integration.routes;
insert into integration.routes (event_pattern, target_url, signing_secret) values
  ('expense.*', 'http://127.0.0.1:9/expense', 'whsec_ZXhwZW5zZS1zZWNyZXQtMDEyMzQ1Njc4OQ=='),
  ('expense.approved', 'http://127.0.0.1:9/approved', 'whsec_YXBwcm92ZWQtc2VjcmV0LTAxMjM0NTY3ODk='),
  ('asset.*', 'http://127.0.0.1:9/asset', 'whsec_YXNzZXQtc2VjcmV0LTAxMjM0NTY3ODk5OTk=');

create function pg_temp.add(p_type text, p_n integer, p_after integer) returns void language sql as $$
  insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, correlation_id, created_at)
  select 'odoo', 'qs-' || p_type || '-' || g || '-' || gen_random_uuid(), p_type, 'hr.expense', g::text, '{}', 'qs',
         now() + (p_after + g) * interval '1 millisecond'
  from generate_series(1, p_n) g
$$;

-- Three event types, each with its own route; two events no route matches.
-- The unrouted come first, so the claim must lease again to fill its batch.
select pg_temp.add('payroll.closed', 2, 0);
select pg_temp.add('expense.submitted', 3, 10);
select pg_temp.add('expense.approved', 2, 20);
select pg_temp.add('asset.created', 2, 30);
create temp table claimed as select to_jsonb(c) as c from integration.claim_outbox('qs-worker', 7, 60) c;

select is((select count(*) from claimed), 7::bigint, 'a claim fills the batch past the unrouted events');
select is((select count(*) from claimed where c ->> 'event_type' = 'expense.submitted' and c ->> 'target_url' = 'http://127.0.0.1:9/expense'),
  3::bigint, 'each event carries the route of its own type (pattern)');
select is((select count(*) from claimed where c ->> 'event_type' = 'expense.approved' and c ->> 'target_url' = 'http://127.0.0.1:9/approved'),
  2::bigint, 'an exact pattern wins over a wildcard for its type');
select is((select count(*) from claimed where c ->> 'event_type' = 'asset.created' and c ->> 'target_url' = 'http://127.0.0.1:9/asset'),
  2::bigint, 'a third type gets its own route in the same batch');
select is((select count(*) from integration.outbox where event_type = 'payroll.closed' and status = 'failed' and last_error = 'no_route'),
  2::bigint, 'events no route matches fail at once with no_route');
select ok((select bool_and(c ? 'lease_token' and c ? 'signing_secret' and c ? 'timeout_ms' and c ? 'format') from claimed),
  'a claimed event carries its lease and its route''s delivery settings');

-- One settle: two acks, one failure with Retry-After, one stale lease, one unknown event.
create temp table picked as
  select (c ->> 'id')::uuid as id, (c ->> 'lease_token')::uuid as token, row_number() over (order by c ->> 'created_at') as n
  from claimed;
select id as unknown from (select gen_random_uuid() as id) u \gset
select is(integration.settle_outbox((
    select jsonb_agg(case
      when n <= 2 then jsonb_build_object('id', id, 'lease_token', token, 'ok', true, 'receipt', jsonb_build_object('n', n))
      when n = 3 then jsonb_build_object('id', id, 'lease_token', token, 'ok', false, 'error', 'HTTP 503', 'retry_after_seconds', 120)
      when n = 4 then jsonb_build_object('id', id, 'lease_token', gen_random_uuid(), 'ok', true)
    end order by n) filter (where n <= 4)
    from picked) || jsonb_build_array(jsonb_build_object('id', :'unknown', 'lease_token', gen_random_uuid(), 'ok', false))),
  jsonb_build_object('acked', 2, 'failed', 1, 'stale',
    jsonb_build_array((select id from picked where n = 4), :'unknown'::uuid)),
  'one settle acks, fails and names the stale results in their order');
select is((select string_agg(o.status || ':' || coalesce(o.receipt ->> 'n', '-'), ',' order by p.n) from picked p join integration.outbox_and_archive o using (id) where p.n <= 4),
  'completed:1,completed:2,pending:-,processing:-', 'acks keep their receipts; the failure is pending; the stale one is untouched');
select ok((select available_at between now() + interval '119 seconds' and now() + interval '121 seconds'
    and jsonb_array_length(error_history) = 1 and error_history -> 0 ->> 'error' = 'HTTP 503'
  from integration.outbox o join picked p using (id) where p.n = 3), 'a failure keeps Retry-After and its error history');

-- Validation comes before any write.
select throws_ok(format($$ select integration.settle_outbox(jsonb_build_array(
    jsonb_build_object('id', %L, 'lease_token', %L, 'ok', true),
    jsonb_build_object('id', 'not-a-uuid', 'lease_token', %L, 'ok', true))) $$,
    (select id from picked where n = 5), (select token from picked where n = 5), (select token from picked where n = 5)),
  'PT422', 'validation_failed', 'a malformed id refuses the whole settle');
select is((select status from integration.outbox o join picked p using (id) where p.n = 5), 'processing',
  'a refused settle acks nothing, not even its valid results');
select throws_ok(format($$ select integration.settle_outbox(jsonb_build_array(
    jsonb_build_object('id', %L, 'lease_token', %L, 'ok', false, 'retry_after_seconds', 1.5))) $$,
    (select id from picked where n = 5), (select token from picked where n = 5)),
  'PT422', 'validation_failed', 'Retry-After must be a whole number of seconds');
select throws_ok(format($$ select integration.settle_outbox(jsonb_build_array(
    jsonb_build_object('id', %L, 'lease_token', %L, 'ok', false, 'retry_after_seconds', 9999999999))) $$,
    (select id from picked where n = 5), (select token from picked where n = 5)),
  'PT422', 'validation_failed', 'a Retry-After of ten digits is refused, not an integer overflow');
select is(integration.settle_outbox(jsonb_build_array(jsonb_build_object(
    'id', (select id from picked where n = 7), 'lease_token', (select token from picked where n = 7), 'ok', false, 'error', '')))
    ->> 'failed', '1', 'a failure with an empty error is recorded');
select is((select last_error from integration.outbox o join picked p using (id) where p.n = 7), 'unspecified error',
  'as an unspecified error');
select throws_ok(format($$ select integration.settle_outbox(jsonb_build_array(
    jsonb_build_object('id', %L, 'lease_token', %L, 'ok', true, 'receipt', 'text'))) $$,
    (select id from picked where n = 5), (select token from picked where n = 5)),
  'PT422', 'validation_failed', 'a receipt must be an object');
select throws_ok($$ select integration.settle_outbox('[1]') $$, 'PT422', 'validation_failed', 'each result is an object');

-- The expired-lease sweep still runs inside a claim when a lease has expired.
update integration.outbox o set lease_expires_at = now() - interval '1 second' from picked p where o.id = p.id and p.n = 6;
select is((select count(*) from integration.claim_outbox('qs-worker-2', 1, 60)), 0::bigint,
  'the claim finds nothing claimable yet (the reclaimed event waits for its backoff)');
select is((select status || '/' || last_error from integration.outbox o join picked p using (id) where p.n = 6),
  'pending/lease expired before ack or fail', 'but its sweep returned the expired lease to the queue with the reason');

-- The settle archives into the day's partition, and makes it if pg_cron's
-- minute job has not yet.
do $$ begin
  execute format('drop table integration.%I', 'outbox_archive_p' || to_char(now() at time zone 'UTC', 'YYYYMMDD'));
end $$;
select is(integration.settle_outbox(jsonb_build_array(jsonb_build_object(
    'id', (select id from picked where n = 5), 'lease_token', (select token from picked where n = 5), 'ok', true))) ->> 'acked',
  '1', 'a settle on a day without its archive partition acks');
select is((select a.tableoid::regclass::text from integration.outbox_archive a join picked p using (id) where p.n = 5),
  'integration.outbox_archive_p' || to_char(now() at time zone 'UTC', 'YYYYMMDD'), 'into the partition it made');
do $$ begin
  execute format('drop table if exists integration.%I', 'outbox_archive_p' || to_char((now() at time zone 'UTC')::date + 1, 'YYYYMMDD'));
end $$;
select integration.archive_completed() \g /dev/null
select isnt(to_regclass('integration.outbox_archive_p' || to_char((now() at time zone 'UTC')::date + 1, 'YYYYMMDD')), null,
  'the minute job keeps tomorrow''s partition ready');

select * from finish();
rollback;
