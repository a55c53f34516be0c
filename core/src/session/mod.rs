//! The `Session`: the one object a driver (`hive-smol`, `hive-sim`, a test) drives.
//!
//! It owns every torrent and connection and ties the inner machines together: the peer
//! connections ([`crate::peer`]), the piece picker ([`crate::picker`]), the choker
//! ([`crate::choker`]), the tracker announcer ([`crate::announce`]) and the known-peer list
//! ([`crate::peer_list`]). It never does I/O: it asks for it through [`Output`]s and learns the
//! results through [`Input`]s.
//!
//! # The drain contract
//!
//! ```text
//! let mut session = Session::new(config, seed, now);
//! session.add_torrent(now, metainfo, pieces_on_disk)?;      // commands are methods
//! loop {
//!     loop {                                                  // drain
//!         match session.poll_output() {
//!             Output::Timeout(deadline) => { next = deadline; break }
//!             Output::Transmit(conn) => { session.poll_transmit(conn, &mut buf); send(buf) }
//!             other => carry_out(other),
//!         }
//!     }
//!     let (now, input) = wait_for_input_or(next);            // Input::Timeout when it passes
//!     session.handle_input(now, input)?;
//! }
//! ```
//!
//! Feed one input (or command), then drain [`Session::poll_output`] until it returns
//! [`Output::Timeout`]; that deadline is when to feed [`Input::Timeout`] if nothing else happens
//! first. Misuse is an [`SessionError`], never undefined behaviour: an input before the previous
//! outputs were drained, time going backwards, a connection or torrent id never issued. Inputs
//! for connections the Session already closed (a race the driver cannot avoid) are ignored.
//!
//! A misbehaving peer is never an error for the driver: its connection is closed with a
//! reason ([`Output::Close`], [`Event::PeerLeft`]).
//!
//! The torrent-level invariants are written down in `torrent.rs`.

mod conns;
mod torrent;
mod types;

#[cfg(test)]
mod tests;

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::announce::{Action, AnnounceStats, Announcer, Outcome};
use crate::bitfield::Bitfield;
use crate::choker::{ChokeDecision, Choker, Mode, PeerStats};
use crate::limit::TokenBucket;
use crate::metainfo::Metainfo;
use crate::peer::{ExtensionHandshake, HaveSent, PeerConn, PeerEvent, TorrentInfo};
use crate::peer_list::{DisconnectReason, PeerList, PeerSource};
use crate::picker::{
    BLOCK_SIZE, BlockOutcome, NewHave, PeerKey, PeerSet, Picker, PieceStatus, VerifyOutcome,
};
use crate::rate::RateMeter;
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{BlockRequest, DecoderLimits, Message};

use conns::{ConnTable, Touched};
use torrent::Torrent;
pub use types::{
    ConnId, Event, Input, LeaveReason, Output, PeerSnapshot, PieceView, SessionConfig,
    SessionError, TorrentId, TorrentState, TorrentStats,
};

/// Largest burst a rate limit lets through at once: a few blocks, so that a limit is smooth
/// and a fresh bucket does not let a whole second's worth out in one go.
const LIMIT_BURST: u64 = 4 * BLOCK_SIZE as u64;

/// How long `stopped` announces may take after a remove or shutdown before we give up on them.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// One connection: the peer machine plus what the Session knows about it.
///
/// `repr(C)` keeps the declared order: the small fields every input reads come first, next to
/// the peer machine's own hot fields (see `PeerConn`), so that a `have` in or out touches a
/// few adjacent cache lines of the connection instead of lines spread over 1.5 KiB. (Aligning
/// it to a cache line made no difference to the misses and cost 88 bytes per connection.)
#[derive(Debug)]
#[repr(C)]
struct Conn {
    /// Listed in the index's dirty list (its deadline is re-read at the next refresh).
    dirty: bool,
    /// Outgoing and not yet established (counts against the half-open limit).
    connecting: bool,
    /// A `PeerJoined` event was emitted (so `PeerLeft` is owed).
    joined: bool,
    /// The picker's name for this peer (valid once attached).
    key: PeerKey,
    /// Attached torrent (incoming connections learn it from the handshake).
    torrent: Option<TorrentId>,
    /// Disk reads under way for this peer.
    reads_in_flight: usize,
    /// The deadline this connection has in the Session's index (see `conns.rs`).
    indexed: Option<Instant>,
    peer: PeerConn,
    addr: SocketAddr,
}

/// What to do after an event from a connection has been applied to the torrent (the event
/// borrows the connection, so work on the connection itself waits until it is dropped).
#[derive(Debug)]
enum FollowUp {
    Nothing,
    InfoHash([u8; 20]),
    HandshakeDone {
        peer_id: [u8; 20],
        client: Option<String>,
    },
    /// Availability changed: our interest may have changed.
    Availability,
    /// The peer unchoked us, or requests were released: request more.
    Request,
    /// Requests were released torrent-wide (e.g. a timeout): every peer may take them.
    RequestEverywhere,
    /// The peer's interest changed: an interim choke round.
    Interest,
    /// The peer queued a request: serve it.
    Serve,
    /// The peer said it only uploads now (BEP 21 `upload_only`).
    UploadOnly,
    /// A block was accepted.
    Block {
        piece: u32,
        cancel: PeerSet,
        block: BlockRequest,
        piece_complete: bool,
    },
    /// Close the connection.
    Close(String),
}

/// The sans-IO BitTorrent session. See the module docs for the drain contract.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    rng: Rng,
    peer_id: [u8; 20],
    now: Instant,
    torrents: BTreeMap<TorrentId, Torrent>,
    by_info_hash: BTreeMap<[u8; 20], TorrentId>,
    conns: ConnTable,
    next_conn: u64,
    next_torrent: u32,
    half_open: usize,
    outputs: VecDeque<Output>,
    /// Connections whose send buffer may have new bytes or that may have closed.
    touched: Touched,
    /// `flush_touched`'s working list, kept for its allocation.
    flushing: Vec<ConnId>,
    upload_limit: TokenBucket,
    download_limit: TokenBucket,
    /// When a rate limit deferred work: retry then.
    throttled_until: Option<Instant>,
    /// Set by `shutdown`; the deadline after which stop announces are abandoned.
    shutdown_deadline: Option<Instant>,
    shutdown_reported: bool,
    /// Removing torrents give up on their `stopped` announces at this time.
    remove_deadlines: BTreeMap<TorrentId, Instant>,
    scratch: Vec<BlockRequest>,
    /// Reused for lists of connections (no allocation per verified piece).
    id_scratch: Vec<ConnId>,
    /// Reused for the torrent list the timers walk after every input.
    torrent_scratch: Vec<TorrentId>,
    choke_decision: ChokeDecision<ConnId>,
    choke_stats: Vec<PeerStats<ConnId>>,
    /// The earliest connection deadline when the last drain ended (see `run_timers`).
    conn_timers_at: Instant,
}

impl Session {
    /// A session with no torrents. `seed` drives every random choice (peer id, tie breaks,
    /// tracker shuffles), so the same seed and inputs give the same outputs, bit for bit.
    pub fn new(config: SessionConfig, seed: u64, now: Instant) -> Session {
        let mut rng = Rng::new(seed);
        let mut peer_id = [0u8; 20];
        let (prefix, rest) = peer_id.split_at_mut(8);
        prefix.copy_from_slice(&config.peer_id_prefix);
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for b in rest.iter_mut() {
            *b = ALPHABET
                .get(rng.index(ALPHABET.len()))
                .copied()
                .unwrap_or(b'0');
        }
        let upload_limit = bucket(now, config.upload_limit);
        let download_limit = bucket(now, config.download_limit);
        Session {
            config,
            rng,
            peer_id,
            now,
            torrents: BTreeMap::new(),
            by_info_hash: BTreeMap::new(),
            conns: ConnTable::default(),
            next_conn: 0,
            next_torrent: 0,
            half_open: 0,
            outputs: VecDeque::new(),
            touched: Touched::default(),
            flushing: Vec::new(),
            upload_limit,
            download_limit,
            throttled_until: None,
            shutdown_deadline: None,
            shutdown_reported: false,
            remove_deadlines: BTreeMap::new(),
            scratch: Vec::new(),
            id_scratch: Vec::new(),
            torrent_scratch: Vec::new(),
            choke_decision: ChokeDecision::new(),
            choke_stats: Vec::new(),
            conn_timers_at: Instant::ZERO,
        }
    }

    /// Our peer id (announced to trackers and sent in handshakes).
    pub fn peer_id(&self) -> [u8; 20] {
        self.peer_id
    }

    // ----- commands --------------------------------------------------------------------

