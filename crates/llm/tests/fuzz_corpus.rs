//! Replays every file of `fuzz/corpus/llm_request/` through the fuzz target's property, so CI
//! runs it without nightly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

#[test]
fn llm_request_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/llm_request");
    let mut n_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(violation) = portcullis_llm::fuzzing::check_llm_bytes(&data) {
            panic!("{}: {violation}", path.display());
        }
        n_files += 1;
    }
    assert!(n_files >= 8, "corpus missing at {}", dir.display());
}
