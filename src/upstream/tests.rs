//! Tests of forwarding against fake upstreams on loopback (sinkhole-testkit's `FakeUpstream`, one script for
//! every name: answer, noise, truncate, fail, lowercase, cut short), and sockets that stay silent or refuse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use sinkhole_testkit::{FakeUpstream, Script, TC_V4};

use super::*;

/// A pool of `servers` with the default settings but for its timeout.
fn new_pool(servers: &[SocketAddr], timeout: Duration) -> UpstreamPool {
    UpstreamPool::new(
        servers,
        PoolSettings {
            timeout,
            max_inflight: 4096,
            case_randomization: true,
        },
    )
}

/// Forwards `query` over `transport` and writes the answer for the client, as the handler
/// does: its id, its question.
async fn forward_on(pool: &UpstreamPool, query: &[u8], transport: Transport<'_>) -> Result<Vec<u8>, ForwardError> {
    let response = pool.forward(query, transport, &TtlLimits::default()).await?;
    let question_end = crate::wire::skip_question(query, HEADER_LEN).unwrap();
    let mut out = Vec::new();
    let id = u16::from_be_bytes([query[0], query[1]]);
    let rd = crate::wire::flags(query) & crate::wire::flag::RD != 0;
    response.write_to(
        id,
        rd,
        &query[HEADER_LEN..question_end],
        std::time::Instant::now(),
        65535,
        &mut out,
    );
    Ok(out)
}

/// Forwards over UDP, on sockets of the call's own.
async fn forward(pool: &UpstreamPool, query: &[u8]) -> Result<Vec<u8>, ForwardError> {
    forward_on(pool, query, Transport::Udp(&Sockets::new(1))).await
}

/// A fake upstream that plays `script` for every name; its plain A answers carry 192.0.2.`tag`.
fn fake(script: Script, tag: u8) -> FakeUpstream {
    FakeUpstream::start_as(script, tag)
}

/// The queries `up` received, as the bytes that came.
fn seen(up: &FakeUpstream) -> Vec<Vec<u8>> {
    up.received_wire()
}

/// The transports of the queries `up` received, in order ("udp", "tcp").
fn transports(up: &FakeUpstream) -> Vec<&'static str> {
    up.received().into_iter().map(|(_, _, transport)| transport).collect()
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// A client query for `qname` type A with RD, and with EDNS (payload 1232, DO) if `edns`.
fn query(id: u16, qname: &str, edns: bool) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), RecordType::A));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(true);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

/// The last octet of the answer's first A record.
fn a_tag(answer: &Message) -> u8 {
    match &answer.answers[0].data {
        RData::A(a) => a.0.octets()[3],
        other => panic!("not an A record: {other:?}"),
    }
}

/// An upstream that is bound and takes queries but never answers; kept alive by the caller.
fn silent() -> (FakeUpstream, SocketAddr) {
    let up = FakeUpstream::start_dead();
    let addr = up.addr();
    (up, addr)
}

/// An address where nothing listens (UDP answers port unreachable): a fake upstream, stopped.
fn closed() -> SocketAddr {
    let mut up = FakeUpstream::start();
    up.stop();
    up.addr()
}

#[tokio::test]
async fn answer_comes_back_with_the_client_id_and_the_query_untouched() {
    let up = fake(Script::Default, 1);
    let pool = new_pool(&[up.addr()], Duration::from_secs(2));
    let q = query(0x4242, "www.example.com.", true);
    let bytes = forward(&pool, &q).await.unwrap();
    let got = Message::from_vec(&bytes).unwrap();
    assert_eq!(got.metadata.id, 0x4242);
    assert_eq!(a_tag(&got), 1);
    let edns = got.edns.unwrap();
    assert_eq!((edns.max_payload(), edns.flags().dnssec_ok), (1232, true));
    // Upstream saw the client's query byte for byte, but for the id and the case of the name.
    let sent = seen(&up);
    assert_eq!(sent.len(), 1);
    assert!(sent[0][2..].eq_ignore_ascii_case(&q[2..]));
    assert_eq!(pool.servers(), [up.addr()]);
}

