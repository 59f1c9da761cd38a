//! `odoo-webhook`: signed events from Odoo into `integration.outbox`.
//!
//! Called without a JWT (the signature is the authentication, like a Supabase
//! function deployed with `--no-verify-jwt`). The handler only moves data
//! between the runtime and `ingress`, which holds every decision.

pub mod config;
pub mod group;
pub mod ingress;

use serde_json::json;
use switchyard_shared::auth::Auth;
use switchyard_shared::error::{ApiError, ErrorCode};
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::signature::{self, Verified};
use switchyard_shared::time;
use worker::{event, Context, Env, Request, Response};

use crate::config::Settings;

pub struct OdooWebhook;

impl Function for OdooWebhook {
    const SPEC: Spec = Spec {
        name: "odoo-webhook",
        methods: &["POST"],
        auth: Auth::Open,
        max_body_bytes: ingress::MAX_BODY_BYTES,
    };
    type Settings = Settings;

    /// `POST /odoo-webhook` takes one event, `POST /odoo-webhook/batch` up to
    /// 500. The signature is checked before the body is parsed, so an
    /// unauthenticated caller learns nothing beyond `invalid_signature`.
    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        let batch = match call.subpath().as_str() {
            "" => false,
            "/batch" => true,
            _ => return Err(ApiError::new(ErrorCode::NotFound, "no such endpoint")),
        };
        let settings = &call.config.settings;
        let verified = signature::verify(
            &|name| call.header(name),
            &call.body,
            &settings.ipai_keys,
            &settings.standard_keys,
            time::now_ms(),
            settings.tolerance_ms,
        )?;
        if batch {
            return ingest_batch(&call, &verified).await;
        }
        let event = ingress::parse_event(&call.body)?;
        let args = ingress::ingest_args(&event, &verified, call.correlation_id);
        let (ingested, group) =
            group::ingest(call.ctx, &call.service(), args, call.correlation_id).await?;
        Ok(
            Reply::ok(200, "accepted", ingress::success_body(&ingested)).log(json!({
                "event_id": ingested.event_id,
                "duplicate": ingested.duplicate,
                "group": group,
                "scheme": verified.scheme.as_str(),
                "key_id": verified.key_id,
            })),
        )
    }
}

/// Records a batch's valid events in one call. A batch with no valid event
/// is refused whole (422), writing nothing; otherwise every event has its
/// result in the answer.
async fn ingest_batch(call: &Call<'_, Settings>, verified: &Verified) -> Result<Reply, ApiError> {
    let events = ingress::parse_batch(&call.body)?;
    if events.iter().all(Result::is_err) {
        return Err(ingress::all_invalid(&events));
    }
    let args = ingress::ingest_batch_args(&events, verified, call.correlation_id);
    let outcomes = call.service().call(&args, call.correlation_id).await?;
    let body = ingress::batch_body(&events, &outcomes);
    let log = json!({
        "batch": events.len(),
        "accepted": body["accepted"],
        "duplicates": body["duplicates"],
        "conflicts": body["conflicts"],
        "invalid": body["invalid"],
        "scheme": verified.scheme.as_str(),
        "key_id": verified.key_id,
    });
    Ok(Reply::ok(200, "batch_accepted", body).log(log))
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<OdooWebhook>(req, env, ctx).await
}
