//! `n8n-status-webhook`: n8n tells us a workflow changed (its external hooks,
//! `n8n/hooks/switchyard-status.js`, sign and post every publish, unpublish,
//! rename, update and delete), and campaigns follow (seed: Pillar 5).
//!
//! Verified by `x-n8n-signature` (the seed's hex HMAC of the body, whose
//! `timestamp` must be within 5 minutes) or Standard Webhooks. Applied by
//! `campaigns.apply_workflow_event`: last write wins, duplicates are
//! acknowledged. What cannot be applied now is queued in `sync_failures` and
//! retried every minute; only when even that is impossible (the database is
//! down) the answer is 503 and the sender retries.

pub mod config;
pub mod event;

use serde_json::json;
use switchyard_shared::auth::Auth;
use switchyard_shared::error::{ApiError, ErrorCode};
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::log::Log;
use switchyard_shared::postgrest::RpcError;
use switchyard_shared::rpc::campaigns::RecordSyncFailure;
use switchyard_shared::signature::{self, WEBHOOK_ID, WEBHOOK_SIGNATURE};
use switchyard_shared::time;
use worker::{event as worker_event, Context, Env, Request, Response};

use crate::config::Settings;

const NAME: &str = "n8n-status-webhook";

pub struct N8nStatusWebhook;

impl Function for N8nStatusWebhook {
    const SPEC: Spec = Spec {
        name: NAME,
        methods: &["POST"],
        auth: Auth::Open,
        max_body_bytes: 16 * 1024,
    };
    type Settings = Settings;

    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        let settings = &call.config.settings;
        let header = |name: &str| call.header(name);
        let now_ms = time::now_ms();
        let standard = header(WEBHOOK_SIGNATURE).is_some() || header(WEBHOOK_ID).is_some();
        let (event, key_id) = if standard {
            if settings.standard_keys.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidSignature,
                    "Standard Webhooks signatures are not enabled here",
                ));
            }
            let verified = signature::verify_standard(
                &header,
                &call.body,
                &settings.standard_keys,
                now_ms,
                settings.tolerance_ms,
            )?;
            (
                event::parse(&call.body, Some(&verified.idempotency_key))?,
                verified.key_id,
            )
        } else {
            if settings.hmac_keys.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidSignature,
                    "x-n8n-signature is not enabled here",
                ));
            }
            let key_id = signature::verify_body_hmac(&header, &call.body, &settings.hmac_keys)?;
            let event = event::parse(&call.body, None)?;
            event::check_signed_time(&event, now_ms, settings.tolerance_ms)?;
            (event, key_id)
        };
        let fields = json!({ "workflow_id": event.p_workflow_id, "event_type": event.p_event_type,
                             "event_id": event.p_event_id, "signing_key_id": key_id });

        let service = call.service();
        match service.call(&event, call.correlation_id).await {
            Ok(applied) => {
                let outcome = if applied.duplicate {
                    "duplicate"
                } else if applied.queued {
                    "queued"
                } else {
                    "applied"
                };
                let status = if applied.queued { 202 } else { 200 };
                Ok(Reply::ok(status, outcome, json!(applied)).log(fields))
            }
            // Down: nothing can be recorded, so the sender must retry.
            Err(err @ RpcError::Unavailable(_)) => Err(err.into_api_error()),
            Err(err) => {
                let api_error = err.clone().into_api_error();
                if api_error.status() < 500 {
                    return Err(api_error);
                }
                // Reached but could not apply it: keep it to retry, never lose it.
                let log = Log::new(NAME, call.correlation_id);
                log.error(
                    "apply_failed",
                    json!({ "error": err.to_string(), "event_id": event.p_event_id }),
                );
                let failure = RecordSyncFailure {
                    p_source: "webhook".into(),
                    p_payload: json!({ "event_id": event.p_event_id, "workflow_id": event.p_workflow_id,
                        "workflow_name": event.p_workflow_name, "active": event.p_active,
                        "event_type": event.p_event_type, "timestamp": event.p_occurred_at,
                        "actor": event.p_actor }),
                    p_error: err.to_string(),
                };
                let id = service.call(&failure, call.correlation_id).await?;
                Ok(Reply::ok(
                    202,
                    "queued",
                    json!({ "queued": true, "sync_failure_id": id }),
                )
                .log(fields))
            }
        }
    }
}

#[worker_event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<N8nStatusWebhook>(req, env, ctx).await
}
