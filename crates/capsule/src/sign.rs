//! Making tokens: signing a body as an issuer, appending a hop as a relaying node, and inspecting.

use jiff::Timestamp;
use serde_json::{Value, json};

use portcullis_core::GatePattern;

use crate::body::{self, CapsuleBody, MAX_HOPS, Scope, VERSION, is_key_id};
use crate::json;
use crate::key::SigningKey;
use crate::reason::VerifyError;
use crate::token::{self, MAX_TOKEN_BYTES};
use crate::verify::{self, HopRecord, VerifiedCapsule};

/// Why a body could not be signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the body would be refused by verifiers: {0} (`{code}`)", code = .0.code())]
    Body(VerifyError),
    #[error("the body's `kid` is not the signing key's kid")]
    KidMismatch,
    #[error("the signed token would be longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
}

/// Why a node cannot relay a capsule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("capsules of scope `none` are never relayed")]
    ScopeNone,
    #[error("the capsule already carries `max_hops` hop records")]
    HopLimitReached,
    #[error("this node already relayed the capsule")]
    AlreadyRelayed,
    #[error("the node id or kid is empty, too long or not printable ascii")]
    BadNodeId,
    #[error("the relayed token would be longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
}

/// A relaying node's identity and key, as its trust-store entry names them.
#[derive(Clone, Debug)]
pub struct NodeSigner {
    pub node: String,
    pub kid: String,
    pub key: SigningKey,
}

/// Signs a body given as JSON (any whitespace and key order; duplicate keys, fractions and
/// out-of-range integers refused) with the issuer key `kid`. The body is canonicalized with RFC
/// 8785 first, then checked as a verifier would check it, except for trust-store rights and the
/// clock; the token carries exactly the canonical bytes that were signed.
pub fn sign_capsule(body_json: &[u8], kid: &str, key: &SigningKey) -> Result<String, SignError> {
    let canonical = json::canonical_bytes(&json::parse_strict(body_json).map_err(SignError::Body)?)
        .map_err(SignError::Body)?;
    let body = check_signable(&canonical).map_err(SignError::Body)?;
    if body.kid != kid {
        return Err(SignError::KidMismatch);
    }
    let token = token::encode(&canonical, &key.sign(&token::capsule_message(&canonical)));
    if token.len() > MAX_TOKEN_BYTES {
        return Err(SignError::TooLarge);
    }
    Ok(token)
}

/// The checks that need neither a trust store nor a clock.
fn check_signable(canonical: &[u8]) -> Result<CapsuleBody, VerifyError> {
    let body = body::body_from_value(json::parse_canonical(canonical)?)?;
    if body.v != VERSION {
        return Err(VerifyError::UnsupportedVersion);
    }
    if body.max_hops > MAX_HOPS as u64 {
        return Err(VerifyError::BadMaxHops);
    }
    if body.ttl == 0 {
        return Err(VerifyError::BadTtl);
    }
    let everything = [GatePattern::parse("*").map_err(|_| VerifyError::BadPattern)?];
    body::check_patterns(&body.denies, &everything)?;
    verify::adopt_contracts(&body, body.iat.saturating_add(body.ttl), &everything)?;
    Ok(body)
}

impl VerifiedCapsule {
    /// The token to send on: the received bytes with this node's hop record appended.
    pub fn relay(&self, signer: &NodeSigner) -> Result<String, RelayError> {
        if self.scope() == Scope::None {
            return Err(RelayError::ScopeNone);
        }
        if self.hops().len() as u64 >= self.max_hops() {
            return Err(RelayError::HopLimitReached);
        }
        if self.hops().iter().any(|hop| hop.node == signer.node) {
            return Err(RelayError::AlreadyRelayed);
        }
        if !is_key_id(&signer.node) || !is_key_id(&signer.kid) {
            return Err(RelayError::BadNodeId);
        }
        let record = hop_record_bytes(self.hops().len() as u64 + 1, &signer.kid, &signer.node);
        let sig = signer
            .key
            .sign(&token::hop_message(&self.hash(), &record, self.last_sig()));
        let res = token::append(self.token(), &record, &sig);
        if res.len() > MAX_TOKEN_BYTES {
            return Err(RelayError::TooLarge);
        }
        Ok(res)
    }
}

/// Canonical `{"depth":N,"kid":...,"node":...}`.
pub(crate) fn hop_record_bytes(depth: u64, kid: &str, node: &str) -> Vec<u8> {
    let value = json!({"depth": depth, "kid": kid, "node": node});
    // Strings and an integer only: serde_jcs cannot fail on this value.
    json::canonical_bytes(&value).unwrap_or_default()
}

/// What a token says, read without any trust decision: steps 1-3 for P and every hop record.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub body: CapsuleBody,
    /// P as parsed, for display.
    pub body_json: Value,
    pub hops: Vec<HopRecord>,
    /// SHA-256 of P, lower-case hex.
    pub hash_hex: String,
    /// `iat + ttl`.
    pub expires_at: u64,
}

