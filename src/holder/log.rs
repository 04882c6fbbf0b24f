//! CRI container log files: `<RFC3339Nano> <stream> <P|F> <text>\n`, one record per line.
//!
//! The splitting follows containerd's CRI logger (pkg/cri/io/logger.go), which kubelet's
//! log reader is written against: a line ends at `\n` (a `\r` just before it is dropped);
//! a line longer than [`MAX_LINE`] bytes is cut into `P` records of exactly that many
//! bytes and a final `F` record of the rest (1 to MAX_LINE bytes; an empty line is an
//! empty `F`); text left without a newline when the stream ends is written as `P`
//! records. Each record is one write(2) to a file opened with O_APPEND, so the stdout and
//! stderr records of a container never interleave within a line.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// containerd's default `max_container_log_line_size`.
pub const MAX_LINE: usize = 16 * 1024;

/// Which of the container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A record's tag: part of a longer line, or a line's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Partial,
    Full,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Tag::Partial => "P",
            Tag::Full => "F",
        }
    }
}

/// Cuts one stream's bytes into records; holds at most one record's worth of bytes.
#[derive(Debug)]
pub struct Splitter {
    pending: Vec<u8>,
    max: usize,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new(MAX_LINE)
    }
}

impl Splitter {
    pub fn new(max: usize) -> Self {
        Self {
            pending: Vec::new(),
            max: max.max(1),
        }
    }

    /// Feeds bytes read from the stream; `emit` gets every record they complete.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        while !data.is_empty() {
            let (seg, newline) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            self.pending.extend_from_slice(seg);
            self.cut_overlong(emit);
            if newline {
                if self.pending.last() == Some(&b'\r') {
                    self.pending.pop();
                }
                emit(Tag::Full, &self.pending);
                self.pending.clear();
                data = &data[seg.len() + 1..];
            } else {
                data = &[];
            }
        }
    }

    /// The stream ended: what is left is a partial line.
    pub fn finish(&mut self, emit: &mut impl FnMut(Tag, &[u8])) {
        for chunk in self.pending.chunks(self.max) {
            emit(Tag::Partial, chunk);
        }
        self.pending.clear();
    }

    /// Emits `P` records while more than a record's worth is pending. A trailing `\r` is
    /// not counted: it may be the start of the `\r\n` that ends the line.
    fn cut_overlong(&mut self, emit: &mut impl FnMut(Tag, &[u8])) {
        loop {
            let cr = usize::from(self.pending.last() == Some(&b'\r'));
            if self.pending.len() - cr <= self.max {
                return;
            }
            emit(Tag::Partial, &self.pending[..self.max]);
            self.pending.drain(..self.max);
        }
    }
}

/// One container's log file, shared by its stdout and stderr.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    line: Vec<u8>,
}

