//! The bounded per-connection send buffer.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

use crate::wire::{Message, encode_piece_header};

/// Bytes encoded for the socket and not yet handed to it: control bytes (every message, and
/// the header of each piece message) in one buffer, block payloads as the [`Bytes`] the disk
/// read gave, never copied. The stream is `ctrl[start..]` with each block spliced in at its
/// offset. The consumed prefix of `ctrl` is dropped lazily so that partial writes cost no copy.
///
/// Why not one `Vec`: copying every 16 KiB block into it (and reallocating it when a `have`
/// followed a block) was a sixth of a large simulation's time. Why control bytes in a plain
/// `Vec` rather than a shared buffer handed out by reference: taking them is one small copy
/// of bytes just written, cheaper than a reference count on a separate allocation per take.
#[derive(Clone, Debug, Default)]
pub(super) struct SendBuffer {
    ctrl: Vec<u8>,
    start: usize,
    /// Blocks in order, each with the offset in `ctrl` of the control bytes it follows.
    blocks: VecDeque<(usize, Bytes)>,
    /// Bytes in `blocks`.
    block_bytes: usize,
    max: usize,
}

/// Control capacity an empty buffer keeps: room for a have, a few requests. A buffer that
/// grew past it (a bitfield, a long run of haves) gives the memory back once drained, so that
/// idle connections of a client with hundreds of peers do not each pin their largest burst.
const RETAIN: usize = 4 * 1024;

/// Block slots an empty buffer keeps (an uploading connection has a few blocks queued).
const RETAIN_BLOCKS: usize = 16;

/// The smallest growth of the control buffer (bytes).
const MIN_GROWTH: usize = 64;

/// The buffer would exceed its bound; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Full {
    pub limit: usize,
}

impl SendBuffer {
    pub fn new(max: usize) -> Self {
        SendBuffer {
            max: max.max(1),
            ..SendBuffer::default()
        }
    }

    /// Bytes pending, blocks included.
    pub fn len(&self) -> usize {
        self.ctrl.len() - self.start + self.block_bytes
    }

    /// The first contiguous run of pending bytes (all of them when no block is queued);
    /// empty when nothing is pending.
    pub fn pending(&self) -> &[u8] {
        match self.blocks.front() {
            Some((at, block)) if *at == self.start => block,
            Some((at, _)) => self.ctrl.get(self.start..*at).unwrap_or_default(),
            None => self.ctrl.get(self.start..).unwrap_or_default(),
        }
    }

    fn make_room(&mut self, needed: usize, ctrl: usize) -> Result<(), Full> {
        if self.len().saturating_add(needed) > self.max {
            return Err(Full { limit: self.max });
        }
        if self.len() == 0 {
            self.ctrl.clear();
            self.start = 0;
        } else if self.start >= 64 * 1024 && self.start * 2 >= self.ctrl.len() {
            // Amortised: the moved tail is at most as long as the consumed prefix.
            self.ctrl.drain(..self.start);
            for (at, _) in &mut self.blocks {
                *at = at.saturating_sub(self.start);
            }
            self.start = 0;
        }
        // One reservation per message, not one per field; at least a cache line, so that a
        // run of haves into a buffer that gave its memory back grows once, not at every one.
        if self.ctrl.capacity() - self.ctrl.len() < ctrl {
            self.ctrl.reserve(ctrl.max(MIN_GROWTH));
        }
        Ok(())
    }

    pub fn push(&mut self, msg: &Message<'_>) -> Result<(), Full> {
        let len = msg.encoded_len();
        self.make_room(len, len)?;
        // Encoding into a Vec cannot fail for our message sizes (bounded by `max`).
        msg.encode(&mut self.ctrl)
            .map_err(|_| Full { limit: self.max })
    }

