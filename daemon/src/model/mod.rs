//! Plain domain types: what a key, an enrollment, a task, a seal is. No IO and no HTTP
//! views; the store encodes them (serde, versioned), `api` renders them.

pub mod audit;
pub mod callback_target;
pub mod delegation;
pub mod inbox;
pub mod key;
pub mod seal;
pub mod secret;
pub mod task;
