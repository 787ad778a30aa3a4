//! End-to-end harness: a dev environment in a temp dir and the real `mcsd` binary.
//!
//! `DevEnv` runs `mcsd dev-init` (SoftHSM token, KEK, PKI, config). `Daemon` starts
//! `mcsd run` on port 0 and waits for its `listening on` lines — no sleeps. Binaries are
//! taken from the same target directory as the test executable; `cargo xtask test` builds
//! them first.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use mcs_client::transport::Endpoint;

pub mod cluster;
pub mod ra;

/// `target/<profile>/<name>`, next to the test executable's `deps/` directory.
/// Every certificate of a PEM file.
pub fn pem_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().expect("PEM certificates")
}

/// The private key of a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn pem_key(pem: &[u8]) -> rustls::pki_types::PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).expect("a PEM private key")
}

pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    // Binaries are in target/<profile>/; a cdylib built by `cargo test` only in deps/.
    [dir.join(name), dir.join("deps").join(name)].into_iter().find(|p| p.exists()).unwrap_or_else(|| {
        panic!("{name} is missing in {}: run `cargo xtask test` (it builds the binaries first)", dir.display())
    })
}

/// The SoftHSM module used under the mock.
pub fn softhsm_module() -> PathBuf {
    mcsd::cli::dev_init::find_softhsm_module().expect("SoftHSM is not installed: apt-get install -y softhsm2")
}

/// A dev environment (token, KEK, PKI, config) in its own temp dir.
pub struct DevEnv {
    pub dir: tempfile::TempDir,
    /// Extra environment for the daemon (the mock's settings).
    pub daemon_env: Vec<(String, PathBuf)>,
    /// The store is on a tmpfs this environment mounted.
    tmpfs: bool,
}

impl Drop for DevEnv {
    fn drop(&mut self) {
        if self.tmpfs {
            let _ = Command::new("umount").arg("-l").arg(self.db()).status();
        }
    }
}

/// The PKI layout every `DevEnv` of this run uses: `MCS_E2E_LAYOUT=production` (one CA per
/// role, as in production; `cargo xtask test` runs the suite once more that way) or
/// `single` (one dev CA for every role, the default).
pub fn layout_of_this_run() -> &'static str {
    match std::env::var("MCS_E2E_LAYOUT").as_deref() {
        Ok("production") => "production",
        Ok("single") | Err(_) => "single",
        Ok(other) => panic!("MCS_E2E_LAYOUT must be single or production, not {other}"),
    }
}

impl DevEnv {
    pub fn new() -> DevEnv {
        Self::create(None, layout_of_this_run())
    }

    /// A dev environment in the production layout whatever this run's layout is.
    pub fn production() -> DevEnv {
        Self::create(None, "production")
    }

    /// A dev environment whose daemon talks to SoftHSM through `pkcs11-mock`; faults are
    /// injected by writing [`DevEnv::mock_control`].
    pub fn with_mock() -> DevEnv {
        Self::create(Some(bin("libpkcs11_mock.so")), layout_of_this_run())
    }

    /// A dev environment whose store lives on a tmpfs of `size` (e.g. `"24m"`), mounted
    /// before `dev-init` makes the store and unmounted on drop: for disk-full tests (root).
    pub fn with_store_on_tmpfs(size: &str) -> DevEnv {
        Self::create_with(None, layout_of_this_run(), Some(size))
    }

    fn create(module: Option<PathBuf>, layout: &str) -> DevEnv {
        Self::create_with(module, layout, None)
    }

