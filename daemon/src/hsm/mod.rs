//! HSM custody: the only module that calls cryptoki.
//!
//! The HSM holds a few long-lived AES-256 key-encryption keys ([`Kek`] versions, found by
//! label and a 4-byte big-endian version in `CKA_ID`). Every secret the daemon keeps — key
//! shares, PIN verifiers — is stored as an AES-256-GCM blob that the HSM made
//! (`C_Encrypt`/`C_Decrypt`), with `AAD = record id ‖ record kind ‖ KEK version`
//! (length-prefixed so no two triples share an encoding). No per-user object is ever
//! created in the HSM.
//!
//! Robustness, because an HSM is a device that fails:
//! - one PKCS#11 context per process, initialised with `CKF_OS_LOCKING_OK` (SoftHSM
//!   crashes under threads otherwise), and a pool of sessions that stay open for the
//!   process lifetime (closing the last session would log out and invalidate handles);
//! - `CKR_USER_NOT_LOGGED_IN` → log in again and retry once; `CKR_OBJECT_HANDLE_INVALID`
//!   → find the KEKs again and retry once; `CKR_SESSION_HANDLE_INVALID` → replace the
//!   session and retry once;
//! - device-class errors (`DEVICE_ERROR`, `TOKEN_NOT_PRESENT`, …) retire the whole context.
//!   Until a re-initialisation succeeds every call answers [`HsmError::Unavailable`]
//!   (API `hsm_unavailable` with `Retry-After`). Re-initialisation is attempted at most
//!   once per `reinit_interval`, by [`Hsm::try_reinit`] (driven by a background task),
//!   after in-flight operations on the retired context have finished.
//!
//! All calls block; callers run them on the blocking thread pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::config::HsmConfig;
use crate::model::secret::SecretKind;

/// Version byte of the wrapped-blob format.
const BLOB_FORMAT: u8 = 1;
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;
const BLOB_HEADER: usize = 1 + 4 + IV_LEN;

#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The device is failing or being re-initialised; retry after the given time.
    #[error("HSM unavailable: {reason}")]
    Unavailable { reason: String, retry_after: Duration },
    /// A blob did not authenticate or parse: the record is corrupt or was moved.
    #[error("wrapped record failed to authenticate: {0}")]
    Integrity(String),
    /// Setup problem that an operator must fix (module path, token label, PIN, missing KEK).
    #[error("{0}")]
    Setup(String),
}

/// What the domain asks of the HSM: wrapping and unwrapping its secrets, and the KEK
/// versions a rotation moves between. [`Hsm`] is the PKCS#11 implementation; tests use
/// [`memory::MemoryWrapper`], which makes blobs of the same format with the same AAD
/// binding, so a blob moved to another owner or kind fails there too.
pub trait Wrapper: Send + Sync {
    /// Encrypt `secret` for `owner` (a record id) and `kind` under the current KEK.
    fn wrap(&self, owner: &str, kind: SecretKind, secret: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// Decrypt a blob made by [`Wrapper::wrap`] for the same owner and kind.
    fn unwrap(&self, owner: &str, kind: SecretKind, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError>;
    /// The KEK version new wraps use; `None` while the HSM is unavailable.
    fn current_version(&self) -> Option<u32>;
    /// Make KEK version `current + 1` current; older versions keep unwrapping.
    fn add_version(&self) -> Result<u32, HsmError>;
    /// Destroy every KEK version older than `version` (never the current one): whatever was
    /// wrapped under them — in backups, WAL, standbys, dead rows — can no longer be opened.
    /// Returns the versions destroyed.
    fn destroy_versions_below(&self, version: u32) -> Result<Vec<u32>, HsmError>;
    /// Unwrap under whatever version made the blob, wrap under the current one.
    fn rewrap(&self, owner: &str, kind: SecretKind, blob: &[u8]) -> Result<Vec<u8>, HsmError> {
        let secret = self.unwrap(owner, kind, blob)?;
        self.wrap(owner, kind, &secret)
    }
}

/// The KEK version a blob (of either implementation) was made under.
pub fn blob_version(blob: &[u8]) -> Option<u32> {
    (blob.len() >= BLOB_HEADER && blob[0] == BLOB_FORMAT)
        .then(|| u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]))
}

