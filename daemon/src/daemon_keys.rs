//! The daemon's own SM2 keys (audit, seal maker, a CA's key, …): generated once, kept
//! HSM-wrapped in the store, used through [`DaemonKeys::sign`]; CA adapters reach them
//! through the plugin host's [`crate::plugins::HostSigner`].

use std::sync::Arc;

use crate::clock::Clock;
use crate::hsm::Wrapper;
use crate::model::key::DaemonKeyRecord;
use crate::model::secret::SecretKind;
use crate::plugins::HostSigner;
use crate::store::Storage;

/// The daemon's own SM2 keys, by name; created on first use, wrapped by the HSM.
#[derive(Clone)]
pub struct DaemonKeys {
    store: Arc<dyn Storage>,
    hsm: Arc<dyn Wrapper>,
    /// Stamps a key's creation.
    clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonKeyError {
    /// The store's public key for it is not the public half of its HSM-wrapped private key.
    #[error(
        "daemon key `{0}`: the stored public key is not that of the HSM-wrapped private key (the record was replaced)"
    )]
    Mismatch(String),
    #[error("{0}")]
    Other(String),
}

impl DaemonKeys {
    pub fn new(store: Arc<dyn Storage>, hsm: Arc<dyn Wrapper>, clock: Arc<dyn Clock>) -> Self {
        DaemonKeys { store, hsm, clock }
    }

    /// The key `name` and its record; created first if absent and `create`.
    fn load(&self, name: &str, create: bool) -> Result<Option<(DaemonKeyRecord, sm2_2p::DaemonKey)>, String> {
        let id = format!("daemon:{name}");
        let existing = self.store.daemon_key(name).map_err(|e| e.to_string())?;
        let (rec, blob) = match existing {
            Some(found) => found,
            None if !create => return Ok(None),
            None => {
                let key = sm2_2p::DaemonKey::generate();
                let blob =
                    self.hsm.wrap(&id, SecretKind::DaemonKey, key.to_bytes().as_slice()).map_err(|e| e.to_string())?;
                let rec = DaemonKeyRecord {
                    name: name.to_owned(),
                    public_key: sm2_2p::point_to_hex(&key.public()),
                    created_at: self.clock.now(),
                };
                let won = self.store.insert_daemon_key(&rec, &blob).map_err(|e| e.to_string())?;
                self.store.flush_blocking().map_err(|e| e.to_string())?;
                tracing::info!(key = name, "created daemon-held key");
                won
            }
        };
        let secret = self.hsm.unwrap(&id, SecretKind::DaemonKey, &blob).map_err(|e| e.to_string())?;
        let key = sm2_2p::DaemonKey::from_bytes(&secret).map_err(|e| format!("daemon key {name}: {e}"))?;
        Ok(Some((rec, key)))
    }

    fn load_or_create(&self, name: &str) -> Result<sm2_2p::DaemonKey, String> {
        self.load(name, true)?.map(|(_, key)| key).ok_or_else(|| format!("daemon key {name} was not created"))
    }

    /// The public key of `name` as its HSM-wrapped private key gives it (what a writer of
    /// the store cannot forge), checked against the stored record. `None` if absent and
    /// not `create`.
    pub fn public_key(&self, name: &str, create: bool) -> Result<Option<sm2_2p::AffinePoint>, DaemonKeyError> {
        let Some((rec, key)) = self.load(name, create).map_err(DaemonKeyError::Other)? else { return Ok(None) };
        let public = key.public();
        if rec.public_key != sm2_2p::point_to_hex(&public) {
            return Err(DaemonKeyError::Mismatch(name.to_owned()));
        }
        Ok(Some(public))
    }

    /// DER signature by key `name` over `msg` (SM2 with SM3, default ID).
    pub fn sign(&self, name: &str, msg: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.load_or_create(name)?.sign(msg).to_der())
    }

    /// A PKCS#10 request (DER) for key `name` as `CN=<common_name>,O=mcsd,C=CN`, signed by
    /// it (SM2-with-SM3): what a CA adapter certifies the daemon's own keys from.
    pub fn csr(&self, name: &str, common_name: &str) -> Result<Vec<u8>, String> {
        use der::{Decode, Encode};
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let info = x509_cert::request::CertReqInfo {
            version: x509_cert::request::Version::V1,
            subject: std::str::FromStr::from_str(&format!("CN={common_name},O=mcsd,C=CN")).map_err(|x| e(&x))?,
            public_key: spki::SubjectPublicKeyInfoOwned::from_der(&self.spki(name)?).map_err(|x| e(&x))?,
            attributes: Default::default(),
        };
        let sig = self.sign(name, &info.to_der().map_err(|x| e(&x))?)?;
        let csr = x509_cert::request::CertReq {
            info,
            algorithm: spki::AlgorithmIdentifierOwned { oid: mcs_pdfseal::SM2_WITH_SM3, parameters: None },
            signature: der::asn1::BitString::from_bytes(&sig).map_err(|x| e(&x))?,
        };
        csr.to_der().map_err(|x| e(&x))
    }

    /// DER SubjectPublicKeyInfo of key `name`.
    pub fn spki(&self, name: &str) -> Result<Vec<u8>, String> {
        Ok(sm2_2p::spki_der(&self.load_or_create(name)?.public()))
    }
}

// ---- the host table handed to adapters -----------------------------------------------------

impl HostSigner for DaemonKeys {
    fn sign(&self, name: &str, msg: &[u8]) -> Result<Vec<u8>, String> {
        DaemonKeys::sign(self, name, msg)
    }
    fn spki(&self, name: &str) -> Result<Vec<u8>, String> {
        DaemonKeys::spki(self, name)
    }
}
