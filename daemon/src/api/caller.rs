//! Who is calling: the role and identity the TLS layer decided from the client certificate,
//! placed in each request's extensions by the server.

use crate::config::Role;

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
}
