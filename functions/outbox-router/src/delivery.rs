//! Every decision about one delivery, as plain Rust: what is sent, how it is
//! signed, how long it may take, and what its outcome means for the queue.

use serde_json::{json, Value};
use switchyard_shared::rpc::integration::{ClaimedEvent, Receipt, RouteFormat, Settlement};
use switchyard_shared::signature::{sign_standard, SigningKey};
use switchyard_shared::time::parse_http_date_ms;

/// The body receivers get, in the route's format. `trace_url` is where a
/// person sees an event's whole path (`{correlation_id}` is replaced).
pub fn body(event: &ClaimedEvent, trace_url: Option<&str>) -> String {
    match event.format {
        RouteFormat::StandardWebhooks => standard_body(event),
        RouteFormat::Chat => json!({ "text": chat_text(event, trace_url) }).to_string(),
    }
}

/// `id` is also the `webhook-id` header, stable across retries, so receivers
/// can deduplicate.
fn standard_body(event: &ClaimedEvent) -> String {
    json!({
        "id": event.id,
        "type": event.event_type,
        "timestamp": event.occurred_at.as_deref().unwrap_or(&event.created_at),
        "source": event.source,
        "aggregate": { "type": event.aggregate_type, "id": event.aggregate_id },
        "data": event.payload,
        "correlation_id": event.correlation_id,
        "attempt": event.attempts,
    })
    .to_string()
}

/// A chat message (Mattermost markdown) a person can act on: what happened,
/// to what, the error, how often, the correlation id and a link. Alerts
/// (`alert.*`) carry `summary`, `subject`, `count` and `details.error`;
/// other events are named by type and aggregate.
pub fn chat_text(event: &ClaimedEvent, trace_url: Option<&str>) -> String {
    let field = |name: &str| event.payload.get(name).and_then(Value::as_str);
    let mut text = match event.event_type.strip_prefix("alert.") {
        Some(kind) => {
            let icon = if kind.ends_with("recovered") {
                "✅"
            } else {
                "🔴"
            };
            let subject = field("subject").unwrap_or(&event.aggregate_id);
            let mut line = format!("{icon} **{}** `{subject}`", title(kind));
            if let Some(count) = event
                .payload
                .get("count")
                .and_then(Value::as_u64)
                .filter(|n| *n > 1)
            {
                line.push_str(&format!(" ({count} times)"));
            }
            if let Some(summary) = field("summary") {
                line.push_str(&format!("\n{summary}"));
            }
            if let Some(error) = event
                .payload
                .pointer("/details/error")
                .and_then(Value::as_str)
            {
                let error: String = error.chars().take(500).collect();
                line.push_str(&format!("\n> {}", error.replace('\n', " ")));
            }
            line
        }
        None => format!(
            "**{}** {} `{}`",
            title(&event.event_type),
            event.aggregate_type,
            event.aggregate_id
        ),
    };
    text.push_str(&format!("\ncorrelation id: `{}`", event.correlation_id));
    if let Some(link) = event
        .payload
        .pointer("/details/link")
        .and_then(Value::as_str)
    {
        text.push_str(&format!(" · [details]({link})"));
    }
    if let Some(template) = trace_url {
        let url = template.replace("{correlation_id}", &event.correlation_id);
        text.push_str(&format!(" · [trace]({url})"));
    }
    text
}

