// The ops console: one page where an operator sees and steers the system.
// Four screens, chosen by the URL fragment (#/overview, #/dead-letters,
// #/runs[/<run id>], #/trace[/<correlation id>]):
//
//   * Overview: one call to ops.console_overview, repeated every 10 s while
//     the tab is visible and the overview is shown;
//   * Dead letters: integration.list_dead_letters with the same filter that
//     integration.redrive_outbox takes, a dry run that counts, then a
//     confirmed redrive; the redrive_log audit trail;
//   * Runs & jobs: approvals (runs and agents' handles), environments
//     (freeze, unfreeze, roll back), runs with their timeline, jobs;
//   * Trace: ops.get_trace, in time order with durations.
//
// Every read and action goes from this browser to PostgREST with the
// operator's own session, through the operator-gated RPCs the other surfaces
// use; the server decides, the page only shows what it was told. A signed-in
// non-operator sees the "operators only" panel and nothing else.
import { startPage } from "../../../shared/web/session.js";
import { $, badge, element, relativeTime, timeAgo, toast } from "../../../shared/web/ui.js";

const OVERVIEW_POLL_MS = 10_000;
const PAGE_SIZE = 50;
const SCREENS = ["overview", "dead-letters", "runs", "trace"];
const RUN_ACTIVE = new Set(["awaiting_approval", "queued", "claimed", "running"]);

const state = {
  operator: false,
  screen: null,
  overview: null,
  overviewLoading: null,
  dead: { filter: {}, rows: [], total: 0, dryRun: null },
  projects: [],
  openRun: null,
};

const session = startPage({
  schema: "ops",
  contentId: "console",
  onSignedIn: () => checkOperator(),
  onSignedOut: () => {
    state.operator = false;
    state.overview = null;
    $("tabs").hidden = true;
    for (const id of ["bus-counts", "bus-chart", "job-counts", "services-rows", "inflight-rows", "drift-rows",
      "dead-rows", "redrive-log-rows", "pending-rows", "env-rows", "run-rows", "job-rows", "trace-rows", "run-events",
      "run-phases", "run-facts", "frozen-list"]) {
      $(id).replaceChildren();
    }
  },
  onOnline: (online) => {
    document.querySelectorAll("[data-action]").forEach((b) => {
      b.disabled = !online || b.dataset.blocked === "true";
    });
    if (online) refreshScreen();
  },
});

// ------------------------------------------------------------------ calls

class CallError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls an RPC as the operator; throws a CallError saying what the server said. */
async function rpc(schema, name, args = {}) {
  const { data, error, status } = await session.client.schema(schema).rpc(name, args);
  if (error) throw await failure(error, status);
  return data;
}

/** Reads a table as the operator (RLS: operators only). */
async function select(schema, table, build) {
  const { data, error, status } = await build(session.client.schema(schema).from(table));
  if (error) throw await failure(error, status);
  return data;
}

async function failure(error, status) {
  if (status === 401) await session.sessionExpired();
  const message = error.details || error.message || `HTTP ${status}`;
  return new CallError(message, status, error.code);
}

/** Runs an operator action: disables its button meanwhile, toasts the outcome. */
async function act(button, what, call, done) {
  if (button) button.disabled = true;
  try {
    const result = await call();
    toast(typeof done === "function" ? done(result) : done, { kind: "success" });
    return result;
  } catch (error) {
    toast(`Could not ${what}: ${error.message}`);
    return null;
  } finally {
    if (button) button.disabled = !session.online;
  }
}

// ------------------------------------------------------------------ boot and routing

async function checkOperator() {
  try {
    const me = await rpc("ops", "whoami");
    state.operator = Boolean(me?.operator);
  } catch (error) {
    state.operator = false;
    if (!session.signedIn) return;
    toast(`Could not check your role: ${error.message}`);
  }
  $("not-operator").hidden = state.operator;
  $("tabs").hidden = !state.operator;
  if (!state.operator) {
    for (const screen of SCREENS) $(`screen-${screen}`).hidden = true;
    return;
  }
  route();
}

