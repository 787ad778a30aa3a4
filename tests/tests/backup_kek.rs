//! Backup and restore (online snapshot → wipe → restore keeps every key usable) and KEK
//! rotation (interrupted half-way, resumed after a crash, every key usable, no record left
//! under the old KEK).

use std::process::Command;

use mcs_client::phone::SignMode;
use mcs_e2e::*;

fn mcsd(env: &DevEnv, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin("mcsd"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .args(args)
        .arg("--config")
        .arg(env.config())
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn wrapped_version(env: &DevEnv, key_id: &str) -> u32 {
    let out = Command::new(bin("read-share")).arg("--wrapped").arg(env.config()).arg(key_id).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let blob = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    u32::from_be_bytes(blob[1..5].try_into().unwrap())
}

async fn still_usable(env: &DevEnv, daemon: &Daemon, phone: &mcs_client::phone::Phone, who: &str, msg: &[u8]) {
    let mut conn = connect(env, daemon, who).await;
    let sig = phone.sign_message(&mut conn, msg, SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), msg, &sig.to_der()));
    let ct = sm2_2p::encrypt(phone.public_key(), b"sealed bid").to_der();
    assert_eq!(phone.decrypt(&mut conn, &ct).await.unwrap().as_slice(), b"sealed bid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_wipe_restore_keeps_every_key_usable() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone1, _) = new_phone(&env, &daemon, "app1", "111111").await;
    let (phone2, _) = new_phone(&env, &daemon, "app2", "222222").await;
    let image = env.path().join("store.bak");
    // A file already there, world-readable: the backup replaces it, owner-only.
    std::fs::write(&image, b"old").unwrap();
    std::fs::set_permissions(&image, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (ok, out) = mcsd(&env, &["backup", "--out", image.to_str().unwrap()]);
    assert!(ok && out.contains("backup of"), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&image).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the backup is readable by its owner only");
    still_usable(&env, &daemon, &phone1, "app1", b"after the backup").await;
    let (status, _) = daemon.stop();
    assert!(status.success());

    std::fs::remove_dir_all(env.db()).unwrap();
    let (ok, out) = mcsd(&env, &["restore", "--from", image.to_str().unwrap()]);
    assert!(ok && out.contains("restored"), "{out}");
    let (ok, out) = mcsd(&env, &["restore", "--from", image.to_str().unwrap()]);
    assert!(!ok && out.contains("not empty"), "restoring over a store is refused: {out}");
    let daemon = Daemon::start(&env);
    still_usable(&env, &daemon, &phone1, "app1", b"restored 1").await;
    still_usable(&env, &daemon, &phone2, "app2", b"restored 2").await;
    let (status, _) = daemon.stop();
    assert!(status.success());
    let (ok, out) = mcsd(&env, &["audit", "verify"]);
    assert!(ok, "the restored audit chain verifies: {out}");

    // A damaged image is refused.
    let mut bytes = std::fs::read(&image).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&image, bytes).unwrap();
    std::fs::remove_dir_all(env.db()).unwrap();
    let (ok, out) = mcsd(&env, &["restore", "--from", image.to_str().unwrap()]);
    assert!(!ok && out.contains("checksum"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_rotation_interrupted_and_resumed_leaves_nothing_under_the_old_kek() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone1, _) = new_phone(&env, &daemon, "app1", "111111").await;
    let (phone2, _) = new_phone(&env, &daemon, "app2", "222222").await;

    // Half-way: two records re-wrapped, the rest still under version 1; all keys work.
    let (ok, out) = mcsd(&env, &["hsm", "rotate-kek", "--batch", "2"]);
    assert!(ok && out.contains("version=2 created=true rewrapped=2"), "{out}");
    let remaining: u64 = out
        .split("remaining=")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap();
    assert!(remaining > 0, "{out}");
    still_usable(&env, &daemon, &phone1, "app1", b"mixed 1").await;
    still_usable(&env, &daemon, &phone2, "app2", b"mixed 2").await;

    // The daemon dies; after a restart the rotation resumes with version 2.
    daemon.kill9();
    let daemon = Daemon::start(&env);
    let (ok, out) = mcsd(&env, &["hsm", "rotate-kek"]);
    assert!(ok && out.contains("version=2 created=false") && out.contains("remaining=0"), "{out}");
    still_usable(&env, &daemon, &phone1, "app1", b"rotated 1").await;
    still_usable(&env, &daemon, &phone2, "app2", b"rotated 2").await;
    let (status, _) = daemon.stop();
    assert!(status.success());
    assert_eq!(wrapped_version(&env, phone1.key_id()), 2);
    assert_eq!(wrapped_version(&env, phone2.key_id()), 2);

    // Offline (daemon stopped) works the same; nothing is left under version 2 afterwards.
    let (ok, out) = mcsd(&env, &["hsm", "rotate-kek"]);
    assert!(ok && out.contains("version=3 created=true") && out.contains("remaining=0"), "{out}");
    assert_eq!(wrapped_version(&env, phone1.key_id()), 3);
}

/// Erasure that reaches copies outside the live store (issue 13): a share revoked after a
/// backup is still in that backup, wrapped under KEK version 1. Once a rotation has moved
/// every live record to version 2, `mcsd hsm retire-kek` destroys version 1 in the HSM:
/// the old backup's blobs open no more, while every live key keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retiring_the_old_kek_erases_what_backups_still_hold() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone1, _) = new_phone(&env, &daemon, "app1", "111111").await;
    let (phone2, _) = new_phone(&env, &daemon, "app2", "222222").await;
    let image = env.path().join("before-revocation.bak");
    let (ok, out) = mcsd(&env, &["backup", "--out", image.to_str().unwrap()]);
    assert!(ok, "{out}");
    let mut admin = connect(&env, &daemon, "admin").await;
    mcs_client::admin::revoke(&mut admin, phone1.key_id(), "key_compromise").await.unwrap();

    // Half-way through a rotation, retiring is refused and destroys nothing.
    let (ok, out) = mcsd(&env, &["hsm", "rotate-kek", "--batch", "1"]);
    assert!(ok, "{out}");
    let (ok, out) = mcsd(&env, &["hsm", "retire-kek"]);
    assert!(!ok && out.contains("finish the rotation"), "{out}");
    let (ok, out) = mcsd(&env, &["hsm", "rotate-kek"]);
    assert!(ok && out.contains("remaining=0"), "{out}");
    let (ok, out) = mcsd(&env, &["hsm", "retire-kek"]);
    assert!(ok && out.contains("destroyed versions [1]"), "{out}");
    still_usable(&env, &daemon, &phone2, "app2", b"after the retirement").await;
    let (status, _) = daemon.stop();
    assert!(status.success());

    // The backup taken before the revocation holds the revoked share, under version 1:
    // restored, it can no longer be unwrapped.
    std::fs::remove_dir_all(env.db()).unwrap();
    let (ok, out) = mcsd(&env, &["restore", "--from", image.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(wrapped_version(&env, phone1.key_id()), 1, "the revoked share is in the old backup");
    let out = Command::new(bin("read-share"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .arg(env.config())
        .arg(phone1.key_id())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("unwrap"), "the revoked share no longer opens: {stderr}");
}
