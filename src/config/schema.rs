//! The TOML configuration: schema, defaults and validation, with `file:line:col` errors.
//!
//! This is the configuration reference: every key is documented where it is defined, with its
//! default. Parsing checks everything that can be checked from the text alone (types, addresses,
//! prefixes, answer kinds, dates, references between sections) and reads `log.salt_file`, a secret
//! whose file mode is part of what makes it valid; `state::build` then compiles the lists and
//! policies and reports problems found on disk (an unreadable list file) against the same spans.
//! A config that loads is a config that runs.
//!
//! Nothing here touches the network or the packet path.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::answer::BlockAnswer;

/// The configuration compiled into the binary: what `sinkhole run` uses without `-c`.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// Where a configuration came from, kept to turn byte spans into `file:line:col`.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file path as given, or `<embedded default>`.
    pub name: String,
    /// The directory relative list paths are resolved against (the config file's own).
    pub dir: PathBuf,
    /// The text, for line and column numbers.
    pub text: String,
}

impl Origin {
    /// `name:line:col` of a byte offset.
    pub fn locate(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{col}", self.name)
    }

    /// An error at a span of this config.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: self.locate(span.start),
            message: message.into(),
        }
    }
}

/// One problem found in a config, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// `file:line:col`.
    pub location: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Why a configuration cannot be used. The old state keeps serving when a reload fails on one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the config: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The config has errors, each located at `file:line:col`.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl From<Diagnostic> for ConfigError {
    fn from(d: Diagnostic) -> Self {
        ConfigError::Invalid(vec![d])
    }
}

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
    /// Where this config came from (not a key).
    #[serde(skip_deserializing, default = "Origin::embedded")]
    pub origin: Origin,
}

impl Origin {
    fn embedded() -> Origin {
        Origin {
            name: "<embedded default>".into(),
            dir: PathBuf::from("."),
            text: EMBEDDED_DEFAULT.into(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to answer DNS on, each over UDP and TCP. Default `["127.0.0.1:5353"]`.
    #[serde(default = "default_listen")]
    pub listen: Vec<Spanned<SocketAddr>>,
    /// Address of the Prometheus endpoint (`/metrics`), or `"off"`. Default `"127.0.0.1:9153"`.
    #[serde(default = "default_metrics", deserialize_with = "metrics_addr")]
    pub metrics: Option<SocketAddr>,
    /// Client prefixes that may query at all; others get REFUSED. Default: loopback, RFC 1918,
    /// ULA (fc00::/7) and link-local.
    #[serde(default = "default_allow")]
    pub allow: Spanned<Vec<IpNet>>,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            metrics: default_metrics(),
            allow: default_allow(),
            threads: None,
            tcp_idle_timeout: default_tcp_idle(),
            tcp_io_timeout: default_tcp_io_timeout(),
            tcp_max_connections: default_tcp_max_connections(),
            tcp_max_connections_per_client: default_tcp_max_per_client(),
            tcp_pipeline: default_tcp_pipeline(),
            tcp_buffer: default_tcp_buffer(),
            max_inflight: default_max_inflight(),
            max_udp_payload: default_max_udp_payload(),
        }
    }
}

fn default_listen() -> Vec<Spanned<SocketAddr>> {
    vec![Spanned::new(0..0, SocketAddr::from(([127, 0, 0, 1], 5353)))]
}
fn default_metrics() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9153)))
}
fn default_allow() -> Spanned<Vec<IpNet>> {
    let prefixes = [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|p| p.parse().ok())
    .collect();
    Spanned::new(0..0, prefixes)
}
fn default_tcp_idle() -> u64 {
    10
}
fn default_tcp_io_timeout() -> u64 {
    5
}
fn default_tcp_max_connections() -> usize {
    256
}
fn default_tcp_max_per_client() -> usize {
    32
}
fn default_tcp_pipeline() -> usize {
    16
}
fn default_tcp_buffer() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_max_inflight() -> usize {
    4096
}
fn default_max_udp_payload() -> Spanned<u16> {
    Spanned::new(0..0, crate::wire::EDNS_PAYLOAD)
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
    /// Resolvers to forward to, in order of preference (`"192.0.2.1"` means port 53). Default:
    /// the nameservers of /etc/resolv.conf.
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
    #[serde(default = "default_true")]
    pub case_randomization: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: None,
            timeout_ms: default_timeout_ms(),
            max_inflight: default_upstream_inflight(),
            case_randomization: true,
        }
    }
}

