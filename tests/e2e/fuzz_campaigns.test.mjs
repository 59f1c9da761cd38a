// End-to-end fuzzing of campaign-toggle and n8n-status-webhook, in the manner
// of fuzz.test.mjs: generated hostile requests against the running stack,
// checking that nothing answers 5xx, that every answer is the error envelope
// or a success, that the outcomes we are sure of happen, and what is written.
//
// campaign-toggle: a fresh workspace with an editor and a viewer (random user
// ids), two campaigns linked to no n8n workflow, and a campaign of another
// workspace, so no request can reach n8n. toggle_begin refuses an unlinked
// campaign before the rate limit takes a slot (20261124050000_campaigns.sql),
// so a valid toggle of ours is always 400 campaign_not_linked (never 429) and
// no toggle_attempts, toggle_requests or audit row is ever written.
// n8n-status-webhook: every request carries its own workflow id
// (fz-<run>-<n>) that no campaign uses: an accepted event is 200 applied 0 with
// exactly one campaigns.workflow_events row, a refused one has none. Some
// accepted events are sent again on purpose (200 duplicate). The rows are
// deleted at the end.
//
// FUZZ_SEED=N replays the same choices (ids and timestamps are fresh on every
// run), FUZZ_COUNT the requests per function (default 1000), FUZZ_ONLY=3,17
// sends only those request numbers.
//
//   node --test --test-concurrency=1 tests/e2e/fuzz_campaigns.test.mjs
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomInt, randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { env, secrets, sql } from "./helpers.mjs";

const seedText = process.env.FUZZ_SEED ?? "";
assert.match(seedText, /^\d*$/, `FUZZ_SEED must be a non-negative integer, got ${seedText}`);
const SEED = seedText === "" ? randomInt(1, 2 ** 32 - 1) : Number(seedText) >>> 0;
const COUNT = Number(process.env.FUZZ_COUNT ?? 1000);
const ONLY = process.env.FUZZ_ONLY ? new Set(process.env.FUZZ_ONLY.split(",").map(Number)) : null;
const CONCURRENCY = 8;
const REQUEST_TIMEOUT_MS = 15_000;
const RETRIES = 3; // per request, for a reset connection or a 503 upstream_unavailable
const RUN = `${Date.now().toString(36)}${randomInt(36 ** 4).toString(36).padStart(4, "0")}`;
const TOGGLE_URL = `${env.FUNCTIONS_URL}/campaign-toggle`;
const HOOK_URL = `${env.FUNCTIONS_URL}/n8n-status-webhook`;
const HOOK_SECRET = env.N8N_STATUS_WEBHOOK_SECRET;
const STANDARD_ON = Boolean(env.N8N_STATUS_WEBHOOK_STANDARD_SECRET);

console.log(`fuzz seed: ${SEED} (replay: FUZZ_SEED=${SEED} node --test tests/e2e/fuzz_campaigns.test.mjs), run ${RUN}, ` +
  `${COUNT} requests per function, ${CONCURRENCY} in flight`);

// ---------------------------------------------------------------- helpers

