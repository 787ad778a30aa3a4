//! Conformance checks of the task steps: creation under quota, transitions (CAS, all or
//! nothing, with their side effects), the csr completion.

use super::*;

pub fn task_creation_under_quota_and_a_refusal_writes_nothing(f: &dyn Factory) {
    let s = f.fresh();
    let quota = Some(OpenQuota { max_tasks: 2, max_bytes: 1 << 20 });
    let (a, b) = (task("t_a", "P1", TaskStatus::Pending, 0), task("t_b", "P1", TaskStatus::Pending, 0));
    let done = s.insert_task(&a, &[(SecretKind::TaskInput, b"input-a")], quota, Some(&append(0))).unwrap();
    assert_eq!(done, InsertOutcome::Done);
    assert!(s.audit_entry(0).unwrap().is_some(), "created with its entry");
    assert_eq!(s.task_secret("t_a", SecretKind::TaskInput).unwrap().as_deref(), Some(&b"input-a"[..]));
    let charged = s.task("t_a").unwrap().unwrap().charged_bytes;
    assert!(charged > 7, "charged its record and inputs: {charged}");
    assert_eq!(s.insert_task(&b, &[], quota, None).unwrap(), InsertOutcome::Done);
    let usage = s.open_usage("P1").unwrap();
    assert_eq!((usage.tasks, usage.earliest_expiry), (2, Some(100)));

    // Over the quota: the task, its inputs and its entry are all absent, the usage is unchanged.
    let c = task("t_c", "P1", TaskStatus::Pending, 0);
    let refused = s.insert_task(&c, &[(SecretKind::TaskInput, b"x")], quota, Some(&append(1))).unwrap();
    assert!(matches!(refused, InsertOutcome::OverQuota { usage: u, .. } if u == usage));
    assert!(s.task("t_c").unwrap().is_none() && s.task_secret("t_c", SecretKind::TaskInput).unwrap().is_none());
    assert!(s.audit_entry(1).unwrap().is_none());
    assert_eq!(s.open_usage("P1").unwrap(), usage);
    let tight = Some(OpenQuota { max_tasks: 10, max_bytes: 10 });
    assert!(matches!(
        s.insert_task(&task("t_d", "P3", TaskStatus::Pending, 0), &[], tight, None).unwrap(),
        InsertOutcome::OverQuota { .. }
    ));
    assert_eq!(
        s.insert_task(&task("t_e", "P2", TaskStatus::Pending, 0), &[], quota, None).unwrap(),
        InsertOutcome::Done
    );
    // A taken entry number refuses the creation whole.
    assert!(taken(s.insert_task(&task("t_f", "P4", TaskStatus::Pending, 0), &[], None, Some(&append(0)))));
    assert!(s.task("t_f").unwrap().is_none());

    // Finishing a task gives its slot back, once; purging an open one does too.
    assert_eq!(
        s.transition(Transition::of(&task("t_b", "P1", TaskStatus::Expired, 1))).unwrap(),
        TransitionOutcome::Done
    );
    assert_eq!(s.open_usage("P1").unwrap().tasks, 1);
    assert_eq!(s.insert_task(&c, &[], quota, None).unwrap(), InsertOutcome::Done);
    s.purge_task("t_c").unwrap();
    s.purge_task("t_b").unwrap();
    assert_eq!(s.open_usage("P1").unwrap().tasks, 1);
    assert!(s.task("t_b").unwrap().is_none() && s.task("t_c").unwrap().is_none());
    let mut ids: Vec<String> = s.tasks().unwrap().into_iter().map(|t| t.id).collect();
    ids.sort();
    assert_eq!(ids, ["t_a", "t_e"]);
}

