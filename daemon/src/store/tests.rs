//! The sled store's own tests: what the conformance suite cannot see from the interface
//! (files on disk, the vault, clean close, old layouts, sled's lock), and the suite itself
//! run on sled.

use super::codec::RECORD_V1;
use super::key_refs::{StoredKey, secret_key};
use super::*;
use crate::model::audit::{Checkpoint, Entry};
use crate::model::key::{
    CertificateInfo, DaemonKeyRecord, EnrollmentRecord, EnrollmentState, KeyRecord, KeyStatus, PinState, Subject,
    SubjectKind,
};
use crate::model::secret::SecretKind;
use crate::model::task::{TaskData, TaskDisplay, TaskKind, TaskRecord, TaskStatus};

/// The interface's generic conveniences live on `dyn Storage`.
fn dynamic(store: &Store) -> &dyn Storage {
    store
}

/// Defect 7 of issue 11: after a failed flush sled refuses every write until it is
/// reopened; the store reopens itself, keeps what was durable, and bumps its generation.
#[test]
fn a_failed_store_reopens_itself_and_keeps_what_was_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    store.put_enrollment(&enrollment("e1")).unwrap();
    store.flush_blocking().unwrap();
    assert!(!store.failed());
    assert!(!store.recover().unwrap(), "nothing to recover");
    store.failed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(store.failed());
    // A request still holding the old files while the reopen waits for it.
    let held = store.files().unwrap();
    let s = &store;
    std::thread::scope(|scope| {
        let reopening = scope.spawn(move || s.recover());
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(held);
        assert!(reopening.join().unwrap().unwrap());
    });
    assert!(!store.failed());
    assert_eq!(store.generation(), 1);
    assert!(store.enrollment("e1").unwrap().is_some(), "durable records survive the reopen");
    store.put_enrollment(&enrollment("e2")).unwrap();
    store.flush_blocking().unwrap();
}

/// Defect 13 of issue 11: run outside systemd under umask 022, `db/*` and
/// `secrets.vault` were 0644. The store makes itself private whatever the umask.
#[test]
fn store_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let _one_at_a_time = crate::os::UMASK_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let before = crate::os::set_umask(0o022);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path).unwrap();
        store.files().unwrap().db.flush().unwrap();
    }
    crate::os::set_umask(before);
    let mut seen = 0;
    let mut dirs = vec![path.clone()];
    while let Some(d) = dirs.pop() {
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{}", e.path().display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 2, "sled's files and the vault");
    assert!(path.join("secrets.vault").exists());
}

fn key(id: &str, enrollment: &str) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        enrollment_id: enrollment.into(),
        subject: Subject {
            kind: SubjectKind::Person,
            name: "Zhang San".into(),
            org_name: None,
            credit_code: None,
            id_number: None,
        },
        ca: "local".into(),
        status: KeyStatus::Active,
        public_key: "04ab".into(),
        device_id: "dev1".into(),
        platforms: vec![],
        pin: PinState::default(),
        created_at: 0,
        validity_days: 365,
        revocation_reason: None,
        certificate: None,
        p1: None,
    }
}

