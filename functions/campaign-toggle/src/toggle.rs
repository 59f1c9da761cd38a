//! One campaign's toggle: claim it (`toggle_begin`, as the caller), change
//! the workflow in n8n and read it back, record the outcome
//! (`toggle_finish`, as the caller). The n8n call sits between two short
//! transactions rather than inside one: the campaign row is claimed for the
//! toggle (other toggles get 409) and its version is checked at the end.
//!
//! If n8n changed but the final write fails (the database went away), the
//! claim expires and the reconciler applies what n8n shows, audited as
//! `repaired`.

use serde_json::{json, Value};
use switchyard_shared::error::{ApiError, ErrorCode};
use switchyard_shared::log::Log;
use switchyard_shared::n8n::{self, N8nError, Workflow};
use switchyard_shared::postgrest::Client;
use switchyard_shared::rpc::campaigns::{Begun, BreakerRecord, ToggleBegin, ToggleFinish};
use switchyard_shared::rpc::integration::RaiseAlert;
use switchyard_shared::time;
use uuid::Uuid;

use crate::request::Action;

/// What the function answers for one campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub status: u16,
    /// The answer's fields: `outcome` and `campaign`, or `error`.
    pub body: Value,
    /// The first answer to this idempotency key, replayed.
    pub replayed: bool,
    pub retry_after: Option<u32>,
}

impl Answered {
    fn from_error(err: &ApiError) -> Self {
        Answered {
            status: err.status(),
            body: json!({ "error": { "code": err.code.as_str(), "message": err.message } }),
            replayed: false,
            retry_after: err.retry_after_seconds(),
        }
    }

    /// A failure as the function's error envelope.
    pub fn to_error(&self) -> Option<ApiError> {
        if self.status < 400 {
            return None;
        }
        let error = &self.body["error"];
        let code = error["code"]
            .as_str()
            .and_then(ErrorCode::parse)
            .unwrap_or(ErrorCode::Internal);
        let message = error["message"].as_str().unwrap_or("the toggle failed");
        let mut err = ApiError::new(code, message);
        err.retry_after = self.retry_after;
        Some(err)
    }
}

/// Who the toggle is for, and the clients to act with.
pub struct Context<'a> {
    /// PostgREST as the caller: their JWT, so the database's rules apply
    /// to starting the toggle.
    pub caller: &'a Client,
    /// PostgREST as the service role: finishing it, the shared breaker, alerts.
    pub service: &'a Client,
    pub n8n: &'a n8n::Settings,
    /// The person the service role acts for (`requested_by`).
    pub acting_for: Option<&'a str>,
    pub correlation_id: &'a str,
    pub log: &'a Log<'a>,
}

