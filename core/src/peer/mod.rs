//! One peer connection as a pure state machine: handshake, choke/interest flags, the
//! peer's pieces, both request queues, the request pipeline, keep-alive and timeouts.
//!
//! [`PeerConn`] validates everything the peer says against the protocol (BEP 3, 5, 6, 10) and
//! its own per-connection state, and turns it into [`PeerEvent`]s. It makes no torrent-wide
//! decision: which blocks to request (the picker), whom to choke (the choker), what to read or
//! write on disk — those are the Session's, which calls the `send_*` methods.
//!
//! # Driving it
//!
//! ```text
//! // bytes from the socket (any chunking, down to 1 byte):
//! while let Some(ev) = conn.handle_bytes(now, &mut data)? { session.apply(id, ev) }
//! // at conn.next_deadline():
//! if let Some(ev) = conn.handle_timeout(now)? { session.apply(id, ev) }
//! // whenever conn.wants_transmit(): write conn.pending_transmit(), then advance_transmit(n)
//! //                                 (or poll_transmit(&mut buf) to copy everything out,
//! //                                 or poll_transmit_parts(..) to take blocks uncopied)
//! ```
//!
//! Every method that can close returns `Result<_, CloseReason>`; after the first `Err` the
//! connection is closed for good and every call returns the same reason. Nothing panics on
//! any input. Each received message yields exactly one event (a loop that skipped some
//! messages internally could not also return borrowed block data, with today's borrow checker).
//!
//! Handshake: [`PeerConn::new_outgoing`] sends ours at once and checks the info hash in
//! theirs. [`PeerConn::new_incoming`] reports [`PeerEvent::InfoHash`] after the peer's first
//! 48 bytes; the Session answers with [`PeerConn::accept`] (we then send our handshake) or
//! [`PeerConn::reject`]. Then [`PeerEvent::HandshakeDone`]; our extension handshake (BEP 10)
//! goes out by itself if both ends support it; the Session sends our pieces with
//! [`PeerConn::send_bitfield`] as the first message (libtorrent also sends its extension
//! handshake before its bitfield).
//!
//! # Bounds (each one ends in a clean close with a reason, never in growth)
//!
//! | what                                   | bound (default)                  | over it                      |
//! |----------------------------------------|----------------------------------|------------------------------|
//! | frame from the peer                    | piece 16 KiB + 9, bitfield exact, extended `max_extension_payload` + 2 (64 KiB) | [`CloseReason::Wire`] |
//! | send buffer                            | `max_send_buffer` (4 MiB)        | [`CloseReason::SendBufferFull`] |
//! | peer's queued requests                 | `max_peer_requests` (250)        | reject (fast) / [`CloseReason::RequestQueueFull`] |
//! | peer's requests while choked           | 2 × `max_peer_requests`          | [`CloseReason::RequestsWhileChoked`] |
//! | our outstanding requests               | min(`max_outstanding` 250, peer's `reqq`) | `send_request` returns `false` |
//! | abandoned requests remembered          | `max_outstanding` (250)          | oldest forgotten (its late block reads as unrequested) |
//! | timed-out requests reported at once    | ≤ outstanding                    | —                            |
//! | extension handshake                    | `max_extension_handshake` (16 KiB), 64 names, `v` 128 B | [`CloseReason::InvalidExtensionHandshake`] |
//! | allowed-fast pieces from the peer      | `max_peer_allowed_fast` (64)     | [`CloseReason::TooManyAllowedFast`] |
//! | suggestions kept                       | `max_suggested` (64)             | oldest forgotten (BEP 6 lets a super-seeder suggest again and again; closing would punish a legal peer) |
//! | allowed-fast set we give               | `allowed_fast_count` (10)        | —                            |
//!
//! # Invariants
//!
//! - `closed.is_some()` ⇒ every call returns that reason; no state changes after.
//! - Frames are decoded only in `Phase::Connected`, i.e. once the torrent (geometry) is known.
//! - Once connected, the peer's bitfield has exactly `piece_count` bits.
//! - A request from the peer is queued only if valid for the geometry; while we choke it, only
//!   if its piece is in the allowed-fast set we gave. Every queued request is answered exactly
//!   once: `send_block`, `reject_request`, a choke (reject with fast, silent drop without) or the
//!   peer's cancel (reject with fast, BEP 6).
//! - An outstanding request of ours is in exactly one place: outstanding (until a block, a reject,
//!   our cancel, a timeout or a non-fast choke) or abandoned (bounded) afterwards.
//! - The send buffer never exceeds `max_send_buffer`.
//!
//! # Decisions where the BEPs leave room
//!
//! - The peer's availability message may follow its extension handshake, `port`, keep-alives and
//!   unknown messages (libtorrent sends its extension handshake first); anything else closes the
//!   window. A fast-extension peer that sends none of bitfield / have all / have none is not
//!   closed (BEP 6 says it MUST send one; libtorrent and Transmission tolerate it too).
//! - A cancel from the peer removes the request even if its disk read is under way, and (fast
//!   extension) answers it with a reject at once: exactly one answer, and no 16 KiB the peer no
//!   longer wants.
//! - A request times out after `timeout` without progress (since it was sent or since the last
//!   block, whichever is later); `timeout` = 4 × smoothed latency within 20..=60 s. Timed-out
//!   requests are cancelled on the wire and remembered, so a late block is still usable.
//! - Upload is metered when a block enters the send buffer (bounded), not when the socket takes
//!   it.

mod client;
mod config;
mod event;
pub mod extension;
mod fast;
mod pipeline;
mod sendbuf;

#[cfg(test)]
mod tests;

use core::net::{IpAddr, Ipv4Addr};
use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

pub use client::client_name;
pub use config::{BLOCK_LEN, HAVE_BATCH_MAX, PeerConfig, TorrentInfo};
pub use event::{CloseReason, PeerEvent, RefuseReason};
pub use extension::{ExtensionError, ExtensionHandshake};
pub use fast::allowed_fast_set;

use crate::bitfield::{Bitfield, BitfieldError};
use crate::choker::{Mode, PeerStats};
use crate::rate::RateMeter;
use crate::time::Instant;
use crate::wire::{
    BlockRequest, DecoderLimits, FrameDecoder, Handshake, HandshakeDecoder, HandshakeEvent,
    Message, Reserved, validate_block,
};
use extension::RemoteExtensions;
use pipeline::Pipeline;
use sendbuf::SendBuffer;

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the peer's handshake.
    Handshaking,
    /// Incoming: the peer's info hash was reported; waiting for `accept` or `reject`.
    AwaitingAccept,
    /// Both handshakes done: frames flow.
    Connected,
}

/// A request from the peer, queued until we serve or refuse it.
#[derive(Clone, Copy, Debug)]
struct Queued {
    block: BlockRequest,
    /// Handed to the Session by `poll_upload` (a disk read is under way).
    handed_out: bool,
}

/// What [`PeerConn::send_have`] did with a have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaveSent {
    /// In the send buffer (with any held before it): bytes to transmit.
    Queued,
    /// Held for a batch ([`PeerConfig::have_batch`]); `first`: it started the batch, so
    /// [`PeerConn::next_deadline`] came earlier (the batch's flush).
    Held {
        /// It started the batch.
        first: bool,
    },
}

