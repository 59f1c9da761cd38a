-- Campaigns: toggles (toggle_begin/toggle_finish: idempotency keys, the
-- per-user rate limit, claims, every refusal writing nothing, version
-- conflicts, failures, the n8n circuit breaker), status webhooks
-- (apply_workflow_event: last write wins, duplicates, toggles in flight),
-- sync failures (retry, backoff, one alert) and the reconciler (lease, drift,
-- deleted workflows, re-publishing, expired toggles, metrics).
begin;
-- Other sessions' campaigns and sweeps are held until the rollback (readers go
-- on), so the reconciler below, which looks at every linked campaign, and its
-- lease meet only this test's rows once the others are parked further down.
lock table campaigns.campaigns in exclusive mode;
lock table campaigns.reconciler_runs in exclusive mode;
set search_path = extensions, public;
select plan(122);

-- Known settings and a closed breaker, whatever the stack has (undone by the
-- rollback). Sync failures alert after 3 attempts here.
update campaigns.settings set toggles_per_minute = 10, idempotency_seconds = 300, toggle_lease_seconds = 60,
  breaker_failures = 3, breaker_open_seconds = 30, reconciler_lease_seconds = 120, sync_failure_alert_after = 3,
  out_of_sync_alert_threshold = 10;
update campaigns.n8n_breaker set consecutive_failures = 0, opened_until = null, last_failure = null;

\ir lib/refusal.sql
-- Like pg_temp.refusal, with the refusal's detail: 'SQLSTATE message: detail'.
create function pg_temp.refusal_detail(p_sql text) returns text language plpgsql as $$
declare v_state text; v_message text; v_detail text;
begin
  execute p_sql;
  return 'accepted';
exception when others then
  get stacked diagnostics v_state = returned_sqlstate, v_message = message_text, v_detail = pg_exception_detail;
  return v_state || ' ' || v_message || ': ' || v_detail;
end $$;

select 'pgtap' || substr(md5(random()::text), 1, 10) as tag \gset
select :'tag' || '-owner' as u_owner, :'tag' || '-editor' as u_editor, :'tag' || '-viewer' as u_viewer,
  :'tag' || '-rl' as u_rl, :'tag' || '-other' as u_other \gset
select json_build_object('role', 'authenticated', 'sub', :'u_owner')::text as jwt_owner,
  json_build_object('role', 'authenticated', 'sub', :'u_editor')::text as jwt_editor,
  json_build_object('role', 'authenticated', 'sub', :'u_viewer')::text as jwt_viewer,
  json_build_object('role', 'authenticated', 'sub', :'u_rl')::text as jwt_rl \gset

insert into campaigns.workspaces (name) values (:'tag' || ' A') returning id as ws \gset
insert into campaigns.workspaces (name) values (:'tag' || ' B') returning id as ws_other \gset
insert into campaigns.workspace_members (workspace_id, user_id, role) values
  (:'ws', :'u_owner', 'owner'), (:'ws', :'u_editor', 'editor'), (:'ws', :'u_viewer', 'viewer'),
  (:'ws', :'u_rl', 'editor'), (:'ws_other', :'u_other', 'owner');

-- A campaign of this test: workspace, name, status, workflow, n8n status.
create temp table mine (id text primary key);
insert into mine values (:'u_owner'), (:'u_editor'), (:'u_viewer'), (:'u_rl'), (:'u_other');
create function pg_temp.campaign(p_ws uuid, p_name text, p_status text, p_workflow text, p_n8n_status text)
returns uuid language sql as $$
  with c as (
    insert into campaigns.campaigns (workspace_id, name, status, n8n_workflow_id, n8n_workflow_name, n8n_status)
    values (p_ws, p_name, p_status, p_workflow, p_name, p_n8n_status) returning id)
  insert into mine select id::text from c returning id::uuid
$$;

-- What toggles have written for this test's users and campaigns.
create function pg_temp.writes() returns text language sql as $$
  select format('attempts=%s requests=%s audit=%s claimed=%s versions=%s',
    (select count(*) from campaigns.toggle_attempts where user_id in (select id from mine)),
    (select count(*) from campaigns.toggle_requests where user_id in (select id from mine)),
    (select count(*) from campaigns.campaign_audit_log where campaign_id::text in (select id from mine)),
    (select count(*) from campaigns.campaigns where id::text in (select id from mine) and toggle_id is not null),
    (select sum(version) from campaigns.campaigns where id::text in (select id from mine)))
$$;
-- What was audited for a campaign since the last look (every entry of one
-- transaction has the same created_at): 'user action outcome source old>new
-- n8n error_code', several joined by ' ; '.
create temp table audit_seen (id uuid primary key);
create function pg_temp.audited(p_campaign uuid) returns text language sql as $$
  with fresh as (
    select a.id, concat_ws(' ', a.user_id, a.action, a.outcome, a.source, a.old_status || '>' || a.new_status,
      a.n8n_status, a.error_code) as line
    from campaigns.campaign_audit_log a
    where a.campaign_id = p_campaign and a.id not in (select id from audit_seen)
  ), seen as (
    insert into audit_seen select id from fresh
  )
  select string_agg(line, ' ; ' order by line) from fresh
$$;
create function pg_temp.audits(p_campaign uuid) returns bigint language sql as $$
  select count(*) from campaigns.campaign_audit_log where campaign_id = p_campaign
$$;
-- A campaign's state: 'status n8n_status vversion toggled|free'.
create function pg_temp.state(p_campaign uuid) returns text language sql as $$
  select format('%s %s v%s %s', status, n8n_status, version, case when toggle_id is null then 'free' else 'toggled' end)
  from campaigns.campaigns where id = p_campaign
$$;

