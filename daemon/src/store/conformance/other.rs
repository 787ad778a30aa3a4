//! Conformance checks of the audit chain, seals, daemon keys, the callback outbox, the
//! secrets walk of KEK rotation, durability across a restart, group commit, lifecycle and
//! the adapters' key-value state.

use super::*;

pub fn audit_chain_and_checkpoints(f: &dyn Factory) {
    let s = f.fresh();
    assert!(s.last_audit().unwrap().is_none() && s.last_audit_checkpoint().unwrap().is_none());
    for seq in 0..5 {
        assert!(s.append_audit(seq, &entry(seq)).unwrap());
    }
    assert!(!s.append_audit(3, &entry(99)).unwrap(), "a taken number is refused");
    assert_eq!(s.audit_entry(3).unwrap(), Some(entry(3)), "and the entry is not replaced");
    let from: Vec<(u64, Entry)> = s.audit_entries(2).map(Result::unwrap).collect();
    assert_eq!(from, (2..5).map(|n| (n, entry(n))).collect::<Vec<_>>());
    assert_eq!(s.last_audit().unwrap(), Some((4, entry(4))));
    assert!(s.audit_entry(5).unwrap().is_none());
    let cp = |seq| Checkpoint { seq, hash: format!("{seq:064x}"), at: 1, signature: "3045".into() };
    for seq in [4, 1, 3] {
        s.put_audit_checkpoint(seq, &cp(seq)).unwrap();
    }
    assert_eq!(s.audit_checkpoints().unwrap(), vec![cp(1), cp(3), cp(4)]);
    assert_eq!(s.audit_checkpoints_from(3).unwrap(), vec![cp(3), cp(4)]);
    assert_eq!(s.last_audit_checkpoint().unwrap(), Some(cp(4)));
    assert_eq!(s.audit_checkpoint_seqs().unwrap(), vec![1, 3, 4]);
}

pub fn seals_are_replaced_by_cas(f: &dyn Factory) {
    let s = f.fresh();
    assert!(s.seal_maker().unwrap().is_none());
    let maker = SealMakerRecord { ca: "local".into(), certificate_b64: "Y2VydA==".into(), chain_b64: vec![] };
    s.put_seal_maker(&maker).unwrap();
    assert_eq!(s.seal_maker().unwrap(), Some(maker));
    s.insert_seal(&seal("s1")).unwrap();
    s.insert_seal(&seal("s2")).unwrap();
    let mut next = seal("s1");
    next.name = "renamed".into();
    assert!(s.replace_seal(0, &next).unwrap());
    let stored = s.seal("s1").unwrap().unwrap();
    assert_eq!((stored.name.as_str(), stored.rev), ("renamed", 1));
    assert!(!s.replace_seal(0, &seal("s1")).unwrap(), "a stale rev is refused");
    assert_eq!(s.seal("s1").unwrap().unwrap().name, "renamed");
    assert!(!s.replace_seal(0, &seal("nope")).unwrap());
    assert_eq!(s.seals().unwrap().len(), 2);
    assert!(s.seal("nope").unwrap().is_none());
}

pub fn daemon_keys_are_created_once(f: &dyn Factory) {
    let s = f.fresh();
    assert!(s.daemon_key("audit").unwrap().is_none());
    let first = DaemonKeyRecord { name: "audit".into(), public_key: "04aa".into(), created_at: 1 };
    assert_eq!(s.insert_daemon_key(&first, b"wrapped-1").unwrap(), (first.clone(), b"wrapped-1".to_vec()));
    let second = DaemonKeyRecord { public_key: "04bb".into(), ..first.clone() };
    assert_eq!(
        s.insert_daemon_key(&second, b"wrapped-2").unwrap(),
        (first.clone(), b"wrapped-1".to_vec()),
        "the first wins"
    );
    assert_eq!(s.daemon_key("audit").unwrap(), Some((first, b"wrapped-1".to_vec())));
}

