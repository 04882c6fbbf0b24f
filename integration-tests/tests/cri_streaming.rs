//! CRI Exec and PortForward end to end: the real kubectl v1.37 talks SPDY through the
//! API-server stand-in (integration-tests/src/apifront.rs), which asks the runtime for a
//! streaming URL over CRI, as kubelet does, and forwards kubectl's upgrade request to it.
//! The runtime is `berth cri` (its holders fork into real containers) and, as the peer held
//! to the same cases, containerd 1.6 with runc.
//!
//! Each case is a function of a [`Rig`]: one pod with a busybox shell container ("app")
//! and a busybox httpd container ("www", port 8080), and a kubeconfig pointing at the
//! front.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_integration_tests::TestEnv;
use berth_integration_tests::apifront::{self, ApiFront, Pod, Resolver, Subresource, UpgradeCall};
use berth_integration_tests::berth_cri::BerthCri;
use berth_integration_tests::containerd::{CriNetwork, CriPeer, on_own_runtime};
use berth_integration_tests::cri::{ContainerSpec, CriClient, PodSpec, api};
use berth_integration_tests::fixtures::Image;
use berth_integration_tests::terminal::Terminal;
use berth_integration_tests::util::ID_ENV;
use tonic::Code;

const NS: &str = "default";
const POD: &str = "web";
/// The main process of the pod's "app" container (stdin kept open, stdin_once): it answers
/// the first line, copies the rest of its stdin, says when stdin closed, and sleeps.
/// The main process of the "term" container, which has a terminal: per line read, the
/// line, the terminal's name and size.
const TERM: &str = "while read -r l; do echo \"got: $l\"; tty; stty size; done";
const APP: &str = "read -r l; echo \"main got: $l\"; cat; echo 'stdin closed'; exec sleep 3600";

/// One pod in a running CRI runtime, and kubectl in front of it.
struct Rig<'a> {
    name: &'static str,
    env: &'a TestEnv,
    endpoint: String,
    pod_id: String,
    /// Container name -> id.
    containers: Arc<HashMap<String, String>>,
    front: ApiFront,
    kubeconfig: PathBuf,
    _rt: tokio::runtime::Runtime,
}

/// Runs one CRI call on a client of its own (the front's resolver runs inside a tokio
/// task; kubelet's CRI calls are just as separate from the session).
fn cri<T: Send>(
    endpoint: &str,
    f: impl for<'c> FnOnce(
        &'c mut CriClient,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<T>> + Send + 'c>,
    > + Send,
) -> anyhow::Result<T> {
    let endpoint = endpoint.to_string();
    on_own_runtime(move || async move {
        let mut c = CriClient::connect(&endpoint).await?;
        f(&mut c).await
    })
}

/// What kubelet does with the API server's exec/portforward call: the CRI request built
/// from the query (stderr dropped under a tty), answered with the runtime's URL.
fn resolver(
    endpoint: String,
    pod_id: String,
    containers: Arc<HashMap<String, String>>,
) -> Resolver {
    Arc::new(move |call: &UpgradeCall| {
        let tty = call.flag("tty");
        let name = call
            .values("container")
            .first()
            .cloned()
            .unwrap_or_else(|| "app".into());
        let container_id = containers
            .get(&name)
            .cloned()
            .with_context(|| format!("no container {name:?} in the pod"))?;
        let call = call.clone();
        let pod_id = pod_id.clone();
        cri(&endpoint, move |c| {
            Box::pin(async move {
                let url = match call.subresource {
                    Subresource::Exec => {
                        let req = api::ExecRequest {
                            container_id,
                            cmd: call.values("command"),
                            tty,
                            stdin: call.flag("stdin"),
                            stdout: call.flag("stdout"),
                            stderr: call.flag("stderr") && !tty,
                            audit_request_id: String::new(),
                        };
                        c.runtime.exec(req).await?.into_inner().url
                    }
                    Subresource::Attach => {
                        let req = api::AttachRequest {
                            container_id,
                            stdin: call.flag("stdin"),
                            tty,
                            stdout: call.flag("stdout"),
                            stderr: call.flag("stderr") && !tty,
                            audit_request_id: String::new(),
                        };
                        c.runtime.attach(req).await?.into_inner().url
                    }
                    Subresource::PortForward => {
                        let req = api::PortForwardRequest {
                            pod_sandbox_id: pod_id,
                            port: call
                                .values("ports")
                                .iter()
                                .filter_map(|p| p.parse().ok())
                                .collect(),
                        };
                        c.runtime.port_forward(req).await?.into_inner().url
                    }
                };
                Ok(url)
            })
        })
    })
}

