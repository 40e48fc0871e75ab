//! Proof that the UDP fast path does not allocate: a blocked query, a cache hit and every error answer (REFUSED,
//! FORMERR, NOTIMP; SERVFAIL once forwarding failed) go through [`Handler::answer_fast`] (and [`Handler::reply`])
//! with zero heap allocations per query once warm (issue 5, ARCHITECTURE.md "Speed, and what it cost").
//!
//! A counting allocator (allocation-counter's) wraps the system one in this test binary only. It counts per thread, so tests running in
//! parallel, and the hit log's writer thread (which formats and allocates later, off the packet path), do not
//! disturb the count of the thread that answers. The metrics recorder is the daemon's own (Prometheus), so that
//! counter increments are real, not no-ops. A cache miss must allocate (it boxes the query for the forwarder):
//! that shows the counter sees what the fast path would do.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hickory_proto::op::{Edns, Message, OpCode, Query};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use sinkhole::ForwardError;
use sinkhole::cache::{CacheKeyRef, CachedResponse, PacketCache, TtlLimits};
use sinkhole::hitlog::{self, HitLog, HitLogWriter};
use sinkhole::packet;
use sinkhole::server::handler::{Clock, Handler, Protocol, Resolution, Step, Worker};
use sinkhole::state::{ConfigSource, State};

/// Allocations this thread makes while running `f`, counted by allocation-counter's global allocator (per thread;
/// a reallocation counts as one).
fn allocations_in(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

/// Calls per measurement: enough that one lazy allocation per N calls would show.
const CALLS: u64 = 1000;
/// Calls before measuring: first calls may set up thread-locals (arc-swap's debt list) and grow `out`.
const WARM_UP: u64 = 16;
/// A client inside the `staff` policy, which blocks the built-in TikTok list.
const CLIENT: &str = "10.1.2.3";
/// A client outside `server.allow`: every query of its is REFUSED.
const STRANGER: &str = "192.0.2.1";

/// The daemon's config, as an operator would write it, with an upstream nobody answers on (the fast path never
/// forwards). The hit log is started by the tests themselves, as `main` does from `[log]`.
const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:5399"]
metrics = "off"
allow = ["10.0.0.0/8", "fd00::/8"]

[upstream]
servers = ["127.0.0.1:9"]

[cache]
entries = 10000

[lists.tiktok]
builtin = ["tiktok"]

# Answer-address rules: every cache hit of staff's is checked against them.
[lists.hidden]
ip = ["203.0.113.0/24", "2001:db8:66::/48"]

[[policy]]
name = "staff"
clients = ["10.0.0.0/8", "fd00::/8"]
block = ["tiktok", "hidden"]
answer = "nxdomain"

[log]
hits = "off"

# The limiter runs for every query, with a rate this test does not reach: its path is measured too.
[ratelimit]
qps = 500000
"#;

/// A file in the temp dir that is removed when dropped; named per process and test so parallel runs do not meet.
struct TempFile(PathBuf);

impl TempFile {
    fn new(test: &str, ext: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("sinkhole-alloc-{}-{test}.{ext}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Installs the Prometheus recorder once per test binary, before any handle is taken, as `sinkhole run` does.
fn install_metrics() {
    static RECORDER: OnceLock<()> = OnceLock::new();
    RECORDER.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map(drop)
            .unwrap_or_else(|e| panic!("cannot install the metrics recorder: {e}"));
    });
}

/// A handler over the config above, as `server::serve` builds it; the config file lives while the handler does.
fn handler(test: &str, hitlog: HitLog) -> (Handler, TempFile) {
    handler_with(test, hitlog, CONFIG)
}

/// [`handler`] over another config text.
fn handler_with(test: &str, hitlog: HitLog, text: &str) -> (Handler, TempFile) {
    install_metrics();
    let config = TempFile::new(test, "toml");
    std::fs::write(&config.0, text).expect("write the test config to the temp dir");
    let state = State::new(ConfigSource::File(config.0.clone())).unwrap_or_else(|e| panic!("test config: {e}"));
    let cache = Arc::new(PacketCache::new(10_000, 64 << 20));
    (Handler::new(Arc::new(state), cache, hitlog), config)
}

/// A query as a stub resolver sends it: RD set, and with `edns` an OPT advertising 1232 bytes.
fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 0x4242;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("test name"), qtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        message.edns = Some(opt);
    }
    message.to_vec().expect("encode the test query")
}

