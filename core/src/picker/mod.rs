//! The piece picker: which blocks to request from which peer, and what to do when they arrive.
//!
//! Pure and standalone: no clock, no I/O, randomness from a seeded [`Rng`]. The peer connection
//! and Session machines drive it; everything they tell it is a method call, everything it tells
//! them is a return value.
//!
//! # Driving it
//!
//! ```text
//! Picker::new(piece_count, piece_length, total_length, config, rng)
//! availability   peer_bitfield(peer, &bf) | peer_have_all(peer) | peer_have_none(peer)
//!                                                   -> Ok(interesting?); bitfields merge
//!                peer_have(peer, i)                 -> Ok(Known | Unwanted | Wanted)
//! requesting     pick(peer, max, &mut out)          appends BlockRequests, records them as
//!                                                   requested by `peer`
//! replies        block_received(peer, block)        -> Accepted { cancel, piece_complete }
//!                                                    | Duplicate | Unrequested | Invalid
//!                request_timed_out / request_rejected (peer, block), peer_choked(peer)
//!                                                   release requests for other peers
//! verification   piece_verified(piece, ok)          -> Passed | Failed { contributors, ban }
//! leaving        peer_gone(peer)                    releases all its requests at once
//! priorities     set_piece_priority(i, 0..=7) | set_file_priorities(&[(len, prio)])
//! resume         mark_have(i)
//! ```
//!
//! After `Accepted { piece_complete: true }` the caller hashes the piece and reports the result
//! with [`Picker::piece_verified`]; after `Passed` it sends `have` to every peer and may ask
//! [`Picker::is_interesting`] to update its interest. `cancel` in `Accepted` lists the peers
//! which also had that block requested (endgame): send them BEP 3 `cancel`.
//!
//! # Picking order
//!
//! For each priority level from 7 down to 1 (0 = skip, never picked; default 4):
//! 1. **Partial pieces first**: pieces with some blocks requested or received and some still
//!    free. First the one this peer was last given blocks of (each piece remembers the last
//!    peer it gave blocks to: fewer peers per piece, so a bad block implicates fewer peers),
//!    then those with the fewest free blocks, then by index.
//! 2. **Untouched pieces rarest first**, ties in a random order drawn from the seeded RNG;
//!    while fewer than [`PickerConfig::initial_random_pieces`] pieces are verified, a random
//!    piece instead (libtorrent's "initial random": a first complete piece, quickly, to have
//!    something to trade; rare pieces are slow to get).
//!
//! A peer is never given a piece it does not have, nor more outstanding requests than
//! [`PickerConfig::max_requests_per_peer`]. When no wanted block is free any more (every
//! remaining block is requested or received) the picker is in **endgame**: a block may then be
//! requested from up to [`PickerConfig::endgame_max_requesters`] peers, and the first copy to
//! arrive cancels the others.
//!
//! # Hash failures and bans
//!
//! Each received block records its sender. When a piece fails verification all its blocks are
//! reset, the piece is downloaded again, and every distinct sender gets one strike
//! ([`PickerConfig::sole_source_strikes`] if it sent the whole piece: then it is surely the
//! culprit, and libtorrent bans such a peer at once). A peer reaching
//! [`PickerConfig::ban_strikes`] is reported in `ban`. Peers are not exonerated when the piece
//! later passes: that needs the bytes of each block (libtorrent's smart-ban hashes blocks per
//! peer), which the picker never sees; `contributors` lets a caller that has them do it.
//! Strikes live with the peer entry and vanish at [`Picker::peer_gone`]: bans by address are the
//! caller's business.
//!
//! # Complexity (n pieces, P peers, B availability buckets <= P + 1, q requests per peer)
//!
//! - `peer_have`: O(log P) peer lookup + O(1) bucket move. Once per peer, when its bitfield
//!   becomes full, O(n) to turn it into a seed: amortised O(1) per `have`.
//! - `peer_bitfield`: O(n/64 + set bits); a full bitfield or `peer_have_all`: O(log P).
//! - `peer_gone` / `peer_choked`: O(n/64 + its set bits) (O(1) for a seed) + O(q).
//! - `pick`: O(k log k) to rank the k open partial pieces, then a walk of the availability
//!   order from the rare end (plus O(B) to step over empty buckets) until enough pieces the
//!   peer has are found: about 1/f steps per piece for a peer that has a fraction f of them.
//!   The walk is capped at about the cost of scanning the peer's own bitfield (n/64 + its
//!   pieces), after which it does that scan instead, with identical results. Taking a piece out
//!   of the order is O(1). So O(1) per block in the common case, never worse than
//!   O(n/64 + the peer's pieces). Endgame picks scan the pieces being downloaded:
//!   O(downloads x blocks per piece).
//! - `block_received`, `request_timed_out`: O(log P + q) (plus O(q) per endgame cancel).
//! - `piece_verified`: O(blocks per piece + P) (the P part updates each peer's interest count).
//!
//! `core/benches/picker.rs` (100k pieces x 16 blocks, 200 peers, on a loaded 2-core machine):
//! 20-35 ns per set bit of a bitfield, 110-180 ns per `have`, 25-100 ns per picked block
//! (40-65 over a whole download, endgame included) against ~40 us per block for the O(n)
//! scan on the same state: a ratio of roughly 400-1600.
//!
//! # Invariants (checked by [`Picker::debug_check_invariants`])
//!
//! 1. Every piece is in exactly one state: `Missing`, `Downloading(slot)`, `Verifying(slot)` or
//!    `Have`; `Have` iff its bit is set in [`Picker::have`].
//! 2. A piece is in the availability order of level `prio` iff it is `Missing` with priority
//!    > 0; inside the level it sits in bucket `avail[piece]`, and `pos[piece]` is its index.
//! 3. `avail[piece]` is the number of non-seed peers whose bitfield has it; `seeds` is the
//!    number of have-all peers. A peer whose bitfield fills up becomes a seed.
//! 4. A download slot's free/requested/received counters match its blocks; a `Downloading`
//!    piece has at least one block requested or received and at least one not received; a
//!    `Verifying` piece has all blocks received. Untouched pieces have no slot.
//! 5. `open` holds exactly the `Downloading` slots with a free block.
//! 6. Block requests are a bijection: block `b` of piece `p` lists peer `k` as a requester iff
//!    `k`'s request list holds `(p, b)` once. A block has 1..=`endgame_max_requesters`
//!    distinct requesters; a peer has at most `max_requests_per_peer` requests.
//! 7. Each peer's `wanted` is the number of pieces it has that are not `Have` with priority > 0;
//!    the picker's `wanted` is the number of such pieces overall.
//!
//! # Bounds
//!
//! Per piece: about 22 bytes. Per peer: its bitfield (n/8 bytes, none for a seed) and at most
//! `max_requests_per_peer` request records. Download slots: one per piece with requested or
//! received blocks (24 bytes per block), reused without reallocating. Availability buckets:
//! at most one per availability value seen, i.e. bounded by the number of peers. No
//! allocation per pick or per block in steady state (scratch buffers are kept).