function parseHash() {
  const [, screen = "overview", ...rest] = location.hash.replace(/^#/, "").split("/");
  return { screen: SCREENS.includes(screen) ? screen : "overview", arg: decodeURIComponent(rest.join("/")) };
}

function route() {
  if (!session.signedIn || !state.operator) return;
  const { screen, arg } = parseHash();
  const changed = state.screen !== screen;
  state.screen = screen;
  for (const name of SCREENS) $(`screen-${name}`).hidden = name !== screen;
  for (const link of $("tabs").querySelectorAll("a")) {
    if (link.dataset.screen === screen) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${$("tabs").querySelector(`[data-screen="${screen}"]`).textContent} · Switchyard ops`;
  if (screen === "overview") loadOverview();
  if (screen === "dead-letters" && changed) loadDeadLetters();
  if (screen === "runs") loadRunsScreen(arg);
  if (screen === "trace") {
    if (arg) {
      $("trace-form").elements.correlation_id.value = arg;
      loadTrace(arg);
    } else if (changed) {
      $("trace-form").elements.correlation_id.focus();
    }
  }
}

function refreshScreen() {
  if (!session.signedIn || !state.operator) return;
  if (state.screen === "overview") loadOverview();
  if (state.screen === "dead-letters") loadDeadLetters();
  if (state.screen === "runs") loadRunsScreen(parseHash().arg);
}

function installListeners() {
  window.addEventListener("hashchange", route);
  setInterval(() => {
    if (document.visibilityState === "visible" && state.screen === "overview") loadOverview();
  }, OVERVIEW_POLL_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.screen === "overview") loadOverview();
  });
  $("overview-refresh").addEventListener("click", () => loadOverview());
  $("runs-refresh").addEventListener("click", () => loadRunsScreen(parseHash().arg));

  $("dead-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDeadLetters();
  });
  $("dead-filter").addEventListener("input", () => clearDryRun());
  $("dead-clear").addEventListener("click", () => {
    $("dead-filter").reset();
    clearDryRun();
    loadDeadLetters();
  });
  $("dead-more").addEventListener("click", () => loadDeadLetters({ more: true }));
  $("redrive-dry-run").addEventListener("click", (event) => dryRun(event.currentTarget));
  $("redrive-run").addEventListener("click", (event) => redrive(event.currentTarget));

  $("freeze-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = $("freeze-form").elements;
    const env = form.env.value.trim();
    if (env) freeze(form.submit, form.project_id.value, env);
  });
  $("runs-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadRuns();
  });
  $("jobs-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadJobs();
  });
  $("run-close").addEventListener("click", () => {
    location.hash = "#/runs";
  });
  $("trace-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("trace-form").elements.correlation_id.value.trim();
    if (!id) return;
    const target = `#/trace/${encodeURIComponent(id)}`;
    if (location.hash === target) loadTrace(id);
    else location.hash = target;
  });
}

// ------------------------------------------------------------------ overview

