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
//! - [`secret_work`]: where that work runs — on the async worker itself while fewer than
//!   `[hsm] inline_calls` such jobs run there (no thread hand-off, which on a small machine
//!   cost more than the work), else on the blocking pool; the stack is scrubbed either way.
//!   For short jobs only (an unwrap or two and the share arithmetic): work on whole
//!   documents goes to [`secret_work_pooled`], always the pool.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Inline slots for [`secret_work`]: how many jobs may run on the async workers at once,
/// and how many do.
pub struct InlineSlots {
    limit: AtomicUsize,
    now: AtomicUsize,
}

/// `[hsm] inline_calls`; 0 until the server sets it (tests and tools: always the pool).
static SLOTS: InlineSlots = InlineSlots::new(0);

/// How many [`secret_work`] jobs may run at once on the async workers.
pub fn set_inline_limit(n: usize) {
    SLOTS.limit.store(n, Ordering::Relaxed);
}

/// Run `f` (HSM calls with the arithmetic on what they unwrap), then wipe the stack it
/// used. Inline on this async worker when an inline slot is free — keeping at least one
/// worker for everything else however slow the HSM is — otherwise on the blocking pool.
/// A panic in `f` is an `Err`, as it is from the pool.
pub async fn secret_work<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    SLOTS.run(f).await
}

impl InlineSlots {
    pub const fn new(limit: usize) -> Self {
        InlineSlots { limit: AtomicUsize::new(limit), now: AtomicUsize::new(0) }
    }

    /// [`secret_work`] with these slots.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        if self.now.fetch_add(1, Ordering::AcqRel) < self.limit.load(Ordering::Relaxed) {
            struct Slot<'a>(&'a AtomicUsize);
            impl Drop for Slot<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::AcqRel);
                }
            }
            let _slot = Slot(&self.now);
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(wiped(f))).map_err(|_| "panicked".to_owned());
        }
        self.now.fetch_sub(1, Ordering::AcqRel);
        secret_work_pooled(f).await
    }
}

/// `f`, then [`scrub_stack`] from the frame that called it.
fn wiped<T>(f: impl FnOnce() -> T) -> impl FnOnce() -> T {
    move || {
        let out = f();
        scrub_stack();
        out
    }
}

/// Secret work that may take long — whole documents, large plaintexts through the HSM —
/// always on the blocking pool, never inline; the stack scrubbed after.
pub async fn secret_work_pooled<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(wiped(f)).await.map_err(|e| e.to_string())
}

/// Give the free pages of the heap back to the system (`malloc_trim`), after a start-up
/// pass freed a lot at once: otherwise they stay in the resident size until reused.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own free lists and advises the kernel about
    // whole free pages; it touches no memory in use.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

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
        // so the wipe of memory about to be freed is not optimised away. Bytes up to the
        // first 8-byte boundary, then aligned words (eight times fewer stores), then the tail.
        unsafe {
            let len = layout.size();
            let head = ptr.align_offset(8).min(len);
            let mut i = 0;
            while i < head {
                std::ptr::write_volatile(ptr.add(i), 0);
                i += 1;
            }
            while i + 8 <= len {
                std::ptr::write_volatile(ptr.add(i).cast::<u64>(), 0);
                i += 8;
            }
            while i < len {
                std::ptr::write_volatile(ptr.add(i), 0);
                i += 1;
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

    /// Within the limit a job runs on the caller's thread; over it (or with no slots) on
    /// the pool; a slot is given back after a job and after a panic, which is an `Err`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn secret_work_runs_inline_within_the_limit_else_on_the_pool() {
        use super::InlineSlots;
        let here = || std::thread::current().id();
        let one = InlineSlots::new(1);
        let caller = here();
        assert_eq!(one.run(here).await.unwrap(), caller, "a free slot: inline");
        assert_eq!(one.run(here).await.unwrap(), caller, "the slot came back");
        // While a job holds the only slot, the next goes to the pool.
        let (tx, rx) = std::sync::mpsc::channel();
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let slots: &'static InlineSlots = Box::leak(Box::new(InlineSlots::new(1)));
        let holder = tokio::spawn(slots.run(move || {
            held_tx.send(()).unwrap();
            rx.recv().unwrap()
        }));
        held_rx.await.unwrap();
        let (where_ran, caller) = tokio::spawn(async move { (slots.run(here).await.unwrap(), here()) }).await.unwrap();
        assert_ne!(where_ran, caller, "no free slot: the blocking pool");
        tx.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert_ne!(InlineSlots::new(0).run(here).await.unwrap(), here(), "no slots: the pool");
        assert!(one.run(|| panic!("in the job")).await.is_err(), "a panic is an error");
        assert_eq!(one.run(here).await.unwrap(), here(), "and gives its slot back");
    }
}
