//! End to end: engaging a kill switch (agent, project, global) or deleting the agent closes that
//! agent's live MCP sessions, each closure an `mcp.session_closed` event (issue 17 item 9, for
//! MCP sessions). A closed session answers like an unknown one and its open GET stream ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Gateway;
use support::mcp::{client, wait_for_tools};

/// A bound against hanging on a broken build, never a timing assertion: the cut takes about a
/// quarter of a second.
const DEADLINE: Duration = Duration::from_secs(20);
const PROTOCOL: &str = "2025-06-18";

async fn start() -> Gateway {
    let config = format!(
        r#"
[[upstreams]]
name = "fx"
[upstreams.stdio]
command = "{bin}"
args = ["fixture-server"]

[tools]
pin_mode = "open"

# The test polls the admin API while it waits.
[admin]
rate_limit = "6000/60"
"#,
        bin = env!("CARGO_BIN_EXE_portcullis"),
    );
    let gateway = Gateway::start(&config).await;
    wait_for_tools(&gateway).await;
    gateway
}

/// Creates run-time agent `id` (of `project`) allowed every tool; answers its token.
async fn agent(gateway: &Gateway, id: &str, project: Option<&str>) -> String {
    let response = reqwest::Client::new()
        .post(gateway.url("/admin/agents"))
        .bearer_auth(&gateway.admin_token)
        .json(&json!({"id": id, "allow": ["tools:*", "io:*"], "project": project}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn killswitch(gateway: &Gateway, on: bool, scope: &str) {
    let response = reqwest::Client::new()
        .post(gateway.url("/admin/killswitch"))
        .bearer_auth(&gateway.admin_token)
        .json(&json!({"on": on, "scope": scope}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{scope}: {response:?}");
}

/// One request in session `id`: its status and body.
async fn in_session(
    gateway: &Gateway,
    token: &str,
    id: &str,
    method: reqwest::Method,
    body: Option<&Value>,
) -> (reqwest::StatusCode, String) {
    let mut request = reqwest::Client::new()
        .request(method, gateway.url("/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", PROTOCOL);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

fn tools_list() -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
}

/// A session opened over plain HTTP, with its GET stream open.
struct Session {
    id: String,
    stream: reqwest::Response,
}

impl Session {
    async fn open(gateway: &Gateway, token: &str) -> Self {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}});
        let response = reqwest::Client::new()
            .post(gateway.url("/mcp"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let sent = in_session(
            gateway,
            token,
            &id,
            reqwest::Method::POST,
            Some(&initialized),
        )
        .await;
        assert!(sent.0.is_success(), "{sent:?}");
        let stream = reqwest::Client::new()
            .get(gateway.url("/mcp"))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &id)
            .header("mcp-protocol-version", PROTOCOL)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200, "the GET stream opens");
        Self { id, stream }
    }

    /// Waits (bounded) until the gateway ends the GET stream.
    async fn stream_ends(mut self) {
        let ended = tokio::time::timeout(DEADLINE, async {
            while let Ok(Some(_)) = self.stream.chunk().await {}
        })
        .await;
        assert!(
            ended.is_ok(),
            "the GET stream of a closed session stayed open"
        );
    }

    /// Whether the GET stream is still open: no end within a short look (a keep-alive comment or
    /// nothing arrives). Only ever asserted true, so a slow machine cannot fail it.
    async fn stream_open(&mut self) -> bool {
        !matches!(
            tokio::time::timeout(Duration::from_millis(300), self.stream.chunk()).await,
            Ok(Ok(None) | Err(_))
        )
    }
}

/// Every `mcp.session_closed` record of `agent` in the ledger (every page of it).
async fn closures(gateway: &Gateway, agent: &str) -> Vec<Value> {
    let mut res = Vec::new();
    let mut after = 0;
    loop {
        let page = gateway
            .admin_get(&format!("/admin/ledger?after={after}&limit=1000"))
            .await;
        res.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["kind"] == "mcp.session_closed" && r["subject"] == agent)
                .cloned(),
        );
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => return res,
        }
    }
}

