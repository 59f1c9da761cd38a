#!/usr/bin/env node
// Mints a local Supabase session for a demo user and prints the campaign
// dashboard's URL (or with --console the ops console's) with it in the
// fragment, as a magic link would:
//
//   node scripts/local/session.mjs alice@acme.test [--base http://127.0.0.1:54321] [--console]
//   node scripts/local/session.mjs --user-id <uuid> [--email someone@example.test] [--operator]
//   options: --ttl <seconds> (3600), --json (print the session instead of the URL)
//
// A local script only, never a deployed endpoint: it signs with the local
// stack's JWT_SECRET (.local/secrets.env, else `scripts/dev env`), which is
// what Supabase Auth would do after a real sign-in. The gateway's Auth
// stand-in (scripts/local/gateway.js, /auth/v1/user) accepts the token.
// Tests import mintSession(), dashboardUrl() and consoleUrl().
import { execFileSync } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const DEFAULT_BASE = "http://127.0.0.1:54321";
export const DASHBOARD_PATH = "/functions/v1/campaign-dashboard/";
export const CONSOLE_PATH = "/functions/v1/ops-console/";

/** The seeded demo users: alice edits and bob views "Acme Marketing"; olivia is an operator. */
export const DEMO_USERS = {
  "alice@acme.test": { sub: "00000000-0000-4000-a000-0000000a11ce", appMetadata: {} },
  "bob@acme.test": { sub: "00000000-0000-4000-a000-000000000b0b", appMetadata: {} },
  "olivia@switchyard.test": { sub: "00000000-0000-4000-a000-0000000011a0", appMetadata: { role: "operator" } },
};

const base64Url = (value) => Buffer.from(value).toString("base64url");

/** The local JWT secret: $JWT_SECRET, .local/secrets.env, else `scripts/dev env`. */
export function readJwtSecret() {
  if (process.env.JWT_SECRET) return process.env.JWT_SECRET;
  const file = path.join(ROOT, ".local/secrets.env");
  if (existsSync(file)) {
    const line = readFileSync(file, "utf8").split("\n").find((l) => l.startsWith("JWT_SECRET="));
    if (line && line.length > "JWT_SECRET=".length) return line.slice("JWT_SECRET=".length).trim();
  }
  const out = execFileSync(path.join(ROOT, "scripts/dev"), ["env"], { encoding: "utf8" });
  const line = out.split("\n").find((l) => l.startsWith("JWT_SECRET="));
  if (!line) throw new Error("no JWT_SECRET in `scripts/dev env`; run `scripts/dev up` first");
  return line.slice("JWT_SECRET=".length).trim();
}

/** An HS256 JWT over `claims`. */
export function signJwt(claims, secret) {
  const header = base64Url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = base64Url(JSON.stringify(claims));
  const signature = createHmac("sha256", secret).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
}

/**
 * A session shaped like Supabase Auth's: {access_token, refresh_token,
 * expires_in, expires_at, token_type, user}. The access token carries what
 * Supabase Auth puts in one (role and aud `authenticated`, sub, email,
 * app_metadata with the provider and, for operators, `role`). The refresh
 * token is random: refreshing is not available locally.
 * `ttlSeconds` may be negative (an expired session, for tests).
 */
export function mintSession({ sub, email = "", appMetadata = {}, userMetadata = {}, secret = readJwtSecret(),
  ttlSeconds = 3600, base = DEFAULT_BASE, now = Math.floor(Date.now() / 1000) } = {}) {
  if (typeof sub !== "string" || sub.length === 0 || sub.length > 200) throw new Error("sub must be 1 to 200 characters");
  if (!secret) throw new Error("no JWT secret");
  const expiresAt = now + ttlSeconds;
  const app_metadata = { provider: "email", providers: ["email"], ...appMetadata };
  const claims = {
    iss: `${base}/auth/v1`,
    sub,
    aud: "authenticated",
    exp: expiresAt,
    iat: now,
    email,
    phone: "",
    app_metadata,
    user_metadata: userMetadata,
    role: "authenticated",
    aal: "aal1",
    amr: [{ method: "magiclink", timestamp: now }],
    session_id: randomUUID(),
    is_anonymous: false,
  };
  const issued = new Date(now * 1000).toISOString();
  return {
    access_token: signJwt(claims, secret),
    refresh_token: randomBytes(16).toString("hex"),
    expires_in: ttlSeconds,
    expires_at: expiresAt,
    token_type: "bearer",
    user: { id: sub, aud: "authenticated", role: "authenticated", email, app_metadata, user_metadata: userMetadata,
      created_at: issued, updated_at: issued },
  };
}

/** The session as a magic link's URL fragment (without the `#`). */
export function sessionFragment(session, type = "magiclink") {
  return new URLSearchParams({
    access_token: session.access_token,
    refresh_token: session.refresh_token,
    expires_in: String(session.expires_in),
    expires_at: String(session.expires_at),
    token_type: session.token_type,
    type,
  }).toString();
}

/** A page's URL at `base` with the session in the fragment. */
const signInUrl = (pagePath) => (session, base = DEFAULT_BASE) =>
  `${base.replace(/\/+$/, "")}${pagePath}#${sessionFragment(session)}`;

/** The dashboard's sign-in URL. */
export const dashboardUrl = signInUrl(DASHBOARD_PATH);
/** The ops console's sign-in URL. */
export const consoleUrl = signInUrl(CONSOLE_PATH);

function usage(message) {
  if (message) console.error(`session.mjs: ${message}`);
  console.error(`usage: node scripts/local/session.mjs <email> [--base ${DEFAULT_BASE}] [--ttl 3600] [--json] [--console]
       node scripts/local/session.mjs --user-id <uuid> [--email <email>] [--operator] [--base ...]
demo users: ${Object.keys(DEMO_USERS).join(", ")}`);
  process.exit(2);
}

function main(argv) {
  let email, userId, operator = false, json = false, page = dashboardUrl, base = DEFAULT_BASE, ttl = 3600;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${arg} needs a value`));
    if (arg === "--base") base = value();
    else if (arg === "--user-id") userId = value();
    else if (arg === "--email") email = value();
    else if (arg === "--ttl") ttl = Number(value());
    else if (arg === "--operator") operator = true;
    else if (arg === "--json") json = true;
    else if (arg === "--console") page = consoleUrl;
    else if (arg === "-h" || arg === "--help") usage();
    else if (arg.startsWith("-")) usage(`unknown option ${arg}`);
    else if (email === undefined) email = arg;
    else usage(`unexpected argument ${arg}`);
  }
  if (!Number.isInteger(ttl)) usage("--ttl must be a whole number of seconds");
  let sub = userId, appMetadata = operator ? { role: "operator" } : {};
  if (!sub) {
    if (!email) usage("name a demo user or pass --user-id");
    const demo = DEMO_USERS[email.toLowerCase()];
    if (!demo) usage(`${email} is not a demo user`);
    sub = demo.sub;
    appMetadata = { ...demo.appMetadata, ...appMetadata };
  }
  let session;
  try {
    session = mintSession({ sub, email: email ?? "", appMetadata, ttlSeconds: ttl, base });
  } catch (error) {
    usage(error.message);
  }
  if (json) console.log(JSON.stringify(session, null, 2));
  else console.log(page(session, base));
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2));
}
