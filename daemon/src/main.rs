//! The `mcsd` command: run the daemon, check a config, manage the HSM, make a dev setup.
//!
//! Exit codes (sysexits.h): 0 ok; 78 configuration error (EX_CONFIG; systemd's
//! `RestartPreventExitStatus=78` keeps a broken config from restart-looping); 65 the audit
//! chain cannot be verified from its last known checkpoint, or the store's audit key is
//! not the pinned one (not restarted either); 69 HSM unavailable or not set up; 71 cannot
//! bind; 74 store I/O error; 1 anything else (`mcsd audit verify`: the chain is broken).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcsd::config::Config;
use mcsd::store::Storage;

#[derive(Parser)]
#[command(
    name = "mcsd",
    version,
    about = "Mobile certificate signing daemon (server half of two-party SM2)",
    after_long_help = EPILOGUE.help()
)]
struct Cli {
    /// Read the HSM PIN from this file instead of the config's `hsm.pin_file` /
    /// `hsm.pin_credential` (from a shell there are no systemd credentials).
    #[arg(long, global = true, env = "MCSD_PIN_FILE", value_name = "PATH")]
    pin_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Shown by `--help` and as the man page's EXIT STATUS, ENVIRONMENT and FILES.
const EPILOGUE: mcs_clidoc::Epilogue = mcs_clidoc::Epilogue {
    exit_status: &[
        ("0", "success"),
        ("1", "failure (mcsd audit verify: the chain is broken)"),
        ("2", "usage error (an unknown command or option)"),
        (
            "65",
            "the audit chain cannot be verified from its last checkpoint, or the store's audit key is not the pinned one; not restarted (RestartPreventExitStatus)",
        ),
        ("69", "the HSM or the running daemon is unavailable, or the HSM is not set up"),
        ("71", "cannot bind a listener"),
        ("74", "store I/O error"),
        ("78", "configuration error; not restarted (RestartPreventExitStatus)"),
    ],
    environment: &[
        ("MCSD_CONFIG", "the configuration file (--config)"),
        ("MCSD_PIN_FILE", "the HSM PIN's file (--pin-file)"),
        ("CREDENTIALS_DIRECTORY", "where systemd put hsm.pin_credential"),
    ],
    files: &[
        ("/etc/mcsd/mcsd.toml", "the configuration"),
        ("/var/lib/mcsd/", "the store (sled)"),
        ("/var/log/mcsd/", "the exported audit checkpoints"),
        ("/run/mcsd/control.sock", "the control socket: drain, backup, KEK rotation, online audit verify"),
        ("/usr/lib/mcsd/plugins/", "the CA adapters"),
        ("/usr/share/doc/mcsd/", "operating.md; systemd drop-ins for HSMs in examples/"),
    ],
};

/// `--pin-file`, when given: every config this process loads takes its PIN from there.
static PIN_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Command {
    /// Serve the API and health listeners until SIGTERM.
    Run {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a config as `run` would use it: TLS material, PIN, HSM login and a test
    /// wrap, CA adapters, log filter, store or database. Exit 78 if anything fails.
    CheckConfig {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// `text` (one `[ ok ]`/`[warn]`/`[fail]` line per check) or `json`.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Skip the checks that need the HSM, the store or the database.
        #[arg(long)]
        offline: bool,
    },
    /// HSM administration.
    Hsm {
        #[command(subcommand)]
        command: HsmCommand,
    },
    /// Sign a PDF with an ECDSA P-256 key held natively in the HSM (interoperability check
    /// of the PDF engine with standard validators).
    Pdf {
        #[command(subcommand)]
        command: PdfCommand,
    },
    /// The time-stamp authority.
    Tsa {
        #[command(subcommand)]
        command: TsaCommand,
    },
    /// Take the running daemon out of its load balancer for a rolling restart: `/readyz`
    /// answers 503 `draining` while requests are still served. `--undo` ends it (so does
    /// the restart).
    Drain {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// Make the node ready again instead.
        #[arg(long)]
        undo: bool,
    },
    /// Write a consistent snapshot of the store to OUT (online through the running daemon's
    /// control socket, or directly when it is stopped).
    Backup {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// Where to write the snapshot (0600; an existing file is replaced).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Rebuild the store from a backup into the configured (empty) store path.
    Restore {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// The backup file (from `mcsd backup`).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Move a store between backends.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Create a development environment (SoftHSM token, KEK, PKI, config) in DIR.
    DevInit {
        /// The directory to create it in (made if absent).
        #[arg(long)]
        dir: PathBuf,
        /// PKCS#11 module to write into the config (default: SoftHSM's).
        #[arg(long)]
        module: Option<PathBuf>,
        /// `single`: one dev CA trusted for every role (certificates name their role).
        /// `production`: a separate CA per role — operators, platforms, phones — as
        /// `config/mcsd.toml` documents for production.
        #[arg(long, value_enum, default_value = "single")]
        layout: mcsd::cli::dev_init::Layout,
        /// Keep the state in this PostgreSQL database (a libpq connection string, key=value
        /// or URL form) instead of sled in DIR/db.
        #[arg(long)]
        store_url: Option<String>,
        /// With --store-url or --join: this node's id (default: the host name).
        #[arg(long)]
        node_id: Option<String>,
        /// Another node of the dev cluster FROM made with --store-url: a copy of its token,
        /// PKI and keys, its configuration with this node's id (needs --node-id).
        #[arg(long, conflicts_with_all = ["store_url", "module", "layout"], requires = "node_id")]
        join: Option<PathBuf>,
    },
    /// Write the man pages (section 8) and the bash, zsh and fish completions into DIR
    /// (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write them (`man/`, `completions/`).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy a stopped sled store (FROM's `[store] path`) into the empty PostgreSQL database
    /// of TO's `[store] url`, in one transaction; shares stay HSM-wrapped (the same HSM KEK
    /// must serve TO). The sled store's audit chain becomes TO's node's chain.
    Migrate {
        /// The configuration of the sled store (the daemon on it stopped).
        #[arg(long)]
        from: PathBuf,
        /// The configuration naming the PostgreSQL database (`backend = "postgres"`).
        #[arg(long)]
        to: PathBuf,
    },
}

#[derive(Subcommand)]
enum TsaCommand {
    /// Write a PKCS#10 request (PEM) for the P-256 TSA key `[tsa] p256_label` (made in the
    /// HSM if absent), for the operator's CA to certify with the critical timeStamping
    /// extended key usage; put the answer (and its chain) in `[tsa] p256_certificate_file`.
    Csr {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum HsmCommand {
    /// Create the KEK (AES-256, non-extractable, sensitive) if the token has none.
    Init {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Create a new KEK version and re-wrap every record under it, online; run again after
    /// an interruption to resume. Old versions stay usable until every record moved.
    RotateKek {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// Re-wrap at most this many records in this run.
        #[arg(long)]
        batch: Option<u64>,
    },
    /// Destroy the KEK versions older than the current one, once a rotation has moved every
    /// record off them: copies of erased secrets left in backups, WAL, standbys or dead
    /// rows cannot be opened after this. Run it on every HSM that holds the KEK.
    RetireKek {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the signed checkpoints; exit 1 naming the
    /// first entry that was changed, removed or moved, a head no signed checkpoint covers,
    /// a checkpoint that does not verify with the trusted audit key, or a rollback.
    ///
    /// Checkpoints are checked against the key in `--public-key`, else `[audit]
    /// public_key_file`, else the public half of the HSM-wrapped audit key — never the
    /// store's record alone.
    ///
    /// While a daemon holds a sled store, a snapshot is taken over its control socket (it is
    /// audited as a `backup`), restored into a private scratch directory beside the store
    /// and verified there; its entries after the last checkpoint are the live tail.
    Verify {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// Checkpoints exported earlier (JSON lines, as the daemon appends them to `[audit]
        /// checkpoint_file`) that the store must still contain: a store rolled back to an
        /// older copy, or rewritten, fails. Default: the configured checkpoint file, if any.
        #[arg(long, value_name = "FILE")]
        since_checkpoint: Option<PathBuf>,
        /// Accept entries after the last signed checkpoint: a daemon that was killed and
        /// has not been started since (at start it verifies and seals them).
        #[arg(long)]
        allow_unsealed_tail: bool,
        /// PEM public key to check the checkpoints with (overrides `[audit] public_key_file`).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// Write the audit public key (PEM) to pin it outside the store: to `--out`, else to
    /// `[audit] public_key_file`, else to stdout. Taken from the HSM-wrapped key (made if the
    /// store has none), through the running daemon or directly when it is stopped. A file
    /// that holds another key is not overwritten.
    ExportKey {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// Where to write it; `-` for stdout (e.g. run as the service user, redirect as root).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PdfCommand {
    /// Sign IN into OUT at page/x/y with the HSM's P-256 key: with a self-signed
    /// certificate, or with the chain a CA gave for it (`--chain`, from `mcsd pdf csr`);
    /// optionally time-stamped by the `[tsa]` P-256 key, with the chains and the CRLs given
    /// in the document's DSS, so it validates long-term, offline.
    SignP256 {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// The PDF to sign.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Where to write the signed PDF.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Write the signer's certificate (and its chain) here (PEM).
        #[arg(long)]
        cert_out: Option<PathBuf>,
        /// Token label of the key pair (made if absent).
        #[arg(long, default_value = PDF_P256_LABEL)]
        label: String,
        /// The page that shows the signature (1 = the first).
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Horizontal position of the signature's appearance, in PDF points from the left.
        #[arg(long, default_value_t = 300.0)]
        x: f64,
        /// Vertical position of the signature's appearance, in PDF points from the bottom.
        #[arg(long, default_value_t = 300.0)]
        y: f64,
        /// PEM: the key's certificate, then its issuers (else a self-signed certificate).
        #[arg(long, value_name = "FILE")]
        chain: Option<PathBuf>,
        /// A CRL (PEM or DER) for the DSS; repeat for several.
        #[arg(long = "crl", value_name = "FILE")]
        crls: Vec<PathBuf>,
        /// Time-stamp the signature with the `[tsa]` P-256 key (serials from the store: a
        /// sled store must not be held by a running daemon).
        #[arg(long)]
        timestamp: bool,
    },
    /// A PKCS#10 request (PEM) for the HSM's P-256 document-signing key, for a CA to
    /// certify (the answer goes to `sign-p256 --chain`).
    Csr {
        /// The configuration file.
        #[arg(long, env = "MCSD_CONFIG", default_value = "/etc/mcsd/mcsd.toml", value_name = "FILE")]
        config: PathBuf,
        /// Token label of the key pair (made if absent).
        #[arg(long, default_value = PDF_P256_LABEL)]
        label: String,
        /// Where to write it (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// The P-256 document-signing key's label on the token.
const PDF_P256_LABEL: &str = "mcsd-pdf-p256";

/// `mcsd tsa csr` / `mcsd pdf csr`: a request for the HSM's P-256 key `label`, to `out` or stdout.
fn p256_csr_command(cfg: &Config, command: &str, label: &str, common_name: &str, out: Option<PathBuf>) -> ExitCode {
    let run = || -> Result<String, String> {
        let hsm = mcsd::hsm::Hsm::connect(&cfg.hsm).map_err(|e| e.to_string())?;
        let csr = mcsd::cli::pdf_p256::p256_csr(&hsm, label, common_name)?;
        Ok(mcs_pdfseal::pem("CERTIFICATE REQUEST", &csr))
    };
    match (run(), out) {
        (Ok(pem), Some(path)) => match std::fs::write(&path, pem) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mcsd {command}: {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        (Ok(pem), None) => {
            print!("{pem}");
            ExitCode::SUCCESS
        }
        (Err(e), _) => {
            eprintln!("mcsd {command}: {e}");
            ExitCode::from(69)
        }
    }
}

/// Write `bytes` to `path` readable by its owner only (0600), replacing a file that was
/// there (its earlier mode too): a backup holds every wrapped secret and the audit chain.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// sysexits.h EX_CONFIG: the configuration is wrong.
const EX_CONFIG: u8 = 78;
/// sysexits.h EX_UNAVAILABLE: what the command needs (the HSM, the running daemon) is not there.
const EX_UNAVAILABLE: u8 = 69;

/// Send a command to the running daemon's control socket; `None` if no daemon listens.
fn control_call(
    cfg: &Config,
    command: &str,
) -> Option<Result<std::io::BufReader<std::os::unix::net::UnixStream>, String>> {
    use std::io::Write;
    let path = cfg.control.socket.clone();
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return None;
        }
        Err(e) => return Some(Err(format!("{}: {e}", path.display()))),
    };
    Some(
        stream
            .write_all(format!("{command}\n").as_bytes())
            .map(|_| std::io::BufReader::new(stream))
            .map_err(|e| e.to_string()),
    )
}

fn read_line(reader: &mut impl std::io::BufRead) -> Result<String, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Err("the daemon closed the control connection".into());
    }
    Ok(line.trim_end().to_owned())
}

fn read_ok_image(reader: &mut impl std::io::BufRead) -> Result<Vec<u8>, String> {
    let head = read_line(reader)?;
    let len: usize = head
        .strip_prefix("OK ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| head.trim_start_matches("ERR ").to_owned())?;
    let mut image = vec![0u8; len];
    reader.read_exact(&mut image).map_err(|e| e.to_string())?;
    Ok(image)
}

fn progress_bar(done: u64, total: u64) {
    let width = 30usize;
    let filled = if total == 0 { width } else { (done.min(total) as usize * width) / total as usize };
    eprint!("\rre-wrapping [{}{}] {done}/{total}", "#".repeat(filled), ".".repeat(width - filled));
}

fn follow_rotation(mut reader: impl std::io::BufRead) -> Result<String, String> {
    loop {
        let line = read_line(&mut reader)?;
        if let Some(p) = line.strip_prefix("progress ") {
            let (d, t) = p.split_once('/').unwrap_or(("0", "0"));
            progress_bar(d.parse().unwrap_or(0), t.parse().unwrap_or(0));
        } else if let Some(ok) = line.strip_prefix("OK ") {
            return Ok(ok.to_owned());
        } else {
            return Err(line.trim_start_matches("ERR ").to_owned());
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    let mut cfg = Config::load(path).map_err(|e| {
        eprintln!("mcsd: configuration error: {e}");
        ExitCode::from(EX_CONFIG)
    })?;
    if let Some(pin_file) = PIN_FILE.get() {
        cfg.hsm.pin = mcsd::config::PinSource::File(pin_file.clone());
    }
    Ok(cfg)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

/// `mcsd check-config`: the preflight report; 78 if the config does not load or any
/// check fails.
fn check_config(path: &std::path::Path, format: ReportFormat, offline: bool) -> ExitCode {
    use mcsd::server::preflight::{self, Check, Status};
    let checks = match Config::load(path) {
        Ok(mut cfg) => {
            if let Some(pin_file) = PIN_FILE.get() {
                cfg.hsm.pin = mcsd::config::PinSource::File(pin_file.clone());
            }
            preflight::run(&cfg, path, offline)
        }
        Err(e) => vec![Check {
            status: Status::Fail,
            check: "config",
            setting: path.display().to_string(),
            message: e.to_string(),
        }],
    };
    match format {
        ReportFormat::Text => checks.iter().for_each(|c| println!("{}", c.line())),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": !preflight::failed(&checks), "checks": checks }))
                .unwrap_or_default()
        ),
    }
    if preflight::failed(&checks) { ExitCode::from(EX_CONFIG) } else { ExitCode::SUCCESS }
}

/// Logging as `[log]` says; a filter that does not parse is a configuration error.
fn init_logging(cfg: &Config) -> Result<(), ExitCode> {
    match mcsd::server::logging::filter(&cfg.log.level) {
        Ok(filter) => {
            mcsd::server::logging::init(cfg.log.format, filter);
            Ok(())
        }
        Err(e) => {
            eprintln!("mcsd: {e}");
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

/// `mcsd generate-assets`: `mcsd(8)` and a page per subcommand (`mcsd-check-config(8)`, …)
/// in `DIR/man`, completions in `DIR/completions`.
fn generate_assets(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    mcs_clidoc::generate(Cli::command(), "8", &EPILOGUE, dir)
}

/// Freed memory is wiped: see `mcsd::os::WipingAllocator`.
#[global_allocator]
static ALLOCATOR: mcsd::os::WipingAllocator = mcsd::os::WipingAllocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(p) = &cli.pin_file {
        let _ = PIN_FILE.set(p.clone());
    }
    // Whatever the caller's umask: the store, the vault, backups and sockets are private.
    mcsd::os::private_files();
    match cli.command {
        Command::Run { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(code) = init_logging(&cfg) {
                return code;
            }
            if let Err(e) = mcsd::os::no_core_dumps() {
                tracing::warn!(error = %e, "could not disable core dumps");
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("mcsd: starting runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let outcome = runtime.block_on(mcsd::server::run(cfg, Some(config.clone())));
            // A hung CA adapter keeps a blocking thread forever; do not wait for it at exit.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mcsd: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
        Command::GenerateAssets { dir } => match generate_assets(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mcsd generate-assets: {}: {e}", dir.display());
                ExitCode::from(74)
            }
        },
        Command::CheckConfig { config, format, offline } => check_config(&config, format, offline),
        Command::Hsm { command: HsmCommand::Init { config } } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match mcsd::hsm::Hsm::init_kek(&cfg.hsm) {
                Ok((version, true)) => {
                    println!("created KEK `{}` version {version}", cfg.hsm.kek_label);
                    ExitCode::SUCCESS
                }
                Ok((version, false)) => {
                    println!("KEK `{}` version {version} already present", cfg.hsm.kek_label);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mcsd: {e}");
                    ExitCode::from(69)
                }
            }
        }
        Command::Drain { config, undo } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let answer = match control_call(&cfg, if undo { "undrain" } else { "drain" }) {
                Some(Ok(mut reader)) => read_line(&mut reader),
                Some(Err(e)) => Err(e),
                None => Err("no running daemon answers on the control socket".into()),
            };
            match answer {
                Ok(line) if line.starts_with("OK ") => {
                    println!("{}", &line[3..]);
                    ExitCode::SUCCESS
                }
                Ok(line) => {
                    eprintln!("mcsd drain: {}", line.trim_start_matches("ERR "));
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("mcsd drain: {e}");
                    ExitCode::from(EX_UNAVAILABLE)
                }
            }
        }
        Command::Backup { config, out } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let image = match control_call(&cfg, "backup") {
                Some(Ok(mut reader)) => read_ok_image(&mut reader),
                Some(Err(e)) => Err(e),
                None => mcsd::store::open_tool(&cfg.store).and_then(|s| s.snapshot()).map_err(|e| e.to_string()),
            };
            match image.and_then(|img| {
                write_private(&out, &img).map(|_| img.len()).map_err(|e| format!("{}: {e}", out.display()))
            }) {
                Ok(n) => {
                    println!("backup of {} written to {} ({n} bytes)", cfg.store.path.display(), out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mcsd backup: {e}");
                    ExitCode::from(74)
                }
            }
        }
        Command::Restore { config, from } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let restored = std::fs::read(&from)
                .map_err(|e| format!("{}: {e}", from.display()))
                .and_then(|img| mcsd::store::restore(&cfg.store, &img).map_err(|e| e.to_string()));
            match restored {
                Ok(n) => {
                    println!("restored {n} records into {}", cfg.store.path.display());
                    // A restore takes the store back on purpose: say so where checkpoints
                    // are exported, or the next start reports a rollback.
                    if let Some(file) = &cfg.audit.checkpoint_file {
                        let recorded = reopen_store(&cfg)
                            .map_err(|e| e.to_string())
                            .and_then(|store| mcsd::audit::record_restore(file, &*store, &from));
                        match recorded {
                            Ok(m) => println!(
                                "recorded the restore in {}; the daemon verifies the restored audit chain from {}",
                                file.display(),
                                m.seq.map_or("entry 0".to_owned(), |s| format!("its checkpoint at entry {s}"))
                            ),
                            Err(e) => {
                                eprintln!("mcsd restore: recording the restore in {}: {e}", file.display());
                                return ExitCode::from(74);
                            }
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mcsd restore: {e}");
                    ExitCode::from(74)
                }
            }
        }
        Command::Hsm { command: HsmCommand::RetireKek { config } } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            // Through the running daemon when there is one (its HSM session sees the change).
            let retired = match control_call(&cfg, "retire-kek") {
                Some(Ok(mut reader)) => {
                    read_ok_image(&mut reader).and_then(|b| String::from_utf8(b).map_err(|e| e.to_string()))
                }
                Some(Err(e)) => Err(e),
                None => mcsd::store::open_tool(&cfg.store).map_err(|e| format!("store: {e}")).and_then(|store| {
                    let hsm = mcsd::hsm::Hsm::connect(&cfg.hsm).map_err(|e| e.to_string())?;
                    Ok(mcsd::keys::kek_rotation::retire(&*store, &hsm)?.to_string())
                }),
            };
            match retired {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mcsd hsm retire-kek: {e}");
                    ExitCode::from(74)
                }
            }
        }
        Command::Hsm { command: HsmCommand::RotateKek { config, batch } } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let command = match batch {
                Some(b) => format!("rotate-kek {b}"),
                None => "rotate-kek".to_owned(),
            };
            let outcome = match control_call(&cfg, &command) {
                Some(Ok(reader)) => follow_rotation(reader),
                Some(Err(e)) => Err(e),
                None => (|| {
                    let store = mcsd::store::open_tool(&cfg.store).map_err(|e| e.to_string())?;
                    let hsm = mcsd::hsm::Hsm::connect(&cfg.hsm).map_err(|e| e.to_string())?;
                    let r = mcsd::keys::kek_rotation::rotate(&*store, &hsm, batch, progress_bar)
                        .map_err(|e| e.to_string())?;
                    Ok(format!(
                        "version={} created={} rewrapped={} remaining={}",
                        r.version, r.created_version, r.rewrapped, r.remaining
                    ))
                })(),
            };
            match outcome {
                Ok(summary) => {
                    eprintln!();
                    println!("KEK rotation: {summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("\nmcsd hsm rotate-kek: {e}");
                    ExitCode::from(69)
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { config, since_checkpoint, allow_unsealed_tail, public_key },
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            audit_verify(&cfg, since_checkpoint, allow_unsealed_tail, public_key)
        }
        Command::Store { command: StoreCommand::Migrate { from, to } } => store_migrate(&from, &to),
        Command::Audit { command: AuditCommand::ExportKey { config, out } } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            audit_export_key(&cfg, out)
        }
        Command::Tsa { command: TsaCommand::Csr { config, out } } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let label = cfg.tsa.as_ref().map_or_else(|| "mcsd-tsa".to_owned(), |t| t.p256_label.clone());
            p256_csr_command(&cfg, "tsa csr", &label, "mcsd Time-Stamping Authority", out)
        }
        Command::Pdf { command: PdfCommand::Csr { config, label, out } } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            p256_csr_command(&cfg, "pdf csr", &label, "mcsd P-256 document signer", out)
        }
        Command::Pdf {
            command: PdfCommand::SignP256 { config, input, out, cert_out, label, page, x, y, chain, crls, timestamp },
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let placement = mcs_pdfseal::pdf::Placement::At { page, x, y };
            let cmd =
                mcsd::cli::pdf_p256::SignCommand { input, out, cert_out, label, placement, chain, crls, timestamp };
            match mcsd::cli::pdf_p256::sign_command(&cfg, &cmd) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mcsd pdf sign-p256: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::DevInit { dir, module, layout, store_url, node_id, join } => {
            let done = match (join, store_url) {
                (Some(from), _) => mcsd::cli::dev_init::dev_join(&dir, &from, node_id.as_deref().unwrap_or_default()),
                (None, Some(url)) => mcsd::cli::dev_init::dev_init(
                    &dir,
                    module.as_deref(),
                    layout,
                    &mcsd::cli::dev_init::DevStore::Postgres { url, node_id },
                ),
                (None, None) if node_id.is_some() => {
                    eprintln!("mcsd dev-init: --node-id goes with --store-url or --join");
                    return ExitCode::from(2);
                }
                (None, None) => {
                    mcsd::cli::dev_init::dev_init(&dir, module.as_deref(), layout, &mcsd::cli::dev_init::DevStore::Sled)
                }
            };
            match done {
                Ok(()) => {
                    println!("dev environment ready in {}", dir.display());
                    println!(
                        "run: SOFTHSM2_CONF={}/softhsm2.conf mcsd run --config {}/mcsd.toml",
                        dir.display(),
                        dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mcsd dev-init: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn store_migrate(from: &std::path::Path, to: &std::path::Path) -> ExitCode {
    let (source, target) = match (load(from), load(to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let (mcsd::config::Backend::Sled, Some(pg)) = (source.store.backend, target.store.postgres.as_ref()) else {
        eprintln!(
            "mcsd store migrate: --from must name a sled store and --to a PostgreSQL one (backend = \"postgres\")"
        );
        return ExitCode::from(EX_CONFIG);
    };
    let copied = mcsd::store::Store::open(&source.store.path)
        .map_err(|e| format!("{}: {e} (is a daemon still running on it?)", source.store.path.display()))
        .and_then(|sled| {
            let options = mcsd::store::postgres_options(pg).map_err(|e| e.to_string())?;
            let pg = mcsd::store::PgStore::open(mcsd::store::PgOptions { lock_node: false, ..options })
                .map_err(|e| format!("the target database: {e}"))?;
            pg.copy_from_sled(&sled).map_err(|e| e.to_string())
        });
    match copied {
        Ok(n) => {
            println!("copied into PostgreSQL (node {}): {n}", pg.node_id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcsd store migrate: {e}");
            ExitCode::from(74)
        }
    }
}

/// The configured store again, right after this process closed it (sled waits for its lock).
fn reopen_store(cfg: &Config) -> Result<std::sync::Arc<dyn Storage>, mcsd::store::StoreError> {
    match cfg.store.backend {
        mcsd::config::Backend::Sled => Ok(std::sync::Arc::new(mcsd::store::Store::reopen(&cfg.store.path)?)),
        mcsd::config::Backend::Postgres => mcsd::store::open_tool(&cfg.store),
    }
}

fn audit_verify(
    cfg: &Config,
    since: Option<PathBuf>,
    allow_unsealed_tail: bool,
    public_key: Option<PathBuf>,
) -> ExitCode {
    use mcsd::audit::{TrustedKey, VerifyOptions};
    let target = match store_to_verify(cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mcsd audit verify: store: {e}");
            return ExitCode::from(74);
        }
    };
    let store = target.store.clone();
    // A running daemon's newest entries follow its last checkpoint until it seals them.
    let allow_unsealed_tail = allow_unsealed_tail || target.scratch.is_some();
    let broken = |why: String| {
        println!("audit chain BROKEN: {why}");
        ExitCode::FAILURE
    };
    let key = match public_key.as_ref().or(cfg.audit.public_key_file.as_ref()) {
        Some(path) => match TrustedKey::pinned(path) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("mcsd audit verify: audit public key: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        },
        None => {
            let held = mcsd::hsm::Hsm::connect(&cfg.hsm).map_err(|e| e.to_string()).map(|hsm| {
                mcsd::audit::hsm_held_key(&mcsd::daemon_keys::DaemonKeys::new(
                    store.clone(),
                    std::sync::Arc::new(hsm),
                    mcsd::clock::system(),
                ))
            });
            match held {
                Ok(Ok(k)) => k,
                Ok(Err(mcsd::daemon_keys::DaemonKeyError::Mismatch(_))) => {
                    return broken("the store's record of the audit public key is not that of its HSM-wrapped private key: it was replaced".into());
                }
                Ok(Err(e)) => {
                    eprintln!(
                        "mcsd audit verify: warning: the HSM-wrapped audit key is unusable ({e}); set [audit] public_key_file"
                    );
                    None
                }
                Err(e) => {
                    eprintln!(
                        "mcsd audit verify: warning: no [audit] public_key_file and the HSM is not reachable ({e}): checkpoints cannot be checked"
                    );
                    None
                }
            }
        }
    };
    if let Some(k) = &key {
        let record = store.daemon_key(mcsd::audit::AUDIT_KEY).ok().flatten().map(|(r, _)| r.public_key);
        if record.as_deref().is_some_and(|r| r != sm2_2p::point_to_hex(&k.point)) {
            return broken(format!("the store's audit key is not the one {}: it was replaced", k.source));
        }
    }
    if since.is_none()
        && let Some(file) = cfg.audit.checkpoint_file.as_ref().filter(|f| !f.exists())
    {
        eprintln!(
            "mcsd audit verify: warning: [audit] checkpoint_file {} does not exist: no exported checkpoints to check against",
            file.display()
        );
    }
    let since = since.or_else(|| mcsd::audit::configured_checkpoint_file(&cfg.audit));
    let exported = match &since {
        Some(file) if !file.exists() => {
            eprintln!("mcsd audit verify: {}: no such file", file.display());
            return ExitCode::from(EX_CONFIG);
        }
        Some(file) => match mcsd::audit::read_exported(file) {
            Ok(lines) => Some(lines),
            Err(e) => return broken(e),
        },
        None => None,
    };
    let chains = match store.audit_chains() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcsd audit verify: store: {e}");
            return ExitCode::from(74);
        }
    };
    if !chains.is_empty() {
        return audit_verify_nodes(cfg, &chains, key.as_ref(), allow_unsealed_tail, exported.as_deref());
    }
    let opts = VerifyOptions { key: key.as_ref(), allow_unsealed_tail, exported: exported.as_deref() };
    match mcsd::audit::verify(&*store, &opts) {
        Ok(v) => {
            let source = key.as_ref().map_or("none".to_owned(), |k| k.source.clone());
            println!(
                "audit chain intact: {} entries, {} signed checkpoints (audit key {source})",
                v.entries, v.checkpoints
            );
            if v.unsealed > 0 {
                println!(
                    "note: the last {} entries follow the last signed checkpoint (accepted by --allow-unsealed-tail; the daemon seals them at its next start)",
                    v.unsealed
                );
            }
            if let Some(file) = &since {
                println!(
                    "exported checkpoints: all {} in {} are in the store (no rollback)",
                    v.exported_checked,
                    file.display()
                );
                if v.exported_before_restore > 0 {
                    println!(
                        "note: {} exported checkpoints precede a restore recorded in that file and were not checked",
                        v.exported_before_restore
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(why) => broken(why),
    }
}

/// The store `mcsd audit verify` reads, and the scratch copy it lives in when it is a
/// snapshot of a running daemon's store.
struct VerifyTarget {
    store: std::sync::Arc<dyn Storage>,
    scratch: Option<Scratch>,
}

/// A private directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configured store opened directly (stopped daemon, or PostgreSQL, which needs no
/// lock), or else, when a daemon holds it, a consistent snapshot of it taken over the
/// control socket (the daemon audits it as a `backup`) and restored into a 0700 scratch
/// directory beside the store, removed afterwards.
fn store_to_verify(cfg: &Config) -> Result<VerifyTarget, String> {
    let refused = match mcsd::store::open_tool(&cfg.store) {
        Ok(store) => return Ok(VerifyTarget { store, scratch: None }),
        Err(e) => e.to_string(),
    };
    let image = match control_call(cfg, "backup") {
        None => return Err(format!("{refused} (no running daemon answers on the control socket)")),
        Some(Err(e)) => return Err(format!("{refused}; control socket: {e}")),
        Some(Ok(mut reader)) => {
            read_ok_image(&mut reader).map_err(|e| format!("snapshot of the running store: {e}"))?
        }
    };
    let dir = cfg.store.path.with_file_name(format!(".mcsd-verify-{}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let scratch = Scratch(dir);
    let copy = mcsd::config::StoreConfig { path: scratch.0.join("store"), ..cfg.store.clone() };
    mcsd::store::restore(&copy, &image).map_err(|e| format!("restoring the snapshot: {e}"))?;
    let store = mcsd::store::open_tool(&copy).map_err(|e| format!("opening the snapshot: {e}"))?;
    println!("verifying a snapshot of the running daemon's store ({} bytes, taken just now)", image.len());
    Ok(VerifyTarget { store, scratch: Some(scratch) })
}

/// `mcsd audit verify` on a store several nodes share: every node's chain on its own, with
/// the same key. A running node's entries after its last checkpoint are its live tail; a
/// stopped node's must be sealed (as on sled) unless `--allow-unsealed-tail`. This node's
/// exported checkpoints are checked against this node's chain.
fn audit_verify_nodes(
    cfg: &Config,
    chains: &[mcsd::store::AuditChain],
    key: Option<&mcsd::audit::TrustedKey>,
    allow_unsealed_tail: bool,
    exported: Option<&[mcsd::audit::ExportedLine]>,
) -> ExitCode {
    let this_node = cfg.store.postgres.as_ref().map(|p| p.node_id.as_str());
    let (mut entries, mut checkpoints, mut broken) = (0, 0, 0);
    for chain in chains {
        let opts = mcsd::audit::VerifyOptions {
            key,
            allow_unsealed_tail: allow_unsealed_tail || chain.running,
            exported: exported.filter(|_| Some(chain.node.as_str()) == this_node),
        };
        let state = if chain.running { "running" } else { "stopped" };
        match mcsd::audit::verify(&*chain.store, &opts) {
            Ok(v) => {
                entries += v.entries;
                checkpoints += v.checkpoints;
                println!(
                    "node {} ({state}): intact, {} entries, {} signed checkpoints{}",
                    chain.node,
                    v.entries,
                    v.checkpoints,
                    match v.unsealed {
                        0 => String::new(),
                        n => format!(", {n} entries after the last checkpoint"),
                    }
                );
            }
            Err(why) => {
                broken += 1;
                println!("node {} ({state}): audit chain BROKEN: {why}", chain.node);
            }
        }
    }
    let source = key.map_or("none".to_owned(), |k| k.source.clone());
    if broken > 0 {
        println!("audit chains BROKEN: {broken} of {} nodes' chains (audit key {source})", chains.len());
        return ExitCode::FAILURE;
    }
    println!(
        "audit chains intact: {} nodes, {entries} entries, {checkpoints} signed checkpoints (audit key {source})",
        chains.len()
    );
    ExitCode::SUCCESS
}

fn audit_export_key(cfg: &Config, out: Option<PathBuf>) -> ExitCode {
    let pem = match control_call(cfg, "audit-key") {
        Some(Ok(mut reader)) => {
            read_ok_image(&mut reader).and_then(|b| String::from_utf8(b).map_err(|e| e.to_string()))
        }
        Some(Err(e)) => Err(e),
        None => (|| {
            let store = mcsd::store::open_tool(&cfg.store).map_err(|e| format!("store: {e}"))?;
            let hsm = std::sync::Arc::new(mcsd::hsm::Hsm::connect(&cfg.hsm).map_err(|e| e.to_string())?);
            mcsd::audit::public_key_pem(&mcsd::daemon_keys::DaemonKeys::new(store, hsm, mcsd::clock::system()))
        })(),
    };
    let pem = match pem {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mcsd audit export-key: {e}");
            return ExitCode::from(69);
        }
    };
    let path = match out.or_else(|| cfg.audit.public_key_file.clone()) {
        Some(p) if p.as_os_str() != "-" => p,
        _ => {
            print!("{pem}");
            return ExitCode::SUCCESS;
        }
    };
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == pem => {
            println!("{} already pins this store's audit key", path.display());
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!(
                "mcsd audit export-key: {} holds another key; not overwritten (remove it only if the store's audit key really changed)",
                path.display()
            );
            ExitCode::FAILURE
        }
        Err(_) => match std::fs::write(&path, &pem) {
            Ok(()) => {
                println!("audit public key written to {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcsd audit export-key: {}: {e}", path.display());
                ExitCode::from(74)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and argument of every subcommand says what it is (`--help`, the man pages).
    #[test]
    fn every_argument_has_help() {
        let missing = mcs_clidoc::undocumented_arguments(super::Cli::command());
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
