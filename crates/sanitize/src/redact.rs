//! Secret redaction of what comes back from upstreams and providers: every configured secret
//! value (aho-corasick) and every known secret format (this crate's secret detectors).
//!
//! [`Redactor::redact_from`] serves streams: it reads earlier text as context, redacts only the
//! new part, and can keep secrets the caller itself sent (an LLM echoing the agent's own key).

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

use crate::{EntityType, PiiConfig, Sanitizer, Strategy, StrategyTable};

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED_SECRET]";

/// Longest single string scanned; longer strings are refused (fail closed).
pub const MAX_SCANNED_STRING: usize = 16 << 20;

/// The sanitizer's HMAC key is only used by the `hash` and `synthetic` strategies, which the
/// redactor never selects; a fixed key keeps construction infallible in practice.
const UNUSED_KEY: &[u8; 32] = b"portcullis-redactor-unused-key!!";

/// Why a redactor could not be built or a value could not be proven clean.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("the secret matcher could not be built: {0}")]
    Build(String),
    #[error("a string could not be scanned: {0}")]
    Scan(#[from] crate::SanitizeError),
}

/// Replaces secrets in strings and JSON values. Build once, share freely.
pub struct Redactor {
    values: Option<AhoCorasick>,
    detectors: Sanitizer,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field(
                "values",
                &self.values.as_ref().map(AhoCorasick::patterns_len),
            )
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor for `secret_values` (empty values are ignored) plus the known secret formats.
    pub fn new<I, S>(secret_values: I) -> Result<Self, RedactError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<String> = secret_values
            .into_iter()
            .map(|value| value.as_ref().to_owned())
            .filter(|value| !value.is_empty())
            .collect();
        patterns.sort();
        patterns.dedup();
        let values = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .map_err(|err| RedactError::Build(err.to_string()))?,
            )
        };
        let config = PiiConfig {
            max_input_bytes: MAX_SCANNED_STRING,
            max_findings: usize::MAX / 2,
            detectors: vec![EntityType::Secret],
            strategies: StrategyTable::uniform(Strategy::Redact),
        };
        let detectors = Sanitizer::new(config, UNUSED_KEY)
            .map_err(|err| RedactError::Build(err.to_string()))?;
        Ok(Self { values, detectors })
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn redact_str<'a>(&self, text: &'a str) -> Result<Cow<'a, str>, RedactError> {
        let (redacted, n_redacted) = self.redact_from(text, 0, &|_| false)?;
        if n_redacted == 0 {
            return Ok(Cow::Borrowed(text));
        }
        Ok(Cow::Owned(redacted))
    }

    /// `text[from..]` with its secrets replaced by [`REDACTED`], and how many were replaced.
    /// `text[..from]` is read as context only (a name such as `aws_secret_access_key =` before a
    /// value), so a stream can pass the tail of what it already sent. A detected secret for which
    /// `keep` answers true stays (the caller sent it itself); configured values never stay. A
    /// secret that starts before `from` is redacted from `from` on.
    pub fn redact_from(
        &self,
        text: &str,
        from: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(String, usize), RedactError> {
        let mut cuts: Vec<(usize, usize)> = Vec::new();
        if let Some(matcher) = &self.values {
            cuts.extend(matcher.find_iter(text).map(|m| (m.start(), m.end())));
        }
        for span in self.detectors.scan(text)? {
            let value = text.get(span.start..span.end).unwrap_or_default();
            if !keep(value) {
                cuts.push((span.start, span.end));
            }
        }
        cuts.retain(|(_, end)| *end > from);
        cuts.sort_unstable();
        let tail = text.get(from..).unwrap_or_default();
        if cuts.is_empty() {
            return Ok((tail.to_owned(), 0));
        }
        let mut res = String::with_capacity(tail.len());
        let mut cursor = from;
        let mut n_redacted = 0;
        for (start, end) in cuts {
            let start = start.max(from);
            if end <= cursor {
                continue;
            }
            if start >= cursor {
                res.push_str(text.get(cursor..start).unwrap_or_default());
                res.push_str(REDACTED);
                n_redacted += 1;
            }
            // INVARIANT (char-boundaries): detector spans and aho-corasick matches of valid UTF-8
            // patterns end on char boundaries, and `from` is one (the caller cuts there).
            cursor = end;
        }
        res.push_str(text.get(cursor..).unwrap_or_default());
        Ok((res, n_redacted))
    }

    /// Redacts every string (and object key) in `value` in place; returns how many strings
    /// changed.
    pub fn redact_value(&self, value: &mut Value) -> Result<usize, RedactError> {
        let mut changed = 0;
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(text) => {
                    if let Cow::Owned(redacted) = self.redact_str(text)? {
                        *text = redacted;
                        changed += 1;
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(object) => {
                    let keys_dirty = object
                        .keys()
                        .map(|key| self.redact_str(key).map(|k| matches!(k, Cow::Owned(_))))
                        .collect::<Result<Vec<bool>, _>>()?
                        .into_iter()
                        .any(|dirty| dirty);
                    if keys_dirty {
                        let old = std::mem::take(object);
                        for (key, item) in old {
                            let key = self.redact_str(&key)?.into_owned();
                            object.insert(key, item);
                        }
                        changed += 1;
                    }
                    stack.extend(object.values_mut());
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn configured_values_and_known_formats_are_redacted() {
        let redactor = Redactor::new(["hunter2-very-secret", ""]).unwrap();
        assert_eq!(
            redactor.redact_str("pw=hunter2-very-secret!").unwrap(),
            "pw=[REDACTED_SECRET]!"
        );
        let aws = "key AKIAIOSFODNN7EXAMPLE end";
        let out = redactor.redact_str(aws).unwrap();
        assert!(!out.contains("AKIAIOSFODNN7EXAMPLE"), "{out}");
        assert_eq!(redactor.redact_str("nothing here").unwrap(), "nothing here");
    }

    #[test]
    fn redact_from_reads_context_and_keeps_own_values() {
        let redactor = Redactor::new(["configured-secret-1"]).unwrap();
        let own = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
        let foreign = "ghp_ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210";
        let text = format!("a {own} b {foreign} configured-secret-1");
        let (out, n) = redactor.redact_from(&text, 0, &|v| v == own).unwrap();
        assert_eq!(
            out,
            format!("a {own} b [REDACTED_SECRET] [REDACTED_SECRET]")
        );
        assert_eq!(n, 2);
        // Context before `from` is read but not returned.
        let text = format!("prefix {foreign}");
        let (out, n) = redactor.redact_from(&text, 7, &|_| false).unwrap();
        assert_eq!((out.as_str(), n), ("[REDACTED_SECRET]", 1));
        let (out, _) = redactor.redact_from("plain words", 6, &|_| false).unwrap();
        assert_eq!(out, "words");
    }

    #[test]
    fn json_values_and_keys_are_walked() {
        let redactor = Redactor::new(["s3cr3t-value-xyz"]).unwrap();
        let mut value = json!({"a": ["x s3cr3t-value-xyz", {"s3cr3t-value-xyz": 1}], "n": 3});
        let changed = redactor.redact_value(&mut value).unwrap();
        assert_eq!(changed, 2);
        assert!(!value.to_string().contains("s3cr3t-value-xyz"));
    }
}
