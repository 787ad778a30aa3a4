//! The typed face of the CA adapters: `issue`, `revoke`, `status` and `crl` with request and
//! answer structs, over the JSON of the plugin ABI (`plugins/abi/include/mcs_plugin.h`).
//!
//! The domain calls these methods and never builds adapter JSON itself. Requests go to the
//! adapter as the same JSON objects as before the façade existed (serialized to a `Value`
//! first, so keys keep their sorted order); answers are checked here, once, for the fields
//! the daemon reads. What an adapter adds beyond them (`signer` in a test adapter's `crl`,
//! an RA's extra status fields) is kept in `extra`, so an answer shown to a caller shows it.

use std::future::Future;
use std::pin::Pin;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{PluginError, PluginHost};
use crate::model::key::Subject;

/// A call to an adapter in flight.
pub type CaCall<'a, T> = Pin<Box<dyn Future<Output = Result<T, PluginError>> + Send + 'a>>;

/// A CA adapter, named per call (an enrollment's `ca`). Implementors provide the JSON
/// transport ([`PluginHost`] through the ABI, tests an in-process adapter); the typed
/// operations are defined on top of it, once.
pub trait CaAdapter: Send + Sync {
    /// Operation `op` of adapter `adapter`: the request object as the adapter receives it,
    /// and its answer as JSON.
    fn call_json<'a>(&'a self, adapter: &'a str, op: &'a str, request: Value) -> CaCall<'a, Value>;

    /// A certificate for a certification request.
    fn issue<'a>(&'a self, adapter: &'a str, request: &IssueRequest) -> CaCall<'a, IssueAnswer> {
        typed(self, adapter, "issue", request)
    }

    /// Revoke the certificate with this serial; the adapter answers `{}`.
    fn revoke<'a>(&'a self, adapter: &'a str, request: &RevokeRequest) -> CaCall<'a, ()> {
        let call: CaCall<'a, IgnoredAny> = typed(self, adapter, "revoke", request);
        Box::pin(async move { call.await.map(|_| ()) })
    }

    /// What the CA says of the certificate with this serial.
    fn status<'a>(&'a self, adapter: &'a str, request: &StatusRequest) -> CaCall<'a, StatusAnswer> {
        typed(self, adapter, "status", request)
    }

    /// Put the certificate with this serial on hold (`certificateHold`), an optional
    /// operation: [`PluginError::Unsupported`] from an adapter without it. Answers `{}`.
    fn hold<'a>(&'a self, adapter: &'a str, request: &HoldRequest) -> CaCall<'a, ()> {
        let call: CaCall<'a, IgnoredAny> = typed(self, adapter, "hold", request);
        Box::pin(async move { call.await.map(|_| ()) })
    }

    /// Take the certificate with this serial off hold (optional, as `hold`).
    fn release<'a>(&'a self, adapter: &'a str, request: &HoldRequest) -> CaCall<'a, ()> {
        let call: CaCall<'a, IgnoredAny> = typed(self, adapter, "release", request);
        Box::pin(async move { call.await.map(|_| ()) })
    }

    /// The CA's current CRL (`plugin_error` from an adapter that has none).
    fn crl<'a>(&'a self, adapter: &'a str) -> CaCall<'a, CrlAnswer> {
        typed(self, adapter, "crl", &CrlRequest {})
    }
}

/// Serialize `request`, call `op`, read the answer as `T`.
fn typed<'a, C, Req, T>(ca: &'a C, adapter: &'a str, op: &'static str, request: &Req) -> CaCall<'a, T>
where
    C: CaAdapter + ?Sized,
    Req: Serialize,
    T: DeserializeOwned + Send + 'a,
{
    let request = serde_json::to_value(request)
        .map_err(|e| PluginError::Failed { adapter: adapter.to_owned(), reason: format!("`{op}` request: {e}") });
    Box::pin(async move { answer(adapter, op, ca.call_json(adapter, op, request?).await?) })
}

/// Read an adapter's answer to `op` as `T`; an answer without what the ABI promises is the
/// adapter's failure. Public (hidden) for `fuzz/`.
#[doc(hidden)]
pub fn answer<T: DeserializeOwned>(adapter: &str, op: &str, answer: Value) -> Result<T, PluginError> {
    serde_json::from_value(answer)
        .map_err(|e| PluginError::Failed { adapter: adapter.to_owned(), reason: format!("`{op}` answer: {e}") })
}

impl CaAdapter for PluginHost {
    fn call_json<'a>(&'a self, adapter: &'a str, op: &'a str, request: Value) -> CaCall<'a, Value> {
        Box::pin(async move { self.call(adapter, op, &request).await })
    }
}

/// `issue`: a CSR signed by the key to certify.
#[derive(Debug, Clone, Serialize)]
pub struct IssueRequest {
    /// DER CertificationRequest (base64 on the wire).
    #[serde(serialize_with = "base64")]
    pub csr: Vec<u8>,
    /// The enrollment's profile, or the one its subject kind implies.
    pub profile: String,
    pub subject: Subject,
    pub validity_days: u32,
}

/// `issue`'s answer.
#[derive(Debug, Clone, Deserialize)]
pub struct IssueAnswer {
    /// Base64 DER, as the daemon stores and shows it.
    pub certificate: String,
    /// Base64 DER certificates up to the root; entries that are not strings are skipped.
    #[serde(default, deserialize_with = "strings")]
    pub chain: Vec<String>,
    /// Hex, when the adapter says it (the daemon reads it from the certificate).
    #[serde(default)]
    pub serial: Option<String>,
}

