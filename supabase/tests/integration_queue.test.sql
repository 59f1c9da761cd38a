-- The consumer side of the outbox: routes, leased claims, fenced ack/fail,
-- backoff, dead letters, lease reclaim, redrive, monitoring.
begin;
set search_path = extensions, public;
select plan(51);

-- Park whatever the dev database already holds (rolled back at the end) so
-- claims in this test see only its own events.
update integration.outbox set available_at = now() + interval '100 years' where status = 'pending';
update integration.outbox set lease_expires_at = now() + interval '100 years' where status = 'processing';
update integration.outbox set created_at = created_at - interval '100 years' where status = 'failed';
delete from integration.routes;
update integration.delivery_policy set backoff_seconds = '{30,90,300}', max_retry_after_seconds = 3600;

insert into integration.routes (event_pattern, target_url, signing_secret) values
  ('expense.*', 'http://127.0.0.1:9/expense', 'whsec_ZXhwZW5zZS1zZWNyZXQtMDEyMzQ1Njc4OQ=='),
  ('expense.paid', 'http://127.0.0.1:9/paid', 'whsec_cGFpZC1zZWNyZXQtMDEyMzQ1Njc4OTAxMjM='),
  ('asset.*', 'http://127.0.0.1:9/asset', 'whsec_YXNzZXQtc2VjcmV0LTAxMjM0NTY3ODkwMTI=');
insert into integration.routes (event_pattern, target_url, signing_secret, enabled) values
  ('finance_task.*', 'http://127.0.0.1:9/finance', 'whsec_ZmluYW5jZS1zZWNyZXQtMDEyMzQ1Njc4OTA=', false);

-- Routing.
select is((integration.route_for('expense.paid')).target_url, 'http://127.0.0.1:9/paid', 'an exact route beats a prefix');
select is((integration.route_for('expense.submitted')).target_url, 'http://127.0.0.1:9/expense', 'a prefix route matches');
select is((integration.route_for('expenses.x')).target_url, null, 'a prefix matches only at a dot boundary');
select is((integration.route_for('finance_task.created')).target_url, null, 'disabled routes are ignored');
select throws_ok($$ insert into integration.routes (event_pattern, target_url, signing_secret)
  values ('bad pattern', 'http://x', 'whsec_x') $$, '23514', null, 'route patterns are validated');

create function pg_temp.add(p_type text, p_key text, p_age interval default '0') returns uuid language sql as $$
  insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
                                  correlation_id, created_at, available_at)
  values ('odoo', 'q-' || p_key || '-' || gen_random_uuid(), p_type, 't', '1', '{}', 'cid-' || p_key,
          now() - p_age, now() - p_age)
  returning id
$$;

select pg_temp.add('expense.submitted', 'e1', '3 minutes') as e1 \gset
select pg_temp.add('asset.reserved', 'a1', '2 minutes') as a1 \gset
select pg_temp.add('unrouted.thing', 'u1', '1 minute') as u1 \gset
select pg_temp.add('expense.paid', 'e2', '0') as e2 \gset
update integration.outbox set available_at = now() + interval '1 hour' where id = :'e2';

-- Claim.
create temp table claim1 on commit drop as
  select to_jsonb(c) as c from integration.claim_outbox('worker-a', 10, 60) as c;
select is((select count(*)::int from claim1), 2, 'claim returns the routed, available events');
select is((select array_agg(c ->> 'id' order by c ->> 'created_at') from claim1),
  array[:'e1', :'a1']::text[], 'oldest first; future available_at and unrouted events are not returned');
select ok((select bool_and((c ->> 'lease_token') is not null) from claim1), 'each claimed event carries a lease token');
select is((select c ->> 'target_url' from claim1 where c ->> 'id' = :'a1'), 'http://127.0.0.1:9/asset',
  'each claimed event carries its route');
select is((select status || '/' || attempts || '/' || locked_by from integration.outbox where id = :'e1'),
  'processing/1/worker-a', 'a claimed event is processing, its attempt counted, its worker recorded');
select ok((select lease_expires_at between now() + interval '59 seconds' and now() + interval '61 seconds'
  from integration.outbox where id = :'e1'), 'the lease lasts p_lease_seconds');
