// The seed's control-plane workflows against a real n8n (n8n/workflows/control-plane):
// deploy-trigger end to end (the seed's curl -> observability.jobs -> the Vercel
// deploy hook -> complete_job or fail_job -> ops.get_trace), with the Mattermost
// stand-in playing the deploy hook (hook `vercel-deploy`) and DO Spaces (hook
// `do-spaces`); the schedulers' triggers, and backup-scheduler's nodes through a
// copy of it that a webhook triggers; and the seed's SQL queries. `scripts/dev up`
// starts n8n; when it is not running this file starts it and stops it after.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, env, sql, stack, waitFor } from "./helpers.mjs";

const DEPLOY_URL = `${env.N8N_URL}/webhook/deploy-request`;
const SEED_BODY = { source: "manual", target: "staging", service: "odoo-core", commit_sha: "HEAD", triggered_by: "test" };
let n8nWasRunning;
let deployed; // test 1's answer, for the seed's queries

before(async () => {
  await messagesSince(Date.now()); // fails early if the stand-in is not running
  try {
    execFileSync("curl", ["-fsS", "-o", "/dev/null", "--max-time", "2", `${env.N8N_URL}/healthz/readiness`]);
    n8nWasRunning = true;
  } catch {
    n8nWasRunning = false;
    execFileSync(path.join(ROOT, "scripts/dev"), ["n8n", "up"], { stdio: "inherit", timeout: 300_000 });
  }
  const probe = await deploy({});
  assert.equal(probe.status, 422,
    "deploy-trigger is live (an n8n started before it existed needs `scripts/dev n8n down` and `up`)");
});

after(async () => {
  await failNext(0);
  if (!n8nWasRunning) stack("stop_process n8n");
});

async function deploy(body, headers = {}) {
  const response = await fetch(DEPLOY_URL, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, json: await response.json() };
}

/** What the Mattermost stand-in recorded from `since` (ms) on: [{received_at, hook, message}]. */
async function messagesSince(since, hook) {
  const response = await fetch(`${env.MATTERMOST_URL}/messages?since=${since}&limit=10000`);
  assert.equal(response.status, 200, "the Mattermost stand-in answers (scripts/dev up starts it)");
  return (await response.json()).filter((m) => hook === undefined || m.hook === hook);
}

async function failNext(n, hook = "vercel-deploy") {
  const response = await fetch(`${env.MATTERMOST_URL}/control`, {
    method: "POST",
    body: JSON.stringify({ hook, fail_next: n }),
  });
  assert.equal(response.status, 200);
}

