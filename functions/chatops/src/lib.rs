//! `chatops`: Mattermost slash commands (seed: master-pattern.md, "ChatOps
//! Commands"). Chat requests; people decide; the runner and CI deploy.
//!
//! Mattermost posts its slash-command request (form-encoded, with the
//! command's own token) and shows the answer (`{"response_type", "text"}`)
//! if it comes within 3 s. `/hotfix` answers at once and reports through
//! `response_url` when GitHub is done. `command` parses, `github` talks to
//! GitHub; this file decides and answers. Every command is audited in
//! `ops.run_events` (`ops.record_tool_call`, via `chatops`).

pub mod command;
pub mod config;
pub mod github;

use serde_json::{json, Value};
use switchyard_shared::auth::{secure_eq, Auth};
use switchyard_shared::error::{ApiError, ErrorCode, Problem};
use switchyard_shared::fetch;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::log::Log;
use switchyard_shared::postgrest::RpcError;
use switchyard_shared::rpc::agents::{
    ApproveRun, DecideAction, GetQueueDepth, GetTrace, OutboxStats, QueueRun, RecordToolCall,
    RejectRun,
};
use worker::{event, Context, Env, Request, Response};

use crate::command::{Command, Form, Subject, Verb};
use crate::config::Settings;
use crate::github::GitHub;

const NAME: &str = "chatops";

pub struct ChatOps;

impl Function for ChatOps {
    const SPEC: Spec = Spec {
        name: NAME,
        methods: &["POST"],
        // Mattermost's per-command token is checked here.
        auth: Auth::Open,
        max_body_bytes: 16 * 1024,
    };
    type Settings = Settings;

    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        let settings = &call.config.settings;
        let form = command::parse_form(&call.body).map_err(|why| {
            ApiError::invalid(
                "the slash-command request is invalid",
                vec![Problem::new("(body)", why)],
            )
        })?;
        let verb = Verb::of_command(&form.command)
            .filter(|v| settings.token_of(*v).is_some())
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "this command is not served here"))?;
        if !settings
            .token_of(verb)
            .is_some_and(|token| secure_eq(&form.token, token))
        {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the command's token does not match",
            ));
        }
        let who = format!("mattermost:{}", form.user_name);
        let fields = json!({ "command": verb.name(), "user": who });
        let answer = match command::parse(verb, &form.text) {
            Err(usage) => Answer::refused(usage),
            Ok(command) => run(&call, &form, &who, command).await?,
        };
        audit(&call, &who, verb, &form, &answer).await;
        Ok(Reply::ok(
            200,
            answer.outcome,
            json!({ "response_type": answer.response_type, "text": answer.text }),
        )
        .log(fields))
    }
}

/// What the channel (or only the user) sees, and how it is audited.
struct Answer {
    response_type: &'static str,
    text: String,
    /// `ok`, `refused`, `failed` or `awaiting_approval`.
    outcome: &'static str,
    detail: Value,
}

impl Answer {
    fn to_channel(text: String, outcome: &'static str, detail: Value) -> Self {
        Answer {
            response_type: "in_channel",
            text,
            outcome,
            detail,
        }
    }

    fn only_you(text: String, outcome: &'static str) -> Self {
        Answer {
            response_type: "ephemeral",
            text,
            outcome,
            detail: json!({}),
        }
    }

    fn refused(text: String) -> Self {
        Answer::only_you(text, "refused")
    }
}

