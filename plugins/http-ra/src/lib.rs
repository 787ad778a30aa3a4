//! `http-ra`: a CA adapter that talks to a remote CA's registration authority over HTTPS.
//!
//! Chinese RA APIs differ in paths and field names but share a shape: JSON over HTTPS
//! POST, a result code in the body, and requests signed with HMAC over the body under an
//! app secret. This adapter is configured, not coded, per RA:
//!
//! - `url` (`https://…`, with an optional base path), `ca_file` (PEM roots for the RA's
//!   server certificate), optional `client_cert`/`client_key` (PEM) for mutual TLS,
//!   `timeout_ms` (default 10000);
//! - `app_id`, and the secret in `app_secret_file` (preferred) or `app_secret`;
//! - `signing`: header names (defaults `X-App-Id`, `X-Timestamp`, `X-Nonce`, `X-Signature`);
//! - `result`: where the RA puts its result code and message, and the code meaning success
//!   (defaults `code`, `"0"`, `msg`);
//! - `operations`: for each of `issue`, `revoke`, `status`, `crl` that the RA supports, its
//!   `path`, a `request` map (RA field path → our field path), `constants` (RA field path →
//!   fixed value), a `response` map (our field → RA field path) and optional `values`
//!   (per our field, RA value → our value). Paths are dotted (`data.signCert`).
//!
//! Signing: the body is canonical JSON (object keys sorted, no insignificant whitespace),
//! and `X-Signature` is lowercase hex of HMAC-SM3(secret, app_id "\n" timestamp "\n"
//! nonce "\n" body), timestamp in Unix milliseconds and a fresh 128-bit hex nonce.
//!
//! Our side of the mapping is the adapter operations of the plugin ABI: `issue` takes
//! `csr` (base64 DER), `profile`, `subject.*`, `validity_days` and answers `certificate`
//! and `chain` (base64 DER; PEM from the RA is converted); `revoke` takes `serial` and
//! `reason`; `status` answers `status` (`good` / `revoked` / `unknown`); `crl` answers
//! `crl`.

