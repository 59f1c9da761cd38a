// chatops end to end: Mattermost's slash-command requests (form-encoded, each
// command's own token) against the running stack, as Mattermost sends them.
// Covers /status (the outbox summary and a trace), /deploy (a protected run
// waiting for /approve, four eyes, an unknown version, staging queued
// directly), /approve and /reject of runs and of agents' handles (rejected,
// done, decided twice, expired), /hotfix (answered at once, the seed's reply
// posted to response_url later, the branch and draft PR on the GitHub
// stand-in), refused requests (tokens, commands, bodies, words) that write
// nothing, and the one ops.run_events audit row every served command writes.
//
// The GitHub stand-in keeps its state for the life of the stack, and the
// function's repository is fixed (switchyard/test-project): a hotfix branch a
// previous run made is still there, so each /hotfix expects the outcome the
// stand-in's /_state predicts (created, or "Reference already exists").
//
// Runs this file queued that are still active at the end are cancelled and
// handles it left awaiting a decision are rejected. Every wait is bounded.
//
//   node --test --test-concurrency=1 tests/e2e/chatops.test.mjs
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { env, sql, waitFor } from "./helpers.mjs";

const CHATOPS_URL = env.CHATOPS_URL ?? `${env.FUNCTIONS_URL}/chatops`;
const MM = env.MATTERMOST_URL ?? "http://127.0.0.1:54360";
const GH = env.GITHUB_STANDIN_URL ?? "http://127.0.0.1:54380";
const REPO = "switchyard/test-project";
const PROJECT = "test-project";
const CHANNEL_ID = `e2echan${randomBytes(6).toString("hex")}`;
const CHANNEL_NAME = "e2e-chatops";
const TOKENS = {
  "/deploy": env.CHATOPS_TOKEN_DEPLOY,
  "/hotfix": env.CHATOPS_TOKEN_HOTFIX,
  "/approve": env.CHATOPS_TOKEN_APPROVE,
  "/reject": env.CHATOPS_TOKEN_REJECT,
  "/status": env.CHATOPS_TOKEN_STATUS,
};
/** The approvers of scripts/local/functions.env (CHATOPS_APPROVERS). */
const OLIVIA = "olivia";
const ALICE = "alice";
const GH_AGENT = "switchyard-chatops"; // the user-agent ChatOps sends to GitHub
const HANDLE = /^apr_[A-Za-z0-9_-]{43}$/;
const RUN = /run-[a-z0-9-]+/;
const STARTED = Date.now() - 1000;

/** Runs and handles this file caused, for the final cleanup. */
const myRuns = new Set();
const myHandles = new Set();

after(() => {
  for (const handle of myHandles) {
    try {
      sql(`select ops.decide_action(handle, false, 'e2e cleanup', 'e2e-cleanup') from ops.action_requests
           where handle = ${lit(handle)} and status = 'awaiting_approval' and expires_at > now()`);
    } catch {}
  }
  for (const runId of myRuns) {
    try {
      sql(`select ops.cancel_run(run_id, 'e2e cleanup', 'e2e') from ops.runs
           where run_id = ${lit(runId)} and status not in ('success', 'failed', 'cancelled')`);
    } catch {}
  }
});

// ----------------------------------------------------------------- helpers

const lit = (s) => `'${String(s).replaceAll("'", "''")}'`;
const rand = () => randomBytes(5).toString("hex");
const newSha = () => randomBytes(20).toString("hex");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** A Mattermost user name nobody else uses (not an approver). */
const someone = (role = "dev") => `e2e-${role}-${rand()}`;

function sqlJson(query) {
  const out = sql(query);
  return out === "" ? null : JSON.parse(out);
}

/**
 * One slash command as Mattermost posts it. Options: user, token, hook (the
 * response_url's hook), responseUrl, cid, fields (merged last; undefined drops
 * a field), rawBody and contentType (sent as given).
 */
async function slash(command, text = "", options = {}) {
  const user = options.user ?? someone();
  const cid = options.cid ?? `e2e-chatops-${randomUUID()}`;
  const hook = options.hook ?? `e2e-chatops-${command.replace(/\W/g, "") || "x"}-${rand()}`;
  const fields = {
    token: options.token ?? TOKENS[command] ?? TOKENS["/status"],
    team_id: "e2eteam",
    channel_id: CHANNEL_ID,
    channel_name: CHANNEL_NAME,
    user_id: `uid${rand()}`,
    user_name: user,
    command,
    text,
    response_url: options.responseUrl ?? `${MM}/hooks/${hook}`,
    trigger_id: randomBytes(16).toString("hex"),
    ...(options.fields ?? {}),
  };
  for (const [name, value] of Object.entries(fields)) if (value === undefined) delete fields[name];
  const body = options.rawBody ?? new URLSearchParams(fields).toString();
  const started = performance.now();
  const response = await fetch(CHATOPS_URL, {
    method: "POST",
    headers: { "content-type": options.contentType ?? "application/x-www-form-urlencoded", "x-correlation-id": cid },
    body,
  });
  const raw = await response.text();
  const ms = performance.now() - started;
  let json = null;
  try {
    json = JSON.parse(raw);
  } catch {}
  return { status: response.status, headers: response.headers, json, raw, ms, cid, hook, user, text };
}

/** A 200 answer Mattermost shows: `type` (ephemeral or in_channel) and its text. */
function answered(res, type, pattern) {
  assert.equal(res.status, 200, res.raw);
  assert.equal(res.json?.ok, true, res.raw);
  assert.equal(res.json.correlation_id, res.cid);
  assert.equal(res.headers.get("x-correlation-id"), res.cid);
  assert.equal(res.json.response_type, type, res.raw);
  assert.equal(typeof res.json.text, "string");
  if (pattern instanceof RegExp) assert.match(res.json.text, pattern);
  else if (pattern !== undefined) assert.equal(res.json.text, pattern);
  assert.ok(res.ms < 3000, `answered within Mattermost's 3 s (${Math.round(res.ms)} ms)`);
  return res.json.text;
}

