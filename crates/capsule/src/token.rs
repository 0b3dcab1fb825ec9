//! The wire form `v1.<P>.<sig>(.<H>.<hsig>)*`: size check, splitting, decoding and the signed messages.

use sha2::{Digest, Sha256};

use crate::b64;
use crate::body::MAX_HOPS;
use crate::reason::VerifyError;

/// Longest token accepted, in bytes, hop records included.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Every token starts with this.
pub const TOKEN_PREFIX: &str = "v1.";
/// Domain separation for the issuer signature: it covers `CAPSULE_CONTEXT || P`.
pub const CAPSULE_CONTEXT: &[u8] = b"portcullis-capsule/v1\0";
/// Domain separation for hop signatures: they cover `HOP_CONTEXT || SHA-256(P) || H || prev sig`.
pub const HOP_CONTEXT: &[u8] = b"portcullis-hop/v1\0";

/// A token split and decoded, nothing else checked yet.
#[derive(Clone, Debug)]
pub struct RawToken {
    pub body: Vec<u8>,
    pub sig: [u8; 64],
    pub hops: Vec<RawHop>,
}

/// One hop record and its signature, decoded.
#[derive(Clone, Debug)]
pub struct RawHop {
    pub record: Vec<u8>,
    pub sig: [u8; 64],
}

/// Steps 1 and 2 of verification: size, then decoding.
pub fn decode(token: &[u8]) -> Result<RawToken, VerifyError> {
    // INVARIANT (size-first): nothing is allocated or decoded before the size check, so an oversized
    // header costs one comparison.
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::TooLarge);
    }
    let rest = token
        .strip_prefix(TOKEN_PREFIX.as_bytes())
        .ok_or(VerifyError::BadEncoding)?;
    let mut segments = rest.split(|byte| *byte == b'.');
    let (Some(body), Some(sig)) = (segments.next(), segments.next()) else {
        return Err(VerifyError::BadEncoding);
    };
    let body = b64::decode(body).ok_or(VerifyError::BadEncoding)?;
    let sig = decode_signature(sig)?;
    let mut hops = Vec::new();
    while let Some(record) = segments.next() {
        let Some(hop_sig) = segments.next() else {
            return Err(VerifyError::BadEncoding);
        };
        if hops.len() >= MAX_HOPS {
            return Err(VerifyError::TooManyHops);
        }
        hops.push(RawHop {
            record: b64::decode(record).ok_or(VerifyError::BadEncoding)?,
            sig: decode_signature(hop_sig)?,
        });
    }
    Ok(RawToken { body, sig, hops })
}

fn decode_signature(text: &[u8]) -> Result<[u8; 64], VerifyError> {
    let bytes = b64::decode(text).ok_or(VerifyError::BadEncoding)?;
    <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| VerifyError::BadSignatureLength)
}

/// The bytes the issuer signs: `"portcullis-capsule/v1\0" || P`.
pub fn capsule_message(body: &[u8]) -> Vec<u8> {
    [CAPSULE_CONTEXT, body].concat()
}

/// The bytes a relaying node signs: `"portcullis-hop/v1\0" || SHA-256(P) || H || previous signature`.
pub fn hop_message(body_hash: &[u8; 32], record: &[u8], prev_sig: &[u8; 64]) -> Vec<u8> {
    [
        HOP_CONTEXT,
        body_hash.as_slice(),
        record,
        prev_sig.as_slice(),
    ]
    .concat()
}

/// SHA-256 of P: the capsule's identity across relays (hop records do not change it).
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// SHA-256 of the whole token as received, for a cache of tokens already adopted.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Assembles `v1.<P>.<sig>`.
pub fn encode(body: &[u8], sig: &[u8; 64]) -> String {
    format!("{TOKEN_PREFIX}{}.{}", b64::encode(body), b64::encode(sig))
}

/// Appends `.<H>.<hsig>` to a token.
pub fn append(token: &str, record: &[u8], sig: &[u8; 64]) -> String {
    format!("{token}.{}.{}", b64::encode(record), b64::encode(sig))
}
