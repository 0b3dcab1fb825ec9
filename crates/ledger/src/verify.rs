//! The streaming verifier: checks stored rows in seq order against the chain and the checkpoints.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::verify_checkpoint;
use crate::record::{GENESIS_PREV_HASH, MAX_BODY_BYTES, chain_hash, top_level_seq_at};

/// The first thing wrong with a ledger, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ledger record {seq}: {}", reason.summary())]
pub struct VerifyFailure {
    /// The first bad sequence number (the missing one for a gap or a cut tail).
    pub seq: u64,
    pub reason: FailureReason,
}

/// Why verification failed. Each has a stable code (see [`FailureReason::code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// `hash != SHA-256(prev_hash || body)`: the body or the hash was edited.
    HashMismatch,
    /// `prev_hash` differs from the previous record's hash (or is not 32 bytes).
    PrevLinkMismatch,
    /// A seq is missing: a record was deleted.
    SeqGap,
    /// A seq came again or went backwards: records were reordered or duplicated.
    SeqOutOfOrder,
    /// The body's own `seq` differs from its row: the body was moved.
    BodySeqMismatch,
    /// The body is not a canonical ledger body (no top-level `seq`, or too large).
    BodyMalformed,
    /// A checkpoint names a seq that is beyond the last record: the tail was cut.
    TruncatedTail,
    /// A checkpoint names a hash that differs from the record at its seq.
    CheckpointMismatch,
    /// A checkpoint's signature does not verify, or its bytes are not a checkpoint.
    CheckpointInvalid,
    /// A checkpoint was pushed after the record it names (checkpoints go first).
    CheckpointOutOfOrder,
}

/// What a successful verification saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    /// 0 when the ledger is empty.
    pub last_seq: u64,
    /// [`GENESIS_PREV_HASH`] when the ledger is empty.
    pub last_hash: [u8; 32],
    pub checkpoints: u64,
}

/// Checks a ledger one row at a time, in O(1) memory per record.
///
/// Push every checkpoint first ([`Verifier::push_checkpoint`]), then every record in ascending seq
/// order ([`Verifier::push`]), then call [`Verifier::finish`]. The first failure sticks: later calls
/// return it again.
#[derive(Debug)]
pub struct Verifier {
    public_key: Option<VerifyingKey>,
    /// Checkpoints not yet reached, by seq.
    pending: BTreeMap<u64, [u8; 32]>,
    n_checkpoints: u64,
    next_seq: u64,
    last_hash: [u8; 32],
    n_records: u64,
    failed: Option<VerifyFailure>,
}

impl FailureReason {
    pub const ALL: &'static [FailureReason] = &[
        FailureReason::HashMismatch,
        FailureReason::PrevLinkMismatch,
        FailureReason::SeqGap,
        FailureReason::SeqOutOfOrder,
        FailureReason::BodySeqMismatch,
        FailureReason::BodyMalformed,
        FailureReason::TruncatedTail,
        FailureReason::CheckpointMismatch,
        FailureReason::CheckpointInvalid,
        FailureReason::CheckpointOutOfOrder,
    ];

    /// The stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            FailureReason::HashMismatch => "ledger_hash_mismatch",
            FailureReason::PrevLinkMismatch => "ledger_prev_link_mismatch",
            FailureReason::SeqGap => "ledger_seq_gap",
            FailureReason::SeqOutOfOrder => "ledger_seq_out_of_order",
            FailureReason::BodySeqMismatch => "ledger_body_seq_mismatch",
            FailureReason::BodyMalformed => "ledger_body_malformed",
            FailureReason::TruncatedTail => "ledger_truncated_tail",
            FailureReason::CheckpointMismatch => "ledger_checkpoint_mismatch",
            FailureReason::CheckpointInvalid => "ledger_checkpoint_invalid",
            FailureReason::CheckpointOutOfOrder => "ledger_checkpoint_out_of_order",
        }
    }

    /// One lowercase line for humans.
    pub const fn summary(self) -> &'static str {
        match self {
            FailureReason::HashMismatch => {
                "record hash does not match its body (edited body or hash)"
            }
            FailureReason::PrevLinkMismatch => {
                "prev_hash does not match the previous record's hash"
            }
            FailureReason::SeqGap => "record is missing (deleted)",
            FailureReason::SeqOutOfOrder => "record is out of order or duplicated",
            FailureReason::BodySeqMismatch => {
                "record body carries another seq (moved or reordered)"
            }
            FailureReason::BodyMalformed => "record body is not a canonical ledger body",
            FailureReason::TruncatedTail => {
                "records up to the last signed checkpoint are missing (truncated tail)"
            }
            FailureReason::CheckpointMismatch => "signed checkpoint names another hash at this seq",
            FailureReason::CheckpointInvalid => "checkpoint signature or bytes are invalid",
            FailureReason::CheckpointOutOfOrder => "checkpoint was given after its record",
        }
    }
}

impl Verifier {
    /// A verifier trusting checkpoints signed by `node_public_key`. A key that is not a valid
    /// ed25519 point makes every checkpoint fail as [`FailureReason::CheckpointInvalid`].
    pub fn new(node_public_key: [u8; 32]) -> Self {
        Self {
            public_key: VerifyingKey::from_bytes(&node_public_key).ok(),
            pending: BTreeMap::new(),
            n_checkpoints: 0,
            next_seq: 1,
            last_hash: GENESIS_PREV_HASH,
            n_records: 0,
            failed: None,
        }
    }

