// scripts/bench toggle: campaigns measured side by side in one run.
//
//   1. Toggle latency on one workflow, the three paths interleaved round by
//      round (ROUNDS, default 40; each round turns it on and off):
//        (a) n8n's own POST /workflows/{id}/publish and /unpublish;
//        (b) the same plus the GET that verifies it (the least a verified
//            toggle can ask of n8n);
//        (c) campaign-toggle through the gateway as a signed-in editor
//            (toggle_begin, n8n publish + GET, toggle_finish).
//      The per-user rate limit is raised for the run and restored after.
//   2. Reconciler sweeps over CAMPAIGNS (default 1000) campaigns, each linked
//      to its own n8n workflow: a first sweep (every campaign's n8n state
//      unknown), a steady one (nothing to change), one after 10% drifted,
//      against (d) reading every page of GET /workflows directly.
//
// Workflows, campaigns and the workspace it creates are removed afterwards
// (the audit log is append-only and keeps its rows).
//
//   node toggle-client.mjs   (env from `scripts/dev env`)
import { execFileSync } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
// The running stack's `scripts/dev env`, as the end-to-end tests read it.
import { ROOT, env } from "../../tests/e2e/helpers.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 40);
const CAMPAIGNS = Number(process.env.CAMPAIGNS ?? 1000);
const N8N = `${env.N8N_URL}/api/v1`;
const KEY = readFileSync(path.join(ROOT, ".local/n8n/api-key"), "utf8").trim();
const sql = (q) => execFileSync("psql", [env.DB_URL, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", q], { encoding: "utf8" }).trim();

const b64 = (v) => Buffer.from(v).toString("base64url");
function userJwt(sub) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64(JSON.stringify({ sub, role: "authenticated", aud: "authenticated", iat: now, exp: now + 3600 }));
  return `${head}.${body}.${createHmac("sha256", env.JWT_SECRET).update(`${head}.${body}`).digest("base64url")}`;
}

async function timed(fn) {
  const started = performance.now();
  const status = await fn();
  return { ms: performance.now() - started, status };
}

async function n8n(method, p, body) {
  const r = await fetch(`${N8N}${p}`, {
    method,
    headers: { "X-N8N-API-KEY": KEY, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

function webhookWorkflow(name) {
  return {
    name,
    nodes: [{ id: "w", name: "Webhook", type: "n8n-nodes-base.webhook", typeVersion: 2, position: [0, 0],
      webhookId: randomUUID(), parameters: { path: `bench-${randomUUID()}`, httpMethod: "POST" } }],
    connections: {},
    settings: {},
  };
}

async function removeWorkflow(id) {
  for (let i = 0; i < 100; i++) {
    const r = await n8n("DELETE", `/workflows/${id}`);
    if (r.status !== 409) return;
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function pool(items, size, work) {
  let next = 0;
  await Promise.all(Array.from({ length: size }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}

const pct = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};
const fmt = (v) => v.toFixed(1).padStart(8);
const row = (label, values) => console.log(`${label.padEnd(44)}${fmt(pct(values, 50))}${fmt(pct(values, 99))}${fmt(Math.max(...values))}`);

const workspace = randomUUID();
const user = randomUUID();
const created = [];
let savedLimit;

async function toggleLatency() {
  const wf = (await n8n("POST", "/workflows", webhookWorkflow(`bench toggle ${workspace}`))).json;
  created.push(wf.id);
  const campaign = randomUUID();
  sql(`insert into campaigns.campaigns (id, workspace_id, name, n8n_workflow_id) values ('${campaign}', '${workspace}', 'bench toggle', '${wf.id}')`);
  const jwt = userJwt(user);
  const toggle = (action) => async () => {
    const r = await fetch(`${env.FUNCTIONS_URL}/campaign-toggle`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}`, apikey: env.ANON_KEY, "content-type": "application/json" },
      body: JSON.stringify({ campaign_id: campaign, action }),
    });
    const body = await r.json();
    if (r.status !== 200 || body.outcome !== "changed") throw new Error(`toggle ${action}: ${r.status} ${JSON.stringify(body)}`);
    return r.status;
  };
  const direct = (verb) => async () => {
    const r = await n8n("POST", `/workflows/${wf.id}/${verb}`);
    if (r.status !== 200) throw new Error(`n8n ${verb}: ${r.status}`);
    return r.status;
  };
  const verified = (verb) => async () => {
    await direct(verb)();
    const r = await n8n("GET", `/workflows/${wf.id}?excludePinnedData=true`);
    if ((r.json.activeVersionId != null) !== (verb === "publish")) throw new Error("n8n did not change");
    return r.status;
  };
  const paths = {
    "(a) n8n publish / unpublish": [direct("publish"), direct("unpublish")],
    "(b) n8n publish / unpublish + GET": [verified("publish"), verified("unpublish")],
    "(c) campaign-toggle activate / deactivate": [toggle("activate"), toggle("deactivate")],
  };
  // n8n's hooks report every publish, so after (a) and (b) the campaign
  // follows n8n a moment later: (c) starts once those reports have landed
  // (the campaign paused, no report in the last 600 ms), or it would be a no-op.
  const settle = async () => {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const quiet = sql(`select (c.status = 'paused' and c.n8n_status = 'inactive' and coalesce(
          (select max(received_at) from campaigns.workflow_events where workflow_id = '${wf.id}') < now() - interval '600 milliseconds', true))
        from campaigns.campaigns c where c.id = '${campaign}'`);
      if (quiet === "t") return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error("the campaign did not settle after n8n's reports");
  };
  const samples = Object.fromEntries(Object.keys(paths).map((k) => [k, { on: [], off: [] }]));
  const names = Object.keys(paths);
  for (let round = -3; round < ROUNDS; round++) {
    // A different order each round; the first three rounds warm up.
    for (const name of names.map((_, i) => names[(i + round + 3) % names.length])) {
      const [on, off] = paths[name];
      if (name.startsWith("(c)")) await settle();
      const a = await timed(on);
      const b = await timed(off);
      if (round >= 0) {
        samples[name].on.push(a.ms);
        samples[name].off.push(b.ms);
      }
    }
  }
  console.log(`\n1. Toggle latency, ${ROUNDS} rounds (ms)                p50     p99     max`);
  for (const name of names) {
    row(`${name}: on`, samples[name].on);
    row(`${name}: off`, samples[name].off);
    row(`${name}: both`, [...samples[name].on, ...samples[name].off]);
  }
  const p50 = (name) => pct([...samples[name].on, ...samples[name].off], 50);
  const p99 = (name) => pct([...samples[name].on, ...samples[name].off], 99);
  console.log(`ratio c/a p50 ${(p50(names[2]) / p50(names[0])).toFixed(2)}x  p99 ${(p99(names[2]) / p99(names[0])).toFixed(2)}x`);
  console.log(`ratio c/b p50 ${(p50(names[2]) / p50(names[1])).toFixed(2)}x  p99 ${(p99(names[2]) / p99(names[1])).toFixed(2)}x`);
}

async function sweep() {
  for (let attempt = 0; attempt < 60; attempt++) {
    const started = performance.now();
    const r = await fetch(`${env.FUNCTIONS_URL}/campaign-sync?wait=true`, {
      method: "POST",
      headers: { authorization: `Bearer ${env.CAMPAIGN_SYNC_INVOCATION_TOKEN}` },
      body: JSON.stringify({ reason: "bench" }),
    });
    const body = await r.json();
    if (r.status !== 200) throw new Error(`sweep: ${r.status} ${JSON.stringify(body)}`);
    if (!body.summary.skipped) return { wall: performance.now() - started, ...body.summary };
    await new Promise((res) => setTimeout(res, 500)); // pg_cron's sweep is running
  }
  throw new Error("the reconciler stayed busy");
}

async function reconcilerSweeps() {
  console.log(`\n2. Reconciler: creating ${CAMPAIGNS} workflows in n8n and a campaign for each ...`);
  const ids = [];
  await pool(Array.from({ length: CAMPAIGNS }, (_, i) => i), 8, async (i) => {
    const r = await n8n("POST", "/workflows", webhookWorkflow(`bench sweep ${i} ${workspace}`));
    if (r.status !== 200) throw new Error(`creating a workflow: ${r.status}`);
    ids.push(r.json.id);
    created.push(r.json.id);
  });
  sql(`insert into campaigns.campaigns (workspace_id, name, n8n_workflow_id)
       select '${workspace}', 'bench sweep ' || w, w from unnest(array[${ids.map((id) => `'${id}'`).join(",")}]) w`);
  const listAll = async () => {
    let cursor = null, pages = 0, count = 0;
    do {
      const r = await n8n("GET", `/workflows?limit=250&excludePinnedData=true${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      pages++;
      count += r.json.data.length;
      cursor = r.json.nextCursor;
    } while (cursor);
    return { pages, count };
  };
  const total = sql("select count(*) from campaigns.campaigns where n8n_workflow_id is not null");
  console.log(`   ${total} linked campaigns in all (the bench's ${CAMPAIGNS} and the rest of the database)`);
  console.log(`   sweep                              wall ms  sweep ms  checked  updated  out_of_sync  workflows`);
  const line = (label, s) =>
    console.log(`   ${label.padEnd(34)}${fmt(s.wall)}  ${String(s.summary.duration_ms).padStart(8)}  ${String(s.summary.checked).padStart(7)}  ${String(s.summary.updated).padStart(7)}  ${String(s.summary.out_of_sync).padStart(11)}  ${String(s.workflows_seen).padStart(9)}`);
  const first = await sweep();
  line("first (all unknown)", first);
  const steady = await sweep();
  line("steady (nothing to change)", steady);
  sql(`update campaigns.campaigns set n8n_status = 'active', last_sync_at = now() - interval '1 hour'
       where id in (select id from campaigns.campaigns where workspace_id = '${workspace}' and name like 'bench sweep %' limit ${Math.ceil(CAMPAIGNS / 10)})`);
  const drifted = await sweep();
  line("10% drifted", drifted);
  const reads = [];
  let listed;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    listed = await listAll();
    reads.push(performance.now() - t);
  }
  console.log(`   (d) GET /workflows, all ${listed.pages} pages (${listed.count} workflows), best of 3: ${Math.min(...reads).toFixed(1)} ms`);
  console.log(`   steady sweep / raw read: ${(steady.wall / Math.min(...reads)).toFixed(2)}x`);
}

try {
  savedLimit = sql("select toggles_per_minute from campaigns.settings");
  sql("update campaigns.settings set toggles_per_minute = 10000");
  sql(`insert into campaigns.workspaces (id, name) values ('${workspace}', 'bench ${workspace}');
       insert into campaigns.workspace_members values ('${workspace}', '${user}', 'editor')`);
  await toggleLatency();
  if (CAMPAIGNS > 0) await reconcilerSweeps();
} finally {
  if (savedLimit) sql(`update campaigns.settings set toggles_per_minute = ${savedLimit}`);
  console.log(`\ncleaning up ${created.length} workflows ...`);
  await pool(created, 8, async (id) => {
    await n8n("POST", `/workflows/${id}/unpublish`);
    await removeWorkflow(id);
  });
  sql(`delete from campaigns.workspaces where id = '${workspace}'`);
}
