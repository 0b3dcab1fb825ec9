//! Replays every file of `fuzz/corpus/mcp_front/` through the MCP adapter's part of the fuzz
//! property (argument rules, shapes, redaction), so CI runs it without nightly. The gateway's
//! `fuzz_corpus` test replays the same files through the whole front.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

#[test]
fn mcp_front_corpus_replays_through_the_rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mcp_front");
    let mut n_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(violation) = portcullis_mcp::fuzzing::check_body(&data) {
            panic!("{}: {violation}", path.display());
        }
        n_files += 1;
    }
    assert!(n_files >= 8, "corpus missing at {}", dir.display());
}
