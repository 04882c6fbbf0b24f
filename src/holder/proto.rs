//! The holder's wire protocol: length-prefixed JSON frames over a unix stream socket.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON. The client
//! sends [`Request`] frames, each with an id; the holder answers each with a [`Response`]
//! frame carrying the same id, in any order (an ExecSync answers when its process ends,
//! while other requests are served). After a `Subscribe` the holder also pushes
//! [`Response::Event`] frames on that connection as containers change.
//!
//! Why not an existing RPC crate: ttrpc and tarpc bring protobuf code generation or a tokio
//! runtime into a process that must stay under a megabyte and is a plain poll loop; serde
//! JSON is already in the binary, and a request or event is a few hundred bytes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bumped on any change a peer of the previous version would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side accepts (a spec with many mounts is a few tens of KiB;
/// ExecSync output is capped below this).
pub const MAX_FRAME: usize = 16 << 20;

/// ExecSync keeps at most this much of each of stdout and stderr.
pub const MAX_EXEC_OUTPUT: usize = 4 << 20;

/// One request frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The protocol version the client speaks.
    pub v: u32,
    /// Chosen by the client; echoed in the answer.
    pub id: u64,
    pub req: Request,
}

/// What a client can ask.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The holder's identity and namespaces.
    Hello,
    /// Creates a container from an OCI spec (its namespaces join the pod's by path).
    CreateContainer(CreateContainer),
    StartContainer {
        id: String,
    },
    /// Sends `signal` to the container's init (`all`: to every process in its cgroup).
    Signal {
        id: String,
        signal: i32,
        #[serde(default)]
        all: bool,
    },
    ContainerState {
        id: String,
    },
    /// Runs `cmd` in the container and answers with its output and exit code.
    ExecSync {
        id: String,
        cmd: Vec<String>,
        /// 0: no timeout.
        #[serde(default)]
        timeout_ms: u64,
    },
    /// Runs a process in the container with the caller's descriptors as its stdio, sent
    /// with this frame (SCM_RIGHTS), and answers with an [`ExecResult`] holding only its
    /// exit code when it ends. The process is killed (its process group) when the
    /// connection that asked for it closes. New in version 1's wire without a version
    /// bump: an older holder answers it as a bad request.
    Exec(ExecStart),
    /// Connects the caller to the container's main process (see [`AttachStart`]); answered
    /// `done` when the container exits. Closing the connection detaches.
    Attach(AttachStart),
    /// Reopens the container's log file (after the caller rotated it).
    ReopenLog {
        id: String,
    },
    /// Removes the container, killing it first if it still runs.
    RemoveContainer {
        id: String,
    },
    ListContainers,
    /// Answers with the current containers, then pushes every later event.
    Subscribe,
    /// Kills and removes every container, releases the namespaces, removes the pod's
    /// state dir and exits.
    Shutdown,
}

/// How to create one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateContainer {
    pub id: String,
    /// The OCI runtime spec (config.json's content); `root.path` is absolute.
    pub spec: SpecJson,
    /// The CRI log file; None: output is read and dropped.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// Keep a pipe open on the container's stdin (else it reads /dev/null).
    #[serde(default)]
    pub stdin: bool,
    /// Give the container a terminal.
    #[serde(default)]
    pub tty: bool,
    /// The first attach that sends stdin gets the container's stdin itself: when that
    /// client's stdin ends, the container's does.
    #[serde(default)]
    pub stdin_once: bool,
}

/// A container's OCI spec on the wire: a JSON object inside the request. The daemon sends
/// the bytes it serialized the spec to, once ([`SpecJson::Raw`]); the holder reads a
/// [`SpecJson::Value`] (a request's tag is read before its fields, so its body arrives as
/// a tree) and checks and converts that tree without writing it out again.
#[derive(Debug, Clone)]
pub enum SpecJson {
    Raw(Box<serde_json::value::RawValue>),
    Value(serde_json::Value),
}

impl SpecJson {
    /// The spec serialized once, for a request.
    pub fn to_raw<T: Serialize>(spec: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(spec).map(SpecJson::Raw)
    }
}

impl From<serde_json::Value> for SpecJson {
    fn from(v: serde_json::Value) -> Self {
        SpecJson::Value(v)
    }
}

impl Serialize for SpecJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SpecJson::Raw(r) => r.serialize(s),
            SpecJson::Value(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SpecJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(SpecJson::Value)
    }
}

/// Which of the main process's streams an attach wants, and the descriptors with it:
/// with `stdin`, first a unix socket on which the holder sends the container's stdin (the
/// pipe's write end; one byte, `o` when it was handed over for good (stdin_once), `d` for
/// a copy, `t` for a copy of a terminal's master, which also takes resizes), or closes it
/// without one (the container has no stdin); then one pipe write end
/// for each of `stdout` and `stderr`, which get a copy of what the process writes from now
/// on (dropped for a client that does not keep up). They close when the container exits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachStart {
    pub id: String,
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub stderr: bool,
}

impl AttachStart {
    /// How many descriptors the request carries.
    pub fn fd_count(&self) -> usize {
        usize::from(self.stdin) + usize::from(self.stdout) + usize::from(self.stderr)
    }
}

/// How to run an interactive exec, and which descriptors came with the request.
///
/// Without `tty`: one descriptor per stream set, in the order stdin, stdout, stderr (a
/// stream not set is /dev/null). With `tty`: one descriptor, a unix socket on which the
/// holder sends the terminal's master (one byte with the fd attached) once the process
/// runs; the process gets the slave as stdin, stdout and stderr and as its controlling
/// terminal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStart {
    pub id: String,
    pub cmd: Vec<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub stderr: bool,
    /// The terminal's size (rows, columns) to start with.
    #[serde(default)]
    pub size: Option<(u16, u16)>,
}

