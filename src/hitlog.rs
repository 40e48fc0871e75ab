//! The hit log: one JSON object per line for every blocked or audited query, and nothing else.
//!
//! The packet path hands a fixed-size [`HitRecord`] to a bounded queue and goes on; a writer
//! thread formats, applies the client-address privacy mode and writes. A full queue drops the
//! record and counts it (`sinkhole_hitlog_dropped_total`) rather than slowing queries down.
//! Allowed queries are never logged (DESIGN.md "Privacy").
//!
//! Schema (stable; fields are never renamed, new ones may be added):
//! `time` (RFC 3339, UTC), `client` (per `log.client_ip`; absent with `none`), `policy`, `list`,
//! `rule` (as in the list, normalised), `qname`, `qtype`, `answer` (what the policy answers),
//! `mode` (`enforce`: that answer was sent; `audit`: only logged), `protocol` (`udp`, `tcp`), and
//! `cname` (the name in the answer's CNAME chain that matched) for blocks found by CNAME inspection.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::Serialize;

use crate::config::{ClientIpMode, HitsTarget};
use crate::engine::Hit;
use crate::packet::QName;
use crate::state::Snapshot;

/// One hit, as the packet path records it: fixed size, no allocation to build.
pub struct HitRecord {
    /// When it was decided.
    pub time: SystemTime,
    /// The client's address, before any privacy mode is applied.
    pub client: IpAddr,
    /// The snapshot that decided, to name the policy, list and rule.
    pub snapshot: Arc<Snapshot>,
    /// What matched.
    pub hit: Hit,
    /// The name asked.
    pub qname: QName,
    /// The type asked.
    pub qtype: u16,
    /// The chain name that matched, when the block came from CNAME inspection.
    pub cname: Option<QName>,
    /// `udp` or `tcp`.
    pub protocol: &'static str,
}

// The record travels inline on purpose: the channel's slots are allocated once, up front, and a
// Box would cost an allocation per hit on the packet path.
#[allow(clippy::large_enum_variant)]
enum Message {
    Hit(HitRecord),
    Reopen,
    Close,
}

/// The sending side, cloned into every worker. Dropping the last one stops the writer.
#[derive(Clone)]
pub struct HitLog {
    queue: Option<SyncSender<Message>>,
    dropped: metrics::Counter,
}

/// The writer thread, joined at shutdown after the senders are gone so that no line is lost.
pub struct HitLogWriter {
    thread: Option<JoinHandle<()>>,
}

impl HitLogWriter {
    /// Waits for the writer to drain the queue and flush.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("hit log writer panicked");
        }
    }
}

impl HitLog {
    /// Starts the writer for `target` with a queue of `capacity` records. A file target is opened
    /// now, so that a path that cannot be written fails the start rather than losing hits.
    pub fn start(target: HitsTarget, capacity: usize) -> io::Result<(HitLog, HitLogWriter)> {
        let dropped = metrics::counter!(crate::metrics::HITLOG_DROPPED);
        let sink = match target {
            HitsTarget::Off => {
                return Ok((HitLog { queue: None, dropped }, HitLogWriter { thread: None }));
            }
            target => Sink::open(target)?,
        };
        let (tx, rx) = sync_channel(capacity);
        let thread = std::thread::Builder::new()
            .name("hitlog".into())
            .spawn(move || write_loop(rx, sink))?;
        Ok((
            HitLog {
                queue: Some(tx),
                dropped,
            },
            HitLogWriter { thread: Some(thread) },
        ))
    }

    /// A hit log that writes nothing (for tools and tests that need no log).
    pub fn disabled() -> HitLog {
        HitLog {
            queue: None,
            dropped: metrics::counter!(crate::metrics::HITLOG_DROPPED),
        }
    }

