//! sinkhole: a DNS sinkhole daemon that keeps chosen apps (TikTok by default) off internal networks.
//!
//! The crate is laid out as DESIGN.md "Modules" describes: the pure decision (`engine`) sits on
//! `policy` and `lists`; transports (`server`), the `cache` and the `upstream` pool are around it.

#![forbid(unsafe_code)]

// The wire format lives in its own crate, shared with `sinkhole replay`; these paths keep the
// daemon's modules reading it as `crate::packet` and `crate::wire`.
pub use sinkhole_dns::{packet, wire};

pub mod answer;
pub mod cache;
pub mod config;
pub mod engine;
pub mod framing;
pub mod hitlog;
pub mod lists;
pub mod metrics;
pub mod policy;
pub mod privilege;
pub mod ratelimit;
pub mod report;
pub mod server;
pub mod state;
pub mod upstream;
