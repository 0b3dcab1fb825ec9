//! Window arithmetic: which days a window covers at `now`, its alert key and its reset time.
//!
//! Spend is kept in buckets of one calendar day in the configured zone; every window is a range
//! of those days (or all of them, for `lifetime`):
//! - `day`: today, resetting at the next local midnight;
//! - `month`: the first of this month through today, resetting at local midnight of the first
//!   of next month;
//! - `rolling_30d`: today and the 29 days before, the oldest day leaving at the next local
//!   midnight;
//! - `lifetime`: every day, never resetting.
//!
//! Local midnight is found with jiff's compatible disambiguation: on a day whose midnight falls
//! in a DST gap the day starts at the first instant that exists, so a day is 23, 24 or 25 hours
//! long and no instant belongs to two days.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::config::Window;

/// Days in a `rolling_30d` window, today included.
pub const ROLLING_DAYS: i32 = 30;

/// The days a window covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DayRange {
    /// `first..=last`, both calendar days in the configured zone.
    Days { first: Date, last: Date },
    /// Every day ever recorded.
    Lifetime,
}

/// A window as seen at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSpan {
    /// Which window this is, stable for as long as the window lasts: `day:2026-03-08`,
    /// `month:2026-03`, `rolling_30d:2026-02-19` (the 30-day block since 1970-01-01 that holds
    /// today, named by its first day), `lifetime`. Alert tiers fire once per key.
    pub key: String,
    /// The days whose spend counts.
    pub days: DayRange,
    /// Today in the configured zone: the bucket new spend goes to.
    pub today: Date,
    /// When the window next resets (`rolling_30d`: when its oldest day leaves); `None` for
    /// `lifetime`.
    pub resets_at: Option<Timestamp>,
}

/// Why a window could not be computed (only at the edges of jiff's supported range).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("time {now} is outside the supported calendar range")]
pub struct WindowError {
    pub now: Timestamp,
}

/// The calendar day of `now` in `zone`.
pub fn day_of(zone: &TimeZone, now: Timestamp) -> Date {
    now.to_zoned(zone.clone()).date()
}

/// The start (local midnight, or the first instant after a DST gap) of `day` in `zone`.
pub fn start_of(zone: &TimeZone, day: Date) -> Result<Timestamp, jiff::Error> {
    Ok(day.to_zoned(zone.clone())?.start_of_day()?.timestamp())
}

/// The span of `window` at `now` in `zone`.
pub fn span(window: Window, zone: &TimeZone, now: Timestamp) -> Result<WindowSpan, WindowError> {
    let fail = |_| WindowError { now };
    let today = day_of(zone, now);
    let tomorrow = today.tomorrow().map_err(fail)?;
    let res = match window {
        Window::Day => WindowSpan {
            key: format!("day:{today}"),
            days: DayRange::Days {
                first: today,
                last: today,
            },
            today,
            resets_at: Some(start_of(zone, tomorrow).map_err(fail)?),
        },
        Window::Month => {
            let first = today.first_of_month();
            let next = first.checked_add(1.month()).map_err(fail)?;
            WindowSpan {
                key: format!("month:{:04}-{:02}", today.year(), today.month()),
                days: DayRange::Days { first, last: today },
                today,
                resets_at: Some(start_of(zone, next).map_err(fail)?),
            }
        }
        Window::Rolling30d => {
            let first = today.checked_sub((ROLLING_DAYS - 1).days()).map_err(fail)?;
            WindowSpan {
                key: format!("rolling_30d:{}", block_start(today).map_err(fail)?),
                days: DayRange::Days { first, last: today },
                today,
                resets_at: Some(start_of(zone, tomorrow).map_err(fail)?),
            }
        }
        Window::Lifetime => WindowSpan {
            key: "lifetime".to_owned(),
            days: DayRange::Lifetime,
            today,
            resets_at: None,
        },
    };
    Ok(res)
}

impl DayRange {
    /// Whether `day` lies in the range.
    pub fn contains(&self, day: Date) -> bool {
        match self {
            DayRange::Days { first, last } => *first <= day && day <= *last,
            DayRange::Lifetime => true,
        }
    }
}

/// The first day of the fixed 30-day block (counted from 1970-01-01) that holds `day`.
fn block_start(day: Date) -> Result<Date, jiff::Error> {
    let epoch = Date::constant(1970, 1, 1);
    let since = epoch.until(day)?.get_days();
    let offset = since.rem_euclid(ROLLING_DAYS);
    day.checked_sub(offset.days())
}

#[cfg(test)]
mod tests;
