//! End to end: what the policy holds through the real binary. Immutable denies and contracts
//! survive reloads (admin route and SIGHUP) and change only with a restart, which is recorded; an
//! immutable capsule contract keeps its capsule; a contract quota survives a restart.
//!
//! One gateway (the fixture server as its MCP upstream, a trust store for capsules), restarted
//! once on the same data dir.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;

use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use support::llm::EventTap;
use support::mcp::{client, wait_for_tools};
use support::{Gateway, create_agent, portcullis};

const ENVS: &[(&str, &str)] = &[
    ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
    ("PORTCULLIS_EGRESS_DNS_BIND", ""),
];

/// Ten years of 365 days: one quota window for the whole test, whatever the wall clock says.
const QUOTA_WINDOW_SECS: u64 = 315_360_000;

/// The held part of the policy: an immutable deny and an immutable contract.
const HELD: &str = r#"
[policy]
deny = ["tools:call:fx.env_var"]

[[contracts]]
id = "freeze-add"
patterns = ["tools:call:fx.add"]
immutable = true
"#;

/// The same policy without its immutable items.
const DROPPED: &str = "[policy]\ndeny = []\n";

/// A Cedar forbid on a live argument.
const CEDAR: &str = r#"@id("no-forbidden-echo")
forbid (principal, action == Portcullis::Action::"tools:call", resource == Portcullis::Tool::"fx.echo")
when { context.arguments.hasTag("message") && context.arguments.getTag("message") == "forbidden-word" };
"#;

fn config(dir: &Path, policy: &str) -> String {
    std::fs::write(dir.join("base.cedar"), CEDAR).unwrap();
    let cedar = format!(
        "[policy]\ncedar_files = [\"{}/base.cedar\"]\n",
        dir.display()
    );
    let policy = policy.replacen("[policy]\n", &cedar, 1);
    format!(
        r#"
{policy}

[[contracts]]
id = "echo-quota"
patterns = ["tools:call:fx.echo"]
quota = {{ limit = 2, window_secs = {QUOTA_WINDOW_SECS} }}

[capsules]
trust_store = "{keys}/trust.json"
max_ttl = "1d"

[[upstreams]]
name = "fx"
call_timeout = "10s"
[upstreams.stdio]
command = "{bin}"
args = ["fixture-server", "--record", "{record}"]

[tools]
pin_mode = "open"
"#,
        keys = dir.display(),
        bin = env!("CARGO_BIN_EXE_portcullis"),
        record = dir.join("record.jsonl").display(),
    )
}

