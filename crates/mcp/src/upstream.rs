//! Upstream MCP servers: one supervisor task per upstream connects (spawns a stdio child with a
//! clean environment, or opens a Streamable HTTP session), restarts it with exponential backoff
//! after a crash or a hang, and hands out its peer for calls under a concurrency limit and a
//! timeout. A down upstream fails calls at once; nothing waits on another upstream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, GetPromptRequestParams, GetPromptResult, JsonObject,
    ReadResourceRequestParams, ReadResourceResult,
};
use rmcp::service::{Peer, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ServiceError, ServiceExt as _};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::{Notify, Semaphore, watch};

use crate::redact::Redactor;

/// Longest stderr line of a stdio upstream that reaches the log (longer lines are cut).
const MAX_LOG_LINE: usize = 2048;

/// How to reach one upstream, with its limits. Built by the gateway from configuration, with
/// secrets already resolved.
#[derive(Clone, Debug)]
pub struct UpstreamSpec {
    pub name: String,
    /// The version the operator pinned (informational; shown in the catalog).
    pub version: Option<String>,
    pub transport: TransportSpec,
    /// Longest a tool call (or list) may take before it fails with `upstream_timeout`.
    pub call_timeout: Duration,
    /// Longest a connection (spawn plus handshake) may take.
    pub connect_timeout: Duration,
    /// Calls in flight at once; further calls wait for a slot within their timeout.
    pub max_concurrent: usize,
    pub backoff: Backoff,
}

/// The transport of an upstream.
#[derive(Clone)]
pub enum TransportSpec {
    /// A child process speaking MCP on stdin/stdout. `env` is the child's whole environment.
    Stdio {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<PathBuf>,
    },
    /// A Streamable HTTP server. `headers` are sent on every request (secrets injected).
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
}

impl std::fmt::Debug for TransportSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // INVARIANT (no-secret-debug): environment and header values may be secrets; only names.
        match self {
            TransportSpec::Stdio {
                command, args, env, ..
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", &args.len())
                .field("env", &env.iter().map(|(k, _)| k).collect::<Vec<_>>())
                .finish(),
            TransportSpec::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", url)
                .field(
                    "headers",
                    &headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// Exponential backoff between reconnection attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before attempt `failures + 1`: `initial * 2^failures`, capped at `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

/// The state of an upstream as the supervisor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamStatus {
    /// Not connected yet (first attempt running).
    Starting,
    /// Connected; `generation` counts successful connections since start.
    Up { generation: u64 },
    /// Not connected; the next attempt follows after the backoff.
    Down {
        consecutive_failures: u32,
        reason: &'static str,
    },
    /// Stopped for good (gateway shutdown).
    Stopped,
}

/// Why a call to an upstream failed. The gateway maps these to `upstream_failed` and
/// `upstream_timeout`; the details go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{0}` is not connected")]
    Down(String),
    #[error("upstream `{0}` did not answer in time")]
    Timeout(String),
    #[error("upstream `{upstream}` failed: {source}")]
    Failed {
        upstream: String,
        source: ServiceError,
    },
}

impl UpstreamError {
    /// The stable reason code (listed in [`crate::REASONS`]).
    pub const fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Down(_) => "upstream_down",
            UpstreamError::Timeout(_) => "upstream_timeout",
            UpstreamError::Failed { .. } => "upstream_error",
        }
    }

    pub const fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::Timeout(_))
    }
}

/// One supervised upstream. Cheap to share (`Arc`).
pub struct Upstream {
    spec: UpstreamSpec,
    live: RwLock<Option<Peer<RoleClient>>>,
    permits: Semaphore,
    /// Asks the supervisor to drop the connection and reconnect (after a hang).
    restart: Notify,
    status: watch::Sender<UpstreamStatus>,
    stop: watch::Sender<bool>,
    log_redactor: Option<Arc<Redactor>>,
    /// Counts the upstream's `notifications/tools/list_changed` (and prompts, resources).
    listener: Listener,
}

/// The client side of an upstream connection: hears the upstream say its lists changed, so the
/// gateway re-lists at once rather than serve a changed (possibly rug-pulled) definition from
/// its last listing.
#[derive(Clone, Debug)]
struct Listener {
    changed: Arc<watch::Sender<u64>>,
}