fn enrollment(id: &str) -> EnrollmentRecord {
    EnrollmentRecord {
        id: id.into(),
        subject: key("k", id).subject,
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

fn task(id: &str, platform: &str, expires_at: i64, message_len: usize) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        kind: TaskKind::Sign,
        platform: platform.into(),
        token_sha256: "00".into(),
        display: TaskDisplay { title: "t".into(), detail: None },
        data: TaskData::Sign { message: "a".repeat(message_len) },
        callback_url: None,
        status: TaskStatus::Pending,
        rev: 0,
        created_at: 0,
        expires_at,
        updated_at: 0,
        key_id: None,
        device_id: None,
        e: None,
        cosigned: false,
        cosign_nonces: Vec::new(),
        result: None,
        secret_result: false,
        delivered: false,
        error: None,
        charged_bytes: 0,
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

#[test]
fn records_carry_a_version_byte_and_unknown_versions_are_refused() {
    let bytes = encode(&enrollment("e1"));
    assert_eq!(bytes[0], RECORD_V1);
    let mut future = bytes.clone();
    future[0] = 9;
    let err = decode::<EnrollmentRecord>(b"e1", &future).unwrap_err();
    assert!(err.to_string().contains("unknown record version 9"));
}

#[test]
fn activation_is_once_only_and_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_enrollment(&enrollment("e1")).unwrap();
    assert_eq!(store.activate(&key("k1", "e1"), b"s", b"v", None).unwrap(), ActivateOutcome::Done);
    assert_eq!(store.activate(&key("k2", "e1"), b"s", b"v", None).unwrap(), ActivateOutcome::AlreadyActivated);
    assert!(store.key("k2").unwrap().is_none());
    assert!(store.secret("k2", SecretKind::Share).unwrap().is_none());
    assert_eq!(store.activate(&key("k3", "nope"), b"s", b"v", None).unwrap(), ActivateOutcome::NoSuchEnrollment);
    assert_eq!(store.keys_of_device("dev1").unwrap().len(), 1);
    assert_eq!(store.enrollment("e1").unwrap().unwrap().state, EnrollmentState::Activated { key_id: "k1".into() });
}

#[test]
fn revoke_shreds_secrets_and_update_key_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_enrollment(&enrollment("e1")).unwrap();
    store.activate(&key("k1", "e1"), b"share", b"verifier", None).unwrap();
    let after = dynamic(&store)
        .update_key::<()>("k1", |k| {
            k.pin.failures += 1;
            Ok(true)
        })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(after.pin.failures, 1);
    assert!(store.replace_verifier("k1", b"v2").unwrap());
    assert_eq!(store.key("k1").unwrap().unwrap().pin.failures, 0);
    let rec = store.revoke("k1", "key_compromise", None).unwrap().unwrap();
    assert_eq!(rec.status, KeyStatus::Revoked);
    assert!(store.secret("k1", SecretKind::Share).unwrap().is_none());
    assert!(store.secret("k1", SecretKind::PinVerifier).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_flushes_share_fsyncs_and_all_writes_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
    let mut handles = Vec::new();
    for i in 0..64u32 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            s.put_enrollment(&enrollment(&format!("e{i}"))).unwrap();
            s.flush().await.unwrap();
            // Durable when flush returns: visible to a reader of the files is tested
            // below; here, at least present.
            assert!(s.enrollment(&format!("e{i}")).unwrap().is_some());
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let fsyncs = store.fsync_count();
    eprintln!("fsyncs: {fsyncs}");
    assert!((1..64).contains(&fsyncs), "64 concurrent flushes took {fsyncs} fsyncs");
    drop(store);
    let again = reopen(dir.path());
    for i in 0..64 {
        assert!(again.enrollment(&format!("e{i}")).unwrap().is_some());
    }
}

#[test]
fn shares_live_in_the_vault_and_revocation_erases_them_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let share = b"wrapped-share-0123456789abcdef";
    let verifier = b"wrapped-verifier-0123456789";
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_enrollment(&enrollment("e1")).unwrap();
        store.activate(&key("k1", "e1"), share, verifier, None).unwrap();
        assert_eq!(store.secret("k1", SecretKind::Share).unwrap().unwrap().as_slice(), share);
        store.flush_blocking().unwrap();
        assert!(store.replace_verifier("k1", b"second-verifier-xyz").unwrap());
        assert_eq!(store.secret("k1", SecretKind::PinVerifier).unwrap().unwrap().as_slice(), b"second-verifier-xyz");
    }
    assert!(files_contain(dir.path(), share), "the share is on disk while the key lives");
    assert!(!files_contain(dir.path(), verifier), "a replaced verifier is destroyed");
    let store = reopen(dir.path());
    assert_eq!(store.secret("k1", SecretKind::Share).unwrap().unwrap().as_slice(), share, "survives a restart");
    store.revoke("k1", "key_compromise", None).unwrap().unwrap();
    assert!(!files_contain(dir.path(), share), "revocation leaves no copy of the share");
    assert!(!files_contain(dir.path(), b"second-verifier-xyz"));
}

