//! The configuration's schema: one serde struct per TOML section, every key documented where it
//! is defined (this is the configuration reference), with its default from [`super::defaults`].
//!
//! Deserialising checks what a type can check alone (an address, a prefix, a size); what needs
//! the whole file (ranges, references between sections, files on disk) is `validate`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::Origin;
use super::defaults;
use super::keys::KeySpans;
use crate::answer::BlockAnswer;
use crate::policy::{Mode, OnMissingList, Phase, Schedule, Window};

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, metrics endpoint and who may query.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where allowed queries are forwarded.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// The packet cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Named domain lists (`[lists.NAME]`), referred to by policies' `block` and `allow`.
    #[serde(default)]
    pub lists: BTreeMap<String, ListConfig>,
    /// Policies (`[[policy]]`), each for a set of client prefixes; the most specific prefix wins.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyConfig>,
    /// The hit log.
    #[serde(default)]
    pub log: LogConfig,
    /// Rate limits on UDP queries.
    #[serde(default)]
    pub ratelimit: RateLimitConfig,
    /// The egress companion: the nftables sets the addresses of blocked names go into, for the
    /// policies with `egress = true`.
    #[serde(default)]
    pub egress: EgressConfig,
    /// Where this config came from (not a key).
    #[serde(skip_deserializing, default = "Origin::embedded")]
    pub origin: Origin,
    /// Where each key of the text is, for errors and warnings found after deserialising (not a key).
    #[serde(skip)]
    pub(super) keys: KeySpans,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to answer DNS on, each over UDP and TCP. Default `["127.0.0.1:5353"]`
    /// ([`defaults::LISTEN`]).
    #[serde(default = "default_listen")]
    pub listen: Vec<Spanned<SocketAddr>>,
    /// Address of the Prometheus endpoint (`/metrics`), or `"off"`. Default `"127.0.0.1:9153"`.
    #[serde(default = "default_metrics", deserialize_with = "metrics_addr")]
    pub metrics: Option<SocketAddr>,
    /// Client prefixes that may query at all; others get REFUSED. Default: loopback, RFC 1918,
    /// ULA (fc00::/7) and link-local ([`defaults::ALLOW`]). `check` and `run` warn about a
    /// policy whose clients lie outside it: those clients are refused, whatever their policy.
    #[serde(rename = "allow", default)]
    pub(super) allow_written: Option<Spanned<Vec<Spanned<String>>>>,
    /// `allow` as prefixes, read by validation (not a key).
    #[serde(skip, default = "default_allow")]
    pub allow: Spanned<Vec<IpNet>>,
    /// Relays (dnsdist, HAProxy, a dnsmasq forwarder) that may state the client they relay for:
    /// by a PROXY protocol v2 header (TCP: at the start of the connection; UDP: at the start of
    /// each datagram), else by the EDNS Client Subnet option of the query. The stated client is
    /// the one policy, rate limits, the hit log and metrics see. From any other address both are
    /// ignored: a client cannot pick its own policy. Default none. Read on every reload.
    #[serde(rename = "trusted_relays", default)]
    pub(super) trusted_relays_written: Vec<Spanned<String>>,
    /// `trusted_relays` as prefixes, read by validation (not a key).
    #[serde(skip)]
    pub trusted_relays: Vec<IpNet>,
    /// UDP worker threads, each with its own socket (SO_REUSEPORT). Default: one per CPU.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Seconds a TCP connection may stay idle before it is closed. Default 10.
    #[serde(default = "default_tcp_idle")]
    pub tcp_idle_timeout: u64,
    /// Seconds a TCP client has to send the rest of a query it started, and to take an answer:
    /// a slow client loses its connection rather than hold it (slowloris). Default 5.
    #[serde(default = "default_tcp_io_timeout")]
    pub tcp_io_timeout: u64,
    /// TCP connections open at most, over all listeners. It is lowered at start if the file
    /// descriptor limit (raised to its hard limit first) would not leave room for the upstream
    /// sockets. Default 256.
    #[serde(default = "default_tcp_max_connections")]
    pub tcp_max_connections: usize,
    /// TCP connections open at most from one client address. Default 32.
    #[serde(default = "default_tcp_max_per_client")]
    pub tcp_max_connections_per_client: usize,
    /// Queries one TCP connection may have in flight at once (answered as each is ready, RFC
    /// 7766); it reads no further queries until one is answered. Default 16.
    #[serde(default = "default_tcp_pipeline")]
    pub tcp_pipeline: usize,
    /// Memory the TCP answers waiting to be written may take, over all connections. Default
    /// 16 MiB.
    #[serde(default = "default_tcp_buffer")]
    pub tcp_buffer: ByteSize,
    /// Forwarded queries in flight per UDP worker; past it new cache misses are dropped (and
    /// counted) so that memory stays bounded under a flood. Default 4096.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Largest answer sent over UDP, whatever size a client's EDNS advertises (512 to 4096).
    /// Default 1232 (DNS Flag Day 2020): no IP fragmentation, and a spoofed 40-byte query draws
    /// at most 1232 bytes at its victim instead of 64 KiB. Longer answers are sent truncated
    /// (TC), and the client asks again over TCP.
    #[serde(default = "default_max_udp_payload")]
    pub max_udp_payload: Spanned<u16>,
    /// The text a CHAOS-class TXT query for `id.server` or `hostname.bind` gets. Default none:
    /// such queries, and every other CHAOS query, are REFUSED. They are never forwarded, which
    /// would tell every client the upstream's host name.
    pub identity: Option<String>,
    /// The text `version.bind` and `version.server` (CHAOS TXT) get. Default none: REFUSED, so
    /// that a scanner learns neither sinkhole's version nor the upstream's software.
    pub version: Option<String>,
    /// Where the last good copy of every list fetched by URL is kept (`lists/` inside it), so
    /// that a restart without network serves it at once. Relative to the config's directory.
    /// Default: `$STATE_DIRECTORY` (what systemd's `StateDirectory=` sets; its first path), else
    /// `/var/lib/sinkhole` ([`defaults::STATE_DIR`]). Created on the first save; one that cannot be
    /// written is a warning, and the daemon serves from memory.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// How long start-up may wait on the network for URL lists that have no saved copy, before
    /// it answers with what it has (see `on_missing_list`): a duration such as `"5s"`. Default
    /// 5 s ([`defaults::LIST_WAIT`]).
    #[serde(default)]
    pub list_wait: Option<Spanned<TimeSpan>>,
    /// Addresses to answer DNS over TLS on (RFC 7858, port 853 by convention). Default none.
    /// Needs `certificate` and `key`. Like `listen`, taken at start only.
    #[serde(default)]
    pub tls: Vec<Spanned<SocketAddr>>,
    /// Addresses to answer DNS over HTTPS on (RFC 8484: `/dns-query`, GET and POST, HTTP/2 and
    /// HTTP/1.1; port 443 by convention). Default none. Needs `certificate` and `key`.
    #[serde(default)]
    pub https: Vec<Spanned<SocketAddr>>,
    /// The PEM certificate chain DoT and DoH present (leaf first), relative to the config's
    /// directory. Read again on every reload: a pair that does not load keeps the old one serving.
    #[serde(default)]
    pub certificate: Option<Spanned<PathBuf>>,
    /// The PEM private key of `certificate` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<Spanned<PathBuf>>,
    /// The name DDR (RFC 9462) gives clients as the encrypted resolver's target name: the name
    /// they check the certificate against. Default: the first DNS name among the certificate's
    /// subject alternative names. Without either, `_dns.resolver.arpa` gets NODATA.
    #[serde(default)]
    pub ddr_name: Option<Spanned<String>>,
    /// The addresses DDR's SVCB records give as `ipv4hint`/`ipv6hint`, so that a client reaches
    /// the encrypted resolver without resolving its name. Default: the specific addresses of
    /// `tls` and `https` (a wildcard such as 0.0.0.0 gives none).
    #[serde(default)]
    pub ddr_addresses: Option<Spanned<Vec<Spanned<IpAddr>>>>,
    /// Seconds a DoT or DoH client has to finish its TLS handshake once connected; a connection
    /// that has not is closed, so that it does not hold a connection slot. Default 5
    /// ([`defaults::TLS_HANDSHAKE_TIMEOUT`]).
    #[serde(default = "default_tls_handshake_timeout")]
    pub tls_handshake_timeout: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            metrics: default_metrics(),
            allow_written: None,
            allow: default_allow(),
            trusted_relays_written: Vec::new(),
            trusted_relays: Vec::new(),
            threads: None,
            tcp_idle_timeout: default_tcp_idle(),
            tcp_io_timeout: default_tcp_io_timeout(),
            tcp_max_connections: default_tcp_max_connections(),
            tcp_max_connections_per_client: default_tcp_max_per_client(),
            tcp_pipeline: default_tcp_pipeline(),
            tcp_buffer: default_tcp_buffer(),
            max_inflight: default_max_inflight(),
            max_udp_payload: default_max_udp_payload(),
            identity: None,
            version: None,
            state_dir: None,
            list_wait: None,
            tls: Vec::new(),
            https: Vec::new(),
            certificate: None,
            key: None,
            ddr_name: None,
            ddr_addresses: None,
            tls_handshake_timeout: default_tls_handshake_timeout(),
        }
    }
}