function loadOverview() {
  if (state.overviewLoading) return state.overviewLoading;
  state.overviewLoading = rpc("ops", "console_overview")
    .then((overview) => {
      state.overview = overview;
      renderOverview(overview);
      // What the browser test reads as "the overview's first paint with data".
      if (performance.getEntriesByName("overview-rendered").length === 0) performance.mark("overview-rendered");
      $("overview-freshness").textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every ${OVERVIEW_POLL_MS / 1000} s`;
      $("overview-freshness").classList.remove("is-stale");
    })
    .catch((error) => {
      $("overview-freshness").textContent = `Could not refresh: ${error.message}`;
      $("overview-freshness").classList.add("is-stale");
    })
    .finally(() => {
      state.overviewLoading = null;
    });
  return state.overviewLoading;
}

function stat(list, label, value, className = "") {
  const item = element("div", `stat ${className}`);
  item.append(element("dt", "", label), element("dd", "", value));
  list.append(item);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

const count = (n) => Number(n ?? 0).toLocaleString();

function renderOverview(o) {
  const bus = o.bus ?? {};
  const by = bus.by_status ?? {};
  const counts = $("bus-counts");
  counts.replaceChildren();
  stat(counts, "Pending", count(by.pending));
  stat(counts, "Delivering", count(by.processing));
  stat(counts, "Delivered", count(by.completed));
  stat(counts, "Dead letters", count(by.failed), by.failed > 0 ? "is-bad" : "");
  stat(counts, "Retrying", count(bus.retrying), bus.retrying > 0 ? "is-warn" : "");
  stat(counts, "Oldest pending", duration(bus.oldest_pending_age_seconds));
  stat(counts, "Expired leases", count(bus.expired_leases), bus.expired_leases > 0 ? "is-warn" : "");
  renderActivity(bus.activity ?? []);

  const jobs = o.jobs ?? {};
  const jb = jobs.by_status ?? {};
  const jobCounts = $("job-counts");
  jobCounts.replaceChildren();
  stat(jobCounts, "Queued", count(jb.queued));
  stat(jobCounts, "Running", count(jb.running));
  stat(jobCounts, "Retrying", count(jb.failed), jb.failed > 0 ? "is-warn" : "");
  stat(jobCounts, "Dead", count(jb.dead), jb.dead > 0 ? "is-bad" : "");
  stat(jobCounts, "Oldest queued", duration(jobs.oldest_queued_age_seconds));

  const approvals = o.approvals ?? {};
  const waiting = (approvals.runs?.length ?? 0) + (approvals.actions?.length ?? 0);
  $("approvals-summary").textContent =
    waiting === 0 ? "Nothing waiting" : `${waiting} waiting (${approvals.runs?.length ?? 0} runs, ${approvals.actions?.length ?? 0} agent actions)`;
  $("frozen-list").replaceChildren(
    ...(o.frozen ?? []).map((f) =>
      element("li", "frozen", `❄ ${f.project_id}/${f.env} frozen by ${f.frozen_by}: ${f.frozen_reason ?? ""}`),
    ),
  );
  $("frozen-empty").hidden = (o.frozen ?? []).length > 0;

  const services = o.services ?? [];
  $("services-rows").replaceChildren(...services.map(serviceRow));
  $("services-empty").hidden = services.length > 0;

  const runs = o.runs_in_flight ?? [];
  $("inflight-rows").replaceChildren(
    ...runs.map((r) =>
      row([
        runLink(r.run_id),
        `${r.project_id}/${r.env}`,
        r.kind,
        badge("status", r.status),
        r.phase ?? "—",
        r.requested_by ?? "—",
        timeAgo(r.queued_at),
      ]),
    ),
  );
  $("inflight-empty").hidden = runs.length > 0;

  const drift = o.campaigns ?? { out_of_sync: 0, rows: [] };
  $("drift-summary").textContent =
    drift.out_of_sync === 0
      ? "Every linked campaign agrees with n8n."
      : `${count(drift.out_of_sync)} campaign${drift.out_of_sync === 1 ? "" : "s"} out of sync${drift.out_of_sync > (drift.rows?.length ?? 0) ? ` (showing ${drift.rows.length})` : ""}; the reconciler repairs drift every 5 minutes.`;
  $("drift-rows").replaceChildren(
    ...(drift.rows ?? []).map((c) =>
      row([
        c.name,
        c.workspace ?? c.workspace_name ?? "—",
        badge("status", c.status),
        badge("n8n", c.n8n_status),
        (c.reasons ?? [c.reason]).filter(Boolean).join("; ") || c.sync_error || "—",
        timeAgo(c.last_sync_at),
      ]),
    ),
  );
}

function row(cells, className) {
  const tr = element("tr", className);
  cells.forEach((cell, i) => {
    const td = element(i === 0 ? "th" : "td");
    if (i === 0) td.scope = "row";
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell ?? "—";
    tr.append(td);
  });
  return tr;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

/** The last hour a minute a column: received and delivered as lines, dead letters as bars. */
function renderActivity(activity) {
  const width = 600;
  const height = 90;
  const max = Math.max(1, ...activity.flatMap((m) => [m.received, m.delivered, m.dead_lettered]));
  const x = (i) => (activity.length <= 1 ? 0 : (i / (activity.length - 1)) * width);
  const y = (v) => height - 4 - (v / max) * (height - 8);
  const totals = { received: 0, delivered: 0, dead_lettered: 0 };
  for (const m of activity) for (const key of Object.keys(totals)) totals[key] += m[key] ?? 0;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": `Last hour: ${totals.received} received, ${totals.delivered} delivered, ${totals.dead_lettered} dead-lettered`,
    class: "chart-svg",
  });
  const barWidth = Math.max(2, width / Math.max(activity.length, 1) - 2);
  activity.forEach((m, i) => {
    if (!m.dead_lettered) return;
    const bar = svg("rect", { x: Math.max(0, x(i) - barWidth / 2), y: y(m.dead_lettered), width: barWidth,
      height: height - 4 - y(m.dead_lettered), class: "series-dead" });
    bar.append(svg("title"));
    bar.firstChild.textContent = `${new Date(m.minute).toLocaleTimeString()}: ${m.dead_lettered} dead-lettered`;
    chart.append(bar);
  });
  for (const [key, className] of [["received", "series-received"], ["delivered", "series-delivered"]]) {
    const points = activity.map((m, i) => `${x(i).toFixed(1)},${y(m[key] ?? 0).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, class: className, fill: "none", "vector-effect": "non-scaling-stroke" }));
  }
  chart.append(svg("line", { x1: 0, x2: width, y1: height - 4, y2: height - 4, class: "axis" }));
  $("bus-chart").replaceChildren(chart);
  const legend = $("bus-chart-caption");
  legend.replaceChildren(
    element("span", "key key-received", `received ${count(totals.received)}`),
    element("span", "key key-delivered", `delivered ${count(totals.delivered)}`),
    element("span", "key key-dead", `dead-lettered ${count(totals.dead_lettered)}`),
    element("span", "muted", `per minute, last hour (peak ${count(max)}/min)`),
  );
}

function serviceRow(s) {
  const strip = svg("svg", { viewBox: "0 0 150 20", class: "samples", role: "img",
    "aria-label": `${(s.samples ?? []).length} recent samples of ${s.name}` });
  (s.samples ?? []).forEach((sample, i) => {
    const rect = svg("rect", { x: i * 5, y: 2, width: 4, height: 16, class: `sample sample-${sample.status}` });
    rect.append(svg("title"));
    rect.firstChild.textContent = `${new Date(sample.checked_at).toLocaleTimeString()}: ${sample.status}${sample.response_time_ms != null ? `, ${sample.response_time_ms} ms` : ""}`;
    strip.append(rect);
  });
  return row([
    s.name,
    badge("health", s.enabled === false ? "disabled" : s.status ?? "unknown"),
    s.uptime_24h == null ? "—" : `${(Number(s.uptime_24h) * 100).toFixed(1)} %`,
    s.last_response_time_ms == null ? "—" : `${s.last_response_time_ms} ms`,
    timeAgo(s.last_checked_at),
    strip,
  ]);
}

