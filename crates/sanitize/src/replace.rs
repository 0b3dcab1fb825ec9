//! Applying strategies to resolved spans, with the leak check that keeps `apply` fail-closed.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind};

use crate::config::Strategy;
use crate::detect::{SMALL_VALUE_SET, Span};
use crate::entity::{Counts, EntityType};
use crate::vault::{Scope, Vault};
use crate::{SanitizeError, Sanitized, Sanitizer, synthetic};

/// How many derivations to try before a colliding synthetic value falls back to `redact`.
const MAX_SYNTHETIC_ATTEMPTS: u32 = 32;

/// Replaces `spans` (sorted, non-overlapping) in `text`; commits new vault entries on success.
pub(crate) fn apply_spans(
    sanitizer: &Sanitizer,
    text: &str,
    context: &str,
    spans: &[Span],
    scope: &Scope,
    vault: &mut Vault,
) -> Result<Sanitized, SanitizeError> {
    let strategies = &sanitizer.config().strategies;
    let mut stats = Counts::default();
    let mut blocked = Counts::default();
    for span in spans {
        stats.add(span.entity);
        if strategies.get(span.entity) == Strategy::Block {
            blocked.add(span.entity);
        }
    }
    if blocked.total() > 0 {
        return Err(SanitizeError::Blocked { counts: blocked });
    }
    let mut pending = Pending::default();
    let around = Around { text, context };
    let mut out = replace_all(sanitizer, around, spans, scope, vault, &mut pending, false);
    if leaks(text, spans, &out, strategies) || !restores_exactly(&out, &pending) {
        // A synthetic value happened to contain a detected one: fall back to labels.
        pending = Pending::default();
        out = replace_all(sanitizer, around, spans, scope, vault, &mut pending, true);
        if leaks(text, spans, &out, strategies) {
            return Err(SanitizeError::Leak);
        }
    }
    if vault.len().saturating_add(pending.entries.len()) > vault.limit() {
        return Err(SanitizeError::VaultFull {
            limit: vault.limit(),
        });
    }
    for (entity, original, synthetic) in pending.entries {
        vault.insert(entity, original, synthetic);
    }
    Ok(Sanitized { text: out, stats })
}

/// The placeholder for `redact`: `[REDACTED_EMAIL]`.
pub(crate) fn redact_label(entity: EntityType) -> String {
    format!("[REDACTED_{}]", entity.label())
}

/// Synthetic values chosen during this call, committed to the vault only on success.
#[derive(Default)]
struct Pending {
    entries: Vec<(EntityType, String, String)>,
    by_original: HashMap<(EntityType, String), usize>,
    taken: HashMap<String, usize>,
    /// Where each stand-in was placed in the output: `(offset, stand-in)`.
    placed: Vec<(usize, String)>,
}

/// Whether restoring `out` gives `text` back exactly: every occurrence of a stand-in this call
/// placed (overlapping ones too) is one of its placements, so a leftmost-longest restorer over
/// them finds exactly those (a stand-in next to other text could otherwise be read as another).
fn restores_exactly(out: &str, pending: &Pending) -> bool {
    let mut stand_ins: Vec<&str> = pending.placed.iter().map(|(_, s)| s.as_str()).collect();
    stand_ins.sort_unstable();
    stand_ins.dedup();
    for stand_in in stand_ins {
        let finder = memchr::memmem::Finder::new(stand_in);
        let mut from = 0;
        while let Some(found) = out
            .get(from..)
            .and_then(|rest| finder.find(rest.as_bytes()))
        {
            let offset = from + found;
            let placed = pending
                .placed
                .iter()
                .any(|(at, s)| *at == offset && s == stand_in);
            if !placed {
                return false;
            }
            from = offset + 1;
            while from < out.len() && !out.is_char_boundary(from) {
                from += 1;
            }
        }
    }
    true
}

/// The text being replaced and the larger text it is part of (may be empty).
#[derive(Clone, Copy)]
struct Around<'a> {
    text: &'a str,
    context: &'a str,
}

impl Around<'_> {
    /// Whether `candidate` already appears somewhere a restorer would see it.
    fn contains(&self, candidate: &str) -> bool {
        self.text.contains(candidate) || self.context.contains(candidate)
    }
}

