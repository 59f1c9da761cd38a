//! What Mattermost sends (its slash-command request, form-encoded) and what
//! the command's text asks for, checked before anything happens.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Deploy,
    Hotfix,
    Approve,
    Reject,
    Status,
}

impl Verb {
    pub const ALL: [Verb; 5] = [
        Verb::Deploy,
        Verb::Hotfix,
        Verb::Approve,
        Verb::Reject,
        Verb::Status,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verb::Deploy => "deploy",
            Verb::Hotfix => "hotfix",
            Verb::Approve => "approve",
            Verb::Reject => "reject",
            Verb::Status => "status",
        }
    }

    /// `/deploy` -> Deploy.
    pub fn of_command(command: &str) -> Option<Verb> {
        let name = command.strip_prefix('/')?;
        Verb::ALL.into_iter().find(|v| v.name() == name)
    }

    pub fn usage(self) -> &'static str {
        match self {
            Verb::Deploy => "/deploy <version> [--target=staging|production]",
            Verb::Hotfix => "/hotfix <issue_number> [--base=branch]",
            Verb::Approve => "/approve <handle or run id> [comment]",
            Verb::Reject => "/reject <handle or run id> [reason]",
            Verb::Status => "/status [correlation id]",
        }
    }
}

/// Mattermost's slash-command request (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct Form {
    pub token: String,
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_name: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub channel_id: String,
    #[serde(default)]
    pub channel_name: String,
    #[serde(default)]
    pub team_id: String,
    #[serde(default)]
    pub response_url: String,
}

