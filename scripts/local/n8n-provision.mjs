// Makes a fresh or running local n8n ready for the integration bus: the owner
// account, two public-API keys (the functions' and the tests', in files), the three domain
// handler workflows, created from one template, and the control-plane
// workflows (the directory `control-plane` next to the workflows dir: one
// workflow per file), all activated. Idempotent: existing workflows of the
// same name are replaced with the files' current text.
//
//   node n8n-provision.mjs <n8n url> <owner password> <api key file> <workflows dir> [campaign ids file]
//
// It also makes sure the demo campaigns' workflows exist (created once, kept
// with their publication state across runs) and writes their ids, by slug,
// to the campaign ids file for scripts/local/campaigns.sql.
import { readFileSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";

const [base, password, keyFile, workflowsDir, campaignIdsFile] = process.argv.slice(2);
if (!workflowsDir) {
  console.error("usage: n8n-provision.mjs <n8n url> <owner password> <api key file> <workflows dir>");
  process.exit(2);
}
const EMAIL = "ops@switchyard.local";
// Seed domain -> the handler's webhook path prefix (the seed's file names).
const DOMAINS = { expense: "expense", asset: "asset", finance_task: "finance" };

async function call(path, { method = "GET", body, headers = {} } = {}) {
  const response = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: kept as text for the error
  }
  return { status: response.status, json, text, cookie: response.headers.get("set-cookie") };
}

async function session() {
  const owner = { email: EMAIL, firstName: "Switchyard", lastName: "Operator", password };
  let r = await call("/rest/owner/setup", { method: "POST", body: owner });
  if (r.status !== 200) {
    r = await call("/rest/login", { method: "POST", body: { emailOrLdapLoginId: EMAIL, password } });
  }
  if (r.status !== 200 || !r.cookie) throw new Error(`n8n owner setup and login failed: HTTP ${r.status}`);
  return r.cookie.split(";")[0];
}

/** An API key with `scopes`, kept in `file` (made again when n8n no longer accepts it). */
async function apiKey(file, scopes, probe) {
  if (existsSync(file)) {
    const key = readFileSync(file, "utf8").trim();
    const r = await call(probe, { headers: { "X-N8N-API-KEY": key } });
    if (r.status === 200) return key;
  }
  const cookie = await session();
  const r = await call("/rest/api-keys", {
    method: "POST",
    headers: { cookie },
    body: { label: `switchyard-${Date.now()}`, expiresAt: null, scopes },
  });
  const key = r.json?.data?.rawApiKey;
  if (!key) throw new Error(`n8n API key creation failed: HTTP ${r.status}`);
  writeFileSync(file, key + "\n", { mode: 0o600 });
  return key;
}

// The functions' key manages workflows only; the tests' key also reads
// executions (a trace's receipt names one), which no function needs.
const workflowScopes = ["create", "read", "update", "delete", "list", "activate", "deactivate"].map((s) => `workflow:${s}`);
const key = await apiKey(keyFile, workflowScopes, "/api/v1/workflows?limit=1");
await apiKey(join(dirname(keyFile), "test-api-key"), ["workflow:read", "workflow:list", "execution:read", "execution:list"],
  "/api/v1/executions?limit=1");
const api = (path, options = {}) => call("/api/v1" + path, { ...options, headers: { "X-N8N-API-KEY": key } });
const template = readFileSync(join(workflowsDir, "domain-handler.template.json"), "utf8");
const existing = (await api("/workflows?limit=250")).json?.data ?? [];

