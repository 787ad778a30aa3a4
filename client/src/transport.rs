//! Mutual-TLS HTTP/1.1 with keep-alive to the daemon, and the API's error shape.
//!
//! One [`Connection`] is one TLS connection reused for many requests (reconnected
//! transparently when the server closed it). Non-2xx answers become [`Error::Api`] with the
//! code, message and extra fields of API.md; anything below HTTP (TCP, TLS handshake, a
//! client certificate the server refused) is [`Error::Connect`].
//!
//! With `MCS_ANSWER_LOG=<dir>` in the environment, every JSON answer the process receives
//! is also appended to `<dir>/answers-<pid>.jsonl` as `{method, path, status, body}`: the
//! end-to-end suite checks each against the OpenAPI document afterwards (`cargo xtask test`).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio_rustls::TlsConnector;

/// Where the daemon is and who we are.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://host:port`
    pub base_url: String,
    pub ca_file: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// An error answer of the API (`{"error": {"code", "message", ...}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// Extra fields, e.g. `remaining_attempts`.
    pub extra: Map<String, Value>,
    pub retry_after: Option<u64>,
    /// The answer's `X-Request-Id`: quote it to the operator, whose logs and audit carry it.
    pub request_id: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(n) = self.extra.get("remaining_attempts") {
            write!(f, " (remaining attempts: {n})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request {id}]")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    /// TCP or TLS failure, including the server refusing our certificate.
    #[error("connection: {0}")]
    Connect(String),
    #[error("{0}")]
    Api(ApiError),
    /// The server answered something this client cannot understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A delegated share that does not open or does not form the key's joint public key:
    /// refused, never used (PROTOCOL.md "Re-sharing", step 4).
    #[error("share refused: {0}")]
    ShareRefused(String),
    /// The claim was accepted but waits for the owner's approval (202 `awaiting_approval`,
    /// API.md "Per-use approval"): claim again (scan again) once it is approved.
    #[error("awaiting the owner's approval {0}: scan again once it is approved")]
    AwaitingApproval(String),
    /// Claimed, but the gateway chooses the seal and its place first (202, a `pdf_seal` with
    /// `placement: "deferred"`): claim again (scan again) once it is placed.
    #[error("the seal is being placed on the PC: scan again once it is placed")]
    AwaitingPlacement,
}

impl Error {
    /// The API error code, if this is an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api(e) => Some(&e.code),
            _ => None,
        }
    }
}

