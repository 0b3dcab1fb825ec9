//! Secret redaction of everything coming back from upstreams: every configured secret value
//! (aho-corasick) and every known secret format (`portcullis-sanitize`'s secret detectors).

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use portcullis_sanitize::{EntityType, PiiConfig, Sanitizer, Strategy, StrategyTable};
use serde_json::Value;

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
    Scan(#[from] portcullis_sanitize::SanitizeError),
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
        let after_values: Cow<'a, str> = match &self.values {
            Some(matcher) if matcher.is_match(text) => Cow::Owned(
                matcher.replace_all(text, &[REDACTED][..].repeat(matcher.patterns_len())),
            ),
            _ => Cow::Borrowed(text),
        };
        let spans = self.detectors.scan(&after_values)?;
        if spans.is_empty() {
            return Ok(after_values);
        }
        let mut res = String::with_capacity(after_values.len());
        let mut last = 0;
        for span in spans {
            if span.start < last {
                continue;
            }
            res.push_str(after_values.get(last..span.start).unwrap_or_default());
            res.push_str(REDACTED);
            last = span.end;
        }
        res.push_str(after_values.get(last..).unwrap_or_default());
        Ok(Cow::Owned(res))
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
    fn json_values_and_keys_are_walked() {
        let redactor = Redactor::new(["s3cr3t-value-xyz"]).unwrap();
        let mut value = json!({"a": ["x s3cr3t-value-xyz", {"s3cr3t-value-xyz": 1}], "n": 3});
        let changed = redactor.redact_value(&mut value).unwrap();
        assert_eq!(changed, 2);
        assert!(!value.to_string().contains("s3cr3t-value-xyz"));
    }
}
