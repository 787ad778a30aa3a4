//! The PDF engine with an ECDSA P-256 key held natively in SoftHSM (`CKM_ECDSA`): standard
//! validators — pyHanko and poppler's pdfsig — accept what it makes, so the structure the
//! SM2 seals share (incremental update, ByteRange, CMS container) is standard.

use std::process::Command;

use mcs_e2e::*;

fn sign_p256(env: &DevEnv, input: &std::path::Path, out: &std::path::Path, cert: &std::path::Path) {
    let status = Command::new(bin("mcsd"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .args(["pdf", "sign-p256", "--config"])
        .arg(env.config())
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--cert-out")
        .arg(cert)
        .args(["--page", "1", "--x", "200", "--y", "600"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
}

#[test]
fn a_p256_hsm_signature_validates_with_pyhanko_and_pdfsig() {
    let env = DevEnv::new();
    let dir = env.path();
    let (input, out, cert) = (dir.join("bid.pdf"), dir.join("signed.pdf"), dir.join("signer.pem"));
    std::fs::write(&input, mcs_pdfseal::pdf::sample_document(2, false)).unwrap();
    sign_p256(&env, &input, &out, &cert);

    let v = Command::new("pyhanko")
        .args(["sign", "validate", "--pretty-print", "--trust-replace", "--trust"])
        .arg(&cert)
        .arg(&out)
        .output()
        .expect("pyhanko (cargo xtask test installs it)");
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(v.status.success(), "pyhanko: {text}{}", String::from_utf8_lossy(&v.stderr));
    assert!(text.contains("The signature is cryptographically sound"), "{text}");
    assert!(text.contains("The signature covers the entire file"), "{text}");
    assert!(text.contains("The signature is judged VALID"), "{text}");

    // A second revision on top (an xref-stream file this time): poppler checks it too.
    let input2 = dir.join("bid2.pdf");
    std::fs::write(&input2, mcs_pdfseal::pdf::sample_document(1, true)).unwrap();
    let (once, twice) = (dir.join("once.pdf"), dir.join("twice.pdf"));
    sign_p256(&env, &input2, &once, &cert);
    sign_p256(&env, &once, &twice, &dir.join("signer2.pem"));
    let p = Command::new("pdfsig").arg(&twice).output().expect("pdfsig (cargo xtask test installs poppler-utils)");
    let text = String::from_utf8_lossy(&p.stdout);
    assert_eq!(text.matches("Signature Validation: Signature is Valid.").count(), 2, "{text}");
    assert_eq!(text.matches("Total document signed").count(), 1, "{text}");
    let q = Command::new("qpdf").arg("--check").arg(&twice).output().expect("qpdf");
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stdout));
}