/// One peer connection, sans I/O. See the module docs for the driving loop and the bounds.
///
/// `repr(C)` (here and on `State`) keeps the declared order, hot fields first: a large swarm
/// simulation is bound by cache misses, and with the compiler's order a `have` received or
/// sent touched eight lines spread over the 1.5 KiB of a connection.
#[derive(Debug)]
#[repr(C)]
pub struct PeerConn {
    /// Kept apart from `st` so that it can be set while a message borrows the decoder or an
    /// event borrows `st`.
    /// Boxed: a reason is 48 bytes, and this sits in the line every message reads.
    closed: Option<Box<CloseReason>>,
    decoder: FrameDecoder,
    st: State,
    handshake: HandshakeDecoder,
}

#[derive(Debug)]
#[repr(C)]
struct State {
    // Read or written by nearly every message in or out.
    phase: Phase,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// The peer may still send its bitfield / have all / have none.
    peer_availability_open: bool,
    /// We may still send ours.
    our_availability_open: bool,
    /// `cfg.have_batch` is not zero, kept here where every `have` sent reads it: the config
    /// sits lines away (cachegrind, 300-node flash crowd: 9 % fewer last-level read misses).
    batch_haves: bool,
    negotiated: Reserved,
    last_received: Instant,
    last_sent: Instant,
    /// When the oldest held have was given (`None`: none held); see `held_haves`.
    held_since: Option<Instant>,
    bytes_received: u64,
    bytes_sent: u64,
    torrent: TorrentInfo,
    send: SendBuffer,
    /// Next to `send`: every transmit asks whether requests wait for the room it freed
    /// (`has_unserved_requests`), and in a swarm most transmits are haves to peers that
    /// asked for nothing; apart, that question was a cache miss per `have` sent.
    peer_requests: VecDeque<Queued>,
    /// Haves waiting to go out together (`PeerConfig::have_batch`); at most
    /// `HAVE_BATCH_MAX`, which flushes them.
    held_haves: Vec<u32>,
    pipeline: Pipeline,
    // The config's timeouts are read for every deadline and the meter's scalars for every
    // request sent; their cold tails (the rest of the config, the ring) follow them.
    cfg: PeerConfig,
    // What every choke call reads of every peer (`choker_stats`), next to the download
    // meter's scalars instead of spread over the tail: a large swarm has an interim choke
    // call every few hundred milliseconds (cachegrind, 300 nodes: 2 % fewer misses).
    created_at: Instant,
    connected_at: Option<Instant>,
    unchoked_at: Option<Instant>,
    interested_at: Option<Instant>,
    download: RateMeter,

    // Read by requests served, blocks, choking and the handshake.
    handed_out_bytes: usize,
    outgoing: bool,
    upload: RateMeter,
    peer_ip: Option<IpAddr>,
    peer_id: Option<[u8; 20]>,
    peer_reserved: Reserved,
    client: Option<String>,
    requests_while_choked: usize,
    allowed_fast_given: Vec<u32>,
    /// Reused list for `Choked::released` and `RequestsTimedOut`.
    scratch: Vec<BlockRequest>,
    peer_allowed_fast: Vec<u32>,
    suggested: VecDeque<u32>,
    ext: RemoteExtensions,
    unknown_messages: u64,
}

fn set_closed(closed: &mut Option<Box<CloseReason>>, reason: CloseReason) -> CloseReason {
    *closed = Some(Box::new(reason.clone()));
    reason
}

fn misuse(what: &'static str) -> CloseReason {
    CloseReason::Misuse { what }
}

