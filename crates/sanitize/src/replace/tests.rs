//! Tests for the strategies, the vault and streaming restore.

use proptest::prelude::*;
use proptest::strategy::Strategy as _;

use crate::{
    EntityType, PiiConfig, Restorer, SanitizeError, Sanitized, Sanitizer, Scope, Strategy,
    StrategyTable, Vault, fuzzing, restore,
};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn sanitizer(strategy: Strategy) -> Sanitizer {
    let config = PiiConfig {
        strategies: StrategyTable::uniform(strategy),
        ..PiiConfig::default()
    };
    Sanitizer::new(config, KEY).unwrap()
}

#[track_caller]
fn check(strategy: Strategy, input: &str, expected: &str) {
    let out = sanitizer(strategy)
        .apply(input, &Scope::new("s1"), &mut Vault::new())
        .unwrap();
    assert_eq!(out.text, expected);
}

fn synthetic(input: &str, scope: &str, vault: &mut Vault) -> Sanitized {
    sanitizer(Strategy::Synthetic)
        .apply(input, &Scope::new(scope), vault)
        .unwrap()
}

#[test]
fn redact_uses_labels() {
    check(
        Strategy::Redact,
        "mail bob@example.com",
        "mail [REDACTED_EMAIL]",
    );
    check(
        Strategy::Redact,
        "ssn 123-45-6789, ip 10.1.2.3",
        "ssn [REDACTED_US_SSN], ip [REDACTED_IP]",
    );
    check(Strategy::Redact, "nothing here", "nothing here");
}

#[test]
fn hash_is_consistent_and_keyed() {
    let text = "a bob@example.com b bob@example.com c eve@example.com";
    let out = sanitizer(Strategy::Hash)
        .apply(text, &Scope::new("s1"), &mut Vault::new())
        .unwrap()
        .text;
    let labels: Vec<&str> = out
        .split(' ')
        .filter(|w| w.starts_with("[EMAIL:"))
        .collect();
    assert_eq!(labels.len(), 3);
    assert_eq!(labels[0], labels[1]);
    assert_ne!(labels[0], labels[2]);
    assert_eq!(labels[0].len(), "[EMAIL:12345678]".len());
    let other_key = Sanitizer::new(
        PiiConfig {
            strategies: StrategyTable::uniform(Strategy::Hash),
            ..PiiConfig::default()
        },
        b"another key of thirty-two bytes!",
    )
    .unwrap();
    let other = other_key
        .apply(text, &Scope::new("s1"), &mut Vault::new())
        .unwrap()
        .text;
    assert_ne!(out, other);
}

#[test]
fn block_reports_types_and_counts() {
    let err = sanitizer(Strategy::Block)
        .apply(
            "bob@example.com eve@example.com 10.0.0.1",
            &Scope::new("s1"),
            &mut Vault::new(),
        )
        .unwrap_err();
    let SanitizeError::Blocked { counts } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(counts.get(EntityType::Email), 2);
    assert_eq!(counts.get(EntityType::Ip), 1);
    assert_eq!(
        err.to_string(),
        "input contains blocked data: EMAIL=2, IP=1"
    );
    assert_eq!(err.reason(), "pii_blocked");
}

#[test]
fn allow_keeps_values_but_counts_them() {
    let out = sanitizer(Strategy::Allow)
        .apply("bob@example.com", &Scope::new("s1"), &mut Vault::new())
        .unwrap();
    assert_eq!(out.text, "bob@example.com");
    assert_eq!(out.stats.get(EntityType::Email), 1);
}

#[test]
fn per_type_strategies_mix() {
    let config = PiiConfig {
        strategies: StrategyTable {
            email: Strategy::Allow,
            ip: Strategy::Hash,
            ..StrategyTable::default()
        },
        ..PiiConfig::default()
    };
    let out = Sanitizer::new(config, KEY)
        .unwrap()
        .apply(
            "bob@example.com 10.0.0.1 123-45-6789",
            &Scope::new("s"),
            &mut Vault::new(),
        )
        .unwrap()
        .text;
    assert!(out.starts_with("bob@example.com [IP:"), "{out}");
    assert!(out.ends_with("] [REDACTED_US_SSN]"), "{out}");
}

#[test]
fn oversized_input_is_refused_unscanned() {
    let config = PiiConfig {
        max_input_bytes: 8,
        ..PiiConfig::default()
    };
    let err = Sanitizer::new(config, KEY)
        .unwrap()
        .apply("123456789", &Scope::new("s"), &mut Vault::new())
        .unwrap_err();
    assert_eq!(err, SanitizeError::TooLarge { len: 9, limit: 8 });
}

