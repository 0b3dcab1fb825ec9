//! The PII benchmark kit: a seeded corpus generator, a runner for the Portcullis sanitizer and a
//! scorer shared with the Presidio side-by-side script (`bench/pii/`).
//!
//! Not part of the gateway: nothing depends on this crate. It may read and write files (the
//! binary does); the library itself is pure so the regression test can run it in memory.
//!
//! Invariants:
//! - The same seed always gives the same corpus, byte for byte.
//! - Offsets everywhere are UTF-8 byte offsets with exclusive ends.

pub mod corpus;
mod negatives;
pub mod rng;
pub mod score;
mod values;

use portcullis_sanitize::Sanitizer;

use crate::corpus::{LabelledSpan, Message};
use crate::score::Prediction;

/// Runs `sanitizer.scan` over every message; a refused message predicts nothing.
pub fn predict(sanitizer: &Sanitizer, corpus: &[Message]) -> Vec<Prediction> {
    corpus
        .iter()
        .map(|message| Prediction {
            id: message.id,
            spans: sanitizer
                .scan(&message.text)
                .unwrap_or_default()
                .into_iter()
                .map(|span| LabelledSpan {
                    start: span.start,
                    end: span.end,
                    entity: span.entity.label().to_owned(),
                })
                .collect(),
        })
        .collect()
}
