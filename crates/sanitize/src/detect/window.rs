//! Candidate windows: run a detector's regex only on the parts of the text where a match can be.
//!
//! A detector whose every match starts at an anchor (a digit run, `+`, `(`, `AA00`) and is at
//! most a known number of bytes long needs only the windows from each anchor to that length.
//! Windows are merged into disjoint regions and the regex runs on each region on its own.
//!
// INVARIANT (exact-windows): for a regex without look-around assertions, the matches found region
// by region are exactly those `find_iter` finds on the whole text: every possible match lies
// inside one region (it starts at an anchor and is no longer than the window), regions are
// disjoint, and a match's end and preference depend only on the bytes it could cover.

use aho_corasick::{AhoCorasick, Input, MatchKind};
use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use crate::detect::network::IBAN_MAX_BYTES;
use crate::detect::numeric::{CARD_MAX_BYTES, IPV4_MAX_BYTES, PHONE_MAX_BYTES, SSN_MAX_BYTES};

/// Regions closer than this are merged: fewer regex calls for a few more bytes scanned.
const MERGE_GAP: usize = 24;

/// Maximal runs of ASCII digits as `(start, end)`, in order.
// Works on 64-byte blocks: a digit bit mask per block (which the compiler vectorizes), then one
// step per run boundary instead of one branch per byte.
pub(crate) fn digit_runs(bytes: &[u8], out: &mut Vec<(usize, usize)>) {
    let mut open: Option<usize> = None;
    // 1 when the byte before the current block is a digit.
    let mut carry = 0u64;
    let mut base = 0;
    let mut blocks = bytes.chunks_exact(64);
    for block in &mut blocks {
        let mask = digit_mask(block);
        boundaries(mask, mask ^ ((mask << 1) | carry), base, &mut open, out);
        carry = mask >> 63;
        base += 64;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mask = digit_mask(tail);
        let in_block = (1u64 << tail.len()) - 1;
        boundaries(
            mask,
            (mask ^ ((mask << 1) | carry)) & in_block,
            base,
            &mut open,
            out,
        );
    }
    if let Some(start) = open {
        out.push((start, bytes.len()));
    }
}

/// Bit `i` set when `block[i]` is an ASCII digit (`block` at most 64 bytes).
fn digit_mask(block: &[u8]) -> u64 {
    block.iter().enumerate().fold(0u64, |mask, (idx, byte)| {
        mask | (u64::from(byte.is_ascii_digit()) << idx)
    })
}

/// Opens a run at each changed bit that is a digit, closes the open one at each other.
fn boundaries(
    mask: u64,
    mut changes: u64,
    base: usize,
    open: &mut Option<usize>,
    out: &mut Vec<(usize, usize)>,
) {
    while changes != 0 {
        let bit = changes.trailing_zeros();
        changes &= changes - 1;
        let pos = base + bit as usize;
        if (mask >> bit) & 1 == 1 {
            *open = Some(pos);
        } else if let Some(start) = open.take() {
            out.push((start, pos));
        }
    }
}

/// Disjoint, sorted regions of a text, built from windows pushed in order of their start.
#[derive(Debug, Default)]
pub(crate) struct Regions {
    ranges: Vec<(usize, usize)>,
}

impl Regions {
    pub(crate) fn clear(&mut self) {
        self.ranges.clear();
    }

    /// Adds the window `start..end` (clamped to `text`, widened to char boundaries).
    fn push(&mut self, text: &str, start: usize, end: usize) {
        let start = floor_boundary(text, start.min(text.len()));
        let end = ceil_boundary(text, end.min(text.len()));
        if start < end {
            self.ranges.push((start, end));
        }
    }

    /// Sorts the windows and merges overlapping or close ones into disjoint regions.
    fn merge(&mut self) {
        self.ranges.sort_unstable();
        let mut kept: usize = 0;
        for idx in 0..self.ranges.len() {
            let Some(&(start, end)) = self.ranges.get(idx) else {
                break;
            };
            match kept
                .checked_sub(1)
                .and_then(|last| self.ranges.get_mut(last))
            {
                Some(last) if start <= last.1.saturating_add(MERGE_GAP) => {
                    last.1 = last.1.max(end);
                }
                _ => {
                    if let Some(slot) = self.ranges.get_mut(kept) {
                        *slot = (start, end);
                    }
                    kept += 1;
                }
            }
        }
        self.ranges.truncate(kept);
    }