    fn create_with(module: Option<PathBuf>, layout: &str, tmpfs: Option<&str>) -> DevEnv {
        let dir = tempfile::Builder::new().prefix("mcsd-e2e-").tempdir().expect("temp dir");
        if let Some(size) = tmpfs {
            let db = dir.path().join("db");
            std::fs::create_dir(&db).expect("db dir");
            let st = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
                .arg(&db)
                .status()
                .expect("mount");
            assert!(st.success(), "mounting a tmpfs needs root (CI runs as root)");
        }
        let mut daemon_env = Vec::new();
        if module.is_some() {
            daemon_env.push(("PKCS11_MOCK_MODULE".to_owned(), softhsm_module()));
            daemon_env.push(("PKCS11_MOCK_CONTROL".to_owned(), dir.path().join("mock-control")));
        }
        let mut cmd = Command::new(bin("mcsd"));
        cmd.args(["dev-init", "--layout", layout, "--dir"]).arg(dir.path());
        if let Some(m) = &module {
            cmd.arg("--module").arg(m);
        }
        cmd.envs(daemon_env.iter().map(|(k, v)| (k, v)));
        let out = cmd.output().expect("running mcsd dev-init");
        assert!(out.status.success(), "dev-init failed: {}", String::from_utf8_lossy(&out.stderr));
        DevEnv { dir, daemon_env, tmpfs: tmpfs.is_some() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pki(&self) -> PathBuf {
        self.path().join("pki")
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("mcsd.toml")
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("db")
    }

    pub fn mock_control(&self) -> PathBuf {
        self.path().join("mock-control")
    }

    /// Append TOML to the config (e.g. a `[keys]` section).
    pub fn append_config(&self, text: &str) {
        let mut cfg = std::fs::read_to_string(self.config()).expect("config");
        cfg.push_str(text);
        std::fs::write(self.config(), cfg).expect("config");
    }

    /// One more phone identity `who` in the PKI (`<who>.pem` / `<who>.key`, role `app`,
    /// issued by the CA that issues the phones in this layout): a device beyond `app1` and
    /// `app2`, e.g. a third phone for an outsider or a new phone.
    pub fn add_app_identity(&self, who: &str) {
        let pki = self.pki();
        let ca = if pki.join("phones-ca.key").exists() { "phones-ca" } else { "ca" };
        let (key, csr, cert, ext) = (
            pki.join(format!("{who}.key")),
            self.path().join(format!("{who}.csr")),
            pki.join(format!("{who}.pem")),
            self.path().join(format!("{who}.ext")),
        );
        std::fs::write(
            &ext,
            "subjectAltName=URI:urn:mcs:role:app\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n",
        )
        .unwrap();
        let subj = format!("/C=CN/O=mcsd development/CN={who}");
        let (ok, out) = openssl(&[
            "req".as_ref(),
            "-new".as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:P-256".as_ref(),
            "-nodes".as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-subj".as_ref(),
            subj.as_ref(),
            "-out".as_ref(),
            csr.as_os_str(),
        ]);
        assert!(ok, "{out}");
        let (ok, out) = openssl(&[
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
            "-CA".as_ref(),
            pki.join(format!("{ca}.pem")).as_os_str(),
            "-CAkey".as_ref(),
            pki.join(format!("{ca}.key")).as_os_str(),
            "-CAcreateserial".as_ref(),
            "-days".as_ref(),
            "30".as_ref(),
            "-extfile".as_ref(),
            ext.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ]);
        assert!(ok, "{out}");
    }

    /// An endpoint for a daemon, as PKI identity `who` (admin, gateway, app1, ...).
    pub fn endpoint(&self, daemon: &Daemon, who: &str) -> Endpoint {
        Endpoint {
            base_url: format!("https://{}", daemon.api),
            ca_file: self.pki().join("ca.pem"),
            cert_file: Some(self.pki().join(format!("{who}.pem"))),
            key_file: Some(self.pki().join(format!("{who}.key"))),
        }
    }
}

impl Default for DevEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// `cmd` (mcsd, or a wrapper ending in it) with `run --config` for `env`, its output piped.
fn spawn_run(mut cmd: Command, env: &DevEnv) -> Child {
    cmd.env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .envs(env.daemon_env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "info")
        .args(["run", "--config"])
        .arg(env.config())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning mcsd")
}

/// A running `mcsd run`.
pub struct Daemon {
    child: Option<Child>,
    pub api: SocketAddr,
    pub health: SocketAddr,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Daemon {
    pub fn start(env: &DevEnv) -> Daemon {
        Self::start_under(env, &[])
    }

    /// Start under a wrapper command, e.g. `["prlimit", "--nofile=400:400"]`.
    pub fn start_under(env: &DevEnv, wrapper: &[&str]) -> Daemon {
        let mcsd = bin("mcsd");
        let cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&mcsd);
                c
            }
            None => Command::new(&mcsd),
        };
        let mut child = spawn_run(cmd, env);
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut api, mut health) = (None, None);
        while api.is_none() || health.is_none() {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("listening on ") {
                        api = a.parse().ok();
                    } else if let Some(a) = line.strip_prefix("health listening on ") {
                        health = a.parse().ok();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    let log = stderr.join().unwrap_or_default();
                    panic!("mcsd did not start ({status:?}):\n{log}");
                }
            }
        }
        Daemon { child: Some(child), api: api.unwrap(), health: health.unwrap(), stderr: Some(stderr) }
    }

    /// Run `mcsd run` expecting it to refuse to start: returns its exit code and log. Panics
    /// if it starts listening instead.
    pub fn start_refused(env: &DevEnv) -> (Option<i32>, String) {
        let mut child = spawn_run(Command::new(bin("mcsd")), env);
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let log = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        // stdout ends when the process does; a `listening on` line means it started.
        let started = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.starts_with("listening on "));
        if started {
            let _ = child.kill();
        }
        let status = child.wait().expect("wait");
        let log = log.join().unwrap_or_default();
        assert!(!started, "mcsd started although it should have refused:\n{log}");
        (status.code(), log)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL: no drain, no final flush — what a crash looks like.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status and the daemon's log.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let status = c.wait().expect("wait");
        let log = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        (status, log)
    }

    /// The value of a metric on `/metrics` (the sum over its label sets), 0 if absent.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.health_get("/metrics");
        text.lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    /// GET a path on the health listener; returns (status, body).
    pub fn health_get(&self, path: &str) -> (u16, String) {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(self.health).expect("health connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run `openssl` with arguments; returns (success, stdout+stderr).
pub fn openssl(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().expect("openssl is installed");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Connect to the daemon as PKI identity `who`.
pub async fn connect(env: &DevEnv, daemon: &Daemon, who: &str) -> mcs_client::Connection {
    mcs_client::Connection::connect(&env.endpoint(daemon, who)).await.expect("connect")
}

/// An admin enrolls a person for `P-DEV-1`; returns (enrollment id, activation code).
pub async fn enroll(admin: &mut mcs_client::Connection, name: &str) -> (String, String) {
    enroll_for(admin, name, &["P-DEV-1"]).await
}

/// An admin enrolls a person for the given platforms.
pub async fn enroll_for(admin: &mut mcs_client::Connection, name: &str, platforms: &[&str]) -> (String, String) {
    enroll_for_days(admin, name, platforms, 365).await
}

/// [`enroll_for`] with a certificate of `validity_days`.
pub async fn enroll_for_days(
    admin: &mut mcs_client::Connection,
    name: &str,
    platforms: &[&str],
    validity_days: u32,
) -> (String, String) {
    use mcs_client::admin::{EnrollmentRequest, Subject, create_enrollment};
    let req = EnrollmentRequest {
        subject: Subject {
            kind: mcs_client::admin::SubjectKind::Person,
            name: name.into(),
            org_name: None,
            credit_code: None,
            id_number: None,
        },
        ca: "local".into(),
        profile: None,
        platforms: platforms.iter().map(|p| p.to_string()).collect(),
        validity_days,
    };
    let v = create_enrollment(admin, &req).await.expect("enrollment");
    (v["enrollment_id"].as_str().unwrap().to_owned(), v["activation_code"].as_str().unwrap().to_owned())
}

/// Enroll and activate a phone as identity `who` with `pin`.
pub async fn new_phone(
    env: &DevEnv,
    daemon: &Daemon,
    who: &str,
    pin: &str,
) -> (mcs_client::phone::Phone, mcs_client::Connection) {
    new_phone_on(env, daemon, who, pin, &["P-DEV-1"]).await
}

/// Enroll for `platforms` and activate a phone as identity `who`.
pub async fn new_phone_on(
    env: &DevEnv,
    daemon: &Daemon,
    who: &str,
    pin: &str,
    platforms: &[&str],
) -> (mcs_client::phone::Phone, mcs_client::Connection) {
    let mut admin = connect(env, daemon, "admin").await;
    let (id, code) = enroll_for(&mut admin, "Zhang San", platforms).await;
    let mut conn = connect(env, daemon, who).await;
    let phone = mcs_client::phone::Phone::activate(&mut conn, "test", &id, &code, pin).await.expect("activate");
    (phone, conn)
}

/// Check a DER signature over `msg` with OpenSSL, explicit SM2 ID.
pub fn openssl_verifies(dir: &Path, public: &sm2_2p::AffinePoint, msg: &[u8], sig_der: &[u8]) -> bool {
    let tag: u64 = rand_tag();
    let (key, m, s) =
        (dir.join(format!("pub-{tag}.pem")), dir.join(format!("msg-{tag}")), dir.join(format!("sig-{tag}")));
    std::fs::write(&key, mcs_client::phone::public_key_pem(public)).unwrap();
    std::fs::write(&m, msg).unwrap();
    std::fs::write(&s, sig_der).unwrap();
    let (ok, out) = openssl(&[
        "pkeyutl".as_ref(),
        "-verify".as_ref(),
        "-pubin".as_ref(),
        "-inkey".as_ref(),
        key.as_os_str(),
        "-rawin".as_ref(),
        "-in".as_ref(),
        m.as_os_str(),
        "-sigfile".as_ref(),
        s.as_os_str(),
        "-digest".as_ref(),
        "sm3".as_ref(),
        "-pkeyopt".as_ref(),
        "distid:1234567812345678".as_ref(),
    ]);
    ok && out.contains("Signature Verified Successfully")
}

fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A free TCP port on loopback (bound and released; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A gateway's callback endpoint: HTTPS with the gateway's certificate and a mandatory
/// client certificate from the dev CA (the daemon's), recording every JSON body POSTed.
pub struct CallbackReceiver {
    pub received: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    /// The bodies of the requests held unanswered (see [`CallbackReceiver::start_holding`]).
    pub held: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    /// Woken whenever a body arrives.
    arrived: std::sync::Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl CallbackReceiver {
    pub async fn start(env: &DevEnv, port: u16) -> CallbackReceiver {
        Self::start_holding(env, port, 0).await
    }

    /// A receiver that reads the first `hold` requests but never answers them (it keeps
    /// each connection open until the sender goes away): a sender stuck in a delivery.
    pub async fn start_holding(env: &DevEnv, port: u16, hold: usize) -> CallbackReceiver {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let pki = env.pki();
        let read = |name: &str| std::fs::read(pki.join(name)).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(&read("ca.pem")) {
            roots.add(c).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        // The gateway's own certificate: it chains to an API anchor in either PKI layout.
        let (certs, key) = (pem_certs(&read("gateway.pem")), pem_key(&read("gateway.key")));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let arrived = Arc::new(tokio::sync::Notify::new());
        let (sink, held_sink, ring) = (received.clone(), held.clone(), arrived.clone());
        let bodies = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, sink, ring) = (acceptor.clone(), sink.clone(), ring.clone());
                let (held_sink, bodies) = (held_sink.clone(), bodies.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let body = loop {
                        let Ok(n) = tls.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break buf[end + 4..end + 4 + len].to_vec();
                        }
                    };
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else { return };
                    if bodies.fetch_add(1, Ordering::SeqCst) < hold {
                        held_sink.lock().unwrap().push(v);
                        ring.notify_waiters();
                        // No answer: the connection stays until the sender closes it.
                        while matches!(tls.read(&mut chunk).await, Ok(n) if n > 0) {}
                        return;
                    }
                    sink.lock().unwrap().push(v);
                    ring.notify_waiters();
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        CallbackReceiver { received, held, arrived, task }
    }

    /// Wait until `n` bodies have arrived (panics after `within`); returns them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.received.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("{n} callbacks did not arrive within {within:?}; got {got:?}");
            }
        }
    }
}

impl Drop for CallbackReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A bare mutual-TLS stream to the API as identity `who`, with no HTTP on it: for tests
/// that play a slow or silent client.
pub async fn raw_tls(
    env: &DevEnv,
    daemon: &Daemon,
    who: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use std::sync::Arc;
    let pki = env.pki();
    let read = |name: &str| std::fs::read(pki.join(name)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&read("ca.pem")) {
        roots.add(c).unwrap();
    }
    let (certs, key) = (pem_certs(&read(&format!("{who}.pem"))), pem_key(&read(&format!("{who}.key"))));
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(daemon.api).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake")
}

/// Which of `needles` occur anywhere in the readable memory of process `pid` (as root,
/// through `/proc/<pid>/mem`): for tests that secrets do not linger.
pub fn memory_holds(pid: u32, needles: &[&[u8]]) -> Vec<bool> {
    use std::io::{Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("/proc/<pid>/mem (tests run as root)");
    let mut found = vec![false; needles.len()];
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else { continue };
        let path = parts.nth(3).unwrap_or("");
        if !perms.starts_with('r') || path.starts_with("[v") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        for (i, n) in needles.iter().enumerate() {
            if let Some(at) = memchr::memmem::find(&buf, n) {
                found[i] = true;
                if std::env::var_os("MCS_E2E_MEMDEBUG").is_some() {
                    let lo = at.saturating_sub(64);
                    eprintln!(
                        "needle {i} in {line} at +{at:#x}: {:?}",
                        String::from_utf8_lossy(&buf[lo..(at + n.len() + 64).min(buf.len())])
                    );
                }
            }
        }
    }
    found
}

/// The base64 the API speaks.
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The operator makes a company seal signed with `signer`'s key, valid a day.
pub async fn company_seal(admin: &mut mcs_client::Connection, signer: &str) -> serde_json::Value {
    let now = mcsd::clock::now();
    let rfc = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let seal = serde_json::json!({
        "kind": "official", "name": "Company seal", "owner": {},
        "image": { "type": "PNG", "data": B64.encode(mcs_pdfseal::image::demo_seal_png(96)), "width_mm": 40, "height_mm": 40 },
        "signer_key_ids": [signer], "valid_from": rfc(now - 60), "valid_to": rfc(now + 86_400),
    });
    admin.json(hyper::Method::POST, "/v1/seals", Some(&seal)).await.unwrap()
}

/// `phone` seals a one-page PDF with `seal_id` by QR scan; the sealed PDF.
pub async fn seal_one(env: &DevEnv, daemon: &Daemon, seal_id: &str, phone: &mcs_client::phone::Phone) -> Vec<u8> {
    let mut gw = connect(env, daemon, "gateway").await;
    let mut app = connect(env, daemon, "app1").await;
    let pdf = mcs_pdfseal::pdf::sample_document(1, false);
    let data = serde_json::json!({ "pdf": B64.encode(&pdf), "seal_id": seal_id, "placement": {"page": 1, "x": 300, "y": 300} });
    let created = mcs_client::gateway::create_task(&mut gw, "pdf_seal", "Seal", data, None, None).await.unwrap();
    let code = mcs_client::phone::ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    phone.scan(&mut app, &code).await.unwrap();
    let out = mcs_client::gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    B64.decode(out["result"]["pdf"].as_str().unwrap()).unwrap()
}

/// A gateway's signing task of `kind` scanned by `phone`; the OpenSSL check of its signature.
pub async fn signing_task(
    env: &DevEnv,
    gw: &mut mcs_client::Connection,
    phone: &mcs_client::phone::Phone,
    app: &mut mcs_client::Connection,
    kind: &str,
    data: &[u8],
) -> bool {
    let field = if kind == "login" { "challenge" } else { "message" };
    let created =
        mcs_client::gateway::create_task(gw, kind, "Bid", serde_json::json!({ field: B64.encode(data) }), None, None)
            .await
            .unwrap();
    let code = mcs_client::phone::ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    phone.scan(app, &code).await.unwrap();
    let out = mcs_client::gateway::result(gw, &code.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed", "{out}");
    if kind == "login" {
        assert_eq!(out["result"]["public_key"], phone.state.public_key);
    }
    let sig = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
    openssl_verifies(env.path(), phone.public_key(), data, &sig)
}

/// Every file under `dir`, recursively (the store's files, to search for secrets).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// How many files under `dir` hold `needle`.
pub fn files_holding(dir: &Path, needle: &[u8]) -> usize {
    walk(dir).iter().filter(|f| std::fs::read(f).unwrap().windows(needle.len()).any(|w| w == needle)).count()
}

/// A stored secret of `owner` (`--kind` label): the wrapped blob, or through the HSM the
/// plaintext (`wrapped = false`). The daemon must be stopped.
pub fn read_secret(env: &DevEnv, owner: &str, kind: &str, wrapped: bool) -> Vec<u8> {
    let mut cmd = Command::new(bin("read-share"));
    cmd.env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"));
    if wrapped {
        cmd.arg("--wrapped");
    }
    let out = cmd.args(["--kind", kind]).arg(env.config()).arg(owner).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

/// `openssl verify` (SM2 ID explicit) of the PEM certificate `leaf` under the PEM `ca`:
/// OpenSSL's success and output.
pub fn openssl_chain_verifies(ca: &Path, leaf: &Path) -> (bool, String) {
    let (ok, out) = openssl(&[
        "verify".as_ref(),
        "-vfyopt".as_ref(),
        "distid:1234567812345678".as_ref(),
        "-CAfile".as_ref(),
        ca.as_os_str(),
        leaf.as_os_str(),
    ]);
    (ok && out.contains(": OK"), out)
}