select pg_temp.campaign(:'ws', 'T1', 'paused', :'tag' || '-t1', 'inactive') as c_toggle \gset
select pg_temp.campaign(:'ws', 'T2', 'active', :'tag' || '-t2', 'active') as c_on \gset
select pg_temp.campaign(:'ws', 'T3', 'paused', :'tag' || '-t3', 'inactive') as c_fail \gset
select pg_temp.campaign(:'ws', 'T4', 'completed', :'tag' || '-t4', 'inactive') as c_done \gset
select pg_temp.campaign(:'ws', 'T5', 'archived', :'tag' || '-t5', 'inactive') as c_archived \gset
select pg_temp.campaign(:'ws', 'T6', 'error', :'tag' || '-t6', 'error') as c_error \gset
select pg_temp.campaign(:'ws', 'T7', 'paused', null, 'unknown') as c_unlinked \gset
select pg_temp.campaign(:'ws_other', 'T8', 'paused', :'tag' || '-t8', 'inactive') as c_foreign \gset

-- ---------------------------------------------------------------- a toggle

-- An editor activates a paused campaign: the row is claimed, n8n is next.
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select campaigns.toggle_begin(:'c_toggle', 'activate', 'key-1', 'hash-1', 'cid-' || :'tag') as b1 \gset
reset role;
set local request.jwt.claims = '';
select is(:'b1'::jsonb - 'toggle_id' - 'campaign',
  jsonb_build_object('outcome', 'proceed', 'version', 1, 'workflow_id', :'tag' || '-t1', 'publish', true,
    'user_id', :'u_editor'),
  'an editor''s toggle proceeds: publish the workflow, at version 1, for the editor');
select is((select row(toggle_id, toggle_action, toggle_user, toggle_expires_at - now(), toggle_correlation_id)::text
  from campaigns.campaigns where id = :'c_toggle'),
  row((:'b1'::jsonb ->> 'toggle_id')::uuid, 'activate', :'u_editor', interval '60 seconds', 'cid-' || :'tag')::text,
  'the campaign is claimed by the toggle for toggle_lease_seconds');
select is((select row(http_status, response)::text from campaigns.toggle_requests
  where user_id = :'u_editor' and idempotency_key = 'key-1'), row(null::integer, null::jsonb)::text,
  'the idempotency key is held, without an answer, while the toggle is in flight');

-- Refusals, each writing nothing.
select pg_temp.writes() as w_before_refusals \gset
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select is(pg_temp.refusal_detail(format($$ select campaigns.toggle_begin(%L, 'activate', 'key-1', 'hash-1') $$, :'c_toggle')),
  'PT409 idempotency_conflict: the first request with this idempotency key is still in progress',
  'the same key while its first request is in flight is an idempotency conflict');
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'pause') $$, :'c_toggle')),
  'PT409 toggle_in_progress', 'a second toggle of a claimed campaign is refused');
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'activate') $$, :'c_done')),
  'PT409 invalid_state', 'a completed campaign cannot be toggled');
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'resume') $$, :'c_archived')),
  'PT409 invalid_state', 'an archived campaign cannot be toggled');
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'resume') $$, :'c_error')),
  'PT409 invalid_state', 'only a paused (or active) campaign is resumed');
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'activate') $$, :'c_unlinked')),
  'PT400 campaign_not_linked', 'a campaign without a workflow is not linked');
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'activate') $$, :'c_foreign')),
  'PT404 not_found', 'a campaign of another workspace is not found');
select is(pg_temp.refusal($$ select campaigns.toggle_begin(gen_random_uuid(), 'activate') $$),
  'PT404 not_found', 'nor is a campaign that does not exist');
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'start') $$, :'c_fail')),
  'PT422 validation_failed action', 'an unknown action is refused');
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'activate', 'key-x') $$, :'c_fail')),
  'PT422 validation_failed x-idempotency-key', 'a key without its request hash is refused');
set local request.jwt.claims = :'jwt_viewer';
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'activate') $$, :'c_fail')),
  'PT403 forbidden', 'a viewer may not toggle');
set local request.jwt.claims = :'jwt_owner';
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'pause', 'key-1', 'hash-1') $$, :'c_toggle')),
  'PT409 toggle_in_progress', 'another member''s toggle of the claimed campaign is refused (keys are per user)');
reset role;
set local request.jwt.claims = '';
select is(pg_temp.writes(), :'w_before_refusals', 'the refusals wrote no attempt, key, audit entry or claim');

