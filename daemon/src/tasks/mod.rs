//! Scan tasks: the QR flows of API.md "Scan tasks", as a durable state machine.
//!
//! ```text
//!   pending ──claim──▶ claimed ──cosign──▶ claimed(cosigned) ──complete──▶ completed
//!      │                  │                                                 ▲
//!      │                  └──────────── reject ──▶ rejected                 │
//!      ├── reject ──▶ rejected                          encrypt: claim ─────┘
//!      └── (time) ──▶ expired   (any unfinished state, at every step and by the sweeper)
//! ```
//!
//! Every transition is one store transaction that compare-and-swaps the task's `rev`, so
//! two phones racing for a task cannot both win, and is flushed before the reply. A
//! transition that carries out a request writes that request's audit entry in the same
//! transaction ([`crate::audit::RequestEntry`]); a `csr` task's completion installs the
//! certificate in it too. So a crash leaves either nothing or the whole step.
//!
//! Co-signing: the server half is computed first and given out only once a transition
//! recording its nonce point committed. A phone whose answer was lost (a crash, a broken
//! connection) co-signs again with a fresh nonce; a nonce point already answered is
//! refused, so the daemon never releases two server halves for one nonce — which would
//! let anyone holding both and the final signatures solve for the phone's share. The
//! server computes `e` from the task's data and the key's Z at claim; `complete` verifies
//! the final signature against that `e` before accepting it. Secret task data (an
//! `encrypt` task's plaintext, a `decrypt` task's result) is stored only HSM-wrapped, and
//! a decrypt result is deleted when the creating gateway takes it — exactly once.
//!
//! A gateway's `create` is bounded per platform: its `callback_url` must pass the
//! platform's target rules (`callbacks::target`), and its open tasks may not pass the
//! platform's quotas on count and stored bytes (`429 rate_limited` with `Retry-After`; the
//! store checks and inserts in one step, so a refusal writes nothing).

pub mod callbacks;
use callbacks::CallbackBody;
mod csr;
mod sealing;
use sealing::dry_run;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sm2_2p::{AffinePoint, Signature};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::audit::{Audit, Event, RequestEntry};
use crate::clock::Clock;
use crate::config::TasksConfig;
use crate::hsm::{HsmError, Wrapper};
use crate::keys::certificates::{CertificateError, certificate_request, certificate_request_info, parse_issued};
use crate::keys::delegations::APPROVED_USE;
use crate::keys::{KeyError, KeyService, PinProof, SignMode, SignOutput};
use crate::model::delegation::{DelegationKind, DelegationStatus};
use crate::model::inbox::InboxEvent;
use crate::model::key::{KeyRecord, KeyStatus, SubjectKind};
use crate::model::secret::SecretKind;
use crate::model::task::{
    ApprovalStatus, CallbackRecord, TaskApproval, TaskData, TaskDisplay, TaskKind, TaskRecord, TaskResult, TaskStatus,
};
use crate::plugins::PluginError;
use crate::plugins::ca::{CaAdapter, IssueRequest};
use crate::store::{InsertOutcome, OpenQuota, OpenUsage, Storage, StoreError, Transition, TransitionOutcome};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task not found")]
    NotFound,
    #[error("task token invalid")]
    TokenInvalid,
    #[error("task expired")]
    Expired,
    #[error("{0}")]
    State(String),
    #[error("key not authorised on platform {0}")]
    PlatformNotAuthorized(String),
    #[error("the ciphertext was encrypted to another certificate")]
    CertMismatch,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Plugin(PluginError),
    #[error(transparent)]
    Seal(#[from] crate::seals::SealError),
    /// The platform's quota on open tasks is used up; retry after the given seconds.
    #[error("{message}")]
    QuotaExceeded { message: String, retry_after_secs: u64 },
    /// The task alone is larger than the platform's whole open-bytes quota.
    #[error("the task takes {bytes} bytes, more than the platform's open-bytes quota of {limit}")]
    TooLarge { bytes: u64, limit: u64 },
}

impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        TaskError::Key(KeyError::Store(e))
    }
}

impl From<HsmError> for TaskError {
    fn from(e: HsmError) -> Self {
        TaskError::Key(KeyError::Hsm(e))
    }
}

impl From<CertificateError> for TaskError {
    fn from(e: CertificateError) -> Self {
        TaskError::Key(KeyError::Internal(e.to_string()))
    }
}

/// Validated inputs of a new task.
pub enum NewTaskData {
    Login {
        challenge: Vec<u8>,
    },
    Sign {
        message: Vec<u8>,
        cms: bool,
    },
    Decrypt {
        ciphertext: Vec<u8>,
        recipient_cert_serial: Option<String>,
        recipient_public_key: Option<AffinePoint>,
    },
    /// A GB/T 35275 digital envelope to open (its SM2 key-transport recipients).
    Envelope {
        envelope: mcs_pdfseal::gbt35275::Envelope,
    },
    Encrypt {
        plaintext: Zeroizing<Vec<u8>>,
        envelope: bool,
    },
    PdfSeal {
        pdf: Vec<u8>,
        seal_id: Option<String>,
        placement: Value,
    },
    PdfUnseal {
        pdf: Vec<u8>,
    },
}

pub struct NewTask {
    pub ttl_secs: Option<u64>,
    pub display: TaskDisplay,
    pub data: NewTaskData,
    pub callback_url: Option<String>,
    /// Send it to this key's phones' inboxes; only they may claim it.
    pub to_key_id: Option<String>,
}

pub struct CreatedTask {
    pub task_id: String,
    pub token: String,
    pub qr: String,
    pub expires_at: i64,
}

/// What a phone gets back from `claim`.
pub enum Claimed {
    Digest(String),
    /// `pdf_seal`: `e` and the DER signed attributes it is the digest of (the phone checks).
    SealDigest {
        e: String,
        to_be_signed: String,
    },
    /// `pdf_unseal`: `e` of the withdrawal statement, the seal's field and signer.
    UnsealDigest {
        e: String,
        field: String,
        signer: String,
    },
    Ciphertext(String),
    Completed,
    /// The owner must approve first: 202 with the approval's id.
    AwaitingApproval(String),
    /// A deferred `pdf_seal` task, claimed: the gateway places the seal first (202).
    AwaitingPlacement,
}

/// A gateway's view of a task's outcome.
pub struct Outcome {
    pub status: TaskStatus,
    pub result: Option<TaskResult>,
    pub error: Option<String>,
}

/// How often a long-poll on a store several nodes share re-reads its task: a completion on
/// another node is seen within this.
const SHARED_POLL: Duration = Duration::from_millis(200);

pub struct TaskService {
    store: Arc<dyn Storage>,
    hsm: Arc<dyn Wrapper>,
    keys: Arc<KeyService>,
    plugins: Arc<dyn CaAdapter>,
    seals: Arc<crate::seals::SealService>,
    audit: Arc<Audit>,
    cfg: TasksConfig,
    /// Every expiry, timestamp and retention here reads this clock.
    clock: Arc<dyn Clock>,
    /// Woken on every transition: long-polls re-check their task.
    changed: Notify,
    /// Woken when a callback is queued.
    pub(crate) outbox: Notify,
}

/// DER of the GB/T 35275 signed attributes of a detached signature over `message`.
fn cms_signed_attributes(message: &[u8], at: i64) -> Result<Vec<u8>, TaskError> {
    let invalid = |e: mcs_pdfseal::Error| TaskError::Key(KeyError::Internal(format!("CMS: {e}")));
    let attrs = mcs_pdfseal::gbt35275::signed_attributes(message, at.max(0) as u64).map_err(invalid)?;
    mcs_pdfseal::cms::to_be_signed(&attrs).map_err(invalid)
}

