//! Every default of the configuration, named, in one place: the schema's `#[serde(default)]`s and
//! any runtime type that needs "what a config that says nothing gives" (the cache's `TtlLimits`)
//! read them from here, so that a default changed here changes everywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

/// `server.listen`: loopback on an unprivileged port, safe to start anywhere.
pub(crate) const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5353);
/// `server.metrics`: the Prometheus endpoint, on loopback.
pub(crate) const METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9153);
/// `server.allow`: loopback, RFC 1918, IPv4 link-local, IPv6 loopback, ULA and link-local.
pub(crate) const ALLOW: [IpNet; 8] = [
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 16),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), 7),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
];
/// `server.tcp_idle_timeout`, seconds.
pub(crate) const TCP_IDLE_TIMEOUT: u64 = 10;
/// `server.tcp_io_timeout`, seconds.
pub(crate) const TCP_IO_TIMEOUT: u64 = 5;
/// `server.tcp_max_connections`.
pub(crate) const TCP_MAX_CONNECTIONS: usize = 256;
/// `server.tcp_max_connections_per_client`.
pub(crate) const TCP_MAX_CONNECTIONS_PER_CLIENT: usize = 32;
/// `server.tcp_pipeline`.
pub(crate) const TCP_PIPELINE: usize = 16;
/// `server.tcp_buffer`, bytes (16 MiB).
pub(crate) const TCP_BUFFER: u64 = 16 << 20;
/// `server.tls_handshake_timeout`, seconds: a handshake takes a round trip or two.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: u64 = 5;
/// `server.max_inflight`, per UDP worker.
pub(crate) const MAX_INFLIGHT: usize = 4096;
/// `server.max_udp_payload`, bytes: DNS Flag Day 2020's size, which never fragments.
pub(crate) const MAX_UDP_PAYLOAD: u16 = crate::wire::EDNS_PAYLOAD;

/// `upstream.timeout_ms`.
pub(crate) const UPSTREAM_TIMEOUT_MS: u64 = 1500;
/// `upstream.max_inflight`, over the whole daemon, per server.
pub(crate) const UPSTREAM_MAX_INFLIGHT: usize = 4096;
/// `upstream.case_randomization`.
pub(crate) const CASE_RANDOMIZATION: bool = true;
/// The port of an upstream written as an address alone.
pub(crate) const UPSTREAM_PORT: u16 = 53;
/// The port of a `tls://` upstream written without one (RFC 7858).
pub(crate) const UPSTREAM_TLS_PORT: u16 = 853;
/// The port of an `https://` upstream written without one.
pub(crate) const UPSTREAM_HTTPS_PORT: u16 = 443;

/// `cache.entries`.
pub(crate) const CACHE_ENTRIES: usize = 100_000;
/// `cache.max_bytes` (64 MiB).
pub(crate) const CACHE_MAX_BYTES: u64 = 64 << 20;
/// `cache.min_ttl`, seconds.
pub(crate) const MIN_TTL: u32 = 0;
/// `cache.max_ttl`, seconds (a day).
pub(crate) const MAX_TTL: u32 = 86_400;
/// `cache.negative_max_ttl`, seconds (an hour).
pub(crate) const NEGATIVE_MAX_TTL: u32 = 3_600;
/// `cache.servfail_ttl`, seconds: SERVFAIL is not cached.
pub(crate) const SERVFAIL_TTL: u32 = 0;
/// `cache.serve_stale`, seconds (a day).
pub(crate) const SERVE_STALE: u32 = 86_400;

/// `policy.block_ttl`, seconds: short, so that an exception added by an admin takes effect at once.
pub(crate) const BLOCK_TTL: u32 = 10;

/// `ratelimit.qps`, per client.
pub(crate) const CLIENT_QPS: u32 = 1000;
/// `ratelimit.identical_qps`: off.
pub(crate) const IDENTICAL_QPS: u32 = 0;
/// `ratelimit.burst` and `ratelimit.identical_burst`: this many times the rate.
pub(crate) const BURST_FACTOR: u32 = 2;
/// `ratelimit.slip`.
pub(crate) const SLIP: u32 = 2;
/// `ratelimit.exempt`: the host itself.
pub(crate) const RATELIMIT_EXEMPT: [IpNet; 2] = [
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
];

/// `server.state_dir` where neither the config nor `$STATE_DIRECTORY` says.
pub(crate) const STATE_DIR: &str = "/var/lib/sinkhole";
/// `server.list_wait`: a start without network is slowed by this much at most.
pub(crate) const LIST_WAIT: Duration = Duration::from_secs(5);
/// `lists.*.refresh`: public lists change daily at most; four fetches a day keep up.
pub(crate) const LIST_REFRESH: Duration = Duration::from_secs(6 * 3600);
/// `lists.*.max_bytes` (64 MiB): a few million domains.
pub(crate) const LIST_MAX_BYTES: u64 = 64 << 20;
/// `lists.*.timeout`: a big list over a slow link, not a server that hangs.
pub(crate) const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// `lists.*.max_bad_share`: a few odd lines are normal, an error page is not.
pub(crate) const LIST_MAX_BAD_SHARE: f64 = 0.1;
/// `lists.*.max_shrink`: lists grow or lose a few names; half of them gone is an accident.
pub(crate) const LIST_MAX_SHRINK: f64 = 0.5;

/// `log.queue`, hit log lines.
pub(crate) const LOG_QUEUE: usize = 8192;

/// `egress.table`: the nftables table (family inet) deploy/nftables/sinkhole.nft creates.
pub(crate) const EGRESS_TABLE: &str = "sinkhole";
/// `egress.set_v4`.
pub(crate) const EGRESS_SET_V4: &str = "blocked_v4";
/// `egress.set_v6`.
pub(crate) const EGRESS_SET_V6: &str = "blocked_v6";
/// `egress.min_timeout`, seconds: long enough for a client to use the answer it got elsewhere.
pub(crate) const EGRESS_MIN_TIMEOUT: u32 = 300;
/// `egress.max_timeout`, seconds (a day).
pub(crate) const EGRESS_MAX_TIMEOUT: u32 = 86_400;
/// `egress.rate`, names resolved per second.
pub(crate) const EGRESS_RATE: u32 = 20;
/// `egress.queue`, names waiting to be resolved.
pub(crate) const EGRESS_QUEUE: usize = 1024;
/// `egress.dedup_window`, seconds.
pub(crate) const EGRESS_DEDUP_WINDOW: u32 = 60;
/// `egress.max_names`, names remembered for deduplication.
pub(crate) const EGRESS_MAX_NAMES: usize = 65_536;
/// Addresses the egress companion never adds, whatever `egress.never_add` says: dropping flows to
/// them would cut the network off from itself (loopback, private and link-local ranges, the
/// resolver's own clients), or they are not unicast destinations at all.
pub(crate) const EGRESS_NEVER_ADD: [IpNet; 17] = [
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 8),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)), 10),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 16),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 0)), 4),
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(240, 0, 0, 0)), 4),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 128),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0)), 96),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0)), 48),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0)), 64),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), 7),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)), 8),
];
