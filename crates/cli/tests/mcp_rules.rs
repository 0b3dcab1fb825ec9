//! End to end: argument rules through the real binary, the fixture server as the upstream.
//!
//! One gateway for the whole file: the fixture runs with its working directory and its root at
//! `/`, tools and prompts exposed by their bare names (`prefix = "never"`), and rules written for
//! `fx.<name>`, so a rule keyed by the exposed name would miss every call. Rows cover tool
//! arguments (path, URL, deny), prompt arguments and resource URIs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;

use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::json;
use support::mcp::{call, client, text_of, wait_for_tools};
use support::{Gateway, create_agent};

fn config(dir: &Path) -> String {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("notes.txt"), "notes inside the root").unwrap();
    format!(
        r#"
[[upstreams]]
name = "fx"
call_timeout = "10s"
[upstreams.stdio]
command = "{bin}"
args = ["fixture-server", "--root", "/", "--record", "{record}", "--conformance"]
cwd = "/"

[tools]
prefix = "never"
pin_mode = "open"

[[tools.rules]]
name = "files-root"
tools = ["fx.read_file"]
kind = "path"
arguments = ["path"]
roots = ["{root}"]

[[tools.rules]]
name = "no-rm"
tools = ["fx.*"]
prompts = ["fx.*"]
kind = "deny"
pattern = "rm\\s+-rf"

[[tools.rules]]
name = "no-watched"
resources = ["fx"]
kind = "deny"
pattern = "watched"

[[tools.rules]]
name = "web"
tools = ["fx.open_url"]
kind = "url"
arguments = ["url"]
allow_hosts = ["example.com"]

[[tools.rules]]
name = "ghost-rule"
tools = ["ghost.*"]
kind = "deny"
pattern = "x"
"#,
        bin = env!("CARGO_BIN_EXE_portcullis"),
        root = root.display(),
        record = dir.join("record.jsonl").display(),
    )
}

/// What the upstream received, one `{"name", "arguments"}` per call.
fn recorded(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("record.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_rules_hold_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(&config(dir.path())).await;
    wait_for_tools(&gateway).await;
    let token = create_agent(
        &gateway,
        "alice",
        &[
            "tools:call:fx.*",
            "tools:prompt:fx.*",
            "tools:resource:fx",
            "io:*",
        ],
    )
    .await;
    let alice = client(&gateway, &token).await;
    let root = dir.path().join("root");
    let under = |rest: &str| root.join(rest).display().to_string();

    // 16.7: a rule that names no upstream is a start-up warning.
    assert!(
        gateway.stderr_log().contains("`ghost-rule`"),
        "{}",
        gateway.stderr_log()
    );

    // Refused rows: (tool, arguments, rule). The upstream never sees them.
    let refused = [
        // 17.17: a zero-width space, a no-break space, full-width letters.
        ("echo", json!({"message": "r\u{200b}m -rf /"}), "no-rm"),
        ("echo", json!({"message": "rm\u{00a0}-rf /"}), "no-rm"),
        ("echo", json!({"message": "ｒｍ -rf /"}), "no-rm"),
        // 16.7: an entry without a port admits 80 and 443 only.
        (
            "open_url",
            json!({"url": "https://example.com:8443/"}),
            "web",
        ),
        ("open_url", json!({"url": "http://example.com:22/"}), "web"),
        // The path rule holds for the bare exposed name (`prefix = "never"`).
        ("read_file", json!({"path": "/etc/passwd"}), "files-root"),
        (
            "read_file",
            json!({"path": "../../etc/passwd"}),
            "files-root",
        ),
    ];
    for (tool, args, rule) in refused {
        let result = alice
            .peer()
            .call_tool(call(tool, args.clone()))
            .await
            .unwrap();
        assert_eq!(result.is_error, Some(true), "{tool} {args}");
        let text = text_of(&result);
        assert!(text.contains(&format!("`{rule}`")), "{tool} {args}: {text}");
    }
    assert!(
        recorded(dir.path()).is_empty(),
        "{:?}",
        recorded(dir.path())
    );

    // 17.1: a relative path is forwarded as the absolute path that was checked, so an upstream
    // working in `/` cannot read `/etc/passwd` through `etc/passwd`.
    let escaped = alice
        .peer()
        .call_tool(call("read_file", json!({"path": "etc/passwd"})))
        .await
        .unwrap();
    assert!(
        !text_of(&escaped).contains("root:"),
        "{}",
        text_of(&escaped)
    );
    let notes = alice
        .peer()
        .call_tool(call("read_file", json!({"path": "./notes.txt"})))
        .await
        .unwrap();
    assert!(
        text_of(&notes).contains("notes inside the root"),
        "{}",
        text_of(&notes)
    );
    let allowed = alice
        .peer()
        .call_tool(call("open_url", json!({"url": "https://example.com/a"})))
        .await
        .unwrap();
    assert_ne!(allowed.is_error, Some(true), "{}", text_of(&allowed));

    let record = recorded(dir.path());
    let paths: Vec<&serde_json::Value> = record
        .iter()
        .filter(|call| call["name"] == "read_file")
        .map(|call| &call["arguments"]["path"])
        .collect();
    assert_eq!(
        paths,
        vec![&json!(under("etc/passwd")), &json!(under("notes.txt"))]
    );
    assert_eq!(record.len(), 3, "{record:?}");

    // 16.5: prompt arguments cross the same rules (keyed `fx.<prompt>`), and resource URIs the
    // rules that name the upstream's resources.
    let prompt = |arg1: &str| {
        let mut params = GetPromptRequestParams::new("test_prompt_with_arguments");
        params.arguments = json!({"arg1": arg1, "arg2": "x"}).as_object().cloned();
        params
    };
    let refused = alice
        .peer()
        .get_prompt(prompt("r\u{200b}m -rf /"))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("`no-rm`"), "{refused}");
    let got = alice.peer().get_prompt(prompt("ls")).await.unwrap();
    assert!(!got.messages.is_empty());
    let refused = alice
        .peer()
        .read_resource(ReadResourceRequestParams::new("test://watched-resource"))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("`no-watched`"), "{refused}");
    let read = alice
        .peer()
        .read_resource(ReadResourceRequestParams::new("test://static-text"))
        .await
        .unwrap();
    assert!(!read.contents.is_empty());
}