impl ServerConfig {
    /// `list_wait`, its default applied.
    pub fn list_wait(&self) -> std::time::Duration {
        self.list_wait.as_ref().map_or(defaults::LIST_WAIT, |w| w.get_ref().0)
    }
}

fn default_listen() -> Vec<Spanned<SocketAddr>> {
    vec![Spanned::new(0..0, defaults::LISTEN)]
}
fn default_metrics() -> Option<SocketAddr> {
    Some(defaults::METRICS)
}
fn default_allow() -> Spanned<Vec<IpNet>> {
    Spanned::new(0..0, defaults::ALLOW.to_vec())
}
fn default_tcp_idle() -> u64 {
    defaults::TCP_IDLE_TIMEOUT
}
fn default_tcp_io_timeout() -> u64 {
    defaults::TCP_IO_TIMEOUT
}
fn default_tcp_max_connections() -> usize {
    defaults::TCP_MAX_CONNECTIONS
}
fn default_tcp_max_per_client() -> usize {
    defaults::TCP_MAX_CONNECTIONS_PER_CLIENT
}
fn default_tcp_pipeline() -> usize {
    defaults::TCP_PIPELINE
}
fn default_tcp_buffer() -> ByteSize {
    ByteSize(defaults::TCP_BUFFER)
}
fn default_tls_handshake_timeout() -> u64 {
    defaults::TLS_HANDSHAKE_TIMEOUT
}
fn default_max_inflight() -> usize {
    defaults::MAX_INFLIGHT
}
fn default_max_udp_payload() -> Spanned<u16> {
    Spanned::new(0..0, defaults::MAX_UDP_PAYLOAD)
}

fn metrics_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text == "off" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an address:port (or \"off\")")))
}

