//! SHA-1 throughput of Hive's piece hashing path against the raw `sha1` crate, same run.
//!
//! `cargo bench -p hive-core --bench hashing`. A 64 MiB buffer cut into 1 MiB pieces is hashed
//! with `Sha1::digest` (reference), `hash_piece`, and `PieceHasher` fed 16 KiB blocks (the way
//! blocks arrive from peers). Each variant runs several rounds, interleaved, best round kept.
#![allow(clippy::disallowed_methods)] // benches measure wall time; they are not the core

use std::hint::black_box;
use std::time::{Duration, Instant};

use hive_core::piece_hash::{PieceHasher, hash_piece};
use hive_core::rng::Rng;
use sha1::{Digest, Sha1};

const TOTAL: usize = 64 << 20;
const PIECE: usize = 1 << 20;
const BLOCK: usize = 16 << 10;
const ROUNDS: usize = 7;

fn time(f: &mut dyn FnMut() -> u8) -> Duration {
    let start = Instant::now();
    black_box(f());
    start.elapsed()
}

fn main() {
    let mut rng = Rng::new(7);
    let data: Vec<u8> = (0..TOTAL / 8)
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();

    let mut raw = || {
        let mut acc = 0u8;
        for piece in data.chunks(PIECE) {
            let d: [u8; 20] = Sha1::digest(black_box(piece)).into();
            acc ^= d[0];
        }
        acc
    };
    let mut whole = || {
        let mut acc = 0u8;
        for piece in data.chunks(PIECE) {
            acc ^= hash_piece(black_box(piece))[0];
        }
        acc
    };
    let mut blocks = || {
        let mut acc = 0u8;
        let mut h = PieceHasher::new();
        for piece in data.chunks(PIECE) {
            for block in piece.chunks(BLOCK) {
                h.update(black_box(block));
            }
            acc ^= h.finish_reset()[0];
        }
        acc
    };

    // Same answers first: a fast wrong hash is worth nothing.
    assert_eq!(raw(), whole());
    assert_eq!(raw(), blocks());

    let mut best = [Duration::MAX; 3];
    for _ in 0..ROUNDS {
        let runs: [&mut dyn FnMut() -> u8; 3] = [&mut raw, &mut whole, &mut blocks];
        for (slot, f) in best.iter_mut().zip(runs) {
            *slot = (*slot).min(time(f));
        }
    }
    let mbs = |d: Duration| TOTAL as f64 / 1e6 / d.as_secs_f64();
    let reference = mbs(best[0]);
    println!(
        "SHA-1 over {} MiB in {} KiB pieces, best of {ROUNDS}:",
        TOTAL >> 20,
        PIECE >> 10
    );
    println!("{:<36} {:>10} {:>7}", "variant", "MB/s", "ratio");
    for (name, d) in [
        ("sha1::Sha1::digest (reference)", best[0]),
        ("piece_hash::hash_piece", best[1]),
        ("piece_hash::PieceHasher, 16 KiB", best[2]),
    ] {
        println!("{name:<36} {:>10.0} {:>7.3}", mbs(d), mbs(d) / reference);
    }
}