/** An RPC of `schema` through the gateway and PostgREST, as the service role. */
async function postgrest(schema, name, args) {
  const response = await fetch(`${env.REST_URL}/rpc/${name}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "content-profile": schema,
      "accept-profile": schema,
      apikey: env.SERVICE_ROLE_KEY,
      authorization: `Bearer ${env.SERVICE_ROLE_KEY}`,
    },
    body: JSON.stringify(args),
  });
  return { status: response.status, body: await response.json() };
}

function job(id) {
  return JSON.parse(sql(`select to_jsonb(j) from observability.jobs j where id = '${id}'`) || "null");
}

const jobStatus = (id) => job(id)?.status;

test("the seed's deploy request is a job that calls the deploy hook, succeeds, and has a trace", async () => {
  const since = Date.now();
  const answer = await deploy(SEED_BODY);
  assert.equal(answer.status, 202, JSON.stringify(answer.json));
  const { job_id, correlation_id } = answer.json;
  assert.deepEqual(answer.json, { ok: true, job_id, correlation_id, status: "queued", duplicate: false });
  assert.match(correlation_id, /^deploy-\d{8}T\d{6}-[0-9a-f]{6}$/);
  assert.equal(answer.headers.get("x-correlation-id"), correlation_id);
  deployed = answer.json;

  await waitFor("the job to succeed", () => jobStatus(job_id) === "succeeded", 20_000, 100);
  const row = job(job_id);
  assert.equal(row.source, "manual");
  assert.equal(row.job_type, "deploy.staging");
  assert.equal(row.correlation_id, correlation_id);
  assert.deepEqual(row.payload, { target: "staging", service: "odoo-core", commit_sha: "HEAD" });
  assert.deepEqual(row.context, { workflow: "deploy-trigger", triggered_by: "test" });
  assert.equal(row.attempts, 1);
  assert.equal(row.max_attempts, 1);
  assert.equal(row.result.http_status, 200);
  assert.equal(row.lease_token, null);

  // n8n starts the job it enqueued (start_job: a lease) before it calls the
  // hook, and completes it with the lease token.
  assert.deepEqual(sql(`select coalesce(from_status, '-') || '>' || to_status || '|' || coalesce(worker, '')
    from observability.job_events where job_id = '${job_id}' order by id`).split("\n"),
    ["->queued|", "queued>running|n8n:switchyard deploy-trigger", "running>succeeded|n8n:switchyard deploy-trigger"]);
  assert.equal(sql(`select attempt || '|' || worker || '|' || outcome from observability.job_runs where job_id = '${job_id}'`),
    "1|n8n:switchyard deploy-trigger|succeeded", "one run, by n8n's deploy-trigger");

  const calls = (await messagesSince(since, "vercel-deploy")).filter((m) => m.message.job_id === job_id);
  assert.equal(calls.length, 1, "the deploy hook was called once");
  assert.equal(calls[0].message.correlation_id, correlation_id);
  assert.equal(calls[0].message.target, "staging");
  assert.equal(calls[0].message.service, "odoo-core");
  assert.equal(calls[0].message.commit_sha, "HEAD");

  const trace = await postgrest("ops", "get_trace", { correlation_id });
  assert.equal(trace.status, 200, JSON.stringify(trace.body));
  const kinds = trace.body.filter((r) => r.subject_id === job_id).map((r) => r.kind);
  assert.ok(kinds.indexOf("job.enqueued") === 0, kinds.join(", "));
  assert.ok(kinds.indexOf("job.succeeded") > 0, kinds.join(", "));
  assert.deepEqual(trace.body.filter((r) => r.subject_id === job_id && r.source === "observability.job_events")
    .map((r) => r.kind), ["job.running", "job.succeeded"], "queued -> running -> succeeded");
  assert.equal(trace.body.find((r) => r.kind === "job.running" && r.subject_id === job_id).detail.worker,
    "n8n:switchyard deploy-trigger");
  assert.ok(kinds.includes("job.run_succeeded"), kinds.join(", "));
  const times = trace.body.map((r) => Date.parse(r.at));
  assert.deepEqual(times, [...times].sort((a, b) => a - b), "the trace is in time order");
  assert.equal(trace.body[0].duration_ms, null);
  assert.ok(trace.body.slice(1).every((r) => Number(r.duration_ms) >= 0));
});

test("a caller's correlation id is kept; a repeated idempotency key is the same job, a different body with it 409", async () => {
  const since = Date.now();
  const key = `e2e-deploy:${process.pid}:${randomUUID()}`;
  const correlation = `e2e-deploy-${randomUUID()}`;
  const body = { ...SEED_BODY, target: "production", triggered_by: `e2e-${process.pid}` };
  const first = await deploy(body, { "x-idempotency-key": key, "x-correlation-id": correlation });
  assert.equal(first.status, 202, JSON.stringify(first.json));
  assert.equal(first.json.correlation_id, correlation);
  await waitFor("the job to succeed", () => jobStatus(first.json.job_id) === "succeeded", 20_000, 100);
  assert.equal(job(first.json.job_id).job_type, "deploy.production");

  const again = await deploy(body, { "x-idempotency-key": key, "x-correlation-id": correlation });
  assert.equal(again.status, 200);
  assert.deepEqual(again.json, { ok: true, job_id: first.json.job_id, correlation_id: correlation, status: "succeeded", duplicate: true });

  const other = await deploy({ ...body, commit_sha: "abc1234" }, { "x-idempotency-key": key });
  assert.equal(other.status, 409);
  assert.equal(other.json.error.code, "idempotency_conflict");

  await new Promise((r) => setTimeout(r, 500)); // room for a (wrong) second hook call
  const calls = (await messagesSince(since, "vercel-deploy")).filter((m) => m.message.correlation_id === correlation);
  assert.equal(calls.length, 1, "one job, one deploy");
  assert.equal(sql(`select count(*) from observability.jobs where correlation_id = '${correlation}'`), "1");
});

// The seed: "Fail loudly: on error, create an alert and update status". Nothing
// claims deploy jobs for a retry (n8n starts and executes the job it enqueued),
// so the workflow enqueues with max_attempts 1: one failed call makes the job
// dead, and fail_job raises alert.job_dead on the outbox in the same transaction.
test("a deploy hook that fails makes the job dead and raises alert.job_dead", async (t) => {
  const since = Date.now();
  await failNext(1);
  const correlation = `e2e-deploy-fail-${randomUUID()}`;
  let answer;
  try {
    answer = await deploy(SEED_BODY, { "x-correlation-id": correlation });
    assert.equal(answer.status, 202, JSON.stringify(answer.json));
    await waitFor("the job to be dead", () => jobStatus(answer.json.job_id) === "dead", 20_000, 100);
  } finally {
    await failNext(0);
  }
  const { job_id } = answer.json;
  const row = job(job_id);
  assert.equal(row.attempts, 1);
  assert.match(row.last_error, /^the deploy hook answered HTTP 500: failing on purpose/);
  assert.equal((await messagesSince(since, "vercel-deploy")).filter((m) => m.message.job_id === job_id).length, 0);

  // Alerts of one kind and subject within integration.alert_policy's window
  // are one outbox event: this job's alert is a new event (its correlation id)
  // or was counted into the window's earlier one (last_at is this failure).
  const alert = JSON.parse(sql(`select to_jsonb(o) from integration.outbox o
    where o.event_type = 'alert.job_dead' and o.aggregate_id = 'deploy.staging'
      and (o.correlation_id = '${correlation}'
           or (o.payload ->> 'last_at')::timestamptz = '${row.finished_at}'::timestamptz)`) || "null");
  assert.ok(alert, "an alert.job_dead event is on the outbox");
  const grouped = alert.correlation_id !== correlation;
  if (!grouped) {
    assert.equal(alert.payload.details.job_id, job_id);
    assert.equal(alert.payload.details.error, row.last_error);
  } else {
    assert.ok(alert.payload.count > 1);
  }

  const route = sql("select count(*) from integration.routes where event_pattern = 'alert.*' and enabled");
  if (route === "0") {
    t.diagnostic("no enabled alert.* route: asserted the outbox event only");
    return;
  }
  if (grouped) {
    t.diagnostic("grouped into an earlier alert of the window: nothing new is sent to Mattermost");
    return;
  }
  const message = await waitFor("the alert in Mattermost", async () =>
    (await messagesSince(since, "alerts")).find((m) => JSON.stringify(m.message).includes(job_id)), 30_000, 200);
  assert.ok(message);
});

test("bad deploy requests answer 422 and enqueue nothing", async () => {
  const since = Date.now();
  const sinceSql = new Date(since).toISOString(); // the database and the test share the clock
  const cases = [
    [{ ...SEED_BODY, target: undefined }, "target", "is required"],
    [{ ...SEED_BODY, target: "qa" }, "target", "must be staging or production"],
    [{ ...SEED_BODY, target: "constructor" }, "target", "must be staging or production"],
    [{ ...SEED_BODY, target: ["staging"] }, "target", "must be staging or production"],
    [{ ...SEED_BODY, service: undefined }, "service", "is required"],
    [{ ...SEED_BODY, service: "odoo core" }, "service", undefined],
    [["staging"], "(body)", "must be a JSON object"],
  ];
  for (const [body, field, problem] of cases) {
    const answer = await deploy(body, { "x-correlation-id": `e2e-bad-${process.pid}` });
    assert.equal(answer.status, 422, JSON.stringify(body));
    assert.equal(answer.json.ok, false);
    assert.equal(answer.json.error.code, "validation_failed");
    assert.equal(answer.json.correlation_id, `e2e-bad-${process.pid}`);
    const detail = answer.json.error.details.find((d) => d.field === field);
    assert.ok(detail, `${JSON.stringify(body)}: ${JSON.stringify(answer.json.error.details)}`);
    if (problem) assert.equal(detail.problem, problem);
  }
  const notJson = await fetch(DEPLOY_URL, { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
  assert.equal(notJson.status, 422, "n8n refuses a body that is not JSON before the workflow runs");

  await new Promise((r) => setTimeout(r, 500));
  assert.equal(sql(`select count(*) from observability.jobs where job_type like 'deploy.%' and created_at >= '${sinceSql}'`), "0");
  assert.equal(sql(`select count(*) from observability.jobs where correlation_id = 'e2e-bad-${process.pid}'`), "0");
  assert.deepEqual(await messagesSince(since, "vercel-deploy"), []);
});

test("the seed's control-plane queries run", () => {
  assert.ok(deployed, "the first test's deploy");
  const recent = sql(`SELECT id, source, job_type, status, created_at
    FROM observability.jobs
    ORDER BY created_at DESC
    LIMIT 20;`);
  assert.match(recent, new RegExp(`^${deployed.job_id}\\|manual\\|deploy\\.staging\\|succeeded\\|`, "m"));

  const depth = sql("SELECT * FROM ops.get_queue_depth();");
  assert.match(depth, /^observability\.jobs\|deploy\.staging\|dead\|[1-9]\d*\|/m, "the dead deploy job is queue depth");

  const trace = sql(`SELECT * FROM ops.get_trace('${deployed.correlation_id}');`).split("\n");
  assert.ok(trace.length >= 3, trace.join("\n"));
  assert.match(trace[0], /\|observability\.jobs\|job\.enqueued\|/);

  sql("SELECT * FROM observability.get_health_summary();"); // runs (services may be empty)
});

// The schedules are not waited for: a copy of a workflow with its schedule
// trigger swapped for a webhook (same node name, so the same connections) runs
// the very same nodes now, in the same n8n with the same environment.
async function n8nApi(route, method = "GET", body) {
  const key = readFileSync(path.join(ROOT, ".local/n8n/api-key"), "utf8").trim();
  const response = await fetch(`${env.N8N_URL}/api/v1${route}`, {
    method,
    headers: { "X-N8N-API-KEY": key, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json().catch(() => null) };
}

function workflowFile(name) {
  return JSON.parse(readFileSync(path.join(ROOT, "n8n/workflows/control-plane", `${name}.json`), "utf8"));
}

test("the control-plane workflows are active with the seed's triggers", async () => {
  const { status, json } = await n8nApi("/workflows?limit=250");
  assert.equal(status, 200);
  const live = {};
  for (const name of ["deploy-trigger", "health-check-scheduler", "backup-scheduler"]) {
    const file = workflowFile(name);
    const found = json.data.filter((w) => w.name === file.name);
    assert.equal(found.length, 1, `${file.name} is provisioned once`);
    assert.equal(found[0].active, true, `${file.name} is active`);
    assert.deepEqual(found[0].nodes.map((n) => n.name).sort(), file.nodes.map((n) => n.name).sort(), `${file.name} is the file's`);
    live[name] = found[0];
  }
  const rule = (name) => live[name].nodes.find((n) => n.type === "n8n-nodes-base.scheduleTrigger").parameters.rule.interval[0];
  assert.deepEqual(rule("health-check-scheduler"), { field: "minutes", minutesInterval: 5 });
  assert.deepEqual(rule("backup-scheduler"), { field: "cronExpression", expression: "0 3 * * *" });
  assert.equal(live["backup-scheduler"].settings.timezone, "UTC");
});

