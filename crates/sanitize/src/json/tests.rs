//! Tests of the JSON walker: protocol paths, keys, numbers and one vault per document.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use crate::{
    EntityType, PiiConfig, ProtocolPaths, Sanitizer, Scope, Step, Strategy, StrategyTable, Vault,
    restore,
};

fn sanitizer(strategy: Strategy) -> Sanitizer {
    let config = PiiConfig {
        strategies: StrategyTable::uniform(strategy),
        ..PiiConfig::default()
    };
    Sanitizer::new(config, &[9; 32]).unwrap()
}

fn chat_paths() -> ProtocolPaths {
    ProtocolPaths::new(["model", "messages/*/role", "messages/*/content/*/type"]).unwrap()
}

#[track_caller]
fn apply(strategy: Strategy, value: &mut Value, vault: &mut Vault) -> crate::Counts {
    sanitizer(strategy)
        .apply_value(value, &chat_paths(), &Scope::new("s"), vault)
        .unwrap()
}

#[test]
fn patterns_match_exact_paths_only() {
    let paths = chat_paths();
    assert!(paths.matches(&[Step::Key("model")]));
    assert!(paths.matches(&[Step::Key("messages"), Step::Index(3), Step::Key("role")]));
    assert!(!paths.matches(&[Step::Key("metadata"), Step::Key("model")]));
    assert!(!paths.matches(&[Step::Key("messages"), Step::Key("x"), Step::Key("role")]));
    assert!(!paths.matches(&[Step::Key("messages")]));
    assert!(ProtocolPaths::new(["a//b"]).is_err());
    assert!(!ProtocolPaths::none().matches(&[Step::Key("model")]));
}

#[test]
fn every_string_is_sanitized_with_one_vault_and_protocol_paths_stay() {
    let mut value = json!({
        "model": "bob@example.com",
        "messages": [
            {"role": "user", "content": "mail bob@example.com"},
            {"role": "tool", "content": [{"type": "text", "text": "again bob@example.com"}]}
        ],
        "n": 1
    });
    let original = value.clone();
    let mut vault = Vault::new();
    let counts = apply(Strategy::Synthetic, &mut value, &mut vault);
    assert_eq!(counts.get(EntityType::Email), 2);
    assert_eq!(vault.len(), 1);
    assert_eq!(value["model"], "bob@example.com");
    let text = value["messages"].to_string();
    assert!(!text.contains("bob@example.com"), "{text}");
    assert_eq!(restore(&vault, &value.to_string()), original.to_string());
}

#[test]
fn keys_named_like_protocol_fields_at_depth_are_content() {
    let mut value = json!({
        "model": "m",
        "metadata": {"id": "kim.lee@example.net", "role": "sam.poe@example.com",
                     "model": "x 4111 1111 1111 1111"},
        "messages": [{"role": "user", "content": "hi", "tool_call_id": "kim.lee@example.net"}]
    });
    apply(Strategy::Redact, &mut value, &mut Vault::new());
    let text = value.to_string();
    for leaked in [
        "kim.lee@example.net",
        "sam.poe@example.com",
        "4111 1111 1111 1111",
    ] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
}

#[test]
fn object_keys_are_sanitized_and_collisions_keep_every_member() {
    let mut value = json!({
        "metadata": {
            "id": "kim.lee@example.net",
            "sam.poe@example.com": "owner",
            "ann.roe@example.org": "viewer",
            "[REDACTED_EMAIL]": "literal"
        }
    });
    apply(Strategy::Redact, &mut value, &mut Vault::new());
    let text = value.to_string();
    assert!(!text.contains("@example."), "{text}");
    let metadata = value["metadata"].as_object().unwrap();
    assert_eq!(metadata.len(), 4, "{text}");
    let members: std::collections::BTreeSet<&str> =
        metadata.values().filter_map(Value::as_str).collect();
    assert_eq!(
        members,
        ["[REDACTED_EMAIL]", "literal", "owner", "viewer"].into()
    );
    assert!(metadata.contains_key("[REDACTED_EMAIL]#2"), "{text}");
}

#[test]
fn synthetic_keys_restore_exactly() {
    let mut value = json!({"metadata": {"sam.poe@example.com": "owner"}});
    let original = value.clone();
    let mut vault = Vault::new();
    apply(Strategy::Synthetic, &mut value, &mut vault);
    assert!(!value.to_string().contains("sam.poe"));
    assert_eq!(restore(&vault, &value.to_string()), original.to_string());
}