    /// Adds a torrent. `on_disk` has a bit set for every piece already verified on disk (from a
    /// resume file or a re-hash); `None` means nothing is on disk yet.
    pub fn add_torrent(
        &mut self,
        now: Instant,
        meta: Metainfo,
        on_disk: Option<&Bitfield>,
    ) -> Result<TorrentId, SessionError> {
        self.begin_command(now)?;
        if self.shutdown_deadline.is_some() {
            return Err(SessionError::ShuttingDown);
        }
        let info_hash = *meta.info_hash().as_bytes();
        if self.by_info_hash.contains_key(&info_hash) {
            return Err(SessionError::DuplicateTorrent(meta.info_hash()));
        }
        let piece_length = u32::try_from(meta.piece_length()).map_err(|_| {
            SessionError::Unsupported(format!(
                "piece length {} is larger than 4 GiB",
                meta.piece_length()
            ))
        })?;
        let info =
            TorrentInfo::new(info_hash, piece_length, meta.total_length()).ok_or_else(|| {
                SessionError::Unsupported("piece length or total length out of range".into())
            })?;
        let mut picker = Picker::new(
            meta.piece_count(),
            piece_length,
            meta.total_length(),
            self.config.picker,
            self.rng.fork(),
        )
        .map_err(|e| SessionError::Unsupported(e.to_string()))?;
        if let Some(bits) = on_disk {
            if bits.len() != meta.piece_count() {
                return Err(SessionError::WrongBitfield {
                    got: bits.len(),
                    expected: meta.piece_count(),
                });
            }
            for piece in bits.iter_ones() {
                picker
                    .mark_have(piece)
                    .map_err(|e| SessionError::Unsupported(e.to_string()))?;
            }
        }
        let choker = Choker::new(self.config.choker, self.rng.fork())
            .map_err(|e| SessionError::Unsupported(format!("choker settings: {e}")))?;
        let (announcer, _refused) = Announcer::new(
            meta.trackers().to_vec(),
            self.config.announce.clone(),
            self.rng.fork(),
            now,
        );
        let mut peers = PeerList::new(self.config.peer_list);
        if self.config.listen_port != 0 {
            for ip in [
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ] {
                peers.add_own_address(SocketAddr::new(ip, self.config.listen_port));
            }
        }
        let id = TorrentId(self.next_torrent);
        self.next_torrent = self.next_torrent.wrapping_add(1);
        let torrent = Torrent {
            id,
            meta,
            info,
            state: TorrentState::Running,
            picker,
            choker,
            announcer,
            peers,
            conns: BTreeSet::new(),
            by_key: BTreeMap::new(),
            next_key: 0,
            pending_writes: BTreeMap::new(),
            awaiting_writes: BTreeSet::new(),
            verifying: BTreeSet::new(),
            left: 0,
            downloaded: 0,
            uploaded: 0,
            wasted: 0,
            hash_failures: 0,
            download_rate: RateMeter::new(now),
            upload_rate: RateMeter::new(now),
            next_stats: now,
            completed_announced: false,
            choke_dirty: false,
        };
        let mut torrent = torrent;
        torrent.recount_left();
        let complete = torrent.picker.is_finished();
        self.by_info_hash.insert(info_hash, id);
        self.torrents.insert(id, torrent);
        if complete {
            // Complete at start: a seed announces `started` with left=0 and never `completed`.
            if let Some(t) = self.torrents.get_mut(&id) {
                t.completed_announced = true;
            }
        }
        self.run_timers(now);
        Ok(id)
    }

    /// Adds a peer address to a torrent's list (a `--peer` flag, a magnet's `x.pe`).
    pub fn add_peer(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        addr: SocketAddr,
    ) -> Result<(), SessionError> {
        let t = self.command_on(now, torrent)?;
        t.peers.add(addr, PeerSource::Manual);
        self.run_timers(now);
        Ok(())
    }

    /// Pauses a torrent: closes its connections and announces `stopped`.
    pub fn pause(&mut self, now: Instant, torrent: TorrentId) -> Result<(), SessionError> {
        let t = self.command_on(now, torrent)?;
        if t.state == TorrentState::Running {
            t.state = TorrentState::Paused;
            t.announcer.stop(now);
            self.close_torrent_conns(now, torrent, "torrent paused");
        }
        self.run_timers(now);
        Ok(())
    }

    /// Resumes a paused torrent (not one stopped by a disk error: remove and re-add it).
    pub fn resume(&mut self, now: Instant, torrent: TorrentId) -> Result<(), SessionError> {
        let t = self.command_on(now, torrent)?;
        if t.state == TorrentState::Paused {
            let trackers = t.meta.trackers().to_vec();
            // The announcer cannot restart after `stop`: a new one announces `started` again.
            let (announcer, _) =
                Announcer::new(trackers, self.config.announce.clone(), self.rng.fork(), now);
            if let Some(t) = self.torrents.get_mut(&torrent) {
                t.state = TorrentState::Running;
                t.announcer = announcer;
                t.completed_announced = t.picker.is_finished();
            }
        }
        self.run_timers(now);
        Ok(())
    }

    /// Removes a torrent: closes its connections, announces `stopped`, then forgets it
    /// ([`Event::TorrentRemoved`]). Data on disk is the driver's business.
    pub fn remove(&mut self, now: Instant, torrent: TorrentId) -> Result<(), SessionError> {
        let t = self.command_on(now, torrent)?;
        if t.state != TorrentState::Removing {
            t.state = TorrentState::Removing;
            t.announcer.stop(now);
            self.remove_deadlines.insert(torrent, now + STOP_GRACE);
            self.close_torrent_conns(now, torrent, "torrent removed");
        }
        self.run_timers(now);
        Ok(())
    }

    /// Sets file priorities (0 = skip, 1..=7, default 4), one per file of the torrent in
    /// metainfo order; pieces shared by files take the highest of their priorities.
    pub fn set_file_priorities(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        priorities: &[u8],
    ) -> Result<(), SessionError> {
        let t = self.command_on(now, torrent)?;
        let files = t.meta.files();
        if files.len() != priorities.len() {
            return Err(SessionError::Unsupported(format!(
                "{} file priorities given for {} files",
                priorities.len(),
                files.len()
            )));
        }
        let spans: Vec<(u64, u8)> = files
            .iter()
            .zip(priorities)
            .map(|(f, p)| (f.length(), *p))
            .collect();
        t.picker
            .set_file_priorities(&spans)
            .map_err(|e| SessionError::Unsupported(e.to_string()))?;
        t.recount_left();
        let ids: Vec<ConnId> = t.conns.iter().copied().collect();
        for id in ids {
            self.update_interest(now, id);
        }
        self.run_timers(now);
        Ok(())
    }

    /// Changes the rate limits (payload bytes per second; `None` lifts a limit).
    pub fn set_limits(
        &mut self,
        now: Instant,
        upload: Option<u64>,
        download: Option<u64>,
    ) -> Result<(), SessionError> {
        self.begin_command(now)?;
        self.config.upload_limit = upload;
        self.config.download_limit = download;
        self.upload_limit.set_rate(now, upload);
        self.download_limit.set_rate(now, download);
        self.run_timers(now);
        Ok(())
    }

    /// Stops everything: closes every connection and announces `stopped` to every tracker;
    /// [`Event::ShutdownComplete`] follows when the announces are done (at most 10 s).
    pub fn shutdown(&mut self, now: Instant) -> Result<(), SessionError> {
        self.begin_command(now)?;
        if self.shutdown_deadline.is_none() {
            self.shutdown_deadline = Some(now + STOP_GRACE);
            let ids: Vec<TorrentId> = self.torrents.keys().copied().collect();
            for id in ids {
                if let Some(t) = self.torrents.get_mut(&id) {
                    if t.state == TorrentState::Running {
                        t.state = TorrentState::Paused;
                        t.announcer.stop(now);
                    }
                }
                self.close_torrent_conns(now, id, "shutting down");
            }
            // Incoming connections not yet attached to a torrent.
            let loose: Vec<ConnId> = self.conns.keys().copied().collect();
            for id in loose {
                self.close_conn(now, id, "shutting down".into());
            }
        }
        self.run_timers(now);
        Ok(())
    }

    /// A peer connected to us from `addr`: the connection's id, or an error if every slot is
    /// taken (then close the socket).
    pub fn accept(&mut self, now: Instant, addr: SocketAddr) -> Result<ConnId, SessionError> {
        self.begin_command(now)?;
        if self.shutdown_deadline.is_some() {
            return Err(SessionError::ShuttingDown);
        }
        if self.conns.len() >= self.config.max_connections {
            return Err(SessionError::ConnectionLimit(self.config.max_connections));
        }
        let id = self.new_conn_id();
        let peer = PeerConn::new_incoming(self.peer_config(), Some(addr.ip()), now);
        self.conns.insert(
            id,
            Conn {
                peer,
                addr,
                connecting: false,
                torrent: None,
                key: PeerKey(0),
                joined: false,
                reads_in_flight: 0,
                indexed: None,
                dirty: false,
            },
        );
        self.touched.insert(id);
        self.run_timers(now);
        Ok(id)
    }