fn default_timeout_ms() -> u64 {
    1500
}
fn default_upstream_inflight() -> Spanned<usize> {
    Spanned::new(0..0, 4096)
}
fn default_true() -> bool {
    true
}

/// An upstream address: `ip:port`, `[v6]:port`, or an IP alone for port 53.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamAddr(pub SocketAddr);

impl FromStr for UpstreamAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<SocketAddr>()
            .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map(UpstreamAddr)
            .map_err(|_| format!("{s:?} is not an upstream address (ip, ip:port or [ipv6]:port)"))
    }
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
    #[serde(default)]
    pub min_ttl: u32,
    /// And at most this many. Default 86400.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u32,
    /// Negative answers (NXDOMAIN, NODATA) at most this many seconds (RFC 2308). Default 3600.
    #[serde(default = "default_negative_max_ttl")]
    pub negative_max_ttl: u32,
    /// SERVFAIL answers from upstreams are kept this many seconds, 0 to 30. Default 0 (never).
    #[serde(default)]
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
            min_ttl: 0,
            max_ttl: default_max_ttl(),
            negative_max_ttl: default_negative_max_ttl(),
            servfail_ttl: 0,
            serve_stale: default_serve_stale(),
        }
    }
}

fn default_serve_stale() -> u32 {
    86_400
}

fn default_entries() -> usize {
    100_000
}
fn default_cache_bytes() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(64 << 20))
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
fn default_max_ttl() -> u32 {
    86_400
}
fn default_negative_max_ttl() -> u32 {
    3_600
}

/// `[lists.NAME]`: where one list's rules come from. All sources are merged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// List files (domains, hosts, `||domain^` lines), relative to the config file's directory.
    #[serde(default)]
    pub files: Vec<Spanned<PathBuf>>,
    /// Lists compiled into the binary, by name (`"tiktok"`).
    #[serde(default)]
    pub builtin: Vec<Spanned<String>>,
    /// Rules written inline, in any list line format.
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
}

/// Whether a policy answers with the block answer or only logs and counts what it would block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Block.
    #[default]
    Enforce,
    /// Log and count, answer normally: to see what a policy would do before switching it on.
    Audit,
}

impl Mode {
    /// The `mode` label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
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
    /// matching prefix; clients in no policy are never blocked.
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
    /// `enforce` (default) or `audit`.
    #[serde(default)]
    pub mode: Mode,
    /// Seconds block answers are cached by clients (record TTL and negative TTL). Default 10:
    /// short, so that an exception added by an admin takes effect at once.
    #[serde(default = "default_block_ttl")]
    pub block_ttl: u32,
    /// RFC 3339 time from which the policy blocks (`"2023-03-17T00:00:00+01:00"`). Optional.
    #[serde(default)]
    pub active_from: Option<Spanned<toml::Value>>,
    /// RFC 3339 time from which it no longer blocks. Optional.
    #[serde(default)]
    pub active_until: Option<Spanned<toml::Value>>,
}

fn default_answer() -> BlockAnswer {
    BlockAnswer::Nxdomain
}
fn default_block_ttl() -> u32 {
    10
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
    #[serde(default)]
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
    #[serde(default = "default_exempt")]
    pub exempt: Vec<IpNet>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            qps: default_client_qps(),
            burst: None,
            identical_qps: 0,
            identical_burst: None,
            slip: default_slip(),
            exempt: default_exempt(),
        }
    }
}

impl RateLimitConfig {
    /// The client burst, its default applied.
    pub fn client_burst(&self) -> u32 {
        self.burst.unwrap_or(self.qps.saturating_mul(2))
    }

