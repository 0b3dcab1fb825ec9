//! `portcullis doctor`: audits the hardening checklist and reports pass/warn/fail per item.
//!
//! [`audit`] is a function of the configuration (and the Cedar files it names, read as `config
//! check` reads them) and [`HostFacts`]; [`HostFacts::gather`] does the reading of the machine,
//! so the checks are testable without touching it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use portcullis_core::request::RequestContext;
use portcullis_core::{Clock as _, GateKey, Request};
use portcullis_netpolicy::EgressPolicy;
use portcullis_policy::PolicyEngine;
use serde::Serialize;

use crate::admin::RateLimit;
use crate::config::{Config, parse_sha256_hex};
use crate::server::ADMIN_TOKEN_FILE;

/// The name the `dns_guard` check asks about, as the DNS guard would for a client.
pub const DNS_SAMPLE_HOST: &str = "example.com";

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One checklist item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub detail: String,
}

/// What `doctor` reads from the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub debug_env: bool,
    pub effective_uid: Option<u32>,
    pub data_dir: PathBuf,
    /// Permission bits of the data dir, if it exists.
    pub data_dir_mode: Option<u32>,
    /// Files in the data dir readable or writable by group or others.
    pub loose_files: Vec<String>,
    /// Whether `<data dir>/admin.token` exists (a generated token).
    pub generated_admin_token: bool,
    /// The hard open-file limit: what `serve` raises its soft limit to at start.
    pub fd_hard_limit: Option<u64>,
    /// When the checks run (policy is decided at this instant).
    pub now: Timestamp,
}

impl HostFacts {
    pub fn gather(data_dir: &Path, debug_env: bool) -> Self {
        let (data_dir_mode, loose_files) = permissions(data_dir);
        Self {
            debug_env,
            effective_uid: effective_uid(),
            data_dir: data_dir.to_path_buf(),
            data_dir_mode,
            loose_files,
            generated_admin_token: data_dir.join(ADMIN_TOKEN_FILE).is_file(),
            fd_hard_limit: fd_hard_limit(),
            now: portcullis_core::SystemClock.now(),
        }
    }
}

