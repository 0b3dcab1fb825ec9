//! The store's SQLite connections: WAL mode, their durability, and WAL checkpoints off the
//! writer threads.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so every few
//! hundred group commits one batch of callers would also wait for the WAL to be copied into the
//! database and for its fsyncs: that is the tail latency of every request. The store's
//! connections turn automatic checkpoints off ([`disable_auto_checkpoint`]) and a
//! [`Checkpointer`] thread, on its own connection, runs a `PASSIVE` checkpoint every
//! [`INTERVAL`]. `PASSIVE` never takes the write lock, so commits go on meanwhile; a WAL that was
//! checkpointed completely is reused from its start by the next commit, so its size stays
//! bounded by what is written between two checkpoints. Durability does not change: a commit is
//! acknowledged once it is in the WAL (synced or not, per the database's `synchronous`), and
//! the WAL is replayed on the next open after a kill.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{BackendError, StoreError, sqlite_error};

/// How often the checkpointer copies the WAL into the database.
const INTERVAL: Duration = Duration::from_millis(200);

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Durability {
    /// `synchronous = FULL`: every commit syncs the WAL before it returns, so an acknowledged
    /// commit survives a kill and a power cut (the ledger).
    Full,
    /// `synchronous = NORMAL`: every commit is written to the WAL file before it returns, so it
    /// survives a kill of the process; the WAL is synced at checkpoints, so a power cut can lose
    /// the last moments (budget counters).
    Normal,
}

/// Opens a read-write connection in WAL mode with `durability`, foreign keys on and automatic
/// checkpoints off (a [`Checkpointer`] on the same database does that work).
pub(crate) fn open_connection(
    path: &Path,
    durability: Durability,
) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error("open database"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sqlite_error("set busy timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(sqlite_error("enable wal"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(BackendError::bare(
            "database refused wal journal mode",
        )));
    }
    // INVARIANT (committed-before-ack): both levels put a commit in the WAL file before it
    // returns; see `Durability` for what each survives.
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 0;"
    ))
    .map_err(sqlite_error("set pragmas"))?;
    Ok(conn)
}

/// A thread checkpointing one database's WAL every [`INTERVAL`], and once more when stopped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread `name` on `conn`, a connection of its own to the database.
    pub(crate) fn start(name: &str, conn: Connection) -> Result<Self, StoreError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut failing = false;
                // Nothing is ever sent: the channel closing is the signal to stop.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    failing = checkpoint(&conn, failing);
                }
                checkpoint(&conn, failing);
            })
            .map_err(|err| {
                StoreError::Unavailable(BackendError::new("start wal checkpoint thread", err))
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs a last checkpoint and waits for the thread to end. Call it after the writer stopped,
    /// so that the last checkpoint covers its last commit.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One `PASSIVE` checkpoint; answers whether it failed. A failure is left for the next round:
/// the WAL keeps every commit meanwhile, so nothing is lost, it only grows. Only the first
/// failure of a run of them is logged (`failing` says whether the last round failed).
fn checkpoint(conn: &Connection, failing: bool) -> bool {
    // The pragma answers one row (busy, WAL frames, frames checkpointed), which is not needed.
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        Ok(()) => {
            if failing {
                tracing::info!("wal checkpoints succeed again");
            }
            false
        }
        Err(err) => {
            if !failing {
                tracing::warn!(error = %err, "wal checkpoint failed; the wal grows until one succeeds");
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// WAL frames not yet copied into the database, as a checkpoint reports them.
    fn wal_frames(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
            .unwrap()
    }

    #[test]
    fn commits_never_checkpoint_and_the_checkpointer_lets_the_wal_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        drop(Connection::open(&path).unwrap());
        let writer = open_connection(&path, Durability::Normal).unwrap();
        writer
            .execute_batch("CREATE TABLE t (v BLOB NOT NULL)")
            .unwrap();
        let mut checkpointer = Checkpointer::start(
            "wal-test",
            open_connection(&path, Durability::Normal).unwrap(),
        )
        .unwrap();
        // Far past SQLite's default threshold of 1000 pages: no commit checkpoints on its own.
        for _ in 0..1500 {
            writer
                .execute("INSERT INTO t (v) VALUES (zeroblob(4096))", [])
                .unwrap();
        }
        // The last checkpoint runs when the checkpointer stops.
        checkpointer.stop();
        // A WAL checkpointed to its end is rewritten from its start by the next commit.
        writer
            .execute("INSERT INTO t (v) VALUES (zeroblob(16))", [])
            .unwrap();
        let observer = open_connection(&path, Durability::Normal).unwrap();
        let frames = wal_frames(&observer);
        assert!((1..10).contains(&frames), "{frames} frames in the wal");
        let rows: i64 = observer
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1501);
    }
}
