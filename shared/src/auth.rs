//! Who is calling: the authentication modes a function can declare, and the
//! one decision that turns an `Authorization` header into a `Caller`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ErrorCode};

/// How a function authenticates its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The function authenticates the request itself (a webhook signature) or
    /// serves anyone. Deployed with `--no-verify-jwt`.
    Open,
    /// Only the platform: the service role key, or this function's dedicated
    /// invocation token (what pg_net and pg_cron send). Deployed with
    /// `--no-verify-jwt`; the function checks the bearer itself.
    Platform,
    /// A signed-in user's Supabase JWT (or the service role). The gateway
    /// verifies the signature (`verify_jwt = true`), and PostgREST verifies it
    /// again on every RPC the function makes as the caller, so RLS decides.
    User,
}

/// The caller of one request, as its authentication established it.
#[derive(Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nobody was authenticated by the skeleton (`Auth::Open`).
    Anonymous,
    ServiceRole,
    /// The function's dedicated invocation token: may invoke, nothing else.
    Invocation,
    User(UserToken),
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Caller {
    /// For the request's log line: a kind, and a user's id; never a token.
    pub fn describe(&self) -> String {
        match self {
            Caller::Anonymous => "anonymous".into(),
            Caller::ServiceRole => "service_role".into(),
            Caller::Invocation => "invocation_token".into(),
            Caller::User(user) => format!("user:{}", user.claims.sub),
        }
    }
}

/// A user's JWT and the claims the functions use. The token is kept to be
/// forwarded to PostgREST; it is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct UserToken {
    pub token: String,
    pub claims: Claims,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// The user's id (Supabase Auth and Clerk's Supabase integration both set it).
    pub sub: String,
    pub role: String,
    #[serde(default)]
    pub app_metadata: AppMetadata,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AppMetadata {
    /// `operator` for the people who run the system.
    pub role: Option<String>,
}

impl Claims {
    pub fn is_operator(&self) -> bool {
        self.app_metadata.role.as_deref() == Some("operator")
    }
}

/// What the platform modes compare a bearer against.
pub struct PlatformKeys<'a> {
    pub service_role_key: &'a str,
    pub invocation_token: Option<&'a str>,
}

/// Decides who the caller is, or refuses: no bearer is 401 `unauthorized`; a
/// bearer that is not allowed here is 403 `forbidden`. Keys are compared in
/// constant time.
pub fn authenticate(
    auth: Auth,
    authorization: Option<&str>,
    keys: &PlatformKeys<'_>,
) -> Result<Caller, ApiError> {
    if auth == Auth::Open {
        return Ok(Caller::Anonymous);
    }
    let bearer = bearer(authorization)?;
    if secure_eq(bearer, keys.service_role_key) {
        return Ok(Caller::ServiceRole);
    }
    match auth {
        Auth::Platform => match keys.invocation_token {
            Some(token) if secure_eq(bearer, token) => Ok(Caller::Invocation),
            _ => Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the platform may call this function",
            )),
        },
        Auth::User => {
            let claims = jwt_claims(bearer).ok_or_else(|| {
                ApiError::new(ErrorCode::Unauthorized, "the bearer token is not a JWT")
            })?;
            if claims.role != "authenticated" || claims.sub.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "sign in: this function acts for a signed-in user",
                ));
            }
            Ok(Caller::User(UserToken {
                token: bearer.to_string(),
                claims,
            }))
        }
        Auth::Open => unreachable!("handled above"),
    }
}

/// The token of an `Authorization: Bearer <token>` header; none (or an
/// empty one) is 401 `unauthorized`.
pub fn bearer(authorization: Option<&str>) -> Result<&str, ApiError> {
    authorization
        .and_then(|h| {
            h.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| &h[7..])
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "an Authorization: Bearer token is required",
            )
        })
}

/// The claims of a JWT, unverified: the gateway and PostgREST verify it.
pub fn jwt_claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    serde_json::from_slice(&B64URL.decode(payload.trim_end_matches('=')).ok()?).ok()
}

/// The `role` claim of a JWT, unverified (for checking which key a setting
/// holds; API keys carry no `sub`).
pub fn jwt_role(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&B64URL.decode(payload.trim_end_matches('=')).ok()?).ok()?;
    claims.get("role")?.as_str().map(str::to_string)
}

