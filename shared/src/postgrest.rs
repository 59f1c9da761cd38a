//! A small typed client for PostgREST RPCs over `worker::Fetch`.
//!
//! Chosen over the `postgrest` crate, which pulls reqwest into the wasm (see
//! README, "Why not the postgrest crate"). Each state change is one RPC; the
//! client never composes read-modify-write sequences. Arguments and results
//! are Rust types (`Rpc`), decoded strictly: a key the SQL renamed is an
//! error, never a silent default.
//!
//! Outcomes are classified in one place (`classify`, `RpcError::into_api_error`):
//! 2xx is data; 5xx, a timeout, a refused connection or an error without a
//! SQLSTATE means PostgREST or Postgres is down and the caller should answer
//! 503; a 4xx is a refusal whose
//! `message` may name one of our stable error codes (SQL raises them with
//! `ERRCODE = 'PT409'` etc.), or whose SQLSTATE says the caller's data could
//! not be stored.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::SupabaseConfig;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::{correlation, fetch};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One SQL function exposed by PostgREST: its schema, name, arguments (the
/// implementing type, serialised as the JSON body) and result.
pub trait Rpc: Serialize {
    const SCHEMA: &'static str;
    const NAME: &'static str;
    type Output: DeserializeOwned;
}

/// PostgREST's error body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PostgrestError {
    #[serde(skip)]
    pub status: u16,
    /// A SQLSTATE (`22P05`, `PT409`) or a PostgREST code (`PGRST202`).
    pub code: Option<String>,
    pub message: Option<String>,
    pub details: Option<String>,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// PostgREST or the database could not be reached or answered 5xx.
    Unavailable(String),
    /// PostgREST answered 4xx.
    Refused(PostgrestError),
    /// PostgREST refused the user's JWT the call was made with.
    UserRejected(PostgrestError),
    /// 2xx with a body that is not the expected JSON.
    Decode(String),
}

impl RpcError {
    /// Refusals whose message is one of our stable client codes pass through;
    /// SQLSTATE classes 22 (data exception) and 23 (integrity constraint) mean
    /// a value from the request cannot be stored: `validation_failed`. A
    /// rejected JWT is `unauthorized` (only a user's JWT can be rejected; the
    /// service role key is checked at start-up by every call working). The
    /// rest are our bug or misconfiguration, not the caller's. The database's
    /// own words go to the log (`cause`), never to the caller.
    pub fn into_api_error(self) -> ApiError {
        let cause = self.to_string();
        let err = match self {
            RpcError::Unavailable(_) => ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the database is unavailable; retry later",
            ),
            RpcError::Refused(err) => refusal(err),
            RpcError::UserRejected(_) => {
                ApiError::new(ErrorCode::Unauthorized, "the bearer token was not accepted")
            }
            RpcError::Decode(_) => {
                ApiError::new(ErrorCode::Internal, "the database answered unexpectedly")
            }
        };
        err.with_cause(cause)
    }
}

/// For logs: what failed, with the database's code and words.
impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Unavailable(why) => write!(f, "unavailable: {why}"),
            RpcError::Decode(why) => write!(f, "unexpected answer: {why}"),
            RpcError::Refused(e) | RpcError::UserRejected(e) => write!(
                f,
                "refused {} {}: {} {}",
                e.status,
                e.code.as_deref().unwrap_or("-"),
                e.message.as_deref().unwrap_or(""),
                e.details.as_deref().unwrap_or("")
            ),
        }
    }
}

impl From<RpcError> for ApiError {
    fn from(err: RpcError) -> Self {
        err.into_api_error()
    }
}

fn refusal(err: PostgrestError) -> ApiError {
    let ours = err
        .message
        .as_deref()
        .and_then(ErrorCode::parse)
        .filter(|c| c.http_status() < 500);
    let sqlstate = err.code.as_deref().unwrap_or("");
    match ours {
        Some(ErrorCode::ValidationFailed) => ApiError::invalid(
            "the request is invalid",
            vec![Problem::new(
                err.hint.as_deref().unwrap_or("(request)"),
                err.details.as_deref().unwrap_or("is invalid"),
            )],
        ),
        Some(code) => {
            let message = err
                .details
                .unwrap_or_else(|| code.as_str().replace('_', " "));
            let refused = ApiError::new(code, message);
            // A rate limit's hint is the seconds until the window has room.
            match err.hint.as_deref().and_then(|h| h.parse::<u32>().ok()) {
                Some(seconds) if code == ErrorCode::RateLimited => {
                    refused.with_retry_after(seconds)
                }
                _ => refused,
            }
        }
        None if sqlstate.starts_with("22") || sqlstate.starts_with("23") => ApiError::invalid(
            "the request is invalid",
            vec![Problem::new(
                "(body)",
                format!("holds a value the database cannot store (SQLSTATE {sqlstate})"),
            )],
        ),
        None => ApiError::new(ErrorCode::Internal, "the database refused the request"),
    }
}

