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

use switchyard_shared::auth::Auth;
use switchyard_shared::error::ApiError;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::invocation;
use switchyard_shared::log::Log;
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
        invocation::answer(&call, |client, config, correlation_id| async move {
            let worker_id = format!("{NAME}:{correlation_id}");
            let log = Log::new(NAME, &correlation_id);
            let run = drain::run(&client, &config.settings, &worker_id, &correlation_id, &log);
            invocation::logged(log, "drained", "drain_failed", run).await
        })
        .await
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<OutboxRouter>(req, env, ctx).await
}
