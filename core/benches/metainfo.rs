#![allow(clippy::disallowed_methods)] // benches measure wall time; they are not the core
//! Loading the Ubuntu 20.04 torrent (258 KB, 12891 piece hashes): Hive's full metainfo loader
//! against `bt_bencode` decoding the same bytes into its `Value`, in the same run.
//!
//! `Metainfo::from_bytes` does more than decode: it SHA-1s the 258 KB info dictionary (the
//! info hash) and copies it (kept for BEP 9). The breakdown rows show where the time goes:
//! almost all of it is the SHA-1, which any client must compute; bt_bencode only decodes.
//! The machine is shared, so absolute numbers move between runs; compare rows of one run.
//!
//! Run: `cargo bench -p hive-core --bench metainfo`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hive_core::bencode::{self, Limits};
use hive_core::metainfo::{InfoHash, Metainfo};

const REL: &str = "vectors/transmission/ubuntu-20.04.4-desktop-amd64.iso.torrent";

fn torrent_path() -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(REL);
    if beside.is_file() {
        return beside;
    }
    PathBuf::from("/work/shared").join(REL)
}

/// Median µs per call of each closure. Rounds interleave the closures, so load from other
/// processes on the (shared) machine hits them alike.
fn time_all(fs: &mut [&mut dyn FnMut()], rounds: usize, round: Duration) -> Vec<f64> {
    // Warm up and size a round per closure.
    let sizes: Vec<u32> = fs
        .iter_mut()
        .map(|f| {
            let start = Instant::now();
            let mut calls = 0u32;
            while start.elapsed() < round / 4 {
                f();
                calls += 1;
            }
            (calls * 4).max(1)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        for ((f, n), out) in fs.iter_mut().zip(&sizes).zip(&mut samples) {
            let t = Instant::now();
            for _ in 0..*n {
                f();
            }
            out.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(*n));
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn main() {
    let path = torrent_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let meta = Metainfo::from_bytes(&bytes).expect("the Ubuntu torrent loads");
    let info = meta.info_bytes().to_vec();
    let rounds = 9;
    let round = Duration::from_millis(200);

    let mut reference = || {
        let v: bt_bencode::Value = bt_bencode::from_slice(black_box(&bytes)).expect("decodes");
        black_box(v);
    };
    let mut hive = || {
        black_box(Metainfo::from_bytes(black_box(&bytes)).expect("loads"));
    };
    let mut decode = || {
        black_box(bencode::decode_with(black_box(&bytes), Limits::lenient()).expect("ok"));
    };
    let mut sha1 = || {
        black_box(InfoHash::of(black_box(&info)));
    };
    let mut copy = || {
        black_box(black_box(&info).to_vec());
    };
    let t = time_all(
        &mut [&mut reference, &mut hive, &mut decode, &mut sha1, &mut copy],
        rounds,
        round,
    );
    let (reference, hive, decode, sha1, copy) = (t[0], t[1], t[2], t[3], t[4]);

    println!(
        "metainfo load: {} ({} bytes, {} pieces), median of {rounds} rounds",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
        bytes.len(),
        meta.piece_count()
    );
    println!("{:<44} {:>10} {:>12}", "what", "µs/load", "vs bt_bencode");
    let row = |name: &str, us: f64| {
        println!("{name:<44} {us:>10.1} {:>11.2}x", us / reference);
    };
    row("bt_bencode::from_slice::<Value> (reference)", reference);
    row("hive Metainfo::from_bytes (full load)", hive);
    row("  of which: hive bencode::decode_with", decode);
    row("  of which: SHA-1 of the info dict", sha1);
    row("  of which: owned copy of the info dict", copy);
}
