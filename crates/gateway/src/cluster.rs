//! Capsule propagation between nodes: this node's identity and key, its neighbours (peers, parent,
//! children), the record of what was relayed where, and `/admin/cluster`. The relaying itself is
//! in [`relay`].
//!
//! INVARIANT (relay-once): a capsule (by hash) goes to one neighbour at most once in a process's
//! life: [`ClusterRuntime::claim`] records the pair under one lock before the first attempt.
//! Together with "only a new adoption relays" (adoptions are persisted and restored without
//! relaying), a node never sends the same capsule twice to a neighbour.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use portcullis_capsule::{
    KeyFile, KeyFileError, Neighbor, NodeSigner, TrustStore, VerifiedCapsule,
};
use portcullis_core::{Decision, Event};

use crate::config::Config;
use crate::config::policy::resolve_path;
use crate::http::AppState;
use crate::policy::LoadIssue;
use crate::secrets::{PrivateFileError, SecretValue, Secrets, SecretsError};

pub mod relay;

/// Most (capsule, neighbour) pairs remembered; past it, pairs of expired capsules are dropped,
/// and if none are, further relays are skipped (`relay_memory_full`).
pub const MAX_RELAYED: usize = 65_536;

/// The cluster settings in service and what was relayed.
#[derive(Debug)]
pub struct ClusterRuntime {
    settings: ArcSwap<ClusterSettings>,
    /// (capsule hash, neighbour id) -> the capsule's expiry, seconds since the epoch.
    relayed: Mutex<HashMap<([u8; 32], String), u64>>,
    /// Neighbour id -> the last relay outcome.
    last: Mutex<BTreeMap<String, LastRelay>>,
    /// `None` when no HTTP client could be built: every relay then fails (`no_http_client`).
    client: Option<reqwest::Client>,
}

/// `[cluster]` resolved: the node key read and checked against the trust store, the neighbours'
/// admin tokens taken from the secrets.
#[derive(Debug, Default)]
pub struct ClusterSettings {
    /// `None`: this node relays nothing.
    node: Option<NodeSigner>,
    neighbors: Vec<Target>,
    retry: Retry,
}

/// A neighbour to relay to.
#[derive(Debug)]
pub struct Target {
    pub id: String,
    pub kind: Neighbor,
    /// The base URL as configured.
    pub url: String,
    /// `<url>/admin/capsules`.
    endpoint: reqwest::Url,
    token: SecretValue,
}

/// Timeouts and retries of one relay.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
}

/// The last relay attempt to a neighbour, for `GET /admin/cluster`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LastRelay {
    pub capsule: String,
    pub hash: String,
    /// `delivered`, `refused`, `retrying`, `failed` or `skipped`.
    pub outcome: &'static str,
    pub reason: &'static str,
    pub attempt: u32,
    pub at: Timestamp,
}

/// Why the `[cluster]` section cannot be put in service. Never carries a key or token.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.key_file {path}: {source}")]
    KeyFileRead {
        path: PathBuf,
        source: PrivateFileError,
    },
    #[error("cluster.key_file {path}: {source}")]
    KeyFile { path: PathBuf, source: KeyFileError },
    #[error("cluster.key_file {path} holds kid `{found}`, not cluster.kid `{expected}`")]
    KidMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("`[cluster]` names a node key but no trust store is configured (capsules.trust_store)")]
    NoTrustStore,
    #[error("cluster.kid `{kid}` is not a node key of the trust store (its `nodes`)")]
    NotInTrustStore { kid: String },
    #[error("the trust store binds node key `{kid}` to node `{found}`, not cluster.id `{id}`")]
    NodeMismatch {
        kid: String,
        found: String,
        id: String,
    },
    #[error("node key `{kid}` is revoked in the trust store")]
    Revoked { kid: String },
    #[error("cluster.key_file {path} is not the key the trust store lists for `{kid}`")]
    KeyMismatch { path: PathBuf, kid: String },
    #[error("{at}.token_secret: {source}")]
    Secret { at: String, source: SecretsError },
    #[error("{at}.url is not an http(s) base URL")]
    BadUrl { at: String },
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

