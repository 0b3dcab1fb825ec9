//! Replays every file of `fuzz/corpus/mcp_front/` and `fuzz/corpus/config/` through the fuzz
//! targets' properties, so CI runs them without nightly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

#[track_caller]
fn replay(target: &str, check: fn(&[u8]) -> Result<(), String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(violation) = check(&data) {
            panic!("{}: {violation}", path.display());
        }
        n_files += 1;
    }
    assert!(n_files >= 8, "corpus missing at {}", dir.display());
}

#[test]
fn mcp_front_corpus_replays() {
    replay("mcp_front", portcullis_gateway::fuzzing::check_mcp_front);
}

#[test]
fn config_corpus_replays() {
    replay("config", portcullis_gateway::fuzzing::check_config);
}
