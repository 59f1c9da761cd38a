//! Who may talk to the MCP server: every request carries a bearer, which is
//! one of the server's agent tokens (`OPS_MCP_TOKEN` may use every tool,
//! `OPS_MCP_READ_TOKEN` only the read-only ones, which is all `tools/list`
//! then shows), or an operator's Supabase JWT (verified by PostgREST on the
//! first RPC, and refused unless `app_metadata.role = 'operator'`).

use switchyard_shared::auth::{bearer, secure_eq};
use switchyard_shared::config::{ConfigError, FromLookup, Lookup};
use switchyard_shared::error::{ApiError, ErrorCode};
use switchyard_shared::function::MIN_INVOCATION_TOKEN_LEN;

#[derive(Clone)]
pub struct Settings {
    full_token: Option<String>,
    read_token: Option<String>,
    /// How an agent token's caller is named in audits and handles
    /// (`OPS_MCP_AGENT_NAME`, default `mcp-agent`).
    pub agent_name: String,
    /// Browser origins allowed to call (`OPS_MCP_ALLOWED_ORIGINS`, comma
    /// separated); a request with any other `Origin` is refused (the
    /// transport's DNS-rebinding rule). Agents outside browsers send none.
    pub allowed_origins: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("agent_name", &self.agent_name)
            .field("allowed_origins", &self.allowed_origins)
            .finish_non_exhaustive()
    }
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let token = |name: &str| match lookup(name) {
            Some(t) if t.len() < MIN_INVOCATION_TOKEN_LEN => Err(ConfigError(format!(
                "{name} must be at least {MIN_INVOCATION_TOKEN_LEN} characters"
            ))),
            other => Ok(other),
        };
        let agent_name = lookup("OPS_MCP_AGENT_NAME").unwrap_or_else(|| "mcp-agent".into());
        if !(1..=100).contains(&agent_name.len())
            || !agent_name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError(
                "OPS_MCP_AGENT_NAME must be 1 to 100 printable characters".into(),
            ));
        }
        Ok(Settings {
            full_token: token("OPS_MCP_TOKEN")?,
            read_token: token("OPS_MCP_READ_TOKEN")?,
            agent_name,
            allowed_origins: lookup("OPS_MCP_ALLOWED_ORIGINS")
                .map(|list| {
                    list.split(',')
                        .map(|o| o.trim().to_string())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An agent token; `read_only` for `OPS_MCP_READ_TOKEN`.
    Agent { name: String, read_only: bool },
    /// A JWT, to be confirmed an operator's by PostgREST.
    Jwt(String),
}

impl Principal {
    pub fn read_only(&self) -> bool {
        matches!(
            self,
            Principal::Agent {
                read_only: true,
                ..
            }
        )
    }
}

pub fn principal(authorization: Option<&str>, settings: &Settings) -> Result<Principal, ApiError> {
    let bearer = bearer(authorization)?;
    let agent = |read_only| Principal::Agent {
        name: settings.agent_name.clone(),
        read_only,
    };
    if settings
        .full_token
        .as_deref()
        .is_some_and(|t| secure_eq(bearer, t))
    {
        return Ok(agent(false));
    }
    if settings
        .read_token
        .as_deref()
        .is_some_and(|t| secure_eq(bearer, t))
    {
        return Ok(agent(true));
    }
    if bearer.split('.').count() == 3 {
        return Ok(Principal::Jwt(bearer.to_string()));
    }
    Err(ApiError::new(
        ErrorCode::Unauthorized,
        "the bearer token is not recognised",
    ))
}

/// `Origin`, when a browser sent one, must be allowed.
pub fn check_origin(origin: Option<&str>, settings: &Settings) -> Result<(), ApiError> {
    match origin {
        None => Ok(()),
        Some(o) if settings.allowed_origins.iter().any(|a| a == o) => Ok(()),
        Some(_) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "this Origin may not call the MCP server",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::config::lookup_from as lookup;

    const FULL: &str = "mcp_full_0123456789abcdef0123456789abcdef";
    const READ: &str = "mcp_read_0123456789abcdef0123456789abcdef";

    fn settings() -> Settings {
        Settings::from_lookup(&lookup(&[
            ("OPS_MCP_TOKEN", FULL),
            ("OPS_MCP_READ_TOKEN", READ),
            (
                "OPS_MCP_ALLOWED_ORIGINS",
                "https://console.example.com, http://127.0.0.1:54321",
            ),
        ]))
        .unwrap()
    }

    #[test]
    fn tokens_and_jwts_are_principals_and_nothing_else_is() {
        let s = settings();
        assert_eq!(
            principal(Some(&format!("Bearer {FULL}")), &s).unwrap(),
            Principal::Agent {
                name: "mcp-agent".into(),
                read_only: false
            }
        );
        assert!(principal(Some(&format!("bearer {READ}")), &s)
            .unwrap()
            .read_only());
        assert_eq!(
            principal(Some("Bearer a.b.c"), &s).unwrap(),
            Principal::Jwt("a.b.c".into())
        );
        for bad in [None, Some("Bearer "), Some(FULL)] {
            assert_eq!(principal(bad, &s).unwrap_err().status(), 401);
        }
        assert_eq!(
            principal(Some("Bearer mcp_full_wrong"), &s)
                .unwrap_err()
                .status(),
            401
        );
        assert!(!format!("{s:?}").contains(FULL));
    }

    #[test]
    fn short_tokens_are_a_config_error_and_origins_are_checked() {
        let err = Settings::from_lookup(&lookup(&[("OPS_MCP_TOKEN", "short")])).unwrap_err();
        assert!(err.0.starts_with("OPS_MCP_TOKEN") && !err.0.contains("short"));
        let s = settings();
        assert!(check_origin(None, &s).is_ok());
        assert!(check_origin(Some("https://console.example.com"), &s).is_ok());
        assert_eq!(
            check_origin(Some("https://evil.example"), &s)
                .unwrap_err()
                .status(),
            403
        );
    }
}