pub fn callback_outbox(f: &dyn Factory) {
    let s = f.fresh();
    assert!(s.callbacks().unwrap().is_empty());
    s.put_callback(&callback("t1")).unwrap();
    let mut retried = callback("t2");
    retried.attempts = 3;
    s.put_callback(&retried).unwrap();
    retried.attempts = 4;
    s.put_callback(&retried).unwrap();
    assert_eq!(s.callback("t2").unwrap(), Some(retried));
    assert_eq!(s.callbacks().unwrap().len(), 2);
    s.delete_callback("t1").unwrap();
    assert!(s.callback("t1").unwrap().is_none());
    s.delete_callback("t1").unwrap();
    assert_eq!(s.callbacks().unwrap().len(), 1);
}

/// At-least-once delivery from any number of senders: one lease at a time per record, only
/// its holder ends it, and a lease that ran out (its holder died) frees the record.
pub fn callback_leases_fence_their_holders(f: &dyn Factory) {
    let s = f.fresh();
    let mut cb = callback("t1");
    cb.next_at_ms = 1_000;
    s.put_callback(&cb).unwrap();
    assert!(s.lease_callback("t1", 999, 500).unwrap().is_none(), "not due yet");
    assert!(s.lease_callback("nothing", 5_000, 500).unwrap().is_none());
    let first = s.lease_callback("t1", 1_000, 500).unwrap().expect("due");
    assert_eq!(first.record, cb);
    assert!(s.lease_callback("t1", 1_200, 500).unwrap().is_none(), "leased: nobody else takes it");
    // The holder dies; its lease runs out and another sender takes the record.
    let second = s.lease_callback("t1", 1_500, 500).unwrap().expect("the lease ran out");
    assert_ne!(first.token, second.token);
    assert!(!s.finish_callback(&first).unwrap(), "a stale holder cannot end the record");
    let mut later = cb.clone();
    later.attempts = 1;
    later.next_at_ms = 9_000;
    assert!(!s.reschedule_callback(&first, &later).unwrap());
    assert_eq!(s.callback("t1").unwrap(), Some(cb.clone()), "the stale holder changed nothing");
    assert!(s.reschedule_callback(&second, &later).unwrap());
    assert_eq!(s.callback("t1").unwrap(), Some(later.clone()));
    assert!(s.lease_callback("t1", 8_999, 500).unwrap().is_none(), "rescheduled: due later");
    let third = s.lease_callback("t1", 9_000, 500).unwrap().expect("due again: the reschedule ended the lease");
    assert!(!s.finish_callback(&second).unwrap(), "an ended lease ends nothing more");
    assert!(s.finish_callback(&third).unwrap());
    assert!(s.callback("t1").unwrap().is_none(), "delivered: gone");
}

