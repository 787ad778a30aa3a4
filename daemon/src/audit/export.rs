//! Exported checkpoints: the checkpoint file (JSON lines, fsynced, 0600), restore markers,
//! and syslog — where the chain is anchored outside the store.

#[allow(unused_imports)]
use super::*;

/// A restore from a backup, recorded in the checkpoint file by `mcsd restore`: the store
/// went back on purpose. Verification restarts from the restored store's last checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreMarker {
    pub at: i64,
    pub backup: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// One line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Exported {
    Restored { restored: RestoreMarker },
    Checkpoint(Checkpoint),
}

#[derive(Debug, Clone)]
pub struct ExportedLine {
    /// 1-based.
    pub line: usize,
    pub item: Exported,
}

/// Where verification starts.
pub(super) enum Anchor {
    Checkpoint {
        cp: Checkpoint,
        origin: String,
    },
    /// A restore with the restored store's last checkpoint, or `None` (entry 0).
    Restored {
        seq: Option<(u64, String)>,
        origin: String,
    },
}

impl Anchor {
    pub(super) fn seq(&self) -> Option<u64> {
        match self {
            Anchor::Checkpoint { cp, .. } => Some(cp.seq),
            Anchor::Restored { seq, .. } => seq.as_ref().map(|(s, _)| *s),
        }
    }
}

impl ExportedLine {
    pub(super) fn anchor(&self, key: &Option<TrustedKey>) -> Result<Anchor, AuditError> {
        match &self.item {
            Exported::Checkpoint(cp) => {
                let origin = format!(
                    "the last exported checkpoint (line {}, signed {})",
                    self.line,
                    crate::clock::rfc3339(cp.at / 1000)
                );
                match key {
                    None => {
                        return Err(AuditError::Untrusted(format!(
                            "{origin} cannot be checked: the store has no audit key (it was removed?)"
                        )));
                    }
                    Some(k) if !k.verifies(cp) => {
                        return Err(AuditError::Untrusted(format!(
                            "{origin} does not verify with the audit key {}",
                            k.source
                        )));
                    }
                    Some(_) => {}
                }
                Ok(Anchor::Checkpoint { cp: cp.clone(), origin })
            }
            Exported::Restored { restored } => Ok(Anchor::Restored {
                seq: restored.seq.zip(restored.hash.clone()),
                origin: format!("the restore from {} recorded on line {}", restored.backup, self.line),
            }),
        }
    }
}

/// The checkpoint file's lines. A missing file has none; a last line without its newline
/// (a crash while appending) is ignored.
pub fn read_exported(path: &Path) -> Result<Vec<ExportedLine>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let mut out = Vec::new();
    for (i, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(line)
            .map_err(|e| format!("{} line {}: not an exported checkpoint ({e})", path.display(), i + 1))?;
        out.push(ExportedLine { line: i + 1, item });
    }
    Ok(out)
}

pub(super) fn open_for_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).read(true).append(true).mode(0o600).open(path)
}

/// Append one line to the checkpoint file (created 0600) and fsync it.
pub fn append_exported(path: &Path, item: &Exported) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = open_for_append(path)?;
    let mut line = serde_json::to_string(item).map_err(std::io::Error::other)?;
    line.push('\n');
    // A torn last line (a crash mid-append) is closed first, so this line stands alone.
    let len = file.seek(SeekFrom::End(0))?;
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.insert(0, '\n');
        }
    }
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Record a restore in the checkpoint file (`mcsd restore`), with the restored store's last
/// checkpoint, so the daemon verifies the restored chain from there instead of reporting a
/// rollback.
pub fn record_restore(path: &Path, store: &dyn Storage, backup: &Path) -> Result<RestoreMarker, String> {
    let last: Option<Checkpoint> = store.last_audit_checkpoint().map_err(|e| e.to_string())?;
    // An offline command (`mcsd restore`): no service, so the system clock.
    let marker = RestoreMarker {
        at: crate::clock::now_ms(),
        backup: backup.display().to_string(),
        seq: last.as_ref().map(|c| c.seq),
        hash: last.map(|c| c.hash),
    };
    append_exported(path, &Exported::Restored { restored: marker.clone() })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(marker)
}

/// One RFC 3164 datagram (facility log audit, severity info) to a local syslog socket.
pub(super) fn send_syslog(socket: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    let body = serde_json::to_string(cp).map_err(std::io::Error::other)?;
    let msg = format!("<110>mcsd[{}]: audit checkpoint {body}", std::process::id());
    std::os::unix::net::UnixDatagram::unbound()?.send_to(msg.as_bytes(), socket).map(|_| ())
}
