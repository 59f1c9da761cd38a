-- `scripts/bench scale`: the monitoring RPCs an operator's screens call, one per line.
select integration.outbox_stats();
select ops.console_overview();
select count(*) from ops.get_queue_depth();
select integration.list_dead_letters();
select count(*) from ops.get_trace('bench-scale-4242');
