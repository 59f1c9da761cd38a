// n8n-status-webhook end to end: n8n tells switchyard that a workflow changed
// and the campaigns linked to it follow.
//
// 1. The real sender: the local n8n runs with n8n/hooks/switchyard-status.js
//    (EXTERNAL_HOOK_FILES), which signs and posts every publish, unpublish,
//    update and delete. This file changes a workflow through n8n's OWN public
//    API (never through switchyard) and waits, bounded, for the campaign.
// 2. Requests this file signs itself (x-n8n-signature: hex HMAC-SHA256 of the
//    raw body with N8N_STATUS_WEBHOOK_SECRET): applied, duplicate, stale, and
//    the refusals, each of which writes nothing.
// 3. Standard Webhooks, not configured locally: refused.
// 4. A campaign row held by another session: the event is queued in
//    campaigns.sync_failures (202), not lost, and the retry applies it.
//
// The signed-request tests link their campaigns to workflow ids n8n does not
// have, so nothing but this file reports on them.
//
//   node --test --test-concurrency=1 tests/e2e/n8n_status_webhook.test.mjs
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createWorkflow, deleteWorkflow, n8n } from "./n8n.mjs";
import { ROOT, env, sql, waitFor } from "./helpers.mjs";

const WEBHOOK_URL = `${env.FUNCTIONS_URL}/n8n-status-webhook`;
const SECRET = env.N8N_STATUS_WEBHOOK_SECRET;
const WAIT = 15_000; // the bound on every wait for n8n's hooks

const run = randomUUID().slice(0, 8);
const created = { workspaces: [], workflows: [], fakeWorkflows: [], campaigns: [] };
/** Every answer body this file got from the function, for the secret check. */
const seen = [];