async fn run(
    call: &Call<'_, Settings>,
    form: &Form,
    who: &str,
    command: Command,
) -> Result<Answer, ApiError> {
    let settings = &call.config.settings;
    let db = call.service();
    let cid = call.correlation_id;
    Ok(match command {
        Command::Status {
            correlation_id: None,
        } => {
            let outbox = db.call(&OutboxStats::default(), cid).await?;
            let queues = db.call(&GetQueueDepth::default(), cid).await?;
            Answer::only_you(status_text(&outbox, &queues), "ok")
        }
        Command::Status {
            correlation_id: Some(id),
        } => {
            let steps = db
                .call(
                    &GetTrace {
                        correlation_id: id.clone(),
                    },
                    cid,
                )
                .await?;
            Answer::only_you(trace_text(&id, &steps), "ok")
        }
        Command::Deploy { version, target } => {
            let Some(project_id) = settings.project_id.clone() else {
                return Ok(Answer::refused(
                    "Deploys are not configured here (CHATOPS_PROJECT_ID).".into(),
                ));
            };
            let (sha, git_ref) = match resolve(settings, &version, cid).await {
                Ok(resolved) => resolved,
                Err(why) => return Ok(Answer::refused(why)),
            };
            let request = QueueRun {
                p_project_id: project_id.clone(),
                p_env: target.clone(),
                p_git_sha: sha.clone(),
                p_git_ref: git_ref,
                p_requested_by: who.into(),
                p_metadata: json!({ "via": "chatops", "channel_id": form.channel_id, "version": version }),
                p_correlation_id: cid.into(),
            };
            match refusal_or(db.call(&request, cid).await)? {
                Err(why) => Answer::refused(format!("Deploy refused: {why}")),
                Ok(run) => {
                    let run_id = run["run_id"].as_str().unwrap_or("?").to_string();
                    if run["status"] == "awaiting_approval" {
                        Answer::to_channel(format!(
                            "🚦 Deploy of `{version}` ({}) to **{target}** requested by @{}\nRun `{run_id}` waits for approval: `/approve {run_id}`",
                            &sha[..sha.len().min(12)], form.user_name),
                            "awaiting_approval", json!({ "run_id": run_id }))
                    } else {
                        Answer::to_channel(format!(
                            "🚀 Deploy of `{version}` ({}) to **{target}** queued by @{}: run `{run_id}`",
                            &sha[..sha.len().min(12)], form.user_name),
                            "ok", json!({ "run_id": run_id }))
                    }
                }
            }
        }
        Command::Decide {
            approve,
            subject,
            comment,
        } => {
            if !settings.may_approve(&form.user_name) {
                return Ok(Answer::refused(format!(
                    "@{} may not approve or reject here (CHATOPS_APPROVERS).",
                    form.user_name
                )));
            }
            let decided = match &subject {
                Subject::Handle(handle) => {
                    db.call(
                        &DecideAction {
                            p_handle: handle.clone(),
                            p_approve: approve,
                            p_comment: comment.clone(),
                            p_decided_by: Some(who.into()),
                        },
                        cid,
                    )
                    .await
                }
                Subject::Run(run_id) if approve => {
                    db.call(
                        &ApproveRun {
                            p_run_id: run_id.clone(),
                            p_comment: comment.clone(),
                            p_approved_by: who.into(),
                        },
                        cid,
                    )
                    .await
                }
                Subject::Run(run_id) => {
                    db.call(
                        &RejectRun {
                            p_run_id: run_id.clone(),
                            p_comment: comment.clone(),
                            p_rejected_by: who.into(),
                        },
                        cid,
                    )
                    .await
                }
            };
            let what = match &subject {
                Subject::Handle(h) | Subject::Run(h) => h.clone(),
            };
            match refusal_or(decided)? {
                Err(why) => Answer::refused(format!("Could not decide `{what}`: {why}")),
                Ok(result) => decision_text(approve, &what, &form.user_name, &result),
            }
        }
        Command::Hotfix { issue, base } => hotfix(call, form, who, issue, base)?,
    })
}

/// A version as GitHub knows it: its commit, and the ref it was given as.
async fn resolve(
    settings: &Settings,
    version: &str,
    correlation_id: &str,
) -> Result<(String, String), String> {
    match (&settings.repository, &settings.github_token) {
        (Some(repository), Some(token)) => {
            let github = GitHub {
                api_url: &settings.github_api_url,
                token,
                repository,
                correlation_id,
            };
            github.resolve(version).await
        }
        // Without GitHub only a full sha can be deployed, from main.
        _ if version.len() == 40 && version.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok((version.to_ascii_lowercase(), "refs/heads/main".to_string()))
        }
        _ => Err(
            "GitHub is not configured here (CHATOPS_GITHUB_*): give a full 40-character sha".into(),
        ),
    }
}

