// End-to-end fuzzing of both edge functions, as a hostile client would: a few
// thousand generated requests per function against the running stack, checking
// that nothing answers 5xx, that every answer is the error envelope (4xx) or a
// success, that outcomes we are sure of happen (a forged request is never
// accepted, a valid event always is), and that only accepted events write rows.
//
// Deterministic from a seed: FUZZ_SEED=N replays the same sequence of requests
// (timestamps and idempotency keys are fresh on every run, so a replayed run
// never collides with an earlier one). FUZZ_COUNT sets the requests per
// function (default 2000). FUZZ_ONLY=3,17 sends only those request numbers
// (from a failure message), of the sequence FUZZ_SEED generates.
// FUZZ_STRICT_GATEWAY=1 also fails on gateway answers without correlation_id.
// FUZZ_DUMP=file appends every request and answer as JSON lines, for analysis.
//
// Tolerated and counted in the summary instead of failing: workerd's own
// plain-text 501 to methods it does not know (the function never sees them),
// a connection reset while uploading 1 MiB or more after the server answered,
// and 503 upstream_unavailable / refused connections that go away when the
// request is sent again (other tests restart PostgREST, Postgres and workerd).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac, randomInt } from "node:crypto";
import { appendFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { ROUTER_URL, WEBHOOK_URL, env, secrets, sql as sqlOnce } from "./helpers.mjs";

// ----------------------------------------------------------------- settings

function parseSeed(text) {
  if (text === undefined || text === "") return randomInt(1, 2 ** 32 - 1);
  assert.match(text, /^\d+$/, `FUZZ_SEED must be a non-negative integer, got ${text}`);
  return Number(text) >>> 0;
}

const SEED = parseSeed(process.env.FUZZ_SEED);
const COUNT = Number(process.env.FUZZ_COUNT ?? 2000);
const ONLY = process.env.FUZZ_ONLY ? new Set(process.env.FUZZ_ONLY.split(",").map(Number)) : null;
const STRICT_GATEWAY = process.env.FUZZ_STRICT_GATEWAY === "1";
const DUMP = process.env.FUZZ_DUMP; // a file to write every request's class, variant and answer to (JSON lines)
const CONCURRENCY = 8;
const REQUEST_TIMEOUT_MS = 30_000;
// Other tests stop and restart PostgREST and Postgres (503 upstream_unavailable,
// nothing written), rebuilds restart workerd (connection refused), and workerd
// drops a keep-alive connection after an answer given without reading the
// request body (a 405 or 403 to a request with a body), so the next request on
// it is reset: such a request is sent again, freshly signed, for up to this
// long. A 503 that persists is still a failure.
const TRANSIENT_RETRY_MS = 20_000;
// At most this many such resends per function, so a 503 that is not transient
// cannot stretch the run by TRANSIENT_RETRY_MS per request.
const TRANSIENT_RETRY_BUDGET = 300;
// Authorized, valid router calls start a delivery run each: keep them few.
const ROUTER_RUN_BUDGET = 100;
const ROUTER_WAIT_BUDGET = 5;
const TOLERANCE_MS = 5 * 60 * 1000;
const MAX_WEBHOOK_BODY = 256 * 1024;
const MAX_ROUTER_BODY = 4096;

// Unique per run, independent of the seed: a replayed seed must not reuse the
// idempotency keys of the run it replays. Letters and digits only, so it is
// safe inside a LIKE pattern.
const RUN_ID = `${Date.now().toString(36)}${randomInt(36 ** 4).toString(36).padStart(4, "0")}`;
const KEY_PREFIX = `fuzz:${RUN_ID}:`; // seed scheme x-idempotency-key
const STD_PREFIX = `fuzz_${RUN_ID}_`; // Standard Webhooks webhook-id
const KEY_LIKE = `idempotency_key like '${KEY_PREFIX}%' or idempotency_key like '${STD_PREFIX.replaceAll("_", "\\_")}%'`;

const INVOCATION_TOKEN = env.OUTBOX_ROUTER_INVOCATION_TOKEN || process.env.OUTBOX_ROUTER_INVOCATION_TOKEN || "";

console.log(`fuzz seed: ${SEED} (replay: FUZZ_SEED=${SEED} node --test tests/e2e/fuzz.test.mjs)`);
console.log(`fuzz run id: ${RUN_ID}, ${COUNT} requests per function, ${CONCURRENCY} in flight` +
  (INVOCATION_TOKEN ? ", router invocation token present" : ""));

const SEED_TAG = `[FUZZ_SEED=${SEED}]`;

// ---------------------------------------------------------------- the PRNG

/** mulberry32: tiny, fast, good enough to pick test cases reproducibly. */
function makeRng(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick: (list) => list[int(list.length)],
    /** entries: [[weight, value], ...] */
    weighted(entries) {
      const total = entries.reduce((sum, [w]) => sum + w, 0);
      let r = next() * total;
      for (const [w, value] of entries) {
        r -= w;
        if (r < 0) return value;
      }
      return entries[entries.length - 1][1];
    },
    string(length, alphabet = "abcdefghijklmnopqrstuvwxyz0123456789") {
      let s = "";
      for (let i = 0; i < length; i++) s += alphabet[int(alphabet.length)];
      return s;
    },
  };
}

