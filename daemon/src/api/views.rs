//! The answer side of the wire: every JSON body the API sends (except the error body,
//! which is [`super::error`]'s), rendered from domain records and verdicts, and every time
//! formatted as RFC 3339. Nothing below `api/` builds a view.

use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use crate::clock::rfc3339;
use crate::keys::{EnrollmentCreated, SignOutput};
use crate::model::key::{KeyRecord, KeyStatus, Subject, SubjectKind};
use crate::model::seal::SealRecord;
use crate::model::task::{TaskData, TaskKind, TaskRecord, TaskResult, TaskStatus};
use crate::plugins::{PluginInfo, PluginState};
use crate::seals::{PdfVerdict, SealVerdict, SignatureVerdict};
use crate::tasks::{Claimed, CreatedTask, Outcome, TaskError};

/// A successful answer: a status and, unless 204, a JSON body.
pub struct Answer(StatusCode, Option<String>);

/// What a handler returns.
pub type Reply = Result<Answer, ApiError>;

fn answer(status: StatusCode, body: &impl Serialize) -> Reply {
    // The answer types hold strings, numbers and JSON values only; a failure is a bug.
    let body = serde_json::to_string(body).map_err(|_| ApiError::Internal)?;
    Ok(Answer(status, Some(body)))
}

pub fn ok(body: impl Serialize) -> Reply {
    answer(StatusCode::OK, &body)
}

pub fn created(body: impl Serialize) -> Reply {
    answer(StatusCode::CREATED, &body)
}

pub fn no_content() -> Reply {
    Ok(Answer(StatusCode::NO_CONTENT, None))
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self.1 {
            Some(body) => {
                (self.0, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
            }
            None => self.0.into_response(),
        }
    }
}

/// The code is shown here, once.
pub fn enrollment(created: &EnrollmentCreated) -> mcs_api::Enrollment {
    mcs_api::Enrollment {
        enrollment_id: created.enrollment_id.clone(),
        activation_code: created.activation_code.clone(),
        expires_at: rfc3339(created.expires_at),
        predecessor: None,
    }
}

pub fn pin_reset_opened(
    opened: &crate::keys::pin_reset::PinResetOpened,
    delegation: Option<&str>,
) -> mcs_api::PinResetOpened {
    mcs_api::PinResetOpened {
        reset_code: zeroize::Zeroizing::new(opened.reset_code.clone()),
        expires_at: rfc3339(opened.expires_at),
        delegation_id: delegation.map(str::to_owned),
    }
}

pub fn successor(created: &EnrollmentCreated, predecessor: &str) -> mcs_api::Enrollment {
    mcs_api::Enrollment { predecessor: Some(predecessor.to_owned()), ..enrollment(created) }
}

pub fn extension(key_id: &str, renews: &str, csr: &CreatedTask) -> mcs_api::Extension {
    mcs_api::Extension {
        key_id: key_id.to_owned(),
        reason: mcs_api::SuccessorReason::Extend,
        csr_task: mcs_api::TaskTicket { task_id: csr.task_id.clone(), token: csr.token.clone() },
        qr: csr.qr.clone(),
        expires_at: rfc3339(csr.expires_at),
        renews: renews.to_owned(),
    }
}

pub fn activated(key: &KeyRecord, csr: &CreatedTask) -> mcs_api::Activation {
    mcs_api::Activation {
        key_id: key.id.clone(),
        public_key: key.public_key.clone(),
        csr_task: Some(mcs_api::TaskTicket { task_id: csr.task_id.clone(), token: csr.token.clone() }),
        p2: key.p2.clone(),
    }
}

fn key_status(s: KeyStatus) -> mcs_api::KeyStatus {
    match s {
        KeyStatus::Pending => mcs_api::KeyStatus::Pending,
        KeyStatus::Active => mcs_api::KeyStatus::Active,
        KeyStatus::Suspended => mcs_api::KeyStatus::Suspended,
        KeyStatus::Revoked => mcs_api::KeyStatus::Revoked,
        KeyStatus::Superseded => mcs_api::KeyStatus::Superseded,
    }
}

