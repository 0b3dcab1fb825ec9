//! Fuzz the DNS guard's parse-and-answer step with arbitrary bytes as a query, from a plain and
//! from a mapped client, over UDP and TCP, with a fixture resolver and a fixed policy (no
//! network): an answer or a clean refusal within the UDP size limit, no lookup of a refused
//! name, only vetted addresses answered. The checked property lives in
//! `portcullis_egress::fuzzing::check_dns_packet`, which the crate's `fuzz_corpus` test replays
//! over `fuzz/corpus/dns_packet/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = portcullis_egress::fuzzing::check_dns_packet(data) {
        panic!("{violation}");
    }
});
