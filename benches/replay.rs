//! `cargo bench --bench replay`: saturation figures of the daemon on the issue's "mix" workload,
//! measured with `sinkhole replay`.
//!
//! What it does, all on loopback:
//! 1. builds (or refreshes) the release `sinkhole` binary and the `bench-upstream` example with
//!    `cargo build --release -p sinkhole --bin sinkhole -p sinkhole-bench --bin bench-upstream` (a no-op when up to date);
//! 2. writes the mix files (`sinkhole_testkit::mix`: 200k queries, 80 % allowed Zipf-like, 20 %
//!    TikTok) into a scratch directory;
//! 3. starts `bench-upstream` and a daemon (the mix blocklist blocked with NXDOMAIN for
//!    127.10.0.0/16, cache 100000, hit log to a file, metrics off, one UDP thread) on free ports;
//! 4. warms the cache with one pass of the file, then runs `sinkhole replay --json` RUNS times for
//!    SECS seconds each from 127.10.0.5, reading the daemon's CPU time from /proc/PID/stat before
//!    and after each run;
//! 5. prints per run and as medians: qps, lost %, p50/p99 latency, the daemon's CPU microseconds per
//!    answered query and how busy its core was; then one run at 90 % of the median qps, whose
//!    loss should be zero (issue 5, target 1).
//!
//! With `taskset` and at least two CPUs it pins the daemon to core 0 and replay to core 1 (the
//! upstream to core 2 when there is one, else beside replay: with a warm cache it is idle).
//! Knobs (environment): REPLAY_BENCH_SECS (default 5), REPLAY_BENCH_RUNS (default 3),
//! REPLAY_BENCH_NO_PIN=1 to skip taskset. Everything it starts is killed when it ends, also on
//! failure (the processes are owned by a guard dropped on every path).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The client address of the mix's queries: inside the blocking policy.
const CLIENT: &str = "127.10.0.5";
/// How long the daemon may take to answer its first query.
const START_TIMEOUT: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    let mut guard = Processes::default();
    let scratch = std::env::temp_dir().join(format!("sinkhole-bench-replay-{}", std::process::id()));
    let result = run(&mut guard, &scratch);
    drop(guard);
    match result {
        Ok(()) => {
            let _ = fs::remove_dir_all(&scratch);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench replay: {e}\n(files kept in {})", scratch.display());
            ExitCode::FAILURE
        }
    }
}

/// Child processes, killed and reaped on drop: whatever happens, nothing is left running.
#[derive(Default)]
struct Processes(Vec<Child>);

