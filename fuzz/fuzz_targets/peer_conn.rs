//! Peer connection machine under a Session-like driver: no panic, and a close sticks.
//! The checks live in `hive_tests::fuzz_checks::peer_conn`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::peer_conn::check(data));