/// Puts the upstream answer for `packet`'s question into the cache: a CNAME to a CDN and its A record, the usual
/// shape of a popular name. Keyed exactly as `answer_fast` keys its lookup.
fn warm_cache(handler: &Handler, packet: &[u8]) {
    warm_cache_with(handler, packet, A::new(192, 0, 2, 80));
}

/// [`warm_cache`] with the CDN name's address `address`.
fn warm_cache_with(handler: &Handler, packet: &[u8], address: A) {
    let parsed = packet::parse(packet).expect("the test query parses");
    let qname = Name::from_ascii(parsed.name.to_string_lossy().as_ref()).expect("test name");
    let cdn = Name::from_ascii("www.example.com.edgekey.net.").expect("test name");
    let mut response = Message::response(parsed.id, OpCode::Query);
    response.metadata.recursion_desired = true;
    response.metadata.recursion_available = true;
    response.add_query(Query::query(qname.clone(), RecordType::A));
    response.add_answer(Record::from_rdata(qname, 300, RData::CNAME(CNAME(cdn.clone()))));
    response.add_answer(Record::from_rdata(cdn, 60, RData::A(address)));
    if parsed.edns.is_some() {
        response.edns = Some(Edns::new());
    }
    let bytes = response.to_vec().expect("encode the test response");
    let cached = CachedResponse::analyze(bytes, Instant::now(), &TtlLimits::default()).expect("a cacheable answer");
    let key = CacheKeyRef::of(&parsed);
    handler.cache().insert(key.to_owned(), Arc::new(cached));
}

/// What one answer says: the rcode, and whether the cache (or the policy) answered rather than the forwarder.
fn answer(handler: &Handler, packet: &[u8], out: &mut Vec<u8>, worker: &mut Worker) -> Option<u8> {
    answer_from(CLIENT, handler, packet, out, worker)
}

/// [`answer`] to a query from `client`.
fn answer_from(client: &str, handler: &Handler, packet: &[u8], out: &mut Vec<u8>, worker: &mut Worker) -> Option<u8> {
    let client: IpAddr = client.parse().expect("test address");
    match handler.answer_fast(packet, client, Protocol::Udp, Clock::now(), out, worker) {
        Step::Reply => out.get(3).map(|b| b & 0x0f),
        Step::Drop | Step::Forward(_) => None,
    }
}

/// Warms up, then counts this thread's allocations over [`CALLS`] answers to `packet` by a worker (a UDP worker's,
/// with its front cache, or with `Worker::default()` a short-lived one's, without), checking each is `rcode`.
fn allocations_per_answer(handler: &Handler, packet: &[u8], rcode: u8, worker: Worker) -> u64 {
    allocations_per_answer_from(CLIENT, handler, packet, rcode, worker)
}

/// [`allocations_per_answer`] to queries from `client`.
fn allocations_per_answer_from(client: &str, handler: &Handler, packet: &[u8], rcode: u8, mut worker: Worker) -> u64 {
    let mut out = Vec::with_capacity(512);
    for _ in 0..WARM_UP {
        assert_eq!(
            answer_from(client, handler, packet, &mut out, &mut worker),
            Some(rcode),
            "answered on the fast path"
        );
    }
    let mut wrong = 0;
    let allocations = allocations_in(|| {
        for _ in 0..CALLS {
            if answer_from(client, handler, packet, &mut out, &mut worker) != Some(rcode) {
                wrong += 1;
            }
        }
        handler.flush(&mut worker);
    });
    assert_eq!(
        wrong, 0,
        "every measured query answered on the fast path with rcode {rcode}"
    );
    allocations
}

const NXDOMAIN: u8 = 3;
const NOERROR: u8 = 0;
const REFUSED: u8 = 5;
const FORMERR: u8 = 1;
const SERVFAIL: u8 = 2;
const NOTIMP: u8 = 4;

