//! One node's half of a simulated connection ([`Half`]), the bytes in flight ([`Payload`]),
//! and the receiving side's view of the wire ([`RxScan`]). See the link model in
//! [`crate::engine`].

use std::ops::{Index, IndexMut};

use bytes::Bytes;
use hive_core::bitfield::Bitfield;
use hive_core::wire::{DecoderLimits, FrameDecoder, HANDSHAKE_LEN, id};

use crate::chunked::Chunked;

/// Bytes in flight. Most segments are a have or a few requests: those travel inline, so that
/// they cost no allocation. Blocks travel as the `Bytes` the sender's disk read gave (slices of
/// the torrent's payload), never copied: a segment with a block is its chunks in order.
#[derive(Debug)]
pub(crate) enum Payload {
    Inline(u8, [u8; INLINE]),
    /// Control bytes too many to travel inline, or short writes coalesced into one segment
    /// (see [`COALESCE`]).
    Joined(Vec<u8>),
    /// Control bytes and blocks, in order.
    Chunks(Vec<Bytes>),
}

/// Bytes a segment carries inline.
pub(crate) const INLINE: usize = 38;

/// A write of at most this many bytes joins the connection's previous segment when that one
/// has not started to leave the sender yet and stays this small: the bytes wait in the same
/// socket buffer, and TCP would send them in the same packets. Without this, every `have` a
/// node sends while its uplink is busy with blocks (a flash crowd: all the time) would be a
/// segment and an event of its own.
pub(crate) const COALESCE: usize = 1024;

/// The runs of a written stream in order: control bytes and blocks (`Some`), as the Session's
/// `poll_transmit_parts` gives them (blocks spliced into the control bytes at offsets).
pub(crate) fn runs<'a>(ctrl: &'a [u8], blocks: &'a [(usize, Bytes)]) -> Runs<'a> {
    Runs {
        ctrl,
        blocks,
        prev: 0,
        block: None,
        done: false,
    }
}

/// The iterator of [`runs`]: a plain state machine, since most writes are control bytes
/// alone (a `have`, a request) and take two calls.
pub(crate) struct Runs<'a> {
    ctrl: &'a [u8],
    blocks: &'a [(usize, Bytes)],
    /// Where the control bytes not yet given start.
    prev: usize,
    /// The block to give after the control bytes just given.
    block: Option<&'a Bytes>,
    done: bool,
}

impl<'a> Iterator for Runs<'a> {
    type Item = (&'a [u8], Option<&'a Bytes>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(b) = self.block.take() {
                if !b.is_empty() {
                    return Some((&b[..], Some(b)));
                }
            }
            if let Some(((at, b), rest)) = self.blocks.split_first() {
                self.blocks = rest;
                let before = &self.ctrl[self.prev..*at];
                self.prev = *at;
                self.block = Some(b);
                if !before.is_empty() {
                    return Some((before, None));
                }
                continue;
            }
            if self.done {
                return None;
            }
            self.done = true;
            let rest = &self.ctrl[self.prev..];
            return (!rest.is_empty()).then_some((rest, None));
        }
    }
}