    /// Credit cards start with four digits and are at most [`CARD_MAX_BYTES`] long.
    pub(crate) fn card(&mut self, text: &str, runs: &[(usize, usize)]) {
        self.clear();
        for &(start, end) in runs.iter().filter(|(s, e)| e - s >= 4) {
            self.push(text, start, end + CARD_MAX_BYTES);
        }
        self.merge();
    }

    /// SSNs start with three digits and are at most [`SSN_MAX_BYTES`] long.
    pub(crate) fn ssn(&mut self, text: &str, runs: &[(usize, usize)]) {
        self.clear();
        for &(start, end) in runs.iter().filter(|(s, e)| e - s >= 3) {
            self.push(text, start, end + SSN_MAX_BYTES);
        }
        self.merge();
    }

    /// IPv4 addresses start with a digit run ended by a dot, and are at most
    /// [`IPV4_MAX_BYTES`] long.
    pub(crate) fn ipv4(&mut self, text: &str, runs: &[(usize, usize)]) {
        self.clear();
        let bytes = text.as_bytes();
        for &(start, end) in runs.iter().filter(|(_, e)| bytes.get(*e) == Some(&b'.')) {
            self.push(text, start, end + IPV4_MAX_BYTES);
        }
        self.merge();
    }

    /// Phones start with `+`, `(` or at least two digits, and are at most
    /// [`PHONE_MAX_BYTES`] long.
    pub(crate) fn phone(&mut self, text: &str, runs: &[(usize, usize)]) {
        self.clear();
        for &(start, end) in runs.iter().filter(|(s, e)| e - s >= 2) {
            self.push(text, start, end + PHONE_MAX_BYTES);
        }
        for start in memchr::memchr2_iter(b'+', b'(', text.as_bytes()) {
            self.push(text, start, start + PHONE_MAX_BYTES);
        }
        self.merge();
    }

    /// IBANs start with two capital letters and two digits, and are at most
    /// [`IBAN_MAX_BYTES`] long.
    pub(crate) fn iban(&mut self, text: &str, runs: &[(usize, usize)]) {
        self.clear();
        let bytes = text.as_bytes();
        for &(start, _) in runs.iter().filter(|(s, e)| e - s >= 2) {
            let Some(letters) = start.checked_sub(2) else {
                continue;
            };
            let capitals = bytes
                .get(letters..start)
                .is_some_and(|pair| pair.iter().all(u8::is_ascii_uppercase));
            if capitals {
                self.push(text, letters, letters + IBAN_MAX_BYTES);
            }
        }
        self.merge();
    }

