//! What `sinkhole check` and `sinkhole explain` print: plain text for the operator, built from
//! a snapshot exactly as the daemon would build it, so what they say is what the daemon does.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr as _;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;

use crate::answer::{BlockAnswer, ede};
use crate::cache::PacketCache;
use crate::engine::{self, Verdict};
use crate::hitlog::HitLog;
use crate::packet::{self, QName};
use crate::policy::Mode;
use crate::server::handler::{Clock, Handler, Protocol, Step, Worker};
use crate::state::{Snapshot, State, now_unix};

/// The `check` summary: listeners, upstreams, lists with rule counts, policies (each with its
/// timeline and what it does now), warnings.
pub fn check(snapshot: &Snapshot) -> String {
    let now = now_unix();
    let c = &snapshot.config;
    let mut out = String::new();
    let _ = writeln!(out, "config {}: ok", c.origin.name);
    let listen: Vec<String> = c.server.listen.iter().map(|l| l.get_ref().to_string()).collect();
    let _ = writeln!(out, "listen    {} (UDP and TCP)", listen.join(", "));
    let metrics = c
        .server
        .metrics
        .map_or_else(|| "off".into(), |m| format!("http://{m}/metrics"));
    let _ = writeln!(out, "metrics   {metrics}");
    let allow: Vec<String> = c.server.allow.get_ref().iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "allow     {}", allow.join(", "));
    let upstream: Vec<&str> = snapshot.upstream.specs().iter().map(|s| s.label.as_str()).collect();
    let _ = writeln!(
        out,
        "upstream  {} (timeout {} ms{})",
        upstream.join(", "),
        c.upstream.timeout_ms,
        if c.upstream.servers.is_none() {
            ", from /etc/resolv.conf"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "cache     {} entries, {} at most",
        c.cache.entries,
        c.cache.max_bytes.get_ref()
    );
    let _ = writeln!(out, "lists");
    for list in &snapshot.rules.lists {
        let ranges = list.set.range_count();
        let _ = writeln!(
            out,
            "  {:<14} {:>7} rules, {} bad lines, from {}{}",
            list.name,
            list.set.len(),
            list.bad_lines.len(),
            list.sources.join(", "),
            if ranges > 0 {
                format!(" ({ranges} of the rules are answer-address ranges)")
            } else {
                String::new()
            }
        );
    }
    if !snapshot.url_lists.is_empty() {
        let _ = writeln!(
            out,
            "state     {} (the copies of lists by URL; check reads them, never the network)",
            c.state_dir().join("lists").display()
        );
    }
    let _ = writeln!(out, "policies (a client gets the policy of its most specific prefix)");
    for policy in snapshot.rules.policies.iter() {
        let clients: Vec<String> = policy.clients.iter().map(ToString::to_string).collect();
        let names = |ids: &mut dyn Iterator<Item = usize>| -> String {
            let v: Vec<&str> = ids.map(|id| &*snapshot.rules.lists[id].name).collect();
            if v.is_empty() { "nothing".into() } else { v.join(", ") }
        };
        let _ = writeln!(out, "  {}: clients {}", policy.name, clients.join(", "));
        let blocks = if policy.block.is_empty() {
            // Said so, so that `block = []` reads as the exemption it is meant to be (the
            // communications office's phones), not as a policy left half-written.
            "nothing (an exemption: block = [], so its clients are never blocked)".to_string()
        } else {
            names(&mut policy.block.iter().map(|(id, _)| *id))
        };
        let _ = writeln!(
            out,
            "    blocks {}; exceptions {}; answer {}; mode {}; {}",
            blocks,
            names(&mut policy.allow.iter().copied()),
            policy.answer(),
            policy.mode.as_str(),
            window_text(policy.window, now)
        );
        let _ = write!(out, "{}", timeline_text(policy, now, "    "));
        if policy.egress {
            let e = &snapshot.config.egress;
            let ranges: usize = policy
                .block
                .iter()
                .map(|(id, _)| snapshot.rules.lists[*id].set.range_count())
                .sum();
            let _ = writeln!(
                out,
                "    egress: the addresses of the names it blocks (enforce mode), and its lists' {ranges} address \
                 ranges, go to nftables sets inet {} {} and {} (needs CAP_NET_ADMIN and the table loaded)",
                e.table.get_ref(),
                e.set_v4.get_ref(),
                e.set_v6.get_ref()
            );
        }
        let missing: Vec<&str> = policy
            .block
            .iter()
            .map(|(id, _)| &*snapshot.rules.lists[*id].name)
            .filter(|name| snapshot.url_lists.iter().any(|l| l.name == *name && l.missing()))
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(
                out,
                "    never loaded: {}; {}",
                missing.join(", "),
                if policy.not_ready {
                    "fails closed: SERVFAIL (EDE 14 Not Ready) for every name it neither blocks nor excepts"
                } else {
                    "fails open: blocks what it has, forwards the rest"
                }
            );
        }
    }
    let idle = idle_warnings(snapshot, now);
    if !snapshot.warnings.is_empty() || !idle.is_empty() {
        let _ = writeln!(out, "warnings");
        for w in &snapshot.warnings {
            let _ = writeln!(out, "  {w}");
        }
        for w in &idle {
            let _ = writeln!(out, "  {w}");
        }
    }
    out
}

