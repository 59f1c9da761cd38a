//! The n8n public API client (seed: campaign-orchestration.md, Pillar 2),
//! shared by `campaign-toggle` and `campaign-sync`.
//!
//! Every call: a per-attempt timeout (5 s), up to 3 attempts with 1 s and
//! 2 s waits between them on retryable failures only (timeouts, connection
//! errors, 429, 5xx), at most 5 calls in flight per isolate, and a circuit
//! breaker shared by every isolate through Postgres (`campaigns.n8n_breaker`):
//! each failed attempt is counted there, and once it opens the call stops.
//! A 4xx is n8n's final word and never retried.
//!
//! The decisions (`classify`, `backoff`, what a workflow says) are plain and
//! tested natively; `Api` moves requests over `worker::Fetch`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use worker::{Delay, Method};

use crate::config::{bounded, required, ConfigError, FromLookup, Lookup};
use crate::error::{ApiError, ErrorCode};
use crate::fetch::{self, FetchError, Fetched};

/// Calls in flight to n8n per isolate (seed 2.2).
pub const MAX_CONCURRENT: usize = 5;

/// Where n8n's public API is and how to call it: `N8N_API_URL` (the seed's
/// name: `https://n8n.example.com/api/v1`), `N8N_API_KEY`, and
/// `N8N_TIMEOUT_MS` (per attempt, 500..=30000, default 5000).
#[derive(Clone)]
pub struct Settings {
    pub api_url: String,
    api_key: String,
    pub timeout: Duration,
    pub attempts: u32,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("n8n::Settings")
            .field("api_url", &self.api_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The functions that call n8n have no other settings: this is theirs.
impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let api_url = required(lookup, "N8N_API_URL")?;
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(ConfigError("N8N_API_URL must be an http(s) URL".into()));
        }
        let api_key = required(lookup, "N8N_API_KEY")?;
        Ok(Settings {
            api_url: api_url.trim_end_matches('/').to_string(),
            api_key,
            timeout: Duration::from_millis(bounded(lookup, "N8N_TIMEOUT_MS", 5000, 500, 30_000)?),
            attempts: 3,
        })
    }
}

impl Settings {
    /// n8n's own origin (production webhooks live at `<origin>/webhook/<path>`).
    pub fn origin(&self) -> &str {
        self.api_url
            .strip_suffix("/api/v1")
            .unwrap_or(&self.api_url)
    }
}

/// Why a call to n8n failed, once retries are over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum N8nError {
    /// 404: the workflow does not exist, or is not shared with our key.
    NotFound,
    /// 400: no trigger, or node configuration issues. n8n's message.
    Rejected(String),
    /// 409: a webhook path conflict, or the workflow is busy. n8n's message.
    Conflict(String),
    /// 401/403: our API key is wrong or lacks a scope.
    Unauthorized,
    /// Every attempt timed out.
    Timeout,
    /// 5xx, 429, a refused connection, or an answer that is not JSON.
    Failed(String),
    /// The shared circuit breaker is open: no call was made (or no more).
    CircuitOpen { retry_after_s: u32 },
}

impl std::fmt::Display for N8nError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            N8nError::NotFound => f.write_str("n8n: workflow not found"),
            N8nError::Rejected(m) => write!(f, "n8n refused the change: {m}"),
            N8nError::Conflict(m) => write!(f, "n8n conflict: {m}"),
            N8nError::Unauthorized => f.write_str("n8n refused the API key"),
            N8nError::Timeout => f.write_str("n8n did not answer in time"),
            N8nError::Failed(m) => write!(f, "n8n failed: {m}"),
            N8nError::CircuitOpen { retry_after_s } => {
                write!(f, "n8n circuit breaker open for {retry_after_s} s")
            }
        }
    }
}