fn subject(s: &Subject) -> mcs_api::Subject {
    let kind = match s.kind {
        SubjectKind::Person => mcs_api::SubjectKind::Person,
        SubjectKind::Org => mcs_api::SubjectKind::Org,
        SubjectKind::Operator => mcs_api::SubjectKind::Operator,
    };
    mcs_api::Subject {
        kind,
        name: s.name.clone(),
        org_name: s.org_name.clone(),
        credit_code: s.credit_code.clone(),
        id_number: s.id_number.clone(),
    }
}

pub fn key(k: &KeyRecord, max_attempts: u32) -> mcs_api::Key {
    let platforms = k
        .platforms
        .iter()
        .map(|p| mcs_api::KeyPlatform { platform: p.platform.clone(), until: p.until.map(rfc3339) })
        .collect();
    let cert = k.certificate.as_ref();
    mcs_api::Key {
        key_id: k.id.clone(),
        status: key_status(k.status),
        public_key: k.public_key.clone(),
        platforms,
        pin: mcs_api::PinStatus {
            remaining_attempts: if k.pin.locked { 0 } else { max_attempts.saturating_sub(k.pin.failures) },
            locked: k.pin.locked,
        },
        device_id: k.device_id.clone(),
        created_at: rfc3339(k.created_at),
        enrollment_id: k.enrollment_id.clone(),
        subject: subject(&k.subject),
        revocation_reason: k.revocation_reason.clone(),
        certificate: cert.map(|c| c.der_b64.clone()),
        chain: cert.map(|c| c.chain_b64.clone()),
        certificate_serial: cert.map(|c| c.serial.clone()),
        certificate_subject: cert.map(|c| c.subject.clone()),
        certificate_expires_at: cert.map(|c| rfc3339(c.not_after)),
        suspension: k.suspension.as_ref().map(|s| mcs_api::KeySuspension {
            reason: s.reason.clone(),
            by: s.by.clone(),
            since: rfc3339(s.at),
            certificate_held: s.certificate_held,
        }),
        p2: k.p2.clone(),
    }
}

pub fn keys(list: &[KeyRecord], max_attempts: u32) -> mcs_api::KeyList {
    mcs_api::KeyList { keys: list.iter().map(|k| key(k, max_attempts)).collect() }
}

/// The server's half of a canonical signature.
pub fn sign_response(r: &sm2_2p::SignResponse) -> mcs_api::SignShares {
    mcs_api::SignShares {
        r: sm2_2p::scalar_to_hex(&r.r),
        s2: sm2_2p::scalar_to_hex(&r.s2),
        s3: sm2_2p::scalar_to_hex(&r.s3),
    }
}

pub fn signed(out: &SignOutput) -> mcs_api::SignAnswer {
    match out {
        SignOutput::Canonical(r) => mcs_api::SignAnswer::Canonical(sign_response(r)),
        SignOutput::FixedK3(r) => mcs_api::SignAnswer::FixedK3(fixed_k3(r)),
    }
}

pub fn fixed_k3(r: &sm2_2p::FixedK3Response) -> mcs_api::FixedK3Shares {
    mcs_api::FixedK3Shares {
        r: sm2_2p::scalar_to_hex(&r.r),
        s3: sm2_2p::scalar_to_hex(&r.s3),
        der: Some(hex::encode(r.to_der())),
    }
}

/// A task co-signature's answer, in the mode asked for.
pub fn task_signed(out: &SignOutput) -> mcs_api::CosignAnswer {
    match out {
        SignOutput::Canonical(r) => mcs_api::CosignAnswer::Sign(sign_response(r)),
        SignOutput::FixedK3(r) => mcs_api::CosignAnswer::FixedK3(fixed_k3(r)),
    }
}

pub fn decrypted(t2: &sm2_2p::AffinePoint) -> mcs_api::DecryptShare {
    mcs_api::DecryptShare { t2: sm2_2p::point_to_hex(t2) }
}

fn seal_kind(kind: &str) -> Result<mcs_api::SealKind, ApiError> {
    Ok(match kind {
        "official" => mcs_api::SealKind::Official,
        "legal_rep" => mcs_api::SealKind::LegalRep,
        "finance" => mcs_api::SealKind::Finance,
        "contract" => mcs_api::SealKind::Contract,
        "personal" => mcs_api::SealKind::Personal,
        "signature" => mcs_api::SealKind::Signature,
        // Every stored kind was checked against `seals::KINDS` when the seal was made.
        other => {
            tracing::error!(kind = other, "a stored seal has an unknown kind");
            return Err(ApiError::Internal);
        }
    })
}