/// What `check` adds to the snapshot's warnings: lists that compiled to no rules, and policies
/// that name lists but block nothing because all of them are empty. Not the snapshot's own
/// warnings, which the daemon logs at every reload: an empty list is often a list being filled.
///
/// Left out, as warned already: a list by URL that never loaded (its own warning says what
/// happens), and a policy whose window is over. A policy with `block = []` is an exemption by
/// design, not a mistake, and `check`'s summary says so instead.
fn idle_warnings(snapshot: &Snapshot, now: i64) -> Vec<String> {
    let rules = &snapshot.rules;
    let never_loaded = |name: &str| snapshot.url_lists.iter().any(|l| l.name == name && l.missing());
    let empty = |id: usize| {
        let list = &rules.lists[id];
        list.set.is_empty() && !never_loaded(&list.name)
    };
    let mut out = Vec::new();
    for (id, list) in rules.lists.iter().enumerate() {
        if !empty(id) {
            continue;
        }
        let why = if list.bad_lines.is_empty() {
            "only comments or blank lines (an empty file, or an empty copy of a URL?)".to_string()
        } else {
            format!("no line of it is a rule ({} bad lines, above)", list.bad_lines.len())
        };
        out.push(format!(
            "list {:?} has no rules: {} holds {why}",
            &*list.name,
            if list.sources.is_empty() {
                "it".to_string()
            } else {
                list.sources.join(", ")
            }
        ));
    }
    for policy in rules.policies.iter() {
        let over = policy.window.until.is_some_and(|until| until <= now);
        if policy.block.is_empty() || over || !policy.block.iter().all(|(id, _)| empty(*id)) {
            continue;
        }
        let lists: Vec<&str> = policy.block.iter().map(|(id, _)| &*rules.lists[*id].name).collect();
        out.push(format!(
            "policy {:?} blocks nothing: every list it blocks ({}) has no rules, so its clients are forwarded \
             everything (for an exemption on purpose, write block = [])",
            &*policy.name,
            lists.join(", ")
        ));
    }
    out
}

/// The question `check --probe` asks each upstream: the root's name servers, which every
/// recursive resolver answers, from its cache, whatever it filters (NS: type 2, RFC 1035).
const PROBE_QUESTION: (&str, u16) = (".", 2);

/// `check --probe`: one query ([`PROBE_QUESTION`]) to each configured upstream, all at once,
/// each given the daemon's own time budget (`upstream.timeout_ms`), sent by the daemon's
/// forwarding code over the server's own transport (UDP with TCP on truncation, DNS over TLS,
/// DNS over HTTPS), so that what it finds is what the daemon will find. A line per upstream:
/// which answered and in how long; then a `warning: upstream ...` line for each that did not,
/// or answered SERVFAIL or REFUSED. The only part of `check` that uses the network.
pub fn probe(snapshot: &Snapshot) -> std::io::Result<String> {
    // A runtime of its own: encrypted upstreams' connections live on the runtime their pool is
    // built on, and check has none otherwise.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime.block_on(probe_all(snapshot));
    let timeout = snapshot.upstream.settings().timeout;
    let (name, qtype) = PROBE_QUESTION;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "probe     {name} {} to each upstream, {} at most each (upstream.timeout_ms)",
        crate::hitlog::type_name(qtype),
        show_duration(timeout)
    );
    let mut warnings = Vec::new();
    for (label, result) in &results {
        match result {
            Ok((took, rcode)) if !matches!(*rcode, crate::wire::rcode::SERVFAIL | crate::wire::rcode::REFUSED) => {
                let _ = writeln!(
                    out,
                    "  {label:<24} answered {} in {}",
                    rcode_name(*rcode),
                    show_duration(*took)
                );
            }
            Ok((took, rcode)) => {
                let _ = writeln!(out, "  {label:<24} failing");
                warnings.push(format!(
                    "warning: upstream {label}: answered {} in {}: it fails queries it should answer",
                    rcode_name(*rcode),
                    show_duration(*took)
                ));
            }
            Err(why) => {
                let _ = writeln!(out, "  {label:<24} failed");
                warnings.push(format!("warning: upstream {label}: {why}"));
            }
        }
    }
    for w in warnings {
        let _ = writeln!(out, "{w}");
    }
    Ok(out)
}

