//! A whole Session under fake peers, a fake disk and a fake tracker, checked against its own
//! invariants and a reference model of each peer. See `hive_tests::fuzz_checks::session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::session::check(data));
