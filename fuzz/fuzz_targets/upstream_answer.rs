//! `cargo fuzz run upstream_answer`: see [`sinkhole_fuzz::upstream_answer`] for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinkhole_fuzz::upstream_answer(data));