impl ClusterSettings {
    /// Reads the node key (a private file) and checks it against `trust`; resolves each
    /// neighbour's token secret. `config` was validated by [`crate::config::load`].
    pub fn build(
        config: &Config,
        secrets: &Secrets,
        trust: Option<&TrustStore>,
    ) -> Result<Self, ClusterError> {
        let cluster = &config.cluster;
        let retry = Retry {
            timeout: cluster.relay_timeout.as_std(),
            attempts: cluster.relay_attempts.max(1),
            backoff: cluster.relay_backoff.as_std(),
        };
        let (Some(id), Some(key_file), Some(kid)) = (&cluster.id, &cluster.key_file, &cluster.kid)
        else {
            return Ok(Self {
                node: None,
                neighbors: Vec::new(),
                retry,
            });
        };
        let path = resolve_path(config, key_file);
        let text =
            crate::secrets::read_private_file(&path, portcullis_capsule::MAX_KEY_FILE_BYTES as u64)
                .map_err(|source| ClusterError::KeyFileRead {
                    path: key_file.clone(),
                    source,
                })?;
        let file = KeyFile::parse(text.as_bytes()).map_err(|source| ClusterError::KeyFile {
            path: key_file.clone(),
            source,
        })?;
        if &file.kid != kid {
            return Err(ClusterError::KidMismatch {
                path: key_file.clone(),
                found: file.kid,
                expected: kid.clone(),
            });
        }
        let trust = trust.ok_or(ClusterError::NoTrustStore)?;
        let listed = trust
            .node(kid)
            .ok_or_else(|| ClusterError::NotInTrustStore { kid: kid.clone() })?;
        if &listed.id != id {
            return Err(ClusterError::NodeMismatch {
                kid: kid.clone(),
                found: listed.id.clone(),
                id: id.clone(),
            });
        }
        if listed.revoked {
            return Err(ClusterError::Revoked { kid: kid.clone() });
        }
        if listed.key != file.key.public_key() {
            return Err(ClusterError::KeyMismatch {
                path: key_file.clone(),
                kid: kid.clone(),
            });
        }
        let mut neighbors = Vec::new();
        for (kind, at, neighbor) in cluster.neighbors() {
            let token = secrets
                .require(&neighbor.token_secret)
                .map_err(|source| ClusterError::Secret {
                    at: at.clone(),
                    source,
                })?
                .clone();
            let endpoint = capsules_endpoint(&neighbor.url).ok_or(ClusterError::BadUrl { at })?;
            neighbors.push(Target {
                id: neighbor.id.clone(),
                kind,
                url: neighbor.url.clone(),
                endpoint,
                token,
            });
        }
        Ok(Self {
            node: Some(NodeSigner {
                node: id.clone(),
                kid: kid.clone(),
                key: file.key,
            }),
            neighbors,
            retry,
        })
    }
}

