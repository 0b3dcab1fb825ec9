//! Budget counters for the SQLite store: an in-memory [`Book`] under one lock, persisted to
//! `<data dir>/budgets.db` by a dedicated writer thread with group commit.
//!
//! Why not one SQL statement per reservation: an fsync costs milliseconds, and a reservation sits
//! on every request's path. The book answers the atomic check-and-reserve under its lock; each
//! change is queued to the writer in the order it was applied (the queue is fed under the same
//! lock) and the caller is answered once the transaction holding it committed.
//!
//! Durability: [`Durability::Normal`]. A committed transaction is in the WAL file before the
//! caller hears back, so it survives SIGKILL of the process; an OS crash or power cut can lose
//! the last moments of commits (the WAL is synced at checkpoints), which at worst forgets recent
//! spend and reservations. The ledger keeps [`Durability::Full`]. WAL checkpoints run on a
//! thread of their own ([`crate::wal`]).

use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;

use jiff::Timestamp;
use jiff::civil::Date;
use portcullis_budget::{
    AccountSnapshot, Amounts, Book, BookError, BudgetMode, Change, Hold, LineUsage, Meter,
    Reservation, ReservationId, ReserveOutcome, Settlement, Unit, threshold::AlertTier,
};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::error::{BackendError, CorruptError, StoreError, sqlite_error};
use crate::files::{BUDGET_DB_FILE, ensure_private_file};
use crate::schema;
use crate::sqlite_budget_writer::{self, Write};
use crate::wal::{Checkpointer, Durability, open_connection};

/// The budget half of [`crate::SqliteStore`].
#[derive(Debug)]
pub(crate) struct SqliteBudgets {
    book: Mutex<Book>,
    writes: Option<Sender<Write>>,
    writer: Option<JoinHandle<()>>,
    checkpointer: Checkpointer,
}

