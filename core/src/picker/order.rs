//! Availability buckets for one priority level, after libtorrent's `piece_picker`
//! (`m_pieces` + `m_priority_boundaries`).
//!
//! `order` holds the level's untouched pieces sorted by bucket (= number of non-seed peers that
//! have the piece), in random order inside a bucket; `ends[b]` is one past the last position of
//! bucket `b`. Moving a piece to the neighbouring bucket is one swap with the bucket's edge plus
//! one boundary shift, O(1); a random swap inside the new bucket keeps ties randomly ordered
//! (seeded RNG, so reproducible). Insert and remove cascade across the buckets above the piece's
//! own: O(number of distinct availability values), at most the number of peers + 1.
//!
//! `pos[piece]` (owned by the picker, shared by all levels) is the piece's index in `order`.

use crate::rng::Rng;

/// Marker for "not in any order" in the `pos` array.
pub(super) const NONE: u32 = u32::MAX;

/// The untouched pieces of one priority level, bucketed by availability.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(super) struct Level {
    /// Piece indices, bucket by bucket.
    order: Vec<u32>,
    /// `ends[b]`: one past the last position of bucket `b`. Canonical form: empty iff `order` is
    /// empty; otherwise the last bucket is non-empty and `ends.last() == order.len()`.
    ends: Vec<u32>,
}

fn set_pos(pos: &mut [u32], piece: u32, at: usize) {
    if let Some(p) = pos.get_mut(piece as usize) {
        *p = at as u32;
    }
}

impl Level {
    /// Number of pieces in the level.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// The piece at `i`.
    pub(super) fn get(&self, i: usize) -> Option<u32> {
        self.order.get(i).copied()
    }

    /// First position of bucket `b` (`len()` for buckets past the last).
    pub(super) fn start(&self, b: usize) -> usize {
        match b.checked_sub(1) {
            None => 0,
            Some(prev) => self
                .ends
                .get(prev)
                .map_or(self.order.len(), |&e| e as usize),
        }
    }

    /// One past the last position of bucket `b`.
    fn end(&self, b: usize) -> usize {
        self.ends.get(b).map_or(self.order.len(), |&e| e as usize)
    }

    fn swap(&mut self, i: usize, j: usize, pos: &mut [u32]) {
        if i == j || i >= self.order.len() || j >= self.order.len() {
            return;
        }
        self.order.swap(i, j);
        if let Some(&a) = self.order.get(i) {
            set_pos(pos, a, i);
        }
        if let Some(&b) = self.order.get(j) {
            set_pos(pos, b, j);
        }
    }

    /// Swaps the piece at `i` with a random member of bucket `b` (random tie order).
    fn shuffle_into(&mut self, i: usize, b: usize, pos: &mut [u32], rng: &mut Rng) {
        let start = self.start(b);
        let size = self.end(b).saturating_sub(start);
        if size > 1 {
            let j = start + rng.index(size);
            self.swap(i, j, pos);
        }
    }

    fn add_end(&mut self, b: usize, delta: i64) {
        if let Some(e) = self.ends.get_mut(b) {
            *e = (i64::from(*e) + delta) as u32;
        }
    }

    /// Drops trailing empty buckets (canonical form).
    fn trim(&mut self) {
        while let Some(&last) = self.ends.last() {
            let prev = match self.ends.len().checked_sub(2) {
                Some(k) => self.ends.get(k).copied().unwrap_or(0),
                None => 0,
            };
            if last == prev {
                self.ends.pop();
            } else {
                break;
            }
        }
    }

    /// Adds `piece` to bucket `b` at a random place within the bucket.
    pub(super) fn insert(&mut self, piece: u32, b: usize, pos: &mut [u32], rng: &mut Rng) {
        let n = self.order.len();
        while self.ends.len() <= b {
            self.ends.push(n as u32);
        }
        self.order.push(piece);
        set_pos(pos, piece, n);
        let last = self.ends.len() - 1;
        self.add_end(last, 1);
        // Walk the piece down from the last bucket: swap with the first element of each bucket
        // above `b` and move that bucket's start up by one.
        let mut i = n;
        for k in (b + 1..=last).rev() {
            let first = self.start(k);
            self.swap(i, first, pos);
            self.add_end(k - 1, 1);
            i = first;
        }
        self.shuffle_into(i, b, pos, rng);
    }

