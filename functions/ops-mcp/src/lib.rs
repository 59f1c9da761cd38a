//! `ops-mcp`: the control plane as an MCP server for agents (seed:
//! master-pattern.md, "MCP = Agent Interface Standard": tools over direct
//! database access, approval for what changes production, every tool call
//! audited in `ops.run_events`).
//!
//! Streamable HTTP at `/functions/v1/ops-mcp`, stateless: each POST carries
//! one JSON-RPC message and is answered with plain JSON; GET (no server
//! stream) and DELETE (no session) are 405. `protocol` holds the JSON-RPC and
//! version rules, `access` who may call, `tools` the catalogue and argument
//! checks; this file moves calls between them and the RPCs.

pub mod access;
pub mod protocol;
pub mod tools;

use std::time::Duration;

use serde_json::{json, Map, Value};
use switchyard_shared::auth::Auth;
use switchyard_shared::error::{ApiError, ErrorCode};
use switchyard_shared::fetch;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::log::Log;
use switchyard_shared::postgrest::{Client, RpcError};
use switchyard_shared::rpc::agents::{
    GetAction, GetHealthSummary, GetJob, GetQueueDepth, GetRun, GetServiceProbe, GetTrace,
    ListRecentJobs, ListRuns, OutboxStats, RecordToolCall, RequestAction, Whoami,
};
use switchyard_shared::time;
use worker::{event, Context, Env, Headers, Method, Request, Response};

use crate::access::{Principal, Settings};
use crate::protocol::{Fault, Message};
use crate::tools::{Kind, Tool};

const NAME: &str = "ops-mcp";

pub struct OpsMcp;

impl Function for OpsMcp {
    const SPEC: Spec = Spec {
        name: NAME,
        methods: &["POST"],
        // The bearer is an agent token or an operator's JWT: checked here.
        auth: Auth::Open,
        max_body_bytes: 64 * 1024,
    };
    type Settings = Settings;

    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        let settings = &call.config.settings;
        access::check_origin(call.header("origin").as_deref(), settings)?;
        let caller = match access::principal(call.header("authorization").as_deref(), settings) {
            Ok(principal) => Caller::confirm(&call, principal).await,
            Err(err) => Err(err),
        };
        let caller = match caller {
            Ok(caller) => caller,
            // RFC 9110: a 401 names its scheme.
            Err(err) if err.status() == 401 => return challenge(&err, call.correlation_id),
            Err(err) => return Err(err),
        };
        let message = match protocol::parse(&call.body) {
            Ok(message) => message,
            Err(fault) => {
                return jsonrpc(
                    if fault.code == protocol::PARSE_ERROR {
                        400
                    } else {
                        200
                    },
                    fault.to_json(),
                    "protocol_fault",
                )
            }
        };
        let Message::Request { id, method, params } = message else {
            return accepted();
        };
        if method != "initialize" {
            if let Err(why) =
                protocol::check_version_header(call.header("mcp-protocol-version").as_deref())
            {
                return jsonrpc(
                    400,
                    Fault::new(id, protocol::INVALID_REQUEST, why).to_json(),
                    "protocol_fault",
                );
            }
        }
        let answer = match method.as_str() {
            "initialize" => Ok(initialize(&params)),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({ "tools": tools::TOOLS.iter()
                .filter(|t| caller.may_use(t))
                .map(tools::describe)
                .collect::<Vec<_>>() })),
            "tools/call" => call_tool(&call, &caller, &id, &params).await?,
            other => Err(Fault::new(
                id.clone(),
                protocol::METHOD_NOT_FOUND,
                format!("Method not found: {other}"),
            )),
        };
        match answer {
            Ok(result) => jsonrpc(200, protocol::result(&id, result), "answered"),
            Err(fault) => jsonrpc(200, fault.to_json(), "protocol_fault"),
        }
    }
}

/// A confirmed caller: who they are in audits, and how RPCs are made for them.
struct Caller {
    name: String,
    read_only: bool,
    /// Operators' calls go with their JWT (the database's rules apply);
    /// agents' as the service role.
    client: Client,
}

impl Caller {
    async fn confirm(call: &Call<'_, Settings>, principal: Principal) -> Result<Caller, ApiError> {
        match principal {
            Principal::Agent { name, read_only } => Ok(Caller {
                name,
                read_only,
                client: call.service(),
            }),
            Principal::Jwt(jwt) => {
                let client = Client::as_user(call.config.supabase.clone(), &jwt);
                let who = client.call(&Whoami::default(), call.correlation_id).await?;
                if who["operator"] != true {
                    return Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "the MCP server is for operators and agent tokens",
                    ));
                }
                let name = who["email"]
                    .as_str()
                    .or(who["sub"].as_str())
                    .unwrap_or("operator")
                    .to_string();
                Ok(Caller {
                    name,
                    read_only: false,
                    client,
                })
            }
        }
    }

    fn may_use(&self, tool: &Tool) -> bool {
        !(self.read_only && tool.kind == Kind::Approval)
    }
}