/// Each upstream's result, in configured order: how long its answer took and its rcode, or why
/// there was none, in the operator's words.
async fn probe_all(snapshot: &Snapshot) -> Vec<(String, Result<(std::time::Duration, u8), String>)> {
    use crate::upstream::{Sockets, Transport, UpstreamPool};
    let upstream = &snapshot.upstream;
    let settings = upstream.settings();
    let mut query = Vec::new();
    let (name, qtype) = PROBE_QUESTION;
    if let Err(e) = packet::encode_query(name, qtype, true, &mut query) {
        let why = format!("the probe query cannot be written: {e}");
        return upstream
            .specs()
            .iter()
            .map(|s| (s.label.clone(), Err(why.clone())))
            .collect();
    }
    let sockets = Sockets::new(1);
    let limits = snapshot.ttl_limits;
    // One pool per server, so that each is asked (a shared pool would stop at the first that
    // answers), concurrently: the probe takes one budget, not one per server.
    let probes = upstream.specs().iter().map(|spec| {
        let (query, sockets, limits) = (&query, &sockets, &limits);
        async move {
            let pool = UpstreamPool::with_specs(std::slice::from_ref(spec), settings, upstream.roots().clone())
                .map_err(|e| e.to_string())?;
            let start = std::time::Instant::now();
            match pool.forward(query, Transport::Udp(sockets), limits).await {
                Ok(answer) => Ok((start.elapsed(), answer.rcode())),
                Err(crate::upstream::ForwardError::Timeout(budget)) => {
                    Err(format!("no answer within {}", show_duration(budget)))
                }
                Err(crate::upstream::ForwardError::AllFailed { last, .. }) => {
                    Err(format!("failed after {}: {last}", show_duration(start.elapsed())))
                }
                Err(e) => Err(e.to_string()),
            }
        }
    });
    let results = futures_util::future::join_all(probes).await;
    upstream.specs().iter().map(|s| s.label.clone()).zip(results).collect()
}

