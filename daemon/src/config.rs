//! The daemon's configuration: TOML in, validated types out.
//!
//! The file is deserialized with `deny_unknown_fields` (a typo is an error, not a silently
//! ignored key), then validated into [`Config`], whose fields cannot hold an invalid value.
//! Relative paths are resolved against the directory of the config file, so a config and
//! its PKI can move together. Secrets (the HSM PIN) are never in the file itself: they come
//! from a `*_file` or a systemd credential and are read only when needed.
//!
//! `config/mcsd.toml` documents every key with its default; a test loads it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What can go wrong loading a config. `mcsd` exits 64 (EX_USAGE) on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{0}")]
    Invalid(String),
}

/// A role a client certificate can be trusted for (API.md "Callers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Gateway,
    App,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Gateway => "gateway",
            Role::App => "app",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

// ---- the file as written ------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api: RawApi,
    #[serde(default)]
    health: RawHealth,
    hsm: RawHsm,
    store: RawStore,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    tasks: RawTasks,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
    #[serde(default)]
    seals: SealsConfig,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    push: RawPush,
    #[serde(default)]
    tsa: Option<RawTsa>,
    #[serde(default)]
    control: RawControl,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    #[serde(default)]
    socket: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTsa {
    #[serde(default)]
    ca: Option<String>,
    #[serde(default)]
    algorithm: TsaAlgorithm,
    #[serde(default = "default_tsa_policy")]
    policy: String,
    #[serde(default = "default_tsa_accuracy")]
    accuracy_ms: u32,
    #[serde(default = "default_tsa_label")]
    p256_label: String,
    #[serde(default)]
    p256_certificate_file: Option<PathBuf>,
}

fn default_tsa_policy() -> String {
    // Under the documentation arc (IANA PEN 32473): operators set their own policy OID.
    "1.3.6.1.4.1.32473.3161.1".into()
}

fn default_tsa_accuracy() -> u32 {
    1000
}

fn default_tsa_label() -> String {
    "mcsd-tsa".into()
}

/// The TSA's key: a daemon-held SM2 key (HSM-wrapped) or a P-256 key the HSM holds natively.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TsaAlgorithm {
    #[default]
    Sm2,
    P256,
}

/// `[tsa]`: the time-stamp authority (RFC 3161) inside mcsd.
#[derive(Debug, Clone)]
pub struct TsaConfig {
    pub algorithm: TsaAlgorithm,
    /// The CA adapter that certifies the SM2 key (profile `tsa`).
    pub ca: String,
    /// The policy OID every token names.
    pub policy: der::asn1::ObjectIdentifier,
    pub accuracy_ms: u32,
    /// The P-256 key's label on the token.
    pub p256_label: String,
    /// PEM: the P-256 key's certificate, then its chain (from the operator's CA; `mcsd tsa
    /// csr` makes the request).
    pub p256_certificate_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPush {
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    public_key_file: Option<PathBuf>,
    #[serde(default)]
    checkpoint_file: Option<PathBuf>,
    #[serde(default)]
    syslog_socket: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    library: PathBuf,
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default = "default_plugin_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_plugin_concurrency")]
    max_concurrency: usize,
}

fn default_plugin_timeout() -> u64 {
    10_000
}
fn default_plugin_concurrency() -> usize {
    4
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTasks {
    #[serde(default = "default_task_ttl")]
    default_ttl_secs: u64,
    #[serde(default = "default_task_max_ttl")]
    max_ttl_secs: u64,
    #[serde(default = "default_task_retention")]
    retention_secs: u64,
    #[serde(default = "default_sweep_interval")]
    sweep_interval_secs: u64,
    #[serde(default = "default_max_wait")]
    max_wait_secs: u64,
    #[serde(default = "default_max_plaintext")]
    max_plaintext_bytes: usize,
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default = "default_callback_attempts")]
    callback_max_attempts: u32,
    #[serde(default)]
    callback_ca_file: Option<PathBuf>,
    #[serde(default = "default_callback_concurrency")]
    callback_concurrency: usize,
    #[serde(default = "default_callback_concurrency_per_platform")]
    callback_concurrency_per_platform: usize,
    #[serde(default = "default_callback_connect_timeout")]
    callback_connect_timeout_ms: u64,
    #[serde(default = "default_callback_timeout")]
    callback_timeout_ms: u64,
    #[serde(default)]
    allow_private_callbacks: bool,
    #[serde(default = "default_max_open_tasks")]
    max_open_tasks_per_platform: u64,
    #[serde(default = "default_max_open_bytes")]
    max_open_bytes_per_platform: u64,
    /// Per-platform overrides, keyed by platform id.
    #[serde(default)]
    platforms: std::collections::BTreeMap<String, RawPlatformTasks>,
}

/// `[tasks.platforms."<id>"]`: one platform's callback rules and quotas.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlatformTasks {
    #[serde(default)]
    callback_hosts: Option<Vec<String>>,
    #[serde(default)]
    allow_private_callbacks: Option<bool>,
    #[serde(default)]
    callback_concurrency: Option<usize>,
    #[serde(default)]
    max_open_tasks: Option<u64>,
    #[serde(default)]
    max_open_bytes: Option<u64>,
}

