//! The reference client of mcsd: plays a phone ([`phone`]), an operator ([`admin`]) and
//! speaks mutual-TLS HTTP to the daemon ([`transport`]). Used by the `mcs` CLI, the demo,
//! the end-to-end tests and the benchmarks.

pub mod admin;
pub mod delegation;
pub mod gateway;
pub mod inbox;
pub mod load;
pub mod output;
pub mod phone;
pub mod transport;

pub use transport::{ApiError, Connection, Endpoint, Error};
