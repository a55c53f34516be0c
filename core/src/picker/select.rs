//! Choosing untouched pieces for one peer within one priority level.
//!
//! The level's order is its availability buckets concatenated (rarest first, random ties).
//! A position is `(bucket, index)`; the walk starts at `start` and wraps around, so the key of
//! a position is `(wrapped, bucket, index)`: rarest-first when `start == (0, 0)`, "a random
//! piece" when `start` is a random position (libtorrent's initial random mode). The `k` pieces
//! the peer has with the smallest keys are chosen, by one of two methods that always agree:
//!
//! - `fast`: walk the order from `start` and test the peer's bitfield, skipping bucket 0 (no
//!   non-seed peer has those pieces, so this one does not either). Past a budget of about the
//!   cost of scanning the peer's bitfield (n/64 words + its set bits), scan that instead.
//! - `naive`: compute the key of every piece. O(n); the reference for tests and benchmarks.

use super::order::{Level, NONE};
use super::{Has, PieceInfo};

/// Everything one selection reads.
pub(super) struct SelectCtx<'a> {
    pub(super) level: &'a Level,
    pub(super) pieces: &'a [PieceInfo],
    pub(super) prio_level: u8,
    pub(super) has: &'a Has,
    /// Where the walk starts: `(bucket, index)`.
    pub(super) start: (usize, usize),
    /// How many pieces to choose.
    pub(super) k: usize,
}

fn key(wrapped: bool, bucket: usize, index: usize) -> u64 {
    (u64::from(wrapped) << 63) | ((bucket as u64) << 32) | index as u64
}

impl Level {
    /// The `(bucket, index)` of global position `g` in the concatenated order.
    pub(super) fn locate(&self, mut g: usize) -> (usize, usize) {
        for (b, bucket) in self.buckets().iter().enumerate() {
            if g < bucket.len() {
                return (b, g);
            }
            g -= bucket.len();
        }
        (0, 0)
    }
}

impl SelectCtx<'_> {
    /// The key of an untouched piece of this level, `None` for any other piece.
    fn key_of(&self, piece: u32) -> Option<u64> {
        let info = self.pieces.get(piece as usize)?;
        let i = info.pos;
        if i == NONE || info.prio != self.prio_level {
            return None;
        }
        let b = info.avail as usize;
        let i = i as usize;
        Some(key((b, i) < self.start, b, i))
    }

    fn push_best(&self, out: &mut Vec<(u64, u32)>, item: (u64, u32)) {
        if out.len() >= self.k && out.last().is_some_and(|last| *last <= item) {
            return;
        }
        let at = out.partition_point(|x| *x < item);
        out.insert(at, item);
        out.truncate(self.k);
    }

    /// Visits positions in key order from `start`, skipping buckets below `skip`, until `f`
    /// returns false.
    fn walk(&self, skip: usize, mut f: impl FnMut(u64, u32) -> bool) {
        let buckets = self.level.buckets();
        let (b0, i0) = self.start;
        for (b, bucket) in buckets.iter().enumerate().skip(b0.max(skip)) {
            let from = if b == b0 { i0 } else { 0 };
            for (i, &piece) in bucket.iter().enumerate().skip(from) {
                if !f(key(false, b, i), piece) {
                    return;
                }
            }
        }
        for (b, bucket) in buckets.iter().enumerate().take(b0 + 1).skip(skip) {
            let to = if b == b0 { i0 } else { bucket.len() };
            for (i, &piece) in bucket.iter().enumerate().take(to) {
                if !f(key(true, b, i), piece) {
                    return;
                }
            }
        }
    }

    /// The fast method: walk, then scan the peer's bitfield past the budget.
    pub(super) fn fast(&self, out: &mut Vec<(u64, u32)>) {
        let bits = match self.has {
            Has::All => {
                self.walk(0, |key, piece| {
                    out.push((key, piece));
                    out.len() < self.k
                });
                return;
            }
            Has::Pieces(bits) => bits,
        };
        // Only the level's members can be chosen: a peer holding none of them (everything it
        // has is ours or requested already, the usual case in a swarm) is answered here.
        let members = self.level.members();
        if !bits.intersects(members) {
            return;
        }
        let budget = bits.len() as usize / 64 + bits.count_ones() as usize + 64;
        let mut steps = 0;
        let mut over_budget = false;
        self.walk(1, |key, piece| {
            steps += 1;
            if steps > budget {
                over_budget = true;
                return false;
            }
            if bits.get(piece) {
                out.push((key, piece));
            }
            out.len() < self.k
        });
        if over_budget {
            out.clear();
            for piece in bits.iter_common(members) {
                if let Some(key) = self.key_of(piece) {
                    self.push_best(out, (key, piece));
                }
            }
        }
    }

    /// The reference: every piece's key. O(n).
    pub(super) fn naive(&self, out: &mut Vec<(u64, u32)>) {
        for piece in 0..self.pieces.len() as u32 {
            if self.has.has(piece) {
                if let Some(key) = self.key_of(piece) {
                    self.push_best(out, (key, piece));
                }
            }
        }
    }
}
