//! Scan tasks (QR flows): `/v1/tasks/...`, their data and results per kind, and the
//! callback a gateway receives.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::ErrorDetail;
use crate::keys::{SignShares, Subject};

/// A task and the token that lets a phone act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskTicket {
    pub task_id: String,
    pub token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Login,
    Sign,
    Decrypt,
    Encrypt,
    PdfSeal,
    /// Withdraw a seal (撤章): the document as it was before its last revision.
    PdfUnseal,
    /// Created by activation, never by a gateway.
    Csr,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Login => "login",
            TaskKind::Sign => "sign",
            TaskKind::Decrypt => "decrypt",
            TaskKind::Encrypt => "encrypt",
            TaskKind::PdfSeal => "pdf_seal",
            TaskKind::PdfUnseal => "pdf_unseal",
            TaskKind::Csr => "csr",
        }
    }
}

/// The kinds a gateway may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CreateTaskKind {
    Login,
    Sign,
    Decrypt,
    Encrypt,
    PdfSeal,
    PdfUnseal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Claimed => "claimed",
            TaskStatus::AwaitingApproval => "awaiting_approval",
            TaskStatus::Completed => "completed",
            TaskStatus::Rejected => "rejected",
            TaskStatus::Expired => "expired",
            TaskStatus::Failed => "failed",
        }
    }
}

/// What the phone shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskDisplay {
    /// 1..=256 characters.
    pub title: String,
    /// At most 2048 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `POST /v1/tasks` (gateway). `data` is decoded by `kind` (one of [`TaskData`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = CreateTaskKind))]
    pub kind: String,
    /// Seconds until the task expires (the daemon's default and maximum apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    pub display: TaskDisplay,
    #[cfg_attr(feature = "openapi", schema(value_type = TaskData))]
    pub data: Value,
    /// `https://` URL POSTed over mutual TLS when the task ends (checked at creation,
    /// see docs/api-extensions.md); at most 2048 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub callback_url: Option<String>,
    /// Send the task to the phones of this key (its owner and the delegates it may use)
    /// through their inboxes, without a QR code; only they may claim it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_key_id: Option<String>,
}

/// A task's `data`, by kind. Byte strings are standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum TaskData {
    Login(LoginData),
    Sign(SignData),
    Decrypt(DecryptData),
    Encrypt(EncryptData),
    PdfSeal(PdfSealData),
    PdfUnseal(PdfUnsealData),
}

impl TaskData {
    pub fn kind(&self) -> CreateTaskKind {
        match self {
            TaskData::Login(_) => CreateTaskKind::Login,
            TaskData::Sign(_) => CreateTaskKind::Sign,
            TaskData::Decrypt(_) => CreateTaskKind::Decrypt,
            TaskData::Encrypt(_) => CreateTaskKind::Encrypt,
            TaskData::PdfSeal(_) => CreateTaskKind::PdfSeal,
            TaskData::PdfUnseal(_) => CreateTaskKind::PdfUnseal,
        }
    }
}

impl CreateTaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CreateTaskKind::Login => "login",
            CreateTaskKind::Sign => "sign",
            CreateTaskKind::Decrypt => "decrypt",
            CreateTaskKind::Encrypt => "encrypt",
            CreateTaskKind::PdfSeal => "pdf_seal",
            CreateTaskKind::PdfUnseal => "pdf_unseal",
        }
    }
}

/// `pdf_unseal` (撤章): a PDF whose last revision is a seal this service made; the result
/// is the document as it was before that revision, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PdfUnsealData {
    /// Base64.
    pub pdf: String,
}

/// `login`: a challenge (at most 4096 bytes) the key signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginData {
    pub challenge: String,
}

/// `sign`: the message the key signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignData {
    pub message: String,
    /// `raw` (default): the result's `signature` is DER `SEQUENCE{r, s}`. `cms`: a GB/T 35275
    /// detached `SignedData` (SM3, SM2-with-SM3, content type 1.2.156.10197.6.1.4.2.1, the
    /// signer's certificate and chain, signing-time, a signature time-stamp when the daemon
    /// has a TSA); the phone then co-signs the signed attributes (`claim` answers
    /// `{e, to_be_signed}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(raw|cms)$"))]
    pub format: Option<String>,
}

