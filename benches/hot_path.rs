//! Criterion benches of the packet path's parts, each against issue 5's targets: the list matcher on a
//! 1,000,000-domain list (load < 1 s, < 64 bytes per domain, lookup < 100 ns), the client prefix lookup over
//! 10,000 prefixes (< 50 ns), question parsing, the block answer, a cache hit, and the whole fast path
//! (`Handler::answer_fast`) for a blocked query and a cache hit, and a cache hit checked against 10,000 answer-address
//! ranges (`handler/address_rules`).
//!
//! `cargo bench --bench hot_path -- --warm-up-time 1 --measurement-time 3`. Inputs are built outside the timed
//! closures; lookups cycle through pools of distinct names and addresses, so that a 1M-rule table is read the way
//! live traffic reads it (mostly from memory, not one hot cache line). The list's load time and size are measured
//! once and printed to stderr.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Edns, Message, OpCode, Query};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sinkhole::cache::{CacheKeyRef, CachedResponse, PacketCache, TtlLimits};
use sinkhole::hitlog::HitLog;
use sinkhole::packet;
use sinkhole::server::handler::{Clock, Handler, Protocol, Step, Worker};
use sinkhole::state::{ConfigSource, State};
use sinkhole::{BlockAnswer, BlockTemplate};
use sinkhole::{DomainSet, DomainSetBuilder};
use sinkhole::{PrefixRanges, PrefixTable};
use sinkhole::{RateLimiter, RateLimits};

/// Rules in the synthetic list (issue 5, target 5).
const LIST_DOMAINS: usize = 1_000_000;
/// Client prefixes in the prefix table (issue 5, target 5).
const CLIENT_PREFIXES: usize = 10_000;
/// Distinct inputs each lookup bench cycles through (a power of two, so the index is a mask).
const POOL: usize = 4096;

/// xorshift64*: deterministic inputs, the same on every run, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn letters(&mut self, min: usize, max: usize) -> String {
        let len = min + self.below(max - min + 1);
        (0..len).map(|_| char::from(b'a' + self.below(26) as u8)).collect()
    }
}

const TLDS: &[&str] = &["com", "net", "org", "io", "de", "co.uk", "info", "xyz", "app", "ru"];

/// Wildcard rules in AdGuard syntax, as TikTok's list has them; the first is the one the bench hits.
const WILDCARDS: &[&str] = &[
    "||p16-tiktok-*.ibyteimg.com^",
    "||p19-tiktok-*.ibyteimg.com^",
    "||v*-tiktok.byteoversea.com^",
    "||sf*-ttcdn-tos.pstatp.com^",
    "||api*-normal-*.tiktokv.eu^",
];

/// A list text of `n` distinct domains, one per line, like a large public blocklist: a random label made unique
/// by the rule's index, under a common TLD, a fifth of them one label deeper. Returns the text and the domains.
fn synthetic_list(n: usize, rng: &mut Rng) -> (String, Vec<String>) {
    let mut text = String::with_capacity(n * 24);
    let mut domains = Vec::with_capacity(n);
    for i in 0..n {
        let tld = TLDS[rng.below(TLDS.len())];
        let mut domain = format!("{}{i:x}.{tld}", rng.letters(4, 10));
        if rng.below(5) == 0 {
            domain = format!("{}.{domain}", rng.letters(2, 6));
        }
        text.push_str(&domain);
        text.push('\n');
        domains.push(domain);
    }
    for rule in WILDCARDS {
        text.push_str(rule);
        text.push('\n');
    }
    (text, domains)
}

