//! The function's own settings, read and validated once per isolate by the
//! skeleton before any input is looked at beyond the method.

use switchyard_shared::config::{signing_keys, ConfigError, FromLookup, Lookup};
use switchyard_shared::signature::{SigningKey, DEFAULT_TOLERANCE_MS};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Seed scheme (`x-ipai-*`): current, then previous during a rotation.
    pub ipai_keys: Vec<SigningKey>,
    /// Standard Webhooks (`whsec_...`): current, then previous.
    pub standard_keys: Vec<SigningKey>,
    pub tolerance_ms: i64,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let ipai_keys = signing_keys(
            lookup,
            "ODOO_WEBHOOK_SECRET",
            "ODOO_WEBHOOK_SECRET_PREVIOUS",
            SigningKey::ipai,
        )?;
        let standard_keys = signing_keys(
            lookup,
            "ODOO_WEBHOOK_STANDARD_SECRET",
            "ODOO_WEBHOOK_STANDARD_SECRET_PREVIOUS",
            SigningKey::standard,
        )?;
        if ipai_keys.is_empty() && standard_keys.is_empty() {
            return Err(ConfigError(
                "set ODOO_WEBHOOK_SECRET or ODOO_WEBHOOK_STANDARD_SECRET: no request could be verified".into(),
            ));
        }
        Ok(Settings {
            ipai_keys,
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
    fn needs_at_least_one_scheme() {
        let err = Settings::from_lookup(&lookup(&[])).unwrap_err();
        assert!(err.0.contains("ODOO_WEBHOOK_SECRET"));
    }

    #[test]
    fn loads_both_schemes_with_rotation() {
        let cfg = Settings::from_lookup(&lookup(&[
            (
                "ODOO_WEBHOOK_SECRET",
                "6900445459d89179a31e3bce61cf2d7f7732425650e17886edbbaec61c40a980",
            ),
            (
                "ODOO_WEBHOOK_SECRET_PREVIOUS",
                "1111111111111111111111111111111111111111111111111111111111111111",
            ),
            (
                "ODOO_WEBHOOK_STANDARD_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ]))
        .unwrap();
        assert_eq!(cfg.ipai_keys.len(), 2);
        assert_eq!(cfg.standard_keys.len(), 1);
        assert_eq!(cfg.tolerance_ms, 300_000);
    }
}
