//! Quota counters backed by the store: authoritative in memory, each new count queued on the
//! store's ledger writer before the decision that counted it is recorded.
//!
//! INVARIANT (quota-before-record): [`StoreQuotaCounters::try_hit`] queues the new count before it
//! returns; the gate then appends the decision's event on the same writer, and answers only once
//! that append is durable, so a count is durable before the action it admits (no extra fsync: the
//! count rides the decision's group commit). A count that cannot be queued is not counted and the
//! decision denies (`policy_error`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use portcullis_policy::{QuotaCounters, QuotaKey, QuotaStoreError};
use portcullis_store::{QuotaCount, Store, StoreError};

/// One window per contract, as in the store.
#[derive(Debug)]
pub struct StoreQuotaCounters {
    windows: Mutex<HashMap<String, (Timestamp, u64)>>,
    store: Arc<dyn Store>,
}

impl StoreQuotaCounters {
    /// Loads every stored counter.
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let windows = store
            .quota_counts()
            .await?
            .into_iter()
            .map(|count| (count.contract, (count.window_start, count.count)))
            .collect();
        Ok(Self {
            windows: Mutex::new(windows),
            store,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Timestamp, u64)>> {
        self.windows
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl QuotaCounters for StoreQuotaCounters {
    fn used(&self, key: &QuotaKey) -> Result<u64, QuotaStoreError> {
        Ok(match self.lock().get(&key.contract) {
            Some((start, count)) if *start == key.window_start => *count,
            _ => 0,
        })
    }

    fn try_hit(&self, key: &QuotaKey, limit: u64) -> Result<bool, QuotaStoreError> {
        let mut windows = self.lock();
        let used = match windows.get(&key.contract) {
            Some((start, count)) if *start == key.window_start => *count,
            // A later window than the key's: the key's window is over.
            Some((start, _)) if *start > key.window_start => return Ok(false),
            _ => 0,
        };
        if used >= limit {
            return Ok(false);
        }
        let count = used.saturating_add(1);
        // Queued under the lock, so counts of one contract reach the writer in order.
        self.store
            .quota_count(QuotaCount {
                contract: key.contract.clone(),
                window_start: key.window_start,
                count,
            })
            .map_err(|err| {
                tracing::error!(contract = %key.contract, error = %err, "cannot store a quota count");
                QuotaStoreError
            })?;
        windows.insert(key.contract.clone(), (key.window_start, count));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gateway;

    fn key(second: i64) -> QuotaKey {
        QuotaKey {
            contract: "c".into(),
            window_start: Timestamp::from_second(second).unwrap(),
        }
    }

    /// Counts survive a reopen once a later append is acknowledged; windows move forward only.
    #[tokio::test]
    async fn counts_are_durable_with_the_next_append() {
        let gw = gateway(crate::config::Config::default()).await;
        let counters = StoreQuotaCounters::load(Arc::clone(&gw.store))
            .await
            .unwrap();
        assert!(counters.try_hit(&key(0), 2).unwrap());
        assert!(counters.try_hit(&key(0), 2).unwrap());
        assert!(!counters.try_hit(&key(0), 2).unwrap());
        gw.store
            .append(portcullis_core::Event::new(
                "policy.decision",
                portcullis_core::Decision::Allow,
                "ok",
            ))
            .await
            .unwrap();
        let again = StoreQuotaCounters::load(Arc::clone(&gw.store))
            .await
            .unwrap();
        assert_eq!(again.used(&key(0)).unwrap(), 2);
        assert!(!again.try_hit(&key(0), 2).unwrap());
        assert!(again.try_hit(&key(60), 2).unwrap());
        // An older window never counts again once a later one started.
        assert!(!again.try_hit(&key(0), 5).unwrap());
        gw.store.flush().await.unwrap();
        let counts = gw.store.quota_counts().await.unwrap();
        assert_eq!(
            counts,
            [QuotaCount {
                contract: "c".into(),
                window_start: Timestamp::from_second(60).unwrap(),
                count: 1
            }]
        );
    }

    /// A count the store cannot take is not counted, and the engine denies (`policy_error`).
    #[tokio::test]
    async fn a_store_failure_counts_nothing() {
        let gw = gateway(crate::config::Config::default()).await;
        let faulty = Arc::new(portcullis_store::faulty::FaultyStore::new(Arc::clone(
            &gw.store,
        )));
        let counters = StoreQuotaCounters::load(faulty.clone()).await.unwrap();
        assert!(counters.try_hit(&key(0), 2).unwrap());
        faulty.fail(true);
        assert_eq!(counters.try_hit(&key(0), 2), Err(QuotaStoreError));
        faulty.fail(false);
        assert_eq!(counters.used(&key(0)).unwrap(), 1);
    }
}