impl LogFile {
    /// Opens (creating it and its directory) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(open_append(path)?),
            line: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again (the old file was renamed away by log rotation).
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = None;
        self.file = Some(open_append(&self.path)?);
        Ok(())
    }

    /// Writes one record stamped with the current time.
    pub fn write(&mut self, stream: Stream, tag: Tag, text: &[u8]) {
        self.line.clear();
        push_rfc3339_nano(&mut self.line, SystemTime::now());
        self.line.push(b' ');
        self.line.extend_from_slice(stream.as_str().as_bytes());
        self.line.push(b' ');
        self.line.extend_from_slice(tag.as_str().as_bytes());
        self.line.push(b' ');
        self.line.extend_from_slice(text);
        self.line.push(b'\n');
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_all(&self.line)
        {
            // The output is still drained, so the container never blocks on a full pipe.
            tracing::warn!(path = %self.path.display(), error = %e, "write container log");
        }
        // a record longer than usual is not kept around
        if self.line.capacity() > 2 * MAX_LINE {
            self.line = Vec::new();
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Appends `t` in UTC as Go's `time.RFC3339Nano` prints it: trailing zeros of the
/// fraction dropped, and the dot too when the fraction is zero.
pub fn push_rfc3339_nano(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let mut frac = format!("{nanos:09}");
        while frac.ends_with('0') {
            frac.pop();
        }
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
    out.push(b'Z');
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn split(max: usize, pieces: &[&[u8]], eof: bool) -> Vec<(Tag, Vec<u8>)> {
        let mut s = Splitter::new(max);
        let mut out = Vec::new();
        let mut emit = |t: Tag, b: &[u8]| out.push((t, b.to_vec()));
        for p in pieces {
            s.feed(p, &mut emit);
        }
        if eof {
            s.finish(&mut emit);
        }
        out
    }

    fn recs(v: &[(Tag, &str)]) -> Vec<(Tag, Vec<u8>)> {
        v.iter().map(|(t, s)| (*t, s.as_bytes().to_vec())).collect()
    }

    #[test]
    fn lines_are_full_records_and_crlf_loses_its_cr() {
        use Tag::*;
        assert_eq!(
            split(16, &[b"a\nbc\r\n\nd\re\n"], true),
            recs(&[(Full, "a"), (Full, "bc"), (Full, ""), (Full, "d\re")])
        );
        // however the reads cut it
        assert_eq!(
            split(16, &[b"he", b"llo", b"\r", b"\nwor", b"ld\n"], false),
            recs(&[(Full, "hello"), (Full, "world")])
        );
    }

    #[test]
    fn long_lines_are_cut_into_partial_records_of_max_bytes() {
        use Tag::*;
        // exactly max: one full record
        assert_eq!(split(4, &[b"abcd\n"], false), recs(&[(Full, "abcd")]));
        // 2 x max: P then F of max bytes (no empty F)
        assert_eq!(
            split(4, &[b"abcdefgh\n"], false),
            recs(&[(Partial, "abcd"), (Full, "efgh")])
        );
        assert_eq!(
            split(4, &[b"ab", b"cdefghij", b"\n"], false),
            recs(&[(Partial, "abcd"), (Partial, "efgh"), (Full, "ij")])
        );
        // max bytes then \r\n: the \r is not counted
        assert_eq!(
            split(4, &[b"abcd\r", b"\n"], false),
            recs(&[(Full, "abcd")])
        );
        // a \r that is not followed by \n is text
        assert_eq!(
            split(4, &[b"abcd\rx\n"], false),
            recs(&[(Partial, "abcd"), (Full, "\rx")])
        );
    }

    #[test]
    fn text_without_newline_at_the_end_is_partial() {
        use Tag::*;
        assert_eq!(
            split(4, &[b"a\nxy"], true),
            recs(&[(Full, "a"), (Partial, "xy")])
        );
        assert_eq!(
            split(4, &[b"abcdefghij"], true),
            recs(&[(Partial, "abcd"), (Partial, "efgh"), (Partial, "ij")])
        );
        // a trailing \r at the end of the stream stays
        assert_eq!(split(4, &[b"ab\r"], true), recs(&[(Partial, "ab\r")]));
        assert!(split(4, &[b"a\n"], true).len() == 1);
        assert!(split(4, &[], true).is_empty());
    }

    #[test]
    fn a_40k_line_splits_as_containerd_does() {
        let line = vec![b'x'; 40 * 1024];
        let mut data = line.clone();
        data.push(b'\n');
        let out = split(MAX_LINE, &[&data[..5000], &data[5000..]], true);
        let shape: Vec<(Tag, usize)> = out.iter().map(|(t, b)| (*t, b.len())).collect();
        assert_eq!(
            shape,
            vec![
                (Tag::Partial, 16384),
                (Tag::Partial, 16384),
                (Tag::Full, 8192)
            ]
        );
    }

    #[test]
    fn timestamps_print_as_go_rfc3339_nano_in_utc() {
        let at = |s: u64, n: u32| {
            let mut v = Vec::new();
            push_rfc3339_nano(&mut v, UNIX_EPOCH + Duration::new(s, n));
            String::from_utf8(v).unwrap()
        };
        assert_eq!(
            at(1_475_713_029, 669_794_202),
            "2016-10-06T00:17:09.669794202Z"
        );
        assert_eq!(at(1_475_713_029, 669_000_000), "2016-10-06T00:17:09.669Z");
        assert_eq!(at(1_475_713_029, 0), "2016-10-06T00:17:09Z");
        assert_eq!(at(0, 1), "1970-01-01T00:00:00.000000001Z");
        // a leap day and a century
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn log_file_records_and_reopen() {
        let dir = std::env::temp_dir().join(format!("berth-log-unit-{}", std::process::id()));
        let p = dir.join("sub/0.log");
        let mut f = LogFile::open(&p).unwrap();
        f.write(Stream::Stdout, Tag::Full, b"hello");
        std::fs::rename(&p, dir.join("sub/0.log.1")).unwrap();
        f.reopen().unwrap();
        f.write(Stream::Stderr, Tag::Partial, b"x");
        let old = std::fs::read_to_string(dir.join("sub/0.log.1")).unwrap();
        let new = std::fs::read_to_string(&p).unwrap();
        assert!(old.ends_with("Z stdout F hello\n"), "{old}");
        assert!(new.ends_with("Z stderr P x\n"), "{new}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
