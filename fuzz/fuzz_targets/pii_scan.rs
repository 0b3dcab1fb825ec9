//! Fuzz target: scan + apply (redact, hash, synthetic) on arbitrary bytes must not panic, must
//! not leak a detected value and must restore synthetic output exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_sanitize::fuzzing::check_apply(data);
});
