//! What a phase provider is: a plain state machine the runner drives. Given
//! the phase's stored state and the answer to its last request, a provider
//! says what to do next (send a request, wait, done, failed). It never sends
//! anything itself, so every decision is unit-tested natively, and the runner
//! stores the state before each request: a runner that dies mid-phase leaves
//! exactly what the next one needs to continue without repeating a dispatch.
//!
//! A project's phases name their provider (`ops.projects.phases`); `build`
//! here is the only place that knows the providers, so a new one is a module
//! and one line below, never a change to the runner's loop.

use serde_json::{Map, Value};

use crate::providers::{github_actions, github_artifacts, github_deployments, http_checks};

/// The run a phase works for, and what the phases before it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunContext {
    pub run_id: String,
    pub project_id: String,
    /// owner/name on GitHub.
    pub repository: String,
    pub env: String,
    pub git_sha: String,
    pub git_ref: String,
    pub correlation_id: String,
    /// The phase being run (its name in the project).
    pub phase: String,
    /// Outputs of the phases already done, by phase name.
    pub outputs: Map<String, Value>,
    pub now_ms: i64,
}

impl RunContext {
    /// A key that names this phase of this run, unique across runs: sent with
    /// a dispatch so a resumed runner can find what it already started.
    pub fn request_key(&self) -> String {
        format!("{}-{}", self.run_id, self.phase)
    }

    /// The first output of an earlier phase that has `key` (the image digest,
    /// the environment URL), searching the latest phase first.
    pub fn output(&self, key: &str) -> Option<&Value> {
        self.outputs
            .values()
            .rev()
            .find_map(|output| output.get(key))
            .filter(|v| !v.is_null())
    }

    pub fn output_str(&self, key: &str) -> Option<&str> {
        self.output(key).and_then(Value::as_str)
    }

    /// `{env}`, `{git_sha}`, `{git_ref}`, `{run_id}`, `{project_id}` and
    /// `{environment_url}` (from the deploy's output) filled in.
    pub fn fill(&self, template: &str) -> String {
        let mut text = template
            .replace("{env}", &self.env)
            .replace("{git_sha}", &self.git_sha)
            .replace("{git_ref}", &self.git_ref)
            .replace("{run_id}", &self.run_id)
            .replace("{project_id}", &self.project_id);
        if let Some(url) = self.output_str("environment_url") {
            text = text.replace("{environment_url}", url.trim_end_matches('/'));
        }
        text
    }
}

/// A request for the runner to send. The runner adds the correlation id and
/// user agent; the provider adds everything else, credentials included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// What came back from an `HttpCall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Response { status: u16, body: String },
    TimedOut,
    Unreachable(String),
}

impl Answer {
    /// A fault worth trying again later: no answer, 429, 5xx, or GitHub's
    /// rate limit (a 403 that says so).
    pub fn is_transient(&self) -> bool {
        match self {
            Answer::Response { status, body } => {
                *status == 429 || *status >= 500 || (*status == 403 && body.contains("rate limit"))
            }
            Answer::TimedOut | Answer::Unreachable(_) => true,
        }
    }

    /// For an error message: the status and the provider's own message.
    pub fn describe(&self) -> String {
        match self {
            Answer::Response { status, body } => {
                let message = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| body.chars().take(200).collect());
                if message.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!(
                        "HTTP {status}: {}",
                        message.chars().take(300).collect::<String>()
                    )
                }
            }
            Answer::TimedOut => "no answer in time".to_string(),
            Answer::Unreachable(why) => format!("unreachable: {why}"),
        }
    }

    /// The JSON body of a 2xx answer.
    pub fn json(&self) -> Option<Value> {
        match self {
            Answer::Response { status, body } if (200..300).contains(status) => {
                serde_json::from_str(body).ok()
            }
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Response { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An artifact a phase recorded (`ops.artifacts`).
pub use switchyard_shared::rpc::ops::Artifact;

/// What the runner does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this request and bring back the answer.
    Send(HttpCall),
    /// Nothing to do for this long (a build running elsewhere).
    Wait { ms: u64 },
    /// The phase is done: its output (read by later phases) and artifacts.
    Done {
        output: Value,
        artifacts: Vec<Artifact>,
    },
    /// The phase failed; the run fails with this reason.
    Fail(String),
}

pub trait Provider {
    /// One decision. `state` is the phase's stored state (`{}` at first),
    /// updated in place; `answer` is the answer to the last `Send`, or `None`
    /// when the phase starts or resumes (after a wait, or in a new runner).
    /// The state a `Send` leaves is stored before the request goes out; a
    /// runner without time to send it stores nothing and the next runner
    /// takes the step again, so the same state must lead to the same request.
    fn step(
        &self,
        run: &RunContext,
        state: &mut Map<String, Value>,
        answer: Option<Answer>,
    ) -> Step;

    /// A request that stops work started elsewhere (cancelling a workflow
    /// run) when the run is cancelled mid-phase; best effort.
    fn cancel(&self, _run: &RunContext, _state: &Map<String, Value>) -> Option<HttpCall> {
        None
    }
}

/// The secrets providers use, read once from the runner's environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub github_token: Option<String>,
    /// The only API base URLs the token is sent to: GitHub's, plus the
    /// runner's `OPS_RUNNER_GITHUB_API_URL` (GitHub Enterprise, or the local
    /// stand-in). A project's `api_url` cannot send it anywhere else.
    pub github_api_urls: Vec<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("github_token", &self.github_token.as_ref().map(|_| "(set)"))
            .field("github_api_urls", &self.github_api_urls)
            .finish()
    }
}

