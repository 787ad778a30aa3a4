//! The vault: fixed-size slots in one file, overwritten in place, for the wrapped secrets
//! that must be destroyable — key shares, PIN verifiers and recovery keys.
//!
//! sled is log-structured: a deleted value lingers in old segments until the segment is
//! cleaned, at a time nobody controls. A revoked share must be gone from the disk when
//! the revoke is acknowledged, so these blobs never enter sled; sled holds a [`SlotRef`]
//! (slot number and SHA-256 of the blob) and the blob sits in a slot here. Shredding
//! writes zeros over the slot and syncs before returning.
//!
//! Slot: `len: u16 LE ‖ blob ‖ zero padding`, [`SLOT`] bytes; an all-zero slot is free.
//!
//! Ordering keeps the two files consistent across crashes: a blob is written and synced
//! before the sled transaction that references it commits, and a slot is zeroed only
//! after the sled transaction that dropped its reference is durable. So a crash can leave
//! only unreferenced non-empty slots; [`Vault::open`] zeroes those (given the references
//! sled holds) before anything else runs. A clean close records the slot count and free
//! list (see `Store::close`), so the next start can skip that check
//! ([`Vault::open_known`]) — unless a failure marked the vault suspect.
//!
//! Limits: in-place overwrite destroys the bytes on ext4/xfs (no data journaling by
//! default); copy-on-write filesystems (btrfs, ZFS) and SSD wear levelling can keep old
//! blocks, so the vault belongs on a plain filesystem — or rely on the HSM wrapping.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Bytes per slot.
pub const SLOT: usize = 256;
const MAX_BLOB: usize = SLOT - 2;
const REF_TAG: u8 = b'V';
/// Encoded [`SlotRef`] length.
pub const REF_LEN: usize = 1 + 8 + 32;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("vault slot {0} does not hold the expected secret")]
    Mismatch(u64),
    #[error("secret of {0} bytes does not fit a vault slot")]
    TooLarge(usize),
}

/// Where a secret lives: slot number and the blob's digest (checked on every read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRef {
    pub slot: u64,
    digest: [u8; 32],
}

impl SlotRef {
    pub fn encode(&self) -> [u8; REF_LEN] {
        let mut out = [0u8; REF_LEN];
        out[0] = REF_TAG;
        out[1..9].copy_from_slice(&self.slot.to_be_bytes());
        out[9..].copy_from_slice(&self.digest);
        out
    }

    /// Whether this reference names exactly `blob` (by its digest).
    pub fn holds(&self, blob: &[u8]) -> bool {
        <[u8; 32]>::from(Sha256::digest(blob)) == self.digest
    }

    /// A reference, if `bytes` is one (sled values that are not references are blobs).
    pub fn decode(bytes: &[u8]) -> Option<SlotRef> {
        if bytes.len() != REF_LEN || bytes[0] != REF_TAG {
            return None;
        }
        let slot = u64::from_be_bytes(bytes[1..9].try_into().ok()?);
        Some(SlotRef { slot, digest: bytes[9..].try_into().ok()? })
    }
}

struct Slots {
    free: BTreeSet<u64>,
    /// Slots in the file.
    count: u64,
}

pub struct Vault {
    file: File,
    slots: Mutex<Slots>,
    /// Set when a failure may have left a written slot without a reference; a clean close
    /// then does not vouch for the file, and the next start checks every slot.
    suspect: std::sync::atomic::AtomicBool,
}

impl Vault {
    /// Open or create the vault; zero every non-empty slot not in `referenced` (left by a
    /// crash between the two files), and sync.
    pub fn open(path: &Path, referenced: &BTreeSet<u64>) -> Result<Vault, VaultError> {
        let file = Self::open_file(path)?;
        let len = file.metadata()?.len();
        let count = len / SLOT as u64;
        if len % SLOT as u64 != 0 {
            // A torn extension: the partial slot was never referenced.
            file.set_len(count * SLOT as u64)?;
        }
        let mut free = BTreeSet::new();
        let mut buf = [0u8; SLOT];
        let mut zeroed = 0;
        for slot in 0..count {
            if referenced.contains(&slot) {
                continue;
            }
            file.read_exact_at(&mut buf, slot * SLOT as u64)?;
            if buf.iter().any(|&b| b != 0) {
                file.write_all_at(&[0u8; SLOT], slot * SLOT as u64)?;
                zeroed += 1;
            }
            free.insert(slot);
        }
        if zeroed > 0 || len % SLOT as u64 != 0 {
            file.sync_all()?;
            tracing::warn!(zeroed, "vault: destroyed secrets left unreferenced by an interrupted operation");
        }
        Ok(Vault { file, slots: Mutex::new(Slots { free, count }), suspect: Default::default() })
    }

    /// Open with the layout a clean close recorded ([`Vault::layout`]) instead of checking
    /// every slot: `None` if the file does not have that many slots (then use
    /// [`Vault::open`]).
    pub fn open_known(path: &Path, count: u64, free: &[u64]) -> Result<Option<Vault>, VaultError> {
        let file = Self::open_file(path)?;
        if file.metadata()?.len() != count * SLOT as u64 || free.iter().any(|&f| f >= count) {
            return Ok(None);
        }
        let slots = Slots { free: free.iter().copied().collect(), count };
        Ok(Some(Vault { file, slots: Mutex::new(slots), suspect: Default::default() }))
    }

