//! Recording fakes of the runtime's collaborators, for unit tests of the sandbox and
//! container logic: pods' holders ([`FakeHolders`]), the pod network ([`FakeCni`]) and
//! the image store ([`FakeImages`]). Each records the calls it gets, in order, as short
//! strings (`"spawn <pod>"`, `"del <pod>"`, ...), keeps the state a real one would
//! (which holders run, which containers they hold, which rootfs exist), and can be told
//! to fail one kind of call.

mod cni;
mod holders;
mod images;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub use cni::FakeCni;
pub use holders::{FakeHolders, container_info};
pub use images::FakeImages;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A directory under the system's temp dir, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "berth-unit-{name}-{}-{}",
            std::process::id(),
            crate::runtime::meta::generate_id().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The value of a runtime call that must succeed, or the test fails with its error.
pub fn ok<T>(r: crate::runtime::error::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// The names of the files and dirs left in `dir`, sorted.
pub fn left_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
