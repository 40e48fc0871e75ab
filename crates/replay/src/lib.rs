//! `sinkhole replay`: a load generator and traffic replayer. It sends the queries of a dnsperf
//! file or of a pcap/pcapng capture to a DNS server, keeping each captured client's subnet (mapped
//! into 127.0.0.0/8, so that policies still apply), at a fixed rate or as fast as the server
//! answers, and reports qps, loss, latency percentiles, rcodes and the block verdicts it saw.
//!
//! Two uses: capacity (one core of it saturates a server core: sendmmsg/recvmmsg batches, a window
//! of queries in flight, several sockets, nothing allocated per query) and an admin's preview
//! (replay last week's capture against a staging daemon with a new policy and read what it
//! blocks, from the EDE "Blocked" texts; a policy in audit mode adds no EDE, so for audit mode
//! read the daemon's hit log instead).
//!
//! Parts: [`input`] reads the file into a `table::QueryTable` (pre-encoded queries, one source
//! each, via [`clients`]); `load` is the per-thread hot loop over sinkhole-batchio's batched I/O;
//! `report` tallies answers and prints the summary. The daemon's binary runs it as its `replay`
//! subcommand ([`Args`], [`run`]); this crate knows nothing of the daemon but the wire format.
//!
//! It talks to loopback only unless `--allow-remote` is given: pointed at a production resolver
//! by mistake, a load generator is an outage.

#![forbid(unsafe_code)]

pub mod clients;
pub mod input;
mod load;
mod report;
mod table;

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clients::{ClientMap, MapError, MapRule};
use input::{InputError, LoadOptions};
use load::{LoadError, Outcome, Plan, Progress};
use report::{RunFacts, Summary, Tally};

/// The command line of `sinkhole replay` (documented in README "Replay").
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// A dnsperf query file ("NAME TYPE" per line, '#' comments) or a pcap/pcapng capture
    /// (told apart by their first bytes).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The DNS server to load, IP:PORT (or IP for port 53). Loopback only unless --allow-remote.
    #[arg(long, value_name = "ADDR", value_parser = parse_server)]
    pub server: SocketAddr,
    /// Source address of the queries of a dnsperf file [default: 127.0.0.1, or ::1 for an IPv6
    /// server]. Any 127.x address works on Linux.
    #[arg(long, value_name = "IP")]
    pub source: Option<IpAddr>,
    /// How capture client addresses map into 127.0.0.0/8, e.g. 10.0.0.0/8=127.0.0.0/8 (repeatable,
    /// first match wins). Default: a.b.c.d -> 127.b.c.d; IPv6 clients -> 127.255.x.y by a hash.
    #[arg(long = "map", value_name = "PREFIX=PREFIX")]
    pub map: Vec<MapRule>,
    /// Queries per second; 0 sends as fast as the window allows.
    #[arg(long, value_name = "QPS", default_value_t = 0.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Stop sending after this many seconds, looping over the file as needed [default: one pass].
    #[arg(long, value_name = "SECS", conflicts_with = "count", value_parser = parse_duration)]
    pub duration: Option<f64>,
    /// Stop after this many queries, looping over the file as needed [default: one pass].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Queries in flight at most, over all sockets and threads.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub window: u32,
    /// Messages per sendmmsg/recvmmsg call.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,
    /// UDP sockets (shared out among the threads; at least one each).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub sockets: u32,
    /// A query with no answer by then counts as lost.
    #[arg(long = "timeout-ms", value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,
    /// Sending/receiving threads; one is enough to saturate a server core.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Print the summary as one JSON object on stdout (else a table).
    #[arg(long)]
    pub json: bool,
    /// Send queries from dnsperf files without an OPT record (as dnsperf does without -e). Without
    /// EDNS the server cannot send EDE, so block verdicts go unseen.
    #[arg(long)]
    pub no_edns: bool,
    /// Take queries to this UDP port from a capture.
    #[arg(long, value_name = "PORT", default_value_t = 53)]
    pub capture_port: u16,
    /// Allow a server, source or --map target outside loopback. A load generator aimed at a
    /// production resolver is an outage: use it for a staging server you own.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Why a replay could not run. Each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An address outside loopback without --allow-remote.
    #[error(
        "refusing to use {what} {addr}: not a loopback address. A load generator aimed at a production resolver \
         is an outage; pass --allow-remote if it is a staging server you own"
    )]
    NotLoopback {
        /// "server" or "source".
        what: &'static str,
        /// The address.
        addr: IpAddr,
    },
    /// The source is not of the server's address family.
    #[error("--source {from} cannot reach {server}: use an address of the same family (127.0.0.1 or ::1)")]
    Family {
        /// The source.
        from: IpAddr,
        /// The server.
        server: SocketAddr,
    },
    /// A --map rule cannot be used.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The file cannot be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The network refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A sending thread died (a bug).
    #[error("a sending thread panicked; the run is void")]
    Panicked,
}

fn parse_server(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{text:?} is not IP:PORT (e.g. 127.0.0.1:5353 or [::1]:53) or IP"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=100_000_000.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate between 0 and 100000000 queries per second"
        )),
    }
}