/// A query through a trusted relay: its client stated by a PROXY v2 header in front of the datagram
/// (`Handler::unwrap_datagram`, as the UDP worker calls it) or by EDNS Client Subnet, and blocked for that
/// client. The relay itself is outside `server.allow`: an answer other than NXDOMAIN would mean the statement
/// was not taken.
#[test]
fn a_client_stated_by_a_relay_is_answered_without_allocating() {
    let config = CONFIG.replace(
        "allow = [\"10.0.0.0/8\", \"fd00::/8\"]",
        "allow = [\"10.0.0.0/8\", \"fd00::/8\"]\ntrusted_relays = [\"192.0.2.1/32\"]",
    );
    let (handler, _config) = handler_with("relayed", HitLog::disabled(), &config);
    // Client Subnet 10.1.2.0/24 in the OPT record.
    let mut ecs = query("www.tiktok.com.", RecordType::A, true);
    let option = [0, 8, 0, 7, 0, 1, 24, 0, 10, 1, 2];
    let rdlength = ecs.len() - 2;
    ecs[rdlength..].copy_from_slice(&(option.len() as u16).to_be_bytes());
    ecs.extend_from_slice(&option);
    let n = allocations_per_answer_from(STRANGER, &handler, &ecs, NXDOMAIN, handler.worker(1));
    assert_eq!(n, 0, "{n} allocations in {CALLS} queries stated by Client Subnet");

    let mut datagram = b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x0c".to_vec();
    datagram.extend_from_slice(&[10, 1, 2, 3, 127, 0, 0, 1, 0x30, 0x39, 0, 53]);
    datagram.extend_from_slice(&query("www.tiktok.com.", RecordType::A, true));
    let relay: IpAddr = STRANGER.parse().expect("test address");
    let mut worker = handler.worker(1);
    let mut out = Vec::with_capacity(512);
    let answer_relayed = |out: &mut Vec<u8>, worker: &mut Worker| {
        let (dns, client) = handler
            .unwrap_datagram(&datagram, relay, worker)
            .expect("the header reads");
        match handler.answer_fast(dns, client, Protocol::Udp, Clock::now(), out, worker) {
            Step::Reply => out.get(3).map(|b| b & 0x0f),
            Step::Drop | Step::Forward(_) => None,
        }
    };
    for _ in 0..WARM_UP {
        assert_eq!(
            answer_relayed(&mut out, &mut worker),
            Some(NXDOMAIN),
            "the stated client's policy"
        );
    }
    let mut wrong = 0;
    let n = allocations_in(|| {
        for _ in 0..CALLS {
            wrong += u64::from(answer_relayed(&mut out, &mut worker) != Some(NXDOMAIN));
        }
        handler.flush(&mut worker);
    });
    assert_eq!(wrong, 0);
    assert_eq!(n, 0, "{n} allocations in {CALLS} queries stated by a PROXY header");
}

#[test]
fn blocked_query_does_not_allocate() {
    let (handler, _config) = handler("blocked", HitLog::disabled());
    // EDNS, so the answer carries the EDE "Blocked" option; also the no-EDNS shape.
    for edns in [true, false] {
        let packet = query("www.tiktok.com.", RecordType::A, edns);
        let n = allocations_per_answer(&handler, &packet, NXDOMAIN, handler.worker(1));
        assert_eq!(n, 0, "{n} allocations in {CALLS} blocked queries (edns: {edns})");
    }
}

/// A policy with `egress = true` offers each block to the egress companion's queue: a worker's own
/// sender (which skips the names it offered lately) and the shared queue (a TCP query's), until it is full and
/// offers are dropped, allocate nothing.
#[test]
fn blocked_query_offered_to_the_egress_queue_does_not_allocate() {
    install_metrics();
    let config = TempFile::new("egress", "toml");
    let text = CONFIG.replace("answer = \"nxdomain\"", "answer = \"nxdomain\"\negress = true");
    std::fs::write(&config.0, text).expect("write the test config to the temp dir");
    let state = State::new(ConfigSource::File(config.0.clone())).unwrap_or_else(|e| panic!("test config: {e}"));
    let cache = Arc::new(PacketCache::new(10_000, 64 << 20));
    let (queue, offers) = sinkhole::egress::EgressQueue::new(4);
    let handler = Handler::new(Arc::new(state), cache, HitLog::disabled()).with_egress(queue);
    let packet = query("www.tiktok.com.", RecordType::A, true);
    let n = allocations_per_answer(&handler, &packet, NXDOMAIN, handler.worker(1));
    assert_eq!(n, 0, "{n} allocations in {CALLS} blocked queries offered by a worker");
    let n = allocations_per_answer(&handler, &packet, NXDOMAIN, Worker::default());
    assert_eq!(
        n, 0,
        "{n} allocations in {CALLS} blocked queries offered to the shared queue"
    );
    let offered: Vec<_> = offers
        .try_iter()
        .map(|o| o.name.to_string_lossy().into_owned())
        .collect();
    assert_eq!(offered.len(), 4, "the queue filled: {offered:?}");
    assert!(offered.iter().all(|n| n == "www.tiktok.com"), "{offered:?}");
}

