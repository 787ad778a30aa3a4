//! The wire of the mcsd HTTP API (API.md and docs/api-extensions.md), defined once: every
//! request, answer and error body as a serde type, shared by the daemon, the reference
//! client and the tests, so a field name exists in one place.
//!
//! No IO and no validation beyond serde: requests refuse unknown fields
//! (`deny_unknown_fields`) and mark what is optional; whether a point is on the curve, a
//! time parses or a reason is known is the daemon's to check. Fields the daemon checks
//! itself with its own messages (reasons, modes, kinds) stay strings here; the schema
//! still lists their values. Secrets the daemon keeps from a request (activation codes,
//! PIN verifiers, plaintexts) are [`Zeroizing`](zeroize::Zeroizing) strings.
//!
//! With the `openapi` feature (default), [`openapi`] derives the OpenAPI 3.1 document
//! from these types; `cargo xtask openapi` writes it to `docs/openapi.yaml`.

pub mod delegations;
pub mod error;
pub mod inbox;
pub mod keys;
pub mod ops;
pub mod qr;
pub mod seals;
pub mod tasks;

#[cfg(feature = "openapi")]
pub mod openapi;
#[cfg(feature = "openapi")]
pub mod schema;
#[cfg(feature = "openapi")]
mod yaml;

pub use delegations::*;
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use inbox::*;
pub use keys::*;
pub use ops::*;
pub use qr::ScanCode;
pub use seals::*;
pub use tasks::*;

/// The body of a route that takes no fields (`POST /v1/keys/{id}/unlock`,
/// `POST /v1/seals/{id}/revoke`): absent, or exactly `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Empty {}
