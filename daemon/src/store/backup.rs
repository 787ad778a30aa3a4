//! Backups: a consistent image of every tree and the vault, taken while writers wait, and
//! a store rebuilt from one.

use std::path::Path;

use super::vault::VaultError;
use super::{CLEAN_CLOSE, Durability, Store, StoreError, until_unlocked};

const SNAPSHOT_MAGIC: &[u8] = b"MCSDBAK1";

impl Store {
    /// A consistent image of the whole store — every tree and the vault — taken while
    /// writers wait: `MCSDBAK1`, then records `[1, tree name, key, value]` and one
    /// `[2, vault bytes]`, then `[0]` and the SHA-256 of everything before it.
    pub(super) fn snapshot_image(&self) -> Result<Vec<u8>, StoreError> {
        use sha2::Digest;
        let _all = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut out = SNAPSHOT_MAGIC.to_vec();
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        for name in self.files()?.db.tree_names() {
            let tree = self.files()?.db.open_tree(&name)?;
            for entry in tree.iter() {
                let (k, v) = entry?;
                if name == "meta" && k == CLEAN_CLOSE {
                    continue;
                }
                out.push(1);
                put(&mut out, &name);
                put(&mut out, &k);
                put(&mut out, &v);
            }
        }
        out.push(2);
        put(&mut out, &self.files()?.vault.contents()?);
        out.push(0);
        let digest = sha2::Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Rebuild a store from a [`Durability::snapshot`] into `path`, which must not hold one.
    pub fn restore(path: &Path, image: &[u8]) -> Result<usize, StoreError> {
        use sha2::Digest;
        let bad = |why: &str| StoreError::Corrupt { key: "backup".into(), reason: why.into() };
        if path.exists() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(true) {
            return Err(bad("the target store directory is not empty"));
        }
        if image.len() < SNAPSHOT_MAGIC.len() + 33 || !image.starts_with(SNAPSHOT_MAGIC) {
            return Err(bad("not an mcsd backup"));
        }
        let (body, digest) = image.split_at(image.len() - 32);
        if sha2::Sha256::digest(body).as_slice() != digest {
            return Err(bad("checksum mismatch: the backup is damaged"));
        }
        let db = sled::Config::new().path(path).open()?;
        let mut rest = &body[SNAPSHOT_MAGIC.len()..];
        let take = |rest: &mut &[u8]| -> Result<Vec<u8>, StoreError> {
            let n = u32::from_be_bytes(rest.get(..4).ok_or_else(|| bad("truncated"))?.try_into().unwrap_or_default())
                as usize;
            let v = rest.get(4..4 + n).ok_or_else(|| bad("truncated"))?.to_vec();
            *rest = &rest[4 + n..];
            Ok(v)
        };
        let mut records = 0;
        loop {
            let (&tag, tail) = rest.split_first().ok_or_else(|| bad("truncated"))?;
            rest = tail;
            match tag {
                0 => break,
                1 => {
                    let (name, k, v) = (take(&mut rest)?, take(&mut rest)?, take(&mut rest)?);
                    db.open_tree(name)?.insert(k, v)?;
                    records += 1;
                }
                2 => {
                    let vault = take(&mut rest)?;
                    std::fs::write(path.join("secrets.vault"), vault)
                        .map_err(|e| StoreError::Vault(VaultError::Io(e)))?;
                }
                _ => return Err(bad("unknown record tag")),
            }
        }
        db.flush()?;
        drop(db);
        // Opening checks the vault against the references, as at every start.
        until_unlocked(|| Store::open(path))?.flush_blocking()?;
        Ok(records)
    }
}
