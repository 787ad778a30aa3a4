//! The wire errors of API.md, and the one mapping from them to HTTP.
//!
//! Every failure a caller can see is an [`ApiError`]. Domain modules return their own
//! errors and convert into this type exactly once, so a code, its status and its extra
//! fields are decided in a single place. Internal detail never reaches the caller: the
//! `internal` and `hsm_unavailable` variants carry only a fixed message, and the detail is
//! logged by whoever converts.

use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A caller-visible error: code and HTTP status exactly as in API.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("key belongs to another device")]
    DeviceMismatch,
    #[error("{0}")]
    NotFound(String),
    /// A known path, a method it does not take: `not_found` (the code a wrong method always
    /// had) with status 405; the router adds the `Allow` header.
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TaskState(String),
    #[error("PIN verification failed")]
    PinIncorrect { remaining_attempts: u32 },
    #[error("PIN locked after too many failed attempts")]
    PinLocked,
    #[error("task token invalid")]
    TokenInvalid,
    /// `token_invalid` for a wrong PIN-reset code, with the codes left before it is voided.
    #[error("reset code incorrect")]
    ResetCodeWrong { remaining_attempts: u32 },
    #[error("task expired")]
    TaskExpired,
    #[error("{0}")]
    CertMismatch(String),
    #[error("{0}")]
    PlatformNotAuthorized(String),
    #[error("{0}")]
    KeyInactive(String),
    #[error("{0}")]
    NoPermission(String),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// `rate_limited` with a reason: a per-platform quota (e.g. open tasks) is used up.
    #[error("{message}")]
    QuotaExceeded { message: String, retry_after_secs: u64 },
    #[error("HSM unavailable, retry later")]
    HsmUnavailable { retry_after_secs: u64 },
    #[error("store unavailable, retry later")]
    StoreUnavailable { retry_after_secs: u64 },
    #[error("{0}")]
    PluginError(String),
    #[error("{0}")]
    PluginTimeout(String),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The API.md code string.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::DeviceMismatch => "device_mismatch",
            ApiError::NotFound(_) | ApiError::MethodNotAllowed(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TaskState(_) => "task_state",
            ApiError::PinIncorrect { .. } => "pin_incorrect",
            ApiError::PinLocked => "pin_locked",
            ApiError::TokenInvalid | ApiError::ResetCodeWrong { .. } => "token_invalid",
            ApiError::TaskExpired => "task_expired",
            ApiError::CertMismatch(_) => "cert_mismatch",
            ApiError::PlatformNotAuthorized(_) => "platform_not_authorized",
            ApiError::KeyInactive(_) => "key_inactive",
            ApiError::NoPermission(_) => "no_permission",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RateLimited { .. } | ApiError::QuotaExceeded { .. } => "rate_limited",
            ApiError::HsmUnavailable { .. } => "hsm_unavailable",
            ApiError::StoreUnavailable { .. } => "store_unavailable",
            ApiError::PluginError(_) => "plugin_error",
            ApiError::PluginTimeout(_) => "plugin_timeout",
            ApiError::Internal => "internal",
        }
    }

    /// The HTTP status API.md assigns to the code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthenticated(_) => 401,
            ApiError::Forbidden(_)
            | ApiError::DeviceMismatch
            | ApiError::PinIncorrect { .. }
            | ApiError::TokenInvalid
            | ApiError::ResetCodeWrong { .. }
            | ApiError::PlatformNotAuthorized(_)
            | ApiError::NoPermission(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Conflict(_) | ApiError::TaskState(_) | ApiError::KeyInactive(_) | ApiError::CertMismatch(_) => {
                409
            }
            ApiError::TaskExpired => 410,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::PinLocked => 423,
            ApiError::RateLimited { .. } | ApiError::QuotaExceeded { .. } => 429,
            ApiError::Internal => 500,
            ApiError::PluginError(_) => 502,
            ApiError::HsmUnavailable { .. } | ApiError::StoreUnavailable { .. } => 503,
            ApiError::PluginTimeout(_) => 504,
        }
    }

    /// Seconds for a `Retry-After` header, where the code carries one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::QuotaExceeded { retry_after_secs, .. }
            | ApiError::HsmUnavailable { retry_after_secs }
            | ApiError::StoreUnavailable { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The `error` member of the body: code, message and the code's extra fields.
    pub fn detail(&self) -> mcs_api::ErrorDetail {
        let remaining_attempts = match self {
            ApiError::PinIncorrect { remaining_attempts } | ApiError::ResetCodeWrong { remaining_attempts } => {
                Some(*remaining_attempts)
            }
            _ => None,
        };
        mcs_api::ErrorDetail {
            code: self.code().to_owned(),
            message: self.to_string(),
            remaining_attempts,
            retry_after: self.retry_after(),
        }
    }

    /// The JSON body `{"error": {"code", "message", ...extra}}`.
    pub fn body(&self) -> Value {
        // Strings and integers only: serializing cannot fail.
        serde_json::to_value(mcs_api::ErrorBody { error: self.detail() }).unwrap_or(Value::Null)
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }
}

