//! The table of bad capsules, each refused with its reason code, plus the accepted cases.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::fuzzing::{FIXTURE_NOW, fixture_key, fixture_trust_store};
use crate::json::canonical_bytes;
use crate::sign::hop_record_bytes;
use crate::token::{self, body_hash, capsule_message, hop_message};
use crate::trust::{Algorithm, IssuerEntry, TrustStore, TrustStoreFile};
use crate::{CapsuleLimits, NodeSigner, Scope, VerifyError, b64, verify};

const NOW: i64 = FIXTURE_NOW;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

fn trust() -> TrustStore {
    fixture_trust_store().unwrap()
}

fn base_body() -> Value {
    json!({
        "v": 1, "id": "c1", "iss": "fuzz", "kid": "fuzz-ed", "iat": NOW - 60, "ttl": 3600,
        "max_hops": 2, "scope": "peers", "denies": ["tools:call:shell.*"],
        "contracts": [{
            "id": "k1", "patterns": ["tools:call:github.*"],
            "subject": {"agents": [], "roles": ["intern"], "nodes": [], "tags": []},
            "valid_to": NOW + 600, "immutable": true, "quota": {"limit": 5, "window_secs": 60}
        }],
        "ext": {"note": {"anything": [1, "x", null]}}
    })
}

/// `base_body()` with top-level fields replaced (a `null` removes the field).
fn body_with(changes: Value) -> Value {
    let mut body = base_body();
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value.clone();
        }
    }
    body
}

fn issuer_key(kid: &str) -> crate::SigningKey {
    match kid {
        "fuzz-k1" => fixture_key(Algorithm::Secp256k1, 2),
        "fuzz-revoked" => fixture_key(Algorithm::Ed25519, 3),
        "fuzz-narrow" => fixture_key(Algorithm::Ed25519, 4),
        _ => fixture_key(Algorithm::Ed25519, 1),
    }
    .unwrap()
}

/// Signs exactly `p` (no checks) with the key its `kid` names.
fn sign_raw(p: &[u8], key: &crate::SigningKey) -> String {
    token::encode(p, &key.sign(&capsule_message(p)))
}

fn signed(body: &Value) -> String {
    let kid = body["kid"].as_str().unwrap_or("fuzz-ed");
    sign_raw(&canonical_bytes(body).unwrap(), &issuer_key(kid))
}

fn node_key(n: u8) -> crate::SigningKey {
    let alg = if n == 4 {
        Algorithm::Secp256k1
    } else {
        Algorithm::Ed25519
    };
    fixture_key(alg, 10 + n).unwrap()
}

fn node_signer(n: u8) -> NodeSigner {
    NodeSigner {
        node: format!("n{n}"),
        kid: format!("n{n}-key"),
        key: node_key(n),
    }
}

/// Appends a hop record with no checks, signed by node `n`'s key.
fn append_hop_raw(token: &str, depth: u64, kid: &str, node: &str, n: u8) -> String {
    let raw = token::decode(token.as_bytes()).unwrap();
    let prev = raw.hops.last().map_or(raw.sig, |hop| hop.sig);
    let record = hop_record_bytes(depth, kid, node);
    let sig = node_key(n).sign(&hop_message(&body_hash(&raw.body), &record, &prev));
    token::append(token, &record, &sig)
}

/// Replaces segment `idx` (0 = P, 1 = sig, 2 = first H, ...) with `bytes`.
fn replace_segment(token: &str, idx: usize, bytes: &[u8]) -> String {
    let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    segments[idx + 1] = b64::encode(bytes);
    segments.join(".")
}

fn segment(token: &str, idx: usize) -> Vec<u8> {
    b64::decode(token.split('.').nth(idx + 1).unwrap().as_bytes()).unwrap()
}

