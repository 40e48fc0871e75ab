//! Validation: what a deserialised config must satisfy to run, each problem reported at the key
//! it is about; what validation builds for the runtime (the policies' windows, the salt read from
//! `log.salt_file`); and the warnings, about configs that run but most likely not as meant.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::{Range, RangeInclusive};
use std::os::unix::fs::PermissionsExt;

use ipnet::IpNet;

use toml::Spanned;

use super::keys::KeySpans;
use super::{ClientIpMode, Config, Diagnostic, UpstreamProtocol, parse_prefix};
use crate::policy::{HourRange, Mode, Phase, PhaseId, Schedule, Window};

/// One problem: where it is in the config text, and what is wrong.
pub(super) type Problem = (Range<usize>, String);

/// Longest `server.identity` / `server.version`: one TXT character-string.
const MAX_CHAOS_TEXT: usize = 255;
/// `server.max_udp_payload`: the classic DNS minimum up to what any EDNS client takes.
const UDP_PAYLOAD: RangeInclusive<u16> = 512..=4096;
/// `server.threads`.
const THREADS: RangeInclusive<usize> = 1..=256;
/// `server.tcp_buffer` at least: one answer of the largest size.
const MIN_TCP_BUFFER: u64 = 1 << 16;
/// `upstream.timeout_ms`.
const UPSTREAM_TIMEOUT_MS: RangeInclusive<u64> = 10..=60_000;
/// `upstream.max_inflight`.
const UPSTREAM_INFLIGHT: RangeInclusive<usize> = 1..=1_000_000;
/// Rates and bursts of `[ratelimit]` at most.
const MAX_RATE: u32 = 1_000_000;
/// `cache.max_bytes` at least.
const MIN_CACHE_BYTES: u64 = 1 << 20;
/// `cache.serve_stale` at most: a week.
const MAX_SERVE_STALE: u32 = 604_800;
/// `cache.servfail_ttl` at most.
const MAX_SERVFAIL_TTL: u32 = 30;
/// Characters in a policy name at most (it goes into EDE texts and metric labels).
const MAX_POLICY_NAME: usize = 64;
/// Most phases one policy may have: a hit carries its phase as a [`PhaseId`], and a timeline
/// longer than this is a config written wrong.
const MAX_PHASES: usize = 16;
/// `lists.*.refresh` at least.
const MIN_LIST_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);
/// `lists.*.timeout`.
const LIST_TIMEOUT: RangeInclusive<std::time::Duration> =
    std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600);
/// `lists.*.max_bytes` at least.
const MIN_LIST_BYTES: u64 = 1 << 10;
/// `server.list_wait` at most.
const MAX_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
/// Most hour ranges one `schedule` may have.
const MAX_HOUR_RANGES: usize = 16;
/// Characters of a salt at least.
const MIN_SALT: usize = 16;
/// `egress.min_timeout` and `egress.max_timeout`: a second up to a week.
const EGRESS_TIMEOUT: RangeInclusive<u32> = 1..=604_800;
/// `egress.rate`, names a second.
const EGRESS_RATE: RangeInclusive<u32> = 1..=10_000;
/// `egress.queue` and `egress.max_names`.
const EGRESS_SIZE: RangeInclusive<usize> = 1..=10_000_000;
/// Characters of an nftables table or set name at most (NFT_NAME_MAXLEN is 256 with its NUL).
const MAX_NFT_NAME: usize = 255;
/// `server.ddr_addresses` at most: two SVCB records with this many IPv6 hints and the longest
/// name still fit a 1232-byte answer.
pub(crate) const MAX_DDR_ADDRESSES: usize = 8;
/// Prefixes outside `server.allow` named in one warning at most.
const SHOWN_PARTS: usize = 4;

/// The problems found so far, located through the key index.
struct Problems<'a> {
    keys: &'a KeySpans,
    found: Vec<Problem>,
}

impl Problems<'_> {
    /// A problem at a span.
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.found.push((span, message.into()));
    }

    /// A problem at the value of a key, by its path (`server.tcp_pipeline`).
    fn key(&mut self, path: &str, message: impl Into<String>) {
        let span = self.keys.of(path);
        self.at(span, message);
    }

    /// Prefixes as written, parsed; each bad one is a problem at its place.
    fn prefixes(&mut self, written: &[Spanned<String>]) -> Vec<Spanned<IpNet>> {
        written
            .iter()
            .filter_map(|text| match parse_prefix(text.get_ref()) {
                Ok(net) => Some(Spanned::new(text.span(), net)),
                Err(message) => {
                    self.at(text.span(), message);
                    None
                }
            })
            .collect()
    }
}

/// The prefix lists of a config, parsed by validation.
struct Prefixes {
    /// `server.allow`, if written.
    allow: Option<Spanned<Vec<IpNet>>>,
    /// `ratelimit.exempt`, if written.
    exempt: Option<Vec<IpNet>>,
    /// `server.trusted_relays`.
    trusted_relays: Vec<IpNet>,
    /// Each policy's `clients`.
    clients: Vec<Spanned<Vec<Spanned<IpNet>>>>,
}

