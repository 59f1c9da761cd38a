// The campaign dashboard (functions/campaign-dashboard/web, seed Pillar 4 "The
// Optimistic Interface") in headless Debian Chromium driven by playwright-core,
// against the running stack: the dashboard served by campaign-dashboard, the
// session minted like scripts/dev session does and accepted by the gateway's
// Auth stand-in, campaign-toggle publishing real n8n workflows that this test
// creates through n8n's public API (one with a Webhook trigger, one with no
// trigger, which n8n refuses to publish).
//
//   node --test tests/e2e/campaign_dashboard.test.mjs
//
// Needs /usr/bin/chromium (Debian's chromium; scripts/dev up installs it) and
// playwright-core (scripts/tooling). Screenshots go to .local/screenshots/.
// CAMPAIGN_DASHBOARD_URL=http://127.0.0.1:<port>/functions/v1/campaign-dashboard/
// points it at another gateway (default: DASHBOARD_URL of `scripts/dev env`).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { chromium } from "playwright-core";
import { createWorkflow as createN8nWorkflow, n8n, removeWorkflow } from "./n8n.mjs";
import { ROOT, assertPageFunction, env, waitFor } from "./helpers.mjs";
import { mintSession, sessionFragment } from "../../scripts/local/session.mjs";

const CHROMIUM = "/usr/bin/chromium";
const DASHBOARD =
  process.env.CAMPAIGN_DASHBOARD_URL || env.DASHBOARD_URL || `${env.API_URL}/functions/v1/campaign-dashboard/`;
const BASE = new URL(DASHBOARD).origin;
const TOGGLE_ROUTE = "**/functions/v1/campaign-toggle";
const SCREENSHOTS = path.join(ROOT, ".local/screenshots");
const WAIT = 15_000; // the bound on every wait for the page or the stack
const LATENCY_MS = 400; // added to toggle requests where the in-flight state is checked

const run = randomUUID().slice(0, 8);
const editorId = randomUUID();
const viewerId = randomUUID();
const pagerId = randomUUID();
const workflows = {}; // key -> {id, name}
const campaigns = {}; // key -> {id, name}
let workspaceId;
let pagerWorkspaceId;
let db;
let browser;

// ---------------------------------------------------------------- helpers

async function createWorkflow(key, withTrigger) {
  const workflow = await createN8nWorkflow(`e2e dashboard ${run} ${key}`, { trigger: withTrigger });
  workflows[key] = { id: workflow.id, name: workflow.name };
  return workflows[key];
}


async function insertCampaign(key, name, { status = "paused", workflow = null, n8nStatus = "inactive" } = {}) {
  const { rows } = await db.query(
    `insert into campaigns.campaigns (workspace_id, name, status, n8n_workflow_id, n8n_workflow_name, n8n_status)
     values ($1, $2, $3, $4, $5, $6) returning id`,
    [workspaceId, name, status, workflow?.id ?? null, workflow?.name ?? null, workflow ? n8nStatus : "unknown"],
  );
  campaigns[key] = { id: rows[0].id, name };
  return campaigns[key];
}

async function campaignRow(key) {
  const { rows } = await db.query("select status, n8n_status, sync_error, version from campaigns.campaigns where id = $1", [
    campaigns[key].id,
  ]);
  return rows[0];
}

/** The dashboard with a session in the fragment, as scripts/dev session prints it. */
const signInUrl = (session) => `${DASHBOARD}#${sessionFragment(session)}`;

function sessionFor(sub, email) {
  return mintSession({ sub, email, secret: env.JWT_SECRET, base: BASE });
}

/** A fresh browser context (its own storage) with a page signed in as `sub`. */
async function openDashboard(sub, email, { context } = {}) {
  context ??= await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  watch(page);
  await page.goto(signInUrl(sessionFor(sub, email)), { timeout: WAIT });
  await page.locator("#dashboard").waitFor({ state: "visible", timeout: WAIT });
  await page.locator("tr.campaign").first().waitFor({ timeout: WAIT });
  return { context, page };
}

/** Records uncaught page errors and CSP violations; asserted empty by noPageErrors. */
function watch(page) {
  page.problems = [];
  page.on("pageerror", (error) => page.problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy/i.test(message.text())) {
      page.problems.push(`CSP: ${message.text()}`);
    }
  });
}

function noPageErrors(...pages) {
  for (const page of pages) assert.deepEqual(page.problems, [], "no uncaught errors or CSP violations");
}

const toggleOf = (page, key) => page.getByRole("switch", { name: `Active: ${campaigns[key].name}`, exact: true });

