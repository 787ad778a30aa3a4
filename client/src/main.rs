//! `mcs`: the reference client on the command line — a phone, a gateway or an operator.
//!
//! Exit codes: 0 ok, 1 the server or the operation failed (`error: <code>: <message>` on
//! stderr), 2 usage (a bad option, or an argument or file the command cannot use). Answers
//! are printed as JSON (`--output json`, the default) or as a table (`--output table`).

use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mcs_api::{
    CreateTaskKind, DecryptData, DelegationApproval, DelegationStatus, EncryptData, LoginData, PdfSealData, PdfVerdict,
    RejectRequest, SealImage, SealRequest, SealVerdict, SignData, TaskData, TaskOutcome, TaskResult, TaskView,
    TaskViewData,
};
use mcs_client::admin::{self, EnrollmentRequest, Subject, SubjectKind};
use mcs_client::delegation::{DelegationOptions, PendingDelegation};
use mcs_client::gateway;
use mcs_client::output::Output;
use mcs_client::phone::{Phone, PhoneState, ScanCode, SignMode, fetch_task, public_key_pem};
use mcs_client::transport::parse;
use mcs_client::{Connection, Endpoint, Error};

#[derive(Parser)]
#[command(
    name = "mcs",
    version,
    about = "Reference client for mcsd (phone, gateway, operator)",
    after_long_help = EPILOGUE.help()
)]
struct Cli {
    /// Daemon URL, https://host:port
    #[arg(long, env = "MCS_SERVER", global = true, value_name = "URL")]
    server: Option<String>,
    /// CA certificate (PEM) that signed the daemon's certificate.
    #[arg(long, env = "MCS_CACERT", global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, env = "MCS_CERT", global = true, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "MCS_KEY", global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Shortcut: a dev PKI directory (as written by `mcsd dev-init`), with --as.
    #[arg(long, global = true, value_name = "DIR")]
    pki: Option<PathBuf>,
    /// Identity in --pki: admin, gateway, gateway2, app1, app2.
    #[arg(long = "as", global = true, value_name = "NAME")]
    identity: Option<String>,
    /// How answers are printed: `json` (the daemon's fields, for scripts) or `table`.
    #[arg(long, env = "MCS_OUTPUT", global = true, value_enum, default_value_t = Output::Json)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// Shown by `--help` and as the man page's EXIT STATUS and ENVIRONMENT.
const EPILOGUE: mcs_clidoc::Epilogue = mcs_clidoc::Epilogue {
    exit_status: &[
        ("0", "success"),
        (
            "1",
            "the daemon refused or the operation failed (`error: <code>: <message>` on stderr, the code as API.md lists it); verify-pdf, verify-seal: not valid",
        ),
        ("2", "usage: a bad option or argument, or a file or setting the command cannot use"),
    ],
    environment: &[
        ("MCS_SERVER", "--server"),
        ("MCS_CACERT", "--cacert"),
        ("MCS_CERT", "--cert"),
        ("MCS_KEY", "--key"),
        ("MCS_OUTPUT", "--output"),
        ("MCS_PIN", "--pin"),
    ],
    files: &[],
};

/// `--output`, for [`print_json`].
static OUTPUT: std::sync::OnceLock<Output> = std::sync::OnceLock::new();

/// The API's spelling of a value of one of the enums below (they are named as on the wire).
fn wire<E: ValueEnum>(value: &E) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

/// `gateway create-task --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TaskKindArg {
    Login,
    Sign,
    Decrypt,
    Encrypt,
}

/// `gateway create-task --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TaskFormatArg {
    /// sign: a DER signature (the default).
    Raw,
    /// sign: a GB/T 35275 detached SignedData.
    Cms,
    /// encrypt: an SM2 ciphertext (the default).
    Sm2,
    /// encrypt: a CMS EnvelopedData.
    Envelope,
}

/// `admin successor --reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SuccessorReason {
    /// A new key and certificate for the same subject.
    Renew,
    /// A new key for a changed subject (needs --kind and --name).
    Change,
    /// A lost phone: the old key is suspended at once.
    Reissue,
    /// The same key, a new certificate (延期).
    Extend,
}

/// `app sign --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum SignModeArg {
    /// The two-party signature of PROTOCOL.md.
    Canonical,
    /// The variant with the server's fixed k3.
    FixedK3,
}

/// `app delegate create --task-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum DelegableKind {
    Login,
    Sign,
    PdfSeal,
    Decrypt,
    Encrypt,
}

#[derive(Args)]
struct PinArgs {
    /// The certificate PIN (or MCS_PIN, or --pin-file).
    #[arg(long, env = "MCS_PIN", hide_env_values = true)]
    pin: Option<String>,
    /// Read the PIN from this file (its first line).
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
}

impl PinArgs {
    fn get(&self) -> Result<String, Error> {
        match (&self.pin, &self.pin_file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| Error::Config(format!("{}: {e}", f.display()))),
            (None, None) => prompt_pin(),
        }
    }
}

