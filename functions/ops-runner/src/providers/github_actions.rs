//! `github-actions`: the build. Dispatches the project's workflow
//! (`workflow_dispatch`), follows the workflow run until it completes, then
//! finds the container image the run published (GHCR package versions tagged
//! with the git sha).
//!
//! At most one dispatch per run and phase, whatever happens: the state is
//! stored as `dispatching` before the request goes out, with a dispatch id the
//! workflow shows in its run name (`run-name: switchyard ${{
//! inputs.switchyard_dispatch_id }}`). If the answer is lost (a timeout, a
//! 5xx, the runner died), the next step looks for a run with that id instead
//! of dispatching again, and fails the phase if none appears in time.
//!
//! Settings: `workflow` (required), `ref` (default: the run's git ref),
//! `inputs` (extra workflow inputs, strings), `package` (owner/name of the
//! GHCR image, default the repository; `false` for none), `package_owner`
//! (`orgs` or `users`, default `orgs`), `api_url`, `poll_seconds` (5),
//! `timeout_minutes` (60), `locate_seconds` (120).

use serde_json::{json, Map, Value};

use crate::provider::{
    settings, Answer, Artifact, Credentials, HttpCall, Provider, RunContext, Step,
};
use crate::providers::github::{self, Api, Repository, Timing};

pub struct GithubActions {
    api: Api,
    repository: Repository,
    workflow: String,
    git_ref: Option<String>,
    inputs: Map<String, Value>,
    package: Package,
    /// The package belongs to a user account, not an organisation.
    package_users: bool,
    timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Package {
    /// The repository's own name (owner/name).
    Repository,
    Named(String, String),
    None,
}

impl GithubActions {
    pub fn new(phase: &Value, credentials: &Credentials) -> Result<Self, String> {
        let workflow = github::path_segment(&settings::required(phase, "workflow")?, "workflow")?;
        let inputs = match phase.get("inputs") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) if map.values().all(Value::is_string) => map.clone(),
            Some(_) => return Err("inputs must be an object of strings".into()),
        };
        let package = match phase.get("package") {
            None | Some(Value::Null) => Package::Repository,
            Some(Value::Bool(false)) => Package::None,
            Some(Value::String(p)) => {
                let (owner, name) = github::owner_and_name(p, "package")?;
                Package::Named(owner, name)
            }
            Some(_) => return Err("package must be owner/name or false".into()),
        };
        let repository = Repository::new(phase)?;
        let package_users = match settings::string(phase, "package_owner")?.as_deref() {
            None | Some("orgs") => false,
            Some("users") => true,
            Some(_) => return Err("package_owner must be orgs or users".into()),
        };
        Ok(GithubActions {
            api: Api::new(phase, credentials)?,
            repository,
            workflow,
            git_ref: settings::string(phase, "ref")?,
            inputs,
            package,
            package_users,
            timing: Timing::new(phase, 60, 120)?,
        })
    }

    fn dispatch(&self, run: &RunContext, dispatch_id: &str) -> HttpCall {
        let mut inputs = self.inputs.clone();
        for (key, value) in [
            ("git_sha", run.git_sha.as_str()),
            ("environment", run.env.as_str()),
            ("switchyard_run_id", run.run_id.as_str()),
            ("switchyard_dispatch_id", dispatch_id),
        ] {
            inputs.insert(key.into(), json!(value));
        }
        let git_ref = self.git_ref.clone().unwrap_or_else(|| run.git_ref.clone());
        self.api.post(
            &format!(
                "/repos/{}/actions/workflows/{}/dispatches",
                self.repository.of(run),
                self.workflow
            ),
            json!({ "ref": git_ref, "inputs": inputs, "return_run_details": true }),
        )
    }

    /// The image's owner and name, and the request listing its versions.
    fn versions(&self, run: &RunContext) -> Option<(String, String, HttpCall)> {
        let (owner, name) = match &self.package {
            Package::None => return None,
            Package::Named(owner, name) => (owner.clone(), name.clone()),
            Package::Repository => {
                let repo = self.repository.of(run);
                let (owner, name) = repo.split_once('/').unwrap_or((&repo, &repo));
                (owner.to_string(), name.to_string())
            }
        };
        let kind = if self.package_users { "users" } else { "orgs" };
        let call = self.api.get(&format!(
            "/{kind}/{owner}/packages/container/{name}/versions?per_page=100"
        ));
        Some((owner, name, call))
    }

    fn poll_run(&self, run: &RunContext, id: u64) -> Step {
        Step::Send(self.api.get(&format!(
            "/repos/{}/actions/runs/{id}",
            self.repository.of(run)
        )))
    }
}

