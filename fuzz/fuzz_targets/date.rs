//! Dates (`--expires 2027-01-31`), durations (`fail_interval = "15m"`) and
//! timestamps:
//! - a date that parses is printed back as exactly the text typed (the
//!   format has one spelling per day), and its first second maps back to it;
//! - a duration that parses is at most 100 years, and its canonical text
//!   parses back to the same number of seconds;
//! - any `i64` timestamp prints without panicking; one in years 1970-9999
//!   prints a date that parses and whose day contains the timestamp.
#![deny(unsafe_code)]
#![no_main]

use libdiycloud::model::time::{format_duration, parse_duration};
use libdiycloud::model::{Date, Timestamp};
use libfuzzer_sys::fuzz_target;

const DAY: i64 = 86_400;
/// 10000-01-01T00:00:00Z.
const YEAR_10000: i64 = 253_402_300_800;

fn check_date(input: &str) {
    let Ok(date) = input.parse::<Date>() else {
        return;
    };
    assert_eq!(date.to_string(), input, "a date has a single spelling");
    let again: Date = date.to_string().parse().expect("display re-parses");
    assert_eq!(again, date);
    let start = date.start();
    assert!(start.0 >= 0, "{input}: dates start in 1970");
    assert_eq!(start.0.rem_euclid(DAY), 0, "{input}: start is not midnight");
    assert_eq!(start.date(), date, "{input}: start().date()");
    assert_eq!(
        start.plus(DAY as u64 - 1).date(),
        date,
        "{input}: last second"
    );
    assert!(start.plus(DAY as u64).date() > date, "{input}: next day");
    // Timestamp's RFC 3339 text begins with the date.
    assert_eq!(start.to_string(), format!("{input}T00:00:00Z"));
}

fn check_duration(input: &str) {
    let Ok(seconds) = parse_duration(input) else {
        return;
    };
    assert!(seconds <= 100 * 365 * 86_400, "{input:?} -> {seconds}");
    let shown = format_duration(seconds);
    assert_eq!(
        parse_duration(&shown).ok(),
        Some(seconds),
        "{input:?} -> {shown:?}"
    );
    assert_eq!(format_duration(parse_duration(&shown).unwrap_or(0)), shown);
    // Only "0" or digits followed by one of the units.
    let (digits, unit) = input.split_at(input.len() - 1);
    assert!(
        input == "0"
            || (!digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && matches!(unit, "s" | "m" | "h" | "d")),
        "accepted {input:?}"
    );
}

fn check_timestamp(t: i64) {
    let ts = Timestamp(t);
    let text = ts.to_string();
    let _ = ts.date();
    let _ = ts.plus(u64::MAX);
    if (0..YEAR_10000).contains(&t) {
        assert_eq!(text.len(), 20, "{t} -> {text:?}");
        let date: Date = text[..10]
            .parse()
            .unwrap_or_else(|e| panic!("{t} -> {text:?}: {e}"));
        assert_eq!(date, ts.date());
        assert!(
            date.start() <= ts && ts.0 - date.start().0 < DAY,
            "{t} -> {text}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        check_date(input);
        check_duration(input);
    }
    // The first 8 bytes, as a timestamp, also shifted into the years that
    // matter so that both the sane range and the extremes get exercised.
    let mut raw = [0u8; 8];
    let n = data.len().min(8);
    raw[..n].copy_from_slice(&data[..n]);
    let t = i64::from_le_bytes(raw);
    check_timestamp(t);
    check_timestamp(t.rem_euclid(YEAR_10000));
});