    // ----- queries ---------------------------------------------------------------------

    /// A snapshot of a torrent's progress.
    pub fn stats(&self, torrent: TorrentId) -> Option<TorrentStats> {
        self.torrents.get(&torrent).map(|t| self.stats_of(t))
    }

    /// The verified pieces of a torrent.
    pub fn have(&self, torrent: TorrentId) -> Option<&Bitfield> {
        self.torrents.get(&torrent).map(|t| t.picker.have())
    }

    /// The joined peers of a torrent (handshake done), in connection order, with their flags
    /// and rates as of the last input; for a user interface, O(peers). `None`: no such torrent.
    pub fn peer_snapshots(&self, torrent: TorrentId) -> Option<Vec<PeerSnapshot>> {
        let t = self.torrents.get(&torrent)?;
        let now = self.now;
        Some(
            t.conns
                .iter()
                .filter_map(|id| self.conns.get(id).filter(|c| c.joined).map(|c| (id, c)))
                .map(|(id, c)| {
                    let p = &c.peer;
                    PeerSnapshot {
                        conn: *id,
                        addr: c.addr,
                        client: p.client().map(str::to_owned),
                        outgoing: p.is_outgoing(),
                        am_choking: p.am_choking(),
                        am_interested: p.am_interested(),
                        peer_choking: p.peer_choking(),
                        peer_interested: p.peer_interested(),
                        snubbed: p.is_snubbed(),
                        download_rate: p.download_rate(now),
                        upload_rate: p.upload_rate(now),
                        pieces: t.picker.peer_piece_count(c.key),
                    }
                })
                .collect(),
        )
    }

    /// Each piece of a torrent, in order: its state and how many connected peers have it
    /// (seeds included); for a piece map, O(pieces). `None`: no such torrent.
    pub fn piece_snapshots(&self, torrent: TorrentId) -> Option<Vec<(PieceView, u32)>> {
        let t = self.torrents.get(&torrent)?;
        let n = t.picker.geometry().piece_count();
        Some(
            (0..n)
                .map(|i| {
                    let view = match t.picker.piece_status(i) {
                        Some(PieceStatus::Have) => PieceView::Have,
                        Some(PieceStatus::Downloading { .. } | PieceStatus::Verifying) => {
                            PieceView::Downloading
                        }
                        Some(PieceStatus::Missing) | None => PieceView::Missing,
                    };
                    (view, t.picker.availability(i).unwrap_or(0))
                })
                .collect(),
        )
    }