type Case = fn(&Rig);

/// What a runner hands [`rig`]: the env, the runtime's endpoint and the fixture images.
struct Started<'a> {
    name: &'static str,
    env: &'a TestEnv,
    endpoint: String,
    busybox: String,
    httpd: String,
}

/// Starts the pod and the front, then runs the case; the pod is removed afterwards.
fn run_case(s: Started<'_>, case: Case) {
    // The runtimes serve on loopback in the test's "host" netns: the front lives there too,
    // on runtime threads that enter it as they start.
    let host = s.env.host.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            let f = std::fs::File::open(&host).expect("open the host netns");
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        })
        .build()
        .unwrap();
    let logs = s.env.subdir("pod-logs").unwrap();
    let mut pod = PodSpec::new(POD, &logs, "");
    pod.cgroup_parent = format!("/{}/pod{}", s.env.cgroups().name(), pod.uid);
    let specs = [
        ContainerSpec {
            stdin: true,
            stdin_once: true,
            ..ContainerSpec::new("app", &s.busybox, &["sh", "-c", APP])
        },
        ContainerSpec::new("www", &s.httpd, &[]),
        ContainerSpec {
            stdin: true,
            tty: true,
            ..ContainerSpec::new("term", &s.busybox, &["sh", "-c", TERM])
        },
    ];
    let (pod_id, containers) = {
        let pod = pod.clone();
        cri(&s.endpoint, move |c| {
            Box::pin(async move {
                let id = c.run_pod_sandbox(&pod.config()).await?;
                let mut ids = HashMap::new();
                for spec in &specs {
                    let cid = c
                        .create_container(&id, &spec.config(&pod), &pod.config())
                        .await?;
                    c.start_container(&cid).await?;
                    ids.insert(spec.name.clone(), cid);
                }
                Ok((id, ids))
            })
        })
        .unwrap()
    };
    let containers = Arc::new(containers);
    // Spawned, so that its listener is bound on a worker thread (in the host netns).
    let front = rt
        .block_on(rt.spawn(ApiFront::start(
            Pod {
                namespace: NS.into(),
                name: POD.into(),
                container: "app".into(),
                tty_containers: vec!["term".into()],
            },
            resolver(s.endpoint.clone(), pod_id.clone(), containers.clone()),
        )))
        .unwrap()
        .unwrap();
    let kubeconfig = front.kubeconfig(s.env.dir(), NS).unwrap();
    let rig = Rig {
        name: s.name,
        env: s.env,
        endpoint: s.endpoint.clone(),
        pod_id: pod_id.clone(),
        containers,
        front,
        kubeconfig,
        _rt: rt,
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&rig)));
    let removed = cri(&s.endpoint, move |c| {
        Box::pin(async move {
            c.stop_pod_sandbox(&pod_id).await?;
            c.remove_pod_sandbox(&pod_id).await?;
            Ok(())
        })
    });
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
    removed.unwrap();
}

fn on_berth(case: Case) {
    let env = TestEnv::new().unwrap();
    let dir = env.subdir("berth").unwrap();
    let ipam = env.subdir("ipam").unwrap();
    let net = CriNetwork::berth_built(&dir.join("cni-bin"), "10.244.31.0/24", &ipam).unwrap();
    let berth = BerthCri::start(&env, &dir, &net).unwrap();
    let started = Started {
        name: "berth",
        env: &env,
        endpoint: berth.endpoint.clone(),
        busybox: berth.import(&Image::Busybox).unwrap(),
        httpd: berth.import(&Image::Httpd { port: 8080 }).unwrap(),
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(started, case)));
    if let Err(p) = r {
        eprintln!("berth log (tail):\n{}", tail(&berth.log(), 40));
        std::panic::resume_unwind(p);
    }
}

