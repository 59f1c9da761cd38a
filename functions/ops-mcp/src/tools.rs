//! The tools (seed: master-pattern.md, "MCP Tools Reference"), each with its
//! input and output schema and honest annotations, and the check of a call's
//! arguments against its input schema before anything runs.
//!
//! Reads answer at once. Approval-required tools (`deploy_release`,
//! `rollback_release`, `redrive_dead_letters`) never act: they return an
//! opaque, expiring handle (`awaiting_approval`) that a person other than the
//! requester approves; `get_approval` tells the agent what became of it.

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads the system; changes nothing.
    Read,
    /// Probes a registered service now; changes nothing here.
    Probe,
    /// Asks for an action: a handle, never the action itself.
    Approval,
}

pub struct Tool {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    pub input: fn() -> Value,
    pub output: fn() -> Value,
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

fn list_of(key: &str) -> Value {
    json!({ "type": "object", "properties": { key: { "type": "array", "items": { "type": "object" } } }, "required": [key] })
}

fn handle_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "handle": { "type": "string", "description": "Opaque; poll it with get_approval" },
            "tool": { "type": "string" },
            "status": { "type": "string", "enum": ["awaiting_approval", "rejected", "expired", "done", "failed"] },
            "expires_at": { "type": "string" },
            "requested_by": { "type": "string" },
            "decided_by": { "type": "string" },
            "result": { "type": "object" },
            "error": { "type": "string" },
            "run_id": { "type": "string" },
            "run_status": { "type": "string" }
        },
        "required": ["handle", "tool", "status", "expires_at"]
    })
}

const LIMIT: &str =
    r#"{"type":"integer","minimum":1,"maximum":200,"description":"At most this many (20)"}"#;

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "get_health_status",
        title: "Service health",
        description: "Every registered service with its status (healthy, degraded, down), last check, response time and 24-hour uptime.",
        kind: Kind::Read,
        input: || object(json!({}), &[]),
        output: || list_of("services"),
    },
    Tool {
        name: "get_job_status",
        title: "A job's status",
        description: "One job of the job ledger: status, attempts, last error, result and its recent events.",
        kind: Kind::Read,
        input: || object(json!({ "job_id": { "type": "string", "format": "uuid" } }), &["job_id"]),
        output: || json!({ "type": "object", "properties": { "id": { "type": "string" }, "status": { "type": "string" } }, "required": ["id", "status"] }),
    },
    Tool {
        name: "list_recent_jobs",
        title: "Recent jobs",
        description: "The newest jobs, optionally of one status or job type.",
        kind: Kind::Read,
        input: || object(json!({
            "limit": serde_json::from_str::<Value>(LIMIT).expect("a schema"),
            "status": { "type": "string", "enum": ["queued", "running", "succeeded", "failed", "dead", "cancelled"] },
            "job_type": { "type": "string", "maxLength": 100 }
        }), &[]),
        output: || list_of("jobs"),
    },
    Tool {
        name: "get_trace",
        title: "Trace a correlation id",
        description: "Everything recorded under one correlation id, in time order: the Odoo event, its deliveries, jobs, runs, tool calls and alerts.",
        kind: Kind::Read,
        input: || object(json!({ "correlation_id": { "type": "string", "minLength": 1, "maxLength": 128 } }), &["correlation_id"]),
        output: || list_of("steps"),
    },
    Tool {
        name: "get_queue_stats",
        title: "Queue depths",
        description: "The outbox by status, and every queue's depth and oldest waiting age (outbox, jobs, runs).",
        kind: Kind::Read,
        input: || object(json!({}), &[]),
        output: || json!({ "type": "object", "properties": { "outbox": { "type": "object" }, "queues": { "type": "array" } }, "required": ["outbox", "queues"] }),
    },
    Tool {
        name: "list_runs",
        title: "Recent build/deploy runs",
        description: "The newest ops-runner runs, optionally of one project or status.",
        kind: Kind::Read,
        input: || object(json!({
            "limit": serde_json::from_str::<Value>(LIMIT).expect("a schema"),
            "project_id": { "type": "string", "maxLength": 100 },
            "status": { "type": "string", "enum": ["awaiting_approval", "queued", "claimed", "running", "success", "failed", "cancelled"] }
        }), &[]),
        output: || list_of("runs"),
    },
    Tool {
        name: "get_run",
        title: "A run",
        description: "One run with its phases' events and artifacts.",
        kind: Kind::Read,
        input: || object(json!({ "run_id": { "type": "string", "minLength": 1, "maxLength": 100 } }), &["run_id"]),
        output: || json!({ "type": "object", "properties": { "run_id": { "type": "string" }, "status": { "type": "string" }, "events": { "type": "array" } }, "required": ["run_id", "status"] }),
    },
    Tool {
        name: "get_approval",
        title: "What became of an approval handle",
        description: "The state of a handle an approval-required tool returned: awaiting_approval, rejected, expired, done (with what was done) or failed.",
        kind: Kind::Read,
        input: || object(json!({ "handle": { "type": "string", "minLength": 1, "maxLength": 100 } }), &["handle"]),
        output: handle_schema,
    },
    Tool {
        name: "smoke_test",
        title: "Smoke-test a service",
        description: "Probes one registered service now (its URL, method, expected status and body) and reports the outcome. Only registered services can be probed.",
        kind: Kind::Probe,
        input: || object(json!({ "service": { "type": "string", "minLength": 1, "maxLength": 100, "description": "The service's registered name" } }), &["service"]),
        output: || json!({ "type": "object", "properties": {
            "service": { "type": "string" }, "passed": { "type": "boolean" }, "http_status": { "type": "integer" },
            "response_time_ms": { "type": "integer" }, "problem": { "type": "string" } }, "required": ["service", "passed"] }),
    },
    Tool {
        name: "deploy_release",
        title: "Deploy a release (approval required)",
        description: "Asks for a deploy of a git sha to an environment. Returns an approval handle; a person other than the requester approves it, then the ops runner deploys. Poll the handle with get_approval.",
        kind: Kind::Approval,
        input: || object(json!({
            "project_id": { "type": "string", "minLength": 1, "maxLength": 100 },
            "env": { "type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$" },
            "git_sha": { "type": "string", "pattern": "^[0-9a-f]{7,40}$" },
            "git_ref": { "type": "string", "pattern": "^refs/[A-Za-z0-9._/-]{1,200}$" }
        }), &["project_id", "env", "git_sha"]),
        output: handle_schema,
    },
    Tool {
        name: "rollback_release",
        title: "Roll back a release (approval required)",
        description: "Asks for a rollback of an environment to its previous successful run (or to_run_id). Returns an approval handle.",
        kind: Kind::Approval,
        input: || object(json!({
            "project_id": { "type": "string", "minLength": 1, "maxLength": 100 },
            "env": { "type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$" },
            "to_run_id": { "type": "string", "maxLength": 100 }
        }), &["project_id", "env"]),
        output: handle_schema,
    },
    Tool {
        name: "redrive_dead_letters",
        title: "Redrive dead letters (approval required)",
        description: "Asks for dead outbox events matching a filter to be delivered again. Returns an approval handle; at least one filter is required.",
        kind: Kind::Approval,
        input: || object(json!({
            "event_pattern": { "type": "string", "maxLength": 200 },
            "error_contains": { "type": "string", "maxLength": 200 },
            "created_from": { "type": "string", "format": "date-time" },
            "created_to": { "type": "string", "format": "date-time" }
        }), &[]),
        output: handle_schema,
    },
];

