//! The Portcullis ledger format: canonical record bytes, the hash chain, signed checkpoints and a
//! streaming verifier.
//!
//! Pure: no I/O, no clock, no async runtime. Time comes in as an argument; keys come in loaded.
//! Storage lives in `portcullis-store`, which must store exactly the bytes this crate produces.
//!
//! Invariants:
//! - A record's body is RFC 8785 JSON of `{"correlation_id","data","decision","kind","reason",
//!   "seq","subject","time"}` and is at most [`MAX_BODY_BYTES`]; the body is stored as encoded and
//!   never re-serialized to check it.
//! - `hash = SHA-256(prev_hash || body)`; seq 1 has `prev_hash` = [`GENESIS_PREV_HASH`].
//! - A checkpoint signature covers `"portcullis-checkpoint/v1\0" || signed_bytes`, where
//!   `signed_bytes` is RFC 8785 JSON of `{"hash","seq","time"}`; verification uses the stored bytes.
//! - [`Verifier`] reports the first failure with the first bad seq and a stable code
//!   ([`FailureReason::code`]); see `docs/LEDGER.md`.

pub mod checkpoint;
pub mod fuzzing;
pub mod record;
pub mod verify;

use portcullis_core::ErrorCode;
use portcullis_core::error::ReasonInfo;

pub use checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint, verify_checkpoint};
pub use record::{
    BodyTemplate, GENESIS_PREV_HASH, LedgerError, LedgerRecord, MAX_BODY_BYTES, MAX_SEQ,
    chain_hash, decode_record, encode_body,
};
pub use verify::{FailureReason, Verifier, VerifyFailure, VerifyReport};

/// Every reason code this crate emits (the verifier's failure codes). They surface from
/// `portcullis ledger verify`, so they map to [`ErrorCode::Internal`].
pub const REASONS: &[ReasonInfo] = &[
    reason(FailureReason::HashMismatch),
    reason(FailureReason::PrevLinkMismatch),
    reason(FailureReason::SeqGap),
    reason(FailureReason::SeqOutOfOrder),
    reason(FailureReason::BodySeqMismatch),
    reason(FailureReason::BodyMalformed),
    reason(FailureReason::TruncatedTail),
    reason(FailureReason::CheckpointMismatch),
    reason(FailureReason::CheckpointInvalid),
    reason(FailureReason::CheckpointOutOfOrder),
];

const fn reason(failure: FailureReason) -> ReasonInfo {
    ReasonInfo {
        code: failure.code(),
        maps_to: ErrorCode::Internal,
        summary: failure.summary(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_table_lists_every_failure_once() {
        assert_eq!(REASONS.len(), FailureReason::ALL.len());
        for (info, failure) in REASONS.iter().zip(FailureReason::ALL) {
            assert_eq!(info.code, failure.code());
            assert!(
                info.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
    }
}