/// The provider a phase names, set up from the phase's settings. `Err` says
/// what is wrong with the project's configuration (the run fails with it).
pub fn build(phase: &Value, credentials: &Credentials) -> Result<Box<dyn Provider>, String> {
    let name = phase.get("provider").and_then(Value::as_str).unwrap_or("");
    match name {
        "github-actions" => Ok(Box::new(github_actions::GithubActions::new(phase, credentials)?)),
        "github-deployments" => Ok(Box::new(github_deployments::GithubDeployments::new(
            phase,
            credentials,
        )?)),
        "http-checks" => Ok(Box::new(http_checks::HttpChecks::new(phase)?)),
        "github-artifacts" => Ok(Box::new(github_artifacts::GithubArtifacts::new(
            phase,
            credentials,
        )?)),
        other => Err(format!(
            "unknown provider {other:?}; known: github-actions, github-deployments, http-checks, github-artifacts"
        )),
    }
}

/// Reading a phase's settings: optional values with defaults and bounds, and
/// errors that name the setting.
pub mod settings {
    use serde_json::Value;

    pub fn string(phase: &Value, key: &str) -> Result<Option<String>, String> {
        match phase.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 500 => Ok(Some(s.clone())),
            Some(_) => Err(format!("{key} must be a string of 1 to 500 characters")),
        }
    }

    pub fn required(phase: &Value, key: &str) -> Result<String, String> {
        string(phase, key)?.ok_or_else(|| format!("{key} is required"))
    }

    pub fn number(
        phase: &Value,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, String> {
        match phase.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{key} must be a whole number from {min} to {max}")),
        }
    }

    /// An http(s) base URL without a trailing slash.
    pub fn base_url(phase: &Value, key: &str, default: &str) -> Result<String, String> {
        let url = string(phase, key)?.unwrap_or_else(|| default.to_string());
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("{key} must be an http(s) URL"));
        }
        Ok(url.trim_end_matches('/').to_string())
    }
}

#[cfg(test)]
pub mod testing {
    use super::*;
    use serde_json::json;

    pub fn run() -> RunContext {
        RunContext {
            run_id: "run-abc".into(),
            project_id: "shop".into(),
            repository: "acme/shop".into(),
            env: "staging".into(),
            git_sha: "abc123def4567890abc123def4567890abc12345".into(),
            git_ref: "refs/heads/main".into(),
            correlation_id: "cid-1".into(),
            phase: "build".into(),
            outputs: Map::new(),
            now_ms: 1_000_000,
        }
    }

    pub fn ok(status: u16, body: Value) -> Option<Answer> {
        Some(Answer::Response {
            status,
            body: body.to_string(),
        })
    }

    pub fn credentials() -> Credentials {
        Credentials {
            github_token: Some("ghp_test".into()),
            github_api_urls: vec![
                "https://api.github.com".into(),
                "http://gh.test".into(),
                "http://127.0.0.1:54380".into(),
            ],
        }
    }

    #[test]
    fn templates_fill_run_fields_and_the_deployed_url() {
        let mut run = run();
        run.outputs.insert(
            "deploy".into(),
            json!({ "environment_url": "https://staging.example.com/" }),
        );
        assert_eq!(
            run.fill("{environment_url}/health?sha={git_sha}&env={env}"),
            format!(
                "https://staging.example.com/health?sha={}&env=staging",
                run.git_sha
            )
        );
        assert_eq!(run.request_key(), "run-abc-build");
    }

    #[test]
    fn unknown_providers_and_missing_tokens_are_configuration_errors() {
        let err = build(
            &json!({ "name": "x", "provider": "jenkins" }),
            &credentials(),
        )
        .err();
        assert!(err.unwrap().contains("unknown provider \"jenkins\""));
        let err = build(
            &json!({ "name": "build", "provider": "github-actions", "workflow": "b.yml" }),
            &Credentials::default(),
        )
        .err();
        assert!(err.unwrap().contains("OPS_RUNNER_GITHUB_TOKEN"));
        // The token goes only to the APIs the runner was given.
        let err = build(
            &json!({ "name": "build", "provider": "github-actions", "workflow": "b.yml", "api_url": "https://evil.test" }),
            &credentials(),
        )
        .err();
        assert!(err
            .unwrap()
            .contains("not an API the runner sends its GitHub token to"));
        assert!(!format!("{:?}", credentials()).contains("ghp_test"));
    }

    #[test]
    fn answers_describe_themselves_without_bodies_running_on() {
        let answer = Answer::Response {
            status: 422,
            body: json!({ "message": "Unexpected inputs provided" }).to_string(),
        };
        assert_eq!(answer.describe(), "HTTP 422: Unexpected inputs provided");
        assert!(!answer.is_transient());
        assert!(Answer::TimedOut.is_transient());
        let long = Answer::Response {
            status: 500,
            body: "x".repeat(5000),
        };
        assert!(long.describe().len() < 300);
        assert!(long.is_transient());
    }
}