#[tokio::test]
async fn stray_datagrams_are_ignored_and_the_answer_taken() {
    let up = fake(Script::Noise, 3);
    let pool = new_pool(&[up.addr()], Duration::from_secs(2));
    let started = Instant::now();
    let bytes = forward(&pool, &query(7, "www.example.com.", false)).await.unwrap();
    let got = Message::from_vec(&bytes).unwrap();
    assert_eq!((got.metadata.id, a_tag(&got)), (7, 3));
    assert_eq!(got.queries[0].query_type(), RecordType::A);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn truncated_answer_is_asked_again_over_tcp() {
    let up = fake(Script::Tc, 4);
    let pool = new_pool(&[up.addr()], Duration::from_secs(2));
    let q = query(9, "big.example.com.", true);
    let bytes = forward(&pool, &q).await.unwrap();
    let got = Message::from_vec(&bytes).unwrap();
    assert_eq!(got.metadata.id, 9);
    assert!(!got.metadata.truncation);
    assert_eq!(a_tag(&got), TC_V4.octets()[3], "the TCP answer");
    assert_eq!(transports(&up), ["udp", "tcp"]);
    // Both the UDP and the TCP query carried the client's query unchanged but for the id (and
    // the case of the name's letters).
    for sent in seen(&up) {
        assert!(sent[2..].eq_ignore_ascii_case(&q[2..]));
    }
}

#[tokio::test]
async fn forward_tcp_asks_over_tcp_only() {
    let up = fake(Script::Default, 5);
    let pool = new_pool(&[up.addr()], Duration::from_secs(2));
    let sockets = Sockets::new(1);
    let bytes = forward_on(&pool, &query(10, "www.example.com.", false), Transport::Tcp(&sockets))
        .await
        .unwrap();
    let got = Message::from_vec(&bytes).unwrap();
    assert_eq!((got.metadata.id, a_tag(&got)), (10, 5));
    assert_eq!(transports(&up), ["tcp"], "one query only, over TCP");
}

#[tokio::test]
async fn dead_first_server_fails_over_within_the_budget_and_goes_last() {
    let (_dead, dead) = silent();
    let up = fake(Script::Default, 2);
    let pool = new_pool(&[dead, up.addr()], Duration::from_millis(600));
    let started = Instant::now();
    let bytes = forward(&pool, &query(11, "www.example.com.", false)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(a_tag(&Message::from_vec(&bytes).unwrap()), 2);
    // The dead one had half the budget.
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(600), "{took:?}");

    // Now it is marked down: the live one is asked first.
    let started = Instant::now();
    forward(&pool, &query(12, "www.example.com.", false)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn all_dead_is_a_timeout_within_the_timeout() {
    let (_a, dead_a) = silent();
    let (_b, dead_b) = silent();
    let pool = new_pool(&[dead_a, dead_b], Duration::from_millis(300));
    let started = Instant::now();
    let error = forward(&pool, &query(13, "www.example.com.", false)).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, ForwardError::Timeout(t) if t == Duration::from_millis(300)),
        "{error}"
    );
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(450), "{took:?}");
}

