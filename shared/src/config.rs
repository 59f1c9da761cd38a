//! Configuration is read and validated once, at the top of a request, from a
//! name -> value lookup (the Workers `Env` in production, a map in tests).
//! Errors name the variable, never its value.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use crate::error::{ApiError, ErrorCode};
use crate::signature::SigningKey;

pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ConfigError> for ApiError {
    /// The caller learns only that the server is misconfigured; the detail
    /// (a variable's name, never its value) goes to the log.
    fn from(err: ConfigError) -> Self {
        ApiError::new(
            ErrorCode::Misconfigured,
            "the function is misconfigured; see its logs",
        )
        .with_cause(err.0)
    }
}

/// A function's own settings, read from its environment.
pub trait FromLookup: Sized + 'static {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError>;
}

/// Functions without settings of their own.
impl FromLookup for () {
    fn from_lookup(_: Lookup) -> Result<Self, ConfigError> {
        Ok(())
    }
}

/// A fixed set of name/value pairs as a lookup: settings in tests, or
/// anywhere an `Env` is not at hand.
pub fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// A Workers `Env` as a lookup: secrets and plain vars are both strings there.
pub fn env_lookup(env: &worker::Env) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        env.secret(name)
            .map(|s| s.to_string())
            .or_else(|_| env.var(name).map(|v| v.to_string()))
            .ok()
            .filter(|v| !v.is_empty())
    }
}

thread_local! {
    // One worker module serves one function, so one slot is enough; it is
    // typed by downcasting.
    static LOADED: RefCell<Option<Rc<dyn Any>>> = const { RefCell::new(None) };
}

/// A configuration read and validated once per isolate. Workers never change
/// an isolate's env (new secrets mean new isolates), so re-reading it on every
/// request only costs time: ~0.4 ms of JS-boundary calls per request here.
/// A failed load is not kept, so it is reported on every request.
pub fn load_once<T: 'static>(
    load: impl FnOnce() -> Result<T, ConfigError>,
) -> Result<Rc<T>, ConfigError> {
    if let Some(config) = LOADED.with(|slot| slot.borrow().clone()) {
        if let Ok(config) = config.downcast::<T>() {
            return Ok(config);
        }
    }
    let config = Rc::new(load()?);
    LOADED.with(|slot| *slot.borrow_mut() = Some(config.clone()));
    Ok(config)
}

pub fn required(lookup: Lookup, name: &str) -> Result<String, ConfigError> {
    lookup(name).ok_or_else(|| ConfigError(format!("{name} is not set")))
}

/// Where and as whom the functions reach PostgREST.
#[derive(Clone, PartialEq, Eq)]
pub struct SupabaseConfig {
    /// Base URL without a trailing slash; `/rest/v1` is appended per call.
    pub url: String,
    pub service_role_key: String,
    /// The `apikey` sent with a user's JWT (optional: the service role key
    /// serves as the apikey when it is absent).
    pub anon_key: Option<String>,
}

impl std::fmt::Debug for SupabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseConfig")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SupabaseConfig {
    pub fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let url = required(lookup, "SUPABASE_URL")?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError("SUPABASE_URL must be an http(s) URL".into()));
        }
        let service_role_key = required(lookup, "SUPABASE_SERVICE_ROLE_KEY")?;
        Ok(SupabaseConfig {
            url: url.trim_end_matches('/').to_string(),
            service_role_key,
            anon_key: lookup("SUPABASE_ANON_KEY"),
        })
    }
}

/// An optional integer setting within bounds.
pub fn bounded(
    lookup: Lookup,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(raw) = lookup(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(ConfigError(format!(
            "{name} must be an integer from {min} to {max}"
        ))),
    }
}

/// The current key and, during a rotation, the previous one.
pub fn signing_keys(
    lookup: Lookup,
    current: &str,
    previous: &str,
    parse: fn(&str) -> Result<SigningKey, String>,
) -> Result<Vec<SigningKey>, ConfigError> {
    if lookup(current).is_none() && lookup(previous).is_some() {
        return Err(ConfigError(format!("{previous} is set without {current}")));
    }
    let mut keys = Vec::new();
    for name in [current, previous] {
        if let Some(secret) = lookup(name) {
            keys.push(parse(secret.trim()).map_err(|why| ConfigError(format!("{name}: {why}")))?);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::lookup_from as lookup;
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn load_once_keeps_a_success_and_retries_a_failure() {
        assert!(load_once::<String>(|| Err(ConfigError("missing".into()))).is_err());
        assert_eq!(*load_once(|| Ok("first".to_string())).unwrap(), "first");
        let again = load_once::<String>(|| panic!("a loaded config is not read again")).unwrap();
        assert_eq!(*again, "first");
    }

    #[test]
    fn bounded_settings_default_and_refuse_out_of_range_values() {
        let l = lookup(&[("N", "100"), ("BAD", "ten"), ("LOW", "0")]);
        assert_eq!(bounded(&l, "N", 25, 1, 1000).unwrap(), 100);
        assert_eq!(bounded(&l, "ABSENT", 25, 1, 1000).unwrap(), 25);
        for name in ["BAD", "LOW"] {
            assert!(bounded(&l, name, 25, 1, 1000)
                .unwrap_err()
                .0
                .starts_with(name));
        }
    }

    #[test]
    fn supabase_config_trims_trailing_slash_and_hides_the_key() {
        let l = lookup(&[
            ("SUPABASE_URL", "http://127.0.0.1:54321/"),
            ("SUPABASE_SERVICE_ROLE_KEY", "sekrit"),
        ]);
        let cfg = SupabaseConfig::from_lookup(&l).unwrap();
        assert_eq!(cfg.url, "http://127.0.0.1:54321");
        assert!(!format!("{cfg:?}").contains("sekrit"));
    }

    #[test]
    fn supabase_config_names_what_is_missing_or_wrong() {
        let l = lookup(&[("SUPABASE_URL", "http://x")]);
        assert_eq!(
            SupabaseConfig::from_lookup(&l).unwrap_err().0,
            "SUPABASE_SERVICE_ROLE_KEY is not set"
        );
        let l = lookup(&[
            ("SUPABASE_URL", "ftp://x"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
        ]);
        assert!(SupabaseConfig::from_lookup(&l).is_err());
    }

    #[test]
    fn signing_keys_take_current_then_previous() {
        let l = lookup(&[
            ("CUR", SECRET),
            ("PREV", "fedcba9876543210fedcba9876543210"),
        ]);
        let keys = signing_keys(&l, "CUR", "PREV", SigningKey::ipai).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].id(), SigningKey::ipai(SECRET).unwrap().id());
        let none = signing_keys(&lookup(&[]), "CUR", "PREV", SigningKey::ipai).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_bad_or_orphaned_secret_is_a_config_error_without_its_value() {
        let err = signing_keys(
            &lookup(&[("CUR", "short-secret")]),
            "CUR",
            "PREV",
            SigningKey::ipai,
        )
        .unwrap_err();
        assert!(err.0.starts_with("CUR:"));
        assert!(!err.0.contains("short-secret"));
        let err = signing_keys(
            &lookup(&[("PREV", SECRET)]),
            "CUR",
            "PREV",
            SigningKey::ipai,
        )
        .unwrap_err();
        assert_eq!(err.0, "PREV is set without CUR");
        let api: ApiError = err.into();
        assert_eq!(api.status(), 500);
        assert_eq!(api.cause.as_deref(), Some("PREV is set without CUR"));
    }
}
