//! Enrollments and keys: who a certificate is for, a key's state, its grants and certificate.

use serde::{Deserialize, Serialize};

/// Who a certificate will be for (API.md enrollment `subject`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub kind: SubjectKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    Person,
    Org,
    Operator,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum EnrollmentState {
    Pending,
    Activated { key_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentRecord {
    pub id: String,
    pub subject: Subject,
    pub ca: String,
    pub profile: Option<String>,
    pub platforms: Vec<String>,
    pub validity_days: u32,
    /// SHA-256 of the activation code; the code itself is shown once and never stored.
    pub activation_code_sha256: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub state: EnrollmentState,
    /// Set when this enrollment replaces a key (renew, change, reissue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predecessor: Option<Predecessor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Predecessor {
    pub key_id: String,
    /// `renew`, `change` or `reissue`.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformGrant {
    pub platform: String,
    /// Unix seconds; `None` = for the life of the key.
    pub until: Option<i64>,
    /// Consumed by the next completed task on this platform.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub once: bool,
}

impl PlatformGrant {
    pub fn valid_at(&self, now: i64) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinState {
    pub failures: u32,
    pub locked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub enrollment_id: String,
    pub subject: Subject,
    pub ca: String,
    pub status: KeyStatus,
    /// Joint public key P, SEC1 uncompressed, lowercase hex.
    pub public_key: String,
    /// SHA-256 of the activating phone's certificate SPKI, lowercase hex.
    pub device_id: String,
    pub platforms: Vec<PlatformGrant>,
    pub pin: PinState,
    pub created_at: i64,
    pub validity_days: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    /// When the key was revoked or superseded (unix seconds): signatures time-stamped
    /// before it stay valid. Absent in records from before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// The issued certificate (base64 DER) and its chain, once the CA answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateInfo>,
    /// The phone's activation point `P1` (hex), so a repeated activation whose answer was
    /// lost can be recognised and answered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p1: Option<String>,
    /// While the key is suspended by `POST …/suspend` (挂失 / 冻结): why, by whom, and
    /// whether its certificate is on hold at the CA. `None` for a key a `reissue`
    /// suspended, which is never resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<Suspension>,
    /// The serial of the certificate whose coming expiry the holders were told of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_notified: Option<String>,
    /// An open PIN reset of the owner's share (`POST …/pin-reset`), until it is used,
    /// voided by wrong codes, or expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_reset: Option<PinResetState>,
    /// Certificates of this same key replaced by a renewal (延期): signatures time-stamped
    /// before `retired_at` stay valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_certificates: Vec<RetiredCertificate>,
    /// `p2 = d2⁻¹·G` (hex) of the owner's server share: public, for a client's joint-key
    /// check (Tongsuo's `-derive`). Absent for keys activated before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2: Option<String>,
}

/// A certificate a renewal replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredCertificate {
    pub serial: String,
    /// Unix seconds.
    pub retired_at: i64,
}

/// An open PIN reset (PROTOCOL.md "PIN reset without losing the key"): the one-time code
/// is shown once to the operator and only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinResetState {
    pub code_sha256: String,
    /// Unix seconds.
    pub opened_at: i64,
    pub expires_at: i64,
    /// Wrong codes so far; the reset is voided at [`PinResetState::MAX_WRONG_CODES`].
    pub wrong_codes: u32,
}

impl PinResetState {
    pub const MAX_WRONG_CODES: u32 = 5;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub reason: String,
    /// `admin` or `owner`.
    pub by: String,
    /// Unix seconds.
    pub at: i64,
    /// The CA put the certificate on hold (released on resumption).
    pub certificate_held: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub der_b64: String,
    pub chain_b64: Vec<String>,
    /// Lowercase hex.
    pub serial: String,
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// A key the daemon itself holds (a CA key, later the seal maker and audit keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonKeyRecord {
    pub name: String,
    /// SEC1 uncompressed, lowercase hex.
    pub public_key: String,
    pub created_at: i64,
}