/// `GET /v1/tasks/{id}/seals`.
pub fn task_seals(seals: &[(SealRecord, crate::seals::SealFace)]) -> Result<mcs_api::TaskSeals, ApiError> {
    let item = |(rec, face): &(SealRecord, crate::seals::SealFace)| {
        Ok(mcs_api::TaskSeal {
            seal_id: rec.id.clone(),
            name: rec.name.clone(),
            kind: seal_kind(&rec.kind)?,
            image: mcs_api::SealImage {
                kind: face.picture_type.clone(),
                data: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &face.picture),
                width_mm: face.width_mm,
                height_mm: face.height_mm,
            },
        })
    };
    Ok(mcs_api::TaskSeals { items: seals.iter().map(item).collect::<Result<_, ApiError>>()? })
}

fn delegation_approval(a: crate::model::delegation::Approval) -> mcs_api::DelegationApproval {
    use crate::model::delegation::Approval;
    match a {
        Approval::None => mcs_api::DelegationApproval::None,
        Approval::EachUse => mcs_api::DelegationApproval::EachUse,
    }
}

pub fn seal(s: &SealRecord) -> Result<mcs_api::Seal, ApiError> {
    let grants = s
        .grants
        .iter()
        .map(|g| mcs_api::SealGrant {
            key_id: g.key_id.clone(),
            not_before: rfc3339(g.not_before),
            not_after: rfc3339(g.not_after),
            approval: delegation_approval(g.approval),
        })
        .collect();
    Ok(mcs_api::Seal {
        seal_id: s.id.clone(),
        es_id: s.es_id.clone(),
        kind: seal_kind(&s.kind)?,
        name: s.name.clone(),
        owner: s.owner.clone(),
        signer_key_ids: s.signer_key_ids.clone(),
        grants,
        valid_from: rfc3339(s.valid_from),
        valid_to: rfc3339(s.valid_to),
        status: if s.revoked_at.is_some() { mcs_api::SealStatus::Revoked } else { mcs_api::SealStatus::Active },
        created_at: rfc3339(s.created_at),
        seal: s.seal_b64.clone(),
    })
}

pub fn seals(list: &[SealRecord]) -> Result<mcs_api::SealList, ApiError> {
    Ok(mcs_api::SealList { seals: list.iter().map(seal).collect::<Result<_, _>>()? })
}

pub fn signature_verdict(v: &SignatureVerdict) -> mcs_api::SignatureVerdict {
    mcs_api::SignatureVerdict {
        valid: v.errors.is_empty(),
        errors: v.errors.clone(),
        signer: v.signer.clone(),
        certificate_serial: v.certificate_serial.clone(),
        timestamp: v.timestamp.map(rfc3339),
    }
}

pub fn seal_verdict(v: &SealVerdict) -> mcs_api::SealVerdict {
    mcs_api::SealVerdict {
        valid: v.errors.is_empty(),
        es_id: v.es_id.clone(),
        name: v.name.clone(),
        valid_from: rfc3339(v.valid_from as i64),
        valid_to: rfc3339(v.valid_to as i64),
        errors: v.errors.clone(),
    }
}

pub fn pdf_verdict(v: &PdfVerdict) -> mcs_api::PdfVerdict {
    let signatures = v
        .signatures
        .iter()
        .map(|s| mcs_api::PdfSignatureVerdict {
            field: s.field.clone(),
            covers_whole_document: s.covers_whole_document,
            signer: s.signer.clone(),
            signed_at: s.signed_at.map(|t| rfc3339(t as i64)),
            seal: s.seal.as_ref().map(|seal| mcs_api::SealRef { es_id: seal.es_id.clone(), name: seal.name.clone() }),
            timestamp: s.timestamp.map(rfc3339),
            valid_at: rfc3339(s.valid_at),
            valid: s.errors.is_empty(),
            errors: s.errors.clone(),
        })
        .collect();
    mcs_api::PdfVerdict { signatures }
}

