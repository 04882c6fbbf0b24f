//! Allocator setting for pulls: keep glibc's mmap threshold at its 128 KiB default.
//!
//! The HTTP client reads each response into buffers of up to ~400 KiB (hyper's adaptive
//! read buffer; reqwest has no setting to cap it), several downloads at a time, each on
//! its own threads. glibc serves the first such buffer with `mmap`, and on freeing it
//! raises its mmap threshold to that size, so every later buffer comes from a per-thread
//! arena instead, where freed buffers stay resident and fragment across arenas. In the
//! image bench that retention was about a quarter of a pull's peak RSS growth (4.4 to
//! 3.2 MiB). Fixing the threshold at the default keeps large buffers on `mmap`, returned
//! to the kernel when freed; small allocations are unaffected. The cost is a page fault
//! per touched page of each large buffer, a few milliseconds over a 50 MB pull.
//!
//! Set once per process, on the first pull. No other berth component tunes malloc.

/// glibc's default (and initial dynamic) `M_MMAP_THRESHOLD`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Pins the mmap threshold (idempotent; a no-op outside glibc).
pub fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; glibc serialises it
            // against concurrent allocation, and M_MMAP_THRESHOLD takes a byte count.
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
            if ok != 1 {
                tracing::debug!(
                    "mallopt(M_MMAP_THRESHOLD) refused; large buffers may stay in arenas"
                );
            }
        });
    }
}