mod http;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use mcs_plugin_abi::{Adapter, CallError, HostHandle, export_adapter};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use http::Url;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn failed(e: impl std::fmt::Display) -> CallError {
    CallError::Failed(e.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    ca_file: String,
    #[serde(default)]
    client_cert: Option<String>,
    #[serde(default)]
    client_key: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    app_id: String,
    #[serde(default)]
    app_secret: Option<String>,
    #[serde(default)]
    app_secret_file: Option<String>,
    #[serde(default)]
    signing: Signing,
    #[serde(default)]
    result: ResultSpec,
    #[serde(default)]
    profiles: Vec<String>,
    operations: BTreeMap<String, Operation>,
}

fn default_timeout() -> u64 {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Signing {
    app_id_header: String,
    timestamp_header: String,
    nonce_header: String,
    signature_header: String,
}

impl Default for Signing {
    fn default() -> Signing {
        Signing {
            app_id_header: "X-App-Id".into(),
            timestamp_header: "X-Timestamp".into(),
            nonce_header: "X-Nonce".into(),
            signature_header: "X-Signature".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ResultSpec {
    code: String,
    ok: String,
    message: String,
}

impl Default for ResultSpec {
    fn default() -> ResultSpec {
        ResultSpec { code: "code".into(), ok: "0".into(), message: "msg".into() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Operation {
    path: String,
    /// RA field path → our field path.
    #[serde(default)]
    request: BTreeMap<String, String>,
    /// RA field path → fixed value.
    #[serde(default)]
    constants: BTreeMap<String, Value>,
    /// Our field → RA field path.
    #[serde(default)]
    response: BTreeMap<String, String>,
    /// Our field → (RA value → our value).
    #[serde(default)]
    values: BTreeMap<String, BTreeMap<String, String>>,
}

const OPERATIONS: [&str; 4] = ["issue", "revoke", "status", "crl"];

pub struct HttpRa {
    cfg: Config,
    secret: Vec<u8>,
    client: http::Client,
    host: HostHandle,
}

/// Follow a dotted path into a JSON value.
pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| match v {
        Value::Object(m) => m.get(k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Set a dotted path in a JSON object, creating objects on the way.
fn set_path(root: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), String> {
    let mut parts = path.split('.').peekable();
    let mut at = root;
    while let Some(k) = parts.next() {
        if parts.peek().is_none() {
            at.insert(k.to_owned(), value);
            return Ok(());
        }
        at = at
            .entry(k.to_owned())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| format!("mapping path `{path}` crosses a non-object"))?;
    }
    Err("empty mapping path".into())
}

/// Canonical JSON: object keys sorted (by UTF-8 bytes), no whitespace.
pub fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// The string the RA signs: `app_id \n timestamp \n nonce \n body`.
pub fn string_to_sign(app_id: &str, timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut s = format!("{app_id}\n{timestamp}\n{nonce}\n").into_bytes();
    s.extend_from_slice(body);
    s
}

/// DER from a certificate/CRL the RA sent as PEM (one block) or base64.
fn to_der(v: &str) -> Result<Vec<u8>, String> {
    let t = v.trim();
    let b64: String = if t.starts_with("-----BEGIN") {
        t.lines().filter(|l| !l.starts_with("-----")).collect()
    } else {
        t.chars().filter(|c| !c.is_whitespace()).collect()
    };
    B64.decode(b64).map_err(|e| format!("RA sent undecodable DER/PEM: {e}"))
}

/// Certificates from a value that is a list of PEM/base64 strings, or one string of
/// concatenated PEM blocks.
fn to_der_list(v: &Value) -> Result<Vec<Vec<u8>>, String> {
    match v {
        Value::Array(items) => {
            items.iter().map(|i| to_der(i.as_str().ok_or("chain entries must be strings")?)).collect()
        }
        Value::String(s) if s.contains("-----BEGIN") => s
            .split("-----END")
            .filter(|block| block.contains("-----BEGIN"))
            .map(|block| to_der(&block[block.find("-----BEGIN").unwrap_or(0)..]))
            .collect(),
        Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![to_der(s)?]),
        Value::Null => Ok(Vec::new()),
        _ => Err("chain must be a string or a list".into()),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl HttpRa {
    fn operation(&self, op: &str) -> Option<&Operation> {
        self.cfg.operations.get(op)
    }

    /// The RA's request body for an operation, from our request and the mapping.
    fn ra_request(op: &Operation, ours: &Value) -> Result<Value, String> {
        let mut body = Map::new();
        if op.request.is_empty()
            && let Value::Object(m) = ours
        {
            body = m.clone();
        }
        for (theirs, our_path) in &op.request {
            if let Some(v) = get_path(ours, our_path) {
                set_path(&mut body, theirs, v.clone())?;
            }
        }
        for (theirs, v) in &op.constants {
            set_path(&mut body, theirs, v.clone())?;
        }
        Ok(Value::Object(body))
    }

    /// POST a signed request; the RA's JSON answer when its result code says success.
    fn exchange(&self, name: &str, op: &Operation, ours: &Value) -> Result<Value, String> {
        let body = canonical_json(&Self::ra_request(op, ours)?).into_bytes();
        // The RA checks this against its own clock; an adapter does not link mcsd's.
        #[allow(clippy::disallowed_methods)]
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string();
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
        let nonce = hex::encode(nonce);
        let mac = sm2_2p::hmac_sm3(&self.secret, &string_to_sign(&self.cfg.app_id, &timestamp, &nonce, &body));
        let s = &self.cfg.signing;
        let headers = [
            (s.app_id_header.as_str(), self.cfg.app_id.clone()),
            (s.timestamp_header.as_str(), timestamp),
            (s.nonce_header.as_str(), nonce),
            (s.signature_header.as_str(), hex::encode(mac)),
        ];
        let resp = self.client.post(&op.path, &headers, &body).map_err(|e| format!("RA {name}: {e}"))?;
        let answer: Option<Value> = serde_json::from_slice(&resp.body).ok();
        let message =
            answer.as_ref().and_then(|a| get_path(a, &self.cfg.result.message)).map(value_text).unwrap_or_default();
        let code = answer.as_ref().and_then(|a| get_path(a, &self.cfg.result.code)).map(value_text);
        if !(200..300).contains(&resp.status) {
            let code = code.map(|c| format!(" code {c}")).unwrap_or_default();
            return Err(format!("RA {name}: HTTP {}{code} {message}", resp.status).trim_end().to_owned());
        }
        let answer = answer.ok_or_else(|| format!("RA {name}: the answer is not JSON"))?;
        match code {
            Some(c) if c == self.cfg.result.ok => Ok(answer),
            Some(c) => Err(format!("RA {name}: refused with code {c}: {message}")),
            None => Err(format!("RA {name}: the answer has no `{}`", self.cfg.result.code)),
        }
    }

    /// Our answer: each mapped field, translated through `values`.
    fn our_answer(op: &Operation, answer: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        for (ours, theirs) in &op.response {
            if let Some(v) = get_path(answer, theirs) {
                let v = match op.values.get(ours) {
                    Some(table) => Value::String(table.get(&value_text(v)).cloned().unwrap_or_else(|| value_text(v))),
                    None => v.clone(),
                };
                out.insert(ours.clone(), v);
            }
        }
        out
    }

    fn run(&self, name: &str, request: &Value) -> Result<Value, CallError> {
        let op = self.operation(name).ok_or(CallError::Unsupported)?;
        let answer = self.exchange(name, op, request).map_err(failed)?;
        let mut ours = Self::our_answer(op, &answer);
        match name {
            "issue" => {
                let cert = ours
                    .get("certificate")
                    .and_then(Value::as_str)
                    .ok_or_else(|| failed("RA issue: no certificate in the answer"))?;
                let cert = B64.encode(to_der(cert).map_err(failed)?);
                let chain = to_der_list(ours.get("chain").unwrap_or(&Value::Null)).map_err(failed)?;
                self.host.log(3, &format!("http-ra: issued by {}", self.cfg.url));
                Ok(json!({ "certificate": cert, "chain": chain.iter().map(|c| B64.encode(c)).collect::<Vec<_>>() }))
            }
            "status" => {
                let status =
                    ours.get("status").map(value_text).ok_or_else(|| failed("RA status: no status in the answer"))?;
                if !["good", "revoked", "unknown"].contains(&status.as_str()) {
                    return Err(failed(format!("RA status `{status}` is not mapped to good/revoked/unknown")));
                }
                ours.insert("status".into(), Value::String(status));
                Ok(Value::Object(ours))
            }
            "crl" => {
                let crl =
                    ours.get("crl").and_then(Value::as_str).ok_or_else(|| failed("RA crl: no crl in the answer"))?;
                Ok(json!({ "crl": B64.encode(to_der(crl).map_err(failed)?) }))
            }
            _ => Ok(Value::Object(ours)),
        }
    }
}

impl Adapter for HttpRa {
    fn new(host: HostHandle, config: &[u8]) -> Result<Self, String> {
        let cfg: Config = serde_json::from_slice(config).map_err(|e| format!("http-ra config: {e}"))?;
        let url = Url::parse(&cfg.url)?;
        for op in cfg.operations.keys() {
            if !OPERATIONS.contains(&op.as_str()) {
                return Err(format!("http-ra config: unknown operation `{op}` (known: {})", OPERATIONS.join(", ")));
            }
        }
        if !cfg.operations.contains_key("issue") {
            return Err("http-ra config: operations.issue is required".into());
        }
        let secret = match (&cfg.app_secret, &cfg.app_secret_file) {
            (Some(s), None) => s.as_bytes().to_vec(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("app_secret_file {path}: {e}"))?;
                text.trim_end_matches(['\r', '\n']).as_bytes().to_vec()
            }
            _ => return Err("http-ra config: give exactly one of app_secret_file, app_secret".into()),
        };
        if secret.is_empty() {
            return Err("http-ra config: the app secret is empty".into());
        }
        let client_auth = match (&cfg.client_cert, &cfg.client_key) {
            (Some(c), Some(k)) => Some((c.as_str(), k.as_str())),
            (None, None) => None,
            _ => return Err("http-ra config: client_cert and client_key go together".into()),
        };
        let client = http::Client::new(url, &cfg.ca_file, client_auth, Duration::from_millis(cfg.timeout_ms.max(1)))?;
        Ok(HttpRa { cfg, secret, client, host })
    }

    fn call(&self, op: &str, request: &[u8]) -> Result<Vec<u8>, CallError> {
        let req: Value =
            if request.is_empty() { json!({}) } else { serde_json::from_slice(request).map_err(failed)? };
        let answer = match op {
            "describe" => json!({
                "name": "http-ra",
                "version": env!("CARGO_PKG_VERSION"),
                "algorithms": ["SM2-with-SM3"],
                "profiles": self.cfg.profiles,
                "ra": self.cfg.url,
                "operations": self.cfg.operations.keys().collect::<Vec<_>>(),
            }),
            "issue" | "revoke" | "status" | "crl" => self.run(op, &req)?,
            _ => return Err(CallError::Unsupported),
        };
        serde_json::to_vec(&answer).map_err(failed)
    }
}

export_adapter!(HttpRa);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": [1, {"z": "é\n", "a": null}], "a": true }"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":true,"b":[1,{"a":null,"z":"é\n"}]}"#);
    }

    #[test]
    fn mapping_builds_nested_requests_and_reads_nested_answers() {
        let op: Operation = serde_json::from_value(json!({
            "path": "/cert/apply",
            "request": { "p10": "csr", "user.name": "subject.name", "days": "validity_days" },
            "constants": { "bizType": "MOBILE" },
            "response": { "certificate": "data.signCert", "status": "data.state" },
            "values": { "status": { "1": "good" } }
        }))
        .unwrap();
        let ours =
            json!({ "csr": "AAAA", "subject": { "name": "Zhang San" }, "validity_days": 365, "profile": "person" });
        let body = HttpRa::ra_request(&op, &ours).unwrap();
        assert_eq!(body, json!({ "p10": "AAAA", "user": { "name": "Zhang San" }, "days": 365, "bizType": "MOBILE" }));
        let answer = json!({ "code": 0, "data": { "signCert": "QUJD", "state": 1 } });
        let mapped = HttpRa::our_answer(&op, &answer);
        assert_eq!(Value::Object(mapped), json!({ "certificate": "QUJD", "status": "good" }));
    }

    #[test]
    fn pem_and_base64_become_der() {
        let pem = "-----BEGIN CERTIFICATE-----\nQUJD\nREVG\n-----END CERTIFICATE-----\n";
        assert_eq!(to_der(pem).unwrap(), b"ABCDEF");
        assert_eq!(to_der("QUJD REVG").unwrap(), b"ABCDEF");
        let two = format!("{pem}{}", pem.replace("QUJD\nREVG", "WFla"));
        assert_eq!(to_der_list(&Value::String(two)).unwrap(), vec![b"ABCDEF".to_vec(), b"XYZ".to_vec()]);
        assert_eq!(to_der_list(&json!(["QUJD"])).unwrap(), vec![b"ABC".to_vec()]);
        assert!(to_der("not base64!").is_err());
    }
}
