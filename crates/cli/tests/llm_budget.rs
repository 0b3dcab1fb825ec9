//! End to end, LLM budgets against attacks (issues 16 and 17): a reservation covers every
//! choice at the largest output limit (the `n = 50` overspend), unboundable requests are
//! refused, and a budget's `downgrade_to` model is gated like the model asked for. One gateway.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use support::llm::FixtureLlm;
use support::{Gateway, create_agent};

const CAP: u64 = 10_000;

fn config(provider: &FixtureLlm) -> String {
    format!(
        r#"
[llm]
default_max_tokens = 64

[budgets.prices]
default_model = {{ input_per_1m = "0.15", output_per_1m = "0.60" }}

[[budgets.budgets]]
id = "spender-tokens"
scope = "agent"
subject = "spender"
unit = "tokens"
window = "day"
limit = {CAP}
throttle_at = 100

[[budgets.budgets]]
id = "squeeze"
scope = "agent"
subject = "squeezed"
unit = "tokens"
window = "day"
limit = 100000
throttle_at = 1
throttle_action = "downgrade"
downgrade_to = "cheap"

[[budgets.budgets]]
id = "squeeze-ok"
scope = "agent"
subject = "squeezed-ok"
unit = "tokens"
window = "day"
limit = 100000
throttle_at = 1
throttle_action = "downgrade"
downgrade_to = "cheap"

[[llm.providers]]
name = "fx"
base_url = "{origin}/v1"
models = ["gpt-4o-mini", "cheap-model"]

[[llm.routes]]
alias = "cheap"
provider = "fx"
model = "cheap-model"
"#,
        origin = provider.origin
    )
}

fn chat(extra: Value) -> Value {
    let mut body =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]});
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    body
}

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
async fn reservations_cover_the_worst_case_and_downgrades_are_gated() {
    let provider = FixtureLlm::start(&[]).await;
    let gateway = Gateway::start(&config(&provider)).await;
    let spender = create_agent(
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

    // (row, body, status, code): the n = 50 attack and its variants against a 10,000-token cap.
    let rows: Vec<(&str, Value, u16, &str)> = vec![
        (
            "n = 50 at 1,000 tokens each",
            chat(json!({"n": 50, "max_tokens": 1000})),
            429,
            "budget_exceeded",
        ),
        (
            "the larger of two limits counts",
            chat(json!({"n": 50, "max_tokens": 10, "max_completion_tokens": 1000})),
            429,
            "budget_exceeded",
        ),
        (
            "n and best_of multiply",
            chat(json!({"n": 10, "best_of": 10, "max_tokens": 100})),
            429,
            "budget_exceeded",
        ),
        (
            "n past what can be bounded",
            chat(json!({"n": 1000, "max_tokens": 1})),
            400,
            "bad_request",
        ),
        (
            "a limit past what can be bounded",
            chat(json!({"max_tokens": 1_u64 << 40})),
            400,
            "bad_request",
        ),
        (
            "a bounded request within the cap",
            chat(json!({"n": 2, "max_tokens": 100})),
            200,
            "",
        ),
    ];
    for (row, body, status, code) in &rows {
        let (got, answer) = post(&gateway, &spender, body).await;
        assert_eq!(got, *status, "{row}: {answer}");
        if !code.is_empty() {
            assert_eq!(answer["error"]["code"], *code, "{row}: {answer}");
        }
    }
    let records = provider.records().await;
    assert_eq!(
        records.len(),
        1,
        "only the bounded request reached the provider"
    );
    let view = gateway.admin_get("/admin/budgets").await;
    let line = view["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["id"] == "spender-tokens")
        .cloned()
        .unwrap();
    assert!(line["spent"].as_u64().unwrap() <= CAP, "{line}");
    assert_eq!(line["reserved"], 0, "{line}");

    // A budget downgrade to a model the agent may not use is refused before any call; an agent
    // allowed the target gets it.
    provider.clear().await;
    let squeezed = create_agent(
        &gateway,
        "squeezed",
        &[
            "llm:model:gpt-4o-mini",
            "io:ingress:chat",
            "io:egress:chat",
            "io:ingress:llm.*",
        ],
    )
    .await;
    let allowed = create_agent(
        &gateway,
        "squeezed-ok",
        &[
            "llm:model:gpt-4o-mini",
            "llm:model:cheap",
            "io:ingress:chat",
            "io:egress:chat",
            "io:ingress:llm.*",
        ],
    )
    .await;
    let body = chat(json!({"max_tokens": 2000}));
    let (status, answer) = post(&gateway, &squeezed, &body).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "policy_denied");
    assert!(
        provider.records().await.is_empty(),
        "the provider saw the call"
    );
    let (status, answer) = post(&gateway, &allowed, &body).await;
    assert_eq!(status, 200, "{answer}");
    let records = provider.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["body"]["model"], "cheap-model");
    let view = gateway.admin_get("/admin/budgets").await;
    for line in view["lines"].as_array().unwrap() {
        assert_eq!(
            line["reserved"], 0,
            "a refused downgrade released its hold: {line}"
        );
    }
}

/// A session budget applies to every LLM call (issue 17 item 5): a call without a trusted session
/// is in its agent's default session of the day, so the cap is reached without any session
/// header; a session header is trusted only from an agent that may assert identity.
#[tokio::test]
async fn session_budgets_count_llm_calls_without_a_session_header() {
    let provider = FixtureLlm::start(&[]).await;
    let config = format!(
        r#"
[[budgets.budgets]]
id = "per-session"
scope = "session"
unit = "calls"
window = "lifetime"
limit = 2

[[llm.providers]]
name = "fx"
base_url = "{origin}/v1"
models = ["gpt-4o-mini"]
"#,
        origin = provider.origin
    );
    let gateway = Gateway::start(&config).await;
    let allow = [
        "llm:model:*",
        "io:ingress:chat",
        "io:egress:chat",
        "io:ingress:llm.*",
    ];
    let plain = create_agent(&gateway, "plain", &allow).await;
    let other = create_agent(&gateway, "other", &allow).await;
    let body = chat(json!({}));
    for _ in 0..2 {
        let (status, answer) = post(&gateway, &plain, &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = post(&gateway, &plain, &body).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "budget_exceeded");
    assert_eq!(provider.records().await.len(), 2);
    // Another agent's calls are in its own default session.
    let (status, answer) = post(&gateway, &other, &body).await;
    assert_eq!(status, 200, "{answer}");

    // A caller-chosen session from an agent that may not assert identity is refused, never
    // trusted as a fresh session.
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(&plain)
        .header("x-portcullis-session", "fresh-start")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["error"]["code"], "identity_header_refused",
        "{answer}"
    );

    let view = gateway.admin_get("/admin/budgets").await;
    let line = view["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["key"].as_str().unwrap().contains("default:plain:"))
        .cloned()
        .unwrap_or_else(|| panic!("no line of plain's default session: {view}"));
    assert_eq!(line["spent"], 2, "{line}");
}
