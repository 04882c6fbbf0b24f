//! berth's CNI plugins (CNI spec 1.1), each a binary named `berth-<plugin>`.
//!
//! The library holds what the plugins share: the spec's types, its error JSON and codes,
//! and the plugin entry point that reads the CNI environment and stdin. Each plugin lives
//! in its own module; the binaries under `src/bin/` only call [`entry::run`].
//!
//! The plugins never touch anything but the namespaces named by `CNI_NETNS` and the one
//! they run in, the nftables tables they own (`berth-bridge`, `berth-portmap`) and their
//! own state directories.

pub mod bridge;
pub mod entry;
pub mod error;
pub mod hostlocal;
pub mod ipam;
pub mod loopback;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod portmap;
pub mod types;

/// Makes a child process die with the plugin (PR_SET_PDEATHSIG): a plugin killed mid-ADD
/// must not leave an IPAM or nft child finishing its work after the runtime's DEL.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub use entry::{Command, Plugin, Request};
pub use error::{Code, Error};
