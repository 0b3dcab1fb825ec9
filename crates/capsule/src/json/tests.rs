//! Tests of the strict parser and the canonical comparison.

use proptest::prelude::*;
use serde_json::json;

use super::*;

#[track_caller]
fn check(input: &str, expected: Result<(), VerifyError>) {
    assert_eq!(
        parse_canonical(input.as_bytes()).map(|_| ()),
        expected,
        "{input:?}"
    );
}

#[test]
fn canonical_inputs_pass() {
    check(r#"{"a":1,"b":[true,false,null],"c":"x"}"#, Ok(()));
    check(r#"{"b":0,"a":{}}"#, Err(VerifyError::NotCanonical));
    check(r#"[]"#, Ok(()));
    check(r#""é\n""#, Ok(()));
    check(r#""\u001f""#, Ok(()));
    check(&format!("{MAX_INTEGER}"), Ok(()));
}

#[test]
fn non_canonical_spellings_are_refused() {
    check(r#"{"a": 1}"#, Err(VerifyError::NotCanonical));
    check(" {}", Err(VerifyError::NotCanonical));
    check(r#"{"b":1,"a":2}"#, Err(VerifyError::NotCanonical));
    check(r#""\u0063""#, Err(VerifyError::NotCanonical));
    check(r#""\/""#, Err(VerifyError::NotCanonical));
    check(r#""\u00e9""#, Err(VerifyError::NotCanonical));
    check(r#""\u001F""#, Err(VerifyError::NotCanonical));
}

#[test]
fn numbers_are_integers_in_range() {
    check("1.0", Err(VerifyError::BadNumber));
    check("1e3", Err(VerifyError::BadNumber));
    check("1E3", Err(VerifyError::BadNumber));
    check("-1", Err(VerifyError::BadNumber));
    check("-0", Err(VerifyError::BadNumber));
    check("01", Err(VerifyError::BadNumber));
    check(&format!("{}", MAX_INTEGER + 1), Err(VerifyError::BadNumber));
    check("99999999999999999999999", Err(VerifyError::BadNumber));
}

#[test]
fn duplicates_are_refused_at_any_depth() {
    check(r#"{"a":1,"a":1}"#, Err(VerifyError::DuplicateKey));
    check(r#"{"a":1,"\u0061":2}"#, Err(VerifyError::DuplicateKey));
    check(r#"{"x":[{"k":1,"k":2}]}"#, Err(VerifyError::DuplicateKey));
}

#[test]
fn malformed_inputs_are_refused() {
    for bad in [
        "",
        "{",
        "}",
        "[1,]",
        "{\"a\"}",
        "{\"a\":}",
        "{,}",
        "tru",
        "nul",
        "\"a",
        "\"\\x\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\t\"",
        "{} {}",
        "'a'",
        "[1 2]",
        "{\"a\":1,}",
    ] {
        assert_eq!(
            parse_strict(bad.as_bytes()).map(|_| ()),
            Err(VerifyError::BadJson),
            "{bad:?}"
        );
    }
    assert_eq!(parse_strict(b"\"\xff\""), Err(VerifyError::BadJson));
}

#[test]
fn limits_are_enforced() {
    let deep_ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    check(&deep_ok, Ok(()));
    let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    check(&too_deep, Err(VerifyError::LimitExceeded));
    let very_deep = "[".repeat(100_000);
    check(&very_deep, Err(VerifyError::LimitExceeded));
    let items = vec!["0"; MAX_ITEMS + 1].join(",");
    check(&format!("[{items}]"), Err(VerifyError::LimitExceeded));
    let long = "x".repeat(MAX_STRING_BYTES + 1);
    check(&format!("\"{long}\""), Err(VerifyError::LimitExceeded));
    check(&format!("\"{}\"", "x".repeat(MAX_STRING_BYTES)), Ok(()));
}

#[test]
fn canonical_form_sorts_by_utf16() {
    // U+E000 sorts before U+1F600 in UTF-8 byte order, after it in UTF-16 code-unit order.
    let value = json!({"\u{e000}": 1, "\u{1f600}": 2});
    let bytes = canonical_bytes(&value).unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "{\"\u{1f600}\":2,\"\u{e000}\":1}"
    );
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0..=MAX_INTEGER).prop_map(|n| Value::Number(n.into())),
        "\\PC{0,12}".prop_map(Value::String),
        "[\\x00-\\x7f]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever serde_jcs produces, the strict parser reads back to the same value and accepts as
    /// canonical: signer and verifier agree.
    #[test]
    fn canonical_round_trip(value in arb_value()) {
        let bytes = canonical_bytes(&value).unwrap();
        prop_assert_eq!(parse_canonical(&bytes).unwrap(), value);
    }

    /// Pretty-printed JSON parses to the same value but is never taken as canonical unless it is
    /// byte-identical.
    #[test]
    fn pretty_json_is_not_canonical(value in arb_value()) {
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        prop_assert_eq!(parse_strict(&pretty).unwrap(), value.clone());
        let canonical = canonical_bytes(&value).unwrap();
        prop_assert_eq!(parse_canonical(&pretty).is_ok(), pretty == canonical);
    }

    /// Arbitrary bytes never panic.
    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_canonical(&bytes);
    }
}
