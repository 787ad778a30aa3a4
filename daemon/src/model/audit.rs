//! The audit records the store keeps: chain entries and signed checkpoints (the chain's
//! rules, hashing and signing are `audit.rs`'s).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// The node whose chain holds the entry, on a store several nodes share (each node
    /// writes its own chain); absent on a single-node store. Covered by the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Unix milliseconds.
    pub at: i64,
    pub event: String,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub outcome: String,
    #[serde(default)]
    pub detail: Value,
    /// The `X-Request-Id` of the API request the entry records (absent for daemon events
    /// and entries written before request ids were kept). Covered by the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The IP address the request came from. Covered by the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Hex SM3 of the previous entry.
    pub prev: String,
    /// Hex SM3 over `prev` and this entry without `hash`.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    pub at: i64,
    /// DER SM2 signature (audit key, default ID) over `"mcsd-audit" ‖ seq (8 bytes BE) ‖ hash`.
    pub signature: String,
}
