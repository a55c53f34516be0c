//! The property checks behind Hive's cargo-fuzz targets, one module per target.
//!
//! Each target is a plain `fn(&[u8])` that panics when a property fails. The fuzz targets in
//! `fuzz/fuzz_targets/` are one-line wrappers around these functions, and
//! `tests/fuzz_corpus.rs` replays every committed corpus and regression file through them, so
//! `cargo test` catches a regression without cargo-fuzz or a nightly toolchain.
//!
//! What every check asserts, beyond "no panic" (which the core's lints already aim at):
//! re-encoding round trips where the codec has an encoder, agreement between two ways of
//! decoding the same bytes (strict/lenient, whole/chunked, an independent decoder), and the
//! bounds each module documents. See `fuzz/README.md` for how to run the targets.

pub mod announcer;
pub mod bencode;
pub mod chunks;
pub mod extension_handshake;
pub mod handshake;
pub mod magnet;
pub mod metainfo;
pub mod peer_conn;
pub mod seeds;
pub mod session;
pub mod tracker_http;
pub mod tracker_udp;
pub mod wire_frames;

/// A target's check: panics when a property does not hold for the input.
pub type Check = fn(&[u8]);

/// Every fuzz target, by the name of its binary in `fuzz/Cargo.toml` and of its folders under
/// `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: &[(&str, Check)] = &[
    ("bencode", bencode::check),
    ("metainfo", metainfo::check),
    ("magnet", magnet::check),
    ("wire_frames", wire_frames::check),
    ("handshake", handshake::check),
    ("extension_handshake", extension_handshake::check),
    ("tracker_http", tracker_http::check),
    ("tracker_udp", tracker_udp::check),
    ("announcer", announcer::check),
    ("peer_conn", peer_conn::check),
    ("session", session::check),
];

/// The check of the target called `name`.
pub fn check_for(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}
