//! Conformance checks of the key steps: activation, the PIN counter, the verifier,
//! revocation and erasure, edits, certificates.

use super::*;

pub fn activation_is_once_only_and_all_or_nothing(f: &dyn Factory) {
    let s = f.fresh();
    s.put_enrollment(&enrollment("e1")).unwrap();
    assert_eq!(s.enrollment("e1").unwrap(), Some(enrollment("e1")));
    assert_eq!(s.enrollment("nope").unwrap(), None);
    // The audit entry's number is taken: nothing at all is written.
    assert!(s.append_audit(0, &entry(0)).unwrap());
    assert!(taken(s.activate(&key("k0", "e1"), b"s", b"v", Some(&append(0)))));
    assert_eq!(s.enrollment("e1").unwrap().unwrap().state, EnrollmentState::Pending);
    assert!(s.key("k0").unwrap().is_none() && s.key_secret("k0", SecretKind::Share).unwrap().is_none());

    assert_eq!(
        s.activate(&key("k1", "e1"), b"share-1", b"verifier-1", Some(&append(1))).unwrap(),
        ActivateOutcome::Done
    );
    assert_eq!(s.audit_entry(1).unwrap(), Some(entry(1)), "the activation's entry");
    assert_eq!(s.enrollment("e1").unwrap().unwrap().state, EnrollmentState::Activated { key_id: "k1".into() });
    assert_eq!(s.key("k1").unwrap(), Some(key("k1", "e1")));
    assert_eq!(s.key_secret("k1", SecretKind::Share).unwrap().as_deref(), Some(&b"share-1"[..]));
    assert_eq!(s.key_secret("k1", SecretKind::PinVerifier).unwrap().as_deref(), Some(&b"verifier-1"[..]));

    // A second phone on the same code loses and writes nothing, its entry neither.
    assert_eq!(s.activate(&key("k2", "e1"), b"s", b"v", Some(&append(2))).unwrap(), ActivateOutcome::AlreadyActivated);
    assert!(s.key("k2").unwrap().is_none() && s.key_secret("k2", SecretKind::Share).unwrap().is_none());
    assert!(s.audit_entry(2).unwrap().is_none());
    assert_eq!(s.activate(&key("k3", "nope"), b"s", b"v", None).unwrap(), ActivateOutcome::NoSuchEnrollment);
    assert_eq!(s.keys_of_device("dev1").unwrap().iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["k1"]);
    assert!(s.keys_of_device("dev2").unwrap().is_empty());
}

pub fn pin_counter_rises_by_cas_and_falls_only_by_success_or_unlock(f: &dyn Factory) {
    let s = with_key(f);
    let counted = s.count_pin_failure("k1", 0, 3, Some(&append(0))).unwrap().expect("counted");
    assert_eq!(counted.pin, PinState { failures: 1, locked: false });
    assert!(s.audit_entry(0).unwrap().is_some(), "with its audit entry");
    // A stale expected value, or a taken entry number: nothing changes.
    assert!(s.count_pin_failure("k1", 0, 3, None).unwrap().is_none());
    assert!(taken(s.count_pin_failure("k1", 1, 3, Some(&append(0)))));
    assert_eq!(pin(&*s, "k1").failures, 1);
    // Edits may not lower it.
    assert!(refused(s.edit_key("k1", &mut |k| {
        k.pin.failures = 0;
        true
    })));
    assert_eq!(pin(&*s, "k1").failures, 1);
    // Up to the limit, then locked; a locked key counts no more.
    s.count_pin_failure("k1", 1, 3, None).unwrap().unwrap();
    let locked = s.count_pin_failure("k1", 2, 3, None).unwrap().unwrap();
    assert_eq!(locked.pin, PinState { failures: 3, locked: true });
    assert!(s.count_pin_failure("k1", 3, 3, None).unwrap().is_none());
    // A success cannot reset a locked key, nor can an edit unlock it.
    assert_eq!(s.reset_pin_failures("k1").unwrap(), PinReset::Locked);
    assert!(refused(s.edit_key("k1", &mut |k| {
        k.pin.locked = false;
        true
    })));
    assert_eq!(pin(&*s, "k1"), PinState { failures: 3, locked: true });
    // The admin's unlock does.
    assert_eq!(s.unlock_pin("k1").unwrap(), Some(true));
    assert_eq!(pin(&*s, "k1"), PinState::default());
    assert_eq!(s.unlock_pin("k1").unwrap(), Some(false));
    // A success resets an unlocked counter.
    s.count_pin_failure("k1", 0, 3, None).unwrap().unwrap();
    assert_eq!(s.reset_pin_failures("k1").unwrap(), PinReset::Done);
    assert_eq!(pin(&*s, "k1"), PinState::default());
    assert_eq!(s.reset_pin_failures("nope").unwrap(), PinReset::Gone);
    assert_eq!(s.unlock_pin("nope").unwrap(), None);
    assert!(s.count_pin_failure("nope", 0, 3, None).unwrap().is_none());
}

