//! The one error type of the edge functions and the one place that maps its
//! stable string codes to HTTP statuses.
//!
//! Every rejected request is answered with the same envelope:
//! `{"ok":false,"error":{"code","message","details"?},"correlation_id"}`.
//! Codes are part of the public contract: callers branch on them, so a code is
//! never renamed, only added. The variant list is the only list of codes: the
//! strings come from strum's derive, the statuses from `http_status`'s
//! exhaustive match, and tests iterate the enum itself.

use serde_json::{json, Value};
use strum::{EnumIter, IntoEnumIterator, IntoStaticStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    MethodNotAllowed,
    PayloadTooLarge,
    MissingHeader,
    InvalidHeader,
    TimestampOutOfWindow,
    InvalidSignature,
    /// No credentials, or credentials that are not recognised.
    Unauthorized,
    /// Recognised credentials that may not do this.
    Forbidden,
    InvalidJson,
    ValidationFailed,
    IdempotencyConflict,
    ReplayedRequest,
    /// A lease token that no longer holds its lease (SQL `stale_lease`).
    StaleLease,
    /// The resource is in a state that does not allow this change (SQL
    /// `invalid_state`): approving a run that is not awaiting approval.
    InvalidState,
    /// No such resource, or one the caller may not see (they look the same).
    NotFound,
    /// A campaign with no n8n workflow to toggle.
    CampaignNotLinked,
    /// Too many requests from this caller; `Retry-After` says when to retry.
    RateLimited,
    /// Another toggle of the same campaign has not finished.
    ToggleInProgress,
    /// The resource changed between reading and writing it.
    VersionConflict,
    /// n8n does not know the workflow (or does not share it with our key).
    WorkflowNotFound,
    /// n8n refused the change: a workflow without a trigger, or with node
    /// configuration issues.
    WorkflowRejected,
    /// n8n refused the change because it conflicts with another workflow
    /// (a webhook path already in use).
    WorkflowConflict,
    /// An upstream (n8n) failed or refused our credentials.
    UpstreamFailed,
    /// An upstream (n8n) did not answer in time, retries included.
    UpstreamTimeout,
    UpstreamUnavailable,
    #[strum(serialize = "server_misconfigured")]
    Misconfigured,
    #[strum(serialize = "internal_error")]
    Internal,
}

impl ErrorCode {
    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::iter().find(|c| c.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::MissingHeader
            | ErrorCode::InvalidHeader
            | ErrorCode::InvalidJson
            | ErrorCode::CampaignNotLinked => 400,
            ErrorCode::TimestampOutOfWindow
            | ErrorCode::InvalidSignature
            | ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::ValidationFailed
            | ErrorCode::WorkflowNotFound
            | ErrorCode::WorkflowRejected => 422,
            ErrorCode::IdempotencyConflict
            | ErrorCode::ReplayedRequest
            | ErrorCode::StaleLease
            | ErrorCode::InvalidState
            | ErrorCode::ToggleInProgress
            | ErrorCode::VersionConflict
            | ErrorCode::WorkflowConflict => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::UpstreamFailed => 502,
            ErrorCode::UpstreamUnavailable => 503,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::Misconfigured | ErrorCode::Internal => 500,
        }
    }

    /// Seconds a caller should wait before retrying, for the faults that are
    /// worth retrying unchanged.
    pub fn retry_after_seconds(self) -> Option<u32> {
        match self {
            ErrorCode::UpstreamUnavailable => Some(5),
            _ => None,
        }
    }

    pub fn all() -> impl Iterator<Item = ErrorCode> {
        ErrorCode::iter()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    /// What went wrong inside, for the request's log line only; never sent.
    pub cause: Option<String>,
    /// `Retry-After` seconds when known better than the code's default
    /// (a rate limit's window, an open circuit breaker).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: None,
            cause: None,
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// `Retry-After` for this answer: its own, else the code's default.
    pub fn retry_after_seconds(&self) -> Option<u32> {
        self.retry_after.or(self.code.retry_after_seconds())
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// `validation_failed` with one `{field, problem}` entry per problem.
    pub fn invalid(message: impl Into<String>, problems: Vec<Problem>) -> Self {
        let details = problems
            .into_iter()
            .map(|p| json!({ "field": p.field, "problem": p.problem }))
            .collect();
        ApiError::new(ErrorCode::ValidationFailed, message).with_details(Value::Array(details))
    }

    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    /// The message with each named field (`validation_failed`'s details), for
    /// callers who read text: an agent correcting its arguments, a chat user.
    pub fn explained(&self) -> String {
        let fields: Vec<String> = self
            .details
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}: {}",
                    p["field"].as_str().unwrap_or("?"),
                    p["problem"].as_str().unwrap_or("?")
                )
            })
            .collect();
        if fields.is_empty() {
            self.message.clone()
        } else {
            format!("{} ({})", self.message, fields.join("; "))
        }
    }

    pub fn envelope(&self, correlation_id: &str) -> Value {
        json!({ "ok": false, "error": self.error_object(), "correlation_id": correlation_id })
    }

    /// The envelope's `error`: also what a batch answers for one refused item.
    pub fn error_object(&self) -> Value {
        let mut error = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(details) = &self.details {
            error["details"] = details.clone();
        }
        error
    }
}

