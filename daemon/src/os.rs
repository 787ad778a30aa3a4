//! Process-wide settings that keep secrets and stored state private, whatever the
//! environment the daemon was started from.
//!
//! - [`private_files`]: umask 077, so every file and directory mcsd creates (sled's files,
//!   `secrets.vault`, snapshots, backups, the control socket) is 0600 / 0700 even when
//!   started by hand under a permissive umask; the unit sets `UMask=0077` as well.
//! - [`no_core_dumps`]: `RLIMIT_CORE` 0 and not dumpable, so a crash never writes process
//!   memory (shares being used, verifiers, plaintexts) to disk, and other processes of the
//!   same user cannot read it through `/proc` or ptrace. The unit's `LimitCORE=0` says the
//!   same to systemd.

/// Set the umask to 077. Returns the previous umask.
pub fn private_files() -> u32 {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(0o077) as u32 }
}

/// No core dumps, and not dumpable. Failures are reported, not fatal: the unit also sets
/// `LimitCORE=0`.
pub fn no_core_dumps() -> Result<(), std::io::Error> {
    let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads the struct we pass by reference for the duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The umask is per process and tests run in threads: tests that change it take this.
#[cfg(test)]
pub(crate) static UMASK_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    #[test]
    fn umask_becomes_077_and_new_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let _one_at_a_time = super::UMASK_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let before = super::private_files();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("d")), 0o700);
        assert_eq!(super::private_files(), 0o077);
        // Leave the test process as it was.
        // SAFETY: as in private_files.
        unsafe { libc::umask(before as libc::mode_t) };
    }
}