-- n8n published the workflow: the function (service role) finishes the editor's toggle.
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
set local role service_role;
set local request.jwt.claims = '';
select campaigns.toggle_finish(:'c_toggle', (:'b1'::jsonb ->> 'toggle_id')::uuid, 1, 'changed', 'active',
  '{"active": true}', p_idempotency_key => 'key-1', p_workflow_name => 'T1 in n8n', p_user_id => (:'jwt_editor'::jsonb ->> 'sub')) as f1 \gset
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
reset role;
set local request.jwt.claims = '';
select is(jsonb_build_array(:'f1'::jsonb -> 'http_status', :'f1'::jsonb #> '{response,outcome}',
    :'f1'::jsonb #> '{response,campaign,status}', :'f1'::jsonb #> '{response,campaign,version}'),
  '[200, "changed", "active", 2]', 'the toggle answers 200 with the campaign, now active at version 2');
select is(pg_temp.state(:'c_toggle'), 'active active v2 free', 'the campaign is active, n8n too, and released');
select is((select row(n8n_workflow_name, sync_source, last_status_change_at is not null, last_sync_at is not null)::text
  from campaigns.campaigns where id = :'c_toggle'), row('T1 in n8n', 'api', true, true)::text,
  'with n8n''s workflow name, synced by the api');
insert into audit_seen select id from campaigns.campaign_audit_log where campaign_id = :'c_toggle';
select is((select concat_ws(' ', user_id, action, outcome, source, old_status || '>' || new_status, n8n_status,
    toggle_id = (:'b1'::jsonb ->> 'toggle_id')::uuid, correlation_id)
  from campaigns.campaign_audit_log where campaign_id = :'c_toggle'),
  :'u_editor' || ' activated changed api paused>active active t cid-' || :'tag',
  'one audit entry: who, what, from and to, the toggle and its correlation id');
select is((select row(http_status, response)::text from campaigns.toggle_requests
  where user_id = :'u_editor' and idempotency_key = 'key-1'), row(200, :'f1'::jsonb -> 'response')::text,
  'the answer is stored for the idempotency key');

-- The same request again is answered from the key.
select pg_temp.writes() as w_before_replay \gset
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select is(campaigns.toggle_begin(:'c_toggle', 'activate', 'key-1', 'hash-1'),
  jsonb_build_object('outcome', 'replay', 'http_status', 200, 'response', :'f1'::jsonb -> 'response'),
  'a replay of the key returns its first answer');
select is(pg_temp.refusal_detail(format($$ select campaigns.toggle_begin(%L, 'pause', 'key-1', 'hash-2') $$, :'c_toggle')),
  'PT409 idempotency_conflict: this idempotency key was used for another request',
  'the key with another request hash is an idempotency conflict');
reset role;
set local request.jwt.claims = '';
select is(pg_temp.writes(), :'w_before_replay', 'the replay and the conflict wrote nothing (no attempt either)');

-- ---------------------------------------------------------------- no-op

set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select campaigns.toggle_begin(:'c_on', 'activate', 'key-2', 'hash-2', 'cid-noop') as b2 \gset
reset role;
set local request.jwt.claims = '';
select is(jsonb_build_array(:'b2'::jsonb -> 'outcome', :'b2'::jsonb -> 'http_status', :'b2'::jsonb #> '{response,outcome}',
    :'b2'::jsonb #> '{response,campaign,id}'),
  jsonb_build_array('no_op'::text, 200, 'no_op'::text, :'c_on'::text), 'activating an active campaign is a no-op answered 200');
select is(pg_temp.state(:'c_on'), 'active active v1 free', 'which claims and changes nothing');
select is(pg_temp.audited(:'c_on'), :'u_editor' || ' activated no_op api active>active active',
  'and is audited as a no-op');
select is((select http_status from campaigns.toggle_requests where user_id = :'u_editor' and idempotency_key = 'key-2'),
  200, 'its answer is stored for the key');

-- ---------------------------------------------------------------- version conflicts

set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select campaigns.toggle_begin(:'c_toggle', 'pause', 'key-3', 'hash-3') as b3 \gset
reset role;
set local request.jwt.claims = '';
select is(:'b3'::jsonb - 'toggle_id' - 'campaign',
  jsonb_build_object('outcome', 'proceed', 'version', 2, 'workflow_id', :'tag' || '-t1', 'publish', false,
    'user_id', :'u_editor'),
  'pausing the active campaign proceeds: unpublish, at version 2');
-- Something moves the version while n8n is being called.
update campaigns.campaigns set version = version + 1 where id = :'c_toggle';
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
set local role service_role;
set local request.jwt.claims = '';
select campaigns.toggle_finish(:'c_toggle', (:'b3'::jsonb ->> 'toggle_id')::uuid, 2, 'changed', 'inactive',
  p_idempotency_key => 'key-3', p_user_id => (:'jwt_editor'::jsonb ->> 'sub')) as f3 \gset
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
reset role;
set local request.jwt.claims = '';
select is(jsonb_build_array(:'f3'::jsonb -> 'http_status', :'f3'::jsonb #> '{response,error,code}'),
  '[409, "version_conflict"]', 'a version that moved is a version_conflict answer');
select is(pg_temp.state(:'c_toggle'), 'active active v3 free', 'the campaign keeps its status and is released');
select is(pg_temp.audited(:'c_toggle'), :'u_editor' || ' paused failed api active>active inactive version_conflict',
  'audited as a failed pause');
select ok(not exists (select 1 from campaigns.toggle_requests where user_id = :'u_editor' and idempotency_key = 'key-3'),
  'the key is forgotten, so a retry runs again');
-- A toggle that lost its claim (the reconciler settled it) finds nothing to finish.
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
set local role service_role;
set local request.jwt.claims = '';
select is(campaigns.toggle_finish(:'c_toggle', gen_random_uuid(), 3, 'changed', 'inactive', p_user_id => (:'jwt_editor'::jsonb ->> 'sub')) #>> '{response,error,code}',
  'version_conflict', 'finishing a toggle that no longer holds the campaign is a version_conflict');
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
reset role;
set local request.jwt.claims = '';
select is(pg_temp.state(:'c_toggle') || ' ' || pg_temp.audited(:'c_toggle'),
  'active active v3 free ' || :'u_editor' || ' synced failed api active>active active version_conflict',
  'and changes nothing but the audit');

-- ---------------------------------------------------------------- failed toggles

set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select campaigns.toggle_begin(:'c_fail', 'activate', 'key-4', 'hash-4') ->> 'toggle_id' as t4 \gset
set local role service_role;
set local request.jwt.claims = '';
select campaigns.toggle_finish(:'c_fail', :'t4', 1, 'failed', 'error', '{"message": "bad gateway"}', 'upstream_unavailable',
  'n8n answered 503', 503, p_final => false, p_idempotency_key => 'key-4', p_user_id => (:'jwt_editor'::jsonb ->> 'sub')) as f4 \gset
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
reset role;
set local request.jwt.claims = '';
select is(:'f4'::jsonb, '{"http_status": 503, "response": {"error": {"code": "upstream_unavailable", "message": "n8n answered 503"}}}',
  'a failed toggle answers the error it was given');
select is(pg_temp.state(:'c_fail') || ' ' || (select sync_error from campaigns.campaigns where id = :'c_fail'),
  'paused error v1 free n8n answered 503', 'the campaign keeps its status, takes n8n''s, and is released');
select is(pg_temp.audited(:'c_fail'), :'u_editor' || ' activated failed api paused>paused error upstream_unavailable',
  'audited as a failed activation');
select ok(not exists (select 1 from campaigns.toggle_requests where user_id = :'u_editor' and idempotency_key = 'key-4'),
  'an answer that is not final is forgotten');
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select campaigns.toggle_begin(:'c_fail', 'activate', 'key-4', 'hash-4') as b4 \gset
select is(:'b4'::jsonb ->> 'outcome', 'proceed', 'so a retry with the key runs again');
set local role service_role;
set local request.jwt.claims = '';
select campaigns.toggle_finish(:'c_fail', (:'b4'::jsonb ->> 'toggle_id')::uuid, 1, 'failed', null, null, 'n8n_refused',
  'the workflow has no trigger', 422, p_final => true, p_idempotency_key => 'key-4', p_user_id => (:'jwt_editor'::jsonb ->> 'sub')) as f4b \gset
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select is(campaigns.toggle_begin(:'c_fail', 'activate', 'key-4', 'hash-4'),
  jsonb_build_object('outcome', 'replay', 'http_status', 422, 'response', :'f4b'::jsonb -> 'response'),
  'a final failure is stored: the retry replays it');
reset role;
set local request.jwt.claims = '';
select is(pg_temp.state(:'c_fail') || ' ' || pg_temp.audited(:'c_fail'),
  'paused error v1 free ' || :'u_editor' || ' activated failed api paused>paused error n8n_refused',
  'audited; an unknown n8n status keeps the last one known');

-- ---------------------------------------------------------------- the circuit breaker

select is(array[campaigns.breaker_record(false, 'timeout'), campaigns.breaker_record(false, 'timeout'),
    campaigns.breaker_record(false, 'HTTP 502')],
  array['{"open": false, "retry_after_s": null, "consecutive_failures": 1}',
    '{"open": false, "retry_after_s": null, "consecutive_failures": 2}',
    '{"open": true, "retry_after_s": 30, "consecutive_failures": 3}']::jsonb[],
  'the third failure in a row opens the breaker for breaker_open_seconds');
select is(campaigns.breaker_state(), '{"open": true, "retry_after_s": 30, "consecutive_failures": 3}',
  'breaker_state says it is open');
select is((select last_failure from campaigns.n8n_breaker), 'HTTP 502', 'with the last failure');
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select is(campaigns.toggle_begin(:'c_fail', 'activate', 'key-5', 'hash-5', 'cid-breaker'),
  '{"outcome": "breaker_open", "retry_after_s": 30}', 'a toggle while the breaker is open is not sent to n8n');
reset role;
set local request.jwt.claims = '';
select is(pg_temp.state(:'c_fail') || ' ' || pg_temp.audited(:'c_fail'),
  'paused error v1 free ' || :'u_editor' || ' activated failed api paused>paused error upstream_unavailable',
  'nothing is claimed; the refusal is audited as upstream_unavailable');
select ok(not exists (select 1 from campaigns.toggle_requests where user_id = :'u_editor' and idempotency_key = 'key-5'),
  'its key is forgotten, so a retry after the breaker closes runs');
select is(campaigns.breaker_record(true), '{"open": false, "retry_after_s": null, "consecutive_failures": 0}',
  'a success closes the breaker');
select is((select opened_until from campaigns.n8n_breaker), null, 'and clears its opening');
-- A toggle that reached n8n counts as a success too.
select campaigns.breaker_record(false, 'timeout') \g /dev/null
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select campaigns.toggle_begin(:'c_fail', 'activate') ->> 'toggle_id' as t6 \gset
set local role service_role;
set local request.jwt.claims = '';
select campaigns.toggle_finish(:'c_fail', :'t6', 1, 'changed', 'active', p_user_id => (:'jwt_editor'::jsonb ->> 'sub')) \g /dev/null
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
reset role;
set local request.jwt.claims = '';
select is(campaigns.breaker_state() ->> 'consecutive_failures', '0', 'a changed toggle resets the failure count');

-- ---------------------------------------------------------------- the rate limit

-- Ten toggles a minute per user are admitted (no-ops count too).
set local role authenticated;
set local request.jwt.claims = :'jwt_rl';
select is((select count(*)::integer from (select campaigns.toggle_begin(:'c_on', 'activate', p_correlation_id => 'rl-' || g) b
    from generate_series(1, 10) g) s where b ->> 'outcome' = 'no_op'), 10, 'ten toggles in a minute are admitted');
reset role;
set local request.jwt.claims = '';
-- The first of them 45 s ago: the 11th may come in 15 s.
update campaigns.toggle_attempts set attempted_at = now() - interval '45 seconds' where user_id = :'u_rl';
select pg_temp.writes() as w_before_limit \gset
set local role authenticated;
set local request.jwt.claims = :'jwt_rl';
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'activate') $$, :'c_on')),
  'PT429 rate_limited 15', 'the 11th toggle in a minute is rate limited, with the seconds to wait as its hint');
