//! `mcsd dev-init --dir DIR`: a complete development environment in one directory.
//!
//! Creates `DIR/softhsm2.conf` with its own token directory, a SoftHSM token labelled
//! `mcsd` with a random user PIN in `DIR/hsm-pin`, a dev PKI under `DIR/pki/` (one CA that
//! signs the server, admin, two gateways and two phones), `DIR/mcsd.toml` (port 0 for both
//! listeners), the KEK, by running `mcsd hsm init` against that config, and the pinned
//! audit key `DIR/audit-key.pem`, by running `mcsd audit export-key`; the daemon exports
//! its checkpoints to `DIR/audit-checkpoints.jsonl`. The HSM's P-256 keys (the TSA's, the
//! document signer's of `mcsd pdf sign-p256`) get certificates from the dev CA
//! (`pki/tsa-p256.pem`, `pki/pdf-p256.pem`), and the dev CA a CRL (`pki/ca.crl`).
//!
//! Two layouts ([`Layout`]):
//! - `single`: the dev CA is trusted for all three roles, so each client certificate names
//!   its role with a SAN URI `urn:mcs:role:<role>`; gateways carry `urn:mcs:platform:<id>`.
//! - `production`: as `config/mcsd.toml` documents — a separate CA per role
//!   (`pki/operators-ca.pem`, `pki/platforms-ca.pem`, `pki/phones-ca.pem`), each trusted for
//!   its one role; `pki/ca.pem` only issues the server certificate (and is the CA of
//!   callback receivers). The same file names for the leaves, so clients need not know.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum DevInitError {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Pki(String),
    #[error("{0}")]
    Setup(String),
}

const TOKEN_LABEL: &str = "mcsd";

/// How the dev PKI is cut (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Layout {
    #[default]
    Single,
    Production,
}

/// Where Debian and others install SoftHSM's module.
const SOFTHSM_MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

pub fn find_softhsm_module() -> Option<PathBuf> {
    SOFTHSM_MODULES.iter().map(PathBuf::from).find(|p| p.exists())
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> DevInitError {
    DevInitError::Io(format!("{what} {}: {e}", path.display()))
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), DevInitError> {
    fs::write(path, contents).map_err(|e| io("writing", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io("chmod", path, e))
}

fn random_hex(n: usize) -> Result<String, DevInitError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| DevInitError::Setup(format!("OS RNG: {e}")))?;
    Ok(hex::encode(b))
}

/// Create the environment. `module` overrides the SoftHSM module path written to the
/// config (tests point it at `pkcs11-mock`); the token is always made with SoftHSM.
/// Where the dev environment keeps its state.
#[derive(Debug, Clone, Default)]
pub enum DevStore {
    /// sled in `DIR/db`.
    #[default]
    Sled,
    /// A PostgreSQL database (a libpq connection string), as this node.
    Postgres { url: String, node_id: Option<String> },
}

impl DevStore {
    fn section(&self) -> String {
        match self {
            DevStore::Sled => "[store]\npath = \"db\"\n".into(),
            DevStore::Postgres { url, node_id } => {
                let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
                let node = match node_id {
                    Some(n) => format!("node_id = {}\n", quoted(n)),
                    None => "# node_id: the host name unless set; unique among the nodes sharing the database\n".into(),
                };
                format!(
                    "# Shared with the other nodes of the cluster (each with its own node_id).\n[store]\nbackend = \"postgres\"\nurl = {}\n{node}# This node's local base path (its control socket).\npath = \"node\"\n",
                    quoted(url)
                )
            }
        }
    }
}

/// Copy a directory tree, keeping each file's mode.
fn copy_tree(from: &Path, to: &Path) -> Result<(), DevInitError> {
    fs::create_dir_all(to).map_err(|e| io("creating", to, e))?;
    let mode = fs::metadata(from).map_err(|e| io("reading", from, e))?.permissions();
    fs::set_permissions(to, mode).map_err(|e| io("chmod", to, e))?;
    for entry in fs::read_dir(from).map_err(|e| io("reading", from, e))? {
        let entry = entry.map_err(|e| io("reading", from, e))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|e| io("reading", &entry.path(), e))?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).map_err(|e| io("copying", &entry.path(), e))?;
        }
    }
    Ok(())
}

