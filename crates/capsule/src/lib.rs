//! Signed policy capsules: the wire format, strict parsing, the trust store and verification.
//!
//! A capsule carries denies and contracts from an issuer to gateways it does not log into. The
//! token is `v1.<base64url(P)>.<base64url(sig)>` followed by zero or more hop records
//! `.<base64url(H)>.<base64url(hsig)>`, at most 4096 bytes. P is the RFC 8785 canonical JSON of the
//! body; `sig` covers `"portcullis-capsule/v1\0" || P`. See `docs/CAPSULES.md`.
//!
//! Entry points: [`verify`] (received bytes -> [`VerifiedCapsule`] or a [`VerifyError`] with a
//! stable code), [`VerifiedCapsule::relay`] (append this node's hop), [`sign_capsule`],
//! [`inspect`], [`TrustStore::from_json`], [`CapsuleLimits`] and the [`REASONS`] table.
//!
//! Pure: no I/O, no clock, no async runtime. `now`, the trust store and keys come in as
//! arguments; the gateway owns files, reloads, persistence and propagation.
//!
//! Invariants:
//! - Signatures are checked over the exact received bytes, never over re-serialized JSON; P and
//!   every H must equal their own canonical form, so there is one spelling per signed value.
//! - Verification runs its steps in one fixed order and stops at the first refusal; every
//!   refusal is a [`VerifyError`] variant with a code in [`REASONS`].
//! - The algorithm of a key comes from the trust store, never from the token.
//! - A capsule can only add denies and contracts; fields that would allow or remove are refused.
//! - No input makes this crate panic, recurse or allocate without bound (see the limits in
//!   `json` and `token`).

mod b64;
mod body;
pub mod fuzzing;
mod json;
mod key;
mod limits;
mod reason;
mod sign;
mod token;
mod trust;
mod verify;

pub use body::{
    CapsuleBody, ContractBody, ContractSubject, MAX_HOPS, Neighbor, Quota, Scope, VERSION,
    is_key_id,
};
pub use json::{MAX_DEPTH, MAX_INTEGER, MAX_ITEMS, MAX_STRING_BYTES};
pub use key::{KeyFile, KeyFileError, MAX_KEY_FILE_BYTES, SigningKey};
pub use limits::CapsuleLimits;
pub use reason::{REASONS, VerifyError};
pub use sign::{Inspection, NodeSigner, RelayError, SignError, inspect, sign_capsule, template};
pub use token::{
    CAPSULE_CONTEXT, HOP_CONTEXT, MAX_TOKEN_BYTES, TOKEN_PREFIX, body_hash, token_digest,
};
pub use trust::{
    Algorithm, Issuer, IssuerEntry, MAX_TRUST_ENTRIES, MAX_TRUST_STORE_BYTES, Node, NodeEntry,
    PublicKey, SignatureFailure, TrustStore, TrustStoreError, TrustStoreFile,
};
pub use verify::{AdoptedContract, CapsuleStatus, HopRecord, VerifiedCapsule, verify};

/// Encodes bytes as unpadded base64url, the encoding of token segments and trust-store keys.
pub fn encode_b64(bytes: &[u8]) -> String {
    b64::encode(bytes)
}

/// Decodes unpadded canonical base64url; `None` for padding, other alphabets or stray bits.
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    b64::decode(text.as_bytes())
}
