// The typed RPC contract (shared/src/rpc.rs) against the migrated database:
// every RPC a function calls exists in its schema, is exposed to the role the
// function calls it as, takes every argument the function sends, and needs no
// argument the function leaves out. A renamed SQL parameter fails here, not in
// production.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { ROOT, sql } from "./helpers.mjs";

const manifest = JSON.parse(
  execFileSync("cargo", ["run", "--quiet", "-p", "switchyard-shared", "--example", "rpc_manifest"], {
    cwd: ROOT,
    encoding: "utf8",
  }),
);

test("the manifest lists the RPCs the functions call", () => {
  assert.ok(manifest.length >= 4, JSON.stringify(manifest));
});

for (const rpc of manifest) {
  test(`${rpc.schema}.${rpc.name} takes exactly what the functions send`, () => {
    const rows = sql(`
      select coalesce(p.proargnames[1:p.pronargs]::text, '{}') || '|' || p.pronargdefaults || '|'
             || has_function_privilege('service_role', p.oid, 'execute')
      from pg_proc p
      where p.pronamespace = '${rpc.schema}'::regnamespace and p.proname = '${rpc.name}'`);
    assert.ok(rows, `${rpc.schema}.${rpc.name} does not exist`);
    assert.equal(rows.split("\n").length, 1, `${rpc.name} is overloaded: PostgREST could pick either`);
    const [names, defaults, executable] = rows.split("|");
    const params = names.replace(/^\{|\}$/g, "").split(",").filter(Boolean);
    const required = params.slice(0, params.length - Number(defaults));
    for (const arg of rpc.args) assert.ok(params.includes(arg), `${rpc.name} has no parameter ${arg}`);
    for (const param of required) assert.ok(rpc.args.includes(param), `${rpc.name} needs ${param}, which is not sent`);
    assert.equal(executable, "true", `service_role may not execute ${rpc.name}`);
  });
}