/** The JSON error envelope. */
function refusedWith(res, status, code) {
  assert.equal(res.status, status, res.raw);
  assert.equal(res.json?.ok, false, res.raw);
  assert.equal(res.json.error?.code, code, res.raw);
  assert.equal(typeof res.json.error.message, "string");
  assert.equal(res.json.correlation_id, res.cid);
  assert.equal(res.json.response_type, undefined, "no Mattermost answer in an error");
}

/** Tool-call audit rows (payload.outcome) under a correlation id, oldest first. */
const auditRows = (cid) =>
  sqlJson(`select coalesce(jsonb_agg(jsonb_build_object('actor', actor, 'run_id', run_id, 'level', level,
      'message', message, 'via', payload ->> 'via', 'tool', payload ->> 'tool', 'outcome', payload ->> 'outcome',
      'arguments', payload -> 'arguments', 'detail', payload -> 'detail') order by id), '[]')
    from ops.run_events where correlation_id = ${lit(cid)} and payload ? 'outcome'`);

/**
 * The one audit row of a served command: actor mattermost:<user>, via chatops,
 * the verb as tool, the outcome, the run (or any of a list). The arguments
 * are the request's text and channel; `args` replaces them (/hotfix records its own).
 */
function assertAudited(res, { tool, outcome, runId = null, args }) {
  const rows = auditRows(res.cid);
  assert.equal(rows.length, 1, `one audit row under ${res.cid}: ${JSON.stringify(rows)}`);
  const [row] = rows;
  assert.equal(row.actor, `mattermost:${res.user}`);
  assert.equal(row.via, "chatops");
  assert.equal(row.tool, tool);
  assert.equal(row.outcome, outcome);
  if (Array.isArray(runId)) assert.ok(runId.includes(row.run_id), JSON.stringify(row));
  else assert.equal(row.run_id, runId, JSON.stringify(row));
  assert.equal(row.level, ["ok", "awaiting_approval"].includes(outcome) ? "info" : "warn");
  assert.equal(row.message, `chatops ${tool}: ${outcome}`);
  assert.deepEqual(row.arguments, args ?? { text: res.text, channel_id: CHANNEL_ID, channel_name: CHANNEL_NAME });
  return row;
}

/** /hotfix audits itself once GitHub is done (after the answer): wait for the row, bounded. */
async function hotfixAudited(res, expected) {
  await waitFor(`the hotfix audit row under ${res.cid}`, () => auditRows(res.cid).length > 0, 15_000, 100);
  await sleep(200); // a second row would be a bug: give it a moment to show
  return assertAudited(res, { tool: "hotfix", ...expected });
}

const noAudit = (res) => assert.deepEqual(auditRows(res.cid), [], `no audit row under ${res.cid}`);

const runsOf = (cid) =>
  sqlJson(`select coalesce(jsonb_agg(to_jsonb(r) - 'lease_token' - 'progress' order by queued_at), '[]')
           from ops.runs r where correlation_id = ${lit(cid)}`);
const runById = (runId) => sqlJson(`select to_jsonb(r) - 'lease_token' - 'progress' from ops.runs r where run_id = ${lit(runId)}`);
const approvalOf = (runId) => sqlJson(`select to_jsonb(a) from ops.approvals a where run_id = ${lit(runId)}`);
const handleRow = (handle) => sqlJson(`select to_jsonb(a) from ops.action_requests a where handle = ${lit(handle)}`);
const runsForSha = (sha) => sqlJson(`select coalesce(jsonb_agg(run_id), '[]') from ops.runs where git_sha = ${lit(sha)}`);
/** Changes to any handle show here (rows are only added or updated). */
const handlesDigest = () =>
  sql(`select format('%s %s', count(*), max(updated_at)) from ops.action_requests`);

/** An agent's deploy handle, as ops-mcp asks for one. */
function agentHandle({ requestedBy = "mcp-agent", via = "mcp", sha = newSha() } = {}) {
  const args = JSON.stringify({ project_id: PROJECT, env: "production", git_sha: sha });
  const asked = sqlJson(`select ops.request_action('deploy_release', ${lit(args)}, ${lit(requestedBy)}, ${lit(via)})`);
  assert.match(asked.handle, HANDLE);
  assert.equal(asked.status, "awaiting_approval");
  myHandles.add(asked.handle);
  return { ...asked, sha };
}

async function gh(path, { auth = false } = {}) {
  const headers = auth ? { authorization: `Bearer ${env.OPS_RUNNER_GITHUB_TOKEN}` } : {};
  const response = await fetch(`${GH}${path}`, { headers });
  return { status: response.status, body: await response.json() };
}
const ghState = async () => (await gh("/_state")).body;
/** Calls ChatOps made to the GitHub stand-in since `sinceMs`. */
async function chatopsCalls(sinceMs) {
  const { body } = await gh(`/_calls?since=${Math.floor(sinceMs)}&repo=${encodeURIComponent(REPO)}`);
  return body.filter((c) => c.user_agent === GH_AGENT);
}

/** Messages the Mattermost stand-in recorded on a hook. */
async function hookMessages(hook) {
  const response = await fetch(`${MM}/messages?since=${STARTED}&limit=100000`);
  assert.equal(response.status, 200);
  return (await response.json()).filter((m) => m.hook === hook);
}
async function oneHookMessage(hook) {
  let messages = [];
  await waitFor(`a message on hook ${hook}`, async () => (messages = await hookMessages(hook)).length > 0, 15_000, 100);
  await sleep(300); // a second post would be a bug
  messages = await hookMessages(hook);
  assert.equal(messages.length, 1, JSON.stringify(messages));
  return messages[0].message;
}

