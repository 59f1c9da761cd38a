-- Local configuration of the integration bus, applied by `scripts/dev up` after
-- the migrations (idempotent). On a real project an operator does the same once:
-- point the database at the router (with the router's invocation token, never
-- the service role key), and add routes.
-- psql variables: router_url, router_token, n8n_url, handler_secret, health_check_url,
-- health_check_token, mattermost_url, ops_runner_url, ops_runner_token, github_url,
-- campaign_sync_url, campaign_sync_token.

select integration.configure_router(:'router_url', :'router_token');

-- Demo routes for the seed's three domains, to the n8n handler workflows
-- (n8n/workflows/integration), which `scripts/dev up` starts. With SWITCHYARD_N8N=off
-- nothing answers there, and deliveries fail and back off as designed.
insert into integration.routes (event_pattern, target_url, signing_secret, timeout_ms, max_concurrency)
values
  ('expense.*', :'n8n_url' || '/webhook/expense-handler', :'handler_secret', 10000, 8),
  ('asset.*', :'n8n_url' || '/webhook/asset-handler', :'handler_secret', 10000, 8),
  ('finance_task.*', :'n8n_url' || '/webhook/finance-handler', :'handler_secret', 10000, 8)
on conflict (event_pattern) do update set
  target_url = excluded.target_url,
  signing_secret = excluded.signing_secret;

-- The health checker, which pg_cron invokes every 5 minutes (with its own
-- invocation token, never the service role key).
select edge.configure_function('health-check', :'health_check_url', :'health_check_token');

-- Alerts (`alert.*`: a dead job, a service down or recovered) go straight to
-- Mattermost as chat messages, without n8n in between; locally to the
-- stand-in's `alerts` hook.
insert into integration.routes (event_pattern, target_url, signing_secret, timeout_ms, max_concurrency, format)
values ('alert.*', :'mattermost_url' || '/hooks/alerts', :'handler_secret', 5000, 4, 'chat')
on conflict (event_pattern) do update set
  target_url = excluded.target_url,
  signing_secret = excluded.signing_secret,
  format = excluded.format;

-- The ops runner, woken by the database when a run is queued and by pg_cron
-- every minute (with its own invocation token).
select edge.configure_function('ops-runner', :'ops_runner_url', :'ops_runner_token');

-- The seed's `test-project` (ops-runner.md, "Integration Testing"), whose
-- providers are the GitHub stand-in: a build dispatched to Actions, a GitHub
-- deployment, a smoke check of the deployed app, and the build's artifacts.
-- Short polls, so a local run takes seconds.
insert into ops.projects (project_id, name, repository, phases, protected_envs)
values ('test-project', 'Test project (local stand-ins)', 'switchyard/test-project',
  jsonb_build_array(
    jsonb_build_object('name', 'build', 'provider', 'github-actions', 'workflow', 'build-image.yml',
      'api_url', :'github_url', 'poll_seconds', 1),
    jsonb_build_object('name', 'deploy', 'provider', 'github-deployments', 'api_url', :'github_url',
      'poll_seconds', 1),
    jsonb_build_object('name', 'smoke', 'provider', 'http-checks', 'retry_seconds', 1,
      'checks', jsonb_build_array(jsonb_build_object('name', 'health', 'url', '{environment_url}/health',
        'expected_status', 200, 'body_contains', '{git_sha}'))),
    jsonb_build_object('name', 'artifacts', 'provider', 'github-artifacts', 'api_url', :'github_url')),
  '{production}')
on conflict (project_id) do update set
  repository = excluded.repository,
  phases = excluded.phases,
  protected_envs = excluded.protected_envs,
  updated_at = now();

-- The campaign reconciler, which pg_cron invokes every 5 minutes (with its
-- own invocation token).
select edge.configure_function('campaign-sync', :'campaign_sync_url', :'campaign_sync_token');