#[track_caller]
fn check_with(
    token: &str,
    trust: &TrustStore,
    limits: &CapsuleLimits,
    expected: Result<(), VerifyError>,
) {
    let got = verify(token.as_bytes(), trust, limits, now()).map(|_| ());
    assert_eq!(got, expected, "token of {} bytes", token.len());
}

#[track_caller]
fn check(token: &str, expected: Result<(), VerifyError>) {
    check_with(token, &trust(), &CapsuleLimits::default(), expected);
}

#[test]
fn valid_capsules_verify_for_both_algorithms() {
    check(&signed(&base_body()), Ok(()));
    check(&signed(&body_with(json!({"kid": "fuzz-k1"}))), Ok(()));
    check(&signed(&body_with(json!({"ext": null}))), Ok(()));
    let verified = verify(
        signed(&base_body()).as_bytes(),
        &trust(),
        &CapsuleLimits::default(),
        now(),
    )
    .unwrap();
    assert_eq!(verified.expires_at(), (NOW - 60 + 3600) as u64);
    assert_eq!(verified.denies()[0].as_str(), "tools:call:shell.*");
    let contract = &verified.contracts()[0];
    assert_eq!(contract.id, "c1::k1");
    assert_eq!(
        (contract.valid_from, contract.valid_to),
        ((NOW - 60) as u64, (NOW + 600) as u64)
    );
    assert!(contract.immutable);
    assert_eq!(verified.signing_kids(), vec!["fuzz-ed"]);
    let debug = format!("{verified:?}");
    assert!(debug.contains("c1") && !debug.contains(verified.token().split('.').nth(1).unwrap()));
}

#[test]
fn size_and_encoding() {
    let good = signed(&base_body());
    check(&"v1.".repeat(1366), Err(VerifyError::TooLarge));
    check(
        &good.replacen("v1.", "v2.", 1),
        Err(VerifyError::BadEncoding),
    );
    check(
        good.split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
            .as_str(),
        Err(VerifyError::BadEncoding),
    );
    check(&format!("{good}."), Err(VerifyError::BadEncoding));
    check(&format!("{good}.eyJ9"), Err(VerifyError::BadEncoding));
    check(&good.replacen('.', "=.", 2), Err(VerifyError::BadEncoding));
    check(&format!("{good}=="), Err(VerifyError::BadEncoding));
    check(
        &good.replace('-', "+"),
        if good.contains('-') {
            Err(VerifyError::BadEncoding)
        } else {
            Ok(())
        },
    );
}

#[test]
fn exactly_4096_bytes_pass_and_4097_are_refused() {
    // A 512-byte string limit would stop one pad string; spread the padding over several.
    let sized = |target: usize| {
        (0..6000usize)
            .map(|pad| {
                let parts: Vec<Value> = (0..pad / 500)
                    .map(|_| json!("y".repeat(500)))
                    .chain([json!("z".repeat(pad % 500))])
                    .collect();
                signed(&body_with(json!({"ext": {"pad": parts}})))
            })
            .find(|token| token.len() == target)
            .unwrap()
    };
    check(&sized(4096), Ok(()));
    check(&sized(4097), Err(VerifyError::TooLarge));
}

#[test]
fn flipped_bytes_are_refused() {
    for kid in ["fuzz-ed", "fuzz-k1"] {
        let good = signed(&body_with(json!({"kid": kid})));
        let mut p = segment(&good, 0);
        let at = p.windows(5).position(|w| w == b"\"c1\",").unwrap() + 2;
        p[at] = b'2';
        check(
            &replace_segment(&good, 0, &p),
            Err(VerifyError::BadSignature),
        );
        let mut sig = segment(&good, 1);
        sig[5] ^= 1;
        check(
            &replace_segment(&good, 1, &sig),
            Err(VerifyError::BadSignature),
        );
    }
}

