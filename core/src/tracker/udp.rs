//! UDP tracker protocol (BEP 15): every packet in both directions, and the retransmit schedule.
//!
//! Client side (`hive-smol`): encode [`ConnectRequest`], [`AnnounceRequest`],
//! [`encode_scrape_request`]; decode replies with [`Response::decode`], check the transaction id
//! with [`Response::check_transaction`]. Server side (the simulator's test tracker): decode with
//! [`Request::decode`], answer with [`ConnectResponse`], [`encode_announce_response`],
//! [`encode_scrape_response`], [`ErrorResponse`].
//!
//! Encoders append to a caller-owned `Vec<u8>`. Decoders borrow from the datagram and accept
//! longer packets than needed (BEP 15: "do not expect packets to be exactly of a certain size");
//! trailing bytes that do not make a whole peer, hash or stats entry are ignored.

use core::net::Ipv4Addr;
use std::time::Duration;

use super::{
    AddressFamily, AnnounceResponse as Announced, CompactPeers, Event, PeerCollector,
    ResponseLimits, ScrapeStats, write_compact_peers,
};

/// The magic `protocol_id` of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Most info hashes in one scrape request: 16 + 74 × 20 = 1496 bytes, under a 1500-byte MTU.
pub const MAX_SCRAPE_HASHES: usize = 74;

/// How long a connection id may be used after it was received (BEP 15: one minute).
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// Retransmit timeout for attempt `n` (0 for the first send): 15 · 2^n seconds, n capped at 8
/// (3840 s), as BEP 15 prescribes. The caller counts attempts and decides when to give up.
pub fn retransmit_timeout(attempt: u32) -> Duration {
    Duration::from_secs(15u64 << attempt.min(8))
}

/// The BEP 15 `action` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// 0: get a connection id.
    Connect,
    /// 1: announce.
    Announce,
    /// 2: scrape.
    Scrape,
    /// 3: error (tracker to client only).
    Error,
}

impl Action {
    /// The wire value.
    pub const fn code(self) -> u32 {
        match self {
            Action::Connect => 0,
            Action::Announce => 1,
            Action::Scrape => 2,
            Action::Error => 3,
        }
    }

    /// The action for a wire value.
    pub const fn from_code(code: u32) -> Option<Action> {
        match code {
            0 => Some(Action::Connect),
            1 => Some(Action::Announce),
            2 => Some(Action::Scrape),
            3 => Some(Action::Error),
            _ => None,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Action::Connect => "connect",
            Action::Announce => "announce",
            Action::Scrape => "scrape",
            Action::Error => "error",
        };
        write!(f, "{name} ({})", self.code())
    }
}

/// A UDP tracker packet that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// The packet is shorter than its fixed part.
    #[error("udp tracker {what} is {len} bytes, shorter than the {need} it needs")]
    TooShort {
        /// Which packet we were decoding.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The minimum for that packet.
        need: usize,
    },
    /// The `action` field holds no BEP 15 action, or one not valid in this direction.
    #[error("udp tracker packet has unknown action {0}")]
    UnknownAction(u32),
    /// A packet type was decoded directly and the action is another one.
    #[error("udp tracker packet has action {found}, expected {expected}")]
    WrongAction {
        /// The action we decode.
        expected: Action,
        /// The action in the packet.
        found: u32,
    },
    /// A connect request without the magic protocol id.
    #[error("udp connect request has protocol id {0:#x}, expected 0x41727101980")]
    BadProtocolId(u64),
    /// An announce request whose `event` is not 0-3.
    #[error("udp announce request has unknown event {0}")]
    UnknownEvent(u32),
    /// A reply for another request (BEP 15: check the transaction id).
    #[error("udp tracker reply has transaction id {found:#010x}, expected {expected:#010x}")]
    TransactionMismatch {
        /// The id we sent.
        expected: u32,
        /// The id in the reply.
        found: u32,
    },
    /// A scrape request with no info hash.
    #[error("udp scrape request needs at least one info hash")]
    NoInfoHashes,
    /// A scrape request with more than [`MAX_SCRAPE_HASHES`] info hashes.
    #[error("udp scrape request has {0} info hashes, more than the 74 that fit one packet")]
    TooManyInfoHashes(usize),
}

/// Big-endian reader over a datagram; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
    need: usize,
}

impl<'a> Reader<'a> {
    /// Checks the fixed part up front, so the error names the whole packet's minimum length.
    fn new(buf: &'a [u8], what: &'static str, need: usize) -> Result<Self, UdpError> {
        if buf.len() < need {
            return Err(UdpError::TooShort {
                what,
                len: buf.len(),
                need,
            });
        }
        Ok(Reader { buf, what, need })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], UdpError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(UdpError::TooShort {
                what: self.what,
                len: self.buf.len(),
                need: self.need,
            })?;
        self.buf = rest;
        Ok(*head)
    }

    fn u16(&mut self) -> Result<u16, UdpError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, UdpError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, UdpError> {
        self.array().map(u64::from_be_bytes)
    }

    fn rest(self) -> &'a [u8] {
        self.buf
    }
}

