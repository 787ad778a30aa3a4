//! Verification of the chain: walking entries, checking checkpoints against the trusted
//! key and against exported points (rollback), at start-up and offline (`mcsd audit verify`).

#[allow(unused_imports)]
use super::*;

/// The entries read by a verification: hashes of `first..first + len`.
pub(super) struct Chain {
    pub(super) first: u64,
    hashes: Vec<String>,
}

impl Chain {
    pub(super) fn len(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// The last entry's sequence number.
    fn head(&self) -> Option<u64> {
        (self.first + self.len()).checked_sub(1)
    }

    fn hash_at(&self, seq: u64) -> Option<&String> {
        seq.checked_sub(self.first).and_then(|i| self.hashes.get(i as usize))
    }
}

/// Walk the entries from `first` to the head, checking order, hashes and links. With
/// `prev`, entry `first` must follow it; without, its own link is not checked (the caller
/// compares its hash with a trusted one).
pub(super) fn walk(store: &dyn Storage, first: u64, prev: Option<String>) -> Result<Chain, String> {
    let mut chain = Chain { first, hashes: Vec::new() };
    let mut prev = prev;
    for (expected, item) in (first..).zip(store.audit_entries(first)) {
        let (key, e) = item.map_err(|err| format!("entry {expected}: unreadable ({err})"))?;
        if key != expected {
            return Err(format!("entry {expected} is missing (the chain jumps from {} to {key})", expected as i64 - 1));
        }
        if e.seq != key {
            return Err(format!("entry {key} holds entry {} (entries were reordered)", e.seq));
        }
        if prev.as_ref().is_some_and(|p| *p != e.prev) {
            return Err(format!("entry {key} does not follow entry {} (broken link)", key as i64 - 1));
        }
        if entry_hash(&e) != e.hash {
            return Err(format!("entry {key} was modified (hash mismatch)"));
        }
        prev = Some(e.hash.clone());
        chain.hashes.push(e.hash);
    }
    Ok(chain)
}

/// Every stored checkpoint from `chain.first` on must verify and match the chain.
pub(super) fn check_checkpoints(
    store: &dyn Storage,
    chain: &Chain,
    key: Option<&TrustedKey>,
) -> Result<Vec<Checkpoint>, String> {
    let checkpoints: Vec<Checkpoint> =
        store.audit_checkpoints_from(chain.first).map_err(|e| format!("checkpoints: {e}"))?;
    for cp in &checkpoints {
        let key = key.ok_or_else(|| {
            format!(
                "checkpoint at entry {} cannot be checked: no trusted audit key (the store's audit key is gone?)",
                cp.seq
            )
        })?;
        if !key.verifies(cp) {
            return Err(format!(
                "checkpoint at entry {}: signature does not verify with the audit key {}",
                cp.seq, key.source
            ));
        }
        match chain.hash_at(cp.seq) {
            None => {
                return Err(format!(
                    "entries after {} were removed (a checkpoint covers entry {})",
                    chain.head().map_or(-1, |h| h as i64),
                    cp.seq
                ));
            }
            Some(h) if *h != cp.hash => {
                return Err(format!("entry {}: the chain differs from its signed checkpoint", cp.seq));
            }
            Some(_) => {}
        }
    }
    Ok(checkpoints)
}

/// Is the store still at or past an exported (seq, hash)? `head` is the store's last entry.
pub(super) fn check_exported_point(
    chain: &Chain,
    head: Option<u64>,
    seq: u64,
    hash: &str,
    what: &str,
) -> Result<(), String> {
    match chain.hash_at(seq) {
        Some(h) if h == hash => Ok(()),
        Some(_) => Err(format!(
            "rollback detected: entry {seq} is not the one {what} covers — the store was replaced by another copy or its chain rewritten"
        )),
        None => Err(format!(
            "rollback detected: the store's audit chain {}, but {what} covers entry {seq} — the store was rolled back to an older copy (or its tail removed)",
            match head {
                Some(h) => format!("ends at entry {h}"),
                None => "is empty".into(),
            }
        )),
    }
}

/// Start-up verification: from the anchor (or entry 0) to the head, and every stored
/// checkpoint from there on.
pub(super) fn verify_from(
    store: &dyn Storage,
    anchor: Option<&Anchor>,
    key: Option<&TrustedKey>,
) -> Result<Chain, String> {
    let chain = match anchor.and_then(|a| match a {
        Anchor::Checkpoint { cp, origin } => Some((cp.seq, cp.hash.clone(), origin.clone())),
        Anchor::Restored { seq, origin } => seq.clone().map(|(s, h)| (s, h, origin.clone())),
    }) {
        Some((seq, hash, origin)) => {
            let chain = walk(store, seq, None)?;
            let head = store.last_audit().map_err(|e| format!("the chain's head: {e}"))?.map(|(s, _)| s);
            check_exported_point(&chain, head, seq, &hash, &origin)?;
            chain
        }
        None => walk(store, 0, Some(zero_hash()))?,
    };
    check_checkpoints(store, &chain, key)?;
    Ok(chain)
}

/// How `mcsd audit verify` should judge.
#[derive(Default)]
pub struct VerifyOptions<'a> {
    /// The key checkpoints must verify with (`None`: the chain must have none).
    pub key: Option<&'a TrustedKey>,
    /// Accept entries after the last checkpoint (a daemon that crashed and has not been
    /// started since).
    pub allow_unsealed_tail: bool,
    /// Exported checkpoints the store must still contain.
    pub exported: Option<&'a [ExportedLine]>,
}

