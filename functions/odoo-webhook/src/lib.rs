//! `odoo-webhook`: signed events from Odoo into `integration.outbox`.
//!
//! Called without a JWT (the signature is the authentication, like a Supabase
//! function deployed with `--no-verify-jwt`). The handler only moves data
//! between the runtime and `ingress`, which holds every decision.

pub mod config;
pub mod ingress;

use serde_json::json;
use switchyard_shared::error::{ApiError, ErrorCode};
use switchyard_shared::log::Log;
use switchyard_shared::postgrest::Client;
use switchyard_shared::{correlation, http, request, signature, time};
use worker::{event, Context, Env, Request, Response};

use crate::config::Config;
use crate::ingress::Accepted;
use switchyard_shared::signature::Verified;

const FUNCTION: &str = "odoo-webhook";

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let caller_id = req.headers().get(correlation::HEADER).ok().flatten();
    let correlation_id = correlation::from_header_or_new(caller_id.as_deref());
    let log = Log::new(FUNCTION, &correlation_id);
    match handle(req, &env, &correlation_id, &log).await {
        Ok((accepted, verified)) => {
            log.info(
                "accepted",
                json!({
                    "event_id": accepted.event_id,
                    "duplicate": accepted.duplicate,
                    "scheme": verified.scheme.as_str(),
                    "key_id": verified.key_id,
                }),
            );
            http::json(
                200,
                &ingress::success_body(&accepted, &correlation_id),
                &correlation_id,
            )
        }
        Err(err) => http::refusal(&err, &log),
    }
}

/// One log line per request: `accepted` (with the event and how it was
/// verified), `rejected` (4xx) or `failed` (5xx), written by `fetch`.
async fn handle(
    mut req: Request,
    env: &Env,
    correlation_id: &str,
    log: &Log<'_>,
) -> Result<(Accepted, Verified), ApiError> {
    request::require_post(req.method().as_ref())?;
    let config = Config::load(env).map_err(|e| {
        log.error("config_invalid", json!({ "reason": e.0 }));
        ApiError::from(e)
    })?;
    let declared_length = req.headers().get("content-length").ok().flatten();
    ingress::check_declared_length(declared_length.as_deref())?;
    let body = req
        .bytes()
        .await
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body could not be read"))?;
    ingress::check_body_length(body.len())?;

    let header = |name: &str| req.headers().get(name).ok().flatten();
    let verified = signature::verify(
        &header,
        &body,
        &config.ipai_keys,
        &config.standard_keys,
        time::now_ms(),
        config.tolerance_ms,
    )?;
    let event = ingress::parse_event(&body)?;

    let args = ingress::ingest_args(&event, &verified, correlation_id);
    let result = Client::new(config.supabase.clone())
        .rpc("integration", "ingest_event", &args, correlation_id)
        .await
        .map_err(|e| {
            let err = e.clone().into_api_error();
            if err.status() >= 500 {
                log.error(
                    "rpc_failed",
                    json!({ "rpc": "ingest_event", "error": format!("{e:?}") }),
                );
            }
            err
        })?;
    Ok((ingress::accepted(&result)?, verified))
}
