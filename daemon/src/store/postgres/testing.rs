//! A throw-away PostgreSQL cluster for tests: Debian's binaries (`initdb`, `pg_ctl`,
//! `pg_isready`) make a cluster in a temporary directory that listens only on a Unix socket
//! in that directory, and [`Cluster`]'s drop stops it and removes it all.
//!
//! initdb refuses to run as root, so under root the directory is given to the `postgres`
//! user and the tools run through `runuser -u postgres --`. Authentication is `trust`: the
//! socket's directory is private to the cluster's owner (and root).
//!
//! [`Cluster::shared`] gives the tests running at the same time one cluster (the last one
//! to drop its handle stops it), and [`Cluster::fresh_database`] each test its own
//! database on it. `MCSD_PG_BIN` names the binaries' directory when it is not found.
//!
//! Failover tests make a streaming standby of a cluster of their own with
//! [`Cluster::standby_of`] (`pg_basebackup -R`, its own socket directory), turn on
//! synchronous replication with [`Cluster::replicate_synchronously`], crash the primary
//! with [`Cluster::kill`] and promote the standby with [`Cluster::promote`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{Client, Config, NoTls};

/// The port names the socket file only (`.s.PGSQL.5432` in the cluster's directory): no
/// TCP listener, so clusters of parallel test processes never collide.
const PORT: u16 = 5432;
/// `pg_isready` tries after `pg_ctl start -w` has returned (each waits up to 2 s).
const READY_TRIES: u32 = 30;

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    /// How long initdb + start + ready took.
    pub started_in: Duration,
    /// Set by [`Cluster::kill`]: drop has no server left to stop.
    killed: AtomicBool,
}

/// The directory of PostgreSQL's server binaries: `MCSD_PG_BIN`, the newest
/// `/usr/lib/postgresql/<major>/bin`, or where the `initdb` on PATH really is.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MCSD_PG_BIN") {
        return dir.into();
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("initdb"))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok());
    match on_path {
        Some(initdb) => initdb.parent().unwrap().to_path_buf(),
        None => panic!(
            "no PostgreSQL server binaries (initdb) in /usr/lib/postgresql/*/bin or on PATH: \
             install Debian's `postgresql` (cargo xtask test does) or set MCSD_PG_BIN"
        ),
    }
}