/// A duration as an operator reads it: `2s`, `1.5s`, `12 ms`.
fn show_duration(d: std::time::Duration) -> String {
    if d >= std::time::Duration::from_secs(1) {
        let secs = d.as_secs_f64();
        if d.subsec_millis() == 0 {
            format!("{secs:.0}s")
        } else {
            format!("{secs:.1}s")
        }
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The mnemonic of an rcode, as dig shows it.
fn rcode_name(rcode: u8) -> String {
    format!("{:?}", ResponseCode::from_low(rcode)).to_ascii_uppercase()
}

/// A policy's phases, one a line, and what it does at `now`, each line after `indent`.
fn timeline_text(policy: &crate::policy::Policy, now: i64, indent: &str) -> String {
    let mut out = String::new();
    for (i, phase) in policy.phases.iter().enumerate() {
        let _ = writeln!(
            out,
            "{indent}phase {i}: {} until {}",
            phase.mode.as_str(),
            show_time(phase.until)
        );
    }
    if let Some(schedule) = &policy.schedule {
        let _ = writeln!(out, "{indent}schedule: {schedule}; blocks only inside it");
    }
    let _ = writeln!(out, "{indent}now: {}", phase_text(policy, now));
    out
}

/// What a policy does at `now`: its phase's mode (and index, with phases), or why it does not
/// block.
fn phase_text(policy: &crate::policy::Policy, now: i64) -> String {
    let next = |schedule: &crate::policy::Schedule| {
        schedule
            .next_change(now)
            .map_or_else(String::new, |t| format!(" until {}", show_time(t)))
    };
    match (policy.phase_at(now), &policy.schedule) {
        (Some((i, mode)), schedule) => {
            let phase = if policy.phases.is_empty() {
                String::new()
            } else {
                format!(" (phase {i})")
            };
            let inside = schedule
                .as_ref()
                .map_or_else(String::new, |s| format!(", inside its schedule{}", next(s)));
            format!("{}{phase}{inside}", mode.as_str())
        }
        (None, _) if policy.window.from.is_some_and(|from| now < from) => {
            "not blocking (before active_from)".to_string()
        }
        (None, Some(schedule)) if policy.window.contains(now) => {
            format!("not blocking (outside its schedule{})", next(schedule))
        }
        (None, _) => "not blocking (over)".to_string(),
    }
}

fn show_time(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |t| t.to_string())
}

fn window_text(window: crate::policy::Window, now: i64) -> String {
    let show = |t: Option<i64>| {
        t.and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map_or_else(|| "-".to_string(), |t| t.to_string())
    };
    match (window.from, window.until) {
        (None, None) => "always active".into(),
        _ => format!(
            "active from {} until {} ({})",
            show(window.from),
            show(window.until),
            if window.contains(now) {
                "active now"
            } else {
                "not active now"
            }
        ),
    }
}

/// `explain --via RELAY`: what `client` gets when its query comes through `relay` (dnsdist,
/// HAProxy, a dnsmasq forwarder): a trusted relay (`server.trusted_relays`) states its client,
/// so the verdict is `client`'s; any other relay's statement is ignored, and the verdict is the
/// relay's own. Says which, then explains for that address.
pub fn explain_via(
    state: &Arc<State>,
    relay: IpAddr,
    client: IpAddr,
    name: &str,
    qtype: u16,
    at: Option<i64>,
) -> Result<String, String> {
    let (line, asking) = through_relay(state, relay, client);
    Ok(format!("{line}\n{}", explain(state, asking, name, qtype, at)?))
}

/// Whose query `relay` brings when it states `client`: `client`'s if the relay is trusted, else
/// the relay's own; with the line that says so.
fn through_relay(state: &Arc<State>, relay: IpAddr, client: IpAddr) -> (String, IpAddr) {
    let trusted = crate::server::relay::is_trusted(&state.load().config.server.trusted_relays, relay);
    if trusted {
        (
            format!(
                "relay     {relay} is a trusted relay (server.trusted_relays): the client it states by PROXY \
                 header or Client Subnet, {client}, is the one answered for"
            ),
            client,
        )
    } else {
        (
            format!(
                "relay     {relay} is not in server.trusted_relays: the client it states ({client}) is ignored, \
                 and {relay}'s own policy applies"
            ),
            relay,
        )
    }
}

/// The `explain` report: which policy a client falls in and through which prefix, which list and
/// rule match the name, and the answer that would be sent. The answer is the packet path's own:
/// the query, as a client with EDNS sends it, goes through a [`Handler`] over `state` (with no
/// cache and no hit log), and the bytes it writes are decoded for display; an audited block's
/// answer is written by the same call the packet path makes for an enforced one. So `explain`
/// cannot say something the daemon does not do, for any query type or answer kind.
///
/// `at` is the moment asked about (Unix seconds; None: now): policies answer as they would then.
pub fn explain(state: &Arc<State>, client: IpAddr, name: &str, qtype: u16, at: Option<i64>) -> Result<String, String> {
    explained(state, client, name, qtype, at).map(|(text, _)| text)
}

/// The gist of one explanation, for `explain --file`'s one line per query: filled in by
/// [`explained`] as it writes the full text, so that both say the same.
#[derive(Debug, Default)]
struct Gist {
    /// The policy's name; `-` when the client may not query at all, `none` when no policy
    /// covers it.
    policy: String,
    /// What is done with the name: blocked, allowed, refused, ...
    verdict: String,
    /// The list and rule that matched, if one did.
    rule: Option<String>,
    /// The answer line's text (after `answer    `), or where the query goes.
    answer: String,
    /// In audit mode, the answer enforcing would send.
    would: Option<String>,
}

/// [`explain`]'s text and its [`Gist`].
fn explained(
    state: &Arc<State>,
    client: IpAddr,
    name: &str,
    qtype: u16,
    at: Option<i64>,
) -> Result<(String, Gist), String> {
    let mut gist = Gist::default();
    let clock = at.map_or_else(Clock::now, Clock::at);
    let now = clock.unix();
    let snapshot = state.load_full();
    let qname = QName::from_dotted(name).ok_or_else(|| format!("{name:?} is longer than a DNS name can be"))?;
    let mut packet = Vec::new();
    packet::encode_query(name, qtype, true, &mut packet).map_err(|e| format!("{name:?} cannot be asked: {e}"))?;
    let query = packet::parse(&packet).map_err(|e| format!("{name:?} cannot be asked: {e}"))?;
    let mut out = String::new();
    let qtype_name = crate::hitlog::type_name(qtype);
    let _ = writeln!(
        out,
        "query     {} {} from {}",
        qname.to_string_lossy(),
        qtype_name,
        client
    );
    let handler = Handler::new(Arc::clone(state), Arc::new(PacketCache::new(0, 0)), HitLog::disabled());
    let mut bytes = Vec::new();
    let step = handler.answer_fast(
        &packet,
        client,
        Protocol::Tcp,
        clock,
        &mut bytes,
        &mut Worker::default(),
    );
    let rules = &snapshot.rules;
    if !snapshot.acl.contains(client) {
        let _ = writeln!(out, "access    {client} is not in server.allow");
        let _ = write!(out, "{}", step_text(&step, &bytes, ("", ""), &snapshot));
        gist.policy = "-".into();
        gist.verdict = "refused (not in server.allow)".into();
        gist.answer = first_answer(&out);
        return Ok((out, gist));
    }
    match rules.policies.for_client(client) {
        None => {
            let _ = writeln!(out, "policy    none: no policy covers {client}, so nothing is blocked");
            gist.policy = "none".into();
        }
        Some((id, prefix)) => {
            let p = rules.policies.get(id);
            gist.policy = p.name.to_string();
            let _ = writeln!(
                out,
                "policy    {} (through {prefix}; mode {}; {})",
                p.name,
                p.mode.as_str(),
                window_text(p.window, now)
            );
            let _ = write!(out, "{}", timeline_text(p, now, "          "));
            for &list in &p.allow {
                let list = &rules.lists[list];
                if let Some(m) = list.set.lookup(qname.as_bytes()) {
                    let _ = writeln!(
                        out,
                        "exception list {} rule {:?}: never blocked by this policy",
                        list.name,
                        list.set.rule(m.rule)
                    );
                    gist.rule = Some(format!("exception list {} rule {:?}", list.name, list.set.rule(m.rule)));
                }
            }
        }
    }
    match engine::decide(rules, client, qname.as_bytes(), now) {
        Verdict::Refused => {
            gist.verdict = "refused".into();
            let _ = write!(out, "{}", step_text(&step, &bytes, ("", ""), &snapshot));
        }
        Verdict::Allowed { inspect } => {
            gist.verdict = "allowed".into();
            let _ = writeln!(
                out,
                "match     none{}",
                if inspect.is_some() {
                    ""
                } else {
                    " (the policy does not block now)"
                }
            );
            let mut note = String::new();
            if let Some(id) = inspect {
                note.push_str("; blocked all the same if its CNAME chain leads into a blocked name");
                let policy = rules.policies.get(id);
                if policy.checks_addresses {
                    // The answer's addresses are not known without asking the upstream.
                    let ranges: Vec<String> = policy
                        .block
                        .iter()
                        .map(|(list, _)| &rules.lists[*list])
                        .filter(|list| list.set.range_count() > 0)
                        .map(|list| format!("{} ({} ranges)", list.name, list.set.range_count()))
                        .collect();
                    let _ = write!(
                        note,
                        ", or if an A/AAAA address of its answer falls in an address range of {}",
                        ranges.join(", ")
                    );
                }
            }
            let _ = write!(out, "{}", step_text(&step, &bytes, ("", &note), &snapshot));
        }
        Verdict::NotReady(id) => {
            gist.verdict = "not ready (a list it blocks never loaded; fails closed)".into();
            let policy = rules.policies.get(id);
            let _ = writeln!(
                out,
                "match     none; but a list policy {} blocks has never loaded, and it fails closed \
                 (on_missing_list = \"closed\")",
                policy.name
            );
            let _ = write!(out, "{}", step_text(&step, &bytes, ("", ""), &snapshot));
        }
        Verdict::Blocked(hit) => {
            let list = &rules.lists[hit.list];
            let policy = rules.policies.get(hit.policy);
            let action = list.set.action(hit.rule);
            let _ = writeln!(out, "match     list {} rule {:?}", list.name, list.set.rule(hit.rule));
            gist.rule = Some(format!("list {} rule {:?}", list.name, list.set.rule(hit.rule)));
            if action.is_some() {
                let _ = writeln!(out, "          the rule's own answer (RPZ) wins over the policy's");
            }
            let kind = block_note(policy.answer_for(action, qtype), qtype);
            gist.verdict = match hit.mode {
                Mode::Audit => "audit mode: logged, not blocked".into(),
                Mode::Enforce => "blocked".into(),
            };
            if hit.mode == Mode::Audit {
                // The packet path answered as if nothing matched; the block answer is what
                // enforcing would send, written as the packet path writes it.
                let audit = " as usual: audit mode logs the hit and answers normally";
                let _ = write!(out, "{}", step_text(&step, &bytes, (audit, audit), &snapshot));
                let _ = writeln!(out, "would be");
                let mut block = Vec::new();
                policy.write_block_answer_for(action, &packet, &query, hit.apex_len, &mut block);
                let would = answer_text(&block, &kind);
                gist.would = Some(first_answer(&would));
                let _ = write!(out, "{would}");
            } else {
                let _ = write!(out, "{}", step_text(&step, &bytes, (&kind, ""), &snapshot));
            }
        }
    }
    gist.answer = first_answer(&out);
    Ok((out, gist))
}

/// `explain --file`: one query a line (`client name [type]`; `#` starts a comment, blank lines
/// are skipped), each explained by [`explained`], the code of `explain` itself, and written to
/// `out` as one line: client, name, type, policy, verdict, the rule that matched, the answer.
/// `via` and `at` apply to every line, as to a single `explain`. A line that cannot be
/// explained goes to `errors` as `SOURCE:LINE: why` and the others go on. Lines are read and
/// answered one at a time, so a file of any length takes the memory of one line.
///
/// Returns how many lines were bad; an error only if `input` cannot be read or `out` written.
pub fn explain_lines(
    state: &Arc<State>,
    (via, at): (Option<IpAddr>, Option<i64>),
    (input, source): (&mut dyn std::io::BufRead, &str),
    out: &mut dyn std::io::Write,
    errors: &mut dyn std::io::Write,
) -> std::io::Result<usize> {
    let mut bad = 0;
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(bad);
        }
        number += 1;
        let query = line.split('#').next().unwrap_or_default().trim();
        if query.is_empty() {
            continue;
        }
        match explain_line(state, (via, at), query) {
            Ok(text) => writeln!(out, "{text}")?,
            Err(why) => {
                bad += 1;
                writeln!(errors, "{source}:{number}: {why}")?;
            }
        }
    }
}