/// `GET /v1/audit`: the entries as the chain holds them.
pub fn audit_entries(entries: &[crate::audit::Entry]) -> mcs_api::AuditLog {
    let view = |e: &crate::audit::Entry| mcs_api::AuditEntry {
        seq: e.seq,
        node: e.node.clone(),
        at: rfc3339(e.at / 1000),
        event: e.event.clone(),
        actor: e.actor.clone(),
        key_id: e.key_id.clone(),
        platform: e.platform.clone(),
        task_id: e.task_id.clone(),
        outcome: e.outcome.clone(),
        detail: e.detail.clone(),
        request_id: e.request_id.clone(),
        peer: e.peer.clone(),
        hash: e.hash.clone(),
    };
    mcs_api::AuditLog { entries: entries.iter().map(view).collect() }
}

pub fn plugins(list: &[PluginInfo<'_>]) -> mcs_api::PluginList {
    let plugin = |p: &PluginInfo<'_>| {
        let (name, library) = (p.name.to_owned(), p.library.to_string_lossy().into_owned());
        match p.state {
            PluginState::Loaded { description, abi } => {
                // What the adapter says of itself, `null` where it says nothing.
                let said = |field: &str| description.get(field).cloned().unwrap_or(Value::Null);
                mcs_api::Plugin::Loaded {
                    name,
                    adapter: said("name"),
                    version: said("version"),
                    abi,
                    algorithms: said("algorithms"),
                    profiles: said("profiles"),
                    library,
                }
            }
            PluginState::Failed { error } => mcs_api::Plugin::Failed { name, error: error.to_owned(), library },
        }
    };
    mcs_api::PluginList { plugins: list.iter().map(plugin).collect() }
}

pub fn task_created(created: &CreatedTask) -> mcs_api::CreatedTask {
    mcs_api::CreatedTask {
        task_id: created.task_id.clone(),
        token: created.token.clone(),
        qr: created.qr.clone(),
        expires_at: rfc3339(created.expires_at),
    }
}

/// One answer per task, in the order asked.
pub fn batch(ids: &[String], results: Vec<Result<SignOutput, TaskError>>) -> mcs_api::BatchCosignAnswer {
    let items = ids
        .iter()
        .zip(results)
        .map(|(id, r)| match r {
            Ok(SignOutput::Canonical(r)) => {
                let mcs_api::SignShares { r, s2, s3 } = sign_response(&r);
                mcs_api::BatchCosignResult::Signed(mcs_api::BatchSigned { task_id: id.clone(), r, s2, s3 })
            }
            Ok(SignOutput::FixedK3(r)) => mcs_api::BatchCosignResult::SignedFixedK3(mcs_api::BatchSignedFixedK3 {
                task_id: id.clone(),
                r: sm2_2p::scalar_to_hex(&r.r),
                s3: sm2_2p::scalar_to_hex(&r.s3),
                der: hex::encode(r.to_der()),
            }),
            Err(e) => mcs_api::BatchCosignResult::Failed(mcs_api::BatchFailed {
                task_id: id.clone(),
                error: ApiError::from(e).detail(),
            }),
        })
        .collect();
    mcs_api::BatchCosignAnswer { items }
}

fn task_kind(k: TaskKind) -> mcs_api::TaskKind {
    match k {
        TaskKind::Login => mcs_api::TaskKind::Login,
        TaskKind::Sign => mcs_api::TaskKind::Sign,
        TaskKind::Decrypt => mcs_api::TaskKind::Decrypt,
        TaskKind::Encrypt => mcs_api::TaskKind::Encrypt,
        TaskKind::Csr => mcs_api::TaskKind::Csr,
        TaskKind::PdfSeal => mcs_api::TaskKind::PdfSeal,
        TaskKind::PdfUnseal => mcs_api::TaskKind::PdfUnseal,
    }
}

fn task_status(s: TaskStatus) -> mcs_api::TaskStatus {
    match s {
        TaskStatus::Pending => mcs_api::TaskStatus::Pending,
        TaskStatus::Claimed => mcs_api::TaskStatus::Claimed,
        TaskStatus::AwaitingApproval => mcs_api::TaskStatus::AwaitingApproval,
        TaskStatus::Completed => mcs_api::TaskStatus::Completed,
        TaskStatus::Rejected => mcs_api::TaskStatus::Rejected,
        TaskStatus::Expired => mcs_api::TaskStatus::Expired,
        TaskStatus::Failed => mcs_api::TaskStatus::Failed,
    }
}