/// The code of an error answer, in the response's extensions: the metrics and the audit
/// entry record it without parsing the body.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp =
            (status, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], self.body().to_string())
                .into_response();
        if let Some(secs) = self.retry_after() {
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.extensions_mut().insert(ErrorCode(self.code()));
        resp
    }
}

impl From<sm2_2p::Error> for ApiError {
    fn from(e: sm2_2p::Error) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<crate::keys::KeyError> for ApiError {
    fn from(e: crate::keys::KeyError) -> Self {
        use crate::hsm::HsmError;
        use crate::keys::KeyError;
        use crate::store::StoreError;
        match e {
            KeyError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            KeyError::DeviceMismatch => ApiError::DeviceMismatch,
            KeyError::Inactive(status) => ApiError::KeyInactive(format!("key is {}", status.as_str())),
            KeyError::CertificateExpired => ApiError::KeyInactive("the key's certificate has expired".into()),
            KeyError::Plugin(p) => p.into(),
            KeyError::PinIncorrect { remaining_attempts } => ApiError::PinIncorrect { remaining_attempts },
            KeyError::PinLocked => ApiError::PinLocked,
            KeyError::ActivationCodeWrong => ApiError::Forbidden("activation code incorrect".into()),
            KeyError::TokenInvalid(_) => ApiError::TokenInvalid,
            KeyError::ResetCodeWrong { remaining_attempts } => ApiError::ResetCodeWrong { remaining_attempts },
            KeyError::NoPermission(msg) => ApiError::NoPermission(msg),
            KeyError::Conflict(msg) => ApiError::Conflict(msg.into()),
            KeyError::Store(e @ (StoreError::Unreachable(_) | StoreError::Unavailable)) => {
                tracing::warn!(error = %e, "answering store_unavailable");
                ApiError::StoreUnavailable { retry_after_secs: 1 }
            }
            KeyError::Hsm(HsmError::Unavailable { reason, retry_after }) => {
                tracing::warn!(%reason, "answering hsm_unavailable");
                ApiError::HsmUnavailable { retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64 }
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::Internal
            }
        }
    }
}

impl From<crate::plugins::PluginError> for ApiError {
    fn from(e: crate::plugins::PluginError) -> Self {
        use crate::plugins::PluginError;
        // The adapter's own words go to the log; the caller learns which adapter and what kind.
        tracing::warn!(error = %e, "CA adapter call failed");
        match e {
            PluginError::NotLoaded(name) => ApiError::NotFound(format!("no CA adapter named `{name}` is loaded")),
            PluginError::Failed { adapter, .. } => ApiError::PluginError(format!("CA adapter `{adapter}` failed")),
            PluginError::Unsupported { adapter, op } => {
                ApiError::PluginError(format!("CA adapter `{adapter}` does not support `{op}`"))
            }
            PluginError::Timeout(adapter) => {
                ApiError::PluginTimeout(format!("CA adapter `{adapter}` did not answer in time"))
            }
        }
    }
}

impl From<crate::tasks::TaskError> for ApiError {
    fn from(e: crate::tasks::TaskError) -> Self {
        use crate::tasks::TaskError;
        match e {
            TaskError::NotFound => ApiError::NotFound("task not found".into()),
            TaskError::TokenInvalid => ApiError::TokenInvalid,
            TaskError::Expired => ApiError::TaskExpired,
            TaskError::State(msg) => ApiError::TaskState(msg),
            e @ TaskError::PlatformNotAuthorized(_) => ApiError::PlatformNotAuthorized(e.to_string()),
            e @ TaskError::CertMismatch => ApiError::CertMismatch(e.to_string()),
            TaskError::Invalid(msg) => ApiError::BadRequest(msg),
            TaskError::Key(k) => k.into(),
            TaskError::Plugin(p) => p.into(),
            TaskError::Seal(s) => s.into(),
            TaskError::QuotaExceeded { message, retry_after_secs } => {
                ApiError::QuotaExceeded { message, retry_after_secs }
            }
            TaskError::TooLarge { limit, .. } => ApiError::PayloadTooLarge { limit: limit as usize },
        }
    }
}

impl From<crate::tsa::TsaError> for ApiError {
    fn from(e: crate::tsa::TsaError) -> Self {
        use crate::tsa::TsaError;
        match e {
            TsaError::NotConfigured => ApiError::Conflict(e.to_string()),
            TsaError::Store(s) => crate::keys::KeyError::Store(s).into(),
            TsaError::Plugin(p) => p.into(),
            TsaError::Internal(msg) => {
                tracing::error!(error = %msg, "internal error (tsa)");
                ApiError::Internal
            }
        }
    }
}

impl From<crate::seals::SealError> for ApiError {
    fn from(e: crate::seals::SealError) -> Self {
        use crate::seals::SealError;
        match e {
            SealError::NotFound => ApiError::NotFound("seal not found".into()),
            SealError::Invalid(msg) => ApiError::BadRequest(msg),
            SealError::Conflict(msg) => ApiError::Conflict(msg),
            SealError::NoPermission(msg) => ApiError::NoPermission(msg),
            SealError::Key(k) => k.into(),
            SealError::Plugin(p) => p.into(),
            SealError::Internal(msg) => {
                tracing::error!(error = %msg, "internal error (seals)");
                ApiError::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_match_api_md() {
        let cases: &[(ApiError, &str, u16)] = &[
            (ApiError::bad_request("x"), "bad_request", 400),
            (ApiError::Forbidden("x".into()), "forbidden", 403),
            (ApiError::DeviceMismatch, "device_mismatch", 403),
            (ApiError::NotFound("x".into()), "not_found", 404),
            (ApiError::MethodNotAllowed("x".into()), "not_found", 405),
            (ApiError::Conflict("x".into()), "conflict", 409),
            (ApiError::PinIncorrect { remaining_attempts: 2 }, "pin_incorrect", 403),
            (ApiError::PinLocked, "pin_locked", 423),
            (ApiError::KeyInactive("x".into()), "key_inactive", 409),
            (ApiError::PayloadTooLarge { limit: 1 }, "payload_too_large", 413),
            (ApiError::HsmUnavailable { retry_after_secs: 1 }, "hsm_unavailable", 503),
            (ApiError::StoreUnavailable { retry_after_secs: 1 }, "store_unavailable", 503),
            (ApiError::Internal, "internal", 500),
            (ApiError::TaskExpired, "task_expired", 410),
            (ApiError::PluginError("x".into()), "plugin_error", 502),
            (ApiError::PluginTimeout("x".into()), "plugin_timeout", 504),
            (ApiError::TokenInvalid, "token_invalid", 403),
            (ApiError::ResetCodeWrong { remaining_attempts: 4 }, "token_invalid", 403),
            (ApiError::TaskState("x".into()), "task_state", 409),
            (ApiError::CertMismatch("x".into()), "cert_mismatch", 409),
            (ApiError::PlatformNotAuthorized("x".into()), "platform_not_authorized", 403),
            (ApiError::NoPermission("x".into()), "no_permission", 403),
            (ApiError::RateLimited { retry_after_secs: 1 }, "rate_limited", 429),
            (ApiError::QuotaExceeded { message: "x".into(), retry_after_secs: 1 }, "rate_limited", 429),
        ];
        for (e, code, status) in cases {
            assert_eq!(e.code(), *code);
            assert_eq!(e.status(), *status);
            assert_eq!(e.body()["error"]["code"], *code);
        }
    }

    #[test]
    fn extras_are_in_the_body() {
        let b = ApiError::PinIncorrect { remaining_attempts: 3 }.body();
        assert_eq!(b["error"]["remaining_attempts"], 3);
        let e = ApiError::HsmUnavailable { retry_after_secs: 2 };
        assert_eq!(e.retry_after(), Some(2));
        assert_eq!(e.body()["error"]["message"], "HSM unavailable, retry later");
        assert_eq!(ApiError::Internal.body()["error"]["message"], "internal error");
        let q = ApiError::QuotaExceeded { message: "platform P has 3 open tasks".into(), retry_after_secs: 40 };
        assert_eq!((q.retry_after(), q.body()["error"]["retry_after"].as_u64()), (Some(40), Some(40)));
        assert_eq!(q.body()["error"]["message"], "platform P has 3 open tasks");
    }
}
