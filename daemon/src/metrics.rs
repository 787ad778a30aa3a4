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
    pub build_info: IntGaugeVec,
    pub connections_open: IntGauge,
    pub connections_refused: IntCounterVec,
    pub connections_closed: IntCounterVec,
    pub accept_errors: IntCounter,
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
    let build_info = IntGaugeVec::new(Opts::new("mcsd_build_info", "Build information; the value is 1."), &["version"])
        .expect("metric definition");
    r.register(Box::new(build_info.clone())).expect("unique metric");
    build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    Metrics {
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
        registry: r,
    }
});

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
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(name.starts_with("mcsd_"), "{name}");
            // `_expiring`: a count of things inside a time window (certificates ending soon).
            let suffix_ok =
                ["_total", "_seconds", "_in_use", "_open", "_info", "_expiring"].iter().any(|s| name.ends_with(s));
            assert!(suffix_ok, "{name} has no unit suffix");
        }
        assert!(text.contains("mcsd_build_info{version="));
    }
}
