//! Every reason a capsule is refused: stable codes, their registry mapping and the `REASONS` table.

use portcullis_core::ErrorCode;
use portcullis_core::error::ReasonInfo;

/// Declares [`VerifyError`], its codes and [`REASONS`] from one list so they cannot drift.
macro_rules! reasons {
    ($($variant:ident => $code:literal, $maps_to:ident, $summary:literal;)+) => {
        /// Why a capsule was refused. Each variant has a stable snake_case code ([`VerifyError::code`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
        pub enum VerifyError {
            $(#[error($summary)] $variant,)+
        }

        impl VerifyError {
            /// Every refusal, in verification order.
            pub const ALL: &'static [VerifyError] = &[$(VerifyError::$variant,)+];

            /// The stable reason code (an API: never renamed or reused).
            pub const fn code(self) -> &'static str {
                match self { $(VerifyError::$variant => $code,)+ }
            }

            /// The registry code the gateway answers with.
            pub const fn error_code(self) -> ErrorCode {
                match self { $(VerifyError::$variant => ErrorCode::$maps_to,)+ }
            }
        }

        /// Every reason code this crate emits, for `docs/ERROR_CODES.md`.
        pub const REASONS: &[ReasonInfo] = &[
            $(ReasonInfo { code: $code, maps_to: ErrorCode::$maps_to, summary: $summary },)+
        ];
    };
}

reasons! {
    // 1. size
    TooLarge => "capsule_too_large", HeaderTooLarge, "the token is longer than 4096 bytes";
    // 2. decoding
    BadEncoding => "capsule_bad_encoding", CapsuleInvalid,
        "the token is not `v1.` followed by dot-separated unpadded canonical base64url segments";
    BadSignatureLength => "capsule_bad_signature_length", CapsuleInvalid,
        "a signature is not exactly 64 raw bytes (DER and other encodings are refused)";
    // 3. strict parse of P (the same JSON checks apply to every hop record H)
    BadJson => "capsule_bad_json", CapsuleInvalid, "the body or a hop record is not valid UTF-8 JSON";
    DuplicateKey => "capsule_duplicate_key", CapsuleInvalid, "an object has the same key twice, at any depth";
    BadNumber => "capsule_bad_number", CapsuleInvalid,
        "a number is not an integer in [0, 2^53-1] (fractions, exponents, signs are refused)";
    LimitExceeded => "capsule_limit_exceeded", CapsuleInvalid,
        "the JSON is nested too deep or has too many items or too long a string";
    NotCanonical => "capsule_not_canonical", CapsuleInvalid,
        "the body or a hop record differs from its own RFC 8785 canonical form";
    GrantsRights => "capsule_grants_rights", CapsuleInvalid,
        "the body tries to allow, remove, revoke or override something; capsules only add denies";
    UnknownField => "capsule_unknown_field", CapsuleInvalid, "the body has a field the format does not define (outside `ext`)";
    BadField => "capsule_bad_field", CapsuleInvalid, "a body field is missing, of the wrong type, or out of bounds";
    // 4. trust-store lookup
    UnknownKid => "capsule_unknown_kid", CapsuleInvalid, "no issuer in the trust store has this `kid`";
    RevokedKid => "capsule_revoked_kid", CapsuleInvalid, "the issuer key is revoked";
    // 5. signature
    HighS => "capsule_high_s", CapsuleInvalid, "a secp256k1 signature (issuer or hop) has a high S value";
    BadSignature => "capsule_bad_signature", CapsuleInvalid,
        "the issuer signature does not verify with the trust store's key and algorithm";
    // 6. header fields
    UnsupportedVersion => "capsule_unsupported_version", CapsuleInvalid, "`v` is not 1";
    IssuerMismatch => "capsule_issuer_mismatch", CapsuleInvalid, "`iss` is not the issuer the trust store binds to `kid`";
    ScopeNotAllowed => "capsule_scope_not_allowed", CapsuleInvalid, "the issuer may not sign capsules of this scope";
    BadMaxHops => "capsule_bad_max_hops", CapsuleInvalid, "`max_hops` is greater than 8";
    // 7. time
    BadTtl => "capsule_bad_ttl", CapsuleInvalid, "`ttl` is 0 or greater than the configured maximum";
    FutureIat => "capsule_future_iat", CapsuleInvalid, "`iat` is further in the future than the allowed clock skew";
    Expired => "capsule_expired", CapsuleInvalid, "the capsule has expired (now >= iat + ttl)";
    TooOld => "capsule_too_old", CapsuleInvalid, "`iat` is older than the configured maximum age";
    // 8. hops
    TooManyHops => "capsule_too_many_hops", CapsuleInvalid, "the token carries more hop records than `max_hops`";
    BadHop => "capsule_bad_hop", CapsuleInvalid, "a hop record does not have exactly the fields `depth`, `kid`, `node` with valid values";
    HopOutOfOrder => "capsule_hop_out_of_order", CapsuleInvalid, "hop depths are not 1, 2, ..., h in order";
    UnknownNodeKid => "capsule_unknown_node_kid", CapsuleInvalid, "no relaying node in the trust store has the hop's `kid`";
    RevokedNodeKid => "capsule_revoked_node_kid", CapsuleInvalid, "the relaying node's key is revoked";
    HopNodeMismatch => "capsule_hop_node_mismatch", CapsuleInvalid, "the hop's `node` is not the node the trust store binds to its `kid`";
    DuplicateNode => "capsule_duplicate_node", CapsuleInvalid, "the same node appears twice among the hops";
    BadHopSignature => "capsule_bad_hop_signature", CapsuleInvalid, "a hop signature does not verify";
    // 9. content
    BadPattern => "capsule_bad_pattern", CapsuleInvalid, "a deny or contract pattern is not a valid gate-key pattern";
    PatternNotAllowed => "capsule_pattern_not_allowed", CapsuleInvalid, "a pattern is not within the issuer's allowed patterns";
    BadContract => "capsule_bad_contract", CapsuleInvalid,
        "a contract has no patterns, an empty validity window, a zero quota window or a zero renewal period";
    DuplicateContract => "capsule_duplicate_contract", CapsuleInvalid, "two contracts share one id";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_enum_and_codes_are_unique() {
        assert_eq!(REASONS.len(), VerifyError::ALL.len());
        let mut seen = std::collections::BTreeSet::new();
        for (reason, info) in VerifyError::ALL.iter().zip(REASONS) {
            assert_eq!(reason.code(), info.code);
            assert_eq!(reason.error_code(), info.maps_to);
            assert_eq!(reason.to_string(), info.summary);
            assert!(info.code.starts_with("capsule_"), "{}", info.code);
            assert!(
                info.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                info.code
            );
            assert!(seen.insert(info.code), "duplicate {}", info.code);
            let expected = if *reason == VerifyError::TooLarge {
                ErrorCode::HeaderTooLarge
            } else {
                ErrorCode::CapsuleInvalid
            };
            assert_eq!(info.maps_to, expected);
        }
    }
}
