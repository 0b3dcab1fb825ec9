//! Replays every file of fuzz/corpus/policy_decide through the fuzz target's checks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis_policy::fuzzing::FuzzFixture;

#[test]
fn replay_policy_decide_corpus() {
    let fixture = FuzzFixture::new().expect("fixture builds");
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/policy_decide");
    let mut n_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(problem) = fixture.check(&data) {
            panic!("{}: {problem}", path.display());
        }
        n_files += 1;
    }
    assert!(n_files >= 10, "corpus has {n_files} files");
}