impl N8nError {
    /// The answer to the caller. n8n's messages about the workflow are
    /// passed on (they name nodes, never credentials); the rest is ours.
    pub fn to_api_error(&self) -> ApiError {
        let err = match self {
            N8nError::NotFound => ApiError::new(
                ErrorCode::WorkflowNotFound,
                "n8n does not know this workflow (deleted, or not shared with the API key)",
            ),
            N8nError::Rejected(m) => ApiError::new(
                ErrorCode::WorkflowRejected,
                format!("n8n refused the change: {m}"),
            ),
            N8nError::Conflict(m) => ApiError::new(
                ErrorCode::WorkflowConflict,
                format!("n8n refused the change: {m}"),
            ),
            N8nError::Unauthorized => ApiError::new(
                ErrorCode::UpstreamFailed,
                "the workflow engine refused our credentials; operators have been alerted",
            ),
            N8nError::Timeout => ApiError::new(
                ErrorCode::UpstreamTimeout,
                "Workflow engine timeout: n8n may still apply the change; the campaign follows what n8n reports",
            ),
            N8nError::Failed(_) => ApiError::new(
                ErrorCode::UpstreamFailed,
                "the workflow engine failed; retry later",
            ),
            N8nError::CircuitOpen { retry_after_s } => ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the workflow engine is failing; calls to it are paused",
            )
            .with_retry_after(*retry_after_s),
        };
        err.with_cause(self.to_string())
    }

    /// Whether the same request would meet the same answer: n8n's own
    /// refusals are; failures to reach it are not.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            N8nError::NotFound | N8nError::Rejected(_) | N8nError::Conflict(_)
        )
    }
}

/// One attempt's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Answered(Value),
    /// Worth another attempt (and counts against the breaker).
    Retry(N8nError),
    Final(N8nError),
}

/// What one HTTP exchange with n8n means.
pub fn classify(result: &Result<Fetched, FetchError>) -> Attempt {
    let fetched = match result {
        Ok(fetched) => fetched,
        Err(FetchError::Timeout(_)) => return Attempt::Retry(N8nError::Timeout),
        Err(FetchError::Transport(why)) => return Attempt::Retry(N8nError::Failed(why.clone())),
    };
    let message = || n8n_message(&fetched.body);
    match fetched.status {
        200..=299 => match serde_json::from_str(&fetched.body) {
            Ok(value) => Attempt::Answered(value),
            Err(_) => Attempt::Retry(N8nError::Failed("the answer is not JSON".into())),
        },
        400 => Attempt::Final(N8nError::Rejected(message())),
        401 | 403 => Attempt::Final(N8nError::Unauthorized),
        404 => Attempt::Final(N8nError::NotFound),
        409 => Attempt::Final(N8nError::Conflict(message())),
        429 => Attempt::Retry(N8nError::Failed("n8n answered 429".into())),
        status @ 500..=599 => Attempt::Retry(N8nError::Failed(format!("n8n answered {status}"))),
        status => Attempt::Final(N8nError::Failed(format!("n8n answered {status}"))),
    }
}

/// n8n's `{"message": ...}`, bounded; never its stack trace.
fn n8n_message(body: &str) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "no reason given".into());
    message.chars().take(300).collect()
}

/// The wait before attempt `next` (1-based retries): 1 s, 2 s, 4 s, ...
pub fn backoff(retry: u32) -> Duration {
    Duration::from_secs(1u64 << retry.saturating_sub(1).min(6))
}