function runLink(runId) {
  const link = element("a", "mono", runId);
  link.href = `#/runs/${encodeURIComponent(runId)}`;
  return link;
}

function traceLink(correlationId) {
  if (!correlationId) return "—";
  const link = element("a", "mono", "trace");
  link.href = `#/trace/${encodeURIComponent(correlationId)}`;
  link.title = correlationId;
  link.setAttribute("aria-label", `Trace ${correlationId}`);
  return link;
}

// ------------------------------------------------------------------ dead letters

/** The filter form as RPC arguments; empty fields are left out. */
function deadFilter() {
  const form = $("dead-filter").elements;
  const filter = {};
  const pattern = form.event_pattern.value.trim();
  const error = form.error_contains.value;
  if (pattern) filter.p_event_pattern = pattern;
  if (error.trim()) filter.p_error_contains = error;
  for (const [field, arg] of [["created_from", "p_created_from"], ["created_to", "p_created_to"]]) {
    if (form[field].value) filter[arg] = new Date(form[field].value).toISOString();
  }
  return filter;
}

/** A filter in words: the form's RPC arguments (p_*) or a redrive_log row's filter. */
function describeFilter(filter) {
  const f = Object.fromEntries(Object.entries(filter).map(([key, value]) => [key.replace(/^p_/, ""), value]));
  const parts = [];
  if (f.event_pattern) parts.push(`event type ${f.event_pattern}`);
  if (f.created_from) parts.push(`created from ${new Date(f.created_from).toLocaleString()}`);
  if (f.created_to) parts.push(`created before ${new Date(f.created_to).toLocaleString()}`);
  if (f.error_contains) parts.push(`error contains “${f.error_contains}”`);
  if (f.ids) parts.push(`${f.ids.length} chosen ids`);
  return parts.length ? parts.join(", ") : "no filter";
}

async function loadDeadLetters({ more = false } = {}) {
  const dead = state.dead;
  if (!more) dead.filter = deadFilter();
  const last = more ? dead.rows[dead.rows.length - 1] : null;
  const args = { ...dead.filter, p_limit: PAGE_SIZE };
  if (last) Object.assign(args, { p_before_dead_at: last.dead_at, p_before_id: last.id });
  $("dead-table").setAttribute("aria-busy", "true");
  try {
    const page = await rpc("integration", "list_dead_letters", args);
    dead.rows = more ? dead.rows.concat(page.rows) : page.rows;
    dead.total = page.total;
    const rows = page.rows.map((d) =>
      row([
        d.event_type,
        `${d.aggregate_type} ${d.aggregate_id}`,
        String(d.attempts),
        element("span", "error-text", d.last_error ?? "—"),
        timeAgo(d.created_at),
        timeAgo(d.dead_at),
        traceLink(d.correlation_id),
      ]),
    );
    if (more) $("dead-rows").append(...rows);
    else $("dead-rows").replaceChildren(...rows);
    $("dead-summary").textContent = `${count(dead.total)} dead letter${dead.total === 1 ? "" : "s"} match ${describeFilter(dead.filter)}; showing ${dead.rows.length}.`;
    $("dead-empty").hidden = dead.total > 0;
    $("dead-more").hidden = dead.rows.length >= dead.total;
  } catch (error) {
    $("dead-summary").textContent = `Could not load dead letters: ${error.message}`;
  } finally {
    $("dead-table").removeAttribute("aria-busy");
  }
  loadRedriveLog();
}

function clearDryRun() {
  state.dead.dryRun = null;
  $("redrive-run").disabled = true;
  $("redrive-run").textContent = "Redrive…";
  $("redrive-result").textContent = "";
}

async function dryRun(button) {
  const filter = deadFilter();
  const result = await act(button, "count the matches", () =>
    rpc("integration", "redrive_outbox", { ...filter, p_dry_run: true }),
  `Dry run done: nothing was changed.`);
  if (!result) return;
  state.dead.dryRun = { key: JSON.stringify(filter), filter, matched: result.matched };
  $("redrive-result").textContent = `${count(result.matched)} dead event${result.matched === 1 ? "" : "s"} match ${describeFilter(filter)}. Nothing was changed.`;
  const run = $("redrive-run");
  run.disabled = result.matched === 0 || !session.online;
  run.textContent = `Redrive ${count(result.matched)}…`;
  loadRedriveLog();
}

async function redrive(button) {
  const dry = state.dead.dryRun;
  if (!dry || dry.key !== JSON.stringify(deadFilter())) {
    clearDryRun();
    toast("The filter changed since the dry run: count again first.");
    return;
  }
  const answer = await confirmDialog({
    title: `Redrive ${count(dry.matched)} dead events?`,
    body: `Every dead event matching ${describeFilter(dry.filter)} goes back to the queue with its attempts reset, and the router delivers it again. This is recorded in the redrive log under your name.`,
    ok: `Redrive ${count(dry.matched)}`,
  });
  if (answer === null) return;
  const result = await act(button, "redrive", () => rpc("integration", "redrive_outbox", { ...dry.filter, p_dry_run: false }),
    (r) => `Redriven ${count(r.redriven)} of ${count(r.matched)} matching dead events.`);
  clearDryRun();
  if (result) {
    $("redrive-result").textContent = `Redriven ${count(result.redriven)} dead events; the router is delivering them.`;
    loadDeadLetters();
  }
}

