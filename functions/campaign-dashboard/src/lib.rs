//! `campaign-dashboard`: the page where people toggle campaigns (seed:
//! campaign-orchestration.md, Pillar 4). It serves the static page and its
//! script (the `ASSETS` binding: Workers static assets deployed, a workerd
//! disk service locally) and `config.json`, which tells the page where
//! Supabase is and its public anon key. Everything the page shows it reads as
//! the signed-in user through PostgREST (RLS), and every toggle goes through
//! `campaign-toggle`. The service role key never leaves the server.

use serde_json::json;
use switchyard_shared::auth::Auth;
use switchyard_shared::config::{required, ConfigError, FromLookup, Lookup};
use switchyard_shared::error::{ApiError, ErrorCode};
use switchyard_shared::function::{serve, Call, Function, Reply, Spec};
use worker::{event, Context, Env, Headers, Method, Request, Response};

const NAME: &str = "campaign-dashboard";

/// The page's own rules: scripts and styles from this origin only, data from
/// Supabase only, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
connect-src 'self' {supabase}; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Debug, Clone)]
pub struct Settings {
    /// What browsers use to reach Supabase: `CAMPAIGN_DASHBOARD_SUPABASE_URL`,
    /// else `SUPABASE_URL`.
    pub supabase_url: String,
    /// The public anon key (`SUPABASE_ANON_KEY`), required: the page must
    /// never be handed the service role key instead.
    pub anon_key: String,
    /// Where the page sends toggles: `CAMPAIGN_DASHBOARD_TOGGLE_URL`, else
    /// `<supabase_url>/functions/v1/campaign-toggle`.
    pub toggle_url: String,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let supabase_url = lookup("CAMPAIGN_DASHBOARD_SUPABASE_URL")
            .map_or_else(|| required(lookup, "SUPABASE_URL"), Ok)?
            .trim_end_matches('/')
            .to_string();
        let toggle_url = lookup("CAMPAIGN_DASHBOARD_TOGGLE_URL")
            .unwrap_or_else(|| format!("{supabase_url}/functions/v1/campaign-toggle"));
        let anon_key = required(lookup, "SUPABASE_ANON_KEY")?;
        // Handed to every browser: it must be the anon key and nothing else.
        let is_anon = switchyard_shared::auth::jwt_role(&anon_key).as_deref() == Some("anon");
        if !is_anon || lookup("SUPABASE_SERVICE_ROLE_KEY").as_deref() == Some(anon_key.as_str()) {
            return Err(ConfigError(
                "SUPABASE_ANON_KEY must be the project's anon key (a JWT with role anon)".into(),
            ));
        }
        Ok(Settings {
            anon_key,
            supabase_url,
            toggle_url,
        })
    }
}

/// What a path of the dashboard serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/functions/v1/campaign-dashboard` without its slash: relative URLs
    /// in the page need it.
    AddSlash,
    Page,
    Config,
    Asset(&'static str, &'static str),
    NotFound,
}

pub fn route(subpath: &str) -> Route {
    match subpath {
        "" => Route::AddSlash,
        "/" | "/index.html" => Route::Page,
        "/config.json" => Route::Config,
        "/app.js" => Route::Asset("app.js", "text/javascript; charset=utf-8"),
        "/style.css" => Route::Asset("style.css", "text/css; charset=utf-8"),
        _ => Route::NotFound,
    }
}

pub struct CampaignDashboard;

impl Function for CampaignDashboard {
    const SPEC: Spec = Spec {
        name: NAME,
        methods: &["GET", "HEAD"],
        auth: Auth::Open,
        max_body_bytes: 0,
    };
    type Settings = Settings;

    async fn handle(call: Call<'_, Settings>) -> Result<Reply, ApiError> {
        let settings = &call.config.settings;
        match route(&call.subpath()) {
            Route::AddSlash => {
                let headers = Headers::new();
                headers
                    .set("location", &format!("{NAME}/"))
                    .map_err(internal)?;
                let response = Response::empty()
                    .map_err(internal)?
                    .with_status(308)
                    .with_headers(headers);
                Ok(Reply::raw(response, "redirected"))
            }
            Route::Config => Ok(Reply::ok(
                200,
                "configured",
                json!({
                    "supabase_url": settings.supabase_url,
                    "anon_key": settings.anon_key,
                    "toggle_url": settings.toggle_url,
                }),
            )
            .header("cache-control", "no-store")),
            Route::Page => asset(&call, "index.html", "text/html; charset=utf-8").await,
            Route::Asset(file, content_type) => asset(&call, file, content_type).await,
            Route::NotFound => Err(ApiError::new(ErrorCode::NotFound, "no such page")),
        }
    }
}

