//! Tunables of a [`super::PeerConn`] and the torrent geometry it validates against.

use std::time::Duration;

use crate::wire::Reserved;

/// Held haves that fill one TCP segment (1,460 bytes of 9-byte haves): a batch this long
/// goes out at once (see [`PeerConfig::have_batch`]).
pub const HAVE_BATCH_MAX: usize = 162;

/// The largest block we request or serve: 16 KiB. BEP 3: "All current implementations use
/// 2^14 (16 kiB), and close connections which request an amount greater than that."
pub const BLOCK_LEN: u32 = 16 * 1024;

/// Per-connection tunables; [`PeerConfig::new`] gives libtorrent-like defaults.
///
/// Nonsensical combinations are clamped where used (a minimum above a maximum becomes the
/// maximum, a zero bound becomes 1), so no value here can make the machine panic or grow.
///
/// Every connection holds a copy; `repr(C)` keeps what its deadline and request pipeline
/// read on every message (timeouts, queue bounds) in the first lines of that copy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct PeerConfig {
    /// Time allowed from construction to a complete handshake (default 20 s).
    pub handshake_timeout: Duration,
    /// A keep-alive goes out after this long with nothing sent (BEP 3: two minutes).
    pub keepalive_interval: Duration,
    /// The connection closes after this long with nothing received (default 3 min: longer
    /// than the peer's 2 min keep-alive interval, with slack).
    pub idle_timeout: Duration,
    /// How long a `have` may wait to go out with others (zero: each goes at once, as
    /// libtorrent sends them). Held haves leave with the next other message on the
    /// connection, when [`HAVE_BATCH_MAX`] of them fill a TCP segment, or after this long,
    /// whichever comes first: Vuze's have aggregator and Transmission's low-priority
    /// batch (10 s there) do the same, saving a packet (about 50 bytes of headers, and the
    /// peer's ack) per 9-byte `have`. Default 0: in `hive-sim`'s built-in swarms 250 ms
    /// moved completion times by a few percent either way (a 1,000-node flash crowd 1-2 %
    /// faster, mixed links faster, free-riders and a corrupt peer's swarm slower), weakened
    /// tit-for-tat (free-riders caught up with contributors over five seeds), and holds of
    /// 1 s and more slowed flash crowds by 15 % and more: peers learn of new pieces late.
    pub have_batch: Duration,
    /// Floor of the request timeout (default 20 s).
    pub request_timeout_min: Duration,
    /// Ceiling of the request timeout (default 60 s, libtorrent's `request_timeout`).
    pub request_timeout_max: Duration,
    /// Seconds of transfer to keep requested: depth = rate × this / 16 KiB (libtorrent's
    /// `request_queue_time`, default 3 s).
    pub target_queue_time: Duration,
    /// The request timeout is this many smoothed block latencies, within min..=max (default 4).
    pub request_timeout_latency_factor: u32,
    /// Size k of the allowed-fast set we give a peer (BEP 6 suggests 10); 0 disables.
    pub allowed_fast_count: u32,
    /// Hard bound on bytes queued for the socket; exceeding it closes the connection (the
    /// peer is not reading). Default 4 MiB.
    pub max_send_buffer: usize,
    /// Soft bound used by [`super::PeerConn::poll_upload`]: no more blocks are handed out for
    /// disk reads while queued plus in-flight block bytes exceed it. Default 1 MiB.
    pub upload_watermark: usize,
    /// Requests from the peer we queue at most; advertised as `reqq` (BEP 10). Over it: reject
    /// (fast extension) or close. Default 250 (libtorrent's default, BEP 10).
    pub max_peer_requests: usize,
    /// Requests we keep outstanding at most, whatever the peer's `reqq`. Default 250.
    pub max_outstanding: usize,
    /// The peer's `reqq` assumed until its extension handshake says otherwise. Default 250.
    pub default_peer_reqq: usize,
    /// Queue depth floor (default 2).
    pub min_queue_depth: usize,
    /// Queue depth at connection start, grown by one per block during slow start (default 4).
    pub initial_queue_depth: usize,
    /// Our peer id; a peer answering with it is ourselves (self-connection).
    pub peer_id: [u8; 20],
    /// Reserved bits we advertise; an extension is on when both ends set its bit.
    /// Default: fast extension (BEP 6) and extension protocol (BEP 10). Set
    /// [`Reserved::DHT`] too when a DHT node runs (the Session then sends `port`).
    pub reserved: Reserved,
    /// Distinct allowed-fast pieces we accept from a peer; one more closes the connection.
    /// Default 64 (BEP 6 peers send about 10).
    pub max_peer_allowed_fast: usize,
    /// Suggestions kept from a peer; older ones are forgotten. Default 64.
    pub max_suggested: usize,
    /// Largest extended (BEP 10) message payload accepted; a bigger frame closes the
    /// connection. Default 64 KiB: a 16 KiB BEP 9 metadata piece with its header fits.
    pub max_extension_payload: u32,
    /// Largest extension handshake payload accepted (default 16 KiB; real ones are ~200 B).
    pub max_extension_handshake: usize,
    /// Client name and version sent as `v` in our extension handshake.
    pub client_version: String,
    /// Our TCP listen port, sent as `p` in our extension handshake.
    pub listen_port: Option<u16>,
    /// Our extended message id for `ut_metadata` (BEP 9), if we speak it.
    pub ut_metadata_id: Option<u8>,
    /// Our extended message id for `ut_pex` (BEP 11), if we speak it.
    pub ut_pex_id: Option<u8>,
    /// Window of the download and upload rate meters (default 20 s, see [`crate::rate`]).
    pub rate_window: Duration,
}

