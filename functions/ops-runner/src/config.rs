//! The runner's settings, read and validated once per isolate.

use switchyard_shared::config::{bounded, ConfigError, FromLookup, Lookup};

use crate::provider::Credentials;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Names this runner in claims and events: `WORKER_ID` (the seed's name)
    /// or `OPS_RUNNER_WORKER_ID`; when unset, `ops-runner-` and a random
    /// suffix, one per isolate. Each invocation adds `.<4 hex>`. Only for
    /// tracking: the lease token, not the name, decides who may write.
    pub worker_id: String,
    /// The lease on a run, renewed by every write (`OPS_RUNNER_LEASE_SECONDS`,
    /// 5..=3600, default 60). A runner that dies is replaced this long after
    /// its last write.
    pub lease_seconds: u32,
    /// How long one invocation works (`OPS_RUNNER_TIME_BUDGET_MS`,
    /// 1000..=600000, default 25000: inside a Worker's 30 s after the
    /// response). A run that needs longer is yielded and continued by the next
    /// invocation.
    pub time_budget_ms: u64,
    pub credentials: Credentials,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let worker_id = match lookup("WORKER_ID").or_else(|| lookup("OPS_RUNNER_WORKER_ID")) {
            Some(id)
                if (1..=100).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                id
            }
            Some(_) => {
                return Err(ConfigError(
                    "WORKER_ID must be 1 to 100 printable characters".into(),
                ))
            }
            None => generated_worker_id(),
        };
        Ok(Settings {
            worker_id,
            lease_seconds: bounded(lookup, "OPS_RUNNER_LEASE_SECONDS", 60, 5, 3600)? as u32,
            time_budget_ms: bounded(lookup, "OPS_RUNNER_TIME_BUDGET_MS", 25_000, 1000, 600_000)?,
            credentials: Credentials {
                github_token: lookup("OPS_RUNNER_GITHUB_TOKEN"),
                github_api_urls: github_api_urls(lookup)?,
            },
        })
    }
}

/// GitHub's API, and `OPS_RUNNER_GITHUB_API_URL` when set (an http(s) base
/// URL): where the token may go.
fn github_api_urls(lookup: Lookup) -> Result<Vec<String>, ConfigError> {
    let mut urls = vec![crate::providers::github::DEFAULT_API_URL.to_string()];
    if let Some(url) = lookup("OPS_RUNNER_GITHUB_API_URL") {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError(
                "OPS_RUNNER_GITHUB_API_URL must be an http(s) URL".into(),
            ));
        }
        urls.push(url.trim_end_matches('/').to_string());
    }
    Ok(urls)
}

fn generated_worker_id() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    format!("ops-runner-{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::config::lookup_from as lookup;

    #[test]
    fn defaults_and_a_generated_worker_id() {
        let settings = Settings::from_lookup(&lookup(&[])).unwrap();
        assert_eq!(
            (settings.lease_seconds, settings.time_budget_ms),
            (60, 25_000)
        );
        assert!(settings.worker_id.starts_with("ops-runner-") && settings.worker_id.len() == 19);
        assert_ne!(
            settings.worker_id,
            Settings::from_lookup(&lookup(&[])).unwrap().worker_id
        );
        assert_eq!(settings.credentials.github_token, None);
        assert_eq!(
            settings.credentials.github_api_urls,
            ["https://api.github.com"]
        );
        let local = Settings::from_lookup(&lookup(&[(
            "OPS_RUNNER_GITHUB_API_URL",
            "http://127.0.0.1:54380/",
        )]))
        .unwrap();
        assert_eq!(
            local.credentials.github_api_urls[1],
            "http://127.0.0.1:54380"
        );
        assert!(
            Settings::from_lookup(&lookup(&[("OPS_RUNNER_GITHUB_API_URL", "ftp://x")])).is_err()
        );
    }

    #[test]
    fn the_seeds_worker_id_wins_and_bad_values_name_their_variable() {
        let settings = Settings::from_lookup(&lookup(&[
            ("WORKER_ID", "runner-01"),
            ("OPS_RUNNER_WORKER_ID", "x"),
        ]))
        .unwrap();
        assert_eq!(settings.worker_id, "runner-01");
        let err = Settings::from_lookup(&lookup(&[("WORKER_ID", "has space")])).unwrap_err();
        assert!(err.0.starts_with("WORKER_ID"));
        let err = Settings::from_lookup(&lookup(&[("OPS_RUNNER_LEASE_SECONDS", "2")])).unwrap_err();
        assert!(err.0.starts_with("OPS_RUNNER_LEASE_SECONDS"));
    }
}
