// The ops console (functions/ops-console/web) in headless Debian Chromium
// driven by playwright-core, against the running stack: the page served by
// ops-console, an operator's session minted as `scripts/dev session` does,
// and real data made through the real paths (signed events through
// odoo-webhook dead-lettered by the router against a local receiver that
// answers 500; a production run waiting for approval that ops-runner then
// deploys against the GitHub stand-in; an agent's approval handle; a dead
// job; health samples; a campaign out of sync).
//
//   flock -o /tmp/switchyard-e2e.lock node --test tests/e2e/ops_console.test.mjs
//
// Screenshots go to .local/screenshots/ops-console-*.png; the overview's
// first paint with 100,000 extra outbox rows is measured and written to
// .local/ops-console-paint.json.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { ROOT, assertPageFunction, env, event, postSigned, runRouter, sql, startReceiver, waitFor } from "./helpers.mjs";
import { consoleUrl, DEMO_USERS, mintSession } from "../../scripts/local/session.mjs";
import { N8N_URL, n8n } from "./n8n.mjs";

const CHROMIUM = "/usr/bin/chromium";
const CONSOLE = env.CONSOLE_URL || `${env.API_URL}/functions/v1/ops-console/`;
const BASE = new URL(CONSOLE).origin;
const SCREENSHOTS = path.join(ROOT, ".local/screenshots");
const WAIT = 15_000;
const RUN_WAIT = 150_000; // pg_cron's minute is the runner's safety net
const PERF_ROWS = 100_000;

const tag = randomBytes(4).toString("hex");
const prefix = `console${tag}`;
const ROUTE_SECRET = "whsec_" + Buffer.from(`console-route-secret-${tag}`.padEnd(32, "x")).toString("base64");
const lit = (s) => `'${String(s).replaceAll("'", "''")}'`;
const sqlJson = (query) => {
  const out = sql(query);
  return out === "" ? null : JSON.parse(out);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let browser;
let receiver;
let healthy = false;
const made = { events: {}, runId: null, handle: null, jobId: null, serviceId: null, workspaceId: null };

function session(email) {
  const user = DEMO_USERS[email];
  return mintSession({ sub: user.sub, email, appMetadata: user.appMetadata, base: BASE });
}

/** A page signed in as `email`, on `hash`; page errors fail the test that reads them. */
async function openConsole(email, { hash = "", viewport = { width: 1280, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(error.message));
  await page.goto(consoleUrl(session(email), BASE));
  await page.locator("#console").waitFor({ state: "visible", timeout: WAIT });
  if (hash) await page.evaluate((h) => (location.hash = h), hash);
  return page;
}

async function shot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `ops-console-${name}.png`), fullPage: true });
}

function outboxRow(id) {
  return sqlJson(`select jsonb_build_object('status', status, 'attempts', attempts) from integration.outbox_and_archive where id = ${lit(id)}`);
}

/** Runs the router, as an operator would, until `check` holds (bounded). */
async function deliverUntil(what, check) {
  await waitFor(what, async () => {
    if (check()) return true;
    await runRouter();
    return check();
  }, 3 * WAIT, 1100);
}