pub fn concurrent_pin_failures_count_once_per_expected_value(f: &dyn Factory) {
    let s = with_key(f);
    let wins = std::thread::scope(|scope| {
        let racers: Vec<_> =
            (0..8).map(|_| scope.spawn(|| s.count_pin_failure("k1", 0, 5, None).unwrap().is_some())).collect();
        racers.into_iter().map(|r| r.join().unwrap()).filter(|won| *won).count()
    });
    assert_eq!(wins, 1, "eight racers on one counter value: one counts");
    assert_eq!(pin(&*s, "k1").failures, 1);
}

pub fn replacing_the_verifier_resets_the_counter_and_drops_the_old(f: &dyn Factory) {
    let s = with_key(f);
    s.count_pin_failure("k1", 0, 3, None).unwrap().unwrap();
    assert!(s.replace_verifier("k1", b"verifier-2").unwrap());
    assert_ne!(f.on_disk(&s, VERIFIER), Some(true), "the old verifier is destroyed");
    assert_eq!(pin(&*s, "k1"), PinState::default());
    assert_eq!(s.key_secret("k1", SecretKind::PinVerifier).unwrap().as_deref(), Some(&b"verifier-2"[..]));
    assert_eq!(s.key_secret("k1", SecretKind::Share).unwrap().as_deref(), Some(SHARE), "the share stays");
    assert!(!s.replace_verifier("nope", b"v").unwrap());
}

