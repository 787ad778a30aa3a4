//! A small blocking HTTPS/1.1 client: one request per connection, server verified against
//! configured roots, optional client certificate, socket timeouts on every step.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// `https://host[:port][/base]`, split once at configuration time.
#[derive(Debug, Clone)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub base: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = s.strip_prefix("https://").ok_or_else(|| format!("url `{s}` must start with https://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let bad_port = |p: &str| format!("url `{s}`: bad port `{p}`");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(|| format!("url `{s}`: unclosed `[`"))?;
            match tail.strip_prefix(':') {
                Some(p) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
                None if tail.is_empty() => (h, 443),
                None => return Err(bad_port(tail)),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
                None => (authority, 443),
            }
        };
        if host.is_empty() {
            return Err(format!("url `{s}` has no host"));
        }
        Ok(Url { host: host.to_owned(), port, base: path.to_owned() })
    }
}

pub struct Client {
    url: Url,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

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
        for cert in rustls_pemfile::certs(&mut read_pem_file(ca_file)?.as_slice()) {
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
                let certs = rustls_pemfile::certs(&mut read_pem_file(cert_file)?.as_slice())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{cert_file}: {e}"))?;
                let key = rustls_pemfile::private_key(&mut read_pem_file(key_file)?.as_slice())
                    .map_err(|e| format!("{key_file}: {e}"))?
                    .ok_or_else(|| format!("{key_file}: no private key"))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| format!("client certificate: {e}"))?
            }
        };
        ServerName::try_from(url.host.clone()).map_err(|e| format!("host `{}`: {e}", url.host))?;
        Ok(Client { url, tls: Arc::new(config), timeout })
    }

    /// POST `body` to `base + path`; the whole exchange is bounded by the socket timeouts.
    pub fn post(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> Result<Response, String> {
        let addrs = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", self.url.host))?;
        let mut last = format!("{} has no address", self.url.host);
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("connecting to {addr}: {e}"),
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let name = ServerName::try_from(self.url.host.clone()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);

        let mut head = format!(
            "POST {}{} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.url.base,
            path,
            self.url.host,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        tls.write_all(&request).map_err(|e| format!("sending to the RA: {e}"))?;
        tls.flush().map_err(|e| format!("sending to the RA: {e}"))?;
        read_response(&mut tls)
    }
}

const MAX_RESPONSE: usize = 16 << 20;

fn read_response(stream: &mut impl Read) -> Result<Response, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut eof = false;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|_| "RA response head is not UTF-8".to_owned())?;
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status: u16 = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("RA sent a bad status line `{status_line}`"))?;
            let mut length = None;
            let mut chunked = false;
            for line in lines {
                let Some((k, v)) = line.split_once(':') else { continue };
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => {
                        length = Some(v.trim().parse::<usize>().map_err(|_| "RA sent a bad content-length")?)
                    }
                    "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                    _ => {}
                }
            }
            let start = end + 4;
            let complete = |buf: &[u8], eof: bool| -> Result<Option<Vec<u8>>, String> {
                let rest = &buf[start..];
                if chunked {
                    return dechunk(rest);
                }
                match length {
                    Some(n) if rest.len() >= n => Ok(Some(rest[..n].to_vec())),
                    Some(_) if eof => Err("the RA closed the connection mid-body".into()),
                    Some(_) => Ok(None),
                    None if eof => Ok(Some(rest.to_vec())),
                    None => Ok(None),
                }
            };
            if let Some(body) = complete(&buf, eof)? {
                return Ok(Response { status, body });
            }
            if eof {
                return Err("the RA closed the connection mid-body".into());
            }
        } else if eof {
            return Err("the RA closed the connection without an answer".into());
        }
        if buf.len() > MAX_RESPONSE {
            return Err("the RA's answer is too large".into());
        }
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A peer that closes without close_notify: treat as end of stream.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => eof = true,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err("the RA did not answer in time".into());
            }
            Err(e) => return Err(format!("reading from the RA: {e}")),
        }
    }
}

/// Decode a chunked body; `Ok(None)` while it is incomplete.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size `{size_text}`"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_base() {
        let u = Url::parse("https://ra.example.cn:8443/api/v1/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.base.as_str()), ("ra.example.cn", 8443, "/api/v1"));
        let u = Url::parse("https://127.0.0.1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.base.as_str()), ("127.0.0.1", 443, ""));
        assert!(Url::parse("http://ra.example.cn").is_err());
        assert!(Url::parse("https://:80/x").is_err());
    }

    #[test]
    fn responses_with_length_chunks_or_close() {
        let r = read_response(&mut &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = read_response(
            &mut &b"HTTP/1.1 401 No\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"[..],
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (401, &b"abcde"[..]));
        let r = read_response(&mut &b"HTTP/1.0 200 OK\r\n\r\nxyz"[..]).unwrap();
        assert_eq!(r.body, b"xyz");
        assert!(read_response(&mut &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}"[..]).is_err());
        assert!(read_response(&mut &b"garbage"[..]).is_err());
    }
}
