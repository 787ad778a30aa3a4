//! Playing a trading platform's scan gateway: create a task, show its QR, wait for the outcome.

use hyper::Method;
use serde_json::{Value, json};

use crate::transport::{Connection, Result};

/// `POST /v1/tasks` → `{task_id, token, qr, expires_at}`.
pub async fn create_task(
    conn: &mut Connection,
    kind: &str,
    title: &str,
    data: Value,
    ttl_secs: Option<u64>,
    callback_url: Option<&str>,
) -> Result<Value> {
    let mut body = json!({ "kind": kind, "display": { "title": title }, "data": data });
    if let Some(ttl) = ttl_secs {
        body["ttl_secs"] = json!(ttl);
    }
    if let Some(url) = callback_url {
        body["callback_url"] = json!(url);
    }
    conn.json(Method::POST, "/v1/tasks", Some(&body)).await
}

pub async fn task(conn: &mut Connection, task_id: &str) -> Result<Value> {
    conn.json(Method::GET, &format!("/v1/tasks/{task_id}"), None).await
}

/// Long-poll the outcome for up to `wait_secs`.
pub async fn result(conn: &mut Connection, task_id: &str, wait_secs: u64) -> Result<Value> {
    conn.json(Method::GET, &format!("/v1/tasks/{task_id}/result?wait={wait_secs}"), None).await
}