impl Config {
    /// Checks everything, and fills in what validation builds: each policy's `window` and the
    /// salt of `log.salt_file`. Returns every problem found (unsorted).
    pub(super) fn validate(&mut self) -> Vec<Problem> {
        let mut problems = Problems {
            keys: &self.keys,
            found: Vec::new(),
        };
        let prefixes = self.read_prefixes(&mut problems);
        self.check_server(&mut problems);
        self.check_upstream(&mut problems);
        self.check_ratelimit(&mut problems);
        self.check_cache(&mut problems);
        self.check_lists(&mut problems);
        self.check_list_urls(&mut problems);
        let windows = self.check_policies(&mut problems);
        let schedules = self.check_schedules(&mut problems);
        self.check_shared_prefixes(&prefixes.clients, &windows, &schedules, &mut problems);
        self.check_log(&mut problems);
        let never_add = self.check_egress(&mut problems);
        let salt = self.read_salt_file();
        let mut found = problems.found;
        if let Some(allow) = prefixes.allow {
            self.server.allow = allow;
        }
        if let Some(exempt) = prefixes.exempt {
            self.ratelimit.exempt = exempt;
        }
        self.server.trusted_relays = prefixes.trusted_relays;
        self.egress.never_add = never_add;
        for ((policy, (window, mode, timeline)), clients) in self.policies.iter_mut().zip(windows).zip(prefixes.clients)
        {
            policy.window = window;
            policy.mode = mode;
            policy.timeline = timeline;
            policy.clients = clients;
        }
        for (policy, weekly) in self.policies.iter_mut().zip(schedules) {
            policy.weekly = weekly;
        }
        match salt {
            Ok(salt) => self.log.salt_from_file = salt,
            Err(problem) => found.push(problem),
        }
        found
    }

    fn read_prefixes(&self, p: &mut Problems<'_>) -> Prefixes {
        let allow = self.server.allow_written.as_ref().map(|written| {
            let nets = p.prefixes(written.get_ref());
            Spanned::new(written.span(), nets.into_iter().map(Spanned::into_inner).collect())
        });
        let exempt = self
            .ratelimit
            .exempt_written
            .as_ref()
            .map(|written| p.prefixes(written).into_iter().map(Spanned::into_inner).collect());
        let clients = self
            .policies
            .iter()
            .map(|policy| {
                Spanned::new(
                    policy.clients_written.span(),
                    p.prefixes(policy.clients_written.get_ref()),
                )
            })
            .collect();
        let trusted_relays = p
            .prefixes(&self.server.trusted_relays_written)
            .into_iter()
            .map(|net| net.into_inner().trunc())
            .collect();
        Prefixes {
            allow,
            exempt,
            clients,
            trusted_relays,
        }
    }

    fn check_server(&self, p: &mut Problems<'_>) {
        let server = &self.server;
        if server.listen.is_empty() {
            p.key("server.listen", "server.listen is empty: give at least one address");
        }
        for listen in &server.listen {
            if listen.get_ref().port() == 0 {
                p.at(listen.span(), "listen port 0: choose a fixed port");
            }
        }
        self.check_server_tls(p);
        let payload = &server.max_udp_payload;
        if !UDP_PAYLOAD.contains(payload.get_ref()) {
            p.at(
                payload.span(),
                format!(
                    "server.max_udp_payload must be between {} and {}",
                    UDP_PAYLOAD.start(),
                    UDP_PAYLOAD.end()
                ),
            );
        }
        for (key, text) in [("identity", &server.identity), ("version", &server.version)] {
            if text.as_ref().is_some_and(|t| t.len() > MAX_CHAOS_TEXT) {
                p.key(
                    &format!("server.{key}"),
                    format!("server.{key} is longer than {MAX_CHAOS_TEXT} bytes, the most one TXT string holds"),
                );
            }
        }
        for (key, seconds) in [
            ("tcp_idle_timeout", server.tcp_idle_timeout),
            ("tcp_io_timeout", server.tcp_io_timeout),
            ("tls_handshake_timeout", server.tls_handshake_timeout),
        ] {
            if seconds == 0 {
                p.key(
                    &format!("server.{key}"),
                    format!("server.{key} must be at least 1 second"),
                );
            }
        }
        for (key, count) in [
            ("tcp_max_connections", server.tcp_max_connections),
            ("tcp_max_connections_per_client", server.tcp_max_connections_per_client),
            ("tcp_pipeline", server.tcp_pipeline),
            ("max_inflight", server.max_inflight),
        ] {
            if count == 0 {
                p.key(&format!("server.{key}"), format!("server.{key} must be at least 1"));
            }
        }
        if server.tcp_buffer.0 < MIN_TCP_BUFFER {
            p.key(
                "server.tcp_buffer",
                "server.tcp_buffer must be at least 64 KiB (one answer of any size)",
            );
        }
        self.check_ddr(p);
        if let Some(threads) = server.threads
            && !THREADS.contains(&threads)
        {
            p.key(
                "server.threads",
                format!(
                    "server.threads must be between {} and {}",
                    THREADS.start(),
                    THREADS.end()
                ),
            );
        }
    }

