//! RFC 3161 time stamps and long-term validation data, checked by independent verifiers:
//! OpenSSL's `ts` (requests it makes, responses it prints and verifies), the RustCrypto SM2
//! and P-256 verifiers, and qpdf for the sealed PDFs. The TSAs sign in software here; the
//! daemon signs the same bytes with its HSM or the two parties.

use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use mcs_pdfseal::cms::{self, Algorithm};
use mcs_pdfseal::image::{demo_seal_png, from_picture};
use mcs_pdfseal::pdf::{self, Appearance, Dss, Placement, SignatureFields};
use mcs_pdfseal::tsp::{self, FailInfo, TimeStampRequest, TstInfoSpec};
use mcs_pdfseal::{Error, SHA256, SM3};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::builder::profile::devid::DevId;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::ext::ToExtension;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

const POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.3161.1");
const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const SM2_ID: &str = "1234567812345678";
/// 2026-11-23T00:00:00.125Z
const GEN_TIME_MS: i64 = 1_795_392_000_125;

enum Key {
    P256(p256::ecdsa::SigningKey),
    Sm2(sm2::dsa::SigningKey),
}

struct Tsa {
    name: Name,
    cert: Vec<u8>,
    key: Key,
}

impl Tsa {
    fn p256() -> Tsa {
        let key = p256::ecdsa::SigningKey::from_slice(&[0x5A; 32]).unwrap();
        let name = Name::from_str("CN=mcsd test TSA P-256,O=mcsd,C=CN").unwrap();
        let builder = Self::builder(&name, SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap());
        let cert = builder.build::<_, p256::ecdsa::DerSignature>(&key).unwrap().to_der().unwrap();
        Tsa { name, cert, key: Key::P256(key) }
    }

    fn sm2() -> Tsa {
        let key = sm2::dsa::SigningKey::from_slice(SM2_ID, &[0x3C; 32]).unwrap();
        let name = Name::from_str("CN=mcsd test TSA SM2,O=mcsd,C=CN").unwrap();
        let builder = Self::builder(&name, SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).unwrap());
        let cert = builder.build::<_, sm2::dsa::Signature>(&key).unwrap().to_der().unwrap();
        Tsa { name, cert, key: Key::Sm2(key) }
    }

    /// A self-signed TSA certificate: digitalSignature, and the critical timeStamping EKU
    /// RFC 3161 §2.3 requires (OpenSSL refuses a TSA certificate without it).
    fn builder(name: &Name, spki: SubjectPublicKeyInfoOwned) -> CertificateBuilder<DevId> {
        let validity = Validity::from_now(Duration::from_secs(3650 * 86_400)).unwrap();
        let serial = SerialNumber::new(&[0x31, 0x61, 0x05]).unwrap();
        let profile = DevId::new(name.clone(), name.clone(), None).unwrap();
        let mut builder = CertificateBuilder::new(profile, serial, validity, spki).unwrap();
        let mut eku = ExtendedKeyUsage(vec![ID_KP_TIME_STAMPING]).to_extension(name, &[]).unwrap();
        eku.critical = true;
        builder.add_extension(eku).unwrap();
        builder
    }

    fn alg(&self) -> Algorithm {
        match self.key {
            Key::P256(_) => Algorithm::EcdsaP256,
            Key::Sm2(_) => Algorithm::Sm2,
        }
    }

    /// DER signature over `message` (SHA-256 + ECDSA, or SM2 with the default ID).
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        match &self.key {
            Key::P256(k) => Signer::<p256::ecdsa::DerSignature>::sign(k, message).to_bytes().to_vec(),
            Key::Sm2(k) => Signer::<sm2::dsa::Signature>::sign(k, message).to_der().to_bytes().to_vec(),
        }
    }

    /// The token answering `req`.
    fn stamp(&self, req: &TimeStampRequest, serial: u128) -> Vec<u8> {
        let tst = tsp::tst_info(&TstInfoSpec {
            policy: req.policy.unwrap_or(POLICY),
            imprint_alg: req.imprint_alg,
            imprint: req.imprint.clone(),
            serial,
            gen_time_unix_ms: GEN_TIME_MS,
            accuracy_ms: Some(1500),
            nonce: req.nonce.clone(),
            tsa_name: Some(self.name.clone()),
        })
        .unwrap();
        let attrs = tsp::token_signed_attributes(self.alg(), &tst, &self.cert).unwrap();
        let signature = self.sign(&cms::to_be_signed(&attrs).unwrap());
        tsp::token(self.alg(), &self.cert, &[], &tst, attrs, &signature, true).unwrap()
    }
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (OpenSSL 3) on PATH");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "openssl {}:\n{text}", args.join(" "));
    text
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Algorithm::EcdsaP256.digest(&[data])
}

