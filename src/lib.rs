//! sinkhole: a DNS sinkhole daemon that keeps chosen apps (TikTok by default) off internal networks.
//!
//! ARCHITECTURE.md draws the way of one query through these modules. The decision (`engine`) is
//! pure and sits on `policy` and `lists`; the listeners (`server`), the `cache` and the `upstream`
//! pool are around it; `state` owns the live snapshot that `config` validates and builds.
//!
//! What is `pub` here is what the binary (`main.rs`), the integration tests, the benches and the
//! fuzz targets use; everything else is `pub(crate)`, so that the compiler finds dead code.

#![forbid(unsafe_code)]

// The wire format lives in its own crate, shared with `sinkhole replay`; these paths keep the
// daemon's modules reading it as `crate::packet` and `crate::wire`.
pub use sinkhole_dns::{packet, wire};

mod answer;
pub mod atomic_file;
pub mod ban_report;
pub mod cache;
pub mod config;
mod ddr;
pub mod egress;
mod engine;
pub mod export;
mod framing;
pub mod hitlog;
pub mod install;
mod lists;
pub mod metrics;
mod policy;
mod prefixes;
pub mod privilege;
pub mod proxy_protocol;
mod ratelimit;
mod remote;
pub mod report;
pub mod server;
pub mod state;
mod upstream;
pub mod version;

pub use answer::{BlockAnswer, BlockTemplate};
pub use lists::{DomainSet, DomainSetBuilder};
pub use prefixes::{PrefixRanges, PrefixTable};
pub use ratelimit::{RateLimiter, RateLimits};
pub use upstream::ForwardError;
