//! The decisions of the Odoo ingress, free of the Workers runtime: which
//! requests are refused and why, what an event is, and what the ingest RPC is
//! asked to do.

use serde_json::{json, Map, Value};
use switchyard_shared::error::{ApiError, ErrorCode};
use switchyard_shared::signature::Verified;
use switchyard_shared::time::is_rfc3339;

/// Every event this function records comes from Odoo.
pub const SOURCE: &str = "odoo";
pub const MAX_BODY_BYTES: usize = 256 * 1024;
const MAX_NAME_LEN: usize = 100;
const MAX_AGGREGATE_ID_LEN: usize = 128;

/// An event as Odoo's `send_ipai_event()` posts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub payload: Value,
    pub occurred_at: Option<String>,
}

/// The ingest RPC's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub event_id: String,
    pub duplicate: bool,
}

/// Refuses an oversized body by its declared length before reading it.
pub fn check_declared_length(content_length: Option<&str>) -> Result<(), ApiError> {
    match content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) if n > MAX_BODY_BYTES as u64 => Err(too_large()),
        _ => Ok(()),
    }
}

/// Refuses an oversized body whose length was not (truthfully) declared.
pub fn check_body_length(len: usize) -> Result<(), ApiError> {
    if len > MAX_BODY_BYTES {
        Err(too_large())
    } else {
        Ok(())
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the body exceeds {} KiB", MAX_BODY_BYTES / 1024),
    )
}

/// Parses and validates the body, reporting every invalid field at once.
pub fn parse_event(body: &[u8]) -> Result<Event, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not valid JSON"))?;
    let Value::Object(fields) = value else {
        return Err(invalid(vec![problem("(body)", "must be a JSON object")]));
    };
    let mut problems = Vec::new();
    let event_type = name_field(&fields, "event_type", &mut problems);
    let aggregate_type = name_field(&fields, "aggregate_type", &mut problems);
    let aggregate_id = match fields.get("aggregate_id") {
        None | Some(Value::Null) => {
            problems.push(problem("aggregate_id", "is required"));
            String::new()
        }
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= MAX_AGGREGATE_ID_LEN
                && !s.chars().any(char::is_control) =>
        {
            s.clone()
        }
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(_) => {
            problems.push(problem(
                "aggregate_id",
                "must be a non-empty string of at most 128 characters or an integer",
            ));
            String::new()
        }
    };
    let payload = match fields.get("payload") {
        Some(Value::Object(p)) => Value::Object(p.clone()),
        None | Some(Value::Null) => {
            problems.push(problem("payload", "is required"));
            Value::Null
        }
        Some(_) => {
            problems.push(problem("payload", "must be a JSON object"));
            Value::Null
        }
    };
    let occurred_at = match fields.get("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_rfc3339(s) => Some(s.clone()),
        Some(_) => {
            problems.push(problem(
                "occurred_at",
                "must be an RFC 3339 date-time with an offset",
            ));
            None
        }
    };
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    Ok(Event {
        event_type,
        aggregate_type,
        aggregate_id,
        payload,
        occurred_at,
    })
}

/// `event_type` and `aggregate_type` are dotted names such as
/// `expense.submitted` or `hr.expense`.
fn name_field(fields: &Map<String, Value>, name: &str, problems: &mut Vec<Value>) -> String {
    match fields.get(name) {
        Some(Value::String(s)) if is_name(s) => s.clone(),
        None | Some(Value::Null) => {
            problems.push(problem(name, "is required"));
            String::new()
        }
        Some(_) => {
            problems.push(problem(name, "must be 1 to 100 characters of letters, digits and . _ : -, starting with a letter or digit"));
            String::new()
        }
    }
}

fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && s.len() <= MAX_NAME_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn problem(field: &str, text: &str) -> Value {
    json!({ "field": field, "problem": text })
}

fn invalid(problems: Vec<Value>) -> ApiError {
    ApiError::new(ErrorCode::ValidationFailed, "the event is invalid")
        .with_details(Value::Array(problems))
}