// The stand-in's seeded repository (scripts/local/provider-standin.mjs), read from it.
let seeded;
async function seed() {
  if (seeded) return seeded;
  const tag = await gh(`/repos/${REPO}/git/ref/tags/v1.2.3`, { auth: true });
  const main = await gh(`/repos/${REPO}/git/ref/heads/main`, { auth: true });
  const issue = await gh(`/repos/${REPO}/issues/123`, { auth: true });
  assert.equal(tag.status, 200, JSON.stringify(tag.body));
  assert.equal(main.status, 200, JSON.stringify(main.body));
  assert.equal(issue.status, 200, JSON.stringify(issue.body));
  seeded = { tagSha: tag.body.object.sha, mainSha: main.body.object.sha, issueTitle: issue.body.title };
  return seeded;
}

// ----------------------------------------------------------------- /status

test("/status: the outbox summary and queue depths, only for the asker; /status <id> shows that trace", async () => {
  const user = someone("status");
  // The live stack moves (runs come and go): asked again (bounded) until the answer and SQL agree.
  const key = (q) => `- ${q.queue} ${q.job_type ?? ""} ${q.status}: `;
  let res, text, expected;
  await waitFor("/status to agree with SQL", async () => {
    res = await slash("/status", "", { user });
    text = answered(res, "ephemeral", /^\*\*switchyard status\*\*\nOutbox: /);
    assertAudited(res, { tool: "status", outcome: "ok" });
    const stats = sqlJson("select integration.outbox_stats()");
    const depths = sqlJson("select coalesce(jsonb_agg(to_jsonb(q)), '[]') from ops.get_queue_depth() q");
    const outbox = Object.entries(stats.by_status).map(([k, v]) => `${k} ${v}`).join(", ") || "empty";
    expected = { outbox: `Outbox: ${outbox}`, queues: depths.slice(0, 10).map(key).sort() };
    const lines = text.split("\n");
    const got = { outbox: lines[1], queues: lines.filter((l) => l.startsWith("- ")).map((l) => l.slice(0, l.lastIndexOf(": ") + 2)).sort() };
    return JSON.stringify(got) === JSON.stringify(expected);
  }, 10_000, 300).catch(() => assert.fail(`/status ${JSON.stringify(text)} vs SQL ${JSON.stringify(expected)}`));
  for (const line of text.split("\n").filter((l) => l.startsWith("- "))) {
    assert.match(line, /^- \S+ \S* \S+: \d+ \(oldest \S+ s\)$/, line);
  }
  assert.deepEqual(await hookMessages(res.hook), [], "nothing is posted to response_url");

  // The trace of that /status: its own audit row.
  const traced = await slash("/status", res.cid, { user });
  const steps = sqlJson(`select coalesce(jsonb_agg(to_jsonb(t)), '[]') from ops.get_trace(${lit(res.cid)}) t`);
  assert.equal(steps.length, 1, JSON.stringify(steps));
  const traceText = answered(traced, "ephemeral");
  assert.match(traceText, new RegExp(`^\\*\\*Trace \`${res.cid}\`\\*\\* \\(1 steps\\)\\n- \\S+ ops\\.run_events run\\.event\\.info\\n$`));
  assertAudited(traced, { tool: "status", outcome: "ok" });

  // An id nothing is recorded under.
  const unknown = `e2e-nothing-${rand()}`;
  const none = await slash("/status", unknown, { user });
  answered(none, "ephemeral", `Nothing is recorded under \`${unknown}\`.`);
  assertAudited(none, { tool: "status", outcome: "ok" });
});

// ----------------------------------------------------------------- /deploy and run approval

