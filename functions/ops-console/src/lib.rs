//! `ops-console`: the operators' page (the overview of the bus, jobs, health,
//! runs and campaigns; dead letters and their redrive; runs, jobs and
//! approvals; traces). It serves the page's files and `config.json` through
//! the page scaffolding it shares with `campaign-dashboard`
//! (`switchyard_shared::page`); everything the page shows or does goes from
//! the operator's browser to PostgREST with the operator's own session, through
//! the same operator-gated RPCs and audits as the other surfaces. The function
//! holds no privileged path of its own.

use serde_json::{json, Map};
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
    /// n8n's editor as browsers reach it (`OPS_CONSOLE_N8N_URL`, optional):
    /// a trace links the n8n executions that handled its events.
    pub n8n_url: Option<String>,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let n8n_url = lookup("OPS_CONSOLE_N8N_URL")
            .map(|url| url.trim_end_matches('/').to_string())
            .filter(|url| !url.is_empty());
        if let Some(url) = &n8n_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError(
                    "OPS_CONSOLE_N8N_URL must be an http(s) URL".into(),
                ));
            }
        }
        Ok(Settings {
            page: PageSettings::from_lookup(lookup, "OPS_CONSOLE_")?,
            n8n_url,
        })
    }
}

pub struct OpsConsole;

impl Function for OpsConsole {
    const SPEC: Spec = page::spec("ops-console");
    type Settings = Settings;

    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        let settings = &call.config.settings;
        let mut extra = Map::new();
        extra.insert("n8n_url".into(), json!(settings.n8n_url));
        page::serve(&call, &settings.page, extra).await
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<OpsConsole>(req, env, ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::config::lookup_from as lookup;

    // {"role":"anon"}, unsigned: only the claims are read.
    const ANON: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2ln";

    #[test]
    fn the_n8n_link_is_optional_and_must_be_http() {
        let base = [
            ("SUPABASE_URL", "http://127.0.0.1:54321"),
            ("SUPABASE_ANON_KEY", ANON),
        ];
        assert_eq!(Settings::from_lookup(&lookup(&base)).unwrap().n8n_url, None);
        let with = |url: &'static str| {
            let mut pairs = base.to_vec();
            pairs.push(("OPS_CONSOLE_N8N_URL", url));
            Settings::from_lookup(&lookup(&pairs))
        };
        assert_eq!(
            with("https://n8n.example.com/").unwrap().n8n_url.as_deref(),
            Some("https://n8n.example.com")
        );
        assert_eq!(with("").unwrap().n8n_url, None);
        let err = with("javascript:alert(1)").unwrap_err();
        assert_eq!(err.0, "OPS_CONSOLE_N8N_URL must be an http(s) URL");
    }
}
