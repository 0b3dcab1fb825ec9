//! Correlation ids: one per request, echoed back and written on every event.

use std::fmt;

/// Longest correlation id accepted from a client.
pub const MAX_CORRELATION_ID_LEN: usize = 128;

/// A request's correlation id: either the client's `X-Request-Id` (when valid) or generated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// A fresh random id (UUID v4).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts a client-supplied id when it is 1..=128 characters of `[A-Za-z0-9._:-]`.
    pub fn parse(raw: &str) -> Option<Self> {
        let valid = !raw.is_empty()
            && raw.len() <= MAX_CORRELATION_ID_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        valid.then(|| Self(raw.to_owned()))
    }

    /// Uses the client's id when valid, else generates one.
    pub fn from_header_or_generate(raw: Option<&str>) -> Self {
        raw.and_then(Self::parse).unwrap_or_else(Self::generate)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_odd_ones() {
        assert!(CorrelationId::parse("req-1.a_b:c").is_some());
        assert!(CorrelationId::parse("").is_none());
        assert!(CorrelationId::parse("has space").is_none());
        assert!(CorrelationId::parse("line\nbreak").is_none());
        assert!(CorrelationId::parse(&"a".repeat(129)).is_none());
        assert_eq!(
            CorrelationId::from_header_or_generate(Some("bad id"))
                .as_str()
                .len(),
            36
        );
    }
}