/// One invalid field of a request, as `validation_failed` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_round_trips_is_unique_and_maps_to_an_error_status() {
        let mut seen = HashSet::new();
        for code in ErrorCode::all() {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert!((400..600).contains(&code.http_status()));
            assert!(code
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        assert_eq!(ErrorCode::parse("Internal"), None);
        assert_eq!(ErrorCode::Misconfigured.as_str(), "server_misconfigured");
    }

    #[test]
    fn client_faults_are_4xx_and_only_upstream_faults_are_retryable() {
        for code in ErrorCode::all() {
            let retry = code.retry_after_seconds().is_some();
            assert_eq!(retry, code.http_status() == 503, "{}", code.as_str());
        }
    }

    #[test]
    fn envelope_carries_code_message_details_and_correlation_id_but_never_the_cause() {
        let err = ApiError::invalid(
            "bad fields",
            vec![Problem::new("event_type", "is required")],
        )
        .with_cause("db said: secret-ish detail");
        let body = err.envelope("cid-1");
        assert_eq!(body["ok"], false);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["message"], "bad fields");
        assert_eq!(body["error"]["details"][0]["field"], "event_type");
        assert_eq!(body["correlation_id"], "cid-1");
        assert!(!body.to_string().contains("secret-ish"));
        let explained = ApiError::invalid(
            "the request is invalid",
            vec![Problem::new("project_id", "no project has this id")],
        );
        assert_eq!(
            explained.explained(),
            "the request is invalid (project_id: no project has this id)"
        );
        assert_eq!(ApiError::new(ErrorCode::Forbidden, "no").explained(), "no");
        let plain = ApiError::new(ErrorCode::InvalidJson, "x").envelope("c");
        assert!(plain["error"].get("details").is_none());
    }

    /// Every `raise ... using errcode = 'PTnnn', message = '<code>'` in the
    /// live schema names a known code whose status is nnn, so no refusal from
    /// SQL surfaces as `internal_error` or with another status than PostgREST's.
    /// Read from supabase/schema.sql, the dump of the migrated database.
    #[test]
    fn every_message_raised_by_sql_is_a_known_code_with_the_same_status() {
        // Raised by triggers on tables no function writes directly.
        const SQL_ONLY: [&str; 1] = ["event_log_immutable"];
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../supabase/schema.sql");
        let schema = std::fs::read_to_string(path).expect("supabase/schema.sql exists");
        let mut raised = 0;
        for raise in schema.split("raise exception using").skip(1) {
            let clause = &raise[..raise.find(';').unwrap_or(raise.len())];
            let quoted = |key: &str| {
                let at = clause.find(key)? + key.len();
                let rest = clause[at..].trim_start().strip_prefix('=')?.trim_start();
                let rest = rest.strip_prefix('\'')?;
                Some(rest[..rest.find('\'')?].to_string())
            };
            let (Some(errcode), Some(message)) = (quoted("errcode"), quoted("message")) else {
                panic!("a raise without errcode and message: {clause}");
            };
            raised += 1;
            if SQL_ONLY.contains(&message.as_str()) {
                continue;
            }
            let code = ErrorCode::parse(&message)
                .unwrap_or_else(|| panic!("SQL raises unknown code {message:?}"));
            let status = errcode
                .strip_prefix("PT")
                .and_then(|s| s.parse::<u16>().ok());
            assert_eq!(
                status,
                Some(code.http_status()),
                "{message} is raised with errcode {errcode}"
            );
        }
        assert!(raised >= 5, "found only {raised} raises in schema.sql");
    }
}
