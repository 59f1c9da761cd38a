//! The scaffolding of a function that serves a browser page (the campaign
//! dashboard, the ops console): the page and its two bundled files from the
//! static assets (the `ASSETS` binding: Workers static assets deployed, a
//! workerd disk service locally), and `config.json`, which tells the page where
//! Supabase is and its public anon key. Everything such a page shows it reads
//! as the signed-in user through PostgREST, so the function itself holds no
//! privileged path; the service role key never leaves the server.

use crate::auth::Auth;
use crate::config::{required, ConfigError, Lookup};
use crate::error::{ApiError, ErrorCode};
use crate::function::{Call, Reply, Spec};
use serde_json::{json, Map, Value};
use worker::{Headers, Method, Request, Response};

/// The page's own rules: scripts and styles from this origin only, data from
/// Supabase only, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
connect-src 'self' {supabase}; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A page function's spec: GET and HEAD, no body, open (the page is public;
/// what it shows, PostgREST gives only to the signed-in user).
pub const fn spec(name: &'static str) -> Spec {
    Spec {
        name,
        methods: &["GET", "HEAD"],
        auth: Auth::Open,
        max_body_bytes: 0,
    }
}

/// Where a page's browser finds Supabase.
#[derive(Debug, Clone)]
pub struct PageSettings {
    /// What browsers use to reach Supabase: `<PREFIX>SUPABASE_URL`, else
    /// `SUPABASE_URL`.
    pub supabase_url: String,
    /// The public anon key (`SUPABASE_ANON_KEY`), required: the page must
    /// never be handed the service role key instead.
    pub anon_key: String,
}

impl PageSettings {
    /// Reads the settings of the function whose setting prefix is `prefix`
    /// (`CAMPAIGN_DASHBOARD_`).
    pub fn from_lookup(lookup: Lookup, prefix: &str) -> Result<Self, ConfigError> {
        let supabase_url = lookup(&format!("{prefix}SUPABASE_URL"))
            .map_or_else(|| required(lookup, "SUPABASE_URL"), Ok)?
            .trim_end_matches('/')
            .to_string();
        let anon_key = required(lookup, "SUPABASE_ANON_KEY")?;
        // Handed to every browser: it must be the anon key and nothing else.
        let is_anon = crate::auth::jwt_role(&anon_key).as_deref() == Some("anon");
        if !is_anon || lookup("SUPABASE_SERVICE_ROLE_KEY").as_deref() == Some(anon_key.as_str()) {
            return Err(ConfigError(
                "SUPABASE_ANON_KEY must be the project's anon key (a JWT with role anon)".into(),
            ));
        }
        Ok(PageSettings {
            supabase_url,
            anon_key,
        })
    }
}

/// What a path of a page function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/functions/v1/<name>` without its slash: relative URLs in the page
    /// need it.
    AddSlash,
    Config,
    Asset(&'static str, &'static str),
    NotFound,
}

pub fn route(subpath: &str) -> Route {
    match subpath {
        "" => Route::AddSlash,
        "/" | "/index.html" => Route::Asset("index.html", "text/html; charset=utf-8"),
        "/config.json" => Route::Config,
        "/app.js" => Route::Asset("app.js", "text/javascript; charset=utf-8"),
        "/style.css" => Route::Asset("style.css", "text/css; charset=utf-8"),
        _ => Route::NotFound,
    }
}

/// Answers any request of a page function: its files, or `config.json`
/// holding `supabase_url`, `anon_key` and the `extra` fields.
pub async fn serve<S>(
    call: &Call<'_, S>,
    settings: &PageSettings,
    extra: Map<String, Value>,
) -> Result<Reply, ApiError> {
    match route(&call.subpath()) {
        Route::AddSlash => {
            let headers = Headers::new();
            headers
                .set("location", &format!("{}/", call.name()))
                .map_err(internal)?;
            let response = Response::empty()
                .map_err(internal)?
                .with_status(308)
                .with_headers(headers);
            Ok(Reply::raw(response, "redirected"))
        }
        Route::Config => {
            let mut body = json!({
                "supabase_url": settings.supabase_url,
                "anon_key": settings.anon_key,
            });
            body.as_object_mut().expect("an object").extend(extra);
            Ok(Reply::ok(200, "configured", body).header("cache-control", "no-store"))
        }
        Route::Asset(file, content_type) => asset(call, settings, file, content_type).await,
        Route::NotFound => Err(ApiError::new(ErrorCode::NotFound, "no such page")),
    }
}

/// A file from the static assets, with the page's security headers.
async fn asset<S>(
    call: &Call<'_, S>,
    settings: &PageSettings,
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
    let csp = CONTENT_SECURITY_POLICY.replace("{supabase}", &settings.supabase_url);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lookup_from as lookup;

    #[test]
    fn paths_serve_the_page_its_files_and_nothing_else() {
        assert_eq!(route(""), Route::AddSlash);
        assert!(matches!(route("/"), Route::Asset("index.html", _)));
        assert!(matches!(
            route("/index.html"),
            Route::Asset("index.html", _)
        ));
        assert_eq!(route("/config.json"), Route::Config);
        assert!(matches!(route("/app.js"), Route::Asset("app.js", _)));
        assert!(matches!(route("/style.css"), Route::Asset("style.css", _)));
        for other in ["/../secrets.env", "/app.js.map", "/x", "//app.js"] {
            assert_eq!(route(other), Route::NotFound, "{other}");
        }
    }

    // {"role":"anon"} and {"role":"service_role"}, unsigned: only the claims are read.
    const ANON: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2ln";
    const SERVICE: &str = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2ln";

    #[test]
    fn settings_hand_out_the_anon_key_never_the_service_key() {
        let settings = PageSettings::from_lookup(
            &lookup(&[
                ("SUPABASE_URL", "http://127.0.0.1:54321/"),
                ("SUPABASE_ANON_KEY", ANON),
                ("SUPABASE_SERVICE_ROLE_KEY", "service"),
            ]),
            "PAGE_",
        )
        .unwrap();
        assert_eq!(settings.anon_key, ANON);
        assert_eq!(settings.supabase_url, "http://127.0.0.1:54321");
        assert!(!format!("{settings:?}").contains("service"));
        for wrong in [SERVICE, "not-a-jwt"] {
            let err = PageSettings::from_lookup(
                &lookup(&[("SUPABASE_URL", "http://x"), ("SUPABASE_ANON_KEY", wrong)]),
                "PAGE_",
            )
            .unwrap_err();
            assert!(err.0.starts_with("SUPABASE_ANON_KEY") && !err.0.contains(wrong));
        }
        let same = PageSettings::from_lookup(
            &lookup(&[
                ("SUPABASE_URL", "http://x"),
                ("SUPABASE_ANON_KEY", ANON),
                ("SUPABASE_SERVICE_ROLE_KEY", ANON),
            ]),
            "PAGE_",
        );
        assert!(same.is_err());
        let err = PageSettings::from_lookup(&lookup(&[("SUPABASE_URL", "http://x")]), "PAGE_")
            .unwrap_err();
        assert_eq!(err.0, "SUPABASE_ANON_KEY is not set");
        let public = PageSettings::from_lookup(
            &lookup(&[
                ("SUPABASE_URL", "http://internal"),
                ("PAGE_SUPABASE_URL", "https://ref.supabase.co"),
                ("SUPABASE_ANON_KEY", ANON),
            ]),
            "PAGE_",
        )
        .unwrap();
        assert_eq!(public.supabase_url, "https://ref.supabase.co");
    }
}
