//! The scanning pass: run the enabled detectors, resolve overlaps, cover repeated values.

mod network;
mod numeric;
mod secret;
mod text;
mod window;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::Regex;

use crate::config::PatternError;
use crate::entity::EntityType;

pub(crate) use numeric::{PhoneCountry, luhn_sum, phone_country};
pub use secret::{CONTEXT_FORMATS, PROVIDER_FORMATS, UNPREFIXED_FORMATS};

/// One finding: `text[start..end]` (byte offsets, exclusive end) holds a value of `entity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub entity: EntityType,
}

/// Every detector, compiled once.
#[derive(Debug)]
pub(crate) struct Detectors {
    enabled: [bool; 7],
    email: Regex,
    phone: Regex,
    card: Regex,
    ssn: Regex,
    iban: Regex,
    ipv4: Regex,
    ipv6: Regex,
    secret: secret::SecretDetector,
}

impl Span {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// True for an empty span (never produced by the detectors).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Detectors {
    pub(crate) fn new(enabled_types: &[EntityType]) -> Result<Self, PatternError> {
        let mut enabled = [false; 7];
        for ty in enabled_types {
            if let Some(flag) = enabled.get_mut(ty.index()) {
                *flag = true;
            }
        }
        Ok(Detectors {
            enabled,
            email: compile("email", network::EMAIL_PATTERN)?,
            phone: compile("phone", numeric::PHONE_PATTERN)?,
            card: compile("credit_card", numeric::CARD_PATTERN)?,
            ssn: compile("us_ssn", numeric::SSN_PATTERN)?,
            iban: compile("iban", network::IBAN_PATTERN)?,
            ipv4: compile("ipv4", numeric::IPV4_PATTERN)?,
            ipv6: compile("ipv6", network::IPV6_PATTERN)?,
            secret: secret::SecretDetector::new()?,
        })
    }

    /// All findings in `text`, sorted by start, non-overlapping, with every further occurrence
    /// of a found value covered too.
    pub(crate) fn scan(&self, text: &str) -> Vec<Span> {
        let mut candidates = Vec::new();
        self.collect(text, &mut candidates);
        let resolved = resolve(candidates);
        cover_repeats(text, resolved)
    }

    fn collect(&self, text: &str, out: &mut Vec<Span>) {
        let bytes = text.as_bytes();
        let on = |ty: EntityType| self.enabled.get(ty.index()).copied().unwrap_or(false);
        let mut push = |start: usize, end: usize, entity: EntityType| {
            if start < end {
                out.push(Span { start, end, entity });
            }
        };
        if on(EntityType::Secret) {
            let mut found = Vec::new();
            self.secret.find(text, &mut found);
            for (start, end) in found {
                push(start, end, EntityType::Secret);
            }
        }
        // An email needs an `@`: skip the pass when there is none.
        if on(EntityType::Email) && bytes.contains(&b'@') {
            for m in self.email.find_iter(text) {
                if let Some((start, end)) = network::email_bounds(bytes, m.start(), m.end()) {
                    push(start, end, EntityType::Email);
                }
            }
        }
        // Digit-shaped detectors run only on windows after their anchors.
        let mut runs = Vec::new();
        window::digit_runs(bytes, &mut runs);
        let mut regions = window::Regions::default();
        if on(EntityType::CreditCard) {
            regions.card(text, &runs);
            regions.find_iter(&self.card, text, |start, end| {
                if numeric::is_card(bytes, start, end) {
                    push(start, end, EntityType::CreditCard);
                }
            });
        }
        if on(EntityType::Iban) {
            regions.iban(text, &runs);
            regions.find_iter(&self.iban, text, |start, end| {
                if let Some(end) = network::iban_end(bytes, start, end) {
                    push(start, end, EntityType::Iban);
                }
            });
        }
        if on(EntityType::UsSsn) {
            regions.ssn(text, &runs);
            regions.find_iter(&self.ssn, text, |start, end| {
                if numeric::is_ssn(bytes, start, end) {
                    push(start, end, EntityType::UsSsn);
                }
            });
        }
        if on(EntityType::Ip) {
            regions.ipv4(text, &runs);
            regions.find_iter(&self.ipv4, text, |start, end| {
                if numeric::is_ipv4(bytes, start, end) {
                    push(start, end, EntityType::Ip);
                }
            });
            for m in self.ipv6.find_iter(text) {
                if let Some(end) = network::ipv6_end(bytes, m.start(), m.end()) {
                    push(m.start(), end, EntityType::Ip);
                }
            }
        }
        if on(EntityType::Phone) {
            regions.phone(text, &runs);
            regions.find_iter(&self.phone, text, |start, end| {
                if numeric::is_phone(bytes, start, end) {
                    push(start, end, EntityType::Phone);
                }
            });
        }
    }
}

