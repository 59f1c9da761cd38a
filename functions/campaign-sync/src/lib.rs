//! `campaign-sync`: the reconciler (seed: Pillar 5, "Polling (Fallback)").
//!
//! pg_cron wakes it every 5 minutes through `edge.invoke` with its invocation
//! token (or an operator with the service role key, `?wait=true` to wait for
//! the summary). One sweep at a time: see `sweep`.

pub mod sweep;

use switchyard_shared::auth::Auth;
use switchyard_shared::error::ApiError;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::invocation;
use switchyard_shared::log::Log;
use switchyard_shared::n8n;
use worker::{event, Context, Env, Request, Response};

const NAME: &str = "campaign-sync";

pub struct CampaignSync;

impl Function for CampaignSync {
    const SPEC: Spec = Spec {
        name: NAME,
        methods: &["POST"],
        auth: Auth::Platform,
        max_body_bytes: invocation::MAX_BODY_BYTES,
    };
    /// Where n8n is: `N8N_API_URL`, `N8N_API_KEY`, `N8N_TIMEOUT_MS`.
    type Settings = n8n::Settings;

    async fn handle(call: Call<'_, n8n::Settings>) -> Result<Reply, ApiError> {
        invocation::answer(&call, |client, config, correlation_id| async move {
            let work = sweep::sweep(&client, &config.settings, &correlation_id);
            invocation::logged(
                Log::new(NAME, &correlation_id),
                "swept",
                "sweep_failed",
                work,
            )
            .await
        })
        .await
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<CampaignSync>(req, env, ctx).await
}
