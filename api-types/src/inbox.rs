//! The inbox (`GET /v1/inbox`): items addressed to the calling device.

use serde::{Deserialize, Serialize};

use crate::tasks::{TaskDisplay, TaskKind};

/// `GET /v1/inbox?after=&wait=`: the caller's items after the cursor, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    /// Give it back as `after`: the items up to it are then dropped, and the next ones come.
    pub cursor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxItem {
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    #[serde(flatten)]
    pub event: InboxEvent,
}

/// An item's `type` and what it carries (API.md's item types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboxEvent {
    /// A task addressed to a key this device may use (`to_key_id`): open it with `token`
    /// as if its QR code had been scanned.
    Task {
        task_id: String,
        token: String,
        kind: TaskKind,
        display: TaskDisplay,
        platform: String,
    },
    ApprovalRequest {
        approval_id: String,
        task_id: String,
        display: TaskDisplay,
        platform: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delegate_label: Option<String>,
    },
    ApprovalResult {
        approval_id: String,
        task_id: String,
        decision: String,
    },
    DelegationAccepted {
        delegation_id: String,
    },
    DelegationRevoked {
        delegation_id: String,
    },
    CertificateIssued {
        key_id: String,
    },
    KeySuspended {
        key_id: String,
    },
    KeyResumed {
        key_id: String,
    },
    KeySuperseded {
        key_id: String,
    },
    /// 30 days before `not_after` (Unix seconds), once.
    CertificateExpiring {
        key_id: String,
        not_after: i64,
    },
}
