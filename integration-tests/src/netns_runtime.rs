//! A real [`StreamingRuntime`] for the streaming tests: exec runs the command as a process in
//! a test network namespace (on a pseudo-terminal when asked), attach joins a long-running
//! process started there, and port-forward connects to a port on that namespace's loopback.
//! It stands in for berth's container runtime, which implements the same trait.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth::runtime::streaming::{
    DuplexStream, RuntimeError, SessionIo, StreamingRuntime, TerminalSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::NetNs;

/// Exec, attach and port-forward into one test network namespace.
#[derive(Debug)]
pub struct NetnsRuntime {
    netns: Arc<NetNs>,
    container_id: String,
    sandbox_id: String,
    /// The "main process" attach joins: its stdin and a copy of its output.
    main: Mutex<Option<MainProcess>>,
}

#[derive(Debug)]
struct MainProcess {
    child: tokio::process::Child,
}

fn err(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError(format!("{what}: {e}"))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn set_winsize(fd: &OwnedFd, size: TerminalSize) {
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is an open pty master owned by the caller and `ws` a valid winsize that
    // TIOCSWINSZ only reads.
    unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

impl NetnsRuntime {
    pub fn new(netns: Arc<NetNs>, container_id: &str, sandbox_id: &str) -> Self {
        Self {
            netns,
            container_id: container_id.into(),
            sandbox_id: sandbox_id.into(),
            main: Mutex::new(None),
        }
    }

    /// Starts the process `attach` connects to: `sh -c script`, stdin and stdout piped.
    pub fn start_main(&self, script: &str) -> anyhow::Result<()> {
        let mut cmd = Command::from(self.netns.command("sh"));
        cmd.args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd.kill_on_drop(true);
        let child = cmd.spawn()?;
        *self.main.lock().unwrap_or_else(|p| p.into_inner()) = Some(MainProcess { child });
        Ok(())
    }

    fn check_container(&self, id: &str) -> Result<(), RuntimeError> {
        if id != self.container_id {
            return Err(RuntimeError(format!("container {id:?} not found")));
        }
        Ok(())
    }

    async fn exec_pipes(&self, cmd: &[String], io: SessionIo) -> Result<i32, RuntimeError> {
        let mut c = Command::from(self.netns.command(&cmd[0]));
        c.args(&cmd[1..]).kill_on_drop(true);
        c.stdin(if io.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stdout(if io.stdout.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stderr(if io.stderr.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c.spawn().map_err(|e| err("spawn", e))?;
        let stdin_task = match (io.stdin, child.stdin.take()) {
            (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            })),
            _ => None,
        };
        let mut outs = Vec::new();
        if let (Some(mut to), Some(mut from)) = (io.stdout, child.stdout.take()) {
            outs.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            }));
        }
        if let (Some(mut to), Some(mut from)) = (io.stderr, child.stderr.take()) {
            outs.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            }));
        }
        let status = child.wait().await.map_err(|e| err("wait", e))?;
        for o in outs {
            let _ = o.await;
        }
        if let Some(t) = stdin_task {
            t.abort();
        }
        Ok(exit_code(status))
    }

    async fn exec_tty(&self, cmd: &[String], mut io: SessionIo) -> Result<i32, RuntimeError> {
        let pty = nix::pty::openpty(None, None).map_err(|e| err("openpty", e))?;
        let master = pty.master;
        // kubectl sends its terminal's size right after the streams open; start the process
        // with it, as a container runtime would.
        if let Some(rx) = io.resize.as_mut()
            && let Ok(Some(size)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await
        {
            set_winsize(&master, size);
        }
        let mut c = self.netns.command(&cmd[0]);
        c.args(&cmd[1..]);
        let slave = pty.slave;
        c.stdin(Stdio::from(slave.try_clone().map_err(|e| err("dup", e))?));
        c.stdout(Stdio::from(slave.try_clone().map_err(|e| err("dup", e))?));
        c.stderr(Stdio::from(slave));
        // SAFETY: runs in the forked child before exec and calls only setsid(2) and
        // ioctl(2), both async-signal-safe; fd 0 is the pty slave set up above.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut c = Command::from(c);
        c.kill_on_drop(true);
        let mut child = c.spawn().map_err(|e| err("spawn", e))?;
        drop(c);
        let resize_master = master.try_clone().map_err(|e| err("dup", e))?;
        let resizer = io.resize.take().map(|mut rx| {
            tokio::spawn(async move {
                while let Some(size) = rx.recv().await {
                    set_winsize(&resize_master, size);
                }
            })
        });
        let mut reader = tokio::fs::File::from_std(std::fs::File::from(
            master.try_clone().map_err(|e| err("dup", e))?,
        ));
        let mut writer = tokio::fs::File::from_std(std::fs::File::from(master));
        let stdin_task = io.stdin.map(|mut from| {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut writer).await;
            })
        });
        let out_task = io.stdout.map(|mut to| {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // EIO once the last slave descriptor is closed: the session is over.
                while let Ok(n) = reader.read(&mut buf).await {
                    if n == 0 || to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = to.shutdown().await;
            })
        });
        let status = child.wait().await.map_err(|e| err("wait", e))?;
        if let Some(t) = out_task
            && tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
        {
            return Err(RuntimeError(
                "tty output did not end after the process exited".into(),
            ));
        }
        for t in [stdin_task, resizer].into_iter().flatten() {
            t.abort();
        }
        Ok(exit_code(status))
    }
}

impl StreamingRuntime for NetnsRuntime {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        io: SessionIo,
    ) -> Result<i32, RuntimeError> {
        self.check_container(container_id)?;
        if cmd.is_empty() {
            return Err(RuntimeError("empty command".into()));
        }
        if tty {
            self.exec_tty(cmd, io).await
        } else {
            self.exec_pipes(cmd, io).await
        }
    }

    async fn attach(
        &self,
        container_id: &str,
        _tty: bool,
        io: SessionIo,
    ) -> Result<(), RuntimeError> {
        self.check_container(container_id)?;
        let (stdin, stdout) = {
            let mut main = self.main.lock().unwrap_or_else(|p| p.into_inner());
            let m = main
                .as_mut()
                .ok_or_else(|| RuntimeError("no main process to attach to".into()))?;
            (m.child.stdin.take(), m.child.stdout.take())
        };
        let input = match (io.stdin, stdin) {
            (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            })),
            _ => None,
        };
        if let (Some(mut to), Some(mut from)) = (io.stdout, stdout) {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        }
        if let Some(t) = input {
            t.abort();
        }
        Ok(())
    }

    async fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
        stream: Box<dyn DuplexStream>,
    ) -> std::io::Result<()> {
        if sandbox_id != self.sandbox_id {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("sandbox {sandbox_id:?} not found"),
            ));
        }
        let std_sock = self
            .netns
            .run(|| std::net::TcpStream::connect(("127.0.0.1", port)))?;
        std_sock.set_nonblocking(true)?;
        let target = tokio::net::TcpStream::from_std(std_sock)?;
        berth::runtime::sessions::relay(stream, target).await
    }
}