fn set_stage(state: &mut Map<String, Value>, stage: &str) {
    state.insert("stage".into(), json!(stage));
}

impl Provider for GithubActions {
    fn step(
        &self,
        run: &RunContext,
        state: &mut Map<String, Value>,
        answer: Option<Answer>,
    ) -> Step {
        let stage = github::text(state, "stage");
        match (stage.as_str(), answer) {
            ("", _) => {
                let dispatch_id = run.request_key();
                set_stage(state, "dispatching");
                state.insert("dispatch_id".into(), json!(dispatch_id));
                state.insert("dispatched_at_ms".into(), json!(run.now_ms));
                Step::Send(self.dispatch(run, &dispatch_id))
            }
            // Resumed with a dispatch whose answer never came back: look for it.
            ("dispatching", None) => {
                set_stage(state, "locating");
                self.step(run, state, None)
            }
            ("dispatching", Some(answer)) => match answer.status() {
                Some(200) => match answer
                    .json()
                    .and_then(|v| v.get("workflow_run_id")?.as_u64())
                {
                    Some(id) => {
                        set_stage(state, "running");
                        state.insert("workflow_run_id".into(), json!(id));
                        if let Some(url) = answer.json().and_then(|v| v.get("html_url").cloned()) {
                            state.insert("html_url".into(), url);
                        }
                        Step::Wait {
                            ms: self.timing.poll_ms,
                        }
                    }
                    None => {
                        set_stage(state, "locating");
                        Step::Wait { ms: 1000 }
                    }
                },
                // A GitHub without return_run_details: the run is found by its name.
                Some(204) => {
                    set_stage(state, "locating");
                    Step::Wait { ms: 1000 }
                }
                _ if answer.is_transient() => {
                    // The dispatch may or may not have happened: never send it again.
                    set_stage(state, "locating");
                    Step::Wait { ms: 2000 }
                }
                _ => Step::Fail(format!(
                    "GitHub refused to dispatch {} on {}: {}",
                    self.workflow,
                    self.repository.of(run),
                    answer.describe()
                )),
            },
            ("locating", None) => {
                let since = github::number(state, "dispatched_at_ms") - 300_000;
                Step::Send(self.api.get(&format!(
                    "/repos/{}/actions/workflows/{}/runs?event=workflow_dispatch&created=%3E%3D{}&per_page=100",
                    self.repository.of(run),
                    self.workflow,
                    github::iso_utc(since)
                )))
            }
            ("locating", Some(answer)) => {
                let dispatch_id = github::text(state, "dispatch_id");
                let runs = match github::json_or(
                    state,
                    &answer,
                    "looking up the dispatched build",
                    2000,
                ) {
                    Ok(value) => value,
                    Err(step) => return step,
                };
                // The run name is exactly what the workflow's run-name makes of
                // the id: `run-x-build` must not adopt `run-x-build_arm`'s run.
                let title = format!("switchyard {dispatch_id}");
                let found = runs
                    .get("workflow_runs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|r| {
                        r.get("display_title").and_then(Value::as_str) == Some(title.as_str())
                    });
                match found.and_then(|r| Some((r.get("id")?.as_u64()?, r.get("html_url").cloned()))) {
                    Some((id, html_url)) => {
                        set_stage(state, "running");
                        state.insert("workflow_run_id".into(), json!(id));
                        if let Some(url) = html_url {
                            state.insert("html_url".into(), url);
                        }
                        self.poll_run(run, id)
                    }
                    None if run.now_ms - github::number(state, "dispatched_at_ms") > self.timing.locate_ms as i64 => {
                        Step::Fail(format!(
                            "the build was dispatched but no workflow run named for dispatch {dispatch_id} \
                             appeared within {} s; it is not dispatched again (requeue the run to retry)",
                            self.timing.locate_ms / 1000
                        ))
                    }
                    None => Step::Wait { ms: self.timing.poll_ms.min(5000) },
                }
            }
            ("running", None) => {
                self.poll_run(run, github::number(state, "workflow_run_id") as u64)
            }
            ("running", Some(answer)) => {
                let workflow_run =
                    match github::json_or(state, &answer, "polling the build", self.timing.poll_ms)
                    {
                        Ok(value) => value,
                        Err(step) => return step,
                    };
                let html_url = github::text(state, "html_url");
                let status = workflow_run
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if status != "completed" {
                    if run.now_ms - github::number(state, "dispatched_at_ms")
                        > self.timing.timeout_ms as i64
                    {
                        return Step::Fail(format!(
                            "the build did not complete within {} minutes ({status}): {html_url}",
                            self.timing.timeout_ms / 60_000
                        ));
                    }
                    return Step::Wait {
                        ms: self.timing.poll_ms,
                    };
                }
                match workflow_run.get("conclusion").and_then(Value::as_str) {
                    Some("success") => {
                        set_stage(state, "resolving");
                        self.step(run, state, None)
                    }
                    other => Step::Fail(format!(
                        "the build workflow concluded {}: {html_url}",
                        other.unwrap_or("without a conclusion")
                    )),
                }
            }
            ("resolving", None) => match self.versions(run) {
                Some((_, _, call)) => Step::Send(call),
                None => self.done(state, None),
            },
            ("resolving", Some(answer)) => {
                let Some((owner, name, _)) = self.versions(run) else {
                    return self.done(state, None);
                };
                if answer.is_transient() {
                    return github::retry_later(state, &answer, "looking up the built image", 2000);
                }
                let versions = answer.json().unwrap_or(Value::Null);
                let tagged = versions.as_array().into_iter().flatten().find(|v| {
                    v.pointer("/metadata/container/tags")
                        .and_then(Value::as_array)
                        .is_some_and(|tags| {
                            tags.iter()
                                .any(|t| t.as_str() == Some(run.git_sha.as_str()))
                        })
                });
                if let Some(digest) = tagged.and_then(|v| v.get("name")).and_then(Value::as_str) {
                    let image = format!("ghcr.io/{owner}/{name}");
                    return self.done(state, Some((image, digest.to_string())));
                }
                // The registry may lag the run's completion by a little.
                let lookups = github::number(state, "lookups") + 1;
                if lookups > 6 || !matches!(answer.status(), Some(200) | Some(404)) {
                    return Step::Fail(format!(
                        "the build succeeded but no image tagged {} was found in ghcr.io/{owner}/{name} ({})",
                        run.git_sha,
                        answer.describe()
                    ));
                }
                state.insert("lookups".into(), json!(lookups));
                Step::Wait { ms: 2000 }
            }
            (other, _) => Step::Fail(format!(
                "the build's stored state is unknown: stage {other:?}"
            )),
        }
    }

    fn cancel(&self, run: &RunContext, state: &Map<String, Value>) -> Option<HttpCall> {
        let id = state.get("workflow_run_id")?.as_u64()?;
        Some(self.api.post(
            &format!(
                "/repos/{}/actions/runs/{id}/cancel",
                self.repository.of(run)
            ),
            json!({}),
        ))
    }
}

