//! A [`Store`] that fails on command, for fault-injection tests (feature `testing`).
//!
//! It wraps a real store and passes every call through until [`FaultyStore::fail`] is switched
//! on; from then every call that writes answers [`StoreError::Unavailable`] and changes nothing,
//! as a store whose disk or database went away would. Reads still answer, so a test can look at
//! what was recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;
use portcullis_budget::threshold::AlertTier;
use portcullis_budget::{
    AccountSnapshot, Amounts, BudgetMode, LineUsage, Meter, Reservation, ReservationId,
    ReserveOutcome, Settlement,
};
use portcullis_core::Event;
use portcullis_ledger::LedgerRecord;

use crate::error::BackendError;
use crate::{AppendReceipt, PolicyRecordKind, QuotaCount, Store, StoreError, StoredAgent};

/// A store that fails every write while [`FaultyStore::fail`] is on.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    failing: AtomicBool,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
        }
    }

    /// Turns the failure on or off.
    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(BackendError::bare(
                "fault injected by a test",
            )))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }

    async fn append(&self, event: Event) -> Result<AppendReceipt, StoreError> {
        self.check()?;
        self.inner.append(event).await
    }

    async fn ledger_page(&self, after: u64, limit: u32) -> Result<Vec<LedgerRecord>, StoreError> {
        self.inner.ledger_page(after, limit).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn insert_agent(&self, agent: StoredAgent) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_agent(agent).await
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete_agent(id).await
    }

    async fn agent_by_token_hash(
        &self,
        token_sha256: [u8; 32],
    ) -> Result<Option<StoredAgent>, StoreError> {
        self.inner.agent_by_token_hash(token_sha256).await
    }

    async fn list_agents(&self) -> Result<Vec<StoredAgent>, StoreError> {
        self.inner.list_agents().await
    }

    async fn put_policy_record(
        &self,
        kind: PolicyRecordKind,
        id: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_policy_record(kind, id, body).await
    }

    async fn delete_policy_record(
        &self,
        kind: PolicyRecordKind,
        id: &str,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete_policy_record(kind, id).await
    }

    async fn list_policy_records(
        &self,
        kind: PolicyRecordKind,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.list_policy_records(kind).await
    }

    fn quota_count(&self, count: QuotaCount) -> Result<(), StoreError> {
        self.check()?;
        self.inner.quota_count(count)
    }

    async fn quota_counts(&self) -> Result<Vec<QuotaCount>, StoreError> {
        self.inner.quota_counts().await
    }

    async fn budget_reserve(
        &self,
        meters: Vec<Meter>,
        amounts: Amounts,
        expires_at: Timestamp,
        mode: BudgetMode,
    ) -> Result<ReserveOutcome, StoreError> {
        self.check()?;
        self.inner
            .budget_reserve(meters, amounts, expires_at, mode)
            .await
    }

    async fn budget_settle(
        &self,
        id: ReservationId,
        actual: Amounts,
    ) -> Result<Settlement, StoreError> {
        self.check()?;
        self.inner.budget_settle(id, actual).await
    }

    async fn budget_release(&self, id: ReservationId) -> Result<Reservation, StoreError> {
        self.check()?;
        self.inner.budget_release(id).await
    }

    async fn budget_release_expired(&self, now: Timestamp) -> Result<Vec<Reservation>, StoreError> {
        self.check()?;
        self.inner.budget_release_expired(now).await
    }

    async fn budget_charge(
        &self,
        meters: Vec<Meter>,
        amounts: Amounts,
    ) -> Result<Vec<LineUsage>, StoreError> {
        self.check()?;
        self.inner.budget_charge(meters, amounts).await
    }

    async fn budget_usage(&self, meters: Vec<Meter>) -> Result<Vec<LineUsage>, StoreError> {
        self.inner.budget_usage(meters).await
    }

    async fn budget_accounts(&self) -> Result<Vec<AccountSnapshot>, StoreError> {
        self.inner.budget_accounts().await
    }

    async fn budget_reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        self.inner.budget_reservations().await
    }

    async fn budget_mark_alert(
        &self,
        key: &str,
        window: &str,
        tier: AlertTier,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.budget_mark_alert(key, window, tier).await
    }

    async fn budget_pause(&self, key: &str, until: Option<Timestamp>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.budget_pause(key, until).await
    }

    async fn budget_unpause(&self, key: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.budget_unpause(key).await
    }

    async fn budget_is_paused(&self, key: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.inner.budget_is_paused(key, now).await
    }

    async fn budget_pauses(&self) -> Result<Vec<(String, Option<Timestamp>)>, StoreError> {
        self.inner.budget_pauses().await
    }
}