impl Processes {
    fn spawn(&mut self, mut command: Command, what: &str) -> Result<&mut Child, String> {
        let child = command.spawn().map_err(|e| format!("cannot start {what}: {e}"))?;
        self.0.push(child);
        self.0.last_mut().ok_or_else(|| "no child".to_string())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // Errors mean it already exited; wait() reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One measured run.
struct Run {
    qps: f64,
    lost_pct: f64,
    p50: f64,
    p99: f64,
    cpu_us_per_query: f64,
    busy_pct: f64,
}

fn run(guard: &mut Processes, scratch: &Path) -> Result<(), String> {
    let secs: f64 = env_number("REPLAY_BENCH_SECS", 5.0);
    let runs = env_number("REPLAY_BENCH_RUNS", 3.0).max(1.0) as usize;
    let (sinkhole, upstream_bin) = build()?;
    fs::create_dir_all(scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let (mix, unique, block) = (
        scratch.join("mix.txt"),
        scratch.join("unique.txt"),
        scratch.join("block.txt"),
    );
    sinkhole_testkit::mix::write_files(&mix, &unique, &block)
        .map_err(|e| format!("cannot write the mix files: {e}"))?;

    let pins = Pins::detect();
    let mut up = pins.command("upstream", &upstream_bin);
    up.arg("127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::null());
    let child = guard.spawn(up, "bench-upstream")?;
    let upstream = read_listen_line(child)?;

    let port = free_port()?;
    let hits = scratch.join("hits.jsonl");
    let config = format!(
        r#"[server]
listen = ["127.0.0.1:{port}"]
allow = ["127.0.0.0/8"]
metrics = "off"
threads = 1
[upstream]
servers = ["{upstream}"]
timeout_ms = 1500
[cache]
entries = 100000
[lists.tiktok]
files = ["{block}"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
answer = "nxdomain"
[log]
hits = "{hits}"
"#,
        block = block.display(),
        hits = hits.display()
    );
    let config_path = scratch.join("sinkhole.toml");
    fs::write(&config_path, config).map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let daemon_err = scratch.join("daemon.err");
    let mut daemon = pins.command("daemon", &sinkhole);
    daemon
        .args(["run", "-c"])
        .arg(&config_path)
        // As root (a bench VM's usual user), the daemon refuses to start unless told.
        .args(nix::unistd::geteuid().is_root().then_some("--allow-root"))
        .stdout(Stdio::null())
        .stderr(fs::File::create(&daemon_err).map_err(|e| format!("cannot create daemon.err: {e}"))?);
    let child = guard.spawn(daemon, "the daemon")?;
    let pid = child.id();
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_until_answering(child, server, &daemon_err)?;
    let server = server.to_string();

    println!(
        "replay bench: mix (200k queries, 20 % blocked) from {CLIENT} against sinkhole on {server} (upstream {upstream}); {}",
        pins.describe()
    );
    let warm = replay(
        &pins,
        &sinkhole,
        &["--server", &server, "--source", CLIENT, "--json"],
        &mix,
    )?;
    println!(
        "warm-up: one pass, {} answered, {:.0} qps",
        warm["answered"],
        num(&warm, &["qps"])
    );

    let clk_tck = clock_ticks_per_second();
    let mut results = Vec::new();
    let secs_text = format!("{secs}");
    let args = [
        "--server",
        &server,
        "--source",
        CLIENT,
        "--json",
        "--duration",
        &secs_text,
    ];
    for i in 1..=runs {
        let before = cpu_ticks(pid)?;
        let started = Instant::now();
        let s = replay(&pins, &sinkhole, &args, &mix)?;
        let wall = started.elapsed().as_secs_f64();
        let cpu_s = (cpu_ticks(pid)? - before) as f64 / clk_tck;
        let answered = num(&s, &["answered"]).max(1.0);
        let run = Run {
            qps: num(&s, &["qps"]),
            lost_pct: num(&s, &["lost_pct"]),
            p50: num(&s, &["latency_us", "p50"]),
            p99: num(&s, &["latency_us", "p99"]),
            cpu_us_per_query: cpu_s * 1e6 / answered,
            busy_pct: 100.0 * cpu_s / wall,
        };
        print_run(&format!("run {i}"), &run);
        results.push(run);
    }
    let median = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians = Run {
        qps: median(|r| r.qps),
        lost_pct: median(|r| r.lost_pct),
        p50: median(|r| r.p50),
        p99: median(|r| r.p99),
        cpu_us_per_query: median(|r| r.cpu_us_per_query),
        busy_pct: median(|r| r.busy_pct),
    };
    print_run("median", &medians);

    let rate = format!("{:.0}", medians.qps * 0.9);
    let s = replay(&pins, &sinkhole, &[&args[..], &["--rate", &rate]].concat(), &mix)?;
    println!(
        "at 90 % of the median ({rate} qps): {:.0} qps, lost {} ({:.3} %), p50 {:.0} us, p99 {:.0} us",
        num(&s, &["qps"]),
        s["lost"],
        num(&s, &["lost_pct"]),
        num(&s, &["latency_us", "p50"]),
        num(&s, &["latency_us", "p99"])
    );
    let blocked = num(&s, &["blocked", "staff"]);
    if blocked == 0.0 {
        return Err(format!(
            "no query was blocked for policy staff: the bench is not measuring the mix ({s})"
        ));
    }
    Ok(())
}

fn print_run(label: &str, r: &Run) {
    println!(
        "{label:>7}: {:>9.0} qps  lost {:>6.3} %  p50 {:>7.0} us  p99 {:>7.0} us  daemon {:>6.2} us CPU/query, core {:>3.0} % busy",
        r.qps, r.lost_pct, r.p50, r.p99, r.cpu_us_per_query, r.busy_pct
    );
}

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(default)
}

/// Builds the release binary and the bench upstream into this bench's own target directory and
/// returns their paths.
fn build() -> Result<(PathBuf, PathBuf), String> {
    // This bench runs as <target>/release/deps/replay-<hash>.
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate the bench executable: {e}"))?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected bench location {}", exe.display()))?
        .to_path_buf();
    let target = release.parent().unwrap_or(&release).to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "sinkhole",
            "--bin",
            "sinkhole",
            "-p",
            "sinkhole-bench",
            "--bin",
            "bench-upstream",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --release -p sinkhole --bin sinkhole -p sinkhole-bench --bin bench-upstream failed ({status})"
        ));
    }
    let sinkhole = release.join("sinkhole");
    let upstream = release.join("bench-upstream");
    for path in [&sinkhole, &upstream] {
        if !path.exists() {
            return Err(format!("{} is missing after the build", path.display()));
        }
    }
    Ok((sinkhole, upstream))
}