/// Toggles one campaign. Refusals before anything changed are `Err`; every
/// attempt that reached n8n (or the breaker) is an `Answered`, audited.
pub async fn toggle(
    cx: &Context<'_>,
    campaign_id: Uuid,
    action: Action,
    idempotency_key: Option<String>,
    request_hash: String,
) -> Result<Answered, ApiError> {
    let begun = cx
        .caller
        .call(
            &ToggleBegin {
                p_campaign_id: campaign_id,
                p_action: action.as_str().into(),
                p_idempotency_key: idempotency_key.clone(),
                p_request_hash: Some(request_hash),
                p_correlation_id: cx.correlation_id.into(),
                p_user_id: cx.acting_for.map(str::to_string),
            },
            cx.correlation_id,
        )
        .await?;
    let stored = |status, body, replayed| Answered {
        status,
        body,
        replayed,
        retry_after: None,
    };
    let (toggle_id, version, workflow_id, publish, user_id) = match begun {
        Begun::Replay {
            http_status,
            response,
        } => return Ok(stored(http_status, response, true)),
        Begun::NoOp {
            http_status,
            response,
        } => return Ok(stored(http_status, response, false)),
        Begun::BreakerOpen { retry_after_s } => {
            return Ok(Answered::from_error(
                &N8nError::CircuitOpen { retry_after_s }.to_api_error(),
            ))
        }
        Begun::Proceed {
            toggle_id,
            version,
            workflow_id,
            publish,
            user_id,
        } => (toggle_id, version, workflow_id, publish, user_id),
    };

    let started = time::now_ms();
    let seen = change_workflow(cx, &workflow_id, publish).await;
    let n8n_ms = time::now_ms() - started;
    if seen == Err(N8nError::Unauthorized) {
        alert_bad_credentials(cx).await;
    }
    let plan = plan_finish(&seen, publish);
    cx.log.info(
        "n8n_api_call",
        json!({ "campaign_id": campaign_id, "workflow_id": workflow_id, "publish": publish,
                "duration_ms": n8n_ms, "outcome": plan.outcome,
                "error": plan.error.as_ref().map(|e| e.cause.clone().unwrap_or_default()) }),
    );

    // What n8n did is recorded by the function, as the service role naming
    // the user whose claim this is: never on a caller's word.
    let finished = cx
        .service
        .call(
            &ToggleFinish {
                p_campaign_id: campaign_id,
                p_toggle_id: toggle_id,
                p_version: version,
                p_outcome: plan.outcome.into(),
                p_n8n_status: plan.n8n_status.map(str::to_string),
                p_n8n_response: seen.as_ref().ok().map(workflow_evidence),
                p_error_code: plan.error.as_ref().map(|e| e.code.as_str().to_string()),
                p_error_message: plan.error.as_ref().map(|e| e.message.clone()),
                p_http_status: plan.error.as_ref().map(ApiError::status),
                p_final: plan.error.as_ref().is_none_or(|_| plan.is_final),
                p_idempotency_key: idempotency_key,
                p_workflow_name: seen.as_ref().ok().map(|w| w.name.clone()),
                p_user_id: Some(user_id),
            },
            cx.correlation_id,
        )
        .await
        .map_err(|e| {
            // n8n may have changed: the reconciler settles the claim.
            let mut err = e.into_api_error();
            err.message =
                "the change could not be recorded; the reconciler will settle it, retry later"
                    .into();
            err
        })?;
    Ok(Answered {
        status: finished.http_status,
        body: finished.response,
        replayed: false,
        retry_after: plan.error.as_ref().and_then(ApiError::retry_after_seconds),
    })
}

/// Publishes or unpublishes, then reads the workflow back: the answer is
/// what n8n shows afterwards, not what the mutation said.
async fn change_workflow(
    cx: &Context<'_>,
    workflow_id: &str,
    publish: bool,
) -> Result<Workflow, N8nError> {
    let breaker = DbBreaker { cx };
    let api = n8n::Api {
        settings: cx.n8n,
        breaker: &breaker,
    };
    if publish {
        api.publish(workflow_id).await?;
    } else {
        api.unpublish(workflow_id).await?;
    }
    api.get(workflow_id).await
}

/// What `toggle_finish` records for what n8n showed.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishPlan {
    pub outcome: &'static str,
    pub n8n_status: Option<&'static str>,
    pub error: Option<ApiError>,
    pub is_final: bool,
}

pub fn plan_finish(seen: &Result<Workflow, N8nError>, publish: bool) -> FinishPlan {
    match seen {
        Ok(workflow) if workflow.published == publish => FinishPlan {
            outcome: "changed",
            n8n_status: Some(if publish { "active" } else { "inactive" }),
            error: None,
            is_final: true,
        },
        Ok(workflow) => FinishPlan {
            outcome: "failed",
            n8n_status: Some(if workflow.published {
                "active"
            } else {
                "inactive"
            }),
            error: Some(ApiError::new(
                ErrorCode::UpstreamFailed,
                format!(
                    "n8n accepted the change but the workflow is still {}",
                    if workflow.published {
                        "published"
                    } else {
                        "unpublished"
                    }
                ),
            )),
            is_final: false,
        },
        Err(err) => FinishPlan {
            outcome: "failed",
            // n8n does not know the workflow: the seed's "mark error".
            n8n_status: (*err == N8nError::NotFound).then_some("error"),
            error: Some(err.to_api_error()),
            is_final: err.is_final(),
        },
    }
}

/// What the audit keeps of n8n's answer: enough to trace, no node settings.
fn workflow_evidence(workflow: &Workflow) -> Value {
    json!({ "id": workflow.id, "name": workflow.name, "published": workflow.published })
}

