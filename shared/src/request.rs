//! Checks on an incoming request that several functions make the same way.

use crate::error::{ApiError, ErrorCode};

/// Every function here is called with POST; anything else is a 405.
pub fn require_post(method: &str) -> Result<(), ApiError> {
    if method.eq_ignore_ascii_case("POST") {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "only POST is accepted",
        ))
    }
}

/// For functions only the platform may call (pg_net, pg_cron, operators'
/// scripts): the gateway has verified the JWT, but anon and user tokens are
/// valid JWTs too, so the bearer must be the service role key itself.
/// Compared in constant time.
pub fn require_service_role(
    authorization: Option<&str>,
    service_role_key: &str,
) -> Result<(), ApiError> {
    let presented = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .unwrap_or("")
        .as_bytes();
    let expected = service_role_key.as_bytes();
    let mut difference = presented.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ presented.get(i).copied().unwrap_or(0));
    }
    if difference == 0 && !expected.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the service role may call this function",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_post_is_accepted() {
        assert!(require_post("POST").is_ok());
        assert!(require_post("post").is_ok());
        for m in ["GET", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            assert_eq!(require_post(m).unwrap_err().status(), 405);
        }
    }

    #[test]
    fn the_service_role_key_passes_and_nothing_else_does() {
        let key = "eyJ.service.role";
        assert!(require_service_role(Some("Bearer eyJ.service.role"), key).is_ok());
        for header in [
            None,
            Some(""),
            Some("Bearer "),
            Some("Bearer eyJ.anon.key"),
            Some("Bearer eyJ.service.rol"),
            Some("Bearer eyJ.service.rolee"),
            Some("eyJ.service.role"),
            Some("Basic eyJ.service.role"),
        ] {
            let err = require_service_role(header, key).unwrap_err();
            assert_eq!(err.code, ErrorCode::Forbidden, "{header:?}");
            assert_eq!(err.status(), 403);
        }
        assert!(require_service_role(Some("Bearer "), "").is_err());
    }
}