#[test]
fn secrets_keys_name_record_and_kind() {
    assert_eq!(parse_secret_key(b"k_12/share"), Some(("k_12".into(), SecretKind::Share)));
    assert_eq!(parse_secret_key(b"daemon:audit/daemon-key"), Some(("daemon:audit".into(), SecretKind::DaemonKey)));
    assert_eq!(parse_secret_key(b"k_12/unknown"), None);
}

fn raw_meta_has_clean_close(dir: &std::path::Path) -> bool {
    let db = until_unlocked(|| sled::Config::new().path(dir).open()).unwrap();
    db.open_tree("meta").unwrap().get(CLEAN_CLOSE).unwrap().is_some()
}

/// Open a store just dropped in this process.
fn reopen(dir: &std::path::Path) -> Store {
    until_unlocked(|| Store::open(dir)).unwrap()
}

/// A clean close records the vault layout and the next start uses it (no slot check);
/// that start withdraws the record, and so does a write after an explicit close.
#[test]
fn clean_close_lets_the_next_start_skip_the_vault_check() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_enrollment(&enrollment("e1")).unwrap();
        store.put_enrollment(&enrollment("e2")).unwrap();
        store.activate(&key("k1", "e1"), b"share-one-0123456789", b"verifier-one-0123", None).unwrap();
        store.activate(&key("k2", "e2"), b"share-two-0123456789", b"verifier-two-0123", None).unwrap();
        store.revoke("k1", "superseded", None).unwrap().unwrap();
        store.close().unwrap();
        // A write after the close withdraws the record before it happens.
        store.put_enrollment(&enrollment("e3")).unwrap();
        assert!(!*store.closed.lock().unwrap());
        assert!(store.files().unwrap().meta.get(CLEAN_CLOSE).unwrap().is_none());
    } // dropped: closes again
    assert!(raw_meta_has_clean_close(dir.path()));
    let store = reopen(dir.path());
    assert!(
        store.files().unwrap().meta.get(CLEAN_CLOSE).unwrap().is_none(),
        "a running store has no clean-close record"
    );
    let (count, free) = store.files().unwrap().vault.layout().unwrap();
    assert_eq!((count, free.len()), (4, 2), "k1's two slots are free, k2's are not");
    assert_eq!(store.secret("k2", SecretKind::Share).unwrap().unwrap().as_slice(), b"share-two-0123456789");
    // Freed slots are reused, not the live ones.
    store.put_enrollment(&enrollment("e4")).unwrap();
    store.activate(&key("k4", "e4"), b"share-four-012345678", b"verifier-four-012", None).unwrap();
    assert_eq!(store.files().unwrap().vault.layout().unwrap().0, 4);
    assert_eq!(store.secret("k2", SecretKind::PinVerifier).unwrap().unwrap().as_slice(), b"verifier-two-0123");
    assert_eq!(store.secret("k4", SecretKind::Share).unwrap().unwrap().as_slice(), b"share-four-012345678");
}