fn lists(c: &mut Criterion) {
    let mut rng = Rng(0x5eed_0001);
    let (text, domains) = synthetic_list(LIST_DOMAINS, &mut rng);
    let started = Instant::now();
    let mut builder = DomainSetBuilder::new();
    let bad = builder.add_text("synthetic", &text);
    let set: DomainSet = builder.build();
    let load = started.elapsed();
    assert!(bad.is_empty(), "the synthetic list has no bad lines");
    eprintln!(
        "lists: {} rules loaded in {:.3} s; heap {:.1} MiB = {:.1} bytes/domain (targets: < 1 s, < 64 bytes)",
        set.len(),
        load.as_secs_f64(),
        set.heap_bytes() as f64 / (1024.0 * 1024.0),
        set.heap_bytes() as f64 / set.len() as f64,
    );
    drop(text);

    // Names under random rules, one or two labels down, as clients ask for them.
    let hits: Vec<Vec<u8>> = (0..POOL)
        .map(|_| {
            let domain = &domains[rng.below(domains.len())];
            let sub = ["www", "api", "cdn.img", "a1.media"][rng.below(4)];
            format!("{sub}.{domain}").into_bytes()
        })
        .collect();
    // Unrelated names of 3-4 labels: every suffix is probed, then the wildcard anchors.
    let misses: Vec<Vec<u8>> = (0..POOL)
        .map(|_| {
            let labels = 2 + rng.below(2);
            let mut name: Vec<String> = (0..labels).map(|_| rng.letters(3, 9)).collect();
            name.push(TLDS[rng.below(4)].to_string());
            name.join(".").into_bytes()
        })
        .collect();
    let wildcard_hits: Vec<Vec<u8>> = (0..POOL)
        .map(|_| format!("p16-tiktok-{}.ibyteimg.com", rng.letters(2, 6)).into_bytes())
        .collect();
    for name in &hits {
        assert!(set.lookup(name).is_some(), "{} is a hit", String::from_utf8_lossy(name));
    }
    for name in &wildcard_hits {
        let found = set.lookup(name).map(|m| set.rule(m.rule));
        assert_eq!(
            found,
            Some(WILDCARDS[0]),
            "{} is a wildcard hit",
            String::from_utf8_lossy(name)
        );
    }
    let missed = misses.iter().filter(|name| set.lookup(name).is_none()).count();
    assert!(
        missed > POOL * 99 / 100,
        "random names mostly miss ({missed} of {POOL})"
    );

    // The same name again and again: the table's lines stay in L1, so this is the lookup's own work, the floor
    // under `hit`, which reads 4096 names' worth of a table of tens of MB and waits on memory.
    let one_name = vec![hits[0].clone(); POOL];

    let mut group = c.benchmark_group("lists/lookup");
    let pools = [
        ("hit", &hits),
        ("miss", &misses),
        ("wildcard_hit", &wildcard_hits),
        ("hit_one_name", &one_name),
    ];
    for (label, names) in pools {
        group.bench_function(label, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (POOL - 1);
                set.lookup(black_box(&names[i]))
            })
        });
    }
    group.finish();
}

/// 10,000 distinct client prefixes shaped like a large organisation's, in a table as `PolicyTable` holds them:
/// nine in ten IPv4, /16 sites with /17../30 subnets inside them (so longest-prefix match has nesting to walk),
/// the rest IPv6 /32../64. Returns the table and the prefixes.
fn client_prefixes(rng: &mut Rng) -> (PrefixTable<usize>, Vec<Ipv4Net>, Vec<Ipv6Net>) {
    const SITES: usize = 500;
    let mut table = PrefixTable::default();
    let (mut v4, mut v6): (Vec<Ipv4Net>, Vec<Ipv6Net>) = (Vec::new(), Vec::new());
    // Every draw is fresh, so a duplicate (refused by `insert_new`) only costs another draw.
    while v4.len() < SITES {
        let site = Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), 16).map(|n| n.trunc());
        if let Ok(site) = site
            && table.insert_new(IpNet::V4(site), v4.len())
        {
            v4.push(site);
        }
    }
    while v4.len() + v6.len() < CLIENT_PREFIXES {
        let id = v4.len() + v6.len();
        if id % 10 == 0 {
            let addr = (0x2001_0db8_u128 << 96) | (u128::from(rng.next()) << 32);
            let net = Ipv6Net::new(Ipv6Addr::from(addr), 32 + rng.below(33) as u8).map(|n| n.trunc());
            if let Ok(net) = net
                && table.insert_new(IpNet::V6(net), id)
            {
                v6.push(net);
            }
        } else {
            let site = v4[rng.below(SITES)];
            let addr = u32::from(site.network()) | (rng.next() as u32 & 0xffff);
            let net = Ipv4Net::new(Ipv4Addr::from(addr), 17 + rng.below(14) as u8).map(|n| n.trunc());
            if let Ok(net) = net
                && table.insert_new(IpNet::V4(net), id)
            {
                v4.push(net);
            }
        }
    }
    (table, v4, v6)
}

