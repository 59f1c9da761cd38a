-- Group commit for odoo-webhook (issue "Scale and faults", figures in
-- docs/odoo-webhook.md#group-commit): the single events that arrive at one
-- isolate while its previous call is in flight are recorded in one call and
-- one transaction, each exactly as integration.ingest_event records it alone.

create function integration.ingest_event_group(p_events jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_results jsonb[];
  v_event record;
  v_state text;
  v_message text;
  v_detail text;
  v_hint text;
begin
  if jsonb_typeof(p_events) is distinct from 'array' or jsonb_array_length(p_events) not between 1 and 50 then
    raise exception using errcode = 'PT422', message = 'validation_failed',
      detail = 'p_events must be an array of 1 to 50 events', hint = 'p_events';
  end if;
  v_results := array_fill(null::jsonb, array[jsonb_array_length(p_events)]);

  -- Keys in one order in every group, so two groups holding the same keys
  -- wait for each other instead of deadlocking.
  for v_event in
    select e.value as args, e.ordinality as ord
    from jsonb_array_elements(p_events) with ordinality e
    order by e.value ->> 'p_source', e.value ->> 'p_idempotency_key', e.ordinality
  loop
    -- One subtransaction per event: a refusal undoes that event's writes only.
    begin
      v_results[v_event.ord] := integration.ingest_event(
        v_event.args ->> 'p_source',
        v_event.args ->> 'p_idempotency_key',
        v_event.args ->> 'p_event_type',
        v_event.args ->> 'p_aggregate_type',
        v_event.args ->> 'p_aggregate_id',
        v_event.args -> 'p_payload',
        v_event.args ->> 'p_correlation_id',
        v_event.args ->> 'p_scheme',
        v_event.args ->> 'p_signing_key_id',
        (v_event.args ->> 'p_occurred_at')::timestamptz,
        v_event.args ->> 'p_replay_digest',
        (v_event.args ->> 'p_replay_expires_at_ms')::bigint);
    exception
      -- The refusals a lone call answers 4xx: its own (PT409, PT422) and a
      -- value the table cannot store. Anything else fails the whole group,
      -- as it would have failed each call.
      when sqlstate 'PT409' or sqlstate 'PT422' or data_exception or integrity_constraint_violation then
        get stacked diagnostics v_state = returned_sqlstate, v_message = message_text,
          v_detail = pg_exception_detail, v_hint = pg_exception_hint;
        -- PostgREST's error shape, so the function answers as for a lone call.
        v_results[v_event.ord] := jsonb_build_object('error', jsonb_build_object(
          'code', v_state, 'message', v_message, 'details', nullif(v_detail, ''), 'hint', nullif(v_hint, '')));
    end;
  end loop;

  return to_jsonb(v_results);
end;
$$;

comment on function integration.ingest_event_group(jsonb) is
  'Records 1 to 50 signed events in one transaction, each as ingest_event would alone: its result, or its refusal in PostgREST''s error shape.';

revoke all on function integration.ingest_event_group(jsonb) from public;
grant execute on function integration.ingest_event_group(jsonb) to service_role;
