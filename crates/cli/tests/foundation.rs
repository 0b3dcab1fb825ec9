//! End-to-end tests of the Foundation: the real `portcullis` binary on loopback port 0.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::Command;

use support::{Gateway, portcullis};

#[tokio::test]
async fn health_admin_auth_and_refusals_are_events() {
    let gateway = Gateway::start("").await;
    let client = reqwest::Client::new();

    let health = client.get(gateway.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(
        client
            .get(gateway.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let echoed = client
        .get(gateway.url("/healthz"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");

    let anonymous = client
        .get(gateway.url("/admin/ledger"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"].is_string());

    let wrong = client
        .get(gateway.url("/admin/ledger"))
        .bearer_auth("pcl_admin_not-the-token")
        .header("x-request-id", "wrong-token-attempt")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let via_header = client
        .get(gateway.url("/admin/ledger"))
        .header("x-portcullis-admin", &gateway.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(via_header.status(), 200);

    let page = gateway.admin_get("/admin/ledger?after=0&limit=1000").await;
    let records = page["records"].as_array().unwrap();
    assert_eq!(page["next_after"], serde_json::Value::Null);
    assert_eq!(records[0]["kind"], "gateway.started");
    let attempt = records
        .iter()
        .find(|r| r["correlation_id"] == "wrong-token-attempt")
        .expect("the wrong-token attempt is in the ledger");
    assert_eq!(attempt["kind"], "admin.auth");
    assert_eq!(attempt["decision"], "deny");
    assert_eq!(attempt["reason"], "unauthorized");
    let text = serde_json::to_string(&page).unwrap();
    assert!(
        !text.contains("pcl_admin_not-the-token"),
        "a presented token reached the ledger"
    );

    // Paging: next_after is set when the page is full.
    let first = gateway.admin_get("/admin/ledger?after=0&limit=1").await;
    assert_eq!(first["next_after"], 1);
    for bad in [
        "/admin/ledger?limit=0",
        "/admin/ledger?limit=5000",
        "/admin/ledger?after=x",
    ] {
        let response = client
            .get(gateway.url(bad))
            .bearer_auth(&gateway.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
    }

    let missing = client.get(gateway.url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn sixty_first_admin_request_is_rate_limited() {
    let gateway = Gateway::start("[admin]\nrate_limit = \"60/60\"\n").await;
    let client = reqwest::Client::new();
    for n in 1..=60 {
        let response = client
            .get(gateway.url("/admin/agents"))
            .bearer_auth(&gateway.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "request {n}");
    }
    let limited = client
        .get(gateway.url("/admin/agents"))
        .bearer_auth(&gateway.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}

#[test]
fn non_loopback_bind_without_admin_token_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let output = portcullis()
        .args(["serve", "--data-dir"])
        .arg(data.path())
        .env("PORTCULLIS_SERVER_BIND", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("non-loopback") && lines[0].contains("admin token"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing may listen");
}

#[tokio::test]
async fn cli_created_agent_authenticates_and_revoked_agent_does_not() {
    let gateway = Gateway::start("").await;
    let client = reqwest::Client::new();
    let create = |id: &str, extra: &[&str]| {
        let mut command = gateway.cli();
        command
            .args(["agent", "token", "create", id, "--allow", "tools:call:*"])
            .args(extra);
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let token = create("coder", &[]);
    assert!(token.starts_with("pcl_agent_"));

    let whoami = client
        .get(gateway.url("/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    let body: serde_json::Value = whoami.json().await.unwrap();
    assert_eq!(body["agent"], "coder");

    let asserted = client
        .get(gateway.url("/whoami"))
        .bearer_auth(&token)
        .header("x-portcullis-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(asserted.status(), 400);
    let body: serde_json::Value = asserted.json().await.unwrap();
    assert_eq!(body["error"]["code"], "identity_header_refused");

    let bridge = create("bridge", &["--may-assert-identity"]);
    let on_behalf = client
        .get(gateway.url("/whoami"))
        .bearer_auth(&bridge)
        .header("x-portcullis-user", "alice")
        .header("x-portcullis-room", "!ops:example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(on_behalf.status(), 200);
    let body: serde_json::Value = on_behalf.json().await.unwrap();
    assert_eq!(body["user"], "alice");
    assert_eq!(body["room"], "!ops:example.org");

    // The same id twice is a conflict; the CLI says so and exits non-zero.
    let duplicate = gateway
        .cli()
        .args(["agent", "token", "create", "coder"])
        .output()
        .unwrap();
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("conflict"));

    let revoke = gateway
        .cli()
        .args(["agent", "token", "revoke", "coder"])
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let revoked = client
        .get(gateway.url("/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    assert_eq!(revoked.headers()["www-authenticate"], "Bearer");

    let no_token = client.get(gateway.url("/whoami")).send().await.unwrap();
    assert_eq!(no_token.status(), 401);

    // No token ever reaches the ledger.
    let page = gateway
        .admin_get("/admin/ledger?limit=1000")
        .await
        .to_string();
    assert!(!page.contains(&token) && !page.contains(&bridge));
}

#[test]
fn agent_cli_without_a_gateway_fails_clearly() {
    let data = tempfile::tempdir().unwrap();
    let output = portcullis()
        .args([
            "agent",
            "token",
            "create",
            "x",
            "--server",
            "http://127.0.0.1:9",
            "--data-dir",
        ])
        .arg(data.path())
        .env("PORTCULLIS_ADMIN_TOKEN", "x".repeat(40))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no gateway answered"));
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let gateway = Gateway::start("").await;
    let client = reqwest::Client::new();
    // Generate a few labelled series first.
    let _ = client
        .get(gateway.url("/admin/ledger"))
        .send()
        .await
        .unwrap();
    let _ = client.get(gateway.url("/whoami")).send().await.unwrap();
    let response = client.get(gateway.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("portcullis_decisions_total{"), "{text}");
    assert!(text.contains("portcullis_http_requests_total{"), "{text}");

    let promtool = support::promtool();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool refused /metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_ledger_verifies_until_tampered() {
    let mut gateway = Gateway::start("[ledger]\ncheckpoint_every = 3\n").await;
    let client = reqwest::Client::new();
    for _ in 0..8 {
        let _ = client.get(gateway.url("/whoami")).send().await.unwrap();
    }
    let status = gateway.terminate();
    assert!(status.success(), "graceful stop exits 0, got {status:?}");

    let verify = |dir: &std::path::Path| {
        portcullis()
            .args(["ledger", "verify", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let ok = verify(&gateway.data_dir());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let summary = String::from_utf8_lossy(&ok.stdout).to_string();
    assert!(summary.contains("ledger ok"), "{summary}");

    // The last record is the stop event: the ledger was flushed at shutdown.
    let db = gateway.data_dir().join("portcullis.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let last: Vec<u8> = conn
            .query_row(
                "SELECT body FROM ledger ORDER BY seq DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(String::from_utf8_lossy(&last).contains("gateway.stopped"));
    }

    // Editing one record is detected and named.
    let edited = tempfile::tempdir().unwrap();
    support::copy_dir(&gateway.data_dir(), edited.path());
    {
        let conn = rusqlite::Connection::open(edited.path().join("portcullis.db")).unwrap();
        support::drop_ledger_triggers(&conn);
        conn.execute(
            "UPDATE ledger SET body = CAST(REPLACE(CAST(body AS TEXT), 'agent.auth', 'agent.oops') AS BLOB) WHERE seq = 3",
            [],
        )
        .unwrap();
    }
    let bad = verify(edited.path());
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(
        stderr.contains("seq 3") || stderr.contains("record 3"),
        "{stderr}"
    );

    // Deleting the tail is detected against the last signed checkpoint.
    let truncated = tempfile::tempdir().unwrap();
    support::copy_dir(&gateway.data_dir(), truncated.path());
    {
        let conn = rusqlite::Connection::open(truncated.path().join("portcullis.db")).unwrap();
        support::drop_ledger_triggers(&conn);
        conn.execute("DELETE FROM ledger WHERE seq > 5", [])
            .unwrap();
    }
    let cut = verify(truncated.path());
    assert!(
        !cut.status.success(),
        "a truncated tail must fail verification"
    );
}

#[test]
fn config_commands() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nbind = \"127.0.0.1:8090\"\nmax_body_bytes = \"big\"\n",
    )
    .unwrap();
    let output = portcullis()
        .args(["config", "check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("server.max_body_bytes"),
        "{stderr}"
    );

    let example = portcullis().args(["config", "example"]).output().unwrap();
    assert!(example.status.success());
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &example.stdout).unwrap();
    let output = portcullis()
        .args(["config", "check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let schema = portcullis().args(["config", "schema"]).output().unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert!(schema["properties"]["server"].is_object());
}

#[test]
fn doctor_reports_every_item() {
    let data = tempfile::tempdir().unwrap();
    let output = portcullis()
        .args(["doctor", "--json", "--data-dir"])
        .arg(data.path().join("fresh"))
        .env("PORTCULLIS_DEBUG", "1")
        .output()
        .unwrap();
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    for id in [
        "debug_off",
        "admin_token",
        "admin_rate_limit",
        "policy",
        "bind",
        "data_dir_permissions",
        "not_root",
    ] {
        assert!(ids.contains(&id), "missing {id}");
    }
    let debug = checks.iter().find(|c| c["id"] == "debug_off").unwrap();
    assert_eq!(debug["status"], "fail");
    assert!(!output.status.success(), "a failed item exits non-zero");
}
