//! End to end: the controls of the one road, through the real binary, on the MCP fronts (tool
//! calls, prompts, resources). Each row configures a refusal at one stage and shows that the
//! action is refused with its stable code and that the upstream never saw it (the fixture's
//! record of every received `tools/call`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;

use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use support::mcp::{call, client, recorded, wait_for_tools};
use support::{Gateway, create_agent};

const SECRET: &str = "road-secret-value-7731";

const CEDAR: &str = r#"@id("no-forbidden-word")
forbid (principal, action == Portcullis::Action::"tools:call", resource)
when { context.arguments.hasTag("message") && context.arguments.getTag("message") == "forbidden-word" };

@id("no-high-risk")
forbid (principal, action == Portcullis::Action::"tools:call", resource)
when { context.risk == "high" };
"#;

fn config(dir: &Path) -> String {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(dir.join("road.cedar"), CEDAR).unwrap();
    format!(
        r#"
[policy]
cedar_files = ["{cedar}"]

[budgets]
budgets = []

[secrets.env]
fx_token = "ROAD_SECRET_FOR_TEST"

[[upstreams]]
name = "fx"
call_timeout = "10s"
[upstreams.stdio]
command = "{bin}"
args = ["fixture-server", "--root", "{root}", "--record", "{record}", "--conformance"]
secrets = {{ FX_TOKEN = "fx_token" }}
[upstreams.pii.arguments]
email = "block"
phone = "synthetic"

[tools]
pin_mode = "open"

[[tools.risk]]
tools = ["fx.add"]
tier = "high"

[[tools.rules]]
name = "no-rm"
prompts = ["fx.test_prompt_with_arguments"]
kind = "deny"
arguments = ["arg1"]
pattern = "rm -rf"
"#,
        cedar = dir.join("road.cedar").display(),
        bin = env!("CARGO_BIN_EXE_portcullis"),
        root = root.display(),
        record = dir.join("record.jsonl").display(),
    )
}

