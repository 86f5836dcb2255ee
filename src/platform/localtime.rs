//! The platform writes times in its local zone with no offset (`2018-10-12 18:46:55`, or ISO
//! `2018-10-02T16:54:08` from the REST API). They are read in the account's offset and kept as UTC.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

const LOCAL_FORMATS: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"];

/// `None` when the text is not a time the platform is known to send.
pub fn parse_platform_time(text: &str, offset: FixedOffset) -> Option<DateTime<Utc>> {
    let text = text.trim();
    // Some deployments already send a zone; honour it rather than the account's offset.
    if let Ok(zoned) = DateTime::parse_from_rfc3339(text) {
        return Some(zoned.with_timezone(&Utc));
    }
    LOCAL_FORMATS.iter().find_map(|format| {
        let naive = NaiveDateTime::parse_from_str(text, format).ok()?;
        offset.from_local_datetime(&naive).single().map(|t| t.with_timezone(&Utc))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beijing() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn platform_local_time_is_read_in_the_account_offset() {
        assert_eq!(parse_platform_time("2018-10-12 18:46:55", beijing()), Some(utc("2018-10-12T10:46:55Z")));
        let new_york = FixedOffset::west_opt(5 * 3600).unwrap();
        assert_eq!(parse_platform_time("2018-10-12 18:46:55", new_york), Some(utc("2018-10-12T23:46:55Z")));
    }

    #[test]
    fn iso_without_zone_and_fractions_are_accepted() {
        assert_eq!(parse_platform_time("2018-10-02T16:54:08", beijing()), Some(utc("2018-10-02T08:54:08Z")));
        assert_eq!(parse_platform_time("2018-10-02 16:54:08.250", beijing()), Some(utc("2018-10-02T08:54:08.250Z")));
    }

    #[test]
    fn an_explicit_zone_wins_over_the_account_offset() {
        assert_eq!(parse_platform_time("2018-10-02T16:54:08+02:00", beijing()), Some(utc("2018-10-02T14:54:08Z")));
    }

    #[test]
    fn garbage_is_not_a_time() {
        for text in ["", "yesterday", "2018-13-01 00:00:00", "2018-10-02", "1538470448"] {
            assert_eq!(parse_platform_time(text, beijing()), None, "{text}");
        }
    }
}