/// `[upstream]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Resolvers to forward to, in order of preference (`"192.0.2.1"` means port 53;
    /// `"tls://host#ip"` and `"https://host/path#ip"` are encrypted, see [`UpstreamAddr`]).
    /// Default: the nameservers of /etc/resolv.conf.
    #[serde(default)]
    pub servers: Option<Spanned<Vec<UpstreamAddr>>>,
    /// Total time for one query, failover included; past it the client gets SERVFAIL.
    /// Default 1500.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Queries in flight to one server at most, counted over the whole daemon (each worker
    /// thread takes its share). Past it the server is skipped (the next one is asked), and when
    /// every server is at its cap the client gets SERVFAIL at once: a flood of cache misses must
    /// not pile up on a resolver that is not keeping up. Default 4096.
    #[serde(default = "default_upstream_inflight")]
    pub max_inflight: Spanned<usize>,
    /// Send query names in random case (0x20) and require answers to repeat it: against
    /// spoofed answers, one more bit per letter to guess. A server seen to answer in another
    /// case eight times in a row is asked without it for ten minutes. Default true.
    #[serde(default = "default_case_randomization")]
    pub case_randomization: bool,
    /// Pass the EDNS Client Subnet option (RFC 7871) of a query on to the upstream. Default
    /// false: it is stripped, because the packet cache shares one answer among all clients and
    /// must not serve one subnet's answer to the others. With true the upstream sees the
    /// subnet, and the first subnet's answer is cached for everyone.
    #[serde(default)]
    pub forward_client_subnet: bool,
    /// A PEM file of the CA certificates that `tls://` and `https://` upstreams' certificates
    /// are checked against, instead of the system's roots (a private resolver's own CA),
    /// relative to the config's directory. Default: none (the system's roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: None,
            timeout_ms: default_timeout_ms(),
            max_inflight: default_upstream_inflight(),
            case_randomization: defaults::CASE_RANDOMIZATION,
            forward_client_subnet: false,
            ca: None,
        }
    }
}

fn default_timeout_ms() -> u64 {
    defaults::UPSTREAM_TIMEOUT_MS
}
fn default_upstream_inflight() -> Spanned<usize> {
    Spanned::new(0..0, defaults::UPSTREAM_MAX_INFLIGHT)
}
fn default_case_randomization() -> bool {
    defaults::CASE_RANDOMIZATION
}

/// An upstream server: plain DNS at `ip`, `ip:port` or `[v6]:port` (port 53 by default), DNS over
/// TLS at `tls://host[:port]#ip` (853) or DNS over HTTPS at `https://host[:port]/path#ip` (443,
/// path `/dns-query` by default). `#ip` is the address to connect to, so that sinkhole never
/// resolves its own upstream in clear; `host` is the name the server's certificate must carry
/// (and the SNI). An IP host (`tls://192.0.2.1`) is checked against its certificate as an IP
/// and needs no `#ip`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamAddr {
    /// The address queries go to: the server's own, or the bootstrap address of a named one.
    pub addr: SocketAddr,
    /// How queries travel there.
    pub protocol: UpstreamProtocol,
    /// The server as configured, for logs and the `upstream` metric label.
    pub text: String,
}

/// How queries travel to one upstream server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// Plain DNS: UDP, TCP when an answer is truncated or the client asked over TCP.
    Plain,
    /// DNS over TLS (RFC 7858); `name` is what the certificate is checked against.
    Tls {
        /// The host name or IP the certificate must carry.
        name: String,
    },
    /// DNS over HTTPS (RFC 8484), POST over HTTP/2.
    Https {
        /// The host name or IP the certificate must carry.
        name: String,
        /// The URL's path, `/dns-query` unless configured.
        path: String,
    },
}

impl UpstreamAddr {
    /// A plain DNS server at `addr` (as /etc/resolv.conf names them).
    pub fn plain(addr: SocketAddr) -> Self {
        UpstreamAddr {
            addr,
            protocol: UpstreamProtocol::Plain,
            text: addr.to_string(),
        }
    }
}

impl FromStr for UpstreamAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("tls://") {
            return parse_encrypted(s, rest, defaults::UPSTREAM_TLS_PORT, false);
        }
        if let Some(rest) = s.strip_prefix("https://") {
            return parse_encrypted(s, rest, defaults::UPSTREAM_HTTPS_PORT, true);
        }
        s.parse::<SocketAddr>()
            .or_else(|_| {
                s.parse::<IpAddr>()
                    .map(|ip| SocketAddr::new(ip, defaults::UPSTREAM_PORT))
            })
            .map(UpstreamAddr::plain)
            .map_err(|_| {
                format!(
                    "{s:?} is not an upstream address (ip, ip:port, [ipv6]:port, tls://host[:port]#ip or \
                     https://host[:port]/path#ip)"
                )
            })
    }
}

