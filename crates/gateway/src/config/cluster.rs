//! `[cluster]`: this node's id and key, and the neighbours it relays capsules to.

use std::collections::BTreeSet;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigDuration};

/// Most neighbours (peers, parent and children together).
pub const MAX_NEIGHBORS: usize = 64;

/// `[cluster]`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's id, as the trust store's `nodes` entry for `kid` names it. Unset: this node
    /// relays no capsule (it still adopts capsules posted to it).
    pub id: Option<String>,
    /// This node's secret key file (`portcullis capsule keygen --node`), signing its hop records.
    /// Relative paths are read from the configuration file's directory.
    pub key_file: Option<PathBuf>,
    /// The node key's kid; the trust store must list its public key under `nodes` with `id`.
    pub kid: Option<String>,
    /// Nodes beside this one: capsules of scope `peers` and `all` are relayed to them.
    pub peers: Vec<NeighborConfig>,
    /// The node above this one: capsules of scope `all` are relayed to it.
    pub parent: Option<NeighborConfig>,
    /// Nodes below this one: capsules of scope `children` and `all` are relayed to them.
    pub children: Vec<NeighborConfig>,
    /// Time one relay request may take.
    pub relay_timeout: ConfigDuration,
    /// Attempts per neighbour and capsule (unreachable, 429 or 5xx answers are retried).
    pub relay_attempts: u32,
    /// Pause before the second attempt; it doubles each time, up to 60s.
    pub relay_backoff: ConfigDuration,
}

/// A neighbouring node: `{ id, url, token_secret }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    /// The neighbour's node id (its trust-store `nodes` id): a capsule is never relayed to a node
    /// already among its hops.
    pub id: String,
    /// Base URL of its HTTP listener, e.g. `https://gw-b.internal:8090`; capsules are posted to
    /// `<url>/admin/capsules`.
    pub url: String,
    /// Name of the secret (`[secrets]`) holding the neighbour's admin token.
    pub token_secret: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            id: None,
            key_file: None,
            kid: None,
            peers: Vec::new(),
            parent: None,
            children: Vec::new(),
            relay_timeout: ConfigDuration::from_secs(5),
            relay_attempts: 3,
            relay_backoff: ConfigDuration::from_secs(1),
        }
    }
}

impl ClusterConfig {
    /// Every neighbour with its kind and the key path it sits at (`cluster.peers[0]`).
    pub fn neighbors(
        &self,
    ) -> impl Iterator<Item = (portcullis_capsule::Neighbor, String, &NeighborConfig)> {
        use portcullis_capsule::Neighbor;
        let peers = self
            .peers
            .iter()
            .enumerate()
            .map(|(idx, peer)| (Neighbor::Peer, format!("cluster.peers[{idx}]"), peer));
        let parent = self
            .parent
            .iter()
            .map(|parent| (Neighbor::Parent, "cluster.parent".to_owned(), parent));
        let children = self
            .children
            .iter()
            .enumerate()
            .map(|(idx, child)| (Neighbor::Child, format!("cluster.children[{idx}]"), child));
        peers.chain(parent).chain(children)
    }
}

/// Checks `[cluster]` without I/O: the key file, the secrets and the trust store are checked
/// when the gateway builds its cluster settings.
pub(crate) fn validate(config: &Config, issue: &mut impl FnMut(String, String)) {
    let cluster = &config.cluster;
    let id_message = "must be 1-64 printable ASCII characters without spaces";
    for (key, value) in [("cluster.id", &cluster.id), ("cluster.kid", &cluster.kid)] {
        if value
            .as_deref()
            .is_some_and(|text| !portcullis_capsule::is_key_id(text))
        {
            issue(key.into(), id_message.into());
        }
    }
    let identity = [
        cluster.id.is_some(),
        cluster.key_file.is_some(),
        cluster.kid.is_some(),
    ];
    if identity.contains(&true) && identity.contains(&false) {
        issue(
            "cluster".into(),
            "set all of `id`, `key_file` and `kid`, or none of them".into(),
        );
    }
    let n_neighbors = cluster.neighbors().count();
    if n_neighbors > 0 && cluster.id.is_none() {
        issue(
            "cluster.id".into(),
            "a node with peers, a parent or children needs `id`, `key_file` and `kid`".into(),
        );
    }
    if n_neighbors > MAX_NEIGHBORS {
        issue(
            "cluster".into(),
            format!("at most {MAX_NEIGHBORS} peers, parent and children in all"),
        );
    }
    let mut seen = BTreeSet::new();
    for (_, at, neighbor) in cluster.neighbors() {
        if !portcullis_capsule::is_key_id(&neighbor.id) {
            issue(format!("{at}.id"), id_message.into());
        } else if cluster.id.as_deref() == Some(neighbor.id.as_str()) {
            issue(
                format!("{at}.id"),
                format!("`{}` is this node's own id", neighbor.id),
            );
        } else if !seen.insert(neighbor.id.as_str()) {
            issue(
                format!("{at}.id"),
                format!("node `{}` is listed twice", neighbor.id),
            );
        }
        let base = crate::config::http_url(&neighbor.url)
            .filter(|url| url.query().is_none() && url.fragment().is_none());
        if base.is_none() {
            issue(
                format!("{at}.url"),
                format!(
                    "`{}` is not an http(s) base URL without credentials, query or fragment",
                    neighbor.url
                ),
            );
        }
        if !crate::secrets::is_valid_name(&neighbor.token_secret) {
            issue(
                format!("{at}.token_secret"),
                "name the secret (`[secrets]`) holding the neighbour's admin token".into(),
            );
        }
    }
    let timeout = cluster.relay_timeout.as_std();
    if timeout.is_zero() || timeout.as_secs() > 60 {
        issue(
            "cluster.relay_timeout".into(),
            "must be longer than zero and at most 60s".into(),
        );
    }
    if !(1..=10).contains(&cluster.relay_attempts) {
        issue(
            "cluster.relay_attempts".into(),
            "must be between 1 and 10".into(),
        );
    }
    if cluster.relay_backoff.as_std().as_secs() > 60 {
        issue("cluster.relay_backoff".into(), "must be at most 60s".into());
    }
}