fn expect_action(found: u32, expected: Action) -> Result<(), UdpError> {
    if found == expected.code() {
        Ok(())
    } else {
        Err(UdpError::WrongAction { expected, found })
    }
}

/// Client → tracker: ask for a connection id (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Random id echoed in the reply.
    pub transaction_id: u32,
}

impl ConnectRequest {
    /// Wire length.
    pub const LEN: usize = 16;

    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
        out.extend_from_slice(&Action::Connect.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
    }

    /// Decodes the packet; the protocol id must be the magic constant.
    pub fn decode(buf: &[u8]) -> Result<Self, UdpError> {
        let mut r = Reader::new(buf, "connect request", Self::LEN)?;
        let protocol_id = r.u64()?;
        expect_action(r.u32()?, Action::Connect)?;
        if protocol_id != PROTOCOL_ID {
            return Err(UdpError::BadProtocolId(protocol_id));
        }
        Ok(ConnectRequest {
            transaction_id: r.u32()?,
        })
    }
}

/// Tracker → client: the connection id (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectResponse {
    /// The request's transaction id.
    pub transaction_id: u32,
    /// Id to put in announce and scrape requests for the next minute.
    pub connection_id: u64,
}

impl ConnectResponse {
    /// Wire length.
    pub const LEN: usize = 16;

    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Action::Connect.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(&self.connection_id.to_be_bytes());
    }

    /// Decodes the packet.
    pub fn decode(buf: &[u8]) -> Result<Self, UdpError> {
        let mut r = Reader::new(buf, "connect response", Self::LEN)?;
        expect_action(r.u32()?, Action::Connect)?;
        Ok(ConnectResponse {
            transaction_id: r.u32()?,
            connection_id: r.u64()?,
        })
    }
}

/// Client → tracker: announce (98 bytes). Fields are the wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// From the connect response.
    pub connection_id: u64,
    /// Random id echoed in the reply.
    pub transaction_id: u32,
    /// SHA-1 of the torrent's `info` dictionary.
    pub info_hash: [u8; 20],
    /// Our peer id.
    pub peer_id: [u8; 20],
    /// Bytes downloaded this session.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// Bytes uploaded this session.
    pub uploaded: u64,
    /// Why we announce.
    pub event: Event,
    /// Address to announce; `0.0.0.0` (the default) means the packet's source. Always
    /// `0.0.0.0` over IPv6 (BEP 15: the field is only 32 bits wide).
    pub ip: Ipv4Addr,
    /// Session key (BEP 7: the same for our v4 and v6 announces).
    pub key: u32,
    /// Peers wanted; -1 lets the tracker choose.
    pub num_want: i32,
    /// Our TCP listen port.
    pub port: u16,
}

impl AnnounceRequest {
    /// Wire length (BEP 41 extensions may follow; they are ignored).
    pub const LEN: usize = 98;

    /// The UDP form of a transport-independent request. An IPv6 `ip` cannot be sent and
    /// becomes `0.0.0.0`; `num_want` above `i32::MAX` is capped; a missing key is 0;
    /// `tracker_id` and `compact` have no UDP equivalent.
    pub fn new(connection_id: u64, transaction_id: u32, req: &super::AnnounceRequest<'_>) -> Self {
        let ip = match req.ip.map(|ip| ip.to_canonical()) {
            Some(core::net::IpAddr::V4(v4)) => v4,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let num_want = req
            .num_want
            .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
        AnnounceRequest {
            connection_id,
            transaction_id,
            info_hash: req.info_hash,
            peer_id: req.peer_id,
            downloaded: req.downloaded,
            left: req.left,
            uploaded: req.uploaded,
            event: req.event,
            ip,
            key: req.key.unwrap_or(0),
            num_want,
            port: req.port,
        }
    }

    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.connection_id.to_be_bytes());
        out.extend_from_slice(&Action::Announce.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(&self.info_hash);
        out.extend_from_slice(&self.peer_id);
        out.extend_from_slice(&self.downloaded.to_be_bytes());
        out.extend_from_slice(&self.left.to_be_bytes());
        out.extend_from_slice(&self.uploaded.to_be_bytes());
        out.extend_from_slice(&self.event.udp_code().to_be_bytes());
        out.extend_from_slice(&self.ip.octets());
        out.extend_from_slice(&self.key.to_be_bytes());
        out.extend_from_slice(&self.num_want.to_be_bytes());
        out.extend_from_slice(&self.port.to_be_bytes());
    }

    /// Decodes the packet.
    pub fn decode(buf: &[u8]) -> Result<Self, UdpError> {
        let mut r = Reader::new(buf, "announce request", Self::LEN)?;
        let connection_id = r.u64()?;
        expect_action(r.u32()?, Action::Announce)?;
        let transaction_id = r.u32()?;
        let info_hash = r.array()?;
        let peer_id = r.array()?;
        let downloaded = r.u64()?;
        let left = r.u64()?;
        let uploaded = r.u64()?;
        let code = r.u32()?;
        let event = Event::from_udp_code(code).ok_or(UdpError::UnknownEvent(code))?;
        Ok(AnnounceRequest {
            connection_id,
            transaction_id,
            info_hash,
            peer_id,
            downloaded,
            left,
            uploaded,
            event,
            ip: Ipv4Addr::from(r.array::<4>()?),
            key: r.u32()?,
            num_want: i32::from_be_bytes(r.array()?),
            port: r.u16()?,
        })
    }
}