/// The GB/T 35275 detached `SignedData` of `message` signed by `key` at `at` with `sig`:
/// the key's certificate and chain included.
fn cms_signature(key: &KeyRecord, message: &[u8], at: i64, sig: &Signature) -> Result<Vec<u8>, TaskError> {
    let invalid = |e: String| TaskError::Key(KeyError::Internal(format!("CMS: {e}")));
    let cert = key.certificate.as_ref().ok_or_else(|| invalid("no certificate".into()))?;
    let der = B64.decode(&cert.der_b64).map_err(|e| invalid(e.to_string()))?;
    let chain = cert
        .chain_b64
        .iter()
        .map(|c| B64.decode(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    let attrs =
        mcs_pdfseal::gbt35275::signed_attributes(message, at.max(0) as u64).map_err(|e| invalid(e.to_string()))?;
    mcs_pdfseal::gbt35275::detached_signed_data(&der, &chain, attrs, &sig.to_der()).map_err(|e| invalid(e.to_string()))
}

/// What a decrypt task keeps of an envelope: the content only up to `max_content` bytes.
fn envelope_task(envelope: mcs_pdfseal::gbt35275::Envelope, max_content: usize) -> crate::model::task::EnvelopeTask {
    let tail = envelope.tail().map(hex::encode);
    let content = envelope.content.as_ref().filter(|c| c.len() <= max_content).map(|c| B64.encode(c));
    let recipients = envelope
        .recipients
        .iter()
        .map(|r| crate::model::task::EnvelopeRecipient {
            issuer: B64.encode(&r.issuer),
            serial: hex::encode(&r.serial),
            encrypted_key: B64.encode(&r.encrypted_key),
        })
        .collect();
    crate::model::task::EnvelopeTask { recipients, iv: hex::encode(envelope.iv), content, tail }
}

/// A GB/T 35275 envelope of `plaintext` to `cert` (whose key is `public`): a fresh SM4 key
/// and IV, the key SM2-encrypted (DER `SM2Cipher`).
fn seal_envelope(cert: &[u8], public: &AffinePoint, plaintext: &[u8]) -> Result<Vec<u8>, TaskError> {
    let mut key = Zeroizing::new([0u8; 16]);
    let mut iv = [0u8; 16];
    getrandom::fill(&mut key[..])
        .and_then(|()| getrandom::fill(&mut iv))
        .map_err(|e| TaskError::Key(KeyError::Internal(format!("OS RNG: {e}"))))?;
    let encrypted_key = sm2_2p::encrypt(public, &key[..]).to_der();
    mcs_pdfseal::gbt35275::envelope(cert, &encrypted_key, &key, &iv, plaintext)
        .map_err(|e| TaskError::Key(KeyError::Internal(format!("envelope: {e}"))))
}

/// An envelope's content-encryption key, as the phone decrypted it, checked against the
/// content (or its last blocks): `Ok(Some(plaintext))` with the content opened, `Ok(None)`
/// when the task holds no content (the result is the key).
fn open_with_key(
    envelope: &crate::model::task::EnvelopeTask,
    key: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, TaskError> {
    let wrong = || TaskError::Invalid("the key does not open the envelope's content".into());
    let key: [u8; 16] = key.try_into().map_err(|_| TaskError::Invalid("an SM4 key is 16 bytes".into()))?;
    let iv: [u8; 16] = hex::decode(&envelope.iv).ok().and_then(|v| v.try_into().ok()).ok_or_else(wrong)?;
    if let Some(tail) = &envelope.tail {
        let tail: [u8; 32] = hex::decode(tail).ok().and_then(|v| v.try_into().ok()).ok_or_else(wrong)?;
        if !mcs_pdfseal::gbt35275::key_opens_tail(&key, &tail) {
            return Err(wrong());
        }
    }
    match &envelope.content {
        None => Ok(None),
        Some(content) => {
            let content = B64.decode(content).map_err(|_| wrong())?;
            let plain = mcs_pdfseal::gbt35275::sm4_cbc_decrypt(&key, &iv, &content).ok_or_else(wrong)?;
            Ok(Some(Zeroizing::new(plain)))
        }
    }
}

fn random_hex(n: usize) -> Result<String, TaskError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| TaskError::Key(KeyError::Internal(format!("OS RNG: {e}"))))?;
    Ok(hex::encode(b))
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// RFC 3986 percent-encoding (unreserved characters as they are). The domain writes the
/// QR string itself: the wire crate's reader (`mcs_api::ScanCode`, which every phone
/// uses) stays at the edge, and the end-to-end tests read every QR this writes with it.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The QR string: `mcs://task?v=1&id=<task id>&token=<token>&url=<daemon URL, percent-encoded>`.
pub fn qr_string(public_url: &str, task_id: &str, token: &str) -> String {
    format!("mcs://task?v=1&id={task_id}&token={token}&url={}", percent_encode(public_url))
}

/// Whole PDFs and task plaintexts (up to the body limit) pass through here: always the
/// blocking pool ([`crate::os::secret_work_pooled`], which wipes the stack they were on),
/// never inline on an async worker.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TaskError> + Send + 'static,
) -> Result<T, TaskError> {
    crate::os::secret_work_pooled(f)
        .await
        .map_err(|e| TaskError::Key(KeyError::Internal(format!("blocking task: {e}"))))?
}

impl TaskService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Storage>,
        hsm: Arc<dyn Wrapper>,
        keys: Arc<KeyService>,
        plugins: Arc<dyn CaAdapter>,
        seals: Arc<crate::seals::SealService>,
        audit: Arc<Audit>,
        cfg: TasksConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        TaskService {
            store,
            hsm,
            keys,
            plugins,
            seals,
            audit,
            cfg,
            clock,
            changed: Notify::new(),
            outbox: Notify::new(),
        }
    }

    /// The clock the service reads (the callback worker reads it too).
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn config(&self) -> &TasksConfig {
        &self.cfg
    }

    pub fn store(&self) -> &dyn Storage {
        &*self.store
    }

    /// A gateway creates a task for its platform.
    pub async fn create(&self, platform: &str, req: NewTask) -> Result<CreatedTask, TaskError> {
        let ttl = match req.ttl_secs {
            None => self.cfg.default_ttl.as_secs(),
            Some(t) if t >= 1 && t <= self.cfg.max_ttl.as_secs() => t,
            Some(_) => return Err(TaskError::Invalid(format!("ttl_secs must be 1..={}", self.cfg.max_ttl.as_secs()))),
        };
        let rules = self.cfg.platform(platform);
        if let Some(url) = &req.callback_url {
            let parsed = crate::model::callback_target::CallbackUrl::parse(url)
                .map_err(|e| TaskError::Invalid(format!("callback_url {e}")))?;
            rules.callback.check_url(&parsed).map_err(|e| TaskError::Invalid(format!("callback_url refused: {e}")))?;
        }
        let quota = OpenQuota { max_tasks: rules.max_open_tasks, max_bytes: rules.max_open_bytes };
        // A platform at its task quota is refused before any work (the insert checks again,
        // with the task's size, in one step with writing it).
        let usage = self.store.open_usage(platform)?;
        if usage.tasks >= quota.max_tasks {
            return Err(self.over_quota(platform, quota, usage, 0));
        }
        let id = format!("t_{}", random_hex(12)?);
        let token = random_hex(16)?;
        let (kind, data, secret) = match req.data {
            NewTaskData::Login { challenge } => {
                (TaskKind::Login, TaskData::Login { challenge: B64.encode(challenge) }, None)
            }
            NewTaskData::Sign { message, cms } => {
                (TaskKind::Sign, TaskData::Sign { message: B64.encode(message), cms, signing_time: None }, None)
            }
            NewTaskData::Decrypt { ciphertext, recipient_cert_serial, recipient_public_key } => (
                TaskKind::Decrypt,
                TaskData::Decrypt {
                    ciphertext: B64.encode(ciphertext),
                    recipient_cert_serial,
                    recipient_public_key: recipient_public_key.map(|p| sm2_2p::point_to_hex(&p)),
                    envelope: None,
                },
                None,
            ),
            NewTaskData::Envelope { envelope } => {
                let envelope = envelope_task(envelope, self.cfg.max_plaintext_bytes);
                let data = TaskData::Decrypt {
                    ciphertext: String::new(),
                    recipient_cert_serial: None,
                    recipient_public_key: None,
                    envelope: Some(envelope),
                };
                (TaskKind::Decrypt, data, None)
            }
            NewTaskData::Encrypt { plaintext, envelope } => {
                (TaskKind::Encrypt, TaskData::Encrypt { envelope }, Some(plaintext))
            }
            NewTaskData::PdfUnseal { pdf } => {
                let (field, es_id, signer) = self.seals.withdrawable(&pdf)?;
                let pdf_sha256 = hex::encode(Sha256::digest(&pdf));
                let data = TaskData::PdfUnseal { pdf: B64.encode(&pdf), field, es_id, signer, pdf_sha256 };
                (TaskKind::PdfUnseal, data, None)
            }
            NewTaskData::PdfSeal { pdf, seal_id, placement } => {
                // Refuse now what sealing would refuse later: a seal that cannot seal, a PDF
                // or placement the engine cannot use. The document is not touched.
                if let Some(id) = &seal_id {
                    let seal = self.seals.get(id)?;
                    self.seals.check_seal(&seal)?;
                }
                // Deferred: the PDF must open and have a first page; the place comes later.
                let parsed = match crate::seals::is_deferred(&placement) {
                    true => mcs_pdfseal::pdf::Placement::At { page: 1, x: 0.0, y: 0.0 },
                    false => crate::seals::parse_placement(&placement).map_err(TaskError::Invalid)?,
                };
                let probe = pdf.clone();
                blocking(move || dry_run(&probe, &parsed)).await?;
                (
                    TaskKind::PdfSeal,
                    TaskData::PdfSeal {
                        pdf: B64.encode(pdf),
                        seal_id,
                        placement,
                        chosen_seal: None,
                        signing_time: None,
                        dss_crls: Vec::new(),
                    },
                    None,
                )
            }
        };
        // The phones of an addressed key, before anything is written: a key this platform
        // may not use is refused (the same answer whether or not it exists).
        let recipients = match &req.to_key_id {
            Some(key_id) => Some(self.recipients(key_id, platform, kind)?),
            None => None,
        };
        let blob = match secret {
            Some(plaintext) => {
                let (hsm, id) = (self.hsm.clone(), id.clone());
                Some(blocking(move || Ok(hsm.wrap(&id, SecretKind::TaskInput, &plaintext)?)).await?)
            }
            None => None,
        };
        let mut task =
            new_task(&id, kind, platform.to_owned(), &token, req.display, data, req.callback_url, self.now(), ttl);
        task.to_key_id = req.to_key_id.clone();
        let secrets: Vec<(SecretKind, &[u8])> =
            blob.as_deref().map(|b| vec![(SecretKind::TaskInput, b)]).unwrap_or_default();
        let inserted = match RequestEntry::pending() {
            // The creating request's entry goes in with the task.
            Some(req) => {
                let ev = request_event(&req, &task);
                let insert = |a| self.store.insert_task(&task, &secrets, Some(quota), Some(&a));
                self.audit.append_with(ev, Some(&req), insert, |o| *o == InsertOutcome::Done).await?
            }
            None => self.store.insert_task(&task, &secrets, Some(quota), None)?,
        };
        if let InsertOutcome::OverQuota { usage, task_bytes } = inserted {
            return Err(self.over_quota(platform, quota, usage, task_bytes));
        }
        self.store.flush().await?;
        if let Some(devices) = recipients {
            let item = InboxEvent::Task {
                task_id: task.id.clone(),
                token: token.clone(),
                kind,
                display: task.display.clone(),
                platform: platform.to_owned(),
            };
            // The task stands either way; a phone whose item was lost can still be shown
            // the QR code.
            let _ = self.keys.inbox().post_each(&devices, &item).await;
        }
        Ok(CreatedTask {
            qr: qr_string(&self.cfg.public_url, &id, &token),
            task_id: id,
            token,
            expires_at: task.expires_at,
        })
    }

    /// The answer to a creation the platform's quota refuses. `Retry-After`: by the
    /// earliest expiry among its open tasks, plus a sweep, at least one has finished.
    fn over_quota(&self, platform: &str, quota: OpenQuota, usage: OpenUsage, task_bytes: u64) -> TaskError {
        crate::metrics::METRICS.task_quota_refusals.inc();
        if task_bytes > quota.max_bytes {
            return TaskError::TooLarge { bytes: task_bytes, limit: quota.max_bytes };
        }
        let sweep = self.cfg.sweep_interval.as_secs() as i64;
        let retry_after_secs = usage.earliest_expiry.map_or(sweep, |at| (at - self.now()).max(0) + sweep).max(1) as u64;
        let message = if usage.tasks >= quota.max_tasks {
            format!("platform {platform} has {} open tasks, its quota; retry when some have finished", usage.tasks)
        } else {
            format!(
                "platform {platform}'s open tasks hold {} bytes; this one ({task_bytes} bytes) would pass its quota of {}",
                usage.bytes, quota.max_bytes
            )
        };
        tracing::info!(%platform, open_tasks = usage.tasks, open_bytes = usage.bytes, task_bytes, retry_after_secs, "task refused by quota");
        TaskError::QuotaExceeded { message, retry_after_secs }
    }

    /// A task as it is now, with no access check: for the audit entry of a request that
    /// named it (whatever the request's outcome), never for an answer.
    pub fn for_audit(&self, id: &str) -> Option<TaskRecord> {
        self.store.task(id).ok().flatten()
    }

    /// The creating gateway's view. Other platforms get `not_found`.
    pub fn for_gateway(&self, platform: &str, id: &str) -> Result<TaskRecord, TaskError> {
        match self.store.task(id)? {
            Some(t) if t.platform == platform => Ok(t),
            _ => Err(TaskError::NotFound),
        }
    }

    /// A task a phone names with its token; expired on access if overdue.
    pub async fn for_phone(&self, id: &str, token: &str) -> Result<TaskRecord, TaskError> {
        let task = self.store.task(id)?.ok_or(TaskError::NotFound)?;
        if !bool::from(token_hash(token).as_bytes().ct_eq(task.token_sha256.as_bytes())) {
            return Err(TaskError::TokenInvalid);
        }
        if !task.status.is_final() && self.now() >= task.expires_at {
            self.expire(task).await?;
            return Err(TaskError::Expired);
        }
        if task.status == TaskStatus::Expired {
            return Err(TaskError::Expired);
        }
        Ok(task)
    }

    /// Write a transition that is not itself a request's outcome (an expiry on access, a
    /// result handed out) and flush it; `Raced` becomes `task_state`.
    async fn commit(&self, t: Transition<'_>) -> Result<(), TaskError> {
        let queued_callback = t.callback.is_some();
        let outcome = self.store.transition(t)?;
        self.settle(outcome, queued_callback).await
    }

    /// Write the transition that carries out the request being served, with the request's
    /// audit entry in the same store transaction, and flush it.
    async fn commit_request(&self, mut t: Transition<'_>) -> Result<(), TaskError> {
        let Some(req) = RequestEntry::pending() else { return self.commit(t).await };
        let queued_callback = t.callback.is_some();
        let ev = request_event(&req, t.task);
        let store = &self.store;
        let outcome = self
            .audit
            .append_with(
                ev,
                Some(&req),
                |entry| {
                    t.audit = Some(entry);
                    store.transition(t)
                },
                |o| *o == TransitionOutcome::Done,
            )
            .await?;
        self.settle(outcome, queued_callback).await
    }

    async fn settle(&self, outcome: TransitionOutcome, queued_callback: bool) -> Result<(), TaskError> {
        match outcome {
            TransitionOutcome::Done => {}
            TransitionOutcome::Raced => return Err(TaskError::State("the task changed meanwhile".into())),
            TransitionOutcome::GrantGone => {
                return Err(TaskError::PlatformNotAuthorized("(one-time grant used)".into()));
            }
            TransitionOutcome::KeyNotPending(Some(status)) => return Err(TaskError::Key(KeyError::Inactive(status))),
            TransitionOutcome::KeyNotPending(None) | TransitionOutcome::CertificateChanged(None) => {
                return Err(TaskError::Key(KeyError::NotFound("key")));
            }
            TransitionOutcome::CertificateChanged(Some(_)) => {
                return Err(TaskError::Key(KeyError::Conflict("the key's certificate changed meanwhile")));
            }
        }
        self.store.flush().await?;
        self.changed.notify_waiters();
        if queued_callback {
            self.outbox.notify_one();
        }
        Ok(())
    }

    fn next(&self, task: &TaskRecord) -> TaskRecord {
        let mut t = task.clone();
        t.rev += 1;
        t.updated_at = self.now();
        t
    }

    fn callback_for(&self, task: &TaskRecord) -> Option<CallbackRecord> {
        task.callback_url.as_ref().map(|url| CallbackRecord {
            task_id: task.id.clone(),
            url: url.clone(),
            attempts: 0,
            next_at_ms: self.now() * 1000,
            platform: task.platform.clone(),
            push: None,
        })
    }

    async fn expire(&self, task: TaskRecord) -> Result<(), TaskError> {
        let mut t = self.next(&task);
        t.status = TaskStatus::Expired;
        t.error = Some("task expired".into());
        let callback = self.callback_for(&t);
        match self
            .commit(Transition { delete_secrets: vec![SecretKind::TaskInput], callback, ..Transition::of(&t) })
            .await
        {
            Ok(()) | Err(TaskError::State(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// How the key is authorised on the task's platform: `Some(false)` by a standing grant,
    /// `Some(true)` only by a one-time grant, `None` not at all.
    /// A delegate with `approval: each_use` claimed: the task waits for the owner, who is
    /// told through the inbox.
    async fn ask_approval(
        &self,
        task: &TaskRecord,
        key: &KeyRecord,
        device_id: &str,
        asked: AskedBy<'_>,
    ) -> Result<Claimed, TaskError> {
        let mut t = self.next(task);
        t.status = TaskStatus::AwaitingApproval;
        t.key_id = Some(key.id.clone());
        t.device_id = Some(device_id.to_owned());
        let approval_id = TaskApproval::id_for(&task.id);
        let (approver_device, delegation_id, approver_key_id, seal_id, label) = match asked {
            AskedBy::Delegation(d) => (key.device_id.clone(), d.id.clone(), None, None, d.label.clone()),
            AskedBy::SealGrant { seal_id, approver_key_id } => {
                let approver = self.store.key(approver_key_id)?.filter(|k| k.status == KeyStatus::Active);
                let approver = approver.ok_or_else(|| {
                    TaskError::Key(KeyError::NoPermission("the seal's owner key cannot approve (not active)".into()))
                })?;
                (approver.device_id, String::new(), Some(approver.id), Some(seal_id.to_owned()), None)
            }
        };
        t.approval = Some(TaskApproval {
            id: approval_id.clone(),
            delegation_id,
            approver_key_id,
            seal_id,
            status: ApprovalStatus::Pending,
            decided_at: None,
        });
        self.commit_request(Transition::of(&t)).await?;
        let ask = InboxEvent::ApprovalRequest {
            approval_id: approval_id.clone(),
            task_id: task.id.clone(),
            display: task.display.clone(),
            platform: task.platform.clone(),
            delegate_label: label,
        };
        let _ = self.keys.inbox().post_each(std::slice::from_ref(&approver_device), &ask).await;
        Ok(Claimed::AwaitingApproval(approval_id))
    }

    /// The key whose owner decides `task`'s approval: a seal grant's seal owner, or else
    /// the task's own key.
    fn approver_of(&self, task: &TaskRecord, key: KeyRecord) -> Result<KeyRecord, TaskError> {
        match task.approval.as_ref().and_then(|a| a.approver_key_id.as_deref()) {
            Some(k) if k != key.id => Ok(self.store.key(k)?.ok_or(TaskError::Key(KeyError::NotFound("approval")))?),
            _ => Ok(key),
        }
    }

    /// The task an approval belongs to and the key whose owner decides it, for that owner or
    /// the phone that asked.
    pub fn approval_task(&self, approval_id: &str, device_id: &str) -> Result<(TaskRecord, KeyRecord), TaskError> {
        let not_found = || TaskError::Key(KeyError::NotFound("approval"));
        let task_id = TaskApproval::task_of(approval_id).ok_or_else(not_found)?;
        let task = self.store.task(&task_id)?.filter(|t| t.approval.as_ref().is_some_and(|a| a.id == approval_id));
        let task = task.ok_or_else(not_found)?;
        let key_id = task.key_id.clone().ok_or_else(not_found)?;
        let key = self.store.key(&key_id)?.ok_or_else(not_found)?;
        let approver = self.approver_of(&task, key)?;
        if approver.device_id != device_id && task.device_id.as_deref() != Some(device_id) {
            return Err(TaskError::Key(KeyError::DeviceMismatch));
        }
        Ok((task, approver))
    }

    /// The owner's decision (`approve` or `deny`, with its PIN proof): approved, the task is
    /// the delegate's again (`claimed`); denied, it is `rejected` (`approval_denied`).
    pub async fn decide_approval(
        &self,
        approval_id: &str,
        device_id: &str,
        approve: bool,
        proof: &str,
    ) -> Result<(), TaskError> {
        let (task, key) = self.approval_task(approval_id, device_id)?;
        if key.device_id != device_id {
            return Err(TaskError::Key(KeyError::DeviceMismatch));
        }
        // Expired with its task (swept already, or found so below): `task_expired`.
        if task.status == TaskStatus::Expired {
            return Err(TaskError::Expired);
        }
        if task.status != TaskStatus::AwaitingApproval {
            return Err(TaskError::State(format!("task is {}", status_str(task.status))));
        }
        if self.now() >= task.expires_at {
            self.expire(task).await?;
            return Err(TaskError::Expired);
        }
        let decision = if approve { "approve" } else { "deny" };
        let op = sm2_2p::Transcript::Approve { approval_id: approval_id.into(), decision: decision.into() };
        self.keys.owner_decides(&key.id, device_id, PinProof { op, proof }).await?;
        let mut t = self.next(&task);
        if let Some(a) = t.approval.as_mut() {
            a.status = if approve { ApprovalStatus::Approved } else { ApprovalStatus::Denied };
            a.decided_at = Some(self.now());
        }
        let callback = if approve {
            t.status = TaskStatus::Claimed;
            None
        } else {
            t.status = TaskStatus::Rejected;
            t.error = Some("approval_denied".into());
            self.callback_for(&t)
        };
        self.commit_request(Transition { callback, ..Transition::of(&t) }).await?;
        if let Some(delegate) = &task.device_id {
            let told = InboxEvent::ApprovalResult {
                approval_id: approval_id.to_owned(),
                task_id: task.id.clone(),
                decision: decision.to_owned(),
            };
            let _ = self.keys.inbox().post_each(std::slice::from_ref(delegate), &told).await;
        }
        Ok(())
    }

    /// The devices a task for `key_id` goes to: the owner and every delegate that may use
    /// the key for `kind` now. The key must be usable by `platform`.
    fn recipients(&self, key_id: &str, platform: &str, kind: TaskKind) -> Result<Vec<String>, TaskError> {
        let refused = || TaskError::PlatformNotAuthorized(format!("{platform} (to_key_id)"));
        let key = self.store.key(key_id)?.filter(|k| k.status == KeyStatus::Active).ok_or_else(refused)?;
        self.authorisation(&key, platform).ok_or_else(refused)?;
        let at = self.now();
        let mut devices = vec![key.device_id.clone()];
        for d in self.store.delegations_of_key(key_id)? {
            if d.status == DelegationStatus::Active
                && d.kind == DelegationKind::Delegate
                && d.valid_at(at)
                && d.allows(kind_str(kind))
                && let Some(device) = d.device_id
                && !devices.contains(&device)
            {
                devices.push(device);
            }
        }
        Ok(devices)
    }

    fn authorisation(&self, key: &KeyRecord, platform: &str) -> Option<bool> {
        let at = self.now();
        let grants: Vec<_> = key.platforms.iter().filter(|g| g.platform == platform && g.valid_at(at)).collect();
        if grants.iter().any(|g| !g.once) {
            Some(false)
        } else if grants.iter().any(|g| g.once) {
            Some(true)
        } else {
            None
        }
    }

    fn phone_task<'a>(task: &'a TaskRecord, device_id: &str) -> Result<&'a str, TaskError> {
        match (&task.device_id, &task.key_id) {
            (Some(d), Some(k)) if d == device_id => Ok(k),
            (Some(_), _) => Err(TaskError::Key(KeyError::DeviceMismatch)),
            _ => Err(TaskError::State(format!("task is {}", status_str(task.status)))),
        }
    }

    /// A phone claims a pending task with one of its keys.
    pub async fn claim(&self, id: &str, token: &str, key_id: &str, device_id: &str) -> Result<Claimed, TaskError> {
        let task = self.for_phone(id, token).await?;
        // A deferred pdf_seal claimed by this phone: waiting for the gateway's placement,
        // or placed (the digest of the revision the gateway chose).
        let mine = task.status == TaskStatus::Claimed
            && !task.cosigned
            && task.device_id.as_deref() == Some(device_id)
            && task.key_id.as_deref() == Some(key_id);
        if mine
            && task.approval.is_none()
            && let TaskData::PdfSeal { placement, .. } = &task.data
        {
            if crate::seals::is_deferred(placement) {
                return Ok(Claimed::AwaitingPlacement);
            }
            if let Some(e) = &task.e {
                self.keys.usable_key_for(key_id, device_id, &uses_of(&task))?;
                return self.placed_digest(&task, e).await;
            }
        }
        // Claimed again by the delegate the owner approved it for: the claim's answer again.
        let approved_for_me = task.status == TaskStatus::Claimed
            && !task.cosigned
            && task.device_id.as_deref() == Some(device_id)
            && task.key_id.as_deref() == Some(key_id)
            && task.approval.as_ref().is_some_and(|a| a.status == ApprovalStatus::Approved);
        if task.status != TaskStatus::Pending && !approved_for_me {
            return Err(TaskError::State(format!("task is {}", status_str(task.status))));
        }
        if let TaskData::Csr { key_id: own, request_info, renews } = &task.data {
            return self.claim_csr(&task, own, request_info, renews.as_ref(), key_id, device_id).await;
        }
        if task.to_key_id.as_deref().is_some_and(|to| to != key_id) {
            return Err(TaskError::Key(KeyError::NoPermission("the task is addressed to another key".into())));
        }
        // The owner, or an active delegate allowed this task's kind (one whose every use
        // needs the owner's approval may claim: that asks for it).
        let uses = [kind_str(task.kind), APPROVED_USE];
        let key = self.keys.usable_key_for(key_id, device_id, &uses)?;
        let once = self
            .authorisation(&key, &task.platform)
            .ok_or_else(|| TaskError::PlatformNotAuthorized(task.platform.clone()))?;
        if !approved_for_me && let Some(d) = self.keys.approval_needed(&key.id, device_id)? {
            return self.ask_approval(&task, &key, device_id, AskedBy::Delegation(&d)).await;
        }
        let public = sm2_2p::point_from_hex(&key.public_key)
            .map_err(|_| TaskError::Key(KeyError::Internal(format!("{key_id}: stored public key invalid"))))?;
        let mut t = self.next(&task);
        t.status = TaskStatus::Claimed;
        t.key_id = Some(key.id.clone());
        t.device_id = Some(device_id.to_owned());
        let answer = match &task.data {
            TaskData::PdfUnseal { field, es_id, signer, pdf_sha256, .. } => {
                // Only a key that may use the seal withdraws it.
                self.seals.may_withdraw(es_id, &key.id)?;
                let statement = unseal_statement(&task.id, pdf_sha256, field);
                let e = hex::encode(sm2_2p::e_for_message(&public, statement.as_bytes()));
                t.e = Some(e.clone());
                Claimed::UnsealDigest { e, field: field.clone(), signer: signer.clone() }
            }
            TaskData::Sign { message, cms: true, .. } => {
                // GB/T 35275: the phone co-signs the signed attributes (messageDigest =
                // SM3(message), signing time fixed now), which completion rebuilds.
                if key.certificate.is_none() {
                    return Err(TaskError::Key(KeyError::Conflict("a CMS signature needs the key's certificate")));
                }
                let bytes = B64.decode(message).map_err(|_| TaskError::Invalid("stored task data".into()))?;
                let at = self.now();
                let tbs = cms_signed_attributes(&bytes, at)?;
                let e = hex::encode(sm2_2p::e_for_message(&public, &tbs));
                t.e = Some(e.clone());
                t.data = TaskData::Sign { message: message.clone(), cms: true, signing_time: Some(at) };
                Claimed::SealDigest { e, to_be_signed: B64.encode(&tbs) }
            }
            TaskData::Login { challenge: data } | TaskData::Sign { message: data, .. } => {
                let bytes = B64.decode(data).map_err(|_| TaskError::Invalid("stored task data".into()))?;
                let e = hex::encode(sm2_2p::e_for_message(&public, &bytes));
                t.e = Some(e.clone());
                Claimed::Digest(e)
            }
            TaskData::Decrypt { envelope: Some(envelope), .. } => {
                // The recipient info naming this key's certificate (issuer and serial).
                let cert = match &key.certificate {
                    Some(c) => B64.decode(&c.der_b64).map_err(|_| TaskError::Invalid("stored certificate".into()))?,
                    None => return Err(TaskError::CertMismatch),
                };
                let mine = envelope.recipients.iter().find(|r| {
                    let (Ok(issuer), Ok(serial)) = (B64.decode(&r.issuer), hex::decode(&r.serial)) else {
                        return false;
                    };
                    let recipient = mcs_pdfseal::gbt35275::Recipient {
                        issuer,
                        serial,
                        key_encryption: mcs_pdfseal::gbt35275::SM2_ENCRYPT,
                        encrypted_key: Vec::new(),
                    };
                    recipient.names(&cert)
                });
                Claimed::Ciphertext(mine.ok_or(TaskError::CertMismatch)?.encrypted_key.clone())
            }
            TaskData::Decrypt { ciphertext, recipient_cert_serial, recipient_public_key, .. } => {
                // The bid file was encrypted to a certificate: it must be this key's (serials
                // compare as hex, case-insensitively, ignoring leading zeros).
                let norm = |s: &str| s.trim_start_matches("0x").trim_start_matches('0').to_ascii_lowercase();
                let serial_mismatch = recipient_cert_serial
                    .as_deref()
                    .is_some_and(|want| key.certificate.as_ref().is_none_or(|c| norm(&c.serial) != norm(want)));
                if serial_mismatch || recipient_public_key.as_ref().is_some_and(|p| *p != key.public_key) {
                    return Err(TaskError::CertMismatch);
                }
                Claimed::Ciphertext(ciphertext.clone())
            }
            TaskData::Encrypt { envelope } => {
                let envelope = *envelope;
                if envelope && key.certificate.is_none() {
                    return Err(TaskError::Key(KeyError::Conflict("an envelope needs the key's certificate")));
                }
                let cert_der = match &key.certificate {
                    Some(c) => {
                        Some(B64.decode(&c.der_b64).map_err(|_| TaskError::Invalid("stored certificate".into()))?)
                    }
                    None => None,
                };
                let certificate = key.certificate.as_ref().map(|c| c.der_b64.clone());
                let blob = self
                    .store
                    .task_secret(id, SecretKind::TaskInput)?
                    .ok_or_else(|| TaskError::Key(KeyError::Internal(format!("{id}: task input missing"))))?;
                let (hsm, tid) = (self.hsm.clone(), id.to_owned());
                let ct = blocking(move || {
                    let plaintext = hsm.unwrap(&tid, SecretKind::TaskInput, &blob)?;
                    match cert_der.filter(|_| envelope) {
                        None => Ok(sm2_2p::encrypt(&public, &plaintext).to_der()),
                        Some(cert) => seal_envelope(&cert, &public, &plaintext),
                    }
                })
                .await?;
                t.status = TaskStatus::Completed;
                t.result = Some(TaskResult::Encrypt {
                    ciphertext: B64.encode(ct),
                    envelope,
                    certificate,
                    key_id: key.id.clone(),
                    public_key: key.public_key.clone(),
                });
                let callback = self.callback_for(&t);
                self.commit_request(Transition {
                    delete_secrets: vec![SecretKind::TaskInput],
                    consume_once: once.then_some((key.id.as_str(), task.platform.as_str())),
                    callback,
                    ..Transition::of(&t)
                })
                .await?;
                return Ok(Claimed::Completed);
            }
            TaskData::PdfSeal { placement, .. } if crate::seals::is_deferred(placement) => {
                // The gateway chooses the seal and its place (`POST …/placement`).
                self.commit_request(Transition::of(&t)).await?;
                return Ok(Claimed::AwaitingPlacement);
            }
            TaskData::PdfSeal { pdf, seal_id, placement, .. } => {
                // Claimed again after the seal owner's approval: the seal approved, not
                // another one the key may also use.
                let approved_seal =
                    task.approval.as_ref().filter(|_| approved_for_me).and_then(|a| a.seal_id.as_deref());
                let seal = self.seals.for_signing(approved_seal.or(seal_id.as_deref()), &key.id)?;
                if !approved_for_me && let Some(approver) = seal.record.approver_for(&key.id) {
                    let asked = AskedBy::SealGrant { seal_id: &seal.record.id, approver_key_id: approver };
                    return self.ask_approval(&task, &key, device_id, asked).await;
                }
                let signing_time = self.now() as u64;
                let crls = self.crls_for_dss(&key).await;
                let job = self.seal_job(&t.id, pdf, placement, seal, &key, signing_time, &crls).await?;
                let e = hex::encode(sm2_2p::e_for_message(&public, &job.to_be_signed));
                t.e = Some(e.clone());
                if let TaskData::PdfSeal { chosen_seal, signing_time: at, dss_crls, .. } = &mut t.data {
                    *chosen_seal = Some(job.seal_id.clone());
                    *at = Some(signing_time);
                    *dss_crls = crls;
                }
                Claimed::SealDigest { e, to_be_signed: B64.encode(&job.to_be_signed) }
            }
            TaskData::Csr { .. } => unreachable!("handled above"),
        };
        self.commit_request(Transition::of(&t)).await?;
        Ok(answer)
    }

    /// A placed deferred task's claim answer: the digest and the signed attributes of the
    /// revision fixed by the placement (rebuilt; nothing changes).
    async fn placed_digest(&self, task: &TaskRecord, e: &str) -> Result<Claimed, TaskError> {
        let TaskData::PdfSeal { pdf, placement, chosen_seal: Some(seal_id), signing_time: Some(at), dss_crls, .. } =
            &task.data
        else {
            return Err(TaskError::State("the task has no placed seal".into()));
        };
        let key_id = task.key_id.as_deref().ok_or(TaskError::State("task is not claimed".into()))?;
        let key = self.store.key(key_id)?.ok_or(TaskError::Key(KeyError::NotFound("key")))?;
        let seal = self.seals.for_signing(Some(seal_id), &key.id)?;
        let job = self.seal_job(&task.id, pdf, placement, seal, &key, *at, dss_crls).await?;
        Ok(Claimed::SealDigest { e: e.to_owned(), to_be_signed: B64.encode(&job.to_be_signed) })
    }

    /// A deferred `pdf_seal` task of this gateway, claimed and not yet placed, and its key.
    fn awaiting_placement(&self, platform: &str, id: &str) -> Result<(TaskRecord, KeyRecord), TaskError> {
        let task = self.for_gateway(platform, id)?;
        let deferred =
            matches!(&task.data, TaskData::PdfSeal { placement, .. } if crate::seals::is_deferred(placement));
        if !deferred {
            return Err(TaskError::State("the task's seal is not chosen on the PC (placement is not deferred)".into()));
        }
        if task.status != TaskStatus::Claimed {
            return Err(TaskError::State(format!("task is {}", status_str(task.status))));
        }
        let key_id = task.key_id.as_deref().ok_or(TaskError::State("task is not claimed".into()))?;
        let key = self.store.key(key_id)?.ok_or(TaskError::Key(KeyError::NotFound("key")))?;
        Ok((task, key))
    }

    /// `GET /v1/tasks/{id}/seals`: the seals the claiming key may use (only the task's
    /// `seal_id`, if it named one), with their faces.
    pub fn seals_to_choose(
        &self,
        platform: &str,
        id: &str,
    ) -> Result<Vec<(crate::model::seal::SealRecord, crate::seals::SealFace)>, TaskError> {
        let (task, key) = self.awaiting_placement(platform, id)?;
        let only = match &task.data {
            TaskData::PdfSeal { seal_id, .. } => seal_id.clone(),
            _ => None,
        };
        Ok(self.seals.usable_by(&key.id, only.as_deref())?)
    }

    /// `POST /v1/tasks/{id}/placement`: the gateway fixes the seal and its place; the
    /// revision is prepared and its digest kept, as a claim does for a placed task. A seal
    /// used through an `each_use` grant asks its owner's approval first.
    pub async fn place(
        &self,
        platform: &str,
        id: &str,
        seal_id: &str,
        placement: Value,
    ) -> Result<TaskRecord, TaskError> {
        let (task, key) = self.awaiting_placement(platform, id)?;
        let device_id = task.device_id.clone().ok_or(TaskError::State("task is not claimed".into()))?;
        if let TaskData::PdfSeal { seal_id: Some(asked), .. } = &task.data
            && asked != seal_id
        {
            return Err(TaskError::Key(KeyError::NoPermission(format!("the task asks for seal {asked}"))));
        }
        let key = self.keys.usable_key_for(&key.id, &device_id, &uses_of(&task))?;
        let seal = self.seals.for_signing(Some(seal_id), &key.id)?;
        let mut placed = task.clone();
        let TaskData::PdfSeal { pdf, seal_id: chosen, placement: at_place, .. } = &mut placed.data else {
            return Err(TaskError::State("not a pdf_seal task".into()));
        };
        *at_place = placement;
        *chosen = Some(seal_id.to_owned());
        if let Some(approver) = seal.record.approver_for(&key.id) {
            let asked = AskedBy::SealGrant { seal_id: &seal.record.id, approver_key_id: approver };
            self.ask_approval(&placed, &key, &device_id, asked).await?;
            return self.store.task(id)?.ok_or(TaskError::NotFound);
        }
        let pdf = pdf.clone();
        let signing_time = self.now() as u64;
        let place = match &placed.data {
            TaskData::PdfSeal { placement, .. } => placement.clone(),
            _ => Value::Null,
        };
        let crls = self.crls_for_dss(&key).await;
        let job = self.seal_job(&task.id, &pdf, &place, seal, &key, signing_time, &crls).await?;
        let public = sm2_2p::point_from_hex(&key.public_key)
            .map_err(|_| TaskError::Key(KeyError::Internal(format!("{}: stored public key invalid", key.id))))?;
        let mut t = self.next(&placed);
        t.e = Some(hex::encode(sm2_2p::e_for_message(&public, &job.to_be_signed)));
        if let TaskData::PdfSeal { chosen_seal, signing_time: at, dss_crls, .. } = &mut t.data {
            *chosen_seal = Some(job.seal_id.clone());
            *at = Some(signing_time);
            *dss_crls = crls;
        }
        self.commit_request(Transition::of(&t)).await?;
        Ok(t)
    }

    /// May this device co-sign this claimed task with this nonce point? Returns the key.
    fn cosignable<'a>(task: &'a TaskRecord, device_id: &str, point: &AffinePoint) -> Result<&'a str, TaskError> {
        if task.status != TaskStatus::Claimed {
            return Err(TaskError::State(format!("task is {}", status_str(task.status))));
        }
        let key_id = Self::phone_task(task, device_id)?;
        if task.cosign_nonces.contains(&nonce_id(point)) {
            return Err(TaskError::State(
                "this nonce was already answered for this task; co-sign again with a fresh one".into(),
            ));
        }
        if task.cosign_nonces.len() >= MAX_COSIGNS {
            return Err(TaskError::State(format!("task already co-signed {MAX_COSIGNS} times")));
        }
        Ok(key_id)
    }

    /// The task once a co-signature for this nonce point has gone out.
    fn cosigned(&self, task: &TaskRecord, point: &AffinePoint) -> TaskRecord {
        let mut t = self.next(task);
        t.cosigned = true;
        t.cosign_nonces.push(nonce_id(point));
        t
    }

    /// Server half of the task's signature; `e` is the one computed at claim. The answer
    /// leaves only if the transition recording `q1` commits: a concurrent co-sign of the
    /// same task (with the same `q1` or not) loses the race and its half is dropped.
    #[allow(clippy::too_many_arguments)]
    pub async fn cosign_sign(
        &self,
        id: &str,
        token: &str,
        device_id: &str,
        q1: AffinePoint,
        q1_hex: &str,
        mode: SignMode,
        proof: &str,
    ) -> Result<SignOutput, TaskError> {
        let task = self.for_phone(id, token).await?;
        if !matches!(
            task.kind,
            TaskKind::Login | TaskKind::Sign | TaskKind::Csr | TaskKind::PdfSeal | TaskKind::PdfUnseal
        ) {
            return Err(TaskError::Invalid("this task is co-signed with t1 (decrypt)".into()));
        }
        let key_id = Self::cosignable(&task, device_id, &q1)?.to_owned();
        // No digest yet: a deferred pdf_seal whose seal the gateway has not placed.
        let e = task.e.as_deref().and_then(|e| sm2_2p::digest_from_hex(e).ok());
        let e = e.ok_or_else(|| TaskError::State("the task has no digest yet (its seal is not placed)".into()))?;
        let proof = PinProof { op: sm2_2p::Transcript::TaskSign { task_id: id.into(), q1: q1_hex.into() }, proof };
        let mode = if task.kind == TaskKind::Csr { mode.for_certificate_request() } else { mode };
        let uses = uses_of(&task);
        let answer = self.keys.sign_for(&key_id, device_id, &uses, e, q1, mode, proof).await?;
        self.commit_request(Transition::of(&self.cosigned(&task, &q1))).await?;
        Ok(answer)
    }

    /// Server half of the task's blinded decryption (same rule: recorded, then released).
    pub async fn cosign_decrypt(
        &self,
        id: &str,
        token: &str,
        device_id: &str,
        t1: AffinePoint,
        t1_hex: &str,
        proof: &str,
    ) -> Result<AffinePoint, TaskError> {
        let task = self.for_phone(id, token).await?;
        if task.kind != TaskKind::Decrypt {
            return Err(TaskError::Invalid("this task is co-signed with q1 (signing)".into()));
        }
        let key_id = Self::cosignable(&task, device_id, &t1)?.to_owned();
        let proof = PinProof { op: sm2_2p::Transcript::TaskDecrypt { task_id: id.into(), t1: t1_hex.into() }, proof };
        let t2 = self.keys.decrypt_for(&key_id, device_id, &uses_of(&task), t1, proof).await?;
        self.commit_request(Transition::of(&self.cosigned(&task, &t1))).await?;
        Ok(t2)
    }

    /// The phone's finished signature verifies under the key for the digest the server
    /// computed at claim. Returns the key's public point.
    fn check_signature(task: &TaskRecord, key: &KeyRecord, sig: &Signature) -> Result<AffinePoint, TaskError> {
        let public = sm2_2p::point_from_hex(&key.public_key)
            .map_err(|_| TaskError::Key(KeyError::Internal("stored public key invalid".into())))?;
        let e = task
            .e
            .as_deref()
            .and_then(|e| sm2_2p::digest_from_hex(e).ok())
            .ok_or(TaskError::Invalid("no digest".into()))?;
        if !sm2_2p::verify(&public, &e, sig) {
            return Err(TaskError::Invalid("signature does not verify for this task".into()));
        }
        Ok(public)
    }

    fn completable<'a>(task: &'a TaskRecord, device_id: &str) -> Result<&'a str, TaskError> {
        if task.status != TaskStatus::Claimed || !task.cosigned {
            return Err(TaskError::State(if task.status == TaskStatus::Claimed {
                "task is not co-signed yet".into()
            } else {
                format!("task is {}", status_str(task.status))
            }));
        }
        Self::phone_task(task, device_id)
    }

    /// Finish a signing task: the signature must verify against the key and the task's `e`.
    pub async fn complete_sign(&self, id: &str, token: &str, device_id: &str, sig: Signature) -> Result<(), TaskError> {
        let task = self.for_phone(id, token).await?;
        if !matches!(
            task.kind,
            TaskKind::Login | TaskKind::Sign | TaskKind::Csr | TaskKind::PdfSeal | TaskKind::PdfUnseal
        ) {
            return Err(TaskError::Invalid("complete this task with plaintext".into()));
        }
        let key_id = Self::completable(&task, device_id)?;
        if task.kind == TaskKind::Csr {
            let key_id = key_id.to_owned();
            return self.complete_csr(&task, &key_id, device_id, sig).await;
        }
        let key = self.keys.usable_key_for(key_id, device_id, &uses_of(&task))?;
        Self::check_signature(&task, &key, &sig)?;
        let once = self.authorisation(&key, &task.platform).unwrap_or(true);
        let mut t = self.next(&task);
        t.status = TaskStatus::Completed;
        let certificate = key.certificate.as_ref().map(|c| c.der_b64.clone());
        let subject_dn = key.certificate.as_ref().map(|c| c.subject.clone());
        let (signature, key_id, public_key) = (B64.encode(sig.to_der()), key.id.clone(), key.public_key.clone());
        let result = match &task.data {
            TaskData::PdfSeal {
                pdf, placement, chosen_seal: Some(seal_id), signing_time: Some(at), dss_crls, ..
            } => {
                // The same revision as at claim (deterministic), now with its signature and
                // that signature's time-stamp.
                let seal = self.seals.for_signing(Some(seal_id), &key.id)?;
                let job = self.seal_job(&task.id, pdf, placement, seal, &key, *at, dss_crls).await?;
                let container = self.time_stamped(job.container(&sig)?).await?;
                let sealed = blocking(move || job.embed(&container)).await?;
                TaskResult::PdfSeal { pdf: B64.encode(sealed), seal_id: seal_id.clone(), key_id, certificate }
            }
            TaskData::PdfUnseal { pdf, field, .. } => {
                let sealed = B64.decode(pdf).map_err(|_| TaskError::Invalid("stored task data".into()))?;
                let before = blocking(move || {
                    mcs_pdfseal::pdf::previous_revision(&sealed)
                        .map_err(|e| TaskError::Key(KeyError::Internal(format!("withdrawing: {e}"))))
                })
                .await?;
                TaskResult::PdfUnseal { pdf: B64.encode(before), field: field.clone(), key_id }
            }
            _ if task.kind == TaskKind::Login => TaskResult::Login {
                signature,
                key_id,
                public_key,
                subject: key.subject.clone(),
                certificate,
                subject_dn,
            },
            TaskData::Sign { message, cms: true, signing_time: Some(at) } => {
                let bytes = B64.decode(message).map_err(|_| TaskError::Invalid("stored task data".into()))?;
                let container = self.time_stamped(cms_signature(&key, &bytes, *at, &sig)?).await?;
                TaskResult::Sign { signature: B64.encode(container), key_id, public_key, certificate, subject_dn }
            }
            _ => TaskResult::Sign { signature, key_id, public_key, certificate, subject_dn },
        };
        t.result = Some(result);
        let callback = self.callback_for(&t);
        self.commit_request(Transition {
            consume_once: once.then_some((key.id.as_str(), task.platform.as_str())),
            callback,
            ..Transition::of(&t)
        })
        .await
    }

    /// Finish a decrypt task: the plaintext is kept only HSM-wrapped until the gateway takes it.
    pub async fn complete_decrypt(
        &self,
        id: &str,
        token: &str,
        device_id: &str,
        plaintext: Zeroizing<Vec<u8>>,
    ) -> Result<(), TaskError> {
        let task = self.for_phone(id, token).await?;
        if task.kind != TaskKind::Decrypt {
            return Err(TaskError::Invalid("complete this task with a signature".into()));
        }
        let key_id = Self::completable(&task, device_id)?;
        // The owner, or an active delegate allowed this task's kind.
        let key = self.keys.usable_key_for(key_id, device_id, &uses_of(&task))?;
        let once = self.authorisation(&key, &task.platform).unwrap_or(true);
        // An envelope: the phone answers the content-encryption key; it must open the
        // content, which the daemon decrypts when it holds it.
        let plaintext = match &task.data {
            TaskData::Decrypt { envelope: Some(env), .. } => open_with_key(env, &plaintext)?.unwrap_or(plaintext),
            _ => plaintext,
        };
        let (hsm, tid) = (self.hsm.clone(), id.to_owned());
        let blob = blocking(move || Ok(hsm.wrap(&tid, SecretKind::TaskResult, &plaintext)?)).await?;
        let mut t = self.next(&task);
        t.status = TaskStatus::Completed;
        t.secret_result = true;
        let callback = self.callback_for(&t);
        self.commit_request(Transition {
            put_secrets: vec![(SecretKind::TaskResult, &blob)],
            consume_once: once.then_some((key.id.as_str(), task.platform.as_str())),
            callback,
            ..Transition::of(&t)
        })
        .await
    }

    /// The phone refuses the task (拒签).
    pub async fn reject(&self, id: &str, token: &str, device_id: &str, reason: &str) -> Result<(), TaskError> {
        let task = self.for_phone(id, token).await?;
        match task.status {
            TaskStatus::Pending => {}
            TaskStatus::Claimed => {
                Self::phone_task(&task, device_id)?;
            }
            other => return Err(TaskError::State(format!("task is {}", status_str(other)))),
        }
        let mut t = self.next(&task);
        t.status = TaskStatus::Rejected;
        t.error = Some(format!("rejected: {reason}"));
        let callback = self.callback_for(&t);
        self.commit_request(Transition { delete_secrets: vec![SecretKind::TaskInput], callback, ..Transition::of(&t) })
            .await
    }

    /// Co-sign several claimed signing tasks of one key with one PIN proof. Each item's
    /// half leaves only if its transition commits; the request's audit entry goes in with
    /// the first.
    pub async fn batch_cosign(
        &self,
        key_id: &str,
        device_id: &str,
        items: Vec<(String, String, AffinePoint, String)>,
        mode: SignMode,
        proof: &str,
    ) -> Result<Vec<Result<SignOutput, TaskError>>, TaskError> {
        let transcript =
            sm2_2p::Transcript::Batch { items: items.iter().map(|(id, _, _, q1)| (id.clone(), q1.clone())).collect() };
        // Check every task; those that cannot be co-signed get their own error.
        let mut checked: Vec<Result<(TaskRecord, [u8; 32]), TaskError>> = Vec::with_capacity(items.len());
        for (id, token, q1, _) in &items {
            let r = async {
                let task = self.for_phone(id, token).await?;
                if !matches!(task.kind, TaskKind::Login | TaskKind::Sign | TaskKind::PdfSeal) {
                    return Err(TaskError::Invalid("only signing and sealing tasks can be batch co-signed".into()));
                }
                if task.key_id.as_deref() != Some(key_id) {
                    return Err(TaskError::State("task is not claimed with this key".into()));
                }
                Self::cosignable(&task, device_id, q1)?;
                let e = task
                    .e
                    .as_deref()
                    .and_then(|e| sm2_2p::digest_from_hex(e).ok())
                    .ok_or(TaskError::State("the task has no digest yet (its seal is not placed)".into()))?;
                Ok((task, e))
            }
            .await;
            checked.push(r);
        }
        let work: Vec<([u8; 32], AffinePoint)> = checked
            .iter()
            .zip(&items)
            .filter_map(|(r, (_, _, q1, _))| r.as_ref().ok().map(|(_, e)| (*e, *q1)))
            .collect();
        let proof = PinProof { op: transcript, proof };
        // A delegate must be allowed every kind the batch holds; the owner's approval counts
        // only if every task in it has one (an `each_use` delegate's claimed tasks all do).
        let tasks: Vec<&TaskRecord> = checked.iter().filter_map(|r| r.as_ref().ok().map(|(t, _)| t)).collect();
        let mut uses: Vec<&str> = Vec::new();
        for u in tasks.iter().flat_map(|t| uses_of(t)) {
            if !uses.contains(&u) {
                uses.push(u);
            }
        }
        if !tasks.iter().all(|t| uses_of(t).contains(&APPROVED_USE)) {
            uses.retain(|u| *u != APPROVED_USE);
        }
        // Nothing to co-sign: every item has its own error, and nothing is asked of the key.
        let mut signed = match work.is_empty() {
            true => Vec::new().into_iter(),
            false => self.keys.sign_batch(key_id, device_id, &uses, work, mode, proof).await?.into_iter(),
        };
        let mut out = Vec::with_capacity(items.len());
        for (r, (_, _, q1, _)) in checked.into_iter().zip(&items) {
            out.push(match r {
                Err(e) => Err(e),
                Ok((task, _)) => {
                    let answer =
                        signed.next().ok_or_else(|| TaskError::Key(KeyError::Internal("batch size".into())))?;
                    self.commit_request(Transition::of(&self.cosigned(&task, q1))).await.map(|()| answer)
                }
            });
        }
        Ok(out)
    }

    /// The creating gateway's result, waiting up to `wait` for the task to finish. A
    /// decrypt plaintext is handed out once and then destroyed.
    pub async fn result(&self, platform: &str, id: &str, wait: Duration) -> Result<Outcome, TaskError> {
        let deadline = tokio::time::Instant::now() + wait.min(self.cfg.max_wait);
        let task = loop {
            let notified = self.changed.notified();
            let task = self.for_gateway(platform, id)?;
            if !task.status.is_final() && self.now() >= task.expires_at {
                self.expire(task).await?;
                continue;
            }
            if task.status.is_final() || task.status == TaskStatus::AwaitingApproval {
                break task;
            }
            // Another node's write wakes nobody here: on a shared store, look again at least
            // every SHARED_POLL.
            let bound = match self.store.shared() {
                true => deadline.min(tokio::time::Instant::now() + SHARED_POLL),
                false => deadline,
            };
            if tokio::time::timeout_at(bound, notified).await.is_err() && bound == deadline {
                break task;
            }
        };
        if task.status == TaskStatus::Completed && task.secret_result {
            return self.take_secret_result(task).await;
        }
        Ok(Outcome { status: task.status, result: task.result.clone(), error: task.error.clone() })
    }

    async fn take_secret_result(&self, task: TaskRecord) -> Result<Outcome, TaskError> {
        if task.delivered {
            return Ok(Outcome { status: task.status, result: None, error: Some("result already delivered".into()) });
        }
        let blob = self
            .store
            .task_secret(&task.id, SecretKind::TaskResult)?
            .ok_or_else(|| TaskError::Key(KeyError::Internal(format!("{}: result missing", task.id))))?;
        let (hsm, tid) = (self.hsm.clone(), task.id.clone());
        let plaintext = blocking(move || Ok(hsm.unwrap(&tid, SecretKind::TaskResult, &blob)?)).await?;
        let mut t = self.next(&task);
        t.delivered = true;
        match self.commit(Transition { delete_secrets: vec![SecretKind::TaskResult], ..Transition::of(&t) }).await {
            Ok(()) => {
                let key_only = matches!(&t.data, TaskData::Decrypt { envelope: Some(e), .. } if e.content.is_none());
                let result = match key_only {
                    true => TaskResult::ContentKey { content_key: Zeroizing::new(hex::encode(plaintext.as_slice())) },
                    false => TaskResult::Decrypt { plaintext: Zeroizing::new(B64.encode(plaintext.as_slice())) },
                };
                Ok(Outcome { status: t.status, result: Some(result), error: None })
            }
            // Another request took it first: this one gets nothing.
            Err(TaskError::State(_)) => {
                Ok(Outcome { status: t.status, result: None, error: Some("result already delivered".into()) })
            }
            Err(e) => Err(e),
        }
    }

    /// Expire overdue tasks and purge finished ones past retention. Returns (expired, purged).
    pub async fn sweep(&self) -> Result<(usize, usize), TaskError> {
        // Delegations past their end are swept on the same beat (and the same lead).
        if let Err(e) = self.keys.sweep_delegations().await {
            tracing::warn!(error = %e, "delegation sweep failed");
        }
        let at = self.now();
        let (mut expired, mut purged, mut open) = (0, 0, 0);
        for task in self.store.tasks()? {
            if !task.status.is_final() && at < task.expires_at {
                open += 1;
            }
            if !task.status.is_final() && at >= task.expires_at {
                self.expire(task).await?;
                expired += 1;
                crate::metrics::METRICS.tasks_expired.inc();
            } else if task.status.is_final() && at >= task.updated_at + self.cfg.retention.as_secs() as i64 {
                self.store.purge_task(&task.id)?;
                purged += 1;
            }
        }
        if purged > 0 {
            self.store.flush().await?;
        }
        crate::metrics::METRICS.tasks_open.set(open);
        Ok((expired, purged))
    }

    /// The body POSTed to a callback: the same as the result endpoint's, except that a
    /// decrypt plaintext is never sent — the gateway fetches it (once) from the daemon.
    pub fn callback_body(&self, task_id: &str) -> Result<Option<CallbackBody>, TaskError> {
        let Some(task) = self.store.task(task_id)? else { return Ok(None) };
        Ok(Some(CallbackBody {
            task_id: task.id,
            status: task.status,
            result: task.result,
            error: task.error,
            result_available: task.secret_result.then_some(!task.delivered),
        }))
    }
}

