//! The queries waiting for their answers on one upstream socket or connection, by id, and the
//! checks a message must pass before it is taken as the answer of one of them.
//!
//! A message is the answer to a waiting query only if it has the query's id, repeats its
//! question, repeats it in the exact case it was sent in (0x20 randomisation, where the server
//! keeps case) and decodes as a whole (every name, and the data of the types clients read). A
//! message with the wrong id or question is counted and ignored, and one that does not decode
//! too: the query keeps waiting for the real answer within its deadline, so a cut-short or
//! garbled datagram does not end a query the server is still answering. Over TCP, where no
//! second answer comes, an answer that does not decode fails the query at once (it fails over).
//! An answer in the wrong case ends the wait with [`AttemptError::CaseMismatch`]: the pool asks
//! again, in a new random case until it has learnt that the server does not keep case.
//!
//! The answer is analysed here, once, into the [`CachedResponse`] the cache keeps: the walk that
//! checks it is the walk that learns its TTLs and CNAME chain.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Instant;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use tokio::sync::Notify;

use super::AttemptError;
use super::exchange::answers;
use crate::cache::{CachedResponse, TtlLimits};
use crate::wire::HEADER_LEN;

/// The most queries waiting on one socket or connection. Ids are 16 bits: below this a random id
/// is free at the first draw nearly always.
pub(super) const MAX_WAITING: usize = 8192;

/// What became of one message offered to the waiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Offer {
    /// It answered a waiting query, which now has it; `case_checked` if it had to repeat the
    /// name's case (and did).
    Taken {
        /// Whether the query was sent in random case, which the answer repeated.
        case_checked: bool,
    },
    /// Nothing waits for its id and question: a late answer after a timeout, noise, or a guess.
    Stray,
    /// Id and question right but for the case of the name: not from the server we asked, or the
    /// server does not keep case (which [`CaseCheck`](super::health::CaseCheck) learns). The
    /// query's wait ends with [`AttemptError::CaseMismatch`].
    CaseMismatch,
    /// Id and question right, but the message does not decode.
    Malformed,
}

/// One query waiting for its answer.
struct Waiter {
    /// Its question section exactly as sent (name case included).
    question: Box<[u8]>,
    /// Whether the answer must repeat the name's case exactly.
    exact_case: bool,
    /// Cache lifetime limits, applied when the answer is analysed.
    limits: TtlLimits,
    /// The task to wake when the outcome is in.
    waker: Option<Waker>,
    /// The analysed answer, or what ended the wait.
    outcome: Option<Result<CachedResponse, AttemptError>>,
}

/// The waiting queries and the counts rotation goes by.
#[derive(Default)]
struct Table {
    waiting: HashMap<u16, Waiter, foldhash::fast::RandomState>,
    /// Queries registered so far.
    sent: u32,
    /// Set when the socket takes no new queries.
    retired: bool,
}

/// The waiters of one socket or connection.
pub(super) struct Waiters {
    table: Mutex<Table>,
    /// Wakes the receiving task when the socket is retired and its last query is gone.
    pub(super) finished: Notify,
    /// Queries in flight to this server from every socket of the owning
    /// [`Sockets`](super::Sockets): the count its cap is checked against.
    load: Arc<AtomicUsize>,
}

impl Waiters {
    /// No one waiting; `load` is the owner's count of queries in flight to the same server.
    pub(super) fn new(load: Arc<AtomicUsize>) -> Waiters {
        Waiters {
            table: Mutex::new(Table::default()),
            finished: Notify::new(),
            load,
        }
    }

