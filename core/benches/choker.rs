#![allow(clippy::disallowed_methods)] // benches measure wall time; they are not the core
//! Cost of one `Choker::rechoke_into` call (a full round) and of `RateMeter::record`.
//!
//! Reference in the same run: sorting a Vec of as many `(u64, u64)` pairs as there are peers,
//! the floor for any ranking choker; for `record`, a bare division loop. Run: `cargo bench -p hive-core --bench choker`.

use hive_core::choker::{ChokeDecision, Choker, ChokerConfig, Mode, PeerStats};
use hive_core::rate::RateMeter;
use hive_core::rng::Rng;
use hive_core::time::Instant;
use std::hint::black_box;
use std::time::Instant as Wall;

fn peers(n: u32, rng: &mut Rng) -> Vec<PeerStats<u32>> {
    (0..n)
        .map(|k| PeerStats {
            interested: rng.below(4) != 0,
            download_rate: rng.below(1_000_000),
            upload_rate: rng.below(1_000_000),
            ..PeerStats::new(k, Instant::ZERO)
        })
        .collect()
}

fn main() {
    println!(
        "{:<28} {:>12} {:>14} {:>7}",
        "case", "ns/call", "ref ns", "ratio"
    );
    for n in [50u32, 500] {
        let mut rng = Rng::new(1);
        let mut ps = peers(n, &mut rng);
        let iters = 200_000 / n as u64;
        for mode in [Mode::Leech, Mode::Seed] {
            let mut c = Choker::new(ChokerConfig::default(), Rng::new(2)).unwrap();
            let mut out = ChokeDecision::new();
            let start = Wall::now();
            for i in 0..iters {
                // Every call a full round (10 s apart), decisions applied.
                c.rechoke_into(Instant::from_secs(i * 10), mode, &ps, &mut out);
                for p in ps.iter_mut() {
                    p.am_choking = !out.is_unchoked(&p.key);
                    p.uploaded += 500_000;
                }
            }
            let per = start.elapsed().as_nanos() as f64 / iters as f64;

            let pairs: Vec<(u64, u64)> = (0..n).map(|_| (rng.next_u64(), rng.next_u64())).collect();
            let start = Wall::now();
            for _ in 0..iters {
                let mut v = pairs.clone();
                v.sort();
                black_box(&v);
            }
            let reference = start.elapsed().as_nanos() as f64 / iters as f64;
            println!(
                "{:<28} {:>12.0} {:>14.0} {:>7.1}",
                format!("rechoke {mode:?} {n} peers"),
                per,
                reference,
                per / reference
            );
        }
    }
    let mut m = RateMeter::new(Instant::ZERO);
    let iters = 10_000_000u64;
    let start = Wall::now();
    for i in 0..iters {
        m.record(Instant::from_micros(i * 3), 16_384);
    }
    black_box(m.rate(Instant::from_micros(iters * 3)));
    let per = start.elapsed().as_nanos() as f64 / iters as f64;
    let start = Wall::now();
    let mut acc = 0u64;
    for i in 0..iters {
        acc = black_box(acc.wrapping_add(i * 3 / 1_000_000));
    }
    let reference = start.elapsed().as_nanos() as f64 / iters as f64;
    println!(
        "{:<28} {:>12.1} {:>14.1} {:>7.1}",
        "RateMeter::record",
        per,
        reference,
        per / reference
    );
}
