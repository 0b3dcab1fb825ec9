//! The trust store: issuer and relaying-node keys, each with its algorithm, rights and revocation.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::Signature as EdSignature;
use k256::ecdsa::signature::Verifier as _;
use serde::{Deserialize, Serialize};

use portcullis_core::GatePattern;

use crate::b64;
use crate::body::{Scope, is_key_id};

/// Largest trust-store file read, in bytes.
pub const MAX_TRUST_STORE_BYTES: usize = 1 << 20;
/// Most issuer or node entries in a trust store.
pub const MAX_TRUST_ENTRIES: usize = 1024;

/// A signature algorithm. Always taken from the trust store, never from a capsule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Ed25519 (RFC 8032), verified strictly; public key: 32 bytes.
    Ed25519,
    /// ECDSA over SHA-256 on secp256k1, low S only; public key: 33-byte compressed SEC1.
    Secp256k1,
}

impl Algorithm {
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Secp256k1 => "secp256k1",
        }
    }
}

/// The trust-store file, as JSON: `{"issuers":[...],"nodes":[...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustStoreFile {
    #[serde(default)]
    pub issuers: Vec<IssuerEntry>,
    #[serde(default)]
    pub nodes: Vec<NodeEntry>,
}

/// One issuer key as written in the trust store (and printed by `capsule keygen`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerEntry {
    pub id: String,
    pub kid: String,
    pub alg: Algorithm,
    /// The public key, unpadded base64url.
    pub key_b64: String,
    /// The capsule scopes this issuer may sign.
    pub scopes: Vec<Scope>,
    /// The gate-key patterns this issuer may deny; defaults to `["*"]`.
    #[serde(default = "default_patterns")]
    pub patterns: Vec<String>,
    #[serde(default)]
    pub revoked: bool,
}

/// One relaying node key as written in the trust store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub id: String,
    pub kid: String,
    pub alg: Algorithm,
    pub key_b64: String,
    #[serde(default)]
    pub revoked: bool,
}

fn default_patterns() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Why a trust store was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    #[error("trust store is larger than {MAX_TRUST_STORE_BYTES} bytes")]
    TooLarge,
    #[error("trust store is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("trust store has more than {MAX_TRUST_ENTRIES} issuers or nodes")]
    TooManyEntries,
    #[error("trust store entry `{kid}` has an empty or overlong id or kid")]
    BadId { kid: String },
    #[error("kid `{kid}` appears more than once in the trust store")]
    DuplicateKid { kid: String },
    #[error("trust store entry `{kid}` has a key that is not a valid {alg} public key")]
    BadKey { kid: String, alg: &'static str },
    #[error("issuer `{kid}` has an invalid pattern `{pattern}`")]
    BadPattern { kid: String, pattern: String },
}

/// A loaded trust store, keys decoded and checked; look-ups by `kid`.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    issuers: BTreeMap<String, Issuer>,
    nodes: BTreeMap<String, Node>,
}

/// An issuer key with its rights.
#[derive(Clone, Debug)]
pub struct Issuer {
    pub id: String,
    pub kid: String,
    pub key: PublicKey,
    pub scopes: Vec<Scope>,
    pub patterns: Vec<GatePattern>,
    pub revoked: bool,
}

/// A relaying node key.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub kid: String,
    pub key: PublicKey,
    pub revoked: bool,
}

/// A decoded public key; its variant is the algorithm.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Secp256k1(k256::ecdsa::VerifyingKey),
}

/// Why a signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureFailure {
    /// A secp256k1 signature whose S is in the upper half of the group order.
    HighS,
    /// Any other failure.
    Invalid,
}

