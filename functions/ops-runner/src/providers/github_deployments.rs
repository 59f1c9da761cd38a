//! `github-deployments`: the deploy, as a request to CI. Creates a GitHub
//! deployment of the git sha to the run's environment, with the built image in
//! its payload; the repository's deploy workflow (triggered by the
//! `deployment` event) does the deploying and reports statuses, which this
//! provider follows until success or failure. Deploy authority stays with CI.
//!
//! Like the build's dispatch, the deployment is created at most once: the
//! state is stored as `requesting` first, with a request id in the payload,
//! and a lost answer is looked up among the sha's deployments.
//!
//! Settings: `environment` (default: the run's env), `task` (`deploy`),
//! `repository` (default: the project's), `api_url`, `poll_seconds` (5),
//! `timeout_minutes` (30), `locate_seconds` (60).

use serde_json::{json, Map, Value};

use crate::provider::{settings, Answer, Artifact, Credentials, Provider, RunContext, Step};
use crate::providers::github::{self, Api, Repository, Timing};

pub struct GithubDeployments {
    api: Api,
    repository: Repository,
    environment: Option<String>,
    task: String,
    timing: Timing,
}

impl GithubDeployments {
    pub fn new(phase: &Value, credentials: &Credentials) -> Result<Self, String> {
        let repository = Repository::new(phase)?;
        Ok(GithubDeployments {
            api: Api::new(phase, credentials)?,
            repository,
            environment: settings::string(phase, "environment")?,
            task: settings::string(phase, "task")?.unwrap_or_else(|| "deploy".into()),
            timing: Timing::new(phase, 30, 60)?,
        })
    }

    fn environment(&self, run: &RunContext) -> String {
        self.environment
            .as_deref()
            .map(|e| run.fill(e))
            .unwrap_or_else(|| run.env.clone())
    }

    fn statuses(&self, run: &RunContext, id: u64) -> Step {
        Step::Send(self.api.get(&format!(
            "/repos/{}/deployments/{id}/statuses?per_page=1",
            self.repository.of(run)
        )))
    }
}

/// The payload's request id; GitHub returns a payload given as an object as
/// that object (or, from older servers, as a JSON string).
fn request_id_of(deployment: &Value) -> Option<String> {
    let payload = deployment.get("payload")?;
    let payload = match payload {
        Value::String(s) => serde_json::from_str(s).ok()?,
        other => other.clone(),
    };
    payload
        .get("switchyard_request_id")?
        .as_str()
        .map(str::to_string)
}

