//! A test RA: an HTTPS JSON API in the style of Chinese CA registration authorities, with
//! its own field names and header names, HMAC-SM3 request signatures checked against an
//! app secret (with timestamp window and nonce replay check), and a real SM2 CA behind it
//! (the `local-ca` engine on an in-memory key and state).
//!
//! API (all POST, JSON, `resultCode` "0000" on success):
//! - `/ra/v2/cert/apply` `{"bizType", "apply": {"p10", "certType", "userName", "validDays"}}`
//!   → `data.signCert` (PEM), `data.caChain` (concatenated PEM);
//! - `/ra/v2/cert/revoke` `{"serialNo", "revokeReason"}`;
//! - `/ra/v2/cert/query` `{"serialNo"}` → `data.certStatus` 1 good, 2 revoked, 0 unknown;
//! - `/ra/v2/crl` → `data.crl` (base64 DER).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use mcs_plugin_abi::Adapter;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub const APP_ID: &str = "mcsd-test";

/// What the RA saw: accepted requests by path, refused signatures, revocation reasons.
#[derive(Default, Debug)]
pub struct RaLog {
    pub accepted: Vec<(String, Value)>,
    pub bad_signatures: usize,
    pub replays: usize,
}

pub struct TestRa {
    pub port: u16,
    pub secret: String,
    /// The RA's CA certificate, PEM.
    pub ca_pem: PathBuf,
    pub log: Arc<Mutex<RaLog>>,
}

pub use mcs_client::phone::pem;

struct Shared {
    ca: mcs_local_ca::LocalCa,
    secret: String,
    log: Arc<Mutex<RaLog>>,
    nonces: Mutex<HashSet<String>>,
}

impl TestRa {
    /// Start on a free port with TLS from the dev PKI in `pki` (`server.pem`/`server.key`),
    /// with the CA's root certificate in `dir` (`ra-ca.pem`).
    pub fn start(pki: &Path, dir: &Path) -> TestRa {
        let secret = hex::encode(sm2_2p::hmac_sm3(b"test-ra", dir.as_os_str().as_encoded_bytes()));
        let ca = mcs_local_ca::LocalCa::open(
            Box::new(mcs_local_ca::MemoryKey(sm2_2p::DaemonKey::generate())),
            Box::new(mcs_local_ca::MemoryKv::default()),
            json!({ "ca_name": "Test RA SM2 CA" }).to_string().as_bytes(),
        )
        .expect("test RA CA");
        let ca_pem = dir.join("ra-ca.pem");
        std::fs::write(&ca_pem, pem("CERTIFICATE", ca.root_der())).unwrap();

        let read = |name: &str| std::fs::read(pki.join(name)).unwrap();
        let (certs, key) = (crate::pem_certs(&read("server.pem")), crate::pem_key(&read("server.key")));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(RaLog::default()));
        let shared =
            Arc::new(Shared { ca, secret: secret.clone(), log: log.clone(), nonces: Mutex::new(HashSet::new()) });
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (config, shared) = (config.clone(), shared.clone());
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    if let Some((path, headers, body)) = read_request(&mut tls) {
                        let (status, answer) = shared.handle(&path, &headers, &body);
                        let body = answer.to_string();
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = tls.write_all(head.as_bytes());
                        let _ = tls.write_all(body.as_bytes());
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    }
                });
            }
        });
        TestRa { port, secret, ca_pem, log }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/ra/v2", self.port)
    }

    /// The `config` table of an `http-ra` `[[plugins]]` entry for this RA, as TOML.
    pub fn adapter_config(&self, ca_file: &Path, secret_file: &Path) -> String {
        format!(
            r#"{{ url = "{url}", ca_file = "{ca}", app_id = "{APP_ID}", app_secret_file = "{secret}", timeout_ms = 5000, profiles = ["person", "org"], signing = {{ app_id_header = "X-Ca-AppKey", timestamp_header = "X-Ca-Timestamp", nonce_header = "X-Ca-Nonce", signature_header = "X-Ca-Signature" }}, result = {{ code = "resultCode", ok = "0000", message = "resultMsg" }}, operations = {{ issue = {{ path = "/cert/apply", request = {{ "apply.p10" = "csr", "apply.certType" = "profile", "apply.userName" = "subject.name", "apply.orgName" = "subject.org_name", "apply.creditCode" = "subject.credit_code", "apply.validDays" = "validity_days" }}, constants = {{ bizType = "MOBILE_CERT" }}, response = {{ certificate = "data.signCert", chain = "data.caChain" }} }}, revoke = {{ path = "/cert/revoke", request = {{ serialNo = "serial", revokeReason = "reason" }} }}, status = {{ path = "/cert/query", request = {{ serialNo = "serial" }}, response = {{ status = "data.certStatus" }}, values = {{ status = {{ "0" = "unknown", "1" = "good", "2" = "revoked" }} }} }}, crl = {{ path = "/crl", response = {{ crl = "data.crl" }} }} }} }}"#,
            url = self.url(),
            ca = ca_file.display(),
            secret = secret_file.display(),
        )
    }
}