    /// Queues a piece message: its header is encoded, `data` is kept as it is (no copy).
    pub fn push_piece(&mut self, index: u32, begin: u32, data: Bytes) -> Result<(), Full> {
        let header = crate::wire::PIECE_HEADER_LEN;
        self.make_room(data.len().saturating_add(header), header)?;
        encode_piece_header(&mut self.ctrl, index, begin, data.len())
            .map_err(|_| Full { limit: self.max })?;
        if !data.is_empty() {
            self.block_bytes += data.len();
            self.blocks.push_back((self.ctrl.len(), data));
        }
        Ok(())
    }

    pub fn push_raw(&mut self, bytes: &[u8]) -> Result<(), Full> {
        self.make_room(bytes.len(), bytes.len())?;
        self.ctrl.extend_from_slice(bytes);
        Ok(())
    }

    /// Marks `n` pending bytes as written to the socket (clamped to what is pending): the
    /// front of [`SendBuffer::pending`] first, then the runs after it.
    pub fn advance(&mut self, n: usize) -> usize {
        let n = n.min(self.len());
        let mut left = n;
        while left > 0 {
            match self.blocks.front_mut() {
                Some((at, block)) if *at == self.start => {
                    let k = left.min(block.len());
                    block.advance(k);
                    self.block_bytes -= k;
                    left -= k;
                    if block.is_empty() {
                        self.blocks.pop_front();
                    }
                }
                front => {
                    let end = front.map_or(self.ctrl.len(), |(at, _)| *at);
                    let k = left.min(end.saturating_sub(self.start));
                    self.start += k;
                    left -= k;
                }
            }
        }
        if self.len() == 0 {
            self.clear();
        }
        n
    }

    fn clear(&mut self) {
        self.ctrl.clear();
        self.start = 0;
        self.blocks.clear();
        self.block_bytes = 0;
        if self.ctrl.capacity() > RETAIN {
            self.ctrl = Vec::new();
        }
        if self.blocks.capacity() > RETAIN_BLOCKS {
            self.blocks = VecDeque::new();
        }
    }

    /// Appends every pending byte to `out` and empties the buffer: one copy of each block,
    /// into a buffer the driver hands to its socket.
    pub fn drain_into(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.len();
        out.reserve(n);
        let mut prev = self.start;
        for (at, block) in &self.blocks {
            out.extend_from_slice(self.ctrl.get(prev..*at).unwrap_or_default());
            out.extend_from_slice(block);
            prev = *at;
        }
        out.extend_from_slice(self.ctrl.get(prev..).unwrap_or_default());
        self.clear();
        n
    }

