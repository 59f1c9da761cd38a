//! Every decision about one probe, as plain Rust: what is sent, and what the
//! answer (or its absence) says about the service.

use switchyard_shared::rpc::observability::{HealthSample, ServiceToProbe};

/// What happened to one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answered { status: u16, body: String },
    TimedOut,
    Unreachable(String),
    NotSent(String),
}

/// The sample a probe records: `healthy` (the expected answer in time),
/// `degraded` (the expected answer, slower than the service's
/// `degraded_ms`), or `failing` (anything else, with the reason). Whether a
/// failing service is `down` is the database's decision (consecutive
/// failures), not one probe's.
pub fn sample(service: &ServiceToProbe, outcome: &Outcome, elapsed_ms: u64) -> HealthSample {
    let failing = |http_status: Option<u16>, error: String| HealthSample {
        service_id: service.id,
        status: "failing",
        response_time_ms: elapsed_ms,
        http_status,
        error: Some(error),
    };
    match outcome {
        Outcome::Answered { status, .. } if *status != service.expected_status => failing(
            Some(*status),
            format!("HTTP {status}, expected {}", service.expected_status),
        ),
        Outcome::Answered { status, body } => match &service.body_match {
            Some(needle) if !body.contains(needle.as_str()) => failing(
                Some(*status),
                format!("the answer does not contain {needle:?}"),
            ),
            _ => HealthSample {
                service_id: service.id,
                status: if elapsed_ms > service.degraded_ms {
                    "degraded"
                } else {
                    "healthy"
                },
                response_time_ms: elapsed_ms,
                http_status: Some(*status),
                error: None,
            },
        },
        Outcome::TimedOut => failing(None, format!("no answer within {} ms", service.timeout_ms)),
        Outcome::Unreachable(why) => failing(None, format!("unreachable: {why}")),
        Outcome::NotSent(why) => failing(None, format!("not sent: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn service(body_match: Option<&str>) -> ServiceToProbe {
        ServiceToProbe {
            id: 7,
            name: "odoo".into(),
            url: "http://127.0.0.1:8069/web/health".into(),
            method: "GET".into(),
            expected_status: 200,
            body_match: body_match.map(str::to_string),
            timeout_ms: 5000,
            degraded_ms: 1000,
        }
    }

    fn answered(status: u16, body: &str) -> Outcome {
        Outcome::Answered {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn the_expected_answer_in_time_is_healthy_and_a_slow_one_degraded() {
        let s = sample(
            &service(Some("ok")),
            &answered(200, r#"{"status":"ok"}"#),
            40,
        );
        assert_eq!(
            (s.status, s.http_status, s.error),
            ("healthy", Some(200), None)
        );
        assert_eq!(
            sample(&service(None), &answered(200, ""), 1001).status,
            "degraded"
        );
        assert_eq!(
            sample(&service(None), &answered(200, ""), 1000).status,
            "healthy"
        );
    }

    #[test]
    fn anything_else_is_failing_with_the_reason() {
        let cases = [
            (answered(503, "down"), "HTTP 503, expected 200"),
            (
                answered(200, "maintenance"),
                "the answer does not contain \"ok\"",
            ),
            (Outcome::TimedOut, "no answer within 5000 ms"),
            (
                Outcome::Unreachable("connection refused".into()),
                "unreachable: connection refused",
            ),
            (
                Outcome::NotSent("invalid URL".into()),
                "not sent: invalid URL",
            ),
        ];
        for (outcome, error) in cases {
            let s = sample(&service(Some("ok")), &outcome, 12);
            assert_eq!(s.status, "failing", "{outcome:?}");
            assert_eq!(s.error.as_deref(), Some(error));
            assert_eq!(s.response_time_ms, 12);
        }
    }

    proptest! {
        /// Whatever comes back, the sample is one of the three states, and
        /// only a failing one carries an error.
        #[test]
        fn every_outcome_is_one_of_three_states(status in 100u16..600, body in "\\PC{0,20}", elapsed in 0u64..10_000) {
            let s = sample(&service(Some("ok")), &answered(status, &body), elapsed);
            prop_assert!(matches!(s.status, "healthy" | "degraded" | "failing"));
            prop_assert_eq!(s.error.is_some(), s.status == "failing");
        }
    }
}
