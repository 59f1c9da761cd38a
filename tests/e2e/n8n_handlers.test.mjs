// The integration bus against a real n8n: the router delivers events of the
// seed's three domains to the handler workflows (n8n/workflows/integration),
// which verify the Standard Webhooks signature, format the message and post it
// to the stack's Mattermost stand-in (scripts/local/mattermost-standin.mjs),
// read back here through its GET /messages. `scripts/dev up` starts n8n; when it
// is not running (SWITCHYARD_N8N=off) this file starts it and stops it after.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { ROOT, env, event, postSigned, sql, stack, waitFor } from "./helpers.mjs";

let n8nWasRunning;
const startedAt = Date.now();
const forgedPattern = `n8nforged${process.pid}.*`;

before(async () => {
  await messagesSince(startedAt); // fails early if the stand-in is not running
  try {
    execFileSync("curl", ["-fsS", "-o", "/dev/null", "--max-time", "2", `${env.N8N_URL}/healthz/readiness`]);
    n8nWasRunning = true;
  } catch {
    n8nWasRunning = false;
    execFileSync(path.join(ROOT, "scripts/dev"), ["n8n", "up"], { stdio: "inherit", timeout: 300_000 });
  }
});

after(() => {
  sql(`delete from integration.routes where event_pattern = '${forgedPattern}'`);
  if (!n8nWasRunning) stack("stop_process n8n");
});

/** What the Mattermost stand-in recorded from `since` (ms) on: [{received_at, hook, message}]. */
async function messagesSince(since) {
  const response = await fetch(`${env.MATTERMOST_URL}/messages?since=${since}&limit=10000`);
  assert.equal(response.status, 200, "the Mattermost stand-in answers (scripts/dev up starts it)");
  return response.json();
}

function outboxStatus(id) {
  return sql(`select status || '|' || attempts || '|' || coalesce(last_error, '') from integration.outbox_and_archive where id = '${id}'`);
}

test("each domain's handler in n8n receives its events and posts them to Mattermost", async () => {
  const sent = [
    event({ event_type: "expense.approved", aggregate_type: "hr.expense", aggregate_id: "9101" }),
    event({ event_type: "asset.depreciation_posted", aggregate_type: "account.asset", aggregate_id: "9102" }),
    event({ event_type: "finance_task.overdue", aggregate_type: "project.task", aggregate_id: "9103" }),
  ];
  const ids = [];
  for (const e of sent) {
    const answer = await postSigned(e);
    assert.equal(answer.status, 200, answer.text);
    ids.push(answer.json.event_id);
  }
  let received = [];
  const messageFor = (id) => received.find((r) => r.hook === "switchyard" && r.message.props?.event_id === id)?.message;
  await waitFor("three Mattermost messages", async () => {
    received = await messagesSince(startedAt);
    return ids.every(messageFor);
  }, 20_000, 100);
  for (const [i, id] of ids.entries()) {
    const message = messageFor(id);
    assert.equal(message.props.event_type, sent[i].event_type);
    assert.ok(
      message.text.includes(`https://odoo.example.com/web#id=${sent[i].aggregate_id}&model=${sent[i].aggregate_type}`),
      message.text,
    );
    await waitFor(`the ack of ${sent[i].event_type}`, () => outboxStatus(id) === "completed|1|");
  }
  assert.match(messageFor(ids[0]).text, /^✅ \*\*Expense Approved\*\*/);
  assert.match(messageFor(ids[2]).text, /^⚠ \*\*Finance task Overdue\*\*/);
});

test("n8n refuses a delivery signed with another secret, and the event is retried, not lost", async () => {
  const wrongSecret = "whsec_" + Buffer.from("not-the-handler-secret-0123456789").toString("base64");
  sql(`insert into integration.routes (event_pattern, target_url, signing_secret)
       values ('${forgedPattern}', '${env.N8N_URL}/webhook/expense-handler', '${wrongSecret}')`);
  const since = Date.now();
  const answer = await postSigned(event({ event_type: forgedPattern.replace("*", "submitted") }));
  assert.equal(answer.status, 200);
  const id = answer.json.event_id;
  await waitFor("the refused delivery", () => outboxStatus(id).startsWith("pending|1|"), 20_000);
  assert.equal(outboxStatus(id), 'pending|1|HTTP 401: {"ok":false,"error":{"code":"invalid_signature"}}');
  // Other events may reach Mattermost meanwhile (the stack is shared), and n8n
  // names the event in every message it posts: one without a name is a leak too.
  const leaked = (await messagesSince(since))
    .filter((r) => r.hook === "switchyard" && (r.message.props?.event_id ?? id) === id);
  assert.deepEqual(leaked, [], "nothing about the forged event reached Mattermost");
});