    /// The torrents in the session.
    pub fn torrents(&self) -> impl Iterator<Item = TorrentId> + '_ {
        self.torrents.keys().copied()
    }

    /// Connections (established or not) in the session.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Checks the invariants written down in `torrent.rs` (and the picker's) for every torrent;
    /// O(state), for tests and fuzzing. `Err` names the first one that does not hold.
    pub fn check_invariants(&self) -> Result<(), String> {
        for t in self.torrents.values() {
            t.check_invariants()?;
            for c in &t.conns {
                match self.conns.get(c) {
                    Some(conn) if conn.torrent == Some(t.id) => {}
                    _ => return Err(format!("torrent {:?} lists stray conn {c:?}", t.id)),
                }
            }
        }
        for id in self.conns.keys() {
            if let Some(c) = self.conns.get(id) {
                c.peer
                    .check_bounds()
                    .map_err(|e| format!("conn {id:?}: {e}"))?;
            }
        }
        self.conns.check_index()?;
        let connecting = self.conns.values().filter(|c| c.connecting).count();
        if connecting != self.half_open {
            return Err(format!(
                "half_open {} but {connecting} connecting",
                self.half_open
            ));
        }
        Ok(())
    }

    // ----- the drain -------------------------------------------------------------------

    /// Reads a word from the cache lines that bytes received on `conn` touch first (the
    /// connection's head, its decoder and its state's head), and returns their sum; changes
    /// nothing. Safe Rust has no prefetch instruction: a driver holding inputs for several
    /// cold connections (a simulator running one node's batch of events) calls this for each
    /// first, so that their cache misses overlap instead of coming one after another.
    pub fn prefetch(&self, conn: ConnId) -> usize {
        self.conns
            .get(&conn)
            .map_or(0, |c| usize::from(c.joined) + c.peer.prefetch_for_receive())
    }

    /// Like [`Session::prefetch`], for the picker's records of the pieces that the `have`
    /// frames at the start of `bytes` name, in `torrent` (at most eight; it stops at the first
    /// other frame, and guesses if `bytes` does not start at a frame). Every `have` received
    /// reads its piece's record, a line picked at random from the torrent's.
    pub fn prefetch_haves(&self, torrent: TorrentId, bytes: &[u8]) -> usize {
        let Some(t) = self.torrents.get(&torrent) else {
            return 0;
        };
        let mut rest = bytes;
        let mut sum = 0;
        for _ in 0..8 {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                break;
            };
            let Some((body, tail)) = tail.split_at_checked(u32::from_be_bytes(*len) as usize)
            else {
                break;
            };
            let Ok(Message::Have(piece)) = Message::parse(body, &DecoderLimits::DEFAULT) else {
                break;
            };
            sum += t.picker.prefetch_piece(piece);
            rest = tail;
        }
        sum
    }

    /// Feeds one input at time `now`. Drain [`Session::poll_output`] before the next one.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), SessionError> {
        self.begin_command(now)?;
        match input {
            Input::Timeout => {}
            Input::Connected(id) => {
                self.known_conn(id)?;
                if let Some(c) = self.conns.get_mut(&id) {
                    if c.connecting {
                        c.connecting = false;
                        self.half_open = self.half_open.saturating_sub(1);
                    }
                    self.touched.insert(id);
                }
            }
            Input::ConnectFailed(id) => {
                self.known_conn(id)?;
                self.drop_conn(now, id, LeaveReason::ConnectFailed);
            }
            Input::Closed(id) => {
                self.known_conn(id)?;
                self.drop_conn(now, id, LeaveReason::Remote);
            }
            Input::Received(id, data) => {
                self.known_conn(id)?;
                self.on_received(now, id, data, None);
            }
            Input::ReceivedChunks(id, chunks) => {
                self.known_conn(id)?;
                for chunk in chunks {
                    self.on_received(now, id, chunk, Some(chunk));
                }
            }
            Input::Writable(id) => {
                self.known_conn(id)?;
                if self.conns.contains_key(&id) {
                    // Only say `Transmit` again: the bytes still sit in the send buffer, so
                    // nothing can be served until the driver takes them with `poll_transmit`,
                    // which serves the requests the upload watermark held back.
                    self.touched.insert(id);
                }
            }
            Input::TrackerResponse {
                torrent,
                request,
                body,
            } => {
                let t = self.torrent_mut(torrent)?;
                t.announcer.on_http_response(request, body, now);
            }
            Input::TrackerFailed {
                torrent,
                request,
                kind,
            } => {
                let t = self.torrent_mut(torrent)?;
                t.announcer.on_failure(request, kind, now);
            }
            Input::TrackerPacket {
                torrent,
                tracker,
                from,
                data,
            } => {
                let t = self.torrent_mut(torrent)?;
                t.announcer.on_udp_packet(tracker, from, data, now);
            }
            Input::BlockRead {
                conn,
                torrent,
                block,
                data,
            } => {
                self.known_conn(conn)?;
                self.torrent_known(torrent)?;
                self.on_block_read(now, conn, torrent, block, data);
            }
            Input::BlockWritten {
                torrent,
                block,
                result,
            } => {
                self.torrent_known(torrent)?;
                self.on_block_written(now, torrent, block, result);
            }
            Input::PieceVerified { torrent, piece, ok } => {
                self.torrent_known(torrent)?;
                self.on_piece_verified(now, torrent, piece, ok);
            }
        }
        self.run_timers(now);
        Ok(())
    }

    /// The next thing to do; [`Output::Timeout`] ends the drain.
    pub fn poll_output(&mut self) -> Output {
        if let Some(out) = self.outputs.pop_front() {
            return out;
        }
        crate::fifo::rewind_if_empty(&mut self.outputs);
        self.conns.refresh();
        let conns = self.conns.earliest();
        self.conn_timers_at = conns;
        Output::Timeout(self.deadline_with(conns))
    }

    /// Appends the bytes a connection has to send to `buf`; returns how many.
    ///
    /// Back-pressure: a driver calls this only when the socket can take more (not for every
    /// [`Output::Transmit`] at once), so the connection's bounded send buffer fills and the
    /// upload watermark holds back disk reads. Taking bytes frees room, so requests held back
    /// may be served now: this may queue outputs ([`Output::ReadBlock`]...), so drain
    /// [`Session::poll_output`] afterwards, as after an input.
    pub fn poll_transmit(&mut self, conn: ConnId, buf: &mut Vec<u8>) -> usize {
        self.take_transmit(conn, |peer| peer.poll_transmit(buf))
    }

    /// [`Session::poll_transmit`] without copying blocks, for drivers that can send shared
    /// buffers (a simulator, a vectored write): appends the connection's control bytes
    /// (messages and piece headers, small) to `ctrl` and its blocks (the [`Bytes`] of
    /// [`Input::BlockRead`]) to `blocks`, each with the offset in `ctrl` where it goes in the
    /// stream: the bytes are `ctrl[..at0]`, block 0, `ctrl[at0..at1]`, block 1, ...,
    /// `ctrl[at_last..]`. Returns how many bytes in all. Same back-pressure rules as
    /// `poll_transmit`.
    pub fn poll_transmit_parts(
        &mut self,
        conn: ConnId,
        ctrl: &mut Vec<u8>,
        blocks: &mut Vec<(usize, Bytes)>,
    ) -> usize {
        self.take_transmit(conn, |peer| peer.poll_transmit_parts(ctrl, blocks))
    }

    /// Takes `conn`'s bytes with `take`, then serves what the freed room allows. Most
    /// transmits are haves to peers that asked for nothing: serve() then would look the
    /// connection up again only to find no request, so it runs only for a peer with
    /// unserved requests.
    fn take_transmit(&mut self, conn: ConnId, take: impl FnOnce(&mut PeerConn) -> usize) -> usize {
        // Taking bytes moves no deadline (they were stamped when queued).
        let (n, waiting) = match self.conns.get_mut_later(&conn) {
            // Bytes are not sent before the connection is established.
            Some(c) if !c.connecting => (take(&mut c.peer), c.peer.has_unserved_requests()),
            _ => (0, false),
        };
        if n > 0 && waiting {
            // Without this the upload stalls whenever the buffer sat at the watermark and the
            // peer has nothing more to ask (its requests are all queued here): no input would
            // ever call serve() again until its requests time out.
            self.serve(self.now, conn);
            self.flush_touched();
        }
        n
    }

    /// When the session next needs [`Input::Timeout`] (also returned by the drain).
    pub fn next_deadline(&self) -> Instant {
        self.deadline_with(self.conns.earliest())
    }

    fn deadline_with(&self, conns: Instant) -> Instant {
        let mut next = conns;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        // A known peer that is ready to dial is a deadline only if a dial could happen now:
        // with every slot taken it would be "now" until a slot frees, and that takes an input
        // (or a connection's own timer), so reporting it would have the driver spin.
        let can_dial = self.half_open < self.config.max_half_open
            && self.conns.len() < self.config.max_connections;
        for t in self.torrents.values() {
            consider(t.announcer.next_deadline());
            if t.state == TorrentState::Running {
                if can_dial && t.conns.len() < self.config.max_connections_per_torrent {
                    consider(t.peers.next_deadline());
                }
                consider(Some(t.choker.next_deadline()));
                if !self.config.stats_interval.is_zero() {
                    consider(Some(t.next_stats));
                }
            }
        }
        consider(self.throttled_until);
        consider(self.shutdown_deadline);
        for d in self.remove_deadlines.values() {
            consider(Some(*d));
        }
        // Never in the past: a deadline that already passed means "now".
        next.max(self.now)
    }

    // ----- internals: bookkeeping ------------------------------------------------------

    fn begin_command(&mut self, now: Instant) -> Result<(), SessionError> {
        if now < self.now {
            return Err(SessionError::TimeWentBackwards {
                now,
                last: self.now,
            });
        }
        if !self.outputs.is_empty() {
            return Err(SessionError::NotDrained);
        }
        self.now = now;
        Ok(())
    }

    /// Starts a command on one torrent: the checks of [`Session::begin_command`], then the
    /// torrent.
    fn command_on(&mut self, now: Instant, id: TorrentId) -> Result<&mut Torrent, SessionError> {
        self.begin_command(now)?;
        self.torrents
            .get_mut(&id)
            .ok_or(SessionError::UnknownTorrent(id))
    }

    fn known_conn(&self, id: ConnId) -> Result<(), SessionError> {
        if id.0 >= self.next_conn {
            return Err(SessionError::UnknownConnection(id));
        }
        Ok(())
    }

    fn torrent_known(&self, id: TorrentId) -> Result<(), SessionError> {
        if id.0 >= self.next_torrent {
            return Err(SessionError::UnknownTorrent(id));
        }
        Ok(())
    }

    /// The torrent, or an error if the id was never issued; a removed torrent's late answers
    /// land on a dummy and are dropped by the callers that use `torrents.get_mut`.
    fn torrent_mut(&mut self, id: TorrentId) -> Result<&mut Torrent, SessionError> {
        self.torrent_known(id)?;
        self.torrents
            .get_mut(&id)
            .ok_or(SessionError::UnknownTorrent(id))
    }

    fn new_conn_id(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn = self.next_conn.saturating_add(1);
        id
    }

    fn peer_config(&self) -> crate::peer::PeerConfig {
        let mut cfg = self.config.peer.clone();
        cfg.peer_id = self.peer_id;
        cfg.listen_port = (self.config.listen_port != 0).then_some(self.config.listen_port);
        cfg
    }

    fn stats_of(&self, t: &Torrent) -> TorrentStats {
        let now = self.now;
        TorrentStats {
            torrent: t.id,
            state: t.state,
            pieces_have: t.picker.have_count(),
            pieces_total: t.picker.geometry().piece_count(),
            left: t.left(),
            downloaded: t.downloaded,
            uploaded: t.uploaded,
            wasted: t.wasted,
            download_rate: t.download_rate.rate(now),
            upload_rate: t.upload_rate.rate(now),
            peers_connected: t
                .conns
                .iter()
                .filter(|c| self.conns.get(c).is_some_and(|c| c.joined))
                .count(),
            peers_known: t.peers.len(),
            hash_failures: t.hash_failures,
        }
    }

    /// Closes a connection on our side: tells the driver, releases its state.
    fn close_conn(&mut self, now: Instant, id: ConnId, reason: String) {
        if !self.conns.contains_key(&id) {
            return;
        }
        self.outputs.push_back(Output::Close {
            conn: id,
            reason: reason.clone(),
        });
        self.drop_conn(now, id, LeaveReason::Closed(reason));
    }

    /// Forgets a connection (closed by us or by the remote).
    fn drop_conn(&mut self, now: Instant, id: ConnId, reason: LeaveReason) {
        /// What forgetting a connection needs from it.
        struct Gone {
            connecting: bool,
            torrent: Option<TorrentId>,
            key: PeerKey,
            holds_slot: bool,
            outgoing: bool,
            joined: bool,
            addr: SocketAddr,
        }
        let gone = self.conns.remove_with(&id, |c| Gone {
            connecting: c.connecting,
            torrent: c.torrent,
            key: c.key,
            holds_slot: !c.peer.am_choking(),
            outgoing: c.peer.is_outgoing(),
            joined: c.joined,
            addr: c.addr,
        });
        let Some(conn) = gone else {
            return;
        };
        if conn.connecting {
            self.half_open = self.half_open.saturating_sub(1);
        }
        let Some(tid) = conn.torrent else {
            return;
        };
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        t.conns.remove(&id);
        t.by_key.remove(&conn.key);
        t.picker.peer_gone(conn.key);
        // Only a peer holding a slot frees one when it leaves.
        t.choke_dirty |= conn.holds_slot;
        if conn.outgoing {
            if reason == LeaveReason::ConnectFailed {
                t.peers.connect_failed(conn.addr, now);
            } else {
                // A peer that got past the handshake and left is no failure (we may reconnect
                // later); one that never completed it counts against the address.
                let how = if conn.joined {
                    DisconnectReason::Normal
                } else {
                    DisconnectReason::Failed
                };
                t.peers.disconnected(conn.addr, now, how);
            }
        }
        if conn.joined {
            self.outputs.push_back(Output::Event(Event::PeerLeft {
                torrent: tid,
                conn: id,
                addr: conn.addr,
                reason,
            }));
        }
        // Its requests went back to the picker: others may take them.
        self.request_everywhere(now, tid);
    }

    fn close_torrent_conns(&mut self, now: Instant, torrent: TorrentId, reason: &str) {
        let ids: Vec<ConnId> = self
            .torrents
            .get(&torrent)
            .map(|t| t.conns.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.close_conn(now, id, reason.to_owned());
        }
    }

    // ----- internals: timers -----------------------------------------------------------

    /// Runs everything that is due at `now` and flushes per-connection outputs. Called after
    /// every input and command, so the outputs reflect the whole new state.
    fn run_timers(&mut self, now: Instant) {
        // Connections' own timers (keep-alive, request and handshake timeouts), from the
        // deadline index. They run only once the earliest deadline seen by the last drain has
        // come: a deadline that an input moved earlier makes that drain end in "now", and the
        // driver's Timeout at the same instant runs them.
        if now < self.conn_timers_at {
            self.run_other_timers(now);
            return;
        }
        let due = self.conns.due(now);
        for id in due {
            self.on_conn_timeout(now, id);
        }
        self.run_other_timers(now);
    }

    /// The timers of [`Session::run_timers`] other than the connections' own.
    fn run_other_timers(&mut self, now: Instant) {
        if self.throttled_until.is_some_and(|t| t <= now) {
            self.throttled_until = None;
            let ids: Vec<ConnId> = self.conns.keys().copied().collect();
            for id in ids {
                self.serve(now, id);
                self.request_more(now, id);
            }
        }
        let mut ids = std::mem::take(&mut self.torrent_scratch);
        ids.clear();
        ids.extend(self.torrents.keys().copied());
        for &id in &ids {
            self.torrent_timers(now, id);
        }
        self.torrent_scratch = ids;
        self.finish_removals(now);
        self.flush_touched();
    }

    fn torrent_timers(&mut self, now: Instant, id: TorrentId) {
        let Some(t) = self.torrents.get_mut(&id) else {
            return;
        };
        // Announces (also `stopped` ones for paused and removing torrents); this runs after
        // every input, and mostly nothing is due.
        if t.announcer.wants_poll(now) {
            let stats = AnnounceStats {
                info_hash: t.info.info_hash,
                peer_id: self.peer_id,
                port: self.config.listen_port,
                uploaded: t.uploaded,
                downloaded: t.downloaded,
                left: if t.announcer.is_done() { 0 } else { t.left() },
            };
            while let Some(action) = t.announcer.poll_action(now, &stats) {
                self.outputs.push_back(match action {
                    Action::Http { request, url, .. } => Output::HttpAnnounce {
                        torrent: id,
                        request,
                        url,
                    },
                    Action::UdpSend {
                        tracker,
                        host,
                        port,
                        packet,
                        ..
                    } => Output::UdpSend {
                        torrent: id,
                        tracker,
                        host,
                        port,
                        packet,
                    },
                });
            }
        }
        while let Some(outcome) = t.announcer.poll_outcome() {
            match outcome {
                Outcome::Peers { peers, .. } => {
                    if t.state == TorrentState::Running {
                        t.peers.add_many(peers, PeerSource::Tracker);
                    }
                }
                Outcome::Swarm { .. } => {}
                Outcome::Warning { url, message, .. } => {
                    self.outputs.push_back(Output::Event(Event::TrackerWarning {
                        torrent: id,
                        url,
                        message,
                    }));
                }
                Outcome::TrackerError { url, message, .. } => {
                    self.outputs.push_back(Output::Event(Event::TrackerError {
                        torrent: id,
                        url,
                        message,
                    }));
                }
            }
        }
        if t.state != TorrentState::Running {
            return;
        }
        // Most inputs leave the choker and the dialler with nothing to do: asked here, on the
        // torrent in hand, rather than by each looking the torrent up again to find that out.
        let choke_due = t.choke_dirty || t.choker.next_deadline() <= now;
        let may_connect = !choke_due
            && t.conns.len() < self.config.max_connections_per_torrent
            && t.peers.has_candidate(now)
            && self.half_open < self.config.max_half_open
            && self.conns.len() < self.config.max_connections;
        let stats_due = !self.config.stats_interval.is_zero() && t.next_stats <= now;
        if stats_due {
            t.next_stats = now + self.config.stats_interval;
            if let Some(t) = self.torrents.get(&id) {
                let stats = self.stats_of(t);
                self.outputs.push_back(Output::Event(Event::Stats(stats)));
            }
        }
        if choke_due {
            // Choking can close connections: the dialler then asks afresh.
            self.rechoke(now, id, false);
            self.connect_more(now, id);
        } else if may_connect {
            self.connect_more(now, id);
        }
    }

    /// Opens connections to known peers while the limits allow.
    fn connect_more(&mut self, now: Instant, id: TorrentId) {
        loop {
            if self.half_open >= self.config.max_half_open
                || self.conns.len() >= self.config.max_connections
            {
                return;
            }
            let Some(t) = self.torrents.get_mut(&id) else {
                return;
            };
            if t.state != TorrentState::Running
                || t.conns.len() >= self.config.max_connections_per_torrent
            {
                return;
            }
            let Some(addr) = t.peers.next_to_connect(now) else {
                return;
            };
            // Built only now (it clones strings): this runs after every input.
            let peer_config = self.peer_config();
            let Some(t) = self.torrents.get_mut(&id) else {
                return;
            };
            let id_conn = ConnId(self.next_conn);
            self.next_conn = self.next_conn.saturating_add(1);
            let peer = PeerConn::new_outgoing(peer_config, t.info, Some(addr.ip()), now);
            let key = t.new_key(id_conn);
            t.conns.insert(id_conn);
            self.conns.insert(
                id_conn,
                Conn {
                    peer,
                    addr,
                    connecting: true,
                    torrent: Some(id),
                    key,
                    joined: false,
                    reads_in_flight: 0,
                    indexed: None,
                    dirty: false,
                },
            );
            self.half_open += 1;
            self.outputs.push_back(Output::Connect {
                conn: id_conn,
                addr,
            });
        }
    }

    fn finish_removals(&mut self, now: Instant) {
        let done: Vec<TorrentId> = self
            .remove_deadlines
            .iter()
            .filter(|(id, deadline)| {
                **deadline <= now || self.torrents.get(id).is_none_or(|t| t.announcer.is_done())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.remove_deadlines.remove(&id);
            if let Some(t) = self.torrents.remove(&id) {
                self.by_info_hash.remove(&t.info.info_hash);
                self.outputs
                    .push_back(Output::Event(Event::TorrentRemoved { torrent: id }));
            }
        }
        if let Some(deadline) = self.shutdown_deadline {
            let all_done = self.torrents.values().all(|t| t.announcer.is_done());
            if !self.shutdown_reported && (all_done || deadline <= now) {
                self.shutdown_reported = true;
                self.outputs
                    .push_back(Output::Event(Event::ShutdownComplete));
            }
        }
    }

    /// Queues `Transmit` for connections with bytes to send, and closes those whose machine
    /// closed itself.
    fn flush_touched(&mut self) {
        let mut touched = std::mem::take(&mut self.flushing);
        self.touched.take_into(&mut touched);
        for &id in &touched {
            let Some(c) = self.conns.get(&id) else {
                continue;
            };
            if let Some(reason) = c.peer.close_reason() {
                let reason = reason.to_string();
                self.close_conn(self.now, id, reason);
                continue;
            }
            if !c.connecting && c.peer.wants_transmit() {
                self.outputs.push_back(Output::Transmit(id));
            }
        }
        // Closing may have touched others (cancels, interest changes).
        if !self.touched.is_empty() {
            self.touched.take_into(&mut touched);
            for &id in &touched {
                if let Some(c) = self.conns.get(&id) {
                    if !c.connecting && c.peer.wants_transmit() && c.peer.close_reason().is_none() {
                        self.outputs.push_back(Output::Transmit(id));
                    }
                }
            }
        }
        self.flushing = touched;
    }

    fn on_conn_timeout(&mut self, now: Instant, id: ConnId) {
        self.touched.insert(id);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let key = conn.key;
        let tid = conn.torrent;
        let follow = match conn.peer.handle_timeout(now) {
            Ok(Some(PeerEvent::RequestsTimedOut(blocks))) => {
                if let Some(t) = tid.and_then(|t| self.torrents.get_mut(&t)) {
                    for b in blocks {
                        t.picker.request_timed_out(key, *b);
                    }
                }
                FollowUp::RequestEverywhere
            }
            Ok(_) => FollowUp::Nothing,
            Err(reason) => FollowUp::Close(reason.to_string()),
        };
        self.follow_up(now, id, follow);
    }

    // ----- internals: connections ------------------------------------------------------

    /// Feeds received bytes to the connection; `shared` is the buffer they are, if the
    /// driver gave one, so that blocks inside it are handed to the disk without a copy.
    fn on_received(&mut self, now: Instant, id: ConnId, mut data: &[u8], shared: Option<&Bytes>) {
        self.touched.insert(id);
        loop {
            // Taken without noting it dirty: bytes that complete no message, and a `have`,
            // only move the connection's deadlines later (its idle timer), which leaves its
            // index entry a lower bound (conns.rs); a refresh would re-read the deadline, and
            // the timeouts and the request pipeline behind it, only to keep the entry. Every
            // other message notes it below. Most inputs of a large swarm are single haves.
            let Some(conn) = self.conns.get_mut_later(&id) else {
                return;
            };
            let tid = conn.torrent;
            let key = conn.key;
            let fast = conn.peer.negotiated().fast();
            let event = match conn.peer.handle_bytes(now, &mut data) {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(reason) => {
                    let reason = reason.to_string();
                    self.close_conn(now, id, reason);
                    return;
                }
            };
            let later_only = matches!(event, PeerEvent::Have(_));
            let torrent = tid.and_then(|t| self.torrents.get_mut(&t));
            let follow = apply_event(now, torrent, key, fast, &event, shared, &mut self.outputs);
            drop(event);
            if !later_only {
                self.conns.mark_dirty(&id);
            }
            self.follow_up(now, id, follow);
        }
    }

    /// Work on the connection and the session after an event was applied to the torrent.
    fn follow_up(&mut self, now: Instant, id: ConnId, follow: FollowUp) {
        match follow {
            FollowUp::Nothing => {}
            FollowUp::Close(reason) => self.close_conn(now, id, reason),
            FollowUp::InfoHash(info_hash) => self.on_info_hash(now, id, info_hash),
            FollowUp::HandshakeDone { peer_id, client } => {
                self.on_handshake_done(now, id, peer_id, client)
            }
            FollowUp::Availability => {
                // The common case in a swarm: we are interested already (a wanted piece can
                // only keep us so) and the peer chokes us (requests wait for its unchoke).
                let settled = self
                    .conns
                    .get(&id)
                    .is_some_and(|c| c.peer.am_interested() && c.peer.peer_choking());
                if !settled {
                    self.update_interest(now, id);
                    self.request_more(now, id);
                }
            }
            FollowUp::Request => self.request_more(now, id),
            FollowUp::RequestEverywhere => {
                if let Some(tid) = self.conns.get(&id).and_then(|c| c.torrent) {
                    self.request_everywhere(now, tid);
                }
            }
            FollowUp::Interest => {
                let Some(c) = self.conns.get(&id) else {
                    return;
                };
                if let Some(t) = c.torrent.and_then(|tid| self.torrents.get_mut(&tid)) {
                    // An interim call only frees the slot of a peer that lost interest and
                    // fills free slots: with every slot taken, a choked peer's interest
                    // changes nothing until the next round.
                    t.choke_dirty |= !c.peer.am_choking()
                        || (c.peer.peer_interested() && t.choker.has_free_slot());
                }
            }
            FollowUp::Serve => self.serve(now, id),
            FollowUp::UploadOnly => {
                // Neither end downloads from the other: nothing to trade.
                let finished = self
                    .conns
                    .get(&id)
                    .and_then(|c| c.torrent)
                    .and_then(|tid| self.torrents.get(&tid))
                    .is_some_and(|t| t.picker.is_finished());
                if finished && self.config.drop_seeds_when_complete {
                    self.close_conn(now, id, "both ends only upload".into());
                }
            }
            FollowUp::Block {
                piece,
                cancel,
                block,
                piece_complete,
            } => {
                let Some(tid) = self.conns.get(&id).and_then(|c| c.torrent) else {
                    return;
                };
                let mut cancel_conns = Vec::new();
                if let Some(t) = self.torrents.get_mut(&tid) {
                    for k in cancel.iter() {
                        if let Some(c) = t.by_key.get(&k) {
                            cancel_conns.push(*c);
                        }
                    }
                    if piece_complete {
                        if t.pending_writes.contains_key(&piece) {
                            t.awaiting_writes.insert(piece);
                        } else {
                            t.verifying.insert(piece);
                            self.outputs.push_back(Output::VerifyPiece {
                                torrent: tid,
                                piece,
                            });
                        }
                    }
                }
                for c in cancel_conns {
                    if let Some(conn) = self.conns.get_mut(&c) {
                        // A failed send closes the connection; flush_touched reports it.
                        let _ = conn.peer.send_cancel(now, block);
                        self.touched.insert(c);
                    }
                }
                self.request_more(now, id);
            }
        }
    }

    fn on_info_hash(&mut self, now: Instant, id: ConnId, info_hash: [u8; 20]) {
        let tid = self.by_info_hash.get(&info_hash).copied();
        let per_torrent = self.config.max_connections_per_torrent;
        let Some((tid, t)) = tid.and_then(|tid| self.torrents.get_mut(&tid).map(|t| (tid, t)))
        else {
            if let Some(c) = self.conns.get_mut(&id) {
                let reason = c.peer.reject().to_string();
                self.close_conn(now, id, reason);
            }
            return;
        };
        if t.state != TorrentState::Running {
            self.close_conn(now, id, "torrent is not running".into());
            return;
        }
        if t.conns.len() >= per_torrent {
            self.close_conn(
                now,
                id,
                format!("torrent already has {per_torrent} connections"),
            );
            return;
        }
        let info = t.info;
        let key = t.new_key(id);
        t.conns.insert(id);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.torrent = Some(tid);
        c.key = key;
        if let Err(reason) = c.peer.accept(now, info) {
            self.close_conn(now, id, reason.to_string());
        }
    }

    fn on_handshake_done(
        &mut self,
        now: Instant,
        id: ConnId,
        peer_id: [u8; 20],
        client: Option<String>,
    ) {
        let Some(tid) = self.conns.get(&id).and_then(|c| c.torrent) else {
            return;
        };
        // One connection per peer id per torrent: both ends may have dialled each other.
        let duplicate = self.torrents.get(&tid).is_some_and(|t| {
            t.conns.iter().any(|other| {
                *other != id
                    && self
                        .conns
                        .get(other)
                        .is_some_and(|o| o.joined && o.peer.peer_id() == Some(peer_id))
            })
        });
        if duplicate {
            self.close_conn(now, id, "already connected to this peer".into());
            return;
        }
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.joined = true;
        if c.peer.is_outgoing() {
            t.peers.connected(c.addr);
        }
        let sent = c
            .peer
            .send_bitfield(now, t.picker.have())
            .and_then(|_| c.peer.send_allowed_fast_set(now).map(|_| ()));
        let addr = c.addr;
        self.outputs.push_back(Output::Event(Event::PeerJoined {
            torrent: tid,
            conn: id,
            addr,
            client,
        }));
        // A new peer is not interested yet: the choker has nothing to do until it is (its
        // `interested` is an interest change, below).
        if let Err(reason) = sent {
            self.close_conn(now, id, reason.to_string());
        }
    }

    /// Sends interested / not interested when our interest in the peer changed.
    fn update_interest(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(t) = c.torrent.and_then(|t| self.torrents.get(&t)) else {
            return;
        };
        let want = t.state == TorrentState::Running && t.picker.is_interesting(c.key);
        let result = match (want, c.peer.am_interested()) {
            (true, false) => c.peer.send_interested(now),
            (false, true) => c.peer.send_not_interested(now),
            _ => Ok(()),
        };
        self.touched.insert(id);
        if let Err(reason) = result {
            self.close_conn(now, id, reason.to_string());
        }
    }

    /// Issues requests to a peer that unchoked us, as many as its pipeline wants.
    fn request_more(&mut self, now: Instant, id: ConnId) {
        // Most calls (every connection after a choke or a departure) stop here: looked at
        // without `get_mut`, which would have the connection's deadline checked again.
        let can_ask = self
            .conns
            .get(&id)
            .is_some_and(|c| c.joined && !c.peer.peer_choking() && c.peer.am_interested());
        if !can_ask {
            return;
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(t) = c.torrent.and_then(|t| self.torrents.get_mut(&t)) else {
            return;
        };
        if t.state != TorrentState::Running {
            return;
        }
        let mut slots = c.peer.request_slots(now);
        if self.download_limit.rate().is_some() {
            // Requests are the download throttle: ask only for what the bucket allows.
            let allowed = self.download_limit.available(now) / u64::from(BLOCK_SIZE);
            let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
            if allowed < slots {
                slots = allowed;
                let wake = self
                    .download_limit
                    .next_available(now, u64::from(BLOCK_SIZE));
                self.throttled_until = Some(self.throttled_until.map_or(wake, |t| t.min(wake)));
            }
        }
        if slots == 0 {
            return;
        }
        self.scratch.clear();
        t.picker.pick(c.key, slots, &mut self.scratch);
        let mut failed = None;
        for block in self.scratch.drain(..) {
            match c.peer.send_request(now, block) {
                Ok(true) => {
                    if self.download_limit.rate().is_some() {
                        self.download_limit.charge(now, u64::from(block.length));
                    }
                }
                Ok(false) => {
                    t.picker.request_rejected(c.key, block);
                }
                Err(reason) => {
                    // The rest stay recorded in the picker; closing releases them all.
                    failed = Some(reason.to_string());
                    break;
                }
            }
        }
        self.touched.insert(id);
        if let Some(reason) = failed {
            self.close_conn(now, id, reason);
        }
    }

    fn request_everywhere(&mut self, now: Instant, tid: TorrentId) {
        let ids: Vec<ConnId> = self
            .torrents
            .get(&tid)
            .map(|t| t.conns.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.request_more(now, id);
        }
    }

    /// Hands queued requests from the peer to the disk, within the upload limit.
    fn serve(&mut self, now: Instant, id: ConnId) {
        const MAX_READS_PER_CONN: usize = 8;
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let Some(tid) = c.torrent else {
                return;
            };
            if c.reads_in_flight >= MAX_READS_PER_CONN {
                return;
            }
            if self.upload_limit.rate().is_some()
                && self.upload_limit.available(now) < u64::from(BLOCK_SIZE)
            {
                let wake = self.upload_limit.next_available(now, u64::from(BLOCK_SIZE));
                self.throttled_until = Some(self.throttled_until.map_or(wake, |t| t.min(wake)));
                return;
            }
            let Some(block) = c.peer.poll_upload() else {
                return;
            };
            let have = self
                .torrents
                .get(&tid)
                .is_some_and(|t| t.picker.have().get(block.index));
            if !have {
                let result = c.peer.reject_request(now, block);
                self.touched.insert(id);
                if let Err(reason) = result {
                    self.close_conn(now, id, reason.to_string());
                    return;
                }
                continue;
            }
            if self.upload_limit.rate().is_some() {
                self.upload_limit.charge(now, u64::from(block.length));
            }
            c.reads_in_flight += 1;
            self.outputs.push_back(Output::ReadBlock {
                conn: id,
                torrent: tid,
                block,
            });
        }
    }

    fn on_block_read(
        &mut self,
        now: Instant,
        id: ConnId,
        tid: TorrentId,
        block: BlockRequest,
        data: Result<Bytes, String>,
    ) {
        let Some(c) = self.conns.get_mut(&id) else {
            return; // the peer left meanwhile
        };
        c.reads_in_flight = c.reads_in_flight.saturating_sub(1);
        match data {
            Ok(bytes) => {
                let result = c.peer.send_block(now, block, bytes);
                self.touched.insert(id);
                match result {
                    Ok(true) => {
                        if let Some(t) = self.torrents.get_mut(&tid) {
                            t.uploaded = t.uploaded.saturating_add(u64::from(block.length));
                            t.upload_rate.record(now, u64::from(block.length));
                        }
                    }
                    Ok(false) => {}
                    Err(reason) => {
                        self.close_conn(now, id, reason.to_string());
                        return;
                    }
                }
                self.serve(now, id);
            }
            Err(message) => {
                let _ = c.peer.reject_request(now, block);
                self.torrent_error(
                    now,
                    tid,
                    format!(
                        "reading block {}/{} failed: {message}",
                        block.index, block.begin
                    ),
                );
            }
        }
    }

    fn on_block_written(
        &mut self,
        now: Instant,
        tid: TorrentId,
        block: BlockRequest,
        result: Result<(), String>,
    ) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let piece = block.index;
        let remaining = match t.pending_writes.get_mut(&piece) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => return, // not ours (a stale answer)
        };
        if remaining == 0 {
            t.pending_writes.remove(&piece);
        }
        if let Err(message) = result {
            self.torrent_error(
                now,
                tid,
                format!(
                    "writing block {}/{} failed: {message}",
                    block.index, block.begin
                ),
            );
            return;
        }
        if remaining == 0 && t.awaiting_writes.remove(&piece) {
            t.verifying.insert(piece);
            self.outputs.push_back(Output::VerifyPiece {
                torrent: tid,
                piece,
            });
        }
    }

    fn on_piece_verified(&mut self, now: Instant, tid: TorrentId, piece: u32, ok: bool) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if !t.verifying.remove(&piece) {
            return; // not asked for (stale, or the torrent errored meanwhile)
        }
        let outcome = match t.picker.piece_verified(piece, ok) {
            Ok(outcome) => outcome,
            Err(_) => return,
        };
        match outcome {
            VerifyOutcome::Passed => {
                t.piece_passed(piece);
                self.outputs.push_back(Output::Event(Event::PieceDone {
                    torrent: tid,
                    piece,
                }));
                let finished = t.picker.is_finished();
                let redundant = self.config.send_redundant_have;
                // Only peers without the piece get a `have` (see
                // `SessionConfig::send_redundant_have`): a holder's interest in us cannot
                // change from it. The picker's pass over its peers (in `piece_verified`) already read
                // every bitfield and names the holders in key order, so a merge with the
                // torrent's connections in key order skips them untouched: in a large swarm
                // most peers hold most pieces.
                let holders: &[PeerKey] = if redundant {
                    &[]
                } else {
                    t.picker.holders_of_changed()
                };
                let mut holders = holders.iter().peekable();
                for (key, id) in &t.by_key {
                    while holders.next_if(|h| *h < key).is_some() {}
                    if holders.peek() == Some(&key) {
                        continue;
                    }
                    // A have moves only the keep-alive deadline, and only later, unless it
                    // starts a batch (`PeerConfig::have_batch`): then its flush is a new,
                    // earlier deadline for the index. A held have leaves nothing to transmit.
                    if let Some(c) = self.conns.get_mut_later(id) {
                        if c.joined {
                            match c.peer.send_have(now, piece) {
                                Ok(HaveSent::Held { first: false }) => {}
                                Ok(HaveSent::Held { first: true }) => self.conns.mark_dirty(id),
                                // Queued, or failed: flush_touched transmits or closes.
                                _ => self.touched.insert(*id),
                            }
                        }
                    }
                }
                // Our interest changed only in the peers the picker names.
                let mut flipped = std::mem::take(&mut self.id_scratch);
                flipped.clear();
                flipped.extend(
                    t.picker
                        .interest_flips()
                        .iter()
                        .filter_map(|k| t.by_key.get(k).copied()),
                );
                for id in &flipped {
                    self.update_interest(now, *id);
                }
                self.id_scratch = flipped;
                if finished {
                    self.on_complete(now, tid);
                }
            }
            VerifyOutcome::Failed { ban, .. } => {
                t.hash_failures = t.hash_failures.saturating_add(1);
                let piece_len = t.picker.geometry().piece_size(piece).unwrap_or(0);
                t.wasted = t.wasted.saturating_add(u64::from(piece_len));
                t.downloaded = t.downloaded.saturating_sub(u64::from(piece_len));
                self.outputs.push_back(Output::Event(Event::HashFailed {
                    torrent: tid,
                    piece,
                }));
                let banned: Vec<(ConnId, SocketAddr)> = ban
                    .iter()
                    .filter_map(|k| t.by_key.get(k))
                    .filter_map(|c| self.conns.get(c).map(|conn| (*c, conn.addr)))
                    .collect();
                for (c, addr) in banned {
                    if let Some(t) = self.torrents.get_mut(&tid) {
                        t.peers.ban(addr);
                    }
                    self.outputs
                        .push_back(Output::Event(Event::PeerBanned { torrent: tid, addr }));
                    self.close_conn(now, c, "banned: sent data that failed hash checks".into());
                }
                self.request_everywhere(now, tid);
            }
        }
    }

    fn on_complete(&mut self, now: Instant, tid: TorrentId) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        self.outputs
            .push_back(Output::Event(Event::TorrentComplete { torrent: tid }));
        if !t.completed_announced {
            t.completed_announced = true;
            t.announcer.torrent_completed(now);
        }
        t.choke_dirty = true;
        let seed = t.picker.have().all();
        let drop = self.config.drop_seeds_when_complete;
        let ids: Vec<ConnId> = t.conns.iter().copied().collect();
        let mut close = Vec::new();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if !c.joined {
                continue;
            }
            if drop && t.picker.is_seed(c.key) {
                close.push((id, "both ends are seeds"));
            } else if drop && c.peer.peer_upload_only() {
                close.push((id, "both ends only upload"));
            } else if seed {
                // BEP 21: say that we only upload now. Our peers cannot tell from our haves
                // alone (none is sent for a piece the peer already had), and a peer that is a
                // seed too then closes: nothing to trade.
                let only = ExtensionHandshake {
                    upload_only: Some(true),
                    ..ExtensionHandshake::default()
                };
                // A failed send closes the connection; flush_touched reports it.
                let _ = c.peer.send_extension_handshake(now, &only);
                self.touched.insert(id);
            }
        }
        for (c, reason) in close {
            self.close_conn(now, c, reason.into());
        }
    }

    fn torrent_error(&mut self, now: Instant, tid: TorrentId, message: String) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if t.state != TorrentState::Running {
            return;
        }
        t.state = TorrentState::Errored;
        t.announcer.stop(now);
        // Verified pieces stay verified; pieces in flight will be fetched again after a restart.
        t.pending_writes.clear();
        t.awaiting_writes.clear();
        t.verifying.clear();
        self.outputs.push_back(Output::Event(Event::TorrentError {
            torrent: tid,
            message,
        }));
        self.close_torrent_conns(now, tid, "torrent stopped by a disk error");
    }

    /// A choke round when due (every 10 s), or an interim call when something happened that
    /// one could act on: a peer holding a slot left or lost interest, or a peer became
    /// interested while a slot was free (`choke_dirty`). Anything else would leave the
    /// decision as it is, so the call is skipped: in a large swarm peers change interest all
    /// the time, and every call reads every connection's rates. One consequence: a holder that
    /// becomes snubbed keeps its slot until the next round (libtorrent, too, checks snubbing
    /// once a round).
    fn rechoke(&mut self, now: Instant, tid: TorrentId, force: bool) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let due = t.choker.next_deadline() <= now;
        if !(due || force || t.choke_dirty) {
            return;
        }
        t.choke_dirty = false;
        let mode = if t.picker.is_finished() {
            Mode::Seed
        } else {
            Mode::Leech
        };
        self.choke_stats.clear();
        for (id, c) in self.conns.in_order(&t.conns) {
            if c.joined {
                self.choke_stats.push(c.peer.choker_stats(id, now, mode));
            }
        }
        t.choker
            .rechoke_into(now, mode, &self.choke_stats, &mut self.choke_decision);
        let decision = std::mem::take(&mut self.choke_decision);
        for id in &decision.choke {
            if let Some(c) = self.conns.get_mut(id) {
                let _ = c.peer.send_choke(now);
                self.touched.insert(*id);
            }
        }
        for id in &decision.unchoke {
            if let Some(c) = self.conns.get_mut(id) {
                let _ = c.peer.send_unchoke(now);
                self.touched.insert(*id);
            }
        }
        self.choke_decision = decision;
        // Choking rejects or drops queued requests; unchoking lets them be served.
        let ids: Vec<ConnId> = self.choke_decision.unchoke.clone();
        for id in ids {
            self.serve(now, id);
        }
    }
}