#[test]
fn non_canonical_bodies_are_refused_even_when_signed() {
    let canonical = String::from_utf8(canonical_bytes(&base_body()).unwrap()).unwrap();
    let key = issuer_key("fuzz-ed");
    let case = |text: String| sign_raw(text.as_bytes(), &key);
    check(&case(canonical.clone()), Ok(()));
    check(
        &case(canonical.replacen(",", ", ", 1)),
        Err(VerifyError::NotCanonical),
    );
    check(
        &case(format!("{canonical}\n")),
        Err(VerifyError::NotCanonical),
    );
    let reordered = canonical.replacen("\"contracts\"", "\"zz\"", 1);
    assert_ne!(reordered, canonical);
    // Reordered keys: `v` moved to the front.
    let moved = format!(
        "{{\"v\":1,{}",
        canonical
            .trim_start_matches('{')
            .replacen(",\"v\":1", "", 1)
    );
    check(&case(moved), Err(VerifyError::NotCanonical));
    check(
        &case(canonical.replacen("\"v\":1", "\"v\":1.0", 1)),
        Err(VerifyError::BadNumber),
    );
    check(
        &case(canonical.replacen("\"v\":1", "\"v\":1e0", 1)),
        Err(VerifyError::BadNumber),
    );
    check(
        &case(canonical.replacen("\"c1\"", "\"\\u00631\"", 1)),
        Err(VerifyError::NotCanonical),
    );
    check(
        &case(canonical.replacen("\"id\":\"c1\"", "\"id\":\"c1\",\"id\":\"c1\"", 1)),
        Err(VerifyError::DuplicateKey),
    );
    check(
        &case(canonical.replacen("\"ttl\":3600", "\"ttl\":-1", 1)),
        Err(VerifyError::BadNumber),
    );
    check(
        &case(canonical.replacen("\"ttl\":3600", "\"ttl\":3600,", 1)),
        Err(VerifyError::BadJson),
    );
    check(
        &sign_raw(b"{\"id\":\"\xff\"}", &key),
        Err(VerifyError::BadJson),
    );
    let deep = canonical
        .replacen("\"note\":", "\"note\":[[[[[[[[", 1)
        .replacen("]}}", "]]]]]]]]}}", 1);
    check(&case(deep), Err(VerifyError::LimitExceeded));
    check(
        &case(canonical.replacen("\"iat\":", "\"iat\":9", 1).replacen(
            "\"iat\":9",
            "\"iat\":99999999999",
            1,
        )),
        Err(VerifyError::BadNumber),
    );
}

#[test]
fn field_rules() {
    check(
        &signed(&body_with(json!({"allow": ["tools:*"]}))),
        Err(VerifyError::GrantsRights),
    );
    check(
        &signed(&body_with(json!({"remove_denies": ["tools:*"]}))),
        Err(VerifyError::GrantsRights),
    );
    check(
        &signed(&body_with(json!({"revoke": ["immutable-1"]}))),
        Err(VerifyError::GrantsRights),
    );
    let mut contract_allow = base_body();
    contract_allow["contracts"][0]["allow"] = json!(["tools:*"]);
    check(&signed(&contract_allow), Err(VerifyError::GrantsRights));
    check(
        &signed(&body_with(json!({"color": "red"}))),
        Err(VerifyError::UnknownField),
    );
    let mut subject_extra = base_body();
    subject_extra["contracts"][0]["subject"]["users"] = json!([]);
    check(&signed(&subject_extra), Err(VerifyError::UnknownField));
    check(
        &signed(&body_with(json!({"denies": null}))),
        Err(VerifyError::BadField),
    );
    check(
        &signed(&body_with(json!({"ttl": "1h"}))),
        Err(VerifyError::BadField),
    );
    check(
        &signed(&body_with(json!({"scope": "world"}))),
        Err(VerifyError::BadField),
    );
    check(
        &signed(&body_with(json!({"id": "a::b"}))),
        Err(VerifyError::BadField),
    );
    check(
        &signed(&body_with(json!({"id": ""}))),
        Err(VerifyError::BadField),
    );
    check(&signed(&json!([1])), Err(VerifyError::BadField));
}