/** mulberry32, as in fuzz.test.mjs; one stream per function. */
function makeRng(seed) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  return {
    int,
    chance: (p) => next() < p,
    pick: (list) => list[int(list.length)],
    weighted(entries) {
      let r = next() * entries.reduce((sum, [w]) => sum + w, 0);
      for (const [w, value] of entries) if ((r -= w) < 0) return value;
      return entries.at(-1)[1];
    },
    uuid() {
      const h = Array.from({ length: 32 }, () => "0123456789abcdef"[int(16)]).join("");
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${"89ab"[int(4)]}${h.slice(17, 20)}-${h.slice(20)}`;
    },
  };
}
const streamSeed = (salt) => (Math.imul(SEED ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(salt, 0xc2b2ae35)) >>> 0;

const lit = (s) => `'${String(s).replaceAll("'", "''")}'`;
const b64url = (s) => Buffer.from(s).toString("base64url");
/** A header value that puts these UTF-8 bytes on the wire (fetch sends header strings as latin1). */
const wire = (s) => Buffer.from(s, "utf8").toString("latin1");
const bytesOf = (body) => (body === null ? null : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === "string" ? body : JSON.stringify(body)));
/** JSON text of `value` padded with spaces to exactly `size` bytes (still the same JSON). */
const padTo = (value, size) => { const t = JSON.stringify(value); return t + " ".repeat(size - Buffer.byteLength(t)); };
const hmacHex = (bytes, secret = HOOK_SECRET) => createHmac("sha256", secret).update(bytes).digest("hex");
const flip = (hex, i) => hex.slice(0, i) + (parseInt(hex[i], 16) ^ 1).toString(16) + hex.slice(i + 1);

function jwt(claims, { secret = env.JWT_SECRET, header = { alg: "HS256", typ: "JWT" } } = {}) {
  const head = b64url(JSON.stringify(header));
  const body = b64url(JSON.stringify(claims));
  return `${head}.${body}.${createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url")}`;
}
const userClaims = (sub, extra = {}) => ({ sub, role: "authenticated", aud: "authenticated", exp: Math.floor(Date.now() / 1000) + 3600, ...extra });

/** A case: class, variant, how to build its request at send time, the outcomes we accept (null: any non-5xx). */
const kase = (variant, build, expect, more = {}) => ({ variant, build, expect, ...more });

// ---------------------------------------------------------------- sending

// Codes and their documented statuses (shared/src/error.rs); the gateway's own have no correlation id.
const STATUS_OF_CODE = {
  method_not_allowed: 405, payload_too_large: 413, missing_header: 400, invalid_header: 400, invalid_json: 400,
  campaign_not_linked: 400, timestamp_out_of_window: 401, invalid_signature: 401, unauthorized: 401, forbidden: 403,
  not_found: 404, validation_failed: 422, idempotency_conflict: 409, invalid_state: 409, toggle_in_progress: 409,
  rate_limited: 429,
};
const GATEWAY_CODES = new Set(["missing_authorization", "invalid_jwt"]);
const SECRETS = [...secrets(), HOOK_SECRET, env.SERVICE_ROLE_KEY].filter(Boolean);

const isConnectionError = (e) => ["ECONNREFUSED", "ECONNRESET", "UND_ERR_SOCKET", "EPIPE", "UND_ERR_CLOSED"].includes(e?.cause?.code ?? e?.code);

async function send(spec) {
  const result = { retries: 0 };
  for (;;) {
    const request = spec.build(Date.now());
    result.request = request;
    try {
      const response = await fetch(request.url, {
        method: request.method, headers: request.headers, body: request.stream ? chunked(request.body) : request.body ?? undefined,
        duplex: request.stream ? "half" : undefined, redirect: "manual", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const text = await response.text();
      Object.assign(result, { status: response.status, text, error: undefined, correlation: response.headers.get("x-correlation-id"),
        allow: response.headers.get("allow"), contentType: response.headers.get("content-type") });
    } catch (e) {
      Object.assign(result, { status: undefined, error: `${e.name}: ${e.message} (${e.cause?.code ?? e.cause?.message ?? ""})`, reset: isConnectionError(e) });
      if (!isConnectionError(e) || result.retries >= RETRIES) break;
    }
    const transient = result.status === 503 && /"upstream_unavailable"/.test(result.text);
    if (result.status !== undefined && (!transient || result.retries >= RETRIES)) break;
    result.retries++;
    await new Promise((r) => setTimeout(r, 500));
  }
  try {
    result.json = JSON.parse(result.text);
  } catch {
    result.json = undefined;
  }
  const { status, json } = result;
  // A chunked upload refused once it passed the limit: the server may answer 413 and close before it ends.
  result.outcome = status === undefined ? (result.reset && result.request.stream ? "closed" : "no_answer")
    : status === 200 && json?.ok === true && typeof json.duplicate === "boolean" ? (json.duplicate ? "dup" : "new")
    : status === 200 && json?.ok === true && Array.isArray(json.results) ? "batch"
    : typeof json?.error?.code === "string" ? json.error.code : `http_${status}`;
  return result;
}

/** A body sent chunked, without content-length, in two pieces. */
function chunked(bytes) {
  const half = Math.floor(bytes.length / 2);
  return new ReadableStream({ start(c) { c.enqueue(bytes.subarray(0, half)); c.enqueue(bytes.subarray(half)); c.close(); } });
}

async function runAll(specs) {
  const results = new Array(specs.length);
  let next = 0;
  const worker = async () => {
    while (next < specs.length) {
      const i = next++;
      results[i] = ONLY && !ONLY.has(specs[i].n) ? { skipped: true } : await send(specs[i]);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return results;
}

// --------------------------------------------------------------- checking

/** Every problem with one answer, as short strings. */
function problemsOf(spec, result) {
  if (result.outcome === "closed" && spec.expect?.includes("closed")) return [];
  if (result.status === undefined) return [`no answer: ${result.error}`];
  const problems = [];
  const { status, json, request } = result;
  if (status >= 500) problems.push(`${status} server error`);
  if (SECRETS.some((s) => result.text.includes(s))) problems.push("a secret appears in the answer");
  if (request.method === "HEAD") {
    if (!(status >= 400 && status < 500)) problems.push(`HEAD answered ${status}`);
    if (result.text !== "") problems.push("HEAD answer has a body");
    if (spec.expect?.includes("method_not_allowed") && (status !== 405 || result.allow !== "POST")) problems.push(`HEAD: ${status}, Allow ${result.allow}`);
    return problems;
  }
  if (json === undefined) return [...problems, `not JSON (${status}, content-type ${result.contentType})`];
  const gateway = !result.correlation && GATEWAY_CODES.has(json.error?.code);
  if (status === 200) {
    if (json.ok !== true) problems.push("success without ok:true");
    if (json.correlation_id !== result.correlation) problems.push("body correlation_id differs from the x-correlation-id header");
  } else if (status >= 400 && status < 500) {
    const e = json.error;
    if (json.ok !== false || typeof e?.code !== "string" || typeof e?.message !== "string" || e.message === "") problems.push("4xx without the error envelope");
    else if (gateway) {
      if (status !== 401) problems.push(`gateway ${e.code} with status ${status}`);
    } else {
      if (typeof json.correlation_id !== "string" || json.correlation_id !== result.correlation) problems.push("envelope correlation_id missing or not the header's");
      if (STATUS_OF_CODE[e.code] !== status) problems.push(`code ${e.code} with status ${status}, documented ${STATUS_OF_CODE[e.code]}`);
      if (e.code === "method_not_allowed" && result.allow !== "POST") problems.push(`405 without Allow: POST (got ${result.allow})`);
    }
  } else if (status < 500) problems.push(`unexpected status ${status}`);
  if (!gateway && !/^application\/json/.test(result.contentType ?? "")) problems.push(`content-type ${result.contentType}`);
  const expect = spec.expect;
  if (expect && status < 500 && !(expect.includes(result.outcome) || (expect.includes("4xx") && status >= 400 && status < 500))) {
    problems.push(`expected ${expect.join("|")}, got ${result.outcome}`);
  }
  if (status === 200) problems.push(...(spec.checkSuccess?.(json) ?? []));
  return problems;
}

function redact(text) {
  let out = text;
  for (const s of SECRETS) out = out.split(s).join("<secret>");
  return out;
}

function describe(spec, result) {
  const r = result.request;
  const headers = r.headers.map(([k, v]) => {
    const s = redact(String(v));
    return `${k}=${JSON.stringify(s.length > 40 ? `${s.slice(0, 37)}…(${s.length})` : s)}`;
  }).join(" ");
  const body = r.body === null ? "(none)" : `(${r.body.length} B${r.stream ? ", chunked" : ""}) ${JSON.stringify(r.body.toString("utf8").slice(0, 160))}`;
  return `#${spec.n} ${spec.cls}/${spec.variant}: ${r.method} ${headers} body${body}`;
}

/** Fails with the problems grouped by class and outcome, up to 3 examples each. */
function assertAnswers(fn, specs, results) {
  const groups = new Map();
  let total = 0;
  specs.forEach((spec, i) => {
    const result = results[i];
    if (result.skipped) return;
    const problems = problemsOf(spec, result);
    if (problems.length === 0) return;
    total++;
    const key = `${spec.cls} | ${result.status ?? "-"} ${result.outcome}`;
    const g = groups.get(key) ?? { count: 0, problems: new Set(), examples: [] };
    g.count++;
    problems.forEach((p) => g.problems.add(p));
    if (g.examples.length < 3) g.examples.push(`    ${describe(spec, result)}\n      -> ${result.status ?? ""} ${redact(result.text ?? result.error ?? "").slice(0, 300)}`);
    groups.set(key, g);
  });
  if (total === 0) return;
  const lines = [`[FUZZ_SEED=${SEED}] ${fn}: ${total} answers failed the checks`];
  for (const [key, g] of [...groups].sort((a, b) => b[1].count - a[1].count)) {
    lines.push(`  [${key}] x${g.count}: ${[...g.problems].join("; ")}`, ...g.examples);
  }
  assert.fail(lines.join("\n"));
}

function summary(fn, specs, results, seconds) {
  const byClass = new Map();
  const byOutcome = new Map();
  let sent = 0;
  let retried = 0;
  specs.forEach((spec, i) => {
    const r = results[i];
    if (r.skipped) return;
    sent++;
    if (r.retries) retried++;
    const label = `${r.status ?? "---"} ${r.outcome}`;
    const c = byClass.get(spec.cls) ?? { n: 0, outcomes: new Map() };
    c.n++;
    c.outcomes.set(label, (c.outcomes.get(label) ?? 0) + 1);
    byClass.set(spec.cls, c);
    byOutcome.set(label, (byOutcome.get(label) ?? 0) + 1);
  });
  const fmt = (m) => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}:${v}`).join(", ");
  return [
    `${fn}: ${sent} requests in ${seconds.toFixed(1)} s (${(sent / seconds).toFixed(0)} req/s), seed ${SEED}` +
      (retried ? `, ${retried} sent again after a reset/503 (usually a chunked upload the server cut off with its 413)` : ""),
    ...[...byClass].sort((a, b) => b[1].n - a[1].n).map(([cls, c]) => `  ${cls.padEnd(18)} ${String(c.n).padStart(5)}  ${fmt(c.outcomes)}`),
    `  by status/code: ${fmt(byOutcome)}`,
  ].join("\n");
}

async function timed(specs) {
  const started = performance.now();
  const results = await runAll(specs);
  return { results, seconds: (performance.now() - started) / 1000 };
}

// -------------------------------------------------------- campaign-toggle

const ACTIONS = ["activate", "deactivate", "pause", "resume"];
const NOT_LINKED = ["campaign_not_linked"];
const INVALID = ["validation_failed"];

/** The campaign-toggle cases for `w` (the test's workspace, users and campaigns). */
function toggleClasses(w) {
  const bearer = { editor: `Bearer ${w.tokens.editor}`, viewer: `Bearer ${w.tokens.viewer}`,
    stranger: `Bearer ${w.tokens.stranger}`, service: `Bearer ${env.SERVICE_ROLE_KEY}` };
  /** A request: auth is a user ("editor", ...), a raw Authorization value, or null for none. */
  const req = ({ auth = "editor", body, method = "POST", headers = [], contentType = "application/json", stream = false }) => () => {
    const h = contentType === null ? [] : [["content-type", contentType]];
    if (auth !== null) h.push(["authorization", bearer[auth] ?? auth]);
    h.push(...headers);
    return { method, url: TOGGLE_URL, headers: h, body: ["GET", "HEAD"].includes(method) ? null : bytesOf(body), stream };
  };
  const one = (rng, id = rng.pick(w.ours)) => ({ campaign_id: id, action: rng.pick(ACTIONS) });
  /** A batch answer: one line per id, in order, each a refusal with this code; every line failed. */
  const batchCheck = (ids, codes) => (json) => {
    const problems = [];
    if (!Array.isArray(json.results) || json.results.length !== ids.length) return [`batch: ${json.results?.length} results for ${ids.length} ids`];
    json.results.forEach((line, i) => {
      if (line.campaign_id !== ids[i].toLowerCase() || line.ok !== false || line.error?.code !== codes[i] || line.status !== STATUS_OF_CODE[codes[i]]) {
        problems.push(`batch line ${i}: expected ${codes[i]} for ${ids[i]}, got ${JSON.stringify(line).slice(0, 160)}`);
      }
    });
    if (json.failed !== ids.length) problems.push(`batch failed=${json.failed}, expected ${ids.length}`);
    return problems;
  };

  return {
    valid_unlinked(rng, n) {
      const body = one(rng);
      const id = body.campaign_id;
      const key = `fz-${RUN}-${n}`;
      const variants = [
        ["plain", {}], ["plain", {}],
        ["idempotency_key", { headers: [["x-idempotency-key", key]] }],
        ["idempotency_key_255", { headers: [["x-idempotency-key", key.padEnd(255, "k")]] }],
        ["lowercase_bearer", { auth: `bearer ${w.tokens.editor}` }],
        ["uppercase_bearer", { auth: `BEARER ${w.tokens.editor}` }],
        ["no_content_type", { contentType: null }],
        ["text_plain", { contentType: "text/plain" }],
        ["uppercase_uuid", { body: { ...body, campaign_id: id.toUpperCase() } }],
        ["braced_uuid", { body: { ...body, campaign_id: `{${id}}` } }],
        ["urn_uuid", { body: { ...body, campaign_id: `urn:uuid:${id}` } }],
        ["simple_uuid", { body: { ...body, campaign_id: id.replaceAll("-", "") } }],
        ["null_optionals", { body: { ...body, campaign_ids: null, requested_by: null } }],
        ["pretty_json", { body: `\n ${JSON.stringify(body, null, 2)}\r\n` }],
        ["exactly_8KiB", { body: padTo(body, 8 * 1024) }],
        ["chunked", { body, stream: true }],
        ["duplicate_key_last_ours", { body: `{"campaign_id":"${rng.uuid()}",${JSON.stringify(body).slice(1)}` }],
        ["one_id_batch", null],
      ];
      const [variant, opts] = rng.pick(variants);
      if (variant === "one_id_batch") {
        return kase(variant, req({ body: { campaign_ids: [id], action: body.action } }), ["batch"], { checkSuccess: batchCheck([id], NOT_LINKED) });
      }
      return kase(variant, req({ body, ...opts }), NOT_LINKED);
    },

    not_found(rng) {
      const [variant, opts] = rng.pick([
        ["other_workspace", { body: one(rng, w.other) }],
        ["random_uuid", { body: one(rng, rng.uuid()) }],
        ["nil_uuid", { body: one(rng, "00000000-0000-0000-0000-000000000000") }],
        ["max_uuid", { body: one(rng, "ffffffff-ffff-ffff-ffff-ffffffffffff") }],
        ["stranger_on_ours", { auth: "stranger", body: one(rng) }],
        ["viewer_other_workspace", { auth: "viewer", body: one(rng, w.other) }],
      ]);
      return kase(variant, req(opts), ["not_found"]);
    },

    viewer(rng) {
      if (rng.chance(0.25)) {
        const ids = [...w.ours];
        return kase("batch", req({ auth: "viewer", body: { campaign_ids: ids, action: rng.pick(ACTIONS) } }), ["batch"],
          { checkSuccess: batchCheck(ids, ["forbidden", "forbidden"]) });
      }
      return kase("own_campaign", req({ auth: "viewer", body: one(rng) }), ["forbidden"]);
    },

    batch(rng) {
      const size = 1 + rng.int(rng.chance(0.2) ? 50 : 8);
      const pool = [...w.ours, w.other];
      const ids = [];
      while (ids.length < size) {
        const id = rng.chance(0.3) && pool.length ? pool.splice(rng.int(pool.length), 1)[0] : rng.uuid();
        if (!ids.includes(id)) ids.push(id);
      }
      const codes = ids.map((id) => (w.ours.includes(id) ? "campaign_not_linked" : "not_found"));
      const headers = rng.chance(0.3) ? [["x-idempotency-key", `fz-${RUN}-${rng.uuid()}`]] : [];
      return kase(`size_${size <= 10 ? size : "11_50"}`, req({ body: { campaign_ids: ids, action: rng.pick(ACTIONS) }, headers }), ["batch"],
        { checkSuccess: batchCheck(ids, codes) });
    },

    bad_batch(rng) {
      const [a, b] = w.ours;
      const action = rng.pick(ACTIONS);
      const [variant, ids] = rng.pick([
        ["empty", []],
        ["51_ids", Array.from({ length: 51 }, () => rng.uuid())],
        ["duplicate", [a, b, a]],
        ["same_id_two_forms", [a, a.toUpperCase()]],
        ["mixed_types", [a, 7, null, { id: b }, true]],
        ["nested", [[a]]],
        ["not_array_string", a],
        ["not_array_object", { 0: a }],
        ["not_array_number", 1],
        ["with_campaign_id", "BOTH"],
      ]);
      const body = ids === "BOTH" ? { campaign_id: a, campaign_ids: [b], action } : { campaign_ids: ids, action };
      return kase(variant, req({ body }), INVALID);
    },

    service_role(rng, n) {
      const as = `fz-${RUN}-as-${n}`;
      const [variant, body, expect] = rng.pick([
        ["for_person_ours", { ...one(rng), requested_by: as }, NOT_LINKED],
        ["for_person_other_workspace", { ...one(rng, w.other), requested_by: as }, NOT_LINKED],
        ["for_person_random", { ...one(rng, rng.uuid()), requested_by: as }, ["not_found"]],
        ["for_unicode_person", { ...one(rng), requested_by: `${as}-ñ😀` }, NOT_LINKED],
        ["for_nobody", one(rng), INVALID],
        ["for_empty", { ...one(rng), requested_by: "" }, INVALID],
        ["for_201_chars", { ...one(rng), requested_by: as.padEnd(201, "x") }, INVALID],
        ["for_control_char", { ...one(rng), requested_by: `${as}\u0007` }, INVALID],
        ["for_number", { ...one(rng), requested_by: 42 }, INVALID],
      ]);
      return kase(variant, req({ auth: "service", body }), expect);
    },

    auth(rng) {
      const now = Math.floor(Date.now() / 1000);
      const valid = w.tokens.editor;
      const [head, payload] = valid.split(".");
      const [variant, auth, expect] = rng.pick([
        ["none", null, ["missing_authorization"]],
        ["empty_bearer", "Bearer", ["missing_authorization"]],
        ["basic", `Basic ${Buffer.from("user:pass").toString("base64")}`, ["missing_authorization"]],
        ["token_without_scheme", valid, ["missing_authorization"]],
        ["garbage", "Bearer not-a-jwt", ["invalid_jwt"]],
        ["two_parts", `Bearer ${head}.${payload}`, ["invalid_jwt"]],
        ["four_parts", `Bearer ${valid}.x`, ["invalid_jwt"]],
        ["expired", `Bearer ${jwt(userClaims(w.editor, { exp: now - 60 }))}`, ["invalid_jwt"]],
        ["wrong_secret", `Bearer ${jwt(userClaims(w.editor), { secret: "not-the-secret-0123456789abcdef0123" })}`, ["invalid_jwt"]],
        ["alg_none", `Bearer ${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${payload}.`, ["invalid_jwt"]],
        ["alg_none_signed", `Bearer ${jwt(userClaims(w.editor), { header: { alg: "none" } })}`, ["invalid_jwt"]],
        ["alg_hs512_header", `Bearer ${jwt(userClaims(w.editor), { header: { alg: "HS512", typ: "JWT" } })}`, ["invalid_jwt"]],
        ["signature_of_other_claims", `Bearer ${head}.${b64url(JSON.stringify(userClaims(w.stranger)))}.${valid.split(".")[2]}`, ["invalid_jwt"]],
        ["role_postgres", `Bearer ${jwt(userClaims(w.editor, { role: "postgres" }))}`, ["invalid_jwt"]],
        ["claims_null", `Bearer ${head}.${b64url("null")}.${createHmac("sha256", env.JWT_SECRET).update(`${head}.${b64url("null")}`).digest("base64url")}`, ["invalid_jwt"]],
        ["anon_key", `Bearer ${env.ANON_KEY}`, ["unauthorized"]],
        ["role_anon", `Bearer ${jwt(userClaims(w.editor, { role: "anon" }))}`, ["unauthorized"]],
        ["minted_service_role", `Bearer ${jwt(userClaims(w.editor, { role: "service_role" }))}`, ["unauthorized"]],
        ["no_sub", `Bearer ${jwt({ role: "authenticated", exp: now + 3600 })}`, ["unauthorized"]],
        ["empty_sub", `Bearer ${jwt(userClaims(""))}`, ["unauthorized"]],
        ["numeric_sub", `Bearer ${jwt(userClaims(12345))}`, ["unauthorized"]],
        ["exp_string", `Bearer ${jwt(userClaims(w.editor, { exp: "tomorrow" }))}`, ["unauthorized"]],
        ["sub_201_chars", `Bearer ${jwt(userClaims("u".repeat(201)))}`, ["unauthorized"]],
        ["unicode_sub", `Bearer ${jwt(userClaims("ユーザー\u202e"))}`, ["not_found"]],
        ["no_exp", `Bearer ${jwt({ sub: w.editor, role: "authenticated" })}`, NOT_LINKED],
        ["double_space", `Bearer  ${valid}`, NOT_LINKED],
        ["latin1_junk", wire("Bearer é😀"), ["invalid_jwt"]],
      ]);
      return kase(variant, req({ auth, body: one(rng) }), expect);
    },

    method(rng) {
      const method = rng.pick(["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"]);
      const [who, auth, expect] = rng.pick([
        ["editor", "editor", ["method_not_allowed"]], ["editor", "editor", ["method_not_allowed"]],
        ["no_jwt", null, ["missing_authorization"]],
        ["bad_jwt", "Bearer x.y.z", ["invalid_jwt"]],
      ]);
      return kase(`${method}_${who}`, req({ method, auth, body: one(rng) }), expect);
    },

    not_json(rng) {
      const text = JSON.stringify(one(rng));
      const [variant, body] = rng.pick([
        ["empty", ""], ["whitespace", " \n\t "], ["open_brace", "{"], ["word", "activate"],
        ["single_quotes", text.replaceAll('"', "'")], ["trailing_comma", `${text.slice(0, -1)},}`],
        ["truncated", text.slice(0, 1 + rng.int(text.length - 1))], ["trailing_garbage", `${text}x`],
        ["two_objects", `${text}${text}`], ["bom", `\ufeff${text}`], ["nan", '{"campaign_id":NaN,"action":"pause"}'],
        ["raw_nul_in_string", text.replace('"pause"', '"pa\u0000use"').replace('"activate"', '"act\u0000ivate"').replace('"resume"', '"re\u0000sume"').replace('"deactivate"', '"de\u0000activate"')],
        ["invalid_utf8", Buffer.concat([Buffer.from(text.slice(0, -2)), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])],
        ["lone_surrogate", `{"campaign_id":"\\ud800","action":"pause"}`],
        ["deep_nesting", `${text.slice(0, -1)},"x":${"[".repeat(3000)}${"]".repeat(3000)}}`],
        ["huge_number", `{"campaign_id":1e999,"action":"pause"}`],
      ]);
      return kase(variant, req({ body }), ["invalid_json"]);
    },

    wrong_types(rng) {
      const field = rng.pick(["campaign_id", "action", "(body)"]);
      if (field === "(body)") {
        const [variant, body] = rng.pick([["array", "[]"], ["array_of_request", `[${JSON.stringify(one(rng))}]`], ["string", '"x"'],
          ["number", "42"], ["null", "null"], ["true", "true"], ["empty_object", "{}"]]);
        return kase(`body_${variant}`, req({ body }), INVALID);
      }
      const [variant, value] = rng.pick([["number", 7], ["float", 1.5], ["true", true], ["null", null], ["array", [w.ours[0]]],
        ["object", { id: w.ours[0] }], ["empty_string", ""]]);
      return kase(`${field}_${variant}`, req({ body: { ...one(rng), [field]: value } }), INVALID);
    },

    unknown_fields(rng) {
      const text = JSON.stringify(one(rng));
      const [variant, body] = rng.pick([
        ["extra", `${text.slice(0, -1)},"extra":1}`], ["camel_case", `${text.slice(0, -1)},"campaignId":"x"}`],
        ["proto", `${text.slice(0, -1)},"__proto__":{"admin":true}}`], ["empty_key", `${text.slice(0, -1)},"":0}`],
        ["Action_capital", `${text.slice(0, -1)},"Action":"pause"}`], ["padded_key", `${text.slice(0, -1)},"action ":"pause"}`],
        ["requested_by_string", `${text.slice(0, -1)},"requested_by":"alice"}`],
        ["requested_by_self", `${text.slice(0, -1)},"requested_by":${JSON.stringify(w.editor)}}`],
        ["requested_by_number", `${text.slice(0, -1)},"requested_by":1}`],
      ]);
      return kase(variant, req({ body }), INVALID);
    },

    bad_action(rng) {
      const [variant, action] = rng.pick([["empty", ""], ["upper", "ACTIVATE"], ["title", "Pause"], ["trailing_space", "pause "],
        ["toggle", "toggle"], ["delete", "delete"], ["nul", "pause\u0000"], ["fullwidth", "ｐａｕｓｅ"], ["zero_width", "pau\u200bse"],
        ["rtl_override", "\u202eesuap"], ["emoji", "⏸️"], ["missing", undefined]]);
      return kase(variant, req({ body: { campaign_id: rng.pick(w.ours), action } }), INVALID);
    },

    bad_campaign_id(rng) {
      const id = rng.pick(w.ours);
      const [variant, value] = rng.pick([["empty", ""], ["word", "nope"], ["digit", "1"], ["short", id.slice(0, -1)],
        ["long", `${id}0`], ["non_hex", id.replace(/[a-f]/, "g")], ["nul", `${id}\u0000`], ["zero_width", `${id}\u200b`],
        ["fullwidth_digits", id.replace(/\d/g, (d) => String.fromCharCode(0xff10 + Number(d)))], ["path", "../../etc/passwd"],
        ["sql", "' or 1=1 --"], ["spaces", ` ${id} `], ["newline", `${id}\n`]]);
      return kase(variant, req({ body: { campaign_id: value, action: rng.pick(ACTIONS) } }), INVALID);
    },

    huge(rng) {
      const body = one(rng);
      const [variant, opts, expect] = rng.pick([
        ["8KiB_plus_1", { body: padTo(body, 8 * 1024 + 1) }, ["payload_too_large"]],
        ["64KiB", { body: padTo(body, 64 * 1024) }, ["payload_too_large"]],
        ["64KiB_garbage", { body: Buffer.alloc(64 * 1024, 0x7b) }, ["payload_too_large"]],
        ["20KiB_no_jwt", { auth: null, body: padTo(body, 20 * 1024) }, ["missing_authorization"]],
        ["20KiB_anon_key", { auth: `Bearer ${env.ANON_KEY}`, body: padTo(body, 20 * 1024) }, ["unauthorized"]],
        ["chunked_20KiB", { body: padTo(body, 20 * 1024), stream: true }, ["payload_too_large", "closed"]],
      ]);
      return kase(variant, req(opts), expect);
    },

    idempotency_key(rng) {
      const [variant, key] = rng.pick([["empty", ""], ["inner_space", "a b"], ["256_chars", "k".repeat(256)], ["tab", "a\tb"],
        ["latin1", wire("clé")], ["japanese", wire("キー")], ["emoji", wire("🔑")]]);
      if (rng.chance(0.2)) return kase(`${variant}_with_bad_body`, req({ body: { action: "nope" }, headers: [["x-idempotency-key", key]] }), INVALID);
      return kase(variant, req({ body: one(rng), headers: [["x-idempotency-key", key]] }), ["invalid_header"]);
    },
  };
}

const TOGGLE_WEIGHTS = [
  [16, "valid_unlinked"], [6, "not_found"], [4, "viewer"], [5, "batch"], [5, "bad_batch"], [4, "service_role"], [12, "auth"],
  [5, "method"], [7, "not_json"], [7, "wrong_types"], [6, "unknown_fields"], [5, "bad_action"], [6, "bad_campaign_id"],
  [4, "huge"], [5, "idempotency_key"],
];

// ----------------------------------------------------- n8n-status-webhook

const ONE_MIN = 60_000;
/** A valid status event for workflow `wid` at `now` (fields in `o` replace or, as undefined, remove). */
function statusEvent(now, wid, o = {}) {
  return { workflow_id: wid, workflow_name: `fuzz ${wid}`, active: true, timestamp: new Date(now).toISOString(), event_type: "activation", ...o };
}

/** A status webhook request; sig: "good", null (none), a string, or (good, bytes) => string. */
const hook = ({ make, sig = "good", method = "POST", headers = [], contentType = "application/json", stream = false }) => (now) => {
  const body = ["GET", "HEAD"].includes(method) ? null : bytesOf(make(now));
  const good = hmacHex(body ?? Buffer.alloc(0));
  const signature = sig === "good" ? good : typeof sig === "function" ? sig(good, body) : sig;
  const h = contentType === null ? [] : [["content-type", contentType]];
  if (signature !== null) h.push(["x-n8n-signature", signature]);
  h.push(...headers);
  return { method, url: HOOK_URL, headers: h, body, stream };
};

const appliedNothing = (json) =>
  json.applied === 0 && json.stale === 0 && json.queued === false ? [] : [`expected applied 0, stale 0, queued false: ${JSON.stringify(json)}`];

const HOOK_CLASSES = {
  valid(rng, n, wid) {
    const [variant, o, extra = {}] = rng.pick([
      ["activation", {}], ["activation", {}], ["deactivation", { event_type: "deactivation", active: false }],
      ["updated_active", { event_type: "updated" }], ["updated_inactive", { event_type: "updated", active: false }],
      ["renamed", { event_type: "renamed", active: undefined, workflow_name: "Renamed ✓" }],
      ["deleted", { event_type: "deleted", active: undefined, workflow_name: undefined }], ["error", { event_type: "error", active: null }],
      ["event_id", { event_id: `fz-${RUN}-e${n}` }], ["event_id_200", { event_id: `fz-${RUN}-e${n}-`.padEnd(200, "e") }],
      ["actor", { actor: "ops@example.com" }], ["unicode", { workflow_name: "Промо 😀 \u202eRTL\u200b", actor: "ñandú" }],
      ["name_400", { workflow_name: "n".repeat(400) }], ["name_null", { workflow_name: null }],
      ["extra_fields", { extra: { nested: [1, 2] }, version: 3 }],
      ["past_4min", {}, { offset: -4 * ONE_MIN }], ["future_4min", {}, { offset: 4 * ONE_MIN }],
      ["offset_plus_0800", {}, { ts: (now) => new Date(now + 8 * 3600_000).toISOString().replace("Z", "+08:00") }],
      ["microseconds", {}, { ts: (now) => new Date(now).toISOString().replace("Z", "123Z") }],
      ["sha256_prefix", {}, { sig: (g) => `sha256=${g}` }], ["uppercase_hex", {}, { sig: (g) => g.toUpperCase() }],
      ["text_plain", {}, { contentType: "text/plain" }], ["no_content_type", {}, { contentType: null }],
      ["whitespace_around", {}, { wrap: (t) => `\n  ${t} \r\n` }],
      ["workflow_id_64", {}, { wid: `${wid}_`.padEnd(64, "x") }],
      ["exactly_16KiB", {}, { wrap: (t) => `${t.slice(0, -1)},"pad":"${"p".repeat(16 * 1024 - Buffer.byteLength(t) - 9)}"}` }],
      ["chunked", {}, { stream: true }],
      ["duplicate_key_last_wins", {}, { wrap: (t) => `{"workflow_id":"${wid}-first",${t.slice(1)}` }],
    ]);
    const id = extra.wid ?? wid;
    const make = (now) => {
      const event = statusEvent(now + (extra.offset ?? 0), id, o);
      if (extra.ts) event.timestamp = extra.ts(now);
      const text = JSON.stringify(event);
      return extra.wrap ? extra.wrap(text) : text;
    };
    const request = hook({ make, sig: extra.sig ?? "good", stream: extra.stream, contentType: extra.contentType === undefined ? "application/json" : extra.contentType });
    // A twin: the same bytes sent at the same time by the next worker; one is new, the other a duplicate.
    if (rng.chance(0.05)) {
      let sent;
      return kase(`${variant}_twins`, (now) => (sent ??= request(now)), ["new", "dup"], { wid: id, checkSuccess: appliedNothing, twin: true });
    }
    return kase(variant, request, ["new"], { wid: id, checkSuccess: appliedNothing, repeat: rng.chance(0.15), eventId: o.event_id });
  },

  unsigned(rng, n, wid) {
    const [variant, sig] = rng.pick([["no_header", null], ["empty", ""], ["spaces", "   "]]);
    return kase(variant, hook({ make: (now) => statusEvent(now, wid), sig }), ["missing_header"], { wid });
  },

  forged(rng, n, wid) {
    const pos = rng.int(64);
    const other = (now) => bytesOf(statusEvent(now, wid, { active: false, event_type: "deactivation" }));
    let stamp;
    const make = (now) => { stamp = now; return statusEvent(now, wid); };
    const [variant, sig, expect] = rng.pick([
      ["wrong_secret", (g, b) => hmacHex(b, "another-secret-0123456789abcdef0123456789"), "invalid_signature"],
      ["jwt_secret", (g, b) => hmacHex(b, env.JWT_SECRET), "invalid_signature"],
      ["bit_flip", (g) => flip(g, pos), "invalid_signature"],
      ["other_body", () => hmacHex(other(stamp)), "invalid_signature"],
      ["body_plus_newline", (g, b) => hmacHex(Buffer.concat([b, Buffer.from("\n")])), "invalid_signature"],
      ["all_zeros", "0".repeat(64), "invalid_signature"],
      ["truncated_63", (g) => g.slice(0, 63), "invalid_header"], ["truncated_62", (g) => g.slice(0, 62), "invalid_header"],
      ["extra_byte", (g) => `${g}00`, "invalid_header"], ["sha256_colon", (g) => `sha256:${g}`, "invalid_header"],
      ["SHA256_upper_prefix", (g) => `SHA256=${g}`, "invalid_header"], ["sha256_twice", (g) => `sha256=sha256=${g}`, "invalid_header"],
      ["base64", (g) => Buffer.from(g, "hex").toString("base64"), "invalid_header"], ["non_hex", "z".repeat(64), "invalid_header"],
      ["inner_space", (g) => `${g.slice(0, 32)} ${g.slice(32)}`, "invalid_header"], ["latin1_junk", wire("é".repeat(32)), "invalid_header"],
      ["header_twice", (g) => `${g}, ${g}`, "invalid_header"],
    ]);
    return kase(variant, hook({ make, sig }), [expect], { wid });
  },

  standard(rng, n, wid) {
    const ts = String(Math.floor(Date.now() / 1000));
    const [variant, headers] = rng.pick([
      ["full_headers", [["webhook-id", `msg_${RUN}_${n}`], ["webhook-timestamp", ts], ["webhook-signature", `v1,${Buffer.alloc(32, 1).toString("base64")}`]]],
      ["id_only", [["webhook-id", `msg_${RUN}_${n}`]]],
      ["signature_only", [["webhook-signature", "v1,AAAA"]]],
    ]);
    // With a valid x-n8n-signature too: the Standard Webhooks headers decide.
    return kase(variant, hook({ make: (now) => statusEvent(now, wid), headers }), STANDARD_ON ? ["4xx"] : ["invalid_signature"], { wid });
  },

  not_json(rng, n, wid) {
    const [variant, make, expect = ["invalid_json"]] = rng.pick([
      ["empty", () => ""], ["whitespace", () => " \n "], ["open_brace", () => "{"], ["word", () => "activation"],
      ["truncated", (now) => { const t = JSON.stringify(statusEvent(now, wid)); return t.slice(0, t.length - 1 - (n % 20)); }],
      ["trailing_garbage", (now) => `${JSON.stringify(statusEvent(now, wid))}]`],
      ["two_objects", (now) => JSON.stringify(statusEvent(now, wid)).repeat(2)],
      ["bom", (now) => `\ufeff${JSON.stringify(statusEvent(now, wid))}`],
      ["single_quotes", (now) => JSON.stringify(statusEvent(now, wid)).replaceAll('"', "'")],
      ["raw_nul", (now) => JSON.stringify(statusEvent(now, wid)).replace("fuzz ", "fuzz\u0000")],
      ["invalid_utf8", (now) => {
        const [a, b] = JSON.stringify(statusEvent(now, wid)).split("fuzz ");
        return Buffer.concat([Buffer.from(a), Buffer.from([0xff, 0xfe]), Buffer.from(b)]);
      }],
      ["lone_surrogate", (now) => JSON.stringify(statusEvent(now, wid)).replace("fuzz ", "\\udc00")],
      ["deep_nesting", (now) => `${JSON.stringify(statusEvent(now, wid)).slice(0, -1)},"x":${"[".repeat(5000)}${"]".repeat(5000)}}`],
    ]);
    return kase(variant, hook({ make }), expect, { wid });
  },

  shape(rng, n, wid) {
    const [variant, make] = rng.pick([
      ["array", (now) => [statusEvent(now, wid)]], ["string", () => '"activation"'], ["number", () => "1"], ["null", () => "null"],
      ["true", () => "true"], ["empty_object", () => "{}"],
      ["no_workflow_id", (now) => statusEvent(now, wid, { workflow_id: undefined })],
      ["no_event_type", (now) => statusEvent(now, wid, { event_type: undefined })],
      ["no_timestamp", (now) => statusEvent(now, wid, { timestamp: undefined })],
      ["workflow_id_number", (now) => statusEvent(now, wid, { workflow_id: 12345 })],
      ["active_string", (now) => statusEvent(now, wid, { active: "true" })], ["active_number", (now) => statusEvent(now, wid, { active: 1 })],
      ["timestamp_number", (now) => statusEvent(now, wid, { timestamp: now })],
      ["name_number", (now) => statusEvent(now, wid, { workflow_name: 7 })], ["name_array", (now) => statusEvent(now, wid, { workflow_name: ["a"] })],
    ]);
    return kase(variant, hook({ make }), INVALID, { wid });
  },

  bad_workflow_id(rng, n, wid) {
    const [variant, id] = rng.pick([["empty", ""], ["65_chars", `${wid}-`.padEnd(65, "x")], ["space", `${wid} x`], ["slash", `${wid}/x`],
      ["dots", `../${wid}`], ["umlaut", `${wid}ü`], ["dot", `${wid}.x`], ["nul", `${wid}\u0000`], ["emoji", `${wid}😀`],
      ["newline", `${wid}\n`], ["sql", `${wid}' or '1'='1`]]);
    return kase(variant, hook({ make: (now) => statusEvent(now, id) }), INVALID, { wid });
  },

  bad_event_type(rng, n, wid) {
    const [variant, type] = rng.pick([["empty", ""], ["title", "Activation"], ["upper", "ACTIVATION"], ["past_tense", "activated"],
      ["leading_space", " activation"], ["nul", "activation\u0000"], ["number", 1], ["null", null], ["array", ["activation"]], ["unknown", "published"]]);
    return kase(variant, hook({ make: (now) => statusEvent(now, wid, { event_type: type }) }), INVALID, { wid });
  },

  contradiction(rng, n, wid) {
    const [variant, o] = rng.pick([
      ["activation_inactive", { active: false }], ["deactivation_active", { event_type: "deactivation", active: true }],
      ["activation_no_active", { active: undefined }], ["deactivation_null_active", { event_type: "deactivation", active: null }],
      ["updated_no_active", { event_type: "updated", active: undefined }],
      ["renamed_no_name", { event_type: "renamed", workflow_name: undefined }], ["renamed_null_name", { event_type: "renamed", workflow_name: null }],
    ]);
    return kase(variant, hook({ make: (now) => statusEvent(now, wid, o) }), INVALID, { wid });
  },

  window(rng, n, wid) {
    const [variant, ts] = rng.pick([
      ["past_6min", (now) => new Date(now - 6 * ONE_MIN).toISOString()], ["future_6min", (now) => new Date(now + 6 * ONE_MIN).toISOString()],
      ["past_1day", (now) => new Date(now - 1440 * ONE_MIN).toISOString()], ["future_1year", (now) => new Date(now + 525600 * ONE_MIN).toISOString()],
      ["epoch", () => "1970-01-01T00:00:00Z"], ["year_2000", () => "2000-01-01T00:00:00+00:00"], ["year_9999", () => "9999-12-31T23:59:59Z"],
      ["local_clock_as_utc", (now) => new Date(now + 8 * 3600_000).toISOString()],
    ]);
    return kase(variant, hook({ make: (now) => statusEvent(now, wid, { timestamp: ts(now) }) }), ["timestamp_out_of_window"], { wid });
  },

  timestamp_format(rng, n, wid) {
    const [variant, ts] = rng.pick([
      ["words", () => "yesterday"], ["empty", () => ""], ["month_13", () => "2026-13-01T00:00:00Z"], ["date_only", (now) => new Date(now).toISOString().slice(0, 10)],
      ["no_offset", (now) => new Date(now).toISOString().slice(0, 19)], ["epoch_seconds_string", (now) => String(Math.floor(now / 1000))],
      ["hour_25", () => "2026-11-24T25:00:00Z"], ["http_date", (now) => new Date(now).toUTCString()], ["null", () => null],
      ["offset_no_colon", (now) => new Date(now).toISOString().replace("Z", "+0000")],
    ]);
    return kase(variant, hook({ make: (now) => statusEvent(now, wid, { timestamp: ts(now) }) }), INVALID, { wid });
  },

  bad_fields(rng, n, wid) {
    const [variant, o] = rng.pick([
      ["event_id_empty", { event_id: "" }], ["event_id_201", { event_id: "e".repeat(201) }], ["event_id_number", { event_id: 1 }],
      ["event_id_nul", { event_id: `fz\u0000${n}` }], ["event_id_object", { event_id: { id: 1 } }], ["event_id_multibyte_over", { event_id: "é".repeat(101) }],
      ["actor_201", { actor: "a".repeat(201) }], ["actor_control", { actor: "ops\u0007" }], ["actor_number", { actor: 5 }],
      ["name_401", { workflow_name: "n".repeat(401) }], ["name_nul", { workflow_name: "a\u0000b" }],
    ]);
    return kase(variant, hook({ make: (now) => statusEvent(now, wid, o) }), INVALID, { wid });
  },

  huge(rng, n, wid) {
    const pad = (now, size) => {
      const t = JSON.stringify(statusEvent(now, wid));
      return `${t.slice(0, -1)},"pad":"${"p".repeat(size - Buffer.byteLength(t) - 9)}"}`;
    };
    const [variant, opts] = rng.pick([
      ["16KiB_plus_1", { make: (now) => pad(now, 16 * 1024 + 1) }], ["64KiB", { make: (now) => pad(now, 64 * 1024) }],
      ["64KiB_unsigned", { make: (now) => pad(now, 64 * 1024), sig: null }], ["64KiB_wrong_sig", { make: (now) => pad(now, 64 * 1024), sig: "0".repeat(64) }],
      ["chunked_20KiB", { make: (now) => pad(now, 20 * 1024), stream: true }],
    ]);
    return kase(variant, hook(opts), opts.stream ? ["payload_too_large", "closed"] : ["payload_too_large"], { wid });
  },

  method(rng, n, wid) {
    const method = rng.pick(["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"]);
    return kase(method, hook({ method, make: (now) => statusEvent(now, wid) }), ["method_not_allowed"], { wid });
  },
};

const HOOK_WEIGHTS = [
  [25, "valid"], [5, "unsigned"], [12, "forged"], [4, "standard"], [7, "not_json"], [8, "shape"], [6, "bad_workflow_id"],
  [5, "bad_event_type"], [6, "contradiction"], [6, "window"], [6, "timestamp_format"], [5, "bad_fields"], [3, "huge"], [3, "method"],
];

function generate(classes, weights, salt, extra) {
  const rng = makeRng(streamSeed(salt));
  return Array.from({ length: COUNT }, (_, n) => {
    const cls = rng.weighted(weights);
    const spec = { ...classes[cls](rng, n, extra?.(n)), cls, n };
    return spec.twin ? [spec, { ...spec }] : [spec];
  }).flat();
}

// ------------------------------------------------------------------ tests

const cleanups = [];
after(() => {
  for (const cleanup of cleanups.reverse()) cleanup();
});

test(`campaign-toggle: ${COUNT} hostile requests`, { timeout: 120_000 }, async () => {
  const [editor, viewer, stranger] = [randomUUID(), randomUUID(), randomUUID()];
  const ws = sql(`insert into campaigns.workspaces (name) values (${lit(`fuzz ${RUN}`)}) returning id`);
  const otherWs = sql(`insert into campaigns.workspaces (name) values (${lit(`fuzz ${RUN} other`)}) returning id`);
  cleanups.push(() => sql(`delete from campaigns.workspaces where id in (${lit(ws)}, ${lit(otherWs)})`));
  sql(`insert into campaigns.workspace_members (workspace_id, user_id, role) values
       (${lit(ws)}, ${lit(editor)}, 'editor'), (${lit(ws)}, ${lit(viewer)}, 'viewer'), (${lit(otherWs)}, ${lit(randomUUID())}, 'owner')`);
  const insert = (wsId, name) => sql(`insert into campaigns.campaigns (workspace_id, name) values (${lit(wsId)}, ${lit(name)}) returning id`);
  const ours = [insert(ws, `fuzz ${RUN} a`), insert(ws, `fuzz ${RUN} b`)];
  const other = insert(otherWs, `fuzz ${RUN} other`);
  const ids = [...ours, other].map(lit).join(", ");
  const rows = () => sql(`select string_agg(to_jsonb(c)::text, E'\\n' order by id) from campaigns.campaigns c where id in (${ids})`);
  const before = rows();
  const w = { editor, viewer, stranger, ours, other, tokens: { editor: jwt(userClaims(editor)), viewer: jwt(userClaims(viewer)), stranger: jwt(userClaims(stranger)) } };

  const specs = generate(toggleClasses(w), TOGGLE_WEIGHTS, 1);
  const { results, seconds } = await timed(specs);
  console.log(summary("campaign-toggle", specs, results, seconds));
  assertAnswers("campaign-toggle", specs, results);

  // Nothing was admitted, so nothing was written: no audit, no rate-limit slot, no idempotency record.
  const users = [editor, viewer, stranger].map(lit).join(", ");
  assert.equal(sql(`select count(*) from campaigns.campaign_audit_log where campaign_id in (${ids}) or user_id in (${users}) or user_id like 'fz-${RUN}-%'`), "0", "no audit rows");
  assert.equal(sql(`select count(*) from campaigns.toggle_attempts where user_id in (${users}) or user_id like 'fz-${RUN}-%'`), "0", "no toggle_attempts rows");
  assert.equal(sql(`select count(*) from campaigns.toggle_requests where user_id in (${users}) or user_id like 'fz-${RUN}-%'`), "0", "no toggle_requests rows");
  assert.equal(rows(), before, "the campaigns are unchanged");
  assert.equal(sql(`select string_agg(distinct format('%s/%s/%s', status, version, toggle_id is null), ',') from campaigns.campaigns where id in (${ids})`), "paused/1/t", "every campaign paused, version 1, not claimed");
});

test(`n8n-status-webhook: ${COUNT} hostile requests`, { timeout: 120_000 }, async () => {
  const prefix = `fz-${RUN}-`;
  cleanups.push(() => sql(`delete from campaigns.workflow_events where workflow_id like ${lit(`${prefix}%`)}`));
  const specs = generate(HOOK_CLASSES, HOOK_WEIGHTS, 2, (n) => `${prefix}${n}`);
  const { results, seconds } = await timed(specs);

  // Accepted events sent again on purpose: the same bytes, or (with an event_id of its own) another body under that id.
  const repeats = [];
  specs.forEach((spec, i) => {
    if (!spec.repeat || results[i].skipped || results[i].outcome !== "new") return;
    const first = results[i].request;
    const otherBody = spec.eventId !== undefined && spec.n % 2 === 0;
    const build = otherBody
      ? hook({ make: (now) => statusEvent(now, spec.wid, { event_id: spec.eventId, actor: "second delivery" }) })
      : () => first;
    repeats.push({ cls: "repeat", variant: otherBody ? "same_event_id_other_body" : "same_bytes", n: spec.n, wid: spec.wid, build, expect: ["dup"], checkSuccess: appliedNothing });
  });
  const again = await timed(repeats);
  const all = [...specs, ...repeats];
  const allResults = [...results, ...again.results];
  console.log(summary("n8n-status-webhook", all, allResults, seconds + again.seconds));
  assertAnswers("n8n-status-webhook", all, allResults);

  // One workflow_events row for each accepted event, none for a refused request, nothing queued.
  const stored = new Map(sql(`select workflow_id || ' ' || count(*) from campaigns.workflow_events where workflow_id like ${lit(`${prefix}%`)} group by workflow_id`)
    .split("\n").filter(Boolean).map((line) => [line.split(" ")[0], Number(line.split(" ")[1])]));
  const wrong = [];
  const news = new Map(); // workflow id -> accepted (new) answers
  specs.forEach((spec, i) => {
    if (!results[i].skipped) news.set(spec.wid, (news.get(spec.wid) ?? 0) + (results[i].outcome === "new" ? 1 : 0));
  });
  specs.forEach((spec, i) => {
    const r = results[i];
    if (r.skipped) return;
    const want = Math.min(news.get(spec.wid), 1);
    if (news.get(spec.wid) > 1) wrong.push(`#${spec.n} ${spec.cls}/${spec.variant}: ${news.get(spec.wid)} answers "new" for one event`);
    if ((stored.get(spec.wid) ?? 0) !== want) wrong.push(`#${spec.n} ${spec.cls}/${spec.variant} (${r.status} ${r.outcome}): ${stored.get(spec.wid) ?? 0} rows for ${spec.wid}, expected ${want}`);
  });
  const accepted = new Set([...news].filter(([, count]) => count > 0).map(([id]) => id));
  for (const id of stored.keys()) if (!accepted.has(id)) wrong.push(`a row for ${id}, which no accepted request carried`);
  assert.deepEqual(wrong.slice(0, 20), [], `[FUZZ_SEED=${SEED}] workflow_events rows (${wrong.length} wrong)`);
  console.log(`  workflow_events rows: ${stored.size} for ${accepted.size} accepted events, ${repeats.length} repeats`);
  assert.equal(sql(`select count(*) from campaigns.sync_failures where payload ->> 'workflow_id' like ${lit(`${prefix}%`)}`), "0", "nothing queued");
});