/// The IPv4 address BEP 6 computes the allowed-fast set from (IPv4-mapped IPv6 included).
fn ipv4_of(ip: Option<IpAddr>) -> Option<Ipv4Addr> {
    match ip? {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

impl PeerConn {
    fn with_state(st: State) -> Self {
        PeerConn {
            handshake: HandshakeDecoder::new(),
            decoder: FrameDecoder::new(DecoderLimits::DEFAULT),
            closed: None,
            st,
        }
    }

    /// A connection we opened to a peer for `torrent`; our handshake is queued at once.
    /// `peer_ip` feeds the allowed-fast set (BEP 6) and `yourip` (BEP 10).
    pub fn new_outgoing(
        config: PeerConfig,
        torrent: TorrentInfo,
        peer_ip: Option<IpAddr>,
        now: Instant,
    ) -> Self {
        let mut conn = Self::with_state(State::new(config, torrent, true, peer_ip, now));
        if let Err(r) = conn.st.send_handshake(now) {
            conn.closed = Some(Box::new(r));
        }
        conn
    }

    /// A connection a peer opened to us; the torrent is unknown until the peer's info hash
    /// arrives ([`PeerEvent::InfoHash`]) and the Session calls [`PeerConn::accept`].
    pub fn new_incoming(config: PeerConfig, peer_ip: Option<IpAddr>, now: Instant) -> Self {
        let torrent = TorrentInfo::unknown([0; 20]);
        Self::with_state(State::new(config, torrent, false, peer_ip, now))
    }

    /// Incoming: serve `torrent` (whose info hash must be the one the peer asked for); our
    /// handshake is queued.
    pub fn accept(&mut self, now: Instant, torrent: TorrentInfo) -> Result<(), CloseReason> {
        self.guarded(|st| {
            if st.phase != Phase::AwaitingAccept {
                return Err(misuse(
                    "accept() called while no info hash awaits an answer",
                ));
            }
            if torrent.info_hash != st.torrent.info_hash {
                return Err(misuse(
                    "accept() given a torrent other than the one asked for",
                ));
            }
            st.torrent = torrent;
            st.phase = Phase::Handshaking;
            st.send_handshake(now)
        })
    }

    /// Incoming: we do not serve the torrent the peer asked for; the connection closes.
    pub fn reject(&mut self) -> CloseReason {
        if let Some(r) = &self.closed {
            return (**r).clone();
        }
        let reason = if self.st.phase == Phase::AwaitingAccept {
            CloseReason::UnknownTorrent {
                info_hash: self.st.torrent.info_hash,
            }
        } else {
            misuse("reject() called while no info hash awaits an answer")
        };
        set_closed(&mut self.closed, reason)
    }

    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut State) -> Result<T, CloseReason>,
    ) -> Result<T, CloseReason> {
        if let Some(r) = &self.closed {
            return Err((**r).clone());
        }
        f(&mut self.st).map_err(|r| set_closed(&mut self.closed, r))
    }

    /// Consumes bytes from the front of `input` and returns the next event, or `Ok(None)` once
    /// `input` is used up. Call it in a loop until `Ok(None)`; events borrow block data from
    /// `input` or the connection until dropped. Partial frames are kept (bounded) for the next
    /// call.
    ///
    /// Incoming connections: after [`PeerEvent::InfoHash`], call [`PeerConn::accept`] or
    /// [`PeerConn::reject`] before calling this again with bytes left.
    pub fn handle_bytes<'s, 'i: 's>(
        &'s mut self,
        now: Instant,
        input: &mut &'i [u8],
    ) -> Result<Option<PeerEvent<'s>>, CloseReason> {
        if let Some(r) = &self.closed {
            return Err((**r).clone());
        }
        if input.is_empty() {
            return Ok(None);
        }
        while self.st.phase != Phase::Connected {
            if self.st.phase == Phase::AwaitingAccept {
                let r = misuse("bytes fed before accept() or reject() answered the info hash");
                return Err(set_closed(&mut self.closed, r));
            }
            let before = input.len();
            let step = self.handshake.decode(input);
            self.st.note_received(now, before - input.len());
            match step {
                Err(e) => return Err(set_closed(&mut self.closed, e.into())),
                Ok(None) => return Ok(None),
                Ok(Some(HandshakeEvent::InfoHash {
                    reserved,
                    info_hash,
                })) => {
                    if self.st.outgoing {
                        if info_hash != self.st.torrent.info_hash {
                            let r = CloseReason::InfoHashMismatch {
                                expected: self.st.torrent.info_hash,
                                got: info_hash,
                            };
                            return Err(set_closed(&mut self.closed, r));
                        }
                        continue;
                    }
                    self.st.phase = Phase::AwaitingAccept;
                    self.st.torrent = TorrentInfo::unknown(info_hash);
                    return Ok(Some(PeerEvent::InfoHash {
                        info_hash,
                        reserved,
                    }));
                }
                Ok(Some(HandshakeEvent::Complete(h))) => {
                    if let Err(r) = self.st.on_handshake(now, h) {
                        return Err(set_closed(&mut self.closed, r));
                    }
                    let limits = DecoderLimits {
                        max_block_len: BLOCK_LEN,
                        max_bitfield_len: 0,
                        max_frame_len: self.st.cfg.max_extension_payload.saturating_add(2),
                    };
                    self.decoder
                        .set_limits(limits.with_piece_count(self.st.torrent.piece_count()));
                    return Ok(Some(PeerEvent::HandshakeDone {
                        peer_id: h.peer_id,
                        reserved: h.reserved,
                        negotiated: self.st.negotiated,
                        client: self.st.client.as_deref(),
                    }));
                }
            }
        }
        let before = input.len();
        let decoded = self.decoder.decode(input);
        self.st.note_received(now, before - input.len());
        let msg = match decoded {
            Ok(Some(msg)) => msg,
            Ok(None) => return Ok(None),
            Err(e) => return Err(set_closed(&mut self.closed, e.into())),
        };
        match self.st.on_message(now, msg) {
            Ok(ev) => Ok(Some(ev)),
            Err(r) => Err(set_closed(&mut self.closed, r)),
        }
    }

    /// Runs the timers due at `now`: handshake timeout and silence close (`Err`), keep-alive
    /// (queued silently), request timeouts ([`PeerEvent::RequestsTimedOut`]: those requests are
    /// cancelled and given up; re-issue them elsewhere). Call it at [`PeerConn::next_deadline`];
    /// calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<Option<PeerEvent<'_>>, CloseReason> {
        if let Some(r) = &self.closed {
            return Err((**r).clone());
        }
        match self.st.on_timeout(now) {
            Ok(true) => Ok(Some(PeerEvent::RequestsTimedOut(&self.st.scratch))),
            Ok(false) => Ok(None),
            Err(r) => Err(set_closed(&mut self.closed, r)),
        }
    }

    /// The next instant [`PeerConn::handle_timeout`] has work; `None` once closed.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let st = &self.st;
        if st.phase != Phase::Connected {
            return Some(st.created_at + st.cfg.handshake_timeout);
        }
        let idle = st.last_received + st.cfg.idle_timeout;
        let keepalive = st.last_sent + st.cfg.keepalive_interval;
        let mut next = idle.min(keepalive);
        if let Some(d) = st.pipeline.deadline(&st.cfg) {
            next = next.min(d);
        }
        if let Some(t) = st.held_since {
            next = next.min(t + st.cfg.have_batch);
        }
        Some(next)
    }

    // ----- sending -------------------------------------------------------------------------

    /// Sends our pieces; must be our first message after the handshake (BEP 3, BEP 6). With
    /// the fast extension a full or empty set goes as have all / have none; without it an
    /// empty set sends nothing (BEP 3 lets a peer with no pieces skip the bitfield).
    pub fn send_bitfield(&mut self, now: Instant, ours: &Bitfield) -> Result<(), CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if ours.len() != st.torrent.piece_count() {
                return Err(misuse(
                    "send_bitfield() given a bitfield of another piece count",
                ));
            }
            if !st.our_availability_open {
                return Err(misuse("send_bitfield() after other messages or twice"));
            }
            st.our_availability_open = false;
            if st.negotiated.fast() && ours.all() {
                st.send_msg(now, &Message::HaveAll)
            } else if st.negotiated.fast() && ours.none() {
                st.send_msg(now, &Message::HaveNone)
            } else if ours.none() {
                Ok(())
            } else {
                st.send_msg(now, &Message::Bitfield(ours.as_bytes()))
            }
        })
    }

    /// Announces a piece we completed: at once, or held for a batch when
    /// [`PeerConfig::have_batch`] is set (see [`HaveSent`]).
    pub fn send_have(&mut self, now: Instant, index: u32) -> Result<HaveSent, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if index >= st.torrent.piece_count() {
                return Err(misuse("send_have() for a piece index past the piece count"));
            }
            if !st.batch_haves {
                st.send_other(now, &Message::Have(index))?;
                return Ok(HaveSent::Queued);
            }
            st.our_availability_open = false;
            st.held_haves.push(index);
            let first = st.held_since.is_none();
            if first {
                st.held_since = Some(now);
            }
            if st.held_haves.len() >= HAVE_BATCH_MAX {
                st.flush_haves(now)?;
                return Ok(HaveSent::Queued);
            }
            Ok(HaveSent::Held { first })
        })
    }

    /// Reads a word from each cache line that bytes received touch first (the decoder and
    /// the state's head), and returns their sum; see `Session::prefetch`.
    pub(crate) fn prefetch_for_receive(&self) -> usize {
        usize::from(self.decoder.is_failed()) + usize::from(self.st.peer_choking)
    }

    /// Haves held for a batch, not yet in the send buffer.
    pub fn held_haves(&self) -> &[u32] {
        &self.st.held_haves
    }

    /// Chokes the peer (no-op if already choked). Its queued requests are rejected with the
    /// fast extension (except allowed-fast ones, BEP 6: choke first, then reject) and dropped
    /// without it (BEP 3).
    pub fn send_choke(&mut self, now: Instant) -> Result<(), CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if st.am_choking {
                return Ok(());
            }
            st.am_choking = true;
            st.requests_while_choked = 0;
            st.send_other(now, &Message::Choke)?;
            let fast = st.negotiated.fast();
            let mut kept = VecDeque::with_capacity(st.peer_requests.len());
            while let Some(q) = st.peer_requests.pop_front() {
                if fast && st.allowed_fast_given.contains(&q.block.index) {
                    kept.push_back(q);
                    continue;
                }
                if q.handed_out {
                    st.handed_out_bytes =
                        st.handed_out_bytes.saturating_sub(q.block.length as usize);
                }
                if fast {
                    st.send_msg(now, &Message::Reject(q.block))?;
                }
            }
            st.peer_requests = kept;
            Ok(())
        })
    }

    /// Unchokes the peer (no-op if already unchoked).
    pub fn send_unchoke(&mut self, now: Instant) -> Result<(), CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if !st.am_choking {
                return Ok(());
            }
            st.am_choking = false;
            st.requests_while_choked = 0;
            st.send_other(now, &Message::Unchoke)
        })
    }

    /// Tells the peer we want its pieces (no-op if already said).
    pub fn send_interested(&mut self, now: Instant) -> Result<(), CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if st.am_interested {
                return Ok(());
            }
            st.am_interested = true;
            st.interested_at = Some(now);
            st.send_other(now, &Message::Interested)
        })
    }

    /// Tells the peer we want nothing (no-op if already said).
    pub fn send_not_interested(&mut self, now: Instant) -> Result<(), CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if !st.am_interested {
                return Ok(());
            }
            st.am_interested = false;
            st.interested_at = None;
            st.send_other(now, &Message::NotInterested)
        })
    }

    /// Requests a block and records it as outstanding. `Ok(false)` (nothing sent) when the
    /// peer chokes us and the piece is not allowed-fast, when the hard bound
    /// (min(`max_outstanding`, peer's `reqq`)) is reached, or when it is already outstanding.
    /// A block outside the torrent's geometry is a caller bug ([`CloseReason::Misuse`]).
    pub fn send_request(&mut self, now: Instant, block: BlockRequest) -> Result<bool, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            let piece_len = st.torrent.piece_len(block.index).unwrap_or(0);
            if validate_block(block, piece_len, BLOCK_LEN).is_err() {
                return Err(misuse("send_request() for a block outside the torrent"));
            }
            if !st.may_request(block.index)
                || st.pipeline.len() >= st.max_outstanding()
                || st.pipeline.contains(block)
            {
                return Ok(false);
            }
            st.send_other(now, &Message::Request(block))?;
            st.pipeline.push(block, now);
            Ok(true)
        })
    }

    /// Cancels an outstanding request (endgame, or the block came from elsewhere); whether it
    /// was outstanding. If the block still arrives it is reported as [`PeerEvent::LateBlock`].
    pub fn send_cancel(&mut self, now: Instant, block: BlockRequest) -> Result<bool, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if !st.pipeline.cancel(block) {
                return Ok(false);
            }
            st.send_other(now, &Message::Cancel(block))?;
            Ok(true)
        })
    }

    /// The peer has requests queued that [`PeerConn::poll_upload`] has not handed out yet.
    pub fn has_unserved_requests(&self) -> bool {
        self.st.peer_requests.iter().any(|q| !q.handed_out)
    }

    /// The next queued request of the peer to read from disk, if the send buffer has room
    /// (queued bytes plus blocks already handed out stay under `upload_watermark`; one block is
    /// always allowed when nothing is in flight). Answer each with [`PeerConn::send_block`] or
    /// [`PeerConn::reject_request`].
    pub fn poll_upload(&mut self) -> Option<BlockRequest> {
        if self.closed.is_some() || self.st.phase != Phase::Connected {
            return None;
        }
        let st = &mut self.st;
        let in_flight = st.send.len().saturating_add(st.handed_out_bytes);
        let q = st.peer_requests.iter_mut().find(|q| !q.handed_out)?;
        let len = q.block.length as usize;
        if in_flight > 0 && in_flight.saturating_add(len) > st.cfg.upload_watermark {
            return None;
        }
        q.handed_out = true;
        st.handed_out_bytes = st.handed_out_bytes.saturating_add(len);
        Some(q.block)
    }

    /// Sends a block the peer requested with its data read from disk. `Ok(false)` (nothing
    /// sent) if the request is no longer queued (the peer cancelled it, or a choke dropped it)
    /// or if `data` is not `block.length` bytes. `data` is queued as it is, not copied.
    pub fn send_block(
        &mut self,
        now: Instant,
        block: BlockRequest,
        data: Bytes,
    ) -> Result<bool, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if data.len() != block.length as usize {
                return Ok(false);
            }
            if !st.unqueue(block) {
                return Ok(false);
            }
            st.flush_haves(now)?;
            st.send
                .push_piece(block.index, block.begin, data)
                .map_err(|f| CloseReason::SendBufferFull { limit: f.limit })?;
            st.last_sent = now;
            st.our_availability_open = false;
            // Counted when queued, not when written: the send buffer is bounded, so the meter
            // leads the socket by at most `upload_watermark`.
            st.upload.record(now, u64::from(block.length));
            Ok(true)
        })
    }

    /// Refuses a queued request (we lack the piece, or the disk read failed): dropped, and
    /// answered with a reject if the fast extension is on. Whether it was queued.
    pub fn reject_request(
        &mut self,
        now: Instant,
        block: BlockRequest,
    ) -> Result<bool, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if !st.unqueue(block) {
                return Ok(false);
            }
            if st.negotiated.fast() {
                st.send_other(now, &Message::Reject(block))?;
            }
            Ok(true)
        })
    }

    /// Sends the peer its BEP 6 allowed-fast set (`allowed_fast_count` pieces computed from its
    /// IPv4 address); returns how many new pieces were sent. 0 without the fast extension,
    /// without an IPv4 address, or if already sent. BEP 6 advises it for peers that have few
    /// pieces; requests for these pieces are then served even while we choke the peer. Call it
    /// after [`PeerConn::send_bitfield`], which must come first.
    pub fn send_allowed_fast_set(&mut self, now: Instant) -> Result<usize, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            let Some(ip) = ipv4_of(st.peer_ip).filter(|_| st.negotiated.fast()) else {
                return Ok(0);
            };
            let set = allowed_fast_set(
                ip,
                &st.torrent.info_hash,
                st.torrent.piece_count(),
                st.cfg.allowed_fast_count,
            );
            let mut sent = 0;
            for index in set {
                if !st.allowed_fast_given.contains(&index) {
                    st.send_other(now, &Message::AllowedFast(index))?;
                    st.allowed_fast_given.push(index);
                    sent += 1;
                }
            }
            Ok(sent)
        })
    }

    /// Suggests a piece (BEP 6); `Ok(false)` without the fast extension.
    pub fn send_suggest(&mut self, now: Instant, index: u32) -> Result<bool, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if index >= st.torrent.piece_count() {
                return Err(misuse(
                    "send_suggest() for a piece index past the piece count",
                ));
            }
            if !st.negotiated.fast() {
                return Ok(false);
            }
            st.send_other(now, &Message::Suggest(index))?;
            Ok(true)
        })
    }

    /// Tells the peer our DHT port (BEP 5); `Ok(false)` unless both ends set the DHT bit.
    pub fn send_port(&mut self, now: Instant, port: u16) -> Result<bool, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if !st.negotiated.dht() {
                return Ok(false);
            }
            st.send_msg(now, &Message::Port(port))?;
            Ok(true)
        })
    }

    /// Sends an extended message (BEP 10) under the id the *peer* assigned to it (see
    /// [`PeerConn::peer_extension_id`]); `Ok(false)` without the extension protocol.
    pub fn send_extended(
        &mut self,
        now: Instant,
        id: u8,
        payload: &[u8],
    ) -> Result<bool, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if id == 0 {
                return Err(misuse(
                    "send_extended() with id 0: use send_extension_handshake()",
                ));
            }
            if !st.negotiated.extension_protocol() {
                return Ok(false);
            }
            st.send_msg(now, &Message::Extended { id, payload })?;
            Ok(true)
        })
    }

    /// Sends another extension handshake (BEP 10 allows several; `m` is additive). Ours is
    /// sent automatically after the handshake. `Ok(false)` without the extension protocol.
    pub fn send_extension_handshake(
        &mut self,
        now: Instant,
        handshake: &ExtensionHandshake<'_>,
    ) -> Result<bool, CloseReason> {
        self.guarded(|st| {
            st.require_connected()?;
            if !st.negotiated.extension_protocol() {
                return Ok(false);
            }
            let payload = handshake.to_bytes();
            st.send_msg(
                now,
                &Message::Extended {
                    id: 0,
                    payload: &payload,
                },
            )?;
            Ok(true)
        })
    }

    // ----- transmit ------------------------------------------------------------------------

    /// Whether bytes wait to be written to the socket.
    pub fn wants_transmit(&self) -> bool {
        self.st.send.len() > 0
    }

    /// The first contiguous run of the bytes waiting for the socket (blocks are kept apart
    /// from the messages around them, so a run ends at a block's start or end); after writing
    /// `n` of them call [`PeerConn::advance_transmit`], then ask again while
    /// [`PeerConn::wants_transmit`].
    pub fn pending_transmit(&self) -> &[u8] {
        self.st.send.pending()
    }

    /// Marks `n` bytes of [`PeerConn::pending_transmit`] as written.
    pub fn advance_transmit(&mut self, n: usize) {
        let n = self.st.send.advance(n);
        self.st.bytes_sent = self.st.bytes_sent.saturating_add(n as u64);
    }

    /// Appends every waiting byte to `out` (and forgets them); returns how many.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.st.send.drain_into(out);
        self.st.bytes_sent = self.st.bytes_sent.saturating_add(n as u64);
        n
    }

    /// Takes every waiting byte without copying blocks: the control bytes (messages and piece
    /// headers) are appended to `ctrl`, the blocks (the `Bytes` given to
    /// [`PeerConn::send_block`]) to `blocks`, each with the offset in `ctrl` it goes at;
    /// returns how many bytes in all.
    pub fn poll_transmit_parts(
        &mut self,
        ctrl: &mut Vec<u8>,
        blocks: &mut Vec<(usize, Bytes)>,
    ) -> usize {
        let n = self.st.send.drain_parts(ctrl, blocks);
        self.st.bytes_sent = self.st.bytes_sent.saturating_add(n as u64);
        n
    }

    // ----- pipeline ------------------------------------------------------------------------

    /// How many more requests the Session should issue now: the desired queue depth (see
    /// [`PeerConn::queue_depth`]) minus what is outstanding; 0 while the peer chokes us and
    /// gave us no allowed-fast piece (if it did, request only those: [`PeerConn::may_request`]).
    pub fn request_slots(&mut self, now: Instant) -> usize {
        if self.closed.is_some() || self.st.phase != Phase::Connected {
            return 0;
        }
        if self.st.peer_choking && self.st.peer_allowed_fast.is_empty() {
            return 0;
        }
        self.queue_depth(now).saturating_sub(self.st.pipeline.len())
    }

    /// The desired number of outstanding requests: download rate × `target_queue_time` /
    /// 16 KiB, within [`min_queue_depth`, min(`max_outstanding`, peer's `reqq`)]; slow start
    /// (+1 per block from `initial_queue_depth`) until the rate catches up; the floor after a
    /// request timed out, until a block arrives.
    ///
    /// [`min_queue_depth`]: PeerConfig::min_queue_depth
    pub fn queue_depth(&mut self, now: Instant) -> usize {
        let st = &mut self.st;
        let rate = st.download.rate(now);
        let reqq = st.peer_reqq();
        st.pipeline.desired_depth(&st.cfg, rate, reqq)
    }

    /// Whether a request for `index` may be sent now: the peer unchokes us, or the piece is in
    /// its allowed-fast set (BEP 6).
    pub fn may_request(&self, index: u32) -> bool {
        self.st.may_request(index)
    }

    /// Our outstanding requests, oldest first.
    pub fn outstanding(&self) -> impl Iterator<Item = BlockRequest> + '_ {
        self.st.pipeline.iter()
    }

    /// Number of our outstanding requests.
    pub fn outstanding_len(&self) -> usize {
        self.st.pipeline.len()
    }

    /// The peer's queued requests, oldest first.
    pub fn queued_requests(&self) -> impl Iterator<Item = BlockRequest> + '_ {
        self.st.peer_requests.iter().map(|q| q.block)
    }

    /// The current request timeout (latency-adaptive, within the configured bounds).
    pub fn request_timeout(&self) -> Duration {
        self.st.pipeline.timeout(&self.st.cfg)
    }

    /// Smoothed request-to-block latency, once a block arrived.
    pub fn latency(&self) -> Option<Duration> {
        self.st.pipeline.latency()
    }

    /// A request timed out and no block arrived since.
    pub fn is_snubbed(&self) -> bool {
        self.st.pipeline.is_snubbed()
    }

    // ----- state ---------------------------------------------------------------------------

    /// Why the connection closed, once it did.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_deref()
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Checks every bound of the module's table (what a peer can make this connection hold);
    /// O(state), for tests and fuzzing. `Err` names the first bound exceeded.
    pub fn check_bounds(&self) -> Result<(), String> {
        let st = &self.st;
        let cfg = &st.cfg;
        let frame = self.decoder.limits().largest_frame() as usize;
        let (abandoned, abandoned_cap) = st.pipeline.abandoned_len();
        let checks: [(&str, usize, usize); 11] = [
            // A partial frame: its 4-byte length prefix and at most the largest body.
            ("partial frame bytes", self.decoder.buffered(), frame + 4),
            ("send buffer bytes", st.send.len(), cfg.max_send_buffer),
            // The batch flushes when it reaches the bound.
            ("held haves", st.held_haves.len(), HAVE_BATCH_MAX - 1),
            (
                "peer's queued requests",
                st.peer_requests.len(),
                cfg.max_peer_requests,
            ),
            (
                "peer's requests while choked",
                st.requests_while_choked,
                cfg.max_peer_requests.saturating_mul(2),
            ),
            (
                "our outstanding requests",
                st.pipeline.len(),
                cfg.max_outstanding,
            ),
            (
                "abandoned requests",
                abandoned,
                abandoned_cap.min(cfg.max_outstanding),
            ),
            (
                "peer's allowed-fast pieces",
                st.peer_allowed_fast.len(),
                cfg.max_peer_allowed_fast,
            ),
            ("suggestions kept", st.suggested.len(), cfg.max_suggested),
            (
                "allowed-fast pieces given",
                st.allowed_fast_given.len(),
                cfg.allowed_fast_count as usize,
            ),
            (
                "extension names",
                st.ext.ids.len(),
                extension::MAX_EXTENSIONS,
            ),
        ];
        for (what, len, max) in checks {
            if len > max {
                return Err(format!("{what}: {len} > bound {max}"));
            }
        }
        if st.batch_haves == st.cfg.have_batch.is_zero() {
            return Err("batch_haves disagrees with the config's have_batch".into());
        }
        if st.held_since.is_some() == st.held_haves.is_empty() {
            return Err(format!(
                "held haves: {} held, batch started {:?}",
                st.held_haves.len(),
                st.held_since
            ));
        }
        Ok(())
    }

    /// Both handshakes are done and the connection is open.
    pub fn is_connected(&self) -> bool {
        self.closed.is_none() && self.st.phase == Phase::Connected
    }

    /// We opened the connection.
    pub fn is_outgoing(&self) -> bool {
        self.st.outgoing
    }

    /// The torrent (a placeholder with no pieces before an incoming connection is accepted).
    pub fn torrent(&self) -> &TorrentInfo {
        &self.st.torrent
    }

    /// The peer's address as given at construction.
    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.st.peer_ip
    }

    /// The peer's id, once its handshake is complete.
    pub fn peer_id(&self) -> Option<[u8; 20]> {
        self.st.peer_id
    }

    /// The client named by the peer id, if known (see [`client_name`]).
    pub fn client(&self) -> Option<&str> {
        self.st.client.as_deref()
    }

    /// The peer's reserved bits.
    pub fn peer_reserved(&self) -> Reserved {
        self.st.peer_reserved
    }

    /// The extensions both ends support.
    pub fn negotiated(&self) -> Reserved {
        self.st.negotiated
    }

    /// We choke the peer (initially true, BEP 3).
    pub fn am_choking(&self) -> bool {
        self.st.am_choking
    }

    /// We told the peer we are interested.
    pub fn am_interested(&self) -> bool {
        self.st.am_interested
    }

    /// The peer chokes us (initially true).
    pub fn peer_choking(&self) -> bool {
        self.st.peer_choking
    }

    /// The peer is interested in us.
    pub fn peer_interested(&self) -> bool {
        self.st.peer_interested
    }

    /// Pieces the peer lets us request while it chokes us (BEP 6).
    pub fn peer_allowed_fast(&self) -> &[u32] {
        &self.st.peer_allowed_fast
    }

    /// The allowed-fast set we gave the peer.
    pub fn allowed_fast_given(&self) -> &[u32] {
        &self.st.allowed_fast_given
    }

    /// The peer's most recent suggestions (BEP 6), oldest first, bounded.
    pub fn suggested(&self) -> impl Iterator<Item = u32> + '_ {
        self.st.suggested.iter().copied()
    }

    /// The id the peer wants extension `name` sent under (BEP 10), if it supports it.
    pub fn peer_extension_id(&self, name: &[u8]) -> Option<u8> {
        self.st.ext.id(name)
    }

    /// The peer's `v` (client name and version, BEP 10).
    pub fn peer_version(&self) -> Option<&str> {
        self.st.ext.version.as_deref()
    }

    /// The peer's listen port (`p`, BEP 10).
    pub fn peer_listen_port(&self) -> Option<u16> {
        self.st.ext.listen_port
    }

    /// Our address as the peer sees it (`yourip`, BEP 10).
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.st.ext.yourip
    }

    /// The peer's `metadata_size` (BEP 9).
    pub fn peer_metadata_size(&self) -> Option<u32> {
        self.st.ext.metadata_size
    }

    /// The peer said `upload_only` (BEP 21).
    pub fn peer_upload_only(&self) -> bool {
        self.st.ext.upload_only
    }

    /// Requests the peer queues (its `reqq`, or `default_peer_reqq`).
    pub fn peer_reqq(&self) -> usize {
        self.st.peer_reqq()
    }

    /// Payload bytes/s received (requested and late blocks) over the rate window.
    pub fn download_rate(&self, now: Instant) -> u64 {
        self.st.download.rate(now)
    }

    /// Payload bytes/s sent over the rate window.
    pub fn upload_rate(&self, now: Instant) -> u64 {
        self.st.upload.rate(now)
    }

    /// Payload bytes received since the connection opened.
    pub fn downloaded(&self) -> u64 {
        self.st.download.total()
    }

    /// Payload bytes sent since the connection opened.
    pub fn uploaded(&self) -> u64 {
        self.st.upload.total()
    }

    /// All bytes received (handshake and framing included).
    pub fn bytes_received(&self) -> u64 {
        self.st.bytes_received
    }

    /// All bytes handed to the socket (handshake and framing included).
    pub fn bytes_sent(&self) -> u64 {
        self.st.bytes_sent
    }

    /// Messages with unknown ids received (ignored).
    pub fn unknown_messages(&self) -> u64 {
        self.st.unknown_messages
    }

    /// When a requested block last arrived.
    pub fn last_block_at(&self) -> Option<Instant> {
        self.st.pipeline.last_block_at
    }

    /// `Some(t)` while the peer unchokes us and we are interested: `t` is when both became
    /// true (the later of the two). For snub detection.
    pub fn expecting_since(&self) -> Option<Instant> {
        let st = &self.st;
        if st.peer_choking || !st.am_interested {
            return None;
        }
        Some(st.unchoked_at?.max(st.interested_at?))
    }

    /// When the handshake completed.
    pub fn connected_at(&self) -> Option<Instant> {
        self.st.connected_at
    }

    /// The choker's view of this peer, under the Session's key, for a call in `mode`. Only the
    /// rates [`PeerStats`] says the choker reads in `mode` are measured; the others are 0. A
    /// rate costs a division or two, and an interim call reads every connection.
    pub fn choker_stats<K>(&self, key: K, now: Instant, mode: Mode) -> PeerStats<K> {
        let interested = self.st.peer_interested;
        let ranked = |m: Mode| interested && mode == m;
        PeerStats {
            key,
            interested,
            am_choking: self.st.am_choking,
            download_rate: if ranked(Mode::Leech) {
                self.download_rate(now)
            } else {
                0
            },
            upload_rate: if ranked(Mode::Seed) {
                self.upload_rate(now)
            } else {
                0
            },
            uploaded: self.uploaded(),
            expecting_since: self.expecting_since(),
            last_block_at: self.last_block_at(),
            connected_at: self.st.connected_at.unwrap_or(self.st.created_at),
        }
    }
}