#[test]
fn numbers_are_scanned_and_become_strings_when_found() {
    let mut value = json!({"card": 4_111_111_111_111_111_u64, "n": 2, "t": 0.5});
    let counts = apply(Strategy::Redact, &mut value, &mut Vault::new());
    assert_eq!(counts.get(EntityType::CreditCard), 1);
    assert_eq!(value["card"], "[REDACTED_CREDIT_CARD]");
    assert_eq!(value["n"], 2);
    assert_eq!(value["t"], 0.5);
}

#[test]
fn stand_ins_are_unique_against_the_whole_document() {
    // Whatever stand-in the phone gets, it must not equal a string elsewhere in the document.
    let sanitizer = sanitizer(Strategy::Synthetic);
    let mut probe = json!({"a": "call 202-555-0173 now"});
    let mut vault = Vault::new();
    sanitizer
        .apply_value(
            &mut probe,
            &ProtocolPaths::none(),
            &Scope::new("s"),
            &mut vault,
        )
        .unwrap();
    let stand_in = vault.pairs().next().unwrap().0.to_owned();
    let mut value = json!({"a": "call 202-555-0173 now", "b": format!("id{stand_in}x")});
    let original = value.clone();
    let mut vault = Vault::new();
    sanitizer
        .apply_value(
            &mut value,
            &ProtocolPaths::none(),
            &Scope::new("s"),
            &mut vault,
        )
        .unwrap();
    assert_ne!(vault.pairs().next().unwrap().0, stand_in);
    assert_eq!(restore(&vault, &value.to_string()), original.to_string());
}

/// A JSON document with personal data in keys, values and numbers, at any depth.
fn documents() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let text = prop_oneof![
        Just("kim.lee@example.net".to_owned()),
        Just("sam.poe@example.com".to_owned()),
        Just("call +1 415-555-0132".to_owned()),
        Just("202-555-0101".to_owned()),
        Just("[REDACTED_EMAIL]".to_owned()),
        Just("id".to_owned()),
        Just("plain".to_owned()),
    ];
    let leaf = prop_oneof![
        text.clone().prop_map(Value::String),
        Just(json!(4_111_111_111_111_111_u64)),
        Just(json!(7)),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((text.clone(), inner), 0..5)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Every scalar and key of `value`, as text, in no order.
fn texts(value: &Value) -> Vec<String> {
    let mut res = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(object) => {
                res.extend(object.keys().cloned());
                stack.extend(object.values());
            }
            Value::String(text) => res.push(text.clone()),
            other => res.push(other.to_string()),
        }
    }
    res
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Redact: no detected value survives anywhere, and no member is lost to a key collision.
    #[test]
    fn documents_keep_every_member_and_no_detected_value(document in documents()) {
        let sanitizer = sanitizer(Strategy::Redact);
        let mut value = document.clone();
        sanitizer
            .apply_value(&mut value, &ProtocolPaths::none(), &Scope::new("p"), &mut Vault::new())
            .unwrap();
        let before = texts(&document);
        let after = texts(&value);
        proptest::prop_assert_eq!(before.len(), after.len());
        let out = value.to_string();
        for text in &before {
            for span in sanitizer.scan(text).unwrap() {
                let found = text.get(span.start..span.end).unwrap();
                proptest::prop_assert!(!out.contains(found), "{} survived in {}", found, out);
            }
        }
    }

    /// Synthetic: restoring the sanitized document's texts gives the original texts back.
    #[test]
    fn synthetic_documents_restore_exactly(document in documents()) {
        let sanitizer = sanitizer(Strategy::Synthetic);
        let mut value = document.clone();
        let mut vault = Vault::new();
        sanitizer
            .apply_value(&mut value, &ProtocolPaths::none(), &Scope::new("p"), &mut vault)
            .unwrap();
        let mut before: Vec<String> = texts(&document)
            .into_iter()
            .map(|text| text.trim_matches('"').to_owned())
            .collect();
        let mut after: Vec<String> = texts(&value)
            .iter()
            .map(|text| restore(&vault, text).trim_matches('"').to_owned())
            .collect();
        before.sort();
        after.sort();
        proptest::prop_assert_eq!(before, after);
    }
}
