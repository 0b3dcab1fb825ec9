//! Regression test for issue 5: the sanitizer meets its precision, recall and leak goals on a
//! small seeded corpus.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis_pii_bench::corpus::{CorpusSpec, generate};
use portcullis_pii_bench::predict;
use portcullis_pii_bench::score::{render, score};
use portcullis_sanitize::{PiiConfig, Sanitizer};

#[test]
fn regression_5_goals_hold_on_a_small_corpus() {
    let corpus = generate(CorpusSpec {
        seed: 5,
        messages: 120,
        message_bytes: 4096,
    });
    let sanitizer =
        Sanitizer::new(PiiConfig::default(), b"regression-key-0123456789abcdef").unwrap();
    let report = score(&corpus, &predict(&sanitizer, &corpus));
    let table = render(&report);
    let s = |ty: &str| report.per_type[ty];
    for ty in ["EMAIL", "US_SSN", "IBAN", "IP", "CREDIT_CARD"] {
        assert!(s(ty).gold > 20, "{ty} too rare in the corpus\n{table}");
        assert!(
            s(ty).precision >= 0.995 && s(ty).recall >= 0.995,
            "{ty}\n{table}"
        );
    }
    assert!(
        s("PHONE").recall >= 0.95 && s("PHONE").precision >= 0.90,
        "PHONE\n{table}"
    );
    assert!(s("SECRET").recall >= 0.98, "SECRET\n{table}");
    assert!(report.secret_fp_per_100kib <= 1.0, "{table}");
    assert!(report.over_redaction <= 0.01, "{table}");
}

#[test]
fn corpus_is_deterministic_and_labels_are_on_char_boundaries() {
    let spec = CorpusSpec {
        seed: 9,
        messages: 20,
        message_bytes: 2048,
    };
    let a = generate(spec);
    let b = generate(spec);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.text, y.text);
        assert!(x.text.len() >= 2048);
        for span in &x.entities {
            assert!(x.text.get(span.start..span.end).is_some());
        }
    }
}