/// A request OpenSSL made for `data` (SHA-256, nonce, certReq), read back.
fn openssl_request(dir: &Path, data: &[u8]) -> TimeStampRequest {
    std::fs::write(dir.join("data.bin"), data).unwrap();
    openssl(dir, &["ts", "-query", "-data", "data.bin", "-sha256", "-cert", "-out", "req.der"]);
    tsp::parse_request(&std::fs::read(dir.join("req.der")).unwrap()).unwrap()
}

#[test]
fn requests_round_trip_and_openssl_requests_parse() {
    let req = TimeStampRequest {
        imprint_alg: SM3,
        imprint: vec![7; 32],
        policy: Some(POLICY),
        nonce: Some(vec![0x80, 1, 2]),
        cert_req: true,
    };
    assert_eq!(tsp::parse_request(&tsp::request(&req).unwrap()).unwrap(), req);
    let plain = TimeStampRequest { policy: None, nonce: None, cert_req: false, ..req.clone() };
    assert_eq!(tsp::parse_request(&tsp::request(&plain).unwrap()).unwrap(), plain);

    let dir = tempfile::tempdir().unwrap();
    let parsed = openssl_request(dir.path(), b"the bid file");
    assert_eq!((parsed.imprint_alg, parsed.imprint.clone()), (SHA256, sha256(b"the bid file")));
    assert!(parsed.cert_req && parsed.policy.is_none());
    let nonce = parsed.nonce.expect("openssl sends a nonce");
    assert!(!nonce.is_empty() && nonce[0] != 0);
}

