//! Scan tasks and their callbacks.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::key::Subject;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Login,
    Sign,
    Decrypt,
    Encrypt,
    Csr,
    PdfSeal,
    PdfUnseal,
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

/// What a decrypt task keeps of a digital envelope: its key-transport recipients, the IV
/// and, when small enough, the encrypted content (else only its last two blocks, to check a
/// key against).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeTask {
    pub recipients: Vec<EnvelopeRecipient>,
    /// Hex.
    pub iv: String,
    /// Base64 of the encrypted content, if kept (the result is then `plaintext`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Hex of the IV or next-to-last block and the last block of the content, if it had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecipient {
    /// Base64 DER of the issuer's Name.
    pub issuer: String,
    /// Hex of the serial number's bytes.
    pub serial: String,
    /// Base64 of the encrypted key (DER `SM2Cipher`).
    pub encrypted_key: String,
}

/// What a renewal `csr` task replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRenewal {
    /// Serial (hex) of the key's certificate when the renewal was asked for.
    pub serial: String,
    pub validity_days: u32,
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
        /// Answer a GB/T 35275 detached `SignedData` (`format: "cms"`) instead of the bare
        /// signature.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cms: bool,
        /// For `cms`: the signing time fixed at claim (Unix seconds), so completion rebuilds
        /// the same signed attributes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signing_time: Option<i64>,
    },
    Decrypt {
        /// The SM2 ciphertext (base64); empty for an envelope.
        ciphertext: String,
        recipient_cert_serial: Option<String>,
        recipient_public_key: Option<String>,
        /// A GB/T 35275 digital envelope: the phone decrypts its content-encryption key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        envelope: Option<EnvelopeTask>,
    },
    Encrypt {
        /// Answer a GB/T 35275 `EnvelopedData` instead of an SM2 ciphertext.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        envelope: bool,
    },
    /// A CertificationRequestInfo (base64 DER) the phone co-signs as proof of possession.
    Csr {
        key_id: String,
        request_info: String,
        /// A same-key renewal (延期, `successor` reason `extend`): the certificate it
        /// replaces and the new one's validity. `None`: the key's first certificate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renews: Option<CertificateRenewal>,
    },
    /// A PDF to seal (base64), the seal asked for, the placement (API.md JSON). At claim the
    /// seal used and the signing time are fixed, so completion rebuilds the same revision.
    PdfSeal {
        pdf: String,
        seal_id: Option<String>,
        placement: serde_json::Value,
        chosen_seal: Option<String>,
        signing_time: Option<u64>,
        /// The CRLs (base64 DER) fetched when the revision was fixed, for its Document
        /// Security Store: kept so completion rebuilds the same bytes. Absent in older records.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dss_crls: Vec<String>,
    },
    /// Withdraw the seal of a PDF's last revision (base64), made by this service: its
    /// signature field, the seal's esID, the signer's subject, the PDF's SHA-256 (hex).
    PdfUnseal {
        pdf: String,
        field: String,
        es_id: String,
        signer: String,
        pdf_sha256: String,
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
    /// The key the creating platform addressed the task to (`to_key_id`): only its owner
    /// and delegates may claim it, and their inboxes got it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_key_id: Option<String>,
    /// The owner's approval a delegate with `approval: each_use` needs to go on with the
    /// task (kept here so it moves with the task's compare-and-swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<TaskApproval>,
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
    pub result: Option<TaskResult>,
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

impl TaskRecord {
    /// A task as created: pending, nothing claimed, computed or delivered yet; callers set
    /// the token, display and callback.
    pub fn pending(
        id: String,
        kind: TaskKind,
        platform: String,
        data: TaskData,
        created_at: i64,
        expires_at: i64,
    ) -> Self {
        TaskRecord {
            id,
            kind,
            platform,
            token_sha256: String::new(),
            display: TaskDisplay { title: String::new(), detail: None },
            data,
            callback_url: None,
            status: TaskStatus::Pending,
            rev: 0,
            created_at,
            expires_at,
            updated_at: created_at,
            key_id: None,
            device_id: None,
            to_key_id: None,
            approval: None,
            e: None,
            cosigned: false,
            cosign_nonces: Vec::new(),
            result: None,
            secret_result: false,
            delivered: false,
            error: None,
            charged_bytes: 0,
        }
    }
}

/// A task's approval by the key's owner (API.md "Per-use approval").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskApproval {
    /// `a_` and the task id's random part: one approval per task.
    pub id: String,
    /// The delegation the claimant holds the key through; empty for a seal grant's approval.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub delegation_id: String,
    /// The key whose owner decides, when it is not the task's key: a seal grant's approval
    /// is the seal owner's (its first signer key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_key_id: Option<String>,
    /// The seal whose grant asked for the approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_id: Option<String>,
    pub status: ApprovalStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
}

