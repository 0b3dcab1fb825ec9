//! The property the fuzz target and the corpus replay test check: outside bytes never panic.

use crate::record::{GENESIS_PREV_HASH, decode_record};
use crate::verify::Verifier;

/// Feeds `data` to [`decode_record`], [`Verifier::push`] and [`Verifier::push_checkpoint`].
/// Must never panic; results are checked for consistency only.
pub fn check_ledger_bytes(data: &[u8]) {
    let (seq_bytes, rest) = data.split_at_checked(8).unwrap_or((&[], data));
    let seq = seq_bytes.try_into().map(u64::from_le_bytes).unwrap_or(1);
    let prev = GENESIS_PREV_HASH;
    let hash = crate::record::chain_hash(&prev, rest);

    let decoded = decode_record(seq, rest, prev, hash);
    if let Ok(record) = &decoded {
        // A body that decodes carries its row's seq.
        assert_eq!(record.seq, seq);
    }

    let mut verifier = Verifier::new([7; 32]);
    let pushed = verifier.push(seq, rest, &prev, &hash);
    if seq != 1 {
        assert!(pushed.is_err(), "only seq 1 may follow genesis");
    }
    let _ = verifier.finish();

    let mut verifier = Verifier::new([7; 32]);
    let (signature, signed) = rest.split_at_checked(64).unwrap_or((rest, &[]));
    assert!(
        verifier.push_checkpoint(seq, signed, signature).is_err(),
        "no key signs fuzz input"
    );
}
