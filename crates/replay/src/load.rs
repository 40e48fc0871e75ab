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
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::report::Tally;
use super::table::{MAX_QUERY, QueryTable};
use sinkhole_batchio::{self as sys, Batch};
use sinkhole_dns::wire::{HEADER_LEN, u16_at};

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
pub(crate) struct Plan {
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
pub(crate) struct Progress {
    /// Queries sent so far.
    pub sent: AtomicU64,
    /// Answers so far.
    pub answered: AtomicU64,
    /// Lost so far.
    pub lost: AtomicU64,
}

/// What a thread did.
#[derive(Debug)]
pub(crate) struct Outcome {
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
    #[error("cannot open a UDP socket for {server}: {error}")]
    Socket {
        /// The server.
        server: SocketAddr,
        /// The OS error: in the message, not a `source`, so that it is said once.
        error: io::Error,
    },
    /// The kernel refused to send.
    #[error(
        "cannot send from {from} to {server}: {error} (is {from} an address of this host? on Linux all of \
         127.0.0.0/8 is; other systems need each source configured on lo)"
    )]
    Send {
        /// The source of the first message of the batch.
        from: IpAddr,
        /// The server.
        server: SocketAddr,
        /// The OS error: in the message, not a `source`, so that it is said once.
        error: io::Error,
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
pub(crate) fn run(
    table: &QueryTable,
    plan: &Plan,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<Outcome, LoadError> {
    Worker::new(table, plan)?.run(progress, stop)
}

/// One thread's sockets, slots, buffers and counts: everything the loop touches, allocated in
/// [`Worker::new`].
struct Worker<'a> {
    /// The queries.
    table: &'a QueryTable,
    /// What to do.
    plan: &'a Plan,
    /// Whether each message names its source (IP_PKTINFO), i.e. sources vary.
    per_message_source: bool,
    /// The sockets with their slots.
    lanes: Vec<Lane>,
    /// Which sockets the last wait found readable.
    ready: Vec<bool>,
    /// Messages per call.
    batch: usize,
    /// Send buffers.
    out: Batch,
    /// Receive buffers.
    inbox: Batch,
    /// What was seen.
    tally: Tally,
    /// Time zero of the slots' send times.
    epoch: Instant,
    /// Index in the table of the next query to send.
    cursor: usize,
    /// Queries sent and neither answered nor timed out.
    inflight: usize,
    /// The lane whose turn it is to send first, so that no socket is always last.
    lane_turn: usize,
    /// When the first query left.
    first_send: Option<Instant>,
    /// When a query last left or an answer last came.
    last_event: Option<Instant>,
    /// When an answer last came (the epoch before the first).
    last_answer: Instant,
}

/// What one round of sending did.
struct SendRound {
    /// Queries sent.
    sent: u64,
    /// Whether the kernel took less than offered (full buffers): back off a little.
    blocked: bool,
}

impl<'a> Worker<'a> {
    fn new(table: &'a QueryTable, plan: &'a Plan) -> Result<Worker<'a>, LoadError> {
        let single_source = match table.sources() {
            [only] => Some(*only),
            _ => None,
        };
        let sockets = plan.sockets.clamp(1, sys::MAX_POLL);
        let window = plan.window.max(sockets);
        let mut lanes = Vec::with_capacity(sockets);
        for s in 0..sockets {
            let slots = (window / sockets + usize::from(s < window % sockets)).min(1 << 16);
            let socket = open_socket(plan.server, single_source).map_err(|error| LoadError::Socket {
                server: plan.server,
                error,
            })?;
            lanes.push(Lane {
                socket,
                slots: vec![Slot::default(); slots],
                free: (0..slots).rev().map(|i| i as u16).collect(),
            });
        }
        let batch = plan.batch.clamp(1, 1024);
        let mut out = Batch::new(batch, MAX_QUERY);
        if single_source.is_none() {
            // Connected sockets need no destination per message.
            for i in 0..batch {
                out.set_peer(i, plan.server);
            }
        }
        let epoch = Instant::now();
        Ok(Worker {
            table,
            plan,
            per_message_source: single_source.is_none(),
            ready: vec![false; lanes.len()],
            lanes,
            batch,
            out,
            inbox: Batch::new(batch, ANSWER_BUF),
            tally: Tally::new(),
            epoch,
            cursor: plan.start_index % table.len().max(1),
            inflight: 0,
            lane_turn: 0,
            first_send: None,
            last_event: None,
            last_answer: epoch,
        })
    }

    /// The loop: send what the window, rate and count allow; wait for answers no longer than the
    /// next thing to do; take them; time out the old ones. Ends when sending is over and nothing
    /// is in flight.
    fn run(mut self, progress: &Progress, stop: &AtomicBool) -> Result<Outcome, LoadError> {
        let plan = self.plan;
        let scan_every = (plan.timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(100));
        let deadline = plan.duration.map(|d| self.epoch + d);
        let count = plan.count.unwrap_or(u64::MAX);
        let mut sending = !self.table.is_empty();
        let mut next_scan = self.epoch + scan_every;
        let mut last_activity = self.epoch;
        let mut aborted = None;
        loop {
            let now = Instant::now();
            if sending && (self.tally.sent >= count || deadline.is_some_and(|d| now >= d)) {
                sending = false;
            }
            if sending && stop.load(Ordering::Relaxed) {
                sending = false;
                aborted = Some("interrupted".to_string());
            }

            let mut budget = 0;
            let mut round = SendRound {
                sent: 0,
                blocked: false,
            };
            if sending {
                budget = count - self.tally.sent;
                if let Some(rate) = plan.rate {
                    let due = (now.saturating_duration_since(self.epoch).as_secs_f64() * rate) as u64 + 1;
                    budget = budget.min(due.saturating_sub(self.tally.sent));
                }
                round = self.send(budget)?;
                budget -= round.sent;
                if round.sent > 0 {
                    last_activity = Instant::now();
                }
            }

            let can_send = sending && !round.blocked && budget > 0 && self.lanes.iter().any(|l| !l.free.is_empty());
            let wait = if can_send {
                Duration::ZERO
            } else {
                let mut until = next_scan;
                if sending {
                    if let Some(d) = deadline {
                        until = until.min(d);
                    }
                    if let Some(rate) = plan.rate {
                        let next_due = Duration::from_secs_f64((self.tally.sent + 1) as f64 / rate);
                        until = until.min(self.epoch + next_due);
                    }
                }
                let wait = until.saturating_duration_since(now).min(MAX_WAIT);
                if round.blocked {
                    wait.min(SEND_BACKOFF)
                } else if self.inflight > 0 && now.saturating_duration_since(last_activity) < SPIN {
                    Duration::ZERO
                } else {
                    wait
                }
            };
            // Nothing in flight and no reason to wait: skip the syscall.
            if (self.inflight > 0 || !wait.is_zero()) && self.receive(wait)? > 0 {
                last_activity = self.last_answer;
            }

            let now = Instant::now();
            if now >= next_scan {
                next_scan = now + scan_every;
                self.expire(now);
                let quiet_since = self.last_answer.max(self.first_send.unwrap_or(self.epoch));
                if self.inflight > 0 && now.saturating_duration_since(quiet_since) > plan.silence {
                    self.tally.lost += self.inflight as u64;
                    self.inflight = 0;
                    sending = false;
                    aborted = Some(format!(
                        "no answer from {} for {:.1} s; is it running and reachable?",
                        plan.server,
                        plan.silence.as_secs_f64()
                    ));
                }
            }
            progress.sent.store(self.tally.sent, Ordering::Relaxed);
            progress.answered.store(self.tally.answered, Ordering::Relaxed);
            progress.lost.store(self.tally.lost, Ordering::Relaxed);
            if !sending && self.inflight == 0 {
                break;
            }
        }
        Ok(Outcome {
            tally: self.tally,
            first_send: self.first_send,
            last_event: self.last_event,
            aborted,
        })
    }

    /// Sends up to `budget` queries: one batch on each socket that has free slots, starting with
    /// a different socket each round.
    fn send(&mut self, mut budget: u64) -> Result<SendRound, LoadError> {
        let lanes = self.lanes.len();
        let mut round = SendRound {
            sent: 0,
            blocked: false,
        };
        for step in 0..lanes {
            if budget == 0 {
                break;
            }
            let lane = (self.lane_turn + step) % lanes;
            let n = self
                .batch
                .min(self.lanes[lane].free.len())
                .min(budget.min(usize::MAX as u64) as usize);
            if n == 0 {
                continue;
            }
            let sent = self.send_on(lane, n)?;
            round.sent += sent as u64;
            budget -= sent as u64;
            if sent < n {
                round.blocked = true;
                break;
            }
        }
        self.lane_turn = (self.lane_turn + 1) % lanes;
        Ok(round)
    }

    /// Sends the next `n` queries of the table on lane `lane` (which has `n` free slots) with one
    /// sendmmsg; returns how many the kernel took (0 when its buffers are full).
    fn send_on(&mut self, lane: usize, n: usize) -> Result<usize, LoadError> {
        let table = self.table;
        let lane = &mut self.lanes[lane];
        let bits = slot_bits(lane.slots.len());
        // Fill: the slots on top of the free stack, in the order they will be popped.
        for i in 0..n {
            let slot_index = lane.free[lane.free.len() - 1 - i];
            let slot = &mut lane.slots[usize::from(slot_index)];
            slot.generation = slot.generation.wrapping_add(1);
            slot.id = if bits >= 16 {
                slot_index
            } else {
                (slot.generation << bits) | slot_index
            };
            let q = (self.cursor + i) % table.len();
            slot.query = q as u32;
            let query = table.query(q);
            let buf = self.out.buf_mut(i);
            buf[..query.len()].copy_from_slice(query);
            buf[..2].copy_from_slice(&slot.id.to_be_bytes());
            self.out.set_len(i, query.len());
            if self.per_message_source {
                self.out.set_source(i, Some(table.source(q)));
            }
        }
        let sent_at = Instant::now();
        let sent = match self.out.send(lane.socket.as_fd(), n) {
            Ok(k) => k,
            Err(e) if transient(&e) => 0,
            Err(error) => {
                return Err(LoadError::Send {
                    from: table.source(self.cursor),
                    server: self.plan.server,
                    error,
                });
            }
        };
        // Commit what left; the rest stays free and is offered again next round.
        let sent_ns = sent_at.saturating_duration_since(self.epoch).as_nanos() as u64;
        for _ in 0..sent {
            let slot_index = lane.free.pop().unwrap_or_default();
            let slot = &mut lane.slots[usize::from(slot_index)];
            slot.sent_ns = sent_ns;
            slot.busy = true;
        }
        if sent > 0 {
            self.first_send.get_or_insert(sent_at);
            self.last_event = Some(sent_at);
        }
        self.cursor = (self.cursor + sent) % table.len();
        self.inflight += sent;
        self.tally.sent += sent as u64;
        Ok(sent)
    }

    /// Waits up to `wait` for a socket to be readable, then takes every answer waiting on the
    /// readable ones; returns how many datagrams it took.
    fn receive(&mut self, wait: Duration) -> Result<usize, LoadError> {
        let readable = sys::wait_readable(self.lanes.iter().map(|l| l.socket.as_fd()), &mut self.ready, wait)
            .map_err(LoadError::Receive)?;
        if readable == 0 {
            return Ok(0);
        }
        let mut taken = 0;
        for lane in 0..self.lanes.len() {
            if !self.ready[lane] {
                continue;
            }
            // Bounded: at most the lane's slots can be answered, plus one batch of strays.
            for _ in 0..=self.lanes[lane].slots.len() / self.batch + 1 {
                let got = self.receive_batch(lane)?;
                taken += got;
                if got < self.batch {
                    break;
                }
            }
        }
        Ok(taken)
    }

    /// One recvmmsg on lane `lane`: matches each datagram to its slot and tallies it.
    fn receive_batch(&mut self, lane: usize) -> Result<usize, LoadError> {
        let lane = &mut self.lanes[lane];
        let got = match self.inbox.recv(lane.socket.as_fd(), self.batch, false) {
            Ok(n) => n,
            Err(e) if transient(&e) => return Ok(0),
            Err(e) => return Err(LoadError::Receive(e)),
        };
        if got == 0 {
            return Ok(0);
        }
        let now = Instant::now();
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let bits = slot_bits(lane.slots.len());
        for i in 0..got {
            let answer = self.inbox.received(i);
            match match_answer(lane, bits, self.table, answer) {
                Some(slot_index) => {
                    let slot = &mut lane.slots[slot_index];
                    slot.busy = false;
                    lane.free.push(slot_index as u16);
                    self.inflight -= 1;
                    let latency = Duration::from_nanos(now_ns.saturating_sub(slot.sent_ns));
                    self.tally.answer(answer, latency);
                }
                None => self.tally.unmatched += 1,
            }
        }
        self.last_answer = now;
        self.last_event = Some(now);
        Ok(got)
    }

    /// Counts as lost, and frees, every slot whose query has waited longer than the timeout.
    fn expire(&mut self, now: Instant) {
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let timeout_ns = self.plan.timeout.as_nanos() as u64;
        for lane in &mut self.lanes {
            for (i, slot) in lane.slots.iter_mut().enumerate() {
                if slot.busy && now_ns.saturating_sub(slot.sent_ns) > timeout_ns {
                    slot.busy = false;
                    lane.free.push(i as u16);
                    self.inflight -= 1;
                    self.tally.lost += 1;
                }
            }
        }
    }
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
    use sinkhole_dns::packet::encode_query;
    use sinkhole_dns::wire::rtype;
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