fn policy(c: &mut Criterion) {
    let mut rng = Rng(0x5eed_0002);
    let (table, v4, v6) = client_prefixes(&mut rng);

    let in_v4: Vec<IpAddr> = (0..POOL)
        .map(|_| {
            let net = v4[rng.below(v4.len())];
            let host = rng.next() as u32 & !u32::from(net.netmask());
            IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) | host))
        })
        .collect();
    let outside_v4: Vec<IpAddr> = (0..POOL)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
        .collect();
    let in_v6: Vec<IpAddr> = (0..POOL)
        .map(|_| {
            let net = v6[rng.below(v6.len())];
            let host = u128::from(rng.next()) & !u128::from(net.netmask());
            IpAddr::V6(Ipv6Addr::from(u128::from(net.network()) | host))
        })
        .collect();
    assert!(in_v4.iter().chain(&in_v6).all(|&ip| table.contains(ip)));

    // What the packet path looks up (`ClientTable` holds its prefixes flattened), and the trie
    // it is built from, for comparison.
    let ranges = PrefixRanges::build(&table);
    let mut group = c.benchmark_group("policy/for_client");
    let loads = [
        ("v4_in_prefix", &in_v4),
        ("v4_random", &outside_v4),
        ("v6_in_prefix", &in_v6),
    ];
    for (label, clients) in loads {
        assert!(
            clients
                .iter()
                .all(|&ip| ranges.get(ip) == table.longest_match(ip).map(|(_, id)| *id))
        );
        group.bench_function(label, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (POOL - 1);
                ranges.get(black_box(clients[i]))
            })
        });
        group.bench_function(format!("{label}_trie"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (POOL - 1);
                table.longest_match(black_box(clients[i])).map(|(_, id)| *id)
            })
        });
    }
    group.finish();
}

/// A query as a stub resolver sends it: RD set, and with `edns` an OPT advertising 1232 bytes.
fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 0x4242;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("bench name"), qtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        message.edns = Some(opt);
    }
    message.to_vec().expect("encode the bench query")
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("packet/parse");
    for (label, edns) in [("plain", false), ("edns", true)] {
        let packet = query("www.Example.com.", RecordType::A, edns);
        group.bench_function(label, |b| b.iter(|| packet::parse(black_box(&packet))));
    }
    group.finish();
}

fn block_answer(c: &mut Criterion) {
    let template = BlockTemplate::new("staff", BlockAnswer::Nxdomain, 10);
    let packet = query("www.tiktok.com.", RecordType::A, true);
    let parsed = packet::parse(&packet).expect("the bench query parses");
    let apex = Some(b"tiktok.com".len() as u8);
    let mut out = Vec::with_capacity(512);
    c.bench_function("answer/block/nxdomain_ede", |b| {
        b.iter(|| {
            template.write(black_box(&packet), black_box(&parsed), apex, &mut out);
            out.len()
        })
    });
}

/// The upstream's answer to `packet`'s question, analysed for the cache: a CNAME to a CDN and its A record, the
/// usual shape of a popular name. Returns it with the owned cache key `answer_fast` would look it up by.
fn cached_answer(packet: &[u8]) -> (sinkhole::cache::CacheKey, Arc<CachedResponse>) {
    cached_answer_with(packet, A::new(192, 0, 2, 80))
}

/// [`cached_answer`] with the CDN name's address `address`.
fn cached_answer_with(packet: &[u8], address: A) -> (sinkhole::cache::CacheKey, Arc<CachedResponse>) {
    let parsed = packet::parse(packet).expect("the bench query parses");
    let qname = Name::from_ascii(parsed.name.to_string_lossy().as_ref()).expect("bench name");
    let cdn = Name::from_ascii("www.example.com.edgekey.net.").expect("bench name");
    let mut response = Message::response(parsed.id, OpCode::Query);
    response.metadata.recursion_desired = true;
    response.metadata.recursion_available = true;
    response.add_query(Query::query(qname.clone(), RecordType::A));
    response.add_answer(Record::from_rdata(qname, 300, RData::CNAME(CNAME(cdn.clone()))));
    response.add_answer(Record::from_rdata(cdn, 60, RData::A(address)));
    if parsed.edns.is_some() {
        response.edns = Some(Edns::new());
    }
    let bytes = response.to_vec().expect("encode the bench response");
    let cached = CachedResponse::analyze(bytes, Instant::now(), &TtlLimits::default()).expect("a cacheable answer");
    let key = CacheKeyRef::of(&parsed);
    (key.to_owned(), Arc::new(cached))
}

