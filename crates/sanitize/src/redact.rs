//! Secret redaction: every secret Portcullis holds (configured values by aho-corasick, its own
//! token format `pcl_agent_...`/`pcl_admin_...`, and tokens known only by their SHA-256) and,
//! on what comes back from upstreams and providers, every known secret format (this crate's
//! secret detectors).
//!
//! [`Redactor::redact_from`] serves streams: it reads earlier text as context, redacts only the
//! new part, and can keep secrets the caller itself sent (an LLM echoing the agent's own key).
//! [`Redactor::redact_held_value`] serves requests: it redacts only what Portcullis holds, so
//! other secret formats meet the sanitizer's strategy instead.
//!
//! A configured value is also found in its common encodings ([`encodings`]: ASCII case-folded,
//! hex, base64 standard and URL-safe at each of the three byte alignments) and, in JSON, split
//! across adjacent text blocks of one array (strings, or objects' `text`).

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use regex::Regex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::json::distinct_key;
use crate::{EntityType, PiiConfig, Sanitizer, Strategy, StrategyTable};

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED_SECRET]";

/// Longest single string scanned; longer strings are refused (fail closed).
pub const MAX_SCANNED_STRING: usize = 16 << 20;

/// The sanitizer's HMAC key is only used by the `hash` and `synthetic` strategies, which the
/// redactor never selects; a fixed key keeps construction infallible in practice.
const UNUSED_KEY: &[u8; 32] = b"portcullis-redactor-unused-key!!";

/// The prefixes of the tokens Portcullis issues (agents, the generated admin token), followed
/// by URL-safe base64. A run of at least 16 such characters after a prefix is redacted.
pub const TOKEN_PREFIXES: &[&str] = &["pcl_agent_", "pcl_admin_"];

/// Shortest encoded form of a configured value that is matched (shorter ones would redact
/// ordinary text).
pub const MIN_ENCODED_LEN: usize = 8;

/// The forms a configured `value` is matched in (besides itself, and every form ASCII
/// case-insensitively): hex, and for base64 standard and URL-safe at byte offsets 0, 1 and 2
/// the characters that depend on the value's bytes alone, so the value is found inside any
/// longer encoded blob. Forms shorter than [`MIN_ENCODED_LEN`] are left out.
pub fn encodings(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut res: Vec<String> = vec![bytes.iter().map(|b| format!("{b:02x}")).collect()];
    for alignment in 0..3usize {
        let mut padded = vec![0u8; alignment];
        padded.extend_from_slice(bytes);
        // Character i covers bits [6i, 6i + 6); it depends on the value alone when those bits
        // lie within bytes [alignment, alignment + len).
        let start = (8 * alignment).div_ceil(6);
        let end = 8 * (alignment + bytes.len()) / 6;
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&padded);
            if let Some(stable) = encoded.get(start..end) {
                res.push(stable.to_owned());
            }
        }
    }
    res.retain(|form| form.len() >= MIN_ENCODED_LEN);
    res.sort();
    res.dedup();
    res
}

