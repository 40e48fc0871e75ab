//! The real daemon under test: the `sinkhole` binary Cargo built for this test run, started on loopback ports in
//! a temp dir of its own, killed and reaped on Drop. Plus what tests need around it: free ports, temp dirs, the hit
//! log, the metrics page, and running the other subcommands.
//!
//! Every wait here is bounded in time and fails loudly with the daemon's stderr: a test that cannot reach the daemon
//! must say why, not hang or pass.

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::RecordType;

use crate::client::new_query;
use crate::ports::free_port;

/// The binary under test: `$SINKHOLE_BIN` if set, else the `sinkhole` Cargo built beside the running test or
/// bench (`target/<profile>/sinkhole`, next to `target/<profile>/deps/<test>`): Cargo builds the root package's
/// binary before its integration tests and benches run.
pub fn sinkhole_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("SINKHOLE_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test binary's own path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("a test binary lives in target/<profile>/deps");
        let bin = profile_dir.join("sinkhole");
        assert!(
            bin.exists(),
            "no {} (build it: cargo build, or set SINKHOLE_BIN)",
            bin.display()
        );
        bin
    })
}
/// How long [`Daemon::start`] waits for the first answer: loading lists and binding sockets takes well under this.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The name [`Daemon::start`] asks to see that the daemon answers; upstreams may see it (tests count other names).
pub const PROBE_NAME: &str = "probe.example";
/// How long a [`Daemon::terminate`] or [`run_sinkhole`] waits for the process to exit before failing the test.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two polls of a condition: short for fast tests, long enough not to burn the 2 CI cores.
const POLL: Duration = Duration::from_millis(50);
/// Bound on attempts to start a daemon whose port was taken between [`free_port`] and its bind.
const START_ATTEMPTS: usize = 3;

/// A fresh directory under the system temp dir, unique per process and call; removed on Drop unless the test is
/// failing, so that its files (config, logs, stderr) can be read after a failure.
pub struct TestDir {
    /// The directory; absolute, since it goes into configs the daemon reads from its own working directory.
    path: PathBuf,
}

