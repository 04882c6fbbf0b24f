//! Network namespaces that exist only as long as the test holds them.
//!
//! A [`NetNs`] is an open file on a namespace made by `unshare(CLONE_NEWNET)` on a
//! short-lived thread. Nothing is mounted and nothing is named under /run/netns, so the
//! namespace, and every link, address, route and nftables table in it, disappears when the
//! handle is dropped or the test process dies, whatever the way it dies.

use std::fs::File;
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use nix::sched::{CloneFlags, setns, unshare};

/// A network namespace held open by file descriptor.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    file: File,
}

impl NetNs {
    /// A fresh network namespace with its loopback up.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let file = std::thread::scope(|s| {
            s.spawn(|| -> anyhow::Result<File> {
                unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
                File::open("/proc/thread-self/ns/net").context("open /proc/thread-self/ns/net")
            })
            .join()
            .expect("netns thread panicked")
        })?;
        let ns = Self {
            name: name.to_string(),
            file,
        };
        crate::util::run(ns.command("ip").args(["link", "set", "lo", "up"]))
            .with_context(|| format!("bring up lo in netns {name}"))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file descriptor, e.g. for `IFLA_NET_NS_FD`.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// A path to the namespace that this process and its children can open
    /// (`/proc/<pid>/fd/<fd>`), for tools that take a netns path.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.fd()))
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it opens live there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns(CLONE_NEWNET)");
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Runs an async block on a current-thread tokio runtime inside this namespace.
    pub fn block_on<F: Future>(&self, f: impl FnOnce() -> F + Send) -> F::Output
    where
        F::Output: Send,
    {
        self.run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(f())
        })
    }

    /// Runs `f` with an rtnetlink handle whose socket lives in this namespace.
    pub fn netlink<T: Send, F>(&self, f: impl FnOnce(rtnetlink::Handle) -> F + Send) -> T
    where
        F: Future<Output = T>,
    {
        self.block_on(|| async move {
            let (conn, handle, _) = rtnetlink::new_connection().expect("netlink socket");
            tokio::spawn(conn);
            f(handle).await
        })
    }

    /// A command that will run inside this namespace (joined between fork and exec).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.fd();
        cmd.env(crate::util::ID_ENV, &self.name);
        // SAFETY: the closure runs in the forked child before exec and only calls setns(2),
        // which is async-signal-safe; `fd` stays open in the child because it is inherited
        // from this process, which holds it for the lifetime of `self`.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }
}
