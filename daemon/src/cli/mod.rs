//! Offline operator commands that work on the HSM and the store directly (the daemon is
//! stopped, or not involved): `mcsd dev-init`, `mcsd pdf sign-p256`.

pub mod dev_init;
pub mod pdf_p256;