pub fn transitions_are_cas_and_all_or_nothing(f: &dyn Factory) {
    let s = with_key(f);
    s.edit_key("k1", &mut |k| {
        k.platforms.push(PlatformGrant { platform: "P9".into(), until: None, once: true });
        true
    })
    .unwrap();
    s.insert_task(&task("t1", "P9", TaskStatus::Pending, 0), &[(SecretKind::TaskInput, b"in")], None, None).unwrap();
    assert!(s.append_audit(0, &entry(0)).unwrap());
    let once = |k: &KeyRecord| k.platforms.iter().any(|g| g.once);
    fn full(t: &TaskRecord) -> Transition<'_> {
        Transition {
            put_secrets: vec![(SecretKind::TaskResult, &b"result"[..])],
            delete_secrets: vec![SecretKind::TaskInput],
            consume_once: Some(("k1", "P9")),
            callback: Some(callback("t1")),
            ..Transition::of(t)
        }
    }
    let untouched = |s: &dyn Storage| {
        assert_eq!(s.task("t1").unwrap().unwrap().rev, 0);
        assert!(s.task_secret("t1", SecretKind::TaskInput).unwrap().is_some());
        assert!(s.task_secret("t1", SecretKind::TaskResult).unwrap().is_none());
        assert!(s.callback("t1").unwrap().is_none());
        assert!(once(&s.key("k1").unwrap().unwrap()), "the grant is not consumed");
    };
    let done = task("t1", "P9", TaskStatus::Completed, 1);
    // A taken audit number: the whole step is refused.
    assert!(taken(s.transition(Transition { audit: Some(append(0)), ..full(&done) })));
    untouched(&*s);
    // A stale rev loses: nothing written, its entry neither.
    let stale = task("t1", "P9", TaskStatus::Completed, 5);
    assert_eq!(s.transition(Transition { audit: Some(append(1)), ..full(&stale) }).unwrap(), TransitionOutcome::Raced);
    untouched(&*s);
    assert!(s.audit_entry(1).unwrap().is_none());
    assert_eq!(
        s.transition(Transition::of(&task("nope", "P9", TaskStatus::Completed, 1))).unwrap(),
        TransitionOutcome::Raced
    );

    // The whole step.
    assert_eq!(s.transition(Transition { audit: Some(append(1)), ..full(&done) }).unwrap(), TransitionOutcome::Done);
    let stored = s.task("t1").unwrap().unwrap();
    assert_eq!((stored.status, stored.rev), (TaskStatus::Completed, 1));
    assert_eq!(s.task_secret("t1", SecretKind::TaskResult).unwrap().as_deref(), Some(&b"result"[..]));
    assert!(s.task_secret("t1", SecretKind::TaskInput).unwrap().is_none());
    assert_eq!(s.callback("t1").unwrap(), Some(callback("t1")));
    assert!(!once(&s.key("k1").unwrap().unwrap()), "the once grant is consumed");
    assert!(s.audit_entry(1).unwrap().is_some());
    // The same transition again loses; a once grant is consumed once.
    assert_eq!(s.transition(full(&done)).unwrap(), TransitionOutcome::Raced);
    s.insert_task(&task("t2", "P9", TaskStatus::Pending, 0), &[], None, None).unwrap();
    let t2 = task("t2", "P9", TaskStatus::Completed, 1);
    let consume = Transition { consume_once: Some(("k1", "P9")), ..Transition::of(&t2) };
    assert_eq!(s.transition(consume).unwrap(), TransitionOutcome::GrantGone);
    assert_eq!(s.task("t2").unwrap().unwrap().rev, 0);
    // Concurrent claims of one task: one wins.
    let claimed = task("t2", "P9", TaskStatus::Claimed, 1);
    let wins = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..6).map(|_| scope.spawn(|| s.transition(Transition::of(&claimed)).unwrap())).collect();
        racers.into_iter().map(|r| r.join().unwrap()).filter(|o| *o == TransitionOutcome::Done).count()
    });
    assert_eq!(wins, 1);
}

