//! Enrollments and keys: `/v1/enrollments`, `/v1/keys/...`.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::tasks::TaskTicket;

/// Who a certificate will be for (API.md enrollment `subject`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub kind: SubjectKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
    /// 18-character unified social credit code (organisations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum), value(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    Person,
    Org,
    Operator,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Person => "person",
            SubjectKind::Org => "org",
            SubjectKind::Operator => "operator",
        }
    }
}

/// `POST /v1/enrollments` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRequest {
    pub subject: Subject,
    /// A loaded CA adapter.
    pub ca: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Platform ids the key may be used on.
    pub platforms: Vec<String>,
    /// 1..=3650.
    pub validity_days: u32,
}

/// An enrollment as created: the activation code is shown here, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Enrollment {
    pub enrollment_id: String,
    pub activation_code: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The key it replaces (`POST /v1/keys/{id}/successor` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predecessor: Option<String>,
}

/// A PIN verifier and its salt (PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// 32 lowercase hex characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{32}$"))]
    pub salt: String,
    /// 64 lowercase hex characters.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub verifier: Zeroizing<String>,
}

/// `POST /v1/enrollments/{id}/activate` (app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub activation_code: Zeroizing<String>,
    /// The phone's public share, 130 lowercase hex characters (04 ‖ x ‖ y).
    #[cfg_attr(feature = "openapi", schema(pattern = "^04[0-9a-f]{128}$"))]
    pub p1: String,
    pub pin: Pin,
    /// 32 random bytes (64 lowercase hex) the phone also keeps `d1` encrypted under; kept
    /// HSM-wrapped and handed back at a PIN reset. Without it a forgotten PIN costs the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = "^[0-9a-f]{64}$"))]
    pub recovery_key: Option<Zeroizing<String>>,
}

/// The activated (still pending) key and the certificate request task the phone co-signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activation {
    pub key_id: String,
    /// The joint public key, 130 lowercase hex characters.
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_task: Option<TaskTicket>,
    /// `p2 = d2⁻¹·G` (130 lowercase hex): the phone checks `d1⁻¹·p2 − G = public_key`
    /// (a Tongsuo `sm2_threshold` client derives the joint key from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum), value(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Pending,
    Active,
    Suspended,
    Revoked,
    Superseded,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "pending",
            KeyStatus::Active => "active",
            KeyStatus::Suspended => "suspended",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Superseded => "superseded",
        }
    }
}

/// A key (`GET /v1/keys/{id}` and the answers that change one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Key {
    pub key_id: String,
    pub status: KeyStatus,
    pub public_key: String,
    pub platforms: Vec<KeyPlatform>,
    pub pin: PinStatus,
    pub device_id: String,
    pub created_at: String,
    pub enrollment_id: String,
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    /// Base64 DER, once the CA issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Base64 DER intermediates, with `certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Vec<String>>,
    /// Hex, with `certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expires_at: Option<String>,
    /// While suspended by `POST …/suspend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<KeySuspension>,
    /// `p2 = d2⁻¹·G` of the owner's server share (130 lowercase hex), as at activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2: Option<String>,
}

/// Why a key is suspended, by whom, since when, and whether its certificate is on hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeySuspension {
    pub reason: String,
    /// `admin` or `owner` (the key's phone).
    pub by: String,
    /// RFC 3339.
    pub since: String,
    /// The CA holds the certificate (CRL reason `certificateHold`) until resumption.
    pub certificate_held: bool,
}

/// A platform the key may be used on, until when (absent: for the life of the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPlatform {
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PinStatus {
    pub remaining_attempts: u32,
    pub locked: bool,
}

/// `GET /v1/keys`, ordered by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyList {
    pub keys: Vec<Key>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SignMode {
    Canonical,
    FixedK3,
}

impl SignMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SignMode::Canonical => "canonical",
            SignMode::FixedK3 => "fixed_k3",
        }
    }
}

/// `POST /v1/keys/{id}/sign` (app): the server half over a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The digest, 64 lowercase hex characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub e: String,
    /// The phone's nonce point, 130 lowercase hex characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^04[0-9a-f]{128}$"))]
    pub q1: String,
    /// HMAC over the transcript (PROTOCOL.md), 64 lowercase hex characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: String,
    /// Default `canonical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<SignMode>))]
    pub mode: Option<String>,
}

