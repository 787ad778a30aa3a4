//! The PostgreSQL engine of the store, in the making (issue 13): the schema as versioned
//! SQL migrations (`migrations/NNNN_name.sql`) and the runner that applies them
//! (`migrate.rs`). There is no [`Storage`](super::Storage) implementation on it yet and
//! nothing in the daemon opens a database: the configuration has no way to choose it.
//!
//! `testing.rs` (tests only) starts a throw-away cluster of Debian's PostgreSQL binaries for
//! the tests of this module and, later, the conformance suite.

mod migrate;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use migrate::{MIGRATIONS, MigrateError, Migration, latest_version, migrate};
