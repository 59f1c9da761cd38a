//! The slice of MCP's Streamable HTTP transport and JSON-RPC this server
//! speaks: one JSON-RPC message per POST, answered with plain JSON (which the
//! transport allows), no sessions, no server-to-client stream.

use serde_json::{json, Map, Value};

/// Newest first; `initialize` answers with the client's version when it is
/// here, else with the newest.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// What a request without `MCP-Protocol-Version` is taken to speak (the spec's rule).
pub const DEFAULT_VERSION: &str = "2025-03-26";

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

/// One message from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: it gets an answer with the same id.
    Request {
        id: Value,
        method: String,
        params: Map<String, Value>,
    },
    /// A notification or a response to us: acknowledged with 202, no body.
    Accepted,
}

/// A protocol fault, answered as a JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub id: Value,
    pub code: i64,
    pub message: String,
}

impl Fault {
    pub fn new(id: Value, code: i64, message: impl Into<String>) -> Self {
        Fault {
            id,
            code,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "jsonrpc": "2.0", "id": self.id, "error": { "code": self.code, "message": self.message } })
    }
}

pub fn result(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// Reads one JSON-RPC message. Batches (removed from MCP in 2025-06-18) are
/// refused.
pub fn parse(body: &[u8]) -> Result<Message, Fault> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        Fault::new(
            Value::Null,
            PARSE_ERROR,
            "Parse error: the body is not JSON",
        )
    })?;
    let Value::Object(fields) = value else {
        return Err(Fault::new(
            Value::Null,
            INVALID_REQUEST,
            "Invalid Request: one JSON-RPC object per request",
        ));
    };
    let id = fields.get("id").cloned();
    let invalid = |why: &str| {
        Fault::new(
            id.clone().unwrap_or(Value::Null),
            INVALID_REQUEST,
            format!("Invalid Request: {why}"),
        )
    };
    if fields.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(invalid("jsonrpc must be \"2.0\""));
    }
    if let Some(id) = &id {
        if !(id.is_string() || id.is_i64() || id.is_u64()) {
            return Err(invalid("id must be a string or an integer"));
        }
    }
    match (fields.get("method"), &id) {
        // A response (result or error) from the client: nothing to answer.
        (None, Some(_)) if fields.contains_key("result") || fields.contains_key("error") => {
            Ok(Message::Accepted)
        }
        (Some(Value::String(_)), None) => Ok(Message::Accepted),
        (Some(Value::String(method)), Some(id)) => {
            let params = match fields.get("params") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(params)) => params.clone(),
                Some(_) => {
                    return Err(Fault::new(
                        id.clone(),
                        INVALID_PARAMS,
                        "Invalid params: params must be an object",
                    ))
                }
            };
            Ok(Message::Request {
                id: id.clone(),
                method: method.clone(),
                params,
            })
        }
        _ => Err(invalid("a request has a string method")),
    }
}

/// The version `initialize` answers with.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    SUPPORTED_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(SUPPORTED_VERSIONS[0])
}

/// `MCP-Protocol-Version` on a request after initialization: absent is the
/// spec's default; an unsupported one is refused (400).
pub fn check_version_header(header: Option<&str>) -> Result<&str, String> {
    match header {
        None => Ok(DEFAULT_VERSION),
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => Ok(v),
        Some(v) => Err(format!(
            "unsupported MCP-Protocol-Version {v:?}; supported: {}",
            SUPPORTED_VERSIONS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifications_and_responses() {
        let req = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(
            req,
            Message::Request {
                id: json!(1),
                method: "tools/list".into(),
                params: Map::new()
            }
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap(),
            Message::Accepted
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap(),
            Message::Accepted
        );
    }

    #[test]
    fn faults_carry_the_request_id_when_there_is_one() {
        assert_eq!(parse(b"{oops").unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse(b"[]").unwrap_err().code, INVALID_REQUEST);
        let no_version = parse(br#"{"id":7,"method":"ping"}"#).unwrap_err();
        assert_eq!(
            (no_version.code, no_version.id.clone()),
            (INVALID_REQUEST, json!(7))
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#)
                .unwrap_err()
                .code,
            INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#)
                .unwrap_err()
                .code,
            INVALID_PARAMS
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":5}"#)
                .unwrap_err()
                .code,
            INVALID_REQUEST
        );
        let fault = Fault::new(json!(3), METHOD_NOT_FOUND, "Method not found").to_json();
        assert_eq!(fault["error"]["code"], -32601);
        assert_eq!(fault["id"], 3);
    }

    #[test]
    fn versions_are_negotiated_and_checked() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("1999-01-01")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
        assert_eq!(check_version_header(None).unwrap(), "2025-03-26");
        assert!(check_version_header(Some("2025-11-25")).is_ok());
        assert!(check_version_header(Some("2026-99-99")).is_err());
    }
}