impl PeerConfig {
    /// The defaults documented on each field, with our peer id.
    pub fn new(peer_id: [u8; 20]) -> Self {
        PeerConfig {
            peer_id,
            reserved: Reserved::FAST | Reserved::EXTENSION_PROTOCOL,
            handshake_timeout: Duration::from_secs(20),
            keepalive_interval: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(180),
            have_batch: Duration::ZERO,
            max_send_buffer: 4 << 20,
            upload_watermark: 1 << 20,
            max_peer_requests: 250,
            max_outstanding: 250,
            default_peer_reqq: 250,
            min_queue_depth: 2,
            initial_queue_depth: 4,
            target_queue_time: Duration::from_secs(3),
            request_timeout_min: Duration::from_secs(20),
            request_timeout_max: Duration::from_secs(60),
            request_timeout_latency_factor: 4,
            allowed_fast_count: 10,
            max_peer_allowed_fast: 64,
            max_suggested: 64,
            max_extension_payload: 64 * 1024,
            max_extension_handshake: 16 * 1024,
            client_version: "Hive 0.1".to_owned(),
            listen_port: None,
            ut_metadata_id: None,
            ut_pex_id: None,
            rate_window: crate::rate::DEFAULT_WINDOW,
        }
    }
}

/// What a connection needs to know about its torrent: the info hash and the piece geometry.
/// `repr(C)`: the piece count, checked by every `have`, `request` and `piece`, comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct TorrentInfo {
    piece_count: u32,
    piece_length: u32,
    total_length: u64,
    /// SHA-1 of the info dictionary.
    pub info_hash: [u8; 20],
    /// Size of the info dictionary, advertised as `metadata_size` (BEP 9) when we speak
    /// `ut_metadata`.
    pub metadata_size: Option<u32>,
}

impl TorrentInfo {
    /// The geometry of a torrent of `total_length` bytes in pieces of `piece_length`; `None`
    /// when either is zero or the piece count does not fit in 32 bits.
    pub fn new(info_hash: [u8; 20], piece_length: u32, total_length: u64) -> Option<Self> {
        if piece_length == 0 || total_length == 0 {
            return None;
        }
        let piece_count = u32::try_from(total_length.div_ceil(u64::from(piece_length))).ok()?;
        Some(TorrentInfo {
            info_hash,
            piece_length,
            total_length,
            piece_count,
            metadata_size: None,
        })
    }

    /// Stand-in for an incoming connection before the Session named the torrent: no pieces,
    /// so nothing can validate against it (no frame is read before `accept`).
    pub(super) const fn unknown(info_hash: [u8; 20]) -> Self {
        TorrentInfo {
            info_hash,
            piece_length: 1,
            total_length: 0,
            piece_count: 0,
            metadata_size: None,
        }
    }

    /// The same geometry with `metadata_size` set.
    pub fn with_metadata_size(self, size: u32) -> Self {
        TorrentInfo {
            metadata_size: Some(size),
            ..self
        }
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Nominal piece length (every piece but the last).
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Total bytes of the torrent's content.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Length of piece `index` (the last one is usually shorter); `None` past the end.
    pub fn piece_len(&self, index: u32) -> Option<u32> {
        if index >= self.piece_count {
            return None;
        }
        let start = u64::from(index) * u64::from(self.piece_length);
        let len = self
            .total_length
            .saturating_sub(start)
            .min(u64::from(self.piece_length));
        u32::try_from(len).ok()
    }
}