impl TestDir {
    /// Creates `<temp>/sinkhole-test-<pid>-<n>-<nanos>`.
    pub fn new() -> TestDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("sinkhole-test-{}-{n}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create test dir {}: {e}", path.display()));
        TestDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` (relative to the dir) atomically: a temp file renamed over it, so a daemon reloading at that
    /// moment reads the old or the new file, never half of one. Returns the full path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let target = self.path.join(name);
        let temp = self.path.join(format!(".{name}.writing"));
        fs::write(&temp, contents).unwrap_or_else(|e| panic!("write {}: {e}", temp.display()));
        fs::rename(&temp, &target).unwrap_or_else(|e| panic!("rename {} to {}: {e}", temp.display(), target.display()));
        target
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: its files are kept in {}", self.path.display());
        } else {
            // Best effort: a leftover temp dir is harmless and must not fail a passing test.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// The real daemon, started from the binary Cargo built for the tests (`env!("CARGO_BIN_EXE_sinkhole")`). Killed
/// (SIGKILL) and reaped on Drop.
pub struct Daemon {
    /// The running process; `Option` so that [`Daemon::terminate`] can reap it and Drop then has nothing to do.
    child: Option<Child>,
    /// The value `{listen}` was replaced with: where tests send queries.
    listen: Option<SocketAddr>,
    /// The value `{metrics}` was replaced with, if the config had one.
    metrics: Option<SocketAddr>,
    /// What `sinkhole run -c FILE` is given after the file: [`harness_run_args`] unless the test chose.
    run_args: Vec<String>,
    /// Holds config, lists, hit log and the captured stdout/stderr. Declared last: dropped after the child is
    /// killed, so the daemon never sees its files vanish.
    dir: TestDir,
}

/// The options the harness gives `sinkhole run`: `--allow-root` when the tests run as root (CI does), since the
/// daemon refuses to run as root unasked; nothing otherwise.
pub fn harness_run_args() -> Vec<String> {
    if nix::unistd::geteuid().is_root() {
        vec!["--allow-root".to_string()]
    } else {
        Vec::new()
    }
}

impl Daemon {
    /// Writes `config_toml` to `<fresh temp dir>/sinkhole.toml` and runs `sinkhole run -c <that file>` with stdout and
    /// stderr captured to `stdout.log`/`stderr.log` in the dir, then waits (up to 10 s) until a UDP query from
    /// 127.0.0.1 for `probe.example` A gets any reply (REFUSED or SERVFAIL count: the daemon is up).
    ///
    /// Placeholders in the TOML: `{dir}` → the temp dir (for list files, hit logs), `{listen}` → `127.0.0.1:<free
    /// port>` (UDP and TCP), `{port}` → that port alone (to listen on `0.0.0.0:{port}`), `{metrics}` →
    /// `127.0.0.1:<another free port>`. `{listen}` or `{port}` is required. Files the config names (lists) can be written first with [`Daemon::start_in`]. Panics with the daemon's stderr if it exits or
    /// never answers; retries on fresh ports (3 times) if it exits because its port was taken meanwhile.
    pub fn start(config_toml: &str) -> Daemon {
        Self::start_in(TestDir::new(), config_toml)
    }

    /// A daemon forwarding to a fresh [`FakeUpstream`](crate::FakeUpstream): `{upstream}` in the TOML becomes
    /// its address, and `files` (name, contents: the lists the config names) are written into the daemon's dir
    /// first. Otherwise as [`Daemon::start`]. The usual start of a test that asks blocked and forwarded names.
    pub fn start_forwarding(config_toml: &str, files: &[(&str, &str)]) -> (crate::FakeUpstream, Daemon) {
        let upstream = crate::FakeUpstream::start();
        let dir = TestDir::new();
        for (name, contents) in files {
            dir.write_file(name, contents);
        }
        let config = config_toml.replace("{upstream}", &upstream.addr().to_string());
        let daemon = Self::start_in(dir, &config);
        (upstream, daemon)
    }

    /// Like [`Daemon::start`], in a dir the test made and filled first (e.g. with the list files the config names,
    /// which must exist when the daemon starts).
    pub fn start_in(dir: TestDir, config_toml: &str) -> Daemon {
        Self::start_with(dir, config_toml, &harness_run_args(), None)
    }

    /// Like [`Daemon::start_in`], for tests of `sinkhole run`'s own options: `run_args` go after `run -c FILE` in
    /// place of [`harness_run_args`], and `port`, if given, is the port of `{listen}` (e.g. a privileged one)
    /// rather than a free one the harness picks (a taken port then fails the start: there is no retry).
    pub fn start_with(dir: TestDir, config_toml: &str, run_args: &[String], port: Option<u16>) -> Daemon {
        assert!(
            config_toml.contains("{listen}") || config_toml.contains("{port}"),
            "Daemon::start: the config must listen on \"{{listen}}\" (or on \"0.0.0.0:{{port}}\") so the harness \
             knows where to send queries"
        );
        let mut daemon = Daemon {
            child: None,
            listen: None,
            metrics: None,
            run_args: run_args.to_vec(),
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            let listen_port = port.unwrap_or_else(free_port);
            daemon.listen = Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen_port));
            daemon.metrics = config_toml
                .contains("{metrics}")
                .then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()));
            let config = daemon.expand(config_toml);
            daemon.dir.write_file("sinkhole.toml", &config);
            daemon.spawn();
            let Err(why) = daemon.wait_until_answering() else {
                return daemon;
            };
            daemon.kill();
            let stderr = daemon.stderr();
            let port_taken = stderr.contains("in use") || stderr.contains("os error 98");
            if !(port_taken && port.is_none() && attempt < START_ATTEMPTS) {
                panic!(
                    "sinkhole did not start ({why}); config:\n{config}\n--- stderr ---\n{stderr}\n--- stdout ---\n{}",
                    daemon.stdout()
                );
            }
        }
        unreachable!("the last start attempt returns or panics")
    }

    /// The temp dir holding the config, the files `{dir}` points to, and the captured output.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The DNS listener (UDP and TCP), `{listen}` in the config.
    pub fn addr(&self) -> SocketAddr {
        self.listen
            .expect("Daemon::addr: set by start, which requires {listen}")
    }

    /// The metrics listener, `{metrics}` in the config. Panics if the config had no `{metrics}`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .expect("Daemon::metrics_addr: the config given to Daemon::start has no \"{metrics}\" placeholder")
    }

    /// The daemon's process id, for signals the harness has no method for.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("Daemon::pid: the daemon was already terminated")
    }

    /// Everything the daemon printed to stderr so far (its log).
    pub fn stderr(&self) -> String {
        self.read_log("stderr.log")
    }

    /// Everything the daemon printed to stdout so far.
    pub fn stdout(&self) -> String {
        self.read_log("stdout.log")
    }

    /// Writes a file in the daemon's dir (e.g. rewrites `sinkhole.toml` or a list before [`Daemon::reload`]),
    /// atomically, with the same placeholders as [`Daemon::start`] replaced by this daemon's values.
    pub fn write_file(&self, name: &str, contents: &str) {
        self.dir.write_file(name, &self.expand(contents));
    }

    /// Sends SIGHUP (the reload signal) with `kill -HUP <pid>`. Returns at once: the reload happens in the
    /// background; wait for its effect with [`Daemon::wait_for_stderr`], a metric or a query.
    pub fn reload(&self) {
        self.signal("HUP");
    }

    /// Sends a signal by name ("HUP", "TERM", "USR1") with `kill -s`. Panics if `kill` fails (daemon gone).
    pub fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .unwrap_or_else(|e| panic!("run kill -s {name} {pid}: {e}"));
        assert!(
            status.success(),
            "kill -s {name} {pid} failed ({status}): is the daemon still running?\n--- stderr ---\n{}",
            self.stderr()
        );
    }

    /// Sends SIGTERM and waits (up to 10 s) for the daemon to exit; returns its exit status, for graceful-shutdown
    /// tests. Panics with stderr if it does not exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let mut child = self
            .child
            .take()
            .expect("Daemon::terminate: the daemon was already terminated");
        match wait_with_timeout(&mut child, EXIT_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sinkhole did not exit within {EXIT_TIMEOUT:?} of SIGTERM\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Waits until the daemon's stderr contains `needle` (e.g. a reload's log line), up to `timeout`. Panics with
    /// stderr if it never does or the daemon exits.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "sinkhole's stderr did not show {needle:?} within {timeout:?}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The metrics page: `GET http://<metrics_addr>/metrics` with a tiny HTTP/1.0 client, retried for up to 2 s
    /// while the listener is not up yet. Panics unless the status is 200.
    pub fn scrape_metrics(&self) -> String {
        http_get(self.metrics_addr(), "/metrics", Duration::from_secs(2))
    }

    /// Replaces the placeholders this daemon knows in a config or list text.
    fn expand(&self, text: &str) -> String {
        let mut text = text.replace("{dir}", &self.dir.path().display().to_string());
        if let Some(listen) = self.listen {
            text = text.replace("{listen}", &listen.to_string());
            text = text.replace("{port}", &listen.port().to_string());
        }
        if let Some(metrics) = self.metrics {
            text = text.replace("{metrics}", &metrics.to_string());
        }
        text
    }

    /// Starts the process with its output going to files in the dir (pipes would fill up and block the daemon).
    fn spawn(&mut self) {
        let stdout = fs::File::create(self.dir.path().join("stdout.log")).expect("create stdout.log in the test dir");
        let stderr = fs::File::create(self.dir.path().join("stderr.log")).expect("create stderr.log in the test dir");
        let config = self.dir.path().join("sinkhole.toml");
        let child = Command::new(sinkhole_bin())
            .arg("run")
            .arg("-c")
            .arg(&config)
            .args(&self.run_args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", sinkhole_bin().display()));
        self.child = Some(child);
    }

    /// Probes every 100 ms from one socket (so a late reply to an earlier probe still counts) until anything comes
    /// back, the process exits, or [`START_TIMEOUT`] passes.
    fn wait_until_answering(&mut self) -> Result<(), String> {
        let server = self.addr();
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind probe socket: {e}"))?;
        socket
            .connect(server)
            .map_err(|e| format!("connect probe socket: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| format!("set probe timeout: {e}"))?;
        let probe = new_query(PROBE_NAME, RecordType::A, false, false)
            .to_vec()
            .map_err(|e| format!("encode probe: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("it exited with {status}"));
            }
            // Errors (ICMP port unreachable before the daemon binds) only mean "not yet".
            let _ = socket.send(&probe);
            match socket.recv(&mut buf) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => std::thread::sleep(POLL),
                Err(_) => {}
            }
        }
        Err(format!(
            "no reply to {PROBE_NAME} A on {server} within {START_TIMEOUT:?}"
        ))
    }

    /// Reads a captured output file; empty if it is not there yet.
    fn read_log(&self, name: &str) -> String {
        fs::read(self.dir.path().join(name))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILL and reap, if still running.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean it already exited; wait() below reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("--- sinkhole stderr (test failed) ---\n{}", self.stderr());
        }
        self.kill();
    }
}

