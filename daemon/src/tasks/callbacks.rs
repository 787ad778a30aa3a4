//! Callback delivery: POST a finished task's outcome to its `callback_url` over mutual TLS,
//! and an inbox item's content-free wake-up (`{device_id, type, id}`) to `[push] url`.
//!
//! The outbox record is written in the same transaction as the task's final state, so a
//! crash cannot lose a callback. A dispatcher scans the outbox and starts one delivery per
//! due record, concurrently, within two bounds: `tasks.callback_concurrency_per_platform`
//! (or the platform's own `callback_concurrency`) deliveries in flight per platform, and
//! `tasks.callback_concurrency` in all. So a platform whose receivers hang holds at most
//! its own slots, each for at most `tasks.callback_timeout_ms`, and never delays another
//! platform's callbacks. Failures are retried with exponential backoff (1 s doubling to
//! 5 min) up to `tasks.callback_max_attempts`; the worker picks up where it left off after
//! a restart. A 2xx answer is delivery; anything else is a retry.
//!
//! Targets are checked twice (see [`target`]): at task creation (URL syntax, the platform's
//! allow-list, an IP literal's range) and at every delivery, where the host is resolved and
//! the callback refused — logged, retried, eventually abandoned — if any resolved address
//! is in a refused range; the connection goes only to the addresses that were checked.
//! Resolution and the TCP connect share `tasks.callback_connect_timeout_ms`, which is
//! shorter than the whole attempt's `tasks.callback_timeout_ms`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::config::{ApiConfig, TasksConfig};
use crate::model::callback_target::{CallbackUrl, Host, TargetPolicy};
use crate::model::task::{CallbackRecord, TaskResult, TaskStatus};
use crate::pem::{TlsError, load_certs, load_key};
use crate::store::CallbackLease;
use crate::tasks::TaskService;

const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The body POSTed to a callback (API.md): the result endpoint's answer plus `task_id`,
/// except that a decrypt plaintext is never sent — `result_available` says whether the
/// gateway can still fetch it (once) from the daemon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallbackBody {
    pub task_id: String,
    pub status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_available: Option<bool>,
}

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

fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(9)).min(MAX_BACKOFF)
}

/// Why an attempt did not deliver.
#[derive(Debug)]
enum Failure {
    /// Network, TLS, HTTP status, timeout: retried.
    Failed(String),
    /// The target policy refused an address the name resolved to: retried (DNS may
    /// change back), counted and logged as a refusal.
    Refused(String),
}

/// Deliveries in flight: which tasks, and how many per platform and in all.
#[derive(Debug, Default)]
struct InFlight {
    tasks: HashSet<String>,
    per_platform: HashMap<String, usize>,
    total: usize,
}

impl InFlight {
    /// Take a slot for `task_id` unless it is already being delivered or a bound is reached.
    fn try_start(&mut self, task_id: &str, platform: &str, platform_limit: usize, global_limit: usize) -> bool {
        let on_platform = self.per_platform.get(platform).copied().unwrap_or(0);
        if self.tasks.contains(task_id) || on_platform >= platform_limit || self.total >= global_limit {
            return false;
        }
        self.tasks.insert(task_id.to_owned());
        *self.per_platform.entry(platform.to_owned()).or_default() += 1;
        self.total += 1;
        crate::metrics::METRICS.callback_slots_in_use.set(self.total as i64);
        true
    }

    fn finish(&mut self, task_id: &str, platform: &str) {
        if !self.tasks.remove(task_id) {
            return;
        }
        if let Some(n) = self.per_platform.get_mut(platform) {
            *n -= 1;
            if *n == 0 {
                self.per_platform.remove(platform);
            }
        }
        self.total -= 1;
        crate::metrics::METRICS.callback_slots_in_use.set(self.total as i64);
    }
}

/// A delivery's slot, given back however the delivery ends; wakes the dispatcher, which
/// may have due records waiting for this platform's slot.
struct Slot {
    flight: Arc<Mutex<InFlight>>,
    tasks: Arc<TaskService>,
    task_id: String,
    platform: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.flight.lock().unwrap_or_else(|p| p.into_inner()).finish(&self.task_id, &self.platform);
        self.tasks.outbox.notify_one();
    }
}