/** An independent stream per function, so FUZZ_COUNT of one does not shift the other. */
const streamSeed = (salt) => (Math.imul(SEED ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(salt, 0xc2b2ae35)) >>> 0;

// ---------------------------------------------------------------- encoding

const utf8 = (s) => Buffer.from(s, "utf8");
/** A header value that puts these UTF-8 bytes on the wire (fetch sends header strings as latin1). */
const wireUtf8 = (s) => Buffer.from(s, "utf8").toString("latin1");
const hmacHex = (secret, ts, body) => createHmac("sha256", secret).update(`${ts}.`).update(body).digest("hex");
const sha256Hex = (bytes) => createHash("sha256").update(bytes).digest("hex");
const b64url = (s) => Buffer.from(s).toString("base64url");

/** JSON text where placeholders "@@RAWi@@" (as values or keys) are replaced by raw JSON text. */
function jsonWithRaw(value, raws) {
  let text = JSON.stringify(value);
  raws.forEach((raw, i) => {
    text = text.replace(`"@@RAW${i}@@"`, () => raw); // a function: "$" in raw stays literal
  });
  return text;
}

/** JSON of `value` with the string "@@BYTES@@" replaced by raw bytes inside the quotes (invalid UTF-8 on purpose). */
function spliceBytes(value, bytes) {
  const [before, after] = JSON.stringify(value).split("@@BYTES@@");
  return Buffer.concat([utf8(before), Buffer.from(bytes), utf8(after)]);
}

function standardKeyBytes(secret) {
  return Buffer.from(secret.slice("whsec_".length), "base64");
}

function standardSign(secret, id, ts, body) {
  const mac = createHmac("sha256", standardKeyBytes(secret)).update(`${id}.${ts}.`).update(body).digest("base64");
  return `v1,${mac}`;
}

/** An HS256 JWT, for the router's hostile bearers: expired, other roles, other secrets. */
function jwt(claims, { secret = env.JWT_SECRET, header = { alg: "HS256", typ: "JWT" }, rawHeader } = {}) {
  const head = rawHeader ?? b64url(JSON.stringify(header));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

// -------------------------------------------------------- shared generators

const EVENT_TYPES = ["fuzz.created", "fuzz.updated", "fuzzing.item.done", "fz:1-a_b", "FUZZ.Upper", "0fuzz.digit"];
const AGGREGATE_TYPES = ["fuzz.thing", "hr.expense", "x", "project.task"];

/**
 * A valid event. event_type starts with "fuzz"-like names that no route
 * matches, so accepted events are dead-lettered as no_route at once instead
 * of being pushed to n8n. payload.fuzz_n keeps every body unique, so two
 * valid events never share a MAC (which would look like a replay).
 */
function fuzzEvent(rng, n, overrides = {}) {
  const event = {
    event_type: rng.pick(EVENT_TYPES),
    aggregate_type: rng.pick(AGGREGATE_TYPES),
    aggregate_id: rng.chance(0.5) ? String(rng.int(1e9)) : rng.int(1e6),
    payload: {
      fuzz_n: n,
      run: RUN_ID,
      amount: rng.int(1e7) / 100,
      note: rng.pick(["", "ok", "ñandú", "日本語", "emoji 😀"]),
      lines: rng.chance(0.3) ? [{ qty: rng.int(10), sku: rng.string(6) }] : [],
    },
  };
  if (rng.chance(0.3)) event.occurred_at = rng.pick(["2026-01-22T07:26:26Z", "2026-01-22T07:26:26.855+08:00", "2025-12-31 23:59:59-05:00"]);
  return { ...event, ...overrides };
}

const ipaiKey = (n, suffix = "") => `${KEY_PREFIX}${n}${suffix}`;
const stdId = (n, suffix = "") => `${STD_PREFIX}${n}${suffix}`;

/**
 * A seed-scheme request, built at send time (the timestamp must be fresh).
 * signature: a string, or (goodSignature, ts, body) => string.
 */
function ipai(opts) {
  const {
    body,
    n,
    key = ipaiKey(n),
    secret = env.ODOO_WEBHOOK_SECRET,
    tsOffset = 0,
    tsRaw,
    signature,
    method = "POST",
    contentType = "application/json",
    omit = [],
    extra = [],
    query = "",
    stream = false,
    validSig = signature === undefined,
  } = opts;
  const bytes = body === null ? null : Buffer.isBuffer(body) ? body : utf8(body);
  const signedFresh = validSig && tsRaw === undefined && Math.abs(tsOffset) < TOLERANCE_MS &&
    [env.ODOO_WEBHOOK_SECRET, env.ODOO_WEBHOOK_SECRET_PREVIOUS].includes(secret);
  return {
    scheme: "ipai",
    signedFresh,
    build(now) {
      const ts = tsRaw ?? String(now + tsOffset);
      const good = hmacHex(secret, ts, bytes ?? Buffer.alloc(0));
      const sig = typeof signature === "function" ? signature(good, ts, bytes) : signature ?? good;
      const headers = [];
      if (contentType !== null) headers.push(["content-type", contentType]);
      if (!omit.includes("ts")) headers.push(["x-ipai-timestamp", ts]);
      if (!omit.includes("sig")) headers.push(["x-ipai-signature", sig]);
      if (!omit.includes("key")) headers.push(["x-idempotency-key", key]);
      headers.push(...extra);
      return { method, url: WEBHOOK_URL + query, headers, body: bytes, stream };
    },
  };
}

/** A Standard Webhooks request. signature: a string, or (good, id, ts, body) => string. */
function standard(opts) {
  const {
    body,
    n,
    id = stdId(n),
    secret = env.ODOO_WEBHOOK_STANDARD_SECRET,
    tsOffsetS = 0,
    tsRaw,
    signature,
    omit = [],
    extra = [],
    validSig = signature === undefined,
  } = opts;
  const bytes = utf8(body);
  return {
    scheme: "standard",
    signedFresh: validSig && tsRaw === undefined && Math.abs(tsOffsetS) < TOLERANCE_MS / 1000 &&
      secret === env.ODOO_WEBHOOK_STANDARD_SECRET,
    build(now) {
      const ts = tsRaw ?? String(Math.floor(now / 1000) + tsOffsetS);
      const good = standardSign(secret, id, ts, bytes);
      const sig = typeof signature === "function" ? signature(good, id, ts, bytes) : signature ?? good;
      const headers = [["content-type", "application/json"]];
      if (!omit.includes("id")) headers.push(["webhook-id", id]);
      if (!omit.includes("ts")) headers.push(["webhook-timestamp", ts]);
      if (!omit.includes("sig")) headers.push(["webhook-signature", sig]);
      headers.push(...extra);
      return { method: "POST", url: WEBHOOK_URL, headers, body: bytes, stream: false };
    },
  };
}

/** A case: class, variant, how to build it, and the outcomes we accept ("new", "dup", a code, "4xx", or null for any non-5xx). */
const kase = (variant, request, expect, more = {}) => ({ variant, ...request, expect, ...more });

// ------------------------------------------------------ odoo-webhook classes

const flipHexDigit = (hex, i) => hex.slice(0, i) + ((parseInt(hex[i], 16) ^ 1).toString(16)) + hex.slice(i + 1);

const WEBHOOK_CLASSES = {
  valid(rng, n) {
    const body = JSON.stringify(fuzzEvent(rng, n));
    if (rng.chance(0.15)) return kase("previous_secret", ipai({ body, n, secret: env.ODOO_WEBHOOK_SECRET_PREVIOUS }), ["new"], { replayable: true });
    return kase("event", ipai({ body, n }), ["new"], { replayable: true });
  },

  valid_standard(rng, n) {
    return kase("event", standard({ body: JSON.stringify(fuzzEvent(rng, n)), n }), ["new"], { replayableStd: true });
  },

  forged_signature(rng, n) {
    const body = JSON.stringify(fuzzEvent(rng, n));
    const other = JSON.stringify(fuzzEvent(rng, n + 1_000_000));
    const wrongSecret = rng.string(64, "0123456789abcdef");
    const pos = rng.int(64);
    const variants = [
      ["wrong_key", { secret: wrongSecret }, ["invalid_signature"]],
      ["bit_flip", { signature: (g) => flipHexDigit(g, pos) }, ["invalid_signature"]],
      ["other_body", { signature: (g, ts) => hmacHex(env.ODOO_WEBHOOK_SECRET, ts, utf8(other)) }, ["invalid_signature"]],
      ["other_timestamp", { signature: (g, ts) => hmacHex(env.ODOO_WEBHOOK_SECRET, String(Number(ts) - 1), utf8(body)) }, ["invalid_signature"]],
      ["no_dot_separator", { signature: (g, ts, b) => createHmac("sha256", env.ODOO_WEBHOOK_SECRET).update(ts).update(b).digest("hex") }, ["invalid_signature"]],
      ["standard_secret_as_ipai", { secret: env.ODOO_WEBHOOK_STANDARD_SECRET }, ["invalid_signature"]],
      ["all_zeros", { signature: "0".repeat(64) }, ["invalid_signature"]],
      ["truncated_63", { signature: (g) => g.slice(0, 63) }, ["invalid_header"]],
      ["truncated_62", { signature: (g) => g.slice(0, 62) }, ["invalid_header"]],
      ["truncated_32", { signature: (g) => g.slice(0, 32) }, ["invalid_header"]],
      ["extra_hex_digit", { signature: (g) => `${g}0` }, ["invalid_header"]],
      ["extra_byte", { signature: (g) => `${g}00` }, ["invalid_header"]],
      ["uppercase", { signature: (g) => g.toUpperCase(), validSig: true }, ["new"]],
      ["sha256_prefix", { signature: (g) => `sha256=${g}`, validSig: true }, ["new"]],
      ["SHA256_prefix_upper", { signature: (g) => `SHA256=${g}` }, ["invalid_header"]],
      ["sha256_colon", { signature: (g) => `sha256:${g}` }, ["invalid_header"]],
      ["sha256_twice", { signature: (g) => `sha256=sha256=${g}` }, ["invalid_header"]],
      ["sha1_prefix", { signature: (g) => `sha1=${g}` }, ["invalid_header"]],
      ["base64_mac", { signature: (g) => Buffer.from(g, "hex").toString("base64") }, ["invalid_header"]],
      ["inner_space", { signature: (g) => `${g.slice(0, 32)} ${g.slice(32)}` }, ["invalid_header"]],
      ["non_hex", { signature: "z".repeat(64) }, ["invalid_header"]],
      ["empty", { signature: "" }, ["missing_header"]],
      ["latin1_junk", { signature: wireUtf8("é".repeat(32)) }, ["invalid_header"]],
    ];
    const [variant, opts, expect] = rng.pick(variants);
    return kase(variant, ipai({ body, n, ...opts }), expect);
  },

  timestamp(rng, n) {
    const body = JSON.stringify(fuzzEvent(rng, n));
    const variants = [
      ["inside_past_295s", { tsOffset: -295_000 }, ["new"]],
      ["inside_future_295s", { tsOffset: 295_000 }, ["new"]],
      ["outside_past_305s", { tsOffset: -305_000 }, ["timestamp_out_of_window"]],
      ["outside_future_305s", { tsOffset: 305_000 }, ["timestamp_out_of_window"]],
      ["one_day_old", { tsOffset: -86_400_000 }, ["timestamp_out_of_window"]],
      ["seconds_not_ms", { tsRaw: String(Math.floor(Date.now() / 1000)) }, ["timestamp_out_of_window"]],
      ["zero", { tsRaw: "0" }, ["timestamp_out_of_window"]],
      ["sixteen_digits", { tsRaw: "9999999999999999" }, ["timestamp_out_of_window"]],
      ["seventeen_digits", { tsRaw: "99999999999999999" }, ["invalid_header"]],
      ["huge", { tsRaw: "9".repeat(40) }, ["invalid_header"]],
      ["negative", { tsRaw: "-1000" }, ["invalid_header"]],
      ["plus_sign", { tsRaw: `+${Date.now()}` }, ["invalid_header"]],
      ["decimal", { tsRaw: `${Date.now()}.5` }, ["invalid_header"]],
      ["exponent", { tsRaw: "1.7e12" }, ["invalid_header"]],
      ["hex", { tsRaw: `0x${Date.now().toString(16)}` }, ["invalid_header"]],
      ["words", { tsRaw: "yesterday" }, ["invalid_header"]],
      ["iso_date", { tsRaw: new Date().toISOString() }, ["invalid_header"]],
      ["arabic_digits", { tsRaw: wireUtf8("١٧٦٩٠٦٦٧٨٥٠٠٠") }, ["invalid_header"]],
      ["empty", { tsRaw: "" }, ["missing_header"]],
      ["missing", { omit: ["ts"] }, ["missing_header"]],
    ];
    const [variant, opts, expect] = rng.pick(variants);
    // A fixed tsRaw is computed now, at generation; "seconds_not_ms" stays out of window either way.
    return kase(variant, ipai({ body, n, ...opts }), expect);
  },

  missing_headers(rng, n) {
    const body = JSON.stringify(fuzzEvent(rng, n));
    const omit = rng.pick([["ts"], ["sig"], ["key"], ["ts", "sig"], ["ts", "sig", "key"], ["sig", "key"]]);
    return kase(`without_${omit.join("_")}`, ipai({ body, n, omit }), ["missing_header"]);
  },

  truncated_body(rng, n) {
    const full = JSON.stringify(fuzzEvent(rng, n, { payload: { fuzz_n: n, text: "héllo wörld 😀 ".repeat(1 + rng.int(4)) } }));
    const bytes = utf8(full);
    const cut = rng.int(bytes.length); // 0 .. len-1: always a proper prefix, possibly mid-character
    const variant = rng.pick(["signed_after", "signed_after", "signed_before", "trailing_garbage", "two_objects", "trailing_newline", "trailing_nul"]);
    switch (variant) {
      case "signed_after":
        return kase(`signed_after_cut_${cut}`, ipai({ body: bytes.subarray(0, cut), n }), ["invalid_json"]);
      case "signed_before":
        return kase(`signed_before_cut_${cut}`, ipai({ body: bytes.subarray(0, cut), n, signature: (g, ts) => hmacHex(env.ODOO_WEBHOOK_SECRET, ts, bytes) }), ["invalid_signature"]);
      case "trailing_garbage":
        return kase(variant, ipai({ body: `${full}xyz`, n }), ["invalid_json"]);
      case "two_objects":
        return kase(variant, ipai({ body: `${full}{}`, n }), ["invalid_json"]);
      case "trailing_newline":
        return kase(variant, ipai({ body: `${full}\r\n\t `, n }), ["new"], { replayable: true });
      default:
        return kase(variant, ipai({ body: Buffer.concat([bytes, Buffer.from([0])]), n }), ["invalid_json"]);
    }
  },

  oversized(rng, n) {
    const pad = (bytes) => {
      const base = JSON.stringify(fuzzEvent(rng, n, { payload: { fuzz_n: n, pad: "" } }));
      return base.replace('"pad":""', `"pad":"${"x".repeat(bytes - base.length)}"`);
    };
    const variants = [
      ["exactly_256KiB", () => ipai({ body: pad(MAX_WEBHOOK_BODY), n }), ["new"]],
      ["256KiB_plus_1", () => ipai({ body: pad(MAX_WEBHOOK_BODY + 1), n }), ["payload_too_large"]],
      ["256KiB_plus_1_unsigned", () => ipai({ body: pad(MAX_WEBHOOK_BODY + 1), n, signature: "0".repeat(64) }), ["payload_too_large"]],
      ["1MiB", () => ipai({ body: pad(1024 * 1024), n }), ["payload_too_large", "closed"]],
      ["chunked_no_length_300KiB", () => ipai({ body: pad(300 * 1024), n, stream: true }), ["payload_too_large"]],
      ["chunked_no_length_small", () => ipai({ body: JSON.stringify(fuzzEvent(rng, n)), n, stream: true }), ["new"]],
      // The server may answer 413 and close before a large upload ends: fetch then sees a reset.
      ["4MiB_garbage", () => ipai({ body: Buffer.alloc(4 * 1024 * 1024, 0x61), n }), ["payload_too_large", "closed"]],
    ];
    const [variant, make, expect] = rng.pick(variants);
    return kase(variant, make(), expect);
  },

  wrong_types(rng, n) {
    const field = rng.pick(["event_type", "aggregate_type", "aggregate_id", "payload", "occurred_at", "(body)"]);
    const values = [
      ["number", 7], ["float", 1.5], ["true", true], ["false", false], ["null", null], ["array", ["x"]],
      ["empty_array", []], ["object", { a: 1 }], ["empty_object", {}], ["empty_string", ""], ["string", "s p a c e"],
    ];
    if (field === "(body)") {
      const [variant, raw, expect] = rng.pick([
        ["array", "[]", ["validation_failed"]], ["array_of_event", `[${JSON.stringify(fuzzEvent(rng, n))}]`, ["validation_failed"]],
        ["string", '"event"', ["validation_failed"]], ["number", "42", ["validation_failed"]], ["null", "null", ["validation_failed"]],
        ["true", "true", ["validation_failed"]], ["empty", "", ["invalid_json"]], ["whitespace", "  \n ", ["invalid_json"]],
        ["empty_object", "{}", ["validation_failed"]],
      ]);
      return kase(`body_${variant}`, ipai({ body: raw, n }), expect);
    }
    const [name, value] = rng.pick(values);
    const event = fuzzEvent(rng, n, { [field]: value });
    // What the contract says is valid for each field.
    const valid =
      (field === "aggregate_id" && name === "number") ||
      (field === "aggregate_id" && name === "string") ||
      (field === "payload" && (name === "object" || name === "empty_object")) ||
      (field === "occurred_at" && name === "null");
    return kase(`${field}_${name}`, ipai({ body: JSON.stringify(event), n }), valid ? ["new"] : ["validation_failed"], { replayable: valid });
  },

  missing_fields(rng, n) {
    const event = fuzzEvent(rng, n, { occurred_at: "2026-01-22T07:26:26Z" });
    const fields = ["event_type", "aggregate_type", "aggregate_id", "payload", "occurred_at"];
    const drop = fields.filter(() => rng.chance(0.4));
    if (drop.length === 0) drop.push(rng.pick(fields));
    for (const f of drop) delete event[f];
    const onlyOptional = drop.every((f) => f === "occurred_at");
    return kase(`without_${drop.join("+")}`, ipai({ body: JSON.stringify(event), n }), onlyOptional ? ["new"] : ["validation_failed"], { replayable: onlyOptional });
  },

  odd_unicode(rng, n) {
    const base = () => fuzzEvent(rng, n);
    const withRaw = (event, raws) => jsonWithRaw(event, raws);
    const variants = [
      // NUL: JSON allows it escaped; Postgres jsonb and text refuse it.
      ["nul_in_payload_string", () => withRaw({ ...base(), payload: { fuzz_n: n, note: "@@RAW0@@" } }, ['"a\\u0000b"']), null],
      ["nul_in_payload_key", () => withRaw({ ...base(), payload: { fuzz_n: n, "@@RAW0@@": 1 } }, ['"k\\u0000"']), null],
      ["nul_in_nested_payload", () => withRaw({ ...base(), payload: { fuzz_n: n, deep: { list: ["ok", "@@RAW0@@"] } } }, ['"\\u0000"']), null],
      ["nul_in_aggregate_id", () => withRaw({ ...base(), aggregate_id: "@@RAW0@@" }, ['"42\\u0000"']), ["validation_failed"]],
      ["nul_in_event_type", () => withRaw({ ...base(), event_type: "@@RAW0@@" }, ['"fuzz\\u0000.created"']), ["validation_failed"]],
      ["nul_in_ignored_field", () => withRaw({ ...base(), extra: "@@RAW0@@" }, ['"\\u0000"']), null],
      ["raw_nul_byte_in_string", () => JSON.stringify({ ...base(), payload: { fuzz_n: n, note: "a\u0000b" } }).replace("\\u0000", "\u0000"), ["invalid_json"]],
      ["lone_high_surrogate_payload", () => withRaw({ ...base(), payload: { fuzz_n: n, note: "@@RAW0@@" } }, ['"x\\ud800y"']), null],
      ["lone_low_surrogate_payload", () => withRaw({ ...base(), payload: { fuzz_n: n, note: "@@RAW0@@" } }, ['"\\udc00"']), null],
      ["lone_surrogate_aggregate_id", () => withRaw({ ...base(), aggregate_id: "@@RAW0@@" }, ['"\\ud800"']), null],
      ["lone_surrogate_key", () => withRaw({ ...base(), payload: { fuzz_n: n, "@@RAW0@@": true } }, ['"\\udbff"']), null],
      ["paired_surrogate_escape", () => withRaw({ ...base(), payload: { fuzz_n: n, note: "@@RAW0@@" } }, ['"\\ud83d\\ude00"']), ["new"]],
      ["escaped_field_name", () => withRaw({ ...base(), "@@RAW0@@": "fuzz.escaped" }, ['"\\u0065vent_type"']), ["new"]],
      ["rtl_zero_width_emoji_payload", () => JSON.stringify({ ...base(), payload: { fuzz_n: n, "\u202Ekey": "\u202Eevil\u200B\u200D👨‍👩‍👧‍👦\uFEFF", "😀": "🏳️‍🌈" } }), ["new"]],
      ["rtl_in_aggregate_id", () => JSON.stringify({ ...base(), aggregate_id: `\u202E${n}\u200B` }), null],
      ["emoji_aggregate_id_128_chars", () => JSON.stringify({ ...base(), aggregate_id: "😀".repeat(128) }), null],
      ["ascii_aggregate_id_128", () => JSON.stringify({ ...base(), aggregate_id: `${n}`.padEnd(128, "a") }), ["new"]],
      ["ascii_aggregate_id_129", () => JSON.stringify({ ...base(), aggregate_id: `${n}`.padEnd(129, "a") }), ["validation_failed"]],
      ["event_type_100", () => JSON.stringify({ ...base(), event_type: `fuzz.${"a".repeat(95)}` }), ["new"]],
      ["event_type_101", () => JSON.stringify({ ...base(), event_type: `fuzz.${"a".repeat(96)}` }), ["validation_failed"]],
      ["event_type_unicode", () => JSON.stringify({ ...base(), event_type: "fuzz.créé" }), ["validation_failed"]],
      ["event_type_rtl", () => JSON.stringify({ ...base(), event_type: "fuzz.\u202Ecreated" }), ["validation_failed"]],
      ["event_type_fullwidth", () => JSON.stringify({ ...base(), aggregate_type: "ｆｕｚｚ" }), ["validation_failed"]],
      ["control_in_aggregate_id", () => JSON.stringify({ ...base(), aggregate_id: `4${rng.pick(["\u0001", "\t", "\n", "\u001b", "\u007f", "\u0085", "\u009f"])}2` }), ["validation_failed"]],
      ["control_in_event_type", () => JSON.stringify({ ...base(), event_type: `fuzz${rng.pick(["\u0001", "\t", "\n", "\u007f"])}x` }), ["validation_failed"]],
      ["line_separator_aggregate_id", () => JSON.stringify({ ...base(), aggregate_id: `a\u2028b\u2029${n}` }), null],
      ["overlong_payload_string", () => JSON.stringify({ ...base(), payload: { fuzz_n: n, blob: "ż".repeat(100_000) } }), ["new"]],
      ["control_chars_in_payload", () => JSON.stringify({ ...base(), payload: { fuzz_n: n, c: "\u0001\u0002\u001f\u007f\u0085\b\f" } }), ["new"]],
      ["bom_prefix", () => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8(JSON.stringify(base()))]), null],
      ["invalid_utf8_byte", () => spliceBytes({ ...base(), payload: { fuzz_n: n, note: "@@BYTES@@" } }, [0x61, 0xff, 0x62]), ["invalid_json"]],
      ["overlong_utf8_nul", () => spliceBytes({ ...base(), payload: { fuzz_n: n, note: "@@BYTES@@" } }, [0xc0, 0x80]), ["invalid_json"]],
      ["surrogate_as_utf8", () => spliceBytes({ ...base(), payload: { fuzz_n: n, note: "@@BYTES@@" } }, [0xed, 0xa0, 0x80]), ["invalid_json"]],
      ["utf16le_body", () => Buffer.from(JSON.stringify(base()), "utf16le"), ["invalid_json"]],
    ];
    const [variant, make, expect] = rng.pick(variants);
    return kase(variant, ipai({ body: make(), n }), expect, { replayable: expect?.[0] === "new" });
  },

  calendar(rng, n) {
    // [value, expected]: "new" where Postgres can store it, validation_failed
    // where no such instant exists or the text is not RFC 3339 with an offset.
    const bad = ["validation_failed"];
    const ok = ["new"];
    const values = [
      ["2025-02-29T12:00:00Z", bad], ["1900-02-29T00:00:00Z", bad], ["2024-02-29T12:00:00Z", ok], ["2000-02-29T00:00:00Z", ok],
      ["2026-02-30T00:00:00Z", bad], ["2026-02-31T00:00:00Z", bad], ["2026-04-31T00:00:00Z", bad], ["2026-06-31T10:00:00+02:00", bad],
      ["2026-09-31T00:00:00Z", bad], ["2026-11-31T00:00:00Z", bad], ["2026-00-10T00:00:00Z", bad], ["2026-01-00T00:00:00Z", bad],
      ["0000-01-01T00:00:00Z", bad], ["0001-01-01T00:00:00Z", ok], ["0001-01-01T00:00:00+01:00", ok],
      ["9999-12-31T23:59:59Z", ok], ["9999-12-31T23:59:59-15:00", ok], ["10000-01-01T00:00:00Z", bad], ["-0001-01-01T00:00:00Z", bad],
      ["+2026-01-22T07:26:26Z", bad],
      ["2026-01-22T07:26:26+23:59", bad], ["2026-01-22T07:26:26-23:59", bad], ["2026-01-22T07:26:26+16:00", bad],
      ["2026-01-22T07:26:26-15:00", ok], ["2026-01-22T07:26:26+15:59", ok], ["2026-01-22T07:26:26+14:00", ok],
      ["2026-01-22T07:26:26+24:00", bad], ["2026-01-22T07:26:26+05:60", bad], ["2026-01-22T07:26:26+05:99", bad],
      ["2026-01-22T07:26:26-00:00", ok], ["2026-01-22T07:26:26+0800", bad], ["2026-01-22T07:26:26+08", bad],
      ["2016-12-31T23:59:60Z", null], ["2026-01-22T12:30:60Z", null], ["2026-01-22T07:26:61Z", bad],
      ["2026-01-22T24:00:00Z", bad], ["2026-01-22T23:60:00Z", bad],
      ["2026-01-22t07:26:26z", null], ["2026-01-22T07:26:26z", null], ["2026-01-22 07:26:26Z", ok],
      ["2026-01-22T07:26:26", bad], ["2026-01-22", bad], ["2026-01-22T07:26Z", bad], ["2026-01-22T07:26:26.Z", bad],
      ["2026-01-22T07:26:26Z ", bad], [" 2026-01-22T07:26:26Z", bad], ["2026-01-22T07:26:26UTC", bad], ["2026-01-22T07:26:26 +00:00", bad],
      ["2026-W04-4T07:26:26Z", bad], ["20260122T072626Z", bad], ["yesterday", bad], ["infinity", bad], ["epoch", bad], ["now", bad],
      ["١٩٧٠-01-01T00:00:00Z", bad], ["2026-01-22T07:26:26Z\u0000", bad], ["2026-01-22T07:26:26+é:00", bad],
      ["2026-01-22T07:26:26.1é", bad], ["2026-01-2é07:26:26Z", bad], ["2026-01-22T07:26:2６Z", bad], ["2026-01-22T07:26:26.Ｚ", bad],
    ];
    for (let digits = 1; digits <= 12; digits++) {
      // RFC 3339 allows any number of digits; Postgres rounds to microseconds.
      values.push([`2026-01-22T07:26:26.${"123456789012".slice(0, digits)}Z`, digits <= 9 ? ok : ["new", "validation_failed"]]);
    }
    values.push([1769066785, bad], [1769066785000, bad], [true, bad], [{ at: "2026-01-22T07:26:26Z" }, bad], [null, ok]);
    const [value, expect] = rng.pick(values);
    const event = fuzzEvent(rng, n, { occurred_at: value });
    return kase(`occurred_at=${JSON.stringify(value)}`, ipai({ body: JSON.stringify(event), n }), expect, { replayable: expect?.[0] === "new" });
  },

  odd_numbers(rng, n) {
    const inPayload = [
      ["1e308", ["new"]], ["1e309", null], ["-1e309", null], ["-0", ["new"]], ["-0.0", ["new"]], ["1e-400", null], ["4.9e-324", ["new"]],
      ["9007199254740993", ["new"]], ["18446744073709551616", ["new"]], ["18446744073709551615", ["new"]],
      ["99999999999999999999999", ["new"]], ["-9223372036854775809", ["new"]], ["1" + "0".repeat(400), null],
      ["0.1e1", ["new"]], ["1E+2", ["new"]],
      ["NaN", ["invalid_json"]], ["Infinity", ["invalid_json"]], ["-Infinity", ["invalid_json"]], ["0x10", ["invalid_json"]],
      ["01", ["invalid_json"]], ["1.", ["invalid_json"]], [".5", ["invalid_json"]], ["+1", ["invalid_json"]], ["1e", ["invalid_json"]],
      ["--1", ["invalid_json"]], ["1_000", ["invalid_json"]],
    ];
    const asAggregateId = [
      ["1.5", ["validation_failed"]], ["1.0", ["validation_failed"]], ["1e3", ["validation_failed"]], ["-1", ["new"]], ["0", ["new"]],
      ["-0", null], ["9007199254740993", ["new"]], ["9223372036854775807", ["new"]], ["-9223372036854775808", ["new"]],
      ["18446744073709551615", ["new"]], ["18446744073709551616", ["validation_failed"]], ["99999999999999999999999", ["validation_failed"]],
      ["-9223372036854775809", ["validation_failed"]], ["1e308", ["validation_failed"]], ["1e309", null], ["NaN", ["invalid_json"]],
    ];
    if (rng.chance(0.6)) {
      const [raw, expect] = rng.pick(inPayload);
      const body = jsonWithRaw(fuzzEvent(rng, n, { payload: { fuzz_n: n, value: "@@RAW0@@" } }), [raw]);
      return kase(`payload_value=${raw.slice(0, 30)}`, ipai({ body, n }), expect, { replayable: expect?.[0] === "new" });
    }
    const [raw, expect] = rng.pick(asAggregateId);
    const body = jsonWithRaw(fuzzEvent(rng, n, { aggregate_id: "@@RAW0@@" }), [raw]);
    return kase(`aggregate_id=${raw}`, ipai({ body, n }), expect);
  },

  deep_nesting(rng, n) {
    const depth = rng.pick([50, 100, 126, 127, 128, 129, 200, 1000, 10_000]);
    const kind = rng.pick(["arrays_in_payload", "objects_in_payload", "arrays_as_body", "unclosed_arrays"]);
    let body;
    if (kind === "arrays_in_payload") {
      body = jsonWithRaw(fuzzEvent(rng, n, { payload: { fuzz_n: n, deep: "@@RAW0@@" } }), ["[".repeat(depth) + "]".repeat(depth)]);
    } else if (kind === "objects_in_payload") {
      body = jsonWithRaw(fuzzEvent(rng, n, { payload: { fuzz_n: n, deep: "@@RAW0@@" } }), ['{"a":'.repeat(depth) + "1" + "}".repeat(depth)]);
    } else if (kind === "arrays_as_body") {
      body = "[".repeat(depth) + "]".repeat(depth);
    } else {
      body = "[".repeat(depth);
    }
    // The body object and payload add two levels; serde_json stops at 128.
    let expect = null;
    if (kind === "unclosed_arrays") expect = ["invalid_json"];
    else if (kind === "arrays_as_body") expect = depth <= 100 ? ["validation_failed"] : depth >= 200 ? ["invalid_json"] : null;
    else if (depth <= 100) expect = ["new"];
    else if (depth >= 200) expect = ["invalid_json"];
    return kase(`${kind}_${depth}`, ipai({ body, n }), expect, { replayable: expect?.[0] === "new" });
  },

  duplicate_keys(rng, n) {
    const good = fuzzEvent(rng, n);
    const variants = [
      ["event_type_twice", `{"event_type":"fuzz.first","event_type":${JSON.stringify(good.event_type)},${JSON.stringify(good).slice(1).replace(/"event_type":"[^"]*",/, "")}`],
      ["payload_object_then_string", `${JSON.stringify(good).slice(0, -1)},"payload":"not an object"}`],
      ["payload_string_then_object", `{"payload":"x",${JSON.stringify(good).slice(1)}`],
      ["aggregate_id_bad_then_good", `{"aggregate_id":[],${JSON.stringify(good).slice(1)}`],
      ["aggregate_id_good_then_bad", `${JSON.stringify(good).slice(0, -1)},"aggregate_id":{}}`],
      ["duplicate_inside_payload", jsonWithRaw({ ...good, payload: "@@RAW0@@" }, [`{"fuzz_n":${n},"k":1,"k":2,"k":{"x":null}}`])],
      ["occurred_at_twice", `${JSON.stringify(good).slice(0, -1)},"occurred_at":"2026-02-30T00:00:00Z","occurred_at":"2026-01-22T00:00:00Z"}`],
    ];
    const [variant, body] = rng.pick(variants);
    return kase(variant, ipai({ body, n }), null);
  },

  method_content_type(rng, n) {
    const body = JSON.stringify(fuzzEvent(rng, n));
    const variants = [
      ["GET", { method: "GET", body: null }, ["method_not_allowed"]],
      ["HEAD", { method: "HEAD", body: null }, ["method_not_allowed"]],
      ["PUT", { method: "PUT" }, ["method_not_allowed"]],
      ["DELETE", { method: "DELETE" }, ["method_not_allowed"]],
      ["PATCH", { method: "PATCH" }, ["method_not_allowed"]],
      ["patch_lowercase", { method: "patch" }, ["method_not_allowed"]],
      ["OPTIONS", { method: "OPTIONS" }, ["method_not_allowed"]],
      ["OPTIONS_no_body", { method: "OPTIONS", body: null }, ["method_not_allowed"]],
      ["custom_method", { method: "FUZZ" }, ["method_not_allowed"]],
      ["post_lowercase", { method: "post" }, ["new"]],
      ["no_content_type", { contentType: null }, ["new"]],
      ["text_plain", { contentType: "text/plain" }, ["new"]],
      ["form_urlencoded", { contentType: "application/x-www-form-urlencoded" }, ["new"]],
      ["multipart", { contentType: "multipart/form-data; boundary=xyz" }, ["new"]],
      ["json_utf16_charset", { contentType: "application/json; charset=utf-16" }, ["new"]],
      ["garbage_content_type", { contentType: wireUtf8("ä/ö; ;;=") }, ["new"]],
      ["query_string", { query: "?debug=1&wait=true" }, ["new"]],
      // The function serves "" and "/batch" only.
      ["path_suffix", { query: "/extra/path" }, ["not_found"]],
    ];
    const [variant, opts, expect] = rng.pick(variants);
    return kase(variant, ipai({ body: opts.body === null ? null : body, n, ...opts }), expect, { replayable: expect?.[0] === "new" });
  },

  idempotency_key(rng, n) {
    const body = JSON.stringify(fuzzEvent(rng, n));
    const base = ipaiKey(n, ":");
    const variants = [
      ["empty", "", ["missing_header"]],
      ["spaces_only", "   ", ["missing_header"]],
      ["length_255", base.padEnd(255, "k"), ["new"]],
      ["length_256", base.padEnd(256, "k"), ["invalid_header"]],
      ["length_4096", base.padEnd(4096, "k"), ["invalid_header"]],
      ["inner_space", `${base}a b`, ["invalid_header"]],
      ["inner_tab", `${base}a\tb`, ["invalid_header"]],
      ["non_ascii_latin1", `${base}${wireUtf8("é")}`, ["invalid_header"]],
      ["non_ascii_emoji", `${base}${wireUtf8("😀")}`, ["invalid_header"]],
      ["punctuation", `${base}!"#$%&'()*+,/;<=>?@[\\]^\`{|}~`, ["new"]],
      ["sql_like", `${base}'); drop table x;--`, ["invalid_header"]],
      ["percent_underscore", `${base}%_%_`, ["new"]],
      ["two_headers", `${base}a`, ["invalid_header"]], // fetch joins them: "k1, k2"
    ];
    const [variant, key, expect] = rng.pick(variants);
    const extra = [];
    if (variant === "two_headers") extra.push(["x-idempotency-key", base]);
    return kase(variant, ipai({ body, n, key, extra }), expect, { replayable: expect?.[0] === "new" });
  },

  correlation_id(rng, n) {
    const body = JSON.stringify(fuzzEvent(rng, n));
    const variants = [
      ["valid_128", `c${n}-`.padEnd(128, "x")],
      ["too_long_129", `c${n}-`.padEnd(129, "x")],
      ["with_space", "a b"],
      ["with_slash", "../../etc/passwd"],
      ["json_breaker", '"},"ok":true,"x":{"'],
      ["latin1", wireUtf8("corrélation")],
      ["emoji", wireUtf8("😀")],
      ["empty", ""],
      ["colons_dots", "odoo:42.x_y-z"],
      ["uuid_upper", "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"],
      ["tab_inside", "a\tb"],
    ];
    const [variant, cid] = rng.pick(variants);
    return kase(variant, ipai({ body, n, extra: [["x-correlation-id", cid]] }), ["new"], { correlation: cid, replayable: true });
  },

  standard_webhooks(rng, n) {
    const body = JSON.stringify(fuzzEvent(rng, n));
    const otherSecret = `whsec_${Buffer.from(rng.string(32)).toString("base64")}`;
    const variants = [
      ["valid", {}, ["new"]],
      ["two_signatures_first_bad", { signature: (g) => `v1,bm90IGl0 ${g}`, validSig: true }, ["new"]],
      ["two_signatures_second_bad", { signature: (g) => `${g} v1,AAAA`, validSig: true }, ["new"]],
      ["good_plus_v2", { signature: (g) => `${g} v2,${g.slice(3)}`, validSig: true }, ["new"]],
      ["only_v2", { signature: (g) => `v2,${g.slice(3)}` }, ["invalid_header"]],
      ["v1a_prefix", { signature: (g) => `v1a,${g.slice(3)}` }, ["invalid_header"]],
      ["v1_uppercase", { signature: (g) => `V1,${g.slice(3)}` }, ["invalid_header"]],
      ["comma_separated", { signature: (g) => `${g},${g}` }, null],
      ["base64url", { signature: (g) => g.replaceAll("+", "-").replaceAll("/", "_") }, null],
      ["no_padding", { signature: (g) => g.replace(/=+$/, "") }, null],
      ["all_bad", { signature: "v1,AAAA v1,bm90IGl0" }, ["invalid_signature"]],
      ["not_base64", { signature: "v1,!!!" }, ["invalid_header"]],
      ["wrong_secret", { secret: otherSecret }, ["invalid_signature"]],
      ["secret_string_as_key", { signature: (g, id, ts, b) => `v1,${createHmac("sha256", env.ODOO_WEBHOOK_STANDARD_SECRET).update(`${id}.${ts}.`).update(b).digest("base64")}` }, ["invalid_signature"]],
      ["signed_other_id", { signature: (g, id, ts, b) => standardSign(env.ODOO_WEBHOOK_STANDARD_SECRET, `${id}x`, ts, b) }, ["invalid_signature"]],
      ["signed_other_timestamp", { signature: (g, id, ts, b) => standardSign(env.ODOO_WEBHOOK_STANDARD_SECRET, id, String(Number(ts) + 1), b) }, ["invalid_signature"]],
      ["bit_flip", { signature: (g) => `v1,${Buffer.from(g.slice(3), "base64").map((x, i) => (i === 5 ? x ^ 1 : x)).toString("base64")}` }, ["invalid_signature"]],
      ["inside_past_295s", { tsOffsetS: -295 }, ["new"]],
      ["outside_past_305s", { tsOffsetS: -305 }, ["timestamp_out_of_window"]],
      ["outside_future_305s", { tsOffsetS: 305 }, ["timestamp_out_of_window"]],
      ["timestamp_in_ms", { tsRaw: String(Date.now()) }, ["timestamp_out_of_window"]],
      ["timestamp_non_digit", { tsRaw: "soon" }, ["invalid_header"]],
      ["timestamp_negative", { tsRaw: "-5" }, ["invalid_header"]],
      ["timestamp_empty", { tsRaw: "" }, ["missing_header"]],
      ["id_255", { id: stdId(n, "_").padEnd(255, "i") }, ["new"]],
      ["id_256", { id: stdId(n, "_").padEnd(256, "i") }, ["invalid_header"]],
      ["id_with_space", { id: stdId(n, " x") }, ["invalid_header"]],
      ["id_non_ascii", { id: stdId(n, wireUtf8("é")) }, ["invalid_header"]],
      ["id_empty", { id: "" }, ["missing_header"]],
      ["only_signature_header", { omit: ["id", "ts"] }, ["missing_header"]],
      ["only_id_header", { omit: ["ts", "sig"] }, ["missing_header"]],
      ["without_signature", { omit: ["sig"] }, ["missing_header"]],
      ["with_garbage_ipai_headers", { extra: [["x-ipai-timestamp", "x"], ["x-ipai-signature", "y"], ["x-idempotency-key", ipaiKey(n)]] }, ["new"]],
    ];
    const [variant, opts, expect] = rng.pick(variants);
    return kase(variant, standard({ body, n, ...opts }), expect, { replayableStd: expect?.[0] === "new" });
  },

  /** Re-sends or reuses an earlier request that should have been accepted. */
  replay(rng, n, history) {
    const useStd = history.std.length > 0 && rng.chance(0.25);
    const pool = useStd ? history.std : history.ipai;
    if (pool.length === 0) return { ...WEBHOOK_CLASSES.valid(rng, n), cls: "valid" };
    const original = rng.pick(pool.slice(-50)); // recent ones, still inside the window
    const variants = useStd
      ? ["exact", "same_id_other_body"]
      : ["exact", "exact", "new_key", "same_key_other_body", "same_key_resigned"];
    const variant = rng.pick(variants);
    const otherBody = JSON.stringify(fuzzEvent(rng, n));
    return {
      variant: `${useStd ? "standard_" : ""}${variant}_of_${original}`,
      scheme: useStd ? "standard" : "ipai",
      signedFresh: true,
      dependsOn: original,
      expect: null, // decided at send time, from what the original got
      build(now, results) {
        const orig = results[original];
        const accepted = orig?.outcome === "new" || orig?.outcome === "dup";
        const sent = orig.request;
        const header = (name) => sent.headers.find(([h]) => h === name)?.[1];
        const replace = (headers, name, value) => headers.map(([h, v]) => [h, h === name ? value : v]);
        if (variant === "exact") {
          return { request: { ...sent }, expect: accepted ? ["dup"] : null };
        }
        if (variant === "new_key") {
          // The same MAC under another key: a captured request re-sent.
          const headers = replace(sent.headers, "x-idempotency-key", ipaiKey(n));
          const stillFresh = Math.abs(now - Number(header("x-ipai-timestamp"))) < TOLERANCE_MS - 5000;
          return { request: { ...sent, headers }, expect: accepted && stillFresh ? ["replayed_request"] : null };
        }
        if (variant === "same_key_resigned") {
          const ts = String(now + 1);
          const headers = replace(replace(sent.headers, "x-ipai-timestamp", ts), "x-ipai-signature", hmacHex(env.ODOO_WEBHOOK_SECRET, ts, sent.body));
          return { request: { ...sent, headers }, expect: accepted ? ["dup"] : null };
        }
        if (variant === "same_key_other_body") {
          const ts = String(now);
          const body = utf8(otherBody);
          const headers = replace(replace(sent.headers, "x-ipai-timestamp", ts), "x-ipai-signature", hmacHex(env.ODOO_WEBHOOK_SECRET, ts, body));
          return { request: { ...sent, headers, body }, expect: accepted ? ["idempotency_conflict"] : null };
        }
        // same_id_other_body (Standard Webhooks): a new, valid signature over another event under the same id.
        const id = header("webhook-id");
        const ts = String(Math.floor(now / 1000));
        const body = utf8(otherBody);
        const headers = replace(replace(sent.headers, "webhook-timestamp", ts), "webhook-signature", standardSign(env.ODOO_WEBHOOK_STANDARD_SECRET, id, ts, body));
        return { request: { ...sent, headers, body }, expect: accepted ? ["idempotency_conflict"] : null };
      },
    };
  },
};

