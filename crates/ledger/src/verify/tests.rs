//! The verifier's failure table: each tampering is named by the right seq and code.

use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use portcullis_core::{Decision, Event};

use crate::checkpoint::Checkpoint;
use crate::record::{GENESIS_PREV_HASH, chain_hash, encode_body};
use crate::verify::{FailureReason, Verifier, VerifyFailure, body_seq};

#[derive(Clone)]
struct Row {
    seq: u64,
    body: Vec<u8>,
    prev: Vec<u8>,
    hash: Vec<u8>,
}

struct Cp {
    seq: u64,
    bytes: Vec<u8>,
    signature: Vec<u8>,
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// Ten records with checkpoints at 5 and 10.
fn ledger() -> (Vec<Row>, Vec<Cp>) {
    let mut rows = Vec::new();
    let mut cps = Vec::new();
    let mut prev = GENESIS_PREV_HASH;
    for seq in 1..=10u64 {
        let time = Timestamp::new(1_767_225_600 + seq as i64, 0).unwrap();
        let event = Event::new("tool.call", Decision::Allow, "allowed")
            .subject("agent-1")
            .data(serde_json::json!({"n": seq, "seq": 99, "k\"seq": 98}));
        let body = encode_body(seq, time, &event).unwrap();
        let hash = chain_hash(&prev, &body);
        rows.push(Row {
            seq,
            body,
            prev: prev.to_vec(),
            hash: hash.to_vec(),
        });
        if seq % 5 == 0 {
            let signed = Checkpoint { seq, hash, time }.sign(&key()).unwrap();
            cps.push(Cp {
                seq,
                bytes: signed.signed_bytes,
                signature: signed.signature.to_vec(),
            });
        }
        prev = hash;
    }
    (rows, cps)
}

fn run(rows: &[Row], cps: &[Cp]) -> Result<crate::VerifyReport, VerifyFailure> {
    let mut verifier = Verifier::new(key().verifying_key().to_bytes());
    for cp in cps {
        verifier.push_checkpoint(cp.seq, &cp.bytes, &cp.signature)?;
    }
    for row in rows {
        verifier.push(row.seq, &row.body, &row.prev, &row.hash)?;
    }
    verifier.finish()
}

#[track_caller]
fn check(mutate: impl FnOnce(&mut Vec<Row>, &mut Vec<Cp>), expected: Option<(u64, FailureReason)>) {
    let (mut rows, mut cps) = ledger();
    mutate(&mut rows, &mut cps);
    let got = run(&rows, &cps).map_err(|f| (f.seq, f.reason)).err();
    assert_eq!(got, expected);
}

/// Recomputes hashes from `from` on, as an attacker with write access would.
fn rechain(rows: &mut [Row], from: usize) {
    for idx in from..rows.len() {
        let prev: [u8; 32] = rows[idx].prev.clone().try_into().unwrap();
        let hash = chain_hash(&prev, &rows[idx].body);
        rows[idx].hash = hash.to_vec();
        if let Some(next) = rows.get_mut(idx + 1) {
            next.prev = hash.to_vec();
        }
    }
}

#[test]
fn intact_ledger_verifies() {
    check(|_, _| {}, None);
    let (rows, cps) = ledger();
    let report = run(&rows, &cps).unwrap();
    assert_eq!(
        (report.records, report.last_seq, report.checkpoints),
        (10, 10, 2)
    );
    assert_eq!(report.last_hash.to_vec(), rows[9].hash);
    let empty = run(&[], &[]).unwrap();
    assert_eq!(
        (empty.records, empty.last_seq, empty.last_hash),
        (0, 0, GENESIS_PREV_HASH)
    );
}

#[test]
fn failure_table() {
    use FailureReason::*;
    // An edited body.
    check(|rows, _| rows[3].body[20] ^= 1, Some((4, HashMismatch)));
    // An edited hash.
    check(|rows, _| rows[6].hash[0] ^= 1, Some((7, HashMismatch)));
    // An edited body with its own hash recomputed: the next link breaks.
    check(
        |rows, _| {
            rows[6].body[20] ^= 1;
            let prev: [u8; 32] = rows[6].prev.clone().try_into().unwrap();
            rows[6].hash = chain_hash(&prev, &rows[6].body).to_vec();
        },
        Some((8, PrevLinkMismatch)),
    );
    // Edited and fully rechained: the checkpoint at 10 still catches it.
    check(
        |rows, _| {
            rows[6].body[20] ^= 1;
            rechain(rows, 6);
        },
        Some((10, CheckpointMismatch)),
    );
    // A deleted middle row.
    check(|rows, _| drop(rows.remove(4)), Some((5, SeqGap)));
    // Deleted last rows: the checkpoint at 10 is never reached.
    check(|rows, _| rows.truncate(7), Some((8, TruncatedTail)));
    // The first rows deleted.
    check(|rows, _| drop(rows.drain(..2)), Some((1, SeqGap)));
    // Two rows swapped (seq columns stay, contents move).
    check(
        |rows, _| {
            let (a, b) = (rows[2].clone(), rows[3].clone());
            rows[2] = Row { seq: 3, ..b };
            rows[3] = Row { seq: 4, ..a };
        },
        Some((3, BodySeqMismatch)),
    );
    // Two rows delivered out of order.
    check(|rows, _| rows.swap(2, 3), Some((3, SeqGap)));
    check(
        |rows, _| rows.insert(5, rows[4].clone()),
        Some((5, SeqOutOfOrder)),
    );
    // A body whose own seq differs from its row, hash recomputed.
    check(
        |rows, _| {
            let text = String::from_utf8(rows[1].body.clone()).unwrap();
            rows[1].body = text.replace(r#""seq":2,"#, r#""seq":3,"#).into_bytes();
            rechain(rows, 1);
        },
        Some((2, BodySeqMismatch)),
    );
    // A broken prev link.
    check(|rows, _| rows[8].prev[5] ^= 1, Some((9, PrevLinkMismatch)));
    check(
        |rows, _| rows[8].prev.truncate(31),
        Some((9, PrevLinkMismatch)),
    );
    // A body that is not a ledger body.
    check(
        |rows, _| rows[0].body = b"[]".to_vec(),
        Some((1, BodyMalformed)),
    );
    // Checkpoints: forged signature, wrong row seq, dropped (still fine: nothing to compare).
    check(
        |_, cps| cps[1].signature[0] ^= 1,
        Some((10, CheckpointInvalid)),
    );
    check(|_, cps| cps[0].seq = 6, Some((6, CheckpointInvalid)));
    check(|_, cps| drop(cps.pop()), None);
}

#[test]
fn failure_sticks_and_late_checkpoints_are_refused() {
    let (rows, cps) = ledger();
    let mut verifier = Verifier::new(key().verifying_key().to_bytes());
    for row in &rows[..6] {
        verifier
            .push(row.seq, &row.body, &row.prev, &row.hash)
            .unwrap();
    }
    let late = verifier.push_checkpoint(cps[0].seq, &cps[0].bytes, &cps[0].signature);
    let expected = VerifyFailure {
        seq: 5,
        reason: FailureReason::CheckpointOutOfOrder,
    };
    assert_eq!(late, Err(expected));
    assert_eq!(
        verifier.push(7, &rows[6].body, &rows[6].prev, &rows[6].hash),
        Err(expected)
    );
    assert_eq!(verifier.finish(), Err(expected));
}

#[track_caller]
fn check_seq(body: &str, expected: Option<u64>) {
    assert_eq!(body_seq(body.as_bytes()), expected);
}

#[test]
fn scans_the_top_level_seq() {
    check_seq(
        r#"{"data":{"seq":5},"seq":12,"subject":"a\"seq\":3","time":"t"}"#,
        Some(12),
    );
    check_seq(r#"{"seq":0,"time":"t"}"#, Some(0));
    check_seq(r#"{"seq":01,"time":"t"}"#, None);
    check_seq(r#"{"seq":12}"#, None);
    check_seq(r#"{"seq":-1,"time":"t"}"#, None);
    check_seq(r#"{"seq":99999999999999999,"time":"t"}"#, None);
    check_seq(r#"{"time":"t"}"#, None);
    check_seq(r#""seq":1,"#, None);
    check_seq("", None);
}