#[test]
fn wildcard_blocked_query_does_not_allocate() {
    let (handler, _config) = handler("wildcard", HitLog::disabled());
    let packet = query("p16-tiktok-va.ibyteimg.com.", RecordType::AAAA, true);
    let n = allocations_per_answer(&handler, &packet, NXDOMAIN, handler.worker(1));
    assert_eq!(n, 0, "{n} allocations in {CALLS} wildcard-blocked queries");
}

#[test]
fn refused_and_minimal_answers_do_not_allocate() {
    // Both carry an OPT record written for the client (REFUSED with an EDE text): it used to be
    // built in a fresh Vec per answer.
    let (handler, _config) = handler("refused", HitLog::disabled());
    let packet = query("example.com.", RecordType::AXFR, true);
    let n = allocations_per_answer(&handler, &packet, REFUSED, handler.worker(1));
    assert_eq!(n, 0, "{n} allocations in {CALLS} refused zone transfers");
    let packet = query("example.com.", RecordType::ANY, true);
    let n = allocations_per_answer(&handler, &packet, NOERROR, handler.worker(1));
    assert_eq!(n, 0, "{n} allocations in {CALLS} ANY queries");
}

#[test]
fn refusing_a_client_outside_server_allow_does_not_allocate() {
    // A stranger's flood is answered REFUSED (with EDE 18 for EDNS clients) at line rate: each answer must cost no
    // more than a block does.
    let (handler, _config) = handler("stranger", HitLog::disabled());
    for edns in [true, false] {
        let packet = query("www.example.com.", RecordType::A, edns);
        for worker in [handler.worker(1), Worker::default()] {
            let n = allocations_per_answer_from(STRANGER, &handler, &packet, REFUSED, worker);
            assert_eq!(n, 0, "{n} allocations in {CALLS} refusals (edns: {edns})");
        }
    }
}

#[test]
fn formerr_and_notimp_answers_do_not_allocate() {
    let (handler, _config) = handler("errors", HitLog::disabled());
    for edns in [true, false] {
        let good = query("www.example.com.", RecordType::A, edns);
        // Two questions: FORMERR, the header echoed alone.
        let mut two = good.clone();
        two[5] = 2;
        let n = allocations_per_answer(&handler, &two, FORMERR, handler.worker(1));
        assert_eq!(n, 0, "{n} allocations in {CALLS} FORMERR answers (edns: {edns})");
        // A broken OPT record (cut short): FORMERR with the question read.
        if edns {
            let cut = &good[..good.len() - 3];
            let n = allocations_per_answer(&handler, cut, FORMERR, handler.worker(1));
            assert_eq!(n, 0, "{n} allocations in {CALLS} FORMERR answers to a cut OPT");
        }
        // Opcode STATUS (2): NOTIMP.
        let mut status = good.clone();
        status[2] = (status[2] & !0x78) | (2 << 3);
        let n = allocations_per_answer(&handler, &status, NOTIMP, handler.worker(1));
        assert_eq!(n, 0, "{n} allocations in {CALLS} NOTIMP answers (edns: {edns})");
    }
}

/// SERVFAIL is written when forwarding failed, for every client that waited on the query: the answer itself (an
/// OPT with an EDE text for EDNS clients) must not allocate, whatever forwarding did before.
#[test]
fn servfail_answers_do_not_allocate() {
    let (handler, _config) = handler("servfail", HitLog::disabled());
    let client: IpAddr = CLIENT.parse().expect("test address");
    for edns in [true, false] {
        let packet = query("www.example.org.", RecordType::A, edns);
        let mut out = Vec::with_capacity(512);
        let Step::Forward(pending) = handler.answer_fast(
            &packet,
            client,
            Protocol::Udp,
            Clock::now(),
            &mut out,
            &mut Worker::default(),
        ) else {
            panic!("an uncached name is forwarded");
        };
        for failed in [
            Resolution::Failed(ForwardError::Busy),
            Resolution::Failed(ForwardError::Timeout(std::time::Duration::from_secs(2))),
        ] {
            for _ in 0..WARM_UP {
                handler.reply(&pending, &failed, &mut out);
            }
            let mut wrong = 0;
            let n = allocations_in(|| {
                for _ in 0..CALLS {
                    handler.reply(&pending, &failed, &mut out);
                    if out.get(3).map(|b| b & 0x0f) != Some(SERVFAIL) {
                        wrong += 1;
                    }
                }
            });
            assert_eq!(wrong, 0, "every answer is SERVFAIL");
            assert_eq!(n, 0, "{n} allocations in {CALLS} SERVFAIL answers (edns: {edns})");
        }
    }
}