/// Ask for the PIN on the terminal (echo off), as the phone app would.
fn prompt_pin() -> Result<String, Error> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Config("a PIN is required: --pin, MCS_PIN or --pin-file".into()));
    }
    eprint!("certificate PIN: ");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| std::process::Command::new("stty").arg(arg).stdin(std::process::Stdio::inherit()).status();
    let _ = stty("-echo");
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = stty("echo");
    eprintln!();
    read.map_err(|e| Error::Config(format!("reading the PIN: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

#[derive(Subcommand)]
enum Command {
    /// Operator commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Phone commands.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Scan-gateway commands (a trading platform).
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// Check every signature of a PDF with the daemon (any role); exit 1 if one is invalid.
    VerifyPdf {
        /// The PDF.
        file: PathBuf,
    },
    /// Check a GB/T 38540 seal (DER file) with the daemon (any role); exit 1 if invalid.
    VerifySeal {
        /// The seal (DER).
        file: PathBuf,
    },
    /// Write the man pages (section 1) and the bash, zsh and fish completions into DIR
    /// (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write them (`man/`, `completions/`).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Create a scan task; prints {task_id, token, qr, expires_at}.
    CreateTask {
        /// What the phone is asked to do.
        #[arg(long, value_enum)]
        kind: TaskKindArg,
        /// What the phone shows the user.
        #[arg(long)]
        title: String,
        /// The challenge / message / ciphertext / plaintext, from a file.
        #[arg(long, value_name = "FILE")]
        data_file: PathBuf,
        /// The task expires this many seconds from now (default: the daemon's).
        #[arg(long, value_name = "SECONDS")]
        ttl_secs: Option<u64>,
        /// The daemon POSTs the outcome here (HTTPS, signed; see API.md).
        #[arg(long, value_name = "URL")]
        callback_url: Option<String>,
        /// sign tasks: `raw` (a DER signature, the default) or `cms` (a GB/T 35275 detached
        /// SignedData); encrypt tasks: `sm2` (the default) or `envelope` (EnvelopedData).
        #[arg(long, value_enum)]
        format: Option<TaskFormatArg>,
    },
    /// Ask a phone to seal a PDF (`pdf_seal` task); prints the task and its QR string.
    SealPdf {
        /// The PDF to seal.
        #[arg(long, value_name = "FILE")]
        pdf: PathBuf,
        /// What the phone shows the user.
        #[arg(long, default_value = "Seal the document")]
        title: String,
        /// API.md placement JSON, e.g. '{"page":1,"x":300,"y":200}' or '{"keyword":"盖章处"}',
        /// or `deferred`: the seal and its place are chosen after the phone's claim (`mcs
        /// gateway seals` and `mcs gateway place`).
        #[arg(long)]
        placement: String,
        /// The seal to use (default: the phone's user chooses).
        #[arg(long)]
        seal_id: Option<String>,
        /// The task expires this many seconds from now (default: the daemon's).
        #[arg(long, value_name = "SECONDS")]
        ttl_secs: Option<u64>,
    },
    /// Ask mcsd's time-stamp authority (RFC 3161): a DER request (`openssl ts -query`) in,
    /// the DER reply out (`openssl ts -reply -in OUT -text` reads it).
    Timestamp {
        /// The time-stamp request (DER).
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Where to write the reply (DER).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Ask the sealer to withdraw the last seal of a PDF (`pdf_unseal`, 撤章); prints the task
    /// and its QR string. `mcs gateway wait --pdf-out` writes the document as it was before.
    Unseal {
        /// The sealed PDF.
        #[arg(long, value_name = "FILE")]
        pdf: PathBuf,
        /// What the phone shows the user.
        #[arg(long, default_value = "Withdraw the seal")]
        title: String,
    },
    /// A claimed deferred `pdf_seal` task: the seals the scanning key may use, with faces.
    Seals {
        /// The task.
        task_id: String,
    },
    /// A claimed deferred `pdf_seal` task: put the chosen seal at --placement.
    Place {
        /// The task.
        task_id: String,
        /// The chosen seal (one of `mcs gateway seals`).
        #[arg(long)]
        seal_id: String,
        /// API.md placement JSON, e.g. '{"page":1,"x":300,"y":200}'.
        #[arg(long)]
        placement: String,
    },
    /// Wait for a task's outcome (long-poll) and print it.
    Wait {
        /// The task.
        task_id: String,
        /// Wait up to this many seconds for the outcome.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        wait: u64,
        /// Write a sealed PDF here instead of printing it (base64) in the JSON.
        #[arg(long)]
        pdf_out: Option<PathBuf>,
        /// Write a decrypt plaintext here instead of printing it (base64) in the JSON.
        #[arg(long)]
        plaintext_out: Option<PathBuf>,
    },
}

/// A certificate subject on the command line.
#[derive(Args)]
struct SubjectArgs {
    /// Who the certificate names (with --name).
    #[arg(long, value_enum)]
    kind: Option<SubjectKind>,
    /// The subject's name (a person's, an organisation's).
    #[arg(long)]
    name: Option<String>,
    /// A person's organisation.
    #[arg(long)]
    org_name: Option<String>,
    /// The organisation's unified social credit code (统一社会信用代码).
    #[arg(long)]
    credit_code: Option<String>,
    /// A person's identity document number.
    #[arg(long)]
    id_number: Option<String>,
}

impl SubjectArgs {
    /// The subject, if one was given; `--kind` and `--name` go together.
    fn get(self) -> Result<Option<Subject>, Error> {
        match (self.kind, self.name) {
            (Some(kind), Some(name)) => Ok(Some(Subject {
                kind,
                name,
                org_name: self.org_name,
                credit_code: self.credit_code,
                id_number: self.id_number,
            })),
            (None, None) if self.org_name.is_none() && self.credit_code.is_none() && self.id_number.is_none() => {
                Ok(None)
            }
            _ => Err(Error::Config("a subject needs both --kind and --name".into())),
        }
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an enrollment; prints its id and one-time activation code.
    Enroll {
        #[command(flatten)]
        subject: SubjectArgs,
        /// The CA adapter that issues the certificate (one of `mcs admin plugins`).
        #[arg(long)]
        ca: String,
        /// The adapter's certificate profile (default: the adapter's).
        #[arg(long)]
        profile: Option<String>,
        /// A platform the key may be used on; repeat for several.
        #[arg(long = "platform")]
        platforms: Vec<String>,
        /// The certificate's validity.
        #[arg(long, default_value_t = 365, value_name = "DAYS")]
        validity_days: u32,
    },
    /// Start a successor of a key: renew, change (needs --kind/--name) or reissue (lost
    /// phone: the old key is suspended at once). Prints the new enrollment. `extend` (延期)
    /// keeps the key: it prints the certificate request task (and QR) the owner's phone
    /// scans (`mcs app scan`) to get a new certificate for the same key.
    Successor {
        /// The key.
        id: String,
        /// Why a successor is made.
        #[arg(long, value_enum)]
        reason: SuccessorReason,
        #[command(flatten)]
        subject: SubjectArgs,
        /// The new certificate's validity (default: the old one's).
        #[arg(long, value_name = "DAYS")]
        validity_days: Option<u32>,
    },
    /// List the CA adapters.
    Plugins,
    /// Fetch a CA adapter's CRL (DER).
    Crl {
        /// The adapter's name.
        adapter: String,
        /// Write the DER here (default: base64 on stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The audit log (hash-chained entries), oldest first: an operator sees every entry.
    Audit {
        /// Only this key's entries.
        #[arg(long)]
        key_id: Option<String>,
        /// Only this platform's entries.
        #[arg(long)]
        platform: Option<String>,
        /// Only this seal's entries.
        #[arg(long)]
        seal_id: Option<String>,
        /// Only entries from this sequence number on (the `seq` of the last one read, plus 1).
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// At most this many entries (default: the daemon's page size).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Roaming (漫游): the platforms a key may be used on besides its own.
    Platform {
        #[command(subcommand)]
        command: PlatformCommand,
    },
    /// Make a seal for signer keys, valid from now for --valid-days.
    SealCreate {
        /// What the seal is for.
        #[arg(long, value_enum)]
        kind: mcs_api::SealKind,
        /// The seal's name (its holder's, e.g. the company's).
        #[arg(long)]
        name: String,
        /// The owner, as a JSON object.
        #[arg(long, default_value = "{}")]
        owner: String,
        /// The seal picture (PNG, JPEG or SVG, by extension) ...
        #[arg(long, required_unless_present = "template", conflicts_with = "template")]
        image: Option<PathBuf>,
        /// ... or a face mcsd draws: personal_name (square, the person's name in 2–4
        /// characters) or org_round (round, the organisation's name around a star).
        #[arg(long, value_enum)]
        template: Option<mcs_api::SealTemplateKind>,
        /// The template's text (default: --name).
        #[arg(long, requires = "template")]
        text: Option<String>,
        /// org_round's bottom line, e.g. 合同专用章.
        #[arg(long, requires = "template")]
        bottom_text: Option<String>,
        /// The printed width.
        #[arg(long, default_value_t = 40, value_name = "MM")]
        width_mm: u32,
        /// The printed height.
        #[arg(long, default_value_t = 40, value_name = "MM")]
        height_mm: u32,
        /// A key that may sign with the seal; repeat for several (the first is its owner's).
        #[arg(long = "signer", required = true, value_name = "KEY_ID")]
        signers: Vec<String>,
        /// Valid from now for this many days.
        #[arg(long, default_value_t = 365, value_name = "DAYS")]
        valid_days: u32,
    },
    /// List seals.
    Seals {
        /// Only seals whose owner has this value (e.g. a credit code).
        #[arg(long)]
        owner: Option<String>,
        /// Only seals this key may use.
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Revoke a seal.
    SealRevoke {
        /// The seal.
        id: String,
    },
    /// Change a seal's face: prints the new seal (same grants); the old one is revoked.
    SealImage {
        /// The seal.
        id: String,
        /// The new picture (PNG, JPEG or SVG, by extension).
        #[arg(long, value_name = "FILE")]
        image: PathBuf,
        /// The printed width.
        #[arg(long, default_value_t = 40, value_name = "MM")]
        width_mm: u32,
        /// The printed height.
        #[arg(long, default_value_t = 40, value_name = "MM")]
        height_mm: u32,
    },
    /// Grant a seal to a key for --days from now.
    SealGrant {
        /// The seal.
        id: String,
        /// The key that may use it.
        #[arg(long)]
        key_id: String,
        /// For this many days from now.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Every use waits for the approval of the seal's owner (its first signer key's phone).
        #[arg(long)]
        each_use: bool,
    },
    /// Withdraw a seal grant.
    SealUngrant {
        /// The seal.
        id: String,
        /// The key it was granted to.
        key_id: String,
    },
    /// A certificate's status at its CA.
    CertStatus {
        /// The CA adapter's name.
        adapter: String,
        /// The certificate's serial number (hex).
        serial: String,
    },
    /// List keys.
    Keys {
        /// Only keys whose subject has this name or credit code.
        #[arg(long)]
        subject: Option<String>,
        /// Only keys in this state.
        #[arg(long, value_enum)]
        status: Option<mcs_api::KeyStatus>,
    },
    /// Show one key.
    Key {
        /// The key.
        id: String,
    },
    /// Clear a key's PIN lock.
    Unlock {
        /// The key.
        id: String,
    },
    /// Revoke a key (its share is destroyed).
    Revoke {
        /// The key.
        id: String,
        /// Why (recorded in the audit log and sent to the CA).
        #[arg(long)]
        reason: String,
    },
    /// Suspend a key (冻结): every use answers `key_inactive`; its certificate is held
    /// where the CA can.
    Suspend {
        /// The key.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "frozen")]
        reason: String,
    },
    /// Resume a suspended key (解冻).
    Resume {
        /// The key.
        id: String,
    },
    /// Open a PIN reset (重置密码) after checking the person's identity: prints the
    /// one-time `reset_code` to tell them, and when it expires.
    PinReset {
        /// The key.
        id: String,
        /// Reset the share of this delegation (an employee's phone) instead of the owner's.
        #[arg(long)]
        delegation: Option<String>,
    },
}

#[derive(Subcommand)]
enum PlatformCommand {
    /// Let KEY be used on PLATFORM: for one task, a day, a year, or until a time.
    Grant {
        /// The key.
        #[arg(value_name = "KEY")]
        key_id: String,
        /// The platform (as its gateway certificate names it).
        #[arg(long)]
        platform: String,
        /// How long the grant lasts: one task, 24 hours, a year, or until --until.
        #[arg(long, value_enum)]
        mode: mcs_api::GrantMode,
        /// With `--mode until`: the end (RFC 3339, in the future).
        #[arg(long, required_if_eq("mode", "until"), value_name = "TIME")]
        until: Option<String>,
    },
    /// Withdraw KEY's grant for PLATFORM.
    Withdraw {
        /// The key.
        #[arg(value_name = "KEY")]
        key_id: String,
        /// The platform.
        platform: String,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Activate an enrollment on this phone; writes the phone state file.
    Activate {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// The enrollment id the operator gave.
        #[arg(long)]
        enrollment: String,
        /// The one-time activation code the operator gave.
        #[arg(long)]
        code: String,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Sign a file or a digest e with the daemon; writes/prints a DER signature.
    Sign {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// The file to sign.
        #[arg(long, conflicts_with = "hash", required_unless_present = "hash", value_name = "FILE")]
        r#in: Option<PathBuf>,
        /// The digest e (64 hex characters) instead of a file.
        #[arg(long)]
        hash: Option<String>,
        /// How the signature is computed.
        #[arg(long, value_enum, default_value_t = SignModeArg::Canonical)]
        mode: SignModeArg,
        /// Write it here (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Decrypt an SM2 ciphertext (C1C3C2 or DER) with the daemon.
    Decrypt {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// The ciphertext file.
        #[arg(long, value_name = "FILE")]
        r#in: PathBuf,
        /// Write it here (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Change the PIN (the old one via --pin).
    ChangePin {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// The new PIN.
        #[arg(long)]
        new_pin: String,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Print the joint public key as PEM.
    Pubkey {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// Write it here (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Load generator: co-sign digests (or decrypt, or read the key: --op) over N keep-alive connections for S seconds,
    /// back to back or at a fixed rate (--rate); prints {ops, errors, ops_s, p50_ms, p99_ms}.
    Load {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// Connections, each with one request in flight.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// What each operation is.
        #[arg(long, value_enum, default_value_t = mcs_client::load::LoadOp::Cosign)]
        op: mcs_client::load::LoadOp,
        /// Open loop: send this many operations per second in all, due at fixed intervals and
        /// dealt round-robin to the connections, each latency counted from its due time (a slow
        /// server shows as latency, not as a slower load; give enough connections). Without it,
        /// each connection runs back to back (the peak).
        #[arg(long, value_name = "OPS_S")]
        rate: Option<f64>,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Write this phone's certificate, then its chain, as PEM.
    Certificate {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// Write it here (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show this phone's key as the daemon sees it.
    Key {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
    },
    /// Scan a task QR code: show what is asked, then do it with the PIN.
    Scan {
        /// The QR code's text (`mcs gateway create-task` prints it as `qr`).
        qr: String,
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Co-sign several scanned signing tasks with one PIN entry.
    Batch {
        /// QR codes
        #[arg(required = true)]
        qr: Vec<String>,
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Refuse a task (no PIN: refusing proves nothing).
    Reject {
        /// The QR code's text.
        qr: String,
        /// Why (the gateway is told).
        #[arg(long)]
        reason: String,
    },
    /// Revoke this phone's key.
    Revoke {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// Why (recorded in the audit log and sent to the CA).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Reset a forgotten PIN (忘记密码) with the operator's one-time code; the new PIN via
    /// --pin. The state file is rewritten: d1 masked under the new PIN, sealed under a new
    /// recovery key.
    ResetPin {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// The one-time code the operator read out.
        #[arg(long)]
        code: String,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Suspend this phone's key (挂失); an operator resumes it.
    Suspend {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "lost")]
        reason: String,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// The owner's phone: let an employee's phone use this key (证书授权), step by step.
    Delegate {
        #[command(subcommand)]
        command: DelegateCommand,
    },
    /// The owner's phone: start moving this key to a new phone (换机). Prints the invitation
    /// for the new phone's `mcs app accept`; then send the share with `mcs app delegate share`.
    /// Once the new phone activates, this phone's share is gone.
    Transfer {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// The owner's phone: approve (or, with --deny, deny) a delegate's use of the key, as
    /// asked by an `approval_request` item of `mcs app inbox`.
    Approve {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// The approval id of the request.
        #[arg(long)]
        approval: String,
        /// Deny instead: the task is rejected (`approval_denied`).
        #[arg(long)]
        deny: bool,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// This phone's inbox (tasks sent to its keys, approvals to give, delegation events):
    /// prints {items, cursor}; pass the cursor back with --after to drop what was read.
    Inbox {
        /// The cursor of the previous answer.
        #[arg(long)]
        after: Option<String>,
        /// Wait up to this many seconds for an item.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// The new phone (an employee's, or the owner's next phone): accept an invitation with
    /// --delegation and --code (writes a pending state file holding the transport secret),
    /// then, once the owner's phone has sent the share, check it against the key and
    /// activate it with this phone's own PIN (the file becomes a phone state for the key).
    /// Run again without --delegation/--code to finish a pending one.
    Accept {
        /// A new file for a new acceptance; the pending file to finish one.
        #[arg(long)]
        state: PathBuf,
        /// The delegation id the owner was shown with the code.
        #[arg(long, requires = "code")]
        delegation: Option<String>,
        /// The invitation code the owner was shown.
        #[arg(long, requires = "delegation")]
        code: Option<String>,
        /// Wait up to this many seconds for the owner's share.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        #[command(flatten)]
        pin: PinArgs,
    },
}

#[derive(Subcommand)]
enum DelegateCommand {
    /// Invite another phone; prints {delegation_id, invitation_code, expires_at}. The code is
    /// shown once: hand it to the employee.
    Create {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// Valid for this many days from now ...
        #[arg(long, default_value_t = 30, conflicts_with = "not_after")]
        days: u32,
        /// ... or until this time (RFC 3339).
        #[arg(long)]
        not_after: Option<String>,
        /// Not usable before this time (RFC 3339).
        #[arg(long)]
        not_before: Option<String>,
        /// Allowed task kinds (login, sign, pdf_seal, decrypt, encrypt), repeated; default all.
        #[arg(long = "task-kind", value_enum)]
        task_kinds: Vec<DelegableKind>,
        /// Shown to the owner, e.g. the employee's name.
        #[arg(long)]
        label: Option<String>,
        /// Every use needs this phone's approval.
        #[arg(long)]
        each_use: bool,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// Once the new phone has accepted: re-share this phone's half and send it, sealed to
    /// the new phone's transport key (the daemon cannot read it).
    Share {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// The delegation.
        delegation: String,
        #[command(flatten)]
        pin: PinArgs,
    },
    /// List this key's delegations.
    List {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
    },
    /// Show one delegation (owner, its delegate, operator).
    Show {
        /// The delegation.
        delegation: String,
    },
    /// End a delegation; the employee's server share is destroyed before the answer.
    Revoke {
        /// This phone's state file (written by `mcs app activate`).
        #[arg(long)]
        state: PathBuf,
        /// The delegation.
        delegation: String,
        #[command(flatten)]
        pin: PinArgs,
    },
}

fn endpoint(cli: &Cli) -> Result<Endpoint, Error> {
    let server = cli.server.clone().ok_or_else(|| Error::Config("--server (or MCS_SERVER) is required".into()))?;
    let (ca, cert, key) = match (&cli.pki, &cli.identity) {
        (Some(dir), Some(who)) => {
            (dir.join("ca.pem"), Some(dir.join(format!("{who}.pem"))), Some(dir.join(format!("{who}.key"))))
        }
        (Some(_), None) => return Err(Error::Config("--pki needs --as <identity>".into())),
        _ => (
            cli.cacert.clone().ok_or_else(|| Error::Config("--cacert (or --pki) is required".into()))?,
            cli.cert.clone(),
            cli.key.clone(),
        ),
    };
    Ok(Endpoint { base_url: server, ca_file: ca, cert_file: cert, key_file: key })
}

/// What the phone shows before asking for the PIN.
fn describe_task(view: &serde_json::Value) -> Result<(), Error> {
    use base64::Engine;
    let view: TaskView = parse(view)?;
    eprintln!("platform {} asks you to {}:", view.platform, view.kind.as_str());
    eprintln!("  {}", view.display.title);
    if let Some(detail) = &view.display.detail {
        eprintln!("  {detail}");
    }
    let data = match &view.data {
        Some(TaskViewData::Sign(d)) => Some(&d.message),
        Some(TaskViewData::Login(d)) => Some(&d.challenge),
        _ => None,
    };
    if let Some(bytes) = data.and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok()) {
        match std::str::from_utf8(&bytes) {
            Ok(text) if text.len() <= 2000 => eprintln!("  data: {text}"),
            _ => eprintln!("  data: {} bytes", bytes.len()),
        }
    }
    Ok(())
}

/// An answer, as `--output` says.
fn print_json(v: &serde_json::Value) {
    print!("{}", mcs_client::output::render(v, OUTPUT.get().copied().unwrap_or_default()));
}

/// Unix time in seconds. The client does not link mcsd's clock; this is its one reader.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn rfc3339(unix: i64) -> Result<String, Error> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .ok_or_else(|| Error::Config("time out of range".into()))
}

fn write_out(out: &Option<PathBuf>, bytes: &[u8]) -> Result<(), Error> {
    match out {
        Some(path) => std::fs::write(path, bytes).map_err(|e| Error::Config(format!("{}: {e}", path.display()))),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(bytes).map_err(|e| Error::Config(e.to_string()))
        }
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

async fn run(cli: Cli) -> Result<(), Error> {
    let ep = endpoint(&cli)?;
    let mut conn = Connection::connect(&ep).await?;
    let conn = &mut conn;
    match cli.command {
        Command::Admin { command } => match command {
            AdminCommand::Enroll { subject, ca, profile, platforms, validity_days } => {
                let subject = subject.get()?.ok_or_else(|| Error::Config("enroll needs --kind and --name".into()))?;
                let req = EnrollmentRequest { subject, ca, profile, platforms, validity_days };
                print_json(&admin::create_enrollment(conn, &req).await?);
            }
            AdminCommand::Successor { id, reason, subject, validity_days } => {
                print_json(&admin::successor(conn, &id, &wire(&reason), subject.get()?.as_ref(), validity_days).await?)
            }
            AdminCommand::Audit { key_id, platform, seal_id, since, limit } => {
                let filter = admin::AuditFilter { key_id, platform, seal_id, since, limit };
                print_json(&admin::audit(conn, &filter).await?)
            }
            AdminCommand::Platform { command: PlatformCommand::Grant { key_id: key, platform, mode, until } } => {
                if until.is_some() && mode != mcs_api::GrantMode::Until {
                    return Err(Error::Config("--until goes with --mode until".into()));
                }
                print_json(&admin::grant_platform(conn, &key, &platform, &wire(&mode), until.as_deref()).await?)
            }
            AdminCommand::Platform { command: PlatformCommand::Withdraw { key_id: key, platform } } => {
                admin::withdraw_platform(conn, &key, &platform).await?;
                println!("{platform} withdrawn from {key}");
            }
            AdminCommand::Plugins => print_json(&admin::plugins(conn).await?),
            AdminCommand::Crl { adapter, out } => {
                let der = admin::crl(conn, &adapter).await?;
                match out {
                    Some(_) => write_out(&out, &der)?,
                    None => println!("{}", base64::engine::general_purpose::STANDARD.encode(&der)),
                }
            }
            AdminCommand::SealCreate {
                kind,
                name,
                owner,
                image,
                template,
                text,
                bottom_text,
                width_mm,
                height_mm,
                signers,
                valid_days,
            } => {
                let owner: serde_json::Value =
                    serde_json::from_str(&owner).map_err(|e| Error::Config(format!("--owner: {e}")))?;
                let now = unix_now();
                let request = SealRequest {
                    kind: wire(&kind),
                    name,
                    owner,
                    image: match (image, template) {
                        (Some(image), _) => seal_image(&image, width_mm, height_mm)?.into(),
                        (None, Some(t)) => {
                            mcs_api::SealFaceSpec::Template(mcs_api::SealTemplate { template: t, text, bottom_text })
                        }
                        (None, None) => return Err(Error::Config("--image or --template is required".into())),
                    },
                    signer_key_ids: signers,
                    valid_from: rfc3339(now - 60)?,
                    valid_to: rfc3339(now + valid_days as i64 * 86_400)?,
                };
                print_json(&admin::create_seal(conn, &request).await?);
            }
            AdminCommand::Seals { owner, key_id } => {
                print_json(&admin::seals(conn, owner.as_deref(), key_id.as_deref()).await?)
            }
            AdminCommand::SealRevoke { id } => print_json(&admin::revoke_seal(conn, &id).await?),
            AdminCommand::SealImage { id, image, width_mm, height_mm } => {
                print_json(&admin::change_seal_image(conn, &id, seal_image(&image, width_mm, height_mm)?).await?)
            }
            AdminCommand::SealGrant { id, key_id: key, days, each_use } => {
                let now = unix_now();
                let (from, to) = (rfc3339(now - 60)?, rfc3339(now + days as i64 * 86_400)?);
                print_json(&admin::grant_seal(conn, &id, &key, &from, &to, each_use).await?)
            }
            AdminCommand::SealUngrant { id, key_id: key } => {
                admin::ungrant_seal(conn, &id, &key).await?;
                println!("grant of {id} to {key} withdrawn");
            }
            AdminCommand::CertStatus { adapter, serial } => {
                print_json(&admin::certificate_status(conn, &adapter, &serial).await?)
            }
            AdminCommand::Keys { subject, status } => {
                print_json(&admin::list_keys(conn, subject.as_deref(), status.map(|s| s.as_str())).await?)
            }
            AdminCommand::Key { id } => print_json(&admin::get_key(conn, &id).await?),
            AdminCommand::Unlock { id } => {
                admin::unlock(conn, &id).await?;
                println!("unlocked {id}");
            }
            AdminCommand::Revoke { id, reason } => print_json(&admin::revoke(conn, &id, &reason).await?),
            AdminCommand::Suspend { id, reason } => print_json(&admin::suspend(conn, &id, &reason).await?),
            AdminCommand::Resume { id } => print_json(&admin::resume(conn, &id).await?),
            AdminCommand::PinReset { id, delegation } => {
                print_json(&admin::open_pin_reset(conn, &id, delegation.as_deref()).await?)
            }
        },
        Command::Gateway { command } => match command {
            GatewayCommand::CreateTask { kind, title, data_file, ttl_secs, callback_url, format } => {
                let bytes = base64::engine::general_purpose::STANDARD.encode(read_file(&data_file)?);
                let format = format.map(|f| wire(&f));
                let data = match kind {
                    TaskKindArg::Login => TaskData::Login(LoginData { challenge: bytes }),
                    TaskKindArg::Sign => TaskData::Sign(SignData { message: bytes, format }),
                    TaskKindArg::Decrypt => TaskData::Decrypt(DecryptData {
                        ciphertext: Some(bytes),
                        envelope: None,
                        recipient_cert_serial: None,
                        recipient_public_key: None,
                    }),
                    TaskKindArg::Encrypt => TaskData::Encrypt(EncryptData { plaintext: bytes.into(), format }),
                };
                let data = serde_json::to_value(&data).map_err(|e| Error::Config(e.to_string()))?;
                let kind = wire(&kind);
                print_json(&gateway::create_task(conn, &kind, &title, data, ttl_secs, callback_url.as_deref()).await?);
            }
            GatewayCommand::SealPdf { pdf, title, placement, seal_id, ttl_secs } => {
                let placement = placement_arg(&placement)?;
                let data = TaskData::PdfSeal(PdfSealData {
                    pdf: base64::engine::general_purpose::STANDARD.encode(read_file(&pdf)?),
                    seal_id,
                    placement,
                });
                let data = serde_json::to_value(&data).map_err(|e| Error::Config(e.to_string()))?;
                let kind = CreateTaskKind::PdfSeal.as_str();
                print_json(&gateway::create_task(conn, kind, &title, data, ttl_secs, None).await?);
            }
            GatewayCommand::Timestamp { input, out } => {
                let reply = gateway::timestamp(conn, read_file(&input)?).await?;
                std::fs::write(&out, reply).map_err(|e| Error::Config(format!("{}: {e}", out.display())))?;
                println!("time-stamp reply written to {}", out.display());
            }
            GatewayCommand::Unseal { pdf, title } => {
                let data =
                    serde_json::json!({ "pdf": base64::engine::general_purpose::STANDARD.encode(read_file(&pdf)?) });
                print_json(&gateway::create_task(conn, "pdf_unseal", &title, data, None, None).await?);
            }
            GatewayCommand::Seals { task_id } => print_json(&to_json(&gateway::task_seals(conn, &task_id).await?)?),
            GatewayCommand::Place { task_id, seal_id, placement } => {
                print_json(&gateway::place(conn, &task_id, &seal_id, placement_arg(&placement)?).await?)
            }
            GatewayCommand::Wait { task_id, wait, pdf_out, plaintext_out } => {
                // Printed as the daemon said it, but for the bytes written to a file.
                let mut out = gateway::result(conn, &task_id, wait).await?;
                let outcome: TaskOutcome = parse(&out)?;
                let written = match (&outcome.result, &pdf_out, &plaintext_out) {
                    (Some(TaskResult::PdfSeal(r)), Some(path), _) => Some(("pdf", r.pdf.as_str(), path)),
                    (Some(TaskResult::PdfUnseal(r)), Some(path), _) => Some(("pdf", r.pdf.as_str(), path)),
                    (Some(TaskResult::Decrypt(r)), _, Some(path)) => Some(("plaintext", r.plaintext.as_str(), path)),
                    _ => None,
                };
                if let Some((field, b64, path)) = written {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| Error::Protocol(format!("{field}: {e}")))?;
                    write_out(&Some(path.clone()), &bytes)?;
                    out["result"][field] = format!("(written to {})", path.display()).into();
                }
                print_json(&out);
            }
        },
        Command::GenerateAssets { .. } => unreachable!("handled before connecting"),
        Command::VerifyPdf { file } => {
            let report = admin::verify_pdf(conn, &read_file(&file)?).await?;
            print_json(&report);
            let sigs = parse::<PdfVerdict>(&report)?.signatures;
            if sigs.is_empty() || sigs.iter().any(|s| !s.valid) {
                return Err(Error::Protocol(format!("{}: not every signature is valid", file.display())));
            }
        }
        Command::VerifySeal { file } => {
            let report = admin::verify_seal(conn, &read_file(&file)?).await?;
            print_json(&report);
            if !parse::<SealVerdict>(&report)?.valid {
                return Err(Error::Protocol(format!("{}: the seal is not valid", file.display())));
            }
        }
        Command::App { command } => match command {
            AppCommand::Activate { state, enrollment, code, pin } => {
                let phone = Phone::activate(conn, &ep.base_url, &enrollment, &code, &pin.get()?).await?;
                phone.state.save(&state)?;
                println!("activated key {} (public key {})", phone.key_id(), phone.state.public_key);
            }
            AppCommand::Sign { state, r#in, hash, mode, out, pin } => {
                let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
                let mode = match mode {
                    SignModeArg::Canonical => SignMode::Canonical,
                    SignModeArg::FixedK3 => SignMode::FixedK3,
                };
                let sig = match (r#in, hash) {
                    (Some(path), None) => phone.sign_message(conn, &read_file(&path)?, mode).await?,
                    (None, Some(h)) => {
                        let e = sm2_2p::digest_from_hex(&h).map_err(|e| Error::Config(format!("--hash: {e}")))?;
                        phone.sign_hash(conn, &e, mode).await?
                    }
                    _ => return Err(Error::Config("give --in FILE or --hash HEX".into())),
                };
                let der = sig.to_der();
                if let Some(path) = &out {
                    write_out(&Some(path.clone()), &der)?;
                }
                println!("{}", base64::engine::general_purpose::STANDARD.encode(&der));
            }
            AppCommand::Decrypt { state, r#in, out, pin } => {
                let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
                let plaintext = phone.decrypt(conn, &read_file(&r#in)?).await?;
                write_out(&out, &plaintext)?;
            }
            AppCommand::ChangePin { state, new_pin, pin } => {
                let mut phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
                phone.change_pin(conn, &new_pin).await?;
                phone.state.save(&state)?;
                println!("PIN changed");
            }
            AppCommand::Pubkey { state, out } => {
                let state = PhoneState::load(&state)?;
                let p = sm2_2p::point_from_hex(&state.public_key).map_err(|e| Error::Config(e.to_string()))?;
                write_out(&out, public_key_pem(&p).as_bytes())?;
            }
            AppCommand::Load { state, concurrency, seconds, op, rate, pin } => {
                let phone = std::sync::Arc::new(Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?);
                let r = mcs_client::load::run_load(
                    &ep,
                    &[phone],
                    concurrency.max(1),
                    std::time::Duration::from_secs(seconds),
                    op,
                    rate,
                )
                .await?;
                let mut report = serde_json::json!({
                    "concurrency": concurrency, "ops": r.ops, "errors": r.errors,
                    "ops_s": r.ops_per_sec(), "p50_ms": r.quantile_ms(0.5), "p99_ms": r.quantile_ms(0.99),
                });
                if let Some(rate) = rate {
                    report["target_ops_s"] = rate.into();
                    report["missed"] = r.missed.into();
                }
                print_json(&report);
            }
            AppCommand::Certificate { state, out } => {
                let state = PhoneState::load(&state)?;
                write_out(
                    &out,
                    mcs_client::phone::certificate_pem(&admin::get_key(conn, &state.key_id).await?)?.as_bytes(),
                )?;
            }
            AppCommand::Key { state } => {
                let state = PhoneState::load(&state)?;
                print_json(&admin::get_key(conn, &state.key_id).await?);
            }
            AppCommand::Scan { qr, state, pin } => {
                let code = ScanCode::parse(&qr)?;
                let view = fetch_task(conn, &code).await?;
                describe_task(&view)?;
                let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
                match phone.scan(conn, &code).await {
                    // Accepted (202): the owner's phone decides; this is not a failure.
                    Err(Error::AwaitingApproval(aid)) => {
                        print_json(&serde_json::json!({ "status": "awaiting_approval", "approval_id": aid }));
                        eprintln!("waiting for the owner's approval {aid}: scan again once it is approved");
                    }
                    Err(Error::AwaitingPlacement) => {
                        print_json(&serde_json::json!({ "status": "claimed", "placement": "deferred" }));
                        eprintln!("the seal is being chosen and placed on the PC: scan again once it is placed");
                    }
                    done => {
                        done?;
                        println!("done: {} task {} completed", parse::<TaskView>(&view)?.kind.as_str(), code.task_id);
                    }
                }
            }
            AppCommand::Batch { qr, state, pin } => {
                let codes = qr.iter().map(|q| ScanCode::parse(q)).collect::<Result<Vec<_>, _>>()?;
                for code in &codes {
                    describe_task(&fetch_task(conn, code).await?)?;
                }
                let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
                let mut failed = false;
                for (code, r) in codes.iter().zip(phone.batch_sign(conn, &codes).await?) {
                    match r {
                        Ok(_) => println!("{}: completed", code.task_id),
                        Err(e) => {
                            failed = true;
                            eprintln!("{}: {e}", code.task_id);
                        }
                    }
                }
                if failed {
                    return Err(Error::Protocol("some tasks were not signed".into()));
                }
            }
            AppCommand::Reject { qr, reason } => {
                let code = ScanCode::parse(&qr)?;
                let body = RejectRequest { token: code.token.clone(), reason };
                conn.send(hyper::Method::POST, &format!("/v1/tasks/{}/reject", code.task_id), &body).await?;
                println!("rejected {}", code.task_id);
            }
            AppCommand::Revoke { state, reason, pin } => {
                let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
                print_json(&phone.revoke(conn, &reason).await?);
            }
            AppCommand::ResetPin { state: path, code, pin } => {
                let phone = Phone::reset_pin(conn, PhoneState::load(&path)?, &code, &pin.get()?).await?;
                phone.state.save(&path)?;
                println!("PIN reset; the key is unlocked");
            }
            AppCommand::Suspend { state, reason, pin } => {
                let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
                print_json(&phone.suspend(conn, &reason).await?);
            }
            AppCommand::Delegate { command } => delegate(conn, command).await?,
            AppCommand::Transfer { state, pin } => {
                let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
                print_json(&to_json(&phone.create_delegation(conn, &DelegationOptions::transfer()).await?)?);
            }
            AppCommand::Approve { state, approval, deny, pin } => {
                let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
                print_json(&to_json(&phone.decide_approval(conn, &approval, !deny).await?)?);
            }
            AppCommand::Inbox { after, wait } => {
                print_json(&to_json(&mcs_client::inbox::read(conn, after.as_deref(), wait).await?)?);
            }
            AppCommand::Accept { state, delegation, code, wait, pin } => {
                accept(conn, &ep.base_url, &state, delegation.zip(code), wait, &pin).await?
            }
        },
    }
    Ok(())
}

/// A seal picture file (.png, .jpg or .svg) and its printed size.
fn seal_image(image: &std::path::Path, width_mm: u32, height_mm: u32) -> Result<SealImage, Error> {
    let picture_type = match image.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => "PNG",
        Some("jpg" | "jpeg") => "JPEG",
        Some("svg") => "SVG",
        _ => return Err(Error::Config("--image must be a .png, .jpg or .svg file".into())),
    };
    Ok(SealImage {
        kind: picture_type.into(),
        data: base64::engine::general_purpose::STANDARD.encode(read_file(image)?),
        width_mm,
        height_mm,
    })
}

/// `--placement`: API.md's JSON, or the bare word `deferred`.
fn placement_arg(arg: &str) -> Result<serde_json::Value, Error> {
    if arg == "deferred" {
        return Ok(serde_json::Value::String(arg.to_owned()));
    }
    serde_json::from_str(arg).map_err(|e| Error::Config(format!("--placement: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::Config(e.to_string()))
}

async fn delegate(conn: &mut Connection, command: DelegateCommand) -> Result<(), Error> {
    match command {
        DelegateCommand::Create { state, days, not_after, not_before, task_kinds, label, each_use, pin } => {
            let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
            let not_after = match not_after {
                Some(t) => t,
                None => rfc3339(unix_now() + i64::from(days) * 86_400)?,
            };
            let opts = DelegationOptions {
                not_before,
                approval: each_use.then_some(DelegationApproval::EachUse),
                task_kinds: (!task_kinds.is_empty()).then(|| task_kinds.iter().map(wire).collect()),
                label,
                ..DelegationOptions::delegate(not_after)
            };
            print_json(&to_json(&phone.create_delegation(conn, &opts).await?)?);
        }
        DelegateCommand::Share { state, delegation, pin } => {
            let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
            phone.share_with(conn, &delegation).await?;
            println!("share sent for {delegation}: the new phone can now activate it");
        }
        DelegateCommand::List { state } => {
            let state = PhoneState::load(&state)?;
            let path = format!("/v1/keys/{}/delegations", state.key_id);
            print_json(&conn.json(hyper::Method::GET, &path, None).await?);
        }
        DelegateCommand::Show { delegation } => {
            print_json(&to_json(&mcs_client::delegation::delegation(conn, &delegation).await?)?)
        }
        DelegateCommand::Revoke { state, delegation, pin } => {
            let phone = Phone::unlock(PhoneState::load(&state)?, &pin.get()?)?;
            print_json(&to_json(&phone.revoke_delegation(conn, &delegation).await?)?);
        }
    }
    Ok(())
}

/// `mcs app accept`: accept (or resume), wait for the owner's share, check it, activate.
async fn accept(
    conn: &mut Connection,
    server: &str,
    state: &std::path::Path,
    invitation: Option<(String, String)>,
    wait: u64,
    pin: &PinArgs,
) -> Result<(), Error> {
    let pending = match invitation {
        Some((did, code)) => {
            // Never over a phone state: that file may be the only copy of another key's share.
            if state.exists() {
                return Err(Error::Config(format!("{} exists; accept into a new state file", state.display())));
            }
            let (pending, view) = PendingDelegation::accept(conn, server, &did, &code).await?;
            pending.save(state)?;
            let kind = to_json(&view.kind)?;
            eprintln!(
                "accepted {did} ({} of key {}); waiting for the owner's share",
                kind.as_str().unwrap_or("?"),
                view.key_id
            );
            pending
        }
        None => PendingDelegation::load(state)?,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let view = pending.fetch(conn).await?;
        match view.status {
            DelegationStatus::AwaitingPin => break,
            DelegationStatus::Invited | DelegationStatus::AwaitingShare if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            DelegationStatus::Invited | DelegationStatus::AwaitingShare => {
                println!(
                    "{}: the owner's phone has not sent the share yet; run `mcs app accept --state {}` again",
                    pending.delegation_id,
                    state.display()
                );
                return Ok(());
            }
            other => {
                let status = to_json(&other)?;
                return Err(Error::Protocol(format!(
                    "{} is {}",
                    pending.delegation_id,
                    status.as_str().unwrap_or("?")
                )));
            }
        }
    }
    let phone = pending.activate(conn, &pin.get()?).await?;
    phone.state.save(state)?;
    println!("activated key {} on this phone (public key {})", phone.key_id(), phone.state.public_key);
    Ok(())
}

/// `mcs generate-assets`: `mcs(1)` and a page per subcommand (`mcs-admin-audit(1)`, …) in
/// `DIR/man`, completions in `DIR/completions`.
fn generate_assets(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    mcs_clidoc::generate(Cli::command(), "1", &EPILOGUE, dir)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = OUTPUT.set(cli.output);
    if let Command::GenerateAssets { dir } = &cli.command {
        return match generate_assets(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}: {e}", dir.display());
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Config(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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

    /// No subcommand's argument has the id or the flag of a global option (`--key` is the
    /// client's private key): clap would fail on it only when the command runs.
    #[test]
    fn no_argument_shadows_a_global_option() {
        fn walk(cmd: &clap::Command, globals: &[(String, Option<String>)], path: &str, clashes: &mut Vec<String>) {
            for arg in cmd.get_arguments().filter(|a| !a.is_global_set()) {
                let (id, long) = (arg.get_id().to_string(), arg.get_long().map(str::to_owned));
                if globals.iter().any(|(gid, glong)| *gid == id || (long.is_some() && *glong == long)) {
                    clashes.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, globals, &format!("{path} {}", sub.get_name()), clashes);
            }
        }
        let cmd = super::Cli::command();
        let globals: Vec<(String, Option<String>)> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| (a.get_id().to_string(), a.get_long().map(str::to_owned)))
            .collect();
        let mut clashes = Vec::new();
        for sub in cmd.get_subcommands() {
            walk(sub, &globals, sub.get_name(), &mut clashes);
        }
        assert!(clashes.is_empty(), "{clashes:?}");
    }

    #[test]
    fn enum_values_are_spelled_as_on_the_wire() {
        assert_eq!(super::wire(&super::SignModeArg::FixedK3), "fixed_k3");
        assert_eq!(super::wire(&super::DelegableKind::PdfSeal), "pdf_seal");
        /// Every command-line spelling of a wire enum is its serde spelling.
        fn same<E: clap::ValueEnum + serde::Serialize>() {
            for v in E::value_variants() {
                assert_eq!(serde_json::to_value(v).unwrap(), super::wire(v));
            }
        }
        same::<mcs_api::SealKind>();
        same::<mcs_api::SealTemplateKind>();
        same::<mcs_api::GrantMode>();
        same::<mcs_api::KeyStatus>();
        same::<mcs_api::SubjectKind>();
    }
}