// Weights: roughly half the requests are correctly signed with a fresh
// timestamp, so they reach the body validation and the database.
const WEBHOOK_WEIGHTS = [
  [7, "valid"], [3, "valid_standard"], [8, "forged_signature"], [6, "timestamp"], [2, "missing_headers"],
  [5, "truncated_body"], [2, "oversized"], [8, "wrong_types"], [4, "missing_fields"], [10, "odd_unicode"],
  [10, "calendar"], [7, "odd_numbers"], [4, "deep_nesting"], [3, "duplicate_keys"], [5, "method_content_type"],
  [5, "idempotency_key"], [3, "correlation_id"], [8, "standard_webhooks"], [4, "replay"],
];

function webhookSpecs(count) {
  const rng = makeRng(streamSeed(1));
  const history = { ipai: [], std: [] };
  const specs = [];
  for (let n = 0; n < count; n++) {
    const cls = rng.weighted(WEBHOOK_WEIGHTS);
    const spec = WEBHOOK_CLASSES[cls](rng, n, history);
    spec.n = n;
    spec.cls ??= cls;
    specs.push(spec);
    if (spec.replayable && spec.scheme === "ipai" && spec.expect?.[0] === "new") history.ipai.push(n);
    if (spec.replayableStd && spec.scheme === "standard") history.std.push(n);
  }
  return specs;
}