#[test]
fn cache_hit_does_not_allocate() {
    let (handler, _config) = handler("hit", HitLog::disabled());
    for edns in [true, false] {
        let packet = query("www.example.com.", RecordType::A, edns);
        warm_cache(&handler, &packet);
        // A worker with a front cache: the first hit fills it, the rest come from it.
        let n = allocations_per_answer(&handler, &packet, NOERROR, handler.worker(1));
        assert_eq!(n, 0, "{n} allocations in {CALLS} front cache hits (edns: {edns})");
        // Without one: every hit from the shared cache.
        let n = allocations_per_answer(&handler, &packet, NOERROR, Worker::default());
        assert_eq!(n, 0, "{n} allocations in {CALLS} shared cache hits (edns: {edns})");
    }
}

/// A cached answer whose address falls in a range of a list the client's policy blocks gets the block answer, from
/// the front cache and from the shared one, without allocating: the addresses were found when the answer was
/// analysed, and the check is a binary search per address.
#[test]
fn cache_hit_blocked_by_its_address_does_not_allocate() {
    let (handler, _config) = handler("address", HitLog::disabled());
    for edns in [true, false] {
        let packet = query("app.example.com.", RecordType::A, edns);
        warm_cache_with(&handler, &packet, A::new(203, 0, 113, 80));
        let n = allocations_per_answer(&handler, &packet, NXDOMAIN, handler.worker(1));
        assert_eq!(
            n, 0,
            "{n} allocations in {CALLS} front cache hits blocked by address (edns: {edns})"
        );
        let n = allocations_per_answer(&handler, &packet, NXDOMAIN, Worker::default());
        assert_eq!(
            n, 0,
            "{n} allocations in {CALLS} shared cache hits blocked by address (edns: {edns})"
        );
    }
}

/// A block by an RPZ rule with an answer of its own (NODATA, a redirect) is written from the policy's template with
/// that answer: no allocation either, the rule's action found by a binary search.
#[test]
fn rpz_rule_answers_do_not_allocate() {
    let zone = TempFile::new("rpz-zone", "rpz");
    std::fs::write(
        &zone.0,
        "$ORIGIN rpz.test.\n@ SOA ns. h. 1 2 3 4 5\nnodata.example CNAME *.\npage.example A 192.0.2.53\n",
    )
    .expect("write the zone to the temp dir");
    let config = CONFIG
        .replace(
            "block = [\"tiktok\", \"hidden\"]",
            "block = [\"tiktok\", \"hidden\", \"rpz\"]",
        )
        .replace(
            "[[policy]]",
            &format!("[lists.rpz]\nfiles = [{:?}]\n\n[[policy]]", zone.0),
        );
    let (handler, _config) = handler_with("rpz", HitLog::disabled(), &config);
    for (name, rcode) in [("nodata.example.", NOERROR), ("page.example.", NOERROR)] {
        let packet = query(name, RecordType::A, true);
        let mut out = Vec::with_capacity(512);
        let mut worker = handler.worker(1);
        answer(&handler, &packet, &mut out, &mut worker);
        let answers = u16::from_be_bytes([out[6], out[7]]);
        assert_eq!(
            answers,
            u16::from(name == "page.example."),
            "{name}: the rule's own answer"
        );
        let n = allocations_per_answer(&handler, &packet, rcode, handler.worker(1));
        assert_eq!(n, 0, "{n} allocations in {CALLS} RPZ-answered queries for {name}");
    }
}

/// A worker's front cache takes the hits of the shared cache it has not seen yet: once it has grown to its size
/// (its tables grow as it fills, as a Vec does), taking one in, and evicting another, allocates nothing.
#[test]
fn front_cache_fills_do_not_allocate_once_it_is_full() {
    let (handler, _config) = handler("front", HitLog::disabled());
    let names = 8 * sinkhole::cache::FRONT_ENTRIES;
    let packets: Vec<Vec<u8>> = (0..names)
        .map(|i| query(&format!("n{i}.example.com."), RecordType::A, true))
        .collect();
    for packet in &packets {
        warm_cache(&handler, packet);
    }
    let (grow, fill) = packets.split_at(names * 3 / 4);
    let mut worker = handler.worker(1);
    let mut out = Vec::with_capacity(512);
    for packet in grow {
        assert_eq!(answer(&handler, packet, &mut out, &mut worker), Some(NOERROR));
    }
    let mut wrong = 0;
    let n = allocations_in(|| {
        for packet in fill {
            if answer(&handler, packet, &mut out, &mut worker) != Some(NOERROR) {
                wrong += 1;
            }
        }
    });
    assert_eq!(wrong, 0);
    assert_eq!(n, 0, "{n} allocations in {} front cache fills", fill.len());
}