/// The `portcullis/error` code of a refused tool result, or "ok".
fn outcome(result: &rmcp::model::CallToolResult) -> String {
    if result.is_error != Some(true) {
        return "ok".to_owned();
    }
    result
        .meta
        .as_ref()
        .and_then(|meta| meta.get("portcullis/error"))
        .and_then(|error| error["code"].as_str())
        .unwrap_or("error")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mcp_stage_refuses_before_the_upstream_sees_the_action() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(
        &config(dir.path()),
        &[],
        &[
            ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
            ("PORTCULLIS_EGRESS_DNS_BIND", ""),
            ("ROAD_SECRET_FOR_TEST", SECRET),
        ],
    )
    .await;
    wait_for_tools(&gateway).await;
    let full_token = create_agent(&gateway, "full", &["tools:*", "io:*"]).await;
    let full = full_token.clone();
    let echo_only = create_agent(&gateway, "echo-only", &["tools:call:fx.echo", "io:*"]).await;
    let full = client(&gateway, &full).await;
    let echo_only = client(&gateway, &echo_only).await;
    let unknown = full
        .peer()
        .call_tool(call("fx.no_such_tool", json!({})))
        .await
        .unwrap_err()
        .to_string();

    // Gate in, Cedar on a live argument: refused like a missing tool; other values pass.
    let refused = full
        .peer()
        .call_tool(call("fx.echo", json!({"message": "forbidden-word"})))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(refused, unknown);
    let fine = full
        .peer()
        .call_tool(call("fx.echo", json!({"message": "fine-word"})))
        .await
        .unwrap();
    assert_eq!(outcome(&fine), "ok");

    // Gate in, Cedar on the risk tier (`[[tools.risk]]`).
    let risky = full
        .peer()
        .call_tool(call("fx.add", json!({"a": 1, "b": 2})))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(risky, unknown);

    // Sanitize in: `block` refuses, `synthetic` replaces (and the agent gets its value back),
    // secrets never reach a tool.
    let blocked = full
        .peer()
        .call_tool(call(
            "fx.echo",
            json!({"message": "mail kim.lee@example.net"}),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&blocked), "pii_blocked");
    let phoned = full
        .peer()
        .call_tool(call("fx.echo", json!({"message": "call 202-555-0173 now"})))
        .await
        .unwrap();
    assert_eq!(outcome(&phoned), "ok");
    let phoned = serde_json::to_string(&phoned.content).unwrap();
    assert!(phoned.contains("202-555-0173"), "{phoned}");
    let secret = full
        .peer()
        .call_tool(call("fx.echo", json!({"message": format!("key {SECRET}")})))
        .await
        .unwrap();
    assert_eq!(outcome(&secret), "ok");
    // Portcullis's own tokens are secrets too: an agent or admin token never reaches a tool.
    for token in [&full_token, &gateway.admin_token] {
        let pasted = full
            .peer()
            .call_tool(call(
                "fx.echo",
                json!({"message": format!("token {token}")}),
            ))
            .await
            .unwrap();
        assert_eq!(outcome(&pasted), "ok");
    }

    let record = recorded(dir.path());
    assert!(record.contains("fine-word"), "{record}");
    for unseen in [
        "forbidden-word",
        "\"add\"",
        "kim.lee@example.net",
        "202-555-0173",
        SECRET,
        full_token.as_str(),
        gateway.admin_token.as_str(),
    ] {
        assert!(
            !record.contains(unseen),
            "{unseen} reached the upstream: {record}"
        );
    }

    // Explain answers what the live gate answered, for the same request.
    let explain = |message: &str| {
        let body = json!({
            "subject": {"agent": "full"},
            "action": "tools:call:fx.echo",
            "resource": "fx.echo",
            "context": {"arguments": {"message": message}},
        });
        let http = reqwest::Client::new();
        let request = http
            .post(gateway.url("/admin/policy/explain"))
            .bearer_auth(&gateway.admin_token)
            .json(&body)
            .send();
        async move { request.await.unwrap().json::<Value>().await.unwrap() }
    };
    let denied = explain("forbidden-word").await;
    assert_eq!(denied["decision"], "deny", "{denied}");
    assert_eq!(denied["layer"], "cedar", "{denied}");
    assert_eq!(explain("fine-word").await["decision"], "allow");

    // Validate, prompts: the argument rules apply to prompt arguments.
    let prompt = |arg1: &'static str| {
        let peer = full.peer().clone();
        async move {
            let mut params = GetPromptRequestParams::new("fx.test_prompt_with_arguments");
            params.arguments = json!({"arg1": arg1, "arg2": "b"}).as_object().cloned();
            peer.get_prompt(params).await
        }
    };
    let refused = prompt("rm -rf /").await.unwrap_err().to_string();
    assert!(refused.contains("no-rm"), "{refused}");
    assert!(prompt("ls").await.is_ok());

    // Prompts and resources are actions of their own: an agent allowed one tool reads none.
    assert!(
        echo_only
            .peer()
            .list_all_prompts()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        echo_only
            .peer()
            .list_all_resources()
            .await
            .unwrap()
            .is_empty()
    );
    let read = |client: &RunningService<RoleClient, ()>, uri: &'static str| {
        let peer = client.peer().clone();
        async move {
            peer.read_resource(ReadResourceRequestParams::new(uri))
                .await
                .map_err(|err| err.to_string())
        }
    };
    let not_found = read(&full, "test://no-such-resource").await.unwrap_err();
    assert_eq!(
        read(&echo_only, "test://static-text").await.unwrap_err(),
        not_found
    );
    assert!(read(&full, "test://static-text").await.is_ok());
    // Routed by the upstream's template; a URI that no upstream offers is refused.
    assert!(read(&full, "test://template/7/data").await.is_ok());
    assert_eq!(
        read(&full, "file:///etc/passwd").await.unwrap_err(),
        not_found
    );

    // Every refusal is on record with its stage's reason.
    let ledger = gateway.admin_get("/admin/ledger?limit=1000").await;
    let records = ledger["records"].as_array().unwrap();
    let reasons: Vec<(&str, &str, &str)> = records
        .iter()
        .filter_map(|r| {
            Some((
                r["kind"].as_str()?,
                r["decision"].as_str()?,
                r["reason"].as_str()?,
            ))
        })
        .collect();
    for expected in [
        ("tool.call", "deny", "policy_denied"),
        ("tool.call", "deny", "pii_blocked"),
        ("prompt.get", "deny", "argument_denied"),
        ("resource.read", "deny", "policy_denied"),
        ("resource.read", "deny", "resource_unknown"),
    ] {
        assert!(
            reasons.contains(&expected),
            "{expected:?} not in {reasons:?}"
        );
    }
    let cedar_deny = records.iter().any(|r| {
        r["kind"] == "policy.decision" && r["decision"] == "deny" && r["data"]["layer"] == "cedar"
    });
    assert!(cedar_deny);
}
