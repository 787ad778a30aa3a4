//! Running the daemon: open everything, bind, serve, drain.
//!
//! Start-up validates before it binds: config (done by the caller), store, HSM login and
//! KEK, TLS material. Only then are the listeners bound and `listening on <addr>` printed
//! (tests and supervisors wait for that line, never for a sleep). On SIGTERM or SIGINT the
//! listeners close, open connections are drained (bounded), and the store is flushed.
//!
//! Under systemd (`Type=notify`) it reports READY, RELOADING, STOPPING and STATUS, and feeds
//! the watchdog only while the HSM is usable. SIGHUP re-reads the config file and swaps in
//! the new TLS certificate and trust anchors for new handshakes (open connections keep
//! theirs) and the adapters' timeouts; a reload that fails keeps the old settings.

mod adapter_state;
pub mod control;
pub mod logging;
pub mod preflight;
#[allow(unsafe_code)] // its test sets NOTIFY_SOCKET: listed in ARCHITECTURE.md
pub mod sdnotify;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::config::{Config, ConnectionLimits};
use crate::daemon_keys::DaemonKeys;
use crate::hsm::{Hsm, HsmError};
use crate::keys::KeyService;
use crate::pem::TlsError;
use crate::plugins::PluginHost;
use crate::store::{Storage, StoreError};
use crate::tasks::TaskService;
use sdnotify::State;
use tls::Anchors;

/// Start-up failures, each with its own exit code (sysexits.h).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("HSM: {0}")]
    Hsm(#[from] HsmError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("control socket {}: {source}", path.display())]
    Control { path: std::path::PathBuf, source: std::io::Error },
    #[error("audit chain not trusted, refusing to start: {0} (`mcsd audit verify` shows the whole chain)")]
    Audit(String),
}

impl From<crate::audit::AuditError> for StartError {
    fn from(e: crate::audit::AuditError) -> Self {
        match e {
            crate::audit::AuditError::Store(e) => StartError::Store(e),
            crate::audit::AuditError::Untrusted(why) => StartError::Audit(why),
        }
    }
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Tls(_) => 78,   // EX_CONFIG: configuration points at bad material
            StartError::Hsm(_) => 69,   // EX_UNAVAILABLE
            StartError::Store(_) => 74, // EX_IOERR
            StartError::Audit(_) => 65, // EX_DATAERR: the store's audit chain or key cannot be trusted
            StartError::Bind { .. } | StartError::Control { .. } => 71, // EX_OSERR
        }
    }
}

