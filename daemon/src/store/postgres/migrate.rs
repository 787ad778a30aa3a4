//! The migration runner: brings a database's schema up to the version this binary knows,
//! at start-up, before anything else touches it.
//!
//! One transaction does it all: it takes a transaction-scoped advisory lock
//! (`pg_advisory_xact_lock`), so nodes starting together apply each migration once and the
//! others wait and then find nothing to do; it creates `schema_version` if missing, refuses
//! a schema newer than the binary (an older mcsd must not write rows it does not
//! understand) or a recorded migration whose text differs from the binary's, applies the
//! missing ones in order and records each. PostgreSQL's DDL is transactional, so a failure
//! leaves the schema as it was, and the lock ends with the transaction: a pooled
//! connection can never be handed on still holding it.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One versioned step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// 1, 2, 3 …: the `NNNN` of its file.
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The schema this binary knows, in order. A new migration is a new file and a line here;
/// an applied one is never edited (the runner refuses a database where it differs).
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("migrations/0001_initial.sql") },
    Migration { version: 2, name: "delegations", sql: include_str!("migrations/0002_delegations.sql") },
    Migration { version: 3, name: "inbox", sql: include_str!("migrations/0003_inbox.sql") },
    Migration { version: 4, name: "cert_ends", sql: include_str!("migrations/0004_cert_ends.sql") },
];

/// The advisory lock key of schema changes ("mcsd" then 1), shared by every node.
pub(super) const LOCK_KEY: i64 = 0x6d63_7364_0000_0001;

/// The newest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "the database's schema is version {database}, newer than this mcsd knows ({binary}): \
         run an mcsd at least as new as the one that upgraded it"
    )]
    Newer { database: i32, binary: i32 },
    #[error("migration {version} recorded in the database is not this mcsd's ({reason})")]
    Altered { version: i32, reason: String },
}

/// Applies the missing migrations of [`MIGRATIONS`]; returns the versions it applied
/// (none when the schema was already current).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    migrate_with(client, MIGRATIONS).await
}

/// What [`migrate`] would apply, checking the recorded ones the same way, without changing
/// the database (the transaction is rolled back): `mcsd check-config`.
pub async fn pending(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    run_migrations(client, MIGRATIONS, false).await
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// [`migrate`] over any list of migrations (the tests' altered and future schemas).
pub(super) async fn migrate_with(client: &mut Client, migrations: &[Migration]) -> Result<Vec<i32>, MigrateError> {
    run_migrations(client, migrations, true).await
}

async fn run_migrations(client: &mut Client, migrations: &[Migration], apply: bool) -> Result<Vec<i32>, MigrateError> {
    let binary = migrations.last().map_or(0, |m| m.version);
    let tx = client.transaction().await?;
    // Another node applying migrations holds the lock; a stuck one must not hang every start.
    tx.batch_execute("SET LOCAL lock_timeout = '60s'").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY]).await?;
    // Checked rather than `IF NOT EXISTS`, whose notice would be logged at every start.
    let missing: bool = tx.query_one("SELECT to_regclass('schema_version') IS NULL", &[]).await?.get(0);
    if missing {
        tx.batch_execute(
            "CREATE TABLE schema_version (
                 version    integer PRIMARY KEY CHECK (version > 0),
                 name       text NOT NULL,
                 sha256     text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    }
    let recorded = tx.query("SELECT version, name, sha256 FROM schema_version ORDER BY version", &[]).await?;
    let mut current = 0;
    for row in &recorded {
        let (version, name, sha256): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        if version > binary {
            return Err(MigrateError::Newer { database: recorded.last().map_or(version, |r| r.get(0)), binary });
        }
        if version != current + 1 {
            return Err(MigrateError::Altered {
                version: current + 1,
                reason: "the database does not record it".into(),
            });
        }
        let Some(known) = migrations.iter().find(|m| m.version == version) else {
            return Err(MigrateError::Altered { version, reason: "this mcsd has no such migration".into() });
        };
        if known.name != name || checksum(known.sql) != sha256 {
            return Err(MigrateError::Altered {
                version,
                reason: format!("recorded as {name:?} with SHA-256 {sha256}, this mcsd has {:?}", known.name),
            });
        }
        current = version;
    }
    if !apply {
        // Dropping the transaction rolls back even the `schema_version` it may have made.
        return Ok(migrations.iter().filter(|m| m.version > current).map(|m| m.version).collect());
    }
    let mut applied = Vec::new();
    for m in migrations.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version, name, sha256) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await?;
        applied.push(m.version);
    }
    tx.commit().await?;
    Ok(applied)
}
