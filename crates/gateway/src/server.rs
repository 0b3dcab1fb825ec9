//! Start-up and shutdown: data dir, admin token, store, listener, the `listening` line, graceful
//! stop.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_core::{Clock, Decision, Event};
use portcullis_store::{PolicyRecordKind, SqliteOptions, SqliteStore, Store};

use crate::admin::{AdminGuard, RateLimit};
use crate::config::{Config, StoreBackend, parse_sha256_hex};
use crate::events::Events;
use crate::guardrails::alerts::{AlertSender, Webhook};
use crate::http::{AppParts, AppState, app};
use crate::identity::Identity;
use crate::identity::failures::FailureLimits;
use crate::metrics::Metrics;
use crate::policy::{PolicyRuntime, Sources};
use crate::tokens;

pub mod listener;

/// File in the data dir holding a generated admin token (0600).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// File in the data dir describing the listeners.
pub const LISTENING_FILE: &str = "listening.json";

/// Everything `serve` needs from the command line and environment.
#[derive(Debug)]
pub struct ServeOptions {
    pub config: Config,
    pub data_dir: PathBuf,
    /// `PORTCULLIS_DEBUG=1`: debug logs (see [`init_logging`]). It opens nothing: the admin
    /// routes need the admin token from every caller, loopback included.
    pub debug: bool,
    pub clock: Arc<dyn Clock>,
    /// A DNS fixture file answering every egress lookup instead of the system resolver (tests).
    pub dns_fixture: Option<PathBuf>,
}

/// Why the gateway did not start or stopped badly. Each is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to bind {bind}: a non-loopback bind needs an admin token (set admin.token_sha256 \
         or PORTCULLIS_ADMIN_TOKEN)"
    )]
    NonLoopbackWithoutAdminToken { bind: SocketAddr },
    #[error("server.bind `{0}` is not a socket address")]
    BadBind(String),
    #[error("admin.rate_limit `{0}` is not `limit/window_secs`")]
    BadRateLimit(String),
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        dir: PathBuf,
        source: portcullis_store::StoreError,
    },
    #[error("cannot use the admin token file {path}: {source}")]
    AdminTokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin token file {path} is not a valid token")]
    AdminTokenFileInvalid { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    ListeningFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the policy does not load: {0}")]
    Policy(String),
    #[error("the budgets do not load: {0}")]
    Budgets(String),
    #[error("{0}")]
    Egress(crate::egress::EgressStartError),
    #[error("{0}")]
    Secrets(crate::secrets::SecretsError),
    #[error("the cluster section cannot be used: {0}")]
    Cluster(crate::cluster::ClusterError),
    #[error("the MCP upstreams cannot start: {0}")]
    Mcp(crate::mcp::McpStartError),
    #[error("the LLM front cannot start: {0}")]
    Llm(crate::llm::LlmStartError),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("the ledger could not be flushed at shutdown: {0}")]
    Flush(portcullis_store::StoreError),
}

/// The data dir: `--data-dir`, else `PORTCULLIS_DATA_DIR`, else `./portcullis-data`.
pub fn resolve_data_dir(flag: Option<&Path>, env: &BTreeMap<String, String>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| {
            env.get("PORTCULLIS_DATA_DIR")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("portcullis-data"))
}

/// Loads `[secrets]`: the secrets file (resolved against the configuration's directory) and the
/// environment variables `secrets.env` names.
pub fn load_secrets(config: &Config) -> Result<crate::secrets::Secrets, ServeError> {
    let file = config
        .secrets
        .file
        .as_deref()
        .map(|path| crate::config::policy::resolve_path(config, path));
    crate::secrets::Secrets::load(&config.secrets, file.as_deref(), &|var| {
        std::env::var(var).ok()
    })
    .map_err(ServeError::Secrets)
}

/// Whether an admin token is configured (clear or hashed, from the file or the environment).
pub fn configured_admin_token(config: &Config) -> Option<[u8; 32]> {
    if let Some(token) = &config.admin.token {
        return Some(tokens::sha256(token));
    }
    config
        .admin
        .token_sha256
        .as_deref()
        .and_then(parse_sha256_hex)
}

