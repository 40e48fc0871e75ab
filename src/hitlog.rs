//! The hit log: one JSON object per line for every blocked or audited query, and nothing else.
//!
//! The packet path hands a fixed-size [`HitRecord`] to a bounded queue and goes on; a writer
//! thread, which wakes every 20 ms rather than per record, formats, applies the client-address
//! privacy mode and writes the lines in batches. A full queue drops the record and counts it
//! (`sinkhole_hitlog_dropped_total`) rather than slowing queries down, and so does a write that
//! fails (a full disk): the error is logged once, the lines are counted, and the writer goes on
//! with the next batch, so that the log resumes when there is room again. Each UDP worker has a
//! queue of its own ([`HitLog::sender`]) and names the snapshot its records were decided in only
//! when it changes: a queue shared by all workers, and a reference count taken on the shared
//! snapshot per record, would be two writes per block to memory every core uses.
//! Allowed queries are never logged (ARCHITECTURE.md "Privacy").
//!
//! Schema (stable; fields are never renamed, new ones may be added):
//! `time` (RFC 3339, UTC), `client` (per `log.client_ip`; absent with `none`), `policy`, `list`,
//! `rule` (as in the list, normalised), `qname`, `qtype`, `answer` (what the policy answers, or
//! the rule's own answer in an RPZ list),
//! `mode` (`enforce`: that answer was sent; `audit`: only logged), `phase` (the index of the
//! policy's phase then, in its `phases`; 0 without them: with `mode`, which phase of a ban's
//! timeline it was), `protocol` (`udp`, `tcp`, `dot` for DNS over TLS, `doh` for DNS over HTTPS), and
//! `cname` (the name in the answer's CNAME chain that matched) for blocks found by CNAME inspection,
//! and `address` (the answer's A/AAAA address that a list's range holds; `rule` is the range) for
//! blocks found by answer-address rules.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use crate::engine::Hit;
use crate::packet::QName;
use crate::policy::Rules;

/// Where hit log lines go (`log.hits`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Standard error, beside the operational log.
    Stderr,
    /// Standard output.
    Stdout,
    /// A file, appended to and reopened on SIGHUP (after logrotate moved it).
    File(PathBuf),
    /// Nowhere: hits are only counted.
    Off,
}

/// How the hit log is started: where lines go and how many records may wait for the writer.
/// Built by the wiring code from the config; both take effect at start only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where lines go.
    pub target: Target,
    /// Records that may wait for the writer (`log.queue`), shared out between the workers.
    pub queue: usize,
}

/// What a line's `client` field shows (`log.client_ip`): read from the configuration each hit
/// was decided in, so that a reload changes it from the next hit on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientPrivacy {
    /// The address.
    Full,
    /// The address's /24 (IPv4) or /56 (IPv6).
    Truncated,
    /// A keyed hash of the address with this secret: the same client gives the same token,
    /// which reveals nothing without the secret.
    Hashed(String),
    /// No `client` field.
    Omitted,
}

/// A record's [`HitContext`], as the writer holds it.
type Context = Arc<dyn HitContext>;

/// What the writer reads, for each record, of the configuration that decided it: the rules that
/// name its policy, list and rule, and how to show its client. The live snapshot is one
/// (`state`); the writer holds it while its records wait, so that a line names what decided it
/// even after a reload.
pub trait HitContext: Send + Sync + 'static {
    /// The rules the hit's ids index.
    fn rules(&self) -> &Rules;
    /// How the client is shown.
    fn client_privacy(&self) -> &ClientPrivacy;
}

/// One hit, as the packet path records it: fixed size, no allocation to build.
pub struct HitRecord {
    /// When it was decided.
    pub time: SystemTime,
    /// The client's address, before any privacy mode is applied.
    pub client: IpAddr,
    /// What matched.
    pub hit: Hit,
    /// The name asked.
    pub qname: QName,
    /// The type asked.
    pub qtype: u16,
    /// The chain name that matched, when the block came from CNAME inspection.
    pub cname: Option<QName>,
    /// The answer's address that matched, when the block came from a list's address ranges.
    pub address: Option<IpAddr>,
    /// `udp`, `tcp`, `dot` or `doh`.
    pub protocol: &'static str,
}

