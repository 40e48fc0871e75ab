//! The `sinkhole` command: parses the command line and wires the library together. No logic
//! lives here beyond choosing what to run.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use sinkhole::config::{Config, ConfigError, HitsTarget, LogFormat};
use sinkhole::hitlog::{self, HitLog};
use sinkhole::privilege::{self, Identity};
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
///
/// Operational logs go to stderr: text, coloured only on a terminal, or JSON lines with
/// SINKHOLE_LOG_FORMAT=json (or `log.format = "json"`); SINKHOLE_LOG sets the level (info).
#[derive(Parser)]
#[command(
    name = "sinkhole",
    // `0.1.0 (commit abc1234, built-in lists of 2026-12-01)`: which code and which lists answer.
    version = sinkhole::version::line(),
    about,
    long_about,
    // `sinkhole [run] [-c FILE] ...`: run's options work without the word `run`, and never
    // beside another command.
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `run`'s options, for `sinkhole -c FILE` without the command.
    #[command(flatten)]
    run: RunArgs,
}

/// The options of `run`, also taken by `sinkhole` alone.
#[derive(Args, Default)]
struct RunArgs {
    /// Config file (TOML). Without it, the embedded default config.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Once the sockets are bound, the metrics listener is up and the hit log is open, drop
    /// root and run as this user (a name or a numeric id) for good. Reloads then read the
    /// config and lists, and reopen the hit log, as this user.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// The group to run as with --user (a name or a numeric id); its only group. Default: the
    /// user's primary group.
    #[arg(long, value_name = "NAME", requires = "user")]
    group: Option<String>,
    /// Run as root anyway, without --user. Not recommended: everything the daemon parses
    /// comes from the network.
    #[arg(long, conflicts_with = "user")]
    allow_root: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default). SIGHUP reloads config and lists; SIGTERM stops it cleanly.
    ///
    /// As root it refuses to start unless told what to do about it: --user NAME (bind as root,
    /// then serve as NAME) or --allow-root. An unprivileged user that holds CAP_NET_BIND_SERVICE
    /// (as deploy/sinkhole.service runs it) needs neither.
    Run(RunArgs),
    /// Check a config and its lists without serving: prints a summary and warnings (exit 0), or
    /// every error of the file as `file:line:col: message`, in line order (exit 1).
    ///
    /// Offline unless --probe: lists by URL are read from their saved copies, and no upstream is
    /// asked. Warnings (lists with no rules, policies that block nothing, unreachable upstreams)
    /// leave the exit status 0.
    Check {
        /// Config file (TOML). Without it, the embedded default config.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also ask each upstream one query (`. NS`), all at once, as the daemon would (its
        /// transport, its timeout): says which answered and in how long, and warns of each that
        /// did not or failed.
        #[arg(long)]
        probe: bool,
    },
    /// Explain how a query from a client would be answered: its policy and the prefix that chose
    /// it, the list and rule that match the name, and the answer.
    ///
    /// With --file, one query a line (`client name [type]`, `#` comments and blank lines
    /// skipped), each explained in one line; a bad line is reported on stderr with its line
    /// number, the others go on, and the exit status is then 1.
    Explain {
        /// Config file (TOML). Without it, the embedded default config.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The client address asking.
        #[arg(long, value_name = "IP", required_unless_present = "file")]
        client: Option<IpAddr>,
        /// Explain every query of FILE (`-` for stdin), one `client name [type]` a line, one
        /// verdict a line; --at and --via apply to each.
        #[arg(short, long, value_name = "FILE", conflicts_with_all = ["client", "name"])]
        file: Option<PathBuf>,
        /// The relay the query comes through (dnsdist, HAProxy, a forwarder): whether it is a
        /// trusted relay decides whose policy applies, the client's it states or its own.
        #[arg(long, value_name = "RELAY")]
        via: Option<IpAddr>,
        /// The moment to answer for (RFC 3339 with offset, like 2023-03-31T00:00:00+02:00):
        /// policies' windows and phases as they are then. Default: now.
        #[arg(long, value_name = "TIME")]
        at: Option<jiff::Timestamp>,
        /// The name asked.
        #[arg(required_unless_present = "file")]
        name: Option<String>,
        /// The query type (A, AAAA, HTTPS, TYPE65, ...).
        #[arg(default_value = "A")]
        qtype: String,
    },
    /// Write one list of the config, compiled as the daemon loads it, for another server: an RPZ
    /// zone (BIND, Unbound, PowerDNS, Knot Resolver), a hosts file, plain domains, or Unbound
    /// local-zones.
    ///
    /// Rules the format cannot express (wildcards; exact-name rules in domains and unbound) are
    /// left out and named on stderr. Exit status: 0 when every rule was written, 2 when some were
    /// left out (the rest is written), 1 on an error (nothing written).
    Export {
        /// Config file (TOML). Without it, the embedded default config.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// rpz, hosts, domains or unbound.
        #[arg(long, value_name = "FORMAT")]
        format: sinkhole::export::Format,
        /// Write to this file (replaced whole, never half-written) rather than to stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The RPZ zone's name (its $ORIGIN).
        #[arg(long, value_name = "NAME", default_value = "rpz.sinkhole.")]
        origin: String,
        /// The list's name, as in [lists.NAME].
        list: String,
    },
    /// Replay a dnsperf query file or a pcap/pcapng capture against a DNS server (loopback only
    /// unless --allow-remote): qps, loss, latency percentiles, rcodes and block verdicts seen.
    ///
    /// Block verdicts are counted by policy from the EDE "Blocked" text of each answer (queries
    /// carry EDNS for that). A policy in audit mode answers normally and adds no EDE: to preview
    /// an audit policy, replay the capture and read the daemon's hit log.
    Replay(sinkhole_replay::Args),
    /// The ban report: blocked attempts per day and policy (audit and enforce told apart, the
    /// policies' windows and phases marked), the lists, the top blocked apexes and the share of
    /// client networks that tried, from hit logs (plain or gzipped), as one self-contained HTML
    /// file (or JSON, CSV). No client address and no name below an apex is ever written, and
    /// counts under --min-count are shown as "< N".
    Report(sinkhole::ban_report::Args),
    /// Ask a running daemon whether it is alive (GET /health) or, with --ready, ready to serve
    /// (GET /ready: listeners bound, needed lists loaded, an upstream usable), on the metrics
    /// listener of its config (`server.metrics`). Prints the answer's body; exit status 0 on
    /// 200, 1 otherwise. For a container HEALTHCHECK where there is no curl.
    Health {
        /// Config file (TOML) of the daemon to ask. Without it, the embedded default config.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Ask /ready rather than /health.
        #[arg(long)]
        ready: bool,
        /// Seconds to wait for the connection and for the answer.
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        timeout: u64,
    },
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell) to stdout.
    ///
    /// `sinkhole install` and the Debian package install bash's, zsh's and fish's where those
    /// shells find them; for a shell of your own: `sinkhole completions bash > ~/.local/share/
    /// bash-completion/completions/sinkhole`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Write the man pages: sinkhole.1 to stdout, or with --dir every page (sinkhole.1 and one
    /// per command, sinkhole-run.1, ...) into DIR. For packaging; `sinkhole install` installs them.
    #[command(hide = true)]
    Man {
        /// Write every page into this directory (created if missing) rather than sinkhole.1 to stdout.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Install what a systemd host needs beside the binary: the binary in PREFIX/bin, the unit,
    /// /etc/sinkhole/sinkhole.toml and the lists it names, /etc/logrotate.d/sinkhole, the lists
    /// for reference, completions and man pages. It enables and starts nothing.
    ///
    /// A config file in /etc that differs from the shipped one (yours) is kept, and the shipped one
    /// written beside it as FILE.dist; files under PREFIX are replaced. Needs root, unless --destdir.
    Install {
        /// Where the binary, the unit (PREFIX/lib/systemd/system) and the shared files go; /etc
        /// stays /etc.
        #[arg(long, value_name = "DIR", default_value = sinkhole::install::layout::DEFAULT_PREFIX)]
        prefix: PathBuf,
        /// Write everything under DIR as if it were the root (for packaging, or to look first).
        #[arg(long, value_name = "DIR")]
        destdir: Option<PathBuf>,
        /// Replace config files in /etc that differ from the shipped ones too (each old one is kept
        /// as FILE.old).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(args) => run_as(args.user.as_deref(), args.group.as_deref(), args.allow_root)
            .and_then(|identity| run(source(args.config), identity)),
        Command::Check { config, probe } => check(source(config), probe),
        Command::Explain {
            config,
            client,
            file,
            via,
            name,
            qtype,
            at,
        } => match (file, client, name) {
            (Some(file), _, _) => explain_file(source(config), &file, via, at),
            (None, Some(client), Some(name)) => explain(source(config), (via, client), &name, &qtype, at),
            // clap requires --client and NAME without --file.
            (None, _, _) => Err(anyhow::anyhow!("explain needs --client IP and NAME, or --file FILE")),
        },
        Command::Replay(args) => sinkhole_replay::run(&args).map_err(anyhow::Error::from),
        Command::Report(args) => sinkhole::ban_report::run(&args)
            .map(|summary| {
                eprintln!("{summary}");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
        Command::Export {
            config,
            format,
            output,
            origin,
            list,
        } => export(source(config), format, output, origin, &list),
        Command::Health { config, ready, timeout } => health(source(config), ready, timeout),
        Command::Completions { shell } => {
            sinkhole::install::generated::completion(shell, &Cli::command(), &mut std::io::stdout().lock());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => man(dir),
        Command::Install { prefix, destdir, force } => {
            let options = sinkhole::install::Options { prefix, destdir, force };
            let is_root = privilege::effective_user().is_root();
            sinkhole::install::install(&options, &Cli::command(), is_root)
                .map(|report| {
                    print!("{report}");
                    ExitCode::SUCCESS
                })
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Once logging is up, the reason goes where (and as) the rest of the log goes: a log
            // collector reading JSON lines must not meet a line of plain text.
            if LOGGING.load(Ordering::Relaxed) {
                tracing::error!(error = %format!("{e:#}"), "sinkhole stopped");
            } else {
                eprintln!("sinkhole: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn source(config: Option<PathBuf>) -> ConfigSource {
    config.map_or(ConfigSource::Embedded, ConfigSource::File)
}

/// Who `run` serves as: the identity to drop to once bound, or None to stay as started. Looked
/// up before anything else, so that a misspelt name or a root start unasked fails at once.
fn run_as(user: Option<&str>, group: Option<&str>, allow_root: bool) -> anyhow::Result<Option<Identity>> {
    match user {
        Some(user) => Ok(Some(Identity::lookup(user, group)?)),
        None => {
            privilege::refuse_root(privilege::effective_user(), allow_root)?;
            Ok(None)
        }
    }
}

fn run(source: ConfigSource, identity: Option<Identity>) -> anyhow::Result<ExitCode> {
    // Loaded once: its settings for the start (log format, metrics, hit log), then the state.
    let first = source.load().map_err(config_failed)?;
    init_tracing(log_format(&first)?);
    if identity.is_none() && privilege::effective_user().is_root() {
        tracing::warn!("running as root (--allow-root): consider --user NAME, or CAP_NET_BIND_SERVICE");
    }
    // Before the runtime starts any thread, so that every thread is without it.
    privilege::limit_net_admin(first.egress_used())?;
    if identity.is_some() && first.egress_used() {
        tracing::warn!(
            "--user gives up every capability, CAP_NET_ADMIN included: the egress companion will not be able to \
             change the nftables sets. Run sinkhole as an unprivileged user that holds CAP_NET_ADMIN instead (as \
             deploy/sinkhole.service does)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sinkhole")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // The recorder must exist before anything takes a metric handle, the state included;
        // its listener (metrics, health, readiness) is bound now, before root is dropped.
        let admin = match first.server.metrics {
            Some(addr) => {
                let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(sinkhole::metrics::UPSTREAM_DURATION.into()),
                        &sinkhole::metrics::UPSTREAM_BUCKETS,
                    )
                    .context("metrics buckets")?
                    .install_recorder()
                    .context("cannot install the metrics recorder")?;
                let server = sinkhole::server::admin::AdminServer::start(addr, handle)
                    .await
                    .with_context(|| format!("cannot serve metrics on {addr}"))?;
                Some(server)
            }
            None => None,
        };
        let readiness = admin.as_ref().map(sinkhole::server::admin::AdminServer::readiness);
        sinkhole::metrics::describe();
        sinkhole::metrics::register_known_series();
        metrics::gauge!(
            sinkhole::metrics::BUILD_INFO,
            "version" => sinkhole::version::VERSION,
            "commit" => sinkhole::version::COMMIT,
            "lists" => sinkhole::version::lists_label()
        )
        .set(1.0);
        let hits = hitlog::Settings {
            target: match &first.log.hits {
                HitsTarget::File(path) => hitlog::Target::File(first.resolve(path)),
                HitsTarget::Stdout => hitlog::Target::Stdout,
                HitsTarget::Stderr => hitlog::Target::Stderr,
                HitsTarget::Off => hitlog::Target::Off,
            },
            queue: first.log.queue,
        };
        let state = Arc::new(State::with_config(source, first).map_err(config_failed)?);
        if let Some(readiness) = &readiness {
            readiness.state_built(Arc::clone(&state));
        }
        let (hitlog, writer) = HitLog::start(hits).context("cannot start the hit log")?;
        // Root is needed no longer once the DNS sockets are bound: the metrics listener is up
        // and the hit log open already.
        let lists_owner = Arc::clone(&state);
        let drop_root = move || {
            if let Some(identity) = identity {
                lists_owner.give_lists_to(identity.uid.as_raw(), identity.gid.as_raw());
                identity.assume().map_err(std::io::Error::other)?;
                tracing::info!(user = %identity.user, group = %identity.group, "dropped root privileges");
            }
            // Called once every listener is bound: /ready's first check.
            if let Some(readiness) = &readiness {
                readiness.listeners_bound();
            }
            Ok(())
        };
        // Lists by URL: saved copies serve already; those with none get up to list_wait.
        let mut refresher = state.start_list_refresher();
        let list_wait = state.load().config.server.list_wait();
        if !refresher.wait_first_round(list_wait).await {
            tracing::warn!(
                waited = ?list_wait,
                "lists by URL with no saved copy did not all load within server.list_wait; serving without them \
                 (see on_missing_list)"
            );
        }
        let served = sinkhole::server::serve(state, hitlog, writer, drop_root).await;
        refresher.stop();
        drop(admin);
        served?;
        Ok(ExitCode::SUCCESS)
    })
}

fn check(source: ConfigSource, probe: bool) -> anyhow::Result<ExitCode> {
    match source.load().and_then(sinkhole::state::build) {
        Ok(snapshot) => {
            print!("{}", sinkhole::report::check(&snapshot));
            if let Some(ddr) = snapshot.ddr_summary() {
                println!("{ddr}");
            }
            match encrypted_listeners(&snapshot.config) {
                Ok(lines) => {
                    print!("{lines}");
                    if probe {
                        print!(
                            "{}",
                            sinkhole::report::probe(&snapshot).context("cannot probe the upstreams")?
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What `check` says of DoT and DoH: which addresses serve what, with the certificate they
/// present, loaded as the daemon would load it (a pair that does not load fails the check).
fn encrypted_listeners(config: &Config) -> Result<String, sinkhole::server::certs::CertError> {
    use sinkhole::server::certs;
    let server = &config.server;
    if server.tls.is_empty() && server.https.is_empty() {
        return Ok(String::new());
    }
    let (certificate, key) = certs::configured_pair(config)?;
    certs::load_pair(&certificate, &key)?;
    let join = |addrs: &[toml::Spanned<std::net::SocketAddr>]| {
        addrs
            .iter()
            .map(|a| a.get_ref().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    if !server.tls.is_empty() {
        out += &format!("dot       {} (DNS over TLS)\n", join(&server.tls));
    }
    if !server.https.is_empty() {
        out += &format!(
            "doh       {} (DNS over HTTPS, https://.../dns-query)\n",
            join(&server.https)
        );
    }
    out += &format!(
        "tls       certificate {}, key {}: ok (handshake timeout {} s)\n",
        certificate.display(),
        key.display(),
        server.tls_handshake_timeout
    );
    Ok(out)
}

/// `(via, client)`: the relay the query comes through, if any, and the client asking.
fn explain(
    source: ConfigSource,
    (via, client): (Option<IpAddr>, IpAddr),
    name: &str,
    qtype: &str,
    at: Option<jiff::Timestamp>,
) -> anyhow::Result<ExitCode> {
    let qtype = sinkhole::report::query_type(qtype).map_err(anyhow::Error::msg)?;
    let state = source.load().and_then(State::from_config).map_err(config_failed)?;
    let (state, at) = (Arc::new(state), at.map(|t| t.as_second()));
    let text = match via {
        Some(relay) => sinkhole::report::explain_via(&state, relay, client, name, qtype, at),
        None => sinkhole::report::explain(&state, client, name, qtype, at),
    }
    .map_err(anyhow::Error::msg)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `explain --file FILE` (`-`: stdin): one verdict a line; exit 1 if any line was bad.
fn explain_file(
    source: ConfigSource,
    file: &std::path::Path,
    via: Option<IpAddr>,
    at: Option<jiff::Timestamp>,
) -> anyhow::Result<ExitCode> {
    let state = Arc::new(source.load().and_then(State::from_config).map_err(config_failed)?);
    let at = at.map(|t| t.as_second());
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let (mut out, mut errors) = (stdout.lock(), stderr.lock());
    let bad = if file.as_os_str() == "-" {
        let mut input = std::io::stdin().lock();
        sinkhole::report::explain_lines(&state, (via, at), (&mut input, "stdin"), &mut out, &mut errors)
    } else {
        let opened = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let mut input = std::io::BufReader::new(opened);
        let name = file.display().to_string();
        sinkhole::report::explain_lines(&state, (via, at), (&mut input, &name), &mut out, &mut errors)
    }
    .with_context(|| format!("explain --file {}", file.display()))?;
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn export(
    source: ConfigSource,
    format: sinkhole::export::Format,
    output: Option<PathBuf>,
    origin: String,
    list: &str,
) -> anyhow::Result<ExitCode> {
    let snapshot = source.load().and_then(sinkhole::state::build).map_err(config_failed)?;
    let serial = u32::try_from(jiff::Timestamp::now().as_second()).unwrap_or(u32::MAX);
    let options = sinkhole::export::Options { origin, serial };
    let exported = match &output {
        None => sinkhole::export::export(&snapshot, list, format, &options, &mut std::io::stdout().lock())?,
        Some(path) => {
            // Replaced whole, so that a server reading the file never sees half of it.
            sinkhole::atomic_file::replace(path, |file| {
                sinkhole::export::export(&snapshot, list, format, &options, file).map_err(anyhow::Error::from)
            })
            .with_context(|| format!("cannot write {}", path.display()))?
        }
    };
    if exported.skipped.is_empty() {
        eprintln!(
            "sinkhole export: list {list}: {} rules written as {format}",
            exported.written
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "sinkhole export: list {list}: {} rules written as {format}; {} left out, which {format} cannot express:",
        exported.written,
        exported.skipped.len()
    );
    for skipped in &exported.skipped {
        eprintln!("  {}  ({})", skipped.rule, skipped.why);
    }
    Ok(ExitCode::from(2))
}

/// `sinkhole health`: GET /health (or /ready) on the config's metrics listener; the body to
/// stdout, exit 0 on 200 and 1 otherwise.
fn health(source: ConfigSource, ready: bool, timeout: u64) -> anyhow::Result<ExitCode> {
    let config = source.load().map_err(config_failed)?;
    let addr = config.server.metrics.ok_or_else(|| {
        anyhow::anyhow!(
            "server.metrics is not set in the config: /health and /ready are served on the metrics listener"
        )
    })?;
    let path = if ready { "/ready" } else { "/health" };
    let timeout = std::time::Duration::from_secs(timeout.max(1));
    match sinkhole::server::admin::probe(addr, path, timeout) {
        Ok((status, body)) => {
            print!("{body}");
            if status == 200 {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("sinkhole health: {path} answered {status}");
                Ok(ExitCode::FAILURE)
            }
        }
        Err(e) => {
            eprintln!("sinkhole health: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `sinkhole man`: sinkhole.1 to stdout, or every page into `dir`.
fn man(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let pages = sinkhole::install::generated::man_pages(&Cli::command()).context("cannot render the man pages")?;
    let Some(dir) = dir else {
        let first = pages.first().map(|p| p.text.as_slice()).unwrap_or_default();
        std::io::Write::write_all(&mut std::io::stdout().lock(), first).context("cannot write to stdout")?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for page in &pages {
        let path = dir.join(&page.file_name);
        std::fs::write(&path, &page.text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn config_failed(e: ConfigError) -> anyhow::Error {
    anyhow::anyhow!("{e}\nthe config has errors; `sinkhole check -c FILE` shows them all")
}

/// Whether [`init_tracing`] ran: errors are then logged rather than printed.
static LOGGING: AtomicBool = AtomicBool::new(false);

/// The operational log's format: SINKHOLE_LOG_FORMAT (`text` or `json`) if set, else `log.format`.
fn log_format(config: &Config) -> anyhow::Result<LogFormat> {
    match std::env::var("SINKHOLE_LOG_FORMAT") {
        Ok(value) => value
            .parse()
            .map_err(|why| anyhow::anyhow!("SINKHOLE_LOG_FORMAT: {why}")),
        Err(_) => Ok(config.log.format),
    }
}

/// Operational logs go to stderr, filtered by SINKHOLE_LOG (or RUST_LOG): info by default, with
/// hickory-proto's lines kept quiet. Colour codes only when stderr is a terminal: in a file, a
/// pipe or the journal they are noise in every line.
fn init_tracing(format: LogFormat) {
    let filter = std::env::var("SINKHOLE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,hickory_proto=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    LOGGING.store(true, Ordering::Relaxed);
}
