//! The router's configuration, read and validated once per isolate.

use std::cell::OnceCell;
use std::rc::Rc;

use switchyard_shared::config::{
    env_lookup, load_once, ConfigError, Lookup, PerIsolate, SupabaseConfig,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub supabase: SupabaseConfig,
    /// Events per claim (`OUTBOX_ROUTER_BATCH_SIZE`, 1..=1000, default 25 as in the seed).
    pub batch_size: u32,
    /// Lease per claim (`OUTBOX_ROUTER_LEASE_SECONDS`, 5..=3600, default 60).
    /// Deliveries are cut short so they end before it does.
    pub lease_seconds: u32,
    /// How long one invocation keeps claiming (`OUTBOX_ROUTER_TIME_BUDGET_MS`,
    /// 1000..=600000, default 25000) before it hands off to a fresh one.
    pub time_budget_ms: u64,
}

thread_local! {
    static CONFIG: PerIsolate<Config> = const { OnceCell::new() };
}

impl Config {
    pub fn load(env: &worker::Env) -> Result<Rc<Config>, ConfigError> {
        load_once(&CONFIG, || Config::from_lookup(&env_lookup(env)))
    }

    pub fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        Ok(Config {
            supabase: SupabaseConfig::from_lookup(lookup)?,
            batch_size: bounded(lookup, "OUTBOX_ROUTER_BATCH_SIZE", 25, 1, 1000)? as u32,
            lease_seconds: bounded(lookup, "OUTBOX_ROUTER_LEASE_SECONDS", 60, 5, 3600)? as u32,
            time_budget_ms: bounded(
                lookup,
                "OUTBOX_ROUTER_TIME_BUDGET_MS",
                25_000,
                1000,
                600_000,
            )?,
        })
    }
}

fn bounded(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: HashMap<String, String> = HashMap::from([
            (
                "SUPABASE_URL".to_string(),
                "http://127.0.0.1:54321".to_string(),
            ),
            (
                "SUPABASE_SERVICE_ROLE_KEY".to_string(),
                "service-key".to_string(),
            ),
        ]);
        for (k, v) in pairs {
            map.insert(k.to_string(), v.to_string());
        }
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_follow_the_seed() {
        let config = Config::from_lookup(&lookup(&[])).unwrap();
        assert_eq!(config.batch_size, 25);
        assert_eq!(config.lease_seconds, 60);
        assert_eq!(config.time_budget_ms, 25_000);
    }

    #[test]
    fn values_are_read_and_bounded() {
        let config = Config::from_lookup(&lookup(&[
            ("OUTBOX_ROUTER_BATCH_SIZE", "100"),
            ("OUTBOX_ROUTER_LEASE_SECONDS", "5"),
            ("OUTBOX_ROUTER_TIME_BUDGET_MS", "600000"),
        ]))
        .unwrap();
        assert_eq!(
            (
                config.batch_size,
                config.lease_seconds,
                config.time_budget_ms
            ),
            (100, 5, 600_000)
        );
        for (name, value) in [
            ("OUTBOX_ROUTER_BATCH_SIZE", "0"),
            ("OUTBOX_ROUTER_BATCH_SIZE", "1001"),
            ("OUTBOX_ROUTER_LEASE_SECONDS", "4"),
            ("OUTBOX_ROUTER_TIME_BUDGET_MS", "ten"),
        ] {
            let err = Config::from_lookup(&lookup(&[(name, value)])).unwrap_err();
            assert!(err.0.starts_with(name), "{}", err.0);
        }
    }
}