/// The self-describing blob both implementations make: format byte, KEK version, IV, then
/// the ciphertext with its tag.
fn encode_blob(version: u32, iv: &[u8; IV_LEN], ct: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(BLOB_HEADER + ct.len());
    blob.push(BLOB_FORMAT);
    blob.extend_from_slice(&version.to_be_bytes());
    blob.extend_from_slice(iv);
    blob.extend_from_slice(ct);
    blob
}

/// A blob's KEK version, IV and ciphertext with tag; `Integrity` for anything else.
fn decode_blob<'b>(owner: &str, blob: &'b [u8]) -> Result<(u32, [u8; IV_LEN], &'b [u8]), HsmError> {
    if blob.len() < BLOB_HEADER + 16 || blob[0] != BLOB_FORMAT {
        return Err(HsmError::Integrity(format!("{owner}: malformed blob")));
    }
    let version = u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]);
    let iv: [u8; IV_LEN] = blob[5..BLOB_HEADER].try_into().expect("IV_LEN bytes");
    Ok((version, iv, &blob[BLOB_HEADER..]))
}

#[cfg(test)]
pub mod memory;

/// The HSM connection: a PKCS#11 context and its session pool, replaced on device errors.
pub struct Hsm {
    cfg: HsmConfig,
    /// The loaded module, kept for the process lifetime: re-initialisation finalizes and
    /// initializes it again but never unloads it (many PKCS#11 libraries do not survive
    /// being unloaded and reloaded, and their state would be lost).
    module: Pkcs11,
    pin: Zeroizing<String>,
    live: RwLock<Option<Arc<Context>>>,
    /// A context retired after a device error, finalized once its in-flight calls end.
    retired: Mutex<Option<Arc<Context>>>,
    last_attempt: Mutex<Option<Instant>>,
    reinit_guard: Mutex<()>,
    reinits: AtomicU64,
}

struct Context {
    pkcs11: Pkcs11,
    slot: Slot,
    pool: Mutex<Vec<Session>>,
    returned: Condvar,
    /// KEK version → handle; re-resolved on `OBJECT_HANDLE_INVALID`.
    keks: RwLock<HashMap<u32, ObjectHandle>>,
    current_kek: std::sync::atomic::AtomicU32,
    kek_label: String,
}

/// How a PKCS#11 failure is handled.
enum Recovery {
    Relogin,
    Reresolve,
    ReplaceSession,
    /// The device itself is failing: retire the context.
    Device,
    /// The data or the request is at fault, not the device.
    Data,
}

fn classify(e: &CkError) -> Recovery {
    match e {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::UserNotLoggedIn => Recovery::Relogin,
            RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => Recovery::Reresolve,
            RvError::SessionHandleInvalid | RvError::SessionClosed => Recovery::ReplaceSession,
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange
            | RvError::MechanismParamInvalid => Recovery::Data,
            _ => Recovery::Device,
        },
        _ => Recovery::Device,
    }
}

impl Hsm {
    /// Connect: load the module, find the token, open the pool, log in, find the KEKs.
    /// Fails with [`HsmError::Setup`] if anything an operator must fix is wrong.
    pub fn connect(cfg: &HsmConfig) -> Result<Hsm, HsmError> {
        let pin = cfg.pin.read().map_err(HsmError::Setup)?;
        let module = load_module(cfg)?;
        let ctx = Context::open(cfg, &module, &pin, true)?;
        Ok(Hsm {
            cfg: cfg.clone(),
            module,
            pin,
            live: RwLock::new(Some(Arc::new(ctx))),
            retired: Mutex::new(None),
            last_attempt: Mutex::new(None),
            reinit_guard: Mutex::new(()),
            reinits: AtomicU64::new(0),
        })
    }

