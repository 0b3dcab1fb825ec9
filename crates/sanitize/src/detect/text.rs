//! Byte-level helpers shared by the detectors: token boundaries and nearby context words.

/// True when `text[start..end]` is a whole token: not glued to letters, digits or `_`, and not
/// continued by a connector (`-`, `.`, `/`) followed by a letter or digit. Bytes in
/// `allowed_after` may follow the token even when a letter or digit comes next (a port after an
/// address, say).
pub(crate) fn isolated(text: &[u8], start: usize, end: usize, allowed_after: &[u8]) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let is_connector = |b: u8| matches!(b, b'-' | b'.' | b'/');
    let before = start.checked_sub(1).and_then(|idx| text.get(idx)).copied();
    let before2 = start.checked_sub(2).and_then(|idx| text.get(idx)).copied();
    let left_ok = match before {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b) if is_connector(b) => !before2.is_some_and(is_word),
        Some(_) => true,
    };
    let after = text.get(end).copied();
    let after2 = text.get(end + 1).copied();
    let right_ok = match after {
        None => true,
        Some(b) if allowed_after.contains(&b) => true,
        Some(b) if is_word(b) || b == b'@' => false,
        Some(b) if is_connector(b) => !after2.is_some_and(is_word),
        Some(_) => true,
    };
    left_ok && right_ok
}

/// About `len` bytes before `start` (widened to a word start), lower-cased (lossy on a split
/// character).
pub(crate) fn context_before(text: &[u8], start: usize, len: usize) -> String {
    // Widen to a word start so a cut word (`ById` seen as `Id`) does not look like a word.
    let mut from = start.saturating_sub(len);
    let floor = from.saturating_sub(32);
    while from > floor
        && from
            .checked_sub(1)
            .and_then(|idx| text.get(idx))
            .is_some_and(u8::is_ascii_alphanumeric)
    {
        from -= 1;
    }
    let window = text.get(from..start).unwrap_or(&[]);
    String::from_utf8_lossy(window).to_ascii_lowercase()
}

/// True when one of `words` occurs as a whole word in the `len` bytes before `start`.
pub(crate) fn has_word_before(text: &[u8], start: usize, len: usize, words: &[&str]) -> bool {
    contains_word(&context_before(text, start, len), words)
}

/// True when `haystack` contains one of `needles` as a whole word (needles that end in a
/// non-letter, like `#`, may be followed by anything).
pub(crate) fn contains_word(haystack: &str, needles: &[&str]) -> bool {
    let bytes = haystack.as_bytes();
    needles.iter().any(|needle| {
        haystack.match_indices(needle).any(|(idx, _)| {
            let before_ok = idx
                .checked_sub(1)
                .and_then(|prev| bytes.get(prev))
                .is_none_or(|b| !b.is_ascii_alphanumeric());
            let ends_in_letter = needle
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphabetic());
            let after_ok = !ends_in_letter
                || bytes
                    .get(idx + needle.len())
                    .is_none_or(|b| !b.is_ascii_alphabetic());
            before_ok && after_ok
        })
    })
}

/// Shannon entropy of `value` in bits per byte.
pub(crate) fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &byte in value {
        if let Some(slot) = counts.get_mut(usize::from(byte)) {
            *slot += 1;
        }
    }
    let len = value.len() as f64;
    counts
        .iter()
        .filter(|n| **n > 0)
        .map(|n| {
            let p = f64::from(*n) / len;
            -p * p.log2()
        })
        .sum()
}
