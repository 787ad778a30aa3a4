//! The sled store's task tests: the quota tally, a transition with its audit entry and
//! certificate install as one transaction, old task records.

use super::*;

fn task(id: &str, platform: &str, expires_at: i64, message_len: usize) -> TaskRecord {
    let data = TaskData::Sign { message: "a".repeat(message_len), cms: false, signing_time: None };
    TaskRecord {
        token_sha256: "00".into(),
        display: TaskDisplay { title: "t".into(), detail: None },
        ..TaskRecord::pending(id.into(), TaskKind::Sign, platform.into(), data, 0, expires_at)
    }
}

fn finish(store: &Store, t: &TaskRecord, status: TaskStatus) -> TransitionOutcome {
    let mut next = t.clone();
    next.rev += 1;
    next.status = status;
    store.transition(Transition::of(&next)).unwrap()
}

#[test]
fn quota_tally_counts_open_tasks_and_a_refusal_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let quota = Some(OpenQuota { max_tasks: 2, max_bytes: 1 << 20 });
    let (a, b) = (task("t_a", "P1", 100, 10), task("t_b", "P1", 50, 10));
    assert_eq!(
        store.insert_task(&a, &[(SecretKind::TaskInput, b"wrapped")], quota, None).unwrap(),
        InsertOutcome::Done
    );
    assert_eq!(store.insert_task(&b, &[], quota, None).unwrap(), InsertOutcome::Done);
    let charged = store.task("t_a").unwrap().unwrap().charged_bytes;
    assert!(charged as usize >= encode(&a).len() + 7, "{charged}");
    let usage = store.open_usage("P1").unwrap();
    assert_eq!((usage.tasks, usage.earliest_expiry), (2, Some(50)));

    // Refused: nothing is written, the tally is unchanged, another platform is not affected.
    let c = task("t_c", "P1", 10, 10);
    assert!(
        matches!(store.insert_task(&c, &[(SecretKind::TaskInput, b"x")], quota, None).unwrap(), InsertOutcome::OverQuota { usage: u, .. } if u == usage)
    );
    assert_eq!(store.task("t_c").unwrap(), None);
    assert_eq!(store.task_secret("t_c", SecretKind::TaskInput).unwrap(), None);
    assert_eq!(store.open_usage("P1").unwrap(), usage);
    assert_eq!(store.insert_task(&task("t_d", "P2", 10, 10), &[], quota, None).unwrap(), InsertOutcome::Done);

    // A claim keeps the task open; its final state gives the slot back, once.
    let mut claimed = b.clone();
    claimed.rev = 1;
    claimed.status = TaskStatus::Claimed;
    claimed.charged_bytes = 0; // the caller's copy does not change the charge
    store.transition(Transition::of(&claimed)).unwrap();
    assert_eq!(store.open_usage("P1").unwrap(), usage);
    assert_eq!(finish(&store, &claimed, TaskStatus::Completed), TransitionOutcome::Done);
    assert_eq!(finish(&store, &claimed, TaskStatus::Expired), TransitionOutcome::Raced);
    let after = store.open_usage("P1").unwrap();
    assert_eq!((after.tasks, after.bytes, after.earliest_expiry), (1, charged, Some(100)));
    assert_eq!(store.insert_task(&c, &[], quota, None).unwrap(), InsertOutcome::Done);

    // The byte quota: a task that does not fit is refused with its size.
    let big = task("t_big", "P3", 10, 4000);
    let small = Some(OpenQuota { max_tasks: 10, max_bytes: 4096 });
    assert_eq!(store.insert_task(&task("t_s", "P3", 10, 100), &[], small, None).unwrap(), InsertOutcome::Done);
    assert!(
        matches!(store.insert_task(&big, &[], small, None).unwrap(), InsertOutcome::OverQuota { task_bytes, .. } if task_bytes > 4000)
    );

    // Purging a finished task leaves the tally alone; purging an open one takes it out.
    store.purge_task("t_b").unwrap();
    store.purge_task("t_s").unwrap();
    assert_eq!(store.open_usage("P3").unwrap(), OpenUsage::default());
    let before = store.open_usage("P1").unwrap();

    // A reopened store rebuilds the same tally from the tasks tree.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.open_usage("P1").unwrap(), before);
    assert_eq!(store.open_usage("P2").unwrap().tasks, 1);
}

fn csr_task(id: &str, rev: u64, status: TaskStatus) -> TaskRecord {
    let data = TaskData::Csr { key_id: "k1".into(), request_info: String::new(), renews: None };
    TaskRecord {
        token_sha256: "00".into(),
        display: TaskDisplay { title: "t".into(), detail: None },
        status,
        rev,
        key_id: Some("k1".into()),
        device_id: Some("dev1".into()),
        cosigned: true,
        cosign_nonces: vec!["ab".into()],
        ..TaskRecord::pending(id.into(), TaskKind::Csr, String::new(), data, 0, i64::MAX)
    }
}