    /// Create KEK version 1 if the token has no KEK yet (`mcsd hsm init`). Returns the
    /// current version and whether it was created now.
    pub fn init_kek(cfg: &HsmConfig) -> Result<(u32, bool), HsmError> {
        let pin = cfg.pin.read().map_err(HsmError::Setup)?;
        let ctx = Context::open(cfg, &load_module(cfg)?, &pin, false)?;
        let result = (|| {
            if ctx.current() != 0 {
                return Ok((ctx.current(), false));
            }
            let session = ctx.take();
            let created = session
                .generate_key(&Mechanism::AesKeyGen, &kek_template(&cfg.kek_label, 1))
                .map_err(|e| HsmError::Setup(format!("creating the KEK: {e}")));
            ctx.give_back(session);
            created.map(|_| (1, true))
        })();
        ctx.shutdown();
        result
    }

    pub fn current_kek_version(&self) -> Option<u32> {
        self.live.read().ok()?.as_ref().map(|c| c.current())
    }

    /// True while a context is live (used by `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.live.read().map(|l| l.is_some()).unwrap_or(false)
    }

    /// Number of successful re-initialisations since start.
    pub fn reinit_count(&self) -> u64 {
        self.reinits.load(Ordering::Relaxed)
    }

    pub fn retry_after(&self) -> Duration {
        self.cfg.reinit_interval.max(Duration::from_secs(1))
    }

    /// Create KEK version `current + 1` (AES-256, sensitive, non-extractable) and make it
    /// current for new wraps; older versions stay usable for unwrapping.
    pub fn add_kek_version(&self) -> Result<u32, HsmError> {
        self.run_writing("add_kek", |ctx, session| {
            let next = ctx.find_keks(session, &ctx.kek_label)?.keys().copied().max().unwrap_or(0) + 1;
            session.generate_key(&Mechanism::AesKeyGen, &kek_template(&ctx.kek_label, next))?;
            ctx.resolve_keks(session)?;
            ctx.current_kek.store(next, Ordering::Release);
            Ok(next)
        })
    }

    /// Destroy the KEK objects of versions below `version` (and below the current one).
    pub fn destroy_kek_versions_below(&self, version: u32) -> Result<Vec<u32>, HsmError> {
        self.run_writing("destroy_kek", |ctx, session| {
            let below = version.min(ctx.current());
            let mut destroyed = Vec::new();
            for (v, handle) in ctx.find_keks(session, &ctx.kek_label)? {
                if v < below {
                    session.destroy_object(handle)?;
                    destroyed.push(v);
                }
            }
            ctx.resolve_keks(session)?;
            destroyed.sort_unstable();
            Ok(destroyed)
        })
    }

    /// Encrypt `secret` under the current KEK; returns the self-describing blob.
    pub fn wrap(&self, record_id: &str, kind: SecretKind, secret: &[u8]) -> Result<Vec<u8>, HsmError> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv)
            .map_err(|e| HsmError::Unavailable { reason: format!("OS RNG: {e}"), retry_after: self.retry_after() })?;
        let (version, ct) = self.run_named("wrap", |ctx, session| {
            let version = ctx.current();
            let kek = ctx
                .kek(version)
                .ok_or(CkError::Pkcs11(RvError::KeyHandleInvalid, cryptoki::context::Function::Encrypt))?;
            let aad = aad(record_id, kind, version);
            let mut iv_buf = iv;
            let params = GcmParams::new(&mut iv_buf, &aad, TAG_BITS.into())?;
            session.encrypt(&Mechanism::AesGcm(params), kek, secret).map(|ct| (version, ct))
        })?;
        Ok(encode_blob(version, &iv, &ct))
    }

    /// Decrypt a blob made by [`Hsm::wrap`] for the same record id and kind.
    pub fn unwrap(&self, record_id: &str, kind: SecretKind, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let (version, iv, sealed) = decode_blob(record_id, blob)?;
        let aad = aad(record_id, kind, version);
        let result = self.run_named("unwrap", |ctx, session| {
            let kek = ctx
                .kek(version)
                .ok_or(CkError::Pkcs11(RvError::KeyHandleInvalid, cryptoki::context::Function::Decrypt))?;
            let mut iv_buf = iv;
            let params = GcmParams::new(&mut iv_buf, &aad, TAG_BITS.into())?;
            session.decrypt(&Mechanism::AesGcm(params), kek, sealed).map(Zeroizing::new)
        });
        match result {
            Err(HsmError::Integrity(_)) => Err(HsmError::Integrity(format!("{record_id}: tag mismatch"))),
            other => other,
        }
    }

    /// The ECDSA P-256 key pair labelled `label`, held natively by the token (private half
    /// sensitive and non-extractable), made if absent. Returns the SEC1 uncompressed point.
    pub fn p256_public_key(&self, label: &str) -> Result<Vec<u8>, HsmError> {
        const P256_OID: [u8; 10] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
        let point = self.run_writing("p256_key", |_, session| {
            let find = |class| {
                session.find_objects(&[
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
            };
            let public = match find(ObjectClass::PUBLIC_KEY)?.first() {
                Some(h) => *h,
                None => {
                    let public = [
                        Attribute::Token(true),
                        Attribute::Verify(true),
                        Attribute::EcParams(P256_OID.to_vec()),
                        Attribute::Label(label.as_bytes().to_vec()),
                    ];
                    let private = [
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Sign(true),
                        Attribute::Label(label.as_bytes().to_vec()),
                    ];
                    session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?.0
                }
            };
            let attrs = session.get_attributes(public, &[cryptoki::object::AttributeType::EcPoint])?;
            Ok(attrs
                .into_iter()
                .find_map(|a| if let Attribute::EcPoint(p) = a { Some(p) } else { None })
                .unwrap_or_default())
        })?;
        // CKA_EC_POINT is a DER OCTET STRING around the SEC1 point.
        match point.as_slice() {
            [0x04, 0x41, rest @ ..] if rest.len() == 65 && rest[0] == 0x04 => Ok(rest.to_vec()),
            p if p.len() == 65 && p[0] == 0x04 => Ok(p.to_vec()),
            _ => Err(HsmError::Integrity(format!("{label}: unexpected EC point encoding"))),
        }
    }

    /// [`Hsm::p256_sign`] as a DER `ECDSA-Sig-Value`, as CMS and X.509 carry it.
    pub fn p256_sign_der(&self, label: &str, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError> {
        ecdsa_der(&self.p256_sign(label, digest)?)
    }

    /// ECDSA (`CKM_ECDSA`) over a SHA-256 digest with the P-256 key `label`; raw `r ‖ s`.
    pub fn p256_sign(&self, label: &str, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError> {
        self.run(|_, session| {
            let key = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])?
                .first()
                .copied()
                .ok_or(CkError::Pkcs11(RvError::KeyHandleInvalid, cryptoki::context::Function::Sign))?;
            session.sign(&Mechanism::Ecdsa, key, digest)
        })
    }

    /// Run one PKCS#11 operation with a pooled session, applying the recovery policy.
    fn run<T>(&self, op: impl Fn(&Context, &Session) -> Result<T, CkError>) -> Result<T, HsmError> {
        self.run_named("other", op)
    }

    /// [`Hsm::run`], timed under the operation name `name`.
    fn run_named<T>(&self, name: &str, op: impl Fn(&Context, &Session) -> Result<T, CkError>) -> Result<T, HsmError> {
        self.run_policy(name, false, op)
    }

    /// [`Hsm::run_named`] for an operation that creates or destroys token objects (a KEK
    /// version, a P-256 key). A token can refuse to store objects while it serves every
    /// other call — SoftHSM's token directory read-only under the unit's
    /// `ProtectSystem=strict`, a full token — and then answers with a general or device
    /// error. If the token still answers a read right after, the refusal is the write's
    /// alone: reported as a setup problem, and the context stays in service instead of
    /// being retired (which would take the node out of service for nothing).
    fn run_writing<T>(&self, name: &str, op: impl Fn(&Context, &Session) -> Result<T, CkError>) -> Result<T, HsmError> {
        self.run_policy(name, true, op)
    }

    fn run_policy<T>(
        &self,
        name: &str,
        writes_token: bool,
        op: impl Fn(&Context, &Session) -> Result<T, CkError>,
    ) -> Result<T, HsmError> {
        let _timer = crate::metrics::Timer::start(crate::metrics::METRICS.hsm_duration.with_label_values(&[name]));
        let ctx = self.live.read().ok().and_then(|l| l.clone()).ok_or_else(|| HsmError::Unavailable {
            reason: "re-initialising after a device error".into(),
            retry_after: self.retry_after(),
        })?;
        let mut session = ctx.take();
        let mut last = None;
        for _attempt in 0..3 {
            match op(&ctx, &session) {
                Ok(v) => {
                    ctx.give_back(session);
                    return Ok(v);
                }
                Err(e) => {
                    let recovered = match classify(&e) {
                        Recovery::Relogin => relogin(&session, &self.pin).is_ok(),
                        Recovery::Reresolve => ctx.resolve_keks(&session).is_ok(),
                        Recovery::ReplaceSession => match ctx.open_session(&self.pin) {
                            // Open the new session before dropping the old one: closing the
                            // last open session would log the application out.
                            Ok(fresh) => {
                                drop(std::mem::replace(&mut session, fresh));
                                true
                            }
                            Err(_) => false,
                        },
                        Recovery::Data => {
                            ctx.give_back(session);
                            return Err(HsmError::Integrity(e.to_string()));
                        }
                        Recovery::Device if writes_token && ctx.find_keks(&session, &ctx.kek_label).is_ok() => {
                            ctx.give_back(session);
                            return Err(HsmError::Setup(format!(
                                "the token refused to store or remove an object ({e}) but answers otherwise: \
                                 is its storage writable by the service (SoftHSM: the token directory in \
                                 ReadWritePaths=, see docs/operating.md) and not full?"
                            )));
                        }
                        Recovery::Device => false,
                    };
                    last = Some(e);
                    if !recovered {
                        break;
                    }
                }
            }
        }
        let reason = last.map(|e| e.to_string()).unwrap_or_default();
        tracing::warn!(error = %reason, "HSM call failed; retiring the PKCS#11 context");
        ctx.give_back(session);
        self.retire(&ctx);
        Err(HsmError::Unavailable { reason, retry_after: self.retry_after() })
    }

    fn retire(&self, ctx: &Arc<Context>) {
        let mut live = match self.live.write() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        if live.as_ref().is_some_and(|l| Arc::ptr_eq(l, ctx)) {
            let old = live.take();
            if let Ok(mut r) = self.retired.lock() {
                *r = old;
            }
        }
    }

    /// Attempt a re-initialisation if the context is retired and the rate limit allows.
    /// Returns true if a live context exists afterwards.
    pub fn try_reinit(&self) -> bool {
        let Ok(_guard) = self.reinit_guard.lock() else { return false };
        if self.is_ready() {
            return true;
        }
        {
            let Ok(mut last) = self.last_attempt.lock() else { return false };
            if last.is_some_and(|t| t.elapsed() < self.cfg.reinit_interval) {
                return false;
            }
            *last = Some(Instant::now());
        }
        // Finalize the retired context once nobody is using it any more.
        let old = self.retired.lock().ok().and_then(|mut r| r.take());
        if let Some(old) = old {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(ctx) => {
                        ctx.shutdown();
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still_shared) => {
                        if let Ok(mut r) = self.retired.lock() {
                            *r = Some(still_shared);
                        }
                        return false;
                    }
                }
            }
        }
        match Context::open(&self.cfg, &self.module, &self.pin, true) {
            Ok(ctx) => {
                if let Ok(mut live) = self.live.write() {
                    *live = Some(Arc::new(ctx));
                }
                self.reinits.fetch_add(1, Ordering::Relaxed);
                crate::metrics::METRICS.hsm_reinitialisations.inc();
                tracing::info!("HSM re-initialised");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "HSM re-initialisation failed; will retry");
                false
            }
        }
    }
}