impl Default for RawTasks {
    fn default() -> Self {
        RawTasks {
            default_ttl_secs: default_task_ttl(),
            max_ttl_secs: default_task_max_ttl(),
            retention_secs: default_task_retention(),
            sweep_interval_secs: default_sweep_interval(),
            max_wait_secs: default_max_wait(),
            max_plaintext_bytes: default_max_plaintext(),
            public_url: None,
            callback_max_attempts: default_callback_attempts(),
            callback_ca_file: None,
            callback_concurrency: default_callback_concurrency(),
            callback_concurrency_per_platform: default_callback_concurrency_per_platform(),
            callback_connect_timeout_ms: default_callback_connect_timeout(),
            callback_timeout_ms: default_callback_timeout(),
            allow_private_callbacks: false,
            max_open_tasks_per_platform: default_max_open_tasks(),
            max_open_bytes_per_platform: default_max_open_bytes(),
            platforms: Default::default(),
        }
    }
}

fn default_max_plaintext() -> usize {
    1 << 20
}
fn default_task_ttl() -> u64 {
    300
}
fn default_task_max_ttl() -> u64 {
    3600
}
fn default_task_retention() -> u64 {
    86400
}
fn default_sweep_interval() -> u64 {
    30
}
fn default_max_wait() -> u64 {
    60
}
fn default_callback_attempts() -> u32 {
    12
}
fn default_callback_concurrency() -> usize {
    64
}
fn default_callback_concurrency_per_platform() -> usize {
    4
}
fn default_callback_connect_timeout() -> u64 {
    3_000
}
fn default_callback_timeout() -> u64 {
    10_000
}
fn default_max_open_tasks() -> u64 {
    10_000
}
fn default_max_open_bytes() -> u64 {
    1 << 30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: String,
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default)]
    trust: Vec<RawTrust>,
    #[serde(default)]
    gateway_platforms: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    limits: RawConnectionLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnectionLimits {
    #[serde(default = "default_header_read_timeout")]
    header_read_timeout_secs: u64,
    #[serde(default = "default_idle_timeout")]
    idle_timeout_secs: u64,
    #[serde(default = "default_request_timeout")]
    request_timeout_secs: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_max_connections_per_peer")]
    max_connections_per_peer: usize,
}

impl Default for RawConnectionLimits {
    fn default() -> Self {
        RawConnectionLimits {
            header_read_timeout_secs: default_header_read_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            request_timeout_secs: default_request_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_connections_per_peer(),
        }
    }
}

fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_request_timeout() -> u64 {
    30
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_peer() -> usize {
    256
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    ca_file: PathBuf,
    roles: Vec<Role>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(default = "default_health_listen")]
    listen: String,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth { listen: default_health_listen() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHsm {
    module: PathBuf,
    token_label: String,
    pin_file: Option<PathBuf>,
    pin_credential: Option<String>,
    #[serde(default = "default_kek_label")]
    kek_label: String,
    #[serde(default)]
    sessions: usize,
    #[serde(default = "default_reinit_ms")]
    reinit_interval_ms: u64,
    inline_calls: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default)]
    backend: Backend,
    path: Option<PathBuf>,
    #[serde(default = "default_cache_mb")]
    cache_mb: u64,
    url: Option<String>,
    password_file: Option<PathBuf>,
    #[serde(default = "default_pool_size")]
    pool_size: usize,
    node_id: Option<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// `[store] backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded, one process: `[store] path`.
    #[default]
    Sled,
    /// Shared by any number of nodes: `[store] url`.
    Postgres,
}

fn default_pool_size() -> usize {
    16
}

/// The host name, the default `[store] node_id`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "mcsd".into())
}

fn default_cache_mb() -> u64 {
    DEFAULT_CACHE_MB
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    #[serde(default = "default_pin_attempts")]
    pin_max_attempts: u32,
    #[serde(default = "default_enrollment_ttl")]
    enrollment_ttl_hours: u64,
    #[serde(default = "default_expiry_notice_days")]
    expiry_notice_days: u32,
    #[serde(default = "default_expiry_check_secs")]
    expiry_check_interval_secs: u64,
    #[serde(default = "default_pin_reset_ttl")]
    pin_reset_ttl_hours: u64,
}

impl Default for RawKeys {
    fn default() -> Self {
        RawKeys {
            pin_max_attempts: default_pin_attempts(),
            enrollment_ttl_hours: default_enrollment_ttl(),
            expiry_notice_days: default_expiry_notice_days(),
            expiry_check_interval_secs: default_expiry_check_secs(),
            pin_reset_ttl_hours: default_pin_reset_ttl(),
        }
    }
}

fn default_pin_reset_ttl() -> u64 {
    24
}

fn default_expiry_notice_days() -> u32 {
    30
}

fn default_expiry_check_secs() -> u64 {
    3600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_log_format")]
    format: LogFormat,
    #[serde(default = "default_log_level")]
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { format: default_log_format(), level: default_log_level() }
    }
}

fn default_max_body() -> usize {
    1 << 20
}
fn default_health_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_kek_label() -> String {
    "mcsd-kek".into()
}
fn default_reinit_ms() -> u64 {
    1000
}
fn default_pin_attempts() -> u32 {
    5
}
fn default_enrollment_ttl() -> u64 {
    72
}
fn default_log_format() -> LogFormat {
    LogFormat::Text
}
fn default_log_level() -> String {
    "info".into()
}

// ---- validated ------------------------------------------------------------------------

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub api: ApiConfig,
    pub health: HealthConfig,
    pub hsm: HsmConfig,
    pub store: StoreConfig,
    pub keys: KeysConfig,
    pub tasks: TasksConfig,
    pub plugins: Vec<PluginConfig>,
    pub seals: SealsConfig,
    pub log: LogConfig,
    pub audit: AuditConfig,
    pub push: PushConfig,
    pub control: ControlConfig,
    /// Absent: no time-stamp authority (`POST /v1/timestamp` is `409`, PDF signatures carry
    /// no time-stamp).
    pub tsa: Option<TsaConfig>,
}

