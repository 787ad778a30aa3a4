//! Delegations (API.md "Organisations: delegations"): `/v1/keys/{id}/delegations` and
//! `/v1/delegations/...` — another device's share pair of a key, an employee's phone
//! (`delegate`) or the owner's new phone (`transfer`), set up by re-sharing.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::Pin;

/// `POST /v1/keys/{id}/delegations` (the owner's app with `pin_proof`, or admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DelegationRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = DelegationKind))]
    pub kind: String,
    /// RFC 3339; required for `delegate`. Extension: `not_before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `none` (default) or `each_use`; not for `transfer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<DelegationApproval>))]
    pub approval: Option<String>,
    /// Task kinds (`login`, `sign`, `pdf_seal`, `decrypt`, `encrypt`) the delegate may use;
    /// absent: all. Not for `transfer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kinds: Option<Vec<String>>,
    /// Up to 64 characters, shown to the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Over `kind`, `not_after`, `approval` (absent: empty); the owner's app only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DelegationKind {
    Delegate,
    Transfer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DelegationApproval {
    None,
    EachUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DelegationStatus {
    Invited,
    AwaitingShare,
    AwaitingPin,
    Active,
    Revoked,
    Expired,
}

/// The answer to a creation: the invitation code is shown here, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DelegationCreated {
    pub delegation_id: String,
    pub invitation_code: String,
    /// RFC 3339: the invitation's end (the whole set-up must finish by then).
    pub expires_at: String,
}

/// `POST /v1/delegations/{did}/accept` (app: the new device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcceptDelegationRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub invitation_code: Zeroizing<String>,
    /// The new device's fresh transport public key `T = t·G` (130 lowercase hex).
    #[cfg_attr(feature = "openapi", schema(pattern = "^04[0-9a-f]{128}$"))]
    pub transport_key: String,
}

/// `POST /v1/delegations/{did}/reshare` and `/revoke` (the owner's app: `pin_proof`;
/// an admin's revoke: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DelegationProof {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: Option<String>,
}

/// The re-share factor `u` (scalar hex), for the owner's phone only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reshare {
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub u: Zeroizing<String>,
}

/// `POST /v1/delegations/{did}/share` (the owner's app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// SM2 encryption (C1‖C3‖C2, lowercase hex) of the 32-byte `d1'` to the transport key.
    #[cfg_attr(feature = "openapi", schema(pattern = "^04[0-9a-f]{256}$"))]
    pub wrapped_share: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: String,
}

/// `POST /v1/delegations/{did}/activate` (the delegate's app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivateDelegationRequest {
    pub pin: Pin,
    /// As at a key's activation: the delegate's own recovery key (64 lowercase hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = "^[0-9a-f]{64}$"))]
    pub recovery_key: Option<Zeroizing<String>>,
}

/// The key the delegation gives the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DelegatedKey {
    pub key_id: String,
    pub public_key: String,
}

/// A delegation as its owner, its delegate or an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delegation {
    pub delegation_id: String,
    pub key_id: String,
    pub kind: DelegationKind,
    pub status: DelegationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    pub approval: DelegationApproval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kinds: Option<Vec<String>>,
    /// The delegate's own PIN counter (extension).
    pub pin: crate::keys::PinStatus,
    pub created_at: String,
    /// Extension: why it ended (`revoked`, `expired`, `key_revoked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Extension: the key's joint public key `P`, which the delegate checks its pair against.
    pub public_key: String,
    /// Extension, while `awaiting_share`: the new device's transport key `T`, which the
    /// owner's phone seals `d1'` to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_key: Option<String>,
    /// For the delegate while `awaiting_pin`: its sealed `d1'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_share: Option<String>,
    /// For the delegate while `awaiting_pin`: `p2 = d2'⁻¹·G`, for its joint-key check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DelegationList {
    pub items: Vec<Delegation>,
}

/// `GET /v1/devices` (app): for every key the caller owns, the devices that hold a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    pub items: Vec<DeviceRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceRow {
    pub device_id: String,
    pub role: DeviceRole,
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// RFC 3339; absent until known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeviceRole {
    Owner,
    Delegate,
}

/// A claim that waits for the owner's approval (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalPending {
    /// `awaiting_approval`.
    pub status: crate::tasks::TaskStatus,
    pub approval_id: String,
}

/// `POST /v1/approvals/{id}` (the key's owner): PIN proof over `approve` (`aid`, `decision`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecisionRequest {
    /// `approve` or `deny`.
    pub decision: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalDecided {
    pub approval_id: String,
    pub decision: String,
}

/// `GET /v1/approvals/{id}` (the owner, the delegate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalView {
    pub approval_id: String,
    pub task_id: String,
    pub key_id: String,
    /// The delegation the claimant uses the key through; absent for a seal grant's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_id: Option<String>,
    /// Absent for a seal grant's approval (then `seal_id` names the seal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_id: Option<String>,
    /// `pending`, `approved`, `denied` or `expired` (with its task).
    pub status: String,
    pub display: crate::tasks::TaskDisplay,
    pub platform: String,
}