/// Runs the gateway until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish (bounded by `server.shutdown_grace`) and flushes the ledger.
pub async fn serve(
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let config = Arc::new(options.config);
    let bind: SocketAddr = config
        .server
        .bind
        .parse()
        .map_err(|_| ServeError::BadBind(config.server.bind.clone()))?;
    let configured_token = configured_admin_token(&config);
    if !bind.ip().is_loopback() && configured_token.is_none() {
        return Err(ServeError::NonLoopbackWithoutAdminToken { bind });
    }

    let store: Arc<dyn Store> = match config.store.backend {
        StoreBackend::Sqlite => Arc::new(
            SqliteStore::open(
                &options.data_dir,
                SqliteOptions {
                    checkpoint_every: config.ledger.checkpoint_every,
                    checkpoint_interval: config.ledger.checkpoint_interval.as_std(),
                    clock: Arc::clone(&options.clock),
                },
            )
            .map_err(|source| ServeError::Store {
                dir: options.data_dir.clone(),
                source,
            })?,
        ),
    };
    let admin_token = match configured_token {
        Some(hash) => hash,
        None => load_or_create_admin_token(&options.data_dir)?,
    };
    if options.debug {
        tracing::warn!(
            "PORTCULLIS_DEBUG is set: debug logs are on (admin routes still need the admin token); \
             turn it off in production"
        );
    }
    let rate_limit = RateLimit::parse(&config.admin.rate_limit)
        .map_err(|_| ServeError::BadRateLimit(config.admin.rate_limit.clone()))?;

    let policy = Arc::new(load_policy(&config, &store).await?);

    let egress = Arc::new(
        crate::egress::build_state(
            &config.egress,
            options.dns_fixture.as_deref(),
            Arc::clone(&options.clock),
        )
        .map_err(ServeError::Egress)?,
    );

    let secrets = Arc::new(load_secrets(&config)?);
    let cluster = Arc::new(crate::cluster::ClusterRuntime::new(
        crate::cluster::ClusterSettings::build(
            &config,
            &secrets,
            policy.capsules.trust_store().as_deref(),
        )
        .map_err(ServeError::Cluster)?,
    ));

    let mcp = Arc::new(
        crate::mcp::McpRuntime::start(&config, &secrets, store.as_ref(), &|var| {
            std::env::var(var).ok()
        })
        .await
        .map_err(ServeError::Mcp)?,
    );

    let llm = Arc::new(crate::llm::LlmRuntime::start(&config, &secrets).map_err(ServeError::Llm)?);
    if !config.llm.providers.is_empty() {
        let preload = Arc::clone(&llm);
        tokio::task::spawn_blocking(move || preload.preload());
    }

    let metrics = Metrics::new();
    let events = Events::new(Arc::clone(&store), metrics.clone());
    let alerts = match &config.alerts {
        alerts if alerts.webhook_url.is_empty() => AlertSender::disabled(),
        alerts => {
            let secret = secrets
                .require(&alerts.webhook_secret)
                .map_err(ServeError::Secrets)?;
            AlertSender::start(
                Webhook {
                    url: alerts.webhook_url.clone(),
                    secret: secret.expose().as_bytes().to_vec(),
                    timeout: alerts.webhook_timeout.as_std(),
                    attempts: alerts.webhook_attempts,
                    backoff: alerts.webhook_backoff.as_std(),
                },
                events.clone(),
                metrics.clone(),
            )
        }
    };
    let guardrails = Arc::new(
        crate::guardrails::Guardrails::new(&config, Arc::clone(&options.clock), alerts).map_err(
            |issues| {
                ServeError::Budgets(
                    issues
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            },
        )?,
    );
    let engaged = guardrails
        .killswitch
        .restore(store.as_ref())
        .await
        .map_err(|source| ServeError::Store {
            dir: options.data_dir.clone(),
            source,
        })?;
    if engaged > 0 {
        tracing::warn!(engaged, "kill switch engaged from the store");
    }
    let restored = guardrails
        .budgets
        .restore(store.as_ref())
        .await
        .map_err(|err| ServeError::Budgets(err.to_string()))?;
    if restored > 0 {
        tracing::info!(restored, "budget changes of the admin API re-applied");
    }

    let core = Arc::new(crate::pipeline::Core {
        identity: Identity::new(&config.agents, Arc::clone(&store)).with_failure_limits(
            FailureLimits {
                per_peer: config.server.auth_failures_per_peer,
                global: config.server.auth_failures_global,
                window: config.server.auth_failure_window.as_std(),
            },
        ),
        config: Arc::clone(&config),
        store: Arc::clone(&store),
        events: events.clone(),
        metrics,
        clock: Arc::clone(&options.clock),
        policy,
        secrets,
        guardrails: Arc::clone(&guardrails),
    });
    let state = AppState::new(AppParts {
        core,
        admin: AdminGuard::new(Some(admin_token), rate_limit),
        egress,
        mcp: Arc::clone(&mcp),
        cluster,
        llm,
    });
    crate::mcp::spawn_watchers(&state);

    let fd_limit = listener::raise_fd_limit();
    tracing::info!(
        before = fd_limit.before,
        now = fd_limit.now,
        "open-file limit"
    );
    let listener = listener::bind(bind, config.server.listen_backlog)
        .map_err(|source| ServeError::Bind { bind, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { bind, source })?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let egress_listeners = crate::egress::start(&state, stop_rx.clone())
        .await
        .map_err(ServeError::Egress)?;
    announce(&options.data_dir, local, egress_listeners)?;
    events
        .emit_best_effort(Event::new("gateway.started", Decision::Info, "ok").data(
            serde_json::json!({"http": local.to_string(), "version": env!("CARGO_PKG_VERSION")}),
        ))
        .await;
    tracing::info!(http = %local, "portcullis is listening");

    match crate::policy::capsules::restore(&state).await {
        Ok(restored) => tracing::info!(restored, "adopted capsules re-verified"),
        Err(err) => {
            return Err(ServeError::Policy(format!(
                "cannot read adopted capsules: {err}"
            )));
        }
    }
    if let Err(err) = crate::policy::immutable::record_at_start(&state).await {
        return Err(ServeError::Policy(format!(
            "cannot record the immutable policy: {err}"
        )));
    }
    spawn_reload_on_hangup(state.clone());
    spawn_capsule_sweep(state.clone());
    spawn_auth_refusal_records(state.clone());
    tokio::spawn(crate::guardrails::sweep(guardrails));
    tokio::spawn(crate::pipeline::expire_reservations(Arc::clone(
        &state.core,
    )));
    tokio::spawn(crate::mcp::sessions::cut_off(state.clone()));

    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let limits = listener::ListenerLimits {
        header_read_timeout: config.server.header_read_timeout.as_std(),
        idle_timeout: config.server.idle_timeout.as_std(),
        max_connections: listener::fitted_cap(
            usize::try_from(config.server.max_connections).unwrap_or(usize::MAX),
            fd_limit.now,
        ),
        max_connections_per_ip: usize::try_from(config.server.max_connections_per_ip)
            .unwrap_or(usize::MAX),
    };
    if limits.max_connections < usize::try_from(config.server.max_connections).unwrap_or(usize::MAX)
    {
        tracing::warn!(
            configured = config.server.max_connections,
            serving = limits.max_connections,
            open_files = fd_limit.now,
            "server.max_connections lowered to fit the open-file limit; raise the hard limit"
        );
    }
    let server = listener::run(
        listener,
        app(state.clone()),
        limits,
        state.metrics.clone(),
        stop_rx.clone(),
    );
    let grace = config.server.shutdown_grace.as_std();
    tokio::select! {
        () = server => {}
        () = async {
            let _ = stop_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("in-flight requests did not finish within the shutdown grace; cutting them");
        }
    }
    mcp.shutdown();
    events.settle_trailing().await;
    events
        .emit_best_effort(Event::new("gateway.stopped", Decision::Info, "ok"))
        .await;
    store.flush().await.map_err(ServeError::Flush)?;
    tracing::info!("portcullis stopped");
    Ok(())
}

/// Builds the policy of `config` plus the contracts stored through the admin API. Any problem
/// refuses start with one line naming each file and message.
pub async fn load_policy(
    config: &Config,
    store: &Arc<dyn Store>,
) -> Result<PolicyRuntime, ServeError> {
    let one_line = |issues: Vec<crate::policy::LoadIssue>| {
        ServeError::Policy(
            issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    let mut sources = Sources::from_config(config).map_err(one_line)?;
    let stored = store
        .list_policy_records(PolicyRecordKind::Contract)
        .await
        .map_err(|err| ServeError::Policy(format!("cannot read stored contracts: {err}")))?;
    for (id, body) in stored {
        let contract = serde_json::from_str(&body)
            .map_err(|err| ServeError::Policy(format!("stored contract `{id}`: {err}")))?;
        sources.admin_contracts.push(contract);
    }
    let engine = sources.build().map_err(one_line)?;
    let trust =
        crate::policy::capsules::read_trust_store(config).map_err(|issue| one_line(vec![issue]))?;
    let limits = config
        .capsules
        .limits()
        .map_err(|(key, message)| ServeError::Policy(format!("capsules.{key}: {message}")))?;
    let state = crate::policy::stored_state(store)
        .await
        .map_err(|err| ServeError::Policy(format!("cannot read quota counters: {err}")))?;
    Ok(PolicyRuntime::new(
        sources,
        engine,
        state,
        crate::policy::capsules::CapsuleRuntime::new(trust, limits),
    ))
}

/// On SIGHUP: reloads the policy, the trust store and the cluster settings. Failures keep what is serving; each
/// outcome is a ledger event written by the reload itself.
fn spawn_reload_on_hangup(state: AppState) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload through the admin API instead");
            return;
        };
        while hangup.recv().await.is_some() {
            match crate::policy::reload(&state).await {
                Ok(_) => tracing::info!("policy reloaded on SIGHUP"),
                Err(issues) => {
                    for issue in &issues {
                        tracing::warn!(file = %issue.file, message = %issue.message, "policy reload refused");
                    }
                }
            }
            if let Err(issue) = crate::policy::capsules::reload_trust(&state).await {
                tracing::warn!(file = %issue.file, message = %issue.message, "trust store reload refused");
            }
            if let Err(issues) = crate::cluster::reload(&state).await {
                for issue in &issues {
                    tracing::warn!(file = %issue.file, message = %issue.message, "cluster reload refused");
                }
            }
        }
    });
    #[cfg(not(unix))]
    drop(state);
}

