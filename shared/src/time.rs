//! Clock access and the few timestamp rules the functions share.

/// Milliseconds since the Unix epoch, from the runtime's clock.
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys_now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

#[cfg(target_arch = "wasm32")]
fn js_sys_now() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// RFC 3339 date-time with an explicit offset, as Postgres `timestamptz`
/// accepts it: `2026-01-22T07:26:26Z`, `2026-01-22T07:26:26.855+08:00`.
pub fn is_rfc3339(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() < 20 || b.len() > 35 {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    let num = |range: std::ops::Range<usize>| value[range].parse::<u32>().unwrap_or(99);
    let date_ok = digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10);
    let sep_ok = matches!(b[10], b'T' | b't' | b' ');
    let time_ok =
        digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19);
    if !(date_ok && sep_ok && time_ok) {
        return false;
    }
    if !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut rest = &value[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
                && rest[1..3].parse::<u32>().unwrap_or(99) <= 23
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc3339_with_offset() {
        for ok in [
            "2026-01-22T07:26:26Z",
            "2026-01-22T07:26:26.855682+00:00",
            "2026-01-22 07:26:26-05:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_dates_without_offset_or_out_of_range() {
        for bad in [
            "2026-01-22",
            "2026-01-22T07:26:26",
            "2026-13-22T07:26:26Z",
            "2026-01-22T25:00:00Z",
            "yesterday",
            "2026-01-22T07:26:26.Z",
            "2026-01-22T07:26:26+0800",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn native_clock_is_after_2026() {
        assert!(now_ms() > 1_767_225_600_000);
    }
}