test("/deploy v1.2.3 --target=production waits for /approve; a non-approver is refused; olivia approves", async () => {
  const { tagSha } = await seed();
  const requester = someone("req");
  const since = Date.now();
  const asked = await slash("/deploy", "v1.2.3 --target=production", { user: requester });
  const text = answered(asked, "in_channel");
  const runId = text.match(RUN)?.[0];
  assert.ok(runId, text);
  myRuns.add(runId);
  assert.equal(text,
    `🚦 Deploy of \`v1.2.3\` (${tagSha.slice(0, 12)}) to **production** requested by @${requester}\n` +
    `Run \`${runId}\` waits for approval: \`/approve ${runId}\``);

  const runs = runsOf(asked.cid);
  assert.equal(runs.length, 1, JSON.stringify(runs));
  const [run] = runs;
  assert.equal(run.run_id, runId);
  assert.equal(run.project_id, PROJECT);
  assert.equal(run.env, "production");
  assert.equal(run.status, "awaiting_approval");
  assert.equal(run.requested_by, `mattermost:${requester}`);
  assert.equal(run.git_sha, tagSha, "the stand-in's v1.2.3");
  assert.equal(run.git_ref, "refs/tags/v1.2.3");
  assert.equal(run.kind, "deploy");
  assert.deepEqual(run.metadata, { via: "chatops", channel_id: CHANNEL_ID, version: "v1.2.3" });
  assert.equal(approvalOf(runId).status, "pending");
  assert.equal(approvalOf(runId).requested_by, `mattermost:${requester}`);
  assertAudited(asked, { tool: "deploy", outcome: "awaiting_approval", runId });

  // /status <the deploy's correlation id>: its trace, step by step, as ops.get_trace has it
  // (nothing moves while the run waits for approval).
  const traced = await slash("/status", asked.cid, { user: requester });
  const steps = sqlJson(`select coalesce(jsonb_agg(to_jsonb(t)), '[]') from ops.get_trace(${lit(asked.cid)}) t`);
  assert.ok(steps.length >= 3, JSON.stringify(steps)); // the run, its events, the audit row
  const traceLines = answered(traced, "ephemeral").split("\n");
  assert.equal(traceLines[0], `**Trace \`${asked.cid}\`** (${steps.length} steps)`);
  assert.deepEqual(traceLines.slice(1, -1).map((l) => l.split(" ").slice(2).join(" ")),
    steps.slice(0, 15).map((s) => `${s.source} ${s.kind}`));
  assert.ok(steps.some((s) => s.source === "ops.runs"), JSON.stringify(steps));
  assertAudited(traced, { tool: "status", outcome: "ok" });

  // Resolved through GitHub: the tag's ref, found at once.
  const calls = await chatopsCalls(since);
  assert.ok(calls.some((c) => c.kind === "ref_get" && c.path.endsWith("/git/ref/tags/v1.2.3") && c.status === 200),
    JSON.stringify(calls));

  // Someone who is not an approver.
  const before = { run: runById(runId), approval: approvalOf(runId) };
  const mallory = someone("mallory");
  const denied = await slash("/approve", runId, { user: mallory });
  answered(denied, "ephemeral", `@${mallory} may not approve or reject here (CHATOPS_APPROVERS).`);
  assert.deepEqual({ run: runById(runId), approval: approvalOf(runId) }, before, "the run is unchanged");
  assertAudited(denied, { tool: "approve", outcome: "refused" });
  const deniedReject = await slash("/reject", `${runId} no`, { user: mallory });
  answered(deniedReject, "ephemeral", `@${mallory} may not approve or reject here (CHATOPS_APPROVERS).`);
  assert.deepEqual({ run: runById(runId), approval: approvalOf(runId) }, before, "still unchanged");
  assertAudited(deniedReject, { tool: "reject", outcome: "refused" });

  // An approver.
  const approved = await slash("/approve", `${runId} ship it`, { user: OLIVIA });
  answered(approved, "in_channel", `✅ \`${runId}\` approved by @${OLIVIA}: now **queued**`);
  const approval = approvalOf(runId);
  assert.equal(approval.status, "approved");
  assert.equal(approval.decided_by, `mattermost:${OLIVIA}`);
  assert.equal(approval.comment, "ship it");
  const after = runById(runId);
  assert.ok(["queued", "claimed", "running", "success", "failed"].includes(after.status), after.status);
  assert.notEqual(after.status, "awaiting_approval");
  assert.equal(after.requested_by, `mattermost:${requester}`, "still the requester's run");
  const approvedEvent = sql(`select count(*) from ops.run_events where run_id = ${lit(runId)}
                             and message = ${lit(`Approved by mattermost:${OLIVIA}`)} and actor = ${lit(`mattermost:${OLIVIA}`)}`);
  assert.equal(approvedEvent, "1");
  const row = assertAudited(approved, { tool: "approve", outcome: "ok", runId });
  assert.deepEqual(row.detail, { subject: runId, status: "queued", run_id: runId });

  // Deciding it again: it no longer waits.
  const again = await slash("/approve", runId, { user: ALICE });
  answered(again, "ephemeral", new RegExp(`^Could not decide \`${runId}\`: only a run awaiting approval is approved or rejected; this one is \\w+$`));
  assert.equal(approvalOf(runId).decided_by, `mattermost:${OLIVIA}`);
  assertAudited(again, { tool: "approve", outcome: "refused" });
});

test("four eyes: alice cannot approve her own /deploy; olivia's /reject cancels it", async () => {
  const asked = await slash("/deploy", "v1.2.3 --target=production", { user: ALICE });
  const runId = answered(asked, "in_channel", /waits for approval/).match(RUN)[0];
  myRuns.add(runId);
  assert.equal(runById(runId).requested_by, `mattermost:${ALICE}`);
  const before = { run: runById(runId), approval: approvalOf(runId) };

  const own = await slash("/approve", runId, { user: ALICE });
  answered(own, "ephemeral",
    `Could not decide \`${runId}\`: a run is approved or rejected by someone other than whoever requested it`);
  assert.deepEqual({ run: runById(runId), approval: approvalOf(runId) }, before, "the run is unchanged");
  assertAudited(own, { tool: "approve", outcome: "refused" });
  const ownReject = await slash("/reject", runId, { user: ALICE });
  answered(ownReject, "ephemeral",
    `Could not decide \`${runId}\`: a run is approved or rejected by someone other than whoever requested it`);
  assert.deepEqual({ run: runById(runId), approval: approvalOf(runId) }, before);

  const rejected = await slash("/reject", `${runId} not on a Friday`, { user: OLIVIA });
  answered(rejected, "in_channel", `🛑 \`${runId}\` rejected by @${OLIVIA}: now **cancelled**`);
  const run = runById(runId);
  assert.equal(run.status, "cancelled");
  assert.equal(run.error, `rejected by mattermost:${OLIVIA}`);
  const approval = approvalOf(runId);
  assert.equal(approval.status, "rejected");
  assert.equal(approval.decided_by, `mattermost:${OLIVIA}`);
  assert.equal(approval.comment, "not on a Friday");
  assert.equal(auditRows(rejected.cid).length, 1);
  assert.equal(auditRows(rejected.cid)[0].outcome, "ok");
});

