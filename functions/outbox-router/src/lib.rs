//! `outbox-router`: delivers outbox events to their routes.
//!
//! Woken by the database (an AFTER INSERT trigger through pg_net, and pg_cron
//! every minute); only the service role may call it. The handler checks the
//! request and starts a run (`drain`); `delivery` holds every decision about a
//! single delivery.

pub mod config;
pub mod delivery;
pub mod drain;
pub mod invocation;

use serde_json::json;
use switchyard_shared::error::{ApiError, ErrorCode};
use switchyard_shared::log::Log;
use switchyard_shared::{correlation, http, request};
use worker::{event, Context, Env, Request, Response};

use crate::config::Config;

const FUNCTION: &str = "outbox-router";

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let caller_id = req.headers().get(correlation::HEADER).ok().flatten();
    let correlation_id = correlation::from_header_or_new(caller_id.as_deref());
    let log = Log::new(FUNCTION, &correlation_id);
    let outcome = handle(req, &env, &ctx, &correlation_id, &log).await;
    match outcome {
        Ok((status, body)) => http::json(status, &body, &correlation_id),
        Err(err) => http::refusal(&err, &log),
    }
}

async fn handle(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    correlation_id: &str,
    log: &Log<'_>,
) -> Result<(u16, serde_json::Value), ApiError> {
    request::require_post(req.method().as_ref())?;
    let config = Config::load(env).map_err(|e| {
        log.error("config_invalid", json!({ "reason": e.0 }));
        ApiError::from(e)
    })?;
    let authorization = req.headers().get("authorization").ok().flatten();
    request::require_service_role(authorization.as_deref(), &config.supabase.service_role_key)?;
    let query = req.url().ok().and_then(|u| u.query().map(str::to_string));
    let body = req
        .bytes()
        .await
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body could not be read"))?;
    let invocation = invocation::parse(&body, query.as_deref())?;

    let worker_id = format!("{FUNCTION}:{correlation_id}");
    log.info(
        "woken",
        json!({ "reason": invocation.reason, "wait": invocation.wait }),
    );
    if invocation.wait {
        let summary = run_logged(&config, &worker_id, correlation_id).await?;
        let body = json!({ "ok": true, "summary": summary, "correlation_id": correlation_id });
        return Ok((200, body));
    }
    let (config, worker_id, cid) = (
        config.clone(),
        worker_id.clone(),
        correlation_id.to_string(),
    );
    ctx.wait_until(async move {
        let _ = run_logged(&config, &worker_id, &cid).await;
    });
    Ok((
        202,
        json!({ "ok": true, "accepted": true, "correlation_id": correlation_id }),
    ))
}

/// A run and its one log line: `drained` with the summary, or `drain_failed`.
async fn run_logged(
    config: &Config,
    worker_id: &str,
    correlation_id: &str,
) -> Result<drain::Summary, ApiError> {
    let log = Log::new(FUNCTION, correlation_id);
    match drain::run(config, worker_id, correlation_id, &log).await {
        Ok(summary) => {
            log.info("drained", json!(summary));
            Ok(summary)
        }
        Err(e) => {
            log.error("drain_failed", json!({ "error": format!("{e:?}") }));
            Err(e.into_api_error())
        }
    }
}
