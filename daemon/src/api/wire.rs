//! The request side of the wire: the bodies (the `mcs-api` types, which define each field
//! name once and from which docs/openapi.yaml is generated) and query strings of API.md,
//! and their validation into domain inputs.
//!
//! Every body is a strict type (`deny_unknown_fields`; none is read as a bare JSON value),
//! and every encoded value (points, scalars, digests, hex, base64, times) is checked here,
//! before any domain call, so bad input changes no state. `mcs-api` says what a body
//! holds; what is accepted, and with which message it is refused, is decided here.

use base64::Engine;
use mcs_api::{
    ActivateRequest, BatchCosignRequest, ChangePinRequest, CompleteRequest, CosignRequest, CreateTaskRequest,
    DecryptData, DecryptRequest, EncryptData, EnrollmentRequest, LoginData, PdfSealData, Pin, PlatformRequest,
    RejectRequest, RevokeRequest, SealGrantRequest, SealRequest, SignData, SignRequest, SuccessorRequest,
    VerifySignatureRequest,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sm2_2p::{AffinePoint, Transcript};
use zeroize::Zeroizing;

use super::error::ApiError;
use crate::keys::{Actor, NewEnrollment, PinProof, SignMode, Verifier};
use crate::model::key::{KeyStatus, Subject, SubjectKind};
use crate::model::task::TaskDisplay;
use crate::tasks::{NewTask, NewTaskData};

pub fn query_param(query: &str, name: &str) -> Result<Option<String>, ApiError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return percent_decode(v).map(Some);
        }
    }
    Ok(None)
}

pub fn b64(s: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| ApiError::bad_request(format!("{what} must be standard base64")))
}

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub fn no_body(body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() { Ok(()) } else { Err(ApiError::bad_request("this request takes no body")) }
}

pub fn check_proof_encoding(proof: &str) -> Result<(), ApiError> {
    sm2_2p::digest_from_hex(proof)
        .map(|_| ())
        .map_err(|_| ApiError::bad_request("pin_proof must be 64 lowercase hex characters"))
}

pub fn decode_pin(pin: &Pin) -> Result<([u8; 16], crate::keys::Verifier), ApiError> {
    let salt: [u8; 16] = hex_exact(&pin.salt, "pin.salt")?;
    // Decoded straight into its boxed, wiped home: no copy on the stack.
    let mut verifier: crate::keys::Verifier = Box::new(Zeroizing::new([0u8; 32]));
    let v: &str = &pin.verifier;
    if v.len() != 64 || !sm2_2p::is_lowercase_hex(v) || hex::decode_to_slice(v, &mut verifier[..]).is_err() {
        return Err(ApiError::bad_request("pin.verifier must be 64 lowercase hex characters"));
    }
    Ok((salt, verifier))
}

/// A recovery key: 64 lowercase hex, decoded straight into its boxed, wiped home.
pub fn recovery_key(hex_key: &str, what: &str) -> Result<crate::keys::RecoveryKey, ApiError> {
    let mut key: crate::keys::RecoveryKey = Box::new(Zeroizing::new([0u8; 32]));
    if hex_key.len() != 64 || !sm2_2p::is_lowercase_hex(hex_key) || hex::decode_to_slice(hex_key, &mut key[..]).is_err()
    {
        return Err(ApiError::bad_request(format!("{what} must be 64 lowercase hex characters")));
    }
    Ok(key)
}

/// An optional recovery key field.
pub fn optional_recovery_key(
    hex_key: Option<&Zeroizing<String>>,
) -> Result<Option<crate::keys::RecoveryKey>, ApiError> {
    hex_key.map(|k| recovery_key(k, "recovery_key")).transpose()
}

/// A phone's PIN reset: the code (as the operator read it out: case and spaces do not
/// matter), the new verifier and the new recovery key.
pub fn pin_reset(req: &mcs_api::PinResetRequest) -> Result<crate::keys::pin_reset::PinResetRequest, ApiError> {
    let code = req.reset_code.trim();
    if code.is_empty() || code.len() > 64 {
        return Err(ApiError::bad_request("reset_code must be 1-64 characters"));
    }
    let (_, new_verifier) = decode_pin(&req.new_pin)?;
    let new_recovery_key = recovery_key(&req.recovery_key, "recovery_key")?;
    Ok(crate::keys::pin_reset::PinResetRequest { reset_code: req.reset_code.clone(), new_verifier, new_recovery_key })
}

/// An operator's PIN-reset opening: the delegation id, if any, must look like one.
pub fn open_pin_reset(req: &mcs_api::OpenPinResetRequest) -> Result<Option<&str>, ApiError> {
    match req.delegation_id.as_deref() {
        Some(d) if d.is_empty() || d.len() > 64 || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            Err(ApiError::bad_request("delegation_id is not a delegation id"))
        }
        other => Ok(other),
    }
}

pub fn hex_exact<const N: usize>(s: &str, what: &str) -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    if s.len() != 2 * N || !sm2_2p::is_lowercase_hex(s) || hex::decode_to_slice(s, &mut out).is_err() {
        return Err(ApiError::bad_request(format!("{what} must be {} lowercase hex characters", 2 * N)));
    }
    Ok(out)
}

