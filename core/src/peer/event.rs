//! What a connection reports to the Session, and why it closes.

use std::fmt;
use std::time::Duration;

use super::extension::{ExtensionError, ExtensionHandshake};
use crate::bitfield::Bitfield;
use crate::wire::{BlockRequest, Reserved, WireError};

/// One thing the peer did, validated; borrows block data and lists from the connection or
/// the input until dropped.
///
/// Every message received yields exactly one event (some are informational, such as
/// [`PeerEvent::KeepAlive`]), so a driver's loop sees the whole conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent<'a> {
    /// Incoming connections only: the peer named the torrent it wants. Call
    /// [`super::PeerConn::accept`] or [`super::PeerConn::reject`] before feeding more bytes.
    InfoHash {
        /// The torrent the peer asks for.
        info_hash: [u8; 20],
        /// The peer's reserved bits.
        reserved: Reserved,
    },
    /// Both handshakes are complete. The Session checks for a duplicate peer id, then sends
    /// our pieces with [`super::PeerConn::send_bitfield`] before anything else.
    HandshakeDone {
        /// The peer's id.
        peer_id: [u8; 20],
        /// The peer's reserved bits.
        reserved: Reserved,
        /// The extensions both ends support.
        negotiated: Reserved,
        /// The client named by the peer id, if it follows a known convention.
        client: Option<&'a str>,
    },
    /// A keep-alive (BEP 3); nothing to do.
    KeepAlive,
    /// The peer choked us. Without the fast extension every outstanding request is dropped
    /// (BEP 3): `released` lists them, re-issue them elsewhere. With it (BEP 6) requests stay
    /// outstanding until rejected or served, and `released` is empty.
    Choked {
        /// Our requests the choke discarded.
        released: &'a [BlockRequest],
    },
    /// The peer unchoked us: [`super::PeerConn::request_slots`] is now positive.
    Unchoked,
    /// The peer is interested in our pieces.
    Interested,
    /// The peer is no longer interested.
    NotInterested,
    /// The peer announced a piece: its index, checked against the piece count. Peers repeat
    /// haves, and the connection keeps no record of them: the picker knows whether it is new.
    Have(u32),
    /// The peer's pieces (BEP 3), validated: exact length, spare bits zero. As sent: a late
    /// bitfield (aria2) adds to what the peer announced before, so merge it, never replace.
    Bitfield(Bitfield),
    /// The peer has every piece (BEP 6).
    HaveAll,
    /// The peer has no piece (BEP 6).
    HaveNone,
    /// The peer requested a block, now queued: serve it through
    /// [`super::PeerConn::poll_upload`] and [`super::PeerConn::send_block`], or refuse it with
    /// [`super::PeerConn::reject_request`].
    Request(BlockRequest),
    /// A request that was not queued; a reject was sent if `rejected`.
    RequestRefused {
        /// The request.
        block: BlockRequest,
        /// Why.
        reason: RefuseReason,
        /// Whether a reject message was sent (fast extension only).
        rejected: bool,
    },
    /// The peer cancelled a request. If it was still queued it is dropped (and, with the
    /// fast extension, answered with a reject as BEP 6 requires); a later `send_block` for it
    /// is a no-op.
    Cancelled {
        /// The cancelled request.
        block: BlockRequest,
        /// Whether it was queued.
        was_queued: bool,
    },
    /// A block we requested arrived; the request is no longer outstanding.
    Block {
        /// Which block (`length` = the data's length).
        block: BlockRequest,
        /// The data.
        data: &'a [u8],
    },
    /// A block we had requested but given up on (we cancelled it, it timed out, or a choke
    /// released it) arrived late. Normal; use it if the piece still needs it.
    LateBlock {
        /// Which block.
        block: BlockRequest,
        /// The data.
        data: &'a [u8],
    },
    /// A block we never requested (or forgot: the memory of abandoned requests is bounded).
    /// BEP 6 says a fast-extension peer MUST close the connection; the Session decides.
    UnrequestedBlock {
        /// Which block.
        block: BlockRequest,
        /// The data.
        data: &'a [u8],
    },
    /// The peer rejected an outstanding request (BEP 6): re-issue it elsewhere.
    Rejected(BlockRequest),
    /// The peer rejected a request we had already given up on; nothing to do.
    LateReject(BlockRequest),
    /// The peer will serve this piece even while choking us (BEP 6).
    AllowedFast {
        /// Piece index.
        index: u32,
        /// False if already in its allowed-fast set.
        new: bool,
    },
    /// The peer suggests a piece (BEP 6), advisory.
    Suggest(u32),
    /// The peer's DHT node listens on this UDP port (BEP 5).
    Port(u16),
    /// The peer's extension handshake (BEP 10); also merged into the connection's state
    /// (see [`super::PeerConn::peer_extension_id`]).
    ExtensionHandshake(ExtensionHandshake<'a>),
    /// Another extended message: `id` is the id *we* assigned in our handshake's `m`.
    Extended {
        /// Our id for the extension.
        id: u8,
        /// The payload after the extended id.
        payload: &'a [u8],
    },
    /// A message with an id we do not know; ignored (counted).
    Unknown {
        /// The message id.
        id: u8,
        /// Payload bytes.
        len: usize,
    },
    /// Requests that got no answer in time ([`super::PeerConn::handle_timeout`]); given up and
    /// cancelled: re-issue them elsewhere.
    RequestsTimedOut(&'a [BlockRequest]),
}

/// Why a request from the peer was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// We choke the peer and the piece is not in the allowed-fast set we gave it.
    Choked,
    /// The same block is already queued.
    Duplicate,
    /// The queue is at `max_peer_requests` (only with the fast extension; without, it closes).
    QueueFull,
}