reset role;
set local request.jwt.claims = '';
select is(pg_temp.writes(), :'w_before_limit', 'the limited toggle wrote nothing');
set local role authenticated;
set local request.jwt.claims = :'jwt_editor';
select is(campaigns.toggle_begin(:'c_on', 'activate') ->> 'outcome', 'no_op', 'the limit is per user');
reset role;
set local request.jwt.claims = '';
update campaigns.toggle_attempts set attempted_at = now() - interval '61 seconds' where user_id = :'u_rl';
set local role authenticated;
set local request.jwt.claims = :'jwt_rl';
select is(campaigns.toggle_begin(:'c_on', 'activate') ->> 'outcome', 'no_op', 'attempts older than a minute do not count');
reset role;
set local request.jwt.claims = '';
select is((select count(*)::integer from campaigns.toggle_attempts where user_id = :'u_rl'), 1, 'and are purged');

-- The service role acts for a named user.
select pg_temp.audited(:'c_on') \g /dev/null
set local role service_role;
select is(campaigns.toggle_begin(:'c_on', 'activate', p_user_id => :'u_owner') ->> 'outcome', 'no_op',
  'the service role toggles for a user');
select is(pg_temp.refusal(format($$ select campaigns.toggle_begin(%L, 'activate') $$, :'c_on')),
  'PT422 validation_failed p_user_id', 'but must name the user');
