//! The mock in front of a real SoftHSM token, driven through cryptoki like the daemon
//! drives it: calls are forwarded, and faults and latency appear exactly as commanded.
//! One test function, because the environment (SOFTHSM2_CONF, mock settings) is per process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn mock_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    // `cargo test` leaves the cdylib in deps/; `cargo build` also copies it up.
    [dir.join("libpkcs11_mock.so"), dir.join("deps/libpkcs11_mock.so")]
        .into_iter()
        .find(|p| p.exists())
        .expect("libpkcs11_mock.so missing (cargo builds it with this package)")
}

fn softhsm() -> PathBuf {
    ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("SoftHSM is not installed: apt-get install -y softhsm2")
}

/// Replace the control file atomically (new inode), as a test harness should.
fn command(control: &Path, text: &str) {
    let tmp = control.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, control).unwrap();
}

fn rv(e: Error) -> RvError {
    match e {
        Error::Pkcs11(rv, _) => rv,
        other => panic!("expected a PKCS#11 error, got {other}"),
    }
}

#[test]
fn forwards_to_softhsm_and_injects_faults_on_command() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )
    .unwrap();
    let control = dir.path().join("control");
    // SAFETY: this is the only test in this binary, and no other thread reads the
    // environment while it is being set.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &conf);
        std::env::set_var("PKCS11_MOCK_MODULE", softhsm());
        std::env::set_var("PKCS11_MOCK_CONTROL", &control);
    }
    let status = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "t", "--so-pin", "1234", "--pin", "5678"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("softhsm2-util");
    assert!(status.success());

    let pkcs11 = Pkcs11::new(mock_library()).unwrap();
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).unwrap();
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label() == "t")
        .expect("token through the mock");
    let session = pkcs11.open_rw_session(slot).unwrap();
    session.login(UserType::User, Some(&AuthPin::from("5678".to_owned()))).unwrap();
    let key = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .unwrap();
    let encrypt = || {
        let mut iv = [7u8; 12];
        let params = GcmParams::new(&mut iv, b"aad", 128.into()).unwrap();
        session.encrypt(&Mechanism::AesGcm(params), key, b"share bytes")
    };
    let decrypt = |ct: &[u8]| {
        let mut iv = [7u8; 12];
        let params = GcmParams::new(&mut iv, b"aad", 128.into()).unwrap();
        session.decrypt(&Mechanism::AesGcm(params), key, ct)
    };

    // Forwarding: a real AES-GCM round trip through SoftHSM.
    let ct = encrypt().unwrap();
    assert_eq!(decrypt(&ct).unwrap(), b"share bytes");

    // The next 3 eligible calls fail with CKR_DEVICE_ERROR, then calls work again.
    command(&control, "fault = device_error\ncount = 3\n");
    for _ in 0..3 {
        assert_eq!(rv(encrypt().unwrap_err()), RvError::DeviceError);
    }
    assert_eq!(encrypt().unwrap(), ct);
    let status = std::fs::read_to_string(dir.path().join("control.status")).unwrap();
    assert_eq!(status.trim(), "injected = 3");

    // Only the named functions are eligible.
    command(&control, "fault = session_handle_invalid\ncount = 1\nfunctions = C_DecryptInit\n");
    assert_eq!(encrypt().unwrap(), ct);
    assert_eq!(rv(decrypt(&ct).unwrap_err()), RvError::SessionHandleInvalid);
    assert_eq!(decrypt(&ct).unwrap(), b"share bytes");

    command(&control, "fault = token_not_present\ncount = 1\n");
    assert_eq!(rv(encrypt().unwrap_err()), RvError::TokenNotPresent);

    // A share of calls.
    command(&control, "fault = device_error\nratio = 0.5\nfunctions = C_EncryptInit\n");
    let failed = (0..200).filter(|_| encrypt().is_err()).count();
    assert!((50..150).contains(&failed), "{failed} of 200 failed");

    // Added latency, no faults.
    command(&control, "latency_ms = 30\n");
    let start = Instant::now();
    assert_eq!(encrypt().unwrap(), ct);
    assert!(start.elapsed() >= Duration::from_millis(60), "two calls (init + encrypt) at 30 ms each");

    command(&control, "fault = none\n");
    assert_eq!(decrypt(&encrypt().unwrap()).unwrap(), b"share bytes");
}
