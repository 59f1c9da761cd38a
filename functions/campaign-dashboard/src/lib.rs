//! `campaign-dashboard`: the page where people toggle campaigns (seed:
//! campaign-orchestration.md, Pillar 4). The page scaffolding (its files and
//! `config.json`) is `switchyard_shared::page`, shared with `ops-console`.
//! Everything the page shows it reads as the signed-in user through PostgREST
//! (RLS), and every toggle goes through `campaign-toggle`.

use serde_json::{json, Map};
use switchyard_shared::config::{ConfigError, FromLookup, Lookup};
use switchyard_shared::error::ApiError;
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use switchyard_shared::page::{self, PageSettings};
use worker::{event, Context, Env, Request, Response};

const NAME: &str = "campaign-dashboard";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Supabase as browsers reach it: `CAMPAIGN_DASHBOARD_SUPABASE_URL`, else
    /// `SUPABASE_URL`; and the anon key.
    pub page: PageSettings,
    /// Where the page sends toggles: `CAMPAIGN_DASHBOARD_TOGGLE_URL`, else
    /// `<supabase_url>/functions/v1/campaign-toggle`.
    pub toggle_url: String,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let page = PageSettings::from_lookup(lookup, "CAMPAIGN_DASHBOARD_")?;
        let toggle_url = lookup("CAMPAIGN_DASHBOARD_TOGGLE_URL")
            .unwrap_or_else(|| format!("{}/functions/v1/campaign-toggle", page.supabase_url));
        Ok(Settings { page, toggle_url })
    }
}

pub struct CampaignDashboard;

impl Function for CampaignDashboard {
    const SPEC: Spec = page::spec(NAME);
    type Settings = Settings;

    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        let settings = &call.config.settings;
        let mut extra = Map::new();
        extra.insert("toggle_url".into(), json!(settings.toggle_url));
        page::serve(&call, &settings.page, extra).await
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<CampaignDashboard>(req, env, ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::config::lookup_from as lookup;

    // {"role":"anon"}, unsigned: only the claims are read.
    const ANON: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2ln";

    #[test]
    fn toggles_go_to_campaign_toggle_unless_told_otherwise() {
        let settings = Settings::from_lookup(&lookup(&[
            ("SUPABASE_URL", "http://127.0.0.1:54321/"),
            ("SUPABASE_ANON_KEY", ANON),
        ]))
        .unwrap();
        assert_eq!(
            settings.toggle_url,
            "http://127.0.0.1:54321/functions/v1/campaign-toggle"
        );
        let elsewhere = Settings::from_lookup(&lookup(&[
            ("SUPABASE_URL", "http://internal"),
            ("CAMPAIGN_DASHBOARD_SUPABASE_URL", "https://ref.supabase.co"),
            (
                "CAMPAIGN_DASHBOARD_TOGGLE_URL",
                "https://edge.example/toggle",
            ),
            ("SUPABASE_ANON_KEY", ANON),
        ]))
        .unwrap();
        assert_eq!(elsewhere.page.supabase_url, "https://ref.supabase.co");
        assert_eq!(elsewhere.toggle_url, "https://edge.example/toggle");
    }
}
