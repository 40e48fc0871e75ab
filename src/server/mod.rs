//! The running daemon: listeners, the metrics endpoint, signals and shutdown.
//!
//! [`serve`] owns everything it starts and stops it in order: on SIGTERM or SIGINT the UDP
//! workers and the TCP server stop taking queries, queries in flight are answered, then the hit
//! log is flushed. SIGHUP reloads config and lists (off the packet path), the TLS certificate of
//! DoT and DoH, and reopens the hit log.

pub mod admin;
pub mod certs;
pub(crate) mod doh;
pub mod handler;
pub(crate) mod inflight;
pub(crate) mod phases;
pub(crate) mod relay;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod udp;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::cache::PacketCache;
use crate::hitlog::{HitLog, HitLogWriter};
use crate::policy::PolicyTable;
use crate::state::State;

use self::certs::CertStore;
use self::handler::Handler;
use self::tcp::{Service, TcpLimits, TcpServer};
use self::tls::Alpn;
use self::udp::UdpWorkers;
use crate::config::ServerConfig;
use crate::upstream::Sockets;

/// Runs the daemon until SIGTERM or SIGINT. Listener settings are read from the state's
/// current snapshot; they take effect at start only.
///
/// `bound` runs once, when every UDP and TCP socket is bound and before any query is read: where
/// `sinkhole run --user` gives up root (`privilege::Identity::assume`). An error from it stops
/// the start.
pub async fn serve(
    state: Arc<State>,
    hitlog: HitLog,
    writer: HitLogWriter,
    bound: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    // Before anything answers: until a handler is installed SIGHUP's default action ends the
    // process, and a reload sent as soon as the daemon answers (`systemctl reload` after a start,
    // logrotate) must reload it. Signals that come before the loop below are kept for it.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let snapshot = state.load_full();
    let config = &snapshot.config;
    let listen: Vec<_> = config.server.listen.iter().map(|l| *l.get_ref()).collect();
    let threads = config
        .server
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cache = Arc::new(PacketCache::new(
        config.cache.entries,
        config.cache.max_bytes.get_ref().0,
    ));
    // The egress companion runs when some policy publishes its blocks at start (`[egress]` and
    // its use take effect at start).
    let egress = config.egress_used().then(|| {
        let settings = crate::egress::Settings::from_config(config);
        let (queue, offers) = crate::egress::EgressQueue::new(settings.queue());
        (queue, crate::egress::Companion::new(settings, offers))
    });
    let handler = Handler::new(Arc::clone(&state), Arc::clone(&cache), hitlog.clone());
    let (handler, companion) = match egress {
        Some((queue, companion)) => (handler.with_egress(queue), Some(companion)),
        None => (handler, None),
    };
    let handler = Arc::new(handler);
    let (stop, stopped) = watch::channel(false);

    // Every UDP worker has a set of upstream sockets, and the TCP side one more. The descriptor
    // limit is raised before anything is bound.
    let owners = listen.len() * threads + 1;
    let tcp_limits = tcp_limits(
        &config.server,
        listen.len() * threads,
        owners * snapshot.upstream.servers().len(),
    );
    let udp_sockets = UdpWorkers::bind(&listen, threads)?;
    let mut tcp_listeners = TcpServer::bind(&listen)?;
    // DoT and DoH: the certificate is read before privileges are dropped (a key readable by root
    // only loads at start; a reload needs it readable by the daemon's user).
    let tls = addresses(&config.server.tls);
    let https = addresses(&config.server.https);
    let certs = if tls.is_empty() && https.is_empty() {
        None
    } else {
        let store = Arc::new(CertStore::load(config).map_err(io::Error::other)?);
        let acceptor = |alpn| tls::acceptor(Arc::clone(&store), alpn).map_err(io::Error::other);
        tcp_listeners.bind_more(&tls, &Service::Dot(acceptor(Alpn::Dot)?))?;
        tcp_listeners.bind_more(&https, &Service::Doh(acceptor(Alpn::Doh)?))?;
        Some(store)
    };
    bound()?;
    let udp = UdpWorkers::start(udp_sockets, config.server.max_inflight, Arc::clone(&handler), stopped)?;
    let tcp_upstream = Arc::new(Sockets::new(owners));
    // The companion resolves on the TCP side's upstream sockets: its queries count against
    // `upstream.max_inflight` with theirs, on the same runtime.
    let companion = companion.map(|c| tokio::spawn(c.run(Arc::clone(&state), Arc::clone(&tcp_upstream))));
    let tcp = TcpServer::start(tcp_listeners, tcp_limits, Arc::clone(&handler), tcp_upstream);
    let listening = listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    tracing::info!(
        listen = %listening,
        udp_threads = threads,
        metrics = %config.server.metrics.map_or_else(|| "off".to_string(), |m| format!("http://{m}/metrics")),
        upstream = %snapshot.upstream.specs().iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", "),
        tcp_max_connections = tcp_limits.max_connections,
        policies = snapshot.rules.policies.len(),
        lists = snapshot.rules.lists.len(),
        rules = snapshot.rule_count(),
        tls = %tls.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        https = %https.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        "sinkhole is answering DNS over UDP and TCP"
    );
    drop(snapshot);

    let gauge = tokio::spawn(export_gauges(Arc::clone(&cache), Arc::clone(&state)));
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading config and lists");
                // A failed reload is logged and counted inside; the old state keeps serving.
                let reloaded = Arc::clone(&state);
                let _ = tokio::task::spawn_blocking(move || reloaded.reload()).await;
                if let Some(certs) = &certs {
                    // From the config now serving: the reloaded one, or the old one if it failed.
                    let certs = Arc::clone(certs);
                    let state = Arc::clone(&state);
                    let _ = tokio::task::spawn_blocking(move || certs.reload(&state.load().config)).await;
                }
                hitlog.reopen();
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    tracing::info!("shutting down: finishing queries in flight");
    gauge.abort();
    if let Some(companion) = companion {
        companion.abort();
    }
    let _ = stop.send(true);
    tcp.shutdown().await;
    let _ = tokio::task::spawn_blocking(move || udp.join()).await;
    hitlog.close();
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    tracing::info!("stopped");
    Ok(())
}

