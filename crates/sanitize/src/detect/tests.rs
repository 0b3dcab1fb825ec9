//! Tests for the detectors: positives and hard negatives per type.

use std::sync::OnceLock;

use crate::detect::{Detectors, Span};
use crate::entity::EntityType::{self, *};

fn detectors() -> &'static Detectors {
    static DETECTORS: OnceLock<Detectors> = OnceLock::new();
    DETECTORS.get_or_init(|| Detectors::new(&EntityType::ALL).unwrap())
}

/// Asserts the findings in `text`, as `(value, type)` in order.
#[track_caller]
fn check(text: &str, expected: &[(&str, EntityType)]) {
    let spans = detectors().scan(text);
    let got: Vec<(&str, EntityType)> = spans
        .iter()
        .map(|Span { start, end, entity }| (text.get(*start..*end).unwrap(), *entity))
        .collect();
    assert_eq!(got, expected, "in {text:?}");
}

#[track_caller]
fn none(text: &str) {
    check(text, &[]);
}

#[test]
fn email() {
    check("mail bob@example.com now", &[("bob@example.com", Email)]);
    check(
        "<Jane.Doe+tag@mail.co.uk>",
        &[("Jane.Doe+tag@mail.co.uk", Email)],
    );
    check(
        "a.b_c-d@sub-domain.example.org.",
        &[("a.b_c-d@sub-domain.example.org", Email)],
    );
    none("user@localhost and @handle and a@b");
    none("size 3@2x.png");
}

#[test]
fn credit_card() {
    check(
        "card 4111 1111 1111 1111 ok",
        &[("4111 1111 1111 1111", CreditCard)],
    );
    check(
        "4111-1111-1111-1111",
        &[("4111-1111-1111-1111", CreditCard)],
    );
    check("5555555555554444", &[("5555555555554444", CreditCard)]);
    check("mc 2223003122003222", &[("2223003122003222", CreditCard)]);
    check(
        "amex 3782 822463 10005",
        &[("3782 822463 10005", CreditCard)],
    );
    check("disc 6011111111111117", &[("6011111111111117", CreditCard)]);
    // Luhn failures, mixed separators, wrong brand, glued digits.
    none("4111 1111 1111 1112");
    none("4111-1111 1111-1111");
    none("1234567812345670");
    none("ID 94111111111111111");
    none("ref ORD-4111111111111111");
}

#[test]
fn us_ssn() {
    check("ssn 123-45-6789", &[("123-45-6789", UsSsn)]);
    check("SSN: 123456789", &[("123456789", UsSsn)]);
    check("it is 078 05 1120", &[("078 05 1120", UsSsn)]);
    none("000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000");
    none("order 123456789");
    none("account no. 586811057");
    // Taxpayer ids and the reserved test range (area 9xx) only after a label.
    check("SSN 912-34-5678", &[("912-34-5678", UsSsn)]);
    check("tin: 987 12 3456", &[("987 12 3456", UsSsn)]);
    none("part 912-34-5678");
    check(
        "SSN: 206580716\naccount no. 586811057",
        &[("206580716", UsSsn)],
    );
    none("ORD-123-45-6789");
}

#[test]
fn iban() {
    check(
        "pay DE89 3704 0044 0532 0130 00 now",
        &[("DE89 3704 0044 0532 0130 00", Iban)],
    );
    check(
        "GB82WEST12345698765432",
        &[("GB82WEST12345698765432", Iban)],
    );
    check(
        "FR1420041010050500013M02606 EUR",
        &[("FR1420041010050500013M02606", Iban)],
    );
    check(
        "to DE89 3704 0044 0532 0130 00 USD",
        &[("DE89 3704 0044 0532 0130 00", Iban)],
    );
    none("DE88 3704 0044 0532 0130 00");
    none("XX89 3704 0044 0532 0130 00");
}

