//! Number-shaped detectors: credit cards, US SSNs, phones and IPv4, with their validators.

use crate::detect::text::{contains_word, context_before, has_word_before, isolated};

/// Credit card candidates: Visa, Mastercard (51-55 and 2221-2720), Amex, Discover.
pub(crate) const CARD_PATTERN: &str = r"(?:4\d{3}|5[1-5]\d{2}|2[2-7]\d{2}|6\d{3})(?:[ -]?\d{4}){3}(?:[ -]?\d{3})?|3[47]\d{2}[ -]?\d{6}[ -]?\d{5}";

/// The longest card match: 19 digits and 4 separators.
pub(crate) const CARD_MAX_BYTES: usize = 23;

/// SSN candidates: `AAA-GG-SSSS` or `AAA GG SSSS`; bare nine digits are taken only in context.
pub(crate) const SSN_PATTERN: &str = r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|\d{9}";

/// The longest SSN match: `AAA-GG-SSSS`.
pub(crate) const SSN_MAX_BYTES: usize = 11;

/// IPv4 dotted quads.
pub(crate) const IPV4_PATTERN: &str = r"(?:\d{1,3}\.){3}\d{1,3}";

/// The longest IPv4 match: four octets of three digits and three dots.
pub(crate) const IPV4_MAX_BYTES: usize = 15;

/// At least the longest phone match (the DE and generic E.164 alternatives, 28 bytes).
pub(crate) const PHONE_MAX_BYTES: usize = 32;

/// Phone candidates in E.164 and the national formats of the US, UK, DE and FR, most specific
/// first (the regex prefers the first alternative that matches at the leftmost position).
pub(crate) const PHONE_PATTERN: &str = concat!(
    // US / NANP with +1, parentheses, or three groups.
    r"(?:\+1[ .-]?)?\([2-9]\d{2}\)[ .-]?[2-9]\d{2}[ .-]\d{4}",
    r"|\+1[ .-]?[2-9]\d{2}[ .-][2-9]\d{2}[ .-]\d{4}",
    // UK: +44 then 10 digits in the usual groupings.
    r"|\+44 ?(?:\(0\) ?)?(?:\d{2} \d{4} \d{4}|\d{4} \d{6}|\d{3} \d{3} \d{4}|\d{4} \d{3} \d{3}|\d{10})",
    // DE: +49 then area and subscriber.
    r"|\+49 ?(?:\(0\) ?)?\d{2,5}[ /-]?\d{3,8}(?:[ -]\d{1,5})?",
    // FR: +33 then nine digits in pairs.
    r"|\+33 ?(?:\(0\) ?)?[1-9](?:[ .-]?\d{2}){4}",
    // Other E.164 with separators, then compact E.164.
    r"|\+[1-9]\d{0,2}[ .-]\d{1,4}(?:[ .-]\d{2,4}){2,4}",
    r"|\+[1-9]\d{7,14}",
    // National formats.
    r"|[2-9]\d{2}[ .-][2-9]\d{2}[ .-]\d{4}",
    r"|0[1-9](?:[ .-]\d{2}){4}",
    r"|0\d{2} \d{4} \d{4}|0\d{4} \d{6}|0\d{3} \d{3} \d{4}",
    r"|0\d{2,4}[ /-]\d{5,8}",
    r"|\d{10,11}",
);

const PHONE_WORDS: &[&str] = &[
    "phone",
    "telephone",
    "tel",
    "tél",
    "telefon",
    "mobil",
    "handy",
    "portable",
    "call",
    "mobile",
    "cell",
    "fax",
    "whatsapp",
    "sms",
    "text me",
    "reach",
    "contact",
    "dial",
    "number",
    "ring",
];
const NOT_PHONE_WORDS: &[&str] = &[
    "order", "invoice", "ticket", "ref", "id", "#", "account", "acct", "version", "build",
    "serial", "sku", "tracking", "po ", "batch", "case",
];
const SSN_WORDS: &[&str] = &["ssn", "social security", "ss#", "tin"];
const VERSION_WORDS: &[&str] = &["version", "release", "build"];

/// Checks a card candidate: one separator style, brand and length, Luhn.
pub(crate) fn is_card(text: &[u8], start: usize, end: usize) -> bool {
    let Some(candidate) = text.get(start..end) else {
        return false;
    };
    if !isolated(text, start, end, b"") {
        return false;
    }
    let mut separator = None;
    let mut digits = Vec::with_capacity(19);
    for &byte in candidate {
        if byte.is_ascii_digit() {
            digits.push(byte - b'0');
        } else if separator.is_some_and(|sep| sep != byte) {
            return false;
        } else {
            separator = Some(byte);
        }
    }
    brand_matches(&digits) && luhn_valid(&digits)
}

/// True when the IIN prefix fits a supported brand and length.
fn brand_matches(digits: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
    };
    let len = digits.len();
    match digits.first() {
        Some(4) => len == 16 || len == 19,
        Some(5) => (51..=55).contains(&prefix(2)) && len == 16,
        Some(2) => (2221..=2720).contains(&prefix(4)) && len == 16,
        Some(3) => matches!(prefix(2), 34 | 37) && len == 15,
        Some(6) => {
            (prefix(4) == 6011 || (644..=649).contains(&prefix(3)) || prefix(2) == 65)
                && (16..=19).contains(&len)
        }
        _ => false,
    }
}