/// `[control]`: the operator commands' Unix socket (`mcsd backup`, `drain`, `hsm
/// rotate-kek`, `audit verify` of a running node …), owner-only.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Default `<store.path>.sock`; under systemd `/run/mcsd/control.sock`
    /// (`RuntimeDirectory=mcsd`).
    pub socket: PathBuf,
}

/// `[push]`: wake apps through a push service when their inbox gets an item.
#[derive(Debug, Clone, Default)]
pub struct PushConfig {
    /// `https://` URL POSTed `{device_id, type, id}` (no content) over mutual TLS, with the
    /// callbacks' client identity, roots, timeouts and retries.
    pub url: Option<String>,
}

/// Where the audit chain is anchored outside the store (see `audit.rs`).
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// PEM public key of the daemon-held audit key; the store's must match it.
    pub public_key_file: Option<PathBuf>,
    /// Append-only JSON lines, one per signed checkpoint.
    pub checkpoint_file: Option<PathBuf>,
    /// A local syslog datagram socket (`/dev/log`) that gets each checkpoint.
    pub syslog_socket: Option<PathBuf>,
}

/// One CA adapter library to load.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The name enrollments use as `ca`.
    pub name: String,
    /// Absolute path of the shared library.
    pub library: PathBuf,
    /// Passed to the adapter as JSON.
    pub config: serde_json::Value,
    pub timeout: Duration,
    pub max_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct TasksConfig {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    /// How long finished tasks are kept before the sweeper purges them.
    pub retention: Duration,
    pub sweep_interval: Duration,
    /// Longest `?wait=` a result long-poll may ask for.
    pub max_wait: Duration,
    /// A digital envelope's content up to this size is decrypted by the daemon (the result
    /// is `plaintext`); a larger one, or none, gets `content_key`.
    pub max_plaintext_bytes: usize,
    /// The daemon address phones reach, carried in the QR string.
    pub public_url: String,
    pub callback_max_attempts: u32,
    /// CA certificates for verifying callback receivers (default: the API trust anchors).
    pub callback_ca_files: Vec<PathBuf>,
    /// Callback deliveries in flight, all platforms together.
    pub callback_concurrency: usize,
    /// Resolving a callback host and connecting to it (shorter than `callback_timeout`).
    pub callback_connect_timeout: Duration,
    /// One whole delivery attempt: connect, TLS, request, answer.
    pub callback_timeout: Duration,
    /// The rules for a platform without its own `[tasks.platforms."<id>"]`.
    pub platform_defaults: PlatformTasks,
    /// Platforms with their own table, the defaults filled in.
    pub platforms: std::collections::BTreeMap<String, PlatformTasks>,
}

impl TasksConfig {
    /// The callback rules and quotas of `platform`.
    pub fn platform(&self, platform: &str) -> &PlatformTasks {
        self.platforms.get(platform).unwrap_or(&self.platform_defaults)
    }
}

/// One platform's callback rules and quotas on its open (unfinished) tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformTasks {
    /// Open tasks at once; one more is `429 rate_limited`.
    pub max_open_tasks: u64,
    /// Bytes the open tasks take in the store (record and wrapped inputs, at creation).
    pub max_open_bytes: u64,
    /// Callback deliveries in flight for this platform.
    pub callback_concurrency: usize,
    pub callback: crate::model::callback_target::TargetPolicy,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub max_body_bytes: usize,
    pub trust: Vec<TrustAnchor>,
    /// Certificate subject (RFC 4514 text) → platform id, for gateways whose certificate
    /// has no `urn:mcs:platform:<id>` SAN URI.
    pub gateway_platforms: std::collections::BTreeMap<String, String>,
    pub limits: ConnectionLimits,
}

/// What one connection may hold, and for how long (`[api.limits]`).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// TLS handshake, and each request's header block, must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// One request (body included), beyond a long-poll's own `wait`.
    pub request_timeout: Duration,
    /// Open connections in all (API listener), before TLS; excess ones are closed at once.
    pub max_connections: usize,
    /// Open connections from one IP address; 0 means no per-peer bound.
    pub max_connections_per_peer: usize,
}

/// A CA whose certificates are accepted, and for which roles.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    pub ca_file: PathBuf,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub listen: SocketAddr,
}

/// Where the HSM PIN comes from.
#[derive(Debug, Clone)]
pub enum PinSource {
    File(PathBuf),
    /// A systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

#[derive(Debug, Clone)]
pub struct HsmConfig {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: PinSource,
    pub kek_label: String,
    /// Number of PKCS#11 sessions in the pool.
    pub sessions: usize,
    /// Minimum time between two re-initialisation attempts after a device error.
    pub reinit_interval: Duration,
    /// HSM calls (with the arithmetic on what they unwrap) that may run at once on the
    /// async workers rather than the blocking pool ([`crate::os::secret_work`]).
    pub inline_calls: usize,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    /// sled: the database directory. postgres: this node's local base path (the control
    /// socket is `<path>.sock`); default `node` beside the configuration file.
    pub path: PathBuf,
    /// sled's page cache, MiB (its estimate; reads of random records hold more for a while).
    pub cache_mb: u64,
    /// postgres only.
    pub postgres: Option<PostgresConfig>,
}

/// `[store]` for `backend = "postgres"`.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// A libpq connection string, `key=value …` or `postgresql://…` (multi-host allowed).
    pub url: String,
    /// The password, read from this file at start (kept out of the configuration).
    pub password_file: Option<PathBuf>,
    pub pool_size: usize,
    /// Names this node's audit chain; unique among running nodes (default: the host name).
    pub node_id: String,
    /// TLS to the database: the CA that certifies the server (and a client certificate).
    pub tls: Option<PgTlsConfig>,
}

