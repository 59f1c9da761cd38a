//! Building Workers responses: JSON bodies, the error envelope, and the
//! headers every answer carries.

use serde_json::Value;
use worker::{Headers, Response};

use crate::correlation;
use crate::error::ApiError;

pub fn json(status: u16, body: &Value, correlation_id: &str) -> worker::Result<Response> {
    json_with_headers(status, body, correlation_id, &[])
}

/// The error envelope, with `retry-after` for retryable faults and any
/// `extra` headers (`allow` on a 405).
pub fn error(
    err: &ApiError,
    correlation_id: &str,
    extra: &[(&str, &str)],
) -> worker::Result<Response> {
    let retry_after = err.retry_after_seconds().map(|s| s.to_string());
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(seconds) = &retry_after {
        headers.push(("retry-after", seconds));
    }
    json_with_headers(
        err.status(),
        &err.envelope(correlation_id),
        correlation_id,
        &headers,
    )
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