/// `mcsd dev-init --dir DIR --join FROM --node-id ID`: another node of the dev cluster
/// whose first node `FROM` made with `--store-url`. It gets a copy of FROM's SoftHSM token
/// (standing in for an HSM cluster holding the same KEK), its PKI, HSM PIN and pinned audit
/// key, and FROM's configuration with its own node id; the shared database is FROM's.
pub fn dev_join(dir: &Path, from: &Path, node_id: &str) -> Result<(), DevInitError> {
    if dir.join("mcsd.toml").exists() {
        return Err(DevInitError::Setup(format!("{} already holds a dev environment", dir.display())));
    }
    let from = fs::canonicalize(from).map_err(|e| io("resolving", from, e))?;
    let config = fs::read_to_string(from.join("mcsd.toml")).map_err(|e| io("reading", &from.join("mcsd.toml"), e))?;
    if !config.contains("backend = \"postgres\"") {
        return Err(DevInitError::Setup(format!(
            "{} keeps its state in sled, which one node owns: make the first node with --store-url",
            from.display()
        )));
    }
    fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let dir = fs::canonicalize(dir).map_err(|e| io("resolving", dir, e))?;
    for sub in ["tokens", "pki"] {
        copy_tree(&from.join(sub), &dir.join(sub))?;
    }
    for file in ["hsm-pin", "audit-key.pem"] {
        fs::copy(from.join(file), dir.join(file)).map_err(|e| io("copying", &from.join(file), e))?;
    }
    let softhsm = fs::read_to_string(from.join("softhsm2.conf")).map_err(|e| io("reading", &from, e))?;
    let softhsm =
        softhsm.replace(&from.join("tokens").display().to_string(), &dir.join("tokens").display().to_string());
    write_file(&dir.join("softhsm2.conf"), softhsm.as_bytes(), 0o644)?;
    let node_line = format!("node_id = {}", toml::Value::String(node_id.to_owned()));
    let mut joined: Vec<String> = Vec::new();
    let mut in_store = false;
    for line in config.lines() {
        if line.starts_with('[') {
            in_store = line.trim() == "[store]";
        }
        if in_store && (line.starts_with("node_id") || line.starts_with("# node_id")) {
            continue;
        }
        joined.push(line.replace(&from.display().to_string(), &dir.display().to_string()));
        if line.trim() == "[store]" {
            joined.push(node_line.clone());
        }
    }
    write_file(&dir.join("mcsd.toml"), (joined.join("\n") + "\n").as_bytes(), 0o644)
}