async function loadRedriveLog() {
  try {
    const log = await select("integration", "redrive_log", (q) =>
      q.select("id,requested_by,filter,dry_run,matched,redriven,created_at").order("id", { ascending: false }).limit(20),
    );
    $("redrive-log-rows").replaceChildren(
      ...log.map((r) =>
        row([timeAgo(r.created_at), r.requested_by, describeFilter(r.filter ?? {}), r.dry_run ? "yes" : "no",
          count(r.matched), count(r.redriven)]),
      ),
    );
  } catch (error) {
    $("redrive-log-rows").replaceChildren(row([`Could not load the redrive log: ${error.message}`]));
  }
}

// ------------------------------------------------------------------ runs and jobs

async function loadRunsScreen(runId) {
  await Promise.all([loadOverview(), loadProjects()]);
  renderPending();
  await Promise.all([renderEnvironments(), loadRuns(), loadJobs()]);
  if (runId) openRun(runId);
  else closeRun();
}

async function loadProjects() {
  try {
    state.projects = await select("ops", "projects", (q) => q.select("project_id,name,protected_envs").order("project_id"));
  } catch (error) {
    toast(`Could not load projects: ${error.message}`);
    return;
  }
  const select_ = $("runs-filter").elements.project_id;
  const chosen = select_.value;
  select_.replaceChildren(element("option", "", "All"), ...state.projects.map((p) => element("option", "", p.project_id)));
  select_.firstChild.value = "";
  select_.value = chosen;
}

function actionButton(label, onClick, { primary = false, danger = false } = {}) {
  const button = element("button", `button${primary ? " button-primary" : ""}${danger ? " button-danger" : ""}`, label);
  button.type = "button";
  button.dataset.action = "true";
  button.disabled = !session.online;
  button.addEventListener("click", () => onClick(button));
  return button;
}

function actions(...buttons) {
  const box = element("div", "actions");
  box.append(...buttons);
  return box;
}

function renderPending() {
  const approvals = state.overview?.approvals ?? { runs: [], actions: [] };
  const rows = [];
  for (const r of approvals.runs ?? []) {
    rows.push(
      row([
        runLink(r.run_id),
        `${r.kind ?? "deploy"} of ${r.project_id}/${r.env} at ${String(r.git_sha ?? "").slice(0, 7)}`,
        r.approval_requested_by ?? r.requested_by ?? "—",
        timeAgo(r.approval_requested_at ?? r.queued_at),
        actions(
          actionButton("Approve", (b) => decideRun(b, r.run_id, true), { primary: true }),
          actionButton("Reject", (b) => decideRun(b, r.run_id, false), { danger: true }),
        ),
      ]),
    );
  }
  for (const a of approvals.actions ?? []) {
    const detail = element("span");
    detail.append(element("code", "", a.tool), " ", element("span", "muted", JSON.stringify(a.arguments ?? {})));
    if (a.expires_at) detail.append(element("span", "muted", ` · expires ${new Date(a.expires_at).toLocaleTimeString()}`));
    rows.push(
      row([
        element("span", "mono", a.handle),
        detail,
        `${a.requested_by}${a.requested_via ? ` via ${a.requested_via}` : ""}`,
        timeAgo(a.created_at),
        actions(
          actionButton("Approve", (b) => decideAction(b, a.handle, true), { primary: true }),
          actionButton("Reject", (b) => decideAction(b, a.handle, false), { danger: true }),
        ),
      ]),
    );
  }
  $("pending-rows").replaceChildren(...rows);
  $("pending-empty").hidden = rows.length > 0;
}

async function decideRun(button, runId, approve) {
  const comment = await confirmDialog({
    title: `${approve ? "Approve" : "Reject"} run ${runId}?`,
    body: approve ? "The runner continues the run at once." : "The run ends rejected.",
    ok: approve ? "Approve" : "Reject",
    input: "Comment (optional)",
  });
  if (comment === null) return;
  const done = await act(button, `${approve ? "approve" : "reject"} ${runId}`,
    () => rpc("ops", approve ? "approve_run" : "reject_run", { p_run_id: runId, p_comment: comment || null }),
    `${approve ? "Approved" : "Rejected"} ${runId}.`);
  if (done) loadRunsScreen(parseHash().arg);
}

async function decideAction(button, handle, approve) {
  const comment = await confirmDialog({
    title: `${approve ? "Approve" : "Reject"} ${handle}?`,
    body: approve ? "The agent's action runs at once, in your name as approver." : "The agent's request ends rejected.",
    ok: approve ? "Approve" : "Reject",
    input: "Comment (optional)",
  });
  if (comment === null) return;
  const done = await act(button, `${approve ? "approve" : "reject"} ${handle}`,
    () => rpc("ops", "decide_action", { p_handle: handle, p_approve: approve, p_comment: comment || null }),
    (r) => `${handle}: ${r?.status ?? (approve ? "approved" : "rejected")}.`);
  if (done) loadRunsScreen(parseHash().arg);
}