#[test]
fn too_many_findings_are_refused() {
    let config = PiiConfig {
        max_findings: 1,
        ..PiiConfig::default()
    };
    let err = Sanitizer::new(config, KEY)
        .unwrap()
        .scan("10.0.0.1 10.0.0.2")
        .unwrap_err();
    assert_eq!(err.reason(), "pii_too_many_findings");
}

#[test]
fn full_vault_is_an_error_and_records_nothing() {
    let mut vault = Vault::with_limit(1);
    let err = sanitizer(Strategy::Synthetic)
        .apply("10.0.0.1 10.0.0.2", &Scope::new("s"), &mut vault)
        .unwrap_err();
    assert_eq!(err.reason(), "pii_vault_full");
    assert!(vault.is_empty());
}

#[test]
fn synthetic_values_are_fake_and_well_formed() {
    let sanitizer = sanitizer(Strategy::Synthetic);
    let cases = [
        ("bob@example.com", EntityType::Email),
        ("4111 1111 1111 1111", EntityType::CreditCard),
        ("3782 822463 10005", EntityType::CreditCard),
        ("123-45-6789", EntityType::UsSsn),
        ("DE89 3704 0044 0532 0130 00", EntityType::Iban),
        ("GB82WEST12345698765432", EntityType::Iban),
        ("10.1.2.3", EntityType::Ip),
        ("2001:db8:1::42", EntityType::Ip),
        ("+1 415-555-0132", EntityType::Phone),
        ("+44 20 7946 0958", EntityType::Phone),
        (
            "ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            EntityType::Secret,
        ),
    ];
    for (value, entity) in cases {
        let out = synthetic(&format!("x {value} y"), "s1", &mut Vault::new()).text;
        let fake = out
            .strip_prefix("x ")
            .and_then(|o| o.strip_suffix(" y"))
            .unwrap();
        assert_ne!(fake, value);
        // The fake is detected again as the same type (so it is well-formed: Luhn, mod-97...).
        let spans = sanitizer.scan(fake).unwrap();
        let whole = spans.len() == 1 && spans[0].start == 0 && spans[0].end == fake.len();
        let same_type = spans.first().is_some_and(|s| s.entity == entity);
        match entity {
            EntityType::Email => assert!(fake.ends_with(".invalid"), "{fake}"),
            EntityType::UsSsn => assert!(fake.starts_with('9'), "{fake}"),
            EntityType::Ip if value.contains(':') => assert!(fake.starts_with("2001:db8:")),
            EntityType::Ip => assert!(
                ["192.0.2.", "198.51.100.", "203.0.113."]
                    .iter()
                    .any(|p| fake.starts_with(p))
            ),
            EntityType::Secret => {
                assert!(
                    fake.starts_with("ghp_") && fake.len() == value.len(),
                    "{fake}"
                );
            }
            _ => {}
        }
        if entity != EntityType::UsSsn {
            assert!(whole && same_type, "{value} -> {fake}");
        }
        if !matches!(entity, EntityType::Email | EntityType::Ip) {
            assert_eq!(fake.len(), value.len(), "{value} -> {fake}");
        }
    }
}

#[test]
fn synthetic_is_consistent_within_a_scope_and_differs_across_scopes() {
    let text = "a bob@example.com b 10.0.0.7 c bob@example.com";
    let mut vault = Vault::new();
    let first = synthetic(text, "session-1", &mut vault).text;
    let again = synthetic(text, "session-1", &mut Vault::new()).text;
    let other = synthetic(text, "session-2", &mut Vault::new()).text;
    assert_eq!(first, again);
    assert_ne!(first, other);
    let words: Vec<&str> = first.split(' ').collect();
    assert_eq!(words[1], words[5]);
    assert_eq!(vault.len(), 2);
    assert_eq!(vault.original(words[1]), Some("bob@example.com"));
}

#[test]
fn restore_is_exact_across_every_split() {
    let text = "mail bob@example.com or call +1 415-555-0132 from 10.0.0.7, é ok";
    let mut vault = Vault::new();
    let out = synthetic(text, "s", &mut vault).text;
    assert_eq!(restore(&vault, &out), text);
    for split in 0..=out.len() {
        if !out.is_char_boundary(split) {
            continue;
        }
        let mut restorer = Restorer::new(&vault);
        let (head, tail) = out.split_at(split);
        let mut restored = restorer.push(head);
        restored.push_str(&restorer.push(tail));
        restored.push_str(&restorer.finish());
        assert_eq!(restored, text, "split at {split}");
    }
}