impl TaskApproval {
    /// The approval id of a task (and back).
    pub fn id_for(task_id: &str) -> String {
        format!("a_{}", task_id.strip_prefix("t_").unwrap_or(task_id))
    }

    pub fn task_of(approval_id: &str) -> Option<String> {
        approval_id.strip_prefix("a_").filter(|r| !r.is_empty()).map(|r| format!("t_{r}"))
    }
}

/// A finished task's result, by kind: byte strings are standard base64, `certificate` the
/// key's certificate (base64 DER) when it has one.
///
/// Stored untagged, as the plain object the gateway receives; the record's `kind` is not
/// consulted, so each variant must be told apart by its fields alone. Serde tries the
/// variants in order, and the order matters where one's required fields are a subset of
/// another's: `Login` (which adds `subject`) before `Sign`, and `Csr` (only `certificate` and
/// `key_id`) after every kind that also carries both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskResult {
    PdfSeal {
        /// The sealed PDF: the task's document with the seal's revision appended.
        pdf: String,
        seal_id: String,
        key_id: String,
        /// `null` when the key has no certificate.
        certificate: Option<String>,
    },
    /// The document before its last revision (the withdrawn seal's).
    PdfUnseal { pdf: String, field: String, key_id: String },
    Encrypt {
        /// The SM2 ciphertext (DER) to the claiming key, or with `envelope` the DER
        /// `EnvelopedData`.
        ciphertext: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        envelope: bool,
        /// `null` when the key has no certificate.
        certificate: Option<String>,
        key_id: String,
        public_key: String,
    },
    /// Never stored: the plaintext stays HSM-wrapped in `secrets` until the creating
    /// gateway takes it, and this is what it gets then.
    Decrypt { plaintext: Zeroizing<String> },
    /// Never stored, like `Decrypt`: an envelope's content-encryption key (hex), for content
    /// the daemon did not hold.
    ContentKey { content_key: Zeroizing<String> },
    Login {
        /// Base64 DER SM2 signature over the challenge.
        signature: String,
        key_id: String,
        public_key: String,
        subject: Subject,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        certificate: Option<String>,
        /// The certificate's subject DN (with `certificate`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject_dn: Option<String>,
    },
    Sign {
        /// Base64 DER SM2 signature over the message.
        signature: String,
        key_id: String,
        public_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        certificate: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject_dn: Option<String>,
    },
    /// The certificate the CA issued for the key.
    Csr { certificate: String, key_id: String },
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
    /// A push wake-up for an inbox item (`[push] url`) instead of a task's outcome: then
    /// `task_id` is the item's id and `platform` is [`PUSH_PLATFORM`](super::inbox::PUSH_PLATFORM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<super::inbox::PushBody>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::key::SubjectKind;

    /// A completed task record as the daemon has written it since results were first kept
    /// (an untyped JSON object built per kind, so its keys in sorted order).
    fn stored(kind: &str, data: Value, result: Value) -> String {
        json!({
            "id": "t-1", "kind": kind, "platform": "p1", "token_sha256": "ab".repeat(32),
            "display": { "title": "Log in" }, "data": data, "callback_url": null,
            "status": "completed", "rev": 4, "created_at": 1_700_000_000, "expires_at": 1_700_000_300,
            "updated_at": 1_700_000_010, "key_id": "k-1", "device_id": "dev-a", "e": "cd".repeat(32),
            "cosigned": true, "cosign_nonces": ["ef".repeat(16)], "result": result,
            "secret_result": false, "delivered": false, "error": null, "charged_bytes": 812,
        })
        .to_string()
    }

    #[test]
    fn records_written_before_results_were_typed_still_decode_as_their_kind() {
        let person = json!({ "kind": "person", "name": "张三", "id_number": "110101199003070000" });
        let cases = [
            (
                "login",
                json!({ "kind": "login", "challenge": "Y2hhbGxlbmdl" }),
                json!({ "certificate": "MIIB", "key_id": "k-1", "public_key": "04aa", "signature": "MEUC",
                        "subject": person, "subject_dn": "CN=张三" }),
            ),
            (
                "login",
                json!({ "kind": "login", "challenge": "Y2hhbGxlbmdl" }),
                json!({ "key_id": "k-1", "public_key": "04aa", "signature": "MEUC",
                        "subject": { "kind": "org", "name": "Acme", "org_name": "Acme Ltd",
                                     "credit_code": "91110000000000000X" } }),
            ),
            (
                "sign",
                json!({ "kind": "sign", "message": "bWVzc2FnZQ==" }),
                json!({ "certificate": "MIIB", "key_id": "k-1", "public_key": "04aa", "signature": "MEUC",
                        "subject_dn": "CN=张三" }),
            ),
            (
                "sign",
                json!({ "kind": "sign", "message": "bWVzc2FnZQ==" }),
                json!({ "key_id": "k-1", "public_key": "04aa", "signature": "MEUC" }),
            ),
            (
                "encrypt",
                json!({ "kind": "encrypt" }),
                json!({ "certificate": "MIIB", "ciphertext": "MHkC", "key_id": "k-1", "public_key": "04aa" }),
            ),
            (
                "encrypt",
                json!({ "kind": "encrypt" }),
                json!({ "certificate": null, "ciphertext": "MHkC", "key_id": "k-1", "public_key": "04aa" }),
            ),
            (
                "csr",
                json!({ "kind": "csr", "key_id": "k-1", "request_info": "MIGA" }),
                json!({ "certificate": "MIIB", "key_id": "k-1" }),
            ),
            (
                "pdf_seal",
                json!({ "kind": "pdf_seal", "pdf": "JVBE", "seal_id": null, "placement": { "page": 1, "x": 100, "y": 100 },
                        "chosen_seal": "s-1", "signing_time": 1_700_000_005 }),
                json!({ "certificate": "MIIB", "key_id": "k-1", "pdf": "JVBERi0x", "seal_id": "s-1" }),
            ),
            (
                "pdf_seal",
                json!({ "kind": "pdf_seal", "pdf": "JVBE", "seal_id": "s-1", "placement": { "keyword": "甲方" },
                        "chosen_seal": "s-1", "signing_time": 1_700_000_005 }),
                json!({ "certificate": null, "key_id": "k-1", "pdf": "JVBERi0x", "seal_id": "s-1" }),
            ),
        ];
        for (kind, data, result) in cases {
            let rec: TaskRecord = serde_json::from_str(&stored(kind, data, result.clone()))
                .unwrap_or_else(|e| panic!("{kind} {result}: {e}"));
            let typed = rec.result.clone().expect("a result");
            let variant = match &typed {
                TaskResult::Login { .. } => "login",
                TaskResult::Sign { .. } => "sign",
                TaskResult::Encrypt { .. } => "encrypt",
                TaskResult::Csr { .. } => "csr",
                TaskResult::PdfSeal { .. } => "pdf_seal",
                TaskResult::PdfUnseal { .. } => "pdf_unseal",
                TaskResult::Decrypt { .. } | TaskResult::ContentKey { .. } => "decrypt",
            };
            assert_eq!(variant, kind, "{result}");
            // Written again, the result says exactly what it said (same fields, same values,
            // `null` where it had `null`), so answers rendered from it do not change.
            assert_eq!(serde_json::to_value(&typed).unwrap(), result, "{kind}");
            let again: TaskRecord = serde_json::from_slice(&serde_json::to_vec(&rec).unwrap()).unwrap();
            assert_eq!(again, rec);
        }
    }

    #[test]
    fn a_login_result_keeps_the_subject_and_a_task_without_a_result_has_none() {
        let rec: TaskRecord = serde_json::from_str(&stored(
            "login",
            json!({ "kind": "login", "challenge": "eA==" }),
            json!({ "key_id": "k-1", "public_key": "04aa", "signature": "MEUC", "subject": { "kind": "person", "name": "李四" } }),
        ))
        .unwrap();
        let Some(TaskResult::Login { subject, certificate: None, subject_dn: None, .. }) = rec.result else {
            panic!("{:?}", rec.result)
        };
        assert_eq!((subject.kind, subject.name.as_str()), (SubjectKind::Person, "李四"));

        // A decrypt task's plaintext is never in the record: its result stays `null`.
        let rec: TaskRecord = serde_json::from_str(&stored(
            "decrypt",
            json!({ "kind": "decrypt", "ciphertext": "MHkC", "recipient_cert_serial": null, "recipient_public_key": null }),
            Value::Null,
        ))
        .unwrap();
        assert_eq!(rec.result, None);
        assert_eq!(serde_json::to_value(&rec).unwrap()["result"], Value::Null);
    }

    #[test]
    fn a_delivered_plaintext_is_the_plain_object_gateways_read() {
        let r = TaskResult::Decrypt { plaintext: Zeroizing::new("aGk=".into()) };
        assert_eq!(serde_json::to_value(&r).unwrap(), json!({ "plaintext": "aGk=" }));
    }
}