/** Events of `type` through odoo-webhook (signed), dead after three attempts against the failing receiver. */
async function deadLetters(type, count) {
  const ids = [];
  for (let i = 0; i < count; i++) {
    const answer = await postSigned(event({ event_type: type }));
    assert.equal(answer.status, 200, answer.text);
    ids.push(answer.json.event_id);
  }
  return ids;
}

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  receiver = await startReceiver(() => (healthy ? { status: 200 } : { status: 500, body: "boom" }));
  sql(`insert into integration.routes (event_pattern, target_url, signing_secret, timeout_ms, max_concurrency)
       values (${lit(`${prefix}.*`)}, ${lit(`${receiver.url}/hooks`)}, ${lit(ROUTE_SECRET)}, 5000, 8)`);
  sql("update integration.delivery_policy set backoff_seconds = '{1,1}'");
  made.events.order = await deadLetters(`${prefix}.order.created`, 2);
  made.events.invoice = await deadLetters(`${prefix}.invoice.created`, 1);
  const all = [...made.events.order, ...made.events.invoice];
  // Three attempts each, a second apart. The router is run here rather than
  // waited for: after a Postgres restart (an earlier test's) the database's
  // wake-up can wait for pg_cron's minute.
  await deliverUntil("three dead letters", () => all.every((id) => outboxRow(id).status === "failed"));
  sql("update integration.delivery_policy set backoff_seconds = '{30,90,300}'");

  // A deploy to production (protected) waiting for someone other than its requester.
  made.runId = sqlJson(`select ops.queue_run(p_project_id := 'test-project', p_env := 'production',
    p_git_sha := ${lit(randomBytes(20).toString("hex"))}, p_git_ref := 'refs/heads/main',
    p_requested_by := ${lit(`ci-bot-${tag}`)})`).run_id;
  // An agent asks to redrive the invoice dead letter; a person decides.
  made.handle = sqlJson(`select ops.request_action('redrive_dead_letters',
    ${lit(JSON.stringify({ event_pattern: `${prefix}.invoice.*` }))}::jsonb, ${lit(`agent:${tag}`)}, 'mcp')`).handle;
  // A dead job.
  made.jobType = `console.${tag}`;
  made.jobId = sqlJson(`select observability.enqueue_job('e2e', ${lit(made.jobType)}, max_attempts => 1)`).job_id;
  sql(`select observability.fail_job(${lit(made.jobId)}, 'console test failure')`);
  // A service with health samples (disabled: nothing probes it).
  made.serviceId = sql(`insert into observability.services (name, url, enabled)
    values (${lit(`console-${tag}`)}, 'http://127.0.0.1:9/', false) returning id`);
  for (const [status, ms] of [["healthy", 40], ["healthy", 55], ["degraded", 900], ["failing", 5000], ["healthy", 60]]) {
    sql(`select observability.record_health(${made.serviceId}, ${lit(status)}, ${ms}, 200)`);
  }
  // A campaign n8n disagrees with.
  made.workspaceId = sql(`insert into campaigns.workspaces (name) values (${lit(`Console ${tag}`)}) returning id`);
  sql(`insert into campaigns.campaigns (workspace_id, name, status, n8n_workflow_id, n8n_workflow_name, n8n_status, sync_error)
       values (${lit(made.workspaceId)}, ${lit(`Drifted ${tag}`)}, 'active', 'wf-${tag}', 'wf', 'inactive', 'n8n refused the change')`);
});

after(async () => {
  await browser?.close();
  await receiver?.close();
  sql(`delete from integration.routes where event_pattern = ${lit(`${prefix}.*`)}`);
  sql("update integration.delivery_policy set backoff_seconds = '{30,90,300}'");
  sql(`delete from integration.outbox_archive where source = 'e2eperf'`);
  if (made.runId) {
    sql(`select ops.cancel_run(run_id, 'e2e cleanup') from ops.runs
         where run_id = ${lit(made.runId)} and status not in ('success', 'failed', 'cancelled', 'rejected')`);
  }
  if (made.handle) {
    sql(`select ops.decide_action(handle, false, 'e2e cleanup', 'e2e-cleanup') from ops.action_requests
         where handle = ${lit(made.handle)} and status = 'awaiting_approval'`);
  }
  if (made.jobId) sql(`select observability.cancel_job(${lit(made.jobId)}, 'e2e cleanup', 'e2e') from observability.jobs
    where id = ${lit(made.jobId)} and status not in ('succeeded', 'cancelled')`);
  if (made.serviceId) sql(`delete from observability.services where id = ${made.serviceId}`);
  if (made.workspaceId) {
    sql(`delete from campaigns.campaigns where workspace_id = ${lit(made.workspaceId)}`);
    sql(`delete from campaigns.workspaces where id = ${lit(made.workspaceId)}`);
  }
  sql(`select ops.unlock_environment('test-project', ${lit(`e2e-console-${tag}`)}) from ops.environment_locks
       where project_id = 'test-project' and env = ${lit(`e2e-console-${tag}`)} and frozen`);
});

// ---------------------------------------------------------------- overview

