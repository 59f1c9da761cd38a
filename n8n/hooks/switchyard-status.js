// n8n external hooks that report workflow status changes to switchyard's
// n8n-status-webhook (n8n's community edition sends no webhook of its own
// when a workflow is published, unpublished, renamed or deleted).
//
// Load it with EXTERNAL_HOOK_FILES=/path/to/switchyard-status.js and set
//   SWITCHYARD_STATUS_WEBHOOK_URL     https://<project>/functions/v1/n8n-status-webhook
//   SWITCHYARD_STATUS_WEBHOOK_SECRET  the function's N8N_STATUS_WEBHOOK_SECRET
//
// Each report is the seed's payload plus an event id and the acting user:
//   {"event_id","workflow_id","workflow_name","active","timestamp","event_type","actor"}
// signed with `x-n8n-signature: hex(HMAC-SHA256(secret, body))`; its
// `timestamp` is covered by the signature and checked against a 5-minute window.
//
// A hook must never throw or wait: a throwing activate/deactivate hook would
// abort the user's change in n8n. Reports are sent in the background, with
// up to 3 attempts (1 s, 2 s apart) on network errors, 429 and 5xx; a report
// that still fails is logged and left to the 5-minute reconciler.
//
// `workflow.activate` runs before n8n stores the publish (and publishing can
// still fail after it), so the report is sent once the database shows the
// new active version, with whatever state n8n actually reached.
"use strict";

const crypto = require("node:crypto");

const URL = process.env.SWITCHYARD_STATUS_WEBHOOK_URL;
const SECRET = process.env.SWITCHYARD_STATUS_WEBHOOK_SECRET;
const ATTEMPTS = 3;
const SETTLE_CHECKS = 20; // x 250 ms: how long a publish may take to be stored
const enabled = Boolean(URL && SECRET);

if (!enabled) {
  console.warn("switchyard-status hooks: SWITCHYARD_STATUS_WEBHOOK_URL or _SECRET unset; not reporting");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function actorOf(actor) {
  return actor?.email || actor?.id || null;
}

async function post(report) {
  const body = JSON.stringify({ event_id: crypto.randomUUID(), ...report, timestamp: new Date().toISOString() });
  const signature = crypto.createHmac("sha256", SECRET).update(body).digest("hex");
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    try {
      const response = await fetch(URL, {
        method: "POST",
        headers: { "content-type": "application/json", "x-n8n-signature": signature },
        body,
        signal: AbortSignal.timeout(5000),
      });
      if (response.ok) return;
      if (response.status !== 429 && response.status < 500) {
        console.error(`switchyard-status hooks: ${report.event_type} of ${report.workflow_id} refused: HTTP ${response.status}`);
        return;
      }
    } catch (error) {
      if (attempt === ATTEMPTS) {
        console.error(`switchyard-status hooks: ${report.event_type} of ${report.workflow_id} not delivered: ${error.message}`);
        return;
      }
    }
    if (attempt < ATTEMPTS) await sleep(1000 * 2 ** (attempt - 1));
  }
}

// Fire and forget: never delays or fails the hook.
function report(fields) {
  if (!enabled) return;
  post(fields).catch((error) => console.error(`switchyard-status hooks: ${error.message}`));
}

// Waits until the stored workflow shows `ready(stored)`, then reports what
// is stored (the publish may have failed after the hook ran).
function reportWhenStored(repository, workflowId, ready, actor) {
  if (!enabled) return;
  (async () => {
    let stored = null;
    for (let check = 0; check < SETTLE_CHECKS; check++) {
      await sleep(250);
      stored = await repository.findOne({ where: { id: workflowId } });
      if (!stored || ready(stored)) break;
    }
    if (!stored) return; // deleted meanwhile: afterDelete reports it
    const active = stored.activeVersionId != null;
    await post({
      workflow_id: stored.id,
      workflow_name: stored.name,
      active,
      event_type: active ? "activation" : "deactivation",
      actor,
    });
  })().catch((error) => console.error(`switchyard-status hooks: ${error.message}`));
}

module.exports = {
  workflow: {
    activate: [
      async function (candidate, _context, actor) {
        const version = candidate.activeVersionId;
        reportWhenStored(this.dbCollections.Workflow, candidate.id, (w) => w.activeVersionId === version, actorOf(actor));
      },
    ],
    deactivate: [
      async function (workflow, _context, actor) {
        reportWhenStored(this.dbCollections.Workflow, workflow.id, (w) => w.activeVersionId == null, actorOf(actor));
      },
    ],
    // Saves and renames: the name and publication as stored (the receiver
    // records a new name as a rename).
    afterUpdate: [
      async function (workflow, _context, actor) {
        report({
          workflow_id: workflow.id,
          workflow_name: workflow.name,
          active: workflow.activeVersionId === undefined ? Boolean(workflow.active) : workflow.activeVersionId !== null,
          event_type: "updated",
          actor: actorOf(actor),
        });
      },
    ],
    // Archiving unpublishes without the deactivate hook; an archived
    // workflow is gone for its campaigns.
    afterArchive: [
      async function (workflowId, actor) {
        report({ workflow_id: workflowId, event_type: "deleted", actor: actorOf(actor) });
      },
    ],
    afterDelete: [
      async function (workflowId, actor) {
        report({ workflow_id: workflowId, event_type: "deleted", actor: actorOf(actor) });
      },
    ],
  },
};