/// Deliver due callbacks forever.
pub async fn run(tasks: Arc<TaskService>, tls: Arc<ClientConfig>) {
    let flight = Arc::new(Mutex::new(InFlight::default()));
    loop {
        let mut next_due: Option<i64> = None;
        let records = tasks.store().callbacks().unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the callback outbox");
            Vec::new()
        });
        let now = tasks.clock().now_ms();
        for cb in records {
            if cb.next_at_ms > now {
                next_due = Some(next_due.map_or(cb.next_at_ms, |n| n.min(cb.next_at_ms)));
                continue;
            }
            // Records written before they named their platform: ask the task.
            let platform = match cb.platform.is_empty() {
                false => cb.platform.clone(),
                true => tasks.store().task(&cb.task_id).ok().flatten().map(|t| t.platform).unwrap_or_default(),
            };
            let cfg = tasks.config();
            let started = flight.lock().unwrap_or_else(|p| p.into_inner()).try_start(
                &cb.task_id,
                &platform,
                cfg.platform(&platform).callback_concurrency,
                cfg.callback_concurrency,
            );
            if started {
                let slot = Slot { flight: flight.clone(), tasks: tasks.clone(), task_id: cb.task_id.clone(), platform };
                tokio::spawn(deliver(slot, tls.clone()));
            }
        }
        let sleep = next_due
            .map(|at| Duration::from_millis((at - tasks.clock().now_ms()).clamp(50, 1000) as u64))
            .unwrap_or(Duration::from_secs(1));
        let pushed = tasks.keys.inbox().clone();
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = tasks.outbox.notified() => {}
            _ = pushed.pushed.notified() => {}
        }
    }
}

/// One attempt at one callback, and its bookkeeping in the outbox.
async fn deliver(slot: Slot, tls: Arc<ClientConfig>) {
    let tasks = slot.tasks.clone();
    let store = tasks.store();
    let (task_id, platform) = (slot.task_id.as_str(), slot.platform.as_str());
    let cfg = tasks.config();
    // Lease the record: since the scan, an earlier delivery may have finished it, and on a
    // store several nodes share another node may be delivering it now. The lease outlasts
    // one attempt; if this process dies holding it, it runs out and another sender goes on.
    let lease_ms = 2 * (cfg.callback_connect_timeout + cfg.callback_timeout).as_millis() as i64 + 5_000;
    let lease = match store.lease_callback(task_id, tasks.clock().now_ms(), lease_ms) {
        Ok(Some(lease)) => lease,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(%task_id, error = %e, "leasing a callback record");
            return;
        }
    };
    let mut cb: CallbackRecord = lease.record.clone();
    // A push wake-up goes where the operator configured it (a private address included);
    // a task's outcome by its platform's rules.
    let push_policy = TargetPolicy { hosts: None, allow_private: true };
    let policy = if cb.push.is_some() { &push_policy } else { &cfg.platform(platform).callback };
    // Plain strings, booleans and enums: serializing cannot fail.
    let body = match &cb.push {
        Some(push) => Ok(Some(serde_json::to_vec(push).expect("push body serializes"))),
        None => {
            tasks.callback_body(task_id).map(|b| b.map(|b| serde_json::to_vec(&b).expect("callback body serializes")))
        }
    };
    let outcome = match (body, CallbackUrl::parse(&cb.url)) {
        (Ok(None), _) => {
            let _ = store.finish_callback(&lease);
            return;
        }
        (Err(e), _) => Err(Failure::Failed(format!("reading the task: {e}"))),
        (_, Err(why)) => {
            abandon(&tasks, &lease, platform, &format!("callback_url {why}"));
            return;
        }
        (Ok(Some(body)), Ok(url)) => {
            if let Err(why) = policy.check_url(&url) {
                // The platform's rules changed since the task was created.
                crate::metrics::METRICS.callback_refusals.inc();
                abandon(&tasks, &lease, platform, &why);
                return;
            }
            let attempt =
                post(&tls, &url, policy, cfg.callback_connect_timeout, cfg.callback_timeout, Bytes::from(body));
            match tokio::time::timeout(cfg.callback_timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err(Failure::Failed(format!("no answer within {} ms", cfg.callback_timeout.as_millis()))),
            }
        }
    };
    match outcome {
        Ok(status) if (200..300).contains(&status) => {
            tracing::info!(%task_id, %platform, attempts = cb.attempts + 1, "callback delivered");
            if !store.finish_callback(&lease).unwrap_or(false) {
                tracing::warn!(%task_id, %platform, "callback delivered after its lease ran out: it may be delivered again");
            }
        }
        failed => {
            let why = match failed {
                Ok(status) => format!("HTTP {status}"),
                Err(Failure::Refused(why)) => {
                    crate::metrics::METRICS.callback_refusals.inc();
                    tracing::warn!(%task_id, %platform, url = %cb.url, reason = %why, "callback target refused");
                    why
                }
                Err(Failure::Failed(why)) => why,
            };
            cb.attempts += 1;
            crate::metrics::METRICS.callback_retries.inc();
            if cb.attempts >= cfg.callback_max_attempts {
                abandon(&tasks, &CallbackLease { record: cb, token: lease.token }, platform, &why);
                return;
            }
            cb.next_at_ms = tasks.clock().now_ms() + backoff(cb.attempts - 1).as_millis() as i64;
            tracing::warn!(%task_id, %platform, attempts = cb.attempts, error = %why, "callback failed; will retry");
            match store.reschedule_callback(&lease, &cb) {
                Ok(true) => {}
                Ok(false) => tracing::warn!(%task_id, "callback lease ran out before the retry was scheduled"),
                Err(e) => tracing::error!(%task_id, error = %e, "rescheduling a callback"),
            }
        }
    }
}

