//! The fuzz targets' checks: one function per target that runs an input through the daemon's code
//! and panics, with the input in hex, when that code panics or disagrees with the oracle.
//!
//! This file is the fuzz crate's library (what `fuzz_targets/*.rs` call) and is also compiled into
//! the root package's `tests/fuzz_corpus.rs` (`#[path]`), which replays the committed corpus
//! through the same checks: CI runs every seed and every past crash without cargo-fuzz. So it uses
//! only the `sinkhole` library and crates the daemon depends on already (hickory-proto, pcap-file),
//! and nothing here is linked into the daemon.
//!
//! The oracle for wire bytes is hickory-proto: the daemon reads queries and upstream answers with
//! its own walks (`packet`, `wire`, `cache::CachedResponse`) for speed, and where hickory-proto
//! reads the same bytes the two must agree (ARCHITECTURE.md "Speed, and what it cost").

use std::cell::RefCell;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NULL, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError};
use pcap_file::DataLink;
use sinkhole::DomainSetBuilder;
use sinkhole::cache::{CacheKeyRef, CachedResponse, PacketCache, ResponseError, TtlLimits, WireError};
use sinkhole::config::{Config, ConfigError, Diagnostic, Origin};
use sinkhole::hitlog::HitLog;
use sinkhole::packet;
use sinkhole::proxy_protocol::{self, HeaderError};
use sinkhole::server::handler::{Clock, Handler, Protocol, Step, Worker};
use sinkhole::state::{self, ConfigSource, State};
use sinkhole_replay::clients::ClientMap;
use sinkhole_replay::input::{self, LoadOptions};

/// One target's check: runs one input, panics on a finding.
pub type Check = fn(&[u8]);

/// Every target by name, as `fuzz/corpus/<name>/` and `fuzz_targets/<name>.rs` are named.
pub const TARGETS: [(&str, Check); 8] = [
    ("query", query),
    ("upstream_answer", upstream_answer),
    ("packet_parse", packet_parse),
    ("list_lines", list_lines),
    ("config", config),
    ("capture", capture),
    ("rpz_zone", rpz_zone),
    ("proxy_header", proxy_header),
];

/// A file name in the temp dir of this process and thread alone (the corpus test runs targets
/// on threads of one process).
fn temp_path(what: &str) -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    std::env::temp_dir().join(format!("sinkhole-fuzz-{what}-{}-{thread}", std::process::id()))
}

/// An input in hex, for failure messages (a crash is reproduced from it).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// query: client query bytes through the whole fast path.

/// The config the `query` target's handler runs: one policy per block answer kind, an audit
/// policy, a client in no policy and the ACL's outside, over one block list (with a wildcard and
/// an exact rule) and one allow list. The upstream is never reached: a cache miss is a
/// `Step::Forward` and the check stops there.
pub const QUERY_CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:5399"]
metrics = "off"
allow = ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"]

[upstream]
servers = ["127.0.0.1:9"]

[lists.block]
domains = ["tiktok.com", "tiktokcdn.com", "||p16-*.ibyteimg.com^", "|exact.example^"]

[lists.exceptions]
domains = ["ads.tiktok.com"]

[[policy]]
name = "staff"
clients = ["10.1.0.0/16", "fd00::/8"]
block = ["block"]
allow = ["exceptions"]
answer = "nxdomain"

[[policy]]
name = "nodata"
clients = ["10.2.0.0/16"]
block = ["block"]
answer = "nodata"

[[policy]]
name = "null"
clients = ["10.3.0.0/16"]
block = ["block"]
answer = "null"

[[policy]]
name = "refused"
clients = ["10.4.0.0/16"]
block = ["block"]
answer = "refused"

[[policy]]
name = "block-page"
clients = ["10.5.0.0/16"]
block = ["block"]
answer = "192.0.2.99"

[[policy]]
name = "audit"
clients = ["192.168.1.0/24"]
block = ["block"]
allow = ["exceptions"]
mode = "audit"

[log]
hits = "off"

# One client is rate limited (over UDP: dropped, or every second query an empty TC answer), the
# others are exempt, so that the fuzzer's millions of queries a second reach their policies.
[ratelimit]
qps = 1
burst = 1
identical_qps = 1
identical_burst = 1
exempt = ["10.0.0.0/8", "192.168.1.0/24", "fd00::/8", "203.0.113.0/24"]
"#;

/// The client of [`QUERY_CLIENTS`] that the rate limit applies to.
pub const LIMITED_CLIENT: &str = "192.168.7.7";

/// The clients a query is asked from; the low byte of its id picks one (`id % 8`), so the fuzzer
/// reaches every policy by mutating the id. Bit 8 of the id picks TCP instead of UDP.
pub const QUERY_CLIENTS: [&str; 8] = [
    "10.1.2.3",    // staff: NXDOMAIN
    "10.2.2.3",    // NODATA
    "10.3.2.3",    // null addresses
    "10.4.2.3",    // REFUSED
    "10.5.2.3",    // a block page address
    "192.168.1.7", // audit: logged, answered
    "192.168.7.7", // allowed, in no policy: never blocked, but rate limited
    "203.0.113.9", // outside the ACL: REFUSED
];

/// The id that sends a query from `QUERY_CLIENTS[client]` over UDP (or TCP), for seeds.
pub fn query_id(client: usize, tcp: bool) -> u16 {
    0x4200 | (client as u16 & 7) | if tcp { 0x100 } else { 0 }
}

/// Where a cached answer's TTLs start: a day, so that the answers outlive any fuzz run.
const CACHED_TTL: u32 = 86_400;

/// A client query as stub resolvers send it (RD set; with `edns`, an OPT of 1232 bytes and DO).
pub fn client_query(id: u16, name: &str, qtype: RecordType, edns: Option<bool>) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(dns_name(name), qtype));
    if let Some(dnssec_ok) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        opt.set_dnssec_ok(dnssec_ok);
        message.edns = Some(opt);
    }
    message.to_vec().expect("encode a test query")
}

/// A test name (panics on a bad one: the names are ours).
fn dns_name(name: &str) -> Name {
    Name::from_ascii(name).expect("a valid test name")
}