/// Reads the part of `text` after `tls://` or `https://` (`rest`): host, optional port, a path
/// (HTTPS only) and the bootstrap address after `#`, which a host name needs.
fn parse_encrypted(text: &str, rest: &str, default_port: u16, https: bool) -> Result<UpstreamAddr, String> {
    let (rest, bootstrap) = match rest.split_once('#') {
        Some((rest, ip)) => {
            let ip = ip
                .parse::<IpAddr>()
                .map_err(|_| format!("{text:?}: {ip:?} after # is not an IP address (the address to connect to)"))?;
            (rest, Some(ip))
        }
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) if https => (&rest[..at], &rest[at..]),
        Some(_) => return Err(format!("{text:?}: a tls:// server has no path")),
        None => (rest, "/dns-query"),
    };
    let (host, port) =
        split_host_port(authority).ok_or_else(|| format!("{text:?}: {authority:?} is not host[:port]"))?;
    let port = port.unwrap_or(default_port);
    let ip = host.parse::<IpAddr>().ok();
    if ip.is_none() && !is_host_name(host) {
        return Err(format!("{text:?}: {host:?} is not a host name or an IP address"));
    }
    let addr = match (bootstrap, ip) {
        (Some(bootstrap), _) => SocketAddr::new(bootstrap, port),
        (None, Some(ip)) => SocketAddr::new(ip, port),
        (None, None) => {
            let scheme = if https { "https" } else { "tls" };
            return Err(format!(
                "{text:?} has no address to connect to: write {scheme}://{authority}{}#IP with the server's IP \
                 (sinkhole does not look up its own upstreams)",
                if https { path } else { "" }
            ));
        }
    };
    let name = host.to_owned();
    let protocol = if https {
        UpstreamProtocol::Https {
            name,
            path: path.to_owned(),
        }
    } else {
        UpstreamProtocol::Tls { name }
    };
    Ok(UpstreamAddr {
        addr,
        protocol,
        text: text.to_owned(),
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; None if the port is not a number.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// Whether `host` is a DNS host name: dot-separated labels of letters, digits and hyphens.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl<'de> Deserialize<'de> for UpstreamAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `[cache]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Most answers held. Default 100000. Changing it takes a restart (the cache outlives reloads).
    #[serde(default = "default_entries")]
    pub entries: usize,
    /// Most memory the answers take: an integer (bytes) or a size such as `"64MiB"` (B, KiB,
    /// MiB, GiB; KB, MB, GB are powers of 1000). Whichever of `entries` and `max_bytes` is
    /// reached first bounds the cache: a few thousand 64 KiB answers must not take a small VM
    /// down. Default 64 MiB. Takes a restart, as `entries` does.
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: Spanned<ByteSize>,
    /// Answers are kept at least this many seconds. Default 0.
    #[serde(default = "default_min_ttl")]
    pub min_ttl: u32,
    /// And at most this many. Default 86400.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u32,
    /// Negative answers (NXDOMAIN, NODATA) at most this many seconds (RFC 2308). Default 3600.
    #[serde(default = "default_negative_max_ttl")]
    pub negative_max_ttl: u32,
    /// SERVFAIL answers from upstreams are kept this many seconds, 0 to 30. Default 0 (never).
    #[serde(default = "default_servfail_ttl")]
    pub servfail_ttl: u32,
    /// Seconds an answer is kept past its expiry to be served stale when no upstream answers
    /// (RFC 8767), with TTL 30 and the EDE "Stale Answer": offices keep resolving the names they
    /// use through an upstream outage. 0 turns it off; at most 604800 (7 days). Default 86400.
    #[serde(default = "default_serve_stale")]
    pub serve_stale: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            entries: default_entries(),
            max_bytes: default_cache_bytes(),
            min_ttl: defaults::MIN_TTL,
            max_ttl: default_max_ttl(),
            negative_max_ttl: default_negative_max_ttl(),
            servfail_ttl: defaults::SERVFAIL_TTL,
            serve_stale: default_serve_stale(),
        }
    }
}

fn default_entries() -> usize {
    defaults::CACHE_ENTRIES
}
fn default_cache_bytes() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(defaults::CACHE_MAX_BYTES))
}
fn default_min_ttl() -> u32 {
    defaults::MIN_TTL
}
fn default_max_ttl() -> u32 {
    defaults::MAX_TTL
}
fn default_negative_max_ttl() -> u32 {
    defaults::NEGATIVE_MAX_TTL
}
fn default_servfail_ttl() -> u32 {
    defaults::SERVFAIL_TTL
}
fn default_serve_stale() -> u32 {
    defaults::SERVE_STALE
}

/// An amount of memory, from an integer (bytes) or a string with a unit (`"64MiB"`, `"512 KiB"`,
/// `"1GB"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit_size: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "{other:?} is not a size unit: use B, KiB, MiB, GiB, KB, MB or GB"
                ));
            }
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_size))
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is not a size like \"64MiB\""))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= 1 << 30 && n % (1 << 30) == 0 => write!(f, "{} GiB", n >> 30),
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{} MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{} KiB", n >> 10),
            n => write!(f, "{n} B"),
        }
    }
}

/// `[lists.NAME]`: where one list's rules come from. All sources are merged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// List files (domains, hosts, `||domain^` lines), relative to the config file's directory.
    /// Paths only: a URL here is an error that says where URLs go.
    #[serde(default)]
    pub files: Vec<Spanned<PathBuf>>,
    /// Lists compiled into the binary, by name (`"tiktok"`).
    #[serde(default)]
    pub builtin: Vec<Spanned<String>>,
    /// Rules written inline, in any list line format.
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    /// Address ranges (`"203.0.113.0/24"`, `"2001:db8::/32"`, or one address): an answer whose
    /// A/AAAA address falls in one is blocked for the clients of a policy blocking this list,
    /// whatever the name asked (answer-address blocking, for apps behind names no list knows).
    #[serde(default)]
    pub ip: Vec<Spanned<String>>,
    /// Lists fetched over HTTP(S) (`"https://..."`), in any list line format; each URL is
    /// fetched and kept on its own, and the list is the union of all its sources. Fetched off
    /// the packet path, every `refresh`; each good copy is kept in `server.state_dir`.
    #[serde(default)]
    pub urls: Vec<Spanned<String>>,
    /// How often each URL is fetched again: a duration such as `"6h"`, `"30m"` or `"90s"`
    /// (at least 1 s), or an integer of seconds. Default 6 h ([`defaults::LIST_REFRESH`]).
    #[serde(default)]
    pub refresh: Option<Spanned<TimeSpan>>,
    /// Largest body one URL may send (a size such as `"64MiB"`); past it the download stops
    /// and the update is refused. Default 64 MiB ([`defaults::LIST_MAX_BYTES`]).
    #[serde(default)]
    pub max_bytes: Option<Spanned<ByteSize>>,
    /// Time one download may take, connection included. Default 60 s
    /// ([`defaults::LIST_TIMEOUT`]).
    #[serde(default)]
    pub timeout: Option<Spanned<TimeSpan>>,
    /// Share of a download's lines (comments and blank lines aside) that may be unreadable, 0 to
    /// 1; over it the update is refused and the previous copy kept (an error page, a file in
    /// another format). Default 0.1 ([`defaults::LIST_MAX_BAD_SHARE`]).
    #[serde(default)]
    pub max_bad_share: Option<Spanned<f64>>,
    /// Share by which one update may shrink a URL's rules at most, 0 to 1; a download that
    /// shrinks more is refused and the previous copy kept (a truncated file, a list emptied by
    /// mistake upstream). Default 0.5 ([`defaults::LIST_MAX_SHRINK`]).
    #[serde(default)]
    pub max_shrink: Option<Spanned<f64>>,
}

