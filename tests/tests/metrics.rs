//! Metrics: a real Prometheus server scrapes `/metrics` on the health listener; after a few
//! co-signatures its query API returns the co-sign counter. Metric names follow the scheme.

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
    assert!(text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).all(|l| l.starts_with("mcsd_")), "{text}");
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