/// A fresh `pending` task.
#[allow(clippy::too_many_arguments)]
fn new_task(
    id: &str,
    kind: TaskKind,
    platform: String,
    token: &str,
    display: TaskDisplay,
    data: TaskData,
    callback_url: Option<String>,
    created_at: i64,
    ttl_secs: u64,
) -> TaskRecord {
    TaskRecord {
        token_sha256: token_hash(token),
        display,
        callback_url,
        ..TaskRecord::pending(id.to_owned(), kind, platform, data, created_at, created_at + ttl_secs as i64)
    }
}

/// What the phone co-signs to withdraw a seal (API.md): the task, the document, the field.
pub fn unseal_statement(task_id: &str, pdf_sha256: &str, field: &str) -> String {
    format!("mcs-unseal-v1|{task_id}|{pdf_sha256}|{field}")
}

/// Why a claim waits for an approval, and so who decides it.
enum AskedBy<'a> {
    /// The claimant holds the key through an `each_use` delegation: the key's owner.
    Delegation(&'a crate::model::delegation::DelegationRecord),
    /// The key uses the seal through an `each_use` grant: the owner of the seal's key.
    SealGrant { seal_id: &'a str, approver_key_id: &'a str },
}

/// Co-signatures one task gives out at most (each for its own nonce).
const MAX_COSIGNS: usize = 5;

