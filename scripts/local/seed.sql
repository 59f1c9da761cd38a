-- Local configuration of the integration bus, applied by `scripts/dev up` after
-- the migrations (idempotent). On a real project an operator does the same once:
-- point the database at the router (with the router's invocation token, never
-- the service role key), and add routes.
-- psql variables: router_url, router_token, n8n_url, handler_secret, health_check_url,
-- health_check_token, mattermost_url.

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
