//! The answer side of the wire: every JSON body the API sends (except the error body,
//! which is [`super::error`]'s), rendered from domain records and verdicts, and every time
//! formatted as RFC 3339. Nothing below `api/` builds a view.

use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::clock::rfc3339;
use crate::keys::{EnrollmentCreated, SignOutput};
use crate::model::key::KeyRecord;
use crate::model::seal::SealRecord;
use crate::model::task::{TaskData, TaskRecord};
use crate::seals::{PdfVerdict, SealVerdict, SignatureVerdict};
use crate::tasks::{Claimed, CreatedTask, Outcome, TaskError, kind_str, status_str};

/// A successful answer: a status and, unless 204, a JSON body.
pub struct Answer(StatusCode, Option<Value>);

/// What a handler returns.
pub type Reply = Result<Answer, ApiError>;

pub fn ok(body: Value) -> Reply {
    Ok(Answer(StatusCode::OK, Some(body)))
}

/// A CA adapter's typed answer (`crl`, `status`), with whatever else the adapter said.
pub fn adapter_answer<T: serde::Serialize>(answer: &T) -> Value {
    // Plain data (strings and JSON the adapter sent) serializes.
    serde_json::to_value(answer).unwrap_or(Value::Null)
}

pub fn created(body: Value) -> Reply {
    Ok(Answer(StatusCode::CREATED, Some(body)))
}

pub fn no_content() -> Reply {
    Ok(Answer(StatusCode::NO_CONTENT, None))
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self.1 {
            Some(v) => {
                (self.0, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], v.to_string()).into_response()
            }
            None => self.0.into_response(),
        }
    }
}

/// `{enrollment_id, activation_code, expires_at}`: the code is shown here, once.
pub fn enrollment(created: &EnrollmentCreated) -> Value {
    json!({
        "enrollment_id": created.enrollment_id,
        "activation_code": created.activation_code,
        "expires_at": rfc3339(created.expires_at),
    })
}

pub fn successor(created: &EnrollmentCreated, predecessor: &str) -> Value {
    let mut view = enrollment(created);
    view["predecessor"] = json!(predecessor);
    view
}

pub fn activated(key: &KeyRecord, csr: &CreatedTask) -> Value {
    json!({
        "key_id": key.id,
        "public_key": key.public_key,
        "csr_task": { "task_id": csr.task_id, "token": csr.token },
    })
}

pub fn key(k: &KeyRecord, max_attempts: u32) -> Value {
    let platforms: Vec<Value> = k
        .platforms
        .iter()
        .map(|p| match p.until {
            Some(u) => json!({ "platform": p.platform, "until": rfc3339(u) }),
            None => json!({ "platform": p.platform }),
        })
        .collect();
    let mut v = json!({
        "key_id": k.id,
        "status": k.status.as_str(),
        "public_key": k.public_key,
        "platforms": platforms,
        "pin": {
            "remaining_attempts": if k.pin.locked { 0 } else { max_attempts.saturating_sub(k.pin.failures) },
            "locked": k.pin.locked,
        },
        "device_id": k.device_id,
        "created_at": rfc3339(k.created_at),
        "enrollment_id": k.enrollment_id,
        "subject": k.subject,
    });
    if let Some(reason) = &k.revocation_reason {
        v["revocation_reason"] = json!(reason);
    }
    if let Some(c) = &k.certificate {
        v["certificate"] = json!(c.der_b64);
        v["chain"] = json!(c.chain_b64);
        v["certificate_serial"] = json!(c.serial);
        v["certificate_subject"] = json!(c.subject);
        v["certificate_expires_at"] = json!(rfc3339(c.not_after));
    }
    v
}

pub fn keys(list: &[KeyRecord], max_attempts: u32) -> Value {
    json!({ "keys": list.iter().map(|k| key(k, max_attempts)).collect::<Vec<_>>() })
}

/// `{r, s2, s3}`: the server's half of a canonical signature.
pub fn sign_response(r: &sm2_2p::SignResponse) -> Value {
    json!({
        "r": sm2_2p::scalar_to_hex(&r.r),
        "s2": sm2_2p::scalar_to_hex(&r.s2),
        "s3": sm2_2p::scalar_to_hex(&r.s3),
    })
}

pub fn signed(out: &SignOutput) -> Value {
    match out {
        SignOutput::Canonical(r) => sign_response(r),
        SignOutput::FixedK3(r) => json!({
            "r": sm2_2p::scalar_to_hex(&r.r),
            "s3": sm2_2p::scalar_to_hex(&r.s3),
        }),
    }
}

pub fn decrypted(t2: &sm2_2p::AffinePoint) -> Value {
    json!({ "t2": sm2_2p::point_to_hex(t2) })
}

pub fn seal(s: &SealRecord) -> Value {
    json!({
        "seal_id": s.id,
        "es_id": s.es_id,
        "kind": s.kind,
        "name": s.name,
        "owner": s.owner,
        "signer_key_ids": s.signer_key_ids,
        "grants": s.grants.iter().map(|g| json!({ "key_id": g.key_id, "not_before": rfc3339(g.not_before), "not_after": rfc3339(g.not_after) })).collect::<Vec<_>>(),
        "valid_from": rfc3339(s.valid_from),
        "valid_to": rfc3339(s.valid_to),
        "status": if s.revoked_at.is_some() { "revoked" } else { "active" },
        "created_at": rfc3339(s.created_at),
        "seal": s.seal_b64,
    })
}

