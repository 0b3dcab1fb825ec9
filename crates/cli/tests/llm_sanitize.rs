//! End to end, the request side of the LLM front against attacks (issues 16 and 17): what the
//! fake provider records must hold no personal data at non-protocol paths (object keys, numbers,
//! `metadata.id`), no configured secret, no Portcullis token; and no ledger record may hold a
//! caller's secret. One gateway, table-driven rows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use support::llm::{EventTap, FixtureLlm};
use support::{Gateway, create_agent};

const PROVIDER_KEY: &str = "fixture-provider-key-0451-abcdef";
const PII_KEY: &str = "pii-key-for-the-llm-tests-0123456789";
/// The provider key in URL-safe base64 after one byte (`x` + key + `yz`).
const KEY_BASE64URL: &str = "eGZpeHR1cmUtcHJvdmlkZXIta2V5LTA0NTEtYWJjZGVmeXo=";
/// The provider key in standard base64 after two bytes (`ab` + key).
const KEY_BASE64: &str = "YWJmaXh0dXJlLXByb3ZpZGVyLWtleS0wNDUxLWFiY2RlZg==";
/// The provider key in upper-case hex.
const KEY_HEX: &str = "666978747572652D70726F76696465722D6B65792D303435312D616263646566";
/// A bridge agent declared in the config by the SHA-256 of this token only.
const DECLARED_TOKEN: &str = "declared-bridge-token-0001-xyz";
const DECLARED_SHA256: &str = "e9976524914cfbefbf212ad90402fe8be3fcf0012cb97e465a62fbe1d0b80e07";

fn config(provider: &FixtureLlm) -> String {
    format!(
        r#"
[secrets.env]
fx_key = "LLM_TEST_PROVIDER_KEY"
pii_key = "LLM_TEST_PII_KEY"

[pii]
key_secret = "pii_key"
strategies = {{ email = "synthetic", phone = "synthetic", credit_card = "synthetic", secret = "synthetic" }}

[llm]
default_max_tokens = 64

[budgets.prices]
default_model = {{ input_per_1m = "0.15", output_per_1m = "0.60" }}

[[agents]]
id = "bridge"
token_sha256 = "{DECLARED_SHA256}"
allow = ["llm:model:*", "io:ingress:chat", "io:egress:chat", "io:ingress:llm.*"]

[[llm.providers]]
name = "fx"
base_url = "{origin}/v1"
api_key_secret = "fx_key"
models = ["gpt-4o-mini"]

[[llm.routes]]
alias = "fast"
provider = "fx"
model = "gpt-4o-mini"
"#,
        origin = provider.origin
    )
}

fn chat(text: &str, extra: Value) -> Value {
    let mut body = json!({"model": "fast", "messages": [{"role": "user", "content": text}]});
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    body
}

