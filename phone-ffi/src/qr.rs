//! The task QR string (`mcs://task?v=1&id=…&token=…&url=…`), read by `mcs-api`'s strict
//! reader, the one the daemon's writer is tested against.

use crate::error::PhoneError;

/// What a task's QR code carries.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ScanCode {
    pub task_id: String,
    /// The task's token: `GET /v1/tasks/{task_id}?token=…`, and in `claim`, `cosign`, `complete`.
    pub token: String,
    /// The daemon's URL (`https://`), where the phone takes the task.
    pub url: String,
}

/// Read a scanned string. Refused (`InvalidQr`, with the rule it breaks): another scheme,
/// a version other than 1, a missing, empty or repeated `id`/`token`/`url`, a URL that is
/// not `https://` with a host, a bad percent-escape.
#[uniffi::export]
pub fn parse_task_qr(qr: String) -> Result<ScanCode, PhoneError> {
    let code = mcs_api::ScanCode::parse(&qr).map_err(|e| PhoneError::InvalidQr { reason: e.0.to_owned() })?;
    Ok(ScanCode { task_id: code.task_id, token: code.token, url: code.url })
}
