//! Store errors: typed, lowercase, and free of backend types so callers stay backend-neutral.

use std::path::PathBuf;

use portcullis_core::ErrorCode;
use portcullis_ledger::{LedgerError, VerifyFailure};

/// Why a store operation failed. Nothing was stored when an error is returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a record with this key already exists")]
    Conflict,
    #[error("no such record")]
    NotFound,
    #[error("store unavailable")]
    Unavailable(#[source] BackendError),
    #[error("stored data is corrupt")]
    Corrupt(#[source] CorruptError),
    #[error("data dir file error")]
    Io(#[source] FileError),
    #[error("event ledger body is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("event cannot be encoded as a ledger body")]
    Unencodable(#[source] LedgerError),
    #[error("data dir is not safe to use")]
    Insecure(#[source] InsecureError),
}

/// Maps a SQLite failure to [`StoreError::Unavailable`], naming what the store was doing.
pub(crate) fn sqlite_error(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |err| StoreError::Unavailable(BackendError::new(context, err))
}

impl StoreError {
    /// The stable reason code (listed in [`crate::REASONS`]).
    pub const fn code(&self) -> &'static str {
        match self {
            StoreError::Conflict => "store_conflict",
            StoreError::NotFound => "store_not_found",
            StoreError::Unavailable(_) => "store_unavailable",
            StoreError::Corrupt(_) => "store_corrupt",
            StoreError::Io(_) => "store_io",
            StoreError::TooLarge { .. } => "event_too_large",
            StoreError::SchemaTooNew { .. } => "store_schema_too_new",
            StoreError::Unencodable(_) => "event_unencodable",
            StoreError::Insecure(_) => "store_insecure",
        }
    }

    /// The registry code the gateway answers with.
    pub const fn error_code(&self) -> ErrorCode {
        match self {
            StoreError::Conflict => ErrorCode::Conflict,
            StoreError::NotFound => ErrorCode::NotFound,
            StoreError::Unavailable(_)
            | StoreError::Io(_)
            | StoreError::SchemaTooNew { .. }
            | StoreError::Insecure(_) => ErrorCode::StoreUnavailable,
            StoreError::Corrupt(_) | StoreError::TooLarge { .. } | StoreError::Unencodable(_) => {
                ErrorCode::Internal
            }
        }
    }
}

/// A failure inside the storage engine, with what the store was doing.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct BackendError {
    context: &'static str,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    pub(crate) fn new(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            context,
            source: Some(Box::new(source)),
        }
    }

    pub(crate) const fn bare(context: &'static str) -> Self {
        Self {
            context,
            source: None,
        }
    }
}

/// A stored value that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum CorruptError {
    #[error("ledger record {seq} does not decode")]
    Record {
        seq: u64,
        #[source]
        source: LedgerError,
    },
    #[error("ledger record {seq} has a hash column that is not 32 bytes")]
    HashColumn { seq: u64 },
    #[error("ledger seq {seq} is not a positive integer")]
    Seq { seq: i64 },
    #[error("agent `{id}` has an unreadable column `{column}`")]
    Agent { id: String, column: &'static str },
    #[error("a row of `{table}` in budgets.db does not decode")]
    BudgetRow { table: &'static str },
    #[error("key file {path} is not a hex ed25519 key")]
    KeyFile { path: PathBuf },
    #[error("the quota counter of contract `{contract}` does not decode")]
    QuotaRow { contract: String },
}

/// A data dir file operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}")]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Why the data dir was refused.
#[derive(Debug, thiserror::Error)]
pub enum InsecureError {
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} has mode {mode:o}; group and others must not be able to write")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("node.pub does not match node.key in {dir}")]
    KeyMismatch { dir: PathBuf },
}

/// Why `ledger verify` on a data dir did not pass.
#[derive(Debug, thiserror::Error)]
pub enum VerifyDataDirError {
    #[error("no ledger database at {path}")]
    Missing { path: PathBuf },
    #[error("cannot read the ledger database")]
    Database(#[source] BackendError),
    #[error("cannot read the node public key")]
    Key(#[source] FileError),
    #[error("node public key file {path} is not a hex ed25519 public key")]
    BadKey { path: PathBuf },
    #[error("ledger row {seq} has a seq that is not a positive integer")]
    BadRow { seq: i64 },
    #[error("ledger verification failed: {0}")]
    Failed(VerifyFailure),
}

impl VerifyDataDirError {
    /// The verification failure, when the ledger itself is bad (as opposed to unreadable).
    pub fn failure(&self) -> Option<&VerifyFailure> {
        match self {
            VerifyDataDirError::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}