test("/deploy of a version GitHub does not know is refused for the asker; nothing is queued", async () => {
  const version = `v9.${Date.now()}.0`;
  const digest = handlesDigest();
  const res = await slash("/deploy", `${version} --target=production`);
  answered(res, "ephemeral", `${version} is not a tag, branch or commit of ${REPO}`);
  assert.deepEqual(runsOf(res.cid), []);
  assert.equal(sql(`select count(*) from ops.runs where requested_by = ${lit(`mattermost:${res.user}`)}`), "0");
  assert.equal(handlesDigest(), digest);
  assertAudited(res, { tool: "deploy", outcome: "refused" });
  // An unknown branch and an unknown sha likewise.
  for (const other of [`e2e-no-such-branch-${rand()}`, newSha()]) {
    const r = await slash("/deploy", other, { user: res.user });
    answered(r, "ephemeral", `${other} is not a tag, branch or commit of ${REPO}`);
    assert.deepEqual(runsOf(r.cid), []);
    assertAudited(r, { tool: "deploy", outcome: "refused" });
  }
  assert.equal(sql(`select count(*) from ops.runs where requested_by = ${lit(`mattermost:${res.user}`)}`), "0");
});

test("/deploy to staging is queued at once, without approval (the runner then runs it)", async () => {
  const { tagSha, mainSha } = await seed();
  const user = someone("stage");
  const res = await slash("/deploy", "v1.2.3 --target=staging", { user });
  const runId = answered(res, "in_channel").match(RUN)?.[0];
  assert.ok(runId, res.json.text);
  myRuns.add(runId);
  assert.equal(res.json.text, `🚀 Deploy of \`v1.2.3\` (${tagSha.slice(0, 12)}) to **staging** queued by @${user}: run \`${runId}\``);
  const run = runById(runId);
  assert.equal(run.env, "staging");
  assert.equal(run.git_sha, tagSha);
  assert.equal(run.requested_by, `mattermost:${user}`);
  assert.ok(["queued", "claimed", "running", "success", "failed"].includes(run.status), run.status);
  assert.equal(approvalOf(runId), null, "no approval asked");
  assertAudited(res, { tool: "deploy", outcome: "ok", runId });

  // Staging is the default target; a branch resolves to its head.
  const byBranch = await slash("/deploy", "main", { user });
  const branchRun = answered(byBranch, "in_channel", /to \*\*staging\*\* queued by/).match(RUN)[0];
  myRuns.add(branchRun);
  assert.equal(runById(branchRun).git_sha, mainSha);
  assert.equal(runById(branchRun).git_ref, "refs/heads/main");
  assertAudited(byBranch, { tool: "deploy", outcome: "ok", runId: branchRun });
});

// ----------------------------------------------------------------- agents' handles

test("/reject and /approve of an agent's handle: rejected, then done with a run; nothing before", async () => {
  // Rejected by olivia: nothing is queued.
  const first = agentHandle();
  const rejected = await slash("/reject", `${first.handle} wrong sha`, { user: OLIVIA });
  answered(rejected, "in_channel", `🛑 \`${first.handle}\` rejected by @${OLIVIA}: now **rejected**`);
  const rejectedRow = handleRow(first.handle);
  assert.equal(rejectedRow.status, "rejected");
  assert.equal(rejectedRow.decided_by, `mattermost:${OLIVIA}`);
  assert.equal(rejectedRow.decision_comment, "wrong sha");
  assert.equal(rejectedRow.run_id, null);
  assert.deepEqual(runsForSha(first.sha), []);
  const rejectAudit = assertAudited(rejected, { tool: "reject", outcome: "ok" });
  assert.deepEqual(rejectAudit.detail, { subject: first.handle, status: "rejected" });

  // Approved by olivia: done, with a run requested by the agent and approved by olivia.
  const second = agentHandle();
  assert.deepEqual(runsForSha(second.sha), [], "nothing queued before a decision");
  const approved = await slash("/approve", second.handle, { user: OLIVIA });
  const text = answered(approved, "in_channel");
  const runId = text.match(RUN)?.[0];
  assert.ok(runId, text);
  myRuns.add(runId);
  assert.equal(text, `✅ \`${second.handle}\` approved by @${OLIVIA}: now **done** (run \`${runId}\`)`);
  const doneRow = handleRow(second.handle);
  assert.equal(doneRow.status, "done");
  assert.equal(doneRow.decided_by, `mattermost:${OLIVIA}`);
  assert.equal(doneRow.run_id, runId);
  assert.deepEqual(runsForSha(second.sha), [runId]);
  const run = runById(runId);
  assert.equal(run.requested_by, "mcp-agent", "the agent asked");
  assert.equal(run.env, "production");
  assert.notEqual(run.status, "awaiting_approval");
  assert.equal(approvalOf(runId).decided_by, `mattermost:${OLIVIA}`, "olivia approved");
  assertAudited(approved, { tool: "approve", outcome: "ok", runId: [null, runId] });

  // Decided handles cannot be decided again.
  for (const [command, handle, status] of [["/approve", second.handle, "done"], ["/reject", second.handle, "done"],
    ["/approve", first.handle, "rejected"]]) {
    const digest = handlesDigest();
    const again = await slash(command, handle, { user: ALICE });
    answered(again, "ephemeral", `Could not decide \`${handle}\`: this handle was already decided: it is ${status}`);
    assert.equal(handlesDigest(), digest);
    assertAudited(again, { tool: command.slice(1), outcome: "refused" });
  }
  assert.deepEqual(runsForSha(second.sha), [runId], "no second run");
  assert.deepEqual(runsForSha(first.sha), []);
});

