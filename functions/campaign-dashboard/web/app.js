// The campaign dashboard (seed: campaign-orchestration.md, Pillar 4 "The
// Optimistic Interface"): the caller's campaigns, 50 a page, with a switch per
// row that calls campaign-toggle.
//
//   * a switch flips at once (optimistic), is aria-disabled while its request
//     is in flight, and shows a spinner only when the request takes > 100 ms;
//   * clicks during a flight only record the wish; when the answer comes and
//     the wish differs from the server's state, one more request is sent;
//   * a failure rolls the switch back to the server's state and shows a toast;
//   * the page revalidates every 30 s (when visible), on focus, when the tab
//     becomes visible and when the browser comes back online;
//   * offline, or for campaigns the caller may not change (viewer, completed,
//     archived, not linked), the switches are disabled.
// Sessions come from Supabase Auth (locally: scripts/dev session <email>,
// handed over in the URL fragment as a magic link would).
import { startPage } from "../../../shared/web/session.js";
import { $, badge, element, timeAgo, toast, uuid } from "../../../shared/web/ui.js";

const PAGE_SIZE = 50;
const REVALIDATE_MS = 30_000;
const SLOW_MS = 100;
const TOGGLE_TIMEOUT_MS = 20_000;
const COLUMNS =
  "id,workspace_id,name,status,n8n_workflow_id,n8n_workflow_name,n8n_status,version,last_sync_at,sync_source,sync_error," +
  "workspace:workspaces(name)";
const LOCKED = new Set(["completed", "archived"]);
const WRITERS = new Set(["editor", "owner"]);

const app = {
  page: 0,
  total: 0,
  loaded: false,
  campaigns: [], // the page, as the server last said, in order
  updatedAt: new Map(), // id -> when a toggle answer last replaced the row (performance.now())
  roles: new Map(), // workspace_id -> the caller's role
  toggles: new Map(), // id -> { inFlight, shown, wish, slow, timer }
  rowEls: new Map(), // id -> <tr>
  loading: null,
  reloadQueued: false,
};

const session = startPage({
  schema: "campaigns",
  contentId: "dashboard",
  onSignedIn: () => revalidate(),
  onSignedOut: () => {
    for (const t of app.toggles.values()) clearTimeout(t.timer);
    app.toggles.clear();
    app.campaigns = [];
    app.loaded = false;
    for (const tr of app.rowEls.values()) tr.remove();
    app.rowEls.clear();
  },
  onOnline: (online) => {
    renderAllRows();
    if (online) revalidate();
  },
});

// ------------------------------------------------------------------ listeners

function installListeners() {
  setInterval(() => {
    if (document.visibilityState === "visible") revalidate();
  }, REVALIDATE_MS);
  window.addEventListener("focus", () => revalidate());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") revalidate();
  });
  $("refresh").addEventListener("click", () => revalidate());
  $("prev").addEventListener("click", () => goToPage(app.page - 1));
  $("next").addEventListener("click", () => goToPage(app.page + 1));
  $("rows").addEventListener("click", (event) => {
    const button = event.target.closest("button.switch");
    if (button) onSwitch(button.closest("tr").dataset.campaignId);
  });
}

function goToPage(page) {
  const last = Math.max(0, Math.ceil(app.total / PAGE_SIZE) - 1);
  const next = Math.min(Math.max(0, page), last);
  if (next === app.page) return;
  app.page = next;
  renderPager();
  revalidate();
}

// ------------------------------------------------------------------ loading

/** Refetches the page; while a fetch is running, one more is queued. */
function revalidate() {
  if (!session.signedIn) return Promise.resolve();
  if (app.loading) {
    app.reloadQueued = true;
    return app.loading;
  }
  app.loading = loadPage()
    .catch((error) => {
      $("freshness").textContent = `Could not refresh: ${error.message}`;
      $("freshness").classList.add("is-stale");
      if (!app.loaded) toast(`Could not load campaigns: ${error.message}`);
    })
    .finally(() => {
      app.loading = null;
      if (app.reloadQueued && session.signedIn) {
        app.reloadQueued = false;
        revalidate();
      }
    });
  return app.loading;
}

function isAuthFailure(result) {
  return result.status === 401;
}

