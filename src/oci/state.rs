//! A container's persistent state under the runtime's root dir, written atomically.
//!
//! `<root>/<id>/state.json` is written with temp file, fsync, rename and a directory
//! fsync, so a crash leaves either the old or the new file. The status is recorded at
//! every lifecycle step; whether the init process still lives is read from the kernel
//! (pid plus its start time, so a reused pid is not mistaken for the container).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{OciError, Result};
use crate::cgroups::Cgroup;
use crate::store::{Durability, write_file};

/// The OCI lifecycle states (plus `paused`, as runc reports a frozen container).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
    pub fn can_start(self) -> bool {
        self == Status::Created
    }
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }
    pub fn can_delete(self) -> bool {
        matches!(self, Status::Stopped | Status::Created | Status::Creating)
    }
    pub fn can_pause(self) -> bool {
        self == Status::Running
    }
    pub fn can_exec(self) -> bool {
        matches!(self, Status::Created | Status::Running)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What berth keeps about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    /// The recorded lifecycle step; [`State::status`] combines it with the kernel's view.
    pub status: Status,
    /// The init process's pid in berth's pid namespace (0 before it exists).
    pub pid: i32,
    /// The init's start time (field 22 of /proc/<pid>/stat).
    #[serde(default)]
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 creation time.
    pub created: String,
    pub cgroup: Option<Cgroup>,
    /// The owner as runc reports it in `list`.
    #[serde(default)]
    pub owner: String,
    /// The exec fifo: while it exists the init waits for `start`; `start` removes it, so
    /// a created container whose fifo is gone is running (no state write on start).
    #[serde(default)]
    pub fifo: PathBuf,
    /// Whether the spec has poststart / poststop hooks (saves reading it back).
    #[serde(default = "yes")]
    pub poststart: bool,
    #[serde(default = "yes")]
    pub poststop: bool,
}

fn yes() -> bool {
    true
}

impl State {
    /// The current status: the recorded one unless the init is gone (stopped) or its
    /// cgroup is frozen (paused).
    pub fn status(&self) -> Status {
        match self.status {
            Status::Creating if self.pid == 0 => Status::Creating,
            Status::Stopped => Status::Stopped,
            s => {
                if !self.init_alive() {
                    return Status::Stopped;
                }
                if matches!(s, Status::Running | Status::Paused | Status::Created)
                    && self.cgroup.as_ref().is_some_and(Cgroup::is_frozen)
                {
                    return Status::Paused;
                }
                if s == Status::Paused {
                    return Status::Running;
                }
                if s == Status::Created && !self.fifo.as_os_str().is_empty() && !self.fifo.exists()
                {
                    return Status::Running;
                }
                s
            }
        }
    }

    /// Whether the recorded init process is alive (and not a zombie).
    pub fn init_alive(&self) -> bool {
        if self.pid <= 0 {
            return false;
        }
        match proc_stat(self.pid) {
            Some((state, start)) => state != 'Z' && state != 'X' && start == self.pid_start,
            None => false,
        }
    }

    /// The OCI state JSON (runtime spec "State").
    pub fn oci_json(&self) -> serde_json::Value {
        let status = self.status();
        let pid = if matches!(status, Status::Stopped | Status::Creating) {
            0
        } else {
            self.pid
        };
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status.as_str(),
            "pid": pid,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        })
    }

    /// The state given to hooks on stdin (OCI "State", without berth's extras).
    pub fn hook_json(&self, status: Status) -> Vec<u8> {
        let v = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status.as_str(),
            "pid": self.pid,
            "bundle": self.bundle,
            "annotations": self.annotations,
        });
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

/// (state letter, start time) of a process, from /proc/<pid>/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    use std::io::Read;
    // One read: the kernel formats the whole file on every read(2), and the line is a
    // few hundred bytes (read_to_string would probe with growing reads).
    let mut f = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let s = std::str::from_utf8(&buf[..n]).ok()?;
    // comm may hold spaces and parens: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    // rest starts at field 3; starttime is field 22.
    let start = f.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The runtime's root dir: one subdirectory per container.
#[derive(Debug, Clone)]
pub struct Root {
    pub path: PathBuf,
}

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Validates `id` as runc does: no path separators, not `.`/`..`, reasonable chars.
    pub fn check_id(id: &str) -> Result<()> {
        let bad = |reason| {
            Err(OciError::BadId {
                id: id.to_string(),
                reason,
            })
        };
        if id.is_empty() || id.len() > 1024 {
            return bad("length must be 1..1024");
        }
        if id == "." || id == ".." {
            return bad("must not be . or ..");
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
        {
            return bad("only letters, digits, '_', '+', '-' and '.' are allowed");
        }
        Ok(())
    }

    /// Creates the root dir (0700) if missing.
    pub fn ensure(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|source| OciError::Io {
                id: String::new(),
                op: "create root dir",
                path: self.path.clone(),
                source,
            })
    }

    pub fn load(&self, id: &str) -> Result<State> {
        Self::check_id(id)?;
        let p = self.dir(id).join("state.json");
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::NotFound { id: id.into() });
            }
            Err(source) => {
                return Err(OciError::Io {
                    id: id.into(),
                    op: "read",
                    path: p,
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| OciError::StateFile {
            id: id.into(),
            path: p,
            reason: e.to_string(),
        })
    }

    /// Replaces the container's state file atomically. Not fsynced, as runc's: a runtime
    /// crash keeps the page cache, and a machine crash ends the processes it describes.
    pub fn save(&self, st: &State) -> Result<()> {
        let dir = self.dir(&st.id);
        let bytes = serde_json::to_vec(st).map_err(|e| OciError::StateFile {
            id: st.id.clone(),
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        write_file(&dir.join("state.json"), &bytes, Durability::Replace).map_err(|source| {
            OciError::Io {
                id: st.id.clone(),
                op: "write state",
                path: dir.join("state.json"),
                source,
            }
        })
    }

    /// The ids of every container under the root.
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("state.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }
}

/// Now as RFC 3339 (UTC, nanoseconds), without a date crate.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(Root::check_id("abc-1.2_x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(Root::check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn guards() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start());
        assert!(!Status::Running.can_delete());
        assert!(Status::Stopped.can_delete());
        assert!(!Status::Stopped.can_kill());
    }

    #[test]
    fn own_stat_parses() {
        let (s, start) = proc_stat(std::process::id() as i32).expect("stat");
        assert!(s == 'R' || s == 'S');
        assert!(start > 0);
        assert!(now_rfc3339().ends_with('Z'));
    }
}