fn on_containerd(case: Case) {
    let env = TestEnv::new().unwrap();
    let dir = env.subdir("containerd").unwrap();
    let ipam = env.subdir("ipam").unwrap();
    let net = CriNetwork::reference("10.244.31.0/24", &ipam);
    let peer = CriPeer::start(&env, &dir, &net).unwrap();
    let started = Started {
        name: "containerd",
        env: &env,
        endpoint: peer.endpoint.clone(),
        busybox: peer.import(&Image::Busybox).unwrap(),
        httpd: peer.import(&Image::Httpd { port: 8080 }).unwrap(),
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(started, case)));
    if let Err(p) = r {
        eprintln!(
            "containerd log (tail):\n{}",
            tail(&peer.containerd().log(), 40)
        );
        std::panic::resume_unwind(p);
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `#[test]` per case and target; a case the peer fails is an ignored test for the peer
/// only, with the reason (reported as skipped, never as passed).
macro_rules! cases {
    (
        not_on_containerd { $($skip:ident: $why:literal),* $(,)? },
        $($case:ident),* $(,)?
    ) => {
        mod berth {
            $(
                #[test]
                fn $case() {
                    berth_integration_tests::require_root!();
                    super::on_berth(super::$case);
                }
            )*
            $(
                #[test]
                fn $skip() {
                    berth_integration_tests::require_root!();
                    super::on_berth(super::$skip);
                }
            )*
        }
        mod containerd {
            $(
                #[test]
                fn $case() {
                    berth_integration_tests::require_root!();
                    super::on_containerd(super::$case);
                }
            )*
            $(
                #[test]
                #[ignore = $why]
                fn $skip() {
                    berth_integration_tests::require_root!();
                    super::on_containerd(super::$skip);
                }
            )*
        }
    };
}

cases!(
    not_on_containerd {
        killed_client_leaves_no_exec_behind: "containerd 1.6 leaves the exec'd process running \
            after its client went away (seen here: the sleep outlives the killed kubectl)",
        exec_with_a_terminal_of_the_clients_size: "flaky on containerd 1.6 with runc 1.1.5 \
            here: the exec'd process's terminal intermittently fails `stty size` \
            (\"stty: standard input: No child processes\"), sometimes for the whole session",
    },
    port_forward_fetches_a_page_from_httpd,
    requests_are_checked_before_a_url_is_given,
    exec_with_stdin_and_exit_codes,
    attach_talks_to_the_main_process,
    attach_to_a_terminal_follows_the_clients_size,
);

// ---------------------------------------------------------------- kubectl

impl Rig<'_> {
    fn kubectl(&self, args: &[&str]) -> Command {
        let kubectl = apifront::kubectl().unwrap();
        let mut c = self.env.host.command(kubectl.to_str().unwrap());
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                self.env.dir().join("kube-cache").display()
            ))
            .args(args)
            // SPDY: kubectl 1.37 prefers websockets, which neither runtime serves.
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
            .env("HOME", self.env.dir())
            .env(ID_ENV, self.env.id());
        c
    }

    /// Runs kubectl with `stdin` piped in; its output, within a minute.
    fn run(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        let mut child = self
            .kubectl(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = wait_output(child, Duration::from_secs(60), &self.front);
        feeder.join().unwrap();
        out
    }
}

fn wait_output(
    child: std::process::Child,
    limit: Duration,
    front: &ApiFront,
) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!(
                "kubectl did not finish within {limit:?}; the front saw {:?}",
                front.seen()
            );
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Kills and reaps a child on every exit path of a test.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- cases

