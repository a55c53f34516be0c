//! Message ids, the borrowing [`Message`] type, frame parsing and encoding.
//!
//! A frame is a 4-byte big-endian length, then (unless the length is 0, a keep-alive) one id
//! byte and the payload (BEP 3). All integers are 4-byte big-endian except the port (2 bytes).

use std::fmt;

use bytes::BufMut;

use super::{DecoderLimits, WireError};

/// Message ids on the wire.
pub mod id {
    /// BEP 3: no payload.
    pub const CHOKE: u8 = 0;
    /// BEP 3: no payload.
    pub const UNCHOKE: u8 = 1;
    /// BEP 3: no payload.
    pub const INTERESTED: u8 = 2;
    /// BEP 3: no payload.
    pub const NOT_INTERESTED: u8 = 3;
    /// BEP 3: piece index.
    pub const HAVE: u8 = 4;
    /// BEP 3: one bit per piece, high bit first.
    pub const BITFIELD: u8 = 5;
    /// BEP 3: index, begin, length.
    pub const REQUEST: u8 = 6;
    /// BEP 3: index, begin, block data.
    pub const PIECE: u8 = 7;
    /// BEP 3: index, begin, length.
    pub const CANCEL: u8 = 8;
    /// BEP 5: the sender's DHT UDP port.
    pub const PORT: u8 = 9;
    /// BEP 6: piece index.
    pub const SUGGEST: u8 = 13;
    /// BEP 6: no payload.
    pub const HAVE_ALL: u8 = 14;
    /// BEP 6: no payload.
    pub const HAVE_NONE: u8 = 15;
    /// BEP 6: index, begin, length.
    pub const REJECT: u8 = 16;
    /// BEP 6: piece index.
    pub const ALLOWED_FAST: u8 = 17;
    /// BEP 10: extended message id, then its payload.
    pub const EXTENDED: u8 = 20;
}

/// Bytes before the block data in a piece message: length, id, index, begin.
pub const PIECE_HEADER_LEN: usize = 13;

/// The human name of a message id, for errors and logs ("unknown" if unassigned).
pub fn message_name(id: u8) -> &'static str {
    match id {
        id::CHOKE => "choke",
        id::UNCHOKE => "unchoke",
        id::INTERESTED => "interested",
        id::NOT_INTERESTED => "not interested",
        id::HAVE => "have",
        id::BITFIELD => "bitfield",
        id::REQUEST => "request",
        id::PIECE => "piece",
        id::CANCEL => "cancel",
        id::PORT => "port",
        id::SUGGEST => "suggest piece",
        id::HAVE_ALL => "have all",
        id::HAVE_NONE => "have none",
        id::REJECT => "reject request",
        id::ALLOWED_FAST => "allowed fast",
        id::EXTENDED => "extended",
        _ => "unknown",
    }
}

/// A block of a piece, as named by request, cancel and reject messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRequest {
    /// Piece index.
    pub index: u32,
    /// Byte offset within the piece.
    pub begin: u32,
    /// Bytes requested.
    pub length: u32,
}

/// One peer wire message; variable payloads borrow from the decoded input.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A zero-length frame (BEP 3); sent about every two minutes.
    KeepAlive,
    /// The sender will not answer requests (BEP 3).
    Choke,
    /// The sender will answer requests (BEP 3).
    Unchoke,
    /// The sender wants pieces the receiver has (BEP 3).
    Interested,
    /// The sender wants nothing from the receiver (BEP 3).
    NotInterested,
    /// The sender completed and verified this piece (BEP 3).
    Have(u32),
    /// The sender's pieces, high bit of byte 0 is piece 0 (BEP 3); check with
    /// [`super::validate_bitfield`] once the piece count is known.
    Bitfield(&'a [u8]),
    /// A block the sender wants (BEP 3).
    Request(BlockRequest),
    /// A block of data (BEP 3); `data` is never empty.
    Piece {
        /// Piece index.
        index: u32,
        /// Byte offset within the piece.
        begin: u32,
        /// The block, borrowed from the input.
        data: &'a [u8],
    },
    /// Withdraws an earlier request (BEP 3).
    Cancel(BlockRequest),
    /// The sender's DHT node listens on this UDP port (BEP 5).
    Port(u16),
    /// Advisory: "you might like this piece" (BEP 6).
    Suggest(u32),
    /// The sender has every piece; replaces the bitfield (BEP 6).
    HaveAll,
    /// The sender has no piece; replaces the bitfield (BEP 6).
    HaveNone,
    /// The sender will not serve this request (BEP 6).
    Reject(BlockRequest),
    /// The sender will serve this piece even while choking (BEP 6).
    AllowedFast(u32),
    /// An extension protocol message (BEP 10): id 0 is the extended handshake.
    Extended {
        /// Extended message id (0 = handshake, others as the receiver's handshake assigned).
        id: u8,
        /// The payload after the extended id, borrowed from the input.
        payload: &'a [u8],
    },
    /// A message id this crate does not know; ignoring it keeps newer peers working.
    Unknown {
        /// The message id.
        id: u8,
        /// The payload after the id, borrowed from the input.
        payload: &'a [u8],
    },
}