/// Shortest run checked against the token hashes ([`Redactor::with_token_hashes`]).
pub const MIN_HASHED_TOKEN: usize = 8;
/// Longest run checked against the token hashes (the gateway reads no longer bearer token).
pub const MAX_HASHED_TOKEN: usize = 512;

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
    own_tokens: Regex,
    token_hashes: Vec<[u8; 32]>,
    detectors: Sanitizer,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field(
                "values",
                &self.values.as_ref().map(AhoCorasick::patterns_len),
            )
            .field("token_hashes", &self.token_hashes.len())
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
        let mut patterns: Vec<String> = Vec::new();
        for value in secret_values {
            let value = value.as_ref();
            if value.is_empty() {
                continue;
            }
            patterns.push(value.to_owned());
            patterns.extend(encodings(value));
        }
        patterns.sort();
        patterns.dedup();
        let values = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .ascii_case_insensitive(true)
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
        let prefixes: Vec<String> = TOKEN_PREFIXES.iter().map(|p| regex::escape(p)).collect();
        let own_tokens = Regex::new(&format!("(?:{})[A-Za-z0-9_-]{{16,}}", prefixes.join("|")))
            .map_err(|err| RedactError::Build(err.to_string()))?;
        Ok(Self {
            values,
            own_tokens,
            token_hashes: Vec::new(),
            detectors,
        })
    }

    /// Also redacts every token whose SHA-256 is in `hashes` (agent and admin tokens declared by
    /// hash). Candidates are runs of `A-Z a-z 0-9 - . _ ~ + / =` of
    /// [`MIN_HASHED_TOKEN`]..=[`MAX_HASHED_TOKEN`] bytes, also without trailing dots.
    #[must_use]
    pub fn with_token_hashes(mut self, hashes: impl IntoIterator<Item = [u8; 32]>) -> Self {
        self.token_hashes.extend(hashes);
        self.token_hashes.sort_unstable();
        self.token_hashes.dedup();
        self
    }

    /// Spans of the secrets Portcullis holds: configured values, its own token format and
    /// hashed tokens. These are never kept, whoever sent them.
    fn held_cuts(&self, text: &str) -> Vec<(usize, usize)> {
        let mut cuts = self.matched_cuts(text);
        if let Some(visible) = Visible::of(text) {
            // Zero-width characters inside a value do not hide it: match the text without them
            // and map each match back.
            cuts.extend(
                self.matched_cuts(&visible.text)
                    .into_iter()
                    .filter_map(|(start, end)| visible.original(start, end)),
            );
        }
        if !self.token_hashes.is_empty() {
            cuts.extend(self.hashed_token_cuts(text));
        }
        cuts
    }

    /// Configured values and Portcullis tokens in `text`.
    fn matched_cuts(&self, text: &str) -> Vec<(usize, usize)> {
        let mut cuts: Vec<(usize, usize)> = Vec::new();
        if let Some(matcher) = &self.values {
            cuts.extend(matcher.find_iter(text).map(|m| (m.start(), m.end())));
        }
        cuts.extend(
            self.own_tokens
                .find_iter(text)
                .map(|m| (m.start(), m.end())),
        );
        cuts
    }

    fn hashed_token_cuts(&self, text: &str) -> Vec<(usize, usize)> {
        let is_token_byte = |b: u8| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
        };
        let known = |run: &str| {
            let digest: [u8; 32] = Sha256::digest(run.as_bytes()).into();
            self.token_hashes.binary_search(&digest).is_ok()
        };
        let mut res = Vec::new();
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            if !bytes.get(start).copied().is_some_and(is_token_byte) {
                start += 1;
                continue;
            }
            let mut end = start;
            while bytes.get(end).copied().is_some_and(is_token_byte) {
                end += 1;
            }
            // INVARIANT (char-boundaries): token bytes are ASCII, so a run starts and ends on
            // char boundaries.
            if let Some(run) = text.get(start..end) {
                let trimmed = run.trim_end_matches('.');
                let hit = [run, trimmed].into_iter().find(|candidate| {
                    (MIN_HASHED_TOKEN..=MAX_HASHED_TOKEN).contains(&candidate.len())
                        && known(candidate)
                });
                if let Some(hit) = hit {
                    res.push((start, start + hit.len()));
                }
            }
            start = end;
        }
        res
    }

    /// Held secrets split across adjacent text blocks of `items` (strings, or objects' `text`
    /// strings, read as one text): each block's piece is replaced by [`REDACTED`]. Returns how
    /// many blocks changed. Secrets wholly inside one block are left to the per-string pass.
    fn redact_across(&self, items: &mut [Value]) -> usize {
        let blocks: Vec<(usize, usize)> = items
            .iter()
            .enumerate()
            .filter_map(|(item_idx, item)| block_text(item).map(|text| (item_idx, text.len())))
            .collect();
        if blocks.len() < 2 {
            return 0;
        }
        let mut joined = String::new();
        for (item_idx, _) in &blocks {
            if let Some(text) = items.get(*item_idx).and_then(block_text) {
                joined.push_str(text);
            }
        }
        let mut starts = Vec::with_capacity(blocks.len());
        let mut offset = 0;
        for (_, len) in &blocks {
            starts.push(offset);
            offset += len;
        }
        let mut cuts: Vec<Vec<(usize, usize)>> = vec![Vec::new(); blocks.len()];
        for (start, end) in self.held_cuts(&joined) {
            let spans_blocks = starts
                .iter()
                .zip(&blocks)
                .filter(|(block_start, (_, len))| {
                    start < **block_start + len && end > **block_start
                })
                .count();
            if spans_blocks < 2 {
                continue;
            }
            for ((block_start, (_, len)), block_cuts) in starts.iter().zip(&blocks).zip(&mut cuts) {
                let (lo, hi) = (start.max(*block_start), end.min(block_start + len));
                if lo < hi {
                    block_cuts.push((lo - block_start, hi - block_start));
                }
            }
        }
        let mut changed = 0;
        for ((item_idx, _), block_cuts) in blocks.iter().zip(cuts) {
            if block_cuts.is_empty() {
                continue;
            }
            if let Some(text) = items.get_mut(*item_idx).and_then(block_text_mut) {
                // INVARIANT (char-boundaries): a match of a valid UTF-8 pattern cut at a block
                // boundary ends on char boundaries of each block, blocks being whole strings.
                let (clean, _) = splice(text, 0, block_cuts);
                *text = clean;
                changed += 1;
            }
        }
        changed
    }

    /// `text` with the secrets Portcullis holds replaced by [`REDACTED`] (not other secret
    /// formats: on the request side those meet the sanitizer's strategy), and how many.
    pub fn redact_held<'a>(&self, text: &'a str) -> (Cow<'a, str>, usize) {
        let cuts = self.held_cuts(text);
        if cuts.is_empty() {
            return (Cow::Borrowed(text), 0);
        }
        let (res, n_redacted) = splice(text, 0, cuts);
        (Cow::Owned(res), n_redacted)
    }

    /// [`Redactor::redact_held`] over every string, object key and number of `value`, in
    /// place (keys that become equal are told apart with `#2`, ...); returns how many secrets
    /// were redacted.
    pub fn redact_held_value(&self, value: &mut Value) -> usize {
        let mut n_redacted = 0;
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(text) => {
                    if let (Cow::Owned(clean), n) = self.redact_held(text) {
                        *text = clean;
                        n_redacted += n;
                    }
                }
                Value::Number(number) => {
                    if let (Cow::Owned(clean), n) = self.redact_held(&number.to_string()) {
                        *value = Value::String(clean);
                        n_redacted += n;
                    }
                }
                Value::Array(items) => {
                    n_redacted += self.redact_across(items);
                    stack.extend(items.iter_mut());
                }
                Value::Object(object) => {
                    if object.keys().any(|key| !self.held_cuts(key).is_empty()) {
                        let old = std::mem::take(object);
                        for (key, item) in old {
                            let key = match self.redact_held(&key) {
                                (Cow::Owned(clean), n) => {
                                    n_redacted += n;
                                    clean
                                }
                                (Cow::Borrowed(_), _) => key,
                            };
                            let key = distinct_key(key, object);
                            object.insert(key, item);
                        }
                    }
                    stack.extend(object.values_mut());
                }
                Value::Null | Value::Bool(_) => {}
            }
        }
        n_redacted
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
        let mut cuts = self.held_cuts(text);
        for span in self.detectors.scan(text)? {
            let value = text.get(span.start..span.end).unwrap_or_default();
            if !keep(value) {
                cuts.push((span.start, span.end));
            }
        }
        Ok(splice(text, from, cuts))
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
                Value::Array(items) => {
                    changed += self.redact_across(items);
                    stack.extend(items.iter_mut());
                }
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
                            let key = distinct_key(key, object);
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

