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
//! - [`WipingAllocator`]: the daemon's global allocator wipes every block before it is
//!   freed. Request bodies pass through buffers mcsd does not own (hyper's read buffer,
//!   serde's temporaries); with this, whatever held a PIN verifier or a plaintext is zero
//!   once it is freed, not left in a free list.
//! - [`scrub_stack`]: zeroes the stack below the caller, after a blocking call that
//!   handled a share or verifier (HMAC key blocks, moved arrays, the HSM library's frames).

/// The system allocator, wiping each block on free (see the module doc).
pub struct WipingAllocator;

// SAFETY: every method forwards to the system allocator with the caller's layout; dealloc
// first writes zeros over the `layout.size()` bytes the caller owned, which is within the
// block. realloc is GlobalAlloc's default (alloc, copy, dealloc), so the old block is
// wiped too.
unsafe impl std::alloc::GlobalAlloc for WipingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller owns `layout.size()` bytes at `ptr` until this returns; volatile
        // so the wipe of memory about to be freed is not optimised away.
        unsafe {
            for i in 0..layout.size() {
                std::ptr::write_volatile(ptr.add(i), 0);
            }
            std::alloc::System.dealloc(ptr, layout)
        }
    }
}

/// Overwrite 64 KiB of stack below the caller with zeros. Call it after a function that
/// handled secrets has returned, from the frame that called it.
#[inline(never)]
pub fn scrub_stack() {
    let mut area = [0u8; 64 * 1024];
    std::hint::black_box(&mut area);
}

/// Set the umask to 077. Returns the previous umask.
pub fn private_files() -> u32 {
    set_umask(0o077)
}

/// Set the process's umask; returns the previous one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
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
        super::set_umask(before);
    }
}