/// Give up on a record (under its lease; `lease.record` as it stands now).
fn abandon(tasks: &TaskService, lease: &CallbackLease, platform: &str, why: &str) {
    let cb = &lease.record;
    tracing::error!(task_id = %cb.task_id, %platform, url = %cb.url, attempts = cb.attempts, error = %why, "callback abandoned");
    crate::metrics::METRICS.callbacks_abandoned.inc();
    let _ = tasks.store().finish_callback(lease);
}

/// Resolve the host, check every address, connect to the first checked one that answers;
/// all within `budget`.
async fn connect(url: &CallbackUrl, policy: &TargetPolicy, budget: Duration) -> Result<TcpStream, Failure> {
    let deadline = Instant::now() + budget;
    let addrs: Vec<SocketAddr> = match &url.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, url.port)],
        Host::Name(name) => tokio::time::timeout_at(deadline, tokio::net::lookup_host((name.as_str(), url.port)))
            .await
            .map_err(|_| Failure::Failed(format!("resolving {name} took longer than {} ms", budget.as_millis())))?
            .map_err(|e| Failure::Failed(format!("resolving {name}: {e}")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(Failure::Failed(format!("{} resolves to no address", url.host)));
    }
    // Any refused address refuses the name: which one a connection would reach is not ours
    // to choose (DNS rebinding answers a public and a private address in turn).
    for addr in &addrs {
        policy
            .check_addr(addr.ip())
            .map_err(|why| Failure::Refused(format!("{} resolves to {}: {why}", url.host, addr.ip())))?;
    }
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => last = format!("connecting to {addr}: {e}"),
            Err(_) => {
                return Err(Failure::Failed(format!(
                    "connecting to {addr} took longer than {} ms",
                    budget.as_millis()
                )));
            }
        }
    }
    Err(Failure::Failed(last))
}