/// The hit log as JSON values, one per line; blank lines skipped, an absent file is no hits. Panics on a line that
/// is not JSON: the hit log's schema is a promise to operators.
pub fn read_hits(path: impl AsRef<Path>) -> Vec<serde_json::Value> {
    let path = path.as_ref();
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("read hit log {}: {e}", path.display()),
    };
    parse_hits(&text).unwrap_or_else(|e| panic!("hit log {}: {e}", path.display()))
}

/// Waits (up to `timeout`) until the hit log has at least `count` complete lines and returns them all: the daemon
/// writes hits from a queue, after the answer is sent. Panics with what it has if they do not come.
pub fn wait_for_hits(path: impl AsRef<Path>, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let path = path.as_ref();
    let deadline = Instant::now() + timeout;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        // Only complete lines: the writer may be in the middle of one.
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        let hits = parse_hits(complete).unwrap_or_else(|e| panic!("hit log {}: {e}", path.display()));
        if hits.len() >= count {
            return hits;
        }
        if Instant::now() >= deadline {
            panic!(
                "hit log {}: {} of {count} hits within {timeout:?}:\n{text}",
                path.display(),
                hits.len()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// One JSON value per non-blank line, or which line is not JSON.
fn parse_hits(text: &str) -> Result<Vec<serde_json::Value>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("line {} is not JSON ({e}): {line}", i + 1)))
        .collect()
}

