//! The running daemon: listeners, the metrics endpoint, signals and shutdown.
//!
//! [`serve`] owns everything it starts and stops it in order: on SIGTERM or SIGINT the UDP
//! workers and the TCP server stop taking queries, queries in flight are answered, then the hit
//! log is flushed. SIGHUP reloads config and lists (off the packet path) and reopens the hit log.

pub mod handler;
pub mod tcp;
pub mod udp;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::cache::PacketCache;
use crate::hitlog::{HitLog, HitLogWriter};
use crate::state::State;

use self::handler::Handler;
use self::tcp::TcpServer;
use self::udp::UdpWorkers;

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
    let snapshot = state.load_full();
    let config = &snapshot.config;
    let listen: Vec<_> = config.server.listen.iter().map(|l| *l.get_ref()).collect();
    let threads = config
        .server
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cache = Arc::new(PacketCache::new(config.cache.entries));
    let handler = Arc::new(Handler::new(Arc::clone(&state), Arc::clone(&cache), hitlog.clone()));
    let (stop, stopped) = watch::channel(false);

    let udp_sockets = UdpWorkers::bind(&listen, threads)?;
    let tcp_listeners = TcpServer::bind(&listen)?;
    bound()?;
    let udp = UdpWorkers::start(udp_sockets, config.server.max_inflight, Arc::clone(&handler), stopped)?;
    let tcp = TcpServer::start(
        tcp_listeners,
        Duration::from_secs(config.server.tcp_idle_timeout),
        Arc::clone(&handler),
    );
    let listening = listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    tracing::info!(
        listen = %listening,
        udp_threads = threads,
        metrics = %config.server.metrics.map_or_else(|| "off".to_string(), |m| format!("http://{m}/metrics")),
        upstream = %snapshot.upstream.servers().iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        policies = snapshot.policies.len(),
        lists = snapshot.lists.len(),
        rules = snapshot.rule_count(),
        "sinkhole is answering DNS over UDP and TCP"
    );
    drop(snapshot);

    let gauge = tokio::spawn(export_cache_size(Arc::clone(&cache)));
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading config and lists");
                let state = Arc::clone(&state);
                // A failed reload is logged and counted inside; the old state keeps serving.
                let _ = tokio::task::spawn_blocking(move || state.reload()).await;
                hitlog.reopen();
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    tracing::info!("shutting down: finishing queries in flight");
    gauge.abort();
    let _ = stop.send(true);
    tcp.shutdown().await;
    let _ = tokio::task::spawn_blocking(move || udp.join()).await;
    hitlog.close();
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Keeps `sinkhole_cache_entries` current; a gauge read once a second is plenty for a scrape
/// every 15 s or more, and keeps the count off the packet path.
async fn export_cache_size(cache: Arc<PacketCache>) {
    let gauge = metrics::gauge!(crate::metrics::CACHE_ENTRIES);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        gauge.set(cache.len() as f64);
    }
}
