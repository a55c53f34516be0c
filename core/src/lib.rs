//! `hive-core`: the BitTorrent protocol as pure, deterministic code.
//!
//! Nothing in this crate reads a clock, draws from a global RNG, touches a socket or a file,
//! spawns, or blocks. Time comes in as [`time::Instant`] arguments, randomness from a seed
//! ([`rng::Rng`]), bytes from the caller. `core/clippy.toml` bans the escape hatches
//! (`Instant::now`, `HashMap`, `std::fs`, `std::net`, threads, locks) so that the promise is
//! checked by `cargo clippy`, not by review alone.
//!
//! Layout: one module per codec or machine, each with its own error enum.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Input from peers and files must never panic the process: these lints make every unwrap,
// expect and unchecked index in library code a compile error (tests may use them).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]
// proptest's macros build `Arc`s internally; the ban is for the core's own state.
#![cfg_attr(test, allow(clippy::disallowed_types))]

pub mod announce;
pub mod bencode;
pub mod bitfield;
pub mod choker;
pub mod create;
mod fifo;
pub mod limit;
pub mod magnet;
pub mod metainfo;
pub mod peer;
pub mod peer_list;
pub mod picker;
pub mod piece_hash;
pub mod rate;
pub mod rng;
pub mod session;
pub mod time;
pub mod tracker;
pub mod wire;