reset role;
select is(pg_temp.audited(:'c_on'), :'u_owner' || ' activated no_op api active>active active',
  'the audit names that user');

-- ---------------------------------------------------------------- status webhooks

select pg_temp.campaign(:'ws', 'WA', 'paused', :'tag' || '-wa', 'inactive') as w_a \gset
select pg_temp.campaign(:'ws', 'WB1', 'paused', :'tag' || '-wb', 'inactive') as w_b1 \gset
select pg_temp.campaign(:'ws', 'WB2', 'paused', :'tag' || '-wb', 'inactive') as w_b2 \gset
-- WB2 has a toggle of ours in flight.
update campaigns.campaigns set toggle_id = gen_random_uuid(), toggle_action = 'activate', toggle_user = :'u_editor',
  toggle_expires_at = now() + interval '60 seconds' where id = :'w_b2';

-- A person activates WA in n8n.
select is(campaigns.apply_workflow_event(:'tag' || '-e1', :'tag' || '-wa', null, true, 'activation', now() - interval '10 seconds', 'alice'),
  '{"duplicate": false, "applied": 1, "stale": 0, "queued": false}', 'an activation in n8n is applied');
select is(pg_temp.state(:'w_a'), 'active active v2 free', 'the paused campaign follows the person: active, version + 1');
select is((select row(last_sync_at, sync_source)::text from campaigns.campaigns where id = :'w_a'),
  row(now() - interval '10 seconds', 'webhook')::text, 'synced as of the event, by the webhook');
select is(pg_temp.audited(:'w_a'), 'n8n:alice activated changed webhook paused>active active',
  'audited as n8n:<actor>');
select is(campaigns.apply_workflow_event(:'tag' || '-e1', :'tag' || '-wa', null, true, 'activation', now() - interval '10 seconds', 'alice'),
  '{"duplicate": true, "applied": 0, "stale": 0, "queued": false}', 'the same event id again is a duplicate');
select is(pg_temp.audits(:'w_a'), 1::bigint, 'applied once');
select is(campaigns.apply_workflow_event(:'tag' || '-e2', :'tag' || '-wa', null, false, 'deactivation', now() - interval '20 seconds', 'bob'),
  '{"duplicate": false, "applied": 0, "stale": 1, "queued": false}', 'an event older than the last sync is stale');
select is(pg_temp.state(:'w_a') || ' ' || (select last_sync_at - now() from campaigns.campaigns where id = :'w_a'),
  'active active v2 free -00:00:10', 'and changes nothing (last write wins)');
select is(campaigns.apply_workflow_event(:'tag' || '-e3', :'tag' || '-wa', 'WA renamed', null, 'renamed', now() - interval '5 seconds', 'alice') ->> 'applied',
  '1', 'a rename is applied');
select is((select n8n_workflow_name from campaigns.campaigns where id = :'w_a') || ' ' || pg_temp.state(:'w_a'),
  'WA renamed active active v2 free', 'it renames the workflow and changes no status');
select is(campaigns.apply_workflow_event(:'tag' || '-e4', :'tag' || '-wa', null, null, 'deleted', now() - interval '4 seconds', 'alice') ->> 'applied',
  '1', 'a deletion is applied');
select is((select n8n_status || ' / ' || sync_error from campaigns.campaigns where id = :'w_a'),
  'deleted / the workflow was deleted in n8n', 'the workflow is recorded deleted');

-- Workflow WB backs two campaigns; one has a toggle in flight.
select is(campaigns.apply_workflow_event(:'tag' || '-e5', :'tag' || '-wb', 'WB', true, 'activation', now() - interval '3 seconds', 'carol'),
  '{"duplicate": false, "applied": 2, "stale": 0, "queued": false}', 'an event applies to every campaign of the workflow');
select is(pg_temp.state(:'w_b1') || ' ' || pg_temp.audited(:'w_b1'),
  'active active v2 free n8n:carol activated changed webhook paused>active active', 'the free campaign follows n8n');
select is(pg_temp.state(:'w_b2'), 'paused active v1 toggled', 'the toggled one keeps its status and only records n8n''s');
select is(campaigns.apply_workflow_event(:'tag' || '-e6', :'tag' || '-wb', null, false, 'deactivation', now() - interval '2 seconds', 'carol') ->> 'applied',
  '2', 'a deactivation in n8n is applied');
select is(pg_temp.state(:'w_b1') || ' ' || pg_temp.audited(:'w_b1'),
  'paused inactive v3 free n8n:carol deactivated changed webhook active>paused inactive', 'and pauses the campaign');
select is(pg_temp.refusal(format($$ select campaigns.apply_workflow_event(%L, %L, null, true, 'started', now()) $$,
  :'tag' || '-e7', :'tag' || '-wb')), 'PT422 validation_failed event_type', 'an unknown event type is refused');
