//! Properties of what [`Handler::answer_fast`] sends (proptest): whatever well-formed query comes in (any name,
//! type, RD and CD, with or without EDNS, any payload size and DO), from whichever client (refused, blocked with
//! each answer kind, audited, in no policy), blocked by its name or through a cached CNAME chain, or served from
//! the cache (shared or front), the bytes decode with hickory-proto as a response that carries the query's id and
//! its question as sent, and a UDP answer fits the size the client allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as Question, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use proptest::prelude::*;

use super::*;
use crate::cache::{CacheKeyRef, CachedResponse, PacketCache, TtlLimits};
use crate::config::{Config, Origin};
use crate::wire::{CLASS_IN, HEADER_LEN, MAX_MESSAGE, MIN_UDP_PAYLOAD, flag};

/// One policy per answer kind, an audit policy, and room for clients in no policy. Misses are never forwarded
/// (the test stops at `Step::Forward`), so the upstream is a discard port.
const CONFIG: &str = r#"
[server]
allow = ["10.0.0.0/8", "fd00::/8"]
[upstream]
servers = ["127.0.0.1:9"]
[lists.blocked]
domains = ["blocked.example", "tiktok.com"]
[[policy]]
name = "nxdomain"
clients = ["10.1.0.0/16"]
block = ["blocked"]
[[policy]]
name = "nodata"
clients = ["10.2.0.0/16"]
block = ["blocked"]
answer = "nodata"
[[policy]]
name = "null"
clients = ["10.3.0.0/16"]
block = ["blocked"]
answer = "null"
[[policy]]
name = "refused"
clients = ["10.4.0.0/16"]
block = ["blocked"]
answer = "refused"
[[policy]]
name = "page-v4"
clients = ["10.5.0.0/16"]
block = ["blocked"]
answer = "192.0.2.80"
[[policy]]
name = "page-v6"
clients = ["10.6.0.0/16", "fd00:6::/32"]
block = ["blocked"]
answer = "2001:db8::80"
[[policy]]
name = "audit"
clients = ["10.7.0.0/16"]
block = ["blocked"]
mode = "audit"
"#;

/// The domains `CONFIG` blocks.
const BLOCKED: &[&str] = &["blocked.example", "tiktok.com"];

/// Where a chain in a cached answer may lead: into a blocked domain.
const BLOCKED_TARGET: &str = "v16m.tiktok.com.";

/// The clients, and what a blocked name gets for each: `None` for a client that is never blocked.
fn clients() -> Vec<(IpAddr, Client)> {
    let v4 = |c: u8| IpAddr::V4(Ipv4Addr::new(10, c, 0, 1));
    vec![
        (v4(1), Client::Blocks(ResponseCode::NXDomain)),
        (
            IpAddr::V6(Ipv4Addr::new(10, 1, 0, 1).to_ipv6_mapped()),
            Client::Blocks(ResponseCode::NXDomain),
        ),
        (v4(2), Client::Blocks(ResponseCode::NoError)),
        (v4(3), Client::Blocks(ResponseCode::NoError)),
        (v4(4), Client::Blocks(ResponseCode::Refused)),
        (v4(5), Client::Blocks(ResponseCode::NoError)),
        (v4(6), Client::Blocks(ResponseCode::NoError)),
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 6, 0, 0, 0, 0, 0, 1)),
            Client::Blocks(ResponseCode::NoError),
        ),
        (v4(7), Client::NeverBlocked),
        (v4(9), Client::NeverBlocked),
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            Client::NeverBlocked,
        ),
        (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), Client::Refused),
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            Client::Refused,
        ),
    ]
}

/// What a client gets, by its policy.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// Outside `server.allow`: REFUSED, whatever it asks.
    Refused,
    /// A blocked name (asked, or in a cached chain) gets a block answer with this rcode.
    Blocks(ResponseCode),
    /// In no policy, or an audit one: answered as if nothing were blocked.
    NeverBlocked,
}

/// One query and what is in the cache for it.
#[derive(Clone, Debug)]
struct Ask {
    id: u16,
    /// The name as sent (mixed case, no trailing dot).
    name: String,
    /// Whether it is a blocked domain or below one.
    blocked: bool,
    qtype: u16,
    rd: bool,
    cd: bool,
    /// The OPT record's payload size and DO bit, if the query carries one.
    edns: Option<(u16, bool)>,
    /// An upstream answer put in the cache first: its number of A records, and whether a CNAME leads them into
    /// a blocked domain.
    cached: Option<(usize, bool)>,
    /// Index into [`clients`].
    client: usize,
    tcp: bool,
}

