//! Style rules run as ordinary tests: every source file opens with a `//!` line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

#[test]
fn every_file_opens_with_module_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["src", "tests", "benches"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text.starts_with("//!"),
                    "{} must open with `//!`",
                    path.display()
                );
                assert!(
                    text.lines().count() <= 600,
                    "{} is over 600 lines",
                    path.display()
                );
            }
        }
    }
}