impl State {
    fn new(
        cfg: PeerConfig,
        torrent: TorrentInfo,
        outgoing: bool,
        peer_ip: Option<IpAddr>,
        now: Instant,
    ) -> Self {
        let window = cfg.rate_window;
        State {
            send: SendBuffer::new(cfg.max_send_buffer),
            pipeline: Pipeline::new(&cfg),
            torrent,
            outgoing,
            batch_haves: !cfg.have_batch.is_zero(),
            phase: Phase::Handshaking,
            peer_ip,
            created_at: now,
            connected_at: None,
            last_received: now,
            last_sent: now,
            held_since: None,
            peer_id: None,
            peer_reserved: Reserved::NONE,
            negotiated: Reserved::NONE,
            client: None,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            unchoked_at: None,
            interested_at: None,
            peer_availability_open: true,
            our_availability_open: true,
            peer_requests: VecDeque::new(),
            held_haves: Vec::new(),
            handed_out_bytes: 0,
            requests_while_choked: 0,
            allowed_fast_given: Vec::new(),
            scratch: Vec::new(),
            peer_allowed_fast: Vec::new(),
            suggested: VecDeque::new(),
            ext: RemoteExtensions::default(),
            download: RateMeter::with_window(now, window),
            upload: RateMeter::with_window(now, window),
            bytes_received: 0,
            bytes_sent: 0,
            unknown_messages: 0,
            cfg,
        }
    }

