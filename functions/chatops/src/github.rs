//! The GitHub calls ChatOps makes: resolving a version for `/deploy`, and the
//! seed's `/hotfix` flow (issue exists -> branch from the base -> draft PR
//! with labels).

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_shared::fetch;
use worker::Method;

/// Per call: `/deploy` resolves its version inside Mattermost's 3 s (a tag
/// is one call, a branch two, a commit three), so none may take long.
const TIMEOUT: Duration = Duration::from_millis(900);

pub struct GitHub<'a> {
    pub api_url: &'a str,
    pub token: &'a str,
    /// `owner/name`.
    pub repository: &'a str,
    /// Sent as `x-correlation-id` (GitHub ignores it; stand-ins record it).
    pub correlation_id: &'a str,
}

/// What `/hotfix` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hotfix {
    pub issue_title: String,
    pub branch: String,
    pub pr_number: u64,
    pub pr_url: String,
}

impl GitHub<'_> {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}/repos/{}{path}", self.api_url, self.repository);
        let bearer = format!("Bearer {}", self.token);
        let headers = [
            ("accept", "application/vnd.github+json"),
            ("x-github-api-version", "2022-11-28"),
            ("authorization", bearer.as_str()),
            ("user-agent", "switchyard-chatops"),
            ("content-type", "application/json"),
            ("x-correlation-id", self.correlation_id),
        ];
        let request = match body {
            Some(body) => fetch::post(&url, &headers, body.to_string()),
            None => fetch::request(method, &url, &headers),
        }
        .map_err(|e| e.to_string())?;
        let answer = fetch::send(request, TIMEOUT, &[])
            .await
            .map_err(|e| format!("GitHub: {e}"))?;
        let value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        if answer.status >= 500 || answer.status == 401 || answer.status == 403 {
            return Err(format!(
                "GitHub answered {}: {}",
                answer.status,
                message(&value)
            ));
        }
        Ok((answer.status, value))
    }

    /// The commit a tag, branch or sha names.
    /// The commit `version` names and the ref to build it from: a tag
    /// (`refs/tags/<version>`), else a branch (`refs/heads/<version>`), else
    /// a commit, built from the default branch (`refs/heads/main`).
    pub async fn resolve(&self, version: &str) -> Result<(String, String), String> {
        for kind in ["tags", "heads"] {
            if let (200, found) = self
                .send(Method::Get, &format!("/git/ref/{kind}/{version}"), None)
                .await?
            {
                // An annotated tag's ref names the tag object; its commit is looked up below.
                if found["object"]["type"] == "commit" {
                    if let Some(sha) = found["object"]["sha"].as_str() {
                        return Ok((sha.to_string(), format!("refs/{kind}/{version}")));
                    }
                }
                let sha = self.commit_of(version).await?;
                return Ok((sha, format!("refs/{kind}/{version}")));
            }
        }
        Ok((
            self.commit_of(version).await?,
            "refs/heads/main".to_string(),
        ))
    }

    async fn commit_of(&self, version: &str) -> Result<String, String> {
        match self
            .send(Method::Get, &format!("/commits/{version}"), None)
            .await?
        {
            (200, commit) => commit["sha"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| "GitHub sent no sha".into()),
            (404 | 422, _) => Err(format!(
                "{version} is not a tag, branch or commit of {}",
                self.repository
            )),
            (status, body) => Err(format!("GitHub answered {status}: {}", message(&body))),
        }
    }

    /// The seed's flow; every refusal is a message for the channel.
    pub async fn hotfix(
        &self,
        issue: u64,
        base: &str,
        requested_by: &str,
        labels: &[String],
    ) -> Result<Hotfix, String> {
        let (status, found) = self
            .send(Method::Get, &format!("/issues/{issue}"), None)
            .await?;
        if status == 404 {
            return Err(format!(
                "Issue #{issue} does not exist in {}",
                self.repository
            ));
        }
        let issue_title = found["title"].as_str().unwrap_or("").to_string();
        let (status, base_ref) = self
            .send(Method::Get, &format!("/git/ref/heads/{base}"), None)
            .await?;
        let Some(sha) = base_ref["object"]["sha"].as_str().filter(|_| status == 200) else {
            return Err(format!(
                "Branch {base} does not exist in {}",
                self.repository
            ));
        };
        let branch = format!("hotfix/issue-{issue}");
        if let (200, _) = self
            .send(Method::Get, &format!("/git/ref/heads/{branch}"), None)
            .await?
        {
            return Err(format!(
                "Branch {branch} already exists in {}",
                self.repository
            ));
        }
        // GitHub opens no pull request for a branch without commits of its
        // own: the branch starts with an empty commit on the base.
        let (_, base_commit) = self
            .send(Method::Get, &format!("/commits/{sha}"), None)
            .await?;
        let Some(tree) = base_commit["commit"]["tree"]["sha"].as_str() else {
            return Err(format!(
                "The base commit {sha} has no tree: {}",
                message(&base_commit)
            ));
        };
        let first_commit = json!({
            "message": format!("Start hotfix for #{issue}\n\nRequested with /hotfix by {requested_by}."),
            "tree": tree,
            "parents": [sha],
        });
        let (status, commit) = self
            .send(Method::Post, "/git/commits", Some(first_commit))
            .await?;
        let Some(start) = commit["sha"].as_str().filter(|_| status == 201) else {
            return Err(format!(
                "The hotfix's first commit could not be made: {}",
                message(&commit)
            ));
        };
        let (status, created) = self
            .send(
                Method::Post,
                "/git/refs",
                Some(json!({ "ref": format!("refs/heads/{branch}"), "sha": start })),
            )
            .await?;
        if status != 201 {
            return Err(format!(
                "Branch {branch} could not be created: {}",
                message(&created)
            ));
        }
        let pr = json!({
            "title": format!("Hotfix #{issue}: {issue_title}"),
            "head": branch,
            "base": base,
            "body": format!("Fixes #{issue}.\n\nRequested with /hotfix by {requested_by}."),
            "draft": true,
        });
        let (status, opened) = self.send(Method::Post, "/pulls", Some(pr)).await?;
        let (Some(pr_number), Some(pr_url)) =
            (opened["number"].as_u64(), opened["html_url"].as_str())
        else {
            return Err(format!(
                "The draft PR could not be opened ({status}): {}",
                message(&opened)
            ));
        };
        let (status, labelled) = self
            .send(
                Method::Post,
                &format!("/issues/{pr_number}/labels"),
                Some(json!({ "labels": labels })),
            )
            .await?;
        if status != 200 {
            return Err(format!(
                "PR #{pr_number} was opened but not labelled: {}",
                message(&labelled)
            ));
        }
        Ok(Hotfix {
            issue_title,
            branch,
            pr_number,
            pr_url: pr_url.to_string(),
        })
    }
}

/// GitHub's reason: its `message`, and for a 422 each `errors[].message`.
fn message(body: &Value) -> String {
    let mut reason = body["message"]
        .as_str()
        .unwrap_or("no reason given")
        .to_string();
    let details: Vec<&str> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .collect();
    if !details.is_empty() {
        reason = format!("{reason}: {}", details.join("; "));
    }
    reason.chars().take(300).collect()
}
