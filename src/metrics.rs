//! Every metric the daemon exports: names, labels and help texts live here and nowhere else.
//!
//! Conventions (Prometheus): the `sinkhole_` prefix, `_total` for counters, base units (`_seconds`,
//! `_bytes`). Labels are of bounded cardinality only: protocol, outcome, policy, list, upstream,
//! result. Never a query name or a client address: aggregates must carry no personal data
//! (ARCHITECTURE.md "Privacy").
//!
//! Modules take handles (`metrics::Counter`, `Gauge`, `Histogram`) once, when they are built, and
//! touch only those on the packet path: a handle is one atomic add, a `counter!` lookup by name is
//! a registry search.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Queries answered, by `protocol` (udp, tcp, dot, doh) and `outcome` (see [`Outcome`]).
pub(crate) const QUERIES: &str = "sinkhole_queries_total";
/// Block decisions, by `policy`, `list` and `mode` (enforce, audit).
pub(crate) const BLOCKS: &str = "sinkhole_blocks_total";
/// Time from sending a query upstream to its valid answer, by `upstream`.
pub const UPSTREAM_DURATION: &str = "sinkhole_upstream_duration_seconds";
/// Failed upstream attempts, by `upstream` and `kind` (timeout, network, malformed, refused).
pub(crate) const UPSTREAM_ERRORS: &str = "sinkhole_upstream_errors_total";
/// Upstream answers that came truncated over UDP and were asked again over TCP, by `upstream`.
pub(crate) const UPSTREAM_TCP_RETRIES: &str = "sinkhole_upstream_tcp_retries_total";
/// Connections opened to an upstream (TCP, TLS, HTTPS), by `upstream`: a count far below the
/// queries sent shows connections being reused.
pub(crate) const UPSTREAM_CONNECTIONS: &str = "sinkhole_upstream_connections_total";
/// Packet cache lookups that found a live entry.
pub(crate) const CACHE_HITS: &str = "sinkhole_cache_hits_total";
/// Packet cache lookups that found nothing (or an expired entry).
pub(crate) const CACHE_MISSES: &str = "sinkhole_cache_misses_total";
/// Entries in the packet cache now.
pub(crate) const CACHE_ENTRIES: &str = "sinkhole_cache_entries";
/// Memory the packet cache's entries take now, in bytes (bounded by `cache.max_bytes`).
pub(crate) const CACHE_BYTES: &str = "sinkhole_cache_bytes";
/// Each policy's place in its timeline: 1 for the phase it is in now, 0 for its others, by
/// `policy`, `phase` (its index in `phases`, 0 for a policy without them, or `none` when it
/// blocks nothing now: before `active_from`, after its last phase or `active_until`) and `mode`
/// (`enforce`, `audit`, or `none`). A gauge set every second, so that a dashboard shows the
/// moment a grace period ends; at most 17 series a policy (16 phases and `none`).
pub(crate) const POLICY_PHASE: &str = "sinkhole_policy_phase";
/// Rules compiled into each list, by `list`.
pub(crate) const LIST_RULES: &str = "sinkhole_list_rules";
/// Lines of each list that were skipped as unreadable, by `list`.
pub(crate) const LIST_BAD_LINES: &str = "sinkhole_list_bad_lines";
/// Unix time each list fetched by URL last had a good update or a 304 from one of its URLs,
/// by `list` (after a restart: from the saved copies).
pub(crate) const LIST_LAST_SUCCESS: &str = "sinkhole_list_last_success_timestamp_seconds";
/// How often each list fetched by URL is downloaded again (`refresh`), in seconds: what the
/// stale-list alert measures the age of its last good update against.
pub(crate) const LIST_REFRESH: &str = "sinkhole_list_refresh_seconds";
/// Updates of lists by URL that were refused or failed, the previous copy serving on, by `list`
/// and `reason` (http_status, network, timeout, too_large, not_text, bad_lines, shrink, empty).
pub(crate) const LIST_UPDATE_FAILURES: &str = "sinkhole_list_update_failures_total";
/// Downloads of lists by URL that succeeded, by `list` and `result` (updated: a new copy
/// serves; unchanged: the server answered 304).
pub(crate) const LIST_UPDATES: &str = "sinkhole_list_updates_total";
/// Whether each list has loaded (1), or is a list by URL with no copy yet (0), by `list`.
pub(crate) const LIST_LOADED: &str = "sinkhole_list_loaded";
/// Reloads (SIGHUP or start), by `result` (ok, failed, refused: it would have stopped all blocking).
pub(crate) const RELOADS: &str = "sinkhole_reloads_total";
/// Unix time of the last successful load of config and lists.
pub(crate) const LAST_RELOAD: &str = "sinkhole_last_reload_timestamp_seconds";
/// Whether the last reload attempt succeeded (1) or failed and the previous state is serving (0).
pub(crate) const LAST_RELOAD_OK: &str = "sinkhole_last_reload_success";
/// Hit log lines dropped because the writer fell behind (the log queue was full) or could not
/// write them (a full disk).
pub(crate) const HITLOG_DROPPED: &str = "sinkhole_hitlog_dropped_total";
/// Packets dropped without an answer, by `protocol` and `reason` (short, response, unanswerable).
pub(crate) const DROPPED: &str = "sinkhole_dropped_packets_total";
/// UDP queries over a rate limit, by `limit` (client, identical) and `action` (dropped,
/// truncated: an empty answer with TC sent instead).
pub(crate) const RATELIMITED: &str = "sinkhole_ratelimited_total";
/// TCP connections open now.
pub(crate) const TCP_CONNECTIONS: &str = "sinkhole_tcp_connections";
/// TCP connections closed at accept, by `reason` (not_allowed: outside `server.allow`; limit:
/// `server.tcp_max_connections` reached; client_limit: that client's share reached).
pub(crate) const TCP_REJECTED: &str = "sinkhole_tcp_rejected_total";
/// TCP connections closed by us before the client was done, by `reason` (timeout: a query that
/// did not arrive, or an answer not taken, within `server.tcp_io_timeout`).
pub(crate) const TCP_CLOSED: &str = "sinkhole_tcp_closed_total";
/// Queries from a trusted relay (`server.trusted_relays`) that stated their client, by `source`
/// (proxy: a PROXY protocol v2 header; ecs: an EDNS Client Subnet option).
pub(crate) const RELAYED_QUERIES: &str = "sinkhole_relayed_queries_total";
/// PROXY headers and Client Subnet options from senders that are not trusted relays, ignored
/// (the sender's own address stands), by `source` (proxy, ecs): a client trying to pick its
/// policy, or a relay missing from `server.trusted_relays`.
pub(crate) const RELAY_IGNORED: &str = "sinkhole_relay_ignored_total";
/// PROXY headers from trusted relays that did not read (the datagram dropped, the connection
/// closed), by `reason` (truncated, version, command, family, address_length, too_long, timeout,
/// io).
pub(crate) const PROXY_HEADER_ERRORS: &str = "sinkhole_proxy_header_errors_total";
/// TLS handshakes of DoT and DoH connections that did not complete, by `reason` (timeout: not
/// done within `server.tls_handshake_timeout`; error: not TLS, refused, or the client gave up).
pub(crate) const TLS_HANDSHAKE_FAILURES: &str = "sinkhole_tls_handshake_failures_total";
/// Loads of `server.certificate` and `server.key` on reload (SIGHUP), by `result` (ok: new
/// handshakes get the new pair; failed: the previous pair serves on, the reason is logged).
pub(crate) const TLS_CERTIFICATE_RELOADS: &str = "sinkhole_tls_certificate_reloads_total";
/// Unix time the serving TLS certificate (its leaf) expires: alert on it falling near `time()`
/// when renewal stopped working.
pub(crate) const TLS_CERTIFICATE_EXPIRY: &str = "sinkhole_tls_certificate_expiry_timestamp_seconds";
/// DNS over HTTPS responses, by HTTP `status` (200; 400 bad request, 404 not `/dns-query`, 405
/// not GET or POST, 413 too large, 415 not `application/dns-message`, 502 no answer).
pub(crate) const DOH_RESPONSES: &str = "sinkhole_doh_responses_total";
/// Blocked names the egress companion did not take: its queue (`egress.queue`) or its batch of
/// elements waiting for nft was full.
pub(crate) const EGRESS_DROPPED: &str = "sinkhole_egress_dropped_total";
/// Blocked names the egress companion resolved, by `result` (ok: addresses came back; empty:
/// an answer without any, NXDOMAIN included; failed: no upstream answered).
pub(crate) const EGRESS_RESOLUTIONS: &str = "sinkhole_egress_resolutions_total";
/// Elements added to the egress nftables sets, by `family` (ipv4, ipv6).
pub(crate) const EGRESS_ADDED: &str = "sinkhole_egress_elements_added_total";
/// Addresses of blocked names not published, by `reason` (never_add: in `egress.never_add`,
/// the ranges always left out, or `server.allow`).
pub(crate) const EGRESS_SKIPPED: &str = "sinkhole_egress_addresses_skipped_total";
/// Changes to the egress sets that failed, by `reason` (nft_missing, permission: no
/// CAP_NET_ADMIN, missing_set, rejected, exec).
pub(crate) const EGRESS_NFT_FAILURES: &str = "sinkhole_egress_nft_failures_total";
/// Elements the egress companion added that have not expired yet, by `family`.
pub(crate) const EGRESS_ELEMENTS: &str = "sinkhole_egress_elements";
/// Whether both egress sets were found, with the flags they need, at the last look (1), or
/// addresses cannot be published (0: the log says why).
pub(crate) const EGRESS_READY: &str = "sinkhole_egress_sets_ready";
/// A constant 1, labelled with the `version` of the running binary.
pub const BUILD_INFO: &str = "sinkhole_build_info";
/// 1 when `GET /ready` would answer 200 (every listener bound, the lists of every policy blocking
/// now that fails closed loaded, an upstream usable), else 0; written by the metrics listener on
/// each scrape (`server::admin`), as is [`UPSTREAM_UP`].
pub(crate) const READY: &str = "sinkhole_ready";
/// 1 if an upstream server is usable now (not in its failure backoff), else 0, by `upstream`:
/// the servers of the running config only.
pub(crate) const UPSTREAM_UP: &str = "sinkhole_upstream_up";
/// Unix time of each policy's next change of phase (its window opening or closing, a phase
/// switch, a weekly schedule edge), by `policy` and `mode`: on the series of the mode it has from
/// then on (`enforce`, `audit`, or `none`: it stops blocking), 0 on its other series; all 0 when
/// no change is ahead. So that an alert can warn a day before a ban starts or ends.
pub(crate) const POLICY_NEXT_CHANGE: &str = "sinkhole_policy_next_change_timestamp_seconds";
/// Changes of phase seen by the running daemon, by `policy` and the `mode` entered (`none`: it
/// stopped blocking); each is logged at info too.
pub(crate) const POLICY_CHANGES: &str = "sinkhole_policy_changes_total";
/// CPU time the process used (user and system), in seconds: the standard Prometheus process
/// metrics, written by the metrics listener itself on each scrape (`server::admin`), as fractions
/// the `metrics` crate's integer counters cannot hold.
pub(crate) const PROCESS_CPU: &str = "process_cpu_seconds_total";
/// Resident memory, in bytes.
pub(crate) const PROCESS_RESIDENT: &str = "process_resident_memory_bytes";
/// Virtual memory, in bytes.
pub(crate) const PROCESS_VIRTUAL: &str = "process_virtual_memory_bytes";
/// File descriptors open now.
pub(crate) const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// The file descriptor limit (the soft limit, which the daemon raises to the hard one at start).
pub(crate) const PROCESS_MAX_FDS: &str = "process_max_fds";
/// When the process started, as Unix time.
pub(crate) const PROCESS_START_TIME: &str = "process_start_time_seconds";
/// Threads of the process.
pub(crate) const PROCESS_THREADS: &str = "process_threads";

