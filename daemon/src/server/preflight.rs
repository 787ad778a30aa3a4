//! `mcsd check-config`: everything `run` would trip over at start, checked the way `run`
//! does it, without serving and without changing anything. One [`Check`] per thing looked
//! at, each naming the setting it is about; any `fail` means `run` would not start (or
//! would start without something the operator asked for), and the command exits 78.
//!
//! Offline (`--offline`) skips what needs the HSM, the store or the database, so a config
//! can be checked on a machine that has none of them (a packaging step, a review).

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Backend, Config, PinSource};
use crate::hsm::Hsm;
use crate::model::secret::SecretKind;
use crate::plugins::PluginHost;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: Status,
    /// What was checked: `config`, `log`, `tls`, `hsm.pin`, `hsm`, `kek`, `plugin`, `store`.
    pub check: &'static str,
    /// The setting (or file) the line is about, as the config file names it.
    pub setting: String,
    pub message: String,
}

impl Check {
    fn new(status: Status, check: &'static str, setting: impl Into<String>, message: impl Into<String>) -> Check {
        Check { status, check, setting: setting.into(), message: message.into() }
    }

    /// `[ ok ] setting: message`.
    pub fn line(&self) -> String {
        let tag = match self.status {
            Status::Ok => "[ ok ]",
            Status::Warn => "[warn]",
            Status::Fail => "[fail]",
            Status::Skip => "[skip]",
        };
        format!("{tag} {}: {}", self.setting, self.message)
    }
}

/// Whether any check failed.
pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

/// The setting a PIN source is read from.
fn pin_setting(pin: &PinSource) -> &'static str {
    match pin {
        PinSource::File(_) => "hsm.pin_file",
        PinSource::Credential(_) => "hsm.pin_credential",
    }
}

/// Run every check of `cfg` (loaded from `path`, which parsed and validated already).
pub fn run(cfg: &Config, path: &Path, offline: bool) -> Vec<Check> {
    use Status::*;
    let mut out = vec![Check::new(Ok, "config", path.display().to_string(), "parsed and valid")];
    out.push(match super::logging::filter(&cfg.log.level) {
        Result::Ok(_) => Check::new(Ok, "log", "log.level", format!("filter {:?}", cfg.log.level)),
        Err(e) => Check::new(Fail, "log", "log.level", e),
    });
    out.push(match super::tls::server_config(&cfg.api) {
        Result::Ok((_, anchors)) => {
            let now = crate::clock::now();
            let ends: Vec<String> = anchors
                .certificate_ends
                .iter()
                .map(|(name, end)| format!("{name} until {}", crate::clock::rfc3339(*end)))
                .collect();
            let expired = anchors.certificate_ends.iter().filter(|(_, end)| *end <= now).count();
            let soon = anchors.certificate_ends.iter().filter(|(_, end)| *end > now && *end - now < 30 * 86400).count();
            let status = if expired > 0 {
                Fail
            } else if soon > 0 {
                Warn
            } else {
                Ok
            };
            Check::new(
                status,
                "tls",
                "api.cert_file",
                format!("certificate, key and trust anchors load: {}", ends.join(", ")),
            )
        }
        Err(e) => Check::new(Fail, "tls", tls_setting(&e.to_string(), cfg), e.to_string()),
    });
    for p in &cfg.plugins {
        let setting = format!("plugins.{}.library", p.name);
        out.push(match crate::plugins::probe(p) {
            Result::Ok(abi) => {
                Check::new(Ok, "plugin", setting, format!("{} loads (plugin ABI {abi})", p.library.display()))
            }
            Err(e) => Check::new(Fail, "plugin", setting, e),
        });
    }
    let pin = match cfg.hsm.pin.read() {
        Result::Ok(_) => {
            out.push(Check::new(Ok, "hsm.pin", pin_setting(&cfg.hsm.pin), "readable"));
            true
        }
        Err(e) => {
            out.push(Check::new(Fail, "hsm.pin", pin_setting(&cfg.hsm.pin), e));
            false
        }
    };
    if offline {
        for (check, setting) in [("hsm", "hsm"), ("store", "store")] {
            out.push(Check::new(Skip, check, setting, "not checked (--offline)"));
        }
        return out;
    }
    let hsm = if pin { hsm_checks(cfg, &mut out) } else { None };
    store_checks(cfg, hsm, &mut out);
    out
}

/// Which TLS setting a loading error is about (the error names the file).
fn tls_setting(message: &str, cfg: &Config) -> String {
    let named = |p: &Path| message.starts_with(&p.display().to_string());
    if named(&cfg.api.cert_file) {
        "api.cert_file".into()
    } else if named(&cfg.api.key_file) {
        "api.key_file".into()
    } else if let Some(i) = cfg.api.trust.iter().position(|t| named(&t.ca_file)) {
        format!("api.trust[{i}].ca_file")
    } else {
        "api".into()
    }
}

