//! Webhook signature schemes.
//!
//! Two schemes are verified, both HMAC-SHA256 with constant-time comparison
//! (`Mac::verify_slice`) against every currently valid key, so a secret can be
//! rotated without downtime (current and previous both verify):
//!
//! * the seed's Odoo scheme: `x-ipai-timestamp` (Unix ms), `x-ipai-signature`
//!   (hex HMAC of `{timestamp}.{raw body}`), `x-idempotency-key` (not signed);
//! * Standard Webhooks: `webhook-id`, `webhook-timestamp` (Unix s),
//!   `webhook-signature` (`v1,<base64>` entries, space separated) over
//!   `{id}.{timestamp}.{raw body}` with a `whsec_<base64>` secret; the signed id
//!   is the idempotency key.
//!
//! Nothing here returns or formats an expected signature: errors say only
//! which rule failed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from the receiver's clock, either way.
pub const DEFAULT_TOLERANCE_MS: i64 = 5 * 60 * 1000;

pub const IPAI_TIMESTAMP: &str = "x-ipai-timestamp";
pub const IPAI_SIGNATURE: &str = "x-ipai-signature";
pub const IDEMPOTENCY_KEY: &str = "x-idempotency-key";
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
pub const N8N_SIGNATURE: &str = "x-n8n-signature";

const MAX_KEY_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ipai,
    StandardWebhooks,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ipai => "ipai-hmac",
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }
}

/// A secret that may verify signatures, with an id that names it in the
/// audit trail without revealing it.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The seed scheme signs with the secret string's bytes as Odoo holds it.
    pub fn ipai(secret: &str) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err("an HMAC secret needs at least 32 characters".into());
        }
        Ok(Self::from_bytes(secret.as_bytes().to_vec()))
    }

    /// Standard Webhooks secrets are `whsec_` followed by base64 key bytes.
    pub fn standard(secret: &str) -> Result<Self, String> {
        let encoded = secret
            .strip_prefix("whsec_")
            .ok_or("a Standard Webhooks secret starts with whsec_")?;
        let bytes = B64
            .decode(encoded)
            .map_err(|_| "a Standard Webhooks secret is whsec_ and base64")?;
        if bytes.len() < 24 {
            return Err("a Standard Webhooks secret needs at least 24 key bytes".into());
        }
        Ok(Self::from_bytes(bytes))
    }

    fn from_bytes(secret: Vec<u8>) -> Self {
        // A truncated hash of the key: stable across deploys, useless for forging.
        let digest = Sha256::new_with_prefix(b"switchyard-signing-key:")
            .chain_update(&secret)
            .finalize();
        let id = format!("key_{}", &hex::encode(digest)[..12]);
        SigningKey { id, secret }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts keys of any length")
    }
}

/// What a verified request proves about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub scheme: Scheme,
    pub key_id: String,
    pub idempotency_key: String,
    /// When the signed timestamp stops being acceptable (Unix ms).
    pub signature_expires_at_ms: i64,
    /// sha256 of the presented MAC, for schemes whose signature does not cover
    /// the idempotency key: a second request with the same MAC under another
    /// key is a replay.
    pub replay_digest: Option<String>,
}

/// Picks the scheme by its headers and verifies the request.
pub fn verify(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    ipai_keys: &[SigningKey],
    standard_keys: &[SigningKey],
    now_ms: i64,
    tolerance_ms: i64,
) -> Result<Verified, ApiError> {
    if header(WEBHOOK_SIGNATURE).is_some() || header(WEBHOOK_ID).is_some() {
        if standard_keys.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidSignature,
                "Standard Webhooks signatures are not enabled here",
            ));
        }
        verify_standard(header, body, standard_keys, now_ms, tolerance_ms)
    } else {
        if ipai_keys.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidSignature,
                "x-ipai signatures are not enabled here",
            ));
        }
        verify_ipai(header, body, ipai_keys, now_ms, tolerance_ms)
    }
}