/// `decrypt`: an SM2 ciphertext (C1‖C3‖C2 or DER) to the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DecryptData {
    /// An SM2 ciphertext (C1‖C3‖C2 or DER), base64; or give `envelope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    /// A GB/T 35275 `EnvelopedData` (DER, base64), with its content or without: the result
    /// is then `plaintext` (content up to `[tasks] max_plaintext_bytes`) or `content_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
    /// Hex, any case: the claiming key's certificate serial must be this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_cert_serial: Option<String>,
    /// The joint public key (hex point) the ciphertext is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_public_key: Option<String>,
}

/// `encrypt`: at most 65536 bytes, encrypted to the claiming key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EncryptData {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub plaintext: Zeroizing<String>,
    /// `sm2` (default): the result's `ciphertext` is a DER SM2 ciphertext. `envelope`: the
    /// result's `envelope` is a GB/T 35275 `EnvelopedData` (SM4-CBC, SM2 key transport to
    /// the key's certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(sm2|envelope)$"))]
    pub format: Option<String>,
}

/// `pdf_seal`: a PDF, the seal (default: the claiming key's oldest usable one) and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PdfSealData {
    pub pdf: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = PlacementChoice))]
    pub placement: Value,
}

/// A `pdf_seal` task's `placement`: where the seal goes, or `"deferred"` (chosen on the PC
/// after the claim). Schema only: the daemon reads the field itself.
#[cfg(feature = "openapi")]
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PlacementChoice {
    Placed(Placement),
    Deferred(Deferred),
}

/// `"deferred"`.
#[cfg(feature = "openapi")]
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Deferred {
    Deferred,
}

/// Where a seal goes: PDF points from the page's lower-left corner, the seal's centre.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Placement {
    CrossPage(CrossPagePlacement),
    Keyword(KeywordPlacement),
    Pages(PagesPlacement),
    Page(PagePlacement),
}

/// On one page (1-based).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PagePlacement {
    pub page: u32,
    pub x: f64,
    pub y: f64,
}

/// Over the `occurrence`-th (default 1, at most 10000) appearance of a keyword.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeywordPlacement {
    pub keyword: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<u32>,
}

/// At the same place on several pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PagesPlacement {
    pub pages: Vec<u32>,
    pub x: f64,
    pub y: f64,
}

/// A seal across the edge of every page (骑缝章); two pages or more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CrossPagePlacement {
    pub cross_page: CrossPage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CrossPage {
    pub side: Side,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Right,
    Left,
}

/// A created task; `qr` is the string to render
/// (`mcs://task?v=1&id=<task_id>&token=<token>&url=<daemon URL, percent-encoded>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedTask {
    pub task_id: String,
    /// 32 lowercase hex characters, shown once.
    pub token: String,
    pub qr: String,
    pub expires_at: String,
}

/// `GET /v1/tasks/{id}` (its gateway; a phone with `?token=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskView {
    pub task_id: String,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub platform: String,
    pub display: TaskDisplay,
    pub expires_at: String,
    /// What is signed, so the phone can show it and check the server's `e` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<TaskViewData>,
    /// Once claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A task view's `data`, by kind (decrypt and encrypt tasks show none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum TaskViewData {
    Login(LoginData),
    Sign(SignData),
    Csr(CsrData),
    PdfSeal(PdfSealView),
    PdfUnseal(PdfUnsealView),
}

/// `pdf_unseal`: which seal is withdrawn, and from which document, so the phone can show
/// it and rebuild the statement it co-signs:
/// `mcs-unseal-v1|<task_id>|<pdf_sha256>|<field>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PdfUnsealView {
    pub field: String,
    /// The subject of the signature's certificate.
    pub signer: String,
    /// Lowercase hex SHA-256 of the sealed PDF.
    pub pdf_sha256: String,
}

