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
    // Invisible characters go before NFKC too, so that one between a letter and its combining
    // mark cannot keep them from composing (`e\u{200b}\u{301}` is `é`, as `e\u{301}` is).
    let visible: String = text.chars().filter(|ch| !is_invisible(*ch)).collect();
    let mut res = String::with_capacity(text.len());
    let mut in_whitespace = false;
    for ch in visible.nfkc() {
        if ch.is_whitespace() {
            in_whitespace = true;
            continue;
        }
        if is_invisible(ch) {
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

/// A control or default-ignorable character that is not whitespace.
fn is_invisible(ch: char) -> bool {
    !ch.is_whitespace() && (ch.is_control() || is_default_ignorable(ch))
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
        check("e\u{200b}\u{301}", "\u{e9}");
        check("\u{fb01}le", "file");
        check("", "");
        assert!(matches!(normalize("plain text"), Cow::Borrowed(_)));
    }

    proptest::proptest! {
        /// Normalizing twice changes nothing: a rule sees one spelling per text.
        #[test]
        fn normalizing_is_idempotent(text in proptest::collection::vec(proptest::sample::select(TRICKY.to_vec()), 0..24)) {
            let text: String = text.into_iter().collect();
            let once = normalize(&text).into_owned();
            proptest::prop_assert_eq!(normalize(&once), once.as_str());
        }
    }

    /// Letters, marks, spaces and invisible characters that interact under NFKC.
    const TRICKY: &[char] = &[
        'e',
        'r',
        'm',
        '-',
        ' ',
        '\t',
        '\n',
        '\u{0}',
        '\u{7f}',
        '\u{a0}',
        '\u{ad}',
        '\u{301}',
        '\u{308}',
        '\u{34f}',
        '\u{1100}',
        '\u{1161}',
        '\u{11a8}',
        '\u{115f}',
        '\u{200b}',
        '\u{200d}',
        '\u{202e}',
        '\u{2060}',
        '\u{3000}',
        '\u{fb01}',
        '\u{fe0f}',
        '\u{feff}',
        '\u{ff52}',
        '\u{e0041}',
        '\u{2126}',
        '\u{212b}',
        '\u{1e9b}',
        '\u{323}',
    ];
}
