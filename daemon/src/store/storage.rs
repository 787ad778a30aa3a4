//! The storage interface the domain talks to: one trait per aggregate, [`Storage`] their
//! sum. Every method is one of the domain's atomic steps (activate, count a PIN failure,
//! transition a task with its side effects, revoke and erase …), so a backend decides how
//! to make each step all-or-nothing — sled transactions here ([`super::Store`]), row locks
//! and SQL transactions for a database — and the domain never sees trees or rows.
//!
//! What every backend promises (and [`super::conformance`] checks):
//! - a step either happens whole, with the audit entry it carries, or not at all; an
//!   entry whose sequence number is taken refuses the whole step;
//! - compare-and-swap steps (a task's `rev`, a seal's `rev`, a PIN counter's expected
//!   value, an enrollment's pending state) write nothing when the stored state moved;
//! - the PIN counter rises only through [`KeyStorage::count_pin_failure`] and falls only
//!   through a success ([`KeyStorage::reset_pin_failures`], [`KeyStorage::replace_verifier`]),
//!   an unlock ([`KeyStorage::unlock_pin`]) or a PIN reset ([`KeyStorage::complete_pin_reset`]);
//! - after [`KeyStorage::revoke`] returns (and the step is flushed), the key's share and
//!   verifier are gone from the backend's files;
//! - what [`Durability::flush`] covered survives a crash and a reopen.
//!
//! Synchronous, as sled does its work inline, except `flush`, which waits for the disk and
//! returns a boxed future so the traits stay dyn-compatible.

use std::future::Future;
use std::pin::Pin;

use crate::model::audit::{Checkpoint, Entry};
use crate::model::delegation::DelegationRecord;
use crate::model::key::{CertificateInfo, DaemonKeyRecord, EnrollmentRecord, KeyRecord, KeyStatus};
use crate::model::seal::{SealMakerRecord, SealRecord};
use crate::model::secret::SecretKind;
use crate::model::task::{CallbackRecord, TaskRecord};

pub use super::StoreError;
pub use super::inbox::InboxStorage;
pub use super::plugin_kv::PluginKvStorage;

/// What [`Durability::flush`] returns.
pub type Flushing<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// The whole interface, as the domain holds it: `Arc<dyn Storage>`.
pub trait Storage:
    Durability
    + KeyStorage
    + DelegationStorage
    + TaskStorage
    + SealStorage
    + AuditStorage
    + DaemonKeyStorage
    + CallbackStorage
    + SecretStorage
    + ClusterStorage
    + PluginKvStorage
    + InboxStorage
    + Send
    + Sync
{
}

impl<T> Storage for T where
    T: Durability
        + KeyStorage
        + DelegationStorage
        + TaskStorage
        + SealStorage
        + AuditStorage
        + DaemonKeyStorage
        + CallbackStorage
        + SecretStorage
        + ClusterStorage
        + PluginKvStorage
        + InboxStorage
        + Send
        + Sync
{
}

/// The traits, for code that calls them on a concrete backend rather than `dyn Storage`.
pub mod prelude {
    pub use super::{
        AuditStorage as _, CallbackStorage as _, ClusterStorage as _, DaemonKeyStorage as _, DelegationStorage as _,
        Durability as _, InboxStorage as _, KeyStorage as _, PluginKvStorage as _, SealStorage as _,
        SecretStorage as _, TaskStorage as _,
    };
}