/// `csr`: the CertificationRequestInfo (base64 DER) the phone co-signs; it carries the
/// phone's joint key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CsrData {
    pub request_info: String,
}

/// `pdf_seal`: the seal chosen (or named) and the placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PdfSealView {
    pub seal_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = PlacementChoice))]
    pub placement: Value,
}

/// `POST /v1/tasks/{id}/claim` (app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub token: String,
    pub key_id: String,
}

/// `{e, to_be_signed}` (pdf_seal), `{e}` (login, sign, csr), `{ciphertext}` (decrypt) or
/// `{status: completed}` (encrypt, done at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ClaimAnswer {
    SealDigest(SealDigest),
    UnsealDigest(UnsealDigest),
    Digest(Digest),
    Ciphertext(CiphertextClaim),
    /// 202: the owner must approve first (a delegate with `approval: each_use`); claim
    /// again once approved for the answer.
    AwaitingApproval(crate::delegations::ApprovalPending),
    /// 202: a `pdf_seal` task with `placement: "deferred"`, claimed: the gateway chooses
    /// the seal and where it goes (`POST /v1/tasks/{id}/placement`); claim again for the
    /// digest.
    AwaitingPlacement(PlacementPending),
    Completed(TaskStatusAnswer),
}

/// `{status: "claimed", placement: "deferred"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacementPending {
    /// `claimed`.
    pub status: TaskStatus,
    /// `deferred`.
    pub placement: String,
}

/// `POST /v1/tasks/{id}/placement` (the creating gateway): the seal the user chose on the
/// PC and where it goes (a placement of API.md, not `deferred`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    pub seal_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Placement))]
    pub placement: Value,
}

/// `GET /v1/tasks/{id}/seals` (the creating gateway): the seals the claiming key may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskSeals {
    pub items: Vec<TaskSeal>,
}

/// One seal to choose, with its face for the PC to draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskSeal {
    pub seal_id: String,
    pub name: String,
    pub kind: crate::seals::SealKind,
    pub image: crate::seals::SealImage,
}

impl ClaimAnswer {
    /// The digest to co-sign, for the signing kinds.
    pub fn e(&self) -> Option<&str> {
        match self {
            ClaimAnswer::SealDigest(d) => Some(&d.e),
            ClaimAnswer::UnsealDigest(d) => Some(&d.e),
            ClaimAnswer::Digest(d) => Some(&d.e),
            _ => None,
        }
    }
}

/// `pdf_unseal`: `e` of the withdrawal statement, and the seal's field and signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnsealDigest {
    pub e: String,
    pub field: String,
    pub signer: String,
}

/// The digest `e` (64 lowercase hex characters) the phone co-signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Digest {
    pub e: String,
}

/// `to_be_signed`: the DER signed attributes (base64); `e` is their SM2 digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealDigest {
    pub e: String,
    pub to_be_signed: String,
}

/// The ciphertext as the gateway gave it (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CiphertextClaim {
    pub ciphertext: String,
}

/// `{status}`, the task's status afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskStatusAnswer {
    pub status: TaskStatus,
}

/// `POST /v1/tasks/{id}/cosign` (app): exactly one of `q1` (signing kinds) or `t1`
/// (decrypt); a lost answer is retried with a fresh point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CosignRequest {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^04[0-9a-f]{128}$"))]
    pub q1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^04[0-9a-f]{128}$"))]
    pub t1: Option<String>,
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: String,
    /// With `q1`: `canonical` (default) or `fixed_k3` (`{r, s3, der}`; the phone finishes
    /// `s = d1·(s3 + k1) − r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::keys::SignMode>))]
    pub mode: Option<String>,
}

/// `{r, s2, s3}` for `q1` (`{r, s3, der}` with `fixed_k3`), `{t2}` for `t1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum CosignAnswer {
    Sign(SignShares),
    /// With `mode: "fixed_k3"`.
    FixedK3(crate::keys::FixedK3Shares),
    Decrypt(crate::keys::DecryptShare),
}