/// How a task remembers an answered nonce point: from its one SEC1 encoding.
fn nonce_id(point: &AffinePoint) -> String {
    hex::encode(&Sha256::digest(sm2_2p::point_to_hex(point).as_bytes())[..16])
}

/// The audit entry of the request being served, for a step on `task` (as it will be
/// afterwards): the same fields the API layer would record.
fn request_event(req: &RequestEntry, task: &TaskRecord) -> Event {
    Event {
        event: req.event.clone(),
        actor: req.actor.clone(),
        key_id: task.key_id.clone(),
        platform: req.platform.clone().or_else(|| Some(task.platform.clone()).filter(|p| !p.is_empty())),
        task_id: Some(task.id.clone()),
        outcome: "ok".into(),
        detail: audit_detail(task),
        origin: Some(req.origin.clone()),
    }
}

/// The `detail` of an audit entry about a step on `task` (as it is afterwards): its kind
/// and status, and for a sealing the seal used (`seal_id`, the audit's `seal_id=` filter)
/// or for a withdrawal the seal's esID.
pub fn audit_detail(task: &TaskRecord) -> serde_json::Value {
    let mut detail = crate::audit::task_detail(task.kind, task.status);
    let seal = match &task.data {
        TaskData::PdfSeal { chosen_seal, seal_id, .. } => {
            chosen_seal.clone().or_else(|| seal_id.clone()).map(|s| ("seal_id", s))
        }
        TaskData::PdfUnseal { es_id, .. } => Some(("es_id", es_id.clone())),
        _ => None,
    };
    if let (Some((name, value)), Some(map)) = (seal, detail.as_object_mut()) {
        map.insert(name.into(), serde_json::Value::String(value));
    }
    detail
}