/// How a message's payload length is constrained.
enum Shape {
    Fixed(u32),
    Bitfield,
    Piece,
    Extended,
    Other,
}

fn shape(id: u8) -> Shape {
    match id {
        id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => Shape::Fixed(0),
        id::HAVE_ALL | id::HAVE_NONE => Shape::Fixed(0),
        id::HAVE | id::SUGGEST | id::ALLOWED_FAST => Shape::Fixed(4),
        id::REQUEST | id::CANCEL | id::REJECT => Shape::Fixed(12),
        id::PORT => Shape::Fixed(2),
        id::BITFIELD => Shape::Bitfield,
        id::PIECE => Shape::Piece,
        id::EXTENDED => Shape::Extended,
        _ => Shape::Other,
    }
}

/// Checks a frame's length (the length prefix, `>= 1`) against its id and the limits, so that
/// a bad frame is refused as soon as its first 5 bytes are known, before any buffering.
pub(super) fn check_frame(len: u32, msg_id: u8, limits: &DecoderLimits) -> Result<(), WireError> {
    let payload = len.saturating_sub(1);
    match shape(msg_id) {
        Shape::Fixed(expected) if payload != expected => Err(WireError::WrongLength {
            id: msg_id,
            len: payload,
            expected,
        }),
        Shape::Fixed(_) => Ok(()),
        Shape::Bitfield if payload > limits.max_bitfield_len => Err(WireError::BitfieldTooLong {
            len: payload,
            max: limits.max_bitfield_len,
        }),
        Shape::Bitfield => Ok(()),
        Shape::Piece if payload < 8 => Err(WireError::TooShort {
            id: msg_id,
            len: payload,
            min: 8,
        }),
        Shape::Piece if payload - 8 > limits.max_block_len => Err(WireError::BlockTooLong {
            len: payload - 8,
            max: limits.max_block_len,
        }),
        Shape::Piece => Ok(()),
        Shape::Extended if payload < 1 => Err(WireError::TooShort {
            id: msg_id,
            len: payload,
            min: 1,
        }),
        Shape::Extended | Shape::Other if len > limits.max_frame_len => {
            Err(WireError::FrameTooLong {
                len,
                max: limits.max_frame_len,
            })
        }
        Shape::Extended | Shape::Other => Ok(()),
    }
}

fn be32(bytes: [u8; 4]) -> u32 {
    u32::from_be_bytes(bytes)
}

fn fixed<const N: usize>(msg_id: u8, payload: &[u8]) -> Result<[u8; N], WireError> {
    payload.try_into().map_err(|_| WireError::WrongLength {
        id: msg_id,
        len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        expected: N as u32,
    })
}

fn block(bytes: [u8; 12]) -> BlockRequest {
    let [i0, i1, i2, i3, b0, b1, b2, b3, l0, l1, l2, l3] = bytes;
    BlockRequest {
        index: be32([i0, i1, i2, i3]),
        begin: be32([b0, b1, b2, b3]),
        length: be32([l0, l1, l2, l3]),
    }
}