impl Payload {
    /// Bytes `cut..end` of the stream `ctrl` + `blocks`: inline when small, else copied
    /// control bytes when there is no block in it, else chunks, with blocks shared.
    pub(crate) fn cut(ctrl: &[u8], blocks: &[(usize, Bytes)], cut: usize, end: usize) -> Payload {
        // The parts of the stream inside the segment.
        let mut from = 0;
        let parts = runs(ctrl, blocks).filter_map(move |(run, block)| {
            let to = from + run.len();
            let part = (to > cut && from < end).then(|| {
                let (a, b) = (cut.max(from) - from, end.min(to) - from);
                (&run[a..b], block.map(|blk| (blk, a, b)))
            });
            from = to;
            part
        });
        let len = end - cut;
        if len <= INLINE {
            let mut b = [0u8; INLINE];
            let mut at = 0;
            for (part, _) in parts {
                b[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            return Payload::Inline(len as u8, b);
        }
        let with_block = {
            let mut from = 0;
            runs(ctrl, blocks).any(|(run, block)| {
                let to = from + run.len();
                let inside = to > cut && from < end;
                from = to;
                inside && block.is_some()
            })
        };
        if !with_block {
            let mut v = Vec::with_capacity(len);
            for (part, _) in parts {
                v.extend_from_slice(part);
            }
            return Payload::Joined(v);
        }
        Payload::Chunks(
            parts
                .map(|(part, block)| match block {
                    Some((blk, 0, b)) if b == blk.len() => blk.clone(),
                    Some((blk, a, b)) => blk.slice(a..b),
                    None => Bytes::copy_from_slice(part),
                })
                .collect(),
        )
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Payload::Inline(n, _) => usize::from(*n),
            Payload::Joined(v) => v.len(),
            Payload::Chunks(c) => c.iter().map(Bytes::len).sum(),
        }
    }

    /// The bytes in order, one slice per part.
    pub(crate) fn parts(&self) -> impl Iterator<Item = &[u8]> {
        let (one, many): (&[u8], &[Bytes]) = match self {
            Payload::Inline(n, b) => (&b[..usize::from(*n)], &[]),
            Payload::Joined(v) => (v, &[]),
            Payload::Chunks(c) => (&[], c),
        };
        std::iter::once(one)
            .chain(many.iter().map(|c| &c[..]))
            .filter(|p| !p.is_empty())
    }

    pub(crate) fn append(&mut self, more: &[u8]) {
        match self {
            Payload::Inline(n, b) if usize::from(*n) + more.len() <= INLINE => {
                let at = usize::from(*n);
                b[at..at + more.len()].copy_from_slice(more);
                *n += more.len() as u8;
            }
            Payload::Joined(v) => v.extend_from_slice(more),
            other => {
                let mut v = Vec::with_capacity(2 * (other.len() + more.len()));
                for part in other.parts() {
                    v.extend_from_slice(part);
                }
                v.extend_from_slice(more);
                *other = Payload::Joined(v);
            }
        }
    }
}

/// The last segment of a pipe while more bytes may still join it: it has not started to
/// leave the sender's uplink. It is held by the sender (not queued anywhere), so joining
/// never touches another node's state; it is sent when a later segment of the pipe is cut,
/// when the connection closes, or at the end of the window in which it starts to leave.
#[derive(Debug)]
pub(crate) struct Tail {
    /// Tells a held tail from a newer one in the shard's list of held tails.
    pub serial: u64,
    /// When it starts to leave the sender's uplink.
    pub start: u64,
    /// When its first byte reaches the receiver's downlink.
    pub first: u64,
    /// When its last byte reaches the receiver's downlink.
    pub at: u64,
    pub data: Payload,
}

/// Entries a socket buffer keeps (see [`SendBuf`]).
const SENDBUF_ENTRIES: usize = 8;

/// A connection's socket buffer: the bytes that have not left the sender's uplink yet, as
/// (time they leave, bytes) in order, inline in the connection's half (it is read at every
/// write: a separate allocation would be one more cache miss). A short write right behind
/// another short one (have batches) shares its entry, as does any write once the entries
/// are used up: those bytes count as buffered until the later write leaves, a few
/// microseconds more.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct SendBuf {
    /// Bytes buffered.
    pub bytes: u64,
    head: usize,
    count: usize,
    at: [u64; SENDBUF_ENTRIES],
    len: [u32; SENDBUF_ENTRIES],
}

impl SendBuf {
    fn slot(&self, k: usize) -> usize {
        (self.head + k) % SENDBUF_ENTRIES
    }

    /// `n` bytes that leave the uplink at `at` (never before the bytes already buffered).
    pub(crate) fn push(&mut self, at: u64, n: u32) {
        self.bytes += u64::from(n);
        if self.count > 0 {
            let last = self.slot(self.count - 1);
            let small = n as usize <= COALESCE && self.len[last] as usize <= COALESCE;
            if small || self.count == SENDBUF_ENTRIES {
                self.at[last] = self.at[last].max(at);
                self.len[last] += n;
                return;
            }
        }
        let k = self.slot(self.count);
        self.at[k] = at;
        self.len[k] = n;
        self.count += 1;
    }

    /// Forgets the bytes that left by `now`.
    pub(crate) fn prune(&mut self, now: u64) {
        while self.count > 0 && self.at[self.head] <= now {
            self.bytes -= u64::from(self.len[self.head]);
            self.head = (self.head + 1) % SENDBUF_ENTRIES;
            self.count -= 1;
        }
    }

