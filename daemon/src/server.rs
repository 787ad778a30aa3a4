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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::config::Config;
use crate::hsm::{Hsm, HsmError};
use crate::keys::KeyService;
use crate::store::{Store, StoreError};
use crate::plugins::{DaemonKeys, PluginHost};
use crate::tasks::TaskService;
use crate::tls::{self, Anchors, TlsError};

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
            StartError::Tls(_) => 64,   // EX_USAGE: configuration points at bad material
            StartError::Hsm(_) => 69,   // EX_UNAVAILABLE
            StartError::Store(_) => 74, // EX_IOERR
            StartError::Audit(_) => 65, // EX_DATAERR: the store's audit chain or key cannot be trusted
            StartError::Bind { .. } | StartError::Control { .. } => 71, // EX_OSERR
        }
    }
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Run until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP.
pub async fn run(cfg: Config, config_path: Option<std::path::PathBuf>) -> Result<(), StartError> {
    // Build the generator table before the first co-signature needs it.
    tokio::task::spawn_blocking(sm2_2p::fast::warm_up);
    let store = Arc::new(Store::open_with_cache(&cfg.store.path, cfg.store.cache_mb)?);
    let hsm_cfg = cfg.hsm.clone();
    let hsm = Arc::new(
        tokio::task::spawn_blocking(move || Hsm::connect(&hsm_cfg))
            .await
            .map_err(|e| HsmError::Setup(format!("connect task: {e}")))??,
    );
    // Before anything is bound: a chain the daemon cannot verify from its last known
    // checkpoint, or an audit key that is not the pinned one, stops the start.
    let audit = Arc::new(crate::audit::Audit::open(store.clone(), DaemonKeys::new(store.clone(), hsm.clone()), cfg.audit.clone())?);
    let audit_check = audit.check_at_start().await?;
    let (tls_config, anchors) = tls::server_config(&cfg.api)?;
    let callback_tls = crate::callbacks::client_config(&cfg.api, &cfg.tasks)?;

    let api_listener =
        TcpListener::bind(cfg.api.listen).await.map_err(|source| StartError::Bind { addr: cfg.api.listen, source })?;
    let health_listener = TcpListener::bind(cfg.health.listen)
        .await
        .map_err(|source| StartError::Bind { addr: cfg.health.listen, source })?;
    let api_addr = api_listener.local_addr().map_err(|source| StartError::Bind { addr: cfg.api.listen, source })?;
    let health_addr =
        health_listener.local_addr().map_err(|source| StartError::Bind { addr: cfg.health.listen, source })?;
    let plugin_cfg = cfg.plugins.clone();
    let daemon_keys = DaemonKeys::new(store.clone(), hsm.clone());
    let plugins = Arc::new(
        tokio::task::spawn_blocking(move || PluginHost::load(&plugin_cfg, daemon_keys))
            .await
            .map_err(|e| HsmError::Setup(format!("plugin loading task: {e}")))?,
    );
    let keys = Arc::new(KeyService::new(store.clone(), hsm.clone(), plugins.clone(), cfg.keys.clone()));
    let mut tasks_cfg = cfg.tasks.clone();
    if tasks_cfg.public_url.is_empty() {
        tasks_cfg.public_url = format!("https://{api_addr}");
    }
    let seals = Arc::new(crate::seals::SealService::new(
        store.clone(),
        keys.clone(),
        plugins.clone(),
        DaemonKeys::new(store.clone(), hsm.clone()),
        cfg.seals.clone(),
    ));
    let tasks = Arc::new(TaskService::new(store.clone(), hsm.clone(), keys.clone(), plugins.clone(), seals.clone(), audit.clone(), tasks_cfg));
    audit.record(daemon_event("daemon started", json!({ "version": env!("CARGO_PKG_VERSION"), "audit": audit_check.detail() }))).await?;
    let api = Arc::new(Api::new(keys, tasks.clone(), seals, audit.clone(), plugins.clone(), cfg.api.max_body_bytes));
    let control_path = crate::control::socket_path(&cfg.store.path);
    let control = crate::control::bind(&control_path).map_err(|source| StartError::Control { path: control_path.clone(), source })?;
    tokio::spawn(crate::control::serve(control, store.clone(), hsm.clone(), audit.clone()));
    tokio::spawn(sweep_loop(tasks.clone(), cfg.tasks.sweep_interval));
    tokio::spawn(crate::callbacks::run(tasks.clone(), callback_tls));
    announce(&format!("listening on {api_addr}"));
    announce(&format!("health listening on {health_addr}"));
    tracing::info!(%api_addr, %health_addr, kek_version = hsm.current_kek_version(), "mcsd serving");

    tokio::spawn(reinit_loop(hsm.clone(), cfg.hsm.reinit_interval));
    if let Some(every) = crate::sdnotify::watchdog_interval() {
        tokio::spawn(watchdog_loop(hsm.clone(), every));
    }
    crate::sdnotify::notify(&format!("READY=1\nSTATUS=serving on {api_addr}\nMAINPID={}", std::process::id()));
    let shutdown = GracefulShutdown::new();
    let mut tls_now = (TlsAcceptor::from(tls_config), anchors);
    let mut stop = std::pin::pin!(shutdown_signal());
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            accepted = api_listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                serve_api_connection(&shutdown, tls_now.0.clone(), tls_now.1.clone(), api.clone(), tcp, peer);
            }
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                crate::sdnotify::notify(&format!("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading", crate::sdnotify::monotonic_usec()));
                let outcome = reload(config_path.as_deref(), &plugins);
                let (status, detail) = match outcome {
                    Ok((acceptor, anchors, notes)) => {
                        tls_now = (acceptor, anchors);
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
                crate::sdnotify::notify(&format!("READY=1\nSTATUS=serving on {api_addr} (reload {status})"));
            }
            accepted = health_listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                serve_health_connection(&shutdown, hsm.clone(), plugins.clone(), tcp);
            }
            _ = &mut stop => break,
        }
    }
    crate::sdnotify::notify("STOPPING=1\nSTATUS=draining connections");
    tracing::info!("shutting down: draining connections");
    drop(api_listener);
    drop(health_listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, shutdown.shutdown()).await.is_err() {
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
    crate::audit::Event { event: what.to_owned(), actor: "mcsd".into(), outcome: "ok".into(), detail, ..Default::default() }
}

