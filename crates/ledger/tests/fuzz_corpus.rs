//! Replays the `ledger_decode` fuzz corpus and random bytes through the fuzz target's property.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use portcullis_ledger::fuzzing::check_ledger_bytes;
use proptest::prelude::*;

#[test]
fn replays_the_fuzz_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ledger_decode");
    let mut n_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        check_ledger_bytes(&std::fs::read(&path).unwrap());
        n_files += 1;
    }
    assert!(
        n_files >= 10,
        "corpus at {} has only {n_files} files",
        dir.display()
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_ledger_bytes(&data);
    }

    #[test]
    fn mutated_bodies_never_panic(
        seq in 0u64..4,
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
    ) {
        let mut body = br#"{"correlation_id":null,"data":{"seq":3},"decision":"info","kind":"k","reason":"r","seq":1,"subject":null,"time":"2026-01-01T00:00:00Z"}"#.to_vec();
        for (idx, byte) in flips {
            let len = body.len();
            body[idx % len] = byte;
        }
        let mut data = seq.to_le_bytes().to_vec();
        data.extend_from_slice(&body);
        check_ledger_bytes(&data);
    }
}
