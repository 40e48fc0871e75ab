//! The DNS wire format at the level of bytes, as sinkhole's packet path reads and writes it: the
//! header, names, the one question and the EDNS OPT record, found and patched in place.
//!
//! Shared by the daemon (its fast path and cache) and `sinkhole replay` (encoding the queries it
//! sends, reading the answers it gets). It does no I/O, holds no state and never allocates but
//! into a buffer the caller gives it; whole messages are hickory-proto's business, not this one's.

#![forbid(unsafe_code)]

pub mod packet;
pub mod wire;
