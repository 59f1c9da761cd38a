-- Campaigns (seed: campaign-orchestration.md): one campaign drives one n8n
-- workflow. Users toggle campaigns of the workspaces they belong to
-- (campaign-toggle), n8n reports changes made in n8n itself (its external
-- hooks -> n8n-status-webhook), and a reconciler sweeps n8n every 5 minutes
-- (campaign-sync) to repair what both missed.
--
-- State the seed kept in Redis lives here: idempotency keys, the per-user
-- rate limit and the n8n circuit breaker, shared by every isolate.
--
-- Who may do what:
--   * a member of a workspace reads its campaigns and audit; `editor` and
--     `owner` members may toggle them (the seed's campaign:write);
--   * operators (JWT app_metadata.role = 'operator') and the service role see
--     and change everything;
--   * anon sees nothing.

create schema campaigns;
revoke all on schema campaigns from public;
grant usage on schema campaigns to authenticated, service_role;

-- ------------------------------------------------------------ who is calling

-- The caller's user id: the JWT's `sub` (Supabase Auth and Clerk's Supabase
-- integration both set it). Null for the service role and for psql.
create function campaigns.caller_id()
returns text
language sql
stable
set search_path = ''
as $$
  select nullif(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', '')
$$;

-- Acting for the platform: the service role, an operator, or a superuser session.
create function campaigns.is_platform()
returns boolean
language sql
stable
set search_path = ''
as $$
  select current_setting('role') in ('none', 'service_role') or ops.is_operator()
$$;

-- ------------------------------------------------------------ workspaces

create table campaigns.workspaces (
  id uuid primary key default gen_random_uuid(),
  name text not null check (length(name) between 1 and 200),
  created_at timestamptz not null default now()
);

-- `viewer` reads; `editor` and `owner` may also toggle.
create table campaigns.workspace_members (
  workspace_id uuid not null references campaigns.workspaces (id) on delete cascade,
  user_id text not null check (length(user_id) between 1 and 200),
  role text not null check (role in ('viewer', 'editor', 'owner')),
  created_at timestamptz not null default now(),
  primary key (workspace_id, user_id)
);
create index workspace_members_user on campaigns.workspace_members (user_id);

-- The caller's role in a workspace, or null. SECURITY DEFINER: RLS policies
-- call it, and reading workspace_members under its own policy would recurse.
create function campaigns.member_role(p_workspace_id uuid)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select m.role from campaigns.workspace_members m
  where m.workspace_id = p_workspace_id and m.user_id = campaigns.caller_id()
$$;

create function campaigns.can_read(p_workspace_id uuid)
returns boolean
language sql
stable
set search_path = ''
as $$ select campaigns.is_platform() or campaigns.member_role(p_workspace_id) is not null $$;

create function campaigns.can_write(p_workspace_id uuid)
returns boolean
language sql
stable
set search_path = ''
as $$ select campaigns.is_platform() or campaigns.member_role(p_workspace_id) in ('editor', 'owner') $$;

-- ------------------------------------------------------------ campaigns

create table campaigns.campaigns (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references campaigns.workspaces (id) on delete cascade,
  name text not null check (length(name) between 1 and 200),
  description text check (length(description) <= 2000),
  -- What the campaign should be doing; `active` means its workflow should be
  -- published, and the reconciler re-publishes it if n8n drops it.
  status text not null default 'paused'
    check (status in ('active', 'paused', 'completed', 'error', 'archived')),
  -- 1 campaign -> 1 workflow; the same workflow may back several campaigns.
  n8n_workflow_id text check (n8n_workflow_id ~ '^[A-Za-z0-9_-]{1,64}$'),
  n8n_workflow_name text check (length(n8n_workflow_name) <= 400),
  -- What n8n last said about the workflow (n8n is authoritative for it).
  n8n_status text not null default 'unknown'
    check (n8n_status in ('active', 'inactive', 'unknown', 'error', 'deleted')),
  -- +1 on every status change; a toggle writes only if it is unchanged.
  version integer not null default 1,
  last_status_change_at timestamptz,
  -- When the n8n state recorded here was true in n8n: updates older than it
  -- are acknowledged and ignored (last write wins).
  last_sync_at timestamptz,
  sync_source text check (sync_source in ('api', 'webhook', 'cron')),
  sync_error text check (length(sync_error) <= 2000),
  -- The toggle in flight, if any: its n8n call happens between
  -- toggle_begin and toggle_finish, outside any transaction, so the row is
  -- claimed instead of locked. Abandoned toggles expire and the reconciler
  -- settles them from what n8n says.
  toggle_id uuid,
  toggle_action text check (toggle_action in ('activate', 'deactivate', 'pause', 'resume')),
  toggle_user text,
  toggle_expires_at timestamptz,
  toggle_correlation_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check ((toggle_id is null) = (toggle_expires_at is null))
);
create index campaigns_n8n_workflow on campaigns.campaigns (n8n_workflow_id);
create index campaigns_workspace_status on campaigns.campaigns (workspace_id, status);
create index campaigns_workspace_name on campaigns.campaigns (workspace_id, name, id);

-- Every toggle attempt (success, no-op, failure) and every change the sync
-- loop makes. Append-only.
create table campaigns.campaign_audit_log (
  id uuid primary key default gen_random_uuid(),
  -- No foreign keys: the trail outlives the campaign and its workspace.
  campaign_id uuid not null,
  workspace_id uuid not null,
  -- The user's id; `n8n:<user>` for a change made in n8n; `system:reconciler`.
  user_id text not null,
  action text not null check (action in ('activated', 'deactivated', 'paused', 'resumed', 'republished', 'synced')),
  outcome text not null check (outcome in ('changed', 'no_op', 'failed', 'repaired', 'abandoned')),
  source text not null check (source in ('api', 'webhook', 'cron')),
  old_status text,
  new_status text,
  n8n_status text,
  n8n_response jsonb,
  error_code text,
  error_message text,
  toggle_id uuid,
  correlation_id text,
  created_at timestamptz not null default now()
);
create index campaign_audit_log_campaign on campaigns.campaign_audit_log (campaign_id, created_at desc);

create function campaigns.refuse_audit_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'campaign_audit_log is append-only';
end;
$$;
create trigger campaign_audit_log_append_only before update or delete on campaigns.campaign_audit_log
  for each row execute function campaigns.refuse_audit_change();
create trigger campaign_audit_log_no_truncate before truncate on campaigns.campaign_audit_log
  for each statement execute function campaigns.refuse_audit_change();

-- Status changes from n8n that could not be applied (a campaign row held too
-- long, an unexpected error): retried every minute until applied, alerted
-- after `sync_failure_alert_after` attempts, purged 7 days after success.
create table campaigns.sync_failures (
  id uuid primary key default gen_random_uuid(),
  -- No foreign key: queuing must not wait for the campaign row whose lock
  -- made the report fail (a key check would take a lock on it).
  campaign_id uuid,
  source text not null check (source in ('webhook', 'cron')),
  payload jsonb not null,
  error_message text,
  retry_count integer not null default 0,
  next_retry_at timestamptz not null default now(),
  resolved_at timestamptz,
  alerted_at timestamptz,
  created_at timestamptz not null default now()
);
create index sync_failures_due on campaigns.sync_failures (next_retry_at) where resolved_at is null;

-- Status webhooks seen, so a duplicate is acknowledged once more and not
-- applied twice. Kept 7 days (the replay window is 5 minutes).
create table campaigns.workflow_events (
  event_id text primary key check (length(event_id) between 1 and 200),
  workflow_id text not null,
  event_type text not null,
  occurred_at timestamptz not null,
  received_at timestamptz not null default now()
);

-- X-Idempotency-Key answers, per user, for 300 s.
create table campaigns.toggle_requests (
  user_id text not null,
  idempotency_key text not null check (length(idempotency_key) between 1 and 255),
  request_hash text not null,
  -- null while the first request is in flight.
  http_status integer,
  response jsonb,
  expires_at timestamptz not null,
  primary key (user_id, idempotency_key)
);

-- One row per admitted toggle attempt: the per-user rate limit's window.
create table campaigns.toggle_attempts (
  user_id text not null,
  attempted_at timestamptz not null default clock_timestamp()
);
create index toggle_attempts_user on campaigns.toggle_attempts (user_id, attempted_at);

-- The n8n circuit breaker, one row, shared by every isolate of every function
-- that calls n8n.
create table campaigns.n8n_breaker (
  id boolean primary key default true check (id),
  consecutive_failures integer not null default 0,
  opened_until timestamptz,
  last_failure text,
  updated_at timestamptz not null default now()
);
insert into campaigns.n8n_breaker default values;

-- The reconciler's sweeps: one at a time (a lease), with the seed's metrics.
create table campaigns.reconciler_runs (
  id uuid primary key default gen_random_uuid(),
  worker text not null,
  started_at timestamptz not null default now(),
  lease_expires_at timestamptz not null,
  finished_at timestamptz,
  workflows_seen integer,
  campaigns_checked integer,
  campaigns_updated integer,
  campaigns_errored integer,
  campaigns_out_of_sync integer,
  campaigns_marked_deleted integer,
  campaigns_republished integer not null default 0,
  toggles_settled integer,
  duration_ms integer,
  error text
);
create unique index reconciler_runs_one_active on campaigns.reconciler_runs ((true)) where finished_at is null;
create index reconciler_runs_started on campaigns.reconciler_runs (started_at desc);

create table campaigns.settings (
  id boolean primary key default true check (id),
  toggles_per_minute integer not null default 10 check (toggles_per_minute between 1 and 10000),
  idempotency_seconds integer not null default 300 check (idempotency_seconds between 1 and 86400),
  toggle_lease_seconds integer not null default 60 check (toggle_lease_seconds between 10 and 600),
  breaker_failures integer not null default 3 check (breaker_failures between 1 and 100),
  breaker_open_seconds integer not null default 30 check (breaker_open_seconds between 1 and 3600),
  reconciler_lease_seconds integer not null default 120 check (reconciler_lease_seconds between 10 and 3600),
  sync_failure_alert_after integer not null default 5 check (sync_failure_alert_after between 1 and 100),
  out_of_sync_alert_threshold integer not null default 10 check (out_of_sync_alert_threshold >= 0)
);
insert into campaigns.settings default values;

-- ------------------------------------------------------------ privileges

alter table campaigns.workspaces enable row level security;
alter table campaigns.workspace_members enable row level security;
alter table campaigns.campaigns enable row level security;
alter table campaigns.campaign_audit_log enable row level security;
alter table campaigns.sync_failures enable row level security;
alter table campaigns.workflow_events enable row level security;
alter table campaigns.toggle_requests enable row level security;
alter table campaigns.toggle_attempts enable row level security;
alter table campaigns.n8n_breaker enable row level security;
alter table campaigns.reconciler_runs enable row level security;
alter table campaigns.settings enable row level security;

revoke all on all tables in schema campaigns from public, anon, authenticated;
grant all on all tables in schema campaigns to service_role;

-- Users read their workspaces, memberships, campaigns and audit; every change
-- goes through the RPCs below.
grant select on campaigns.workspaces, campaigns.workspace_members, campaigns.campaigns,
  campaigns.campaign_audit_log to authenticated;
-- Sync and rate-limit state: operators read it, users do not.
grant select on campaigns.sync_failures, campaigns.reconciler_runs, campaigns.n8n_breaker,
  campaigns.settings to authenticated;

create policy workspaces_member_read on campaigns.workspaces for select to authenticated
  using ((select campaigns.can_read(id)));
create policy workspace_members_read on campaigns.workspace_members for select to authenticated
  using (user_id = (select campaigns.caller_id()) or (select campaigns.can_read(workspace_id)));
create policy campaigns_member_read on campaigns.campaigns for select to authenticated
  using ((select campaigns.can_read(workspace_id)));
create policy audit_member_read on campaigns.campaign_audit_log for select to authenticated
  using ((select campaigns.can_read(workspace_id)));
create policy sync_failures_operator_read on campaigns.sync_failures for select to authenticated
  using ((select ops.is_operator()));
create policy reconciler_runs_operator_read on campaigns.reconciler_runs for select to authenticated
  using ((select ops.is_operator()));
create policy n8n_breaker_operator_read on campaigns.n8n_breaker for select to authenticated
  using ((select ops.is_operator()));
create policy settings_operator_read on campaigns.settings for select to authenticated
  using ((select ops.is_operator()));

-- ------------------------------------------------------------ helpers

-- The refusals of this schema, each with its stable code and HTTP status.
create function campaigns.refuse(p_code text, p_detail text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  case p_code
    when 'unauthorized' then
      raise exception using errcode = 'PT401', message = 'unauthorized', detail = p_detail;
    when 'not_found' then
      raise exception using errcode = 'PT404', message = 'not_found', detail = p_detail;
    when 'forbidden' then
      raise exception using errcode = 'PT403', message = 'forbidden', detail = p_detail;
    when 'campaign_not_linked' then
      raise exception using errcode = 'PT400', message = 'campaign_not_linked', detail = p_detail;
    when 'invalid_state' then
      raise exception using errcode = 'PT409', message = 'invalid_state', detail = p_detail;
    when 'idempotency_conflict' then
      raise exception using errcode = 'PT409', message = 'idempotency_conflict', detail = p_detail;
    when 'toggle_in_progress' then
      raise exception using errcode = 'PT409', message = 'toggle_in_progress', detail = p_detail;
  end case;
end;
$$;

-- A campaign as the functions and the dashboard show it.
create function campaigns.summary(p_campaign campaigns.campaigns)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'id', p_campaign.id,
    'workspace_id', p_campaign.workspace_id,
    'name', p_campaign.name,
    'status', p_campaign.status,
    'n8n_workflow_id', p_campaign.n8n_workflow_id,
    'n8n_workflow_name', p_campaign.n8n_workflow_name,
    'n8n_status', p_campaign.n8n_status,
    'version', p_campaign.version,
    'last_sync_at', p_campaign.last_sync_at,
    'sync_source', p_campaign.sync_source,
    'sync_error', p_campaign.sync_error)
$$;

-- What an action wants: the campaign status and whether the workflow is published.
create function campaigns.action_target(p_action text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case p_action
    when 'activate' then 'active' when 'resume' then 'active'
    when 'deactivate' then 'paused' when 'pause' then 'paused' end
$$;

-- The audit log's past tense of an action.
create function campaigns.action_done(p_action text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case p_action
    when 'activate' then 'activated' when 'resume' then 'resumed'
    when 'deactivate' then 'deactivated' when 'pause' then 'paused' end
$$;

create function campaigns.audit(
  p_campaign campaigns.campaigns,
  p_user_id text,
  p_action text,
  p_outcome text,
  p_source text,
  p_new_status text,
  p_n8n_status text,
  p_n8n_response jsonb default null,
  p_error_code text default null,
  p_error_message text default null,
  p_toggle_id uuid default null,
  p_correlation_id text default null
)
returns void
language sql
set search_path = ''
as $$
  insert into campaigns.campaign_audit_log (campaign_id, workspace_id, user_id, action, outcome, source,
    old_status, new_status, n8n_status, n8n_response, error_code, error_message, toggle_id, correlation_id)
  values (p_campaign.id, p_campaign.workspace_id, p_user_id, p_action, p_outcome, p_source,
    p_campaign.status, p_new_status, p_n8n_status, p_n8n_response, p_error_code, left(p_error_message, 2000),
    p_toggle_id, p_correlation_id)
$$;

-- Stores the final answer to an idempotent request, or forgets the key so a
-- retry with it runs again (answers worth retrying are not final).
create function campaigns.settle_request(p_user_id text, p_key text, p_status integer, p_response jsonb)
returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_key is null then
    return;
  end if;
  if p_response is null then
    delete from campaigns.toggle_requests where user_id = p_user_id and idempotency_key = p_key;
  else
    update campaigns.toggle_requests set http_status = p_status, response = p_response
    where user_id = p_user_id and idempotency_key = p_key;
  end if;
end;
$$;

-- ------------------------------------------------------------ toggling

-- Starts a toggle for the caller (their JWT: the rules RLS applies to reads
-- apply here). Refuses, writing nothing:
--   not_found (404) a campaign the caller cannot see; forbidden (403) a viewer;
--   campaign_not_linked (400); invalid_state (409) a completed or archived
--   campaign, or resume/pause from the wrong status; rate_limited (429, hint:
--   seconds to wait); idempotency_conflict (409) a key reused for another
--   request or still in flight; toggle_in_progress (409).
-- Otherwise returns one of:
--   {"outcome":"replay","http_status":..,"response":{..}}  the key's first answer;
--   {"outcome":"no_op","http_status":200,"response":{..}}  already there (audited);
--   {"outcome":"breaker_open","retry_after_s":..}         n8n's breaker is open (audited);
--   {"outcome":"proceed","toggle_id","version","workflow_id","publish":bool,...}
--     the row is claimed for this toggle: call n8n, then toggle_finish.
create function campaigns.toggle_begin(
  p_campaign_id uuid,
  p_action text,
  p_idempotency_key text default null,
  p_request_hash text default null,
  p_correlation_id text default null,
  p_user_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settings campaigns.settings;
  v_user text := coalesce(campaigns.caller_id(), case when campaigns.is_platform() then p_user_id end);
  v_campaign campaigns.campaigns;
  v_request campaigns.toggle_requests;
  v_target text := campaigns.action_target(p_action);
  v_publish boolean;
  v_recent integer;
  v_oldest timestamptz;
  v_breaker campaigns.n8n_breaker;
  v_response jsonb;
  v_toggle_id uuid := gen_random_uuid();
begin
  select * into v_settings from campaigns.settings;
  if v_target is null then
    perform observability.reject('action', 'action must be one of activate, deactivate, pause, resume');
  end if;
  if length(campaigns.caller_id()) > 200 then
    perform campaigns.refuse('unauthorized', 'the token''s subject is longer than any user id (200 characters)');
  end if;
  if v_user is null or length(v_user) > 200 then
    perform observability.reject('p_user_id', 'the service role must name the user it acts for (1 to 200 characters)');
  end if;
  if p_idempotency_key is not null and (length(p_idempotency_key) not between 1 and 255 or p_request_hash is null) then
    perform observability.reject('x-idempotency-key', 'an idempotency key is 1 to 255 characters, sent with the request hash');
  end if;

  select * into v_campaign from campaigns.campaigns where id = p_campaign_id for update;
  if not found or not campaigns.can_read(v_campaign.workspace_id) then
    perform campaigns.refuse('not_found', 'campaign not found');
  end if;
  if not campaigns.can_write(v_campaign.workspace_id) then
    perform campaigns.refuse('forbidden', 'you may read this campaign but not change it');
  end if;

  if p_idempotency_key is not null then
    delete from campaigns.toggle_requests where expires_at < now();
    select * into v_request from campaigns.toggle_requests
    where user_id = v_user and idempotency_key = p_idempotency_key;
    if found then
      if v_request.request_hash <> p_request_hash then
        perform campaigns.refuse('idempotency_conflict', 'this idempotency key was used for another request');
      end if;
      if v_request.response is null then
        -- Unanswered: still running if this user's claim on the campaign
        -- holds; otherwise its final write was lost, and the key is free.
        if v_campaign.toggle_user = v_user and v_campaign.toggle_expires_at > now() then
          perform campaigns.refuse('idempotency_conflict', 'the first request with this idempotency key is still in progress');
        end if;
        delete from campaigns.toggle_requests where user_id = v_user and idempotency_key = p_idempotency_key;
      else
        return jsonb_build_object('outcome', 'replay', 'http_status', v_request.http_status, 'response', v_request.response);
      end if;
    end if;
  end if;

  if v_campaign.n8n_workflow_id is null then
    perform campaigns.refuse('campaign_not_linked', 'the campaign is not linked to an n8n workflow');
  end if;
  if v_campaign.status in ('completed', 'archived') then
    perform campaigns.refuse('invalid_state', format('a %s campaign cannot be toggled', v_campaign.status));
  end if;
  if p_action = 'resume' and v_campaign.status not in ('paused', 'active') then
    perform campaigns.refuse('invalid_state', format('only a paused campaign can be resumed; this one is %s', v_campaign.status));
  end if;
  if p_action = 'pause' and v_campaign.status not in ('active', 'paused') then
    perform campaigns.refuse('invalid_state', format('only an active campaign can be paused; this one is %s', v_campaign.status));
  end if;
  if v_campaign.toggle_id is not null and v_campaign.toggle_expires_at > now() then
    perform campaigns.refuse('toggle_in_progress', 'another toggle of this campaign is in progress');
  end if;

  -- The rate limit: a sliding minute per user, serialised per user.
  perform pg_advisory_xact_lock(hashtext('campaigns.toggle:' || v_user));
  delete from campaigns.toggle_attempts where attempted_at < now() - interval '1 minute';
  select count(*), min(attempted_at) into v_recent, v_oldest from campaigns.toggle_attempts
  where user_id = v_user and attempted_at > now() - interval '1 minute';
  if v_recent >= v_settings.toggles_per_minute then
    raise exception using errcode = 'PT429', message = 'rate_limited',
      detail = format('at most %s toggles a minute; retry later', v_settings.toggles_per_minute),
      hint = greatest(1, ceil(extract(epoch from v_oldest + interval '1 minute' - now())))::integer::text;
  end if;
  insert into campaigns.toggle_attempts (user_id) values (v_user);
  if p_idempotency_key is not null then
    insert into campaigns.toggle_requests (user_id, idempotency_key, request_hash, expires_at)
    values (v_user, p_idempotency_key, p_request_hash, now() + make_interval(secs => v_settings.idempotency_seconds));
  end if;

  v_publish := v_target = 'active';
  -- Already there, in Supabase and in n8n: nothing to call.
  if v_campaign.status = v_target and v_campaign.n8n_status = (case when v_publish then 'active' else 'inactive' end) then
    perform campaigns.audit(v_campaign, v_user, campaigns.action_done(p_action), 'no_op', 'api',
      v_campaign.status, v_campaign.n8n_status, null, null, null, null, p_correlation_id);
    v_response := jsonb_build_object('outcome', 'no_op', 'campaign', campaigns.summary(v_campaign));
    perform campaigns.settle_request(v_user, p_idempotency_key, 200, v_response);
    return jsonb_build_object('outcome', 'no_op', 'http_status', 200, 'response', v_response);
  end if;

  select * into v_breaker from campaigns.n8n_breaker;
  if v_breaker.opened_until > now() then
    perform campaigns.audit(v_campaign, v_user, campaigns.action_done(p_action), 'failed', 'api',
      v_campaign.status, v_campaign.n8n_status, null, 'upstream_unavailable',
      'the n8n circuit breaker is open', null, p_correlation_id);
    perform campaigns.settle_request(v_user, p_idempotency_key, null, null);
    return jsonb_build_object('outcome', 'breaker_open',
      'retry_after_s', greatest(1, ceil(extract(epoch from v_breaker.opened_until - now())))::integer);
  end if;

  update campaigns.campaigns set
    toggle_id = v_toggle_id, toggle_action = p_action, toggle_user = v_user,
    toggle_expires_at = now() + make_interval(secs => v_settings.toggle_lease_seconds),
    toggle_correlation_id = p_correlation_id
  where id = v_campaign.id;
  return jsonb_build_object('outcome', 'proceed', 'toggle_id', v_toggle_id, 'version', v_campaign.version,
    'workflow_id', v_campaign.n8n_workflow_id, 'publish', v_publish, 'user_id', v_user,
    'campaign', campaigns.summary(v_campaign));
end;
$$;

-- Ends a toggle started by toggle_begin, as the same caller.
-- p_outcome 'changed': n8n is now in the target state (verified by a GET):
--   the campaign takes the target status, version + 1, audited, answer stored.
-- p_outcome 'failed': n8n refused or could not be reached: the campaign keeps
--   its status (its n8n_status becomes p_n8n_status when known), audited;
--   p_final says whether the answer is stored for the idempotency key.
-- A version that moved since toggle_begin, or a toggle that is no longer this
-- one's, is a `version_conflict` answer (audited; the reconciler settles n8n).
-- Returns {"http_status", "response"}: what the function answers.
create function campaigns.toggle_finish(
  p_campaign_id uuid,
  p_toggle_id uuid,
  p_version integer,
  p_outcome text,
  p_n8n_status text default null,
  p_n8n_response jsonb default null,
  p_error_code text default null,
  p_error_message text default null,
  p_http_status integer default null,
  p_final boolean default true,
  p_idempotency_key text default null,
  p_workflow_name text default null,
  p_user_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user text := coalesce(campaigns.caller_id(), case when campaigns.is_platform() then p_user_id end);
  v_campaign campaigns.campaigns;
  v_action text;
  v_target text;
  v_response jsonb;
  v_status integer;
begin
  if p_outcome is null or p_outcome not in ('changed', 'failed') then
    perform observability.reject('p_outcome', 'p_outcome must be changed or failed');
  end if;
  if p_n8n_status is not null and p_n8n_status not in ('active', 'inactive', 'unknown', 'error', 'deleted') then
    perform observability.reject('p_n8n_status', 'p_n8n_status must be active, inactive, unknown, error or deleted');
  end if;
  select * into v_campaign from campaigns.campaigns where id = p_campaign_id for update;
  if not found or v_campaign.toggle_id is distinct from p_toggle_id or v_campaign.toggle_user is distinct from v_user then
    -- Not this caller's toggle (any more): the reconciler settled it, or
    -- another toggle took the row after this one's lease ran out.
    if found and campaigns.can_read(v_campaign.workspace_id) then
      perform campaigns.audit(v_campaign, coalesce(v_user, 'unknown'), 'synced', 'failed', 'api',
        v_campaign.status, v_campaign.n8n_status, p_n8n_response, 'version_conflict',
        'the toggle lost its claim on the campaign before it finished', p_toggle_id, null);
    end if;
    v_response := jsonb_build_object('error', jsonb_build_object('code', 'version_conflict',
      'message', 'the campaign changed while the toggle was in progress; reload and retry'));
    perform campaigns.settle_request(v_user, p_idempotency_key, null, null);
    return jsonb_build_object('http_status', 409, 'response', v_response);
  end if;
  v_action := v_campaign.toggle_action;
  v_target := campaigns.action_target(v_action);

  if v_campaign.version <> p_version then
    perform campaigns.audit(v_campaign, v_user, campaigns.action_done(v_action), 'failed', 'api',
      v_campaign.status, coalesce(p_n8n_status, v_campaign.n8n_status), p_n8n_response, 'version_conflict',
      format('version %s changed to %s during the toggle', p_version, v_campaign.version), p_toggle_id,
      v_campaign.toggle_correlation_id);
    update campaigns.campaigns set toggle_id = null, toggle_action = null, toggle_user = null,
      toggle_expires_at = null, toggle_correlation_id = null
    where id = v_campaign.id;
    v_response := jsonb_build_object('error', jsonb_build_object('code', 'version_conflict',
      'message', 'the campaign changed while the toggle was in progress; reload and retry'));
    perform campaigns.settle_request(v_user, p_idempotency_key, null, null);
    return jsonb_build_object('http_status', 409, 'response', v_response);
  end if;

  if p_outcome = 'changed' then
    perform campaigns.audit(v_campaign, v_user, campaigns.action_done(v_action), 'changed', 'api',
      v_target, p_n8n_status, p_n8n_response, null, null, p_toggle_id, v_campaign.toggle_correlation_id);
    update campaigns.campaigns set
      status = v_target,
      n8n_status = coalesce(p_n8n_status, n8n_status),
      n8n_workflow_name = coalesce(p_workflow_name, n8n_workflow_name),
      version = case when status <> v_target then version + 1 else version end,
      last_status_change_at = case when status <> v_target then now() else last_status_change_at end,
      last_sync_at = greatest(last_sync_at, now()),
      sync_source = 'api', sync_error = null,
      toggle_id = null, toggle_action = null, toggle_user = null, toggle_expires_at = null,
      toggle_correlation_id = null, updated_at = now()
    where id = v_campaign.id
    returning * into v_campaign;
    -- n8n answered: whatever failures the breaker counted are over.
    perform campaigns.breaker_record(true);
    v_status := 200;
    v_response := jsonb_build_object('outcome', 'changed', 'campaign', campaigns.summary(v_campaign));
  else
    if p_error_code is null or p_http_status is null or p_http_status not between 400 and 599 then
      perform observability.reject('p_error_code', 'a failed toggle names its error code and HTTP status');
    end if;
    perform campaigns.audit(v_campaign, v_user, campaigns.action_done(v_action), 'failed', 'api',
      v_campaign.status, coalesce(p_n8n_status, v_campaign.n8n_status), p_n8n_response, p_error_code,
      p_error_message, p_toggle_id, v_campaign.toggle_correlation_id);
    update campaigns.campaigns set
      n8n_status = coalesce(p_n8n_status, n8n_status),
      sync_error = left(p_error_message, 2000),
      toggle_id = null, toggle_action = null, toggle_user = null, toggle_expires_at = null,
      toggle_correlation_id = null, updated_at = now()
    where id = v_campaign.id;
    v_status := p_http_status;
    v_response := jsonb_build_object('error', jsonb_build_object('code', p_error_code, 'message', p_error_message));
  end if;
  perform campaigns.settle_request(v_user, p_idempotency_key, v_status,
    case when p_outcome = 'changed' or p_final then v_response end);
  return jsonb_build_object('http_status', v_status, 'response', v_response);
end;
$$;

-- ------------------------------------------------------------ circuit breaker

-- Counts one failed n8n attempt (timeout, transport error, 5xx); the
-- `breaker_failures`-th in a row opens the breaker for `breaker_open_seconds`.
-- A success is counted by toggle_finish and by breaker_record(true).
create function campaigns.breaker_record(p_ok boolean, p_failure text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settings campaigns.settings;
  v_breaker campaigns.n8n_breaker;
begin
  select * into v_settings from campaigns.settings;
  if p_ok then
    -- Only a breaker with failures is written, so healthy calls do not queue on it.
    update campaigns.n8n_breaker set consecutive_failures = 0, opened_until = null, updated_at = now()
    where consecutive_failures > 0;
    select * into v_breaker from campaigns.n8n_breaker;
  else
    update campaigns.n8n_breaker set
      consecutive_failures = consecutive_failures + 1,
      opened_until = case when consecutive_failures + 1 >= v_settings.breaker_failures
        then now() + make_interval(secs => v_settings.breaker_open_seconds) else opened_until end,
      last_failure = left(p_failure, 500),
      updated_at = now()
    returning * into v_breaker;
  end if;
  return jsonb_build_object('open', coalesce(v_breaker.opened_until > now(), false),
    'consecutive_failures', v_breaker.consecutive_failures,
    'retry_after_s', case when v_breaker.opened_until > now()
      then greatest(1, ceil(extract(epoch from v_breaker.opened_until - now())))::integer end);
end;
$$;

-- Whether calls to n8n may go out now (the reconciler asks before a sweep).
create function campaigns.breaker_state()
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object('open', coalesce(b.opened_until > now(), false),
    'consecutive_failures', b.consecutive_failures,
    'retry_after_s', case when b.opened_until > now()
      then greatest(1, ceil(extract(epoch from b.opened_until - now())))::integer end)
  from campaigns.n8n_breaker b
$$;

-- ------------------------------------------------------------ status webhooks

-- Applies one status change reported by n8n (its external hooks, through
-- n8n-status-webhook) to every campaign of the workflow. Last write wins:
-- a campaign whose last_sync_at is newer ignores it; a repeated event_id is a
-- duplicate. A campaign with a toggle in flight only records n8n's state (the
-- toggle owns the status). A row held longer than 2 s is not waited for: the
-- event goes to sync_failures and is retried every minute.
-- Event types: activation, deactivation (active true/false), renamed,
-- updated (name and active as n8n has them), deleted, error.
create function campaigns.apply_workflow_event(
  p_event_id text,
  p_workflow_id text,
  p_workflow_name text,
  p_active boolean,
  p_event_type text,
  p_occurred_at timestamptz,
  p_actor text default null,
  p_source text default 'webhook'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
-- Scoped to this function: a campaign row held longer is not waited for.
set lock_timeout = '2s'
as $$
declare
  v_payload jsonb := jsonb_build_object('event_id', p_event_id, 'workflow_id', p_workflow_id,
    'workflow_name', p_workflow_name, 'active', p_active, 'event_type', p_event_type,
    'timestamp', p_occurred_at, 'actor', p_actor);
  v_n8n_status text;
  v_applied integer := 0;
  v_stale integer := 0;
  v_campaign campaigns.campaigns;
  v_new_status text;
  v_user text := 'n8n:' || coalesce(nullif(p_actor, ''), 'unknown');
begin
  if p_event_id is null or length(p_event_id) not between 1 and 200 then
    perform observability.reject('event_id', 'event_id must be 1 to 200 characters');
  end if;
  if p_workflow_id is null or p_workflow_id !~ '^[A-Za-z0-9_-]{1,64}$' then
    perform observability.reject('workflow_id', 'workflow_id must be 1 to 64 letters, digits, _ or -');
  end if;
  if p_event_type is null or p_event_type not in ('activation', 'deactivation', 'renamed', 'updated', 'deleted', 'error') then
    perform observability.reject('event_type', 'event_type must be activation, deactivation, renamed, updated, deleted or error');
  end if;
  if p_active is null and p_event_type in ('activation', 'deactivation', 'updated') then
    perform observability.reject('active', format('a %s event says whether the workflow is active', p_event_type));
  end if;
  if p_occurred_at is null then
    perform observability.reject('timestamp', 'timestamp is required');
  end if;
  if p_source not in ('webhook', 'cron') then
    perform observability.reject('p_source', 'p_source must be webhook or cron');
  end if;

  if p_source = 'webhook' then
    insert into campaigns.workflow_events (event_id, workflow_id, event_type, occurred_at)
    values (p_event_id, p_workflow_id, p_event_type, p_occurred_at)
    on conflict (event_id) do nothing;
    if not found then
      return jsonb_build_object('duplicate', true, 'applied', 0, 'stale', 0, 'queued', false);
    end if;
  end if;

  v_n8n_status := case p_event_type
    when 'deleted' then 'deleted'
    when 'error' then 'error'
    when 'renamed' then null
    else case when p_active then 'active' else 'inactive' end end;

  begin
    for v_campaign in
      select * from campaigns.campaigns where n8n_workflow_id = p_workflow_id order by id for update
    loop
      if v_campaign.last_sync_at is not null and v_campaign.last_sync_at > p_occurred_at then
        v_stale := v_stale + 1;
        continue;
      end if;
      -- A change made in n8n by a person is the operator's intent: the
      -- campaign follows it, unless a toggle of ours is in flight.
      v_new_status := v_campaign.status;
      if v_campaign.toggle_id is null and v_campaign.status in ('active', 'paused', 'error') then
        v_new_status := case v_n8n_status when 'active' then 'active' when 'inactive' then 'paused'
          else v_campaign.status end;
      end if;
      if v_n8n_status is distinct from v_campaign.n8n_status and v_n8n_status is not null
         or v_new_status <> v_campaign.status
         or (p_workflow_name is not null and p_workflow_name is distinct from v_campaign.n8n_workflow_name) then
        if v_new_status <> v_campaign.status or v_n8n_status is distinct from v_campaign.n8n_status and v_n8n_status is not null then
          perform campaigns.audit(v_campaign, v_user, case
              when v_new_status = 'active' and v_campaign.status <> 'active' then 'activated'
              when v_new_status = 'paused' and v_campaign.status <> 'paused' then 'deactivated'
              else 'synced' end,
            'changed', p_source, v_new_status, coalesce(v_n8n_status, v_campaign.n8n_status), v_payload);
        end if;
        update campaigns.campaigns set
          n8n_status = coalesce(v_n8n_status, n8n_status),
          n8n_workflow_name = coalesce(p_workflow_name, n8n_workflow_name),
          status = v_new_status,
          version = case when v_new_status <> status then version + 1 else version end,
          last_status_change_at = case when v_new_status <> status then now() else last_status_change_at end,
          sync_error = case when v_n8n_status = 'deleted' then 'the workflow was deleted in n8n'
            when v_n8n_status = 'error' then 'n8n reported the workflow in error' else null end,
          updated_at = now()
        where id = v_campaign.id;
      end if;
      update campaigns.campaigns set last_sync_at = p_occurred_at, sync_source = p_source where id = v_campaign.id;
      v_applied := v_applied + 1;
    end loop;
  exception when lock_not_available then
    insert into campaigns.sync_failures (campaign_id, source, payload, error_message, next_retry_at)
    values ((select id from campaigns.campaigns where n8n_workflow_id = p_workflow_id order by id limit 1),
      p_source, v_payload, 'a campaign of the workflow stayed locked for 2 s', now() + interval '1 minute');
    return jsonb_build_object('duplicate', false, 'applied', 0, 'stale', 0, 'queued', true);
  end;
  return jsonb_build_object('duplicate', false, 'applied', v_applied, 'stale', v_stale, 'queued', false);
end;
$$;

-- Records an event the webhook function could not apply (the apply RPC
-- failed unexpectedly), to be retried like the others.
create function campaigns.record_sync_failure(p_source text, p_payload jsonb, p_error text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  if p_source is null or p_source not in ('webhook', 'cron') then
    perform observability.reject('p_source', 'p_source must be webhook or cron');
  end if;
  if p_payload is null or jsonb_typeof(p_payload) <> 'object' then
    perform observability.reject('p_payload', 'p_payload must be a JSON object');
  end if;
  insert into campaigns.sync_failures (campaign_id, source, payload, error_message, next_retry_at)
  values ((select id from campaigns.campaigns where n8n_workflow_id = p_payload ->> 'workflow_id' order by id limit 1),
    p_source, p_payload, left(p_error, 2000), now() + interval '1 minute')
  returning id into v_id;
  return v_id;
end;
$$;

-- pg_cron, every minute: re-applies due sync failures (backing off 1, 2, 4 …
-- minutes up to an hour), alerts once when one has failed
-- `sync_failure_alert_after` times, and purges what was applied 7 days ago.
create function campaigns.retry_sync_failures()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settings campaigns.settings;
  v_failure campaigns.sync_failures;
  v_result jsonb;
  v_resolved integer := 0;
  v_failed integer := 0;
begin
  select * into v_settings from campaigns.settings;
  for v_failure in
    select * from campaigns.sync_failures
    where resolved_at is null and next_retry_at <= now()
    order by next_retry_at limit 100
    for update skip locked
  loop
    begin
      -- A retry is not a duplicate of the event it retries.
      delete from campaigns.workflow_events where event_id = v_failure.payload ->> 'event_id';
      v_result := campaigns.apply_workflow_event(
        v_failure.payload ->> 'event_id', v_failure.payload ->> 'workflow_id',
        v_failure.payload ->> 'workflow_name', (v_failure.payload ->> 'active')::boolean,
        v_failure.payload ->> 'event_type', (v_failure.payload ->> 'timestamp')::timestamptz,
        v_failure.payload ->> 'actor', v_failure.source);
      if (v_result ->> 'queued')::boolean then
        -- Still locked. Raising undoes the failure apply_workflow_event just
        -- queued: this one stays the record, backing off.
        raise exception 'a campaign of the workflow is still locked';
      end if;
      update campaigns.sync_failures set resolved_at = now(), retry_count = retry_count + 1 where id = v_failure.id;
      v_resolved := v_resolved + 1;
    exception when others then
      update campaigns.sync_failures set
        retry_count = retry_count + 1,
        error_message = left(sqlerrm, 2000),
        next_retry_at = now() + least(interval '1 hour', make_interval(mins => power(2, least(retry_count, 6))::integer))
      where id = v_failure.id
      returning * into v_failure;
      v_failed := v_failed + 1;
      if v_failure.retry_count >= v_settings.sync_failure_alert_after and v_failure.alerted_at is null then
        perform integration.raise_alert('campaign_sync_failed', v_failure.id::text,
          format('A status change from n8n for workflow %s could not be applied after %s attempts: %s',
            v_failure.payload ->> 'workflow_id', v_failure.retry_count, left(v_failure.error_message, 300)),
          jsonb_build_object('sync_failure_id', v_failure.id, 'workflow_id', v_failure.payload ->> 'workflow_id'));
        update campaigns.sync_failures set alerted_at = now() where id = v_failure.id;
      end if;
    end;
  end loop;
  delete from campaigns.sync_failures where resolved_at < now() - interval '7 days';
  delete from campaigns.workflow_events where received_at < now() - interval '7 days';
  return jsonb_build_object('resolved', v_resolved, 'failed', v_failed);
end;
$$;

-- ------------------------------------------------------------ the reconciler

-- Starts a sweep unless one is running (its lease unexpired). Returns
-- {"run_id", "started_at"} or {"run_id": null, "running_since"}.
create function campaigns.reconcile_begin(p_worker text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settings campaigns.settings;
  v_active campaigns.reconciler_runs;
  v_id uuid;
begin
  if p_worker is null or length(p_worker) not between 1 and 100 then
    perform observability.reject('p_worker', 'p_worker must be 1 to 100 characters');
  end if;
  select * into v_settings from campaigns.settings;
  select * into v_active from campaigns.reconciler_runs where finished_at is null for update;
  if found then
    if v_active.lease_expires_at > now() then
      return jsonb_build_object('run_id', null, 'running_since', v_active.started_at);
    end if;
    update campaigns.reconciler_runs set finished_at = now(), error = 'the sweep stopped before it finished (lease expired)'
    where id = v_active.id;
  end if;
  insert into campaigns.reconciler_runs (worker, lease_expires_at)
  values (p_worker, now() + make_interval(secs => v_settings.reconciler_lease_seconds))
  returning id into v_id;
  return jsonb_build_object('run_id', v_id, 'started_at', now());
end;
$$;

-- Compares one complete sweep of n8n's workflows (p_workflows:
-- [{"id","name","active"}], `active` from activeVersionId) observed at
-- p_observed_at with every linked campaign, set-based:
--   * n8n_status and the workflow name follow n8n (sync_source 'cron'),
--     except where a webhook recorded something newer (last write wins);
--   * a workflow missing from n8n marks its campaigns `deleted`;
--   * a campaign that should be active but whose workflow is not published
--     is returned in `republish` (the function re-publishes and verifies it);
--   * a paused campaign whose workflow is published follows n8n (active);
--   * expired toggles are settled from n8n's state: done in n8n -> applied
--     and audited `repaired`; not done -> released and audited `abandoned`.
create function campaigns.reconcile_apply(p_run_id uuid, p_observed_at timestamptz, p_workflows jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run campaigns.reconciler_runs;
  v_checked integer;
  v_out_of_sync integer;
  v_updated integer := 0;
  v_deleted integer := 0;
  v_settled integer := 0;
  v_republish jsonb;
  v_row record;
  v_target text;
  v_n8n_target text;
begin
  select * into v_run from campaigns.reconciler_runs where id = p_run_id and finished_at is null for update;
  if not found then
    perform campaigns.refuse('invalid_state', 'this sweep is not running');
  end if;
  if p_workflows is null or jsonb_typeof(p_workflows) <> 'array' then
    perform observability.reject('p_workflows', 'p_workflows must be an array of {id, name, active}');
  end if;
  if p_observed_at is null or p_observed_at > now() + interval '1 minute' then
    perform observability.reject('p_observed_at', 'p_observed_at must be when the sweep began');
  end if;

  create temporary table if not exists pg_temp.swept (id text primary key, name text, active boolean) on commit drop;
  truncate pg_temp.swept;
  insert into pg_temp.swept (id, name, active)
  select distinct on (w ->> 'id') w ->> 'id', w ->> 'name', (w ->> 'active')::boolean
  from jsonb_array_elements(p_workflows) w;

  select count(*) into v_checked from campaigns.campaigns where n8n_workflow_id is not null;
  select count(*) into v_out_of_sync
  from campaigns.campaigns c left join pg_temp.swept s on s.id = c.n8n_workflow_id
  where c.n8n_workflow_id is not null
    and (case when s.id is null then 'deleted' when s.active then 'active' else 'inactive' end) <> c.n8n_status;

  -- Expired toggles first: n8n says whether they happened.
  for v_row in
    select c.*, s.id as seen_id, s.active as seen_active, s.name as seen_name
    from campaigns.campaigns c left join pg_temp.swept s on s.id = c.n8n_workflow_id
    where c.toggle_id is not null and c.toggle_expires_at <= now()
    for update of c
  loop
    v_target := campaigns.action_target(v_row.toggle_action);
    v_n8n_target := case when v_target = 'active' then 'active' else 'inactive' end;
    if v_row.seen_id is not null and (case when v_row.seen_active then 'active' else 'inactive' end) = v_n8n_target then
      insert into campaigns.campaign_audit_log (campaign_id, workspace_id, user_id, action, outcome, source,
        old_status, new_status, n8n_status, error_message, toggle_id, correlation_id)
      values (v_row.id, v_row.workspace_id, v_row.toggle_user, campaigns.action_done(v_row.toggle_action),
        'repaired', 'cron', v_row.status, v_target, v_n8n_target,
        'n8n changed but the toggle was never recorded; the reconciler applied it', v_row.toggle_id,
        v_row.toggle_correlation_id);
      update campaigns.campaigns set status = v_target, n8n_status = v_n8n_target,
        version = case when status <> v_target then version + 1 else version end,
        last_status_change_at = case when status <> v_target then now() else last_status_change_at end
      where id = v_row.id;
    else
      insert into campaigns.campaign_audit_log (campaign_id, workspace_id, user_id, action, outcome, source,
        old_status, new_status, n8n_status, error_message, toggle_id, correlation_id)
      values (v_row.id, v_row.workspace_id, v_row.toggle_user, campaigns.action_done(v_row.toggle_action),
        'abandoned', 'cron', v_row.status, v_row.status,
        case when v_row.seen_id is null then 'deleted' when v_row.seen_active then 'active' else 'inactive' end,
        'the toggle stopped before it finished and n8n did not change', v_row.toggle_id, v_row.toggle_correlation_id);
    end if;
    update campaigns.campaigns set toggle_id = null, toggle_action = null, toggle_user = null,
      toggle_expires_at = null, toggle_correlation_id = null, updated_at = now()
    where id = v_row.id;
    v_settled := v_settled + 1;
  end loop;

  select count(*) into v_deleted
  from campaigns.campaigns c
  where c.n8n_workflow_id is not null and c.toggle_id is null and c.n8n_status <> 'deleted'
    and (c.last_sync_at is null or c.last_sync_at < p_observed_at)
    and not exists (select 1 from pg_temp.swept s where s.id = c.n8n_workflow_id);

  -- Drift: audit what changes, then change it in one statement.
  with drift as (
    select c.id, c.workspace_id, c.status,
      case when s.id is null then 'deleted' when s.active then 'active' else 'inactive' end as seen_status,
      coalesce(s.name, c.n8n_workflow_name) as seen_name
    from campaigns.campaigns c left join pg_temp.swept s on s.id = c.n8n_workflow_id
    where c.n8n_workflow_id is not null and c.toggle_id is null
      and (c.last_sync_at is null or c.last_sync_at < p_observed_at)
    -- Locked, so a row a toggle or a report changed meanwhile is checked
    -- again as it is now; in id order, as apply_workflow_event locks.
    order by c.id
    for update of c
  ), changed as (
    select d.*,
      case when d.status = 'paused' and d.seen_status = 'active' then 'active' else d.status end as new_status
    from drift d join campaigns.campaigns c on c.id = d.id
    where d.seen_status <> c.n8n_status or d.seen_name is distinct from c.n8n_workflow_name
  ), audited as (
    insert into campaigns.campaign_audit_log (campaign_id, workspace_id, user_id, action, outcome, source,
      old_status, new_status, n8n_status, error_message)
    select id, workspace_id, 'system:reconciler',
      case when new_status <> status then 'activated' else 'synced' end, 'changed', 'cron',
      status, new_status, seen_status,
      case seen_status when 'deleted' then 'the workflow no longer exists in n8n' end
    from changed
  )
  update campaigns.campaigns c set
    n8n_status = ch.seen_status,
    n8n_workflow_name = ch.seen_name,
    status = ch.new_status,
    version = case when ch.new_status <> c.status then c.version + 1 else c.version end,
    last_status_change_at = case when ch.new_status <> c.status then now() else c.last_status_change_at end,
    sync_error = case ch.seen_status when 'deleted' then 'the workflow was deleted in n8n' end,
    updated_at = now()
  from changed ch where c.id = ch.id;
  get diagnostics v_updated = row_count;

  update campaigns.campaigns c set last_sync_at = p_observed_at, sync_source = 'cron'
  where c.n8n_workflow_id is not null and c.toggle_id is null
    and (c.last_sync_at is null or c.last_sync_at < p_observed_at);

  -- Desired state: active campaigns whose workflow exists but is not
  -- published (as of this sweep: a newer webhook knows better), at most 25
  -- a sweep. Each is claimed like a toggle, so a person's pause meanwhile is
  -- refused (toggle_in_progress) rather than undone by the re-publish.
  with due as (
    select c.id from campaigns.campaigns c join pg_temp.swept s on s.id = c.n8n_workflow_id
    where c.status = 'active' and not s.active and c.toggle_id is null
      and c.last_sync_at <= p_observed_at
    order by c.id limit 25
    for update of c skip locked
  ), claimed as (
    update campaigns.campaigns c set toggle_id = gen_random_uuid(), toggle_action = 'activate',
      toggle_user = 'system:reconciler',
      toggle_expires_at = now() + make_interval(secs => (select reconciler_lease_seconds from campaigns.settings))
    from due where c.id = due.id
    returning c.id, c.n8n_workflow_id
  )
  select coalesce(jsonb_agg(jsonb_build_object('campaign_id', id, 'workflow_id', n8n_workflow_id) order by id), '[]')
  into v_republish from claimed;

  update campaigns.reconciler_runs set
    workflows_seen = (select count(*) from pg_temp.swept),
    campaigns_checked = v_checked, campaigns_updated = v_updated, campaigns_out_of_sync = v_out_of_sync,
    campaigns_marked_deleted = v_deleted, toggles_settled = v_settled,
    lease_expires_at = now() + make_interval(secs => (select reconciler_lease_seconds from campaigns.settings))
  where id = p_run_id;
  return jsonb_build_object('checked', v_checked, 'updated', v_updated, 'out_of_sync', v_out_of_sync,
    'marked_deleted', v_deleted, 'toggles_settled', v_settled, 'republish', v_republish);
end;
$$;

-- The outcome of one re-publish by the reconciler, audited either way.
create function campaigns.record_republish(
  p_run_id uuid,
  p_campaign_id uuid,
  p_ok boolean,
  p_n8n_status text default null,
  p_error text default null,
  p_n8n_response jsonb default null
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign campaigns.campaigns;
begin
  if not exists (select 1 from campaigns.reconciler_runs where id = p_run_id and finished_at is null) then
    perform campaigns.refuse('invalid_state', 'this sweep is not running');
  end if;
  if p_n8n_status is not null and p_n8n_status not in ('active', 'inactive', 'unknown', 'error', 'deleted') then
    perform observability.reject('p_n8n_status', 'p_n8n_status must be active, inactive, unknown, error or deleted');
  end if;
  select * into v_campaign from campaigns.campaigns where id = p_campaign_id for update;
  if not found then
    perform campaigns.refuse('not_found', 'campaign not found');
  end if;
  if v_campaign.toggle_user is distinct from 'system:reconciler' then
    perform campaigns.refuse('invalid_state', 'the reconciler no longer holds this campaign');
  end if;
  perform campaigns.audit(v_campaign, 'system:reconciler', 'republished', case when p_ok then 'repaired' else 'failed' end,
    'cron', v_campaign.status, coalesce(p_n8n_status, v_campaign.n8n_status), p_n8n_response,
    case when not p_ok then 'republish_failed' end,
    case when p_ok then 'the workflow was not published though the campaign is active; re-published and its trigger verified'
      else p_error end);
  update campaigns.campaigns set
    n8n_status = coalesce(p_n8n_status, n8n_status),
    sync_error = case when p_ok then null else left(p_error, 2000) end,
    last_sync_at = now(), sync_source = 'cron', updated_at = now(),
    toggle_id = null, toggle_action = null, toggle_user = null, toggle_expires_at = null, toggle_correlation_id = null
  where id = p_campaign_id;
  update campaigns.reconciler_runs set
    campaigns_republished = campaigns_republished + case when p_ok then 1 else 0 end,
    campaigns_errored = coalesce(campaigns_errored, 0) + case when p_ok then 0 else 1 end
  where id = p_run_id;
end;
$$;

-- Ends a sweep with its duration, or its error. Alerts when the sweep failed,
-- and when more than `out_of_sync_alert_threshold` campaigns were out of sync
-- in every sweep of the last 10 minutes (at least two sweeps).
create function campaigns.reconcile_finish(p_run_id uuid, p_error text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run campaigns.reconciler_runs;
  v_threshold integer := (select out_of_sync_alert_threshold from campaigns.settings);
  v_persistent boolean;
begin
  update campaigns.reconciler_runs set
    finished_at = now(),
    duration_ms = (extract(epoch from now() - started_at) * 1000)::integer,
    campaigns_errored = coalesce(campaigns_errored, 0) + case when p_error is null then 0 else 1 end,
    error = left(p_error, 2000)
  where id = p_run_id and finished_at is null
  returning * into v_run;
  if not found then
    perform campaigns.refuse('invalid_state', 'this sweep is not running');
  end if;
  if p_error is not null then
    perform integration.raise_alert('campaign_sync_failed', 'reconciler',
      format('The campaign reconciler failed: %s', left(p_error, 300)),
      jsonb_build_object('run_id', v_run.id));
  end if;
  select count(*) >= 2 and bool_and(campaigns_out_of_sync > v_threshold) into v_persistent
  from campaigns.reconciler_runs
  where finished_at is not null and error is null and started_at > now() - interval '10 minutes';
  if v_persistent then
    perform integration.raise_alert('campaigns_out_of_sync', 'reconciler',
      format('%s campaigns were out of sync with n8n in every sweep of the last 10 minutes',
        v_run.campaigns_out_of_sync),
      jsonb_build_object('run_id', v_run.id, 'out_of_sync', v_run.campaigns_out_of_sync));
  end if;
  return jsonb_build_object('run_id', v_run.id, 'duration_ms', v_run.duration_ms,
    'checked', v_run.campaigns_checked, 'updated', v_run.campaigns_updated,
    'errored', v_run.campaigns_errored, 'out_of_sync', v_run.campaigns_out_of_sync,
    'republished', v_run.campaigns_republished);
end;
$$;

-- pg_cron's entry: wakes campaign-sync, unless it is not configured or a
-- sweep holds its lease.
create function campaigns.wake_reconciler()
returns bigint
language sql
security definer
set search_path = ''
as $$
  select edge.invoke('campaign-sync', jsonb_build_object('reason', 'cron'))
  where edge.is_configured('campaign-sync')
    and not exists (select 1 from campaigns.reconciler_runs where finished_at is null and lease_expires_at > now())
$$;

-- ------------------------------------------------------------ grants

revoke all on all functions in schema campaigns from public, anon, authenticated;
grant execute on all functions in schema campaigns to service_role;
-- Users start their own toggles (the RPC applies the membership rules). Only
-- the function finishes them, as the service role naming the user: what n8n
-- did is its word, never a caller's.
grant execute on function campaigns.toggle_begin(uuid, text, text, text, text, text) to authenticated;
-- What RLS policies call as the user.
grant execute on function campaigns.caller_id(), campaigns.is_platform(), campaigns.member_role(uuid),
  campaigns.can_read(uuid), campaigns.can_write(uuid) to authenticated;

select cron.schedule('campaigns-reconciler', '*/5 * * * *', 'select campaigns.wake_reconciler()');
select cron.schedule('campaigns-sync-retry', '* * * * *', 'select campaigns.retry_sync_failures()');
