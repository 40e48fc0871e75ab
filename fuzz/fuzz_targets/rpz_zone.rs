//! `cargo fuzz run rpz_zone`: see [`sinkhole_fuzz::rpz_zone`] for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinkhole_fuzz::rpz_zone(data));