/// Applies a connection's event to its torrent (the picker, counters, disk outputs) while the
/// event still borrows the connection, and says what to do with the connection afterwards.
fn apply_event(
    now: Instant,
    torrent: Option<&mut Torrent>,
    key: PeerKey,
    fast: bool,
    event: &PeerEvent<'_>,
    shared: Option<&Bytes>,
    outputs: &mut VecDeque<Output>,
) -> FollowUp {
    if let PeerEvent::InfoHash { info_hash, .. } = event {
        return FollowUp::InfoHash(*info_hash);
    }
    let Some(t) = torrent else {
        return FollowUp::Close("peer spoke before naming a torrent".into());
    };
    match event {
        PeerEvent::InfoHash { .. } => FollowUp::Nothing,
        PeerEvent::HandshakeDone {
            peer_id, client, ..
        } => FollowUp::HandshakeDone {
            peer_id: *peer_id,
            client: client.map(str::to_owned),
        },
        PeerEvent::Bitfield(bits) => match t.picker.peer_bitfield(key, bits) {
            Ok(_) => FollowUp::Availability,
            Err(e) => FollowUp::Close(format!("peer's bitfield was refused: {e}")),
        },
        PeerEvent::HaveAll => {
            t.picker.peer_have_all(key);
            FollowUp::Availability
        }
        PeerEvent::HaveNone => {
            t.picker.peer_have_none(key);
            FollowUp::Availability
        }
        PeerEvent::Have(index) => match t.picker.peer_have(key, *index) {
            Ok(NewHave::Wanted) => FollowUp::Availability,
            // A repeated have changes nothing, and a piece we do not want changes neither our
            // interest nor what we can ask for: in a swarm most haves are for pieces we
            // already have.
            Ok(NewHave::Known | NewHave::Unwanted) => FollowUp::Nothing,
            Err(e) => FollowUp::Close(format!("peer's have was refused: {e}")),
        },
        PeerEvent::Choked { released } => {
            for b in released.iter() {
                t.picker.request_rejected(key, *b);
            }
            FollowUp::RequestEverywhere
        }
        PeerEvent::Unchoked => FollowUp::Request,
        PeerEvent::Interested | PeerEvent::NotInterested => FollowUp::Interest,
        PeerEvent::Request(_) => FollowUp::Serve,
        PeerEvent::Block { block, data } | PeerEvent::LateBlock { block, data } => {
            accept_block(now, t, key, *block, data, shared, outputs)
        }
        PeerEvent::UnrequestedBlock { block, data } => {
            if fast {
                // BEP 6: a peer that sends a piece never requested must be disconnected.
                return FollowUp::Close(format!(
                    "peer sent block {}/{} that was never requested",
                    block.index, block.begin
                ));
            }
            // Without the fast extension a block released by a choke may still arrive.
            accept_block(now, t, key, *block, data, shared, outputs)
        }
        PeerEvent::Rejected(block) => {
            t.picker.request_rejected(key, *block);
            FollowUp::Request
        }
        PeerEvent::RequestsTimedOut(blocks) => {
            for b in blocks.iter() {
                t.picker.request_timed_out(key, *b);
            }
            FollowUp::RequestEverywhere
        }
        PeerEvent::ExtensionHandshake(hs) if hs.upload_only == Some(true) => FollowUp::UploadOnly,
        PeerEvent::RequestRefused { .. }
        | PeerEvent::Cancelled { .. }
        | PeerEvent::LateReject(_)
        | PeerEvent::AllowedFast { .. }
        | PeerEvent::Suggest(_)
        | PeerEvent::Port(_)
        | PeerEvent::ExtensionHandshake(_)
        | PeerEvent::Extended { .. }
        | PeerEvent::Unknown { .. }
        | PeerEvent::KeepAlive => FollowUp::Nothing,
    }
}