pub fn csr_completion_installs_the_certificate_atomically(f: &dyn Factory) {
    let s = f.fresh();
    s.put_enrollment(&enrollment("e1")).unwrap();
    let mut pending = key("k1", "e1");
    pending.status = KeyStatus::Pending;
    pending.p1 = Some("04p1".into());
    s.activate(&pending, b"share-1", b"verifier-1", None).unwrap();
    s.insert_task(&task("t1", "", TaskStatus::Claimed, 0), &[], None, None).unwrap();
    let cert = certificate("01");
    let stale = task("t1", "", TaskStatus::Completed, 3);
    let lost = Transition { install_certificate: Some(("k1", &cert)), ..Transition::of(&stale) };
    assert_eq!(s.transition(lost).unwrap(), TransitionOutcome::Raced);
    assert_eq!(s.key("k1").unwrap().unwrap(), pending, "no certificate without the task");

    let done = task("t1", "", TaskStatus::Completed, 1);
    let install = Transition { install_certificate: Some(("k1", &cert)), ..Transition::of(&done) };
    assert_eq!(s.transition(install).unwrap(), TransitionOutcome::Done);
    let k = s.key("k1").unwrap().unwrap();
    assert_eq!((k.status, k.certificate, k.p1), (KeyStatus::Active, Some(cert.clone()), None));
    assert_eq!(s.task("t1").unwrap().unwrap().status, TaskStatus::Completed);

    s.insert_task(&task("t2", "", TaskStatus::Claimed, 0), &[], None, None).unwrap();
    let again = task("t2", "", TaskStatus::Completed, 1);
    let not_pending = Transition { install_certificate: Some(("k1", &cert)), ..Transition::of(&again) };
    assert_eq!(s.transition(not_pending).unwrap(), TransitionOutcome::KeyNotPending(Some(KeyStatus::Active)));
    let gone = Transition { install_certificate: Some(("nope", &cert)), ..Transition::of(&again) };
    assert_eq!(s.transition(gone).unwrap(), TransitionOutcome::KeyNotPending(None));
    assert_eq!(s.task("t2").unwrap().unwrap().status, TaskStatus::Claimed);
}

fn swap<'a>(serial: &'a str, key_id: &'a str, certificate: &'a CertificateInfo) -> crate::store::CertificateSwap<'a> {
    crate::store::CertificateSwap { key_id, serial, certificate, at: 1_700 }
}

pub fn a_renewal_swaps_the_certificate_of_the_same_key_once(f: &dyn Factory) {
    let s = f.fresh();
    s.put_enrollment(&enrollment("e1")).unwrap();
    let mut active = key("k1", "e1");
    active.certificate = Some(certificate("01"));
    s.activate(&active, b"share-1", b"verifier-1", None).unwrap();
    let new = &certificate("02");
    s.insert_task(&task("t1", "", TaskStatus::Claimed, 0), &[], None, None).unwrap();
    // A stale task, a certificate that moved, a key that is gone: nothing is written.
    let stale = task("t1", "", TaskStatus::Completed, 3);
    let lost = Transition { renew_certificate: Some(swap("01", "k1", new)), ..Transition::of(&stale) };
    assert_eq!(s.transition(lost).unwrap(), TransitionOutcome::Raced);
    let done = task("t1", "", TaskStatus::Completed, 1);
    let moved = Transition { renew_certificate: Some(swap("09", "k1", new)), ..Transition::of(&done) };
    assert_eq!(s.transition(moved).unwrap(), TransitionOutcome::CertificateChanged(Some(KeyStatus::Active)));
    let gone = Transition { renew_certificate: Some(swap("01", "nope", new)), ..Transition::of(&done) };
    assert_eq!(s.transition(gone).unwrap(), TransitionOutcome::CertificateChanged(None));
    assert_eq!(s.key("k1").unwrap().unwrap(), active, "unchanged");
    assert_eq!(s.task("t1").unwrap().unwrap().status, TaskStatus::Claimed);

    let renew = Transition { renew_certificate: Some(swap("01", "k1", new)), ..Transition::of(&done) };
    assert_eq!(s.transition(renew).unwrap(), TransitionOutcome::Done);
    let retired = vec![crate::model::key::RetiredCertificate { serial: "01".into(), retired_at: 1_700 }];
    let k = s.key("k1").unwrap().unwrap();
    assert_eq!((k.status, k.certificate.as_ref(), &k.retired_certificates), (KeyStatus::Active, Some(new), &retired));
    assert_eq!(s.task("t1").unwrap().unwrap().status, TaskStatus::Completed);
    // Once: the old serial is gone. And it survives a restart.
    s.insert_task(&task("t2", "", TaskStatus::Claimed, 0), &[], None, None).unwrap();
    let again = task("t2", "", TaskStatus::Completed, 1);
    let twice = Transition { renew_certificate: Some(swap("01", "k1", new)), ..Transition::of(&again) };
    assert_eq!(s.transition(twice).unwrap(), TransitionOutcome::CertificateChanged(Some(KeyStatus::Active)));
    block_on(s.flush()).unwrap();
    let s = f.restart(s);
    let k = s.key("k1").unwrap().unwrap();
    assert_eq!((k.certificate.as_ref(), k.retired_certificates), (Some(new), retired));
}
