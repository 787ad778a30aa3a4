//! Who is calling: the role and identity the TLS layer decided from the client certificate,
//! placed in each request's extensions by the server, and the extractors that state in a
//! handler's signature which roles may call it.
//!
//! A refused role is `forbidden` with the message every endpoint has always given; a
//! request without a [`Caller`] never reaches a handler (the API middleware answers
//! `unauthenticated` first).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::config::Role;
use crate::keys::Actor;

/// Who is calling, as decided by the client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin { subject: String },
    Gateway { platform: String, subject: String },
    App { device_id: String },
}

impl Caller {
    pub fn role(&self) -> Role {
        match self {
            Caller::Admin { .. } => Role::Admin,
            Caller::Gateway { .. } => Role::Gateway,
            Caller::App { .. } => Role::App,
        }
    }

    /// A short identity for logs.
    pub fn identity(&self) -> &str {
        match self {
            Caller::Admin { subject } => subject,
            Caller::Gateway { platform, .. } => platform,
            Caller::App { device_id } => device_id,
        }
    }

    fn refused(&self) -> ApiError {
        ApiError::Forbidden(format!("role `{}` may not call this endpoint", self.role().as_str()))
    }
}

/// In a request's extensions instead of a [`Caller`]: the certificate verified but did
/// not determine a role, and why.
#[derive(Debug, Clone)]
pub struct Unidentified(pub String);

/// The answer to a request without a [`Caller`]: why the certificate gave no role.
pub(super) fn unauthenticated(extensions: &axum::http::Extensions) -> ApiError {
    let why = extensions.get::<Unidentified>().map_or_else(|| "no client certificate".into(), |u| u.0.clone());
    ApiError::Unauthenticated(why)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Caller>() {
            Some(c) => Ok(c.clone()),
            None => Err(unauthenticated(&parts.extensions)),
        }
    }
}

/// An operator.
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Admin { .. } => Ok(Admin),
            other => Err(other.refused()),
        }
    }
}

/// A trading platform's gateway.
pub struct Gateway {
    pub platform: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Gateway {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Gateway { platform, .. } => Ok(Gateway { platform }),
            other => Err(other.refused()),
        }
    }
}

/// A phone, by device id.
pub struct Device(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Device {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::App { device_id } => Ok(Device(device_id)),
            other => Err(other.refused()),
        }
    }
}

/// An operator or a phone: the callers that act on keys ([`Actor`]).
pub enum AdminOrDevice {
    Admin,
    Device(String),
}

impl AdminOrDevice {
    pub fn actor(&self) -> Actor<'_> {
        match self {
            AdminOrDevice::Admin => Actor::Admin,
            AdminOrDevice::Device(id) => Actor::Device(id),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AdminOrDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Admin { .. } => Ok(AdminOrDevice::Admin),
            Caller::App { device_id } => Ok(AdminOrDevice::Device(device_id)),
            other => Err(other.refused()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts_of(caller: Option<Caller>) -> Parts {
        let mut req = axum::http::Request::builder().uri("/v1/x").body(()).unwrap();
        if let Some(c) = caller {
            req.extensions_mut().insert(c);
        }
        req.into_parts().0
    }

    fn admin() -> Caller {
        Caller::Admin { subject: "CN=op".into() }
    }
    fn gateway() -> Caller {
        Caller::Gateway { platform: "P".into(), subject: "CN=gw".into() }
    }
    fn phone() -> Caller {
        Caller::App { device_id: "d1".into() }
    }

    /// Each role extractor takes its role and refuses the others with today's answer.
    #[tokio::test]
    async fn role_extractors_refuse_the_wrong_role() {
        let refused = |e: ApiError, role: &str| {
            assert_eq!((e.code(), e.status()), ("forbidden", 403));
            assert_eq!(e.to_string(), format!("role `{role}` may not call this endpoint"));
        };
        for (caller, role) in [(gateway(), "gateway"), (phone(), "app")] {
            refused(Admin::from_request_parts(&mut parts_of(Some(caller)).await, &()).await.err().unwrap(), role);
        }
        for (caller, role) in [(admin(), "admin"), (phone(), "app")] {
            refused(Gateway::from_request_parts(&mut parts_of(Some(caller)).await, &()).await.err().unwrap(), role);
        }
        for (caller, role) in [(admin(), "admin"), (gateway(), "gateway")] {
            refused(Device::from_request_parts(&mut parts_of(Some(caller)).await, &()).await.err().unwrap(), role);
        }
        let e = AdminOrDevice::from_request_parts(&mut parts_of(Some(gateway())).await, &()).await.err().unwrap();
        refused(e, "gateway");

        assert!(Admin::from_request_parts(&mut parts_of(Some(admin())).await, &()).await.is_ok());
        let Gateway { platform } =
            Gateway::from_request_parts(&mut parts_of(Some(gateway())).await, &()).await.unwrap();
        assert_eq!(platform, "P");
        let Device(id) = Device::from_request_parts(&mut parts_of(Some(phone())).await, &()).await.unwrap();
        assert_eq!(id, "d1");
        let who = AdminOrDevice::from_request_parts(&mut parts_of(Some(phone())).await, &()).await.unwrap();
        assert!(matches!(who.actor(), Actor::Device("d1")));

        let e = Caller::from_request_parts(&mut parts_of(None).await, &()).await.err().unwrap();
        assert_eq!((e.code(), e.status()), ("unauthenticated", 401));
    }
}
