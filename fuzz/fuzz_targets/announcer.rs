//! The Announcer (and a PeerList) driven by an `arbitrary` sequence of inputs.
//! The checks live in `hive_tests::fuzz_checks::announcer`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::announcer::check(data));