/// The Luhn checksum over decimal digits (each 0..=9).
pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    luhn_sum(digits) % 10 == 0
}

/// The Luhn sum of `digits` as if they were a complete number.
pub(crate) fn luhn_sum(digits: &[u8]) -> u32 {
    digits
        .iter()
        .rev()
        .enumerate()
        .map(|(idx, d)| {
            let d = u32::from(*d);
            if idx % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum()
}

/// Checks an SSN candidate: valid area, group and serial; bare digits only after an SSN word.
pub(crate) fn is_ssn(text: &[u8], start: usize, end: usize) -> bool {
    let Some(candidate) = text.get(start..end) else {
        return false;
    };
    if !isolated(text, start, end, b"") {
        return false;
    }
    let digits: Vec<u32> = candidate
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| u32::from(b - b'0'))
        .collect();
    // Bare digits need an SSN label right before them, and no other label in between.
    let labelled = || {
        let near = context_before(text, start, 24);
        let label_end = SSN_WORDS
            .iter()
            .filter_map(|word| near.rfind(word).map(|idx| idx + word.len()))
            .max();
        label_end
            .filter(|_| contains_word(&near, SSN_WORDS))
            .is_some_and(|end| !contains_word(near.get(end..).unwrap_or(""), NOT_PHONE_WORDS))
    };
    if candidate.len() == 9 && !labelled() {
        return false;
    }
    let number = |range: std::ops::Range<usize>| -> u32 {
        digits
            .get(range)
            .unwrap_or(&[])
            .iter()
            .fold(0, |acc, d| acc * 10 + d)
    };
    let (area, group, serial) = (number(0..3), number(3..5), number(5..9));
    // Areas 900-999 are never issued as SSNs but are taxpayer ids (ITINs) and the reserved
    // test range: taken only after an SSN or TIN label.
    area != 0 && area != 666 && (area < 900 || labelled()) && group != 0 && serial != 0
}

/// Checks an IPv4 candidate: octets in range without leading zeros, not a version number.
pub(crate) fn is_ipv4(text: &[u8], start: usize, end: usize) -> bool {
    let Some(candidate) = text.get(start..end) else {
        return false;
    };
    // A port (`:8080`) or a path may follow; another dotted number or letter may not.
    if !isolated(text, start, end, b":/") {
        return false;
    }
    if has_word_before(text, start, 12, VERSION_WORDS) {
        return false;
    }
    candidate.split(|b| *b == b'.').all(|octet| {
        let value = octet
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        value <= 255 && !(octet.len() > 1 && octet.first() == Some(&b'0'))
    })
}

/// Checks a phone candidate: structure, NANP rules, separators and context.
pub(crate) fn is_phone(text: &[u8], start: usize, end: usize) -> bool {
    let Some(candidate) = text.get(start..end) else {
        return false;
    };
    if !isolated(text, start, end, b"") {
        return false;
    }
    let plus = candidate.first() == Some(&b'+');
    let has_separator = candidate.iter().any(|b| !b.is_ascii_digit() && *b != b'+');
    let before = context_before(text, start, 32);
    if !has_separator && !plus {
        // A bare run of digits is a phone only when the text says so.
        return contains_word(&before, PHONE_WORDS) && !contains_word(&before, NOT_PHONE_WORDS);
    }
    if !plus && candidate.first() != Some(&b'(') {
        let near = context_before(text, start, 16);
        if contains_word(&near, NOT_PHONE_WORDS) && !contains_word(&near, PHONE_WORDS) {
            return false;
        }
    }
    let digits: Vec<u8> = candidate
        .iter()
        .filter(|b| b.is_ascii_digit())
        .copied()
        .collect();
    if !(8..=15).contains(&digits.len()) {
        return false;
    }
    // Plain separated groups must use one separator style ("415-555.0132" is not a phone).
    let separators: Vec<u8> = candidate
        .iter()
        .filter(|b| matches!(b, b'-' | b'.'))
        .copied()
        .collect();
    if separators
        .windows(2)
        .any(|pair| pair.first() != pair.last())
    {
        return false;
    }
    // A dotted national number that could be a date or version needs phone context.
    if !plus && separators.first() == Some(&b'.') && digits.len() < 10 {
        return false;
    }
    true
}

/// The country a phone number belongs to, for synthetic replacement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PhoneCountry {
    Us,
    Uk,
    De,
    Fr,
    Other,
}

/// Guesses the country of a detected phone from its prefix and length.
pub(crate) fn phone_country(candidate: &str) -> PhoneCountry {
    let digits: String = candidate.chars().filter(char::is_ascii_digit).collect();
    if let Some(rest) = candidate.strip_prefix('+') {
        return if rest.starts_with('1') {
            PhoneCountry::Us
        } else if rest.starts_with("44") {
            PhoneCountry::Uk
        } else if rest.starts_with("49") {
            PhoneCountry::De
        } else if rest.starts_with("33") {
            PhoneCountry::Fr
        } else {
            PhoneCountry::Other
        };
    }
    match (digits.len(), digits.starts_with('0')) {
        (10, false) => PhoneCountry::Us,
        (10, true) => PhoneCountry::Fr,
        (11, true) if digits.starts_with("02") || digits.starts_with("07") => PhoneCountry::Uk,
        (11, true) if candidate.contains(' ') && candidate.split(' ').count() == 3 => {
            PhoneCountry::Uk
        }
        (_, true) => PhoneCountry::De,
        _ => PhoneCountry::Other,
    }
}
