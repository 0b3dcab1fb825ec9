//! The budget writer thread: owns the `budgets.db` connection and commits changes in groups.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use portcullis_budget::{Change, Hold};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::error::{BackendError, StoreError};
use crate::sqlite_budget::{encode_holds, to_sql_int};

/// Most changes one transaction takes.
const MAX_BATCH: usize = 4096;

/// One change to persist, answered once its transaction committed.
pub(crate) struct Write {
    pub(crate) change: Change,
    pub(crate) reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Runs until every sender is gone: takes every queued change (up to [`MAX_BATCH`]), applies
/// them in queue order in one transaction, commits, then answers them all.
pub(crate) fn run(mut conn: Connection, writes: &Receiver<Write>) {
    while let Ok(first) = writes.recv() {
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let outcome = commit(&mut conn, &batch);
        for write in batch {
            let answer = match &outcome {
                Ok(()) => Ok(()),
                Err(err) => Err(StoreError::Unavailable(BackendError::new(
                    "commit budget batch",
                    Arc::clone(err),
                ))),
            };
            // A caller that went away (cancelled future) no longer needs its answer.
            drop(write.reply.send(answer));
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Write]) -> Result<(), Arc<rusqlite::Error>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for write in batch {
        apply(&tx, &write.change)?;
    }
    // INVARIANT (committed-before-ack): replies go out only after this returns.
    tx.commit()?;
    Ok(())
}

fn apply(tx: &rusqlite::Transaction<'_>, change: &Change) -> Result<(), rusqlite::Error> {
    match change {
        Change::Reserved(reservation) => {
            tx.prepare_cached(
                "INSERT INTO budget_reservations (id, expires_at, holds) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                to_sql_int(reservation.id.0),
                reservation.expires_at.to_string(),
                encode_holds(&reservation.holds)
            ])?;
        }
        Change::Settled { id, charges } => {
            delete_reservation(tx, id.0)?;
            add_spend(tx, charges)?;
        }
        Change::Charged { charges } => add_spend(tx, charges)?,
        Change::Released { ids } => {
            for id in ids {
                delete_reservation(tx, id.0)?;
            }
        }
        Change::AlertFired { key, window, tier } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO budget_alerts (key, window_key, tier) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![key, window, tier.as_str()])?;
        }
        Change::Paused { key, until } => {
            tx.prepare_cached(
                "INSERT INTO budget_pauses (key, until) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET until = excluded.until",
            )?
            .execute(params![key, until.map(|until| until.to_string())])?;
        }
        Change::Unpaused { key } => {
            tx.prepare_cached("DELETE FROM budget_pauses WHERE key = ?1")?
                .execute([key])?;
        }
    }
    Ok(())
}

fn delete_reservation(tx: &rusqlite::Transaction<'_>, id: u64) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("DELETE FROM budget_reservations WHERE id = ?1")?
        .execute([to_sql_int(id)])?;
    Ok(())
}

fn add_spend(tx: &rusqlite::Transaction<'_>, charges: &[Hold]) -> Result<(), rusqlite::Error> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO budget_spend (account, unit, day, amount) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (account, unit, day) DO UPDATE SET amount = amount + excluded.amount",
    )?;
    for charge in charges {
        upsert.execute(params![
            charge.account,
            charge.unit.as_str(),
            charge.day.to_string(),
            to_sql_int(charge.amount)
        ])?;
    }
    Ok(())
}
