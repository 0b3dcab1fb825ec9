//! The SQLite store: WAL, `synchronous = FULL`, one writer thread doing group commit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Clock, Event};
use portcullis_ledger::LedgerRecord;

use crate::error::{BackendError, StoreError};
use crate::{AppendReceipt, Store, StoredAgent};

/// Tuning of the SQLite store. See [`SqliteOptions::new`] for the defaults.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Write a signed checkpoint after this many records (default 1000).
    pub checkpoint_every: u64,
    /// Write a signed checkpoint when this much time passed since the last one and records were
    /// appended (default 60 s).
    pub checkpoint_interval: Duration,
    /// The clock that stamps records and checkpoints.
    pub clock: Arc<dyn Clock>,
}

impl SqliteOptions {
    /// The defaults: a checkpoint every 1000 records or 60 s.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            clock,
        }
    }
}

/// The embedded store in `<data dir>/portcullis.db`.
#[derive(Debug)]
pub struct SqliteStore {
    node_public_key: [u8; 32],
}

impl SqliteStore {
    /// Opens (creating when missing) the store in `data_dir`.
    pub fn open(data_dir: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let _ = (data_dir, options);
        Err(StoreError::Unavailable(BackendError::bare(
            "not implemented yet",
        )))
    }

    /// The node's ed25519 public key (also in `<data dir>/node.pub`, hex).
    pub fn node_public_key(&self) -> [u8; 32] {
        self.node_public_key
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(BackendError::bare(
            "not implemented yet",
        )))
    }
    async fn append(&self, event: Event) -> Result<AppendReceipt, StoreError> {
        let _ = event;
        Err(StoreError::Unavailable(BackendError::bare(
            "not implemented yet",
        )))
    }
    async fn ledger_page(&self, after: u64, limit: u32) -> Result<Vec<LedgerRecord>, StoreError> {
        let _ = (after, limit);
        Err(StoreError::Unavailable(BackendError::bare(
            "not implemented yet",
        )))
    }
    async fn flush(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(BackendError::bare(
            "not implemented yet",
        )))
    }
    async fn insert_agent(&self, agent: StoredAgent) -> Result<(), StoreError> {
        let _ = agent;
        Err(StoreError::Unavailable(BackendError::bare(
            "not implemented yet",
        )))
    }
    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        let _ = id;
        Err(StoreError::Unavailable(BackendError::bare(
            "not implemented yet",
        )))
    }
    async fn agent_by_token_hash(
        &self,
        token_sha256: [u8; 32],
    ) -> Result<Option<StoredAgent>, StoreError> {
        let _ = token_sha256;
        Err(StoreError::Unavailable(BackendError::bare(
            "not implemented yet",
        )))
    }
    async fn list_agents(&self) -> Result<Vec<StoredAgent>, StoreError> {
        Err(StoreError::Unavailable(BackendError::bare(
            "not implemented yet",
        )))
    }
}