fn initialize(params: &Map<String, Value>) -> Value {
    let version = protocol::negotiate(params.get("protocolVersion").and_then(Value::as_str));
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "switchyard-ops", "title": "switchyard operations", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Read the system with the read-only tools. deploy_release, rollback_release and redrive_dead_letters never act: they return an approval handle that a person approves; poll it with get_approval."
    })
}

/// `tools/call`: an unknown (or, for a read-only token, unavailable) tool is
/// a JSON-RPC error; bad arguments and refusals are results with `isError`,
/// so the agent can correct itself. Every call is audited; a database that
/// cannot be reached is a 503, as in every function.
async fn call_tool(
    call: &Call<'_, Settings>,
    caller: &Caller,
    id: &Value,
    params: &Map<String, Value>,
) -> Result<Result<Value, Fault>, ApiError> {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args.clone(),
        Some(_) => {
            return Ok(Err(Fault::new(
                id.clone(),
                protocol::INVALID_PARAMS,
                "Invalid params: arguments must be an object",
            )))
        }
    };
    let Some(tool) = tools::find(name).filter(|t| caller.may_use(t)) else {
        audit(
            call,
            caller,
            "unknown",
            &arguments,
            "refused",
            json!({ "tool": name, "why": "unknown tool" }),
        )
        .await;
        return Ok(Err(Fault::new(
            id.clone(),
            protocol::INVALID_PARAMS,
            format!("Unknown tool: {name}"),
        )));
    };
    if let Err(problems) = tools::check(tool, &arguments) {
        audit(
            call,
            caller,
            tool.name,
            &arguments,
            "refused",
            json!({ "why": problems }),
        )
        .await;
        return Ok(Ok(tool_error(&format!("invalid arguments: {problems}"))));
    }
    let started = time::now_ms();
    match run(call, caller, tool, &arguments).await {
        Ok(structured) => {
            // A request for approval is audited by ops.request_action itself.
            if tool.kind != Kind::Approval {
                let detail = json!({ "elapsed_ms": time::now_ms() - started });
                audit(call, caller, tool.name, &arguments, "ok", detail).await;
            }
            Ok(Ok(json!({
                "content": [{ "type": "text", "text": structured.to_string() }],
                "structuredContent": structured,
                "isError": false
            })))
        }
        Err(RpcError::Unavailable(why)) => Err(RpcError::Unavailable(why).into_api_error()),
        Err(err) => {
            let refusal = err.into_api_error();
            if refusal.status() >= 500 {
                return Err(refusal);
            }
            let message = format!("{}: {}", refusal.code.as_str(), refusal.explained());
            audit(
                call,
                caller,
                tool.name,
                &arguments,
                "refused",
                json!({ "why": message }),
            )
            .await;
            Ok(Ok(tool_error(&message)))
        }
    }
}

fn tool_error(message: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": message }], "isError": true })
}

/// Runs one checked tool call; reads answer objects (lists are wrapped).
async fn run(
    call: &Call<'_, Settings>,
    caller: &Caller,
    tool: &Tool,
    args: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let cid = call.correlation_id;
    let db = &caller.client;
    let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_string);
    let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(20) as u32;
    Ok(match tool.name {
        "get_health_status" => {
            json!({ "services": db.call(&GetHealthSummary::default(), cid).await? })
        }
        "get_job_status" => {
            let job_id =
                uuid::Uuid::try_parse(&text("job_id").unwrap_or_default()).unwrap_or_default();
            db.call(&GetJob { p_job_id: job_id }, cid).await?
        }
        "list_recent_jobs" => {
            json!({ "jobs": db.call(&ListRecentJobs { p_limit: limit, p_status: text("status"), p_job_type: text("job_type") }, cid).await? })
        }
        "get_trace" => {
            json!({ "steps": db.call(&GetTrace { correlation_id: text("correlation_id").unwrap_or_default() }, cid).await? })
        }
        "get_queue_stats" => json!({
            "outbox": db.call(&OutboxStats::default(), cid).await?,
            "queues": db.call(&GetQueueDepth::default(), cid).await?,
        }),
        "list_runs" => {
            json!({ "runs": db.call(&ListRuns { p_limit: limit, p_project_id: text("project_id"), p_status: text("status") }, cid).await? })
        }
        "get_run" => {
            db.call(
                &GetRun {
                    p_run_id: text("run_id").unwrap_or_default(),
                },
                cid,
            )
            .await?
        }
        "get_approval" => {
            db.call(
                &GetAction {
                    p_handle: text("handle").unwrap_or_default(),
                },
                cid,
            )
            .await?
        }
        "smoke_test" => {
            let probe = db
                .call(
                    &GetServiceProbe {
                        p_name: text("service").unwrap_or_default(),
                    },
                    cid,
                )
                .await?;
            smoke(&probe).await
        }
        // Approval-required: a handle, recorded as the service role for the
        // caller (agents never hold a way to act).
        _ => {
            let request = RequestAction {
                p_tool: tool.name.into(),
                p_arguments: Value::Object(args.clone()),
                p_requested_by: caller.name.clone(),
                p_via: "mcp".into(),
                p_correlation_id: cid.into(),
            };
            call.service().call(&request, cid).await?
        }
    })
}