fn is_root() -> bool {
    // `id -u` rather than `libc::geteuid`, which would need `unsafe` here.
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cluster {
    /// A new cluster of its own, running and accepting connections.
    pub fn start() -> Cluster {
        let began = Instant::now();
        let mut cluster = Cluster::empty();
        let data = cluster.data();
        check(
            "initdb",
            cluster
                .tool("initdb")
                .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C", "--no-sync", "-D"])
                .arg(&data)
                .output(),
        );
        cluster.append_settings("the throw-away test cluster");
        cluster.launch();
        cluster.started_in = began.elapsed();
        cluster
    }

    /// A hot standby of `primary`, streaming from it over its socket (`pg_basebackup -R`
    /// writes `standby.signal` and `primary_conninfo`), running with a socket directory of
    /// its own. It is asynchronous until the primary's
    /// [`replicate_synchronously`](Cluster::replicate_synchronously).
    pub fn standby_of(primary: &Cluster) -> Cluster {
        let began = Instant::now();
        let mut standby = Cluster::empty();
        check(
            "pg_basebackup",
            standby
                .tool("pg_basebackup")
                .arg("-h")
                .arg(primary.socket_dir())
                .args([
                    "-p",
                    &PORT.to_string(),
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                    "-D",
                ])
                .arg(standby.data())
                .output(),
        );
        // The copied postgresql.conf names the primary's socket directory; a later line wins.
        standby.append_settings("this standby's own socket");
        standby.launch();
        standby.started_in = began.elapsed();
        standby
    }

    /// A private directory for a cluster (owned by `postgres` under root), nothing in it.
    fn empty() -> Cluster {
        let as_postgres = is_root();
        // Under root the `postgres` user must reach the directory: /tmp, not a TMPDIR that
        // may sit under a private home. Short, too: a socket path has at most 107 bytes.
        let dir = if as_postgres { tempfile::tempdir_in("/tmp") } else { tempfile::tempdir() }.unwrap();
        if as_postgres {
            check("chown postgres", Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).output());
        }
        Cluster { dir, bin: bin_dir(), as_postgres, started_in: Duration::ZERO, killed: AtomicBool::new(false) }
    }

    /// The settings every test cluster runs with: the socket in its own directory only.
    fn append_settings(&self, why: &str) {
        let settings = format!(
            "\n# {why}\nlisten_addresses = ''\nport = {PORT}\nunix_socket_directories = '{}'\n\
             max_connections = 200\nfsync = off\n",
            self.socket_dir().display()
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .unwrap();
    }

    /// Start the server and wait until it accepts connections.
    fn launch(&self) {
        // `-w`: pg_ctl waits (bounded by `-t`) until the postmaster says it is ready (a hot
        // standby: until it accepts read-only connections).
        self.pg_ctl(&["start"]);
    }

    /// `pg_ctl <action> -w` on this cluster's data (its log in `server.log`), then wait
    /// until it accepts connections.
    fn pg_ctl(&self, action: &[&str]) {
        check(
            &format!("pg_ctl {}", action[0]),
            self.tool("pg_ctl")
                .args(action)
                .args(["-w", "-t", "60", "-D"])
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .stdin(Stdio::null())
                .output(),
        );
        self.wait_ready();
    }

    /// Make every commit wait for a standby's flush (`synchronous_standby_names = '*'`,
    /// `synchronous_commit = on`), and return once a standby streams as `sync`: from then
    /// on an acknowledged commit survives the loss of this server.
    pub async fn replicate_synchronously(&self, within: Duration) {
        let admin = connect(&self.config("postgres")).await;
        // One statement each: a multi-statement string is one implicit transaction, which
        // ALTER SYSTEM refuses.
        for sql in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "ALTER SYSTEM SET synchronous_commit = 'on'",
            "SELECT pg_reload_conf()",
        ] {
            admin.batch_execute(sql).await.unwrap();
        }
        let deadline = Instant::now() + within;
        loop {
            let sync: i64 = admin
                .query_one("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'", &[])
                .await
                .unwrap()
                .get(0);
            if sync > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "no synchronous standby within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `pg_ctl stop -m immediate`: the server's processes quit at once, without a
    /// checkpoint, as in a crash.
    pub fn kill(&self) {
        check(
            "pg_ctl stop",
            self.tool("pg_ctl").args(["stop", "-w", "-m", "immediate", "-D"]).arg(self.data()).output(),
        );
        self.killed.store(true, Ordering::SeqCst);
    }

    /// Promote a standby to primary and wait until it accepts writes.
    pub fn promote(&self) {
        check(
            "pg_ctl promote",
            self.tool("pg_ctl").args(["promote", "-w", "-t", "60", "-D"]).arg(self.data()).output(),
        );
    }

    /// Serve TLS over TCP on `addr` (a loopback address of the test's own, port 5432) with
    /// this certificate and key, trusting every user there as on the socket; restarts the
    /// server (`listen_addresses` needs it).
    pub fn enable_tls(&self, addr: std::net::Ipv4Addr, cert_pem: &str, key_pem: &str) {
        let (cert, key) = (self.dir.path().join("server.crt"), self.dir.path().join("server.key"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if self.as_postgres {
            check("chown", Command::new("chown").args(["postgres:postgres"]).arg(&cert).arg(&key).output());
        }
        let settings = format!(
            "\nlisten_addresses = '{addr}'\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            cert.display(),
            key.display()
        );
        use std::io::Write;
        let append = |file: &str, text: &str| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(self.data().join(file))
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .unwrap()
        };
        append("postgresql.conf", &settings);
        append("pg_hba.conf", &format!("\nhostssl all all {addr}/32 trust\n"));
        self.pg_ctl(&["restart", "-m", "fast"]);
    }

    /// The cluster the tests running now share, started by the first of them.
    pub fn shared() -> Arc<Cluster> {
        static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(Cluster::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the server's socket is (`.s.PGSQL.5432`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// One of the cluster's tools, as its owner.
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    /// Polls `pg_isready` a bounded number of times (each try waits up to 2 s for an answer).
    fn wait_ready(&self) {
        let mut last = None;
        for _ in 0..READY_TRIES {
            let out = self
                .tool("pg_isready")
                .arg("-h")
                .arg(self.socket_dir())
                .args(["-p", &PORT.to_string(), "-t", "2", "-d", "postgres"])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            last = Some(out);
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        panic!("the test cluster never got ready: {last:?}\n{log}");
    }

    /// A connection configuration for `dbname` as the superuser, over the socket.
    pub fn config(&self, dbname: &str) -> Config {
        let mut config = Config::new();
        config.host_path(self.socket_dir()).port(PORT).user("postgres").dbname(dbname);
        config
    }

    /// A new empty database of its own on the cluster.
    pub async fn fresh_database(&self) -> Config {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let admin = connect(&self.config("postgres")).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        self.config(&name)
    }

    /// `dbname` on this cluster as a libpq key=value connection string (a daemon's
    /// `[store] url`).
    pub fn url(&self, dbname: &str) -> String {
        format!("host={} port={PORT} user=postgres dbname={dbname}", self.socket_dir().display())
    }
}

/// A client on `config`, its connection driven by a task of the current runtime.
pub async fn connect(config: &Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(async move {
        // The connection ends when the client is dropped or the server goes away.
        let _ = connection.await;
    });
    client
}

/// A pool of at most `size` connections on `config`.
pub fn pool(config: &Config, size: usize) -> Pool {
    let manager =
        Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(size).build().unwrap()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.killed.load(Ordering::SeqCst) {
            return;
        }
        // `immediate`: nothing here needs a clean shutdown; the directory goes next.
        let stopped = self.tool("pg_ctl").args(["stop", "-w", "-m", "immediate", "-D"]).arg(self.data()).output();
        if !stopped.as_ref().is_ok_and(|o| o.status.success()) && !std::thread::panicking() {
            panic!("pg_ctl stop: {stopped:?}");
        }
    }
}