    /// Checks one stored checkpoint row (`row_seq` is its seq column) and remembers it.
    pub fn push_checkpoint(
        &mut self,
        row_seq: u64,
        signed_bytes: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyFailure> {
        self.check_not_failed()?;
        let result = self.checkpoint_inner(row_seq, signed_bytes, signature);
        self.record_outcome(result)
    }

    /// Checks the next stored record.
    pub fn push(
        &mut self,
        seq: u64,
        body_bytes: &[u8],
        prev_hash: &[u8],
        hash: &[u8],
    ) -> Result<(), VerifyFailure> {
        self.check_not_failed()?;
        let result = self.push_inner(seq, body_bytes, prev_hash, hash);
        self.record_outcome(result)
    }

    /// Ends the stream: every checkpoint must have been reached.
    pub fn finish(mut self) -> Result<VerifyReport, VerifyFailure> {
        self.check_not_failed()?;
        let last_seq = self.next_seq.saturating_sub(1);
        // INVARIANT (checkpoints-first): every pending checkpoint at or below last_seq was
        // compared and removed in `push`; what remains lies beyond the last record.
        if !self.pending.is_empty() {
            return Err(self.fail(self.next_seq, FailureReason::TruncatedTail));
        }
        Ok(VerifyReport {
            records: self.n_records,
            last_seq,
            last_hash: self.last_hash,
            checkpoints: self.n_checkpoints,
        })
    }

    fn checkpoint_inner(
        &mut self,
        row_seq: u64,
        signed_bytes: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyFailure> {
        let invalid = VerifyFailure {
            seq: row_seq,
            reason: FailureReason::CheckpointInvalid,
        };
        let public_key = self.public_key.as_ref().ok_or(invalid)?;
        let checkpoint =
            verify_checkpoint(public_key, signed_bytes, signature).map_err(|_| invalid)?;
        if checkpoint.seq != row_seq {
            return Err(invalid);
        }
        if checkpoint.seq < self.next_seq {
            return Err(VerifyFailure {
                seq: row_seq,
                reason: FailureReason::CheckpointOutOfOrder,
            });
        }
        let previous = self.pending.insert(checkpoint.seq, checkpoint.hash);
        if previous.is_some_and(|existing| existing != checkpoint.hash) {
            return Err(VerifyFailure {
                seq: row_seq,
                reason: FailureReason::CheckpointMismatch,
            });
        }
        self.n_checkpoints = self.n_checkpoints.saturating_add(1);
        Ok(())
    }

    fn push_inner(
        &mut self,
        seq: u64,
        body_bytes: &[u8],
        prev_hash: &[u8],
        hash: &[u8],
    ) -> Result<(), VerifyFailure> {
        let fail = |seq, reason| VerifyFailure { seq, reason };
        if seq > self.next_seq {
            return Err(fail(self.next_seq, FailureReason::SeqGap));
        }
        if seq < self.next_seq {
            return Err(fail(seq, FailureReason::SeqOutOfOrder));
        }
        if body_bytes.len() > MAX_BODY_BYTES {
            return Err(fail(seq, FailureReason::BodyMalformed));
        }
        match body_seq(body_bytes) {
            None => return Err(fail(seq, FailureReason::BodyMalformed)),
            Some(found) if found != seq => return Err(fail(seq, FailureReason::BodySeqMismatch)),
            Some(_) => {}
        }
        if prev_hash != self.last_hash {
            return Err(fail(seq, FailureReason::PrevLinkMismatch));
        }
        let computed = chain_hash(&self.last_hash, body_bytes);
        if hash != computed {
            return Err(fail(seq, FailureReason::HashMismatch));
        }
        if self
            .pending
            .remove(&seq)
            .is_some_and(|expected| expected != computed)
        {
            return Err(fail(seq, FailureReason::CheckpointMismatch));
        }
        self.last_hash = computed;
        self.next_seq = seq.saturating_add(1);
        self.n_records = self.n_records.saturating_add(1);
        Ok(())
    }

    fn check_not_failed(&self) -> Result<(), VerifyFailure> {
        match self.failed {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    fn record_outcome(&mut self, result: Result<(), VerifyFailure>) -> Result<(), VerifyFailure> {
        if let Err(failure) = result {
            self.failed = Some(failure);
        }
        result
    }

    fn fail(&mut self, seq: u64, reason: FailureReason) -> VerifyFailure {
        let failure = VerifyFailure { seq, reason };
        self.failed = Some(failure);
        failure
    }
}

/// The top-level `seq` of a canonical body, found by scanning rather than parsing
/// (see [`top_level_seq_at`]).
fn body_seq(body: &[u8]) -> Option<u64> {
    let rest = body.get(top_level_seq_at(body)?..)?;
    let n_digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (digits, after) = rest.split_at_checked(n_digits)?;
    if after.first() != Some(&b',') || digits.is_empty() || digits.len() > 16 {
        return None;
    }
    if digits.len() > 1 && digits.first() == Some(&b'0') {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, digit| {
        acc.checked_mul(10)?
            .checked_add(u64::from(digit.checked_sub(b'0')?))
    })
}

#[cfg(test)]
#[path = "verify/tests.rs"]
mod tests;