const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors kept back from API connections: store files, HSM, plugins, /healthz.
const FD_RESERVE: usize = 256;
/// Health connections at once (Prometheus, the supervisor, an operator's curl).
const HEALTH_CONNECTIONS: usize = 32;
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Run until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP.
pub async fn run(cfg: Config, config_path: Option<std::path::PathBuf>) -> Result<(), StartError> {
    // Build the generator table before the first co-signature needs it.
    tokio::task::spawn_blocking(sm2_2p::fast::warm_up);
    crate::os::set_inline_limit(cfg.hsm.inline_calls);
    let store: Arc<dyn Storage> = crate::store::open(&cfg.store)?;
    let clock = crate::clock::system();
    let hsm_cfg = cfg.hsm.clone();
    let hsm = Arc::new(
        tokio::task::spawn_blocking(move || Hsm::connect(&hsm_cfg))
            .await
            .map_err(|e| HsmError::Setup(format!("connect task: {e}")))??,
    );
    // Before anything is bound: a chain the daemon cannot verify from its last known
    // checkpoint, or an audit key that is not the pinned one, stops the start.
    let audit = Arc::new(crate::audit::Audit::open(
        store.clone(),
        DaemonKeys::new(store.clone(), hsm.clone(), clock.clone()),
        cfg.audit.clone(),
        clock.clone(),
    )?);
    let audit_check = audit.check_at_start().await?;
    let (tls_config, anchors) = tls::server_config(&cfg.api)?;
    crate::metrics::set_certificate_expiries("tls", &anchors.certificate_ends);
    let callback_tls = crate::tasks::callbacks::client_config(&cfg.api, &cfg.tasks)?;

    let api_listener =
        TcpListener::bind(cfg.api.listen).await.map_err(|source| StartError::Bind { addr: cfg.api.listen, source })?;
    let health_listener = TcpListener::bind(cfg.health.listen)
        .await
        .map_err(|source| StartError::Bind { addr: cfg.health.listen, source })?;
    let api_addr = api_listener.local_addr().map_err(|source| StartError::Bind { addr: cfg.api.listen, source })?;
    let health_addr =
        health_listener.local_addr().map_err(|source| StartError::Bind { addr: cfg.health.listen, source })?;
    let plugin_cfg = cfg.plugins.clone();
    let daemon_keys = DaemonKeys::new(store.clone(), hsm.clone(), clock.clone());
    let adapter_kv = Arc::new(adapter_state::StoreKv(store.clone()));
    let plugins = Arc::new(
        tokio::task::spawn_blocking(move || PluginHost::load(&plugin_cfg, Arc::new(daemon_keys), adapter_kv))
            .await
            .map_err(|e| HsmError::Setup(format!("plugin loading task: {e}")))?,
    );
    let failed = plugins.failed_names();
    if !failed.is_empty() {
        tracing::warn!(failed = ?failed, "serving degraded: these CA adapters did not load (no new certificates from them)");
    }
    let keys = Arc::new(KeyService::new(store.clone(), hsm.clone(), plugins.clone(), cfg.keys.clone(), clock.clone()));
    keys.attach_audit(audit.clone());
    let keys_for_expiry = keys.clone();
    if let Some(url) = &cfg.push.url {
        keys.inbox().push_to(url.clone());
    }
    let mut tasks_cfg = cfg.tasks.clone();
    if tasks_cfg.public_url.is_empty() {
        tasks_cfg.public_url = format!("https://{api_addr}");
    }
    let seals = Arc::new(crate::seals::SealService::new(
        store.clone(),
        keys.clone(),
        plugins.clone(),
        DaemonKeys::new(store.clone(), hsm.clone(), clock.clone()),
        cfg.seals.clone(),
        clock.clone(),
    ));
    let tsa = Arc::new(crate::tsa::TsaService::new(
        store.clone(),
        DaemonKeys::new(store.clone(), hsm.clone(), clock.clone()),
        Some(hsm.clone() as Arc<dyn crate::hsm::NativeP256>),
        plugins.clone(),
        cfg.tsa.clone(),
        clock.clone(),
    ));
    seals.attach_tsa(tsa);
    let tasks = Arc::new(TaskService::new(
        store.clone(),
        hsm.clone(),
        keys.clone(),
        plugins.clone(),
        seals.clone(),
        audit.clone(),
        tasks_cfg,
        clock.clone(),
    ));
    audit
        .record(daemon_event(
            "daemon started",
            json!({ "version": env!("CARGO_PKG_VERSION"), "audit": audit_check.detail() }),
        ))
        .await?;
    let api = Arc::new(Api::new(keys, tasks.clone(), seals, audit.clone(), plugins.clone(), cfg.api.max_body_bytes));
    let control_path = cfg.control.socket.clone();
    let control = crate::server::control::bind(&control_path)
        .map_err(|source| StartError::Control { path: control_path.clone(), source })?;
    // Set by `mcsd drain`: readiness off for a rolling restart, requests still served.
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(crate::server::control::serve(
        control,
        crate::server::control::Services {
            store: store.clone(),
            hsm: hsm.clone(),
            audit: audit.clone(),
            draining: draining.clone(),
        },
    ));
    tokio::spawn(sweep_loop(tasks.clone(), cfg.tasks.sweep_interval));
    tokio::spawn(expiry_loop(keys_for_expiry, store.clone(), cfg.keys.expiry_check_interval));
    tokio::spawn(crate::tasks::callbacks::run(tasks.clone(), callback_tls));
    // Handlers first: supervisors and tests may signal as soon as they read the line.
    let signals = shutdown_signals();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    announce(&format!("listening on {api_addr}"));
    announce(&format!("health listening on {health_addr}"));
    tracing::info!(%api_addr, %health_addr, kek_version = hsm.current_kek_version(), "mcsd serving");

    tokio::spawn(reinit_loop(hsm.clone(), cfg.hsm.reinit_interval));
    tokio::spawn(store_recovery_loop(store.clone()));
    if let Some(every) = sdnotify::watchdog_interval() {
        tokio::spawn(watchdog_loop(hsm.clone(), every));
    }
    let serving = format!("serving on {api_addr}");
    sdnotify::notify(&[State::Ready, State::Status(&serving), State::MainPid(std::process::id())]);
    let (stop_tx, stop_rx) = watch::channel(false);
    let tls_now = Arc::new(std::sync::RwLock::new((TlsAcceptor::from(tls_config), anchors)));
    let limits = cfg.api.limits.clone();
    let gate = Arc::new(ConnectionGate::new(&limits, open_file_limit()));
    let request_bound = limits.request_timeout + cfg.tasks.max_wait;
    let health_gate = Arc::new(Semaphore::new(HEALTH_CONNECTIONS));
    let api_accept = tokio::spawn(accept_api(
        api_listener,
        ApiConnections {
            tls: tls_now.clone(),
            router: api.router(),
            gate: gate.clone(),
            limits,
            request_bound,
            stop: stop_rx.clone(),
        },
    ));
    let health_accept = tokio::spawn(accept_health(
        health_listener,
        Core { hsm: hsm.clone(), plugins: plugins.clone(), store: store.clone(), draining },
        health_gate.clone(),
        stop_rx.clone(),
    ));
    let mut stop = std::pin::pin!(shutdown_signal(signals));
    loop {
        tokio::select! {
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                let reloading = [Some(State::Reloading), sdnotify::reloading(), Some(State::Status("reloading"))];
                sdnotify::notify(&reloading.into_iter().flatten().collect::<Vec<_>>());
                let outcome = reload(config_path.as_deref(), &plugins);
                let (status, detail) = match outcome {
                    Ok((acceptor, anchors, notes)) => {
                        *tls_now.write().unwrap_or_else(|p| p.into_inner()) = (acceptor, anchors);
                        tracing::info!(?notes, "reloaded TLS material, trust anchors and adapter settings");
                        ("ok", json!({ "notes": notes }))
                    }
                    Err(why) => {
                        tracing::error!(error = %why, "reload failed; keeping the running settings");
                        ("error", json!({ "error": why }))
                    }
                };
                let mut ev = daemon_event("config reload", detail);
                ev.outcome = status.into();
                if let Err(e) = audit.record(ev).await {
                    tracing::error!(error = %e, "audit entry for the reload not written");
                }
                let serving = format!("serving on {api_addr} (reload {status})");
                sdnotify::notify(&[State::Ready, State::Status(&serving)]);
            }
            _ = &mut stop => break,
        }
    }
    sdnotify::notify(&[State::Stopping, State::Status("draining connections")]);
    tracing::info!("shutting down: draining connections");
    // The accept loops drop their listeners; open connections finish their request and close.
    let _ = stop_tx.send(true);
    let _ = tokio::join!(api_accept, health_accept);
    let drained = async {
        let _all_api = gate.global.acquire_many(gate.max as u32).await;
        let _all_health = health_gate.acquire_many(HEALTH_CONNECTIONS as u32).await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!("drain timed out; closing remaining connections");
    }
    let _ = std::fs::remove_file(&control_path);
    audit.record(daemon_event("daemon stopped", Value::Null)).await?;
    audit.checkpoint().await;
    store.flush().await?;
    // Record the vault layout so the next start need not check every slot.
    let closing = store.clone();
    match tokio::task::spawn_blocking(move || closing.close()).await {
        Ok(closed) => closed?,
        Err(e) => tracing::warn!(error = %e, "clean close did not run; the next start checks the vault"),
    }
    tracing::info!("stopped");
    Ok(())
}

