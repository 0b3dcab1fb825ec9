//! Exact decimal USD strings (`"0.15"`) to integer micro-USD and back, without floats.

use portcullis_core::MicroUsd;

/// Largest amount a decimal string may state: one billion dollars.
pub const MAX_USD: MicroUsd = MicroUsd(1_000_000_000 * 1_000_000);

/// Why a decimal USD string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("`{0}` is not a decimal amount like \"0.15\" or \"5\"")]
    Syntax(String),
    #[error("`{0}` has more than 6 decimals (amounts are counted in micro-USD)")]
    TooPrecise(String),
    #[error("`{0}` is more than 1000000000")]
    TooLarge(String),
}

/// Parses `"5"`, `"5.00"`, `"0.000001"` into micro-USD. No sign, exponent, separators,
/// surrounding spaces, leading or trailing dot, and at most 6 decimals.
pub fn parse_usd(text: &str) -> Result<MicroUsd, DecimalError> {
    let syntax = || DecimalError::Syntax(text.to_owned());
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|fraction| !all_digits(fraction)) {
        return Err(syntax());
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > 6 {
        return Err(DecimalError::TooPrecise(text.to_owned()));
    }
    let too_large = || DecimalError::TooLarge(text.to_owned());
    // 20 digits no longer fit a u64; the limit check below catches everything shorter.
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let mut micros: u64 = 0;
    for (idx, digit) in fraction.bytes().enumerate() {
        let power = 5u32.saturating_sub(u32::try_from(idx).unwrap_or(5));
        micros += u64::from(digit - b'0') * 10u64.pow(power);
    }
    let total = whole
        .checked_mul(1_000_000)
        .and_then(|whole| whole.checked_add(micros))
        .filter(|total| *total <= MAX_USD.0)
        .ok_or_else(too_large)?;
    Ok(MicroUsd(total))
}

/// Formats micro-USD as a decimal string with at least two decimals: `1_500_000` is `"1.50"`,
/// `1` is `"0.000001"`.
pub fn format_usd(amount: MicroUsd) -> String {
    let whole = amount.0 / 1_000_000;
    let micros = amount.0 % 1_000_000;
    let mut fraction = format!("{micros:06}");
    while fraction.len() > 2 && fraction.ends_with('0') {
        fraction.pop();
    }
    format!("{whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use proptest::prelude::*;

    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Result<u64, ()>) {
        assert_eq!(
            parse_usd(text).map(|m| m.0).map_err(|_| ()),
            expected,
            "{text}"
        );
    }

    #[test]
    fn parses_exact_decimals() {
        check("0", Ok(0));
        check("5", Ok(5_000_000));
        check("5.00", Ok(5_000_000));
        check("0.15", Ok(150_000));
        check("0.000001", Ok(1));
        check("120.5", Ok(120_500_000));
        check("1000000000", Ok(MAX_USD.0));
        check("007.10", Ok(7_100_000));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            ".",
            "5.",
            ".5",
            "-1",
            "+1",
            "1e3",
            "1,00",
            " 1",
            "1 ",
            "0.0000001",
            "1.2.3",
            "1000000000.000001",
            "99999999999999999999999",
            "NaN",
            "½",
        ] {
            check(bad, Err(()));
        }
    }

    #[test]
    fn formats_with_two_decimals_at_least() {
        assert_eq!(format_usd(MicroUsd(1_500_000)), "1.50");
        assert_eq!(format_usd(MicroUsd(1)), "0.000001");
        assert_eq!(format_usd(MicroUsd(0)), "0.00");
        assert_eq!(format_usd(MicroUsd(123_456_789)), "123.456789");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(micros in 0..=MAX_USD.0) {
            prop_assert_eq!(parse_usd(&format_usd(MicroUsd(micros))), Ok(MicroUsd(micros)));
        }

        #[test]
        fn never_panics(text in "\\PC{0,24}") {
            let _ = parse_usd(&text);
        }
    }
}