impl<'a> Message<'a> {
    /// Parses one frame without its 4-byte length prefix: `body` is the id and the payload
    /// (empty for a keep-alive). The payload borrows from `body`.
    pub fn parse(body: &'a [u8], limits: &DecoderLimits) -> Result<Message<'a>, WireError> {
        let Some((&msg_id, payload)) = body.split_first() else {
            return Ok(Message::KeepAlive);
        };
        let len = u32::try_from(body.len()).map_err(|_| WireError::FrameTooLong {
            len: u32::MAX,
            max: limits.max_frame_len,
        })?;
        check_frame(len, msg_id, limits)?;
        Ok(match msg_id {
            id::CHOKE => Message::Choke,
            id::UNCHOKE => Message::Unchoke,
            id::INTERESTED => Message::Interested,
            id::NOT_INTERESTED => Message::NotInterested,
            id::HAVE => Message::Have(be32(fixed(msg_id, payload)?)),
            id::BITFIELD => Message::Bitfield(payload),
            id::REQUEST => Message::Request(block(fixed(msg_id, payload)?)),
            id::PIECE => {
                let Some((&[i0, i1, i2, i3, b0, b1, b2, b3], data)) =
                    payload.split_first_chunk::<8>()
                else {
                    return Err(WireError::TooShort {
                        id: msg_id,
                        len: len - 1,
                        min: 8,
                    });
                };
                Message::piece([i0, i1, i2, i3, b0, b1, b2, b3], data)?
            }
            id::CANCEL => Message::Cancel(block(fixed(msg_id, payload)?)),
            id::PORT => Message::Port(u16::from_be_bytes(fixed(msg_id, payload)?)),
            id::SUGGEST => Message::Suggest(be32(fixed(msg_id, payload)?)),
            id::HAVE_ALL => Message::HaveAll,
            id::HAVE_NONE => Message::HaveNone,
            id::REJECT => Message::Reject(block(fixed(msg_id, payload)?)),
            id::ALLOWED_FAST => Message::AllowedFast(be32(fixed(msg_id, payload)?)),
            id::EXTENDED => match payload.split_first() {
                Some((&ext_id, rest)) => Message::Extended {
                    id: ext_id,
                    payload: rest,
                },
                None => {
                    return Err(WireError::TooShort {
                        id: msg_id,
                        len: 0,
                        min: 1,
                    });
                }
            },
            other => Message::Unknown { id: other, payload },
        })
    }

    /// A piece message from its index and begin fields (as on the wire) and its data; the
    /// frame length was checked already.
    pub(super) fn piece(head: [u8; 8], data: &'a [u8]) -> Result<Message<'a>, WireError> {
        let [i0, i1, i2, i3, b0, b1, b2, b3] = head;
        let (index, begin) = (be32([i0, i1, i2, i3]), be32([b0, b1, b2, b3]));
        // A zero-byte block answers no valid request; refusing it here lets consumers rely on
        // `data` being non-empty.
        if data.is_empty() {
            return Err(WireError::EmptyBlock { index, begin });
        }
        Ok(Message::Piece { index, begin, data })
    }

    /// The message id, or `None` for a keep-alive.
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => id::CHOKE,
            Message::Unchoke => id::UNCHOKE,
            Message::Interested => id::INTERESTED,
            Message::NotInterested => id::NOT_INTERESTED,
            Message::Have(_) => id::HAVE,
            Message::Bitfield(_) => id::BITFIELD,
            Message::Request(_) => id::REQUEST,
            Message::Piece { .. } => id::PIECE,
            Message::Cancel(_) => id::CANCEL,
            Message::Port(_) => id::PORT,
            Message::Suggest(_) => id::SUGGEST,
            Message::HaveAll => id::HAVE_ALL,
            Message::HaveNone => id::HAVE_NONE,
            Message::Reject(_) => id::REJECT,
            Message::AllowedFast(_) => id::ALLOWED_FAST,
            Message::Extended { .. } => id::EXTENDED,
            Message::Unknown { id, .. } => *id,
        })
    }

    /// The block a request, cancel, reject or piece message is about (for a piece, `length`
    /// is the data's length); `None` for other messages.
    pub fn block(&self) -> Option<BlockRequest> {
        match *self {
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => Some(b),
            Message::Piece { index, begin, data } => Some(BlockRequest {
                index,
                begin,
                length: u32::try_from(data.len()).unwrap_or(u32::MAX),
            }),
            _ => None,
        }
    }

    /// Payload bytes after the id byte (0 for a keep-alive).
    pub fn payload_len(&self) -> usize {
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 0,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 4,
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 12,
            Message::Port(_) => 2,
            Message::Bitfield(bits) => bits.len(),
            Message::Piece { data, .. } => data.len().saturating_add(8),
            Message::Extended { payload, .. } => payload.len().saturating_add(1),
            Message::Unknown { payload, .. } => payload.len(),
        }
    }

    /// Bytes [`Message::encode`] writes, length prefix included.
    pub fn encoded_len(&self) -> usize {
        match self {
            Message::KeepAlive => 4,
            _ => self.payload_len().saturating_add(5),
        }
    }

    /// Appends the framed message to `out`. Writes nothing on error.
    ///
    /// Copies the payload; for piece messages prefer [`encode_piece_header`] and send the block
    /// from its own buffer. `Unknown` is written verbatim, whatever its id.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), WireError> {
        let Some(msg_id) = self.id() else {
            reserve(out, 4)?;
            out.put_u32(0);
            return Ok(());
        };
        let payload_len = self.payload_len();
        let frame_len = payload_len
            .checked_add(1)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(WireError::TooLargeToEncode { len: payload_len })?;
        reserve(out, self.encoded_len())?;
        out.put_u32(frame_len);
        out.put_u8(msg_id);
        match *self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => {}
            Message::Have(index) | Message::Suggest(index) | Message::AllowedFast(index) => {
                out.put_u32(index);
            }
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => {
                out.put_u32(b.index);
                out.put_u32(b.begin);
                out.put_u32(b.length);
            }
            Message::Port(port) => out.put_u16(port),
            Message::Bitfield(bits) => out.put_slice(bits),
            Message::Piece { index, begin, data } => {
                out.put_u32(index);
                out.put_u32(begin);
                out.put_slice(data);
            }
            Message::Extended { id, payload } => {
                out.put_u8(id);
                out.put_slice(payload);
            }
            Message::Unknown { payload, .. } => out.put_slice(payload),
        }
        Ok(())
    }
}

