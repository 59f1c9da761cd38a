-- Included by the pgTAP files (\ir lib/refusal.sql): runs a statement and
-- says how it was refused, 'SQLSTATE message hint', or 'accepted'.
create function pg_temp.refusal(p_sql text) returns text language plpgsql as $$
declare v_state text; v_message text; v_hint text;
begin
  execute p_sql;
  return 'accepted';
exception when others then
  get stacked diagnostics v_state = returned_sqlstate, v_message = message_text, v_hint = pg_exception_hint;
  return concat_ws(' ', v_state, v_message, nullif(v_hint, ''));
end $$;