pub fn task(t: &TaskRecord) -> mcs_api::TaskView {
    // What is being signed, so the phone can show it and check the server's e.
    let data = match &t.data {
        TaskData::Login { challenge } => {
            Some(mcs_api::TaskViewData::Login(mcs_api::LoginData { challenge: challenge.clone() }))
        }
        TaskData::Sign { message, cms, .. } => Some(mcs_api::TaskViewData::Sign(mcs_api::SignData {
            message: message.clone(),
            format: cms.then(|| "cms".to_owned()),
        })),
        TaskData::Csr { request_info, .. } => {
            Some(mcs_api::TaskViewData::Csr(mcs_api::CsrData { request_info: request_info.clone() }))
        }
        TaskData::PdfSeal { seal_id, placement, chosen_seal, .. } => {
            Some(mcs_api::TaskViewData::PdfSeal(mcs_api::PdfSealView {
                seal_id: chosen_seal.clone().or_else(|| seal_id.clone()),
                placement: placement.clone(),
            }))
        }
        TaskData::PdfUnseal { field, signer, pdf_sha256, .. } => {
            Some(mcs_api::TaskViewData::PdfUnseal(mcs_api::PdfUnsealView {
                field: field.clone(),
                signer: signer.clone(),
                pdf_sha256: pdf_sha256.clone(),
            }))
        }
        TaskData::Decrypt { .. } | TaskData::Encrypt { .. } => None,
    };
    mcs_api::TaskView {
        task_id: t.id.clone(),
        kind: task_kind(t.kind),
        status: task_status(t.status),
        platform: t.platform.clone(),
        display: mcs_api::TaskDisplay { title: t.display.title.clone(), detail: t.display.detail.clone() },
        expires_at: rfc3339(t.expires_at),
        data,
        key_id: t.key_id.clone(),
        error: t.error.clone(),
    }
}

pub fn claimed(c: &Claimed) -> mcs_api::ClaimAnswer {
    match c {
        Claimed::Digest(e) => mcs_api::ClaimAnswer::Digest(mcs_api::Digest { e: e.clone() }),
        Claimed::SealDigest { e, to_be_signed } => {
            mcs_api::ClaimAnswer::SealDigest(mcs_api::SealDigest { e: e.clone(), to_be_signed: to_be_signed.clone() })
        }
        Claimed::UnsealDigest { e, field, signer } => mcs_api::ClaimAnswer::UnsealDigest(mcs_api::UnsealDigest {
            e: e.clone(),
            field: field.clone(),
            signer: signer.clone(),
        }),
        Claimed::Ciphertext(c) => mcs_api::ClaimAnswer::Ciphertext(mcs_api::CiphertextClaim { ciphertext: c.clone() }),
        Claimed::Completed => mcs_api::ClaimAnswer::Completed(status(mcs_api::TaskStatus::Completed)),
        Claimed::AwaitingApproval(id) => mcs_api::ClaimAnswer::AwaitingApproval(mcs_api::ApprovalPending {
            status: mcs_api::TaskStatus::AwaitingApproval,
            approval_id: id.clone(),
        }),
        Claimed::AwaitingPlacement => mcs_api::ClaimAnswer::AwaitingPlacement(mcs_api::PlacementPending {
            status: mcs_api::TaskStatus::Claimed,
            placement: crate::seals::DEFERRED.into(),
        }),
    }
}

pub fn accepted(body: impl Serialize) -> Reply {
    answer(StatusCode::ACCEPTED, &body)
}

