//! Quota counters of the policy's contracts: one row per contract, its latest window.
//!
//! INVARIANT (quota-before-record): a count is queued on the ledger writer before the decision it
//! admits is appended; the writer commits its queue in order (a failed batch's counts are
//! written again first in the next one), so an acknowledged append implies every count queued
//! before it is durable.

use jiff::Timestamp;
use rusqlite::{Connection, params};

use crate::QuotaCount;
use crate::error::{CorruptError, StoreError, sqlite_error};

/// Writes `count` unless the stored counter is for a later window or already higher: counts only
/// grow within a window, and windows only move forward.
pub(crate) fn upsert(tx: &rusqlite::Transaction<'_>, count: &QuotaCount) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO quota_counters (contract, window_start, count) VALUES (?1, ?2, ?3)
         ON CONFLICT (contract) DO UPDATE SET
           count = CASE
             WHEN excluded.window_start > window_start THEN excluded.count
             WHEN excluded.window_start = window_start THEN MAX(count, excluded.count)
             ELSE count END,
           window_start = MAX(window_start, excluded.window_start)",
    )?
    .execute(params![
        count.contract,
        count.window_start.as_second(),
        i64::try_from(count.count).unwrap_or(i64::MAX)
    ])?;
    Ok(())
}

/// Every stored counter, ordered by contract.
pub(crate) fn read_all(conn: &Connection) -> Result<Vec<QuotaCount>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT contract, window_start, count FROM quota_counters ORDER BY contract",
        )
        .map_err(sqlite_error("prepare quota counters"))?;
    let mut rows = stmt
        .query([])
        .map_err(sqlite_error("read quota counters"))?;
    let mut res = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error("read quota counters"))? {
        let contract: String = row.get(0).map_err(sqlite_error("read quota counters"))?;
        let start: i64 = row.get(1).map_err(sqlite_error("read quota counters"))?;
        let count: i64 = row.get(2).map_err(sqlite_error("read quota counters"))?;
        let (Ok(window_start), Ok(count)) = (Timestamp::from_second(start), u64::try_from(count))
        else {
            return Err(StoreError::Corrupt(CorruptError::QuotaRow { contract }));
        };
        res.push(QuotaCount {
            contract,
            window_start,
            count,
        });
    }
    Ok(res)
}