pub fn dev_init(dir: &Path, module: Option<&Path>, layout: Layout, store: &DevStore) -> Result<(), DevInitError> {
    if dir.join("mcsd.toml").exists() {
        return Err(DevInitError::Setup(format!("{} already holds a dev environment", dir.display())));
    }
    let softhsm = find_softhsm_module()
        .ok_or_else(|| DevInitError::Setup("SoftHSM not found; install it: apt-get install -y softhsm2".into()))?;
    let dir = fs::canonicalize({
        fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        dir
    })
    .map_err(|e| io("resolving", dir, e))?;
    for sub in ["pki", "tokens", "db"] {
        fs::create_dir_all(dir.join(sub)).map_err(|e| io("creating", &dir.join(sub), e))?;
    }
    fs::set_permissions(dir.join("tokens"), fs::Permissions::from_mode(0o700))
        .map_err(|e| io("chmod", &dir.join("tokens"), e))?;

    let softhsm_conf = dir.join("softhsm2.conf");
    write_file(
        &softhsm_conf,
        format!(
            "# SoftHSM configuration for this mcsd dev environment\n\
             directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            dir.join("tokens").display()
        )
        .as_bytes(),
        0o644,
    )?;
    let pin = random_hex(8)?;
    let so_pin = random_hex(8)?;
    write_file(&dir.join("hsm-pin"), pin.as_bytes(), 0o600)?;
    let status = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &softhsm_conf)
        .args(["--init-token", "--free", "--label", TOKEN_LABEL, "--so-pin", &so_pin, "--pin", &pin])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| DevInitError::Setup(format!("running softhsm2-util: {e} (apt-get install -y softhsm2)")))?;
    if !status.success() {
        return Err(DevInitError::Setup(format!("softhsm2-util --init-token failed: {status}")));
    }

    write_pki(&dir.join("pki"), layout)?;
    let trust = match layout {
        Layout::Single => {
            "[[api.trust]]\nca_file = \"pki/ca.pem\"\nroles = [\"admin\", \"gateway\", \"app\"]\n".to_owned()
        }
        Layout::Production => ROLE_CAS
            .iter()
            .map(|(file, _, role)| format!("[[api.trust]]\nca_file = \"pki/{file}.pem\"\nroles = [\"{role}\"]\n\n"))
            .collect(),
    };
    let module = module.map(Path::to_path_buf).unwrap_or(softhsm);
    let plugins = local_ca_plugin();
    let config = format!(
        r#"# mcsd dev configuration, written by `mcsd dev-init`. Run with
#   SOFTHSM2_CONF={conf} mcsd run --config {cfg}
[api]
listen = "127.0.0.1:0"
cert_file = "pki/server.pem"
key_file = "pki/server.key"

{trust}
[health]
listen = "127.0.0.1:0"

[hsm]
module = "{module}"
token_label = "{TOKEN_LABEL}"
pin_file = "hsm-pin"

{store}
# The audit chain, anchored outside the store: the pinned audit key (written by
# `mcsd audit export-key`) and every signed checkpoint.
[audit]
public_key_file = "audit-key.pem"
checkpoint_file = "audit-checkpoints.jsonl"
{platforms}{plugins}{tsa}"#,
        conf = softhsm_conf.display(),
        cfg = dir.join("mcsd.toml").display(),
        module = module.display(),
        platforms = dev_platforms(),
        tsa = if plugins.is_empty() { "" } else { DEV_TSA },
        plugins = plugins,
        store = store.section(),
    );
    write_file(&dir.join("mcsd.toml"), config.as_bytes(), 0o644)?;

    // The KEK, the pinned audit key and the P-256 keys' requests are made by the commands
    // operators use, against that config.
    let exe = std::env::current_exe().map_err(|e| DevInitError::Setup(format!("locating mcsd: {e}")))?;
    let config_path = dir.join("mcsd.toml");
    let mcsd = |args: &[&str], out: Option<&Path>| -> Result<(), DevInitError> {
        let what = format!("mcsd {}", args.join(" "));
        let mut cmd = Command::new(&exe);
        cmd.env("SOFTHSM2_CONF", &softhsm_conf).args(args).arg("--config").arg(&config_path);
        match out {
            Some(file) => cmd.arg("--out").arg(file),
            None => cmd.stdout(std::process::Stdio::null()),
        };
        let status = cmd.status().map_err(|e| DevInitError::Setup(format!("running {what}: {e}")))?;
        if !status.success() {
            return Err(DevInitError::Setup(format!("{what} failed: {status}")));
        }
        Ok(())
    };
    mcsd(&["hsm", "init"], None)?;
    // The audit key is made now and pinned outside the store, as operators do.
    mcsd(&["audit", "export-key"], None)?;
    // The P-256 TSA key, made in the HSM, certified by the dev CA.
    let csr = dir.join("pki/tsa-p256.csr");
    mcsd(&["tsa", "csr"], Some(&csr))?;
    certify_p256(&dir.join("pki"), &csr, "mcsd dev Time-Stamping Authority", P256Use::TimeStamping, "tsa-p256.pem")?;
    // The P-256 document-signing key of `mcsd pdf sign-p256`, certified the same way, and
    // the dev CA's CRL: what a long-term-validation signature carries in its DSS.
    let csr = dir.join("pki/pdf-p256.csr");
    mcsd(&["pdf", "csr"], Some(&csr))?;
    let pki = dir.join("pki");
    certify_p256(&pki, &csr, "mcsd dev P-256 document signer", P256Use::DocumentSigning, "pdf-p256.pem")?;
    dev_ca_crl(&pki)
}

/// `[tsa]` of the dev config: SM2, certified by the local CA; the P-256 key's certificate
/// from the dev CA is ready for `algorithm = "p256"`.
const DEV_TSA: &str = r#"
# The time-stamp authority (RFC 3161, POST /v1/timestamp; every PDF signature is
# time-stamped). algorithm = "p256" switches to the HSM's P-256 key, whose certificate
# (from the dev CA: `openssl ts -verify -CAfile pki/ca.pem`) is in pki/tsa-p256.pem.
[tsa]
ca = "local"
algorithm = "sm2"
p256_certificate_file = "pki/tsa-p256.pem"
"#;