pub fn verify_ipai(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    keys: &[SigningKey],
    now_ms: i64,
    tolerance_ms: i64,
) -> Result<Verified, ApiError> {
    let timestamp = required(header, IPAI_TIMESTAMP)?;
    let signature = required(header, IPAI_SIGNATURE)?;
    let idempotency_key = required(header, IDEMPOTENCY_KEY)?;
    let signed_ms = parse_unix(&timestamp, IPAI_TIMESTAMP)?;
    check_idempotency_key(&idempotency_key, IDEMPOTENCY_KEY)?;
    let hex_sig = signature.trim();
    let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
    let presented = match hex::decode(hex_sig) {
        Ok(bytes) if bytes.len() == 32 => bytes,
        _ => return Err(invalid_header(IPAI_SIGNATURE, "64 hex characters")),
    };
    let key = keys
        .iter()
        .find(|key| {
            let mut mac = key.mac();
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(&presented).is_ok()
        })
        .ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidSignature, "the signature does not match")
        })?;
    check_window(signed_ms, now_ms, tolerance_ms)?;
    Ok(Verified {
        scheme: Scheme::Ipai,
        key_id: key.id.clone(),
        idempotency_key,
        signature_expires_at_ms: signed_ms + tolerance_ms,
        replay_digest: Some(hex::encode(Sha256::digest(&presented))),
    })
}

pub fn verify_standard(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    keys: &[SigningKey],
    now_ms: i64,
    tolerance_ms: i64,
) -> Result<Verified, ApiError> {
    let id = required(header, WEBHOOK_ID)?;
    let timestamp = required(header, WEBHOOK_TIMESTAMP)?;
    let signatures = required(header, WEBHOOK_SIGNATURE)?;
    let signed_s = parse_unix(&timestamp, WEBHOOK_TIMESTAMP)?;
    check_idempotency_key(&id, WEBHOOK_ID)?;
    let presented: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .collect();
    if presented.is_empty() {
        return Err(invalid_header(
            WEBHOOK_SIGNATURE,
            "one or more v1,<base64> entries",
        ));
    }
    let key = keys
        .iter()
        .find(|key| {
            let mut mac = key.mac();
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            presented
                .iter()
                .any(|sig| mac.clone().verify_slice(sig).is_ok())
        })
        .ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidSignature, "the signature does not match")
        })?;
    let signed_ms = signed_s.saturating_mul(1000);
    check_window(signed_ms, now_ms, tolerance_ms)?;
    Ok(Verified {
        scheme: Scheme::StandardWebhooks,
        key_id: key.id.clone(),
        idempotency_key: id,
        signature_expires_at_ms: signed_ms + tolerance_ms,
        replay_digest: None,
    })
}

/// The seed's n8n status-webhook scheme: `x-n8n-signature` is the hex
/// HMAC-SHA256 of the raw body (`sha256=` prefix allowed). It has no
/// timestamp header: the payload's own `timestamp`, covered by the MAC, is
/// the signed time the receiver holds against its window. Returns the id of
/// the key that verified.
pub fn verify_body_hmac(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    keys: &[SigningKey],
) -> Result<String, ApiError> {
    let signature = required(header, N8N_SIGNATURE)?;
    let hex_sig = signature.trim();
    let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
    let presented = match hex::decode(hex_sig) {
        Ok(bytes) if bytes.len() == 32 => bytes,
        _ => return Err(invalid_header(N8N_SIGNATURE, "64 hex characters")),
    };
    keys.iter()
        .find(|key| {
            let mut mac = key.mac();
            mac.update(body);
            mac.verify_slice(&presented).is_ok()
        })
        .map(|key| key.id.clone())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidSignature, "the signature does not match"))
}