/// (path, lower-cased headers, body)
type Request = (String, Vec<(String, String)>, Vec<u8>);

fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let path = lines.next()?.split(' ').nth(1)?.to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Some((path, headers, buf[end + 4..end + 4 + len].to_vec()));
        }
    }
}

fn refuse(status: u16, code: &str, msg: &str) -> (u16, Value) {
    (status, json!({ "resultCode": code, "resultMsg": msg }))
}

impl Shared {
    fn handle(&self, path: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Value) {
        let header = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.as_str()).unwrap_or("");
        let (app, ts, nonce, sig) =
            (header("x-ca-appkey"), header("x-ca-timestamp"), header("x-ca-nonce"), header("x-ca-signature"));
        if app != APP_ID {
            return refuse(401, "4010", "unknown app key");
        }
        let now_ms = mcsd::clock::now_ms() as i128;
        if ts.parse::<i128>().map_or(true, |t| (now_ms - t).abs() > 300_000) {
            return refuse(401, "4012", "timestamp outside the window");
        }
        let mut signed = format!("{app}\n{ts}\n{nonce}\n").into_bytes();
        signed.extend_from_slice(body);
        if hex::encode(sm2_2p::hmac_sm3(self.secret.as_bytes(), &signed)) != sig {
            self.log.lock().unwrap().bad_signatures += 1;
            return refuse(401, "4011", "signature mismatch");
        }
        if nonce.len() < 16 || !self.nonces.lock().unwrap().insert(nonce.to_owned()) {
            self.log.lock().unwrap().replays += 1;
            return refuse(401, "4013", "nonce replayed");
        }
        let Ok(req) = serde_json::from_slice::<Value>(body) else { return refuse(400, "4000", "body is not JSON") };
        // The body must be canonical: sorted keys, no whitespace (serde_json's maps sort).
        if serde_json::to_vec(&req).unwrap() != body {
            return refuse(400, "4001", "body is not canonical JSON");
        }
        self.log.lock().unwrap().accepted.push((path.to_owned(), req.clone()));
        let call = |op: &str, r: Value| {
            self.ca.call(op, r.to_string().as_bytes()).map(|a| serde_json::from_slice::<Value>(&a).unwrap())
        };
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let result = match path.strip_prefix("/ra/v2").unwrap_or("") {
            "/cert/apply" => {
                let a = &req["apply"];
                if req["bizType"] != "MOBILE_CERT" {
                    return refuse(400, "4002", "unknown bizType");
                }
                let subject =
                    json!({ "name": a["userName"], "org_name": a["orgName"], "credit_code": a["creditCode"] });
                call("issue", json!({ "csr": a["p10"], "profile": a["certType"], "subject": subject, "validity_days": a["validDays"] })).map(|issued| {
                    let cert = B64.decode(issued["certificate"].as_str().unwrap()).unwrap();
                    let chain: String = issued["chain"].as_array().unwrap().iter().map(|c| pem("CERTIFICATE", &B64.decode(c.as_str().unwrap()).unwrap())).collect();
                    json!({ "signCert": pem("CERTIFICATE", &cert), "caChain": chain, "serialNo": issued["serial"] })
                })
            }
            "/cert/revoke" => {
                call("revoke", json!({ "serial": text(&req["serialNo"]), "reason": text(&req["revokeReason"]) }))
                    .map(|_| json!({}))
            }
            "/cert/query" => call("status", json!({ "serial": text(&req["serialNo"]) })).map(|s| {
                let code = match s["status"].as_str() {
                    Some("good") => 1,
                    Some("revoked") => 2,
                    _ => 0,
                };
                json!({ "certStatus": code })
            }),
            "/crl" => call("crl", json!({})).map(|c| json!({ "crl": c["crl"] })),
            _ => return refuse(404, "4040", "no such API"),
        };
        match result {
            Ok(data) => (200, json!({ "resultCode": "0000", "resultMsg": "success", "data": data })),
            Err(mcs_plugin_abi::CallError::Failed(msg)) => refuse(200, "5001", &msg),
            Err(mcs_plugin_abi::CallError::Unsupported) => refuse(200, "5002", "unsupported"),
        }
    }
}
