//! `ops-console`: the operators' page (the overview of the bus, jobs, health,
//! runs and campaigns; dead letters and their redrive; runs, jobs and
//! approvals; traces). It serves the page's files and `config.json` through
//! the page scaffolding it shares with `campaign-dashboard`
//! (`switchyard_shared::page`); everything the page shows or does goes from
//! the operator's browser to PostgREST with the operator's own session, through
//! the same operator-gated RPCs and audits as the other surfaces. The function
//! holds no privileged path of its own.

use serde_json::Map;
use switchyard_shared::auth::Auth;
use switchyard_shared::config::{ConfigError, FromLookup, Lookup};
use switchyard_shared::error::ApiError;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::page::{self, PageSettings};
use worker::{event, Context, Env, Request, Response};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Supabase as browsers reach it: `OPS_CONSOLE_SUPABASE_URL`, else
    /// `SUPABASE_URL`; and the anon key.
    pub page: PageSettings,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        Ok(Settings {
            page: PageSettings::from_lookup(lookup, "OPS_CONSOLE_")?,
        })
    }
}

pub struct OpsConsole;

impl Function for OpsConsole {
    const SPEC: Spec = Spec {
        name: "ops-console",
        methods: &["GET", "HEAD"],
        auth: Auth::Open,
        max_body_bytes: 0,
    };
    type Settings = Settings;

    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        page::serve(&call, &call.config.settings.page, Map::new()).await
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<OpsConsole>(req, env, ctx).await
}
