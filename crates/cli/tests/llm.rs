//! End to end: the real binary in front of the project's fake provider (`portcullis
//! fixture-llm`), called by the official `openai` Python client and by raw HTTP, and checked by
//! `pii-leak-benchmark selfcheck`. Peers come from `scripts/install-test-deps`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use support::llm::{EventTap, FixtureLlm, openai};
use support::{Gateway, create_agent};

const PROVIDER_KEY: &str = "fixture-provider-key-0451-abcdef";
const PII_KEY: &str = "pii-key-for-the-llm-tests-0123456789";

const EMAIL: &str = "alice.smith@example.com";
const EMAIL2: &str = "escalations.desk@example.org";
const CARD: &str = "4111 1111 1111 1111";
const PHONE: &str = "+1 415-555-0132";
const PHONE2: &str = "(212) 555-0187";
const GITHUB: &str = "ghp_R8mZ2kQ7vX4nB1cT9wY5pL3sD6fH0jG8aK2e";
const AWS: &str = "AKIAZ7QW3ERT5YUI9OPL";

/// Every value the provider must never see.
const ORIGINALS: &[&str] = &[
    EMAIL,
    EMAIL2,
    CARD,
    "4111111111111111",
    PHONE,
    "415-555-0132",
    PHONE2,
    GITHUB,
    AWS,
];

fn config(provider: &FixtureLlm, pii: &str) -> String {
    format!(
        r#"
[secrets.env]
fx_key = "LLM_TEST_PROVIDER_KEY"
pii_key = "LLM_TEST_PII_KEY"

[pii]
key_secret = "pii_key"
{pii}

[llm]
default_max_tokens = 64

# The starter budgets count USD: the fixture's models need a price.
[budgets.prices]
default_model = {{ input_per_1m = "0.15", output_per_1m = "0.60" }}

[[llm.providers]]
name = "fx"
base_url = "{origin}/v1"
api_key_secret = "fx_key"
models = ["gpt-4o-mini", "text-embedding-3-small", "fail-*", "tool-call"]

[[llm.providers]]
name = "slow"
base_url = "{origin}/v1"
models = ["hang"]
timeout = "1s"

[[llm.routes]]
alias = "fast"
provider = "fx"
model = "gpt-4o-mini"
"#,
        origin = provider.origin
    )
}

const SYNTHETIC: &str = r#"strategies = { email = "synthetic", phone = "synthetic", credit_card = "synthetic", secret = "synthetic", us_ssn = "synthetic", iban = "synthetic", ip = "synthetic" }"#;

async fn start(provider: &FixtureLlm, pii: &str) -> Gateway {
    Gateway::start_with(
        &config(provider, pii),
        &[],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
            ("PORTCULLIS_EGRESS_DNS_BIND", ""),
            ("LLM_TEST_PROVIDER_KEY", PROVIDER_KEY),
            ("LLM_TEST_PII_KEY", PII_KEY),
        ],
    )
    .await
}

fn last_user_text() -> String {
    format!("Please confirm: mail {EMAIL}, card {CARD}, phone {PHONE}, key {GITHUB}, aws {AWS}.")
}

/// A conversation with personal data and secrets in every role, a content-part message, and
/// tool-call arguments.
fn messages() -> Value {
    json!([
        {"role": "system", "content": format!("Support desk. Escalate to {EMAIL2} or {PHONE2}.")},
        {"role": "user", "content": format!("I am {EMAIL}, my card is {CARD}.")},
        {"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": json!({"email": EMAIL, "card": CARD}).to_string()}
        }]},
        {"role": "tool", "tool_call_id": "call_1", "content": format!("customer phone {PHONE}, token {GITHUB}")},
        {"role": "user", "content": [{"type": "text", "text": last_user_text()}]}
    ])
}

async fn ledger(gateway: &Gateway) -> Vec<Value> {
    let page = gateway.admin_get("/admin/ledger?limit=1000").await;
    page["records"].as_array().cloned().unwrap_or_default()
}

fn assert_clean(text: &str) {
    for original in ORIGINALS {
        assert!(
            !text.contains(original),
            "`{original}` reached the provider: {text}"
        );
    }
}