/// A finished SM2 signature, scalars as 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignatureScalars {
    pub r: String,
    pub s: String,
}

/// `POST /v1/tasks/{id}/complete` (app): exactly one of `signature` (verified against the
/// key and the task's `e`) or `plaintext` (decrypt, base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureScalars>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub plaintext: Option<Zeroizing<String>>,
}

/// `POST /v1/tasks/{id}/reject` (app): free text, 1..=256 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    pub token: String,
    pub reason: String,
}

/// `POST /v1/tasks/batch/cosign` (app): one PIN proof over the whole batch (1..=100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchCosignRequest {
    pub items: Vec<BatchCosignItem>,
    pub key_id: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: String,
    /// For every item: `canonical` (default) or `fixed_k3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::keys::SignMode>))]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchCosignItem {
    pub task_id: String,
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^04[0-9a-f]{128}$"))]
    pub q1: String,
}

/// One answer per item, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchCosignAnswer {
    pub items: Vec<BatchCosignResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum BatchCosignResult {
    Signed(BatchSigned),
    SignedFixedK3(BatchSignedFixedK3),
    Failed(BatchFailed),
}

/// An item's `fixed_k3` server half.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchSignedFixedK3 {
    pub task_id: String,
    pub r: String,
    pub s3: String,
    /// Hex of DER `SEQUENCE { INTEGER r, INTEGER s3 }`.
    pub der: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchSigned {
    pub task_id: String,
    pub r: String,
    pub s2: String,
    pub s3: String,
}

/// The item's error, as the error body of a single request would carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchFailed {
    pub task_id: String,
    pub error: ErrorDetail,
}

/// `GET /v1/tasks/{id}/result?wait=` (the creating gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskOutcome {
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    /// Why it failed; `result already delivered` for a decrypt plaintext fetched before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body POSTed to a task's `callback_url`: the result body plus `task_id`; for a
/// decrypt task `result_available` instead of the plaintext (fetched once from `result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Callback {
    pub task_id: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_available: Option<bool>,
}

/// A completed task's result, by kind (byte strings base64; `certificate` base64 DER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum TaskResult {
    PdfSeal(PdfSealResult),
    PdfUnseal(PdfUnsealResult),
    Decrypt(DecryptResult),
    ContentKey(ContentKeyResult),
    Login(LoginResult),
    Sign(SignResult),
    // After the signatures: its `ciphertext` and `envelope` are each optional.
    Encrypt(EncryptResult),
    Csr(CsrResult),
}

/// `login`: the signature over the challenge and who signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResult {
    /// Base64 DER SM2 signature.
    pub signature: String,
    pub key_id: String,
    pub public_key: String,
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The certificate's subject DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_dn: Option<String>,
}

/// `sign`: the signature over the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignResult {
    /// Base64 DER SM2 signature.
    pub signature: String,
    pub key_id: String,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_dn: Option<String>,
}

/// `pdf_seal`: the signed PDF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PdfSealResult {
    pub pdf: String,
    pub seal_id: String,
    pub key_id: String,
    pub certificate: Option<String>,
}

/// `pdf_unseal`: the document before its last revision, and the withdrawn seal's field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PdfUnsealResult {
    pub pdf: String,
    pub field: String,
    pub key_id: String,
}

/// `decrypt`: the plaintext, delivered once to the creating gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecryptResult {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub plaintext: Zeroizing<String>,
}

/// `decrypt` of an envelope whose content the daemon did not hold: the SM4 content key
/// (32 lowercase hex), delivered once, like a plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContentKeyResult {
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{32}$"))]
    pub content_key: Zeroizing<String>,
}

/// `encrypt`: the SM2 ciphertext (DER) to the claiming key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EncryptResult {
    /// Base64 DER SM2 ciphertext (format `sm2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    /// Base64 DER `EnvelopedData` (format `envelope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
    pub certificate: Option<String>,
    pub key_id: String,
    pub public_key: String,
}

/// `csr`: the certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CsrResult {
    pub certificate: String,
    pub key_id: String,
}