/// The counter's own check: a miss copies the packet and boxes it for the forwarder, so it must count.
#[test]
fn cache_miss_allocates() {
    let (handler, _config) = handler("miss", HitLog::disabled());
    let packet = query("www.example.org.", RecordType::A, true);
    let client: IpAddr = CLIENT.parse().expect("test address");
    let mut out = Vec::with_capacity(512);
    let mut forwarded = 0;
    let allocations = allocations_in(|| {
        for _ in 0..CALLS {
            if let Step::Forward(pending) = handler.answer_fast(
                &packet,
                client,
                Protocol::Udp,
                Clock::now(),
                &mut out,
                &mut Worker::default(),
            ) {
                forwarded += 1;
                drop(pending);
            }
        }
    });
    assert_eq!(forwarded, CALLS, "an uncached name is forwarded");
    assert!(
        allocations >= CALLS,
        "a miss allocates (Box<Pending>, packet copy, owned key), yet {allocations} were counted in {CALLS}"
    );
}

/// With the hit log on, a blocked query only queues a fixed-size record: the writer thread formats and writes it
/// later, and its allocations are its own thread's, not the packet path's.
#[test]
fn blocked_query_with_hit_log_does_not_allocate() {
    install_metrics();
    let log = TempFile::new("hitlog", "jsonl");
    let (hitlog, writer): (HitLog, HitLogWriter) = HitLog::start(hitlog::Settings {
        target: hitlog::Target::File(log.0.clone()),
        queue: 8192,
    })
    .expect("open the hit log in the temp dir");
    let (handler, _config) = handler("hitlog", hitlog.clone());
    let packet = query("www.tiktok.com.", RecordType::A, true);
    let n = allocations_per_answer(&handler, &packet, NXDOMAIN, handler.worker(1));

    drop(handler);
    hitlog.close();
    writer.join();
    let lines = std::fs::read_to_string(&log.0).expect("read the hit log back");
    assert_eq!(n, 0, "{n} allocations in {CALLS} logged blocked queries");
    let logged = lines
        .lines()
        .filter(|l| l.contains(r#""qname":"www.tiktok.com""#))
        .count();
    assert_eq!(
        logged as u64,
        WARM_UP + CALLS,
        "every blocked query reached the hit log (the queue holds them all)"
    );
}

/// DDR's answers (RFC 9462) are copies of bytes built once per snapshot: the SVCB records of
/// `_dns.resolver.arpa` and `_dns.<ddr_name>`, and the NODATA of the rest of `resolver.arpa`.
#[test]
fn ddr_answers_do_not_allocate() {
    let (cert, key) = (TempFile::new("ddr-cert", "pem"), TempFile::new("ddr-key", "pem"));
    let pair = rcgen::generate_simple_self_signed(vec!["dns.example.test".to_owned(), "10.0.0.53".to_owned()])
        .expect("rcgen makes a certificate");
    std::fs::write(&cert.0, pair.cert.pem()).expect("write the test certificate");
    std::fs::write(&key.0, pair.signing_key.serialize_pem()).expect("write the test key");
    let server = format!(
        "metrics = \"off\"\ntls = [\"10.0.0.53:853\"]\nhttps = [\"10.0.0.53:443\"]\ncertificate = {:?}\nkey = {:?}",
        cert.0.display().to_string(),
        key.0.display().to_string()
    );
    let (handler, _config) = handler_with("ddr", HitLog::disabled(), &CONFIG.replace("metrics = \"off\"", &server));
    for (name, qtype) in [
        ("_dns.resolver.arpa.", RecordType::SVCB),
        ("_dns.dns.example.test.", RecordType::SVCB),
        ("x._dns.resolver.arpa.", RecordType::A),
    ] {
        for edns in [true, false] {
            let packet = query(name, qtype, edns);
            let n = allocations_per_answer(&handler, &packet, NOERROR, handler.worker(1));
            assert_eq!(
                n, 0,
                "{n} allocations in {CALLS} DDR answers to {name} {qtype} (edns: {edns})"
            );
        }
    }
}
