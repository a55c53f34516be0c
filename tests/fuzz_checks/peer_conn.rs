//! Peer connection machine: whatever a peer sends, in whatever chunks, with a driver that
//! answers the way the Session would, `PeerConn` never panics, every bound of its table holds
//! after every read (`PeerConn::check_bounds`: memory per peer stays bounded), and a close
//! sticks.
//! The first input byte picks the options, the second the chunk size; the rest is the peer's
//! byte stream after a valid handshake.

use bytes::Bytes;
use hive_core::bitfield::Bitfield;
use hive_core::peer::{PeerConfig, PeerConn, PeerEvent, TorrentInfo};
use hive_core::time::Instant;
use hive_core::wire::{BlockRequest, Handshake, Reserved};

/// Drives one `PeerConn` with `data`; panics if a property fails.
pub fn check(data: &[u8]) {
    let [opts, chunk, rest @ ..] = data else {
        return;
    };
    let mut reserved = Reserved::NONE;
    reserved.set(Reserved::FAST, opts & 1 != 0);
    reserved.set(Reserved::EXTENSION_PROTOCOL, opts & 2 != 0);
    reserved.set(Reserved::DHT, opts & 4 != 0);
    let incoming = opts & 8 != 0;
    let hash = [7; 20];
    // 5 pieces of 32 KiB, the last 1000 bytes.
    let torrent = TorrentInfo::new(hash, 32 * 1024, 4 * 32 * 1024 + 1000).unwrap();
    let mut cfg = PeerConfig::new(*b"-HV0100-fuzzfuzzfuzz");
    cfg.reserved = reserved;
    let mut conn = if incoming {
        PeerConn::new_incoming(cfg, None, Instant::ZERO)
    } else {
        PeerConn::new_outgoing(cfg, torrent, None, Instant::ZERO)
    };
    let mut stream = Handshake {
        reserved,
        info_hash: hash,
        peer_id: *b"-TR3000-fuzzpeer0000",
    }
    .to_bytes()
    .to_vec();
    stream.extend_from_slice(rest);
    let chunk = usize::from(*chunk).max(1);
    let mut micros = 0u64;
    let mut next_block = 0u32;
    let mut closed = None;
    'feed: for piece in stream.chunks(chunk) {
        micros += 1_000_000;
        let now = Instant::from_micros(micros);
        let mut input = piece;
        loop {
            let ev = match conn.handle_bytes(now, &mut input) {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(r) => {
                    closed = Some(r);
                    break 'feed;
                }
            };
            let step = match ev {
                PeerEvent::InfoHash { .. } => conn.accept(now, torrent),
                PeerEvent::HandshakeDone { .. } => {
                    let mut ours = Bitfield::new(5);
                    ours.set(1);
                    conn.send_bitfield(now, &ours)
                        .and_then(|()| conn.send_interested(now))
                        .and_then(|()| conn.send_allowed_fast_set(now).map(|_| ()))
                }
                PeerEvent::Interested => conn.send_unchoke(now),
                _ => Ok(()),
            };
            if let Err(r) = step {
                closed = Some(r);
                break 'feed;
            }
        }
        for _ in 0..conn.request_slots(now) {
            let n = next_block % 9;
            next_block += 1;
            let b = BlockRequest {
                index: n / 2,
                begin: n % 2 * 16384,
                length: 16384,
            };
            if conn.send_request(now, b).is_err() {
                break;
            }
        }
        while let Some(req) = conn.poll_upload() {
            let data = vec![0; req.length as usize];
            if conn.send_block(now, req, Bytes::from(data)).is_err() {
                break;
            }
        }
        let _ = conn.handle_timeout(now);
        let n = conn.pending_transmit().len();
        conn.advance_transmit(n / 2);
        if let Err(e) = conn.check_bounds() {
            panic!("bound exceeded: {e}");
        }
    }
    if let Err(e) = conn.check_bounds() {
        panic!("bound exceeded after close: {e}");
    }
    if let Some(reason) = closed {
        assert_eq!(conn.handle_timeout(Instant::MAX), Err(reason));
    }
}