fn cache_hit(c: &mut Criterion) {
    let packet = query("www.example.com.", RecordType::A, true);
    let parsed = packet::parse(&packet).expect("the bench query parses");
    let cache = PacketCache::new(10_000, 64 << 20);
    let (key, response) = cached_answer(&packet);
    cache.insert(key.clone(), response);
    let question = &packet[parsed.question.clone()];
    let mut out = Vec::with_capacity(512);
    c.bench_function("cache/hit/get_write_to", |b| {
        b.iter(|| {
            let now = Instant::now();
            if let Some(hit) = cache.get(black_box(&key.borrowed()), now) {
                hit.write_to(parsed.id, parsed.rd(), question, now, parsed.max_udp_len(), &mut out);
            }
            out.len()
        })
    });
}

/// The daemon's config with an upstream nobody answers on: the fast path never forwards.
const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:5399"]
metrics = "off"
allow = ["10.0.0.0/8", "fd00::/8"]

[upstream]
servers = ["127.0.0.1:9"]

[lists.tiktok]
builtin = ["tiktok"]

[[policy]]
name = "staff"
clients = ["10.0.0.0/8", "fd00::/8"]
block = ["tiktok"]

[log]
hits = "off"

# One bench client asks millions of queries a second: exempt, as the host's own clients are by
# default (the limiter's own cost is `ratelimit/check`).
[ratelimit]
exempt = ["10.0.0.0/8", "fd00::/8"]
"#;

/// The rate limiter's cost for a client under its limit: a hash and a compare-and-swap on the
/// client's bucket, over 4096 clients in turn (so that their slots are not all in cache).
fn ratelimit(c: &mut Criterion) {
    let limiter = RateLimiter::new();
    let limits = RateLimits {
        qps: 1_000_000,
        burst: 1_000_000,
        slip: 2,
        ..RateLimits::default()
    };
    let clients: Vec<IpAddr> = (0..4096u32).map(|i| IpAddr::V4((0x0a00_0000 + i).into())).collect();
    let mut at = 0;
    c.bench_function("ratelimit/check", |b| {
        b.iter(|| {
            at = (at + 1) % clients.len();
            limiter.check(black_box(clients[at]), None, Instant::now(), &limits)
        })
    });
}

/// Address ranges in the answer-address bench's list.
const ADDRESS_RANGES: usize = 10_000;

/// A handler over `config`, with the real metrics recorder installed (once) and no hit log.
fn handler_for(config: &str) -> Handler {
    let _ = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    let path: PathBuf = std::env::temp_dir().join(format!("sinkhole-hotbench-ip-{}.toml", std::process::id()));
    std::fs::write(&path, config).expect("write the bench config to the temp dir");
    let state = State::new(ConfigSource::File(path.clone()));
    let _ = std::fs::remove_file(&path);
    let state = state.unwrap_or_else(|e| panic!("bench config: {e}"));
    Handler::new(
        Arc::new(state),
        Arc::new(PacketCache::new(10_000, 64 << 20)),
        HitLog::disabled(),
    )
}