/// `GET /v1/approvals/{id}`: an approval still pending when its task has ended expired
/// with it.
pub fn approval(t: &TaskRecord) -> Option<mcs_api::ApprovalView> {
    use crate::model::task::ApprovalStatus;
    let a = t.approval.as_ref()?;
    let status = match a.status {
        ApprovalStatus::Pending if t.status.is_final() => "expired",
        ApprovalStatus::Pending => "pending",
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Denied => "denied",
    };
    Some(mcs_api::ApprovalView {
        approval_id: a.id.clone(),
        task_id: t.id.clone(),
        key_id: t.key_id.clone().unwrap_or_default(),
        delegation_id: Some(a.delegation_id.clone()).filter(|d| !d.is_empty()),
        seal_id: a.seal_id.clone(),
        status: status.into(),
        display: mcs_api::TaskDisplay { title: t.display.title.clone(), detail: t.display.detail.clone() },
        platform: t.platform.clone(),
    })
}

/// `{status}` after `complete` or `reject`.
pub fn status(status: mcs_api::TaskStatus) -> mcs_api::TaskStatusAnswer {
    mcs_api::TaskStatusAnswer { status }
}

/// `GET /v1/tasks/{id}/result`: the status, and the result the task recorded when it
/// finished (or, once, a decrypt task's plaintext) or why it did not.
pub fn outcome(o: Outcome) -> mcs_api::TaskOutcome {
    mcs_api::TaskOutcome { status: task_status(o.status), result: o.result.map(task_result), error: o.error }
}

fn task_result(r: TaskResult) -> mcs_api::TaskResult {
    match r {
        TaskResult::PdfSeal { pdf, seal_id, key_id, certificate } => {
            mcs_api::TaskResult::PdfSeal(mcs_api::PdfSealResult { pdf, seal_id, key_id, certificate })
        }
        TaskResult::PdfUnseal { pdf, field, key_id } => {
            mcs_api::TaskResult::PdfUnseal(mcs_api::PdfUnsealResult { pdf, field, key_id })
        }
        TaskResult::Encrypt { ciphertext, envelope, certificate, key_id, public_key } => {
            let (ciphertext, envelope) = if envelope { (None, Some(ciphertext)) } else { (Some(ciphertext), None) };
            mcs_api::TaskResult::Encrypt(mcs_api::EncryptResult {
                ciphertext,
                envelope,
                certificate,
                key_id,
                public_key,
            })
        }
        TaskResult::Decrypt { plaintext } => mcs_api::TaskResult::Decrypt(mcs_api::DecryptResult { plaintext }),
        TaskResult::ContentKey { content_key } => {
            mcs_api::TaskResult::ContentKey(mcs_api::ContentKeyResult { content_key })
        }
        TaskResult::Login { signature, key_id, public_key, subject: who, certificate, subject_dn } => {
            mcs_api::TaskResult::Login(mcs_api::LoginResult {
                signature,
                key_id,
                public_key,
                subject: subject(&who),
                certificate,
                subject_dn,
            })
        }
        TaskResult::Sign { signature, key_id, public_key, certificate, subject_dn } => {
            mcs_api::TaskResult::Sign(mcs_api::SignResult { signature, key_id, public_key, certificate, subject_dn })
        }
        TaskResult::Csr { certificate, key_id } => mcs_api::TaskResult::Csr(mcs_api::CsrResult { certificate, key_id }),
    }
}

fn delegation_status(s: crate::model::delegation::DelegationStatus) -> mcs_api::DelegationStatus {
    use crate::model::delegation::DelegationStatus as S;
    match s {
        S::Invited => mcs_api::DelegationStatus::Invited,
        S::AwaitingShare => mcs_api::DelegationStatus::AwaitingShare,
        S::AwaitingPin => mcs_api::DelegationStatus::AwaitingPin,
        S::Active => mcs_api::DelegationStatus::Active,
        S::Revoked => mcs_api::DelegationStatus::Revoked,
        S::Expired => mcs_api::DelegationStatus::Expired,
    }
}