pub fn a_pin_reset_replaces_verifier_and_recovery_key_once(f: &dyn Factory) {
    let s = with_key(f);
    let (new_verifier, new_recovery) =
        (&b"wrapped-verifier-after-reset-01"[..], &b"wrapped-recovery-after-reset-01"[..]);
    let commit = |code: &'static str, old: &'static [u8], audit| PinResetCommit {
        code_sha256: code,
        old_recovery: old,
        verifier_blob: new_verifier,
        recovery_blob: new_recovery,
        audit,
    };
    // No open reset: nothing is written.
    assert!(!s.complete_pin_reset("k1", &commit("c1", RECOVERY, None)).unwrap());
    for _ in 0..3 {
        s.count_pin_failure("k1", pin(&*s, "k1").failures, 3, None).unwrap().unwrap();
    }
    assert!(pin(&*s, "k1").locked);
    let open =
        crate::model::key::PinResetState { code_sha256: "c1".into(), opened_at: 1, expires_at: 2, wrong_codes: 0 };
    s.edit_key("k1", &mut |k| {
        k.pin_reset = Some(open.clone());
        true
    })
    .unwrap()
    .unwrap();
    // Another code, another recovery key on record, a taken audit number: nothing.
    assert!(!s.complete_pin_reset("k1", &commit("c2", RECOVERY, None)).unwrap());
    assert!(!s.complete_pin_reset("k1", &commit("c1", b"some-other-recovery-blob-xyz", None)).unwrap());
    assert!(s.append_audit(0, &entry(0)).unwrap());
    let (a0, a1) = (append(0), append(1));
    assert!(taken(s.complete_pin_reset("k1", &commit("c1", RECOVERY, Some(&a0)))));
    assert!(pin(&*s, "k1").locked, "refused whole");
    assert_eq!(s.key_secret("k1", SecretKind::RecoveryKey).unwrap().as_deref(), Some(RECOVERY));

    s.flush_blocking().unwrap();
    assert_ne!(f.on_disk(&s, RECOVERY), Some(false), "the recovery key is on disk before");
    assert!(s.complete_pin_reset("k1", &commit("c1", RECOVERY, Some(&a1))).unwrap());
    assert!(s.audit_entry(1).unwrap().is_some(), "with its audit entry");
    assert_ne!(f.on_disk(&s, RECOVERY), Some(true), "the old recovery key is erased");
    assert_ne!(f.on_disk(&s, VERIFIER), Some(true), "and the old verifier");
    let after = s.key("k1").unwrap().unwrap();
    assert_eq!((after.pin, after.pin_reset.as_ref()), (PinState::default(), None), "unlocked, the reset closed");
    let kinds = [SecretKind::PinVerifier, SecretKind::RecoveryKey, SecretKind::Share];
    assert_eq!(
        s.key_secrets("k1", &kinds).unwrap(),
        vec![Some(new_verifier.to_vec()), Some(new_recovery.to_vec()), Some(SHARE.to_vec())],
        "the share stays"
    );
    // Once only.
    assert!(!s.complete_pin_reset("k1", &commit("c1", RECOVERY, None)).unwrap());
    // Durable: a restart finds the new state.
    let s = f.restart(s);
    assert_eq!(s.key_secret("k1", SecretKind::RecoveryKey).unwrap().as_deref(), Some(new_recovery));
    assert_eq!(s.key("k1").unwrap().unwrap().pin_reset, None);
    assert!(
        s.secret_entries().unwrap().iter().any(|e| e.owner == "k1" && e.kind == SecretKind::RecoveryKey),
        "a KEK rotation finds the recovery key"
    );
    assert!(!s.complete_pin_reset("nope", &commit("c1", RECOVERY, None)).unwrap());
}

pub fn revocation_erases_the_secrets_with_its_audit_entry(f: &dyn Factory) {
    let s = with_key(f);
    assert!(refused(s.edit_key("k1", &mut |k| {
        k.status = KeyStatus::Revoked;
        true
    })));
    assert!(s.append_audit(0, &entry(0)).unwrap());
    assert!(taken(s.revoke("k1", "key_compromise", Some(&append(0)))));
    assert_eq!(s.key("k1").unwrap().unwrap().status, KeyStatus::Active, "refused whole");
    assert!(s.key_secret("k1", SecretKind::Share).unwrap().is_some());
    let both = [SecretKind::PinVerifier, SecretKind::Share];
    assert_eq!(s.key_secrets("k1", &both).unwrap(), vec![Some(VERIFIER.to_vec()), Some(SHARE.to_vec())], "in order");
    let (rec, blobs) = s.key_with_secrets("k1", &both).unwrap().expect("the key");
    assert_eq!((rec, blobs), (s.key("k1").unwrap().unwrap(), vec![Some(VERIFIER.to_vec()), Some(SHARE.to_vec())]));
    assert!(s.key_with_secrets("nope", &both).unwrap().is_none());

    s.flush_blocking().unwrap();
    assert_ne!(f.on_disk(&s, SHARE), Some(false), "the share is on disk while the key lives");
    let rec = s.revoke("k1", "key_compromise", Some(&append(1))).unwrap().expect("revoked");
    assert_ne!(f.on_disk(&s, SHARE), Some(true), "revocation leaves no copy of the share on disk");
    assert_ne!(f.on_disk(&s, VERIFIER), Some(true), "nor of the verifier");
    assert_ne!(f.on_disk(&s, RECOVERY), Some(true), "nor of the recovery key");
    assert!(s.key_secret("k1", SecretKind::RecoveryKey).unwrap().is_none());
    assert_eq!((rec.status, rec.revocation_reason.as_deref()), (KeyStatus::Revoked, Some("key_compromise")));
    let at = rec.revoked_at.expect("the revocation's time is kept");
    assert!((at - crate::clock::now()).abs() < 60, "revoked now: {at}");
    assert_eq!(s.key("k1").unwrap(), Some(rec));
    assert!(s.audit_entry(1).unwrap().is_some());
    assert!(s.key_secret("k1", SecretKind::Share).unwrap().is_none(), "the share is gone");
    assert!(s.key_secret("k1", SecretKind::PinVerifier).unwrap().is_none(), "the verifier is gone");
    assert_eq!(s.key_secrets("k1", &both).unwrap(), vec![None, None]);
    assert_eq!(
        s.key_with_secrets("k1", &both).unwrap().map(|(k, b)| (k.status, b)),
        Some((KeyStatus::Revoked, vec![None, None]))
    );
    assert!(s.secret_entries().unwrap().iter().all(|e| e.owner != "k1"), "no copy left for a rotation to find either");
    assert!(s.revoke("nope", "x", None).unwrap().is_none());
}