#[tokio::test]
async fn closed_port_fails_over_at_once() {
    let down = closed();
    let up = fake(Script::Default, 6);
    let pool = new_pool(&[down, up.addr()], Duration::from_secs(2));
    let started = Instant::now();
    let bytes = forward(&pool, &query(14, "www.example.com.", false)).await.unwrap();
    assert_eq!(a_tag(&Message::from_vec(&bytes).unwrap()), 6);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    let alone = new_pool(&[closed()], Duration::from_secs(2));
    let error = forward(&alone, &query(15, "www.example.com.", false))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ForwardError::AllFailed {
                tried: 1,
                last: AttemptError::Network(_),
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn servfail_moves_on_to_the_next_server_or_is_returned() {
    let bad = fake(Script::ServFail, 1);
    let good = fake(Script::Default, 2);
    let pool = new_pool(&[bad.addr(), good.addr()], Duration::from_secs(2));
    let bytes = forward(&pool, &query(16, "www.example.com.", false)).await.unwrap();
    let got = Message::from_vec(&bytes).unwrap();
    assert_eq!((got.metadata.response_code, a_tag(&got)), (ResponseCode::NoError, 2));

    let only_bad = new_pool(&[bad.addr()], Duration::from_secs(2));
    let bytes = forward(&only_bad, &query(17, "www.example.com.", false)).await.unwrap();
    let got = Message::from_vec(&bytes).unwrap();
    assert_eq!(
        (got.metadata.id, got.metadata.response_code),
        (17, ResponseCode::ServFail)
    );
}

#[tokio::test]
async fn mixed_case_question_matches_a_lowercased_answer() {
    let up = fake(Script::Lowercase, 8);
    let pool = new_pool(&[up.addr()], Duration::from_secs(1));
    let bytes = forward(&pool, &query(18, "wWw.ExAmPlE.cOm.", false)).await.unwrap();
    let got = Message::from_vec(&bytes).unwrap();
    assert_eq!((got.metadata.id, a_tag(&got)), (18, 8));
}

#[tokio::test]
async fn bad_queries_and_an_empty_pool_are_refused() {
    let pool = new_pool(&[], Duration::from_secs(1));
    assert!(matches!(
        forward(&pool, &query(1, "a.", false)).await,
        Err(ForwardError::NoServers)
    ));
    assert!(matches!(forward(&pool, &[0; 5]).await, Err(ForwardError::BadQuery(_))));
    let mut response = query(1, "a.", false);
    response[2] |= 0x80;
    assert!(matches!(
        forward(&pool, &response).await,
        Err(ForwardError::BadQuery(_))
    ));
    let mut two = query(1, "a.", false);
    two[5] = 2;
    assert!(matches!(forward(&pool, &two).await, Err(ForwardError::BadQuery(_))));
}

/// Forwards `q0.example.` to `q<n-1>.example.` (ids 0 to n-1) all at once, on one set of sockets;
/// returns each result with its number, in the order they finish.
async fn forward_at_once(pool: UpstreamPool, n: u8) -> Vec<(u8, Result<Vec<u8>, ForwardError>)> {
    let (pool, sockets) = (Arc::new(pool), Arc::new(Sockets::new(1)));
    let mut asks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (pool, sockets) = (Arc::clone(&pool), Arc::clone(&sockets));
        asks.spawn(async move {
            let q = query(u16::from(i), &format!("q{i}.example."), false);
            (i, forward_on(&pool, &q, Transport::Udp(&sockets)).await)
        });
    }
    let mut results = Vec::new();
    while let Some(result) = asks.join_next().await {
        results.push(result.unwrap());
    }
    results
}

#[tokio::test]
async fn queries_in_flight_share_one_socket_and_each_gets_its_own_answer() {
    // 50 at once: the upstream answers only when all 50 are in, last first.
    let up = FakeUpstream::start_holding(50);
    let results = forward_at_once(new_pool(&[up.addr()], Duration::from_secs(2)), 50).await;
    assert_eq!(results.len(), 50);
    for (n, result) in results {
        let answer = Message::from_vec(&result.unwrap()).unwrap();
        assert_eq!(answer.metadata.id, u16::from(n), "the client's id is restored");
        assert_eq!(
            answer.queries[0].name().to_ascii(),
            format!("q{n}.example."),
            "q{n} got the answer of another query"
        );
    }
    let mut seen = up.client_ports();
    seen.sort_unstable();
    seen.dedup();
    assert!(
        (1..=udp::PORTS).contains(&seen.len()),
        "spread over at most {} sockets: {seen:?}",
        udp::PORTS
    );
}

#[tokio::test]
async fn a_closed_port_fails_every_query_waiting_on_the_shared_socket() {
    // One port unreachable (ICMP) ends the wait of all the queries on the socket, not only of
    // the one whose datagram drew it: each fails with a network error, none waits for a timeout.
    let results = forward_at_once(new_pool(&[closed()], Duration::from_secs(2)), 20).await;
    assert_eq!(results.len(), 20);
    for (_, result) in results {
        let error = result.unwrap_err();
        assert!(
            matches!(
                error,
                ForwardError::AllFailed {
                    last: AttemptError::Network(_),
                    ..
                }
            ),
            "{error}"
        );
    }
}

#[tokio::test]
async fn sockets_are_replaced_by_ones_on_new_ports_after_their_share_of_queries() {
    let up = FakeUpstream::start();
    let pool = new_pool(&[up.addr()], Duration::from_secs(2));
    let sockets = Sockets::new(1);
    let asked = 3 * udp::ROTATE_AFTER as usize * udp::PORTS;
    // Every socket used is held open to the end: the kernel may give a closed socket's port
    // number to a later socket, which would count as one port carrying two sockets' shares.
    let mut held: Vec<Arc<udp::Link>> = Vec::new();
    for i in 0..asked {
        let q = query(1, &format!("q{}.example.", i % 200), false);
        forward_on(&pool, &q, Transport::Udp(&sockets)).await.unwrap();
        for link in sockets.udp_links() {
            if !held.iter().any(|h| Arc::ptr_eq(h, &link)) {
                held.push(link);
            }
        }
    }
    let mut per_port = std::collections::HashMap::new();
    for port in up.client_ports() {
        *per_port.entry(port).or_insert(0usize) += 1;
    }
    assert_eq!(per_port.values().sum::<usize>(), asked);
    assert!(
        per_port.len() >= 2 * udp::PORTS,
        "queries left from {} ports",
        per_port.len()
    );
    assert!(
        per_port.values().all(|&n| n <= udp::ROTATE_AFTER as usize),
        "no port carried more than its share: {per_port:?}"
    );
}

#[tokio::test]
async fn a_cut_short_answer_does_not_end_the_query_it_fails_over_to_the_next_server() {
    // Found from outside: an answer with the right id and question but cut short ended the
    // query with SERVFAIL; with such a primary and a healthy secondary, 20/20 queries failed.
    let cut = fake(Script::CutShort, 1);
    let good = fake(Script::Default, 2);
    let pool = new_pool(&[cut.addr(), good.addr()], Duration::from_millis(800));
    for i in 0..20 {
        let bytes = forward(&pool, &query(i, "www.example.com.", false)).await.unwrap();
        assert_eq!(a_tag(&Message::from_vec(&bytes).unwrap()), 2);
    }
    // Over TCP there is no second answer to wait for: the cut answer fails the attempt at once.
    let sockets = Sockets::new(1);
    let started = Instant::now();
    let bytes = forward_on(&pool, &query(21, "www.example.com.", false), Transport::Tcp(&sockets))
        .await
        .unwrap();
    assert_eq!(a_tag(&Message::from_vec(&bytes).unwrap()), 2);
    assert_eq!(transports(&good).last(), Some(&"tcp"), "the TCP answer");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn names_go_out_in_random_case_and_a_server_that_drops_it_is_learnt() {
    let up = fake(Script::Default, 1);
    let pool = new_pool(&[up.addr()], Duration::from_secs(1));
    let q = query(1, "www.example-with-many-letters.com.", false);
    forward(&pool, &q).await.unwrap();
    let sent = seen(&up).remove(0);
    assert!(sent[2..].eq_ignore_ascii_case(&q[2..]));
    assert_ne!(sent[12..], q[12..], "30 letters, all in their original case: 1 in 2^30");

    // A server that lowercases the name: asked again at once in a new case, and after eight
    // answers in a row in the wrong case, without 0x20 (the first query learns it: 9 sent).
    let lower = fake(Script::Lowercase, 2);
    let pool = new_pool(&[lower.addr()], Duration::from_secs(1));
    let started = Instant::now();
    let bytes = forward(&pool, &query(1, "www.example-with-many-letters.com.", false))
        .await
        .unwrap();
    assert_eq!(a_tag(&Message::from_vec(&bytes).unwrap()), 2);
    assert!(started.elapsed() < Duration::from_millis(200), "no timeout");
    assert_eq!(seen(&lower).len(), 9);
    forward(&pool, &q).await.unwrap();
    let sent = seen(&lower);
    assert_eq!(sent.len(), 10, "in one query");
    assert_eq!(sent[9][12..], q[12..], "sent as the client asked");
}

#[tokio::test]
async fn past_max_inflight_a_server_is_skipped_and_all_busy_fails_at_once() {
    let (_dead, dead) = silent();
    let settings = PoolSettings {
        timeout: Duration::from_millis(500),
        max_inflight: 1,
        case_randomization: true,
    };
    let pool = Arc::new(UpstreamPool::new(&[dead], settings));
    let sockets = Arc::new(Sockets::new(1));
    let waiting = {
        let (pool, sockets) = (Arc::clone(&pool), Arc::clone(&sockets));
        tokio::spawn(async move { forward_on(&pool, &query(1, "a.example.", false), Transport::Udp(&sockets)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let error = forward_on(&pool, &query(2, "b.example.", false), Transport::Udp(&sockets))
        .await
        .unwrap_err();
    assert!(matches!(error, ForwardError::Busy), "{error}");
    assert!(started.elapsed() < Duration::from_millis(50), "at once");
    assert!(matches!(waiting.await.unwrap(), Err(ForwardError::Timeout(_))));
}

#[tokio::test]
async fn tcp_queries_share_one_connection() {
    // Found from outside: every TCP query opened a connection of its own, and at ~800 qps 28k
    // sockets piled up in TIME_WAIT.
    let up = fake(Script::Default, 7);
    let pool = Arc::new(new_pool(&[up.addr()], Duration::from_secs(2)));
    let sockets = Arc::new(Sockets::new(1));
    for i in 0..50 {
        let bytes = forward_on(&pool, &query(i, "www.example.com.", false), Transport::Tcp(&sockets))
            .await
            .unwrap();
        assert_eq!(a_tag(&Message::from_vec(&bytes).unwrap()), 7);
    }
    // And at once, pipelined.
    let mut asks = tokio::task::JoinSet::new();
    for i in 0..20u16 {
        let (pool, sockets) = (Arc::clone(&pool), Arc::clone(&sockets));
        asks.spawn(
            async move { forward_on(&pool, &query(i, "www.example.com.", false), Transport::Tcp(&sockets)).await },
        );
    }
    while let Some(result) = asks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(up.connections(), 1);
    assert!(transports(&up).iter().all(|t| *t == "tcp"), "TCP only");
}

/// Found by reading (the DoT link had it and was fixed first): a TCP link armed its idle timer only
/// when nothing waited as its loop turned, so a connection whose last query gave up by timeout
/// (nothing came back to turn the loop) stayed open for as long as the server kept it.
#[tokio::test(start_paused = true)]
async fn a_tcp_connection_whose_last_query_timed_out_closes_once_idle() {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Takes the query and answers nothing, until sinkhole closes the connection.
    let silent = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 512];
        while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
        Instant::now()
    });
    let pool = new_pool(&[addr], Duration::from_millis(300));
    let sockets = Sockets::new(1);
    let started = Instant::now();
    forward_on(&pool, &query(1, "silent.example.", false), Transport::Tcp(&sockets))
        .await
        .unwrap_err();
    let closed = tokio::time::timeout(tcp::IDLE * 3, silent)
        .await
        .expect("the connection is closed once idle")
        .unwrap();
    assert!(
        closed - started <= tcp::IDLE + Duration::from_secs(1),
        "{:?}",
        closed - started
    );
}
