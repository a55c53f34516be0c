//! `wire_frames`: the incremental `FrameDecoder` over a byte stream cut into arbitrary reads
//! (see [`super::chunks`]: the input's first bytes choose the read sizes and the limits).
//!
//! Properties: every decoded message re-encodes to exactly its frame bytes (the encodings, laid
//! end to end, are the stream up to what is still buffered) and parses back to itself; the
//! messages, the error and the bytes left buffered are the same whether the stream arrives
//! whole, in the fuzzer's chunks, or one byte per read; an error is final (`Failed` after it);
//! `Ok(None)` only when the read is used up; the reassembly buffer stays bounded.

use hive_core::wire::{DecoderLimits, FrameDecoder, Message, WireError};

use super::chunks::{self, Split};

/// Slack the decoder keeps beyond a piece frame (`RETAIN_SLACK` in `wire/decoder.rs`).
const RETAIN_SLACK: usize = 1024;

/// The limits for a variant: the defaults, exact bitfields for small torrents, or tiny limits
/// that a short input can hit.
pub fn limits(variant: u8) -> DecoderLimits {
    match variant % 4 {
        0 => DecoderLimits::DEFAULT,
        1 => DecoderLimits::DEFAULT.with_piece_count(1),
        2 => DecoderLimits::DEFAULT.with_piece_count(100),
        _ => DecoderLimits {
            max_block_len: 64,
            max_bitfield_len: 4,
            max_frame_len: 32,
        },
    }
}

/// What one decoding run saw.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    /// Each message's encoding, in order.
    pub messages: Vec<Vec<u8>>,
    /// The error that ended decoding, if any.
    pub error: Option<WireError>,
    /// Bytes of an incomplete frame held at the end (0 after an error: the stream is dead and
    /// what a failed decoder holds depends on where the read boundaries fell).
    pub buffered: usize,
}

/// Decodes `reads` in order with one decoder, checking each step.
pub fn run(limits: DecoderLimits, reads: &[&[u8]]) -> Run {
    let mut decoder = FrameDecoder::new(limits);
    let mut out = Run {
        messages: Vec::new(),
        error: None,
        buffered: 0,
    };
    let total: usize = reads.iter().map(|r| r.len()).sum();
    let capacity_bound =
        (limits.largest_frame() as usize).max(limits.max_block_len as usize + 9 + RETAIN_SLACK);
    'reads: for read in reads {
        let mut input = *read;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(msg)) => {
                    let mut frame = Vec::new();
                    msg.encode(&mut frame).expect("a decoded message encodes");
                    assert_eq!(frame.len(), msg.encoded_len());
                    let again = Message::parse(&frame[4..], &limits)
                        .expect("a decoded message's frame parses");
                    assert_eq!(again, msg, "parse(encode(msg)) != msg");
                    out.messages.push(frame);
                    assert!(out.messages.len() <= total / 4, "more messages than frames");
                }
                Ok(None) => {
                    assert!(
                        input.is_empty(),
                        "Ok(None) with {} bytes unread",
                        input.len()
                    );
                    break;
                }
                Err(e) => {
                    assert!(decoder.is_failed());
                    assert_eq!(decoder.decode(&mut input), Err(WireError::Failed));
                    out.error = Some(e);
                    break 'reads;
                }
            }
            assert!(
                decoder.buffer_capacity() <= capacity_bound,
                "reassembly buffer of {} bytes, bound {capacity_bound}",
                decoder.buffer_capacity()
            );
        }
    }
    if out.error.is_none() {
        out.buffered = decoder.buffered();
    }
    out
}

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let split: Split<'_> = chunks::split(data);
    let stream = split.stream;
    let limits = limits(split.variant);

    // Whole: each message must be exactly the bytes it was cut from.
    let mut decoder = FrameDecoder::new(limits);
    let mut input = stream;
    let mut whole = Vec::new();
    let mut error = None;
    loop {
        let before = input;
        match decoder.decode(&mut input) {
            Ok(Some(msg)) => {
                let used = before.len() - input.len();
                let mut frame = Vec::new();
                msg.encode(&mut frame).expect("a decoded message encodes");
                assert_eq!(
                    frame,
                    before[..used],
                    "message does not re-encode to its frame"
                );
                whole.push(frame);
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let buffered = if error.is_none() {
        decoder.buffered()
    } else {
        0
    };
    let whole = Run {
        messages: whole,
        error,
        buffered,
    };

    let concat: Vec<u8> = whole.messages.concat();
    assert!(stream.starts_with(&concat));
    if whole.error.is_none() {
        assert_eq!(concat.len() + whole.buffered, stream.len(), "bytes lost");
    }

    let chunked = run(limits, &split.chunks());
    assert_eq!(chunked, whole, "chunked decoding differs from whole");
    let bytewise = run(limits, &chunks::bytewise(stream));
    assert_eq!(bytewise, whole, "byte-by-byte decoding differs from whole");
}