/// Which core each process runs on, when taskset is there and there are cores to spare.
struct Pins {
    /// "daemon", "replay", "upstream" → core; empty when not pinning.
    cores: Vec<(&'static str, usize)>,
}

impl Pins {
    fn detect() -> Pins {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let taskset = Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let wanted = std::env::var("REPLAY_BENCH_NO_PIN").map_or(true, |v| v.is_empty() || v == "0");
        if !(taskset && wanted && cpus >= 2) {
            return Pins { cores: Vec::new() };
        }
        let upstream = if cpus >= 3 { 2 } else { 1 };
        Pins {
            cores: vec![("daemon", 0), ("replay", 1), ("upstream", upstream)],
        }
    }

    fn command(&self, role: &str, program: &Path) -> Command {
        match self.cores.iter().find(|(r, _)| *r == role) {
            Some((_, core)) => {
                let mut command = Command::new("taskset");
                command.args(["-c", &core.to_string()]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn describe(&self) -> String {
        if self.cores.is_empty() {
            return "not pinned (no taskset, one CPU, or REPLAY_BENCH_NO_PIN)".into();
        }
        let parts: Vec<String> = self.cores.iter().map(|(r, c)| format!("{r} on core {c}")).collect();
        parts.join(", ")
    }
}

/// The address bench-upstream prints on its first line ("listening on IP:PORT").
fn read_listen_line(child: &mut Child) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("bench-upstream has no stdout")?;
    let mut line = String::new();
    // Bounded: the line comes at once, or the process exits and the pipe closes.
    BufReader::new(stdout)
        .take(256)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read bench-upstream's address: {e}"))?;
    line.trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("bench-upstream did not start (it said {line:?})"))
}

/// A loopback port free for UDP and TCP right now.
fn free_port() -> Result<u16, String> {
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("cannot bind UDP: {e}"))?;
        let port = udp.local_addr().map_err(|e| e.to_string())?.port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no loopback port free for both UDP and TCP".into())
}

/// Waits until the daemon answers a query (any answer), or fails with its stderr.
fn wait_until_answering(child: &mut Child, server: SocketAddr, stderr: &Path) -> Result<(), String> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("cannot bind a probe socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    // probe.example A, id 0x5151, RD.
    let probe = b"\x51\x51\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05probe\x07example\x00\x00\x01\x00\x01";
    let deadline = Instant::now() + START_TIMEOUT;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(stderr).unwrap_or_default();
            return Err(format!("the daemon exited ({status}):\n{log}"));
        }
        if socket.send_to(probe, server).is_ok() && socket.recv_from(&mut buf).is_ok() {
            return Ok(());
        }
    }
    let log = fs::read_to_string(stderr).unwrap_or_default();
    Err(format!(
        "the daemon did not answer on {server} within {START_TIMEOUT:?}:\n{log}"
    ))
}

/// Runs `sinkhole replay ARGS FILE` (pinned) and returns its JSON summary.
fn replay(pins: &Pins, sinkhole: &Path, args: &[&str], file: &Path) -> Result<Value, String> {
    let mut command = pins.command("replay", sinkhole);
    command.arg("replay").args(args).arg(file).stdin(Stdio::null());
    let out = command
        .output()
        .map_err(|e| format!("cannot run sinkhole replay: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sinkhole replay {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("replay's summary is not JSON ({e})"))
}

fn num(value: &Value, path: &[&str]) -> f64 {
    path.iter().fold(value, |v, key| &v[key]).as_f64().unwrap_or(0.0)
}

/// utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after
/// the parenthesised command name, which may contain spaces).
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat =
        fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state), so field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    match (field(14), field(15)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => Err(format!("unexpected /proc/{pid}/stat: {stat}")),
    }
}

/// The kernel's clock tick (USER_HZ) from `getconf CLK_TCK`; 100, its value on every Linux
/// architecture in use, if getconf is missing.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}
