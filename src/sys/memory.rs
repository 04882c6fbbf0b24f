//! Giving back memory a process took for a burst of work and no longer uses, without
//! touching what it still uses: the free heap, and the mappings of code it ran once.
//!
//! - The heap: a burst (a hundred pods created, their volumes written, their first
//!   statuses patched) frees most of what it allocated, but glibc keeps freed memory in
//!   each thread's arena, in the middle of the heap where the break cannot shrink, and
//!   the pages stay resident. `malloc_trim` hands those free pages back (MADV_DONTNEED).
//! - The code: the kernel maps a binary's code 64 KiB around each page a process runs
//!   (fault-around), so a process that ran much of its code once (its start-up, a pod's
//!   creation) keeps most of the binary mapped, counted in its RSS and PSS, though it
//!   then runs a few MiB of it. Dropping the executable mapping's page-table entries
//!   leaves the pages in the page cache; what runs next faults back in from there (minor
//!   faults, no IO). Mapped executable pages are also the last the kernel reclaims under
//!   memory pressure, so pages mapped for nothing stay resident longest.
//!
//! The holder releases after each burst of its own; the kubelet daemon every two seconds
//! (kubelet/parts.rs), where its code working set with 100 probed pods is about 5 MiB of
//! the 20 MiB it otherwise keeps mapped.

/// Gives the free pages of every malloc arena back to the kernel.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory the allocator holds as free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops this process's page-table entries of the binary's code (its executable
/// mapping); the pages stay in the page cache. Not while a debugger or tracer is
/// attached: its software breakpoints live in private copies of code pages, which a
/// release would discard. (uprobes, as bpftrace sets them, are dropped the same way: they
/// hold for the code's next run only.)
pub fn release_code() {
    // The mapping never moves: read once (by the holders' zygote, before it forks any).
    static CODE: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    if traced() {
        return;
    }
    if let Some((start, end)) = *CODE.get_or_init(code_mapping) {
        // SAFETY: the range is one private, read-only, executable mapping of the binary,
        // which nothing writes (a Rust executable has no text relocations, and no tracer
        // is attached), so it holds no page of its own: MADV_DONTNEED only drops the
        // page-table entries, and every page, this function's too, reads back the same
        // from the file when next run, on whichever thread runs it.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// Whether a tracer (a debugger, strace) is attached: `TracerPid` of /proc/self/status.
fn traced() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|v| v.trim() != "0")
    })
}

/// The binary's executable mapping (the one this function is in), from /proc/self/maps:
/// "start-end perms offset dev inode path".
fn code_mapping() -> Option<(usize, usize)> {
    let here = code_mapping as *const () as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (start, end) = f.next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        (f.next()? == "r-xp" && (start..end).contains(&here)).then_some((start, end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_code_kib() -> u64 {
        let (start, _) = code_mapping().expect("the test binary's code mapping");
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{start:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head)).skip(1);
        lines
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("Rss of the code mapping")
    }

    #[test]
    fn released_code_runs_again_and_is_mapped_again_as_it_runs() {
        assert!(code_mapping().is_some());
        if traced() {
            return;
        }
        // Tests on other threads fault code back in meanwhile: a few tries.
        let shrank = (0..5).any(|_| {
            let before = resident_code_kib();
            release_code();
            resident_code_kib() < before
        });
        assert!(shrank, "the code mapping never shrank");
        // The code still runs: this test's own and what it calls.
        assert!(code_mapping().is_some());
        trim_heap();
    }
}
