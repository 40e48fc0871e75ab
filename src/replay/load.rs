//! The hot loop of one sending thread: queries from the [`QueryTable`] sent in `sendmmsg` batches
//! over a few UDP sockets, answers taken in `recvmmsg` batches and matched to their query by id,
//! at most `window` in flight, paced to a rate or as fast as the server answers.
//!
//! Everything is allocated before the first query: the slot table (one slot per query in flight,
//! holding its send time), the free lists, the two [`Batch`]es and the [`Tally`]. The loop then
//! copies a pre-encoded query into a send buffer, patches its id, and sends; no allocation per
//! query. Ids: each socket owns `n` slots; a query in slot `i` carries id `gen << bits | i`, with
//! `bits` enough for `n` and `gen` bumped at each use of the slot, so that a late answer to the
//! slot's previous query does not match; the echoed question is compared too.
//!
//! Sources: when every query has the same source, each socket is bound to it and connected to the
//! server (cheaper per packet). Otherwise the
//! sockets are bound to the unspecified address (0.0.0.0:0 or [::]:0) and every message carries
//! its source in an IP_PKTINFO control message (`ipi_spec_dst`): Linux sends it from that address
//! (any of 127.0.0.0/8 is local), and the answer, addressed to that address and the socket's port,
//! comes back to the same socket.
//!
//! Bounds: the loop ends when the count or the duration is reached and the queries in flight are
//! answered or timed out; or when nothing has been answered for [`Plan::silence`]; or on Ctrl-C.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::report::Tally;
use super::sys::{self, Batch};
use super::table::{MAX_QUERY, QueryTable};
use crate::wire::{HEADER_LEN, u16_at};

/// Receive buffer per message: larger answers are cut (MSG_TRUNC) but still counted by rcode.
const ANSWER_BUF: usize = 4096;
/// Socket buffers asked for (the kernel caps them at net.core.[rw]mem_max): room for bursts.
const SOCKET_BUFFER: usize = 4 << 20;
/// Longest single wait: the loop checks its deadlines at least this often.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// After the last packet sent or received, keep looking for answers without sleeping for this
/// long. At saturation answers arrive every few microseconds: sleeping between them would make the
/// server pay for waking us on every batch, and us for waking up.
const SPIN: Duration = Duration::from_micros(50);
/// Wait after the kernel refused a send for lack of buffer space, before trying again.
const SEND_BACKOFF: Duration = Duration::from_micros(200);

/// What one thread does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The server loaded.
    pub server: SocketAddr,
    /// Queries in flight at most, over all of this thread's sockets.
    pub window: usize,
    /// Messages per sendmmsg/recvmmsg.
    pub batch: usize,
    /// UDP sockets of this thread (at most [`sys::MAX_POLL`]).
    pub sockets: usize,
    /// After this, a query with no answer is lost.
    pub timeout: Duration,
    /// Queries per second for this thread; None as fast as the window allows.
    pub rate: Option<f64>,
    /// Queries to send; None until the duration ends.
    pub count: Option<u64>,
    /// Stop sending after this long.
    pub duration: Option<Duration>,
    /// Index of the table's query this thread sends first (then on, looping over the table).
    pub start_index: usize,
    /// Give up when nothing has been answered for this long while queries are in flight.
    pub silence: Duration,
}

/// Counters a thread publishes while it runs, for the progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Queries sent so far.
    pub sent: AtomicU64,
    /// Answers so far.
    pub answered: AtomicU64,
    /// Lost so far.
    pub lost: AtomicU64,
}

/// What a thread did.
#[derive(Debug)]
pub struct Outcome {
    /// Its counts and latencies.
    pub tally: Tally,
    /// When it sent its first query.
    pub first_send: Option<Instant>,
    /// When it last sent a query or got an answer.
    pub last_event: Option<Instant>,
    /// Why it stopped early, if it did.
    pub aborted: Option<String>,
}

