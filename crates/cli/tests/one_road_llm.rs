//! End to end: the LLM fronts on the one road, through the real binary in front of the fake
//! provider (`portcullis fixture-llm`). Each row configures a refusal at one stage of a chat or
//! embeddings call and shows the stable code, exactly one `llm.call` deny record with the
//! stage's reason, and whether the provider saw the call (never, for a stage before execute).
//! Then what sanitize in does to what the provider receives. Open streams cut by the kill switch
//! and by revocation: `llm_cutoff.rs`.

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

const SECRET: &str = "held-provider-key-7e41c0ffee";
const PII_KEY: &str = "pii-key-for-the-one-road-llm-tests-01";
const EMAIL: &str = "kim.lee@example.net";
const EMAIL2: &str = "ops.desk@example.org";
const CARD: &str = "4111 1111 1111 1111";

/// What an LLM agent needs allowed (chat; embeddings need no `io:ingress:chat`).
const LLM_AGENT: &[&str] = &[
    "llm:model:*",
    "io:ingress:chat",
    "io:egress:chat",
    "io:ingress:llm.*",
];

fn config(provider: &FixtureLlm) -> String {
    format!(
        r#"
[policy]
deny = ["llm:model:denied-model", "io:ingress:llm.sealed"]

[secrets.env]
fx_key = "ROAD_LLM_PROVIDER_KEY"
pii_key = "ROAD_LLM_PII_KEY"

[pii]
key_secret = "pii_key"
strategies = {{ email = "synthetic", credit_card = "block" }}

[llm]
default_max_tokens = 64

[[llm.providers]]
name = "fx"
base_url = "{origin}/v1"
api_key_secret = "fx_key"
models = ["gpt-4o-mini", "text-embedding-3-small", "denied-model", "cheap-model", "fail-*"]

[[llm.providers]]
name = "sealed"
base_url = "{origin}/v1"
models = ["sealed-model"]

[[llm.routes]]
alias = "cheap"
provider = "fx"
model = "cheap-model"

[[budgets.budgets]]
id = "broke"
scope = "agent"
subject = "broke"
unit = "tokens"
window = "day"
limit = 1

[[budgets.budgets]]
id = "squeezed"
scope = "agent"
subject = "squeezed"
unit = "tokens"
window = "day"
limit = 100000
throttle_at = 1
throttle_action = "downgrade"
downgrade_to = "cheap"

[[budgets.budgets]]
id = "elsewhere"
scope = "agent"
subject = "elsewhere"
unit = "tokens"
window = "day"
limit = 100000
throttle_at = 1
throttle_action = "downgrade"
downgrade_to = "sealed-model"
"#,
        origin = provider.origin
    )
}

async fn start(provider: &FixtureLlm) -> Gateway {
    Gateway::start_with(
        &config(provider),
        &[],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
            ("PORTCULLIS_EGRESS_DNS_BIND", ""),
            ("ROAD_LLM_PROVIDER_KEY", SECRET),
            ("ROAD_LLM_PII_KEY", PII_KEY),
        ],
    )
    .await
}

