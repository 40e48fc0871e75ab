//! `cargo fuzz run proxy_header`: see [`sinkhole_fuzz::proxy_header`] for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinkhole_fuzz::proxy_header(data));