    fn note_received(&mut self, now: Instant, n: usize) {
        if n > 0 {
            self.last_received = self.last_received.max(now);
            self.bytes_received = self.bytes_received.saturating_add(n as u64);
        }
    }

    fn require_connected(&self) -> Result<(), CloseReason> {
        if self.phase != Phase::Connected {
            return Err(misuse("message sent before the handshake completed"));
        }
        Ok(())
    }

    fn max_outstanding(&self) -> usize {
        self.cfg.max_outstanding.min(self.peer_reqq()).max(1)
    }

    fn peer_reqq(&self) -> usize {
        self.ext
            .reqq
            .map_or(self.cfg.default_peer_reqq, |q| q as usize)
            .max(1)
    }

    fn may_request(&self, index: u32) -> bool {
        !self.peer_choking || self.peer_allowed_fast.contains(&index)
    }

    fn send_msg(&mut self, now: Instant, msg: &Message<'_>) -> Result<(), CloseReason> {
        // Held haves ride along with any other message (they were announced first).
        self.flush_haves(now)?;
        self.send
            .push(msg)
            .map_err(|f| CloseReason::SendBufferFull { limit: f.limit })?;
        self.last_sent = now;
        Ok(())
    }

    /// Queues the held haves (see [`PeerConfig::have_batch`]), in the order they were given.
    fn flush_haves(&mut self, now: Instant) -> Result<(), CloseReason> {
        if self.held_since.take().is_none() {
            return Ok(());
        }
        // Haves for pieces the peer announced meanwhile still go: filtering them here read
        // the peer's bitfield (a cache miss or two per batch) to save a few percent of them.
        let mut held = std::mem::take(&mut self.held_haves);
        let result = held.iter().try_for_each(|&index| {
            self.send
                .push(&Message::Have(index))
                .map_err(|f| CloseReason::SendBufferFull { limit: f.limit })
        });
        held.clear();
        self.held_haves = held;
        self.last_sent = now;
        result
    }