    fn open_file(path: &Path) -> std::io::Result<File> {
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
    }

    /// Slot count and free slots, for the next [`Vault::open_known`]; `None` if a failure
    /// may have left an unreferenced slot (the next start must check them all).
    pub fn layout(&self) -> Option<(u64, Vec<u64>)> {
        if self.suspect.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Some((s.count, s.free.iter().copied().collect()))
    }

    /// Record that a written slot may have been left without a reference.
    pub fn mark_suspect(&self) {
        self.suspect.store(true, std::sync::atomic::Ordering::Release);
    }

    fn allocate(&self) -> u64 {
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match s.free.pop_first() {
            Some(slot) => slot,
            None => {
                s.count += 1;
                s.count - 1
            }
        }
    }

    fn release(&self, slot: u64) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).free.insert(slot);
    }

    /// Store a blob durably in a fresh slot.
    pub fn put(&self, blob: &[u8]) -> Result<SlotRef, VaultError> {
        if blob.len() > MAX_BLOB || blob.is_empty() {
            return Err(VaultError::TooLarge(blob.len()));
        }
        let mut buf = [0u8; SLOT];
        buf[..2].copy_from_slice(&(blob.len() as u16).to_le_bytes());
        buf[2..2 + blob.len()].copy_from_slice(blob);
        let slot = self.allocate();
        let written = self.file.write_all_at(&buf, slot * SLOT as u64).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Best effort: the slot is unreferenced, so a full start-up check zeroes it.
            let _ = self.file.write_all_at(&[0u8; SLOT], slot * SLOT as u64);
            self.mark_suspect();
            self.release(slot);
            return Err(e.into());
        }
        Ok(SlotRef { slot, digest: Sha256::digest(blob).into() })
    }

    pub fn get(&self, r: &SlotRef) -> Result<Vec<u8>, VaultError> {
        let mut buf = [0u8; SLOT];
        self.file.read_exact_at(&mut buf, r.slot * SLOT as u64).map_err(|_| VaultError::Mismatch(r.slot))?;
        let len = u16::from_le_bytes([buf[0], buf[1]]) as usize;
        let blob = buf.get(2..2 + len).ok_or(VaultError::Mismatch(r.slot))?;
        if len == 0 || <[u8; 32]>::from(Sha256::digest(blob)) != r.digest {
            return Err(VaultError::Mismatch(r.slot));
        }
        Ok(blob.to_vec())
    }

    /// The whole file (for a backup taken while writers are held off).
    pub fn contents(&self) -> Result<Vec<u8>, VaultError> {
        let count = self.slots.lock().unwrap_or_else(|p| p.into_inner()).count;
        let mut buf = vec![0u8; count as usize * SLOT];
        let len = (self.file.metadata()?.len() as usize).min(buf.len());
        self.file.read_exact_at(&mut buf[..len], 0)?;
        Ok(buf)
    }

    /// Overwrite slots with zeros and sync; they become free. Call only once no durable
    /// reference to them remains.
    pub fn shred(&self, slots: &[u64]) -> Result<(), VaultError> {
        if slots.is_empty() {
            return Ok(());
        }
        for &slot in slots {
            self.file.write_all_at(&[0u8; SLOT], slot * SLOT as u64)?;
        }
        self.file.sync_data()?;
        for &slot in slots {
            self.release(slot);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_shred_and_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, &BTreeSet::new()).unwrap();
        let a = v.put(b"alpha-secret").unwrap();
        let b = v.put(b"beta-secret").unwrap();
        assert_ne!(a.slot, b.slot);
        assert_eq!(v.get(&a).unwrap(), b"alpha-secret");
        assert_eq!(SlotRef::decode(&a.encode()), Some(a));
        assert_eq!(SlotRef::decode(b"plain blob"), None);
        v.shred(&[a.slot]).unwrap();
        assert!(v.get(&a).is_err(), "a shredded slot reads as nothing");
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"alpha-secret"), "the bytes are gone from the file");
        assert!(bytes.windows(11).any(|w| w == b"beta-secret"));
        let c = v.put(b"gamma").unwrap();
        assert_eq!(c.slot, a.slot, "freed slots are reused");
        assert!(v.put(&[1u8; SLOT]).is_err());
    }

    #[test]
    fn open_destroys_unreferenced_slots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, &BTreeSet::new()).unwrap();
        let kept = v.put(b"referenced").unwrap();
        let orphan = v.put(b"orphaned-by-a-crash").unwrap();
        drop(v);
        let v = Vault::open(&path, &BTreeSet::from([kept.slot])).unwrap();
        assert_eq!(v.get(&kept).unwrap(), b"referenced");
        assert!(v.get(&orphan).is_err());
        assert!(!std::fs::read(&path).unwrap().windows(8).any(|w| w == b"orphaned"));
        assert_eq!(v.put(b"next").unwrap().slot, orphan.slot);
    }
}