// ----------------------------------------------------- outbox-router classes

const SERVICE_BEARER = () => `Bearer ${env.SERVICE_ROLE_KEY}`;
// 401 unauthorized / 403 forbidden from the function; the gateway's own codes if it checks JWTs.
const AUTH_FAILED = ["unauthorized", "forbidden", "missing_authorization", "invalid_jwt"];

/** A router request; `auth`: "service", "token", null (none) or a literal header value. */
function router(opts) {
  const { method = "POST", auth = "service", body = "{}", query = "", contentType = "application/json", extra = [] } = opts;
  const bytes = body === null ? null : Buffer.isBuffer(body) ? body : utf8(body);
  const authorization = auth === "service" ? SERVICE_BEARER() : auth === "token" ? `Bearer ${INVOCATION_TOKEN}` : auth;
  return {
    scheme: "router",
    routerAuth: auth,
    runs: predictRouterRun({ method, auth, bytes, query }),
    build() {
      const headers = [];
      if (contentType !== null) headers.push(["content-type", contentType]);
      if (authorization !== null) headers.push(["authorization", authorization]);
      headers.push(...extra);
      return { method, url: ROUTER_URL + query, headers, body: bytes, stream: false };
    },
  };
}

/**
 * Whether the router would start a delivery run for this request (mirrors the
 * contract: service role bearer, POST, body <= 4 KiB that is empty or an object
 * with a-z0-9_ reason, query only wait=true|false). Used only to bound how many
 * runs the fuzz starts; erring towards "runs" is safe.
 */
