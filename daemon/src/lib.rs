//! mcsd: the server half of two-party SM2 for mobile certificates.
//!
//! The modules are layers; each uses only those listed after it (ARCHITECTURE.md, and
//! `tests/tests/architecture.rs` checks it):
//!
//! [`server`] / [`cli`] → [`api`] → [`tasks`] → [`seals`] → [`keys`] → [`inbox`] → [`audit`] →
//! [`daemon_keys`] → [`plugins`] / [`store`] / [`hsm`] → [`config`] → [`model`], with
//! [`clock`], [`metrics`], [`os`] and [`pem`] usable from anywhere.
//!
//! Only `api` and `server` know HTTP and JSON, only `hsm` calls cryptoki, only `store`
//! touches sled.

pub mod api;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon_keys;
pub mod hsm;
pub mod inbox;
pub mod keys;
pub mod metrics;
pub mod model;
#[allow(unsafe_code)] // umask, rlimits, the wiping allocator: listed in ARCHITECTURE.md
pub mod os;
pub mod pem;
#[allow(unsafe_code)] // the plugin ABI: listed in ARCHITECTURE.md
pub mod plugins;
pub mod seals;
pub mod server;
pub mod store;
pub mod tasks;
pub mod tsa;
