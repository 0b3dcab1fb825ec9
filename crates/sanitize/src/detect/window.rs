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

use regex::Regex;

use crate::detect::network::IBAN_MAX_BYTES;
use crate::detect::numeric::{CARD_MAX_BYTES, IPV4_MAX_BYTES, PHONE_MAX_BYTES, SSN_MAX_BYTES};

/// Regions closer than this are merged: fewer regex calls for a few more bytes scanned.
const MERGE_GAP: usize = 24;

/// Maximal runs of ASCII digits as `(start, end)`, in order.
pub(crate) fn digit_runs(bytes: &[u8], out: &mut Vec<(usize, usize)>) {
    let mut idx = 0;
    while let Some(offset) = bytes
        .get(idx..)
        .and_then(|rest| rest.iter().position(u8::is_ascii_digit))
    {
        let start = idx + offset;
        let len = bytes.get(start..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        });
        out.push((start, start + len));
        idx = start + len;
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