    /// The identical-question burst, its default applied.
    pub fn identical_burst(&self) -> u32 {
        self.identical_burst.unwrap_or(self.identical_qps.saturating_mul(2))
    }
}

fn default_client_qps() -> u32 {
    1000
}
fn default_slip() -> u32 {
    2
}
fn default_exempt() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
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
    salt_from_file: Option<String>,
    /// Hit log lines queued for the writer, shared out between the UDP worker threads (at least
    /// 2048 each); past it lines are dropped and counted. Default 8192.
    #[serde(default = "default_queue")]
    pub queue: usize,
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
    8192
}

/// A policy's active window, as Unix seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Blocks from this time on, if set.
    pub from: Option<i64>,
    /// Blocks until just before this time, if set.
    pub until: Option<i64>,
}

impl Window {
    /// Whether the window holds the time `now` (Unix seconds).
    pub fn contains(self, now: i64) -> bool {
        self.from.is_none_or(|from| now >= from) && self.until.is_none_or(|until| now < until)
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Config::parse(Origin {
            name: path.display().to_string(),
            dir,
            text,
        })
    }

    /// The embedded default config.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(Origin::embedded())
    }

    /// Parses and validates config text. A text with no setting at all is an error: an empty
    /// file is a truncated write or the wrong path far more often than a wish for the defaults
    /// (those are what `sinkhole run` without `-c` gives), and it would stop all blocking.
    pub fn parse(origin: Origin) -> Result<Config, ConfigError> {
        let blank = origin
            .text
            .lines()
            .map(str::trim)
            .all(|l| l.is_empty() || l.starts_with('#'));
        if blank {
            return Err(origin
                .error(
                    0..0,
                    "the config is empty: it would block nothing and forward to /etc/resolv.conf. Write the \
                     settings (deploy/sinkhole.toml is a start), or run without -c for the embedded default",
                )
                .into());
        }
        let mut config: Config = toml::from_str(&origin.text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            origin.error(at..at, e.message().trim_end().to_string())
        })?;
        config.origin = origin;
        let mut errors = config.validate();
        if let Err(e) = config.read_salt_file() {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// The policy windows, parsed (validation guarantees they parse).
    pub fn window(&self, policy: &PolicyConfig) -> Window {
        Window {
            from: policy.active_from.as_ref().and_then(|v| timestamp(v.get_ref()).ok()),
            until: policy.active_until.as_ref().and_then(|v| timestamp(v.get_ref()).ok()),
        }
    }

    /// Resolves a path from the config (list file, hit log) against the config's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.origin.dir.join(path)
        }
    }

    /// The upstream servers: configured, or read from /etc/resolv.conf.
    pub fn upstream_servers(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        if let Some(servers) = &self.upstream.servers {
            return Ok(servers.get_ref().iter().map(|s| s.0).collect());
        }
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let own: Vec<SocketAddr> = self.server.listen.iter().map(|l| *l.get_ref()).collect();
        let servers: Vec<SocketAddr> = resolv_conf_nameservers(&text)
            .into_iter()
            .filter(|s| !own.contains(s))
            .collect();
        if servers.is_empty() {
            return Err(ConfigError::Invalid(vec![Diagnostic {
                location: self.origin.locate(0),
                message: "no upstream: /etc/resolv.conf names no usable nameserver; set \
                          [upstream] servers = [\"ip:port\", ...]"
                    .into(),
            }]));
        }
        Ok(servers)
    }

    fn validate(&self) -> Vec<Diagnostic> {
        let o = &self.origin;
        let mut errors = Vec::new();
        if self.server.listen.is_empty() {
            errors.push(o.error(0..0, "server.listen is empty: give at least one address"));
        }
        for listen in &self.server.listen {
            if listen.get_ref().port() == 0 {
                errors.push(o.error(listen.span(), "listen port 0: choose a fixed port"));
            }
        }
        let payload = &self.server.max_udp_payload;
        if !(512..=4096).contains(payload.get_ref()) {
            errors.push(o.error(payload.span(), "server.max_udp_payload must be between 512 and 4096"));
        }
        let server = &self.server;
        if server.tcp_idle_timeout == 0 || server.tcp_io_timeout == 0 {
            errors.push(o.error(
                0..0,
                "server.tcp_idle_timeout and server.tcp_io_timeout must be at least 1 second",
            ));
        }
        if server.tcp_max_connections == 0 || server.tcp_max_connections_per_client == 0 || server.tcp_pipeline == 0 {
            errors.push(o.error(
                0..0,
                "server.tcp_max_connections, tcp_max_connections_per_client and tcp_pipeline must be at least 1",
            ));
        }
        if server.tcp_buffer.0 < 1 << 16 {
            errors.push(o.error(
                0..0,
                "server.tcp_buffer must be at least 64 KiB (one answer of any size)",
            ));
        }
        if let Some(threads) = self.server.threads
            && !(1..=256).contains(&threads)
        {
            errors.push(o.error(0..0, "server.threads must be between 1 and 256"));
        }
        if let Some(servers) = &self.upstream.servers
            && servers.get_ref().is_empty()
        {
            errors.push(o.error(
                servers.span(),
                "upstream.servers is empty: name at least one resolver, or remove the key to use /etc/resolv.conf",
            ));
        }
        if !(10..=60_000).contains(&self.upstream.timeout_ms) {
            errors.push(o.error(0..0, "upstream.timeout_ms must be between 10 and 60000"));
        }
        if !(1..=1_000_000).contains(self.upstream.max_inflight.get_ref()) {
            errors.push(o.error(
                self.upstream.max_inflight.span(),
                "upstream.max_inflight must be between 1 and 1000000",
            ));
        }
        let rl = &self.ratelimit;
        for (key, value) in [
            ("qps", rl.qps),
            ("burst", rl.client_burst()),
            ("identical_qps", rl.identical_qps),
            ("identical_burst", rl.identical_burst()),
        ] {
            if value > 1_000_000 {
                errors.push(o.error(0..0, format!("ratelimit.{key} is at most 1000000")));
            }
        }
        if (rl.qps > 0 && rl.client_burst() == 0) || (rl.identical_qps > 0 && rl.identical_burst() == 0) {
            errors.push(o.error(0..0, "a ratelimit burst must be at least 1 where its rate is set"));
        }
        if self.cache.max_bytes.get_ref().0 < 1 << 20 {
            errors.push(o.error(self.cache.max_bytes.span(), "cache.max_bytes must be at least 1 MiB"));
        }
        if self.cache.serve_stale > 604_800 {
            errors.push(o.error(0..0, "cache.serve_stale is at most 604800 seconds (7 days)"));
        }
        if self.cache.servfail_ttl > 30 {
            errors.push(o.error(0..0, "cache.servfail_ttl is at most 30 seconds"));
        }
        if self.cache.min_ttl > self.cache.max_ttl {
            errors.push(o.error(0..0, "cache.min_ttl is above cache.max_ttl"));
        }
        for (name, list) in &self.lists {
            for builtin in &list.builtin {
                if crate::lists::builtin(builtin.get_ref()).is_none() {
                    errors.push(o.error(
                        builtin.span(),
                        format!(
                            "no builtin list {:?} (lists {name}): builtin lists are {}",
                            builtin.get_ref(),
                            crate::lists::builtin_names().join(", ")
                        ),
                    ));
                }
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for policy in &self.policies {
            let name = policy.name.get_ref();
            if name.is_empty() || name.len() > 64 || name.contains(|c: char| c.is_control()) {
                errors.push(o.error(policy.name.span(), "policy name must be 1 to 64 printable characters"));
            }
            if names.contains(&name.as_str()) {
                errors.push(o.error(policy.name.span(), format!("a policy {name:?} is defined twice")));
            }
            names.push(name);
            if policy.clients.get_ref().is_empty() {
                errors.push(o.error(
                    policy.clients.span(),
                    format!("policy {name:?} has no clients: it would apply to no one"),
                ));
            }
            for list in policy.block.iter().chain(&policy.allow) {
                if !self.lists.contains_key(list.get_ref()) {
                    errors.push(o.error(
                        list.span(),
                        format!(
                            "policy {name:?} names list {:?}, which no [lists.{}] defines",
                            list.get_ref(),
                            list.get_ref()
                        ),
                    ));
                }
            }
            for bound in [&policy.active_from, &policy.active_until].into_iter().flatten() {
                if let Err(message) = timestamp(bound.get_ref()) {
                    errors.push(o.error(bound.span(), message));
                }
            }
            let window = self.window(policy);
            if let (Some(from), Some(until)) = (window.from, window.until)
                && from >= until
            {
                errors.push(o.error(
                    policy.name.span(),
                    format!("policy {name:?}: active_until is not after active_from"),
                ));
            }
        }
        match (&self.log.salt, &self.log.salt_file) {
            (Some(_), Some(file)) => errors.push(o.error(
                file.span(),
                "log.salt and log.salt_file are both set: keep one (salt_file keeps the secret out of the config)",
            )),
            (Some(salt), None) if salt.get_ref().len() < 16 => {
                errors.push(o.error(salt.span(), "log.salt must be at least 16 characters"));
            }
            (None, None) if self.log.client_ip == ClientIpMode::Hashed => errors.push(o.error(
                0..0,
                "log.client_ip = \"hashed\" needs log.salt or log.salt_file (a secret of at least 16 characters)",
            )),
            _ => {}
        }
        if self.log.queue == 0 {
            errors.push(o.error(0..0, "log.queue must be at least 1"));
        }
        errors
    }

    /// Reads `log.salt_file` (when it is set without `salt`: `validate` reports both set) into the
    /// config, after checking that others cannot read or change it: a salt anyone can read hashes
    /// nothing away.
    fn read_salt_file(&mut self) -> Result<(), Diagnostic> {
        let Some(file) = self.log.salt_file.as_ref().filter(|_| self.log.salt.is_none()) else {
            return Ok(());
        };
        let path = self.resolve(file.get_ref());
        let fail = |message: String| self.origin.error(file.span(), message);
        let shown = path.display();
        let cannot_read = |e: std::io::Error| fail(format!("log.salt_file: cannot read {shown}: {e}"));
        // The mode of the file opened, not of whatever the path names a moment later.
        let mut opened = std::fs::File::open(&path).map_err(cannot_read)?;
        let mode = opened.metadata().map_err(cannot_read)?.permissions().mode();
        check_private(mode).map_err(|why| fail(format!("log.salt_file {shown}: {why}")))?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut opened, &mut text).map_err(cannot_read)?;
        let salt = text.trim();
        if salt.len() < 16 {
            return Err(fail(format!(
                "log.salt_file {shown} holds {} characters (trimmed); the salt must be at least 16",
                salt.len()
            )));
        }
        self.log.salt_from_file = Some(salt.to_owned());
        Ok(())
    }

    /// Problems worth telling the operator that do not stop the config: two policies claiming the
    /// same prefix, windows already over, a config that blocks nothing or refuses everyone.
    pub fn warnings(&self, now: i64) -> Vec<Diagnostic> {
        let mut warnings = Vec::new();
        if self.server.allow.get_ref().is_empty() {
            warnings.push(self.origin.error(
                self.server.allow.span(),
                "server.allow is empty: every client is refused",
            ));
        }
        if self.policies.iter().all(|p| p.block.is_empty()) {
            warnings.push(self.origin.error(
                0..0,
                "no policy blocks a list: sinkhole blocks nothing and forwards every query",
            ));
        }
        let mut seen: BTreeMap<IpNet, &str> = BTreeMap::new();
        for policy in &self.policies {
            let name = policy.name.get_ref();
            for prefix in policy.clients.get_ref() {
                let net = prefix.get_ref().trunc();
                if let Some(first) = seen.insert(net, name) {
                    warnings.push(self.origin.error(
                        prefix.span(),
                        format!(
                            "{net} is claimed by policy {first:?} and policy {name:?}: {first:?} (the first) applies"
                        ),
                    ));
                    seen.insert(net, first);
                }
            }
            if let Some(until) = self.window(policy).until
                && until <= now
            {
                warnings.push(self.origin.error(
                    policy.name.span(),
                    format!("policy {name:?}: its window ended already (active_until is past); it blocks nothing"),
                ));
            }
        }
        warnings
    }
}