/// Durability, failure and recovery, clean close, backup.
pub trait Durability {
    /// Make every write so far durable. Concurrent callers share one sync (group commit);
    /// none returns before a sync that started after its call has finished.
    fn flush(&self) -> Flushing<'_>;
    /// [`Durability::flush`] for callers on a blocking thread (adapter callbacks, tools).
    fn flush_blocking(&self) -> Result<(), StoreError>;
    /// Syncs done so far (tests and metrics: group commit at work).
    fn fsync_count(&self) -> u64;
    /// The backend cannot write (a sync failed) or is being reopened: `/readyz` says so and
    /// [`Durability::recover`] should run.
    fn failed(&self) -> bool;
    /// Notice a failed backend before a request trips over it (a small unflushed write).
    fn probe(&self);
    /// Reopen after a failure, keeping what was durable. `Ok(true)`: serving again;
    /// `Ok(false)`: nothing to do; `Err`: still failing.
    fn recover(&self) -> Result<bool, StoreError>;
    /// How many times the backend has been reopened: holders of in-memory views of stored
    /// state (the audit head) re-read them when it moves.
    fn generation(&self) -> u64;
    /// Close cleanly (everything durable, a fast next start). Writes afterwards still work.
    fn close(&self) -> Result<(), StoreError>;
    /// A consistent image of everything stored, for `mcsd backup`.
    fn snapshot(&self) -> Result<Vec<u8>, StoreError>;
}

/// Why an activation could not be committed.
#[derive(Debug, PartialEq, Eq)]
pub enum ActivateOutcome {
    Done,
    AlreadyActivated,
    NoSuchEnrollment,
}

/// What [`KeyStorage::reset_pin_failures`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum PinReset {
    /// The counter is zero (it may already have been).
    Done,
    /// The key locked meanwhile: the counter stays.
    Locked,
    Gone,
}