    /// Windows for the key/token/secret assignment detector: each `:` or `=` whose name (the
    /// run of name bytes before it, past up to three spaces and a quote) ends with one of
    /// `keywords` (lower case), from the start of that name to the end of the value run after.
    // The regex is `NAME KEYWORD QUOTE? SPACE{0,3} (:|=|:=|=>) SPACE{0,3} QUOTE? VALUE{6,}`: its
    // name is a suffix of the whole name run (nothing before a separator can be skipped any
    // other way), and its value ends where the value run ends.
    pub(crate) fn assignment(&mut self, text: &str, keywords: &[&str]) {
        self.clear();
        let bytes = text.as_bytes();
        let is_space = |b: &u8| matches!(b, b'\t' | b'\n' | b'\r' | b' ');
        let is_quote = |b: &u8| matches!(b, b'"' | b'\'');
        let is_name = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
        for at in memchr::memchr2_iter(b':', b'=', bytes) {
            let head = bytes.get(..at).unwrap_or(&[]);
            let spaces = head
                .iter()
                .rev()
                .take(3)
                .take_while(|b| is_space(b))
                .count();
            let mut name_end = at - spaces;
            if name_end
                .checked_sub(1)
                .and_then(|idx| bytes.get(idx))
                .is_some_and(is_quote)
            {
                name_end -= 1;
            }
            let name = bytes.get(..name_end).unwrap_or(&[]);
            let name_len = name.iter().rev().take_while(|b| is_name(b)).count();
            let name = name.get(name_end - name_len..).unwrap_or(&[]);
            let named = keywords.iter().any(|word| {
                name.len() >= word.len()
                    && name
                        .get(name.len() - word.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(word.as_bytes()))
            });
            if !named {
                continue;
            }
            // Past the separator, spaces and quote (at most six bytes), then the value run.
            let tail = bytes.get(at..).unwrap_or(&[]);
            let skipped = tail
                .iter()
                .take(6)
                .take_while(|b| matches!(b, b':' | b'=' | b'>') || is_space(b) || is_quote(b))
                .count();
            let value = tail
                .get(skipped..)
                .unwrap_or(&[])
                .iter()
                .take_while(|b| {
                    !is_space(b)
                        && !matches!(
                            b,
                            b'"' | b'\''
                                | b'`'
                                | b','
                                | b';'
                                | b'<'
                                | b'>'
                                | b'('
                                | b')'
                                | b'['
                                | b']'
                                | b'{'
                                | b'}'
                        )
                })
                .count();
            self.push(text, name_end - name_len, at + skipped + value);
        }
        self.merge();
    }

    /// Calls `found(offset, region)` for every region, `offset` being its start in the text.
    pub(crate) fn for_each<'t>(&self, text: &'t str, mut found: impl FnMut(usize, &'t str)) {
        for &(start, end) in &self.ranges {
            if let Some(region) = text.get(start..end) {
                found(start, region);
            }
        }
    }

    /// Calls `found(start, end)` (offsets in `text`) for every match of `regex` in the regions.
    pub(crate) fn find_iter(&self, regex: &Regex, text: &str, mut found: impl FnMut(usize, usize)) {
        for &(start, end) in &self.ranges {
            let Some(region) = text.get(start..end) else {
                continue;
            };
            for m in regex.find_iter(region) {
                found(start + m.start(), start + m.end());
            }
        }
    }
}

fn floor_boundary(text: &str, mut idx: usize) -> usize {
    while idx > 0 && !text.is_char_boundary(idx) {
        idx -= 1;
    }
    idx
}

fn ceil_boundary(text: &str, mut idx: usize) -> usize {
    while idx < text.len() && !text.is_char_boundary(idx) {
        idx += 1;
    }
    idx
}

/// Where matches of the joined provider regex can start: the literal prefixes of each format
/// (taken from the pattern itself), each with the longest match of its format, plus the inner
/// anchors of the two formats without a prefix.
#[derive(Debug)]
pub(crate) struct ProviderAnchors {
    prefixes: Option<AhoCorasick>,
    /// Each prefix with the longest match of its format.
    literals: Vec<(Vec<u8>, usize)>,
    discord_max: Option<usize>,
    telegram_max: Option<usize>,
    /// A format with no usable anchor: the regex runs on the whole text.
    whole_text: bool,
}

/// The whitespace of the detector patterns (`\\s` is rewritten to these four).
fn is_space(byte: &u8) -> bool {
    matches!(byte, b'\t' | b'\n' | b'\r' | b' ')
}

/// Anchor literals are cut to this length.
const MAX_ANCHOR_BYTES: usize = 4;

/// The longest match of `pattern`, `None` when unbounded or unparsable.
fn maximum_len(pattern: &str) -> Option<usize> {
    regex_syntax::parse(pattern)
        .ok()?
        .properties()
        .maximum_len()
}

/// Literals every match of `pattern` starts with, when they are all at least two bytes long.
fn prefixes(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::parse(pattern).ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() || literals.iter().any(|lit| lit.as_bytes().len() < 2) {
        return None;
    }
    Some(literals.iter().map(|lit| lit.as_bytes().to_vec()).collect())
}