impl SqliteBudgets {
    /// Opens (creating when missing) `budgets.db` 0600 in `data_dir`, migrates it, and loads the
    /// counters, live reservations (expired ones too: `release_expired` releases them), fired
    /// alerts and pauses.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(BUDGET_DB_FILE);
        ensure_private_file(&path)?;
        let mut conn = open_connection(&path, Durability::Normal)?;
        schema::migrate_with(&mut conn, schema::BUDGET_MIGRATIONS)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            if Path::new(&side).exists() {
                ensure_private_file(Path::new(&side))?;
            }
        }
        let book = load(&mut conn)?;
        let checkpointer = Checkpointer::start(
            "portcullis-budget-wal",
            open_connection(&path, Durability::Normal)?,
        )?;
        let (writes, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("portcullis-budget-writer".to_owned())
            .spawn(move || sqlite_budget_writer::run(conn, &receiver))
            .map_err(|err| {
                StoreError::Unavailable(BackendError::new("start budget writer thread", err))
            })?;
        Ok(Self {
            book: Mutex::new(book),
            writes: Some(writes),
            writer: Some(writer),
            checkpointer,
        })
    }

    pub(crate) async fn reserve(
        &self,
        meters: Vec<Meter>,
        amounts: Amounts,
        expires_at: Timestamp,
        mode: BudgetMode,
    ) -> Result<ReserveOutcome, StoreError> {
        let (outcome, committed) = {
            let mut book = self.lock();
            let (outcome, change) = book
                .reserve(&meters, &amounts, expires_at, mode)
                .map_err(book_error)?;
            // INVARIANT (ordered-changes): queued under the book lock, so the writer applies
            // changes in the order the book made them.
            let committed = change.map(|change| self.queue(change));
            (outcome, committed)
        };
        let Some(committed) = committed else {
            return Ok(outcome);
        };
        match committed.await {
            Ok(()) => Ok(outcome),
            Err(err) => {
                // Not durable, so not granted: undo in memory, and queue the release in case the
                // row made it to disk after all.
                if let ReserveOutcome::Reserved { id, .. } = &outcome {
                    let mut book = self.lock();
                    if let Ok((_, change)) = book.release(*id) {
                        drop(self.queue(change));
                    }
                }
                Err(err)
            }
        }
    }

    pub(crate) async fn settle(
        &self,
        id: ReservationId,
        actual: Amounts,
    ) -> Result<Settlement, StoreError> {
        let (settlement, committed) = {
            let mut book = self.lock();
            let (settlement, change) = book.settle(id, &actual).map_err(book_error)?;
            (settlement, self.queue(change))
        };
        // On failure the book keeps the spend (counting it is the safe side) and the caller
        // hears the store is unavailable.
        committed.await.map(|()| settlement)
    }

    pub(crate) async fn release(&self, id: ReservationId) -> Result<Reservation, StoreError> {
        let (reservation, committed) = {
            let mut book = self.lock();
            let (reservation, change) = book.release(id).map_err(book_error)?;
            (reservation, self.queue(change))
        };
        committed.await.map(|()| reservation)
    }

    pub(crate) async fn release_expired(
        &self,
        now: Timestamp,
    ) -> Result<Vec<Reservation>, StoreError> {
        let (released, committed) = {
            let mut book = self.lock();
            let (released, change) = book.release_expired(now);
            (released, change.map(|change| self.queue(change)))
        };
        match committed {
            Some(committed) => committed.await.map(|()| released),
            None => Ok(released),
        }
    }

    pub(crate) async fn charge(
        &self,
        meters: Vec<Meter>,
        amounts: Amounts,
    ) -> Result<Vec<LineUsage>, StoreError> {
        let (lines, committed) = {
            let mut book = self.lock();
            let (lines, change) = book.charge(&meters, &amounts);
            (lines, self.queue(change))
        };
        committed.await.map(|()| lines)
    }

    pub(crate) fn usage(&self, meters: &[Meter]) -> Vec<LineUsage> {
        self.lock().usage(meters)
    }

    pub(crate) fn accounts(&self) -> Vec<AccountSnapshot> {
        self.lock().accounts()
    }

    pub(crate) fn reservations(&self) -> Vec<Reservation> {
        self.lock().reservations()
    }

    pub(crate) async fn mark_alert(
        &self,
        key: &str,
        window: &str,
        tier: AlertTier,
    ) -> Result<bool, StoreError> {
        let committed = {
            let mut book = self.lock();
            book.mark_alert(key, window, tier)
                .map(|change| self.queue(change))
        };
        match committed {
            Some(committed) => committed.await.map(|()| true),
            None => Ok(false),
        }
    }

    pub(crate) async fn pause(
        &self,
        key: &str,
        until: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let committed = {
            let mut book = self.lock();
            self.queue(book.pause(key, until))
        };
        committed.await
    }

    pub(crate) async fn unpause(&self, key: &str) -> Result<bool, StoreError> {
        let committed = {
            let mut book = self.lock();
            book.unpause(key).map(|change| self.queue(change))
        };
        match committed {
            Some(committed) => committed.await.map(|()| true),
            None => Ok(false),
        }
    }

    pub(crate) fn is_paused(&self, key: &str, now: Timestamp) -> bool {
        self.lock().is_paused(key, now)
    }

    pub(crate) fn pauses(&self) -> Vec<(String, Option<Timestamp>)> {
        self.lock().pauses()
    }

    pub(crate) fn writer_running(&self) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|handle| !handle.is_finished())
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave the book half-changed in a way that grants
        // more: every mutation checks before it changes anything.
        self.book
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues `change` for the writer; the future resolves once it is committed.
    fn queue(&self, change: Change) -> impl Future<Output = Result<(), StoreError>> + use<> {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .writes
            .as_ref()
            .is_some_and(|writes| writes.send(Write { change, reply }).is_ok());
        async move {
            if !sent {
                return Err(writer_stopped());
            }
            answer.await.map_err(|_| writer_stopped())?
        }
    }
}

impl Drop for SqliteBudgets {
    fn drop(&mut self) {
        drop(self.writes.take());
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        self.checkpointer.stop();
    }
}

