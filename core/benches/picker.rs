#![allow(clippy::disallowed_methods)] // benches measure wall time; they are not the core
//! Piece picker costs on a 100,000-piece torrent (256 KiB pieces, 16 blocks each) with 200
//! peers: random bitfields of varied completeness plus a few seeds.
//!
//! Reports the cost of `peer_bitfield`, `peer_have` and `peer_gone`, and of `pick` while
//! simulating a download (each peer keeps `QUEUE` requests in flight; every round it receives
//! the older half, pieces are verified as they complete, then it picks to refill). The
//! reference is `pick_naive` (O(pieces) scan) driven from the same state for the same window;
//! the two must pick identical blocks, which the bench asserts.
//!
//! Run: `cargo bench -p hive-core --bench picker`

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hive_core::bitfield::Bitfield;
use hive_core::picker::{BlockOutcome, BlockRequest, PeerKey, Picker, PickerConfig};
use hive_core::rng::Rng;

const PIECES: u32 = 100_000;
const PIECE_LEN: u32 = 256 * 1024;
const PEERS: u32 = 200;
const SEEDS: u32 = 5;
const QUEUE: usize = 32;
const HAVES: usize = 200_000;
const REF_ROUNDS: usize = 20;

struct Sim {
    picker: Picker,
    queues: Vec<VecDeque<BlockRequest>>,
    out: Vec<BlockRequest>,
    picked: u64,
    pick_time: Duration,
    trace: u64,
}

impl Sim {
    fn new(picker: Picker) -> Self {
        Sim {
            picker,
            queues: vec![VecDeque::new(); PEERS as usize],
            out: Vec::with_capacity(QUEUE),
            picked: 0,
            pick_time: Duration::ZERO,
            trace: 0xcbf2_9ce4_8422_2325,
        }
    }

