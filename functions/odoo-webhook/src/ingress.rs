//! The decisions of the Odoo ingress, free of the Workers runtime: what an
//! event is, which bodies are refused and why, and what the ingest RPC is
//! asked to do. Every value that reaches the database has been checked here
//! against what Postgres can store, so an authentic but unstorable event is a
//! 422 naming its field, not a database error.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use switchyard_shared::error::{ApiError, ErrorCode, Problem};
use switchyard_shared::rpc::integration::{
    BatchOutcome, BatchRow, BatchStatus, IngestEvent, IngestEvents, Ingested,
};
use switchyard_shared::rpc::RawJson;
use switchyard_shared::signature::{is_idempotency_key, Verified};
use switchyard_shared::time::parse_timestamptz;

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
    /// The payload's own bytes, stored as they came.
    pub payload: RawJson,
    /// Normalised (see `parse_timestamptz`).
    pub occurred_at: Option<String>,
}

/// Parses and validates the body, reporting every invalid field at once.
pub fn parse_event(body: &[u8]) -> Result<Event, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not valid JSON"))?;
    let Value::Object(fields) = value else {
        return Err(invalid(vec![Problem::new(
            "(body)",
            "must be a JSON object",
        )]));
    };
    let mut problems = Vec::new();
    let event = check_event(&fields, &mut problems);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    Ok(Event {
        payload: raw_payload(body)?,
        ..event
    })
}

/// An event's fields, each checked; what is wrong goes to `problems`, by
/// field. The payload is checked but not kept (see `raw_payload`).
fn check_event(fields: &Map<String, Value>, problems: &mut Vec<Problem>) -> Event {
    let event_type = name_field(fields, "event_type", problems);
    let aggregate_type = name_field(fields, "aggregate_type", problems);
    let aggregate_id = match fields.get("aggregate_id") {
        None | Some(Value::Null) => {
            problems.push(Problem::new("aggregate_id", "is required"));
            String::new()
        }
        Some(Value::String(s))
            if !s.is_empty()
                && s.chars().count() <= MAX_AGGREGATE_ID_LEN
                && !s.chars().any(char::is_control) =>
        {
            s.clone()
        }
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(_) => {
            problems.push(Problem::new(
                "aggregate_id",
                "must be a non-empty string of at most 128 characters without control characters, or an integer",
            ));
            String::new()
        }
    };
    match fields.get("payload") {
        Some(payload @ Value::Object(_)) => {
            find_nul(&mut String::from("payload"), payload, problems)
        }
        None | Some(Value::Null) => problems.push(Problem::new("payload", "is required")),
        Some(_) => problems.push(Problem::new("payload", "must be a JSON object")),
    }
    let occurred_at = match fields.get("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match parse_timestamptz(s) {
            Ok(normalised) => Some(normalised),
            Err(problem) => {
                problems.push(Problem::new("occurred_at", problem));
                None
            }
        },
        Some(_) => {
            problems.push(Problem::new(
                "occurred_at",
                "must be an RFC 3339 date-time string",
            ));
            None
        }
    };
    Event {
        event_type,
        aggregate_type,
        aggregate_id,
        payload: RawJson::default(),
        occurred_at,
    }
}

/// The most events one batch may carry.
pub const MAX_BATCH_EVENTS: usize = 500;
const MAX_CORRELATION_ID_LEN: usize = 128;

/// One event of a batch: its own idempotency key and, optionally, its own
/// correlation id (else the request's).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchEvent {
    pub idempotency_key: String,
    pub correlation_id: Option<String>,
    pub event: Event,
}