/// The seed's `/hotfix`: answered at once; the branch and draft PR are made
/// after the answer and reported through `response_url`.
fn hotfix(
    call: &Call<'_, Settings>,
    form: &Form,
    who: &str,
    issue: u64,
    base: String,
) -> Result<Answer, ApiError> {
    let settings = call.config.settings.clone();
    let (Some(repository), Some(token)) =
        (settings.repository.clone(), settings.github_token.clone())
    else {
        return Ok(Answer::refused(
            "Hotfixes are not configured here (CHATOPS_GITHUB_REPOSITORY, CHATOPS_GITHUB_TOKEN)."
                .into(),
        ));
    };
    if !settings.trusts_response_url(&form.response_url) {
        return Ok(Answer::refused(
            "This request's response_url is not this Mattermost's (CHATOPS_MATTERMOST_URL).".into(),
        ));
    }
    let service = call.service();
    let correlation_id = call.correlation_id.to_string();
    let response_url = form.response_url.clone();
    let who = who.to_string();
    let arguments = json!({ "issue": issue, "base": base, "channel_id": form.channel_id });
    call.ctx.wait_until(async move {
        let github = GitHub { api_url: &settings.github_api_url, token: &token, repository: &repository, correlation_id: &correlation_id };
        let made = github.hotfix(issue, &base, &who, &settings.hotfix_labels).await;
        let (body, outcome, detail) = match &made {
            Ok(h) => (
                json!({ "response_type": "in_channel", "text": format!(
                    "✅ Hotfix PR Created\n\nIssue: #{issue}\nPR: {}\nBranch: {}\n\n→ PR is in draft mode. Ready for fixes!", h.pr_url, h.branch) }),
                "ok",
                json!({ "pr_url": h.pr_url, "pr_number": h.pr_number, "branch": h.branch }),
            ),
            Err(why) => (json!({ "response_type": "ephemeral", "text": format!("❌ Hotfix for #{issue} failed: {why}") }), "failed", json!({ "why": why })),
        };
        let log = Log::new(NAME, &correlation_id);
        let posted = match fetch::post(&response_url, &[("content-type", "application/json")], body.to_string()) {
            Ok(request) => fetch::send(request, std::time::Duration::from_secs(5), &[]).await.map(|f| f.status).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if !matches!(posted, Ok(200..=299)) {
            log.error("response_url_failed", json!({ "status": format!("{posted:?}") }));
        }
        let row = RecordToolCall {
            p_caller: who, p_via: "chatops".into(), p_tool: "hotfix".into(), p_arguments: arguments,
            p_outcome: outcome.into(), p_detail: detail, p_correlation_id: correlation_id.clone(), p_run_id: None,
        };
        if let Err(e) = service.call(&row, &correlation_id).await {
            log.error("audit_failed", json!({ "error": e.to_string() }));
        }
    });
    Ok(Answer {
        response_type: "ephemeral",
        text: format!(
            "⏳ Creating `hotfix/issue-{issue}` from `{}` and a draft PR…",
            form_base(form)
        ),
        outcome: "accepted",
        detail: json!({}),
    })
}

fn form_base(form: &Form) -> String {
    form.text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--base="))
        .unwrap_or("main")
        .to_string()
}

/// A database refusal (4xx) is a message for the user; a fault stays an error (503).
fn refusal_or(result: Result<Value, RpcError>) -> Result<Result<Value, String>, ApiError> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(err) => {
            let err = err.into_api_error();
            if err.status() >= 500 {
                Err(err)
            } else {
                Ok(Err(err.explained()))
            }
        }
    }
}

fn decision_text(approve: bool, what: &str, user: &str, result: &Value) -> Answer {
    let status = result["status"].as_str().unwrap_or("?");
    if result.get("refused").is_some() {
        return Answer::refused(format!("`{what}` expired before a decision; ask again."));
    }
    let mut text = format!(
        "{} `{what}` {} by @{user}: now **{status}**",
        if approve { "✅" } else { "🛑" },
        if approve { "approved" } else { "rejected" }
    );
    if let Some(run_id) = result["run_id"].as_str().filter(|r| *r != what) {
        text.push_str(&format!(" (run `{run_id}`)"));
    }
    if let Some(error) = result["error"].as_str() {
        text.push_str(&format!("\n⚠️ {error}"));
    }
    Answer::to_channel(
        text,
        if status == "failed" { "failed" } else { "ok" },
        match result["run_id"].as_str() {
            Some(run_id) => json!({ "subject": what, "status": status, "run_id": run_id }),
            None => json!({ "subject": what, "status": status }),
        },
    )
}

