//! Ledger records: the canonical body bytes, the hash chain, and decoding stored rows.

use jiff::Timestamp;
use portcullis_core::{Decision, Event};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The largest body a record may have, in bytes. Larger events are refused before they are stored.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The `prev_hash` of the first record (seq 1): 32 zero bytes.
pub const GENESIS_PREV_HASH: [u8; 32] = [0; 32];

/// The largest seq the format carries exactly: RFC 8785 writes numbers as IEEE doubles.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// One decoded ledger record, as the admin API shows it. Hashes serialize as lowercase hex.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerRecord {
    pub seq: u64,
    pub time: Timestamp,
    pub kind: String,
    pub subject: Option<String>,
    pub decision: Decision,
    pub reason: String,
    pub correlation_id: Option<String>,
    pub data: serde_json::Value,
    #[serde(serialize_with = "serialize_hex")]
    pub prev_hash: [u8; 32],
    #[serde(serialize_with = "serialize_hex")]
    pub hash: [u8; 32],
}

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("record body is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("seq {seq} is out of the representable range")]
    SeqOutOfRange { seq: u64 },
    #[error("record body could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("record body is not valid ledger json")]
    Malformed(#[source] serde_json::Error),
    #[error("record body carries seq {found}, its row is {row}")]
    SeqMismatch { row: u64, found: u64 },
    #[error("record body carries an invalid time")]
    BadTime(#[source] jiff::Error),
    #[error("encoded body has no top-level seq")]
    NoSeqField,
}

/// Encodes the canonical body of the record `seq` holding `event`: RFC 8785 JSON of
/// `{"correlation_id","data","decision","kind","reason","seq","subject","time"}`.
///
/// Fails only when the body would exceed [`MAX_BODY_BYTES`], when `seq` exceeds [`MAX_SEQ`], or
/// when `data` holds a number JSON cannot carry.
pub fn encode_body(seq: u64, time: Timestamp, event: &Event) -> Result<Vec<u8>, LedgerError> {
    BodyTemplate::new(time, event)?.with_seq(seq)
}

/// A body encoded before its seq is known: the expensive RFC 8785 encoding happens in the caller,
/// and the single writer only fills in the seq digits ([`BodyTemplate::with_seq`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyTemplate {
    /// The canonical body with seq 0.
    bytes: Vec<u8>,
    /// Where the `0` of `"seq":0` sits in `bytes`.
    seq_at: usize,
}

impl BodyTemplate {
    /// Encodes `event` stamped with `time`. Fails like [`encode_body`].
    pub fn new(time: Timestamp, event: &Event) -> Result<Self, LedgerError> {
        let body = BodyRef {
            correlation_id: event.correlation_id.as_deref(),
            data: &event.data,
            decision: event.decision,
            kind: &event.kind,
            reason: &event.reason,
            seq: 0,
            subject: event.subject.as_deref(),
            time: time.to_string(),
        };
        let bytes = serde_jcs::to_vec(&body).map_err(LedgerError::Encode)?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(LedgerError::TooLarge {
                size: bytes.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        // INVARIANT (seq-is-last-key-match): see `top_level_seq_at`.
        let seq_at = top_level_seq_at(&bytes).ok_or(LedgerError::NoSeqField)?;
        Ok(Self { bytes, seq_at })
    }

    /// The canonical body of record `seq`: byte for byte what encoding with `seq` gives, since
    /// RFC 8785 writes an integer below 2^53 as its plain decimal digits.
    pub fn with_seq(&self, seq: u64) -> Result<Vec<u8>, LedgerError> {
        if seq > MAX_SEQ {
            return Err(LedgerError::SeqOutOfRange { seq });
        }
        let (before, zero_and_after) = self
            .bytes
            .split_at_checked(self.seq_at)
            .ok_or(LedgerError::NoSeqField)?;
        let after = zero_and_after.get(1..).ok_or(LedgerError::NoSeqField)?;
        let digits = seq.to_string();
        let size = before.len() + digits.len() + after.len();
        if size > MAX_BODY_BYTES {
            return Err(LedgerError::TooLarge {
                size,
                limit: MAX_BODY_BYTES,
            });
        }
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(before);
        body.extend_from_slice(digits.as_bytes());
        body.extend_from_slice(after);
        Ok(body)
    }
}

/// Where the digits of the top-level `seq` value start in a canonical body.
///
/// INVARIANT (seq-is-last-key-match): in an RFC 8785 body the top-level keys after `seq` are only
/// `subject` (null or a string) and `time` (a string); a string cannot hold an unescaped `"`, so
/// the last `"seq":` in the bytes is the top-level key. A non-canonical body can fool this scan
/// only together with a hash that matches it, which the chain and checkpoints catch.
pub(crate) fn top_level_seq_at(body: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"seq\":";
    if body.first() != Some(&b'{') || body.last() != Some(&b'}') {
        return None;
    }
    let at = body.windows(KEY.len()).rposition(|window| window == KEY)?;
    at.checked_add(KEY.len())
}

/// `SHA-256(prev || body)`: the hash of a record over its stored bytes.
pub fn chain_hash(prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(body);
    hasher.finalize().into()
}

/// Decodes a stored row. Checks that the body parses strictly and carries `seq`; it does not check
/// the hash chain (that is the [`crate::Verifier`]'s job).
pub fn decode_record(
    seq: u64,
    body_bytes: &[u8],
    prev_hash: [u8; 32],
    hash: [u8; 32],
) -> Result<LedgerRecord, LedgerError> {
    if body_bytes.len() > MAX_BODY_BYTES {
        return Err(LedgerError::TooLarge {
            size: body_bytes.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    let body: BodyOwned = serde_json::from_slice(body_bytes).map_err(LedgerError::Malformed)?;
    if body.seq != seq {
        return Err(LedgerError::SeqMismatch {
            row: seq,
            found: body.seq,
        });
    }
    let time: Timestamp = body.time.parse().map_err(LedgerError::BadTime)?;
    Ok(LedgerRecord {
        seq,
        time,
        kind: body.kind,
        subject: body.subject,
        decision: body.decision,
        reason: body.reason,
        correlation_id: body.correlation_id,
        data: body.data,
        prev_hash,
        hash,
    })
}

/// The body as written. Field order does not matter: JCS sorts keys.
#[derive(Serialize)]
struct BodyRef<'a> {
    correlation_id: Option<&'a str>,
    data: &'a serde_json::Value,
    decision: Decision,
    kind: &'a str,
    reason: &'a str,
    seq: u64,
    subject: Option<&'a str>,
    time: String,
}

/// The body as read back: every field required, nothing else allowed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyOwned {
    correlation_id: Option<String>,
    data: serde_json::Value,
    decision: Decision,
    kind: String,
    reason: String,
    seq: u64,
    subject: Option<String>,
    time: String,
}

fn serialize_hex<S: serde::Serializer>(bytes: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::new("admin.auth", Decision::Deny, "unauthorized")
            .subject("agent-1")
            .correlation("req-1")
            .data(serde_json::json!({"b": 2, "a": [1, "x"]}))
    }

    fn at(second: i64, nanos: i32) -> Timestamp {
        Timestamp::new(second, nanos).unwrap()
    }

    #[track_caller]
    fn check_encode(seq: u64, time: Timestamp, event: &Event, expected: &str) {
        let body = encode_body(seq, time, event).unwrap();
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
        let record = decode_record(seq, &body, [1; 32], [2; 32]).unwrap();
        assert_eq!(record.seq, seq);
        assert_eq!(record.time, time);
        assert_eq!(record.kind, event.kind);
        assert_eq!(record.subject, event.subject);
        assert_eq!(record.decision, event.decision);
        assert_eq!(record.reason, event.reason);
        assert_eq!(record.correlation_id, event.correlation_id);
        assert_eq!(record.data, event.data);
    }

    #[test]
    fn encodes_canonical_json() {
        check_encode(
            7,
            at(1_767_225_600, 0),
            &event(),
            r#"{"correlation_id":"req-1","data":{"a":[1,"x"],"b":2},"decision":"deny","kind":"admin.auth","reason":"unauthorized","seq":7,"subject":"agent-1","time":"2026-01-01T00:00:00Z"}"#,
        );
        check_encode(
            1,
            at(1_767_225_600, 123_456_789),
            &Event::new("k", Decision::Info, "r"),
            r#"{"correlation_id":null,"data":null,"decision":"info","kind":"k","reason":"r","seq":1,"subject":null,"time":"2026-01-01T00:00:00.123456789Z"}"#,
        );
    }

    #[test]
    fn refuses_oversized_and_out_of_range() {
        let big = Event::new("k", Decision::Info, "r")
            .data(serde_json::json!("x".repeat(MAX_BODY_BYTES)));
        assert!(matches!(
            encode_body(1, at(0, 0), &big),
            Err(LedgerError::TooLarge { .. })
        ));
        assert!(matches!(
            encode_body(MAX_SEQ + 1, at(0, 0), &event()),
            Err(LedgerError::SeqOutOfRange { .. })
        ));
    }

    #[track_caller]
    fn check_decode_err(seq: u64, body: &str, expected: fn(&LedgerError) -> bool) {
        let err = decode_record(seq, body.as_bytes(), [0; 32], [0; 32]).unwrap_err();
        assert!(expected(&err), "{err:?}");
    }

    #[test]
    fn decode_refuses_bad_bodies() {
        let good = String::from_utf8(encode_body(3, at(0, 0), &event()).unwrap()).unwrap();
        check_decode_err(4, &good, |e| {
            matches!(e, LedgerError::SeqMismatch { row: 4, found: 3 })
        });
        check_decode_err(3, "{}", |e| matches!(e, LedgerError::Malformed(_)));
        check_decode_err(3, "not json", |e| matches!(e, LedgerError::Malformed(_)));
        let extra = good.replacen('{', r#"{"extra":1,"#, 1);
        check_decode_err(3, &extra, |e| matches!(e, LedgerError::Malformed(_)));
        let bad_time = good.replace("1970-01-01T00:00:00Z", "yesterday");
        check_decode_err(3, &bad_time, |e| matches!(e, LedgerError::BadTime(_)));
    }

    #[test]
    fn template_fills_in_exactly_the_encoded_seq() {
        let template = BodyTemplate::new(at(5, 6), &event()).unwrap();
        for seq in [0, 1, 9, 10, 12_345, MAX_SEQ] {
            assert_eq!(
                template.with_seq(seq).unwrap(),
                encode_body(seq, at(5, 6), &event()).unwrap()
            );
        }
        // A body just under the limit with seq 0 goes over it with a longer seq.
        let filler =
            |n: usize| Event::new("k", Decision::Info, "r").data(serde_json::json!("x".repeat(n)));
        let base = encode_body(0, at(0, 0), &filler(0)).unwrap().len();
        let edge = BodyTemplate::new(at(0, 0), &filler(MAX_BODY_BYTES - base)).unwrap();
        assert_eq!(edge.with_seq(0).unwrap().len(), MAX_BODY_BYTES);
        assert!(matches!(
            edge.with_seq(10),
            Err(LedgerError::TooLarge { .. })
        ));
    }

    #[test]
    fn chain_hash_is_sha256_of_prev_and_body() {
        let hash = chain_hash(&GENESIS_PREV_HASH, b"abc");
        let mut input = vec![0u8; 32];
        input.extend_from_slice(b"abc");
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(&input)));
        assert_ne!(chain_hash(&[1; 32], b"abc"), hash);
    }
}