/// What happened to one query; the `outcome` label of [`QUERIES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A policy blocked the name (or a name in its CNAME chain) and the block answer was sent.
    Blocked,
    /// A policy in audit mode would have blocked it; the real answer was sent and the hit logged.
    Audited,
    /// Answered from the packet cache.
    Cached,
    /// Answered by an upstream.
    Forwarded,
    /// The client is outside `server.allow`, or asked for something we do not serve (zone transfer).
    Refused,
    /// Every upstream failed or timed out.
    Servfail,
    /// The query could not be parsed (or had QDCOUNT != 1).
    Formerr,
    /// An opcode other than QUERY.
    Notimp,
    /// Answered here rather than forwarded: an ANY query with one HINFO record (RFC 8482), a
    /// CHAOS query with `server.identity` or `server.version`, a DDR query (`resolver.arpa`).
    Minimal,
    /// No upstream answered; an expired answer from the cache was sent (RFC 8767).
    Stale,
}

impl Outcome {
    /// Every outcome, in label order: used to pre-register one handle each.
    pub(crate) const ALL: [Outcome; 10] = [
        Outcome::Blocked,
        Outcome::Audited,
        Outcome::Cached,
        Outcome::Forwarded,
        Outcome::Refused,
        Outcome::Servfail,
        Outcome::Formerr,
        Outcome::Notimp,
        Outcome::Minimal,
        Outcome::Stale,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Blocked => "blocked",
            Outcome::Audited => "audited",
            Outcome::Cached => "cached",
            Outcome::Forwarded => "forwarded",
            Outcome::Refused => "refused",
            Outcome::Servfail => "servfail",
            Outcome::Formerr => "formerr",
            Outcome::Notimp => "notimp",
            Outcome::Minimal => "minimal",
            Outcome::Stale => "stale",
        }
    }
}

