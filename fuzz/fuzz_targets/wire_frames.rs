//! The incremental peer-wire frame decoder over arbitrary read sizes; exact re-encoding.
//! The checks live in `hive_tests::fuzz_checks::wire_frames`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::wire_frames::check(data));
