//! The receiver's keys, read and validated once per isolate.

use switchyard_shared::config::{signing_keys, ConfigError, FromLookup, Lookup};
use switchyard_shared::signature::{SigningKey, DEFAULT_TOLERANCE_MS};

#[derive(Debug, Clone)]
pub struct Settings {
    /// The seed's `x-n8n-signature` (hex HMAC of the body):
    /// `N8N_STATUS_WEBHOOK_SECRET` (32+ characters), and `..._PREVIOUS`
    /// during a rotation.
    pub hmac_keys: Vec<SigningKey>,
    /// Standard Webhooks senders: `N8N_STATUS_WEBHOOK_STANDARD_SECRET`
    /// (`whsec_...`) and `..._PREVIOUS`.
    pub standard_keys: Vec<SigningKey>,
    /// How far a signed timestamp may be from now, either way (5 minutes).
    pub tolerance_ms: i64,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let hmac_keys = signing_keys(
            lookup,
            "N8N_STATUS_WEBHOOK_SECRET",
            "N8N_STATUS_WEBHOOK_SECRET_PREVIOUS",
            SigningKey::ipai,
        )?;
        let standard_keys = signing_keys(
            lookup,
            "N8N_STATUS_WEBHOOK_STANDARD_SECRET",
            "N8N_STATUS_WEBHOOK_STANDARD_SECRET_PREVIOUS",
            SigningKey::standard,
        )?;
        if hmac_keys.is_empty() && standard_keys.is_empty() {
            return Err(ConfigError(
                "set N8N_STATUS_WEBHOOK_SECRET or N8N_STATUS_WEBHOOK_STANDARD_SECRET: no request could be verified"
                    .into(),
            ));
        }
        Ok(Settings {
            hmac_keys,
            standard_keys,
            tolerance_ms: DEFAULT_TOLERANCE_MS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::config::lookup_from as lookup;

    #[test]
    fn needs_a_key_and_never_shows_one() {
        let err = Settings::from_lookup(&lookup(&[])).unwrap_err();
        assert!(err.0.contains("N8N_STATUS_WEBHOOK_SECRET"));
        let short =
            Settings::from_lookup(&lookup(&[("N8N_STATUS_WEBHOOK_SECRET", "short-secret")]))
                .unwrap_err();
        assert!(!short.0.contains("short-secret"));
        let ok = Settings::from_lookup(&lookup(&[(
            "N8N_STATUS_WEBHOOK_SECRET",
            "0123456789abcdef0123456789abcdef",
        )]))
        .unwrap();
        assert_eq!((ok.hmac_keys.len(), ok.standard_keys.len()), (1, 0));
    }
}