impl ExecStart {
    /// How many descriptors the request carries.
    pub fn fd_count(&self) -> usize {
        if self.tty {
            1
        } else {
            usize::from(self.stdin) + usize::from(self.stdout) + usize::from(self.stderr)
        }
    }
}

/// One answer frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok { id: u64, body: Body },
    Err { id: u64, error: WireError },
    Event(ContainerEvent),
}

/// The payload of a successful answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Done,
    Hello(HolderInfo),
    Container(ContainerInfo),
    Containers { containers: Vec<ContainerInfo> },
    Exec(ExecResult),
}

/// A failed request: a class (what the caller may do about it) and a message naming the
/// object and field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

/// Error classes, shaped after the gRPC codes the CRI service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    DeadlineExceeded,
    Internal,
}

/// Who the holder is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderInfo {
    pub version: u32,
    pub pod_id: String,
    pub pid: i32,
    /// The bind-mounted namespace files, by kind (`net`, `ipc`, `uts`, `pid`); a kind the
    /// pod shares with the host is absent.
    pub namespaces: Vec<(String, PathBuf)>,
}

/// A container's lifecycle state as the holder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit status, or 128 + the signal (as CRI reports it).
    pub code: i32,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container's cgroup.
    pub oom_killed: bool,
}

/// What the holder knows about one container (also its record on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub state: ContainerState,
    /// The init's pid in the holder's pid namespace (0 once exited).
    pub pid: i32,
    /// Nanoseconds since the epoch; 0 when not yet.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit: Option<ExitInfo>,
    pub log_path: Option<PathBuf>,
    /// Why the container's program cannot run (runc's `exec: "<args[0]>": <why>`): it was
    /// made without a process, and starting it fails with this and ends it with exit
    /// code 128, as containerd ends a container whose start failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
}

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// Pushed to subscribed clients as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEvent {
    pub id: String,
    pub kind: EventKind,
    /// Nanoseconds since the epoch.
    pub time: i64,
    pub container: ContainerInfo,
}

/// ExecSync's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    pub exit_code: i32,
    #[serde(with = "b64")]
    pub stdout: Vec<u8>,
    #[serde(with = "b64")]
    pub stderr: Vec<u8>,
}

/// Bytes as base64 text (a JSON array of numbers would be four times the size).
mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <&str>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Appends `msg` as one frame to `out`.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, msg)?;
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(FrameError::TooLarge(len));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Takes one whole frame off the front of `buf`: Ok(None) while it is incomplete.
pub fn decode<T: for<'de> Deserialize<'de>>(buf: &mut Vec<u8>) -> Result<Option<T>, FrameError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    let msg = serde_json::from_slice(&buf[4..4 + len]);
    buf.drain(..4 + len);
    Ok(Some(msg?))
}

/// The length of the frame at the front of `buf`, once all of it is there.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok((buf.len() >= 4 + len).then_some(len))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_the_whole_frame() {
        let mut wire = Vec::new();
        let a = Envelope {
            v: PROTOCOL_VERSION,
            id: 7,
            req: Request::Signal {
                id: "c1".into(),
                signal: 15,
                all: false,
            },
        };
        let b = Envelope {
            v: PROTOCOL_VERSION,
            id: 8,
            req: Request::ListContainers,
        };
        encode(&a, &mut wire).unwrap();
        encode(&b, &mut wire).unwrap();
        // byte by byte: nothing until a frame is whole, then exactly that frame
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for byte in wire {
            buf.push(byte);
            if let Some(e) = decode::<Envelope>(&mut buf).unwrap() {
                got.push(e);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, 7);
        assert!(
            matches!(&got[0].req, Request::Signal { id, signal: 15, all: false } if id == "c1")
        );
        assert!(matches!(got[1].req, Request::ListContainers));
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let mut buf = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        assert!(matches!(
            decode::<Envelope>(&mut buf),
            Err(FrameError::TooLarge(_))
        ));
        let mut buf = 5u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"{nope");
        buf.extend_from_slice(&2u32.to_be_bytes());
        buf.extend_from_slice(b"{}");
        assert!(matches!(
            decode::<Envelope>(&mut buf),
            Err(FrameError::Json(_))
        ));
        // the bad frame is consumed; the next one is read on its own
        assert_eq!(buf.len(), 6);
        assert!(decode::<serde_json::Value>(&mut buf).unwrap().is_some());
    }

    #[test]
    fn exec_start_counts_its_descriptors() {
        let mut e = ExecStart {
            id: "c".into(),
            cmd: vec!["sh".into()],
            stdin: true,
            stderr: true,
            ..Default::default()
        };
        assert_eq!(e.fd_count(), 2);
        e.tty = true;
        assert_eq!(
            e.fd_count(),
            1,
            "a tty request carries only the reply socket"
        );
        let json = serde_json::to_string(&Request::Exec(e.clone())).unwrap();
        assert!(json.starts_with("{\"op\":\"exec\""), "{json}");
        let back: Request = serde_json::from_str(&json).unwrap();
        assert!(matches!(back, Request::Exec(b) if b == e));
    }

    #[test]
    fn exec_output_travels_as_base64() {
        let r = Response::Ok {
            id: 1,
            body: Body::Exec(ExecResult {
                exit_code: 3,
                stdout: b"hi\n\xff".to_vec(),
                stderr: vec![],
            }),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"aGkK/w==\""), "{json}");
        let back: Response = serde_json::from_str(&json).unwrap();
        assert!(
            matches!(back, Response::Ok { body: Body::Exec(e), .. } if e.stdout == b"hi\n\xff")
        );
    }
}