test("the overview shows the bus, jobs, services with samples, runs in flight, approvals and drift", async () => {
  const page = await openConsole("olivia@switchyard.test");
  await page.locator("#bus-counts .stat").first().waitFor({ timeout: WAIT });
  const overview = sqlJson("select ops.console_overview()");
  const stat = (label) => page.locator("#bus-counts .stat", { hasText: label }).locator("dd").innerText();
  assert.equal(await stat("Dead letters"), Number(overview.bus.by_status.failed ?? 0).toLocaleString("en-US"));
  assert.ok(Number(overview.bus.by_status.failed) >= 3);
  assert.equal(await page.locator("#bus-chart svg polyline").count(), 2, "received and delivered lines");
  assert.match(await page.locator("#bus-chart-caption").innerText(), /received \d+.*delivered \d+.*dead-lettered \d+/s);
  assert.ok(Number((await page.locator("#bus-chart-caption .key-dead").innerText()).replace(/\D/g, "")) >= 3);

  const service = page.locator("#services-rows tr", { hasText: `console-${tag}` });
  await service.waitFor({ timeout: WAIT });
  assert.equal(await service.locator("rect.sample").count(), 5);
  assert.equal(await service.locator("rect.sample-failing").count(), 1);
  assert.match(await service.innerText(), /80\.0 %/, "4 of 5 samples up");

  const run = page.locator("#inflight-rows tr", { hasText: made.runId });
  assert.match(await run.innerText(), /awaiting_approval/);
  assert.match(await page.locator("#approvals-summary").innerText(), /\d+ waiting/);
  const drift = page.locator("#drift-rows tr", { hasText: `Drifted ${tag}` });
  assert.match(await drift.innerText(), /n8n refused the change/);
  assert.match(await page.locator("#overview-freshness").innerText(), /refreshes every 10 s/);
  await shot(page, "overview");

  // Live: a new dead letter shows at the next poll without a reload.
  const before = Number(overview.bus.by_status.failed);
  sql(`insert into integration.outbox (source, idempotency_key, event_type, aggregate_type, aggregate_id, payload,
         correlation_id, status, dead_at, last_error)
       values ('e2econsole', 'console-poll-' || gen_random_uuid(), 'console.poll', 'console', '1', '{}',
         'console-poll', 'failed', now(), 'console poll')`);
  await waitFor("the poll to show the new dead letter", async () =>
    (await stat("Dead letters")) === (before + 1).toLocaleString("en-US"), 25_000, 500);
  sql(`delete from integration.outbox where source = 'e2econsole'`);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("readable on a phone-sized screen: no sideways scrolling of the page", async () => {
  const page = await openConsole("olivia@switchyard.test", { viewport: { width: 390, height: 844 } });
  await page.locator("#bus-counts .stat").first().waitFor({ timeout: WAIT });
  const widths = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, viewport: innerWidth }));
  assert.ok(widths.page <= widths.viewport, `the page is ${widths.page} px wide in a ${widths.viewport} px viewport`);
  await shot(page, "overview-phone");
  await page.evaluate(() => (location.hash = "#/dead-letters"));
  await page.locator("#dead-rows tr").first().waitFor({ timeout: WAIT });
  const dead = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, viewport: innerWidth }));
  assert.ok(dead.page <= dead.viewport, `dead letters: ${dead.page} px in ${dead.viewport} px`);
  await shot(page, "dead-letters-phone");
  await page.context().close();
});

// ---------------------------------------------------------------- dead letters

