//! Torrent files and bare info dictionaries: hashes, layout, sanitised paths, collisions.
//! The checks live in `hive_tests::fuzz_checks::metainfo`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hive_tests::fuzz_checks::metainfo::check(data));