fn accept_block(
    now: Instant,
    t: &mut Torrent,
    key: PeerKey,
    block: BlockRequest,
    data: &[u8],
    shared: Option<&Bytes>,
    outputs: &mut VecDeque<Output>,
) -> FollowUp {
    let len = u64::from(block.length);
    match t.picker.block_received(key, block) {
        BlockOutcome::Accepted {
            cancel,
            piece_complete,
        } => {
            t.downloaded = t.downloaded.saturating_add(len);
            t.download_rate.record(now, len);
            *t.pending_writes.entry(block.index).or_insert(0) += 1;
            outputs.push_back(Output::WriteBlock {
                torrent: t.id,
                block,
                data: share_or_copy(data, shared),
            });
            FollowUp::Block {
                piece: block.index,
                cancel,
                block,
                piece_complete,
            }
        }
        BlockOutcome::Duplicate | BlockOutcome::Unrequested => {
            t.wasted = t.wasted.saturating_add(len);
            FollowUp::Request
        }
        BlockOutcome::Invalid => FollowUp::Close(format!(
            "peer sent block {}/{} of {} bytes that is not a block of this torrent",
            block.index, block.begin, block.length
        )),
    }
}

/// `data` as `Bytes`: a slice of `shared` when it lies inside it (the driver gave the input
/// as shared chunks), else a copy (the input is borrowed and the write outlives it; or the
/// block was split across chunks and reassembled in the connection's decoder).
fn share_or_copy(data: &[u8], shared: Option<&Bytes>) -> Bytes {
    let inside = |s: &&Bytes| {
        let (outer, inner) = (s.as_ptr_range(), data.as_ptr_range());
        outer.start <= inner.start && inner.end <= outer.end
    };
    match shared.filter(inside) {
        // `slice_ref` panics unless `data` is inside `s`, which was just checked.
        Some(s) if !data.is_empty() => s.slice_ref(data),
        _ => Bytes::copy_from_slice(data),
    }
}

fn bucket(now: Instant, rate: Option<u64>) -> TokenBucket {
    match rate {
        Some(r) => TokenBucket::new(now, Some(r), LIMIT_BURST.max(r / 10)),
        None => TokenBucket::unlimited(now),
    }
}
