//! The integration-test harness: what a test in `tests/*.rs` needs to run the real `sinkhole` binary against a
//! scripted upstream on loopback and check what a client would see.
//!
//! - [`FakeUpstream`] (`upstream.rs`): an upstream resolver whose answers are chosen by the first label of the
//!   name (`cname.*`, `tc.*`, `nx.*`, `drop.*`, ...) and which records every query it gets.
//! - The client (`client.rs`): UDP/TCP queries from any 127.x source address, raw packets, pipelined TCP, and readers
//!   for EDE, addresses and TTLs of a reply.
//! - [`Daemon`] (`daemon.rs`): the built binary started from a TOML string with `{listen}`, `{metrics}` and `{dir}`
//!   placeholders, killed on Drop; plus the hit log, the metrics page and one-shot CLI runs.
//!
//! Use it as `mod common; use common::*;`. Only loopback addresses are ever used.

// Every integration test binary compiles this module and uses only part of it; without this each of them would
// warn about the helpers it does not call (dead_code) and about re-exports it never names (unused_imports).
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod daemon;
pub mod upstream;

pub use client::*;
pub use daemon::*;
pub use upstream::*;

/// Source address for a client in the "staff" policy of the usual test config (`clients = ["127.10.0.0/16"]`).
pub const STAFF: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 10, 0, 5));
/// Source address for a client allowed to resolve but in no policy (inside `allow = ["127.0.0.0/8"]` only).
pub const OTHER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 20, 0, 5));
