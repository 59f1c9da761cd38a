//! The one error type of the edge functions and the one place that maps its
//! stable string codes to HTTP statuses.
//!
//! Every rejected request is answered with the same envelope:
//! `{"ok":false,"error":{"code","message","details"?},"correlation_id"}`.
//! Codes are part of the public contract: callers branch on them, so a code is
//! never renamed, only added.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    MethodNotAllowed,
    PayloadTooLarge,
    MissingHeader,
    InvalidHeader,
    TimestampOutOfWindow,
    InvalidSignature,
    Forbidden,
    InvalidJson,
    ValidationFailed,
    IdempotencyConflict,
    ReplayedRequest,
    UpstreamUnavailable,
    Misconfigured,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::MissingHeader,
        ErrorCode::InvalidHeader,
        ErrorCode::TimestampOutOfWindow,
        ErrorCode::InvalidSignature,
        ErrorCode::Forbidden,
        ErrorCode::InvalidJson,
        ErrorCode::ValidationFailed,
        ErrorCode::IdempotencyConflict,
        ErrorCode::ReplayedRequest,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::Misconfigured,
        ErrorCode::Internal,
    ];

    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::MissingHeader => "missing_header",
            ErrorCode::InvalidHeader => "invalid_header",
            ErrorCode::TimestampOutOfWindow => "timestamp_out_of_window",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::ReplayedRequest => "replayed_request",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::Misconfigured => "server_misconfigured",
            ErrorCode::Internal => "internal_error",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::MissingHeader | ErrorCode::InvalidHeader | ErrorCode::InvalidJson => 400,
            ErrorCode::TimestampOutOfWindow | ErrorCode::InvalidSignature => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::ValidationFailed => 422,
            ErrorCode::IdempotencyConflict | ErrorCode::ReplayedRequest => 409,
            ErrorCode::UpstreamUnavailable => 503,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    pub fn envelope(&self, correlation_id: &str) -> Value {
        let mut error = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(details) = &self.details {
            error["details"] = details.clone();
        }
        json!({ "ok": false, "error": error, "correlation_id": correlation_id })
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

    #[test]
    fn every_code_is_unique_and_maps_to_an_error_status() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(
                seen.insert(code.as_str()),
                "duplicate code {}",
                code.as_str()
            );
            assert!((400..600).contains(&code.http_status()));
        }
    }

    #[test]
    fn client_faults_are_4xx_and_only_upstream_faults_are_retryable() {
        for code in ErrorCode::ALL {
            let retry = code.retry_after_seconds().is_some();
            assert_eq!(retry, code.http_status() == 503, "{}", code.as_str());
        }
        assert_eq!(ErrorCode::ReplayedRequest.http_status(), 409);
        assert_eq!(ErrorCode::PayloadTooLarge.http_status(), 413);
    }

    #[test]
    fn envelope_carries_code_message_details_and_correlation_id() {
        let err = ApiError::new(ErrorCode::ValidationFailed, "bad fields")
            .with_details(json!([{ "field": "event_type", "problem": "required" }]));
        let body = err.envelope("cid-1");
        assert_eq!(body["ok"], false);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["message"], "bad fields");
        assert_eq!(body["error"]["details"][0]["field"], "event_type");
        assert_eq!(body["correlation_id"], "cid-1");
        let plain = ApiError::new(ErrorCode::InvalidJson, "x").envelope("c");
        assert!(plain["error"].get("details").is_none());
    }
}
