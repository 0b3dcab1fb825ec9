//! Fuzz the forward proxy with arbitrary bytes from a client connection (request heads,
//! `Proxy-Authorization`, absolute-form and CONNECT targets, header limits, pipelining): the
//! real proxy on a loopback listener, with fakes of the gateway's parts that never let anything
//! be dialed. The checked property lives in `portcullis_egress::fuzzing::check_proxy_head`,
//! which the crate's `fuzz_corpus` test replays over `fuzz/corpus/proxy_head/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = portcullis_egress::fuzzing::check_proxy_head(data) {
        panic!("{violation}");
    }
});