impl TrustStore {
    /// Reads and checks a trust-store file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TrustStoreError> {
        if bytes.len() > MAX_TRUST_STORE_BYTES {
            return Err(TrustStoreError::TooLarge);
        }
        Self::from_file(serde_json::from_slice(bytes)?)
    }

    /// Checks every entry: ids, unique kids across issuers and nodes, keys, patterns.
    pub fn from_file(file: TrustStoreFile) -> Result<Self, TrustStoreError> {
        if file.issuers.len() > MAX_TRUST_ENTRIES || file.nodes.len() > MAX_TRUST_ENTRIES {
            return Err(TrustStoreError::TooManyEntries);
        }
        let mut res = TrustStore::default();
        for entry in file.issuers {
            check_ids(&entry.id, &entry.kid)?;
            if res.contains_kid(&entry.kid) {
                return Err(TrustStoreError::DuplicateKid { kid: entry.kid });
            }
            let key = PublicKey::from_b64(entry.alg, &entry.key_b64).ok_or_else(|| {
                TrustStoreError::BadKey {
                    kid: entry.kid.clone(),
                    alg: entry.alg.as_str(),
                }
            })?;
            let patterns = entry
                .patterns
                .iter()
                .map(|pattern| {
                    GatePattern::parse(pattern).map_err(|_| TrustStoreError::BadPattern {
                        kid: entry.kid.clone(),
                        pattern: pattern.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let issuer = Issuer {
                id: entry.id,
                kid: entry.kid.clone(),
                key,
                scopes: entry.scopes,
                patterns,
                revoked: entry.revoked,
            };
            res.issuers.insert(entry.kid, issuer);
        }
        for entry in file.nodes {
            check_ids(&entry.id, &entry.kid)?;
            if res.contains_kid(&entry.kid) {
                return Err(TrustStoreError::DuplicateKid { kid: entry.kid });
            }
            let key = PublicKey::from_b64(entry.alg, &entry.key_b64).ok_or_else(|| {
                TrustStoreError::BadKey {
                    kid: entry.kid.clone(),
                    alg: entry.alg.as_str(),
                }
            })?;
            let node = Node {
                id: entry.id,
                kid: entry.kid.clone(),
                key,
                revoked: entry.revoked,
            };
            res.nodes.insert(entry.kid, node);
        }
        Ok(res)
    }

    /// The issuer key named `kid`, revoked or not.
    pub fn issuer(&self, kid: &str) -> Option<&Issuer> {
        self.issuers.get(kid)
    }

    /// The relaying-node key named `kid`, revoked or not.
    pub fn node(&self, kid: &str) -> Option<&Node> {
        self.nodes.get(kid)
    }

    fn contains_kid(&self, kid: &str) -> bool {
        self.issuers.contains_key(kid) || self.nodes.contains_key(kid)
    }
}

fn check_ids(id: &str, kid: &str) -> Result<(), TrustStoreError> {
    if is_key_id(id) && is_key_id(kid) {
        Ok(())
    } else {
        Err(TrustStoreError::BadId {
            kid: kid.chars().take(64).collect(),
        })
    }
}

impl PublicKey {
    /// Decodes a key of algorithm `alg` from unpadded base64url; `None` when it is not one.
    pub fn from_b64(alg: Algorithm, text: &str) -> Option<Self> {
        Self::from_bytes(alg, &b64::decode(text.as_bytes())?)
    }

    /// Ed25519: 32 bytes, not of small order. secp256k1: 33-byte compressed SEC1 point.
    pub fn from_bytes(alg: Algorithm, bytes: &[u8]) -> Option<Self> {
        match alg {
            Algorithm::Ed25519 => {
                let bytes: &[u8; 32] = bytes.try_into().ok()?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).ok()?;
                (!key.is_weak()).then_some(PublicKey::Ed25519(key))
            }
            Algorithm::Secp256k1 => {
                if bytes.len() != 33 {
                    return None;
                }
                let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).ok()?;
                Some(PublicKey::Secp256k1(key))
            }
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::Ed25519(_) => Algorithm::Ed25519,
            PublicKey::Secp256k1(_) => Algorithm::Secp256k1,
        }
    }

    /// The key's bytes as the trust store spells them (before base64url).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519(key) => key.to_bytes().to_vec(),
            PublicKey::Secp256k1(key) => key.to_encoded_point(true).as_bytes().to_vec(),
        }
    }

    /// Verifies a raw 64-byte signature over `message` with this key's algorithm.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), SignatureFailure> {
        match self {
            PublicKey::Ed25519(key) => key
                // verify_strict refuses non-canonical S, small-order R and weak keys.
                .verify_strict(message, &EdSignature::from_bytes(signature))
                .map_err(|_| SignatureFailure::Invalid),
            PublicKey::Secp256k1(key) => {
                let signature = k256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| SignatureFailure::Invalid)?;
                // INVARIANT (low-s): a signature and its negated-S twin never both verify, so a
                // relayed token cannot be re-signed into a second valid spelling.
                if signature.normalize_s().is_some() {
                    return Err(SignatureFailure::HighS);
                }
                key.verify(message, &signature)
                    .map_err(|_| SignatureFailure::Invalid)
            }
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({}, {})",
            self.algorithm().as_str(),
            b64::encode(&self.to_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SigningKey;

    fn ed_key(seed: u8) -> String {
        let key = SigningKey::from_secret_bytes(Algorithm::Ed25519, &[seed; 32]).unwrap();
        b64::encode(&key.public_key().to_bytes())
    }

    #[track_caller]
    fn check(json: &str, ok: bool) {
        let res = TrustStore::from_json(json.as_bytes());
        assert_eq!(res.is_ok(), ok, "{json}: {res:?}");
    }

    #[test]
    fn loads_and_refuses() {
        let (a, b) = (ed_key(1), ed_key(2));
        let issuer = |kid: &str, key: &str, extra: &str| {
            format!(
                r#"{{"id":"ops","kid":"{kid}","alg":"ed25519","key_b64":"{key}","scopes":["peers"]{extra}}}"#
            )
        };
        check(&format!(r#"{{"issuers":[{}]}}"#, issuer("a", &a, "")), true);
        check("{}", true);
        check(
            &format!(
                r#"{{"issuers":[{},{}]}}"#,
                issuer("a", &a, ""),
                issuer("b", &b, "")
            ),
            true,
        );
        check(
            &format!(
                r#"{{"issuers":[{},{}]}}"#,
                issuer("a", &a, ""),
                issuer("a", &b, "")
            ),
            false,
        );
        check(
            &format!(
                r#"{{"issuers":[{}],"nodes":[{{"id":"n","kid":"a","alg":"ed25519","key_b64":"{b}"}}]}}"#,
                issuer("a", &a, "")
            ),
            false,
        );
        check(
            &format!(r#"{{"issuers":[{}]}}"#, issuer("a", &a, r#","color":1"#)),
            false,
        );
        check(
            &format!(r#"{{"issuers":[{}],"extra":[]}}"#, issuer("a", &a, "")),
            false,
        );
        check(
            &format!(
                r#"{{"issuers":[{}]}}"#,
                issuer("a", &a, r#","patterns":["to*ls"]"#)
            ),
            false,
        );
        check(
            &format!(r#"{{"issuers":[{}]}}"#, issuer("a", &format!("{a}="), "")),
            false,
        );
        check(
            &format!(r#"{{"issuers":[{}]}}"#, issuer("a", "AAAA", "")),
            false,
        );
        check(&format!(r#"{{"issuers":[{}]}}"#, issuer("", &a, "")), false);
        // The identity point is a weak (small-order) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        check(
            &format!(
                r#"{{"issuers":[{}]}}"#,
                issuer("a", &b64::encode(&identity), "")
            ),
            false,
        );
        // Ed25519 bytes presented as a secp256k1 key.
        check(
            &format!(
                r#"{{"issuers":[{}]}}"#,
                issuer("a", &a, "").replace("ed25519", "secp256k1")
            ),
            false,
        );
        // Uncompressed SEC1 points are refused: one spelling per key.
        let k1 = SigningKey::from_secret_bytes(Algorithm::Secp256k1, &[5; 32]).unwrap();
        let PublicKey::Secp256k1(point) = k1.public_key() else {
            unreachable!()
        };
        let uncompressed = b64::encode(point.to_encoded_point(false).as_bytes());
        let compressed = b64::encode(&k1.public_key().to_bytes());
        let k1_issuer = |key: &str| issuer("k", key, "").replace("ed25519", "secp256k1");
        check(
            &format!(r#"{{"issuers":[{}]}}"#, k1_issuer(&compressed)),
            true,
        );
        check(
            &format!(r#"{{"issuers":[{}]}}"#, k1_issuer(&uncompressed)),
            false,
        );
        check(&" ".repeat(MAX_TRUST_STORE_BYTES + 1), false);
    }

    #[test]
    fn defaults_patterns_to_everything() {
        let json = format!(
            r#"{{"issuers":[{{"id":"ops","kid":"a","alg":"ed25519","key_b64":"{}","scopes":[]}}]}}"#,
            ed_key(1)
        );
        let store = TrustStore::from_json(json.as_bytes()).unwrap();
        let issuer = store.issuer("a").unwrap();
        assert_eq!(issuer.patterns, vec![GatePattern::parse("*").unwrap()]);
        assert!(!issuer.revoked);
        assert!(store.issuer("b").is_none() && store.node("a").is_none());
    }
}