/// `job_dead` -> `Job dead`, `expense.approved` -> `Expense approved`.
fn title(name: &str) -> String {
    let words = name.replace(['_', '.'], " ");
    let mut chars = words.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The request headers, signed with the route's secret (Standard Webhooks).
pub fn headers(
    event: &ClaimedEvent,
    body: &str,
    now_s: i64,
) -> Result<Vec<(&'static str, String)>, String> {
    let key = SigningKey::standard(&event.signing_secret)
        .map_err(|why| format!("the route's signing secret is unusable: {why}"))?;
    Ok(vec![
        ("content-type", "application/json".to_string()),
        ("user-agent", "switchyard-outbox-router".to_string()),
        ("webhook-id", event.id.to_string()),
        ("webhook-timestamp", now_s.to_string()),
        (
            "webhook-signature",
            sign_standard(&key, &event.id.to_string(), now_s, body.as_bytes()),
        ),
        ("x-correlation-id", event.correlation_id.clone()),
    ])
}

/// Time kept back from the lease for settling the batch.
pub const SETTLE_MARGIN_MS: i64 = 3000;
/// Below this a delivery is not started: it could not finish in time.
pub const MIN_DELIVERY_MS: i64 = 100;

/// How long a delivery may take: the route's timeout, cut so the delivery and
/// the settle call end before the lease does. None: too late to start.
pub fn timeout_ms(route_timeout_ms: u64, lease_deadline_ms: i64, now_ms: i64) -> Option<u64> {
    let left = lease_deadline_ms - SETTLE_MARGIN_MS - now_ms;
    let allowed = (route_timeout_ms as i64).min(left);
    (allowed >= MIN_DELIVERY_MS).then_some(allowed as u64)
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answered {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    TimedOut(u64),
    Unreachable(String),
    NotAttempted(String),
}

/// 2xx acks, keeping the receipt the answer carries. Anything else fails the
/// attempt (the queue's backoff decides when to retry); `Retry-After` counts
/// only on 429 and 503, where it means "come back then". The error keeps a
/// short excerpt of the answer for operators.
pub fn settle(event: &ClaimedEvent, outcome: &Outcome, now_ms: i64) -> Settlement {
    let (ok, error, retry_after_seconds) = match outcome {
        Outcome::Answered { status, .. } if (200..300).contains(status) => (true, None, None),
        Outcome::Answered {
            status,
            retry_after,
            body,
        } => {
            let retry_after_seconds = match status {
                429 | 503 => retry_after
                    .as_deref()
                    .and_then(|v| retry_after_seconds(v, now_ms)),
                _ => None,
            };
            let excerpt: String = body.chars().take(200).collect();
            let error = if excerpt.trim().is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", excerpt.trim())
            };
            (false, Some(error), retry_after_seconds)
        }
        Outcome::TimedOut(ms) => (
            false,
            Some(format!("timeout: no answer within {ms} ms")),
            None,
        ),
        Outcome::Unreachable(why) => (false, Some(format!("unreachable: {why}")), None),
        Outcome::NotAttempted(why) => (false, Some(format!("not attempted: {why}")), None),
    };
    Settlement {
        id: event.id,
        lease_token: event.lease_token,
        ok,
        error,
        retry_after_seconds,
        receipt: match outcome {
            Outcome::Answered { body, .. } if ok => receipt(body),
            _ => None,
        },
    }
}

/// The receipt in an acknowledging answer: a JSON object with `execution_id`
/// and maybe `workflow_id` (what the n8n handlers answer), each a number or
/// 1 to 64 letters, digits, `-` and `_` (they end up in links). Anything
/// else is no receipt; the delivery counts all the same.
pub fn receipt(body: &str) -> Option<Receipt> {
    let answer: Value = serde_json::from_str(body).ok()?;
    let id = |name: &str| match answer.get(name)? {
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        Value::String(s)
            if (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(s.clone())
        }
        _ => None,
    };
    Some(Receipt {
        execution_id: id("execution_id")?,
        workflow_id: id("workflow_id"),
    })
}

/// `Retry-After` as delay-seconds or an HTTP date (IMF-fixdate), in whole
/// seconds from now. Unparseable values are ignored.
pub fn retry_after_seconds(value: &str, now_ms: i64) -> Option<u32> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            value
                .parse::<u64>()
                .map_or(u32::MAX, |s| s.min(u32::MAX as u64) as u32),
        );
    }
    let wait_ms = (parse_http_date_ms(value)? - now_ms).max(0);
    Some(((wait_ms + 999) / 1000).min(u32::MAX as i64) as u32)
}

