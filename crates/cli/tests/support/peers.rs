//! Real MCP peers for end-to-end tests: the fixture server, the Python SDK client, the npm servers
//! and the conformance suite (installed into `.tools/` by `scripts/install-test-deps`), and a
//! header-adding forwarder.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;

use super::portcullis;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file installed under `.tools/`; panics with the install command when it is missing.
pub fn installed(relative: &str) -> PathBuf {
    let path = repo_root().join(".tools").join(relative);
    assert!(
        path.exists(),
        "{} is missing; run `bash scripts/install-test-deps`",
        path.display()
    );
    path
}

/// Node 22 (npm package `node@22`).
pub fn node22() -> PathBuf {
    installed("npm/node_modules/node/bin/node")
}

/// The Python with `mcp` 2.x and `openai`.
pub fn mcp2_python() -> PathBuf {
    installed("venv/bin/python")
}

/// `mcp-server-time` (with `mcp<2`).
pub fn mcp_server_time() -> PathBuf {
    installed("venv-mcp1/bin/mcp-server-time")
}

/// `@modelcontextprotocol/server-everything`'s entry point (run with [`node22`]).
pub fn server_everything_js() -> PathBuf {
    installed("npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// `@modelcontextprotocol/conformance`'s entry point (run with [`node22`]).
pub fn conformance_js() -> PathBuf {
    installed("npm/node_modules/@modelcontextprotocol/conformance/dist/index.js")
}

/// The Python SDK client script: lists tools and calls `tool` with `arguments` at `url`.
/// Returns its JSON line (`{"tools":..,"result":..}` or `{"error":..}`).
pub async fn python_client(
    url: &str,
    token: Option<&str>,
    tool: &str,
    arguments: serde_json::Value,
) -> serde_json::Value {
    let mut command = tokio::process::Command::new(mcp2_python());
    command
        .arg(repo_root().join("crates/cli/tests/peers/mcp_client.py"))
        .args([url, tool, &arguments.to_string()])
        .env_remove("MCP_TOKEN")
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("MCP_TOKEN", token);
    }
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "the Python client printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// `portcullis fixture-server --http 127.0.0.1:0 ARGS`, stopped on drop.
pub struct FixtureHttp {
    child: Child,
    pub url: String,
}

impl FixtureHttp {
    pub async fn start(args: &[&str]) -> Self {
        let mut child = portcullis()
            .args(["fixture-server", "--http", "127.0.0.1:0"])
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
        let addr = listening["http"].as_str().unwrap();
        Self {
            child,
            url: format!("http://{addr}/mcp"),
        }
    }
}

impl Drop for FixtureHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A forwarder on loopback that passes every request to `target` (a base URL such as
/// `http://127.0.0.1:8090`) with `Authorization: Bearer <token>` added, streaming the answer back.
/// For clients that cannot send the header themselves (the conformance suite).
pub struct Forwarder {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(target: &str, token: &str) -> Self {
        let state = ForwardState {
            target: target.trim_end_matches('/').to_owned(),
            authorization: format!("Bearer {token}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, task }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct ForwardState {
    target: String,
    authorization: String,
    http: reqwest::Client,
}

async fn forward(State(state): State<ForwardState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap();
    let mut outgoing = state
        .http
        .request(parts.method.clone(), format!("{}{path}", state.target));
    for (name, value) in &parts.headers {
        // Host and Origin pass through unchanged, so the gateway judges what the client sent.
        if name != "content-length" && name != "authorization" && name != "connection" {
            outgoing = outgoing.header(name, value);
        }
    }
    let upstream = outgoing
        .header("authorization", &state.authorization)
        .body(body)
        .send()
        .await;
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(err) => {
            return Response::builder()
                .status(502)
                .body(Body::from(format!("forwarder: {err}")))
                .unwrap();
        }
    };
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(upstream.bytes_stream()))
        .unwrap()
}

/// Runs the conformance suite in server mode against `url` with the expected-failures `baseline`;
/// returns (exit success, combined output).
pub async fn conformance(url: &str, baseline: &Path, results: &Path) -> (bool, String) {
    let output = tokio::process::Command::new(node22())
        .arg(conformance_js())
        .args(["server", "--url", url, "--expected-failures"])
        .arg(baseline)
        .arg("--output-dir")
        .arg(results)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Spawns a command that must run to completion, like `Command::output`, for peer setup steps.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A raw Streamable HTTP MCP session (initialize, then JSON-RPC requests), for byte-level checks.
pub struct RawSession {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    session_id: Option<String>,
}

impl RawSession {
    pub async fn open(url: &str, token: Option<&str>) -> Self {
        let mut session = Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            token: token.map(str::to_owned),
            session_id: None,
        };
        let (status, headers, body) = session
            .post(&serde_json::json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": { "name": "raw", "version": "0" }
                }
            }))
            .await;
        assert_eq!(status, 200, "initialize: {body}");
        session.session_id = headers
            .get("mcp-session-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        session
            .post(&serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        session
    }

    /// Posts one message; returns the status, headers and the raw body.
    pub async fn post(
        &self,
        message: &serde_json::Value,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(message.to_string());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = &self.session_id {
            request = request.header("mcp-session-id", id);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    /// The exact bytes of the JSON-RPC answer to request `id` (the SSE `data:` line, or the body).
    pub async fn request_raw(&self, id: u64, method: &str, params: serde_json::Value) -> String {
        let (status, _, body) = self
            .post(&serde_json::json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        assert_eq!(status, 200, "{method}: {body}");
        let needle = format!("\"id\":{id}");
        body.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(str::trim)
            .find(|data| data.contains(&needle))
            .map_or_else(|| body.trim().to_owned(), str::to_owned)
    }

    pub async fn request(
        &self,
        id: u64,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        serde_json::from_str(&self.request_raw(id, method, params).await).unwrap()
    }
}