function predictRouterRun({ method, auth, bytes, query }) {
  // Any spelling of "Bearer <key>" counts: whether "BEARER" or extra spaces pass is the function's call.
  const token = typeof auth === "string" && /^bearer /i.test(auth) ? auth.slice(7).trim() : null;
  const authorized = auth === "service" || (auth === "token" && INVOCATION_TOKEN) ||
    (token !== null && (token === env.SERVICE_ROLE_KEY || (INVOCATION_TOKEN && token === INVOCATION_TOKEN)));
  if (!authorized || method.toUpperCase() !== "POST") return false;
  if (bytes && bytes.length > MAX_ROUTER_BODY) return false;
  const text = bytes ? bytes.toString("utf8") : "";
  if (text.trim() !== "" || (bytes && /[^\t\n\f\r ]/.test(bytes.toString("latin1")))) {
    let value;
    try {
      value = JSON.parse(text);
    } catch {
      return false;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
    if ("reason" in value && !(typeof value.reason === "string" && /^[a-z0-9_]{1,32}$/.test(value.reason))) return false;
  }
  if (query && !query.startsWith("?")) return false;
  // Decoded as a form, as the router does; at most one wait=true|false.
  const params = [...new URLSearchParams(query)];
  if (params.some(([k, v]) => k !== "wait" || !["true", "false"].includes(v))) return false;
  if (params.length > 1) return "wait"; // whichever it picks, count it as the costly kind
  return params.length === 1 && params[0][1] === "true" ? "wait" : "background";
}

const ROUTER_CLASSES = {
  valid(rng) {
    const body = rng.pick(['{"reason":"manual"}', "{}", "", "  \n", '{"reason":"fuzz"}', '{"reason":"a_b"}', `{"reason":"${"z".repeat(32)}"}`, '{"reason":"insert","extra":[1,2]}']);
    const auth = INVOCATION_TOKEN && rng.chance(0.5) ? "token" : "service";
    const wait = rng.chance(0.1);
    return kase(`${auth}${wait ? "_wait" : ""}`, router({ body, auth, query: wait ? "?wait=true" : "" }), wait ? ["ran"] : ["accepted"]);
  },

  auth(rng) {
    const now = Math.floor(Date.now() / 1000);
    const flip = (token) => token.slice(0, -2) + (token.at(-2) === "A" ? "B" : "A") + token.at(-1);
    const variants = [
      ["none", null],
      ["empty", ""],
      ["bearer_only", "Bearer"],
      ["bearer_space", "Bearer  "],
      ["garbled", `Bearer ${rng.string(40)}`],
      ["three_garbled_parts", `Bearer ${rng.string(10)}.${rng.string(10)}.${rng.string(10)}`],
      ["anon_key", `Bearer ${env.ANON_KEY}`],
      ["service_key_flipped_signature", `Bearer ${flip(env.SERVICE_ROLE_KEY)}`],
      ["service_key_truncated", `Bearer ${env.SERVICE_ROLE_KEY.slice(0, -5)}`],
      ["expired_service_role_jwt", `Bearer ${jwt({ role: "service_role", iss: "supabase-demo", exp: now - 60 })}`],
      ["expired_long_ago", `Bearer ${jwt({ role: "service_role", exp: 1 })}`],
      ["fresh_service_role_jwt_not_the_key", `Bearer ${jwt({ role: "service_role", iss: "fuzz", exp: now + 600 })}`],
      ["authenticated_jwt", `Bearer ${jwt({ role: "authenticated", sub: "x", exp: now + 600 })}`],
      ["postgres_role_jwt", `Bearer ${jwt({ role: "postgres", exp: now + 600 })}`],
      ["no_role_jwt", `Bearer ${jwt({ exp: now + 600 })}`],
      ["wrong_secret_jwt", `Bearer ${jwt({ role: "service_role", exp: now + 600 }, { secret: "not-the-secret-at-all-not-at-all!" })}`],
      ["alg_none", `Bearer ${b64url('{"alg":"none","typ":"JWT"}')}.${b64url('{"role":"service_role"}')}.`],
      ["alg_hs512_header", `Bearer ${jwt({ role: "service_role", exp: now + 600 }, { header: { alg: "HS512" } })}`],
      ["jwt_header_null", `Bearer ${jwt({ role: "service_role", exp: now + 600 }, { rawHeader: b64url("null") })}`],
      ["jwt_header_not_json", `Bearer ${b64url("{{{")}.${b64url("{}")}.sig`],
      ["jwt_claims_null_bad_sig", `Bearer ${b64url('{"alg":"HS256"}')}.${b64url("null")}.AAAA`],
      ["basic_scheme", `Basic ${Buffer.from(`service_role:${"x".repeat(8)}`).toString("base64")}`],
      ["BEARER_uppercase", `BEARER ${env.SERVICE_ROLE_KEY}`],
      ["double_space", `Bearer  ${env.SERVICE_ROLE_KEY}`],
      ["two_authorization_headers", "two"],
      ["key_without_scheme", env.SERVICE_ROLE_KEY],
      ["huge_token", `Bearer ${"a".repeat(16_000)}`],
      ["latin1_token", `Bearer ${wireUtf8("ünïcödé.tøken.sig")}`],
      ["apikey_header_only", "apikey"],
      ["token_in_query", "query"],
    ];
    if (INVOCATION_TOKEN) {
      variants.push(["invocation_token_flipped", `Bearer ${flip(INVOCATION_TOKEN)}`], ["invocation_token_without_scheme", INVOCATION_TOKEN]);
    }
    const [variant, value] = rng.pick(variants);
    if (value === "two") {
      return kase(variant, router({ auth: SERVICE_BEARER(), extra: [["authorization", SERVICE_BEARER()]] }), AUTH_FAILED);
    }
    if (value === "apikey") return kase(variant, router({ auth: null, extra: [["apikey", env.SERVICE_ROLE_KEY]] }), AUTH_FAILED);
    if (value === "query") return kase(variant, router({ auth: null, query: `?apikey=${env.ANON_KEY}` }), AUTH_FAILED);
    // Case and spacing of the scheme are lenient by RFC 7235; either answer is fine.
    const lenient = ["BEARER_uppercase", "double_space"].includes(variant);
    return kase(variant, router({ auth: value }), lenient ? [...AUTH_FAILED, "accepted"] : AUTH_FAILED);
  },

  method(rng) {
    const [variant, method, body] = rng.pick([
      ["GET", "GET", null], ["HEAD", "HEAD", null], ["PUT", "PUT", "{}"], ["DELETE", "DELETE", "{}"], ["PATCH", "PATCH", "{}"],
      ["OPTIONS", "OPTIONS", null], ["patch_lowercase", "patch", "{}"], ["custom", "FUZZ", "{}"],
    ]);
    const auth = rng.chance(0.8) ? "service" : null;
    // Unauthenticated, either refusal is fine: the method is checked first and reveals nothing.
    return kase(`${variant}${auth ? "" : "_unauthenticated"}`, router({ method, body, auth }), auth ? ["method_not_allowed"] : [...AUTH_FAILED, "method_not_allowed"]);
  },

  not_json(rng) {
    const body = rng.pick(["{", "}", "{reason:manual}", "{'reason':'manual'}", "reason=manual", "NaN", "[1,]", '{"reason":"manual",}',
      '{"reason":"manual"} x', "\u0000", '{"reason":"\\ud800"}', "undefined", "{}{}", "\"unterminated"]);
    return kase(`body=${JSON.stringify(body).slice(0, 30)}`, router({ body }), ["invalid_json"]);
  },

  not_object(rng) {
    const body = rng.pick(["[]", '["manual"]', '"manual"', "42", "-1.5e300", "null", "true", "false", "[{}]"]);
    return kase(`body=${body}`, router({ body }), ["validation_failed"]);
  },

  reason(rng) {
    const [variant, raw] = rng.pick([
      ["number", "7"], ["null", "null"], ["true", "true"], ["array", '["manual"]'], ["object", '{"a":"manual"}'],
      ["empty", '""'], ["too_long_33", `"${"a".repeat(33)}"`], ["huge", `"${"a".repeat(4000)}"`], ["uppercase", '"Manual"'],
      ["plus", '"manual+1"'], ["space", '"two words"'], ["dash", '"hand-off"'], ["sql", `"manual'; drop table x;--"`],
      ["unicode", '"réason"'], ["emoji", '"😀"'], ["rtl", '"\u202emanual"'], ["zero_width", '"manual\u200b"'],
      ["nul_escape", '"man\\u0000ual"'], ["newline", '"manual\\n"'], ["fullwidth", '"ｍａｎｕａｌ"'], ["dotted", '"manual.run"'],
    ]);
    return kase(variant, router({ body: `{"reason":${raw}}` }), ["validation_failed"]);
  },

  query(rng) {
    const [variant, query] = rng.pick([
      ["unknown_param", "?batch=1000"], ["wait_TRUE", "?wait=TRUE"], ["wait_1", "?wait=1"], ["wait_yes", "?wait=yes"],
      ["wait_bare", "?wait"], ["wait_empty", "?wait="], ["wait_space", "?wait=true%20"], ["wait_twice", "?wait=true&wait=false"],
      ["wait_and_unknown", "?wait=true&debug=1"], ["semicolon", "?wait=true;x"], ["repeated_key_other", "?wait=true&wait=maybe"],
      ["unicode", `?${encodeURIComponent("wäit")}=true`], ["only_ampersand_then_bad", "?&x"], ["plus_space", "?wait=true+"],
      ["long", `?${"a".repeat(2000)}=1`], ["lease", "?lease_seconds=1"], ["worker", "?worker=evil"],
      ["wait_encoded", "?wait=%74rue"], ["wait_false_encoded", "?%77ait=false"],
    ]);
    // Percent-encoded, a valid query is still valid: refusing or running are both fine.
    const expect = variant === "wait_encoded" ? ["validation_failed", "ran"] : variant === "wait_false_encoded" ? ["validation_failed", "accepted"] : ["validation_failed"];
    return kase(variant, router({ query }), expect);
  },

  oversized(rng) {
    const [variant, body, expect] = rng.pick([
      ["4097_spaces", " ".repeat(4097), ["payload_too_large"]],
      ["reason_5000", JSON.stringify({ reason: "x".repeat(5000) }), ["payload_too_large"]],
      ["padding_4097", `{"reason":"manual"}${" ".repeat(4097 - 19)}`, ["payload_too_large"]],
      ["1MiB", JSON.stringify({ junk: "y".repeat(1024 * 1024) }), ["payload_too_large", "closed"]],
      ["4096_invalid_json", "{".repeat(4096), ["invalid_json"]],
    ]);
    return kase(variant, router({ body }), expect);
  },

  unicode(rng) {
    const [variant, body, expect] = rng.pick([
      ["nul_key", '{"\\u0000":1}', ["accepted"]],
      ["lone_surrogate_key", '{"\\ud800":1}', null],
      ["emoji_key", '{"😀":"🏳️‍🌈"}', ["accepted"]],
      ["bom_prefix", "\ufeff{}", null],
      ["invalid_utf8", Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), ["invalid_json"]],
      ["utf16le", Buffer.from('{"reason":"manual"}', "utf16le"), ["invalid_json"]],
      ["nul_bytes_only", Buffer.alloc(16), ["invalid_json"]],
      ["duplicate_reason_last_bad", '{"reason":"manual","reason":"DROP"}', ["validation_failed"]],
      ["duplicate_reason_last_good", '{"reason":"DROP","reason":"manual"}', null],
      ["deep_nesting_200", `{"x":${"[".repeat(200)}${"]".repeat(200)}}`, ["invalid_json"]],
      ["nbsp_whitespace_body", "\u00a0", ["invalid_json"]],
      ["vertical_tab_body", "\u000b", ["invalid_json"]],
    ]);
    return kase(variant, router({ body }), expect);
  },

  content_type(rng) {
    const contentType = rng.pick([null, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", wireUtf8("ä/ö")]);
    return kase(`content_type=${contentType}`, router({ contentType, body: '{"reason":"manual"}' }), ["accepted"]);
  },

  correlation_id(rng) {
    const cid = rng.pick(["r-valid-1", "x".repeat(128), "x".repeat(129), "a b", wireUtf8("ß"), '"}', ""]);
    return kase(`cid=${cid.slice(0, 12)}${cid.length > 12 ? "…" : ""}`, router({ extra: [["x-correlation-id", cid]], body: '{"reason":"bogus!"}' }), ["validation_failed"], { correlation: cid });
  },
};

const ROUTER_WEIGHTS = [
  [3, "valid"], [25, "auth"], [10, "method"], [10, "not_json"], [8, "not_object"], [12, "reason"], [10, "query"],
  [4, "oversized"], [8, "unicode"], [2, "content_type"], [4, "correlation_id"],
];

function routerSpecs(count) {
  const rng = makeRng(streamSeed(2));
  const specs = [];
  let runs = 0;
  let waits = 0;
  for (let n = 0; n < count; n++) {
    let spec;
    // Redraw while the run budget is spent (deterministic: only the PRNG decides).
    for (let attempt = 0; ; attempt++) {
      const cls = rng.weighted(ROUTER_WEIGHTS);
      spec = ROUTER_CLASSES[cls](rng, n);
      spec.cls = cls;
      if (!spec.runs) break;
      if (runs < ROUTER_RUN_BUDGET && (spec.runs !== "wait" || waits < ROUTER_WAIT_BUDGET)) {
        runs++;
        if (spec.runs === "wait") waits++;
        break;
      }
      assert.ok(attempt < 1000, "the router generator cannot find a case outside the run budget");
    }
    spec.n = n;
    specs.push(spec);
  }
  return specs;
}

// ------------------------------------------------------------------ sending

const STATUS_OF_CODE = {
  method_not_allowed: 405, payload_too_large: 413, missing_header: 400, invalid_header: 400, invalid_json: 400,
  timestamp_out_of_window: 401, invalid_signature: 401, unauthorized: 401, forbidden: 403, validation_failed: 422,
  idempotency_conflict: 409, replayed_request: 409, stale_lease: 409, upstream_unavailable: 503, server_misconfigured: 500, internal_error: 500,
  not_found: 404,
};
// Answers of the local gateway (scripts/local/gateway.js), which has no correlation id.
const GATEWAY_CODES = new Set(["missing_authorization", "invalid_jwt", "function_not_found"]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const validCorrelation = (id) => /^[A-Za-z0-9._:-]{1,128}$/.test(id.trim());

function isConnectionError(error) {
  const code = error?.cause?.code ?? error?.code;
  return ["ECONNREFUSED", "ECONNRESET", "UND_ERR_SOCKET", "EPIPE", "UND_ERR_CLOSED"].includes(code);
}

async function sendOnce(request) {
  const body = request.body === null ? undefined
    : request.stream ? streamOf(request.body) : request.body;
  const response = await fetch(request.url, {
    method: request.method,
    headers: request.headers,
    body,
    duplex: request.stream ? "half" : undefined,
    redirect: "manual",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text };
}

/** A body sent chunked, without content-length, in two pieces. */
function streamOf(bytes) {
  const half = Math.floor(bytes.length / 2);
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes.subarray(0, half));
      controller.enqueue(bytes.subarray(half));
      controller.close();
    },
  });
}

