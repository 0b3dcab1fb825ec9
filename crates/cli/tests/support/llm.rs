//! The LLM peers: the project's fake provider (`portcullis fixture-llm`) as a process, and the
//! official `openai` Python client (installed into `.tools/venv` by `scripts/install-test-deps`).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};

use super::peers::{mcp2_python, repo_root};
use super::portcullis;

/// `portcullis fixture-llm --port 0 ARGS`, stopped on drop.
pub struct FixtureLlm {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub origin: String,
}

impl FixtureLlm {
    pub async fn start(args: &[&str]) -> Self {
        let mut child = portcullis()
            .args(["fixture-llm", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let listening: serde_json::Value = serde_json::from_str(&line).unwrap();
        Self {
            child,
            origin: format!("http://{}", listening["http"].as_str().unwrap()),
        }
    }

    /// Every request the provider received: `{"path", "authorization", "body"}`.
    pub async fn records(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("{}/fixture/requests", self.origin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn clear(&self) {
        reqwest::Client::new()
            .delete(format!("{}/fixture/requests", self.origin))
            .send()
            .await
            .unwrap();
    }
}

impl Drop for FixtureLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `crates/cli/tests/peers/openai_client.py BASE_URL MODE` with `request` on stdin and the
/// agent `token` as the API key; returns its JSON line.
pub async fn openai(
    base_url: &str,
    token: &str,
    mode: &str,
    request: &serde_json::Value,
) -> serde_json::Value {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(mcp2_python())
        .arg(repo_root().join("crates/cli/tests/peers/openai_client.py"))
        .args([base_url, mode])
        .env("OPENAI_API_KEY", token)
        .env_remove("OPENAI_BASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(request.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "the openai client printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The gateway's live event stream (`/admin/events`), for waiting on events written after an
/// answer, without polling.
pub struct EventTap {
    events: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    task: tokio::task::JoinHandle<()>,
}

impl EventTap {
    /// Subscribes; events appended from the moment this returns are seen.
    pub async fn open(gateway: &super::Gateway) -> Self {
        use futures::StreamExt as _;
        let response = reqwest::Client::new()
            .get(gateway.url("/admin/events"))
            .bearer_auth(&gateway.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    if let Some(data) = line.trim_end().strip_prefix("data:") {
                        if let Ok(event) = serde_json::from_str(data.trim()) {
                            if tx.send(event).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Self { events, task }
    }

    /// The next `n` events of `kind`.
    pub async fn take(&mut self, kind: &str, n: usize) -> Vec<serde_json::Value> {
        let mut found = Vec::new();
        while found.len() < n {
            let event = self.events.recv().await.expect("the event stream ended");
            if event["kind"] == kind {
                found.push(event);
            }
        }
        found
    }
}

impl Drop for EventTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