/// Defect 8: a transition and the audit entry of its request are one transaction — a
/// transition that loses its race writes no entry, an entry that cannot be written
/// (its sequence number taken) leaves the task as it was, and a task's creation and
/// its entry go together the same way.
#[test]
fn task_completion_and_its_audit_entry_are_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.insert_task(&csr_task("t1", 0, TaskStatus::Claimed), &[], None, Some(&entry(0))).unwrap();
    assert!(store.audit_raw(0).unwrap().is_some(), "created with its entry");

    let done = csr_task("t1", 1, TaskStatus::Completed);
    let t = Transition { audit: Some(entry(1)), ..Transition::of(&done) };
    assert_eq!(store.transition(t).unwrap(), TransitionOutcome::Done);
    assert_eq!(store.task("t1").unwrap().unwrap().status, TaskStatus::Completed);
    assert!(store.audit_raw(1).unwrap().is_some(), "the completion's entry is there");

    // Lost the race (stale rev): neither the task nor the entry changes.
    let stale = csr_task("t1", 1, TaskStatus::Rejected);
    assert_eq!(
        store.transition(Transition { audit: Some(entry(2)), ..Transition::of(&stale) }).unwrap(),
        TransitionOutcome::Raced
    );
    assert!(store.audit_raw(2).unwrap().is_none(), "no entry for a transition that did not happen");
    assert_eq!(store.task("t1").unwrap().unwrap().status, TaskStatus::Completed);

    // The entry cannot be written: the whole transition is refused.
    let next = csr_task("t1", 2, TaskStatus::Failed);
    let err = store.transition(Transition { audit: Some(entry(1)), ..Transition::of(&next) }).unwrap_err();
    assert!(err.to_string().contains("sequence number already used"), "{err}");
    assert_eq!(store.task("t1").unwrap().unwrap().rev, 1, "the task is untouched");
    let err = store
        .insert_task(
            &csr_task("t2", 0, TaskStatus::Pending),
            &[(SecretKind::TaskInput, b"blob")],
            None,
            Some(&entry(0)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("sequence number already used"), "{err}");
    assert!(store.task("t2").unwrap().is_none() && store.task_secret("t2", SecretKind::TaskInput).unwrap().is_none());

    // A creation the platform's quota refuses writes no entry either.
    let full = Some(OpenQuota { max_tasks: 0, max_bytes: 1 << 20 });
    let refused = store.insert_task(&csr_task("t3", 0, TaskStatus::Pending), &[], full, Some(&entry(5))).unwrap();
    assert!(matches!(refused, InsertOutcome::OverQuota { .. }));
    assert!(store.audit_raw(5).unwrap().is_none() && store.task("t3").unwrap().is_none());

    // Without an entry a transition is as before.
    assert_eq!(store.transition(Transition::of(&next)).unwrap(), TransitionOutcome::Done);
}

/// Defect 8: completing a `csr` task installs the certificate in the same transaction —
/// the key is never active with the task still claimed, nor the reverse.
#[test]
fn csr_complete_installs_certificate_and_finishes_task_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_enrollment(&enrollment("e1")).unwrap();
    let mut pending = key("k1", "e1");
    pending.status = KeyStatus::Pending;
    pending.p1 = Some("04p1".into());
    store.activate(&pending, b"share-0123456789abcd", b"verifier-0123456", None).unwrap();
    store.insert_task(&csr_task("t1", 0, TaskStatus::Claimed), &[], None, None).unwrap();
    let cert = CertificateInfo {
        der_b64: "bGVhZg==".into(),
        chain_b64: vec!["Q0E=".into()],
        serial: "01".into(),
        subject: "CN=x".into(),
        not_after: 1,
    };

    // The completion loses a race: no certificate either.
    let stale = csr_task("t1", 5, TaskStatus::Completed);
    let lost = Transition { install_certificate: Some(("k1", &cert)), audit: Some(entry(0)), ..Transition::of(&stale) };
    assert_eq!(store.transition(lost).unwrap(), TransitionOutcome::Raced);
    let k = store.key("k1").unwrap().unwrap();
    assert_eq!(
        (k.status, k.certificate.is_none(), store.audit_raw(0).unwrap().is_none()),
        (KeyStatus::Pending, true, true)
    );

    // Both at once.
    let done = csr_task("t1", 1, TaskStatus::Completed);
    let t = Transition { install_certificate: Some(("k1", &cert)), audit: Some(entry(0)), ..Transition::of(&done) };
    assert_eq!(store.transition(t).unwrap(), TransitionOutcome::Done);
    let k = store.key("k1").unwrap().unwrap();
    assert_eq!(k.status, KeyStatus::Active);
    assert_eq!(k.certificate.unwrap().chain_b64, cert.chain_b64, "the chain is stored once and filled in");
    assert!(k.p1.is_none(), "p1 is dropped with the install");
    assert_eq!(store.task("t1").unwrap().unwrap().status, TaskStatus::Completed);
    assert!(store.audit_raw(0).unwrap().is_some());

    // A key that is no longer pending refuses the install, and the task stays.
    store.insert_task(&csr_task("t2", 0, TaskStatus::Claimed), &[], None, None).unwrap();
    let again = csr_task("t2", 1, TaskStatus::Completed);
    let t = Transition { install_certificate: Some(("k1", &cert)), ..Transition::of(&again) };
    assert_eq!(store.transition(t).unwrap(), TransitionOutcome::KeyNotPending(Some(KeyStatus::Active)));
    assert_eq!(store.task("t2").unwrap().unwrap().status, TaskStatus::Claimed);
    let gone = Transition { install_certificate: Some(("nope", &cert)), ..Transition::of(&again) };
    assert_eq!(store.transition(gone).unwrap(), TransitionOutcome::KeyNotPending(None));
}

#[test]
fn task_records_from_before_cosign_nonces_still_load() {
    let mut v = serde_json::to_value(csr_task("t1", 0, TaskStatus::Claimed)).unwrap();
    v.as_object_mut().unwrap().remove("cosign_nonces");
    let old: TaskRecord = serde_json::from_value(v).unwrap();
    assert!(old.cosign_nonces.is_empty());
}