/// One call with its row id as `X-Request-Id` (and in its content, so the provider's record
/// shows whether it arrived); the status and the body.
async fn send(gateway: &Gateway, row: &str, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(gateway.url(path))
        .bearer_auth(token)
        .header("x-request-id", row)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn chat(model: &str, row: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": format!("marker {row}")}]})
}

fn embed(model: &str, row: &str) -> Value {
    json!({"model": model, "input": [format!("marker {row}")]})
}

/// A refusal row: the row id, the agent, the path, the body, then the status, code and the
/// `llm.call` reason, and whether the provider saw the call.
struct Row {
    id: &'static str,
    agent: &'static str,
    path: &'static str,
    body: Value,
    status: u16,
    code: &'static str,
    reason: &'static str,
    provider_saw: bool,
}

const CHAT: &str = "/v1/chat/completions";
const EMBED: &str = "/v1/embeddings";

fn rows() -> Vec<Row> {
    let row = |id, agent, path, body, status, code, reason, provider_saw| Row {
        id,
        agent,
        path,
        body,
        status,
        code,
        reason,
        provider_saw,
    };
    let mut stream = chat("sealed-model", "c-gate-out-stream");
    stream["stream"] = json!(true);
    let mut squeezed = chat("gpt-4o-mini", "c-downgrade");
    squeezed["max_tokens"] = json!(4000);
    let mut elsewhere = chat("gpt-4o-mini", "c-downgrade-provider");
    elsewhere["max_tokens"] = json!(4000);
    vec![
        // Gate in: the model's key, then (chat only) the messages entering the model's context.
        row(
            "c-model",
            "full",
            CHAT,
            chat("denied-model", "c-model"),
            403,
            "policy_denied",
            "policy_denied",
            false,
        ),
        row(
            "e-model",
            "full",
            EMBED,
            embed("denied-model", "e-model"),
            403,
            "policy_denied",
            "policy_denied",
            false,
        ),
        row(
            "c-ingress",
            "mute",
            CHAT,
            chat("gpt-4o-mini", "c-ingress"),
            403,
            "policy_denied",
            "policy_denied",
            false,
        ),
        // Validate: the request's shape, then a model nobody serves.
        row(
            "c-validate",
            "full",
            CHAT,
            json!({"model": "gpt-4o-mini", "messages": "nope", "user": "marker c-validate"}),
            400,
            "bad_request",
            "llm_request_invalid",
            false,
        ),
        row(
            "e-validate",
            "full",
            EMBED,
            json!({"model": "text-embedding-3-small", "input": 5, "user": "marker e-validate"}),
            400,
            "bad_request",
            "llm_request_invalid",
            false,
        ),
        row(
            "c-unknown",
            "full",
            CHAT,
            chat("no-such-model", "c-unknown"),
            404,
            "not_found",
            "llm_model_unknown",
            false,
        ),
        // Sanitize in: a `block` type in a message or an input.
        row(
            "c-block",
            "full",
            CHAT,
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("marker c-block card {CARD}")}]}),
            400,
            "pii_blocked",
            "pii_blocked",
            false,
        ),
        row(
            "e-block",
            "full",
            EMBED,
            json!({"model": "text-embedding-3-small", "input": [format!("marker e-block card {CARD}")]}),
            400,
            "pii_blocked",
            "pii_blocked",
            false,
        ),
        // Limit: the budget.
        row(
            "c-limit",
            "broke",
            CHAT,
            chat("gpt-4o-mini", "c-limit"),
            429,
            "budget_exceeded",
            "budget_exceeded",
            false,
        ),
        row(
            "e-limit",
            "broke",
            EMBED,
            embed("text-embedding-3-small", "e-limit"),
            429,
            "budget_exceeded",
            "budget_exceeded",
            false,
        ),
        // Limit: a budget downgrade to a model the agent may not use; to another provider's model.
        row(
            "c-downgrade",
            "squeezed",
            CHAT,
            squeezed,
            403,
            "policy_denied",
            "policy_denied",
            false,
        ),
        row(
            "c-downgrade-provider",
            "elsewhere",
            CHAT,
            elsewhere,
            403,
            "policy_denied",
            "llm_downgrade_provider",
            false,
        ),
        // Execute: the provider's error status.
        row(
            "c-execute",
            "full",
            CHAT,
            chat("fail-http-503", "c-execute"),
            503,
            "upstream_failed",
            "llm_upstream_status",
            true,
        ),
        row(
            "e-execute",
            "full",
            EMBED,
            embed("fail-http-502", "e-execute"),
            502,
            "upstream_failed",
            "llm_upstream_status",
            true,
        ),
        // Gate out: the provider's answer may not enter the agent's context.
        row(
            "c-gate-out",
            "full",
            CHAT,
            chat("sealed-model", "c-gate-out"),
            403,
            "policy_denied",
            "policy_denied",
            true,
        ),
        row(
            "c-gate-out-stream",
            "full",
            CHAT,
            stream,
            403,
            "policy_denied",
            "policy_denied",
            true,
        ),
        row(
            "e-gate-out",
            "full",
            EMBED,
            embed("sealed-model", "e-gate-out"),
            403,
            "policy_denied",
            "policy_denied",
            true,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_llm_stage_refuses_with_one_record_and_before_the_provider() {
    let provider = FixtureLlm::start(&[]).await;
    let gateway = start(&provider).await;
    let mut tokens = std::collections::HashMap::new();
    tokens.insert("full", create_agent(&gateway, "full", LLM_AGENT).await);
    tokens.insert("broke", create_agent(&gateway, "broke", LLM_AGENT).await);
    tokens.insert(
        "mute",
        create_agent(
            &gateway,
            "mute",
            &["llm:model:*", "io:egress:chat", "io:ingress:llm.*"],
        )
        .await,
    );
    tokens.insert(
        "squeezed",
        create_agent(
            &gateway,
            "squeezed",
            &[
                "llm:model:gpt-4o-mini",
                "io:ingress:chat",
                "io:egress:chat",
                "io:ingress:llm.*",
            ],
        )
        .await,
    );
    tokens.insert(
        "elsewhere",
        create_agent(&gateway, "elsewhere", LLM_AGENT).await,
    );

    let rows = rows();
    for row in &rows {
        let (status, body) = send(&gateway, row.id, &tokens[row.agent], row.path, &row.body).await;
        assert_eq!(status, row.status, "{}: {body}", row.id);
        assert_eq!(body["error"]["code"], row.code, "{}: {body}", row.id);
        // The agent gets the error envelope only: no answer, no choices, no vectors.
        assert!(
            body.get("choices").is_none() && body.get("data").is_none(),
            "{}: {body}",
            row.id
        );
    }
    // Blocked types are named, never their values.
    let (_, blocked) = send(
        &gateway,
        "c-block-again",
        &tokens["full"],
        CHAT,
        &rows[6].body,
    )
    .await;
    assert!(
        blocked["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CREDIT_CARD (1)"),
        "{blocked}"
    );
    // Without `io:ingress:chat`, embeddings still pass: only chat messages enter a model's context.
    let (status, embedded) = send(
        &gateway,
        "e-mute",
        &tokens["mute"],
        EMBED,
        &embed("text-embedding-3-small", "e-mute"),
    )
    .await;
    assert_eq!(status, 200, "{embedded}");

    let seen = Value::Array(provider.records().await).to_string();
    for row in &rows {
        let marker = format!("marker {}", row.id);
        assert_eq!(
            seen.contains(&marker),
            row.provider_saw,
            "{}: the provider's record: {seen}",
            row.id
        );
    }

    let ledger = gateway.admin_get("/admin/ledger?limit=1000").await;
    let records = ledger["records"].as_array().unwrap();
    for row in &rows {
        let calls: Vec<&Value> = records
            .iter()
            .filter(|r| r["kind"] == "llm.call" && r["correlation_id"] == row.id)
            .collect();
        assert_eq!(calls.len(), 1, "{}: {calls:?}", row.id);
        assert_eq!(calls[0]["decision"], "deny", "{}", row.id);
        assert_eq!(calls[0]["reason"], row.reason, "{}: {}", row.id, calls[0]);
        if row.provider_saw && row.reason == "policy_denied" {
            // Refused at gate out, after the provider answered: the call is settled.
            assert_eq!(calls[0]["data"]["settlement"], "settled", "{}", row.id);
            assert_eq!(calls[0]["data"]["provider"], "sealed", "{}", row.id);
        }
    }
    // The gate-out deny is a decision on the answer key, on record.
    assert!(records.iter().any(|r| r["kind"] == "policy.decision"
        && r["decision"] == "deny"
        && r["correlation_id"] == "c-gate-out"
        && r["data"]["action"] == "io:ingress:llm.sealed"));
    // Nothing stays reserved.
    let budgets = gateway.admin_get("/admin/budgets").await;
    for line in budgets["lines"].as_array().unwrap() {
        assert_eq!(line["reserved"], 0, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sanitize_in_cleans_keys_metadata_and_held_secrets_before_the_provider() {
    let provider = FixtureLlm::start(&[]).await;
    let gateway = start(&provider).await;
    let token = create_agent(&gateway, "full", LLM_AGENT).await;
    let request = json!({
        "model": "gpt-4o-mini",
        "metadata": {"id": EMAIL, EMAIL2: "key holding an address"},
        "messages": [
            {"role": "system", "content": format!("provider key {SECRET}")},
            {"role": "user", "content": format!("write to {EMAIL}")}
        ]
    });
    let (status, answer) = send(&gateway, "clean", &token, CHAT, &request).await;
    assert_eq!(status, 200, "{answer}");
    // The agent gets its own value back.
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        format!("write to {EMAIL}")
    );

    let records = provider.records().await;
    assert_eq!(records.len(), 1);
    let body = &records[0]["body"];
    let sent = body.to_string();
    for unseen in [EMAIL, EMAIL2, SECRET] {
        assert!(
            !sent.contains(unseen),
            "`{unseen}` reached the provider: {sent}"
        );
    }
    assert!(
        body["metadata"]["id"]
            .as_str()
            .unwrap()
            .ends_with("@example.invalid"),
        "{body}"
    );
    assert!(sent.contains("[REDACTED_SECRET]"), "{sent}");

    let mut tap = EventTap::open(&gateway).await;
    let (status, _) = send(&gateway, "clean-2", &token, CHAT, &request).await;
    assert_eq!(status, 200);
    let call = tap.take("llm.call", 1).await.remove(0);
    assert_eq!(call["decision"], "allow", "{call}");
    assert!(
        call["data"]["sanitized"]["EMAIL"].as_u64().unwrap() >= 3,
        "{call}"
    );
    assert!(
        call["data"]["sanitized"]["SECRET"].as_u64().unwrap() >= 1,
        "{call}"
    );
}