/// Runs every check.
pub fn audit(config: &Config, facts: &HostFacts) -> Vec<Check> {
    let mut res = Vec::new();
    let mut check =
        |id: &'static str, status: Status, detail: String| res.push(Check { id, status, detail });

    if facts.debug_env {
        check(
            "debug_off",
            Status::Fail,
            "PORTCULLIS_DEBUG is set: debug logs are on (admin routes still need the token)".into(),
        );
    } else {
        check(
            "debug_off",
            Status::Pass,
            "PORTCULLIS_DEBUG is not set".into(),
        );
    }

    let bind: Option<SocketAddr> = config.server.bind.parse().ok();
    let loopback = bind.is_some_and(|addr| addr.ip().is_loopback());
    match (&config.admin.token, &config.admin.token_sha256) {
        (Some(token), _) if token.len() >= 32 && distinct_chars(token) >= 12 => check(
            "admin_token",
            Status::Pass,
            "admin token is set and long".into(),
        ),
        (Some(_), _) => check(
            "admin_token",
            Status::Fail,
            "admin token is short or repetitive; use 32+ random characters".into(),
        ),
        (None, Some(hash)) if parse_sha256_hex(hash).is_some() => check(
            "admin_token",
            Status::Pass,
            "admin token is configured as a SHA-256 digest".into(),
        ),
        _ if facts.generated_admin_token => check(
            "admin_token",
            Status::Pass,
            format!(
                "a generated admin token is stored in {}",
                facts.data_dir.join(ADMIN_TOKEN_FILE).display()
            ),
        ),
        _ if loopback => check(
            "admin_token",
            Status::Warn,
            "no admin token yet; one will be generated at first start".into(),
        ),
        _ => check(
            "admin_token",
            Status::Fail,
            "non-loopback bind without an admin token; start-up will be refused".into(),
        ),
    }

    match RateLimit::parse(&config.admin.rate_limit) {
        Ok(limit) if u64::from(limit.limit.get()) <= limit.window.as_secs().saturating_mul(10) => {
            check(
                "admin_rate_limit",
                Status::Pass,
                format!("admin rate limit is {}", config.admin.rate_limit),
            )
        }
        Ok(_) => check(
            "admin_rate_limit",
            Status::Warn,
            format!(
                "admin rate limit {} allows more than 10 requests per second",
                config.admin.rate_limit
            ),
        ),
        Err(message) => check("admin_rate_limit", Status::Fail, message),
    }

    let agents_without_allow: Vec<&str> = config
        .agents
        .iter()
        .filter(|agent| agent.allow.is_empty())
        .map(|agent| agent.id.as_str())
        .collect();
    if config.agents.is_empty() {
        check(
            "policy",
            Status::Warn,
            "no agents are declared in configuration; every action is denied by default".into(),
        );
    } else if agents_without_allow.is_empty() {
        check(
            "policy",
            Status::Pass,
            "every configured agent has an explicit allowlist".into(),
        );
    } else {
        check(
            "policy",
            Status::Warn,
            format!(
                "agents without allow patterns (denied everything): {}",
                agents_without_allow.join(", ")
            ),
        );
    }

    match (bind, loopback) {
        (None, _) => check(
            "bind",
            Status::Fail,
            format!(
                "server.bind `{}` is not a socket address",
                config.server.bind
            ),
        ),
        (Some(addr), true) => check(
            "bind",
            Status::Pass,
            format!("listening on loopback {addr}"),
        ),
        (Some(addr), false) if config.server.behind_tls_proxy => check(
            "bind",
            Status::Pass,
            format!("non-loopback bind {addr} behind a TLS reverse proxy"),
        ),
        (Some(addr), false) => check(
            "bind",
            Status::Fail,
            format!(
                "non-loopback bind {addr} without `server.behind_tls_proxy`: put a TLS reverse \
                 proxy in front (docs/OPERATIONS.md)"
            ),
        ),
    }

    audit_listener(config, facts, &mut check);

    match (&config.observability.metrics_token, loopback) {
        (Some(_), _) => check(
            "metrics_access",
            Status::Pass,
            "/metrics requires observability.metrics_token".into(),
        ),
        (None, true) => check(
            "metrics_access",
            Status::Pass,
            "/metrics is open on a loopback bind".into(),
        ),
        (None, false) => check(
            "metrics_access",
            Status::Warn,
            "/metrics is open on a non-loopback bind; set observability.metrics_token".into(),
        ),
    }

    match facts.data_dir_mode {
        None => check(
            "data_dir_permissions",
            Status::Warn,
            format!(
                "{} does not exist yet; it will be created with mode 0700",
                facts.data_dir.display()
            ),
        ),
        Some(mode) if mode & 0o077 != 0 => check(
            "data_dir_permissions",
            Status::Fail,
            format!(
                "{} has mode {:o}; run `chmod 700` on it",
                facts.data_dir.display(),
                mode & 0o777
            ),
        ),
        Some(_) if !facts.loose_files.is_empty() => check(
            "data_dir_permissions",
            Status::Fail,
            format!(
                "files readable by others: {}; run `chmod 600` on them",
                facts.loose_files.join(", ")
            ),
        ),
        Some(_) => check(
            "data_dir_permissions",
            Status::Pass,
            format!("{} is private (0700, files 0600)", facts.data_dir.display()),
        ),
    }

    audit_dns_guard(config, facts.now, &mut check);

    let unmatched_rules = crate::config::mcp::rule_warnings(config);
    if unmatched_rules.is_empty() {
        check(
            "tool_rules",
            Status::Pass,
            "every argument rule and risk entry names an enabled upstream".into(),
        );
    } else {
        check("tool_rules", Status::Warn, unmatched_rules.join("; "));
    }

    match facts.effective_uid {
        Some(0) => check(
            "not_root",
            Status::Fail,
            "running as root; run Portcullis as an unprivileged user".into(),
        ),
        Some(uid) => check("not_root", Status::Pass, format!("running as uid {uid}")),
        None => check(
            "not_root",
            Status::Warn,
            "could not determine the user id".into(),
        ),
    }
    res
}

