//! Prometheus metrics, served as text on the health listener's `/metrics`.
//!
//! Names follow `mcsd_<component>_<what>_<unit>`. Histograms use [`BUCKETS`], from 100 µs to
//! 10 s, because an HSM unwrap takes well under a millisecond and a CA adapter seconds.
//! Labels are bounded: routes are templates (`/v1/keys/{id}/sign`), never raw paths.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Label values known before any event, set to zero at start so a rate or an alert over
/// them has a series from the first scrape (not only after the first failure).
const CONNECTION_REFUSALS: &[&str] = &["global", "per_peer"];
const CONNECTION_CLOSES: &[&str] = &["handshake_timeout", "idle", "request_timeout"];
const COSIGN_KINDS: &[&str] = &["sign", "decrypt"];

pub const BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    pub api_requests: IntCounterVec,
    pub api_duration: HistogramVec,
    pub cosign_operations: IntCounterVec,
    pub hsm_duration: HistogramVec,
    pub hsm_sessions_in_use: IntGauge,
    pub hsm_reinitialisations: IntCounter,
    pub pin_failures: IntCounter,
    pub pin_lockouts: IntCounter,
    pub tasks_open: IntGauge,
    pub certificates_expiring: IntGauge,
    pub tasks_expired: IntCounter,
    pub callback_retries: IntCounter,
    pub callback_slots_in_use: IntGauge,
    pub callback_refusals: IntCounter,
    pub timestamps: IntCounter,
    pub task_quota_refusals: IntCounter,
    pub plugin_calls: IntCounterVec,
    pub store_flush_duration: Histogram,
    pub audit_entries: IntCounter,
    pub audit_write_failures: IntCounter,
    pub build_info: IntGaugeVec,
    pub connections_open: IntGauge,
    pub connections_refused: IntCounterVec,
    pub connections_closed: IntCounterVec,
    pub accept_errors: IntCounter,
    pub ready: IntGauge,
    pub hsm_up: IntGauge,
    pub plugin_up: IntGaugeVec,
    pub certificate_expiry: IntGaugeVec,
    pub callbacks_abandoned: IntCounter,
    pub start_time: IntGauge,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()), labels).expect("metric definition");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric definition");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let store_flush_duration = Histogram::with_opts(
        HistogramOpts::new("mcsd_store_flush_duration_seconds", "Time to make the store durable (fsync).")
            .buckets(BUCKETS.to_vec()),
    )
    .expect("metric definition");
    r.register(Box::new(store_flush_duration.clone())).expect("unique metric");
    // CPU, memory, open descriptors and start time of the daemon's process
    // (`process_*`, Prometheus's standard names).
    #[cfg(target_os = "linux")]
    r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("unique metric");
    let build_info =
        gauge_vec(&r, "mcsd_build_info", "Build information; the value is 1.", &["version", "commit", "profile"]);
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), option_env!("MCSD_COMMIT").unwrap_or("unknown"), PROFILE])
        .set(1);
    let start_time = gauge(&r, "mcsd_start_time_seconds", "When this daemon process started (Unix seconds).");
    start_time.set(crate::clock::now());
    let metrics = Metrics {
        api_requests: counter_vec(
            &r,
            "mcsd_api_requests_total",
            "API requests by route template, method and answer code.",
            &["route", "method", "code"],
        ),
        api_duration: histogram_vec(
            &r,
            "mcsd_api_request_duration_seconds",
            "API request latency by route template.",
            &["route"],
        ),
        cosign_operations: counter_vec(
            &r,
            "mcsd_cosign_operations_total",
            "Server halves computed, by kind and result.",
            &["kind", "result"],
        ),
        hsm_duration: histogram_vec(
            &r,
            "mcsd_hsm_call_duration_seconds",
            "PKCS#11 call latency by operation.",
            &["op"],
        ),
        hsm_sessions_in_use: gauge(&r, "mcsd_hsm_sessions_in_use", "PKCS#11 sessions taken from the pool."),
        hsm_reinitialisations: counter(
            &r,
            "mcsd_hsm_reinitialisations_total",
            "Successful re-initialisations of the PKCS#11 module.",
        ),
        pin_failures: counter(&r, "mcsd_pin_failures_total", "Wrong PIN proofs."),
        pin_lockouts: counter(&r, "mcsd_pin_lockouts_total", "Keys locked after too many wrong PINs."),
        tasks_open: gauge(&r, "mcsd_tasks_open", "Tasks pending, claimed or awaiting approval (at the last sweep)."),
        certificates_expiring: gauge(
            &r,
            "mcsd_certificates_expiring",
            "Certificates of active or suspended keys ending within [keys] expiry_notice_days (at the last check).",
        ),
        tasks_expired: counter(&r, "mcsd_tasks_expired_total", "Tasks that expired unfinished."),
        callback_retries: counter(
            &r,
            "mcsd_callback_retries_total",
            "Callback deliveries that failed and will be retried or were abandoned.",
        ),
        callback_slots_in_use: gauge(
            &r,
            "mcsd_callback_slots_in_use",
            "Callback deliveries in flight (delivery slots taken), all platforms together.",
        ),
        callback_refusals: counter(
            &r,
            "mcsd_callback_refusals_total",
            "Callback deliveries refused by the target rules (address range, allow-list).",
        ),
        timestamps: counter(
            &r,
            "mcsd_timestamps_total",
            "Time-stamp tokens issued (POST /v1/timestamp and PDF signature time-stamps).",
        ),
        task_quota_refusals: counter(
            &r,
            "mcsd_task_quota_refusals_total",
            "Task creations refused by a platform's open-task quotas.",
        ),
        plugin_calls: counter_vec(
            &r,
            "mcsd_plugin_calls_total",
            "CA adapter calls by adapter, operation and result.",
            &["adapter", "op", "result"],
        ),
        store_flush_duration,
        audit_entries: counter(&r, "mcsd_audit_entries_total", "Entries appended to the audit chain."),
        audit_write_failures: counter(
            &r,
            "mcsd_audit_write_failures_total",
            "Audit entries that could not be written or made durable (the request they record fails).",
        ),
        build_info,
        connections_open: gauge(&r, "mcsd_api_connections_open", "API connections open now (from accept to close)."),
        connections_refused: counter_vec(
            &r,
            "mcsd_api_connections_refused_total",
            "API connections closed at accept: over the global or the per-peer bound.",
            &["reason"],
        ),
        connections_closed: counter_vec(
            &r,
            "mcsd_api_connections_closed_total",
            "API connections the daemon closed, by reason (handshake_timeout, idle, request_timeout).",
            &["reason"],
        ),
        accept_errors: counter(
            &r,
            "mcsd_api_accept_errors_total",
            "Failed accept() calls (e.g. out of file descriptors); the listener backs off.",
        ),
        ready: gauge(
            &r,
            "mcsd_ready",
            "1 while /readyz answers 200 (ready or degraded), 0 while it answers 503 (at the last scrape).",
        ),
        hsm_up: gauge(&r, "mcsd_hsm_up", "1 while the PKCS#11 module is logged in and usable (at the last scrape)."),
        plugin_up: gauge_vec(
            &r,
            "mcsd_plugin_up",
            "1 for a configured CA adapter that is loaded, 0 for one that failed to load.",
            &["adapter"],
        ),
        certificate_expiry: gauge_vec(
            &r,
            "mcsd_certificate_expiry_timestamp_seconds",
            "When a certificate the daemon relies on ends (Unix seconds): `cert` is `api` (the listener's), \
             `client_ca:<subject CN>` (a client trust anchor), `ca:<adapter>` (a CA adapter's root) or `tsa`.",
            &["cert"],
        ),
        callbacks_abandoned: counter(
            &r,
            "mcsd_callbacks_abandoned_total",
            "Callbacks given up on after the last retry (or refused for good); the platform must poll.",
        ),
        start_time,
        registry: r,
    };
    for reason in CONNECTION_REFUSALS {
        metrics.connections_refused.with_label_values(&[reason]).reset();
    }
    for reason in CONNECTION_CLOSES {
        metrics.connections_closed.with_label_values(&[reason]).reset();
    }
    for kind in COSIGN_KINDS {
        metrics.cosign_operations.with_label_values(&[kind, "ok"]).reset();
    }
    metrics
});