/**
 * The environments worth a row: protected ones, frozen ones and those with a
 * run in flight. Any other is frozen from the form below the table.
 */
async function renderEnvironments() {
  let locks = [];
  try {
    locks = await select("ops", "environment_locks", (q) =>
      q.select("project_id,env,frozen,frozen_by,frozen_reason,frozen_at").eq("frozen", true));
  } catch (error) {
    toast(`Could not load environments: ${error.message}`);
  }
  const envs = new Map();
  const add = (project, env) => envs.set(`${project}/${env}`, { project, env });
  for (const p of state.projects) for (const env of p.protected_envs ?? []) add(p.project_id, env);
  for (const r of state.overview?.runs_in_flight ?? []) add(r.project_id, r.env);
  for (const l of locks) add(l.project_id, l.env);
  const lockOf = new Map(locks.map((l) => [`${l.project_id}/${l.env}`, l]));
  const rows = [...envs.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([key, { project, env }]) => {
    const lock = lockOf.get(key);
    return row([
      key,
      badge("env", lock ? "frozen" : "open"),
      lock ? `${lock.frozen_reason ?? ""} (${lock.frozen_by}, ${relativeTime(lock.frozen_at)})` : "—",
      actions(
        lock
          ? actionButton("Unfreeze", (b) => unfreeze(b, project, env))
          : actionButton("Freeze…", (b) => freeze(b, project, env)),
        actionButton("Roll back…", (b) => rollback(b, project, env), { danger: true }),
      ),
    ]);
  });
  $("env-rows").replaceChildren(...rows);
  const projects = $("freeze-form").elements.project_id;
  const chosen = projects.value;
  projects.replaceChildren(...state.projects.map((p) => element("option", "", p.project_id)));
  if (chosen) projects.value = chosen;
}

async function freeze(button, project, env) {
  const reason = await confirmDialog({
    title: `Freeze ${project}/${env}?`,
    body: "No deploy to this environment starts while it is frozen; approvals and rollbacks are refused too.",
    ok: "Freeze",
    input: "Why (required)",
    required: true,
  });
  if (reason === null) return;
  const done = await act(button, `freeze ${project}/${env}`,
    () => rpc("ops", "lock_environment", { p_project_id: project, p_env: env, p_reason: reason }), `Froze ${project}/${env}.`);
  if (done) renderEnvironments();
}

async function unfreeze(button, project, env) {
  const ok = await confirmDialog({ title: `Unfreeze ${project}/${env}?`, body: "Deploys may start again.", ok: "Unfreeze" });
  if (ok === null) return;
  const done = await act(button, `unfreeze ${project}/${env}`,
    () => rpc("ops", "unlock_environment", { p_project_id: project, p_env: env }), `Unfroze ${project}/${env}.`);
  if (done) renderEnvironments();
}

async function rollback(button, project, env, toRunId = null) {
  const ok = await confirmDialog({
    title: `Roll back ${project}/${env}?`,
    body: toRunId
      ? `Queues a rollback to what run ${toRunId} deployed.`
      : "Queues a rollback to the release before the current one (the previous successful run).",
    ok: "Queue the rollback",
  });
  if (ok === null) return;
  const done = await act(button, `roll back ${project}/${env}`,
    () => rpc("ops", "queue_rollback", { p_project_id: project, p_env: env, p_to_run_id: toRunId }),
    (r) => `Queued rollback ${r?.run_id ?? ""}.`);
  if (done) loadRunsScreen(done.run_id ?? parseHash().arg);
}

async function loadRuns() {
  const form = $("runs-filter").elements;
  try {
    const runs = await rpc("ops", "list_runs", {
      p_limit: PAGE_SIZE,
      p_project_id: form.project_id.value || null,
      p_status: form.status.value || null,
    });
    $("run-rows").replaceChildren(
      ...runs.map((r) =>
        row([runLink(r.run_id), `${r.project_id}/${r.env}`, r.kind, badge("status", r.status), r.phase ?? "—",
          element("span", "mono", String(r.git_sha ?? "").slice(0, 7)), r.requested_by ?? "—", timeAgo(r.queued_at)]),
      ),
    );
    $("runs-empty").hidden = runs.length > 0;
  } catch (error) {
    toast(`Could not load runs: ${error.message}`);
  }
}

function closeRun() {
  state.openRun = null;
  $("run-detail").hidden = true;
}

