//! bench-upstream: a fast loopback DNS upstream for benchmarks, so that what a bench measures is
//! the server in front of it, never the upstream.
//!
//! ```text
//! cargo run --release -p sinkhole-bench --bin bench-upstream -- ADDR [--threads N]
//! ```
//!
//! It answers every query at once, from the question alone (see `sinkhole_testkit::responder`):
//! A 192.0.2.1 / AAAA 2001:db8::1 with TTL 300 by default; NXDOMAIN with an SOA for `nx.*`;
//! for `cname.*` a CNAME into edge.tiktokcdn.com plus its address; EDNS echoed when the query has
//! it. UDP is served with recvmmsg/sendmmsg batches, one thread per SO_REUSEPORT socket (`--threads`,
//! default 1: run it on a core of its own, e.g. `taskset -c 2`), TCP on the same port with a thread
//! per connection.
//!
//! ADDR must be loopback (127.0.0.0/8 or ::1): it is a measuring tool, not a resolver. Port 0
//! picks a free port. The first line on stdout is `listening on IP:PORT`, the address bound, for
//! scripts and `cargo bench --bench replay` to read. It runs until killed (SIGTERM, Ctrl-C).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;

use sinkhole_testkit::responder;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-upstream: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let usage = "usage: bench-upstream ADDR [--threads N]   (ADDR on loopback, e.g. 127.0.0.1:0)";
    let mut args = std::env::args().skip(1);
    let mut addr: Option<SocketAddr> = None;
    let mut threads = 1usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| format!("--threads takes 1 to 64\n{usage}"))?;
            }
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(());
            }
            text => {
                addr = Some(text.parse().map_err(|_| format!("{text:?} is not IP:PORT\n{usage}"))?);
            }
        }
    }
    let addr = addr.ok_or(usage)?;
    let sockets = responder::bind(addr, threads).map_err(|e| format!("cannot bind {addr}: {e}"))?;
    println!("listening on {}", sockets.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (i, socket) in sockets.udp.into_iter().enumerate() {
        let stop = Arc::clone(&stop);
        let worker = thread::Builder::new()
            .name(format!("udp-{i}"))
            .spawn(move || responder::serve_udp(&socket, &stop).map(|_| ()))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        workers.push(worker);
    }
    let tcp = sockets.tcp;
    let tcp_stop = Arc::clone(&stop);
    workers.push(
        thread::Builder::new()
            .name("tcp".into())
            .spawn(move || responder::serve_tcp(&tcp, &tcp_stop))
            .map_err(|e| format!("cannot start a thread: {e}"))?,
    );
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("serving failed: {e}")),
            Err(_) => return Err("a serving thread panicked".into()),
        }
    }
    Ok(())
}