    /// One round: every peer receives the older half of its queue, then refills it.
    fn round(&mut self, naive: bool) {
        for k in 0..PEERS {
            let peer = PeerKey(k);
            let q = &mut self.queues[k as usize];
            let receive = q.len().div_ceil(2);
            for _ in 0..receive {
                let Some(b) = self.queues[k as usize].pop_front() else {
                    break;
                };
                match self.picker.block_received(peer, b) {
                    BlockOutcome::Accepted {
                        cancel,
                        piece_complete,
                    } => {
                        for c in cancel.iter() {
                            self.queues[c.0 as usize].retain(|x| *x != b);
                        }
                        if piece_complete {
                            self.picker.piece_verified(b.index, true).unwrap();
                        }
                    }
                    other => panic!("{b:?}: {other:?}"),
                }
            }
            let room = QUEUE - self.queues[k as usize].len();
            self.out.clear();
            let t = Instant::now();
            let n = if naive {
                self.picker.pick_naive(peer, room, &mut self.out)
            } else {
                self.picker.pick(peer, room, &mut self.out)
            };
            self.pick_time += t.elapsed();
            self.picked += n as u64;
            for b in &self.out {
                // FNV-1a over the picks: fast and naive must agree exactly.
                for x in [b.index, b.begin] {
                    self.trace = (self.trace ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
                }
            }
            self.queues[k as usize].extend(self.out.iter().copied());
        }
    }
}

fn ns(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

fn main() {
    let total = u64::from(PIECES) * u64::from(PIECE_LEN) - 12_345;
    let mut rng = Rng::new(0x5eed);
    let mut picker = Picker::new(
        PIECES,
        PIECE_LEN,
        total,
        PickerConfig::default(),
        Rng::new(1),
    )
    .unwrap();

    // Bitfields of varied completeness: peer k has each piece with probability ~k/PEERS.
    let mut fields = Vec::new();
    for _ in 0..PEERS - SEEDS {
        let density = 1 + rng.below(999);
        let mut b = Bitfield::new(PIECES);
        for i in 0..PIECES {
            if rng.below(1000) < density {
                b.set(i);
            }
        }
        fields.push(b);
    }
    let set_bits: u64 = fields.iter().map(|b| u64::from(b.count_ones())).sum();
    let t = Instant::now();
    for (k, b) in (0..).zip(&fields) {
        picker.peer_bitfield(PeerKey(k), b).unwrap();
    }
    let bitfield_time = t.elapsed();
    for k in PEERS - SEEDS..PEERS {
        picker.peer_have_all(PeerKey(k));
    }

    // `have` for pieces the peers lack, never the last one a peer lacks (that one turns the
    // peer into a seed, an O(n) step measured on its own below).
    let mut haves = Vec::with_capacity(HAVES);
    while haves.len() < HAVES {
        let k = rng.below(u64::from(PEERS - SEEDS)) as u32;
        let b = &mut fields[k as usize];
        if b.count_zeros() <= 1 {
            continue;
        }
        let i = rng.below(u64::from(PIECES)) as u32;
        if b.set(i) {
            haves.push((PeerKey(k), i));
        }
    }
    let t = Instant::now();
    for &(k, i) in &haves {
        picker.peer_have(k, i).unwrap();
    }
    let have_time = t.elapsed();
    picker.debug_check_invariants().unwrap();

    // peer_gone on this state (every peer leaves; seeds are O(1)), on a copy.
    let mut gone = picker.clone();
    let t = Instant::now();
    for k in 0..PEERS {
        gone.peer_gone(PeerKey(k));
    }
    let gone_time = t.elapsed();
    drop(gone);

    // A bitfield filling up: the peer turns into a seed (O(n) once per peer), on a copy.
    let mut fill = picker.clone();
    let fullest = (0..PEERS - SEEDS)
        .min_by_key(|&k| fields[k as usize].count_zeros())
        .unwrap_or(0);
    let missing: Vec<u32> = (0..PIECES)
        .filter(|&i| !fields[fullest as usize].get(i))
        .collect();
    let (&last, rest) = missing.split_last().unwrap();
    for &i in rest {
        fill.peer_have(PeerKey(fullest), i).unwrap();
    }
    let t = Instant::now();
    fill.peer_have(PeerKey(fullest), last).unwrap();
    let fill_time = t.elapsed();
    assert!(fill.is_seed(PeerKey(fullest)));
    drop(fill);

    // Same window, same state: fast picks versus the naive reference.
    // The fast window is timed three times from copies of the state (best of three: the
    // machine is shared); the naive one once.
    let run_window = || {
        let mut sim = Sim::new(picker.clone());
        for _ in 0..REF_ROUNDS {
            sim.round(false);
        }
        sim
    };
    let mut fast = run_window();
    let mut best = fast.pick_time;
    for _ in 0..2 {
        best = best.min(run_window().pick_time);
    }
    let mut naive = Sim::new(picker);
    for _ in 0..REF_ROUNDS {
        naive.round(true);
    }
    assert_eq!(fast.trace, naive.trace, "fast and naive picks differ");
    assert_eq!(fast.picked, naive.picked);
    let window_blocks = fast.picked;
    let fast_window = ns(best, window_blocks);
    let naive_window = ns(naive.pick_time, window_blocks);
    drop(naive);

    // The whole download with fast picks, including the endgame.
    let t = Instant::now();
    let mut rounds = REF_ROUNDS;
    while !fast.picker.is_finished() {
        fast.round(false);
        rounds += 1;
        assert!(rounds < 1_000_000, "download stalled");
    }
    let loop_time = t.elapsed();
    fast.picker.debug_check_invariants().unwrap();
    let blocks_total = fast.picked;

    println!(
        "picker: {PIECES} pieces x {} KiB (16 KiB blocks), {PEERS} peers ({SEEDS} seeds), queue {QUEUE}",
        PIECE_LEN / 1024
    );
    println!("{:<44} {:>12} {:>14}", "operation", "count", "ns/op");
    println!(
        "{:<44} {:>12} {:>14.0}",
        "peer_bitfield (per call)",
        fields.len(),
        ns(bitfield_time, fields.len() as u64)
    );
    println!(
        "{:<44} {:>12} {:>14.2}",
        "peer_bitfield (per set bit)",
        set_bits,
        ns(bitfield_time, set_bits)
    );
    println!(
        "{:<44} {:>12} {:>14.1}",
        "peer_have (new piece)",
        HAVES,
        ns(have_time, HAVES as u64)
    );
    println!(
        "{:<44} {:>12} {:>14.0}",
        "peer_have completing a bitfield (-> seed)",
        1,
        ns(fill_time, 1)
    );
    println!(
        "{:<44} {:>12} {:>14.0}",
        "peer_gone (per peer, before the download)",
        PEERS,
        ns(gone_time, u64::from(PEERS))
    );
    println!(
        "{:<44} {:>12} {:>14.1}",
        "pick, first rounds (per block)", window_blocks, fast_window
    );
    println!(
        "{:<44} {:>12} {:>14.1}",
        "REFERENCE pick_naive, same rounds (per block)", window_blocks, naive_window
    );
    println!(
        "{:<44} {:>12} {:>14.1}",
        "RATIO naive / fast",
        "",
        naive_window / fast_window
    );
    println!(
        "{:<44} {:>12} {:>14.1}",
        "pick, whole download (per block)",
        blocks_total,
        ns(fast.pick_time, blocks_total)
    );
    println!(
        "{:<44} {:>12} {:>14.1}",
        "pick+receive+verify+bench loop (per block)",
        blocks_total - window_blocks,
        ns(loop_time, blocks_total - window_blocks)
    );
}