async function loadPage() {
  const startedAt = performance.now();
  const page = app.page;
  const from = page * PAGE_SIZE;
  const userId = session.session.user?.id;
  $("campaigns").setAttribute("aria-busy", "true");
  try {
    const [members, campaigns] = await Promise.all([
      session.client.from("workspace_members").select("workspace_id,role").eq("user_id", userId),
      session.client
        .from("campaigns")
        .select(COLUMNS, { count: "exact" })
        .order("name", { ascending: true })
        .order("id", { ascending: true })
        .range(from, from + PAGE_SIZE - 1),
    ]);
    if (!session.signedIn) return;
    for (const result of [members, campaigns]) {
      if (result.error) {
        if (isAuthFailure(result)) {
          await session.sessionExpired();
          return;
        }
        throw new Error(result.error.message || `HTTP ${result.status}`);
      }
    }
    if (page !== app.page) return; // the user paged on meanwhile; the queued load follows
    app.roles = new Map(members.data.map((m) => [m.workspace_id, m.role]));
    app.total = campaigns.count ?? campaigns.data.length;
    if (campaigns.data.length === 0 && app.total > 0 && page > 0) {
      // The page emptied (campaigns went away): show the last one instead.
      app.page = Math.max(0, Math.ceil(app.total / PAGE_SIZE) - 1);
      app.reloadQueued = true;
      return;
    }
    const previous = new Map(app.campaigns.map((c) => [c.id, c]));
    app.campaigns = campaigns.data.map((row) => {
      // A toggle answered after this fetch began: its row is newer.
      const mine = previous.get(row.id);
      if (mine && (app.updatedAt.get(row.id) ?? 0) > startedAt && mine.version >= row.version) {
        return { ...mine, workspace: row.workspace };
      }
      return row;
    });
    app.loaded = true;
    $("freshness").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    $("freshness").classList.remove("is-stale");
    render();
  } finally {
    $("campaigns").removeAttribute("aria-busy");
  }
}

// ------------------------------------------------------------------ toggling

const rowOf = (id) => app.campaigns.find((c) => c.id === id);
const serverOn = (campaign) => campaign.status === "active";

function canWrite(campaign) {
  return session.operator || WRITERS.has(app.roles.get(campaign.workspace_id));
}

/** Why the campaign's switch is disabled, or null when it may be used. */
function disabledReason(campaign) {
  if (!campaign.n8n_workflow_id) return "Not linked to an n8n workflow";
  if (LOCKED.has(campaign.status)) return `A ${campaign.status} campaign cannot be switched`;
  if (!canWrite(campaign)) return "You may view this workspace's campaigns but not switch them";
  if (!session.online) return "Offline: switching needs a connection";
  return null;
}

function onSwitch(id) {
  const campaign = rowOf(id);
  if (!campaign || disabledReason(campaign)) return;
  const toggle = app.toggles.get(id);
  if (toggle?.inFlight) {
    // Only the last wish counts; it is sent when the flight lands.
    toggle.wish = !toggle.shown;
    toggle.shown = toggle.wish;
    renderRow(id);
    return;
  }
  send(id, !serverOn(campaign));
}

async function send(id, want) {
  let toggle = app.toggles.get(id);
  if (!toggle) {
    toggle = { inFlight: false, shown: want, wish: undefined, slow: false, timer: null };
    app.toggles.set(id, toggle);
  }
  toggle.inFlight = true;
  toggle.shown = want;
  toggle.wish = undefined;
  toggle.slow = false;
  clearTimeout(toggle.timer);
  toggle.timer = setTimeout(() => {
    toggle.slow = true;
    renderRow(id);
  }, SLOW_MS);
  renderRow(id);

  const campaign = rowOf(id);
  const name = campaign?.name ?? "the campaign";
  const action = want ? "activate" : "deactivate";
  const result = await postToggle(id, action);
  clearTimeout(toggle.timer);
  toggle.slow = false;
  if (app.toggles.get(id) !== toggle) return; // signed out meanwhile

  if (result.ok) {
    mergeCampaign(result.campaign);
    const now = serverOn(result.campaign);
    const current = rowOf(id) ?? result.campaign;
    if (toggle.wish !== undefined && toggle.wish !== now && !disabledReason({ ...current, ...result.campaign })) {
      send(id, toggle.wish);
      return;
    }
    app.toggles.delete(id);
    renderRow(id);
    return;
  }

  // Roll back to what the server last said.
  app.toggles.delete(id);
  renderRow(id);
  if (result.status === 401) {
    await session.sessionExpired("Your session has expired (the toggle was refused with 401). Mint a new one.");
    return;
  }
  let message = result.error?.message || result.error?.code || "unknown error";
  if (result.status === 429 && result.retryAfter) message += ` (retry in ${result.retryAfter} s)`;
  toast(`Could not ${action} “${name}”: ${message}`, { correlationId: result.correlationId });
  revalidate(); // the server may have recorded the failure (sync_error, n8n status)
}