pub fn key_filters(query: &str) -> Result<(Option<String>, Option<KeyStatus>), ApiError> {
    let (mut subject, mut status) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        match k {
            "subject" => subject = Some(v),
            "status" => {
                status = Some(match v.as_str() {
                    "pending" => KeyStatus::Pending,
                    "active" => KeyStatus::Active,
                    "suspended" => KeyStatus::Suspended,
                    "revoked" => KeyStatus::Revoked,
                    "superseded" => KeyStatus::Superseded,
                    _ => return Err(ApiError::bad_request(format!("unknown status `{v}`"))),
                })
            }
            _ => return Err(ApiError::bad_request(format!("unknown query parameter `{k}`"))),
        }
    }
    Ok((subject, status))
}

pub fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("bad percent-encoding in query");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                // Two hex digits exactly: `from_str_radix` alone would also take `+f`.
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(bad());
                }
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("query is not UTF-8"))
}

pub fn parse_time(s: &str, what: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| ApiError::bad_request(format!("{what} must be an RFC 3339 time")))
}

pub fn new_seal(req: SealRequest) -> Result<crate::seals::NewSeal, ApiError> {
    if !crate::seals::KINDS.contains(&req.kind.as_str()) {
        return Err(ApiError::bad_request(format!("kind must be one of {}", crate::seals::KINDS.join(", "))));
    }
    if req.name.trim().is_empty() || req.name.chars().count() > 128 {
        return Err(ApiError::bad_request("name must be 1..=128 characters"));
    }
    if !req.owner.is_object() {
        return Err(ApiError::bad_request("owner must be an object"));
    }
    let face = face_spec(&req.image)?;
    let (valid_from, valid_to) = (parse_time(&req.valid_from, "valid_from")?, parse_time(&req.valid_to, "valid_to")?);
    if valid_to <= valid_from {
        return Err(ApiError::bad_request("valid_to must be later than valid_from"));
    }
    Ok(crate::seals::NewSeal {
        kind: req.kind,
        name: req.name,
        owner: req.owner,
        face,
        signer_key_ids: req.signer_key_ids,
        valid_from,
        valid_to,
    })
}

/// A seal's `image`: a picture (checked) or a template to draw.
pub fn face_spec(image: &mcs_api::SealFaceSpec) -> Result<crate::seals::FaceSpec, ApiError> {
    use crate::seals::{FaceSpec, FaceTemplate};
    Ok(match image {
        mcs_api::SealFaceSpec::Picture(p) => FaceSpec::Picture(seal_face(p)?),
        mcs_api::SealFaceSpec::Template(t) => {
            let text_ok = |s: &Option<String>| {
                s.as_ref().is_none_or(|s| (1..=40).contains(&s.chars().count()) && !s.chars().any(char::is_control))
            };
            if !text_ok(&t.text) || !text_ok(&t.bottom_text) {
                return Err(ApiError::bad_request("image: text and bottom_text must be 1..=40 characters"));
            }
            let template = match t.template {
                mcs_api::SealTemplateKind::PersonalName => FaceTemplate::PersonalName,
                mcs_api::SealTemplateKind::OrgRound => FaceTemplate::OrgRound,
            };
            FaceSpec::Template { template, text: t.text.clone(), bottom_text: t.bottom_text.clone() }
        }
    })
}

/// A seal's uploaded picture, checked: one the PDF engine can draw, of a sane size.
fn seal_face(image: &mcs_api::SealImage) -> Result<crate::seals::SealFace, ApiError> {
    let picture_type = image.kind.to_ascii_uppercase();
    let picture = b64(&image.data, "image.data")?;
    match picture_type.as_str() {
        "PNG" | "JPEG" => {
            mcs_pdfseal::image::from_picture(&picture_type, &picture)
                .map_err(|e| ApiError::bad_request(format!("image: {e}")))?;
        }
        "SVG" => {
            let head = String::from_utf8_lossy(&picture[..picture.len().min(512)]).to_ascii_lowercase();
            if !head.contains("<svg") {
                return Err(ApiError::bad_request("image: not an SVG document"));
            }
        }
        _ => return Err(ApiError::bad_request("image.type must be PNG, JPEG or SVG")),
    }
    if picture.is_empty() || picture.len() > 1 << 20 {
        return Err(ApiError::bad_request("image.data must be 1 byte to 1 MiB"));
    }
    let size_ok = |mm: u32| (5..=200).contains(&mm);
    if !size_ok(image.width_mm) || !size_ok(image.height_mm) {
        return Err(ApiError::bad_request("image width_mm and height_mm must be 5..=200"));
    }
    Ok(crate::seals::SealFace { picture_type, picture, width_mm: image.width_mm, height_mm: image.height_mm })
}

/// A body that carries nothing: absent, or exactly `{}`.
pub fn empty_object(body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Ok(());
    }
    let fields: serde_json::Map<String, Value> = parse(body)?;
    match fields.keys().next() {
        None => Ok(()),
        Some(k) => {
            Err(ApiError::bad_request(format!("invalid JSON body: unknown field `{k}`, this request takes none")))
        }
    }
}