/// `revoke`: the certificate's serial (hex) and the reason recorded with it.
#[derive(Debug, Clone, Serialize)]
pub struct RevokeRequest {
    pub serial: String,
    pub reason: String,
}

/// `hold` / `release`: a certificate's serial (hex).
#[derive(Debug, Clone, Serialize)]
pub struct HoldRequest {
    pub serial: String,
}

/// `status`: a certificate's serial (hex).
#[derive(Debug, Clone, Serialize)]
pub struct StatusRequest {
    pub serial: String,
}

/// `status`'s answer: `good`, `revoked` or `unknown` (as the adapter says it), and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusAnswer {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whatever else the adapter answered.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Serialize)]
struct CrlRequest {}

/// `crl`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrlAnswer {
    /// Base64 DER CRL.
    pub crl: String,
    /// Whatever else the adapter answered.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// As the daemon always read `chain`: the strings of an array, nothing otherwise.
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => {
            items.into_iter().filter_map(|v| if let Value::String(s) = v { Some(s) } else { None }).collect()
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::key::SubjectKind;
    use serde_json::json;
    use std::sync::Mutex;

    /// Records what it was sent; answers from a table by operation.
    struct Recorder {
        sent: Mutex<Vec<(String, String, Vec<u8>)>>,
        answers: Map<String, Value>,
    }

    impl CaAdapter for Recorder {
        fn call_json<'a>(&'a self, adapter: &'a str, op: &'a str, request: Value) -> CaCall<'a, Value> {
            // The bytes the host would hand the adapter.
            let bytes = serde_json::to_vec(&request).unwrap();
            self.sent.lock().unwrap().push((adapter.to_owned(), op.to_owned(), bytes));
            let answer = self.answers.get(op).cloned().unwrap_or(json!({}));
            Box::pin(async move { Ok(answer) })
        }
    }

    fn recorder(answers: Value) -> Recorder {
        let Value::Object(answers) = answers else { panic!() };
        Recorder { sent: Mutex::new(Vec::new()), answers }
    }

    #[tokio::test]
    async fn requests_are_the_json_the_adapters_read() {
        let ca = recorder(json!({
            "issue": { "certificate": "Q0VSVA==", "chain": ["Uk9PVA==", 7], "serial": "0a" },
            "status": { "status": "revoked", "reason": "keyCompromise", "ra_state": "4" },
            "crl": { "crl": "Q1JM", "signer": "U1BLSQ==" },
        }));
        let subject = Subject {
            kind: SubjectKind::Operator,
            name: "mcsd Seal Maker".into(),
            org_name: Some("mcsd".into()),
            credit_code: None,
            id_number: None,
        };
        let issue = IssueRequest { csr: b"CSR".to_vec(), profile: "operator".into(), subject, validity_days: 3650 };
        let issued = ca.issue("local", &issue).await.unwrap();
        assert_eq!((issued.certificate.as_str(), issued.chain.as_slice()), ("Q0VSVA==", &["Uk9PVA==".to_owned()][..]));
        ca.revoke("local", &RevokeRequest { serial: "0a".into(), reason: "superseded".into() }).await.unwrap();
        let status = ca.status("local", &StatusRequest { serial: "0a".into() }).await.unwrap();
        assert_eq!((status.status.as_str(), status.reason.as_deref()), ("revoked", Some("keyCompromise")));
        assert_eq!(serde_json::to_value(&status).unwrap()["ra_state"], "4", "extra fields are kept");
        let crl = ca.crl("local").await.unwrap();
        assert_eq!(serde_json::to_value(&crl).unwrap(), json!({ "crl": "Q1JM", "signer": "U1BLSQ==" }));

        // Byte for byte what the `json!` call sites sent before the façade.
        let sent: Vec<(String, String)> = ca
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, op, b)| (op.clone(), String::from_utf8(b.clone()).unwrap()))
            .collect();
        let before = [
            (
                "issue",
                json!({
                    "csr": "Q1NS",
                    "profile": "operator",
                    "subject": { "kind": "operator", "name": "mcsd Seal Maker", "org_name": "mcsd" },
                    "validity_days": 3650,
                }),
            ),
            ("revoke", json!({ "serial": "0a", "reason": "superseded" })),
            ("status", json!({ "serial": "0a" })),
            ("crl", json!({})),
        ];
        for ((op, bytes), (want_op, want)) in sent.iter().zip(before) {
            assert_eq!((op.as_str(), bytes.as_str()), (want_op, want.to_string().as_str()));
        }
    }

    #[tokio::test]
    async fn an_answer_without_what_the_abi_promises_is_the_adapters_failure() {
        let ca = recorder(json!({ "issue": { "chain": [] }, "crl": { "signer": "x" }, "status": {} }));
        let issue = IssueRequest {
            csr: vec![],
            profile: "person".into(),
            subject: Subject {
                kind: SubjectKind::Person,
                name: "n".into(),
                org_name: None,
                credit_code: None,
                id_number: None,
            },
            validity_days: 1,
        };
        assert!(matches!(ca.issue("x", &issue).await, Err(PluginError::Failed { .. })));
        assert!(matches!(ca.crl("x").await, Err(PluginError::Failed { .. })));
        assert!(matches!(ca.status("x", &StatusRequest { serial: "1".into() }).await, Err(PluginError::Failed { .. })));
    }
}