/** Sends the cases, CONCURRENCY at a time; replays wait for their original. */
async function runCases(specs) {
  const results = new Array(specs.length);
  const finished = specs.map(() => {
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    return { promise, resolve };
  });
  let next = 0;
  retryBudget = TRANSIENT_RETRY_BUDGET;
  async function worker() {
    while (next < specs.length) {
      const i = next++;
      const spec = specs[i];
      // FUZZ_ONLY: send only the listed cases (a replay needs its original listed too).
      if (ONLY && (!ONLY.has(i) || (spec.dependsOn !== undefined && !ONLY.has(spec.dependsOn)))) {
        results[i] = { skipped: true };
        finished[i].resolve();
        continue;
      }
      if (spec.dependsOn !== undefined) await finished[spec.dependsOn].promise;
      results[i] = await runCase(spec, results);
      results[i].skipped = false;
      finished[i].resolve();
    }
  }
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { results, seconds: (performance.now() - started) / 1000 };
}

let retryBudget = TRANSIENT_RETRY_BUDGET;

async function runCase(spec, results) {
  let answer;
  let error;
  let request;
  let expect = spec.expect;
  let retries = 0;
  const retryReasons = [];
  let sentAt;
  const deadline = Date.now() + TRANSIENT_RETRY_MS;
  for (;;) {
    sentAt = Date.now();
    const built = spec.build(sentAt, results);
    request = built.request ?? built;
    if (built.expect !== undefined) expect = built.expect;
    try {
      answer = await sendOnce(request);
      error = undefined;
    } catch (e) {
      answer = undefined;
      error = e;
    }
    const big = request.body !== null && request.body.length >= 1024 * 1024;
    const transient = answer ? answer.status === 503 && /"upstream_unavailable"/.test(answer.text) : isConnectionError(error) && !big;
    if (!transient || Date.now() > deadline || retryBudget <= 0) break;
    retryBudget--;
    retries++;
    retryReasons.push(answer ? `${answer.status} upstream_unavailable` : String(error?.cause?.code ?? error?.message));
    await new Promise((r) => setTimeout(r, 1000));
  }
  const result = { request, expect, retries, retryReasons, sentAt };
  if (!answer) {
    result.error = `${error?.name}: ${error?.message}${error?.cause ? ` (${error.cause.code ?? error.cause.message})` : ""}`;
    // A large upload cut off after the server answered (and closed) is not a failure of the function.
    result.outcome = isConnectionError(error) && request.body?.length >= 1024 * 1024 ? "closed" : "no_answer";
    return result;
  }
  result.status = answer.status;
  result.text = answer.text;
  result.correlationHeader = answer.headers.get("x-correlation-id");
  result.contentType = answer.headers.get("content-type");
  result.allow = answer.headers.get("allow");
  try {
    result.json = JSON.parse(answer.text);
  } catch {
    result.json = undefined;
  }
  result.outcome = outcomeOf(result);
  return result;
}

