//! Peer wire decoding throughput: a 256 MiB stream of 16 KiB piece messages (16 MiB of frames
//! decoded 16 times), fed in socket-sized chunks so that frames straddle chunk boundaries.
//! Reference in the same run: a plain copy of the same bytes in the same chunks (what reading
//! them from a socket into a buffer costs at least) and a byte sum (a pass that reads every
//! byte).
//!
//! Run: `cargo bench -p hive-core --bench wire`
#![allow(clippy::disallowed_methods)] // benches measure wall time; they are not the core

use std::hint::black_box;
use std::time::{Duration, Instant};

use hive_core::wire::{FrameDecoder, Message, encode_piece_header};

const BLOCK: usize = 16 * 1024;
const STREAM_BLOCKS: usize = 1024; // 16 MiB of block data
const REPEAT: usize = 16; // 256 MiB in all
const RUNS: usize = 5; // best of

fn build_stream() -> Vec<u8> {
    let mut stream = Vec::with_capacity(STREAM_BLOCKS * (BLOCK + 13));
    let block: Vec<u8> = (0..BLOCK).map(|i| (i * 31 + 7) as u8).collect();
    for n in 0..STREAM_BLOCKS as u32 {
        let (index, begin) = (n / 16, (n % 16) * BLOCK as u32);
        encode_piece_header(&mut stream, index, begin, BLOCK).unwrap();
        stream.extend_from_slice(&block);
    }
    stream
}

/// Frames whose bytes span two `chunk`-sized reads (they go through the decoder's buffer).
fn straddling(stream_len: usize, chunk: usize) -> usize {
    let frame = BLOCK + 13;
    (0..stream_len / frame)
        .filter(|i| (i * frame) / chunk != (i * frame + frame - 1) / chunk)
        .count()
}

fn decode_all(stream: &[u8], chunk: usize) -> u64 {
    let mut decoder = FrameDecoder::default();
    let mut total = 0u64;
    for _ in 0..REPEAT {
        for piece in stream.chunks(chunk) {
            let mut input = black_box(piece);
            while let Some(msg) = decoder.decode(&mut input).unwrap() {
                if let Message::Piece { index, begin, data } = msg {
                    total += data.len() as u64 + u64::from(index ^ begin);
                    black_box(data);
                }
            }
        }
    }
    total
}

fn copy_all(stream: &[u8], chunk: usize) -> u64 {
    let mut buf = vec![0u8; chunk];
    let mut total = 0u64;
    for _ in 0..REPEAT {
        for piece in stream.chunks(chunk) {
            let dst = &mut buf[..piece.len()];
            dst.copy_from_slice(black_box(piece));
            total += black_box(&*dst).len() as u64;
        }
    }
    total
}

fn sum_all(stream: &[u8]) -> u64 {
    let mut total = 0u64;
    for _ in 0..REPEAT {
        total += black_box(stream).iter().map(|&b| u64::from(b)).sum::<u64>();
    }
    total
}

/// Best wall time of `RUNS` runs.
fn time(mut f: impl FnMut() -> u64) -> Duration {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let stream = build_stream();
    let bytes = (stream.len() * REPEAT) as f64;
    let gbps = |d: Duration| bytes / d.as_secs_f64() / 1e9;
    let expected = decode_all(&stream, stream.len());
    for chunk in [64 * 1024, 1460] {
        assert_eq!(
            decode_all(&stream, chunk),
            expected,
            "chunking changed the result"
        );
    }

    println!(
        "wire decode: {} MiB of {}-byte piece frames ({} MiB x {}), best of {RUNS}",
        (stream.len() * REPEAT) >> 20,
        BLOCK + 13,
        stream.len() >> 20,
        REPEAT
    );
    let reference = time(|| copy_all(&stream, 64 * 1024));
    let rows = [
        ("memcpy, 64 KiB chunks (reference)", reference, None),
        ("byte sum", time(|| sum_all(&stream)), None),
        (
            "decode, 64 KiB chunks",
            time(|| decode_all(&stream, 64 * 1024)),
            Some(64 * 1024),
        ),
        (
            "decode, 1460-byte chunks (MSS)",
            time(|| decode_all(&stream, 1460)),
            Some(1460),
        ),
        (
            "decode, whole 16 MiB at once",
            time(|| decode_all(&stream, stream.len())),
            Some(stream.len()),
        ),
    ];
    println!(
        "{:<36} {:>9} {:>10} {:>16}",
        "case", "GB/s", "vs memcpy", "frames straddling"
    );
    for (name, d, chunk) in rows {
        let straddle = chunk.map_or(String::from("-"), |c| {
            let s = straddling(stream.len(), c);
            format!("{:.0}%", 100.0 * s as f64 / STREAM_BLOCKS as f64)
        });
        println!(
            "{name:<36} {:>9.2} {:>9.2}x {:>16}",
            gbps(d),
            reference.as_secs_f64() / d.as_secs_f64(),
            straddle
        );
    }
}
