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