// The record travels inline on purpose: the channel's slots are allocated once, up front, and a
// Box would cost an allocation per hit on the packet path.
#[allow(clippy::large_enum_variant)]
enum Message {
    /// A record, and the context that decided it (to name policy, list and rule); None on a
    /// worker's own queue when it is the one of the queue's previous record.
    Hit(Option<Context>, HitRecord),
    /// A worker's own queue, to be read from now on (sent on the shared queue).
    Join(Receiver<Message>),
    Reopen,
    Close,
}

/// The sending side, cloned into every worker. Dropping the last one stops the writer.
#[derive(Clone)]
pub struct HitLog {
    queue: Option<SyncSender<Message>>,
    /// Size of each worker's own queue.
    capacity: usize,
    dropped: metrics::Counter,
}

/// The least a worker's own queue holds, whatever the share: 20 ms (the writer's poll) of the blocks of a
/// worker at saturation (about 400,000 queries a second, a fifth of them blocked).
pub(crate) const MIN_WORKER_QUEUE: usize = 2048;

/// One worker's own queue to the writer ([`HitLog::sender`]): only it and the writer touch it,
/// and it sends the snapshot a record was decided in only when that changed.
pub struct HitSender {
    queue: SyncSender<Message>,
    /// The snapshot of the last record sent, by address. That snapshot cannot be freed (nor its
    /// address reused) meanwhile: the message in the queue, then the writer, holds it.
    last: Option<usize>,
    dropped: metrics::Counter,
}