/// Events grouped by target, in claim order, each group with the concurrency
/// its routes allow (the smallest, when several routes share a target).
pub fn by_target(events: &[ClaimedEvent]) -> Vec<(String, usize, Vec<usize>)> {
    let mut groups: Vec<(String, usize, Vec<usize>)> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let limit = event.max_concurrency.max(1);
        match groups
            .iter_mut()
            .find(|(url, _, _)| *url == event.target_url)
        {
            Some((_, concurrency, members)) => {
                *concurrency = (*concurrency).min(limit);
                members.push(i);
            }
            None => groups.push((event.target_url.clone(), limit, vec![i])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use switchyard_shared::signature::verify_standard;
    use uuid::Uuid;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// A UUID whose last byte is `n`, so tests can name events.
    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([
            0x2f, 0x2d, 0x6e, 0x04, 0x26, 0xd4, 0x43, 0x25, 0xbb, 0xfb, 0, 0, 0, 0, 0, n,
        ])
    }

    fn event(n: u8, target: &str, max_concurrency: usize) -> ClaimedEvent {
        serde_json::from_value(json!({
            "id": id(n),
            "lease_token": "7d3f7d1e-7a55-4d6b-9f57-0c2f1d6f8a11",
            "source": "odoo",
            "event_type": "expense.approved",
            "aggregate_type": "hr.expense",
            "aggregate_id": "42",
            "payload": { "amount": 120.5 },
            "occurred_at": "2026-11-22T10:00:00+00:00",
            "correlation_id": "cid-1",
            "attempts": 2,
            "created_at": "2026-11-22T10:00:01+00:00",
            "target_url": target,
            "signing_secret": SECRET,
            "timeout_ms": 5000,
            "max_concurrency": max_concurrency,
            "route_ignored_field": true,
        }))
        .unwrap()
    }

    #[test]
    fn the_body_carries_the_event_and_its_delivery_attempt() {
        let body: Value = serde_json::from_str(&body(&event(1, "http://t", 4), None)).unwrap();
        assert_eq!(body["id"], id(1).to_string());
        assert_eq!(body["type"], "expense.approved");
        assert_eq!(body["timestamp"], "2026-11-22T10:00:00+00:00");
        assert_eq!(
            body["aggregate"],
            json!({ "type": "hr.expense", "id": "42" })
        );
        assert_eq!(body["data"]["amount"], 120.5);
        assert_eq!(body["attempt"], 2);
        assert_eq!(body["correlation_id"], "cid-1");
    }

    #[test]
    fn chat_routes_get_a_message_a_person_can_act_on() {
        let mut alert = event(1, "http://mm", 4);
        alert.format = RouteFormat::Chat;
        alert.event_type = "alert.job_dead".into();
        alert.payload = json!({
            "kind": "job_dead", "subject": "deploy.staging", "count": 3,
            "summary": "deploy.staging failed after 3 attempts",
            "details": { "error": "HTTP 502 from the deploy hook\nretry later", "link": "https://ci.example.com/1" },
        });
        let body: Value = serde_json::from_str(&body(
            &alert,
            Some("https://ops.example.com/trace/{correlation_id}"),
        ))
        .unwrap();
        assert_eq!(
            body["text"],
            "🔴 **Job dead** `deploy.staging` (3 times)\ndeploy.staging failed after 3 attempts\n\
             > HTTP 502 from the deploy hook retry later\ncorrelation id: `cid-1` · \
             [details](https://ci.example.com/1) · [trace](https://ops.example.com/trace/cid-1)"
        );
        alert.event_type = "alert.service_recovered".into();
        alert.payload = json!({ "subject": "odoo", "count": 1 });
        assert_eq!(
            chat_text(&alert, None),
            "✅ **Service recovered** `odoo`\ncorrelation id: `cid-1`"
        );
        let mut plain = event(2, "http://mm", 4);
        plain.format = RouteFormat::Chat;
        assert_eq!(
            chat_text(&plain, None),
            "**Expense approved** hr.expense `42`\ncorrelation id: `cid-1`"
        );
    }

    #[test]
    fn deliveries_verify_as_standard_webhooks_with_the_route_secret() {
        let e = event(1, "http://t", 4);
        let body = body(&e, None);
        let now_s = 1_795_000_000;
        let headers = headers(&e, &body, now_s).unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("webhook-id").unwrap(), id(1).to_string());
        let keys = [SigningKey::standard(SECRET).unwrap()];
        let verified =
            verify_standard(&header, body.as_bytes(), &keys, now_s * 1000, 300_000).unwrap();
        assert_eq!(verified.idempotency_key, id(1).to_string());
        assert!(verify_standard(&header, b"{}", &keys, now_s * 1000, 300_000).is_err());
    }

    #[test]
    fn an_unusable_route_secret_fails_the_delivery_without_showing_it() {
        let mut e = event(1, "http://t", 4);
        e.signing_secret = "whsec_!!!not-base64".into();
        let err = headers(&e, "{}", 0).unwrap_err();
        assert!(!err.contains("not-base64"));
    }

    #[test]
    fn timeouts_end_before_the_lease_with_room_to_settle() {
        let deadline = 60_000;
        assert_eq!(timeout_ms(5000, deadline, 0), Some(5000));
        assert_eq!(timeout_ms(60_000, deadline, 0), Some(57_000));
        assert_eq!(timeout_ms(5000, deadline, 55_000), Some(2000));
        assert_eq!(timeout_ms(5000, deadline, 56_950), None);
        assert_eq!(timeout_ms(5000, deadline, 70_000), None);
    }

    fn answered(status: u16, retry_after: Option<&str>, body: &str) -> Outcome {
        Outcome::Answered {
            status,
            retry_after: retry_after.map(str::to_string),
            body: body.to_string(),
        }
    }

    #[test]
    fn an_acknowledgement_keeps_the_receivers_receipt() {
        let e = event(1, "http://t", 4);
        let n8n = r#"{"ok":true,"event_id":"x","execution_id":"4711","workflow_id":"aBc-12_z"}"#;
        let s = settle(&e, &answered(200, None, n8n), 0);
        assert!(s.ok);
        assert_eq!(
            s.receipt,
            Some(Receipt {
                execution_id: "4711".into(),
                workflow_id: Some("aBc-12_z".into())
            })
        );
        assert_eq!(
            receipt(r#"{"execution_id":12}"#),
            Some(Receipt {
                execution_id: "12".into(),
                workflow_id: None
            })
        );
        let too_long = format!(r#"{{"execution_id":"{}"}}"#, "a".repeat(65));
        for no in [
            "",
            "ok",
            "[]",
            r#"{"ok":true}"#,
            r#"{"execution_id":""}"#,
            r#"{"execution_id":"../x"}"#,
            r#"{"execution_id":-1}"#,
            r#"{"execution_id":null}"#,
            too_long.as_str(),
        ] {
            assert_eq!(receipt(no), None, "{no}");
        }
        assert_eq!(
            receipt(r#"{"execution_id":"7","workflow_id":"<script>"}"#).map(|r| r.workflow_id),
            Some(None),
            "an unusable workflow id is left out"
        );
        let failed = settle(&e, &answered(500, None, n8n), 0);
        assert_eq!(
            failed.receipt, None,
            "only an acknowledgement has a receipt"
        );
        let json = serde_json::to_value(settle(&e, &answered(204, None, ""), 0)).unwrap();
        assert!(json.get("receipt").is_none(), "no receipt, no field");
    }

    #[test]
    fn two_hundreds_ack_and_everything_else_fails() {
        let e = event(1, "http://t", 4);
        for status in [200, 201, 202, 204, 299] {
            let s = settle(&e, &answered(status, None, ""), 0);
            assert!(s.ok && s.error.is_none(), "{status}");
        }
        for status in [301, 400, 401, 404, 410, 422, 500, 502] {
            let s = settle(&e, &answered(status, Some("7"), "nope"), 0);
            assert!(!s.ok);
            assert_eq!(
                s.error.as_deref(),
                Some(format!("HTTP {status}: nope").as_str())
            );
            assert_eq!(
                s.retry_after_seconds, None,
                "Retry-After only on 429 and 503"
            );
        }
        let s = settle(&e, &Outcome::TimedOut(5000), 0);
        assert_eq!(
            s.error.as_deref(),
            Some("timeout: no answer within 5000 ms")
        );
        let s = settle(&e, &Outcome::Unreachable("connection refused".into()), 0);
        assert_eq!(s.error.as_deref(), Some("unreachable: connection refused"));
        assert_eq!(s.id, id(1));
        assert_eq!(s.lease_token, e.lease_token);
    }

    #[test]
    fn retry_after_counts_on_429_and_503() {
        let e = event(1, "http://t", 4);
        for status in [429, 503] {
            let s = settle(&e, &answered(status, Some("120"), ""), 0);
            assert_eq!(s.retry_after_seconds, Some(120));
            assert_eq!(s.error.as_deref(), Some(format!("HTTP {status}").as_str()));
        }
        let s = settle(&e, &answered(503, None, ""), 0);
        assert_eq!(s.retry_after_seconds, None);
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        assert_eq!(retry_after_seconds("0", 0), Some(0));
        assert_eq!(retry_after_seconds(" 30 ", 0), Some(30));
        assert_eq!(retry_after_seconds("99999999999", 0), Some(u32::MAX));
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        let at = 784_111_777_000;
        assert_eq!(
            retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", at - 10_500),
            Some(11)
        );
        assert_eq!(
            retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", at + 5_000),
            Some(0)
        );
        assert_eq!(
            retry_after_seconds("Tue, 29 Feb 2028 00:00:00 GMT", 1_835_395_200_000 - 60_000),
            Some(60)
        );
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after_seconds(bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn events_group_by_target_with_the_smallest_concurrency() {
        let events = vec![
            event(1, "http://one", 4),
            event(2, "http://two", 2),
            event(3, "http://one", 3),
            event(4, "http://one", 0),
        ];
        let groups = by_target(&events);
        assert_eq!(
            groups,
            vec![
                ("http://one".to_string(), 1, vec![0, 2, 3]),
                ("http://two".to_string(), 2, vec![1]),
            ]
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any header value: a wait in whole seconds, or ignored; delays
            /// in digits are taken as they are (saturating).
            #[test]
            fn retry_after_never_panics_and_reads_digits(value in "\\PC{0,40}|[0-9]{1,25}", now in 0i64..4_102_444_800_000) {
                let parsed = retry_after_seconds(&value, now);
                let digits = value.trim();
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    prop_assert_eq!(parsed, Some(digits.parse::<u64>().map_or(u32::MAX, |s| s.min(u32::MAX as u64) as u32)));
                }
            }

            /// Whatever the route's timeout and the time left, a delivery is
            /// started only if it can end before the lease, with room to settle.
            #[test]
            fn deliveries_end_before_the_lease(route in 0u64..120_000, deadline in 0i64..120_000, now in 0i64..120_000) {
                if let Some(ms) = timeout_ms(route, deadline, now) {
                    prop_assert!(ms <= route && ms as i64 >= MIN_DELIVERY_MS);
                    prop_assert!(now + ms as i64 + SETTLE_MARGIN_MS <= deadline);
                }
            }
        }
    }
}
