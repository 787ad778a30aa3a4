//! Metrics: a real Prometheus server scrapes `/metrics` on the health listener; after a few
//! co-signatures its query API returns the co-sign counter. Metric names follow the scheme.
//! Junk paths add no series; the operator's gauges are there from the first scrape; the
//! shipped alert rules and dashboard pass `promtool` and name only metrics that exist.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mcs_client::phone::SignMode;
use mcs_e2e::*;

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_cosign_counter() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    for i in 0..3 {
        phone.sign_message(&mut app, format!("m{i}").as_bytes(), SignMode::Canonical).await.unwrap();
    }
    let wrong = mcs_client::phone::Phone::unlock(phone.state.clone(), "999999").unwrap();
    assert!(wrong.sign_message(&mut app, b"x", SignMode::Canonical).await.is_err());

    // The exposition itself: every family is mcsd_*, with the families an operator needs.
    let (status, text) = daemon.health_get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "mcsd_api_requests_total",
        "mcsd_api_request_duration_seconds_bucket",
        "mcsd_cosign_operations_total",
        "mcsd_hsm_call_duration_seconds_bucket",
        "mcsd_hsm_sessions_in_use",
        "mcsd_pin_failures_total",
        "mcsd_plugin_calls_total",
        "mcsd_store_flush_duration_seconds_bucket",
        "mcsd_build_info",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    // Ours are mcsd_*; the process collector's are Prometheus's standard process_*.
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.starts_with("mcsd_") || l.starts_with("process_")),
        "{text}"
    );
    assert!(text.contains(r#"mcsd_cosign_operations_total{kind="sign",result="pin_incorrect"} 1"#), "{text}");

    // A real Prometheus, scraping every second.
    let port = free_port();
    let dir = env.path();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mcsd\n    static_configs:\n      - targets: ['{}']\n", daemon.health),
    )
    .unwrap();
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus (cargo xtask test installs it)");
    let addr = format!("127.0.0.1:{port}");
    let query = "/api/v1/query?query=sum(mcsd_cosign_operations_total%7Bkind%3D%22sign%22%2Cresult%3D%22ok%22%7D)";
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        if std::net::TcpStream::connect(&addr).is_ok() {
            let body = http_get(&addr, query);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
                && let Some(val) = v["data"]["result"][0]["value"][1].as_str()
            {
                break val.to_owned();
            }
        }
        assert!(Instant::now() < deadline, "Prometheus never returned the co-sign counter");
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = prom.kill();
    let _ = prom.wait();
    // Activation co-signs the CSR (1) and the phone signed 3 messages.
    assert_eq!(value.parse::<f64>().unwrap(), 4.0, "co-sign counter as Prometheus saw it");
}

/// The series of the API's request families (counter and histogram).
fn api_series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("mcsd_api_request"))
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect()
}

fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_paths_add_no_series_and_the_operator_gauges_exist() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut gw = connect(&env, &daemon, "gateway").await;
    // One of each kind first: an unknown path, a wrong method on a known one.
    let _ = gw.call(hyper::Method::GET, "/v1/junk", None).await.unwrap();
    let _ = gw.call(hyper::Method::POST, "/v1/junk", None).await.unwrap();
    let _ = gw.call(hyper::Method::PUT, "/v1/tasks", None).await.unwrap();
    let (_, before) = daemon.health_get("/metrics");
    let series = api_series(&before);
    // Every route template has its latency series before any request to it.
    assert!(series.iter().any(|s| s.contains(r#"route="/v1/keys/{id}/decrypt""#)), "{series:?}");
    for i in 0..20 {
        let junk = format!("/v1/keys/../{i}/%2e%2e/x{i}?q={i}");
        assert_eq!(gw.call(hyper::Method::GET, &junk, None).await.unwrap().status, 404);
        let _ = gw.call(hyper::Method::POST, &format!("/zz{i}/{}", "a/".repeat(i)), None).await.unwrap();
        let _ = gw.call(hyper::Method::PUT, "/v1/tasks", None).await.unwrap();
    }
    let (_, after) = daemon.health_get("/metrics");
    assert_eq!(api_series(&after), series, "40 junk requests added series");

    for (series, want) in [("mcsd_ready", 1.0), ("mcsd_hsm_up", 1.0), ("mcsd_callbacks_abandoned_total", 0.0)] {
        assert_eq!(value_of(&after, series), Some(want), "{series}:\n{after}");
    }
    let local = after.lines().find(|l| l.starts_with("mcsd_plugin_up{")).expect("mcsd_plugin_up");
    assert!(local.ends_with(" 1"), "{local}");
    let now = mcsd::clock::now() as f64;
    let api_end = value_of(&after, r#"mcsd_certificate_expiry_timestamp_seconds{cert="api"}"#).expect("api cert");
    assert!(api_end > now, "the API certificate ends in the future: {api_end}");
    assert!(after.contains(r#"mcsd_certificate_expiry_timestamp_seconds{cert="client_ca:"#), "{after}");
    let started = value_of(&after, "mcsd_start_time_seconds").unwrap();
    assert!(started <= now && started > now - 600.0, "{started}");
    for family in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "mcsd_build_info"]
    {
        assert!(after.contains(family), "{family} missing");
    }
}

/// The metric names an expression or panel query uses (`mcsd_*`, `process_*`), with the
/// histogram suffixes taken off.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in expr.match_indices("mcsd_").chain(expr.match_indices("process_")) {
        if at > 0 && expr.as_bytes()[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = expr[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        out.push(base.to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_alert_rules_and_dashboard_check_out() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let rules = root.join("contrib/prometheus/mcsd.rules.yml");
    let tests = root.join("contrib/prometheus/mcsd.rules.test.yml");
    for args in [vec!["check", "rules"], vec!["test", "rules"]] {
        let file = if args[0] == "check" { &rules } else { &tests };
        let out = std::process::Command::new("promtool")
            .args(&args)
            .arg(file)
            .output()
            .expect("promtool (cargo xtask test installs prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Every metric the rules and the dashboard use is one the daemon exports.
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    // A phone and its signature, so the request families have series.
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    phone.sign_message(&mut app, b"m", SignMode::Canonical).await.unwrap();
    let (_, text) = daemon.health_get("/metrics");
    let exported: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("contrib/grafana/mcsd.json")).unwrap()).unwrap();
    let mut used = metric_names(&rules_text);
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "a dashboard worth the name");
    let mut ids = std::collections::BTreeSet::new();
    for panel in panels {
        assert!(panel["title"].is_string() && panel["type"].is_string(), "{panel}");
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "duplicate panel id {panel}");
        if panel["type"] == "row" {
            continue;
        }
        let grid = &panel["gridPos"];
        assert!(["x", "y", "w", "h"].iter().all(|k| grid[k].is_u64()), "{panel}");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("no targets: {panel}"));
        assert!(!targets.is_empty());
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("no expr: {t}"));
            assert!(t["datasource"]["uid"] == "${datasource}", "{t}");
            used.extend(metric_names(expr));
        }
    }
    assert!(dashboard["uid"].is_string() && dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    assert!(
        dashboard["templating"]["list"].as_array().unwrap().iter().any(|v| v["name"] == "datasource"),
        "the datasource is a variable, so the dashboard imports anywhere"
    );
    for name in &used {
        assert!(exported.contains(name.as_str()), "{name} is used but not exported");
    }
    assert!(used.len() >= 10, "{used:?}");
}
