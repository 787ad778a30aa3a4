//! The inbox: durable items addressed to one device (a task sent to a certificate's phones,
//! an approval to give, a delegation accepted, a certificate issued …), read by the app
//! with a cursor and kept until the app's cursor passes them.

use serde::{Deserialize, Serialize};

use super::task::{TaskDisplay, TaskKind};

/// One item as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRecord {
    /// `i_…`, unique.
    pub id: String,
    pub device_id: String,
    /// Unix seconds.
    pub created_at: i64,
    pub event: InboxEvent,
}

/// What `[push] url` is POSTed for each item: who and which, never what (the app reads
/// the item from its inbox over mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushBody {
    pub device_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// The outbox "platform" push deliveries count against (no platform id has parentheses).
pub const PUSH_PLATFORM: &str = "(push)";

/// What an item says, by API.md's item types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboxEvent {
    /// A task addressed to a key this device may use (`POST /v1/tasks` with `to_key_id`).
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
    CertificateExpiring {
        key_id: String,
        not_after: i64,
    },
}

impl InboxEvent {
    /// The item's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            InboxEvent::Task { .. } => "task",
            InboxEvent::ApprovalRequest { .. } => "approval_request",
            InboxEvent::ApprovalResult { .. } => "approval_result",
            InboxEvent::DelegationAccepted { .. } => "delegation_accepted",
            InboxEvent::DelegationRevoked { .. } => "delegation_revoked",
            InboxEvent::CertificateIssued { .. } => "certificate_issued",
            InboxEvent::KeySuspended { .. } => "key_suspended",
            InboxEvent::KeyResumed { .. } => "key_resumed",
            InboxEvent::KeySuperseded { .. } => "key_superseded",
            InboxEvent::CertificateExpiring { .. } => "certificate_expiring",
        }
    }
}
