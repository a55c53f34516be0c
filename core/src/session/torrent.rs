//! One torrent's state inside the Session.
//!
//! # Invariants
//!
//! These hold between any two calls into the Session (checked by
//! [`Torrent::check_invariants`] in tests):
//!
//! 1. `picker.have()` is the set of verified pieces; every piece in it was either passed to
//!    `add_torrent` as on disk or answered by `PieceVerified { ok: true }`.
//! 2. A piece is in `verifying` iff a `VerifyPiece` output for it is unanswered; it is then
//!    complete in the picker (all blocks received) and has no pending write.
//! 3. `pending_writes[p]` counts the `WriteBlock` outputs of piece `p` not yet answered; no
//!    entry is zero. A piece whose blocks are all received waits in `awaiting_writes` until its
//!    count drops to zero, then moves to `verifying`.
//! 4. `conns` holds exactly the Session connections attached to this torrent; `by_key` maps
//!    each attached connection's picker key back to it (keys are never reused).
//! 5. Only a `Running` torrent has connections, makes requests or announces (other than
//!    `stopped`).
//! 6. `left` is the byte count of pieces that are wanted (priority > 0) and not verified.
//! 7. Everything here is bounded: connections by the limits, the peer list by its config,
//!    pending writes and verifications by the number of pieces.

use std::collections::{BTreeMap, BTreeSet};

use crate::announce::Announcer;
use crate::choker::Choker;
use crate::metainfo::Metainfo;
use crate::peer::TorrentInfo;
use crate::peer_list::PeerList;
use crate::picker::{PeerKey, Picker};
use crate::rate::RateMeter;
use crate::time::Instant;

use super::types::{ConnId, TorrentId, TorrentState};

/// A torrent and every machine that serves it.
#[derive(Debug)]
pub(crate) struct Torrent {
    pub(crate) id: TorrentId,
    pub(crate) meta: Metainfo,
    pub(crate) info: TorrentInfo,
    pub(crate) state: TorrentState,
    pub(crate) picker: Picker,
    pub(crate) choker: Choker<ConnId>,
    pub(crate) announcer: Announcer,
    pub(crate) peers: PeerList,
    pub(crate) conns: BTreeSet<ConnId>,
    pub(crate) by_key: BTreeMap<PeerKey, ConnId>,
    pub(crate) next_key: u32,
    pub(crate) pending_writes: BTreeMap<u32, u32>,
    pub(crate) awaiting_writes: BTreeSet<u32>,
    pub(crate) verifying: BTreeSet<u32>,
    pub(crate) left: u64,
    pub(crate) downloaded: u64,
    pub(crate) uploaded: u64,
    pub(crate) wasted: u64,
    pub(crate) hash_failures: u32,
    pub(crate) download_rate: RateMeter,
    pub(crate) upload_rate: RateMeter,
    pub(crate) next_stats: Instant,
    pub(crate) completed_announced: bool,
    /// Something happened that an interim choke call could act on (see `Session::rechoke`).
    pub(crate) choke_dirty: bool,
}

impl Torrent {
    /// Bytes of wanted pieces not yet verified (kept up to date: announces read it often).
    pub(crate) fn left(&self) -> u64 {
        self.left
    }

    /// Recounts [`Torrent::left`] from the picker, for when priorities change.
    pub(crate) fn recount_left(&mut self) {
        self.left = self.counted_left();
    }

    /// Bytes of wanted, unverified pieces, counted piece by piece: O(pieces).
    fn counted_left(&self) -> u64 {
        let g = self.picker.geometry();
        let have = self.picker.have();
        (0..g.piece_count())
            .filter(|&p| !have.get(p) && self.picker.piece_priority(p).is_some_and(|q| q > 0))
            .map(|p| u64::from(g.piece_size(p).unwrap_or(0)))
            .sum()
    }

    /// A wanted piece passed its hash check.
    pub(crate) fn piece_passed(&mut self, piece: u32) {
        if self.picker.piece_priority(piece).is_some_and(|q| q > 0) {
            let size = self.picker.geometry().piece_size(piece).unwrap_or(0);
            self.left = self.left.saturating_sub(u64::from(size));
        }
    }

    /// A fresh picker key for a newly attached connection.
    pub(crate) fn new_key(&mut self, conn: ConnId) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key = self.next_key.wrapping_add(1);
        self.by_key.insert(key, conn);
        key
    }

    /// Checks the invariants listed in the module docs.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for (piece, n) in &self.pending_writes {
            if *n == 0 {
                return Err(format!("piece {piece} has a zero pending-write entry"));
            }
        }
        for piece in &self.verifying {
            if self.pending_writes.contains_key(piece) {
                return Err(format!("piece {piece} is verifying with writes pending"));
            }
            if self.picker.have().get(*piece) {
                return Err(format!("piece {piece} is verifying but already had"));
            }
        }
        for piece in &self.awaiting_writes {
            if !self.pending_writes.contains_key(piece) {
                return Err(format!("piece {piece} awaits writes but none are pending"));
            }
        }
        let counted = self.counted_left();
        if counted != self.left {
            return Err(format!(
                "left is {} but the pieces say {counted}",
                self.left
            ));
        }
        if self.by_key.len() != self.conns.len() {
            return Err(format!(
                "{} picker keys for {} connections",
                self.by_key.len(),
                self.conns.len()
            ));
        }
        if self.state != TorrentState::Running && !self.conns.is_empty() {
            return Err(format!("{:?} torrent has connections", self.state));
        }
        self.picker
            .debug_check_invariants()
            .map_err(|e| format!("picker: {e}"))
    }
}
