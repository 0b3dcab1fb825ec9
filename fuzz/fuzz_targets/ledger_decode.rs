//! Fuzz the ledger record decoder and the streaming verifier (records and checkpoints) with
//! arbitrary bytes; the checked property lives in `portcullis_ledger::fuzzing` so this target and
//! the corpus replay test (`crates/ledger/tests/fuzz_corpus.rs`) cannot drift.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_ledger::fuzzing::check_ledger_bytes;

fuzz_target!(|data: &[u8]| {
    check_ledger_bytes(data);
});