/// The outcome of one call: the decoded result, or how it failed.
pub fn classify<T: DeserializeOwned>(status: u16, body: &str) -> Result<T, RpcError> {
    match status {
        200..=299 => {
            let body = if body.trim().is_empty() { "null" } else { body };
            serde_json::from_str(body).map_err(|e| RpcError::Decode(e.to_string()))
        }
        500..=599 => Err(RpcError::Unavailable(format!(
            "PostgREST answered {status}"
        ))),
        _ => {
            let mut err: PostgrestError = serde_json::from_str(body).unwrap_or_default();
            err.status = status;
            // An error without a SQLSTATE was made by libpq, not by the server:
            // the pooled connection broke under the call (Postgres restarting).
            // PostgREST answers it 400, its default for codes it does not know
            // (PostgREST issues #3214, #4681); it is the database being away.
            if err.code.as_deref() == Some("") {
                return Err(RpcError::Unavailable(format!(
                    "PostgREST answered {status} without a SQLSTATE: {}",
                    err.message.as_deref().unwrap_or("")
                )));
            }
            Err(RpcError::Refused(err))
        }
    }
}

/// Who the database sees: the service role, or the caller whose JWT is
/// forwarded so that RLS decides.
#[derive(Clone)]
enum Identity {
    ServiceRole,
    User(String),
}