/// Signs like the n8n status hooks: hex HMAC of the body. For tests.
pub fn sign_body_hmac(key: &SigningKey, body: &[u8]) -> String {
    let mut mac = key.mac();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Signs like a Standard Webhooks sender: `v1,<base64>`. Used by functions that
/// deliver webhooks, and by tests.
pub fn sign_standard(key: &SigningKey, id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let mut mac = key.mac();
    mac.update(format!("{id}.{timestamp_s}.").as_bytes());
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Signs like Odoo's `send_ipai_event()`: hex HMAC of `{timestamp}.{body}`.
pub fn sign_ipai(key: &SigningKey, timestamp_ms: i64, body: &[u8]) -> String {
    let mut mac = key.mac();
    mac.update(format!("{timestamp_ms}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn required(header: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<String, ApiError> {
    match header(name) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ApiError::new(
            ErrorCode::MissingHeader,
            format!("header {name} is required"),
        )
        .with_details(serde_json::json!({ "header": name }))),
    }
}

fn invalid_header(name: &str, expected: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidHeader,
        format!("header {name} must be {expected}"),
    )
    .with_details(serde_json::json!({ "header": name }))
}

fn parse_unix(value: &str, name: &str) -> Result<i64, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_header(name, "a Unix timestamp in digits"));
    }
    value
        .parse()
        .map_err(|_| invalid_header(name, "a Unix timestamp in digits"))
}

fn check_idempotency_key(key: &str, name: &str) -> Result<(), ApiError> {
    if !is_idempotency_key(key) {
        return Err(invalid_header(name, "1 to 255 visible ASCII characters"));
    }
    Ok(())
}

/// An idempotency key: 1 to 255 visible ASCII characters.
pub fn is_idempotency_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| (0x21..0x7f).contains(&b))
}

