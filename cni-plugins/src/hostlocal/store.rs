//! berth-host-local's allocation store: one file per address, named by the address and
//! holding `containerID\r\nifname` (the reference plugin's layout, so tools that read
//! /var/lib/cni/networks keep working).
//!
//! Crash safety: a reservation is written to a temp file and then hard-linked to its
//! final name, which fails if the address is taken. A plugin killed at any point leaves
//! either no reservation or a complete one (never a torn file), plus at worst a stray temp
//! file that the next holder of the lock removes. Every change happens under an exclusive
//! flock on `<dir>/lock`, held until the store is dropped.
//!
//! The files are not fsynced, on purpose: an allocation only means something while the
//! kernel that holds the pod's namespace is up. A power loss ends every pod with it, and the
//! runtime's GC after boot (CNI GC with the valid attachments) releases whatever reached the
//! disk. What must hold, and does, is that no process crash can leave a file half written.
//! An fsync per reservation would cost more than the rest of the plugin's work.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const TMP_PREFIX: &str = ".tmp-";
const LAST_RESERVED: &str = "last_reserved_ip.";

/// A locked allocation directory for one network.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

impl Store {
    /// Opens (creating, root-only) `dir` and takes its lock; waits for other holders.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(Error::io(
                format!("lock {}", lock_path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        let store = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        store.remove_stray_temps();
        Ok(store)
    }

    /// Temp files left by a plugin killed mid-write; safe to remove under the lock.
    fn remove_stray_temps(&self) {
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Reserves `ip` for (`id`, `ifname`); `Ok(false)` when it is already taken.
    pub fn reserve(&self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        if path.exists() {
            return Ok(false);
        }
        let tmp = self.write_temp(format!("{id}\r\n{ifname}").as_bytes())?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(format!("reserve {}", path.display()), e)),
        }
    }

    /// Every reservation: (address, container id, ifname).
    pub fn all(&self) -> Result<Vec<(IpAddr, String, String)>> {
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("read {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            let Ok(body) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let mut parts = body.split("\r\n");
            let id = parts.next().unwrap_or_default().trim().to_string();
            let ifname = parts.next().unwrap_or_default().trim().to_string();
            out.push((ip, id, ifname));
        }
        Ok(out)
    }

    /// The addresses held by (`id`, `ifname`); an empty ifname in a file matches any.
    pub fn by_owner(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|(_, i, f)| i == id && (f.is_empty() || f == ifname))
            .map(|(ip, _, _)| ip)
            .collect())
    }

    /// Releases `ip`; already free is fine.
    pub fn release(&self, ip: IpAddr) -> Result<()> {
        let path = self.dir.join(ip.to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("release {}", path.display()), e)),
        }
    }

    /// The last address handed out from range set `set`.
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        std::fs::read_to_string(self.dir.join(format!("{LAST_RESERVED}{set}")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Records the last address handed out (atomically: temp, rename). Only a hint for
    /// where the next search starts.
    pub fn set_last_reserved(&self, set: usize, ip: IpAddr) -> Result<()> {
        let tmp = self.write_temp(ip.to_string().as_bytes())?;
        let path = self.dir.join(format!("{LAST_RESERVED}{set}"));
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    fn write_temp(&self, body: &[u8]) -> Result<PathBuf> {
        let tmp = self.dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(body)
        };
        write().map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        Ok(tmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_release_round_trip() {
        let dir = std::env::temp_dir().join(format!("berth-hl-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(&dir).expect("open");
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(s.reserve(ip, "c1", "eth0").expect("reserve"));
        assert!(!s.reserve(ip, "c2", "eth0").expect("second"));
        assert_eq!(s.by_owner("c1", "eth0").expect("by"), vec![ip]);
        assert!(s.by_owner("c1", "eth1").expect("by").is_empty());
        s.release(ip).expect("release");
        s.release(ip).expect("release twice");
        assert!(s.all().expect("all").is_empty());
        std::fs::write(dir.join(".tmp-1"), b"x").expect("stray");
        drop(s);
        let _s = Store::open(&dir).expect("reopen");
        assert!(!dir.join(".tmp-1").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
