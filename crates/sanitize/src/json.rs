//! Sanitizing a JSON document in place: every string value, object key and number, except the
//! scalars at exact protocol paths ([`ProtocolPaths`]), with one vault for the whole document.

use serde_json::{Map, Value};

use crate::vault::{Scope, Vault};
use crate::{Counts, SanitizeError, Sanitizer};

/// Exact paths in a JSON document whose scalar values are protocol, not content (a model name,
/// a message's role): the walkers leave them as they are.
///
/// A pattern is `/`-separated steps: a step matches that object key exactly, `*` matches any
/// array index. No step matches an object key by wildcard, so nothing is ever skipped because of
/// a key name at some depth: `metadata/id` is content unless a pattern names it. Object keys
/// themselves are always content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtocolPaths {
    patterns: Vec<Vec<PatternStep>>,
}

/// Why a [`ProtocolPaths`] pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a protocol path pattern has an empty step")]
    EmptyStep,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternStep {
    Key(String),
    AnyIndex,
}

impl ProtocolPaths {
    /// No protocol path: every scalar is content.
    pub fn none() -> Self {
        Self::default()
    }

    /// Paths from patterns such as `model` or `messages/*/role`.
    pub fn new<I, S>(patterns: I) -> Result<Self, PathError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut res = Vec::new();
        for pattern in patterns {
            let steps = pattern
                .as_ref()
                .split('/')
                .map(|step| match step {
                    "" => Err(PathError::EmptyStep),
                    "*" => Ok(PatternStep::AnyIndex),
                    key => Ok(PatternStep::Key(key.to_owned())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            res.push(steps);
        }
        Ok(Self { patterns: res })
    }

    /// Whether the scalar at `path` (object keys and array indices from the root) is protocol.
    pub fn matches(&self, path: &[Step<'_>]) -> bool {
        self.patterns.iter().any(|pattern| {
            pattern.len() == path.len()
                && pattern
                    .iter()
                    .zip(path)
                    .all(|(want, step)| want.admits(*step))
        })
    }

    /// The patterns still alive after one more `step`, from those alive before.
    fn advance(&self, alive: &[usize], depth: usize, step: Step<'_>) -> Vec<usize> {
        alive
            .iter()
            .copied()
            .filter(|idx| {
                self.patterns
                    .get(*idx)
                    .and_then(|pattern| pattern.get(depth))
                    .is_some_and(|want| want.admits(step))
            })
            .collect()
    }

    /// Whether a pattern alive at `depth` ends there.
    fn ends(&self, alive: &[usize], depth: usize) -> bool {
        alive.iter().any(|idx| {
            self.patterns
                .get(*idx)
                .is_some_and(|pattern| pattern.len() == depth)
        })
    }
}

/// One step of a path into a JSON document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl PatternStep {
    fn admits(&self, step: Step<'_>) -> bool {
        match (self, step) {
            (PatternStep::Key(want), Step::Key(key)) => want == key,
            (PatternStep::AnyIndex, Step::Index(_)) => true,
            _ => false,
        }
    }
}

impl Sanitizer {
    /// Applies [`Sanitizer::apply`] to every string, object key and number in `value`, sharing
    /// `vault`, so one original gets one synthetic value across the whole document. Scalars at
    /// `protocol` paths stay as they are. A number with a finding becomes a string (a card
    /// number written as a number). Keys that become equal after replacement are told apart
    /// with `#2`, `#3`, ..., so no member is lost. Synthetic stand-ins are unique against every
    /// text of the document. On error the value may be partly sanitized: the caller must refuse
    /// it whole (fail closed).
    pub fn apply_value(
        &self,
        value: &mut Value,
        protocol: &ProtocolPaths,
        scope: &Scope,
        vault: &mut Vault,
    ) -> Result<Counts, SanitizeError> {
        let context = collect_texts(value);
        let mut walk = Walk {
            sanitizer: self,
            protocol,
            scope,
            vault,
            context: &context,
            counts: Counts::default(),
        };
        walk.run(value)?;
        Ok(walk.counts)
    }
}

/// `key` made distinct from every key in `taken` by a `#n` suffix (n from 2).
pub(crate) fn distinct_key(key: String, taken: &Map<String, Value>) -> String {
    if !taken.contains_key(&key) {
        return key;
    }
    let mut n: u64 = 2;
    loop {
        let candidate = format!("{key}#{n}");
        if !taken.contains_key(&candidate) {
            return candidate;
        }
        n = n.saturating_add(1);
    }
}

struct Walk<'s> {
    sanitizer: &'s Sanitizer,
    protocol: &'s ProtocolPaths,
    scope: &'s Scope,
    vault: &'s mut Vault,
    context: &'s str,
    counts: Counts,
}

impl Walk<'_> {
    /// Sanitizes `text`; `None` when nothing was found.
    fn text(&mut self, text: &str) -> Result<Option<String>, SanitizeError> {
        let sanitized = self
            .sanitizer
            .apply_in(text, self.context, self.scope, self.vault)?;
        if sanitized.stats.total() == 0 {
            return Ok(None);
        }
        self.counts.merge(&sanitized.stats);
        Ok(Some(sanitized.text))
    }

    /// Walks `root` without recursion, carrying the protocol patterns still alive per node.
    fn run(&mut self, root: &mut Value) -> Result<(), SanitizeError> {
        let all: Vec<usize> = (0..self.protocol.patterns.len()).collect();
        let mut stack: Vec<(&mut Value, Vec<usize>, usize)> = vec![(root, all, 0)];
        while let Some((value, alive, depth)) = stack.pop() {
            let protocol = self.protocol.ends(&alive, depth);
            match value {
                Value::String(text) if !protocol => {
                    if let Some(clean) = self.text(text)? {
                        *text = clean;
                    }
                }
                Value::Number(number) if !protocol => {
                    if let Some(clean) = self.text(&number.to_string())? {
                        *value = Value::String(clean);
                    }
                }
                Value::Array(items) => {
                    for (item_idx, item) in items.iter_mut().enumerate() {
                        let next = self.protocol.advance(&alive, depth, Step::Index(item_idx));
                        stack.push((item, next, depth + 1));
                    }
                }
                Value::Object(object) => {
                    let old = std::mem::take(object);
                    let mut alive_below: Vec<(String, Vec<usize>)> = Vec::new();
                    for (key, item) in old {
                        let next = self.protocol.advance(&alive, depth, Step::Key(&key));
                        let key = self.text(&key)?.unwrap_or(key);
                        let key = distinct_key(key, object);
                        if !next.is_empty() {
                            alive_below.push((key.clone(), next));
                        }
                        object.insert(key, item);
                    }
                    for (key, item) in object.iter_mut() {
                        let next = alive_below
                            .iter()
                            .find(|(below, _)| below == key)
                            .map(|(_, next)| next.clone())
                            .unwrap_or_default();
                        stack.push((item, next, depth + 1));
                    }
                }
                Value::String(_) | Value::Number(_) | Value::Null | Value::Bool(_) => {}
            }
        }
        Ok(())
    }
}

/// Every string, key and number of `value`, NUL-separated, for stand-in uniqueness.
fn collect_texts(value: &Value) -> String {
    let mut out = String::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(text) => push_text(&mut out, text),
            Value::Number(number) => push_text(&mut out, &number.to_string()),
            Value::Array(items) => stack.extend(items),
            Value::Object(object) => {
                for (key, item) in object {
                    push_text(&mut out, key);
                    stack.push(item);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
    out
}

fn push_text(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\0');
}

#[cfg(test)]
mod tests;
