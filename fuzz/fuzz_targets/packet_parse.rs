//! `cargo fuzz run packet_parse`: see [`sinkhole_fuzz::packet_parse`] for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinkhole_fuzz::packet_parse(data));
