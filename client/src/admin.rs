//! Playing the operator: enrollments, key listing, unlock, revoke, successors, CA adapters.

use hyper::Method;
use mcs_api::qr::percent_encode;
use serde_json::Value;

use crate::transport::{Connection, Result, parse};

pub use mcs_api::{EnrollmentRequest, SealRequest, Subject, SubjectKind};

/// `{enrollment_id, activation_code, expires_at}`
pub async fn create_enrollment(conn: &mut Connection, req: &EnrollmentRequest) -> Result<Value> {
    conn.send(Method::POST, "/v1/enrollments", req).await
}

pub async fn list_keys(conn: &mut Connection, subject: Option<&str>, status: Option<&str>) -> Result<Value> {
    conn.json(Method::GET, &with_query("/v1/keys", &[("subject", subject), ("status", status)]), None).await
}

pub async fn get_key(conn: &mut Connection, key_id: &str) -> Result<Value> {
    conn.json(Method::GET, &format!("/v1/keys/{key_id}"), None).await
}

pub async fn unlock(conn: &mut Connection, key_id: &str) -> Result<Value> {
    conn.json(Method::POST, &format!("/v1/keys/{key_id}/unlock"), None).await
}

pub async fn revoke(conn: &mut Connection, key_id: &str, reason: &str) -> Result<Value> {
    let body = mcs_api::RevokeRequest { reason: reason.to_owned(), pin_proof: None };
    conn.send(Method::POST, &format!("/v1/keys/{key_id}/revoke"), &body).await
}

/// `POST /v1/keys/{id}/suspend` by an operator (冻结): the key answers `key_inactive`.
pub async fn suspend(conn: &mut Connection, key_id: &str, reason: &str) -> Result<Value> {
    let body = mcs_api::SuspendRequest { reason: reason.to_owned(), pin_proof: None };
    conn.send(Method::POST, &format!("/v1/keys/{key_id}/suspend"), &body).await
}

/// `POST /v1/keys/{id}/pin-reset`: open a PIN reset of the owner's share, or of the share
/// of `delegation_id` — after the person's identity was checked. The answer's `reset_code`
/// is told to the person out of band.
pub async fn open_pin_reset(conn: &mut Connection, key_id: &str, delegation_id: Option<&str>) -> Result<Value> {
    let body = mcs_api::OpenPinResetRequest { delegation_id: delegation_id.map(str::to_owned) };
    conn.send(Method::POST, &format!("/v1/keys/{key_id}/pin-reset"), &body).await
}

/// `POST /v1/keys/{id}/resume` (解冻).
pub async fn resume(conn: &mut Connection, key_id: &str) -> Result<Value> {
    conn.json(Method::POST, &format!("/v1/keys/{key_id}/resume"), None).await
}

/// `POST /v1/keys/{id}/delegations` by an operator (no PIN proof).
pub async fn create_delegation(
    conn: &mut Connection,
    key_id: &str,
    opts: &crate::delegation::DelegationOptions,
) -> Result<mcs_api::DelegationCreated> {
    let body = opts.request(None);
    crate::transport::parse(&conn.send(Method::POST, &format!("/v1/keys/{key_id}/delegations"), &body).await?)
}

/// `POST /v1/delegations/{did}/revoke` by an operator.
pub async fn revoke_delegation(conn: &mut Connection, delegation_id: &str) -> Result<mcs_api::Delegation> {
    let path = format!("/v1/delegations/{delegation_id}/revoke");
    crate::transport::parse(&conn.send(Method::POST, &path, &mcs_api::DelegationProof::default()).await?)
}

/// `POST /v1/keys/{id}/successor`: a new enrollment to renew, change or reissue a key.
pub async fn successor(
    conn: &mut Connection,
    key_id: &str,
    reason: &str,
    subject: Option<&Subject>,
    validity_days: Option<u32>,
) -> Result<Value> {
    let body = mcs_api::SuccessorRequest { reason: reason.to_owned(), subject: subject.cloned(), validity_days };
    conn.send(Method::POST, &format!("/v1/keys/{key_id}/successor"), &body).await
}

/// `GET /v1/plugins`: the CA adapters and their state.
pub async fn plugins(conn: &mut Connection) -> Result<Value> {
    conn.json(Method::GET, "/v1/plugins", None).await
}

/// The CRL an adapter publishes, DER.
pub async fn crl(conn: &mut Connection, adapter: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    let answer = conn.json(Method::GET, &format!("/v1/plugins/{}/crl", percent_encode(adapter)), None).await?;
    let answer: mcs_api::Crl = parse(&answer)?;
    base64::engine::general_purpose::STANDARD
        .decode(answer.crl)
        .map_err(|e| crate::transport::Error::Protocol(format!("crl: {e}")))
}

/// A certificate's status at its CA.
pub async fn certificate_status(conn: &mut Connection, adapter: &str, serial: &str) -> Result<Value> {
    conn.json(
        Method::GET,
        &with_query(&format!("/v1/plugins/{}/status", percent_encode(adapter)), &[("serial", Some(serial))]),
        None,
    )
    .await
}