/// n8n refused our API key: operators must rotate it (seed 2.13).
async fn alert_bad_credentials(cx: &Context<'_>) {
    let alert = RaiseAlert {
        p_kind: "n8n_auth_failed".into(),
        p_subject: "campaign-toggle".into(),
        p_summary: "n8n refused the campaign functions' API key (401/403): check N8N_API_KEY"
            .into(),
        p_details: json!({ "api_url": cx.n8n.api_url }),
        p_correlation_id: Some(cx.correlation_id.into()),
    };
    if let Err(e) = cx.service.call(&alert, cx.correlation_id).await {
        cx.log
            .error("alert_failed", json!({ "error": e.to_string() }));
    }
}

/// The circuit breaker in Postgres, shared by every isolate.
struct DbBreaker<'a, 'b> {
    cx: &'a Context<'b>,
}

impl n8n::Breaker for DbBreaker<'_, '_> {
    async fn failed(&self, why: &str) -> Option<u32> {
        let record = BreakerRecord {
            p_ok: false,
            p_failure: Some(why.chars().take(500).collect()),
        };
        match self.cx.service.call(&record, self.cx.correlation_id).await {
            Ok(state) if state.open => Some(state.retry_after_s.unwrap_or(1)),
            Ok(_) => None,
            // The database is away too: keep to the retry budget.
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(published: bool) -> Workflow {
        Workflow {
            id: "w1".into(),
            name: "Promo".into(),
            published,
            archived: false,
            webhooks: vec![],
        }
    }

    #[test]
    fn a_toggle_changed_only_when_n8n_shows_the_target_state() {
        let done = plan_finish(&Ok(workflow(true)), true);
        assert_eq!(
            (done.outcome, done.n8n_status, done.error),
            ("changed", Some("active"), None)
        );
        let off = plan_finish(&Ok(workflow(false)), false);
        assert_eq!(off.n8n_status, Some("inactive"));
        let ignored = plan_finish(&Ok(workflow(false)), true);
        assert_eq!(ignored.outcome, "failed");
        assert_eq!(ignored.n8n_status, Some("inactive"));
        assert_eq!(ignored.error.unwrap().status(), 502);
        assert!(!ignored.is_final);
    }

    #[test]
    fn n8n_refusals_are_final_and_unreachable_n8n_is_not() {
        let missing = plan_finish(&Err(N8nError::NotFound), true);
        assert_eq!(
            (missing.n8n_status, missing.is_final),
            (Some("error"), true)
        );
        assert_eq!(missing.error.unwrap().code, ErrorCode::WorkflowNotFound);
        let rejected = plan_finish(&Err(N8nError::Rejected("no trigger".into())), true);
        assert_eq!((rejected.n8n_status, rejected.is_final), (None, true));
        assert_eq!(rejected.error.unwrap().status(), 422);
        let timeout = plan_finish(&Err(N8nError::Timeout), false);
        assert!(!timeout.is_final);
        assert_eq!(timeout.error.unwrap().status(), 504);
        let open = plan_finish(&Err(N8nError::CircuitOpen { retry_after_s: 9 }), true);
        assert_eq!(open.error.unwrap().retry_after_seconds(), Some(9));
    }

    #[test]
    fn stored_failures_become_the_error_envelope_again() {
        let answered =
            Answered::from_error(&N8nError::CircuitOpen { retry_after_s: 4 }.to_api_error());
        assert_eq!(answered.status, 503);
        let err = answered.to_error().unwrap();
        assert_eq!(
            (err.code, err.retry_after_seconds()),
            (ErrorCode::UpstreamUnavailable, Some(4))
        );
        let stored = Answered {
            status: 422,
            body: json!({"error": {"code": "workflow_rejected", "message": "n8n refused the change: no trigger"}}),
            replayed: true,
            retry_after: None,
        };
        assert_eq!(stored.to_error().unwrap().code, ErrorCode::WorkflowRejected);
        let ok = Answered {
            status: 200,
            body: json!({"outcome": "changed"}),
            replayed: false,
            retry_after: None,
        };
        assert!(ok.to_error().is_none());
    }
}