#[test]
fn trust_store_lookup_and_signature() {
    check(
        &signed(&body_with(json!({"kid": "nobody"}))),
        Err(VerifyError::UnknownKid),
    );
    check(
        &signed(&body_with(json!({"kid": "n1-key"}))),
        Err(VerifyError::UnknownKid),
    );
    check(
        &signed(&body_with(json!({"kid": "fuzz-revoked"}))),
        Err(VerifyError::RevokedKid),
    );
    // An Ed25519 signature presented for a secp256k1 key.
    let p = canonical_bytes(&body_with(json!({"kid": "fuzz-k1"}))).unwrap();
    check(
        &sign_raw(&p, &issuer_key("fuzz-ed")),
        Err(VerifyError::BadSignature),
    );
    // The high-S twin of a valid secp256k1 signature.
    let good = sign_raw(&p, &issuer_key("fuzz-k1"));
    check(&good, Ok(()));
    let sig = k256::ecdsa::Signature::from_slice(&segment(&good, 1)).unwrap();
    let (r, s) = sig.split_scalars();
    let high = k256::ecdsa::Signature::from_scalars(r, -s).unwrap();
    check(
        &replace_segment(&good, 1, &high.to_bytes()),
        Err(VerifyError::HighS),
    );
    // The same signature in DER.
    check(
        &replace_segment(&good, 1, sig.to_der().as_bytes()),
        Err(VerifyError::BadSignatureLength),
    );
    check(
        &replace_segment(&good, 1, &[0u8; 64]),
        Err(VerifyError::BadSignature),
    );
}

#[test]
fn header_fields() {
    check(
        &signed(&body_with(json!({"v": 2}))),
        Err(VerifyError::UnsupportedVersion),
    );
    check(
        &signed(&body_with(json!({"iss": "someone-else"}))),
        Err(VerifyError::IssuerMismatch),
    );
    check(
        &signed(&body_with(json!({"max_hops": 9}))),
        Err(VerifyError::BadMaxHops),
    );
    let file = TrustStoreFile {
        issuers: vec![IssuerEntry {
            id: "fuzz".into(),
            kid: "fuzz-ed".into(),
            alg: Algorithm::Ed25519,
            key_b64: b64::encode(&issuer_key("fuzz-ed").public_key().to_bytes()),
            scopes: vec![Scope::None],
            patterns: vec!["*".into()],
            revoked: false,
        }],
        nodes: vec![],
    };
    let only_none = TrustStore::from_file(file).unwrap();
    let limits = CapsuleLimits::default();
    check_with(
        &signed(&base_body()),
        &only_none,
        &limits,
        Err(VerifyError::ScopeNotAllowed),
    );
    check_with(
        &signed(&body_with(json!({"scope": "none"}))),
        &only_none,
        &limits,
        Ok(()),
    );
}

#[test]
fn time_rules() {
    check(
        &signed(&body_with(json!({"ttl": 0}))),
        Err(VerifyError::BadTtl),
    );
    check(
        &signed(&body_with(json!({"ttl": 7 * 86_400 + 1}))),
        Err(VerifyError::BadTtl),
    );
    check(
        &signed(&body_with(json!({"ttl": 7 * 86_400, "contracts": []}))),
        Ok(()),
    );
    check(
        &signed(&body_with(json!({"iat": NOW + 61}))),
        Err(VerifyError::FutureIat),
    );
    check(
        &signed(&body_with(json!({"iat": NOW + 60, "contracts": []}))),
        Ok(()),
    );
    check(
        &signed(&body_with(json!({"iat": NOW + 10 * 365 * 86_400}))),
        Err(VerifyError::FutureIat),
    );
    check(
        &signed(&body_with(json!({"iat": NOW - 3600}))),
        Err(VerifyError::Expired),
    );
    check(
        &signed(&body_with(json!({"iat": NOW - 3599, "contracts": []}))),
        Ok(()),
    );
    let short_age = CapsuleLimits {
        max_age_secs: 30,
        ..CapsuleLimits::default()
    };
    check_with(
        &signed(&base_body()),
        &trust(),
        &short_age,
        Err(VerifyError::TooOld),
    );
}