/// Whether a file mode keeps a secret: no permission at all for others (`mode & 0o007 == 0`).
fn check_private(mode: u32) -> Result<(), String> {
    if mode & 0o007 == 0 {
        return Ok(());
    }
    Err(format!(
        "others may read or write it (mode {:04o}), and it holds a secret: chmod o-rwx it, and let the daemon's \
         user read it through its owner or group",
        mode & 0o7777
    ))
}

/// Unix seconds of an `active_from`/`active_until` value: an RFC 3339 string or a TOML
/// offset date-time, with an explicit offset (a ban starts at midnight somewhere in particular).
fn timestamp(value: &toml::Value) -> Result<i64, String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            return Err(format!(
                "expected a date-time like \"2023-03-17T00:00:00+01:00\", found a {}",
                other.type_str()
            ));
        }
    };
    text.parse::<jiff::Timestamp>().map(|t| t.as_second()).map_err(|e| {
        format!("{text:?} is not an RFC 3339 date-time with offset, like \"2023-03-17T00:00:00+01:00\" ({e})")
    })
}

/// The `nameserver` addresses of a resolv.conf text, on port 53.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // A scoped link-local address ("fe80::1%eth0") needs an interface that a plain
            // socket address cannot carry: skip it rather than forward into the void.
            words.next()?.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Origin {
            name: "test.toml".into(),
            dir: PathBuf::from("/etc/sinkhole"),
            text: text.into(),
        })
    }

    fn errors(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("config should not load:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    const ISSUE_EXAMPLE: &str = r#"
[server]
listen = ["127.0.0.1:5353"]
metrics = "127.0.0.1:9153"
allow = ["127.0.0.0/8", "10.0.0.0/8"]

[upstream]
servers = ["127.0.0.1:5300"]
timeout_ms = 1500

[cache]
entries = 100000

[lists.tiktok]
files = ["blocklists/tiktok.txt"]

[lists.exceptions]
files = ["blocklists/allow-example.txt"]

[[policy]]
name = "staff"
clients = ["10.0.0.0/8", "127.10.0.0/16"]
block = ["tiktok"]
allow = ["exceptions"]
answer = "nxdomain"
mode = "enforce"
active_from = "2023-03-17T00:00:00+01:00"
active_until = "2023-09-17T00:00:00+02:00"

[[policy]]
name = "comms-phones"
clients = ["10.50.0.0/24"]
block = []

[log]
hits = "stderr"
client_ip = "full"
"#;

    #[test]
    fn the_issue_example_loads_as_written() {
        let config = parse(ISSUE_EXAMPLE).expect("loads");
        assert_eq!(config.policies.len(), 2);
        assert_eq!(
            config.upstream_servers().expect("servers"),
            vec!["127.0.0.1:5300".parse().expect("addr")]
        );
        let window = config.window(&config.policies[0]);
        assert_eq!(window.from, Some(1_679_007_600));
        assert_eq!(window.until, Some(1_694_901_600));
        assert!(window.contains(1_680_000_000));
        assert!(!window.contains(1_694_901_600));
        assert_eq!(
            config.resolve(Path::new("blocklists/tiktok.txt")),
            PathBuf::from("/etc/sinkhole/blocklists/tiktok.txt")
        );
        assert!(config.warnings(1_680_000_000).is_empty());
        assert_eq!(config.warnings(1_700_000_000).len(), 1, "window over");
    }

    #[test]
    fn embedded_default_loads() {
        let config = Config::embedded().expect("the embedded default must load");
        assert_eq!(config.policies[0].name.get_ref(), "internal");
        assert_eq!(config.server.metrics, default_metrics());
    }

    #[test]
    fn unknown_keys_are_located() {
        let e = errors("[server]\nlisten = [\"127.0.0.1:53\"]\nlistne = []\n");
        assert!(e.starts_with("test.toml:3:1: "), "{e}");
        assert!(e.contains("unknown field `listne`"), "{e}");
    }

    #[test]
    fn bad_values_are_located() {
        let e = errors("[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/33\"]\n");
        assert!(e.starts_with("test.toml:3:"), "{e}");
        let e = errors("[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/8\"]\nanswer = \"nxdomian\"\n");
        assert!(e.starts_with("test.toml:4:10: "), "{e}");
        assert!(e.contains("expected nxdomain"), "{e}");
        let e = errors("[upstream]\nservers = [\"dns.example\"]\n");
        assert!(e.contains("is not an upstream address"), "{e}");
    }

    #[test]
    fn references_and_windows_are_checked() {
        let e = errors(
            "[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"tikotk\"]\nactive_from = \"2023-03-17\"\n",
        );
        assert!(e.contains("test.toml:4:10: policy \"x\" names list \"tikotk\""), "{e}");
        assert!(e.contains("test.toml:5:15: \"2023-03-17\" is not an RFC 3339"), "{e}");
        let e = errors(
            "[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/8\"]\nactive_from = 2023-09-01T00:00:00Z\nactive_until = 2023-03-01T00:00:00Z\n",
        );
        assert!(e.contains("active_until is not after active_from"), "{e}");
    }

    #[test]
    fn native_toml_datetimes_work() {
        let config =
            parse("[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/8\"]\nactive_from = 2023-03-17T00:00:00+01:00\n")
                .expect("loads");
        assert_eq!(config.window(&config.policies[0]).from, Some(1_679_007_600));
    }

    #[test]
    fn duplicate_prefixes_warn() {
        let config = parse(
            "[lists.l]\ndomains = [\"x.example\"]\n[[policy]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"l\"]\n[[policy]]\nname = \"b\"\nclients = [\"10.1.2.3/8\"]\n",
        )
        .expect("loads");
        let warnings = config.warnings(0);
        assert_eq!(warnings.len(), 1);
        let text = warnings[0].to_string();
        assert!(
            text.starts_with("test.toml:9:12: 10.0.0.0/8 is claimed by policy \"a\" and policy \"b\""),
            "{text}"
        );
    }

    #[test]
    fn an_empty_config_is_an_error_and_one_that_blocks_nothing_or_refuses_all_warns() {
        for text in ["", "\n  \n", "# only a comment\n\n# another\n"] {
            let e = errors(text);
            assert!(e.starts_with("test.toml:1:1: the config is empty"), "{e}");
        }
        let config = parse("[server]\nallow = []\n").expect("loads: a choice, if an odd one");
        let warnings: Vec<String> = config.warnings(0).iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("test.toml:2:9: server.allow is empty"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("no policy blocks a list"), "{warnings:?}");
    }

    #[test]
    fn sizes_read_as_operators_write_them() {
        let bytes = |text: &str| text.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(bytes("64MiB"), Ok(64 << 20));
        assert_eq!(bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(bytes("1000"), Ok(1000));
        assert!(bytes("64 mb").unwrap_err().contains("not a size unit"));
        assert!(bytes("MiB").is_err());
        assert!(bytes("99999999999999 GiB").is_err(), "overflow is an error, not a wrap");
        let config = parse("[cache]\nmax_bytes = 33554432\n").expect("an integer is bytes");
        assert_eq!(config.cache.max_bytes.get_ref().to_string(), "32 MiB");
        let config = parse("[cache]\nmax_bytes = \"64 MB\"\n").expect("a string with a unit");
        assert_eq!(config.cache.max_bytes.get_ref().0, 64_000_000);
        let e = errors("[cache]\nmax_bytes = \"100KiB\"\n");
        assert!(
            e.starts_with("test.toml:2:13: cache.max_bytes must be at least 1 MiB"),
            "{e}"
        );
    }

    #[test]
    fn hashed_needs_a_salt() {
        assert!(errors("[log]\nclient_ip = \"hashed\"\n").contains("needs log.salt"));
        assert!(errors("[log]\nclient_ip = \"hashed\"\nsalt = \"short\"\n").contains("at least 16"));
        parse("[log]\nclient_ip = \"hashed\"\nsalt = \"0123456789abcdef\"\n").expect("loads");
    }

    /// A config `[log]` section in a fresh temp dir holding a salt file `salt` with `content` and `mode`.
    fn with_salt_file(log: &str, content: &str, mode: u32) -> (PathBuf, Result<Config, ConfigError>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sinkhole-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("salt");
        std::fs::write(&path, content).expect("write the salt file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod the salt file");
        let config = Config::parse(Origin {
            name: "test.toml".into(),
            dir: dir.clone(),
            text: format!("[log]\nclient_ip = \"hashed\"\n{log}"),
        });
        (dir, config)
    }

    #[test]
    fn the_salt_may_come_from_a_private_file() {
        let (dir, config) = with_salt_file("salt_file = \"salt\"\n", "  a secret of the admins, 32 b\n", 0o640);
        let config = config.expect("a private salt file loads");
        assert_eq!(config.log.hash_salt(), Some("a secret of the admins, 32 b"), "trimmed");
        let _ = std::fs::remove_dir_all(dir);
        let inline = parse("[log]\nclient_ip = \"hashed\"\nsalt = \"0123456789abcdef\"\n").expect("loads");
        assert_eq!(inline.log.hash_salt(), Some("0123456789abcdef"));
    }

    #[test]
    fn a_salt_file_others_may_read_or_write_is_refused() {
        for mode in [0o644, 0o602, 0o601, 0o604, 0o666] {
            let (dir, config) = with_salt_file("salt_file = \"salt\"\n", "0123456789abcdef0123", mode);
            let e = config.expect_err("others have access").to_string();
            assert!(e.starts_with("test.toml:3:13: log.salt_file "), "{mode:o}: {e}");
            assert!(
                e.contains(&format!("(mode 0{mode:o})")) && e.contains("chmod o-rwx"),
                "{e}"
            );
            let _ = std::fs::remove_dir_all(dir);
        }
        for mode in [0o600, 0o640, 0o660, 0o400] {
            let (dir, config) = with_salt_file("salt_file = \"salt\"\n", "0123456789abcdef0123", mode);
            assert!(config.is_ok(), "{mode:o}: {:?}", config.err().map(|e| e.to_string()));
            let _ = std::fs::remove_dir_all(dir);
        }
        assert!(
            check_private(0o100640).is_ok(),
            "the file type bits are not permissions"
        );
    }

    #[test]
    fn a_salt_file_must_hold_a_long_enough_salt_and_exist() {
        let (dir, config) = with_salt_file("salt_file = \"salt\"\n", "  short  \n", 0o600);
        let e = config.expect_err("too short").to_string();
        assert!(
            e.contains("holds 5 characters (trimmed); the salt must be at least 16"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
        let (dir, config) = with_salt_file("salt_file = \"missing\"\n", "", 0o600);
        let e = config.expect_err("no such file").to_string();
        assert!(e.starts_with("test.toml:3:13: log.salt_file: cannot read "), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn salt_and_salt_file_exclude_each_other() {
        let both = "salt = \"0123456789abcdef\"\nsalt_file = \"salt\"\n";
        let (dir, config) = with_salt_file(both, "0123456789abcdef0123", 0o600);
        let e = config.expect_err("both set").to_string();
        assert!(
            e.starts_with("test.toml:4:13: log.salt and log.salt_file are both set"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn resolv_conf() {
        let servers = resolv_conf_nameservers(
            "# comment\nnameserver 192.0.2.1\nsearch example\nnameserver fe80::1%eth0\nnameserver bogus\n",
        );
        assert_eq!(servers, vec!["192.0.2.1:53".parse().expect("a")]);
    }
}
