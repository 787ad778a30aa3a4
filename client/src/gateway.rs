//! Playing a trading platform's scan gateway: create a task, show its QR, wait for the outcome.

use hyper::Method;
use mcs_api::{CreateTaskRequest, TaskDisplay};
use serde_json::Value;

use crate::transport::{Connection, Result};

/// `POST /v1/tasks` → `{task_id, token, qr, expires_at}` ([`mcs_api::CreatedTask`]).
/// `data` is the kind's data (an [`mcs_api::TaskData`] as JSON, or any value for tests of
/// refusals).
pub async fn create_task(
    conn: &mut Connection,
    kind: &str,
    title: &str,
    data: Value,
    ttl_secs: Option<u64>,
    callback_url: Option<&str>,
) -> Result<Value> {
    let body = CreateTaskRequest {
        kind: kind.to_owned(),
        ttl_secs,
        display: TaskDisplay { title: title.to_owned(), detail: None },
        data,
        callback_url: callback_url.map(str::to_owned),
        to_key_id: None,
    };
    conn.send(Method::POST, "/v1/tasks", &body).await
}

/// `GET /v1/tasks/{id}` ([`mcs_api::TaskView`]).
pub async fn task(conn: &mut Connection, task_id: &str) -> Result<Value> {
    conn.json(Method::GET, &format!("/v1/tasks/{task_id}"), None).await
}

/// Long-poll the outcome for up to `wait_secs` ([`mcs_api::TaskOutcome`]).
pub async fn result(conn: &mut Connection, task_id: &str, wait_secs: u64) -> Result<Value> {
    conn.json(Method::GET, &format!("/v1/tasks/{task_id}/result?wait={wait_secs}"), None).await
}

/// `GET /v1/tasks/{id}/seals`: a claimed deferred `pdf_seal` task's seals to choose from
/// ([`mcs_api::TaskSeals`]).
pub async fn task_seals(conn: &mut Connection, task_id: &str) -> Result<mcs_api::TaskSeals> {
    crate::transport::parse(&conn.json(Method::GET, &format!("/v1/tasks/{task_id}/seals"), None).await?)
}

/// `POST /v1/tasks/{id}/placement`: the seal chosen on the PC and where it goes; answers
/// the task view.
pub async fn place(conn: &mut Connection, task_id: &str, seal_id: &str, placement: Value) -> Result<Value> {
    let body = mcs_api::PlacementRequest { seal_id: seal_id.to_owned(), placement };
    conn.send(Method::POST, &format!("/v1/tasks/{task_id}/placement"), &body).await
}

/// `POST /v1/timestamp` (any role): a DER RFC 3161 `TimeStampReq` in, the DER
/// `TimeStampResp` out (a rejection is a response too). An API error (no TSA: `conflict`)
/// is an `Err`.
pub async fn timestamp(conn: &mut Connection, request_der: Vec<u8>) -> Result<Vec<u8>> {
    let (status, body) =
        conn.call_raw(Method::POST, "/v1/timestamp", "application/timestamp-query", request_der.into()).await?;
    if status == 200 {
        return Ok(body.to_vec());
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| crate::transport::Error::Protocol(format!("answer {status} is not JSON: {e}")))?;
    crate::transport::Response { status, retry_after: None, request_id: None, body: v }
        .into_result()
        .map(|_| Vec::new())
}
