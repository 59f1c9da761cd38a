//! `github-artifacts`: capture artifacts. Lists what the build's workflow
//! run uploaded (build logs, the SBOM, provenance) and records each as an
//! artifact row, plus the run's evidence: every phase's output in one place.
//!
//! Settings: `from_phase` (the phase whose output has the workflow run id,
//! default `build`), `repository`, `api_url`.

use serde_json::{json, Map, Value};

use crate::provider::{settings, Answer, Artifact, Credentials, Provider, RunContext, Step};
use crate::providers::github::{self, Api, Repository};

pub struct GithubArtifacts {
    api: Api,
    repository: Repository,
    from_phase: String,
}

impl GithubArtifacts {
    pub fn new(phase: &Value, credentials: &Credentials) -> Result<Self, String> {
        let repository = Repository::new(phase)?;
        Ok(GithubArtifacts {
            api: Api::new(phase, credentials)?,
            repository,
            from_phase: settings::string(phase, "from_phase")?.unwrap_or_else(|| "build".into()),
        })
    }

    fn evidence(&self, run: &RunContext) -> Artifact {
        Artifact {
            kind: "evidence".into(),
            name: "run outputs".into(),
            url: None,
            digest: run.output_str("image_digest").map(str::to_string),
            metadata: json!({ "git_sha": run.git_sha, "env": run.env, "phases": run.outputs }),
        }
    }
}

/// What an uploaded artifact is, by its name.
fn kind_of(name: &str) -> &'static str {
    let name = name.to_ascii_lowercase();
    if name.contains("sbom") || name.contains("spdx") || name.contains("cyclonedx") {
        "sbom"
    } else if name.contains("log") {
        "build_log"
    } else if name.contains("provenance") || name.contains("attestation") {
        "provenance"
    } else {
        "file"
    }
}

impl Provider for GithubArtifacts {
    fn step(
        &self,
        run: &RunContext,
        state: &mut Map<String, Value>,
        answer: Option<Answer>,
    ) -> Step {
        let built = run.outputs.get(&self.from_phase);
        // A rollback's build is an earlier run's: its uploads belong to that run.
        let rolled_back = built.is_some_and(|o| o.get("rollback_of").is_some());
        let workflow_run_id = built
            .and_then(|o| o.get("workflow_run_id"))
            .and_then(Value::as_u64)
            .filter(|id| *id > 0 && !rolled_back);
        let Some(id) = workflow_run_id else {
            // Nothing was built here (a rollback reuses an image): evidence only.
            return Step::Done {
                output: json!({ "uploaded": 0 }),
                artifacts: vec![self.evidence(run)],
            };
        };
        let Some(answer) = answer else {
            let repo = self.repository.of(run);
            return Step::Send(self.api.get(&format!(
                "/repos/{repo}/actions/runs/{id}/artifacts?per_page=100"
            )));
        };
        let list = match github::json_or(state, &answer, "listing the build's artifacts", 2000) {
            Ok(value) => value,
            Err(step) => return step,
        };
        let mut artifacts: Vec<Artifact> = list
            .get("artifacts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let name = a
                    .get("name")?
                    .as_str()?
                    .chars()
                    .take(200)
                    .collect::<String>();
                Some(Artifact {
                    kind: kind_of(&name).into(),
                    url: a
                        .get("archive_download_url")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    digest: a.get("digest").and_then(Value::as_str).map(str::to_string),
                    metadata: json!({
                        "artifact_id": a.get("id"),
                        "size_in_bytes": a.get("size_in_bytes"),
                        "expired": a.get("expired"),
                        "expires_at": a.get("expires_at"),
                        "workflow_run_id": id,
                    }),
                    name,
                })
            })
            .collect();
        let uploaded = artifacts.len();
        artifacts.push(self.evidence(run));
        Step::Done {
            output: json!({ "uploaded": uploaded }),
            artifacts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::testing::{credentials, ok, run};

    #[test]
    fn uploaded_artifacts_are_recorded_by_kind_with_the_evidence() {
        let p =
            GithubArtifacts::new(&json!({ "api_url": "http://gh.test" }), &credentials()).unwrap();
        let mut run = run();
        run.outputs.insert(
            "build".into(),
            json!({ "workflow_run_id": 77, "image_digest": "sha256:feed" }),
        );
        let mut state = Map::new();
        let Step::Send(list) = p.step(&run, &mut state, None) else {
            panic!()
        };
        assert_eq!(
            list.url,
            "http://gh.test/repos/acme/shop/actions/runs/77/artifacts?per_page=100"
        );
        let listed = ok(
            200,
            json!({ "total_count": 2, "artifacts": [
                { "id": 1, "name": "sbom.spdx.json", "archive_download_url": "http://gh.test/a/1/zip", "size_in_bytes": 10 },
                { "id": 2, "name": "build-log", "archive_download_url": "http://gh.test/a/2/zip" },
            ]}),
        );
        let Step::Done { output, artifacts } = p.step(&run, &mut state, listed) else {
            panic!()
        };
        assert_eq!(output["uploaded"], 2);
        let kinds: Vec<_> = artifacts.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["sbom", "build_log", "evidence"]);
        assert_eq!(artifacts[2].digest.as_deref(), Some("sha256:feed"));
    }

    #[test]
    fn without_a_build_only_the_evidence_is_recorded() {
        let p = GithubArtifacts::new(&json!({}), &credentials()).unwrap();
        let Step::Done { artifacts, .. } = p.step(&run(), &mut Map::new(), None) else {
            panic!()
        };
        assert_eq!(artifacts.len(), 1);
        assert_eq!(kind_of("provenance.intoto.jsonl"), "provenance");
        assert_eq!(kind_of("dist.tar"), "file");
    }
}