fn compile(name: &'static str, pattern: &str) -> Result<Regex, PatternError> {
    regex::RegexBuilder::new(&ascii_classes(pattern))
        .dfa_size_limit(LAZY_DFA_CACHE_BYTES)
        .build()
        .map_err(|_| PatternError { name })
}

/// Up to this many findings, repeats are found by plain substring search (cheaper than building
/// an automaton); above it, by one Aho-Corasick pass.
pub(crate) const SMALL_VALUE_SET: usize = 48;

/// Rewrites `\d` and `\s` to their ASCII classes: validators do ASCII arithmetic on matched
/// digits, and ASCII classes keep the automata small.
// INVARIANT (ascii-digits): every digit a detector regex matches is an ASCII digit.
pub(crate) fn ascii_classes(pattern: &str) -> String {
    pattern.replace(r"\d", "[0-9]").replace(r"\s", r"[\t\n\r ]")
}

/// Lazy DFA cache per regex and thread; large enough that 4 KiB messages never clear it.
pub(crate) const LAZY_DFA_CACHE_BYTES: usize = 16 << 20;

/// Picks non-overlapping spans: longer first, then by type order, then leftmost.
// INVARIANT (resolved-spans): the result is sorted by start and no two spans overlap.
fn resolve(mut candidates: Vec<Span>) -> Vec<Span> {
    candidates.sort_by(|a, b| {
        b.len()
            .cmp(&a.len())
            .then(a.entity.cmp(&b.entity))
            .then(a.start.cmp(&b.start))
    });
    candidates.dedup();
    let mut kept: Vec<Span> = Vec::with_capacity(candidates.len());
    for span in candidates {
        let idx = kept.partition_point(|k| k.start < span.start);
        let clashes_next = kept.get(idx).is_some_and(|next| next.start < span.end);
        let clashes_prev = idx
            .checked_sub(1)
            .and_then(|prev| kept.get(prev))
            .is_some_and(|prev| prev.end > span.start);
        if !clashes_next && !clashes_prev {
            kept.insert(idx, span);
        }
    }
    kept
}

/// Adds a span over every other occurrence of a found value (a value found once in context is
/// masked everywhere), merging any overlap into one span.
// INVARIANT (resolved-spans): keeps the result sorted and non-overlapping.
fn cover_repeats(text: &str, spans: Vec<Span>) -> Vec<Span> {
    if spans.is_empty() {
        return spans;
    }
    let mut all = spans.clone();
    if spans.len() <= SMALL_VALUE_SET {
        let mut seen: Vec<&str> = Vec::with_capacity(spans.len());
        for span in &spans {
            let Some(value) = text.get(span.start..span.end) else {
                continue;
            };
            if seen.contains(&value) {
                continue;
            }
            seen.push(value);
            // Same non-overlapping, leftmost occurrences as `match_indices`, with SIMD search.
            for start in memchr::memmem::find_iter(text.as_bytes(), value.as_bytes()) {
                all.push(Span {
                    start,
                    end: start + value.len(),
                    entity: span.entity,
                });
            }
        }
    } else {
        // INVARIANT (linear-repeats): many values go through one automaton, so the cost stays
        // linear in the text whatever the number of findings.
        let values: Vec<&str> = spans
            .iter()
            .filter_map(|span| text.get(span.start..span.end))
            .collect();
        let Ok(matcher) = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::NoncontiguousNFA))
            .build(&values)
        else {
            return spans;
        };
        for found in matcher.find_iter(text) {
            let entity = spans
                .get(found.pattern().as_usize())
                .map_or(EntityType::Secret, |span| span.entity);
            all.push(Span {
                start: found.start(),
                end: found.end(),
                entity,
            });
        }
    }
    if all.len() == spans.len() {
        return spans;
    }
    all.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut merged: Vec<Span> = Vec::with_capacity(all.len());
    for span in all {
        match merged.last_mut() {
            Some(last) if span.start < last.end => {
                last.end = last.end.max(span.end);
            }
            _ => merged.push(span),
        }
    }
    merged
}

#[cfg(test)]
mod tests;

/// The two IBAN check digits for `country` and `bban` (ISO 7064 mod 97-10).
pub(crate) fn iban_check_digits(country: &str, bban: &str) -> u32 {
    let probe = format!("{country}00{bban}");
    98 - network::iban_mod97(probe.as_bytes()).unwrap_or(0)
}
