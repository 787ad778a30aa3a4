//! Conformance checks of the delegation steps: creation, the compare-and-swap of every
//! change with its secrets and audit entry, erasure at the end, the delegate's own PIN
//! counter, a transfer's hand-over of the key, and a key's revocation ending them all.

use super::*;
use crate::model::delegation::{Approval, DelegationKind, DelegationRecord, DelegationStatus};
use crate::store::{DelegationChange, DelegationOutcome, KeyTransfer};

const D_SHARE: &[u8] = b"delegate-share-0123456789abcdef";
const D_VERIFIER: &[u8] = b"delegate-verifier-0123456789abc";
const D_HANDOVER: &[u8] = b"delegate-handover-0123456789abc";

/// A delegation of `k1`, `invited`.
pub fn delegation(id: &str, kind: DelegationKind) -> DelegationRecord {
    DelegationRecord {
        id: id.into(),
        key_id: "k1".into(),
        public_key: "04ab".into(),
        kind,
        status: DelegationStatus::Invited,
        device_id: None,
        label: Some("clerk".into()),
        not_before: None,
        not_after: Some(100),
        approval: Approval::None,
        task_kinds: Some(vec!["sign".into()]),
        invitation_sha256: "00".into(),
        invitation_expires_at: 50,
        transport_key: None,
        p2: None,
        pin: PinState::default(),
        created_by: "owner".into(),
        created_at: 1,
        updated_at: 1,
        end_reason: None,
        rev: 0,
        pin_reset: None,
    }
}

fn change(rec: &DelegationRecord) -> DelegationChange<'_> {
    DelegationChange::of(rec)
}

/// `d` moved on by one step with `edit`.
fn next(d: &DelegationRecord, edit: impl FnOnce(&mut DelegationRecord)) -> DelegationRecord {
    let mut n = d.clone();
    n.rev += 1;
    edit(&mut n);
    n
}

/// A store with key `k1` and delegation `d1` (of `kind`) active on `dev2`, holding
/// [`D_SHARE`] and [`D_VERIFIER`].
fn with_active(f: &dyn Factory, kind: DelegationKind) -> (Arc<dyn Storage>, DelegationRecord) {
    let s = with_key(f);
    let d = delegation("d1", kind);
    assert!(s.insert_delegation(&d, None).unwrap());
    let d = next(&d, |d| {
        d.status = DelegationStatus::AwaitingShare;
        d.device_id = Some("dev2".into());
    });
    assert_eq!(s.change_delegation(change(&d)).unwrap(), DelegationOutcome::Done);
    let d = next(&d, |d| d.status = DelegationStatus::AwaitingPin);
    let put = vec![(SecretKind::DelegateShare, D_SHARE), (SecretKind::DelegateHandover, D_HANDOVER)];
    assert_eq!(
        s.change_delegation(DelegationChange { put_secrets: put, ..change(&d) }).unwrap(),
        DelegationOutcome::Done
    );
    if kind == DelegationKind::Transfer {
        return (s, d);
    }
    let d = next(&d, |d| d.status = DelegationStatus::Active);
    let step = DelegationChange {
        put_secrets: vec![(SecretKind::DelegatePinVerifier, D_VERIFIER)],
        erase_secrets: vec![SecretKind::DelegateHandover],
        ..change(&d)
    };
    assert_eq!(s.change_delegation(step).unwrap(), DelegationOutcome::Done);
    (s, d)
}