impl Listener {
    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl rmcp::ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.bump();
    }

    async fn on_prompt_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.bump();
    }

    async fn on_resource_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.bump();
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("spec", &self.spec)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

type Connection = (
    RunningService<RoleClient, Listener>,
    Option<tokio::process::Child>,
);

impl Upstream {
    /// Starts the supervisor of `spec` on the current tokio runtime. Stderr lines of stdio
    /// children are logged after `log_redactor`.
    pub fn start(spec: UpstreamSpec, log_redactor: Option<Arc<Redactor>>) -> Arc<Self> {
        let permits = Semaphore::new(spec.max_concurrent.max(1));
        let upstream = Arc::new(Self {
            spec,
            live: RwLock::new(None),
            permits,
            restart: Notify::new(),
            status: watch::Sender::new(UpstreamStatus::Starting),
            stop: watch::Sender::new(false),
            log_redactor,
            listener: Listener {
                changed: Arc::new(watch::Sender::new(0)),
            },
        });
        tokio::spawn(Arc::clone(&upstream).supervise());
        upstream
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &UpstreamSpec {
        &self.spec
    }

    pub fn status(&self) -> UpstreamStatus {
        self.status.borrow().clone()
    }

    /// Waits until the upstream is up with a generation above `after` (tests and start-up).
    pub async fn wait_up(&self, after: u64) -> u64 {
        let mut rx = self.status.subscribe();
        loop {
            if let UpstreamStatus::Up { generation } = *rx.borrow_and_update() {
                if generation > after {
                    return generation;
                }
            }
            if rx.changed().await.is_err() {
                return 0;
            }
        }
    }

    /// A receiver of status changes.
    /// A receiver that changes each time the upstream says its tools, prompts or resources
    /// changed (`notifications/*/list_changed`).
    pub fn watch_lists(&self) -> watch::Receiver<u64> {
        self.listener.changed.subscribe()
    }

    pub fn watch_status(&self) -> watch::Receiver<UpstreamStatus> {
        self.status.subscribe()
    }

    /// Stops the supervisor and drops the connection (a stdio child is killed).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Every tool the upstream lists now, as raw JSON objects.
    pub async fn list_tools(&self) -> Result<Vec<serde_json::Value>, UpstreamError> {
        let tools = self
            .with_peer(|peer| async move { peer.list_all_tools().await })
            .await?;
        Ok(tools
            .into_iter()
            .filter_map(|tool| serde_json::to_value(tool).ok())
            .collect())
    }

    /// Every prompt the upstream lists now, as raw JSON objects (empty when it has none).
    pub async fn list_prompts(&self) -> Result<Vec<serde_json::Value>, UpstreamError> {
        if !self.offers(|caps| caps.prompts.is_some()) {
            return Ok(Vec::new());
        }
        let prompts = self
            .with_peer(|peer| async move { peer.list_all_prompts().await })
            .await?;
        Ok(prompts
            .into_iter()
            .filter_map(|prompt| serde_json::to_value(prompt).ok())
            .collect())
    }

    /// Every resource the upstream lists now, as raw JSON objects (empty when it has none).
    pub async fn list_resources(&self) -> Result<Vec<serde_json::Value>, UpstreamError> {
        if !self.offers(|caps| caps.resources.is_some()) {
            return Ok(Vec::new());
        }
        let resources = self
            .with_peer(|peer| async move { peer.list_all_resources().await })
            .await?;
        Ok(resources
            .into_iter()
            .filter_map(|resource| serde_json::to_value(resource).ok())
            .collect())
    }

    /// Every resource template the upstream lists now (empty when it has no resources).
    pub async fn list_resource_templates(&self) -> Result<Vec<serde_json::Value>, UpstreamError> {
        if !self.offers(|caps| caps.resources.is_some()) {
            return Ok(Vec::new());
        }
        let templates = self
            .with_peer(|peer| async move { peer.list_all_resource_templates().await })
            .await?;
        Ok(templates
            .into_iter()
            .filter_map(|template| serde_json::to_value(template).ok())
            .collect())
    }

    /// Whether the connected upstream offers resources.
    pub fn offers_resources(&self) -> bool {
        self.offers(|caps| caps.resources.is_some())
    }

    /// Calls the upstream's tool `name` (its own name, without the prefix).
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, UpstreamError> {
        let mut params = CallToolRequestParams::new(name.to_owned());
        params.arguments = arguments;
        self.with_peer(|peer| async move { peer.call_tool(params).await })
            .await
    }

    pub async fn get_prompt(
        &self,
        params: GetPromptRequestParams,
    ) -> Result<GetPromptResult, UpstreamError> {
        self.with_peer(|peer| async move { peer.get_prompt(params).await })
            .await
    }

    pub async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
    ) -> Result<ReadResourceResult, UpstreamError> {
        self.with_peer(|peer| async move { peer.read_resource(params).await })
            .await
    }

