//! Delegations (API.md "Organisations"): another device's share pair of a key — an
//! employee's phone (`delegate`) or the owner's new phone (`transfer`) — and where its
//! re-share stands.

use serde::{Deserialize, Serialize};

use super::key::PinState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelegationKind {
    Delegate,
    Transfer,
}

impl DelegationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DelegationKind::Delegate => "delegate",
            DelegationKind::Transfer => "transfer",
        }
    }
}

/// `invited` → (accept) `awaiting_share` → (share) `awaiting_pin` → (activate) `active`;
/// any non-final state → `revoked` or `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelegationStatus {
    Invited,
    AwaitingShare,
    AwaitingPin,
    Active,
    Revoked,
    Expired,
}

impl DelegationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DelegationStatus::Invited => "invited",
            DelegationStatus::AwaitingShare => "awaiting_share",
            DelegationStatus::AwaitingPin => "awaiting_pin",
            DelegationStatus::Active => "active",
            DelegationStatus::Revoked => "revoked",
            DelegationStatus::Expired => "expired",
        }
    }

    /// Ended: its secrets are erased and it never moves again.
    pub fn is_final(self) -> bool {
        matches!(self, DelegationStatus::Revoked | DelegationStatus::Expired)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    #[default]
    None,
    EachUse,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::None => "none",
            Approval::EachUse => "each_use",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationRecord {
    pub id: String,
    pub key_id: String,
    /// The key's joint public key `P` (hex point), for the delegate's pair check.
    pub public_key: String,
    pub kind: DelegationKind,
    pub status: DelegationStatus,
    /// The delegate's device, fixed when it accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Unix seconds; uses outside `[not_before, not_after)` are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    pub approval: Approval,
    /// Task kinds the delegate may use the key for; `None`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kinds: Option<Vec<String>>,
    /// SHA-256 of the invitation code; the code is shown once and never stored.
    pub invitation_sha256: String,
    pub invitation_expires_at: i64,
    /// B's transport key `T` (hex point), from accept on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_key: Option<String>,
    /// `p2 = d2'⁻¹·G` (hex point), from reshare on: public, for B's joint-key check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2: Option<String>,
    /// The delegate's own PIN counter (the key's counter is the owner's).
    pub pin: PinState,
    /// Who created it: `owner` or `admin`.
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Why it ended (`revoked`, `expired`, `key_revoked`), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Compare-and-swap revision: every change is stored at `rev + 1`.
    pub rev: u64,
    /// An open PIN reset of the delegate's share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_reset: Option<crate::model::key::PinResetState>,
}

impl DelegationRecord {
    /// Inside the delegation's validity window at `at`.
    pub fn valid_at(&self, at: i64) -> bool {
        self.not_before.is_none_or(|nb| at >= nb) && self.not_after.is_none_or(|na| at < na)
    }

    /// May the delegate use the key for `kind` (a task kind, or `sign`/`decrypt` raw)?
    pub fn allows(&self, kind: &str) -> bool {
        self.task_kinds.as_ref().is_none_or(|k| k.iter().any(|k| k == kind))
    }
}
