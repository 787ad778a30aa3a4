//! The RA client: one HTTPS/1.1 request per connection through hyper's client (TLS by
//! rustls against the configured roots, optional client certificate), the whole exchange —
//! resolve, connect, handshake, request, answer — bounded by the configured timeout.
//!
//! Adapter calls come on the daemon's blocking threads; each call drives its request on a
//! current-thread tokio runtime of its own (RA calls are rare: enrollments and renewals,
//! and a runtime without worker threads costs microseconds), so calls never share state.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// `https://host[:port][/base]`, split once at configuration time.
#[derive(Debug, Clone)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub base: String,
}

impl Url {
    /// An `https` URL with a host, without user info, query or fragment; port 443 unless
    /// given; an IPv6 host without its brackets; the base path without a trailing `/`.
    pub fn parse(s: &str) -> Result<Url, String> {
        let uri: Uri = s.parse().map_err(|e| format!("url `{s}`: {e}"))?;
        if uri.scheme_str() != Some("https") || !s.starts_with("https://") {
            return Err(format!("url `{s}` must start with https://"));
        }
        let authority = uri.authority().ok_or_else(|| format!("url `{s}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("url `{s}` must not carry user info"));
        }
        if uri.query().is_some() || s.contains('#') {
            return Err(format!("url `{s}` must not have a query or a fragment"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("url `{s}` has no host"));
        }
        // `http` takes a port it cannot read (`:99999`, `:`) as none: read it here.
        let text = authority.as_str();
        let after_host = text.rsplit_once(']').map_or(text, |(_, tail)| tail);
        let port = match after_host.rsplit_once(':') {
            Some((_, p)) => p.parse::<u16>().map_err(|_| format!("url `{s}`: bad port `{p}`"))?,
            None => 443,
        };
        if port == 0 {
            return Err(format!("url `{s}`: bad port `0`"));
        }
        Ok(Url { host: host.to_owned(), port, base: uri.path().trim_end_matches('/').to_owned() })
    }
}

pub struct Client {
    url: Url,
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The largest answer read from the RA.
const MAX_RESPONSE: usize = 16 << 20;

fn read_pem_file(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

impl Client {
    pub fn new(
        url: Url,
        ca_file: &str,
        client_auth: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Result<Client, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read_pem_file(ca_file)?) {
            roots.add(cert.map_err(|e| format!("{ca_file}: {e}"))?).map_err(|e| format!("{ca_file}: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("{ca_file}: no certificates"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match client_auth {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let certs = CertificateDer::pem_slice_iter(&read_pem_file(cert_file)?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{cert_file}: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(&read_pem_file(key_file)?)
                    .map_err(|e| format!("{key_file}: no private key ({e})"))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| format!("client certificate: {e}"))?
            }
        };
        ServerName::try_from(url.host.clone()).map_err(|e| format!("host `{}`: {e}", url.host))?;
        Ok(Client { url, tls: tokio_rustls::TlsConnector::from(Arc::new(config)), timeout })
    }

    /// POST `body` to `base + path`; the whole exchange is bounded by the timeout.
    pub fn post(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> Result<Response, String> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
        runtime.block_on(async {
            tokio::time::timeout(self.timeout, self.exchange(path, headers, body))
                .await
                .unwrap_or_else(|_| Err("the RA did not answer in time".into()))
        })
    }

    async fn exchange(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> Result<Response, String> {
        let (host, port) = (self.url.host.as_str(), self.url.port);
        let mut last = format!("{host} has no address");
        let mut tcp = None;
        for addr in tokio::net::lookup_host((host, port)).await.map_err(|e| format!("resolving {host}: {e}"))? {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("connecting to {addr}: {e}"),
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS with the RA: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP with the RA: {e}"))?;
        let driver = tokio::spawn(conn);

        let host_header = if port == 443 { host.to_owned() } else { format!("{host}:{port}") };
        let host_header = if host.contains(':') { format!("[{host}]:{port}") } else { host_header };
        let mut request = hyper::Request::post(format!("{}{}", self.url.base, path))
            .header("host", host_header)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        for (k, v) in headers {
            request = request.header(*k, v.as_str());
        }
        let request =
            request.body(Full::new(Bytes::copy_from_slice(body))).map_err(|e| format!("request to the RA: {e}"))?;
        let answer = sender.send_request(request).await.map_err(|e| format!("sending to the RA: {e}"))?;
        let status = answer.status().as_u16();
        let body = Limited::new(answer.into_body(), MAX_RESPONSE).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                "the RA's answer is too large".to_owned()
            } else {
                format!("reading from the RA: {e}")
            }
        })?;
        driver.abort();
        Ok(Response { status, body: body.to_bytes().to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn urls_split_into_host_port_and_base() {
        let u = Url::parse("https://ra.example.cn:8443/api/v1/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.base.as_str()), ("ra.example.cn", 8443, "/api/v1"));
        let u = Url::parse("https://127.0.0.1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.base.as_str()), ("127.0.0.1", 443, ""));
        let u = Url::parse("https://[::1]:9443/ra").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.base.as_str()), ("::1", 9443, "/ra"));
        for bad in [
            "http://ra.example.cn",
            "https://:80/x",
            "https://user:pw@ra.example.cn/",
            "https://ra.example.cn/x?y=1",
            "https://ra.example.cn:99999/",
            "https://ra.example.cn:0/",
            "HTTPS://ra.example.cn/",
            "ra.example.cn/x",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    /// A one-connection HTTPS server on loopback answering every request with `answer`
    /// (raw HTTP/1.1 bytes; `None`: read the request and never answer). Returns the client.
    fn serve(answer: Option<Vec<u8>>, timeout: Duration) -> (Client, std::thread::JoinHandle<()>) {
        let dir = std::env::temp_dir().join(format!("http-ra-test-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.cert.pem()).unwrap();
        let certs = vec![cert.cert.der().clone()];
        let key = PrivateKeyDer::from_pem_slice(cert.signing_key.serialize_pem().as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(config)).accept(tcp).await.unwrap();
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tls.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                match answer {
                    Some(bytes) => {
                        let _ = tls.write_all(&bytes).await;
                        let _ = tls.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            });
        });
        let url = Url::parse(&format!("https://localhost:{port}/ra/")).unwrap();
        let client = Client::new(url, dir.join("ca.pem").to_str().unwrap(), None, timeout).unwrap();
        // The roots are read by `Client::new`: the file is not needed after it.
        std::fs::remove_dir_all(&dir).unwrap();
        (client, server)
    }

    fn rand_suffix() -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        u64::from_le_bytes(b)
    }

    #[test]
    fn answers_with_a_length_or_in_chunks_and_refusals_in_time() {
        let (client, server) =
            serve(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec()), Duration::from_secs(5));
        let r = client.post("/issue", &[("x-sig", "abc".into())], b"{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        server.join().unwrap();

        let chunked = b"HTTP/1.1 401 No\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (client, server) = serve(Some(chunked.to_vec()), Duration::from_secs(5));
        let r = client.post("/issue", &[], b"{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (401, &b"abcde"[..]));
        server.join().unwrap();

        let mut big = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_RESPONSE + 1).into_bytes();
        big.resize(big.len() + MAX_RESPONSE + 1, b'x');
        let (client, server) = serve(Some(big), Duration::from_secs(10));
        assert_eq!(client.post("/issue", &[], b"{}").err().as_deref(), Some("the RA's answer is too large"));
        server.join().unwrap();

        let (client, server) = serve(None, Duration::from_millis(300));
        assert_eq!(client.post("/issue", &[], b"{}").err().as_deref(), Some("the RA did not answer in time"));
        server.join().unwrap();
    }
}
