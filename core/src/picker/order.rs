//! Availability buckets for one priority level, in the spirit of libtorrent's `piece_picker`
//! (`m_pieces` sorted by priority with `m_priority_boundaries`).
//!
//! `buckets[b]` holds the level's untouched pieces that `b` non-seed peers have, in a random
//! order; `pos[piece]` (owned by the picker, shared by all levels) is the piece's index inside
//! its bucket, and the picker's `avail[piece]` says which bucket. The level's *order* is the
//! buckets concatenated: rarest first, ties in the bucket's random order.
//!
//! Every operation is O(1): removal is a `swap_remove` (the bucket's last piece takes the hole,
//! which keeps the bucket a random permutation), insertion pushes and then swaps with a random
//! member (seeded RNG, so reproducible), and an availability change is a removal plus an
//! insertion in the neighbouring bucket. libtorrent keeps one array with boundaries instead,
//! where removing a piece cascades through every bucket above it (O(buckets)); that cascade
//! was the largest cost of a pick here.
//!
//! Empty buckets are kept (they cost a `Vec` header each); their number is bounded by the
//! largest availability seen, i.e. by the number of peers.

use super::PieceInfo;
use crate::bitfield::Bitfield;
use crate::rng::Rng;

/// Marker for "not in any order" in the `pos` array.
pub(super) const NONE: u32 = u32::MAX;

/// The untouched pieces of one priority level, bucketed by availability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Level {
    buckets: Vec<Vec<u32>>,
    len: usize,
    /// The level's pieces as a bitfield, so that a pick can intersect it with a peer's
    /// bitfield a word at a time: a peer that holds none of them (most picks in a swarm,
    /// where everything it has is requested already) costs a few words instead of a walk of
    /// the order.
    members: Bitfield,
}

fn set_pos(pos: &mut [PieceInfo], piece: u32, at: usize) {
    if let Some(p) = pos.get_mut(piece as usize) {
        p.pos = at as u32;
    }
}

impl Level {
    /// An empty level of a torrent with `piece_count` pieces.
    pub(super) fn new(piece_count: u32) -> Level {
        Level {
            buckets: Vec::new(),
            len: 0,
            members: Bitfield::new(piece_count),
        }
    }

    /// Number of pieces in the level.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The buckets, rarest first (for walking the order).
    pub(super) fn buckets(&self) -> &[Vec<u32>] {
        &self.buckets
    }

    /// Adds `piece` to bucket `b` at a random place within the bucket.
    pub(super) fn insert(&mut self, piece: u32, b: usize, pos: &mut [PieceInfo], rng: &mut Rng) {
        if self.push(piece, b, pos, rng) {
            self.members.set(piece);
        }
    }

    /// `insert` without the membership bit (a shift keeps it); false if nothing was added.
    fn push(&mut self, piece: u32, b: usize, pos: &mut [PieceInfo], rng: &mut Rng) -> bool {
        if self.buckets.len() <= b {
            self.buckets.resize_with(b + 1, Vec::new);
        }
        let Some(bucket) = self.buckets.get_mut(b) else {
            return false;
        };
        let i = bucket.len();
        bucket.push(piece);
        let j = rng.index(i + 1);
        bucket.swap(i, j);
        if let Some(&other) = bucket.get(i) {
            set_pos(pos, other, i);
        }
        set_pos(pos, piece, j);
        self.len += 1;
        true
    }

    /// Removes `piece`, which is in bucket `b`.
    pub(super) fn remove(&mut self, piece: u32, b: usize, pos: &mut [PieceInfo]) {
        if self.take(piece, b, pos) {
            self.members.clear(piece);
        }
    }

    /// `remove` without the membership bit; false if `piece` was not there.
    fn take(&mut self, piece: u32, b: usize, pos: &mut [PieceInfo]) -> bool {
        let Some(at) = pos.get(piece as usize).map(|p| p.pos) else {
            return false;
        };
        let Some(bucket) = self.buckets.get_mut(b) else {
            return false;
        };
        let i = at as usize;
        if bucket.get(i) != Some(&piece) {
            debug_assert!(false, "piece {piece} not at {i} of bucket {b}");
            return false;
        }
        bucket.swap_remove(i);
        if let Some(&moved) = bucket.get(i) {
            set_pos(pos, moved, i);
        }
        set_pos(pos, piece, NONE as usize);
        self.len -= 1;
        true
    }

    /// Moves `piece` from bucket `from` to bucket `to` (it stays a member).
    pub(super) fn shift(
        &mut self,
        piece: u32,
        from: usize,
        to: usize,
        pos: &mut [PieceInfo],
        rng: &mut Rng,
    ) {
        if self.take(piece, from, pos) {
            self.push(piece, to, pos, rng);
        }
    }

    /// The level's pieces.
    pub(super) fn members(&self) -> &Bitfield {
        &self.members
    }

    /// Builds bucket 0 from `pieces`, shuffled; the level must be empty.
    pub(super) fn fill_unavailable(
        &mut self,
        mut pieces: Vec<u32>,
        pos: &mut [PieceInfo],
        rng: &mut Rng,
    ) {
        rng.shuffle(&mut pieces);
        for (i, &p) in pieces.iter().enumerate() {
            set_pos(pos, p, i);
            self.members.set(p);
        }
        self.len = pieces.len();
        self.buckets = vec![pieces];
    }

    /// Checks the level against `avail`/`pos`; `in_level(p)` says which pieces belong here.
    pub(super) fn check(
        &self,
        pieces: &[PieceInfo],
        mut in_level: impl FnMut(u32) -> bool,
    ) -> Result<usize, String> {
        let mut total = 0;
        for (b, bucket) in self.buckets.iter().enumerate() {
            for (i, &p) in bucket.iter().enumerate() {
                let info = pieces.get(p as usize);
                if info.map(|x| x.pos) != Some(i as u32) {
                    return Err(format!(
                        "piece {p} at {b}/{i} but pos says {:?}",
                        info.map(|x| x.pos)
                    ));
                }
                if info.map(|x| x.avail) != Some(b as u32) {
                    return Err(format!("piece {p} in bucket {b} but availability differs"));
                }
                if !in_level(p) {
                    return Err(format!("piece {p} should not be in this level"));
                }
            }
            total += bucket.len();
        }
        if total != self.len {
            return Err(format!("level len {} but buckets hold {total}", self.len));
        }
        let members = self.members.count_ones();
        if members as usize != total {
            return Err(format!(
                "level has {total} pieces but {members} member bits"
            ));
        }
        for bucket in &self.buckets {
            for &p in bucket {
                if !self.members.get(p) {
                    return Err(format!("piece {p} is in the level but not a member"));
                }
            }
        }
        Ok(total)
    }
}
