//! End to end: text an upstream sends never reaches the gateway's logs unredacted (issue 17
//! item 13). The fixture announces its injected secret as its `serverInfo` name and as its
//! `instructions`, which the MCP SDK logs at INFO; the gateway runs at every level an operator
//! gets without naming the SDK, and its whole stdout and stderr are searched for the secret.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use rmcp::ServiceExt as _;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use support::mcp::call;
use support::portcullis;

/// The secret injected into the upstream, which it then announces.
const SECRET: &str = "fx-upstream-secret-4f1d9a7c";
/// A bound against hanging on a broken build, never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

fn config() -> String {
    format!(
        r#"
[secrets.env]
fx_token = "FX_SECRET_FOR_TEST"

[[upstreams]]
name = "fx"
[upstreams.stdio]
command = "{bin}"
args = ["fixture-server", "--server-name", "fx {SECRET}", "--instructions", "Call me with {SECRET}."]
secrets = {{ FX_TOKEN = "fx_token" }}

[tools]
pin_mode = "open"

# The test polls the admin API while it waits.
[admin]
rate_limit = "6000/60"
"#,
        bin = env!("CARGO_BIN_EXE_portcullis"),
    )
}

/// A gateway whose stdout and stderr both go to files, so everything it prints can be read.
struct Logged {
    child: Child,
    dir: tempfile::TempDir,
    http: String,
    admin_token: String,
}

impl Logged {
    async fn start(envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config()).unwrap();
        let data = dir.path().join("data");
        let child = portcullis()
            .args(["serve", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data)
            .env("PORTCULLIS_SERVER_BIND", "127.0.0.1:0")
            .env("PORTCULLIS_EGRESS_PROXY_BIND", "")
            .env("PORTCULLIS_EGRESS_DNS_BIND", "")
            .env("FX_SECRET_FOR_TEST", SECRET)
            .envs(envs.iter().copied())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let listening: serde_json::Value = wait_for(|| async {
            let text = std::fs::read_to_string(data.join("listening.json")).ok()?;
            serde_json::from_str(&text).ok()
        })
        .await;
        let admin_token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            child,
            dir,
            http: listening["http"].as_str().unwrap().to_owned(),
            admin_token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits until the upstream is connected and listed (so its handshake was logged, if at all).
    async fn wait_for_tools(&self) {
        let client = reqwest::Client::new();
        wait_for(|| async {
            let tools: serde_json::Value = client
                .get(self.url("/admin/tools"))
                .bearer_auth(&self.admin_token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            tools["tools"]
                .as_array()
                .is_some_and(|tools| !tools.is_empty())
                .then_some(())
        })
        .await;
    }

    /// An agent session: lists tools and calls one, so the request paths log what they log.
    async fn use_mcp(&self) {
        let created: serde_json::Value = reqwest::Client::new()
            .post(self.url("/admin/agents"))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({"id": "alice", "allow": ["tools:*", "io:*"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url("/mcp"));
        config.auth_header = Some(created["token"].as_str().unwrap().to_owned());
        let client = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
        let tools = client.peer().list_all_tools().await.unwrap();
        assert!(tools.iter().any(|tool| tool.name == "fx.echo"));
        let echoed = client
            .peer()
            .call_tool(call("fx.echo", serde_json::json!({"message": "hello"})))
            .await
            .unwrap();
        assert_ne!(echoed.is_error, Some(true));
        client.cancel().await.unwrap();
    }

    /// Stops the gateway (SIGTERM, so it flushes) and answers its stdout and stderr.
    fn stop(mut self) -> (String, String) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success());
        (
            std::fs::read_to_string(self.file("stdout.log")).unwrap(),
            std::fs::read_to_string(self.file("stderr.log")).unwrap(),
        )
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` until it answers, within [`DEADLINE`].
async fn wait_for<T, F, Fut>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let polled = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    polled.expect("the gateway never got there")
}

/// One run of the gateway with `envs`: its stdout and stderr after an upstream handshake and an
/// agent's session.
async fn run(envs: &[(&str, &str)]) -> (String, String) {
    let gateway = Logged::start(envs).await;
    gateway.wait_for_tools().await;
    gateway.use_mcp().await;
    gateway.stop()
}

/// 17.13: the default level, `PORTCULLIS_DEBUG=1` (the most verbose default) and a configured
/// `debug` level, each with `RUST_LOG` set as an operator might: the upstream's secret is nowhere
/// in the gateway's output, though the SDK does log its `serverInfo` and `instructions` when an
/// operator names it (the last run shows that the search would see a leak).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_secret_in_server_info_and_instructions_is_never_logged() {
    for envs in [
        &[("PORTCULLIS_LOG", ""), ("RUST_LOG", "info")][..],
        &[
            ("PORTCULLIS_LOG", ""),
            ("PORTCULLIS_DEBUG", "1"),
            ("RUST_LOG", "info"),
        ][..],
        &[
            ("PORTCULLIS_LOG", ""),
            ("PORTCULLIS_OBSERVABILITY_LOG_LEVEL", "debug"),
            ("RUST_LOG", "debug"),
        ][..],
    ] {
        let (stdout, stderr) = run(envs).await;
        assert!(
            stderr.contains("upstream connected"),
            "the run logged at INFO at least ({envs:?}):\n{stderr}"
        );
        for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            assert!(
                !text.contains(SECRET),
                "the upstream's secret is in the gateway's {name} ({envs:?}):\n{text}"
            );
        }
    }

    // Naming the SDK in the filter is the operator's explicit choice: its lines come back, with
    // what the upstream announced, and the gateway says so at start.
    let (_, stderr) = run(&[("PORTCULLIS_LOG", "info,rmcp=info")]).await;
    assert!(
        stderr.contains("the log filter names `rmcp`"),
        "the gateway warns when the filter names the SDK:\n{stderr}"
    );
    assert!(
        stderr.contains(SECRET),
        "with rmcp named, the SDK logs the upstream's serverInfo (else this test sees nothing):\n{stderr}"
    );
}
