//! Snapshots: each layer unpacked once into `snapshots/<chain-id hex>/`, the overlay lower
//! dir of every image that shares that chain. A snapshot is built in `snapshots/tmp-*`
//! and renamed into place only when its layer verified, so a chain-ID dir that exists is
//! complete; leftovers of a killed unpack are removed when the store opens.
//!
//! Whether an unpack is still running is decided by a lock, not by its PID: the writer
//! holds an flock on `tmp-<name>.lock` beside its dir for as long as the dir exists, and
//! the kernel drops that lock when the writer dies, however it dies. A recorded PID says
//! nothing once the writer is a zombie or its PID was reused. The lock file sits beside
//! the dir rather than in it because everything in the dir becomes layer content (and a
//! layer could replace a file of that name).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::digest::Digest;
use super::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

/// A snapshot being unpacked: its dir, and the lock that tells other processes its
/// writer is alive. Removed on drop unless committed.
#[derive(Debug)]
pub struct TmpSnapshot {
    path: Option<PathBuf>,
    lock: Option<(PathBuf, Flock<File>)>,
}

impl TmpSnapshot {
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Removes the lock file, then lets go of the lock: a cleaner that takes the lock
    /// after this finds its path gone and leaves everything alone.
    fn release(&mut self) {
        if let Some((p, lock)) = self.lock.take() {
            let _ = std::fs::remove_file(p);
            drop(lock);
        }
    }
}

impl Drop for TmpSnapshot {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_dir_all(p);
        }
        self.release();
    }
}

