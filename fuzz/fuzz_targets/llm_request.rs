//! Fuzz the LLM front's payload handling with arbitrary bytes: chat and embeddings request
//! checks, the worst case the budget reserves, token estimates and the rewrite for the provider;
//! SSE parsing of a provider stream (whole and in pieces) and its rewrite; whole-response
//! restore. The checked property lives in `portcullis_llm::fuzzing`, which the crate's
//! `fuzz_corpus` test replays over `fuzz/corpus/llm_request/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = portcullis_llm::fuzzing::check_llm_bytes(data) {
        panic!("{violation}");
    }
});
