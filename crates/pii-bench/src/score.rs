//! The scorer: per-type precision, recall and F1, leak rates, over-redaction and secret false
//! positives per 100 KiB, for any tool's predictions on the corpus.

use std::collections::BTreeMap;

use portcullis_sanitize::EntityType;
use serde::{Deserialize, Serialize};

use crate::corpus::{LabelledSpan, Message};

/// One line of a predictions file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prediction {
    pub id: u64,
    pub spans: Vec<LabelledSpan>,
}

/// Counts for one type.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TypeScore {
    pub gold: u64,
    pub predicted: u64,
    /// Gold entities overlapped by a predicted span of the same type.
    pub recalled: u64,
    /// Predicted spans overlapping a gold entity of the same type.
    pub correct: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub messages: u64,
    pub bytes: u64,
    pub per_type: BTreeMap<String, TypeScore>,
    /// Share of PII bytes left unmasked (by a span of any type).
    pub char_leak_rate: f64,
    /// Share of entities with at least one byte unmasked.
    pub entity_leak_rate: f64,
    /// Share of non-PII bytes masked.
    pub over_redaction: f64,
    /// SECRET spans overlapping no gold secret, per 100 KiB of text.
    pub secret_fp_per_100kib: f64,
}

/// Scores `predictions` against `corpus` (matched by id; a missing prediction counts as empty).
pub fn score(corpus: &[Message], predictions: &[Prediction]) -> Report {
    let by_id: BTreeMap<u64, &Prediction> = predictions.iter().map(|p| (p.id, p)).collect();
    let mut report = Report::default();
    let mut per_type: BTreeMap<String, TypeScore> = EntityType::ALL
        .iter()
        .map(|ty| (ty.label().to_owned(), TypeScore::default()))
        .collect();
    let (mut pii_bytes, mut pii_leaked, mut other_bytes, mut other_masked) =
        (0u64, 0u64, 0u64, 0u64);
    let (mut n_entities, mut n_leaked_entities) = (0u64, 0u64);
    for message in corpus {
        report.messages += 1;
        report.bytes += message.text.len() as u64;
        let predicted: &[LabelledSpan] = by_id.get(&message.id).map_or(&[], |p| &p.spans);
        let mut gold_mask = vec![false; message.text.len()];
        let mut pred_mask = vec![false; message.text.len()];
        for span in &message.entities {
            fill(&mut gold_mask, span);
        }
        for span in predicted {
            fill(&mut pred_mask, span);
        }
        for (gold, pred) in gold_mask.iter().zip(&pred_mask) {
            match (gold, pred) {
                (true, false) => {
                    pii_bytes += 1;
                    pii_leaked += 1;
                }
                (true, true) => pii_bytes += 1,
                (false, true) => {
                    other_bytes += 1;
                    other_masked += 1;
                }
                (false, false) => other_bytes += 1,
            }
        }
        for gold in &message.entities {
            n_entities += 1;
            let leaked = pred_mask
                .get(gold.start..gold.end)
                .is_none_or(|bytes| bytes.iter().any(|masked| !masked));
            if leaked {
                n_leaked_entities += 1;
            }
            if let Some(score) = per_type.get_mut(&gold.entity) {
                score.gold += 1;
                if predicted
                    .iter()
                    .any(|p| p.entity == gold.entity && overlaps(p, gold))
                {
                    score.recalled += 1;
                }
            }
        }
        for pred in predicted {
            if let Some(score) = per_type.get_mut(&pred.entity) {
                score.predicted += 1;
                if message
                    .entities
                    .iter()
                    .any(|g| g.entity == pred.entity && overlaps(pred, g))
                {
                    score.correct += 1;
                }
            }
        }
    }
    for score in per_type.values_mut() {
        score.precision = ratio(score.correct, score.predicted);
        score.recall = ratio(score.recalled, score.gold);
        score.f1 = if score.precision + score.recall > 0.0 {
            2.0 * score.precision * score.recall / (score.precision + score.recall)
        } else {
            0.0
        };
    }
    let secret_fp = per_type
        .get("SECRET")
        .map_or(0, |s| s.predicted - s.correct);
    report.per_type = per_type;
    report.char_leak_rate = 1.0 - ratio(pii_bytes - pii_leaked, pii_bytes);
    report.entity_leak_rate = 1.0 - ratio(n_entities - n_leaked_entities, n_entities);
    report.over_redaction = 1.0 - ratio(other_bytes - other_masked, other_bytes);
    report.secret_fp_per_100kib = if report.bytes == 0 {
        0.0
    } else {
        secret_fp as f64 * 102_400.0 / report.bytes as f64
    };
    report
}

/// A fixed-width text table of the report.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "{} messages, {} bytes\n{:<12} {:>7} {:>7} {:>9} {:>9} {:>9}\n",
        report.messages, report.bytes, "type", "gold", "pred", "precision", "recall", "f1"
    );
    for (label, s) in &report.per_type {
        out.push_str(&format!(
            "{label:<12} {:>7} {:>7} {:>9.4} {:>9.4} {:>9.4}\n",
            s.gold, s.predicted, s.precision, s.recall, s.f1
        ));
    }
    out.push_str(&format!(
        "char leak rate {:.5}, entities with a leaked char {:.5}, over-redaction {:.5}, secret FP per 100 KiB {:.3}\n",
        report.char_leak_rate, report.entity_leak_rate, report.over_redaction, report.secret_fp_per_100kib
    ));
    out
}

fn fill(mask: &mut [bool], span: &LabelledSpan) {
    let end = span.end.min(mask.len());
    if let Some(bytes) = mask.get_mut(span.start.min(end)..end) {
        bytes.fill(true);
    }
}

fn overlaps(a: &LabelledSpan, b: &LabelledSpan) -> bool {
    a.start < b.end && b.start < a.end
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}