/// Why a thread could not run. Network trouble the operator can fix, named with its addresses.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A socket could not be opened, set up or bound.
    #[error("cannot open a UDP socket for {server}: {source}")]
    Socket {
        /// The server.
        server: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel refused to send.
    #[error(
        "cannot send from {from} to {server}: {source} (is {from} an address of this host? on Linux all of \
         127.0.0.0/8 is; other systems need each source configured on lo)"
    )]
    Send {
        /// The source of the first message of the batch.
        from: IpAddr,
        /// The server.
        server: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// Receiving or waiting failed.
    #[error("cannot receive answers: {0}")]
    Receive(io::Error),
}

/// One socket and the slots it owns.
struct Lane {
    /// The socket, closed when the lane is dropped.
    socket: Socket,
    /// Queries in flight on this socket, by slot index.
    slots: Vec<Slot>,
    /// Indices of free slots (a stack: a slot freed is the next used, warm in cache).
    free: Vec<u16>,
}

/// One query in flight.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// Nanoseconds after the thread's epoch when its batch was sent.
    sent_ns: u64,
    /// Its index in the table.
    query: u32,
    /// The id it was sent with.
    id: u16,
    /// Bumped at each use, into the id's high bits.
    generation: u16,
    /// Whether a query is in flight in it.
    busy: bool,
}

