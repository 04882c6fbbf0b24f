//! The file source (pkg/kubelet/config/file.go, file_linux.go): a manifest file or a
//! directory of them, read whole on every change that inotify reports and again every
//! `file_period` as a safety net. As kubelet: names starting with `.` are ignored, a
//! directory is read without recursing, a path that does not exist yet is an empty set.
//!
//! Owns one task per path; it only reads the files and sends what it read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchMask};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::error::ManifestError;
use super::parse::{SourceSet, parse_documents};

/// After an event, further events within this long are taken as part of the same change, so
/// that a file written in several steps is read once, complete.
const SETTLE: Duration = Duration::from_millis(100);

/// Reads `path` now: a file, every regular non-dot file of a directory, or nothing.
pub(crate) fn read_path(path: &Path, node_name: &str) -> SourceSet {
    let shown = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(path = %shown, "manifest path does not exist, no pods from it");
            return SourceSet::default();
        }
        Err(e) => return file_error(&shown, format!("cannot read: {e}")),
    };
    if meta.is_file() {
        return read_file(path, node_name);
    }
    if !meta.is_dir() {
        return file_error(&shown, "path is not a directory or file".to_string());
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => return file_error(&shown, format!("cannot list: {e}")),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut set = SourceSet::default();
    for file in files {
        match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => set.extend(read_file(&file, node_name)),
            Ok(m) if m.is_dir() => {
                tracing::warn!(path = %file.display(), "manifest path is a directory, not recursing into it");
            }
            Ok(_) => {
                tracing::warn!(path = %file.display(), "manifest path is not a directory or file")
            }
            // Gone between the listing and the read: the next event reads the dir again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => set.extend(file_error(
                &file.display().to_string(),
                format!("cannot read: {e}"),
            )),
        }
    }
    set
}

fn read_file(path: &Path, node_name: &str) -> SourceSet {
    let shown = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => parse_documents(&shown, &bytes, node_name),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SourceSet::default(),
        Err(e) => file_error(&shown, format!("cannot read: {e}")),
    }
}

fn file_error(file: &str, detail: String) -> SourceSet {
    tracing::warn!(file, "{detail}");
    SourceSet {
        errors: vec![ManifestError::new(file, "", detail)],
        ..Default::default()
    }
}

/// The source's task: read, send, wait for an event or the period, again. Ends when the
/// receiver is gone.
pub(crate) async fn run(
    path: PathBuf,
    node_name: String,
    period: Duration,
    id: usize,
    tx: mpsc::UnboundedSender<(usize, SourceSet)>,
) {
    let mut watch: Option<Watch> = None;
    loop {
        if watch.is_none() {
            watch = Watch::new(&path);
        }
        let (p, n) = (path.clone(), node_name.clone());
        let set = match tokio::task::spawn_blocking(move || read_path(&p, &n)).await {
            Ok(set) => set,
            Err(e) => file_error(&path.display().to_string(), format!("reading failed: {e}")),
        };
        if tx.send((id, set)).is_err() {
            return;
        }
        match watch.as_mut() {
            Some(w) => {
                tokio::select! {
                    alive = w.next_change() => if !alive { watch = None },
                    _ = tokio::time::sleep(period) => {}
                }
            }
            None => tokio::time::sleep(period).await,
        }
    }
}

/// An inotify watch on the directory that holds the source: the path itself when it is a
/// directory, its parent when it is a file (an editor replaces a file by renaming over it,
/// which a watch on the file itself would miss).
struct Watch {
    stream: inotify::EventStream<Vec<u8>>,
    /// Only events on this name count, when the source is a single file.
    only: Option<std::ffi::OsString>,
}

impl Watch {
    fn new(path: &Path) -> Option<Watch> {
        let (dir, only) = if path.is_dir() {
            (path.to_path_buf(), None)
        } else {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (parent.to_path_buf(), Some(path.file_name()?.to_os_string()))
        };
        let mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        let result = Inotify::init().and_then(|inotify| {
            inotify.watches().add(&dir, mask)?;
            inotify.into_event_stream(vec![0u8; 4096])
        });
        match result {
            Ok(stream) => Some(Watch { stream, only }),
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "no inotify watch yet, relisting every period");
                None
            }
        }
    }

    /// Waits for a change that concerns the source and lets it settle. False when the watch
    /// is gone (directory removed or moved, queue overflow, stream closed): re-read and
    /// watch again.
    async fn next_change(&mut self) -> bool {
        let mut alive = true;
        // The first relevant event.
        loop {
            match self.stream.next().await {
                Some(Ok(event)) => {
                    let (relevant, keeps) = self.judge(event.mask, event.name.as_deref());
                    alive &= keeps;
                    if relevant {
                        break;
                    }
                }
                _ => return false,
            }
        }
        // Then until quiet.
        while let Ok(next) = tokio::time::timeout(SETTLE, self.stream.next()).await {
            match next {
                Some(Ok(event)) => alive &= self.judge(event.mask, event.name.as_deref()).1,
                _ => return false,
            }
        }
        alive
    }

    /// (whether the event concerns the source, whether the watch survives it)
    fn judge(&self, mask: EventMask, name: Option<&std::ffi::OsStr>) -> (bool, bool) {
        let gone = mask.intersects(
            EventMask::IGNORED
                | EventMask::DELETE_SELF
                | EventMask::MOVE_SELF
                | EventMask::Q_OVERFLOW,
        );
        if gone {
            return (true, false);
        }
        let relevant = match (name, &self.only) {
            (None, _) => true,
            (Some(n), Some(only)) => n == only.as_os_str(),
            (Some(n), None) => !n.to_string_lossy().starts_with('.'),
        };
        (relevant, true)
    }
}