/// `<base>/admin/capsules`, keeping any path prefix of the base URL.
fn capsules_endpoint(base: &str) -> Option<reqwest::Url> {
    let mut url = crate::config::http_url(base)?;
    let path = format!("{}/admin/capsules", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Some(url)
}

impl ClusterRuntime {
    pub fn new(settings: ClusterSettings) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .inspect_err(|err| tracing::error!(error = %err, "cannot build the relay HTTP client"))
            .ok();
        Self {
            settings: ArcSwap::from_pointee(settings),
            relayed: Mutex::new(HashMap::new()),
            last: Mutex::new(BTreeMap::new()),
            client,
        }
    }

    /// The settings in service; a relay keeps the snapshot it started with.
    pub fn settings(&self) -> Arc<ClusterSettings> {
        self.settings.load_full()
    }

    /// Records that `capsule` goes to `target`; `Err` with the skip reason when it already went
    /// (or the memory is full even after dropping expired capsules).
    // INVARIANT (relay-once): check and insert under one lock.
    fn claim(
        &self,
        capsule: &VerifiedCapsule,
        target: &str,
        now: Timestamp,
    ) -> Result<(), &'static str> {
        let mut relayed = self
            .relayed
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if relayed.len() >= MAX_RELAYED {
            let now = u64::try_from(now.as_second()).unwrap_or(0);
            relayed.retain(|_, expires_at| *expires_at > now);
        }
        let key = (capsule.hash(), target.to_owned());
        if relayed.contains_key(&key) {
            return Err("already_relayed");
        }
        if relayed.len() >= MAX_RELAYED {
            return Err("relay_memory_full");
        }
        relayed.insert(key, capsule.expires_at());
        Ok(())
    }

    fn record(&self, target: &str, last: LastRelay) {
        self.last
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(target.to_owned(), last);
    }

    /// `GET /admin/cluster`: this node, its neighbours with their last relay outcome.
    pub fn describe(&self) -> serde_json::Value {
        let settings = self.settings();
        let last = self
            .last
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        let n_relayed = self
            .relayed
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len();
        let neighbors: Vec<serde_json::Value> = settings
            .neighbors
            .iter()
            .map(|target| {
                serde_json::json!({
                    "id": target.id,
                    "kind": kind_name(target.kind),
                    "url": target.url,
                    "last_relay": last.get(&target.id),
                })
            })
            .collect();
        serde_json::json!({
            "node": settings.node.as_ref().map(|node| serde_json::json!({
                "id": node.node,
                "kid": node.kid,
                "alg": node.key.algorithm().as_str(),
            })),
            "neighbors": neighbors,
            "relay": {
                "timeout_ms": u64::try_from(settings.retry.timeout.as_millis()).unwrap_or(u64::MAX),
                "attempts": settings.retry.attempts,
                "backoff_ms": u64::try_from(settings.retry.backoff.as_millis()).unwrap_or(u64::MAX),
            },
            "relayed": n_relayed,
        })
    }

    /// Puts new settings in service; last outcomes of neighbours no longer listed are dropped.
    fn swap(&self, settings: ClusterSettings) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        last.retain(|id, _| settings.neighbors.iter().any(|target| &target.id == id));
        self.settings.store(Arc::new(settings));
    }
}

pub const fn kind_name(kind: Neighbor) -> &'static str {
    match kind {
        Neighbor::Parent => "parent",
        Neighbor::Peer => "peer",
        Neighbor::Child => "child",
    }
}

/// `POST /admin/cluster/reload` and SIGHUP: re-reads `[cluster]` from the configuration file,
/// with the secrets and the trust store in service, and swaps it in; a failure keeps the
/// settings in service. Both outcomes are ledger events.
pub async fn reload(state: &AppState) -> Result<usize, Vec<LoadIssue>> {
    let outcome = crate::policy::reread_config(&state.config).and_then(|fresh| {
        let trust = state.policy.capsules.trust_store();
        ClusterSettings::build(&fresh, &state.secrets, trust.as_deref()).map_err(|err| {
            vec![LoadIssue {
                file: "cluster".to_owned(),
                message: err.to_string(),
            }]
        })
    });
    match outcome {
        Ok(settings) => {
            let n_neighbors = settings.neighbors.len();
            let node = settings.node.as_ref().map(|node| node.node.clone());
            state.cluster.swap(settings);
            state
                .events
                .emit_best_effort(
                    Event::new("cluster.reloaded", Decision::Info, "ok")
                        .data(serde_json::json!({"node": node, "neighbors": n_neighbors})),
                )
                .await;
            Ok(n_neighbors)
        }
        Err(issues) => {
            state
                .events
                .emit_best_effort(
                    Event::new("cluster.reload_failed", Decision::Deny, "config_invalid")
                        .data(serde_json::json!({ "errors": issues })),
                )
                .await;
            Err(issues)
        }
    }
}

/// `/admin/cluster` routes (behind admin authentication).
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/cluster", get(describe))
        .route("/cluster/reload", post(reload_route))
}

async fn describe(State(state): State<AppState>) -> Response {
    Json(state.cluster.describe()).into_response()
}

async fn reload_route(State(state): State<AppState>) -> Response {
    match reload(&state).await {
        Ok(neighbors) => {
            Json(serde_json::json!({"status": "reloaded", "neighbors": neighbors})).into_response()
        }
        Err(issues) => crate::admin::policy_routes::config_invalid(&issues),
    }
}

#[cfg(test)]
mod tests;