    /// `ddr_name` must be a host name a certificate can hold; `ddr_addresses` real, few
    /// addresses: they go into every SVCB record, which must fit one UDP answer.
    fn check_ddr(&self, p: &mut Problems<'_>) {
        let server = &self.server;
        if let Some(name) = &server.ddr_name
            && let Err(message) = check_host_name(name.get_ref())
        {
            p.at(name.span(), format!("server.ddr_name: {message}"));
        }
        if let Some(addresses) = &server.ddr_addresses {
            if addresses.get_ref().len() > MAX_DDR_ADDRESSES {
                p.at(
                    addresses.span(),
                    format!("server.ddr_addresses: at most {MAX_DDR_ADDRESSES} addresses"),
                );
            }
            for address in addresses.get_ref() {
                let ip = address.get_ref();
                if ip.is_unspecified() || ip.is_multicast() {
                    p.at(
                        address.span(),
                        format!(
                            "server.ddr_addresses: {ip} is not an address a client can reach; give the resolver's own"
                        ),
                    );
                }
            }
        }
    }

    /// DoT and DoH listeners need a certificate and its key (whether the pair loads is checked
    /// where it is loaded: at start, on reload, and by `sinkhole check`).
    fn check_server_tls(&self, p: &mut Problems<'_>) {
        let server = &self.server;
        for (key, addrs) in [("tls", &server.tls), ("https", &server.https)] {
            for addr in addrs {
                if addr.get_ref().port() == 0 {
                    p.at(addr.span(), format!("server.{key} port 0: choose a fixed port"));
                }
            }
            if !addrs.is_empty() && (server.certificate.is_none() || server.key.is_none()) {
                p.key(
                    &format!("server.{key}"),
                    format!(
                        "server.{key} needs server.certificate and server.key (PEM files): \
                         clients verify the server by its certificate"
                    ),
                );
            }
        }
    }

    fn check_upstream(&self, p: &mut Problems<'_>) {
        let upstream = &self.upstream;
        if let Some(servers) = &upstream.servers {
            if servers.get_ref().is_empty() {
                p.at(
                    servers.span(),
                    "upstream.servers is empty: name at least one resolver, or remove the key to use /etc/resolv.conf",
                );
            }
            for (i, server) in servers.get_ref().iter().enumerate() {
                // A tls:// or https:// upstream loops through sinkhole's own DoT or DoH listener.
                let listeners = match server.protocol {
                    UpstreamProtocol::Plain => ("listen", &self.server.listen),
                    UpstreamProtocol::Tls { .. } => ("tls", &self.server.tls),
                    UpstreamProtocol::Https { .. } => ("https", &self.server.https),
                };
                if let Some(listen) = reached_by(server.addr, listeners.1) {
                    p.key(
                        &format!("upstream.servers[{i}]"),
                        format!(
                            "upstream {}: that is sinkhole itself (server.{} {listen}): every query forwarded \
                             there comes back to be forwarded again, until it times out. Name the resolver sinkhole \
                             forwards to, not sinkhole",
                            server.text, listeners.0
                        ),
                    );
                }
            }
        }
        if !UPSTREAM_TIMEOUT_MS.contains(&upstream.timeout_ms) {
            p.key(
                "upstream.timeout_ms",
                format!(
                    "upstream.timeout_ms must be between {} and {}",
                    UPSTREAM_TIMEOUT_MS.start(),
                    UPSTREAM_TIMEOUT_MS.end()
                ),
            );
        }
        if !UPSTREAM_INFLIGHT.contains(upstream.max_inflight.get_ref()) {
            p.at(
                upstream.max_inflight.span(),
                format!(
                    "upstream.max_inflight must be between {} and {}",
                    UPSTREAM_INFLIGHT.start(),
                    UPSTREAM_INFLIGHT.end()
                ),
            );
        }
    }

    /// The listener an upstream address would reach, if any: forwarding there is a loop.
    pub(super) fn listener_reached_by(&self, upstream: SocketAddr) -> Option<SocketAddr> {
        reached_by(upstream, &self.server.listen)
    }

    fn check_ratelimit(&self, p: &mut Problems<'_>) {
        let rl = &self.ratelimit;
        for (rate_key, rate, burst_key, burst) in [
            ("qps", rl.qps, "burst", rl.burst),
            ("identical_qps", rl.identical_qps, "identical_burst", rl.identical_burst),
        ] {
            if rate > MAX_RATE {
                p.key(
                    &format!("ratelimit.{rate_key}"),
                    format!("ratelimit.{rate_key} is at most {MAX_RATE}"),
                );
            }
            match burst {
                Some(burst) if burst > MAX_RATE => {
                    p.key(
                        &format!("ratelimit.{burst_key}"),
                        format!("ratelimit.{burst_key} is at most {MAX_RATE}"),
                    );
                }
                Some(0) if rate > 0 => p.key(
                    &format!("ratelimit.{burst_key}"),
                    format!("ratelimit.{burst_key} must be at least 1 where ratelimit.{rate_key} is set"),
                ),
                None if rate <= MAX_RATE && rate.saturating_mul(super::defaults::BURST_FACTOR) > MAX_RATE => p.key(
                    &format!("ratelimit.{rate_key}"),
                    format!(
                        "ratelimit.{rate_key} = {rate} makes its default burst ({} times the rate) more than \
                         {MAX_RATE}: set ratelimit.{burst_key}",
                        super::defaults::BURST_FACTOR
                    ),
                ),
                _ => {}
            }
        }
    }

