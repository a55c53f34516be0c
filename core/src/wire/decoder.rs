//! The incremental frame decoder: bytes in chunks of any size in, borrowed messages out.

use super::message::check_frame;
use super::validate::bitfield_len;
use super::{Message, WireError};

/// Bounds on what a peer may send; a frame over a bound is refused before it is buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest block in a piece message. BEP 3: "all current implementations use 2^14
    /// (16 kiB), and close connections which request an amount greater than that".
    pub max_block_len: u32,
    /// Largest bitfield payload; exact (`ceil(pieces / 8)`) once the piece count is known,
    /// see [`DecoderLimits::with_piece_count`].
    pub max_bitfield_len: u32,
    /// Largest length prefix for messages that have no bound of their own: extended (BEP 10)
    /// and unknown ids. Piece and bitfield frames use the two limits above instead, and
    /// fixed-size messages must have their exact size.
    pub max_frame_len: u32,
}

impl DecoderLimits {
    /// 16 KiB blocks; bitfields for up to 2^21 pieces (libtorrent's default `max_pieces`,
    /// needed before a magnet link's metadata arrives); 64 KiB for extended messages, room for
    /// a 16 KiB BEP 9 metadata piece with its header.
    pub const DEFAULT: DecoderLimits = DecoderLimits {
        max_block_len: 16 * 1024,
        max_bitfield_len: (1 << 21) / 8,
        max_frame_len: 64 * 1024,
    };

    /// The same limits with the bitfield bound set exactly for a torrent of `piece_count`
    /// pieces (a longer bitfield is then refused before it is buffered).
    pub fn with_piece_count(self, piece_count: u32) -> DecoderLimits {
        DecoderLimits {
            max_bitfield_len: u32::try_from(bitfield_len(piece_count)).unwrap_or(u32::MAX),
            ..self
        }
    }

