//! The router's own settings, read and validated once per isolate.

use switchyard_shared::config::{bounded, ConfigError, FromLookup, Lookup};

const TRACE_URL: &str = "OUTBOX_ROUTER_TRACE_URL";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Events per claim (`OUTBOX_ROUTER_BATCH_SIZE`, 1..=1000, default 25 as in the seed).
    pub batch_size: u32,
    /// Lease per claim (`OUTBOX_ROUTER_LEASE_SECONDS`, 5..=3600, default 60).
    /// Deliveries are cut short so they end before it does.
    pub lease_seconds: u32,
    /// How long one invocation keeps claiming (`OUTBOX_ROUTER_TIME_BUDGET_MS`,
    /// 1000..=600000, default 25000) before it hands off to a fresh one.
    pub time_budget_ms: u64,
    /// Where a person sees an event's whole path (`OUTBOX_ROUTER_TRACE_URL`,
    /// an http(s) URL with `{correlation_id}` in it), linked from chat messages.
    pub trace_url: Option<String>,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        Ok(Settings {
            batch_size: bounded(lookup, "OUTBOX_ROUTER_BATCH_SIZE", 25, 1, 1000)? as u32,
            lease_seconds: bounded(lookup, "OUTBOX_ROUTER_LEASE_SECONDS", 60, 5, 3600)? as u32,
            time_budget_ms: bounded(
                lookup,
                "OUTBOX_ROUTER_TIME_BUDGET_MS",
                25_000,
                1000,
                600_000,
            )?,
            trace_url: trace_url(lookup)?,
        })
    }
}

fn trace_url(lookup: Lookup) -> Result<Option<String>, ConfigError> {
    match lookup(TRACE_URL) {
        None => Ok(None),
        Some(url)
            if (url.starts_with("http://") || url.starts_with("https://"))
                && url.contains("{correlation_id}") =>
        {
            Ok(Some(url))
        }
        Some(_) => Err(ConfigError(format!(
            "{TRACE_URL} must be an http(s) URL containing {{correlation_id}}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::config::lookup_from as lookup;

    #[test]
    fn defaults_follow_the_seed() {
        let settings = Settings::from_lookup(&lookup(&[])).unwrap();
        assert_eq!(
            (
                settings.batch_size,
                settings.lease_seconds,
                settings.time_budget_ms
            ),
            (25, 60, 25_000)
        );
    }

    #[test]
    fn values_are_read_and_bounded() {
        let settings = Settings::from_lookup(&lookup(&[
            ("OUTBOX_ROUTER_BATCH_SIZE", "100"),
            ("OUTBOX_ROUTER_LEASE_SECONDS", "5"),
            ("OUTBOX_ROUTER_TIME_BUDGET_MS", "600000"),
        ]))
        .unwrap();
        assert_eq!(
            (
                settings.batch_size,
                settings.lease_seconds,
                settings.time_budget_ms
            ),
            (100, 5, 600_000)
        );
        for (name, value) in [
            ("OUTBOX_ROUTER_BATCH_SIZE", "0"),
            ("OUTBOX_ROUTER_BATCH_SIZE", "1001"),
            ("OUTBOX_ROUTER_LEASE_SECONDS", "4"),
            ("OUTBOX_ROUTER_TIME_BUDGET_MS", "ten"),
            ("OUTBOX_ROUTER_TRACE_URL", "https://ops.example.com/trace"),
            ("OUTBOX_ROUTER_TRACE_URL", "javascript:{correlation_id}"),
        ] {
            let err = Settings::from_lookup(&lookup(&[(name, value)])).unwrap_err();
            assert!(err.0.starts_with(name), "{}", err.0);
        }
    }
}
