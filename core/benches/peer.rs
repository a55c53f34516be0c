//! Download hot path of a peer connection: 256 MiB of 16 KiB piece messages (16 MiB of frames
//! fed 16 times) through `PeerConn::handle_bytes`, each block matched against the outstanding
//! requests, metered, and answered with the next request (250 kept outstanding), the send
//! buffer drained as a socket would. Reference in the same run: the bare `FrameDecoder` over the
//! same bytes in the same chunks, so the ratio is the connection machine's own cost.
//!
//! Run: `cargo bench -p hive-core --bench peer`
#![allow(clippy::disallowed_methods)] // benches measure wall time; they are not the core

use std::hint::black_box;
use std::time::{Duration, Instant};

use hive_core::bitfield::Bitfield;
use hive_core::peer::{PeerConfig, PeerConn, PeerEvent, TorrentInfo};
use hive_core::time::Instant as CoreInstant;
use hive_core::wire::{
    BlockRequest, FrameDecoder, Handshake, Message, Reserved, encode_piece_header,
};

const BLOCK: u32 = 16 * 1024;
const PIECE: u32 = 256 * 1024;
const STREAM_BLOCKS: u32 = 1024; // 16 MiB of block data
const REPEAT: usize = 16; // 256 MiB in all
const RUNS: usize = 5; // best of
const DEPTH: u32 = 250;
const HASH: [u8; 20] = [0x42; 20];

fn block(n: u32) -> BlockRequest {
    let per_piece = PIECE / BLOCK;
    BlockRequest {
        index: n / per_piece,
        begin: (n % per_piece) * BLOCK,
        length: BLOCK,
    }
}

fn build_stream() -> Vec<u8> {
    let mut stream = Vec::new();
    let data: Vec<u8> = (0..BLOCK).map(|i| (i * 31 + 7) as u8).collect();
    for n in 0..STREAM_BLOCKS {
        let b = block(n);
        encode_piece_header(&mut stream, b.index, b.begin, BLOCK as usize).unwrap();
        stream.extend_from_slice(&data);
    }
    stream
}

fn decode_all(stream: &[u8], chunk: usize) -> u64 {
    let mut decoder = FrameDecoder::default();
    let mut total = 0u64;
    for _ in 0..REPEAT {
        for piece in stream.chunks(chunk) {
            let mut input = black_box(piece);
            while let Some(msg) = decoder.decode(&mut input).unwrap() {
                if let Message::Piece { data, .. } = msg {
                    total += data.len() as u64;
                    black_box(data);
                }
            }
        }
    }
    total
}

fn connected() -> PeerConn {
    let torrent = TorrentInfo::new(HASH, PIECE, u64::from(STREAM_BLOCKS * BLOCK)).unwrap();
    let mut conn = PeerConn::new_outgoing(
        PeerConfig::new(*b"-HV0100-benchmarkid0"),
        torrent,
        None,
        CoreInstant::ZERO,
    );
    let mut input = Handshake {
        reserved: Reserved::FAST | Reserved::EXTENSION_PROTOCOL,
        info_hash: HASH,
        peer_id: *b"-TR3000-benchmarkpe1",
    }
    .to_bytes()
    .to_vec();
    Message::Unchoke.encode(&mut input).unwrap();
    let mut rest = input.as_slice();
    while conn
        .handle_bytes(CoreInstant::ZERO, &mut rest)
        .unwrap()
        .is_some()
    {}
    let pieces = STREAM_BLOCKS * BLOCK / PIECE;
    conn.send_bitfield(CoreInstant::ZERO, &Bitfield::new(pieces))
        .unwrap();
    conn.send_interested(CoreInstant::ZERO).unwrap();
    for n in 0..DEPTH {
        assert!(conn.send_request(CoreInstant::ZERO, block(n)).unwrap());
    }
    conn.poll_transmit(&mut Vec::new());
    conn
}

fn peer_all(stream: &[u8], chunk: usize) -> u64 {
    let mut conn = connected();
    let mut total = 0u64;
    let mut next = DEPTH;
    let mut micros = 0u64;
    for _ in 0..REPEAT {
        for piece in stream.chunks(chunk) {
            micros += 100;
            let now = CoreInstant::from_micros(micros);
            let mut input = black_box(piece);
            while let Some(ev) = conn.handle_bytes(now, &mut input).unwrap() {
                if let PeerEvent::Block { data, .. } = ev {
                    total += data.len() as u64;
                    black_box(data);
                    assert!(conn.send_request(now, block(next % STREAM_BLOCKS)).unwrap());
                    next += 1;
                }
            }
            let n = conn.pending_transmit().len();
            conn.advance_transmit(n);
        }
    }
    total
}

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
    let expected = u64::from(STREAM_BLOCKS * BLOCK) * REPEAT as u64;
    for chunk in [64 * 1024, 1460] {
        assert_eq!(decode_all(&stream, chunk), expected);
        assert_eq!(peer_all(&stream, chunk), expected);
    }
    println!(
        "peer download path: {} MiB of piece frames, {DEPTH} requests outstanding, best of {RUNS}",
        (stream.len() * REPEAT) >> 20
    );
    println!(
        "{:<44} {:>8} {:>10} {:>13}",
        "case", "GB/s", "ns/block", "time vs ref"
    );
    for chunk in [64 * 1024, 1460] {
        let reference = time(|| decode_all(&stream, chunk));
        let machine = time(|| peer_all(&stream, chunk));
        let blocks = f64::from(STREAM_BLOCKS) * REPEAT as f64;
        for (name, d) in [
            (
                format!("FrameDecoder, {chunk}-byte chunks (reference)"),
                reference,
            ),
            (
                format!("PeerConn::handle_bytes, {chunk}-byte chunks"),
                machine,
            ),
        ] {
            println!(
                "{name:<44} {:>8.2} {:>10.0} {:>12.2}x",
                bytes / d.as_secs_f64() / 1e9,
                d.as_nanos() as f64 / blocks,
                d.as_secs_f64() / reference.as_secs_f64()
            );
        }
    }
}