/// A store written with the old layout (references in `secrets`) and left without a
/// clean close (a crash): opening moves the references into the key records and zeroes
/// a slot nothing references.
#[test]
fn old_layout_is_moved_and_a_crash_leaves_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    {
        let vault = Vault::open(&dir.path().join("secrets.vault"), &BTreeSet::new()).unwrap();
        let share = vault.put(b"old-layout-share-0123").unwrap();
        let verifier = vault.put(b"old-layout-verifier").unwrap();
        vault.put(b"orphaned-by-a-crash-42").unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        db.open_tree("keys").unwrap().insert("k1", encode(&key("k1", "e1"))).unwrap();
        let secrets = db.open_tree("secrets").unwrap();
        secrets.insert(secret_key("k1", SecretKind::Share), &share.encode()[..]).unwrap();
        secrets.insert(secret_key("k1", SecretKind::PinVerifier), &verifier.encode()[..]).unwrap();
        secrets.insert(secret_key("t1", SecretKind::TaskInput), &b"task-blob"[..]).unwrap();
        db.flush().unwrap();
    }
    let store = reopen(dir.path());
    assert_eq!(store.secret("k1", SecretKind::Share).unwrap().unwrap().as_slice(), b"old-layout-share-0123");
    assert_eq!(store.secret("k1", SecretKind::PinVerifier).unwrap().unwrap().as_slice(), b"old-layout-verifier");
    let left: Vec<Vec<u8>> = store.files().unwrap().secrets.iter().keys().map(|k| k.unwrap().to_vec()).collect();
    assert_eq!(left, vec![b"t1/task-input".to_vec()], "only non-key secrets stay in the tree");
    let raw = store.files().unwrap().keys.get("k1").unwrap().unwrap();
    assert!(StoredKey::decode(b"k1", &raw).unwrap().share_ref.is_some());
    let vault_bytes = std::fs::read(dir.path().join("secrets.vault")).unwrap();
    assert!(!vault_bytes.windows(8).any(|w| w == b"orphaned"), "the unreferenced slot is zeroed");
    // Rotation sees the key's secrets through the record.
    let entries: Vec<Vec<u8>> =
        store.secret_entries().unwrap().into_iter().map(|e| secret_key(&e.owner, e.kind)).collect();
    assert!(entries.contains(&b"k1/share".to_vec()) && entries.contains(&b"k1/pin-verifier".to_vec()));
    let e = store.secret_entries().unwrap().into_iter().find(|e| secret_key(&e.owner, e.kind) == b"k1/share").unwrap();
    let (swapped, old_slot) = store.replace_secret(&e, b"rewrapped-share-xyz").unwrap();
    assert!(swapped && old_slot.is_some());
    assert!(!store.replace_secret(&e, b"stale").unwrap().0, "a stale value does not swap");
    assert_eq!(store.secret("k1", SecretKind::Share).unwrap().unwrap().as_slice(), b"rewrapped-share-xyz");
}

/// A certificate chain is stored once however many keys carry it, and every reader
/// gets it back, also after a restart (empty cache).
#[test]
fn certificate_chains_are_stored_once_and_filled_in_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let chain = vec!["Q0EtY2VydGlmaWNhdGUtb25l".to_string(), "Um9vdC1jZXJ0aWZpY2F0ZQ==".to_string()];
    let cert = |serial: &str| CertificateInfo {
        der_b64: format!("bGVhZi0{serial}"),
        chain_b64: chain.clone(),
        serial: serial.into(),
        subject: "CN=x".into(),
        not_after: 1,
    };
    {
        let store = Store::open(dir.path()).unwrap();
        for (id, e) in [("k1", "e1"), ("k2", "e2")] {
            store.put_enrollment(&enrollment(e)).unwrap();
            store.activate(&key(id, e), b"share-0123456789abcd", b"verifier-0123456", None).unwrap();
            let updated = dynamic(&store)
                .update_key::<()>(id, |k| {
                    k.certificate = Some(cert(id));
                    Ok(true)
                })
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(updated.certificate.unwrap().chain_b64, chain);
        }
        let raw = store.files().unwrap().keys.get("k1").unwrap().unwrap();
        assert!(!raw.windows(chain[0].len()).any(|w| w == chain[0].as_bytes()), "the stored record holds no chain");
        assert_eq!(store.files().unwrap().chains.len(), 1, "one chain entry for both keys");
        let listed = dynamic(&store).keys_matching(|_| true).unwrap();
        assert!(listed.iter().all(|k| k.certificate.as_ref().unwrap().chain_b64 == chain));
        let revoked = store.revoke("k2", "cessation", None).unwrap().unwrap();
        assert_eq!(revoked.certificate.unwrap().chain_b64, chain, "revoke answers the whole record");
    }
    let store = reopen(dir.path());
    let k1 = store.key("k1").unwrap().unwrap();
    let c = k1.certificate.unwrap();
    // The caller's record has no chain reference: the type has no such field.
    assert_eq!((c.chain_b64, c.serial), (chain, "k1".to_string()));
}