impl From<mcs_api::qr::QrError> for Error {
    fn from(e: mcs_api::qr::QrError) -> Error {
        Error::Config(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A raw answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<u64>,
    /// The answer's `X-Request-Id` (the one this connection sent, or the daemon's).
    pub request_id: Option<String>,
    pub body: Value,
}

impl Response {
    /// `Ok(body)` for 2xx, else the API error.
    pub fn into_result(self) -> Result<Value> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let (code, message) = match mcs_api::ErrorBody::deserialize(&self.body) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("unknown".to_owned(), String::new()),
        };
        // Every field beyond code and message, typed or not yet known to this client.
        let extra = match self.body.get("error") {
            Some(Value::Object(e)) => {
                e.iter().filter(|(k, _)| *k != "code" && *k != "message").map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            _ => Map::new(),
        };
        Err(Error::Api(ApiError {
            status: self.status,
            code,
            message,
            extra,
            retry_after: self.retry_after,
            request_id: self.request_id,
        }))
    }
}

/// Read an answer (or part of one) as its `mcs-api` type.
pub fn parse<T: DeserializeOwned>(v: &Value) -> Result<T> {
    T::deserialize(v).map_err(|e| Error::Protocol(format!("unexpected answer: {e}")))
}

/// What [`Connection::exchange`] got back.
struct Exchanged {
    status: u16,
    retry_after: Option<u64>,
    request_id: Option<String>,
    body: Bytes,
}

/// A keep-alive connection to the daemon.
pub struct Connection {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Sent as `X-Request-Id` on every request while set ([`Connection::set_request_id`]).
    request_id: Option<String>,
}

/// Host and port of the daemon's `https://host:port` URL (through `http::Uri`; an IPv6
/// host without its brackets). The port is required: the daemon has no default one.
fn host_port(url: &str) -> Result<(String, u16)> {
    let bad = |why: &str| Error::Config(format!("server URL {why}: {url}"));
    let uri: hyper::Uri = url.parse().map_err(|_| bad("does not parse"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("must start with https://"));
    }
    let authority = uri.authority().ok_or_else(|| bad("needs host:port"))?;
    let port = authority.port_u16().ok_or_else(|| bad("needs host:port"))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || authority.as_str().contains('@') {
        return Err(bad("needs host:port"));
    }
    Ok((host.to_owned(), port))
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

impl Connection {
    /// Load the TLS material and connect (TCP + TLS handshake).
    pub async fn connect(ep: &Endpoint) -> Result<Connection> {
        let (host, port) = host_port(&ep.base_url)?;
        let server_name =
            ServerName::try_from(host.clone()).map_err(|e| Error::Config(format!("server name {host}: {e}")))?;

        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read(&ep.ca_file)?) {
            let cert = cert.map_err(|e| Error::Config(format!("{}: {e}", ep.ca_file.display())))?;
            roots.add(cert).map_err(|e| Error::Config(format!("{}: {e}", ep.ca_file.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match (&ep.cert_file, &ep.key_file) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_slice_iter(&read(cert)?)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Config(format!("{}: {e}", cert.display())))?;
                let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                    .map_err(|e| Error::Config(format!("{}: no private key ({e})", key.display())))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| Error::Config(e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(Error::Config("client certificate and key go together".into())),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut conn = Connection {
            host,
            port,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
            sender: None,
            request_id: None,
        };
        conn.reconnect().await?;
        Ok(conn)
    }

    async fn reconnect(&mut self) -> Result<()> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| Error::Connect(format!("{}:{}: {e}", self.host, self.port)))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| Error::Connect(format!("TLS handshake: {e}")))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Error::Connect(format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Send one request; `body` is sent as JSON. Returns whatever the server answered.
    pub async fn call(&mut self, method: Method, path: &str, body: Option<&Value>) -> Result<Response> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        self.call_bytes(method, path, bytes).await
    }

    /// Send raw bytes as the JSON body (tests use this for malformed input).
    pub async fn call_bytes(&mut self, method: Method, path: &str, body: Bytes) -> Result<Response> {
        let content_type = (!body.is_empty()).then_some("application/json");
        let answer = self.exchange(method.clone(), path, content_type, body).await?;
        let body = if answer.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer.body).map_err(|e| Error::Protocol(format!("answer is not JSON: {e}")))?
        };
        log_answer(&method, path, answer.status, &body);
        Ok(Response { status: answer.status, retry_after: answer.retry_after, request_id: answer.request_id, body })
    }

    /// Send `body` as `content_type` and take the answer's bytes as they are (RFC 3161's
    /// DER bodies): the status and the body.
    pub async fn call_raw(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes)> {
        let answer = self.exchange(method, path, Some(content_type), body).await?;
        Ok((answer.status, answer.body))
    }

    /// Send `id` as `X-Request-Id` on the requests that follow (a gateway passes on the id
    /// of the request it is serving, so its logs and the daemon's line up); `None` lets
    /// the daemon make one per request.
    pub fn set_request_id(&mut self, id: Option<String>) {
        self.request_id = id;
    }

    /// One request and its answer, the body as bytes.
    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Exchanged> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.reconnect().await?;
        }
        let sender = self.sender.as_mut().ok_or_else(|| Error::Connect("not connected".into()))?;
        sender.ready().await.map_err(|e| Error::Connect(e.to_string()))?;
        let mut req = Request::builder().method(method).uri(path).header(HOST, &self.host);
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(id) = &self.request_id {
            req = req.header("x-request-id", id);
        }
        let req = req.body(Full::new(body)).map_err(|e| Error::Config(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| {
            self.sender = None;
            Error::Connect(describe(&e))
        })?;
        let status = resp.status().as_u16();
        let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
        let retry_after = header(RETRY_AFTER.as_str()).and_then(|v| v.parse().ok());
        let request_id = header("x-request-id").map(str::to_owned);
        let body = resp.into_body().collect().await.map_err(|e| Error::Connect(e.to_string()))?.to_bytes();
        Ok(Exchanged { status, retry_after, request_id, body })
    }

    /// Send and require success; the body of a 2xx answer, or the API error.
    pub async fn json(&mut self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call(method, path, body).await?.into_result()
    }

    /// Send a typed request body (an `mcs-api` request) and require success.
    pub async fn send<B: Serialize>(&mut self, method: Method, path: &str, body: &B) -> Result<Value> {
        // Straight to bytes, never through a `Value`: request bodies carry PIN verifiers and codes.
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Config(format!("request body: {e}")))?;
        self.call_bytes(method, path, Bytes::from(bytes)).await?.into_result()
    }
}

/// The answer log of `MCS_ANSWER_LOG`, opened on first use; `None` when it is not set.
fn answer_log() -> Option<&'static std::sync::Mutex<std::fs::File>> {
    static LOG: std::sync::OnceLock<Option<std::sync::Mutex<std::fs::File>>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let dir = PathBuf::from(std::env::var_os("MCS_ANSWER_LOG")?);
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("answers-{}.jsonl", std::process::id()));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
        // A test run that asked for the log must not pass silently without it.
        let file = file.unwrap_or_else(|e| panic!("MCS_ANSWER_LOG: {}: {e}", path.display()));
        Some(std::sync::Mutex::new(file))
    })
    .as_ref()
}

fn log_answer(method: &Method, path: &str, status: u16, body: &Value) {
    let Some(log) = answer_log() else { return };
    let line = serde_json::json!({ "method": method.as_str(), "path": path, "status": status, "body": body });
    let mut text = line.to_string();
    text.push('\n');
    let mut file = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    std::io::Write::write_all(&mut *file, text.as_bytes()).unwrap_or_else(|e| panic!("MCS_ANSWER_LOG: {e}"));
}

/// The full chain of an error (hyper hides the TLS alert in its source).
fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn the_server_url_is_https_with_a_host_and_a_port() {
        assert_eq!(host_port("https://127.0.0.1:8443").unwrap(), ("127.0.0.1".to_owned(), 8443));
        assert_eq!(host_port("https://mcsd.example.cn:443/").unwrap(), ("mcsd.example.cn".to_owned(), 443));
        assert_eq!(host_port("https://[::1]:9443").unwrap(), ("::1".to_owned(), 9443));
        for bad in ["http://127.0.0.1:8443", "https://127.0.0.1", "https://:8443", "https://u@h:1", "127.0.0.1:8443"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }
}
