// The stack's Mattermost stand-in (scripts/local/mattermost-standin.mjs): it
// answers like Mattermost's incoming webhooks, records what it got, shows it
// escaped, and fails on purpose when a test asks. Each test posts to its own
// hook, since the stand-in is shared with n8n and other tests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { env } from "./helpers.mjs";

const hook = `e2e-${process.pid}`;

function post(path, body) {
  return fetch(`${env.MATTERMOST_URL}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

test("a post is answered like Mattermost, recorded, and shown escaped", async () => {
  const since = Date.now();
  const text = `<script>alert("${hook}")</script> & more`;
  const response = await post(`/hooks/${hook}`, { text, props: { event_id: "e2e-standin" } });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/plain");
  assert.equal(await response.text(), "ok");

  const recorded = await (await fetch(`${env.MATTERMOST_URL}/messages?since=${since}&limit=10000`)).json();
  const mine = recorded.filter((r) => r.hook === hook);
  assert.equal(mine.length, 1);
  assert.deepEqual(mine[0].message, { text, props: { event_id: "e2e-standin" } });
  assert.ok(Date.parse(mine[0].received_at) >= since);

  const html = await (await fetch(`${env.MATTERMOST_URL}/`)).text();
  assert.ok(html.includes(`&lt;script&gt;alert(&quot;${hook}&quot;)&lt;/script&gt; &amp; more`), html);
  assert.ok(!html.includes("<script>"));

  assert.equal((await fetch(`${env.MATTERMOST_URL}/messages?since=yesterday`)).status, 400);
});

test("fail_next makes that hook's next posts answer 500 and records none of them", async () => {
  const since = Date.now();
  assert.equal((await post("/control", { hook, fail_next: 2 })).status, 200);
  assert.equal((await post(`/hooks/${hook}`, { text: "refused 1" })).status, 500);
  assert.equal((await post(`/hooks/${hook}`, { text: "refused 2" })).status, 500);
  assert.equal((await post(`/hooks/${hook}`, { text: "accepted" })).status, 200);
  const recorded = await (await fetch(`${env.MATTERMOST_URL}/messages?since=${since}&limit=10000`)).json();
  assert.deepEqual(recorded.filter((r) => r.hook === hook).map((r) => r.message.text), ["accepted"]);
});