    /// Sends a message that ends the window for our bitfield.
    fn send_other(&mut self, now: Instant, msg: &Message<'_>) -> Result<(), CloseReason> {
        self.our_availability_open = false;
        self.send_msg(now, msg)
    }

    fn send_handshake(&mut self, now: Instant) -> Result<(), CloseReason> {
        let ours = Handshake {
            reserved: self.cfg.reserved,
            info_hash: self.torrent.info_hash,
            peer_id: self.cfg.peer_id,
        };
        self.send
            .push_raw(&ours.to_bytes())
            .map_err(|f| CloseReason::SendBufferFull { limit: f.limit })?;
        self.last_sent = now;
        Ok(())
    }

    /// Removes a queued request of the peer; whether it was queued.
    fn unqueue(&mut self, block: BlockRequest) -> bool {
        let Some(i) = self.peer_requests.iter().position(|q| q.block == block) else {
            return false;
        };
        if let Some(q) = self.peer_requests.remove(i) {
            if q.handed_out {
                self.handed_out_bytes = self
                    .handed_out_bytes
                    .saturating_sub(q.block.length as usize);
            }
        }
        crate::fifo::rewind_if_empty(&mut self.peer_requests);
        true
    }

    fn on_handshake(&mut self, now: Instant, h: Handshake) -> Result<(), CloseReason> {
        // The npm `bittorrent-tracker` (and others) list us among our own peers.
        if h.peer_id == self.cfg.peer_id {
            return Err(CloseReason::SelfConnection);
        }
        self.peer_id = Some(h.peer_id);
        self.peer_reserved = h.reserved;
        self.negotiated = self.cfg.reserved & h.reserved;
        self.client = client_name(&h.peer_id);
        self.phase = Phase::Connected;
        self.connected_at = Some(now);
        self.last_received = now;
        if self.negotiated.extension_protocol() {
            let payload = self.our_extension_handshake();
            self.send_msg(
                now,
                &Message::Extended {
                    id: 0,
                    payload: &payload,
                },
            )?;
        }
        Ok(())
    }