/// `commit` is what the packager sets in `MCSD_COMMIT` at build time (`cargo xtask deb`
/// does), else `unknown`.
const PROFILE: &str = if cfg!(debug_assertions) { "debug" } else { "release" };

/// Give every route template (and the unmatched-path label) its latency series from the
/// start, so a p99 over a route exists before its first request.
pub fn init_routes<'a>(routes: impl IntoIterator<Item = &'a str>) {
    for route in routes {
        let _ = METRICS.api_duration.with_label_values(&[route]);
    }
}

/// The labels each source of certificate ends set last (see [`set_certificate_expiries`]).
static EXPIRY_LABELS: LazyLock<std::sync::Mutex<std::collections::BTreeMap<&'static str, Vec<String>>>> =
    LazyLock::new(Default::default);

/// The ends of the certificates one source knows, replacing what that source set before:
/// `source` is `tls` (the API certificate and client trust anchors, at start and reload),
/// `ca` (the CA roots the keys chain to, at each expiry sweep) or `tsa`; each item is
/// `(cert label, not-after as Unix seconds)`.
pub fn set_certificate_expiries(source: &'static str, certs: &[(String, i64)]) {
    let mut labels = EXPIRY_LABELS.lock().unwrap_or_else(|p| p.into_inner());
    let before = labels.insert(source, certs.iter().map(|(c, _)| c.clone()).collect()).unwrap_or_default();
    for gone in before.iter().filter(|b| !certs.iter().any(|(c, _)| c == *b)) {
        let _ = METRICS.certificate_expiry.remove_label_values(&[gone]);
    }
    for (cert, not_after) in certs {
        METRICS.certificate_expiry.with_label_values(&[cert]).set(*not_after);
    }
}

