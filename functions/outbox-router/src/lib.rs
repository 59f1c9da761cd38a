//! `outbox-router`: delivers outbox events to their routes.
//!
//! Woken by the database (an AFTER INSERT trigger through pg_net, and pg_cron
//! every minute) with its invocation token, or by an operator with the
//! service role key (`Auth::Platform`). The handler parses the invocation and
//! starts a run (`drain`); `delivery` holds every decision about a single
//! delivery.

pub mod config;
pub mod delivery;
pub mod drain;
pub mod invocation;

use serde_json::json;
use switchyard_shared::auth::Auth;
use switchyard_shared::error::ApiError;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::log::Log;
use switchyard_shared::postgrest::Client;
use worker::{event, Context, Env, Request, Response};

use crate::config::Settings;

const NAME: &str = "outbox-router";

pub struct OutboxRouter;

impl Function for OutboxRouter {
    const SPEC: Spec = Spec {
        name: NAME,
        methods: &["POST"],
        auth: Auth::Platform,
        max_body_bytes: invocation::MAX_BODY_BYTES,
    };
    type Settings = Settings;

    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        let invocation = invocation::parse(&call.body, call.query().as_deref())?;
        let worker_id = format!("{NAME}:{}", call.correlation_id);
        let log_fields = json!({ "reason": invocation.reason, "wait": invocation.wait });
        if invocation.wait {
            let summary = run_logged(
                call.service(),
                &call.config.settings,
                &worker_id,
                call.correlation_id,
            )
            .await?;
            return Ok(Reply::ok(200, "woken", json!({ "summary": summary })).log(log_fields));
        }
        let (client, config, cid) = (
            call.service(),
            call.config.clone(),
            call.correlation_id.to_string(),
        );
        call.ctx.wait_until(async move {
            let _ = run_logged(client, &config.settings, &worker_id, &cid).await;
        });
        Ok(Reply::ok(202, "woken", json!({ "accepted": true })).log(log_fields))
    }
}

/// A run and its one log line: `drained` with the summary, or `drain_failed`.
async fn run_logged(
    client: Client,
    settings: &Settings,
    worker_id: &str,
    correlation_id: &str,
) -> Result<drain::Summary, ApiError> {
    let log = Log::new(NAME, correlation_id);
    match drain::run(&client, settings, worker_id, correlation_id, &log).await {
        Ok(summary) => {
            log.info("drained", json!(summary));
            Ok(summary)
        }
        Err(e) => {
            log.error("drain_failed", json!({ "error": format!("{e:?}") }));
            Err(e.into())
        }
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<OutboxRouter>(req, env, ctx).await
}