pub fn find(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The tool as `tools/list` shows it.
pub fn describe(tool: &Tool) -> Value {
    let read_only = tool.kind != Kind::Approval;
    json!({
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "inputSchema": (tool.input)(),
        "outputSchema": (tool.output)(),
        "annotations": {
            "title": tool.title,
            "readOnlyHint": read_only,
            // A request for approval changes nothing by itself; what it asks
            // for (a deploy, a rollback) is destructive once approved.
            "destructiveHint": tool.kind == Kind::Approval && tool.name != "redrive_dead_letters",
            "idempotentHint": read_only,
            "openWorldHint": tool.kind == Kind::Probe,
        }
    })
}

/// Checks `arguments` against the tool's input schema (the subset of JSON
/// Schema these schemas use); every problem is named.
pub fn check(tool: &Tool, arguments: &Map<String, Value>) -> Result<(), String> {
    let schema = (tool.input)();
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut problems = Vec::new();
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !arguments.contains_key(name) {
            problems.push(format!("{name} is required"));
        }
    }
    for (name, value) in arguments {
        match properties.get(name) {
            None => problems.push(format!("{name} is not an argument of {}", tool.name)),
            Some(rule) => {
                if let Some(problem) = check_value(rule, value) {
                    problems.push(format!("{name} {problem}"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn check_value(rule: &Value, value: &Value) -> Option<String> {
    match rule["type"].as_str() {
        Some("string") => {
            let Some(text) = value.as_str() else {
                return Some("must be a string".into());
            };
            let len = text.chars().count() as u64;
            if rule["minLength"].as_u64().is_some_and(|min| len < min)
                || rule["maxLength"].as_u64().is_some_and(|max| len > max)
            {
                return Some(format!(
                    "must be {} to {} characters",
                    rule["minLength"].as_u64().unwrap_or(0),
                    rule["maxLength"].as_u64().unwrap_or(u64::MAX)
                ));
            }
            if let Some(allowed) = rule["enum"].as_array() {
                if !allowed.iter().any(|a| a == value) {
                    return Some(format!(
                        "must be one of {}",
                        allowed
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            if let Some(pattern) = rule["pattern"].as_str() {
                if !matches_pattern(pattern, text) {
                    return Some(format!("must match {pattern}"));
                }
            }
            if rule["format"] == "uuid" && uuid::Uuid::try_parse(text).is_err() {
                return Some("must be a UUID".into());
            }
            if rule["format"] == "date-time" && !looks_like_timestamp(text) {
                return Some("must be an RFC 3339 timestamp".into());
            }
            if text.contains('\0') {
                return Some("must not contain NUL".into());
            }
            None
        }
        Some("integer") => match value.as_i64() {
            Some(n)
                if rule["minimum"].as_i64().is_none_or(|min| n >= min)
                    && rule["maximum"].as_i64().is_none_or(|max| n <= max) =>
            {
                None
            }
            Some(_) => Some(format!(
                "must be from {} to {}",
                rule["minimum"], rule["maximum"]
            )),
            None => Some("must be an integer".into()),
        },
        _ => None,
    }
}

/// The patterns the schemas use: `^[class]{m,n}$` sequences of character
/// classes, each with a repetition count. Anything else fails closed.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    match pattern {
        "^[a-z][a-z0-9-]{0,31}$" => {
            let mut chars = text.chars();
            chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && text.len() <= 32
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        }
        "^[0-9a-f]{7,40}$" => {
            (7..=40).contains(&text.len())
                && text
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        }
        "^refs/[A-Za-z0-9._/-]{1,200}$" => text.strip_prefix("refs/").is_some_and(|rest| {
            (1..=200).contains(&rest.len())
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        }),
        _ => false,
    }
}

fn looks_like_timestamp(text: &str) -> bool {
    switchyard_shared::time::parse_timestamptz(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn every_tool_is_described_with_schemas_and_honest_hints() {
        let names: Vec<_> = TOOLS.iter().map(|t| t.name).collect();
        for expected in [
            "get_health_status",
            "get_job_status",
            "list_recent_jobs",
            "get_trace",
            "get_queue_stats",
            "list_runs",
            "get_run",
            "smoke_test",
            "deploy_release",
            "rollback_release",
            "redrive_dead_letters",
        ] {
            assert!(names.contains(&expected), "{expected}");
        }
        for tool in TOOLS {
            let d = describe(tool);
            assert_eq!(d["inputSchema"]["type"], "object", "{}", tool.name);
            assert_eq!(d["outputSchema"]["type"], "object", "{}", tool.name);
            let read_only = d["annotations"]["readOnlyHint"].as_bool().unwrap();
            assert_eq!(read_only, tool.kind != Kind::Approval);
            if read_only {
                assert_eq!(d["annotations"]["destructiveHint"], false);
            }
        }
        assert_eq!(
            describe(find("deploy_release").unwrap())["annotations"]["destructiveHint"],
            true
        );
    }

    #[test]
    fn arguments_are_checked_against_the_input_schema() {
        let deploy = find("deploy_release").unwrap();
        assert!(check(
            deploy,
            &args(json!({"project_id": "p", "env": "production", "git_sha": "abcdef1"}))
        )
        .is_ok());
        let err = check(
            deploy,
            &args(json!({"project_id": 5, "env": "Prod!", "git_sha": "XYZ", "extra": 1})),
        )
        .unwrap_err();
        for part in [
            "project_id must be a string",
            "env must match",
            "git_sha must match",
            "extra is not an argument",
        ] {
            assert!(err.contains(part), "{err}");
        }
        assert!(check(deploy, &args(json!({})))
            .unwrap_err()
            .contains("project_id is required"));
        let jobs = find("list_recent_jobs").unwrap();
        assert!(check(jobs, &args(json!({"limit": 500})))
            .unwrap_err()
            .contains("limit must be from 1 to 200"));
        assert!(check(jobs, &args(json!({"status": "exploded"})))
            .unwrap_err()
            .contains("must be one of"));
        assert!(check(
            find("get_job_status").unwrap(),
            &args(json!({"job_id": "nope"}))
        )
        .unwrap_err()
        .contains("UUID"));
        let redrive = find("redrive_dead_letters").unwrap();
        assert!(check(redrive, &args(json!({"created_from": "yesterday"})))
            .unwrap_err()
            .contains("RFC 3339"));
        assert!(check(
            redrive,
            &args(json!({"created_from": "2026-11-24T00:00:00Z"}))
        )
        .is_ok());
    }

    #[test]
    fn patterns_fail_closed() {
        assert!(matches_pattern("^[a-z][a-z0-9-]{0,31}$", "staging-2"));
        assert!(!matches_pattern("^[a-z][a-z0-9-]{0,31}$", "2staging"));
        assert!(matches_pattern(
            "^refs/[A-Za-z0-9._/-]{1,200}$",
            "refs/tags/v1.2.3"
        ));
        assert!(!matches_pattern("^refs/[A-Za-z0-9._/-]{1,200}$", "refs/"));
        assert!(!matches_pattern("^unknown$", "unknown"));
    }
}