/// How often ended failed-authentication windows are looked for.
const AUTH_REFUSAL_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// After each failed-authentication window, records the refusals past the limits: one
/// `auth.refused` event per peer address and window, with the count (`identity::failures`).
fn spawn_auth_refusal_records(state: AppState) {
    tokio::spawn(async move {
        let window = state.identity.failures().limits().window;
        let mut ticks = tokio::time::interval(AUTH_REFUSAL_SWEEP.min(window));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for tally in state.identity.failures().drain_ended() {
                let event = Event::new("auth.refused", Decision::Deny, "rate_limited").data(
                    serde_json::json!({
                        "peer": tally.peer.map(|ip| ip.to_string()),
                        "refused": tally.refused,
                        "window_secs": window.as_secs(),
                    }),
                );
                state.events.emit_best_effort(event).await;
            }
        }
    });
}

/// Tears adopted capsules down as they expire.
fn spawn_capsule_sweep(state: AppState) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(crate::policy::capsules::SWEEP_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            crate::policy::capsules::sweep(&state).await;
        }
    });
}

/// Prints the `listening` line on stdout and writes the same object to `listening.json`.
fn announce(
    data_dir: &Path,
    http: SocketAddr,
    egress: crate::egress::EgressListeners,
) -> Result<(), ServeError> {
    let line = listening_line(http, egress.proxy, egress.dns);
    let path = data_dir.join(LISTENING_FILE);
    write_replacing_private(&path, &format!("{line}\n"))
        .map_err(|source| ServeError::ListeningFile { path, source })?;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
    Ok(())
}