#[test]
fn ip() {
    check("host 192.168.1.20:8080", &[("192.168.1.20", Ip)]);
    check("net 10.0.0.0/8", &[("10.0.0.0", Ip)]);
    check(
        "v6 2001:db8::8a2e:370:7334 up",
        &[("2001:db8::8a2e:370:7334", Ip)],
    );
    check(
        "[fe80::1ff:fe23:4567:890a%eth0]:443",
        &[("fe80::1ff:fe23:4567:890a%eth0", Ip)],
    );
    check("::ffff:203.0.113.9", &[("::ffff:203.0.113.9", Ip)]);
    check(
        "2001:0DB8:0000:0000:0000:FF00:0042:8329",
        &[("2001:0DB8:0000:0000:0000:FF00:0042:8329", Ip)],
    );
    none("version 1.2.3.4 and v10.4.1.2");
    none("256.1.1.1 and 1.2.3 and 1.3.6.1.4.1");
    none("at 10:22:31 and mac 00:1A:2B:3C:4D:5E and std::io");
}

#[test]
fn phone() {
    check("call +1 415-555-0132", &[("+1 415-555-0132", Phone)]);
    check("(415) 555-0132", &[("(415) 555-0132", Phone)]);
    check("tel 415.555.0132", &[("415.555.0132", Phone)]);
    check("+44 20 7946 0958", &[("+44 20 7946 0958", Phone)]);
    check("ring 020 7946 0958", &[("020 7946 0958", Phone)]);
    check("07700 900123", &[("07700 900123", Phone)]);
    check("+49 30 12345678", &[("+49 30 12345678", Phone)]);
    check("Tel. 030 12345678", &[("030 12345678", Phone)]);
    check("+33 1 23 45 67 89", &[("+33 1 23 45 67 89", Phone)]);
    check("01 23 45 67 89", &[("01 23 45 67 89", Phone)]);
    check("+14155550132", &[("+14155550132", Phone)]);
    check("phone: 4155550132", &[("4155550132", Phone)]);
    check(
        "ById(64742) tél. 0153 81101028.",
        &[("0153 81101028", Phone)],
    );
    check(
        "order #00646160 tél. 09 75 75 61 20",
        &[("09 75 75 61 20", Phone)],
    );
    none("order 4155550132");
    none("at 2024-03-15 10:22:31");
    none("version 10.4.12 build 2024.03.15");
    none("order ORD-415-555-0132");
    none("(123) 456-7890");
}