/// `kubectl port-forward` to busybox httpd in the pod: two connections over the one
/// session, each a whole HTTP exchange with the server inside the pod's network namespace.
fn port_forward_fetches_a_page_from_httpd(rig: &Rig) {
    let mut pf = Reap(
        rig.kubectl(&[
            "port-forward",
            &format!("pod/{POD}"),
            "--address=127.0.0.1",
            ":8080",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut stderr = pf.0.stderr.take().unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(pf.0.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    // kubectl dies of SIGPIPE if its "Handling connection" lines go nowhere.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let port: u16 = line
        .split_once("127.0.0.1:")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            panic!(
                "{}: no local port in {line:?}: kubectl said {err:?}; front saw {:?}",
                rig.name,
                rig.front.seen()
            )
        });
    for _ in 0..2 {
        let mut s = rig
            .env
            .host
            .run(|| std::net::TcpStream::connect(("127.0.0.1", port)))
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 200 OK") && resp.ends_with("berth-fixture\n"),
            "{}: response {resp:?}; front saw {:?}",
            rig.name,
            rig.front.seen()
        );
    }
}

/// The streaming RPCs check the request against the runtime's state before handing out
/// a URL: unknown ids are NOT_FOUND, like every other RPC, and requests kubelet's
/// streaming rules refuse are INVALID_ARGUMENT.
fn requests_are_checked_before_a_url_is_given(rig: &Rig) {
    let app = rig.containers["app"].clone();
    let pod_id = rig.pod_id.clone();
    let codes = cri(&rig.endpoint, move |c| {
        Box::pin(async move {
            let mut codes = Vec::new();
            let code = |r: Result<String, tonic::Status>| match r {
                Ok(url) => format!("url {url}"),
                Err(e) => format!("{:?}", Some(e.code())),
            };
            codes.push(code(
                c.exec("no-such-container", &["sh"], false, true).await,
            ));
            codes.push(code(c.port_forward("no-such-sandbox", &[80]).await));
            // containerd 1.6 hands out a URL for an empty command (the session then
            // fails); kubelet's streaming server and berth refuse it up front.
            codes.push(code(c.exec(&app, &[], false, true).await));
            let r = c
                .runtime
                .exec(api::ExecRequest {
                    container_id: app.clone(),
                    cmd: vec!["sh".into()],
                    tty: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                })
                .await;
            codes.push(format!("{:?}", r.err().map(|s| s.code())));
            let url = c.port_forward(&pod_id, &[8080]).await?;
            anyhow::ensure!(url.starts_with("http://127.0.0.1:"), "{url}");
            Ok(codes)
        })
    })
    .unwrap();
    let not_found = format!("{:?}", Some(Code::NotFound));
    let invalid = format!("{:?}", Some(Code::InvalidArgument));
    assert_eq!(
        codes[0], not_found,
        "{}: exec of an unknown container",
        rig.name
    );
    assert_eq!(
        codes[1], not_found,
        "{}: port-forward to an unknown sandbox",
        rig.name
    );
    if rig.name == "berth" {
        assert_eq!(codes[2], invalid, "{}: exec without a command", rig.name);
    }
    assert_eq!(codes[3], invalid, "{}: tty and stderr", rig.name);
}

/// `kubectl exec -i`: stdin reaches the process and its EOF too, stdout and stderr come
/// back apart, the exit code is kubectl's, and the process runs in the container (it sees
/// the image's files).
fn exec_with_stdin_and_exit_codes(rig: &Rig) {
    let who = rig.name;
    let out = rig.run(
        &["exec", "-i", POD, "-c", "app", "--", "wc", "-c"],
        b"hello berth\n",
    );
    assert!(
        out.status.success(),
        "{who}: {out:?}; front saw {:?}",
        rig.front.seen()
    );
    assert_eq!(text(&out.stdout).trim(), "12", "{who}: wc -c");

    let input: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let out = rig.run(&["exec", "-i", POD, "--", "cat"], &input);
    assert!(out.status.success(), "{who}: cat: {:?}", text(&out.stderr));
    assert!(
        out.stdout == input,
        "{who}: cat gave back {} bytes, not the input",
        out.stdout.len()
    );

    let out = rig.run(
        &[
            "exec",
            POD,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{who}: {out:?}");
    assert_eq!(text(&out.stdout), "out\n", "{who}");
    assert!(
        text(&out.stderr).contains("err\n"),
        "{who}: {:?}",
        text(&out.stderr)
    );

    // The container's own pid namespace: its pid 1 is its command.
    let out = rig.run(&["exec", POD, "--", "cat", "/proc/1/cmdline"], b"");
    assert!(out.status.success(), "{who}: {out:?}");
    assert!(
        out.stdout.starts_with(b"sh\x00-c\x00read -r l;"),
        "{who}: not in the container: {:?}",
        text(&out.stdout)
    );

    let out = rig.run(&["exec", POD, "--", "/no/such/program"], b"");
    assert!(!out.status.success(), "{who}: a missing program succeeded");
}

/// `kubectl exec -it`: the process runs on a terminal (`tty` names a /dev/pts), of the
/// size of kubectl's own, which follows kubectl's resizes; the exit code comes back.
fn exec_with_a_terminal_of_the_clients_size(rig: &Rig) {
    let script = "tty; stty size; while [ \"$(stty size)\" = \"30 100\" ]; do sleep 0.1; done; \
                  stty size; exit 3";
    let mut term = Terminal::spawn(
        &mut rig.kubectl(&["exec", "-i", "-t", POD, "--", "sh", "-c", script]),
        30,
        100,
    )
    .unwrap();
    let wait = Duration::from_secs(30);
    assert!(
        term.wait_for("30 100", wait),
        "{}: no size on the terminal; saw {:?}; front saw {:?}",
        rig.name,
        term.shown(),
        rig.front.seen()
    );
    assert!(
        term.shown().contains("/dev/pts/"),
        "{}: not on a terminal: {:?}",
        rig.name,
        term.shown()
    );
    // The kernel signals SIGWINCH to kubectl, which sends the new size on the resize stream.
    term.set_size(40, 120).unwrap();
    assert!(
        term.wait_for("40 120", wait),
        "{}: the resize never arrived; saw {:?}",
        rig.name,
        term.shown()
    );
    let status = term.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "{}: terminal showed {:?}",
        rig.name,
        term.shown()
    );
}

/// Host pids whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// kubectl killed mid-exec: the session's connection closes and the runtime kills what
/// the exec started, so nothing is left running in the container.
fn killed_client_leaves_no_exec_behind(rig: &Rig) {
    // A number of this test process's own, so that tests running at once do not see each
    // other's sleeps.
    let secs = (1_000_000 + std::process::id()).to_string();
    let script = format!("echo ready; sleep {secs}; echo never");
    let mut kubectl = Reap(
        rig.kubectl(&["exec", "-i", POD, "--", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    let mut out = std::io::BufReader::new(kubectl.0.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(
        line,
        "ready\n",
        "{}: front saw {:?}",
        rig.name,
        rig.front.seen()
    );
    let argv = ["sleep", secs.as_str()];
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids_running(&argv).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{}: the exec'd sleep never showed up",
            rig.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kubectl.0.kill();
    let _ = kubectl.0.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = pids_running(&argv);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: the exec's process {left:?} outlived its client by 15 s",
            rig.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kubectl attach -i`: the client's stdin reaches the container's main process and its
/// output reaches the client; the container has stdin_once, so the client's stdin EOF
/// closes the container's stdin, and the output goes on after it.
fn attach_talks_to_the_main_process(rig: &Rig) {
    let mut kubectl = Reap(
        rig.kubectl(&["attach", "-i", POD, "-c", "app"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = kubectl.0.stdin.take().unwrap();
    stdin.write_all(b"knock knock\nsecond line\n").unwrap();
    drop(stdin);
    let out = kubectl.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l| l == "stdin closed") {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = kubectl.0.kill();
                let mut err = String::new();
                let _ = kubectl.0.stderr.take().unwrap().read_to_string(&mut err);
                panic!(
                    "{}: attach showed {seen:?}; kubectl said {err:?}; front saw {:?}",
                    rig.name,
                    rig.front.seen()
                );
            }
        }
    }
    assert_eq!(
        seen,
        ["main got: knock knock", "second line", "stdin closed"],
        "{}",
        rig.name
    );
}

/// `kubectl attach -it` to a container with a terminal: what is typed reaches its main
/// process through its terminal (a /dev/pts of the container), whose size is kubectl's and
/// follows its resizes.
fn attach_to_a_terminal_follows_the_clients_size(rig: &Rig) {
    let mut term = Terminal::spawn(
        &mut rig.kubectl(&["attach", "-i", "-t", POD, "-c", "term"]),
        30,
        100,
    )
    .unwrap();
    // Typed until the session is up (kubectl reads its terminal only once attached) and
    // its size has arrived: kubectl sends it on the resize stream while the first line may
    // already be read, and `stty size` on a terminal still 0x0 fails.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        term.type_in(b"hello\r").unwrap();
        if term.wait_for("got: hello", Duration::from_secs(5))
            && term.wait_for("30 100", Duration::from_secs(1))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no answer or size on the terminal; saw {:?}; front saw {:?}",
            rig.name,
            term.shown(),
            rig.front.seen()
        );
    }
    assert!(
        term.shown().contains("/dev/pts/"),
        "{}: {:?}",
        rig.name,
        term.shown()
    );
    // The kernel signals SIGWINCH to kubectl, which sends the new size on the resize stream.
    term.set_size(40, 120).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        term.type_in(b"again\r").unwrap();
        if term.wait_for("40 120", Duration::from_secs(5)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: the resize never reached the container; saw {:?}",
            rig.name,
            term.shown()
        );
    }
    // The terminal's output is the container's stdout in its CRI log.
    let log = rig.env.dir().join("pod-logs/term/0.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l.contains(" stdout F got: hello")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no \"got: hello\" line in {}: {text:?}",
            rig.name,
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