/** Waits until `locator`'s attribute `name` is `value` (null: absent). */
async function attribute(locator, name, value, timeout = WAIT) {
  let last;
  await waitFor(`${name}=${value} (last ${last})`, async () => {
    last = await locator.getAttribute(name, { timeout });
    return last === value;
  }, timeout, 25);
}

async function hasClass(locator, className) {
  return (await locator.getAttribute("class")).split(/\s+/).includes(className);
}

/** Delays the page's toggle requests by LATENCY_MS and records them. */
async function slowToggles(page) {
  const sent = [];
  await page.route(TOGGLE_ROUTE, async (route) => {
    const request = route.request();
    sent.push({ headers: request.headers(), body: request.postDataJSON() });
    await new Promise((r) => setTimeout(r, LATENCY_MS));
    await route.continue();
  });
  return sent;
}

async function screenshot(page, name) {
  await page.screenshot({ path: path.join(SCREENSHOTS, `campaign-dashboard-${name}.png`), fullPage: true });
}

// ---------------------------------------------------------------- setup

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (scripts/dev up does)`);
  const config = await fetch(`${DASHBOARD}config.json`, { signal: AbortSignal.timeout(WAIT) });
  assert.equal(config.status, 200, `campaign-dashboard serves config.json at ${DASHBOARD} (build and start it: scripts/dev up)`);
  const { toggle_url } = await config.json();
  const probe = await fetch(toggle_url, { method: "POST", body: "{}", signal: AbortSignal.timeout(WAIT) });
  const probeBody = await probe.json().catch(() => null);
  assert.notEqual(probeBody?.error?.code, "function_not_found", `campaign-toggle is deployed at ${toggle_url}`);
  assert.equal(probe.status, 401, "campaign-toggle refuses a request without a session");

  mkdirSync(SCREENSHOTS, { recursive: true });
  db = new pg.Client({ connectionString: env.DB_URL, application_name: "e2e campaign dashboard" });
  await db.connect();

  await createWorkflow("a", true);
  await createWorkflow("c", true);
  await createWorkflow("d", true);
  await createWorkflow("broken", false);

  ({ rows: [{ id: workspaceId }] } = await db.query("insert into campaigns.workspaces (name) values ($1) returning id", [
    `e2e dashboard ${run}`,
  ]));
  await db.query(
    "insert into campaigns.workspace_members (workspace_id, user_id, role) values ($1, $2, 'editor'), ($1, $3, 'viewer')",
    [workspaceId, editorId, viewerId],
  );
  await insertCampaign("a", "A launch (webhook)", { workflow: workflows.a });
  await insertCampaign("broken", "B broken (no trigger)", { workflow: workflows.broken });
  await insertCampaign("c", "C two tabs", { workflow: workflows.c });
  await insertCampaign("d", "D rapid clicks", { workflow: workflows.d });
  await insertCampaign("completed", "E completed", { status: "completed", workflow: workflows.a });
  await insertCampaign("orphan", "F orphan");

  // 55 campaigns in another workspace, for paging.
  ({ rows: [{ id: pagerWorkspaceId }] } = await db.query(
    "insert into campaigns.workspaces (name) values ($1) returning id",
    [`e2e dashboard ${run} pages`],
  ));
  await db.query("insert into campaigns.workspace_members (workspace_id, user_id, role) values ($1, $2, 'viewer')", [
    pagerWorkspaceId,
    pagerId,
  ]);
  await db.query(
    `insert into campaigns.campaigns (workspace_id, name)
     select $1, format('Page item %s', lpad(n::text, 2, '0')) from generate_series(1, 55) n`,
    [pagerWorkspaceId],
  );

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close();
  const failures = [];
  for (const { id, name } of Object.values(workflows)) {
    const status = await removeWorkflow(id).catch((error) => error.message);
    if (status !== 200 && status !== 404) failures.push(`n8n workflow ${name} (${id}): ${status}`);
  }
  if (db) {
    const workspaces = [workspaceId, pagerWorkspaceId].filter(Boolean);
    const users = [editorId, viewerId, pagerId];
    const workflowIds = Object.values(workflows).map((w) => w.id);
    // n8n reports the workflows removed above through its hooks meanwhile,
    // locking the same campaigns: a deadlock is retried, as a client would.
    for (let attempt = 1; ; attempt++) {
      try {
        await db.query("begin");
        // Campaigns and memberships go with their workspace; the audit log is
        // append-only and keeps this run's rows (it has no foreign keys).
        await db.query("delete from campaigns.workspaces where id = any($1)", [workspaces]);
        await db.query("delete from campaigns.toggle_requests where user_id = any($1)", [users]);
        await db.query("delete from campaigns.toggle_attempts where user_id = any($1)", [users]);
        await db.query("delete from campaigns.workflow_events where workflow_id = any($1)", [workflowIds]);
        await db.query("commit");
        break;
      } catch (error) {
        await db.query("rollback").catch(() => {});
        if (error.code === "40P01" && attempt < 3) continue;
        failures.push(`database cleanup: ${error.message}`);
        break;
      }
    }
    await db.end();
  }
  assert.deepEqual(failures, [], "cleanup");
});

// ---------------------------------------------------------------- scenarios

test("(a) switching a paused campaign on flips at once, shows a spinner after 100 ms and publishes the workflow",
  { timeout: 60_000 }, async () => {
    const { context, page } = await openDashboard(editorId, "editor@e2e.test");
    const sent = await slowToggles(page);
    const toggle = toggleOf(page, "a");
    assert.equal(await toggle.getAttribute("aria-checked"), "false");
    assert.equal(await toggle.isEnabled(), true);

    const answered = page.waitForResponse((r) => r.url().endsWith("/campaign-toggle"), { timeout: WAIT });
    await toggle.click();
    // Optimistic: checked before the request (delayed LATENCY_MS) has ended, and busy.
    assert.equal(await toggle.getAttribute("aria-checked"), "true", "the switch flips at once");
    assert.equal(await toggle.getAttribute("aria-disabled"), "true", "disabled while in flight");
    await attribute(toggle, "aria-busy", "true", LATENCY_MS);
    assert.ok(await hasClass(toggle, "is-loading"), "the spinner shows after 100 ms");

    const response = await answered;
    assert.equal(response.status(), 200, await response.text());
    const body = await response.json();
    assert.equal(body.ok, true);
    assert.equal(body.campaign.status, "active");
    await attribute(toggle, "aria-disabled", "false");
    assert.equal(await toggle.getAttribute("aria-checked"), "true", "the switch ends checked");
    assert.equal(await toggle.getAttribute("aria-busy"), null);
    assert.equal(await hasClass(toggle, "is-loading"), false);

    assert.equal(sent.length, 1, "one request");
    assert.deepEqual(sent[0].body, { campaign_id: campaigns.a.id, action: "activate" });
    assert.match(sent[0].headers["x-idempotency-key"], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(sent[0].headers.authorization, /^Bearer ey/);

    const workflow = await n8n(`/workflows/${workflows.a.id}`);
    assert.equal(workflow.status, 200);
    assert.ok(workflow.json.activeVersionId, "n8n shows the workflow published (activeVersionId set)");
    assert.equal((await campaignRow("a")).status, "active");
    await page.locator(`tr[data-campaign-id="${campaigns.a.id}"] .badge.n8n-active`).waitFor({ timeout: WAIT });
    await screenshot(page, "success");
    noPageErrors(page);
    await context.close();
  });

test("(b) when n8n refuses the workflow the switch rolls back and an error toast says why", { timeout: 60_000 }, async () => {
  const { context, page } = await openDashboard(editorId, "editor@e2e.test");
  await slowToggles(page);
  const toggle = toggleOf(page, "broken");
  const answered = page.waitForResponse((r) => r.url().endsWith("/campaign-toggle"), { timeout: WAIT });
  await toggle.click();
  assert.equal(await toggle.getAttribute("aria-checked"), "true", "the switch flips at once");

  const response = await answered;
  const body = await response.json();
  assert.equal(response.status(), 422, JSON.stringify(body));
  assert.equal(body.error.code, "workflow_rejected");

  const alert = page.getByRole("alert").filter({ hasText: campaigns.broken.name });
  await alert.waitFor({ timeout: WAIT });
  const text = await alert.innerText();
  assert.match(text, /Could not activate/);
  assert.ok(text.includes(body.error.message), `the toast shows the error message (${text})`);
  assert.equal(await toggle.getAttribute("aria-checked"), "false", "rolled back to the server's state");
  await attribute(toggle, "aria-disabled", "false");

  const row = await campaignRow("broken");
  assert.equal(row.status, "paused");
  const workflow = await n8n(`/workflows/${workflows.broken.id}`);
  assert.equal(workflow.json.activeVersionId ?? null, null, "n8n did not publish it");
  if (row.sync_error) {
    // The failure is recorded; the revalidation after it shows the warning.
    await page.locator(`tr[data-campaign-id="${campaigns.broken.id}"] .warning-sync`).waitFor({ timeout: WAIT });
  }
  await screenshot(page, "failure-toast");
  noPageErrors(page);
  await context.close();
});

test("(c) two tabs converge: a toggle in one shows in the other when it gets focus, without a reload",
  { timeout: 60_000 }, async () => {
    const { context, page: tabA } = await openDashboard(editorId, "editor@e2e.test");
    // Tab B has no session in its URL: it reads the one tab A stored.
    const tabB = await context.newPage();
    watch(tabB);
    await tabB.goto(DASHBOARD, { timeout: WAIT });
    await tabB.locator("#dashboard").waitFor({ state: "visible", timeout: WAIT });
    await tabB.locator("tr.campaign").first().waitFor({ timeout: WAIT });
    await tabB.evaluate(() => { window.__sameDocument = true; });
    assert.equal(await toggleOf(tabB, "c").getAttribute("aria-checked"), "false");

    await tabA.bringToFront();
    await toggleOf(tabA, "c").click();
    await attribute(toggleOf(tabA, "c"), "aria-disabled", "false");
    assert.equal(await toggleOf(tabA, "c").getAttribute("aria-checked"), "true");
    assert.equal((await campaignRow("c")).status, "active");
    assert.equal(await toggleOf(tabB, "c").getAttribute("aria-checked"), "false", "tab B has not revalidated yet");

    await tabB.bringToFront();
    await tabB.evaluate(() => window.dispatchEvent(new Event("focus")));
    await attribute(toggleOf(tabB, "c"), "aria-checked", "true");
    assert.equal(await tabB.evaluate(() => window.__sameDocument), true, "tab B was not reloaded");
    await screenshot(tabB, "two-tabs");
    noPageErrors(tabA, tabB);
    await context.close();
  });

test("(d) a viewer's switches are disabled; orphan and completed campaigns are disabled for an editor too",
  { timeout: 60_000 }, async () => {
    const { context, page } = await openDashboard(viewerId, "viewer@e2e.test");
    const switches = page.getByRole("switch");
    assert.equal(await switches.count(), Object.keys(campaigns).length);
    for (const toggle of await switches.all()) {
      assert.equal(await toggle.isDisabled(), true, `${await toggle.getAttribute("aria-label")} is disabled`);
      assert.equal(await toggle.getAttribute("aria-disabled"), "true");
    }
    const orphanRow = page.locator(`tr[data-campaign-id="${campaigns.orphan.id}"]`);
    assert.match(await orphanRow.locator(".warning-orphan").innerText(), /not linked/);
    await screenshot(page, "viewer");
    noPageErrors(page);
    await context.close();

    const editor = await openDashboard(editorId, "editor@e2e.test");
    assert.equal(await toggleOf(editor.page, "orphan").isDisabled(), true, "an orphan cannot be switched");
    assert.equal(await toggleOf(editor.page, "completed").isDisabled(), true, "a completed campaign cannot be switched");
    assert.equal(await toggleOf(editor.page, "d").isEnabled(), true, "the editor may switch a linked campaign");
    noPageErrors(editor.page);
    await editor.context.close();
  });

test("(e) offline shows the indicator and disables every switch until the connection returns", { timeout: 60_000 }, async () => {
  const { context, page } = await openDashboard(editorId, "editor@e2e.test");
  const indicator = page.locator("#offline");
  assert.equal(await indicator.isVisible(), false);
  await context.setOffline(true);
  await indicator.waitFor({ state: "visible", timeout: WAIT });
  for (const toggle of await page.getByRole("switch").all()) {
    assert.equal(await toggle.isDisabled(), true, `${await toggle.getAttribute("aria-label")} is disabled offline`);
  }
  await screenshot(page, "offline");
  await context.setOffline(false);
  await indicator.waitFor({ state: "hidden", timeout: WAIT });
  assert.equal(await toggleOf(page, "d").isEnabled(), true, "switches come back online");
  noPageErrors(page);
  await context.close();
});

test("(f) clicks during a flight collapse to the last wish: on then off sends activate, then one deactivate",
  { timeout: 60_000 }, async () => {
    const { context, page } = await openDashboard(editorId, "editor@e2e.test");
    const sent = await slowToggles(page);
    const toggle = toggleOf(page, "d");
    // By keyboard: the switch is a button, so Space toggles it.
    await toggle.focus();
    await page.keyboard.press("Space");
    assert.equal(await toggle.getAttribute("aria-checked"), "true");
    await page.keyboard.press("Space"); // during the flight: only the wish is recorded
    assert.equal(await toggle.getAttribute("aria-checked"), "false", "the switch shows the last wish");
    assert.equal(await toggle.getAttribute("aria-disabled"), "true", "still in flight");

    await waitFor("the second request", () => sent.length === 2, WAIT);
    await attribute(toggle, "aria-disabled", "false");
    assert.equal(await toggle.getAttribute("aria-checked"), "false");
    assert.deepEqual(sent.map((s) => s.body.action), ["activate", "deactivate"], "one request per distinct wish");
    assert.notEqual(sent[0].headers["x-idempotency-key"], sent[1].headers["x-idempotency-key"], "a fresh key each");
    assert.equal((await campaignRow("d")).status, "paused");
    const workflow = await n8n(`/workflows/${workflows.d.id}`);
    assert.equal(workflow.json.activeVersionId ?? null, null, "n8n ends unpublished");
    noPageErrors(page);
    await context.close();
  });

test("(g) pages through 50 campaigns at a time, ordered by name", { timeout: 60_000 }, async () => {
  const { context, page } = await openDashboard(pagerId, "pager@e2e.test");
  const names = () => page.locator("tr.campaign th").allInnerTexts();
  assert.equal((await names()).length, 50);
  assert.equal((await names())[0], "Page item 01");
  assert.match(await page.locator("#page-info").innerText(), /Page 1 of 2/);
  assert.equal(await page.locator("#prev").isDisabled(), true);
  await page.locator("#next").click();
  await waitFor("page 2", async () => (await names())[0] === "Page item 51", WAIT);
  assert.deepEqual(await names(), ["Page item 51", "Page item 52", "Page item 53", "Page item 54", "Page item 55"]);
  assert.equal(await page.locator("#next").isDisabled(), true);
  await page.locator("#prev").click();
  await waitFor("page 1", async () => (await names()).length === 50, WAIT);
  noPageErrors(page);
  await context.close();
});

test("(h) no session, an expired session, signing out, or a toggle answering 401 show the signed-out panel", { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page);
  await page.goto(DASHBOARD, { timeout: WAIT });
  await page.locator("#signed-out").waitFor({ state: "visible", timeout: WAIT });
  assert.match(await page.locator("#signed-out").innerText(), /scripts\/dev session alice@acme\.test/);

  const expired = mintSession({ sub: editorId, email: "editor@e2e.test", secret: env.JWT_SECRET, base: BASE, ttlSeconds: -60 });
  await page.goto("about:blank");
  await page.goto(signInUrl(expired), { timeout: WAIT });
  await page.locator("#signed-out").waitFor({ state: "visible", timeout: WAIT });
  assert.equal(await page.locator("#dashboard").isVisible(), false);
  await context.close();

  // A session that runs out while the page is open (refreshing is not available locally).
  const shortLived = await browser.newContext();
  const shortPage = await shortLived.newPage();
  watch(shortPage);
  await shortPage.goto(signInUrl(
    mintSession({ sub: editorId, email: "editor@e2e.test", secret: env.JWT_SECRET, base: BASE, ttlSeconds: 4 }),
  ), { timeout: WAIT });
  await shortPage.locator("#dashboard").waitFor({ state: "visible", timeout: WAIT });
  await shortPage.locator("#signed-out").waitFor({ state: "visible", timeout: WAIT });
  assert.match(await shortPage.locator("#signed-out-reason").innerText(), /expired/);
  noPageErrors(shortPage);
  await shortLived.close();

  // Signing out (POST /auth/v1/logout) forgets the stored session.
  const leaving = await openDashboard(editorId, "editor@e2e.test");
  await leaving.page.getByRole("button", { name: "Sign out" }).click();
  await leaving.page.locator("#signed-out").waitFor({ state: "visible", timeout: WAIT });
  await leaving.page.reload({ timeout: WAIT });
  await leaving.page.locator("#signed-out").waitFor({ state: "visible", timeout: WAIT });
  noPageErrors(leaving.page);
  await leaving.context.close();

  const signedIn = await openDashboard(editorId, "editor@e2e.test");
  await signedIn.page.route(TOGGLE_ROUTE, (route) =>
    route.fulfill({
      status: 401,
      contentType: "application/json",
      body: JSON.stringify({ ok: false, error: { code: "unauthorized", message: "the session expired" }, correlation_id: "e2e" }),
    }));
  await toggleOf(signedIn.page, "d").click();
  await signedIn.page.locator("#signed-out").waitFor({ state: "visible", timeout: WAIT });
  assert.match(await signedIn.page.locator("#signed-out-reason").innerText(), /expired/);
  await signedIn.page.reload({ timeout: WAIT });
  await signedIn.page.locator("#signed-out").waitFor({ state: "visible", timeout: WAIT });
  noPageErrors(signedIn.page);
  await signedIn.context.close();
});

test("the function refuses what is not a page, and hands out the anon key only", () => assertPageFunction(DASHBOARD));
