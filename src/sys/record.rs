//! The recording fake behind every seam of this module: one ordered log of the calls the
//! logic made, shared by all the seams a test hands it (so the order between a mount, a
//! mknod and a pivot_root is visible), and one call that can be made to fail.
//!
//! Each seam's file implements its trait for [`Recorder`] next to its Linux
//! implementation. The answers to queries (mount flags, mountinfo, link flags) are set
//! on the recorder; queries are not recorded, only calls that change something.

use std::path::PathBuf;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::SFlag;

/// One call through a seam.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount {
        target: PathBuf,
        flags: MntFlags,
    },
    Mknod {
        path: PathBuf,
        kind: SFlag,
        mode: u32,
        major: u64,
        minor: u64,
    },
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
    /// `link` made pointing to `to`.
    Symlink {
        to: PathBuf,
        link: PathBuf,
    },
    Chdir(PathBuf),
    Chroot(PathBuf),
    PivotRoot(PathBuf),
    /// A write under /proc/sys, by its path below it.
    Sysctl {
        path: PathBuf,
        value: String,
    },
    Unshare(CloneFlags),
    SetHostname(String),
    /// The pid 1 of a new pid namespace forked.
    SpawnPidInit,
    /// That pid 1 killed and reaped.
    KillPidInit(i32),
    /// The calling code moved into the network namespace at this path.
    EnterNetns(PathBuf),
    SetLinkFlags {
        name: String,
        flags: i32,
    },
}

type Matcher = Box<dyn Fn(&Call) -> bool + Send + Sync>;

/// What the fake answers to queries.
#[derive(Debug, Clone)]
pub struct Answers {
    /// What /proc/self/mountinfo reads.
    pub mountinfo: String,
    /// What statvfs says of any mount: the flags a remount must keep.
    pub mount_flags: MsFlags,
    /// Whether the new root is on ramfs (pivot_root cannot leave it).
    pub ramfs: bool,
    /// The flags every link has before the logic changes them.
    pub link_flags: i32,
    /// The pid the fake pid 1 of a new pid namespace gets.
    pub pid_init: i32,
}

impl Default for Answers {
    fn default() -> Self {
        Answers {
            mountinfo: String::new(),
            mount_flags: MsFlags::empty(),
            ramfs: false,
            link_flags: 0,
            pid_init: 4242,
        }
    }
}

/// Records every call in order; fails the first call `fail_on` matches.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<Call>>,
    fail: Mutex<Option<(Matcher, Errno)>>,
    pub answers: Answers,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn new(answers: Answers) -> Self {
        Recorder {
            answers,
            ..Default::default()
        }
    }

    /// Makes the first call that `matches` fail with `errno` (it is still recorded).
    pub fn fail_on(
        self,
        matches: impl Fn(&Call) -> bool + Send + Sync + 'static,
        errno: Errno,
    ) -> Self {
        *self.fail.lock().unwrap_or_else(|p| p.into_inner()) = Some((Box::new(matches), errno));
        self
    }

    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records `call`; the error asked for by [`Recorder::fail_on`] if it matches.
    pub fn record(&self, call: Call) -> nix::Result<()> {
        let mut fail = self.fail.lock().unwrap_or_else(|p| p.into_inner());
        let failed = match fail.as_ref() {
            Some((m, errno)) if m(&call) => Some(*errno),
            _ => None,
        };
        if failed.is_some() {
            *fail = None;
        }
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
        failed.map_or(Ok(()), Err)
    }
}