pub fn parse_form(body: &[u8]) -> Result<Form, String> {
    let form: Form = serde_urlencoded::from_bytes(body)
        .map_err(|e| format!("not a slash-command request: {e}"))?;
    if form.user_name.is_empty()
        || form.user_name.len() > 64
        || form.user_name.chars().any(char::is_control)
    {
        return Err("user_name must be 1 to 64 printable characters".into());
    }
    if form.text.len() > 1000 {
        return Err("text must be at most 1000 characters".into());
    }
    Ok(form)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An agent's or a chat user's approval handle (`apr_...`).
    Handle(String),
    /// A run waiting for approval (`run-...`).
    Run(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Deploy {
        version: String,
        target: String,
    },
    Hotfix {
        issue: u64,
        base: String,
    },
    Decide {
        approve: bool,
        subject: Subject,
        comment: Option<String>,
    },
    Status {
        correlation_id: Option<String>,
    },
}

fn is_ref_part(text: &str) -> bool {
    (1..=200).contains(&text.len())
        && !text.contains("..")
        && !text.starts_with(['/', '-', '.'])
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
}

/// The command's words, or the usage when they do not fit.
pub fn parse(verb: Verb, text: &str) -> Result<Command, String> {
    let usage = || format!("Usage: `{}`", verb.usage());
    let words: Vec<&str> = text.split_whitespace().collect();
    let option = |name: &str| {
        words
            .iter()
            .find_map(|w| w.strip_prefix(&format!("--{name}=")))
    };
    let positional: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !w.starts_with("--"))
        .collect();
    match verb {
        Verb::Deploy => {
            let (Some(version), 1) = (positional.first(), positional.len()) else {
                return Err(usage());
            };
            if !is_ref_part(version)
                || words
                    .iter()
                    .any(|w| w.starts_with("--") && !w.starts_with("--target="))
            {
                return Err(usage());
            }
            let target = option("target").unwrap_or("staging");
            if !matches!(target, "staging" | "production") {
                return Err(format!(
                    "--target must be staging or production. {}",
                    usage()
                ));
            }
            Ok(Command::Deploy {
                version: version.to_string(),
                target: target.to_string(),
            })
        }
        Verb::Hotfix => {
            let (Some(number), 1) = (positional.first(), positional.len()) else {
                return Err(usage());
            };
            let issue = number
                .trim_start_matches('#')
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=1_000_000_000).contains(n));
            let Some(issue) = issue else {
                return Err(format!("{number} is not an issue number. {}", usage()));
            };
            if words
                .iter()
                .any(|w| w.starts_with("--") && !w.starts_with("--base="))
            {
                return Err(usage());
            }
            let base = option("base").unwrap_or("main");
            if !is_ref_part(base) {
                return Err(format!("{base} is not a branch name. {}", usage()));
            }
            Ok(Command::Hotfix {
                issue,
                base: base.to_string(),
            })
        }
        Verb::Approve | Verb::Reject => {
            let Some(first) = words.first() else {
                return Err(usage());
            };
            let subject = if first.starts_with("apr_")
                && first.len() <= 100
                && first
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
            {
                Subject::Handle(first.to_string())
            } else if first.starts_with("run-")
                && first.len() <= 100
                && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                Subject::Run(first.to_string())
            } else {
                return Err(format!(
                    "{first} is neither an approval handle (apr_…) nor a run id (run-…). {}",
                    usage()
                ));
            };
            let comment = text
                .trim_start()
                .strip_prefix(first)
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string);
            Ok(Command::Decide {
                approve: verb == Verb::Approve,
                subject,
                comment,
            })
        }
        Verb::Status => match positional.as_slice() {
            [] => Ok(Command::Status {
                correlation_id: None,
            }),
            [id] if (1..=128).contains(&id.len()) => Ok(Command::Status {
                correlation_id: Some(id.to_string()),
            }),
            _ => Err(usage()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seeds_commands_parse() {
        assert_eq!(
            parse(Verb::Deploy, "v1.2.3 --target=production").unwrap(),
            Command::Deploy {
                version: "v1.2.3".into(),
                target: "production".into()
            }
        );
        assert_eq!(
            parse(Verb::Deploy, "abc1234").unwrap(),
            Command::Deploy {
                version: "abc1234".into(),
                target: "staging".into()
            }
        );
        assert_eq!(
            parse(Verb::Hotfix, "123").unwrap(),
            Command::Hotfix {
                issue: 123,
                base: "main".into()
            }
        );
        assert_eq!(
            parse(Verb::Hotfix, "#7 --base=release/1.2").unwrap(),
            Command::Hotfix {
                issue: 7,
                base: "release/1.2".into()
            }
        );
        assert_eq!(
            parse(Verb::Approve, "apr_abc-D_9 looks good").unwrap(),
            Command::Decide {
                approve: true,
                subject: Subject::Handle("apr_abc-D_9".into()),
                comment: Some("looks good".into())
            }
        );
        assert_eq!(
            parse(Verb::Reject, "run-1a2b").unwrap(),
            Command::Decide {
                approve: false,
                subject: Subject::Run("run-1a2b".into()),
                comment: None
            }
        );
        assert_eq!(
            parse(Verb::Status, "").unwrap(),
            Command::Status {
                correlation_id: None
            }
        );
    }

    #[test]
    fn bad_words_answer_the_usage() {
        for (verb, text) in [
            (Verb::Deploy, ""),
            (Verb::Deploy, "v1 v2"),
            (Verb::Deploy, "v1 --target=moon"),
            (Verb::Deploy, "../etc"),
            (Verb::Deploy, "v1 --force"),
            (Verb::Hotfix, "abc"),
            (Verb::Hotfix, "0"),
            (Verb::Hotfix, "12 --base=../x"),
            (Verb::Approve, ""),
            (Verb::Approve, "drop table"),
            (Verb::Status, "a b"),
        ] {
            let err = parse(verb, text).unwrap_err();
            assert!(err.contains("Usage"), "{verb:?} {text:?}: {err}");
        }
    }

    #[test]
    fn the_form_is_mattermosts() {
        let form = parse_form(b"token=t&command=%2Fdeploy&text=v1.2.3+--target%3Dproduction&user_name=alice&channel_id=c1&response_url=http%3A%2F%2Fmm%2Fhooks%2Fx").unwrap();
        assert_eq!(
            (
                form.command.as_str(),
                form.text.as_str(),
                form.user_name.as_str()
            ),
            ("/deploy", "v1.2.3 --target=production", "alice")
        );
        assert_eq!(Verb::of_command(&form.command), Some(Verb::Deploy));
        assert!(parse_form(b"command=%2Fdeploy").is_err());
        assert!(parse_form(b"token=t&command=%2Fdeploy&user_name=").is_err());
        assert_eq!(Verb::of_command("/reindex"), None);
    }

    proptest! {
        #[test]
        fn any_text_is_a_command_or_its_usage(text in "\\PC{0,120}") {
            for verb in Verb::ALL {
                let _ = parse(verb, &text);
            }
        }
    }
}
