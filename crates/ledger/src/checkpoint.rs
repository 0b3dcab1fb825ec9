//! Signed checkpoints: the node key vouches for the chain head at a seq, so a cut tail shows.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Domain separation prefix of every checkpoint signature.
pub const CHECKPOINT_CONTEXT: &[u8] = b"portcullis-checkpoint/v1\0";

/// Signed checkpoint bytes longer than this are refused unparsed.
pub const MAX_CHECKPOINT_BYTES: usize = 1024;

/// The chain head at one seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: [u8; 32],
    pub time: Timestamp,
}

/// A checkpoint with the exact bytes that were signed and the signature over
/// `CHECKPOINT_CONTEXT || signed_bytes`. Store both as they are; verify those bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signed_bytes: Vec<u8>,
    pub signature: [u8; 64],
}

/// Why a checkpoint was refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("checkpoint is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("checkpoint signature is not 64 bytes")]
    SignatureLength,
    #[error("checkpoint signature does not verify")]
    BadSignature,
    #[error("checkpoint bytes are not a valid checkpoint")]
    Malformed,
}

impl Checkpoint {
    /// Signs the RFC 8785 form of this checkpoint with the node key.
    pub fn sign(&self, key: &SigningKey) -> Result<SignedCheckpoint, CheckpointError> {
        let wire = CheckpointWire {
            hash: hex::encode(self.hash),
            seq: self.seq,
            time: self.time.to_string(),
        };
        let signed_bytes = serde_jcs::to_vec(&wire).map_err(CheckpointError::Encode)?;
        let signature = key.sign(&signing_input(&signed_bytes)).to_bytes();
        Ok(SignedCheckpoint {
            checkpoint: *self,
            signed_bytes,
            signature,
        })
    }
}

/// Verifies `signature` over the stored `signed_bytes` (strict ed25519), then parses them.
pub fn verify_checkpoint(
    public_key: &VerifyingKey,
    signed_bytes: &[u8],
    signature: &[u8],
) -> Result<Checkpoint, CheckpointError> {
    if signed_bytes.len() > MAX_CHECKPOINT_BYTES {
        return Err(CheckpointError::TooLarge {
            size: signed_bytes.len(),
            limit: MAX_CHECKPOINT_BYTES,
        });
    }
    let signature =
        Signature::from_slice(signature).map_err(|_| CheckpointError::SignatureLength)?;
    public_key
        .verify_strict(&signing_input(signed_bytes), &signature)
        .map_err(|_| CheckpointError::BadSignature)?;
    parse_checkpoint(signed_bytes)
}

fn parse_checkpoint(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let wire: CheckpointWire =
        serde_json::from_slice(bytes).map_err(|_| CheckpointError::Malformed)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&wire.hash, &mut hash).map_err(|_| CheckpointError::Malformed)?;
    let time = wire.time.parse().map_err(|_| CheckpointError::Malformed)?;
    Ok(Checkpoint {
        seq: wire.seq,
        hash,
        time,
    })
}

fn signing_input(signed_bytes: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(CHECKPOINT_CONTEXT.len() + signed_bytes.len());
    input.extend_from_slice(CHECKPOINT_CONTEXT);
    input.extend_from_slice(signed_bytes);
    input
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointWire {
    hash: String,
    seq: u64,
    time: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            seq: 1000,
            hash: [0xab; 32],
            time: Timestamp::new(1_767_225_600, 5).unwrap(),
        }
    }

    #[test]
    fn signs_canonical_bytes_and_verifies() {
        let signed = checkpoint().sign(&key(1)).unwrap();
        assert_eq!(
            std::str::from_utf8(&signed.signed_bytes).unwrap(),
            format!(
                r#"{{"hash":"{}","seq":1000,"time":"2026-01-01T00:00:00.000000005Z"}}"#,
                "ab".repeat(32)
            )
        );
        let back = verify_checkpoint(
            &key(1).verifying_key(),
            &signed.signed_bytes,
            &signed.signature,
        )
        .unwrap();
        assert_eq!(back, checkpoint());
    }

    #[track_caller]
    fn check_refused(bytes: &[u8], signature: &[u8], public: &VerifyingKey, expected: &str) {
        let err = verify_checkpoint(public, bytes, signature).unwrap_err();
        assert_eq!(
            format!("{err:?}").split(['(', ' ', '{']).next().unwrap(),
            expected
        );
    }

    #[test]
    fn refuses_tampered_or_foreign_checkpoints() {
        let signed = checkpoint().sign(&key(1)).unwrap();
        let public = key(1).verifying_key();
        let mut edited = signed.signed_bytes.clone();
        edited[10] ^= 1;
        check_refused(&edited, &signed.signature, &public, "BadSignature");
        check_refused(
            &signed.signed_bytes,
            &signed.signature,
            &key(2).verifying_key(),
            "BadSignature",
        );
        check_refused(
            &signed.signed_bytes,
            &signed.signature[..63],
            &public,
            "SignatureLength",
        );
        check_refused(&[b' '; 2000], &signed.signature, &public, "TooLarge");
        // A valid signature over bytes that are not a checkpoint.
        let junk = b"{\"seq\":1}";
        let sig = key(1).sign(&signing_input(junk)).to_bytes();
        check_refused(junk, &sig, &public, "Malformed");
    }
}
