//! A status change as n8n's hooks report it (seed 5.11, with `renamed`,
//! `updated` and `deleted` added, and optional `event_id` and `actor`):
//!
//! ```json
//! {"workflow_id": "Ab12", "workflow_name": "Black Friday", "active": true,
//!  "timestamp": "2026-11-24T06:00:00.123Z", "event_type": "activation",
//!  "event_id": "...", "actor": "ops@example.com"}
//! ```
//!
//! Validated here before anything is written; the database applies it.

use chrono::DateTime;
use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard_shared::error::{ApiError, ErrorCode, Problem};
use switchyard_shared::rpc::campaigns::ApplyWorkflowEvent;

pub const EVENT_TYPES: [&str; 6] = [
    "activation",
    "deactivation",
    "renamed",
    "updated",
    "deleted",
    "error",
];

/// Parses the body into the RPC's arguments. `event_id` is the body's, else
/// the Standard Webhooks id, else a digest of the body: the same report
/// delivered twice is one event.
pub fn parse(body: &[u8], webhook_id: Option<&str>) -> Result<ApplyWorkflowEvent, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not JSON"))?;
    let Value::Object(fields) = value else {
        return Err(invalid(vec![Problem::new(
            "(body)",
            "must be a JSON object",
        )]));
    };
    let mut problems = Vec::new();
    let text = |name: &str| fields.get(name).and_then(Value::as_str);

    let workflow_id = text("workflow_id").unwrap_or("");
    if !(1..=64).contains(&workflow_id.len())
        || !workflow_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        problems.push(Problem::new(
            "workflow_id",
            "must be 1 to 64 letters, digits, _ or -",
        ));
    }
    let event_type = text("event_type").unwrap_or("");
    if !EVENT_TYPES.contains(&event_type) {
        problems.push(Problem::new(
            "event_type",
            format!("must be one of {}", EVENT_TYPES.join(", ")),
        ));
    }
    let workflow_name = match fields.get("workflow_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if name.chars().count() <= 400 && !name.contains('\0') => {
            Some(name.clone())
        }
        Some(_) => {
            problems.push(Problem::new(
                "workflow_name",
                "must be a string of at most 400 characters",
            ));
            None
        }
    };
    if workflow_name.is_none() && event_type == "renamed" {
        problems.push(Problem::new(
            "workflow_name",
            "a renamed event carries the new name",
        ));
    }
    let active = match fields.get("active") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(active)) => Some(*active),
        Some(_) => {
            problems.push(Problem::new("active", "must be true or false"));
            None
        }
    };
    match (event_type, active) {
        ("activation", Some(false)) | ("deactivation", Some(true)) => problems.push(Problem::new(
            "active",
            format!("contradicts event_type {event_type}"),
        )),
        ("activation" | "deactivation" | "updated", None) => {
            problems.push(Problem::new("active", "is required for this event_type"))
        }
        _ => {}
    }
    let occurred_at = match text("timestamp").map(DateTime::parse_from_rfc3339) {
        Some(Ok(at)) => Some(at),
        _ => {
            problems.push(Problem::new("timestamp", "must be an RFC 3339 timestamp"));
            None
        }
    };
    let event_id = match (fields.get("event_id"), webhook_id) {
        (Some(Value::String(id)), _) if (1..=200).contains(&id.len()) && !id.contains('\0') => {
            id.clone()
        }
        (Some(_), _) => {
            problems.push(Problem::new("event_id", "must be 1 to 200 characters"));
            String::new()
        }
        (None, Some(id)) => id.to_string(),
        (None, None) => format!("sha256:{}", &hex::encode(Sha256::digest(body))[..40]),
    };
    let actor = match fields.get("actor") {
        None | Some(Value::Null) => None,
        Some(Value::String(who))
            if who.chars().count() <= 200 && !who.chars().any(char::is_control) =>
        {
            Some(who.clone())
        }
        Some(_) => {
            problems.push(Problem::new(
                "actor",
                "must be a string of at most 200 characters",
            ));
            None
        }
    };
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    Ok(ApplyWorkflowEvent {
        p_event_id: event_id,
        p_workflow_id: workflow_id.to_string(),
        p_workflow_name: workflow_name,
        p_active: active,
        p_event_type: event_type.to_string(),
        p_occurred_at: occurred_at.map(|at| at.to_rfc3339()).unwrap_or_default(),
        p_actor: actor,
        p_source: "webhook".into(),
    })
}

