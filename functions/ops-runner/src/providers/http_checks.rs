//! `http-checks`: the smoke tests. Each of the project's checks is a GET with
//! an expected status and, optionally, text the body must contain; a check
//! that does not pass is tried again after a short wait (a deploy settling),
//! and the phase fails when one still does not pass after its attempts. The
//! results are the phase's evidence artifact.
//!
//! Settings: `checks` ([{name, url, expected_status (200), body_contains,
//! timeout_ms (5000)}]; url and body_contains may use `{environment_url}`,
//! `{env}`, `{git_sha}`, `{run_id}`), `attempts` (3), `retry_seconds` (2).

use serde_json::{json, Map, Value};

use crate::provider::{settings, Answer, Artifact, HttpCall, Method, Provider, RunContext, Step};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    name: String,
    url: String,
    expected_status: u16,
    body_contains: Option<String>,
    timeout_ms: u64,
}

pub struct HttpChecks {
    checks: Vec<Check>,
    attempts: u64,
    retry_ms: u64,
}

impl HttpChecks {
    pub fn new(phase: &Value) -> Result<Self, String> {
        let list = match phase.get("checks") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) if list.len() <= 50 => list.clone(),
            Some(_) => return Err("checks must be a list of at most 50 checks".into()),
        };
        let checks = list
            .iter()
            .enumerate()
            .map(|(i, check)| {
                let named = |e: String| format!("checks[{i}].{e}");
                let url = settings::required(check, "url").map_err(named)?;
                if !(url.starts_with("http://")
                    || url.starts_with("https://")
                    || url.starts_with("{environment_url}"))
                {
                    return Err(named(
                        "url must be an http(s) URL or start with {environment_url}".into(),
                    ));
                }
                Ok(Check {
                    name: settings::string(check, "name")
                        .map_err(named)?
                        .unwrap_or_else(|| format!("check {}", i + 1)),
                    url,
                    expected_status: settings::number(check, "expected_status", 200, 100, 599)
                        .map_err(named)? as u16,
                    body_contains: settings::string(check, "body_contains").map_err(named)?,
                    timeout_ms: settings::number(check, "timeout_ms", 5000, 100, 60_000)
                        .map_err(named)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(HttpChecks {
            checks,
            attempts: settings::number(phase, "attempts", 3, 1, 20)?,
            retry_ms: settings::number(phase, "retry_seconds", 2, 0, 120)? * 1000,
        })
    }

    fn request(&self, run: &RunContext, check: &Check) -> Result<HttpCall, String> {
        let url = run.fill(&check.url);
        if url.contains("{environment_url}") {
            return Err(format!(
                "smoke check {} needs {{environment_url}}, but no earlier phase reported one",
                check.name
            ));
        }
        Ok(HttpCall {
            method: Method::Get,
            url,
            headers: vec![("accept".into(), "application/json, text/plain, */*".into())],
            body: None,
            timeout_ms: check.timeout_ms,
        })
    }

    /// Why an answer does not pass, or `None` when it does.
    fn verdict(&self, run: &RunContext, check: &Check, answer: &Answer) -> Option<String> {
        match answer {
            Answer::Response { status, body } => {
                if *status != check.expected_status {
                    return Some(format!("HTTP {status}, expected {}", check.expected_status));
                }
                let needle = check.body_contains.as_deref().map(|n| run.fill(n))?;
                (!body.contains(&needle)).then(|| format!("the body does not contain {needle:?}"))
            }
            other => Some(other.describe()),
        }
    }
}

impl Provider for HttpChecks {
    fn step(
        &self,
        run: &RunContext,
        state: &mut Map<String, Value>,
        answer: Option<Answer>,
    ) -> Step {
        let index = state.get("check").and_then(Value::as_u64).unwrap_or(0) as usize;
        let attempt = state.get("attempt").and_then(Value::as_u64).unwrap_or(0);
        let mut results = state
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(check) = self.checks.get(index) else {
            let artifacts = vec![Artifact {
                kind: "evidence".into(),
                name: "smoke checks".into(),
                url: None,
                digest: None,
                metadata: json!({ "checks": results }),
            }];
            return Step::Done {
                output: json!({ "checks": results.len(), "passed": results.len() }),
                artifacts,
            };
        };
        let Some(answer) = answer else {
            return match self.request(run, check) {
                Ok(call) => {
                    state.insert("attempt".into(), json!(attempt + 1));
                    Step::Send(call)
                }
                Err(why) => Step::Fail(why),
            };
        };
        match self.verdict(run, check, &answer) {
            None => {
                results.push(
                    json!({ "name": check.name, "status": answer.status(), "attempts": attempt }),
                );
                state.insert("results".into(), Value::Array(results));
                state.insert("check".into(), json!(index + 1));
                state.insert("attempt".into(), json!(0));
                self.step(run, state, None)
            }
            Some(why) if attempt < self.attempts => {
                state.insert("last_error".into(), json!(why));
                Step::Wait { ms: self.retry_ms }
            }
            Some(why) => Step::Fail(format!(
                "smoke check {} failed after {attempt} attempt(s): {why}",
                check.name
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::testing::{ok, run};

    fn smoke_run() -> RunContext {
        let mut run = run();
        run.phase = "smoke".into();
        run.outputs.insert(
            "deploy".into(),
            json!({ "environment_url": "http://app.test/staging" }),
        );
        run
    }

    fn provider() -> HttpChecks {
        HttpChecks::new(&json!({ "checks": [
            { "name": "health", "url": "{environment_url}/health", "body_contains": "{git_sha}" },
            { "name": "login", "url": "https://app.test/login", "expected_status": 302 },
        ], "retry_seconds": 1 }))
        .unwrap()
    }

    #[test]
    fn every_check_passes_in_turn_and_the_results_are_the_evidence() {
        let p = provider();
        let run = smoke_run();
        let mut state = Map::new();
        let Step::Send(first) = p.step(&run, &mut state, None) else {
            panic!()
        };
        assert_eq!(first.url, "http://app.test/staging/health");
        let healthy = ok(200, json!({ "status": "ok", "sha": run.git_sha.clone() }));
        let Step::Send(second) = p.step(&run, &mut state, healthy) else {
            panic!()
        };
        assert_eq!(second.url, "https://app.test/login");
        let Step::Done { output, artifacts } = p.step(&run, &mut state, ok(302, json!({}))) else {
            panic!()
        };
        assert_eq!(output, json!({ "checks": 2, "passed": 2 }));
        assert_eq!(artifacts[0].kind, "evidence");
        assert_eq!(artifacts[0].metadata["checks"][0]["name"], "health");
    }

    #[test]
    fn a_failing_check_is_retried_then_fails_the_phase() {
        let p = provider();
        let run = smoke_run();
        let mut state = Map::new();
        let stale = || ok(200, json!({ "status": "ok", "sha": "0000000" }));
        for _ in 0..2 {
            assert!(matches!(p.step(&run, &mut state, None), Step::Send(_)));
            assert_eq!(p.step(&run, &mut state, stale()), Step::Wait { ms: 1000 });
        }
        let _ = p.step(&run, &mut state, None);
        match p.step(&run, &mut state, stale()) {
            Step::Fail(why) => assert!(
                why.starts_with(
                    "smoke check health failed after 3 attempt(s): the body does not contain"
                ),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        let mut state = Map::new();
        let _ = p.step(&run, &mut state, None);
        assert_eq!(
            p.step(&run, &mut state, Some(Answer::TimedOut)),
            Step::Wait { ms: 1000 }
        );
    }

    #[test]
    fn no_checks_pass_at_once_and_bad_settings_are_refused() {
        let none = HttpChecks::new(&json!({ "checks": [] })).unwrap();
        assert!(matches!(
            none.step(&smoke_run(), &mut Map::new(), None),
            Step::Done { .. }
        ));
        for bad in [
            json!({ "checks": "x" }),
            json!({ "checks": [{ "url": "ftp://x" }] }),
            json!({ "checks": [{ "url": "http://x", "expected_status": 99 }] }),
            json!({ "checks": [], "attempts": 0 }),
        ] {
            assert!(HttpChecks::new(&bad).is_err(), "{bad}");
        }
        // {environment_url} with no deploy before it: a clear failure, not a request.
        let mut run = smoke_run();
        run.outputs.clear();
        assert!(
            matches!(provider().step(&run, &mut Map::new(), None), Step::Fail(why) if why.contains("environment_url"))
        );
    }
}