fn lock_path(tmp_dir: &Path) -> PathBuf {
    let mut s = tmp_dir.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Whether `f` is still the file at `p` (a cleaner may have unlinked the path between
/// our open and our flock).
fn same_file(f: &File, p: &Path) -> bool {
    match (f.metadata(), std::fs::symlink_metadata(p)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Snapshots {
    /// Opens `root/snapshots`, removing temp dirs whose writer is gone.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("snapshots");
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let s = Self { dir };
        s.clean_stale()?;
        Ok(s)
    }

    /// Removes every `tmp-*` dir whose lock nobody holds. A dir without a lock file is
    /// dead too: a writer makes and locks the file before the dir, and removes the dir
    /// before the file.
    fn clean_stale(&self) -> Result<()> {
        let mut bases = std::collections::BTreeSet::new();
        for e in std::fs::read_dir(&self.dir)
            .map_err(Error::io("list", &self.dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("trash-") {
                // A removal was under way when its process died; nothing refers to it.
                let (_, r) = remove_tree(&e.path());
                if let Err(err) = r {
                    tracing::warn!(dir = %e.path().display(), error = %err, "remove a discarded snapshot");
                }
                continue;
            }
            if !name.starts_with("tmp-") {
                continue;
            }
            let base = name.strip_suffix(".lock").unwrap_or(&name).to_string();
            bases.insert(base);
        }
        for base in bases {
            let dir = self.dir.join(&base);
            let lp = lock_path(&dir);
            let held = match File::options().write(true).open(&lp) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("open lock file", &lp)(e)),
                Ok(f) => match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                    Ok(l) => Some(l),
                    Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
                    Err((_, errno)) => return Err(Error::io("flock", &lp)(errno.into())),
                },
            };
            if held.as_ref().is_some_and(|l| !same_file(l, &lp)) {
                continue; // its writer finished and another took the name meanwhile
            }
            tracing::info!(dir = %dir.display(), "removing an unpack left by a killed process");
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("remove stale unpack", &dir)(e));
                }
                _ => {}
            }
            let _ = std::fs::remove_file(&lp);
            drop(held);
        }
        Ok(())
    }

    pub fn path(&self, chain: &Digest) -> PathBuf {
        self.dir.join(chain.hex())
    }

    pub fn has(&self, chain: &Digest) -> bool {
        self.path(chain).is_dir()
    }

    /// A new temp dir for an unpack, locked for as long as it lives.
    pub fn temp(&self) -> Result<TmpSnapshot> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        loop {
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The time makes the name unique across processes that got the same PID.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let p = self
                .dir
                .join(format!("tmp-{}-{n}-{nanos:x}", std::process::id()));
            let lp = lock_path(&p);
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lp)
                .map_err(Error::io("create lock file", &lp))?;
            let lock = Flock::lock(f, FlockArg::LockExclusive)
                .map_err(|(_, errno)| Error::io("flock", &lp)(errno.into()))?;
            if !same_file(&lock, &lp) {
                continue; // a cleaner removed it between our open and our flock
            }
            let mut tmp = TmpSnapshot {
                path: None,
                lock: Some((lp, lock)),
            };
            std::fs::create_dir(&p).map_err(Error::io("create", &p))?;
            tmp.path = Some(p.clone());
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(Error::io("chmod", &p))?;
            return Ok(tmp);
        }
    }

    /// Moves a finished unpack into place as `chain`.
    pub fn commit(&self, mut tmp: TmpSnapshot, chain: &Digest) -> Result<()> {
        let Some(from) = tmp.path.take() else {
            return Ok(());
        };
        let to = self.path(chain);
        let out = if to.exists() {
            let _ = std::fs::remove_dir_all(&from);
            Ok(())
        } else {
            match std::fs::rename(&from, &to) {
                Ok(()) => Ok(()),
                // Another process committed the same chain a moment ago: same content.
                Err(_) if to.is_dir() => {
                    let _ = std::fs::remove_dir_all(&from);
                    Ok(())
                }
                Err(e) => {
                    tmp.path = Some(from); // removed, then unlocked, on drop
                    return Err(Error::io("commit snapshot", &to)(e));
                }
            }
        };
        tmp.release();
        out
    }

    pub fn list(&self) -> Result<Vec<Digest>> {
        let rd = std::fs::read_dir(&self.dir).map_err(Error::io("list", &self.dir))?;
        Ok(rd
            .flatten()
            .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    /// Moves the snapshot of `chain` aside to `trash-<hex>-<n>`, where nothing looks for
    /// it, for [`remove_tree`] to delete later; returns where it went. A trash dir a
    /// crash leaves is removed when the store next opens.
    pub fn discard(&self, chain: &Digest) -> Result<PathBuf> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let from = self.path(chain);
        let to = self
            .dir
            .join(format!("trash-{}-{}-{n}", chain.hex(), std::process::id()));
        std::fs::rename(&from, &to).map_err(Error::io("discard snapshot", &from))?;
        Ok(to)
    }

    pub fn remove(&self, chain: &Digest) -> Result<()> {
        let p = self.path(chain);
        match std::fs::remove_dir_all(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove snapshot", &p)(e))
            }
            _ => Ok(()),
        }
    }
}

