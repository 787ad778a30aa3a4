//! The recovery key (PROTOCOL.md "PIN reset"): drawn at activation, sent to the daemon,
//! used once to seal the recovery copy of `d1`, then forgotten; handed back by the daemon
//! at a PIN reset to open that copy.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::{PhoneError, hex_bytes, random_bytes};

/// 32 secret bytes, wiped on drop.
#[derive(uniffi::Object)]
pub struct RecoveryKey {
    pub(crate) key: Zeroizing<[u8; 32]>,
}

#[uniffi::export]
impl RecoveryKey {
    /// A fresh key from the OS CSPRNG (at activation, and the new one of a PIN reset).
    #[uniffi::constructor]
    pub fn generate() -> Result<Arc<Self>, PhoneError> {
        Ok(Arc::new(RecoveryKey { key: random_bytes::<32>()? }))
    }

    /// The key the daemon answers a PIN reset with (`recovery_key`, 64 lowercase hex).
    #[uniffi::constructor]
    pub fn from_hex(recovery_key: String) -> Result<Arc<Self>, PhoneError> {
        let recovery_key = Zeroizing::new(recovery_key);
        Ok(Arc::new(RecoveryKey { key: hex_bytes::<32>("recovery_key", &recovery_key)? }))
    }

    /// The key as the request field `recovery_key` (64 lowercase hex). Send it; never store it.
    pub fn hex(&self) -> String {
        hex::encode(self.key.as_slice())
    }
}