    fn check_cache(&self, p: &mut Problems<'_>) {
        let cache = &self.cache;
        if cache.max_bytes.get_ref().0 < MIN_CACHE_BYTES {
            p.at(cache.max_bytes.span(), "cache.max_bytes must be at least 1 MiB");
        }
        if cache.serve_stale > MAX_SERVE_STALE {
            p.key(
                "cache.serve_stale",
                format!("cache.serve_stale is at most {MAX_SERVE_STALE} seconds (7 days)"),
            );
        }
        if cache.servfail_ttl > MAX_SERVFAIL_TTL {
            p.key(
                "cache.servfail_ttl",
                format!("cache.servfail_ttl is at most {MAX_SERVFAIL_TTL} seconds"),
            );
        }
        if cache.min_ttl > cache.max_ttl {
            p.key(
                "cache.min_ttl",
                format!(
                    "cache.min_ttl ({}) is above cache.max_ttl ({})",
                    cache.min_ttl, cache.max_ttl
                ),
            );
        }
    }

    /// Builtin names, and list files: a URL is not a file, and a file must be there to be read
    /// (checked here, so that `check` lists a missing file beside the config's other errors;
    /// `state::build` reads it).
    fn check_lists(&self, p: &mut Problems<'_>) {
        for (name, list) in &self.lists {
            for builtin in &list.builtin {
                if crate::lists::builtin(builtin.get_ref()).is_none() {
                    p.at(
                        builtin.span(),
                        format!(
                            "no builtin list {:?} (lists {name}): builtin lists are {}",
                            builtin.get_ref(),
                            crate::lists::builtin_names().join(", ")
                        ),
                    );
                }
            }
            for range in &list.ip {
                if let Err(message) = crate::lists::parse_range(range.get_ref()) {
                    p.at(range.span(), format!("list {name}: ip: {message}"));
                }
            }
            for file in &list.files {
                let written = file.get_ref().display().to_string();
                if written.contains("://") {
                    p.at(
                        file.span(),
                        format!(
                            "list {name}: {written:?} is a URL, and `files` takes paths on this host: put it in \
                             `urls` to have sinkhole fetch it and keep it current: urls = [{written:?}]"
                        ),
                    );
                    continue;
                }
                let path = self.resolve(file.get_ref());
                // One byte read, not the whole list: enough to see a missing file, a directory
                // or a file the daemon may not read, with the error the read in `state` would give.
                let readable = std::fs::File::open(&path).and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 1]));
                if let Err(e) = readable {
                    p.at(file.span(), format!("list {name}: cannot read {}: {e}", path.display()));
                }
            }
        }
    }

    /// The URL lists' keys: each URL http(s) with a host, named once; durations and shares in
    /// range; the URL settings only on a list that has URLs.
    fn check_list_urls(&self, p: &mut Problems<'_>) {
        for (name, list) in &self.lists {
            let mut seen: Vec<&str> = Vec::new();
            for url in &list.urls {
                let text = url.get_ref().as_str();
                match reqwest::Url::parse(text) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
                    Ok(_) => p.at(
                        url.span(),
                        format!("list {name}: {text:?} is not an http:// or https:// URL with a host"),
                    ),
                    Err(e) => p.at(url.span(), format!("list {name}: {text:?} is not a URL ({e})")),
                }
                if seen.contains(&text) {
                    p.at(url.span(), format!("list {name}: {text:?} is named twice"));
                }
                seen.push(text);
            }
            let spans = [
                list.refresh.as_ref().map(|v| ("refresh", v.span())),
                list.max_bytes.as_ref().map(|v| ("max_bytes", v.span())),
                list.timeout.as_ref().map(|v| ("timeout", v.span())),
                list.max_bad_share.as_ref().map(|v| ("max_bad_share", v.span())),
                list.max_shrink.as_ref().map(|v| ("max_shrink", v.span())),
            ];
            if list.urls.is_empty() {
                for (key, span) in spans.into_iter().flatten() {
                    p.at(
                        span,
                        format!("list {name}: {key} is about lists fetched by URL, and this one has no urls"),
                    );
                }
            }
            if let Some(refresh) = &list.refresh
                && refresh.get_ref().0 < MIN_LIST_REFRESH
            {
                p.at(refresh.span(), format!("list {name}: refresh must be at least 1s"));
            }
            if let Some(timeout) = &list.timeout
                && !LIST_TIMEOUT.contains(&timeout.get_ref().0)
            {
                p.at(
                    timeout.span(),
                    format!("list {name}: timeout must be between 100ms and 1h"),
                );
            }
            if let Some(max) = &list.max_bytes
                && max.get_ref().0 < MIN_LIST_BYTES
            {
                p.at(max.span(), format!("list {name}: max_bytes must be at least 1 KiB"));
            }
            for share in [&list.max_bad_share, &list.max_shrink].into_iter().flatten() {
                if !(0.0..=1.0).contains(share.get_ref()) {
                    p.at(
                        share.span(),
                        format!("list {name}: a share is between 0 and 1 (0.1 is a tenth)"),
                    );
                }
            }
        }
        if let Some(wait) = &self.server.list_wait
            && wait.get_ref().0 > MAX_LIST_WAIT
        {
            p.at(
                wait.span(),
                "server.list_wait is at most 5m: start-up must not wait on the network for long",
            );
        }
    }

    /// `[egress]`: names nft accepts, timeouts, bounds; returns `never_add` parsed.
    fn check_egress(&self, p: &mut Problems<'_>) -> Vec<IpNet> {
        let egress = &self.egress;
        for (key, name) in [
            ("table", &egress.table),
            ("set_v4", &egress.set_v4),
            ("set_v6", &egress.set_v6),
        ] {
            let text = name.get_ref();
            let valid = text.len() <= MAX_NFT_NAME
                && text.starts_with(|c: char| c.is_ascii_alphabetic())
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                p.key(
                    &format!("egress.{key}"),
                    format!(
                        "egress.{key} {text:?} is not an nftables name: a letter, then letters, digits, '_', '-' or '.'"
                    ),
                );
            }
        }
        if egress.set_v4.get_ref() == egress.set_v6.get_ref() {
            p.key(
                "egress.set_v6",
                "egress.set_v6 names the same set as egress.set_v4: IPv4 and IPv6 addresses need a set each",
            );
        }
        for (key, seconds) in [("min_timeout", egress.min_timeout), ("max_timeout", egress.max_timeout)] {
            if !EGRESS_TIMEOUT.contains(&seconds) {
                p.key(
                    &format!("egress.{key}"),
                    format!(
                        "egress.{key} must be between {} and {} seconds (a week)",
                        EGRESS_TIMEOUT.start(),
                        EGRESS_TIMEOUT.end()
                    ),
                );
            }
        }
        if egress.min_timeout > egress.max_timeout {
            p.key(
                "egress.min_timeout",
                format!(
                    "egress.min_timeout ({}) is above egress.max_timeout ({})",
                    egress.min_timeout, egress.max_timeout
                ),
            );
        }
        if !EGRESS_RATE.contains(&egress.rate) {
            p.key(
                "egress.rate",
                format!(
                    "egress.rate must be between {} and {} names a second",
                    EGRESS_RATE.start(),
                    EGRESS_RATE.end()
                ),
            );
        }
        for (key, size) in [("queue", egress.queue), ("max_names", egress.max_names)] {
            if !EGRESS_SIZE.contains(&size) {
                p.key(
                    &format!("egress.{key}"),
                    format!(
                        "egress.{key} must be between {} and {}",
                        EGRESS_SIZE.start(),
                        EGRESS_SIZE.end()
                    ),
                );
            }
        }
        if egress.dedup_window == 0 {
            p.key("egress.dedup_window", "egress.dedup_window must be at least 1 second");
        }
        p.prefixes(&egress.never_add_written)
            .into_iter()
            .map(Spanned::into_inner)
            .collect()
    }

    /// Names, clients, list references, windows and phases; returns each policy's window, mode
    /// and timeline.
    fn check_policies(&self, p: &mut Problems<'_>) -> Vec<(Window, Mode, Vec<Phase>)> {
        let mut names: Vec<&str> = Vec::new();
        let mut windows = Vec::with_capacity(self.policies.len());
        for policy in &self.policies {
            let name = policy.name.get_ref();
            if name.is_empty() || name.len() > MAX_POLICY_NAME || name.contains(|c: char| c.is_control()) {
                p.at(
                    policy.name.span(),
                    format!("policy name must be 1 to {MAX_POLICY_NAME} printable characters"),
                );
            }
            if names.contains(&name.as_str()) {
                p.at(policy.name.span(), format!("a policy {name:?} is defined twice"));
            }
            names.push(name);
            if policy.clients_written.get_ref().is_empty() {
                p.at(
                    policy.clients_written.span(),
                    format!("policy {name:?} has no clients: it would apply to no one"),
                );
            }
            for list in policy.block.iter().chain(&policy.allow) {
                if !self.lists.contains_key(list.get_ref()) {
                    p.at(
                        list.span(),
                        format!(
                            "policy {name:?} names list {:?}, which no [lists.{}] defines",
                            list.get_ref(),
                            list.get_ref()
                        ),
                    );
                }
            }
            let mut bound = |value: &Option<toml::Spanned<toml::Value>>| {
                let value = value.as_ref()?;
                timestamp(value.get_ref())
                    .map_err(|message| p.at(value.span(), message))
                    .ok()
            };
            let mut window = Window {
                from: bound(&policy.active_from),
                until: bound(&policy.active_until),
            };
            if let (Some(from), Some(until), Some(written)) = (window.from, window.until, &policy.active_until)
                && from >= until
            {
                p.at(
                    written.span(),
                    format!("policy {name:?}: active_until is not after active_from"),
                );
            }
            let mut mode = policy.mode_written.as_ref().map_or(Mode::default(), |m| *m.get_ref());
            let mut timeline = Vec::new();
            if let Some(phases) = &policy.phases {
                timeline = check_phases(name, policy, window.from, phases, p);
                window.until = timeline.last().map(|phase| phase.until);
                mode = timeline.first().map_or(mode, |phase| phase.mode);
            }
            windows.push((window, mode, timeline));
        }
        windows
    }

    /// Two policies claiming the same prefix are an error when they differ in when or how they
    /// block: only the first ever applies to the prefix, whatever its window, so the second (a ban
    /// after a grace period, say) would never take effect. A timeline is one policy's `phases`.
    fn check_shared_prefixes(
        &self,
        clients: &[Spanned<Vec<Spanned<IpNet>>>],
        built: &[(Window, Mode, Vec<Phase>)],
        schedules: &[Option<std::sync::Arc<Schedule>>],
        p: &mut Problems<'_>,
    ) {
        let mut seen: BTreeMap<IpNet, usize> = BTreeMap::new();
        for (id, prefixes) in clients.iter().enumerate() {
            for prefix in prefixes.get_ref() {
                let net = prefix.get_ref().trunc();
                let first = *seen.entry(net).or_insert(id);
                if first == id || (built.get(first) == built.get(id) && schedules.get(first) == schedules.get(id)) {
                    continue;
                }
                let (Some(a), Some(b)) = (self.policies.get(first), self.policies.get(id)) else {
                    continue;
                };
                let (a, b) = (a.name.get_ref(), b.name.get_ref());
                p.at(
                    prefix.span(),
                    format!(
                        "{net} is claimed by policy {a:?} and policy {b:?}, which block at different times or in \
                         different modes: a prefix has one policy, so {a:?} (the first) would apply at all times and \
                         {b:?} never, even after {a:?} ends. To audit and then enforce (or any timeline) on the same \
                         clients, make them one policy with phases = [{{ until = \"...\", mode = \"audit\" }}, \
                         {{ until = \"...\", mode = \"enforce\" }}]"
                    ),
                );
            }
        }
    }

    /// Each policy's `schedule`: days, hours and zone read, every problem at its key; returns
    /// the schedules that are good, their windows computed.
    fn check_schedules(&self, p: &mut Problems<'_>) -> Vec<Option<std::sync::Arc<Schedule>>> {
        self.policies
            .iter()
            .map(|policy| {
                let schedule = policy.schedule.as_ref()?;
                check_schedule(policy.name.get_ref(), schedule.get_ref(), p).map(std::sync::Arc::new)
            })
            .collect()
    }

    fn check_log(&self, p: &mut Problems<'_>) {
        let log = &self.log;
        match (&log.salt, &log.salt_file) {
            (Some(_), Some(file)) => p.at(
                file.span(),
                "log.salt and log.salt_file are both set: keep one (salt_file keeps the secret out of the config)",
            ),
            (Some(salt), None) if salt.get_ref().chars().count() < MIN_SALT => {
                p.at(salt.span(), format!("log.salt must be at least {MIN_SALT} characters"));
            }
            (None, None) if log.client_ip == ClientIpMode::Hashed => p.key(
                "log.client_ip",
                format!(
                    "log.client_ip = \"hashed\" needs log.salt or log.salt_file (a secret of at least {MIN_SALT} \
                     characters)"
                ),
            ),
            _ => {}
        }
        if log.queue == 0 {
            p.key("log.queue", "log.queue must be at least 1");
        }
    }

    /// Reads `log.salt_file` (when it is set without `salt`: `check_log` reports both set), after
    /// checking that others cannot read or change it: a salt anyone can read hashes nothing away.
    fn read_salt_file(&self) -> Result<Option<String>, Problem> {
        let Some(file) = self.log.salt_file.as_ref().filter(|_| self.log.salt.is_none()) else {
            return Ok(None);
        };
        let path = self.resolve(file.get_ref());
        let fail = |message: String| (file.span(), message);
        let shown = path.display();
        let cannot_read = |e: std::io::Error| fail(format!("log.salt_file: cannot read {shown}: {e}"));
        // The mode of the file opened, not of whatever the path names a moment later.
        let mut opened = std::fs::File::open(&path).map_err(cannot_read)?;
        let mode = opened.metadata().map_err(cannot_read)?.permissions().mode();
        check_private(mode).map_err(|why| fail(format!("log.salt_file {shown}: {why}")))?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut opened, &mut text).map_err(cannot_read)?;
        let salt = text.trim();
        if salt.chars().count() < MIN_SALT {
            return Err(fail(format!(
                "log.salt_file {shown} holds {} characters (trimmed); the salt must be at least {MIN_SALT}",
                salt.chars().count()
            )));
        }
        Ok(Some(salt.to_owned()))
    }

    /// Problems worth telling the operator that do not stop the config: two policies claiming the
    /// same prefix, windows already over, policy clients that `server.allow` refuses, a config that
    /// blocks nothing or refuses everyone. `check` prints them; `run` and reloads log them.
    pub fn warnings(&self, now: i64) -> Vec<Diagnostic> {
        let o = &self.origin;
        let mut warnings = Vec::new();
        let allow: Vec<IpNet> = self.server.allow.get_ref().iter().map(IpNet::trunc).collect();
        if allow.is_empty() {
            warnings.push(o.error(
                self.server.allow.span(),
                "server.allow is empty: every client is refused",
            ));
        }
        if self.policies.iter().all(|p| p.block.is_empty()) {
            warnings.push(o.error(
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
                    warnings.push(o.error(
                        prefix.span(),
                        format!(
                            "{net} is claimed by policy {first:?} and policy {name:?}: {first:?} (the first) applies"
                        ),
                    ));
                    seen.insert(net, first);
                }
                // An empty allow has its own warning: every prefix of every policy would repeat it.
                if !allow.is_empty()
                    && let Some(message) = outside_allow(name, net, &allow)
                {
                    warnings.push(o.error(prefix.span(), message));
                }
            }
            if let Some(until) = policy.window.until
                && until <= now
            {
                let span = policy
                    .active_until
                    .as_ref()
                    .map_or_else(|| policy.name.span(), |u| u.span());
                warnings.push(o.error(
                    span,
                    format!("policy {name:?}: its window ended already (active_until is past); it blocks nothing"),
                ));
            }
        }
        warnings
    }
}