/// Enrollments and keys: activation, the PIN rule's counter, the verifier, revocation.
pub trait KeyStorage {
    fn put_enrollment(&self, rec: &EnrollmentRecord) -> Result<(), StoreError>;
    fn enrollment(&self, id: &str) -> Result<Option<EnrollmentRecord>, StoreError>;
    /// Atomically: mark the enrollment activated, create the key with its wrapped share and
    /// verifier, index it by device, write the audit entry. Nothing is written if the
    /// enrollment is gone or no longer pending (two phones racing on one code: one wins).
    fn activate_with(
        &self,
        key: &KeyRecord,
        secrets: &KeySecrets<'_>,
        audit: Option<&AuditAppend>,
    ) -> Result<ActivateOutcome, StoreError>;
    /// [`KeyStorage::activate_with`] without a recovery key.
    fn activate(
        &self,
        key: &KeyRecord,
        share_blob: &[u8],
        verifier_blob: &[u8],
        audit: Option<&AuditAppend>,
    ) -> Result<ActivateOutcome, StoreError> {
        self.activate_with(key, &KeySecrets { share: share_blob, verifier: verifier_blob, recovery: None }, audit)
    }
    fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    fn keys_of_device(&self, device_id: &str) -> Result<Vec<KeyRecord>, StoreError>;
    /// Every key `keep` accepts (admin listing), read one at a time.
    fn keys_where(&self, keep: &mut dyn FnMut(&KeyRecord) -> bool) -> Result<Vec<KeyRecord>, StoreError>;
    /// The keys whose current certificate ends in `(after, until]` (Unix seconds), whatever
    /// their status, by the end and then the id — from an index, not a pass over every
    /// key: the expiry check runs it hourly on stores of millions.
    fn keys_ending(&self, after: i64, until: i64) -> Result<Vec<KeyRecord>, StoreError>;
    /// The distinct CA roots (base64 DER, the last of a chain) the stored certificates
    /// chain to, sorted. A root may stay listed after the last key chaining to it is gone.
    fn ca_roots(&self) -> Result<Vec<String>, StoreError>;
    /// Change one key record atomically (grants, suspension, supersession): `change` says
    /// whether to write. It may not lower the PIN state or revoke — those have their own
    /// steps — and is refused (nothing written) if it tries. `None`: no such key.
    fn edit_key(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut KeyRecord) -> bool,
    ) -> Result<Option<KeyRecord>, StoreError>;
    /// The wrapped blob of a key's share or PIN verifier, if the key has it.
    fn key_secret(&self, key_id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError>;
    /// [`KeyStorage::key_secret`] for several kinds at once, in the order asked (a backend
    /// on a database reads them in one query).
    fn key_secrets(&self, key_id: &str, kinds: &[SecretKind]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        kinds.iter().map(|k| self.key_secret(key_id, *k)).collect()
    }
    /// [`KeyStorage::key`] and [`KeyStorage::key_secrets`] together (one query on a
    /// database: the hot path of every PIN check).
    #[allow(clippy::type_complexity)]
    fn key_with_secrets(
        &self,
        key_id: &str,
        kinds: &[SecretKind],
    ) -> Result<Option<(KeyRecord, Vec<Option<Vec<u8>>>)>, StoreError> {
        match self.key(key_id)? {
            Some(key) => Ok(Some((key, self.key_secrets(key_id, kinds)?))),
            None => Ok(None),
        }
    }
    /// Count a wrong PIN proof on a key whose counter stands at `expected` (locking it at
    /// `max`), with the request's audit entry in the same step. `None`: the key is gone,
    /// locked, or its counter moved — nothing was written.
    fn count_pin_failure(
        &self,
        key_id: &str,
        expected: u32,
        max: u32,
        audit: Option<&AuditAppend>,
    ) -> Result<Option<KeyRecord>, StoreError>;
    /// A correct PIN proof: the counter back to zero unless the key locked meanwhile.
    fn reset_pin_failures(&self, key_id: &str) -> Result<PinReset, StoreError>;
    /// Admin unlock: counter and lock cleared. `Some(changed)`, or `None` if no such key.
    fn unlock_pin(&self, key_id: &str) -> Result<Option<bool>, StoreError>;
    /// Replace the PIN verifier and clear the counter in one step, durably, then destroy
    /// the old verifier. `false`: no such key. Blocking (syncs).
    fn replace_verifier(&self, key_id: &str, verifier_blob: &[u8]) -> Result<bool, StoreError>;
    /// The last step of a PIN reset of the owner's share (PROTOCOL.md "PIN reset"), in one
    /// durable step with its audit entry: only if the key is not revoked, its open reset
    /// still holds `code_sha256` and its recovery key is still `old_recovery`, the verifier
    /// and recovery key are replaced, the counter zeroed and unlocked and the reset closed;
    /// then the old verifier and recovery key are erased from the files. `false`: nothing
    /// was written (the reset was used, voided or replaced meanwhile). Blocking (syncs).
    fn complete_pin_reset(&self, key_id: &str, commit: &PinResetCommit<'_>) -> Result<bool, StoreError>;
    /// Mark the key revoked and drop its secrets with the audit entry in one step, make it
    /// durable, then erase the share and verifier: when this returns they are gone from
    /// the disk. Every delegation of the key that has not ended ends with it (`revoked`,
    /// reason `key_revoked`) in the same step, its secrets erased too. `None`: no such
    /// key. Blocking (syncs).
    fn revoke(&self, key_id: &str, reason: &str, audit: Option<&AuditAppend>) -> Result<Option<KeyRecord>, StoreError>;
}

/// The wrapped secrets of a key's owner share, as activation stores them.
pub struct KeySecrets<'a> {
    pub share: &'a [u8],
    pub verifier: &'a [u8],
    /// The recovery key, if the phone sent one.
    pub recovery: Option<&'a [u8]>,
}

/// See [`KeyStorage::complete_pin_reset`].
pub struct PinResetCommit<'a> {
    pub code_sha256: &'a str,
    /// The wrapped recovery key on record, as the caller read (and unwrapped) it.
    pub old_recovery: &'a [u8],
    pub verifier_blob: &'a [u8],
    pub recovery_blob: &'a [u8],
    pub audit: Option<&'a AuditAppend>,
}