pub fn check_subject(s: &mcs_api::Subject) -> Result<(), ApiError> {
    let text_ok = |v: &str| !v.trim().is_empty() && v.chars().count() <= 128 && !v.contains(['@', '\n', '\r']);
    if !text_ok(&s.name) {
        return Err(ApiError::bad_request("subject.name must be 1..128 characters without '@' or newlines"));
    }
    for (field, value) in [("org_name", &s.org_name), ("id_number", &s.id_number)] {
        if let Some(v) = value
            && !text_ok(v)
        {
            return Err(ApiError::bad_request(format!("subject.{field} is invalid")));
        }
    }
    if let Some(code) = &s.credit_code
        && !(code.len() == 18 && code.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()))
    {
        return Err(ApiError::bad_request("subject.credit_code must be an 18-character unified social credit code"));
    }
    if s.kind == mcs_api::SubjectKind::Org && (s.org_name.is_none() || s.credit_code.is_none()) {
        return Err(ApiError::bad_request("an org subject needs org_name and credit_code"));
    }
    Ok(())
}

/// The domain's subject (what keys and certificates record) from the checked wire one.
pub fn subject(s: mcs_api::Subject) -> Subject {
    let kind = match s.kind {
        mcs_api::SubjectKind::Person => SubjectKind::Person,
        mcs_api::SubjectKind::Org => SubjectKind::Org,
        mcs_api::SubjectKind::Operator => SubjectKind::Operator,
    };
    Subject { kind, name: s.name, org_name: s.org_name, credit_code: s.credit_code, id_number: s.id_number }
}

pub fn new_enrollment(req: EnrollmentRequest) -> Result<NewEnrollment, ApiError> {
    check_subject(&req.subject)?;
    let id_ok =
        |v: &str| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !id_ok(&req.ca) {
        return Err(ApiError::bad_request("ca must be an adapter name"));
    }
    if let Some(p) = &req.profile
        && !id_ok(p)
    {
        return Err(ApiError::bad_request("profile is invalid"));
    }
    if req.platforms.iter().any(|p| !id_ok(p)) {
        return Err(ApiError::bad_request("platform ids must be 1..64 characters [A-Za-z0-9-_.]"));
    }
    if !(1..=3650).contains(&req.validity_days) {
        return Err(ApiError::bad_request("validity_days must be 1..=3650"));
    }
    let mut platforms = req.platforms;
    platforms.sort();
    platforms.dedup();
    Ok(NewEnrollment {
        subject: subject(req.subject),
        ca: req.ca,
        profile: req.profile,
        platforms,
        validity_days: req.validity_days,
        predecessor: None,
    })
}

/// (until, once) for the grant.
pub fn platform_grant(req: &PlatformRequest) -> Result<(Option<i64>, bool), ApiError> {
    if req.platform.is_empty() || req.platform.len() > 64 {
        return Err(ApiError::bad_request("platform must be 1..64 characters"));
    }
    let now = crate::clock::now();
    let until = |t: &Option<String>| -> Result<Option<i64>, ApiError> {
        t.as_deref()
            .map(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .map(|t| t.unix_timestamp())
                    .map_err(|_| ApiError::bad_request("until must be an RFC 3339 time"))
            })
            .transpose()
    };
    match (req.mode.as_str(), &req.until) {
        ("once", None) => Ok((None, true)),
        ("day", None) => Ok((Some(now + 86_400), false)),
        ("year", None) => Ok((Some(now + 365 * 86_400), false)),
        ("until", Some(_)) => match until(&req.until)? {
            Some(u) if u > now => Ok((Some(u), false)),
            _ => Err(ApiError::bad_request("until must be in the future")),
        },
        ("until", None) => Err(ApiError::bad_request("mode `until` needs until")),
        ("once" | "day" | "year", Some(_)) => Err(ApiError::bad_request("until goes only with mode `until`")),
        (other, _) => Err(ApiError::bad_request(format!("unknown mode `{other}`"))),
    }
}

pub fn data_of<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid data: {e}")))
}

