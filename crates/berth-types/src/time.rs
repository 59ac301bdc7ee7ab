//! Timestamps in the form Go programs print them.
//!
//! Docker, containerd and skopeo write times with Go's `time.RFC3339Nano`, which drops
//! trailing zeros from the fraction. An image config is content-addressed, so a timestamp that
//! prints differently gives a different image ID once a Go tool re-encodes the config: berth
//! must print exactly what Go would.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// `t` as Go's `time.RFC3339Nano` prints it: nanoseconds without trailing zeros, `Z` for UTC.
pub fn rfc3339_nano<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let full = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let Some(dot) = full.find('.') else {
        return full;
    };
    let digits_end = full[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(full.len(), |i| dot + 1 + i);
    let fraction = full[dot + 1..digits_end].trim_end_matches('0');
    let zone = &full[digits_end..];
    if fraction.is_empty() {
        format!("{}{zone}", &full[..dot])
    } else {
        format!("{}.{fraction}{zone}", &full[..dot])
    }
}

/// The current time, UTC, in Go's `time.RFC3339Nano` form.
pub fn now_rfc3339_nano() -> String {
    rfc3339_nano(&Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_go() {
        let t = |s: &str| rfc3339_nano(&DateTime::parse_from_rfc3339(s).unwrap());
        assert_eq!(
            t("2024-01-02T03:04:05.120000000Z"),
            "2024-01-02T03:04:05.12Z"
        );
        assert_eq!(t("2024-01-02T03:04:05.000000000Z"), "2024-01-02T03:04:05Z");
        assert_eq!(
            t("2024-01-02T03:04:05.123456789Z"),
            "2024-01-02T03:04:05.123456789Z"
        );
        assert_eq!(
            t("2024-01-02T03:04:05.10+02:00"),
            "2024-01-02T03:04:05.1+02:00"
        );
        assert_eq!(t("2024-01-02T03:04:05Z"), "2024-01-02T03:04:05Z");
        let now = now_rfc3339_nano();
        assert!(now.ends_with('Z') && !now.contains("0Z"), "{now}");
    }
}
