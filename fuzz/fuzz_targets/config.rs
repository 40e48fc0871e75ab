//! `cargo fuzz run config`: see [`sinkhole_fuzz::config`] for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinkhole_fuzz::config(data));