test("an expired handle is refused as expired; a non-approver and the requester cannot decide a handle", async () => {
  const expired = agentHandle();
  sql(`update ops.action_requests set expires_at = now() - interval '1 second' where handle = ${lit(expired.handle)}`);
  const res = await slash("/approve", expired.handle, { user: OLIVIA });
  answered(res, "ephemeral", `\`${expired.handle}\` expired before a decision; ask again.`);
  assert.equal(handleRow(expired.handle).status, "expired");
  assert.equal(handleRow(expired.handle).decided_by, null);
  assert.deepEqual(runsForSha(expired.sha), []);
  assertAudited(res, { tool: "approve", outcome: "refused" });
  // Once expired it is decided: invalid_state.
  const again = await slash("/reject", expired.handle, { user: OLIVIA });
  answered(again, "ephemeral", `Could not decide \`${expired.handle}\`: this handle was already decided: it is expired`);

  // A non-approver: refused, the handle untouched.
  const waiting = agentHandle();
  const mallory = someone("mallory");
  const denied = await slash("/approve", waiting.handle, { user: mallory });
  answered(denied, "ephemeral", `@${mallory} may not approve or reject here (CHATOPS_APPROVERS).`);
  assert.equal(handleRow(waiting.handle).status, "awaiting_approval");
  assert.deepEqual(runsForSha(waiting.sha), []);
  assertAudited(denied, { tool: "approve", outcome: "refused" });

  // A handle olivia asked for herself (through chat): she cannot decide it; alice can.
  const hers = agentHandle({ requestedBy: `mattermost:${OLIVIA}`, via: "chatops" });
  const own = await slash("/approve", hers.handle, { user: OLIVIA });
  answered(own, "ephemeral",
    `Could not decide \`${hers.handle}\`: an action is approved or rejected by someone other than whoever requested it`);
  assert.equal(handleRow(hers.handle).status, "awaiting_approval");
  const byAlice = await slash("/reject", hers.handle, { user: ALICE });
  answered(byAlice, "in_channel", `🛑 \`${hers.handle}\` rejected by @${ALICE}: now **rejected**`);

  // An unknown handle.
  const unknown = `apr_${"A".repeat(43)}`;
  const none = await slash("/approve", unknown, { user: OLIVIA });
  answered(none, "ephemeral", `Could not decide \`${unknown}\`: no action has this handle`);
  assertAudited(none, { tool: "approve", outcome: "refused" });

  // Cleanup of the one still waiting happens in after(); reject it now to keep the queue short.
  const cleanup = await slash("/reject", `${waiting.handle} e2e`, { user: ALICE });
  answered(cleanup, "in_channel", /now \*\*rejected\*\*/);
});

// ----------------------------------------------------------------- /hotfix

/** What /_state says about the branch and pull requests of issue N's hotfix. */
async function hotfixState(issue) {
  const state = await ghState();
  const ref = `refs/heads/hotfix/issue-${issue}`;
  return {
    ref: state.refs.find((r) => r.repo === REPO && r.ref === ref) ?? null,
    pulls: state.pull_requests.filter((p) => p.repo === REPO && p.head === `hotfix/issue-${issue}`),
  };
}

/**
 * /hotfix N: answered at once; then the seed's reply on response_url and the
 * branch and draft PR on GitHub, or (the branch is there from an earlier run)
 * the failure. Returns what happened.
 */
async function hotfix(issue, user = someone("fix")) {
  const { mainSha, issueTitle } = await seed();
  const before = await hotfixState(issue);
  const since = Date.now();
  const res = await slash("/hotfix", String(issue), { user });
  answered(res, "ephemeral", `⏳ Creating \`hotfix/issue-${issue}\` from \`main\` and a draft PR…`);
  assert.ok(res.ms < 1500, `/hotfix answers at once, before GitHub (${Math.round(res.ms)} ms)`);
  const message = await oneHookMessage(res.hook);
  const after = await hotfixState(issue);
  const calls = await chatopsCalls(since);
  if (before.ref === null) {
    // Created: the branch (one empty commit on main), a draft PR with the hotfix label.
    assert.ok(after.ref, `hotfix/issue-${issue} exists: ${JSON.stringify(after)}`);
    assert.equal(after.pulls.length, 1, JSON.stringify(after.pulls));
    const [pr] = after.pulls;
    assert.equal(pr.draft, true);
    assert.equal(pr.state, "open");
    assert.equal(pr.base, "main");
    assert.deepEqual(pr.labels, ["hotfix"]);
    assert.equal(pr.head_sha, after.ref.sha);
    if (issue === 123) assert.equal(pr.title, `Hotfix #123: ${issueTitle}`);
    assert.match(pr.title, new RegExp(`^Hotfix #${issue}: `));
    assert.match(pr.html_url, /\/pull\/\d+$/);
    const commit = (await ghState()).commits.find((c) => c.sha === after.ref.sha);
    assert.deepEqual(commit?.parents, [mainSha], "the branch starts with one commit on main");
    assert.match(commit.message, new RegExp(`^Start hotfix for #${issue}\\n\\nRequested with /hotfix by mattermost:${user}\\.$`));
    assert.deepEqual(message, {
      response_type: "in_channel",
      text: `✅ Hotfix PR Created\n\nIssue: #${issue}\nPR: ${pr.html_url}\nBranch: hotfix/issue-${issue}\n\n→ PR is in draft mode. Ready for fixes!`,
    });
    assert.deepEqual(calls.map((c) => [c.kind, c.status]), [["issue_get", 200], ["ref_get", 200], ["ref_get", 404],
      ["commit_get", 200], ["commit_create", 201], ["ref_create", 201], ["pull_create", 201], ["labels_add", 200]]);
    const row = await hotfixAudited(res, { outcome: "ok", args: { issue, base: "main", channel_id: CHANNEL_ID } });
    assert.deepEqual(row.detail, { pr_url: pr.html_url, pr_number: pr.number, branch: `hotfix/issue-${issue}` });
    return { created: true, pr };
  }
  // The branch was made before (an earlier /hotfix): found before anything is made, the channel hears why.
  assert.deepEqual(message, {
    response_type: "ephemeral",
    text: `❌ Hotfix for #${issue} failed: Branch hotfix/issue-${issue} already exists in ${REPO}`,
  });
  assert.deepEqual(after.ref, before.ref, "the branch is unchanged");
  assert.deepEqual(after.pulls, before.pulls, "no new pull request");
  assert.deepEqual(calls.map((c) => c.kind).filter((k) => ["pull_create", "labels_add"].includes(k)), []);
  assert.deepEqual(calls.map((c) => c.kind).filter((k) => ["commit_create", "ref_create"].includes(k)), [],
    "no orphan commit, no ref attempt");
  const row = await hotfixAudited(res, { outcome: "failed", args: { issue, base: "main", channel_id: CHANNEL_ID } });
  assert.deepEqual(row.detail, { why: `Branch hotfix/issue-${issue} already exists in ${REPO}` });
  return { created: false };
}