/// Upstream latency buckets, in seconds: loopback stubs answer in tens of microseconds, real
/// resolvers in one to a few hundred milliseconds, and timeouts sit above a second.
pub const UPSTREAM_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Registers help texts and units for every metric, so that the exporter prints `# HELP` and
/// `# TYPE` lines even for series that have not been touched yet.
pub fn describe() {
    describe_counter!(QUERIES, Unit::Count, "Queries answered, by protocol and outcome.");
    describe_counter!(BLOCKS, Unit::Count, "Block decisions, by policy, list and mode.");
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Time from sending a query upstream to its valid answer."
    );
    describe_counter!(
        UPSTREAM_ERRORS,
        Unit::Count,
        "Failed upstream attempts, by upstream and kind."
    );
    describe_counter!(
        UPSTREAM_TCP_RETRIES,
        Unit::Count,
        "Truncated upstream answers asked again over TCP."
    );
    describe_counter!(
        UPSTREAM_CONNECTIONS,
        Unit::Count,
        "Connections opened to an upstream (TCP, TLS, HTTPS)."
    );
    describe_counter!(CACHE_HITS, Unit::Count, "Packet cache lookups that found a live entry.");
    describe_counter!(CACHE_MISSES, Unit::Count, "Packet cache lookups that found none.");
    describe_gauge!(CACHE_ENTRIES, Unit::Count, "Entries in the packet cache.");
    describe_gauge!(CACHE_BYTES, Unit::Bytes, "Memory the packet cache's entries take.");
    describe_gauge!(
        POLICY_PHASE,
        Unit::Count,
        "1 for the phase each policy is in now (phase none: not blocking), 0 for its others."
    );
    describe_gauge!(LIST_RULES, Unit::Count, "Rules compiled into each list.");
    describe_gauge!(LIST_BAD_LINES, Unit::Count, "Lines of each list skipped as unreadable.");
    describe_gauge!(
        LIST_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last good update or 304 of each list fetched by URL."
    );
    describe_gauge!(
        LIST_REFRESH,
        Unit::Seconds,
        "How often each list fetched by URL is downloaded again (its refresh)."
    );
    describe_counter!(
        LIST_UPDATE_FAILURES,
        Unit::Count,
        "Updates of lists by URL failed or refused (previous copy kept), by list and reason."
    );
    describe_counter!(
        LIST_UPDATES,
        Unit::Count,
        "Downloads of lists by URL that succeeded, by list and result (updated, unchanged)."
    );
    describe_gauge!(
        LIST_LOADED,
        Unit::Count,
        "1 if the list has loaded, 0 for a list by URL with no copy yet."
    );
    describe_counter!(RELOADS, Unit::Count, "Loads of config and lists, by result.");
    describe_gauge!(
        LAST_RELOAD,
        Unit::Seconds,
        "Unix time of the last successful load of config and lists."
    );
    describe_gauge!(
        LAST_RELOAD_OK,
        Unit::Count,
        "1 if the last reload succeeded, 0 if it failed and the previous state serves."
    );
    describe_counter!(
        HITLOG_DROPPED,
        Unit::Count,
        "Hit log lines dropped: the writer fell behind, or its writes failed."
    );
    describe_counter!(
        DROPPED,
        Unit::Count,
        "Packets dropped without an answer, by protocol and reason."
    );
    describe_counter!(
        RATELIMITED,
        Unit::Count,
        "UDP queries over a rate limit, by limit and action."
    );
    describe_gauge!(TCP_CONNECTIONS, Unit::Count, "TCP connections open.");
    describe_counter!(
        TCP_REJECTED,
        Unit::Count,
        "TCP connections closed at accept, by reason."
    );
    describe_counter!(
        RELAYED_QUERIES,
        Unit::Count,
        "Queries from trusted relays that stated their client, by source (proxy, ecs)."
    );
    describe_counter!(
        RELAY_IGNORED,
        Unit::Count,
        "PROXY headers and Client Subnet options from untrusted senders, ignored, by source."
    );
    describe_counter!(
        PROXY_HEADER_ERRORS,
        Unit::Count,
        "PROXY headers from trusted relays that did not read, by reason."
    );
    describe_counter!(
        TCP_CLOSED,
        Unit::Count,
        "TCP connections closed for a slow client, by reason."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        Unit::Count,
        "DoT and DoH TLS handshakes that did not complete, by reason."
    );
    describe_counter!(
        TLS_CERTIFICATE_RELOADS,
        Unit::Count,
        "Loads of the TLS certificate and key on reload, by result."
    );
    describe_counter!(DOH_RESPONSES, Unit::Count, "DNS over HTTPS responses, by HTTP status.");
    describe_gauge!(
        TLS_CERTIFICATE_EXPIRY,
        Unit::Seconds,
        "Unix time the serving TLS certificate expires."
    );
    describe_counter!(
        EGRESS_DROPPED,
        Unit::Count,
        "Blocked names the egress companion did not take: its queue or batch was full."
    );
    describe_counter!(
        EGRESS_RESOLUTIONS,
        Unit::Count,
        "Blocked names the egress companion resolved, by result."
    );
    describe_counter!(
        EGRESS_ADDED,
        Unit::Count,
        "Elements added to the egress nftables sets, by family."
    );
    describe_counter!(
        EGRESS_SKIPPED,
        Unit::Count,
        "Addresses of blocked names not published, by reason."
    );
    describe_counter!(
        EGRESS_NFT_FAILURES,
        Unit::Count,
        "Changes to the egress nftables sets that failed, by reason."
    );
    describe_gauge!(
        EGRESS_ELEMENTS,
        Unit::Count,
        "Elements added to the egress sets that have not expired, by family."
    );
    describe_gauge!(
        EGRESS_READY,
        Unit::Count,
        "1 if both egress nftables sets were found with the flags they need, else 0."
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; the version label names the running binary."
    );
    describe_gauge!(
        POLICY_NEXT_CHANGE,
        Unit::Seconds,
        "Unix time of the policy's next change of phase, on the series of the mode it changes to (none: stops blocking); 0 on the others."
    );
    describe_counter!(
        POLICY_CHANGES,
        Unit::Count,
        "Changes of phase seen, by policy and the mode entered (none: stopped blocking)."
    );
}

/// Creates at 0 the series whose label values are known before anything happens, so that they are
/// exported from the first scrape: a counter that does not exist yet makes `rate()` and
/// `increase()` return nothing, and an alert or dashboard panel on its first increment miss it
/// (Prometheus practice; deploy/prometheus/ relies on it). Called once at start, after
/// [`describe`]; the series modules pre-register themselves (outcomes, upstream errors, drops) are
/// left to them.
pub fn register_known_series() {
    for result in ["ok", "failed", "refused"] {
        metrics::counter!(RELOADS, "result" => result).increment(0);
    }
}
