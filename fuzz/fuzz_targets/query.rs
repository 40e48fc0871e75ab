//! `cargo fuzz run query`: see [`sinkhole_fuzz::query`] for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinkhole_fuzz::query(data));