/// A borrowed list of 20-byte info hashes (the body of a scrape request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoHashes<'a> {
    bytes: &'a [u8],
}

impl<'a> InfoHashes<'a> {
    /// A view of `bytes` as 20-byte hashes; a partial trailing hash is ignored.
    pub fn new(bytes: &'a [u8]) -> Self {
        InfoHashes { bytes }
    }

    /// Number of whole hashes.
    pub fn len(&self) -> usize {
        self.bytes.len() / 20
    }

    /// Whether there is no whole hash.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hashes in request order.
    pub fn iter(&self) -> impl Iterator<Item = [u8; 20]> + 'a {
        self.bytes
            .chunks_exact(20)
            .filter_map(|c| <[u8; 20]>::try_from(c).ok())
    }
}

/// Client → tracker: scrape (16 + 20·n bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrapeRequest<'a> {
    /// From the connect response.
    pub connection_id: u64,
    /// Random id echoed in the reply.
    pub transaction_id: u32,
    /// The torrents asked about.
    pub info_hashes: InfoHashes<'a>,
}

impl<'a> ScrapeRequest<'a> {
    /// Length of the fixed part.
    pub const HEADER_LEN: usize = 16;

    /// Decodes the packet. Any number of hashes is accepted (the datagram bounds it); a
    /// tracker that wants the 74 limit checks `info_hashes.len()`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, UdpError> {
        let mut r = Reader::new(buf, "scrape request", Self::HEADER_LEN)?;
        let connection_id = r.u64()?;
        expect_action(r.u32()?, Action::Scrape)?;
        Ok(ScrapeRequest {
            connection_id,
            transaction_id: r.u32()?,
            info_hashes: InfoHashes::new(r.rest()),
        })
    }
}

/// Appends a scrape request for 1 to [`MAX_SCRAPE_HASHES`] info hashes to `out`.
pub fn encode_scrape_request(
    out: &mut Vec<u8>,
    connection_id: u64,
    transaction_id: u32,
    info_hashes: &[[u8; 20]],
) -> Result<(), UdpError> {
    if info_hashes.is_empty() {
        return Err(UdpError::NoInfoHashes);
    }
    if info_hashes.len() > MAX_SCRAPE_HASHES {
        return Err(UdpError::TooManyInfoHashes(info_hashes.len()));
    }
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&Action::Scrape.code().to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for hash in info_hashes {
        out.extend_from_slice(hash);
    }
    Ok(())
}

/// A request as a tracker receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Action 0.
    Connect(ConnectRequest),
    /// Action 1.
    Announce(AnnounceRequest),
    /// Action 2.
    Scrape(ScrapeRequest<'a>),
}

impl<'a> Request<'a> {
    /// Decodes any client packet by its action (bytes 8..12).
    pub fn decode(buf: &'a [u8]) -> Result<Self, UdpError> {
        let mut r = Reader::new(buf, "request", 16)?;
        let _connection_id = r.u64()?;
        match r.u32()? {
            0 => ConnectRequest::decode(buf).map(Request::Connect),
            1 => AnnounceRequest::decode(buf).map(Request::Announce),
            2 => ScrapeRequest::decode(buf).map(Request::Scrape),
            other => Err(UdpError::UnknownAction(other)),
        }
    }

    /// The transaction id to echo.
    pub fn transaction_id(&self) -> u32 {
        match self {
            Request::Connect(p) => p.transaction_id,
            Request::Announce(p) => p.transaction_id,
            Request::Scrape(p) => p.transaction_id,
        }
    }

    /// The connection id the client used (`None` for a connect request, which has none).
    pub fn connection_id(&self) -> Option<u64> {
        match self {
            Request::Connect(_) => None,
            Request::Announce(p) => Some(p.connection_id),
            Request::Scrape(p) => Some(p.connection_id),
        }
    }
}

/// Tracker → client: announce reply (20 bytes + 6 or 18 per peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnounceResponse<'a> {
    /// The request's transaction id.
    pub transaction_id: u32,
    /// Seconds until the next announce, as sent (see [`AnnounceResponse::to_response`]).
    pub interval: u32,
    /// Leechers in the swarm.
    pub leechers: u32,
    /// Seeders in the swarm.
    pub seeders: u32,
    /// The peers: 6-byte entries over IPv4, 18-byte entries over IPv6 (BEP 15 "IPv6").
    pub peers: CompactPeers<'a>,
}

impl<'a> AnnounceResponse<'a> {
    /// Length of the fixed part.
    pub const HEADER_LEN: usize = 20;