/// `{"event":"listening","http":ADDR,"proxy":ADDR|null,"dns":ADDR|null}`, keys in this order.
pub fn listening_line(
    http: SocketAddr,
    proxy: Option<SocketAddr>,
    dns: Option<SocketAddr>,
) -> String {
    let addr = |addr: Option<SocketAddr>| match addr {
        Some(addr) => format!("\"{addr}\""),
        None => "null".to_owned(),
    };
    format!(
        "{{\"event\":\"listening\",\"http\":\"{http}\",\"proxy\":{},\"dns\":{}}}",
        addr(proxy),
        addr(dns)
    )
}

/// Reads `<data dir>/admin.token`, or generates it (0600) and prints it once on stderr.
fn load_or_create_admin_token(data_dir: &Path) -> Result<[u8; 32], ServeError> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim();
            if token.len() < tokens::MIN_ADMIN_TOKEN_LEN {
                return Err(ServeError::AdminTokenFileInvalid { path });
            }
            Ok(tokens::sha256(token))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let token = tokens::generate("pcl_admin_");
            write_private(&path, &format!("{token}\n")).map_err(|source| {
                ServeError::AdminTokenFile {
                    path: path.clone(),
                    source,
                }
            })?;
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(
                stderr,
                "portcullis: generated an admin token (shown once; stored 0600 in {}):\n  {token}",
                path.display()
            );
            Ok(tokens::sha256(&token))
        }
        Err(source) => Err(ServeError::AdminTokenFile { path, source }),
    }
}