/// Decodes and parses a token without verifying any signature. For display only: nothing read
/// here may be trusted.
pub fn inspect(token: &[u8]) -> Result<Inspection, VerifyError> {
    let raw = token::decode(token)?;
    let body_json = json::parse_canonical(&raw.body)?;
    let body = body::body_from_value(body_json.clone())?;
    let hops = raw
        .hops
        .iter()
        .map(|hop| verify::parse_hop_record(&hop.record))
        .collect::<Result<Vec<_>, _>>()?;
    let hash_hex = token::body_hash(&raw.body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let expires_at = body.iat.saturating_add(body.ttl);
    Ok(Inspection {
        body,
        body_json,
        hops,
        hash_hex,
        expires_at,
    })
}

/// A body template: every field, with example values, `iat` set to `now`.
pub fn template(now: Timestamp) -> Value {
    json!({
        "v": VERSION,
        "id": "example-capsule-1",
        "iss": "ops",
        "kid": "ops-2026",
        "iat": now.as_second().max(0),
        "ttl": 3600,
        "max_hops": 2,
        "scope": "peers",
        "denies": ["tools:call:shell.*"],
        "contracts": [{
            "id": "freeze-github",
            "patterns": ["tools:call:github.*"],
            "subject": {"agents": [], "roles": ["intern"], "nodes": [], "tags": []},
            "immutable": false,
            "quota": null,
        }],
        "ext": {},
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::{FIXTURE_NOW, fixture_key, fixture_trust_store};
    use crate::trust::Algorithm;
    use crate::{CapsuleLimits, verify};

    fn now() -> Timestamp {
        Timestamp::from_second(FIXTURE_NOW).unwrap()
    }

    fn fixture_body(kid: &str) -> Value {
        let mut body = template(now());
        body["iss"] = json!("fuzz");
        body["kid"] = json!(kid);
        body
    }

    #[track_caller]
    fn check(body: &str, kid: &str, expected: Result<(), SignError>) {
        let key = fixture_key(Algorithm::Ed25519, 1).unwrap();
        assert_eq!(
            sign_capsule(body.as_bytes(), kid, &key).map(|_| ()),
            expected,
            "{body}"
        );
    }

    #[test]
    fn signing_checks_the_body_first() {
        let good = fixture_body("fuzz-ed");
        check(
            &serde_json::to_string_pretty(&good).unwrap(),
            "fuzz-ed",
            Ok(()),
        );
        check(&good.to_string(), "other", Err(SignError::KidMismatch));
        check(
            r#"{"v":1,"v":1}"#,
            "fuzz-ed",
            Err(SignError::Body(VerifyError::DuplicateKey)),
        );
        check(
            r#"{"v":1.5}"#,
            "fuzz-ed",
            Err(SignError::Body(VerifyError::BadNumber)),
        );
        let mut zero_ttl = good.clone();
        zero_ttl["ttl"] = json!(0);
        check(
            &zero_ttl.to_string(),
            "fuzz-ed",
            Err(SignError::Body(VerifyError::BadTtl)),
        );
        let mut bad_pattern = good.clone();
        bad_pattern["denies"] = json!(["a*b"]);
        check(
            &bad_pattern.to_string(),
            "fuzz-ed",
            Err(SignError::Body(VerifyError::BadPattern)),
        );
        let mut huge = good;
        huge["ext"] = json!({"pad": vec!["x".repeat(500); 8]});
        check(&huge.to_string(), "fuzz-ed", Err(SignError::TooLarge));
    }

    #[test]
    fn template_signs_and_verifies_with_both_algorithms() {
        let trust = fixture_trust_store().unwrap();
        for (kid, alg, seed) in [
            ("fuzz-ed", Algorithm::Ed25519, 1),
            ("fuzz-k1", Algorithm::Secp256k1, 2),
        ] {
            let key = fixture_key(alg, seed).unwrap();
            let token = sign_capsule(fixture_body(kid).to_string().as_bytes(), kid, &key).unwrap();
            let verified =
                verify(token.as_bytes(), &trust, &CapsuleLimits::default(), now()).unwrap();
            let inspected = inspect(token.as_bytes()).unwrap();
            assert_eq!(inspected.hash_hex, verified.hash_hex());
            assert_eq!(inspected.expires_at, verified.expires_at());
            assert_eq!(inspected.body, *verified.body());
        }
    }

    proptest! {
        /// Any one-byte change to a valid token is refused: there is one spelling per capsule.
        #[test]
        fn any_single_byte_change_is_refused(
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"AQgw_-.=+/ 09azAZ\x00\xff".to_vec()),
        ) {
            let key = fixture_key(Algorithm::Secp256k1, 2).unwrap();
            let token = sign_capsule(fixture_body("fuzz-k1").to_string().as_bytes(), "fuzz-k1", &key).unwrap();
            let mut mutated = token.clone().into_bytes();
            let idx = at.index(mutated.len());
            mutated[idx] = byte;
            prop_assume!(mutated != token.as_bytes());
            let trust = fixture_trust_store().unwrap();
            prop_assert!(verify(&mutated, &trust, &CapsuleLimits::default(), now()).is_err());
        }
    }
}