/// Whether `name` is a host name (RFC 1123 letters, digits and hyphens, labels of 1 to 63, 253
/// in all), as a certificate's DNS name and an SVCB target must be; a trailing dot is allowed.
fn check_host_name(name: &str) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a host name (1 to 253 characters)"));
    }
    for label in name.split('.') {
        let ldh = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ldh || label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{name:?} is not a host name: label {label:?} must be 1 to 63 letters, digits or inner hyphens"
            ));
        }
    }
    Ok(())
}

/// What to tell the operator about a policy prefix that `server.allow` does not wholly hold:
/// its clients there are refused before any policy is asked, so the policy does nothing for them.
fn outside_allow(policy: &str, net: IpNet, allow: &[IpNet]) -> Option<String> {
    let parts = outside(net, allow);
    if parts.is_empty() {
        return None;
    }
    if parts == [net] {
        return Some(format!(
            "policy {policy:?} never applies to {net}: none of it is in server.allow, so these clients are all \
             REFUSED, whatever the policy says. Add {net} to server.allow, or take it out of the policy"
        ));
    }
    let mut shown: Vec<String> = parts.iter().take(SHOWN_PARTS).map(ToString::to_string).collect();
    if parts.len() > SHOWN_PARTS {
        shown.push(format!("and {} more", parts.len() - SHOWN_PARTS));
    }
    Some(format!(
        "policy {policy:?}: part of {net} is outside server.allow ({}): clients there are REFUSED, whatever the \
         policy says. Add those to server.allow, or narrow the policy",
        shown.join(", ")
    ))
}