    /// Registers a query with `question` (as sent) under a random id not in use here; None if
    /// this socket is full.
    pub(super) fn register(&self, question: &[u8], exact_case: bool, limits: TtlLimits) -> Option<Waiting<'_>> {
        let mut table = lock(&self.table);
        if table.waiting.len() >= MAX_WAITING {
            return None;
        }
        table.sent = table.sent.saturating_add(1);
        // At most MAX_WAITING of 65536 ids are taken: a draw is free with odds of 7 in 8 or
        // better, so 32 draws all failing does not happen in practice.
        for _ in 0..32 {
            if let Entry::Vacant(slot) = table.waiting.entry(rand::random::<u16>()) {
                let id = *slot.key();
                slot.insert(Waiter {
                    question: question.into(),
                    exact_case,
                    limits,
                    waker: None,
                    outcome: None,
                });
                self.load.fetch_add(1, Ordering::Relaxed);
                return Some(Waiting { waiters: self, id });
            }
        }
        None
    }

    /// Offers `message` (arrived at `now`) to the query it may answer. With `fail_malformed`, an
    /// answer that does not decode ends its query's wait with [`AttemptError::Malformed`];
    /// without, the query waits on.
    pub(super) fn offer(&self, message: &[u8], now: Instant, fail_malformed: bool) -> Offer {
        let id = message.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let mut table = lock(&self.table);
        let Some(waiter) = table.waiting.get_mut(&id) else {
            return Offer::Stray;
        };
        if waiter.outcome.is_some() || !answers(&waiter.question, message, id) {
            return Offer::Stray;
        }
        let theirs = &message[HEADER_LEN..HEADER_LEN + waiter.question.len()];
        let (outcome, offer) = if waiter.exact_case && *theirs != *waiter.question {
            // The caller asks again at once: a server that does not keep case costs a few round
            // trips until it is known, a spoofer a new guess of id, port and case.
            (Err(AttemptError::CaseMismatch), Offer::CaseMismatch)
        } else {
            match CachedResponse::analyze(message.to_vec(), now, &waiter.limits) {
                Ok(response) => (
                    Ok(response),
                    Offer::Taken {
                        case_checked: waiter.exact_case,
                    },
                ),
                Err(_) if !fail_malformed => return Offer::Malformed,
                Err(_) => (Err(AttemptError::Malformed), Offer::Malformed),
            }
        };
        waiter.outcome = Some(outcome);
        if let Some(waker) = waiter.waker.take() {
            waker.wake();
        }
        offer
    }

    /// Ends the wait of every query here with `error`: the socket reported a failure (the
    /// server's port is closed, the connection reset) that no answer will follow.
    pub(super) fn fail_all(&self, error: &io::Error) {
        let wakers: Vec<Waker> = {
            let mut table = lock(&self.table);
            table
                .waiting
                .values_mut()
                .filter(|waiter| waiter.outcome.is_none())
                .filter_map(|waiter| {
                    waiter.outcome = Some(Err(AttemptError::Network(copy_error(error))));
                    waiter.waker.take()
                })
                .collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Queries registered so far, and how many wait now.
    pub(super) fn counts(&self) -> (u32, usize) {
        let table = lock(&self.table);
        (table.sent, table.waiting.len())
    }

    /// Whether new queries may still be registered.
    pub(super) fn is_retired(&self) -> bool {
        lock(&self.table).retired
    }

    /// Takes no new queries from now on; the receiving task ends after the last waiting one.
    pub(super) fn retire(&self) {
        let mut table = lock(&self.table);
        table.retired = true;
        if table.waiting.is_empty() {
            self.finished.notify_one();
        }
    }

    /// Whether the socket is retired and nothing waits on it any more.
    pub(super) fn is_finished(&self) -> bool {
        let table = lock(&self.table);
        table.retired && table.waiting.is_empty()
    }
}

/// A query registered with [`Waiters`]; dropping it (answered, timed out, or cancelled) frees
/// its id and its place under the server's cap.
pub(super) struct Waiting<'a> {
    waiters: &'a Waiters,
    /// The id the query must be sent with.
    pub(super) id: u16,
}

impl Waiting<'_> {
    /// Waits for the outcome the receiving task hands over.
    pub(super) async fn outcome(&self) -> Result<CachedResponse, AttemptError> {
        std::future::poll_fn(|cx| {
            let mut table = lock(&self.waiters.table);
            let Some(waiter) = table.waiting.get_mut(&self.id) else {
                return Poll::Ready(Err(AttemptError::Network(io::Error::other(
                    "query no longer registered",
                ))));
            };
            match waiter.outcome.take() {
                Some(outcome) => Poll::Ready(outcome),
                None => {
                    waiter.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut table = lock(&self.waiters.table);
        table.waiting.remove(&self.id);
        self.waiters.load.fetch_sub(1, Ordering::Relaxed);
        if table.retired && table.waiting.is_empty() {
            self.waiters.finished.notify_one();
        }
    }
}

/// The same error again, for each query a socket error ends (io::Error is not Clone).
pub(super) fn copy_error(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

/// Locks a mutex of this module. Its critical sections cannot panic half-way through an
/// update, so a poisoned lock still guards consistent data.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
