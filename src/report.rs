//! What `sinkhole check` and `sinkhole explain` print: plain text for the operator, built from
//! a snapshot exactly as the daemon would build it, so what they say is what the daemon does.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::Mode;
use crate::engine::{self, Verdict};
use crate::packet::{self, QName};
use crate::state::{Snapshot, now_unix};

/// The `check` summary: listeners, upstreams, lists with rule counts, policies, warnings.
pub fn check(snapshot: &Snapshot) -> String {
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
    let upstream: Vec<String> = snapshot.upstream.servers().iter().map(ToString::to_string).collect();
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
        let _ = writeln!(
            out,
            "  {:<14} {:>7} rules, {} bad lines, from {}",
            list.name,
            list.set.len(),
            list.bad_lines.len(),
            list.sources.join(", ")
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
        let _ = writeln!(
            out,
            "    blocks {}; exceptions {}; answer {}; mode {}; {}",
            names(&mut policy.block.iter().map(|(id, _)| *id)),
            names(&mut policy.allow.iter().copied()),
            policy.answer(),
            policy.mode.as_str(),
            window_text(policy.window)
        );
    }
    if !snapshot.warnings.is_empty() {
        let _ = writeln!(out, "warnings");
        for w in &snapshot.warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    out
}

fn window_text(window: crate::config::Window) -> String {
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
            if window.contains(now_unix()) {
                "active now"
            } else {
                "not active now"
            }
        ),
    }
}

/// The `explain` report: which policy a client falls in and through which prefix, which list and
/// rule match the name, and the answer that would be sent (for a block, decoded from the very
/// bytes the daemon would send).
pub fn explain(snapshot: &Snapshot, client: IpAddr, name: &str, qtype: u16) -> Result<String, String> {
    let qname = QName::from_dotted(name).ok_or_else(|| format!("{name:?} is longer than a DNS name can be"))?;
    let mut out = String::new();
    let qtype_name = crate::hitlog::type_name(qtype);
    let _ = writeln!(
        out,
        "query     {} {} from {}",
        qname.to_string_lossy(),
        qtype_name,
        client
    );
    if !snapshot.acl.contains(client) {
        let _ = writeln!(out, "access    {client} is not in server.allow");
        let _ = writeln!(out, "answer    REFUSED (EDE 18 Prohibited)");
        return Ok(out);
    }
    match snapshot.rules.policies.for_client(client) {
        None => {
            let _ = writeln!(out, "policy    none: no policy covers {client}, so nothing is blocked");
        }
        Some((id, prefix)) => {
            let p = snapshot.rules.policies.get(id);
            let _ = writeln!(
                out,
                "policy    {} (through {prefix}; mode {}; {})",
                p.name,
                p.mode.as_str(),
                window_text(p.window)
            );
            for &list in &p.allow {
                let list = &snapshot.rules.lists[list];
                if let Some(m) = list.set.lookup(qname.as_bytes()) {
                    let _ = writeln!(
                        out,
                        "exception list {} rule {:?}: never blocked by this policy",
                        list.name,
                        list.set.rule(m.rule)
                    );
                }
            }
        }
    }
    match engine::decide(&snapshot.rules, client, qname.as_bytes(), now_unix()) {
        Verdict::Refused => {
            let _ = writeln!(out, "answer    REFUSED");
        }
        Verdict::Allowed { inspect } => {
            let _ = writeln!(
                out,
                "match     none{}",
                if inspect.is_some() {
                    ""
                } else {
                    " (the policy does not block now)"
                }
            );
            let _ = writeln!(
                out,
                "answer    forwarded to {}{}",
                snapshot
                    .upstream
                    .servers()
                    .first()
                    .map_or_else(|| "-".into(), ToString::to_string),
                if inspect.is_some() {
                    "; blocked all the same if its CNAME chain leads into a blocked name"
                } else {
                    ""
                }
            );
        }
        Verdict::Blocked(hit) => {
            let list = &snapshot.rules.lists[hit.list];
            let _ = writeln!(out, "match     list {} rule {:?}", list.name, list.set.rule(hit.rule));
            if hit.mode == Mode::Audit {
                let _ = writeln!(
                    out,
                    "answer    forwarded as usual: audit mode logs the hit and answers normally"
                );
                let _ = writeln!(out, "would be");
            }
            let _ = write!(out, "{}", block_answer_text(snapshot, hit, &qname, qtype));
        }
    }
    Ok(out)
}

/// The block answer for a hit, as the daemon would encode it, decoded back for display.
fn block_answer_text(snapshot: &Snapshot, hit: engine::Hit, qname: &QName, qtype: u16) -> String {
    // The query as a client with EDNS would send it.
    let mut packet = Vec::new();
    let query = packet::encode_query(&qname.to_string_lossy(), qtype, true, &mut packet)
        .ok()
        .and_then(|()| packet::parse(&packet).ok());
    let Some(query) = query else {
        return "answer    (cannot encode this name)\n".into();
    };
    let mut bytes = Vec::new();
    let policy = snapshot.rules.policies.get(hit.policy);
    policy.write_block_answer(&packet, &query, hit.apex_len, &mut bytes);
    let Ok(message) = hickory_proto::op::Message::from_vec(&bytes) else {
        return "answer    (undecodable)\n".into();
    };
    let mut out = String::new();
    // The mnemonic operators know from dig (NXDOMAIN), not hickory's prose.
    let rcode = format!("{:?}", message.metadata.response_code).to_ascii_uppercase();
    let _ = writeln!(out, "answer    {rcode} ({})", policy.answer());
    for record in message.answers.iter().chain(&message.authorities) {
        let _ = writeln!(out, "          {record}");
    }
    let _ = writeln!(
        out,
        "          EDE 15 Blocked \"blocked by policy {}\" (to clients that send EDNS)",
        policy.name
    );
    out
}
