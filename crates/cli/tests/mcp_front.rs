//! End to end: the real binary fronting the project's fixture server (stdio upstream) at `/mcp`,
//! reached by an rmcp client over Streamable HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;

use rmcp::service::{RoleClient, RunningService};
use support::mcp::{call, client, recorded, text_of, wait_for_tools};
use support::{Gateway, create_agent};

const SECRET: &str = "fixture-secret-value-0451";

fn config(dir: &Path, pin_mode: &str, extra_args: &str) -> String {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hello from the root").unwrap();
    format!(
        r#"
[secrets.env]
fx_token = "FX_SECRET_FOR_TEST"

[[upstreams]]
name = "fx"
call_timeout = "10s"
[upstreams.stdio]
command = "{bin}"
args = ["fixture-server", "--root", "{root}", "--record", "{record}"{extra_args}]
env_allow = ["VISIBLE_VAR"]
secrets = {{ FX_TOKEN = "fx_token" }}

[tools]
pin_mode = "{pin_mode}"

[[tools.rules]]
name = "files-root"
tools = ["fx.read_file"]
kind = "path"
arguments = ["path"]
roots = ["{root}"]

[[tools.rules]]
name = "web"
tools = ["fx.open_url"]
kind = "url"
arguments = ["url"]
allow_hosts = ["example.com"]
"#,
        bin = env!("CARGO_BIN_EXE_portcullis"),
        root = root.display(),
        record = dir.join("record.jsonl").display(),
    )
}

