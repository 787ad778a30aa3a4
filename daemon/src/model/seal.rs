//! Electronic seals (GB/T 38540) and their grants, and the seal maker's certificate.

use serde::{Deserialize, Serialize};

use super::delegation::Approval;

/// An electronic seal (GB/T 38540) and who may use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealRecord {
    pub id: String,
    pub es_id: String,
    /// official, legal_rep, finance, contract, personal, signature.
    pub kind: String,
    pub name: String,
    pub owner: serde_json::Value,
    pub picture_type: String,
    pub width_mm: u32,
    pub height_mm: u32,
    pub signer_key_ids: Vec<String>,
    pub grants: Vec<SealGrant>,
    pub valid_from: i64,
    pub valid_to: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The current SESeal, base64 DER (re-made by the maker when grants change).
    pub seal_b64: String,
    pub rev: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealGrant {
    pub key_id: String,
    pub not_before: i64,
    pub not_after: i64,
    /// `each_use`: every use of the seal through this grant waits for the approval of the
    /// seal's owner (the phone owning its first signer key). Absent in older records.
    #[serde(default)]
    pub approval: Approval,
}

/// The seal maker's certificate (its key is the daemon-held key `seal-maker`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealMakerRecord {
    pub ca: String,
    pub certificate_b64: String,
    pub chain_b64: Vec<String>,
}
