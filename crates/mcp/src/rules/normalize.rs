//! The text `deny` rules match: NFKC, invisible and control characters removed, whitespace collapsed.
//!
//! An agent that writes `r\u{200b}m -rf /`, `ｒｍ -rf /` or `rm\t\t-rf /` means `rm -rf /`; a
//! rule written for the plain spelling must refuse all of them.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization as _;

/// `text` in NFKC, without control or default-ignorable (zero-width, bidi, variation selector,
/// tag) characters, with every run of whitespace made one space. Borrowed when nothing changes.
pub fn normalize(text: &str) -> Cow<'_, str> {
    if is_plain(text) {
        return Cow::Borrowed(text);
    }
    let mut res = String::with_capacity(text.len());
    let mut in_whitespace = false;
    for ch in text.nfkc() {
        if ch.is_whitespace() {
            in_whitespace = true;
            continue;
        }
        if ch.is_control() || is_default_ignorable(ch) {
            // Dropped without ending a whitespace run: `a \u{200b} b` is `a b`.
            continue;
        }
        if in_whitespace {
            res.push(' ');
            in_whitespace = false;
        }
        res.push(ch);
    }
    if in_whitespace {
        res.push(' ');
    }
    Cow::Owned(res)
}

/// Printable ASCII without two whitespace characters in a row: already normal.
fn is_plain(text: &str) -> bool {
    let mut previous_space = false;
    for byte in text.bytes() {
        match byte {
            b' ' if previous_space => return false,
            b' ' => previous_space = true,
            0x21..=0x7e => previous_space = false,
            _ => return false,
        }
    }
    true
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties): characters that render as
/// nothing, so an agent can slip them into a word unseen.
fn is_default_ignorable(ch: char) -> bool {
    matches!(
        u32::from(ch),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: &str) {
        assert_eq!(normalize(input), expected);
    }

    #[test]
    fn spellings_of_one_command_normalize_alike() {
        check("rm -rf /", "rm -rf /");
        check("r\u{200b}m -rf /", "rm -rf /");
        check("r\u{feff}m\u{00a0}-rf /", "rm -rf /");
        check("rm\t\t-rf\n/", "rm -rf /");
        check("rm \u{200b} -rf /", "rm -rf /");
        check("ｒｍ －ｒｆ /", "rm -rf /");
        check("r\u{0007}m -rf /", "rm -rf /");
        check("r\u{202e}m -rf /", "rm -rf /");
        check("rm\u{e0041} -rf /", "rm -rf /");
        check("trailing  ", "trailing ");
        check("", "");
        assert!(matches!(normalize("plain text"), Cow::Borrowed(_)));
    }
}
