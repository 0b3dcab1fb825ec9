//! Gate keys (`tools:call:github.create_issue`) and the patterns that match them (`tools:*`).
//!
//! Matching is case-sensitive. A pattern is either an exact key or a prefix followed by one `*`
//! at its very end; there is no other wildcard. Host segments are canonical lower case and IPv6
//! hosts are bracketed (`net:host:[2001:db8::1]`), so a key may contain `:` inside brackets.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest gate key or pattern accepted, in bytes.
pub const MAX_GATE_KEY_LEN: usize = 512;

/// Why a string is not a gate key or pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GateKeyError {
    #[error("gate key is empty")]
    Empty,
    #[error("gate key is longer than {MAX_GATE_KEY_LEN} bytes")]
    TooLong,
    #[error("gate key may contain only printable ASCII without spaces")]
    BadCharacter,
    #[error("gate key has an empty segment")]
    EmptySegment,
    #[error("`*` is allowed only at the end of a pattern")]
    MisplacedWildcard,
    #[error("a gate key cannot contain `*`")]
    WildcardInKey,
}

/// A concrete gate key, always valid.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GateKey(String);

impl GateKey {
    /// Validates `raw` as a concrete key (no `*`).
    pub fn parse(raw: &str) -> Result<Self, GateKeyError> {
        check_chars(raw)?;
        if raw.contains('*') {
            return Err(GateKeyError::WildcardInKey);
        }
        check_segments(raw)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A gate-key pattern: an exact key, or a prefix with a trailing `*`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GatePattern {
    // INVARIANT (one-trailing-star): `raw` contains at most one `*`, and only as its last byte.
    raw: String,
}

impl GatePattern {
    pub fn parse(raw: &str) -> Result<Self, GateKeyError> {
        check_chars(raw)?;
        let body = match raw.strip_suffix('*') {
            Some(prefix) => prefix,
            None => raw,
        };
        if body.contains('*') {
            return Err(GateKeyError::MisplacedWildcard);
        }
        if !body.is_empty() && !raw.ends_with('*') {
            check_segments(body)?;
        }
        // INVARIANT (one-trailing-star): kept by the two checks above.
        Ok(Self {
            raw: raw.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The literal part before a trailing `*`, or the whole key for an exact pattern.
    pub fn prefix(&self) -> &str {
        self.raw.strip_suffix('*').unwrap_or(&self.raw)
    }

    pub fn is_wildcard(&self) -> bool {
        self.raw.ends_with('*')
    }

    /// Case-sensitive match of a concrete key.
    pub fn matches(&self, key: &GateKey) -> bool {
        self.matches_str(key.as_str())
    }

    /// Case-sensitive match of a key given as a string (callers hold a validated key).
    pub fn matches_str(&self, key: &str) -> bool {
        match self.raw.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == self.raw,
        }
    }

    /// True when every key this pattern matches is also matched by `other`.
    pub fn is_within(&self, other: &GatePattern) -> bool {
        match (self.is_wildcard(), other.is_wildcard()) {
            (_, true) => self.prefix().starts_with(other.prefix()),
            (false, false) => self.raw == other.raw,
            (true, false) => false,
        }
    }
}

fn check_chars(raw: &str) -> Result<(), GateKeyError> {
    if raw.is_empty() {
        return Err(GateKeyError::Empty);
    }
    if raw.len() > MAX_GATE_KEY_LEN {
        return Err(GateKeyError::TooLong);
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(GateKeyError::BadCharacter);
    }
    Ok(())
}

/// Segments are separated by `:` outside brackets; none may be empty.
fn check_segments(raw: &str) -> Result<(), GateKeyError> {
    let mut depth = 0u32;
    let mut segment_len = 0usize;
    for b in raw.bytes() {
        match b {
            b'[' => {
                depth += 1;
                segment_len += 1;
            }
            b']' => {
                depth = depth.saturating_sub(1);
                segment_len += 1;
            }
            b':' if depth == 0 => {
                if segment_len == 0 {
                    return Err(GateKeyError::EmptySegment);
                }
                segment_len = 0;
            }
            _ => segment_len += 1,
        }
    }
    if segment_len == 0 {
        return Err(GateKeyError::EmptySegment);
    }
    Ok(())
}

impl fmt::Display for GateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for GatePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for GateKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GateKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        GateKey::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl Serialize for GatePattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for GatePattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        GatePattern::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(pattern: &str, key: &str, expected: bool) {
        let pattern = GatePattern::parse(pattern).unwrap();
        let key = GateKey::parse(key).unwrap();
        assert_eq!(pattern.matches(&key), expected, "{pattern} vs {key}");
    }

    #[test]
    fn exact_and_trailing_wildcard() {
        check("tools:call", "tools:call", true);
        check("tools:call", "tools:call:x", false);
        check("tools:*", "tools:call:x", true);
        check("tools:*", "Tools:call", false);
        check("*", "anything:at:all", true);
        check("net:host:[2001:db8::1]", "net:host:[2001:db8::1]", true);
        check("net:host:api.*", "net:host:api.github.com", true);
    }

    #[test]
    fn refuses_bad_patterns() {
        for bad in [
            "",
            "to*ls",
            "*tools",
            "tools:**",
            "a b",
            "tools::call",
            ":x",
            "x:",
        ] {
            assert!(GatePattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(GateKey::parse("tools:*"), Err(GateKeyError::WildcardInKey));
    }

    #[test]
    fn containment() {
        let p = |s: &str| GatePattern::parse(s).unwrap();
        assert!(p("tools:call:x").is_within(&p("tools:*")));
        assert!(p("tools:call:*").is_within(&p("tools:*")));
        assert!(!p("tools:*").is_within(&p("tools:call:*")));
        assert!(!p("tools:*").is_within(&p("tools:call")));
    }
}
