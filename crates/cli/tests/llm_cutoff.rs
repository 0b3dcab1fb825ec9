//! End to end: engaging a kill switch that covers an agent, or revoking the agent, closes its open
//! LLM streams, each closure an `llm.stream_cut` event (issue 17 item 9). The fake provider's
//! `slow` model keeps a stream open while the test acts on it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};
use support::llm::{EventTap, FixtureLlm};
use support::{Gateway, create_agent};

const LLM_AGENT: &[&str] = &[
    "llm:model:*",
    "io:ingress:chat",
    "io:egress:chat",
    "io:ingress:llm.*",
];

async fn start(provider: &FixtureLlm) -> Gateway {
    let config = format!(
        r#"
[budgets]
budgets = []

[[llm.providers]]
name = "fx"
base_url = "{origin}/v1"
models = ["slow"]
"#,
        origin = provider.origin
    );
    Gateway::start(&config).await
}

/// A streamed answer's body.
type Events = std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// Reads SSE data lines from `body` until `want` of them arrived or the stream ended.
async fn read_events(body: &mut Events, want: usize) -> Vec<String> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < want {
        let Some(Ok(chunk)) = body.next().await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.trim().strip_prefix("data:") {
                events.push(data.trim().to_owned());
            }
        }
    }
    events
}

/// Opens a slow stream for `token`; the body, after its first two events (the role and a word).
async fn slow_stream(gateway: &Gateway, token: &str, row: &str) -> Events {
    let request = json!({
        "model": "slow",
        "stream": true,
        "messages": [{"role": "user", "content": "go on"}]
    });
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(token)
        .header("x-request-id", row)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body: Events = Box::pin(
        response
            .bytes_stream()
            .map(|chunk| chunk.map(|b| b.to_vec())),
    );
    assert_eq!(read_events(&mut body, 2).await.len(), 2);
    body
}

/// Every event left on a stream until it ends (within a deadline, so a stream that is never
/// cut fails the test instead of hanging it).
async fn rest(mut body: Events) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(30), read_events(&mut body, usize::MAX))
        .await
        .expect("the stream was not cut")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killswitch_and_revocation_cut_open_llm_streams() {
    let provider = FixtureLlm::start(&[]).await;
    let gateway = start(&provider).await;
    let user = create_agent(&gateway, "s1", LLM_AGENT).await;
    let bystander = create_agent(&gateway, "s2", LLM_AGENT).await;
    let mut tap = EventTap::open(&gateway).await;

    // The kill switch, agent scope: s1's stream is cut with an error event, s2's goes on.
    let cut = slow_stream(&gateway, &user, "cut-by-killswitch").await;
    let mut other = slow_stream(&gateway, &bystander, "kept").await;
    let on = gateway
        .cli()
        .args(["killswitch", "on", "--scope", "agent:s1"])
        .output()
        .unwrap();
    assert!(on.status.success());
    let events = rest(cut).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "killswitch_engaged", "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let closed = tap.take("llm.stream_cut", 1).await.remove(0);
    assert_eq!(closed["reason"], "llm_killswitch_closed", "{closed}");
    assert_eq!(closed["subject"], "s1");
    assert_eq!(closed["data"]["scope"], "agent:s1");
    let call = tap.take("llm.call", 1).await.remove(0);
    assert_eq!(call["correlation_id"], "cut-by-killswitch", "{call}");
    assert_eq!(call["reason"], "llm_killswitch_closed");
    assert_eq!(call["data"]["settlement"], "settled_partial", "{call}");
    assert_eq!(
        read_events(&mut other, 1).await.len(),
        1,
        "s2's stream goes on"
    );
    let off = gateway
        .cli()
        .args(["killswitch", "off", "--scope", "agent:s1"])
        .output()
        .unwrap();
    assert!(off.status.success());

    // Revocation: deleting s2 cuts its stream.
    let response = reqwest::Client::new()
        .delete(gateway.url("/admin/agents/s2"))
        .bearer_auth(&gateway.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let events = rest(other).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "unauthorized", "{events:?}");
    let closed = tap.take("llm.stream_cut", 1).await.remove(0);
    assert_eq!(closed["reason"], "llm_agent_revoked", "{closed}");
    assert_eq!(closed["subject"], "s2");

    // The global kill switch.
    let quiet = slow_stream(&gateway, &user, "cut-globally").await;
    let on = gateway.cli().args(["killswitch", "on"]).output().unwrap();
    assert!(on.status.success());
    let events = rest(quiet).await;
    assert!(
        events.last().unwrap().contains("killswitch_engaged"),
        "{events:?}"
    );
    let closed = tap.take("llm.stream_cut", 1).await.remove(0);
    assert_eq!(closed["data"]["scope"], "global", "{closed}");
}
