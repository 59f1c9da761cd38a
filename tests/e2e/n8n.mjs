// The local n8n's public API for the campaign tests: workflows made and
// removed through n8n itself (never through switchyard).
import { readFileSync } from "node:fs";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { ROOT, env } from "./helpers.mjs";

export const N8N_URL = env.N8N_URL ?? "http://127.0.0.1:54350";
const apiKey = () => readFileSync(path.join(ROOT, ".local/n8n/api-key"), "utf8").trim();

/** One call to n8n's public API: {status, json}. */
export async function n8n(method, apiPath, body) {
  const response = await fetch(`${N8N_URL}/api/v1${apiPath}`, {
    method,
    headers: { "X-N8N-API-KEY": apiKey(), "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, json };
}

/** A workflow with a POST webhook trigger on a unique path: it can be published. */
export async function createWebhookWorkflow(name) {
  const webhookPath = `e2e-${randomUUID()}`;
  const created = await n8n("POST", "/workflows", {
    name,
    nodes: [
      {
        id: "webhook",
        name: "Webhook",
        type: "n8n-nodes-base.webhook",
        typeVersion: 2,
        position: [0, 0],
        webhookId: randomUUID(),
        parameters: { path: webhookPath, httpMethod: "POST" },
      },
    ],
    connections: {},
    settings: {},
  });
  if (created.status !== 200) throw new Error(`creating ${name} in n8n: HTTP ${created.status}`);
  return { id: created.json.id, path: webhookPath };
}

/** Whether n8n holds the workflow published (activeVersionId set). */
export async function isPublished(id) {
  const got = await n8n("GET", `/workflows/${id}`);
  return got.json?.activeVersionId != null;
}

/** Unpublishes and deletes; deletion answers 409 until unpublishing is done. */
export async function removeWorkflow(id) {
  await n8n("POST", `/workflows/${id}/unpublish`);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const deleted = await n8n("DELETE", `/workflows/${id}`);
    if (deleted.status !== 409) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
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