/// A batch body, `{"events": [...]}` with 1 to 500 events: each event
/// parsed on its own, so one invalid event does not refuse the others. Only
/// a body that is not such an object is refused whole.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Result<BatchEvent, Vec<Problem>>>, ApiError> {
    #[derive(Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        events: Option<Vec<&'a RawValue>>,
    }
    #[derive(Deserialize)]
    struct Payload<'a> {
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not valid JSON"))?;
    let events = match &value {
        Value::Object(fields) => match fields.get("events") {
            Some(Value::Array(events)) if (1..=MAX_BATCH_EVENTS).contains(&events.len()) => events,
            _ => return Err(invalid_batch("must be an array of 1 to 500 events")),
        },
        _ => {
            return Err(invalid(vec![Problem::new(
                "(body)",
                "must be a JSON object",
            )]))
        }
    };
    // The events' own bytes, for payloads stored exactly as sent.
    let raw = serde_json::from_slice::<Batch>(body)
        .ok()
        .and_then(|b| b.events)
        .ok_or_else(|| invalid_batch("must appear once"))?;
    Ok(events
        .iter()
        .zip(raw)
        .map(|(value, raw)| {
            let Value::Object(fields) = value else {
                return Err(vec![Problem::new("(event)", "must be a JSON object")]);
            };
            let mut problems = Vec::new();
            let idempotency_key = match fields.get("idempotency_key") {
                Some(Value::String(key)) if is_idempotency_key(key) => key.clone(),
                None | Some(Value::Null) => {
                    problems.push(Problem::new("idempotency_key", "is required"));
                    String::new()
                }
                Some(_) => {
                    problems.push(Problem::new(
                        "idempotency_key",
                        "must be 1 to 255 visible ASCII characters",
                    ));
                    String::new()
                }
            };
            let correlation_id = match fields.get("correlation_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(id))
                    if (1..=MAX_CORRELATION_ID_LEN).contains(&id.len())
                        && !id.chars().any(char::is_control) =>
                {
                    Some(id.clone())
                }
                Some(_) => {
                    problems.push(Problem::new(
                        "correlation_id",
                        "must be 1 to 128 characters without control characters",
                    ));
                    None
                }
            };
            let event = check_event(fields, &mut problems);
            if !problems.is_empty() {
                return Err(problems);
            }
            let payload = serde_json::from_str::<Payload>(raw.get())
                .map_err(|_| vec![Problem::new("payload", "must appear once")])?;
            Ok(BatchEvent {
                idempotency_key,
                correlation_id,
                event: Event {
                    payload: RawJson(payload.payload.to_owned()),
                    ..event
                },
            })
        })
        .collect())
}

/// A batch in which no event is valid: refused whole, each event's problems
/// named by its position (`events[3].payload`).
pub fn all_invalid(events: &[Result<BatchEvent, Vec<Problem>>]) -> ApiError {
    let problems = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().err().map(|p| (i, p)))
        .flat_map(|(i, problems)| {
            problems
                .iter()
                .map(move |p| Problem::new(format!("events[{i}].{}", p.field), p.problem.clone()))
        })
        .collect();
    ApiError::invalid("no event of the batch is valid", problems)
}

fn invalid_batch(problem: &str) -> ApiError {
    ApiError::invalid(
        "the batch is invalid",
        vec![Problem::new("events", problem)],
    )
}

/// The payload exactly as sent. Validation above read it as a `Value`; what
/// is stored is the original text, so no number is rounded on the way.
fn raw_payload(body: &[u8]) -> Result<RawJson, ApiError> {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| RawJson(b.payload.to_owned()))
        .map_err(|_| invalid(vec![Problem::new("payload", "must appear once")]))
}

