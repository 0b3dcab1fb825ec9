//! Portcullis storage: the [`Store`] trait the gateway calls, and its SQLite implementation.
//!
//! An adapter: depends on the pure crates (`portcullis-core`, `portcullis-ledger`) and on
//! SQLite; never on the gateway, HTTP or another adapter. The trait carries no SQLite types, so a
//! PostgreSQL implementation can follow without changing callers.
//!
//! Invariants:
//! - An append is acknowledged only after the transaction holding it is durable
//!   (`synchronous = FULL`); concurrent appends share one transaction (group commit).
//! - Budget counters are authoritative in memory under one lock (atomic check-and-reserve) and
//!   persisted to `budgets.db` (WAL, `synchronous = NORMAL`) by their own writer with group
//!   commit; a budget call that changes state is answered only after its commit, and changes
//!   commit in the order the counters made them.
//! - Ledger rows hold the exact bytes `portcullis-ledger` encoded; the hash covers those bytes.
//! - seqs are dense from 1; one writer thread assigns them, so there is no second writer.
//! - The data dir is created 0700 and every file in it 0600; permissions are never widened.

mod agent_cache;
pub mod error;
#[cfg(feature = "testing")]
pub mod faulty;
mod files;
mod quota;
mod schema;
pub mod sqlite;
mod sqlite_budget;
mod sqlite_budget_writer;
mod sqlite_writer;
pub mod verify_dir;
mod wal;

use jiff::Timestamp;
use portcullis_budget::threshold::AlertTier;
use portcullis_budget::{
    AccountSnapshot, Amounts, BudgetMode, LineUsage, Meter, Reservation, ReservationId,
    ReserveOutcome, Settlement,
};
use portcullis_core::error::ReasonInfo;
use portcullis_core::{ErrorCode, Event};
use portcullis_ledger::LedgerRecord;

pub use error::{BackendError, StoreError, VerifyDataDirError};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use verify_dir::verify_data_dir;

/// Most records one [`Store::ledger_page`] call returns.
pub const MAX_PAGE: u32 = 1000;