pub fn secrets_walk_and_swap_for_kek_rotation(f: &dyn Factory) {
    let s = with_key(f);
    s.insert_task(&task("t1", "P1", TaskStatus::Pending, 0), &[(SecretKind::TaskInput, b"task-in")], None, None)
        .unwrap();
    let dk = DaemonKeyRecord { name: "audit".into(), public_key: "04aa".into(), created_at: 1 };
    s.insert_daemon_key(&dk, b"daemon-blob").unwrap();
    let entries = s.secret_entries().unwrap();
    let mut found: Vec<(String, SecretKind, Vec<u8>)> =
        entries.iter().map(|e| (e.owner.clone(), e.kind, s.blob_of(e).unwrap())).collect();
    found.sort_by(|a, b| (&a.0, a.1.label()).cmp(&(&b.0, b.1.label())));
    assert_eq!(
        found,
        vec![
            ("daemon:audit".into(), SecretKind::DaemonKey, b"daemon-blob".to_vec()),
            ("k1".into(), SecretKind::PinVerifier, VERIFIER.to_vec()),
            ("k1".into(), SecretKind::RecoveryKey, RECOVERY.to_vec()),
            ("k1".into(), SecretKind::Share, SHARE.to_vec()),
            ("t1".into(), SecretKind::TaskInput, b"task-in".to_vec()),
        ]
    );
    let mut stale = Vec::new();
    for e in &entries {
        let (swapped, old) = s.replace_secret(e, format!("rewrapped-{}", e.owner).as_bytes()).unwrap();
        assert!(swapped);
        stale.extend(old);
        assert!(!s.replace_secret(e, b"late").unwrap().0, "an entry that changed is not swapped again");
    }
    s.erase_after_flush(&stale).unwrap();
    assert_eq!(s.key_secret("k1", SecretKind::Share).unwrap().as_deref(), Some(&b"rewrapped-k1"[..]));
    assert_eq!(s.key_secret("k1", SecretKind::RecoveryKey).unwrap().as_deref(), Some(&b"rewrapped-k1"[..]));
    assert_eq!(s.task_secret("t1", SecretKind::TaskInput).unwrap().as_deref(), Some(&b"rewrapped-t1"[..]));
    assert_eq!(s.daemon_key("audit").unwrap().unwrap().1, b"rewrapped-daemon:audit".to_vec());
    // A record revoked after the walk is left to its revocation.
    let share = s.secret_entries().unwrap().into_iter().find(|e| e.kind == SecretKind::Share).unwrap();
    s.revoke("k1", "x", None).unwrap().unwrap();
    assert!(!s.replace_secret(&share, b"resurrected").unwrap().0);
    assert!(s.key_secret("k1", SecretKind::Share).unwrap().is_none());
}

pub fn flushed_state_survives_a_restart(f: &dyn Factory) {
    let s = with_key(f);
    s.count_pin_failure("k1", 0, 3, Some(&append(0))).unwrap().unwrap();
    s.put_enrollment(&enrollment("e2")).unwrap();
    s.activate(&key("k2", "e2"), b"share-2", b"verifier-2", None).unwrap();
    s.revoke("k2", "superseded", None).unwrap().unwrap();
    s.insert_task(&task("t1", "P1", TaskStatus::Pending, 0), &[(SecretKind::TaskInput, b"in")], None, None).unwrap();
    s.transition(Transition {
        callback: Some(callback("t1")),
        ..Transition::of(&task("t1", "P1", TaskStatus::Completed, 1))
    })
    .unwrap();
    s.insert_seal(&seal("s1")).unwrap();
    s.put_audit_checkpoint(0, &Checkpoint { seq: 0, hash: "00".into(), at: 1, signature: "30".into() }).unwrap();
    block_on(s.flush()).unwrap();
    let s = f.restart(s);
    assert_eq!(pin(&*s, "k1").failures, 1, "a counted PIN failure survives");
    assert_eq!(s.key_secret("k1", SecretKind::Share).unwrap().as_deref(), Some(SHARE));
    let k2 = s.key("k2").unwrap().unwrap();
    assert_eq!(k2.status, KeyStatus::Revoked, "a revocation survives");
    assert!(s.key_secret("k2", SecretKind::Share).unwrap().is_none(), "and its share stays erased");
    assert_eq!(s.task("t1").unwrap().unwrap().status, TaskStatus::Completed, "a completed task survives");
    assert!(s.callback("t1").unwrap().is_some());
    assert_eq!(s.audit_entry(0).unwrap(), Some(entry(0)));
    assert!(s.seal("s1").unwrap().is_some() && s.last_audit_checkpoint().unwrap().is_some());
    assert_eq!(s.open_usage("P1").unwrap().tasks, 0, "the quota tally agrees with the stored tasks");
}

pub fn concurrent_flushes_share_syncs(f: &dyn Factory) {
    let s = f.fresh();
    let before = s.fsync_count();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let writers: Vec<_> = (0..32)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.put_enrollment(&enrollment(&format!("e{i}"))).unwrap();
                    s.flush().await.unwrap();
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
    });
    drop(runtime);
    let syncs = s.fsync_count() - before;
    assert!(syncs < 32, "32 concurrent flushes took {syncs} syncs");
    let s = f.restart(s);
    assert!((0..32).all(|i| s.enrollment(&format!("e{i}")).unwrap().is_some()), "every flushed write is durable");
}