/// A workflow as the toggle and the reconciler need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    /// Published: `activeVersionId` set (`active`, deprecated, when absent).
    pub published: bool,
    pub archived: bool,
    /// The production webhooks its trigger nodes register: (method, path).
    pub webhooks: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawWorkflow {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    active: bool,
    // Present (maybe null) from n8n 1.x's publishing on; absent before it.
    #[serde(default, deserialize_with = "present")]
    active_version_id: Option<Option<String>>,
    #[serde(default)]
    is_archived: bool,
    #[serde(default)]
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
struct RawNode {
    #[serde(rename = "type", default)]
    node_type: String,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    parameters: Value,
}

/// Tells a field that is null from one that is missing.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

impl Workflow {
    pub fn from_json(value: &Value) -> Option<Workflow> {
        let raw = RawWorkflow::deserialize(value).ok()?;
        let published = match raw.active_version_id {
            Some(version) => version.is_some(),
            None => raw.active,
        };
        let webhooks = raw
            .nodes
            .iter()
            .filter(|n| n.node_type == "n8n-nodes-base.webhook" && !n.disabled)
            .filter_map(|n| {
                let path = n.parameters.get("path")?.as_str()?.trim_matches('/');
                let method = n
                    .parameters
                    .get("httpMethod")
                    .and_then(Value::as_str)
                    .unwrap_or("GET");
                (!path.is_empty()).then(|| (method.to_ascii_uppercase(), path.to_string()))
            })
            .collect();
        Some(Workflow {
            id: raw.id,
            name: raw.name,
            published,
            archived: raw.is_archived,
            webhooks,
        })
    }
}

/// One page of `GET /workflows` and the cursor of the next.
pub fn workflows_page(value: &Value) -> Option<(Vec<Workflow>, Option<String>)> {
    let data = value.get("data")?.as_array()?;
    let workflows = data.iter().filter_map(Workflow::from_json).collect();
    let next = value
        .get("nextCursor")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Some((workflows, next))
}

/// Whether a CORS preflight shows the webhook registered for `method`: n8n
/// answers 204 with the path's methods when a published workflow holds it,
/// and an error otherwise. Asks without running the workflow.
pub fn preflight_shows(status: u16, allow_methods: Option<&str>, method: &str) -> bool {
    status == 204
        && allow_methods.is_some_and(|allowed| {
            allowed
                .split(',')
                .any(|m| m.trim().eq_ignore_ascii_case(method))
        })
}

/// How the client counts failures in the shared breaker: the functions
/// implement it with `campaigns.breaker_record`.
pub trait Breaker {
    /// Counts one failed attempt; answers whether the breaker is now open
    /// (and for how long).
    fn failed(&self, why: &str) -> impl Future<Output = Option<u32>>;
}

/// The n8n API over `worker::Fetch`.
pub struct Api<'a, B: Breaker> {
    pub settings: &'a Settings,
    pub breaker: &'a B,
}

impl<B: Breaker> Api<'_, B> {
    pub async fn publish(&self, id: &str) -> Result<Workflow, N8nError> {
        self.workflow(Method::Post, &format!("/workflows/{id}/publish"))
            .await
    }

    pub async fn unpublish(&self, id: &str) -> Result<Workflow, N8nError> {
        self.workflow(Method::Post, &format!("/workflows/{id}/unpublish"))
            .await
    }

    pub async fn get(&self, id: &str) -> Result<Workflow, N8nError> {
        self.workflow(
            Method::Get,
            &format!("/workflows/{id}?excludePinnedData=true"),
        )
        .await
    }

    /// One page of up to 250 workflows (n8n's maximum).
    pub async fn list(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<Workflow>, Option<String>), N8nError> {
        let mut path = "/workflows?limit=250&excludePinnedData=true".to_string();
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.push_str(&urlencode(cursor));
        }
        let value = self.call(Method::Get, &path).await?;
        workflows_page(&value).ok_or_else(|| N8nError::Failed("an unexpected workflow list".into()))
    }

    /// Whether the workflow's webhook answers a preflight as registered.
    pub async fn webhook_live(&self, method: &str, path: &str) -> bool {
        let url = format!("{}/webhook/{path}", self.settings.origin());
        let Ok(request) = fetch::request(
            Method::Options,
            &url,
            &[
                ("origin", self.settings.origin()),
                ("access-control-request-method", method),
            ],
        ) else {
            return false;
        };
        let _permit = Permit::acquire().await;
        match fetch::send(
            request,
            self.settings.timeout,
            &["access-control-allow-methods"],
        )
        .await
        {
            Ok(f) => preflight_shows(f.status, f.header("access-control-allow-methods"), method),
            Err(_) => false,
        }
    }

    async fn workflow(&self, method: Method, path: &str) -> Result<Workflow, N8nError> {
        let value = self.call(method, path).await?;
        Workflow::from_json(&value).ok_or_else(|| N8nError::Failed("an unexpected workflow".into()))
    }

    /// One call with its retries, each attempt inside the isolate's limit.
    pub async fn call(&self, method: Method, path: &str) -> Result<Value, N8nError> {
        let url = format!("{}{path}", self.settings.api_url);
        let mut last = N8nError::Failed("no attempt was made".into());
        for attempt in 1..=self.settings.attempts {
            if attempt > 1 {
                Delay::from(backoff(attempt - 1)).await;
            }
            let result = {
                let _permit = Permit::acquire().await;
                let request = fetch::request(
                    method.clone(),
                    &url,
                    &[
                        ("x-n8n-api-key", self.settings.api_key.as_str()),
                        ("accept", "application/json"),
                    ],
                )
                .map_err(|e| N8nError::Failed(e.to_string()))?;
                fetch::send(request, self.settings.timeout, &[]).await
            };
            match classify(&result) {
                Attempt::Answered(value) => return Ok(value),
                Attempt::Final(err) => return Err(err),
                Attempt::Retry(err) => {
                    if let Some(retry_after_s) = self.breaker.failed(&err.to_string()).await {
                        // Other isolates are failing too: stop now. A timeout
                        // stays a timeout for the caller.
                        return Err(match err {
                            N8nError::Timeout => N8nError::Timeout,
                            _ => N8nError::CircuitOpen { retry_after_s },
                        });
                    }
                    last = err;
                }
            }
        }
        Err(last)
    }
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s[1..].to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- the limit