    /// Appends the packet to `out` (peers copied as they are).
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_announce_header(
            out,
            self.transaction_id,
            self.interval,
            self.leechers,
            self.seeders,
        );
        out.extend_from_slice(self.peers.as_bytes());
    }

    /// Decodes the packet. `family` is that of the tracker address the reply came from, which
    /// decides the peer entry size (BEP 15); see [`AddressFamily::of`].
    pub fn decode(buf: &'a [u8], family: AddressFamily) -> Result<Self, UdpError> {
        let mut r = Reader::new(buf, "announce response", Self::HEADER_LEN)?;
        expect_action(r.u32()?, Action::Announce)?;
        Ok(AnnounceResponse {
            transaction_id: r.u32()?,
            interval: r.u32()?,
            leechers: r.u32()?,
            seeders: r.u32()?,
            peers: CompactPeers::new(r.rest(), family),
        })
    }

    /// The transport-independent reply: interval validated and clamped (a value above
    /// `i32::MAX` is read as negative, as libtorrent's signed field does, and so defaults),
    /// peers filtered, de-duplicated and capped by `limits`.
    pub fn to_response(&self, limits: &ResponseLimits) -> Announced {
        let interval = limits
            .clamp_interval(i64::from(self.interval as i32))
            .unwrap_or(limits.default_interval);
        let mut collector = PeerCollector::new(limits.max_peers);
        collector.offer_compact(self.peers);
        let (peers, peers_ignored) = collector.finish();
        Announced {
            interval,
            min_interval: None,
            tracker_id: None,
            warning: None,
            complete: Some(self.seeders),
            incomplete: Some(self.leechers),
            downloaded: None,
            peers,
            peers_ignored,
        }
    }
}

fn encode_announce_header(out: &mut Vec<u8>, tid: u32, interval: u32, leechers: u32, seeders: u32) {
    out.extend_from_slice(&Action::Announce.code().to_be_bytes());
    out.extend_from_slice(&tid.to_be_bytes());
    out.extend_from_slice(&interval.to_be_bytes());
    out.extend_from_slice(&leechers.to_be_bytes());
    out.extend_from_slice(&seeders.to_be_bytes());
}

/// Appends an announce reply with `peers` in `family`'s layout (peers of the other family are
/// skipped) and returns how many peers were written.
pub fn encode_announce_response<I>(
    out: &mut Vec<u8>,
    transaction_id: u32,
    interval: u32,
    leechers: u32,
    seeders: u32,
    peers: I,
    family: AddressFamily,
) -> usize
where
    I: IntoIterator<Item = core::net::SocketAddr>,
{
    encode_announce_header(out, transaction_id, interval, leechers, seeders);
    write_compact_peers(out, peers, family)
}

/// A borrowed list of 12-byte scrape entries (seeders, completed, leechers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrapeEntries<'a> {
    bytes: &'a [u8],
}

impl<'a> ScrapeEntries<'a> {
    /// A view of `bytes` as entries; a partial trailing entry is ignored.
    pub fn new(bytes: &'a [u8]) -> Self {
        ScrapeEntries { bytes }
    }

    /// Number of whole entries.
    pub fn len(&self) -> usize {
        self.bytes.len() / 12
    }

    /// Whether there is no whole entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, in the order of the request's info hashes.
    pub fn iter(&self) -> impl Iterator<Item = ScrapeStats> + 'a {
        self.bytes.chunks_exact(12).filter_map(|c| {
            let (seeders, rest) = c.split_first_chunk::<4>()?;
            let (completed, leechers) = rest.split_first_chunk::<4>()?;
            let leechers: [u8; 4] = leechers.try_into().ok()?;
            Some(ScrapeStats {
                complete: u32::from_be_bytes(*seeders),
                downloaded: u32::from_be_bytes(*completed),
                incomplete: u32::from_be_bytes(leechers),
            })
        })
    }
}

/// Tracker → client: scrape reply (8 + 12·n bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrapeResponse<'a> {
    /// The request's transaction id.
    pub transaction_id: u32,
    /// One entry per requested hash, same order.
    pub entries: ScrapeEntries<'a>,
}

impl<'a> ScrapeResponse<'a> {
    /// Length of the fixed part.
    pub const HEADER_LEN: usize = 8;

    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Action::Scrape.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(self.entries.bytes);
    }

    /// Decodes the packet.
    pub fn decode(buf: &'a [u8]) -> Result<Self, UdpError> {
        let mut r = Reader::new(buf, "scrape response", Self::HEADER_LEN)?;
        expect_action(r.u32()?, Action::Scrape)?;
        Ok(ScrapeResponse {
            transaction_id: r.u32()?,
            entries: ScrapeEntries::new(r.rest()),
        })
    }
}

/// Appends a scrape reply with one entry per `stats` item (request order) to `out`.
pub fn encode_scrape_response(out: &mut Vec<u8>, transaction_id: u32, stats: &[ScrapeStats]) {
    out.extend_from_slice(&Action::Scrape.code().to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for s in stats {
        out.extend_from_slice(&s.complete.to_be_bytes());
        out.extend_from_slice(&s.downloaded.to_be_bytes());
        out.extend_from_slice(&s.incomplete.to_be_bytes());
    }
}

/// Tracker → client: error (8 bytes + message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorResponse<'a> {
    /// The request's transaction id.
    pub transaction_id: u32,
    /// The message bytes, as sent.
    pub message: &'a [u8],
}