test("/hotfix 123: at once, then the seed's reply on response_url and a draft PR; a second one fails", { timeout: 90_000 }, async () => {
  const first = await hotfix(123);
  console.log(`# /hotfix 123: ${first.created ? `created ${first.pr.html_url}` : "the branch was there from an earlier run: failure asserted"}`);
  // Again: the branch exists now whatever happened before.
  const second = await hotfix(123);
  assert.equal(second.created, false);
  // #124 (seeded, closed) as well: created on a fresh stand-in, refused after.
  const other = await hotfix(124);
  console.log(`# /hotfix 124: ${other.created ? `created ${other.pr.html_url}` : "the branch was there from an earlier run: failure asserted"}`);
});

test("/hotfix of an issue that does not exist, or from a base that does not: the failure on response_url", { timeout: 60_000 }, async () => {
  const since = Date.now();
  const res = await slash("/hotfix", "999999");
  answered(res, "ephemeral", "⏳ Creating `hotfix/issue-999999` from `main` and a draft PR…");
  assert.deepEqual(await oneHookMessage(res.hook), {
    response_type: "ephemeral",
    text: `❌ Hotfix for #999999 failed: Issue #999999 does not exist in ${REPO}`,
  });
  await hotfixAudited(res, { outcome: "failed", args: { issue: 999999, base: "main", channel_id: CHANNEL_ID } });
  assert.deepEqual((await chatopsCalls(since)).map((c) => [c.kind, c.status]), [["issue_get", 404]]);
  assert.equal((await hotfixState(999999)).ref, null);

  const base = `e2e-no-base-${rand()}`;
  const since2 = Date.now();
  const fromNowhere = await slash("/hotfix", `#123 --base=${base}`);
  answered(fromNowhere, "ephemeral", `⏳ Creating \`hotfix/issue-123\` from \`${base}\` and a draft PR…`);
  assert.deepEqual(await oneHookMessage(fromNowhere.hook), {
    response_type: "ephemeral",
    text: `❌ Hotfix for #123 failed: Branch ${base} does not exist in ${REPO}`,
  });
  await hotfixAudited(fromNowhere, { outcome: "failed", args: { issue: 123, base, channel_id: CHANNEL_ID } });
  assert.deepEqual((await chatopsCalls(since2)).map((c) => [c.kind, c.status]), [["issue_get", 200], ["ref_get", 404]]);
});

test("/hotfix with a response_url outside CHATOPS_MATTERMOST_URL is refused; nothing is made on GitHub", { timeout: 60_000 }, async () => {
  const since = Date.now();
  const stateBefore = await ghState();
  const hook = `e2e-chatops-outside-${rand()}`;
  for (const responseUrl of [
    "http://evil.example/hooks/x",
    "http://127.0.0.1:543600/hooks/x",
    "http://127.0.0.1:54360@evil.example/hooks/x",
    `https://127.0.0.1:54360/hooks/${hook}`,
    "",
  ]) {
    const res = await slash("/hotfix", "123", { responseUrl, hook });
    answered(res, "ephemeral", "This request's response_url is not this Mattermost's (CHATOPS_MATTERMOST_URL).");
    assertAudited(res, { tool: "hotfix", outcome: "refused" });
  }
  await sleep(1500); // anything started after the answer would have called GitHub by now
  assert.deepEqual(await chatopsCalls(since), [], "no GitHub calls");
  const stateAfter = await ghState();
  assert.deepEqual([stateAfter.refs, stateAfter.commits, stateAfter.pull_requests],
    [stateBefore.refs, stateBefore.commits, stateBefore.pull_requests]);
  assert.deepEqual(await hookMessages(hook), []);
});

// ----------------------------------------------------------------- refused requests

test("refused requests write nothing: forged or another command's token, an unknown command, not a slash command", async () => {
  const since = Date.now();
  const digest = handlesDigest();
  const user = someone("bad");
  const cases = [
    ["a forged token", await slash("/deploy", "v1.2.3 --target=staging", { user, token: "f".repeat(32) }), 401, "unauthorized"],
    ["no token", await slash("/deploy", "v1.2.3", { user, fields: { token: "" } }), 401, "unauthorized"],
    ["/status's token on /deploy", await slash("/deploy", "v1.2.3", { user, token: TOKENS["/status"] }), 401, "unauthorized"],
    ["/deploy's token on /approve", await slash("/approve", "run-abc", { user: OLIVIA, token: TOKENS["/deploy"] }), 401, "unauthorized"],
    ["/approve's token on /hotfix", await slash("/hotfix", "123", { user, token: TOKENS["/approve"] }), 401, "unauthorized"],
    ["an unknown command", await slash("/reindex", "all", { user, token: TOKENS["/deploy"] }), 404, "not_found"],
    ["/backfill (not served)", await slash("/backfill", "x", { user }), 404, "not_found"],
    ["JSON, not a form", await slash("/deploy", "", {
      user, contentType: "application/json",
      rawBody: JSON.stringify({ token: TOKENS["/deploy"], command: "/deploy", text: "v1.2.3", user_name: user }),
    }), 422, "validation_failed"],
    ["no user_name", await slash("/deploy", "v1.2.3", { user, fields: { user_name: undefined } }), 422, "validation_failed"],
    ["an empty user_name", await slash("/deploy", "v1.2.3", { user, fields: { user_name: "" } }), 422, "validation_failed"],
    ["no command", await slash("/deploy", "v1.2.3", { user, fields: { command: undefined } }), 422, "validation_failed"],
    ["no token field", await slash("/status", "", { user, fields: { token: undefined } }), 422, "validation_failed"],
  ];
  for (const [what, res, status, code] of cases) {
    refusedWith(res, status, code);
    noAudit(res);
    assert.deepEqual(runsOf(res.cid), [], what);
    assert.deepEqual(await hookMessages(res.hook), [], what);
  }
  assert.equal(sql(`select count(*) from ops.run_events where actor = ${lit(`mattermost:${user}`)}`), "0");
  assert.equal(sql(`select count(*) from ops.runs where requested_by = ${lit(`mattermost:${user}`)}`), "0");
  assert.equal(handlesDigest(), digest);
  await sleep(500);
  assert.deepEqual(await chatopsCalls(since), [], "no GitHub calls");
  // The validation answer says what is wrong.
  assert.match(JSON.stringify(cases[8][1].json.error.details), /user_name/);
});

