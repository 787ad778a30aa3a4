//! The PostgreSQL engine of the store, in the making (issue 13). There is no
//! [`Storage`](super::Storage) implementation on it yet and nothing in the daemon opens a
//! database: the configuration has no way to choose it.
//!
//! `testing.rs` (tests only) starts a throw-away cluster of Debian's PostgreSQL binaries for
//! the tests of this module and, later, the conformance suite.

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