    /// The largest length prefix any message can have under these limits.
    pub fn largest_frame(&self) -> u32 {
        // 13 is the largest fixed-size frame (request, cancel, reject).
        self.max_frame_len
            .max(self.max_block_len.saturating_add(9))
            .max(self.max_bitfield_len.saturating_add(1))
            .max(13)
    }
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Extra capacity kept beyond one piece frame, so a straddling metadata piece (BEP 9: 16 KiB
/// plus a small bencoded header) does not reallocate either.
const RETAIN_SLACK: usize = 1024;

/// A piece frame's bytes before its block: id, index, begin.
const PIECE_HEAD: usize = 9;

/// Splits a byte stream into messages, borrowing from the input whenever a frame is whole in
/// it and copying only frames that straddle two chunks into one bounded, reused buffer.
///
/// ```
/// use hive_core::wire::{FrameDecoder, Message};
/// let mut decoder = FrameDecoder::default();
/// // A socket read that ends in the middle of a `have` message.
/// let mut input: &[u8] = &[0, 0, 0, 1, 2, 0, 0, 0, 5, 4, 0, 0];
/// assert_eq!(decoder.decode(&mut input), Ok(Some(Message::Interested)));
/// assert_eq!(decoder.decode(&mut input), Ok(None)); // input used up, 7 bytes held
/// let mut input: &[u8] = &[0, 7];
/// assert_eq!(decoder.decode(&mut input), Ok(Some(Message::Have(7))));
/// ```
#[derive(Clone, Debug, Default)]
pub struct FrameDecoder {
    limits: DecoderLimits,
    state: State,
    failed: bool,
}

/// The partial-frame state, a separate field so a message borrowed from it can be returned
/// while the decoder records a failure in `failed`.
#[derive(Clone, Debug, Default)]
struct State {
    /// The length prefix of a frame whose header straddles chunks.
    header: [u8; 4],
    /// Bytes of `header` received; 4 once the frame length is known.
    header_len: usize,
    /// The current frame's length prefix (valid when `header_len == 4`).
    frame_len: usize,
    /// Id and payload of a straddling frame received so far.
    body: Vec<u8>,
    /// `body` holds a frame already returned; cleared on the next call.
    ready: bool,
}

impl FrameDecoder {
    /// A decoder at a frame boundary with these limits.
    pub fn new(limits: DecoderLimits) -> Self {
        FrameDecoder {
            limits,
            state: State::default(),
            failed: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> DecoderLimits {
        self.limits
    }

    /// Replaces the limits, e.g. with [`DecoderLimits::with_piece_count`] once a magnet link's
    /// metadata arrived. A frame already partly received was checked under the old limits.
    pub fn set_limits(&mut self, limits: DecoderLimits) {
        self.limits = limits;
    }

    /// Takes bytes from the front of `input` (advancing it) and returns the next message.
    ///
    /// `Ok(None)` means `input` is used up: any partial frame is held and completed by later
    /// calls. So a driver loops `while let Some(msg) = decoder.decode(&mut input)? { .. }` over
    /// each chunk it reads. A frame that is whole in `input` is returned borrowing `input`; only
    /// a frame split across chunks is copied (once) into the decoder's buffer. The returned
    /// message borrows the decoder until it is dropped.
    ///
    /// Errors are final (the stream has lost its framing): later calls return
    /// [`WireError::Failed`]; close the connection.
    pub fn decode<'s, 'i: 's>(
        &'s mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<Message<'s>>, WireError> {
        if self.failed {
            return Err(WireError::Failed);
        }
        let result = self.state.decode(input, &self.limits);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Bytes of an incomplete frame held in the decoder (0 at a frame boundary).
    pub fn buffered(&self) -> usize {
        if self.state.ready {
            0
        } else {
            self.state.header_len + self.state.body.len()
        }
    }

    /// Heap bytes reserved for straddling frames, for memory accounting.
    pub fn buffer_capacity(&self) -> usize {
        self.state.body.capacity()
    }

    /// Whether an error ended decoding.
    pub fn is_failed(&self) -> bool {
        self.failed
    }
}

fn check_len(len: u32, limits: &DecoderLimits) -> Result<usize, WireError> {
    let max = limits.largest_frame();
    if len > max {
        return Err(WireError::FrameTooLong { len, max });
    }
    Ok(len as usize)
}

impl State {
    fn decode<'s, 'i: 's>(
        &'s mut self,
        input: &mut &'i [u8],
        limits: &DecoderLimits,
    ) -> Result<Option<Message<'s>>, WireError> {
        if self.ready {
            self.ready = false;
            self.header_len = 0;
            self.body.clear();
            // A rare big frame (a bitfield) should not pin its buffer for the connection's
            // life; piece-sized capacity stays so that straddling blocks never reallocate.
            let retain = (limits.max_block_len as usize).saturating_add(9 + RETAIN_SLACK);
            if self.body.capacity() > retain {
                self.body.shrink_to(retain);
            }
        }
        if self.header_len == 0 {
            if let Some((prefix, rest)) = input.split_first_chunk::<4>() {
                let len = check_len(u32::from_be_bytes(*prefix), limits)?;
                if let Some((body, tail)) = rest.split_at_checked(len) {
                    // The common case: the whole frame is in the input; borrow it.
                    *input = tail;
                    return Message::parse(body, limits).map(Some);
                }
                self.header = *prefix;
                self.header_len = 4;
                self.frame_len = len;
                *input = rest;
            }
        }
        if self.header_len < 4 {
            let take = (4 - self.header_len).min(input.len());
            let (head, tail) = input.split_at(take);
            if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + take) {
                dst.copy_from_slice(head);
            }
            *input = tail;
            self.header_len += take;
            if self.header_len < 4 {
                return Ok(None);
            }
            self.frame_len = check_len(u32::from_be_bytes(self.header), limits)?;
            if self.frame_len == 0 {
                self.header_len = 0;
                return Ok(Some(Message::KeepAlive));
            }
        }
        if self.body.is_empty() {
            // Validate the length against the id before buffering a single payload byte.
            let Some(&msg_id) = input.first() else {
                return Ok(None);
            };
            check_frame(self.frame_len as u32, msg_id, limits)?;
        }
        if let Some(msg) = self.piece_whole_in(input)? {
            return Ok(Some(msg));
        }
        let take = (self.frame_len - self.body.len()).min(input.len());
        // Room for the whole frame at once, except for a piece header alone: its block may
        // well arrive whole in the next chunk and be borrowed from there (a connection that
        // never sees a split block then never holds 16 KiB here).
        let piece_head = self.body.first().or(input.first()) == Some(&super::id::PIECE)
            && self.body.len() + take <= PIECE_HEAD;
        if !piece_head && self.body.capacity() < self.frame_len {
            self.body.reserve_exact(self.frame_len - self.body.len());
        }
        let (head, tail) = input.split_at(take);
        self.body.extend_from_slice(head);
        *input = tail;
        if self.body.len() < self.frame_len {
            return Ok(None);
        }
        self.ready = true;
        Message::parse(&self.body, limits).map(Some)
    }

    /// A piece frame whose start (some of its 13 header bytes) came in an earlier chunk: if
    /// the rest of the frame is in `input`, the block is borrowed from `input`. A driver that
    /// delivers the header and the block as separate chunks (a simulator handing on the
    /// sender's buffers) then costs no copy; only a block that is itself split is buffered.
    /// The frame length was checked against the id.
    fn piece_whole_in<'i>(
        &mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<Message<'i>>, WireError> {
        let id = self.body.first().or(input.first());
        if id != Some(&super::id::PIECE) || self.body.len() > PIECE_HEAD {
            return Ok(None);
        }
        let rest_len = self.frame_len.saturating_sub(self.body.len());
        let Some((rest, tail)) = input.split_at_checked(rest_len) else {
            return Ok(None);
        };
        let Some((head, data)) = rest.split_at_checked(PIECE_HEAD - self.body.len()) else {
            return Ok(None); // a frame too short for a piece header: check_frame refused it
        };
        // Index and begin: the bytes after the id, from the buffer and then from the input.
        let mut fields = [0u8; 8];
        for (dst, src) in fields.iter_mut().zip(self.body.iter().chain(head).skip(1)) {
            *dst = *src;
        }
        *input = tail;
        // Resets the frame state at the next call, as for a frame returned from `body`.
        self.ready = true;
        Message::piece(fields, data).map(Some)
    }
}
