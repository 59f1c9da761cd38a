//! The toggle's settings, read and validated once per isolate: where n8n's
//! API is and its key (`N8N_API_URL`, `N8N_API_KEY`, `N8N_TIMEOUT_MS`).

use switchyard_shared::config::{ConfigError, FromLookup, Lookup};
use switchyard_shared::n8n;

#[derive(Debug, Clone)]
pub struct Settings {
    pub n8n: n8n::Settings,
}

impl FromLookup for Settings {
    fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        Ok(Settings {
            n8n: n8n::Settings::from_lookup(lookup)?,
        })
    }
}
