//! Window arithmetic tests: local midnights, DST days, month ends, rolling blocks.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use jiff::civil::date;
use proptest::prelude::*;

use super::*;

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap()
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[track_caller]
fn check(window: Window, zone_name: &str, now: &str, key: &str, resets_at: Option<&str>) {
    let got = span(window, &zone(zone_name), ts(now)).unwrap();
    assert_eq!(got.key, key, "{window} {zone_name} {now}");
    assert_eq!(
        got.resets_at,
        resets_at.map(ts),
        "{window} {zone_name} {now}"
    );
}

#[test]
fn day_rolls_at_local_midnight_of_the_zone() {
    // 23:30 UTC is already the next day in Berlin (UTC+1 in winter).
    check(
        Window::Day,
        "UTC",
        "2026-01-15T23:30:00Z",
        "day:2026-01-15",
        Some("2026-01-16T00:00:00Z"),
    );
    check(
        Window::Day,
        "Europe/Berlin",
        "2026-01-15T22:59:59Z",
        "day:2026-01-15",
        Some("2026-01-15T23:00:00Z"),
    );
    check(
        Window::Day,
        "Europe/Berlin",
        "2026-01-15T23:00:00Z",
        "day:2026-01-16",
        Some("2026-01-16T23:00:00Z"),
    );
    check(
        Window::Day,
        "America/New_York",
        "2026-01-16T04:59:59Z",
        "day:2026-01-15",
        Some("2026-01-16T05:00:00Z"),
    );
}

#[test]
fn dst_days_are_23_and_25_hours_long() {
    // Berlin springs forward on 2026-03-29 (midnight at 23:00Z the day before, next at 22:00Z).
    let spring = span(
        Window::Day,
        &zone("Europe/Berlin"),
        ts("2026-03-29T12:00:00Z"),
    )
    .unwrap();
    assert_eq!(spring.key, "day:2026-03-29");
    assert_eq!(spring.resets_at, Some(ts("2026-03-29T22:00:00Z")));
    let start = start_of(&zone("Europe/Berlin"), date(2026, 3, 29)).unwrap();
    assert_eq!(start, ts("2026-03-28T23:00:00Z"));
    assert_eq!(
        spring.resets_at.unwrap().duration_since(start).as_hours(),
        23
    );
    // New York falls back on 2026-11-01: a 25-hour day.
    let fall = span(
        Window::Day,
        &zone("America/New_York"),
        ts("2026-11-01T12:00:00Z"),
    )
    .unwrap();
    let start = start_of(&zone("America/New_York"), date(2026, 11, 1)).unwrap();
    assert_eq!(start, ts("2026-11-01T04:00:00Z"));
    assert_eq!(fall.resets_at, Some(ts("2026-11-02T05:00:00Z")));
    // The last second before the reset is still the DST day; the reset itself is the next day.
    check(
        Window::Day,
        "America/New_York",
        "2026-11-02T04:59:59Z",
        "day:2026-11-01",
        Some("2026-11-02T05:00:00Z"),
    );
    check(
        Window::Day,
        "America/New_York",
        "2026-11-02T05:00:00Z",
        "day:2026-11-02",
        Some("2026-11-03T05:00:00Z"),
    );
}

#[test]
fn a_day_whose_midnight_is_skipped_starts_at_the_first_real_instant() {
    // Santiago skips 00:00-01:00 local when DST starts (2026-09-06): the day starts at 01:00
    // local (-03), which is 04:00Z, right where the previous day (at -04) ended.
    let start = start_of(&zone("America/Santiago"), date(2026, 9, 6)).unwrap();
    assert_eq!(start, ts("2026-09-06T04:00:00Z"));
    check(
        Window::Day,
        "America/Santiago",
        "2026-09-06T03:59:59Z",
        "day:2026-09-05",
        Some("2026-09-06T04:00:00Z"),
    );
}

#[test]
fn month_rolls_at_local_midnight_of_the_first() {
    check(
        Window::Month,
        "Europe/Berlin",
        "2026-01-31T22:59:59Z",
        "month:2026-01",
        Some("2026-01-31T23:00:00Z"),
    );
    check(
        Window::Month,
        "Europe/Berlin",
        "2026-01-31T23:00:00Z",
        "month:2026-02",
        Some("2026-02-28T23:00:00Z"),
    );
    // Over the spring-forward change the next first is an hour earlier in UTC.
    check(
        Window::Month,
        "Europe/Berlin",
        "2026-03-15T00:00:00Z",
        "month:2026-03",
        Some("2026-03-31T22:00:00Z"),
    );
    let got = span(Window::Month, &zone("UTC"), ts("2026-03-15T10:00:00Z")).unwrap();
    assert_eq!(
        got.days,
        DayRange::Days {
            first: date(2026, 3, 1),
            last: date(2026, 3, 15)
        }
    );
}

#[test]
fn rolling_window_covers_thirty_days_and_keys_by_block() {
    let got = span(Window::Rolling30d, &zone("UTC"), ts("2026-03-15T10:00:00Z")).unwrap();
    assert_eq!(
        got.days,
        DayRange::Days {
            first: date(2026, 2, 14),
            last: date(2026, 3, 15)
        }
    );
    assert_eq!(got.resets_at, Some(ts("2026-03-16T00:00:00Z")));
    // 2026-03-15 is day 20527 since 1970-01-01; its block (684 * 30 = 20520) starts 2026-03-08.
    assert_eq!(got.key, "rolling_30d:2026-03-08");
    let before = span(Window::Rolling30d, &zone("UTC"), ts("2026-03-07T23:59:59Z")).unwrap();
    assert_eq!(before.key, "rolling_30d:2026-02-06");
}

#[test]
fn lifetime_never_resets() {
    let got = span(Window::Lifetime, &zone("UTC"), ts("2026-03-15T10:00:00Z")).unwrap();
    assert_eq!(
        (got.key.as_str(), got.days, got.resets_at),
        ("lifetime", DayRange::Lifetime, None)
    );
}

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
];

proptest! {
    #[test]
    fn now_lies_in_its_day_and_the_reset_starts_the_next(
        secs in 0i64..4_102_444_800, zone_idx in 0..ZONES.len()
    ) {
        let zone = zone(ZONES[zone_idx]);
        let now = Timestamp::from_second(secs).unwrap();
        let got = span(Window::Day, &zone, now).unwrap();
        let start = start_of(&zone, got.today).unwrap();
        let reset = got.resets_at.unwrap();
        prop_assert!(start <= now && now < reset);
        // The reset instant belongs to the next day, and the day just before it to today.
        prop_assert_eq!(day_of(&zone, reset), got.today.tomorrow().unwrap());
        prop_assert_eq!(day_of(&zone, reset - jiff::SignedDuration::from_secs(1)), got.today);
        let hours = reset.duration_since(start).as_secs();
        prop_assert!((22 * 3600..=26 * 3600).contains(&hours));
        for window in [Window::Month, Window::Rolling30d] {
            let got = span(window, &zone, now).unwrap();
            prop_assert!(got.days.contains(got.today));
            prop_assert!(got.resets_at.unwrap() > now);
        }
    }
}