// Replaces the workflows named like this one, creates and activates it, then
// waits until `live()` says its trigger is registered.
async function install(workflow, what, live) {
  for (const old of existing.filter((w) => w.name === workflow.name)) {
    // Deactivate first: a deleted but active workflow keeps its webhook path.
    await api(`/workflows/${old.id}/deactivate`, { method: "POST" });
    // Unpublishing is asynchronous; DELETE answers 409 until it is done.
    const deadline = Date.now() + 10_000;
    let deleted;
    while ((deleted = await api(`/workflows/${old.id}`, { method: "DELETE" })).status === 409 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    if (deleted.status !== 200) throw new Error(`removing an old ${what} failed: HTTP ${deleted.status}`);
  }
  const created = await api("/workflows", { method: "POST", body: workflow });
  if (created.status !== 200) throw new Error(`creating the ${what} failed: HTTP ${created.status} ${created.text}`);
  const activated = await api(`/workflows/${created.json.id}/activate`, { method: "POST" });
  if (activated.status !== 200) {
    throw new Error(`activating the ${what} failed: HTTP ${activated.status} ${activated.text}`);
  }
  // Activation registers a webhook asynchronously.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const status = await live();
    if (status === true) break;
    if (Date.now() > deadline) throw new Error(`the ${what} did not go live: HTTP ${status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** true once POST {} to the webhook path answers `expected` from the workflow, else the status. */
const answers = (path, expected) => async () => {
  const probe = await fetch(`${base}/webhook/${path}`, { method: "POST", body: "{}", headers: { "content-type": "application/json" } });
  return probe.status === expected || probe.status;
};

for (const [domain, path] of Object.entries(DOMAINS)) {
  const workflow = JSON.parse(
    template
      .replaceAll("__DOMAIN__", path)
      // n8n needs a stable webhookId per webhook node.
      .replaceAll("__WEBHOOK_ID__", `5a1e7d00-0000-4000-8000-${Buffer.from(path).toString("hex").padEnd(12, "0").slice(0, 12)}`),
  );
  // An unsigned request answers 401 from the workflow once it is live.
  await install(workflow, `${domain} handler`, answers(`${path}-handler`, 401));
  console.log(`    ${domain}.* handler live at /webhook/${path}-handler`);
}

// The control plane (the seed's deploy-trigger, health-check-scheduler and
// backup-scheduler). A webhook workflow is live once an empty body answers 422
// from its validation; a schedule is registered by the activation itself.
const controlPlane = join(workflowsDir, "..", "control-plane");
for (const file of readdirSync(controlPlane).filter((f) => f.endsWith(".json")).sort()) {
  const workflow = JSON.parse(readFileSync(join(controlPlane, file), "utf8"));
  const webhook = workflow.nodes.find((n) => n.type === "n8n-nodes-base.webhook");
  const schedule = workflow.nodes.find((n) => n.type === "n8n-nodes-base.scheduleTrigger");
  await install(workflow, workflow.name, webhook ? answers(webhook.parameters.path, 422) : async () => true);
  console.log(`    ${workflow.name} live ${webhook ? `at /webhook/${webhook.parameters.path}` : `(${schedule.name})`}`);
}

// The demo campaigns' workflows: a webhook trigger each (so they can be
// published), and one without any trigger, which n8n refuses to publish.
if (campaignIdsFile) {
  const CAMPAIGNS = {
    "black-friday": "Black Friday",
    newsletter: "Weekly newsletter",
    "win-back": "Win-back",
    "globex-onboarding": "Globex onboarding",
    "broken-draft": "Broken draft (no trigger)",
  };
  const ids = {};
  for (const [slug, title] of Object.entries(CAMPAIGNS)) {
    const name = `campaign: ${title}`;
    const found = existing.find((w) => w.name === name && !w.isArchived);
    if (found) {
      ids[slug] = found.id;
      continue;
    }
    const nodes =
      slug === "broken-draft"
        ? [{ id: "set", name: "Draft", type: "n8n-nodes-base.noOp", typeVersion: 1, position: [0, 0], parameters: {} }]
        : [
            {
              id: "webhook",
              name: "Campaign webhook",
              type: "n8n-nodes-base.webhook",
              typeVersion: 2,
              position: [0, 0],
              webhookId: `c4a3e7d0-0000-4000-8000-${Buffer.from(slug).toString("hex").padEnd(12, "0").slice(0, 12)}`,
              parameters: { path: `campaign-${slug}`, httpMethod: "POST" },
            },
          ];
    const created = await api("/workflows", { method: "POST", body: { name, nodes, connections: {}, settings: {} } });
    if (created.status !== 200) throw new Error(`creating ${name} failed: HTTP ${created.status} ${created.text}`);
    ids[slug] = created.json.id;
  }
  writeFileSync(campaignIdsFile, JSON.stringify(ids) + "\n");
  console.log(`    ${Object.keys(ids).length} demo campaign workflows (ids in ${campaignIdsFile})`);
}
