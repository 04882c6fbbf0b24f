//! Pull and import progress: a progress bar when a person watches a terminal, plain
//! lines (one per finished step) otherwise, or nothing for library callers.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Default)]
pub struct Progress {
    sink: Sink,
}

#[derive(Clone, Default)]
enum Sink {
    #[default]
    Silent,
    Bar(ProgressBar),
    Lines(Arc<Mutex<Box<dyn Write + Send>>>),
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.sink {
            Sink::Silent => "silent",
            Sink::Bar(_) => "bar",
            Sink::Lines(_) => "lines",
        };
        write!(f, "Progress({kind})")
    }
}

impl Progress {
    /// Reports nothing.
    pub fn silent() -> Self {
        Self::default()
    }

    /// A byte progress bar on stderr.
    pub fn bar(what: &str) -> Self {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message(what.to_string());
        Self { sink: Sink::Bar(b) }
    }

    /// One line per step to `out`.
    pub fn lines(out: Box<dyn Write + Send>) -> Self {
        Self {
            sink: Sink::Lines(Arc::new(Mutex::new(out))),
        }
    }

    pub fn set_total(&self, bytes: u64) {
        if let Sink::Bar(b) = &self.sink {
            b.set_length(bytes);
        }
    }

    pub fn add_total(&self, bytes: u64) {
        if let Sink::Bar(b) = &self.sink {
            b.inc_length(bytes);
        }
    }

    pub fn inc(&self, bytes: u64) {
        if let Sink::Bar(b) = &self.sink {
            b.inc(bytes);
        }
    }

    /// A finished step ("layer 3/5 done").
    pub fn step(&self, msg: &str) {
        match &self.sink {
            Sink::Silent => {}
            Sink::Bar(b) => b.set_message(msg.to_string()),
            Sink::Lines(w) => {
                let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(w, "{msg}");
            }
        }
    }

    pub fn finish(&self) {
        if let Sink::Bar(b) = &self.sink {
            b.finish_and_clear();
        }
    }

    /// Counts the bytes `r` yields.
    pub fn wrap_read<R: Read>(&self, r: R) -> CountingRead<R> {
        CountingRead {
            inner: r,
            progress: self.clone(),
        }
    }
}

/// A reader that advances the progress bar.
#[derive(Debug)]
pub struct CountingRead<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for CountingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}
