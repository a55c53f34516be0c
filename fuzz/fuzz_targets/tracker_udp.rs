//! BEP 15 datagrams: requests and responses (both families), re-encoding round trips.
//! The checks live in `hive_tests::fuzz_checks::tracker_udp`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::tracker_udp::check(data));
