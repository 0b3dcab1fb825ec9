//! Replays every file of `fuzz/corpus/capsule_verify/` through the fuzz target's checks, so CI
//! exercises the corpus without a nightly toolchain.
//!
//! File names say what verification at `FIXTURE_NOW` must answer: `ok__*` verifies,
//! `capsule_<reason>__*` is refused with that reason, `any__*` only must not break a property.
//! `PORTCULLIS_REGENERATE_CORPUS=1 cargo test -p portcullis-capsule --test fuzz_corpus` rewrites
//! the generated files from `corpus_cases()`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::{Value, json};

use portcullis_capsule::fuzzing::{FIXTURE_NOW, check_token, fixture_key, fixture_trust_store};
use portcullis_capsule::{
    Algorithm, CAPSULE_CONTEXT, CapsuleLimits, HOP_CONTEXT, NodeSigner, SigningKey, body_hash,
    decode_b64, encode_b64, verify,
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/capsule_verify")
}

fn now() -> Timestamp {
    Timestamp::from_second(FIXTURE_NOW).unwrap()
}

#[test]
fn corpus_replays_without_breaking_a_property() {
    if std::env::var_os("PORTCULLIS_REGENERATE_CORPUS").is_some() {
        for (name, bytes) in corpus_cases() {
            std::fs::write(corpus_dir().join(name), bytes).unwrap();
        }
    }
    let trust = fixture_trust_store().unwrap();
    let mut n_files = 0;
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let data = std::fs::read(&path).unwrap();
        check_token(&data, &trust);
        let expected = name.split("__").next().unwrap();
        let got = verify(&data, &trust, &CapsuleLimits::default(), now()).map(|_| ());
        match expected {
            "any" => {}
            "ok" => assert_eq!(got, Ok(()), "{name}"),
            code => assert_eq!(got.map_err(|err| err.code()), Err(code), "{name}"),
        }
        n_files += 1;
    }
    assert!(n_files >= 20, "the corpus lost files: {n_files}");
}

#[test]
fn corpus_files_match_their_generator() {
    for (name, bytes) in corpus_cases() {
        let on_disk = std::fs::read(corpus_dir().join(&name)).unwrap_or_default();
        // ECDSA signatures are deterministic (RFC 6979), so every case regenerates byte for byte.
        assert!(on_disk == bytes, "{name} is stale: regenerate the corpus");
    }
}

fn body(changes: Value) -> Value {
    let mut res = json!({
        "v": 1, "id": "fz1", "iss": "fuzz", "kid": "fuzz-ed", "iat": FIXTURE_NOW - 60,
        "ttl": 3600, "max_hops": 2, "scope": "peers", "denies": ["tools:call:shell.*"],
        "contracts": [{"id": "k", "patterns": ["llm:model:*"], "subject": {"roles": ["intern"]},
                       "immutable": true, "quota": {"limit": 3, "window_secs": 60}}],
        "ext": {}
    });
    for (key, value) in changes.as_object().unwrap() {
        res[key] = value.clone();
    }
    res
}

fn issuer_key(kid: &str) -> SigningKey {
    match kid {
        "fuzz-k1" => fixture_key(Algorithm::Secp256k1, 2),
        "fuzz-revoked" => fixture_key(Algorithm::Ed25519, 3),
        "fuzz-narrow" => fixture_key(Algorithm::Ed25519, 4),
        _ => fixture_key(Algorithm::Ed25519, 1),
    }
    .unwrap()
}

fn sign_bytes(p: &[u8], key: &SigningKey) -> String {
    let sig = key.sign(&[CAPSULE_CONTEXT, p].concat());
    format!("v1.{}.{}", encode_b64(p), encode_b64(&sig))
}

fn sign(body: &Value) -> String {
    sign_bytes(
        &serde_jcs::to_vec(body).unwrap(),
        &issuer_key(body["kid"].as_str().unwrap()),
    )
}

fn node(n: u8) -> NodeSigner {
    let alg = if n == 4 {
        Algorithm::Secp256k1
    } else {
        Algorithm::Ed25519
    };
    NodeSigner {
        node: format!("n{n}"),
        kid: format!("n{n}-key"),
        key: fixture_key(alg, 10 + n).unwrap(),
    }
}

fn relay(token: &str, n: u8) -> String {
    verify(
        token.as_bytes(),
        &fixture_trust_store().unwrap(),
        &CapsuleLimits::default(),
        now(),
    )
    .unwrap()
    .relay(&node(n))
    .unwrap()
}

