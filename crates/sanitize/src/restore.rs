//! Streaming restore: maps synthetic values back to their originals across chunk boundaries.

use aho_corasick::{AhoCorasick, MatchKind};

use crate::vault::Vault;

/// Restores synthetic values in a stream of text chunks.
///
/// [`Restorer::push`] returns what is safe to emit now and holds back at most the longest
/// synthetic value minus one byte (the most a split value can leave at the end of a chunk);
/// [`Restorer::finish`] returns the rest. Cloning is cheap (the automaton is shared), so one
/// restorer built per request can serve every text stream of a response.
#[derive(Clone)]
pub struct Restorer {
    matcher: Option<AhoCorasick>,
    originals: Vec<String>,
    max_len: usize,
    pending: String,
}

/// Restores a whole text at once.
pub fn restore(vault: &Vault, text: &str) -> String {
    let mut restorer = Restorer::new(vault);
    let mut out = restorer.push(text);
    out.push_str(&restorer.finish());
    out
}

impl std::fmt::Debug for Restorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restorer")
            .field("values", &self.originals.len())
            .field("held_back", &self.pending.len())
            .finish()
    }
}

impl Restorer {
    /// A restorer for the values recorded in `vault`.
    pub fn new(vault: &Vault) -> Self {
        let (synthetics, originals): (Vec<&str>, Vec<String>) = vault
            .pairs()
            .map(|(synthetic, original)| (synthetic, original.to_owned()))
            .unzip();
        let max_len = synthetics.iter().map(|s| s.len()).max().unwrap_or(0);
        let matcher = if synthetics.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&synthetics)
                .ok()
        };
        Restorer {
            matcher,
            originals,
            max_len,
            pending: String::new(),
        }
    }

    /// The most bytes [`Restorer::push`] may hold back.
    pub fn max_held_back(&self) -> usize {
        self.max_len.saturating_sub(1)
    }

    /// Feeds one chunk; returns the restored text that can be emitted now.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let Some(matcher) = &self.matcher else {
            return std::mem::take(&mut self.pending);
        };
        // INVARIANT (holdback): a match starting before `safe_end` lies wholly in `pending`,
        // because no synthetic value is longer than `max_len`. Synthetic values are ASCII, so
        // moving the cut forward over continuation bytes cannot skip a match start.
        let mut safe_end = self.pending.len().saturating_sub(self.max_held_back());
        while safe_end < self.pending.len() && !self.pending.is_char_boundary(safe_end) {
            safe_end += 1;
        }
        let mut out = String::with_capacity(safe_end);
        let mut cursor = 0;
        for found in matcher.find_iter(self.pending.as_str()) {
            if found.start() >= safe_end {
                break;
            }
            out.push_str(self.pending.get(cursor..found.start()).unwrap_or(""));
            out.push_str(
                self.originals
                    .get(found.pattern().as_usize())
                    .map_or("", String::as_str),
            );
            cursor = found.end();
        }
        let cut = cursor.max(safe_end);
        out.push_str(self.pending.get(cursor..cut).unwrap_or(""));
        self.pending = self.pending.get(cut..).unwrap_or("").to_owned();
        out
    }

    /// Flushes what is held back, restored.
    pub fn finish(mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        match &self.matcher {
            None => rest,
            Some(matcher) => {
                let mut out = String::with_capacity(rest.len());
                let mut cursor = 0;
                for found in matcher.find_iter(rest.as_str()) {
                    out.push_str(rest.get(cursor..found.start()).unwrap_or(""));
                    out.push_str(
                        self.originals
                            .get(found.pattern().as_usize())
                            .map_or("", String::as_str),
                    );
                    cursor = found.end();
                }
                out.push_str(rest.get(cursor..).unwrap_or(""));
                out
            }
        }
    }
}