    fn our_extension_handshake(&self) -> Vec<u8> {
        let mut m: Vec<(&[u8], u8)> = Vec::with_capacity(2);
        if let Some(id) = self.cfg.ut_metadata_id {
            m.push((b"ut_metadata", id));
        }
        if let Some(id) = self.cfg.ut_pex_id {
            m.push((b"ut_pex", id));
        }
        let yourip = self.peer_ip.map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        });
        let reqq = u32::try_from(self.cfg.max_peer_requests).unwrap_or(u32::MAX);
        ExtensionHandshake {
            m,
            v: Some(self.cfg.client_version.as_str()).filter(|v| !v.is_empty()),
            p: self.cfg.listen_port,
            reqq: Some(reqq.max(1)),
            yourip,
            metadata_size: self
                .torrent
                .metadata_size
                .filter(|_| self.cfg.ut_metadata_id.is_some()),
            ..ExtensionHandshake::default()
        }
        .to_bytes()
    }

    fn check_index(&self, message: &'static str, index: u32) -> Result<(), CloseReason> {
        let piece_count = self.torrent.piece_count();
        if index >= piece_count {
            return Err(CloseReason::PieceIndexOutOfRange {
                message,
                index,
                piece_count,
            });
        }
        Ok(())
    }

    fn require_fast(&self, message: &'static str) -> Result<(), CloseReason> {
        if !self.negotiated.fast() {
            return Err(CloseReason::NotNegotiated {
                message,
                extension: "the fast extension (BEP 6)",
            });
        }
        Ok(())
    }

    /// The have all / have none window: once, and only before other messages.
    fn take_availability(&mut self, message: &'static str) -> Result<(), CloseReason> {
        if !self.peer_availability_open {
            return Err(CloseReason::AvailabilityNotFirst { message });
        }
        self.peer_availability_open = false;
        Ok(())
    }

    fn on_message<'a>(
        &'a mut self,
        now: Instant,
        msg: Message<'a>,
    ) -> Result<PeerEvent<'a>, CloseReason> {
        // libtorrent sends its extension handshake (and may send port) before its bitfield,
        // so those do not close the window for the availability message.
        if !matches!(
            msg,
            Message::KeepAlive
                | Message::Extended { .. }
                | Message::Port(_)
                | Message::Unknown { .. }
                | Message::Bitfield(_)
                | Message::HaveAll
                | Message::HaveNone
        ) {
            self.peer_availability_open = false;
        }
        let n = self.torrent.piece_count();
        Ok(match msg {
            Message::KeepAlive => PeerEvent::KeepAlive,
            Message::Choke => {
                self.scratch.clear();
                if !self.peer_choking {
                    self.peer_choking = true;
                    self.unchoked_at = None;
                }
                // BEP 6: with the fast extension a choke no longer drops requests.
                if !self.negotiated.fast() {
                    self.pipeline.release_all(&mut self.scratch);
                }
                PeerEvent::Choked {
                    released: &self.scratch,
                }
            }
            Message::Unchoke => {
                if self.peer_choking {
                    self.peer_choking = false;
                    self.unchoked_at = Some(now);
                }
                PeerEvent::Unchoked
            }
            Message::Interested => {
                self.peer_interested = true;
                PeerEvent::Interested
            }
            Message::NotInterested => {
                self.peer_interested = false;
                PeerEvent::NotInterested
            }
            Message::Have(index) => {
                self.check_index("have", index)?;
                PeerEvent::Have(index)
            }
            Message::Bitfield(bits) => {
                // aria2 1.36 quirk: it sends a bitfield instead of a burst of 20 or more
                // haves, at any point of the conversation (and, with no piece at the
                // handshake, sends no availability message at first). Libtorrent and
                // Transmission accept a bitfield at any time, so we do too: pieces are never
                // lost, so the picker merges it with what the peer announced before (the
                // connection keeps no copy: one per peer is enough, and a swarm's haves
                // would write both). Have all / have none stay first-message-only (BEP 6).
                self.peer_availability_open = false;
                let bits = Bitfield::from_bytes(bits, n).map_err(|e| match e {
                    BitfieldError::WrongLength {
                        got,
                        expected,
                        piece_count,
                    } => CloseReason::BitfieldLength {
                        len: got,
                        expected,
                        piece_count,
                    },
                    BitfieldError::SpareBitsSet { piece_count, .. } => {
                        CloseReason::BitfieldSpareBits { piece_count }
                    }
                })?;
                PeerEvent::Bitfield(bits)
            }
            Message::HaveAll => {
                self.require_fast("have all")?;
                self.take_availability("have all")?;
                PeerEvent::HaveAll
            }
            Message::HaveNone => {
                self.require_fast("have none")?;
                self.take_availability("have none")?;
                PeerEvent::HaveNone
            }
            Message::Request(block) => self.on_request(now, block)?,
            Message::Piece { index, begin, data } => {
                let block = BlockRequest {
                    index,
                    begin,
                    length: u32::try_from(data.len()).unwrap_or(u32::MAX),
                };
                if let Some(o) = self.pipeline.take(block) {
                    self.pipeline.on_block(now, o.sent_at);
                    self.download.record(now, data.len() as u64);
                    PeerEvent::Block { block, data }
                } else if self.pipeline.take_abandoned(block) {
                    self.download.record(now, data.len() as u64);
                    PeerEvent::LateBlock { block, data }
                } else {
                    // Not counted as download: junk must not buy a better choke rank.
                    PeerEvent::UnrequestedBlock { block, data }
                }
            }
            Message::Cancel(block) => {
                let was_queued = self.unqueue(block);
                // BEP 6: even a cancelled request gets exactly one answer; it is no longer
                // queued, so that answer is a reject.
                if was_queued && self.negotiated.fast() {
                    self.send_msg(now, &Message::Reject(block))?;
                }
                PeerEvent::Cancelled { block, was_queued }
            }
            Message::Port(port) => {
                // BEP 5: only peers that set the DHT bit send `port`. A peer that set it may
                // send its port even if we did not (harmless), so only its own bit counts.
                if !self.peer_reserved.dht() {
                    return Err(CloseReason::NotNegotiated {
                        message: "port",
                        extension: "DHT support (BEP 5)",
                    });
                }
                PeerEvent::Port(port)
            }
            Message::Suggest(index) => {
                self.require_fast("suggest piece")?;
                self.check_index("suggest piece", index)?;
                if !self.suggested.contains(&index) {
                    if self.suggested.len() >= self.cfg.max_suggested.max(1) {
                        self.suggested.pop_front();
                    }
                    self.suggested.push_back(index);
                }
                PeerEvent::Suggest(index)
            }
            Message::Reject(block) => {
                self.require_fast("reject request")?;
                if self.pipeline.take(block).is_some() {
                    PeerEvent::Rejected(block)
                } else if self.pipeline.take_abandoned(block) {
                    PeerEvent::LateReject(block)
                } else {
                    return Err(CloseReason::RejectNotRequested { block });
                }
            }
            Message::AllowedFast(index) => {
                self.require_fast("allowed fast")?;
                self.check_index("allowed fast", index)?;
                let new = !self.peer_allowed_fast.contains(&index);
                if new {
                    let limit = self.cfg.max_peer_allowed_fast;
                    if self.peer_allowed_fast.len() >= limit {
                        return Err(CloseReason::TooManyAllowedFast { limit });
                    }
                    self.peer_allowed_fast.push(index);
                }
                PeerEvent::AllowedFast { index, new }
            }
            Message::Extended { id, payload } => {
                if !self.negotiated.extension_protocol() {
                    return Err(CloseReason::NotNegotiated {
                        message: "extended",
                        extension: "the extension protocol (BEP 10)",
                    });
                }
                if id != 0 {
                    return Ok(PeerEvent::Extended { id, payload });
                }
                let hs = ExtensionHandshake::decode(payload, self.cfg.max_extension_handshake)
                    .map_err(CloseReason::InvalidExtensionHandshake)?;
                self.ext.merge(&hs);
                PeerEvent::ExtensionHandshake(hs)
            }
            Message::Unknown { id, payload } => {
                self.unknown_messages = self.unknown_messages.saturating_add(1);
                PeerEvent::Unknown {
                    id,
                    len: payload.len(),
                }
            }
        })
    }

    fn on_request<'a>(
        &mut self,
        now: Instant,
        block: BlockRequest,
    ) -> Result<PeerEvent<'a>, CloseReason> {
        self.check_index("request", block.index)?;
        let piece_len = self.torrent.piece_len(block.index).unwrap_or(0);
        if validate_block(block, piece_len, BLOCK_LEN).is_err() {
            return Err(CloseReason::InvalidRequest {
                index: block.index,
                begin: block.begin,
                length: block.length,
                piece_len,
                max: BLOCK_LEN,
            });
        }
        let fast = self.negotiated.fast();
        let refuse = |st: &mut State, reason| -> Result<PeerEvent<'a>, CloseReason> {
            if fast {
                st.send_msg(now, &Message::Reject(block))?;
            }
            Ok(PeerEvent::RequestRefused {
                block,
                reason,
                rejected: fast,
            })
        };
        if self.am_choking && !self.allowed_fast_given.contains(&block.index) {
            // BEP 6: requests in flight when we choked keep coming for a while; only an
            // excessive number closes.
            let limit = self.cfg.max_peer_requests.saturating_mul(2).max(1);
            self.requests_while_choked = self.requests_while_choked.saturating_add(1);
            if self.requests_while_choked > limit {
                return Err(CloseReason::RequestsWhileChoked { limit });
            }
            return refuse(self, RefuseReason::Choked);
        }
        if self.peer_requests.iter().any(|q| q.block == block) {
            return Ok(PeerEvent::RequestRefused {
                block,
                reason: RefuseReason::Duplicate,
                rejected: false,
            });
        }
        let limit = self.cfg.max_peer_requests.max(1);
        if self.peer_requests.len() >= limit {
            if !fast {
                return Err(CloseReason::RequestQueueFull { limit });
            }
            return refuse(self, RefuseReason::QueueFull);
        }
        self.peer_requests.push_back(Queued {
            block,
            handed_out: false,
        });
        Ok(PeerEvent::Request(block))
    }

    /// Runs due timers; `Ok(true)` when requests timed out (listed in `scratch`).
    fn on_timeout(&mut self, now: Instant) -> Result<bool, CloseReason> {
        if self.phase != Phase::Connected {
            if now >= self.created_at + self.cfg.handshake_timeout {
                return Err(CloseReason::HandshakeTimeout {
                    after: self.cfg.handshake_timeout,
                });
            }
            return Ok(false);
        }
        if now >= self.last_received + self.cfg.idle_timeout {
            return Err(CloseReason::Idle {
                after: self.cfg.idle_timeout,
            });
        }
        if self
            .held_since
            .is_some_and(|t| now >= t + self.cfg.have_batch)
        {
            self.flush_haves(now)?;
        }
        if now >= self.last_sent + self.cfg.keepalive_interval {
            self.send_msg(now, &Message::KeepAlive)?;
        }
        self.scratch.clear();
        let mut expired = std::mem::take(&mut self.scratch);
        self.pipeline.expire(now, &self.cfg, &mut expired);
        let result = expired
            .iter()
            .try_for_each(|&block| self.send_msg(now, &Message::Cancel(block)));
        self.scratch = expired;
        result?;
        Ok(!self.scratch.is_empty())
    }
}
