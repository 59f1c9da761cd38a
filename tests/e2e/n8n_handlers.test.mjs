// The integration bus against a real n8n: the router delivers events of the
// seed's three domains to the handler workflows (n8n/workflows/integration),
// which verify the Standard Webhooks signature, format the message and post it
// to Mattermost (a local stand-in that records what it got). n8n is started for
// this file and stopped after it unless it was already running.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { ROOT, env, event, postSigned, sql, stack, startReceiver, waitFor } from "./helpers.mjs";

let mattermost;
let n8nWasRunning;
const forgedPattern = `n8nforged${process.pid}.*`;

before(async () => {
  try {
    execFileSync("curl", ["-fsS", "-o", "/dev/null", "--max-time", "2", `${env.N8N_URL}/healthz/readiness`]);
    n8nWasRunning = true;
  } catch {
    n8nWasRunning = false;
  }
  // Mattermost answers incoming webhooks with a plain-text "ok".
  mattermost = await startReceiver(
    () => ({ status: 200, headers: { "content-type": "text/plain" }, body: "ok" }),
    Number(env.MATTERMOST_STANDIN_PORT),
  );
  execFileSync(path.join(ROOT, "scripts/dev"), ["n8n", "up"], { stdio: "inherit", timeout: 300_000 });
});

after(async () => {
  sql(`delete from integration.routes where event_pattern = '${forgedPattern}'`);
  await mattermost?.close();
  if (!n8nWasRunning) stack("stop_process n8n");
});

function outboxStatus(id) {
  return sql(`select status || '|' || attempts || '|' || coalesce(last_error, '') from integration.outbox where id = '${id}'`);
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
  const messageFor = (id) => mattermost.received.map((r) => JSON.parse(r.body)).find((m) => m.props?.event_id === id);
  await waitFor("three Mattermost messages", () => ids.every(messageFor), 20_000);
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
  const before = mattermost.received.length;
  const answer = await postSigned(event({ event_type: forgedPattern.replace("*", "submitted") }));
  assert.equal(answer.status, 200);
  const id = answer.json.event_id;
  await waitFor("the refused delivery", () => outboxStatus(id).startsWith("pending|1|"), 20_000);
  assert.equal(outboxStatus(id), 'pending|1|HTTP 401: {"ok":false,"error":{"code":"invalid_signature"}}');
  assert.equal(mattermost.received.length, before, "nothing reached Mattermost");
});