/// The sum of the samples of metric `name` whose labels include all of `labels`, from a Prometheus text page;
/// `None` if no sample matches (a counter never touched is often absent: tests decide what that means).
/// `metric(&page, "sinkhole_queries_total", &[("outcome", "blocked")])` sums over every protocol.
pub fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in page.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(inner) => match inner.split_once('}') {
                Some((label_text, value)) => (label_text, value),
                None => continue,
            },
            // Not a prefix of a longer name: the name must end here.
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let wanted = labels.iter().all(|(key, val)| {
            label_text
                .split(',')
                .any(|pair| pair.trim() == format!("{key}=\"{val}\""))
        });
        if !wanted {
            continue;
        }
        let Some(value) = value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else {
            panic!("metric line with no numeric value: {line}");
        };
        *sum.get_or_insert(0.0) += value;
    }
    sum
}

/// [`run_sinkhole`] for a command that must succeed: its stdout; panics with both outputs if it fails.
pub fn sinkhole_stdout(args: &[&str]) -> String {
    let out = run_sinkhole(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Runs `sinkhole <args>` (e.g. `check -c <file>`, `explain ...`) to completion, up to 10 s, with the output
/// captured. Panics if it does not finish in time (a CLI command that hangs is a bug).
pub fn run_sinkhole(args: &[&str]) -> Output {
    let mut child = Command::new(sinkhole_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", sinkhole_bin().display()));
    // Read the pipes on threads, or a chatty command would block on a full pipe and look hung.
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let mut stderr = child.stderr.take().expect("stderr was piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let Some(status) = wait_with_timeout(&mut child, EXIT_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("sinkhole {args:?} did not finish within {EXIT_TIMEOUT:?}");
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// `child.wait()` with a deadline, by polling.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => return None,
            Err(e) => panic!("wait for sinkhole (pid {}): {e}", child.id()),
        }
    }
}

/// A GET of `path`, retried until `connect_for` passes while nothing answers; panics with what
/// went wrong, and on any status but 200. Returns the body.
fn http_get(addr: SocketAddr, path: &str, connect_for: Duration) -> String {
    let deadline = Instant::now() + connect_for;
    let answer = loop {
        match crate::http_request(addr, "GET", path, Duration::from_secs(5)) {
            Ok(answer) => break answer,
            Err(e) if Instant::now() >= deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(POLL),
        }
    };
    assert!(
        answer.status == 200,
        "GET http://{addr}{path}: {}\n{}",
        answer.head.lines().next().unwrap_or_default(),
        answer.body
    );
    answer.body
}
