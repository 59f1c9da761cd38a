// The local n8n's public API for the campaign tests: workflows made, changed
// and removed through n8n itself (never through switchyard).
import { readFileSync } from "node:fs";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { ROOT, env } from "./helpers.mjs";

export const N8N_URL = env.N8N_URL ?? "http://127.0.0.1:54350";
const API_KEY = readFileSync(path.join(ROOT, ".local/n8n/api-key"), "utf8").trim();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const TEST_KEY_FILE = path.join(ROOT, ".local/n8n/test-api-key");

/**
 * One call to n8n's public API: {status, json}, bounded by `timeoutMs`, with
 * the functions' key (workflows only), or with `executions` the tests' own
 * key, which may also read executions.
 */
export async function n8n(route, method = "GET", body, timeoutMs = 15_000, { executions = false } = {}) {
  const key = executions ? readFileSync(TEST_KEY_FILE, "utf8").trim() : API_KEY;
  const response = await fetch(`${N8N_URL}/api/v1${route}`, {
    method,
    headers: { "X-N8N-API-KEY": key, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: response.status, json: await response.json().catch(() => null) };
}

/**
 * Creates a workflow: with `trigger`, a POST Webhook trigger on a path of its
 * own (n8n publishes it); without, a lone no-op node (n8n refuses to publish
 * it: 400, no trigger). Returns {id, name, path, nodes, connections}.
 */
export async function createWorkflow(name, { trigger = true } = {}) {
  const webhookPath = `e2e-${randomUUID()}`;
  const nodes = trigger
    ? [{ id: randomUUID(), name: "Webhook", type: "n8n-nodes-base.webhook", typeVersion: 2, position: [0, 0],
        webhookId: randomUUID(), parameters: { path: webhookPath, httpMethod: "POST" } }]
    : [{ id: randomUUID(), name: "Nothing", type: "n8n-nodes-base.noOp", typeVersion: 1, position: [0, 0], parameters: {} }];
  const created = await n8n("/workflows", "POST", { name, nodes, connections: {}, settings: { executionOrder: "v1" } });
  if (created.status !== 200) throw new Error(`n8n did not create ${name}: HTTP ${created.status} ${JSON.stringify(created.json)}`);
  const { id, nodes: stored, connections } = created.json;
  return { id, name, path: trigger ? webhookPath : null, nodes: stored, connections };
}

/** Whether n8n holds the workflow published (activeVersionId set). */
export async function isPublished(id) {
  return (await n8n(`/workflows/${id}`)).json?.activeVersionId != null;
}

/** DELETE, retried while n8n answers 409 (an unpublish still finishing); the last status. */
export async function deleteWorkflow(id) {
  const deadline = Date.now() + 10_000;
  let deleted;
  while ((deleted = await n8n(`/workflows/${id}`, "DELETE")).status === 409 && Date.now() < deadline) await sleep(100);
  return deleted.status;
}

/** Unpublishes, then deletes; the DELETE's status. */
export async function removeWorkflow(id) {
  await n8n(`/workflows/${id}/unpublish`, "POST");
  return deleteWorkflow(id);
}

/** Whether a CORS preflight shows the production webhook registered for POST. */
export async function webhookRegistered(webhookPath) {
  const response = await fetch(`${N8N_URL}/webhook/${webhookPath}`, {
    method: "OPTIONS",
    headers: { origin: N8N_URL, "access-control-request-method": "POST" },
  });
  await response.arrayBuffer();
  return response.status === 204 && /\bPOST\b/.test(response.headers.get("access-control-allow-methods") ?? "");
}