/// The answers the `query` target's cache holds, as (the query they answer, the upstream's
/// answer), built as an upstream would (the integration tests' fake upstream is the model): an
/// address, the same with EDNS, a CNAME chain into a blocked CDN, a DNAME into a blocked domain,
/// NXDOMAIN with SOA, NODATA, an answer too big for 512 bytes, TXT, and an allow-listed name.
pub fn cached_answers() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let id = query_id(6, false);
    let a = |owner: &str, last: u8| Record::from_rdata(dns_name(owner), CACHED_TTL, RData::A(A::new(192, 0, 2, last)));
    let soa = |owner: &str| {
        let data = SOA::new(
            dns_name("ns.fake-upstream.test."),
            dns_name("hostmaster.fake-upstream.test."),
            1,
            3600,
            600,
            86_400,
            CACHED_TTL,
        );
        Record::from_rdata(dns_name(owner), CACHED_TTL, RData::SOA(data))
    };
    let answer = |query: &[u8], code: ResponseCode, records: &[Record], authority: &[Record]| {
        let query = Message::from_vec(query).expect("our own query decodes");
        let mut response = Message::response(query.metadata.id, OpCode::Query);
        response.metadata.recursion_desired = true;
        response.metadata.recursion_available = true;
        response.metadata.response_code = code;
        response.queries = query.queries.clone();
        response.answers = records.to_vec();
        response.authorities = authority.to_vec();
        if let Some(query_edns) = &query.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            edns.set_dnssec_ok(query_edns.flags().dnssec_ok);
            response.edns = Some(edns);
        }
        response.to_vec().expect("encode a test answer")
    };
    let mut all = Vec::new();
    let mut add = |label: &'static str, query: Vec<u8>, code, records: Vec<Record>, authority: Vec<Record>| {
        let bytes = answer(&query, code, &records, &authority);
        all.push((label, query, bytes));
    };
    let ok = ResponseCode::NoError;
    let q = client_query(id, "www.example.com.", RecordType::A, None);
    add("a", q, ok, vec![a("www.example.com.", 1)], vec![]);
    let q = client_query(id, "www.example.com.", RecordType::A, Some(false));
    add("a-edns", q, ok, vec![a("www.example.com.", 1)], vec![]);
    let q = client_query(id, "www.example.com.", RecordType::AAAA, Some(true));
    let v6 = RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    add(
        "aaaa-edns-do",
        q,
        ok,
        vec![Record::from_rdata(dns_name("www.example.com."), CACHED_TTL, v6)],
        vec![],
    );
    let q = client_query(id, "cname.example.com.", RecordType::A, None);
    let alias = RData::CNAME(CNAME(dns_name("edge.tiktokcdn.com.")));
    let chain = vec![
        Record::from_rdata(dns_name("cname.example.com."), CACHED_TTL, alias),
        a("edge.tiktokcdn.com.", 7),
    ];
    add("cname-into-blocked", q, ok, chain, vec![]);
    let q = client_query(id, "cdn.example.com.", RecordType::A, Some(false));
    let alias = RData::CNAME(CNAME(dns_name("cdn-example.com.akamaized.net.")));
    let chain = vec![
        Record::from_rdata(dns_name("cdn.example.com."), CACHED_TTL, alias),
        a("cdn-example.com.akamaized.net.", 8),
    ];
    add("cname-harmless", q, ok, chain, vec![]);
    let q = client_query(id, "www.video.example.org.", RecordType::A, None);
    let mut target = Vec::new();
    for label in ["tiktok", "com"] {
        target.push(label.len() as u8);
        target.extend_from_slice(label.as_bytes());
    }
    target.push(0);
    let dname = RData::Unknown {
        code: RecordType::DNAME,
        rdata: NULL::with(target),
    };
    let synthesized = RData::CNAME(CNAME(dns_name("www.tiktok.com.")));
    let chain = vec![
        Record::from_rdata(dns_name("video.example.org."), CACHED_TTL, dname),
        Record::from_rdata(dns_name("www.video.example.org."), CACHED_TTL, synthesized),
        a("www.tiktok.com.", 9),
    ];
    add("dname-into-blocked", q, ok, chain, vec![]);
    let q = client_query(id, "nx.example.com.", RecordType::A, None);
    add("nxdomain", q, ResponseCode::NXDomain, vec![], vec![soa("example.com.")]);
    let q = client_query(id, "www.example.com.", RecordType::MX, Some(false));
    add("nodata-edns", q, ok, vec![], vec![soa("example.com.")]);
    let big: Vec<Record> = (1..=40).map(|i| a("big.example.com.", i)).collect();
    let q = client_query(id, "big.example.com.", RecordType::A, None);
    add("big", q, ok, big.clone(), vec![]);
    let q = client_query(id, "big.example.com.", RecordType::A, Some(false));
    add("big-edns", q, ok, big, vec![]);
    let q = client_query(id, "txt.example.com.", RecordType::TXT, None);
    let txt = TXT::new(vec!["v=spf1 -all".into(), String::new()]);
    add(
        "txt",
        q,
        ok,
        vec![Record::from_rdata(
            dns_name("txt.example.com."),
            CACHED_TTL,
            RData::TXT(txt),
        )],
        vec![],
    );
    let q = client_query(id, "ads.tiktok.com.", RecordType::A, None);
    add("allow-listed", q, ok, vec![a("ads.tiktok.com.", 10)], vec![]);
    all
}

/// What the `query` target answers with: the handler over [`QUERY_CONFIG`] with a warm cache,
/// and one long-lived worker (a UDP worker's, with its front cache).
struct QueryFixture {
    /// The pipeline, as `server::serve` builds it (hit log off).
    handler: Handler,
    /// The worker UDP queries are answered by: long-lived, so its front cache fills as a UDP
    /// worker's does. TCP queries get a fresh `Worker::default()` each, as in the daemon.
    udp_worker: RefCell<Worker>,
}

impl QueryFixture {
    fn new() -> QueryFixture {
        // `State::new` reads a config file; it is read once and not needed after.
        let path = temp_path("query");
        std::fs::write(&path, QUERY_CONFIG).expect("write the query target's config to the temp dir");
        let state = State::new(ConfigSource::File(path.clone()));
        let _ = std::fs::remove_file(&path);
        let state = state.unwrap_or_else(|e| panic!("the query target's config: {e}"));
        let cache = Arc::new(PacketCache::new(1000, 64 << 20));
        let limits = TtlLimits {
            negative_max: CACHED_TTL,
            ..TtlLimits::default()
        };
        for (label, query, answer) in cached_answers() {
            let parsed = packet::parse(&query).unwrap_or_else(|e| panic!("seed query {label}: {e}"));
            let response = CachedResponse::analyze(answer, Instant::now(), &limits)
                .unwrap_or_else(|e| panic!("seed answer {label}: {e}"));
            assert!(response.cache_for().is_some(), "seed answer {label} is cacheable");
            cache.insert(CacheKeyRef::of(&parsed).to_owned(), Arc::new(response));
        }
        let handler = Handler::new(Arc::new(state), cache, HitLog::disabled());
        let udp_worker = RefCell::new(handler.worker(1));
        QueryFixture { handler, udp_worker }
    }

