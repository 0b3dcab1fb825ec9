//! The property the `capsule_verify` fuzz target checks, shared with the corpus replay test.
//!
//! The fixture keys below are derived from fixed, published seeds and exist only so fuzzed tokens
//! can reach the later verification steps; no real trust store should ever contain them.

use jiff::Timestamp;

use crate::json;
use crate::key::SigningKey;
use crate::limits::CapsuleLimits;
use crate::sign::{NodeSigner, inspect};
use crate::token::{MAX_TOKEN_BYTES, body_hash};
use crate::trust::{Algorithm, IssuerEntry, NodeEntry, TrustStore, TrustStoreFile};
use crate::verify::verify;
use crate::{Scope, b64};

/// Seconds since the epoch at which the corpus capsules are live (2026-01-01T00:00:00Z).
pub const FIXTURE_NOW: i64 = 1_767_225_600;

/// The fuzz fixture key for `alg` with a one-byte seed (fixture use only).
pub fn fixture_key(alg: Algorithm, seed: u8) -> Option<SigningKey> {
    SigningKey::from_secret_bytes(alg, &[seed; 32])
}

/// Issuers `fuzz-ed` (seed 1) and `fuzz-k1` (seed 2, secp256k1), a revoked `fuzz-revoked`
/// (seed 3), an issuer limited to `tools:*` (`fuzz-narrow`, seed 4), and nodes `n1`..`n3`
/// (seeds 11-13, Ed25519), `n4` (seed 14, secp256k1)
/// and a revoked `n5` (seed 15). Node `nN` has kid `nN-key`.
pub fn fixture_trust_store() -> Option<TrustStore> {
    let all_scopes = vec![Scope::None, Scope::Children, Scope::Peers, Scope::All];
    let issuer = |id: &str, kid: &str, alg, seed, patterns: &[&str], revoked| {
        Some(IssuerEntry {
            id: id.to_owned(),
            kid: kid.to_owned(),
            alg,
            key_b64: b64::encode(&fixture_key(alg, seed)?.public_key().to_bytes()),
            scopes: all_scopes.clone(),
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            revoked,
        })
    };
    let node = |n: u8, alg, revoked| {
        Some(NodeEntry {
            id: format!("n{n}"),
            kid: format!("n{n}-key"),
            alg,
            key_b64: b64::encode(&fixture_key(alg, 10 + n)?.public_key().to_bytes()),
            revoked,
        })
    };
    let file = TrustStoreFile {
        issuers: vec![
            issuer("fuzz", "fuzz-ed", Algorithm::Ed25519, 1, &["*"], false)?,
            issuer("fuzz", "fuzz-k1", Algorithm::Secp256k1, 2, &["*"], false)?,
            issuer("fuzz", "fuzz-revoked", Algorithm::Ed25519, 3, &["*"], true)?,
            issuer(
                "narrow",
                "fuzz-narrow",
                Algorithm::Ed25519,
                4,
                &["tools:*"],
                false,
            )?,
        ],
        nodes: vec![
            node(1, Algorithm::Ed25519, false)?,
            node(2, Algorithm::Ed25519, false)?,
            node(3, Algorithm::Ed25519, false)?,
            node(4, Algorithm::Secp256k1, false)?,
            node(5, Algorithm::Ed25519, true)?,
        ],
    };
    TrustStore::from_file(file).ok()
}

/// Feeds `data` through the token verifier, the inspector and the JSON parser and checks what must
/// hold for any input. Panics (through `assert!`) only when a property is broken, which is what
/// the fuzzer looks for.
#[expect(clippy::panic, reason = "a broken property must abort the fuzz run")]
pub fn check_token(data: &[u8], trust: &TrustStore) {
    let limits = CapsuleLimits::default();
    let times = [
        0,
        FIXTURE_NOW - 86_400,
        FIXTURE_NOW,
        FIXTURE_NOW + 3_600,
        i64::from(i32::MAX),
    ];
    for now in times {
        let Ok(now) = Timestamp::from_second(now) else {
            continue;
        };
        let Ok(verified) = verify(data, trust, &limits, now) else {
            continue;
        };
        let inspected =
            inspect(data).unwrap_or_else(|err| panic!("inspect refused a verified token: {err}"));
        assert!(data.len() <= MAX_TOKEN_BYTES);
        assert_eq!(verified.token().as_bytes(), data);
        assert_eq!(verified.hash(), body_hash(verified.body_bytes()));
        assert_eq!(inspected.hash_hex, verified.hash_hex());
        assert!(verified.hops().len() as u64 <= verified.max_hops());
        assert!(verified.expires_at() > now.as_second().max(0).unsigned_abs());
        for contract in verified.contracts() {
            assert!(contract.valid_from < contract.valid_to);
            assert!(contract.valid_to <= verified.expires_at());
        }
        // Relaying a verified capsule by a trusted node that has not seen it yields a token that
        // verifies again, one hop longer, with the same body hash.
        for n in 1..=4u8 {
            let alg = if n == 4 {
                Algorithm::Secp256k1
            } else {
                Algorithm::Ed25519
            };
            let Some(key) = fixture_key(alg, 10 + n) else {
                continue;
            };
            let signer = NodeSigner {
                node: format!("n{n}"),
                kid: format!("n{n}-key"),
                key,
            };
            if let Ok(relayed) = verified.relay(&signer) {
                let again = verify(relayed.as_bytes(), trust, &limits, now)
                    .unwrap_or_else(|err| panic!("a relayed token was refused: {}", err.code()));
                assert_eq!(again.hash(), verified.hash());
                assert_eq!(again.hops().len(), verified.hops().len() + 1);
            }
        }
    }
    let _ = inspect(data);
    if let Ok(value) = json::parse_strict(data) {
        let canonical = json::canonical_bytes(&value).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(json::parse_canonical(&canonical).ok(), Some(value));
    }
}
