//! The `sinkhole` command: parses the command line and wires the library together. No logic
//! lives here beyond choosing what to run.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sinkhole::config::{ConfigError, HitsTarget};
use sinkhole::hitlog::HitLog;
use sinkhole::state::{ConfigSource, State};

/// mimalloc rather than glibc's malloc: the forwarding path allocates and frees a dozen small
/// objects per query (its task, the answer, the cache entry), and glibc's bins and
/// consolidation cost it measurably more (benches/compare.sh --only unique).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A DNS sinkhole that keeps chosen apps (TikTok by default) off internal networks.
///
/// sinkhole answers DNS for the clients of configured subnets: it blocks the names of the
/// configured lists (with every subdomain, and through CNAME chains) for clients whose policy
/// says so, logs each block as a JSON line, and forwards everything else to upstream resolvers,
/// with a cache. Without a command it runs the daemon; without -c it uses the embedded default
/// config (loopback only, 127.0.0.1:5353, the TikTok list compiled in).
#[derive(Parser)]
#[command(name = "sinkhole", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default). SIGHUP reloads config and lists; SIGTERM stops it cleanly.
    Run {
        /// Config file (TOML). Without it, the embedded default config.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check a config and its lists without serving: prints a summary and warnings (exit 0), or
    /// `file:line:col: message` errors (exit 1).
    Check {
        /// Config file (TOML). Without it, the embedded default config.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Explain how a query from a client would be answered: its policy and the prefix that chose
    /// it, the list and rule that match the name, and the answer.
    Explain {
        /// Config file (TOML). Without it, the embedded default config.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The client address asking.
        #[arg(long, value_name = "IP")]
        client: IpAddr,
        /// The name asked.
        name: String,
        /// The query type (A, AAAA, HTTPS, TYPE65, ...).
        #[arg(default_value = "A")]
        qtype: String,
    },
    /// Replay a dnsperf query file or a pcap/pcapng capture against a DNS server (loopback only
    /// unless --allow-remote): qps, loss, latency percentiles, rcodes and block verdicts seen.
    ///
    /// Block verdicts are counted by policy from the EDE "Blocked" text of each answer (queries
    /// carry EDNS for that). A policy in audit mode answers normally and adds no EDE: to preview
    /// an audit policy, replay the capture and read the daemon's hit log.
    Replay(sinkhole::replay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run { config: None }) {
        Command::Run { config } => run(source(config)),
        Command::Check { config } => check(source(config)),
        Command::Explain {
            config,
            client,
            name,
            qtype,
        } => explain(source(config), client, &name, &qtype),
        Command::Replay(args) => sinkhole::replay::run(&args).map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sinkhole: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn source(config: Option<PathBuf>) -> ConfigSource {
    config.map_or(ConfigSource::Embedded, ConfigSource::File)
}

fn run(source: ConfigSource) -> anyhow::Result<ExitCode> {
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sinkhole")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // The recorder must exist before anything takes a metric handle, the state included.
        let first = source.load().map_err(config_failed)?;
        if let Some(addr) = first.server.metrics {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(sinkhole::metrics::UPSTREAM_DURATION.into()),
                    &sinkhole::metrics::UPSTREAM_BUCKETS,
                )
                .context("metrics buckets")?
                .install()
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
        }
        sinkhole::metrics::describe();
        metrics::gauge!(sinkhole::metrics::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let hits = match &first.log.hits {
            HitsTarget::File(path) => HitsTarget::File(first.resolve(path)),
            other => other.clone(),
        };
        let queue = first.log.queue;
        drop(first);
        let state = Arc::new(State::new(source).map_err(config_failed)?);
        let (hitlog, writer) = HitLog::start(hits, queue).context("cannot start the hit log")?;
        sinkhole::server::serve(state, hitlog, writer).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn check(source: ConfigSource) -> anyhow::Result<ExitCode> {
    match source.load().and_then(sinkhole::state::build) {
        Ok(snapshot) => {
            print!("{}", sinkhole::report::check(&snapshot));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn explain(source: ConfigSource, client: IpAddr, name: &str, qtype: &str) -> anyhow::Result<ExitCode> {
    let qtype = parse_type(qtype)?;
    let snapshot = source.load().and_then(sinkhole::state::build).map_err(config_failed)?;
    let text = sinkhole::report::explain(&snapshot, client, name, qtype).map_err(anyhow::Error::msg)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn parse_type(text: &str) -> anyhow::Result<u16> {
    let upper = text.to_ascii_uppercase();
    if let Some(number) = upper.strip_prefix("TYPE")
        && let Ok(n) = number.parse::<u16>()
    {
        return Ok(n);
    }
    hickory_proto::rr::RecordType::from_str(&upper)
        .map(u16::from)
        .map_err(|_| anyhow::anyhow!("unknown query type {text:?} (use A, AAAA, MX, ... or TYPEnnn)"))
}

fn config_failed(e: ConfigError) -> anyhow::Error {
    anyhow::anyhow!("{e}\nthe config has errors; `sinkhole check -c FILE` shows them all")
}

/// Operational logs go to stderr, filtered by SINKHOLE_LOG (or RUST_LOG): info by default, with
/// hickory's per-request lines kept quiet.
fn init_tracing() {
    let filter = std::env::var("SINKHOLE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