/// Print a line on stdout and flush it at once: supervisors and tests wait for it.
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn serve_api_connection(
    shutdown: &GracefulShutdown,
    acceptor: TlsAcceptor,
    anchors: Arc<Anchors>,
    api: Arc<Api>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let watcher = shutdown.watcher();
    tokio::spawn(async move {
        let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let caller = match tls.get_ref().1.peer_certificates() {
            Some(chain) => anchors.identify(chain).map_err(|e| e.0),
            None => Err("no client certificate".to_owned()),
        };
        let caller = Arc::new(caller);
        let service = service_fn(move |req: Request<Incoming>| {
            let (api, caller) = (api.clone(), caller.clone());
            async move { Ok::<_, std::convert::Infallible>(api.handle(&caller, req).await) }
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(TokioIo::new(tls), service);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(%peer, error = %e, "connection ended with error");
        }
    });
}

fn serve_health_connection(shutdown: &GracefulShutdown, hsm: Arc<Hsm>, plugins: Arc<PluginHost>, tcp: tokio::net::TcpStream) {
    let watcher = shutdown.watcher();
    tokio::spawn(async move {
        let service = service_fn(move |req: Request<Incoming>| {
            let (hsm, plugins) = (hsm.clone(), plugins.clone());
            async move { Ok::<_, std::convert::Infallible>(health(&hsm, &plugins, &req)) }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
        let _ = watcher.watch(conn).await;
    });
}

fn health(hsm: &Hsm, plugins: &PluginHost, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/metrics" {
        let mut resp = Response::new(Full::new(Bytes::from(crate::metrics::render())));
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
        return resp;
    }
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, json!({ "status": "ok" })),
        "/readyz" => {
            let hsm_ready = hsm.is_ready();
            let plugins_ready = plugins.all_loaded();
            let ready = hsm_ready && plugins_ready;
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (
                status,
                json!({
                    "status": if ready { "ready" } else { "not_ready" },
                    "hsm": if hsm_ready { "logged_in" } else { "reinitialising" },
                    "store": "open",
                    "plugins": if plugins_ready { "loaded" } else { "some failed to load" },
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

/// Re-read the config: new TLS acceptor and anchors, adapter settings applied.
fn reload(path: Option<&std::path::Path>, plugins: &PluginHost) -> Result<(TlsAcceptor, Arc<Anchors>, Vec<String>), String> {
    let path = path.ok_or("no config file to reload from")?;
    let cfg = Config::load(path).map_err(|e| e.to_string())?;
    let (tls_config, anchors) = tls::server_config(&cfg.api).map_err(|e| e.to_string())?;
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
            crate::sdnotify::notify("WATCHDOG=1");
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

/// Expire overdue tasks and purge old ones, at start and then periodically.
async fn sweep_loop(tasks: Arc<TaskService>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tasks.sweep().await {
            Ok((0, 0)) => {}
            Ok((expired, purged)) => tracing::info!(expired, purged, "task sweep"),
            Err(e) => tracing::warn!(error = %e, "task sweep failed"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