/// The HTTP listener's limits and the open-file limit they need.
fn audit_listener(
    config: &Config,
    facts: &HostFacts,
    check: &mut impl FnMut(&'static str, Status, String),
) {
    let server = &config.server;
    let header = server.header_read_timeout.as_std().as_secs();
    let idle = server.idle_timeout.as_std().as_secs();
    if header <= 30 && idle <= 300 {
        check(
            "slow_clients",
            Status::Pass,
            format!(
                "request heads within {header}s, idle connections closed after {idle}s, at most \
                 {} connections ({} per address)",
                server.max_connections, server.max_connections_per_ip
            ),
        );
    } else {
        check(
            "slow_clients",
            Status::Warn,
            format!(
                "server.header_read_timeout {header}s or server.idle_timeout {idle}s is long; \
                 slow clients hold connections that long"
            ),
        );
    }
    let needed = u64::from(server.max_connections).saturating_mul(4) / 3;
    match facts.fd_hard_limit {
        Some(hard) if hard >= needed => check(
            "fd_limit",
            Status::Pass,
            format!(
                "open-file limit raised at start to {hard}, room for server.max_connections = {}",
                server.max_connections
            ),
        ),
        Some(hard) => check(
            "fd_limit",
            Status::Warn,
            format!(
                "the hard open-file limit is {hard}: the listener will keep at most {} \
                 connections, not {}; raise it (LimitNOFILE= or `ulimit -Hn`) to {needed}",
                hard.saturating_mul(3) / 4,
                server.max_connections
            ),
        ),
        None => check(
            "fd_limit",
            Status::Warn,
            "could not read the open-file limit".into(),
        ),
    }
    let failures = server.auth_failures_per_peer;
    let window = server.auth_failure_window.as_std().as_secs();
    check(
        "auth_failure_limit",
        if u64::from(failures) <= window.saturating_mul(10) {
            Status::Pass
        } else {
            Status::Warn
        },
        format!(
            "at most {failures} failed authentications per address and {} in all per {window}s",
            server.auth_failures_global
        ),
    );
}

/// The DNS guard decides every answer as `@anonymous`, whom no allowlist names: without a Cedar
/// `permit` for it, it refuses every name.
fn audit_dns_guard(
    config: &Config,
    now: Timestamp,
    check: &mut impl FnMut(&'static str, Status, String),
) {
    if config.egress.dns_bind.is_empty() {
        check(
            "dns_guard",
            Status::Pass,
            "the DNS guard is off (egress.dns_bind is empty)".into(),
        );
        return;
    }
    let engine = match crate::policy::build_from_config(config) {
        Ok((_, engine)) => engine,
        Err(issues) => {
            check(
                "dns_guard",
                Status::Warn,
                format!(
                    "the policy does not load ({} problems; run `portcullis config check`), so \
                     what the DNS guard answers is unknown",
                    issues.len()
                ),
            );
            return;
        }
    };
    match anonymous_may_resolve(config, &engine, now) {
        Some(true) => check(
            "dns_guard",
            Status::Pass,
            format!(
                "the policy permits `@anonymous` to resolve names (sample \
                 `net:host:{DNS_SAMPLE_HOST}`)"
            ),
        ),
        Some(false) => check(
            "dns_guard",
            Status::Warn,
            "the DNS guard refuses every name: no Cedar policy permits `@anonymous`; add \
             `permit (principal == Portcullis::Agent::\"@anonymous\", action in \
             [Portcullis::Action::\"net:host\", Portcullis::Action::\"net:domain\"], resource);` to \
             a file of policy.cedar_files (docs/EGRESS.md), or set egress.dns_bind = \"\" to turn \
             the guard off"
                .into(),
        ),
        None => check(
            "dns_guard",
            Status::Warn,
            "the [egress] section does not load (run `portcullis config check`), so what the DNS \
             guard answers is unknown"
                .into(),
        ),
    }
}

/// Whether `engine` allows every `net:*` key of a DNS question for [`DNS_SAMPLE_HOST`] to the
/// anonymous subject of no project or of a project of `egress.dns_clients`: a dry run (no
/// event, no quota use), decided as the guard decides. `None` when `[egress]` does not compile.
pub fn anonymous_may_resolve(
    config: &Config,
    engine: &PolicyEngine,
    now: Timestamp,
) -> Option<bool> {
    let egress = EgressPolicy::from_config(&config.egress).ok()?;
    let host = portcullis_netpolicy::host::parse_host(DNS_SAMPLE_HOST).ok()?;
    let keys = egress.gate_keys(&host, None);
    let actions: Vec<GateKey> = keys
        .keys
        .iter()
        .map(|key| GateKey::parse(key).ok())
        .collect::<Option<_>>()?;
    let state = crate::egress::offline_policy_state();
    let mut projects: Vec<Option<String>> = vec![None];
    projects.extend(config.egress.dns_clients.values().cloned().map(Some));
    projects.sort();
    projects.dedup();
    Some(projects.into_iter().any(|project| {
        let subject = crate::egress::anonymous_subject(project);
        actions.iter().all(|action| {
            let request = Request {
                subject: subject.clone(),
                action: action.clone(),
                resource: keys.host.clone(),
                context: RequestContext {
                    arguments: serde_json::json!({ "surface": "dns" }),
                    ..RequestContext::default()
                },
            };
            crate::policy::explain(engine, &state, &request, &[], now).is_allow()
        })
    }))
}

#[cfg(unix)]
fn fd_hard_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum
}

#[cfg(not(unix))]
fn fd_hard_limit() -> Option<u64> {
    None
}

fn distinct_chars(token: &str) -> usize {
    token
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

#[cfg(unix)]
fn permissions(dir: &Path) -> (Option<u32>, Vec<String>) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(dir) else {
        return (None, Vec::new());
    };
    let mut loose = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(file_meta) = entry.metadata() {
                if file_meta.is_file() && file_meta.permissions().mode() & 0o077 != 0 {
                    loose.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    loose.sort();
    (Some(meta.permissions().mode()), loose)
}

#[cfg(not(unix))]
fn permissions(dir: &Path) -> (Option<u32>, Vec<String>) {
    (std::fs::metadata(dir).ok().map(|_| 0o700), Vec::new())
}

#[cfg(unix)]
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    // The owner of /proc/self is the process's effective user.
    std::fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

#[cfg(not(unix))]
fn effective_uid() -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            debug_env: false,
            effective_uid: Some(1000),
            data_dir: PathBuf::from("/var/lib/portcullis"),
            data_dir_mode: Some(0o40700),
            loose_files: Vec::new(),
            generated_admin_token: true,
            fd_hard_limit: Some(1_048_576),
            now: "2026-01-02T03:04:05Z".parse().unwrap(),
        }
    }

    #[track_caller]
    fn check(config: &Config, facts: &HostFacts, id: &str, expected: Status) {
        let checks = audit(config, facts);
        let found = checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(found.status, expected, "{found:?}");
    }

    #[test]
    fn checklist() {
        let config = Config::default();
        check(&config, &facts(), "debug_off", Status::Pass);
        check(
            &config,
            &HostFacts {
                debug_env: true,
                ..facts()
            },
            "debug_off",
            Status::Fail,
        );
        check(
            &config,
            &HostFacts {
                effective_uid: Some(0),
                ..facts()
            },
            "not_root",
            Status::Fail,
        );
        check(
            &config,
            &HostFacts {
                data_dir_mode: Some(0o40755),
                ..facts()
            },
            "data_dir_permissions",
            Status::Fail,
        );
        check(
            &config,
            &HostFacts {
                loose_files: vec!["portcullis.db".into()],
                ..facts()
            },
            "data_dir_permissions",
            Status::Fail,
        );
        let mut open = Config::default();
        open.server.bind = "0.0.0.0:8090".into();
        check(
            &open,
            &HostFacts {
                generated_admin_token: false,
                ..facts()
            },
            "admin_token",
            Status::Fail,
        );
        check(&open, &facts(), "bind", Status::Fail);
        open.server.behind_tls_proxy = true;
        check(&open, &facts(), "bind", Status::Pass);
        let mut weak = Config::default();
        weak.admin.token = Some("a".repeat(40));
        check(&weak, &facts(), "admin_token", Status::Fail);
    }

    #[test]
    fn new_listener_and_metrics_settings() {
        let config = Config::default();
        check(&config, &facts(), "slow_clients", Status::Pass);
        check(&config, &facts(), "fd_limit", Status::Pass);
        check(&config, &facts(), "auth_failure_limit", Status::Pass);
        check(&config, &facts(), "metrics_access", Status::Pass);
        check(
            &config,
            &HostFacts {
                fd_hard_limit: Some(1024),
                ..facts()
            },
            "fd_limit",
            Status::Warn,
        );
        let mut open = Config::default();
        open.server.bind = "0.0.0.0:8090".into();
        check(&open, &facts(), "metrics_access", Status::Warn);
        open.observability.metrics_token = Some("m".repeat(40));
        check(&open, &facts(), "metrics_access", Status::Pass);
        let mut slow = Config::default();
        slow.server.idle_timeout = crate::config::ConfigDuration::from_secs(3600);
        check(&slow, &facts(), "slow_clients", Status::Warn);
    }

    /// `config` with `cedar` as its one Cedar file (in `dir`).
    fn with_cedar(dir: &Path, cedar: &str, dns_clients: &[(&str, &str)]) -> Config {
        let path = dir.join("dns.cedar");
        std::fs::write(&path, cedar).unwrap();
        let mut config = Config::default();
        config.policy.cedar_files = vec![path];
        config.egress.dns_clients = dns_clients
            .iter()
            .map(|(cidr, project)| ((*cidr).to_owned(), (*project).to_owned()))
            .collect();
        config
    }

    const PERMIT: &str = r#"permit (principal == Portcullis::Agent::"@anonymous", action in [Portcullis::Action::"net:host", Portcullis::Action::"net:domain"], resource);"#;
    const PERMIT_WEB: &str = r#"permit (principal == Portcullis::Agent::"@anonymous", action in [Portcullis::Action::"net:host", Portcullis::Action::"net:domain"], resource) when { principal has project && principal.project == "web" };"#;
    const PERMIT_HOST_ONLY: &str = r#"permit (principal == Portcullis::Agent::"@anonymous", action == Portcullis::Action::"net:host", resource);"#;
    const PERMIT_AGENTS: &str =
        r#"permit (principal, action, resource) when { principal has project };"#;

    #[test]
    fn dns_guard_without_a_permit_for_anonymous_warns() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        assert!(
            !config.egress.dns_bind.is_empty(),
            "the guard is on by default"
        );
        check(&config, &facts(), "dns_guard", Status::Warn);
        let detail = audit(&config, &facts())
            .into_iter()
            .find(|c| c.id == "dns_guard")
            .unwrap()
            .detail;
        assert!(
            detail.contains("@anonymous") && detail.contains("permit"),
            "{detail}"
        );
        assert!(!detail.contains('\n'), "one line: {detail}");
        let mut off = Config::default();
        off.egress.dns_bind = String::new();
        check(&off, &facts(), "dns_guard", Status::Pass);
        for (cedar, clients, expected) in [
            (PERMIT, &[][..], Status::Pass),
            (PERMIT_WEB, &[][..], Status::Warn),
            (PERMIT_WEB, &[("10.1.0.0/24", "web")][..], Status::Pass),
            (PERMIT_HOST_ONLY, &[][..], Status::Warn),
            (PERMIT_AGENTS, &[][..], Status::Warn),
        ] {
            let config = with_cedar(dir.path(), cedar, clients);
            check(&config, &facts(), "dns_guard", expected);
        }
        let mut denied = with_cedar(dir.path(), PERMIT, &[]);
        denied.policy.deny = vec![portcullis_core::GatePattern::parse("net:*").unwrap()];
        check(&denied, &facts(), "dns_guard", Status::Warn);
    }
}