/// Arguments of `integration.ingest_event`.
pub fn ingest_args(event: &Event, verified: &Verified, correlation_id: &str) -> Value {
    json!({
        "p_source": SOURCE,
        "p_idempotency_key": verified.idempotency_key,
        "p_event_type": event.event_type,
        "p_aggregate_type": event.aggregate_type,
        "p_aggregate_id": event.aggregate_id,
        "p_payload": event.payload,
        "p_occurred_at": event.occurred_at,
        "p_correlation_id": correlation_id,
        "p_scheme": verified.scheme.as_str(),
        "p_signing_key_id": verified.key_id,
        "p_replay_digest": verified.replay_digest,
        "p_replay_expires_at_ms": verified.signature_expires_at_ms,
    })
}

pub fn accepted(result: &Value) -> Result<Accepted, ApiError> {
    match (
        result.get("event_id").and_then(Value::as_str),
        result.get("duplicate").and_then(Value::as_bool),
    ) {
        (Some(id), Some(duplicate)) => Ok(Accepted {
            event_id: id.to_string(),
            duplicate,
        }),
        _ => Err(ApiError::new(
            ErrorCode::Internal,
            "the database answered unexpectedly",
        )),
    }
}

pub fn success_body(accepted: &Accepted, correlation_id: &str) -> Value {
    json!({
        "ok": true,
        "event_id": accepted.event_id,
        "duplicate": accepted.duplicate,
        "correlation_id": correlation_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::signature::Scheme;

    fn codes_and_fields(body: &str) -> (ErrorCode, Vec<String>) {
        let err = parse_event(body.as_bytes()).unwrap_err();
        let fields = err
            .details
            .as_ref()
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|p| p["field"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        (err.code, fields)
    }

    #[test]
    fn bodies_over_256_kib_are_refused_declared_or_not() {
        assert!(check_declared_length(Some("262144")).is_ok());
        assert_eq!(
            check_declared_length(Some("262145")).unwrap_err().code,
            ErrorCode::PayloadTooLarge
        );
        assert!(check_declared_length(None).is_ok());
        assert!(check_body_length(MAX_BODY_BYTES).is_ok());
        assert_eq!(
            check_body_length(MAX_BODY_BYTES + 1).unwrap_err().status(),
            413
        );
    }

    #[test]
    fn the_seed_example_is_valid() {
        let e = parse_event(
            br#"{"event_type":"test","aggregate_type":"test","aggregate_id":"1","payload":{}}"#,
        )
        .unwrap();
        assert_eq!(e.event_type, "test");
        assert_eq!(e.aggregate_id, "1");
        assert_eq!(e.payload, json!({}));
        assert_eq!(e.occurred_at, None);
    }

    #[test]
    fn integer_aggregate_ids_and_occurred_at_are_accepted() {
        let e = parse_event(
            br#"{"event_type":"expense.submitted","aggregate_type":"hr.expense","aggregate_id":42,"payload":{"amount":12.5},"occurred_at":"2026-01-22T07:26:26Z","extra":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(e.aggregate_id, "42");
        assert_eq!(e.occurred_at.as_deref(), Some("2026-01-22T07:26:26Z"));
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        for body in ["", "{", "{\"a\":}", "nul"] {
            assert_eq!(
                parse_event(body.as_bytes()).unwrap_err().code,
                ErrorCode::InvalidJson,
                "{body}"
            );
        }
    }

    #[test]
    fn a_non_object_body_is_a_validation_failure() {
        for body in ["[]", "\"x\"", "1", "null"] {
            assert_eq!(
                parse_event(body.as_bytes()).unwrap_err().status(),
                422,
                "{body}"
            );
        }
    }

    #[test]
    fn every_missing_field_is_reported_at_once() {
        let (code, fields) = codes_and_fields("{}");
        assert_eq!(code, ErrorCode::ValidationFailed);
        assert_eq!(
            fields,
            ["event_type", "aggregate_type", "aggregate_id", "payload"]
        );
    }

    #[test]
    fn wrong_types_and_shapes_are_reported_per_field() {
        let cases = [
            (
                r#"{"event_type":"","aggregate_type":"t","aggregate_id":"1","payload":{}}"#,
                "event_type",
            ),
            (
                r#"{"event_type":".x","aggregate_type":"t","aggregate_id":"1","payload":{}}"#,
                "event_type",
            ),
            (
                r#"{"event_type":"has space","aggregate_type":"t","aggregate_id":"1","payload":{}}"#,
                "event_type",
            ),
            (
                r#"{"event_type":7,"aggregate_type":"t","aggregate_id":"1","payload":{}}"#,
                "event_type",
            ),
            (
                r#"{"event_type":"t","aggregate_type":["x"],"aggregate_id":"1","payload":{}}"#,
                "aggregate_type",
            ),
            (
                r#"{"event_type":"t","aggregate_type":"t","aggregate_id":"","payload":{}}"#,
                "aggregate_id",
            ),
            (
                r#"{"event_type":"t","aggregate_type":"t","aggregate_id":1.5,"payload":{}}"#,
                "aggregate_id",
            ),
            (
                r#"{"event_type":"t","aggregate_type":"t","aggregate_id":"1","payload":[]}"#,
                "payload",
            ),
            (
                r#"{"event_type":"t","aggregate_type":"t","aggregate_id":"1","payload":"{}"}"#,
                "payload",
            ),
            (
                r#"{"event_type":"t","aggregate_type":"t","aggregate_id":"1","payload":{},"occurred_at":"yesterday"}"#,
                "occurred_at",
            ),
        ];
        for (body, field) in cases {
            let (code, fields) = codes_and_fields(body);
            assert_eq!(code, ErrorCode::ValidationFailed, "{body}");
            assert_eq!(fields, [field], "{body}");
        }
        let long = format!(
            r#"{{"event_type":"{}","aggregate_type":"t","aggregate_id":"1","payload":{{}}}}"#,
            "a".repeat(101)
        );
        assert_eq!(codes_and_fields(&long).1, ["event_type"]);
    }

    #[test]
    fn ingest_args_carry_verification_and_correlation() {
        let event = parse_event(br#"{"event_type":"asset.reserved","aggregate_type":"maintenance.equipment","aggregate_id":"7","payload":{"booking_id":3}}"#).unwrap();
        let verified = Verified {
            scheme: Scheme::Ipai,
            key_id: "key_abc".into(),
            idempotency_key: "asset.reserved:7:1".into(),
            signature_expires_at_ms: 1_000,
            replay_digest: Some("d".repeat(64)),
        };
        let args = ingest_args(&event, &verified, "cid-1");
        assert_eq!(args["p_source"], "odoo");
        assert_eq!(args["p_idempotency_key"], "asset.reserved:7:1");
        assert_eq!(args["p_payload"]["booking_id"], 3);
        assert_eq!(args["p_occurred_at"], Value::Null);
        assert_eq!(args["p_correlation_id"], "cid-1");
        assert_eq!(args["p_scheme"], "ipai-hmac");
        assert_eq!(args["p_signing_key_id"], "key_abc");
        assert_eq!(args["p_replay_expires_at_ms"], 1_000);
    }

    #[test]
    fn rpc_answers_are_checked() {
        let ok = accepted(&json!({ "event_id": "e1", "duplicate": true })).unwrap();
        assert_eq!(
            ok,
            Accepted {
                event_id: "e1".into(),
                duplicate: true
            }
        );
        assert_eq!(
            accepted(&json!({ "event_id": "e1" })).unwrap_err().code,
            ErrorCode::Internal
        );
        let body = success_body(&ok, "c");
        assert_eq!(
            body,
            json!({ "ok": true, "event_id": "e1", "duplicate": true, "correlation_id": "c" })
        );
    }
}
