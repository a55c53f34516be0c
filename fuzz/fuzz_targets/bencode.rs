//! Bencode: Hive's decoder against itself and, differentially, against bt_bencode.
//! The checks live in `hive_tests::fuzz_checks::bencode`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::bencode::check(data));
