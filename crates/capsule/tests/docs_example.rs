//! Keeps `docs/CAPSULES.md` true: its worked example re-signs and verifies byte for byte, and its
//! reason table lists exactly `REASONS`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use jiff::Timestamp;
use serde_json::Value;

use portcullis_capsule::{
    Algorithm, CapsuleLimits, REASONS, SigningKey, TrustStore, VerifyError, decode_b64,
    sign_capsule, verify,
};

fn doc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/CAPSULES.md"
    ))
    .unwrap()
}

/// The first fenced block after `marker`.
fn block_after(doc: &str, marker: &str) -> String {
    let rest = &doc[doc.find(marker).unwrap_or_else(|| panic!("no {marker:?}"))..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

#[test]
fn worked_example_signs_and_verifies_byte_for_byte() {
    let doc = doc();
    let key_file: Value = serde_json::from_str(&block_after(&doc, "`ops-2026.key`:")).unwrap();
    assert_eq!(key_file["alg"], "ed25519");
    let secret = decode_b64(key_file["secret_b64"].as_str().unwrap()).unwrap();
    let key = SigningKey::from_secret_bytes(Algorithm::Ed25519, &secret).unwrap();
    let trust = TrustStore::from_json(block_after(&doc, "`trust.json`:").as_bytes()).unwrap();
    let body = block_after(&doc, "`body.json`");
    let after_cat = &doc[doc.find("$ cat token.txt\n").unwrap()..];
    let token = after_cat.lines().nth(1).unwrap().trim();

    assert_eq!(
        sign_capsule(body.as_bytes(), "ops-2026", &key).unwrap(),
        token
    );
    let at = |text: &str| text.parse::<Timestamp>().unwrap();
    let limits = CapsuleLimits::default();
    let verified = verify(
        token.as_bytes(),
        &trust,
        &limits,
        at("2026-01-01T00:10:00Z"),
    )
    .unwrap();
    assert_eq!(verified.id(), "freeze-shell");
    assert!(doc.contains(&verified.hash_hex()));
    assert_eq!(verified.contracts()[0].id, "freeze-shell::interns-no-gpt4");
    let canonical = block_after(&doc, "decodes to P");
    assert_eq!(canonical.trim_end().as_bytes(), verified.body_bytes());
    assert_eq!(verified.body_bytes().len(), 290);
    assert_eq!(
        verify(
            token.as_bytes(),
            &trust,
            &limits,
            at("2026-01-01T01:00:00Z")
        )
        .map(|_| ()),
        Err(VerifyError::Expired)
    );
}

#[test]
fn reason_table_lists_every_code() {
    let doc = doc();
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `capsule_"))
        .map(|rest| rest.split('`').next().unwrap())
        .collect();
    let codes: Vec<&str> = REASONS
        .iter()
        .map(|info| info.code.strip_prefix("capsule_").unwrap())
        .collect();
    assert_eq!(documented, codes);
    for info in REASONS {
        let row = format!(
            "| `{}` | `{}` | {} |",
            info.code,
            info.maps_to.as_str(),
            info.summary
        );
        assert!(
            doc.contains(&row),
            "docs/CAPSULES.md lacks or misstates: {row}"
        );
    }
}
