//! Scan tasks and their callbacks.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Login,
    Sign,
    Decrypt,
    Encrypt,
    Csr,
    PdfSeal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Claimed,
    AwaitingApproval,
    Completed,
    Rejected,
    Expired,
    Failed,
}

impl TaskStatus {
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Rejected | TaskStatus::Expired | TaskStatus::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDisplay {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The non-secret inputs of a task. (An `encrypt` task's plaintext is a wrapped secret.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TaskData {
    Login {
        challenge: String,
    },
    Sign {
        message: String,
    },
    Decrypt {
        ciphertext: String,
        recipient_cert_serial: Option<String>,
        recipient_public_key: Option<String>,
    },
    Encrypt {},
    /// A CertificationRequestInfo (base64 DER) the phone co-signs as proof of possession.
    Csr {
        key_id: String,
        request_info: String,
    },
    /// A PDF to seal (base64), the seal asked for, the placement (API.md JSON). At claim the
    /// seal used and the signing time are fixed, so completion rebuilds the same revision.
    PdfSeal {
        pdf: String,
        seal_id: Option<String>,
        placement: serde_json::Value,
        chosen_seal: Option<String>,
        signing_time: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub kind: TaskKind,
    /// Platform of the creating gateway (or empty for internal tasks).
    pub platform: String,
    pub token_sha256: String,
    pub display: TaskDisplay,
    pub data: TaskData,
    pub callback_url: Option<String>,
    pub status: TaskStatus,
    /// Incremented by every write; transitions compare-and-swap on it.
    pub rev: u64,
    pub created_at: i64,
    pub expires_at: i64,
    pub updated_at: i64,
    pub key_id: Option<String>,
    pub device_id: Option<String>,
    /// The digest the server computed at claim (signing kinds), lowercase hex.
    pub e: Option<String>,
    /// A co-signature was given out (the phone may complete).
    pub cosigned: bool,
    /// Which nonce points (`q1`, or `t1` for decrypt) were answered: the first 16 bytes of
    /// SHA-256 of each one's lowercase hex SEC1 encoding, hex. A phone whose answer was lost co-signs again with a fresh
    /// nonce; a point already answered is refused, so two server halves never go out for
    /// one nonce.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosign_nonces: Vec<String>,
    /// Non-secret result for the gateway.
    pub result: Option<serde_json::Value>,
    /// A wrapped secret result (decrypt plaintext) waits in `secrets` until delivered.
    pub secret_result: bool,
    pub delivered: bool,
    pub error: Option<String>,
    /// Bytes this task counts against its platform's open-bytes quota while it is open:
    /// its record and wrapped inputs as first stored (set by the store on insert; 0 in
    /// records from before quotas).
    #[serde(default)]
    pub charged_bytes: u64,
}

/// A callback still to be delivered; written in the same transaction as the final state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRecord {
    pub task_id: String,
    pub url: String,
    pub attempts: u32,
    pub next_at_ms: i64,
    /// The task's platform, whose delivery slots and target rules apply (empty in
    /// records from before it was kept here: the task says).
    #[serde(default)]
    pub platform: String,
}