/// The largest prefixes of `net` that no prefix of `allow` (truncated) holds. Splits `net` in
/// halves only where an allowed prefix lies strictly inside it, so the work is bounded by the
/// allowed prefixes times the address length.
pub(super) fn outside(net: IpNet, allow: &[IpNet]) -> Vec<IpNet> {
    if allow.iter().any(|a| a.contains(&net)) {
        return Vec::new();
    }
    if !allow.iter().any(|a| net.contains(a)) {
        return vec![net];
    }
    // Some allowed prefix is strictly longer than `net` and inside it, so `net` can be halved.
    net.subnets(net.prefix_len() + 1)
        .map(|halves| halves.flat_map(|half| outside(half, allow)).collect())
        .unwrap_or_default()
}

/// The one of `listeners` an upstream address would reach, if any: forwarding there is a loop.
fn reached_by(upstream: SocketAddr, listeners: &[Spanned<SocketAddr>]) -> Option<SocketAddr> {
    listeners
        .iter()
        .map(|l| *l.get_ref())
        .find(|listen| reaches(upstream, *listen, is_local_address))
}

/// Whether queries sent to `upstream` would arrive at a sinkhole listening on `listen`:
/// the same address; on a wildcard listener (`0.0.0.0`, `[::]`, which on Linux takes IPv4 too)
/// any loopback address or any of this host's own (`is_local`); and `0.0.0.0`/`::` as a
/// destination, which the kernel delivers to loopback.
pub(super) fn reaches(upstream: SocketAddr, listen: SocketAddr, is_local: impl Fn(IpAddr) -> bool) -> bool {
    if upstream.port() != listen.port() {
        return false;
    }
    let (to, at) = (upstream.ip().to_canonical(), listen.ip().to_canonical());
    if to == at {
        return true;
    }
    let to_this_host = to.is_loopback() || to.is_unspecified();
    match at {
        IpAddr::V4(at) if at.is_unspecified() => to.is_ipv4() && (to_this_host || is_local(to)),
        IpAddr::V6(at) if at.is_unspecified() => to_this_host || is_local(to),
        at => to.is_unspecified() && at.is_loopback() && to.is_ipv4() == at.is_ipv4(),
    }
}