select is((select status || '/' || last_error from integration.outbox where id = :'u1'), 'failed/no_route',
  'an event without a route is dead-lettered with no_route');
select is((select count(*)::int from integration.claim_outbox('worker-b', 10, 60)), 0,
  'a second claimer gets nothing that is leased');
select pg_temp.add('unrouted.thing', 'u2', '10 minutes') as u2 \gset
select pg_temp.add('asset.checked_in', 'a0', '9 minutes') as a0 \gset
create temp table claim_a0 on commit drop as select to_jsonb(c) as c from integration.claim_outbox('worker-b', 1, 60) as c;
select is((select array_agg(c ->> 'id') from claim_a0), array[:'a0']::text[],
  'a batch of unrouted events does not hide a routed one behind it');
select is(integration.ack_outbox(:'a0', (select (c ->> 'lease_token')::uuid from claim_a0)) ->> 'status', 'completed',
  'and it can be acked');

-- Ack is fenced by the lease token.
select throws_ok(format($$ select integration.ack_outbox(%L, gen_random_uuid()) $$, :'e1'),
  'PT409', 'stale_lease', 'ack with a wrong token is refused');
select is((select status from integration.outbox where id = :'e1'), 'processing', 'and changes nothing');
select is(integration.ack_outbox(:'e1', (select (c ->> 'lease_token')::uuid from claim1 where c ->> 'id' = :'e1')) ->> 'status',
  'completed', 'ack with the lease token completes the event');
select is((select count(*) from integration.outbox where id = :'e1') || '/'
            || (select status || '/' || (archived_at is not null) from integration.outbox_and_archive where id = :'e1'),
  '0/completed/true', 'the acked event left the hot table for the archive');
select throws_ok(format($$ select integration.ack_outbox(%L, %L) $$, :'e1',
  (select c ->> 'lease_token' from claim1 where c ->> 'id' = :'e1')),
  'PT409', 'stale_lease', 'a second ack is refused');

-- Fail: exponential backoff, Retry-After, dead letter with history.
create function pg_temp.claim_one(p_id uuid) returns uuid language plpgsql as $$
declare v_token uuid;
begin
  update integration.outbox set available_at = now() where id = p_id;
  select c.lease_token into v_token from integration.claim_outbox('worker-a', 10, 60) c
  where c.id = p_id;
  return v_token;
end $$;
create function pg_temp.wait_of(p_id uuid) returns integer language sql as $$
  select round(extract(epoch from available_at - now()))::integer from integration.outbox where id = p_id
$$;

select is(integration.fail_outbox(:'a1', (select (c ->> 'lease_token')::uuid from claim1 where c ->> 'id' = :'a1'), 'HTTP 500')
  ->> 'status', 'pending', 'a first failure goes back to pending');
select is(pg_temp.wait_of(:'a1'), 30, 'after the first failure the event waits 30 s');
select is(integration.fail_outbox(:'a1', pg_temp.claim_one(:'a1'), 'HTTP 502') ->> 'status', 'pending', 'second failure');
select is(pg_temp.wait_of(:'a1'), 90, 'after the second failure it waits 90 s');
select is(integration.fail_outbox(:'a1', pg_temp.claim_one(:'a1'), 'HTTP 429', 600) ->> 'status', 'pending', 'third failure with Retry-After');
select is(pg_temp.wait_of(:'a1'), 600, 'a longer Retry-After wins over the 5 min step');
select is(integration.fail_outbox(:'a1', pg_temp.claim_one(:'a1'), 'HTTP 503') ->> 'status', 'failed',
  'after the last step the event is dead-lettered');
select is((select attempts || '/' || last_error || '/' || (dead_at is not null)::text from integration.outbox where id = :'a1'),
  '4/HTTP 503/true', 'the dead event keeps its attempts, last error and dead_at');
select is((select jsonb_path_query_array(error_history, '$[*].error') from integration.outbox where id = :'a1'),
  '["HTTP 500", "HTTP 502", "HTTP 429", "HTTP 503"]'::jsonb, 'every error is kept in order');
select throws_ok(format($$ select integration.fail_outbox(%L, gen_random_uuid(), 'x') $$, :'a1'),
  'PT409', 'stale_lease', 'fail without the lease is refused');

