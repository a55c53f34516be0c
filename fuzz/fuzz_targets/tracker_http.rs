//! HTTP tracker announce and scrape reply bodies.
//! The checks live in `hive_tests::fuzz_checks::tracker_http`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::tracker_http::check(data));