impl Provider for GithubDeployments {
    fn step(
        &self,
        run: &RunContext,
        state: &mut Map<String, Value>,
        answer: Option<Answer>,
    ) -> Step {
        let stage = github::text(state, "stage");
        match (stage.as_str(), answer) {
            ("", _) => {
                let request_id = run.request_key();
                state.insert("stage".into(), json!("requesting"));
                state.insert("request_id".into(), json!(request_id));
                state.insert("requested_at_ms".into(), json!(run.now_ms));
                let environment = self.environment(run);
                Step::Send(self.api.post(
                    &format!("/repos/{}/deployments", self.repository.of(run)),
                    json!({
                        "ref": run.git_sha,
                        "task": self.task,
                        "environment": environment,
                        "auto_merge": false,
                        "required_contexts": [],
                        "production_environment": environment == "production",
                        "description": format!("switchyard {}", run.run_id),
                        "payload": {
                            "switchyard_request_id": request_id,
                            "run_id": run.run_id,
                            "correlation_id": run.correlation_id,
                            "git_ref": run.git_ref,
                            "image": run.output("image"),
                            "image_digest": run.output("image_digest"),
                        },
                    }),
                ))
            }
            ("requesting", None) => {
                state.insert("stage".into(), json!("locating"));
                self.step(run, state, None)
            }
            ("requesting", Some(answer)) => match answer.status() {
                Some(201) => match answer.json().and_then(|d| d.get("id")?.as_u64()) {
                    Some(id) => {
                        state.insert("stage".into(), json!("waiting"));
                        state.insert("deployment_id".into(), json!(id));
                        Step::Wait {
                            ms: self.timing.poll_ms.min(2000),
                        }
                    }
                    None => Step::Fail(format!(
                        "GitHub created a deployment without an id: {}",
                        answer.describe()
                    )),
                },
                _ if answer.is_transient() => {
                    state.insert("stage".into(), json!("locating"));
                    Step::Wait { ms: 2000 }
                }
                // 202 is GitHub merging the default branch first (auto_merge
                // is off, so it means a surprise), 409 a merge conflict.
                _ => Step::Fail(format!(
                    "GitHub refused the deployment of {} to {}: {}",
                    run.git_sha,
                    self.environment(run),
                    answer.describe()
                )),
            },
            // By environment and task, not sha: GitHub's sha filter wants the
            // full sha, and a run may name a short one.
            ("locating", None) => {
                let query = serde_urlencoded::to_string([
                    ("environment", self.environment(run).as_str()),
                    ("task", self.task.as_str()),
                    ("per_page", "100"),
                ])
                .unwrap_or_default();
                Step::Send(self.api.get(&format!(
                    "/repos/{}/deployments?{query}",
                    self.repository.of(run)
                )))
            }
            ("locating", Some(answer)) => {
                let list = match github::json_or(
                    state,
                    &answer,
                    "looking up the requested deployment",
                    2000,
                ) {
                    Ok(value) => value,
                    Err(step) => return step,
                };
                let request_id = github::text(state, "request_id");
                let found = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|d| request_id_of(d).as_deref() == Some(request_id.as_str()));
                match found.and_then(|d| d.get("id")?.as_u64()) {
                    Some(id) => {
                        state.insert("stage".into(), json!("waiting"));
                        state.insert("deployment_id".into(), json!(id));
                        self.statuses(run, id)
                    }
                    None if run.now_ms - github::number(state, "requested_at_ms") > self.timing.locate_ms as i64 => {
                        Step::Fail(format!(
                            "the deployment was requested but none with request id {request_id} appeared \
                             within {} s; it is not requested again (requeue the run to retry)",
                            self.timing.locate_ms / 1000
                        ))
                    }
                    None => Step::Wait { ms: 2000 },
                }
            }
            ("waiting", None) => self.statuses(run, github::number(state, "deployment_id") as u64),
            ("waiting", Some(answer)) => {
                let statuses = match github::json_or(
                    state,
                    &answer,
                    "polling the deployment",
                    self.timing.poll_ms,
                ) {
                    Ok(value) => value,
                    Err(step) => return step,
                };
                let id = github::number(state, "deployment_id");
                // Newest first, as GitHub lists them.
                let latest = statuses
                    .as_array()
                    .and_then(|s| s.first())
                    .cloned()
                    .unwrap_or(Value::Null);
                let field = |k: &str| {
                    latest
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                match field("state").as_str() {
                    "success" => {
                        let environment_url =
                            Some(field("environment_url")).filter(|u| !u.is_empty());
                        let log_url = Some(field("log_url")).filter(|u| !u.is_empty());
                        Step::Done {
                            output: json!({
                                "deployment_id": id,
                                "environment": self.environment(run),
                                "environment_url": environment_url,
                                "log_url": log_url,
                            }),
                            artifacts: vec![Artifact {
                                kind: "deployment".into(),
                                name: format!("deployment {id} to {}", self.environment(run)),
                                url: environment_url.or(log_url),
                                digest: run.output_str("image_digest").map(str::to_string),
                                metadata: json!({ "deployment_id": id }),
                            }],
                        }
                    }
                    state_name @ ("failure" | "error" | "inactive") => Step::Fail(format!(
                        "deployment {id} to {} ended in {state_name}: {}",
                        self.environment(run),
                        Some(field("description"))
                            .filter(|d| !d.is_empty())
                            .unwrap_or_else(|| field("log_url"))
                    )),
                    _ if run.now_ms - github::number(state, "requested_at_ms")
                        > self.timing.timeout_ms as i64 =>
                    {
                        Step::Fail(format!(
                            "deployment {id} did not finish within {} minutes",
                            self.timing.timeout_ms / 60_000
                        ))
                    }
                    _ => Step::Wait {
                        ms: self.timing.poll_ms,
                    },
                }
            }
            (other, _) => Step::Fail(format!(
                "the deploy's stored state is unknown: stage {other:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::testing::{credentials, ok, run};
    use crate::provider::Method;

    fn provider() -> GithubDeployments {
        GithubDeployments::new(
            &json!({ "api_url": "http://gh.test", "poll_seconds": 3 }),
            &credentials(),
        )
        .unwrap()
    }

    fn deploy_run() -> RunContext {
        let mut run = run();
        run.phase = "deploy".into();
        run.outputs.insert(
            "build".into(),
            json!({ "image": "ghcr.io/acme/shop@sha256:feed", "image_digest": "sha256:feed" }),
        );
        run
    }

    #[test]
    fn a_deploy_requests_a_deployment_with_the_image_and_follows_its_statuses() {
        let p = provider();
        let run = deploy_run();
        let mut state = Map::new();
        let Step::Send(create) = p.step(&run, &mut state, None) else {
            panic!()
        };
        assert_eq!(
            (create.method, create.url.as_str()),
            (Method::Post, "http://gh.test/repos/acme/shop/deployments")
        );
        let sent: Value = serde_json::from_str(create.body.as_deref().unwrap()).unwrap();
        assert_eq!(sent["ref"], run.git_sha.as_str());
        assert_eq!(sent["environment"], "staging");
        assert_eq!(sent["payload"]["image_digest"], "sha256:feed");
        assert_eq!(sent["payload"]["switchyard_request_id"], "run-abc-deploy");
        assert_eq!(sent["required_contexts"], json!([]));
        assert_eq!(state["stage"], "requesting");

        assert_eq!(
            p.step(&run, &mut state, ok(201, json!({ "id": 42 }))),
            Step::Wait { ms: 2000 }
        );
        let Step::Send(poll) = p.step(&run, &mut state, None) else {
            panic!()
        };
        assert_eq!(
            poll.url,
            "http://gh.test/repos/acme/shop/deployments/42/statuses?per_page=1"
        );
        let pending = ok(
            200,
            json!([{ "state": "in_progress" }, { "state": "queued" }]),
        );
        assert_eq!(p.step(&run, &mut state, pending), Step::Wait { ms: 3000 });
        let success = ok(
            200,
            json!([{ "state": "success", "environment_url": "https://staging.acme.test" }]),
        );
        let Step::Done { output, artifacts } = p.step(&run, &mut state, success) else {
            panic!()
        };
        assert_eq!(output["environment_url"], "https://staging.acme.test");
        assert_eq!(artifacts[0].digest.as_deref(), Some("sha256:feed"));
    }

    #[test]
    fn a_lost_answer_is_found_by_request_id_and_failures_name_the_state() {
        let p = provider();
        let run = deploy_run();
        let mut state = Map::new();
        let _ = p.step(&run, &mut state, None);
        assert!(matches!(
            p.step(&run, &mut state, Some(Answer::TimedOut)),
            Step::Wait { .. }
        ));
        let Step::Send(lookup) = p.step(&run, &mut state, None) else {
            panic!()
        };
        assert!(lookup
            .url
            .ends_with("/deployments?environment=staging&task=deploy&per_page=100"));
        let listed = ok(
            200,
            json!([
                { "id": 1, "payload": { "switchyard_request_id": "run-zzz-deploy" } },
                { "id": 2, "payload": "{\"switchyard_request_id\":\"run-abc-deploy\"}" },
            ]),
        );
        let Step::Send(poll) = p.step(&run, &mut state, listed) else {
            panic!()
        };
        assert!(poll.url.contains("/deployments/2/statuses"));
        let failed = ok(
            200,
            json!([{ "state": "failure", "description": "health check failed" }]),
        );
        assert_eq!(
            p.step(&run, &mut state, failed),
            Step::Fail("deployment 2 to staging ended in failure: health check failed".into())
        );
    }

    #[test]
    fn a_refused_request_fails_at_once() {
        let p = provider();
        let run = deploy_run();
        let mut state = Map::new();
        let _ = p.step(&run, &mut state, None);
        let conflict = ok(
            409,
            json!({ "message": "Conflict merging main into abc123" }),
        );
        assert!(
            matches!(p.step(&run, &mut state, conflict), Step::Fail(why) if why.contains("HTTP 409"))
        );
    }
}
