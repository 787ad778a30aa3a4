//! Playing the operator: enrollments, key listing, unlock, revoke, successors, CA adapters.

use hyper::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::transport::{Connection, Result};

/// `subject` of an enrollment (API.md).
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrollmentRequest {
    pub subject: Subject,
    pub ca: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub platforms: Vec<String>,
    pub validity_days: u32,
}

/// `{enrollment_id, activation_code, expires_at}`
pub async fn create_enrollment(conn: &mut Connection, req: &EnrollmentRequest) -> Result<Value> {
    let body = serde_json::to_value(req).map_err(|e| crate::transport::Error::Config(e.to_string()))?;
    conn.json(Method::POST, "/v1/enrollments", Some(&body)).await
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
    conn.json(Method::POST, &format!("/v1/keys/{key_id}/revoke"), Some(&json!({ "reason": reason }))).await
}

/// `POST /v1/keys/{id}/successor`: a new enrollment to renew, change or reissue a key.
pub async fn successor(
    conn: &mut Connection,
    key_id: &str,
    reason: &str,
    subject: Option<&Subject>,
    validity_days: Option<u32>,
) -> Result<Value> {
    let mut body = json!({ "reason": reason });
    if let Some(s) = subject {
        body["subject"] = serde_json::to_value(s).map_err(|e| crate::transport::Error::Config(e.to_string()))?;
    }
    if let Some(d) = validity_days {
        body["validity_days"] = json!(d);
    }
    conn.json(Method::POST, &format!("/v1/keys/{key_id}/successor"), Some(&body)).await
}

/// `GET /v1/plugins`: the CA adapters and their state.
pub async fn plugins(conn: &mut Connection) -> Result<Value> {
    conn.json(Method::GET, "/v1/plugins", None).await
}

/// The CRL an adapter publishes, DER.
pub async fn crl(conn: &mut Connection, adapter: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    let answer = conn.json(Method::GET, &format!("/v1/plugins/{}/crl", percent_encode(adapter)), None).await?;
    let b64 = answer["crl"].as_str().ok_or_else(|| crate::transport::Error::Protocol("answer lacks `crl`".into()))?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
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

/// `POST /v1/seals` with an API.md seal request.
pub async fn create_seal(conn: &mut Connection, request: &Value) -> Result<Value> {
    conn.json(Method::POST, "/v1/seals", Some(request)).await
}

pub async fn seals(conn: &mut Connection, owner: Option<&str>, key_id: Option<&str>) -> Result<Value> {
    conn.json(Method::GET, &with_query("/v1/seals", &[("owner", owner), ("key_id", key_id)]), None).await
}

pub async fn revoke_seal(conn: &mut Connection, seal_id: &str) -> Result<Value> {
    conn.json(Method::POST, &format!("/v1/seals/{}/revoke", percent_encode(seal_id)), None).await
}

/// Grant a seal to a key between two RFC 3339 times.
pub async fn grant_seal(
    conn: &mut Connection,
    seal_id: &str,
    key_id: &str,
    not_before: &str,
    not_after: &str,
) -> Result<Value> {
    let body = json!({ "key_id": key_id, "not_before": not_before, "not_after": not_after });
    conn.json(Method::POST, &format!("/v1/seals/{}/grants", percent_encode(seal_id)), Some(&body)).await
}

pub async fn ungrant_seal(conn: &mut Connection, seal_id: &str, key_id: &str) -> Result<Value> {
    conn.json(Method::DELETE, &format!("/v1/seals/{}/grants/{}", percent_encode(seal_id), percent_encode(key_id)), None)
        .await
}

/// `POST /v1/verify/pdf` (any role).
pub async fn verify_pdf(conn: &mut Connection, pdf: &[u8]) -> Result<Value> {
    use base64::Engine;
    let body = json!({ "pdf": base64::engine::general_purpose::STANDARD.encode(pdf) });
    conn.json(Method::POST, "/v1/verify/pdf", Some(&body)).await
}

/// `POST /v1/verify/seal` (any role).
pub async fn verify_seal(conn: &mut Connection, seal: &[u8]) -> Result<Value> {
    use base64::Engine;
    let body = json!({ "seal": base64::engine::general_purpose::STANDARD.encode(seal) });
    conn.json(Method::POST, "/v1/verify/seal", Some(&body)).await
}

/// `path?name=value&…` with the given parameters, percent-encoded; absent ones left out.
fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let query: Vec<String> =
        params.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={}", percent_encode(v)))).collect();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