fn csr_task(id: &str, rev: u64, status: TaskStatus) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        kind: TaskKind::Csr,
        platform: String::new(),
        token_sha256: "00".into(),
        display: TaskDisplay { title: "t".into(), detail: None },
        data: TaskData::Csr { key_id: "k1".into(), request_info: String::new() },
        callback_url: None,
        status,
        rev,
        created_at: 0,
        expires_at: i64::MAX,
        updated_at: 0,
        key_id: Some("k1".into()),
        device_id: Some("dev1".into()),
        e: None,
        cosigned: true,
        cosign_nonces: vec!["ab".into()],
        result: None,
        secret_result: false,
        delivered: false,
        error: None,
        charged_bytes: 0,
    }
}

fn audit_entry(n: u64) -> Entry {
    Entry {
        seq: n,
        at: 0,
        event: "POST /v1/tasks/{id}/complete".into(),
        actor: "device".into(),
        key_id: None,
        platform: None,
        task_id: None,
        outcome: "ok".into(),
        detail: serde_json::Value::Null,
        prev: String::new(),
        hash: String::new(),
    }
}

fn entry(n: u64) -> AuditAppend {
    AuditAppend::new(n, &audit_entry(n))
}

fn checkpoint(seq: u64) -> Checkpoint {
    Checkpoint { seq, hash: String::new(), at: 0, signature: String::new() }
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

/// The audit checkpoint operations the start-up check and the tools use.
#[test]
fn audit_checkpoints_are_read_from_a_point_on_and_can_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.last_audit_checkpoint().unwrap().is_none());
    for seq in [63u64, 127, 300] {
        store.put_audit_checkpoint(seq, &checkpoint(seq)).unwrap();
    }
    let from: Vec<Checkpoint> = store.audit_checkpoints_from(127).unwrap();
    assert_eq!(from, vec![checkpoint(127), checkpoint(300)]);
    assert_eq!(store.last_audit_checkpoint().unwrap().unwrap().seq, 300);
    assert_eq!(store.audit_checkpoint_seqs().unwrap(), vec![63, 127, 300]);
    store.put_audit_checkpoint_raw(300, None).unwrap();
    assert_eq!(store.last_audit_checkpoint().unwrap().unwrap().seq, 127);
    assert!(store.append_audit(5, &audit_entry(5)).unwrap());
    assert_eq!(store.audit_entry(5).unwrap().unwrap().seq, 5);
    assert!(store.audit_entry(6).unwrap().is_none());
    // A replaced daemon key record keeps its wrapped secret.
    let rec = DaemonKeyRecord { name: "audit".into(), public_key: "04aa".into(), created_at: 0 };
    store.insert_daemon_key(&rec, b"wrapped").unwrap();
    store.put_daemon_key_record(&DaemonKeyRecord { public_key: "04bb".into(), ..rec }).unwrap();
    let (after, blob) = store.daemon_key("audit").unwrap().unwrap();
    assert_eq!((after.public_key.as_str(), blob.as_slice()), ("04bb", &b"wrapped"[..]));
}

#[test]
fn task_records_from_before_cosign_nonces_still_load() {
    let mut v = serde_json::to_value(csr_task("t1", 0, TaskStatus::Claimed)).unwrap();
    v.as_object_mut().unwrap().remove("cosign_nonces");
    let old: TaskRecord = serde_json::from_value(v).unwrap();
    assert!(old.cosign_nonces.is_empty());
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_contain(&p, needle)
        } else {
            std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle)
        }
    })
}
