//! Replays every file of `fuzz/corpus/pii_scan/` through the fuzz target's property, so CI runs
//! it without nightly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

#[test]
fn pii_scan_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pii_scan");
    let mut n_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        portcullis_sanitize::fuzzing::check_apply(&data);
        n_files += 1;
    }
    assert!(n_files >= 10, "corpus missing at {}", dir.display());
}
