//! The Session's vocabulary: ids, inputs, outputs, events, configuration and errors.

use core::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::announce::{AnnounceConfig, FailureKind, RequestId, TrackerId};
use crate::choker::ChokerConfig;
use crate::metainfo::InfoHash;
use crate::peer::PeerConfig;
use crate::peer_list::PeerListConfig;
use crate::picker::PickerConfig;
use crate::time::Instant;
use crate::wire::BlockRequest;

/// A torrent in the Session; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TorrentId(pub u32);

/// A connection in the Session (outgoing or incoming); never reused, so an input for a
/// connection that closed meanwhile is recognised as stale and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Everything the Session can be told, each with the `now` passed beside it.
#[derive(Debug)]
pub enum Input<'a> {
    /// Time passed: the deadline from [`Output::Timeout`] (or any later time) was reached.
    Timeout,
    /// An outgoing connection from [`Output::Connect`] is established.
    Connected(ConnId),
    /// An outgoing connection from [`Output::Connect`] could not be made.
    ConnectFailed(ConnId),
    /// Bytes arrived on a connection, in order; any chunking.
    Received(ConnId, &'a [u8]),
    /// Bytes arrived on a connection as shared chunks, in order: [`Input::Received`] for
    /// drivers that hold received bytes as [`Bytes`] (a simulator handing on what the other
    /// end sent). A block whose bytes lie inside one chunk is written as a slice of it
    /// ([`Output::WriteBlock`]), not copied. Give all chunks of one delivery in one input:
    /// each input also runs the timers.
    ReceivedChunks(ConnId, &'a [Bytes]),
    /// The connection was closed by the peer or the network (not by an [`Output::Close`]).
    Closed(ConnId),
    /// The socket can take bytes again. A driver that applies back-pressure (it leaves an
    /// [`Output::Transmit`] unanswered while the socket's buffer is full) says this when the
    /// buffer drains: the Session says `Transmit` again if it has bytes, and taking them with
    /// [`super::Session::poll_transmit`] lets the requests held back at the upload watermark go
    /// to disk.
    Writable(ConnId),
    /// The HTTP tracker answered an [`Output::HttpAnnounce`] with a body (HTTP 200).
    TrackerResponse {
        /// The torrent.
        torrent: TorrentId,
        /// The request being answered.
        request: RequestId,
        /// The response body.
        body: &'a [u8],
    },
    /// An announce failed: network error, timeout, HTTP status other than 200.
    TrackerFailed {
        /// The torrent.
        torrent: TorrentId,
        /// The request that failed.
        request: RequestId,
        /// What went wrong.
        kind: FailureKind,
    },
    /// A UDP datagram arrived from a tracker's address (BEP 15).
    TrackerPacket {
        /// The torrent.
        torrent: TorrentId,
        /// The tracker the packet came from.
        tracker: TrackerId,
        /// The sender's address.
        from: SocketAddr,
        /// The datagram.
        data: &'a [u8],
    },
    /// A block asked for by [`Output::ReadBlock`] was read, or the read failed.
    BlockRead {
        /// The connection that requested it.
        conn: ConnId,
        /// The torrent.
        torrent: TorrentId,
        /// Which block.
        block: BlockRequest,
        /// Its bytes, or what went wrong. Shared, not borrowed: the block waits in the
        /// connection's send buffer as it is (a driver that reads into a `Vec` hands it over
        /// with `Bytes::from`, no copy), and leaves through [`super::Session::poll_transmit`]
        /// (one copy into the socket buffer) or [`super::Session::poll_transmit_parts`]
        /// (none).
        data: Result<Bytes, String>,
    },
    /// A block given in [`Output::WriteBlock`] is on disk, or the write failed.
    BlockWritten {
        /// The torrent.
        torrent: TorrentId,
        /// Which block.
        block: BlockRequest,
        /// `Err` with a message such as "no space left on device".
        result: Result<(), String>,
    },
    /// The piece from [`Output::VerifyPiece`] was hashed: whether it matched.
    PieceVerified {
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
        /// True if its SHA-1 equals the torrent's.
        ok: bool,
    },
}

/// What the Session asks its driver to do; drained with [`super::Session::poll_output`]
/// until [`Output::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to `addr`; report [`Input::Connected`] or [`Input::ConnectFailed`].
    Connect {
        /// The id the Session gave this connection.
        conn: ConnId,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// The connection has bytes to send: call [`super::Session::poll_transmit`].
    Transmit(ConnId),
    /// Close the connection; the Session has already forgotten it.
    Close {
        /// Which connection.
        conn: ConnId,
        /// Why, for logs.
        reason: String,
    },
    /// Perform an HTTP GET of `url` and report the body or the failure.
    HttpAnnounce {
        /// The torrent.
        torrent: TorrentId,
        /// Quote this in the answer.
        request: RequestId,
        /// The complete announce URL.
        url: String,
    },
    /// Send one UDP datagram to a tracker (resolve `host` first).
    UdpSend {
        /// The torrent.
        torrent: TorrentId,
        /// The tracker; replies from it come back as [`Input::TrackerPacket`].
        tracker: TrackerId,
        /// The tracker's host name or address.
        host: String,
        /// Its UDP port.
        port: u16,
        /// The datagram.
        packet: Vec<u8>,
    },
    /// Read a block of a piece we have, to send to a peer; answer with [`Input::BlockRead`].
    ReadBlock {
        /// The connection that asked.
        conn: ConnId,
        /// The torrent.
        torrent: TorrentId,
        /// Which block.
        block: BlockRequest,
    },
    /// Write a received block; answer with [`Input::BlockWritten`].
    WriteBlock {
        /// The torrent.
        torrent: TorrentId,
        /// Where it goes.
        block: BlockRequest,
        /// The bytes.
        data: Bytes,
    },
    /// Every block of the piece is written: hash it and answer with [`Input::PieceVerified`].
    VerifyPiece {
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
    },
    /// Something for the user.
    Event(Event),
    /// Nothing more to do until this time (or an input): the end of a drain.
    Timeout(Instant),
}

/// Why a peer left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveReason {
    /// We closed it (protocol violation, timeout, ban, pause...): the message says which.
    Closed(String),
    /// The peer or the network closed it.
    Remote,
    /// The outgoing connection could not be established.
    ConnectFailed,
}