impl Wrapper for Hsm {
    fn wrap(&self, owner: &str, kind: SecretKind, secret: &[u8]) -> Result<Vec<u8>, HsmError> {
        Hsm::wrap(self, owner, kind, secret)
    }
    fn unwrap(&self, owner: &str, kind: SecretKind, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        Hsm::unwrap(self, owner, kind, blob)
    }
    fn current_version(&self) -> Option<u32> {
        self.current_kek_version()
    }
    fn add_version(&self) -> Result<u32, HsmError> {
        self.add_kek_version()
    }
    fn destroy_versions_below(&self, version: u32) -> Result<Vec<u32>, HsmError> {
        self.destroy_kek_versions_below(version)
    }
}

impl Drop for Hsm {
    fn drop(&mut self) {
        let live = self.live.write().ok().and_then(|mut l| l.take());
        for ctx in [live, self.retired.lock().ok().and_then(|mut r| r.take())].into_iter().flatten() {
            if let Ok(ctx) = Arc::try_unwrap(ctx) {
                ctx.shutdown();
            }
        }
    }
}

/// A KEK version: AES-256 on the token, private, sensitive, never extractable; the
/// version is its CKA_ID (4 bytes, big-endian).
fn kek_template(label: &str, version: u32) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(version.to_be_bytes().to_vec()),
    ]
}