fn daemon_event(what: &str, detail: Value) -> crate::audit::Event {
    crate::audit::Event {
        event: what.to_owned(),
        actor: "mcsd".into(),
        outcome: "ok".into(),
        detail,
        ..Default::default()
    }
}

/// Print a line on stdout and flush it at once: supervisors and tests wait for it.
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits` (None if unknown).
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Admission of API connections: a global bound (below the file limit, so an fd is always
/// left for `/healthz` and the store) and a bound per peer address. A connection over
/// either is closed at once, before TLS.
struct ConnectionGate {
    global: Arc<Semaphore>,
    max: usize,
    per_peer: usize,
    peers: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it gives its places back.
struct Admission {
    _global: tokio::sync::OwnedSemaphorePermit,
    gate: Arc<ConnectionGate>,
    peer: IpAddr,
}

impl ConnectionGate {
    fn new(limits: &ConnectionLimits, fd_limit: Option<usize>) -> ConnectionGate {
        let mut max = limits.max_connections;
        if let Some(fds) = fd_limit {
            let budget = fds.saturating_sub(FD_RESERVE).max(1);
            if budget < max {
                tracing::warn!(
                    max_connections = max,
                    fd_limit = fds,
                    using = budget,
                    "api.limits.max_connections exceeds the file limit; lowered"
                );
                max = budget;
            }
        }
        ConnectionGate {
            global: Arc::new(Semaphore::new(max)),
            max,
            per_peer: limits.max_connections_per_peer,
            peers: Default::default(),
        }
    }

    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admission, &'static str> {
        let permit = self.global.clone().try_acquire_owned().map_err(|_| "global")?;
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let n = peers.entry(peer).or_insert(0);
        if self.per_peer > 0 && *n >= self.per_peer {
            return Err("per_peer");
        }
        *n += 1;
        crate::metrics::METRICS.connections_open.inc();
        Ok(Admission { _global: permit, gate: self.clone(), peer })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        crate::metrics::METRICS.connections_open.dec();
        let mut peers = self.gate.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = peers.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

/// Wait after a failed accept (EMFILE and friends) instead of spinning on it.
async fn accept_backoff(failures: &mut u32, error: &std::io::Error, what: &str) {
    crate::metrics::METRICS.accept_errors.inc();
    if *failures == 0 {
        tracing::warn!(error = %error, listener = what, "accept failed; backing off");
    }
    *failures = (*failures + 1).min(5);
    tokio::time::sleep(Duration::from_millis(10u64 << *failures)).await;
}

/// What every API connection shares.
#[derive(Clone)]
struct ApiConnections {
    tls: Arc<std::sync::RwLock<(TlsAcceptor, Arc<Anchors>)>>,
    /// The API's router; each request gets its connection's caller before it is routed.
    router: axum::Router,
    gate: Arc<ConnectionGate>,
    limits: ConnectionLimits,
    /// The longest one request may take: the request timeout plus the longest long-poll.
    request_bound: Duration,
    stop: watch::Receiver<bool>,
}

async fn accept_api(listener: TcpListener, shared: ApiConnections) {
    let mut stop = shared.stop.clone();
    let mut failures = 0u32;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                failures = 0;
                a
            }
            Err(e) => {
                accept_backoff(&mut failures, &e, "api").await;
                continue;
            }
        };
        let admission = match shared.gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(reason) => {
                crate::metrics::METRICS.connections_refused.with_label_values(&[reason]).inc();
                tracing::debug!(%peer, reason, "connection refused: over the limit");
                drop(tcp);
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move { serve_api_connection(shared, tcp, peer, admission).await });
    }
}

/// When a connection last did something, and how many requests it has in flight.
struct Activity {
    in_flight: AtomicUsize,
    last: std::sync::Mutex<Instant>,
}

impl Activity {
    fn touch(&self, delta: isize) {
        if delta > 0 {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
        } else {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// When the connection becomes idle-expired if nothing happens meanwhile.
    fn idle_deadline(&self, idle: Duration) -> Option<tokio::time::Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(tokio::time::Instant::from_std(*self.last.lock().unwrap_or_else(|p| p.into_inner()) + idle))
    }
}

async fn serve_api_connection(
    shared: ApiConnections,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    admission: Admission,
) {
    let _admission = admission;
    let _ = tcp.set_nodelay(true);
    let (acceptor, anchors) = shared.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
    let limits = &shared.limits;
    let tls = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            crate::metrics::METRICS.connections_closed.with_label_values(&["handshake_timeout"]).inc();
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let caller = match tls.get_ref().1.peer_certificates() {
        Some(chain) => anchors.identify(chain).map_err(|e| e.0),
        None => Err("no client certificate".to_owned()),
    };
    let caller = Arc::new(caller);
    let activity = Arc::new(Activity { in_flight: AtomicUsize::new(0), last: std::sync::Mutex::new(Instant::now()) });
    let (router, bound, seen) = (shared.router.clone(), shared.request_bound, activity.clone());
    let service = service_fn(move |mut req: Request<Incoming>| {
        let (mut router, caller, seen) = (router.clone(), caller.clone(), seen.clone());
        async move {
            seen.touch(1);
            match &*caller {
                Ok(c) => _ = req.extensions_mut().insert(c.clone()),
                Err(why) => _ = req.extensions_mut().insert(crate::api::Unidentified(why.clone())),
            }
            req.extensions_mut().insert(crate::api::Peer(peer));
            crate::api::trim_trailing_slashes(&mut req);
            let answer = match tokio::time::timeout(bound, tower_service::Service::call(&mut router, req)).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    crate::metrics::METRICS.connections_closed.with_label_values(&["request_timeout"]).inc();
                    tracing::warn!(%peer, "request timed out");
                    crate::api::timed_out()
                }
            };
            seen.touch(-1);
            Ok::<_, std::convert::Infallible>(answer)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    let mut conn = std::pin::pin!(conn);
    let mut stop = shared.stop.clone();
    // Once asked to close, a connection gets this long to finish its answer.
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let idle_at = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
            }
            _ = sleep_until_opt(idle_at), if closing.is_none() => {
                if activity.idle_deadline(limits.idle_timeout).is_some_and(|t| t <= tokio::time::Instant::now()) {
                    crate::metrics::METRICS.connections_closed.with_label_values(&["idle"]).inc();
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + limits.header_read_timeout);
                }
            }
            _ = sleep_until_opt(closing) => {
                tracing::debug!(%peer, "connection did not close in time; dropped");
                return;
            }
            // Wake up to re-read the activity while a request is in flight.
            _ = tokio::time::sleep(limits.idle_timeout), if idle_at.is_none() && closing.is_none() => {}
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// What the health listener reports on.
#[derive(Clone)]
struct Core {
    hsm: Arc<Hsm>,
    plugins: Arc<PluginHost>,
    store: Arc<dyn Storage>,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

async fn accept_health(listener: TcpListener, core: Core, gate: Arc<Semaphore>, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => {
                failures = 0;
                tcp
            }
            Err(e) => {
                accept_backoff(&mut failures, &e, "health").await;
                continue;
            }
        };
        let Ok(permit) = gate.clone().try_acquire_owned() else { continue };
        let core = core.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Incoming>| {
                let core = core.clone();
                async move { Ok::<_, std::convert::Infallible>(health(&core, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEALTH_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(HEALTH_TIMEOUT, conn).await;
        });
    }
}

fn health(core: &Core, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (hsm, plugins, store) = (&*core.hsm, &*core.plugins, &*core.store);
    let draining = core.draining.load(Ordering::SeqCst);
    if req.uri().path() == "/metrics" {
        Readiness::of(hsm, plugins, store, draining).publish(plugins);
        let mut resp = Response::new(Full::new(Bytes::from(crate::metrics::render())));
        resp.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
        return resp;
    }
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, json!({ "status": "ok" })),
        "/readyz" => {
            let r = Readiness::of(hsm, plugins, store, draining);
            r.publish(plugins);
            let status = if r.serving() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let failed = &r.failed_plugins;
            (
                status,
                json!({
                    "status": r.state(),
                    "hsm": if r.hsm { "logged_in" } else { "reinitialising" },
                    "store": if r.store { "open" } else { "failed: reopening once it can write" },
                    "store_reopenings": store.generation(),
                    "plugins": if failed.is_empty() { json!("loaded") } else { json!({ "failed": failed }) },
                    "hsm_reinitialisations": hsm.reinit_count(),
                }),
            )
        }
        _ => (StatusCode::NOT_FOUND, json!({ "error": { "code": "not_found", "message": "no such endpoint" } })),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

/// What `/readyz` and the readiness gauges report. The core is the HSM and the store: with
/// them every existing key signs and decrypts. A CA adapter that failed to load degrades
/// the node (no new certificates from that CA) without taking it out of a load balancer.
/// A draining node (`mcsd drain`) still serves, but answers 503 `draining` so a load
/// balancer sends it nothing new before a restart.
struct Readiness<'a> {
    hsm: bool,
    store: bool,
    draining: bool,
    failed_plugins: Vec<&'a str>,
}

impl<'a> Readiness<'a> {
    fn of(hsm: &Hsm, plugins: &'a PluginHost, store: &dyn Storage, draining: bool) -> Readiness<'a> {
        Readiness { hsm: hsm.is_ready(), store: !store.failed(), draining, failed_plugins: plugins.failed_names() }
    }

    /// Whether a load balancer should send the node requests (`/readyz` 200).
    fn serving(&self) -> bool {
        self.hsm && self.store && !self.draining
    }

    fn state(&self) -> &'static str {
        match (self.serving(), self.failed_plugins.is_empty()) {
            (false, _) if self.draining && self.hsm && self.store => "draining",
            (false, _) => "not_ready",
            (true, true) => "ready",
            (true, false) => "degraded",
        }
    }

    /// `mcsd_ready`, `mcsd_hsm_up` and `mcsd_plugin_up{adapter}` as of now.
    fn publish(&self, plugins: &PluginHost) {
        let m = &crate::metrics::METRICS;
        m.ready.set(i64::from(self.serving()));
        m.hsm_up.set(i64::from(self.hsm));
        for p in plugins.list() {
            m.plugin_up.with_label_values(&[p.name]).set(i64::from(!self.failed_plugins.contains(&p.name)));
        }
    }
}

/// Re-read the config: new TLS acceptor and anchors, adapter settings applied.
fn reload(
    path: Option<&std::path::Path>,
    plugins: &PluginHost,
) -> Result<(TlsAcceptor, Arc<Anchors>, Vec<String>), String> {
    let path = path.ok_or("no config file to reload from")?;
    let cfg = Config::load(path).map_err(|e| e.to_string())?;
    let (tls_config, anchors) = tls::server_config(&cfg.api).map_err(|e| e.to_string())?;
    crate::metrics::set_certificate_expiries("tls", &anchors.certificate_ends);
    let notes = plugins.apply_settings(&cfg.plugins);
    Ok((TlsAcceptor::from(tls_config), anchors, notes))
}

/// Feed the systemd watchdog while the daemon can do its job (the HSM is usable); a
/// daemon stuck without its HSM stops feeding and systemd restarts it.
async fn watchdog_loop(hsm: Arc<Hsm>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if hsm.is_ready() {
            sdnotify::notify(&[State::Watchdog]);
        }
    }
}

/// While the HSM context is retired, try to re-initialise it (rate-limited inside `Hsm`).
async fn reinit_loop(hsm: Arc<Hsm>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !hsm.is_ready() {
            let hsm = hsm.clone();
            let _ = tokio::task::spawn_blocking(move || hsm.try_reinit()).await;
        }
    }
}

/// Watch the store; when it cannot write (disk full, I/O error), reopen it once writes
/// succeed again. Requests fail closed meanwhile and `/readyz` says so.
async fn store_recovery_loop(store: Arc<dyn Storage>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = false;
    loop {
        tick.tick().await;
        store.probe();
        if !store.failed() {
            continue;
        }
        if !reported {
            tracing::error!(
                "store cannot write (disk full, an I/O error, or the database out of reach); reopening once it can"
            );
            reported = true;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.recover()).await {
            Ok(Ok(true)) => {
                tracing::warn!(generation = store.generation(), "store reopened; serving again");
                reported = false;
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "store still failing"),
            Err(e) => tracing::warn!(error = %e, "store recovery task failed"),
        }
    }
}

/// Expire overdue tasks and purge old ones, at start and then periodically. On a store
/// several nodes share, one node at a time sweeps (the store's `sweeper` lead; expiring is
/// compare-and-swap anyway, the lead only saves the others the work).
async fn sweep_loop(tasks: Arc<TaskService>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !tasks.store().lead("sweeper") {
            continue;
        }
        match tasks.sweep().await {
            Ok((0, 0)) => {}
            Ok((expired, purged)) => tracing::info!(expired, purged, "task sweep"),
            Err(e) => tracing::warn!(error = %e, "task sweep failed"),
        }
    }
}

/// Tell the holders of certificates that end soon, at start and then periodically; one
/// node of a cluster at a time (the `expiry` lead).
async fn expiry_loop(keys: Arc<KeyService>, store: Arc<dyn Storage>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !store.lead("expiry") {
            continue;
        }
        if let Err(e) = keys.check_expiry().await {
            tracing::warn!(error = %e, "certificate expiry check failed");
        }
    }
}

type Signals = Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;

/// SIGTERM and SIGINT handlers, installed now (the OS handler is set when the stream is
/// made, not when it is first polled).
fn shutdown_signals() -> Signals {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => None,
    }
}

async fn shutdown_signal(signals: Signals) {
    let Some((mut term, mut int)) = signals else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
