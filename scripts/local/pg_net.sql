-- A stand-in for Supabase's pg_net extension, which cannot be installed here.
-- Same shape as pg_net: `net.http_post` only enqueues into the unlogged
-- `net.http_request_queue` and returns the request id; a background sender
-- (scripts/local/pg-net-sender.mjs, started by `scripts/dev up`) sends queued
-- requests after commit and records outcomes in `net._http_response`.
-- Like pg_net it is fire-and-forget: not durable, no retries. Applied by
-- `scripts/dev up` as the superuser with the platform; idempotent.

create schema if not exists net;
revoke all on schema net from public;

create unlogged table if not exists net.http_request_queue (
  id bigserial primary key,
  method text not null,
  url text not null,
  headers jsonb not null,
  body bytea,
  timeout_milliseconds integer not null
);

create unlogged table if not exists net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz not null default now()
);

-- pg_net's signature and defaults. `params` become the query string.
create or replace function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 5000
)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_id bigint;
  v_query text;
begin
  select string_agg(pg_catalog.format('%s=%s', key, value), '&') into v_query
  from jsonb_each_text(coalesce(params, '{}'::jsonb));
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values ('POST',
          case when v_query is null then url
               when position('?' in url) > 0 then url || '&' || v_query
               else url || '?' || v_query end,
          coalesce(headers, '{}'::jsonb),
          convert_to(coalesce(body, '{}'::jsonb)::text, 'UTF8'),
          timeout_milliseconds)
  returning id into v_id;
  -- Delivered at commit, like pg_net's worker seeing only committed rows.
  perform pg_notify('pg_net_local', v_id::text);
  return v_id;
end;
$$;