/**
 * workerd itself answers "501 ERROR: Unrecognized request method." in plain
 * text to methods it does not know (FUZZ, a lowercase "patch"); the request
 * never reaches the gateway or the function, so nothing here can answer with
 * the envelope. Tolerated, and counted in the summary.
 */
const STANDARD_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];
function runtimeRefusal(result) {
  const method = result.request.method;
  const nonStandard = !STANDARD_METHODS.includes(method) && !["get", "head", "post", "put", "delete", "options"].includes(method);
  return nonStandard && result.status === 501 && /^ERROR: Unrecognized request method/.test(result.text ?? "");
}

function outcomeOf(result) {
  const { status, json } = result;
  if (status === 200 && json?.ok === true && typeof json.duplicate === "boolean") return json.duplicate ? "dup" : "new";
  if (status === 200 && json?.ok === true && json.summary) return "ran";
  if (status === 202 && json?.ok === true) return "accepted";
  if (typeof json?.error?.code === "string") return json.error.code;
  return `http_${status}`;
}

// --------------------------------------------------------------- checking

/** Every problem with one answer, as short strings (empty when fine). */
function problemsOf(fn, spec, result) {
  const problems = [];
  if (result.outcome === "no_answer") return [`no answer: ${result.error}`];
  if (result.outcome === "closed") return result.expect?.includes("closed") ? [] : [`connection closed: ${result.error}`];
  if (runtimeRefusal(result)) return [];
  const { status, json, request } = result;
  if (status >= 500) problems.push(`${status} server error`);
  const head = request.method.toUpperCase() === "HEAD";
  const gateway = !result.correlationHeader && GATEWAY_CODES.has(json?.error?.code);
  if (head) {
    // A HEAD answer has no body; the status and headers still say it.
    const want405 = result.expect?.length === 1 && result.expect[0] === "method_not_allowed";
    if (want405 && status !== 405) problems.push(`HEAD answered ${status}, expected 405`);
    if (!(status >= 400 && status < 500)) problems.push(`HEAD answered ${status}`);
    if (want405 && result.allow !== "POST") problems.push(`405 without Allow: POST (got ${result.allow})`);
    if (result.text !== "") problems.push("HEAD answer has a body");
  } else if (json === undefined) {
    problems.push(`not JSON (content-type ${result.contentType})`);
  } else if (status === 200 || status === 202) {
    const okStatuses = fn === "odoo-webhook" ? [200] : [200, 202];
    if (!okStatuses.includes(status)) problems.push(`success status ${status} is not one of ${okStatuses}`);
    if (json.ok !== true) problems.push("success without ok:true");
    if (fn === "odoo-webhook" && !UUID.test(json.event_id ?? "")) problems.push("success without an event_id");
    if (json.correlation_id !== result.correlationHeader) problems.push("body correlation_id differs from the x-correlation-id header");
  } else if (status >= 400 && status < 500) {
    const e = json.error;
    if (json.ok !== false || typeof e?.code !== "string" || typeof e?.message !== "string") problems.push("4xx without the error envelope");
    else if (gateway) {
      if (STRICT_GATEWAY) problems.push("gateway answer without correlation_id");
    } else {
      if (typeof json.correlation_id !== "string" || json.correlation_id === "") problems.push("envelope without correlation_id");
      else if (json.correlation_id !== result.correlationHeader) problems.push("body correlation_id differs from the x-correlation-id header");
      if (STATUS_OF_CODE[e.code] !== undefined && STATUS_OF_CODE[e.code] !== status) problems.push(`code ${e.code} with status ${status}, documented ${STATUS_OF_CODE[e.code]}`);
      if (STATUS_OF_CODE[e.code] === undefined) problems.push(`undocumented code ${e.code}`);
      if (e.code === "method_not_allowed" && result.allow !== "POST") problems.push(`405 without Allow: POST (got ${result.allow})`);
    }
  } else if (status < 500) {
    problems.push(`unexpected status ${status}`);
  }
  if (!head && !gateway && json !== undefined && !/^application\/json/.test(result.contentType ?? "")) problems.push(`content-type ${result.contentType}`);
  if (secrets().some((secret) => secret && result.text.includes(secret))) problems.push("a secret appears in the answer");
  // Correlation ids: a sane caller id is echoed, anything else replaced by a UUID.
  if (spec.correlation !== undefined && result.correlationHeader) {
    const sent = spec.correlation.trim();
    if (validCorrelation(sent) && result.correlationHeader !== sent) problems.push(`valid correlation id not echoed (got ${result.correlationHeader})`);
    if (!validCorrelation(sent) && !UUID_V4.test(result.correlationHeader)) problems.push(`invalid correlation id not replaced (got ${result.correlationHeader.slice(0, 40)})`);
  }
  // The outcomes we are sure of: forged or stale requests are refused, valid events accepted.
  const expect = result.expect;
  if (expect && status < 500 && !head) {
    const got = result.outcome;
    const matches = expect.includes(got) || (expect.includes("4xx") && status >= 400 && status < 500);
    if (!matches) problems.push(`expected ${expect.join("|")}, got ${got}`);
  }
  return problems;
}

const SECRETS = () => [
  [env.SERVICE_ROLE_KEY, "<SERVICE_ROLE_KEY>"], [env.ANON_KEY, "<ANON_KEY>"], [INVOCATION_TOKEN, "<INVOCATION_TOKEN>"],
  [env.ODOO_WEBHOOK_SECRET, "<ODOO_WEBHOOK_SECRET>"], [env.ODOO_WEBHOOK_STANDARD_SECRET, "<STANDARD_SECRET>"],
].filter(([s]) => s);

function redact(text) {
  let out = text;
  for (const [secret, name] of SECRETS()) out = out.split(secret).join(name);
  return out;
}

/** One request, compactly: method, path, a short header summary, the first 200 characters of the body. */
function describe(spec, result) {
  const r = result.request;
  const headers = r.headers
    .map(([name, value]) => {
      let v = redact(String(value));
      if (name === "x-ipai-timestamp" && /^\d{10,16}$/.test(v)) v = `${v}(now${signed(Number(v) - (result.sentAt ?? Date.now()))}ms)`;
      return `${name}=${JSON.stringify(v.length > 48 ? `${v.slice(0, 45)}…(${v.length})` : v)}`;
    })
    .join(" ");
  const body = r.body === null ? "(none)" : `(${r.body.length} B${r.stream ? ", chunked" : ""}) ${JSON.stringify(r.body.toString("utf8").slice(0, 200))}`;
  const path = new URL(r.url).pathname.replace("/functions/v1", "") + new URL(r.url).search;
  return `#${spec.n} ${spec.cls}/${spec.variant}: ${r.method} ${path} ${headers} body${body}`;
}
const signed = (x) => (x >= 0 ? `+${x}` : `${x}`);

function answerText(result) {
  if (result.status === undefined) return result.error;
  return `${result.status} ${redact(result.text).slice(0, 400) || "(empty body)"}`;
}

/** Groups problems by (class, status, code) with up to 3 reproducible examples each. */
function failureReport(fn, specs, results, seconds) {
  const groups = new Map();
  let total = 0;
  specs.forEach((spec, i) => {
    const result = results[i];
    if (result.skipped) return;
    const problems = problemsOf(fn, spec, result);
    if (problems.length === 0) return;
    total++;
    const key = `${spec.cls} | ${result.status ?? "-"} ${result.outcome}`;
    const group = groups.get(key) ?? { count: 0, problems: new Set(), examples: [] };
    group.count++;
    problems.forEach((p) => group.problems.add(p));
    if (group.examples.length < 3) group.examples.push(`    ${describe(spec, result)}\n      -> ${answerText(result)}`);
    groups.set(key, group);
  });
  if (total === 0) return { total, text: "" };
  const lines = [`${SEED_TAG} ${fn}: ${total} of ${results.filter((r) => !r.skipped).length} answers failed the checks (${seconds.toFixed(1)} s).`,
    `Replay: FUZZ_SEED=${SEED} FUZZ_COUNT=${COUNT} node --test tests/e2e/fuzz.test.mjs (FUZZ_ONLY=<#n,...> to send only some)`];
  for (const [key, group] of [...groups].sort((a, b) => b[1].count - a[1].count)) {
    lines.push(`  [${key}] x${group.count}: ${[...group.problems].join("; ")}`);
    lines.push(...group.examples);
  }
  return { total, text: lines.join("\n") };
}

function dump(fn, specs, results) {
  if (!DUMP) return;
  const lines = specs.map((spec, i) => {
    const r = results[i];
    if (r.skipped) return null;
    return JSON.stringify({ fn, n: spec.n, cls: spec.cls, variant: spec.variant, expect: r.expect, status: r.status ?? null,
      outcome: r.outcome, retries: r.retries, request: describe(spec, r), answer: answerText(r) });
  }).filter(Boolean);
  appendFileSync(DUMP, `${lines.join("\n")}\n`);
}

