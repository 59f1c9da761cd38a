//! ChatOps settings, read and validated once per isolate.

use switchyard_shared::config::{ConfigError, FromLookup, Lookup};
use switchyard_shared::function::MIN_INVOCATION_TOKEN_LEN;

use crate::command::Verb;

#[derive(Clone)]
pub struct Settings {
    /// Mattermost's token of each slash command (`CHATOPS_TOKEN_DEPLOY`,
    /// `_HOTFIX`, `_APPROVE`, `_REJECT`, `_STATUS`): a command whose token is
    /// not set is not served.
    tokens: Vec<(Verb, String)>,
    /// Mattermost user names who may `/approve` and `/reject`
    /// (`CHATOPS_APPROVERS`, comma separated).
    pub approvers: Vec<String>,
    /// The ops-runner project `/deploy` deploys (`CHATOPS_PROJECT_ID`).
    pub project_id: Option<String>,
    /// `owner/name` where `/hotfix` branches (`CHATOPS_GITHUB_REPOSITORY`).
    pub repository: Option<String>,
    pub github_token: Option<String>,
    /// `CHATOPS_GITHUB_API_URL` (https://api.github.com).
    pub github_api_url: String,
    /// Labels on a hotfix PR (`CHATOPS_HOTFIX_LABELS`, `hotfix`).
    pub hotfix_labels: Vec<String>,
    /// Where Mattermost is (`CHATOPS_MATTERMOST_URL`): a `response_url`
    /// elsewhere is never posted to.
    pub mattermost_url: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field(
                "commands",
                &self
                    .tokens
                    .iter()
                    .map(|(v, _)| v.name())
                    .collect::<Vec<_>>(),
            )
            .field("approvers", &self.approvers)
            .finish_non_exhaustive()
    }
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let mut tokens = Vec::new();
        for verb in Verb::ALL {
            let name = format!("CHATOPS_TOKEN_{}", verb.name().to_ascii_uppercase());
            if let Some(token) = lookup(&name) {
                if token.len() < 16 {
                    return Err(ConfigError(format!(
                        "{name} must be at least 16 characters"
                    )));
                }
                tokens.push((verb, token));
            }
        }
        if tokens.is_empty() {
            return Err(ConfigError(
                "set at least one CHATOPS_TOKEN_<COMMAND>: no command could be verified".into(),
            ));
        }
        let github_token = lookup("CHATOPS_GITHUB_TOKEN");
        if github_token
            .as_ref()
            .is_some_and(|t| t.len() < MIN_INVOCATION_TOKEN_LEN / 2)
        {
            return Err(ConfigError(
                "CHATOPS_GITHUB_TOKEN is too short to be a GitHub token".into(),
            ));
        }
        let url = |name: &str, default: Option<&str>| -> Result<Option<String>, ConfigError> {
            match lookup(name).or(default.map(str::to_string)) {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                    Ok(Some(u.trim_end_matches('/').to_string()))
                }
                Some(_) => Err(ConfigError(format!("{name} must be an http(s) URL"))),
                None => Ok(None),
            }
        };
        let labels = list(lookup("CHATOPS_HOTFIX_LABELS"));
        Ok(Settings {
            tokens,
            approvers: list(lookup("CHATOPS_APPROVERS")),
            project_id: lookup("CHATOPS_PROJECT_ID"),
            repository: lookup("CHATOPS_GITHUB_REPOSITORY"),
            github_token,
            github_api_url: url("CHATOPS_GITHUB_API_URL", Some("https://api.github.com"))?
                .expect("a default"),
            hotfix_labels: if labels.is_empty() {
                vec!["hotfix".into()]
            } else {
                labels
            },
            mattermost_url: url("CHATOPS_MATTERMOST_URL", None)?,
        })
    }
}

impl Settings {
    /// The token Mattermost holds for this command, if it is served.
    pub fn token_of(&self, verb: Verb) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(v, _)| *v == verb)
            .map(|(_, t)| t.as_str())
    }

    pub fn may_approve(&self, user_name: &str) -> bool {
        self.approvers.iter().any(|a| a == user_name)
    }

    /// Whether `response_url` is the configured Mattermost's.
    pub fn trusts_response_url(&self, url: &str) -> bool {
        self.mattermost_url.as_deref().is_some_and(|base| {
            url.strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::config::lookup_from as lookup;

    #[test]
    fn commands_are_served_only_with_their_token() {
        let s = Settings::from_lookup(&lookup(&[
            ("CHATOPS_TOKEN_DEPLOY", "deploy-token-0123456789"),
            ("CHATOPS_APPROVERS", "alice, bob ,"),
            ("CHATOPS_MATTERMOST_URL", "http://127.0.0.1:54360/"),
        ]))
        .unwrap();
        assert_eq!(s.token_of(Verb::Deploy), Some("deploy-token-0123456789"));
        assert_eq!(s.token_of(Verb::Hotfix), None);
        assert!(s.may_approve("bob") && !s.may_approve("mallory"));
        assert_eq!(s.hotfix_labels, ["hotfix"]);
        assert!(s.trusts_response_url("http://127.0.0.1:54360/hooks/commands/x"));
        assert!(!s.trusts_response_url("http://127.0.0.1:543600/x"));
        assert!(!s.trusts_response_url("http://evil.example/hooks"));
        assert!(!format!("{s:?}").contains("deploy-token"));
        assert!(Settings::from_lookup(&lookup(&[])).is_err());
        assert!(Settings::from_lookup(&lookup(&[("CHATOPS_TOKEN_DEPLOY", "short")])).is_err());
    }
}