impl ListConfig {
    /// `refresh`, its default applied.
    pub fn refresh(&self) -> std::time::Duration {
        self.refresh.as_ref().map_or(defaults::LIST_REFRESH, |r| r.get_ref().0)
    }

    /// `max_bytes`, its default applied.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
            .as_ref()
            .map_or(defaults::LIST_MAX_BYTES, |m| m.get_ref().0)
    }

    /// `timeout`, its default applied.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout.as_ref().map_or(defaults::LIST_TIMEOUT, |t| t.get_ref().0)
    }

    /// `max_bad_share`, its default applied.
    pub fn max_bad_share(&self) -> f64 {
        self.max_bad_share
            .as_ref()
            .map_or(defaults::LIST_MAX_BAD_SHARE, |m| *m.get_ref())
    }

    /// `max_shrink`, its default applied.
    pub fn max_shrink(&self) -> f64 {
        self.max_shrink
            .as_ref()
            .map_or(defaults::LIST_MAX_SHRINK, |m| *m.get_ref())
    }
}

/// A duration, from an integer (seconds) or a string with units: `"6h"`, `"30m"`, `"90s"`,
/// `"1h 30m"`, `"500ms"` (jiff's friendly format, or ISO 8601 `"PT6H"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeSpan(pub std::time::Duration);

impl FromStr for TimeSpan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a duration like \"6h\", \"30m\" or \"90s\"");
        let signed: jiff::SignedDuration = s.trim().parse().map_err(|_| bad())?;
        std::time::Duration::try_from(signed).map(TimeSpan).map_err(|_| bad())
    }
}

impl<'de> Deserialize<'de> for TimeSpan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(n) => Ok(TimeSpan(std::time::Duration::from_secs(n))),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::SignedDuration::try_from(self.0) {
            Ok(d) => write!(f, "{d:#}"),
            Err(_) => write!(f, "{} s", self.0.as_secs()),
        }
    }
}

/// `[[policy]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique name, used in logs, metrics and the EDE text of block answers.
    pub name: Spanned<String>,
    /// Client prefixes this policy covers. A client belongs to the policy with its most specific
    /// matching prefix; clients in no policy are never blocked. They must lie inside
    /// `server.allow` to be served at all (`check` warns when they do not).
    #[serde(rename = "clients")]
    pub(super) clients_written: Spanned<Vec<Spanned<String>>>,
    /// `clients` as prefixes, read by validation (not a key).
    #[serde(skip, default = "no_prefixes")]
    pub clients: Spanned<Vec<Spanned<IpNet>>>,
    /// Lists whose names this policy blocks (with all subdomains). `[]` exempts its clients.
    #[serde(default)]
    pub block: Vec<Spanned<String>>,
    /// Lists of exceptions: names here are never blocked by this policy.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// `nxdomain` (default), `nodata`, `null`, `refused`, or an IP address.
    #[serde(default = "default_answer")]
    pub answer: BlockAnswer,
    /// `enforce` (default) or `audit`. Not with `phases`, which say the mode of each phase.
    #[serde(rename = "mode", default)]
    pub(super) mode_written: Option<Spanned<Mode>>,
    /// The mode as the runtime reads it: `mode`, or the first phase's (not a key).
    #[serde(skip)]
    pub mode: Mode,
    /// What the policy does while a list it blocks has never loaded (a URL list with no download
    /// and no saved copy, and no built-in copy to stand in): `"closed"` (default) answers its
    /// clients SERVFAIL with the Extended DNS Error 14 "Not Ready" for every name it neither
    /// blocks nor excepts, rather than forwarding it; `"open"` blocks what it has and forwards
    /// the rest, with a warning. In `audit` mode it always forwards.
    #[serde(default)]
    pub on_missing_list: OnMissingList,
    /// Seconds block answers are cached by clients (record TTL and negative TTL). Default 10:
    /// short, so that an exception added by an admin takes effect at once.
    #[serde(default = "default_block_ttl")]
    pub block_ttl: u32,
    /// RFC 3339 time from which the policy blocks (`"2023-03-17T00:00:00+01:00"`, or a TOML
    /// date-time with its offset). Optional. Read into `window` by validation.
    #[serde(default)]
    pub active_from: Option<Spanned<toml::Value>>,
    /// RFC 3339 time from which it no longer blocks. Optional. Read into `window` by validation.
    /// Not with `phases`: the last phase's `until` ends the policy.
    #[serde(default)]
    pub active_until: Option<Spanned<toml::Value>>,
    /// The policy's timeline, for a ban announced with a grace period:
    /// `[{ until = "2023-03-31T00:00:00+02:00", mode = "audit" }, { until = "...", mode = "enforce" }]`.
    /// From `active_from` (or always, without it), each phase holds until its `until` (RFC 3339,
    /// in increasing order); after the last one the policy blocks nothing, as after
    /// `active_until`. Phases replace `mode` and `active_until`: giving either with them is an
    /// error. One policy with phases, rather than two policies on the same clients, because a
    /// prefix has one policy only.
    #[serde(default)]
    pub phases: Option<Spanned<Vec<PhaseConfig>>>,
    /// `active_from` and `active_until` (or the last phase's `until`) as the packet path reads
    /// them, parsed once, by validation (not a key).
    #[serde(skip)]
    pub window: Window,
    /// `phases` as the packet path reads them, parsed once by validation (not a key).
    #[serde(skip)]
    pub timeline: Vec<Phase>,
    /// Publish the addresses of the names this policy blocks (in enforce mode) into the
    /// nftables sets of `[egress]`, so that the gateway's firewall drops flows to them from
    /// clients that walk past DNS (hard-coded addresses, a resolver of their own). Default false.
    #[serde(default)]
    pub egress: bool,
    /// Weekly windows: the policy blocks only on these days and hours, as well as inside its
    /// dates and phases (`{ days = ["mon", "tue", "wed", "thu", "fri"], hours = "08:00-18:00",
    /// time_zone = "Europe/Brussels" }`). Optional: without it, at every hour.
    #[serde(default)]
    pub schedule: Option<Spanned<ScheduleConfig>>,
    /// `schedule` as the packet path reads it, its windows computed by validation (not a key).
    #[serde(skip)]
    pub weekly: Option<std::sync::Arc<Schedule>>,
}

