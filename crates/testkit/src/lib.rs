//! What sinkhole's tests and benches run beside the daemon, all on loopback: enough to run the real
//! `sinkhole` binary against an upstream the test scripts and check what a client would see.
//!
//! - [`FakeUpstream`] (`upstream`): an upstream resolver whose answers are chosen by the first label of the
//!   name (`cname.*`, `tc.*`, `nx.*`, `drop.*`, `noise.*`, ...; the table is [`upstream::FakeUpstream`]'s) and which
//!   records every query it gets; or one that never answers, or answers everything late; any of them can be stopped
//!   and restarted on its port.
//! - [`responder`]: the fast upstream of the benches (`bench-upstream`) and the replay tests, with the same
//!   answers as the fake upstream for the labels it knows (the constants of [`answers`]), at millions a second.
//! - The client (`client`): UDP/TCP queries from any 127.x source address, raw packets, pipelined TCP, and readers
//!   for EDE, addresses and TTLs of a reply.
//! - [`Daemon`] (`daemon`): the built binary started from a TOML string with `{listen}`, `{metrics}` and `{dir}`
//!   placeholders, killed on Drop; plus the hit log, the metrics page and one-shot CLI runs.
//! - [`HttpServer`] (`http`): a small HTTP/1.1 server for lists fetched by URL: bodies changed at run time, ETags
//!   and 304s, error statuses and slow answers on demand, requests counted.
//! - Ports (`ports`): free loopback ports, never the same one twice in a test binary.
//! - TLS (`tls`): a test CA and server certificates it signs (rcgen), as PEM files, for DoT and DoH tests.
//! - Tools (`tools`): whether a real tool (promtool, prometheus, chromium, ...) is installed, saying `SKIPPED` if
//!   not, and the promtool lint of a metrics page several tests run.
//! - [`Unbound`] (`unbound`): a real Unbound on loopback, checked and waited for, as a peer of sinkhole.
//! - [`mix`]: the benches' query files (the "mix" workload), generated, so that nothing outside the repository is read.
//!
//! Tests use it as `use sinkhole_testkit::*;`. Only loopback addresses are ever used. It knows nothing of the
//! daemon's library: it talks to the daemon as a client, an upstream and an operator do.

#![forbid(unsafe_code)]
// Test support: a panic with a message is how a helper fails the test that called it.
#![allow(clippy::missing_panics_doc)]

pub mod answers;
pub mod client;
pub mod daemon;
pub mod http;
pub mod mix;
pub mod ports;
pub mod responder;
pub mod tls;
pub mod tools;
pub mod unbound;
pub mod upstream;

pub use answers::*;
pub use client::*;
pub use daemon::*;
pub use http::*;
pub use ports::*;
pub use tls::*;
pub use tools::*;
pub use unbound::*;
pub use upstream::*;

/// Source address for a client in the "staff" policy of the usual test config (`clients = ["127.10.0.0/16"]`).
pub const STAFF: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 10, 0, 5));
/// Source address for a client allowed to resolve but in no policy (inside `allow = ["127.0.0.0/8"]` only).
pub const OTHER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 20, 0, 5));