/// The cost of answer-address rules on a cache hit: the staff policy also blocks a list of
/// [`ADDRESS_RANGES`] ranges (IPv4 /24s and IPv6 /48s), so every cache hit of its clients has its
/// A record looked up in them. `pass`: the address is in no range (compare with
/// `handler/answer_fast/cache_hit`, the same hit without address rules); `blocked`: it is, and the
/// block answer is written instead.
fn address_rules(c: &mut Criterion) {
    let mut ranges = Vec::with_capacity(ADDRESS_RANGES);
    for i in 0..ADDRESS_RANGES / 2 {
        // 100.64.0.0/10: 16,384 /24s, none of them 192.0.2.0/24.
        let v4 = Ipv4Addr::from(0x6440_0000u32 + ((i as u32) << 8));
        ranges.push(format!("\"{v4}/24\""));
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, i as u16, 0, 0, 0, 0, 0);
        ranges.push(format!("\"{v6}/48\""));
    }
    let config = CONFIG.replace(
        "block = [\"tiktok\"]",
        &format!(
            "block = [\"tiktok\", \"hidden\"]\n[lists.hidden]\nip = [{}]",
            ranges.join(", ")
        ),
    );
    let handler = handler_for(&config);
    let client: IpAddr = "10.1.2.3".parse().expect("bench address");
    let pass = query("www.example.com.", RecordType::A, true);
    let blocked = query("app.example.com.", RecordType::A, true);
    for (packet, address) in [(&pass, A::new(192, 0, 2, 80)), (&blocked, A::new(100, 64, 7, 80))] {
        let (key, response) = cached_answer_with(packet, address);
        handler.cache().insert(key, response);
    }
    let mut group = c.benchmark_group("handler/address_rules");
    for (label, packet, rcode) in [("cache_hit_pass", &pass, 0), ("cache_hit_blocked", &blocked, 3)] {
        let mut out = Vec::with_capacity(512);
        // As `handler/answer_fast/cache_hit`: a short-lived worker, the hit from the shared cache.
        let mut worker = Worker::default();
        let step = handler.answer_fast(packet, client, Protocol::Udp, Clock::now(), &mut out, &mut worker);
        assert!(
            matches!(step, Step::Reply) && out[3] & 0x0f == rcode,
            "{label} is answered on the fast path with rcode {rcode}"
        );
        group.bench_function(label, |b| {
            b.iter(|| {
                let step = handler.answer_fast(
                    black_box(packet),
                    client,
                    Protocol::Udp,
                    Clock::now(),
                    &mut out,
                    &mut worker,
                );
                matches!(step, Step::Reply)
            })
        });
        handler.flush(&mut worker);
    }
    group.finish();
}

