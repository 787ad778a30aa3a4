//! Callback delivery: POST a finished task's outcome to its `callback_url` over mutual TLS.
//!
//! The outbox record is written in the same transaction as the task's final state, so a
//! crash cannot lose a callback. The worker retries with exponential backoff (1 s doubling
//! to 5 min) up to `tasks.callback_max_attempts`, and picks up where it left off after a
//! restart. A 2xx answer is delivery; anything else is a retry.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config::{ApiConfig, TasksConfig};
use crate::keys::now;
use crate::tasks::TaskService;
use crate::tls::{TlsError, load_certs, load_key};

const MAX_BACKOFF: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon as a TLS client: the API certificate as identity, the configured CAs as roots.
pub fn client_config(api: &ApiConfig, tasks: &TasksConfig) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for file in &tasks.callback_ca_files {
        for cert in load_certs(file)? {
            roots.add(cert).map_err(|e| TlsError::Setup(format!("{}: {e}", file.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(&api.cert_file)?, load_key(&api.key_file)?)
        .map_err(|e| TlsError::Setup(format!("callback client identity: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Split `https://host:port/path` (port defaults to 443).
pub fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("https://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || path.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_owned(), port, path.to_owned()))
}

async fn post(tls: &Arc<ClientConfig>, url: &str, body: Bytes) -> Result<u16, String> {
    let (host, port, path) = parse_url(url).ok_or("bad callback URL")?;
    let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let stream = TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::post(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(9)).min(MAX_BACKOFF)
}

/// Deliver due callbacks forever.
pub async fn run(tasks: Arc<TaskService>, tls: Arc<ClientConfig>) {
    loop {
        let mut next_due: Option<i64> = None;
        let records = tasks.store().callbacks().unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the callback outbox");
            Vec::new()
        });
        for mut cb in records {
            let now_ms = now() * 1000;
            if cb.next_at_ms > now_ms {
                next_due = Some(next_due.map_or(cb.next_at_ms, |n| n.min(cb.next_at_ms)));
                continue;
            }
            let body = match tasks.callback_body(&cb.task_id) {
                Ok(Some(b)) => b,
                _ => {
                    let _ = tasks.store().delete_callback(&cb.task_id);
                    continue;
                }
            };
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, post(&tls, &cb.url, Bytes::from(body.to_string()))).await;
            let delivered = matches!(outcome, Ok(Ok(status)) if (200..300).contains(&status));
            if delivered {
                tracing::info!(task_id = %cb.task_id, attempts = cb.attempts + 1, "callback delivered");
                let _ = tasks.store().delete_callback(&cb.task_id);
                continue;
            }
            cb.attempts += 1;
            crate::metrics::METRICS.callback_retries.inc();
            let why = match outcome {
                Ok(Ok(status)) => format!("HTTP {status}"),
                Ok(Err(e)) => e,
                Err(_) => "timed out".into(),
            };
            if cb.attempts >= tasks.config().callback_max_attempts {
                tracing::error!(task_id = %cb.task_id, url = %cb.url, attempts = cb.attempts, error = %why, "callback abandoned");
                let _ = tasks.store().delete_callback(&cb.task_id);
                continue;
            }
            cb.next_at_ms = now() * 1000 + backoff(cb.attempts - 1).as_millis() as i64;
            tracing::warn!(task_id = %cb.task_id, attempts = cb.attempts, error = %why, "callback failed; will retry");
            next_due = Some(next_due.map_or(cb.next_at_ms, |n| n.min(cb.next_at_ms)));
            let _ = tasks.store().put_callback(&cb);
        }
        let sleep = next_due
            .map(|at| Duration::from_millis((at - now() * 1000).clamp(50, 1000) as u64))
            .unwrap_or(Duration::from_secs(1));
        let _ = tokio::time::timeout(sleep, tasks.outbox.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_parse_strictly() {
        assert_eq!(parse_url("https://gw.example.cn:9443/cb?x=1"), Some(("gw.example.cn".into(), 9443, "/cb?x=1".into())));
        assert_eq!(parse_url("https://127.0.0.1/"), Some(("127.0.0.1".into(), 443, "/".into())));
        assert_eq!(parse_url("https://gw"), Some(("gw".into(), 443, "/".into())));
        assert_eq!(parse_url("http://gw/cb"), None);
        assert_eq!(parse_url("https://:80/"), None);
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