/// Posts `body` as `token`; returns the status and the answer.
async fn post(gateway: &Gateway, token: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn request_side_sanitizing_reaches_keys_numbers_secrets_and_tokens() {
    let provider = FixtureLlm::start(&[]).await;
    let gateway = Gateway::start_with(
        &config(&provider),
        &[],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
            ("PORTCULLIS_EGRESS_DNS_BIND", ""),
            ("LLM_TEST_PROVIDER_KEY", PROVIDER_KEY),
            ("LLM_TEST_PII_KEY", PII_KEY),
        ],
    )
    .await;
    let token = create_agent(
        &gateway,
        "coder",
        &[
            "llm:model:*",
            "io:ingress:chat",
            "io:egress:chat",
            "io:ingress:llm.*",
        ],
    )
    .await;
    let admin = gateway.admin_token.clone();

    // (row, body, values the provider must never see, whether the echo keeps the original)
    let rows: Vec<(&str, Value, Vec<String>, bool)> = vec![
        (
            "metadata.id and an object key",
            chat(
                "hello",
                json!({"metadata": {"id": "kim.lee@example.net", "sam.poe@example.com": "owner"}}),
            ),
            vec!["kim.lee@example.net".into(), "sam.poe@example.com".into()],
            true,
        ),
        (
            "a card number written as a number",
            chat(
                "hello",
                json!({"metadata": {"card": 4_111_111_111_111_111_u64}}),
            ),
            vec!["4111111111111111".into()],
            true,
        ),
        (
            "a key named like a protocol field at depth",
            chat(
                "hello",
                json!({"metadata": {"role": "ann.roe@example.org", "model": "+1 415-555-0132"}}),
            ),
            vec!["ann.roe@example.org".into(), "415-555-0132".into()],
            true,
        ),
        (
            "an upstream's configured key in a message",
            chat(&format!("the provider key is {PROVIDER_KEY} ok"), json!({})),
            vec![PROVIDER_KEY.into()],
            false,
        ),
        (
            "an upstream's key in URL-safe base64, at offset 1",
            chat(&format!("blob {KEY_BASE64URL} end"), json!({})),
            vec![KEY_BASE64URL.into()],
            false,
        ),
        (
            "an upstream's key in standard base64, at offset 2",
            chat(&format!("blob {KEY_BASE64} end"), json!({})),
            vec![KEY_BASE64.into()],
            false,
        ),
        (
            "an upstream's key in upper-case hex",
            chat(&format!("hex {KEY_HEX} end"), json!({})),
            vec![KEY_HEX.into()],
            false,
        ),
        (
            "an upstream's key upper-cased",
            chat(
                &format!("key {} end", PROVIDER_KEY.to_uppercase()),
                json!({}),
            ),
            vec![PROVIDER_KEY.to_uppercase()],
            false,
        ),
        (
            "an upstream's key split across two content parts",
            json!({"model": "fast", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "the key is fixture-provider-"},
                {"type": "text", "text": "key-0451-abcdef and more"}
            ]}]}),
            vec!["fixture-provider-".into(), "key-0451-abcdef".into()],
            false,
        ),
        (
            "the caller's own agent token in a message",
            chat(&format!("my token is {token} ok"), json!({})),
            vec![token.clone()],
            false,
        ),
        (
            "the admin token in a message",
            chat(&format!("admin {admin} ok"), json!({})),
            vec![admin.clone()],
            false,
        ),
        (
            "a token declared only by its hash, in a key",
            chat("hello", json!({"metadata": {DECLARED_TOKEN: "bridge"}})),
            vec![DECLARED_TOKEN.into()],
            false,
        ),
    ];
    for (row, body, forbidden, restored) in rows {
        provider.clear().await;
        let (status, answer) = post(&gateway, &token, &body).await;
        assert_eq!(status, 200, "{row}: {answer}");
        let records = provider.records().await;
        assert_eq!(records.len(), 1, "{row}");
        let sent = records[0]["body"].to_string();
        for value in &forbidden {
            assert!(
                !sent.contains(value.as_str()),
                "{row}: reached the provider: {sent}"
            );
        }
        let echoed = answer["choices"][0]["message"]["content"].as_str().unwrap();
        if !restored {
            // Held secrets are redacted, not swapped: nothing brings them back.
            assert!(sent.contains("[REDACTED_SECRET]"), "{row}: {sent}");
            for value in &forbidden {
                assert!(!echoed.contains(value.as_str()), "{row}: {echoed}");
            }
        }
    }

    // The declared bridge agent is still a working caller.
    let (status, answer) = post(&gateway, DECLARED_TOKEN, &chat("hi", json!({}))).await;
    assert_eq!(status, 200, "{answer}");

    // Issue 17.14: a model string is the agent's own; what reaches the ledger (the gate's
    // decisions, the `llm.call` record) has its secrets and personal data masked.
    let mut tap = EventTap::open(&gateway).await;
    let models = [
        PROVIDER_KEY.to_owned(),
        token.clone(),
        "kim.lee@example.net".to_owned(),
    ];
    for model in &models {
        let mut body = chat("hello", json!({}));
        body["model"] = json!(model);
        let (status, answer) = post(&gateway, &token, &body).await;
        assert_eq!(status, 404, "{answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
    // The bridge's call above may be recorded after the tap opened: wait for the refusals.
    let mut refused = Vec::new();
    while refused.len() < models.len() {
        let call = tap.take("llm.call", 1).await.remove(0);
        if call["reason"] == "llm_model_unknown" {
            refused.push(call);
        }
    }
    for call in &refused {
        let model = call["data"]["model"].as_str().unwrap();
        assert!(model.starts_with("[REDACTED_"), "{call}");
    }
    let page = gateway.admin_get("/admin/ledger?limit=1000").await;
    let ledger = page.to_string();
    assert!(
        ledger.contains("llm:model:[REDACTED_SECRET]"),
        "the gate decided the masked name"
    );
    for model in &models {
        assert!(
            !ledger.contains(model.as_str()),
            "`{model}` reached the ledger"
        );
    }
    for secret in [PROVIDER_KEY, token.as_str(), admin.as_str(), DECLARED_TOKEN] {
        assert!(!ledger.contains(secret), "a secret reached the ledger");
    }
}