/// Polls the ledger until `agent` has `count` closures; answers them.
async fn wait_for_closures(gateway: &Gateway, agent: &str, count: usize) -> Vec<Value> {
    let waited = tokio::time::timeout(DEADLINE, async {
        loop {
            let found = closures(gateway, agent).await;
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let found = waited.unwrap_or_else(|_| panic!("{agent}'s sessions were never closed"));
    assert_eq!(found.len(), count, "{found:?}");
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killswitch_and_revocation_close_live_mcp_sessions() {
    let gateway = start().await;
    let a1 = agent(&gateway, "a1", Some("web")).await;
    let a2 = agent(&gateway, "a2", None).await;

    // Agent scope: both of a1's sessions (one the rmcp client's) close; a2's stays.
    let sdk = client(&gateway, &a1).await;
    assert!(!sdk.peer().list_all_tools().await.unwrap().is_empty());
    let raw = Session::open(&gateway, &a1).await;
    let mut bystander = Session::open(&gateway, &a2).await;
    killswitch(&gateway, true, "agent:a1").await;
    let closed = wait_for_closures(&gateway, "a1", 2).await;
    for record in &closed {
        assert_eq!(record["reason"], "killswitch_engaged", "{record}");
        assert_eq!(record["decision"], "deny", "{record}");
        assert_eq!(record["data"]["scope"], "agent:a1", "{record}");
        assert!(
            !record.to_string().contains(&raw.id),
            "no session id: {record}"
        );
    }
    // The SDK client would re-initialize after the release; it is done here.
    let _ = sdk.cancel().await;
    let id = raw.id.clone();
    raw.stream_ends().await;
    killswitch(&gateway, false, "agent:a1").await;
    // Released: the closed session answers exactly like one that never existed.
    let unknown = in_session(
        &gateway,
        &a1,
        "no-such-session",
        reqwest::Method::POST,
        Some(&tools_list()),
    )
    .await;
    assert_eq!(unknown.0, 404);
    let gone = in_session(
        &gateway,
        &a1,
        &id,
        reqwest::Method::POST,
        Some(&tools_list()),
    )
    .await;
    assert_eq!(gone, unknown);
    assert!(bystander.stream_open().await, "a2's session was not cut");
    let kept = in_session(
        &gateway,
        &a2,
        &bystander.id,
        reqwest::Method::POST,
        Some(&tools_list()),
    )
    .await;
    assert_eq!(kept.0, 200, "{kept:?}");

    // Project scope: a1 is in project `web`, a2 in none.
    let raw = Session::open(&gateway, &a1).await;
    killswitch(&gateway, true, "project:web").await;
    let closed = wait_for_closures(&gateway, "a1", 3).await;
    assert_eq!(closed[2]["data"]["scope"], "project:web");
    raw.stream_ends().await;
    assert!(bystander.stream_open().await, "a2's session was not cut");
    killswitch(&gateway, false, "project:web").await;

    // Global scope: everyone's sessions.
    let raw = Session::open(&gateway, &a1).await;
    killswitch(&gateway, true, "global").await;
    let closed = wait_for_closures(&gateway, "a1", 4).await;
    assert_eq!(closed[3]["data"]["scope"], "global");
    let closed = wait_for_closures(&gateway, "a2", 1).await;
    assert_eq!(closed[0]["data"]["scope"], "global");
    raw.stream_ends().await;
    bystander.stream_ends().await;
    killswitch(&gateway, false, "global").await;

    // Revocation: deleting a2 closes its session; an agent re-created under the same id does not
    // find it.
    let revoked = Session::open(&gateway, &a2).await;
    let response = reqwest::Client::new()
        .delete(gateway.url("/admin/agents/a2"))
        .bearer_auth(&gateway.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let closed = wait_for_closures(&gateway, "a2", 2).await;
    assert_eq!(closed[1]["reason"], "agent_revoked", "{:?}", closed[1]);
    let id = revoked.id.clone();
    revoked.stream_ends().await;
    let again = agent(&gateway, "a2", None).await;
    let gone = in_session(
        &gateway,
        &again,
        &id,
        reqwest::Method::POST,
        Some(&tools_list()),
    )
    .await;
    assert_eq!(gone, unknown);
}
