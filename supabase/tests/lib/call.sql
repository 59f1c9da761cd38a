-- Included by the pgTAP files (\ir lib/call.sql).
-- What happens when the current role makes a call: 'ok', '42501' (no
-- privilege), or 'SQLSTATE message hint'.
create function pg_temp.call(p_sql text) returns text language plpgsql as $$
declare v_state text; v_message text; v_hint text;
begin
  execute p_sql;
  return 'ok';
exception when others then
  get stacked diagnostics v_state = returned_sqlstate, v_message = message_text, v_hint = pg_exception_hint;
  return case when v_state = '42501' then '42501' else concat_ws(' ', v_state, v_message, nullif(v_hint, '')) end;
end $$;
