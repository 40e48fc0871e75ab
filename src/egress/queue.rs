//! The packet path's side of the egress companion: a blocked name offered to a bounded queue,
//! without blocking and without allocating (`tests/alloc.rs`).
//!
//! The queue's slots are allocated once, when it is made (a `sync_channel`, as the hit log's);
//! an offer is a fixed-size [`Offer`] copied in. A full queue drops the offer and counts it. Each
//! UDP worker keeps a small table of the names it offered in the last seconds
//! ([`EgressSender`]): a phone that retries a blocked name every few hundred milliseconds would
//! otherwise fill the queue with copies of one name, and write to memory every core shares for
//! each of them.

use std::hash::BuildHasher;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use crate::packet::QName;

/// One blocked name, as the packet path hands it over: fixed size, no allocation.
#[derive(Clone)]
pub struct Offer {
    /// The name asked (lowercase, as the decision read it).
    pub name: QName,
    /// The type asked: for the log only, since both A and AAAA are resolved.
    pub qtype: u16,
}

/// The shared queue's sending side: cloned into the handler, which gives each long-lived worker
/// an [`EgressSender`] of its own and offers for short-lived ones (a TCP query) itself.
#[derive(Clone)]
pub struct EgressQueue {
    queue: SyncSender<Offer>,
    /// `sinkhole_egress_dropped_total`.
    dropped: metrics::Counter,
}

/// Slots of a worker's table of names offered lately: a power of two, direct-mapped by hash.
const RECENT_SLOTS: usize = 64;
/// How long a worker offers a name once only. Short: it only spares the queue the repeats of one
/// client's retries; the companion's own deduplication (`egress.dedup_window`) does the rest.
const RECENT_FOR: Duration = Duration::from_secs(2);

impl EgressQueue {
    /// A queue of `capacity` offers, and the receiving end for the companion's task.
    pub fn new(capacity: usize) -> (EgressQueue, Receiver<Offer>) {
        let (queue, offers) = sync_channel(capacity.max(1));
        let dropped = metrics::counter!(crate::metrics::EGRESS_DROPPED);
        (EgressQueue { queue, dropped }, offers)
    }

    /// Offers a blocked name; never blocks. Drops and counts it if the companion is behind.
    pub fn offer(&self, name: &QName, qtype: u16) {
        match self.queue.try_send(Offer {
            name: name.clone(),
            qtype,
        }) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.dropped.increment(1),
        }
    }

    /// A sender of its own for one long-lived worker.
    pub fn sender(&self) -> EgressSender {
        EgressSender {
            queue: self.clone(),
            recent: [(0, None); RECENT_SLOTS],
            hasher: foldhash::fast::FixedState::default(),
        }
    }
}

/// One worker's way into the queue: only it touches its table of names offered lately.
pub struct EgressSender {
    queue: EgressQueue,
    /// By slot: the hash of a name offered and when.
    recent: [(u64, Option<Instant>); RECENT_SLOTS],
    hasher: foldhash::fast::FixedState,
}

impl EgressSender {
    /// Offers a blocked name unless this worker offered it within the last two seconds; never
    /// blocks, never allocates.
    pub fn offer(&mut self, name: &QName, qtype: u16, now: Instant) {
        let hash = self.hasher.hash_one(name.as_bytes());
        let slot = &mut self.recent[(hash as usize) & (RECENT_SLOTS - 1)];
        if slot.0 == hash && slot.1.is_some_and(|at| now.saturating_duration_since(at) < RECENT_FOR) {
            return;
        }
        *slot = (hash, Some(now));
        self.queue.offer(name, qtype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> QName {
        QName::from_dotted(text).expect("a valid name")
    }

    #[test]
    fn a_worker_offers_a_name_once_per_two_seconds() {
        let (queue, offers) = EgressQueue::new(16);
        let mut sender = queue.sender();
        let start = Instant::now();
        sender.offer(&name("tiktok.com"), 1, start);
        sender.offer(&name("tiktok.com"), 28, start + Duration::from_millis(500));
        sender.offer(&name("tiktokcdn.com"), 1, start + Duration::from_millis(600));
        sender.offer(&name("tiktok.com"), 1, start + Duration::from_secs(3));
        let got: Vec<String> = offers
            .try_iter()
            .map(|o| o.name.to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, ["tiktok.com", "tiktokcdn.com", "tiktok.com"]);
    }

    #[test]
    fn a_full_queue_drops_offers_without_blocking() {
        let (queue, offers) = EgressQueue::new(2);
        for i in 0..5 {
            queue.offer(&name(&format!("n{i}.example")), 1);
        }
        assert_eq!(offers.try_iter().count(), 2);
    }
}
