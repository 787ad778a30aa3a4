//! Operations: the audit log and the CA adapters (`/v1/audit`, `/v1/plugins/...`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /v1/audit`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// One hash-chained entry. The optional ids are `null` when the entry names none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub seq: u64,
    /// The node whose chain holds the entry, on a store several nodes share (absent on a
    /// single-node store); `seq` counts within that chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub at: String,
    /// `METHOD /route/template`, or a daemon event (`daemon started`, `config reload`, …).
    pub event: String,
    pub actor: String,
    pub key_id: Option<String>,
    pub platform: Option<String>,
    pub task_id: Option<String>,
    /// `ok` or the error code.
    pub outcome: String,
    /// What else the event records (any JSON).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub detail: Value,
    /// The `X-Request-Id` of the API request the entry records (the caller's, or the one
    /// the daemon made and answered with). Absent for daemon events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The IP address the request came from. Absent for daemon events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub hash: String,
}

/// `GET /v1/plugins` (admin): configured CA adapters, loaded or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginList {
    pub plugins: Vec<Plugin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Plugin {
    /// What the adapter's `describe` says of itself (`null` where it says nothing).
    Loaded {
        name: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
        adapter: Value,
        #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
        version: Value,
        abi: u32,
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
        algorithms: Value,
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
        profiles: Value,
        library: String,
    },
    Failed {
        name: String,
        error: String,
        library: String,
    },
}

/// `GET /v1/plugins/{name}/crl` (any role): base64 DER, plus whatever the adapter adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Crl {
    pub crl: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CertificateState {
    Good,
    Revoked,
    Unknown,
}

/// `GET /v1/plugins/{name}/status?serial=` (any role): the serial's status at the CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateStatus {
    pub status: CertificateState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
