//! Fuzz what the MCP front does with a `/mcp` body before any upstream: JSON-RPC into rmcp's
//! model, broker verbs, the catalog lookup of an exposed tool name, the pinned schema, argument
//! rules (paths, URLs, deny patterns on normalized text), the ledger's shape of the arguments,
//! secret redaction, and RFC 6570 template routing of resource URIs. The checked property lives
//! in `portcullis_gateway::fuzzing::check_mcp_front` (which runs `portcullis_mcp::fuzzing`), and
//! both crates' `fuzz_corpus` tests replay `fuzz/corpus/mcp_front/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = portcullis_gateway::fuzzing::check_mcp_front(data) {
        panic!("{violation}");
    }
});
