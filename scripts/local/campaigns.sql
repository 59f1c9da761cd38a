-- The demo campaigns of the local stack (README, "Campaigns"), applied by
-- `scripts/dev up` after n8n is provisioned; idempotent, and a campaign's
-- status is left as it was (people toggle them). Fixed ids match the demo
-- users `scripts/dev session` signs in:
--   alice@acme.test  editor of Acme Marketing
--   bob@acme.test    viewer of Acme Marketing
--   olivia@switchyard.test  an operator (sees every workspace)
-- psql variable: workflows, {"<slug>": "<n8n workflow id>", ...}.

select :'workflows'::jsonb as w \gset

insert into campaigns.workspaces (id, name) values
  ('a0000000-0000-4000-8000-00000000ac3e', 'Acme Marketing'),
  ('a0000000-0000-4000-8000-0000000910be', 'Globex')
on conflict (id) do update set name = excluded.name;

insert into campaigns.workspace_members (workspace_id, user_id, role) values
  ('a0000000-0000-4000-8000-00000000ac3e', '00000000-0000-4000-a000-0000000a11ce', 'editor'),
  ('a0000000-0000-4000-8000-00000000ac3e', '00000000-0000-4000-a000-000000000b0b', 'viewer'),
  ('a0000000-0000-4000-8000-0000000910be', '00000000-0000-4000-a000-0000000ca201', 'owner')
on conflict (workspace_id, user_id) do update set role = excluded.role;

insert into campaigns.campaigns (id, workspace_id, name, description, n8n_workflow_id) values
  ('c0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-00000000ac3e', 'Black Friday',
    'Discount emails through the weekend', (:'w'::jsonb) ->> 'black-friday'),
  ('c0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-00000000ac3e', 'Weekly newsletter',
    'Every Monday at 09:00', (:'w'::jsonb) ->> 'newsletter'),
  ('c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-00000000ac3e', 'Win-back',
    'Lapsed customers, one reminder', (:'w'::jsonb) ->> 'win-back'),
  ('c0000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-00000000ac3e', 'Broken draft',
    'Its workflow has no trigger: n8n refuses to publish it', (:'w'::jsonb) ->> 'broken-draft'),
  ('c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-00000000ac3e', 'Spring launch',
    'Not linked to a workflow yet', null),
  ('c0000000-0000-4000-8000-000000000006', 'a0000000-0000-4000-8000-0000000910be', 'Globex onboarding',
    'Another workspace: Acme''s users never see it', (:'w'::jsonb) ->> 'globex-onboarding')
on conflict (id) do update set
  n8n_workflow_id = excluded.n8n_workflow_id,
  name = excluded.name,
  description = excluded.description,
  updated_at = now();
