//! The BEP 10 extension handshake payload: decode, bounds, canonical re-encoding.
//! The checks live in `hive_tests::fuzz_checks::extension_handshake`, shared with `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| hive_tests::fuzz_checks::extension_handshake::check(data)
);