impl HitSender {
    /// Queues a record decided in `context` (the snapshot); never blocks. Drops and counts it
    /// if the writer is behind.
    pub fn record<C: HitContext>(&mut self, context: &Arc<C>, record: HitRecord) {
        let address = Arc::as_ptr(context) as usize;
        let same = self.last == Some(address);
        let named = (!same).then(|| Arc::clone(context) as Arc<dyn HitContext>);
        match self.queue.try_send(Message::Hit(named, record)) {
            Ok(()) => self.last = Some(address),
            Err(TrySendError::Full(_)) => {
                self.dropped.increment(1);
                if !same {
                    // The snapshot went nowhere: name it again with the next record.
                    self.last = None;
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
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
    /// Starts the writer as `settings` say. A file target is opened now, so that a path that
    /// cannot be written fails the start rather than losing hits.
    pub fn start(settings: Settings) -> io::Result<(HitLog, HitLogWriter)> {
        let Settings {
            target,
            queue: capacity,
        } = settings;
        let dropped = metrics::counter!(crate::metrics::HITLOG_DROPPED);
        let sink = match target {
            Target::Off => {
                let off = HitLog {
                    queue: None,
                    capacity,
                    dropped,
                };
                return Ok((off, HitLogWriter { thread: None }));
            }
            target => Sink::open(target)?,
        };
        let (tx, rx) = sync_channel(capacity);
        let thread = std::thread::Builder::new().name("hitlog".into()).spawn({
            let dropped = dropped.clone();
            move || write_loop(rx, sink, dropped)
        })?;
        Ok((
            HitLog {
                queue: Some(tx),
                capacity,
                dropped,
            },
            HitLogWriter { thread: Some(thread) },
        ))
    }

    /// A hit log that writes nothing (for tools and tests that need no log).
    pub fn disabled() -> HitLog {
        HitLog {
            queue: None,
            capacity: 0,
            dropped: metrics::counter!(crate::metrics::HITLOG_DROPPED),
        }
    }

    /// A queue of its own for one of `workers` long-lived workers (None when the log is off).
    /// The configured capacity is shared out between them (at least [`MIN_WORKER_QUEUE`] each):
    /// the kernel spreads clients over the workers, and each slot is a whole record, so that a
    /// full share for every worker would hold many times the memory asked for.
    pub fn sender(&self, workers: usize) -> Option<HitSender> {
        let shared = self.queue.as_ref()?;
        let capacity = self.capacity.div_ceil(workers.max(1)).max(MIN_WORKER_QUEUE);
        let (queue, rx) = sync_channel(capacity);
        // Blocks only while the writer is behind on the shared queue; workers start once.
        shared.send(Message::Join(rx)).ok()?;
        Some(HitSender {
            queue,
            last: None,
            dropped: self.dropped.clone(),
        })
    }

    /// Whether records go anywhere: the packet path builds none when they do not.
    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a record decided in `context` (the snapshot) on the shared queue (for short-lived
    /// callers: a TCP query); never blocks. Drops and counts it if the writer is behind.
    pub fn record<C: HitContext>(&self, context: &Arc<C>, record: HitRecord) {
        let Some(queue) = &self.queue else { return };
        let context = Arc::clone(context) as Arc<dyn HitContext>;
        match queue.try_send(Message::Hit(Some(context), record)) {
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

/// Where lines go. Each write is a whole batch of lines in one system call.
enum Sink {
    Stderr,
    Stdout,
    File(PathBuf, std::fs::File),
}

impl Sink {
    fn open(target: Target) -> io::Result<Sink> {
        Ok(match target {
            Target::Stdout => Sink::Stdout,
            Target::File(path) => {
                let file = open_append(&path)?;
                Sink::File(path, file)
            }
            Target::Stderr | Target::Off => Sink::Stderr,
        })
    }

    fn write_all(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stderr => io::stderr().lock().write_all(lines),
            Sink::Stdout => io::stdout().lock().write_all(lines),
            Sink::File(_, file) => file.write_all(lines),
        }
    }

    fn reopen(&mut self) {
        if let Sink::File(path, file) = self {
            match open_append(path) {
                Ok(new) => *file = new,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot reopen the hit log, keeping the old file")
                }
            }
        }
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open hit log {}: {e}", path.display())))
}

/// How long the writer sleeps between drains of the queue. The packet path never wakes it (a
/// wake-up per hit would cost a context switch per blocked query), so this bounds how late a
/// line appears, and the queue must hold this long's worth of hits (8192 by default: 400,000
/// hits a second).
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines are gathered into writes of about this size.
const BATCH_BYTES: usize = 64 << 10;

fn write_loop(rx: Receiver<Message>, mut sink: Sink, dropped: metrics::Counter) {
    let mut out = Lines::new(dropped);
    // The shared queue first, then the workers' own, each with the snapshot of its last record.
    let mut queues: Vec<(Receiver<Message>, Option<Context>)> = vec![(rx, None)];
    // The records of one pass over the queues: written in the order they were decided, since
    // each worker's queue is drained in turn.
    let mut pass: Vec<(Context, HitRecord)> = Vec::new();
    let mut closing = false;
    loop {
        let mut i = 0;
        while i < queues.len() {
            let (queue, last) = &mut queues[i];
            let mut joined = Vec::new();
            let gone = loop {
                match queue.try_recv() {
                    Ok(Message::Hit(snapshot, record)) => {
                        if snapshot.is_some() {
                            *last = snapshot;
                        }
                        if let Some(snapshot) = last {
                            pass.push((Arc::clone(snapshot), record));
                        }
                    }
                    Ok(Message::Join(worker)) => joined.push((worker, None)),
                    Ok(Message::Reopen) => {
                        out.write_in_order(&mut pass, &mut sink);
                        sink.reopen();
                    }
                    Ok(Message::Close) => {
                        closing = true;
                        break false;
                    }
                    Err(TryRecvError::Disconnected) => break true,
                    Err(TryRecvError::Empty) => break false,
                }
            };
            queues.extend(joined);
            if gone && i > 0 {
                queues.swap_remove(i);
            } else {
                closing |= gone;
                i += 1;
            }
        }
        out.write_in_order(&mut pass, &mut sink);
        if closing {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The writer's formatting state: the lines not yet written, the client hasher, whether the
/// last write failed (so that a failing disk is reported once, not per batch).
struct Lines {
    batch: Vec<u8>,
    hasher: ClientHasher,
    failing: bool,
    /// Lines lost to failed writes since the last one that succeeded, for the log line that
    /// says the hit log is written again.
    lost: u64,
    /// `sinkhole_hitlog_dropped_total`: lines a failed write lost count as dropped, as do those
    /// a full queue lost.
    dropped: metrics::Counter,
}

impl Lines {
    fn new(dropped: metrics::Counter) -> Lines {
        Lines {
            batch: Vec::with_capacity(BATCH_BYTES + 1024),
            hasher: ClientHasher::default(),
            failing: false,
            lost: 0,
            dropped,
        }
    }

    /// Formats and writes `records` (emptied) in the order they were decided.
    fn write_in_order(&mut self, records: &mut Vec<(Context, HitRecord)>, sink: &mut Sink) {
        records.sort_by_key(|(_, record)| record.time);
        for (snapshot, record) in records.drain(..) {
            write_line(&mut self.batch, &*snapshot, &record, &mut self.hasher);
            if self.batch.len() >= BATCH_BYTES {
                self.flush(sink);
            }
        }
        self.flush(sink);
    }

    /// Writes the batch; returns how many lines a failed write lost (counted as dropped). A
    /// write that fails part-way counts the whole batch: the line it cut is lost too.
    fn flush(&mut self, sink: &mut Sink) -> u64 {
        if self.batch.is_empty() {
            return 0;
        }
        let result = sink.write_all(&self.batch);
        // Every line ends in the one newline JSON leaves unescaped.
        let lines = self.batch.iter().filter(|&&b| b == b'\n').count() as u64;
        self.batch.clear();
        match result {
            Ok(()) => {
                if self.failing {
                    tracing::warn!(lost = self.lost, "the hit log is written again");
                }
                self.failing = false;
                self.lost = 0;
                0
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!(
                        error = %e,
                        "cannot write the hit log: its lines are dropped and counted \
                         (sinkhole_hitlog_dropped_total) until a write succeeds"
                    );
                }
                self.failing = true;
                self.lost += lines;
                self.dropped.increment(lines);
                lines
            }
        }
    }
}

/// Appends one JSON line for a record, formatting straight into the batch (no allocation, but
/// for a query name that is not UTF-8).
fn write_line(out: &mut Vec<u8>, s: &dyn HitContext, r: &HitRecord, hasher: &mut ClientHasher) {
    let start = out.len();
    if format_line(out, s, r, hasher).is_err() {
        out.truncate(start);
    }
}

fn format_line(out: &mut Vec<u8>, s: &dyn HitContext, r: &HitRecord, hasher: &mut ClientHasher) -> io::Result<()> {
    let rules = s.rules();
    let policy = rules.policies.get(r.hit.policy);
    let list = &rules.lists[r.hit.list];
    let time = jiff::Timestamp::try_from(r.time).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    write!(out, "{{\"time\":\"{time:.3}\"")?;
    if let Some(field) = client_field(r.client, s.client_privacy(), hasher) {
        write!(out, ",\"client\":\"{field}\"")?;
    }
    json_field(out, "policy", &policy.name)?;
    json_field(out, "list", &list.name)?;
    json_field(out, "rule", list.set.rule(r.hit.rule))?;
    json_field(out, "qname", &r.qname.to_string_lossy())?;
    write!(
        out,
        ",\"qtype\":\"{}\",\"answer\":\"{}\"",
        TypeName(r.qtype),
        policy.answer_for(list.set.action(r.hit.rule), r.qtype)
    )?;
    write!(
        out,
        ",\"mode\":\"{}\",\"phase\":{},\"protocol\":\"{}\"",
        r.hit.mode.as_str(),
        r.hit.phase,
        r.protocol
    )?;
    if let Some(cname) = &r.cname {
        json_field(out, "cname", &cname.to_string_lossy())?;
    }
    if let Some(address) = r.address {
        write!(out, ",\"address\":\"{}\"", address.to_canonical())?;
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// `,"key":"value"`, the value escaped as JSON requires.
fn json_field(out: &mut Vec<u8>, key: &str, value: &str) -> io::Result<()> {
    write!(out, ",\"{key}\":")?;
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)
}

/// What the `client` field holds, per the privacy mode.
#[derive(Debug, PartialEq, Eq)]
enum ClientField {
    Address(IpAddr),
    Network(IpNet),
    Token([u8; 8]),
}

impl fmt::Display for ClientField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientField::Address(ip) => write!(f, "{ip}"),
            ClientField::Network(net) => write!(f, "{net}"),
            ClientField::Token(token) => token.iter().try_for_each(|b| write!(f, "{b:02x}")),
        }
    }
}

/// The `client` field per the privacy mode.
fn client_field(ip: IpAddr, privacy: &ClientPrivacy, hasher: &mut ClientHasher) -> Option<ClientField> {
    let ip = ip.to_canonical();
    match privacy {
        ClientPrivacy::Full => Some(ClientField::Address(ip)),
        ClientPrivacy::Truncated => {
            let prefix = if ip.is_ipv4() { 24 } else { 56 };
            IpNet::new(ip, prefix).ok().map(|n| ClientField::Network(n.trunc()))
        }
        ClientPrivacy::Hashed(salt) => Some(ClientField::Token(hasher.hash(ip, salt))),
        ClientPrivacy::Omitted => None,
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
    fn hash(&mut self, ip: IpAddr, salt: &str) -> [u8; 8] {
        if self.salt != salt || self.salt.is_empty() {
            self.salt = salt.to_string();
            self.key = blake3::derive_key("sinkhole hit log client address v1", salt.as_bytes());
        }
        let hash = match ip {
            IpAddr::V4(v4) => blake3::keyed_hash(&self.key, &v4.octets()),
            IpAddr::V6(v6) => blake3::keyed_hash(&self.key, &v6.octets()),
        };
        let mut token = [0; 8];
        token.copy_from_slice(&hash.as_bytes()[..8]);
        token
    }
}

/// A record type's mnemonic ("A", "AAAA"), or `TYPE123` (RFC 3597) for types without one.
pub(crate) fn type_name(qtype: u16) -> String {
    TypeName(qtype).to_string()
}

/// Displays a record type as [`type_name`] spells it, without allocating.
struct TypeName(u16);

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match hickory_proto::rr::RecordType::from(self.0) {
            hickory_proto::rr::RecordType::Unknown(_) => write!(f, "TYPE{}", self.0),
            known => write!(f, "{known}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules with every client shown in full: what a snapshot gives the writer.
    struct TestContext(Rules);

    impl HitContext for TestContext {
        fn rules(&self) -> &Rules {
            &self.0
        }
        fn client_privacy(&self) -> &ClientPrivacy {
            &ClientPrivacy::Full
        }
    }

    #[test]
    fn lines_from_several_workers_come_out_in_the_order_decided() {
        // Two workers' queues, drained in turn: the later-joined worker's older record must still
        // be written first (a client's second query may land on another worker than its first).
        let snapshot = Arc::new(TestContext(crate::policy::test_rules(
            &["10.0.0.0/8"],
            &[("tiktok", &["tiktok.com"])],
            &[(
                "staff",
                &["10.0.0.0/8"],
                &["tiktok"],
                &[],
                // Enforce, always.
                Default::default(),
                Default::default(),
            )],
        )));
        let path = std::env::temp_dir().join(format!("sinkhole-hitlog-order-{}.jsonl", std::process::id()));
        let (log, writer) = HitLog::start(Settings {
            target: Target::File(path.clone()),
            queue: 64,
        })
        .expect("temp hit log");
        let (mut first, mut second) = (log.sender(2).expect("on"), log.sender(2).expect("on"));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let client = "10.1.2.3".parse().expect("test address");
        let crate::engine::Verdict::Blocked(hit) = crate::engine::decide(&snapshot.0, client, b"tiktok.com", 0) else {
            panic!("tiktok.com is blocked for {client}");
        };
        let record = |name: &str, time: SystemTime| HitRecord {
            time,
            client,
            hit,
            qname: QName::from_dotted(name).expect("test name"),
            qtype: 1,
            cname: None,
            address: None,
            protocol: "udp",
        };
        second.record(&snapshot, record("older.tiktok.com", t0));
        first.record(&snapshot, record("newer.tiktok.com", t0 + Duration::from_millis(1)));
        drop((first, second));
        log.close();
        writer.join();
        let text = std::fs::read_to_string(&path).expect("read the hit log");
        let _ = std::fs::remove_file(&path);
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split("\"qname\":\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(names, ["older.tiktok.com", "newer.tiktok.com"], "{text}");
    }

    #[test]
    fn an_answer_address_hit_names_its_range_and_the_address() {
        let snapshot = TestContext(crate::policy::test_rules(
            &["10.0.0.0/8"],
            &[("hidden", &["ip:203.0.113.0/24", "ip:2001:db8::/32"])],
            &[(
                "staff",
                &["10.0.0.0/8"],
                &["hidden"],
                &[],
                Default::default(),
                Default::default(),
            )],
        ));
        let address: IpAddr = "2001:db8::7".parse().expect("test address");
        let (hit, matched) =
            crate::engine::check_addresses(&snapshot.0, 0, 0, [address]).expect("the address is in a range");
        assert_eq!(matched, address);
        let record = HitRecord {
            time: SystemTime::UNIX_EPOCH,
            client: "10.1.2.3".parse().expect("test address"),
            hit,
            qname: QName::from_dotted("app.example").expect("test name"),
            qtype: 28,
            cname: None,
            address: Some(address),
            protocol: "udp",
        };
        let mut out = Vec::new();
        format_line(&mut out, &snapshot, &record, &mut ClientHasher::default()).expect("format");
        let line: serde_json::Value = serde_json::from_slice(&out).expect("one JSON line");
        assert_eq!(line["rule"], "2001:db8::/32");
        assert_eq!(line["address"], "2001:db8::7");
        assert_eq!(line["list"], "hidden");
        assert_eq!(line["qname"], "app.example");
        assert!(line.get("cname").is_none());
    }

    #[test]
    fn a_failed_write_drops_and_counts_its_lines_and_the_writer_goes_on() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let full = Path::new("/dev/full");
        let mut sink = Sink::File(full.into(), open_append(full).expect("open /dev/full"));
        let mut lines = Lines::new(metrics::Counter::noop());
        // A newline inside a value is escaped: only the ends of lines count.
        lines
            .batch
            .extend_from_slice(b"{\"qname\":\"a\\nb\"}\n{\"qname\":\"c\"}\n");
        assert_eq!(lines.flush(&mut sink), 2, "both lines dropped");
        assert!(lines.batch.is_empty(), "not kept to grow without bound");
        lines.batch.extend_from_slice(b"{}\n");
        assert_eq!(lines.flush(&mut sink), 1, "every failed batch counts");
        assert_eq!((lines.failing, lines.lost), (true, 3));

        // Room again: the next batch is written, and nothing of the lost ones.
        let path = std::env::temp_dir().join(format!("sinkhole-hitlog-full-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut sink = Sink::File(path.clone(), open_append(&path).expect("temp hit log"));
        lines.batch.extend_from_slice(b"{\"qname\":\"d\"}\n");
        assert_eq!(lines.flush(&mut sink), 0);
        assert_eq!((lines.failing, lines.lost), (false, 0));
        let text = std::fs::read_to_string(&path).expect("read the hit log");
        let _ = std::fs::remove_file(&path);
        assert_eq!(text, "{\"qname\":\"d\"}\n");
    }

    fn field(ip: &str, privacy: ClientPrivacy, h: &mut ClientHasher) -> Option<String> {
        client_field(ip.parse().expect("test address"), &privacy, h).map(|f| f.to_string())
    }

    #[test]
    fn privacy_modes() {
        let mut h = ClientHasher::default();
        assert_eq!(
            field("10.1.2.3", ClientPrivacy::Full, &mut h).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            field("::ffff:10.1.2.3", ClientPrivacy::Full, &mut h).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            field("10.1.2.3", ClientPrivacy::Truncated, &mut h).as_deref(),
            Some("10.1.2.0/24")
        );
        assert_eq!(
            field("2001:db8:aa:bbcc::1", ClientPrivacy::Truncated, &mut h).as_deref(),
            Some("2001:db8:aa:bb00::/56")
        );
        assert_eq!(field("10.1.2.3", ClientPrivacy::Omitted, &mut h), None);
        let salt = "0123456789abcdef";
        let a = field("10.1.2.3", ClientPrivacy::Hashed(salt.into()), &mut h).expect("hash");
        let b = field("10.1.2.3", ClientPrivacy::Hashed(salt.into()), &mut h).expect("hash");
        let c = field("10.1.2.3", ClientPrivacy::Hashed("another salt 12345".into()), &mut h).expect("hash");
        assert_eq!(a, b, "stable for one salt");
        assert_ne!(a, c, "depends on the salt");
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(1), "A");
        assert_eq!(type_name(28), "AAAA");
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(type_name(65000), "TYPE65000");
    }
}