/// The storage the gateway uses. Every method fails closed: an error means nothing was stored.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Cheap liveness check used by /readyz.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Appends one event to the hash-chained ledger; returns only once the record is durable (group
    /// commit: concurrent appends share one durable transaction).
    async fn append(&self, event: Event) -> Result<AppendReceipt, StoreError>;
    /// Records with seq > after, ascending, at most limit (limit capped at [`MAX_PAGE`]).
    async fn ledger_page(&self, after: u64, limit: u32) -> Result<Vec<LedgerRecord>, StoreError>;
    /// Waits for pending appends and writes a checkpoint; called at shutdown.
    async fn flush(&self) -> Result<(), StoreError>;
    /// Stores a new agent; a duplicate id (or token hash) is [`StoreError::Conflict`].
    async fn insert_agent(&self, agent: StoredAgent) -> Result<(), StoreError>;
    /// Deletes an agent; `false` when there was none with this id.
    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError>;
    async fn agent_by_token_hash(
        &self,
        token_sha256: [u8; 32],
    ) -> Result<Option<StoredAgent>, StoreError>;
    /// Every stored agent, ordered by id.
    async fn list_agents(&self) -> Result<Vec<StoredAgent>, StoreError>;
    /// Inserts or replaces the policy record `kind`/`id` (a contract's JSON, a capsule's token, an
    /// engaged kill switch).
    async fn put_policy_record(
        &self,
        kind: PolicyRecordKind,
        id: &str,
        body: &str,
    ) -> Result<(), StoreError>;
    /// Deletes a policy record; `false` when there was none.
    async fn delete_policy_record(
        &self,
        kind: PolicyRecordKind,
        id: &str,
    ) -> Result<bool, StoreError>;
    /// Every policy record of `kind` as `(id, body)`, ordered by id.
    async fn list_policy_records(
        &self,
        kind: PolicyRecordKind,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Queues `count` as the quota counter of its contract, without waiting. It is durable no
    /// later than any [`Store::append`] acknowledged after this call returned (one writer, in
    /// order, sharing the append's group commit): the gate counts a hit, then records the
    /// decision, so the count is durable before the action it admits. A count for an earlier
    /// window than the stored one, or lower in the same window, changes nothing.
    fn quota_count(&self, count: QuotaCount) -> Result<(), StoreError>;
    /// Every stored quota counter (one per contract, its latest window), ordered by contract.
    async fn quota_counts(&self) -> Result<Vec<QuotaCount>, StoreError>;

    // Budgets (docs/BUDGETS.md). Meters come from `portcullis_budget::ScopeLine::meter`; every
    // method answers from the authoritative in-memory counters and, when it changes them,
    // returns only after the change is committed.

    /// Reserves `amounts` in every meter in one atomic step. In `enforce` mode it answers
    /// [`ReserveOutcome::Exceeded`], changing nothing, when in ANY meter spent + reserved +
    /// amount would pass the limit; otherwise [`ReserveOutcome::Reserved`] with each line's
    /// usage before and the amount added (in `report` mode lines may be over: check
    /// `LineUsage::exceeds`). The reservation lives until settled, released, or released by
    /// [`Store::budget_release_expired`] at or after `expires_at`.
    async fn budget_reserve(
        &self,
        meters: Vec<Meter>,
        amounts: Amounts,
        expires_at: Timestamp,
        mode: BudgetMode,
    ) -> Result<ReserveOutcome, StoreError>;
    /// Replaces reservation `id` by the actual amounts, recorded in full even when higher than
    /// reserved (`SettledHold::overage` reports the excess). [`StoreError::NotFound`] when the
    /// reservation is gone (settled, released, expired): record the spend with
    /// [`Store::budget_charge`] then.
    async fn budget_settle(
        &self,
        id: ReservationId,
        actual: Amounts,
    ) -> Result<Settlement, StoreError>;
    /// Drops reservation `id` without spend (the request failed); [`StoreError::NotFound`] when
    /// it is gone.
    async fn budget_release(&self, id: ReservationId) -> Result<Reservation, StoreError>;
    /// Releases every reservation whose `expires_at` is at or before `now` and returns them, so
    /// the caller can record an event for each (also at start-up: reservations of a previous
    /// run are loaded live and released here once expired).
    async fn budget_release_expired(&self, now: Timestamp) -> Result<Vec<Reservation>, StoreError>;
    /// Records `amounts` in every meter without a check or reservation; returns the lines as
    /// they were before. For spend that happened anyway.
    async fn budget_charge(
        &self,
        meters: Vec<Meter>,
        amounts: Amounts,
    ) -> Result<Vec<LineUsage>, StoreError>;
    /// The meters' current spend and holds (amount 0).
    async fn budget_usage(&self, meters: Vec<Meter>) -> Result<Vec<LineUsage>, StoreError>;
    /// Every account with spend or holds, for the admin view.
    async fn budget_accounts(&self) -> Result<Vec<AccountSnapshot>, StoreError>;
    /// Live reservations, ordered by expiry.
    async fn budget_reservations(&self) -> Result<Vec<Reservation>, StoreError>;
    /// Marks alert `tier` fired for the line `key` in `window` (`WindowSpan::key`); `true` only
    /// the first time, so each tier fires once per key per window.
    async fn budget_mark_alert(
        &self,
        key: &str,
        window: &str,
        tier: AlertTier,
    ) -> Result<bool, StoreError>;
    /// Pauses new sessions under `key` until `until` (the window's reset) or an unpause.
    async fn budget_pause(&self, key: &str, until: Option<Timestamp>) -> Result<(), StoreError>;
    /// Lifts a pause; `false` when `key` was not paused.
    async fn budget_unpause(&self, key: &str) -> Result<bool, StoreError>;
    /// Whether `key` is paused at `now`.
    async fn budget_is_paused(&self, key: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Every pause as `(key, until)`, ordered by key (including lapsed ones).
    async fn budget_pauses(&self) -> Result<Vec<(String, Option<Timestamp>)>, StoreError>;
}

/// What a policy record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyRecordKind {
    /// A contract added through the admin API, as JSON.
    Contract,
    /// An adopted capsule, as its token (re-verified at start-up).
    Capsule,
    /// An engaged kill switch, keyed by its scope (`global`, `agent:<id>`, `project:<p>`), as JSON.
    KillSwitch,
    /// A tool pin (`<upstream>.<tool>` -> hashes), as JSON.
    ToolPin,
    /// A budget added, replaced or removed through the admin API, keyed by its id, as JSON.
    Budget,
    /// The immutable part of the configuration's policy as last started with (id `config`), as
    /// JSON, so that a start can record what a restart changed.
    Immutable,
}

