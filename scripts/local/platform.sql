-- What a Supabase project already has before any migration runs: the API
-- roles, the login role PostgREST connects as, and the `extensions` schema.
-- Applied by `scripts/dev up` as the superuser; idempotent. Not a migration:
-- `supabase db push` to a real project must not (re)create these.
-- psql variable: authenticator_password.

do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

alter role authenticator with password :'authenticator_password';
grant anon, authenticated, service_role to authenticator;

-- Supabase's per-role statement timeouts.
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

-- pgTAP lives in `extensions`, never `public`: in an exposed schema its
-- ~1000 functions would become /rpc endpoints.
create extension if not exists pgtap with schema extensions;

-- Migration bookkeeping in the Supabase CLI's own table.
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text primary key,
  statements text[],
  name text
);
