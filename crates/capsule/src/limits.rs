//! `CapsuleLimits`: the time limits the gateway reads from its `[capsules]` config section.

use serde::{Deserialize, Deserializer};

/// Time limits applied at verification. Deserialized from the `[capsules]` config section; every key
/// is optional, durations are strings like `"90s"`, `"15m"`, `"12h"`, `"7d"` or integer seconds.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `max_ttl` | `"7d"` | longest `ttl` a capsule may carry |
/// | `max_age` | `"30d"` | oldest `iat` accepted, measured from now |
/// | `skew` | `"60s"` | how far `iat` may lie in the future |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapsuleLimits {
    #[serde(rename = "max_ttl", deserialize_with = "duration_secs")]
    pub max_ttl_secs: u64,
    #[serde(rename = "max_age", deserialize_with = "duration_secs")]
    pub max_age_secs: u64,
    #[serde(rename = "skew", deserialize_with = "duration_secs")]
    pub skew_secs: u64,
}

impl CapsuleLimits {
    pub const DEFAULT_MAX_TTL_SECS: u64 = 7 * 86_400;
    pub const DEFAULT_MAX_AGE_SECS: u64 = 30 * 86_400;
    pub const DEFAULT_SKEW_SECS: u64 = 60;
}

impl Default for CapsuleLimits {
    fn default() -> Self {
        Self {
            max_ttl_secs: Self::DEFAULT_MAX_TTL_SECS,
            max_age_secs: Self::DEFAULT_MAX_AGE_SECS,
            skew_secs: Self::DEFAULT_SKEW_SECS,
        }
    }
}

/// Longest duration accepted anywhere in the limits: 10 years.
const MAX_DURATION_SECS: u64 = 10 * 365 * 86_400;

fn duration_secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    let secs = match Raw::deserialize(deserializer)? {
        Raw::Secs(secs) => Some(secs),
        Raw::Text(text) => parse_duration(&text),
    };
    secs.filter(|secs| *secs <= MAX_DURATION_SECS)
        .ok_or_else(|| {
            serde::de::Error::custom(
                "expected a duration like `90s`, `15m`, `12h`, `7d` (at most 10 years)",
            )
        })
}

/// `<digits><unit>` with unit `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at_checked(unit_at)?;
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    let count: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    count.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Option<u64>) {
        assert_eq!(parse_duration(text), expected, "{text:?}");
    }

    #[test]
    fn durations() {
        check("90s", Some(90));
        check("15m", Some(900));
        check("12h", Some(43_200));
        check("7d", Some(604_800));
        check("7", None);
        check("d", None);
        check("1.5h", None);
        check("-1s", None);
        check("1w", None);
        check("1h30m", None);
    }

    #[test]
    fn deserializes_with_defaults_and_refuses_unknown_keys() {
        let limits: CapsuleLimits = serde_json::from_str(r#"{"max_ttl":"1d","skew":30}"#).unwrap();
        assert_eq!(
            limits,
            CapsuleLimits {
                max_ttl_secs: 86_400,
                max_age_secs: CapsuleLimits::DEFAULT_MAX_AGE_SECS,
                skew_secs: 30,
            }
        );
        assert!(serde_json::from_str::<CapsuleLimits>(r#"{"max_tll":"1d"}"#).is_err());
        assert!(serde_json::from_str::<CapsuleLimits>(r#"{"skew":"soon"}"#).is_err());
        let from_toml: CapsuleLimits = toml::from_str("max_ttl = \"2h\"\nskew = 30\n").unwrap();
        assert_eq!((from_toml.max_ttl_secs, from_toml.skew_secs), (7_200, 30));
        assert!(toml::from_str::<CapsuleLimits>("skew = -1\n").is_err());
        let defaults: CapsuleLimits = serde_json::from_str("{}").unwrap();
        assert_eq!(defaults, CapsuleLimits::default());
    }
}
