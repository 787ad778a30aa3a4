//! Callbacks and task quotas per platform (issue 11, defects 6 and 7): a platform whose
//! callback receivers hang does not delay another platform's callback; callback targets in
//! private ranges, off a platform's allow-list or malformed are refused at creation, and at
//! delivery when the platform's rules changed; a platform past its open-task quota gets
//! `429 rate_limited` with `Retry-After`, and nothing is created.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::Method;
use mcs_client::gateway;
use mcs_client::phone::ScanCode;
use mcs_client::transport::Error;
use mcs_e2e::*;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Far beyond any step here; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);

/// A black-holed callback receiver: a TCP listener that accepts and never answers. It
/// counts connections accepted, and connections the daemon closed (gave up on).
struct BlackHole {
    addr: SocketAddr,
    seen: watch::Receiver<(usize, usize)>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> BlackHole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = watch::channel((0, 0));
        let tx = Arc::new(tx);
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tx.send_modify(|(accepted, _)| *accepted += 1);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
                    tx.send_modify(|(_, closed)| *closed += 1);
                });
            }
        });
        BlackHole { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("https://{}/mcs/callback", self.addr)
    }

    fn closed(&self) -> usize {
        self.seen.borrow().1
    }

    async fn wait(&self, what: &str, done: impl Fn(&(usize, usize)) -> bool) {
        let mut seen = self.seen.clone();
        tokio::time::timeout(PATIENCE, seen.wait_for(done))
            .await
            .unwrap_or_else(|_| panic!("{what}: {:?}", *self.seen.borrow()))
            .unwrap();
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn create(
    gw: &mut mcs_client::Connection,
    message: &[u8],
    callback: Option<&str>,
) -> mcs_client::transport::Result<ScanCode> {
    let created =
        gateway::create_task(gw, "sign", "callbacks", json!({"message": B64.encode(message)}), Some(600), callback)
            .await?;
    Ok(ScanCode::parse(created["qr"].as_str().unwrap()).unwrap())
}

/// The phone refuses the task: a final state in one request, which queues its callback.
async fn reject(app: &mut mcs_client::Connection, code: &ScanCode) {
    let body = json!({"token": code.token, "reason": "not me"});
    app.json(Method::POST, &format!("/v1/tasks/{}/reject", code.task_id), Some(&body)).await.unwrap();
}

fn api_error(e: Error) -> mcs_client::transport::ApiError {
    match e {
        Error::Api(e) => e,
        other => panic!("expected an API error, got {other}"),
    }
}

/// Replace a platform's table that `mcsd dev-init` wrote.
fn set_platform_rules(env: &DevEnv, platform: &str, rules: &str) {
    let table = format!("[tasks.platforms.\"{platform}\"]\n");
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    let at = cfg.find(&table).unwrap_or_else(|| panic!("no {table} in\n{cfg}"));
    let end = cfg[at + table.len()..].find("\n[").map_or(cfg.len(), |i| at + table.len() + i + 1);
    std::fs::write(env.config(), format!("{}{table}{rules}\n{}", &cfg[..at], &cfg[end..])).unwrap();
}

/// Poll the health listener until a metric reaches `value`.
async fn wait_for_metric(daemon: &Daemon, name: &str, value: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, text) = daemon.health_get("/metrics");
        let now = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if now >= value {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_platform_stalls_all_callbacks() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut gw1 = connect(&env, &daemon, "gateway").await; // P-DEV-1
    let mut gw2 = connect(&env, &daemon, "gateway2").await; // P-DEV-2
    let mut app = connect(&env, &daemon, "app1").await;
    let port = free_port();
    let receiver = CallbackReceiver::start(&env, port).await;

    // P-DEV-2's task is ready first, so that its callback takes one request to set off.
    let good =
        create(&mut gw2, b"platform two", Some(&format!("https://127.0.0.1:{port}/mcs/callback"))).await.unwrap();
    // P-DEV-1's three callbacks go to receivers that accept and never answer.
    let holes = [BlackHole::start().await, BlackHole::start().await, BlackHole::start().await];
    for hole in &holes {
        let code = create(&mut gw1, b"platform one", Some(&hole.url())).await.unwrap();
        reject(&mut app, &code).await;
    }
    // All three hang at once (a sequential worker would reach the third after two timeouts).
    for hole in &holes {
        hole.wait("a black-holed receiver was never connected to", |(accepted, _)| *accepted >= 1).await;
    }

    reject(&mut app, &good).await;
    let got = receiver.wait_for(1, PATIENCE).await;
    let given_up: usize = holes.iter().map(BlackHole::closed).sum();
    assert_eq!(given_up, 0, "P-DEV-2's callback waited until P-DEV-1's hanging deliveries timed out");
    assert_eq!(got[0]["task_id"], good.task_id.as_str());
    assert_eq!(got[0]["status"], "rejected");

    // The hanging deliveries are bounded: each is given up (and later retried).
    for hole in &holes {
        hole.wait("a hanging delivery was never given up", |(_, closed)| *closed >= 1).await;
    }
    wait_for_metric(&daemon, "mcsd_callback_retries_total", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_targets_in_private_ranges_are_refused() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut gw1 = connect(&env, &daemon, "gateway").await;

    // P-DEV-1 as dev-init configures it (private targets allowed, for the tests' receivers):
    // loopback is fine, a malformed host or a non-unicast address never is.
    create(&mut gw1, b"x", Some("https://127.0.0.1:9/cb")).await.unwrap();
    for url in
        ["https://a b/", "https://0.0.0.0/", "https://[ff02::1]/", "https://255.255.255.255/", "https://[::]:443/"]
    {
        let err = api_error(create(&mut gw1, b"x", Some(url)).await.unwrap_err());
        assert_eq!((err.status, err.code.as_str()), (400, "bad_request"), "{url}: {err}");
    }
    // A task whose callback is checked again at delivery, after the rules change below.
    let port = free_port();
    let receiver = CallbackReceiver::start(&env, port).await;
    let code = create(&mut gw1, b"x", Some(&format!("https://127.0.0.1:{port}/mcs/callback"))).await.unwrap();
    drop(gw1);
    let (status, _) = daemon.stop();
    assert!(status.success());

    // P-DEV-2 as production would have it: public targets only, and only its own hosts (an
    // address on the list is still judged by its range). P-DEV-1 loses its private targets.
    set_platform_rules(
        &env,
        "P-DEV-2",
        "callback_hosts = [\"gw.p2.example.cn\", \"*.cb.p2.example.cn\", \"127.0.0.1\"]",
    );
    set_platform_rules(&env, "P-DEV-1", "allow_private_callbacks = false");
    let daemon = Daemon::start(&env);
    let mut gw2 = connect(&env, &daemon, "gateway2").await;
    for (url, why) in [
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::1]:22/", "loopback"),
        ("https://a b/", "not allowed"),
        ("https://127.0.0.1:9443/mcs/callback", "loopback"),
        ("https://[::ffff:169.254.169.254]/", "IPv4-mapped"),
        ("https://[fd00::1]/", "unique local"),
        ("https://10.1.2.3/", "RFC 1918"),
        ("https://100.64.0.1/", "CGNAT"),
        ("https://localhost:8443/", "loopback"),
        ("https://evil.example.cn/cb", "allow-list"),
        ("https://gw.p2.example.cn.evil.cn/cb", "allow-list"),
        ("https://gw.p2.example.cn@169.254.169.254/", "user info"),
        ("https://0x7f.1/", "IPv4"),
        ("https://gw..p2.example.cn/", "empty label"),
        ("http://gw.p2.example.cn/", "https://"),
    ] {
        let err = api_error(create(&mut gw2, b"x", Some(url)).await.unwrap_err());
        assert_eq!((err.status, err.code.as_str()), (400, "bad_request"), "{url}: {err}");
        assert!(err.message.contains("callback_url") && err.message.contains(why), "{url}: {}", err.message);
    }
    for url in ["https://gw.p2.example.cn/mcs/callback", "https://a.cb.p2.example.cn:8443/cb?x=1"] {
        create(&mut gw2, b"x", Some(url)).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    // At delivery the platform's current rules decide: the task created while P-DEV-1
    // allowed loopback targets gets no callback now that it does not.
    let mut app = connect(&env, &daemon, "app1").await;
    reject(&mut app, &code).await;
    wait_for_metric(&daemon, "mcsd_callback_refusals_total", 1).await;
    let (_, log) = daemon.stop();
    assert!(log.contains("callback abandoned") && log.contains("private callback targets are not allowed"), "{log}");
    assert!(receiver.received.lock().unwrap().is_empty(), "a refused target was posted to");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_quota_is_429_with_retry_after_and_changes_nothing() {
    let env = DevEnv::new();
    env.append_config("\n[tasks]\nmax_open_tasks_per_platform = 3\nmax_open_bytes_per_platform = 65536\n");
    let daemon = Daemon::start(&env);
    let mut gw1 = connect(&env, &daemon, "gateway").await;
    let mut gw2 = connect(&env, &daemon, "gateway2").await;
    let mut app = connect(&env, &daemon, "app1").await;

    // P-DEV-1: three open tasks, then the count quota.
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(create(&mut gw1, format!("doc {i}").as_bytes(), None).await.unwrap());
    }
    let refused = |e: Error| {
        let e = api_error(e);
        assert_eq!((e.status, e.code.as_str()), (429, "rate_limited"), "{e}");
        let secs = e.retry_after.expect("Retry-After");
        // By the earliest expiry (ttl 600 s) plus one sweep (30 s), a slot is free.
        assert!((1..=630).contains(&secs), "Retry-After: {secs}");
        assert_eq!(e.extra["retry_after"], secs);
        e.message
    };
    let message = refused(create(&mut gw1, b"one more", None).await.unwrap_err());
    assert!(message.contains("P-DEV-1") && message.contains("3 open tasks"), "{message}");
    // Another platform is not affected by P-DEV-1's count; its bytes have their own quota.
    let big = vec![7u8; 40_000];
    create(&mut gw2, &big, None).await.unwrap();
    let message = refused(create(&mut gw2, &big, None).await.unwrap_err());
    assert!(message.contains("P-DEV-2") && message.contains("bytes"), "{message}");
    create(&mut gw2, b"small", None).await.unwrap();

    // A finished task gives its slot back: exactly one more fits, so the refused ones took none.
    reject(&mut app, &open[0]).await;
    create(&mut gw1, b"now it fits", None).await.unwrap();
    refused(create(&mut gw1, b"and no more", None).await.unwrap_err());

    // Nothing the quota refused is in the store.
    drop((gw1, gw2, app));
    let (status, log) = daemon.stop();
    assert!(status.success());
    assert!(log.contains("task refused by quota"), "{log}");
    let store: Box<dyn mcsd::store::Storage> = Box::new(mcsd::store::Store::open(&env.db()).unwrap());
    let mut per_platform = BTreeMap::new();
    for t in store.tasks().unwrap() {
        *per_platform.entry(t.platform).or_insert(0) += 1;
    }
    assert_eq!(per_platform, BTreeMap::from([("P-DEV-1".to_owned(), 4), ("P-DEV-2".to_owned(), 2)]));
    assert_eq!(store.open_usage("P-DEV-1").unwrap().tasks, 3);
}
