//! The peer wire protocol (BEP 3) with the DHT port (BEP 5), fast (BEP 6) and extension
//! protocol (BEP 10) messages: handshake, message codec and an incremental frame decoder.
//!
//! Decoding borrows: a [`Message`] points into the bytes it was decoded from, so piece data
//! goes from the socket buffer to its consumer without a copy. The [`FrameDecoder`] copies only
//! the frames that straddle two input chunks, into one bounded buffer that it reuses. Encoding
//! writes into a buffer the caller owns; [`encode_piece_header`] writes just the 13-byte head
//! of a piece message so that block data can be sent from its own buffer (vectored write).
//!
//! A connection's receive side is: a [`HandshakeDecoder`] until it yields
//! [`HandshakeEvent::Complete`], then a [`FrameDecoder`] over the rest of the same input.
//! Framing errors are typed ([`WireError`]) and final: after one, close the connection.
//! Checks that need the torrent (bitfield length, piece index range, block bounds) are
//! separate functions ([`validate_bitfield`], [`validate_index`], [`validate_block`]) because the
//! decoder does not know the torrent.

mod decoder;
mod handshake;
mod message;
mod validate;

#[cfg(test)]
mod tests;

pub use decoder::{DecoderLimits, FrameDecoder};
pub use handshake::{
    HANDSHAKE_LEN, HANDSHAKE_PREFIX_LEN, Handshake, HandshakeDecoder, HandshakeEvent, PROTOCOL,
    Reserved,
};
pub use message::{BlockRequest, Message, PIECE_HEADER_LEN, encode_piece_header, id, message_name};
pub use validate::{bitfield_len, has_piece, validate_bitfield, validate_block, validate_index};

/// Everything that can go wrong on the wire: peer misbehaviour, encoding misuse, validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The handshake does not start with byte 19 and "BitTorrent protocol".
    #[error(
        "not a BitTorrent handshake: byte {offset} is {byte:#04x} \
         (expected 19 then \"BitTorrent protocol\"; maybe an encrypted or non-BitTorrent peer)"
    )]
    BadProtocol {
        /// Offset of the first wrong byte in the handshake.
        offset: usize,
        /// The byte found there.
        byte: u8,
    },
    /// A length prefix larger than any message the limits allow; refused before buffering.
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    FrameTooLong {
        /// The length prefix as received.
        len: u32,
        /// The largest accepted length for this frame.
        max: u32,
    },
    /// A piece message whose block is larger than `max_block_len`.
    #[error("piece message carries a {len}-byte block, more than the limit of {max}")]
    BlockTooLong {
        /// Block data bytes in the message.
        len: u32,
        /// The configured `max_block_len`.
        max: u32,
    },
    /// A bitfield message longer than `max_bitfield_len`.
    #[error("bitfield of {len} bytes exceeds the limit of {max} bytes")]
    BitfieldTooLong {
        /// Payload bytes of the bitfield message.
        len: u32,
        /// The configured `max_bitfield_len`.
        max: u32,
    },
    /// A fixed-size message (have, request, port, ...) with the wrong payload size.
    #[error("{} message has a {len}-byte payload, expected {expected}", message_name(*id))]
    WrongLength {
        /// The message id.
        id: u8,
        /// Payload bytes received (after the id byte).
        len: u32,
        /// Payload bytes the message must have.
        expected: u32,
    },
    /// A variable-size message too short for its fixed fields (piece, extended).
    #[error("{} message has a {len}-byte payload, needs at least {min}", message_name(*id))]
    TooShort {
        /// The message id.
        id: u8,
        /// Payload bytes received (after the id byte).
        len: u32,
        /// Smallest valid payload.
        min: u32,
    },
    /// A piece message with no block data: no valid request asks for zero bytes.
    #[error("piece message for piece {index} at offset {begin} carries no data")]
    EmptyBlock {
        /// Piece index.
        index: u32,
        /// Byte offset in the piece.
        begin: u32,
    },
    /// The decoder already returned an error; the stream has lost its framing.
    #[error("the decoder failed earlier; close the connection")]
    Failed,
    /// Encoding into a buffer with too little room left (for example a fixed `&mut [u8]`).
    #[error("output buffer has {available} bytes free, the message needs {needed}")]
    BufferTooSmall {
        /// Bytes the encoded message takes.
        needed: usize,
        /// Bytes the buffer could still take.
        available: usize,
    },
    /// A message whose length does not fit the 32-bit length prefix.
    #[error("a {len}-byte payload does not fit in a 32-bit length prefix")]
    TooLargeToEncode {
        /// Payload bytes the caller tried to encode.
        len: usize,
    },
    /// A bitfield whose length does not match the torrent's piece count.
    #[error("bitfield is {len} bytes, the torrent's {piece_count} pieces need {expected}")]
    BitfieldLength {
        /// Bytes received.
        len: usize,
        /// Bytes the piece count requires.
        expected: usize,
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A bitfield with bits set past the last piece (BEP 3: spare bits are zero).
    #[error("bitfield sets spare bits past the last piece ({piece_count} pieces)")]
    BitfieldSpareBits {
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A piece index at or past the torrent's piece count.
    #[error("piece index {index} is out of range (the torrent has {piece_count} pieces)")]
    IndexOutOfRange {
        /// The index received.
        index: u32,
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A block (request, cancel, reject or piece) of zero length, longer than the block limit,
    /// or reaching past the end of its piece.
    #[error(
        "block at offset {begin} of length {length} is invalid for piece {index} \
         ({piece_len} bytes, blocks of 1..={max_block_len} bytes)"
    )]
    InvalidBlock {
        /// Piece index.
        index: u32,
        /// Byte offset in the piece.
        begin: u32,
        /// Block length.
        length: u32,
        /// Length of that piece.
        piece_len: u32,
        /// Largest block accepted.
        max_block_len: u32,
    },
}
