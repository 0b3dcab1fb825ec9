//! Fuzz the capsule token verifier, inspector and strict JSON parser with arbitrary bytes; the
//! checked property lives in `portcullis_capsule::fuzzing` so this target and the corpus replay
//! test (`crates/capsule/tests/fuzz_corpus.rs`) cannot drift.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_capsule::TrustStore;
use portcullis_capsule::fuzzing::{check_token, fixture_trust_store};

static TRUST: OnceLock<Option<TrustStore>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(trust) = TRUST.get_or_init(fixture_trust_store) else {
        panic!("the fuzz fixture trust store no longer builds");
    };
    check_token(data, trust);
});