    /// When the buffer will have drained to `low` bytes.
    pub(crate) fn drained_at(&self, low: u64) -> u64 {
        let mut left = self.bytes;
        for k in 0..self.count {
            let s = self.slot(k);
            left -= u64::from(self.len[s]);
            if left <= low {
                return self.at[s];
            }
        }
        0
    }
}

/// One node's half of a connection: what it sends (socket buffer, the pipe's last segment,
/// the decoder that watches its bytes) and what it received (announcements). From the start
/// of a cache line (`repr(C, align(64))`): the fields every segment reads, then what a
/// delivery touches (three lines in all), then what a write touches. A flash crowd is bound
/// by cache misses, and a delivery or a write used to touch lines spread over the half.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Half {
    /// The other end: its node and its connection id (`NO_CONN` until the SYN-ACK tells the
    /// initiator).
    pub peer: u32,
    /// Segments of this pipe waiting behind the node's downlink.
    pub rx_pending: u32,
    /// The node's connection id.
    pub conn: u64,
    pub peer_conn: u64,
    /// The node's Session knows the connection.
    pub alive: bool,
    /// The initiator has not heard `Connected` or a failure yet.
    pub connecting: bool,
    /// Closed by the Session while connecting: kept until the SYN-ACK (answered with a FIN)
    /// or the failure arrives.
    pub zombie: bool,
    /// A `Transmit` waits for buffer room.
    pub blocked: bool,
    /// Handshake bytes still to skip before frames (sending side).
    pub skip: usize,
    /// A wake-up is queued for this time (`u64::MAX`: none).
    pub wake_at: u64,
    /// When the pipe's last segment reaches the other end's downlink (segments never
    /// overtake each other).
    pub last_arrival: u64,
    /// Receiving side: frames of what the other end sends.
    pub rx: RxScan,
    /// Pieces the other end announced to this node (bitfield, have, have all), as received.
    pub peer_announced: Announced,
    /// The socket buffer.
    pub unsent: SendBuf,
    pub tail: Option<Tail>,
    pub decoder: FrameDecoder,
}

/// A node's connection halves by slot, in chunks that never move (`crate::chunked`): a
/// `Vec` of 448-byte halves copied them all at every doubling.
#[derive(Debug, Default)]
pub(crate) struct Halves(Chunked<Half>);

impl Halves {
    /// Stores `h` in a new slot; returns the slot.
    pub(crate) fn push(&mut self, h: Half) -> usize {
        self.0.push(h)
    }
}

impl Index<usize> for Halves {
    type Output = Half;

    #[inline]
    fn index(&self, slot: usize) -> &Half {
        self.0.get(slot).expect("connection half slot out of range")
    }
}

impl IndexMut<usize> for Halves {
    #[inline]
    fn index_mut(&mut self, slot: usize) -> &mut Half {
        self.0
            .get_mut(slot)
            .expect("connection half slot out of range")
    }
}

/// Connection id not known yet.
pub(crate) const NO_CONN: u64 = u64::MAX;

impl Half {
    pub(crate) fn new(conn: u64, peer: u32, peer_conn: u64, limits: DecoderLimits) -> Half {
        Half {
            conn,
            peer,
            peer_conn,
            alive: true,
            connecting: false,
            zombie: false,
            rx_pending: 0,
            unsent: SendBuf::default(),
            blocked: false,
            wake_at: u64::MAX,
            last_arrival: 0,
            tail: None,
            skip: HANDSHAKE_LEN,
            decoder: FrameDecoder::new(limits),
            rx: RxScan::default(),
            peer_announced: Announced::default(),
        }
    }
}

/// Haves an [`Announced`] holds before it sets their bits.
const PENDING_HAVES: usize = 8;

/// The pieces one end announced to the other. Received haves wait in a short list inside
/// the connection half and are set in the bitfield eight at a time: the bitfield is a
/// separate allocation, and touching it for every have was a cache miss per have.
#[derive(Debug, Default)]
pub(crate) struct Announced {
    bits: Option<Bitfield>,
    pending: [u32; PENDING_HAVES],
    len: usize,
}

