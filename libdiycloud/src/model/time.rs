//! Calendar dates, instants and durations, without a clock.
//!
//! Instants are Unix seconds (UTC). The day arithmetic is the proleptic
//! Gregorian "days from civil" algorithm, exact for every date we can meet.

use std::fmt;
use std::str::FromStr;

/// Seconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Timestamp(pub i64);

/// A calendar day, like an account's expiry date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

pub const DATE_RULE: &str = "a date is written YYYY-MM-DD, like 2027-01-31";
pub const DURATION_RULE: &str =
    "a duration is a whole number with a unit s, m, h or d (like 90s, 15m, 2h, 1d), or 0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {rule}")]
pub struct TimeError {
    what: &'static str,
    input: String,
    rule: &'static str,
}

impl TimeError {
    fn new(what: &'static str, input: &str, rule: &'static str) -> Self {
        Self {
            what,
            input: input.chars().take(40).collect(),
            rule,
        }
    }
}

fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

impl Date {
    /// The first second of this day, UTC.
    pub fn start(self) -> Timestamp {
        Timestamp(days_from_civil(self.year, self.month, self.day) * 86_400)
    }
}

impl FromStr for Date {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, TimeError> {
        let err = || TimeError::new("date", s, DATE_RULE);
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let num = |range: std::ops::Range<usize>| -> Result<u32, TimeError> {
            let part = &s[range];
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().map_err(|_| err())
            } else {
                Err(err())
            }
        };
        let (year, month, day) = (num(0..4)? as i32, num(5..7)? as u8, num(8..10)? as u8);
        if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month)
        {
            return Err(err());
        }
        Ok(Date { year, month, day })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Timestamp {
    pub fn date(self) -> Date {
        let (year, month, day) = civil_from_days(self.0.div_euclid(86_400));
        Date {
            year: year as i32,
            month,
            day,
        }
    }

    pub fn plus(self, seconds: u64) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX)),
        )
    }
}

impl From<std::time::SystemTime> for Timestamp {
    /// The entry points read the clock and convert it here; nothing below
    /// them reads it. Times before 1970 become 0.
    fn from(time: std::time::SystemTime) -> Self {
        let secs = time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, like `2026-11-25T22:05:38Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.rem_euclid(86_400);
        write!(
            f,
            "{}T{:02}:{:02}:{:02}Z",
            self.date(),
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// Parses `90s`, `15m`, `2h`, `1d` or `0` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, TimeError> {
    let err = || TimeError::new("duration", s, DURATION_RULE);
    if s == "0" {
        return Ok(0);
    }
    let unit = match s.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err(err()),
    };
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n <= 100 * 365 * 86_400)
        .ok_or_else(err)
}

/// Prints seconds back in the largest exact unit (`900` -> `15m`).
pub fn format_duration(seconds: u64) -> String {
    match seconds {
        0 => "0".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A stretch of time as people say it, rounded down: `40s`, `12m`,
/// `3h 5m`, `2d 4h`.
pub fn format_elapsed(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_time_for_people() {
        assert_eq!(format_elapsed(40), "40s");
        assert_eq!(format_elapsed(12 * 60 + 5), "12m");
        assert_eq!(format_elapsed(3 * 3600 + 5 * 60 + 9), "3h 5m");
        assert_eq!(format_elapsed(2 * 86_400 + 4 * 3600 + 7), "2d 4h");
    }

    #[test]
    fn dates_round_trip_through_timestamps() {
        for s in [
            "1970-01-01",
            "2000-02-29",
            "2026-11-25",
            "2027-01-31",
            "2100-12-31",
        ] {
            let d: Date = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(d.start().date(), d);
            assert_eq!(d.start().plus(86_399).date(), d);
        }
        assert_eq!(
            "1970-01-02".parse::<Date>().unwrap().start(),
            Timestamp(86_400)
        );
        assert_eq!(Timestamp(1_700_000_000).to_string(), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn bad_dates_name_the_format() {
        for s in [
            "2026-13-01",
            "2026-02-29",
            "26-01-01",
            "2026/01/01",
            "2026-1-1",
            "tomorrow",
            "",
            "1969-12-31",
            "2026-01-0x",
        ] {
            let err = s.parse::<Date>().unwrap_err().to_string();
            assert!(err.contains("YYYY-MM-DD"), "{s}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("10m").unwrap(), 600);
        assert_eq!(parse_duration("1d").unwrap(), 86_400);
        assert_eq!(parse_duration("0").unwrap(), 0);
        assert_eq!(format_duration(900), "15m");
        assert_eq!(format_duration(90), "90s");
        for s in ["15", "m", "-1m", "1.5h", "15min", "99999999999999999999d"] {
            assert!(
                parse_duration(s)
                    .unwrap_err()
                    .to_string()
                    .contains("whole number"),
                "{s}"
            );
        }
    }
}
