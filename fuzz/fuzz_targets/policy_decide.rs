//! Fuzz `PolicyEngine::decide` with arbitrary request JSON; the checked property lives in
//! `portcullis_policy::fuzzing` so this target and the corpus replay test cannot drift.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_policy::fuzzing::FuzzFixture;

static FIXTURE: OnceLock<Option<FuzzFixture>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(fixture) = FIXTURE.get_or_init(FuzzFixture::new) else {
        panic!("the fuzz fixture policy no longer builds");
    };
    if let Err(problem) = fixture.check(data) {
        panic!("{problem}");
    }
});