impl Announced {
    /// A `have` for piece `p` (ignored beyond the torrent).
    pub(crate) fn have(&mut self, p: u32, piece_count: u32) {
        if p >= piece_count {
            return;
        }
        if self.len == PENDING_HAVES {
            self.flush(piece_count);
        }
        self.pending[self.len] = p;
        self.len += 1;
    }

    fn flush(&mut self, piece_count: u32) {
        if self.len > 0 {
            let bits = self.bits.get_or_insert_with(|| Bitfield::new(piece_count));
            for &p in &self.pending[..self.len] {
                bits.set(p);
            }
            self.len = 0;
        }
    }

    /// A `bitfield` or `have all`: replaces everything announced before.
    pub(crate) fn replace(&mut self, bits: Bitfield) {
        self.len = 0;
        self.bits = Some(bits);
    }

    /// A word of what a `have` received writes; see `Shard::prefetch_node`.
    pub(crate) fn prefetch(&self) -> usize {
        self.len
    }

    /// Piece `p` was announced.
    pub(crate) fn has(&self, p: u32) -> bool {
        self.pending[..self.len].contains(&p) || self.bits.as_ref().is_some_and(|b| b.get(p))
    }
}

/// The receiving side's view of a pipe: frame boundaries only, to pick out announcements
/// (`have`, `bitfield`, `have all`) and to count piece payload. The sender's decoder (the
/// core's `FrameDecoder`) already validated every byte; this only skips over frames, so a
/// 16 KiB block costs one header.
#[derive(Debug)]
pub(crate) struct RxScan {
    /// Handshake bytes still to skip.
    skip: usize,
    /// Length prefix and id of the current frame, as far as received.
    header: [u8; 5],
    header_len: usize,
    /// Body bytes of the current frame still to come.
    body_left: usize,
    id: u8,
    /// The body of a `have` frame, as far as received (inline: haves are most frames).
    have: [u8; 4],
    have_len: u8,
    /// The body of a `bitfield` frame, as far as received.
    body: Vec<u8>,
}

impl Default for RxScan {
    fn default() -> Self {
        RxScan {
            skip: HANDSHAKE_LEN,
            header: [0; 5],
            header_len: 0,
            body_left: 0,
            id: 0,
            have: [0; 4],
            have_len: 0,
            body: Vec::new(),
        }
    }
}

impl RxScan {
    /// A word of what a scan reads first; see `Shard::prefetch_node`.
    pub(crate) fn prefetch(&self) -> usize {
        self.skip + self.body_left
    }

