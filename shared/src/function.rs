//! The one skeleton every function's `#[event(fetch)]` goes through:
//!
//! 1. correlation id (`x-correlation-id` or a new UUID), echoed on every answer;
//! 2. method: one of the function's `methods`, else 405 with a correct `Allow`;
//! 3. config: the platform part and the function's own settings, loaded and
//!    validated once per isolate (a missing secret is a 500 on every request);
//! 4. authentication by the function's `Auth` mode (401 / 403);
//! 5. the body, read up to `max_body_bytes` and no further (413);
//! 6. the handler, which returns a `Reply` or an `ApiError`;
//! 7. exactly one log line per request (see `request_line`) and the answer: the
//!    handler's JSON, or the error envelope.
//!
//! A function is its settings type, its decision modules, and a `Function`
//! impl whose `handle` moves data between them and the runtime.

use std::future::Future;
use std::rc::Rc;

use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use worker::{Context, Env, Request, Response};

use crate::auth::{authenticate, Auth, Caller, PlatformKeys};
use crate::config::{env_lookup, load_once, ConfigError, FromLookup, Lookup, SupabaseConfig};
use crate::error::{ApiError, ErrorCode};
use crate::log::Log;
use crate::postgrest::Client;
use crate::{correlation, http, time};

/// What the skeleton needs to know about a function.
pub struct Spec {
    /// The function's name: its URL path and the prefix of its settings
    /// (`outbox-router` reads `OUTBOX_ROUTER_*`).
    pub name: &'static str,
    /// Upper-case HTTP methods it answers; anything else is a 405.
    pub methods: &'static [&'static str],
    pub auth: Auth,
    /// Bodies over this are refused with 413 before the handler runs.
    pub max_body_bytes: usize,
}

pub trait Function: 'static {
    const SPEC: Spec;
    /// The function's own settings, beyond what every function gets.
    type Settings: FromLookup;
    fn handle(call: Call<'_, Self::Settings>) -> impl Future<Output = Result<Reply, ApiError>>;
}

/// A function's configuration: where PostgREST is and as whom, the
/// invocation token for `Auth::Platform` functions, and its own settings.
pub struct Config<S> {
    pub supabase: SupabaseConfig,
    /// `<NAME>_INVOCATION_TOKEN`: what pg_net and pg_cron present. It may only
    /// invoke this function, unlike the service role key.
    pub invocation_token: Option<String>,
    pub settings: S,
}

/// Invocation tokens are random; a short one is a mistake.
pub const MIN_INVOCATION_TOKEN_LEN: usize = 32;

impl<S: FromLookup> Config<S> {
    pub fn from_lookup(spec: &Spec, lookup: Lookup) -> Result<Self, ConfigError> {
        let supabase = SupabaseConfig::from_lookup(lookup)?;
        let invocation_token = if spec.auth == Auth::Platform {
            let name = format!("{}_INVOCATION_TOKEN", setting_prefix(spec.name));
            let token = crate::config::required(lookup, &name)?;
            if token.len() < MIN_INVOCATION_TOKEN_LEN {
                return Err(ConfigError(format!(
                    "{name} must be at least {MIN_INVOCATION_TOKEN_LEN} characters"
                )));
            }
            Some(token)
        } else {
            None
        };
        Ok(Config {
            supabase,
            invocation_token,
            settings: S::from_lookup(lookup)?,
        })
    }
}

/// `outbox-router` -> `OUTBOX_ROUTER`.
pub fn setting_prefix(name: &str) -> String {
    name.replace('-', "_").to_ascii_uppercase()
}

/// One request, past the checks, as the handler sees it.
pub struct Call<'a, S> {
    pub config: Rc<Config<S>>,
    pub caller: Caller,
    pub body: Vec<u8>,
    pub correlation_id: &'a str,
    pub ctx: &'a Context,
    /// The Workers environment, for bindings other than settings (static assets).
    pub env: &'a Env,
    name: &'static str,
    request: &'a Request,
}

impl<S> Call<'_, S> {
    pub fn header(&self, name: &str) -> Option<String> {
        self.request.headers().get(name).ok().flatten()
    }

    /// The function's name (`campaign-dashboard`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The raw query string, if the URL has one.
    pub fn query(&self) -> Option<String> {
        query_of(&self.request.inner().url())
    }

    /// The URL's path past `/functions/v1/<name>` (Supabase's prefix) or, when
    /// deployed on its own host, past `/<name>`; empty for the function itself.
    pub fn subpath(&self) -> String {
        subpath_of(&self.request.inner().url(), self.name)
    }

    /// PostgREST as the service role: for work done for the platform.
    pub fn service(&self) -> Client {
        Client::service(self.config.supabase.clone())
    }

    /// PostgREST as the caller: a user's JWT is forwarded so RLS decides;
    /// platform callers act as the service role.
    pub fn as_caller(&self) -> Client {
        match &self.caller {
            Caller::User(user) => Client::as_user(self.config.supabase.clone(), &user.token),
            _ => self.service(),
        }
    }
}