/// DER of a `TimeStampReq` from its encoded fields (for requests `request` will not make).
fn raw_request(fields: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = fields.concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

fn imprint(oid: ObjectIdentifier, len: usize) -> Vec<u8> {
    let alg = spki::AlgorithmIdentifierOwned { oid, parameters: None }.to_der().unwrap();
    let hash = der::asn1::OctetString::new(vec![1; len]).unwrap().to_der().unwrap();
    let body = [alg, hash].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

#[test]
fn requests_a_tsa_cannot_serve_name_the_failure() {
    let fail = |der: &[u8]| match tsp::parse_request(der) {
        Err(Error::Rejected { fail_info, .. }) => fail_info,
        other => panic!("{other:?}"),
    };
    let v1 = [0x02, 0x01, 0x01];
    let sha256 = imprint(SHA256, 32);
    assert!(tsp::parse_request(&raw_request(&[&v1, &sha256])).is_ok());
    assert_eq!(fail(&raw_request(&[&[0x02, 0x01, 0x02], &sha256])), FailInfo::BadRequest);
    assert_eq!(fail(&raw_request(&[&v1, &imprint(SHA256, 31)])), FailInfo::BadDataFormat);
    assert_eq!(fail(&raw_request(&[&v1, &imprint(tsp::SHA384, 32)])), FailInfo::BadDataFormat);
    for (oid, len) in [(tsp::SHA384, 48), (tsp::SHA512, 64), (tsp::SHA1, 20), (SM3, 32)] {
        assert!(tsp::parse_request(&raw_request(&[&v1, &imprint(oid, len)])).is_ok(), "{oid}");
    }
    let md5 = ObjectIdentifier::new_unwrap("1.2.840.113549.2.5");
    assert_eq!(fail(&raw_request(&[&v1, &imprint(md5, 16)])), FailInfo::BadAlg);
    // [0] IMPLICIT Extensions holding one extension (an OID and an empty OCTET STRING).
    let ext = [0xA0, 0x09, 0x30, 0x07, 0x06, 0x03, 0x2A, 0x03, 0x04, 0x04, 0x00];
    assert_eq!(fail(&raw_request(&[&v1, &sha256, &ext])), FailInfo::UnacceptedExtension);
    assert_eq!(fail(b"\x30\x03\x02\x01"), FailInfo::BadDataFormat);
}

#[test]
fn a_p256_tsa_token_passes_openssl_ts_verify() {
    let dir = tempfile::tempdir().unwrap();
    let tsa = Tsa::p256();
    std::fs::write(dir.path().join("tsa.pem"), mcs_pdfseal::pem("CERTIFICATE", &tsa.cert)).unwrap();
    let eku = openssl(dir.path(), &["x509", "-in", "tsa.pem", "-noout", "-ext", "extendedKeyUsage"]);
    assert!(eku.contains("Extended Key Usage: critical") && eku.contains("Time Stamping"), "{eku}");
    let req = openssl_request(dir.path(), b"the bid file");
    let token = tsa.stamp(&req, 0x0102_0304_0506_0708_090A);
    let resp = tsp::response_granted(&token);
    std::fs::write(dir.path().join("resp.der"), &resp).unwrap();

    let verify = ["ts", "-verify", "-in", "resp.der", "-CAfile", "tsa.pem"];
    let out = openssl(dir.path(), &[&verify[..], &["-queryfile", "req.der"]].concat());
    assert!(out.contains("Verification: OK"), "{out}");
    let out = openssl(dir.path(), &[&verify[..], &["-data", "data.bin"]].concat());
    assert!(out.contains("Verification: OK"), "{out}");

    let text = openssl(dir.path(), &["ts", "-reply", "-in", "resp.der", "-text"]);
    let nonce: String = req.nonce.as_ref().unwrap().iter().map(|b| format!("{b:02X}")).collect();
    for want in [
        "Status: Granted.",
        "Policy OID: 1.3.6.1.4.1.32473.3161.1",
        "Hash Algorithm: sha256",
        "Serial number: 0x0102030405060708090A",
        "Time stamp: Nov 23 00:00:00.125 2026 GMT",
        "Accuracy: 0x01 seconds, 0x01F4 millis, unspecified micros",
        "Ordering: no",
        "TSA: DirName:/C=CN/O=mcsd/CN=mcsd test TSA P-256",
    ] {
        assert!(text.contains(want), "`{want}` not in:\n{text}");
    }
    assert!(text.to_uppercase().contains(&format!("NONCE: 0X{nonce}")), "nonce {nonce} not in:\n{text}");

    // A token for other data fails.
    std::fs::write(dir.path().join("other.bin"), b"another file").unwrap();
    let out = Command::new("openssl")
        .args([&verify[..], &["-data", "other.bin"]].concat())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn tokens_read_back_with_their_fields_and_a_verifiable_signature() {
    for tsa in [Tsa::p256(), Tsa::sm2()] {
        let req = TimeStampRequest {
            imprint_alg: SM3,
            imprint: Algorithm::Sm2.digest(&[b"a signature value"]),
            policy: Some(POLICY),
            nonce: Some(vec![0xC0, 0xFF, 0xEE]),
            cert_req: true,
        };
        let token = tsa.stamp(&req, 42);
        let (status, back) = tsp::parse_response(&tsp::response_granted(&token)).unwrap();
        assert_eq!((status, back.as_deref()), (0, Some(&token[..])));
        let view = tsp::parse_token(&token).unwrap();
        assert_eq!(view.gen_time_unix_ms, GEN_TIME_MS);
        assert_eq!(view.serial, [42]);
        assert_eq!((view.policy, view.imprint_alg), (POLICY, SM3));
        assert!(view.imprint_matches(b"a signature value") && !view.imprint_matches(b"another"));
        assert_eq!(view.nonce.as_deref(), Some(&[0xC0, 0xFF, 0xEE][..]));
        assert_eq!(view.accuracy_ms, Some(1500));
        assert_eq!(view.tsa_name.as_ref(), Some(&tsa.name));
        assert_eq!((&view.signer_certificate, &view.certificates), (&tsa.cert, &vec![tsa.cert.clone()]));
        assert_eq!(view.algorithm, tsa.alg());
        assert_eq!((view.digest_alg, view.signature_alg), (tsa.alg().digest_oid(), tsa.alg().signature_oid()));

        let cert = x509_cert::Certificate::from_der(&view.signer_certificate).unwrap();
        let point = cert.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes().to_vec();
        match tsa.alg() {
            Algorithm::EcdsaP256 => {
                use p256::ecdsa::signature::Verifier;
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
                let sig = p256::ecdsa::DerSignature::try_from(&view.signature[..]).unwrap();
                assert!(key.verify(&view.to_be_signed, &sig).is_ok());
                assert!(key.verify(&view.tst_info, &sig).is_err());
            }
            Algorithm::Sm2 => {
                use p256::ecdsa::signature::Verifier;
                let key = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_ID, &point).unwrap();
                let sig = sm2::dsa::Signature::from_der(&view.signature).unwrap();
                assert!(key.verify(&view.to_be_signed, &sig).is_ok());
                // And the project's own verifier, as the daemon checks SM2 signatures.
                let public = mcs_pdfseal::sm2_public_key_of(&view.signer_certificate).unwrap();
                let sig = sm2_2p::Signature::from_der(&view.signature).unwrap();
                assert!(sm2_2p::verify(&public, &sm2_2p::e_for_message(&public, &view.to_be_signed), &sig));
            }
        }

        // The TSTInfo cannot change under the signature: the message digest catches it.
        let at = token.windows(3).position(|w| w == [0xC0, 0xFF, 0xEE]).unwrap();
        let mut forged = token.clone();
        forged[at] ^= 1;
        assert!(matches!(tsp::parse_token(&forged), Err(Error::Invalid(_))));
    }
}

#[test]
fn an_sm2_token_prints_its_fields_in_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let tsa = Tsa::sm2();
    let req = TimeStampRequest {
        imprint_alg: SM3,
        imprint: vec![0xAB; 32],
        policy: None,
        nonce: Some(vec![0x12, 0x34]),
        cert_req: false,
    };
    std::fs::write(dir.path().join("resp.der"), tsp::response_granted(&tsa.stamp(&req, 7))).unwrap();
    let text = openssl(dir.path(), &["ts", "-reply", "-in", "resp.der", "-text"]);
    for want in [
        "Status: Granted.",
        "Policy OID: 1.3.6.1.4.1.32473.3161.1",
        "Hash Algorithm: sm3",
        "Serial number: 0x07",
        "Nonce: 0x1234",
        "Accuracy: 0x01 seconds, 0x01F4 millis, unspecified micros",
        "TSA: DirName:/C=CN/O=mcsd/CN=mcsd test TSA SM2",
    ] {
        assert!(text.contains(want), "`{want}` not in:\n{text}");
    }
}

#[test]
fn rejections_are_read_by_openssl_and_by_parse_response() {
    let dir = tempfile::tempdir().unwrap();
    let resp = tsp::response_rejected(FailInfo::UnacceptedPolicy, "policy not offered");
    assert_eq!(tsp::parse_response(&resp).unwrap(), (2, None));
    std::fs::write(dir.path().join("resp.der"), &resp).unwrap();
    let text = openssl(dir.path(), &["ts", "-reply", "-in", "resp.der", "-text"]);
    for want in [
        "Status: Rejected.",
        "Status description: policy not offered",
        "Failure info: the requested TSA policy is not supported by the TSA",
    ] {
        assert!(text.contains(want), "`{want}` not in:\n{text}");
    }
}

#[test]
fn token_inputs_are_checked() {
    let spec = TstInfoSpec {
        policy: POLICY,
        imprint_alg: SHA256,
        imprint: vec![0; 32],
        serial: 0,
        gen_time_unix_ms: 0,
        accuracy_ms: None,
        nonce: None,
        tsa_name: None,
    };
    assert!(tsp::tst_info(&spec).is_err(), "serial 0");
    assert!(tsp::tst_info(&TstInfoSpec { serial: 1, gen_time_unix_ms: -1, ..spec.clone() }).is_err());
    assert!(tsp::tst_info(&TstInfoSpec { serial: 1, nonce: Some(vec![]), ..spec.clone() }).is_err());
    assert!(tsp::tst_info(&TstInfoSpec { serial: u128::MAX, ..spec }).is_ok());
    assert!(tsp::token_signed_attributes(Algorithm::Sm2, b"tst", b"not a certificate").is_err());
    // A PDF signature container is not a token.
    let tsa = Tsa::p256();
    let attrs = cms::signed_attributes(Algorithm::EcdsaP256, &[0; 32], 0, None).unwrap();
    let container = cms::signed_data(Algorithm::EcdsaP256, &tsa.cert, &[], attrs, &[0x30, 0]).unwrap();
    assert!(tsp::parse_token(&container).is_err());
    assert_eq!(tsp::imprint_digest(SHA256, b"x"), Some(sha256(b"x")));
    assert_eq!(tsp::imprint_digest(tsp::SHA384, b"x"), None);
}

/// The signer of the PDF in the LTV test: P-256 in software (the daemon's HSM path).
fn sign_container(signer: &Tsa, digest: &[u8]) -> Vec<u8> {
    let attrs = cms::signed_attributes(signer.alg(), digest, 1_795_392_000, None).unwrap();
    let signature = signer.sign(&cms::to_be_signed(&attrs).unwrap());
    cms::signed_data(signer.alg(), &signer.cert, &[], attrs, &signature).unwrap()
}

#[test]
fn a_signature_time_stamp_rides_in_the_container_unsigned() {
    let signer = Tsa::sm2();
    let tsa = Tsa::p256();
    let container = sign_container(&signer, &[9; 32]);
    assert_eq!(cms::parse(&container).unwrap().timestamp_token, None);
    let value = cms::signature_value(&container).unwrap();
    assert_eq!(value, cms::parse(&container).unwrap().signature);

    let req =
        TimeStampRequest { imprint_alg: SHA256, imprint: sha256(&value), policy: None, nonce: None, cert_req: true };
    let token = tsa.stamp(&req, 1);
    let mut padded = container.clone();
    padded.extend([0; 64]); // as read from /Contents
    let stamped = cms::with_signature_time_stamp(&padded, &token).unwrap();
    let before = cms::parse(&container).unwrap();
    let after = cms::parse(&stamped).unwrap();
    assert_eq!(after.timestamp_token.as_deref(), Some(&token[..]));
    assert_eq!((&after.to_be_signed, &after.signature), (&before.to_be_signed, &before.signature));
    assert!(tsp::parse_token(&token).unwrap().imprint_matches(&value));

    // The same container as built in one go, and a second stamp replaces the first.
    let attrs = cms::signed_attributes(signer.alg(), &[9; 32], 1_795_392_000, None).unwrap();
    let one_go = cms::signed_data_with(
        signer.alg(),
        &signer.cert,
        &[],
        attrs,
        &before.signature,
        Some(cms::signature_time_stamp(&token).unwrap()),
    )
    .unwrap();
    assert_eq!(one_go, stamped);
    let again = tsa.stamp(&req, 2);
    let restamped = cms::with_signature_time_stamp(&stamped, &again).unwrap();
    assert_eq!(cms::parse(&restamped).unwrap().timestamp_token.as_deref(), Some(&again[..]));
    assert!(cms::signature_time_stamp(b"junk").is_err());
    assert!(cms::with_signature_time_stamp(&container, &[0x30, 0x00]).is_err());
}

fn qpdf_check(dir: &Path, pdf: &[u8]) {
    std::fs::write(dir.join("sealed.pdf"), pdf).unwrap();
    let out = Command::new("qpdf").arg("--check").arg("sealed.pdf").current_dir(dir).output().expect("qpdf");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("No syntax or stream encoding errors"), "{text}");
}

