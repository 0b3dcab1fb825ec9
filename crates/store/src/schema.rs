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
    (
        3,
        "ALTER TABLE agents ADD COLUMN catalog TEXT NOT NULL DEFAULT 'full';",
    ),
    (
        4,
        "CREATE TABLE quota_counters (
        contract TEXT PRIMARY KEY,
        window_start INTEGER NOT NULL,
        count INTEGER NOT NULL
    ) STRICT;",
    ),
];

/// Migrations of `budgets.db`, the budget counters' own file (same rules as [`MIGRATIONS`]).
/// INVARIANT (append-only-migrations): never edit a shipped entry; add a new number instead.
pub(crate) const BUDGET_MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE budget_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE budget_spend (
        account TEXT NOT NULL,
        unit TEXT NOT NULL,
        day TEXT NOT NULL,
        amount INTEGER NOT NULL,
        PRIMARY KEY (account, unit, day)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE budget_reservations (
        id INTEGER PRIMARY KEY,
        expires_at TEXT NOT NULL,
        holds TEXT NOT NULL
    ) STRICT;
    CREATE TABLE budget_alerts (
        key TEXT NOT NULL,
        window_key TEXT NOT NULL,
        tier TEXT NOT NULL,
        PRIMARY KEY (key, window_key, tier)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE budget_pauses (
        key TEXT PRIMARY KEY,
        until TEXT
    ) STRICT;",
)];

/// The newest schema version this build knows.
#[cfg(test)]
pub(crate) fn latest_version() -> i64 {
    latest_of(MIGRATIONS)
}

fn latest_of(migrations: &[(i64, &str)]) -> i64 {
    migrations.last().map_or(0, |(version, _)| *version)
}

/// Brings the database up to [`latest_version`]; refuses a database from a newer build.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_with(conn, MIGRATIONS)
}

/// Brings a database up to the last of `migrations`; refuses one from a newer build.
pub(crate) fn migrate_with(
    conn: &mut Connection,
    migrations: &[(i64, &str)],
) -> Result<(), StoreError> {
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
    if current > latest_of(migrations) {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: latest_of(migrations),
        });
    }
    for (version, sql) in migrations.iter().filter(|(version, _)| *version > current) {
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
        for migrations in [MIGRATIONS, BUDGET_MIGRATIONS] {
            let numbers: Vec<i64> = migrations.iter().map(|(n, _)| *n).collect();
            let expected: Vec<i64> = (1..=numbers.len() as i64).collect();
            assert_eq!(numbers, expected);
            let mut conn = Connection::open_in_memory().unwrap();
            migrate_with(&mut conn, migrations).unwrap();
            migrate_with(&mut conn, migrations).unwrap();
        }
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