/// A policy's `schedule`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The days its hours start on: `"mon"` to `"sun"` (or the full English names). Default:
    /// every day.
    #[serde(default)]
    pub days: Option<Spanned<Vec<Spanned<String>>>>,
    /// `"HH:MM-HH:MM"`, or a list of them; a range whose end is not after its start
    /// (`"22:00-06:00"`) runs from the listed day into the next morning; `24:00` ends a day.
    /// Default: the whole day.
    #[serde(default)]
    pub hours: Option<Spanned<toml::Value>>,
    /// IANA name of the zone whose clock the days and hours are read on (`"Europe/Brussels"`),
    /// DST included. Default: the system's local zone (`TZ`, /etc/localtime).
    #[serde(default)]
    pub time_zone: Option<Spanned<String>>,
}

/// One of a policy's `phases`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    /// RFC 3339 time at which the phase ends (and the next begins).
    pub until: Spanned<toml::Value>,
    /// `enforce` or `audit` during the phase.
    pub mode: Mode,
}

fn default_answer() -> BlockAnswer {
    BlockAnswer::Nxdomain
}
fn default_block_ttl() -> u32 {
    defaults::BLOCK_TTL
}

/// How client addresses appear in the hit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientIpMode {
    /// As they are.
    #[default]
    Full,
    /// The network only: /24 for IPv4, /56 for IPv6.
    Truncated,
    /// A keyed hash (with `salt`): the same client gives the same token, which reveals nothing
    /// without the salt.
    Hashed,
    /// Not logged.
    None,
}

/// Where hit log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HitsTarget {
    /// Standard error (journald picks it up under systemd).
    Stderr,
    /// Standard output.
    Stdout,
    /// Appended to this file, reopened on SIGHUP (for logrotate).
    File(PathBuf),
    /// No hit log (counts remain in metrics).
    Off,
}

impl<'de> Deserialize<'de> for HitsTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "stderr" => HitsTarget::Stderr,
            "stdout" => HitsTarget::Stdout,
            "off" => HitsTarget::Off,
            "" => {
                return Err(serde::de::Error::custom("empty path: use \"off\" to disable"));
            }
            path => HitsTarget::File(PathBuf::from(path)),
        })
    }
}

/// `[ratelimit]`: token buckets on UDP queries (see `ratelimit`). Over a limit a query is
/// dropped, but every `slip`-th gets an empty truncated answer, so that a real client retries
/// over TCP (not limited here) and a spoofed one reflects nothing worth having.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// UDP queries per second one client may send: each IPv4 address, each IPv6 /64. 0 turns
    /// the limit off. Default 1000: far above what one device asks, low enough that one flooding
    /// device cannot take the resolver's time from the others.
    #[serde(default = "default_client_qps")]
    pub qps: u32,
    /// Queries a client may send at once above its rate. Default: twice `qps`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// The same question (name and type) per second from one client network (/24, /56):
    /// response rate limiting against reflection, where a spoofed source asks one question
    /// that draws a large answer at its victim. 0 (the default) turns it off; 10 to 50 is usual.
    #[serde(default = "default_identical_qps")]
    pub identical_qps: u32,
    /// Identical questions at once above that rate. Default: twice `identical_qps`.
    #[serde(default)]
    pub identical_burst: Option<u32>,
    /// Every `slip`-th query over a limit gets an empty answer with TC set (the client retries
    /// over TCP), the rest are dropped. 0 drops all, 1 truncates all. Default 2.
    #[serde(default = "default_slip")]
    pub slip: u32,
    /// Client prefixes never limited: the NAT address of a VLAN, whose one address is a whole
    /// office. Default: the host itself (`127.0.0.0/8`, `::1`).
    #[serde(rename = "exempt", default)]
    pub(super) exempt_written: Option<Vec<Spanned<String>>>,
    /// `exempt` as prefixes, read by validation (not a key).
    #[serde(skip, default = "default_exempt")]
    pub exempt: Vec<IpNet>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            qps: default_client_qps(),
            burst: None,
            identical_qps: defaults::IDENTICAL_QPS,
            identical_burst: None,
            slip: default_slip(),
            exempt_written: None,
            exempt: default_exempt(),
        }
    }
}

impl RateLimitConfig {
    /// The client burst, its default applied.
    pub fn client_burst(&self) -> u32 {
        self.burst.unwrap_or(self.qps.saturating_mul(defaults::BURST_FACTOR))
    }

    /// The identical-question burst, its default applied.
    pub fn identical_burst(&self) -> u32 {
        self.identical_burst
            .unwrap_or(self.identical_qps.saturating_mul(defaults::BURST_FACTOR))
    }
}

fn default_client_qps() -> u32 {
    defaults::CLIENT_QPS
}
fn default_identical_qps() -> u32 {
    defaults::IDENTICAL_QPS
}
fn default_slip() -> u32 {
    defaults::SLIP
}
fn default_exempt() -> Vec<IpNet> {
    defaults::RATELIMIT_EXEMPT.to_vec()
}