/// Constant-time equality; an empty expected value never matches.
pub fn secure_eq(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "eyJ.service.role";
    const TOKEN: &str = "syi_0123456789abcdef0123456789abcdef";

    fn jwt(claims: &str) -> String {
        format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", B64URL.encode(claims))
    }

    fn keys() -> PlatformKeys<'static> {
        PlatformKeys {
            service_role_key: SERVICE,
            invocation_token: Some(TOKEN),
        }
    }

    fn code(auth: Auth, header: Option<&str>) -> ErrorCode {
        authenticate(auth, header, &keys()).unwrap_err().code
    }

    #[test]
    fn open_functions_authenticate_nobody() {
        assert_eq!(
            authenticate(Auth::Open, None, &keys()).unwrap(),
            Caller::Anonymous
        );
    }

    #[test]
    fn platform_accepts_the_service_role_and_the_invocation_token_only() {
        let ok = |h: &str| authenticate(Auth::Platform, Some(h), &keys()).unwrap();
        assert_eq!(ok("Bearer eyJ.service.role"), Caller::ServiceRole);
        assert_eq!(ok("bearer eyJ.service.role"), Caller::ServiceRole);
        assert_eq!(ok(&format!("Bearer {TOKEN}")), Caller::Invocation);
        for missing in [None, Some(""), Some("Bearer "), Some("eyJ.service.role")] {
            assert_eq!(
                code(Auth::Platform, missing),
                ErrorCode::Unauthorized,
                "{missing:?}"
            );
        }
        for wrong in [
            "Bearer eyJ.anon.key",
            "Bearer eyJ.service.rol",
            "Bearer eyJ.service.rolee",
            "Bearer syi_0123456789abcdef0123456789abcdeF",
        ] {
            assert_eq!(
                code(Auth::Platform, Some(wrong)),
                ErrorCode::Forbidden,
                "{wrong}"
            );
        }
        let no_token = PlatformKeys {
            service_role_key: SERVICE,
            invocation_token: None,
        };
        let err = authenticate(Auth::Platform, Some("Bearer "), &no_token).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn users_are_signed_in_jwts_with_a_subject() {
        let token =
            jwt(r#"{"sub":"u-1","role":"authenticated","app_metadata":{"role":"operator"}}"#);
        let Caller::User(user) =
            authenticate(Auth::User, Some(&format!("Bearer {token}")), &keys()).unwrap()
        else {
            panic!("expected a user");
        };
        assert_eq!(user.claims.sub, "u-1");
        assert!(user.claims.is_operator());
        assert_eq!(user.token, token);
        assert_eq!(Caller::User(user).describe(), "user:u-1");

        let plain = jwt(r#"{"sub":"u-2","role":"authenticated"}"#);
        let Caller::User(user) =
            authenticate(Auth::User, Some(&format!("Bearer {plain}")), &keys()).unwrap()
        else {
            panic!("expected a user");
        };
        assert!(!user.claims.is_operator());

        let anon = jwt(r#"{"role":"anon","sub":""}"#);
        for header in [
            format!("Bearer {anon}"),
            "Bearer not-a-jwt".into(),
            "Bearer a.b.c.d".into(),
        ] {
            assert_eq!(
                code(Auth::User, Some(&header)),
                ErrorCode::Unauthorized,
                "{header}"
            );
        }
        assert_eq!(
            authenticate(Auth::User, Some("Bearer eyJ.service.role"), &keys()).unwrap(),
            Caller::ServiceRole
        );
    }

    #[test]
    fn secure_eq_never_matches_an_empty_key() {
        assert!(secure_eq("a", "a"));
        assert!(!secure_eq("", ""));
        assert!(!secure_eq("ab", "a"));
    }

    proptest::proptest! {
        /// Any Authorization header: a caller, or 401/403; only the exact
        /// keys authenticate as the platform.
        #[test]
        fn any_header_is_a_caller_or_a_refusal(header in proptest::option::of("\\PC{0,60}|Bearer [A-Za-z0-9._-]{0,60}")) {
            for auth in [Auth::Platform, Auth::User] {
                match authenticate(auth, header.as_deref(), &keys()) {
                    Ok(Caller::ServiceRole) => proptest::prop_assert_eq!(header.as_deref().map(|h| h[7..].trim()), Some(SERVICE)),
                    Ok(Caller::Invocation) => proptest::prop_assert_eq!(header.as_deref().map(|h| h[7..].trim()), Some(TOKEN)),
                    Ok(Caller::User(user)) => proptest::prop_assert_eq!(user.claims.role, "authenticated"),
                    Ok(Caller::Anonymous) => proptest::prop_assert!(false, "only Auth::Open is anonymous"),
                    Err(err) => proptest::prop_assert!(matches!(err.status(), 401 | 403)),
                }
            }
        }
    }
}