fn replace_all(
    sanitizer: &Sanitizer,
    around: Around<'_>,
    spans: &[Span],
    scope: &Scope,
    vault: &Vault,
    pending: &mut Pending,
    labels_only: bool,
) -> String {
    let strategies = &sanitizer.config().strategies;
    let text = around.text;
    let mut out = String::with_capacity(text.len() + spans.len() * 8);
    let mut cursor = 0;
    for span in spans {
        let (Some(before), Some(original)) =
            (text.get(cursor..span.start), text.get(span.start..span.end))
        else {
            continue;
        };
        out.push_str(before);
        cursor = span.end;
        let strategy = strategies.get(span.entity);
        match strategy {
            Strategy::Allow => out.push_str(original),
            Strategy::Redact | Strategy::Block => out.push_str(&redact_label(span.entity)),
            _ if labels_only => out.push_str(&redact_label(span.entity)),
            Strategy::Hash => out.push_str(&hash_label(sanitizer, span.entity, original)),
            Strategy::Synthetic => {
                let value = synthetic_value(
                    sanitizer,
                    span.entity,
                    original,
                    around,
                    scope,
                    vault,
                    pending,
                );
                if value != redact_label(span.entity) {
                    pending.placed.push((out.len(), value.clone()));
                }
                out.push_str(&value);
            }
        }
    }
    out.push_str(text.get(cursor..).unwrap_or(""));
    out
}

/// `[EMAIL:1a2b3c4d]`: 8 hex of a keyed MAC over type and value, the same for every scope.
fn hash_label(sanitizer: &Sanitizer, entity: EntityType, original: &str) -> String {
    let digest = sanitizer.mac(&[b"hash", entity.label().as_bytes(), original.as_bytes()]);
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("[{}:{hex}]", entity.label())
}

fn synthetic_value(
    sanitizer: &Sanitizer,
    entity: EntityType,
    original: &str,
    around: Around<'_>,
    scope: &Scope,
    vault: &Vault,
    pending: &mut Pending,
) -> String {
    if let Some(existing) = vault.synthetic_for(entity, original) {
        return existing.to_owned();
    }
    let key = (entity, original.to_owned());
    if let Some(entry) = pending
        .by_original
        .get(&key)
        .and_then(|idx| pending.entries.get(*idx))
    {
        return entry.2.clone();
    }
    for attempt in 0..MAX_SYNTHETIC_ATTEMPTS {
        let seed = sanitizer.mac(&[
            b"synthetic",
            scope.as_bytes(),
            entity.label().as_bytes(),
            original.as_bytes(),
            &attempt.to_be_bytes(),
        ]);
        let candidate = synthetic::generate(entity, original, seed);
        // INVARIANT (vault-bijective): one synthetic value maps back to exactly one original.
        // INVARIANT (stand-in-unique): a stand-in appears nowhere in the text it is placed in
        // or its context, so restoring cannot turn a string that was already there into an
        // original.
        let clashes = candidate == original
            || candidate.contains(original)
            || vault.original(&candidate).is_some()
            || pending.taken.contains_key(&candidate)
            || around.contains(&candidate);
        if !clashes {
            pending
                .taken
                .insert(candidate.clone(), pending.entries.len());
            pending.by_original.insert(key, pending.entries.len());
            pending
                .entries
                .push((entity, original.to_owned(), candidate.clone()));
            return candidate;
        }
    }
    redact_label(entity)
}

/// True when a masked value still appears in `out`.
fn leaks(text: &str, spans: &[Span], out: &str, strategies: &crate::StrategyTable) -> bool {
    let masked: Vec<&str> = spans
        .iter()
        .filter(|span| strategies.get(span.entity) != Strategy::Allow)
        .filter_map(|span| text.get(span.start..span.end))
        .collect();
    if masked.len() <= SMALL_VALUE_SET {
        return masked.iter().any(|value| out.contains(value));
    }
    let matcher = AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::NoncontiguousNFA))
        .build(&masked);
    match matcher {
        Ok(matcher) => matcher.is_match(out),
        // Cannot prove the output clean: treat it as a leak.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests;