async fn post(
    tls: &Arc<ClientConfig>,
    url: &CallbackUrl,
    policy: &TargetPolicy,
    connect_timeout: Duration,
    timeout: Duration,
    body: Bytes,
) -> Result<u16, Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::Failed(e.to_string());
    let name = match &url.host {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Host::Name(n) => ServerName::try_from(n.clone()).map_err(|e| failed(&e))?,
    };
    let tcp = connect(url, policy, connect_timeout).await?;
    let stream = TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| failed(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
    // The connection's own task ends with it, and at the latest with the attempt's time.
    tokio::spawn(tokio::time::timeout(timeout, conn));
    let req = Request::post(url.path.as_str())
        .header(hyper::header::HOST, url.host_header())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| failed(&e))?;
    // The status is the answer; the receiver's body is not read (nor buffered).
    let resp = sender.send_request(req).await.map_err(|e| failed(&e))?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn a_callback_body_carries_only_what_the_task_has() {
        use serde_json::json;
        let body = |result, error, result_available| {
            let b =
                CallbackBody { task_id: "t-1".into(), status: TaskStatus::Completed, result, error, result_available };
            serde_json::from_slice::<serde_json::Value>(&serde_json::to_vec(&b).unwrap()).unwrap()
        };
        let csr = TaskResult::Csr { certificate: "MIIB".into(), key_id: "k-1".into() };
        assert_eq!(
            body(Some(csr), None, None),
            json!({ "task_id": "t-1", "status": "completed", "result": { "certificate": "MIIB", "key_id": "k-1" } })
        );
        // A decrypt task: never the plaintext, only whether it can still be fetched.
        assert_eq!(
            body(None, None, Some(true)),
            json!({ "task_id": "t-1", "status": "completed", "result_available": true })
        );
        assert_eq!(
            body(None, Some("task expired".into()), None),
            json!({ "task_id": "t-1", "status": "completed", "error": "task expired" })
        );
    }

    /// DNS rebinding: the name passed the checks at creation; what it resolves to now is
    /// checked before any connection, and a refused answer is never connected to.
    #[tokio::test]
    async fn a_name_resolving_to_a_refused_address_is_never_connected_to() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        // `localhost` resolves to loopback (creation refuses the name itself; delivery
        // sees only what the resolver answers).
        let url = CallbackUrl { host: Host::Name("localhost".into()), port, path: "/".into() };
        let strict = TargetPolicy::default();
        match connect(&url, &strict, Duration::from_secs(5)).await {
            Err(Failure::Refused(why)) => {
                assert!(why.contains("localhost resolves to") && why.contains("loopback"), "{why}")
            }
            other => panic!("not refused: {other:?}"),
        }
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "a refused address was connected to"
        );
        // The same with private targets allowed: connected, to the checked address.
        let dev = TargetPolicy { hosts: None, allow_private: true };
        let url = CallbackUrl { host: Host::Ip("127.0.0.1".parse().unwrap()), port, path: "/".into() };
        let tcp = connect(&url, &dev, Duration::from_secs(5)).await.unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), listener.local_addr().unwrap());
        let ip_literal = connect(&url, &strict, Duration::from_secs(5)).await;
        assert!(matches!(ip_literal, Err(Failure::Refused(_))), "{ip_literal:?}");
    }

    #[test]
    fn in_flight_deliveries_are_bounded_per_platform_and_in_all() {
        let mut f = InFlight::default();
        // A platform fills its own slots...
        for i in 0..3 {
            assert!(f.try_start(&format!("a{i}"), "P-A", 3, 5));
        }
        assert!(!f.try_start("a3", "P-A", 3, 5), "a fourth in flight for P-A");
        // ...and another platform still gets one, up to the global bound.
        assert!(f.try_start("b0", "P-B", 3, 5));
        assert!(!f.try_start("b0", "P-B", 3, 5), "the same task twice");
        assert!(f.try_start("c0", "P-C", 3, 5));
        assert!(!f.try_start("d0", "P-D", 3, 5), "past the global bound");
        // A slot given back is free again; giving it back twice changes nothing.
        f.finish("a0", "P-A");
        f.finish("a0", "P-A");
        assert_eq!((f.total, f.per_platform["P-A"]), (4, 2));
        assert!(f.try_start("a3", "P-A", 3, 5));
        for (t, p) in [("a1", "P-A"), ("a2", "P-A"), ("a3", "P-A"), ("b0", "P-B"), ("c0", "P-C")] {
            f.finish(t, p);
        }
        assert_eq!(f.total, 0);
        assert!(f.per_platform.is_empty() && f.tasks.is_empty());
    }
}