/// The HSM's P-256 key, as named by a PEM request.
struct RequestedKey(Vec<u8>);

impl rcgen::PublicKeyData for RequestedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// What a P-256 key certified by the dev CA is for.
enum P256Use {
    /// The TSA: the critical `timeStamping` extended key usage only, as RFC 3161 wants.
    TimeStamping,
    /// PDF signatures: digitalSignature and nonRepudiation.
    DocumentSigning,
}

/// The dev CA (`pki/ca.*`) as an issuer.
fn dev_ca(pki: &Path) -> Result<Issuer<'static, KeyPair>, DevInitError> {
    let key = fs::read_to_string(pki.join("ca.key")).map_err(|e| io("reading", &pki.join("ca.key"), e))?;
    let ca_key = KeyPair::from_pem(&key).map_err(pki_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    ca_params.distinguished_name = dn("mcsd dev CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(Issuer::new(ca_params, ca_key))
}

/// Certify the P-256 key of `csr` with the dev CA for `purpose`, written with the dev CA
/// as `pki/<out>`.
fn certify_p256(pki: &Path, csr: &Path, common_name: &str, purpose: P256Use, out: &str) -> Result<(), DevInitError> {
    use der::DecodePem;
    let read = |p: &Path| fs::read_to_string(p).map_err(|e| io("reading", p, e));
    let request = x509_cert::request::CertReq::from_pem(read(csr)?.as_bytes())
        .map_err(|e| DevInitError::Pki(format!("{}: {e}", csr.display())))?;
    let point = request.info.public_key.subject_public_key.raw_bytes().to_vec();
    let issuer = dev_ca(pki)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    params.distinguished_name = dn(common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
    params.use_authority_key_identifier_extension = true;
    if let P256Use::TimeStamping = purpose {
        // ExtendedKeyUsage ::= SEQUENCE { id-kp-timeStamping }, critical.
        let eku = vec![0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];
        let mut ext = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 37], eku);
        ext.set_criticality(true);
        params.custom_extensions = vec![ext];
    }
    let cert = params.signed_by(&RequestedKey(point), &issuer).map_err(pki_err)?;
    let chain = format!("{}{}", cert.pem(), read(&pki.join("ca.pem"))?);
    write_file(&pki.join(out), chain.as_bytes(), 0o644)
}

/// `pki/ca.crl`: the dev CA's CRL (PEM), revoking nothing, valid for a year.
fn dev_ca_crl(pki: &Path) -> Result<(), DevInitError> {
    let now = time::OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(365),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&dev_ca(pki)?).map_err(pki_err)?;
    write_file(&pki.join("ca.crl"), crl.pem().map_err(pki_err)?.as_bytes(), 0o644)
}

/// A table per dev gateway platform allowing private callback targets: the receivers of
/// the demo and the tests listen on loopback, which production configs refuse.
fn dev_platforms() -> String {
    let platforms = CLIENTS.iter().flat_map(|c| c.uris).filter_map(|u| u.strip_prefix("urn:mcs:platform:"));
    let tables: String =
        platforms.map(|p| format!("\n[tasks.platforms.\"{p}\"]\nallow_private_callbacks = true\n")).collect();
    format!("\n# The dev gateways' callback receivers run on this machine.{tables}")
}

/// The `local-ca` adapter, if it was built next to this binary.
fn local_ca_plugin() -> String {
    let exe = std::env::current_exe().ok();
    let exe_dir = exe.as_deref().and_then(Path::parent);
    let found = exe_dir
        .into_iter()
        .flat_map(|d| {
            [d.join("libmcs_local_ca.so"), d.join("deps/libmcs_local_ca.so"), d.join("../lib/mcsd/libmcs_local_ca.so")]
        })
        .find(|p| p.exists());
    match found {
        Some(lib) => format!(
            "\n# CA adapter: an SM2 CA whose key the daemon holds (wrapped by the HSM); its\n# certificate, serial index and CRL are kept in the store.\n[[plugins]]\nname = \"local\"\nlibrary = \"{}\"\nconfig = {{ ca_name = \"mcsd Local SM2 CA\" }}\n",
            lib.display(),
        ),
        None => {
            eprintln!("mcsd dev-init: libmcs_local_ca.so not found next to mcsd; no CA adapter configured");
            String::new()
        }
    }
}

struct Identity {
    file: &'static str,
    cn: &'static str,
    uris: &'static [&'static str],
}

