//! The `http-ra` adapter against a test RA (HTTPS, its own JSON field and header names,
//! HMAC-SM3 signed requests): issue through the phone flow, status, revoke, CRL; a wrong
//! app secret is refused by the RA and surfaces as `plugin_error`.

use base64::Engine;
use hyper::Method;
use mcs_client::phone::{Phone, SignMode};
use mcs_e2e::ra::{TestRa, pem};
use mcs_e2e::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn ra_plugin(env: &DevEnv, ra: &TestRa, name: &str, secret: &str) -> String {
    let secret_file = env.path().join(format!("{name}.secret"));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    format!(
        "\n[[plugins]]\nname = \"{name}\"\nlibrary = \"{}\"\nconfig = {}\n",
        bin("libmcs_http_ra.so").display(),
        ra.adapter_config(&env.pki().join("ca.pem"), &secret_file)
    )
}

async fn enroll_with(admin: &mut mcs_client::Connection, ca: &str, name: &str) -> (String, String) {
    let req = mcs_client::admin::EnrollmentRequest {
        subject: mcs_client::admin::Subject {
            kind: mcs_client::admin::SubjectKind::Person,
            name: name.into(),
            org_name: None,
            credit_code: None,
            id_number: None,
        },
        ca: ca.into(),
        profile: None,
        platforms: vec!["P-DEV-1".into()],
        validity_days: 90,
    };
    let v = mcs_client::admin::create_enrollment(admin, &req).await.unwrap();
    (v["enrollment_id"].as_str().unwrap().to_owned(), v["activation_code"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_come_from_the_remote_ra_and_a_wrong_hmac_is_a_plugin_error() {
    let env = DevEnv::new();
    let ra = TestRa::start(&env.pki(), env.path());
    let mut plugins = ra_plugin(&env, &ra, "ra", &ra.secret);
    plugins += &ra_plugin(&env, &ra, "ra-wrong-secret", "not-the-secret");
    env.append_config(&plugins);
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let list = admin.json(Method::GET, "/v1/plugins", None).await.unwrap();
    let ra_entry = list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "ra").cloned().unwrap();
    assert_eq!(ra_entry["status"], "loaded", "{list}");

    // Issue: the phone co-signs the CSR, the daemon's adapter asks the RA.
    let (enrollment, code) = enroll_with(&mut admin, "ra", "Wang Wu").await;
    let mut app = connect(&env, &daemon, "app1").await;
    let phone = Phone::activate(&mut app, "t", &enrollment, &code, "135790").await.unwrap();
    let k = mcs_client::admin::get_key(&mut admin, phone.key_id()).await.unwrap();
    assert_eq!(k["status"], "active", "{k}");
    {
        let log = ra.log.lock().unwrap();
        let (path, body) =
            log.accepted.iter().find(|(p, _)| p.ends_with("/cert/apply")).expect("the RA saw the application");
        assert_eq!(path, "/ra/v2/cert/apply");
        assert_eq!(body["bizType"], "MOBILE_CERT");
        assert_eq!(body["apply"]["userName"], "Wang Wu");
        assert_eq!(body["apply"]["validDays"], 90);
        assert_eq!(log.bad_signatures, 0);
    }
    let leaf = env.path().join("ra-leaf.pem");
    std::fs::write(&leaf, pem("CERTIFICATE", &B64.decode(k["certificate"].as_str().unwrap()).unwrap())).unwrap();
    let (ok, out) = openssl(&[
        "verify".as_ref(),
        "-vfyopt".as_ref(),
        "distid:1234567812345678".as_ref(),
        "-CAfile".as_ref(),
        ra.ca_pem.as_os_str(),
        leaf.as_os_str(),
    ]);
    assert!(ok && out.contains(": OK"), "{out}");
    // The chain the RA sent as PEM arrives as DER: it is the RA's CA.
    assert_eq!(B64.decode(k["chain"][0].as_str().unwrap()).unwrap(), ra_ca_der(&ra));
    let (ok, certified) =
        openssl(&["x509".as_ref(), "-in".as_ref(), leaf.as_os_str(), "-pubkey".as_ref(), "-noout".as_ref()]);
    assert!(ok);
    assert_eq!(certified.trim(), mcs_client::phone::public_key_pem(phone.public_key()).trim());
    let sig = phone.sign_message(&mut app, b"bid file digest", SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), b"bid file digest", &sig.to_der()));

    // Status and revoke go to the RA.
    let serial = k["certificate_serial"].as_str().unwrap().to_owned();
    let status_path = format!("/v1/plugins/ra/status?serial={serial}");
    assert_eq!(admin.json(Method::GET, &status_path, None).await.unwrap()["status"], "good");
    let revoked = mcs_client::admin::revoke(&mut admin, phone.key_id(), "key_compromise").await.unwrap();
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(admin.json(Method::GET, &status_path, None).await.unwrap()["status"], "revoked");
    {
        let log = ra.log.lock().unwrap();
        let (_, body) =
            log.accepted.iter().find(|(p, _)| p.ends_with("/cert/revoke")).expect("the RA saw the revocation");
        assert_eq!(body["serialNo"], serial.as_str());
        assert_eq!(body["revokeReason"], "key_compromise");
    }
    let crl = admin.json(Method::GET, "/v1/plugins/ra/crl", None).await.unwrap();
    let crl_path = env.path().join("ra.crl");
    std::fs::write(&crl_path, B64.decode(crl["crl"].as_str().unwrap()).unwrap()).unwrap();
    let (ok, text) = openssl(&[
        "crl".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        crl_path.as_os_str(),
        "-noout".as_ref(),
        "-text".as_ref(),
    ]);
    assert!(ok && text.to_ascii_lowercase().replace(':', "").contains(&serial), "{text}");
    assert_eq!(
        phone.sign_message(&mut app, b"after", SignMode::Canonical).await.unwrap_err().code(),
        Some("key_inactive")
    );

    // A wrong app secret: the RA refuses the signature; the daemon reports plugin_error and
    // the key stays pending, without a certificate.
    let before = ra.log.lock().unwrap().bad_signatures;
    let resp =
        admin.call(Method::GET, &format!("/v1/plugins/ra-wrong-secret/status?serial={serial}"), None).await.unwrap();
    assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (502, Some("plugin_error")), "{:?}", resp.body);
    let (enrollment, code) = enroll_with(&mut admin, "ra-wrong-secret", "Zhao Liu").await;
    let mut app2 = connect(&env, &daemon, "app2").await;
    let Err(err) = Phone::activate(&mut app2, "t", &enrollment, &code, "246801").await else {
        panic!("activation through a misconfigured RA succeeded");
    };
    assert_eq!(err.code(), Some("plugin_error"), "{err:?}");
    assert_eq!(ra.log.lock().unwrap().bad_signatures, before + 2, "both requests reached the RA and were refused");
    let pending = mcs_client::admin::list_keys(&mut admin, None, Some("pending")).await.unwrap();
    let pending = pending["keys"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(pending[0].get("certificate").is_none_or(|c| c.is_null()));

    // The good adapter is unaffected.
    let again = admin.call(Method::GET, &status_path, None).await.unwrap();
    assert_eq!(again.body["status"], "revoked", "{:?}", again.body);
}

fn ra_ca_der(ra: &TestRa) -> Vec<u8> {
    let text = std::fs::read_to_string(&ra.ca_pem).unwrap();
    B64.decode(text.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap()
}