/// Load the module, find the token, log in, find the KEK, and wrap and unwrap a test
/// secret with it (nothing is stored).
fn hsm_checks(cfg: &Config, out: &mut Vec<Check>) -> Option<Arc<Hsm>> {
    let hsm = match Hsm::connect(&cfg.hsm) {
        Ok(h) => h,
        Err(e) => {
            let m = e.to_string();
            let setting = if m.contains("PKCS#11 module") {
                "hsm.module"
            } else if m.contains("token labelled") {
                "hsm.token_label"
            } else if m.contains("KEK") {
                "hsm.kek_label"
            } else if m.contains("PIN") || m.contains("login") || m.contains("Pin") {
                pin_setting(&cfg.hsm.pin)
            } else {
                "hsm"
            };
            out.push(Check::new(Status::Fail, "hsm", setting, m));
            return None;
        }
    };
    out.push(Check::new(
        Status::Ok,
        "hsm",
        "hsm.token_label",
        format!("module {} loaded, token `{}` logged in", cfg.hsm.module.display(), cfg.hsm.token_label),
    ));
    let probe = b"mcsd check-config";
    let round = hsm
        .wrap("mcsd-preflight", SecretKind::TaskInput, probe)
        .and_then(|blob| hsm.unwrap("mcsd-preflight", SecretKind::TaskInput, &blob));
    out.push(match (round, hsm.current_kek_version()) {
        (Ok(back), Some(v)) if back.as_slice() == probe => Check::new(
            Status::Ok,
            "kek",
            "hsm.kek_label",
            format!("`{}` version {v} wraps and unwraps", cfg.hsm.kek_label),
        ),
        (Ok(_), _) => Check::new(Status::Fail, "kek", "hsm.kek_label", "a test wrap did not unwrap to itself"),
        (Err(e), _) => Check::new(Status::Fail, "kek", "hsm.kek_label", e.to_string()),
    });
    Some(Arc::new(hsm))
}

/// Open the store as `run` would (changing nothing); with it and the HSM, start the
/// adapters as `run` would and report what they say of themselves.
fn store_checks(cfg: &Config, hsm: Option<Arc<Hsm>>, out: &mut Vec<Check>) {
    let (setting, what) = match cfg.store.backend {
        Backend::Sled => ("store.path", format!("sled at {}", cfg.store.path.display())),
        Backend::Postgres => ("store.url", "PostgreSQL".to_owned()),
    };
    let store = match crate::store::open_check(&cfg.store) {
        Ok(s) => s,
        Err(e) => {
            let socket = cfg.control.socket.clone();
            let running =
                cfg.store.backend == Backend::Sled && std::os::unix::net::UnixStream::connect(&socket).is_ok();
            out.push(if running {
                Check::new(
                    Status::Warn,
                    "store",
                    setting,
                    format!("{what} is in use by the running daemon (control socket {} answers)", socket.display()),
                )
            } else {
                Check::new(Status::Fail, "store", setting, format!("{what}: {e}"))
            });
            return;
        }
    };
    store.probe();
    if store.failed() {
        out.push(Check::new(Status::Fail, "store", setting, format!("{what} opens but does not take writes")));
        return;
    }
    let schema = match cfg.store.backend {
        Backend::Postgres => format!(", schema at version {}", crate::store::latest_version()),
        Backend::Sled => String::new(),
    };
    out.push(Check::new(Status::Ok, "store", setting, format!("{what} opens and takes writes{schema}")));
    let Some(hsm) = hsm else { return };
    let clock = crate::clock::system();
    let keys = crate::daemon_keys::DaemonKeys::new(store.clone(), hsm, clock);
    let host = PluginHost::load(&cfg.plugins, Arc::new(keys), Arc::new(super::adapter_state::StoreKv(store.clone())));
    for info in host.list() {
        let setting = format!("plugins.{}", info.name);
        out.push(match info.state {
            crate::plugins::PluginState::Loaded { description, .. } => {
                // What it says of itself, without the bulky parts (its root certificate).
                let said = |field: &str| description.get(field).map_or("?".to_owned(), |v| v.to_string());
                let message = format!(
                    "started: {} {}, algorithms {}, profiles {}",
                    said("name"),
                    said("version"),
                    said("algorithms"),
                    said("profiles")
                );
                Check::new(Status::Ok, "plugin", setting, message)
            }
            crate::plugins::PluginState::Failed { error } => {
                Check::new(Status::Fail, "plugin", setting, error.to_owned())
            }
        });
    }
}