pub fn lifecycle_failure_state_close_and_snapshot(f: &dyn Factory) {
    let s = with_key(f);
    assert!(!s.failed());
    assert_eq!(s.generation(), 0);
    assert!(!s.recover().unwrap(), "nothing to recover");
    s.probe();
    assert!(!s.failed());
    s.flush_blocking().unwrap();
    assert!(!s.snapshot().unwrap().is_empty());
    // A clean close leaves the store usable: later writes count.
    s.close().unwrap();
    s.put_enrollment(&enrollment("e2")).unwrap();
    block_on(s.flush()).unwrap();
    let s = f.restart(s);
    assert!(s.enrollment("e2").unwrap().is_some());
    assert_eq!(s.key_secret("k1", SecretKind::Share).unwrap().as_deref(), Some(SHARE));
}

pub fn plugin_kv_get_put_cas(f: &dyn Factory) {
    let s = f.fresh();
    assert_eq!(s.kv_get("local", b"index").unwrap(), None);
    s.kv_put("local", b"index", b"v1").unwrap();
    assert_eq!(s.kv_get("local", b"index").unwrap().as_deref(), Some(&b"v1"[..]));
    s.kv_put("local", b"index", b"v2").unwrap();
    assert_eq!(s.kv_get("local", b"index").unwrap().as_deref(), Some(&b"v2"[..]), "a put replaces");
    // Namespaces are kept apart, also where a key could be read as a namespace's suffix.
    assert_eq!(s.kv_get("other", b"index").unwrap(), None);
    assert_eq!(s.kv_get("loca", b"l\0index").unwrap(), None);
    s.kv_put("other", b"index", b"theirs").unwrap();
    assert_eq!(s.kv_get("local", b"index").unwrap().as_deref(), Some(&b"v2"[..]));
    // Compare-and-swap: from absent, losing against a stored value, winning with it.
    assert!(s.kv_cas("local", b"crl", None, b"c1").unwrap(), "absent → new");
    assert!(!s.kv_cas("local", b"crl", None, b"c-late").unwrap(), "absent expected, but there is a value");
    assert!(!s.kv_cas("local", b"crl", Some(b"stale"), b"c-late").unwrap(), "a stale expected value loses");
    assert_eq!(s.kv_get("local", b"crl").unwrap().as_deref(), Some(&b"c1"[..]), "and a loss writes nothing");
    assert!(s.kv_cas("local", b"crl", Some(b"c1"), b"c2").unwrap());
    assert!(!s.kv_cas("other", b"crl", Some(b"c2"), b"x").unwrap(), "another namespace's value is not this one's");
    assert_eq!(s.kv_get("other", b"crl").unwrap(), None);
    // Empty values and binary keys are values and keys like any other.
    assert!(s.kv_cas("local", b"\0\xff", None, b"").unwrap());
    assert_eq!(s.kv_get("local", b"\0\xff").unwrap().as_deref(), Some(&b""[..]));
    assert!(s.kv_cas("local", b"\0\xff", Some(b""), b"x").unwrap(), "an empty value is not an absent one");
    block_on(s.flush()).unwrap();
    let s = f.restart(s);
    assert_eq!(s.kv_get("local", b"index").unwrap().as_deref(), Some(&b"v2"[..]), "flushed values survive");
    assert_eq!(s.kv_get("local", b"crl").unwrap().as_deref(), Some(&b"c2"[..]));
    assert_eq!(s.kv_get("other", b"index").unwrap().as_deref(), Some(&b"theirs"[..]));
    assert!(!s.kv_cas("local", b"crl", Some(b"c1"), b"c3").unwrap(), "and compare as stored");
}