impl ProviderAnchors {
    /// Anchors for `formats` (name, pattern with ASCII classes), which are joined by `|`.
    pub(crate) fn new(formats: &[(&str, String)]) -> Self {
        let mut literals: Vec<(Vec<u8>, usize)> = Vec::new();
        let (mut discord_max, mut telegram_max, mut whole_text) = (None, None, false);
        for (name, pattern) in formats {
            let max = maximum_len(pattern);
            match (*name, prefixes(pattern), max) {
                ("discord_bot", _, Some(max)) => discord_max = Some(max),
                ("telegram_bot", _, Some(max)) => telegram_max = Some(max),
                (_, Some(found), Some(max)) => {
                    // A prefix of a prefix is an anchor too: short ones keep the set small
                    // (the packed prefilter works on up to 64 literals).
                    for mut literal in found {
                        literal.truncate(MAX_ANCHOR_BYTES);
                        match literals.iter_mut().find(|(known, _)| *known == literal) {
                            Some((_, known_max)) => *known_max = (*known_max).max(max),
                            None => literals.push((literal, max)),
                        }
                    }
                }
                _ => whole_text = true,
            }
        }
        // Leftmost-first keeps the fast packed prefilter; every start is visited by searching
        // again one byte after each found start.
        let prefixes = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(literals.iter().map(|(literal, _)| literal))
            .ok();
        ProviderAnchors {
            prefixes,
            literals,
            discord_max,
            telegram_max,
            whole_text,
        }
    }
}

impl ProviderAnchors {
    /// True when every format has an anchor (the regex never needs the whole text).
    #[cfg(test)]
    pub(crate) fn is_anchored(&self) -> bool {
        self.prefixes.is_some() && !self.whole_text
    }
}

impl Regions {
    /// Windows for the joined provider regex: from every prefix to the longest match of its
    /// format; for Discord bot tokens, around each dot after 24 letters or digits; for
    /// Telegram bot tokens, around each `:AA`.
    pub(crate) fn providers(&mut self, text: &str, anchors: &ProviderAnchors) {
        self.clear();
        let Some(prefixes) = anchors.prefixes.as_ref().filter(|_| !anchors.whole_text) else {
            self.push(text, 0, text.len());
            return;
        };
        let bytes = text.as_bytes();
        let mut from = 0;
        while let Some(found) = prefixes.find(Input::new(bytes).range(from..)) {
            let start = found.start();
            let rest = bytes.get(start..).unwrap_or(&[]);
            let max = anchors
                .literals
                .iter()
                .filter(|(literal, _)| rest.starts_with(literal))
                .map(|(_, max)| *max)
                .max()
                .unwrap_or(text.len());
            // INVARIANT (provider-no-space): no provider format matches a space, so a window
            // ends at the first one.
            let solid = rest.iter().take(max).take_while(|b| !is_space(b)).count();
            self.push(text, start, start + solid);
            from = start + 1;
        }
        // `[MN][A-Za-z0-9]{23,25}\.`: the first dot comes 24 to 26 bytes after the start.
        if let Some(max) = anchors.discord_max {
            for dot in memchr::memchr_iter(b'.', bytes) {
                let glued = dot
                    .checked_sub(24)
                    .and_then(|from| bytes.get(from..dot))
                    .is_some_and(|run| run.iter().all(u8::is_ascii_alphanumeric));
                if glued {
                    let rest = bytes.get(dot..).unwrap_or(&[]);
                    let solid = rest.iter().take(max).take_while(|b| !is_space(b)).count();
                    self.push(text, dot.saturating_sub(26), dot + solid);
                }
            }
        }
        // `\d{8,10}:AA`: the start is at most ten bytes before the colon.
        if let Some(max) = anchors.telegram_max {
            for colon in memchr::memmem::find_iter(bytes, b":AA") {
                let rest = bytes.get(colon..).unwrap_or(&[]);
                let solid = rest.iter().take(max).take_while(|b| !is_space(b)).count();
                self.push(text, colon.saturating_sub(10), colon + solid);
            }
        }
        self.merge();
    }
}