fn run(args: &[&str]) -> String {
    let output = portcullis().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// An issuer key made with the CLI, trusted for `tools:*`.
fn trust(dir: &Path) {
    let out = dir.to_str().unwrap();
    let issuer: Value = serde_json::from_str(&run(&[
        "capsule",
        "keygen",
        "--alg",
        "ed25519",
        "--kid",
        "ops-1",
        "--out",
        out,
        "--id",
        "ops",
        "--scopes",
        "none",
        "--patterns",
        "tools:*",
    ]))
    .unwrap();
    std::fs::write(
        dir.join("trust.json"),
        json!({"issuers": [issuer], "nodes": []}).to_string(),
    )
    .unwrap();
}

/// A capsule signed with the CLI carrying one contract on `pattern`.
fn capsule(dir: &Path, id: &str, pattern: &str, immutable: bool) -> String {
    let mut body: Value = serde_json::from_str(&run(&["capsule", "template"])).unwrap();
    for (key, value) in [
        ("id", json!(id)),
        ("iss", json!("ops")),
        ("kid", json!("ops-1")),
        ("ttl", json!(3600)),
        ("scope", json!("none")),
        ("denies", json!([])),
        (
            "contracts",
            json!([{"id": "hold", "patterns": [pattern], "immutable": immutable}]),
        ),
    ] {
        body[key] = value;
    }
    let path = dir.join(format!("{id}.json"));
    std::fs::write(&path, body.to_string()).unwrap();
    let key = dir.join("ops-1.key");
    run(&[
        "capsule",
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--kid",
        "ops-1",
        path.to_str().unwrap(),
    ])
}

async fn admin(
    gateway: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, gateway.url(path))
        .bearer_auth(&gateway.admin_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `(decision, layer)` of agent `coder` on `action`.
async fn explain(gateway: &Gateway, action: &str) -> (String, String) {
    let body = json!({"subject": {"agent": "coder"}, "action": action});
    let (status, answer) = admin(
        gateway,
        reqwest::Method::POST,
        "/admin/policy/explain",
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    (
        answer["decision"].as_str().unwrap().to_owned(),
        answer["layer"].as_str().unwrap().to_owned(),
    )
}

#[track_caller]
fn assert_held(errors: &Value) {
    let messages: Vec<&str> = errors
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| issue["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "the immutable deny `tools:call:fx.env_var` cannot be dropped or narrowed by a reload; restart to change it",
            "the active immutable contract `freeze-add` cannot be dropped by a reload; restart to change it",
        ],
        "{errors}"
    );
}

async fn assert_still_held(gateway: &Gateway) {
    for (action, layer) in [
        ("tools:call:fx.env_var", "immutable"),
        ("tools:call:fx.add", "contract"),
    ] {
        assert_eq!(
            explain(gateway, action).await,
            ("deny".to_owned(), layer.to_owned()),
            "{action}"
        );
    }
}

/// Calls `fx.echo`; true when the upstream answered.
async fn echo(client: &RunningService<RoleClient, ()>, message: &str) -> bool {
    let mut params = CallToolRequestParams::new("fx.echo".to_owned());
    params.arguments = json!({"message": message}).as_object().cloned();
    match client.peer().call_tool(params).await {
        Ok(result) => result.is_error != Some(true),
        Err(_) => false,
    }
}

/// How many calls the upstream received with `needle` in them.
fn upstream_saw(dir: &Path, needle: &str) -> usize {
    std::fs::read_to_string(dir.join("record.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

fn config_path(gateway: &Gateway) -> std::path::PathBuf {
    gateway.data_dir().parent().unwrap().join("portcullis.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_items_hold_across_reloads_and_capsule_deletes_and_quotas_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    trust(dir.path());
    let gateway = Gateway::start_with(&config(dir.path(), HELD), &[], ENVS).await;
    let token = create_agent(&gateway, "coder", &["tools:*", "io:*"]).await;
    assert_still_held(&gateway).await;

    // 1. The admin route refuses a reload that drops them, naming each; the old policy serves.
    std::fs::write(config_path(&gateway), config(dir.path(), DROPPED)).unwrap();
    let (status, answer) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/policy/reload",
        None,
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "config_invalid");
    assert_held(&answer["error"]["errors"]);
    assert_still_held(&gateway).await;

    // 2. So does SIGHUP; its refusal is an event.
    let mut events = EventTap::open(&gateway).await;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let failed = events.take("policy.reload_failed", 1).await;
    assert_held(&failed[0]["data"]["errors"]);
    assert_still_held(&gateway).await;

    // 3. A capsule with an active immutable contract cannot be deleted; one without can.
    let held = capsule(dir.path(), "held", "tools:call:fx.sleep", true);
    let loose = capsule(dir.path(), "loose", "tools:call:fx.crash", false);
    for token in [&held, &loose] {
        let response = reqwest::Client::new()
            .post(gateway.url("/admin/capsules"))
            .bearer_auth(&gateway.admin_token)
            .header("x-portcullis-capsule", token.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let (status, answer) = admin(
        &gateway,
        reqwest::Method::DELETE,
        "/admin/capsules/held",
        None,
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (409, &json!("conflict")),
        "{answer}"
    );
    assert_eq!(explain(&gateway, "tools:call:fx.sleep").await.1, "capsule");
    let (status, _) = admin(
        &gateway,
        reqwest::Method::DELETE,
        "/admin/capsules/loose",
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(explain(&gateway, "tools:call:fx.crash").await.0, "allow");

    // 4. Cedar sees the live call's arguments, and explain replays the live decision exactly.
    wait_for_tools(&gateway).await;
    let mcp = client(&gateway, &token).await;
    assert!(!echo(&mcp, "forbidden-word").await);
    assert_eq!(upstream_saw(dir.path(), "forbidden-word"), 0);
    let page = gateway.admin_get("/admin/ledger?limit=1000").await;
    let live = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|record| {
            record["kind"] == "policy.decision" && record["data"]["action"] == "tools:call:fx.echo"
        })
        .unwrap()
        .clone();
    let replay = json!({"subject": {"agent": "coder"}, "action": "tools:call:fx.echo",
        "context": {"arguments": {"message": "forbidden-word"}}});
    let (status, explained) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/policy/explain",
        Some(replay),
    )
    .await;
    assert_eq!(status, 200, "{explained}");
    assert_eq!(
        (
            &explained["decision"],
            &explained["reason"],
            &explained["rule"]
        ),
        (&live["decision"], &live["reason"], &live["data"]["rule"]),
        "{live}"
    );
    assert_eq!(explained["rule"], "no-forbidden-echo");

    // 5. The quota: two calls reach the upstream, the third does not.
    assert!(echo(&mcp, "quota-call-1").await);
    assert!(echo(&mcp, "quota-call-2").await);
    assert!(!echo(&mcp, "quota-call-3").await);
    drop(mcp);

    // 6. A restart after SIGKILL takes the changed configuration and records what changed; the
    // quota holds (each count was durable before the call it admitted).
    let gateway = gateway
        .kill_and_restart(&config(dir.path(), DROPPED), &[], ENVS)
        .await;
    assert_eq!(explain(&gateway, "tools:call:fx.env_var").await.0, "allow");
    let page = gateway.admin_get("/admin/ledger?limit=1000").await;
    let changes: Vec<&Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["kind"] == "policy.immutable_changed")
        .collect();
    assert_eq!(changes.len(), 2, "the first start, then the restart");
    assert_eq!(
        changes[1]["data"]["denies_removed"],
        json!(["tools:call:fx.env_var"])
    );
    assert_eq!(
        changes[1]["data"]["contracts_removed"],
        json!(["freeze-add"])
    );
    wait_for_tools(&gateway).await;
    let mcp = client(&gateway, &token).await;
    assert!(!echo(&mcp, "quota-call-4").await);
    assert_eq!(upstream_saw(dir.path(), "quota-call"), 2);
    let page = gateway.admin_get("/admin/ledger?limit=1000").await;
    let last_echo = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|record| {
            record["kind"] == "policy.decision" && record["data"]["action"] == "tools:call:fx.echo"
        })
        .unwrap();
    assert_eq!(
        last_echo["reason"], "contract_quota_exhausted",
        "{last_echo}"
    );
}