-- The schedule is configurable.
update integration.delivery_policy set backoff_seconds = '{5}', max_retry_after_seconds = 60;
select pg_temp.add('asset.checked_out', 'a2') as a2 \gset
select is(integration.fail_outbox(:'a2', pg_temp.claim_one(:'a2'), 'x', 7200) ->> 'status', 'pending', 'one-step schedule: first failure');
select is(pg_temp.wait_of(:'a2'), 60, 'Retry-After is capped by max_retry_after_seconds');
select is(integration.fail_outbox(:'a2', pg_temp.claim_one(:'a2'), 'x') ->> 'status', 'failed', 'one-step schedule: second failure is final');
update integration.delivery_policy set backoff_seconds = '{30,90,300}', max_retry_after_seconds = 3600;

-- Expired leases return to the queue; the old token is fenced out.
select pg_temp.add('expense.approved', 'e3') as e3 \gset
select pg_temp.claim_one(:'e3') as e3_token \gset
update integration.outbox set lease_expires_at = now() - interval '1 second' where id = :'e3';
select is(integration.reclaim_expired_leases(), 1, 'reclaim returns an expired lease to the queue');
select is((select status || '/' || last_error from integration.outbox where id = :'e3'),
  'pending/lease expired before ack or fail', 'the expiry counts as a failed attempt');
select throws_ok(format($$ select integration.ack_outbox(%L, %L) $$, :'e3', :'e3_token'),
  'PT409', 'stale_lease', 'a late ack after the lease was reclaimed is refused');
select pg_temp.claim_one(:'e3') as e3_token2 \gset
update integration.outbox set lease_expires_at = now() - interval '1 second' where id = :'e3';
update integration.outbox set available_at = now() + interval '1 hour' where id = :'e3';
select is((select count(*)::int from integration.claim_outbox('worker-c', 10, 60) c where c.id = :'e3'), 0,
  'claim reclaims expired leases itself (backing the event off)');
select is((select status from integration.outbox where id = :'e3'), 'pending', 'the reclaimed event is pending again');
select isnt_empty($$ select 1 from cron.job where jobname = 'integration-reclaim-expired-leases' and schedule = '* * * * *' $$,
  'pg_cron reclaims expired leases every minute');

-- Redrive.
select throws_ok($$ select integration.redrive_outbox('ops') $$, 'PT422', 'validation_failed',
  'redrive needs ids or a filter');
select is(integration.redrive_outbox('ops', p_event_pattern => 'asset.*', p_created_from => now() - interval '1 hour'),
  '{"matched": 2, "redriven": 0, "dry_run": true}'::jsonb, 'a dry run only counts (both dead asset events)');
select is((select status from integration.outbox where id = :'a1'), 'failed', 'a dry run changes nothing');
select is(integration.redrive_outbox('ops', p_error_contains => 'no_route', p_created_from => now() - interval '1 hour',
  p_dry_run => false) ->> 'redriven', '2',
  'redrive by error text (both unrouted events)');
select is((select status || '/' || attempts from integration.outbox where id = :'u1'), 'pending/0',
  'a redriven event is pending with its attempts reset');
select is(integration.redrive_outbox('ops', p_ids => array[:'a1']::uuid[], p_dry_run => false) ->> 'redriven', '1',
  'redrive by ids');
select is((select jsonb_array_length(error_history) from integration.outbox where id = :'a1'), 4,
  'a redriven event keeps its error history');
select is((select count(*)::int from integration.redrive_log where requested_by = 'ops'), 3, 'every redrive is audited, dry runs too');

-- Monitoring.
select ok(integration.outbox_stats() ?& array['by_status', 'oldest_pending_age_seconds', 'leased', 'expired_leases'],
  'outbox_stats reports counts by status, oldest pending age and leases');
select isnt_empty($$ select 1 from integration.failures_needing_attention(10) $$, 'failures needing attention are listed');

-- Validation and privileges.
select throws_ok($$ select integration.claim_outbox('w', 0, 60) $$, 'PT422', 'validation_failed', 'batch size is validated');
set local role authenticated;
select throws_ok($$ select integration.claim_outbox('w', 1, 60) $$, '42501', null, 'authenticated cannot claim');
reset role;

select * from finish();
rollback;