/// One line of `explain --file`, explained in one line.
fn explain_line(state: &Arc<State>, (via, at): (Option<IpAddr>, Option<i64>), query: &str) -> Result<String, String> {
    let fields: Vec<&str> = query.split_whitespace().collect();
    let (client, name, qtype) = match fields[..] {
        [client, name] => (client, name, "A"),
        [client, name, qtype] => (client, name, qtype),
        _ => {
            return Err(format!(
                "{query:?}: expected `client name [type]`, like `10.1.2.3 www.tiktok.com AAAA`"
            ));
        }
    };
    let client: IpAddr = client
        .parse()
        .map_err(|_| format!("{client:?} is not an IP address (expected `client name [type]`)"))?;
    let qtype = query_type(qtype)?;
    let (who, asking) = match via {
        None => (client.to_string(), client),
        Some(relay) => match through_relay(state, relay, client) {
            (_, asking) if asking == client => (format!("{client} via {relay}"), client),
            (_, asking) => (
                format!("{relay} (untrusted relay; its client {client} is ignored)"),
                asking,
            ),
        },
    };
    let (_, gist) = explained(state, asking, name, qtype, at)?;
    let mut text = format!(
        "{who} {name} {}: policy {}, {}",
        crate::hitlog::type_name(qtype),
        gist.policy,
        gist.verdict
    );
    if let Some(rule) = &gist.rule {
        let _ = write!(text, " ({rule})");
    }
    // The notes (what CNAME inspection might still do, what audit mode means) are the full
    // explain's.
    let answer = gist.answer.split("; ").next().unwrap_or_default();
    let answer = answer.split(" as usual").next().unwrap_or_default();
    let _ = write!(text, "; answer {answer}");
    if let Some(would) = &gist.would {
        let _ = write!(text, "\n    would be, enforced: {would}");
    }
    Ok(text)
}