impl Ask {
    /// The query's bytes, written by hand so that every field (payload sizes under 512 included) is as drawn.
    fn packet(&self) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&self.id.to_be_bytes());
        let flags = if self.rd { flag::RD } else { 0 } | if self.cd { flag::CD } else { 0 };
        p.extend_from_slice(&flags.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        for label in self.name.split('.') {
            p.push(u8::try_from(label.len()).expect("labels are short"));
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&self.qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some((payload, dnssec_ok)) = self.edns {
            p.push(0);
            p.extend_from_slice(&rtype::OPT.to_be_bytes());
            p.extend_from_slice(&payload.to_be_bytes());
            p.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        p
    }

    /// Where the question ends in [`Ask::packet`].
    fn question_end(&self) -> usize {
        HEADER_LEN + self.name.len() + 2 + 4
    }

    /// The largest answer this client gets: RFC 6891's rule (no EDNS: 512; a payload under 512 counts as 512), at
    /// most the server's UDP limit.
    fn limit(&self) -> usize {
        match (self.tcp, self.edns) {
            (true, _) => MAX_MESSAGE,
            (false, None) => MIN_UDP_PAYLOAD,
            // Never past server.max_udp_payload (1232 by default), whatever the client says.
            (false, Some((payload, _))) => usize::from(payload).clamp(MIN_UDP_PAYLOAD, 1232),
        }
    }

    /// The upstream answer cached for it: the name lowercased (the cache serves any case), optionally a CNAME
    /// into a blocked domain, then `records` A records; an OPT if the query has one, as an upstream sends back.
    fn upstream_answer(&self, records: usize, via_blocked: bool) -> Message {
        // From raw labels: `from_ascii` applies IDNA rules (no `--` at the third and fourth places) that DNS
        // itself does not have.
        let lower = self.name.to_ascii_lowercase();
        let owner = Name::from_labels(lower.split('.').map(str::as_bytes)).expect("drawn names are valid");
        let mut m = Message::response(0x4242, OpCode::Query);
        m.add_query(Question::query(owner.clone(), RecordType::from(self.qtype)));
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        let mut last = owner;
        if via_blocked {
            let target = Name::from_ascii(BLOCKED_TARGET).expect("valid");
            m.add_answer(Record::from_rdata(last, 300, RData::CNAME(CNAME(target.clone()))));
            last = target;
        }
        for i in 0..records {
            let address = Ipv4Addr::new(192, 0, 2, (i % 256) as u8);
            m.add_answer(Record::from_rdata(last.clone(), 300, RData::A(A::from(address))));
        }
        if self.edns.is_some() {
            let mut opt = Edns::new();
            opt.set_max_payload(1232);
            m.edns = Some(opt);
        }
        m
    }
}

/// Names: 1 to 4 labels of letters (either case), digits, `-` and `_`; or such labels in front of a blocked
/// domain written in random case.
fn name() -> impl Strategy<Value = (String, bool)> {
    let labels = prop::collection::vec("[a-zA-Z0-9_-]{1,12}", 1..=4);
    let blocked = (
        prop::collection::vec("[a-zA-Z0-9_-]{1,12}", 0..=3),
        prop::sample::select(BLOCKED),
        any::<u64>(),
    )
        .prop_map(|(head, domain, case)| {
            let domain: String = domain
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if case >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            let mut name = head;
            name.push(domain);
            (name.join("."), true)
        });
    prop_oneof![labels.prop_map(|l| (l.join("."), false)), blocked]
}

/// Query types: the common ones, the zone transfers (refused), and any number at all.
fn qtype() -> impl Strategy<Value = u16> {
    prop_oneof![
        prop::sample::select(vec![1u16, 28, 5, 15, 16, 65, 255, rtype::AXFR, rtype::IXFR]),
        any::<u16>(),
    ]
}

fn ask(clients: usize) -> impl Strategy<Value = Ask> {
    let cached = prop::option::of((1usize..120, prop::bool::weighted(0.3)));
    // Payload sizes mostly near the sizes of the cached answers (about 60 to 2000 bytes), where truncation is
    // decided; any size at all now and then.
    let payload = prop_oneof![4 => 0u16..2048, 1 => any::<u16>()];
    let edns = prop::option::of((payload, any::<bool>()));
    (
        any::<u16>(),
        name(),
        qtype(),
        any::<(bool, bool, bool)>(),
        edns,
        cached,
        0..clients,
    )
        .prop_map(
            |(id, (name, blocked), qtype, (rd, cd, tcp), edns, cached, client)| Ask {
                id,
                name,
                blocked,
                qtype,
                rd,
                cd,
                edns,
                cached,
                client,
                tcp,
            },
        )
}

/// What `answer_fast` must do with an ask: send an answer with this rcode, or forward it.
fn expected(ask: &Ask, client: Client) -> Option<ResponseCode> {
    match client {
        Client::Refused => return Some(ResponseCode::Refused),
        Client::Blocks(rcode) if ask.blocked => return Some(rcode),
        _ => {}
    }
    if ask.qtype == rtype::AXFR || ask.qtype == rtype::IXFR {
        return Some(ResponseCode::Refused);
    }
    if ask.qtype == rtype::ANY {
        // RFC 8482: one HINFO record, never forwarded nor taken from the cache.
        return Some(ResponseCode::NoError);
    }
    match (ask.cached, client) {
        (Some((_, true)), Client::Blocks(rcode)) => Some(rcode),
        (Some(_), _) => Some(ResponseCode::NoError),
        (None, _) => None,
    }
}

/// The checks on one answer's bytes.
fn check(ask: &Ask, sent: &[u8], out: &[u8], rcode: ResponseCode) -> Result<(), TestCaseError> {
    let message = Message::from_vec(out).map_err(|e| TestCaseError::fail(format!("does not decode: {e}")))?;
    let m = &message.metadata;
    prop_assert_eq!(m.message_type, MessageType::Response);
    prop_assert_eq!(m.id, ask.id);
    prop_assert_eq!(m.op_code, OpCode::Query);
    prop_assert_eq!(m.recursion_desired, ask.rd);
    prop_assert_eq!(m.response_code, rcode);
    prop_assert_eq!(message.queries.len(), 1);
    let question = &message.queries[0];
    let labels: Vec<&[u8]> = question.name().iter().collect();
    let sent_labels: Vec<&[u8]> = ask.name.split('.').map(str::as_bytes).collect();
    prop_assert_eq!(labels, sent_labels, "the name as sent, case and all");
    prop_assert_eq!(u16::from(question.query_type()), ask.qtype);
    prop_assert_eq!(question.query_class(), DNSClass::IN);
    let end = ask.question_end();
    prop_assert_eq!(
        out.get(HEADER_LEN..end),
        sent.get(HEADER_LEN..end),
        "the question's bytes echoed"
    );
    prop_assert!(
        out.len() <= ask.limit(),
        "{} bytes, the client takes {}",
        out.len(),
        ask.limit()
    );
    prop_assert_eq!(
        message.edns.is_some(),
        ask.edns.is_some(),
        "an EDNS query gets an OPT back, only it"
    );
    Ok(())
}

proptest! {
    // Each case builds a snapshot and answers up to 12 queries twice: fewer cases than the default keep
    // `cargo test` quick, and the draws per case make up for it.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_answer_decodes_and_echoes_the_query(asks in prop::collection::vec(ask(clients().len()), 1..12)) {
        let config = Config::parse(Origin {
            name: "handler-property.toml".into(),
            dir: ".".into(),
            text: CONFIG.into(),
        })
        .expect("test config loads");
        let state = Arc::new(State::from_config(config).expect("test state builds"));
        let clients = clients();
        for ask in &asks {
            // A cache of its own per query, so that what one query cached cannot answer another.
            let handler = Handler::new(Arc::clone(&state), Arc::new(PacketCache::new(64, 64 << 20)), HitLog::disabled());
            let sent = ask.packet();
            let query = packet::parse(&sent).map_err(|e| TestCaseError::fail(format!("{ask:?}: {e}")))?;
            if let Some((records, via_blocked)) = ask.cached {
                let upstream = ask.upstream_answer(records, via_blocked).to_vec().expect("encodes");
                let response = CachedResponse::analyze(upstream, Instant::now(), &TtlLimits::default())
                    .map_err(|e| TestCaseError::fail(format!("{ask:?}: {e}")))?;
                handler.cache().insert(CacheKeyRef::of(&query).to_owned(), Arc::new(response));
            }
            let (client, kind) = clients[ask.client];
            let protocol = if ask.tcp { Protocol::Tcp } else { Protocol::Udp };
            let want = expected(ask, kind);
            let mut worker = handler.worker(1);
            // Twice: the second time a cached answer comes from the worker's front cache.
            for round in 0..2 {
                let mut out = Vec::new();
                let step = handler.answer_fast(&sent, client, protocol, Clock::now(), &mut out, &mut worker);
                match (step, want) {
                    (Step::Reply, Some(rcode)) => check(ask, &sent, &out, rcode)
                        .map_err(|e| TestCaseError::fail(format!("{ask:?} from {client}, round {round}: {e}")))?,
                    (Step::Forward(_), None) => {}
                    (Step::Drop, _) => {
                        return Err(TestCaseError::fail(format!("{ask:?} from {client}: dropped")));
                    }
                    (Step::Reply, None) => {
                        return Err(TestCaseError::fail(format!("{ask:?} from {client}: answered, expected a forward")));
                    }
                    (Step::Forward(_), Some(rcode)) => {
                        return Err(TestCaseError::fail(format!("{ask:?} from {client}: forwarded, expected {rcode}")));
                    }
                }
            }
        }
    }
}
