//! Offline verification of a data dir's ledger, for `portcullis ledger verify`.

use std::path::Path;

use portcullis_ledger::{Verifier, VerifyReport};
use rusqlite::{Connection, OpenFlags};

use crate::error::{BackendError, VerifyDataDirError};
use crate::files::{DB_FILE, NODE_PUB_FILE, read_node_public_key};

/// Offline verification for `portcullis ledger verify --data-dir DIR` (opens the DB read-only, does
/// not create it).
///
/// Reads every checkpoint, then every record in seq order, in one read transaction (a consistent
/// snapshot even while a gateway appends), and checks them with [`Verifier`] against the key in
/// `node.pub`. `Err(VerifyDataDirError::Failed(_))` names the first bad seq.
pub fn verify_data_dir(data_dir: &Path) -> Result<VerifyReport, VerifyDataDirError> {
    let db_path = data_dir.join(DB_FILE);
    if !db_path.is_file() {
        return Err(VerifyDataDirError::Missing { path: db_path });
    }
    let public_key = read_node_public_key(data_dir)
        .map_err(VerifyDataDirError::Key)?
        .ok_or_else(|| VerifyDataDirError::BadKey {
            path: data_dir.join(NODE_PUB_FILE),
        })?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(&db_path, flags).map_err(db("open database"))?;
    let tx = conn.transaction().map_err(db("begin read"))?;
    let mut verifier = Verifier::new(public_key);

    let mut checkpoints = tx
        .prepare("SELECT seq, signed, signature FROM ledger_checkpoints ORDER BY seq")
        .map_err(db("read checkpoints"))?;
    let mut rows = checkpoints.query([]).map_err(db("read checkpoints"))?;
    while let Some(row) = rows.next().map_err(db("read checkpoints"))? {
        let seq = row_seq(row)?;
        let signed = blob(row, 1)?;
        let signature = blob(row, 2)?;
        verifier
            .push_checkpoint(seq, signed, signature)
            .map_err(VerifyDataDirError::Failed)?;
    }
    drop(rows);
    drop(checkpoints);

    let mut records = tx
        .prepare("SELECT seq, body, prev_hash, hash FROM ledger ORDER BY seq")
        .map_err(db("read ledger"))?;
    let mut rows = records.query([]).map_err(db("read ledger"))?;
    while let Some(row) = rows.next().map_err(db("read ledger"))? {
        let seq = row_seq(row)?;
        verifier
            .push(seq, blob(row, 1)?, blob(row, 2)?, blob(row, 3)?)
            .map_err(VerifyDataDirError::Failed)?;
    }
    verifier.finish().map_err(VerifyDataDirError::Failed)
}

fn row_seq(row: &rusqlite::Row<'_>) -> Result<u64, VerifyDataDirError> {
    let seq: i64 = row.get(0).map_err(db("read seq"))?;
    u64::try_from(seq).map_err(|_| VerifyDataDirError::BadRow { seq })
}

/// A blob column; any other type reads as empty bytes, which the verifier then refuses.
fn blob<'row>(row: &'row rusqlite::Row<'_>, idx: usize) -> Result<&'row [u8], VerifyDataDirError> {
    let value = row.get_ref(idx).map_err(db("read column"))?;
    Ok(match value {
        rusqlite::types::ValueRef::Blob(bytes) | rusqlite::types::ValueRef::Text(bytes) => bytes,
        _ => &[],
    })
}

fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> VerifyDataDirError {
    move |err| VerifyDataDirError::Database(BackendError::new(context, err))
}
