//! Building Workers responses: JSON bodies, the error envelope, and the
//! headers every answer carries.

use serde_json::Value;
use worker::{Headers, Response};

use crate::correlation;
use crate::error::{ApiError, ErrorCode};
use crate::log::Log;

pub fn json(status: u16, body: &Value, correlation_id: &str) -> worker::Result<Response> {
    json_with_headers(status, body, correlation_id, &[])
}

pub fn error(err: &ApiError, correlation_id: &str) -> worker::Result<Response> {
    let retry_after = err.code.retry_after_seconds().map(|s| s.to_string());
    let extra: Vec<(&str, &str)> = retry_after
        .iter()
        .map(|s| ("retry-after", s.as_str()))
        .collect();
    json_with_headers(
        err.status(),
        &err.envelope(correlation_id),
        correlation_id,
        &extra,
    )
}

/// The answer to a refused or failed request, and its one log line:
/// `rejected` (4xx) or `failed` (5xx). Every function here takes POST only,
/// so a 405 says `Allow: POST`.
pub fn refusal(err: &ApiError, log: &Log<'_>) -> worker::Result<Response> {
    let fields = serde_json::json!({ "code": err.code.as_str(), "status": err.status() });
    if err.status() >= 500 {
        log.error("failed", fields);
    } else {
        log.warn("rejected", fields);
    }
    if err.code == ErrorCode::MethodNotAllowed {
        let body = err.envelope(log.correlation_id);
        return json_with_headers(405, &body, log.correlation_id, &[("allow", "POST")]);
    }
    error(err, log.correlation_id)
}

pub fn json_with_headers(
    status: u16,
    body: &Value,
    correlation_id: &str,
    extra: &[(&str, &str)],
) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set(correlation::HEADER, correlation_id)?;
    for (name, value) in extra {
        headers.set(name, value)?;
    }
    Ok(Response::ok(body.to_string())?
        .with_status(status)
        .with_headers(headers))
}