/// Creates `path` with mode 0600 and writes `contents`.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Writes `path` (mode 0600), replacing it atomically through a temporary file.
fn write_replacing_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    write_private(&temp, contents)?;
    std::fs::rename(&temp, path)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// The MCP SDK's own log lines: off unless the operator's filter names `rmcp`. They print what an
/// upstream sent verbatim (its `serverInfo` and `instructions` at INFO, unexpected messages at
/// WARN, response bodies in errors), where the secret redactor cannot reach, and session ids.
const SDK_LOGS_OFF: &str = "rmcp=off";

/// Installs the log subscriber: JSON lines unless stderr is a terminal (or as configured), to
/// stderr, filtered by `PORTCULLIS_LOG` (when set and not empty), else debug for Portcullis's
/// crates under `PORTCULLIS_DEBUG=1`, else `observability.log_level`. `RUST_LOG` is not read.
/// Whatever the level, the MCP SDK (`rmcp`) logs nothing unless the filter names it.
pub fn init_logging(config: &crate::config::ObservabilityConfig, env: &BTreeMap<String, String>) {
    use std::io::IsTerminal as _;
    let debug = env
        .get("PORTCULLIS_DEBUG")
        .is_some_and(|value| value == "1" || value == "true");
    let raw = [
        env.get("PORTCULLIS_LOG")
            .map(String::as_str)
            .filter(|raw| !raw.trim().is_empty()),
        debug.then_some("info,portcullis=debug"),
        Some(config.log_level.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|raw| log_filter(raw).is_some())
    .unwrap_or("info");
    let sdk_named = names_sdk(raw);
    let filter = log_filter(raw)
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(format!("info,{SDK_LOGS_OFF}")));
    let json = match config.log_format {
        crate::config::LogFormat::Json => true,
        crate::config::LogFormat::Human => false,
        crate::config::LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok() && sdk_named {
        tracing::warn!(
            "the log filter names `rmcp`: the MCP SDK's lines carry upstream text and session ids \
             unredacted; use it for debugging only"
        );
    }
}

/// `raw` as a log filter, with the MCP SDK's lines off unless `raw` names `rmcp`.
fn log_filter(raw: &str) -> Option<tracing_subscriber::EnvFilter> {
    let filter = tracing_subscriber::EnvFilter::try_new(raw).ok()?;
    if names_sdk(raw) {
        return Some(filter);
    }
    Some(filter.add_directive(SDK_LOGS_OFF.parse().ok()?))
}

/// Whether a directive of `raw` targets the MCP SDK (`rmcp`, `rmcp::...`): the operator's
/// explicit choice to see its lines.
fn names_sdk(raw: &str) -> bool {
    raw.split(',').any(|directive| {
        let target = directive
            .trim()
            .split(['=', '['])
            .next()
            .unwrap_or_default();
        target == "rmcp" || target.starts_with("rmcp::")
    })
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn the_sdk_is_named_only_by_its_own_target() {
        for (raw, named) in [
            ("info", false),
            ("debug", false),
            ("trace,portcullis=debug", false),
            ("info,rmcp_x=debug", false),
            ("info,rmcp=info", true),
            ("rmcp::service=debug", true),
            ("warn, rmcp[span]=trace", true),
        ] {
            assert_eq!(names_sdk(raw), named, "{raw}");
        }
    }

    #[test]
    fn every_level_keeps_the_sdk_quiet_unless_named() {
        for raw in ["info", "debug", "trace", "info,portcullis=debug"] {
            let filter = log_filter(raw).unwrap().to_string();
            assert!(filter.contains("rmcp=off"), "{raw}: {filter}");
        }
        let named = log_filter("info,rmcp=debug").unwrap().to_string();
        assert!(!named.contains("rmcp=off"), "{named}");
        assert!(log_filter("not a [filter").is_none());
    }
}
