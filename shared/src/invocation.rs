//! How the platform invokes a background function (the router, the health
//! checker): why it was woken (for the log) and whether to answer only when
//! the run is over. pg_net and pg_cron send `{"reason": ...}`; an operator
//! may add `?wait=true`.

use std::future::Future;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorCode, Problem};
use crate::function::{Call, Config, Reply};
use crate::log::Log;
use crate::postgrest::Client;

pub const MAX_BODY_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `insert`, `cron`, `handoff`, `redrive`, `manual`, ... (`manual` when absent)
    pub reason: String,
    /// `?wait=true`: run inside the request and answer with the summary.
    /// Otherwise answer 202 at once and run after the response (pg_net's
    /// timeout is short and a wake-up needs no answer).
    pub wait: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    #[serde(default)]
    wait: bool,
}

pub fn parse(body: &[u8], query: Option<&str>) -> Result<Invocation, ApiError> {
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        "manual".to_string()
    } else {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not JSON"))?;
        let Value::Object(fields) = value else {
            return Err(invalid("(body)", "must be a JSON object"));
        };
        match fields.get("reason") {
            None => "manual".to_string(),
            Some(Value::String(r))
                if (1..=32).contains(&r.len()) && r.bytes().all(is_reason_byte) =>
            {
                r.clone()
            }
            Some(_) => {
                return Err(invalid(
                    "reason",
                    "must be 1 to 32 characters of a-z, 0-9 and _",
                ))
            }
        }
    };
    let query: Query = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| invalid("(query)", "the only query parameter is wait=true|false"))?;
    Ok(Invocation {
        reason,
        wait: query.wait,
    })
}

/// Answers an invocation: with `?wait=true` the run happens inside the
/// request and its result is the answer (`200 {"summary": ...}`); otherwise
/// `202` at once and the run continues after the response (pg_net's timeout
/// is short and a wake-up needs no answer). `run` gets what it needs to
/// outlive the request: a service-role client, the config, the correlation id.
pub async fn answer<S, T, F>(
    call: &Call<'_, S>,
    run: impl FnOnce(Client, Rc<Config<S>>, String) -> F,
) -> Result<Reply, ApiError>
where
    S: 'static,
    T: Serialize,
    F: Future<Output = Result<T, ApiError>> + 'static,
{
    let invocation = parse(&call.body, call.query().as_deref())?;
    let fields = json!({ "reason": invocation.reason, "wait": invocation.wait });
    let task = run(
        call.service(),
        call.config.clone(),
        call.correlation_id.to_string(),
    );
    if invocation.wait {
        let summary = task.await?;
        return Ok(Reply::ok(200, "woken", json!({ "summary": summary })).log(fields));
    }
    call.ctx.wait_until(async move {
        let _ = task.await;
    });
    Ok(Reply::ok(202, "woken", json!({ "accepted": true })).log(fields))
}

/// A run and its one log line: `done` with its summary, or `failed` with
/// the error.
pub async fn logged<T: Serialize, E: std::fmt::Display + Into<ApiError>>(
    log: Log<'_>,
    done: &str,
    failed: &str,
    run: impl Future<Output = Result<T, E>>,
) -> Result<T, ApiError> {
    match run.await {
        Ok(summary) => {
            log.info(done, json!(summary));
            Ok(summary)
        }
        Err(e) => {
            log.error(failed, json!({ "error": e.to_string() }));
            Err(e.into())
        }
    }
}

/// A reason is logged: `cron`, `n8n`, `handoff`; nothing that could break a line.
fn is_reason_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

fn invalid(field: &str, problem: &str) -> ApiError {
    ApiError::invalid(
        "the invocation is invalid",
        vec![Problem::new(field, problem)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_or_minimal_bodies_are_manual_runs_in_the_background() {
        for body in [&b""[..], b"  \n", b"{}"] {
            assert_eq!(
                parse(body, None).unwrap(),
                Invocation {
                    reason: "manual".into(),
                    wait: false
                }
            );
        }
        assert_eq!(parse(br#"{"reason":"n8n"}"#, None).unwrap().reason, "n8n");
        let run = parse(br#"{"reason":"insert"}"#, Some("wait=true")).unwrap();
        assert_eq!(
            run,
            Invocation {
                reason: "insert".into(),
                wait: true
            }
        );
        assert!(!parse(b"{}", Some("wait=false")).unwrap().wait);
    }

    #[test]
    fn bad_input_names_its_code() {
        let code = |body: &[u8], query: Option<&str>| parse(body, query).unwrap_err().code;
        assert_eq!(code(b"not json", None), ErrorCode::InvalidJson);
        assert_eq!(code(b"[1]", None), ErrorCode::ValidationFailed);
        assert_eq!(code(br#"{"reason":7}"#, None), ErrorCode::ValidationFailed);
        assert_eq!(
            code(br#"{"reason":"Drop Table"}"#, None),
            ErrorCode::ValidationFailed
        );
        assert_eq!(code(br#"{"reason":""}"#, None), ErrorCode::ValidationFailed);
        for query in ["wait=yes", "batch=1000", "wait=true&wait=false", "wait"] {
            assert_eq!(
                code(b"{}", Some(query)),
                ErrorCode::ValidationFailed,
                "{query}"
            );
        }
    }

    proptest! {
        /// Any body and query: an invocation whose reason is safe to log, or
        /// a 4xx refusal.
        #[test]
        fn anything_is_a_safe_invocation_or_a_client_error(
            body in prop::collection::vec(any::<u8>(), 0..64),
            reason in "\\PC{0,40}",
            query in proptest::option::of("\\PC{0,20}|wait=(true|false)"),
        ) {
            for body in [body, serde_json::json!({ "reason": reason }).to_string().into_bytes()] {
                match parse(&body, query.as_deref()) {
                    Ok(run) => prop_assert!(run.reason.bytes().all(is_reason_byte)),
                    Err(err) => prop_assert!((400..500).contains(&err.status())),
                }
            }
        }
    }
}
