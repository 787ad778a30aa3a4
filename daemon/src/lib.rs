//! mcsd: the server half of two-party SM2 for mobile certificates.
//!
//! Data flows one way: TLS ([`tls`]) → caller identity → API handler ([`api`]) → domain
//! service ([`keys`]) → HSM ([`hsm`]) / store ([`store`]). Only `api` knows HTTP and JSON,
//! only `hsm` calls cryptoki, only `store` touches sled. See ARCHITECTURE.md.

pub mod api;
pub mod audit;
pub mod callbacks;
pub mod config;
pub mod control;
pub mod devinit;
pub mod error;
pub mod hsm;
pub mod keys;
pub mod metrics;
#[allow(unsafe_code)] // listed in ARCHITECTURE.md
pub mod os;
pub mod pdfsign;
#[allow(unsafe_code)] // listed in ARCHITECTURE.md
pub mod plugins;
pub mod rotate;
#[allow(unsafe_code)] // listed in ARCHITECTURE.md
pub mod sdnotify;
pub mod seals;
pub mod server;
pub mod store;
pub mod tasks;
pub mod tls;
pub mod vault;