function summaryTable(fn, specs, results, seconds) {
  const sent = results.filter((r) => !r.skipped);
  const byClass = new Map();
  const byOutcome = new Map();
  specs.forEach((spec, i) => {
    const r = results[i];
    if (r.skipped) return;
    const label = `${r.status ?? "---"} ${r.outcome}`;
    const c = byClass.get(spec.cls) ?? { n: 0, outcomes: new Map() };
    c.n++;
    c.outcomes.set(label, (c.outcomes.get(label) ?? 0) + 1);
    byClass.set(spec.cls, c);
    byOutcome.set(label, (byOutcome.get(label) ?? 0) + 1);
  });
  const fresh = specs.filter((s, i) => !results[i].skipped && s.signedFresh).length;
  const lines = [
    `${fn}: ${sent.length} requests in ${seconds.toFixed(1)} s (${(sent.length / seconds).toFixed(0)} req/s), seed ${SEED}` +
      (fn === "odoo-webhook" ? `, ${((100 * fresh) / Math.max(1, sent.length)).toFixed(0)}% correctly signed and fresh` : ""),
    `  ${"class".padEnd(22)} ${"n".padStart(5)}  outcomes (status outcome:count)`,
  ];
  for (const [cls, c] of [...byClass].sort((a, b) => b[1].n - a[1].n)) {
    const outcomes = [...c.outcomes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}:${v}`).join(", ");
    lines.push(`  ${cls.padEnd(22)} ${String(c.n).padStart(5)}  ${outcomes}`);
  }
  lines.push(`  by status/code: ${[...byOutcome].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}:${v}`).join(" | ")}`);
  const retried = sent.filter((r) => r.retries > 0);
  if (retried.length) {
    const reasons = new Map();
    for (const r of retried) for (const reason of r.retryReasons) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    lines.push(`  note: ${retried.length} requests were sent again after a transient failure (${[...reasons].map(([k, v]) => `${k}:${v}`).join(", ")});` +
      ` ${retried.filter((r) => r.status === 503).length} still failed. A 503 comes from another test restarting PostgREST/Postgres;` +
      " a reset from a keep-alive connection that workerd dropped after answering an earlier request without reading its body (or a restart)");
  }
  const closed = sent.filter((r) => r.outcome === "closed").length;
  if (closed) lines.push(`  note: ${closed} uploads of 1 MiB or more were cut off by the server (connection reset) instead of reading a 413`);
  const runtime = sent.filter((r) => r.status && runtimeRefusal(r)).length;
  if (runtime) lines.push(`  note: ${runtime} requests with a method workerd does not know got its plain-text 501, not the function (tolerated)`);
  const gateway = sent.filter((r) => !r.correlationHeader && GATEWAY_CODES.has(r.json?.error?.code)).length;
  if (gateway) lines.push(`  note: ${gateway} answers came from the gateway without correlation_id (${STRICT_GATEWAY ? "failing" : "allowed; FUZZ_STRICT_GATEWAY=1 fails them"})`);
  return lines.join("\n");
}

// ------------------------------------------------------------ database side

/** sql() from helpers, retried for a while: other tests stop and restart Postgres. */
function sql(query) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return sqlOnce(query);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      execSleep(1);
    }
  }
}
const execSleep = (seconds) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, seconds * 1000);

/** Rows with this run's idempotency keys: [{k, id}] from outbox or event_log. */
function rowsOfRun(table, idColumn) {
  return JSON.parse(sql(`select coalesce(json_agg(json_build_object('k', idempotency_key, 'id', ${idColumn})), '[]')
    from integration.${table} where source = 'odoo' and (${KEY_LIKE})`));
}

/** Which of these digests integration.replay_guard holds (chunked: psql -c has an argument size limit). */
function digestsPresent(digests) {
  const present = new Set();
  for (let i = 0; i < digests.length; i += 500) {
    const chunk = digests.slice(i, i + 500);
    const out = sql(`select digest from integration.replay_guard where digest = any('{${chunk.join(",")}}'::text[])`);
    for (const line of out.split("\n")) if (line) present.add(line);
  }
  return present;
}

/** The sha256 the function stores for a seed-scheme signature header, if it is one it could accept. */
function replayDigest(request) {
  const raw = request.headers.find(([h]) => h === "x-ipai-signature")?.[1];
  if (raw === undefined || request.headers.some(([h]) => h === "webhook-id" || h === "webhook-signature")) return null;
  const hex = raw.trim().replace(/^sha256=/, "");
  return /^[0-9a-fA-F]{64}$/.test(hex) ? sha256Hex(Buffer.from(hex, "hex")) : null;
}

async function waitForFunction(url, headers) {
  const deadline = Date.now() + 120_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { method: "GET", headers });
      last = `${response.status} ${await response.text()}`;
      if (response.status === 405 && response.headers.get("x-correlation-id")) return;
    } catch (e) {
      last = String(e.cause?.code ?? e.message);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  assert.fail(`${SEED_TAG} ${url} is not answering (last: ${last}); is the stack up (scripts/dev status)?`);
}

// -------------------------------------------------------------------- tests

test(`odoo-webhook: ${COUNT} hostile requests`, { timeout: 300_000 }, async (t) => {
  await waitForFunction(WEBHOOK_URL, {});
  const specs = webhookSpecs(COUNT);
  const replayGuardBefore = Number(sql("select count(*) from integration.replay_guard"));
  const { results, seconds } = await runCases(specs);
  const replayGuardAfter = Number(sql("select count(*) from integration.replay_guard"));
  console.log(summaryTable("odoo-webhook", specs, results, seconds));
  dump("odoo-webhook", specs, results);

  const sent = specs.map((spec, i) => ({ spec, result: results[i] })).filter(({ result }) => !result.skipped);
  const accepted = sent.filter(({ result }) => result.outcome === "new");
  const acceptedIds = new Map(); // event_id -> idempotency key
  for (const { result } of sent) {
    if (result.outcome !== "new" && result.outcome !== "dup") continue;
    const key = result.request.headers.find(([h]) => h === "x-idempotency-key" || h === "webhook-id");
    const std = result.request.headers.find(([h]) => h === "webhook-id");
    acceptedIds.set(result.json.event_id, (std ?? key)[1].trim());
  }
  const acceptedIpai = accepted.filter(({ result }) => replayDigest(result.request)).length;
  console.log(`  accepted: ${accepted.length} new (${acceptedIpai} seed scheme), ${sent.filter(({ result }) => result.outcome === "dup").length} duplicates;` +
    ` replay_guard ${replayGuardBefore} -> ${replayGuardAfter} (informational: other tests and the purge job change it too)`);

  await t.test("no 5xx; every answer is the envelope (4xx) or a success; expected outcomes", () => {
    const { total, text } = failureReport("odoo-webhook", specs, results, seconds);
    assert.equal(total, 0, text);
    if (!ONLY && COUNT >= 200) {
      const fresh = sent.filter(({ spec }) => spec.signedFresh).length / sent.length;
      assert.ok(fresh >= 0.3, `${SEED_TAG} only ${(fresh * 100).toFixed(0)}% of the requests were correctly signed and fresh`);
      assert.ok(accepted.length > 0, `${SEED_TAG} no event was accepted at all`);
    }
  });

  await t.test("rows exist exactly for the accepted events, nothing for a rejected request", () => {
    const retried = sent.some(({ result }) => result.retries > 0);
    const newIds = new Set(accepted.map(({ result }) => result.json.event_id));
    if (!retried) assert.equal(newIds.size, accepted.length, `${SEED_TAG} an event_id was answered as new twice`);
    const outbox = rowsOfRun("outbox", "id");
    const log = rowsOfRun("event_log", "event_id");
    const show = (rows) => JSON.stringify(rows.slice(0, 5));
    // Every row of this run belongs to an answer that accepted it, under the same key.
    const strays = outbox.filter((row) => acceptedIds.get(row.id) !== row.k);
    assert.deepEqual(strays, [], `${SEED_TAG} outbox rows that no accepted answer accounts for: ${show(strays)}`);
    const logStrays = log.filter((row) => acceptedIds.get(row.id) !== row.k);
    assert.deepEqual(logStrays, [], `${SEED_TAG} event_log rows that no accepted answer accounts for: ${show(logStrays)}`);
    // And every accepted event is in both tables, once.
    const expected = retried ? acceptedIds.size : newIds.size;
    assert.equal(outbox.length, expected, `${SEED_TAG} outbox has ${outbox.length} rows of this run, ${expected} events were accepted (${accepted.length} answers duplicate:false)`);
    assert.equal(log.length, expected, `${SEED_TAG} event_log has ${log.length} rows of this run, ${expected} events were accepted`);
    const inOutbox = new Set(outbox.map((r) => r.id));
    const inLog = new Set(log.map((r) => r.id));
    const missing = [...acceptedIds.keys()].filter((id) => !inOutbox.has(id) || !inLog.has(id));
    assert.deepEqual(missing, [], `${SEED_TAG} accepted event_ids missing from outbox or event_log`);
  });

  await t.test("replay_guard holds the MACs of accepted seed-scheme requests and of nothing else", () => {
    // Exact rather than a count: other tests add rows concurrently and pg_cron purges.
    const acceptedDigests = new Set();
    const stillStored = []; // accepted, and not yet expired (the purge runs every minute)
    const refused = [];
    const now = Date.now();
    for (const { result } of sent) {
      if (result.outcome === "no_answer") continue;
      const digest = replayDigest(result.request);
      if (!digest) continue;
      if (result.outcome === "new" || result.outcome === "dup") {
        acceptedDigests.add(digest);
        const ts = Number(result.request.headers.find(([h]) => h === "x-ipai-timestamp")[1]);
        if (result.outcome === "new" && ts + TOLERANCE_MS > now + 70_000) stillStored.push(digest);
      }
    }
    for (const { spec, result } of sent) {
      const digest = replayDigest(result.request);
      if (result.outcome === "no_answer" || result.outcome === "closed") continue; // it may or may not have been processed
      if (digest && result.outcome !== "new" && result.outcome !== "dup" && !acceptedDigests.has(digest)) refused.push({ spec, result, digest });
    }
    const present = digestsPresent([...stillStored, ...refused.map((r) => r.digest)]);
    const lost = stillStored.filter((d) => !present.has(d));
    assert.deepEqual(lost, [], `${SEED_TAG} accepted seed-scheme requests without a replay_guard entry`);
    const written = refused.filter((r) => present.has(r.digest));
    assert.deepEqual(written.map(({ spec, result }) => describe(spec, result)), [],
      `${SEED_TAG} refused requests left a replay_guard entry`);
  });
});

test(`outbox-router: ${COUNT} hostile requests`, { timeout: 300_000 }, async (t) => {
  await waitForFunction(ROUTER_URL, { authorization: SERVICE_BEARER() });
  const specs = routerSpecs(COUNT);
  const rowsBefore = Number(sql(`select count(*) from integration.outbox_and_archive where ${KEY_LIKE}`)) +
    Number(sql(`select count(*) from integration.event_log where ${KEY_LIKE}`));
  const redriveBefore = Number(sql("select coalesce(max(id), 0) from integration.redrive_log"));
  const { results, seconds } = await runCases(specs);
  console.log(summaryTable("outbox-router", specs, results, seconds));
  dump("outbox-router", specs, results);
  const runs = specs.filter((s, i) => !results[i].skipped && s.runs).length;
  console.log(`  authorized valid calls (each starts a run): ${runs} (budget ${ROUTER_RUN_BUDGET})`);

  await t.test("no 5xx; every answer is the envelope (4xx) or a success; expected outcomes", () => {
    const { total, text } = failureReport("outbox-router", specs, results, seconds);
    assert.equal(total, 0, text);
  });

  await t.test("the router wrote no outbox, event_log or redrive_log rows", () => {
    const rowsAfter = Number(sql(`select count(*) from integration.outbox_and_archive where ${KEY_LIKE}`)) +
      Number(sql(`select count(*) from integration.event_log where ${KEY_LIKE}`));
    assert.equal(rowsAfter, rowsBefore, `${SEED_TAG} rows with this run's keys changed during the router fuzz`);
    // The router never redrives; a row here is another test's redrive (then re-run) or a bug.
    const redrives = sql(`select coalesce(json_agg(json_build_object('id', id, 'requested_by', requested_by, 'at', created_at)), '[]')
      from integration.redrive_log where id > ${redriveBefore}`);
    assert.deepEqual(JSON.parse(redrives), [], `${SEED_TAG} redrive_log grew during the router fuzz`);
  });
});