pub fn status_str(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Pending => "pending",
        TaskStatus::Claimed => "claimed",
        TaskStatus::AwaitingApproval => "awaiting_approval",
        TaskStatus::Completed => "completed",
        TaskStatus::Rejected => "rejected",
        TaskStatus::Expired => "expired",
        TaskStatus::Failed => "failed",
    }
}

/// What a phone's use of `task` is, for the delegation rules: its kind, and whether the
/// owner approved it.
fn uses_of(task: &TaskRecord) -> Vec<&'static str> {
    let mut uses = vec![kind_str(task.kind)];
    if task.approval.as_ref().is_some_and(|a| a.status == ApprovalStatus::Approved) {
        uses.push(APPROVED_USE);
    }
    uses
}

pub fn kind_str(k: TaskKind) -> &'static str {
    match k {
        TaskKind::Login => "login",
        TaskKind::Sign => "sign",
        TaskKind::Decrypt => "decrypt",
        TaskKind::Encrypt => "encrypt",
        TaskKind::Csr => "csr",
        TaskKind::PdfSeal => "pdf_seal",
        TaskKind::PdfUnseal => "pdf_unseal",
    }
}

#[cfg(test)]
mod transition_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_string_carries_id_token_and_escaped_url() {
        let qr = qr_string("https://mcs.example.cn:8443/", "t_1", "ab12");
        assert_eq!(qr, "mcs://task?v=1&id=t_1&token=ab12&url=https%3A%2F%2Fmcs.example.cn%3A8443%2F");
    }

    #[test]
    fn a_task_steps_audit_detail_names_kind_and_status_as_the_api_does() {
        use TaskKind::*;
        use TaskStatus::*;
        for kind in [Login, Sign, Decrypt, Encrypt, Csr, PdfSeal] {
            for status in [Pending, Claimed, AwaitingApproval, Completed, Rejected, Expired, Failed] {
                assert_eq!(
                    crate::audit::task_detail(kind, status),
                    serde_json::json!({ "kind": kind_str(kind), "status": status_str(status) })
                );
            }
        }
    }
}