select is(pg_temp.refusal(format($$ select campaigns.apply_workflow_event(%L, %L, null, null, 'activation', now()) $$,
  :'tag' || '-e8', :'tag' || '-wb')), 'PT422 validation_failed active', 'an activation must say whether it is active');

-- ---------------------------------------------------------------- sync failures

-- Other sessions' failures wait until the rollback, so the counts are this test's.
update campaigns.sync_failures set next_retry_at = now() + interval '1 day' where resolved_at is null;
select pg_temp.campaign(:'ws', 'WC', 'paused', :'tag' || '-wc', 'inactive') as w_c \gset
select campaigns.record_sync_failure('webhook', jsonb_build_object('event_id', :'tag' || '-f1', 'workflow_id', :'tag' || '-wc',
  'workflow_name', 'WC', 'active', true, 'event_type', 'activation', 'timestamp', now() - interval '30 seconds', 'actor', 'dave'),
  'apply_workflow_event timed out') as f_ok \gset
-- The webhook had recorded the event before failing to apply it.
insert into campaigns.workflow_events (event_id, workflow_id, event_type, occurred_at)
values (:'tag' || '-f1', :'tag' || '-wc', 'activation', now() - interval '30 seconds');
-- An event that can never be applied.
select campaigns.record_sync_failure('webhook', jsonb_build_object('event_id', :'tag' || '-f2', 'workflow_id', :'tag' || '-wc',
  'active', true, 'event_type', 'exploded', 'timestamp', now()), 'unexpected error') as f_bad \gset
select is((select row(campaign_id, source, retry_count, next_retry_at - now(), resolved_at, error_message)::text
  from campaigns.sync_failures where id = :'f_ok'),
  row(:'w_c'::uuid, 'webhook', 0, interval '1 minute', null::timestamptz, 'apply_workflow_event timed out')::text,
  'a sync failure is recorded for the workflow''s campaign, due in a minute');
select is(pg_temp.refusal($$ select campaigns.record_sync_failure('api', '{}', 'x') $$),
  'PT422 validation_failed p_source', 'its source is webhook or cron');
select is(pg_temp.refusal($$ select campaigns.record_sync_failure('webhook', '[]', 'x') $$),
  'PT422 validation_failed p_payload', 'its payload an object');
select is(campaigns.retry_sync_failures(), '{"failed": 0, "resolved": 0}', 'nothing is retried before it is due');

-- Due: the good one is applied, the bad one backs off.
create temp table backoff (attempt integer, wait interval, alerts text[]);
-- This test's alert events for the bad failure: 'kind/subject/count'.
create function pg_temp.alerts(p_subject text) returns text[] language sql as $$
  select coalesce(array_agg(concat_ws('/', o.payload ->> 'kind', o.aggregate_id, o.payload ->> 'count') order by o.created_at), '{}')
  from integration.outbox o where o.source = 'switchyard' and o.aggregate_id = p_subject
$$;
create function pg_temp.retry_bad(p_id uuid) returns void language sql as $$
  update campaigns.sync_failures set next_retry_at = now() - interval '1 second' where id = p_id;
  select campaigns.retry_sync_failures();
  insert into backoff select retry_count, next_retry_at - now(), pg_temp.alerts(p_id::text)
  from campaigns.sync_failures where id = p_id;
$$;
update campaigns.sync_failures set next_retry_at = now() - interval '1 second' where id = :'f_ok';
update campaigns.sync_failures set next_retry_at = now() - interval '1 second' where id = :'f_bad';
select is(campaigns.retry_sync_failures(), '{"failed": 1, "resolved": 1}', 'due failures are retried');
select is((select row(resolved_at is not null, retry_count)::text from campaigns.sync_failures where id = :'f_ok'),
  '(t,1)', 'the one that applies is resolved');
select is(pg_temp.state(:'w_c') || ' ' || pg_temp.audited(:'w_c'),
  'active active v2 free n8n:dave activated changed webhook paused>active active',
  'its event was applied (a retry is not a duplicate of the event it retries)');
insert into backoff select retry_count, next_retry_at - now(), pg_temp.alerts(:'f_bad') from campaigns.sync_failures where id = :'f_bad';
select is((select error_message from campaigns.sync_failures where id = :'f_bad'), 'validation_failed',
  'the one that fails keeps its error');
select pg_temp.retry_bad(:'f_bad');
select pg_temp.retry_bad(:'f_bad');
select pg_temp.retry_bad(:'f_bad');
select is((select array_agg(row(attempt, wait, alerts)::text order by attempt) from backoff), array[
    row(1, interval '1 minute', '{}'::text[])::text,
    row(2, interval '2 minutes', '{}'::text[])::text,
    row(3, interval '4 minutes', array['campaign_sync_failed/' || :'f_bad' || '/1'])::text,
    row(4, interval '8 minutes', array['campaign_sync_failed/' || :'f_bad' || '/1'])::text],
  'failures back off 1, 2, 4, 8 minutes, with one alert once sync_failure_alert_after attempts failed');
select ok((select alerted_at is not null and resolved_at is null from campaigns.sync_failures where id = :'f_bad'),
  'the failure is marked alerted and stays unresolved');
-- The backoff stops growing at an hour, however long the failure lasts.
update campaigns.sync_failures set retry_count = 9 where id = :'f_bad';
select pg_temp.retry_bad(:'f_bad');
select is((select wait from backoff where attempt = 10), interval '1 hour', 'the backoff is at most an hour');
-- 31 attempts is a bit more than a day of failing.
update campaigns.sync_failures set retry_count = 31 where id = :'f_bad';
select is(pg_temp.refusal(format($$ select pg_temp.retry_bad(%L) $$, :'f_bad')), 'accepted',
  'a failure retried for over a day is still retried');
