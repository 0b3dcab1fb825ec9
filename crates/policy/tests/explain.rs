//! The public API as the gateway and `portcullis policy eval` use it: config TOML and Cedar text
//! in, request JSON in, explanation JSON out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use portcullis_core::{GatePattern, Request};
use portcullis_policy::{Contract, PolicyConfig, PolicyEngine, PolicyState, catalog};

#[derive(serde::Deserialize)]
struct GatewayConfig {
    policy: PolicyConfig,
    #[serde(default)]
    contracts: Vec<Contract>,
}

const CONFIG: &str = r#"
[policy]
deny = ["net:host:169.254.169.254"]
cedar_files = ["policies/base.cedar"]

[[contracts]]
id = "freeze-github"
patterns = ["tools:call:github.*"]
subject = { roles = ["intern"] }
valid_from = "2026-01-01T00:00:00Z"
valid_to = "2026-02-01T00:00:00Z"
immutable = true
"#;

const CEDAR: &str = r#"
@id("bridge-models")
permit (principal == Portcullis::Agent::"bridge", action == Portcullis::Action::"llm:model", resource);
@id("overflow")
forbid (principal, action == Portcullis::Action::"io:ingress", resource)
when { context.risk_level * 4611686018427387904 > 0 };
"#;

fn engine() -> PolicyEngine {
    let config: GatewayConfig = toml::from_str(CONFIG).unwrap();
    let sources = [("policies/base.cedar".to_owned(), CEDAR.to_owned())];
    PolicyEngine::build(&config.policy, &config.contracts, &sources).unwrap()
}

#[track_caller]
fn check(request_json: &str, allow: &[&str], at: &str, expected: &str) {
    let request: Request = serde_json::from_str(request_json).unwrap();
    let allow: Vec<GatePattern> = allow
        .iter()
        .map(|p| GatePattern::parse(p).unwrap())
        .collect();
    for pattern in &allow {
        catalog::check_pattern(pattern).unwrap();
    }
    let answer = engine().decide(
        &request,
        &allow,
        at.parse().unwrap(),
        &PolicyState::in_memory(),
    );
    assert_eq!(
        serde_json::to_string(&answer).unwrap(),
        expected,
        "{request_json}"
    );
}

#[test]
fn explains_requests() {
    let at = "2026-01-15T10:00:00Z";
    check(
        r#"{"subject":{"agent":"intern-bot","roles":["intern"]},"action":"tools:call:github.create_issue"}"#,
        &["tools:*"],
        at,
        r#"{"decision":"deny","layer":"contract","rule":"freeze-github","reason":"contract_denied"}"#,
    );
    check(
        r#"{"subject":{"agent":"intern-bot","roles":["intern"]},"action":"tools:call:github.create_issue"}"#,
        &["tools:*"],
        "2026-02-01T00:00:00Z",
        r#"{"decision":"allow","layer":"allowlist","rule":"tools:*","reason":"allowlist_allowed"}"#,
    );
    check(
        r#"{"subject":{"agent":"bridge"},"action":"llm:model:gpt-4o-mini"}"#,
        &[],
        at,
        r#"{"decision":"allow","layer":"cedar","rule":"bridge-models","reason":"cedar_permitted"}"#,
    );
    check(
        r#"{"subject":{"agent":"bridge"},"action":"net:host:169.254.169.254"}"#,
        &["*"],
        at,
        r#"{"decision":"deny","layer":"immutable","rule":"net:host:169.254.169.254","reason":"immutable_denied"}"#,
    );
    // A Cedar policy that fails at run time denies, even with an allowlist match.
    check(
        r#"{"subject":{"agent":"bridge"},"action":"io:ingress:chat","context":{"risk":"high"}}"#,
        &["io:*"],
        at,
        r#"{"decision":"deny","layer":"cedar","rule":"overflow","reason":"policy_error"}"#,
    );
    check(
        r#"{"subject":{"agent":"bridge"},"action":"io:ingress:chat","context":{"risk":"low"}}"#,
        &["io:*"],
        at,
        r#"{"decision":"allow","layer":"allowlist","rule":"io:*","reason":"allowlist_allowed"}"#,
    );
}

#[test]
fn engine_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PolicyEngine>();
    assert_send_sync::<PolicyState>();
    let engine = Arc::new(engine());
    let request: Request =
        serde_json::from_str(r#"{"subject":{"agent":"bridge"},"action":"llm:model:m"}"#).unwrap();
    let state = PolicyState::in_memory();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let answer = engine.decide(
                    &request,
                    &[],
                    "2026-01-15T10:00:00Z".parse().unwrap(),
                    &state,
                );
                assert!(answer.is_allow());
            });
        }
    });
}

/// Every module file opens with a `//!` line (STYLE.md).
#[test]
fn every_module_file_has_a_summary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.join("src"), root.join("tests"), root.join("benches")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text.starts_with("//! "),
                    "{} lacks a `//!` summary",
                    path.display()
                );
            }
        }
    }
}
