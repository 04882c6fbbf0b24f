//! Kernel seams: narrow traits over kernel interfaces, each with its Linux implementation
//! (`Linux`, or a type rooted at a path) and an implementation for the one recording fake,
//! `record::Recorder` (built for unit tests only), so the logic above them is tested
//! without root. The logic takes
//! the seam as a parameter; the real one is chosen where the code runs (the container's
//! init, the holder, the sandbox operations).
//!
//! Behind a seam today:
//! - [`mount::Mounter`]: mount(2), umount2(2), statvfs flags, /proc/self/mountinfo; used
//!   by oci/rootfs and the holder's namespace files.
//! - [`fs::Files`]: mknod(2), chown(2), symlink(2) of the container's /dev.
//! - [`root::Root`]: chdir(2), chroot(2), pivot_root(2), the ramfs check.
//! - [`sysctl::Sysctl`]: writes under /proc/sys (the container's and the pod's).
//! - [`ns::Namespaces`]: unshare(2), sethostname(2), the pod's pid 1 in a new pid
//!   namespace, and setns(2) into a network namespace on a thread of its own.
//! - [`link::LinkFlags`]: SIOCGIFFLAGS/SIOCSIFFLAGS (the pod's `lo`).
//! - [`overlay::OverlayMounter`]: overlayfs mounts of the image store (its own fake).
//!
//! Still called directly, without a fake:
//! - [`clone`]: fork, clone3 (into a cgroup, with CLONE_PARENT), setns of a container's
//!   namespaces, and the message socket: plain functions, used by oci/ and the holder.
//! - [`fds`]: close_range; [`tty`]: TIOCSWINSZ; [`memory`]: malloc_trim and the
//!   release of code mappings (madvise).
//! - oci/init.rs and oci/create.rs: capabilities, no_new_privs, seccomp, rlimits,
//!   personality, ioprio, uid/gid switches, umask, hostname and domainname, the cgroup
//!   namespace unshare, exec; oci/console.rs and the holder's pty.rs: pty ioctls.
//! - cgroups/: cgroupfs files (under a root path the caller passes) and the BPF device
//!   filter (bpf(2)).
//! - The holder process: signalfd, poll, waitpid, kill, child subreaper, fd passing,
//!   madvise/malloc_trim.
//! - runtime/sandbox/ops.rs: the sandbox's /dev/shm tmpfs mount and unmount.
//! - runtime/sessions/dial.rs: setns into a pod's network namespace for port-forward.
//! - The CNI plugin binaries (cni-plugins/): rtnetlink and nftables, tested for real in
//!   namespaces of their own; the daemon itself programs no links or rules.
//! - image/: unpack (mknod, xattrs, times, ownership) under the store's root path.

pub mod clone;
pub mod fds;
pub mod fs;
pub mod link;
pub mod memory;
pub mod mount;
pub mod ns;
pub mod overlay;
#[cfg(test)]
pub mod record;
pub mod root;
pub mod sysctl;
pub mod tty;