/// Hand a key over to a `transfer` delegation's device (see [`DelegationChange::transfer`]).
pub struct KeyTransfer<'a> {
    /// The new owner's share and verifier, wrapped for the key (its id, kinds `Share` and
    /// `PinVerifier`): they replace the old owner's, which are erased.
    pub share_blob: &'a [u8],
    pub verifier_blob: &'a [u8],
    /// The new owner's recovery key (kind `RecoveryKey`), if it sent one; the old owner's
    /// is erased either way.
    pub recovery_blob: Option<&'a [u8]>,
}

/// One atomic step of a delegation (see [`DelegationStorage::change_delegation`]).
pub struct DelegationChange<'a> {
    /// The delegation as it should be afterwards; its `rev` must be the stored rev + 1.
    /// Its PIN state is not taken: the counter moves only by its own steps.
    pub record: &'a DelegationRecord,
    /// Wrapped secrets of the delegation to store (replacing, and erasing, earlier ones).
    pub put_secrets: Vec<(SecretKind, &'a [u8])>,
    pub erase_secrets: Vec<SecretKind>,
    /// With a `transfer`'s activation: the key's device becomes the delegation's, its share
    /// and verifier are replaced and its PIN counter cleared, in the same step.
    pub transfer: Option<KeyTransfer<'a>>,
    /// Clear the delegate's PIN counter and lock (a PIN reset's last step).
    pub clear_pin: bool,
    pub audit: Option<&'a AuditAppend>,
}

