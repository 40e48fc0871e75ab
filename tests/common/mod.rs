//! The integration-test harness: what a test in `tests/*.rs` needs to run the real `sinkhole` binary against a
//! scripted upstream on loopback and check what a client would see.
//!
//! - [`FakeUpstream`] (`upstream.rs`): an upstream resolver whose answers are chosen by the first label of the
//!   name (`cname.*`, `tc.*`, `nx.*`, `drop.*`, `noise.*`, ...) and which records every query it gets; or one that
//!   never answers, or answers everything late; any of them can be stopped and restarted on its port.
//! - The client (`client.rs`): UDP/TCP queries from any 127.x source address, raw packets, pipelined TCP, and readers
//!   for EDE, addresses and TTLs of a reply.
//! - [`Daemon`] (`daemon.rs`): the built binary started from a TOML string with `{listen}`, `{metrics}` and `{dir}`
//!   placeholders, killed on Drop; plus the hit log, the metrics page and one-shot CLI runs.
//! - Ports (`ports.rs`): free loopback ports, never the same one twice in a test binary.
//!
//! Use it as `mod common; use common::*;`. Only loopback addresses are ever used.

// Every integration test binary compiles this module and uses only part of it; without this each of them would
// warn about the helpers it does not call.
#![allow(dead_code)]

pub mod client;
pub mod daemon;
pub mod ports;
pub mod upstream;

// The same reason for the re-exports: a test binary that names nothing of one module would warn about its glob.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use daemon::*;
#[allow(unused_imports)]
pub use ports::*;
#[allow(unused_imports)]
pub use upstream::*;

/// Source address for a client in the "staff" policy of the usual test config (`clients = ["127.10.0.0/16"]`).
pub const STAFF: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 10, 0, 5));
/// Source address for a client allowed to resolve but in no policy (inside `allow = ["127.0.0.0/8"]` only).
pub const OTHER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 20, 0, 5));
