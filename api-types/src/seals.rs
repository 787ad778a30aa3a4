//! Electronic seals (GB/T 38540) and verification: `/v1/seals/...`, `/v1/verify/...`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum), value(rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum SealKind {
    Official,
    LegalRep,
    Finance,
    Contract,
    Personal,
    Signature,
}

/// The picture's format (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ImageType {
    #[serde(rename = "PNG")]
    Png,
    #[serde(rename = "JPEG")]
    Jpeg,
    #[serde(rename = "SVG")]
    Svg,
}

/// The seal's face.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SealImage {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = ImageType))]
    pub kind: String,
    /// Base64, 1 byte to 1 MiB.
    pub data: String,
    /// 5..=200.
    pub width_mm: u32,
    /// 5..=200.
    pub height_mm: u32,
}

/// `POST /v1/seals` (admin): made as a GB/T 38540 `SESeal` v4 signed by the seal maker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SealRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = SealKind))]
    pub kind: String,
    /// 1..=128 characters.
    pub name: String,
    /// Any JSON object describing the owner (matched by `GET /v1/seals?owner=`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub owner: Value,
    pub image: SealFaceSpec,
    /// Active keys with a certificate.
    pub signer_key_ids: Vec<String>,
    /// RFC 3339.
    pub valid_from: String,
    /// RFC 3339, later than `valid_from`.
    pub valid_to: String,
}

/// `POST /v1/seals/{id}/image` (admin): a new face; answered with the new seal (new id
/// and `es_id`, the same grants), the old one revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SealImageRequest {
    pub image: SealFaceSpec,
}

/// A seal's face: an uploaded picture, or a template mcsd draws from text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SealFaceSpec {
    Picture(SealImage),
    Template(SealTemplate),
}

impl From<SealImage> for SealFaceSpec {
    fn from(i: SealImage) -> Self {
        SealFaceSpec::Picture(i)
    }
}

/// `{template, text?, bottom_text?}`: drawn by mcsd in seal red on a transparent ground
/// (PNG) with a CJK font — `personal_name`: the square name seal (18 mm, 2–4 characters);
/// `org_round`: the round organisation seal (42 mm, a star, the name along the upper arc,
/// `bottom_text` such as 合同专用章 along the bottom). `text` defaults to the seal's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SealTemplate {
    pub template: SealTemplateKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottom_text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum), value(rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum SealTemplateKind {
    PersonalName,
    OrgRound,
}

/// `POST /v1/seals/{id}/grants` (admin): the seal is re-made with the key's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SealGrantRequest {
    pub key_id: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// `none` (default) or `each_use`: every use waits for the approval of the seal's owner
    /// (the phone owning its first signer key), as a delegation's does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::delegations::DelegationApproval>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SealStatus {
    Active,
    Revoked,
}

/// A seal (`GET /v1/seals/{id}` and the answers that change one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Seal {
    pub seal_id: String,
    pub es_id: String,
    pub kind: SealKind,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub owner: Value,
    pub signer_key_ids: Vec<String>,
    pub grants: Vec<SealGrant>,
    pub valid_from: String,
    pub valid_to: String,
    pub status: SealStatus,
    pub created_at: String,
    /// Base64 DER `SESeal`.
    pub seal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealGrant {
    pub key_id: String,
    pub not_before: String,
    pub not_after: String,
    pub approval: crate::delegations::DelegationApproval,
}

/// `GET /v1/seals?owner=&key_id=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealList {
    pub seals: Vec<Seal>,
}

/// `POST /v1/verify/signature` (any role): exactly one of `message` and `e`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifySignatureRequest {
    /// Base64; `e` is then SM3(Z ‖ M) with the certificate's key and the default ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// 64 lowercase hex characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub e: Option<String>,
    /// Base64: a DER SM2 signature (a sign task's result), or a GB/T 35275 detached CMS
    /// `SignedData` (a sign task's result with `format: "cms"`; give `message` then).
    pub signature: String,
    /// Base64 DER X.509 certificate of the signer; optional for a CMS signature, which
    /// carries it (if given, it must be the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Base64 DER intermediates, at most 8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 8))]
    pub chain: Vec<String>,
}

/// A signature's verdict: not valid is an answer, with reasons, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignatureVerdict {
    pub valid: bool,
    pub errors: Vec<String>,
    /// The certificate's subject DN.
    pub signer: String,
    /// Hex.
    pub certificate_serial: String,
    /// For a CMS signature with a valid signature time-stamp: its time (RFC 3339), at which
    /// the certificate was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// `POST /v1/verify/seal` (any role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifySealRequest {
    /// Base64 DER `SESeal`.
    pub seal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealVerdict {
    pub valid: bool,
    pub es_id: String,
    pub name: String,
    pub valid_from: String,
    pub valid_to: String,
    pub errors: Vec<String>,
}

/// `POST /v1/verify/pdf` (any role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyPdfRequest {
    /// Base64.
    pub pdf: String,
}

/// Every signature of the PDF, checked in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PdfVerdict {
    pub signatures: Vec<PdfSignatureVerdict>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PdfSignatureVerdict {
    /// The signature field's name; `null` when the field has none.
    pub field: Option<String>,
    pub covers_whole_document: bool,
    /// The signer certificate's subject DN, when it parses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The signing time (RFC 3339), when the container has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealRef>,
    /// The time of the signature's time-stamp (RFC 3339), when it has one that holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// When the signature was judged (RFC 3339): at its time-stamp, or now without one. A
    /// revocation or supersession of the signer or the seal after this time leaves it valid.
    pub valid_at: String,
    pub valid: bool,
    pub errors: Vec<String>,
}

/// The seal a PDF signature carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealRef {
    pub es_id: String,
    pub name: String,
}
