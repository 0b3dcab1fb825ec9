//! Format-preserving, obviously fake values derived from a keyed seed.
//!
//! Every generator is deterministic in its seed, so the same value in the same scope always maps
//! to the same fake one. The fakes come from reserved or documented ranges: `.invalid` emails,
//! test card prefixes, fiction phone ranges, documentation IP ranges, never-issued SSN areas and
//! IBANs on documented example bank codes.

use crate::detect::{PhoneCountry, luhn_sum, phone_country};
use crate::entity::EntityType;

/// Known secret prefixes kept as they are, longest first.
const SECRET_PREFIXES: &[&str] = &[
    "hooks.slack.com/services/",
    "pypi-AgEIcHlwaS5vcmc",
    "sk-ant-admin01-",
    "sk-ant-api03-",
    "sk-svcacct-",
    "github_pat_",
    "sk-admin-",
    "sk-proj-",
    "sk_live_",
    "rk_live_",
    "lin_api_",
    "sq0atp-",
    "sq0csp-",
    "dop_v1_",
    "doo_v1_",
    "dor_v1_",
    "shpat_",
    "shpss_",
    "shpca_",
    "shppa_",
    "glpat-",
    "whsec_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxo-",
    "xoxs-",
    "xoxr-",
    "xapp-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "npm_",
    "gsk_",
    "xai-",
    "key-",
    "AIza",
    "AKIA",
    "ASIA",
    "hf_",
    "eyJ",
    "SG.",
    "sk-",
    "SK",
];

/// A fake value of `entity` shaped like `original`.
pub(crate) fn generate(entity: EntityType, original: &str, seed: [u8; 32]) -> String {
    let mut rng = SeedStream::new(seed);
    match entity {
        EntityType::Email => format!("user_{:08x}@example.invalid", rng.next_u32()),
        EntityType::Phone => phone(original, &mut rng),
        EntityType::CreditCard => card(original, &mut rng),
        EntityType::UsSsn => {
            let digits = format!(
                "9{:02}{:02}{:04}",
                rng.below(100),
                1 + rng.below(99),
                1 + rng.below(9999)
            );
            reshape(original, &digits)
        }
        EntityType::Iban => iban(original, &mut rng),
        EntityType::Ip => ip(original, &mut rng),
        EntityType::Secret => secret(original, &mut rng),
    }
}

/// Pours `digits` into the digit positions of `original`, keeping its separators; when the
/// counts differ, returns the digits alone (with `+` if the original had one).
fn reshape(original: &str, digits: &str) -> String {
    let n_digits = original.chars().filter(char::is_ascii_digit).count();
    if n_digits != digits.len() {
        let plus = if original.starts_with('+') { "+" } else { "" };
        return format!("{plus}{digits}");
    }
    let mut fill = digits.chars();
    original
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                fill.next().unwrap_or('0')
            } else {
                c
            }
        })
        .collect()
}

fn phone(original: &str, rng: &mut SeedStream) -> String {
    let plus = original.starts_with('+');
    let digits = match (phone_country(original), plus) {
        // NANP fiction range 555-0100..0199.
        (PhoneCountry::Us, false) => format!("20255501{:02}", rng.below(100)),
        (PhoneCountry::Us, true) => format!("120255501{:02}", rng.below(100)),
        // Ofcom drama range 020 7946 0000..0999.
        (PhoneCountry::Uk, false) => format!("02079460{:03}", rng.below(1000)),
        (PhoneCountry::Uk, true) => format!("442079460{:03}", rng.below(1000)),
        // Bundesnetzagentur drama range 030 23125 000..999.
        (PhoneCountry::De, false) => format!("03023125{:03}", rng.below(1000)),
        (PhoneCountry::De, true) => format!("493023125{:03}", rng.below(1000)),
        // ARCEP fiction range 01 99 00 xx xx.
        (PhoneCountry::Fr, false) => format!("019900{:04}", rng.below(10_000)),
        (PhoneCountry::Fr, true) => format!("3319900{:04}", rng.below(10_000)),
        // Country code 999 is unassigned.
        (PhoneCountry::Other, _) => {
            let n_digits = original.chars().filter(char::is_ascii_digit).count();
            let mut digits = String::from("999");
            while digits.len() < n_digits.max(8) {
                digits.push(rng.digit());
            }
            digits
        }
    };
    reshape(original, &digits)
}