fn book_error(err: BookError) -> StoreError {
    match err {
        BookError::UnknownReservation(_) => StoreError::NotFound,
        BookError::TooManyReservations => {
            StoreError::Unavailable(BackendError::bare("too many live budget reservations"))
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable(BackendError::bare("budget writer stopped"))
}

/// Bumps the open counter (the reservation id epoch) and rebuilds the book.
fn load(conn: &mut Connection) -> Result<Book, StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite_error("begin budget load"))?;
    let opens: i64 = tx
        .query_row(
            "SELECT value FROM budget_meta WHERE key = 'opens'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(sqlite_error("read budget open counter"))?
        .unwrap_or(0);
    let epoch = opens.saturating_add(1);
    tx.execute(
        "INSERT INTO budget_meta (key, value) VALUES ('opens', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [epoch],
    )
    .map_err(sqlite_error("bump budget open counter"))?;
    let mut book = Book::new(u32::try_from(epoch & i64::from(u32::MAX)).unwrap_or(0));
    {
        let corrupt = |table| StoreError::Corrupt(CorruptError::BudgetRow { table });
        let mut stmt = tx
            .prepare("SELECT account, unit, day, amount FROM budget_spend")
            .map_err(sqlite_error("read budget spend"))?;
        let mut rows = stmt.query([]).map_err(sqlite_error("read budget spend"))?;
        while let Some(row) = rows.next().map_err(sqlite_error("read budget spend"))? {
            let read = || -> Option<(String, Unit, Date, u64)> {
                let account: String = row.get(0).ok()?;
                let unit = Unit::parse(&row.get::<_, String>(1).ok()?)?;
                let day: Date = row.get::<_, String>(2).ok()?.parse().ok()?;
                let amount = u64::try_from(row.get::<_, i64>(3).ok()?).ok()?;
                Some((account, unit, day, amount))
            };
            let (account, unit, day, amount) = read().ok_or_else(|| corrupt("budget_spend"))?;
            book.restore_spend(&account, unit, day, amount);
        }
        drop(rows);
        drop(stmt);

        let mut stmt = tx
            .prepare("SELECT id, expires_at, holds FROM budget_reservations")
            .map_err(sqlite_error("read budget reservations"))?;
        let mut rows = stmt
            .query([])
            .map_err(sqlite_error("read budget reservations"))?;
        while let Some(row) = rows
            .next()
            .map_err(sqlite_error("read budget reservations"))?
        {
            let read = || -> Option<Reservation> {
                Some(Reservation {
                    id: ReservationId(u64::try_from(row.get::<_, i64>(0).ok()?).ok()?),
                    expires_at: row.get::<_, String>(1).ok()?.parse().ok()?,
                    holds: decode_holds(&row.get::<_, String>(2).ok()?)?,
                })
            };
            let reservation = read().ok_or_else(|| corrupt("budget_reservations"))?;
            book.restore_reservation(reservation);
        }
        drop(rows);
        drop(stmt);

        let mut stmt = tx
            .prepare("SELECT key, window_key, tier FROM budget_alerts")
            .map_err(sqlite_error("read budget alerts"))?;
        let mut rows = stmt.query([]).map_err(sqlite_error("read budget alerts"))?;
        while let Some(row) = rows.next().map_err(sqlite_error("read budget alerts"))? {
            let read = || -> Option<(String, String, AlertTier)> {
                Some((
                    row.get(0).ok()?,
                    row.get(1).ok()?,
                    AlertTier::parse(&row.get::<_, String>(2).ok()?)?,
                ))
            };
            let (key, window, tier) = read().ok_or_else(|| corrupt("budget_alerts"))?;
            book.restore_alert(&key, &window, tier);
        }
        drop(rows);
        drop(stmt);

        let mut stmt = tx
            .prepare("SELECT key, until FROM budget_pauses")
            .map_err(sqlite_error("read budget pauses"))?;
        let mut rows = stmt.query([]).map_err(sqlite_error("read budget pauses"))?;
        while let Some(row) = rows.next().map_err(sqlite_error("read budget pauses"))? {
            let read = || -> Option<(String, Option<Timestamp>)> {
                let until = match row.get::<_, Option<String>>(1).ok()? {
                    Some(text) => Some(text.parse().ok()?),
                    None => None,
                };
                Some((row.get(0).ok()?, until))
            };
            let (key, until) = read().ok_or_else(|| corrupt("budget_pauses"))?;
            book.restore_pause(&key, until);
        }
    }
    tx.commit().map_err(sqlite_error("commit budget load"))?;
    Ok(book)
}

/// Holds as stored: a JSON array of `[account, unit, day, amount]`.
pub(crate) fn encode_holds(holds: &[Hold]) -> String {
    let rows: Vec<serde_json::Value> = holds
        .iter()
        .map(|hold| {
            serde_json::json!([
                hold.account,
                hold.unit.as_str(),
                hold.day.to_string(),
                hold.amount
            ])
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

fn decode_holds(text: &str) -> Option<Vec<Hold>> {
    let rows: Vec<(String, String, String, u64)> = serde_json::from_str(text).ok()?;
    rows.into_iter()
        .map(|(account, unit, day, amount)| {
            Some(Hold {
                account,
                unit: Unit::parse(&unit)?,
                day: day.parse().ok()?,
                amount,
            })
        })
        .collect()
}

/// A u64 amount or id as SQLite's i64 (amounts past `i64::MAX` micro-USD are not realistic).
pub(crate) fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn holds_round_trip() {
        let holds = vec![Hold {
            account: "user:a \"quoted\"".to_owned(),
            unit: Unit::Tokens,
            day: jiff::civil::date(2026, 3, 8),
            amount: u64::MAX,
        }];
        assert_eq!(decode_holds(&encode_holds(&holds)), Some(holds));
        assert_eq!(decode_holds("[[\"a\",\"eur\",\"2026-01-01\",1]]"), None);
    }
}