#[test]
fn a_sealing_revision_carries_the_validation_data_and_the_time_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Tsa::p256();
    let tsa = Tsa::sm2();
    let image = from_picture("PNG", &demo_seal_png(32)).unwrap();
    let look = Appearance { image: &image, width_pt: 80.0, height_pt: 80.0 };
    let crl = vec![0x30, 0x03, 0x02, 0x01, 0x01];
    for xref_stream in [false, true] {
        let mut pdf_bytes = pdf::sample_document(2, xref_stream);
        assert_eq!(pdf::dss(&pdf_bytes).unwrap(), (vec![], vec![]));
        let rounds = [
            Dss { certs: std::slice::from_ref(&signer.cert), crls: std::slice::from_ref(&crl) },
            Dss { certs: &[tsa.cert.clone(), signer.cert.clone()], crls: &[] },
        ];
        for (i, dss) in rounds.iter().enumerate() {
            let fields = SignatureFields {
                field_name: &format!("Seal{i}"),
                signer_name: "Zhang San",
                reason: "bid",
                signing_time: 1_795_392_000,
                reserve: 8192,
            };
            let placement = Placement::At { page: 1, x: 200.0, y: 200.0 + 100.0 * i as f64 };
            let prepared = pdf::prepare_with_dss(&pdf_bytes, &placement, &look, &fields, Some(dss)).unwrap();
            // The DSS is in the signed bytes.
            let [head, _] = prepared.signed_ranges();
            assert!(head.windows(4).any(|w| w == b"/DSS"), "no /DSS in the revision");
            let container = sign_container(&signer, &signer.alg().digest(&prepared.signed_ranges()));
            let value = cms::signature_value(&container).unwrap();
            let req = TimeStampRequest {
                imprint_alg: SM3,
                imprint: Algorithm::Sm2.digest(&[&value]),
                policy: None,
                nonce: None,
                cert_req: true,
            };
            let stamped = cms::with_signature_time_stamp(&container, &tsa.stamp(&req, 5)).unwrap();
            pdf_bytes = prepared.embed(&stamped).unwrap();
        }
        qpdf_check(dir.path(), &pdf_bytes);
        // Existing entries kept, new ones added, none twice.
        let (certs, crls) = pdf::dss(&pdf_bytes).unwrap();
        assert_eq!(certs, [signer.cert.clone(), tsa.cert.clone()]);
        assert_eq!(crls, std::slice::from_ref(&crl));
        let found = pdf::signatures(&pdf_bytes).unwrap();
        assert_eq!(found.len(), 2);
        for f in &found {
            let parsed = cms::parse(&f.contents).unwrap();
            let token = tsp::parse_token(parsed.timestamp_token.as_deref().unwrap()).unwrap();
            assert!(token.imprint_matches(&parsed.signature));
        }
    }
}

#[test]
fn prepare_without_dss_leaves_the_catalog_without_one() {
    let image = from_picture("PNG", &demo_seal_png(32)).unwrap();
    let look = Appearance { image: &image, width_pt: 80.0, height_pt: 80.0 };
    let fields = SignatureFields { field_name: "S", signer_name: "n", reason: "r", signing_time: 0, reserve: 1024 };
    let original = pdf::sample_document(1, false);
    let prepared = pdf::prepare(&original, &Placement::At { page: 1, x: 100.0, y: 100.0 }, &look, &fields).unwrap();
    let sealed = prepared.embed(&[0x30, 0]).unwrap();
    assert_eq!(pdf::dss(&sealed).unwrap(), (vec![], vec![]));
    let empty = Dss { certs: &[], crls: &[] };
    let prepared =
        pdf::prepare_with_dss(&sealed, &Placement::At { page: 1, x: 300.0, y: 100.0 }, &look, &fields, Some(&empty))
            .unwrap();
    let sealed = prepared.embed(&[0x30, 0]).unwrap();
    assert_eq!(pdf::dss(&sealed).unwrap(), (vec![], vec![]));
    qpdf_check(tempfile::tempdir().unwrap().path(), &sealed);
}
