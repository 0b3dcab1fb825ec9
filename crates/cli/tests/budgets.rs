//! End to end: budgets in the real binary behind the MCP front, against the project's fixture
//! upstream. A gateway killed with SIGKILL while reservations are in flight loses no spend, and
//! releases those reservations (one `budget.expired` event each) once they expire.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use support::Gateway;

fn config() -> String {
    format!(
        r#"
# The test polls the admin API.
[admin]
rate_limit = "100000/60"

[[upstreams]]
name = "fx"
call_timeout = "60s"
[upstreams.stdio]
command = "{bin}"
args = ["fixture-server"]

[tools]
pin_mode = "open"

[budgets]
reservation_ttl = "1s"

[[budgets.budgets]]
id = "calls"
scope = "global"
unit = "calls"
window = "day"
limit = 100
"#,
        bin = env!("CARGO_BIN_EXE_portcullis"),
    )
}

const ENVS: &[(&str, &str)] = &[
    ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
    ("PORTCULLIS_EGRESS_DNS_BIND", ""),
];

async fn create_agent(gateway: &Gateway) -> String {
    let response = reqwest::Client::new()
        .post(gateway.url("/admin/agents"))
        .bearer_auth(&gateway.admin_token)
        .json(&serde_json::json!({"id": "worker", "allow": ["tools:*", "io:*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn wait_for_tools(gateway: &Gateway) {
    for _ in 0..400 {
        let tools = gateway.admin_get("/admin/tools").await;
        if tools["tools"].as_array().is_some_and(|t| !t.is_empty()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the upstream never listed its tools");
}

fn call(name: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(name.to_owned());
    params.arguments = arguments.as_object().cloned();
    params
}

/// The `calls@global` line: (spent, reserved).
async fn line(gateway: &Gateway) -> (u64, u64) {
    let view = gateway.admin_get("/admin/budgets").await;
    let line = view["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["key"] == "calls@global")
        .cloned()
        .unwrap_or_default();
    (
        line["spent"].as_u64().unwrap_or(0),
        line["reserved"].as_u64().unwrap_or(0),
    )
}

/// Polls the `calls@global` line until `done` holds (the gateway works on its own clock).
async fn wait_for_line(gateway: &Gateway, done: impl Fn((u64, u64)) -> bool) -> (u64, u64) {
    for _ in 0..600 {
        let now = line(gateway).await;
        if done(now) {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the budget line never reached the expected state: {:?}",
        line(gateway).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_reservations_in_flight_loses_no_spend_and_releases_them() {
    let config = config();
    let gateway = Gateway::start_with(&config, &[], ENVS).await;
    wait_for_tools(&gateway).await;
    let token = create_agent(&gateway).await;
    let mut transport = StreamableHttpClientTransportConfig::with_uri(gateway.url("/mcp"));
    transport.auth_header = Some(token.clone());
    let client = ().serve(StreamableHttpClientTransport::from_config(transport)).await.unwrap();
    for _ in 0..3 {
        let result = client
            .peer()
            .call_tool(call("fx.echo", serde_json::json!({"message": "m"})))
            .await
            .unwrap();
        assert_ne!(result.is_error, Some(true));
    }
    // Two calls that never answer: their reservations stay in flight.
    for _ in 0..2 {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            let _ = peer.call_tool(call("fx.hang", serde_json::json!({}))).await;
        });
    }
    assert_eq!(
        wait_for_line(&gateway, |(_, reserved)| reserved == 2).await,
        (3, 2)
    );

    let gateway = gateway.kill_and_restart(&config, &[], ENVS).await;
    // Nothing settled is lost, and both reservations are released once expired (1s).
    assert_eq!(
        wait_for_line(&gateway, |(_, reserved)| reserved == 0).await,
        (3, 0)
    );
    // One event each, appended right after the release the line above shows: wait for both.
    let mut expired = Vec::new();
    for _ in 0..200 {
        let ledger = gateway.admin_get("/admin/ledger?after=0&limit=1000").await;
        expired = ledger["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|record| record["kind"] == "budget.expired")
            .cloned()
            .collect();
        if expired.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(expired.len(), 2, "{expired:?}");
    assert_eq!(expired[0]["data"]["holds"][0]["account"], "global");
    assert_eq!(expired[0]["data"]["holds"][0]["unit"], "calls");
}