pub fn new_task(req: CreateTaskRequest) -> Result<NewTask, ApiError> {
    if req.display.title.trim().is_empty() || req.display.title.chars().count() > 256 {
        return Err(ApiError::bad_request("display.title must be 1..=256 characters"));
    }
    if req.display.detail.as_ref().is_some_and(|d| d.chars().count() > 2048) {
        return Err(ApiError::bad_request("display.detail is longer than 2048 characters"));
    }
    if let Some(url) = &req.callback_url {
        // Syntax here; the platform's target rules when the task is created.
        crate::model::callback_target::CallbackUrl::parse(url)
            .map_err(|e| ApiError::bad_request(format!("callback_url {e}")))?;
    }
    let sized = |bytes: Vec<u8>, what: &str, max: usize| {
        if bytes.is_empty() || bytes.len() > max {
            Err(ApiError::bad_request(format!("{what} must be 1..={max} bytes")))
        } else {
            Ok(bytes)
        }
    };
    let data = match req.kind.as_str() {
        "login" => {
            let d: LoginData = data_of(req.data)?;
            NewTaskData::Login { challenge: sized(b64(&d.challenge, "challenge")?, "challenge", 4096)? }
        }
        "sign" => {
            let d: SignData = data_of(req.data)?;
            let cms = match d.format.as_deref() {
                None | Some("raw") => false,
                Some("cms") => true,
                Some(other) => return Err(ApiError::bad_request(format!("unknown format `{other}` (raw or cms)"))),
            };
            NewTaskData::Sign { message: sized(b64(&d.message, "message")?, "message", usize::MAX)?, cms }
        }
        "decrypt" => {
            let d: DecryptData = data_of(req.data)?;
            match (&d.ciphertext, &d.envelope) {
                (Some(ciphertext), None) => {
                    let ciphertext = b64(ciphertext, "ciphertext")?;
                    sm2_2p::Ciphertext::parse(&ciphertext)?;
                    let recipient_public_key =
                        d.recipient_public_key.as_deref().map(sm2_2p::point_from_hex).transpose()?;
                    NewTaskData::Decrypt {
                        ciphertext,
                        recipient_cert_serial: d.recipient_cert_serial,
                        recipient_public_key,
                    }
                }
                (None, Some(envelope)) => {
                    if d.recipient_cert_serial.is_some() || d.recipient_public_key.is_some() {
                        return Err(ApiError::bad_request("an envelope names its recipients itself"));
                    }
                    NewTaskData::Envelope { envelope: envelope_of(&b64(envelope, "envelope")?)? }
                }
                _ => return Err(ApiError::bad_request("give exactly one of ciphertext or envelope")),
            }
        }
        "encrypt" => {
            let d: EncryptData = data_of(req.data)?;
            let envelope = match d.format.as_deref() {
                None | Some("sm2") => false,
                Some("envelope") => true,
                Some(other) => {
                    return Err(ApiError::bad_request(format!("unknown format `{other}` (sm2 or envelope)")));
                }
            };
            NewTaskData::Encrypt {
                plaintext: Zeroizing::new(sized(b64(&d.plaintext, "plaintext")?, "plaintext", 65536)?),
                envelope,
            }
        }
        "pdf_seal" => {
            let d: PdfSealData = data_of(req.data)?;
            let pdf = b64(&d.pdf, "pdf")?;
            if !pdf.starts_with(b"%PDF-") {
                return Err(ApiError::bad_request("pdf is not a PDF document"));
            }
            if !crate::seals::is_deferred(&d.placement) {
                crate::seals::parse_placement(&d.placement).map_err(ApiError::bad_request)?;
            }
            NewTaskData::PdfSeal { pdf, seal_id: d.seal_id, placement: d.placement }
        }
        "pdf_unseal" => {
            let d: mcs_api::PdfUnsealData = data_of(req.data)?;
            let pdf = b64(&d.pdf, "pdf")?;
            if !pdf.starts_with(b"%PDF-") {
                return Err(ApiError::bad_request("pdf is not a PDF document"));
            }
            NewTaskData::PdfUnseal { pdf }
        }
        "csr" => return Err(ApiError::bad_request("csr tasks are created by activation, not by gateways")),
        other => return Err(ApiError::bad_request(format!("unknown kind `{other}`"))),
    };
    if let Some(k) = &req.to_key_id
        && (k.is_empty() || k.len() > 64 || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        return Err(ApiError::bad_request("to_key_id is not a key id"));
    }
    Ok(NewTask {
        ttl_secs: req.ttl_secs,
        display: TaskDisplay { title: req.display.title, detail: req.display.detail },
        data,
        callback_url: req.callback_url,
        to_key_id: req.to_key_id,
    })
}

// ---- checks of the other bodies, in the order each route has always made them ----------

pub fn activation(
    req: &ActivateRequest,
) -> Result<(AffinePoint, Verifier, Option<crate::keys::RecoveryKey>), ApiError> {
    let p1 = sm2_2p::point_from_hex(&req.p1)?;
    let (_, verifier) = decode_pin(&req.pin)?;
    Ok((p1, verifier, optional_recovery_key(req.recovery_key.as_ref())?))
}

/// A GB/T 35275 envelope a decrypt task can open: SM4-CBC content, at least one SM2
/// key-transport recipient whose encrypted key is an SM2 ciphertext.
fn envelope_of(der: &[u8]) -> Result<mcs_pdfseal::gbt35275::Envelope, ApiError> {
    let mut env =
        mcs_pdfseal::gbt35275::open_envelope(der).map_err(|e| ApiError::bad_request(format!("envelope: {e}")))?;
    env.recipients.retain(|r| {
        r.key_encryption == mcs_pdfseal::gbt35275::SM2_ENCRYPT && sm2_2p::Ciphertext::parse(&r.encrypted_key).is_ok()
    });
    if env.recipients.is_empty() {
        return Err(ApiError::bad_request("envelope: no SM2 key-transport recipient"));
    }
    Ok(env)
}

