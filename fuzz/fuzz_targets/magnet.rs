//! Magnet links: parse, and the canonical link parses back to the same Magnet.
//! The checks live in `hive_tests::fuzz_checks::magnet`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::magnet::check(data));
