//! The bounded per-connection send buffer.

use crate::wire::{Message, encode_piece_header};

/// Bytes encoded for the socket and not yet handed to it. `buf[start..]` is pending; the
/// consumed prefix is dropped lazily so that partial socket writes cost no copy.
#[derive(Clone, Debug, Default)]
pub(super) struct SendBuffer {
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

/// Capacity an empty buffer keeps: room for control messages (a have, a few requests), not
/// for blocks. A buffer that grew past it (uploads) gives the memory back once drained, so that
/// idle connections of a client with hundreds of peers do not each pin the largest burst they
/// ever sent; an uploading connection pays one allocation per drain, next to 16 KiB copies.
const RETAIN: usize = 4 * 1024;

/// The smallest growth of the buffer (bytes).
const MIN_GROWTH: usize = 64;

/// The buffer would exceed its bound; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Full {
    pub limit: usize,
}

impl SendBuffer {
    pub fn new(max: usize) -> Self {
        SendBuffer {
            buf: Vec::new(),
            start: 0,
            max: max.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    fn make_room(&mut self, needed: usize) -> Result<(), Full> {
        if self.len().saturating_add(needed) > self.max {
            return Err(Full { limit: self.max });
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= 64 * 1024 && self.start * 2 >= self.buf.len() {
            // Amortised: the moved tail is at most as long as the consumed prefix.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // One reservation per message, not one per field; at least a cache line, so that a
        // run of haves into a buffer that gave its memory back grows once, not at every one.
        if self.buf.capacity() - self.buf.len() < needed {
            self.buf.reserve(needed.max(MIN_GROWTH));
        }
        Ok(())
    }

    pub fn push(&mut self, msg: &Message<'_>) -> Result<(), Full> {
        self.make_room(msg.encoded_len())?;
        // Encoding into a Vec cannot fail for our message sizes (bounded by `max`).
        msg.encode(&mut self.buf)
            .map_err(|_| Full { limit: self.max })
    }

    pub fn push_piece(&mut self, index: u32, begin: u32, data: &[u8]) -> Result<(), Full> {
        self.make_room(data.len().saturating_add(crate::wire::PIECE_HEADER_LEN))?;
        encode_piece_header(&mut self.buf, index, begin, data.len())
            .map_err(|_| Full { limit: self.max })?;
        self.buf.extend_from_slice(data);
        Ok(())
    }

    pub fn push_raw(&mut self, bytes: &[u8]) -> Result<(), Full> {
        self.make_room(bytes.len())?;
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Marks `n` pending bytes as written to the socket (clamped to what is pending).
    pub fn advance(&mut self, n: usize) -> usize {
        let n = n.min(self.len());
        self.start += n;
        if self.start == self.buf.len() {
            self.clear();
        }
        n
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        if self.buf.capacity() > RETAIN {
            self.buf = Vec::new();
        }
    }

    /// Appends every pending byte to `out` and empties the buffer.
    ///
    /// Blocks are not copied a second time: when `out` is empty and the buffer holds more than
    /// a few control messages, the buffer itself is handed over and `out`'s allocation takes
    /// its place (a 16 KiB copy per block was a tenth of a large simulation's time).
    pub fn drain_into(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.len();
        if out.is_empty() && self.start == 0 && n > RETAIN {
            std::mem::swap(out, &mut self.buf);
        } else {
            out.extend_from_slice(self.pending());
        }
        self.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_handed_over_not_copied() {
        let mut b = SendBuffer::new(4 << 20);
        b.push(&Message::Have(1)).unwrap();
        b.push_piece(3, 0, &[9u8; 16 * 1024]).unwrap();
        let at = b.pending().as_ptr();
        let expected = b.pending().to_vec();
        let mut out = Vec::new();
        assert_eq!(b.drain_into(&mut out), expected.len());
        assert_eq!(out, expected);
        assert_eq!(out.as_ptr(), at, "the bytes were copied");
        assert_eq!(b.len(), 0);
        // Into a buffer that already holds bytes, they are appended.
        b.push_piece(4, 0, &[7u8; 16 * 1024]).unwrap();
        let more = b.pending().to_vec();
        b.drain_into(&mut out);
        assert_eq!(out.len(), expected.len() + more.len());
        assert_eq!(out.get(expected.len()..), Some(&more[..]));
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let mut b = SendBuffer::new(4 << 20);
        let block = vec![7u8; 16 * 1024];
        for i in 0..64 {
            b.push_piece(i, 0, &block).unwrap();
        }
        assert!(b.buf.capacity() >= 1 << 20);
        let mut out = Vec::new();
        assert_eq!(b.drain_into(&mut out), 64 * (16 * 1024 + 13));
        assert!(b.buf.capacity() <= RETAIN, "{}", b.buf.capacity());
        // Small buffers keep their allocation (no churn for control messages).
        b.push(&Message::Have(3)).unwrap();
        let cap = b.buf.capacity();
        assert_eq!(b.advance(9), 9);
        assert_eq!(b.buf.capacity(), cap);
        assert_eq!(b.len(), 0);
    }
}