    fn offers(&self, check: impl Fn(&rmcp::model::ServerCapabilities) -> bool) -> bool {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        live.as_ref()
            .and_then(|peer| peer.peer_info())
            .is_some_and(|info| check(&info.capabilities))
    }

    /// Runs `call` against the live peer under the concurrency limit and the call timeout. A
    /// timeout also asks the supervisor to probe the upstream and restart it when it hangs.
    async fn with_peer<T, F, Fut>(&self, call: F) -> Result<T, UpstreamError>
    where
        F: FnOnce(Peer<RoleClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ServiceError>>,
    {
        let name = || self.spec.name.clone();
        let peer = self
            .live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| UpstreamError::Down(name()))?;
        let timeout = self.spec.call_timeout;
        let outcome = tokio::time::timeout(timeout, async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| UpstreamError::Down(name()))?;
            call(peer).await.map_err(|source| UpstreamError::Failed {
                upstream: name(),
                source,
            })
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(upstream = %self.spec.name, "upstream call timed out; probing it");
                self.restart.notify_one();
                Err(UpstreamError::Timeout(name()))
            }
        }
    }

    fn set_status(&self, status: UpstreamStatus) {
        self.status.send_replace(status);
    }

    async fn supervise(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut failures: u32 = 0;
        let mut generation: u64 = 0;
        loop {
            if *stop.borrow() {
                break;
            }
            let connected = tokio::select! {
                connected = tokio::time::timeout(self.spec.connect_timeout, self.connect()) => connected,
                () = stopped(&mut stop) => break,
            };
            match connected {
                Ok(Ok((running, child))) => {
                    failures = 0;
                    generation += 1;
                    *self.live.write().unwrap_or_else(PoisonError::into_inner) =
                        Some(running.peer().clone());
                    self.set_status(UpstreamStatus::Up { generation });
                    tracing::info!(upstream = %self.spec.name, generation, "upstream connected");
                    let reason = self.hold(running, child, &mut stop).await;
                    *self.live.write().unwrap_or_else(PoisonError::into_inner) = None;
                    if *stop.borrow() {
                        break;
                    }
                    tracing::warn!(upstream = %self.spec.name, reason, "upstream lost; restarting");
                    self.set_status(UpstreamStatus::Down {
                        consecutive_failures: 0,
                        reason,
                    });
                }
                Ok(Err(reason)) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(upstream = %self.spec.name, reason, failures, "upstream did not connect");
                    self.set_status(UpstreamStatus::Down {
                        consecutive_failures: failures,
                        reason,
                    });
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(upstream = %self.spec.name, failures, "upstream connection timed out");
                    self.set_status(UpstreamStatus::Down {
                        consecutive_failures: failures,
                        reason: "connect_timeout",
                    });
                }
            }
            let delay = self.spec.backoff.delay(failures.saturating_sub(1));
            tokio::select! {
                () = tokio::time::sleep(delay) => {},
                () = stopped(&mut stop) => break,
            }
        }
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = None;
        self.set_status(UpstreamStatus::Stopped);
    }

    /// Keeps a connection until it ends, the child exits, a hang probe fails or the gateway
    /// stops; returns why it ended.
    async fn hold(
        &self,
        running: RunningService<RoleClient, Listener>,
        mut child: Option<tokio::process::Child>,
        stop: &mut watch::Receiver<bool>,
    ) -> &'static str {
        let peer = running.peer().clone();
        let token = running.cancellation_token();
        let waiting = running.waiting();
        tokio::pin!(waiting);
        let reason = loop {
            let exited = async {
                match child.as_mut() {
                    Some(child) => {
                        let _ = child.wait().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = &mut waiting => break "connection_closed",
                () = exited => break "process_exited",
                () = self.restart.notified() => {
                    let probe = tokio::time::timeout(self.spec.call_timeout, peer.list_tools(None)).await;
                    if matches!(probe, Ok(Ok(_))) {
                        continue;
                    }
                    break "hang";
                }
                () = stopped(stop) => break "stopped",
            }
        };
        token.cancel();
        if let Some(mut child) = child {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        reason
    }

    async fn connect(&self) -> Result<Connection, &'static str> {
        match &self.spec.transport {
            TransportSpec::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut cmd = tokio::process::Command::new(command);
                // INVARIANT (clean-env): the child sees only the allow-listed variables and the
                // injected secrets, nothing of the gateway's own environment.
                cmd.args(args)
                    .env_clear()
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                if let Some(cwd) = cwd {
                    cmd.current_dir(cwd);
                }
                let mut child = cmd.spawn().map_err(|err| {
                    tracing::warn!(upstream = %self.spec.name, error = %err, "cannot spawn the upstream");
                    "spawn_failed"
                })?;
                let stdout = child.stdout.take().ok_or("spawn_failed")?;
                let stdin = child.stdin.take().ok_or("spawn_failed")?;
                if let Some(stderr) = child.stderr.take() {
                    tokio::spawn(forward_stderr(
                        self.spec.name.clone(),
                        stderr,
                        self.log_redactor.clone(),
                    ));
                }
                let running = self.listener.clone().serve((stdout, stdin)).await.map_err(|err| {
                    let error = redacted(&err.to_string(), self.log_redactor.as_deref());
                    tracing::warn!(upstream = %self.spec.name, error = %error, "upstream handshake failed");
                    "handshake_failed"
                })?;
                Ok((running, Some(child)))
            }
            TransportSpec::Http { url, headers } => {
                let mut custom = HashMap::new();
                for (name, value) in headers {
                    let name =
                        http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| "bad_header")?;
                    let value = http::HeaderValue::from_str(value).map_err(|_| "bad_header")?;
                    custom.insert(name, value);
                }
                // The upstream's own permits bound its calls; the transport must not queue
                // below that bound (its default is 16 POSTs in flight).
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.clone())
                    .max_concurrent_requests(self.spec.max_concurrent.max(1));
                config.custom_headers = custom;
                let transport = StreamableHttpClientTransport::from_config(config);
                let running = self.listener.clone().serve(transport).await.map_err(|err| {
                    // The SDK's error text can quote the upstream's own message.
                    let error = redacted(&err.to_string(), self.log_redactor.as_deref());
                    tracing::warn!(upstream = %self.spec.name, error = %error, "upstream handshake failed");
                    "handshake_failed"
                })?;
                Ok((running, None))
            }
        }
    }
}

/// Resolves once `stop` turns true (never when its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Logs a child's stderr, line by line, after redaction; never the raw text.
async fn forward_stderr(
    upstream: String,
    stderr: tokio::process::ChildStderr,
    redactor: Option<Arc<Redactor>>,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let cut = redacted(&line, redactor.as_deref());
        tracing::info!(upstream = %upstream, line = %cut, "upstream stderr");
    }
}

/// Text from an upstream (a stderr line, an error quoting its message) fit for the log: cut to
/// [`MAX_LOG_LINE`] characters and redacted; withheld without a redactor.
fn redacted(text: &str, redactor: Option<&Redactor>) -> String {
    let cut: String = text.chars().take(MAX_LOG_LINE).collect();
    match redactor {
        Some(redactor) => match redactor.redact_str(&cut) {
            Ok(clean) => clean.into_owned(),
            Err(_) => "[unscannable line]".to_owned(),
        },
        None => "[line withheld: no redactor]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (0..6).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }
}
