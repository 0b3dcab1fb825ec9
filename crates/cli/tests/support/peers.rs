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