pub fn delegations_are_created_once_and_changed_by_cas(f: &dyn Factory) {
    let s = with_key(f);
    let d = delegation("d1", DelegationKind::Delegate);
    assert!(s.append_audit(0, &entry(0)).unwrap());
    assert!(taken(s.insert_delegation(&d, Some(&append(0)))));
    assert!(s.delegation("d1").unwrap().is_none(), "refused whole");
    assert!(s.insert_delegation(&d, Some(&append(1))).unwrap());
    assert!(s.audit_entry(1).unwrap().is_some());
    assert!(!s.insert_delegation(&d, None).unwrap(), "an id is taken once");
    assert_eq!(s.delegation("d1").unwrap(), Some(d.clone()));
    let mut other = delegation("d2", DelegationKind::Transfer);
    other.key_id = "k9".into();
    assert!(s.insert_delegation(&other, None).unwrap());
    assert_eq!(s.delegations_of_key("k1").unwrap(), vec![d.clone()]);
    assert_eq!(s.open_delegations().unwrap().len(), 2);

    // Accept: one of two racers at the same rev wins; the loser writes nothing.
    let accepted = next(&d, |d| {
        d.status = DelegationStatus::AwaitingShare;
        d.device_id = Some("dev2".into());
    });
    let rival = next(&d, |d| d.device_id = Some("dev3".into()));
    assert_eq!(s.change_delegation(change(&accepted)).unwrap(), DelegationOutcome::Done);
    assert_eq!(s.change_delegation(change(&rival)).unwrap(), DelegationOutcome::Raced);
    assert_eq!(s.delegation("d1").unwrap(), Some(accepted.clone()));
    // A taken audit number refuses the step whole, its secrets too.
    let shared = next(&accepted, |d| d.status = DelegationStatus::AwaitingPin);
    let step =
        |a| DelegationChange { put_secrets: vec![(SecretKind::DelegateShare, D_SHARE)], audit: a, ..change(&shared) };
    let (a1, a2) = (append(1), append(2));
    assert!(taken(s.change_delegation(step(Some(&a1)))));
    assert_eq!(s.delegation("d1").unwrap(), Some(accepted.clone()));
    assert!(s.delegation_secret("d1", SecretKind::DelegateShare).unwrap().is_none());
    assert_eq!(s.change_delegation(step(Some(&a2))).unwrap(), DelegationOutcome::Done);
    assert_eq!(s.delegation_secret("d1", SecretKind::DelegateShare).unwrap().as_deref(), Some(D_SHARE));
    assert!(s.audit_entry(2).unwrap().is_some());
    // Only a delegation's own kinds; a key's secrets are not reachable through it.
    let bad = next(&shared, |_| {});
    let wrong_kind = DelegationChange { put_secrets: vec![(SecretKind::Share, D_SHARE)], ..change(&bad) };
    assert!(refused(s.change_delegation(wrong_kind)));
    assert!(s.delegation_secret("d1", SecretKind::Share).unwrap().is_none());
    assert!(s.delegation_secret("k1", SecretKind::DelegateShare).unwrap().is_none());
    assert_eq!(s.change_delegation(change(&next(&d, |_| {}))).unwrap(), DelegationOutcome::Raced, "stale rev");
    let missing = delegation("nope", DelegationKind::Delegate);
    assert_eq!(s.change_delegation(change(&next(&missing, |_| {}))).unwrap(), DelegationOutcome::Raced);
}

pub fn ending_a_delegation_erases_its_secrets(f: &dyn Factory) {
    let (s, d) = with_active(f, DelegationKind::Delegate);
    assert_eq!(s.delegation_secret("d1", SecretKind::DelegatePinVerifier).unwrap().as_deref(), Some(D_VERIFIER));
    assert!(s.delegation_secret("d1", SecretKind::DelegateHandover).unwrap().is_none(), "erased at activation");
    s.flush_blocking().unwrap();
    assert_ne!(f.on_disk(&s, D_SHARE), Some(false), "the delegate's share is on disk while it lives");
    assert_ne!(f.on_disk(&s, D_HANDOVER), Some(true), "the handover is gone from the files once activated");
    assert!(s.secret_entries().unwrap().iter().any(|e| e.owner == "d1" && e.kind == SecretKind::DelegateShare));
    // An ended delegation takes no secrets.
    let revoked = next(&d, |d| {
        d.status = DelegationStatus::Revoked;
        d.end_reason = Some("revoked".into());
    });
    let with_secret = DelegationChange { put_secrets: vec![(SecretKind::DelegateShare, D_SHARE)], ..change(&revoked) };
    assert!(refused(s.change_delegation(with_secret)));
    // Revocation erases every secret, named or not, from reads and from the files.
    assert_eq!(s.change_delegation(change(&revoked)).unwrap(), DelegationOutcome::Done);
    assert_ne!(f.on_disk(&s, D_SHARE), Some(true), "no copy of the delegate's share is left on disk");
    assert_ne!(f.on_disk(&s, D_VERIFIER), Some(true), "nor of its verifier");
    for kind in SecretKind::DELEGATION {
        assert!(s.delegation_secret("d1", kind).unwrap().is_none());
    }
    assert!(s.secret_entries().unwrap().iter().all(|e| e.owner != "d1"), "nothing for a rotation to find");
    assert_eq!(s.delegation("d1").unwrap().unwrap().status, DelegationStatus::Revoked);
    assert!(s.open_delegations().unwrap().is_empty());
    // Final: it moves no more.
    assert_eq!(s.change_delegation(change(&next(&revoked, |_| {}))).unwrap(), DelegationOutcome::Raced);
    // The key's own secrets were not touched.
    assert_eq!(s.key_secret("k1", SecretKind::Share).unwrap().as_deref(), Some(SHARE));
    let restarted = f.restart(s);
    assert_eq!(restarted.delegation("d1").unwrap().unwrap().status, DelegationStatus::Revoked, "durable");
}