/// `POST /v1/seals`.
/// What `GET /v1/audit` is asked for; every filter optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub key_id: Option<String>,
    pub platform: Option<String>,
    pub seal_id: Option<String>,
    /// Entries from this sequence number on.
    pub since: Option<u64>,
    pub limit: Option<usize>,
}

/// `GET /v1/audit`: `{entries}` (an operator sees all; a gateway its platform's; a phone
/// its key's, with `key_id`).
pub async fn audit(conn: &mut Connection, f: &AuditFilter) -> Result<Value> {
    let (since, limit) = (f.since.map(|s| s.to_string()), f.limit.map(|l| l.to_string()));
    let params = [
        ("key_id", f.key_id.as_deref()),
        ("platform", f.platform.as_deref()),
        ("seal_id", f.seal_id.as_deref()),
        ("since", since.as_deref()),
        ("limit", limit.as_deref()),
    ];
    conn.json(Method::GET, &with_query("/v1/audit", &params), None).await
}

/// `POST /v1/keys/{id}/platforms`: let the key be used on `platform` (roaming, 漫游): `mode`
/// `once`, `day`, `year`, or `until` with an RFC 3339 `until`. Answers the key view.
pub async fn grant_platform(
    conn: &mut Connection,
    key_id: &str,
    platform: &str,
    mode: &str,
    until: Option<&str>,
) -> Result<Value> {
    let body = mcs_api::PlatformRequest {
        platform: platform.to_owned(),
        mode: mode.to_owned(),
        until: until.map(str::to_owned),
    };
    conn.send(Method::POST, &format!("/v1/keys/{}/platforms", percent_encode(key_id)), &body).await
}

/// `DELETE /v1/keys/{id}/platforms/{platform}`: withdraw it.
pub async fn withdraw_platform(conn: &mut Connection, key_id: &str, platform: &str) -> Result<Value> {
    let path = format!("/v1/keys/{}/platforms/{}", percent_encode(key_id), percent_encode(platform));
    conn.json(Method::DELETE, &path, None).await
}

pub async fn create_seal(conn: &mut Connection, request: &SealRequest) -> Result<Value> {
    conn.send(Method::POST, "/v1/seals", request).await
}

pub async fn seals(conn: &mut Connection, owner: Option<&str>, key_id: Option<&str>) -> Result<Value> {
    conn.json(Method::GET, &with_query("/v1/seals", &[("owner", owner), ("key_id", key_id)]), None).await
}

/// `POST /v1/seals/{id}/image`: a new face; answers the new seal (the old one is revoked).
pub async fn change_seal_image(
    conn: &mut Connection,
    seal_id: &str,
    image: impl Into<mcs_api::SealFaceSpec>,
) -> Result<Value> {
    let body = mcs_api::SealImageRequest { image: image.into() };
    conn.send(Method::POST, &format!("/v1/seals/{}/image", percent_encode(seal_id)), &body).await
}

pub async fn revoke_seal(conn: &mut Connection, seal_id: &str) -> Result<Value> {
    conn.json(Method::POST, &format!("/v1/seals/{}/revoke", percent_encode(seal_id)), None).await
}

/// Grant a seal to a key between two RFC 3339 times; `each_use`: every use waits for the
/// approval of the seal's owner.
pub async fn grant_seal(
    conn: &mut Connection,
    seal_id: &str,
    key_id: &str,
    not_before: &str,
    not_after: &str,
    each_use: bool,
) -> Result<Value> {
    let body = mcs_api::SealGrantRequest {
        key_id: key_id.to_owned(),
        not_before: not_before.to_owned(),
        not_after: not_after.to_owned(),
        approval: each_use.then_some(mcs_api::DelegationApproval::EachUse),
    };
    conn.send(Method::POST, &format!("/v1/seals/{}/grants", percent_encode(seal_id)), &body).await
}

pub async fn ungrant_seal(conn: &mut Connection, seal_id: &str, key_id: &str) -> Result<Value> {
    conn.json(Method::DELETE, &format!("/v1/seals/{}/grants/{}", percent_encode(seal_id), percent_encode(key_id)), None)
        .await
}

/// `POST /v1/verify/pdf` (any role).
pub async fn verify_pdf(conn: &mut Connection, pdf: &[u8]) -> Result<Value> {
    use base64::Engine;
    let body = mcs_api::VerifyPdfRequest { pdf: base64::engine::general_purpose::STANDARD.encode(pdf) };
    conn.send(Method::POST, "/v1/verify/pdf", &body).await
}

/// `POST /v1/verify/seal` (any role).
pub async fn verify_seal(conn: &mut Connection, seal: &[u8]) -> Result<Value> {
    use base64::Engine;
    let body = mcs_api::VerifySealRequest { seal: base64::engine::general_purpose::STANDARD.encode(seal) };
    conn.send(Method::POST, "/v1/verify/seal", &body).await
}

/// `path?name=value&…` with the given parameters, percent-encoded; absent ones left out.
fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let query: Vec<String> =
        params.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={}", percent_encode(v)))).collect();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) }
}
