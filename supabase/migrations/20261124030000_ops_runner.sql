-- The ops runner (seed: ops-runner.md; master-pattern's `ops` schema): build
-- and deploy runs for projects, executed phase by phase by the `ops-runner`
-- edge function. Projects say what a run operates on (repository, the phases
-- and their providers, protected environments); runs move queued -> claimed
-- -> running -> success | failed | cancelled, or wait in awaiting_approval
-- first; every phase start and finish and every error is a run event;
-- artifacts, approvals and environment locks are rows.
--
-- A run outlives one invocation: each phase's progress (external ids such as
-- the GitHub run id included) is stored under a fenced lease, so a runner
-- that runs out of time yields the run and one that dies lets its lease
-- expire; either way the next runner resumes at the phase reached. Deploy
-- authority stays with CI: a run only requests builds and deployments from
-- the providers. The seed's parameter names are kept (p_project_id, p_env,
-- p_git_sha, p_git_ref, p_worker_id, p_run_id, p_status, p_metadata).

-- ------------------------------------------------------------------ helpers

-- The message of every refused state change (409): approving a run that is not
-- waiting for approval, cancelling a finished run. (A runner's write to a run
-- it no longer holds, finishing a finished run included, is stale_lease.)
create function ops.refuse_state(p_detail text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using errcode = 'PT409', message = 'invalid_state', detail = p_detail;
end;
$$;

-- Who is acting: an operator is named by their verified JWT (email, else
-- sub), whatever they pass; the service role (ChatOps, n8n, agents acting for
-- a person) names the person in p_given, else it is 'service_role'; a direct
-- connection (psql, pg_cron) is the database user. p_field: the caller's
-- parameter that p_given came from, named by a refusal's hint.
create function ops.actor(p_given text, p_field text default 'p_requested_by')
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
  v_claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  v_role text := current_setting('role');
begin
  if v_role = 'authenticated' then
    return coalesce(v_claims ->> 'email', v_claims ->> 'sub', 'authenticated');
  end if;
  if p_given is not null and length(p_given) not between 1 and 200 then
    perform observability.reject(p_field, format('%s must be 1 to 200 characters', p_field));
  end if;
  return coalesce(p_given, case when v_role = 'none' then session_user::text else v_role end);
end;
$$;

-- ----------------------------------------------------------------- settings

-- One row. lease_seconds: a runner's lease on a run, renewed by every progress
-- write (a dead runner's run is resumed this long after its last write).
-- max_runners: runners the database wakes at once. wake_window_seconds: a
-- wake-up counts as on its way this long (later ones are coalesced into it).
-- max_lease_expiries: runners that may die on one run before it is failed
-- (a run that kills every runner must not be retried forever).
create table ops.settings (
  singleton boolean primary key default true check (singleton),
  lease_seconds integer not null default 60 check (lease_seconds between 5 and 3600),
  max_runners integer not null default 4 check (max_runners between 1 and 64),
  wake_window_seconds integer not null default 15 check (wake_window_seconds between 1 and 300),
  max_lease_expiries integer not null default 3 check (max_lease_expiries between 1 and 100),
  updated_at timestamptz not null default now()
);
insert into ops.settings default values;

-- ----------------------------------------------------------------- projects

-- A project's phases, in order: objects with a unique `name` and the
-- `provider` that executes it, plus that provider's settings (validated by the
-- runner, which knows the providers). Custom phases are added here, not in
-- the runner's loop. ops.projects' CHECK calls it with the rights of whoever
-- writes the row, so the service role (which keeps projects) may execute it;
-- SECURITY DEFINER like every other function it may call.
create function ops.valid_phases(p_phases jsonb)
returns boolean
language sql
immutable
security definer
set search_path = ''
as $$
  select jsonb_typeof(p_phases) = 'array'
    and jsonb_array_length(p_phases) between 1 and 20
    and not exists (
      select 1 from jsonb_array_elements(p_phases) p(phase)
      where jsonb_typeof(p.phase) <> 'object'
         or coalesce(p.phase ->> 'name', '') !~ '^[a-z][a-z0-9_]{0,31}$'
         or coalesce(p.phase ->> 'provider', '') !~ '^[a-z][a-z0-9-]{0,39}$')
    and (select count(distinct p.phase ->> 'name') from jsonb_array_elements(p_phases) p(phase))
        = jsonb_array_length(p_phases)
$$;

create table ops.projects (
  project_id text primary key check (project_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  name text not null check (length(name) between 1 and 200),
  -- owner/name on GitHub: where builds are dispatched and deployments requested.
  repository text not null check (repository ~ '^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$'
    and repository !~ '(^|/)\.+(/|$)'),
  phases jsonb not null default '[
    {"name": "build", "provider": "github-actions", "workflow": "build-image.yml"},
    {"name": "deploy", "provider": "github-deployments"},
    {"name": "smoke", "provider": "http-checks", "checks": []},
    {"name": "artifacts", "provider": "github-artifacts"}
  ]' check (ops.valid_phases(phases)),
  -- Runs to these environments wait for an operator's approval.
  protected_envs text[] not null default '{production}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table ops.projects is
  'What a run operates on. Maintained by the service role (like integration.routes); holds no secret: provider tokens are the runner''s secrets.';

-- --------------------------------------------------------------------- runs

create table ops.runs (
  run_id text primary key default ('run-' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20))
    check (run_id ~ '^run-[a-z0-9-]{1,60}$'),
  project_id text not null references ops.projects (project_id),
  env text not null check (env ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  git_sha text not null check (git_sha ~ '^[0-9a-f]{7,40}$'),
  git_ref text not null check (length(git_ref) between 1 and 255 and git_ref !~ '[[:cntrl:]]'),
  -- deploy: build, deploy, smoke, artifacts; rollback: the build is an
  -- earlier run's (rollback_of), so that phase is done before it starts.
  kind text not null default 'deploy' check (kind in ('deploy', 'rollback')),
  rollback_of text references ops.runs (run_id),
  requeue_of text references ops.runs (run_id),
  status text not null check (status in
    ('awaiting_approval', 'queued', 'claimed', 'running', 'success', 'failed', 'cancelled')),
  -- The phase reached: the last one started.
  phase text,
  -- Per phase: {"started_at", "state"} while it runs (the provider's own
  -- record: dispatch id, GitHub run id, attempts), then {"done": true,
  -- "output", "finished_at"}. What a resumed run continues from.
  progress jsonb not null default '{}' check (jsonb_typeof(progress) = 'object'),
  claimed_by text,
  lease_token uuid,
  lease_expires_at timestamptz,
  -- Claims of this run: one per runner invocation that worked on it.
  invocations integer not null default 0,
  -- A yielded run in the middle of a wait (a build polled every minute) is
  -- not claimed before this.
  resume_at timestamptz,
  -- Runners that died holding it (their lease expired).
  lease_expiries integer not null default 0,
  cancel_requested_at timestamptz,
  cancel_requested_by text,
  requested_by text not null,
  correlation_id text not null check (length(correlation_id) between 1 and 128),
  idempotency_key text check (length(idempotency_key) between 1 and 200),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  error text,
  queued_at timestamptz not null default clock_timestamp(),
  claimed_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now(),
  check ((kind = 'rollback') = (rollback_of is not null)),
  check ((lease_token is null) = (lease_expires_at is null)),
  check ((status in ('success', 'failed', 'cancelled')) = (finished_at is not null)),
  unique (project_id, idempotency_key)
);

create index runs_claimable_idx on ops.runs (queued_at) where status in ('queued', 'claimed', 'running');
create index runs_project_env_idx on ops.runs (project_id, env, queued_at desc);
create index runs_correlation_id_idx on ops.runs (correlation_id);
create index runs_leased_idx on ops.runs (lease_expires_at) where lease_token is not null;

comment on table ops.runs is
  'Build/deploy runs. Written only through the ops RPCs; a run is never reset by hand: an expired lease makes it resumable.';

create table ops.run_events (
  id bigint generated always as identity primary key,
  run_id text not null references ops.runs (run_id),
  created_at timestamptz not null default clock_timestamp(),
  level text not null check (level in ('debug', 'info', 'warn', 'error')),
  message text not null check (length(message) between 1 and 2000),
  phase text,
  payload jsonb not null default '{}' check (jsonb_typeof(payload) = 'object'),
  -- Who wrote it: a runner's worker id, an operator, an agent.
  actor text,
  correlation_id text not null
);

create index run_events_run_id_idx on ops.run_events (run_id, id);
create index run_events_correlation_id_idx on ops.run_events (correlation_id);

comment on table ops.run_events is
  'Append-only lineage and audit trail of every run: phase starts and finishes, errors, approvals, cancels, agents'' tool calls.';

create function ops.refuse_run_event_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception using errcode = 'PT403', message = 'forbidden',
    detail = format('ops.run_events is append-only: %s is refused', tg_op);
end;
$$;

create trigger run_events_append_only
  before update or delete on ops.run_events
  for each row execute function ops.refuse_run_event_change();

create trigger run_events_no_truncate
  before truncate on ops.run_events
  for each statement execute function ops.refuse_run_event_change();

create table ops.artifacts (
  id bigint generated always as identity primary key,
  run_id text not null references ops.runs (run_id),
  phase text not null,
  -- image, build_log, sbom, deployment, evidence, or a provider's own kind.
  kind text not null check (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
  name text not null check (length(name) between 1 and 200),
  url text check (length(url) <= 2000),
  digest text check (length(digest) <= 200),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  -- A phase resumed after a crash records the same artifact again: one row.
  unique (run_id, kind, name)
);

create table ops.approvals (
  run_id text primary key references ops.runs (run_id),
  status text not null default 'pending' check (status in ('pending', 'approved', 'rejected', 'withdrawn')),
  requested_by text not null,
  requested_at timestamptz not null default now(),
  decided_by text,
  decided_at timestamptz,
  comment text check (length(comment) <= 2000),
  check ((status = 'pending') = (decided_at is null))
);

-- One row per (project, environment) that has had a run or a freeze. run_id:
-- the run that holds the environment from its claim to its end, so at most
-- one run deploys there at a time and runs deploy in queue order. frozen: an
-- operator's hold; queued runs wait (they are not failed) until unfrozen.
create table ops.environment_locks (
  project_id text not null references ops.projects (project_id),
  env text not null,
  run_id text references ops.runs (run_id),
  acquired_at timestamptz,
  frozen boolean not null default false,
  frozen_by text,
  frozen_reason text check (length(frozen_reason) <= 500),
  frozen_at timestamptz,
  unfrozen_by text,
  unfrozen_at timestamptz,
  updated_at timestamptz not null default now(),
  primary key (project_id, env)
);

-- The coalescing state of the database's wake-ups of the runner.
create table ops.runner_signal (
  singleton boolean primary key default true check (singleton),
  -- A wake-up was sent and its runner has not claimed yet: later ones are
  -- coalesced into it until then (or until this passes: a lost wake-up).
  wake_pending_until timestamptz,
  wakes_sent bigint not null default 0,
  wakes_coalesced bigint not null default 0,
  last_wake_at timestamptz,
  last_wake_reason text
);
insert into ops.runner_signal default values;

-- ------------------------------------------------------------------ waking

-- Runners holding a live lease: how many are at work.
create function ops.busy_runners()
returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select count(*)::integer from ops.runs r
  where r.lease_token is not null and r.lease_expires_at > now()
$$;

-- Whether some run is claimable now: queued in an environment that is free
-- and not frozen, or started and not leased (yielded, or its runner died).
create function ops.has_claimable_run()
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from ops.runs r
    where r.status in ('queued', 'claimed', 'running')
      and (r.lease_expires_at is null or r.lease_expires_at <= now())
      and (r.resume_at is null or r.resume_at <= now())
      and (r.status <> 'queued' or not exists (
        select 1 from ops.environment_locks l
        where l.project_id = r.project_id and l.env = r.env
          and (l.frozen or (l.run_id is not null and l.run_id <> r.run_id)))))
$$;

-- Wakes one runner through pg_net (after commit), unless one is already on
-- its way or max_runners are at work. Returns pg_net's request id, or null
-- when nothing was sent (coalesced, busy, or the runner is not registered:
-- edge.configure_function('ops-runner', url, token)).
create function ops.wake_runner(p_reason text)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settings ops.settings;
begin
  if not edge.is_configured('ops-runner') then
    return null;
  end if;
  select * into v_settings from ops.settings;
  if exists (select 1 from ops.runner_signal where wake_pending_until > clock_timestamp())
     or ops.busy_runners() >= v_settings.max_runners then
    update ops.runner_signal set wakes_coalesced = wakes_coalesced + 1;
    return null;
  end if;
  update ops.runner_signal set
    wake_pending_until = clock_timestamp() + make_interval(secs => v_settings.wake_window_seconds),
    wakes_sent = wakes_sent + 1,
    last_wake_at = clock_timestamp(),
    last_wake_reason = p_reason
  where wake_pending_until is null or wake_pending_until <= clock_timestamp();
  if not found then
    return null;
  end if;
  return edge.invoke('ops-runner', jsonb_build_object('reason', p_reason));
end;
$$;

-- The seed's trigger: a run that becomes queued (queue_run, an approval, a
-- requeue) wakes a runner, coalesced by wake_runner so a burst of queued runs
-- is one wake-up, not a storm.
create function ops.trigger_runner()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.status = 'queued' and (tg_op = 'INSERT' or old.status is distinct from 'queued') then
    perform ops.wake_runner('queued');
  end if;
  return null;
end;
$$;

create trigger runs_trigger_runner
  after insert or update of status on ops.runs
  for each row execute function ops.trigger_runner();

-- Wakes a runner when a run is claimable. pg_cron's safety net, every minute
-- (a lost wake-up, a run whose runner died and whose lease expired); and a
-- runner's handoff when its time budget ends with runs still waiting.
create function ops.wake_runner_if_due(p_reason text default 'cron')
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_reason is null or p_reason !~ '^[a-z][a-z0-9_]{0,31}$' then
    perform observability.reject('p_reason', 'p_reason must be 1 to 32 characters of a-z, 0-9 and _');
  end if;
  if not ops.has_claimable_run() then
    return null;
  end if;
  return ops.wake_runner(p_reason);
end;
$$;

-- ------------------------------------------------------------------- events

create function ops.record_event(
  p_run ops.runs,
  p_level text,
  p_message text,
  p_phase text default null,
  p_payload jsonb default '{}',
  p_actor text default null
)
returns bigint
language sql
security definer
set search_path = ''
as $$
  insert into ops.run_events (run_id, level, message, phase, payload, actor, correlation_id)
  values (p_run.run_id, p_level, left(p_message, 2000), p_phase, coalesce(p_payload, '{}'), p_actor,
          p_run.correlation_id)
  returning id
$$;

-- The seed's appendEvent: a line in a run's trail from outside the runner (an
-- agent's tool call, a ChatOps command). Returns the event id.
create function ops.append_run_event(
  p_run_id text,
  p_level text,
  p_message text,
  p_payload jsonb default '{}',
  p_phase text default null,
  p_actor text default null
)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
begin
  select * into v_run from ops.runs r where r.run_id = p_run_id;
  if not found then
    perform observability.reject('p_run_id', 'no run has this id');
  end if;
  if p_level is null or p_level not in ('debug', 'info', 'warn', 'error') then
    perform observability.reject('p_level', 'p_level must be debug, info, warn or error');
  end if;
  if p_message is null or length(p_message) not between 1 and 2000 then
    perform observability.reject('p_message', 'p_message must be 1 to 2000 characters');
  end if;
  if p_payload is not null and jsonb_typeof(p_payload) <> 'object' then
    perform observability.reject('p_payload', 'p_payload must be a JSON object');
  end if;
  if p_phase is not null and p_phase !~ '^[a-z][a-z0-9_]{0,31}$' then
    perform observability.reject('p_phase', 'p_phase must be a phase name such as build');
  end if;
  return ops.record_event(v_run, p_level, p_message, p_phase, p_payload, ops.actor(p_actor, 'p_actor'));
end;
$$;

-- ----------------------------------------------------------------- queueing

-- Checks the arguments every way of queueing shares; returns the project.
create function ops.project_for_run(p_project_id text, p_env text, p_git_sha text, p_git_ref text)
returns ops.projects
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_project ops.projects;
begin
  select * into v_project from ops.projects p where p.project_id = p_project_id;
  if not found then
    perform observability.reject('p_project_id', 'no project has this id');
  end if;
  if p_env is null or p_env !~ '^[a-z0-9][a-z0-9_-]{0,62}$' then
    perform observability.reject('p_env',
      'p_env must be 1 to 63 characters of a-z, 0-9, _ and -, such as dev, staging or production');
  end if;
  if p_git_sha is null or p_git_sha !~ '^[0-9a-f]{7,40}$' then
    perform observability.reject('p_git_sha', 'p_git_sha must be 7 to 40 lowercase hex digits');
  end if;
  if p_git_ref is null or length(p_git_ref) not between 1 and 255 or p_git_ref ~ '[[:cntrl:]]' then
    perform observability.reject('p_git_ref', 'p_git_ref must be 1 to 255 characters, such as refs/heads/main');
  end if;
  return v_project;
end;
$$;

-- Inserts a run (queued, or awaiting_approval in a protected environment) with
-- its approval request and first event. The trigger wakes a runner.
create function ops.insert_run(
  p_project ops.projects,
  p_env text,
  p_git_sha text,
  p_git_ref text,
  p_requested_by text,
  p_metadata jsonb,
  p_correlation_id text,
  p_idempotency_key text,
  p_kind text default 'deploy',
  p_rollback_of text default null,
  p_requeue_of text default null,
  p_progress jsonb default '{}'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
  v_protected boolean := p_env = any (p_project.protected_envs);
begin
  if p_metadata is not null and jsonb_typeof(p_metadata) <> 'object' then
    perform observability.reject('p_metadata', 'p_metadata must be a JSON object');
  end if;
  if p_correlation_id is not null and length(p_correlation_id) not between 1 and 128 then
    perform observability.reject('p_correlation_id', 'p_correlation_id must be 1 to 128 characters');
  end if;
  if p_idempotency_key is not null and length(p_idempotency_key) not between 1 and 200 then
    perform observability.reject('p_idempotency_key', 'p_idempotency_key must be 1 to 200 characters');
  end if;

  if p_idempotency_key is not null then
    select * into v_run from ops.runs r
    where r.project_id = p_project.project_id and r.idempotency_key = p_idempotency_key;
    if found then
      if v_run.env = p_env and v_run.git_sha = p_git_sha and v_run.git_ref = p_git_ref
         and v_run.kind = p_kind and v_run.rollback_of is not distinct from p_rollback_of then
        return jsonb_build_object('run_id', v_run.run_id, 'status', v_run.status,
          'correlation_id', v_run.correlation_id, 'approval_required', v_protected, 'duplicate', true);
      end if;
      raise exception using errcode = 'PT409', message = 'idempotency_conflict',
        detail = 'this idempotency key was already used for a different run';
    end if;
  end if;

  insert into ops.runs (project_id, env, git_sha, git_ref, kind, rollback_of, requeue_of, status, progress,
                        requested_by, correlation_id, idempotency_key, metadata)
  values (p_project.project_id, p_env, p_git_sha, p_git_ref, p_kind, p_rollback_of, p_requeue_of,
          case when v_protected then 'awaiting_approval' else 'queued' end, p_progress,
          p_requested_by, coalesce(p_correlation_id, gen_random_uuid()::text), p_idempotency_key,
          coalesce(p_metadata, '{}'))
  returning * into v_run;

  perform ops.record_event(v_run, 'info',
    case when p_kind = 'rollback' then format('Rollback to %s queued by %s', p_rollback_of, p_requested_by)
         else format('Run queued by %s', p_requested_by) end,
    null,
    jsonb_strip_nulls(jsonb_build_object('project_id', v_run.project_id, 'env', v_run.env,
      'git_sha', v_run.git_sha, 'git_ref', v_run.git_ref, 'kind', v_run.kind,
      'rollback_of', v_run.rollback_of, 'requeue_of', v_run.requeue_of)),
    p_requested_by);
  if v_protected then
    insert into ops.approvals (run_id, requested_by) values (v_run.run_id, p_requested_by);
    perform ops.record_event(v_run, 'info',
      format('Waiting for approval: %s is a protected environment', v_run.env), null, '{}', p_requested_by);
  end if;
  return jsonb_build_object('run_id', v_run.run_id, 'status', v_run.status,
    'correlation_id', v_run.correlation_id, 'approval_required', v_protected, 'duplicate', false);
end;
$$;

-- The seed's queue_run: requests a build and deploy of p_git_sha to p_env.
-- Operators (their JWT names them) and the service role (p_requested_by names
-- the person it acts for) may queue. With p_idempotency_key, a retry returns
-- the first run (duplicate: true). Returns {run_id, status, correlation_id,
-- approval_required, duplicate}.
create function ops.queue_run(
  p_project_id text,
  p_env text,
  p_git_sha text,
  p_git_ref text,
  p_requested_by text default null,
  p_metadata jsonb default '{}',
  p_correlation_id text default null,
  p_idempotency_key text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_project ops.projects;
begin
  perform ops.require_operator();
  v_project := ops.project_for_run(p_project_id, p_env, p_git_sha, p_git_ref);
  return ops.insert_run(v_project, p_env, p_git_sha, p_git_ref, ops.actor(p_requested_by), p_metadata,
    p_correlation_id, p_idempotency_key);
end;
$$;

-- Queues a rollback (the seed's "redeploy previous digest"): redeploys the
-- image an earlier successful run of the same project and environment built,
-- skipping the build. p_to_run_id names that run; by default it is the
-- successful run before the latest successful one. Protected environments
-- still need an approval. Returns what queue_run returns.
create function ops.queue_rollback(
  p_project_id text,
  p_env text,
  p_to_run_id text default null,
  p_requested_by text default null,
  p_correlation_id text default null,
  p_idempotency_key text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_project ops.projects;
  v_target ops.runs;
  v_build jsonb;
begin
  perform ops.require_operator();
  -- The sha and ref are checked again below with the target's own.
  v_project := ops.project_for_run(p_project_id, p_env, '0000000', 'refs/heads/main');
  if p_to_run_id is not null then
    select * into v_target from ops.runs r where r.run_id = p_to_run_id;
    if not found or v_target.project_id <> p_project_id or v_target.env is distinct from p_env then
      perform observability.reject('p_to_run_id', 'no run of this project and environment has this id');
    end if;
    if v_target.status <> 'success' then
      perform ops.refuse_state(format('only a successful run is rolled back to; %s is %s', v_target.run_id,
        v_target.status));
    end if;
  else
    select * into v_target from ops.runs r
    where r.project_id = p_project_id and r.env = p_env and r.status = 'success'
    order by r.finished_at desc
    offset 1 limit 1;
    if not found then
      perform ops.refuse_state(format('%s/%s has no earlier successful run to roll back to', p_project_id, p_env));
    end if;
  end if;
  v_build := v_target.progress -> 'build' -> 'output';
  if coalesce(v_build ->> 'image_digest', '') = '' then
    perform ops.refuse_state(format('run %s recorded no image digest to redeploy', v_target.run_id));
  end if;
  perform ops.project_for_run(p_project_id, p_env, v_target.git_sha, v_target.git_ref);
  return ops.insert_run(v_project, p_env, v_target.git_sha, v_target.git_ref, ops.actor(p_requested_by), '{}',
    p_correlation_id, p_idempotency_key, 'rollback', v_target.run_id, null,
    jsonb_build_object('build', jsonb_build_object('done', true, 'skipped', true,
      'output', v_build || jsonb_build_object('rollback_of', v_target.run_id), 'finished_at', now())));
end;
$$;

-- Queues a failed or cancelled run again as a new run (no automatic retry: a
-- person decides). It keeps the correlation id, so one trace shows both.
create function ops.requeue_run(p_run_id text, p_requested_by text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
  v_project ops.projects;
  v_progress jsonb := '{}';
begin
  perform ops.require_operator();
  select * into v_run from ops.runs r where r.run_id = p_run_id for update;
  if not found then
    perform observability.reject('p_run_id', 'no run has this id');
  end if;
  if v_run.status not in ('failed', 'cancelled') then
    perform ops.refuse_state(format('only a failed or cancelled run is requeued; this one is %s', v_run.status));
  end if;
  select * into v_project from ops.projects p where p.project_id = v_run.project_id;
  if v_run.kind = 'rollback' then
    v_progress := jsonb_build_object('build', v_run.progress -> 'build');
  end if;
  return ops.insert_run(v_project, v_run.env, v_run.git_sha, v_run.git_ref, ops.actor(p_requested_by),
    v_run.metadata, v_run.correlation_id, null, v_run.kind, v_run.rollback_of, v_run.run_id, v_progress);
end;
$$;

-- ---------------------------------------------------------------- approvals

create function ops.decide(p_run_id text, p_approve boolean, p_comment text, p_decided_by text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
  v_approval ops.approvals;
  v_actor text;
begin
  perform ops.require_operator();
  v_actor := ops.actor(p_decided_by, case when p_approve then 'p_approved_by' else 'p_rejected_by' end);
  if p_comment is not null and length(p_comment) > 2000 then
    perform observability.reject('p_comment', 'p_comment must be at most 2000 characters');
  end if;
  select * into v_run from ops.runs r where r.run_id = p_run_id for update;
  if not found then
    perform observability.reject('p_run_id', 'no run has this id');
  end if;
  select * into v_approval from ops.approvals a where a.run_id = p_run_id for update;
  if v_run.status <> 'awaiting_approval' or v_approval.status is distinct from 'pending' then
    perform ops.refuse_state(format('only a run awaiting approval is approved or rejected; this one is %s',
      v_run.status));
  end if;
  -- Four eyes: whoever requested a protected deploy does not also approve it.
  if v_actor = v_approval.requested_by then
    raise exception using errcode = 'PT403', message = 'forbidden',
      detail = 'a run is approved or rejected by someone other than whoever requested it';
  end if;
  update ops.approvals a set
    status = case when p_approve then 'approved' else 'rejected' end,
    decided_by = v_actor, decided_at = now(), comment = p_comment
  where a.run_id = p_run_id;
  update ops.runs r set
    status = case when p_approve then 'queued' else 'cancelled' end,
    finished_at = case when p_approve then null else now() end,
    error = case when p_approve then null else format('rejected by %s', v_actor) end,
    updated_at = now()
  where r.run_id = p_run_id
  returning * into v_run;
  perform ops.record_event(v_run, case when p_approve then 'info' else 'warn' end,
    format('%s by %s', case when p_approve then 'Approved' else 'Rejected' end, v_actor),
    null, jsonb_strip_nulls(jsonb_build_object('comment', p_comment)), v_actor);
  return jsonb_build_object('run_id', v_run.run_id, 'status', v_run.status, 'decided_by', v_actor);
end;
$$;

-- An operator (or the service role for a named person) lets a run into a
-- protected environment; it is queued and a runner is woken.
create function ops.approve_run(p_run_id text, p_comment text default null, p_approved_by text default null)
returns jsonb
language sql
security definer
set search_path = ''
as $$ select ops.decide(p_run_id, true, p_comment, p_approved_by) $$;

create function ops.reject_run(p_run_id text, p_comment text default null, p_rejected_by text default null)
returns jsonb
language sql
security definer
set search_path = ''
as $$ select ops.decide(p_run_id, false, p_comment, p_rejected_by) $$;

-- ---------------------------------------------------------- environment locks

-- Freezes an environment: its queued runs wait (a run already deploying
-- finishes). Idempotent; the reason is updated.
create function ops.lock_environment(
  p_project_id text,
  p_env text,
  p_reason text,
  p_locked_by text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_actor text;
begin
  perform ops.require_operator();
  v_actor := ops.actor(p_locked_by, 'p_locked_by');
  if not exists (select 1 from ops.projects p where p.project_id = p_project_id) then
    perform observability.reject('p_project_id', 'no project has this id');
  end if;
  if p_env is null or p_env !~ '^[a-z0-9][a-z0-9_-]{0,62}$' then
    perform observability.reject('p_env', 'p_env must be 1 to 63 characters of a-z, 0-9, _ and -');
  end if;
  if p_reason is null or length(p_reason) not between 1 and 500 then
    perform observability.reject('p_reason', 'p_reason must be 1 to 500 characters: say why it is frozen');
  end if;
  insert into ops.environment_locks as l (project_id, env, frozen, frozen_by, frozen_reason, frozen_at)
  values (p_project_id, p_env, true, v_actor, p_reason, now())
  on conflict (project_id, env) do update set
    frozen = true,
    frozen_by = case when l.frozen then l.frozen_by else excluded.frozen_by end,
    frozen_at = case when l.frozen then l.frozen_at else excluded.frozen_at end,
    frozen_reason = excluded.frozen_reason,
    updated_at = now();
  return jsonb_build_object('project_id', p_project_id, 'env', p_env, 'frozen', true, 'frozen_by',
    (select l.frozen_by from ops.environment_locks l where l.project_id = p_project_id and l.env = p_env));
end;
$$;

-- Unfreezes an environment and wakes a runner for the runs that waited.
create function ops.unlock_environment(p_project_id text, p_env text, p_unlocked_by text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_actor text;
begin
  perform ops.require_operator();
  v_actor := ops.actor(p_unlocked_by, 'p_unlocked_by');
  update ops.environment_locks l set
    frozen = false, unfrozen_by = v_actor, unfrozen_at = now(), updated_at = now()
  where l.project_id = p_project_id and l.env = p_env and l.frozen;
  if not found then
    perform ops.refuse_state(format('%s/%s is not frozen', p_project_id, p_env));
  end if;
  perform ops.wake_runner('unfrozen');
  return jsonb_build_object('project_id', p_project_id, 'env', p_env, 'frozen', false, 'unfrozen_by', v_actor);
end;
$$;

-- ---------------------------------------------------------------- the runner

-- Claims the next run for a runner (the seed's claim_next_run): the oldest
-- queued run whose environment is free and not frozen, or a started run
-- nobody holds (yielded at the end of an invocation, or its runner died and
-- the lease expired), which resumes at the phase it reached. FOR UPDATE SKIP
-- LOCKED, so concurrent runners never take the same run; each claim gets a
-- fresh lease_token that every later write must present. Returns the run, its
-- phases and progress, or no row when nothing is claimable.
create function ops.claim_next_run(p_worker_id text, p_lease_seconds integer default null)
returns setof jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settings ops.settings;
  v_lease_seconds integer;
  v_candidate ops.runs;
  v_run ops.runs;
  v_lock ops.environment_locks;
  v_expired boolean;
  v_phases jsonb;
begin
  if p_worker_id is null or length(p_worker_id) not between 1 and 100 then
    perform observability.reject('p_worker_id', 'p_worker_id must be 1 to 100 characters');
  end if;
  select * into v_settings from ops.settings;
  v_lease_seconds := coalesce(p_lease_seconds, v_settings.lease_seconds);
  if v_lease_seconds not between 5 and 3600 then
    perform observability.reject('p_lease_seconds', 'p_lease_seconds must be 5 to 3600');
  end if;

  for v_candidate in
    select * from ops.runs r
    where r.status in ('queued', 'claimed', 'running')
      and (r.lease_expires_at is null or r.lease_expires_at <= now())
      and (r.resume_at is null or r.resume_at <= now())
      and (r.status <> 'queued' or not exists (
        select 1 from ops.environment_locks l
        where l.project_id = r.project_id and l.env = r.env
          and (l.frozen or (l.run_id is not null and l.run_id <> r.run_id))))
      -- An environment's runs go in queue order: while an older queued run
      -- waits (or a concurrent claimer holds its row, which SKIP LOCKED
      -- passes over), a younger one does not take the environment.
      and (r.status <> 'queued' or not exists (
        select 1 from ops.runs o
        where o.project_id = r.project_id and o.env = r.env and o.status = 'queued'
          and (o.queued_at, o.run_id) < (r.queued_at, r.run_id)))
    order by r.queued_at, r.run_id
    limit 20
    for update skip locked
  loop
    if v_candidate.status = 'queued' then
      -- Take the environment. SKIP LOCKED again: a concurrent claimer looking
      -- at the same environment has it; never wait (two claimers each
      -- holding one environment row would deadlock).
      insert into ops.environment_locks (project_id, env) values (v_candidate.project_id, v_candidate.env)
      on conflict do nothing;
      select * into v_lock from ops.environment_locks l
      where l.project_id = v_candidate.project_id and l.env = v_candidate.env
      for update skip locked;
      if not found or v_lock.frozen or (v_lock.run_id is not null and v_lock.run_id <> v_candidate.run_id) then
        continue;
      end if;
      update ops.environment_locks l set run_id = v_candidate.run_id, acquired_at = now(), updated_at = now()
      where l.project_id = v_candidate.project_id and l.env = v_candidate.env;
    end if;

    v_expired := v_candidate.lease_token is not null;
    if v_expired and v_candidate.lease_expiries + 1 >= v_settings.max_lease_expiries then
      -- Every runner that took this run died with it: stop resuming it.
      update ops.runs r set lease_expiries = r.lease_expiries + 1, lease_token = null, lease_expires_at = null
      where r.run_id = v_candidate.run_id
      returning * into v_run;
      perform ops.end_run(v_run, 'failed',
        format('%s runners died working on this run (the last was %s); it is not resumed again',
          v_run.lease_expiries, v_candidate.claimed_by),
        '{}', v_candidate.claimed_by);
      continue;
    end if;

    update ops.runs r set
      status = case when r.status = 'queued' then 'claimed' else r.status end,
      claimed_by = p_worker_id,
      lease_token = gen_random_uuid(),
      lease_expires_at = now() + make_interval(secs => v_lease_seconds),
      claimed_at = coalesce(r.claimed_at, now()),
      invocations = r.invocations + 1,
      lease_expiries = r.lease_expiries + case when v_expired then 1 else 0 end,
      resume_at = null,
      updated_at = now()
    where r.run_id = v_candidate.run_id
    returning * into v_run;

    if v_candidate.status = 'queued' then
      perform ops.record_event(v_run, 'info', format('Claimed by %s', p_worker_id), null, '{}', p_worker_id);
    elsif v_expired then
      perform ops.record_event(v_run, 'warn',
        format('Runner %s stopped without releasing the run (its lease expired); %s resumes it at %s',
          v_candidate.claimed_by, p_worker_id, coalesce(v_run.phase, 'the start')),
        v_run.phase, jsonb_build_object('previous_worker', v_candidate.claimed_by), p_worker_id);
    end if;

    -- The wake-up that brought a runner here is answered; if more runs are
    -- waiting, wake another runner (up to max_runners).
    update ops.runner_signal set wake_pending_until = null where wake_pending_until is not null;
    if ops.has_claimable_run() then
      perform ops.wake_runner('fanout');
    end if;

    select p.phases into v_phases from ops.projects p where p.project_id = v_run.project_id;
    return next jsonb_build_object(
      'run_id', v_run.run_id, 'lease_token', v_run.lease_token, 'lease_expires_at', v_run.lease_expires_at,
      'project_id', v_run.project_id, 'repository',
      (select p.repository from ops.projects p where p.project_id = v_run.project_id),
      'env', v_run.env, 'git_sha', v_run.git_sha, 'git_ref', v_run.git_ref, 'kind', v_run.kind,
      'rollback_of', v_run.rollback_of, 'status', v_run.status, 'phase', v_run.phase,
      'phases', v_phases, 'progress', v_run.progress, 'invocation', v_run.invocations,
      'resumed', v_candidate.status <> 'queued', 'correlation_id', v_run.correlation_id,
      'metadata', v_run.metadata);
    return;
  end loop;
  -- Nothing to claim: the runner a wake-up brought has looked, so the next
  -- reason to wake one (an unfreeze, an approval) is not coalesced into it.
  -- A run queued while this claim looked may have been coalesced into that
  -- wake-up (its trigger held runner_signal, this update waited for it):
  -- looked at again now, it gets a runner.
  update ops.runner_signal set wake_pending_until = null where wake_pending_until is not null;
  if ops.has_claimable_run() then
    perform ops.wake_runner('fanout');
  end if;
end;
$$;

-- Locks a leased run for a runner's write, or refuses: stale_lease when the
-- token is not the run's current lease (it expired and another runner took
-- the run, or the run was finished or cancelled meanwhile).
create function ops.leased_run(p_run_id text, p_lease_token uuid)
returns ops.runs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
begin
  if p_lease_token is null then
    perform observability.reject('p_lease_token', 'p_lease_token is required');
  end if;
  select * into v_run from ops.runs r where r.run_id = p_run_id for update;
  if not found then
    perform observability.reject('p_run_id', 'no run has this id');
  end if;
  if v_run.lease_token is distinct from p_lease_token then
    perform observability.refuse_stale(format(
      'the run is not leased with this token (it is %s; the lease expired and was taken over, or the run ended)',
      v_run.status));
  end if;
  return v_run;
end;
$$;

-- What every runner write answers: the renewed lease and whether an operator
-- asked for the run to stop.
create function ops.renew_lease(p_run ops.runs, p_lease_seconds integer)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_expires timestamptz;
begin
  if p_lease_seconds is not null and p_lease_seconds not between 5 and 3600 then
    perform observability.reject('p_lease_seconds', 'p_lease_seconds must be 5 to 3600');
  end if;
  update ops.runs r set
    lease_expires_at = now() + make_interval(secs => coalesce(p_lease_seconds,
      (select s.lease_seconds from ops.settings s))),
    updated_at = now()
  where r.run_id = p_run.run_id
  returning r.lease_expires_at into v_expires;
  return jsonb_build_object('lease_expires_at', v_expires, 'cancel_requested', p_run.cancel_requested_at is not null);
end;
$$;

-- Starts a phase: the run is running, the phase reached moves, and a
-- "Starting <phase>" event is written once (a resumed runner calling it again
-- for a started phase changes nothing).
create function ops.start_phase(p_run_id text, p_lease_token uuid, p_phase text, p_lease_seconds integer default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
begin
  v_run := ops.leased_run(p_run_id, p_lease_token);
  if p_phase is null or p_phase !~ '^[a-z][a-z0-9_]{0,31}$' then
    perform observability.reject('p_phase', 'p_phase must be a phase name such as build');
  end if;
  if not (v_run.progress ? p_phase) then
    update ops.runs r set
      status = 'running',
      phase = p_phase,
      started_at = coalesce(r.started_at, clock_timestamp()),
      progress = r.progress || jsonb_build_object(p_phase,
        jsonb_build_object('started_at', clock_timestamp(), 'state', '{}'::jsonb)),
      updated_at = now()
    where r.run_id = p_run_id
    returning * into v_run;
    perform ops.record_event(v_run, 'info', format('Starting %s', p_phase), p_phase, '{}', v_run.claimed_by);
  end if;
  return ops.renew_lease(v_run, p_lease_seconds);
end;
$$;

-- Stores a phase's progress (the provider's state) before and after each
-- external call, renewing the lease: what a resumed runner continues from.
create function ops.save_progress(
  p_run_id text,
  p_lease_token uuid,
  p_phase text,
  p_state jsonb,
  p_lease_seconds integer default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
begin
  v_run := ops.leased_run(p_run_id, p_lease_token);
  if p_phase is null or p_phase !~ '^[a-z][a-z0-9_]{0,31}$' then
    perform observability.reject('p_phase', 'p_phase must be a phase name such as build');
  end if;
  if not (v_run.progress ? p_phase) or coalesce((v_run.progress -> p_phase ->> 'done')::boolean, false) then
    perform ops.refuse_state(format('phase %s is not in progress', p_phase));
  end if;
  if p_state is null or jsonb_typeof(p_state) <> 'object' then
    perform observability.reject('p_state', 'p_state must be a JSON object');
  end if;
  update ops.runs r set
    progress = jsonb_set(r.progress, array[p_phase, 'state'], p_state),
    updated_at = now()
  where r.run_id = p_run_id
  returning * into v_run;
  return ops.renew_lease(v_run, p_lease_seconds);
end;
$$;

-- Renews the lease while a runner waits on a provider.
create function ops.heartbeat_run(p_run_id text, p_lease_token uuid, p_lease_seconds integer default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  return ops.renew_lease(ops.leased_run(p_run_id, p_lease_token), p_lease_seconds);
end;
$$;

-- Completes a phase with its output (what later phases read: the image
-- digest, the environment URL) and the artifacts it produced
-- ([{kind, name, url, digest, metadata}]; recording one again updates it).
-- Writes the "Completed <phase>" event.
create function ops.complete_phase(
  p_run_id text,
  p_lease_token uuid,
  p_phase text,
  p_output jsonb default '{}',
  p_artifacts jsonb default '[]',
  p_lease_seconds integer default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
  v_started timestamptz;
begin
  v_run := ops.leased_run(p_run_id, p_lease_token);
  if p_phase is null or p_phase !~ '^[a-z][a-z0-9_]{0,31}$' then
    perform observability.reject('p_phase', 'p_phase must be a phase name such as build');
  end if;
  if not (v_run.progress ? p_phase) or coalesce((v_run.progress -> p_phase ->> 'done')::boolean, false) then
    perform ops.refuse_state(format('phase %s is not in progress', p_phase));
  end if;
  if p_output is null or jsonb_typeof(p_output) <> 'object' then
    perform observability.reject('p_output', 'p_output must be a JSON object');
  end if;
  if p_artifacts is null or jsonb_typeof(p_artifacts) <> 'array' or exists (
       select 1 from jsonb_array_elements(p_artifacts) a(item)
       where jsonb_typeof(a.item) <> 'object'
          or coalesce(a.item ->> 'kind', '') !~ '^[a-z][a-z0-9_]{0,31}$'
          or length(coalesce(a.item ->> 'name', '')) not between 1 and 200
          or length(a.item ->> 'url') > 2000
          or length(a.item ->> 'digest') > 200
          or (a.item ? 'metadata' and jsonb_typeof(a.item -> 'metadata') <> 'object')) then
    perform observability.reject('p_artifacts',
      'p_artifacts must be an array of {kind, name, url?, digest?, metadata?} objects');
  end if;
  v_started := (v_run.progress -> p_phase ->> 'started_at')::timestamptz;
  update ops.runs r set
    progress = jsonb_set(r.progress, array[p_phase], jsonb_build_object('done', true, 'started_at', v_started,
      'finished_at', clock_timestamp(), 'output', p_output)),
    updated_at = now()
  where r.run_id = p_run_id
  returning * into v_run;
  -- The same artifact twice in one call is recorded once, as last given (one
  -- INSERT .. ON CONFLICT cannot update a row twice).
  insert into ops.artifacts as t (run_id, phase, kind, name, url, digest, metadata)
  select distinct on (a.item ->> 'kind', a.item ->> 'name')
         p_run_id, p_phase, a.item ->> 'kind', a.item ->> 'name', a.item ->> 'url', a.item ->> 'digest',
         coalesce(a.item -> 'metadata', '{}')
  from jsonb_array_elements(p_artifacts) with ordinality a(item, ord)
  order by a.item ->> 'kind', a.item ->> 'name', a.ord desc
  on conflict (run_id, kind, name) do update set
    url = excluded.url, digest = excluded.digest, metadata = excluded.metadata, phase = excluded.phase;
  perform ops.record_event(v_run, 'info', format('Completed %s', p_phase), p_phase,
    jsonb_build_object('duration_ms', round(extract(epoch from clock_timestamp() - v_started) * 1000),
      'output', p_output, 'artifacts', jsonb_array_length(p_artifacts)),
    v_run.claimed_by);
  return ops.renew_lease(v_run, p_lease_seconds);
end;
$$;

-- Ends an invocation's work on a run that is not finished (its time budget is
-- spent): the lease is released and a runner is woken for it (a handoff). In
-- the middle of a wait, p_resume_in_ms keeps runners away until the wait is
-- over (pg_cron's per-minute wake-up then brings one), instead of waking one
-- only to wait again.
create function ops.yield_run(p_run_id text, p_lease_token uuid, p_resume_in_ms integer default 0)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
begin
  v_run := ops.leased_run(p_run_id, p_lease_token);
  if p_resume_in_ms is null or p_resume_in_ms not between 0 and 86400000 then
    perform observability.reject('p_resume_in_ms', 'p_resume_in_ms must be 0 to 86400000');
  end if;
  update ops.runs r set lease_token = null, lease_expires_at = null, updated_at = now(),
    resume_at = case when p_resume_in_ms > 0 then clock_timestamp() + make_interval(secs => p_resume_in_ms / 1000.0) end
  where r.run_id = p_run_id;
  return jsonb_build_object('run_id', p_run_id,
    'woken', p_resume_in_ms = 0 and ops.wake_runner('handoff') is not null);
end;
$$;

-- The one way a run ends: status and finish time, the environment released,
-- the last event, and for a failure an alert through the control plane.
create function ops.end_run(p_run ops.runs, p_status text, p_error text, p_metadata jsonb, p_actor text)
returns ops.runs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
begin
  update ops.runs r set
    status = p_status,
    finished_at = clock_timestamp(),
    error = case when p_status = 'success' then null else coalesce(p_error, r.error) end,
    metadata = r.metadata || coalesce(p_metadata, '{}'),
    lease_token = null,
    lease_expires_at = null,
    updated_at = now()
  where r.run_id = p_run.run_id
  returning * into v_run;
  update ops.environment_locks l set run_id = null, acquired_at = null, updated_at = now()
  where l.project_id = v_run.project_id and l.env = v_run.env and l.run_id = v_run.run_id;
  update ops.approvals a set status = 'withdrawn', decided_by = p_actor, decided_at = now()
  where a.run_id = v_run.run_id and a.status = 'pending';
  perform ops.record_event(v_run, case p_status when 'success' then 'info' when 'failed' then 'error' else 'warn' end,
    case p_status
      when 'success' then 'Run succeeded'
      when 'failed' then format('Run failed%s: %s', coalesce(' at ' || v_run.phase, ''), coalesce(p_error, 'no reason given'))
      else format('Run cancelled: %s', coalesce(p_error, 'no reason given')) end,
    v_run.phase, jsonb_strip_nulls(jsonb_build_object('metadata', nullif(coalesce(p_metadata, '{}'), '{}'::jsonb))),
    p_actor);
  if p_status = 'failed' then
    -- One alert per failed run (its subject is the run): each is someone's
    -- deploy, not a repeat of one condition to be grouped.
    perform integration.raise_alert('run_failed', v_run.run_id,
      format('Run %s of %s to %s failed%s: %s', v_run.run_id, v_run.project_id, v_run.env,
        coalesce(' at ' || v_run.phase, ''), left(coalesce(p_error, 'no reason given'), 1500)),
      jsonb_strip_nulls(jsonb_build_object('run_id', v_run.run_id, 'project_id', v_run.project_id,
        'env', v_run.env, 'phase', v_run.phase, 'git_sha', v_run.git_sha, 'error', p_error)),
      v_run.correlation_id);
  end if;
  -- No wake-up here: the runner that ended the run claims the next one
  -- (a run that waited for this environment included) while it has time,
  -- and hands off (wake_runner_if_due) when it has none.
  return v_run;
end;
$$;

-- The seed's finish_run. A leased run is finished only with its lease token
-- (stale_lease otherwise); a run nobody holds may be finished without one.
-- success needs every phase done; failed raises alert.run_failed. p_metadata
-- is merged into the run's metadata. Returns {run_id, status}.
create function ops.finish_run(
  p_run_id text,
  p_status text,
  p_metadata jsonb default '{}',
  p_lease_token uuid default null,
  p_error text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
  v_missing text;
begin
  if p_status is null or p_status not in ('success', 'failed', 'cancelled') then
    perform observability.reject('p_status', 'p_status must be success, failed or cancelled');
  end if;
  if p_metadata is not null and jsonb_typeof(p_metadata) <> 'object' then
    perform observability.reject('p_metadata', 'p_metadata must be a JSON object');
  end if;
  if p_error is not null and length(p_error) > 4000 then
    perform observability.reject('p_error', 'p_error must be at most 4000 characters');
  end if;
  select * into v_run from ops.runs r where r.run_id = p_run_id for update;
  if not found then
    perform observability.reject('p_run_id', 'no run has this id');
  end if;
  if v_run.status in ('success', 'failed', 'cancelled') then
    perform observability.refuse_stale(format('the run already ended: %s', v_run.status));
  end if;
  if v_run.lease_expires_at > now() or p_lease_token is not null then
    if p_lease_token is null then
      perform observability.refuse_stale(format('the run is leased by %s: it is finished with that lease token',
        v_run.claimed_by));
    end if;
    v_run := ops.leased_run(p_run_id, p_lease_token);
  end if;
  if p_status = 'success' then
    select string_agg(p.phase ->> 'name', ', ') into v_missing
    from ops.projects pr cross join lateral jsonb_array_elements(pr.phases) p(phase)
    where pr.project_id = v_run.project_id
      and not coalesce((v_run.progress -> (p.phase ->> 'name') ->> 'done')::boolean, false);
    if v_missing is not null then
      perform ops.refuse_state(format('a run succeeds when every phase is done; not done: %s', v_missing));
    end if;
  end if;
  v_run := ops.end_run(v_run, p_status, p_error, p_metadata, coalesce(v_run.claimed_by, ops.actor(null)));
  -- Finished by someone other than its runner (which goes on to the next
  -- run itself): a run waiting for this environment gets a runner now.
  if p_lease_token is null and ops.has_claimable_run() then
    perform ops.wake_runner('released');
  end if;
  return jsonb_build_object('run_id', v_run.run_id, 'status', v_run.status);
end;
$$;

-- Cancels a run. Waiting (awaiting_approval, queued): cancelled now. Started:
-- the cancel is requested, and a runner stops the provider's work at its next
-- write (every write answers cancel_requested) and finishes the run as
-- cancelled. Returns {run_id, status, cancel_requested}.
create function ops.cancel_run(p_run_id text, p_reason text, p_requested_by text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run ops.runs;
  v_actor text;
begin
  perform ops.require_operator();
  v_actor := ops.actor(p_requested_by);
  if p_reason is null or length(p_reason) not between 1 and 500 then
    perform observability.reject('p_reason', 'p_reason must be 1 to 500 characters');
  end if;
  select * into v_run from ops.runs r where r.run_id = p_run_id for update;
  if not found then
    perform observability.reject('p_run_id', 'no run has this id');
  end if;
  if v_run.status in ('success', 'failed', 'cancelled') then
    perform ops.refuse_state(format('the run already ended: %s', v_run.status));
  end if;
  -- A started run may have work under way at a provider (a build): a runner
  -- stops that and finishes the run, the holder at its next write, or one
  -- woken for it when nobody holds the run.
  if v_run.status in ('claimed', 'running') then
    -- Asked again before the runner got to it: still one request.
    if v_run.cancel_requested_at is null then
      update ops.runs r set cancel_requested_at = now(), cancel_requested_by = v_actor, updated_at = now()
      where r.run_id = p_run_id;
      perform ops.record_event(v_run, 'warn', format('Cancel requested by %s: %s', v_actor, p_reason),
        v_run.phase, '{}', v_actor);
    end if;
    if v_run.lease_expires_at is null or v_run.lease_expires_at <= now() then
      perform ops.wake_runner('cancel');
    end if;
    return jsonb_build_object('run_id', p_run_id, 'status', v_run.status, 'cancel_requested', true);
  end if;
  update ops.runs r set cancel_requested_at = now(), cancel_requested_by = v_actor where r.run_id = p_run_id;
  v_run := ops.end_run(v_run, 'cancelled', format('cancelled by %s: %s', v_actor, p_reason), '{}', v_actor);
  return jsonb_build_object('run_id', p_run_id, 'status', v_run.status, 'cancel_requested', false);
end;
$$;

-- ------------------------------------------------------------------- traces

-- Runs join the trace: each run's queueing, then its events (phases, errors,
-- approvals) under the run's correlation id.
create or replace view ops.trace_rows with (security_invoker = true) as
select l.created_at as at, 'integration.event_log'::text as source, 'event.received'::text as kind,
       l.event_id::text as subject_id,
       jsonb_build_object('event_type', l.event_type, 'source', l.source, 'aggregate_type', l.aggregate_type,
         'aggregate_id', l.aggregate_id, 'idempotency_key', l.idempotency_key, 'scheme', l.scheme) as detail,
       l.correlation_id, 1 as source_rank, l.id as seq
from integration.event_log l
union all
select o.created_at, 'integration.outbox', 'outbox.queued', o.id::text,
       jsonb_build_object('event_type', o.event_type, 'source', o.source, 'aggregate_type', o.aggregate_type,
         'aggregate_id', o.aggregate_id, 'status', o.status, 'attempts', o.attempts),
       o.correlation_id, 2, 0::bigint
from integration.outbox o
union all
select j.created_at, 'observability.jobs', 'job.enqueued', j.id::text,
       jsonb_strip_nulls(jsonb_build_object('job_type', j.job_type, 'source', j.source, 'priority', j.priority,
         'max_attempts', j.max_attempts, 'idempotency_key', j.idempotency_key, 'status', j.status)),
       j.correlation_id, 3, 0::bigint
from observability.jobs j
union all
select e.at, 'observability.job_events', 'job.' || e.to_status, e.job_id::text,
       jsonb_strip_nulls(jsonb_build_object('from', e.from_status, 'to', e.to_status, 'attempt', e.attempt,
         'worker', e.worker)) || e.detail,
       e.correlation_id, 4, e.id
from observability.job_events e
where e.from_status is not null
union all
select r.finished_at, 'observability.job_runs', 'job.run_' || r.outcome, r.job_id::text,
       jsonb_strip_nulls(jsonb_build_object('attempt', r.attempt, 'worker', r.worker, 'outcome', r.outcome,
         'started_at', r.started_at,
         'duration_ms', round(extract(epoch from r.finished_at - r.started_at) * 1000, 3),
         'result', r.result, 'metrics', r.metrics, 'error', r.error)),
       j.correlation_id, 5, r.id
from observability.job_runs r
join observability.jobs j on j.id = r.job_id
where r.finished_at is not null
union all
select (a.value ->> 'at')::timestamptz, 'integration.outbox', 'outbox.attempt_failed', o.id::text,
       jsonb_build_object('event_type', o.event_type, 'attempt', a.value -> 'attempt', 'worker', a.value -> 'worker',
         'error', a.value -> 'error'),
       o.correlation_id, 6, a.ordinality
from integration.outbox o
cross join lateral jsonb_array_elements(o.error_history) with ordinality as a(value, ordinality)
union all
select o.completed_at, 'integration.outbox', 'outbox.delivered', o.id::text,
       jsonb_build_object('event_type', o.event_type, 'attempts', o.attempts),
       o.correlation_id, 7, 0::bigint
from integration.outbox o
where o.completed_at is not null
union all
select o.dead_at, 'integration.outbox', 'outbox.dead', o.id::text,
       jsonb_build_object('event_type', o.event_type, 'attempts', o.attempts, 'error', o.last_error),
       o.correlation_id, 7, 0::bigint
from integration.outbox o
where o.dead_at is not null
union all
select h.checked_at, 'observability.service_health', 'health.' || h.status, h.service_id::text,
       jsonb_strip_nulls(jsonb_build_object('service', s.name, 'status', h.status,
         'response_time_ms', h.response_time_ms, 'http_status', h.http_status, 'error', h.error)),
       h.correlation_id, 8, h.id
from observability.service_health h
join observability.services s on s.id = h.service_id
union all
select r.queued_at, 'ops.runs', 'run.' || r.kind, r.run_id,
       jsonb_strip_nulls(jsonb_build_object('project_id', r.project_id, 'env', r.env, 'git_sha', r.git_sha,
         'git_ref', r.git_ref, 'status', r.status, 'requested_by', r.requested_by, 'rollback_of', r.rollback_of,
         'requeue_of', r.requeue_of)),
       r.correlation_id, 9, 0::bigint
from ops.runs r
union all
select e.created_at, 'ops.run_events', 'run.event.' || e.level, e.run_id,
       jsonb_strip_nulls(jsonb_build_object('message', e.message, 'phase', e.phase, 'actor', e.actor,
         'payload', nullif(e.payload, '{}'::jsonb))),
       e.correlation_id, 10, e.id
from ops.run_events e;

-- Queue depth gains the runs that wait or work, per project/environment.
create or replace function ops.get_queue_depth()
returns table (queue text, job_type text, status text, depth bigint, oldest_at timestamptz,
               oldest_age_seconds bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform ops.require_operator();
  return query
  select d.queue, d.job_type, d.status, d.depth, d.oldest_at,
         extract(epoch from now() - d.oldest_at)::bigint
  from (
    select 'integration.outbox'::text as queue, null::text as job_type, 'pending'::text as status,
           count(*) as depth, min(o.created_at) as oldest_at
    from integration.outbox o where o.status = 'pending' having count(*) > 0
    union all
    select 'integration.outbox', null, 'processing', count(*), min(o.created_at)
    from integration.outbox o where o.status = 'processing' having count(*) > 0
    union all
    select 'integration.outbox', null, 'failed', count(*), min(o.created_at)
    from integration.outbox o where o.status = 'failed' having count(*) > 0
    union all
    select 'observability.jobs', j.job_type, j.status, count(*), min(j.created_at)
    from observability.jobs j
    where j.status in ('queued', 'running', 'failed', 'dead')
    group by j.job_type, j.status
    union all
    -- job_type holds project/environment for runs.
    select 'ops.runs', r.project_id || '/' || r.env, r.status, count(*), min(r.queued_at)
    from ops.runs r
    where r.status in ('awaiting_approval', 'queued', 'claimed', 'running')
    group by r.project_id, r.env, r.status
  ) d
  order by d.queue, d.job_type nulls first, d.status;
end;
$$;

-- --------------------------------------------------------------- privileges

alter table ops.settings enable row level security;
alter table ops.projects enable row level security;
alter table ops.runs enable row level security;
alter table ops.run_events enable row level security;
alter table ops.artifacts enable row level security;
alter table ops.approvals enable row level security;
alter table ops.environment_locks enable row level security;
alter table ops.runner_signal enable row level security;

create policy settings_operator_read on ops.settings
  for select to authenticated using ((select ops.is_operator()));
create policy projects_operator_read on ops.projects
  for select to authenticated using ((select ops.is_operator()));
create policy runs_operator_read on ops.runs
  for select to authenticated using ((select ops.is_operator()));
create policy run_events_operator_read on ops.run_events
  for select to authenticated using ((select ops.is_operator()));
create policy artifacts_operator_read on ops.artifacts
  for select to authenticated using ((select ops.is_operator()));
create policy approvals_operator_read on ops.approvals
  for select to authenticated using ((select ops.is_operator()));
create policy environment_locks_operator_read on ops.environment_locks
  for select to authenticated using ((select ops.is_operator()));
create policy runner_signal_operator_read on ops.runner_signal
  for select to authenticated using ((select ops.is_operator()));

revoke all on all tables in schema ops from public, anon, authenticated, service_role;
grant select on all tables in schema ops to authenticated, service_role;
-- Projects are configuration, kept by the service role like integration.routes.
grant insert, update, delete on ops.projects to service_role;
grant update on ops.settings to service_role;

revoke execute on all functions in schema ops from public, anon, authenticated, service_role;
grant execute on function ops.is_operator() to authenticated, service_role;
-- Evaluated by ops.projects' CHECK on the service role's inserts and updates.
grant execute on function ops.valid_phases(jsonb) to service_role;
grant execute on function ops.get_queue_depth() to authenticated, service_role;
grant execute on function ops.get_trace(text) to authenticated, service_role;
-- Requests and decisions: operators (the console) and the service role (ChatOps, agents).
grant execute on function ops.queue_run(text, text, text, text, text, jsonb, text, text) to authenticated, service_role;
grant execute on function ops.queue_rollback(text, text, text, text, text, text) to authenticated, service_role;
grant execute on function ops.requeue_run(text, text) to authenticated, service_role;
grant execute on function ops.approve_run(text, text, text) to authenticated, service_role;
grant execute on function ops.reject_run(text, text, text) to authenticated, service_role;
grant execute on function ops.cancel_run(text, text, text) to authenticated, service_role;
grant execute on function ops.lock_environment(text, text, text, text) to authenticated, service_role;
grant execute on function ops.unlock_environment(text, text, text) to authenticated, service_role;
-- The runner's calls and the audit trail: the service role only.
grant execute on function ops.append_run_event(text, text, text, jsonb, text, text) to service_role;
grant execute on function ops.claim_next_run(text, integer) to service_role;
grant execute on function ops.start_phase(text, uuid, text, integer) to service_role;
grant execute on function ops.save_progress(text, uuid, text, jsonb, integer) to service_role;
grant execute on function ops.heartbeat_run(text, uuid, integer) to service_role;
grant execute on function ops.complete_phase(text, uuid, text, jsonb, jsonb, integer) to service_role;
grant execute on function ops.yield_run(text, uuid, integer) to service_role;
grant execute on function ops.finish_run(text, text, jsonb, uuid, text) to service_role;
grant execute on function ops.wake_runner_if_due(text) to service_role;

-- ----------------------------------------------------------------- pg_cron

-- The seed's ops-runner-scheduler, every minute: wakes a runner (with its
-- invocation token, through edge.invoke) only when a run is claimable.
select cron.schedule('ops-runner-scheduler', '* * * * *', 'select ops.wake_runner_if_due()');