/// A handler's answer: a JSON object (the skeleton adds `"ok": true` and the
/// correlation id) and what its log line says.
pub struct Reply {
    status: u16,
    body: Map<String, Value>,
    event: &'static str,
    fields: Map<String, Value>,
    headers: Vec<(&'static str, String)>,
    /// A response that is not the JSON envelope (a page, a static asset).
    raw: Option<Response>,
}

impl Reply {
    /// `event` names the outcome in the log line (`accepted`, `woken`, ...).
    pub fn ok(status: u16, event: &'static str, body: Value) -> Self {
        // Handlers pass `json!({...})`; anything else has no fields to send.
        let body = match body {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        Reply {
            status,
            body,
            event,
            fields: Map::new(),
            headers: Vec::new(),
            raw: None,
        }
    }

    /// Sends `response` as it is (status, headers, body), with the
    /// correlation id header added; logged like any other answer.
    pub fn raw(response: Response, event: &'static str) -> Self {
        let mut reply = Reply::ok(response.status_code(), event, Value::Null);
        reply.raw = Some(response);
        reply
    }

    /// An extra response header (JSON answers only).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Fields for the request's log line: nothing secret.
    pub fn log(mut self, fields: Value) -> Self {
        if let Value::Object(fields) = fields {
            self.fields = fields;
        }
        self
    }
}

/// The entry point: `#[event(fetch)] async fn fetch(req, env, ctx) { serve::<F>(req, env, ctx).await }`.
pub async fn serve<F: Function>(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let started_ms = time::now_ms();
    let caller_id = req.headers().get(correlation::HEADER).ok().flatten();
    let correlation_id = correlation::from_header_or_new(caller_id.as_deref());
    let method = req.method().to_string();
    let mut caller = None;
    let outcome = run::<F>(req, &env, &ctx, &correlation_id, &method, &mut caller).await;
    let log = Log::new(F::SPEC.name, &correlation_id);
    match outcome {
        Ok(reply) => {
            let mut body = reply.body;
            body.insert("ok".into(), json!(true));
            body.insert("correlation_id".into(), json!(correlation_id));
            let line = RequestLine {
                event: reply.event,
                method: &method,
                status: reply.status,
                caller: caller.as_ref(),
                error: None,
                fields: reply.fields,
                elapsed_ms: time::now_ms() - started_ms,
            };
            log.info(line.event, line.to_fields());
            if let Some(response) = reply.raw {
                let _ = response.headers().set(correlation::HEADER, &correlation_id);
                return Ok(response);
            }
            let headers: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(n, v)| (*n, v.as_str()))
                .collect();
            http::json_with_headers(
                reply.status,
                &Value::Object(body),
                &correlation_id,
                &headers,
            )
        }
        Err(err) => {
            let line = RequestLine {
                event: if err.status() >= 500 {
                    "failed"
                } else {
                    "rejected"
                },
                method: &method,
                status: err.status(),
                caller: caller.as_ref(),
                error: Some(&err),
                fields: Map::new(),
                elapsed_ms: time::now_ms() - started_ms,
            };
            if err.status() >= 500 {
                log.error(line.event, line.to_fields());
            } else {
                log.warn(line.event, line.to_fields());
            }
            let allow = F::SPEC.methods.join(", ");
            let extra: &[(&str, &str)] = if err.code == ErrorCode::MethodNotAllowed {
                &[("allow", allow.as_str())]
            } else {
                &[]
            };
            http::error(&err, &correlation_id, extra)
        }
    }
}

async fn run<F: Function>(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    correlation_id: &str,
    method: &str,
    caller_out: &mut Option<Caller>,
) -> Result<Reply, ApiError> {
    let (config, caller) = match admit::<F>(&req, env, method) {
        Ok(admitted) => admitted,
        Err(err) => {
            // An unread body makes workerd close the keep-alive connection,
            // and the client's next request on it fails: read it, bounded.
            let _ = read_body(&mut req, F::SPEC.max_body_bytes).await;
            return Err(err);
        }
    };
    *caller_out = Some(caller.clone());
    let body = read_body(&mut req, F::SPEC.max_body_bytes).await?;
    F::handle(Call {
        config,
        caller,
        body,
        correlation_id,
        ctx,
        env,
        name: F::SPEC.name,
        request: &req,
    })
    .await
}

/// A request past the checks made before its body is read.
type Admitted<S> = (Rc<Config<S>>, Caller);

/// The checks before the body is read: method, config, authentication.
fn admit<F: Function>(
    req: &Request,
    env: &Env,
    method: &str,
) -> Result<Admitted<F::Settings>, ApiError> {
    check_method(method, F::SPEC.methods)?;
    let config = load_once(|| Config::<F::Settings>::from_lookup(&F::SPEC, &env_lookup(env)))?;
    // Matched on the constant, so a function that authenticates nobody
    // carries none of the token and JWT code.
    if matches!(F::SPEC.auth, Auth::Open) {
        return Ok((config, Caller::Anonymous));
    }
    let authorization = req.headers().get("authorization").ok().flatten();
    let caller = authenticate(
        F::SPEC.auth,
        authorization.as_deref(),
        &PlatformKeys {
            service_role_key: &config.supabase.service_role_key,
            invocation_token: config.invocation_token.as_deref(),
        },
    )?;
    Ok((config, caller))
}

/// Reads at most `max` bytes. A declared length over `max` is refused unread;
/// within it, the HTTP framing bounds the body, so it is read in one call.
/// Without a length the body is streamed and refused as soon as it passes
/// `max`, not read to its end.
async fn read_body(req: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    let unreadable = || ApiError::new(ErrorCode::InvalidJson, "the body could not be read");
    let content_length = req.headers().get("content-length").ok().flatten();
    if declared_length(content_length.as_deref(), max)?.is_some() {
        return req.bytes().await.map_err(|_| unreadable());
    }
    let Ok(mut stream) = req.stream() else {
        return Ok(Vec::new()); // no body at all
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.map_err(|_| unreadable())?);
        check_body_length(body.len(), max)?;
    }
    Ok(body)
}