/// The outcome of [`verify`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub checkpoints: usize,
    /// Entries after the last checkpoint (only with `allow_unsealed_tail`).
    pub unsealed: u64,
    /// Exported checkpoints found in the store.
    pub exported_checked: usize,
    /// Exported checkpoints before the last recorded restore, not checked.
    pub exported_before_restore: usize,
}

/// Check the whole chain and every checkpoint, offline. The error names the first entry
/// that is not what the chain says, a head no checkpoint covers, or a rollback.
pub fn verify(store: &dyn Storage, opts: &VerifyOptions<'_>) -> Result<Verified, String> {
    let chain = walk(store, 0, Some(zero_hash()))?;
    let checkpoints = check_checkpoints(store, &chain, opts.key)?;
    let mut out = Verified { entries: chain.len(), checkpoints: checkpoints.len(), ..Default::default() };
    if let Some(head) = chain.head() {
        let sealed = checkpoints.last().map(|c| c.seq);
        if sealed != Some(head) {
            let first = sealed.map_or(0, |s| s + 1);
            if !opts.allow_unsealed_tail {
                return Err(format!(
                    "entries {first}..={head} are not covered by a signed checkpoint ({}): entries after it were rewritten, or it was removed — or the daemon crashed and was not started since (it verifies and seals them at start; --allow-unsealed-tail accepts them)",
                    match sealed {
                        Some(s) => format!("the last covers entry {s}"),
                        None => "there is none".into(),
                    }
                ));
            }
            out.unsealed = head + 1 - first;
        }
    }
    if let Some(lines) = opts.exported {
        let restart = lines.iter().rposition(|l| matches!(l.item, Exported::Restored { .. }));
        out.exported_before_restore =
            restart.map_or(0, |r| lines[..r].iter().filter(|l| matches!(l.item, Exported::Checkpoint(_))).count());
        for line in &lines[restart.unwrap_or(0)..] {
            match &line.item {
                Exported::Checkpoint(cp) => {
                    let what = format!(
                        "the checkpoint exported on line {} (signed {})",
                        line.line,
                        crate::clock::rfc3339(cp.at / 1000)
                    );
                    let key = opts.key.ok_or_else(|| format!("{what} cannot be checked: no trusted audit key"))?;
                    if !key.verifies(cp) {
                        return Err(format!("{what} does not verify with the audit key {}", key.source));
                    }
                    check_exported_point(&chain, chain.head(), cp.seq, &cp.hash, &what)?;
                    out.exported_checked += 1;
                }
                Exported::Restored { restored } => {
                    if let (Some(seq), Some(hash)) = (restored.seq, &restored.hash) {
                        check_exported_point(
                            &chain,
                            chain.head(),
                            seq,
                            hash,
                            &format!("the restore recorded on line {}", line.line),
                        )?;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Where a config's checkpoint file is, for `mcsd` commands that take `--since-checkpoint`.
pub fn configured_checkpoint_file(cfg: &AuditConfig) -> Option<PathBuf> {
    cfg.checkpoint_file.clone().filter(|p| p.exists())
}
