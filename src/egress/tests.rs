//! The companion's decisions without nft or a network: deduplication, timeouts, what is never
//! published, what joins a batch.

use super::*;

/// `text` after an `[upstream]` section: a config must set something.
fn config(text: &str) -> Config {
    Config::parse(crate::config::Origin {
        name: "test.toml".into(),
        dir: "/etc/sinkhole".into(),
        text: format!("[upstream]\nservers = [\"192.0.2.53\"]\n{text}"),
    })
    .expect("a valid config")
}

fn settings(text: &str) -> Settings {
    Settings::from_config(&config(text))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn timeouts_are_the_ttl_clamped() {
    let s = settings("[egress]\nmin_timeout = 30\nmax_timeout = 600\n");
    assert_eq!(s.timeout(0), 30);
    assert_eq!(s.timeout(300), 300);
    assert_eq!(s.timeout(86_400), 600);
}

#[test]
fn the_networks_own_and_never_add_are_never_published() {
    let s = settings(
        "[server]\nallow = [\"127.0.0.0/8\", \"203.0.113.128/25\"]\n[egress]\nnever_add = [\"198.51.100.0/24\"]\n",
    );
    for private in [
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.1",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        // never_add, and server.allow
        "198.51.100.9",
        "203.0.113.200",
    ] {
        assert!(!s.publishable(ip(private)), "{private} must never be published");
    }
    for public in ["203.0.113.7", "192.0.2.1", "2001:db8::7", "::ffff:203.0.113.7"] {
        assert!(s.publishable(ip(public)), "{public} may be published");
    }
}

#[test]
fn a_name_is_resolved_again_only_after_its_hold() {
    let mut dedup = Dedup::new(16);
    let now = Instant::now();
    let window = Duration::from_secs(60);
    assert!(dedup.take("tiktok.com", now, now + window));
    assert!(!dedup.take("tiktok.com", now + Duration::from_secs(59), now + window));
    assert!(dedup.take("tiktok.com", now + Duration::from_secs(60), now + window * 2));
    // The answer says the elements live 300 s: not again before.
    dedup.hold("tiktok.com", now + Duration::from_secs(300));
    assert!(!dedup.take("tiktok.com", now + Duration::from_secs(299), now));
    assert!(dedup.take("tiktok.com", now + Duration::from_secs(300), now));
}

#[test]
fn the_dedup_table_stays_bounded() {
    let mut dedup = Dedup::new(8);
    let now = Instant::now();
    for i in 0..1000 {
        dedup.take(&format!("n{i}.example"), now, now + Duration::from_secs(60));
    }
    assert!(dedup.names.len() <= 8 * 2, "{} names kept", dedup.names.len());
}

fn companion(text: &str) -> Companion {
    let s = settings(text);
    let (_, offers) = EgressQueue::new(s.queue());
    Companion::new(s, offers)
}

#[test]
fn resolved_addresses_join_the_batch_once_with_clamped_timeouts() {
    let mut c = companion("[egress]\nmin_timeout = 10\nmax_timeout = 100\n");
    let now = Instant::now();
    let found = vec![(ip("203.0.113.7"), 3), (ip("2001:db8::7"), 500), (ip("10.0.0.1"), 50)];
    c.resolved("v16.tiktokcdn.com", Ok(found.clone()), now);
    assert_eq!(
        c.batch,
        vec![
            Entry {
                ip: ip("203.0.113.7"),
                timeout: 10
            },
            Entry {
                ip: ip("2001:db8::7"),
                timeout: 100
            }
        ]
    );
    // Another name on the same addresses adds nothing more to the batch.
    c.resolved("v19.tiktokcdn.com", Ok(found), now);
    assert_eq!(c.batch.len(), 2);
    // Once added and live, an address is not added again until it would expire.
    c.batch.clear();
    c.known.insert(ip("203.0.113.7"), now + Duration::from_secs(10));
    c.resolved("v20.tiktokcdn.com", Ok(vec![(ip("203.0.113.7"), 5)]), now);
    assert!(c.batch.is_empty());
    c.resolved(
        "v20.tiktokcdn.com",
        Ok(vec![(ip("203.0.113.7"), 5)]),
        now + Duration::from_secs(11),
    );
    assert_eq!(
        c.batch,
        vec![Entry {
            ip: ip("203.0.113.7"),
            timeout: 10
        }]
    );
}

#[test]
fn addresses_inside_a_published_range_are_not_added_alone() {
    let mut c = companion("");
    c.ranges = vec!["203.0.113.0/24".parse().unwrap()];
    c.resolved(
        "a.example",
        Ok(vec![(ip("203.0.113.7"), 300), (ip("192.0.2.1"), 300)]),
        Instant::now(),
    );
    assert_eq!(
        c.batch,
        vec![Entry {
            ip: ip("192.0.2.1"),
            timeout: 300
        }]
    );
}

#[test]
fn a_range_that_covers_the_networks_own_is_not_published() {
    let c = companion("");
    assert!(!c.range_publishable(&"10.0.0.0/16".parse().unwrap()));
    assert!(!c.range_publishable(&"0.0.0.0/0".parse().unwrap()));
    assert!(c.range_publishable(&"203.0.113.0/24".parse().unwrap()));
}

#[test]
fn the_rate_bucket_lets_a_seconds_worth_through() {
    let now = Instant::now();
    let mut bucket = Bucket::new(3, now);
    assert!((0..3).all(|_| bucket.take()));
    assert!(!bucket.take());
    bucket.refill(now + Duration::from_millis(400));
    assert!(bucket.take());
    assert!(!bucket.take());
    bucket.refill(now + Duration::from_secs(60));
    assert_eq!((0..10).filter(|_| bucket.take()).count(), 3);
}

#[test]
fn offers_taken_are_deduplicated_and_bounded_by_the_queue() {
    let s = settings("[egress]\nqueue = 2\n");
    let (queue, offers) = EgressQueue::new(16);
    let mut c = Companion::new(s, offers);
    let name = |t: &str| crate::packet::QName::from_dotted(t).unwrap();
    for n in ["a.example", "a.example", "b.example", "c.example"] {
        queue.offer(&name(n), 1);
    }
    c.take_offers(Instant::now());
    assert_eq!(c.waiting, ["a.example".into(), "b.example".into()] as [Box<str>; 2]);
}

#[test]
fn losing_the_sets_forgets_the_names_held() {
    let mut c = companion("");
    let now = Instant::now();
    c.set_ready(true);
    assert!(c.dedup.take("a.example", now, now + Duration::from_secs(600)));
    c.failed(
        &NftError {
            failure: Failure::Rejected,
            detail: "interval overlaps".into(),
        },
        now,
    );
    assert!(c.ready, "one refused element says nothing about the sets");
    assert!(!c.dedup.take("a.example", now, now));
    c.failed(
        &NftError {
            failure: Failure::MissingSet,
            detail: "No such file or directory".into(),
        },
        now,
    );
    assert!(!c.ready);
    assert!(
        c.dedup.take("a.example", now, now),
        "resolved again once the sets are back"
    );
}
