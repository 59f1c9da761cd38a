// Shared helpers for the end-to-end tests: the running stack's env, signing as
// Odoo does, SQL against the real database, and stack control for fault tests.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import http from "node:http";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

function loadEnv() {
  const out = execFileSync(path.join(ROOT, "scripts/dev"), ["env"], { encoding: "utf8" });
  return Object.fromEntries(
    out
      .trim()
      .split("\n")
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

export const env = loadEnv();
export const WEBHOOK_URL = `${env.FUNCTIONS_URL}/odoo-webhook`;
export const ROUTER_URL = `${env.FUNCTIONS_URL}/outbox-router`;

/** Runs SQL as the superuser and returns psql's unaligned output. */
export function sql(query) {
  return execFileSync("psql", [env.DB_URL, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", query], {
    encoding: "utf8",
  }).trim();
}

/**
 * Rows in the tables a request may write; compare before and after. The outbox
 * counts with its archive: a delivery moves a row from one to the other.
 * integration.replay_guard is left out: pg_cron purges its expired entries
 * every minute, so its count can drop between two reads, and ingest_event
 * writes it only in the transaction that writes the outbox row (the fuzz test
 * checks its entries one by one).
 */
export function tableCounts() {
  return sql(`select format('outbox=%s event_log=%s',
    (select count(*) from integration.outbox_and_archive),
    (select count(*) from integration.event_log))`);
}

/** Calls a function of scripts/lib/stack.sh (stop_process postgrest, start_postgrest, ...). */
export function stack(command) {
  execFileSync("bash", ["-c", `. "${ROOT}/scripts/lib/stack.sh"; ${command}`], { stdio: "ignore" });
}

export function uniqueKey(prefix = "e2e") {
  return `${prefix}:${process.pid}:${Date.now()}:${Math.random().toString(36).slice(2)}`;
}

export function ipaiSignature(secret, timestampMs, body) {
  return createHmac("sha256", secret).update(`${timestampMs}.${body}`).digest("hex");
}

/** The key id the function records for a secret (see shared/src/signature.rs). */
export function keyId(secretBytes) {
  const digest = createHash("sha256").update("switchyard-signing-key:").update(secretBytes).digest("hex");
  return `key_${digest.slice(0, 12)}`;
}

export function event(overrides = {}) {
  return {
    event_type: "expense.submitted",
    aggregate_type: "hr.expense",
    aggregate_id: String(Math.floor(Math.random() * 1e9)),
    payload: { expense_id: 42, employee_name: "Test", amount: 125.5, currency: "PHP", state: "submit" },
    ...overrides,
  };
}

/**
 * Posts a body signed with the seed scheme. Options override any part:
 * secret, timestamp, key (idempotency), headers (merged last), rawBody;
 * timeoutMs bounds the wait for an answer; dispatcher is an undici Agent of
 * its own (connections not shared with earlier requests).
 */
export async function postSigned(body, options = {}) {
  const raw = options.rawBody ?? JSON.stringify(body);
  const timestamp = options.timestamp ?? Date.now();
  const secret = options.secret ?? env.ODOO_WEBHOOK_SECRET;
  const headers = {
    "content-type": "application/json",
    "x-ipai-timestamp": String(timestamp),
    "x-ipai-signature": options.signature ?? ipaiSignature(secret, timestamp, raw),
    "x-idempotency-key": options.key ?? uniqueKey(),
    ...(options.headers ?? {}),
  };
  for (const [name, value] of Object.entries(headers)) if (value === undefined) delete headers[name];
  const method = options.method ?? "POST";
  const response = await fetch(options.url ?? WEBHOOK_URL, {
    method,
    headers,
    body: ["GET", "HEAD"].includes(method) ? undefined : raw,
    signal: options.timeoutMs ? AbortSignal.timeout(options.timeoutMs) : undefined,
    dispatcher: options.dispatcher,
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: response.status, headers: response.headers, text, json, sent: headers };
}

/** Every secret a response or log must never contain. */
export function secrets() {
  return [
    env.ODOO_WEBHOOK_SECRET,
    env.ODOO_WEBHOOK_SECRET_PREVIOUS,
    env.ODOO_WEBHOOK_STANDARD_SECRET,
    env.ODOO_WEBHOOK_STANDARD_SECRET.slice("whsec_".length),
    env.SERVICE_ROLE_KEY,
    env.JWT_SECRET,
    env.N8N_HANDLER_SIGNING_SECRET,
    env.N8N_HANDLER_SIGNING_SECRET.slice("whsec_".length),
    env.OUTBOX_ROUTER_INVOCATION_TOKEN,
    env.OPS_RUNNER_INVOCATION_TOKEN,
    env.OPS_RUNNER_GITHUB_TOKEN,
  ];
}

/** An RPC in the integration schema through the gateway, as the service role. */
export async function rpc(name, args) {
  const response = await fetch(`${env.REST_URL}/rpc/${name}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "content-profile": "integration",
      apikey: env.SERVICE_ROLE_KEY,
      authorization: `Bearer ${env.SERVICE_ROLE_KEY}`,
    },
    body: JSON.stringify(args),
  });
  return { status: response.status, body: await response.json() };
}

/**
 * Runs the router inside the request (`?wait=true`) and returns its answer,
 * as an operator would (service role key) or as the database does (`bearer`:
 * the router's invocation token).
 */
export async function runRouter(reason = "manual", bearer = env.SERVICE_ROLE_KEY) {
  const response = await fetch(`${ROUTER_URL}?wait=true`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ reason }),
  });
  return { status: response.status, json: await response.json() };
}

export async function waitFor(what, check, timeoutMs = 15_000, everyMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Stops the database from waking the router (no router URL) and waits for a
 * running one to go idle, for tests that claim from the queue themselves.
 */
export async function pauseRouter() {
  sql("select integration.configure_router(null, null)");
  await waitFor("the router to go idle", () =>
    sql("select coalesce(active_until < clock_timestamp(), true) from integration.router_signal") === "t",
  30_000, 100);
}

export function resumeRouter() {
  stack("apply_local_config");
}

/**
 * A local HTTP receiver on an ephemeral port that records every request and
 * answers with `respond(request, index)` -> { status, headers, body, delayMs }.
 * A fixed `port` is for receivers a peer was configured with (Mattermost for n8n).
 * Stands in for webhook targets such as n8n handlers and Mattermost.
 */
export async function startReceiver(respond = () => ({ status: 200 }), port = 0) {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const request = { at: Date.now(), method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      received.push(request);
      const answer = (await respond(request, received.length - 1)) ?? { status: 200 };
      if (answer.delayMs) await new Promise((r) => setTimeout(r, answer.delayMs));
      if (res.destroyed) return;
      res.writeHead(answer.status ?? 200, { "content-type": "application/json", ...(answer.headers ?? {}) });
      res.end(answer.body ?? "{}");
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    received,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

/**
 * What every page function (campaign-dashboard, ops-console) answers at
 * `pageUrl` (its URL with the trailing slash): 404 for what is not a page,
 * 405 for anything but GET and HEAD, 308 to add the slash, the page with its
 * CSP, and config.json with the anon key and never the service role key.
 */
export async function assertPageFunction(pageUrl) {
  const at = (p, init = {}) => fetch(new URL(p, pageUrl), { redirect: "manual", signal: AbortSignal.timeout(15_000), ...init });
  const missing = await at("secrets.env");
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, "not_found");
  const posted = await at("", { method: "POST", body: "{}" });
  assert.equal(posted.status, 405);
  assert.equal(posted.headers.get("allow"), "GET, HEAD");
  assert.equal((await posted.json()).error.code, "method_not_allowed");
  const bare = await at(pageUrl.replace(/\/$/, ""));
  assert.equal(bare.status, 308);
  assert.equal(bare.headers.get("location"), `${new URL(pageUrl).pathname.split("/").filter(Boolean).pop()}/`);
  const page = await at("");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  assert.match(await page.text(), /<html/i);
  for (const file of ["app.js", "style.css"]) {
    const asset = await at(file);
    assert.equal(asset.status, 200, file);
    assert.equal(asset.headers.get("x-content-type-options"), "nosniff");
  }
  const config = await (await at("config.json")).json();
  assert.equal(config.anon_key, env.ANON_KEY);
  assert.ok(!JSON.stringify(config).includes(env.SERVICE_ROLE_KEY), "never the service role key");
}

/**
 * Open-loop load for the fault and soak runs: `rate` signed events of `type`
 * a second to odoo-webhook until stopped, each answer recorded as
 * {sentAt, at, status (0: no answer), id, code}.
 */
export function signedLoad(rate, type, timeoutMs = 10_000) {
  const answers = [];
  const pending = new Set();
  const timer = setInterval(() => {
    const sentAt = Date.now();
    const request = postSigned(event({ event_type: type }), { timeoutMs })
      .then((res) => answers.push({ sentAt, at: Date.now(), status: res.status, id: res.json?.event_id, code: res.json?.error?.code }))
      .catch((error) => answers.push({ sentAt, at: Date.now(), status: 0, code: error.cause?.code ?? error.name }))
      .finally(() => pending.delete(request));
    pending.add(request);
  }, 1000 / rate);
  return {
    answers,
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      return answers;
    },
  };
}