test("dead letters: filter, dry run (changes nothing), then a confirmed redrive delivers them", async () => {
  const page = await openConsole("olivia@switchyard.test", { hash: "#/dead-letters" });
  await page.locator("#dead-summary").filter({ hasText: "match" }).waitFor({ timeout: WAIT });
  await page.fill("#dead-filter input[name=event_pattern]", `${prefix}.order.*`);
  await page.fill("#dead-filter input[name=error_contains]", "HTTP 500");
  await page.click("#dead-filter button[type=submit]");
  await page.locator("#dead-summary", { hasText: "2 dead letters match" }).waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#dead-rows tr").count(), 2);
  assert.match(await page.locator("#dead-rows").innerText(), /HTTP 500: boom/);

  // The dry run counts, by keyboard, and changes nothing.
  const logBefore = Number(sql("select count(*) from integration.redrive_log"));
  await page.focus("#redrive-dry-run");
  await page.keyboard.press("Enter");
  await page.locator("#redrive-result", { hasText: "2 dead events match" }).waitFor({ timeout: WAIT });
  for (const id of made.events.order) assert.equal(outboxRow(id).status, "failed", "a dry run changes nothing");
  const dry = sqlJson("select to_jsonb(l) from integration.redrive_log l order by id desc limit 1");
  assert.equal(dry.requested_by, "olivia@switchyard.test", "audited under the operator's own name");
  assert.equal(dry.dry_run, true);
  assert.equal(dry.matched, 2);
  assert.equal(Number(sql("select count(*) from integration.redrive_log")), logBefore + 1);
  assert.equal(await page.locator("#redrive-run").innerText(), "Redrive 2…");
  await shot(page, "dead-letters");

  // Escape cancels the confirmation: nothing is redriven.
  await page.focus("#redrive-run");
  await page.keyboard.press("Enter");
  await page.locator("#confirm[open]").waitFor({ timeout: WAIT });
  assert.equal(await page.evaluate(() => document.activeElement.id), "confirm-ok", "the dialog takes focus");
  await shot(page, "redrive-confirm");
  await page.keyboard.press("Escape");
  await page.locator("#confirm").waitFor({ state: "hidden", timeout: WAIT });
  for (const id of made.events.order) assert.equal(outboxRow(id).status, "failed");

  // Confirmed: the router delivers them to the (now healthy) receiver.
  healthy = true;
  await page.click("#redrive-run");
  await page.click("#confirm-ok");
  await page.locator(".toast-success", { hasText: "Redriven 2 of 2" }).waitFor({ timeout: WAIT });
  await deliverUntil("the redriven events to be delivered", () =>
    made.events.order.every((id) => outboxRow(id).status === "completed"));
  assert.equal(outboxRow(made.events.invoice[0]).status, "failed", "only what the filter matched moved");
  const real = sqlJson("select to_jsonb(l) from integration.redrive_log l order by id desc limit 1");
  assert.deepEqual([real.requested_by, real.dry_run, real.matched, real.redriven], ["olivia@switchyard.test", false, 2, 2]);
  await page.locator("#redrive-log-rows tr", { hasText: "olivia@switchyard.test" }).first().waitFor({ timeout: WAIT });
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("a redrive the server refuses (no filter) says why and writes nothing", async () => {
  const page = await openConsole("olivia@switchyard.test", { hash: "#/dead-letters" });
  await page.locator("#dead-summary").filter({ hasText: "match" }).waitFor({ timeout: WAIT });
  const logBefore = sql("select count(*) from integration.redrive_log");
  await page.click("#redrive-dry-run");
  await page.locator(".toast", { hasText: "needs an explicit filter" }).waitFor({ timeout: WAIT });
  assert.equal(sql("select count(*) from integration.redrive_log"), logBefore);
  assert.equal(await page.locator("#redrive-run").isDisabled(), true);
  await page.context().close();
});

// ---------------------------------------------------------------- runs, approvals, jobs

test("approving from the console lets the waiting run proceed to a deploy", async () => {
  const page = await openConsole("olivia@switchyard.test", { hash: "#/runs" });
  const pending = page.locator("#pending-rows tr", { hasText: made.runId });
  await pending.waitFor({ timeout: WAIT });
  assert.match(await pending.innerText(), new RegExp(`ci-bot-${tag}`));
  await page.locator("#pending-rows tr", { hasText: made.handle }).waitFor({ timeout: WAIT });
  await page.locator("#env-rows tr", { hasText: "test-project/production" }).waitFor({ timeout: WAIT });
  await page.locator("#run-rows tr").first().waitFor({ timeout: WAIT });
  await page.locator("#job-rows tr").first().waitFor({ timeout: WAIT });
  await shot(page, "runs");

  await pending.getByRole("button", { name: "Approve" }).click();
  await page.fill("#confirm-input", "approved from the console");
  await page.click("#confirm-ok");
  await page.locator(".toast-success", { hasText: `Approved ${made.runId}` }).waitFor({ timeout: WAIT });
  const approval = sqlJson(`select to_jsonb(a) from ops.approvals a where run_id = ${lit(made.runId)}`);
  assert.deepEqual([approval.status, approval.decided_by, approval.comment],
    ["approved", "olivia@switchyard.test", "approved from the console"]);
  let nudged = Date.now();
  const run = await waitFor("the run to deploy", async () => {
    const r = sqlJson(`select jsonb_build_object('status', status, 'phase', phase) from ops.runs where run_id = ${lit(made.runId)}`);
    if (["success", "failed"].includes(r.status)) return r;
    // The database wakes the runner; pg_cron's minute is the safety net. A run
    // still waiting after 10 s gets the runner invoked, as an operator would.
    if (Date.now() - nudged > 10_000) {
      nudged = Date.now();
      await fetch(`${env.FUNCTIONS_URL}/ops-runner`, { method: "POST", headers: {
        authorization: `Bearer ${env.OPS_RUNNER_INVOCATION_TOKEN}`, "content-type": "application/json" },
        body: '{"reason":"e2e"}' }).catch(() => {});
    }
    return null;
  }, RUN_WAIT, 250);
  assert.equal(run.status, "success");

  // Its timeline: phases with durations and the approval among the events.
  await page.evaluate((id) => (location.hash = `#/runs/${id}`), made.runId);
  await page.locator("#run-detail").waitFor({ state: "visible", timeout: WAIT });
  await page.locator("#run-phases li", { hasText: "artifacts" }).waitFor({ timeout: WAIT });
  assert.deepEqual(await page.locator("#run-phases li strong").allInnerTexts(), ["build", "deploy", "smoke", "artifacts"]);
  assert.match(await page.locator("#run-events").innerText(), /Approved by olivia@switchyard\.test/);
  assert.ok(await page.getByRole("button", { name: "Roll back to this…" }).isVisible());
  await shot(page, "run-detail");
  await page.context().close();
});

test("an agent's approval handle is decided from the console and runs in the approver's name", async () => {
  const page = await openConsole("olivia@switchyard.test", { hash: "#/runs" });
  const row = page.locator("#pending-rows tr", { hasText: made.handle });
  await row.waitFor({ timeout: WAIT });
  assert.match(await row.innerText(), new RegExp(`agent:${tag} via mcp`));
  await row.getByRole("button", { name: "Approve" }).click();
  await page.click("#confirm-ok");
  await page.locator(".toast-success", { hasText: made.handle }).waitFor({ timeout: WAIT });
  const handle = sqlJson(`select to_jsonb(a) from ops.action_requests a where handle = ${lit(made.handle)}`);
  assert.equal(handle.status, "done", JSON.stringify(handle));
  assert.equal(handle.decided_by, "olivia@switchyard.test");
  assert.notEqual(outboxRow(made.events.invoice[0]).status, "failed", "the agent's redrive ran");
  await page.context().close();
});

test("freeze and unfreeze an environment; requeue a dead job", async () => {
  const page = await openConsole("olivia@switchyard.test", { hash: "#/runs" });
  const envName = `e2e-console-${tag}`;
  await page.locator("#freeze-form select[name=project_id] option").first().waitFor({ state: "attached", timeout: WAIT });
  await page.selectOption("#freeze-form select[name=project_id]", "test-project");
  await page.fill("#freeze-form input[name=env]", envName);
  await page.click("#freeze-form button[type=submit]");
  await page.fill("#confirm-input", "console e2e freeze");
  await page.click("#confirm-ok");
  await page.locator(".toast-success", { hasText: `Froze test-project/${envName}` }).waitFor({ timeout: WAIT });
  const lock = sqlJson(`select to_jsonb(l) from ops.environment_locks l where project_id = 'test-project' and env = ${lit(envName)}`);
  assert.deepEqual([lock.frozen, lock.frozen_by, lock.frozen_reason], [true, "olivia@switchyard.test", "console e2e freeze"]);
  const envRow = page.locator("#env-rows tr", { hasText: `test-project/${envName}` });
  await envRow.getByRole("button", { name: "Unfreeze" }).click();
  await page.click("#confirm-ok");
  await page.locator(".toast-success", { hasText: `Unfroze test-project/${envName}` }).waitFor({ timeout: WAIT });
  assert.equal(sql(`select frozen from ops.environment_locks where project_id = 'test-project' and env = ${lit(envName)}`), "f");

  await page.selectOption("#jobs-filter select[name=status]", "dead");
  await page.fill("#jobs-filter input[name=job_type]", made.jobType);
  await page.click("#jobs-filter button[type=submit]");
  const job = page.locator("#job-rows tr", { hasText: made.jobType });
  await job.waitFor({ timeout: WAIT });
  await job.getByRole("button", { name: "Requeue" }).click();
  await page.locator(".toast-success", { hasText: `Requeued the ${made.jobType} job` }).waitFor({ timeout: WAIT });
  assert.equal(sql(`select status from observability.jobs where id = ${lit(made.jobId)}`), "queued");
  const requeued = sqlJson(`select detail from observability.job_events where job_id = ${lit(made.jobId)}
    and to_status = 'queued' order by id desc limit 1`);
  assert.equal(requeued.requested_by, "olivia@switchyard.test");
  await page.context().close();
});

// ---------------------------------------------------------------- trace

test("a trace shows the path of a redriven event in time order with durations", async () => {
  const id = made.events.order[0];
  const correlationId = sql(`select correlation_id from integration.outbox_and_archive where id = ${lit(id)}`);
  const expected = sqlJson(`select jsonb_agg(jsonb_build_object('kind', kind, 'source', source) order by at)
    from ops.get_trace(${lit(correlationId)})`);
  assert.ok(expected.length >= 2, JSON.stringify(expected));
  const page = await openConsole("olivia@switchyard.test", { hash: "#/trace" });
  await page.fill("#trace-form input[name=correlation_id]", correlationId);
  await page.keyboard.press("Enter");
  await page.locator("#trace-summary", { hasText: `${expected.length} steps` }).waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#trace-rows li").count(), expected.length);
  assert.deepEqual(await page.locator("#trace-rows li strong").allInnerTexts(), expected.map((r) => r.kind));
  assert.equal(await page.locator("#trace-rows .step-gap").count(), expected.length - 1, "each later step says how long after the one before");
  assert.match(page.url(), new RegExp(`#/trace/${encodeURIComponent(correlationId)}$`), "a trace has a link to share");
  await shot(page, "trace");
  await page.context().close();
});

test("a trace reaches from the Odoo event to the n8n execution that handled it", async () => {
  // expense.* is routed to n8n's expense handler, which answers with its execution.
  const sent = await postSigned(event({ event_type: "expense.submitted" }));
  assert.equal(sent.status, 200, sent.text);
  const handled = () =>
    sqlJson(`select receipt from integration.outbox_and_archive where id = ${lit(sent.json.event_id)} and status = 'completed'`);
  await deliverUntil("n8n to handle the event", handled);
  const receipt = handled();
  // n8n stores an execution once it has finished, a moment after it answered.
  const execution = await waitFor("n8n to store the execution", async () => {
    const found = await n8n(`/executions/${receipt.execution_id}`, "GET", undefined, WAIT, { executions: true });
    return found.status === 200 && found.json.finished ? found : null;
  }, WAIT, 200);
  assert.equal(String(execution.json.workflowId), receipt.workflow_id, "the receipt names n8n's real execution");
  assert.equal(execution.json.status, "success");

  const page = await openConsole("olivia@switchyard.test", { hash: `#/trace/${sent.json.correlation_id}` });
  const delivered = page.locator("#trace-rows li", { hasText: "outbox.delivered" });
  await delivered.waitFor({ timeout: WAIT });
  const kinds = await page.locator("#trace-rows li strong").allInnerTexts();
  assert.deepEqual(kinds.slice(0, 3), ["event.received", "outbox.queued", "outbox.delivered"]);
  const link = delivered.locator(".step-receipt a");
  assert.equal(await link.innerText(), receipt.execution_id);
  assert.equal(await link.getAttribute("href"), `${N8N_URL}/workflow/${receipt.workflow_id}/executions/${receipt.execution_id}`);
  await shot(page, "trace-n8n");
  await page.context().close();
});

// ---------------------------------------------------------------- who sees what

test("a signed-in non-operator sees nothing operational, and the server refuses them too", async () => {
  const page = await openConsole("bob@acme.test");
  await page.locator("#not-operator").waitFor({ state: "visible", timeout: WAIT });
  for (const hash of ["#/overview", "#/dead-letters", "#/runs", "#/trace"]) {
    await page.evaluate((h) => (location.hash = h), hash);
    await sleep(300);
    assert.equal(await page.locator(".screen:visible").count(), 0, `${hash} shows no screen`);
  }
  assert.equal(await page.locator("#tabs").isVisible(), false);
  for (const id of ["#bus-counts", "#dead-rows", "#pending-rows", "#run-rows", "#job-rows", "#trace-rows"]) {
    assert.equal(await page.locator(`${id} > *`).count(), 0, `${id} is empty`);
  }
  await shot(page, "not-operator");
  const token = session("bob@acme.test").access_token;
  for (const [schema, fn] of [["ops", "console_overview"], ["integration", "list_dead_letters"]]) {
    const response = await fetch(`${env.REST_URL}/rpc/${fn}`, {
      method: "POST",
      headers: { apikey: env.ANON_KEY, authorization: `Bearer ${token}`, "content-profile": schema, "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(response.status, 403, `${fn}: ${await response.text()}`);
  }
  await page.context().close();
});

test("signed out, the console shows how to sign in and nothing else", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(CONSOLE);
  await page.locator("#signed-out").waitFor({ state: "visible", timeout: WAIT });
  assert.match(await page.locator("#signed-out").innerText(), /scripts\/dev session olivia@switchyard\.test --console/);
  assert.equal(await page.locator("#console").isVisible(), false);
  await context.close();
});

test("the function refuses what is not a page, and hands out the anon key only", () => assertPageFunction(CONSOLE));

// ---------------------------------------------------------------- speed

/** Milliseconds from navigation to the first paint and to the overview drawn with data, median of 3. */
async function paintTimes() {
  const samples = [];
  for (let i = 0; i < 3; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(consoleUrl(session("olivia@switchyard.test"), BASE));
    await page.locator("#bus-counts .stat").first().waitFor({ timeout: WAIT });
    samples.push(await page.evaluate(() => ({
      firstPaint: performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null,
      overview: performance.getEntriesByName("overview-rendered")[0]?.startTime ?? null,
    })));
    await context.close();
  }
  const median = (key) => samples.map((s) => s[key]).sort((a, b) => a - b)[1];
  return { firstPaint: Math.round(median("firstPaint")), overview: Math.round(median("overview")) };
}

test(`first paint of the overview, measured with and without ${PERF_ROWS.toLocaleString("en-US")} more outbox rows`, async (t) => {
  const base = await paintTimes();
  const rowsBefore = Number(sql("select count(*) from integration.outbox_and_archive"));
  // Delivered events spread over the last hour, as a busy bus leaves them: in
  // the archive, where the settle moves them (the hour may span two days).
  sql(`select integration.archive_partition(((now() - interval '1 hour') at time zone 'UTC')::date);
       insert into integration.outbox_archive (id, source, idempotency_key, event_type, aggregate_type, aggregate_id,
         payload, correlation_id, attempts, error_history, created_at, completed_at)
       select gen_random_uuid(), 'e2eperf', 'perf-' || g, 'perf.event', 'perf', g::text, '{}', 'perf-' || g, 1, '[]',
              now() - (g % 3600) * interval '1 second', now() - (g % 3600) * interval '1 second'
       from generate_series(1, ${PERF_ROWS}) g`);
  sql("analyze integration.outbox_archive");
  const loaded = await paintTimes();
  const rpcMs = sqlJson("explain (analyze, format json) select ops.console_overview()")[0]["Execution Time"];
  const figures = {
    outbox_rows: { before: rowsBefore, with_extra: rowsBefore + PERF_ROWS },
    first_contentful_paint_ms: { before: base.firstPaint, with_extra: loaded.firstPaint },
    overview_rendered_ms: { before: base.overview, with_extra: loaded.overview },
    ratio_overview_with_to_without: Number((loaded.overview / base.overview).toFixed(2)),
    console_overview_rpc_ms_with_extra: Math.round(rpcMs * 10) / 10,
  };
  writeFileSync(path.join(ROOT, ".local/ops-console-paint.json"), JSON.stringify(figures, null, 2));
  t.diagnostic(JSON.stringify(figures));
  sql(`delete from integration.outbox_archive where source = 'e2eperf'`);
  assert.ok(loaded.overview > 0 && base.overview > 0, "both runs drew the overview");
});
