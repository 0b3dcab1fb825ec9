//! Address-shaped detectors: email, IBAN and IPv6, with their validators.

use std::net::Ipv6Addr;

use crate::detect::text::isolated;

/// Email candidates: a local part, `@`, and a dotted domain with an alphabetic TLD.
pub(crate) const EMAIL_PATTERN: &str =
    r"[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}";

/// IBAN candidates: country, check digits, then up to 30 alphanumerics, optionally in groups.
pub(crate) const IBAN_PATTERN: &str = r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?";

/// The longest IBAN match: country and check digits, seven groups of four and one of three,
/// each after a space.
pub(crate) const IBAN_MAX_BYTES: usize = 43;

/// IPv6 candidates in every textual form: full, compressed, embedded IPv4, zone id.
pub(crate) const IPV6_PATTERN: &str =
    r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:(?:\.\d{1,3}){3})?(?:%[0-9a-z_.-]{1,16})?";

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp"];

/// IBAN lengths per country (ISO 13616 registry, common SEPA and non-SEPA countries).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VG", 24),
    (b"XK", 20),
];

/// Trims an email candidate to a valid address: returns the adjusted `(start, end)`.
pub(crate) fn email_bounds(text: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let candidate = text.get(start..end)?;
    // A local part never starts with a dot.
    let skip = candidate.iter().take_while(|b| **b == b'.').count();
    let start = start + skip;
    let local_len = candidate.iter().skip(skip).position(|b| *b == b'@')?;
    if local_len == 0 {
        return None;
    }
    let local = text.get(start..start + local_len)?;
    if local.last() == Some(&b'.') || local.windows(2).any(|w| w == b"..") {
        return None;
    }
    // The character before must not continue a word (`x_bob@` is taken whole by the regex).
    let before = start.checked_sub(1).and_then(|idx| text.get(idx));
    if before.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'@') {
        return None;
    }
    let after = text.get(end);
    if after.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'@' || *b == b'_') {
        return None;
    }
    // `scheme://user:password@host` is a credential, not an address.
    let lead = text.get(start.saturating_sub(128)..start).unwrap_or(&[]);
    let segment = lead
        .rsplit(|b| b.is_ascii_whitespace() || *b == b'/')
        .next()
        .unwrap_or(&[]);
    let segment_start = lead.len() - segment.len();
    if segment.contains(&b':')
        && lead
            .get(..segment_start)
            .is_some_and(|l| l.ends_with(b"//"))
    {
        return None;
    }
    // `icon@2x.png` is a file name.
    let domain = text.get(start + local_len + 1..end)?;
    let tld = domain.rsplit(|b| *b == b'.').next()?;
    if IMAGE_EXTENSIONS
        .iter()
        .any(|ext| tld.eq_ignore_ascii_case(ext.as_bytes()))
    {
        return None;
    }
    Some((start, end))
}

/// Validates an IBAN candidate: known country, exact length, mod-97; returns the trimmed end.
pub(crate) fn iban_end(text: &[u8], start: usize, end: usize) -> Option<usize> {
    let candidate = text.get(start..end)?;
    let country = candidate.get(0..2)?;
    let expected = IBAN_LENGTHS
        .iter()
        .find(|(code, _)| code.as_slice() == country)
        .map(|(_, len)| *len)?;
    // Take exactly `expected` alphanumerics; the regex may have swallowed a following word.
    let mut n_chars = 0;
    let mut trimmed_end = None;
    for (idx, byte) in candidate.iter().enumerate() {
        if byte.is_ascii_alphanumeric() {
            n_chars += 1;
            if n_chars == expected {
                trimmed_end = Some(start + idx + 1);
                break;
            }
        }
    }
    let trimmed_end = trimmed_end?;
    if !isolated(text, start, trimmed_end, b"") {
        return None;
    }
    let compact: Vec<u8> = text
        .get(start..trimmed_end)?
        .iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .copied()
        .collect();
    (iban_mod97(&compact) == Some(1)).then_some(trimmed_end)
}

/// The ISO 7064 mod-97 remainder of an IBAN (rearranged), or `None` on a bad character.
pub(crate) fn iban_mod97(compact: &[u8]) -> Option<u32> {
    let (head, tail) = compact.split_at_checked(4)?;
    let mut remainder = 0u32;
    for &byte in tail.iter().chain(head) {
        let value = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'Z' => u32::from(byte - b'A') + 10,
            _ => return None,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    Some(remainder)
}

/// Validates an IPv6 candidate; returns the end without a trailing zone separator.
pub(crate) fn ipv6_end(text: &[u8], start: usize, end: usize) -> Option<usize> {
    let candidate = std::str::from_utf8(text.get(start..end)?).ok()?;
    let address = candidate.split('%').next()?;
    let groups = address.split(':').filter(|group| !group.is_empty()).count();
    if groups < 2 || address.bytes().filter(|b| b.is_ascii_hexdigit()).count() < 4 {
        return None;
    }
    address.parse::<Ipv6Addr>().ok()?;
    // A bracketed form with a port (`[2001:db8::1]:443`) is fine; a glued word is not.
    let before = start.checked_sub(1).and_then(|idx| text.get(idx));
    if before.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b':' || *b == b'_') {
        return None;
    }
    let after = text.get(end);
    if after.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b':' || *b == b'_') {
        return None;
    }
    Some(end)
}