/// Whether an address is one of this host's: only those can be bound (a socket bound to port 0
/// and dropped at once; nothing is sent).
fn is_local_address(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Whether a file mode keeps a secret: no permission at all for others (`mode & 0o007 == 0`).
pub(super) fn check_private(mode: u32) -> Result<(), String> {
    if mode & 0o007 == 0 {
        return Ok(());
    }
    Err(format!(
        "others may read or write it (mode {:04o}), and it holds a secret: chmod o-rwx it, and let the daemon's \
         user read it through its owner or group",
        mode & 0o7777
    ))
}

/// A policy's `phases` as the runtime reads them: each `until` parsed, after `active_from`
/// (`from`) and after the phase before; `mode` and `active_until` are errors with them. Every
/// problem is reported at its key; the phases that are good are returned.
fn check_phases(
    name: &str,
    policy: &super::schema::PolicyConfig,
    from: Option<i64>,
    phases: &Spanned<Vec<super::schema::PhaseConfig>>,
    p: &mut Problems<'_>,
) -> Vec<Phase> {
    if let Some(mode) = &policy.mode_written {
        p.at(
            mode.span(),
            format!("policy {name:?}: mode and phases are both set: phases say the mode of each phase; remove mode"),
        );
    }
    if let Some(until) = &policy.active_until {
        p.at(
            until.span(),
            format!(
                "policy {name:?}: active_until and phases are both set: the last phase's until ends the policy; \
                 remove active_until"
            ),
        );
    }
    if phases.get_ref().is_empty() {
        p.at(
            phases.span(),
            format!("policy {name:?}: phases is empty: give at least one {{ until = \"...\", mode = \"...\" }}, or remove it"),
        );
    }
    if phases.get_ref().len() > MAX_PHASES {
        p.at(
            phases.span(),
            format!(
                "policy {name:?} has {} phases; at most {MAX_PHASES}",
                phases.get_ref().len()
            ),
        );
    }
    let mut timeline: Vec<Phase> = Vec::new();
    let mut after = from.map(|f| (f, "active_from".to_string()));
    for (i, phase) in phases.get_ref().iter().enumerate().take(MAX_PHASES) {
        let until = match timestamp(phase.until.get_ref()) {
            Ok(until) => until,
            Err(message) => {
                p.at(phase.until.span(), format!("policy {name:?} phase {i}: {message}"));
                continue;
            }
        };
        if let Some((before, what)) = &after
            && until <= *before
        {
            p.at(
                phase.until.span(),
                format!(
                    "policy {name:?} phase {i}: until is not after {what}: phases must be in increasing order of until"
                ),
            );
            continue;
        }
        after = Some((until, format!("phase {i}'s until")));
        timeline.push(Phase {
            until,
            mode: phase.mode,
        });
    }
    debug_assert!(timeline.len() <= usize::from(PhaseId::MAX));
    timeline
}

/// A policy's `schedule` as the runtime reads it, or None (with every problem reported at its
/// key) when any part of it is wrong: a schedule half read would block at hours nobody asked for.
fn check_schedule(name: &str, schedule: &super::schema::ScheduleConfig, p: &mut Problems<'_>) -> Option<Schedule> {
    let mut good = true;
    let mut days = 0u8;
    match &schedule.days {
        None => days = 0x7f,
        Some(list) => {
            if list.get_ref().is_empty() {
                good = false;
                p.at(
                    list.span(),
                    format!(
                        "policy {name:?}: schedule.days is empty, so it would never block; list days or remove days"
                    ),
                );
            }
            for day in list.get_ref() {
                match crate::policy::day_bit(day.get_ref()) {
                    Some(bit) if days & bit != 0 => {
                        good = false;
                        p.at(
                            day.span(),
                            format!("policy {name:?}: schedule.days names {:?} twice", day.get_ref()),
                        );
                    }
                    Some(bit) => days |= bit,
                    None => {
                        good = false;
                        p.at(
                            day.span(),
                            format!(
                                "policy {name:?}: schedule.days: {:?} is not a day; use {}",
                                day.get_ref(),
                                crate::policy::DAY_NAMES.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
    let mut hours = Vec::new();
    match &schedule.hours {
        None => hours.push(HourRange {
            start: 0,
            end: crate::policy::DAY_MINUTES,
        }),
        Some(value) => {
            let texts: Vec<Option<&str>> = match value.get_ref() {
                toml::Value::String(s) => vec![Some(s.as_str())],
                toml::Value::Array(items) => items.iter().map(toml::Value::as_str).collect(),
                _ => vec![None],
            };
            if texts.is_empty() || texts.len() > MAX_HOUR_RANGES || texts.contains(&None) {
                good = false;
                p.at(
                    value.span(),
                    format!(
                        "policy {name:?}: schedule.hours must be \"HH:MM-HH:MM\" or a list of 1 to {MAX_HOUR_RANGES} of \
                         them, like [\"08:00-12:00\", \"13:00-18:00\"]"
                    ),
                );
            }
            for text in texts.into_iter().flatten() {
                match HourRange::parse(text) {
                    Ok(range) => hours.push(range),
                    Err(message) => {
                        good = false;
                        p.at(value.span(), format!("policy {name:?}: schedule.hours: {message}"));
                    }
                }
            }
        }
    }
    let zone = match &schedule.time_zone {
        None => {
            let zone = jiff::tz::TimeZone::system();
            let shown = zone.iana_name().map_or_else(
                || "the system's local time zone".to_string(),
                |iana| format!("{iana}, the system's local time zone"),
            );
            Some((zone, shown))
        }
        Some(written) => match jiff::tz::TimeZone::get(written.get_ref()) {
            Ok(zone) => Some((zone, written.get_ref().clone())),
            Err(e) => {
                p.at(
                    written.span(),
                    format!(
                        "policy {name:?}: schedule.time_zone {:?} is not a time zone this system knows ({e}); use an \
                         IANA name like \"Europe/Brussels\" (the tzdata package holds them)",
                        written.get_ref()
                    ),
                );
                None
            }
        },
    };
    let (zone, zone_name) = zone?;
    good.then(|| Schedule::new(days, hours, zone, zone_name))
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
