//! `cargo fuzz run list_lines`: see [`sinkhole_fuzz::list_lines`] for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinkhole_fuzz::list_lines(data));
