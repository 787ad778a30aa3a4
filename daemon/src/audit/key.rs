//! The audit key checkpoints are checked against: pinned outside the store, or the public
//! half of the HSM-wrapped key, never the store's own record of it.

#[allow(unused_imports)]
use super::*;

/// The public key checkpoints are checked against, and where it came from.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub point: AffinePoint,
    /// For reports: "pinned in <file>", "held by the HSM", ...
    pub source: String,
}

impl TrustedKey {
    /// The key pinned in a PEM file (`[audit] public_key_file`, `--public-key`).
    pub fn pinned(path: &Path) -> Result<TrustedKey, String> {
        let point = read_public_key_pem(path)?;
        Ok(TrustedKey { point, source: format!("pinned in {}", path.display()) })
    }

    pub(super) fn verifies(&self, cp: &Checkpoint) -> bool {
        let msg = checkpoint_message(cp.seq, &cp.hash);
        let sig = hex::decode(&cp.signature).ok().and_then(|s| sm2_2p::Signature::from_der(&s).ok());
        sig.is_some_and(|s| sm2_2p::verify(&self.point, &sm2_2p::e_for_message(&self.point, &msg), &s))
    }
}

/// The public key of the HSM-wrapped audit key (not the store's record of it, which a
/// writer of the store could replace; the wrapped blob it cannot forge). `None` if the
/// store has no audit key.
pub fn hsm_held_key(keys: &DaemonKeys) -> Result<Option<TrustedKey>, DaemonKeyError> {
    Ok(keys.public_key(AUDIT_KEY, false)?.map(|point| TrustedKey { point, source: "held by the HSM".into() }))
}

/// The audit public key as PEM, from the HSM-wrapped private key (created if absent), for
/// `mcsd audit export-key`.
pub fn public_key_pem(keys: &DaemonKeys) -> Result<String, String> {
    let point =
        keys.public_key(AUDIT_KEY, true).map_err(|e| e.to_string())?.ok_or("the audit key could not be created")?;
    Ok(mcs_pdfseal::pem("PUBLIC KEY", &sm2_2p::spki_der(&point)))
}

/// An SM2 public key from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) file.
pub fn read_public_key_pem(path: &Path) -> Result<AffinePoint, String> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| format!("{}: not a PEM public key", path.display()))?;
    let point = der
        .get(der.len().saturating_sub(65)..)
        .and_then(|sec1| sm2_2p::point_from_sec1(sec1).ok())
        .filter(|p| sm2_2p::spki_der(p) == der)
        .ok_or_else(|| format!("{}: not an SM2 public key", path.display()))?;
    Ok(point)
}

/// Start-up: the store's audit key must be the pinned one (if pinned) and the public half
/// of its HSM-wrapped private key. Returns the key to check checkpoints with.
pub(super) fn trusted_key_at_start(
    store: &dyn Storage,
    keys: &DaemonKeys,
    cfg: &AuditConfig,
) -> Result<Option<TrustedKey>, AuditError> {
    let record = store.daemon_key(AUDIT_KEY)?.map(|(rec, _)| rec.public_key);
    let pinned = match &cfg.public_key_file {
        Some(path) => Some(TrustedKey::pinned(path).map_err(|e| {
            AuditError::Untrusted(format!("[audit] public_key_file: {e} (write it with `mcsd audit export-key`)"))
        })?),
        None => None,
    };
    if let Some(pin) = &pinned {
        match &record {
            None => {
                return Err(AuditError::Untrusted(format!(
                    "the store has no audit key, but {} pins one: this is not the store the key was exported from, or its audit key was removed",
                    pin.source.trim_start_matches("pinned in ")
                )));
            }
            Some(hex) if *hex != sm2_2p::point_to_hex(&pin.point) => {
                return Err(AuditError::Untrusted(format!(
                    "the store's audit key is not the one {}: it was replaced (checkpoints signed with another key would pass a check against the store alone)",
                    pin.source
                )));
            }
            Some(_) => {}
        }
    }
    let held = match hsm_held_key(keys) {
        Ok(held) => held,
        Err(DaemonKeyError::Mismatch(_)) => {
            return Err(AuditError::Untrusted(
                "the store's record of the audit public key is not the public half of its HSM-wrapped private key: the record was replaced".into(),
            ));
        }
        Err(DaemonKeyError::Other(e)) => {
            tracing::warn!(error = %e, "audit: the HSM-wrapped audit key could not be checked");
            None
        }
    };
    match (pinned, held, record) {
        (Some(pin), _, _) => Ok(Some(pin)),
        (None, Some(held), _) => Ok(Some(held)),
        (None, None, Some(hex)) => {
            tracing::warn!(
                "audit: checking checkpoints against the store's own record of the audit key; pin it with [audit] public_key_file"
            );
            let point = sm2_2p::point_from_hex(&hex)
                .map_err(|e| AuditError::Untrusted(format!("the store's audit key: {e}")))?;
            Ok(Some(TrustedKey { point, source: "from the store (not pinned)".into() }))
        }
        (None, None, None) => Ok(None),
    }
}