/// One probe of a registered service: its method and URL, its expected
/// status and body, within its timeout.
async fn smoke(probe: &Value) -> Value {
    let service = probe["name"].as_str().unwrap_or("").to_string();
    let url = probe["url"].as_str().unwrap_or("");
    let method = match probe["method"].as_str() {
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        _ => Method::Get,
    };
    let expected = probe["expected_status"].as_u64().unwrap_or(200) as u16;
    let timeout = Duration::from_millis(probe["timeout_ms"].as_u64().unwrap_or(5000));
    let started = time::now_ms();
    let outcome = match fetch::request(
        method,
        url,
        &[("user-agent", "switchyard-ops-mcp smoke_test")],
    ) {
        Ok(request) => fetch::send(request, timeout, &[])
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let elapsed = time::now_ms() - started;
    match outcome {
        Ok(answer) => {
            let body_ok = probe["body_match"]
                .as_str()
                .is_none_or(|needle| answer.body.contains(needle));
            let passed = answer.status == expected && body_ok;
            let mut result = json!({ "service": service, "passed": passed, "http_status": answer.status, "response_time_ms": elapsed });
            // Absent when the probe passed: the output schema says a string.
            if !passed {
                result["problem"] = json!(if answer.status != expected {
                    format!("answered {}, expected {expected}", answer.status)
                } else {
                    "the body lacks the expected text".to_string()
                });
            }
            result
        }
        Err(why) => {
            json!({ "service": service, "passed": false, "response_time_ms": elapsed, "problem": why })
        }
    }
}

/// Writes the audit row after the answer has gone (Workers' `wait_until`
/// keeps the isolate for it), so a read does not wait for its own audit; a
/// failure to write it is logged with the call's correlation id.
async fn audit(
    call: &Call<'_, Settings>,
    caller: &Caller,
    tool: &str,
    arguments: &Map<String, Value>,
    outcome: &str,
    detail: Value,
) {
    let row = RecordToolCall {
        p_caller: caller.name.clone(),
        p_via: "mcp".into(),
        p_tool: tool.into(),
        p_arguments: Value::Object(arguments.clone()),
        p_outcome: outcome.into(),
        p_detail: detail,
        p_correlation_id: call.correlation_id.into(),
        p_run_id: arguments
            .get("run_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let service = call.service();
    let correlation_id = call.correlation_id.to_string();
    call.ctx.wait_until(async move {
        if let Err(e) = service.call(&row, &correlation_id).await {
            Log::new(NAME, &correlation_id).error(
                "audit_failed",
                json!({ "tool": row.p_tool, "error": e.to_string() }),
            );
        }
    });
}

/// A JSON-RPC answer exactly as JSON-RPC has it (no envelope fields added).
fn jsonrpc(status: u16, body: Value, event: &'static str) -> Result<Reply, ApiError> {
    let headers = Headers::new();
    let internal = |e: worker::Error| {
        ApiError::new(ErrorCode::Internal, "the answer could not be built")
            .with_cause(e.to_string())
    };
    headers
        .set("content-type", "application/json")
        .map_err(internal)?;
    let response = Response::ok(body.to_string())
        .map_err(internal)?
        .with_status(status)
        .with_headers(headers);
    Ok(Reply::raw(response, event))
}

/// 401 with `WWW-Authenticate: Bearer` and the usual envelope.
fn challenge(err: &ApiError, correlation_id: &str) -> Result<Reply, ApiError> {
    let response = switchyard_shared::http::json_with_headers(
        401,
        &err.envelope(correlation_id),
        correlation_id,
        &[("www-authenticate", "Bearer realm=\"ops-mcp\"")],
    )
    .map_err(|e| {
        ApiError::new(ErrorCode::Internal, "the answer could not be built")
            .with_cause(e.to_string())
    })?;
    Ok(Reply::raw(response, "refused"))
}

/// Notifications and responses: 202 and no body.
fn accepted() -> Result<Reply, ApiError> {
    let response = Response::empty()
        .map_err(|e| {
            ApiError::new(ErrorCode::Internal, "the answer could not be built")
                .with_cause(e.to_string())
        })?
        .with_status(202);
    Ok(Reply::raw(response, "accepted"))
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<OpsMcp>(req, env, ctx).await
}