#[tokio::test]
async fn openai_client_chat_reaches_the_provider_clean_and_gets_originals_back() {
    let provider = FixtureLlm::start(&[]).await;
    let gateway = start(&provider, SYNTHETIC).await;
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
    let mut tap = EventTap::open(&gateway).await;
    let base = gateway.url("/v1");
    let expected = last_user_text();

    let whole = openai(
        &base,
        &token,
        "chat",
        &json!({"model": "fast", "messages": messages()}),
    )
    .await;
    assert_eq!(whole["content"], expected.as_str(), "{whole}");
    assert!(whole["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // Streamed: the fixture cuts every word in two, so every value crosses a chunk boundary.
    let streamed = openai(
        &base,
        &token,
        "stream",
        &json!({"model": "fast", "messages": messages()}),
    )
    .await;
    assert_eq!(streamed["content"], expected.as_str(), "{streamed}");
    assert!(streamed["chunks"].as_u64().unwrap() > 10, "{streamed}");
    assert!(streamed["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // Tool-call arguments streamed back are restored too.
    let tool = openai(
        &base,
        &token,
        "stream",
        &json!({"model": "tool-call", "messages": messages()}),
    )
    .await;
    assert_eq!(
        tool["tool_arguments"][0],
        json!({"text": expected}).to_string(),
        "{tool}"
    );

    let records = provider.records().await;
    assert_eq!(records.len(), 3);
    for record in &records {
        assert_clean(&record["body"].to_string());
        assert_eq!(record["authorization"], format!("Bearer {PROVIDER_KEY}"));
        let body = &record["body"];
        assert_eq!(body["max_tokens"], 64);
        let arguments = body["messages"][2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        let arguments: Value = serde_json::from_str(arguments).unwrap();
        assert!(
            arguments["email"]
                .as_str()
                .unwrap()
                .ends_with("@example.invalid")
        );
        assert_eq!(body["messages"][0]["role"], "system");
    }
    assert_eq!(records[0]["body"]["model"], "gpt-4o-mini");
    assert_eq!(records[1]["body"]["stream_options"]["include_usage"], true);

    let calls = tap.take("llm.call", 3).await;
    let ledger_text = Value::Array(ledger(&gateway).await).to_string();
    assert_clean(&ledger_text);
    assert!(!ledger_text.contains(PROVIDER_KEY));
    for call in &calls {
        assert_eq!(call["decision"], "allow", "{call}");
        assert_eq!(call["data"]["settlement"], "settled");
        assert!(
            call["data"]["sanitized"]["EMAIL"].as_u64().unwrap() >= 3,
            "{call}"
        );
        assert!(
            call["data"]["sanitized"]["SECRET"].as_u64().unwrap() >= 2,
            "{call}"
        );
        assert!(call["data"]["input_tokens"].as_u64().unwrap() > 0);
    }
    assert_eq!(calls[1]["data"]["usage"], "reported");
}

#[tokio::test]
async fn provider_failures_release_or_settle_and_answer_in_openai_shape() {
    let provider = FixtureLlm::start(&[]).await;
    let gateway = start(&provider, SYNTHETIC).await;
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
    let mut tap = EventTap::open(&gateway).await;
    let base = gateway.url("/v1");
    let hello = json!([{"role": "user", "content": "hello there"}]);

    // Mid-stream: the client gets a clean error; output was seen, so the reservation is settled
    // to the usage seen.
    let broken = openai(
        &base,
        &token,
        "stream",
        &json!({"model": "fail-midstream", "messages": hello}),
    )
    .await;
    assert_eq!(broken["error"]["code"], "upstream_failed", "{broken}");
    assert_eq!(broken["error"]["message"], "The upstream failed.");

    // A provider error status passes through with the fixed message; nothing was used.
    let failed = openai(
        &base,
        &token,
        "chat",
        &json!({"model": "fail-http-503", "messages": hello}),
    )
    .await;
    assert_eq!(failed["error"]["status"], 503, "{failed}");
    assert_eq!(failed["error"]["code"], "upstream_failed");

    // A provider that never answers: 504.
    let hung = openai(
        &base,
        &token,
        "chat",
        &json!({"model": "hang", "messages": hello}),
    )
    .await;
    assert_eq!(hung["error"]["status"], 504, "{hung}");
    assert_eq!(hung["error"]["code"], "upstream_timeout");

    let calls = tap.take("llm.call", 3).await;
    let by_model = |model: &str| {
        calls
            .iter()
            .find(|call| call["data"]["model"] == model)
            .unwrap_or_else(|| panic!("no llm.call for {model}: {calls:?}"))
            .clone()
    };
    let midstream = by_model("fail-midstream");
    assert_eq!(midstream["decision"], "deny");
    assert_eq!(midstream["reason"], "llm_stream_failed");
    assert_eq!(midstream["data"]["settlement"], "settled_partial");
    let status = by_model("fail-http-503");
    assert_eq!(status["reason"], "llm_upstream_status");
    assert_eq!(status["data"]["settlement"], "released");
    assert_eq!(status["data"]["upstream_status"], 503);
    let timeout = by_model("hang");
    assert_eq!(timeout["reason"], "llm_upstream_timeout");
    assert_eq!(timeout["data"]["settlement"], "released");
}

#[tokio::test]
async fn refusals_models_and_embeddings() {
    let provider = FixtureLlm::start(&[]).await;
    let gateway = start(
        &provider,
        r#"strategies = { email = "synthetic", credit_card = "block" }"#,
    )
    .await;
    let wide = create_agent(
        &gateway,
        "wide",
        &[
            "llm:model:*",
            "io:ingress:chat",
            "io:egress:chat",
            "io:ingress:llm.*",
        ],
    )
    .await;
    let narrow = create_agent(
        &gateway,
        "narrow",
        &[
            "llm:model:fast",
            "io:ingress:chat",
            "io:egress:chat",
            "io:ingress:llm.*",
        ],
    )
    .await;
    let base = gateway.url("/v1");
    let http = reqwest::Client::new();
    let hello = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]});

    // No token: 401 in OpenAI's shape; nothing reaches the provider.
    let response = http
        .post(gateway.url("/v1/chat/completions"))
        .json(&hello)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(body["error"]["type"], "authentication_error");

    // A model the agent may not use: 403; an allowed name nobody serves: 404.
    let denied = openai(
        &base,
        &narrow,
        "chat",
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(denied["error"]["status"], 403, "{denied}");
    assert_eq!(denied["error"]["code"], "policy_denied");
    // Chat input needs `io:ingress:chat`: an agent without it is refused before the provider.
    let mute = create_agent(
        &gateway,
        "mute",
        &["llm:model:*", "io:egress:chat", "io:ingress:llm.*"],
    )
    .await;
    let refused = openai(&base, &mute, "chat", &hello).await;
    assert_eq!(refused["error"]["status"], 403, "{refused}");
    assert_eq!(refused["error"]["code"], "policy_denied");
    let unknown = openai(
        &base,
        &wide,
        "chat",
        &json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(unknown["error"]["status"], 404, "{unknown}");

    // Blocked types: 400 naming the type and count, and the provider sees nothing.
    let blocked = openai(
        &base,
        &wide,
        "chat",
        &json!({"model": "fast", "messages": [{"role": "user", "content": format!("card {CARD}")}]}),
    )
    .await;
    assert_eq!(blocked["error"]["status"], 400, "{blocked}");
    assert_eq!(blocked["error"]["code"], "pii_blocked");
    assert!(
        blocked["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CREDIT_CARD (1)")
    );

    // Malformed bodies: 400.
    let response = http
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(&wide)
        .json(&json!({"model": "fast", "messages": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // Models: only what the agent may use.
    let listed = openai(&base, &narrow, "models", &json!({})).await;
    assert_eq!(listed["models"], json!(["fast"]), "{listed}");
    let listed = openai(&base, &wide, "models", &json!({})).await;
    assert!(
        listed["models"]
            .as_array()
            .unwrap()
            .contains(&json!("text-embedding-3-small")),
        "{listed}"
    );

    // Embeddings: inputs are sanitized too.
    let embedded = openai(
        &base,
        &wide,
        "embeddings",
        &json!({"model": "text-embedding-3-small", "input": [format!("write to {EMAIL}"), "plain"]}),
    )
    .await;
    assert_eq!(embedded["vectors"], 2, "{embedded}");

    let records = provider.records().await;
    assert_eq!(
        records.len(),
        1,
        "only the embeddings call reached the provider"
    );
    assert_eq!(records[0]["path"], "/v1/embeddings");
    assert_clean(&records[0]["body"].to_string());
}

/// `pii-leak-benchmark selfcheck`, configured as its documentation says: its capture server is
/// the gateway's provider, its model routed there.
#[tokio::test]
async fn pii_leak_benchmark_selfcheck_passes() {
    let capture_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = format!(
        r#"
[pii]
{SYNTHETIC}

[budgets.prices]
default_model = {{ input_per_1m = "0.15", output_per_1m = "0.60" }}

[[llm.providers]]
name = "capture"
base_url = "http://127.0.0.1:{capture_port}/v1"
models = ["conformance-model"]
"#
    );
    let gateway = Gateway::start(&config).await;
    let token = create_agent(
        &gateway,
        "bench",
        &[
            "llm:model:*",
            "io:ingress:chat",
            "io:egress:chat",
            "io:ingress:llm.*",
        ],
    )
    .await;
    let output =
        tokio::process::Command::new(support::peers::installed("venv/bin/pii-leak-benchmark"))
            .args([
                "selfcheck",
                "--target-base-url",
                &gateway.url("/v1"),
                "--capture-port",
                &capture_port.to_string(),
            ])
            .env("CONFORMANCE_TARGET_API_KEY", &token)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "selfcheck failed:\n{text}\n{}",
        gateway.stderr_log()
    );
    assert!(text.contains("CLEAN"), "{text}");
}

/// Every ledger record, page by page.
async fn whole_ledger(gateway: &Gateway) -> Vec<Value> {
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let page = gateway
            .admin_get(&format!("/admin/ledger?after={after}&limit=1000"))
            .await;
        records.extend(page["records"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => return records,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_never_spend_past_a_small_usd_cap() {
    // One output token at $0.001 and free input: each call's estimate (`max_tokens` = 1) equals
    // what it costs (the fixture answers "ping" with one token), so the $0.05 cap admits at
    // most 50 calls however they interleave.
    const CALLS: usize = 1000;
    const PRICE: u64 = 1000;
    const CAP: u64 = 50_000;
    let provider = FixtureLlm::start(&[]).await;
    let config = format!(
        r#"
[admin]
rate_limit = "100000/60"

# One peer opens all the calls at once: above the per-address connection cap.
[server]
max_connections_per_ip = 2048

[llm]
default_max_tokens = 1

[[budgets.budgets]]
id = "cap"
scope = "global"
unit = "usd"
window = "day"
limit = "0.05"

[budgets.prices.models."cap-model"]
input_per_1m = "0"
output_per_1m = "1000"

[[llm.providers]]
name = "fx"
base_url = "{origin}/v1"
models = ["cap-model"]
"#,
        origin = provider.origin
    );
    let gateway = Gateway::start(&config).await;
    let token = create_agent(
        &gateway,
        "spender",
        &[
            "llm:model:*",
            "io:ingress:chat",
            "io:egress:chat",
            "io:ingress:llm.*",
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let url = gateway.url("/v1/chat/completions");
    let calls = (0..CALLS).map(|_| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({
                    "model": "cap-model",
                    "max_tokens": 1,
                    "messages": [{"role": "user", "content": "ping"}]
                }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        })
    });
    let outcomes = futures::future::join_all(calls).await;
    let mut succeeded = 0u64;
    for outcome in outcomes {
        let (status, body) = outcome.unwrap();
        match status {
            200 => succeeded += 1,
            429 => assert!(
                ["budget_exceeded", "budget_paused"]
                    .contains(&body["error"]["code"].as_str().unwrap()),
                "{body}"
            ),
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    assert!(
        succeeded > 0 && succeeded * PRICE <= CAP,
        "{succeeded} calls succeeded"
    );

    // Committed spend: what succeeded, never past the cap; nothing stays reserved.
    let view = gateway.admin_get("/admin/budgets").await;
    let line = view["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["key"] == "cap@global")
        .cloned()
        .unwrap();
    assert_eq!(line["spent"], succeeded * PRICE, "{line}");
    assert_eq!(line["reserved"], 0, "{line}");
    // Only admitted calls reached the provider.
    assert_eq!(provider.records().await.len() as u64, succeeded);

    // The ledger's per-call costs add up to the committed spend (events are written off the
    // response path: wait for all of them).
    let mut settled = Vec::new();
    for _ in 0..200 {
        let calls: Vec<Value> = whole_ledger(&gateway)
            .await
            .into_iter()
            .filter(|record| record["kind"] == "llm.call")
            .collect();
        if calls.len() == CALLS {
            settled = calls
                .into_iter()
                .filter(|call| call["decision"] == "allow")
                .collect();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(settled.len() as u64, succeeded);
    let cost: u64 = settled
        .iter()
        .map(|call| call["data"]["cost_micro_usd"].as_u64().unwrap())
        .sum();
    assert_eq!(cost, succeeded * PRICE);
}
