-- `scripts/bench scale-work`: fills the job queue and the run table up to the
-- given totals (psql variables job_type, jobs_done, jobs_queued, runs_done,
-- runs_queued); each level adds only what the last one did not.
--
-- Finished jobs and runs are spread over the last 30 days, as a month of
-- history would be. The bulk rows skip the audit triggers (job_events,
-- run_events): they stand for history, and a trigger per row would make the
-- fill take hours; the measured calls write their audit rows as always.
set session_replication_role = replica;

insert into observability.jobs
  (source, job_type, payload, status, attempts, available_at, created_at, updated_at, finished_at, result, correlation_id)
select 'bench', :'job_type', '{"n": 1}', 'succeeded', 1, t, t, t, t + interval '1 second', '{"ok": true}',
       'bench-scale-job-' || n
from generate_series(1, greatest(:jobs_done - (select count(*) from observability.jobs
       where job_type = :'job_type' and status = 'succeeded'), 0)) n,
     lateral (select now() - interval '30 days' + n * (interval '30 days' / :jobs_done)) x(t);

insert into observability.jobs (source, job_type, payload, available_at, created_at, correlation_id)
select 'bench', :'job_type', '{"n": 1}', now() - interval '1 minute', now() - interval '1 minute', 'bench-scale-job-q' || n
from generate_series(1, greatest(:jobs_queued - (select count(*) from observability.jobs
       where job_type = :'job_type' and status = 'queued'), 0)) n;

insert into ops.projects (project_id, name, repository, protected_envs)
values ('bench-scale', 'bench scale', 'bench/scale', '{}')
on conflict (project_id) do nothing;

-- Finished runs over 100 environments; the queued ones 10 to an environment,
-- so a claim has to pass over the environments a younger run may not take.
insert into ops.runs
  (project_id, env, git_sha, git_ref, status, requested_by, correlation_id, queued_at, claimed_at, started_at,
   finished_at, updated_at, invocations)
select 'bench-scale', 'env' || (n % 100), substr(md5(n::text), 1, 40), 'refs/heads/main', 'success', 'bench',
       'bench-scale-run-' || n, t, t, t, t + interval '3 minutes', t + interval '3 minutes', 1
from generate_series(1, greatest(:runs_done - (select count(*) from ops.runs
       where project_id = 'bench-scale' and status = 'success'), 0)) n,
     lateral (select now() - interval '30 days' + n * (interval '30 days' / :runs_done)) x(t);

insert into ops.runs (project_id, env, git_sha, git_ref, status, requested_by, correlation_id, queued_at)
select 'bench-scale', 'env' || (n % 100), substr(md5(n::text), 1, 40), 'refs/heads/main', 'queued', 'bench',
       'bench-scale-run-q' || n, now() - interval '1 minute' + n * interval '1 millisecond'
from generate_series(1, greatest(:runs_queued - (select count(*) from ops.runs
       where project_id = 'bench-scale' and status = 'queued' and correlation_id like 'bench-scale-run-q%'), 0)) n;

set session_replication_role = origin;