/// A query type as an operator writes it: a mnemonic (A, AAAA, HTTPS, any case) or `TYPEnnn`.
pub fn query_type(text: &str) -> Result<u16, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(number) = upper.strip_prefix("TYPE")
        && let Ok(n) = number.parse::<u16>()
    {
        return Ok(n);
    }
    hickory_proto::rr::RecordType::from_str(&upper)
        .map(u16::from)
        .map_err(|_| format!("unknown query type {text:?} (use A, AAAA, MX, ... or TYPEnnn)"))
}

/// The text of the first `answer` line of an explanation: what the client is sent (or where
/// its query goes).
fn first_answer(text: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix("answer    "))
        .unwrap_or("-")
        .to_string()
}

/// What the handler did with the query, for display: the answer it wrote (the first note after
/// its summary), or where it would forward the query (the second note after that).
fn step_text(step: &Step, bytes: &[u8], (reply, forward): (&str, &str), snapshot: &Snapshot) -> String {
    match step {
        Step::Reply => answer_text(bytes, reply),
        Step::Forward(_) => format!(
            "answer    forwarded to {}{forward}\n",
            snapshot.upstream.specs().first().map_or("-", |s| s.label.as_str()),
        ),
        Step::Drop => "answer    none: the query is dropped\n".into(),
    }
}

/// What follows a block answer's summary: the policy's answer kind, and why an address answer
/// gives no address to this query type.
fn block_note(answer: BlockAnswer, qtype: u16) -> String {
    let only = match answer {
        BlockAnswer::Address(IpAddr::V4(_)) => "A queries only",
        BlockAnswer::Address(IpAddr::V6(_)) => "AAAA queries only",
        BlockAnswer::Null => "A and AAAA queries only",
        _ => return format!(" ({answer})"),
    };
    match answer.address_for(qtype) {
        Some(_) => format!(" ({answer})"),
        None => format!(" ({answer}, an address for {only})"),
    }
}

