//! Thresholds of a limit: alert tiers (70% info, 85% warning, 95% critical), the soft throttle,
//! the session pause at 95%, and the hard stop past 100%.
//!
//! Percentages compare exactly in integers: `used` reaches `p` percent of `limit` when
//! `used * 100 >= p * limit`. A limit of 0 is reached by anything, and passed by any use.

/// Percent at which new sessions in a scope are paused.
pub const PAUSE_AT: u8 = 95;

/// An alert tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertTier {
    /// 70%.
    Info,
    /// 85%.
    Warning,
    /// 95%.
    Critical,
}

/// What a reservation moving a counter from `before` to `after` means.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assessment {
    /// Tiers reached by `after` and not by `before`, lowest first.
    pub crossed: Vec<AlertTier>,
    /// `after` is at or over `throttle_at`.
    pub throttle: bool,
    /// `after` is at or over 95%: new sessions in the scope pause.
    pub pause: bool,
    /// `after` passes the limit: the hard stop (refused in `enforce` mode).
    pub exceeded: bool,
}

impl AlertTier {
    pub const ALL: [AlertTier; 3] = [AlertTier::Info, AlertTier::Warning, AlertTier::Critical];

    /// The percent of the limit that fires this tier.
    pub const fn percent(self) -> u8 {
        match self {
            AlertTier::Info => 70,
            AlertTier::Warning => 85,
            AlertTier::Critical => 95,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            AlertTier::Info => "info",
            AlertTier::Warning => "warning",
            AlertTier::Critical => "critical",
        }
    }

    /// The tier named `name` (`info`, `warning`, `critical`).
    pub fn parse(name: &str) -> Option<AlertTier> {
        AlertTier::ALL
            .into_iter()
            .find(|tier| tier.as_str() == name)
    }
}

/// Whether `used` is at or over `percent` percent of `limit`.
pub fn reached(limit: u64, used: u64, percent: u8) -> bool {
    u128::from(used) * 100 >= u128::from(percent) * u128::from(limit)
}

/// The tiers `used` has reached, lowest first. An alert path that marks each of them fired
/// (the store answers whether it is the first time) fires every tier exactly once per window,
/// even when a budget is added above a tier's threshold.
pub fn tiers_reached(limit: u64, used: u64) -> Vec<AlertTier> {
    AlertTier::ALL
        .into_iter()
        .filter(|tier| reached(limit, used, tier.percent()))
        .collect()
}

/// Assesses a counter moving from `before` to `after` (spent + reserved, without and with the
/// request) against `limit`.
pub fn assess(limit: u64, before: u64, after: u64, throttle_at: u8) -> Assessment {
    Assessment {
        crossed: AlertTier::ALL
            .into_iter()
            .filter(|tier| {
                !reached(limit, before, tier.percent()) && reached(limit, after, tier.percent())
            })
            .collect(),
        throttle: reached(limit, after, throttle_at),
        pause: reached(limit, after, PAUSE_AT),
        exceeded: after > limit,
    }
}

/// `used` as a whole percent of `limit`, rounded down (saturating; a zero limit is 100% once
/// anything is used and 0% before).
pub fn percent(limit: u64, used: u64) -> u64 {
    if limit == 0 {
        return if used == 0 { 0 } else { 100 };
    }
    u64::try_from(u128::from(used) * 100 / u128::from(limit)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[track_caller]
    fn check(before: u64, after: u64, crossed: &[AlertTier], throttle: bool, pause: bool) {
        let got = assess(1000, before, after, 80);
        assert_eq!(got.crossed, crossed, "{before}->{after}");
        assert_eq!(
            (got.throttle, got.pause, got.exceeded),
            (throttle, pause, after > 1000)
        );
    }

    #[test]
    fn tiers_fire_when_crossed() {
        use AlertTier::*;
        check(0, 699, &[], false, false);
        check(0, 700, &[Info], false, false);
        check(700, 800, &[], true, false);
        check(699, 850, &[Info, Warning], true, false);
        check(850, 950, &[Critical], true, true);
        check(0, 1000, &[Info, Warning, Critical], true, true);
        check(950, 1001, &[], true, true);
        check(1001, 2000, &[], true, true);
    }

    #[test]
    fn zero_limit_is_reached_at_once() {
        assert!(assess(0, 0, 0, 80).throttle);
        assert!(!assess(0, 0, 0, 80).exceeded);
        assert!(assess(0, 0, 1, 80).exceeded);
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(0, 5), 100);
        assert_eq!(percent(1000, 855), 85);
        assert_eq!(percent(1, u64::MAX), u64::MAX);
    }

    proptest! {
        #[test]
        fn crossed_tiers_are_reached_after_and_not_before(
            limit in 0u64..10_000, before in 0u64..20_000, extra in 0u64..20_000, at in 1u8..=100
        ) {
            let after = before + extra;
            let got = assess(limit, before, after, at);
            let reached_after = tiers_reached(limit, after);
            let reached_before = tiers_reached(limit, before);
            for tier in &got.crossed {
                prop_assert!(reached_after.contains(tier) && !reached_before.contains(tier));
            }
            prop_assert_eq!(got.crossed.len() + reached_before.len(), reached_after.len());
            prop_assert_eq!(got.exceeded, after > limit);
            // Every tier below a reached one is reached too.
            prop_assert_eq!(&reached_after[..], &AlertTier::ALL[..reached_after.len()]);
            if got.pause { prop_assert!(reached_after.contains(&AlertTier::Critical)); }
        }
    }
}
