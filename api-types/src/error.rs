//! The error body of every refused request (API.md "Errors").

use serde::{Deserialize, Serialize};

/// `{"error": {"code", "message", ...extra}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// An API.md code. A string so that a client still reads a code it does not know.
    #[cfg_attr(feature = "openapi", schema(value_type = ErrorCode))]
    pub code: String,
    /// Human text; never internal detail.
    pub message: String,
    /// With `pin_incorrect` (and a wrong PIN-reset code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_attempts: Option<u32>,
    /// Seconds, with `rate_limited`, `hsm_unavailable` and `store_unavailable` (as the `Retry-After` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// The error codes of API.md, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthenticated,
    Forbidden,
    DeviceMismatch,
    NotFound,
    Conflict,
    TaskState,
    PinIncorrect,
    PinLocked,
    TokenInvalid,
    TaskExpired,
    CertMismatch,
    PlatformNotAuthorized,
    NoPermission,
    KeyInactive,
    PayloadTooLarge,
    RateLimited,
    PluginError,
    PluginTimeout,
    HsmUnavailable,
    /// The store's database is out of reach (a failover under way); retry after
    /// `Retry-After`. An extension of API.md's table (docs/api-extensions.md).
    StoreUnavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::DeviceMismatch,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::TaskState,
        ErrorCode::PinIncorrect,
        ErrorCode::PinLocked,
        ErrorCode::TokenInvalid,
        ErrorCode::TaskExpired,
        ErrorCode::CertMismatch,
        ErrorCode::PlatformNotAuthorized,
        ErrorCode::NoPermission,
        ErrorCode::KeyInactive,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::PluginError,
        ErrorCode::PluginTimeout,
        ErrorCode::HsmUnavailable,
        ErrorCode::StoreUnavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::DeviceMismatch => "device_mismatch",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TaskState => "task_state",
            ErrorCode::PinIncorrect => "pin_incorrect",
            ErrorCode::PinLocked => "pin_locked",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TaskExpired => "task_expired",
            ErrorCode::CertMismatch => "cert_mismatch",
            ErrorCode::PlatformNotAuthorized => "platform_not_authorized",
            ErrorCode::NoPermission => "no_permission",
            ErrorCode::KeyInactive => "key_inactive",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PluginError => "plugin_error",
            ErrorCode::PluginTimeout => "plugin_timeout",
            ErrorCode::HsmUnavailable => "hsm_unavailable",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status API.md gives the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden
            | ErrorCode::DeviceMismatch
            | ErrorCode::PinIncorrect
            | ErrorCode::TokenInvalid
            | ErrorCode::PlatformNotAuthorized
            | ErrorCode::NoPermission => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::TaskState | ErrorCode::CertMismatch | ErrorCode::KeyInactive => 409,
            ErrorCode::TaskExpired => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::PinLocked => 423,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::PluginError => 502,
            ErrorCode::HsmUnavailable | ErrorCode::StoreUnavailable => 503,
            ErrorCode::PluginTimeout => 504,
        }
    }
}