/// A signing request's `mode`: `canonical` (the default) or `fixed_k3`.
pub fn sign_mode(mode: Option<&str>) -> Result<SignMode, ApiError> {
    match mode {
        None | Some("canonical") => Ok(SignMode::Canonical),
        Some("fixed_k3") => Ok(SignMode::FixedK3),
        Some(other) => Err(ApiError::bad_request(format!("unknown mode `{other}` (canonical or fixed_k3)"))),
    }
}

/// (e, q1, mode, proof).
pub fn sign(req: &SignRequest) -> Result<([u8; 32], AffinePoint, SignMode, PinProof<'_>), ApiError> {
    let e = sm2_2p::digest_from_hex(&req.e)?;
    let q1 = sm2_2p::point_from_hex(&req.q1)?;
    check_proof_encoding(&req.pin_proof)?;
    let mode = sign_mode(req.mode.as_deref())?;
    let proof = PinProof { op: Transcript::Sign { e: req.e.clone(), q1: req.q1.clone() }, proof: &req.pin_proof };
    Ok((e, q1, mode, proof))
}

pub fn decrypt(req: &DecryptRequest) -> Result<(AffinePoint, PinProof<'_>), ApiError> {
    let t1 = sm2_2p::point_from_hex(&req.t1)?;
    check_proof_encoding(&req.pin_proof)?;
    Ok((t1, PinProof { op: Transcript::Decrypt { t1: req.t1.clone() }, proof: &req.pin_proof }))
}

pub fn change_pin(req: &ChangePinRequest) -> Result<(Verifier, PinProof<'_>), ApiError> {
    check_proof_encoding(&req.pin_proof)?;
    let (_, verifier) = decode_pin(&req.new_pin)?;
    let op = Transcript::Pin { salt: req.new_pin.salt.clone(), verifier: (*req.new_pin.verifier).clone() };
    Ok((verifier, PinProof { op, proof: &req.pin_proof }))
}

/// The PIN proof a phone must give and an operator must not.
pub fn revoke<'r>(req: &'r RevokeRequest, actor: &Actor<'_>) -> Result<Option<PinProof<'r>>, ApiError> {
    const REASONS: [&str; 5] = ["key_compromise", "superseded", "cessation", "affiliation_changed", "unspecified"];
    if !REASONS.contains(&req.reason.as_str()) {
        return Err(ApiError::bad_request(format!("unknown reason `{}`", req.reason)));
    }
    owner_proof(&req.pin_proof, actor, || Transcript::Revoke { reason: req.reason.clone() })
}

/// A suspension's reason (1–64 characters, no control character) and the PIN proof a
/// phone must give and an operator must not.
pub fn suspend<'r>(req: &'r mcs_api::SuspendRequest, actor: &Actor<'_>) -> Result<Option<PinProof<'r>>, ApiError> {
    let n = req.reason.chars().count();
    if !(1..=64).contains(&n) || req.reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request("reason must be 1-64 characters, none a control character"));
    }
    owner_proof(&req.pin_proof, actor, || Transcript::Suspend { reason: req.reason.clone() })
}

/// The new subject, if the successor changes it.
pub fn successor(req: &SuccessorRequest) -> Result<Option<Subject>, ApiError> {
    if !["renew", "change", "reissue", "extend"].contains(&req.reason.as_str()) {
        return Err(ApiError::bad_request(format!("unknown reason `{}`", req.reason)));
    }
    if req.reason == "extend" && req.subject.is_some() {
        return Err(ApiError::bad_request("an extension keeps the key and its subject: no `subject`"));
    }
    if req.validity_days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(ApiError::bad_request("validity_days must be 1..=3650"));
    }
    if let Some(s) = &req.subject {
        check_subject(s)?;
    }
    Ok(req.subject.clone().map(subject))
}

/// The placement a gateway chose for a deferred `pdf_seal` task: any of API.md's but
/// `deferred` itself.
pub fn chosen_placement(v: &Value) -> Result<Value, ApiError> {
    if v.as_str() == Some(crate::seals::DEFERRED) {
        return Err(ApiError::bad_request("placement: choose where the seal goes (not deferred)"));
    }
    crate::seals::parse_placement(v).map_err(|e| ApiError::bad_request(format!("placement: {e}")))?;
    Ok(v.clone())
}

/// A grant's period (unix seconds) and approval rule.
pub fn seal_grant(req: &SealGrantRequest) -> Result<crate::seals::GrantTerms, ApiError> {
    Ok(crate::seals::GrantTerms {
        not_before: parse_time(&req.not_before, "not_before")?,
        not_after: parse_time(&req.not_after, "not_after")?,
        approval: match req.approval {
            None | Some(mcs_api::DelegationApproval::None) => crate::model::delegation::Approval::None,
            Some(mcs_api::DelegationApproval::EachUse) => crate::model::delegation::Approval::EachUse,
        },
    })
}