async function openRun(runId) {
  let run;
  try {
    run = await rpc("ops", "get_run", { p_run_id: runId });
  } catch (error) {
    toast(`Could not open run ${runId}: ${error.message}`);
    return;
  }
  const opened = state.openRun !== runId;
  state.openRun = runId;
  $("run-detail-title").textContent = `Run ${run.run_id}`;
  const facts = $("run-facts");
  facts.replaceChildren();
  const fact = (label, value) => {
    const item = element("div", "fact");
    const dd = element("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value ?? "—";
    item.append(element("dt", "", label), dd);
    facts.append(item);
  };
  fact("Status", badge("status", run.status));
  fact("Project / env", `${run.project_id}/${run.env}`);
  fact("Kind", run.kind);
  fact("Commit", `${String(run.git_sha ?? "").slice(0, 12)} ${run.git_ref ?? ""}`);
  fact("Requested by", run.requested_by);
  fact("Queued", run.queued_at ? new Date(run.queued_at).toLocaleString() : "—");
  fact("Finished", run.finished_at ? new Date(run.finished_at).toLocaleString() : "—");
  fact("Trace", traceLink(run.correlation_id));
  if (run.error) fact("Error", element("span", "error-text", run.error));

  const events = run.events ?? [];
  renderPhases(run, events);
  $("run-events").replaceChildren(
    ...events.map((e) => {
      const li = element("li", `event level-${e.level ?? "info"}`);
      const time = element("time", "mono", new Date(e.at).toLocaleTimeString());
      time.dateTime = e.at;
      li.append(time, " ", badge("level", e.level ?? "info"), " ", element("span", "", e.message ?? ""));
      if (e.phase) li.append(" ", element("span", "muted", `(${e.phase})`));
      if (e.actor) li.append(" ", element("span", "muted", `by ${e.actor}`));
      return li;
    }),
  );

  const buttons = [];
  if (run.status === "awaiting_approval") {
    buttons.push(actionButton("Approve", (b) => decideRun(b, run.run_id, true), { primary: true }),
      actionButton("Reject", (b) => decideRun(b, run.run_id, false), { danger: true }));
  }
  if (RUN_ACTIVE.has(run.status)) buttons.push(actionButton("Cancel…", (b) => cancelRun(b, run.run_id), { danger: true }));
  if (run.status === "failed" || run.status === "cancelled") {
    buttons.push(actionButton("Requeue", (b) => requeueRun(b, run.run_id), { primary: true }));
  }
  if (run.status === "success") {
    buttons.push(actionButton("Roll back to this…", (b) => rollback(b, run.project_id, run.env, run.run_id), { danger: true }));
  }
  $("run-actions").replaceChildren(...buttons);
  $("run-detail").hidden = false;
  if (opened) $("run-detail").focus();
}

/** Each phase the run went through, from its events: when it began and how long it took. */
function renderPhases(run, events) {
  const phases = [];
  for (const e of events) {
    if (!e.phase) continue;
    const last = phases[phases.length - 1];
    if (!last || last.name !== e.phase) phases.push({ name: e.phase, start: e.at, end: e.at });
    else last.end = e.at;
  }
  phases.forEach((p, i) => {
    p.end = phases[i + 1]?.start ?? run.finished_at ?? p.end;
  });
  $("run-phases").replaceChildren(
    ...phases.map((p, i) => {
      const current = i === phases.length - 1 && RUN_ACTIVE.has(run.status);
      const li = element("li", `phase${current ? " is-current" : ""}`);
      const ms = new Date(p.end) - new Date(p.start);
      li.append(element("strong", "", p.name), " ", element("span", "muted", current ? "in progress" : formatMs(ms)));
      if (current) li.setAttribute("aria-current", "step");
      return li;
    }),
  );
  if (phases.length === 0) $("run-phases").replaceChildren(element("li", "muted", run.phase ?? "not started"));
}

function formatMs(ms) {
  if (!Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

async function cancelRun(button, runId) {
  const reason = await confirmDialog({ title: `Cancel run ${runId}?`, body: "The runner stops it at the next phase boundary.",
    ok: "Cancel the run", input: "Why (required)", required: true });
  if (reason === null) return;
  const done = await act(button, `cancel ${runId}`, () => rpc("ops", "cancel_run", { p_run_id: runId, p_reason: reason }),
    `Cancelled ${runId}.`);
  if (done) loadRunsScreen(runId);
}

async function requeueRun(button, runId) {
  const done = await act(button, `requeue ${runId}`, () => rpc("ops", "requeue_run", { p_run_id: runId }),
    (r) => `Requeued as ${r?.run_id ?? "a new run"}.`);
  if (done) location.hash = `#/runs/${encodeURIComponent(done.run_id ?? runId)}`;
}

async function loadJobs() {
  const form = $("jobs-filter").elements;
  try {
    const jobs = await rpc("observability", "list_recent_jobs", {
      p_limit: PAGE_SIZE,
      p_status: form.status.value || null,
      p_job_type: form.job_type.value.trim() || null,
    });
    $("job-rows").replaceChildren(
      ...jobs.map((j) => {
        const buttons = [];
        if (j.status === "dead" || j.status === "cancelled") buttons.push(actionButton("Requeue", (b) => requeueJob(b, j)));
        if (["queued", "running", "failed"].includes(j.status)) {
          buttons.push(actionButton("Cancel…", (b) => cancelJob(b, j), { danger: true }));
        }
        return row([j.job_type, badge("status", j.status), String(j.attempts), element("span", "error-text", j.last_error ?? "—"),
          timeAgo(j.created_at), traceLink(j.correlation_id), actions(...buttons)]);
      }),
    );
    $("jobs-empty").hidden = jobs.length > 0;
  } catch (error) {
    toast(`Could not load jobs: ${error.message}`);
  }
}

const me = () => session.session?.user?.email || session.session?.user?.id || "operator";

async function requeueJob(button, job) {
  const done = await act(button, `requeue the ${job.job_type} job`,
    () => rpc("observability", "requeue_job", { job_id: job.id, requested_by: me() }), `Requeued the ${job.job_type} job.`);
  if (done) loadJobs();
}

async function cancelJob(button, job) {
  const reason = await confirmDialog({ title: `Cancel the ${job.job_type} job?`, body: "It will not run again unless requeued.",
    ok: "Cancel the job", input: "Why (required)", required: true });
  if (reason === null) return;
  const done = await act(button, `cancel the ${job.job_type} job`,
    () => rpc("observability", "cancel_job", { job_id: job.id, reason, requested_by: me() }), `Cancelled the ${job.job_type} job.`);
  if (done) loadJobs();
}

// ------------------------------------------------------------------ trace

async function loadTrace(correlationId) {
  $("trace-summary").textContent = "Tracing…";
  $("trace-rows").replaceChildren();
  let rows;
  try {
    rows = await rpc("ops", "get_trace", { correlation_id: correlationId });
  } catch (error) {
    $("trace-summary").textContent = `Could not trace ${correlationId}: ${error.message}`;
    return;
  }
  if (rows.length === 0) {
    $("trace-summary").textContent = `Nothing recorded under ${correlationId}.`;
    return;
  }
  const first = new Date(rows[0].at);
  const total = new Date(rows[rows.length - 1].at) - first;
  const sources = [...new Set(rows.map((r) => r.source))];
  $("trace-summary").textContent = `${rows.length} steps across ${sources.join(", ")}, ${formatMs(total)} from first to last.`;
  $("trace-rows").replaceChildren(
    ...rows.map((r) => {
      const li = element("li", `step source-${r.source}`);
      const at = new Date(r.at);
      const time = element("time", "mono", `+${formatMs(at - first)}`);
      time.dateTime = r.at;
      time.title = at.toISOString();
      const head = element("div", "step-head");
      head.append(time, " ", badge("source", r.source), " ", element("strong", "", r.kind));
      if (r.subject_id) head.append(" ", element("span", "mono muted", r.subject_id));
      if (r.duration_ms != null) head.append(" ", element("span", "step-gap", `${formatMs(Number(r.duration_ms))} after the previous step`));
      li.append(head);
      if (r.detail?.receipt?.execution_id) li.append(receiptLine(r.detail.receipt));
      if (r.detail && Object.keys(r.detail).length) {
        // The gist on one line; everything behind a disclosure.
        const gist = Object.entries(r.detail)
          .filter(([, v]) => v !== null && typeof v !== "object")
          .slice(0, 4)
          .map(([k, v]) => `${k}: ${v}`)
          .join(" · ");
        const more = element("details", "step-more");
        more.append(element("summary", "", gist || "detail"), element("pre", "step-detail", JSON.stringify(r.detail, null, 1)));
        li.append(more);
      }
      return li;
    }),
  );
}

/** Who handled a delivery, as the receiver's answer said: an n8n execution, linked when n8n's URL is known. */
function receiptLine(receipt) {
  const line = element("p", "step-receipt", "Handled by n8n execution ");
  const n8n = session.config?.n8n_url;
  if (n8n && receipt.workflow_id) {
    const link = element("a", "mono", receipt.execution_id);
    link.href = `${n8n}/workflow/${encodeURIComponent(receipt.workflow_id)}/executions/${encodeURIComponent(receipt.execution_id)}`;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    line.append(link);
  } else {
    line.append(element("span", "mono", receipt.execution_id));
  }
  if (receipt.workflow_id) line.append(element("span", "muted", ` (workflow ${receipt.workflow_id})`));
  return line;
}

// ------------------------------------------------------------------ confirmation

/**
 * A modal question. Resolves to null when cancelled, else to the text typed
 * (or "" when the dialog asks for none).
 */
function confirmDialog({ title, body, ok, input = null, required = false }) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-body").textContent = body;
  $("confirm-ok").textContent = ok;
  $("confirm-input-label").hidden = !input;
  $("confirm-input-name").textContent = input ?? "";
  const field = $("confirm-input");
  field.value = "";
  field.required = required;
  return new Promise((resolve) => {
    const finish = (value) => {
      $("confirm-ok").removeEventListener("click", onOk);
      $("confirm-cancel").removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      dialog.close();
      resolve(value);
    };
    const onOk = () => {
      if (required && !field.value.trim()) {
        field.focus();
        field.setAttribute("aria-invalid", "true");
        return;
      }
      field.removeAttribute("aria-invalid");
      finish(input ? field.value.trim() : "");
    };
    const onCancel = (event) => {
      event?.preventDefault?.();
      finish(null);
    };
    $("confirm-ok").addEventListener("click", onOk);
    $("confirm-cancel").addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    (input ? field : $("confirm-ok")).focus();
  });
}

installListeners();