fn parse_duration(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => Ok(secs),
        _ => Err(format!("{text:?} is not a duration between 0 and 86400 seconds")),
    }
}

/// Runs `sinkhole replay`: prints the summary (JSON or table) on stdout. Exits 1 when the server
/// answered nothing or stopped answering, so scripts notice a dead server.
pub fn run(args: &Args) -> Result<ExitCode, ReplayError> {
    let server = args.server;
    let server_ip = server.ip().to_canonical();
    if !server_ip.is_loopback() && !args.allow_remote {
        return Err(ReplayError::NotLoopback {
            what: "server",
            addr: server.ip(),
        });
    }
    let source = args.source.unwrap_or(match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    });
    if source.is_ipv4() != server.is_ipv4() {
        return Err(ReplayError::Family { from: source, server });
    }
    if !source.is_loopback() && !args.allow_remote {
        return Err(ReplayError::NotLoopback {
            what: "source",
            addr: source,
        });
    }
    let options = LoadOptions {
        source,
        edns: !args.no_edns,
        map: ClientMap::new(args.map.clone(), server.is_ipv6(), args.allow_remote)?,
        capture_port: args.capture_port,
    };
    let (table, input) = input::load(&args.file, &options)?;
    let plans = plans(args, table.len());
    let interrupted = catch_interrupt();
    let stop = &*interrupted;
    let progress: Vec<Progress> = plans.iter().map(|_| Progress::default()).collect();
    let outcomes = thread::scope(|scope| {
        let workers: Vec<_> = plans
            .iter()
            .zip(&progress)
            .enumerate()
            .map(|(i, (plan, progress))| {
                let table = &table;
                thread::Builder::new()
                    .name(format!("replay-{i}"))
                    .spawn_scoped(scope, move || load::run(table, plan, progress, stop))
            })
            .collect();
        show_progress(args, &plans, &progress, &workers);
        workers
            .into_iter()
            .map(|w| match w {
                Ok(handle) => handle
                    .join()
                    .map_err(|_| ReplayError::Panicked)?
                    .map_err(ReplayError::from),
                Err(e) => Err(ReplayError::Load(LoadError::Receive(e))),
            })
            .collect::<Result<Vec<Outcome>, ReplayError>>()
    })?;
    let summary = summarize(args, &plans, input, &outcomes);
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.to_table());
    }
    let dead = summary.answered == 0
        || outcomes
            .iter()
            .any(|o| o.aborted.as_deref().is_some_and(|a| a != "interrupted"));
    Ok(if dead { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Shares the run out among the threads: sockets, window, rate and count divided (remainders to
/// the first ones), each thread starting at its own part of the file.
fn plans(args: &Args, queries: usize) -> Vec<Plan> {
    let threads = args.threads.max(1) as usize;
    let share = |total: u64, t: usize| total / threads as u64 + u64::from((t as u64) < total % threads as u64);
    let timeout = Duration::from_millis(args.timeout_ms);
    let total_count = match (args.count, args.duration) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(queries as u64),
    };
    (0..threads)
        .map(|t| {
            let sockets = share(u64::from(args.sockets.max(args.threads)), t) as usize;
            Plan {
                server: args.server,
                window: (share(u64::from(args.window), t) as usize).max(sockets),
                batch: args.batch as usize,
                sockets,
                timeout,
                rate: (args.rate > 0.0).then(|| args.rate / threads as f64),
                count: total_count.map(|n| share(n, t)),
                duration: args.duration.map(Duration::from_secs_f64),
                start_index: t * queries / threads,
                silence: (timeout * 5).max(Duration::from_secs(5)),
            }
        })
        .collect()
}

/// Draws a progress bar on stderr while the workers run, if stderr is a terminal; otherwise just
/// waits for them. Returns when every worker has finished.
fn show_progress<T>(
    args: &Args,
    plans: &[Plan],
    progress: &[Progress],
    workers: &[std::io::Result<thread::ScopedJoinHandle<'_, T>>],
) {
    let finished = || workers.iter().all(|w| w.as_ref().map_or(true, |h| h.is_finished()));
    let tick = Duration::from_millis(100);
    if !std::io::stderr().is_terminal() {
        while !finished() {
            thread::sleep(tick);
        }
        return;
    }
    let started = Instant::now();
    let (length, by_time) = match args.duration {
        Some(secs) => ((secs * 1000.0) as u64, true),
        None => (plans.iter().filter_map(|p| p.count).sum(), false),
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(length), indicatif::ProgressDrawTarget::stderr_with_hz(10));
    let template = if by_time {
        "{bar:40} {elapsed}/{duration} {msg}"
    } else {
        "{bar:40} {pos}/{len} {msg}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    while !finished() {
        let sum = |f: fn(&Progress) -> u64| progress.iter().map(f).sum::<u64>();
        let sent = sum(|p| p.sent.load(Ordering::Relaxed));
        let answered = sum(|p| p.answered.load(Ordering::Relaxed));
        let lost = sum(|p| p.lost.load(Ordering::Relaxed));
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        bar.set_position(if by_time {
            started.elapsed().as_millis() as u64
        } else {
            sent
        });
        bar.set_message(format!(
            "answered {answered}, lost {lost}, {:.0} qps",
            answered as f64 / secs
        ));
        thread::sleep(tick);
    }
    bar.finish_and_clear();
}

/// Merges the threads' outcomes into the summary.
fn summarize(args: &Args, plans: &[Plan], input: input::InputStats, outcomes: &[Outcome]) -> Summary {
    let mut tally = Tally::new();
    for outcome in outcomes {
        tally.merge(&outcome.tally);
    }
    let first = outcomes.iter().filter_map(|o| o.first_send).min();
    let last = outcomes.iter().filter_map(|o| o.last_event).max();
    let duration = match (first, last) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    let aborted = outcomes.iter().find_map(|o| o.aborted.clone());
    Summary::new(
        &tally,
        RunFacts {
            duration,
            server: args.server.to_string(),
            input,
            rate: (args.rate > 0.0).then_some(args.rate),
            window: plans.iter().map(|p| p.window).sum(),
            threads: plans.len(),
            aborted,
        },
    )
}

/// Makes the first Ctrl-C (SIGINT) set the returned flag instead of ending the process, so that a
/// run can stop sending, wait for the queries in flight and still print its summary; the second
/// Ctrl-C ends the process as usual (exit status 130). Registration failing leaves the default
/// action, which only loses the summary on Ctrl-C.
fn catch_interrupt() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    // In this order: the shutdown is checked first, so it acts only once the flag is already set.
    let _ =
        signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGINT, 130, Arc::clone(&interrupted));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupted));
    interrupted
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("replay").chain(line.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn parses_the_documented_options() {
        let a = args(&[
            "--server",
            "127.0.0.1:5353",
            "--source",
            "127.10.0.5",
            "--map",
            "10.0.0.0/8=127.0.0.0/8",
            "--rate",
            "5000",
            "--duration",
            "2.5",
            "--window",
            "64",
            "--batch",
            "16",
            "--sockets",
            "2",
            "--timeout-ms",
            "500",
            "--threads",
            "2",
            "--json",
            "q.txt",
        ])
        .expect("parses");
        assert_eq!(a.server, "127.0.0.1:5353".parse().expect("literal"));
        assert_eq!(a.map.len(), 1);
        assert_eq!((a.rate, a.duration, a.count), (5000.0, Some(2.5), None));
        assert!(a.json && !a.allow_remote);
        let a = args(&["--server", "::1", "q.txt"]).expect("port defaults to 53");
        assert_eq!(a.server, "[::1]:53".parse().expect("literal"));
        assert!(args(&["--server", "127.0.0.1:53", "--duration", "1", "--count", "5", "q"]).is_err());
        assert!(args(&["--server", "127.0.0.1:53", "--window", "0", "q"]).is_err());
        assert!(args(&["--server", "127.0.0.1:53", "--rate", "-1", "q"]).is_err());
        assert!(args(&["--server", "localhost", "q"]).is_err());
    }

    #[test]
    fn refuses_remote_servers_and_sources() {
        let a = args(&["--server", "192.0.2.53:53", "/nonexistent"]).expect("parses");
        let err = run(&a).expect_err("refused");
        assert!(matches!(err, ReplayError::NotLoopback { what: "server", .. }), "{err}");
        assert!(err.to_string().contains("--allow-remote"));
        let a = args(&["--server", "127.0.0.1:53", "--source", "192.0.2.1", "/nonexistent"]).expect("parses");
        assert!(matches!(run(&a), Err(ReplayError::NotLoopback { what: "source", .. })));
        let a = args(&["--server", "127.0.0.1:53", "--source", "::1", "/nonexistent"]).expect("parses");
        assert!(matches!(run(&a), Err(ReplayError::Family { .. })));
        // With --allow-remote the address is accepted and the missing file is the next error.
        let a = args(&["--server", "192.0.2.53:53", "--allow-remote", "/nonexistent"]).expect("parses");
        assert!(matches!(run(&a), Err(ReplayError::Input(_))));
    }

    #[test]
    fn plans_share_the_run_out() {
        let a = args(&[
            "--server",
            "127.0.0.1:53",
            "--threads",
            "3",
            "--window",
            "100",
            "--sockets",
            "4",
            "q",
        ])
        .expect("parses");
        let p = plans(&a, 10);
        assert_eq!(
            p.iter().map(|p| p.count.expect("one pass")).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(p.iter().map(|p| p.window).sum::<usize>(), 100);
        assert_eq!(p.iter().map(|p| p.sockets).collect::<Vec<_>>(), [2, 1, 1]);
        assert_eq!(p.iter().map(|p| p.start_index).collect::<Vec<_>>(), [0, 3, 6]);
        let a = args(&[
            "--server",
            "127.0.0.1:53",
            "--duration",
            "1",
            "--rate",
            "300",
            "--threads",
            "3",
            "q",
        ])
        .expect("parses");
        let p = plans(&a, 10);
        assert!(p.iter().all(|p| p.count.is_none() && p.rate == Some(100.0)));
    }
}
