//! Quota counters: the one piece of mutable state the contract layer reads and writes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use jiff::Timestamp;

/// One counter: a contract's hits in one window.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    /// The contract id (`<capsule id>::<contract id>` for capsule contracts).
    pub contract: String,
    /// Start of the current window (windows are `window_secs` long, aligned to the Unix epoch).
    pub window_start: Timestamp,
}

/// The counter store failed; the engine denies with `policy_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quota counter store is unavailable")]
pub struct QuotaStoreError;

/// Quota counters. The engine takes them by reference on every decision, so the gateway can back
/// them with its store and keep them across policy reloads.
pub trait QuotaCounters: Send + Sync + fmt::Debug {
    /// Hits counted so far in the key's window.
    fn used(&self, key: &QuotaKey) -> Result<u64, QuotaStoreError>;

    /// Counts one hit when fewer than `limit` are counted, atomically; `Ok(false)` when the
    /// window's hits are used up (nothing is counted then).
    fn try_hit(&self, key: &QuotaKey, limit: u64) -> Result<bool, QuotaStoreError>;
}

/// In-memory counters: one window per contract, older windows dropped as time moves on.
#[derive(Debug, Default)]
pub struct MemoryQuotaCounters {
    windows: Mutex<HashMap<String, (Timestamp, u64)>>,
}

impl MemoryQuotaCounters {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Timestamp, u64)>> {
        self.windows
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl QuotaCounters for MemoryQuotaCounters {
    fn used(&self, key: &QuotaKey) -> Result<u64, QuotaStoreError> {
        Ok(match self.lock().get(&key.contract) {
            Some((start, count)) if *start == key.window_start => *count,
            _ => 0,
        })
    }

    fn try_hit(&self, key: &QuotaKey, limit: u64) -> Result<bool, QuotaStoreError> {
        let mut windows = self.lock();
        let entry = windows
            .entry(key.contract.clone())
            .or_insert((key.window_start, 0));
        if entry.0 != key.window_start {
            *entry = (key.window_start, 0);
        }
        if entry.1 >= limit {
            return Ok(false);
        }
        entry.1 += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_window() {
        let counters = MemoryQuotaCounters::new();
        let key = |second| QuotaKey {
            contract: "c".into(),
            window_start: Timestamp::from_second(second).unwrap(),
        };
        assert!(counters.try_hit(&key(0), 2).unwrap());
        assert!(counters.try_hit(&key(0), 2).unwrap());
        assert!(!counters.try_hit(&key(0), 2).unwrap());
        assert_eq!(counters.used(&key(0)).unwrap(), 2);
        assert_eq!(counters.used(&key(60)).unwrap(), 0);
        assert!(counters.try_hit(&key(60), 2).unwrap());
        assert_eq!(counters.used(&key(60)).unwrap(), 1);
    }
}