fn aad(record_id: &str, kind: SecretKind, version: u32) -> Vec<u8> {
    let kind = kind.label();
    let mut aad = Vec::with_capacity(2 + record_id.len() + 2 + kind.len() + 4);
    aad.extend_from_slice(&(record_id.len() as u16).to_be_bytes());
    aad.extend_from_slice(record_id.as_bytes());
    aad.extend_from_slice(&(kind.len() as u16).to_be_bytes());
    aad.extend_from_slice(kind);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn relogin(session: &Session, pin: &str) -> Result<(), CkError> {
    match session.login(UserType::User, Some(&AuthPin::from(pin.to_owned()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Context {
    /// `require_kek`: fail if the token has no KEK (the daemon); `hsm init` passes false.
    fn open(cfg: &HsmConfig, module: &Pkcs11, pin: &str, require_kek: bool) -> Result<Context, HsmError> {
        let unavailable = |what: &str, e: CkError| HsmError::Unavailable {
            reason: format!("{what}: {e}"),
            retry_after: cfg.reinit_interval,
        };
        let pkcs11 = module.clone();
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(unavailable("C_Initialize", e)),
        }
        let finalize_on_err = |e: HsmError| {
            let _ = pkcs11.clone().finalize();
            e
        };
        let slot = find_slot(&pkcs11, &cfg.token_label).map_err(&finalize_on_err)?;
        let ctx = Context {
            pkcs11: pkcs11.clone(),
            slot,
            pool: Mutex::new(Vec::with_capacity(cfg.sessions)),
            returned: Condvar::new(),
            keks: RwLock::new(HashMap::new()),
            current_kek: std::sync::atomic::AtomicU32::new(0),
            kek_label: cfg.kek_label.clone(),
        };
        let mut sessions = Vec::with_capacity(cfg.sessions);
        for _ in 0..cfg.sessions {
            match ctx.open_session(pin) {
                Ok(s) => sessions.push(s),
                Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLocked | RvError::PinExpired, _)) => {
                    drop(sessions);
                    return Err(finalize_on_err(HsmError::Setup(format!(
                        "HSM login to token `{}` refused: wrong PIN or PIN locked",
                        cfg.token_label
                    ))));
                }
                Err(e) => {
                    drop(sessions);
                    return Err(finalize_on_err(unavailable("C_OpenSession/C_Login", e)));
                }
            }
        }
        let mut ctx = ctx;
        let versions = match ctx.find_keks(&sessions[0], &cfg.kek_label) {
            Ok(v) => v,
            Err(e) => {
                drop(sessions);
                return Err(finalize_on_err(unavailable("finding KEKs", e)));
            }
        };
        ctx.current_kek = std::sync::atomic::AtomicU32::new(versions.keys().copied().max().unwrap_or(0));
        if require_kek && ctx.current() == 0 {
            drop(sessions);
            return Err(finalize_on_err(HsmError::Setup(format!(
                "token `{}` has no KEK labelled `{}`; run `mcsd hsm init` first",
                cfg.token_label, cfg.kek_label
            ))));
        }
        *ctx.keks.get_mut().unwrap_or_else(|p| p.into_inner()) = versions;
        *ctx.pool.get_mut().unwrap_or_else(|p| p.into_inner()) = sessions;
        Ok(ctx)
    }

    fn open_session(&self, pin: &str) -> Result<Session, CkError> {
        let s = self.pkcs11.open_rw_session(self.slot)?;
        relogin(&s, pin)?;
        Ok(s)
    }

    fn find_keks(&self, session: &Session, label: &str) -> Result<HashMap<u32, ObjectHandle>, CkError> {
        let handles = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(label.as_bytes().to_vec())])?;
        let mut out = HashMap::new();
        for h in handles {
            let attrs = session.get_attributes(h, &[cryptoki::object::AttributeType::Id])?;
            for a in attrs {
                if let Attribute::Id(id) = a
                    && let Ok(v) = <[u8; 4]>::try_from(id.as_slice())
                {
                    out.insert(u32::from_be_bytes(v), h);
                }
            }
        }
        Ok(out)
    }

    fn current(&self) -> u32 {
        self.current_kek.load(Ordering::Acquire)
    }

    fn resolve_keks(&self, session: &Session) -> Result<(), CkError> {
        let found = self.find_keks(session, &self.kek_label)?;
        *self.keks.write().map_err(|_| CkError::InvalidValue)? = found;
        Ok(())
    }

    fn kek(&self, version: u32) -> Option<ObjectHandle> {
        self.keks.read().ok()?.get(&version).copied()
    }

    /// Take a session from the pool, waiting for one if all are in use.
    fn take(&self) -> Session {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(s) = pool.pop() {
                crate::metrics::METRICS.hsm_sessions_in_use.inc();
                return s;
            }
            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give_back(&self, s: Session) {
        crate::metrics::METRICS.hsm_sessions_in_use.dec();
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        self.returned.notify_one();
    }

    /// Close every session and finalize the library.
    fn shutdown(self) {
        let Context { pkcs11, pool, .. } = self;
        drop(pool);
        let _ = pkcs11.finalize();
    }
}

fn load_module(cfg: &HsmConfig) -> Result<Pkcs11, HsmError> {
    Pkcs11::new(&cfg.module)
        .map_err(|e| HsmError::Setup(format!("loading PKCS#11 module {}: {e}", cfg.module.display())))
}

fn find_slot(pkcs11: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let slots = pkcs11.get_slots_with_initialized_token().map_err(|e| HsmError::Unavailable {
        reason: format!("C_GetSlotList: {e}"),
        retry_after: Duration::from_secs(1),
    })?;
    for slot in slots {
        if let Ok(info) = pkcs11.get_token_info(slot)
            && info.label().trim_end() == label
        {
            return Ok(slot);
        }
    }
    Err(HsmError::Setup(format!("no initialized token labelled `{label}`")))
}

/// Signing with a P-256 key the token holds natively (the TSA's `p256` mode): what the
/// layers above need of [`Hsm`], so they can be tested without a token.
pub trait NativeP256: Send + Sync {
    /// The SEC1 uncompressed point of key `label` (made if absent).
    fn p256_public_key(&self, label: &str) -> Result<Vec<u8>, HsmError>;
    /// DER ECDSA over a SHA-256 digest.
    fn p256_sign_der(&self, label: &str, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError>;
}

impl NativeP256 for Hsm {
    fn p256_public_key(&self, label: &str) -> Result<Vec<u8>, HsmError> {
        Hsm::p256_public_key(self, label)
    }
    fn p256_sign_der(&self, label: &str, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError> {
        Hsm::p256_sign_der(self, label, digest)
    }
}

/// DER `ECDSA-Sig-Value` from raw `r ‖ s` (P-256: 64 bytes).
fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, HsmError> {
    use der::Encode;
    let bad = |why: String| HsmError::Integrity(format!("ECDSA signature: {why}"));
    if raw.len() != 64 {
        return Err(bad(format!("{} bytes", raw.len())));
    }
    #[derive(der::Sequence)]
    struct Sig<'a> {
        r: der::asn1::UintRef<'a>,
        s: der::asn1::UintRef<'a>,
    }
    let int = |b| der::asn1::UintRef::new(b).map_err(|e| bad(e.to_string()));
    Sig { r: int(&raw[..32])?, s: int(&raw[32..])? }.to_der().map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod ecdsa_tests {
    #[test]
    fn raw_ecdsa_signatures_become_der_integers() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80; // high bit: needs a leading zero
        raw[63] = 1;
        let der = super::ecdsa_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, der[1], 0x02, 0x21, 0x00]);
        assert!(super::ecdsa_der(&[0u8; 10]).is_err());
    }
}