impl<'a> DelegationChange<'a> {
    /// A change that only writes the record.
    pub fn of(record: &'a DelegationRecord) -> Self {
        DelegationChange {
            record,
            put_secrets: Vec::new(),
            erase_secrets: Vec::new(),
            transfer: None,
            clear_pin: false,
            audit: None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DelegationOutcome {
    Done,
    /// The delegation is gone or moved on first (its rev differs); nothing was written.
    Raced,
    /// A transfer's key is gone or revoked; nothing was written.
    KeyGone,
}

/// Delegations: another device's share of a key (API.md "Organisations"), each with its
/// own wrapped share, verifier and PIN counter, owned by the delegation's id.
///
/// A change into a final state (`revoked`, `expired`) erases every secret of the
/// delegation whatever the change names, and once it returns (flushed) they are gone from
/// the files, as with a key's revocation; a final delegation changes no more.
pub trait DelegationStorage {
    /// Create a delegation (rev 0, no secrets) with its request's audit entry. `false`:
    /// the id is taken, nothing written.
    fn insert_delegation(&self, rec: &DelegationRecord, audit: Option<&AuditAppend>) -> Result<bool, StoreError>;
    fn delegation(&self, id: &str) -> Result<Option<DelegationRecord>, StoreError>;
    /// A key's delegations, in id order.
    fn delegations_of_key(&self, key_id: &str) -> Result<Vec<DelegationRecord>, StoreError>;
    /// Every delegation that has not ended (the sweeper's view).
    fn open_delegations(&self) -> Result<Vec<DelegationRecord>, StoreError>;
    fn delegation_secret(&self, id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError>;
    /// Compare-and-swap on `rev`: the record, its secrets, a key transfer and the audit
    /// entry, all or nothing; replaced or erased secrets are gone from the files when this
    /// returns. Blocking (syncs when it erases).
    fn change_delegation(&self, change: DelegationChange<'_>) -> Result<DelegationOutcome, StoreError>;
    /// [`KeyStorage::count_pin_failure`] for a delegate's own counter.
    fn count_delegate_pin_failure(
        &self,
        id: &str,
        expected: u32,
        max: u32,
        audit: Option<&AuditAppend>,
    ) -> Result<Option<DelegationRecord>, StoreError>;
    /// [`KeyStorage::reset_pin_failures`] for a delegate's counter.
    fn reset_delegate_pin_failures(&self, id: &str) -> Result<PinReset, StoreError>;
    /// [`KeyStorage::unlock_pin`] for a delegate's counter.
    fn unlock_delegate_pin(&self, id: &str) -> Result<Option<bool>, StoreError>;
    /// The active `delegate` delegation of `device_id` for `key_id`, if any; else the
    /// newest one of that device (to tell "ended or not yet active" from "a stranger").
    fn delegation_of_device(&self, key_id: &str, device_id: &str) -> Result<Option<DelegationRecord>, StoreError> {
        let mine: Vec<_> = self
            .delegations_of_key(key_id)?
            .into_iter()
            .filter(|d| {
                d.device_id.as_deref() == Some(device_id)
                    && d.kind == crate::model::delegation::DelegationKind::Delegate
            })
            .collect();
        let active = mine.iter().position(|d| d.status == crate::model::delegation::DelegationStatus::Active);
        Ok(match active {
            Some(i) => mine.into_iter().nth(i),
            None => mine.into_iter().max_by_key(|d| (d.created_at, d.id.clone())),
        })
    }
}

/// A platform's limits on its open (unfinished) tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenQuota {
    pub max_tasks: u64,
    pub max_bytes: u64,
}

/// What a platform's open tasks hold now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenUsage {
    pub tasks: u64,
    pub bytes: u64,
    /// The earliest `expires_at` among them: by then at least one will have finished.
    pub earliest_expiry: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    Done,
    /// The task would take its platform past its quota; nothing was written.
    OverQuota {
        usage: OpenUsage,
        task_bytes: u64,
    },
}

/// A renewal's certificate replacing the key's current one (see
/// [`Transition::renew_certificate`]): refused (`CertificateChanged`) unless the key is
/// active or suspended and still has the certificate `serial`; the old one is kept in the
/// key's `retired_certificates` as retired `at`.
pub struct CertificateSwap<'a> {
    pub key_id: &'a str,
    pub serial: &'a str,
    pub certificate: &'a CertificateInfo,
    /// Unix seconds.
    pub at: i64,
}

impl CertificateSwap<'_> {
    /// The key is active or suspended and still has the certificate the swap replaces.
    pub fn applies_to(&self, key: &KeyRecord) -> bool {
        matches!(key.status, KeyStatus::Active | KeyStatus::Suspended)
            && key.certificate.as_ref().is_some_and(|c| c.serial == self.serial)
    }

    /// Retire the current certificate and install `certificate` (as the backend stores it).
    pub fn apply(&self, key: &mut KeyRecord, certificate: CertificateInfo) {
        let retired = crate::model::key::RetiredCertificate { serial: self.serial.to_owned(), retired_at: self.at };
        key.retired_certificates.push(retired);
        key.certificate = Some(certificate);
    }
}

/// One atomic task transition (see [`TaskStorage::transition`]).
pub struct Transition<'a> {
    /// The task as it should be afterwards; its `rev` must be the stored rev + 1.
    pub task: &'a TaskRecord,
    /// Wrapped secrets to store with the task (input or result).
    pub put_secrets: Vec<(SecretKind, &'a [u8])>,
    pub delete_secrets: Vec<SecretKind>,
    /// Consume a `once` platform grant of this key (refused if it is gone).
    pub consume_once: Option<(&'a str, &'a str)>,
    pub callback: Option<CallbackRecord>,
    /// Make this pending key active with this certificate (a `csr` task's completion), so
    /// the certificate is never installed without the task finishing, or the reverse.
    pub install_certificate: Option<(&'a str, &'a CertificateInfo)>,
    /// Replace an active or suspended key's certificate by a renewal of the same key.
    pub renew_certificate: Option<CertificateSwap<'a>>,
    /// The audit entry of the request this transition carries out, written in the same
    /// step (its sequence number must still be free).
    pub audit: Option<AuditAppend>,
}

impl<'a> Transition<'a> {
    /// A transition that only writes the task.
    pub fn of(task: &'a TaskRecord) -> Self {
        Transition {
            task,
            put_secrets: Vec::new(),
            delete_secrets: Vec::new(),
            consume_once: None,
            callback: None,
            install_certificate: None,
            renew_certificate: None,
            audit: None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum TransitionOutcome {
    Done,
    /// Someone else changed the task first; nothing was written.
    Raced,
    /// The `once` grant was already used; nothing was written.
    GrantGone,
    /// The key to install a certificate for is not pending (its status, or `None` if it
    /// is gone); nothing was written.
    KeyNotPending(Option<KeyStatus>),
    /// A renewal's key is not active or suspended, or no longer has the certificate the
    /// renewal replaces (its status, or `None` if it is gone); nothing was written.
    CertificateChanged(Option<KeyStatus>),
}

/// Scan tasks: creation under quota, transitions with their side effects, the sweep.
pub trait TaskStorage {
    fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError>;
    /// Every task (the sweeper's view; tasks are few and short-lived).
    fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError>;
    /// What `platform`'s open tasks hold now.
    fn open_usage(&self, platform: &str) -> Result<OpenUsage, StoreError>;
    /// Create a task (rev 0) with its wrapped inputs and its request's audit entry — all or
    /// nothing — unless it would take its platform past `quota` (checked and counted in
    /// one step, so two creations cannot both take the last slot; a refusal writes
    /// nothing, the entry neither). The store sets `charged_bytes`.
    fn insert_task(
        &self,
        task: &TaskRecord,
        secrets: &[(SecretKind, &[u8])],
        quota: Option<OpenQuota>,
        audit: Option<&AuditAppend>,
    ) -> Result<InsertOutcome, StoreError>;
    /// Apply a transition: the task (compare-and-swap on `rev`), its secrets, a consumed
    /// `once` grant, a certificate installed, a callback queued and the audit entry — all
    /// or nothing. A transition into a final state gives the task's quota back.
    fn transition(&self, t: Transition<'_>) -> Result<TransitionOutcome, StoreError>;
    fn task_secret(&self, task_id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError>;
    /// Delete a task with what is left of its secrets and callback (an unfinished one
    /// leaves its platform's quota).
    fn purge_task(&self, task_id: &str) -> Result<(), StoreError>;
}

/// Seals and the seal maker's certificate.
pub trait SealStorage {
    fn insert_seal(&self, rec: &SealRecord) -> Result<(), StoreError>;
    fn seal(&self, id: &str) -> Result<Option<SealRecord>, StoreError>;
    fn seals(&self) -> Result<Vec<SealRecord>, StoreError>;
    /// Replace a seal record if it is still at `expected_rev` (stored with `rev` + 1).
    fn replace_seal(&self, expected_rev: u64, rec: &SealRecord) -> Result<bool, StoreError>;
    fn seal_maker(&self) -> Result<Option<SealMakerRecord>, StoreError>;
    fn put_seal_maker(&self, rec: &SealMakerRecord) -> Result<(), StoreError>;
}

/// An audit entry to be written inside another step (see [`Transition::audit`]).
#[derive(Debug, Clone)]
pub struct AuditAppend {
    seq: u64,
    entry: Entry,
}

impl AuditAppend {
    pub fn new(seq: u64, entry: &Entry) -> Self {
        AuditAppend { seq, entry: entry.clone() }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn entry(&self) -> &Entry {
        &self.entry
    }
}

/// The audit chain's entries (keyed by sequence number) and its signed checkpoints.
pub trait AuditStorage {
    /// Append an entry unless its sequence number is taken (`false`: taken, nothing written).
    fn append_audit(&self, seq: u64, entry: &Entry) -> Result<bool, StoreError>;
    /// Entries from `from` on, in sequence order, with the sequence number they are stored
    /// under (which a tampered store may not match the entry's own).
    fn audit_entries(&self, from: u64) -> Box<dyn Iterator<Item = Result<(u64, Entry), StoreError>>>;
    fn last_audit(&self) -> Result<Option<(u64, Entry)>, StoreError>;
    fn audit_entry(&self, seq: u64) -> Result<Option<Entry>, StoreError>;
    fn put_audit_checkpoint(&self, seq: u64, cp: &Checkpoint) -> Result<(), StoreError>;
    /// The checkpoints at entry `from` and later, in sequence order.
    fn audit_checkpoints_from(&self, from: u64) -> Result<Vec<Checkpoint>, StoreError>;
    fn last_audit_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;
    fn audit_checkpoint_seqs(&self) -> Result<Vec<u64>, StoreError>;
    /// Every checkpoint, in sequence order.
    fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.audit_checkpoints_from(0)
    }
}

/// Keys the daemon itself holds (audit, seal maker, CA), each with its wrapped secret.
pub trait DaemonKeyStorage {
    fn daemon_key(&self, name: &str) -> Result<Option<(DaemonKeyRecord, Vec<u8>)>, StoreError>;
    /// Store a new daemon key unless one of that name exists; returns the one that won.
    fn insert_daemon_key(&self, rec: &DaemonKeyRecord, blob: &[u8]) -> Result<(DaemonKeyRecord, Vec<u8>), StoreError>;
}

/// A delivery's hold on one outbox record (see [`CallbackStorage::lease_callback`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackLease {
    /// The record as leased.
    pub record: CallbackRecord,
    /// Fences the lease's end: only its holder may finish or reschedule the record.
    pub token: String,
}

/// The callback outbox (queued by [`TaskStorage::transition`]), delivered at least once:
/// a sender leases a due record, and only the holder of the lease ends it — delivered,
/// rescheduled or abandoned. A lease that runs out (its holder died) frees the record.
pub trait CallbackStorage {
    fn callback(&self, task_id: &str) -> Result<Option<CallbackRecord>, StoreError>;
    fn callbacks(&self) -> Result<Vec<CallbackRecord>, StoreError>;
    fn put_callback(&self, cb: &CallbackRecord) -> Result<(), StoreError>;
    fn delete_callback(&self, task_id: &str) -> Result<(), StoreError>;
    /// Lease the record of `task_id` for `lease_ms` if it is due at `now_ms` and nobody
    /// holds a running lease on it; `None` otherwise.
    fn lease_callback(&self, task_id: &str, now_ms: i64, lease_ms: i64) -> Result<Option<CallbackLease>, StoreError>;
    /// Delete the leased record (delivered, or abandoned). `false`: the lease was lost
    /// (it ran out and another sender took the record), nothing changed.
    fn finish_callback(&self, lease: &CallbackLease) -> Result<bool, StoreError>;
    /// Store `next` (a later attempt) for the leased record and end the lease; `false` as
    /// for [`CallbackStorage::finish_callback`].
    fn reschedule_callback(&self, lease: &CallbackLease, next: &CallbackRecord) -> Result<bool, StoreError>;
}

/// What a store shared by several nodes needs from them; one process on its own store
/// (sled) has the defaults.
pub trait ClusterStorage {
    /// The node whose audit chain this handle writes (`None`: the store has one chain).
    fn node_id(&self) -> Option<&str> {
        None
    }
    /// Other processes write the same data: waiters re-read instead of relying on this
    /// process's notifications alone.
    fn shared(&self) -> bool {
        false
    }
    /// Whether this process holds (or has now taken) the lead of the singleton `job`.
    fn lead(&self, _job: &str) -> bool {
        true
    }
    /// Every node's audit chain, each as a store whose [`AuditStorage`] is that chain.
    /// Empty: the store has one chain, this handle's.
    fn audit_chains(&self) -> Result<Vec<AuditChain>, StoreError> {
        Ok(Vec::new())
    }
}

/// One node's audit chain in a shared store (see [`ClusterStorage::audit_chains`]).
pub struct AuditChain {
    pub node: String,
    pub store: std::sync::Arc<dyn Storage>,
    /// The node is running now (it holds its node lock): entries after its last
    /// checkpoint are its live tail, not the trace of a crash.
    pub running: bool,
}

/// One wrapped secret as stored, for KEK rotation: whose, what kind, and the stored value
/// that stands for it (compared by [`SecretStorage::replace_secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEntry {
    pub owner: String,
    pub kind: SecretKind,
    /// Backend-specific: the blob itself, or where it is.
    pub stored: Vec<u8>,
}

/// A superseded copy of a secret, to erase once its replacement is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleCopy(pub(super) u64);

/// Every wrapped secret (key shares and verifiers, task secrets, daemon keys), walked and
/// swapped by KEK rotation.
pub trait SecretStorage {
    fn secret_entries(&self) -> Result<Vec<SecretEntry>, StoreError>;
    /// The wrapped blob an entry stands for.
    fn blob_of(&self, entry: &SecretEntry) -> Result<Vec<u8>, StoreError>;
    /// Replace an entry's blob if it is still stored as `entry` says (a concurrent change
    /// or deletion wins: `false`). The superseded copy, if the backend keeps one apart,
    /// is returned for [`SecretStorage::erase_after_flush`].
    fn replace_secret(&self, entry: &SecretEntry, new_blob: &[u8]) -> Result<(bool, Option<StaleCopy>), StoreError>;
    /// Make everything durable, then destroy the given copies.
    fn erase_after_flush(&self, stale: &[StaleCopy]) -> Result<(), StoreError>;
}

/// Generic conveniences over the dyn-compatible methods.
impl<'s> dyn Storage + 's {
    /// [`KeyStorage::edit_key`] with a change that may fail: its error is passed through
    /// and nothing is written. `Ok(false)` leaves the record as it is.
    pub fn update_key<E>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut KeyRecord) -> Result<bool, E>,
    ) -> Result<Result<Option<KeyRecord>, E>, StoreError> {
        let mut failed = None;
        let rec = self.edit_key(id, &mut |k| match change(k) {
            Ok(write) => write,
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        Ok(match failed {
            Some(e) => Err(e),
            None => Ok(rec),
        })
    }

    /// [`KeyStorage::keys_where`] with a closure.
    pub fn keys_matching(&self, mut keep: impl FnMut(&KeyRecord) -> bool) -> Result<Vec<KeyRecord>, StoreError> {
        self.keys_where(&mut keep)
    }
}

/// What a [`DelegationChange`] may not carry, checked by every backend the same way: an
/// ended delegation keeps no secrets and hands nothing over; only delegation secrets.
pub fn check_delegation_change(change: &DelegationChange<'_>) -> Result<(), StoreError> {
    let rec = change.record;
    if rec.status.is_final() && (!change.put_secrets.is_empty() || change.transfer.is_some()) {
        return Err(StoreError::Refused(format!("delegation {}: an ended delegation keeps no secrets", rec.id)));
    }
    if change.put_secrets.iter().any(|(k, _)| !SecretKind::DELEGATION.contains(k)) {
        return Err(StoreError::Refused(format!("delegation {}: not a delegation secret", rec.id)));
    }
    Ok(())
}

/// What [`KeyStorage::edit_key`] may not do, checked by every backend the same way.
pub fn check_edit(before: &KeyRecord, after: &KeyRecord) -> Result<(), StoreError> {
    let refused = |why: &str| Err(StoreError::Refused(format!("key {}: {why}", before.id)));
    if after.pin.failures < before.pin.failures || (before.pin.locked && !after.pin.locked) {
        return refused("the PIN state goes down only by a success or an unlock");
    }
    if after.status == KeyStatus::Revoked && before.status != KeyStatus::Revoked {
        return refused("a revocation erases the key's secrets: use revoke");
    }
    if after.id != before.id {
        return refused("a key keeps its id");
    }
    Ok(())
}