/// The raw query string of a URL, without parsing the URL: the `url` crate
/// (with its IDNA tables) would add ~150 KB to every function's wasm.
pub fn query_of(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    Some(query.to_string())
}

/// The path of `url` past the function's own segment: `/functions/v1/<name>`
/// or `/<name>`, else the whole path. Never includes the query.
pub fn subpath_of(url: &str, name: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |at| &after_scheme[at..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    for prefix in [format!("/functions/v1/{name}"), format!("/{name}")] {
        if let Some(rest) = path.strip_prefix(prefix.as_str()) {
            if rest.is_empty() || rest.starts_with('/') {
                return rest.to_string();
            }
        }
    }
    path.to_string()
}

pub fn check_method(method: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.iter().any(|m| m.eq_ignore_ascii_case(method)) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "this method is not accepted here; the Allow header lists those that are",
        ))
    }
}

/// The declared body length, if there is one; over `max` it is refused
/// before anything is read.
pub fn declared_length(content_length: Option<&str>, max: usize) -> Result<Option<u64>, ApiError> {
    match content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) if n > max as u64 => Err(too_large(max)),
        declared => Ok(declared),
    }
}

pub fn check_body_length(len: usize, max: usize) -> Result<(), ApiError> {
    if len > max {
        Err(too_large(max))
    } else {
        Ok(())
    }
}

fn too_large(max: usize) -> ApiError {
    let limit = if max.is_multiple_of(1024) {
        format!("{} KiB", max / 1024)
    } else {
        format!("{max} bytes")
    };
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the body exceeds {limit}"),
    )
}

/// The one log line of a request. Besides `level`, `fn`, `event` and
/// `correlation_id` (see `Log`) it carries `method`, `status`, `elapsed_ms`,
/// `caller` (a kind, or `user:<sub>`; never a token) once authenticated, and
/// for a refusal its `code` and, for server-side faults, the internal `cause`.
/// Handlers add their own fields (ids, counts), never secrets.
struct RequestLine<'a> {
    event: &'static str,
    method: &'a str,
    status: u16,
    caller: Option<&'a Caller>,
    error: Option<&'a ApiError>,
    fields: Map<String, Value>,
    elapsed_ms: i64,
}