/// `[log]`: the hit log (one JSON line per blocked or audited query). Allowed queries are never
/// logged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `"stderr"` (default), `"stdout"`, `"off"`, or a file path (relative to the config's directory).
    #[serde(default = "default_hits")]
    pub hits: HitsTarget,
    /// `full` (default), `truncated`, `hashed` or `none`.
    #[serde(default)]
    pub client_ip: ClientIpMode,
    /// Secret for `client_ip = "hashed"`, at least 16 characters. Keep it out of version control,
    /// or use `salt_file`.
    #[serde(default)]
    pub salt: Option<Spanned<String>>,
    /// A file holding the secret instead of `salt` (its content, trimmed, at least 16 characters),
    /// so that the config itself holds no secret and can be world-readable. Relative to the
    /// config's directory. It must not be readable or writable by others (`chmod o-rwx`), and must
    /// be readable by the user the daemon runs as (`run --user`), since reloads read it again. Not
    /// with `salt`.
    #[serde(default)]
    pub salt_file: Option<Spanned<PathBuf>>,
    /// What `salt_file` holds, trimmed, read when the config is loaded (not a key).
    #[serde(skip)]
    pub(super) salt_from_file: Option<String>,
    /// Hit log lines queued for the writer, shared out between the UDP worker threads (at least
    /// 2048 each); past it lines are dropped and counted. Default 8192.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// The format of the operational log on stderr (start, reloads, warnings; not the hit log,
    /// which is always JSON lines): `"text"` (default; coloured only on a terminal) or `"json"`,
    /// one object per line, for a log collector. The environment variable `SINKHOLE_LOG_FORMAT`
    /// (`text` or `json`) wins over this key. Read at start only.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            hits: default_hits(),
            client_ip: ClientIpMode::Full,
            salt: None,
            salt_file: None,
            salt_from_file: None,
            queue: default_queue(),
            format: LogFormat::Text,
        }
    }
}

impl LogConfig {
    /// The secret client addresses are hashed with: `salt`, or what `salt_file` holds.
    pub fn hash_salt(&self) -> Option<&str> {
        self.salt
            .as_ref()
            .map(|salt| salt.get_ref().as_str())
            .or(self.salt_from_file.as_deref())
    }
}

fn default_hits() -> HitsTarget {
    HitsTarget::Stderr
}
fn default_queue() -> usize {
    defaults::LOG_QUEUE
}

/// The format of the operational log (`log.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format: use \"text\" or \"json\"")),
        }
    }
}

/// Reads a client prefix as an operator writes it (`"10.0.0.0/8"`, `"fc00::/7"`), with a message
/// that says what is wrong with it rather than "invalid IP address syntax". Host bits may be set
/// (`10.1.2.3/8` is `10.0.0.0/8`): the prefix is what counts. Prefixes are read as strings and
/// parsed by validation, so that every bad one is reported, each at its place.
pub(crate) fn parse_prefix(text: &str) -> Result<IpNet, String> {
    let Some((addr, len)) = text.split_once('/') else {
        return Err(match text.parse::<IpAddr>() {
            Ok(ip) => format!(
                "{text}: a prefix needs its length: write {text}/{} for this one address",
                if ip.is_ipv4() { 32 } else { 128 }
            ),
            Err(_) => format!("{text:?} is not a prefix like \"10.0.0.0/8\" or \"fc00::/7\""),
        });
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text}: {addr:?} is not an IPv4 or IPv6 address"))?;
    let len: u32 = len
        .parse()
        .map_err(|_| format!("{text}: prefix length {len:?} is not a number"))?;
    let (max, family) = if ip.is_ipv4() { (32, "IPv4") } else { (128, "IPv6") };
    if len > max {
        return Err(format!("{text}: prefix length {len} is longer than {max} for {family}"));
    }
    u8::try_from(len)
        .ok()
        .and_then(|len| IpNet::new(ip, len).ok())
        .ok_or_else(|| format!("{text}: not a prefix"))
}

fn no_prefixes() -> Spanned<Vec<Spanned<IpNet>>> {
    Spanned::new(0..0, Vec::new())
}

/// `[egress]`: where the egress companion puts the addresses of the names that policies with
/// `egress = true` block, and how hard it may work at it. Read at start only: changing it takes a
/// restart (a policy's `egress` flag itself follows reloads).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// The nftables table (family `inet`) that holds the sets. sinkhole never creates, flushes
    /// or changes the table or its rules: the firewall's configuration owns them
    /// (deploy/nftables/sinkhole.nft). Default `"sinkhole"`.
    #[serde(default = "default_egress_table")]
    pub table: Spanned<String>,
    /// The set of IPv4 addresses (`type ipv4_addr; flags interval, timeout`). Default
    /// `"blocked_v4"`.
    #[serde(default = "default_egress_set_v4")]
    pub set_v4: Spanned<String>,
    /// The set of IPv6 addresses (`type ipv6_addr; flags interval, timeout`). Default
    /// `"blocked_v6"`.
    #[serde(default = "default_egress_set_v6")]
    pub set_v6: Spanned<String>,
    /// Seconds an element stays in a set at least, whatever the answer's TTL (a TTL of 0 or 5
    /// would let the element vanish before the client's first packet). Default 300.
    #[serde(default = "default_egress_min_timeout")]
    pub min_timeout: u32,
    /// Seconds an element stays at most: an address a CDN gives another customer leaves the set
    /// this long after the name stopped resolving to it. Default 86400.
    #[serde(default = "default_egress_max_timeout")]
    pub max_timeout: u32,
    /// Prefixes whose addresses are never added (shared CDN ranges, the network's own services),
    /// in addition to those always left out: loopback, private (RFC 1918, CGNAT), link-local,
    /// ULA, multicast, unspecified and reserved ranges, and `server.allow`.
    #[serde(rename = "never_add", default)]
    pub(super) never_add_written: Vec<Spanned<String>>,
    /// `never_add` as prefixes, read by validation (not a key).
    #[serde(skip)]
    pub never_add: Vec<IpNet>,
    /// Names resolved per second at most (each name: one A and one AAAA query to the upstreams),
    /// so that a client asking thousands of blocked names cannot turn sinkhole into a flood of
    /// upstream queries. Default 20.
    #[serde(default = "default_egress_rate")]
    pub rate: u32,
    /// Blocked names that may wait to be resolved; past it new ones are dropped and counted
    /// (`sinkhole_egress_dropped_total`). Default 1024.
    #[serde(default = "default_egress_queue")]
    pub queue: usize,
    /// Seconds a name is not resolved again after it was, at least (and never while the
    /// elements it gave are still in the sets). Default 60.
    #[serde(default = "default_egress_dedup_window")]
    pub dedup_window: u32,
    /// Names remembered for that deduplication at most (the least recently seen are forgotten
    /// first). Default 65536.
    #[serde(default = "default_egress_max_names")]
    pub max_names: usize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            table: default_egress_table(),
            set_v4: default_egress_set_v4(),
            set_v6: default_egress_set_v6(),
            min_timeout: defaults::EGRESS_MIN_TIMEOUT,
            max_timeout: defaults::EGRESS_MAX_TIMEOUT,
            never_add_written: Vec::new(),
            never_add: Vec::new(),
            rate: defaults::EGRESS_RATE,
            queue: defaults::EGRESS_QUEUE,
            dedup_window: defaults::EGRESS_DEDUP_WINDOW,
            max_names: defaults::EGRESS_MAX_NAMES,
        }
    }
}

