// The campaign reconciler (campaign-sync) against the real n8n: one sweep
// repairs what the status webhooks missed. n8n's hooks report every change
// made through its API, so "missed" is staged the way it happens: the change
// is made in n8n, its report is awaited, then the campaign row is set back
// (a lost report, a database write that failed after n8n changed).
//
//   node --test --test-concurrency=1 tests/e2e/campaign_sync.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, env, sql, stack, waitFor } from "./helpers.mjs";
import { createWorkflow, isPublished, n8n, removeWorkflow, webhookRegistered } from "./n8n.mjs";
import { signJwt } from "../../scripts/local/session.mjs";

const SYNC_URL = `${env.FUNCTIONS_URL}/campaign-sync`;
const workspace = randomUUID();
const workflows = [];
let ids = {};

/** One sweep with ?wait=true; a sweep pg_cron started first is waited out. */
async function sweep() {
  let summary;
  await waitFor(
    "a sweep of our own",
    async () => {
      const response = await fetch(`${SYNC_URL}?wait=true`, {
        method: "POST",
        headers: { authorization: `Bearer ${env.CAMPAIGN_SYNC_INVOCATION_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ reason: "e2e" }),
      });
      const body = await response.json();
      assert.equal(response.status, 200, JSON.stringify(body));
      summary = body.summary;
      return !summary.skipped;
    },
    30_000,
    500,
  );
  return summary;
}

function mintUserJwt(sub) {
  const now = Math.floor(Date.now() / 1000);
  return signJwt({ sub, role: "authenticated", aud: "authenticated", iat: now, exp: now + 600 }, env.JWT_SECRET);
}

const campaign = (id) =>
  JSON.parse(sql(`select row_to_json(c) from campaigns.campaigns c where id = '${id}'`));
const audit = (id) =>
  sql(`select string_agg(concat_ws(' ', user_id, action, outcome, source, old_status || '>' || new_status), ' | '
         order by created_at) from campaigns.campaign_audit_log where campaign_id = '${id}'`);

/** Waits until the hook's report of `eventType` for a workflow has been applied. */
async function reported(workflowId, eventType) {
  await waitFor(`n8n's ${eventType} report of ${workflowId}`, () =>
    sql(`select count(*) from campaigns.workflow_events where workflow_id = '${workflowId}' and event_type = '${eventType}'`) !== "0");
}

function addCampaign(key, workflowId, extra = "") {
  ids[key] = randomUUID();
  sql(`insert into campaigns.campaigns (id, workspace_id, name, n8n_workflow_id) values
       ('${ids[key]}', '${workspace}', 'e2e sync ${key}', ${workflowId ? `'${workflowId}'` : "null"}); ${extra}`);
  return ids[key];
}

before(async () => {
  sql(`insert into campaigns.workspaces (id, name) values ('${workspace}', 'e2e sync ${workspace}')`);
  for (const key of ["drift", "dropped", "repaired", "abandoned"]) {
    const wf = await createWorkflow(`e2e sync ${key} ${workspace}`);
    workflows.push(wf);
    addCampaign(key, wf.id);
    ids[`${key}_wf`] = wf;
  }
  addCampaign("gone", `e2e-gone-${randomUUID().slice(0, 8)}`);
});

after(async () => {
  for (const wf of workflows) await removeWorkflow(wf.id);
  sql(`delete from campaigns.workspaces where id = '${workspace}'`);
});

test("refusals start no sweep", async () => {
  const runs = () => sql("select count(*) from campaigns.reconciler_runs");
  const before = runs();
  for (const [bearer, status, code] of [
    [null, 401, "unauthorized"],
    [env.ANON_KEY, 403, "forbidden"],
  ]) {
    const response = await fetch(`${SYNC_URL}?wait=true`, {
      method: "POST",
      headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
    });
    const body = await response.json();
    assert.equal(response.status, status);
    assert.equal(body.error.code, code);
  }
  const bad = await fetch(SYNC_URL, {
    method: "POST",
    headers: { authorization: `Bearer ${env.CAMPAIGN_SYNC_INVOCATION_TOKEN}` },
    body: JSON.stringify({ reason: "Not a reason!" }),
  });
  assert.equal(bad.status, 422);
  assert.equal((await bad.json()).error.code, "validation_failed");
  assert.equal(runs(), before, "no sweep was recorded");
});

/** Takes the reconciler as a sweep would (waiting out one in progress); its run id. */
async function holdReconciler() {
  let holder;
  await waitFor("the reconciler free", () => {
    holder = JSON.parse(sql("select campaigns.reconcile_begin('e2e-holder')")).run_id;
    return holder !== null;
  }, 30_000, 500);
  return holder;
}

test("one sweep at a time: a sweep in progress makes the next one a no-op", async () => {
  const holder = await holdReconciler();
  try {
    const response = await fetch(`${SYNC_URL}?wait=true`, {
      method: "POST",
      headers: { authorization: `Bearer ${env.CAMPAIGN_SYNC_INVOCATION_TOKEN}` },
    });
    const body = await response.json();
    assert.equal(response.status, 200);
    assert.equal(body.summary.skipped, true);
  } finally {
    sql(`select campaigns.reconcile_finish('${holder}')`);
  }
});

test("drift, deletions, a silently dropped workflow and unrecorded toggles are repaired in one sweep", async () => {
  // Held while the damage is set up: a scheduled sweep that started now
  // would repair part of it first, and ours would count less out of sync.
  const holder = await holdReconciler();
  // Drift: published in n8n, but the report never arrived.
  const drift = ids.drift_wf;
  assert.equal((await n8n(`/workflows/${drift.id}/publish`, "POST")).status, 200);
  await reported(drift.id, "activation");
  sql(`update campaigns.campaigns set status = 'paused', n8n_status = 'inactive', last_sync_at = now() - interval '1 hour'
       where id = '${ids.drift}'`);

  // Dropped: an active campaign whose workflow n8n unpublished without a word.
  const dropped = ids.dropped_wf;
  assert.equal((await n8n(`/workflows/${dropped.id}/publish`, "POST")).status, 200);
  await reported(dropped.id, "activation");
  assert.equal((await n8n(`/workflows/${dropped.id}/unpublish`, "POST")).status, 200);
  await reported(dropped.id, "deactivation");
  sql(`update campaigns.campaigns set status = 'active', n8n_status = 'active', last_sync_at = now() - interval '1 hour'
       where id = '${ids.dropped}'`);
  assert.equal(await webhookRegistered(dropped.path), false);

  // Repaired: a toggle that changed n8n but whose final write was lost.
  const repaired = ids.repaired_wf;
  assert.equal((await n8n(`/workflows/${repaired.id}/publish`, "POST")).status, 200);
  await reported(repaired.id, "activation");
  const toggle = randomUUID();
  sql(`update campaigns.campaigns set status = 'paused', n8n_status = 'inactive', last_sync_at = now() - interval '1 hour',
         toggle_id = '${toggle}', toggle_action = 'activate', toggle_user = 'e2e-user', toggle_expires_at = now() - interval '1 second'
       where id = '${ids.repaired}'`);

  // Abandoned: a toggle that stopped before n8n changed.
  sql(`update campaigns.campaigns set status = 'paused', n8n_status = 'inactive', last_sync_at = now() - interval '1 hour',
         toggle_id = gen_random_uuid(), toggle_action = 'activate', toggle_user = 'e2e-user', toggle_expires_at = now() - interval '1 second'
       where id = '${ids.abandoned}'`);

  sql(`select campaigns.reconcile_finish('${holder}')`);
  const summary = await sweep();
  assert.ok(summary.workflows_seen >= 4, JSON.stringify(summary));
  assert.ok(summary.summary.checked >= 5);
  assert.ok(summary.reconciled.toggles_settled >= 2);
  assert.ok(summary.reconciled.republish.some((r) => r.campaign_id === ids.dropped), JSON.stringify(summary.reconciled));
  assert.ok(summary.summary.republished >= 1);

  const driftNow = campaign(ids.drift);
  assert.deepEqual([driftNow.status, driftNow.n8n_status, driftNow.sync_source], ["active", "active", "cron"]);
  assert.match(audit(ids.drift), /system:reconciler activated changed cron paused>active$/);

  const droppedNow = campaign(ids.dropped);
  assert.deepEqual([droppedNow.status, droppedNow.n8n_status, droppedNow.sync_error], ["active", "active", null]);
  assert.equal(await isPublished(dropped.id), true, "n8n shows the workflow published again");
  assert.equal(await webhookRegistered(dropped.path), true, "and its webhook registered");
  assert.match(audit(ids.dropped), /system:reconciler republished repaired cron active>active$/);

  const repairedNow = campaign(ids.repaired);
  assert.deepEqual([repairedNow.status, repairedNow.n8n_status, repairedNow.toggle_id], ["active", "active", null]);
  assert.match(audit(ids.repaired), /e2e-user activated repaired cron paused>active/);
  assert.equal(sql(`select toggle_id from campaigns.campaign_audit_log where campaign_id = '${ids.repaired}' and outcome = 'repaired'`), toggle);

  const abandonedNow = campaign(ids.abandoned);
  assert.deepEqual([abandonedNow.status, abandonedNow.toggle_id], ["paused", null]);
  assert.match(audit(ids.abandoned), /e2e-user activated abandoned cron paused>paused/);

  const gone = campaign(ids.gone);
  assert.equal(gone.n8n_status, "deleted");
  assert.match(gone.sync_error, /deleted in n8n/);

  const run = JSON.parse(sql(`select row_to_json(r) from campaigns.reconciler_runs r where id = '${summary.summary.run_id}'`));
  assert.ok(run.finished_at && run.duration_ms >= 0 && run.error === null, JSON.stringify(run));
  assert.ok(run.campaigns_out_of_sync >= 3, "drift, dropped and gone were out of sync");
});

test("a toggle whose database write fails after n8n changed answers 503, and the next sweep repairs it", async () => {
  // A real fault, in order: n8n is stalled while the toggle claims the
  // campaign; PostgREST goes down; n8n resumes and publishes; toggle_finish
  // cannot be written.
  const wf = await createWorkflow(`e2e sync fault ${workspace}`);
  workflows.push(wf);
  const id = addCampaign("fault", wf.id);
  const user = randomUUID();
  sql(`insert into campaigns.workspace_members values ('${workspace}', '${user}', 'editor')`);
  const jwt = mintUserJwt(user);
  const n8nPid = Number(readFileSync(path.join(ROOT, ".local/n8n.pid"), "utf8"));
  let answer;
  process.kill(n8nPid, "SIGSTOP");
  try {
    const pending = fetch(`${env.FUNCTIONS_URL}/campaign-toggle`, {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}`, apikey: env.ANON_KEY, "content-type": "application/json" },
      body: JSON.stringify({ campaign_id: id, action: "activate" }),
    });
    await waitFor("the toggle's claim", () => sql(`select toggle_id is not null from campaigns.campaigns where id = '${id}'`) === "t");
    stack("stop_process postgrest");
    process.kill(n8nPid, "SIGCONT");
    const response = await pending;
    answer = { status: response.status, body: await response.json(), retryAfter: response.headers.get("retry-after") };
  } finally {
    process.kill(n8nPid, "SIGCONT");
    stack("start_postgrest");
  }
  assert.equal(answer.status, 503, JSON.stringify(answer.body));
  assert.equal(answer.body.error.code, "upstream_unavailable");
  assert.ok(Number(answer.retryAfter) > 0);
  assert.equal(await isPublished(wf.id), true, "n8n changed");
  const claimed = campaign(id);
  assert.equal(claimed.status, "paused", "the campaign's status was not written");
  assert.ok(claimed.toggle_id, "the claim stays until it expires");

  sql(`update campaigns.campaigns set toggle_expires_at = now() - interval '1 second' where id = '${id}'`);
  await sweep();
  const repaired = campaign(id);
  assert.deepEqual([repaired.status, repaired.n8n_status, repaired.toggle_id], ["active", "active", null]);
  assert.match(audit(id), new RegExp(`${user} activated repaired cron paused>active`));
});

test("a second sweep finds nothing left to repair for these campaigns", async () => {
  const since = sql("select clock_timestamp()");
  const summary = await sweep();
  for (const key of ["drift", "dropped", "repaired", "abandoned", "gone"]) {
    assert.ok(!summary.reconciled.republish.some((r) => r.campaign_id === ids[key]), key);
  }
  const changedSince = sql(`select count(*) from campaigns.campaign_audit_log
    where workspace_id = '${workspace}' and created_at > '${since}' and user_id = 'system:reconciler'`);
  assert.equal(changedSince, "0");
});