#[test]
fn hop_rules() {
    let trust = trust();
    let limits = CapsuleLimits::default();
    let issued = signed(&body_with(json!({"max_hops": 3})));
    let first = verify(issued.as_bytes(), &trust, &limits, now()).unwrap();
    let one = first.relay(&node_signer(1)).unwrap();
    check(&one, Ok(()));
    let two = verify(one.as_bytes(), &trust, &limits, now())
        .unwrap()
        .relay(&node_signer(4))
        .unwrap();
    check(&two, Ok(()));
    let verified_two = verify(two.as_bytes(), &trust, &limits, now()).unwrap();
    assert_eq!(verified_two.hash(), first.hash());
    assert_eq!(
        verified_two.signing_kids(),
        vec!["fuzz-ed", "n1-key", "n4-key"]
    );
    assert_eq!(
        verified_two.relay(&node_signer(1)),
        Err(crate::RelayError::AlreadyRelayed)
    );
    // A node twice among the hops.
    check(
        &append_hop_raw(&two, 3, "n1-key", "n1", 1),
        Err(VerifyError::DuplicateNode),
    );
    check(&append_hop_raw(&two, 3, "n2-key", "n2", 2), Ok(()));
    // More hops than max_hops.
    let capped = signed(&body_with(json!({"max_hops": 1})));
    let capped_one = verify(capped.as_bytes(), &trust, &limits, now())
        .unwrap()
        .relay(&node_signer(1))
        .unwrap();
    check(&capped_one, Ok(()));
    let capped_verified = verify(capped_one.as_bytes(), &trust, &limits, now()).unwrap();
    assert!(!capped_verified.can_relay());
    assert_eq!(
        capped_verified.relay(&node_signer(2)),
        Err(crate::RelayError::HopLimitReached)
    );
    check(
        &append_hop_raw(&capped_one, 2, "n2-key", "n2", 2),
        Err(VerifyError::TooManyHops),
    );
    // Scope none is never relayed.
    let local = verify(
        signed(&body_with(json!({"scope": "none"}))).as_bytes(),
        &trust,
        &limits,
        now(),
    )
    .unwrap();
    assert_eq!(
        local.relay(&node_signer(1)),
        Err(crate::RelayError::ScopeNone)
    );
    // Depths out of order, unknown or revoked keys, a node not bound to its kid, bad signatures.
    check(
        &append_hop_raw(&issued, 2, "n1-key", "n1", 1),
        Err(VerifyError::HopOutOfOrder),
    );
    check(
        &append_hop_raw(&issued, 1, "nobody", "n1", 1),
        Err(VerifyError::UnknownNodeKid),
    );
    check(
        &append_hop_raw(&issued, 1, "fuzz-ed", "fuzz", 1),
        Err(VerifyError::UnknownNodeKid),
    );
    check(
        &append_hop_raw(&issued, 1, "n1-key", "n2", 1),
        Err(VerifyError::HopNodeMismatch),
    );
    check(
        &append_hop_raw(&issued, 1, "n5-key", "n5", 5),
        Err(VerifyError::RevokedNodeKid),
    );
    check(
        &append_hop_raw(&issued, 1, "n1-key", "n1", 2),
        Err(VerifyError::BadHopSignature),
    );
    let mut sig = segment(&one, 3);
    sig[0] ^= 1;
    check(
        &replace_segment(&one, 3, &sig),
        Err(VerifyError::BadHopSignature),
    );
    // Hop records must be canonical and exactly {depth, kid, node}.
    let record = |text: &str| replace_segment(&one, 2, text.as_bytes());
    check(&record(r#"{"depth":1,"kid":"n1-key","node":"n1"}"#), Ok(()));
    check(
        &record(r#"{"kid":"n1-key","depth":1,"node":"n1"}"#),
        Err(VerifyError::NotCanonical),
    );
    check(
        &record(r#"{"depth":1,"kid":"n1-key","node":"n1","x":1}"#),
        Err(VerifyError::BadHop),
    );
    check(
        &record(r#"{"depth":1,"kid":"n1-key"}"#),
        Err(VerifyError::BadHop),
    );
    check(
        &record(r#"{"depth":0,"kid":"n1-key","node":"n1"}"#),
        Err(VerifyError::BadHop),
    );
    // A hop moved onto another capsule does not verify.
    let other = signed(&body_with(json!({"id": "c2", "max_hops": 3})));
    let hop_segments: Vec<&str> = one.split('.').skip(3).collect();
    check(
        &format!("{other}.{}", hop_segments.join(".")),
        Err(VerifyError::BadHopSignature),
    );
    // Nine hop records are refused while decoding, whatever max_hops says.
    let mut many = issued.clone();
    for depth in 1..=9 {
        many = append_hop_raw(&many, depth, "n1-key", "n1", 1);
    }
    check(&many, Err(VerifyError::TooManyHops));
}

#[test]
fn content_rules() {
    let narrow = |changes: Value| {
        let mut body = body_with(changes);
        body["kid"] = json!("fuzz-narrow");
        body["iss"] = json!("narrow");
        signed(&body)
    };
    check(
        &narrow(json!({"denies": ["tools:call:x"], "contracts": []})),
        Ok(()),
    );
    check(
        &narrow(json!({"denies": ["net:host:*"]})),
        Err(VerifyError::PatternNotAllowed),
    );
    check(
        &narrow(json!({"denies": ["*"]})),
        Err(VerifyError::PatternNotAllowed),
    );
    check(
        &narrow(json!({"denies": [], "contracts": [{"id": "k", "patterns": ["llm:*"]}]})),
        Err(VerifyError::PatternNotAllowed),
    );
    check(
        &signed(&body_with(json!({"denies": ["to*ls"]}))),
        Err(VerifyError::BadPattern),
    );
    let contract = |value: Value| signed(&body_with(json!({"contracts": [value]})));
    check(
        &contract(json!({"id": "k", "patterns": []})),
        Err(VerifyError::BadContract),
    );
    check(
        &contract(
            json!({"id": "k", "patterns": ["a:b"], "valid_from": NOW + 10, "valid_to": NOW + 5}),
        ),
        Err(VerifyError::BadContract),
    );
    check(
        &contract(json!({"id": "k", "patterns": ["a:b"], "valid_to": NOW - 120})),
        Err(VerifyError::BadContract),
    );
    check(
        &contract(json!({"id": "k", "patterns": ["a:b"], "quota": {"limit": 1, "window_secs": 0}})),
        Err(VerifyError::BadContract),
    );
    check(
        &contract(json!({"id": "k", "patterns": ["a:b"], "auto_renew_secs": 0})),
        Err(VerifyError::BadContract),
    );
    check(
        &contract(json!({"id": "k", "patterns": ["a:b"], "valid_from": null})),
        Ok(()),
    );
    let twice =
        json!({"contracts": [{"id": "k", "patterns": ["a:b"]}, {"id": "k", "patterns": ["a:c"]}]});
    check(
        &signed(&body_with(twice)),
        Err(VerifyError::DuplicateContract),
    );
}

#[test]
fn every_reason_code_is_reached_by_a_test_above() {
    // Kept honest by hand: the tests above name every variant at least once.
    let source = include_str!("tests.rs");
    for reason in VerifyError::ALL {
        let name = format!("{reason:?}");
        assert!(
            source.contains(&format!("VerifyError::{name})")),
            "no test refuses with {name}"
        );
    }
}