/// A file from the static assets, with the page's security headers.
async fn asset(
    call: &Call<'_, Settings>,
    file: &str,
    content_type: &str,
) -> Result<Reply, ApiError> {
    let assets = call.env.assets("ASSETS").map_err(|e| {
        ApiError::new(
            ErrorCode::Misconfigured,
            "the function is misconfigured; see its logs",
        )
        .with_cause(format!("no ASSETS binding: {e}"))
    })?;
    let request =
        Request::new(&format!("https://assets.invalid/{file}"), Method::Get).map_err(internal)?;
    let mut stored = assets.fetch_request(request).await.map_err(internal)?;
    if stored.status_code() != 200 {
        return Err(ApiError::new(
            ErrorCode::Internal,
            "the page is missing from this deployment",
        )
        .with_cause(format!(
            "ASSETS answered {} for {file}",
            stored.status_code()
        )));
    }
    let body = stored.bytes().await.map_err(internal)?;
    let headers = Headers::new();
    let csp = CONTENT_SECURITY_POLICY.replace("{supabase}", &call.config.settings.supabase_url);
    for (name, value) in [
        ("content-type", content_type),
        // Not fingerprinted: always revalidated, so a deploy shows at once.
        ("cache-control", "no-cache"),
        ("content-security-policy", csp.as_str()),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.set(name, value).map_err(internal)?;
    }
    let response = Response::from_bytes(body)
        .map_err(internal)?
        .with_headers(headers);
    Ok(Reply::raw(response, "served").log(json!({ "file": file })))
}

fn internal(e: worker::Error) -> ApiError {
    ApiError::new(ErrorCode::Internal, "the page could not be served").with_cause(e.to_string())
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    serve::<CampaignDashboard>(req, env, ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::config::lookup_from as lookup;

    #[test]
    fn paths_serve_the_page_its_files_and_nothing_else() {
        assert_eq!(route(""), Route::AddSlash);
        assert_eq!(route("/"), Route::Page);
        assert_eq!(route("/index.html"), Route::Page);
        assert_eq!(route("/config.json"), Route::Config);
        assert!(matches!(route("/app.js"), Route::Asset("app.js", _)));
        for other in ["/../secrets.env", "/app.js.map", "/x", "//app.js"] {
            assert_eq!(route(other), Route::NotFound, "{other}");
        }
    }

    // {"role":"anon"} and {"role":"service_role"}, unsigned: only the claims are read.
    const ANON: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2ln";
    const SERVICE: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2ln";

    #[test]
    fn settings_hand_out_the_anon_key_never_the_service_key() {
        let settings = Settings::from_lookup(&lookup(&[
            ("SUPABASE_URL", "http://127.0.0.1:54321/"),
            ("SUPABASE_ANON_KEY", ANON),
            ("SUPABASE_SERVICE_ROLE_KEY", "service"),
        ]))
        .unwrap();
        assert_eq!(settings.anon_key, ANON);
        for wrong in [SERVICE, "not-a-jwt"] {
            let err = Settings::from_lookup(&lookup(&[
                ("SUPABASE_URL", "http://x"),
                ("SUPABASE_ANON_KEY", wrong),
            ]))
            .unwrap_err();
            assert!(err.0.starts_with("SUPABASE_ANON_KEY") && !err.0.contains(wrong));
        }
        assert_eq!(
            settings.toggle_url,
            "http://127.0.0.1:54321/functions/v1/campaign-toggle"
        );
        assert!(!format!("{settings:?}").contains("service"));
        let err = Settings::from_lookup(&lookup(&[("SUPABASE_URL", "http://x")])).unwrap_err();
        assert_eq!(err.0, "SUPABASE_ANON_KEY is not set");
        let public = Settings::from_lookup(&lookup(&[
            ("SUPABASE_URL", "http://internal"),
            ("CAMPAIGN_DASHBOARD_SUPABASE_URL", "https://ref.supabase.co"),
            ("SUPABASE_ANON_KEY", ANON),
        ]))
        .unwrap();
        assert_eq!(public.supabase_url, "https://ref.supabase.co");
    }
}