/// What `verify/signature` checks, decoded.
pub struct SignatureCheck {
    signed: SignedInput,
    pub signature: Vec<u8>,
    pub certificate: Option<Vec<u8>>,
    pub chain: Vec<Vec<u8>>,
}

enum SignedInput {
    Message(Vec<u8>),
    Digest([u8; 32]),
}

impl SignatureCheck {
    pub fn signed(&self) -> crate::seals::Signed<'_> {
        match &self.signed {
            SignedInput::Message(m) => crate::seals::Signed::Message(m),
            SignedInput::Digest(e) => crate::seals::Signed::Digest(*e),
        }
    }
}

pub fn signature_check(req: &VerifySignatureRequest) -> Result<SignatureCheck, ApiError> {
    let message = req.message.as_deref().map(|m| b64(m, "message")).transpose()?;
    let signed = match (message, &req.e) {
        (Some(m), None) => SignedInput::Message(m),
        (None, Some(e)) => SignedInput::Digest(sm2_2p::digest_from_hex(e)?),
        _ => return Err(ApiError::bad_request("give exactly one of message or e")),
    };
    let signature = b64(&req.signature, "signature")?;
    let certificate = req.certificate.as_deref().map(|c| b64(c, "certificate")).transpose()?;
    let chain = req.chain.iter().map(|c| b64(c, "chain")).collect::<Result<Vec<_>, _>>()?;
    if chain.len() > 8 {
        return Err(ApiError::bad_request("chain holds at most 8 certificates"));
    }
    Ok(SignatureCheck { signed, signature, certificate, chain })
}

/// One task of a batch co-signature: (task_id, token, q1, q1 as sent).
pub type BatchTask = (String, String, AffinePoint, String);

pub fn batch(req: BatchCosignRequest) -> Result<(String, String, SignMode, Vec<BatchTask>), ApiError> {
    check_proof_encoding(&req.pin_proof)?;
    let mode = sign_mode(req.mode.as_deref())?;
    if req.items.is_empty() || req.items.len() > 100 {
        return Err(ApiError::bad_request("items must hold 1..=100 tasks"));
    }
    let mut items = Vec::with_capacity(req.items.len());
    for item in req.items {
        let q1 = sm2_2p::point_from_hex(&item.q1)?;
        items.push((item.task_id, item.token, q1, item.q1));
    }
    Ok((req.key_id, req.pin_proof, mode, items))
}

/// The half a phone asks the daemon for on a task.
pub enum Cosign<'a> {
    Sign { q1: AffinePoint, q1_hex: &'a str, mode: SignMode },
    Decrypt { t1: AffinePoint, t1_hex: &'a str },
}

pub fn cosign(req: &CosignRequest) -> Result<Cosign<'_>, ApiError> {
    check_proof_encoding(&req.pin_proof)?;
    let mode = sign_mode(req.mode.as_deref())?;
    match (&req.q1, &req.t1) {
        (Some(q1_hex), None) => Ok(Cosign::Sign { q1: sm2_2p::point_from_hex(q1_hex)?, q1_hex, mode }),
        (None, Some(_)) if req.mode.is_some() => Err(ApiError::bad_request("mode is for signing (q1), not t1")),
        (None, Some(t1_hex)) => Ok(Cosign::Decrypt { t1: sm2_2p::point_from_hex(t1_hex)?, t1_hex }),
        _ => Err(ApiError::bad_request("give exactly one of q1 (signing) or t1 (decrypt)")),
    }
}

/// How a phone finishes a task.
pub enum Completion {
    Signature(sm2_2p::Signature),
    Plaintext(Zeroizing<Vec<u8>>),
}

pub fn completion(req: &CompleteRequest) -> Result<Completion, ApiError> {
    match (&req.signature, &req.plaintext) {
        (Some(sig), None) => Ok(Completion::Signature(sm2_2p::Signature {
            r: sm2_2p::scalar_from_hex(&sig.r)?,
            s: sm2_2p::scalar_from_hex(&sig.s)?,
        })),
        (None, Some(p)) => Ok(Completion::Plaintext(Zeroizing::new(b64(p, "plaintext")?))),
        _ => Err(ApiError::bad_request("give exactly one of signature or plaintext")),
    }
}

pub fn reject(req: &RejectRequest) -> Result<(), ApiError> {
    if req.reason.trim().is_empty() || req.reason.chars().count() > 256 {
        return Err(ApiError::bad_request("reason must be 1..=256 characters"));
    }
    Ok(())
}

// ---- query strings ----------------------------------------------------------------------

/// `GET /v1/audit?key_id=&platform=&since=&limit=`.
pub struct AuditQuery {
    pub key_id: Option<String>,
    pub platform: Option<String>,
    pub seal_id: Option<String>,
    pub since: u64,
    pub limit: usize,
}