    /// Empties the buffer into `ctrl` (the control bytes, appended: small, copied) and
    /// `blocks` (the blocks as queued, each with the offset in `ctrl` it goes at).
    pub fn drain_parts(&mut self, ctrl: &mut Vec<u8>, blocks: &mut Vec<(usize, Bytes)>) -> usize {
        let n = self.len();
        // `at - start` is the block's offset in the pending control bytes.
        let base = ctrl.len();
        ctrl.extend_from_slice(self.ctrl.get(self.start..).unwrap_or_default());
        let start = self.start;
        blocks.extend(
            self.blocks
                .drain(..)
                .map(|(at, block)| (base + at.saturating_sub(start), block)),
        );
        self.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(fill: u8, len: usize) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    /// Everything pending, by taking it out of a clone.
    fn contents(b: &SendBuffer) -> Vec<u8> {
        let mut v = Vec::new();
        b.clone().drain_into(&mut v);
        v
    }

    /// The stream `ctrl` and `blocks` from `drain_parts` stand for.
    fn splice(ctrl: &[u8], blocks: &[(usize, Bytes)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = 0;
        for (at, b) in blocks {
            out.extend_from_slice(&ctrl[prev..*at]);
            out.extend_from_slice(b);
            prev = *at;
        }
        out.extend_from_slice(&ctrl[prev..]);
        out
    }

    #[test]
    fn a_block_is_handed_over_not_copied() {
        let mut b = SendBuffer::new(4 << 20);
        b.push(&Message::Have(1)).unwrap();
        let data = block(9, 16 * 1024);
        b.push_piece(3, 0, data.clone()).unwrap();
        b.push(&Message::Have(2)).unwrap();
        let expected = contents(&b);
        let (mut ctrl, mut blocks) = (vec![1, 2, 3], Vec::new());
        assert_eq!(b.drain_parts(&mut ctrl, &mut blocks), expected.len());
        assert_eq!(ctrl.len(), 3 + 9 + 13 + 9);
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            blocks[0].0,
            3 + 9 + 13,
            "offsets count what `ctrl` held before"
        );
        assert_eq!(blocks[0].1.as_ptr(), data.as_ptr(), "the block was copied");
        assert_eq!(splice(&ctrl, &blocks)[3..], expected[..]);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let mut b = SendBuffer::new(4 << 20);
        for i in 0..64 {
            b.push_piece(i, 0, block(7, 16 * 1024)).unwrap();
        }
        for i in 0..1000 {
            b.push(&Message::Have(i)).unwrap();
        }
        assert!(b.ctrl.capacity() >= 9000);
        let mut out = Vec::new();
        assert_eq!(b.drain_into(&mut out), 64 * (16 * 1024 + 13) + 1000 * 9);
        assert!(b.ctrl.capacity() <= RETAIN, "{}", b.ctrl.capacity());
        assert!(b.blocks.capacity() <= RETAIN_BLOCKS);
        // Small buffers keep their allocation (no churn for control messages).
        b.push(&Message::Have(3)).unwrap();
        let cap = b.ctrl.capacity();
        assert_eq!(b.advance(9), 9);
        assert_eq!(b.ctrl.capacity(), cap);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn the_bound_counts_blocks() {
        let mut b = SendBuffer::new(20_000);
        b.push_piece(0, 0, block(1, 16 * 1024)).unwrap();
        assert_eq!(
            b.push_piece(1, 0, block(1, 16 * 1024)),
            Err(Full { limit: 20_000 })
        );
        assert_eq!(b.len(), 16 * 1024 + 13);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Have(u32),
        Piece(u32, usize),
        Advance(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<u32>().prop_map(Op::Have),
            (any::<u32>(), 0usize..40).prop_map(|(i, n)| Op::Piece(i, n)),
            (0usize..60).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Whatever is queued and partly written, the bytes that leave (through
        /// `pending`/`advance`, `drain_into` or `drain_parts`) are the same, in order.
        #[test]
        fn every_way_out_gives_the_same_bytes(ops in proptest::collection::vec(op(), 0..40)) {
            let mut b = SendBuffer::new(4 << 20);
            let mut model: Vec<u8> = Vec::new();
            let mut written: Vec<u8> = Vec::new();
            for op in ops {
                match op {
                    Op::Have(i) => {
                        b.push(&Message::Have(i)).unwrap();
                        Message::Have(i).encode(&mut model).unwrap();
                    }
                    Op::Piece(i, n) => {
                        let data: Vec<u8> = (0..n).map(|k| k as u8).collect();
                        b.push_piece(i, 1, Bytes::from(data.clone())).unwrap();
                        encode_piece_header(&mut model, i, 1, n).unwrap();
                        model.extend_from_slice(&data);
                    }
                    Op::Advance(n) => {
                        // Like a socket: writes part of the first run.
                        let run = b.pending();
                        let k = n.min(run.len());
                        written.extend_from_slice(&run[..k]);
                        prop_assert_eq!(b.advance(k), k);
                    }
                }
                prop_assert_eq!(b.len() + written.len(), model.len());
                prop_assert_eq!(b.pending().is_empty(), b.len() == 0);
            }
            let mut flat = written.clone();
            b.clone().drain_into(&mut flat);
            prop_assert_eq!(&flat, &model);
            let (mut ctrl, mut blocks) = (Vec::new(), Vec::new());
            let n = b.drain_parts(&mut ctrl, &mut blocks);
            prop_assert_eq!(n + written.len(), model.len());
            prop_assert!(blocks.iter().all(|(_, c)| !c.is_empty()));
            written.extend(splice(&ctrl, &blocks));
            prop_assert_eq!(&written, &model);
            prop_assert_eq!(b.len(), 0);
        }
    }
}