    /// Queues a record; never blocks. Drops and counts it if the writer is behind.
    pub fn record(&self, record: HitRecord) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(Message::Hit(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped.increment(1),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Tells the writer to write what is queued, flush and stop: at shutdown, after the
    /// listeners stopped, so that no hit is lost and no lingering sender keeps it alive.
    pub fn close(&self) {
        if let Some(queue) = &self.queue {
            let _ = queue.send(Message::Close);
        }
    }

    /// Asks the writer to reopen its file (after logrotate moved it): sent on SIGHUP.
    pub fn reopen(&self) {
        if let Some(queue) = &self.queue {
            let _ = queue.try_send(Message::Reopen);
        }
    }
}

enum Sink {
    Stderr,
    Stdout,
    File(PathBuf, BufWriter<std::fs::File>),
}

impl Sink {
    fn open(target: HitsTarget) -> io::Result<Sink> {
        Ok(match target {
            HitsTarget::Stdout => Sink::Stdout,
            HitsTarget::File(path) => {
                let file =
                    OpenOptions::new().create(true).append(true).open(&path).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot open hit log {}: {e}", path.display()))
                    })?;
                Sink::File(path, BufWriter::new(file))
            }
            HitsTarget::Stderr | HitsTarget::Off => Sink::Stderr,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stderr => io::stderr().lock().write_all(line),
            Sink::Stdout => io::stdout().lock().write_all(line),
            Sink::File(_, w) => w.write_all(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stderr => io::stderr().flush(),
            Sink::Stdout => io::stdout().flush(),
            Sink::File(_, w) => w.flush(),
        }
    }

    fn reopen(&mut self) {
        if let Sink::File(path, writer) = self {
            let _ = writer.flush();
            match OpenOptions::new().create(true).append(true).open(&*path) {
                Ok(file) => *writer = BufWriter::new(file),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot reopen the hit log, keeping the old file")
                }
            }
        }
    }
}

fn write_loop(rx: Receiver<Message>, mut sink: Sink) {
    let mut line = Vec::with_capacity(512);
    let mut hasher = ClientHasher::default();
    let mut failing = false;
    loop {
        let message = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => {
                // Queue drained: make what we have visible before sleeping on the next record.
                let _ = sink.flush();
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match message {
            Message::Close => break,
            Message::Reopen => sink.reopen(),
            Message::Hit(record) => {
                line.clear();
                if serde_json::to_writer(&mut line, &render(&record, &mut hasher)).is_err() {
                    continue;
                }
                line.push(b'\n');
                match sink.write_line(&line) {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!(error = %e, "cannot write the hit log");
                    }
                    Err(_) => {}
                }
            }
        }
    }
    let _ = sink.flush();
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    policy: &'a str,
    list: &'a str,
    rule: &'a str,
    qname: std::borrow::Cow<'a, str>,
    qtype: String,
    answer: String,
    mode: &'static str,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cname: Option<std::borrow::Cow<'a, str>>,
}

fn render<'a>(r: &'a HitRecord, hasher: &mut ClientHasher) -> Line<'a> {
    let s = &r.snapshot;
    let policy = s.policies.get(r.hit.policy);
    let list = &s.lists[r.hit.list];
    let time = jiff::Timestamp::try_from(r.time)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default();
    Line {
        time,
        client: client_field(
            r.client,
            s.config.log.client_ip,
            s.config.log.salt.as_ref().map(|x| x.get_ref().as_str()),
            hasher,
        ),
        policy: &policy.name,
        list: &list.name,
        rule: list.set.rule(r.hit.rule),
        qname: r.qname.to_string_lossy(),
        qtype: type_name(r.qtype),
        answer: policy.answer().to_string(),
        mode: r.hit.mode.as_str(),
        protocol: r.protocol,
        cname: r.cname.as_ref().map(QName::to_string_lossy),
    }
}

/// The `client` field per the privacy mode.
fn client_field(ip: IpAddr, mode: ClientIpMode, salt: Option<&str>, hasher: &mut ClientHasher) -> Option<String> {
    let ip = ip.to_canonical();
    match mode {
        ClientIpMode::Full => Some(ip.to_string()),
        ClientIpMode::Truncated => {
            let prefix = if ip.is_ipv4() { 24 } else { 56 };
            IpNet::new(ip, prefix).ok().map(|n| n.trunc().to_string())
        }
        ClientIpMode::Hashed => Some(hasher.hash(ip, salt.unwrap_or_default())),
        ClientIpMode::None => None,
    }
}

/// Keyed hashing of client addresses: BLAKE3 keyed with a key derived from the salt, so the
/// token is stable for a client and meaningless without the salt. The key is derived once per
/// salt, not per line.
#[derive(Default)]
struct ClientHasher {
    salt: String,
    key: [u8; 32],
}

impl ClientHasher {
    fn hash(&mut self, ip: IpAddr, salt: &str) -> String {
        if self.salt != salt || self.salt.is_empty() {
            self.salt = salt.to_string();
            self.key = blake3::derive_key("sinkhole hit log client address v1", salt.as_bytes());
        }
        let octets: Vec<u8> = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let hash = blake3::keyed_hash(&self.key, &octets);
        hash.as_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A record type's mnemonic ("A", "AAAA"), or `TYPE123` (RFC 3597) for types without one.
pub fn type_name(qtype: u16) -> String {
    let rtype = hickory_proto::rr::RecordType::from(qtype);
    if matches!(rtype, hickory_proto::rr::RecordType::Unknown(_)) {
        format!("TYPE{qtype}")
    } else {
        rtype.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privacy_modes() {
        let mut h = ClientHasher::default();
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let v6: IpAddr = "2001:db8:aa:bbcc::1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(
            client_field(ip, ClientIpMode::Full, None, &mut h).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            client_field(mapped, ClientIpMode::Full, None, &mut h).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            client_field(ip, ClientIpMode::Truncated, None, &mut h).as_deref(),
            Some("10.1.2.0/24")
        );
        assert_eq!(
            client_field(v6, ClientIpMode::Truncated, None, &mut h).as_deref(),
            Some("2001:db8:aa:bb00::/56")
        );
        assert_eq!(client_field(ip, ClientIpMode::None, None, &mut h), None);
        let a = client_field(ip, ClientIpMode::Hashed, Some("0123456789abcdef"), &mut h).expect("hash");
        let b = client_field(ip, ClientIpMode::Hashed, Some("0123456789abcdef"), &mut h).expect("hash");
        let c = client_field(ip, ClientIpMode::Hashed, Some("another salt 12345"), &mut h).expect("hash");
        assert_eq!(a, b, "stable for one salt");
        assert_ne!(a, c, "depends on the salt");
        assert_eq!(a.len(), 16);
        assert!(!a.contains("10.1"));
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(1), "A");
        assert_eq!(type_name(28), "AAAA");
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(type_name(65000), "TYPE65000");
    }
}