/// Something the user may want to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A piece passed its hash check and is ours.
    PieceDone {
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
    },
    /// A piece failed its hash check and will be downloaded again.
    HashFailed {
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: u32,
    },
    /// Every wanted piece is verified.
    TorrentComplete {
        /// The torrent.
        torrent: TorrentId,
    },
    /// A peer completed the handshake.
    PeerJoined {
        /// The torrent.
        torrent: TorrentId,
        /// The connection.
        conn: ConnId,
        /// The peer's address.
        addr: SocketAddr,
        /// The client, if its peer id says.
        client: Option<String>,
    },
    /// A peer left (only peers that had joined).
    PeerLeft {
        /// The torrent.
        torrent: TorrentId,
        /// The connection.
        conn: ConnId,
        /// The peer's address.
        addr: SocketAddr,
        /// Why.
        reason: LeaveReason,
    },
    /// A peer was banned for sending corrupt data repeatedly.
    PeerBanned {
        /// The torrent.
        torrent: TorrentId,
        /// The peer's address.
        addr: SocketAddr,
    },
    /// A tracker refused or failed an announce (the announcer backs off and tries others).
    TrackerError {
        /// The torrent.
        torrent: TorrentId,
        /// The tracker's URL.
        url: String,
        /// What it said or what went wrong.
        message: String,
    },
    /// A tracker sent a warning message with a successful announce.
    TrackerWarning {
        /// The torrent.
        torrent: TorrentId,
        /// The tracker's URL.
        url: String,
        /// The warning.
        message: String,
    },
    /// The torrent stopped because of a disk error; downloaded data is untouched.
    TorrentError {
        /// The torrent.
        torrent: TorrentId,
        /// What failed, e.g. "writing block 3/0 failed: no space left on device".
        message: String,
    },
    /// A removed torrent is gone (its `stopped` announces are done or timed out).
    TorrentRemoved {
        /// The torrent.
        torrent: TorrentId,
    },
    /// Periodic statistics ([`SessionConfig::stats_interval`]).
    Stats(TorrentStats),
    /// After [`super::Session::shutdown`]: every torrent has stopped; the driver may exit.
    ShutdownComplete,
}

/// One connected peer as the user interface shows it ([`super::Session::peer_snapshots`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// The connection.
    pub conn: ConnId,
    /// The peer's address.
    pub addr: SocketAddr,
    /// The client named by its peer id, if known.
    pub client: Option<String>,
    /// We opened the connection.
    pub outgoing: bool,
    /// We choke the peer.
    pub am_choking: bool,
    /// We are interested in the peer.
    pub am_interested: bool,
    /// The peer chokes us.
    pub peer_choking: bool,
    /// The peer is interested in us.
    pub peer_interested: bool,
    /// A request to the peer timed out and no block came since.
    pub snubbed: bool,
    /// Payload bytes/s from the peer to us.
    pub download_rate: u64,
    /// Payload bytes/s from us to the peer.
    pub upload_rate: u64,
    /// Pieces the peer has (from its bitfield and haves).
    pub pieces: u32,
}

/// A piece's state as the user interface shows it ([`super::Session::piece_snapshots`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceView {
    /// Nothing requested or received.
    Missing,
    /// Some blocks requested or received, or all received and being verified.
    Downloading,
    /// Verified.
    Have,
}

