//! What a caller may ask of the router: why it was woken (for the log) and
//! whether to answer only when the run is over.

use serde_json::Value;
use switchyard_shared::error::{ApiError, ErrorCode};

pub const MAX_BODY_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `insert`, `cron`, `handoff`, `redrive`, `manual`, ...
    pub reason: String,
    /// `?wait=true`: run inside the request and answer with the summary.
    /// Otherwise answer 202 at once and run after the response (pg_net's
    /// timeout is short and a wake-up needs no answer).
    pub wait: bool,
}

pub fn parse(body: &[u8], query: Option<&str>) -> Result<Invocation, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the body is limited to 4 KiB",
        ));
    }
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        "manual".to_string()
    } else {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not JSON"))?;
        let Value::Object(fields) = value else {
            return Err(invalid("the body must be a JSON object"));
        };
        match fields.get("reason") {
            None => "manual".to_string(),
            Some(Value::String(r))
                if (1..=32).contains(&r.len())
                    && r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
            {
                r.clone()
            }
            Some(_) => return Err(invalid("reason must be 1 to 32 characters of a-z and _")),
        }
    };
    let mut wait = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair {
            "wait=true" => wait = true,
            "wait=false" => wait = false,
            _ => return Err(invalid("the only query parameter is wait=true|false")),
        }
    }
    Ok(Invocation { reason, wait })
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(ErrorCode::ValidationFailed, message)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let run = parse(br#"{"reason":"insert"}"#, Some("wait=true")).unwrap();
        assert_eq!(
            run,
            Invocation {
                reason: "insert".into(),
                wait: true
            }
        );
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
        assert_eq!(code(b"{}", Some("wait=yes")), ErrorCode::ValidationFailed);
        assert_eq!(code(b"{}", Some("batch=1000")), ErrorCode::ValidationFailed);
        assert_eq!(
            code(&[b' '; MAX_BODY_BYTES + 1], None),
            ErrorCode::PayloadTooLarge
        );
    }
}