/// Postgres text and jsonb cannot hold U+0000; reports each string or key
/// that has one by its path (`payload.items[2].name`).
fn find_nul(path: &mut String, value: &Value, problems: &mut Vec<Problem>) {
    const PROBLEM: &str = "must not contain the character U+0000, which the database cannot store";
    match value {
        Value::String(s) if s.contains('\0') => problems.push(Problem::new(path.clone(), PROBLEM)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                find_nul(path, item, problems);
                path.truncate(len);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                let len = path.len();
                path.push('.');
                path.push_str(&key.replace('\0', "\\u0000"));
                if key.contains('\0') {
                    problems.push(Problem::new(path.clone(), PROBLEM));
                }
                find_nul(path, item, problems);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// `event_type` and `aggregate_type` are dotted names such as
/// `expense.submitted` or `hr.expense`.
fn name_field(fields: &Map<String, Value>, name: &str, problems: &mut Vec<Problem>) -> String {
    match fields.get(name) {
        Some(Value::String(s)) if is_name(s) => s.clone(),
        None | Some(Value::Null) => {
            problems.push(Problem::new(name, "is required"));
            String::new()
        }
        Some(_) => {
            problems.push(Problem::new(name, "must be 1 to 100 characters of letters, digits and . _ : -, starting with a letter or digit"));
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

fn invalid(problems: Vec<Problem>) -> ApiError {
    ApiError::invalid("the event is invalid", problems)
}

/// Arguments of `integration.ingest_event`.
pub fn ingest_args(event: &Event, verified: &Verified, correlation_id: &str) -> IngestEvent {
    IngestEvent {
        p_source: SOURCE.into(),
        p_idempotency_key: verified.idempotency_key.clone(),
        p_event_type: event.event_type.clone(),
        p_aggregate_type: event.aggregate_type.clone(),
        p_aggregate_id: event.aggregate_id.clone(),
        p_payload: event.payload.clone(),
        p_occurred_at: event.occurred_at.clone(),
        p_correlation_id: correlation_id.into(),
        p_scheme: verified.scheme.as_str().into(),
        p_signing_key_id: verified.key_id.clone(),
        p_replay_digest: verified.replay_digest.clone(),
        p_replay_expires_at_ms: verified.signature_expires_at_ms,
    }
}

/// Arguments of `integration.ingest_events`: the batch's valid events, in
/// order.
pub fn ingest_batch_args(
    events: &[Result<BatchEvent, Vec<Problem>>],
    verified: &Verified,
    correlation_id: &str,
) -> IngestEvents {
    IngestEvents {
        p_source: SOURCE.into(),
        p_events: events
            .iter()
            .flatten()
            .map(|e| BatchRow {
                idempotency_key: e.idempotency_key.clone(),
                event_type: e.event.event_type.clone(),
                aggregate_type: e.event.aggregate_type.clone(),
                aggregate_id: e.event.aggregate_id.clone(),
                payload: e.event.payload.clone(),
                occurred_at: e.event.occurred_at.clone(),
                correlation_id: e.correlation_id.clone(),
            })
            .collect(),
        p_correlation_id: correlation_id.into(),
        p_scheme: verified.scheme.as_str().into(),
        p_signing_key_id: verified.key_id.clone(),
    }
}

/// The batch's answer: counts, and one result per event in the order sent.
/// `outcomes` are the database's, one per valid event, in order.
pub fn batch_body(events: &[Result<BatchEvent, Vec<Problem>>], outcomes: &[BatchOutcome]) -> Value {
    let mut outcomes = outcomes.iter();
    let results: Vec<Value> = events
        .iter()
        .map(|event| {
            let event = match event {
                Err(problems) => {
                    return json!({ "status": "invalid", "error": invalid(problems.clone()).error_object() })
                }
                Ok(event) => event,
            };
            let key = &event.idempotency_key;
            match outcomes.next().map(|o| (o.status, &o.event_id)) {
                Some((BatchStatus::Accepted, id)) => {
                    json!({ "idempotency_key": key, "status": "accepted", "event_id": id })
                }
                Some((BatchStatus::Duplicate, id)) => {
                    json!({ "idempotency_key": key, "status": "duplicate", "event_id": id })
                }
                _ => {
                    let conflict = ApiError::new(
                        ErrorCode::IdempotencyConflict,
                        "this idempotency key was already used for a different event",
                    );
                    json!({ "idempotency_key": key, "status": "conflict", "error": conflict.error_object() })
                }
            }
        })
        .collect();
    let count = |status: &str| results.iter().filter(|r| r["status"] == status).count();
    json!({
        "accepted": count("accepted"),
        "duplicates": count("duplicate"),
        "conflicts": count("conflict"),
        "invalid": count("invalid"),
        "results": results,
    })
}

pub fn success_body(ingested: &Ingested) -> Value {
    json!({ "event_id": ingested.event_id, "duplicate": ingested.duplicate })
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

    fn batch(events: &str) -> Vec<Result<BatchEvent, Vec<Problem>>> {
        parse_batch(format!(r#"{{"events":[{events}]}}"#).as_bytes()).unwrap()
    }

    const GOOD: &str = r#"{"idempotency_key":"task:1:overdue","event_type":"finance_task.overdue","aggregate_type":"project.task","aggregate_id":1,"payload":{"amount":1.10}}"#;

    #[test]
    fn a_batch_parses_each_event_on_its_own() {
        let events = batch(&format!(
            r#"{GOOD},{{"idempotency_key":"k2","event_type":"","aggregate_type":"t","aggregate_id":"2","payload":[]}},
               {{"event_type":"x","aggregate_type":"t","aggregate_id":"3","payload":{{}},"correlation_id":"cid-3"}},
               7"#
        ));
        assert_eq!(events.len(), 4);
        let first = events[0].as_ref().unwrap();
        assert_eq!(first.idempotency_key, "task:1:overdue");
        assert_eq!(first.event.aggregate_id, "1");
        assert_eq!(
            first.event.payload.0.get(),
            r#"{"amount":1.10}"#,
            "the payload's own bytes"
        );
        assert_eq!(first.correlation_id, None);
        let fields = |i: usize| -> Vec<String> {
            events[i]
                .as_ref()
                .unwrap_err()
                .iter()
                .map(|p| p.field.clone())
                .collect()
        };
        assert_eq!(fields(1), ["event_type", "payload"]);
        assert_eq!(
            fields(2),
            ["idempotency_key"],
            "every event names its own key"
        );
        assert_eq!(fields(3), ["(event)"]);
    }

    #[test]
    fn a_batch_body_that_is_not_one_is_refused_whole() {
        for (body, code) in [
            ("{", ErrorCode::InvalidJson),
            ("[]", ErrorCode::ValidationFailed),
            (r#"{"events":[]}"#, ErrorCode::ValidationFailed),
            (r#"{"events":{}}"#, ErrorCode::ValidationFailed),
            (r#"{"event":[{}]}"#, ErrorCode::ValidationFailed),
        ] {
            assert_eq!(
                parse_batch(body.as_bytes()).unwrap_err().code,
                code,
                "{body}"
            );
        }
        let many = vec![GOOD; MAX_BATCH_EVENTS + 1].join(",");
        let err = parse_batch(format!(r#"{{"events":[{many}]}}"#).as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationFailed);
        let full = vec![GOOD; MAX_BATCH_EVENTS].join(",");
        assert_eq!(batch(&full).len(), MAX_BATCH_EVENTS);
    }

    #[test]
    fn bad_keys_and_correlation_ids_are_the_events_problems() {
        for key in [
            r#""""#,
            r#""has space""#,
            "12",
            &format!(r#""{}""#, "k".repeat(256)),
        ] {
            let events = batch(&GOOD.replace(r#""task:1:overdue""#, key));
            assert_eq!(
                events[0].as_ref().unwrap_err()[0].field,
                "idempotency_key",
                "{key}"
            );
        }
        let with_cid = GOOD.replace(
            "{\"idempotency_key\"",
            "{\"correlation_id\":\"\\u0001\",\"idempotency_key\"",
        );
        assert_eq!(
            batch(&with_cid)[0].as_ref().unwrap_err()[0].field,
            "correlation_id"
        );
    }

    #[test]
    fn a_batch_answers_every_event_in_order() {
        let events = batch(&format!(r#"{GOOD},{GOOD},{{"payload":{{}}}},{GOOD}"#));
        let outcome = |status, id: &str| BatchOutcome {
            status,
            event_id: id.into(),
        };
        let body = batch_body(
            &events,
            &[
                outcome(BatchStatus::Accepted, "e1"),
                outcome(BatchStatus::Duplicate, "e1"),
                outcome(BatchStatus::Conflict, "e0"),
            ],
        );
        assert_eq!(
            [
                &body["accepted"],
                &body["duplicates"],
                &body["conflicts"],
                &body["invalid"]
            ],
            [1, 1, 1, 1]
        );
        let results = body["results"].as_array().unwrap();
        assert_eq!(results[0]["status"], "accepted");
        assert_eq!(results[0]["event_id"], "e1");
        assert_eq!(results[1]["status"], "duplicate");
        assert_eq!(results[2]["status"], "invalid");
        assert_eq!(results[2]["error"]["code"], "validation_failed");
        assert_eq!(results[3]["status"], "conflict");
        assert_eq!(results[3]["error"]["code"], "idempotency_conflict");
        assert!(
            results[3].get("event_id").is_none(),
            "a conflict does not reveal the other event"
        );
        let all_bad = all_invalid(&batch(r#"{"payload":{}},3"#));
        let fields: Vec<_> = all_bad
            .details
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap().to_string())
            .collect();
        assert!(fields.contains(&"events[0].idempotency_key".to_string()));
        assert!(fields.contains(&"events[1].(event)".to_string()));
    }

    #[test]
    fn the_seed_example_is_valid() {
        let e = parse_event(
            br#"{"event_type":"test","aggregate_type":"test","aggregate_id":"1","payload":{}}"#,
        )
        .unwrap();
        assert_eq!(e.event_type, "test");
        assert_eq!(e.aggregate_id, "1");
        assert_eq!(e.payload.0.get(), "{}");
        assert_eq!(e.occurred_at, None);
    }

    #[test]
    fn integer_aggregate_ids_and_occurred_at_are_accepted() {
        let e = parse_event(
            br#"{"event_type":"expense.submitted","aggregate_type":"hr.expense","aggregate_id":42,"payload":{"amount":12.5},"occurred_at":"2026-01-22T07:26:26Z","extra":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(e.aggregate_id, "42");
        assert_eq!(
            e.occurred_at.as_deref(),
            Some("2026-01-22T07:26:26.000000Z")
        );
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
    fn values_postgres_cannot_store_are_refused_by_field() {
        let cases = [
            (r#""payload":{"note":"a\u0000b"}"#, vec!["payload.note"]),
            (
                r#""payload":{"items":[{"x":1},{"name":"\u0000"}]}"#,
                vec!["payload.items[1].name"],
            ),
            (r#""payload":{"k\u0000":1}"#, vec!["payload.k\\u0000"]),
            (
                r#""payload":{},"occurred_at":"2026-02-30T00:00:00Z""#,
                vec!["occurred_at"],
            ),
            (
                r#""payload":{},"occurred_at":"2026-01-01T00:00:00+23:00""#,
                vec!["occurred_at"],
            ),
            (
                r#""payload":{},"occurred_at":"0000-01-01T00:00:00Z""#,
                vec!["occurred_at"],
            ),
            (
                r#""payload":{},"occurred_at":"2026-06-30T23:59:60Z""#,
                vec!["occurred_at"],
            ),
            (r#""payload":{},"occurred_at":7"#, vec!["occurred_at"]),
        ];
        for (tail, fields) in cases {
            let body =
                format!(r#"{{"event_type":"t","aggregate_type":"t","aggregate_id":"1",{tail}}}"#);
            let (code, found) = codes_and_fields(&body);
            assert_eq!(code, ErrorCode::ValidationFailed, "{body}");
            assert_eq!(found, fields, "{body}");
        }
    }

    #[test]
    fn payloads_are_stored_as_sent_with_every_digit() {
        let e = parse_event(br#"{"event_type":"t","aggregate_type":"t","aggregate_id":"1","payload":{"big":18446744073709551617,"tiny":1e-400, "n":[ 1.50 ]}}"#).unwrap();
        assert_eq!(
            e.payload.0.get(),
            r#"{"big":18446744073709551617,"tiny":1e-400, "n":[ 1.50 ]}"#
        );
        let twice = br#"{"event_type":"t","aggregate_type":"t","aggregate_id":"1","payload":{},"payload":{"a":1}}"#;
        assert_eq!(
            codes_and_fields(std::str::from_utf8(twice).unwrap()).1,
            ["payload"]
        );
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
        let args = serde_json::to_value(ingest_args(&event, &verified, "cid-1")).unwrap();
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
    fn the_success_body_names_the_event() {
        let id = "2f2d6e04-26d4-4325-bbfb-9d127aee5241".parse().unwrap();
        let body = success_body(&Ingested {
            event_id: id,
            duplicate: true,
        });
        assert_eq!(
            body,
            json!({ "event_id": "2f2d6e04-26d4-4325-bbfb-9d127aee5241", "duplicate": true })
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|f| json!(f)),
                "\\PC{0,12}|\\u{0}|[a\\u{0}]{1,3}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("\\PC{0,6}|k\\u{0}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// Any bytes: a result or a 4xx refusal, never a panic or a 5xx.
            #[test]
            fn arbitrary_bodies_are_accepted_or_refused_with_a_client_code(body in prop::collection::vec(any::<u8>(), 0..200)) {
                if let Err(err) = parse_event(&body) {
                    prop_assert!((400..500).contains(&err.status()));
                }
            }

            /// Whatever JSON is sent, an accepted event holds nothing Postgres
            /// refuses, and a refused one names a field.
            #[test]
            fn accepted_events_are_storable(
                event_type in "[a-z][a-z._:-]{0,8}|\\PC{0,5}",
                aggregate_id in prop_oneof![any::<i64>().prop_map(|n| json!(n)), "\\PC{0,10}".prop_map(Value::String), json_value()],
                payload in json_value(),
                occurred_at in prop_oneof![Just(Value::Null), "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([Zz]|[+-][0-9]{2}:[0-9]{2})".prop_map(Value::String)],
            ) {
                let body = json!({
                    "event_type": event_type, "aggregate_type": "hr.expense",
                    "aggregate_id": aggregate_id, "payload": payload, "occurred_at": occurred_at,
                });
                match parse_event(body.to_string().as_bytes()) {
                    Ok(event) => {
                        prop_assert!(is_name(&event.event_type));
                        prop_assert!(!event.aggregate_id.is_empty() && !event.aggregate_id.contains('\0'));
                        prop_assert!(!event.payload.0.get().contains("\\u0000"));
                        if let Some(at) = &event.occurred_at {
                            prop_assert_eq!(parse_timestamptz(at), Ok(at.clone()));
                        }
                    }
                    Err(err) => {
                        prop_assert_eq!(err.code, ErrorCode::ValidationFailed);
                        let details = err.details.unwrap();
                        prop_assert!(!details.as_array().unwrap().is_empty());
                    }
                }
            }
        }
    }
}
