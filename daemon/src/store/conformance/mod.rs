//! The conformance suite of the [`Storage`] interface: what every backend must do, checked
//! through the interface alone, so sled now and PostgreSQL later run the very same checks.
//!
//! A backend provides a [`Factory`] (fresh empty stores, and a restart that keeps only what
//! was flushed) and instantiates the suite with [`conformance_tests!`](crate::conformance_tests),
//! one `#[test]` per check. The checks (`keys.rs`, `tasks.rs`, `other.rs`) are plain functions that panic on a failure; they
//! (and `delegations.rs`) build their own small runtime where a flush is awaited, so call them from a test
//! thread, not from inside a runtime.

mod delegations;
mod inbox;
mod keys;
mod other;
mod tasks;

pub use delegations::*;
pub use inbox::*;
pub use keys::*;
pub use other::*;
pub use tasks::*;

use std::sync::Arc;

use super::{
    ActivateOutcome, AuditAppend, InsertOutcome, KeySecrets, OpenQuota, PinReset, PinResetCommit, Storage, StoreError,
    Transition, TransitionOutcome,
};
use crate::model::audit::{Checkpoint, Entry};
use crate::model::key::{
    CertificateInfo, DaemonKeyRecord, EnrollmentRecord, EnrollmentState, KeyRecord, KeyStatus, PinState, PlatformGrant,
    Subject, SubjectKind,
};
use crate::model::seal::{SealMakerRecord, SealRecord};
use crate::model::secret::SecretKind;
use crate::model::task::{CallbackRecord, TaskData, TaskDisplay, TaskKind, TaskRecord, TaskStatus};

/// How the suite gets stores of the backend under test.
pub trait Factory {
    /// A new, empty store.
    fn fresh(&self) -> Arc<dyn Storage>;
    /// The same data opened again as after a crash of `store` (the caller holds no other
    /// handle): what was flushed must be there, nothing else is promised.
    fn restart(&self, store: Arc<dyn Storage>) -> Arc<dyn Storage>;
    /// Whether `needle` is anywhere in the files `store` keeps, if the backend can tell:
    /// erasure is about the disk, not only about what reads return.
    fn on_disk(&self, _store: &Arc<dyn Storage>, _needle: &[u8]) -> Option<bool> {
        None
    }
}

/// The wrapped blobs [`with_key`] stores: long enough not to occur by chance.
pub(super) const SHARE: &[u8] = b"wrapped-share-0123456789abcdef";
pub(super) const VERIFIER: &[u8] = b"wrapped-verifier-0123456789abc";
pub(super) const RECOVERY: &[u8] = b"wrapped-recovery-0123456789abc";

/// One `#[test]` per conformance check, on the factory `$factory` (an expression, built
/// afresh for each test). A new check is a `pub fn` below and a line here.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            activation_is_once_only_and_all_or_nothing,
            pin_counter_rises_by_cas_and_falls_only_by_success_or_unlock,
            concurrent_pin_failures_count_once_per_expected_value,
            replacing_the_verifier_resets_the_counter_and_drops_the_old,
            a_pin_reset_replaces_verifier_and_recovery_key_once,
            revocation_erases_the_secrets_with_its_audit_entry,
            key_edits_and_listings,
            certificates_and_chains_come_back_whole,
            certificate_ends_are_found_in_their_window,
            task_creation_under_quota_and_a_refusal_writes_nothing,
            transitions_are_cas_and_all_or_nothing,
            csr_completion_installs_the_certificate_atomically,
            a_renewal_swaps_the_certificate_of_the_same_key_once,
            audit_chain_and_checkpoints,
            seals_are_replaced_by_cas,
            daemon_keys_are_created_once,
            callback_outbox,
            callback_leases_fence_their_holders,
            inbox_items_per_device_after_a_cursor,
            secrets_walk_and_swap_for_kek_rotation,
            flushed_state_survives_a_restart,
            concurrent_flushes_share_syncs,
            lifecycle_failure_state_close_and_snapshot,
            plugin_kv_get_put_cas,
            delegations_are_created_once_and_changed_by_cas,
            ending_a_delegation_erases_its_secrets,
            a_delegates_pin_counter_is_its_own,
            a_transfer_hands_the_key_over_in_one_step,
            a_key_revocation_ends_its_delegations_and_erases_their_shares,
            the_active_delegation_of_a_device,
        );
    };
    (@each $factory:expr; $($check:ident,)*) => {
        $(
            #[test]
            fn $check() {
                $crate::store::conformance::$check(&$factory);
            }
        )*
    };
}

// ---- fixtures ---------------------------------------------------------------------------

pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

pub(super) fn subject() -> Subject {
    Subject { kind: SubjectKind::Person, name: "Zhang San".into(), org_name: None, credit_code: None, id_number: None }
}