#[derive(Clone)]
pub struct Client {
    config: SupabaseConfig,
    identity: Identity,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Calls as the service role: for functions acting for the platform.
    pub fn service(config: SupabaseConfig) -> Self {
        Client {
            config,
            identity: Identity::ServiceRole,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Calls as the user whose JWT this is: PostgREST verifies it and RLS
    /// applies, exactly as if the user called the RPC.
    pub fn as_user(config: SupabaseConfig, jwt: &str) -> Self {
        Client {
            config,
            identity: Identity::User(jwt.to_string()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The headers of a call, in order; the values hold credentials.
    fn headers<'a>(
        &'a self,
        schema: &'a str,
        bearer: &'a str,
        correlation_id: &'a str,
    ) -> [(&'a str, &'a str); 6] {
        let apikey = match self.identity {
            Identity::ServiceRole => self.config.service_role_key.as_str(),
            Identity::User(_) => self
                .config
                .anon_key
                .as_deref()
                .unwrap_or(&self.config.service_role_key),
        };
        [
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("content-profile", schema),
            ("apikey", apikey),
            ("authorization", bearer),
            (correlation::HEADER, correlation_id),
        ]
    }

    /// `POST /rest/v1/rpc/{R::NAME}` in `R::SCHEMA`.
    pub async fn call<R: Rpc>(
        &self,
        args: &R,
        correlation_id: &str,
    ) -> Result<R::Output, RpcError> {
        let url = format!("{}/rest/v1/rpc/{}", self.config.url, R::NAME);
        let token = match &self.identity {
            Identity::ServiceRole => &self.config.service_role_key,
            Identity::User(jwt) => jwt,
        };
        let bearer = format!("Bearer {token}");
        let body = serde_json::to_string(args).map_err(|e| RpcError::Decode(e.to_string()))?;
        let request = fetch::post(
            &url,
            &self.headers(R::SCHEMA, &bearer, correlation_id),
            body,
        )
        .map_err(|e| RpcError::Unavailable(e.to_string()))?;
        match fetch::send(request, self.timeout, &[]).await {
            Ok(fetched) => match (classify(fetched.status, &fetched.body), &self.identity) {
                (Err(RpcError::Refused(e)), Identity::User(_)) if e.status == 401 => {
                    Err(RpcError::UserRejected(e))
                }
                (outcome, _) => outcome,
            },
            Err(e) => Err(RpcError::Unavailable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Accepted {
        event_id: String,
        duplicate: bool,
    }

    fn api(status: u16, body: &str) -> ApiError {
        classify::<Value>(status, body)
            .unwrap_err()
            .into_api_error()
    }

    #[test]
    fn success_bodies_decode_strictly_into_their_type() {
        let ok: Accepted = classify(200, r#"{"event_id":"x","duplicate":false}"#).unwrap();
        assert_eq!(
            ok,
            Accepted {
                event_id: "x".into(),
                duplicate: false
            }
        );
        assert_eq!(classify::<()>(204, "").unwrap(), ());
        for body in [
            "not json",
            r#"{"event_id":"x"}"#,
            r#"{"id":"x","duplicate":false}"#,
        ] {
            assert!(
                matches!(classify::<Accepted>(200, body), Err(RpcError::Decode(_))),
                "a renamed or missing key must not decode: {body}"
            );
        }
    }

    #[test]
    fn server_faults_are_unavailable_and_become_503() {
        for status in [500, 502, 503, 504] {
            let err = api(
                status,
                r#"{"code":"PGRST001","message":"Database client error"}"#,
            );
            assert_eq!(err.status(), 503);
            assert_eq!(err.code, ErrorCode::UpstreamUnavailable);
            assert_eq!(
                err.cause.as_deref(),
                Some(format!("unavailable: PostgREST answered {status}").as_str())
            );
        }
    }

    #[test]
    fn an_error_without_a_sqlstate_is_a_lost_connection_and_becomes_503() {
        let err = api(
            400,
            r#"{"code":"","message":"server closed the connection unexpectedly","details":null,"hint":null}"#,
        );
        assert_eq!(err.status(), 503);
        assert_eq!(err.code, ErrorCode::UpstreamUnavailable);
        // A missing code is not the same thing: that body is not PostgREST's.
        assert_eq!(api(400, r#"{"message":"x"}"#).code, ErrorCode::Internal);
    }

    #[test]
    fn refusals_naming_a_client_code_pass_through() {
        let body = r#"{"code":"PT409","message":"idempotency_conflict","details":"key reused with another payload","hint":null}"#;
        let err = api(409, body);
        assert_eq!(err.code, ErrorCode::IdempotencyConflict);
        assert_eq!(err.status(), 409);
        assert_eq!(err.message, "key reused with another payload");
        let stale = api(
            409,
            r#"{"code":"PT409","message":"stale_lease","details":"gone"}"#,
        );
        assert_eq!(stale.code, ErrorCode::StaleLease);
    }

    #[test]
    fn sql_validation_failures_carry_details_naming_the_field() {
        let body = r#"{"code":"PT422","message":"validation_failed","details":"p_batch_size must be 1 to 1000","hint":"p_batch_size"}"#;
        let err = api(400, body);
        assert_eq!(err.status(), 422);
        assert_eq!(err.details.unwrap()[0]["field"], "p_batch_size");
    }

    #[test]
    fn data_the_database_cannot_store_is_a_validation_failure() {
        for sqlstate in ["22P05", "22008", "22009", "23514", "23502"] {
            let body = format!(
                r#"{{"code":"{sqlstate}","message":"unsupported Unicode escape sequence","details":"\\u0000 cannot be converted to text."}}"#
            );
            let err = api(400, &body);
            assert_eq!(err.code, ErrorCode::ValidationFailed, "{sqlstate}");
            let text = err.envelope("c").to_string();
            assert!(
                !text.contains("Unicode escape"),
                "the database's words stay in the log"
            );
            assert!(text.contains(sqlstate));
        }
    }

    #[test]
    fn other_refusals_are_internal_errors_without_database_text() {
        for (status, body) in [
            (
                404,
                r#"{"code":"PGRST202","message":"Could not find the function"}"#,
            ),
            (409, r#"{"code":"PT409","message":"upstream_unavailable"}"#),
            (400, "<html>"),
            (
                403,
                r#"{"code":"42501","message":"permission denied for function"}"#,
            ),
            (401, r#"{"code":"PGRST301","message":"JWT expired"}"#),
        ] {
            let err = api(status, body);
            assert_eq!(err.code, ErrorCode::Internal, "{body}");
            assert!(!err.envelope("c").to_string().contains("PGRST"));
        }
        let rejected = RpcError::UserRejected(PostgrestError::default()).into_api_error();
        assert_eq!(rejected.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn users_are_forwarded_with_the_anon_key_as_apikey() {
        let config = SupabaseConfig {
            url: "http://x".into(),
            service_role_key: "service".into(),
            anon_key: Some("anon".into()),
        };
        let user = Client::as_user(config.clone(), "user.jwt");
        assert_eq!(
            user.headers("s", "Bearer user.jwt", "c")[3],
            ("apikey", "anon")
        );
        let service = Client::service(config);
        assert_eq!(service.headers("s", "b", "c")[3], ("apikey", "service"));
        assert!(!format!("{service:?}").contains("service\""));
    }
}