async function postToggle(id, action) {
  const token = await session.accessToken();
  if (!token) return { ok: false, status: 401, error: { code: "unauthorized", message: "no session" } };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TOGGLE_TIMEOUT_MS);
  try {
    const response = await fetch(session.config.toggle_url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        apikey: session.config.anon_key,
        "content-type": "application/json",
        "x-idempotency-key": uuid(),
      },
      body: JSON.stringify({ campaign_id: id, action }),
      signal: controller.signal,
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON: described by the status below.
    }
    if (response.ok && body?.ok && body.campaign) return { ok: true, campaign: body.campaign, outcome: body.outcome };
    return {
      ok: false,
      status: response.status,
      error: body?.error ?? { code: `http_${response.status}`, message: `the server answered HTTP ${response.status}` },
      retryAfter: response.headers.get("retry-after"),
      correlationId: body?.correlation_id,
    };
  } catch (error) {
    const timedOut = controller.signal.aborted;
    return {
      ok: false,
      status: 0,
      error: {
        code: timedOut ? "timeout" : "network",
        message: timedOut ? `no answer in ${TOGGLE_TIMEOUT_MS / 1000} s` : `the server could not be reached (${error.message})`,
      },
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Takes a campaign as campaign-toggle returned it into the page. */
function mergeCampaign(campaign) {
  const index = app.campaigns.findIndex((c) => c.id === campaign.id);
  if (index < 0) return;
  app.campaigns[index] = { ...app.campaigns[index], ...campaign };
  app.updatedAt.set(campaign.id, performance.now());
}

// ------------------------------------------------------------------ rendering

function render() {
  const tbody = $("rows");
  const ids = new Set(app.campaigns.map((c) => c.id));
  for (const [id, tr] of app.rowEls) {
    if (!ids.has(id)) {
      tr.remove();
      app.rowEls.delete(id);
    }
  }
  // Rows are kept and moved only when out of order, so focus stays put.
  let previous = null;
  for (const campaign of app.campaigns) {
    let tr = app.rowEls.get(campaign.id);
    if (!tr) {
      tr = createRow(campaign.id);
      app.rowEls.set(campaign.id, tr);
    }
    const expected = previous ? previous.nextElementSibling : tbody.firstElementChild;
    if (expected !== tr) tbody.insertBefore(tr, expected);
    updateRow(tr, campaign);
    previous = tr;
  }
  $("empty").hidden = !app.loaded || app.campaigns.length > 0;
  renderPager();
}

function renderRow(id) {
  const tr = app.rowEls.get(id);
  const campaign = rowOf(id);
  if (tr && campaign) updateRow(tr, campaign);
}

function renderAllRows() {
  for (const campaign of app.campaigns) renderRow(campaign.id);
}

function renderPager() {
  const from = app.total === 0 ? 0 : app.page * PAGE_SIZE + 1;
  const to = Math.min(app.total, (app.page + 1) * PAGE_SIZE);
  const pages = Math.max(1, Math.ceil(app.total / PAGE_SIZE));
  $("summary").textContent = app.loaded
    ? `${app.total} campaign${app.total === 1 ? "" : "s"}${app.total ? `, showing ${from}–${to}` : ""}`
    : "Loading campaigns…";
  $("page-info").textContent = `Page ${app.page + 1} of ${pages}`;
  $("prev").disabled = app.page === 0;
  $("next").disabled = (app.page + 1) * PAGE_SIZE >= app.total;
}

function createRow(id) {
  const tr = element("tr", "campaign");
  tr.dataset.campaignId = id;
  const name = element("th", "col-name");
  name.scope = "row";
  tr.append(
    name,
    element("td", "col-workspace"),
    element("td", "col-status"),
    element("td", "col-n8n"),
    element("td", "col-workflow"),
    element("td", "col-sync"),
    element("td", "col-warnings"),
  );
  const cell = element("td", "col-toggle");
  const button = element("button", "switch");
  button.type = "button";
  button.setAttribute("role", "switch");
  button.append(element("span", "switch-track"), element("span", "spinner"));
  button.querySelector(".switch-track").append(element("span", "switch-thumb"));
  button.querySelector(".spinner").setAttribute("aria-hidden", "true");
  button.querySelector(".switch-track").setAttribute("aria-hidden", "true");
  cell.append(button);
  tr.append(cell);
  return tr;
}

function updateRow(tr, campaign) {
  const cells = tr.children;
  cells[0].textContent = campaign.name;
  cells[1].textContent = campaign.workspace?.name ?? campaign.workspace_id;
  cells[2].replaceChildren(badge("status", campaign.status));
  cells[3].replaceChildren(badge("n8n", campaign.n8n_status));
  cells[4].textContent = campaign.n8n_workflow_id ? campaign.n8n_workflow_name || campaign.n8n_workflow_id : "—";
  cells[5].replaceChildren(timeAgo(campaign.last_sync_at, campaign.sync_source));
  const warnings = [];
  if (!campaign.n8n_workflow_id) {
    warnings.push(element("span", "warning warning-orphan", "⚠ not linked to a workflow"));
  }
  if (campaign.sync_error) {
    warnings.push(element("span", "warning warning-sync", `⚠ sync error: ${campaign.sync_error}`));
  }
  cells[6].replaceChildren(...warnings);
  tr.classList.toggle("has-warning", warnings.length > 0);

  const toggle = app.toggles.get(campaign.id);
  const pending = Boolean(toggle?.inFlight);
  const on = pending ? toggle.shown : serverOn(campaign);
  const reason = disabledReason(campaign);
  const button = cells[7].firstElementChild;
  button.setAttribute("aria-checked", String(on));
  button.setAttribute("aria-label", `Active: ${campaign.name}`);
  button.disabled = Boolean(reason);
  button.setAttribute("aria-disabled", String(Boolean(reason) || pending));
  button.title = reason ?? (pending ? "Saving…" : on ? "Active: switch off to deactivate" : "Inactive: switch on to activate");
  button.classList.toggle("is-pending", pending);
  button.classList.toggle("is-loading", Boolean(toggle?.slow));
  if (toggle?.slow) button.setAttribute("aria-busy", "true");
  else button.removeAttribute("aria-busy");
}

installListeners();