/// Why a connection closed; every variant says what to look at. Once a method returned one,
/// the connection is closed and every later call returns it again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The peer broke the framing or sent a malformed message.
    #[error("peer broke the wire protocol: {0}")]
    Wire(#[from] WireError),
    /// No complete handshake in time.
    #[error("peer did not complete the handshake within {}s", .after.as_secs())]
    HandshakeTimeout {
        /// The configured handshake timeout.
        after: Duration,
    },
    /// Outgoing connection: the peer answered for another torrent.
    #[error(
        "peer answered for torrent {} but we asked for {}",
        Hex(got),
        Hex(expected)
    )]
    InfoHashMismatch {
        /// The info hash we sent.
        expected: [u8; 20],
        /// The info hash the peer sent.
        got: [u8; 20],
    },
    /// Incoming connection: the Session does not serve the torrent (see `reject`).
    #[error("peer asked for torrent {}, which we do not serve", Hex(info_hash))]
    UnknownTorrent {
        /// The info hash the peer asked for.
        info_hash: [u8; 20],
    },
    /// The peer sent our own peer id: we connected to ourselves.
    #[error("connected to ourselves (the peer sent our own peer id)")]
    SelfConnection,
    /// A bitfield of the wrong length.
    #[error(
        "peer sent a bitfield of {len} bytes, the torrent's {piece_count} pieces need {expected}"
    )]
    BitfieldLength {
        /// Bytes received.
        len: usize,
        /// Bytes expected.
        expected: usize,
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A bitfield with bits set past the last piece (BEP 3: spare bits are zero).
    #[error("peer sent a bitfield with spare bits set (past piece {piece_count})")]
    BitfieldSpareBits {
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A have all or have none that is not the peer's first message (a bitfield is accepted
    /// at any time: aria2 sends one in place of many haves).
    #[error(
        "peer sent {} message after other messages (BEP 3/6: only as the first message \
         after the handshake)",
        A(message)
    )]
    AvailabilityNotFirst {
        /// The message name.
        message: &'static str,
    },
    /// A piece index at or past the piece count.
    #[error(
        "peer sent {} message for piece index {index}, beyond the {piece_count} pieces of the \
         torrent",
        A(message)
    )]
    PieceIndexOutOfRange {
        /// The message name.
        message: &'static str,
        /// The index received.
        index: u32,
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A request (or cancel) outside its piece or over the block limit.
    #[error(
        "peer requested {length} bytes at offset {begin} of piece {index}, outside the \
         {piece_len}-byte piece or over the {max}-byte block limit"
    )]
    InvalidRequest {
        /// Piece index.
        index: u32,
        /// Offset.
        begin: u32,
        /// Length.
        length: u32,
        /// Length of that piece.
        piece_len: u32,
        /// The block limit.
        max: u32,
    },
    /// More queued requests than the bound, without the fast extension to reject them.
    #[error("peer has more than {limit} requests queued (the reqq we advertised)")]
    RequestQueueFull {
        /// The bound.
        limit: usize,
    },
    /// The peer keeps requesting while we choke it.
    #[error("peer sent more than {limit} requests while choked")]
    RequestsWhileChoked {
        /// The bound.
        limit: usize,
    },
    /// A message that needs an extension the two ends did not negotiate.
    #[error("peer sent {} message but {extension} was not negotiated", A(message))]
    NotNegotiated {
        /// The message name.
        message: &'static str,
        /// The extension and its BEP, e.g. "the fast extension (BEP 6)".
        extension: &'static str,
    },
    /// A reject for a request we never sent (BEP 6: SHOULD close).
    #[error(
        "peer rejected a request we never sent (piece {}, offset {}, {} bytes)",
        .block.index, .block.begin, .block.length
    )]
    RejectNotRequested {
        /// The rejected block.
        block: BlockRequest,
    },
    /// More distinct allowed-fast pieces than the bound.
    #[error("peer sent more than {limit} allowed fast pieces")]
    TooManyAllowedFast {
        /// The bound.
        limit: usize,
    },
    /// An extension handshake that could not be read.
    #[error("peer sent an invalid extension handshake (BEP 10): {0}")]
    InvalidExtensionHandshake(ExtensionError),
    /// Our send buffer passed its bound: the peer is not reading.
    #[error("send buffer exceeded {limit} bytes (the peer is not reading)")]
    SendBufferFull {
        /// The bound.
        limit: usize,
    },
    /// Nothing received for too long.
    #[error("peer sent nothing for {}s", .after.as_secs())]
    Idle {
        /// The configured idle timeout.
        after: Duration,
    },
    /// The Session called a method in a state where it makes no sense (a bug in the caller,
    /// reported instead of a panic).
    #[error("internal error: {what}")]
    Misuse {
        /// What was wrong.
        what: &'static str,
    },
}