test("words that do not fit answer the usage, for the asker only; one refused audit row, nothing else", async () => {
  const since = Date.now();
  const digest = handlesDigest();
  const user = someone("usage");
  const usage = {
    "/deploy": "Usage: `/deploy <version> [--target=staging|production]`",
    "/hotfix": "Usage: `/hotfix <issue_number> [--base=branch]`",
    "/approve": "Usage: `/approve <handle or run id> [comment]`",
    "/reject": "Usage: `/reject <handle or run id> [reason]`",
    "/status": "Usage: `/status [correlation id]`",
  };
  for (const [command, text, expected] of [
    ["/deploy", "", usage["/deploy"]],
    ["/deploy", "--target=production", usage["/deploy"]],
    ["/deploy", "v1.2.3 v1.2.4", usage["/deploy"]],
    ["/deploy", "v1.2.3 --target=moon", `--target must be staging or production. ${usage["/deploy"]}`],
    ["/deploy", "v1.2.3 --force", usage["/deploy"]],
    ["/deploy", "../etc/passwd", usage["/deploy"]],
    ["/hotfix", "abc", `abc is not an issue number. ${usage["/hotfix"]}`],
    ["/hotfix", "", usage["/hotfix"]],
    ["/hotfix", "0", `0 is not an issue number. ${usage["/hotfix"]}`],
    ["/hotfix", "123 --base=../main", `../main is not a branch name. ${usage["/hotfix"]}`],
    ["/approve", "", usage["/approve"]],
    ["/approve", "drop table", `drop is neither an approval handle (apr_…) nor a run id (run-…). ${usage["/approve"]}`],
    ["/reject", "", usage["/reject"]],
    ["/status", "a b", usage["/status"]],
  ]) {
    const res = await slash(command, text, { user: command === "/approve" || command === "/reject" ? OLIVIA : user });
    answered(res, "ephemeral", expected);
    assertAudited(res, { tool: command.slice(1), outcome: "refused" });
    assert.deepEqual(runsOf(res.cid), [], `${command} ${text}`);
    assert.deepEqual(await hookMessages(res.hook), [], `${command} ${text}`);
  }
  assert.equal(sql(`select count(*) from ops.runs where requested_by = ${lit(`mattermost:${user}`)}`), "0");
  assert.equal(handlesDigest(), digest);
  await sleep(500);
  assert.deepEqual(await chatopsCalls(since), [], "no GitHub calls");
});

// ----------------------------------------------------------------- refs, audit and refusals

test("a branch's run records the branch as its git_ref", async () => {
  const { tagSha } = await seed();
  const branch = `e2e-release-${rand()}`;
  const made = await fetch(`${GH}/repos/${REPO}/git/refs`, {
    method: "POST",
    headers: { authorization: `Bearer ${env.OPS_RUNNER_GITHUB_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ ref: `refs/heads/${branch}`, sha: tagSha }),
  });
  assert.equal(made.status, 201);
  const res = await slash("/deploy", `${branch} --target=production`);
  const runId = answered(res, "in_channel", /waits for approval/).match(RUN)[0];
  myRuns.add(runId);
  const run = runById(runId);
  assert.equal(run.git_sha, tagSha);
  try {
    assert.equal(run.git_ref, `refs/heads/${branch}`);
  } finally {
    sql(`select ops.cancel_run(${lit(runId)}, 'e2e cleanup', 'e2e')`);
  }
});

test("the audit row of /approve names the run it decided or made", async () => {
  const asked = await slash("/deploy", "v1.2.3 --target=production");
  const runId = answered(asked, "in_channel", /waits for approval/).match(RUN)[0];
  myRuns.add(runId);
  const rejected = await slash("/reject", runId, { user: OLIVIA });
  answered(rejected, "in_channel", /now \*\*cancelled\*\*/);
  const handle = agentHandle();
  const approved = await slash("/approve", handle.handle, { user: OLIVIA });
  const madeRun = answered(approved, "in_channel", /now \*\*done\*\*/).match(RUN)[0];
  myRuns.add(madeRun);
  assert.equal(auditRows(rejected.cid)[0].run_id, runId);
  assert.equal(auditRows(approved.cid)[0].run_id, madeRun);
});

test("/approve of a run id that does not exist says so", async () => {
  const res = await slash("/approve", "run-e2enosuchrun", { user: OLIVIA });
  answered(res, "ephemeral", /^Could not decide `run-e2enosuchrun`: .*no run has this id/);
});