const lit = (s) => (s === null || s === undefined ? "null" : `'${String(s).replaceAll("'", "''")}'`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function sqlJson(query) {
  const out = sql(query);
  return out === "" ? null : JSON.parse(out);
}

// ---------------------------------------------------------------- n8n

async function createWebhookWorkflow(label) {
  const workflow = await createWorkflow(`e2e status ${run} ${label}`);
  created.workflows.push(workflow.id);
  return workflow;
}

// ---------------------------------------------------------------- data

function newWorkspace(label) {
  const id = sql(`insert into campaigns.workspaces (name) values (${lit(`e2e status ${run} ${label}`)}) returning id`);
  created.workspaces.push(id);
  return id;
}

/** A paused campaign whose workflow n8n reported inactive. */
function insertCampaign(workspaceId, label, workflowId, workflowName = null) {
  const id = sql(`insert into campaigns.campaigns (workspace_id, name, status, n8n_workflow_id, n8n_workflow_name, n8n_status)
    values (${lit(workspaceId)}, ${lit(`e2e ${run} ${label}`)}, 'paused', ${lit(workflowId)}, ${lit(workflowName)}, 'inactive')
    returning id`);
  created.campaigns.push(id);
  return id;
}

/** A workflow id n8n does not have: only this file reports on it. */
function fakeWorkflowId() {
  const id = `e2e${randomBytes(8).toString("hex")}`;
  created.fakeWorkflows.push(id);
  return id;
}

function campaignRow(id) {
  return sqlJson(`select jsonb_build_object('status', status, 'n8n_status', n8n_status, 'version', version,
      'n8n_workflow_name', n8n_workflow_name, 'sync_source', sync_source, 'sync_error', sync_error,
      'last_sync_at', last_sync_at, 'last_status_change_at', last_status_change_at)
    from campaigns.campaigns where id = ${lit(id)}`);
}

function audit(campaignId) {
  return sqlJson(`select coalesce(jsonb_agg(to_jsonb(a) order by a.created_at, a.id), '[]')
    from campaigns.campaign_audit_log a where campaign_id = ${lit(campaignId)}`);
}

function eventRows(eventId) {
  return Number(sql(`select count(*) from campaigns.workflow_events where event_id = ${lit(eventId)}`));
}

/** What a refused request must leave as it was. */
function footprint(campaignId, workflowId) {
  return {
    campaign: campaignRow(campaignId),
    audit: audit(campaignId).length,
    events: Number(sql(`select count(*) from campaigns.workflow_events where workflow_id = ${lit(workflowId)}`)),
    failures: Number(sql(`select count(*) from campaigns.sync_failures where payload ->> 'workflow_id' = ${lit(workflowId)}`)),
  };
}

// ---------------------------------------------------------------- calls

const sign = (raw, secret = SECRET) => createHmac("sha256", secret).update(raw).digest("hex");

function statusEvent(workflowId, overrides = {}) {
  return {
    event_id: `e2e-${run}-${randomUUID()}`,
    workflow_id: workflowId,
    workflow_name: `e2e status ${run} renamed`,
    active: true,
    timestamp: new Date().toISOString(),
    event_type: "activation",
    actor: "e2e@switchyard.test",
    ...overrides,
  };
}

/**
 * POSTs a status event. Signed with the real secret unless `signature`
 * (a string, or null for none) or `secret` says otherwise.
 */
async function post(body, { signature, secret, headers = {}, raw } = {}) {
  const text = raw ?? JSON.stringify(body);
  const h = { "content-type": "application/json", ...headers };
  const sig = signature === undefined ? sign(text, secret) : signature;
  if (sig !== null) h["x-n8n-signature"] = sig;
  const response = await fetch(WEBHOOK_URL, { method: "POST", headers: h, body: text, signal: AbortSignal.timeout(WAIT) });
  const answer = await response.text();
  seen.push(answer);
  let json = null;
  try {
    json = JSON.parse(answer);
  } catch {}
  return { status: response.status, headers: response.headers, text: answer, json };
}

function assertEnvelope(answer, status, code) {
  assert.equal(answer.status, status, `status ${status} expected: ${answer.text}`);
  assert.equal(answer.json?.ok, false, answer.text);
  assert.equal(answer.json?.error?.code, code, `error.code ${code} expected: ${answer.text}`);
  assert.equal(typeof answer.json.error.message, "string");
  assert.equal(typeof answer.json.correlation_id, "string");
}

// ---------------------------------------------------------------- cleanup

after(async () => {
  const statuses = [];
  for (const id of created.workflows) {
    await n8n(`/workflows/${id}/unpublish`, "POST").catch(() => {});
    statuses.push(await deleteWorkflow(id).catch((e) => String(e)));
  }
  if (created.workflows.length) {
    const ids = created.workflows.map(lit).join(", ");
    await waitFor("n8n to report the deletions", () =>
      Number(sql(`select count(distinct workflow_id) from campaigns.workflow_events
                  where workflow_id in (${ids}) and event_type = 'deleted'`)) >= created.workflows.length,
    5_000, 100).catch(() => {});
  }
  const workflows = [...created.workflows, ...created.fakeWorkflows].map(lit).join(", ") || "null";
  const campaigns = created.campaigns.map(lit).join(", ") || "null";
  const workspaces = created.workspaces.map(lit).join(", ") || "null";
  sql(`delete from campaigns.sync_failures where campaign_id in (${campaigns}) or payload ->> 'workflow_id' in (${workflows});
       delete from campaigns.workflow_events where workflow_id in (${workflows});
       delete from campaigns.workspaces where id in (${workspaces})`);
  for (const body of seen) assert.ok(!body.includes(SECRET), "no answer contains the signing secret");
  assert.ok(statuses.every((s) => s === 200 || s === 404), `n8n deleted every workflow: ${statuses}`);
});

// ---------------------------------------------------------------- tests

test("changes made through n8n's own API reach the campaign through the status hooks", { timeout: 120_000 }, async () => {
  const ws = newWorkspace("real");
  const workflow = await createWebhookWorkflow("real");
  const campaign = insertCampaign(ws, "real", workflow.id, workflow.name);
  const start = campaignRow(campaign);
  const hint = "(does the running n8n load n8n/hooks/switchyard-status.js? its EXTERNAL_HOOK_FILES is set by scripts/dev n8n up)";

  // Publish in n8n.
  const published = await n8n(`/workflows/${workflow.id}/publish`, "POST");
  assert.equal(published.status, 200, JSON.stringify(published.json));
  let row;
  await waitFor(`the campaign to follow the publish ${hint}`, () => {
    row = campaignRow(campaign);
    return row.n8n_status === "active" && row.status === "active";
  }, WAIT, 100);
  assert.equal(row.sync_source, "webhook");
  assert.equal(row.version, start.version + 1);
  assert.ok(row.last_sync_at);
  let trail = audit(campaign);
  assert.equal(trail.length, 1, JSON.stringify(trail));
  assert.match(trail[0].user_id, /^n8n:/, "the audit names n8n's user");
  assert.equal(trail[0].source, "webhook");
  assert.equal(trail[0].action, "activated");
  assert.equal(trail[0].outcome, "changed");
  assert.equal(trail[0].old_status, "paused");
  assert.equal(trail[0].new_status, "active");
  assert.equal(trail[0].n8n_response?.workflow_id, workflow.id, "the event is kept with the audit");

  // Unpublish in n8n.
  const unpublished = await n8n(`/workflows/${workflow.id}/unpublish`, "POST");
  assert.equal(unpublished.status, 200, JSON.stringify(unpublished.json));
  await waitFor(`the campaign to follow the unpublish ${hint}`, () => {
    row = campaignRow(campaign);
    return row.n8n_status === "inactive" && row.status === "paused";
  }, WAIT, 100);
  assert.equal(row.sync_source, "webhook");
  trail = audit(campaign);
  assert.equal(trail.at(-1).action, "deactivated");
  assert.match(trail.at(-1).user_id, /^n8n:/);
  assert.equal(trail.at(-1).source, "webhook");

  // Rename in n8n (a save: PUT with the whole workflow).
  const newName = `${workflow.name} renamed`;
  const renamed = await n8n(`/workflows/${workflow.id}`, "PUT", {
    name: newName,
    nodes: workflow.nodes,
    connections: workflow.connections ?? {},
    settings: { executionOrder: "v1" },
  });
  assert.equal(renamed.status, 200, JSON.stringify(renamed.json));
  await waitFor(`the campaign to take the new name ${hint}`, () => {
    row = campaignRow(campaign);
    return row.n8n_workflow_name === newName;
  }, WAIT, 100);
  assert.equal(row.status, "paused", "a rename does not change the status");
  assert.equal(row.n8n_status, "inactive");

  // Delete in n8n (unpublished above; DELETE may answer 409 briefly).
  assert.equal(await deleteWorkflow(workflow.id), 200);
  await waitFor(`the campaign to see the deletion ${hint}`, () => {
    row = campaignRow(campaign);
    return row.n8n_status === "deleted";
  }, WAIT, 100);
  assert.equal(row.status, "paused");
  assert.match(row.sync_error ?? "", /deleted/);
  assert.equal(trail.length + 1, audit(campaign).length, "the deletion is audited");
});

test("a signed event is applied once; its duplicate and an older event are acknowledged and change nothing", async () => {
  const ws = newWorkspace("signed");
  const workflowId = fakeWorkflowId();
  const campaign = insertCampaign(ws, "signed", workflowId, "before");
  const start = campaignRow(campaign);

  const event = statusEvent(workflowId);
  const raw = JSON.stringify(event);
  const applied = await post(event, { raw });
  assert.equal(applied.status, 200, applied.text);
  assert.equal(applied.json.ok, true);
  assert.deepEqual(
    { duplicate: applied.json.duplicate, applied: applied.json.applied, stale: applied.json.stale, queued: applied.json.queued },
    { duplicate: false, applied: 1, stale: 0, queued: false },
  );
  let row = campaignRow(campaign);
  assert.equal(row.status, "active");
  assert.equal(row.n8n_status, "active");
  assert.equal(row.n8n_workflow_name, event.workflow_name);
  assert.equal(row.sync_source, "webhook");
  assert.equal(row.version, start.version + 1);
  assert.equal(new Date(row.last_sync_at).getTime(), new Date(event.timestamp).getTime(), "last_sync_at is the event's time");
  assert.equal(eventRows(event.event_id), 1);
  const trail = audit(campaign);
  assert.equal(trail.length, 1);
  assert.equal(trail[0].user_id, `n8n:${event.actor}`);
  assert.equal(trail[0].source, "webhook");
  assert.equal(trail[0].action, "activated");

  // The same body again: acknowledged, not applied.
  const before = footprint(campaign, workflowId);
  const duplicate = await post(event, { raw });
  assert.equal(duplicate.status, 200, duplicate.text);
  assert.equal(duplicate.json.duplicate, true);
  assert.equal(duplicate.json.applied, 0);
  assert.deepEqual(footprint(campaign, workflowId), before, "the duplicate changed nothing");

  // Older than what the campaign shows (still within the 5-minute window).
  const older = statusEvent(workflowId, {
    event_type: "deactivation",
    active: false,
    workflow_name: "older name",
    timestamp: new Date(new Date(row.last_sync_at).getTime() - 60_000).toISOString(),
  });
  const stale = await post(older);
  assert.equal(stale.status, 200, stale.text);
  assert.equal(stale.json.duplicate, false);
  assert.equal(stale.json.applied, 0);
  assert.equal(stale.json.stale, 1, "counted stale");
  assert.deepEqual(campaignRow(campaign), before.campaign, "the stale event changed nothing");
  assert.equal(audit(campaign).length, before.audit);

  // A newer deactivation is applied.
  const newer = await post(statusEvent(workflowId, { event_type: "deactivation", active: false }));
  assert.equal(newer.status, 200, newer.text);
  assert.equal(newer.json.applied, 1);
  row = campaignRow(campaign);
  assert.equal(row.status, "paused");
  assert.equal(row.n8n_status, "inactive");
  assert.equal(audit(campaign).at(-1).action, "deactivated");
});

test("refused events write nothing and never echo the secret or the expected signature", async () => {
  const ws = newWorkspace("refused");
  const workflowId = fakeWorkflowId();
  const campaign = insertCampaign(ws, "refused", workflowId);
  const before = footprint(campaign, workflowId);
  const refusedIds = [];
  const attempt = async (body, options) => {
    if (body?.event_id) refusedIds.push(body.event_id);
    return post(body, options);
  };

  // A wrong signature.
  const forged = statusEvent(workflowId);
  const forgedRaw = JSON.stringify(forged);
  const badSig = await attempt(forged, { raw: forgedRaw, secret: "not-the-secret-0123456789abcdef0123456789abcdef" });
  assertEnvelope(badSig, 401, "invalid_signature");
  assert.ok(!badSig.text.includes(sign(forgedRaw)), "the expected signature is not disclosed");
  assert.ok(!badSig.text.includes(SECRET));

  // A signature of another body.
  const swapped = statusEvent(workflowId);
  assertEnvelope(await attempt(swapped, { signature: sign(JSON.stringify({ ...swapped, active: false })) }), 401, "invalid_signature");

  // No signature at all; one that is not hex.
  const unsigned = await attempt(statusEvent(workflowId), { signature: null });
  assertEnvelope(unsigned, 400, "missing_header");
  assert.equal(unsigned.json.error.details?.header, "x-n8n-signature");
  assertEnvelope(await attempt(statusEvent(workflowId), { signature: "not-hex" }), 400, "invalid_header");

  // Correctly signed, but 10 minutes old (and 10 minutes ahead).
  const old = statusEvent(workflowId, { timestamp: new Date(Date.now() - 10 * 60_000).toISOString() });
  assertEnvelope(await attempt(old), 401, "timestamp_out_of_window");
  const ahead = statusEvent(workflowId, { timestamp: new Date(Date.now() + 10 * 60_000).toISOString() });
  assertEnvelope(await attempt(ahead), 401, "timestamp_out_of_window");

  // Correctly signed, invalid payloads: the problem is named by its field.
  const fieldsOf = (answer) => (answer.json.error.details ?? []).map((p) => p.field);
  const badType = await attempt(statusEvent(workflowId, { event_type: "exploded" }));
  assertEnvelope(badType, 422, "validation_failed");
  assert.deepEqual(fieldsOf(badType), ["event_type"]);
  const contradiction = await attempt(statusEvent(workflowId, { active: false }));
  assertEnvelope(contradiction, 422, "validation_failed");
  assert.deepEqual(fieldsOf(contradiction), ["active"]);
  const badWorkflow = await attempt(statusEvent("not a workflow id!"));
  assertEnvelope(badWorkflow, 422, "validation_failed");
  assert.deepEqual(fieldsOf(badWorkflow), ["workflow_id"]);
  const badTime = await attempt(statusEvent(workflowId, { timestamp: "yesterday" }));
  assertEnvelope(badTime, 422, "validation_failed");
  assert.deepEqual(fieldsOf(badTime), ["timestamp"]);
  assertEnvelope(await attempt(null, { raw: "{not json" }), 400, "invalid_json");

  assert.deepEqual(footprint(campaign, workflowId), before, "the refusals wrote nothing");
  for (const id of refusedIds) assert.equal(eventRows(id), 0, `no workflow_events row for ${id}`);
  for (const body of seen) assert.ok(!body.includes(SECRET), "no answer contains the secret");
});

test("Standard Webhooks signatures are refused: not enabled here", { skip: env.N8N_STATUS_WEBHOOK_STANDARD_SECRET ? "N8N_STATUS_WEBHOOK_STANDARD_SECRET is configured" : false }, async () => {
  const ws = newWorkspace("standard");
  const workflowId = fakeWorkflowId();
  const campaign = insertCampaign(ws, "standard", workflowId);
  const before = footprint(campaign, workflowId);
  const event = statusEvent(workflowId);
  const raw = JSON.stringify(event);
  const id = `msg_${randomBytes(8).toString("hex")}`;
  const ts = Math.floor(Date.now() / 1000);
  const key = randomBytes(32);
  const signature = `v1,${createHmac("sha256", key).update(`${id}.${ts}.${raw}`).digest("base64")}`;
  const answer = await post(event, {
    raw,
    signature: null,
    headers: { "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": signature },
  });
  assertEnvelope(answer, 401, "invalid_signature");
  assert.match(answer.json.error.message, /not enabled/);
  // Even with a valid x-n8n-signature alongside: the Standard headers decide.
  const both = await post(event, {
    raw,
    headers: { "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": signature },
  });
  assertEnvelope(both, 401, "invalid_signature");
  assert.deepEqual(footprint(campaign, workflowId), before);
  assert.equal(eventRows(event.event_id), 0);
});

/**
 * Another session holds the campaign row for 6 s (`lockClause`); a valid
 * event meanwhile is answered 202 {queued} after apply_workflow_event's 2 s
 * lock_timeout, kept in campaigns.sync_failures, and applied by the retry.
 */
async function queuedWhileHeld(label, lockClause) {
  const ws = newWorkspace(label);
  const workflowId = fakeWorkflowId();
  const campaign = insertCampaign(ws, label, workflowId);
  const start = campaignRow(campaign);

  const appName = `e2e-status-lock-${run}-${label}`;
  const holder = spawn("psql", [env.DB_URL, "-qAtX", "-v", "ON_ERROR_STOP=1",
    "-c", "begin",
    "-c", `select id from campaigns.campaigns where id = ${lit(campaign)} ${lockClause}`,
    "-c", "select pg_sleep(6)",
    "-c", "commit"], { env: { ...process.env, PGAPPNAME: appName }, stdio: ["ignore", "ignore", "pipe"] });
  let holderError = "";
  holder.stderr.on("data", (d) => (holderError += d));
  const holderDone = new Promise((resolve) => holder.on("exit", resolve));
  try {
    await waitFor("the other session to hold the row", () =>
      sql(`select count(*) from pg_stat_activity where application_name = ${lit(appName)}
           and state = 'active' and query like '%pg_sleep%'`) === "1", 10_000, 25);

    const event = statusEvent(workflowId);
    const sent = Date.now();
    const queued = await post(event);
    const took = Date.now() - sent;
    assert.equal(queued.status, 202, queued.text);
    assert.equal(queued.json.ok, true);
    assert.equal(queued.json.queued, true);
    assert.equal(queued.json.applied, 0);
    assert.ok(took >= 1_900 && took < 5_500, `waited about 2 s for the lock (${took} ms)`);

    const failure = sqlJson(`select to_jsonb(f) from campaigns.sync_failures f where payload ->> 'event_id' = ${lit(event.event_id)}`);
    assert.ok(failure, "a sync_failures row keeps the event");
    assert.equal(failure.campaign_id, campaign);
    assert.equal(failure.source, "webhook");
    assert.equal(failure.resolved_at, null);
    assert.equal(failure.payload.workflow_id, workflowId);
    assert.equal(failure.payload.active, true);
    assert.equal(failure.payload.event_type, "activation");
    assert.deepEqual(campaignRow(campaign), start, "the campaign is unchanged while it is held");
    assert.equal(audit(campaign).length, 0);

    assert.equal(await Promise.race([holderDone, sleep(15_000).then(() => "timeout")]), 0, `the lock holder finished: ${holderError}`);

    sql(`update campaigns.sync_failures set next_retry_at = now() where id = ${lit(failure.id)}`);
    const retried = sqlJson("select campaigns.retry_sync_failures()");
    assert.equal(typeof retried.resolved, "number", JSON.stringify(retried));
    // pg_cron runs the same retry every minute (skipping rows another run holds): either resolves it.
    let resolved;
    await waitFor("the sync failure to be resolved", () => {
      resolved = sqlJson(`select to_jsonb(f) from campaigns.sync_failures f where id = ${lit(failure.id)}`);
      return resolved.resolved_at !== null;
    }, 15_000, 100);
    assert.ok(resolved.retry_count >= 1);

    const row = campaignRow(campaign);
    assert.equal(row.status, "active");
    assert.equal(row.n8n_status, "active");
    assert.equal(row.sync_source, "webhook");
    assert.equal(row.n8n_workflow_name, event.workflow_name);
    assert.equal(new Date(row.last_sync_at).getTime(), new Date(event.timestamp).getTime());
    const trail = audit(campaign);
    assert.equal(trail.length, 1, JSON.stringify(trail));
    assert.equal(trail[0].user_id, `n8n:${event.actor}`);
    assert.equal(eventRows(event.event_id), 1, "the event is recorded as seen once");

    // The event delivered again (the sender retrying): a duplicate.
    const again = await post(event);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.duplicate, true);
  } finally {
    if (holder.exitCode === null) holder.kill("SIGTERM");
    await Promise.race([holderDone, sleep(10_000)]);
  }
}

// An UPDATE of the row (FOR NO KEY UPDATE): the queued event's foreign key
// to the campaign is not blocked by it.
test("an event for a campaign row held by an update is queued (202) and applied by the retry", { timeout: 60_000 }, () =>
  queuedWhileHeld("queued-update", "for no key update"));

// SELECT ... FOR UPDATE, as toggle_begin, toggle_finish and the reconciler
// hold campaign rows.
test("an event for a campaign row held FOR UPDATE is queued (202) and applied by the retry", { timeout: 60_000 }, () =>
  queuedWhileHeld("queued-for-update", "for update"));