impl GithubActions {
    fn done(&self, state: &Map<String, Value>, image: Option<(String, String)>) -> Step {
        let id = github::number(state, "workflow_run_id");
        let html_url = github::text(state, "html_url");
        let mut output = json!({ "workflow_run_id": id, "html_url": html_url });
        let mut artifacts = vec![Artifact {
            kind: "build_log".into(),
            name: format!("workflow run {id}"),
            url: Some(html_url).filter(|u| !u.is_empty()),
            digest: None,
            metadata: json!({ "workflow": self.workflow }),
        }];
        if let Some((image, digest)) = image {
            output["image"] = json!(format!("{image}@{digest}"));
            output["image_digest"] = json!(digest);
            artifacts.push(Artifact {
                kind: "image".into(),
                name: image.clone(),
                url: Some(format!("https://{image}")),
                digest: Some(digest),
                metadata: json!({}),
            });
        }
        Step::Done { output, artifacts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::testing::{credentials, ok, run};
    use crate::provider::Method;

    fn provider() -> GithubActions {
        GithubActions::new(
            &json!({ "name": "build", "provider": "github-actions", "workflow": "build.yml",
                     "api_url": "http://gh.test", "inputs": { "target": "odoo" } }),
            &credentials(),
        )
        .unwrap()
    }

    fn body(call: &HttpCall) -> Value {
        serde_json::from_str(call.body.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn a_build_dispatches_once_follows_the_run_and_finds_its_image() {
        let p = provider();
        let mut run = run();
        let mut state = Map::new();
        let Step::Send(dispatch) = p.step(&run, &mut state, None) else {
            panic!()
        };
        assert_eq!(dispatch.method, Method::Post);
        assert_eq!(
            dispatch.url,
            "http://gh.test/repos/acme/shop/actions/workflows/build.yml/dispatches"
        );
        let sent = body(&dispatch);
        assert_eq!(sent["ref"], "refs/heads/main");
        assert_eq!(sent["return_run_details"], true);
        assert_eq!(sent["inputs"]["switchyard_dispatch_id"], "run-abc-build");
        assert_eq!(sent["inputs"]["git_sha"], run.git_sha.as_str());
        assert_eq!(sent["inputs"]["target"], "odoo");
        // Stored before the request goes out: what a resumed runner reads.
        assert_eq!(state["stage"], "dispatching");

        let answer = ok(
            200,
            json!({ "workflow_run_id": 77, "html_url": "http://gh.test/acme/shop/actions/runs/77" }),
        );
        assert_eq!(p.step(&run, &mut state, answer), Step::Wait { ms: 5000 });
        assert_eq!(
            (state["stage"].as_str(), state["workflow_run_id"].as_u64()),
            (Some("running"), Some(77))
        );

        let Step::Send(poll) = p.step(&run, &mut state, None) else {
            panic!()
        };
        assert_eq!(poll.url, "http://gh.test/repos/acme/shop/actions/runs/77");
        let in_progress = ok(
            200,
            json!({ "id": 77, "status": "in_progress", "conclusion": null }),
        );
        assert_eq!(
            p.step(&run, &mut state, in_progress),
            Step::Wait { ms: 5000 }
        );

        let completed = ok(
            200,
            json!({ "id": 77, "status": "completed", "conclusion": "success" }),
        );
        let Step::Send(versions) = p.step(&run, &mut state, completed) else {
            panic!()
        };
        assert_eq!(
            versions.url,
            "http://gh.test/orgs/acme/packages/container/shop/versions?per_page=100"
        );
        let published = ok(
            200,
            json!([
                { "name": "sha256:other", "metadata": { "container": { "tags": ["0000000"] } } },
                { "name": "sha256:feed", "metadata": { "container": { "tags": [run.git_sha.clone()] } } },
            ]),
        );
        run.now_ms += 1000;
        let Step::Done { output, artifacts } = p.step(&run, &mut state, published) else {
            panic!()
        };
        assert_eq!(output["image"], "ghcr.io/acme/shop@sha256:feed");
        assert_eq!(output["image_digest"], "sha256:feed");
        assert_eq!(output["workflow_run_id"], 77);
        let kinds: Vec<_> = artifacts.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["build_log", "image"]);
    }

    #[test]
    fn a_lost_dispatch_answer_is_looked_up_never_sent_again() {
        let p = provider();
        let mut run = run();
        for lost in [Some(Answer::TimedOut), ok(502, json!({})), None] {
            let mut state = Map::new();
            let _ = p.step(&run, &mut state, None);
            // None: the runner died before the answer came back.
            let step = match lost {
                Some(answer) => {
                    let step = p.step(&run, &mut state, Some(answer));
                    assert!(matches!(step, Step::Wait { .. }));
                    p.step(&run, &mut state, None)
                }
                None => p.step(&run, &mut state, None),
            };
            let Step::Send(lookup) = step else {
                panic!("{step:?}")
            };
            assert_eq!(lookup.method, Method::Get);
            assert!(lookup.url.starts_with(
                "http://gh.test/repos/acme/shop/actions/workflows/build.yml/runs?event=workflow_dispatch&created=%3E%3D"
            ));
            let listed = ok(
                200,
                json!({ "total_count": 2, "workflow_runs": [
                    { "id": 5, "display_title": "switchyard run-other-build" },
                { "id": 6, "display_title": "switchyard run-abc-build_arm" },
                    { "id": 9, "display_title": "switchyard run-abc-build", "html_url": "h" },
                ]}),
            );
            let Step::Send(poll) = p.step(&run, &mut state, listed) else {
                panic!()
            };
            assert!(poll.url.ends_with("/actions/runs/9"));
        }
        // Nothing found in time: the phase fails rather than dispatching again.
        let mut state = Map::new();
        let _ = p.step(&run, &mut state, None);
        let _ = p.step(&run, &mut state, Some(Answer::TimedOut));
        let empty = || ok(200, json!({ "total_count": 0, "workflow_runs": [] }));
        let _ = p.step(&run, &mut state, None);
        assert!(matches!(
            p.step(&run, &mut state, empty()),
            Step::Wait { .. }
        ));
        run.now_ms += 121_000;
        let _ = p.step(&run, &mut state, None);
        match p.step(&run, &mut state, empty()) {
            Step::Fail(why) => assert!(why.contains("not dispatched again"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_and_failed_builds_fail_the_phase_with_a_reason() {
        let p = provider();
        let run = run();
        let mut state = Map::new();
        let _ = p.step(&run, &mut state, None);
        let refused = ok(
            422,
            json!({ "message": "Workflow does not have 'workflow_dispatch' trigger" }),
        );
        match p.step(&run, &mut state, refused) {
            Step::Fail(why) => assert!(why.contains("HTTP 422: Workflow does not have")),
            other => panic!("{other:?}"),
        }

        let mut state = Map::new();
        let _ = p.step(&run, &mut state, None);
        let _ = p.step(
            &run,
            &mut state,
            ok(200, json!({ "workflow_run_id": 3, "html_url": "u" })),
        );
        let _ = p.step(&run, &mut state, None);
        let failed = ok(
            200,
            json!({ "status": "completed", "conclusion": "failure" }),
        );
        assert_eq!(
            p.step(&run, &mut state, failed),
            Step::Fail("the build workflow concluded failure: u".into())
        );
    }

    #[test]
    fn a_build_that_runs_too_long_fails_and_a_cancel_stops_the_workflow_run() {
        let p = provider();
        let mut run = run();
        let mut state = Map::new();
        let _ = p.step(&run, &mut state, None);
        let _ = p.step(&run, &mut state, ok(200, json!({ "workflow_run_id": 3 })));
        let cancel = p.cancel(&run, &state).unwrap();
        assert_eq!(
            cancel.url,
            "http://gh.test/repos/acme/shop/actions/runs/3/cancel"
        );
        run.now_ms += 61 * 60_000;
        let _ = p.step(&run, &mut state, None);
        let queued = ok(200, json!({ "status": "queued" }));
        assert!(
            matches!(p.step(&run, &mut state, queued), Step::Fail(why) if why.contains("60 minutes"))
        );
    }

    #[test]
    fn settings_are_checked() {
        let bad = [
            json!({ "provider": "github-actions" }),
            json!({ "workflow": "../x" }),
            json!({ "workflow": "b.yml", "inputs": { "n": 1 } }),
            json!({ "workflow": "b.yml", "package": "nope" }),
            json!({ "workflow": "b.yml", "poll_seconds": 0 }),
            json!({ "workflow": "b.yml", "api_url": "ftp://x" }),
            json!({ "workflow": "b.yml", "package_owner": "teams" }),
        ];
        for phase in bad {
            assert!(
                GithubActions::new(&phase, &credentials()).is_err(),
                "{phase}"
            );
        }
        let users = GithubActions::new(
            &json!({ "workflow": "b.yml", "package": "me/img", "package_owner": "users" }),
            &credentials(),
        )
        .unwrap();
        let (_, _, call) = users.versions(&run()).unwrap();
        assert!(call
            .url
            .ends_with("/users/me/packages/container/img/versions?per_page=100"));
        let none = GithubActions::new(
            &json!({ "workflow": "b.yml", "package": false }),
            &credentials(),
        )
        .unwrap();
        assert!(none.versions(&run()).is_none());
    }
}