pub fn a_delegates_pin_counter_is_its_own(f: &dyn Factory) {
    let (s, d) = with_active(f, DelegationKind::Delegate);
    let counted = s.count_delegate_pin_failure("d1", 0, 3, Some(&append(0))).unwrap().expect("counted");
    assert_eq!(counted.pin, PinState { failures: 1, locked: false });
    assert!(s.audit_entry(0).unwrap().is_some());
    assert_eq!(pin(&*s, "k1"), PinState::default(), "the owner's counter did not move");
    assert!(s.count_delegate_pin_failure("d1", 0, 3, None).unwrap().is_none(), "stale expected value");
    assert!(taken(s.count_delegate_pin_failure("d1", 1, 3, Some(&append(0)))));
    // A change of the record does not lower the counter.
    let edited = next(&d, |d| {
        d.label = Some("renamed".into());
        d.pin = PinState::default();
    });
    assert_eq!(s.change_delegation(change(&edited)).unwrap(), DelegationOutcome::Done);
    assert_eq!(s.delegation("d1").unwrap().unwrap().pin.failures, 1);
    s.count_delegate_pin_failure("d1", 1, 3, None).unwrap().unwrap();
    let locked = s.count_delegate_pin_failure("d1", 2, 3, None).unwrap().unwrap();
    assert_eq!(locked.pin, PinState { failures: 3, locked: true });
    assert!(s.count_delegate_pin_failure("d1", 3, 3, None).unwrap().is_none());
    assert_eq!(s.reset_delegate_pin_failures("d1").unwrap(), PinReset::Locked);
    assert_eq!(s.unlock_delegate_pin("d1").unwrap(), Some(true));
    assert_eq!(s.unlock_delegate_pin("d1").unwrap(), Some(false));
    s.count_delegate_pin_failure("d1", 0, 3, None).unwrap().unwrap();
    assert_eq!(s.reset_delegate_pin_failures("d1").unwrap(), PinReset::Done);
    assert_eq!(s.delegation("d1").unwrap().unwrap().pin, PinState::default());
    assert_eq!(s.reset_delegate_pin_failures("nope").unwrap(), PinReset::Gone);
    assert_eq!(s.unlock_delegate_pin("nope").unwrap(), None);
    // Racers at one expected value: one counts.
    let wins = std::thread::scope(|scope| {
        let racers: Vec<_> =
            (0..6).map(|_| scope.spawn(|| s.count_delegate_pin_failure("d1", 0, 5, None).unwrap().is_some())).collect();
        racers.into_iter().map(|r| r.join().unwrap()).filter(|won| *won).count()
    });
    assert_eq!(wins, 1);
    let _ = crate::store::conformance::block_on(s.flush());
    let restarted = f.restart(s);
    assert_eq!(restarted.delegation("d1").unwrap().unwrap().pin.failures, 1, "counted durably");
}