pub(crate) fn enrollment(id: &str) -> EnrollmentRecord {
    EnrollmentRecord {
        id: id.into(),
        subject: subject(),
        ca: "local".into(),
        profile: None,
        platforms: vec!["P1".into()],
        validity_days: 365,
        activation_code_sha256: "00".into(),
        created_at: 0,
        expires_at: 10,
        state: EnrollmentState::Pending,
        predecessor: None,
    }
}

pub(crate) fn key(id: &str, enrollment: &str) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        enrollment_id: enrollment.into(),
        subject: subject(),
        ca: "local".into(),
        status: KeyStatus::Active,
        public_key: "04ab".into(),
        device_id: "dev1".into(),
        platforms: vec![PlatformGrant { platform: "P1".into(), until: None, once: false }],
        pin: PinState::default(),
        created_at: 0,
        validity_days: 365,
        revocation_reason: None,
        revoked_at: None,
        certificate: None,
        p1: None,
        suspension: None,
        expiry_notified: None,
        pin_reset: None,
        retired_certificates: Vec::new(),
        p2: None,
    }
}

pub(super) fn task(id: &str, platform: &str, status: TaskStatus, rev: u64) -> TaskRecord {
    let data = TaskData::Sign { message: "abc".into(), cms: false, signing_time: None };
    TaskRecord {
        token_sha256: "00".into(),
        display: TaskDisplay { title: "t".into(), detail: None },
        status,
        rev,
        key_id: Some("k1".into()),
        device_id: Some("dev1".into()),
        ..TaskRecord::pending(id.into(), TaskKind::Sign, platform.into(), data, 0, 100)
    }
}

pub(super) fn entry(seq: u64) -> Entry {
    Entry {
        node: None,
        seq,
        at: 1,
        event: "POST /v1/keys/{id}/sign".into(),
        actor: "device".into(),
        key_id: Some("k1".into()),
        platform: None,
        task_id: None,
        outcome: "ok".into(),
        detail: serde_json::Value::Null,
        request_id: Some(format!("0190a5c2-0000-7000-8000-{seq:012}")),
        peer: Some("2001:db8::7".into()),
        prev: "00".repeat(32),
        hash: format!("{seq:064x}"),
    }
}

pub(crate) fn append(seq: u64) -> AuditAppend {
    AuditAppend::new(seq, &entry(seq))
}

/// [`certificate`] ending at `not_after`.
pub(super) fn certificate_ending(serial: &str, not_after: i64) -> CertificateInfo {
    CertificateInfo { not_after, ..certificate(serial) }
}

pub(super) fn certificate(serial: &str) -> CertificateInfo {
    CertificateInfo {
        der_b64: format!("bGVhZi0{serial}"),
        chain_b64: vec!["Q0EtY2VydGlmaWNhdGU=".into(), "Um9vdA==".into()],
        serial: serial.into(),
        subject: "CN=x".into(),
        not_after: 1,
    }
}

pub(super) fn seal(id: &str) -> SealRecord {
    SealRecord {
        id: id.into(),
        es_id: "es1".into(),
        kind: "official".into(),
        name: "seal".into(),
        owner: serde_json::Value::Null,
        picture_type: "png".into(),
        width_mm: 40,
        height_mm: 40,
        signer_key_ids: vec!["k1".into()],
        grants: Vec::new(),
        valid_from: 0,
        valid_to: 10,
        created_at: 0,
        revoked_at: None,
        seal_b64: "c2VhbA==".into(),
        rev: 0,
    }
}

pub(super) fn callback(task_id: &str) -> CallbackRecord {
    CallbackRecord {
        task_id: task_id.into(),
        url: "https://gw.example/cb".into(),
        attempts: 0,
        next_at_ms: 0,
        platform: "P1".into(),
        push: None,
    }
}

/// A store with enrollment `e1` activated as key `k1` ([`SHARE`], [`VERIFIER`],
/// [`RECOVERY`]).
pub(super) fn with_key(f: &dyn Factory) -> Arc<dyn Storage> {
    let s = f.fresh();
    s.put_enrollment(&enrollment("e1")).unwrap();
    let secrets = KeySecrets { share: SHARE, verifier: VERIFIER, recovery: Some(RECOVERY) };
    assert_eq!(s.activate_with(&key("k1", "e1"), &secrets, None).unwrap(), ActivateOutcome::Done);
    s
}

pub(super) fn pin(s: &dyn Storage, id: &str) -> PinState {
    s.key(id).unwrap().expect("the key").pin
}

pub(super) fn refused<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Refused(_)))
}

pub(super) fn taken<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    r.is_err_and(|e| e.to_string().contains("sequence number already used"))
}