/// A message name with its indefinite article: "a have", "an allowed fast".
struct A<'a>(&'a str);

impl fmt::Display for A<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vowel = self.0.starts_with(['a', 'e', 'i', 'o', 'u']);
        write!(f, "{} {}", if vowel { "an" } else { "a" }, self.0)
    }
}

/// Lowercase hex of 20 bytes, for info hashes in messages.
pub(super) struct Hex<'a>(pub &'a [u8; 20]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn block(f: &mut fmt::Formatter<'_>, b: &BlockRequest) -> fmt::Result {
    write!(f, "piece {} +{} len {}", b.index, b.begin, b.length)
}

fn reserved(f: &mut fmt::Formatter<'_>, r: Reserved) -> fmt::Result {
    let names = [
        (r.fast(), "fast"),
        (r.extension_protocol(), "ext"),
        (r.dht(), "dht"),
    ];
    f.write_str("[")?;
    let mut sep = "";
    for (on, name) in names {
        if on {
            write!(f, "{sep}{name}")?;
            sep = " ";
        }
    }
    f.write_str("]")
}

/// One line per event, for logs and snapshot tests: names, indices and lengths, never data.
impl fmt::Display for PeerEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerEvent::InfoHash {
                info_hash,
                reserved: r,
            } => {
                write!(f, "info hash {} ", Hex(info_hash))?;
                reserved(f, *r)
            }
            PeerEvent::HandshakeDone {
                peer_id,
                negotiated,
                client,
                ..
            } => {
                write!(f, "handshake done: peer id {} ", peer_id.escape_ascii())?;
                if let Some(c) = client {
                    write!(f, "({c}) ")?;
                }
                f.write_str("negotiated ")?;
                reserved(f, *negotiated)
            }
            PeerEvent::KeepAlive => f.write_str("keep-alive"),
            PeerEvent::Choked { released } => {
                write!(f, "choked (released {} requests)", released.len())
            }
            PeerEvent::Unchoked => f.write_str("unchoked"),
            PeerEvent::Interested => f.write_str("interested"),
            PeerEvent::NotInterested => f.write_str("not interested"),
            PeerEvent::Have(index) => write!(f, "have {index}"),
            PeerEvent::Bitfield(b) => write!(f, "bitfield {}/{}", b.count_ones(), b.len()),
            PeerEvent::HaveAll => f.write_str("have all"),
            PeerEvent::HaveNone => f.write_str("have none"),
            PeerEvent::Request(b) => {
                f.write_str("request ")?;
                block(f, b)
            }
            PeerEvent::RequestRefused {
                block: b,
                reason,
                rejected,
            } => {
                f.write_str("request refused ")?;
                block(f, b)?;
                write!(
                    f,
                    " ({reason:?}{})",
                    if *rejected { ", rejected" } else { "" }
                )
            }
            PeerEvent::Cancelled {
                block: b,
                was_queued,
            } => {
                f.write_str("cancel ")?;
                block(f, b)?;
                f.write_str(if *was_queued { "" } else { " (not queued)" })
            }
            PeerEvent::Block { block: b, .. } => {
                f.write_str("block ")?;
                block(f, b)
            }
            PeerEvent::LateBlock { block: b, .. } => {
                f.write_str("late block ")?;
                block(f, b)
            }
            PeerEvent::UnrequestedBlock { block: b, .. } => {
                f.write_str("unrequested block ")?;
                block(f, b)
            }
            PeerEvent::Rejected(b) => {
                f.write_str("rejected ")?;
                block(f, b)
            }
            PeerEvent::LateReject(b) => {
                f.write_str("late reject ")?;
                block(f, b)
            }
            PeerEvent::AllowedFast { index, new } => {
                write!(
                    f,
                    "allowed fast {index}{}",
                    if *new { "" } else { " (known)" }
                )
            }
            PeerEvent::Suggest(i) => write!(f, "suggest {i}"),
            PeerEvent::Port(p) => write!(f, "dht port {p}"),
            PeerEvent::ExtensionHandshake(hs) => {
                f.write_str("extension handshake")?;
                if let Some(v) = hs.v {
                    write!(f, " v={v:?}")?;
                }
                for (name, id) in &hs.m {
                    write!(f, " {}={id}", name.escape_ascii())?;
                }
                if let Some(q) = hs.reqq {
                    write!(f, " reqq={q}")?;
                }
                Ok(())
            }
            PeerEvent::Extended { id, payload } => {
                write!(f, "extended id {id} ({} bytes)", payload.len())
            }
            PeerEvent::Unknown { id, len } => write!(f, "unknown message {id} ({len} bytes)"),
            PeerEvent::RequestsTimedOut(blocks) => {
                write!(f, "{} requests timed out", blocks.len())
            }
        }
    }
}
