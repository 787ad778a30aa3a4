//! The app's inbox (`GET /v1/inbox`) and the gateway's tasks addressed to a key
//! (`POST /v1/tasks` with `to_key_id`).

use hyper::Method;
use mcs_api::{CreateTaskRequest, InboxEvent, InboxPage, TaskDisplay};
use serde_json::Value;

use crate::phone::ScanCode;
use crate::transport::{Connection, Error, Result};

/// The device's items after `after` (a cursor of an earlier page; the items up to it are
/// then dropped), waiting up to `wait_secs` for one.
pub async fn read(conn: &mut Connection, after: Option<&str>, wait_secs: u64) -> Result<InboxPage> {
    let mut path = format!("/v1/inbox?wait={wait_secs}");
    if let Some(c) = after {
        path.push_str(&format!("&after={c}"));
    }
    let page = conn.json(Method::GET, &path, None).await?;
    serde_json::from_value(page).map_err(|e| Error::Protocol(format!("inbox page: {e}")))
}

/// What a `task` item opens: the same as scanning the task's QR code on the daemon at
/// `base_url`.
pub fn scan_code(event: &InboxEvent, base_url: &str) -> Option<ScanCode> {
    match event {
        InboxEvent::Task { task_id, token, .. } => {
            Some(ScanCode { task_id: task_id.clone(), token: token.clone(), url: base_url.to_owned() })
        }
        _ => None,
    }
}

/// A gateway's task sent to the phones of `key_id` instead of shown as a QR code.
pub async fn create_task_for_key(
    conn: &mut Connection,
    kind: &str,
    title: &str,
    data: Value,
    key_id: &str,
) -> Result<Value> {
    let body = CreateTaskRequest {
        kind: kind.to_owned(),
        ttl_secs: None,
        display: TaskDisplay { title: title.to_owned(), detail: None },
        data,
        callback_url: None,
        to_key_id: Some(key_id.to_owned()),
    };
    conn.send(Method::POST, "/v1/tasks", &body).await
}