fn card(original: &str, rng: &mut SeedStream) -> String {
    let n_digits = original.chars().filter(char::is_ascii_digit).count();
    // Well-known test prefixes per brand.
    let prefix = match original.chars().next() {
        Some('3') => "378282",
        Some('5' | '2') => "555555",
        Some('6') => "601111",
        _ => "424242",
    };
    let mut digits: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    while digits.len() + 1 < n_digits.max(13) {
        digits.push(rng.digit_value());
    }
    // Choose the check digit that makes the whole number Luhn-valid.
    digits.push(0);
    let check = (10 - luhn_sum(&digits) % 10) % 10;
    if let Some(last) = digits.last_mut() {
        *last = u8::try_from(check).unwrap_or(0);
    }
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    reshape(original, &text)
}

fn iban(original: &str, rng: &mut SeedStream) -> String {
    let (country, bank) = if original.starts_with("GB") {
        ("GB", "WEST123456")
    } else {
        // The bank code of the documented example DE89 3704 0044 0532 0130 00.
        ("DE", "37040044")
    };
    let mut bban = String::from(bank);
    let account_len = if country == "GB" { 8 } else { 10 };
    for _ in 0..account_len {
        bban.push(rng.digit());
    }
    let check = crate::detect::iban_check_digits(country, &bban);
    let compact = format!("{country}{check:02}{bban}");
    if original.contains(' ') {
        let chars: Vec<char> = compact.chars().collect();
        chars
            .chunks(4)
            .map(|group| group.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        compact
    }
}

fn ip(original: &str, rng: &mut SeedStream) -> String {
    if original.contains(':') {
        let groups: Vec<String> = (0..6)
            .map(|_| format!("{:x}", rng.below(0x1_0000)))
            .collect();
        let text = format!("2001:db8:{}", groups.join(":"));
        if original.bytes().any(|b| b.is_ascii_uppercase()) {
            text.to_ascii_uppercase()
        } else {
            text
        }
    } else {
        // RFC 5737 documentation ranges.
        let net = match rng.below(3) {
            0 => "192.0.2",
            1 => "198.51.100",
            _ => "203.0.113",
        };
        format!("{net}.{}", 1 + rng.below(254))
    }
}

fn secret(original: &str, rng: &mut SeedStream) -> String {
    if original.starts_with("-----BEGIN") {
        return pem(original, rng);
    }
    let prefix = SECRET_PREFIXES
        .iter()
        .find(|prefix| original.starts_with(**prefix))
        .copied()
        .unwrap_or("");
    let body = original.strip_prefix(prefix).unwrap_or(original);
    format!("{prefix}{}", scramble(body, rng))
}

fn pem(original: &str, rng: &mut SeedStream) -> String {
    let header_end = original.find('\n').unwrap_or(original.len());
    let footer_start = original.rfind("-----END").unwrap_or(original.len());
    match (
        original.get(..header_end),
        original.get(header_end..footer_start.max(header_end)),
        original.get(footer_start.max(header_end)..),
    ) {
        (Some(header), Some(body), Some(footer)) => {
            format!("{header}{}{footer}", scramble(body, rng))
        }
        _ => scramble(original, rng),
    }
}

/// Replaces each letter or digit by a random one of the same class (hex stays hex).
fn scramble(body: &str, rng: &mut SeedStream) -> String {
    let hex_only = body
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    body.chars()
        .map(|c| match c {
            '0'..='9' | 'a'..='f' if hex_only => char::from(
                b"0123456789abcdef"
                    .get(rng.below(16) as usize)
                    .copied()
                    .unwrap_or(b'0'),
            ),
            '0'..='9' => rng.digit(),
            'a'..='z' => char::from(b'a' + rng.letter()),
            'A'..='Z' => char::from(b'A' + rng.letter()),
            other => other,
        })
        .collect()
}

/// A deterministic stream of numbers from a 32-byte seed (splitmix64).
struct SeedStream {
    state: u64,
}

impl SeedStream {
    fn new(seed: [u8; 32]) -> Self {
        let mut state = 0u64;
        for chunk in seed.chunks(8) {
            let mut word = [0u8; 8];
            for (dst, src) in word.iter_mut().zip(chunk) {
                *dst = *src;
            }
            state ^= u64::from_le_bytes(word);
            state = state.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        SeedStream { state }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform enough in `0..n` for fake values (n is small).
    fn below(&mut self, n: u32) -> u32 {
        if n == 0 { 0 } else { self.next_u32() % n }
    }

    fn digit_value(&mut self) -> u8 {
        u8::try_from(self.below(10)).unwrap_or(0)
    }

    fn digit(&mut self) -> char {
        char::from(b'0' + self.digit_value())
    }

    fn letter(&mut self) -> u8 {
        u8::try_from(self.below(26)).unwrap_or(0)
    }
}
