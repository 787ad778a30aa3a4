//! An in-memory [`Wrapper`] for unit tests: AES-256-GCM (ring's, already in the tree
//! through rustls) under KEKs that live in this process, with the real HSM's blob format
//! and AAD (owner ‖ kind ‖ version), so tests of the domain see the same failures — a blob
//! moved to another owner or kind, a flipped byte, an unknown version — as with SoftHSM.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::{HsmError, IV_LEN, Wrapper, aad, decode_blob, encode_blob};
use crate::model::secret::SecretKind;

/// KEK versions by number, the highest current; and a switch that makes every call
/// answer [`HsmError::Unavailable`], as a failing device does.
pub struct MemoryWrapper {
    keks: Mutex<HashMap<u32, LessSafeKey>>,
    unavailable: AtomicBool,
}

impl Default for MemoryWrapper {
    fn default() -> Self {
        let w = MemoryWrapper { keks: Mutex::new(HashMap::new()), unavailable: AtomicBool::new(false) };
        w.add_version().expect("a first KEK");
        w
    }
}

impl MemoryWrapper {
    /// A wrapper with KEK version 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on (until cleared) every call fails as an unavailable HSM's would.
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::SeqCst);
    }

    fn up(&self) -> Result<(), HsmError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(HsmError::Unavailable {
                reason: "test HSM is down".into(),
                retry_after: Duration::from_secs(1),
            });
        }
        Ok(())
    }

    fn keks(&self) -> std::sync::MutexGuard<'_, HashMap<u32, LessSafeKey>> {
        self.keks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn random<const N: usize>() -> Result<[u8; N], HsmError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| HsmError::Setup(format!("OS RNG: {e}")))?;
    Ok(b)
}

impl Wrapper for MemoryWrapper {
    fn wrap(&self, owner: &str, kind: SecretKind, secret: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.up()?;
        let keks = self.keks();
        let version = keks.keys().copied().max().ok_or_else(|| HsmError::Setup("no KEK".into()))?;
        let iv: [u8; IV_LEN] = random()?;
        let mut ct = secret.to_vec();
        keks[&version]
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad(owner, kind, version)), &mut ct)
            .map_err(|_| HsmError::Integrity("sealing failed".into()))?;
        Ok(encode_blob(version, &iv, &ct))
    }

    fn unwrap(&self, owner: &str, kind: SecretKind, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.up()?;
        let (version, iv, sealed) = decode_blob(owner, blob)?;
        let keks = self.keks();
        // The real HSM answers an unknown version as an invalid key handle: a device error.
        let kek = keks.get(&version).ok_or_else(|| HsmError::Unavailable {
            reason: format!("no KEK version {version}"),
            retry_after: Duration::from_secs(1),
        })?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let len = kek
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad(owner, kind, version)), &mut buf)
            .map_err(|_| HsmError::Integrity(format!("{owner}: tag mismatch")))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    fn current_version(&self) -> Option<u32> {
        if self.up().is_err() {
            return None;
        }
        self.keks().keys().copied().max()
    }

    fn add_version(&self) -> Result<u32, HsmError> {
        self.up()?;
        let material = Zeroizing::new(random::<32>()?);
        let key = UnboundKey::new(&AES_256_GCM, material.as_slice()).map_err(|_| HsmError::Setup("KEK".into()))?;
        let mut keks = self.keks();
        let next = keks.keys().copied().max().unwrap_or(0) + 1;
        keks.insert(next, LessSafeKey::new(key));
        Ok(next)
    }

    fn destroy_versions_below(&self, version: u32) -> Result<Vec<u32>, HsmError> {
        self.up()?;
        let mut keks = self.keks();
        let below = version.min(keks.keys().copied().max().unwrap_or(0));
        let mut destroyed: Vec<u32> = keks.keys().copied().filter(|v| *v < below).collect();
        keks.retain(|v, _| *v >= below);
        destroyed.sort_unstable();
        Ok(destroyed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_opens_only_for_its_owner_and_kind() {
        let w = MemoryWrapper::new();
        let blob = w.wrap("k_1", SecretKind::Share, b"secret").unwrap();
        assert_eq!(crate::hsm::blob_version(&blob), Some(1));
        assert_eq!(w.unwrap("k_1", SecretKind::Share, &blob).unwrap().as_slice(), b"secret");
        assert!(matches!(w.unwrap("k_2", SecretKind::Share, &blob), Err(HsmError::Integrity(_))));
        assert!(matches!(w.unwrap("k_1", SecretKind::PinVerifier, &blob), Err(HsmError::Integrity(_))));
        let mut flipped = blob.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(w.unwrap("k_1", SecretKind::Share, &flipped), Err(HsmError::Integrity(_))));
    }

    #[test]
    fn old_versions_unwrap_after_a_rotation_and_rewrap_moves_to_the_new_one() {
        let w = MemoryWrapper::new();
        let old = w.wrap("t_1", SecretKind::TaskInput, b"plain").unwrap();
        assert_eq!(w.add_version().unwrap(), 2);
        let fresh = w.rewrap("t_1", SecretKind::TaskInput, &old).unwrap();
        assert_eq!(crate::hsm::blob_version(&fresh), Some(2));
        assert_eq!(w.unwrap("t_1", SecretKind::TaskInput, &old).unwrap().as_slice(), b"plain");
        w.set_unavailable(true);
        assert!(matches!(w.unwrap("t_1", SecretKind::TaskInput, &fresh), Err(HsmError::Unavailable { .. })));
        assert_eq!(w.current_version(), None);
    }
}