#[derive(Debug, Clone)]
pub struct PgTlsConfig {
    pub ca_file: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub pin_max_attempts: u32,
    pub enrollment_ttl: Duration,
    /// How long before a certificate's `not_after` its holders are told (once).
    pub expiry_notice: Duration,
    /// How often the certificates are checked for that.
    pub expiry_check_interval: Duration,
    /// How long a PIN-reset code stays usable.
    pub pin_reset_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

impl Config {
    /// `[store]`: which backend, and its settings (the other backend's keys refused).
    fn store(raw: &RawStore, abs: &dyn Fn(&Path) -> PathBuf) -> Result<StoreConfig, ConfigError> {
        let invalid = |why: &str| Err(ConfigError::Invalid(format!("store: {why}")));
        let pg_keys = [
            ("url", raw.url.is_some()),
            ("password_file", raw.password_file.is_some()),
            ("node_id", raw.node_id.is_some()),
            ("ca_file", raw.ca_file.is_some()),
            ("cert_file", raw.cert_file.is_some()),
            ("key_file", raw.key_file.is_some()),
        ];
        match raw.backend {
            Backend::Sled => {
                if let Some((key, _)) = pg_keys.iter().find(|(_, set)| *set) {
                    return invalid(&format!("{key} is a setting of backend = \"postgres\"; this store is sled"));
                }
                let Some(path) = &raw.path else { return invalid("path (the sled database directory) is required") };
                Ok(StoreConfig { backend: Backend::Sled, path: abs(path), cache_mb: raw.cache_mb, postgres: None })
            }
            Backend::Postgres => {
                let Some(url) = raw.url.clone().filter(|u| !u.trim().is_empty()) else {
                    return invalid("url (a libpq connection string) is required with backend = \"postgres\"");
                };
                if !(1..=1024).contains(&raw.pool_size) {
                    return invalid("pool_size must be 1..=1024");
                }
                let node_id = raw.node_id.clone().unwrap_or_else(host_name);
                if node_id.is_empty()
                    || node_id.len() > 64
                    || !node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return invalid("node_id must be 1..=64 characters of A-Z a-z 0-9 - _ .");
                }
                let tls = match (&raw.ca_file, &raw.cert_file, &raw.key_file) {
                    (None, None, None) => None,
                    (Some(ca), None, None) => Some(PgTlsConfig { ca_file: abs(ca), client: None }),
                    (Some(ca), Some(c), Some(k)) => {
                        Some(PgTlsConfig { ca_file: abs(ca), client: Some((abs(c), abs(k))) })
                    }
                    (None, _, _) => return invalid("cert_file and key_file need ca_file (TLS to the database)"),
                    _ => return invalid("cert_file and key_file go together"),
                };
                Ok(StoreConfig {
                    backend: Backend::Postgres,
                    path: abs(raw.path.as_deref().unwrap_or(Path::new("node"))),
                    cache_mb: raw.cache_mb,
                    postgres: Some(PostgresConfig {
                        url,
                        password_file: raw.password_file.as_deref().map(abs),
                        pool_size: raw.pool_size,
                        node_id,
                        tls,
                    }),
                })
            }
        }
    }