fn status_text(outbox: &Value, queues: &Value) -> String {
    let mut text = String::from("**switchyard status**\n");
    if let Some(by_status) = outbox["by_status"].as_object() {
        let parts: Vec<String> = by_status.iter().map(|(k, v)| format!("{k} {v}")).collect();
        text.push_str(&format!(
            "Outbox: {}\n",
            if parts.is_empty() {
                "empty".into()
            } else {
                parts.join(", ")
            }
        ));
    }
    for queue in queues.as_array().into_iter().flatten().take(10) {
        text.push_str(&format!(
            "- {} {} {}: {} (oldest {} s)\n",
            queue["queue"].as_str().unwrap_or(""),
            queue["job_type"].as_str().unwrap_or(""),
            queue["status"].as_str().unwrap_or(""),
            queue["depth"],
            queue["oldest_age_seconds"]
        ));
    }
    text
}

fn trace_text(id: &str, steps: &Value) -> String {
    let steps = steps.as_array().cloned().unwrap_or_default();
    if steps.is_empty() {
        return format!("Nothing is recorded under `{id}`.");
    }
    let mut text = format!("**Trace `{id}`** ({} steps)\n", steps.len());
    for step in steps.iter().take(15) {
        text.push_str(&format!(
            "- {} {} {}\n",
            step["at"].as_str().unwrap_or(""),
            step["source"].as_str().unwrap_or(""),
            step["kind"].as_str().unwrap_or("")
        ));
    }
    text
}

/// Every command, with what came of it, as one `ops.run_events` row.
/// Logged when it cannot be written, not answered: failing the command after
/// a run was queued would have the user send it again.
async fn audit(call: &Call<'_, Settings>, who: &str, verb: Verb, form: &Form, answer: &Answer) {
    if answer.outcome == "accepted" {
        return; // /hotfix audits itself when GitHub is done.
    }
    let row = RecordToolCall {
        p_caller: who.into(),
        p_via: "chatops".into(),
        p_tool: verb.name().into(),
        p_arguments: json!({ "text": form.text, "channel_id": form.channel_id, "channel_name": form.channel_name }),
        p_outcome: answer.outcome.into(),
        p_detail: answer.detail.clone(),
        p_correlation_id: call.correlation_id.into(),
        p_run_id: answer.detail["run_id"].as_str().map(str::to_string),
    };
    if let Err(e) = call.service().call(&row, call.correlation_id).await {
        Log::new(NAME, call.correlation_id).error(
            "audit_failed",
            json!({ "command": verb.name(), "error": e.to_string() }),
        );
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<ChatOps>(req, env, ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_and_status_read_well() {
        let done = decision_text(
            true,
            "apr_x",
            "alice",
            &json!({"status": "done", "run_id": "run-1"}),
        );
        assert_eq!((done.response_type, done.outcome), ("in_channel", "ok"));
        assert!(done.text.contains("approved by @alice") && done.text.contains("run `run-1`"));
        let expired = decision_text(
            true,
            "apr_x",
            "alice",
            &json!({"status": "expired", "refused": "x"}),
        );
        assert_eq!(expired.outcome, "refused");
        let failed = decision_text(
            true,
            "apr_x",
            "alice",
            &json!({"status": "failed", "error": "frozen"}),
        );
        assert_eq!(failed.outcome, "failed");
        let text = status_text(
            &json!({"by_status": {"pending": 2}}),
            &json!([{"queue": "runs", "job_type": null, "status": "queued", "depth": 1, "oldest_age_seconds": 5}]),
        );
        assert!(text.contains("pending 2") && text.contains("runs"));
        assert!(trace_text("c1", &json!([])).contains("Nothing"));
    }
}