/// The addresses of listener keys (`server.tls`, `server.https`).
fn addresses(keys: &[toml::Spanned<std::net::SocketAddr>]) -> Vec<std::net::SocketAddr> {
    keys.iter().map(|a| *a.get_ref()).collect()
}

/// File descriptors kept for what is not a TCP connection or an upstream socket: listeners,
/// the metrics endpoint and its scrapes, the hit log, config and list files on reload.
const SPARE_DESCRIPTORS: usize = 64;

/// The TCP limits from `[server]`, with the connection limit lowered if the file descriptor
/// limit would not leave room beside it for `listeners` UDP sockets and `upstream_sets` sets of
/// upstream sockets to one server (each [`Sockets::DESCRIPTORS_PER_SERVER`]): a TCP flood must
/// never take the descriptors the UDP path forwards on. The soft limit is raised to the hard
/// limit first. (Sized for the upstream servers at start: a reload that adds many servers eats
/// into the spare descriptors.)
fn tcp_limits(server: &ServerConfig, listeners: usize, upstream_sets: usize) -> TcpLimits {
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
    let reserved = SPARE_DESCRIPTORS + listeners + upstream_sets * Sockets::DESCRIPTORS_PER_SERVER;
    let room = nofile.saturating_sub(reserved);
    let mut max_connections = server.tcp_max_connections;
    if room < max_connections {
        max_connections = room.max(1);
        tracing::warn!(
            descriptors = nofile,
            reserved,
            tcp_max_connections = max_connections,
            "the file descriptor limit is low: TCP connections capped below server.tcp_max_connections \
             (raise LimitNOFILE)"
        );
    }
    TcpLimits {
        max_connections,
        max_per_client: server.tcp_max_connections_per_client,
        idle: Duration::from_secs(server.tcp_idle_timeout),
        io_timeout: Duration::from_secs(server.tcp_io_timeout),
        pipeline: server.tcp_pipeline,
        buffer_bytes: usize::try_from(server.tcp_buffer.0).unwrap_or(usize::MAX),
        handshake: Duration::from_secs(server.tls_handshake_timeout),
    }
}

/// Keeps `sinkhole_cache_entries` and `sinkhole_cache_bytes` current; gauges read once a
/// second are plenty for a scrape every 15 s or more, and keep the counting off the packet path.
/// The policies' phases too: the gauges, and each change seen (logged, counted: `phases`).
async fn export_gauges(cache: Arc<PacketCache>, state: Arc<State>) {
    let entries = metrics::gauge!(crate::metrics::CACHE_ENTRIES);
    let bytes = metrics::gauge!(crate::metrics::CACHE_BYTES);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut phases = phases::PhaseWatch::default();
    loop {
        tick.tick().await;
        entries.set(cache.len() as f64);
        bytes.set(cache.bytes() as f64);
        let now = crate::state::now_unix();
        let snapshot = state.load();
        export_policy_phases(&snapshot.rules.policies, now);
        phases.tick(&snapshot.rules.policies, now);
    }
}

/// Sets [`crate::metrics::POLICY_PHASE`] for every policy at `now`: 1 for its current phase (or
/// `none`), 0 for the rest of its timeline.
fn export_policy_phases(policies: &PolicyTable, now: i64) {
    for policy in policies.iter() {
        let current = policy.phase_at(now);
        let set = |phase: String, mode: &str, on: bool| {
            let labels = [
                ("policy", policy.name.to_string()),
                ("phase", phase),
                ("mode", mode.to_string()),
            ];
            metrics::gauge!(crate::metrics::POLICY_PHASE, &labels).set(f64::from(u8::from(on)));
        };
        let is_current = |i: usize| current.is_some_and(|(phase, _)| usize::from(phase) == i);
        if policy.phases.is_empty() {
            set("0".into(), policy.mode.as_str(), is_current(0));
        }
        for (i, phase) in policy.phases.iter().enumerate() {
            set(i.to_string(), phase.mode.as_str(), is_current(i));
        }
        set("none".into(), "none", current.is_none());
    }
}