pub fn seals(list: &[SealRecord]) -> Value {
    json!({ "seals": list.iter().map(seal).collect::<Vec<_>>() })
}

pub fn signature_verdict(v: &SignatureVerdict) -> Value {
    json!({
        "valid": v.errors.is_empty(),
        "errors": v.errors,
        "signer": v.signer,
        "certificate_serial": v.certificate_serial,
    })
}

pub fn seal_verdict(v: &SealVerdict) -> Value {
    json!({
        "valid": v.errors.is_empty(),
        "es_id": v.es_id,
        "name": v.name,
        "valid_from": rfc3339(v.valid_from as i64),
        "valid_to": rfc3339(v.valid_to as i64),
        "errors": v.errors,
    })
}

pub fn pdf_verdict(v: &PdfVerdict) -> Value {
    let signatures: Vec<Value> = v
        .signatures
        .iter()
        .map(|s| {
            let mut entry = json!({ "field": s.field, "covers_whole_document": s.covers_whole_document });
            if let Some(signer) = &s.signer {
                entry["signer"] = json!(signer);
            }
            if let Some(t) = s.signed_at {
                entry["signed_at"] = json!(rfc3339(t as i64));
            }
            if let Some(seal) = &s.seal {
                entry["seal"] = json!({ "es_id": seal.es_id, "name": seal.name });
            }
            entry["valid"] = json!(s.errors.is_empty());
            entry["errors"] = json!(s.errors);
            entry
        })
        .collect();
    json!({ "signatures": signatures })
}

/// `GET /v1/audit`: the entries as the chain holds them.
pub fn audit_entries(entries: &[crate::audit::Entry]) -> Value {
    let view = |e: &crate::audit::Entry| {
        json!({
            "seq": e.seq,
            "at": rfc3339(e.at / 1000),
            "event": e.event,
            "actor": e.actor,
            "key_id": e.key_id,
            "platform": e.platform,
            "task_id": e.task_id,
            "outcome": e.outcome,
            "detail": e.detail,
            "hash": e.hash,
        })
    };
    json!({ "entries": entries.iter().map(view).collect::<Vec<_>>() })
}

pub fn plugins(list: Vec<Value>) -> Value {
    json!({ "plugins": list })
}

pub fn task_created(created: &CreatedTask) -> Value {
    json!({
        "task_id": created.task_id,
        "token": created.token,
        "qr": created.qr,
        "expires_at": rfc3339(created.expires_at),
    })
}

/// `{items:[{task_id, r, s2, s3} | {task_id, error}]}`, in the order asked.
pub fn batch(ids: &[String], results: Vec<Result<sm2_2p::SignResponse, TaskError>>) -> Value {
    let items: Vec<Value> = ids
        .iter()
        .zip(results)
        .map(|(id, r)| match r {
            Ok(r) => {
                let mut v = sign_response(&r);
                v["task_id"] = json!(id);
                v
            }
            Err(e) => json!({ "task_id": id, "error": ApiError::from(e).body()["error"] }),
        })
        .collect();
    json!({ "items": items })
}

pub fn task(t: &TaskRecord) -> Value {
    let mut v = json!({
        "task_id": t.id,
        "kind": kind_str(t.kind),
        "status": status_str(t.status),
        "platform": t.platform,
        "display": t.display,
        "expires_at": rfc3339(t.expires_at),
    });
    // What is being signed, so the phone can show it and check the server's e.
    match &t.data {
        TaskData::Login { challenge } => v["data"] = json!({ "challenge": challenge }),
        TaskData::Sign { message } => v["data"] = json!({ "message": message }),
        TaskData::Csr { request_info, .. } => v["data"] = json!({ "request_info": request_info }),
        TaskData::PdfSeal { seal_id, placement, chosen_seal, .. } => {
            v["data"] = json!({ "seal_id": chosen_seal.as_ref().or(seal_id.as_ref()), "placement": placement })
        }
        _ => {}
    }
    if let Some(k) = &t.key_id {
        v["key_id"] = json!(k);
    }
    if let Some(e) = &t.error {
        v["error"] = json!(e);
    }
    v
}

pub fn claimed(c: &Claimed) -> Value {
    match c {
        Claimed::Digest(e) => json!({ "e": e }),
        Claimed::SealDigest { e, to_be_signed } => json!({ "e": e, "to_be_signed": to_be_signed }),
        Claimed::Ciphertext(c) => json!({ "ciphertext": c }),
        Claimed::Completed => json!({ "status": "completed" }),
    }
}

/// `{status}` after `complete` or `reject`.
pub fn status(status: &str) -> Value {
    json!({ "status": status })
}

pub fn outcome(o: Outcome) -> Value {
    let mut v = json!({ "status": status_str(o.status) });
    if let Some(r) = o.result {
        v["result"] = r;
    }
    if let Some(e) = o.error {
        v["error"] = json!(e);
    }
    v
}

// ---- the detail of a request's audit entry ---------------------------------------------

/// A task's kind and status when a request on it was answered.
pub fn audit_task_detail(t: &TaskRecord) -> Value {
    json!({ "kind": kind_str(t.kind), "status": status_str(t.status) })
}

pub fn audit_seal_detail(seal_id: Option<&str>, key_id: Option<&str>) -> Value {
    json!({ "seal_id": seal_id, "key_id": key_id })
}

pub fn audit_enrollment_detail(enrollment_id: Option<&str>) -> Value {
    json!({ "enrollment_id": enrollment_id })
}
