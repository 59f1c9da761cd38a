//! `health-check`: the seed's health-check-scheduler as an edge function.
//!
//! Invoked by pg_cron every 5 minutes (through pg_net with its invocation
//! token) and on demand by an operator (the service role key). It answers
//! 202 at once and sweeps after the response, or with `?wait=true` sweeps
//! inside the request and answers with the summary. `probe` holds every
//! decision about one probe; `sweep` moves services and samples between the
//! database and the network.

pub mod config;
pub mod probe;
pub mod sweep;

use switchyard_shared::auth::Auth;
use switchyard_shared::error::ApiError;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::invocation;
use switchyard_shared::log::Log;
use worker::{event, Context, Env, Request, Response};

use crate::config::Settings;

const NAME: &str = "health-check";

pub struct HealthCheck;

impl Function for HealthCheck {
    const SPEC: Spec = Spec {
        name: NAME,
        methods: &["POST"],
        auth: Auth::Platform,
        max_body_bytes: invocation::MAX_BODY_BYTES,
    };
    type Settings = Settings;

    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        invocation::answer(&call, |client, config, correlation_id| async move {
            let log = Log::new(NAME, &correlation_id);
            let run = sweep::run(&client, &config.settings, &correlation_id);
            invocation::logged(log, "swept", "sweep_failed", run).await
        })
        .await
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<HealthCheck>(req, env, ctx).await
}