    fn check(&self, packet: &[u8]) {
        let id = packet.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let client: IpAddr = QUERY_CLIENTS[usize::from(id & 0xff) % QUERY_CLIENTS.len()]
            .parse()
            .expect("a client address");
        let protocol = if id & 0x100 == 0 { Protocol::Udp } else { Protocol::Tcp };
        let mut out = Vec::new();
        let step = match protocol {
            Protocol::Udp => {
                let mut worker = self.udp_worker.borrow_mut();
                let step = self
                    .handler
                    .answer_fast(packet, client, protocol, Clock::now(), &mut out, &mut worker);
                self.handler.flush(&mut worker);
                step
            }
            Protocol::Tcp | Protocol::Dot | Protocol::Doh => {
                let mut worker = Worker::default();
                let step = self
                    .handler
                    .answer_fast(packet, client, protocol, Clock::now(), &mut out, &mut worker);
                self.handler.flush(&mut worker);
                step
            }
        };
        let parsed = packet::parse(packet);
        let limited = protocol == Protocol::Udp && client == LIMITED_CLIENT.parse::<IpAddr>().expect("an address");
        match step {
            Step::Reply => check_reply(packet, &parsed, protocol, &out),
            Step::Drop => assert!(
                limited || matches!(parsed, Err(packet::ParseError::Short | packet::ParseError::Response)),
                "only short packets, responses and rate-limited queries are dropped: query {}",
                hex(packet)
            ),
            Step::Forward(_) => assert!(parsed.is_ok(), "an unreadable query was forwarded: {}", hex(packet)),
        }
    }
}

thread_local! {
    static QUERY_FIXTURE: QueryFixture = QueryFixture::new();
}

/// `query` target: the bytes as a client's query, answered by `Handler::answer_fast`. Every
/// answer must decode with hickory-proto, be a response, carry the query's id and, when the
/// question was read, that very question (bytes as sent); a UDP answer must fit the client's
/// limit. Only short packets and responses may be dropped. Nothing may panic.
pub fn query(data: &[u8]) {
    QUERY_FIXTURE.with(|fixture| fixture.check(data));
}

/// The checks of one `Step::Reply` answer (`out`) to `packet`.
fn check_reply(packet: &[u8], parsed: &Result<packet::Query, packet::ParseError>, protocol: Protocol, out: &[u8]) {
    let context = || format!("query {}\nanswer {}", hex(packet), hex(out));
    let answer = Message::from_vec(out).unwrap_or_else(|e| panic!("the answer does not decode ({e})\n{}", context()));
    assert_eq!(answer.metadata.message_type, MessageType::Response, "{}", context());
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    assert_eq!(answer.metadata.id, id, "{}", context());
    match parsed {
        Ok(query) => {
            assert_eq!(answer.queries.len(), 1, "{}", context());
            let question = &answer.queries[0];
            assert_eq!(
                dotted_lowercase(question.name()),
                query.name.as_bytes(),
                "{}",
                context()
            );
            assert_eq!(u16::from(question.query_type()), query.qtype, "{}", context());
            assert_eq!(u16::from(question.query_class()), query.qclass, "{}", context());
            let echoed = out.get(12..12 + query.question.len());
            assert_eq!(
                echoed,
                packet.get(query.question.clone()),
                "question echoed as sent\n{}",
                context()
            );
            if protocol == Protocol::Udp {
                // The client's EDNS size, never above server.max_udp_payload (1232 here).
                assert!(
                    out.len() <= query.max_udp_len().min(1232),
                    "over the client's UDP limit\n{}",
                    context()
                );
            }
        }
        Err(_) => assert!(answer.queries.is_empty(), "{}", context()),
    }
}

