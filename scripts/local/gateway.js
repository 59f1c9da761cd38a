// The local API gateway on 127.0.0.1:54321: the stand-in for Supabase's Kong,
// serving the same paths and headers the Supabase clients use.
//
//   /functions/v1/<name>[/...]  -> the function's worker (service binding);
//                                  a function with verify_jwt needs a valid
//                                  HS256 JWT, as `supabase functions serve` does
//   /rest/v1/*                  -> PostgREST, prefix stripped; needs `apikey`,
//                                  which becomes the bearer token if none is sent
//   /auth/v1/user|logout|token  -> a minimal local stand-in for Supabase Auth
//                                  (see routeAuth); needs `apikey` too
//
// Runs in the same workerd as the functions. Infrastructure, not an edge
// function: production uses Supabase's own gateway.

const encoder = new TextEncoder();
let functionTable = null;
let jwtKey = null;

function errorResponse(status, code, message) {
  return new Response(JSON.stringify({ ok: false, error: { code, message } }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function base64UrlDecode(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

async function verifyJwt(token, secret) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  if (!jwtKey) {
    jwtKey = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "verify",
    ]);
  }
  let header, claims, signature;
  try {
    header = JSON.parse(new TextDecoder().decode(base64UrlDecode(parts[0])));
    claims = JSON.parse(new TextDecoder().decode(base64UrlDecode(parts[1])));
    signature = base64UrlDecode(parts[2]);
  } catch {
    return null;
  }
  if (header?.alg !== "HS256" || typeof claims !== "object" || claims === null) return null;
  const valid = await crypto.subtle.verify("HMAC", jwtKey, signature, encoder.encode(`${parts[0]}.${parts[1]}`));
  if (!valid) return null;
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) return null;
  if (!["anon", "authenticated", "service_role"].includes(claims.role)) return null;
  return claims;
}

function bearer(request) {
  const auth = request.headers.get("authorization") || "";
  return auth.toLowerCase().startsWith("bearer ") ? auth.slice(7).trim() : null;
}

async function routeFunction(request, env, url) {
  functionTable ??= JSON.parse(env.FUNCTIONS);
  const name = url.pathname.slice("/functions/v1/".length).split("/")[0];
  const fn = functionTable[name];
  if (!fn) return errorResponse(404, "function_not_found", `no function named ${name}`);
  if (fn.verify_jwt) {
    const token = bearer(request);
    if (!token) return errorResponse(401, "missing_authorization", "a JWT bearer token is required");
    if (!(await verifyJwt(token, env.JWT_SECRET))) return errorResponse(401, "invalid_jwt", "the JWT is invalid");
  }
  return env[fn.binding].fetch(request);
}

// A local stand-in for Supabase Auth (GoTrue), which cannot run here: just
// enough for supabase-js in the browser (the campaign dashboard) to accept a
// session minted by scripts/local/session.mjs (`scripts/dev session <email>`)
// and handed over in the URL fragment, as a magic link does. Deployed projects
// use Supabase Auth itself; nothing here is deployed. It has no users, no
// sign-in and no refresh tokens: the user is read from the JWT's claims.
//   GET  /auth/v1/user    the user of a valid HS256 access token (what
//                         detectSessionInUrl and getUser() call)
//   POST /auth/v1/logout  204 (signOut(); there is no server session to end)
//   POST /auth/v1/token   400: refreshing is not available locally
// Errors have GoTrue's shape: {"code": <status>, "error_code", "msg"}.
function authError(status, errorCode, msg) {
  return new Response(JSON.stringify({ code: status, error_code: errorCode, msg }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function userFromClaims(claims) {
  const issued = typeof claims.iat === "number" ? new Date(claims.iat * 1000).toISOString() : new Date().toISOString();
  return {
    id: claims.sub,
    aud: claims.aud ?? "authenticated",
    role: claims.role,
    email: claims.email ?? "",
    phone: claims.phone ?? "",
    app_metadata: claims.app_metadata ?? {},
    user_metadata: claims.user_metadata ?? {},
    identities: [],
    is_anonymous: claims.is_anonymous === true,
    created_at: issued,
    updated_at: issued,
  };
}

async function routeAuth(request, env, url) {
  if (!request.headers.get("apikey")) return errorResponse(401, "missing_apikey", "No API key found in request");
  const route = url.pathname.slice("/auth/v1".length);
  if (route === "/user" && request.method === "GET") {
    const token = bearer(request);
    if (!token) return authError(401, "no_authorization", "This endpoint requires a Bearer token");
    const claims = await verifyJwt(token, env.JWT_SECRET);
    if (!claims) {
      return authError(401, "bad_jwt", "invalid JWT: unable to verify its signature, or it has expired or invalid claims");
    }
    if (typeof claims.sub !== "string" || claims.sub === "") {
      return authError(403, "bad_jwt", "invalid claim: missing sub claim");
    }
    return new Response(JSON.stringify(userFromClaims(claims)), {
      headers: { "content-type": "application/json" },
    });
  }
  if (route === "/logout" && request.method === "POST") return new Response(null, { status: 204 });
  if (route === "/token" && request.method === "POST") {
    return authError(400, "refresh_token_not_found",
      "Refreshing a session is not available locally (no Supabase Auth here); mint a new session with scripts/dev session <email>");
  }
  return authError(404, "not_found", "this path is not part of the local Supabase Auth stand-in");
}

function routeRest(request, env, url) {
  const apikey = request.headers.get("apikey");
  if (!apikey) return errorResponse(401, "missing_apikey", "No API key found in request");
  const upstream = new URL(url.pathname.slice("/rest/v1".length) || "/", "http://postgrest");
  upstream.search = url.search;
  const headers = new Headers(request.headers);
  if (!headers.has("authorization")) headers.set("authorization", `Bearer ${apikey}`);
  return env.POSTGREST.fetch(new Request(upstream, { method: request.method, headers, body: request.body }));
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/functions/v1/")) return routeFunction(request, env, url);
    if (url.pathname === "/rest/v1" || url.pathname.startsWith("/rest/v1/")) {
      try {
        return await routeRest(request, env, url);
      } catch {
        return errorResponse(503, "upstream_unavailable", "PostgREST is unreachable");
      }
    }
    if (url.pathname === "/auth/v1" || url.pathname.startsWith("/auth/v1/")) return routeAuth(request, env, url);
    if (url.pathname === "/health") return new Response("ok");
    return errorResponse(404, "not_found", "unknown path");
  },
};
