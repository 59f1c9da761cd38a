-- Partial indexes at scale. Runs: the newest-first list and the open-run
-- views have an index each (scripts/bench scale-work measured them reading the
-- whole table at a million finished runs). Outbox: correlation_id and
-- created_at are indexed outside 'processing' only (fewer index writes per
-- claim and ack), so the readers that look back must still reach them. With
-- sequential scans off, each query shape's plan must name its index, and each
-- function must still contain that shape: a status set the partial index does
-- not imply, or an order it cannot give, fails here instead of slowing down in
-- production.
begin;
set search_path = extensions, public;
select plan(13);

select has_index('ops', 'runs', 'runs_queued_at_idx', 'runs have a newest-first index');
select has_index('ops', 'runs', 'runs_open_idx', 'runs have an index of the runs not yet finished');

create function pg_temp.plan_of(p_sql text) returns text language plpgsql as $$
declare
  v_line text;
  v_plan text := '';
begin
  for v_line in execute 'explain (costs off) ' || p_sql loop
    v_plan := v_plan || v_line || E'\n';
  end loop;
  return v_plan;
end;
$$;

set local enable_seqscan = off;
set local enable_bitmapscan = off;

-- ops.list_runs without filters.
select ok(pg_temp.plan_of($$ select * from ops.runs order by queued_at desc limit 20 $$) ~ 'runs_queued_at_idx',
  'the newest runs are read from runs_queued_at_idx');
-- ops.console_overview's runs in flight.
select ok(pg_temp.plan_of($$ select * from ops.runs where status in ('awaiting_approval', 'queued', 'claimed', 'running')
  order by queued_at desc, run_id limit 20 $$) ~ 'runs_open_idx',
  'the runs in flight are read from runs_open_idx');
-- ops.get_queue_depth's runs part.
select ok(pg_temp.plan_of($$ select project_id, env, status, count(*), min(queued_at) from ops.runs
  where status in ('awaiting_approval', 'queued', 'claimed', 'running') group by project_id, env, status $$) ~ 'runs_open_idx',
  'the queue depth counts open runs through runs_open_idx');

-- The functions hold those shapes (the copies above are what they run).
select ok(pg_get_functiondef('ops.list_runs'::regproc) ~ 'from ops\.runs\s+where .*\s+order by queued_at desc limit p_limit',
  'ops.list_runs reads the newest runs first');
select ok(pg_get_functiondef('ops.console_overview'::regproc)
  ~ 'from ops\.runs\s+where status in \(''awaiting_approval'', ''queued'', ''claimed'', ''running''\)\s+order by queued_at desc, run_id limit 20',
  'ops.console_overview reads the runs in flight by status and newest first');
select ok(pg_get_functiondef('ops.get_queue_depth'::regproc)
  ~ 'from ops\.runs r\s+where r\.status in \(''awaiting_approval'', ''queued'', ''claimed'', ''running''\)',
  'ops.get_queue_depth counts the open runs by the same status set');

-- The outbox: a trace by correlation id, the event stream by time.
select ok(pg_temp.plan_of($$ select * from integration.outbox_and_archive where correlation_id = 'c' $$)
  ~ 'outbox_correlation_id_idx', 'outbox_and_archive finds a correlation id through outbox_correlation_id_idx');
select ok(pg_temp.plan_of($$ select * from integration.outbox_and_archive where correlation_id = 'c' $$)
  ~ 'outbox_leased_idx', 'and the leased rows, which that index skips, through outbox_leased_idx');
select ok(pg_temp.plan_of($$ select * from ops.trace_rows where correlation_id = 'c' $$)
  !~ 'Seq Scan on outbox\s', 'no branch of a trace reads the whole hot outbox');
select ok(pg_temp.plan_of($$ select * from ops.events where at > now() - interval '1 hour' $$)
  ~ 'outbox_created_at_idx', 'the event stream reads recent outbox rows through outbox_created_at_idx');
select ok(pg_temp.plan_of($$ select * from ops.events where at > now() - interval '1 hour' $$)
  !~ 'Seq Scan on outbox\s', 'and reads the leased ones without scanning the hot outbox');

select * from finish();
rollback;