select is((select wait from backoff where attempt = 32), interval '1 hour', 'an hour apart');
select is(pg_temp.alerts(:'f_bad'), array['campaign_sync_failed/' || :'f_bad' || '/1'],
  'and it raised exactly one alert');

-- ---------------------------------------------------------------- the reconciler

-- Sweeps of other sessions are ended, and their campaigns unlinked and their
-- toggles pushed out, in this transaction only: the sweep sees this test's.
update campaigns.reconciler_runs set finished_at = now(), error = 'parked by pgTAP' where finished_at is null;
update campaigns.campaigns set n8n_workflow_id = null,
  toggle_expires_at = case when toggle_id is not null then greatest(toggle_expires_at, now() + interval '1 day') end
where n8n_workflow_id is not null or toggle_id is not null;

select pg_temp.campaign(:'ws', 'R1', 'active', :'tag' || '-r1', 'active') as r1 \gset
select pg_temp.campaign(:'ws', 'R2', 'active', :'tag' || '-r2', 'active') as r2 \gset
select pg_temp.campaign(:'ws', 'R3', 'active', :'tag' || '-r3', 'active') as r3 \gset
select pg_temp.campaign(:'ws', 'R4', 'paused', :'tag' || '-r4', 'inactive') as r4 \gset
select pg_temp.campaign(:'ws', 'R5', 'paused', :'tag' || '-r5', 'inactive') as r5 \gset
select pg_temp.campaign(:'ws', 'R6', 'paused', :'tag' || '-r6', 'inactive') as r6 \gset
select pg_temp.campaign(:'ws', 'R7', 'paused', :'tag' || '-r7', 'inactive') as r7 \gset
select pg_temp.campaign(:'ws', 'R8', 'active', :'tag' || '-r8', 'active') as r8 \gset
-- R5: a webhook recorded n8n's state after the sweep began.
update campaigns.campaigns set last_sync_at = now() - interval '10 seconds', sync_source = 'webhook' where id = :'r5';
-- R6, R7: toggles whose lease ran out; R8: a toggle still in flight.
update campaigns.campaigns set toggle_id = gen_random_uuid(), toggle_action = 'activate', toggle_user = :'u_editor',
  toggle_expires_at = now() - interval '1 second', toggle_correlation_id = 'cid-expired' where id in (:'r6', :'r7');
update campaigns.campaigns set toggle_id = gen_random_uuid(), toggle_action = 'pause', toggle_user = :'u_editor',
  toggle_expires_at = now() + interval '30 seconds' where id = :'r8';

-- One sweep at a time.
select campaigns.reconcile_begin('pgtap-1') as run1 \gset
select ok(:'run1'::jsonb ->> 'run_id' is not null and :'run1'::jsonb ? 'started_at',
  'a sweep starts: {run_id, started_at}');
select is(campaigns.reconcile_begin('pgtap-2'),
  jsonb_build_object('run_id', null, 'running_since', (select started_at from campaigns.reconciler_runs
    where id = (:'run1'::jsonb ->> 'run_id')::uuid)),
  'a second sweep while the first holds its lease does not start');
update campaigns.reconciler_runs set lease_expires_at = now() - interval '1 second'
where id = (:'run1'::jsonb ->> 'run_id')::uuid;
select campaigns.reconcile_begin('pgtap-3') ->> 'run_id' as run \gset
select isnt(:'run', :'run1'::jsonb ->> 'run_id', 'a sweep whose lease expired is taken over');
select is((select row(finished_at is not null, error)::text from campaigns.reconciler_runs
  where id = (:'run1'::jsonb ->> 'run_id')::uuid), row(true, 'the sweep stopped before it finished (lease expired)')::text,
  'the expired sweep is ended with its error');
select is((select row(worker, lease_expires_at - now(), finished_at)::text from campaigns.reconciler_runs where id = :'run'),
  row('pgtap-3', interval '120 seconds', null::timestamptz)::text, 'the new sweep holds a reconciler_lease_seconds lease');
select is(pg_temp.refusal(format($$ select campaigns.reconcile_apply(%L, now(), '[]') $$, :'run1'::jsonb ->> 'run_id')),
  'PT409 invalid_state', 'an ended sweep cannot apply');
select is(pg_temp.refusal(format($$ select campaigns.reconcile_apply(%L, now() + interval '1 hour', '[]') $$, :'run')),
  'PT422 validation_failed p_observed_at', 'a sweep observed in the future is refused');

-- n8n as the sweep saw it 30 s ago: R3's workflow is gone.
select campaigns.reconcile_apply(:'run', now() - interval '30 seconds', jsonb_build_array(
  jsonb_build_object('id', :'tag' || '-r1', 'name', 'R1', 'active', true),
  jsonb_build_object('id', :'tag' || '-r2', 'name', 'R2 in n8n', 'active', false),
  jsonb_build_object('id', :'tag' || '-r4', 'name', 'R4', 'active', true),
  jsonb_build_object('id', :'tag' || '-r5', 'name', 'R5', 'active', true),
  jsonb_build_object('id', :'tag' || '-r6', 'name', 'R6', 'active', true),
  jsonb_build_object('id', :'tag' || '-r7', 'name', 'R7', 'active', false),
  jsonb_build_object('id', :'tag' || '-r8', 'name', 'R8', 'active', false))) as applied \gset
select is(:'applied'::jsonb, jsonb_build_object('checked', 8, 'updated', 3, 'out_of_sync', 6, 'marked_deleted', 1,
    'toggles_settled', 2, 'republish', jsonb_build_array(jsonb_build_object('campaign_id', :'r2', 'workflow_id', :'tag' || '-r2'))),
  'the sweep checks every linked campaign and lists the active campaign whose workflow is not published');
