//! What the GitHub providers share: the REST API's base URL, headers and
//! token, and how a transient fault is waited out (a bounded number of times,
//! counted in the phase's state so a resumed runner keeps counting).

use serde_json::{json, Map, Value};

use crate::provider::{settings, Answer, Credentials, HttpCall, Method, RunContext, Step};

pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// Consecutive transient faults (5xx, 429, timeouts) a phase waits out.
pub const MAX_TRANSIENT_FAULTS: u64 = 8;
const REQUEST_TIMEOUT_MS: u64 = 10_000;

#[derive(Clone, PartialEq, Eq)]
pub struct Api {
    pub base_url: String,
    token: String,
}

impl Api {
    pub fn new(phase: &Value, credentials: &Credentials) -> Result<Api, String> {
        let token = credentials
            .github_token
            .clone()
            .ok_or("the runner's OPS_RUNNER_GITHUB_TOKEN is not set")?;
        let base_url = settings::base_url(phase, "api_url", DEFAULT_API_URL)?;
        if !credentials.github_api_urls.contains(&base_url) {
            return Err(format!(
                "api_url {base_url} is not an API the runner sends its GitHub token to \
                 (https://api.github.com, or the runner's OPS_RUNNER_GITHUB_API_URL)"
            ));
        }
        Ok(Api { base_url, token })
    }