mod check;
mod geometry;
mod order;
mod select;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::bitfield::Bitfield;
use crate::rng::Rng;

pub use geometry::{Geometry, MAX_PIECE_LENGTH};
use order::{Level, NONE};
use select::SelectCtx;

/// Block size used for requests. BEP 3: "All current implementations use 2^14 (16 kiB), and
/// close connections which request an amount greater than that."
pub const BLOCK_SIZE: u32 = 16 * 1024;
/// Highest piece priority (libtorrent's scale: 0 skip, 1 low, 4 default, 7 top).
pub const MAX_PRIORITY: u8 = 7;
/// Priority of every piece until told otherwise.
pub const DEFAULT_PRIORITY: u8 = 4;
/// Hard cap on peers requesting the same block (endgame); bounds [`PeerSet`].
pub const MAX_REQUESTERS: usize = 4;

const LEVELS: usize = MAX_PRIORITY as usize;

/// Errors from the picker: bad torrent geometry, bad arguments, or out-of-range peer input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PickerError {
    /// Piece length is zero or above [`MAX_PIECE_LENGTH`].
    #[error("piece length {0} is not in 1..=268435456 bytes")]
    BadPieceLength(u32),
    /// The piece count does not match total and piece length.
    #[error(
        "{piece_count} pieces do not fit {total_length} bytes in pieces of {piece_length} bytes"
    )]
    GeometryMismatch {
        /// Pieces given.
        piece_count: u32,
        /// Piece length given.
        piece_length: u32,
        /// Total length given.
        total_length: u64,
    },
    /// A piece index past the end of the torrent (from a peer's `have`, or a caller).
    #[error("piece index {piece} out of range: the torrent has {piece_count} pieces")]
    PieceOutOfRange {
        /// The index.
        piece: u32,
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A peer bitfield of the wrong size.
    #[error("bitfield covers {got} pieces, the torrent has {expected}")]
    BitfieldLength {
        /// Pieces in the bitfield.
        got: u32,
        /// Pieces in the torrent.
        expected: u32,
    },
    /// A priority above [`MAX_PRIORITY`].
    #[error("priority {0} out of range: use 0 (skip) to 7")]
    BadPriority(u8),
    /// `piece_verified` for a piece whose blocks are not all in.
    #[error("piece {0} is not awaiting verification")]
    NotVerifying(u32),
    /// File lengths that do not add up to the torrent's length.
    #[error("file lengths add up to {got} bytes, the torrent has {expected}")]
    FileLengthMismatch {
        /// Sum of file lengths.
        got: u64,
        /// Torrent length.
        expected: u64,
    },
    /// A configuration value out of range.
    #[error("invalid picker configuration: {0}")]
    BadConfig(&'static str),
    /// An internal invariant does not hold (a picker bug; reported by the checker).
    #[error("picker invariant broken: {0}")]
    InvariantBroken(String),
}

/// Tunables; [`PickerConfig::default`] gives sensible values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PickerConfig {
    /// Pick random pieces instead of rarest until this many pieces are verified (default 4).
    pub initial_random_pieces: u32,
    /// Peers that may have one block requested at once in endgame, 1..=[`MAX_REQUESTERS`]
    /// (default 3: the original request plus two duplicates).
    pub endgame_max_requesters: u8,
    /// Outstanding requests one peer may hold (default 256, i.e. 4 MiB in flight).
    pub max_requests_per_peer: u32,
    /// Strikes at which a peer is reported for banning (default 3).
    pub ban_strikes: u32,
    /// Strikes for a peer that sent every block of a failed piece (default 2).
    pub sole_source_strikes: u32,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig {
            initial_random_pieces: 4,
            endgame_max_requesters: 3,
            max_requests_per_peer: 256,
            ban_strikes: 3,
            sole_source_strikes: 2,
        }
    }
}

/// A peer as the caller names it: any small key, unique among live peers. Do not reuse a key
/// for a new connection: blame for a piece that was in flight would land on the new peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(pub u32);

/// One block, as the wire names it (BEP 3 `request`/`piece`/`cancel`): the picker and the
/// peer connection share one type, so requests pass between them without conversion.
pub use crate::wire::BlockRequest;

/// A small set of peers (at most [`MAX_REQUESTERS`]), e.g. the peers to send `cancel` to.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerSet {
    keys: [PeerKey; MAX_REQUESTERS],
    len: u8,
}

impl PeerSet {
    fn one(k: PeerKey) -> Self {
        let mut s = PeerSet::default();
        s.push(k);
        s
    }

    /// The peers, in the order they were added (swap-removal may reorder).
    pub fn as_slice(&self) -> &[PeerKey] {
        self.keys.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Iterates the peers.
    pub fn iter(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.as_slice().iter().copied()
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `k` is in the set.
    pub fn contains(&self, k: PeerKey) -> bool {
        self.as_slice().contains(&k)
    }

    fn push(&mut self, k: PeerKey) -> bool {
        match self.keys.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = k;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, k: PeerKey) -> bool {
        let Some(i) = self.as_slice().iter().position(|&x| x == k) else {
            return false;
        };
        let last = usize::from(self.len) - 1;
        self.keys.swap(i, last);
        // Keep unused slots zeroed so derived equality only sees the live keys.
        if let Some(slot) = self.keys.get_mut(last) {
            *slot = PeerKey::default();
        }
        self.len -= 1;
        true
    }
}

impl core::fmt::Debug for PeerSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// What [`Picker::block_received`] made of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Requested from this peer and still needed: write it. Send `cancel` for this block to
    /// the peers in `cancel` (endgame duplicates). If `piece_complete`, every block of the piece
    /// is in: verify it, then call [`Picker::piece_verified`].
    Accepted {
        /// Other peers that had this block requested.
        cancel: PeerSet,
        /// All blocks of the piece are now received.
        piece_complete: bool,
    },
    /// Already received or verified (e.g. an endgame copy that crossed our `cancel`): drop it.
    Duplicate,
    /// A valid block this peer has no outstanding request for (never asked, or released by a
    /// timeout or reject): not written. Whether that is misbehaviour is the caller's call.
    Unrequested,
    /// Not a block of this torrent (bad index, unaligned offset or wrong length).
    Invalid,
}

/// What a peer's `have` was to [`Picker::peer_have`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewHave {
    /// The peer had announced the piece already (peers repeat haves) or is a seed: nothing
    /// changed, so neither interest nor requests need a look.
    Known,
    /// New for the peer, but not a piece we want (ours already, or priority 0).
    Unwanted,
    /// New for the peer and wanted: we may become interested or have something to request.
    Wanted,
}

/// What [`Picker::piece_verified`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The piece is ours: send `have` to every peer.
    Passed,
    /// The piece was reset for download again.
    Failed {
        /// Every peer that sent a block of the failed piece, ascending (some may be gone).
        contributors: Vec<PeerKey>,
        /// Live peers whose strikes reached [`PickerConfig::ban_strikes`]: disconnect and ban.
        ban: Vec<PeerKey>,
    },
}

