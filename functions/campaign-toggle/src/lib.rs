//! `campaign-toggle`: turns a campaign's n8n workflow on or off for a
//! signed-in user (seed: campaign-orchestration.md, Pillar 3).
//!
//! `POST {"campaign_id", "action"}` with the user's Supabase JWT; the RPCs
//! run as that user, so the database decides what they may see and change.
//! `request` validates, `toggle` holds the flow, `shared::n8n` the client.

pub mod request;
pub mod toggle;

use futures_util::future::join_all;
use serde_json::{json, Map, Value};
use switchyard_shared::auth::{Auth, Caller};
use switchyard_shared::error::ApiError;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::log::Log;
use worker::{event, Context, Env, Request, Response};

use crate::request::{idempotency_key, item_key, request_hash};
use crate::toggle::Answered;
use switchyard_shared::n8n;

const NAME: &str = "campaign-toggle";

pub struct CampaignToggle;

impl Function for CampaignToggle {
    const SPEC: Spec = Spec {
        name: NAME,
        methods: &["POST"],
        auth: Auth::User,
        max_body_bytes: 8 * 1024,
    };
    /// Where n8n is: `N8N_API_URL`, `N8N_API_KEY`, `N8N_TIMEOUT_MS`.
    type Settings = n8n::Settings;

    async fn handle(call: Call<'_, n8n::Settings>) -> Result<Reply, ApiError> {
        let service_role = call.caller == Caller::ServiceRole;
        let request = request::parse(&call.body, service_role)?;
        let key = idempotency_key(call.header("x-idempotency-key"))?;
        let log = Log::new(NAME, call.correlation_id);
        let (caller, service) = (call.as_caller(), call.service());
        let cx = toggle::Context {
            caller: &caller,
            service: &service,
            n8n: &call.config.settings,
            acting_for: request.requested_by.as_deref(),
            correlation_id: call.correlation_id,
            log: &log,
        };
        let fields =
            json!({ "action": request.action.as_str(), "campaigns": request.campaigns.len() });

        if !request.batch {
            let campaign = request.campaigns[0];
            let answered = toggle::toggle(
                &cx,
                campaign,
                request.action,
                key.clone(),
                request_hash(&request, campaign),
            )
            .await?;
            let log_fields = json!({ "campaign_id": campaign, "action": request.action.as_str(),
                                     "status": answered.status, "replayed": answered.replayed });
            if let Some(err) = answered.to_error() {
                log.warn("toggle_failed", log_fields);
                return Err(err);
            }
            let event = match answered.body["outcome"].as_str() {
                Some("no_op") => "no_op",
                _ => "toggled",
            };
            let reply = Reply::ok(200, event, answered.body).log(log_fields);
            return Ok(if answered.replayed {
                reply.header("idempotent-replayed", "true")
            } else {
                reply
            });
        }

        // The batch: every campaign on its own, together; n8n calls stay
        // within the isolate's limit of five.
        let items = request.campaigns.iter().map(|&campaign| {
            let cx = &cx;
            let key = item_key(&key, &request, campaign);
            let hash = request_hash(&request, campaign);
            async move {
                let answered = toggle::toggle(cx, campaign, request.action, key, hash).await;
                result_item(campaign, answered)
            }
        });
        let results: Vec<Value> = join_all(items).await;
        let failed = results.iter().filter(|r| r["ok"] == false).count();
        Ok(Reply::ok(
            200,
            "batch_toggled",
            json!({ "results": results, "failed": failed }),
        )
        .log(fields))
    }
}

/// One campaign's line in a batch answer: `ok`, its HTTP-equivalent
/// `status`, and the single form's fields (`outcome`, `campaign`) or `error`.
fn result_item(campaign: uuid::Uuid, answered: Result<Answered, ApiError>) -> Value {
    let answered = answered.unwrap_or_else(|err| Answered {
        status: err.status(),
        body: json!({ "error": { "code": err.code.as_str(), "message": err.message } }),
        replayed: false,
        retry_after: err.retry_after_seconds(),
    });
    let mut item = Map::new();
    item.insert("campaign_id".into(), json!(campaign));
    item.insert("ok".into(), json!(answered.status < 400));
    item.insert("status".into(), json!(answered.status));
    if let Value::Object(fields) = answered.body {
        item.extend(fields);
    }
    if let Some(seconds) = answered.retry_after {
        item.insert("retry_after".into(), json!(seconds));
    }
    Value::Object(item)
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<CampaignToggle>(req, env, ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::error::ErrorCode;

    #[test]
    fn batch_lines_carry_the_single_forms_fields_or_its_error() {
        let id = uuid::Uuid::nil();
        let ok = result_item(
            id,
            Ok(Answered {
                status: 200,
                body: json!({"outcome": "no_op", "campaign": {"id": "x"}}),
                replayed: false,
                retry_after: None,
            }),
        );
        assert_eq!(
            (ok["ok"].clone(), ok["outcome"].clone()),
            (json!(true), json!("no_op"))
        );
        let limited = result_item(
            id,
            Err(ApiError::new(ErrorCode::RateLimited, "slow down").with_retry_after(12)),
        );
        assert_eq!(limited["status"], 429);
        assert_eq!(limited["error"]["code"], "rate_limited");
        assert_eq!(limited["retry_after"], 12);
        assert_eq!(limited["ok"], false);
    }
}
