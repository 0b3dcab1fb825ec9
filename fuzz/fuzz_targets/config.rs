//! Fuzz configuration loading from TOML text, with `PORTCULLIS_<SECTION>_<KEY>` overrides
//! written as `#! NAME=value` lines: loading is deterministic, problems point at lines of the
//! text, and an accepted configuration written back out loads to the same configuration. The
//! checked property lives in `portcullis_gateway::fuzzing::check_config`, which the gateway's
//! `fuzz_corpus` test replays over `fuzz/corpus/config/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = portcullis_gateway::fuzzing::check_config(data) {
        panic!("{violation}");
    }
});
