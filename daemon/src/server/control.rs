//! The local control socket: operator commands that need the running daemon, because the
//! store is open (and locked) by it. A Unix stream socket next to the store
//! (`<store.path>.sock`, mode 0600, so only the service user — or root — reaches it); one
//! command line per connection:
//!
//! - `backup` → `OK <length>\n` and a consistent snapshot of the store ([`Durability::snapshot`](crate::store::Durability::snapshot));
//! - `rotate-kek [<batch>]` → `progress <done>/<total>\n` lines, then
//!   `OK version=<v> created=<bool> rewrapped=<n> remaining=<m>\n`;
//! - `audit-key` → `OK <length>\n` and the audit public key as PEM (`mcsd audit export-key`);
//! - `drain` → `OK draining\n`: `/readyz` answers 503 `draining` (and `mcsd_ready` is 0)
//!   while requests are still served, so a load balancer moves traffic away before a
//!   restart; `undrain` → `OK serving\n` ends it. A restart ends it too.
//!
//! Failures answer `ERR <message>\n`. Backups and rotations are audited.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::audit::{Audit, Event};
use crate::hsm::Hsm;
use crate::store::Storage;

/// Bind the socket (replacing a stale one) with owner-only permissions.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// What the control commands work on.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Storage>,
    pub hsm: Arc<Hsm>,
    pub audit: Arc<Audit>,
    /// Readiness off (`drain`) or on again (`undrain`).
    pub draining: Arc<AtomicBool>,
}

pub async fn serve(listener: UnixListener, services: Services) {
    loop {
        let Ok((conn, _)) = listener.accept().await else { continue };
        let services = services.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(conn, services).await {
                tracing::warn!(error = %e, "control connection failed");
            }
        });
    }
}

async fn handle(conn: UnixStream, services: Services) -> std::io::Result<()> {
    let Services { store, hsm, audit, draining } = services;
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let record = |what: &str, outcome: &str, detail| Event {
        event: what.into(),
        actor: "control-socket".into(),
        outcome: outcome.into(),
        detail,
        ..Default::default()
    };
    match words.as_slice() {
        ["backup"] => {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.snapshot()).await {
                Ok(Ok(image)) => {
                    let _ = audit.record(record("backup", "ok", json!({ "bytes": image.len() }))).await;
                    write.write_all(format!("OK {}\n", image.len()).as_bytes()).await?;
                    write.write_all(&image).await?;
                }
                Ok(Err(e)) => write.write_all(format!("ERR {e}\n").as_bytes()).await?,
                Err(e) => write.write_all(format!("ERR {e}\n").as_bytes()).await?,
            }
        }
        ["rotate-kek", rest @ ..] => {
            let batch = match rest.first().map(|b| b.parse::<u64>()) {
                None => None,
                Some(Ok(b)) if b > 0 => Some(b),
                _ => {
                    write.write_all(b"ERR batch must be a positive number\n").await?;
                    return Ok(());
                }
            };
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let (s, h) = (store.clone(), hsm.clone());
            let work = tokio::task::spawn_blocking(move || {
                crate::keys::kek_rotation::rotate(&*s, &*h, batch, |done, total| {
                    let _ = tx.send(format!("progress {done}/{total}\n"));
                })
            });
            while let Some(p) = rx.recv().await {
                write.write_all(p.as_bytes()).await?;
            }
            match work.await {
                Ok(Ok(r)) => {
                    let _ = audit
                        .record(record(
                            "kek rotation",
                            "ok",
                            json!({ "version": r.version, "rewrapped": r.rewrapped, "remaining": r.remaining }),
                        ))
                        .await;
                    let msg = format!(
                        "OK version={} created={} rewrapped={} remaining={}\n",
                        r.version, r.created_version, r.rewrapped, r.remaining
                    );
                    write.write_all(msg.as_bytes()).await?;
                }
                Ok(Err(e)) => {
                    let _ = audit.record(record("kek rotation", "error", json!({ "error": e }))).await;
                    write.write_all(format!("ERR {e}\n").as_bytes()).await?;
                }
                Err(e) => write.write_all(format!("ERR {e}\n").as_bytes()).await?,
            }
        }
        ["retire-kek"] => {
            let (s, h) = (store.clone(), hsm.clone());
            match tokio::task::spawn_blocking(move || crate::keys::kek_rotation::retire(&*s, &*h)).await {
                Ok(Ok(r)) => {
                    let detail = json!({ "current": r.current, "destroyed": r.destroyed });
                    let _ = audit.record(record("kek retirement", "ok", detail)).await;
                    let text = r.to_string();
                    write.write_all(format!("OK {}\n{text}", text.len()).as_bytes()).await?;
                }
                Ok(Err(e)) => {
                    let _ = audit.record(record("kek retirement", "error", json!({ "error": e }))).await;
                    write.write_all(format!("ERR {e}\n").as_bytes()).await?;
                }
                Err(e) => write.write_all(format!("ERR {e}\n").as_bytes()).await?,
            }
        }
        [word @ ("drain" | "undrain")] => {
            let on = *word == "drain";
            let was = draining.swap(on, Ordering::SeqCst);
            let _ = audit.record(record(word, "ok", json!({ "draining": on, "was_draining": was }))).await;
            if on {
                tracing::warn!("draining: /readyz answers 503 draining; requests are still served");
            } else {
                tracing::info!("drain ended: /readyz ready again");
            }
            write.write_all(if on { b"OK draining\n" as &[u8] } else { b"OK serving\n" }).await?;
        }
        ["audit-key"] => {
            let a = audit.clone();
            match tokio::task::spawn_blocking(move || a.public_key_pem()).await {
                Ok(Ok(pem)) => {
                    write.write_all(format!("OK {}\n", pem.len()).as_bytes()).await?;
                    write.write_all(pem.as_bytes()).await?;
                }
                Ok(Err(e)) => write.write_all(format!("ERR {e}\n").as_bytes()).await?,
                Err(e) => write.write_all(format!("ERR {e}\n").as_bytes()).await?,
            }
        }
        _ => {
            write
                .write_all(
                    b"ERR unknown command (backup | rotate-kek [batch] | retire-kek | audit-key | drain | undrain)\n",
                )
                .await?
        }
    }
    write.shutdown().await
}
