//! The sysctl seam: writes under /proc/sys, which act on the writer's own namespaces,
//! with the Linux implementation and the recording fake; and sysctl names, the dotted
//! form the CRI and runc use and the file under /proc/sys that each names.

use std::io;
use std::path::Path;

#[cfg(test)]
use super::record::{Call, Recorder};

/// The file under /proc/sys of a dotted sysctl name (a '/' inside a component is a '.'
/// of the file name, e.g. an interface `eth0.100`).
pub fn proc_path(dotted: &str) -> String {
    dotted
        .split('.')
        .map(|c| c.replace('/', "."))
        .collect::<Vec<_>>()
        .join("/")
}

/// Writes to /proc/sys.
pub trait Sysctl: Send + Sync {
    /// Writes `value` to `path`, relative to /proc/sys. A sysctl this kernel does not
    /// have is `NotFound`.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
}

/// The kernel's /proc/sys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Sysctl for Linux {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // never created: a missing file is a sysctl this kernel does not have
        std::fs::OpenOptions::new()
            .write(true)
            .open(Path::new("/proc/sys").join(path))
            .and_then(|mut f| io::Write::write_all(&mut f, value.as_bytes()))
    }
}

#[cfg(test)]
impl Sysctl for Recorder {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        self.record(Call::Sysctl {
            path: path.into(),
            value: value.into(),
        })
        .map_err(io::Error::from)
    }
}