/// The download state of one piece, from [`Picker::piece_status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceStatus {
    /// No block requested or received.
    Missing,
    /// Some blocks requested or received.
    Downloading {
        /// Blocks nobody has been asked for.
        free: u32,
        /// Blocks requested and not yet received.
        requested: u32,
        /// Blocks received.
        received: u32,
    },
    /// All blocks received; waiting for [`Picker::piece_verified`].
    Verifying,
    /// Verified (or marked present at resume).
    Have,
}

/// What the picker keeps per piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PieceInfo {
    /// Non-seed peers that have it.
    pub(super) avail: u32,
    /// Index in its availability bucket (see `order`), or NONE.
    pub(super) pos: u32,
    /// Priority 0..=7.
    pub(super) prio: u8,
    /// Download state.
    state: PieceState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceState {
    Missing,
    Downloading(u32),
    Verifying(u32),
    Have,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Free,
    Requested(PeerSet),
    Received(PeerKey),
}

/// Block-level state of one piece being downloaded (a slot in `Picker::downloads`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Download {
    /// The piece, or NONE for an unused slot.
    piece: u32,
    blocks: Vec<Block>,
    free: u32,
    requested: u32,
    received: u32,
    /// Index in `Picker::open`, or NONE.
    open_pos: u32,
    /// The peer most recently given blocks of this piece: it continues the piece first.
    owner: Option<PeerKey>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BlockRef {
    piece: u32,
    block: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Has {
    /// Which pieces the peer has (never all of them: such a peer becomes `All`).
    Pieces(Bitfield),
    /// A seed (BEP 6 `have all`, or a full bitfield): counted in `Picker::seeds`, not per piece.
    All,
}

impl Has {
    fn has(&self, piece: u32) -> bool {
        match self {
            Has::Pieces(bits) => bits.get(piece),
            Has::All => true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Peer {
    has: Has,
    /// Pieces it has that we want (only maintained for `Has::Pieces`).
    wanted: u32,
    requests: Vec<BlockRef>,
    strikes: u32,
}

/// How `pick` chooses untouched pieces; both give identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Select {
    Fast,
    Naive,
}

/// The piece picker. See the module documentation for the protocol, order and invariants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picker {
    geo: Geometry,
    config: PickerConfig,
    rng: Rng,
    /// Per piece: availability, place in the order, priority and state, in one record: a
    /// `have` reads and writes most of it at once (four arrays were four cache misses).
    pieces: Vec<PieceInfo>,
    /// Availability order of untouched pieces, one per priority 1..=7 (index prio - 1).
    levels: [Level; LEVELS],
    /// Peers that have every piece.
    seeds: u32,
    /// Our verified pieces.
    have: Bitfield,
    /// Pieces not `Have` with priority > 0.
    wanted: u32,
    downloads: Vec<Download>,
    /// `downloads[slot].piece` for every slot, packed: the endgame walks every slot on
    /// every pick, and reading the piece out of each 56-byte slot was a cache miss a slot.
    slot_pieces: Vec<u32>,
    free_slots: Vec<u32>,
    /// Downloading slots with at least one free block.
    open: Vec<u32>,
    peers: BTreeMap<PeerKey, Peer>,
    /// Peers whose [`Picker::is_interesting`] flipped in the last call that made a piece
    /// (un)wanted; see [`Picker::interest_flips`]. At most one entry per peer.
    interest_flips: Vec<PeerKey>,
    /// The peers known to have that piece; see [`Picker::holders_of_changed`].
    changed_holders: Vec<PeerKey>,
    scratch_partials: Vec<(u64, u32)>,
    scratch_fresh: Vec<(u64, u32)>,
    /// Reused by `pick_endgame`: the download slots a peer can serve.
    scratch_endgame: Vec<u32>,
}

impl Picker {
    fn avail_at(&self, piece: u32) -> Option<u32> {
        self.pieces.get(piece as usize).map(|p| p.avail)
    }

    fn pos_at(&self, piece: u32) -> Option<u32> {
        self.pieces.get(piece as usize).map(|p| p.pos)
    }

    fn prio_at(&self, piece: u32) -> Option<u8> {
        self.pieces.get(piece as usize).map(|p| p.prio)
    }

    fn state_at(&self, piece: u32) -> Option<PieceState> {
        self.pieces.get(piece as usize).map(|p| p.state)
    }
}

impl Picker {
    /// A picker for a torrent of `piece_count` pieces of `piece_length` bytes, `total_length`
    /// bytes in all; every piece missing, at [`DEFAULT_PRIORITY`].
    pub fn new(
        piece_count: u32,
        piece_length: u32,
        total_length: u64,
        config: PickerConfig,
        rng: Rng,
    ) -> Result<Self, PickerError> {
        let geo = Geometry::new(piece_count, piece_length, total_length)?;
        Self::with_geometry(geo, config, rng)
    }

    /// A picker for a torrent of the given geometry.
    pub fn with_geometry(
        geo: Geometry,
        config: PickerConfig,
        mut rng: Rng,
    ) -> Result<Self, PickerError> {
        if config.endgame_max_requesters == 0
            || usize::from(config.endgame_max_requesters) > MAX_REQUESTERS
        {
            return Err(PickerError::BadConfig(
                "endgame_max_requesters must be in 1..=4",
            ));
        }
        if config.max_requests_per_peer == 0 {
            return Err(PickerError::BadConfig(
                "max_requests_per_peer must be at least 1",
            ));
        }
        if config.ban_strikes == 0 {
            return Err(PickerError::BadConfig("ban_strikes must be at least 1"));
        }
        let n = geo.piece_count();
        let count = n as usize;
        let mut pieces = vec![
            PieceInfo {
                avail: 0,
                pos: NONE,
                prio: DEFAULT_PRIORITY,
                state: PieceState::Missing,
            };
            count
        ];
        let mut levels: [Level; LEVELS] = std::array::from_fn(|_| Level::new(n));
        if let Some(level) = levels.get_mut(usize::from(DEFAULT_PRIORITY) - 1) {
            level.fill_unavailable((0..n).collect(), &mut pieces, &mut rng);
        }
        Ok(Picker {
            geo,
            config,
            rng,
            pieces,
            levels,
            seeds: 0,
            have: Bitfield::new(n),
            wanted: n,
            downloads: Vec::new(),
            slot_pieces: Vec::new(),
            free_slots: Vec::new(),
            open: Vec::new(),
            peers: BTreeMap::new(),
            interest_flips: Vec::new(),
            changed_holders: Vec::new(),
            scratch_partials: Vec::new(),
            scratch_fresh: Vec::new(),
            scratch_endgame: Vec::new(),
        })
    }

    // ----- queries -------------------------------------------------------------------------

    /// The torrent's piece and block layout.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The configuration in use.
    pub fn config(&self) -> &PickerConfig {
        &self.config
    }

    /// Our verified pieces, ready to send as a `bitfield` payload.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Number of verified pieces.
    pub fn have_count(&self) -> u32 {
        self.have.count_ones()
    }

    /// Pieces still wanted (not verified, priority > 0).
    pub fn wanted_count(&self) -> u32 {
        self.wanted
    }

    /// True when every wanted piece is verified (a seed, or done with the selected files).
    pub fn is_finished(&self) -> bool {
        self.wanted == 0
    }

    /// Peers having `piece` (seeds included); `None` out of range.
    pub fn availability(&self, piece: u32) -> Option<u32> {
        self.avail_at(piece).map(|a| a + self.seeds)
    }

    /// Priority of `piece`; `None` out of range.
    pub fn piece_priority(&self, piece: u32) -> Option<u8> {
        self.prio_at(piece)
    }

    /// Download state of `piece`; `None` out of range.
    pub fn piece_status(&self, piece: u32) -> Option<PieceStatus> {
        Some(match self.state_at(piece)? {
            PieceState::Missing => PieceStatus::Missing,
            PieceState::Downloading(slot) => {
                let d = self.downloads.get(slot as usize)?;
                PieceStatus::Downloading {
                    free: d.free,
                    requested: d.requested,
                    received: d.received,
                }
            }
            PieceState::Verifying(_) => PieceStatus::Verifying,
            PieceState::Have => PieceStatus::Have,
        })
    }

    /// True when no wanted block is free: blocks may be requested from several peers.
    pub fn in_endgame(&self) -> bool {
        self.levels.iter().all(|l| l.len() == 0)
            && self.open.iter().all(|&slot| {
                self.downloads
                    .get(slot as usize)
                    .and_then(|d| self.prio_at(d.piece))
                    .is_none_or(|p| p == 0)
            })
    }

    /// Whether `peer` has a piece we want (so we should be interested, BEP 3).
    pub fn is_interesting(&self, peer: PeerKey) -> bool {
        match self.peers.get(&peer).map(|p| (&p.has, p.wanted)) {
            Some((Has::All, _)) => self.wanted > 0,
            Some((Has::Pieces(_), wanted)) => wanted > 0,
            None => false,
        }
    }

    /// Whether `peer` has `piece`, as far as the picker was told.
    pub fn peer_has(&self, peer: PeerKey, piece: u32) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.has.has(piece))
    }

    /// Reads `piece`'s record (what [`Picker::peer_have`] touches first); see
    /// `Session::prefetch_haves`.
    pub fn prefetch_piece(&self, piece: u32) -> usize {
        self.avail_at(piece).unwrap_or(0) as usize
    }

    /// Whether `peer` is known as a seed (have-all or a full bitfield).
    pub fn is_seed(&self, peer: PeerKey) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.has == Has::All)
    }

    /// Number of outstanding requests the picker recorded for `peer`.
    pub fn outstanding(&self, peer: PeerKey) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.requests.len())
    }

    /// The outstanding requests of `peer`, in no particular order.
    pub fn outstanding_requests(&self, peer: PeerKey) -> impl Iterator<Item = BlockRequest> + '_ {
        self.peers
            .get(&peer)
            .map(|p| p.requests.as_slice())
            .unwrap_or(&[])
            .iter()
            .filter_map(|r| self.geo.block(r.piece, r.block))
    }

    /// Hash-failure strikes of a live peer.
    pub fn strikes(&self, peer: PeerKey) -> Option<u32> {
        self.peers.get(&peer).map(|p| p.strikes)
    }

    /// Number of peers the picker tracks.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    // ----- availability --------------------------------------------------------------------

    fn check_piece(&self, piece: u32) -> Result<(), PickerError> {
        if piece < self.geo.piece_count() {
            Ok(())
        } else {
            Err(PickerError::PieceOutOfRange {
                piece,
                piece_count: self.geo.piece_count(),
            })
        }
    }

    fn wants(&self, piece: u32) -> bool {
        // The piece's record alone (`have` mirrors `state == Have`, an invariant): every
        // `have` from a peer asks this, and the record is read next anyway.
        self.pieces
            .get(piece as usize)
            .is_some_and(|p| p.state != PieceState::Have && p.prio > 0)
    }

    fn inc_avail(&mut self, piece: u32) {
        let Some(info) = self.pieces.get_mut(piece as usize) else {
            return;
        };
        let b = info.avail as usize;
        info.avail += 1;
        if info.pos != NONE {
            let level = info.prio;
            if let Some(l) = self.levels.get_mut(usize::from(level).wrapping_sub(1)) {
                l.shift(piece, b, b + 1, &mut self.pieces, &mut self.rng);
            }
        }
    }

    fn dec_avail(&mut self, piece: u32) {
        let Some(info) = self.pieces.get_mut(piece as usize) else {
            return;
        };
        let b = info.avail as usize;
        if b == 0 {
            return;
        }
        info.avail -= 1;
        if info.pos != NONE {
            let level = info.prio;
            if let Some(l) = self.levels.get_mut(usize::from(level).wrapping_sub(1)) {
                l.shift(piece, b, b - 1, &mut self.pieces, &mut self.rng);
            }
        }
    }

    /// Takes back what `has` contributed to availability.
    fn uncount(&mut self, has: &Has) {
        match has {
            Has::All => self.seeds -= 1,
            Has::Pieces(bits) => {
                for i in bits.iter_ones() {
                    self.dec_avail(i);
                }
            }
        }
    }

    /// Replaces what `peer` has (creating the peer if new) and recounts availability.
    fn set_has(&mut self, peer: PeerKey, new: Has) {
        let old = self
            .peers
            .get_mut(&peer)
            .map(|p| core::mem::replace(&mut p.has, Has::All));
        if let Some(old) = &old {
            self.uncount(old);
        }
        let wanted = match &new {
            Has::All => {
                self.seeds += 1;
                0
            }
            Has::Pieces(bits) => {
                let mut wanted = 0;
                for i in bits.iter_ones() {
                    self.inc_avail(i);
                    wanted += u32::from(self.wants(i));
                }
                wanted
            }
        };
        let p = self.peers.entry(peer).or_insert_with(|| Peer {
            has: Has::All,
            wanted: 0,
            requests: Vec::new(),
            strikes: 0,
        });
        p.has = new;
        p.wanted = wanted;
    }

    /// BEP 3 `bitfield`: what `peer` has, merged with what it announced before (pieces are
    /// never lost: aria2 sends a bitfield instead of a burst of haves, at any time). Returns
    /// whether the peer has a piece we want. A full set makes the peer a seed (O(1)
    /// availability).
    pub fn peer_bitfield(&mut self, peer: PeerKey, bits: &Bitfield) -> Result<bool, PickerError> {
        if bits.len() != self.geo.piece_count() {
            return Err(PickerError::BitfieldLength {
                got: bits.len(),
                expected: self.geo.piece_count(),
            });
        }
        let mut merged = bits.clone();
        match self.peers.get(&peer).map(|p| &p.has) {
            // A seed stays one: recounting it would change nothing.
            Some(Has::All) => return Ok(self.is_interesting(peer)),
            Some(Has::Pieces(old)) => merged.union_with(old),
            None => {}
        }
        let has = if merged.all() {
            Has::All
        } else {
            Has::Pieces(merged)
        };
        // The old set is uncounted, then the merged one counted: availability moves draw from
        // the picker's RNG, so counting only the new bits would change every later tie-break
        // (and the simulator's traces) for the rare peer that sends a late bitfield.
        self.set_has(peer, has);
        Ok(self.is_interesting(peer))
    }

    /// BEP 3 `have`: `peer` now has `piece`. Idempotent (peers do repeat `have`s): says whether
    /// the piece is new for the peer, and wanted. Out-of-range indices are an error (drop the
    /// peer).
    pub fn peer_have(&mut self, peer: PeerKey, piece: u32) -> Result<NewHave, PickerError> {
        self.check_piece(piece)?;
        let wants = self.wants(piece);
        let count = self.geo.piece_count();
        // One search (this runs for every `have`); a peer not seen yet starts with nothing,
        // as `peer_have_none` would set (an empty bitfield counts towards nothing).
        let p = self.peers.entry(peer).or_insert_with(|| Peer {
            has: Has::Pieces(Bitfield::new(count)),
            wanted: 0,
            requests: Vec::new(),
            strikes: 0,
        });
        let Has::Pieces(bits) = &mut p.has else {
            return Ok(NewHave::Known);
        };
        if !bits.set(piece) {
            return Ok(NewHave::Known);
        }
        p.wanted += u32::from(wants);
        let full = bits.all();
        self.inc_avail(piece);
        if full {
            // Once per peer: move it from per-piece counts to the seed counter, so its
            // departure and every later availability question are O(1).
            self.set_has(peer, Has::All);
        }
        Ok(if wants {
            NewHave::Wanted
        } else {
            NewHave::Unwanted
        })
    }

    /// How many pieces `peer` announced (all of them for a seed; 0 for an unknown peer).
    pub fn peer_piece_count(&self, peer: PeerKey) -> u32 {
        match self.peers.get(&peer).map(|p| &p.has) {
            Some(Has::All) => self.geo.piece_count(),
            Some(Has::Pieces(bits)) => bits.count_ones(),
            None => 0,
        }
    }

    /// BEP 6 `have all`: `peer` is a seed. O(log P) (replacing a bitfield costs its set bits).
    /// Returns whether we want anything (a seed is interesting unless we are finished).
    pub fn peer_have_all(&mut self, peer: PeerKey) -> bool {
        self.set_has(peer, Has::All);
        self.wanted > 0
    }

    /// BEP 6 `have none` (or a peer that sends no bitfield): `peer` has nothing yet.
    pub fn peer_have_none(&mut self, peer: PeerKey) {
        self.set_has(peer, Has::Pieces(Bitfield::new(self.geo.piece_count())));
    }

    /// `peer` disconnected: releases all its outstanding requests at once (their blocks become
    /// free for other peers) and forgets its availability and strikes. Returns how many
    /// requests were released.
    pub fn peer_gone(&mut self, peer: PeerKey) -> usize {
        let released = self.peer_choked(peer);
        if let Some(p) = self.peers.remove(&peer) {
            self.uncount(&p.has);
        }
        released
    }

    // ----- priorities ----------------------------------------------------------------------

    fn level_insert(&mut self, piece: u32) {
        if self.state_at(piece) != Some(PieceState::Missing) {
            return;
        }
        let level = self.prio_at(piece).unwrap_or(0);
        let b = self.avail_at(piece).unwrap_or(0) as usize;
        if let Some(l) = self.levels.get_mut(usize::from(level).wrapping_sub(1)) {
            l.insert(piece, b, &mut self.pieces, &mut self.rng);
        }
    }

    fn level_remove(&mut self, piece: u32) {
        if self.pos_at(piece).is_none_or(|p| p == NONE) {
            return;
        }
        let level = self.prio_at(piece).unwrap_or(0);
        let b = self.avail_at(piece).unwrap_or(0) as usize;
        if let Some(l) = self.levels.get_mut(usize::from(level).wrapping_sub(1)) {
            l.remove(piece, b, &mut self.pieces);
        }
    }

    /// Adjusts wanted counts after `piece` started (`up`) or stopped being wanted, noting the
    /// peers whose interest flipped.
    fn wanted_changed(&mut self, piece: u32, up: bool) {
        self.interest_flips.clear();
        self.changed_holders.clear();
        let before = self.wanted;
        if up {
            self.wanted += 1;
        } else {
            self.wanted -= 1;
        }
        // A seed is interesting while we want anything at all.
        let seeds_flip = (before == 0) != (self.wanted == 0);
        // O(P): each peer's interest count. Only on verification and priority changes.
        for (key, p) in self.peers.iter_mut() {
            match &p.has {
                Has::Pieces(bits) => {
                    if bits.get(piece) {
                        self.changed_holders.push(*key);
                        let was = p.wanted;
                        if up {
                            p.wanted += 1;
                        } else {
                            p.wanted -= 1;
                        }
                        if (was == 0) != (p.wanted == 0) {
                            self.interest_flips.push(*key);
                        }
                    }
                }
                Has::All => {
                    self.changed_holders.push(*key);
                    if seeds_flip {
                        self.interest_flips.push(*key);
                    }
                }
            }
        }
    }

    /// The peers whose [`Picker::is_interesting`] changed in the last call that made a piece
    /// wanted or unwanted ([`Picker::piece_verified`], [`Picker::set_piece_priority`]...), in
    /// key order; empty after a call that changed nobody's. Lets the caller update interest
    /// after a verified piece without asking every peer.
    pub fn interest_flips(&self) -> &[PeerKey] {
        &self.interest_flips
    }

    /// The peers known to have the piece that the last such call was about, in key order
    /// (seeds included); empty after a call that made no piece (un)wanted. A verified piece's
    /// `have` goes to everyone else, and the picker's pass already read every bitfield.
    pub fn holders_of_changed(&self) -> &[PeerKey] {
        &self.changed_holders
    }

    /// Sets the priority of `piece`: 0 = never download (skipped file), 1..=7, higher first.
    /// Blocks already requested stay requested; received blocks are kept.
    pub fn set_piece_priority(&mut self, piece: u32, priority: u8) -> Result<(), PickerError> {
        self.check_piece(piece)?;
        if priority > MAX_PRIORITY {
            return Err(PickerError::BadPriority(priority));
        }
        if self.prio_at(piece) == Some(priority) {
            return Ok(());
        }
        let was = self.wants(piece);
        self.level_remove(piece);
        if let Some(p) = self.pieces.get_mut(piece as usize) {
            p.prio = priority;
        }
        self.level_insert(piece);
        let now = self.wants(piece);
        if was != now {
            self.wanted_changed(piece, now);
        }
        Ok(())
    }

    /// Sets piece priorities from file priorities: `files` are `(length, priority)` in torrent
    /// order (BEP 3: files are concatenated). A piece shared by several files gets the highest
    /// of their priorities, so a wanted file is never cut short by a skipped neighbour.
    pub fn set_file_priorities(&mut self, files: &[(u64, u8)]) -> Result<(), PickerError> {
        let mut total: u64 = 0;
        for &(len, prio) in files {
            if prio > MAX_PRIORITY {
                return Err(PickerError::BadPriority(prio));
            }
            total = total.saturating_add(len);
        }
        if total != self.geo.total_length() {
            return Err(PickerError::FileLengthMismatch {
                got: total,
                expected: self.geo.total_length(),
            });
        }
        let mut per_piece = vec![0u8; self.geo.piece_count() as usize];
        let mut offset = 0u64;
        for &(len, prio) in files {
            for piece in self.geo.pieces_for_bytes(offset, len) {
                if let Some(p) = per_piece.get_mut(piece as usize) {
                    *p = (*p).max(prio);
                }
            }
            offset += len;
        }
        for (piece, prio) in (0..).zip(per_piece) {
            self.set_piece_priority(piece, prio)?;
        }
        Ok(())
    }

    // ----- download slots ------------------------------------------------------------------

    fn open_fix(&mut self, slot: u32) {
        let Some(d) = self.downloads.get_mut(slot as usize) else {
            return;
        };
        let downloading = self.pieces.get(d.piece as usize).map(|p| p.state)
            == Some(PieceState::Downloading(slot));
        let should = downloading && d.free > 0;
        if should && d.open_pos == NONE {
            d.open_pos = self.open.len() as u32;
            self.open.push(slot);
        } else if !should && d.open_pos != NONE {
            let i = d.open_pos as usize;
            d.open_pos = NONE;
            self.open.swap_remove(i);
            if let Some(&moved) = self.open.get(i) {
                if let Some(m) = self.downloads.get_mut(moved as usize) {
                    m.open_pos = i as u32;
                }
            }
        }
    }

    /// A slot for `piece` with all blocks free; the piece becomes `Downloading`.
    fn alloc_download(&mut self, piece: u32) -> u32 {
        let nblocks = self.geo.block_count(piece).unwrap_or(0);
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.downloads.push(Download {
                    piece: NONE,
                    blocks: Vec::new(),
                    free: 0,
                    requested: 0,
                    received: 0,
                    open_pos: NONE,
                    owner: None,
                });
                self.slot_pieces.push(NONE);
                (self.downloads.len() - 1) as u32
            }
        };
        if let Some(p) = self.slot_pieces.get_mut(slot as usize) {
            *p = piece;
        }
        if let Some(d) = self.downloads.get_mut(slot as usize) {
            d.piece = piece;
            d.blocks.clear();
            d.blocks.resize(nblocks as usize, Block::Free);
            d.free = nblocks;
            d.requested = 0;
            d.received = 0;
            d.owner = None;
        }
        if let Some(s) = self.pieces.get_mut(piece as usize).map(|p| &mut p.state) {
            *s = PieceState::Downloading(slot);
        }
        slot
    }

    /// Returns a slot to the free list; the caller sets the piece's new state.
    fn free_download(&mut self, slot: u32) {
        if let Some(d) = self.downloads.get_mut(slot as usize) {
            // Leave `open` first, while the slot still says which piece it is.
            d.free = 0;
        }
        self.open_fix(slot);
        if let Some(p) = self.slot_pieces.get_mut(slot as usize) {
            *p = NONE;
        }
        if let Some(d) = self.downloads.get_mut(slot as usize) {
            d.piece = NONE;
            d.blocks.clear();
            d.requested = 0;
            d.received = 0;
            d.owner = None;
            self.free_slots.push(slot);
        }
    }

    /// Removes `r` from `peer`'s request list.
    fn forget_request(peers: &mut BTreeMap<PeerKey, Peer>, peer: PeerKey, r: BlockRef) {
        if let Some(p) = peers.get_mut(&peer) {
            if let Some(i) = p.requests.iter().position(|x| *x == r) {
                p.requests.swap_remove(i);
            }
        }
    }

    /// Drops a slot together with every request on it (resume, or a piece marked present).
    fn drop_download(&mut self, slot: u32) {
        if let Some(d) = self.downloads.get(slot as usize) {
            for (b, block) in (0..).zip(&d.blocks) {
                if let Block::Requested(set) = block {
                    for k in set.iter() {
                        let r = BlockRef {
                            piece: d.piece,
                            block: b,
                        };
                        Self::forget_request(&mut self.peers, k, r);
                    }
                }
            }
        }
        self.free_download(slot);
    }

    /// Adds `peer` as a requester of block `b` of `slot` and reports the request in `out`.
    fn assign(&mut self, slot: u32, b: u32, peer: PeerKey, out: &mut Vec<BlockRequest>) -> bool {
        let Some(d) = self.downloads.get_mut(slot as usize) else {
            return false;
        };
        let piece = d.piece;
        let Some(req) = self.geo.block(piece, b) else {
            return false;
        };
        let Some(block) = d.blocks.get_mut(b as usize) else {
            return false;
        };
        match block {
            Block::Free => {
                *block = Block::Requested(PeerSet::one(peer));
                d.free -= 1;
                d.requested += 1;
            }
            Block::Requested(set) => {
                if set.contains(peer) || !set.push(peer) {
                    return false;
                }
            }
            Block::Received(_) => return false,
        }
        d.owner = Some(peer);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.requests.push(BlockRef { piece, block: b });
        }
        out.push(req);
        true
    }

    /// Removes `peer` as a requester of block `b` of `slot` (its request list is the caller's
    /// job). A block left without requesters is free again; a piece left with nothing
    /// requested or received goes back to the availability order.
    fn unrequest(&mut self, slot: u32, b: u32, peer: PeerKey) {
        let Some(d) = self.downloads.get_mut(slot as usize) else {
            return;
        };
        let Some(block) = d.blocks.get_mut(b as usize) else {
            return;
        };
        let Block::Requested(set) = block else {
            return;
        };
        set.remove(peer);
        if set.is_empty() {
            *block = Block::Free;
            d.requested -= 1;
            d.free += 1;
        }
        if d.requested == 0 && d.received == 0 {
            let piece = d.piece;
            self.free_download(slot);
            if let Some(s) = self.pieces.get_mut(piece as usize).map(|p| &mut p.state) {
                *s = PieceState::Missing;
            }
            self.level_insert(piece);
        } else {
            self.open_fix(slot);
        }
    }

    // ----- picking -------------------------------------------------------------------------

    /// Chooses up to `max_blocks` blocks to request from `peer`, appends them to `out` (which
    /// is not cleared) and records them as requested by `peer`. Returns how many were added.
    /// Never picks a piece the peer lacks, a priority-0 piece, or beyond the peer's request
    /// limit. See the module documentation for the order.
    pub fn pick(&mut self, peer: PeerKey, max_blocks: usize, out: &mut Vec<BlockRequest>) -> usize {
        self.pick_with(peer, max_blocks, out, Select::Fast)
    }

    /// Reference for [`Picker::pick`]: the same result (and the same state afterwards), but
    /// untouched pieces are chosen by scanning all n pieces. For tests and benchmarks.
    pub fn pick_naive(
        &mut self,
        peer: PeerKey,
        max_blocks: usize,
        out: &mut Vec<BlockRequest>,
    ) -> usize {
        self.pick_with(peer, max_blocks, out, Select::Naive)
    }

    fn pick_with(
        &mut self,
        peer: PeerKey,
        max_blocks: usize,
        out: &mut Vec<BlockRequest>,
        select: Select,
    ) -> usize {
        let Some(p) = self.peers.get(&peer) else {
            return 0;
        };
        let room = (self.config.max_requests_per_peer as usize).saturating_sub(p.requests.len());
        let want = max_blocks.min(room);
        if want == 0 {
            return 0;
        }
        let mut got = 0;

        // Partial pieces this peer can serve, best first: priority, then the pieces it was
        // last given blocks of, then fewest free blocks, then index (deterministic).
        let mut partials = core::mem::take(&mut self.scratch_partials);
        partials.clear();
        for &slot in &self.open {
            let Some(d) = self.downloads.get(slot as usize) else {
                continue;
            };
            let prio = self.prio_at(d.piece).unwrap_or(0);
            if prio == 0 || !p.has.has(d.piece) {
                continue;
            }
            let not_own = u64::from(d.owner != Some(peer));
            let key = (u64::from(MAX_PRIORITY - prio) << 61)
                | (not_own << 60)
                | (u64::from(d.free) << 32)
                | u64::from(d.piece);
            partials.push((key, slot));
        }
        partials.sort_unstable();

        let mut next_partial = 0;
        for level in (1..=MAX_PRIORITY).rev() {
            while got < want {
                let Some(&(key, slot)) = partials.get(next_partial) else {
                    break;
                };
                if key >> 61 != u64::from(MAX_PRIORITY - level) {
                    break;
                }
                next_partial += 1;
                got += self.take_free_blocks(slot, peer, want - got, out);
            }
            if got < want {
                got += self.pick_fresh(level, peer, want - got, out, select);
            }
            if got == want {
                break;
            }
        }
        partials.clear();
        self.scratch_partials = partials;

        if got < want && self.in_endgame() {
            got += self.pick_endgame(peer, want - got, out);
        }
        got
    }

    /// Requests up to `need` free blocks of `slot` from `peer` (one peer lookup per piece).
    fn take_free_blocks(
        &mut self,
        slot: u32,
        peer: PeerKey,
        need: usize,
        out: &mut Vec<BlockRequest>,
    ) -> usize {
        let mut got = 0;
        let geo = self.geo;
        if let (Some(d), Some(p)) = (
            self.downloads.get_mut(slot as usize),
            self.peers.get_mut(&peer),
        ) {
            for (b, blk) in (0u32..).zip(d.blocks.iter_mut()) {
                if got == need {
                    break;
                }
                if *blk != Block::Free {
                    continue;
                }
                let Some(req) = geo.block(d.piece, b) else {
                    break;
                };
                *blk = Block::Requested(PeerSet::one(peer));
                d.free -= 1;
                d.requested += 1;
                p.requests.push(BlockRef {
                    piece: d.piece,
                    block: b,
                });
                out.push(req);
                got += 1;
            }
            if got > 0 {
                d.owner = Some(peer);
            }
        }
        self.open_fix(slot);
        got
    }

    /// Starts untouched pieces of priority `level` for `peer`, up to `need` blocks.
    fn pick_fresh(
        &mut self,
        level: u8,
        peer: PeerKey,
        need: usize,
        out: &mut Vec<BlockRequest>,
        select: Select,
    ) -> usize {
        let li = usize::from(level) - 1;
        let len = self.levels.get(li).map_or(0, Level::len);
        if len == 0 {
            return 0;
        }
        // Initial random mode: start the walk at a uniformly random position of the order.
        let random = self.have.count_ones() < self.config.initial_random_pieces;
        let start = match (random, self.levels.get(li)) {
            (true, Some(l)) => l.locate(self.rng.index(len)),
            _ => (0, 0),
        };
        let bpp = self.geo.blocks_per_piece().max(1) as usize;
        let mut got = 0;
        let mut cand = core::mem::take(&mut self.scratch_fresh);
        while got < need {
            cand.clear();
            let (Some(l), Some(p)) = (self.levels.get(li), self.peers.get(&peer)) else {
                break;
            };
            if l.len() == 0 {
                break;
            }
            let k = (need - got).div_ceil(bpp);
            let ctx = SelectCtx {
                level: l,
                pieces: &self.pieces,
                prio_level: level,
                has: &p.has,
                start,
                k,
            };
            match select {
                Select::Fast => ctx.fast(&mut cand),
                Select::Naive => ctx.naive(&mut cand),
            }
            if cand.is_empty() {
                break;
            }
            for &(_, piece) in &cand {
                if got == need {
                    break;
                }
                got += self.start_download(piece, peer, need - got, out);
            }
        }
        cand.clear();
        self.scratch_fresh = cand;
        got
    }

    /// Takes untouched `piece` out of the order and requests up to `need` of its blocks.
    fn start_download(
        &mut self,
        piece: u32,
        peer: PeerKey,
        need: usize,
        out: &mut Vec<BlockRequest>,
    ) -> usize {
        self.level_remove(piece);
        let slot = self.alloc_download(piece);
        self.take_free_blocks(slot, peer, need, out)
    }

    /// Endgame: requests already-requested blocks again, least-requested first.
    fn pick_endgame(&mut self, peer: PeerKey, need: usize, out: &mut Vec<BlockRequest>) -> usize {
        // The pieces in flight that this peer can serve, in slot order, found once: assigning
        // a block changes neither a piece's state nor who has it. (Each endgame pick used to
        // ask the peer map once per slot and round; near the end of a download every pick,
        // even one that finds nothing, is an endgame pick.)
        let mut slots = core::mem::take(&mut self.scratch_endgame);
        slots.clear();
        if let Some(p) = self.peers.get(&peer) {
            for (slot, &piece) in (0u32..).zip(&self.slot_pieces) {
                if self.state_at(piece) == Some(PieceState::Downloading(slot))
                    && self.prio_at(piece).is_some_and(|p| p > 0)
                    && p.has.has(piece)
                {
                    slots.push(slot);
                }
            }
        }
        let mut got = 0;
        'rounds: for round in 1..usize::from(self.config.endgame_max_requesters) {
            for &slot in &slots {
                let blocks = self
                    .downloads
                    .get(slot as usize)
                    .map_or(0, |d| d.blocks.len());
                for b in 0..blocks as u32 {
                    if got == need {
                        break 'rounds;
                    }
                    let eligible = self
                        .downloads
                        .get(slot as usize)
                        .and_then(|d| d.blocks.get(b as usize))
                        .is_some_and(|blk| {
                            matches!(blk, Block::Requested(s) if s.len() == round && !s.contains(peer))
                        });
                    if eligible && self.assign(slot, b, peer, out) {
                        got += 1;
                    }
                }
            }
        }
        slots.clear();
        self.scratch_endgame = slots;
        got
    }

    // ----- replies -------------------------------------------------------------------------

    /// A `piece` message from `peer` carried `block`. See [`BlockOutcome`]; never panics on
    /// peer input.
    pub fn block_received(&mut self, peer: PeerKey, block: BlockRequest) -> BlockOutcome {
        let Some(b) = self.geo.block_index(&block) else {
            return BlockOutcome::Invalid;
        };
        let piece = block.index;
        let slot = match self.state_at(piece) {
            Some(PieceState::Downloading(slot)) => slot,
            Some(PieceState::Missing) => return BlockOutcome::Unrequested,
            _ => return BlockOutcome::Duplicate,
        };
        let Some(d) = self.downloads.get_mut(slot as usize) else {
            return BlockOutcome::Invalid;
        };
        let Some(blk) = d.blocks.get_mut(b as usize) else {
            return BlockOutcome::Invalid;
        };
        let mut cancel = match *blk {
            Block::Received(_) => return BlockOutcome::Duplicate,
            Block::Requested(set) if set.contains(peer) => set,
            _ => return BlockOutcome::Unrequested,
        };
        cancel.remove(peer);
        *blk = Block::Received(peer);
        d.requested -= 1;
        d.received += 1;
        let piece_complete = d.received as usize == d.blocks.len();
        let r = BlockRef { piece, block: b };
        Self::forget_request(&mut self.peers, peer, r);
        for k in cancel.iter() {
            Self::forget_request(&mut self.peers, k, r);
        }
        if piece_complete {
            if let Some(s) = self.pieces.get_mut(piece as usize).map(|p| &mut p.state) {
                *s = PieceState::Verifying(slot);
            }
        }
        BlockOutcome::Accepted {
            cancel,
            piece_complete,
        }
    }

    fn release(&mut self, peer: PeerKey, block: BlockRequest) -> bool {
        let Some(b) = self.geo.block_index(&block) else {
            return false;
        };
        let Some(PieceState::Downloading(slot)) = self.state_at(block.index) else {
            return false;
        };
        let requested = self
            .downloads
            .get(slot as usize)
            .and_then(|d| d.blocks.get(b as usize))
            .is_some_and(|blk| matches!(blk, Block::Requested(s) if s.contains(peer)));
        if !requested {
            return false;
        }
        let r = BlockRef {
            piece: block.index,
            block: b,
        };
        Self::forget_request(&mut self.peers, peer, r);
        self.unrequest(slot, b, peer);
        true
    }

    /// `peer` did not deliver `block` in time: the block becomes free for other peers (the
    /// same peer may be given it again by a later pick). Returns whether it was outstanding.
    pub fn request_timed_out(&mut self, peer: PeerKey, block: BlockRequest) -> bool {
        self.release(peer, block)
    }

    /// BEP 6 `reject request` from `peer`: releases `block` like a timeout.
    pub fn request_rejected(&mut self, peer: PeerKey, block: BlockRequest) -> bool {
        self.release(peer, block)
    }

    /// `peer` choked us or we gave up on it: releases all its outstanding requests at once.
    /// Returns how many. BEP 3: a choke discards pending requests. With the fast extension
    /// (BEP 6) it does not: the peer rejects them one by one ([`Picker::request_rejected`]).
    pub fn peer_choked(&mut self, peer: PeerKey) -> usize {
        let Some(p) = self.peers.get_mut(&peer) else {
            return 0;
        };
        let mut reqs = core::mem::take(&mut p.requests);
        let n = reqs.len();
        for r in &reqs {
            if let Some(PieceState::Downloading(slot)) = self.state_at(r.piece) {
                self.unrequest(slot, r.block, peer);
            }
        }
        reqs.clear();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.requests = reqs;
        }
        n
    }

    // ----- verification --------------------------------------------------------------------

    fn become_have(&mut self, piece: u32) {
        let was = self.wants(piece);
        if let Some(s) = self.pieces.get_mut(piece as usize).map(|p| &mut p.state) {
            *s = PieceState::Have;
        }
        self.have.set(piece);
        if was {
            self.wanted_changed(piece, false);
        } else {
            // Not wanted (a skipped file's piece shared with a wanted one): nobody's interest
            // changes, but the caller still learns who has it.
            self.interest_flips.clear();
            self.changed_holders.clear();
            for (key, p) in &self.peers {
                if p.has.has(piece) {
                    self.changed_holders.push(*key);
                }
            }
        }
    }

    /// The hash check of a piece that was reported complete: `ok` makes it ours; a failure
    /// resets all its blocks for download again and strikes the peers that sent them.
    pub fn piece_verified(&mut self, piece: u32, ok: bool) -> Result<VerifyOutcome, PickerError> {
        self.check_piece(piece)?;
        let Some(PieceState::Verifying(slot)) = self.state_at(piece) else {
            return Err(PickerError::NotVerifying(piece));
        };
        if ok {
            self.free_download(slot);
            self.become_have(piece);
            return Ok(VerifyOutcome::Passed);
        }
        let mut contributors: Vec<PeerKey> = self
            .downloads
            .get(slot as usize)
            .map(|d| {
                d.blocks
                    .iter()
                    .filter_map(|b| match b {
                        Block::Received(k) => Some(*k),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        contributors.sort_unstable();
        contributors.dedup();
        let strikes = if contributors.len() == 1 {
            self.config.sole_source_strikes
        } else {
            1
        };
        let mut ban = Vec::new();
        for k in &contributors {
            if let Some(p) = self.peers.get_mut(k) {
                p.strikes = p.strikes.saturating_add(strikes);
                if p.strikes >= self.config.ban_strikes {
                    ban.push(*k);
                }
            }
        }
        self.free_download(slot);
        if let Some(s) = self.pieces.get_mut(piece as usize).map(|p| &mut p.state) {
            *s = PieceState::Missing;
        }
        self.level_insert(piece);
        Ok(VerifyOutcome::Failed { contributors, ban })
    }

    /// We already have `piece` (resume data, or checked on disk): mark it verified, dropping
    /// any requests for it (the caller may send `cancel` for those it still tracks).
    pub fn mark_have(&mut self, piece: u32) -> Result<(), PickerError> {
        self.check_piece(piece)?;
        match self.state_at(piece) {
            Some(PieceState::Missing) => self.level_remove(piece),
            Some(PieceState::Downloading(slot) | PieceState::Verifying(slot)) => {
                self.drop_download(slot)
            }
            Some(PieceState::Have) | None => return Ok(()),
        }
        self.become_have(piece);
        Ok(())
    }

    // ----- invariants ----------------------------------------------------------------------

    /// Checks every invariant listed in the module documentation; O(everything). For tests,
    /// fuzzing and the simulator.
    pub fn debug_check_invariants(&self) -> Result<(), PickerError> {
        self.check_all().map_err(PickerError::InvariantBroken)
    }
}