/// The production layout's client CAs: file stem, common name, role.
const ROLE_CAS: &[(&str, &str, &str)] = &[
    ("operators-ca", "mcsd dev operators CA", "admin"),
    ("platforms-ca", "mcsd dev platforms CA", "gateway"),
    ("phones-ca", "mcsd dev phones CA", "app"),
];

const CLIENTS: &[Identity] = &[
    Identity { file: "admin", cn: "mcsd dev admin", uris: &["urn:mcs:role:admin"] },
    Identity {
        file: "gateway",
        cn: "P-DEV-1 scan gateway",
        uris: &["urn:mcs:role:gateway", "urn:mcs:platform:P-DEV-1"],
    },
    Identity {
        file: "gateway2",
        cn: "P-DEV-2 scan gateway",
        uris: &["urn:mcs:role:gateway", "urn:mcs:platform:P-DEV-2"],
    },
    Identity { file: "app1", cn: "dev phone 1", uris: &["urn:mcs:role:app"] },
    Identity { file: "app2", cn: "dev phone 2", uris: &["urn:mcs:role:app"] },
];

fn pki_err(e: rcgen::Error) -> DevInitError {
    DevInitError::Pki(e.to_string())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "CN");
    dn.push(DnType::OrganizationName, "mcsd development");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A self-signed CA, written as `<file>.pem` / `<file>.key`.
fn write_ca(pki: &Path, file: &str, cn: &str) -> Result<Issuer<'static, KeyPair>, DevInitError> {
    let key = KeyPair::generate().map_err(pki_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).map_err(pki_err)?;
    write_file(&pki.join(format!("{file}.pem")), cert.pem().as_bytes(), 0o644)?;
    write_file(&pki.join(format!("{file}.key")), key.serialize_pem().as_bytes(), 0o600)?;
    Ok(Issuer::new(params, key))
}

fn write_pki(pki: &Path, layout: Layout) -> Result<(), DevInitError> {
    let server_ca = write_ca(pki, "ca", "mcsd dev CA")?;
    let role_cas = match layout {
        Layout::Single => Vec::new(),
        Layout::Production => ROLE_CAS
            .iter()
            .map(|(file, cn, role)| Ok((*role, write_ca(pki, file, cn)?)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    // Which CA issues a client: its role's CA in the production layout, else the dev CA.
    let issuer_for = |uris: &[&str]| -> &Issuer<'static, KeyPair> {
        let role = uris.iter().find_map(|u| u.strip_prefix("urn:mcs:role:"));
        role_cas.iter().find(|(r, _)| Some(*r) == role).map(|(_, i)| i).unwrap_or(&server_ca)
    };

    let leaf = |issuer: &Issuer<'static, KeyPair>,
                cn: &str,
                sans: Vec<SanType>,
                eku: Vec<ExtendedKeyUsagePurpose>,
                file: &str|
     -> Result<(), DevInitError> {
        let key = KeyPair::generate().map_err(pki_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
        params.distinguished_name = dn(cn);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = eku;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, issuer).map_err(pki_err)?;
        write_file(&pki.join(format!("{file}.pem")), cert.pem().as_bytes(), 0o644)?;
        write_file(&pki.join(format!("{file}.key")), key.serialize_pem().as_bytes(), 0o600)
    };
    leaf(
        &server_ca,
        "localhost",
        vec![SanType::DnsName("localhost".try_into().map_err(pki_err)?), SanType::IpAddress([127, 0, 0, 1].into())],
        // The daemon also presents it as a client when it POSTs task callbacks.
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        "server",
    )?;
    for id in CLIENTS {
        let mut sans = id
            .uris
            .iter()
            .map(|u| Ok(SanType::URI((*u).try_into().map_err(pki_err)?)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut eku = vec![ExtendedKeyUsagePurpose::ClientAuth];
        // A gateway also receives task callbacks on localhost: its certificate serves TLS
        // too, and chains to an API anchor (the daemon's default callback roots).
        if id.uris.contains(&"urn:mcs:role:gateway") {
            sans.push(SanType::DnsName("localhost".try_into().map_err(pki_err)?));
            sans.push(SanType::IpAddress([127, 0, 0, 1].into()));
            eku.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        leaf(issuer_for(id.uris), id.cn, sans, eku, id.file)?;
    }
    Ok(())
}
