//! `docs/ERROR_CODES.md` is generated from the registry and every domain's reason table; this test
//! fails when the file drifts. Regenerate with `PORTCULLIS_BLESS=1 cargo test -p portcullis-cli --test error_codes`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use portcullis_core::error::{ErrorCode, ReasonInfo, render_markdown};

fn domains() -> Vec<(&'static str, &'static [ReasonInfo])> {
    vec![
        ("Policy", portcullis_policy::REASONS),
        ("Capsule", portcullis_capsule::REASONS),
        ("Egress decision", portcullis_netpolicy::REASONS),
        ("Egress proxy and DNS guard", portcullis_egress::REASONS),
        ("Sanitizer", portcullis_sanitize::REASONS),
        ("Store", portcullis_store::REASONS),
        ("Budget", portcullis_budget::REASONS),
        ("MCP front", portcullis_mcp::REASONS),
        ("LLM front", portcullis_llm::REASONS),
        ("Ledger verification", portcullis_ledger::REASONS),
    ]
}

#[test]
fn error_codes_doc_is_current() {
    let expected = render_markdown(&domains());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ERROR_CODES.md");
    if std::env::var_os("PORTCULLIS_BLESS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/ERROR_CODES.md is stale; regenerate with \
         `PORTCULLIS_BLESS=1 cargo test -p portcullis-cli --test error_codes`"
    );
}

#[test]
fn reason_codes_are_unique_snake_case_and_distinct_from_registry_codes() {
    let registry: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    let mut seen = BTreeSet::new();
    for (domain, reasons) in domains() {
        for reason in reasons {
            assert!(
                reason
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{domain}: `{}` is not snake_case",
                reason.code
            );
            // A domain may reuse a registry code as its reason (e.g. `policy_error`), but two
            // domains must not define the same finer reason.
            if !registry.contains(reason.code) {
                assert!(
                    seen.insert(reason.code),
                    "{domain}: `{}` defined twice",
                    reason.code
                );
            }
        }
    }
}
