//! MCP end-to-end tests with real peers: the Python SDK client, the conformance suite, and the
//! project's fixture server run as the real binary. Peers come from `scripts/install-test-deps`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::json;
use support::peers::{self, FixtureHttp, Forwarder};

#[tokio::test]
async fn python_sdk_client_talks_to_the_fixture_server() {
    let fixture = FixtureHttp::start(&[]).await;
    let out = peers::python_client(&fixture.url, None, "add", json!({ "a": 2, "b": 3 })).await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(out["result"]["content"][0]["text"], "5", "{out}");
    assert!(
        out["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("read_file"))
    );
}

/// The fixture alone passes the whole suite through the test's forwarder, so failures in the
/// gateway run (see the baseline) are the gateway's, not the fixture's or the harness's.
#[tokio::test]
async fn fixture_server_passes_the_conformance_suite_through_the_forwarder() {
    let fixture = FixtureHttp::start(&["--conformance"]).await;
    let origin = fixture.url.trim_end_matches("/mcp").to_owned();
    let forwarder = Forwarder::start(&origin, "unused-token").await;
    let results = tempfile::tempdir().unwrap();
    let baseline =
        peers::repo_root().join("crates/cli/tests/peers/conformance-fixture-baseline.yml");
    let (ok, output) = peers::conformance(
        &format!("{}/mcp", forwarder.base),
        &baseline,
        results.path(),
    )
    .await;
    assert!(ok, "conformance suite against the fixture:\n{output}");
}

// --- Through the gateway -------------------------------------------------------------------------

const EVERYTHING_SECRET: &str = "everything-secret-value-7731";

/// A gateway fronting the fixture (`fx`), `@modelcontextprotocol/server-everything` (`everything`)
/// and `mcp-server-time` (`time`), all over stdio, with pins open.
async fn gateway_with_peers(dir: &std::path::Path) -> support::Gateway {
    let config = format!(
        r#"
[secrets.env]
everything_token = "EVERYTHING_SECRET_FOR_TEST"

[tools]
pin_mode = "open"

[[upstreams]]
name = "fx"
call_timeout = "20s"
[upstreams.stdio]
command = "{bin}"
args = ["fixture-server", "--record", "{record}"]

[[upstreams]]
name = "everything"
call_timeout = "20s"
[upstreams.stdio]
command = "{node}"
args = ["{everything}", "stdio"]
env_allow = ["VISIBLE_VAR"]
secrets = {{ EVERYTHING_TOKEN = "everything_token" }}

[[upstreams]]
name = "time"
call_timeout = "20s"
[upstreams.stdio]
command = "{time}"
args = ["--local-timezone", "UTC"]
"#,
        bin = env!("CARGO_BIN_EXE_portcullis"),
        record = dir.join("record.jsonl").display(),
        node = peers::node22().display(),
        everything = peers::server_everything_js().display(),
        time = peers::mcp_server_time().display(),
    );
    support::Gateway::start_with(
        &config,
        &[],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
            ("PORTCULLIS_EGRESS_DNS_BIND", ""),
            ("EVERYTHING_SECRET_FOR_TEST", EVERYTHING_SECRET),
            ("VISIBLE_VAR", "visible-value"),
            ("HIDDEN_VAR", "hidden-value"),
        ],
    )
    .await
}