/// A delegation; `handover` only for its delegate while `awaiting_pin`.
pub fn delegation(
    d: &crate::model::delegation::DelegationRecord,
    max_attempts: u32,
    handover: Option<crate::keys::delegations::Handover>,
) -> mcs_api::Delegation {
    use crate::model::delegation::DelegationKind;
    let (wrapped_share, p2) = handover.map(|h| (h.wrapped_share, h.p2)).unzip();
    mcs_api::Delegation {
        delegation_id: d.id.clone(),
        key_id: d.key_id.clone(),
        kind: match d.kind {
            DelegationKind::Delegate => mcs_api::DelegationKind::Delegate,
            DelegationKind::Transfer => mcs_api::DelegationKind::Transfer,
        },
        status: delegation_status(d.status),
        device_id: d.device_id.clone(),
        label: d.label.clone(),
        not_before: d.not_before.map(rfc3339),
        not_after: d.not_after.map(rfc3339),
        approval: delegation_approval(d.approval),
        task_kinds: d.task_kinds.clone(),
        pin: mcs_api::PinStatus {
            remaining_attempts: if d.pin.locked { 0 } else { max_attempts.saturating_sub(d.pin.failures) },
            locked: d.pin.locked,
        },
        created_at: rfc3339(d.created_at),
        end_reason: d.end_reason.clone(),
        public_key: d.public_key.clone(),
        transport_key: (d.status == crate::model::delegation::DelegationStatus::AwaitingShare)
            .then(|| d.transport_key.clone())
            .flatten(),
        wrapped_share,
        p2,
    }
}

pub fn delegation_created(c: &crate::keys::delegations::DelegationCreated) -> mcs_api::DelegationCreated {
    mcs_api::DelegationCreated {
        delegation_id: c.delegation.id.clone(),
        invitation_code: c.invitation_code.to_string(),
        expires_at: rfc3339(c.delegation.invitation_expires_at),
    }
}

/// `GET /v1/inbox`.
pub fn inbox(page: &crate::inbox::Page) -> mcs_api::InboxPage {
    use crate::model::inbox::InboxEvent as E;
    use mcs_api::InboxEvent as W;
    let display =
        |d: &crate::model::task::TaskDisplay| mcs_api::TaskDisplay { title: d.title.clone(), detail: d.detail.clone() };
    let item = |i: &crate::model::inbox::InboxRecord| mcs_api::InboxItem {
        id: i.id.clone(),
        created_at: rfc3339(i.created_at),
        event: match &i.event {
            E::Task { task_id, token, kind, display: d, platform } => W::Task {
                task_id: task_id.clone(),
                token: token.clone(),
                kind: task_kind(*kind),
                display: display(d),
                platform: platform.clone(),
            },
            E::ApprovalRequest { approval_id, task_id, display: d, platform, delegate_label } => W::ApprovalRequest {
                approval_id: approval_id.clone(),
                task_id: task_id.clone(),
                display: display(d),
                platform: platform.clone(),
                delegate_label: delegate_label.clone(),
            },
            E::ApprovalResult { approval_id, task_id, decision } => W::ApprovalResult {
                approval_id: approval_id.clone(),
                task_id: task_id.clone(),
                decision: decision.clone(),
            },
            E::DelegationAccepted { delegation_id } => W::DelegationAccepted { delegation_id: delegation_id.clone() },
            E::DelegationRevoked { delegation_id } => W::DelegationRevoked { delegation_id: delegation_id.clone() },
            E::CertificateIssued { key_id } => W::CertificateIssued { key_id: key_id.clone() },
            E::KeySuspended { key_id } => W::KeySuspended { key_id: key_id.clone() },
            E::KeyResumed { key_id } => W::KeyResumed { key_id: key_id.clone() },
            E::KeySuperseded { key_id } => W::KeySuperseded { key_id: key_id.clone() },
            E::CertificateExpiring { key_id, not_after } => {
                W::CertificateExpiring { key_id: key_id.clone(), not_after: *not_after }
            }
        },
    };
    mcs_api::InboxPage { items: page.items.iter().map(item).collect(), cursor: page.cursor.to_string() }
}

/// `GET /v1/devices`.
pub fn devices(rows: &[crate::keys::delegations::DeviceUse]) -> mcs_api::DeviceList {
    let row = |r: &crate::keys::delegations::DeviceUse| mcs_api::DeviceRow {
        device_id: r.device_id.clone(),
        role: if r.owner { mcs_api::DeviceRole::Owner } else { mcs_api::DeviceRole::Delegate },
        key_id: r.key_id.clone(),
        delegation_id: r.delegation.as_ref().map(|d| d.id.clone()),
        label: r.delegation.as_ref().and_then(|d| d.label.clone()),
        last_used_at: None,
    };
    mcs_api::DeviceList { items: rows.iter().map(row).collect() }
}