    /// Read, parse and validate the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &base).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.to_owned(), source },
            other => other,
        })
    }

    /// Parse and validate TOML text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: PathBuf::new(), source })?;
        let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let addr = |what: &str, s: &str| {
            s.parse::<SocketAddr>()
                .map_err(|e| ConfigError::Invalid(format!("{what}: `{s}` is not an address:port ({e})")))
        };

        if raw.api.trust.is_empty() {
            return Err(ConfigError::Invalid(
                "api.trust: at least one trust anchor is required (mutual TLS is mandatory)".into(),
            ));
        }
        let mut trust = Vec::new();
        for t in &raw.api.trust {
            if t.roles.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "api.trust[{}]: roles must name at least one of admin, gateway, app",
                    t.ca_file.display()
                )));
            }
            trust.push(TrustAnchor { ca_file: abs(&t.ca_file), roles: t.roles.clone() });
        }
        let lim = &raw.api.limits;
        if lim.header_read_timeout_secs == 0 || lim.idle_timeout_secs == 0 || lim.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid("api.limits timeouts must be at least 1 second".into()));
        }
        if lim.max_connections == 0 {
            return Err(ConfigError::Invalid("api.limits.max_connections must be at least 1".into()));
        }
        if raw.api.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid("api.max_body_bytes must be at least 1024".into()));
        }
        let pin = match (&raw.hsm.pin_file, &raw.hsm.pin_credential) {
            (Some(f), None) => PinSource::File(abs(f)),
            (None, Some(c)) if !c.is_empty() && !c.contains('/') => PinSource::Credential(c.clone()),
            (None, Some(_)) => {
                return Err(ConfigError::Invalid("hsm.pin_credential must be a plain credential name".into()));
            }
            _ => {
                return Err(ConfigError::Invalid("hsm: exactly one of pin_file or pin_credential must be set".into()));
            }
        };
        if raw.hsm.token_label.is_empty() || raw.hsm.token_label.len() > 32 {
            return Err(ConfigError::Invalid("hsm.token_label must be 1..=32 characters".into()));
        }
        if raw.hsm.kek_label.is_empty() {
            return Err(ConfigError::Invalid("hsm.kek_label must not be empty".into()));
        }
        if !(1..=365).contains(&raw.keys.expiry_notice_days) {
            return Err(ConfigError::Invalid("keys.expiry_notice_days must be 1..=365".into()));
        }
        if !(1..=86_400).contains(&raw.keys.expiry_check_interval_secs) {
            return Err(ConfigError::Invalid("keys.expiry_check_interval_secs must be 1..=86400".into()));
        }
        if raw.keys.pin_max_attempts == 0 || raw.keys.pin_max_attempts > 100 {
            return Err(ConfigError::Invalid("keys.pin_max_attempts must be 1..=100".into()));
        }
        if !(1..=65536).contains(&raw.store.cache_mb) {
            return Err(ConfigError::Invalid("store.cache_mb must be 1..=65536".into()));
        }
        let store = Self::store(&raw.store, &abs)?;
        // Bounded so that hours → seconds, and an expiry of now + ttl, cannot overflow.
        if !(1..=720).contains(&raw.keys.pin_reset_ttl_hours) {
            return Err(ConfigError::Invalid("keys.pin_reset_ttl_hours must be 1..=720 (30 days)".into()));
        }
        if !(1..=8760).contains(&raw.keys.enrollment_ttl_hours) {
            return Err(ConfigError::Invalid("keys.enrollment_ttl_hours must be 1..=8760 (a year)".into()));
        }
        let t = &raw.tasks;
        if !(1..=64 << 20).contains(&t.max_plaintext_bytes) {
            return Err(ConfigError::Invalid("tasks.max_plaintext_bytes must be 1..=67108864".into()));
        }
        if t.default_ttl_secs == 0 || t.max_ttl_secs < t.default_ttl_secs {
            return Err(ConfigError::Invalid("tasks: need 0 < default_ttl_secs <= max_ttl_secs".into()));
        }
        if t.sweep_interval_secs == 0 || t.callback_max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "tasks: sweep_interval_secs and callback_max_attempts must be positive".into(),
            ));
        }
        if let Some(url) = &t.public_url
            && !url.starts_with("https://")
        {
            return Err(ConfigError::Invalid("tasks.public_url must start with https://".into()));
        }
        let (platform_defaults, platforms) = platform_tasks(t)?;
        let mut plugins = Vec::new();
        for p in &raw.plugins {
            let ok_name = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok_name {
                return Err(ConfigError::Invalid(format!("plugins: `{}` is not a valid adapter name", p.name)));
            }
            if plugins.iter().any(|q: &PluginConfig| q.name == p.name) {
                return Err(ConfigError::Invalid(format!("plugins: `{}` is configured twice", p.name)));
            }
            if !p.library.is_absolute() {
                return Err(ConfigError::Invalid(format!("plugins.{}: library must be an absolute path", p.name)));
            }
            if p.timeout_ms == 0 || p.max_concurrency == 0 {
                return Err(ConfigError::Invalid(format!(
                    "plugins.{}: timeout_ms and max_concurrency must be positive",
                    p.name
                )));
            }
            let config = serde_json::to_value(p.config.clone().unwrap_or_default())
                .map_err(|e| ConfigError::Invalid(format!("plugins.{}.config: {e}", p.name)))?;
            plugins.push(PluginConfig {
                name: p.name.clone(),
                library: p.library.clone(),
                config,
                timeout: Duration::from_millis(p.timeout_ms),
                max_concurrency: p.max_concurrency,
            });
        }
        let sessions = match raw.hsm.sessions {
            0 => std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(4).max(4),
            n => n,
        };
        // One fewer than the async workers (one per CPU): one always stays free.
        let inline_calls = raw
            .hsm
            .inline_calls
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)));
        let plugin_names: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
        let tsa = raw.tsa.as_ref().map(|t| tsa(t, &abs, &plugin_names)).transpose()?;
        let control = ControlConfig {
            socket: match &raw.control.socket {
                Some(s) => abs(s),
                None => {
                    let mut p = store.path.as_os_str().to_owned();
                    p.push(".sock");
                    PathBuf::from(p)
                }
            },
        };
        Ok(Config {
            api: ApiConfig {
                listen: addr("api.listen", &raw.api.listen)?,
                cert_file: abs(&raw.api.cert_file),
                key_file: abs(&raw.api.key_file),
                max_body_bytes: raw.api.max_body_bytes,
                trust,
                gateway_platforms: raw.api.gateway_platforms,
                limits: ConnectionLimits {
                    header_read_timeout: Duration::from_secs(raw.api.limits.header_read_timeout_secs),
                    idle_timeout: Duration::from_secs(raw.api.limits.idle_timeout_secs),
                    request_timeout: Duration::from_secs(raw.api.limits.request_timeout_secs),
                    max_connections: raw.api.limits.max_connections,
                    max_connections_per_peer: raw.api.limits.max_connections_per_peer,
                },
            },
            health: HealthConfig { listen: addr("health.listen", &raw.health.listen)? },
            hsm: HsmConfig {
                module: abs(&raw.hsm.module),
                token_label: raw.hsm.token_label,
                pin,
                kek_label: raw.hsm.kek_label,
                sessions,
                reinit_interval: Duration::from_millis(raw.hsm.reinit_interval_ms.max(10)),
                inline_calls,
            },
            store,
            keys: KeysConfig {
                pin_max_attempts: raw.keys.pin_max_attempts,
                enrollment_ttl: Duration::from_secs(raw.keys.enrollment_ttl_hours * 3600),
                expiry_notice: Duration::from_secs(u64::from(raw.keys.expiry_notice_days) * 86_400),
                expiry_check_interval: Duration::from_secs(raw.keys.expiry_check_interval_secs),
                pin_reset_ttl: Duration::from_secs(raw.keys.pin_reset_ttl_hours * 3600),
            },
            tasks: TasksConfig {
                default_ttl: Duration::from_secs(raw.tasks.default_ttl_secs),
                max_ttl: Duration::from_secs(raw.tasks.max_ttl_secs),
                retention: Duration::from_secs(raw.tasks.retention_secs),
                sweep_interval: Duration::from_secs(raw.tasks.sweep_interval_secs),
                max_wait: Duration::from_secs(raw.tasks.max_wait_secs),
                max_plaintext_bytes: raw.tasks.max_plaintext_bytes,
                public_url: raw.tasks.public_url.clone().unwrap_or_default(),
                callback_max_attempts: raw.tasks.callback_max_attempts,
                callback_ca_files: match &raw.tasks.callback_ca_file {
                    Some(f) => vec![abs(f)],
                    None => raw.api.trust.iter().map(|t| abs(&t.ca_file)).collect(),
                },
                callback_concurrency: raw.tasks.callback_concurrency,
                callback_connect_timeout: Duration::from_millis(raw.tasks.callback_connect_timeout_ms),
                callback_timeout: Duration::from_millis(raw.tasks.callback_timeout_ms),
                platform_defaults,
                platforms,
            },
            plugins,
            seals: raw.seals.clone(),
            log: LogConfig { format: raw.log.format, level: raw.log.level },
            audit: AuditConfig {
                public_key_file: raw.audit.public_key_file.as_deref().map(abs),
                checkpoint_file: raw.audit.checkpoint_file.as_deref().map(abs),
                syslog_socket: raw.audit.syslog_socket.as_deref().map(abs),
            },
            push: PushConfig { url: push_url(&raw.push)? },
            control,
            tsa,
        })
    }
}

