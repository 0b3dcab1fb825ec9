//! Strict unpadded base64url: the only encoding a token segment or trust-store key may use.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url, refusing padding, other alphabets, non-zero trailing bits and the
/// empty string.
///
/// INVARIANT (one-spelling): a returned value re-encodes to exactly `text`, so every byte string has
/// one accepted spelling and a token cannot be altered without changing its decoded bytes.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    // The engine's config refuses padding (`RequireNone`) and non-zero trailing bits; the
    // re-encoding check below keeps the invariant even if a future engine version relaxes either.
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    (URL_SAFE_NO_PAD.encode(&bytes).as_bytes() == text).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Option<&[u8]>) {
        assert_eq!(decode(text.as_bytes()).as_deref(), expected, "{text:?}");
    }

    #[test]
    fn accepts_only_the_canonical_spelling() {
        check("AQID", Some(&[1, 2, 3]));
        check("_-8", Some(&[0xff, 0xef]));
        check("AQ", Some(&[1]));
        check("", None);
        check("AQ==", None);
        check("AR", None); // non-zero trailing bits
        check("/+8", None); // standard alphabet
        check("AQ ID", None);
        check("A", None);
    }
}