impl RequestLine<'_> {
    fn to_fields(&self) -> Value {
        let mut line = Map::new();
        line.insert("method".into(), json!(self.method));
        line.insert("status".into(), json!(self.status));
        line.insert("elapsed_ms".into(), json!(self.elapsed_ms));
        if let Some(caller) = self.caller {
            line.insert("caller".into(), json!(caller.describe()));
        }
        if let Some(err) = self.error {
            line.insert("code".into(), json!(err.code.as_str()));
            if let Some(cause) = &err.cause {
                line.insert("cause".into(), json!(cause));
            }
        }
        for (key, value) in &self.fields {
            line.entry(key.clone()).or_insert(value.clone());
        }
        Value::Object(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lookup_from as lookup;

    #[test]
    fn only_the_declared_methods_pass_and_405_says_which() {
        assert!(check_method("POST", &["POST"]).is_ok());
        assert!(check_method("get", &["GET", "POST"]).is_ok());
        let err = check_method("DELETE", &["GET", "POST"]).unwrap_err();
        assert_eq!(err.status(), 405);
    }

    #[test]
    fn bodies_over_the_limit_are_refused_declared_or_not() {
        let max = 256 * 1024;
        assert_eq!(declared_length(Some("262144"), max).unwrap(), Some(262_144));
        assert_eq!(declared_length(Some("not a number"), max).unwrap(), None);
        assert_eq!(declared_length(None, max).unwrap(), None);
        let err = declared_length(Some("262145"), max).unwrap_err();
        assert_eq!(
            (err.status(), err.message.as_str()),
            (413, "the body exceeds 256 KiB")
        );
        assert!(check_body_length(max, max).is_ok());
        assert_eq!(
            check_body_length(4097, 4096).unwrap_err().code,
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            check_body_length(11, 10).unwrap_err().message,
            "the body exceeds 10 bytes"
        );
    }

    const BASE: [(&str, &str); 2] = [
        ("SUPABASE_URL", "http://127.0.0.1:54321"),
        ("SUPABASE_SERVICE_ROLE_KEY", "service-key"),
    ];

    fn spec(auth: Auth) -> Spec {
        Spec {
            name: "outbox-router",
            methods: &["POST"],
            auth,
            max_body_bytes: 10,
        }
    }

    #[test]
    fn platform_functions_need_their_invocation_token() {
        let err = Config::<()>::from_lookup(&spec(Auth::Platform), &lookup(&BASE))
            .err()
            .unwrap();
        assert_eq!(err.0, "OUTBOX_ROUTER_INVOCATION_TOKEN is not set");
        let mut pairs = BASE.to_vec();
        pairs.push(("OUTBOX_ROUTER_INVOCATION_TOKEN", "short"));
        let err = Config::<()>::from_lookup(&spec(Auth::Platform), &lookup(&pairs))
            .err()
            .unwrap();
        assert!(err.0.starts_with("OUTBOX_ROUTER_INVOCATION_TOKEN must be"));
        assert!(!err.0.contains("short"), "the value is never in the error");
        pairs[2].1 = "syi_0123456789abcdef0123456789abcdef";
        let config = Config::<()>::from_lookup(&spec(Auth::Platform), &lookup(&pairs)).unwrap();
        assert_eq!(config.invocation_token.as_deref(), Some(pairs[2].1));
        let open = Config::<()>::from_lookup(&spec(Auth::Open), &lookup(&BASE)).unwrap();
        assert_eq!(open.invocation_token, None);
    }

    #[test]
    fn the_request_line_carries_outcome_caller_and_cause_but_handler_fields_cannot_override_them() {
        let err = ApiError::new(ErrorCode::Internal, "x").with_cause("PGRST202");
        let line = RequestLine {
            event: "failed",
            method: "POST",
            status: 500,
            caller: Some(&Caller::Invocation),
            error: Some(&err),
            fields: json!({ "status": 200, "event_id": "e1" })
                .as_object()
                .unwrap()
                .clone(),
            elapsed_ms: 3,
        }
        .to_fields();
        assert_eq!(line["status"], 500);
        assert_eq!(line["caller"], "invocation_token");
        assert_eq!(line["code"], "internal_error");
        assert_eq!(line["cause"], "PGRST202");
        assert_eq!(line["event_id"], "e1");
        assert_eq!(line["elapsed_ms"], 3);
    }

    #[test]
    fn the_query_is_what_follows_the_first_question_mark() {
        assert_eq!(query_of("http://h/f"), None);
        assert_eq!(
            query_of("http://h/f?wait=true").as_deref(),
            Some("wait=true")
        );
        assert_eq!(query_of("http://h/f?a=1?b#frag").as_deref(), Some("a=1?b"));
        assert_eq!(query_of("http://h/f?").as_deref(), Some(""));
    }

    #[test]
    fn the_subpath_is_what_follows_the_functions_name() {
        let sub = |url| subpath_of(url, "campaign-dashboard");
        assert_eq!(sub("http://h/functions/v1/campaign-dashboard"), "");
        assert_eq!(sub("http://h/functions/v1/campaign-dashboard/"), "/");
        assert_eq!(
            sub("http://h/functions/v1/campaign-dashboard/app.js?v=1#x"),
            "/app.js"
        );
        assert_eq!(sub("https://x.workers.dev/campaign-dashboard/a"), "/a");
        assert_eq!(
            sub("http://h/functions/v1/campaign-dashboardx"),
            "/functions/v1/campaign-dashboardx"
        );
        assert_eq!(sub("http://h"), "");
    }

    #[test]
    fn setting_prefixes_are_upper_snake_case() {
        assert_eq!(setting_prefix("outbox-router"), "OUTBOX_ROUTER");
        assert_eq!(setting_prefix("odoo-webhook"), "ODOO_WEBHOOK");
    }
}