impl PolicyRecordKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicyRecordKind::Contract => "contract",
            PolicyRecordKind::Capsule => "capsule",
            PolicyRecordKind::KillSwitch => "killswitch",
            PolicyRecordKind::ToolPin => "tool_pin",
            PolicyRecordKind::Budget => "budget",
            PolicyRecordKind::Immutable => "immutable",
        }
    }
}

/// A contract's quota hits in one window (the policy engine's quota counters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaCount {
    /// The contract id (`<capsule id>::<contract id>` for capsule contracts).
    pub contract: String,
    /// Start of the window the count belongs to.
    pub window_start: Timestamp,
    pub count: u64,
}

/// Where an appended event landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    pub seq: u64,
    pub hash: [u8; 32],
}

/// An agent created at run time. Only the SHA-256 of its token is ever stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAgent {
    pub id: String,
    pub token_sha256: [u8; 32],
    pub roles: Vec<String>,
    pub tags: Vec<String>,
    pub project: Option<String>,
    pub allow: Vec<String>,
    pub may_assert_identity: bool,
    /// How the agent sees the MCP catalog: [`AGENT_CATALOGS`] lists the values.
    pub catalog: String,
    pub created_at: jiff::Timestamp,
}

/// The values of [`StoredAgent::catalog`]: every tool (`full`), or only the broker verbs (`meta`).
pub const AGENT_CATALOGS: &[&str] = &["full", "meta"];

/// Every reason code this crate emits (see [`StoreError::code`]).
pub const REASONS: &[ReasonInfo] = &[
    ReasonInfo {
        code: "store_conflict",
        maps_to: ErrorCode::Conflict,
        summary: "the record already exists (duplicate agent id or token)",
    },
    ReasonInfo {
        code: "store_not_found",
        maps_to: ErrorCode::NotFound,
        summary: "no such record",
    },
    ReasonInfo {
        code: "store_unavailable",
        maps_to: ErrorCode::StoreUnavailable,
        summary: "the store could not be reached or the write failed",
    },
    ReasonInfo {
        code: "store_corrupt",
        maps_to: ErrorCode::Internal,
        summary: "a stored record could not be decoded",
    },
    ReasonInfo {
        code: "store_io",
        maps_to: ErrorCode::StoreUnavailable,
        summary: "a data dir file could not be read or written",
    },
    ReasonInfo {
        code: "event_too_large",
        maps_to: ErrorCode::Internal,
        summary: "the event's ledger body exceeds 64 KiB and was not stored",
    },
    ReasonInfo {
        code: "event_unencodable",
        maps_to: ErrorCode::Internal,
        summary: "the event's data holds a value RFC 8785 JSON cannot carry",
    },
    ReasonInfo {
        code: "store_schema_too_new",
        maps_to: ErrorCode::StoreUnavailable,
        summary: "the database was written by a newer portcullis",
    },
    ReasonInfo {
        code: "store_insecure",
        maps_to: ErrorCode::StoreUnavailable,
        summary: "the data dir is writable by others, or node.pub does not match node.key",
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{FileError, InsecureError};

    #[test]
    fn every_error_code_is_in_the_reasons_table() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let errors = [
            StoreError::Conflict,
            StoreError::NotFound,
            StoreError::Unavailable(BackendError::bare("x")),
            StoreError::Corrupt(error::CorruptError::Seq { seq: -1 }),
            StoreError::Io(FileError {
                action: "read",
                path: "x".into(),
                source: io(),
            }),
            StoreError::TooLarge { size: 2, limit: 1 },
            StoreError::SchemaTooNew {
                found: 2,
                supported: 1,
            },
            StoreError::Unencodable(portcullis_ledger::LedgerError::SeqOutOfRange { seq: 0 }),
            StoreError::Insecure(InsecureError::KeyMismatch { dir: "x".into() }),
        ];
        assert_eq!(errors.len(), REASONS.len());
        for err in &errors {
            let info = REASONS.iter().find(|info| info.code == err.code());
            assert_eq!(
                info.map(|info| info.maps_to),
                Some(err.error_code()),
                "{}",
                err.code()
            );
        }
    }
}
