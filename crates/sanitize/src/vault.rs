//! The per-request vault of synthetic values and the scope that keys their derivation.

use std::collections::HashMap;

use crate::entity::EntityType;

/// Default for [`Vault::new`]: the most distinct synthetic values one request may hold.
pub const DEFAULT_VAULT_LIMIT: usize = 4096;

/// What makes synthetic values consistent: the same value in the same scope (a session, say)
/// always gets the same synthetic value; another scope gets another one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    id: Vec<u8>,
}

/// Synthetic value to original for one request, so a response can be restored.
///
/// Its `Debug` output shows only the number of entries, never a value.
#[derive(Clone, Default)]
pub struct Vault {
    by_original: HashMap<(EntityType, String), String>,
    by_synthetic: HashMap<String, String>,
    limit: usize,
}

impl Scope {
    /// A scope identified by opaque bytes (a session id, say).
    pub fn new(id: impl AsRef<[u8]>) -> Self {
        Scope {
            id: id.as_ref().to_vec(),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.id
    }
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scope({} bytes)", self.id.len())
    }
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("len", &self.by_synthetic.len())
            .field("limit", &self.limit)
            .finish()
    }
}

impl Vault {
    /// An empty vault holding at most [`DEFAULT_VAULT_LIMIT`] values.
    pub fn new() -> Self {
        Vault::with_limit(DEFAULT_VAULT_LIMIT)
    }

    /// An empty vault holding at most `limit` values.
    pub fn with_limit(limit: usize) -> Self {
        Vault {
            by_original: HashMap::new(),
            by_synthetic: HashMap::new(),
            limit,
        }
    }

    /// Number of synthetic values recorded.
    pub fn len(&self) -> usize {
        self.by_synthetic.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_synthetic.is_empty()
    }

    /// The original behind a synthetic value.
    pub fn original(&self, synthetic: &str) -> Option<&str> {
        self.by_synthetic.get(synthetic).map(String::as_str)
    }

    /// Every `(synthetic, original)` pair, in no particular order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_synthetic
            .iter()
            .map(|(synthetic, original)| (synthetic.as_str(), original.as_str()))
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn synthetic_for(&self, entity: EntityType, original: &str) -> Option<&str> {
        self.by_original
            .get(&(entity, original.to_owned()))
            .map(String::as_str)
    }

    pub(crate) fn insert(&mut self, entity: EntityType, original: String, synthetic: String) {
        self.by_synthetic
            .insert(synthetic.clone(), original.clone());
        self.by_original.insert((entity, original), synthetic);
    }
}
