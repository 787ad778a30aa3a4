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

/// `mcsd pdf sign-p256` with the dev CA's certificate for the key, a signature time-stamp
/// from the P-256 TSA and a DSS holding both chains and the dev CA's CRL.
fn sign_long_term(env: &DevEnv, input: &std::path::Path, out: &std::path::Path, crl: bool) {
    let pki = env.path().join("pki");
    let mut cmd = Command::new(bin("mcsd"));
    cmd.env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .args(["pdf", "sign-p256", "--timestamp", "--config"])
        .arg(env.config())
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--chain")
        .arg(pki.join("pdf-p256.pem"));
    if crl {
        cmd.arg("--crl").arg(pki.join("ca.crl"));
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("time-stamped, with a DSS"));
}

/// pyHanko's AdES validation (ETSI EN 319 102-1: revocation information required for
/// every certificate), trusting only the dev CA. The certificates name no CRL or OCSP URL,
/// so nothing can be fetched: the signature, its time-stamp and both chains must validate
/// from what the document carries (this pyHanko's long-term validation).
fn pyhanko_long_term(env: &DevEnv, pdf: &std::path::Path) -> (bool, String) {
    let v = Command::new("pyhanko")
        .args(["sign", "adesverify", "--pretty-print", "--trust-replace", "--trust"])
        .arg(env.path().join("pki/ca.pem"))
        .arg(pdf)
        .output()
        .expect("pyhanko (cargo xtask test installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&v.stdout), String::from_utf8_lossy(&v.stderr));
    (v.status.success(), text)
}

#[test]
fn a_time_stamped_p256_signature_with_its_dss_validates_long_term_offline() {
    let env = DevEnv::new();
    let dir = env.path();
    let input = dir.join("bid.pdf");
    std::fs::write(&input, mcs_pdfseal::pdf::sample_document(2, false)).unwrap();
    let ltv = dir.join("ltv.pdf");
    sign_long_term(&env, &input, &ltv, true);

    let (ok, text) = pyhanko_long_term(&env, &ltv);
    assert!(ok, "pyhanko adesverify: {text}");
    for want in [
        "The signer's certificate is trusted.",
        "The signature is cryptographically sound.",
        "This timestamp is backed by a time stamping authority.",
        "The timestamp token is cryptographically sound.",
        "The TSA certificate is trusted.",
        "The signature covers the entire file.",
        "The signature is judged VALID.",
    ] {
        assert!(text.contains(want), "`{want}` missing:\n{text}");
    }

    // The same signature without the CRL in the DSS: nothing to check revocation with.
    let bare = dir.join("no-crl.pdf");
    sign_long_term(&env, &input, &bare, false);
    let (ok, text) = pyhanko_long_term(&env, &bare);
    assert!(!ok && text.contains("no revocation information could be found"), "{text}");

    let q = Command::new("qpdf").arg("--check").arg(&ltv).output().expect("qpdf");
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stdout));
}