pub fn a_transfer_hands_the_key_over_in_one_step(f: &dyn Factory) {
    let (s, d) = with_active(f, DelegationKind::Transfer);
    s.count_pin_failure("k1", 0, 5, None).unwrap().unwrap();
    s.flush_blocking().unwrap();
    let done = next(&d, |d| d.status = DelegationStatus::Active);
    let step = |a| DelegationChange {
        erase_secrets: vec![SecretKind::DelegateShare, SecretKind::DelegateHandover],
        transfer: Some(KeyTransfer {
            share_blob: b"new-owner-share-0123456789",
            verifier_blob: b"new-owner-verifier-012345",
            recovery_blob: Some(b"new-owner-recovery-0123456"),
        }),
        audit: a,
        ..change(&done)
    };
    assert!(s.append_audit(0, &entry(0)).unwrap());
    let (a0, a1) = (append(0), append(1));
    assert!(taken(s.change_delegation(step(Some(&a0)))));
    assert_eq!(s.key("k1").unwrap().unwrap().device_id, "dev1", "refused whole");
    assert_eq!(s.key_secret("k1", SecretKind::Share).unwrap().as_deref(), Some(SHARE));
    assert_eq!(s.change_delegation(step(Some(&a1))).unwrap(), DelegationOutcome::Done);
    let key = s.key("k1").unwrap().unwrap();
    assert_eq!((key.device_id.as_str(), key.pin), ("dev2", PinState::default()));
    assert_eq!(s.key_secret("k1", SecretKind::Share).unwrap().as_deref(), Some(&b"new-owner-share-0123456789"[..]));
    assert_eq!(
        s.key_secret("k1", SecretKind::PinVerifier).unwrap().as_deref(),
        Some(&b"new-owner-verifier-012345"[..])
    );
    assert!(s.delegation_secret("d1", SecretKind::DelegateShare).unwrap().is_none());
    assert_ne!(f.on_disk(&s, SHARE), Some(true), "the old owner's share is erased");
    assert_ne!(f.on_disk(&s, VERIFIER), Some(true), "and its verifier");
    assert_ne!(f.on_disk(&s, RECOVERY), Some(true), "and its recovery key");
    assert_eq!(
        s.key_secret("k1", SecretKind::RecoveryKey).unwrap().as_deref(),
        Some(&b"new-owner-recovery-0123456"[..]),
        "the new owner's recovery key"
    );
    assert_eq!(s.keys_of_device("dev2").unwrap().len(), 1);
    assert!(s.keys_of_device("dev1").unwrap().is_empty());
    // A revoked key takes no transfer.
    let s2 = with_active(f, DelegationKind::Transfer);
    s2.0.revoke("k1", "key_compromise", None).unwrap().unwrap();
    let d2 = s2.0.delegation("d1").unwrap().unwrap();
    assert_eq!(d2.status, DelegationStatus::Revoked, "ended with its key");
    let t = KeyTransfer { share_blob: b"x", verifier_blob: b"y", recovery_blob: None };
    let late = next(&d2, |d| d.status = DelegationStatus::Active);
    assert_eq!(
        s2.0.change_delegation(DelegationChange { transfer: Some(t), ..change(&late) }).unwrap(),
        DelegationOutcome::Raced
    );
    let restarted = f.restart(s);
    assert_eq!(restarted.key("k1").unwrap().unwrap().device_id, "dev2", "durable");
}

pub fn a_key_revocation_ends_its_delegations_and_erases_their_shares(f: &dyn Factory) {
    let (s, _) = with_active(f, DelegationKind::Delegate);
    let pending = delegation("d2", DelegationKind::Delegate);
    assert!(s.insert_delegation(&pending, None).unwrap());
    s.flush_blocking().unwrap();
    s.revoke("k1", "key_compromise", Some(&append(0))).unwrap().unwrap();
    for id in ["d1", "d2"] {
        let d = s.delegation(id).unwrap().unwrap();
        assert_eq!((d.status, d.end_reason.as_deref()), (DelegationStatus::Revoked, Some("key_revoked")), "{id}");
    }
    assert!(s.delegation_secret("d1", SecretKind::DelegateShare).unwrap().is_none());
    assert_ne!(f.on_disk(&s, D_SHARE), Some(true), "the delegate's share is gone from the files");
    assert!(s.secret_entries().unwrap().iter().all(|e| e.owner != "d1"));
    assert!(s.open_delegations().unwrap().is_empty());
    let restarted = f.restart(s);
    assert_eq!(restarted.delegation("d1").unwrap().unwrap().status, DelegationStatus::Revoked);
}

pub fn the_active_delegation_of_a_device(f: &dyn Factory) {
    let (s, d) = with_active(f, DelegationKind::Delegate);
    assert_eq!(s.delegation_of_device("k1", "dev2").unwrap().map(|d| d.id), Some("d1".into()));
    assert!(s.delegation_of_device("k1", "dev3").unwrap().is_none());
    assert!(s.delegation_of_device("k2", "dev2").unwrap().is_none());
    let revoked = next(&d, |d| d.status = DelegationStatus::Revoked);
    s.change_delegation(change(&revoked)).unwrap();
    let found = s.delegation_of_device("k1", "dev2").unwrap().unwrap();
    assert_eq!(found.status, DelegationStatus::Revoked, "an ended one is still found, to say so");
}