async fn start(dir: &Path, pin_mode: &str, extra_args: &str) -> Gateway {
    Gateway::start_with(
        &config(dir, pin_mode, extra_args),
        &[],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
            ("PORTCULLIS_EGRESS_DNS_BIND", ""),
            ("FX_SECRET_FOR_TEST", SECRET),
            ("VISIBLE_VAR", "visible"),
            ("HIDDEN_VAR", "hidden"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_401_and_a_foreign_origin_is_403() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path(), "open", "").await;
    let token = create_agent(&gateway, "alice", &["tools:*", "io:*"]).await;
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "fx.echo", "arguments": {"message": "hi"}}});
    let http = reqwest::Client::new();
    let response = http
        .post(gateway.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = http
        .post(gateway.url("/mcp"))
        .bearer_auth(&token)
        .header("origin", "http://evil.example")
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    wait_for_tools(&gateway).await;
    assert!(
        !recorded(dir.path()).contains("fx.echo") && !recorded(dir.path()).contains("\"hi\""),
        "nothing reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_their_tools_and_calls_cross_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path(), "open", "").await;
    wait_for_tools(&gateway).await;
    let wide = create_agent(&gateway, "wide", &["tools:call:fx.*", "io:*"]).await;
    let narrow = create_agent(&gateway, "narrow", &["tools:call:fx.add", "io:*"]).await;

    let wide = client(&gateway, &wide).await;
    let narrow = client(&gateway, &narrow).await;
    let names = |tools: Vec<rmcp::model::Tool>| {
        let mut names: Vec<String> = tools.into_iter().map(|t| t.name.to_string()).collect();
        names.sort();
        names
    };
    let wide_tools = names(wide.peer().list_all_tools().await.unwrap());
    assert!(wide_tools.contains(&"fx.echo".to_owned()), "{wide_tools:?}");
    assert!(wide_tools.contains(&"fx.env_var".to_owned()));
    assert_eq!(
        names(narrow.peer().list_all_tools().await.unwrap()),
        vec!["fx.add".to_owned()]
    );

    // Allowed call, end to end.
    let echoed = wide
        .peer()
        .call_tool(call("fx.echo", serde_json::json!({"message": "hello"})))
        .await
        .unwrap();
    assert_ne!(echoed.is_error, Some(true));
    assert!(text_of(&echoed).contains("hello"));

    // Denied and missing tools answer alike.
    let denied = narrow
        .peer()
        .call_tool(call("fx.echo", serde_json::json!({"message": "x"})))
        .await
        .unwrap_err()
        .to_string();
    let missing = narrow
        .peer()
        .call_tool(call("fx.nope", serde_json::json!({"message": "x"})))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(denied, missing);

    // Argument rules: refused before the upstream sees them.
    for (tool, args, rule) in [
        (
            "fx.read_file",
            serde_json::json!({"path": "/etc/passwd"}),
            "files-root",
        ),
        (
            "fx.read_file",
            serde_json::json!({"path": "../outside.txt"}),
            "files-root",
        ),
        (
            "fx.open_url",
            serde_json::json!({"url": "https://evil.example/x"}),
            "web",
        ),
    ] {
        let refused = wide.peer().call_tool(call(tool, args)).await.unwrap();
        assert_eq!(refused.is_error, Some(true));
        assert!(text_of(&refused).contains(rule), "{}", text_of(&refused));
    }
    let inside = wide
        .peer()
        .call_tool(call(
            "fx.read_file",
            serde_json::json!({"path": "hello.txt"}),
        ))
        .await
        .unwrap();
    assert!(
        text_of(&inside).contains("hello from the root"),
        "{}",
        text_of(&inside)
    );
    let record = recorded(dir.path());
    assert!(!record.contains("/etc/passwd"), "{record}");
    assert!(!record.contains("outside.txt"), "{record}");
    assert!(!record.contains("evil.example"), "{record}");

    // Clean environment and secret redaction.
    let env = |name: &str| call("fx.env_var", serde_json::json!({"name": name}));
    let hidden = wide.peer().call_tool(env("HIDDEN_VAR")).await.unwrap();
    assert!(text_of(&hidden).contains("(unset)"), "{}", text_of(&hidden));
    let visible = wide.peer().call_tool(env("VISIBLE_VAR")).await.unwrap();
    assert!(text_of(&visible).contains("visible"));
    let secret = wide.peer().call_tool(env("FX_TOKEN")).await.unwrap();
    let text = text_of(&secret);
    assert!(text.contains("[REDACTED_SECRET]"), "{text}");
    assert!(!text.contains(SECRET));

    // The ledger holds shapes and hashes, never the values.
    let ledger = gateway.admin_get("/admin/ledger?limit=1000").await;
    let calls: Vec<&serde_json::Value> = ledger["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "tool.call")
        .collect();
    assert!(calls.iter().any(|r| r["decision"] == "allow"));
    assert!(calls.iter().any(|r| r["reason"] == "argument_path"));
    let dump = ledger.to_string();
    assert!(!dump.contains(SECRET));
    assert!(!dump.contains("/etc/passwd"));
    assert!(dump.contains("arguments_sha256"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_hides_unpinned_tools_and_quarantines_drift() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path(), "strict", ", \"--rug-pull-after\", \"4\"").await;
    wait_for_tools(&gateway).await;
    let token = create_agent(&gateway, "alice", &["tools:*", "io:*"]).await;
    let alice = client(&gateway, &token).await;
    assert!(alice.peer().list_all_tools().await.unwrap().is_empty());

    let pinned = gateway
        .cli()
        .args(["tools", "pin", "--upstream", "fx"])
        .output()
        .unwrap();
    assert!(
        pinned.status.success(),
        "{}",
        String::from_utf8_lossy(&pinned.stderr)
    );
    let visible = |tools: &[rmcp::model::Tool]| tools.iter().any(|t| t.name == "fx.echo");
    let mut quarantined = false;
    for _ in 0..10 {
        let tools = alice.peer().list_all_tools().await.unwrap();
        if !visible(&tools) {
            quarantined = true;
            break;
        }
    }
    assert!(quarantined, "the rug pull was never quarantined");
    let ledger = gateway.admin_get("/admin/ledger?limit=1000").await;
    let drift = ledger["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "tool.drift")
        .expect("a tool.drift event");
    assert_eq!(drift["data"]["changes"][0]["field"], "description");
    let refused = alice
        .peer()
        .call_tool(call("fx.echo", serde_json::json!({"message": "x"})))
        .await;
    assert!(refused.is_err());

    let repinned = gateway.cli().args(["tools", "pin"]).output().unwrap();
    assert!(repinned.status.success());
    let tools = alice.peer().list_all_tools().await.unwrap();
    assert!(visible(&tools));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rug_pull_the_upstream_announces_is_quarantined_before_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path(), "strict", ", \"--rug-pull-after-calls\", \"1\"").await;
    wait_for_tools(&gateway).await;
    let pinned = gateway
        .cli()
        .args(["tools", "pin", "--upstream", "fx"])
        .output()
        .unwrap();
    assert!(pinned.status.success());
    let token = create_agent(&gateway, "alice", &["tools:*", "io:*"]).await;
    let alice = client(&gateway, &token).await;
    let first = alice
        .peer()
        .call_tool(call("fx.echo", serde_json::json!({"message": "first"})))
        .await
        .unwrap();
    assert_ne!(first.is_error, Some(true));
    // The upstream changed `echo` and said so; no agent lists tools, yet the gateway re-lists.
    let mut drifted = false;
    for _ in 0..200 {
        let ledger = gateway.admin_get("/admin/ledger?limit=1000").await;
        if ledger["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "tool.drift")
        {
            drifted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(drifted, "the announced rug pull was never detected");
    let refused = alice
        .peer()
        .call_tool(call("fx.echo", serde_json::json!({"message": "second"})))
        .await;
    assert!(refused.is_err());
    let record = recorded(dir.path());
    assert!(!record.contains("second"), "{record}");
}

/// Opens an MCP session over plain HTTP; answers its id.
async fn open_session(gateway: &Gateway, token: &str) -> String {
    let http = reqwest::Client::new();
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}});
    let response = http
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
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = session_request(
        gateway,
        token,
        &id,
        reqwest::Method::POST,
        Some(&initialized),
    )
    .await;
    assert!(response.0.is_success(), "{response:?}");
    id
}

/// One request in session `id`: its status and body.
async fn session_request(
    gateway: &Gateway,
    token: &str,
    id: &str,
    method: reqwest::Method,
    body: Option<&serde_json::Value>,
) -> (reqwest::StatusCode, String) {
    let mut request = reqwest::Client::new()
        .request(method, gateway.url("/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_serves_only_the_agent_that_opened_it_and_each_agent_holds_a_bounded_number() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path(), "open", "").await;
    wait_for_tools(&gateway).await;
    let alice = create_agent(&gateway, "alice", &["tools:*", "io:*"]).await;
    let mallory = create_agent(&gateway, "mallory", &["tools:*", "io:*"]).await;
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let own = open_session(&gateway, &alice).await;

    // Another agent is told the session does not exist, exactly as for an invented id.
    let unknown = session_request(
        &gateway,
        &mallory,
        "no-such-session",
        reqwest::Method::POST,
        Some(&list),
    )
    .await;
    assert_eq!(unknown.0, 404);
    let stolen =
        session_request(&gateway, &mallory, &own, reqwest::Method::POST, Some(&list)).await;
    assert_eq!(stolen, unknown);
    let listened = session_request(&gateway, &mallory, &own, reqwest::Method::GET, None).await;
    assert_eq!(listened, unknown);
    let ended = session_request(&gateway, &mallory, &own, reqwest::Method::DELETE, None).await;
    assert_eq!(ended, unknown);
    let served = session_request(&gateway, &alice, &own, reqwest::Method::POST, Some(&list)).await;
    assert_eq!(served.0, 200, "{served:?}");

    // The 65th session closes the least recently used one.
    let mut newest = String::new();
    for _ in 0..64 {
        newest = open_session(&gateway, &alice).await;
    }
    let evicted = session_request(&gateway, &alice, &own, reqwest::Method::POST, Some(&list)).await;
    assert_eq!(evicted, unknown);
    let kept = session_request(
        &gateway,
        &alice,
        &newest,
        reqwest::Method::POST,
        Some(&list),
    )
    .await;
    assert_eq!(kept.0, 200, "{kept:?}");
    let ledger = gateway.admin_get("/admin/ledger?limit=1000").await;
    let evictions = ledger["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "mcp.session_evicted" && r["subject"] == "alice")
        .count();
    assert_eq!(evictions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_catalog_agents_see_only_the_broker_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path(), "open", "").await;
    wait_for_tools(&gateway).await;
    let response = reqwest::Client::new()
        .post(gateway.url("/admin/agents"))
        .bearer_auth(&gateway.admin_token)
        .json(&serde_json::json!({
            "id": "broker", "allow": ["tools:call:fx.add", "tools:call:fx.read_file", "io:*"],
            "catalog": "meta"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let agent = client(&gateway, body["token"].as_str().unwrap()).await;
    let mut names: Vec<String> = agent
        .peer()
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["call_tool", "describe_tool", "load_tools", "search_tools"]
    );

    let structured = |result: rmcp::model::CallToolResult| result.structured_content.unwrap();
    let found = structured(
        agent
            .peer()
            .call_tool(call("search_tools", serde_json::json!({"query": "file"})))
            .await
            .unwrap(),
    );
    let ids: Vec<&str> = found["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tool_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["fx.read_file"],
        "only tools the agent may call: {found}"
    );

    let described = structured(
        agent
            .peer()
            .call_tool(call(
                "describe_tool",
                serde_json::json!({"tool_id": "fx.add"}),
            ))
            .await
            .unwrap(),
    );
    assert_eq!(described["name"], "fx.add");
    assert!(described["inputSchema"].is_object(), "{described}");
    let denied = agent
        .peer()
        .call_tool(call(
            "describe_tool",
            serde_json::json!({"tool_id": "fx.echo"}),
        ))
        .await
        .unwrap_err()
        .to_string();
    let missing = agent
        .peer()
        .call_tool(call(
            "describe_tool",
            serde_json::json!({"tool_id": "fx.nope"}),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(denied, missing);
    let loaded = agent
        .peer()
        .call_tool(call(
            "load_tools",
            serde_json::json!({"tool_ids": ["fx.add", "fx.read_file"]}),
        ))
        .await
        .unwrap();
    assert_eq!(structured(loaded)["tools"].as_array().unwrap().len(), 2);

    let sum = agent
        .peer()
        .call_tool(call(
            "call_tool",
            serde_json::json!({"tool_id": "fx.add", "args": {"a": 2, "b": 40}}),
        ))
        .await
        .unwrap();
    assert!(text_of(&sum).contains("42"), "{}", text_of(&sum));
    // The same policy: a tool outside the allowlist is refused through the broker too, and the
    // tools themselves are not callable by name.
    let refused = agent
        .peer()
        .call_tool(call(
            "call_tool",
            serde_json::json!({"tool_id": "fx.echo", "args": {"message": "x"}}),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(refused, missing);
    let direct = agent
        .peer()
        .call_tool(call("fx.add", serde_json::json!({"a": 1, "b": 1})))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(direct, missing);
    let record = recorded(dir.path());
    assert!(!record.contains("\"echo\""), "{record}");
    assert_eq!(record.matches("\"add\"").count(), 1, "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_resources_follow_the_upstreams_ingress_key() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path(), "open", ", \"--conformance\"").await;
    wait_for_tools(&gateway).await;
    let reader = create_agent(
        &gateway,
        "reader",
        &[
            "tools:call:fx.add",
            "tools:prompt:fx.*",
            "tools:resource:fx",
            "io:*",
        ],
    )
    .await;
    let outsider = create_agent(&gateway, "outsider", &["io:ingress:tools.other"]).await;
    let reader = client(&gateway, &reader).await;
    let outsider = client(&gateway, &outsider).await;

    let prompts = reader.peer().list_all_prompts().await.unwrap();
    assert!(
        prompts.iter().any(|p| p.name == "fx.test_simple_prompt"),
        "{prompts:?}"
    );
    let prompt = reader
        .peer()
        .get_prompt(rmcp::model::GetPromptRequestParams::new(
            "fx.test_simple_prompt",
        ))
        .await
        .unwrap();
    assert!(!prompt.messages.is_empty());
    let resources = reader.peer().list_all_resources().await.unwrap();
    assert!(
        resources.iter().any(|r| r.uri == "test://static-text"),
        "{resources:?}"
    );
    let read = reader
        .peer()
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "test://static-text",
        ))
        .await
        .unwrap();
    assert!(!read.contents.is_empty());
    let templates = reader.peer().list_all_resource_templates().await.unwrap();
    assert!(!templates.is_empty());

    // An agent that may not take input from the upstream sees none of it, and a prompt or
    // resource it may not read answers like a missing one.
    assert!(outsider.peer().list_all_prompts().await.unwrap().is_empty());
    assert!(
        outsider
            .peer()
            .list_all_resources()
            .await
            .unwrap()
            .is_empty()
    );
    let prompt_error = |client: &RunningService<RoleClient, ()>, name: &'static str| {
        let peer = client.peer().clone();
        async move {
            peer.get_prompt(rmcp::model::GetPromptRequestParams::new(name))
                .await
                .unwrap_err()
                .to_string()
        }
    };
    assert_eq!(
        prompt_error(&outsider, "fx.test_simple_prompt").await,
        prompt_error(&reader, "fx.no_such_prompt").await
    );
    let resource_error = |client: &RunningService<RoleClient, ()>, uri: &'static str| {
        let peer = client.peer().clone();
        async move {
            peer.read_resource(rmcp::model::ReadResourceRequestParams::new(uri))
                .await
                .unwrap_err()
                .to_string()
        }
    };
    assert_eq!(
        resource_error(&outsider, "test://static-text").await,
        resource_error(&reader, "test://no-such-resource").await
    );

    let ledger = gateway.admin_get("/admin/ledger?limit=1000").await;
    let kinds: Vec<(&str, &str)> = ledger["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| Some((r["kind"].as_str()?, r["decision"].as_str()?)))
        .collect();
    assert!(kinds.contains(&("prompt.get", "allow")), "{kinds:?}");
    assert!(kinds.contains(&("prompt.get", "deny")), "{kinds:?}");
    assert!(kinds.contains(&("resource.read", "allow")), "{kinds:?}");
    assert!(kinds.contains(&("resource.read", "deny")), "{kinds:?}");
}
