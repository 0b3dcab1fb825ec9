//! Durations in configuration: strings like `"15m"`, `"10s"` or `"1h 30m"`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration written as a friendly string (`"30s"`, `"15m"`, `"1h 30m"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(Duration);

impl ConfigDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn as_std(self) -> Duration {
        self.0
    }
}

impl FromStr for ConfigDuration {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let signed = jiff::SignedDuration::from_str(raw.trim())
            .map_err(|_| format!("`{raw}` is not a duration like `30s`, `15m` or `1h 30m`"))?;
        Duration::try_from(signed)
            .map(Self)
            .map_err(|_| format!("`{raw}` must not be negative"))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::SignedDuration::try_from(self.0) {
            Ok(signed) => write!(f, "{signed:#}"),
            Err(_) => write!(f, "{}s", self.0.as_secs()),
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ConfigDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as \"30s\", \"15m\" or \"1h 30m\".",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_friendly_durations() {
        assert_eq!("30s".parse(), Ok(ConfigDuration::from_secs(30)));
        assert_eq!("15m".parse(), Ok(ConfigDuration::from_secs(900)));
        assert_eq!("1h 30m".parse(), Ok(ConfigDuration::from_secs(5400)));
        assert!("-5s".parse::<ConfigDuration>().is_err());
        assert!("soon".parse::<ConfigDuration>().is_err());
        assert_eq!(ConfigDuration::from_secs(90).to_string(), "1m 30s");
    }
}
