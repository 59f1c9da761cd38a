-- settle_outbox reads and checks its input in one pass and keeps what it read:
-- the failure loop walks those arrays instead of parsing the JSON again, and the
-- validation message is written once. Behaviour and error codes are unchanged;
-- the figures (no measurable change in CPU per settle) are in docs/scale.md.

create or replace function integration.settle_outbox(p_results jsonb) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_ids uuid[];
  v_tokens uuid[];
  v_ok boolean[];
  v_receipts jsonb[];
  v_errors text[];
  v_retry_after integer[];
  v_bad_shape boolean;
  v_bad_receipt boolean;
  v_acked uuid[];
  v_alerts uuid[];
  v_failed uuid[] := '{}';
begin
  if jsonb_typeof(p_results) is distinct from 'array' or jsonb_array_length(p_results) > 1000 then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'p_results must be an array of at most 1000 results';
  end if;
  -- A cast that fails (an id that is no uuid) is a bad shape too, caught below.
  begin
    select bool_or(jsonb_typeof(r.v) is distinct from 'object'
             or jsonb_typeof(r.v -> 'id') is distinct from 'string'
             or jsonb_typeof(r.v -> 'lease_token') is distinct from 'string'
             or jsonb_typeof(r.v -> 'ok') is distinct from 'boolean'
             or coalesce(jsonb_typeof(r.v -> 'retry_after_seconds'), 'null') <> 'null'
                and coalesce(r.v ->> 'retry_after_seconds' !~ '^[0-9]{1,9}$', true)),
           bool_or(r.v ? 'receipt' and (jsonb_typeof(r.v -> 'receipt') is distinct from 'object'
                                        or length((r.v -> 'receipt')::text) > 500)),
           array_agg((r.v ->> 'id')::uuid order by r.ord),
           array_agg((r.v ->> 'lease_token')::uuid order by r.ord),
           array_agg((r.v ->> 'ok')::boolean order by r.ord),
           array_agg(r.v -> 'receipt' order by r.ord),
           array_agg(coalesce(nullif(left(r.v ->> 'error', 1000), ''), 'unspecified error') order by r.ord),
           array_agg(case when r.v ->> 'retry_after_seconds' ~ '^[0-9]{1,9}$'
                          then (r.v ->> 'retry_after_seconds')::integer end order by r.ord)
    into v_bad_shape, v_bad_receipt, v_ids, v_tokens, v_ok, v_receipts, v_errors, v_retry_after
    from jsonb_array_elements(p_results) with ordinality r(v, ord);
  exception when invalid_text_representation then
    v_bad_shape := true;
  end;
  if v_bad_shape then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'each result needs a uuid id and lease_token and a boolean ok; retry_after_seconds is a non-negative integer';
  end if;
  if v_bad_receipt then
    raise exception using errcode = 'PT422', message = 'validation_failed', detail = 'a receipt is an object of at most 500 characters';
  end if;
  if v_ids is null then
    return jsonb_build_object('acked', 0, 'failed', 0, 'stale', '[]'::jsonb);
  end if;

  perform integration.archive_partition((now() at time zone 'UTC')::date);

  -- Every success in one statement: the row leaves the hot table for the
  -- archive. A row whose lease was reclaimed or settled meanwhile no longer
  -- matches (the DELETE rechecks it after any lock wait).
  with delivered as (
    delete from integration.outbox o
    using unnest(v_ids, v_tokens, v_ok, v_receipts) r(id, lease_token, ok, receipt)
    where o.id = any(v_ids)
      and o.id = r.id and r.ok and o.lock_token = r.lease_token and o.status = 'processing'
      and o.source <> 'switchyard'
    returning o.id, o.source, o.idempotency_key, o.event_type, o.aggregate_type, o.aggregate_id, o.payload,
              o.occurred_at, o.correlation_id, o.attempts, o.last_error, o.error_history, r.receipt, o.created_at
  ), archived as (
    insert into integration.outbox_archive
      (id, source, idempotency_key, event_type, aggregate_type, aggregate_id, payload, occurred_at,
       correlation_id, attempts, last_error, error_history, receipt, created_at, completed_at)
    select d.id, d.source, d.idempotency_key, d.event_type, d.aggregate_type, d.aggregate_id, d.payload,
           d.occurred_at, d.correlation_id, d.attempts, d.last_error, d.error_history, d.receipt,
           d.created_at, now()
    from delivered d
    returning id)
  select coalesce(array_agg(a.id), '{}') into v_acked from archived a;

  -- Alerts stay hot as 'completed' for their group window; only a batch with
  -- an ack the statement above did not take pays for this one.
  if cardinality(v_acked) < cardinality(array_positions(v_ok, true)) then
    with acked as (
      update integration.outbox o set
        status = 'completed', completed_at = now(), receipt = r.receipt,
        locked_at = null, locked_by = null, lock_token = null, lease_expires_at = null, updated_at = now()
      from unnest(v_ids, v_tokens, v_ok, v_receipts) r(id, lease_token, ok, receipt)
      where o.id = any(v_ids)
        and o.id = r.id and r.ok and o.lock_token = r.lease_token and o.status = 'processing'
        and o.source = 'switchyard'
      returning o.id)
    select coalesce(array_agg(a.id), '{}') into v_alerts from acked a;
    v_acked := v_acked || v_alerts;
  end if;

  -- Failures one at a time, in the order given: record_failure decides each
  -- one's retry or dead letter.
  for i in 1 .. cardinality(v_ids) loop
    continue when v_ok[i];
    if integration.holds_lease(v_ids[i], v_tokens[i]) then
      perform integration.record_failure(v_ids[i], v_errors[i], v_retry_after[i]);
      v_failed := v_failed || v_ids[i];
    end if;
  end loop;

  return jsonb_build_object(
    'acked', cardinality(v_acked),
    'failed', cardinality(v_failed),
    'stale', (select coalesce(jsonb_agg(r.id order by r.ord), '[]')
              from unnest(v_ids) with ordinality r(id, ord)
              where r.id <> all (v_acked || v_failed)));
end;
$$;