fn handler(c: &mut Criterion) {
    // Real metric handles, as `sinkhole run` has them: increments are atomic adds, not no-ops.
    if let Err(e) = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        panic!("cannot install the metrics recorder: {e}");
    }
    let path: PathBuf = std::env::temp_dir().join(format!("sinkhole-hotbench-{}.toml", std::process::id()));
    std::fs::write(&path, CONFIG).expect("write the bench config to the temp dir");
    let state = State::new(ConfigSource::File(path.clone()));
    let _ = std::fs::remove_file(&path);
    let state = state.unwrap_or_else(|e| panic!("bench config: {e}"));
    let handler = Handler::new(
        Arc::new(state),
        Arc::new(PacketCache::new(10_000, 64 << 20)),
        HitLog::disabled(),
    );
    let client: IpAddr = "10.1.2.3".parse().expect("bench address");

    let blocked = query("www.tiktok.com.", RecordType::A, true);
    let cached = query("www.example.com.", RecordType::A, true);
    let (key, response) = cached_answer(&cached);
    handler.cache().insert(key, response);

    let mut group = c.benchmark_group("handler/answer_fast");
    for (label, packet, rcode) in [("blocked", &blocked, 3), ("cache_hit", &cached, 0)] {
        let mut out = Vec::with_capacity(512);
        let step = handler.answer_fast(
            packet,
            client,
            Protocol::Udp,
            Clock::now(),
            &mut out,
            &mut Worker::default(),
        );
        assert!(
            matches!(step, Step::Reply) && out[3] & 0x0f == rcode,
            "{label} is answered on the fast path"
        );
        group.bench_function(label, |b| {
            b.iter(|| {
                let step = handler.answer_fast(
                    black_box(packet),
                    client,
                    Protocol::Udp,
                    Clock::now(),
                    &mut out,
                    &mut Worker::default(),
                );
                matches!(step, Step::Reply)
            })
        });
    }
    group.finish();

    // The same queries from 1 and 2 threads at once, each thread with its own `Worker` (counts,
    // front cache) as a UDP worker has: the time per query per thread stays flat where nothing a
    // query touches is contended across cores, and grows with what is. Meaningful up to the
    // machine's core count.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("handler/answer_fast_threads");
    // `cache_hit_shared`: workers without a front cache, every hit from the shared cache.
    let cases = [
        ("blocked", &blocked, true),
        ("cache_hit", &cached, true),
        ("cache_hit_shared", &cached, false),
    ];
    for (label, packet, front) in cases {
        for threads in [1, 2].into_iter().filter(|&t| t <= cores) {
            group.bench_function(format!("{label}/{threads}"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|scope| {
                        for _ in 0..threads {
                            scope.spawn(|| {
                                let mut out = Vec::with_capacity(512);
                                let mut worker = if front { handler.worker(1) } else { Worker::default() };
                                for _ in 0..iters {
                                    let now = Clock::now();
                                    handler.answer_fast(
                                        black_box(packet),
                                        client,
                                        Protocol::Udp,
                                        now,
                                        &mut out,
                                        &mut worker,
                                    );
                                }
                                handler.flush(&mut worker);
                            });
                        }
                    });
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

/// The fast path for a blocked query when the policy has a weekly `schedule` (every day, two
/// ranges a day in Europe/Brussels: some 800 precomputed windows to search), against the same
/// policy without one, at the same instant (06:00 in Brussels today); and at an instant three
/// years on, past the precomputed windows, where the schedule is worked out from the time zone
/// per query (what every query would cost without the precomputation). Runs after `handler`,
/// which installs the metrics recorder.
fn scheduled(c: &mut Criterion) {
    let zone = jiff::tz::TimeZone::get("Europe/Brussels").expect("tzdata has Europe/Brussels");
    let six_am = |years: i16| {
        let today = zone.to_datetime(jiff::Timestamp::now()).date();
        let day = today
            .checked_add(jiff::Span::new().years(years))
            .expect("a date in range");
        let at = zone.to_ambiguous_timestamp(day.at(6, 0, 0, 0)).compatible();
        at.expect("06:00 exists in Brussels").as_second()
    };
    let (near, far) = (six_am(0), six_am(3));
    let schedule = "schedule = { hours = [\"00:00-11:59\", \"12:00-23:59\"], time_zone = \"Europe/Brussels\" }\n";
    let with_schedule = CONFIG.replace("block = [\"tiktok\"]\n", &format!("block = [\"tiktok\"]\n{schedule}"));
    assert_ne!(with_schedule, CONFIG);
    let client: IpAddr = "10.1.2.3".parse().expect("bench address");
    let blocked = query("www.tiktok.com.", RecordType::A, true);
    let mut group = c.benchmark_group("handler/answer_fast_schedule");
    for (label, config, at) in [
        ("unscheduled", CONFIG, near),
        ("scheduled", with_schedule.as_str(), near),
        ("scheduled_beyond_precomputed", with_schedule.as_str(), far),
    ] {
        let path: PathBuf = std::env::temp_dir().join(format!("sinkhole-schedbench-{}.toml", std::process::id()));
        std::fs::write(&path, config).expect("write the bench config to the temp dir");
        let state = State::new(ConfigSource::File(path.clone()));
        let _ = std::fs::remove_file(&path);
        let state = state.unwrap_or_else(|e| panic!("bench config: {e}"));
        let handler = Handler::new(
            Arc::new(state),
            Arc::new(PacketCache::new(1000, 1 << 20)),
            HitLog::disabled(),
        );
        let mut out = Vec::with_capacity(512);
        let step = handler.answer_fast(
            &blocked,
            client,
            Protocol::Udp,
            Clock::at(at),
            &mut out,
            &mut Worker::default(),
        );
        assert!(
            matches!(step, Step::Reply) && out[3] & 0x0f == 3,
            "{label}: blocked on the fast path"
        );
        group.bench_function(label, |b| {
            b.iter(|| {
                let step = handler.answer_fast(
                    black_box(&blocked),
                    client,
                    Protocol::Udp,
                    Clock::at(at),
                    &mut out,
                    &mut Worker::default(),
                );
                matches!(step, Step::Reply)
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    lists,
    policy,
    parse,
    block_answer,
    cache_hit,
    ratelimit,
    handler,
    scheduled,
    address_rules
);
criterion_main!(benches);