/// Runs one thread's share of the load. `stop` ends sending early (Ctrl-C).
pub fn run(table: &QueryTable, plan: &Plan, progress: &Progress, stop: &AtomicBool) -> Result<Outcome, LoadError> {
    let single_source = match table.sources() {
        [only] => Some(*only),
        _ => None,
    };
    let sockets = plan.sockets.clamp(1, sys::MAX_POLL);
    let window = plan.window.max(sockets);
    let mut lanes = Vec::with_capacity(sockets);
    for s in 0..sockets {
        let slots = window / sockets + usize::from(s < window % sockets);
        let socket = open_socket(plan.server, single_source).map_err(|source| LoadError::Socket {
            server: plan.server,
            source,
        })?;
        lanes.push(Lane {
            socket,
            slots: vec![Slot::default(); slots.min(1 << 16)],
            free: (0..slots.min(1 << 16)).rev().map(|i| i as u16).collect(),
        });
    }
    let fds: Vec<RawFd> = lanes.iter().map(|l| l.socket.as_raw_fd()).collect();
    let mut ready = vec![false; lanes.len()];
    let batch = plan.batch.clamp(1, 1024);
    let mut out = Batch::new(batch, MAX_QUERY);
    if single_source.is_none() {
        // Connected sockets need no destination per message.
        for i in 0..batch {
            out.set_peer(i, plan.server);
        }
    }
    let mut inbox = Batch::new(batch, ANSWER_BUF);
    let mut tally = Tally::new();

    let epoch = Instant::now();
    let ns = |t: Instant| t.saturating_duration_since(epoch).as_nanos() as u64;
    let timeout_ns = plan.timeout.as_nanos() as u64;
    let scan_every = (plan.timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let deadline = plan.duration.map(|d| epoch + d);
    let count = plan.count.unwrap_or(u64::MAX);
    let mut cursor = plan.start_index % table.len().max(1);
    let mut inflight = 0usize;
    let mut sending = !table.is_empty();
    let mut next_scan = epoch + scan_every;
    let mut first_send = None;
    let mut last_event = None;
    let mut last_answer = epoch;
    let mut aborted = None;
    let mut lane_turn = 0usize;
    let mut last_activity = epoch;

    loop {
        let now = Instant::now();
        if sending && (tally.sent >= count || deadline.is_some_and(|d| now >= d) || stop.load(Ordering::Relaxed)) {
            sending = false;
            if stop.load(Ordering::Relaxed) {
                aborted = Some("interrupted".to_string());
            }
        }

        // Send: one batch per socket with free slots, within the rate and the count.
        let mut backoff = false;
        let mut budget = 0u64;
        if sending {
            budget = count - tally.sent;
            if let Some(rate) = plan.rate {
                let due = (now.saturating_duration_since(epoch).as_secs_f64() * rate) as u64 + 1;
                budget = budget.min(due.saturating_sub(tally.sent));
            }
            let lane_count = lanes.len();
            for step in 0..lane_count {
                if budget == 0 {
                    break;
                }
                let lane = &mut lanes[(lane_turn + step) % lane_count];
                let n = batch.min(lane.free.len()).min(budget.min(usize::MAX as u64) as usize);
                if n == 0 {
                    continue;
                }
                let bits = slot_bits(lane.slots.len());
                for i in 0..n {
                    let slot_index = lane.free[lane.free.len() - 1 - i];
                    let slot = &mut lane.slots[usize::from(slot_index)];
                    slot.generation = slot.generation.wrapping_add(1);
                    slot.id = if bits >= 16 {
                        slot_index
                    } else {
                        (slot.generation << bits) | slot_index
                    };
                    let q = (cursor + i) % table.len();
                    slot.query = q as u32;
                    let query = table.query(q);
                    let buf = out.buf_mut(i);
                    buf[..query.len()].copy_from_slice(query);
                    buf[..2].copy_from_slice(&slot.id.to_be_bytes());
                    out.set_len(i, query.len());
                    if single_source.is_none() {
                        out.set_source(i, Some(table.source(q)));
                    }
                }
                let sent_at = Instant::now();
                let sent = match out.send(lane.socket.as_raw_fd(), n) {
                    Ok(k) => k,
                    Err(e) if transient(&e) => {
                        backoff = true;
                        0
                    }
                    Err(source) => {
                        return Err(LoadError::Send {
                            from: table.source(cursor % table.len()),
                            server: plan.server,
                            source,
                        });
                    }
                };
                let sent_ns = ns(sent_at);
                for _ in 0..sent {
                    let slot_index = lane.free.pop().unwrap_or_default();
                    let slot = &mut lane.slots[usize::from(slot_index)];
                    slot.sent_ns = sent_ns;
                    slot.busy = true;
                }
                if sent > 0 {
                    first_send.get_or_insert(sent_at);
                    last_event = Some(sent_at);
                    last_activity = sent_at;
                }
                cursor = (cursor + sent) % table.len();
                inflight += sent;
                tally.sent += sent as u64;
                budget -= sent as u64;
                if sent < n {
                    backoff = true;
                    break;
                }
            }
            lane_turn = (lane_turn + 1) % lanes.len();
        }

        // Wait (no longer than the next thing to do), then receive from every ready socket.
        let can_send = sending && !backoff && budget > 0 && lanes.iter().any(|l| !l.free.is_empty());
        let wait = if can_send {
            Duration::ZERO
        } else {
            let mut until = next_scan;
            if sending {
                if let Some(d) = deadline {
                    until = until.min(d);
                }
                if let Some(rate) = plan.rate {
                    until = until.min(epoch + Duration::from_secs_f64((tally.sent + 1) as f64 / rate));
                }
            }
            let wait = until.saturating_duration_since(now).min(MAX_WAIT);
            if backoff {
                wait.min(SEND_BACKOFF)
            } else if inflight > 0 && now.saturating_duration_since(last_activity) < SPIN {
                Duration::ZERO
            } else {
                wait
            }
        };
        let readable = if inflight == 0 && wait.is_zero() {
            0
        } else {
            sys::wait_readable(&fds, &mut ready, wait).map_err(LoadError::Receive)?
        };
        if readable > 0 {
            for (lane, _) in lanes.iter_mut().zip(&ready).filter(|(_, r)| **r) {
                // Bounded: at most the lane's slots can be answered, plus one batch of strays.
                for _ in 0..=lane.slots.len() / batch + 1 {
                    let got = match inbox.recv(lane.socket.as_raw_fd(), batch, false) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock || transient(&e) => break,
                        Err(e) => return Err(LoadError::Receive(e)),
                    };
                    let now = Instant::now();
                    let now_ns = ns(now);
                    let bits = slot_bits(lane.slots.len());
                    for i in 0..got {
                        let answer = inbox.received(i);
                        match match_answer(lane, bits, table, answer) {
                            Some(slot_index) => {
                                let slot = &mut lane.slots[slot_index];
                                slot.busy = false;
                                lane.free.push(slot_index as u16);
                                inflight -= 1;
                                tally.answer(answer, Duration::from_nanos(now_ns.saturating_sub(slot.sent_ns)));
                            }
                            None => tally.unmatched += 1,
                        }
                    }
                    if got > 0 {
                        last_answer = now;
                        last_event = Some(now);
                        last_activity = now;
                    }
                    if got < batch {
                        break;
                    }
                }
            }
        }

        // Time out what has waited too long; give up on a server that stopped answering.
        let now = Instant::now();
        if now >= next_scan {
            next_scan = now + scan_every;
            let now_ns = ns(now);
            for lane in &mut lanes {
                for (i, slot) in lane.slots.iter_mut().enumerate() {
                    if slot.busy && now_ns.saturating_sub(slot.sent_ns) > timeout_ns {
                        slot.busy = false;
                        lane.free.push(i as u16);
                        inflight -= 1;
                        tally.lost += 1;
                    }
                }
            }
            if inflight > 0
                && now.saturating_duration_since(last_answer.max(first_send.unwrap_or(epoch))) > plan.silence
            {
                tally.lost += inflight as u64;
                inflight = 0;
                sending = false;
                aborted = Some(format!(
                    "no answer from {} for {:.1} s; is it running and reachable?",
                    plan.server,
                    plan.silence.as_secs_f64()
                ));
            }
        }
        progress.sent.store(tally.sent, Ordering::Relaxed);
        progress.answered.store(tally.answered, Ordering::Relaxed);
        progress.lost.store(tally.lost, Ordering::Relaxed);
        if !sending && inflight == 0 {
            break;
        }
    }
    drop(lanes);
    Ok(Outcome {
        tally,
        first_send,
        last_event,
        aborted,
    })
}