thread_local! {
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
    static WAITING: RefCell<VecDeque<Waker>> = const { RefCell::new(VecDeque::new()) };
}

/// One of the isolate's `MAX_CONCURRENT` slots for a call to n8n; released
/// on drop, waking the next waiter. (An isolate runs on one thread.)
struct Permit;

impl Permit {
    fn acquire() -> impl Future<Output = Permit> {
        Acquire
    }
}

struct Acquire;

impl Future for Acquire {
    type Output = Permit;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        if IN_FLIGHT.with(|n| n.get()) < MAX_CONCURRENT {
            IN_FLIGHT.with(|n| n.set(n.get() + 1));
            Poll::Ready(Permit)
        } else {
            WAITING.with(|w| w.borrow_mut().push_back(cx.waker().clone()));
            Poll::Pending
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        IN_FLIGHT.with(|n| n.set(n.get() - 1));
        if let Some(next) = WAITING.with(|w| w.borrow_mut().pop_front()) {
            next.wake();
        }
    }
}

/// Calls in flight now (for tests).
pub fn in_flight() -> usize {
    IN_FLIGHT.with(|n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lookup_from as lookup;
    use serde_json::json;

    fn answered(status: u16, body: &str) -> Result<Fetched, FetchError> {
        Ok(Fetched {
            status,
            headers: vec![],
            body: body.into(),
        })
    }

    #[test]
    fn only_failures_to_reach_n8n_are_retried() {
        assert!(matches!(
            classify(&answered(200, r#"{"id":"a"}"#)),
            Attempt::Answered(_)
        ));
        let retried = [
            answered(500, ""),
            answered(503, "{}"),
            answered(429, ""),
            answered(200, "<html>"),
            Err(FetchError::Timeout(Duration::from_secs(5))),
            Err(FetchError::Transport("refused".into())),
        ];
        for result in &retried {
            assert!(matches!(classify(result), Attempt::Retry(_)), "{result:?}");
        }
        assert_eq!(
            classify(&answered(
                400,
                r#"{"message":"Workflow has no node to start the workflow","stacktrace":"x"}"#
            )),
            Attempt::Final(N8nError::Rejected(
                "Workflow has no node to start the workflow".into()
            ))
        );
        assert_eq!(
            classify(&answered(401, "")),
            Attempt::Final(N8nError::Unauthorized)
        );
        assert_eq!(
            classify(&answered(404, "{}")),
            Attempt::Final(N8nError::NotFound)
        );
        assert!(matches!(
            classify(&answered(409, r#"{"message":"conflict"}"#)),
            Attempt::Final(N8nError::Conflict(_))
        ));
    }

    #[test]
    fn refusals_map_to_stable_codes_and_only_n8n_refusals_are_final() {
        let cases = [
            (N8nError::NotFound, 422, true),
            (N8nError::Rejected("x".into()), 422, true),
            (N8nError::Conflict("x".into()), 409, true),
            (N8nError::Unauthorized, 502, false),
            (N8nError::Timeout, 504, false),
            (N8nError::Failed("x".into()), 502, false),
            (N8nError::CircuitOpen { retry_after_s: 7 }, 503, false),
        ];
        for (err, status, is_final) in cases {
            assert_eq!(err.to_api_error().status(), status, "{err}");
            assert_eq!(err.is_final(), is_final, "{err}");
        }
        let open = N8nError::CircuitOpen { retry_after_s: 7 }.to_api_error();
        assert_eq!(open.retry_after_seconds(), Some(7));
        assert!(N8nError::Timeout
            .to_api_error()
            .message
            .starts_with("Workflow engine timeout"));
    }

    #[test]
    fn backoff_doubles_from_one_second() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), Duration::from_secs(64));
    }

    #[test]
    fn a_workflow_is_published_when_it_has_an_active_version() {
        let wf = json!({"id": "w1", "name": "Promo", "active": true, "activeVersionId": null,
        "nodes": [
            {"type": "n8n-nodes-base.webhook", "parameters": {"path": "/promo/", "httpMethod": "POST"}},
            {"type": "n8n-nodes-base.webhook", "disabled": true, "parameters": {"path": "off"}},
            {"type": "n8n-nodes-base.webhook", "parameters": {"path": "get-me"}},
            {"type": "n8n-nodes-base.set", "parameters": {}}
        ]});
        let parsed = Workflow::from_json(&wf).unwrap();
        assert!(
            !parsed.published,
            "activeVersionId null wins over the deprecated active"
        );
        assert_eq!(
            parsed.webhooks,
            [
                ("POST".to_string(), "promo".to_string()),
                ("GET".to_string(), "get-me".to_string())
            ]
        );
        let published = json!({"id": "w1", "activeVersionId": "v9"});
        assert!(Workflow::from_json(&published).unwrap().published);
        let old_n8n = json!({"id": "w1", "active": true});
        assert!(Workflow::from_json(&old_n8n).unwrap().published);
        assert!(Workflow::from_json(&json!({"name": "no id"})).is_none());
    }

    #[test]
    fn pages_carry_their_next_cursor() {
        let page = json!({"data": [{"id": "a", "activeVersionId": "v", "isArchived": true}], "nextCursor": "abc"});
        let (workflows, next) = workflows_page(&page).unwrap();
        assert_eq!((workflows.len(), workflows[0].archived), (1, true));
        assert_eq!(next.as_deref(), Some("abc"));
        let last = json!({"data": [], "nextCursor": null});
        assert_eq!(workflows_page(&last).unwrap().1, None);
        assert!(workflows_page(&json!({"oops": 1})).is_none());
    }

    #[test]
    fn a_preflight_shows_a_registered_webhook() {
        assert!(preflight_shows(204, Some("OPTIONS, POST"), "POST"));
        assert!(!preflight_shows(204, Some("OPTIONS"), "POST"));
        assert!(!preflight_shows(500, Some("OPTIONS, POST"), "POST"));
        assert!(!preflight_shows(204, None, "POST"));
    }

    #[test]
    fn settings_need_the_url_and_key_and_never_show_the_key() {
        let ok = Settings::from_lookup(&lookup(&[
            ("N8N_API_URL", "http://127.0.0.1:54350/api/v1/"),
            ("N8N_API_KEY", "n8n_api_secret"),
        ]))
        .unwrap();
        assert_eq!(ok.api_url, "http://127.0.0.1:54350/api/v1");
        assert_eq!(ok.origin(), "http://127.0.0.1:54350");
        assert_eq!((ok.timeout, ok.attempts), (Duration::from_secs(5), 3));
        assert!(!format!("{ok:?}").contains("n8n_api_secret"));
        let err =
            Settings::from_lookup(&lookup(&[("N8N_API_URL", "http://x/api/v1")])).unwrap_err();
        assert_eq!(err.0, "N8N_API_KEY is not set");
        assert!(
            Settings::from_lookup(&lookup(&[("N8N_API_URL", "x"), ("N8N_API_KEY", "k")])).is_err()
        );
    }

    #[test]
    fn cursors_are_url_encoded() {
        assert_eq!(urlencode("eyJsaW1pdCI6NX0="), "eyJsaW1pdCI6NX0%3D");
    }

    #[test]
    fn the_isolate_runs_at_most_five_calls_at_once() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut permits = Vec::new();
        for _ in 0..MAX_CONCURRENT {
            let mut acquire = Box::pin(Permit::acquire());
            match acquire.as_mut().poll(&mut cx) {
                Poll::Ready(p) => permits.push(p),
                Poll::Pending => panic!("a slot should be free"),
            }
        }
        assert_eq!(in_flight(), MAX_CONCURRENT);
        let mut sixth = Box::pin(Permit::acquire());
        assert!(sixth.as_mut().poll(&mut cx).is_pending());
        permits.pop();
        assert!(matches!(sixth.as_mut().poll(&mut cx), Poll::Ready(_)));
    }
}