impl AuditQuery {
    pub fn parse(query: &str) -> Result<AuditQuery, ApiError> {
        let key_id = query_param(query, "key_id")?;
        let platform = query_param(query, "platform")?;
        let seal_id = query_param(query, "seal_id")?;
        let since = query_param(query, "since")?
            .map(|s| s.parse::<u64>())
            .transpose()
            .map_err(|_| ApiError::bad_request("since must be a sequence number"))?;
        let limit = query_param(query, "limit")?
            .map(|s| s.parse::<usize>())
            .transpose()
            .map_err(|_| ApiError::bad_request("limit must be a number"))?;
        Ok(AuditQuery {
            key_id,
            platform,
            seal_id,
            since: since.unwrap_or(0),
            limit: limit.unwrap_or(1000).clamp(1, 10_000),
        })
    }
}

/// `?serial=` of `GET /v1/plugins/{name}/status`, lowercased.
pub fn serial_query(query: &str) -> Result<String, ApiError> {
    let serial = query_param(query, "serial")?.ok_or_else(|| ApiError::bad_request("serial is required"))?;
    if serial.is_empty() || serial.len() > 64 || !serial.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("serial must be hex"));
    }
    Ok(serial.to_ascii_lowercase())
}

/// `?wait=` of `GET /v1/tasks/{id}/result`, in seconds.
pub fn wait_query(query: &str) -> Result<u64, ApiError> {
    match query_param(query, "wait")? {
        None => Ok(0),
        Some(w) => w.parse::<u64>().map_err(|_| ApiError::bad_request("wait must be whole seconds")),
    }
}

/// `?token=` a phone gives with `GET /v1/tasks/{id}`.
pub fn token_query(query: &str) -> Result<String, ApiError> {
    query_param(query, "token")?.ok_or_else(|| ApiError::bad_request("token is required"))
}

// ---- delegations ------------------------------------------------------------------------

/// Task kinds a delegation may be limited to (`csr` is the owner's own).
const DELEGABLE_KINDS: [&str; 6] = ["login", "sign", "pdf_seal", "pdf_unseal", "decrypt", "encrypt"];

/// A phone must prove its PIN, an operator must not send a proof.
fn owner_proof<'r>(
    proof: &'r Option<String>,
    actor: &Actor<'_>,
    op: impl FnOnce() -> Transcript,
) -> Result<Option<PinProof<'r>>, ApiError> {
    match (actor, proof) {
        (Actor::Device(_), Some(p)) => {
            check_proof_encoding(p)?;
            Ok(Some(PinProof { op: op(), proof: p }))
        }
        (Actor::Device(_), None) => Err(ApiError::bad_request("pin_proof is required")),
        (Actor::Admin, Some(_)) => Err(ApiError::bad_request("pin_proof is for phones only")),
        (Actor::Admin, None) => Ok(None),
    }
}

pub fn new_delegation<'r>(
    req: &'r mcs_api::DelegationRequest,
    actor: &Actor<'_>,
) -> Result<(crate::keys::delegations::NewDelegation, Option<PinProof<'r>>), ApiError> {
    use crate::model::delegation::{Approval, DelegationKind};
    let kind = match req.kind.as_str() {
        "delegate" => DelegationKind::Delegate,
        "transfer" => DelegationKind::Transfer,
        other => return Err(ApiError::bad_request(format!("unknown kind `{other}`"))),
    };
    let approval = match req.approval.as_deref() {
        None | Some("none") => Approval::None,
        Some("each_use") => Approval::EachUse,
        Some(other) => return Err(ApiError::bad_request(format!("unknown approval `{other}`"))),
    };
    if kind == DelegationKind::Transfer
        && (req.approval.is_some() || req.task_kinds.is_some() || req.not_before.is_some())
    {
        return Err(ApiError::bad_request("a transfer takes no approval, task_kinds or not_before"));
    }
    if kind == DelegationKind::Delegate && req.not_after.is_none() {
        return Err(ApiError::bad_request("not_after is required for a delegation"));
    }
    let not_before = req.not_before.as_deref().map(|t| parse_time(t, "not_before")).transpose()?;
    let not_after = req.not_after.as_deref().map(|t| parse_time(t, "not_after")).transpose()?;
    if let Some(kinds) = &req.task_kinds {
        if kinds.is_empty() {
            return Err(ApiError::bad_request("task_kinds, when given, names at least one kind"));
        }
        for (i, k) in kinds.iter().enumerate() {
            if !DELEGABLE_KINDS.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!("task_kinds: unknown kind `{k}`")));
            }
            if kinds[..i].contains(k) {
                return Err(ApiError::bad_request(format!("task_kinds: `{k}` twice")));
            }
        }
    }
    if let Some(label) = &req.label
        && (label.is_empty() || label.chars().count() > 64 || label.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request("label must be 1 to 64 characters without control characters"));
    }
    let proof = owner_proof(&req.pin_proof, actor, || Transcript::Delegate {
        kind: req.kind.clone(),
        not_after: req.not_after.clone().unwrap_or_default(),
        approval: req.approval.clone().unwrap_or_default(),
    })?;
    let new = crate::keys::delegations::NewDelegation {
        kind,
        not_before,
        not_after,
        approval,
        task_kinds: req.task_kinds.clone(),
        label: req.label.clone(),
    };
    Ok((new, proof))
}

