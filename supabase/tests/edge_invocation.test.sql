-- edge: the functions the database invokes through pg_net, each with its own
-- invocation token; never an API key.
begin;
set search_path = extensions, public;
select plan(14);

select edge.configure_function('pgtap-fn', 'http://127.0.0.1:9/functions/v1/pgtap-fn', 'syi_pgtap-0123456789abcdef0123456789');
select ok(edge.is_configured('pgtap-fn'), 'a function is registered with its URL and token');
select ok(not edge.is_configured('pgtap-other'), 'another is not');

select edge.invoke('pgtap-fn', '{"reason":"test"}') as request_id \gset
select is((select url from net.http_request_queue where id = :request_id),
  'http://127.0.0.1:9/functions/v1/pgtap-fn', 'invoke posts to the function''s URL through pg_net');
select is((select headers ->> 'Authorization' from net.http_request_queue where id = :request_id),
  'Bearer syi_pgtap-0123456789abcdef0123456789', 'with its invocation token as the bearer');
select is((select convert_from(body, 'UTF8')::jsonb from net.http_request_queue where id = :request_id),
  '{"reason": "test"}'::jsonb, 'and the body it was given');
select is(edge.invoke('pgtap-other', '{}'), null, 'invoking an unregistered function sends nothing');

select edge.configure_function('pgtap-fn', 'http://127.0.0.1:9/v2', 'syi_pgtap-rotated-0123456789abcdef012');
select is((select url || ' ' || invocation_token from edge.functions where name = 'pgtap-fn'),
  'http://127.0.0.1:9/v2 syi_pgtap-rotated-0123456789abcdef012', 'configuring again replaces URL and token');

-- A JWT is an API key (the service role's, typically): refused, nothing stored.
select throws_ok($$ select edge.configure_function('pgtap-jwt', 'http://127.0.0.1:9/x',
    'eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ') $$,
  'PT422', 'validation_failed', 'a JWT is refused as an invocation token');
select throws_ok($$ select edge.configure_function('pgtap-short', 'http://127.0.0.1:9/x', 'short') $$,
  '23514', null, 'a short token is refused');
select ok(not edge.is_configured('pgtap-jwt') and not edge.is_configured('pgtap-short'), 'refused calls stored nothing');
select is_empty($$ select name from edge.functions
  where invocation_token ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$' $$,
  'no stored token is a JWT');

select edge.configure_function('pgtap-fn', null, null);
select ok(not edge.is_configured('pgtap-fn'), 'a null URL removes the function (pauses its invocations)');

-- Nothing in edge is reachable from the API.
select ok(not has_schema_privilege('anon', 'edge', 'usage') and not has_schema_privilege('authenticated', 'edge', 'usage')
  and not has_schema_privilege('service_role', 'edge', 'usage'), 'no API role may use schema edge');
select is_empty($$
  select p.oid::regprocedure::text from pg_proc p
  where p.pronamespace = 'edge'::regnamespace
    and (not coalesce(p.proconfig @> array['search_path=""'], false)
         or has_function_privilege('anon', p.oid, 'execute')
         or has_function_privilege('authenticated', p.oid, 'execute')
         or has_function_privilege('service_role', p.oid, 'execute'))
$$, 'every edge function pins search_path and is executable by no API role');

select * from finish();
rollback;