/// Deletes the tree at `p` (never following a symlink), summing the apparent sizes of
/// its regular files as it goes: one walk where a size count and `remove_dir_all` took
/// two. Keeps going past errors and returns the first.
pub fn remove_tree(p: &Path) -> (u64, std::io::Result<()>) {
    fn walk(p: &Path, bytes: &mut u64, first: &mut Option<std::io::Error>) {
        match std::fs::read_dir(p) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let path = e.path();
                    match e.file_type() {
                        Ok(t) if t.is_dir() => walk(&path, bytes, first),
                        Ok(t) => {
                            if t.is_file() {
                                *bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                            }
                            match std::fs::remove_file(&path) {
                                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                                    first.get_or_insert(err);
                                }
                                _ => {}
                            }
                        }
                        Err(err) => {
                            first.get_or_insert(err);
                        }
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => {
                first.get_or_insert(err);
            }
        }
        match std::fs::remove_dir(p) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                first.get_or_insert(err);
            }
            _ => {}
        }
    }
    let mut bytes = 0;
    let mut first = None;
    walk(p, &mut bytes, &mut first);
    (bytes, first.map_or(Ok(()), Err))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn root(name: &str) -> PathBuf {
        let r = std::env::temp_dir().join(format!("berth-unit-snap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&r);
        std::fs::create_dir_all(r.join("snapshots")).unwrap();
        r
    }

    /// A temp dir as an earlier writer with `pid` left it: its files, its lock file, but
    /// no lock held (the kernel released it when the writer died).
    fn left_by(root: &Path, pid: u32) -> PathBuf {
        let d = root.join(format!("snapshots/tmp-{pid}-0"));
        std::fs::create_dir_all(d.join("usr/bin")).unwrap();
        std::fs::write(d.join("usr/bin/big"), vec![0u8; 4096]).unwrap();
        std::fs::write(lock_path(&d), b"").unwrap();
        d
    }

    #[test]
    fn an_unlocked_unpack_is_removed_even_when_its_pid_lives() {
        let r = root("alive-pid");
        // This very process: a PID that certainly exists.
        let mine = left_by(&r, std::process::id());
        // A zombie: a child that exited and was not reaped yet.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let zombie_pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(Path::new(&format!("/proc/{zombie_pid}")).exists());
        let zombie = left_by(&r, zombie_pid);
        // No lock file at all (an older writer, or one killed before its dir was made).
        let bare = r.join("snapshots/tmp-1-7");
        std::fs::create_dir_all(&bare).unwrap();

        Snapshots::open(&r).unwrap();
        for d in [&mine, &zombie, &bare] {
            assert!(!d.exists(), "{} kept", d.display());
            assert!(!lock_path(d).exists(), "{} lock kept", d.display());
        }
        child.wait().unwrap();
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn a_locked_unpack_is_kept_and_its_lock_goes_with_it() {
        let r = root("locked");
        let writer = Snapshots::open(&r).unwrap();
        let tmp = writer.temp().unwrap();
        std::fs::write(tmp.path().join("f"), b"x").unwrap();
        let lp = lock_path(tmp.path());
        assert!(lp.exists());

        // Another opener (a second process, or a restart while a pull still runs): the
        // lock is held on another open file, so the unpack stays.
        Snapshots::open(&r).unwrap();
        assert!(tmp.path().join("f").exists());

        let chain = Digest::of(b"layer");
        writer.commit(tmp, &chain).unwrap();
        assert!(writer.path(&chain).join("f").exists());
        assert!(!lp.exists(), "lock file left after commit");
        let left: Vec<_> = std::fs::read_dir(r.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![chain.hex().to_string()]);

        let dropped = writer.temp().unwrap();
        let (p, lp) = (dropped.path().to_path_buf(), lock_path(dropped.path()));
        drop(dropped);
        assert!(!p.exists() && !lp.exists());
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn a_discarded_snapshot_is_out_of_sight_and_goes_at_the_next_open() {
        let r = root("trash");
        let snaps = Snapshots::open(&r).unwrap();
        let chain = Digest::of(b"discarded");
        std::fs::create_dir_all(snaps.path(&chain).join("a/b")).unwrap();
        std::fs::write(snaps.path(&chain).join("a/b/f"), vec![1u8; 1000]).unwrap();
        std::fs::write(snaps.path(&chain).join("g"), vec![1u8; 24]).unwrap();
        std::os::unix::fs::symlink("/etc", snaps.path(&chain).join("a/etc")).unwrap();
        let t1 = snaps.discard(&chain).unwrap();
        assert!(!snaps.has(&chain) && snaps.list().unwrap().is_empty());
        // Deleted in one walk that counts what it frees, never following the symlink.
        assert_eq!(remove_tree(&t1).0, 1024);
        assert!(!t1.exists() && Path::new("/etc/passwd").exists());

        // One left behind by a crash before it was deleted: gone at the next open.
        std::fs::create_dir_all(snaps.path(&chain).join("x")).unwrap();
        let t2 = snaps.discard(&chain).unwrap();
        assert!(t2.exists());
        Snapshots::open(&r).unwrap();
        assert!(!t2.exists());
        std::fs::remove_dir_all(&r).unwrap();
    }
}