/// The slot an answer belongs to, if it answers a query in flight on this lane: the id's low
/// bits name a busy slot that sent exactly this id, and the echoed question is the query's
/// (ASCII case aside). Answers without a question (header-only errors) match on the id alone.
fn match_answer(lane: &Lane, bits: u32, table: &QueryTable, answer: &[u8]) -> Option<usize> {
    let id = u16_at(answer, 0)?;
    let index = if bits >= 16 {
        usize::from(id)
    } else {
        usize::from(id & ((1 << bits) - 1))
    };
    let slot = lane.slots.get(index)?;
    if !slot.busy || slot.id != id {
        return None;
    }
    if u16_at(answer, 4)? == 0 {
        return Some(index);
    }
    let question = table.question(slot.query as usize);
    let echoed = answer.get(HEADER_LEN..HEADER_LEN + question.len())?;
    echoed.eq_ignore_ascii_case(question).then_some(index)
}

/// Bits of the id that name a slot, for `slots` slots per socket.
fn slot_bits(slots: usize) -> u32 {
    usize::BITS - slots.saturating_sub(1).leading_zeros()
}

/// Errors worth waiting out rather than stopping for: full buffers, and ICMP errors from an
/// earlier datagram (a server restarting).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// A non-blocking UDP socket for `server`'s family. With one `source` for every query, it is bound
/// to it and connected to the server: the kernel then keeps the route and finds the socket of an
/// answer without a lookup, which makes each query cheaper. With sources varying per message it
/// is bound to the unspecified address and left unconnected (a connected socket would take answers
/// to its one local address only).
fn open_socket(server: SocketAddr, source: Option<IpAddr>) -> io::Result<Socket> {
    let (domain, any) = match server {
        SocketAddr::V4(_) => (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        SocketAddr::V6(_) => (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    // Best effort: smaller buffers only mean more loss at the very top of the load.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&SocketAddr::new(source.unwrap_or(any), 0).into())?;
    if source.is_some() {
        socket.connect(&server.into())?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::table::encode_query;
    use crate::wire::rtype;
    use std::net::UdpSocket;
    use std::thread;

    #[test]
    fn slot_bits_cover_the_slots() {
        assert_eq!(slot_bits(1), 0);
        assert_eq!(slot_bits(2), 1);
        assert_eq!(slot_bits(64), 6);
        assert_eq!(slot_bits(65), 7);
        assert_eq!(slot_bits(65536), 16);
    }

    fn table(names: &[&str], sources: &[&str]) -> QueryTable {
        let mut table = QueryTable::new();
        let mut wire = Vec::new();
        for (i, name) in names.iter().enumerate() {
            encode_query(name, rtype::A, true, &mut wire).expect("valid");
            let source = sources[i % sources.len()].parse().expect("literal");
            assert!(table.push(&wire, source));
        }
        table
    }

    /// Answers `answers` queries (NXDOMAIN, question echoed) and records their sources; skips
    /// every `skip`-th query.
    fn responder(answers: usize, skip: Option<usize>) -> (SocketAddr, thread::JoinHandle<Vec<IpAddr>>) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let handle = thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0; 512];
            for n in 1..=answers {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    break;
                };
                seen.push(peer.ip());
                if skip.is_some_and(|k| n % k == 0) {
                    continue;
                }
                buf[2] |= 0x80;
                buf[3] = 0x83;
                let _ = socket.send_to(&buf[..len], peer);
            }
            seen
        });
        (addr, handle)
    }

    fn plan(server: SocketAddr, count: u64) -> Plan {
        Plan {
            server,
            window: 8,
            batch: 4,
            sockets: 2,
            timeout: Duration::from_millis(200),
            rate: None,
            count: Some(count),
            duration: None,
            start_index: 0,
            silence: Duration::from_secs(5),
        }
    }

    #[test]
    fn sends_every_query_from_its_source_and_matches_answers() {
        let table = table(
            &["a.example", "b.example", "c.example"],
            &["127.0.0.1", "127.10.0.5", "127.20.0.9"],
        );
        let (server, handle) = responder(30, None);
        let outcome = run(&table, &plan(server, 30), &Progress::default(), &AtomicBool::new(false)).expect("runs");
        let seen = handle.join().expect("responder");
        assert_eq!(
            (outcome.tally.sent, outcome.tally.answered, outcome.tally.lost),
            (30, 30, 0)
        );
        assert_eq!(outcome.tally.unmatched, 0);
        for source in ["127.0.0.1", "127.10.0.5", "127.20.0.9"] {
            let ip: IpAddr = source.parse().expect("literal");
            assert_eq!(seen.iter().filter(|s| **s == ip).count(), 10, "{source}");
        }
        assert!(outcome.aborted.is_none());
    }

    #[test]
    fn unanswered_queries_are_lost_after_the_timeout() {
        let table = table(&["a.example"], &["127.0.0.1"]);
        let (server, handle) = responder(20, Some(4));
        let started = Instant::now();
        let outcome = run(&table, &plan(server, 20), &Progress::default(), &AtomicBool::new(false)).expect("runs");
        handle.join().expect("responder");
        assert_eq!(
            (outcome.tally.sent, outcome.tally.answered, outcome.tally.lost),
            (20, 15, 5)
        );
        assert!(started.elapsed() < Duration::from_secs(3), "bounded by the timeout");
    }

    #[test]
    fn gives_up_on_a_silent_server_and_keeps_the_rate() {
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let table = table(&["a.example"], &["127.0.0.1"]);
        let mut p = plan(silent.local_addr().expect("addr"), 1_000_000);
        p.timeout = Duration::from_secs(10);
        p.silence = Duration::from_millis(300);
        let outcome = run(&table, &p, &Progress::default(), &AtomicBool::new(false)).expect("runs");
        assert_eq!(outcome.tally.sent, 8, "the window");
        assert_eq!(outcome.tally.lost, 8);
        assert!(outcome.aborted.expect("aborted").contains("no answer"));

        let (server, handle) = responder(1000, None);
        let mut p = plan(server, 1_000_000);
        p.rate = Some(200.0);
        p.count = None;
        p.duration = Some(Duration::from_millis(500));
        let outcome = run(&table, &p, &Progress::default(), &AtomicBool::new(false)).expect("runs");
        drop(handle);
        let sent = outcome.tally.sent;
        assert!((90..=110).contains(&sent), "200 qps for 0.5 s sent {sent}");
    }
}