pub fn key_edits_and_listings(f: &dyn Factory) {
    let s = with_key(f);
    s.put_enrollment(&enrollment("e2")).unwrap();
    let mut other = key("k2", "e2");
    other.device_id = "dev2".into();
    s.activate(&other, b"share-2", b"verifier-2", None).unwrap();

    let grant = PlatformGrant { platform: "P2".into(), until: Some(50), once: true };
    let edited = s
        .edit_key("k1", &mut |k| {
            k.platforms.push(grant.clone());
            k.status = KeyStatus::Suspended;
            k.suspension = Some(crate::model::key::Suspension {
                reason: "lost".into(),
                by: "owner".into(),
                at: 77,
                certificate_held: true,
            });
            k.expiry_notified = Some("0a1b".into());
            true
        })
        .unwrap()
        .unwrap();
    assert_eq!(s.key("k1").unwrap(), Some(edited.clone()));
    // The suspension and the expiry notice survive a restart as written.
    crate::store::conformance::block_on(s.flush()).unwrap();
    let s = f.restart(s);
    assert_eq!(s.key("k1").unwrap(), Some(edited.clone()));
    assert_eq!(edited.suspension.as_ref().map(|x| (x.by.as_str(), x.at)), Some(("owner", 77)));
    assert_eq!(edited.expiry_notified.as_deref(), Some("0a1b"));
    assert!(edited.platforms.contains(&grant) && edited.status == KeyStatus::Suspended);
    assert_eq!(s.key_secret("k1", SecretKind::Share).unwrap().as_deref(), Some(SHARE), "secrets stay");
    // Not written when the change says so; nothing for a missing key.
    s.edit_key("k1", &mut |k| {
        k.ca = "other".into();
        false
    })
    .unwrap();
    assert_eq!(s.key("k1").unwrap().unwrap().ca, "local");
    assert!(s.edit_key("nope", &mut |_| true).unwrap().is_none());
    // The generic form passes the change's error through and writes nothing.
    let failed = s.update_key::<&str>("k1", |k| {
        k.ca = "other".into();
        Err("no")
    });
    assert_eq!(failed.unwrap(), Err("no"));
    assert_eq!(s.key("k1").unwrap().unwrap().ca, "local");

    let mut all: Vec<String> = s.keys_matching(|_| true).unwrap().into_iter().map(|k| k.id).collect();
    all.sort();
    assert_eq!(all, ["k1", "k2"]);
    let suspended = s.keys_where(&mut |k| k.status == KeyStatus::Suspended).unwrap();
    assert_eq!(suspended.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["k1"]);
    assert_eq!(s.keys_of_device("dev2").unwrap(), vec![other]);
}