const COMMON_NAME: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");

/// A certificate's expiry label part and end: its subject's common name (else the whole
/// subject) and `notAfter` in Unix seconds; `None` if it does not parse.
pub fn certificate_end(der: &[u8]) -> Option<(String, i64)> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    let subject = tbs.subject();
    let cn = subject
        .iter()
        .find(|atv| atv.oid == COMMON_NAME)
        // UTF8String or PrintableString: the content octets are the text either way.
        .map(|atv| String::from_utf8_lossy(atv.value.value()).into_owned())
        .unwrap_or_else(|| subject.to_string());
    Some((cn, tbs.validity().not_after.to_unix_duration().as_secs() as i64))
}

/// The text exposition of every metric.
pub fn render() -> Vec<u8> {
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&METRICS.registry.gather(), &mut out);
    out
}

/// Times a block into a histogram when dropped.
pub struct Timer(Instant, Histogram);

impl Timer {
    pub fn start(h: Histogram) -> Timer {
        Timer(Instant::now(), h)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.1.observe(self.0.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_scheme() {
        METRICS.pin_failures.inc();
        let text = String::from_utf8(render()).unwrap();
        for line in text.lines().filter(|l| l.starts_with("# TYPE") && !l.starts_with("# TYPE process_")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(name.starts_with("mcsd_"), "{name}");
            // `_expiring`: a count of things inside a time window (certificates ending soon).
            let suffix_ok = ["_total", "_seconds", "_in_use", "_open", "_info", "_expiring", "_up", "_ready"]
                .iter()
                .any(|s| name.ends_with(s));
            assert!(suffix_ok, "{name} has no unit suffix");
        }
        assert!(text.contains("mcsd_build_info{commit="), "{text}");
        assert!(text.contains("process_start_time_seconds"), "{text}");
        assert!(text.contains(r#"mcsd_api_connections_refused_total{reason="per_peer"} 0"#), "{text}");
    }
}