/// Appends a hop with no checks at all.
fn raw_hop(token: &str, depth: u64, n: u8) -> String {
    let segments: Vec<&str> = token.split('.').collect();
    let p = decode_b64(segments[1]).unwrap();
    let prev = decode_b64(segments.last().unwrap()).unwrap();
    let record = format!(r#"{{"depth":{depth},"kid":"n{n}-key","node":"n{n}"}}"#);
    let message = [HOP_CONTEXT, &body_hash(&p), record.as_bytes(), &prev].concat();
    let sig = node(n).key.sign(&message);
    format!(
        "{token}.{}.{}",
        encode_b64(record.as_bytes()),
        encode_b64(&sig)
    )
}

fn corpus_cases() -> Vec<(String, Vec<u8>)> {
    let ed = sign(&body(json!({})));
    let k1 = sign(&body(json!({"kid": "fuzz-k1"})));
    let canonical = String::from_utf8(serde_jcs::to_vec(&body(json!({}))).unwrap()).unwrap();
    let ed_key = issuer_key("fuzz-ed");
    let resign = |text: String| sign_bytes(text.as_bytes(), &ed_key);
    let k1_sig = decode_b64(k1.split('.').nth(2).unwrap()).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(&k1_sig).unwrap();
    let (r, s) = sig.split_scalars();
    let high = k256::ecdsa::Signature::from_scalars(r, -s).unwrap();
    let with_sig = |token: &str, sig: &[u8]| {
        let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
        segments[2] = encode_b64(sig);
        segments.join(".")
    };
    let mut nine = ed.clone();
    for depth in 1..=9 {
        nine = raw_hop(&nine, depth, 1);
    }
    let one_hop = relay(&ed, 1);
    let text_cases: Vec<(&str, String)> = vec![
        ("ok__ed25519", ed.clone()),
        ("ok__secp256k1", k1.clone()),
        ("ok__one_hop", one_hop.clone()),
        ("ok__two_hops_mixed_algorithms", relay(&one_hop, 4)),
        (
            "ok__scope_none_no_ext",
            sign(&body(
                json!({"scope": "none", "ext": {"a": [1, {"b": null}]}}),
            )),
        ),
        (
            "ok__narrow_issuer",
            sign(&body(
                json!({"kid": "fuzz-narrow", "iss": "narrow", "denies": ["tools:x"], "contracts": []}),
            )),
        ),
        (
            "capsule_too_many_hops__over_max_hops",
            raw_hop(&relay(&sign(&body(json!({"max_hops": 1}))), 1), 2, 2),
        ),
        ("capsule_too_many_hops__nine_records", nine),
        (
            "capsule_duplicate_node__node_twice",
            raw_hop(&one_hop, 2, 1),
        ),
        (
            "capsule_hop_out_of_order__depth_2_first",
            raw_hop(&ed, 2, 1),
        ),
        (
            "capsule_expired__old",
            sign(&body(json!({"iat": FIXTURE_NOW - 7200}))),
        ),
        (
            "capsule_future_iat__far_future",
            sign(&body(json!({"iat": FIXTURE_NOW + 86_400}))),
        ),
        ("capsule_bad_ttl__zero", sign(&body(json!({"ttl": 0})))),
        (
            "capsule_revoked_kid__revoked",
            sign(&body(json!({"kid": "fuzz-revoked"}))),
        ),
        (
            "capsule_unknown_kid__unknown",
            sign(&body(json!({"kid": "who"}))),
        ),
        (
            "capsule_pattern_not_allowed__narrow",
            sign(&body(json!({"kid": "fuzz-narrow", "iss": "narrow"}))),
        ),
        (
            "capsule_grants_rights__allow",
            sign(&body(json!({"allow": ["tools:*"]}))),
        ),
        (
            "capsule_not_canonical__whitespace",
            resign(canonical.replacen(',', ", ", 1)),
        ),
        (
            "capsule_duplicate_key__dup",
            resign(canonical.replacen("\"v\":1", "\"v\":1,\"v\":1", 1)),
        ),
        (
            "capsule_bad_number__float",
            resign(canonical.replacen("\"v\":1", "\"v\":1.0", 1)),
        ),
        (
            "capsule_limit_exceeded__deep",
            resign(canonical.replacen("\"ext\":{}", "\"ext\":{\"a\":[[[[[[[[1]]]]]]]]}", 1)),
        ),
        ("capsule_high_s__twin", with_sig(&k1, &high.to_bytes())),
        (
            "capsule_bad_signature_length__der",
            with_sig(&k1, sig.to_der().as_bytes()),
        ),
        (
            "capsule_bad_signature__ed25519_sig_for_k1_key",
            with_sig(&k1, &ed_key.sign(b"x")),
        ),
        ("capsule_bad_encoding__padding", format!("{ed}==")),
        ("capsule_bad_encoding__prefix_only", "v1.".into()),
        ("capsule_bad_encoding__empty_segments", "v1..".into()),
        (
            "capsule_too_large__4097",
            format!("v1.{}", "A".repeat(4094)),
        ),
        (
            "any__json_object",
            r#"{"a":[1,2,{"b":null,"c":"\u00e9"}]}"#.into(),
        ),
        ("any__lone_surrogate", r#""\ud800""#.into()),
    ];
    let mut res: Vec<(String, Vec<u8>)> = text_cases
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text.into_bytes()))
        .collect();
    res.push((
        "capsule_bad_encoding__binary".into(),
        vec![0xff, 0x00, b'v', b'1', b'.', 0x80],
    ));
    res.push(("capsule_bad_encoding__empty".into(), Vec::new()));
    res
}