pub fn accept_delegation(req: &mcs_api::AcceptDelegationRequest) -> Result<AffinePoint, ApiError> {
    if req.invitation_code.is_empty() || req.invitation_code.len() > 64 {
        return Err(ApiError::bad_request("invitation_code must be 1 to 64 characters"));
    }
    sm2_2p::point_from_hex(&req.transport_key)
        .map_err(|e| ApiError::bad_request(format!("transport_key: {e} (130 lowercase hex, on the curve)")))
}

/// The owner's PIN proof of a re-share step (required: only the owner's phone does these).
pub fn reshare<'r>(req: &'r mcs_api::DelegationProof, delegation_id: &str) -> Result<PinProof<'r>, ApiError> {
    let proof = req.pin_proof.as_deref().ok_or_else(|| ApiError::bad_request("pin_proof is required"))?;
    check_proof_encoding(proof)?;
    Ok(PinProof { op: Transcript::Reshare { delegation_id: delegation_id.to_owned() }, proof })
}

/// `wrapped_share`: `C1‖C3‖C2` of exactly 32 bytes (the length of `d1'`), decoded.
pub fn share<'r>(req: &'r mcs_api::ShareRequest, delegation_id: &str) -> Result<(Vec<u8>, PinProof<'r>), ApiError> {
    let bad = || ApiError::bad_request("wrapped_share must be C1‖C3‖C2 of a 32-byte share, in lowercase hex");
    let s = &req.wrapped_share;
    if s.len() != 2 * (65 + 32 + 32) || !sm2_2p::is_lowercase_hex(s) {
        return Err(bad());
    }
    let bytes = hex::decode(s).map_err(|_| bad())?;
    sm2_2p::Ciphertext::parse(&bytes).map_err(|_| bad())?;
    check_proof_encoding(&req.pin_proof)?;
    let op = Transcript::Share { delegation_id: delegation_id.to_owned(), wrapped_share: s.clone() };
    Ok((bytes, PinProof { op, proof: &req.pin_proof }))
}

pub fn revoke_delegation<'r>(
    req: &'r mcs_api::DelegationProof,
    actor: &Actor<'_>,
    delegation_id: &str,
) -> Result<Option<PinProof<'r>>, ApiError> {
    owner_proof(&req.pin_proof, actor, || Transcript::Undelegate { delegation_id: delegation_id.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_filters_decode_and_reject_unknowns() {
        let (s, st) = key_filters("subject=Zhang%20San&status=active").unwrap();
        assert_eq!(s.as_deref(), Some("Zhang San"));
        assert_eq!(st, Some(KeyStatus::Active));
        assert!(key_filters("colour=red").is_err());
        assert!(key_filters("status=dead").is_err());
        assert!(key_filters("subject=%zz").is_err());
        // Found by the api_bodies fuzz target: a sign inside the escape was taken.
        assert!(percent_decode("%+f").is_err() && percent_decode("%-1").is_err());
        assert_eq!(percent_decode("%2B%2b").unwrap(), "++");
    }

    #[test]
    fn hex_fields_must_have_exact_length() {
        assert!(hex_exact::<16>(&"ab".repeat(16), "salt").is_ok());
        assert!(hex_exact::<16>(&"ab".repeat(15), "salt").is_err());
        assert!(hex_exact::<16>(&"zz".repeat(16), "salt").is_err());
        assert!(hex_exact::<16>(&"AB".repeat(16), "salt").is_err());
    }

    /// Defect 11 of issue 11: `POST /v1/seals/{id}/revoke` took any JSON and acted. Bodies
    /// without fields go through `empty_object`, which refuses every field.
    #[test]
    fn seal_revoke_accepts_unknown_fields() {
        assert!(empty_object(b"").is_ok() && empty_object(b"{}").is_ok());
        for bad in [&br#"{"reason":"x"}"#[..], b"[]", b"null", b"0", b"{"] {
            assert_eq!(empty_object(bad).err().unwrap().code(), "bad_request");
        }
        // No route reads a body as a bare `Value`: every body has a strict type (the
        // extractors take `wire` types; `empty_object` is the one reader of a bare map).
        let bare = ["Json<Value>", "Json<serde_json::Value>", "parse::<Value>", "let _: Value = parse"];
        let this = include_str!("wire.rs");
        assert!(!bare.iter().any(|b| this.matches(b).count() > 1), "wire.rs reads a body as a bare JSON value");
        for src in [
            include_str!("mod.rs"),
            include_str!("extract.rs"),
            include_str!("fuzz.rs"),
            include_str!("enrollments.rs"),
            include_str!("keys.rs"),
            include_str!("seals.rs"),
            include_str!("verify.rs"),
            include_str!("tasks.rs"),
            include_str!("admin.rs"),
        ] {
            assert!(!bare.iter().any(|b| src.contains(b)), "a route reads its body as a bare JSON value");
        }
    }

    #[test]
    fn unknown_fields_are_bad_requests() {
        let err = parse::<SignRequest>(br#"{"e":"00","q1":"00","pin_proof":"00","extra":1}"#).err().unwrap();
        assert_eq!(err.code(), "bad_request");
    }
}