#[test]
fn secrets() {
    let cases = [
        "sk-proj-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP0123456789",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz01234567AA",
        "ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
        "github_pat_11ABCDEFG0123456789abc_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
        "glpat-abcdefghij0123456789",
        "xoxb-1234567890-abcdefghijkl",
        "sk_live_abcdefghijklmnopqrstuvwx",
        "AIzaSyA1234567890abcdefghijklmnopqrstuv",
        "AKIAIOSFODNN7EXAMPLE",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "SK0123456789abcdef0123456789abcdef",
        "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
        "npm_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
        "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
        "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123",
        "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0",
        "shpat_0123456789abcdef0123456789abcdef",
        "dop_v1_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ];
    for token in cases {
        let text = format!("use {token} here");
        check(&text, &[(token, Secret)]);
    }
    check(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        &[("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", Secret)],
    );
    check(
        "postgres://app:s3cr3tPw@db:5432/x",
        &[("app:s3cr3tPw", Secret)],
    );
    check(
        "\"password\": \"Tr0ub4dor&3x\"",
        &[("Tr0ub4dor&3x", Secret)],
    );
    check(
        "API_TOKEN=Zx8kQ2mN7pLr4TvW9yB3",
        &[("Zx8kQ2mN7pLr4TvW9yB3", Secret)],
    );
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
    check(&format!("key:\n{pem}\nend"), &[(pem, Secret)]);
    let cut = "-----BEGIN PRIVATE KEY-----\nMIIEpAIBAAKCAQEA";
    check(cut, &[(cut, Secret)]);
}

#[test]
fn secret_hard_negatives() {
    none("max_tokens: 4096, token_count=512, tokenizer: cl100k_base");
    none("idempotency_key: 3f2b8c1e-9d4a-4f6b-8e2c-7a1d5b9c0e3f");
    none("sort_key = created_at_desc and password: required");
    none(
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    );
    none("request 550e8400-e29b-41d4-a716-446655440000");
    none("password: ${DB_PASSWORD} token=<redacted>");
}

#[test]
fn overlaps_resolve_to_the_longest() {
    // The URL credential covers the email-looking part.
    check(
        "https://bob:pw1234xyz@example.com/",
        &[("bob:pw1234xyz", Secret)],
    );
    // A repeated value found once in context is masked everywhere.
    check(
        "password=Hx7kLm2pQ9 and later Hx7kLm2pQ9",
        &[("Hx7kLm2pQ9", Secret), ("Hx7kLm2pQ9", Secret)],
    );
}

#[test]
fn many_findings_cover_repeats_through_one_automaton() {
    let values: Vec<String> = (1..=60).map(|n| format!("10.0.0.{n}")).collect();
    let text = format!("{} and again 10.0.0.7", values.join(" "));
    let spans = detectors().scan(&text);
    assert_eq!(spans.len(), 61);
    assert!(spans.iter().all(|span| span.entity == Ip));
}

#[test]
fn at_least_25_provider_formats() {
    use crate::detect::{CONTEXT_FORMATS, PROVIDER_FORMATS, UNPREFIXED_FORMATS};
    assert!(PROVIDER_FORMATS.len() + UNPREFIXED_FORMATS.len() >= 25);
    assert_eq!(CONTEXT_FORMATS.len(), 4);
}

/// The windowed regex passes find exactly what whole-text passes find.
#[track_caller]
fn check_windows(text: &str) {
    use crate::detect::window::{Regions, digit_runs};
    let d = detectors();
    let mut runs = Vec::new();
    digit_runs(text.as_bytes(), &mut runs);
    let mut regions = Regions::default();
    type Build = fn(&mut Regions, &str, &[(usize, usize)]);
    let cases: [(&regex::Regex, Build); 5] = [
        (&d.card, Regions::card),
        (&d.ssn, Regions::ssn),
        (&d.ipv4, Regions::ipv4),
        (&d.phone, Regions::phone),
        (&d.iban, Regions::iban),
    ];
    for (regex, build) in cases {
        build(&mut regions, text, &runs);
        let mut windowed = Vec::new();
        regions.find_iter(regex, text, |start, end| windowed.push((start, end)));
        let whole: Vec<(usize, usize)> = regex
            .find_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect();
        assert_eq!(windowed, whole, "{} in {text:?}", regex.as_str());
    }
    regions.providers(text, &d.secret.provider_anchors);
    let mut windowed = Vec::new();
    regions.find_iter(&d.secret.providers, text, |start, end| {
        windowed.push((start, end));
    });
    let whole: Vec<(usize, usize)> = d
        .secret
        .providers
        .find_iter(text)
        .map(|m| (m.start(), m.end()))
        .collect();
    assert_eq!(windowed, whole, "providers in {text:?}");
    let assignment = &d.secret.assignment;
    let groups = |offset: usize, caps: regex::Captures<'_>| {
        let span = |idx: usize| {
            caps.get(idx)
                .map(|m| (offset + m.start(), offset + m.end()))
        };
        (span(1), span(2))
    };
    regions.assignment(text, crate::detect::secret::ASSIGNMENT_KEYWORDS);
    let mut windowed = Vec::new();
    regions.for_each(text, |offset, region| {
        windowed.extend(assignment.captures_iter(region).map(|c| groups(offset, c)));
    });
    let whole: Vec<_> = assignment
        .captures_iter(text)
        .map(|c| groups(0, c))
        .collect();
    assert_eq!(windowed, whole, "assignment in {text:?}");
}