    /// Scans received bytes: applies announcements to `announced` and returns the piece
    /// payload bytes they carry.
    pub(crate) fn scan(
        &mut self,
        mut input: &[u8],
        announced: &mut Announced,
        piece_count: u32,
    ) -> u64 {
        let mut payload = 0u64;
        while !input.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(input.len());
                self.skip -= k;
                input = &input[k..];
                continue;
            }
            if self.body_left > 0 {
                let k = self.body_left.min(input.len());
                match self.id {
                    id::HAVE => {
                        for &b in &input[..k] {
                            if let Some(x) = self.have.get_mut(usize::from(self.have_len)) {
                                *x = b;
                                self.have_len += 1;
                            }
                        }
                    }
                    id::BITFIELD => self.body.extend_from_slice(&input[..k]),
                    _ => {}
                }
                self.body_left -= k;
                input = &input[k..];
                if self.body_left == 0 {
                    self.frame_done(announced, piece_count);
                }
                continue;
            }
            // A header whole in the input (the common case) is read in place.
            if self.header_len == 0 {
                if let Some((&len, rest)) = input.split_first_chunk::<4>() {
                    let len = u32::from_be_bytes(len) as usize;
                    if len == 0 {
                        input = rest; // keep-alive
                        continue;
                    }
                    if let Some((&id, rest)) = rest.split_first() {
                        input = rest;
                        payload += self.begin(len, id, announced, piece_count);
                        continue;
                    }
                }
            }
            // A header split across chunks: the 4-byte length, then (unless it is a
            // keep-alive) the id.
            let want = if self.header_len < 4 { 4 } else { 5 };
            let k = (want - self.header_len).min(input.len());
            self.header[self.header_len..self.header_len + k].copy_from_slice(&input[..k]);
            self.header_len += k;
            input = &input[k..];
            let len = u32::from_be_bytes([
                self.header[0],
                self.header[1],
                self.header[2],
                self.header[3],
            ]) as usize;
            if self.header_len == 4 && len == 0 {
                self.header_len = 0; // keep-alive
            } else if self.header_len == 5 {
                self.header_len = 0;
                payload += self.begin(len, self.header[4], announced, piece_count);
            }
        }
        payload
    }

    /// A frame of length `len` (id included) with id `msg` starts; returns the piece payload
    /// it carries.
    fn begin(&mut self, len: usize, msg: u8, announced: &mut Announced, piece_count: u32) -> u64 {
        self.id = msg;
        self.body_left = len - 1;
        self.have_len = 0;
        if msg == id::BITFIELD {
            self.body.clear();
        }
        if self.body_left == 0 {
            self.frame_done(announced, piece_count);
        }
        if msg == id::PIECE {
            self.body_left.saturating_sub(8) as u64
        } else {
            0
        }
    }

    fn frame_done(&mut self, announced: &mut Announced, piece_count: u32) {
        match self.id {
            id::HAVE if self.have_len == 4 => {
                announced.have(u32::from_be_bytes(self.have), piece_count);
            }
            id::BITFIELD => {
                if let Ok(b) = Bitfield::from_bytes(&self.body, piece_count) {
                    announced.replace(b);
                }
            }
            id::HAVE_ALL => announced.replace(Bitfield::full(piece_count)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Announced, Half, RxScan, SendBuf};

    /// What a delivery touches (the header, the scan, the announcements) fits the first three
    /// cache lines of a half.
    #[test]
    fn delivery_fields_fit_three_lines() {
        assert!(std::mem::offset_of!(Half, unsent) <= 3 * 64);
    }

    /// The socket buffer drains in order; short writes share an entry; a full buffer merges.
    #[test]
    fn send_buffer_drains_in_order() {
        let mut b = SendBuf::default();
        b.push(10, 16_000);
        b.push(12, 9);
        b.push(13, 9); // joins the entry before (both short)
        b.push(40, 16_000);
        assert_eq!(b.bytes, 32_018);
        assert_eq!(b.drained_at(16_018), 10);
        assert_eq!(b.drained_at(16_000), 13);
        assert_eq!(b.drained_at(0), 40);
        b.prune(12);
        assert_eq!(b.bytes, 16_018);
        b.prune(13);
        assert_eq!(b.bytes, 16_000);
        b.prune(40);
        assert_eq!((b.bytes, b.drained_at(0)), (0, 0));
        // More big writes than entries: the last ones share an entry, counted until it leaves.
        for k in 0..10u64 {
            b.push(100 + k, 2_000);
        }
        assert_eq!(b.bytes, 20_000);
        b.prune(106);
        assert_eq!(b.bytes, 6_000);
        b.prune(108);
        assert_eq!(
            b.bytes, 6_000,
            "the shared entry leaves with its last write"
        );
        b.prune(109);
        assert_eq!(b.bytes, 0);
    }
    use hive_core::bitfield::Bitfield;
    use hive_core::wire::{BlockRequest, HANDSHAKE_LEN, Message};

    use super::{INLINE, Payload};
    use bytes::Bytes;

    /// The runs are the control bytes cut at each block's offset, each block after its cut,
    /// and no run is empty.
    #[test]
    fn runs_splice_the_blocks_into_the_control_bytes() {
        let ctrl: Vec<u8> = (0..10u8).collect();
        let b = |n: usize, v: u8| Bytes::from(vec![v; n]);
        let blocks = [
            (0, b(2, 100)),
            (4, b(3, 101)),
            (4, b(1, 102)),
            (6, b(0, 0)),
            (10, b(2, 103)),
        ];
        let got: Vec<(Vec<u8>, bool)> = super::runs(&ctrl, &blocks)
            .map(|(run, block)| (run.to_vec(), block.is_some()))
            .collect();
        let want = vec![
            (vec![100, 100], true),
            (vec![0, 1, 2, 3], false),
            (vec![101; 3], true),
            (vec![102], true),
            (vec![4, 5], false),
            (vec![6, 7, 8, 9], false),
            (vec![103, 103], true),
        ];
        assert_eq!(got, want);
        assert_eq!(super::runs(&ctrl, &[]).count(), 1);
        assert_eq!(super::runs(&[], &[]).count(), 0);
    }

    /// Any segment of a written stream carries exactly its bytes; a block whole inside a
    /// segment is shared, not copied; small segments are inline.
    #[test]
    fn a_cut_carries_its_bytes_and_shares_the_blocks() {
        let ctrl: Vec<u8> = (0..70u8).collect();
        let blocks = [
            (50, Bytes::from(vec![7u8; 200])),
            (60, Bytes::from(vec![9u8; 5])),
        ];
        let stream: Vec<u8> = super::runs(&ctrl, &blocks)
            .flat_map(|(run, _)| run.to_vec())
            .collect();
        assert_eq!(stream.len(), 275);
        for cut in 0..stream.len() {
            for end in cut + 1..=stream.len() {
                let p = Payload::cut(&ctrl, &blocks, cut, end);
                assert_eq!(p.len(), end - cut);
                assert_eq!(p.parts().collect::<Vec<_>>().concat(), &stream[cut..end]);
                assert_eq!(matches!(p, Payload::Inline(..)), end - cut <= INLINE);
            }
        }
        let Payload::Chunks(parts) = Payload::cut(&ctrl, &blocks, 10, 270) else {
            panic!("a segment with blocks is chunks")
        };
        let lens: Vec<usize> = parts.iter().map(Bytes::len).collect();
        assert_eq!(lens, [40, 200, 10, 5, 5]);
        assert_eq!(
            parts[1].as_ptr(),
            blocks[0].1.as_ptr(),
            "the block was copied"
        );
        assert!(matches!(
            Payload::cut(&ctrl, &blocks, 255, 275),
            Payload::Inline(20, _)
        ));
        let ctrl_only = Payload::cut(&ctrl, &[], 0, 70);
        assert!(matches!(ctrl_only, Payload::Joined(ref v) if *v == ctrl));
    }

    fn frame(m: &Message<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        m.encode(&mut v).unwrap();
        v
    }

    /// Announcements and payload come out right however the stream is cut.
    #[test]
    fn scan_agrees_whatever_the_cuts() {
        let pc = 20;
        let mut bits = Bitfield::new(pc);
        bits.set(3);
        let block = vec![7u8; 100];
        let mut stream = vec![0u8; HANDSHAKE_LEN];
        stream.extend(frame(&Message::Bitfield(bits.as_bytes())));
        stream.extend(frame(&Message::KeepAlive));
        stream.extend(frame(&Message::Have(5)));
        stream.extend(frame(&Message::Request(BlockRequest {
            index: 1,
            begin: 0,
            length: 16384,
        })));
        stream.extend(frame(&Message::Piece {
            index: 3,
            begin: 0,
            data: &block,
        }));
        stream.extend(frame(&Message::Have(19)));
        for cut in [1, 2, 3, 5, 7, 64, 1000] {
            let mut scan = RxScan::default();
            let mut ann = Announced::default();
            let mut payload = 0;
            for chunk in stream.chunks(cut) {
                payload += scan.scan(chunk, &mut ann, pc);
            }
            assert_eq!(payload, 100, "cut {cut}");
            let ones: Vec<u32> = (0..pc).filter(|p| ann.has(*p)).collect();
            assert_eq!(ones, vec![3, 5, 19], "cut {cut}");
        }
        let mut scan = RxScan::default();
        let mut ann = Announced::default();
        let mut all = vec![0u8; HANDSHAKE_LEN];
        all.extend(frame(&Message::HaveAll));
        scan.scan(&all, &mut ann, pc);
        assert!((0..pc).all(|p| ann.has(p)));
        // Many haves: more than wait in the list.
        let mut ann = Announced::default();
        for p in (0..pc).step_by(2) {
            ann.have(p, pc);
        }
        ann.have(pc + 5, pc);
        let ones: Vec<u32> = (0..pc + 10).filter(|p| ann.has(*p)).collect();
        assert_eq!(ones, (0..pc).step_by(2).collect::<Vec<u32>>());
    }
}