/// The server half of a canonical signature (scalars, 64 lowercase hex characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignShares {
    pub r: String,
    pub s2: String,
    pub s3: String,
}

/// The server half in `fixed_k3` mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FixedK3Shares {
    pub r: String,
    pub s3: String,
    /// Hex of DER `SEQUENCE { INTEGER r, INTEGER s3 }` (what Tongsuo's `sm2_threshold`
    /// clients read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub der: Option<String>,
}

/// `{r, s2, s3}` (canonical) or `{r, s3}` (`fixed_k3`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SignAnswer {
    Canonical(SignShares),
    FixedK3(FixedK3Shares),
}

/// `POST /v1/keys/{id}/decrypt` (app): the server half of a blinded decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DecryptRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = "^04[0-9a-f]{128}$"))]
    pub t1: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: String,
}

/// `{t2}`: a point, 130 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecryptShare {
    pub t2: String,
}

/// `POST /v1/keys/{id}/pin` (app): the proof is made with the old PIN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePinRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: String,
    pub new_pin: Pin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    KeyCompromise,
    Superseded,
    Cessation,
    AffiliationChanged,
    Unspecified,
}

/// `POST /v1/keys/{id}/revoke`: an admin sends no `pin_proof`, a phone must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = RevokeReason))]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: Option<String>,
}

/// `POST /v1/keys/{id}/pin-reset` (admin), after the CA checked the person's identity.
/// The body may be empty (`{}`): the reset is of the owner's share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OpenPinResetRequest {
    /// Reset the share of this active delegation of the key instead (an employee's phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_id: Option<String>,
}

/// The one-time reset code (16 characters, 80 bits), shown once: the operator tells it to
/// the person out of band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PinResetOpened {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reset_code: Zeroizing<String>,
    /// RFC 3339.
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_id: Option<String>,
}

/// `POST /v1/keys/{id}/pin/reset` (the phone of the share).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PinResetRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reset_code: Zeroizing<String>,
    pub new_pin: Pin,
    /// The new recovery key (64 lowercase hex).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub recovery_key: Zeroizing<String>,
}

/// The previous recovery key (64 lowercase hex): the phone decrypts `d1` with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PinResetDone {
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub recovery_key: Zeroizing<String>,
}

/// `POST /v1/keys/{id}/suspend` (挂失 / 冻结): why, and the owner phone's proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    /// 1–64 characters, e.g. `lost` (挂失) or `frozen` (冻结); kept with the key.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub reason: String,
    /// The owner phone's proof (op `suspend`, field `reason`); none from an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub pin_proof: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SuccessorReason {
    Renew,
    Change,
    Reissue,
    /// The same key, a new certificate (延期): see [`Extension`].
    Extend,
}

/// `POST /v1/keys/{id}/successor`'s answer: an enrollment (`renew`, `change`, `reissue`)
/// or, for `extend`, an [`Extension`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SuccessorAnswer {
    Enrollment(Enrollment),
    Extension(Extension),
}

/// The answer to a `successor` with reason `extend`: no new key or enrollment — the
/// owner's phone co-signs a new certificate request for the same joint key through this
/// `csr` task (also posted to its inbox as a `task` item). When it completes the key
/// carries the new certificate, the old one is revoked at the CA (`superseded`) and the
/// seals that carried it are re-made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Extension {
    pub key_id: String,
    pub reason: SuccessorReason,
    pub csr_task: TaskTicket,
    /// The task's QR string (`mcs://task?...`), for a phone that reads no inbox.
    pub qr: String,
    /// RFC 3339: when the task expires.
    pub expires_at: String,
    /// Serial (hex) of the certificate being renewed.
    pub renews: String,
}

/// `POST /v1/keys/{id}/successor` (admin): `change` needs `subject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SuccessorRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = SuccessorReason))]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// 1..=3650.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_days: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum), value(rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum GrantMode {
    Once,
    Day,
    Year,
    Until,
}

/// `POST /v1/keys/{id}/platforms` (admin): authorise the key on a platform (roaming).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlatformRequest {
    pub platform: String,
    #[cfg_attr(feature = "openapi", schema(value_type = GrantMode))]
    pub mode: String,
    /// RFC 3339, in the future; only with mode `until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}
