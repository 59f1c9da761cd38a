// The local API gateway on 127.0.0.1:54321: the stand-in for Supabase's Kong,
// serving the same paths and headers the Supabase clients use.
//
//   /functions/v1/<name>[/...]  -> the function's worker (service binding);
//                                  a function with verify_jwt needs a valid
//                                  HS256 JWT, as `supabase functions serve` does
//   /rest/v1/*                  -> PostgREST, prefix stripped; needs `apikey`,
//                                  which becomes the bearer token if none is sent
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
    if (url.pathname === "/health") return new Response("ok");
    return errorResponse(404, "not_found", "unknown path");
  },
};
