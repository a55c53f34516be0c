//! Bencode decoder: never panics; whatever decodes strictly re-encodes to the same bytes.
#![no_main]

use hive_core::bencode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = bencode::decode(data) {
        let mut out = Vec::new();
        value.encode(&mut out);
        assert_eq!(out, data, "strict decode must re-encode to the same bytes");
    }
    let _ = bencode::decode_with(data, bencode::Limits::lenient());
});