test("backup-scheduler's nodes record a backup.database job, upload to DO Spaces and complete it", async () => {
  const since = Date.now();
  const workflow = workflowFile("backup-scheduler");
  const hookPath = `e2e-backup-${randomUUID()}`;
  const i = workflow.nodes.findIndex((n) => n.type === "n8n-nodes-base.scheduleTrigger");
  workflow.nodes[i] = {
    ...workflow.nodes[i],
    type: "n8n-nodes-base.webhook",
    typeVersion: 2,
    webhookId: randomUUID(),
    parameters: { httpMethod: "POST", path: hookPath, responseMode: "lastNode", options: {} },
  };
  workflow.name += ` (e2e copy ${process.pid})`;
  const created = await n8nApi("/workflows", "POST", workflow);
  assert.equal(created.status, 200, JSON.stringify(created.json));
  try {
    assert.equal((await n8nApi(`/workflows/${created.json.id}/activate`, "POST")).status, 200);
    const run = await waitFor("the copy's webhook", async () => {
      const response = await fetch(`${env.N8N_URL}/webhook/${hookPath}`, { method: "POST" });
      return response.status === 404 ? null : { status: response.status, json: await response.json() };
    }, 10_000, 100);
    assert.equal(run.status, 200, JSON.stringify(run.json)); // the last node's output: complete_job's answer
    const { job_id, status, correlation_id } = run.json;
    assert.equal(status, "succeeded");
    assert.match(correlation_id, /^backup-\d{8}T\d{6}-[0-9a-f]{6}$/);
    const row = job(job_id);
    assert.equal(row.job_type, "backup.database");
    assert.equal(row.source, "n8n");
    assert.equal(row.payload.bucket, "odoo-backups");
    assert.match(row.payload.key, /^postgres\/\d{8}\/postgres-\d{8}T\d{6}\.sql\.gz$/);
    assert.match(sql(`select worker || '|' || outcome from observability.job_runs where job_id = '${job_id}'`),
      /^n8n:switchyard backup-scheduler \(e2e copy \d+\)\|succeeded$/, "the copy started its job, then completed it");
    const uploads = (await messagesSince(since, "do-spaces")).filter((m) => m.message.job_id === job_id);
    assert.equal(uploads.length, 1);
    assert.equal(uploads[0].message.correlation_id, correlation_id);
    assert.equal(uploads[0].message.key, row.payload.key);
  } finally {
    await n8nApi(`/workflows/${created.json.id}/deactivate`, "POST");
    const deadline = Date.now() + 10_000;
    while ((await n8nApi(`/workflows/${created.json.id}`, "DELETE")).status === 409 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});