impl<'a> ErrorResponse<'a> {
    /// Length of the fixed part.
    pub const HEADER_LEN: usize = 8;

    /// Appends the packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Action::Error.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(self.message);
    }

    /// Decodes the packet.
    pub fn decode(buf: &'a [u8]) -> Result<Self, UdpError> {
        let mut r = Reader::new(buf, "error response", Self::HEADER_LEN)?;
        expect_action(r.u32()?, Action::Error)?;
        Ok(ErrorResponse {
            transaction_id: r.u32()?,
            message: r.rest(),
        })
    }

    /// The message as text for the user: lossy UTF-8, trailing NULs (C trackers send a
    /// terminated string) dropped, at most `max` bytes.
    pub fn message_text(&self, max: usize) -> String {
        let mut m = self.message;
        while let Some((0, rest)) = m.split_last() {
            m = rest;
        }
        String::from_utf8_lossy(m.get(..max).unwrap_or(m)).into_owned()
    }
}

/// A reply as a client receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// Action 0.
    Connect(ConnectResponse),
    /// Action 1.
    Announce(AnnounceResponse<'a>),
    /// Action 2.
    Scrape(ScrapeResponse<'a>),
    /// Action 3.
    Error(ErrorResponse<'a>),
}

impl<'a> Response<'a> {
    /// Decodes any tracker packet by its action (bytes 0..4). `family` is that of the
    /// tracker's address; it sets the announce peer entry size (BEP 15).
    pub fn decode(buf: &'a [u8], family: AddressFamily) -> Result<Self, UdpError> {
        let mut r = Reader::new(buf, "response", 8)?;
        match r.u32()? {
            0 => ConnectResponse::decode(buf).map(Response::Connect),
            1 => AnnounceResponse::decode(buf, family).map(Response::Announce),
            2 => ScrapeResponse::decode(buf).map(Response::Scrape),
            3 => ErrorResponse::decode(buf).map(Response::Error),
            other => Err(UdpError::UnknownAction(other)),
        }
    }

    /// The transaction id, to match the reply with its request.
    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect(p) => p.transaction_id,
            Response::Announce(p) => p.transaction_id,
            Response::Scrape(p) => p.transaction_id,
            Response::Error(p) => p.transaction_id,
        }
    }

    /// Ok if the reply answers the request with id `expected`; BEP 15 says to ignore it
    /// otherwise (it may be a late reply to an earlier attempt).
    pub fn check_transaction(&self, expected: u32) -> Result<(), UdpError> {
        let found = self.transaction_id();
        if found == expected {
            Ok(())
        } else {
            Err(UdpError::TransactionMismatch { expected, found })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::tests::{v4_addr, v6_addr};
    use core::net::SocketAddr;
    use proptest::prelude::*;
    use std::fmt::Write as _;

    /// Hex, 16 bytes a line, for snapshots that can be read against BEP 15's offset tables.
    fn hex(bytes: &[u8]) -> String {
        let mut s = String::new();
        for (i, line) in bytes.chunks(16).enumerate() {
            let _ = write!(s, "{:04}:", i * 16);
            for b in line {
                let _ = write!(s, " {b:02x}");
            }
            s.push('\n');
        }
        s
    }

    fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn announce_request() -> AnnounceRequest {
        AnnounceRequest {
            connection_id: 0x0102_0304_0506_0708,
            transaction_id: 0xdead_beef,
            info_hash: [0xaa; 20],
            peer_id: *b"-HV0001-123456789012",
            downloaded: 1,
            left: 2,
            uploaded: 3,
            event: Event::Started,
            ip: Ipv4Addr::UNSPECIFIED,
            key: 0x1234_5678,
            num_want: -1,
            port: 6881,
        }
    }

    #[test]
    fn packet_bytes() {
        let mut all = String::new();
        let mut section = |name: &str, bytes: Vec<u8>| {
            let _ = writeln!(all, "{name} ({} bytes)\n{}", bytes.len(), hex(&bytes));
        };
        section(
            "connect request",
            encoded(|o| {
                ConnectRequest {
                    transaction_id: 0xdead_beef,
                }
                .encode(o)
            }),
        );
        section(
            "connect response",
            encoded(|o| {
                ConnectResponse {
                    transaction_id: 0xdead_beef,
                    connection_id: 0x0102_0304_0506_0708,
                }
                .encode(o)
            }),
        );
        section(
            "announce request",
            encoded(|o| announce_request().encode(o)),
        );
        section(
            "announce response v4",
            encoded(|o| {
                let peers = [
                    addr("10.0.0.1:6881"),
                    addr("[2001:db8::1]:1"),
                    addr("192.168.1.2:51413"),
                ];
                assert_eq!(
                    encode_announce_response(o, 7, 1800, 3, 4, peers, AddressFamily::V4),
                    2
                );
            }),
        );
        section(
            "announce response v6",
            encoded(|o| {
                let peers = [addr("10.0.0.1:6881"), addr("[2001:db8::1]:6881")];
                assert_eq!(
                    encode_announce_response(o, 7, 1800, 3, 4, peers, AddressFamily::V6),
                    1
                );
            }),
        );
        section(
            "scrape request",
            encoded(|o| {
                encode_scrape_request(o, 0x0102_0304_0506_0708, 9, &[[0x11; 20], [0x22; 20]])
                    .unwrap()
            }),
        );
        section(
            "scrape response",
            encoded(|o| {
                encode_scrape_response(
                    o,
                    9,
                    &[
                        ScrapeStats {
                            complete: 1,
                            downloaded: 2,
                            incomplete: 3,
                        },
                        ScrapeStats {
                            complete: 4,
                            downloaded: 5,
                            incomplete: 6,
                        },
                    ],
                )
            }),
        );
        section(
            "error response",
            encoded(|o| {
                ErrorResponse {
                    transaction_id: 9,
                    message: b"bad hash",
                }
                .encode(o)
            }),
        );
        insta::assert_snapshot!(all);
    }

    #[test]
    fn connect_request_starts_with_the_magic() {
        let bytes = encoded(|o| ConnectRequest { transaction_id: 1 }.encode(o));
        assert_eq!(
            bytes,
            [
                0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0, 0, 0, 1
            ]
        );
        assert_eq!(
            AnnounceRequest::LEN,
            encoded(|o| announce_request().encode(o)).len()
        );
    }

    #[test]
    fn from_common_request() {
        let common = crate::tracker::AnnounceRequest {
            event: Event::Completed,
            num_want: Some(u32::MAX),
            key: None,
            ip: Some("::ffff:1.2.3.4".parse().unwrap()),
            uploaded: 5,
            downloaded: 6,
            ..crate::tracker::AnnounceRequest::new([1; 20], [2; 20], 80, 7)
        };
        let udp = AnnounceRequest::new(11, 12, &common);
        assert_eq!(
            udp,
            AnnounceRequest {
                connection_id: 11,
                transaction_id: 12,
                info_hash: [1; 20],
                peer_id: [2; 20],
                downloaded: 6,
                left: 7,
                uploaded: 5,
                event: Event::Completed,
                ip: Ipv4Addr::new(1, 2, 3, 4),
                key: 0,
                num_want: i32::MAX,
                port: 80,
            }
        );
        let v6 = crate::tracker::AnnounceRequest {
            ip: Some("2001:db8::1".parse().unwrap()),
            num_want: None,
            ..common
        };
        let udp = AnnounceRequest::new(11, 12, &v6);
        assert_eq!((udp.ip, udp.num_want), (Ipv4Addr::UNSPECIFIED, -1));
    }

    #[test]
    fn short_and_wrong_packets() {
        let connect = encoded(|o| ConnectRequest { transaction_id: 1 }.encode(o));
        assert_eq!(
            ConnectRequest::decode(&connect[..15]),
            Err(UdpError::TooShort {
                what: "connect request",
                len: 15,
                need: 16
            })
        );
        let mut bad_magic = connect.clone();
        bad_magic[0] = 1;
        assert_eq!(
            Request::decode(&bad_magic),
            Err(UdpError::BadProtocolId(0x0100_0417_2710_1980))
        );
        let announce = encoded(|o| announce_request().encode(o));
        assert_eq!(
            Request::decode(&announce[..97]),
            Err(UdpError::TooShort {
                what: "announce request",
                len: 97,
                need: 98
            })
        );
        assert_eq!(
            ConnectRequest::decode(&announce),
            Err(UdpError::WrongAction {
                expected: Action::Connect,
                found: 1
            })
        );
        let mut bad_event = announce.clone();
        bad_event[83] = 4;
        assert_eq!(Request::decode(&bad_event), Err(UdpError::UnknownEvent(4)));
        let mut unknown = announce.clone();
        unknown[11] = 3; // an error packet is not a request
        assert_eq!(Request::decode(&unknown), Err(UdpError::UnknownAction(3)));
        assert_eq!(
            Request::decode(&[0; 15]),
            Err(UdpError::TooShort {
                what: "request",
                len: 15,
                need: 16
            })
        );

        assert_eq!(
            Response::decode(&[0, 0, 0, 1, 0, 0, 0, 7, 0, 0], AddressFamily::V4),
            Err(UdpError::TooShort {
                what: "announce response",
                len: 10,
                need: 20
            })
        );
        assert_eq!(
            Response::decode(&[0, 0, 0, 0, 0, 0, 0, 7, 0, 0], AddressFamily::V4),
            Err(UdpError::TooShort {
                what: "connect response",
                len: 10,
                need: 16
            })
        );
        assert_eq!(
            Response::decode(&[0, 0, 0, 9, 0, 0, 0, 7], AddressFamily::V4),
            Err(UdpError::UnknownAction(9))
        );
        assert_eq!(
            Response::decode(&[0, 0, 0, 3, 0, 0, 0], AddressFamily::V4),
            Err(UdpError::TooShort {
                what: "response",
                len: 7,
                need: 8
            })
        );
        assert_eq!(
            ScrapeResponse::decode(&[0, 0, 0, 3, 0, 0, 0, 7]),
            Err(UdpError::WrongAction {
                expected: Action::Scrape,
                found: 3
            })
        );

        let mut out = Vec::new();
        assert_eq!(
            encode_scrape_request(&mut out, 1, 2, &[]),
            Err(UdpError::NoInfoHashes)
        );
        assert_eq!(
            encode_scrape_request(&mut out, 1, 2, &[[0; 20]; 75]),
            Err(UdpError::TooManyInfoHashes(75))
        );
        assert!(out.is_empty());
        encode_scrape_request(&mut out, 1, 2, &[[0; 20]; 74]).unwrap();
        assert_eq!(out.len(), 1496);
    }

    #[test]
    fn transaction_ids_are_checked() {
        let bytes = encoded(|o| {
            ErrorResponse {
                transaction_id: 5,
                message: b"x",
            }
            .encode(o)
        });
        let r = Response::decode(&bytes, AddressFamily::V4).unwrap();
        assert_eq!(r.check_transaction(5), Ok(()));
        let err = r.check_transaction(6).unwrap_err();
        assert_eq!(
            err,
            UdpError::TransactionMismatch {
                expected: 6,
                found: 5
            }
        );
        assert_eq!(
            err.to_string(),
            "udp tracker reply has transaction id 0x00000005, expected 0x00000006"
        );
    }

    #[test]
    fn longer_packets_are_accepted() {
        // BEP 41 options after an announce request, stray bytes after replies.
        let mut announce = encoded(|o| announce_request().encode(o));
        announce.extend_from_slice(&[2, 5, b'/', b'a', b'n', b'n', b'o']);
        assert_eq!(
            Request::decode(&announce),
            Ok(Request::Announce(announce_request()))
        );
        let mut connect = encoded(|o| {
            ConnectResponse {
                transaction_id: 1,
                connection_id: 2,
            }
            .encode(o)
        });
        connect.push(0);
        assert!(Response::decode(&connect, AddressFamily::V4).is_ok());
        let mut scrape = encoded(|o| encode_scrape_response(o, 1, &[ScrapeStats::default()]));
        scrape.extend_from_slice(&[1, 2, 3]);
        let Ok(Response::Scrape(s)) = Response::decode(&scrape, AddressFamily::V4) else {
            panic!()
        };
        assert_eq!(s.entries.len(), 1);
    }

    #[test]
    fn error_message_text() {
        let e = ErrorResponse {
            transaction_id: 0,
            message: b"torrent not registered\0\0",
        };
        assert_eq!(e.message_text(1024), "torrent not registered");
        assert_eq!(e.message_text(7), "torrent");
        assert_eq!(
            ErrorResponse {
                transaction_id: 0,
                message: b"\xff"
            }
            .message_text(10),
            "\u{fffd}"
        );
    }

    #[test]
    fn announce_reply_to_common_form() {
        let peers = [
            addr("10.0.0.1:1"),
            addr("10.0.0.1:1"),
            addr("0.0.0.0:5"),
            addr("10.0.0.2:0"),
            addr("10.0.0.3:3"),
        ];
        let mut bytes = Vec::new();
        encode_announce_response(&mut bytes, 1, 0, 5, 6, peers, AddressFamily::V4);
        bytes.push(9);
        let Ok(Response::Announce(a)) = Response::decode(&bytes, AddressFamily::V4) else {
            panic!()
        };
        assert_eq!(a.peers.len(), 5);
        let r = a.to_response(&ResponseLimits::DEFAULT);
        assert_eq!(r.interval, Duration::from_secs(60));
        assert_eq!((r.complete, r.incomplete), (Some(6), Some(5)));
        assert_eq!(r.peers, [addr("10.0.0.1:1"), addr("10.0.0.3:3")]);
        assert_eq!(r.peers_ignored, 4);
        let absurd = AnnounceResponse {
            interval: u32::MAX,
            ..a
        };
        assert_eq!(
            absurd.to_response(&ResponseLimits::DEFAULT).interval,
            Duration::from_secs(1800)
        );
        let big = AnnounceResponse {
            interval: i32::MAX as u32,
            ..a
        };
        assert_eq!(
            big.to_response(&ResponseLimits::DEFAULT).interval,
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn retransmit_schedule() {
        let secs: Vec<u64> = [0, 1, 2, 3, 7, 8, 9, 100, u32::MAX]
            .iter()
            .map(|n| retransmit_timeout(*n).as_secs())
            .collect();
        assert_eq!(secs, [15, 30, 60, 120, 1920, 3840, 3840, 3840, 3840]);
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::None),
            Just(Event::Completed),
            Just(Event::Started),
            Just(Event::Stopped)
        ]
    }

    prop_compose! {
        fn any_announce_request()(
            ids in any::<(u64, u32)>(),
            hashes in any::<([u8; 20], [u8; 20])>(),
            amounts in any::<(u64, u64, u64)>(),
            event in event(),
            ip in any::<[u8; 4]>(),
            rest in any::<(u32, i32, u16)>(),
        ) -> AnnounceRequest {
            AnnounceRequest {
                connection_id: ids.0,
                transaction_id: ids.1,
                info_hash: hashes.0,
                peer_id: hashes.1,
                downloaded: amounts.0,
                left: amounts.1,
                uploaded: amounts.2,
                event,
                ip: Ipv4Addr::from(ip),
                key: rest.0,
                num_want: rest.1,
                port: rest.2,
            }
        }
    }

    proptest! {
        #[test]
        fn connect_round_trip(tid in any::<u32>(), cid in any::<u64>()) {
            let req = ConnectRequest { transaction_id: tid };
            let bytes = encoded(|o| req.encode(o));
            prop_assert_eq!(Request::decode(&bytes), Ok(Request::Connect(req)));
            prop_assert_eq!(Request::decode(&bytes).unwrap().connection_id(), None);
            let resp = ConnectResponse { transaction_id: tid, connection_id: cid };
            let bytes = encoded(|o| resp.encode(o));
            prop_assert_eq!(Response::decode(&bytes, AddressFamily::V6), Ok(Response::Connect(resp)));
        }

        #[test]
        fn announce_request_round_trip(req in any_announce_request()) {
            let bytes = encoded(|o| req.encode(o));
            prop_assert_eq!(bytes.len(), AnnounceRequest::LEN);
            let back = Request::decode(&bytes).unwrap();
            prop_assert_eq!(back.transaction_id(), req.transaction_id);
            prop_assert_eq!(back.connection_id(), Some(req.connection_id));
            prop_assert_eq!(back, Request::Announce(req));
        }

        #[test]
        fn scrape_request_round_trip(cid in any::<u64>(), tid in any::<u32>(), hashes in proptest::collection::vec(any::<[u8; 20]>(), 1..=74)) {
            let bytes = encoded(|o| encode_scrape_request(o, cid, tid, &hashes).unwrap());
            let Ok(Request::Scrape(req)) = Request::decode(&bytes) else { panic!("not a scrape") };
            prop_assert_eq!((req.connection_id, req.transaction_id), (cid, tid));
            prop_assert_eq!(req.info_hashes.iter().collect::<Vec<_>>(), hashes);
        }

        #[test]
        fn announce_response_v4_round_trip(
            nums in any::<(u32, u32, u32, u32)>(),
            peers in proptest::collection::vec(v4_addr(), 0..100),
        ) {
            let (tid, interval, leechers, seeders) = nums;
            let bytes = encoded(|o| {
                encode_announce_response(o, tid, interval, leechers, seeders, peers.clone(), AddressFamily::V4);
            });
            let Ok(Response::Announce(r)) = Response::decode(&bytes, AddressFamily::V4) else { panic!("not an announce") };
            prop_assert_eq!((r.transaction_id, r.interval, r.leechers, r.seeders), nums);
            prop_assert_eq!(r.peers.iter().collect::<Vec<_>>(), peers);
            prop_assert_eq!(encoded(|o| r.encode(o)), bytes);
        }

        #[test]
        fn announce_response_v6_round_trip(
            nums in any::<(u32, u32, u32, u32)>(),
            peers in proptest::collection::vec(v6_addr(), 0..60),
        ) {
            let (tid, interval, leechers, seeders) = nums;
            let bytes = encoded(|o| {
                encode_announce_response(o, tid, interval, leechers, seeders, peers.clone(), AddressFamily::V6);
            });
            let Ok(Response::Announce(r)) = Response::decode(&bytes, AddressFamily::V6) else { panic!("not an announce") };
            prop_assert_eq!((r.transaction_id, r.interval, r.leechers, r.seeders), nums);
            prop_assert_eq!(r.peers.iter().collect::<Vec<_>>(), peers);
        }

        #[test]
        fn scrape_response_round_trip(tid in any::<u32>(), stats in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..74)) {
            let stats: Vec<ScrapeStats> = stats.into_iter()
                .map(|(complete, downloaded, incomplete)| ScrapeStats { complete, downloaded, incomplete })
                .collect();
            let bytes = encoded(|o| encode_scrape_response(o, tid, &stats));
            let Ok(Response::Scrape(r)) = Response::decode(&bytes, AddressFamily::V4) else { panic!("not a scrape") };
            prop_assert_eq!(r.transaction_id, tid);
            prop_assert_eq!(r.entries.iter().collect::<Vec<_>>(), stats);
            prop_assert_eq!(encoded(|o| r.encode(o)), bytes);
        }

        #[test]
        fn error_round_trip(tid in any::<u32>(), message in proptest::collection::vec(any::<u8>(), 0..100)) {
            let e = ErrorResponse { transaction_id: tid, message: &message };
            let bytes = encoded(|o| e.encode(o));
            prop_assert_eq!(Response::decode(&bytes, AddressFamily::V4), Ok(Response::Error(e)));
        }

        #[test]
        fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), action in 0u8..5) {
            let mut request = bytes.clone();
            let mut response = bytes;
            if let Some(b) = request.get_mut(11) { *b = action; }
            if let Some(b) = response.get_mut(3) { *b = action; }
            let _ = Request::decode(&request);
            for family in [AddressFamily::V4, AddressFamily::V6] {
                if let Ok(Response::Announce(a)) = Response::decode(&response, family) {
                    let r = a.to_response(&ResponseLimits::DEFAULT);
                    prop_assert!(r.peers.len() <= a.peers.len());
                }
            }
        }
    }
}
