//! The invariant checker behind [`Picker::debug_check_invariants`]: recomputes every
//! derived count from scratch and compares. O(pieces + peers x pieces/64 + blocks).

use super::order::NONE;
use super::{Block, BlockRef, Has, MAX_PRIORITY, Picker, PieceState};

impl Picker {
    pub(super) fn check_all(&self) -> Result<(), String> {
        let n = self.geo.piece_count();
        let count = n as usize;
        if self.pieces.len() != count || self.have.len() != n {
            return Err("per-piece arrays have the wrong length".into());
        }
        if !self.scratch_fresh.is_empty()
            || !self.scratch_partials.is_empty()
            || !self.scratch_endgame.is_empty()
        {
            return Err("scratch buffers not cleared".into());
        }
        let packed = self.downloads.iter().map(|d| d.piece);
        if self.slot_pieces.len() != self.downloads.len()
            || !packed.eq(self.slot_pieces.iter().copied())
        {
            return Err("slot_pieces disagrees with the download slots".into());
        }
        // 1, 2: piece states and order membership.
        let mut in_order = 0;
        let mut wanted = 0;
        for piece in 0..n {
            let state = self.state_at(piece).ok_or("state")?;
            let prio = self.prio_at(piece).ok_or("prio")?;
            let pos = self.pos_at(piece).ok_or("pos")?;
            if prio > MAX_PRIORITY {
                return Err(format!("piece {piece} has priority {prio}"));
            }
            if self.have.get(piece) != (state == PieceState::Have) {
                return Err(format!("piece {piece}: have bit disagrees with {state:?}"));
            }
            let should_order = state == PieceState::Missing && prio > 0;
            if should_order != (pos != NONE) {
                return Err(format!(
                    "piece {piece} ({state:?}, prio {prio}) order pos {pos}"
                ));
            }
            in_order += usize::from(should_order);
            wanted += u32::from(state != PieceState::Have && prio > 0);
            if let PieceState::Downloading(slot) | PieceState::Verifying(slot) = state {
                let d = self
                    .downloads
                    .get(slot as usize)
                    .ok_or("slot out of range")?;
                if d.piece != piece {
                    return Err(format!(
                        "piece {piece} points at slot {slot} of {}",
                        d.piece
                    ));
                }
            }
        }
        if wanted != self.wanted {
            return Err(format!("wanted {} but counted {wanted}", self.wanted));
        }
        let mut levels_total = 0;
        for (li, level) in self.levels.iter().enumerate() {
            let want_prio = li + 1;
            levels_total += level.check(&self.pieces, |p| {
                self.prio_at(p).is_some_and(|x| usize::from(x) == want_prio)
                    && self.state_at(p) == Some(PieceState::Missing)
            })?;
        }
        if levels_total != in_order {
            return Err(format!(
                "levels hold {levels_total} pieces, {in_order} belong"
            ));
        }
        // 3, 7: availability, seeds, wanted counts.
        let mut avail = vec![0u32; count];
        let mut seeds = 0;
        let mut total_requests = 0usize;
        for (key, p) in &self.peers {
            match &p.has {
                Has::All => seeds += 1,
                Has::Pieces(bits) => {
                    if bits.len() != n || bits.all() {
                        return Err(format!("peer {key:?} bitfield wrong size or full"));
                    }
                    let mut w = 0;
                    for i in bits.iter_ones() {
                        if let Some(a) = avail.get_mut(i as usize) {
                            *a += 1;
                        }
                        w += u32::from(self.wants(i));
                    }
                    if w != p.wanted {
                        return Err(format!("peer {key:?} wanted {} but counted {w}", p.wanted));
                    }
                }
            }
            // 6: the peer's side of the request bijection.
            if p.requests.len() > self.config.max_requests_per_peer as usize {
                return Err(format!("peer {key:?} has too many requests"));
            }
            let mut sorted = p.requests.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w.first() == w.get(1)) {
                return Err(format!("peer {key:?} holds a request twice"));
            }
            for r in &p.requests {
                let Some(PieceState::Downloading(slot)) = self.state_at(r.piece) else {
                    return Err(format!(
                        "peer {key:?} requests {r:?} of a piece not downloading"
                    ));
                };
                let blk = self
                    .downloads
                    .get(slot as usize)
                    .and_then(|d| d.blocks.get(r.block as usize));
                if !matches!(blk, Some(Block::Requested(s)) if s.contains(*key)) {
                    return Err(format!(
                        "peer {key:?} lists {r:?} but the block says {blk:?}"
                    ));
                }
            }
            total_requests += p.requests.len();
        }
        if !avail
            .iter()
            .copied()
            .eq(self.pieces.iter().map(|p| p.avail))
        {
            return Err("availability counts disagree with peer bitfields".into());
        }
        if seeds != self.seeds {
            return Err(format!("seeds {} but counted {seeds}", self.seeds));
        }
        // 4, 5, 6: download slots.
        let mut free_slots = self.free_slots.clone();
        free_slots.sort_unstable();
        if free_slots.windows(2).any(|w| w.first() == w.get(1)) {
            return Err("a slot is free twice".into());
        }
        let mut requesters = 0usize;
        let mut open_count = 0;
        for (slot, d) in (0u32..).zip(&self.downloads) {
            let is_free = free_slots.binary_search(&slot).is_ok();
            if d.piece == NONE {
                if !is_free || !d.blocks.is_empty() || d.open_pos != NONE {
                    return Err(format!("unused slot {slot} not clean or not free"));
                }
                continue;
            }
            if is_free {
                return Err(format!("slot {slot} in use and on the free list"));
            }
            let state = self.state_at(d.piece);
            let verifying = state == Some(PieceState::Verifying(slot));
            if !verifying && state != Some(PieceState::Downloading(slot)) {
                return Err(format!(
                    "slot {slot} for piece {} in state {state:?}",
                    d.piece
                ));
            }
            if Some(d.blocks.len() as u32) != self.geo.block_count(d.piece) {
                return Err(format!("slot {slot} has the wrong block count"));
            }
            let (mut free, mut req, mut rec) = (0, 0, 0);
            for (b, blk) in (0u32..).zip(&d.blocks) {
                match blk {
                    Block::Free => free += 1,
                    Block::Received(_) => rec += 1,
                    Block::Requested(s) => {
                        req += 1;
                        if s.is_empty() || s.len() > usize::from(self.config.endgame_max_requesters)
                        {
                            return Err(format!("block {b} of slot {slot} has {s:?}"));
                        }
                        let mut keys = s.as_slice().to_vec();
                        keys.sort_unstable();
                        keys.dedup();
                        if keys.len() != s.len() {
                            return Err(format!("block {b} of slot {slot} repeats a peer"));
                        }
                        for k in s.iter() {
                            let r = BlockRef {
                                piece: d.piece,
                                block: b,
                            };
                            let listed =
                                self.peers.get(&k).is_some_and(|p| p.requests.contains(&r));
                            if !listed {
                                return Err(format!("{k:?} requested {r:?} but does not list it"));
                            }
                        }
                        requesters += s.len();
                    }
                }
            }
            if (free, req, rec) != (d.free, d.requested, d.received) {
                return Err(format!("slot {slot} counters are off"));
            }
            if verifying != (rec as usize == d.blocks.len()) {
                return Err(format!("slot {slot}: verifying iff all received"));
            }
            if !verifying && req + rec == 0 {
                return Err(format!(
                    "slot {slot} downloading with nothing requested or received"
                ));
            }
            let should_open = !verifying && free > 0;
            if should_open != (d.open_pos != NONE) {
                return Err(format!("slot {slot} open membership is wrong"));
            }
            if should_open {
                open_count += 1;
                if self.open.get(d.open_pos as usize) != Some(&slot) {
                    return Err(format!("slot {slot} open_pos does not point back"));
                }
            }
        }
        if open_count != self.open.len() {
            return Err("open list has stale entries".into());
        }
        if requesters != total_requests {
            return Err(format!(
                "{requesters} block requesters but peers list {total_requests} requests"
            ));
        }
        Ok(())
    }
}
