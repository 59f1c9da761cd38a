-- Runs at a million rows (`scripts/bench scale-work`): with a month of
-- finished runs, the newest-first list and the open-run views read the whole
-- table, because no index matched them. ops.list_runs took 276 ms and
-- ops.get_queue_depth 133 ms at 1M finished runs; these two indexes serve them.

-- ops.list_runs and the console's history: newest first, any status.
create index runs_queued_at_idx on ops.runs (queued_at desc, run_id);

-- Runs not yet finished: the console's runs in flight and the
-- queue depth. runs_claimable_idx leaves out awaiting_approval, so these
-- queries could not use it.
create index runs_open_idx on ops.runs (queued_at desc, run_id)
  where status in ('awaiting_approval', 'queued', 'claimed', 'running');