/// `[tsa]`, checked: an SM2 TSA needs a configured adapter, a P-256 one its certificate.
fn tsa(t: &RawTsa, abs: &dyn Fn(&Path) -> PathBuf, plugins: &[String]) -> Result<TsaConfig, ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(format!("tsa: {m}")));
    let policy = match t.policy.parse::<der::asn1::ObjectIdentifier>() {
        Ok(p) => p,
        Err(e) => return invalid(format!("policy `{}` is not an OID ({e})", t.policy)),
    };
    if !(1..=60_000).contains(&t.accuracy_ms) {
        return invalid("accuracy_ms must be 1..=60000".into());
    }
    if t.p256_label.is_empty() || t.p256_label.len() > 64 {
        return invalid("p256_label must be 1..=64 bytes".into());
    }
    let ca = t.ca.clone().unwrap_or_default();
    match t.algorithm {
        TsaAlgorithm::Sm2 if !plugins.contains(&ca) => {
            return invalid(format!("ca `{ca}` is not a configured CA adapter ([[plugins]] name)"));
        }
        TsaAlgorithm::P256 if t.p256_certificate_file.is_none() => {
            return invalid("algorithm p256 needs p256_certificate_file (make the request with `mcsd tsa csr`)".into());
        }
        _ => {}
    }
    Ok(TsaConfig {
        algorithm: t.algorithm,
        ca,
        policy,
        accuracy_ms: t.accuracy_ms,
        p256_label: t.p256_label.clone(),
        p256_certificate_file: t.p256_certificate_file.as_deref().map(abs),
    })
}

fn push_url(p: &RawPush) -> Result<Option<String>, ConfigError> {
    let Some(url) = &p.url else { return Ok(None) };
    crate::model::callback_target::CallbackUrl::parse(url)
        .map_err(|why| ConfigError::Invalid(format!("push.url {why}")))?;
    Ok(Some(url.clone()))
}