select is(pg_temp.state(:'r1') || ' ' || pg_temp.audits(:'r1'), 'active active v1 free 0', 'a campaign in sync is not touched');
select is((select row(n8n_status, n8n_workflow_name, status, sync_source, last_sync_at - now())::text
  from campaigns.campaigns where id = :'r2'), row('inactive', 'R2 in n8n', 'active', 'cron', interval '-30 seconds')::text,
  'drift: n8n_status and the name follow n8n, synced by cron as of the sweep; the status stays active');
select is(pg_temp.audited(:'r2'), 'system:reconciler synced changed cron active>active inactive',
  'audited by the reconciler');
select is((select n8n_status || ' / ' || sync_error from campaigns.campaigns where id = :'r3'),
  'deleted / the workflow was deleted in n8n', 'a workflow missing from n8n marks its campaign deleted');
select is(pg_temp.state(:'r4') || ' ' || pg_temp.audited(:'r4'),
  'active active v2 free system:reconciler activated changed cron paused>active active',
  'a paused campaign whose workflow is published follows n8n');
select is((select row(status, n8n_status, version, last_sync_at - now(), sync_source)::text
  from campaigns.campaigns where id = :'r5'), row('paused', 'inactive', 1, interval '-10 seconds', 'webhook')::text,
  'a campaign a webhook synced after the sweep began is not touched');
select is(pg_temp.audits(:'r5'), 0::bigint, 'nor audited');
select is(pg_temp.state(:'r6') || ' ' || pg_temp.audited(:'r6'),
  'active active v2 free ' || :'u_editor' || ' activated repaired cron paused>active active',
  'an expired toggle that n8n carried out is applied and audited repaired, for its user');
select is(pg_temp.state(:'r7') || ' ' || pg_temp.audited(:'r7'),
  'paused inactive v1 free ' || :'u_editor' || ' activated abandoned cron paused>paused inactive',
  'an expired toggle that n8n did not carry out is released and audited abandoned');
select is((select correlation_id from campaigns.campaign_audit_log where campaign_id = :'r6'), 'cid-expired',
  'with the toggle''s correlation id');
select is(pg_temp.state(:'r8') || ' ' || pg_temp.audits(:'r8'), 'active active v1 toggled 0',
  'a toggle still in flight is left to finish');

-- The function re-published R2 (which the sweep claimed for it); re-publishing
-- R1, claimed the same way, failed.
update campaigns.campaigns set toggle_id = gen_random_uuid(), toggle_action = 'activate',
  toggle_user = 'system:reconciler', toggle_expires_at = now() + interval '2 minutes' where id = :'r1';
select campaigns.record_republish(:'run', :'r2', true, 'active', null, '{"active": true}') \g /dev/null
select campaigns.record_republish(:'run', :'r1', false, null, 'n8n answered 500') \g /dev/null
select is((select row(n8n_status, sync_error, sync_source, last_sync_at = now())::text from campaigns.campaigns where id = :'r2'),
  row('active', null::text, 'cron', true)::text, 'a re-published workflow is recorded active');
select is(pg_temp.audited(:'r2'), 'system:reconciler republished repaired cron active>active active',
  'and audited repaired');
select is(pg_temp.audited(:'r1') || ' / ' || (select sync_error from campaigns.campaigns where id = :'r1'),
  'system:reconciler republished failed cron active>active active republish_failed / n8n answered 500',
  'a failed re-publish is audited and kept as the sync error');
select is(pg_temp.refusal(format($$ select campaigns.record_republish(%L, %L, true) $$, :'run1'::jsonb ->> 'run_id', :'r2')),
  'PT409 invalid_state', 'only a running sweep records re-publishes');

-- The sweep ends, 1.5 s after it began.
update campaigns.reconciler_runs set started_at = now() - interval '1500 milliseconds' where id = :'run';
select is(campaigns.reconcile_finish(:'run'), jsonb_build_object('run_id', :'run', 'duration_ms', 1500, 'checked', 8,
    'updated', 3, 'errored', 1, 'out_of_sync', 6, 'republished', 1),
  'a finished sweep answers its metrics and duration');
select is((select row(workflows_seen, campaigns_checked, campaigns_updated, campaigns_errored, campaigns_out_of_sync,
    campaigns_marked_deleted, campaigns_republished, toggles_settled, duration_ms, finished_at is not null, error)::text
  from campaigns.reconciler_runs where id = :'run'), row(7, 8, 3, 1, 6, 1, 1, 2, 1500, true, null::text)::text,
  'and records them');
select is(pg_temp.refusal(format($$ select campaigns.reconcile_finish(%L) $$, :'run')), 'PT409 invalid_state',
  'a sweep ends once');
-- A sweep that fails ends with its error and an alert.
select campaigns.reconcile_begin('pgtap-4') ->> 'run_id' as run4 \gset
-- How many times campaign_sync_failed was raised for the reconciler so far (any window).
create function pg_temp.reconciler_alerts() returns integer language sql as $$
  select coalesce(sum((payload ->> 'count')::integer), 0)::integer from integration.outbox
  where source = 'switchyard' and aggregate_id = 'reconciler' and event_type = 'alert.campaign_sync_failed'
$$;
select pg_temp.reconciler_alerts() as alerts_before \gset
select is((campaigns.reconcile_finish(:'run4', 'n8n answered 401') ->> 'errored')::integer, 1, 'a failed sweep counts its error');
select is((select error from campaigns.reconciler_runs where id = :'run4'), 'n8n answered 401', 'and records it');
select is(pg_temp.reconciler_alerts(), :alerts_before + 1, 'and raises campaign_sync_failed');

select * from finish();
rollback;