    pub fn get(&self, path: &str) -> HttpCall {
        self.call(Method::Get, path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> HttpCall {
        self.call(Method::Post, path, Some(body.to_string()))
    }

    fn call(&self, method: Method, path: &str, body: Option<String>) -> HttpCall {
        let mut headers = vec![
            (
                "accept".to_string(),
                "application/vnd.github+json".to_string(),
            ),
            ("x-github-api-version".to_string(), "2022-11-28".to_string()),
            (
                "authorization".to_string(),
                format!("Bearer {}", self.token),
            ),
        ];
        if body.is_some() {
            headers.push(("content-type".to_string(), "application/json".to_string()));
        }
        HttpCall {
            method,
            url: format!("{}{path}", self.base_url),
            headers,
            body,
            timeout_ms: REQUEST_TIMEOUT_MS,
        }
    }
}

/// `owner/name` split, each part checked to be safe in a URL path.
pub fn owner_and_name(value: &str, setting: &str) -> Result<(String, String), String> {
    let valid = |part: &str| {
        !part.is_empty()
            && part.len() <= 100
            && part.bytes().any(|b| b != b'.')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match value.split_once('/') {
        Some((owner, name)) if valid(owner) && valid(name) => Ok((owner.into(), name.into())),
        _ => Err(format!("{setting} must be owner/name")),
    }
}

/// A workflow file name or id, safe in a URL path.
pub fn path_segment(value: &str, setting: &str) -> Result<String, String> {
    if value.bytes().any(|b| b != b'.')
        && value.len() <= 100
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Ok(value.to_string())
    } else {
        Err(format!("{setting} must be a file name such as build.yml"))
    }
}

/// A transient fault: wait and try again, unless there have been too many in
/// a row. `what` names the request for the failure message.
pub fn retry_later(
    state: &mut Map<String, Value>,
    answer: &Answer,
    what: &str,
    wait_ms: u64,
) -> Step {
    let faults = state.get("faults").and_then(Value::as_u64).unwrap_or(0) + 1;
    if faults > MAX_TRANSIENT_FAULTS {
        return Step::Fail(format!(
            "{what} failed {faults} times in a row; the last: {}",
            answer.describe()
        ));
    }
    state.insert("faults".into(), json!(faults));
    Step::Wait {
        ms: wait_ms.saturating_mul(faults.min(4)),
    }
}

/// The JSON of a 2xx answer (the fault count starts again), or the step to
/// take instead: wait out a transient fault, or fail naming `what`.
pub fn json_or(
    state: &mut Map<String, Value>,
    answer: &Answer,
    what: &str,
    wait_ms: u64,
) -> Result<Value, Step> {
    match answer.json() {
        Some(value) => {
            clear_faults(state);
            Ok(value)
        }
        None if answer.is_transient() => Err(retry_later(state, answer, what, wait_ms)),
        None => Err(Step::Fail(format!("{what}: {}", answer.describe()))),
    }
}

/// The repository a phase works on: its `repository` setting (owner/name),
/// else the project's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository(Option<String>);

impl Repository {
    pub fn new(phase: &Value) -> Result<Self, String> {
        let repository = settings::string(phase, "repository")?;
        if let Some(repo) = &repository {
            owner_and_name(repo, "repository")?;
        }
        Ok(Repository(repository))
    }

    pub fn of(&self, run: &RunContext) -> String {
        self.0.clone().unwrap_or_else(|| run.repository.clone())
    }
}

/// How a provider waits on GitHub: `poll_seconds` (5) between polls,
/// `timeout_minutes` for the whole phase, and `locate_seconds` to find what
/// a lost answer created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub poll_ms: u64,
    pub timeout_ms: u64,
    pub locate_ms: u64,
}

impl Timing {
    pub fn new(phase: &Value, timeout_minutes: u64, locate_seconds: u64) -> Result<Self, String> {
        Ok(Timing {
            poll_ms: settings::number(phase, "poll_seconds", 5, 1, 300)? * 1000,
            timeout_ms: settings::number(phase, "timeout_minutes", timeout_minutes, 1, 24 * 60)?
                * 60_000,
            locate_ms: settings::number(phase, "locate_seconds", locate_seconds, 10, 3600)? * 1000,
        })
    }
}

/// A text field of a provider's stored state (`""` when absent).
pub fn text(state: &Map<String, Value>, key: &str) -> String {
    state
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// A number field of a provider's stored state (0 when absent).
pub fn number(state: &Map<String, Value>, key: &str) -> i64 {
    state.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// An answer that was not a fault: the count starts again.
fn clear_faults(state: &mut Map<String, Value>) {
    state.remove("faults");
}

/// A UTC time as GitHub's search qualifiers take it: `2026-11-24T03:00:00Z`.
pub fn iso_utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::testing::credentials;

    #[test]
    fn requests_carry_the_token_and_the_api_version() {
        let api = Api::new(
            &json!({ "api_url": "http://127.0.0.1:54380/" }),
            &credentials(),
        )
        .unwrap();
        let call = api.post("/repos/a/b/deployments", json!({ "ref": "x" }));
        assert_eq!(call.url, "http://127.0.0.1:54380/repos/a/b/deployments");
        assert!(call
            .headers
            .contains(&("authorization".into(), "Bearer ghp_test".into())));
        assert!(call
            .headers
            .iter()
            .any(|(k, v)| k == "x-github-api-version" && v == "2022-11-28"));
        assert_eq!(api.get("/x").body, None);
    }

    #[test]
    fn names_are_checked_before_they_reach_a_url() {
        assert_eq!(owner_and_name("acme/shop", "repository").unwrap().1, "shop");
        for bad in [
            "acme", "acme/", "a/b/c", "a/../b", "../x", "a/..", "a b/c", "/x",
        ] {
            assert!(owner_and_name(bad, "repository").is_err(), "{bad}");
        }
        assert!(path_segment("build-image.yml", "workflow").is_ok());
        assert!(path_segment("../x", "workflow").is_err());
        assert!(path_segment("..", "workflow").is_err());
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn transient_faults_are_waited_out_a_bounded_number_of_times() {
        let mut state = Map::new();
        for n in 1..=MAX_TRANSIENT_FAULTS {
            let step = retry_later(&mut state, &Answer::TimedOut, "polling", 1000);
            assert_eq!(
                step,
                Step::Wait {
                    ms: 1000 * n.min(4)
                }
            );
        }
        match retry_later(&mut state, &Answer::TimedOut, "polling", 1000) {
            Step::Fail(why) => assert!(why.starts_with("polling failed 9 times in a row")),
            other => panic!("{other:?}"),
        }
        clear_faults(&mut state);
        assert!(state.is_empty());
    }
}