/// Waits until every upstream in `names` has listed at least one tool.
async fn wait_for_upstreams(gateway: &support::Gateway, names: &[&str]) {
    for _ in 0..600 {
        let tools = gateway.admin_get("/admin/tools").await;
        let listed = tools["tools"].as_array().cloned().unwrap_or_default();
        let ready = names
            .iter()
            .all(|upstream| listed.iter().any(|tool| tool["upstream"] == *upstream));
        if ready {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the upstreams {names:?} never listed their tools: {}",
        gateway.admin_get("/admin/tools").await
    );
}

async fn create_agent(gateway: &support::Gateway, id: &str, allow: &[&str]) -> String {
    let response = reqwest::Client::new()
        .post(gateway.url("/admin/agents"))
        .bearer_auth(&gateway.admin_token)
        .json(&json!({"id": id, "allow": allow}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

fn tool_names(out: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = out["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {out}"))
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_through_the_gateway_needs_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway_with_peers(dir.path()).await;
    wait_for_upstreams(&gateway, &["fx"]).await;
    let token = create_agent(&gateway, "py", &["tools:call:fx.*", "io:*"]).await;
    let url = gateway.url("/mcp");

    // Without a token the gateway answers 401 (the status itself is checked in mcp_front.rs);
    // the SDK client fails to initialize.
    let refused = peers::python_client(&url, None, "fx.add", json!({"a": 2, "b": 3})).await;
    assert!(refused.get("error").is_some(), "{refused}");

    let out = peers::python_client(&url, Some(&token), "fx.add", json!({"a": 2, "b": 3})).await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(out["result"]["content"][0]["text"], "5", "{out}");
    let names = tool_names(&out);
    assert!(names.contains(&"fx.echo".to_owned()), "{names:?}");
    assert!(
        names.iter().all(|name| name.starts_with("fx.")),
        "the agent sees only what it may call: {names:?}"
    );
    let record = std::fs::read_to_string(dir.path().join("record.jsonl")).unwrap_or_default();
    assert_eq!(
        record.matches("\"add\"").count(),
        1,
        "only the authenticated call reached the upstream: {record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_sees_a_clean_environment_and_its_secret_never_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway_with_peers(dir.path()).await;
    wait_for_upstreams(&gateway, &["everything"]).await;
    let token = create_agent(&gateway, "env", &["tools:call:everything.*", "io:*"]).await;
    let out = peers::python_client(
        &gateway.url("/mcp"),
        Some(&token),
        "everything.get-env",
        json!({}),
    )
    .await;
    assert!(out.get("error").is_none(), "{out}");
    let text = out["result"].to_string();
    assert!(text.contains("VISIBLE_VAR"), "{text}");
    assert!(text.contains("visible-value"), "{text}");
    assert!(
        text.contains("EVERYTHING_TOKEN"),
        "the secret was injected: {text}"
    );
    assert!(!text.contains(EVERYTHING_SECRET), "{text}");
    assert!(!text.contains("HIDDEN_VAR"), "{text}");
    assert!(!text.contains("hidden-value"), "{text}");
    assert!(!text.contains("PORTCULLIS_"), "{text}");

    let ledger = gateway.admin_get("/admin/ledger?limit=1000").await;
    assert!(ledger.to_string().contains("everything.get-env"));
    assert!(!ledger.to_string().contains(EVERYTHING_SECRET));
    assert!(!gateway.stderr_log().contains(EVERYTHING_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_see_different_time_tools_and_denied_equals_missing() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway_with_peers(dir.path()).await;
    wait_for_upstreams(&gateway, &["time"]).await;
    let clock = create_agent(
        &gateway,
        "clock",
        &["tools:call:time.get_current_time", "io:*"],
    )
    .await;
    let convert = create_agent(
        &gateway,
        "convert",
        &["tools:call:time.convert_time", "io:*"],
    )
    .await;
    let url = gateway.url("/mcp");

    let out = peers::python_client(
        &url,
        Some(&clock),
        "time.get_current_time",
        json!({"timezone": "UTC"}),
    )
    .await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(tool_names(&out), vec!["time.get_current_time".to_owned()]);
    assert!(out["result"].to_string().contains("UTC"), "{out}");
    let out = peers::python_client(
        &url,
        Some(&convert),
        "time.convert_time",
        json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Europe/Berlin"}),
    )
    .await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(tool_names(&out), vec!["time.convert_time".to_owned()]);

    // The same request for a tool the agent may not call and for one that does not exist.
    let session = peers::RawSession::open(&url, Some(&clock)).await;
    let arguments = json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "UTC"});
    let denied = session
        .request_raw(
            7,
            "tools/call",
            json!({"name": "time.convert_time", "arguments": arguments}),
        )
        .await;
    let missing = session
        .request_raw(
            7,
            "tools/call",
            json!({"name": "time.convert_tame", "arguments": arguments}),
        )
        .await;
    let missing = missing.replace("convert_tame", "convert_time");
    assert_eq!(denied, missing, "a denied tool answers like a missing one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_killed_mid_call_fails_that_call_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway_with_peers(dir.path()).await;
    wait_for_upstreams(&gateway, &["fx"]).await;
    let token = create_agent(&gateway, "k", &["tools:call:fx.*", "io:*"]).await;
    let url = gateway.url("/mcp");
    let record = dir.path().join("record.jsonl");

    let session = peers::RawSession::open(&url, Some(&token)).await;
    let hanging = tokio::spawn(async move {
        session
            .request(1, "tools/call", json!({"name": "fx.hang", "arguments": {}}))
            .await
    });
    // The fixture records a call before running it: once `hang` is on record, the call is in flight.
    for _ in 0..400 {
        if std::fs::read_to_string(&record)
            .unwrap_or_default()
            .contains("\"hang\"")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &record.display().to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "the fixture upstream was running");

    let answer = hanging.await.unwrap();
    let text = answer.to_string();
    assert!(
        answer["result"]["isError"] == json!(true) || answer.get("error").is_some(),
        "the call in flight failed: {text}"
    );
    assert!(
        text.contains("upstream"),
        "the error says the upstream failed: {text}"
    );

    // The supervisor restarts the upstream; the next call succeeds.
    let mut recovered = serde_json::Value::Null;
    for attempt in 0..200 {
        let out =
            peers::python_client(&url, Some(&token), "fx.echo", json!({"message": "back"})).await;
        if out.get("error").is_none() && out["result"]["isError"] != json!(true) {
            recovered = out;
            break;
        }
        assert!(attempt < 199, "the upstream never came back: {out}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        recovered["result"].to_string().contains("back"),
        "{recovered}"
    );
}

/// The suite against the gateway fronting the fixture with prefix mode `never`, through the
/// header-adding forwarder. The baseline lists what the gateway does not pass yet; a new failure
/// fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_passes_the_conformance_suite_within_its_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[tools]
pin_mode = "open"
prefix = "never"

[[upstreams]]
name = "fx"
call_timeout = "20s"
[upstreams.stdio]
command = "{bin}"
args = ["fixture-server", "--conformance"]
"#,
        bin = env!("CARGO_BIN_EXE_portcullis"),
    );
    let gateway = support::Gateway::start(&config).await;
    wait_for_upstreams(&gateway, &["fx"]).await;
    let token = create_agent(&gateway, "suite", &["tools:*", "io:*"]).await;
    let forwarder = Forwarder::start(&gateway.url(""), &token).await;
    let results = dir.path().join("results");
    let baseline = peers::repo_root().join("crates/cli/tests/peers/conformance-baseline.yml");
    let (ok, output) =
        peers::conformance(&format!("{}/mcp", forwarder.base), &baseline, &results).await;
    assert!(ok, "conformance suite against the gateway:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_stdio_bridges_a_stdio_client_to_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway_with_peers(dir.path()).await;
    wait_for_upstreams(&gateway, &["fx"]).await;
    let token = create_agent(&gateway, "stdio", &["tools:call:fx.add", "io:*"]).await;
    let bridge = format!(
        "stdio:{}",
        json!([
            env!("CARGO_BIN_EXE_portcullis"),
            "mcp-stdio",
            "--server",
            gateway.url(""),
            "--agent-token-env",
            "MCP_TOKEN"
        ])
    );

    let out =
        peers::python_client(&bridge, Some(&token), "fx.add", json!({"a": 20, "b": 22})).await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(out["result"]["content"][0]["text"], "42", "{out}");
    assert_eq!(tool_names(&out), vec!["fx.add".to_owned()]);

    let refused = peers::python_client(
        &bridge,
        Some("pcl_agent_not-a-token"),
        "fx.add",
        json!({"a": 1, "b": 1}),
    )
    .await;
    assert!(refused.get("error").is_some(), "{refused}");
    let record = std::fs::read_to_string(dir.path().join("record.jsonl")).unwrap_or_default();
    assert_eq!(record.matches("\"add\"").count(), 1, "{record}");
}

/// `portcullis demo` (the README's MCP try-out) serves a working MCP front: the Python SDK client
/// lists and calls the demo tools with the printed token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_tools_to_a_real_client() {
    use tokio::io::AsyncBufReadExt as _;

    let dir = tempfile::tempdir().unwrap();
    let mut demo = tokio::process::Command::from(support::portcullis())
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .env("PORTCULLIS_SERVER_BIND", "127.0.0.1:0")
        .env("PORTCULLIS_EGRESS_PROXY_BIND", "")
        .env("PORTCULLIS_EGRESS_DNS_BIND", "")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value["event"] == "demo"
            {
                return value;
            }
        }
        panic!("the demo exited before it was ready");
    })
    .await
    .expect("the demo came up");
    let mcp = ready["mcp"].as_str().unwrap();
    let token = ready["token"].as_str().unwrap();

    let out = peers::python_client(
        mcp,
        Some(token),
        "demo.read_file",
        json!({"path": "hello.txt"}),
    )
    .await;
    assert!(out.get("error").is_none(), "{out}");
    assert!(tool_names(&out).contains(&"demo.echo".to_owned()), "{out}");
    assert!(
        out["result"]
            .to_string()
            .contains("Hello from the Portcullis demo"),
        "{out}"
    );
    let refused = peers::python_client(
        mcp,
        Some(token),
        "demo.read_file",
        json!({"path": "../data/admin.token"}),
    )
    .await;
    assert_eq!(refused["result"]["isError"], json!(true), "{refused}");

    let pid = demo.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), demo.wait())
        .await
        .expect("the demo stopped on SIGTERM")
        .unwrap();
    assert!(
        status.code().is_some(),
        "the demo exited by itself: {status:?}"
    );
}