pub fn certificates_and_chains_come_back_whole(f: &dyn Factory) {
    let s = with_key(f);
    s.put_enrollment(&enrollment("e2")).unwrap();
    s.activate(&key("k2", "e2"), b"share-2", b"verifier-2", None).unwrap();
    for id in ["k1", "k2"] {
        let cert = certificate(id);
        let edited = s
            .edit_key(id, &mut |k| {
                k.certificate = Some(cert.clone());
                true
            })
            .unwrap()
            .unwrap();
        assert_eq!(edited.certificate.as_ref(), Some(&cert));
        assert_eq!(s.key(id).unwrap().unwrap().certificate, Some(cert));
    }
    assert!(s.keys_matching(|_| true).unwrap().iter().all(|k| k.certificate.as_ref().unwrap().chain_b64.len() == 2));
    let revoked = s.revoke("k2", "cessation", None).unwrap().unwrap();
    assert_eq!(revoked.certificate, Some(certificate("k2")), "revoke answers the whole record");
    let counted = s.count_pin_failure("k1", 0, 3, None).unwrap().unwrap();
    assert_eq!(counted.certificate, Some(certificate("k1")));
}

pub fn certificate_ends_are_found_in_their_window(f: &dyn Factory) {
    let s = with_key(f);
    for (id, enr) in [("k2", "e2"), ("k3", "e3")] {
        s.put_enrollment(&enrollment(enr)).unwrap();
        s.activate(&key(id, enr), b"share", b"verifier", None).unwrap();
    }
    let ending = |s: &Arc<dyn Storage>, after, until| -> Vec<String> {
        s.keys_ending(after, until).unwrap().into_iter().map(|k| k.id).collect()
    };
    assert!(ending(&s, i64::MIN, i64::MAX).is_empty(), "no certificate yet");
    let set = |s: &Arc<dyn Storage>, id: &str, not_after: i64, root: &str| {
        let mut cert = certificate_ending(id, not_after);
        cert.chain_b64[1] = root.into();
        s.edit_key(id, &mut |k| {
            k.certificate = Some(cert.clone());
            true
        })
        .unwrap()
        .unwrap();
    };
    set(&s, "k2", 200, "Um9vdA==");
    set(&s, "k1", 100, "Um9vdA==");
    // After is exclusive, until inclusive; by the end, then the id.
    assert_eq!(ending(&s, 0, 150), ["k1"]);
    assert_eq!(ending(&s, 0, 200), ["k1", "k2"]);
    assert_eq!(ending(&s, 100, 200), ["k2"]);
    assert!(ending(&s, 200, 10_000).is_empty());
    assert!(ending(&s, 150, 150).is_empty() && ending(&s, 300, 0).is_empty(), "an empty window");
    // The whole record comes back, chain and all.
    assert_eq!(s.keys_ending(0, 150).unwrap()[0], s.key("k1").unwrap().unwrap());
    // A renewal moves the end: the old one no longer finds the key.
    set(&s, "k1", 300, "T3RoZXIgcm9vdA==");
    assert_eq!(ending(&s, 0, 150), Vec::<String>::new());
    assert_eq!(ending(&s, 0, 1_000), ["k2", "k1"]);
    // Whatever the status (the caller filters): a revoked key is still found.
    s.revoke("k2", "cessation", None).unwrap().unwrap();
    assert_eq!(ending(&s, 150, 250), ["k2"]);
    assert_eq!(s.ca_roots().unwrap(), ["T3RoZXIgcm9vdA==", "Um9vdA=="]);
    // An end before 1970 (filed under day 0 on sled) is still found by its window.
    set(&s, "k3", -10, "Um9vdA==");
    assert_eq!(ending(&s, -100, -5), ["k3"]);
    assert!(ending(&s, -5, 50).is_empty());
    // Durable with the records.
    crate::store::conformance::block_on(s.flush()).unwrap();
    let s = f.restart(s);
    assert_eq!(ending(&s, 0, 1_000), ["k2", "k1"]);
    assert_eq!(ending(&s, 250, 300), ["k1"]);
    assert_eq!(ending(&s, i64::MIN, 0), ["k3"]);
}
