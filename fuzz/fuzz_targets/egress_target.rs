//! Fuzzes the egress decision function: target parsing, rules, leases, vetting and preview.
//! The checked property lives in `portcullis_netpolicy::fuzzing::check_target`, which the
//! crate's `fuzz_corpus` test replays over `fuzz/corpus/egress_target/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = portcullis_netpolicy::fuzzing::check_target(data) {
        panic!("{violation}");
    }
});
