//! Schema migrations, embedded as numbered SQL strings.

use rusqlite::{Connection, OptionalExtension};

use crate::error::{StoreError, sqlite_error as unavailable};

/// Numbered migrations, applied in order, each once, each in its own transaction.
/// INVARIANT (append-only-migrations): never edit a shipped entry; add a new number instead.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE ledger (
        seq INTEGER PRIMARY KEY,
        body BLOB NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
    ) STRICT;
    CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
    CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
    CREATE TABLE ledger_checkpoints (
        seq INTEGER PRIMARY KEY,
        signed BLOB NOT NULL,
        signature BLOB NOT NULL
    ) STRICT;
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        token_sha256 BLOB NOT NULL UNIQUE,
        roles TEXT NOT NULL,
        tags TEXT NOT NULL,
        project TEXT,
        allow TEXT NOT NULL,
        may_assert_identity INTEGER NOT NULL,
        created_at TEXT NOT NULL
    ) STRICT;",
    ),
    (
        2,
        "CREATE TABLE policy_records (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    ) STRICT;",
    ),
];

/// The newest schema version this build knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// Brings the database up to [`latest_version`]; refuses a database from a newer build.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        ) STRICT;",
    )
    .map_err(unavailable("create schema_migrations"))?;
    let current: i64 = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .optional()
        .map_err(unavailable("read schema version"))?
        .flatten()
        .unwrap_or(0);
    if current > latest_version() {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: latest_version(),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(unavailable("begin migration"))?;
        tx.execute_batch(sql)
            .map_err(unavailable("apply migration"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES (?1)",
            [version],
        )
        .map_err(unavailable("record migration"))?;
        tx.commit().map_err(unavailable("commit migration"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_idempotent() {
        let numbers: Vec<i64> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        let expected: Vec<i64> = (1..=numbers.len() as i64).collect();
        assert_eq!(numbers, expected);
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, latest_version());
        conn.execute("INSERT INTO schema_migrations (version) VALUES (99)", [])
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }
}
