//! Correlation ids: taken from `x-correlation-id` when it is a sane token,
//! otherwise generated, then stored on every row a request touches, passed on
//! to outbound calls and echoed back.

pub const HEADER: &str = "x-correlation-id";

const MAX_LEN: usize = 128;

/// The caller's id if it is 1 to 128 characters of `[A-Za-z0-9._:-]`;
/// anything else (which could smuggle log-breaking text) is replaced.
pub fn from_header_or_new(header: Option<&str>) -> String {
    match header.map(str::trim) {
        Some(id) if is_valid(id) => id.to_string(),
        _ => new_id(),
    }
}

pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A random UUID v4.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_caller_id() {
        assert_eq!(
            from_header_or_new(Some("deploy-20260124T030000")),
            "deploy-20260124T030000"
        );
        assert_eq!(from_header_or_new(Some(" odoo:42 ")), "odoo:42");
    }

    #[test]
    fn replaces_missing_or_unsafe_ids_with_a_uuid() {
        for bad in [
            None,
            Some(""),
            Some("has space"),
            Some("line\nbreak"),
            Some(&"x".repeat(129)[..]),
        ] {
            let id = from_header_or_new(bad);
            assert_eq!(id.len(), 36, "{bad:?}");
            assert_eq!(&id[14..15], "4");
            assert!(is_valid(&id));
        }
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn generated_ids_are_uuid_v4() {
        let id = uuid::Uuid::parse_str(&new_id()).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
    }

    proptest::proptest! {
        /// Whatever comes in, what goes out is a valid id, and a valid caller
        /// id is kept as it is (trimmed).
        #[test]
        fn the_result_is_always_a_valid_id(header in proptest::option::of("\\PC{0,140}|[A-Za-z0-9._:-]{1,130}")) {
            let id = from_header_or_new(header.as_deref());
            proptest::prop_assert!(is_valid(&id));
            if let Some(h) = header.as_deref().map(str::trim).filter(|h| is_valid(h)) {
                proptest::prop_assert_eq!(id, h);
            }
        }
    }
}