/// A name as the daemon keeps it: labels lowercased, joined by dots, no trailing dot.
fn dotted_lowercase(name: &Name) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.iter() {
        if !out.is_empty() {
            out.push(b'.');
        }
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// upstream_answer: the cache's walk against hickory-proto.

/// Record types whose data the daemon reads (checks, follows or patches), so it must refuse
/// any it cannot read exactly as a decoder would. Data of other types passes through opaque.
const READ_TYPES: [u16; 7] = [1, 5, 6, 16, 28, 39, 41];
/// DNAME (RFC 6672): hickory-proto keeps its data opaque, so its name is read here.
const DNAME: u16 = 39;
/// OPT.
const OPT: u16 = 41;
/// EDNS options the cache strips (COOKIE, TCP keepalive, padding).
const HOP_BY_HOP_OPTIONS: [u16; 3] = [10, 11, 12];

/// One record as hickory-proto reads it, with where it sits in the message.
struct Located {
    /// 0 answer, 1 authority, 2 additional.
    section: usize,
    /// Where the record (its owner name) starts.
    start: usize,
    /// The record's data.
    rdata: Range<usize>,
    /// The record as hickory-proto decodes it.
    record: Record,
}

/// A message as hickory-proto reads it record by record (what `Message::from_vec` does, without
/// its rules across records), with positions.
struct Walk {
    /// Where the question section ends.
    question_end: usize,
    /// Every record, in order.
    records: Vec<Located>,
}

/// Where a record-by-record read stopped.
#[derive(Debug)]
enum WalkError {
    /// The header or a question does not decode.
    Question(DecodeError),
    /// The record that starts at this offset does not decode.
    Record(usize, DecodeError),
}

/// Reads `msg` as hickory-proto does, record by record, noting where each record is.
fn walk(msg: &[u8]) -> Result<Walk, WalkError> {
    let mut decoder = BinDecoder::new(msg);
    let header = Header::read(&mut decoder).map_err(WalkError::Question)?;
    for _ in 0..header.counts.queries {
        Query::read(&mut decoder).map_err(WalkError::Question)?;
    }
    let question_end = decoder.index();
    let counts = [
        header.counts.answers,
        header.counts.authorities,
        header.counts.additionals,
    ];
    let mut records = Vec::new();
    for (section, count) in counts.into_iter().enumerate() {
        for _ in 0..count {
            let start = decoder.index();
            let record = Record::read(&mut decoder).map_err(|e| WalkError::Record(start, e))?;
            let (_, fixed) = owner_and_type(msg, start).map_err(|e| WalkError::Record(start, e))?;
            records.push(Located {
                section,
                start,
                rdata: fixed + 10..decoder.index(),
                record,
            });
        }
    }
    Ok(Walk { question_end, records })
}

/// The type of the record at `start` and where its fixed fields begin (after the owner name).
fn owner_and_type(msg: &[u8], start: usize) -> Result<(u16, usize), DecodeError> {
    let mut decoder = BinDecoder::new(msg);
    decoder.read_slice(start)?;
    Name::read(&mut decoder)?;
    let fixed = decoder.index();
    let rtype = decoder.read_u16()?.unverified();
    Ok((rtype, fixed))
}

/// The name in a DNAME record's data, read as hickory-proto reads names, if it fills the data.
fn dname_target(msg: &[u8], rdata: &Range<usize>) -> Option<Name> {
    let mut decoder = BinDecoder::new(msg);
    decoder.read_slice(rdata.start).ok()?;
    let name = Name::read(&mut decoder).ok()?;
    (decoder.index() == rdata.end).then_some(name)
}

/// Where the names the cache reads start: the question's, every owner's, and those in the data
/// of CNAME, DNAME and SOA records.
fn names_read(msg: &[u8], walk: &Walk) -> Vec<usize> {
    let mut names = vec![12];
    for located in &walk.records {
        names.push(located.start);
        match u16::from(located.record.record_type()) {
            5 | DNAME => names.push(located.rdata.start),
            6 => {
                names.push(located.rdata.start);
                let mut decoder = BinDecoder::new(msg);
                if decoder.read_slice(located.rdata.start).is_ok() && Name::read(&mut decoder).is_ok() {
                    names.push(decoder.index());
                }
            }
            _ => {}
        }
    }
    names
}

/// Where the TTLs are that the cache lowers when it serves an answer: 4 bytes before RDLENGTH
/// in every record but OPT.
fn rewritten_ttls(walk: &Walk) -> Vec<usize> {
    walk.records
        .iter()
        .filter(|r| u16::from(r.record.record_type()) != OPT)
        .map(|r| r.rdata.start - 6)
        .collect()
}

/// Whether the name at `pos` follows a compression pointer into the header or reads a byte of
/// one of the 4-byte TTL fields at `ttls`: bytes the cache rewrites when it serves the answer.
fn leads_into_rewritten_bytes(msg: &[u8], mut pos: usize, ttls: &[usize]) -> bool {
    let in_ttl = |start: usize, end: usize| ttls.iter().any(|&ttl| ttl < end && start < ttl + 4);
    for _ in 0..128 {
        match (msg.get(pos), msg.get(pos + 1)) {
            (Some(&high), Some(&low)) if high & 0xC0 == 0xC0 => {
                let target = usize::from(high & 0x3F) << 8 | usize::from(low);
                if target < 12 || in_ttl(pos, pos + 2) {
                    return true;
                }
                pos = target;
            }
            (Some(&len), _) if len & 0xC0 == 0 => {
                if in_ttl(pos, pos + 1 + usize::from(len)) {
                    return true;
                }
                if len == 0 {
                    return false;
                }
                pos += 1 + usize::from(len);
            }
            _ => return false,
        }
    }
    false
}

/// Whether the options in an OPT record's data are whole (code, length, that many bytes) and
/// fill it: the framing the cache reads to strip hop-by-hop options.
fn options_fill(data: &[u8]) -> bool {
    let mut at = 0;
    while at < data.len() {
        let Some(len) = data.get(at + 2..at + 4) else {
            return false;
        };
        at += 4 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    at == data.len()
}

/// `upstream_answer` target: the bytes as an upstream's answer, read by
/// `CachedResponse::analyze` and served with `write_to` (ids, RD, the client's question case,
/// time passed, size limits). Where hickory-proto decodes the bytes, the cache must accept them
/// (unless it refuses by design: not one question, not a response, a CNAME/DNAME chain over
/// `MAX_CHAIN`, an unreadable DNAME) and agree on the question, rcode, the CNAME/DNAME chain,
/// the OPT record and the TTLs (the positions it patches hold exactly the records' TTLs: every
/// record but OPT comes out with its TTL lowered by the time passed and nothing else changed);
/// every answer it writes must decode. Where hickory-proto refuses the bytes and the cache
/// accepts them, the cause must lie in the data of a record type the cache passes through
/// opaque.
pub fn upstream_answer(data: &[u8]) {
    let now = Instant::now();
    let limits = TtlLimits::default();
    let ours = CachedResponse::analyze(data.to_vec(), now, &limits);
    let theirs = Message::from_vec(data);
    match (&ours, &theirs) {
        (Ok(response), Ok(message)) => {
            let walk = walk(data)
                .unwrap_or_else(|e| panic!("hickory reads the message but not its records ({e:?}): {}", hex(data)));
            agree(data, response, message, &walk, now);
        }
        (Ok(response), Err(error)) => {
            only_we_accept(data, error);
            // Still written without a panic, whatever it holds.
            let mut out = Vec::new();
            for max_len in [0, response.len().saturating_sub(1), 65_535] {
                response.write_to(0x1234, true, &[], now + Duration::from_secs(3), max_len, &mut out);
            }
        }
        (Err(ours), Ok(message)) => only_hickory_accepts(data, ours, message),
        (Err(_), Err(_)) => {}
    }
}

/// hickory-proto refuses `data` with `error`, the cache took it: fine only where the cause lies in
/// data the cache passes through unread.
fn only_we_accept(data: &[u8], error: &DecodeError) {
    let context = || format!("hickory refuses ({error}), the cache accepts: {}", hex(data));
    match walk(data) {
        Err(WalkError::Question(e)) => panic!("the question does not decode ({e})\n{}", context()),
        Err(WalkError::Record(start, e)) => {
            let (rtype, fixed) = owner_and_type(data, start).unwrap_or_else(|e| {
                panic!(
                    "the owner name of the record at {start} does not decode ({e})\n{}",
                    context()
                )
            });
            if rtype == OPT {
                // Options whose framing is whole are passed through unread (an EDNS Client Subnet
                // option with a bad address, say); broken framing is read by the cache.
                let rdlength = data
                    .get(fixed + 8..fixed + 10)
                    .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                let rdata = data.get(fixed + 10..fixed + 10 + rdlength).unwrap_or_default();
                assert!(options_fill(rdata), "the OPT record at {start}: {e}\n{}", context());
            } else {
                assert!(
                    !READ_TYPES.contains(&rtype),
                    "the type {rtype} record at {start}: {e}\n{}",
                    context()
                );
            }
        }
        Ok(walk) => {
            // Each record reads alone: a rule across records was broken.
            let mut opts = 0;
            for located in &walk.records {
                let rtype = u16::from(located.record.record_type());
                if rtype == OPT {
                    opts += 1;
                    assert_eq!(
                        located.section,
                        2,
                        "an OPT record outside the additional section\n{}",
                        context()
                    );
                } else if located.rdata.is_empty() {
                    assert!(
                        !READ_TYPES.contains(&rtype),
                        "a type {rtype} record without data\n{}",
                        context()
                    );
                }
            }
            assert!(opts <= 1, "{opts} OPT records\n{}", context());
        }
    }
}

/// The cache refused `data` (`ours`), hickory-proto read it: fine only for refusals by design.
fn only_hickory_accepts(data: &[u8], ours: &ResponseError, message: &Message) {
    let by_design = match ours {
        ResponseError::NotAResponse | ResponseError::QuestionCount(_) | ResponseError::ChainTooLong => true,
        // hickory-proto keeps DNAME data opaque; the cache reads the name in it.
        ResponseError::Malformed(_) | ResponseError::BadRdata(_)
            if walk(data).is_ok_and(|walk| {
                walk.records
                    .iter()
                    .any(|r| u16::from(r.record.record_type()) == DNAME && dname_target(data, &r.rdata).is_none())
            }) =>
        {
            true
        }
        // Records without data are legal only in UPDATE messages (RFC 2136), never in an answer
        // to a query: hickory-proto reads them there, the cache refuses those it reads.
        ResponseError::Malformed(_) | ResponseError::BadRdata(_)
            if message.metadata.op_code == OpCode::Update
                && walk(data).is_ok_and(|walk| {
                    walk.records.iter().any(|r| {
                        let rtype = u16::from(r.record.record_type());
                        r.rdata.is_empty() && rtype != OPT && READ_TYPES.contains(&rtype)
                    })
                }) =>
        {
            true
        }
        // The cache refuses OPT data that its options do not fill exactly; hickory-proto lets a
        // last option that runs past the data go.
        ResponseError::BadRdata(OPT) => walk(data).is_ok_and(|walk| {
            walk.records
                .iter()
                .any(|r| u16::from(r.record.record_type()) == OPT && !options_fill(&data[r.rdata.clone()]))
        }),
        // hickory-proto follows a compression pointer into the header or into a TTL field; the
        // cache refuses one, as the bytes it serves there are not the ones the name was made of.
        ResponseError::Malformed(WireError::BadPointer) => walk(data).is_ok_and(|walk| {
            let ttls = rewritten_ttls(&walk);
            names_read(data, &walk)
                .into_iter()
                .any(|at| leads_into_rewritten_bytes(data, at, &ttls))
        }),
        _ => false,
    };
    assert!(
        by_design,
        "the cache refuses ({ours}) an answer hickory reads:\n{message}\n{}",
        hex(data)
    );
}

/// The checks where both read the answer.
fn agree(data: &[u8], response: &CachedResponse, message: &Message, walk: &Walk, now: Instant) {
    let context = || format!("answer {}", hex(data));
    assert_eq!(response.rcode(), message.metadata.response_code.low(), "{}", context());

    // The chain: CNAME and DNAME targets of the answer section, in order.
    let expected: Vec<Vec<u8>> = walk
        .records
        .iter()
        .filter(|r| r.section == 0)
        .filter_map(|r| match &r.record.data {
            RData::CNAME(CNAME(target)) => Some(dotted_lowercase(target)),
            _ if u16::from(r.record.record_type()) == DNAME => Some(dotted_lowercase(
                &dname_target(data, &r.rdata).expect("the cache read this DNAME"),
            )),
            _ => None,
        })
        .collect();
    let chain: Vec<Vec<u8>> = response.chain().map(<[u8]>::to_vec).collect();
    assert_eq!(chain, expected, "CNAME/DNAME chain\n{}", context());

    // The answer section's A and AAAA addresses, in order: what answer-address rules check.
    let expected: Vec<IpAddr> = walk
        .records
        .iter()
        .filter(|r| r.section == 0)
        .filter_map(|r| match &r.record.data {
            RData::A(A(v4)) => Some(IpAddr::from(*v4)),
            RData::AAAA(AAAA(v6)) => Some(IpAddr::from(*v6)),
            _ => None,
        })
        .collect();
    let addresses: Vec<IpAddr> = response.addresses().collect();
    assert_eq!(addresses, expected, "answer addresses\n{}", context());
    assert_eq!(response.has_addresses(), !expected.is_empty(), "{}", context());

    // What is stored is the answer without its hop-by-hop EDNS options, and nothing else.
    let stored = response.as_bytes();
    assert_eq!(stored.len(), response.len(), "{}", context());
    let stored_message = Message::from_vec(stored).unwrap_or_else(|e| {
        panic!(
            "the stored answer does not decode ({e}): {}\n{}",
            hex(stored),
            context()
        )
    });
    let stored_walk = self::walk(stored).unwrap_or_else(|e| panic!("the stored answer: {e:?}\n{}", context()));
    let what = || format!("stored {}\n{}", hex(stored), context());
    assert_eq!(stored_message.metadata, message.metadata, "{}", what());
    assert_eq!(stored_message.queries, message.queries, "{}", what());
    same_records(&stored_message.answers, &message.answers, "answer", &what);
    same_records(&stored_message.authorities, &message.authorities, "authority", &what);
    same_records(&stored_message.additionals, &message.additionals, "additional", &what);
    assert_eq!(
        stored_message.edns.is_some(),
        message.edns.is_some(),
        "OPT kept\n{}",
        what()
    );
    if let (Some(stored), Some(original)) = (&stored_message.edns, &message.edns) {
        same_edns(stored, original, &what);
    }

    // Served: the stored bytes with the id, RD and the client's question in, every TTL (where
    // hickory-proto finds them: 4 bytes before RDLENGTH, OPT's excluded) lowered by the time
    // passed, and nothing else changed; or, over the limit, the header (TC set), the question
    // and the OPT record alone.
    let ttls = rewritten_ttls(&stored_walk);
    for at in names_read(stored, &stored_walk) {
        let leads = leads_into_rewritten_bytes(stored, at, &ttls);
        assert!(
            !leads,
            "the name at {at} leads into bytes rewritten when served\n{}",
            what()
        );
    }
    let opt_record = stored_walk
        .records
        .iter()
        .find(|r| u16::from(r.record.record_type()) == OPT)
        .map(|r| &stored[r.start..r.rdata.end]);
    // Names in data the cache passes through unread (MX, NS, ...) may lead into a TTL (no
    // compressor writes that): such data can change as the TTLs drop, even stop decoding.
    let opaque_data = stored_walk
        .records
        .iter()
        .any(|r| !READ_TYPES.contains(&u16::from(r.record.record_type())) && !r.rdata.is_empty());
    let question = &stored[12..stored_walk.question_end];
    let flipped = flip_case(question);
    let mut out = Vec::with_capacity(65_535);
    for (elapsed, id, rd) in [(0, 0x0000, false), (7, 0xbeef, true), (5_000_000_000u64, 0xffff, false)] {
        let later = now.checked_add(Duration::from_secs(elapsed)).unwrap_or(now);
        let lowered_by = u32::try_from(elapsed).unwrap_or(u32::MAX);
        for client_question in [&flipped[..], &[][..]] {
            let asked = if client_question.len() == question.len() {
                client_question
            } else {
                question
            };
            let full = stored.len().max(512);
            for max_len in [0, full - 1, full, 65_535] {
                response.write_to(id, rd, client_question, later, max_len, &mut out);
                let what = || {
                    format!(
                        "write_to(id {id:#x}, rd {rd}, +{elapsed}s, max_len {max_len}) {}\n{}",
                        hex(&out),
                        context()
                    )
                };
                let truncated = stored.len() > max_len.max(512);
                let mut expected = stored[..12].to_vec();
                expected[..2].copy_from_slice(&id.to_be_bytes());
                expected[2] = (expected[2] & !0x01) | u8::from(rd) | if truncated { 0x02 } else { 0 };
                if truncated {
                    expected[6..12].copy_from_slice(&[0, 0, 0, 0, 0, u8::from(opt_record.is_some())]);
                    expected.extend_from_slice(asked);
                    expected.extend_from_slice(opt_record.unwrap_or_default());
                } else {
                    expected.extend_from_slice(asked);
                    expected.extend_from_slice(&stored[12 + question.len()..]);
                    for &at in &ttls {
                        let field = [expected[at], expected[at + 1], expected[at + 2], expected[at + 3]];
                        let ttl = u32::from_be_bytes(field).saturating_sub(lowered_by);
                        expected[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
                    }
                }
                assert!(out == expected, "expected {}\n{}", hex(&expected), what());
                match Message::from_vec(&out) {
                    Ok(written) => {
                        assert_eq!(written.metadata.id, id, "{}", what());
                        let name = written.queries.first().map(|q| labels(q.name()));
                        assert_eq!(name, Some(labels_of_question(asked)), "{}", what());
                        assert_eq!(written.edns.is_some(), message.edns.is_some(), "OPT kept\n{}", what());
                    }
                    Err(e) => assert!(
                        elapsed > 0 && !truncated && opaque_data,
                        "does not decode ({e})\n{}",
                        what()
                    ),
                }
            }
        }
    }
}

/// Two record lists are the same, TTLs included (hickory-proto's `==` leaves TTLs out).
fn same_records(written: &[Record], expected: &[Record], section: &str, what: &impl Fn() -> String) {
    assert_eq!(written.len(), expected.len(), "{section} records\n{}", what());
    for (w, e) in written.iter().zip(expected) {
        assert!(w == e && w.ttl == e.ttl, "{section} record {w} is not {e}\n{}", what());
    }
}

/// `written` is `original` less the hop-by-hop options.
fn same_edns(written: &Edns, original: &Edns, what: &impl Fn() -> String) {
    assert_eq!(written.max_payload(), original.max_payload(), "{}", what());
    assert_eq!(written.rcode_high(), original.rcode_high(), "{}", what());
    assert_eq!(written.version(), original.version(), "{}", what());
    assert_eq!(written.flags(), original.flags(), "{}", what());
    let kept: Vec<_> = original
        .options()
        .as_ref()
        .iter()
        .filter(|(code, _)| !HOP_BY_HOP_OPTIONS.contains(&u16::from(*code)))
        .collect();
    let written: Vec<_> = written.options().as_ref().iter().collect();
    assert_eq!(written, kept, "EDNS options, hop-by-hop ones removed\n{}", what());
}

/// A question section with the case of the letters in its name flipped; unchanged if the name
/// holds a compression pointer (a letter there is part of an offset).
fn flip_case(question: &[u8]) -> Vec<u8> {
    let mut out = question.to_vec();
    let mut at = 0;
    while let Some(&len) = out.get(at) {
        if len == 0 {
            return out;
        }
        if len & 0xC0 != 0 {
            return question.to_vec();
        }
        let end = (at + 1 + usize::from(len)).min(out.len());
        for b in &mut out[at + 1..end] {
            if b.is_ascii_alphabetic() {
                *b ^= 0x20;
            }
        }
        at = end;
    }
    out
}

/// A name's labels, bytes as they are (case kept).
fn labels(name: &Name) -> Vec<Vec<u8>> {
    name.iter().map(<[u8]>::to_vec).collect()
}

/// The labels of the name a question section starts with (read by hickory-proto).
fn labels_of_question(question: &[u8]) -> Vec<Vec<u8>> {
    let mut msg = vec![0; 12];
    msg.extend_from_slice(question);
    let mut decoder = BinDecoder::new(&msg);
    let _ = decoder.read_slice(12);
    Name::read(&mut decoder).map(|n| labels(&n)).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// packet_parse: the question reader against hickory-proto.

/// `packet_parse` target: the bytes as a client query, read by `packet::parse` and by
/// hickory-proto. When both read it they must agree on id, flags, the name (lowercased), type,
/// class, where the question ends, and the EDNS payload size and DO bit. A plain query that
/// hickory-proto reads (QUERY, one question, no compression pointer and no dot inside a label in
/// its name) must be read too.
pub fn packet_parse(data: &[u8]) {
    let ours = packet::parse(data);
    let theirs = Message::from_vec(data);
    let context = || format!("query {}", hex(data));
    match (&ours, &theirs) {
        (Ok(query), Ok(message)) => {
            let m = &message.metadata;
            assert_eq!(query.id, m.id, "{}", context());
            let flags = u16::from(m.message_type == MessageType::Response) << 15
                | u16::from(u8::from(m.op_code)) << 11
                | u16::from(m.authoritative) << 10
                | u16::from(m.truncation) << 9
                | u16::from(m.recursion_desired) << 8
                | u16::from(m.recursion_available) << 7
                | u16::from(m.authentic_data) << 5
                | u16::from(m.checking_disabled) << 4
                | u16::from(m.response_code.low());
            // hickory-proto drops the Z bit (0x0040).
            assert_eq!(query.flags & !0x0040, flags, "flags\n{}", context());
            assert_eq!(message.queries.len(), 1, "{}", context());
            let question = &message.queries[0];
            assert_eq!(
                query.name.as_bytes(),
                dotted_lowercase(question.name()),
                "{}",
                context()
            );
            assert_eq!(query.qtype, u16::from(question.query_type()), "{}", context());
            assert_eq!(query.qclass, u16::from(question.query_class()), "{}", context());
            if let Ok(walk) = walk(data) {
                assert_eq!(query.question.end, walk.question_end, "question end\n{}", context());
            }
            let edns = message.edns.as_ref().map(|e| (e.max_payload(), e.flags().dnssec_ok));
            let ours = query.edns.map(|e| (e.udp_size, e.dnssec_ok));
            assert_eq!(ours, edns, "EDNS payload and DO\n{}", context());
        }
        (Err(error), Ok(message)) => {
            let plain = message.metadata.message_type == MessageType::Query
                && message.metadata.op_code == OpCode::Query
                && message.queries.len() == 1
                && plain_name_at(data, 12);
            let refused = matches!(error, packet::ParseError::Question | packet::ParseError::Additional);
            assert!(
                !plain || !refused,
                "hickory reads a query whose question we refuse ({error}):\n{message}\n{}",
                context()
            );
        }
        _ => {}
    }
}

/// Whether the name at `at` is one the daemon reads: no compression pointer (nothing precedes
/// the question to point at) and no dot inside a label (its names are dotted text).
fn plain_name_at(msg: &[u8], mut at: usize) -> bool {
    loop {
        match msg.get(at) {
            Some(0) => return true,
            Some(&len) if len & 0xC0 == 0 => {
                let end = at + 1 + usize::from(len);
                if msg.get(at + 1..end).is_none_or(|label| label.contains(&b'.')) {
                    return false;
                }
                at = end;
            }
            _ => return false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// list_lines: list text into the set builder.

/// The names a list line's rules are written for, as a reader of the line would take them:
/// every name token (after the address of a hosts line, before a `#` comment) with its adblock
/// anchors, `*.` and trailing dot removed, `*` replaced by a letter, lowercased. Hosts
/// boilerplate (localhost and the like) is no rule and left out.
fn rule_names(line: &str) -> Vec<String> {
    // As the list reader does: trim, cut the comment (a `#` first or after whitespace), trim.
    let line = line.trim();
    let bytes = line.as_bytes();
    let comment = (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()))
        .unwrap_or(bytes.len());
    let mut tokens: Vec<&str> = line[..comment].trim_end().split_ascii_whitespace().collect();
    if tokens.len() > 1 {
        tokens.remove(0); // the address of a hosts line
    }
    tokens
        .into_iter()
        .filter_map(|token| {
            let body = token
                .strip_prefix("||")
                .or_else(|| token.strip_prefix('|'))
                .unwrap_or(token);
            let body = body
                .strip_suffix("^|")
                .or_else(|| body.strip_suffix('^'))
                .unwrap_or(body);
            let bare = body.trim_end_matches('.').to_ascii_lowercase();
            let boilerplate = [
                "localhost",
                "localhost.localdomain",
                "local",
                "broadcasthost",
                "0.0.0.0",
            ];
            if boilerplate.contains(&bare.as_str()) || bare.starts_with("ip6-") {
                return None;
            }
            let body = body.strip_suffix('.').unwrap_or(body);
            Some(body.replace('*', "x").to_ascii_lowercase())
        })
        .collect()
}

/// Names after the NUL of a `list_lines` input that are looked up in each line's own set.
const LIST_EXTRA_NAMES: usize = 16;

/// `list_lines` target: the bytes (up to the first NUL) as list text given to
/// `DomainSetBuilder::add_text`, then lookups of every name after the NUL (one per line), of the
/// names the rules were written for and of subdomains of them: no panic. A line that a builder
/// takes as a rule on its own (`add_rule`) must not be reported bad by `add_text`, and every
/// name such a line is written for must match both that line's own set and the whole set; a name
/// the line's set matches, the whole set matches too.
pub fn list_lines(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (list, names) = text.split_once('\0').unwrap_or((&text, ""));
    let mut builder = DomainSetBuilder::new();
    let bad = builder.add_text("fuzz", list);
    let set = builder.build();
    let body = list.strip_prefix('\u{feff}').unwrap_or(list);
    if DomainSetBuilder::is_rpz(body) {
        // A zone is read as records, not lines (`rpz_zone` checks that reading).
        let bad: Vec<(usize, String)> = bad.into_iter().map(|b| (b.line, b.reason)).collect();
        check_zone_set(list, &bad, &set, names);
        return;
    }
    let extra: Vec<String> = names.lines().take(LIST_EXTRA_NAMES).map(str::to_string).collect();
    let mut asked = extra.clone();
    for (index, line) in body.lines().enumerate() {
        let mut single = DomainSetBuilder::new();
        let added = single.add_rule(line);
        let single = single.build();
        let rule_names = rule_names(line);
        let subdomains: Vec<String> = rule_names.iter().map(|name| format!("x.{name}")).collect();
        if added.is_ok() {
            let context = || format!("line {} {line:?} of list {}", index + 1, hex(list.as_bytes()));
            assert!(
                bad.iter().all(|b| b.line != index + 1),
                "a rule on its own, reported bad: {}",
                context()
            );
            for name in &rule_names {
                assert!(
                    single.lookup(name.as_bytes()).is_some(),
                    "{name:?} not matched by its own rule: {}",
                    context()
                );
                assert!(
                    set.lookup(name.as_bytes()).is_some(),
                    "{name:?} not matched by the set: {}",
                    context()
                );
            }
            for name in subdomains.iter().chain(&extra) {
                if single.lookup(name.as_bytes()).is_some() {
                    assert!(
                        set.lookup(name.as_bytes()).is_some(),
                        "{name:?} matched by the line alone only: {}",
                        context()
                    );
                }
            }
        }
        asked.extend(rule_names);
        asked.extend(subdomains);
    }
    for name in &asked {
        if let Some(hit) = set.lookup(name.as_bytes()) {
            assert!(!set.rule(hit.rule).is_empty(), "a match names no rule: {name:?}");
            if let Some(apex) = hit.apex_len {
                assert!(usize::from(apex) <= name.len(), "apex longer than {name:?}");
            }
        }
        let _ = set.lookup(name.to_ascii_lowercase().as_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// rpz_zone: RPZ zone text.

/// `DomainSetBuilder::add_text` on an RPZ zone (the input after a `$ORIGIN rpz.test.` line, so that
/// it is read as one), then lookups: no panic; every bad line is a line of the text; an owner read
/// as a plain name trigger matches exactly itself (its rule is `|name^`), or a passthru, or a
/// wildcard or range rule; the names after a NUL and the owners' subdomains and addresses are
/// looked up too.
pub fn rpz_zone(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (zone, names) = text.split_once('\0').unwrap_or((&text, ""));
    let zone = format!("$ORIGIN rpz.test.\n{zone}");
    assert!(DomainSetBuilder::is_rpz(&zone), "a $ORIGIN line makes a zone");
    let mut builder = DomainSetBuilder::new();
    let bad: Vec<(usize, String)> = builder
        .add_text("fuzz", &zone)
        .into_iter()
        .map(|b| (b.line, b.reason))
        .collect();
    let set = builder.build();
    check_zone_set(&zone, &bad, &set, names);
}

/// The checks of [`rpz_zone`] on a set built from `zone`.
fn check_zone_set(zone: &str, bad: &[(usize, String)], set: &sinkhole::DomainSet, names: &str) {
    let lines = zone.lines().count().max(1);
    for (line, reason) in bad {
        assert!(
            (1..=lines).contains(line),
            "bad line {line} of {lines}: {}",
            hex(zone.as_bytes())
        );
        assert!(!reason.is_empty());
    }
    let bad_lines: Vec<usize> = bad.iter().map(|(line, _)| *line).collect();
    // Records over several lines join lines: the one-line check below holds without them.
    let one_line_records = !zone.contains(['(', ')']);
    let mut asked: Vec<String> = names.lines().take(LIST_EXTRA_NAMES).map(str::to_string).collect();
    for (index, line) in zone.lines().enumerate() {
        let mut tokens = line.split_ascii_whitespace();
        let (Some(owner), Some(kind), Some(target)) = (tokens.next(), tokens.next(), tokens.next()) else {
            continue;
        };
        let name = owner.strip_suffix(".rpz.test.").unwrap_or(owner).to_ascii_lowercase();
        asked.push(name.clone());
        asked.push(format!("x.{name}"));
        // `name CNAME .` alone on its line, taken (not bad), with a plain name: it must match itself.
        let plain = one_line_records
            && name != "@"
            && !line.starts_with([' ', '\t', '$'])
            && !name.contains(['*', '(', ')', ';', '"'])
            && !name.ends_with('.')
            && !name.contains("rpz-")
            && line
                .split(';')
                .next()
                .is_some_and(|l| l.split_ascii_whitespace().count() == 3);
        if plain && kind.eq_ignore_ascii_case("CNAME") && target == "." && !bad_lines.contains(&(index + 1)) {
            let hit = set.lookup(name.as_bytes());
            assert!(
                hit.is_some(),
                "{name:?} not matched by its own record: {}",
                hex(zone.as_bytes())
            );
        }
    }
    for name in &asked {
        if let Some(hit) = set.lookup(name.as_bytes()) {
            assert!(!set.rule(hit.rule).is_empty(), "a match names no rule: {name:?}");
        }
        let _ = set.lookup(name.to_ascii_lowercase().as_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// config: config text.

/// `config` target: the bytes (as UTF-8, lossily) as a config file given to `Config::parse` and,
/// when it loads and names no list files (reading the file system is not the point),
/// `state::build`. No panic, and every error and warning is located at `fuzz.toml:LINE:COL`
/// inside the text.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let origin = Origin {
        name: "fuzz.toml".into(),
        dir: PathBuf::from("/nonexistent/sinkhole-fuzz"),
        text: text.clone(),
    };
    match Config::parse(origin) {
        Err(error) => located(&error, &text),
        Ok(config) => {
            for warning in config.warnings(0) {
                located_at(&warning, &text);
            }
            if config.lists.values().any(|list| !list.files.is_empty()) {
                return;
            }
            if let Err(error) = state::build(config) {
                located(&error, &text);
            }
        }
    }
}

/// Every diagnostic of `error` is located in `text`.
fn located(error: &ConfigError, text: &str) {
    match error {
        ConfigError::Invalid(diagnostics) => {
            assert!(
                !diagnostics.is_empty(),
                "an error without a diagnostic: {}",
                hex(text.as_bytes())
            );
            for diagnostic in diagnostics {
                located_at(diagnostic, text);
            }
        }
        ConfigError::Read { .. } => panic!("read error for a config in memory: {error}"),
    }
}

/// The diagnostic says `fuzz.toml:LINE:COL`, a line of `text`.
fn located_at(diagnostic: &Diagnostic, text: &str) {
    let context = || format!("{diagnostic}\nconfig {}", hex(text.as_bytes()));
    let place = diagnostic
        .location
        .strip_prefix("fuzz.toml:")
        .unwrap_or_else(|| panic!("not located: {}", context()));
    let (line, col) = place
        .split_once(':')
        .unwrap_or_else(|| panic!("no column: {}", context()));
    let (line, col): (usize, usize) = (
        line.parse().unwrap_or_else(|_| panic!("bad line: {}", context())),
        col.parse().unwrap_or_else(|_| panic!("bad column: {}", context())),
    );
    assert!(line >= 1 && col >= 1, "{}", context());
    assert!(line <= text.split('\n').count(), "line past the end: {}", context());
}

// ---------------------------------------------------------------------------------------------
// capture: the replay tool's input reader.

/// `capture` target: the bytes as a file given to the replay tool's `input::load` (a pcap or
/// pcapng capture, or a dnsperf query file, by its first bytes), and as one captured frame of
/// each link type `input::udp_query` reads. No panic; a loaded table holds what the stats say,
/// each query readable, each source a loopback address. Memory is bounded by libFuzzer's
/// `-rss_limit_mb` (see the README).
pub fn capture(data: &[u8]) {
    let links = [
        DataLink::ETHERNET,
        DataLink::LINUX_SLL,
        DataLink::LINUX_SLL2,
        DataLink::RAW,
        DataLink::IPV4,
        DataLink::IPV6,
        DataLink::NULL,
        DataLink::LOOP,
    ];
    for link in links {
        if let Some((_, payload)) = input::udp_query(link, data, 53) {
            assert!(
                packet::parse(payload).is_ok(),
                "udp_query kept a payload that is no query: {}",
                hex(data)
            );
        }
    }
    let path = temp_path("capture");
    std::fs::write(&path, data).expect("write the capture to the temp dir");
    let options = LoadOptions {
        source: "127.0.0.1".parse().expect("an address"),
        edns: true,
        map: ClientMap::new(Vec::new(), false, false).expect("the default client map"),
        capture_port: 53,
    };
    let loaded = input::load(&path, &options);
    let _ = std::fs::remove_file(&path);
    if let Ok((table, stats)) = loaded {
        let context = || format!("input {}", hex(data));
        assert_eq!(stats.queries, table.len() as u64, "{}", context());
        assert_eq!(stats.clients, table.sources().len() as u64, "{}", context());
        assert!(!table.is_empty(), "{}", context());
        for i in 0..table.len() {
            assert!(table.source(i).is_loopback(), "{}", context());
            assert!(
                table.query(i).len() >= 12 && !table.question(i).is_empty(),
                "{}",
                context()
            );
        }
    }
}

/// `proxy_header` target: the bytes as what a relay sends before a DNS message (a PROXY v2
/// header), and as a query whose Client Subnet option is read and stripped. A header that reads
/// lies within the bytes, past its fixed part and under the bound; bytes that do not start with
/// the whole signature are never a header nor an error; a header cut anywhere is an error.
/// Stripping Client Subnet leaves a message whose OPT record still reads, without the option.
pub fn proxy_header(data: &[u8]) {
    let context = || format!("input {}", hex(data));
    let signed = data.starts_with(&proxy_protocol::SIGNATURE);
    match proxy_protocol::parse(data) {
        Ok(Some(header)) => {
            assert!(signed, "a header without the signature\n{}", context());
            assert!(
                (proxy_protocol::FIXED_LEN..=data.len().min(proxy_protocol::MAX_LEN)).contains(&header.len),
                "header length {} out of bounds\n{}",
                header.len,
                context()
            );
            // Cut short, the same header is an error, never another header.
            for cut in [header.len - 1, proxy_protocol::FIXED_LEN - 1] {
                if let Some(short) = data.get(..cut) {
                    assert_eq!(
                        proxy_protocol::parse(short),
                        Err(HeaderError::Truncated),
                        "cut at {cut}\n{}",
                        context()
                    );
                }
            }
        }
        Ok(None) => assert!(!signed, "the signature, read as no header\n{}", context()),
        Err(_) => assert!(signed, "an error without the signature\n{}", context()),
    }
    if let Some(subnet) = packet::client_subnet(data) {
        let bits = if subnet.address.is_ipv4() { 32 } else { 128 };
        assert!(subnet.source_prefix <= bits, "prefix past the address\n{}", context());
    }
    let mut stripped = data.to_vec();
    let removed = packet::strip_edns_option(&mut stripped, packet::OPTION_CLIENT_SUBNET);
    if removed == 0 {
        assert_eq!(stripped, data, "changed without removing\n{}", context());
    } else {
        let opt = packet::find_opt(&stripped)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("OPT unreadable after stripping\n{}", context()));
        let rdata = stripped.get(opt.rdata).unwrap_or_default();
        let left: Vec<_> = packet::edns_options(rdata).collect();
        assert!(
            left.iter()
                .all(|o| o.as_ref().is_ok_and(|o| o.code != packet::OPTION_CLIENT_SUBNET)),
            "Client Subnet left, or options broken, after stripping\n{}",
            context()
        );
        assert!(stripped.len() + removed * 4 <= data.len(), "grew\n{}", context());
    }
}