/// An answer as written for the client, decoded back for display: its rcode (NODATA for a
/// NOERROR without answer records), `note`, its records, and its Extended DNS Error.
fn answer_text(bytes: &[u8], note: &str) -> String {
    let Ok(message) = Message::from_vec(bytes) else {
        return "answer    (undecodable)\n".into();
    };
    let mut out = String::new();
    let code = message.metadata.response_code;
    let summary = if code == ResponseCode::NoError && message.answers.is_empty() {
        "NODATA".to_string()
    } else {
        // The mnemonic operators know from dig (NXDOMAIN), not hickory's prose.
        format!("{code:?}").to_ascii_uppercase()
    };
    let _ = writeln!(out, "answer    {summary}{note}");
    for record in message.answers.iter().chain(&message.authorities) {
        let _ = writeln!(out, "          {record}");
    }
    let ede = message.edns.as_ref().and_then(|edns| {
        edns.options().as_ref().iter().find_map(|(_, option)| match option {
            EdnsOption::Unknown(OPTION_EDE, data) if data.len() >= 2 => Some((
                u16::from_be_bytes([data[0], data[1]]),
                String::from_utf8_lossy(&data[2..]).into_owned(),
            )),
            _ => None,
        })
    });
    if let Some((code, text)) = ede {
        let _ = writeln!(
            out,
            "          EDE {code} {}{text:?} (to clients that send EDNS)",
            ede_name(code)
        );
    }
    out
}

/// The EDNS option code of Extended DNS Errors (RFC 8914).
const OPTION_EDE: u16 = 15;

/// The name of an Extended DNS Error code we send (RFC 8914 5.2), with a space after it.
fn ede_name(code: u16) -> &'static str {
    match code {
        ede::OTHER => "Other ",
        ede::NOT_READY => "Not Ready ",
        ede::BLOCKED => "Blocked ",
        ede::PROHIBITED => "Prohibited ",
        ede::NOT_SUPPORTED => "Not Supported ",
        ede::NO_REACHABLE_AUTHORITY => "No Reachable Authority ",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Origin};
    use crate::wire::rtype;

    /// One policy per answer kind, an audit one and one that blocks nothing, over one inline list.
    const CONFIG: &str = r#"
