//! `cargo fuzz run capture`: see [`sinkhole_fuzz::capture`] for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinkhole_fuzz::capture(data));
