//! The health checker's own settings, read and validated once per isolate.

use switchyard_shared::config::{bounded, ConfigError, FromLookup, Lookup};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Probes in flight at once (`HEALTH_CHECK_CONCURRENCY`, 1..=256, default
    /// 6: Cloudflare Workers open at most 6 connections at a time per
    /// invocation, so more would only queue there).
    pub concurrency: usize,
    /// Services asked for per round (`HEALTH_CHECK_BATCH_SIZE`, 1..=1000, default 100).
    pub batch_size: u32,
    /// How long one invocation keeps probing (`HEALTH_CHECK_TIME_BUDGET_MS`,
    /// 1000..=600000, default 25000). Services left are still due, so the
    /// next invocation (pg_cron, every 5 minutes) takes them first.
    pub time_budget_ms: u64,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        Ok(Settings {
            concurrency: bounded(lookup, "HEALTH_CHECK_CONCURRENCY", 6, 1, 256)? as usize,
            batch_size: bounded(lookup, "HEALTH_CHECK_BATCH_SIZE", 100, 1, 1000)? as u32,
            time_budget_ms: bounded(lookup, "HEALTH_CHECK_TIME_BUDGET_MS", 25_000, 1000, 600_000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::config::lookup_from as lookup;

    #[test]
    fn defaults_fit_a_worker_and_values_are_bounded() {
        let settings = Settings::from_lookup(&lookup(&[])).unwrap();
        assert_eq!(
            (
                settings.concurrency,
                settings.batch_size,
                settings.time_budget_ms
            ),
            (6, 100, 25_000)
        );
        let err = Settings::from_lookup(&lookup(&[("HEALTH_CHECK_CONCURRENCY", "0")])).unwrap_err();
        assert!(err.0.starts_with("HEALTH_CHECK_CONCURRENCY"));
    }
}