/// Where a torrent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorrentState {
    /// Downloading and/or seeding.
    Running,
    /// Paused by the user: no connections, `stopped` announced.
    Paused,
    /// Stopped by a disk error.
    Errored,
    /// Being removed: sending `stopped` announces.
    Removing,
}

/// A snapshot of one torrent's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentStats {
    /// The torrent.
    pub torrent: TorrentId,
    /// Its state.
    pub state: TorrentState,
    /// Verified pieces.
    pub pieces_have: u32,
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Wanted bytes not yet verified.
    pub left: u64,
    /// Payload bytes received (accepted blocks).
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Received bytes thrown away (duplicates, unrequested, failed hash checks).
    pub wasted: u64,
    /// Payload download rate, bytes per second.
    pub download_rate: u64,
    /// Payload upload rate, bytes per second.
    pub upload_rate: u64,
    /// Connections past the handshake.
    pub peers_connected: usize,
    /// Addresses known (trackers, `add_peer`).
    pub peers_known: usize,
    /// Pieces that failed their hash check.
    pub hash_failures: u32,
}

/// Session-wide settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The first 8 bytes of our peer id (Azureus style); the rest is random from the seed.
    pub peer_id_prefix: [u8; 8],
    /// The TCP port we listen on (announced to trackers; 0 if not listening).
    pub listen_port: u16,
    /// Connections at most, all torrents together.
    pub max_connections: usize,
    /// Connections at most per torrent.
    pub max_connections_per_torrent: usize,
    /// Outgoing connection attempts in flight at most (half-open).
    pub max_half_open: usize,
    /// Upload limit in payload bytes per second (None: unlimited).
    pub upload_limit: Option<u64>,
    /// Download limit in payload bytes per second (None: unlimited).
    pub download_limit: Option<u64>,
    /// Per-connection settings (its `peer_id` and `listen_port` are set by the Session).
    pub peer: PeerConfig,
    /// Piece picker settings.
    pub picker: PickerConfig,
    /// Choker settings.
    pub choker: ChokerConfig,
    /// Tracker announce settings.
    pub announce: AnnounceConfig,
    /// Known-peer list settings.
    pub peer_list: PeerListConfig,
    /// How often [`Event::Stats`] is emitted per torrent (zero: never).
    pub stats_interval: Duration,
    /// After completing, close connections to peers that are seeds too (nothing to trade).
    pub drop_seeds_when_complete: bool,
    /// Send `have` for a new piece also to peers that announced it already. Off by default:
    /// such a `have` tells the peer nothing it can use (it cannot want the piece from us), and
    /// in a swarm where pieces spread fast about half of all `have`s are of this kind
    /// (libtorrent has the same switch, `send_redundant_have`). On, peers see our progress
    /// exactly, for statistics.
    pub send_redundant_have: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            peer_id_prefix: *b"-HV0010-",
            listen_port: 6881,
            max_connections: 200,
            max_connections_per_torrent: 60,
            max_half_open: 20,
            upload_limit: None,
            download_limit: None,
            peer: PeerConfig::new([0; 20]),
            picker: PickerConfig::default(),
            choker: ChokerConfig::default(),
            announce: AnnounceConfig::default(),
            peer_list: PeerListConfig::default(),
            stats_interval: Duration::from_secs(1),
            drop_seeds_when_complete: true,
            send_redundant_have: false,
        }
    }
}

/// A misuse of the Session's API by its driver (never caused by a peer or a file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// `now` is earlier than an earlier input's.
    #[error("time went backwards: input at {now:?} after {last:?}")]
    TimeWentBackwards {
        /// The input's time.
        now: Instant,
        /// The latest time seen before.
        last: Instant,
    },
    /// An input arrived before the previous outputs were drained (see the drain contract).
    #[error("outputs not drained: call poll_output until Output::Timeout before the next input")]
    NotDrained,
    /// A connection id the Session never issued.
    #[error("connection {0:?} was never issued by this session")]
    UnknownConnection(ConnId),
    /// A torrent id the Session never issued.
    #[error("torrent {0:?} is not in this session")]
    UnknownTorrent(TorrentId),
    /// The torrent is already in the session.
    #[error("torrent {0} is already in the session")]
    DuplicateTorrent(InfoHash),
    /// The initial piece state does not match the torrent.
    #[error("the bitfield of pieces on disk has {got} bits, the torrent has {expected} pieces")]
    WrongBitfield {
        /// Bits given.
        got: u32,
        /// Pieces in the torrent.
        expected: u32,
    },
    /// The torrent's geometry is beyond what the core supports.
    #[error("unsupported torrent: {0}")]
    Unsupported(String),
    /// The session is shutting down.
    #[error("the session is shutting down")]
    ShuttingDown,
    /// All connection slots are taken (incoming connection refused).
    #[error("connection limit reached ({0})")]
    ConnectionLimit(usize),
}