#[test]
fn restorer_holds_back_less_than_the_longest_value() {
    let mut vault = Vault::new();
    let out = synthetic("bob@example.com", "s", &mut vault).text;
    let mut restorer = Restorer::new(&vault);
    let filler = "x".repeat(100);
    let emitted = restorer.push(&filler);
    assert!(filler.len() - emitted.len() <= restorer.max_held_back());
    assert_eq!(restorer.max_held_back(), out.len() - 1);
    let mut rest = restorer.push(&out);
    rest.push_str(&restorer.finish());
    assert_eq!(
        format!("{emitted}{rest}"),
        format!("{filler}bob@example.com")
    );
}

/// Issue 17.19: the first stand-in derived for the detected `202-555-0101` is `202-555-0173`,
/// which the text already holds (not detected there, digits follow it); restoring used to turn
/// that one into `...0101` too.
#[test]
fn regression_17_19_stand_in_already_in_the_text() {
    let data = b"user_\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\
                 d 202-555-0101 :::::::id 202-555-01732192.4.\x01\x02\x1f2.7";
    let text = String::from_utf8_lossy(data);
    let sanitizer = Sanitizer::new(
        PiiConfig {
            strategies: StrategyTable::uniform(Strategy::Synthetic),
            ..PiiConfig::default()
        },
        fuzzing::FUZZ_KEY,
    )
    .unwrap();
    let phone = "202-555-0101";
    let spans = sanitizer.scan(&text).unwrap();
    assert!(
        spans
            .iter()
            .any(|span| text.get(span.start..span.end) == Some(phone)),
        "the phone is detected"
    );
    let first = crate::synthetic::generate(
        EntityType::Phone,
        phone,
        sanitizer.mac(&[
            b"synthetic",
            b"fuzz",
            EntityType::Phone.label().as_bytes(),
            phone.as_bytes(),
            &0u32.to_be_bytes(),
        ]),
    );
    assert!(
        text.contains(&first),
        "the first stand-in {first} is already in the text"
    );
    let mut vault = Vault::new();
    let out = sanitizer
        .apply(&text, &Scope::new("fuzz"), &mut vault)
        .unwrap();
    let placed = vault
        .pairs()
        .find(|(_, original)| *original == phone)
        .unwrap()
        .0;
    assert_ne!(placed, first);
    assert!(!text.contains(placed));
    assert_eq!(restore(&vault, &out.text), text);
    fuzzing::check_apply(data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Stand-ins come from small fiction ranges (100 US numbers), so texts full of such numbers,
    /// detected or not, must still restore exactly.
    #[test]
    fn restore_is_exact_when_the_text_holds_would_be_stand_ins(
        parts in proptest::collection::vec(
            prop_oneof![
                (0u32..100).prop_map(|n| format!("202-555-01{n:02}")),
                (0u32..100).prop_map(|n| format!("call (202) 555-01{n:02} ")),
                (0u32..1000).prop_map(|n| format!("020 7946 0{n:03}")),
                Just(" d ".to_owned()), Just(":::::::id ".to_owned()), Just("2.7".to_owned()),
                Just("\u{1}".to_owned()), Just("user_".to_owned()), Just(" ".to_owned()),
            ],
            0..24,
        )
    ) {
        fuzzing::check_apply(parts.concat().as_bytes());
    }

    #[test]
    fn fuzz_property_holds_on_arbitrary_text(text in "(?s).{0,200}") {
        fuzzing::check_apply(text.as_bytes());
    }

    #[test]
    fn fuzz_property_holds_on_pii_mixes(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("bob@example.com"), Just("4111 1111 1111 1111"), Just("123-45-6789"),
                Just("10.0.0.1"), Just("2001:db8::1:2"), Just("+44 20 7946 0958"),
                Just("DE89 3704 0044 0532 0130 00"), Just("password=Hx7kLm2pQ9"), Just(" "),
                Just("."), Just("-"), Just("x"), Just("7"), Just("é"), Just(":"), Just("@"),
            ],
            0..24,
        )
    ) {
        fuzzing::check_apply(parts.concat().as_bytes());
    }
}