/// Characters that render as nothing and may be slipped inside a value to hide it.
const INVISIBLE: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{AD}',
];

/// A text without its [`INVISIBLE`] characters, and where each remaining byte came from.
struct Visible {
    text: String,
    /// `origin[i]`: the original offset of byte `i` of `text`.
    origin: Vec<usize>,
}

impl Visible {
    /// `None` when `text` holds no invisible character.
    fn of(text: &str) -> Option<Self> {
        if !text.contains(INVISIBLE) {
            return None;
        }
        let mut res = Visible {
            text: String::with_capacity(text.len()),
            origin: Vec::with_capacity(text.len()),
        };
        for (offset, c) in text.char_indices() {
            if INVISIBLE.contains(&c) {
                continue;
            }
            res.text.push(c);
            res.origin
                .extend((0..c.len_utf8()).map(|byte_idx| offset + byte_idx));
        }
        Some(res)
    }

    /// The original range of the visible range `start..end` (non-empty, on char boundaries).
    fn original(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        let first = *self.origin.get(start)?;
        let last = *self.origin.get(end.checked_sub(1)?)?;
        Some((first, last + 1))
    }
}

/// The text of one block of an array: the string itself, or an object's `text` string.
fn block_text(item: &Value) -> Option<&str> {
    match item {
        Value::String(text) => Some(text),
        Value::Object(object) => object.get("text").and_then(Value::as_str),
        _ => None,
    }
}

fn block_text_mut(item: &mut Value) -> Option<&mut String> {
    match item {
        Value::String(text) => Some(text),
        Value::Object(object) => match object.get_mut("text") {
            Some(Value::String(text)) => Some(text),
            _ => None,
        },
        _ => None,
    }
}

/// `text[from..]` with every cut (byte ranges, any order, may overlap) replaced by
/// [`REDACTED`], and how many replacements were made; a cut that starts before `from` is
/// replaced from `from` on.
fn splice(text: &str, from: usize, mut cuts: Vec<(usize, usize)>) -> (String, usize) {
    cuts.retain(|(_, end)| *end > from);
    cuts.sort_unstable();
    let tail = text.get(from..).unwrap_or_default();
    if cuts.is_empty() {
        return (tail.to_owned(), 0);
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
        // INVARIANT (char-boundaries): detector spans, regex matches and aho-corasick matches of
        // valid UTF-8 patterns end on char boundaries, and `from` is one (the caller cuts there).
        cursor = end;
    }
    res.push_str(text.get(cursor..).unwrap_or_default());
    (res, n_redacted)
}

#[cfg(test)]
mod tests;
