//! Clock access and the timestamp rules the functions share. Parsing is
//! chrono's (already compiled into every worker); what is checked here on top
//! is what Postgres would refuse, so such input is a 4xx, not a database error.

use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Timelike};

/// Milliseconds since the Unix epoch, from the runtime's clock.
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        worker::Date::now().as_millis() as i64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Postgres refuses time zone displacements beyond ±15:59:59.
const MAX_PG_OFFSET_SECONDS: i32 = 15 * 3600 + 59 * 60 + 59;

/// An RFC 3339 date-time with an explicit offset (`2026-01-22T07:26:26Z`,
/// `2026-01-22 07:26:26.855+08:00`) that a Postgres `timestamptz` can hold,
/// normalised to microseconds (Postgres' precision; the offset is kept so the
/// year stays within four digits): a real calendar
/// date in years 0001-9999, an offset within ±15:59, no leap second.
/// `Err` says what is wrong, for a validation problem.
pub fn parse_timestamptz(value: &str) -> Result<String, &'static str> {
    let parsed = DateTime::parse_from_rfc3339(value)
        .map_err(|_| "must be an RFC 3339 date-time with an offset, on a real calendar date")?;
    check_storable(&parsed)?;
    Ok(parsed.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn check_storable(at: &DateTime<FixedOffset>) -> Result<(), &'static str> {
    if at.year() < 1 {
        return Err("must be in the years 0001 to 9999");
    }
    if at.offset().local_minus_utc().abs() > MAX_PG_OFFSET_SECONDS {
        return Err("must have an offset between -15:59 and +15:59");
    }
    if at.nanosecond() >= 1_000_000_000 {
        return Err("must not be a leap second");
    }
    Ok(())
}

/// An HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) as Unix ms.
pub fn parse_http_date_ms(value: &str) -> Option<i64> {
    if !value.ends_with(" GMT") {
        return None;
    }
    DateTime::parse_from_rfc2822(value)
        .ok()
        .map(|at| at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_rfc3339_with_offset_and_normalises_to_utc() {
        for (input, stored) in [
            ("2026-01-22T07:26:26Z", "2026-01-22T07:26:26.000000Z"),
            (
                "2026-01-22T07:26:26.855682+00:00",
                "2026-01-22T07:26:26.855682Z",
            ),
            (
                "2026-01-22 07:26:26-05:30",
                "2026-01-22T07:26:26.000000-05:30",
            ),
            ("2028-02-29t00:00:00z", "2028-02-29T00:00:00.000000Z"),
            (
                "0001-01-01T00:00:00+15:59",
                "0001-01-01T00:00:00.000000+15:59",
            ),
            (
                "9999-12-31T23:59:59.123456789-15:59",
                "9999-12-31T23:59:59.123456-15:59",
            ),
        ] {
            assert_eq!(parse_timestamptz(input).as_deref(), Ok(stored), "{input}");
        }
    }

    #[test]
    fn refuses_what_postgres_cannot_store_or_is_not_a_date() {
        for bad in [
            "2026-01-22",
            "2026-01-22T07:26:26",
            "2026-13-22T07:26:26Z",
            "2026-01-22T25:00:00Z",
            "2026-02-30T00:00:00Z",
            "2027-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2026-01-22T07:26:26+16:00",
            "2026-01-22T07:26:26-23:59",
            "2026-06-30T23:59:60Z",
            "yesterday",
            "2026-01-22T07:26:26.Z",
            "2026-01-22T07:26:26+0800",
            " 2026-01-22T07:26:26Z",
        ] {
            assert!(parse_timestamptz(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_dates_are_imf_fixdates_in_gmt() {
        assert_eq!(
            parse_http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        for bad in [
            "",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn native_clock_is_after_2026() {
        assert!(now_ms() > 1_767_225_600_000);
    }

    proptest! {
        /// Whatever is accepted is canonical: parsing it again gives itself.
        #[test]
        fn accepted_values_are_canonical(
            s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})|\\PC{0,40}"
        ) {
            if let Ok(stored) = parse_timestamptz(&s) {
                prop_assert_eq!(parse_timestamptz(&stored), Ok(stored.clone()));
            }
        }

        #[test]
        fn every_real_instant_in_range_round_trips(
            secs in -62_135_596_800i64..253_402_300_799i64,
            micros in 0u32..1_000_000,
            offset_minutes in -959i32..=959,
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
            let at = DateTime::from_timestamp(secs, micros * 1000).unwrap().with_timezone(&offset);
            prop_assume!(at.year() >= 1 && at.year() <= 9999);
            let text = at.to_rfc3339_opts(SecondsFormat::Micros, false);
            let stored = parse_timestamptz(&text).unwrap();
            prop_assert_eq!(DateTime::parse_from_rfc3339(&stored).unwrap(), at);
        }
    }
}
