//! Tests of the redactor: held secrets, encodings, content blocks and JSON walks.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use serde_json::json;

use super::*;

#[test]
fn configured_values_and_known_formats_are_redacted() {
    let redactor = Redactor::new(["hunter2-very-secret", ""]).unwrap();
    assert_eq!(
        redactor.redact_str("pw=hunter2-very-secret!").unwrap(),
        "pw=[REDACTED_SECRET]!"
    );
    let aws = "key AKIAIOSFODNN7EXAMPLE end";
    let out = redactor.redact_str(aws).unwrap();
    assert!(!out.contains("AKIAIOSFODNN7EXAMPLE"), "{out}");
    assert_eq!(redactor.redact_str("nothing here").unwrap(), "nothing here");
}

#[test]
fn redact_from_reads_context_and_keeps_own_values() {
    let redactor = Redactor::new(["configured-secret-1"]).unwrap();
    let own = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let foreign = "ghp_ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210";
    let text = format!("a {own} b {foreign} configured-secret-1");
    let (out, n) = redactor.redact_from(&text, 0, &|v| v == own).unwrap();
    assert_eq!(
        out,
        format!("a {own} b [REDACTED_SECRET] [REDACTED_SECRET]")
    );
    assert_eq!(n, 2);
    // Context before `from` is read but not returned.
    let text = format!("prefix {foreign}");
    let (out, n) = redactor.redact_from(&text, 7, &|_| false).unwrap();
    assert_eq!((out.as_str(), n), ("[REDACTED_SECRET]", 1));
    let (out, _) = redactor.redact_from("plain words", 6, &|_| false).unwrap();
    assert_eq!(out, "words");
}

#[test]
fn portcullis_tokens_and_hashed_tokens_are_held_secrets() {
    let agent = "pcl_agent_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";
    let declared = "declared-agent-token-42";
    let digest: [u8; 32] = Sha256::digest(declared.as_bytes()).into();
    let redactor = Redactor::new(["configured-value-9"])
        .unwrap()
        .with_token_hashes([digest]);
    let text = format!(
        "a {agent} b \"{declared}\". c configured-value-9 d ghp_abcdefghijklmnopqrstuvwxyz0123456789"
    );
    let (clean, n) = redactor.redact_held(&text);
    assert_eq!(n, 3, "{clean}");
    assert_eq!(
        clean,
        "a [REDACTED_SECRET] b \"[REDACTED_SECRET]\". c [REDACTED_SECRET] d \
         ghp_abcdefghijklmnopqrstuvwxyz0123456789"
    );
    // Response side: held secrets are never kept, even when the caller sent them.
    let (out, _) = redactor.redact_from(&text, 0, &|_| true).unwrap();
    assert!(!out.contains(agent) && !out.contains(declared), "{out}");
    assert!(out.contains("ghp_"), "{out}");
    // Not a token: too short after the prefix, or another prefix.
    assert_eq!(redactor.redact_held("pcl_agent_short x").1, 0);
}

#[test]
fn held_secrets_in_json_keys_numbers_and_values() {
    let redactor = Redactor::new(["12345678901", "configured-value-9"]).unwrap();
    let mut value = json!({
        "n": 12_345_678_901_u64,
        "configured-value-9": 1,
        "[REDACTED_SECRET]": 2,
        "s": ["x configured-value-9"]
    });
    assert_eq!(redactor.redact_held_value(&mut value), 3);
    assert_eq!(value["n"], "[REDACTED_SECRET]");
    assert_eq!(value["s"][0], "x [REDACTED_SECRET]");
    let object = value.as_object().unwrap();
    assert_eq!(object.len(), 4, "{value}");
    assert!(object.contains_key("[REDACTED_SECRET]#2"));
}

#[test]
fn configured_values_are_found_in_their_common_encodings() {
    let secret = "Tr0ub4dor&3-horse-battery";
    let redactor = Redactor::new([secret]).unwrap();
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    let mut forms = vec![
        secret.to_uppercase(),
        secret.to_lowercase(),
        hex.clone(),
        hex.to_uppercase(),
    ];
    for prefix in ["", "a", "ab", "abc"] {
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            forms.push(engine.encode(format!("{prefix}{secret}!?")));
        }
        forms.push(base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{secret}")));
    }
    for form in &forms {
        let text = format!("value: {form} end");
        let (out, n) = redactor.redact_held(&text);
        assert!(n >= 1, "{form} was not found");
        let inner = form.get(2..form.len() - 2).unwrap();
        assert!(!out.contains(inner), "{out}");
    }
    // Ordinary text stays.
    assert_eq!(redactor.redact_held("nothing to see here").1, 0);
    assert!(encodings("ab").is_empty(), "short forms are left out");
}

#[test]
fn zero_width_characters_inside_a_value_do_not_hide_it() {
    let redactor = Redactor::new(["configured-value-9"]).unwrap();
    let text = "a config\u{200b}ured-val\u{feff}ue-9 b \u{200d}";
    let (out, n) = redactor.redact_held(text);
    assert_eq!((out.as_ref(), n), ("a [REDACTED_SECRET] b \u{200d}", 1));
    let token = "pcl_agent_AbCdEfGh\u{200b}IjKlMnOpQrStUvWxYz0123456789";
    assert_eq!(redactor.redact_held(token).1, 1);
}

#[test]
fn secrets_split_across_content_blocks_are_redacted_in_each() {
    let redactor = Redactor::new(["configured-value-9"]).unwrap();
    let mut value = json!({"content": [
        {"type": "text", "text": "the key is configured-"},
        {"type": "text", "text": "value-9 ok"},
        {"type": "image", "data": "x"},
        {"type": "text", "text": "configured-value"}
    ]});
    assert_eq!(redactor.redact_held_value(&mut value), 2);
    assert_eq!(value["content"][0]["text"], "the key is [REDACTED_SECRET]");
    assert_eq!(value["content"][1]["text"], "[REDACTED_SECRET] ok");
    assert_eq!(value["content"][3]["text"], "configured-value");
    let mut strings = json!(["pre configured-va", "lue-9 post"]);
    assert_eq!(redactor.redact_value(&mut strings).unwrap(), 2);
    assert!(!strings.to_string().contains("configured-va"), "{strings}");
}

#[test]
fn json_values_and_keys_are_walked() {
    let redactor = Redactor::new(["s3cr3t-value-xyz"]).unwrap();
    let mut value = json!({"a": ["x s3cr3t-value-xyz", {"s3cr3t-value-xyz": 1, "[REDACTED_SECRET]": 2}], "n": 3});
    let changed = redactor.redact_value(&mut value).unwrap();
    assert_eq!(changed, 2);
    assert!(!value.to_string().contains("s3cr3t-value-xyz"));
    assert_eq!(value["a"][1].as_object().unwrap().len(), 2, "{value}");
}
