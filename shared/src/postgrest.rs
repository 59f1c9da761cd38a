//! A small typed client for PostgREST RPCs over `worker::Fetch`.
//!
//! Chosen over the `postgrest` crate, which pulls reqwest into the wasm (see
//! README, "Why not the postgrest crate"). Each state change is one RPC; the
//! client never composes read-modify-write sequences.
//!
//! Outcomes are classified in one place (`classify`): 2xx is data; 5xx, a
//! timeout or a refused connection means PostgREST or Postgres is down and the
//! caller should answer 503; any other status is a refusal whose `message`
//! may name one of our stable error codes (SQL raises them with
//! `ERRCODE = 'PT409'` etc.).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::SupabaseConfig;
use crate::error::{ApiError, ErrorCode};
use crate::{correlation, fetch};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// PostgREST's error body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PostgrestError {
    #[serde(skip)]
    pub status: u16,
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
    /// 2xx with a body that is not the expected JSON.
    Decode(String),
}

impl RpcError {
    /// Refusals whose message is one of our stable codes pass through; the
    /// rest are our bug or misconfiguration, not the caller's.
    pub fn into_api_error(self) -> ApiError {
        match self {
            RpcError::Unavailable(_) => ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the database is unavailable; retry later",
            ),
            RpcError::Refused(err) => {
                match err
                    .message
                    .as_deref()
                    .and_then(ErrorCode::parse)
                    .filter(|c| c.http_status() < 500)
                {
                    Some(code) => {
                        let message = err
                            .details
                            .clone()
                            .unwrap_or_else(|| code.as_str().replace('_', " "));
                        ApiError::new(code, message)
                    }
                    None => ApiError::new(ErrorCode::Internal, "the database refused the request"),
                }
            }
            RpcError::Decode(_) => {
                ApiError::new(ErrorCode::Internal, "the database answered unexpectedly")
            }
        }
    }
}

pub fn classify(status: u16, body: &str) -> Result<Value, RpcError> {
    match status {
        200..=299 if body.trim().is_empty() => Ok(Value::Null),
        200..=299 => serde_json::from_str(body).map_err(|e| RpcError::Decode(e.to_string())),
        500..=599 => Err(RpcError::Unavailable(format!(
            "PostgREST answered {status}"
        ))),
        _ => {
            let mut err: PostgrestError = serde_json::from_str(body).unwrap_or_default();
            err.status = status;
            Err(RpcError::Refused(err))
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    config: SupabaseConfig,
    timeout: Duration,
}

impl Client {
    pub fn new(config: SupabaseConfig) -> Self {
        Client {
            config,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `POST /rest/v1/rpc/{function}` in `schema`, as the service role.
    pub async fn rpc(
        &self,
        schema: &str,
        function: &str,
        args: &Value,
        correlation_id: &str,
    ) -> Result<Value, RpcError> {
        let url = format!("{}/rest/v1/rpc/{function}", self.config.url);
        let bearer = format!("Bearer {}", self.config.service_role_key);
        let request = fetch::post(
            &url,
            &[
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("content-profile", schema),
                ("apikey", self.config.service_role_key.as_str()),
                ("authorization", bearer.as_str()),
                (correlation::HEADER, correlation_id),
            ],
            args.to_string(),
        )
        .map_err(|e| RpcError::Unavailable(e.to_string()))?;
        match fetch::send(request, self.timeout, &[]).await {
            Ok(fetched) => classify(fetched.status, &fetched.body),
            Err(e) => Err(RpcError::Unavailable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_bodies_are_json_or_null() {
        assert_eq!(
            classify(200, r#"{"event_id":"x"}"#).unwrap()["event_id"],
            "x"
        );
        assert_eq!(classify(204, "").unwrap(), Value::Null);
        assert!(matches!(
            classify(200, "not json"),
            Err(RpcError::Decode(_))
        ));
    }

    #[test]
    fn server_faults_are_unavailable_and_become_503() {
        for status in [500, 502, 503, 504] {
            let err = classify(
                status,
                r#"{"code":"PGRST001","message":"Database client error"}"#,
            )
            .unwrap_err();
            assert!(matches!(err, RpcError::Unavailable(_)));
            let api = err.into_api_error();
            assert_eq!(api.status(), 503);
            assert_eq!(api.code, ErrorCode::UpstreamUnavailable);
        }
    }

    #[test]
    fn refusals_naming_a_client_code_pass_through() {
        let body = r#"{"code":"PT409","message":"idempotency_conflict","details":"key reused with another payload","hint":null}"#;
        let api = classify(409, body).unwrap_err().into_api_error();
        assert_eq!(api.code, ErrorCode::IdempotencyConflict);
        assert_eq!(api.status(), 409);
        assert_eq!(api.message, "key reused with another payload");
    }

    #[test]
    fn other_refusals_are_internal_errors_without_database_text() {
        for (status, body) in [
            (
                404,
                r#"{"code":"PGRST202","message":"Could not find the function"}"#,
            ),
            (401, r#"{"code":"PGRST301","message":"JWT invalid"}"#),
            (409, r#"{"code":"PT409","message":"upstream_unavailable"}"#),
            (400, "<html>"),
        ] {
            let api = classify(status, body).unwrap_err().into_api_error();
            assert_eq!(api.code, ErrorCode::Internal, "{body}");
            assert!(!api.message.contains("PGRST"));
        }
    }
}
