//! Unit-test fixtures for the domain: a sled store in a temporary directory, the in-memory
//! HSM, a clock that moves only when told, the real local CA adapter in process, and a
//! phone that enrolls and proves its PIN as the client does.

use std::sync::Arc;

use mcs_plugin_abi::{Adapter, CallError};
use serde_json::{Value, json};
use sm2_2p::{ClientShare, Transcript};
use zeroize::Zeroizing;

use super::{Activation, KeyService, NewEnrollment};
use crate::clock::{Clock, FakeClock};
use crate::config::Config;
use crate::hsm::memory::MemoryWrapper;
use crate::model::key::{KeyRecord, KeyStatus, Subject, SubjectKind};
use crate::plugins::PluginError;
use crate::plugins::ca::{CaAdapter, CaCall};
use crate::store::{Storage, Store};

/// The platform every fixture enrollment is authorised on.
pub const PLATFORM: &str = "p1";
/// The CA adapter name fixture enrollments use.
pub const CA: &str = "local";

/// The local CA adapter, called in process with the same JSON bytes the host would pass;
/// it records which operations it was asked for.
pub struct LocalCa {
    ca: mcs_local_ca::LocalCa,
    pub calls: std::sync::Mutex<Vec<(String, Value)>>,
}

impl LocalCa {
    /// A new CA whose key and state live in memory.
    pub fn open() -> LocalCa {
        let key = Box::new(mcs_local_ca::MemoryKey(sm2_2p::DaemonKey::generate()));
        let cfg = json!({ "ca_name": "Unit Test CA" }).to_string();
        let state = Box::new(mcs_local_ca::MemoryKv::default());
        LocalCa {
            ca: mcs_local_ca::LocalCa::open(key, state, cfg.as_bytes()).expect("local CA"),
            calls: Default::default(),
        }
    }

    pub fn ops(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(op, _)| op.clone()).collect()
    }
}

impl CaAdapter for LocalCa {
    fn call_json<'a>(&'a self, adapter: &'a str, op: &'a str, request: Value) -> CaCall<'a, Value> {
        self.calls.lock().unwrap().push((op.to_owned(), request.clone()));
        let failed = |reason: String| PluginError::Failed { adapter: adapter.to_owned(), reason };
        let answer = if adapter != CA {
            Err(PluginError::NotLoaded(adapter.to_owned()))
        } else {
            match self.ca.call(op, &serde_json::to_vec(&request).expect("JSON")) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string())),
                Err(CallError::Unsupported) => {
                    Err(PluginError::Unsupported { adapter: adapter.to_owned(), op: op.to_owned() })
                }
                Err(CallError::Failed(reason)) => Err(failed(reason)),
            }
        };
        Box::pin(async move { answer })
    }
}

/// The configuration a test daemon would parse, with `extra` TOML appended.
pub fn config(extra: &str) -> Config {
    Config::parse(&format!("{}\n{extra}\n", crate::config::MINIMAL), std::path::Path::new("/tmp")).expect("test config")
}

/// A key service over a fresh store, the in-memory HSM, a fake clock and the local CA.
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Storage>,
    pub hsm: Arc<MemoryWrapper>,
    pub clock: Arc<FakeClock>,
    pub ca: Arc<LocalCa>,
    pub cfg: Config,
    pub keys: Arc<KeyService>,
}

impl Keys {
    /// `extra`: TOML appended to the test configuration (e.g. a `[keys]` table).
    pub fn new(extra: &str) -> Keys {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Storage> = Arc::new(Store::open(&dir.path().join("db")).expect("store"));
        let hsm = Arc::new(MemoryWrapper::new());
        // Near the real time: the CA stamps certificates with it.
        let clock = FakeClock::at_ms(crate::clock::now_ms());
        let ca = Arc::new(LocalCa::open());
        let cfg = config(extra);
        let keys = Arc::new(KeyService::new(store.clone(), hsm.clone(), ca.clone(), cfg.keys.clone(), clock.clone()));
        Keys { dir, store, hsm, clock, ca, cfg, keys }
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// A phone that enrolled and activated: its key is `pending`, waiting for its certificate.
    pub async fn phone(&self, device: &str, pin: &str) -> Phone {
        self.phone_with(device, pin, true).await
    }

    /// [`Keys::phone`], sending a recovery key ([`recovery_of`]) or none.
    pub async fn phone_with(&self, device: &str, pin: &str, recovery: bool) -> Phone {
        let created = self
            .keys
            .create_enrollment(NewEnrollment {
                subject: Subject {
                    kind: SubjectKind::Person,
                    name: format!("Holder of {device}"),
                    org_name: None,
                    credit_code: None,
                    id_number: None,
                },
                ca: CA.into(),
                profile: None,
                platforms: vec![PLATFORM.into()],
                validity_days: 365,
                predecessor: None,
            })
            .await
            .expect("enrollment");
        let (share, p1) = sm2_2p::client_keygen();
        let verifier = sm2_2p::pin_verifier(pin.as_bytes(), &[7u8; 16]);
        let key = self
            .keys
            .activate(Activation {
                enrollment_id: created.enrollment_id,
                activation_code: Zeroizing::new(created.activation_code),
                device_id: device.into(),
                p1,
                pin_verifier: Box::new(verifier.clone()),
                recovery_key: recovery.then(|| Box::new(Zeroizing::new(recovery_of(device)))),
            })
            .await
            .expect("activation");
        Phone { share, verifier, device: device.into(), key_id: key.id }
    }

    /// A phone whose key is active. The status is set in the store directly: the
    /// certificate's own path (the `csr` task) is the task service's, and tested there.
    pub async fn active_phone(&self, device: &str, pin: &str) -> Phone {
        self.active_phone_with(device, pin, true).await
    }

    /// [`Keys::active_phone`] with a recovery key or none.
    pub async fn active_phone_with(&self, device: &str, pin: &str, recovery: bool) -> Phone {
        let phone = self.phone_with(device, pin, recovery).await;
        self.store
            .update_key::<()>(&phone.key_id, |k| {
                k.status = KeyStatus::Active;
                Ok(true)
            })
            .expect("store")
            .expect("update")
            .expect("key");
        phone
    }

    pub fn key(&self, id: &str) -> KeyRecord {
        self.store.key(id).expect("store").expect("key")
    }
}

/// The recovery key the test phones (and delegates) of `device` send.
pub fn recovery_of(device: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(format!("recovery key of {device}").as_bytes()).into()
}

/// The phone half: its share `d1`, its PIN verifier, its device id and key.
pub struct Phone {
    pub share: ClientShare,
    pub verifier: Zeroizing<[u8; 32]>,
    pub device: String,
    pub key_id: String,
}

impl Phone {
    /// The PIN proof for `t`, made with the right PIN.
    pub fn proof(&self, t: &Transcript) -> String {
        sm2_2p::pin_proof(&self.verifier, &self.key_id, t)
    }

    /// A proof made with a wrong PIN.
    pub fn wrong_proof(&self, t: &Transcript) -> String {
        sm2_2p::pin_proof(&sm2_2p::pin_verifier(b"000000", &[7u8; 16]), &self.key_id, t)
    }
}