/// Provider windows end at whitespace: no provider format may match any.
#[test]
fn provider_formats_never_match_whitespace() {
    for (name, pattern) in crate::detect::PROVIDER_FORMATS {
        let undotted = pattern.replace(r"\.", "");
        assert!(
            !undotted.contains(' ')
                && !undotted.contains(r"\s")
                && !undotted.contains("[^")
                && !undotted.contains('.')
                && !undotted.contains(r"\S")
                && !undotted.contains(r"\W")
                && !undotted.contains(r"\D"),
            "{name} may match whitespace: the provider windows assume it cannot"
        );
    }
}

#[test]
fn windows_match_whole_text() {
    assert!(detectors().secret.provider_anchors.is_anchored());
    check_windows("");
    check_windows("no digits at all");
    check_windows("4111 1111 1111 1111 and 4111-1111-1111-1111-123 then 378282246310005");
    check_windows("SSN 123-45-6789, 123 45 6789, 123456789, 1234567890123");
    check_windows("ip 10.0.0.1:80 1.2.3.4.5.6.7 999.1.1.1 v1.4.2 é1.2.3.4é");
    check_windows("+1 (415) 555-0132 +44 20 7946 0958 +49 (0) 30 123456-78 0612345678");
    check_windows("IBAN DE89 3704 0044 0532 0130 00 and GB82WEST12345698765432X");
    check_windows("api_key = 'Zx8kQ2mN7pLr4TvW9yB3' password:=\"hunter2hunter2\" x");
    check_windows("MY_TOKEN   :  abcdef and TOKEN    = abcdefgh then AUTH=>é€abcdef");
    check_windows("key:key:key=value1 pass='' secret:\"\" credentials: ab:cd=ef");
    check_windows("ÄÖ12 3456 7890 1234 5678 9012 3456 7890 123 ünïcödé 12€34");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn windows_match_whole_text_on_random_text(
        text in "[0-9 .\\-+()/:A-Za-zéü€\n]{0,160}",
    ) {
        check_windows(&text);
    }

    #[test]
    fn windows_match_whole_text_on_assignments(
        parts in proptest::collection::vec(
            "(key|KEY|token|Secret|pass|passwd|pwd|auth|credentials|x|_|\\.|-|9|é| |\t|\"|'|:|=|>|,|ab|Zx8kQ2)",
            0..40,
        ),
    ) {
        check_windows(&parts.concat());
    }

    #[test]
    fn windows_match_whole_text_on_provider_tokens(
        parts in proptest::collection::vec(
            "(sk-|sk-ant-api03-|sk-proj-|ghp_|github_pat_|glpat-|xoxb-|xapp-1-|sk_live_|AIza|AKIA|eyJ|\\.eyJ|SK|SG\\.|npm_|hf_|shpat_|dop_v1_|key-|gsk_|xai-|M|N|:AA|12345678|abcdef0123456789|ABCDEFGHIJKLMNOP|_|-|\\.| |é)",
            0..60,
        ),
    ) {
        check_windows(&parts.concat());
    }

    #[test]
    fn digit_runs_are_the_maximal_runs(text in "[0-9a ]{0,300}") {
        let mut runs = Vec::new();
        crate::detect::window::digit_runs(text.as_bytes(), &mut runs);
        let mut expected = Vec::new();
        let mut start = None;
        for (idx, byte) in text.bytes().chain(std::iter::once(b' ')).enumerate() {
            match (byte.is_ascii_digit(), start) {
                (true, None) => start = Some(idx),
                (false, Some(from)) => {
                    expected.push((from, idx));
                    start = None;
                }
                _ => {}
            }
        }
        proptest::prop_assert_eq!(runs, expected);
    }

    #[test]
    fn windows_match_whole_text_on_digit_heavy_text(
        text in "[0-9 .\\-+()DEGB]{0,200}",
    ) {
        check_windows(&text);
    }
}