/// Validate `[tasks]`'s callback and quota settings: the defaults, and each platform's
/// table with the defaults filled in.
fn platform_tasks(
    t: &RawTasks,
) -> Result<(PlatformTasks, std::collections::BTreeMap<String, PlatformTasks>), ConfigError> {
    use crate::model::callback_target::{HostPattern, TargetPolicy};
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    if !(1..=4096).contains(&t.callback_concurrency) || !(1..=4096).contains(&t.callback_concurrency_per_platform) {
        return invalid("tasks: callback_concurrency and callback_concurrency_per_platform must be 1..=4096".into());
    }
    if t.callback_timeout_ms == 0 || t.callback_timeout_ms > 600_000 {
        return invalid("tasks.callback_timeout_ms must be 1..=600000".into());
    }
    if t.callback_connect_timeout_ms == 0 || t.callback_connect_timeout_ms >= t.callback_timeout_ms {
        return invalid(
            "tasks.callback_connect_timeout_ms must be positive and shorter than callback_timeout_ms".into(),
        );
    }
    if t.max_open_tasks_per_platform == 0 || t.max_open_bytes_per_platform == 0 {
        return invalid("tasks: max_open_tasks_per_platform and max_open_bytes_per_platform must be positive".into());
    }
    let defaults = PlatformTasks {
        max_open_tasks: t.max_open_tasks_per_platform,
        max_open_bytes: t.max_open_bytes_per_platform,
        callback_concurrency: t.callback_concurrency_per_platform,
        callback: TargetPolicy { hosts: None, allow_private: t.allow_private_callbacks },
    };
    let mut platforms = std::collections::BTreeMap::new();
    for (id, p) in &t.platforms {
        let key = format!("tasks.platforms.\"{id}\"");
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
            return invalid(format!("{key}: a platform id must be 1..=128 printable characters"));
        }
        let hosts = match &p.callback_hosts {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|h| {
                        HostPattern::parse(h)
                            .map_err(|e| ConfigError::Invalid(format!("{key}.callback_hosts: `{h}`: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let resolved = PlatformTasks {
            max_open_tasks: p.max_open_tasks.unwrap_or(defaults.max_open_tasks),
            max_open_bytes: p.max_open_bytes.unwrap_or(defaults.max_open_bytes),
            callback_concurrency: p.callback_concurrency.unwrap_or(defaults.callback_concurrency),
            callback: TargetPolicy {
                hosts,
                allow_private: p.allow_private_callbacks.unwrap_or(defaults.callback.allow_private),
            },
        };
        if resolved.max_open_tasks == 0 || resolved.max_open_bytes == 0 {
            return invalid(format!("{key}: max_open_tasks and max_open_bytes must be positive"));
        }
        if !(1..=4096).contains(&resolved.callback_concurrency) {
            return invalid(format!("{key}.callback_concurrency must be 1..=4096"));
        }
        platforms.insert(id.clone(), resolved);
    }
    Ok((defaults, platforms))
}

impl PinSource {
    /// Read the PIN (trailing newline stripped). Kept in zeroizing memory by the caller.
    pub fn read(&self) -> Result<zeroize::Zeroizing<String>, String> {
        let path = match self {
            PinSource::File(p) => p.clone(),
            PinSource::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| format!("credential `{name}`: $CREDENTIALS_DIRECTORY is not set"))?;
                Path::new(&dir).join(name)
            }
        };
        let mut s = std::fs::read_to_string(&path).map_err(|e| format!("HSM PIN {}: {e}", path.display()))?;
        while s.ends_with('\n') || s.ends_with('\r') {
            s.pop();
        }
        Ok(zeroize::Zeroizing::new(s))
    }
}

/// The smallest valid configuration (unit tests here and in the domain build on it).
#[cfg(test)]
pub(crate) const MINIMAL: &str = r#"
        [api]
        listen = "127.0.0.1:0"
        cert_file = "pki/server.pem"
        key_file = "pki/server.key"
        [[api.trust]]
        ca_file = "pki/ca.pem"
        roles = ["admin", "gateway", "app"]
        [hsm]
        module = "/usr/lib/softhsm/libsofthsm2.so"
        token_label = "mcsd"
        pin_file = "hsm-pin"
        [store]
        path = "db"
    "#;

#[cfg(test)]
mod tests {
    use super::*;

    use super::MINIMAL;

    #[test]
    fn minimal_config_gets_defaults_and_absolute_paths() {
        let c = Config::parse(MINIMAL, Path::new("/etc/mcsd")).unwrap();
        assert_eq!(c.api.cert_file, Path::new("/etc/mcsd/pki/server.pem"));
        assert_eq!(c.store.path, Path::new("/etc/mcsd/db"));
        assert_eq!(c.keys.pin_max_attempts, 5);
        assert_eq!(c.health.listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(c.hsm.kek_label, "mcsd-kek");
        assert!(c.hsm.sessions >= 4);
        assert!(matches!(c.hsm.pin, PinSource::File(ref p) if p == Path::new("/etc/mcsd/hsm-pin")));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.hsm.inline_calls, cpus.saturating_sub(1).max(1), "CPUs − 1, at least 1");
        let pool = Config::parse(&MINIMAL.replace("[hsm]", "[hsm]\ninline_calls = 0"), Path::new("/")).unwrap();
        assert_eq!(pool.hsm.inline_calls, 0, "0: always the blocking pool");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = MINIMAL.replace("[store]", "[store]\nfsync = true");
        let err = Config::parse(&text, Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("fsync"), "{err}");
    }

    #[test]
    fn invalid_values_are_rejected_with_the_key_named() {
        for (from, to, needle) in [
            ("listen = \"127.0.0.1:0\"", "listen = \"nowhere\"", "api.listen"),
            ("pin_file = \"hsm-pin\"", "", "pin_file or pin_credential"),
            ("roles = [\"admin\", \"gateway\", \"app\"]", "roles = []", "roles"),
            ("[store]", "[store]\ncache_mb = 0", "store.cache_mb"),
        ] {
            let err = Config::parse(&MINIMAL.replace(from, to), Path::new("/")).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    /// Crashed the `config` fuzz target: hours × 3600 overflowed (a panic in debug builds,
    /// a wrapped, meaningless lifetime in release builds).
    #[test]
    fn enrollment_ttl_hours_too_large_to_be_seconds_is_rejected() {
        let text = format!("{MINIMAL}\n[keys]\nenrollment_ttl_hours = 9000000000000000\n");
        let err = Config::parse(&text, Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("keys.enrollment_ttl_hours"), "{err}");
        let text = format!("{MINIMAL}\n[keys]\nenrollment_ttl_hours = 8760\n");
        assert_eq!(
            Config::parse(&text, Path::new("/")).unwrap().keys.enrollment_ttl,
            std::time::Duration::from_secs(8760 * 3600)
        );
    }

    #[test]
    fn callback_and_quota_settings_have_defaults_and_per_platform_overrides() {
        let c = Config::parse(MINIMAL, Path::new("/")).unwrap();
        let t = &c.tasks;
        assert_eq!(
            (t.callback_concurrency, t.callback_connect_timeout, t.callback_timeout),
            (64, Duration::from_secs(3), Duration::from_secs(10))
        );
        let d = t.platform("P-ANY");
        assert_eq!((d.max_open_tasks, d.max_open_bytes, d.callback_concurrency), (10_000, 1 << 30, 4));
        assert_eq!(
            d.callback,
            crate::model::callback_target::TargetPolicy { hosts: None, allow_private: false },
            "private targets are refused by default"
        );

        let text = format!(
            "{MINIMAL}\n[tasks]\nmax_open_tasks_per_platform = 50\ncallback_concurrency_per_platform = 2\n\
             [tasks.platforms.\"P-1\"]\ncallback_hosts = [\"GW.example.cn\", \"*.cb.example.cn\"]\nmax_open_bytes = 4096\n\
             [tasks.platforms.\"P-DEV\"]\nallow_private_callbacks = true\ncallback_concurrency = 8\n"
        );
        let c = Config::parse(&text, Path::new("/")).unwrap();
        let p1 = c.tasks.platform("P-1");
        assert_eq!(
            (p1.max_open_tasks, p1.max_open_bytes, p1.callback_concurrency, p1.callback.allow_private),
            (50, 4096, 2, false)
        );
        let hosts = p1.callback.hosts.as_ref().unwrap();
        assert_eq!(hosts.len(), 2);
        let url = |u: &str| crate::model::callback_target::CallbackUrl::parse(u).unwrap();
        assert!(p1.callback.check_url(&url("https://gw.example.cn/cb")).is_ok());
        assert!(p1.callback.check_url(&url("https://other.example.cn/cb")).is_err());
        let dev = c.tasks.platform("P-DEV");
        assert_eq!(
            (dev.max_open_tasks, dev.callback_concurrency, dev.callback.allow_private, dev.callback.hosts.is_none()),
            (50, 8, true, true)
        );
        assert_eq!(c.tasks.platform("P-OTHER").max_open_tasks, 50);

        // `mcsd dev-init` writes platform tables; a `[tasks]` appended later still loads.
        let text = format!(
            "{MINIMAL}\n[tasks.platforms.\"P-DEV-1\"]\nallow_private_callbacks = true\n[tasks]\nretention_secs = 2\n"
        );
        let c = Config::parse(&text, Path::new("/")).unwrap();
        assert!(c.tasks.platform("P-DEV-1").callback.allow_private);
        assert_eq!(c.tasks.retention, Duration::from_secs(2));
    }

    #[test]
    fn invalid_callback_and_quota_settings_are_rejected_with_the_key_named() {
        for (extra, needle) in [
            ("[tasks]\ncallback_connect_timeout_ms = 10000", "callback_connect_timeout_ms"),
            ("[tasks]\ncallback_timeout_ms = 0", "callback_timeout_ms"),
            ("[tasks]\ncallback_concurrency = 0", "callback_concurrency"),
            ("[tasks]\nmax_open_tasks_per_platform = 0", "max_open_tasks_per_platform"),
            ("[tasks.platforms.\"P-1\"]\ncallback_hosts = [\"a b\"]", "tasks.platforms.\"P-1\".callback_hosts"),
            ("[tasks.platforms.\"P-1\"]\ncallback_hosts = [\"*.10.0.0.1\"]", "callback_hosts"),
            ("[tasks.platforms.\"P-1\"]\nmax_open_bytes = 0", "tasks.platforms.\"P-1\""),
            ("[tasks.platforms.\"P-1\"]\ncallback_concurrency = 0", "callback_concurrency"),
            ("[tasks.platforms.\"P-1\"]\nallow_private = true", "allow_private"),
            ("[tasks.platforms.\"\"]\nmax_open_tasks = 1", "platform id"),
        ] {
            let err = Config::parse(&format!("{MINIMAL}\n{extra}\n"), Path::new("/")).unwrap_err();
            assert!(err.to_string().contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/mcsd.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.keys.pin_max_attempts, 5);
        // The example shows each [tasks] setting at its default.
        let defaults = Config::parse(MINIMAL, Path::new("/")).unwrap().tasks;
        assert_eq!(c.tasks.platform_defaults, defaults.platform_defaults);
        assert_eq!(
            (c.tasks.callback_concurrency, c.tasks.callback_connect_timeout, c.tasks.callback_timeout),
            (defaults.callback_concurrency, defaults.callback_connect_timeout, defaults.callback_timeout)
        );
        assert!(
            c.audit.public_key_file.is_some() && c.audit.checkpoint_file.is_some(),
            "the example anchors the audit chain"
        );
    }

    #[test]
    fn audit_anchors_default_to_none_and_resolve_relative_paths() {
        let c = Config::parse(MINIMAL, Path::new("/etc/mcsd")).unwrap();
        assert!(
            c.audit.public_key_file.is_none() && c.audit.checkpoint_file.is_none() && c.audit.syslog_socket.is_none()
        );
        let text = format!(
            "{MINIMAL}\n[audit]\npublic_key_file = \"audit-key.pem\"\ncheckpoint_file = \"/var/log/mcsd/cp.jsonl\"\n"
        );
        let c = Config::parse(&text, Path::new("/etc/mcsd")).unwrap();
        assert_eq!(c.audit.public_key_file.as_deref(), Some(Path::new("/etc/mcsd/audit-key.pem")));
        assert_eq!(c.audit.checkpoint_file.as_deref(), Some(Path::new("/var/log/mcsd/cp.jsonl")));
        let err = Config::parse(&format!("{MINIMAL}\n[audit]\npublic_key = \"x\"\n"), Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("public_key"), "{err}");
    }
}

/// `[store] cache_mb` when not set: sled's page cache, in MiB.
pub const DEFAULT_CACHE_MB: u64 = 8;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SealsConfig {
    /// The CA adapter that certifies the seal maker.
    pub maker_ca: String,
    /// GB/T 38540 `Vid` (vendor id) written into every seal.
    pub vendor_id: String,
    /// Bytes reserved for the signature container beyond the seal and certificates.
    pub signature_reserve: usize,
    /// The CJK font (TTF/OTF/TTC) template seals are drawn with; default: the first of
    /// Debian's CJK fonts found (fonts-wqy-zenhei, fonts-wqy-microhei, fonts-noto-cjk, …).
    pub font_file: Option<PathBuf>,
}

impl Default for SealsConfig {
    fn default() -> Self {
        SealsConfig { maker_ca: "local".into(), vendor_id: "mcsd".into(), signature_reserve: 8192, font_file: None }
    }
}
