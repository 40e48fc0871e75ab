//! The cache misses one UDP worker has in flight, merged by question: while a query for a
//! question is upstream, other clients asking the same question (the same cache key) wait for
//! its answer instead of sending queries of their own.
//!
//! Merging is what RFC 5452 9.1 asks of a resolver: with 50 identical queries in flight, a
//! spoofer's forged answer needs to match any one of 50 ids and ports (a birthday attack), and
//! the upstream does 50 times the work; with one, one. It also spares the upstream a burst when
//! a popular name expires. It lives per worker, on the worker's thread (nothing shared, no
//! lock); a question asked on two workers at once goes up twice at most per worker.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};

use hashbrown::HashMap;

use super::handler::Pending;
use crate::cache::CacheKey;

/// A client waiting on another client's query for the same question.
pub(crate) struct Follower {
    /// Its query, as decided when it came in.
    pub pending: Box<Pending>,
    /// Where its answer goes.
    pub peer: SocketAddr,
    /// The address its query was sent to (for wildcard listeners).
    pub source: Option<IpAddr>,
}

/// The questions in flight on one worker, each with the clients waiting on it besides the one
/// whose query went upstream. Owned by one worker thread (`!Sync`).
#[derive(Default)]
pub(crate) struct InFlight {
    questions: RefCell<HashMap<CacheKey, Vec<Follower>, foldhash::fast::RandomState>>,
}

impl InFlight {
    /// Takes a follower on if its question is in flight already (Ok: it will get that answer);
    /// otherwise marks the question in flight and gives the follower back (Err: its query must
    /// go upstream, and [`InFlight::finish`] be called when it is answered).
    pub(crate) fn join(&self, follower: Follower) -> Result<(), Follower> {
        let mut questions = self.questions.borrow_mut();
        match questions.get_mut(follower.pending.key()) {
            Some(waiting) => {
                waiting.push(follower);
                Ok(())
            }
            None => {
                questions.insert(follower.pending.key().clone(), Vec::new());
                Err(follower)
            }
        }
    }

    /// The question is answered: the clients that waited on it, to be answered the same way.
    pub(crate) fn finish(&self, key: &CacheKey) -> Vec<Follower> {
        self.questions.borrow_mut().remove(key).unwrap_or_default()
    }
}
