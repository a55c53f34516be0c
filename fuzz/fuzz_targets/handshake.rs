//! The handshake decoder over arbitrary read sizes, then the frame decoder on the rest.
//! The checks live in `hive_tests::fuzz_checks::handshake`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::handshake::check(data));