fn default_egress_table() -> Spanned<String> {
    Spanned::new(0..0, defaults::EGRESS_TABLE.to_string())
}
fn default_egress_set_v4() -> Spanned<String> {
    Spanned::new(0..0, defaults::EGRESS_SET_V4.to_string())
}
fn default_egress_set_v6() -> Spanned<String> {
    Spanned::new(0..0, defaults::EGRESS_SET_V6.to_string())
}
fn default_egress_min_timeout() -> u32 {
    defaults::EGRESS_MIN_TIMEOUT
}
fn default_egress_max_timeout() -> u32 {
    defaults::EGRESS_MAX_TIMEOUT
}
fn default_egress_rate() -> u32 {
    defaults::EGRESS_RATE
}
fn default_egress_queue() -> usize {
    defaults::EGRESS_QUEUE
}
fn default_egress_dedup_window() -> u32 {
    defaults::EGRESS_DEDUP_WINDOW
}
fn default_egress_max_names() -> usize {
    defaults::EGRESS_MAX_NAMES
}

impl Config {
    /// Whether some policy publishes its blocks to the egress sets: the companion runs, and keeps
    /// CAP_NET_ADMIN, only then.
    pub fn egress_used(&self) -> bool {
        self.policies.iter().any(|p| p.egress)
    }
}

#[cfg(test)]
mod upstream_addr_tests {
    use super::*;

    fn parse(text: &str) -> Result<UpstreamAddr, String> {
        text.parse()
    }

    fn tls(name: &str) -> UpstreamProtocol {
        UpstreamProtocol::Tls { name: name.into() }
    }

    #[test]
    fn plain_addresses_keep_their_forms() {
        let plain = parse("192.0.2.1").unwrap();
        assert_eq!(plain.addr, "192.0.2.1:53".parse().unwrap());
        assert_eq!(plain.protocol, UpstreamProtocol::Plain);
        assert_eq!(plain.text, "192.0.2.1:53");
        assert_eq!(
            parse("[2001:db8::1]:5353").unwrap().addr,
            "[2001:db8::1]:5353".parse().unwrap()
        );
    }

    #[test]
    fn tls_servers_take_a_name_a_port_and_the_address_to_connect_to() {
        let named = parse("tls://dns.example.net#192.0.2.1").unwrap();
        assert_eq!(named.addr, "192.0.2.1:853".parse().unwrap());
        assert_eq!(named.protocol, tls("dns.example.net"));
        assert_eq!(named.text, "tls://dns.example.net#192.0.2.1");
        let port = parse("tls://dns.example.net:8853#2001:db8::1").unwrap();
        assert_eq!(port.addr, "[2001:db8::1]:8853".parse().unwrap());
        // An IP host is checked as an IP and connected to as it is.
        let ip = parse("tls://192.0.2.9").unwrap();
        assert_eq!(
            (ip.addr, ip.protocol),
            ("192.0.2.9:853".parse().unwrap(), tls("192.0.2.9"))
        );
        let v6 = parse("tls://[2001:db8::9]:853").unwrap();
        assert_eq!(
            (v6.addr, v6.protocol),
            ("[2001:db8::9]:853".parse().unwrap(), tls("2001:db8::9"))
        );
    }

    #[test]
    fn https_servers_take_a_path_or_dns_query() {
        let https = parse("https://doh.example.net/custom/path#192.0.2.2").unwrap();
        assert_eq!(https.addr, "192.0.2.2:443".parse().unwrap());
        assert_eq!(
            https.protocol,
            UpstreamProtocol::Https {
                name: "doh.example.net".into(),
                path: "/custom/path".into()
            }
        );
        let default = parse("https://doh.example.net:8443#192.0.2.2").unwrap();
        assert_eq!(default.addr.port(), 8443);
        assert!(matches!(default.protocol, UpstreamProtocol::Https { path, .. } if path == "/dns-query"));
    }

    #[test]
    fn malformed_encrypted_servers_say_what_is_wrong() {
        let no_ip = parse("tls://dns.example.net").unwrap_err();
        assert!(no_ip.contains("tls://dns.example.net#IP"), "{no_ip}");
        let no_ip = parse("https://doh.example.net/q").unwrap_err();
        assert!(no_ip.contains("https://doh.example.net/q#IP"), "{no_ip}");
        assert!(
            parse("tls://dns.example.net#not-an-ip")
                .unwrap_err()
                .contains("not an IP address")
        );
        assert!(parse("tls://dns.example.net:99999#192.0.2.1").is_err());
        assert!(
            parse("tls://dns.example.net/path#192.0.2.1")
                .unwrap_err()
                .contains("no path")
        );
        assert!(
            parse("tls://bad_name!#192.0.2.1")
                .unwrap_err()
                .contains("not a host name")
        );
        assert!(parse("quic://dns.example.net#192.0.2.1").is_err());
    }
}