    /// Removes `piece`, which is in bucket `b`.
    pub(super) fn remove(&mut self, piece: u32, b: usize, pos: &mut [u32]) {
        let Some(&at) = pos.get(piece as usize) else {
            return;
        };
        let mut i = at as usize;
        // Walk the piece up to the very end: swap with the last element of each bucket from
        // its own upwards, shrinking each bucket by one.
        for k in b..self.ends.len() {
            let last = self.end(k).saturating_sub(1);
            self.swap(i, last, pos);
            self.add_end(k, -1);
            i = last;
        }
        debug_assert_eq!(self.order.last(), Some(&piece));
        self.order.pop();
        set_pos(pos, piece, NONE as usize);
        self.trim();
    }

    /// Moves `piece` from bucket `b` to `b + 1` (one more peer has it).
    pub(super) fn bump_up(&mut self, piece: u32, b: usize, pos: &mut [u32], rng: &mut Rng) {
        let Some(&at) = pos.get(piece as usize) else {
            return;
        };
        let last = self.end(b).saturating_sub(1);
        self.swap(at as usize, last, pos);
        self.add_end(b, -1);
        if self.ends.len() == b + 1 {
            self.ends.push(self.order.len() as u32);
        }
        self.shuffle_into(last, b + 1, pos, rng);
    }

    /// Moves `piece` from bucket `b >= 1` to `b - 1` (one peer fewer has it).
    pub(super) fn bump_down(&mut self, piece: u32, b: usize, pos: &mut [u32], rng: &mut Rng) {
        let Some(&at) = pos.get(piece as usize) else {
            return;
        };
        let Some(below) = b.checked_sub(1) else {
            return;
        };
        let first = self.start(b);
        self.swap(at as usize, first, pos);
        self.add_end(below, 1);
        self.trim();
        self.shuffle_into(first, below, pos, rng);
    }

    /// Builds bucket 0 from `pieces`, shuffled; the level must be empty.
    pub(super) fn fill_unavailable(&mut self, pieces: Vec<u32>, pos: &mut [u32], rng: &mut Rng) {
        self.order = pieces;
        rng.shuffle(&mut self.order);
        for (i, &p) in self.order.iter().enumerate() {
            set_pos(pos, p, i);
        }
        self.ends.clear();
        if !self.order.is_empty() {
            self.ends.push(self.order.len() as u32);
        }
    }

    /// Checks the level against `avail`/`pos`; `in_level(p)` says which pieces belong here.
    pub(super) fn check(
        &self,
        avail: &[u32],
        pos: &[u32],
        mut in_level: impl FnMut(u32) -> bool,
    ) -> Result<usize, String> {
        if self.order.is_empty() != self.ends.is_empty() {
            return Err(format!("order/ends emptiness differs: {:?}", self.ends));
        }
        if let Some(&last) = self.ends.last() {
            if last as usize != self.order.len() {
                return Err("last bucket end is not the order length".into());
            }
            if self.start(self.ends.len() - 1) == last as usize {
                return Err("trailing empty bucket".into());
            }
        }
        if self.ends.windows(2).any(|w| w.first() > w.get(1)) {
            return Err(format!("bucket ends not sorted: {:?}", self.ends));
        }
        for b in 0..self.ends.len() {
            for i in self.start(b)..self.end(b) {
                let p = self.order.get(i).copied().unwrap_or(NONE);
                if pos.get(p as usize) != Some(&(i as u32)) {
                    return Err(format!(
                        "piece {p} at {i} but pos says {:?}",
                        pos.get(p as usize)
                    ));
                }
                if avail.get(p as usize) != Some(&(b as u32)) {
                    return Err(format!("piece {p} in bucket {b} but availability differs"));
                }
                if !in_level(p) {
                    return Err(format!("piece {p} should not be in this level"));
                }
            }
        }
        Ok(self.order.len())
    }
}