fn check_window(signed_ms: i64, now_ms: i64, tolerance_ms: i64) -> Result<(), ApiError> {
    if (now_ms - signed_ms).abs() > tolerance_ms {
        return Err(ApiError::new(
            ErrorCode::TimestampOutOfWindow,
            format!(
                "the signed timestamp is more than {} s from now",
                tolerance_ms / 1000
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NOW: i64 = 1_769_066_785_000;
    const CURRENT: &str = "6900445459d89179a31e3bce61cf2d7f7732425650e17886edbbaec61c40a980";
    const PREVIOUS: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const BODY: &[u8] =
        br#"{"event_type":"test","aggregate_type":"test","aggregate_id":"1","payload":{}}"#;

    fn lookup(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn ipai_headers(secret: &str, ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        let key = SigningKey::ipai(secret).unwrap();
        vec![
            (IPAI_TIMESTAMP, ts.to_string()),
            (IPAI_SIGNATURE, sign_ipai(&key, ts, body)),
            (
                IDEMPOTENCY_KEY,
                "expense.submitted:42:1769066785".to_string(),
            ),
        ]
    }

    fn keys() -> Vec<SigningKey> {
        vec![
            SigningKey::ipai(CURRENT).unwrap(),
            SigningKey::ipai(PREVIOUS).unwrap(),
        ]
    }

    #[test]
    fn n8n_body_signatures_verify_under_either_key_and_nothing_else() {
        let previous = SigningKey::ipai(PREVIOUS).unwrap();
        let signed = sign_body_hmac(&previous, BODY);
        let verify = |sig: &str, body: &[u8]| {
            verify_body_hmac(&lookup(&[(N8N_SIGNATURE, sig.to_string())]), body, &keys())
        };
        assert_eq!(verify(&signed, BODY).unwrap(), previous.id());
        assert!(verify(&format!("sha256={signed}"), BODY).is_ok());
        let err = verify(&signed, b"{}").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidSignature);
        assert!(!err.message.contains(&signed));
        assert_eq!(
            verify("zz", BODY).unwrap_err().code,
            ErrorCode::InvalidHeader
        );
        let missing = verify_body_hmac(&lookup(&[]), BODY, &keys()).unwrap_err();
        assert_eq!(missing.code, ErrorCode::MissingHeader);
    }

    fn std_pairs(id: &str, ts: i64, signature: String) -> Vec<(&'static str, String)> {
        vec![
            (WEBHOOK_ID, id.to_string()),
            (WEBHOOK_TIMESTAMP, ts.to_string()),
            (WEBHOOK_SIGNATURE, signature),
        ]
    }

    fn std_code(pairs: &[(&str, String)], key: SigningKey) -> ErrorCode {
        code(verify_standard(
            &lookup(pairs),
            BODY,
            &[key],
            NOW,
            DEFAULT_TOLERANCE_MS,
        ))
    }

    fn std_key() -> SigningKey {
        SigningKey::standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
    }

    /// The rejection code of a seed-scheme request with these headers.
    fn ipai_code(pairs: &[(&str, String)], body: &[u8]) -> ErrorCode {
        code(verify_ipai(
            &lookup(pairs),
            body,
            &keys(),
            NOW,
            DEFAULT_TOLERANCE_MS,
        ))
    }

    fn code(result: Result<Verified, ApiError>) -> ErrorCode {
        result.expect_err("expected a rejection").code
    }

    #[test]
    fn seed_signature_from_the_current_key_verifies() {
        let h = lookup(&ipai_headers(CURRENT, NOW, BODY));
        let v = verify(&h, BODY, &keys(), &[], NOW, DEFAULT_TOLERANCE_MS).unwrap();
        assert_eq!(v.scheme, Scheme::Ipai);
        assert_eq!(v.key_id, keys()[0].id());
        assert_eq!(v.idempotency_key, "expense.submitted:42:1769066785");
        assert_eq!(v.signature_expires_at_ms, NOW + DEFAULT_TOLERANCE_MS);
        assert_eq!(v.replay_digest.as_ref().unwrap().len(), 64);
    }

    #[test]
    fn rotation_accepts_the_previous_key_and_records_which_matched() {
        let h = lookup(&ipai_headers(PREVIOUS, NOW, BODY));
        let v = verify_ipai(&h, BODY, &keys(), NOW, DEFAULT_TOLERANCE_MS).unwrap();
        assert_eq!(v.key_id, keys()[1].id());
        assert_ne!(keys()[0].id(), keys()[1].id());
    }

    #[test]
    fn key_ids_do_not_contain_the_secret() {
        let key = SigningKey::ipai(CURRENT).unwrap();
        assert!(!key.id().contains(&CURRENT[..8]));
        assert!(!format!("{key:?}").contains(&CURRENT[..8]));
    }

    #[test]
    fn unknown_key_tampered_body_or_timestamp_is_invalid_signature() {
        let other = "2222222222222222222222222222222222222222222222222222222222222222";
        let h = lookup(&ipai_headers(other, NOW, BODY));
        assert_eq!(
            code(verify_ipai(&h, BODY, &keys(), NOW, DEFAULT_TOLERANCE_MS)),
            ErrorCode::InvalidSignature
        );

        let h = lookup(&ipai_headers(CURRENT, NOW, BODY));
        let tampered =
            br#"{"event_type":"test","aggregate_type":"test","aggregate_id":"2","payload":{}}"#;
        assert_eq!(
            code(verify_ipai(
                &h,
                tampered,
                &keys(),
                NOW,
                DEFAULT_TOLERANCE_MS
            )),
            ErrorCode::InvalidSignature
        );

        let mut pairs = ipai_headers(CURRENT, NOW, BODY);
        pairs[0].1 = (NOW + 1).to_string();
        assert_eq!(ipai_code(&pairs, BODY), ErrorCode::InvalidSignature);
    }

    #[test]
    fn uppercase_hex_and_sha256_prefix_are_accepted() {
        let mut pairs = ipai_headers(CURRENT, NOW, BODY);
        pairs[1].1 = format!("sha256={}", pairs[1].1.to_uppercase());
        assert!(verify_ipai(&lookup(&pairs), BODY, &keys(), NOW, DEFAULT_TOLERANCE_MS).is_ok());
    }

    #[test]
    fn timestamps_outside_five_minutes_either_way_are_refused() {
        let tol = DEFAULT_TOLERANCE_MS;
        for ts in [NOW - tol - 1, NOW + tol + 1] {
            let h = lookup(&ipai_headers(CURRENT, ts, BODY));
            assert_eq!(
                code(verify_ipai(&h, BODY, &keys(), NOW, tol)),
                ErrorCode::TimestampOutOfWindow
            );
        }
        for ts in [NOW - tol, NOW + tol] {
            let h = lookup(&ipai_headers(CURRENT, ts, BODY));
            assert!(verify_ipai(&h, BODY, &keys(), NOW, tol).is_ok());
        }
    }

    #[test]
    fn each_missing_header_is_named() {
        for missing in [IPAI_TIMESTAMP, IPAI_SIGNATURE, IDEMPOTENCY_KEY] {
            let pairs: Vec<_> = ipai_headers(CURRENT, NOW, BODY)
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err =
                verify_ipai(&lookup(&pairs), BODY, &keys(), NOW, DEFAULT_TOLERANCE_MS).unwrap_err();
            assert_eq!(err.code, ErrorCode::MissingHeader);
            assert_eq!(err.details.unwrap()["header"], missing);
        }
    }

    #[test]
    fn malformed_headers_are_invalid_header() {
        let cases: [(usize, &str); 5] = [
            (0, "12.5"),
            (0, "-1000"),
            (1, "zz"),
            (1, "abcd"),
            (2, "has space"),
        ];
        for (index, value) in cases {
            let mut pairs = ipai_headers(CURRENT, NOW, BODY);
            pairs[index].1 = value.to_string();
            let err =
                verify_ipai(&lookup(&pairs), BODY, &keys(), NOW, DEFAULT_TOLERANCE_MS).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidHeader, "{value}");
        }
        let mut pairs = ipai_headers(CURRENT, NOW, BODY);
        pairs[2].1 = "k".repeat(256);
        assert_eq!(ipai_code(&pairs, BODY), ErrorCode::InvalidHeader);
    }

    #[test]
    fn errors_never_carry_the_expected_signature() {
        let pairs = ipai_headers(CURRENT, NOW, BODY);
        let expected = pairs[1].1.clone();
        let mut wrong = pairs.clone();
        wrong[1].1 = "0".repeat(64);
        let err =
            verify_ipai(&lookup(&wrong), BODY, &keys(), NOW, DEFAULT_TOLERANCE_MS).unwrap_err();
        let text = err.envelope("c").to_string();
        assert!(!text.contains(&expected));
        assert!(!text.contains(CURRENT));
    }

    #[test]
    fn standard_webhooks_round_trip_and_multiple_signatures() {
        let key = std_key();
        let ts = NOW / 1000;
        let sig = sign_standard(&key, "msg_2Kc9", ts, BODY);
        let pairs = std_pairs("msg_2Kc9", ts, format!("v1,bm90IGl0 {sig}"));
        let v = verify(
            &lookup(&pairs),
            BODY,
            &keys(),
            std::slice::from_ref(&key),
            NOW,
            DEFAULT_TOLERANCE_MS,
        )
        .unwrap();
        assert_eq!(v.scheme, Scheme::StandardWebhooks);
        assert_eq!(v.idempotency_key, "msg_2Kc9");
        assert_eq!(v.replay_digest, None);
        assert_eq!(v.key_id, key.id());
    }

    #[test]
    fn standard_webhooks_id_is_signed() {
        let key = std_key();
        let ts = NOW / 1000;
        let pairs = std_pairs("msg_other", ts, sign_standard(&key, "msg_2Kc9", ts, BODY));
        assert_eq!(std_code(&pairs, key), ErrorCode::InvalidSignature);
    }

    #[test]
    fn standard_webhooks_timestamp_is_seconds_and_windowed() {
        let key = std_key();
        let ts = NOW / 1000 - 301;
        let pairs = std_pairs("msg_1", ts, sign_standard(&key, "msg_1", ts, BODY));
        assert_eq!(std_code(&pairs, key), ErrorCode::TimestampOutOfWindow);
    }

    #[test]
    fn standard_webhooks_without_v1_entries_is_invalid_header() {
        let pairs = std_pairs("msg_1", NOW / 1000, "v2,abc".to_string());
        assert_eq!(std_code(&pairs, std_key()), ErrorCode::InvalidHeader);
    }

    #[test]
    fn a_scheme_without_configured_keys_is_refused() {
        let h = lookup(&ipai_headers(CURRENT, NOW, BODY));
        assert_eq!(
            code(verify(
                &h,
                BODY,
                &[],
                &[std_key()],
                NOW,
                DEFAULT_TOLERANCE_MS
            )),
            ErrorCode::InvalidSignature
        );
    }

    #[test]
    fn secrets_are_validated() {
        assert!(SigningKey::ipai("short").is_err());
        assert!(SigningKey::standard("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::standard("whsec_!!!").is_err());
        assert!(SigningKey::standard("whsec_c2hvcnQ=").is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn header_value() -> impl Strategy<Value = Option<String>> {
            proptest::option::of(
                "\\PC{0,80}|[0-9]{1,20}|v1,[A-Za-z0-9+/=]{0,60}|sha256=[0-9a-fA-F]{64}",
            )
        }

        proptest! {
            /// Any headers and body: a verification or a 4xx, never a panic.
            #[test]
            fn arbitrary_requests_are_refused_with_client_codes(
                ts in header_value(), sig in header_value(), key in header_value(),
                id in header_value(), std_ts in header_value(), std_sig in header_value(),
                body in prop::collection::vec(any::<u8>(), 0..64),
            ) {
                let pairs: Vec<(&str, String)> = [
                    (IPAI_TIMESTAMP, ts), (IPAI_SIGNATURE, sig), (IDEMPOTENCY_KEY, key),
                    (WEBHOOK_ID, id), (WEBHOOK_TIMESTAMP, std_ts), (WEBHOOK_SIGNATURE, std_sig),
                ].into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
                let result = verify(&lookup(&pairs), &body, &keys(), &[std_key()], NOW, DEFAULT_TOLERANCE_MS);
                if let Err(err) = result {
                    prop_assert!((400..500).contains(&err.status()), "{}", err);
                }
            }

            /// Any configured secret: a key or a reason, never a panic.
            #[test]
            fn secrets_parse_or_are_refused(secret in "\\PC{0,80}|whsec_[A-Za-z0-9+/=]{0,60}") {
                let _ = SigningKey::ipai(&secret);
                if let Ok(key) = SigningKey::standard(&secret) {
                    prop_assert!(secret.starts_with("whsec_") && key.id().starts_with("key_"));
                }
            }

            /// A correct signature verifies, and changing any byte of the body
            /// breaks it.
            #[test]
            fn signatures_cover_every_byte(body in prop::collection::vec(any::<u8>(), 1..64), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
                let pairs = ipai_headers(CURRENT, NOW, &body);
                prop_assert!(verify_ipai(&lookup(&pairs), &body, &keys(), NOW, DEFAULT_TOLERANCE_MS).is_ok());
                let mut tampered = body.clone();
                let i = at.index(tampered.len());
                tampered[i] ^= flip;
                prop_assert_eq!(
                    code(verify_ipai(&lookup(&pairs), &tampered, &keys(), NOW, DEFAULT_TOLERANCE_MS)),
                    ErrorCode::InvalidSignature
                );
                let key = std_key();
                let ts = NOW / 1000;
                let std = std_pairs("msg_p", ts, sign_standard(&key, "msg_p", ts, &body));
                let keys = std::slice::from_ref(&key);
                prop_assert!(verify_standard(&lookup(&std), &body, keys, NOW, DEFAULT_TOLERANCE_MS).is_ok());
                prop_assert_eq!(
                    code(verify_standard(&lookup(&std), &tampered, keys, NOW, DEFAULT_TOLERANCE_MS)),
                    ErrorCode::InvalidSignature
                );
            }
        }
    }
}
