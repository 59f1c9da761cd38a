//! `ops-runner`: executes build/deploy runs (seed: ops-runner.md).
//!
//! Woken by the database (a run became queued, a handoff, pg_cron every
//! minute; through pg_net with its invocation token) or by an operator (the
//! service role key). It answers 202 at once and works after the response, or
//! with `?wait=true` works inside the request and answers with the summary.
//! `provider` and `providers` hold every decision about a phase; `runner`
//! moves runs between the database and the providers.

pub mod config;
pub mod provider;
pub mod providers;
pub mod runner;

use switchyard_shared::auth::Auth;
use switchyard_shared::error::ApiError;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::invocation;
use switchyard_shared::log::Log;
use worker::{event, Context, Env, Request, Response};

use crate::config::Settings;

const NAME: &str = "ops-runner";

pub struct OpsRunner;

impl Function for OpsRunner {
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
            let work = runner::run(&client, &config.settings, &correlation_id);
            invocation::logged(log, "worked", "work_failed", work).await
        })
        .await
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<OpsRunner>(req, env, ctx).await
}
