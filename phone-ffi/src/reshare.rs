//! The new device's side of a re-share (PROTOCOL.md "Re-sharing"): a transport key pair
//! `T = t·G` sent at accept, and the opening of the owner's sealed `d1'`, refused unless it
//! forms the key's joint public key with the daemon's `p2`.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::{PhoneError, hex_bytes, hex_vec, invalid};
use crate::key::JointKey;
use crate::share::KeyShare;

/// `t`, wiped on drop; `T` is public.
#[derive(uniffi::Object)]
pub struct TransportKey {
    inner: sm2_2p::TransportKey,
    public: sm2_2p::AffinePoint,
}

#[uniffi::export]
impl TransportKey {
    /// A fresh pair for one delegation (at accept).
    #[uniffi::constructor]
    pub fn generate() -> Arc<Self> {
        let (inner, public) = sm2_2p::TransportKey::generate();
        Arc::new(TransportKey { inner, public })
    }

    /// The pair from `export_secret()` (the app kept it between accept and activate).
    #[uniffi::constructor]
    pub fn restore(secret: String) -> Result<Arc<Self>, PhoneError> {
        let secret = Zeroizing::new(secret);
        let t = hex_bytes::<32>("secret", &secret)?;
        let inner = sm2_2p::TransportKey::from_bytes(&t).map_err(invalid("secret"))?;
        // `T = t·G` is recomputed, not stored: it is whatever `t` opens.
        let scalar = Zeroizing::new(sm2_2p::scalar_from_hex(&secret).map_err(invalid("secret"))?);
        let public =
            sm2_2p::fast::mul_base(&scalar).ok_or_else(|| PhoneError::input("secret", "t·G is the identity"))?;
        Ok(Arc::new(TransportKey { inner, public }))
    }

    /// `T` (130 lowercase hex): the accept request's `transport_key`.
    pub fn public_key(&self) -> String {
        sm2_2p::point_to_hex(&self.public)
    }

    /// `t` (64 lowercase hex), for the app's secure storage (Android Keystore-wrapped, iOS
    /// Keychain) between accept and activate; erase it once the share is opened.
    pub fn export_secret(&self) -> String {
        hex::encode(self.inner.to_bytes().as_slice())
    }

    /// Step 4: open `wrapped_share` (hex, from the delegation view once `awaiting_pin`)
    /// and check that with `p2` it forms `key` (the view's `public_key`).
    pub fn open_share(&self, wrapped_share: String, p2: String, key: &JointKey) -> Result<Arc<KeyShare>, PhoneError> {
        let sealed = hex_vec("wrapped_share", &wrapped_share)?;
        let p2 = sm2_2p::point_from_hex(&p2).map_err(invalid("p2"))?;
        let share = self.inner.open_share(&sealed, &p2, &key.point).map_err(|e| match e {
            sm2_2p::Error::ShareMismatch => {
                PhoneError::ShareMismatch { reason: "d1'⁻¹·p2 − G is not the key's public key".into() }
            }
            sm2_2p::Error::DecryptFailed => {
                PhoneError::DecryptFailed { reason: "the sealed share does not open with this transport key".into() }
            }
            other => PhoneError::input("wrapped_share", other.to_string()),
        })?;
        Ok(Arc::new(KeyShare { share }))
    }
}