[server]
allow = ["10.0.0.0/8"]
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "nx"
clients = ["10.1.0.0/16"]
block = ["tiktok"]
[[policy]]
name = "nodata"
clients = ["10.2.0.0/16"]
block = ["tiktok"]
answer = "nodata"
[[policy]]
name = "null"
clients = ["10.3.0.0/16"]
block = ["tiktok"]
answer = "null"
[[policy]]
name = "refused"
clients = ["10.4.0.0/16"]
block = ["tiktok"]
answer = "refused"
[[policy]]
name = "page4"
clients = ["10.5.0.0/16"]
block = ["tiktok"]
answer = "192.0.2.53"
[[policy]]
name = "page6"
clients = ["10.6.0.0/16"]
block = ["tiktok"]
answer = "2001:db8::53"
[[policy]]
name = "pilot"
clients = ["10.7.0.0/16"]
block = ["tiktok"]
mode = "audit"
[[policy]]
name = "comms"
clients = ["10.8.0.0/16"]
block = []
"#;

    fn state() -> Arc<State> {
        let config = Config::parse(Origin {
            name: "explain-test.toml".into(),
            dir: ".".into(),
            text: CONFIG.into(),
        })
        .expect("test config loads");
        Arc::new(State::from_config(config).expect("test state builds"))
    }

    /// The `answer` lines of `explain`, joined by " | ", and its whole text.
    fn explained(state: &Arc<State>, client: &str, name: &str, qtype: u16) -> (String, String) {
        let text = explain(state, client.parse().expect("test address"), name, qtype, None).expect("explains");
        let answers: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("answer    ")).collect();
        (answers.join(" | "), text)
    }

    #[test]
    fn explain_lines_says_in_one_line_what_explain_says_and_counts_bad_lines() {
        let state = state();
        let input = "# comment\n10.1.0.1 www.tiktok.com\n\n10.7.0.1 tiktok.com aaaa # audit\n\
                     10.8.0.1 tiktok.com\nnope\n10.1.0.1 tiktok.com TYPE65\n10.1.0.1 a..b\n";
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let bad = explain_lines(
            &state,
            (None, None),
            (&mut input.as_bytes(), "q.txt"),
            &mut out,
            &mut errors,
        )
        .expect("in memory");
        let (out, errors) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&errors));
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "10.1.0.1 www.tiktok.com A: policy nx, blocked (list tiktok rule \"tiktok.com\"); answer NXDOMAIN (nxdomain)",
                "10.7.0.1 tiktok.com AAAA: policy pilot, audit mode: logged, not blocked (list tiktok rule \
                 \"tiktok.com\"); answer forwarded to 127.0.0.1:5300",
                "    would be, enforced: NXDOMAIN (nxdomain)",
                "10.8.0.1 tiktok.com A: policy comms, allowed; answer forwarded to 127.0.0.1:5300",
                "10.1.0.1 tiktok.com HTTPS: policy nx, blocked (list tiktok rule \"tiktok.com\"); answer NXDOMAIN (nxdomain)",
            ],
            "{out}"
        );
        assert_eq!(bad, 2, "{errors}");
        let errors: Vec<&str> = errors.lines().collect();
        assert!(errors[0].starts_with("q.txt:6: \"nope\": expected"), "{errors:?}");
        assert!(errors[1].starts_with("q.txt:8: \"a..b\" cannot be asked"), "{errors:?}");
    }

    #[test]
    fn durations_read_as_an_operator_writes_them() {
        use std::time::Duration;
        assert_eq!(show_duration(Duration::from_millis(3)), "3 ms");
        assert_eq!(show_duration(Duration::from_millis(999)), "999 ms");
        assert_eq!(show_duration(Duration::from_secs(2)), "2s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn explain_says_what_the_daemon_answers_for_every_type_and_answer_kind() {
        const HTTPS: u16 = 65;
        const MX: u16 = 15;
        let forward = "forwarded to 127.0.0.1:5300";
        let inspect = "forwarded to 127.0.0.1:5300; blocked all the same if its CNAME chain leads into a blocked name";
        let audit =
            "forwarded to 127.0.0.1:5300 as usual: audit mode logs the hit and answers normally | NXDOMAIN (nxdomain)";
        // (client, name, type, the answer lines, a line the text must hold)
        let cases: &[(&str, &str, u16, &str, &str)] = &[
            (
                "10.1.0.1",
                "www.tiktok.com",
                rtype::A,
                "NXDOMAIN (nxdomain)",
                "tiktok.com. 10 IN SOA",
            ),
            (
                "10.1.0.1",
                "www.tiktok.com",
                rtype::AAAA,
                "NXDOMAIN (nxdomain)",
                "tiktok.com. 10 IN SOA",
            ),
            (
                "10.1.0.1",
                "tiktok.com",
                rtype::ANY,
                "NXDOMAIN (nxdomain)",
                "EDE 15 Blocked \"blocked by policy nx\"",
            ),
            (
                "10.2.0.1",
                "tiktok.com",
                rtype::A,
                "NODATA (nodata)",
                "tiktok.com. 10 IN SOA",
            ),
            (
                "10.3.0.1",
                "tiktok.com",
                rtype::A,
                "NOERROR (null)",
                "tiktok.com. 10 IN A 0.0.0.0",
            ),
            (
                "10.3.0.1",
                "tiktok.com",
                rtype::AAAA,
                "NOERROR (null)",
                "tiktok.com. 10 IN AAAA ::",
            ),
            (
                "10.3.0.1",
                "tiktok.com",
                MX,
                "NODATA (null, an address for A and AAAA queries only)",
                "IN SOA",
            ),
            (
                "10.4.0.1",
                "tiktok.com",
                rtype::A,
                "REFUSED (refused)",
                "EDE 15 Blocked",
            ),
            (
                "10.5.0.1",
                "tiktok.com",
                rtype::A,
                "NOERROR (192.0.2.53)",
                "tiktok.com. 10 IN A 192.0.2.53",
            ),
            (
                "10.5.0.1",
                "www.tiktok.com",
                rtype::AAAA,
                "NODATA (192.0.2.53, an address for A queries only)",
                "tiktok.com. 10 IN SOA",
            ),
            (
                "10.5.0.1",
                "tiktok.com",
                HTTPS,
                "NODATA (192.0.2.53, an address for A queries only)",
                "IN SOA",
            ),
            (
                "10.6.0.1",
                "tiktok.com",
                rtype::AAAA,
                "NOERROR (2001:db8::53)",
                "tiktok.com. 10 IN AAAA 2001:db8::53",
            ),
            (
                "10.6.0.1",
                "tiktok.com",
                rtype::A,
                "NODATA (2001:db8::53, an address for AAAA queries only)",
                "IN SOA",
            ),
            ("10.7.0.1", "www.tiktok.com", rtype::A, audit, "would be"),
            (
                "10.7.0.1",
                "tiktok.com",
                rtype::ANY,
                "NOERROR as usual: audit mode logs the hit and answers normally | NXDOMAIN (nxdomain)",
                "IN HINFO RFC8482",
            ),
            ("10.8.0.1", "tiktok.com", rtype::A, forward, "policy    comms"),
            ("10.1.0.1", "example.com", rtype::A, inspect, "match     none"),
            (
                "10.9.0.1",
                "example.com",
                rtype::ANY,
                "NOERROR",
                "example.com. 3600 IN HINFO RFC8482",
            ),
            (
                "10.1.0.1",
                "example.com",
                rtype::AXFR,
                "REFUSED",
                "EDE 21 Not Supported \"zone transfers are not served\"",
            ),
            (
                "192.0.2.1",
                "example.com",
                rtype::A,
                "REFUSED",
                "EDE 18 Prohibited \"client not allowed\"",
            ),
        ];
        let state = state();
        for (client, name, qtype, answers, line) in cases {
            let (got, text) = explained(&state, client, name, *qtype);
            assert_eq!(got, *answers, "{client} asks {name} {qtype}:\n{text}");
            assert!(
                text.contains(line),
                "{client} asks {name} {qtype}: no {line:?} in\n{text}"
            );
        }
    }
}
