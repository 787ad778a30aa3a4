//! The sled store's own tests: what the conformance suite cannot see from the interface
//! (files on disk, the vault, clean close, old layouts, sled's lock, the codec); the task
//! aggregate's in `tasks.rs`, and the conformance suite run on sled in `sled_conformance.rs`.

mod sled_conformance;
mod tasks;

use super::codec::RECORD_V1;
use super::key_refs::{StoredKey, parse_secret_key, secret_key};
use super::*;
use crate::model::audit::{Checkpoint, Entry};
use crate::model::key::{CertificateInfo, DaemonKeyRecord, EnrollmentRecord, EnrollmentState, KeyRecord, KeyStatus};
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

/// The conformance suite's key, with no platform grant.
pub(super) fn key(id: &str, enrollment: &str) -> KeyRecord {
    KeyRecord { platforms: vec![], ..super::conformance::key(id, enrollment) }
}

pub(super) use super::conformance::enrollment;

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

fn audit_entry(n: u64) -> Entry {
    Entry {
        node: None,
        seq: n,
        at: 0,
        event: "POST /v1/tasks/{id}/complete".into(),
        actor: "device".into(),
        key_id: None,
        platform: None,
        task_id: None,
        outcome: "ok".into(),
        detail: serde_json::Value::Null,
        // The request's origin round-trips on every backend.
        request_id: Some(format!("0190a5c2-0000-7000-8000-{n:012}")),
        peer: Some("192.0.2.1".into()),
        prev: String::new(),
        hash: String::new(),
    }
}

pub(super) fn entry(n: u64) -> AuditAppend {
    AuditAppend::new(n, &audit_entry(n))
}

fn checkpoint(seq: u64) -> Checkpoint {
    Checkpoint { seq, hash: String::new(), at: 0, signature: String::new() }
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
    assert_eq!(store.audit_entry(5).unwrap().unwrap(), audit_entry(5), "an entry reads back whole, its origin too");
    assert!(store.audit_entry(6).unwrap().is_none());
    // A replaced daemon key record keeps its wrapped secret.
    let rec = DaemonKeyRecord { name: "audit".into(), public_key: "04aa".into(), created_at: 0 };
    store.insert_daemon_key(&rec, b"wrapped").unwrap();
    store.put_daemon_key_record(&DaemonKeyRecord { public_key: "04bb".into(), ..rec }).unwrap();
    let (after, blob) = store.daemon_key("audit").unwrap().unwrap();
    assert_eq!((after.public_key.as_str(), blob.as_slice()), ("04bb", &b"wrapped"[..]));
}

pub(super) fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_contain(&p, needle)
        } else {
            std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle)
        }
    })
}

/// A store from before the certificate-end index (no `cert_ends` entries, no marker) gets
/// it filled from the key records at its next start, once.
#[test]
fn the_certificate_end_index_is_built_for_a_store_without_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for (k, e, end) in [("k1", "e1", 500), ("k2", "e2", 900)] {
            store.put_enrollment(&enrollment(e)).unwrap();
            store.activate(&key(k, e), b"share-0123456789abc", b"verifier-0123456", None).unwrap();
            store
                .edit_key(k, &mut |rec| {
                    rec.certificate = Some(crate::store::conformance::certificate_ending(k, end));
                    true
                })
                .unwrap();
        }
    }
    {
        // As an older mcsd left it.
        let db = until_unlocked(|| sled::Config::new().path(dir.path()).open()).unwrap();
        db.drop_tree("cert_ends").unwrap();
        db.open_tree("meta").unwrap().remove(b"cert-ends-v1").unwrap();
        db.flush().unwrap();
        assert!(db.open_tree("cert_ends").unwrap().is_empty());
    }
    let store = reopen(dir.path());
    let ids =
        |after, until| -> Vec<String> { store.keys_ending(after, until).unwrap().into_iter().map(|k| k.id).collect() };
    assert_eq!(ids(0, 1_000), ["k1", "k2"]);
    assert_eq!(ids(500, 1_000), ["k2"]);
    assert!(store.files().unwrap().meta.get(b"cert-ends-v1").unwrap().is_some(), "built once");
}

/// A day's ids fill chunks of 256 and then a new one; noting the last id again keeps one.
#[test]
fn certificate_end_chunks_fill_in_order_and_note_an_id_once() {
    use crate::store::key_refs::{note_cert_end, noted_cert_ends};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let index = &store.files().unwrap().cert_ends;
    let day = 20_000u64;
    for i in 0..600 {
        note_cert_end(index, (day * 86_400 + i) as i64, &format!("k{i}")).unwrap();
    }
    note_cert_end(index, (day * 86_400 + 599) as i64, "k599").unwrap();
    note_cert_end(index, ((day + 1) * 86_400) as i64, "next-day").unwrap();
    assert_eq!(index.scan_prefix(format!("{day:010}/")).count(), 3, "256 + 256 + 88");
    let ids = noted_cert_ends(index, day, day).unwrap();
    assert_eq!(ids.len(), 600);
    assert_eq!(ids[0], "k0");
    assert_eq!(ids[599], "k599");
    assert_eq!(noted_cert_ends(index, day, day + 1).unwrap().last().map(String::as_str), Some("next-day"));
    assert!(noted_cert_ends(index, day + 2, day + 9).unwrap().is_empty());
}