/// The seed's scheme signs no header timestamp: the body's `timestamp`,
/// covered by the MAC, must be within the window, so a captured request
/// stops working after it (and within it, its event id makes it a duplicate).
pub fn check_signed_time(
    event: &ApplyWorkflowEvent,
    now_ms: i64,
    tolerance_ms: i64,
) -> Result<(), ApiError> {
    let at_ms = DateTime::parse_from_rfc3339(&event.p_occurred_at)
        .map(|at| at.timestamp_millis())
        .unwrap_or(i64::MIN);
    if (now_ms - at_ms).abs() > tolerance_ms {
        return Err(ApiError::new(
            ErrorCode::TimestampOutOfWindow,
            "timestamp is too far from the receiver's clock",
        ));
    }
    Ok(())
}

fn invalid(problems: Vec<Problem>) -> ApiError {
    ApiError::invalid("the status change is invalid", problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_497_600_000; // 2026-11-24T05:20:00Z

    fn fields_of(err: &ApiError) -> Vec<String> {
        err.details
            .as_ref()
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_seeds_payload_is_an_event_keyed_by_its_digest() {
        let body = br#"{"workflow_id":"Ab12","workflow_name":"Promo","active":true,"timestamp":"2026-11-24T05:20:00.250Z","event_type":"activation"}"#;
        let event = parse(body, None).unwrap();
        assert_eq!(event.p_workflow_id, "Ab12");
        assert_eq!(event.p_active, Some(true));
        assert_eq!(event.p_occurred_at, "2026-11-24T05:20:00.250+00:00");
        assert!(event.p_event_id.starts_with("sha256:"));
        assert_eq!(parse(body, None).unwrap().p_event_id, event.p_event_id);
        assert_eq!(parse(body, Some("msg_1")).unwrap().p_event_id, "msg_1");
        assert!(check_signed_time(&event, NOW, 300_000).is_ok());
        let late = check_signed_time(&event, NOW + 301_000, 300_000).unwrap_err();
        assert_eq!(late.code, ErrorCode::TimestampOutOfWindow);
        assert!(check_signed_time(&event, NOW - 301_000, 300_000).is_err());
    }

    #[test]
    fn renamed_deleted_and_contradictions() {
        let renamed = parse(br#"{"workflow_id":"a","event_type":"renamed","workflow_name":"New","timestamp":"2026-11-24T05:20:00Z"}"#, None).unwrap();
        assert_eq!(
            (renamed.p_active, renamed.p_workflow_name.as_deref()),
            (None, Some("New"))
        );
        let deleted = parse(br#"{"workflow_id":"a","event_type":"deleted","timestamp":"2026-11-24T05:20:00Z","event_id":"e1","actor":"ops@x"}"#, None).unwrap();
        assert_eq!(
            (deleted.p_event_id.as_str(), deleted.p_actor.as_deref()),
            ("e1", Some("ops@x"))
        );
        let err = parse(br#"{"workflow_id":"a b","event_type":"activation","active":false,"timestamp":"yesterday"}"#, None).unwrap_err();
        assert_eq!(fields_of(&err), ["workflow_id", "active", "timestamp"]);
        let err = parse(
            br#"{"workflow_id":"a","event_type":"renamed","timestamp":"2026-11-24T05:20:00Z"}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(fields_of(&err), ["workflow_name"]);
        let err = parse(
            br#"{"workflow_id":"a","event_type":"updated","timestamp":"2026-11-24T05:20:00Z"}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(fields_of(&err), ["active"]);
        assert_eq!(parse(b"[]", None).unwrap_err().status(), 422);
        assert_eq!(parse(b"{", None).unwrap_err().code, ErrorCode::InvalidJson);
    }

    proptest! {
        #[test]
        fn any_body_is_an_event_or_a_client_error(body in "\\PC{0,300}") {
            if let Err(err) = parse(body.as_bytes(), None) {
                prop_assert!((400..500).contains(&err.status()));
            }
        }
    }
}