/// Appends the 13-byte head of a piece message whose block of `block_len` bytes the caller
/// sends next from its own buffer (no copy of the block). Writes nothing on error.
pub fn encode_piece_header(
    out: &mut impl BufMut,
    index: u32,
    begin: u32,
    block_len: usize,
) -> Result<(), WireError> {
    let frame_len = block_len
        .checked_add(9)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(WireError::TooLargeToEncode {
            len: block_len.saturating_add(8),
        })?;
    reserve(out, PIECE_HEADER_LEN)?;
    out.put_u32(frame_len);
    out.put_u8(id::PIECE);
    out.put_u32(index);
    out.put_u32(begin);
    Ok(())
}

fn reserve(out: &impl BufMut, needed: usize) -> Result<(), WireError> {
    let available = out.remaining_mut();
    if available < needed {
        return Err(WireError::BufferTooSmall { needed, available });
    }
    Ok(())
}

/// Prints short payloads in hex and long ones (blocks, bitfields) as a length and a prefix.
struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        if self.0.is_empty() {
            return f.write_str("[]");
        }
        if self.0.len() > SHOWN {
            write!(f, "<{} bytes: ", self.0.len())?;
        }
        for b in self.0.iter().take(SHOWN) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > SHOWN {
            f.write_str("..>")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::KeepAlive => f.write_str("KeepAlive"),
            Message::Choke => f.write_str("Choke"),
            Message::Unchoke => f.write_str("Unchoke"),
            Message::Interested => f.write_str("Interested"),
            Message::NotInterested => f.write_str("NotInterested"),
            Message::Have(i) => f.debug_tuple("Have").field(i).finish(),
            Message::Bitfield(bits) => f.debug_tuple("Bitfield").field(&Hex(bits)).finish(),
            Message::Request(b) => f.debug_tuple("Request").field(b).finish(),
            Message::Piece { index, begin, data } => f
                .debug_struct("Piece")
                .field("index", index)
                .field("begin", begin)
                .field("data", &Hex(data))
                .finish(),
            Message::Cancel(b) => f.debug_tuple("Cancel").field(b).finish(),
            Message::Port(p) => f.debug_tuple("Port").field(p).finish(),
            Message::Suggest(i) => f.debug_tuple("Suggest").field(i).finish(),
            Message::HaveAll => f.write_str("HaveAll"),
            Message::HaveNone => f.write_str("HaveNone"),
            Message::Reject(b) => f.debug_tuple("Reject").field(b).finish(),
            Message::AllowedFast(i) => f.debug_tuple("AllowedFast").field(i).finish(),
            Message::Extended { id, payload } => f
                .debug_struct("Extended")
                .field("id", id)
                .field("payload", &Hex(payload))
                .finish(),
            Message::Unknown { id, payload } => f
                .debug_struct("Unknown")
                .field("id", id)
                .field("payload", &Hex(payload))
                .finish(),
        }
    }
}
