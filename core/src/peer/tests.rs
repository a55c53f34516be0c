//! Tests of the per-connection machine: pure, no sockets, no sleeps; time is passed in.

use core::net::{IpAddr, Ipv4Addr};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::*;
use crate::wire::{DecoderLimits, FrameDecoder, Handshake, Message, Reserved};

const OUR_ID: [u8; 20] = *b"-HV0100-ourpeerid000";
const THEIR_ID: [u8; 20] = *b"-TR3000-theirpeerid0";
const HASH: [u8; 20] = [0x11; 20];
const PEER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
const BOTH: Reserved = Reserved::FAST.union(Reserved::EXTENSION_PROTOCOL);

fn at(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

fn ms(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

/// 10 pieces of 32 KiB, the last one 20000 bytes (so the bitfield has 6 spare bits).
fn torrent() -> TorrentInfo {
    TorrentInfo::new(HASH, 32 * 1024, 9 * 32 * 1024 + 20_000).unwrap()
}

/// Haves go at once here, whatever the default (the tests of batching set `have_batch`).
fn config(peer_id: [u8; 20], reserved: Reserved) -> PeerConfig {
    let mut cfg = PeerConfig::new(peer_id);
    cfg.reserved = reserved;
    cfg.have_batch = Duration::ZERO;
    cfg
}

fn handshake(reserved: Reserved, info_hash: [u8; 20], peer_id: [u8; 20]) -> Vec<u8> {
    Handshake {
        reserved,
        info_hash,
        peer_id,
    }
    .to_bytes()
    .to_vec()
}

fn frame(msg: Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out).unwrap();
    out
}

fn frames(msgs: &[Message<'_>]) -> Vec<u8> {
    msgs.iter().flat_map(|m| frame(*m)).collect()
}

fn block(index: u32, begin: u32, length: u32) -> BlockRequest {
    BlockRequest {
        index,
        begin,
        length,
    }
}

/// Feeds `bytes` in one call loop, collecting each event's display line.
fn feed(conn: &mut PeerConn, now: Instant, mut bytes: &[u8]) -> Result<Vec<String>, CloseReason> {
    let mut out = Vec::new();
    while let Some(ev) = conn.handle_bytes(now, &mut bytes)? {
        out.push(ev.to_string());
    }
    Ok(out)
}

/// Feeds `bytes` one byte per call.
fn feed_bytewise(
    conn: &mut PeerConn,
    now: Instant,
    bytes: &[u8],
) -> Result<Vec<String>, CloseReason> {
    let mut out = Vec::new();
    for chunk in bytes.chunks(1) {
        out.extend(feed(conn, now, chunk)?);
    }
    Ok(out)
}

/// Decodes what the connection queued for the socket (skipping a leading handshake).
fn sent(conn: &mut PeerConn) -> Vec<String> {
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    let mut input = out.as_slice();
    if input.starts_with(b"\x13BitTorrent protocol") {
        input = &input[68..];
    }
    let mut decoder = FrameDecoder::new(DecoderLimits::DEFAULT);
    let mut msgs = Vec::new();
    while let Some(msg) = decoder.decode(&mut input).unwrap() {
        msgs.push(match msg {
            Message::Extended { id: 0, payload } => {
                format!("ExtHandshake({})", payload.escape_ascii())
            }
            other => format!("{other:?}"),
        });
    }
    msgs
}

/// An outgoing connection past the handshake, its queued output drained.
fn connect(ours: Reserved, theirs: Reserved) -> PeerConn {
    let mut conn = PeerConn::new_outgoing(config(OUR_ID, ours), torrent(), Some(PEER_IP), at(0));
    let events = feed(&mut conn, at(0), &handshake(theirs, HASH, THEIR_ID)).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    conn.poll_transmit(&mut Vec::new());
    conn
}

/// Connected, our empty bitfield sent, the peer unchoked us and we are interested.
fn downloading(reserved: Reserved) -> PeerConn {
    let mut conn = connect(reserved, reserved);
    conn.send_bitfield(at(0), &Bitfield::new(10)).unwrap();
    conn.send_interested(at(0)).unwrap();
    feed(&mut conn, at(0), &frame(Message::Unchoke)).unwrap();
    conn.poll_transmit(&mut Vec::new());
    conn
}

// ----- handshake -------------------------------------------------------------------------------

#[test]
fn outgoing_handshake_bytewise() {
    let mut conn = PeerConn::new_outgoing(config(OUR_ID, BOTH), torrent(), Some(PEER_IP), at(0));
    // Our handshake goes out at once.
    assert!(conn.wants_transmit());
    assert_eq!(
        Handshake::parse(conn.pending_transmit()).unwrap(),
        Some(Handshake {
            reserved: BOTH,
            info_hash: HASH,
            peer_id: OUR_ID
        })
    );
    conn.advance_transmit(68);
    assert!(!conn.wants_transmit());
    assert_eq!(conn.request_slots(at(0)), 0);

    let mut input = handshake(BOTH | Reserved::DHT, HASH, THEIR_ID);
    input.extend(frames(&[
        Message::Bitfield(&[0xff, 0xc0]),
        Message::Unchoke,
        Message::Have(3),
    ]));
    let events = feed_bytewise(&mut conn, at(1), &input).unwrap();
    assert_eq!(
        events,
        [
            "handshake done: peer id -TR3000-theirpeerid0 (Transmission 3.00) negotiated [fast ext]",
            "bitfield 10/10",
            "unchoked",
            // Already in the bitfield: the connection passes it on all the same (the picker
            // knows it is not new).
            "have 3",
        ]
    );
    assert!(conn.is_connected());
    assert_eq!(conn.peer_id(), Some(THEIR_ID));
    assert_eq!(conn.client(), Some("Transmission 3.00"));
    assert_eq!(conn.negotiated(), BOTH);
    assert!(conn.peer_reserved().dht());
    assert!(!conn.peer_choking());
    assert_eq!(conn.bytes_received(), input.len() as u64);
    // Our extension handshake went out by itself.
    let out = sent(&mut conn);
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("ExtHandshake(d1:mde4:reqqi250e1:v8:Hive 0.16:yourip4:"));
}

#[test]
fn incoming_handshake_bytewise() {
    let mut conn = PeerConn::new_incoming(config(OUR_ID, BOTH), Some(PEER_IP), at(0));
    assert!(!conn.wants_transmit());
    let mut input = handshake(Reserved::FAST, HASH, THEIR_ID);
    input.extend(frame(Message::HaveNone));
    let mut events = Vec::new();
    for chunk in input.chunks(1) {
        let mut chunk = chunk;
        while let Some(ev) = conn.handle_bytes(at(1), &mut chunk).unwrap() {
            events.push(ev.to_string());
            if let PeerEvent::InfoHash { info_hash, .. } = ev {
                assert_eq!(info_hash, HASH);
                // We answer before the peer id arrives (some initiators wait for it).
                conn.accept(at(1), torrent()).unwrap();
                assert_eq!(conn.pending_transmit().len(), 68);
            }
        }
    }
    assert_eq!(
        events,
        [
            "info hash 1111111111111111111111111111111111111111 [fast]",
            "handshake done: peer id -TR3000-theirpeerid0 (Transmission 3.00) negotiated [fast]",
            "have none",
        ]
    );
    assert!(!conn.is_outgoing());
    let handshake_out = Handshake::parse(conn.pending_transmit()).unwrap().unwrap();
    assert_eq!(handshake_out.peer_id, OUR_ID);
    // No extension protocol on their side: no extension handshake.
    assert!(sent(&mut conn).is_empty());
}

#[test]
fn incoming_reject_and_misuse() {
    let mut conn = PeerConn::new_incoming(config(OUR_ID, BOTH), None, at(0));
    let prefix = handshake(BOTH, [9; 20], THEIR_ID);
    let events = feed(&mut conn, at(0), &prefix[..48]).unwrap();
    assert_eq!(events.len(), 1);
    let reason = conn.reject();
    assert_eq!(
        reason.to_string(),
        "peer asked for torrent 0909090909090909090909090909090909090909, which we do not serve"
    );
    assert_eq!(feed(&mut conn, at(0), &prefix[48..]), Err(reason.clone()));
    assert_eq!(conn.close_reason(), Some(&reason));
    assert_eq!(conn.next_deadline(), None);

    // Feeding on without answering the info hash is a caller bug, reported as such.
    let mut conn = PeerConn::new_incoming(config(OUR_ID, BOTH), None, at(0));
    let mut input = prefix.as_slice();
    assert!(conn.handle_bytes(at(0), &mut input).unwrap().is_some());
    let err = conn.handle_bytes(at(0), &mut input).unwrap_err();
    assert!(matches!(err, CloseReason::Misuse { .. }), "{err}");

    // So is reject() when nothing awaits an answer.
    let mut conn = connect(BOTH, BOTH);
    assert!(matches!(conn.reject(), CloseReason::Misuse { .. }));

    // accept() with the wrong torrent is one too.
    let mut conn = PeerConn::new_incoming(config(OUR_ID, BOTH), None, at(0));
    feed(&mut conn, at(0), &prefix[..48]).unwrap();
    assert!(matches!(
        conn.accept(at(0), torrent()),
        Err(CloseReason::Misuse { .. })
    ));
}

#[test]
fn wrong_info_hash_closes_outgoing() {
    let mut conn = PeerConn::new_outgoing(config(OUR_ID, BOTH), torrent(), None, at(0));
    let err = feed(&mut conn, at(0), &handshake(BOTH, [0x22; 20], THEIR_ID)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "peer answered for torrent 2222222222222222222222222222222222222222 but we asked for \
         1111111111111111111111111111111111111111"
    );
    // Closed at byte 48, before the peer id.
    assert_eq!(conn.bytes_received(), 48);
}

#[test]
fn self_connection_closes_both_ends() {
    let mut conn = PeerConn::new_outgoing(config(OUR_ID, BOTH), torrent(), None, at(0));
    let err = feed(&mut conn, at(0), &handshake(BOTH, HASH, OUR_ID)).unwrap_err();
    assert_eq!(err, CloseReason::SelfConnection);

    // A tracker listed us among our peers: both ends of the loop see their own id.
    let mut out = PeerConn::new_outgoing(config(OUR_ID, BOTH), torrent(), None, at(0));
    let mut inc = PeerConn::new_incoming(config(OUR_ID, BOTH), None, at(0));
    let mut buf = Vec::new();
    out.poll_transmit(&mut buf);
    let mut input = buf.as_slice();
    let mut inc_result = Ok(());
    loop {
        match inc.handle_bytes(at(0), &mut input) {
            Ok(Some(PeerEvent::InfoHash { .. })) => inc.accept(at(0), torrent()).unwrap(),
            Ok(Some(ev)) => panic!("unexpected {ev}"),
            Ok(None) => break,
            Err(r) => {
                inc_result = Err(r);
                break;
            }
        }
    }
    assert_eq!(inc_result, Err(CloseReason::SelfConnection));
    let mut back = Vec::new();
    inc.poll_transmit(&mut back);
    assert_eq!(
        feed(&mut out, at(0), &back),
        Err(CloseReason::SelfConnection)
    );
}

#[test]
fn handshake_timeout() {
    let mut conn = PeerConn::new_outgoing(config(OUR_ID, BOTH), torrent(), None, at(100));
    assert_eq!(conn.next_deadline(), Some(at(120)));
    feed(&mut conn, at(105), &handshake(BOTH, HASH, THEIR_ID)[..30]).unwrap();
    assert_eq!(conn.handle_timeout(at(119)), Ok(None));
    let err = conn.handle_timeout(at(120)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "peer did not complete the handshake within 20s"
    );
    assert_eq!(conn.handle_timeout(at(121)), Err(err));

    // The incoming side times out while waiting for the peer, too.
    let mut conn = PeerConn::new_incoming(config(OUR_ID, BOTH), None, at(0));
    assert!(matches!(
        conn.handle_timeout(at(20)),
        Err(CloseReason::HandshakeTimeout { .. })
    ));
}

#[test]
fn bad_protocol_string_closes() {
    let mut conn = PeerConn::new_incoming(config(OUR_ID, BOTH), None, at(0));
    let err = feed(&mut conn, at(0), b"\x13BitTorrent protocoX").unwrap_err();
    assert!(matches!(err, CloseReason::Wire(_)), "{err}");
}

// ----- availability ----------------------------------------------------------------------------

#[test]
fn availability_window() {
    // After the extension handshake (libtorrent's order) a bitfield is fine.
    let mut conn = connect(BOTH, BOTH);
    let input = frames(&[
        Message::Extended {
            id: 0,
            payload: b"d1:md6:ut_pexi2eee",
        },
        Message::Bitfield(&[0x80, 0x00]),
    ]);
    assert_eq!(
        feed(&mut conn, at(1), &input).unwrap(),
        ["extension handshake ut_pex=2", "bitfield 1/10"]
    );
    // Have none after it is not.
    let err = feed(&mut conn, at(1), &frame(Message::HaveNone)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "peer sent a have none message after other messages (BEP 3/6: only as the first \
         message after the handshake)"
    );

    // Have first, then bitfields (aria2 1.36 sends one instead of 20+ haves, at any time):
    // accepted, each passed on as sent (the picker merges them with what came before).
    let mut conn = connect(BOTH, BOTH);
    let mut input: &[u8] = &frames(&[
        Message::Interested,
        Message::Have(1),
        Message::Bitfield(&[0x80, 0x00]),
        Message::Bitfield(&[0x20, 0x00]),
    ]);
    let mut got = Vec::new();
    while let Some(ev) = conn.handle_bytes(at(1), &mut input).unwrap() {
        got.push(match ev {
            PeerEvent::Have(i) => vec![i],
            PeerEvent::Bitfield(b) => {
                assert_eq!(b.len(), 10);
                b.iter_ones().collect()
            }
            _ => Vec::new(),
        });
    }
    assert_eq!(got, [vec![], vec![1], vec![0], vec![2]]);
    assert!(conn.is_connected());

    // Have all after other messages: closed (fast-extension peers get this right).
    let mut conn = connect(BOTH, BOTH);
    let input = frames(&[Message::Have(1), Message::HaveAll]);
    assert!(matches!(
        feed(&mut conn, at(1), &input),
        Err(CloseReason::AvailabilityNotFirst {
            message: "have all"
        })
    ));

    // Have all after a bitfield: closed.
    let mut conn = connect(BOTH, BOTH);
    let input = frames(&[Message::Bitfield(&[0, 0]), Message::HaveAll]);
    assert!(matches!(
        feed(&mut conn, at(1), &input),
        Err(CloseReason::AvailabilityNotFirst {
            message: "have all"
        })
    ));
}

#[test]
fn have_all_and_have_none_need_the_fast_extension() {
    let mut conn = connect(BOTH, BOTH);
    assert_eq!(
        feed(&mut conn, at(0), &frame(Message::HaveAll)).unwrap(),
        ["have all"]
    );

    let mut conn = connect(BOTH, BOTH);
    assert_eq!(
        feed(&mut conn, at(0), &frame(Message::HaveNone)).unwrap(),
        ["have none"]
    );

    // We support it, they do not: not negotiated.
    for msg in [Message::HaveAll, Message::HaveNone] {
        let mut conn = connect(BOTH, Reserved::EXTENSION_PROTOCOL);
        let err = feed(&mut conn, at(0), &frame(msg)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("but the fast extension (BEP 6) was not negotiated"),
            "{err}"
        );
    }
}

#[test]
fn our_bitfield_forms() {
    let mut half = Bitfield::new(10);
    half.set(0);
    half.set(9);
    let cases = [
        (BOTH, Bitfield::full(10), vec!["HaveAll"]),
        (BOTH, Bitfield::new(10), vec!["HaveNone"]),
        (BOTH, half.clone(), vec!["Bitfield(8040)"]),
        (Reserved::NONE, Bitfield::full(10), vec!["Bitfield(ffc0)"]),
        // BEP 3: a peer with nothing may skip the bitfield.
        (Reserved::NONE, Bitfield::new(10), vec![]),
    ];
    for (reserved, ours, want) in cases {
        let mut conn = connect(reserved, reserved);
        conn.send_bitfield(at(0), &ours).unwrap();
        assert_eq!(sent(&mut conn), want);
    }
    // Only first, only once, only of the right size.
    let mut conn = connect(BOTH, BOTH);
    conn.send_interested(at(0)).unwrap();
    assert!(matches!(
        conn.send_bitfield(at(0), &half),
        Err(CloseReason::Misuse { .. })
    ));
    let mut conn = connect(BOTH, BOTH);
    assert!(matches!(
        conn.send_bitfield(at(0), &Bitfield::new(11)),
        Err(CloseReason::Misuse { .. })
    ));
}

// ----- hostile input ---------------------------------------------------------------------------

/// Each hostile input ends in a clean close; the reasons, as a user reads them.
#[test]
fn hostile_inputs_close_with_a_reason() {
    // 800 pieces of 16 KiB, for the index messages.
    let big = TorrentInfo::new(HASH, 16 * 1024, 800 * 16 * 1024).unwrap();
    let setup = |reserved: Reserved, unchoke: bool| {
        let mut conn = PeerConn::new_outgoing(config(OUR_ID, reserved), big, Some(PEER_IP), at(0));
        feed(&mut conn, at(0), &handshake(reserved, HASH, THEIR_ID)).unwrap();
        if unchoke {
            conn.send_bitfield(at(0), &Bitfield::full(800)).unwrap();
            conn.send_unchoke(at(0)).unwrap();
        }
        conn
    };
    let request = |i: u32| Message::Request(block(i % 800, 0, 16384));
    let flood: Vec<u8> = (0..251).flat_map(|i| frame(request(i))).collect();
    let choked_flood: Vec<u8> = (0..501).flat_map(|i| frame(request(i))).collect();
    let allowed_flood: Vec<u8> = (0..65)
        .flat_map(|i| frame(Message::AllowedFast(i)))
        .collect();
    let mut oversized = 100_000u32.to_be_bytes().to_vec();
    oversized.push(7);
    let cases: Vec<(&str, Reserved, bool, Vec<u8>)> = vec![
        ("oversized frame", BOTH, false, oversized),
        (
            "bitfield too short",
            BOTH,
            false,
            frame(Message::Bitfield(&[0xff; 99])),
        ),
        ("have out of range", BOTH, false, frame(Message::Have(900))),
        (
            "request beyond the piece",
            BOTH,
            true,
            frame(Message::Request(block(3, 16_000, 16384))),
        ),
        (
            "request over 16 KiB",
            BOTH,
            true,
            frame(Message::Request(block(3, 0, 32768))),
        ),
        (
            "request out of range",
            BOTH,
            true,
            frame(Message::Request(block(800, 0, 1))),
        ),
        ("request flood without fast", Reserved::NONE, true, flood),
        ("request flood while choked", BOTH, false, choked_flood),
        (
            "reject without fast",
            Reserved::NONE,
            false,
            frame(Message::Reject(block(1, 0, 16384))),
        ),
        (
            "reject never requested",
            BOTH,
            false,
            frame(Message::Reject(block(1, 0, 16384))),
        ),
        (
            "suggest without fast",
            Reserved::NONE,
            false,
            frame(Message::Suggest(1)),
        ),
        ("allowed fast flood", BOTH, false, allowed_flood),
        (
            "allowed fast out of range",
            BOTH,
            false,
            frame(Message::AllowedFast(800)),
        ),
        (
            "extended without BEP 10",
            Reserved::FAST,
            false,
            frame(Message::Extended {
                id: 0,
                payload: b"de",
            }),
        ),
        (
            "bad extension handshake",
            BOTH,
            false,
            frame(Message::Extended {
                id: 0,
                payload: b"l1:ae",
            }),
        ),
        ("port without DHT", BOTH, false, frame(Message::Port(6881))),
    ];
    let mut report = String::new();
    for (name, reserved, unchoke, input) in cases {
        let mut conn = setup(reserved, unchoke);
        let err = feed(&mut conn, at(1), &input).unwrap_err();
        assert!(conn.is_closed());
        assert_eq!(conn.handle_timeout(at(2)), Err(err.clone()));
        report.push_str(&format!("{name}: {err}\n"));
    }
    // Spare bits need a piece count that is not a multiple of 8.
    let mut conn = connect(BOTH, BOTH);
    let err = feed(&mut conn, at(1), &frame(Message::Bitfield(&[0xff, 0xc1]))).unwrap_err();
    report.push_str(&format!("bitfield spare bits: {err}\n"));
    insta::assert_snapshot!(report);
}

#[test]
fn unrequested_block_is_an_event_not_a_close() {
    let mut conn = downloading(BOTH);
    let data = [7u8; 100];
    let input = frame(Message::Piece {
        index: 2,
        begin: 0,
        data: &data,
    });
    assert_eq!(
        feed(&mut conn, at(1), &input).unwrap(),
        ["unrequested block piece 2 +0 len 100"]
    );
    assert!(conn.is_connected());
    // Junk does not count as download.
    assert_eq!(conn.downloaded(), 0);
}

#[test]
fn request_flood_with_fast_is_rejected_not_closed() {
    let mut conn = connect(BOTH, BOTH);
    conn.send_bitfield(at(0), &Bitfield::full(10)).unwrap();
    conn.send_unchoke(at(0)).unwrap();
    sent(&mut conn);
    let mut cfg_blocks = Vec::new();
    for piece in 0..9 {
        for begin in (0..32768).step_by(1024) {
            cfg_blocks.push(block(piece, begin, 1024));
        }
    }
    let input: Vec<u8> = cfg_blocks
        .iter()
        .take(260)
        .flat_map(|b| frame(Message::Request(*b)))
        .collect();
    let events = feed(&mut conn, at(1), &input).unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("request piece"))
            .count(),
        250
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.ends_with("(QueueFull, rejected)"))
            .count(),
        10
    );
    assert_eq!(conn.queued_requests().count(), 250);
    let out = sent(&mut conn);
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|m| m.starts_with("Reject(")));
    // A duplicate is ignored, not queued twice.
    let events = feed(&mut conn, at(1), &frame(Message::Request(cfg_blocks[0]))).unwrap();
    assert_eq!(events, ["request refused piece 0 +0 len 1024 (Duplicate)"]);
}

// ----- requests from the peer ------------------------------------------------------------------

#[test]
fn choked_requests_are_rejected_or_ignored() {
    // We choke them (the initial state): with fast, a reject; without, silence.
    let mut conn = connect(BOTH, BOTH);
    let events = feed(
        &mut conn,
        at(1),
        &frame(Message::Request(block(0, 0, 16384))),
    )
    .unwrap();
    assert_eq!(
        events,
        ["request refused piece 0 +0 len 16384 (Choked, rejected)"]
    );
    assert_eq!(
        sent(&mut conn),
        ["Reject(BlockRequest { index: 0, begin: 0, length: 16384 })"]
    );

    let mut conn = connect(Reserved::NONE, Reserved::NONE);
    let events = feed(
        &mut conn,
        at(1),
        &frame(Message::Request(block(0, 0, 16384))),
    )
    .unwrap();
    assert_eq!(events, ["request refused piece 0 +0 len 16384 (Choked)"]);
    assert!(sent(&mut conn).is_empty());
}

#[test]
fn allowed_fast_set_against_bep6_vectors() {
    // BEP 6's example: 1313 pieces, info hash aa…aa, peer at 80.4.4.200, k = 7.
    let bep6 = TorrentInfo::new([0xaa; 20], 16384, 1313 * 16384).unwrap();
    let mut cfg = config(OUR_ID, BOTH);
    cfg.allowed_fast_count = 7;
    let ip = IpAddr::V4(Ipv4Addr::new(80, 4, 4, 200));
    let mut conn = PeerConn::new_outgoing(cfg, bep6, Some(ip), at(0));
    feed(&mut conn, at(0), &handshake(BOTH, [0xaa; 20], THEIR_ID)).unwrap();
    sent(&mut conn);
    conn.send_bitfield(at(0), &Bitfield::full(1313)).unwrap();
    assert_eq!(conn.send_allowed_fast_set(at(0)), Ok(7));
    assert_eq!(
        conn.allowed_fast_given(),
        [1059, 431, 808, 1217, 287, 376, 1188]
    );
    let out = sent(&mut conn);
    assert_eq!(out[0], "HaveAll");
    assert_eq!(
        out[1..],
        [
            "AllowedFast(1059)",
            "AllowedFast(431)",
            "AllowedFast(808)",
            "AllowedFast(1217)",
            "AllowedFast(287)",
            "AllowedFast(376)",
            "AllowedFast(1188)"
        ]
    );
    // Sending again adds nothing.
    assert_eq!(conn.send_allowed_fast_set(at(0)), Ok(0));

    // While choked, requests in the set are queued, others rejected.
    let input = frames(&[
        Message::Request(block(431, 0, 16384)),
        Message::Request(block(432, 0, 16384)),
    ]);
    assert_eq!(
        feed(&mut conn, at(1), &input).unwrap(),
        [
            "request piece 431 +0 len 16384",
            "request refused piece 432 +0 len 16384 (Choked, rejected)"
        ]
    );
    // A choke (we are already choking: no-op) keeps it; it can be served.
    conn.send_choke(at(1)).unwrap();
    assert_eq!(conn.poll_upload(), Some(block(431, 0, 16384)));
    assert_eq!(
        conn.send_block(at(1), block(431, 0, 16384), Bytes::from_static(&[1; 16384])),
        Ok(true)
    );

    // IPv4-mapped IPv6 works; plain IPv6 has no set (BEP 6: no provision for IPv6).
    assert_eq!(
        ipv4_of(Some("::ffff:80.4.4.200".parse().unwrap())),
        Some(Ipv4Addr::new(80, 4, 4, 200))
    );
    let mut conn = PeerConn::new_outgoing(
        config(OUR_ID, BOTH),
        torrent(),
        Some("2001:db8::1".parse().unwrap()),
        at(0),
    );
    feed(&mut conn, at(0), &handshake(BOTH, HASH, THEIR_ID)).unwrap();
    assert_eq!(conn.send_allowed_fast_set(at(0)), Ok(0));
}

#[test]
fn cancel_handling() {
    for (reserved, reject_expected) in [(BOTH, true), (Reserved::NONE, false)] {
        let mut conn = connect(reserved, reserved);
        conn.send_bitfield(at(0), &Bitfield::full(10)).unwrap();
        conn.send_unchoke(at(0)).unwrap();
        sent(&mut conn);
        let b = block(1, 16384, 16384);
        let input = frames(&[Message::Request(b), Message::Cancel(b), Message::Cancel(b)]);
        assert_eq!(
            feed(&mut conn, at(1), &input).unwrap(),
            [
                "request piece 1 +16384 len 16384",
                "cancel piece 1 +16384 len 16384",
                "cancel piece 1 +16384 len 16384 (not queued)"
            ]
        );
        // BEP 6: the cancelled request still gets exactly one answer, a reject.
        let out = sent(&mut conn);
        assert_eq!(out.len(), usize::from(reject_expected), "{out:?}");
        // The disk read that was under way finds the request gone.
        assert_eq!(
            conn.send_block(at(1), b, Bytes::from_static(&[0; 16384])),
            Ok(false)
        );
        assert!(sent(&mut conn).is_empty());
    }

    // A cancel while the block is being read from disk (handed out by poll_upload).
    let mut conn = connect(BOTH, BOTH);
    conn.send_bitfield(at(0), &Bitfield::full(10)).unwrap();
    conn.send_unchoke(at(0)).unwrap();
    let b = block(0, 0, 16384);
    feed(&mut conn, at(1), &frame(Message::Request(b))).unwrap();
    assert_eq!(conn.poll_upload(), Some(b));
    assert_eq!(conn.poll_upload(), None);
    feed(&mut conn, at(1), &frame(Message::Cancel(b))).unwrap();
    assert_eq!(
        conn.send_block(at(1), b, Bytes::from_static(&[0; 16384])),
        Ok(false)
    );
    assert_eq!(
        sent(&mut conn).last().unwrap(),
        "Reject(BlockRequest { index: 0, begin: 0, length: 16384 })"
    );
}

#[test]
fn our_choke_semantics() {
    for reserved in [BOTH, Reserved::NONE] {
        let mut conn = connect(reserved, reserved);
        conn.send_bitfield(at(0), &Bitfield::full(10)).unwrap();
        conn.send_unchoke(at(0)).unwrap();
        let input = frames(&[
            Message::Request(block(0, 0, 16384)),
            Message::Request(block(0, 16384, 16384)),
        ]);
        feed(&mut conn, at(1), &input).unwrap();
        sent(&mut conn);
        let first = conn.poll_upload().unwrap();
        conn.send_choke(at(2)).unwrap();
        assert!(conn.am_choking());
        assert_eq!(conn.queued_requests().count(), 0);
        let out = sent(&mut conn);
        if reserved.fast() {
            // BEP 6: choke first, then reject every pending request.
            assert_eq!(
                out,
                [
                    "Choke",
                    "Reject(BlockRequest { index: 0, begin: 0, length: 16384 })",
                    "Reject(BlockRequest { index: 0, begin: 16384, length: 16384 })"
                ]
            );
        } else {
            assert_eq!(out, ["Choke"]);
        }
        assert_eq!(
            conn.send_block(at(2), first, Bytes::from_static(&[0; 16384])),
            Ok(false)
        );
        assert_eq!(conn.poll_upload(), None);
        // Choking twice sends nothing.
        conn.send_choke(at(2)).unwrap();
        assert!(sent(&mut conn).is_empty());
    }
}

#[test]
fn upload_pacing_by_watermark() {
    let mut cfg = config(OUR_ID, BOTH);
    cfg.upload_watermark = 40_000;
    let mut conn = PeerConn::new_outgoing(cfg, torrent(), None, at(0));
    feed(&mut conn, at(0), &handshake(BOTH, HASH, THEIR_ID)).unwrap();
    conn.send_bitfield(at(0), &Bitfield::full(10)).unwrap();
    conn.send_unchoke(at(0)).unwrap();
    sent(&mut conn);
    let input: Vec<u8> = (0..4)
        .flat_map(|i| frame(Message::Request(block(i, 0, 16384))))
        .collect();
    feed(&mut conn, at(1), &input).unwrap();
    // Two blocks fit under 40 000 bytes; the third waits.
    let a = conn.poll_upload().unwrap();
    let b = conn.poll_upload().unwrap();
    assert_eq!(conn.poll_upload(), None);
    conn.send_block(at(1), a, Bytes::from_static(&[1; 16384]))
        .unwrap();
    conn.send_block(at(1), b, Bytes::from_static(&[2; 16384]))
        .unwrap();
    assert_eq!(conn.poll_upload(), None);
    // The socket takes the bytes (run by run: the blocks are kept apart): room again.
    while conn.wants_transmit() {
        let n = conn.pending_transmit().len();
        conn.advance_transmit(n);
    }
    assert_eq!(conn.poll_upload(), Some(block(2, 0, 16384)));
    assert_eq!(conn.uploaded(), 2 * 16384);
    // Wrong data length is refused without sending.
    assert_eq!(
        conn.send_block(at(1), block(2, 0, 16384), Bytes::from_static(&[0; 10])),
        Ok(false)
    );
    assert_eq!(conn.reject_request(at(1), block(2, 0, 16384)), Ok(true));
    assert_eq!(conn.reject_request(at(1), block(2, 0, 16384)), Ok(false));
}

// ----- our requests ----------------------------------------------------------------------------

#[test]
fn peer_choke_semantics() {
    // Without the fast extension a choke releases every outstanding request (BEP 3).
    let mut conn = downloading(Reserved::NONE);
    let reqs = [
        block(0, 0, 16384),
        block(0, 16384, 16384),
        block(1, 0, 16384),
    ];
    for r in reqs {
        assert_eq!(conn.send_request(at(1), r), Ok(true));
    }
    let mut input = frame(Message::Choke);
    let mut released = Vec::new();
    while let Some(ev) = conn.handle_bytes(at(2), &mut input.as_slice()).unwrap() {
        if let PeerEvent::Choked { released: r } = ev {
            released = r.to_vec();
        }
        input.clear();
    }
    assert_eq!(released, reqs);
    assert_eq!(conn.outstanding_len(), 0);
    assert_eq!(conn.request_slots(at(2)), 0);
    assert_eq!(conn.send_request(at(2), reqs[0]), Ok(false));
    // A block that was already on its way arrives late: not an error.
    let late = frame(Message::Piece {
        index: 0,
        begin: 0,
        data: &[5; 16384],
    });
    assert_eq!(
        feed(&mut conn, at(2), &late).unwrap(),
        ["late block piece 0 +0 len 16384"]
    );

    // With it (BEP 6) they stay outstanding until rejected or served.
    let mut conn = downloading(BOTH);
    for r in reqs {
        conn.send_request(at(1), r).unwrap();
    }
    let input = frames(&[
        Message::Choke,
        Message::Reject(reqs[0]),
        Message::Piece {
            index: 0,
            begin: 16384,
            data: &[1; 16384],
        },
    ]);
    assert_eq!(
        feed(&mut conn, at(2), &input).unwrap(),
        [
            "choked (released 0 requests)",
            "rejected piece 0 +0 len 16384",
            "block piece 0 +16384 len 16384"
        ]
    );
    assert_eq!(conn.outstanding().collect::<Vec<_>>(), [reqs[2]]);
    assert_eq!(conn.request_slots(at(2)), 0);
    // An allowed-fast piece may be requested while choked.
    feed(&mut conn, at(2), &frame(Message::AllowedFast(5))).unwrap();
    assert!(conn.may_request(5));
    assert!(!conn.may_request(4));
    assert!(conn.request_slots(at(2)) > 0);
    assert_eq!(conn.send_request(at(2), block(4, 0, 16384)), Ok(false));
    assert_eq!(conn.send_request(at(2), block(5, 0, 16384)), Ok(true));
}

#[test]
fn our_cancel_and_late_answers() {
    let mut conn = downloading(BOTH);
    let b = block(3, 0, 16384);
    conn.send_request(at(1), b).unwrap();
    assert_eq!(conn.send_cancel(at(1), b), Ok(true));
    assert_eq!(conn.send_cancel(at(1), b), Ok(false));
    assert_eq!(
        sent(&mut conn),
        [
            "Request(BlockRequest { index: 3, begin: 0, length: 16384 })",
            "Cancel(BlockRequest { index: 3, begin: 0, length: 16384 })"
        ]
    );
    // BEP 6: the peer answers the cancelled request with a reject; expected, not an error.
    assert_eq!(
        feed(&mut conn, at(2), &frame(Message::Reject(b))).unwrap(),
        ["late reject piece 3 +0 len 16384"]
    );
    // Any further reject for it is for a request we no longer have.
    assert!(matches!(
        feed(&mut conn, at(2), &frame(Message::Reject(b))),
        Err(CloseReason::RejectNotRequested { .. })
    ));
}

#[test]
fn re_requested_after_cancel_both_answers_are_accepted() {
    // Endgame: we cancel a block, then ask the same peer for it again. The peer answers the
    // first request (a reject for our cancel) and then the second (the block). Whichever
    // answer takes the outstanding entry, the other is late, not "never requested".
    let mut conn = downloading(BOTH);
    let b = block(3, 0, 16384);
    conn.send_request(at(1), b).unwrap();
    assert_eq!(conn.send_cancel(at(1), b), Ok(true));
    assert_eq!(conn.send_request(at(1), b), Ok(true));
    sent(&mut conn);
    assert_eq!(
        feed(&mut conn, at(2), &frame(Message::Reject(b))).unwrap(),
        ["rejected piece 3 +0 len 16384"]
    );
    let data = vec![5u8; 16384];
    let piece = frame(Message::Piece {
        index: 3,
        begin: 0,
        data: &data,
    });
    assert_eq!(
        feed(&mut conn, at(3), &piece).unwrap(),
        ["late block piece 3 +0 len 16384"]
    );
    assert!(conn.close_reason().is_none());
}

#[test]
fn invalid_requests_of_ours_are_misuse() {
    let mut conn = downloading(BOTH);
    // The last piece is 20000 bytes.
    assert_eq!(conn.send_request(at(1), block(9, 16384, 3616)), Ok(true));
    for bad in [
        block(9, 16384, 3617),
        block(10, 0, 1),
        block(0, 0, 0),
        block(0, 0, 16385),
    ] {
        let mut conn = downloading(BOTH);
        assert!(matches!(
            conn.send_request(at(1), bad),
            Err(CloseReason::Misuse { .. })
        ));
    }
}

/// The peer serves one block every `1 / blocks_per_sec`, oldest request first; the Session
/// keeps the pipeline full. Returns the queue depth over time.
fn run_pipeline(blocks_per_sec: u64, secs: u64) -> Vec<(u64, usize)> {
    let mut conn = downloading(BOTH);
    let mut depths = Vec::new();
    let tick = 1000 / blocks_per_sec;
    let mut next_piece = 0u64;
    for step in 0..secs * 1000 / tick {
        let now = ms(step * tick);
        for _ in 0..conn.request_slots(now) {
            // An endless torrent, modulo its 10 pieces × 2 blocks.
            let n = next_piece;
            next_piece += 1;
            let b = block((n / 2 % 9) as u32, (n % 2 * 16384) as u32, 16384);
            if !conn.send_request(now, b).unwrap() {
                // Still outstanding from a lap ago: the pipeline is that deep.
                break;
            }
        }
        sent(&mut conn);
        let oldest = conn.outstanding().next();
        if let Some(b) = oldest {
            let data = vec![0; b.length as usize];
            let input = frame(Message::Piece {
                index: b.index,
                begin: b.begin,
                data: &data,
            });
            feed(&mut conn, now, &input).unwrap();
        }
        if step % (1000 / tick) == 0 {
            depths.push((step * tick / 1000, conn.queue_depth(now)));
        }
    }
    depths
}

#[test]
fn request_pipeline_grows_with_rate() {
    // Slow start from 4, then rate × 3 s / 16 KiB.
    let fast = run_pipeline(40, 30);
    // At the first sample one block has arrived: 4 + 1.
    assert_eq!(fast[0], (0, 5));
    let (_, last) = *fast.last().unwrap();
    // 40 blocks/s × 3 s = 120 blocks (the pipeline can hold only 18 distinct blocks here, so
    // send_request refuses the rest, but the desired depth is what is measured).
    assert!((110..=125).contains(&last), "{fast:?}");
    assert!(fast.windows(2).all(|w| w[1].1 + 10 >= w[0].1), "{fast:?}");

    let slow = run_pipeline(2, 30);
    let (_, last) = *slow.last().unwrap();
    assert!((5..=7).contains(&last), "{slow:?}");

    // The depth never passes the peer's reqq.
    let mut conn = downloading(BOTH);
    let hs = frame(Message::Extended {
        id: 0,
        payload: b"d4:reqqi3ee",
    });
    feed(&mut conn, at(0), &hs).unwrap();
    assert_eq!(conn.peer_reqq(), 3);
    assert_eq!(conn.request_slots(at(0)), 3);
    for i in 0..3 {
        assert_eq!(conn.send_request(at(0), block(i, 0, 16384)), Ok(true));
    }
    assert_eq!(conn.send_request(at(0), block(3, 0, 16384)), Ok(false));
}

#[test]
fn request_timeout() {
    let mut conn = downloading(BOTH);
    let b = block(2, 0, 16384);
    conn.send_request(at(10), b).unwrap();
    sent(&mut conn);
    // Idle at 180 s, keep-alive at 130 s, the request at 30 s.
    assert_eq!(conn.request_timeout(), Duration::from_secs(20));
    assert_eq!(conn.next_deadline(), Some(at(30)));
    assert_eq!(conn.handle_timeout(at(29)), Ok(None));
    let mut timed_out = Vec::new();
    if let Some(PeerEvent::RequestsTimedOut(blocks)) = conn.handle_timeout(at(30)).unwrap() {
        timed_out = blocks.to_vec();
    }
    assert_eq!(timed_out, [b]);
    assert_eq!(conn.handle_timeout(at(30)), Ok(None));
    assert_eq!(
        sent(&mut conn),
        ["Cancel(BlockRequest { index: 2, begin: 0, length: 16384 })"]
    );
    assert!(conn.is_snubbed());
    assert_eq!(conn.request_slots(at(30)), 2);
    // It arrives after all: a late block, and the peer is no longer snubbed only when a
    // requested block arrives.
    let late = frame(Message::Piece {
        index: 2,
        begin: 0,
        data: &[0; 16384],
    });
    assert_eq!(
        feed(&mut conn, at(31), &late).unwrap(),
        ["late block piece 2 +0 len 16384"]
    );
    assert!(conn.is_snubbed());

    // Progress postpones the timeout of a deep queue; the latency stretches it.
    let mut conn = downloading(BOTH);
    for i in 0..4 {
        conn.send_request(at(0), block(i, 0, 16384)).unwrap();
    }
    let piece = |i: u32| {
        frame(Message::Piece {
            index: i,
            begin: 0,
            data: &[0; 16384],
        })
    };
    feed(&mut conn, at(15), &piece(0)).unwrap();
    feed(&mut conn, at(30), &piece(1)).unwrap();
    assert_eq!(conn.handle_timeout(at(40)), Ok(None));
    // Latency 15 s then 30 s: smoothed 16.875 s, × 4 = 67.5 s, capped at 60 s.
    assert_eq!(conn.request_timeout(), Duration::from_secs(60));
    assert_eq!(conn.next_deadline(), Some(at(90)));
    assert!(
        matches!(conn.handle_timeout(at(90)), Ok(Some(PeerEvent::RequestsTimedOut(b))) if b.len() == 2)
    );
}

// ----- timers ----------------------------------------------------------------------------------

#[test]
fn keepalive_after_two_minutes_and_silence_close() {
    let mut conn = connect(BOTH, BOTH);
    conn.send_bitfield(at(0), &Bitfield::new(10)).unwrap();
    sent(&mut conn);
    assert_eq!(conn.next_deadline(), Some(at(120)));
    assert_eq!(conn.handle_timeout(at(119)), Ok(None));
    assert!(!conn.wants_transmit());
    assert_eq!(conn.handle_timeout(at(120)), Ok(None));
    assert_eq!(conn.pending_transmit(), [0, 0, 0, 0]);
    sent(&mut conn);
    // The peer keeps talking; our next keep-alive is due 2 min after the last one.
    feed(&mut conn, at(150), &frame(Message::KeepAlive)).unwrap();
    assert_eq!(conn.next_deadline(), Some(at(240)));
    conn.handle_timeout(at(240)).unwrap();
    assert_eq!(sent(&mut conn), ["KeepAlive"]);
    // Then silence: closed 3 min after the last byte received.
    assert_eq!(conn.next_deadline(), Some(at(330)));
    let err = conn.handle_timeout(at(330)).unwrap_err();
    assert_eq!(err.to_string(), "peer sent nothing for 180s");
    assert_eq!(conn.next_deadline(), None);
}

/// A connection with batched haves, past the handshake and our (empty) bitfield.
fn batching(batch_ms: u64) -> PeerConn {
    let mut cfg = config(OUR_ID, BOTH);
    cfg.have_batch = Duration::from_millis(batch_ms);
    let mut conn = PeerConn::new_outgoing(cfg, torrent(), None, at(0));
    feed(&mut conn, at(0), &handshake(BOTH, HASH, THEIR_ID)).unwrap();
    conn.send_bitfield(at(0), &Bitfield::new(10)).unwrap();
    sent(&mut conn);
    conn
}

#[test]
fn held_haves_leave_together_when_the_batch_is_due() {
    let mut conn = batching(250);
    let t0 = Instant::from_micros(1_000_000);
    assert_eq!(conn.send_have(t0, 3), Ok(HaveSent::Held { first: true }));
    assert_eq!(
        conn.send_have(t0 + Duration::from_millis(100), 5),
        Ok(HaveSent::Held { first: false })
    );
    assert!(
        !conn.wants_transmit(),
        "held haves are not bytes to send yet"
    );
    assert_eq!(conn.held_haves(), [3, 5]);
    conn.check_bounds().unwrap();
    let due = t0 + Duration::from_millis(250);
    assert_eq!(conn.next_deadline(), Some(due));
    // Early: nothing moves.
    conn.handle_timeout(t0 + Duration::from_millis(249))
        .unwrap();
    assert!(!conn.wants_transmit());
    conn.handle_timeout(due).unwrap();
    assert_eq!(sent(&mut conn), ["Have(3)", "Have(5)"]);
    assert!(conn.held_haves().is_empty());
    conn.check_bounds().unwrap();
    assert!(conn.next_deadline() > Some(due), "no flush is pending");
}

#[test]
fn held_haves_ride_along_with_the_next_other_message() {
    let mut conn = batching(250);
    conn.send_have(at(1), 7).unwrap();
    conn.send_interested(at(1)).unwrap();
    // In the order given: the have was announced first.
    assert_eq!(sent(&mut conn), ["Have(7)", "Interested"]);
    assert!(conn.held_haves().is_empty());
}

#[test]
fn a_segment_of_held_haves_goes_at_once() {
    let mut cfg = config(OUR_ID, BOTH);
    cfg.have_batch = Duration::from_secs(10);
    let n = u32::try_from(HAVE_BATCH_MAX).unwrap();
    let info = TorrentInfo::new(HASH, 16 * 1024, u64::from(n) * 16 * 1024).unwrap();
    let mut conn = PeerConn::new_outgoing(cfg, info, None, at(0));
    feed(&mut conn, at(0), &handshake(BOTH, HASH, THEIR_ID)).unwrap();
    conn.send_bitfield(at(0), &Bitfield::new(n)).unwrap();
    sent(&mut conn);
    for i in 0..n - 1 {
        assert!(matches!(
            conn.send_have(at(1), i),
            Ok(HaveSent::Held { .. })
        ));
    }
    conn.check_bounds().unwrap();
    assert_eq!(conn.send_have(at(1), n - 1), Ok(HaveSent::Queued));
    assert_eq!(sent(&mut conn).len(), HAVE_BATCH_MAX);
}

#[test]
fn send_buffer_is_bounded() {
    let mut cfg = config(OUR_ID, BOTH);
    cfg.max_send_buffer = 1000;
    let mut conn = PeerConn::new_outgoing(cfg, torrent(), None, at(0));
    feed(&mut conn, at(0), &handshake(BOTH, HASH, THEIR_ID)).unwrap();
    conn.send_bitfield(at(0), &Bitfield::new(10)).unwrap();
    // The peer never reads: haves pile up until the bound.
    let mut result = Ok(());
    for i in 0..200 {
        result = conn.send_have(at(0), i % 10).map(|_| ());
        if result.is_err() {
            break;
        }
    }
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "send buffer exceeded 1000 bytes (the peer is not reading)"
    );
    assert!(conn.pending_transmit().len() <= 1000);
    assert_eq!(conn.send_unchoke(at(0)), Err(err));
}

// ----- extension protocol ----------------------------------------------------------------------

#[test]
fn extension_handshake_in_both_directions() {
    let mut cfg = config(OUR_ID, BOTH);
    cfg.ut_metadata_id = Some(3);
    cfg.ut_pex_id = Some(1);
    cfg.listen_port = Some(51413);
    let t = torrent().with_metadata_size(4321);
    let mut conn = PeerConn::new_outgoing(cfg, t, Some(PEER_IP), at(0));
    feed(&mut conn, at(0), &handshake(BOTH, HASH, THEIR_ID)).unwrap();
    assert_eq!(
        sent(&mut conn),
        [
            "ExtHandshake(d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei4321e1:pi51413e4:reqqi250e1:v8:Hive 0.16:yourip4:\\xc0\\x00\\x02\\te)"
        ]
    );
    let theirs = b"d1:md11:ut_metadatai2e6:ut_pexi0e11:lt_donthavei7ee1:pi6881e4:reqqi500e\
                   1:v18:Transmission 4.0.56:yourip4:\xcb\x00\x71\x05e";
    let input = frames(&[
        Message::Extended {
            id: 0,
            payload: theirs,
        },
        Message::Extended {
            id: 3,
            payload: b"d8:msg_typei0e5:piecei0ee",
        },
    ]);
    assert_eq!(
        feed(&mut conn, at(1), &input).unwrap(),
        [
            "extension handshake v=\"Transmission 4.0.5\" ut_metadata=2 ut_pex=0 lt_donthave=7 reqq=500",
            "extended id 3 (25 bytes)"
        ]
    );
    assert_eq!(conn.peer_extension_id(b"ut_metadata"), Some(2));
    assert_eq!(conn.peer_extension_id(b"ut_pex"), None);
    assert_eq!(conn.peer_extension_id(b"lt_donthave"), Some(7));
    assert_eq!(conn.peer_version(), Some("Transmission 4.0.5"));
    assert_eq!(conn.peer_listen_port(), Some(6881));
    assert_eq!(
        conn.external_ip(),
        Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)))
    );
    assert_eq!(conn.peer_reqq(), 500);
    // Our own bound still caps the pipeline.
    conn.send_bitfield(at(1), &Bitfield::new(10)).unwrap();
    assert_eq!(
        conn.send_extended(at(1), 2, b"d8:msg_typei0e5:piecei0ee"),
        Ok(true)
    );
    assert_eq!(sent(&mut conn).len(), 2);
}

#[test]
fn extension_handshake_tolerance() {
    // Wrong types everywhere, unknown keys, unsorted: ignored, not fatal.
    let mut conn = connect(BOTH, BOTH);
    let payload = b"d4:reqq3:abc1:mi5e1:v4:\xff\xfe\xfd\xfc1:pi99999999e3:zzzl1:xee";
    let input = frame(Message::Extended { id: 0, payload });
    assert_eq!(
        feed(&mut conn, at(1), &input).unwrap(),
        ["extension handshake"]
    );
    assert_eq!(conn.peer_reqq(), 250);
    assert_eq!(conn.peer_version(), None);
    assert_eq!(conn.peer_listen_port(), None);
    // An over-long handshake closes.
    let mut conn = connect(BOTH, BOTH);
    let mut big = b"d1:v".to_vec();
    big.extend_from_slice(b"20000:");
    big.extend(std::iter::repeat_n(b'a', 20000));
    big.push(b'e');
    let err = feed(
        &mut conn,
        at(1),
        &frame(Message::Extended {
            id: 0,
            payload: &big,
        }),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "peer sent an invalid extension handshake (BEP 10): extension handshake of 20011 bytes \
         exceeds the limit of 16384"
    );
}

#[test]
fn suggest_port_and_unknown_messages() {
    let mut conn = connect(BOTH | Reserved::DHT, BOTH | Reserved::DHT);
    let mut input = frames(&[
        Message::Suggest(4),
        Message::Suggest(4),
        Message::Port(6881),
        Message::Unknown {
            id: 77,
            payload: b"xyz",
        },
        Message::KeepAlive,
    ]);
    input.extend(frame(Message::HaveNone));
    let err = feed(&mut conn, at(1), &input).unwrap_err();
    // The suggests closed the window for have none, the rest did not matter.
    assert!(matches!(err, CloseReason::AvailabilityNotFirst { .. }));
    assert_eq!(conn.suggested().collect::<Vec<_>>(), [4]);
    assert_eq!(conn.unknown_messages(), 1);

    let mut cfg = config(OUR_ID, BOTH);
    cfg.max_suggested = 3;
    let mut conn = PeerConn::new_outgoing(cfg, torrent(), None, at(0));
    feed(&mut conn, at(0), &handshake(BOTH, HASH, THEIR_ID)).unwrap();
    let input: Vec<u8> = (0..6).flat_map(|i| frame(Message::Suggest(i))).collect();
    assert_eq!(feed(&mut conn, at(1), &input).unwrap().len(), 6);
    assert_eq!(conn.suggested().collect::<Vec<_>>(), [3, 4, 5]);
}

// ----- two machines ----------------------------------------------------------------------------

fn content(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn all_blocks(t: &TorrentInfo) -> VecDeque<BlockRequest> {
    let mut out = VecDeque::new();
    for index in 0..t.piece_count() {
        let len = t.piece_len(index).unwrap();
        for begin in (0..len).step_by(BLOCK_LEN as usize) {
            out.push_back(block(index, begin, BLOCK_LEN.min(len - begin)));
        }
    }
    out
}

fn offset(t: &TorrentInfo, b: BlockRequest) -> usize {
    (u64::from(b.index) * u64::from(t.piece_length()) + u64::from(b.begin)) as usize
}

/// A leecher (outgoing) and a seed (incoming) exchange a whole torrent through in-memory
/// buffers, in small chunks, on a virtual clock; both event logs are returned.
fn exchange(t: TorrentInfo, chunk: usize) -> (Vec<u8>, Vec<String>) {
    let data = content(t.total_length());
    let leech_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let seed_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let mut a = PeerConn::new_outgoing(config(OUR_ID, BOTH), t, Some(seed_ip), at(0));
    let mut b = PeerConn::new_incoming(config(THEIR_ID, BOTH), Some(leech_ip), at(0));
    let mut got = vec![0u8; data.len()];
    let mut todo = all_blocks(&t);
    let mut done = 0;
    let mut log = Vec::new();
    let mut now = at(0);
    for _ in 0..10_000 {
        // leecher → seed
        let mut wire = Vec::new();
        a.poll_transmit(&mut wire);
        for mut piece in wire.chunks(chunk) {
            while let Some(ev) = b.handle_bytes(now, &mut piece).unwrap() {
                log.push(format!("seed   <- {ev}"));
                match ev {
                    PeerEvent::InfoHash { .. } => b.accept(now, t).unwrap(),
                    PeerEvent::HandshakeDone { .. } => {
                        b.send_bitfield(now, &Bitfield::full(t.piece_count()))
                            .unwrap();
                    }
                    PeerEvent::Interested => b.send_unchoke(now).unwrap(),
                    _ => {}
                }
            }
        }
        while let Some(req) = b.poll_upload() {
            let at = offset(&t, req);
            let block_data = &data[at..at + req.length as usize];
            assert!(
                b.send_block(now, req, Bytes::copy_from_slice(block_data))
                    .unwrap()
            );
        }
        // seed → leecher
        let mut wire = Vec::new();
        b.poll_transmit(&mut wire);
        for mut piece in wire.chunks(chunk) {
            while let Some(ev) = a.handle_bytes(now, &mut piece).unwrap() {
                log.push(format!("leech  <- {ev}"));
                match ev {
                    PeerEvent::HandshakeDone { .. } => {
                        a.send_bitfield(now, &Bitfield::new(t.piece_count()))
                            .unwrap();
                    }
                    PeerEvent::HaveAll => a.send_interested(now).unwrap(),
                    PeerEvent::Block { block, data: bytes } => {
                        let at = offset(&t, block);
                        got[at..at + bytes.len()].copy_from_slice(bytes);
                        done += 1;
                    }
                    _ => {}
                }
            }
        }
        for _ in 0..a.request_slots(now) {
            let Some(req) = todo.pop_front() else { break };
            assert!(a.send_request(now, req).unwrap());
            log.push(format!("leech  -> request {} +{}", req.index, req.begin));
        }
        if done == all_blocks(&t).len() && !a.wants_transmit() {
            break;
        }
        now = now + Duration::from_millis(50);
    }
    assert_eq!(got, data);
    assert_eq!(a.downloaded(), t.total_length());
    assert_eq!(b.uploaded(), t.total_length());
    assert_eq!(a.outstanding_len(), 0);
    assert!(a.latency().is_some());
    (got, log)
}

#[test]
fn two_machines_exchange_a_torrent() {
    // 10 pieces, 20 blocks: in 1-byte, 7-byte and 1000-byte chunks.
    for chunk in [1, 7, 1000] {
        exchange(torrent(), chunk);
    }
    // A bigger one, to run the pipeline past slow start.
    let big = TorrentInfo::new(HASH, 256 * 1024, 40 * 256 * 1024 + 123).unwrap();
    exchange(big, 64 * 1024);
}

#[test]
fn two_machines_event_log() {
    let small = TorrentInfo::new(HASH, 32 * 1024, 32 * 1024 + 5000).unwrap();
    let (_, log) = exchange(small, 1500);
    insta::assert_snapshot!(log.join("\n"));
}

// ----- the Session's borrow pattern ------------------------------------------------------------

type ConnId = u32;

/// Torrent-wide state, in fields of the Session beside the connections.
struct TorrentState {
    info: TorrentInfo,
    have: Bitfield,
    data: Vec<u8>,
    todo: VecDeque<BlockRequest>,
    blocks_written: usize,
}

/// The shape the Session will have: connections in a map, torrent state in other fields;
/// events applied while the connection that produced them is borrowed.
struct Session {
    conns: BTreeMap<ConnId, PeerConn>,
    peer_ids: BTreeMap<[u8; 20], ConnId>,
    torrent: TorrentState,
    dropped: Vec<(ConnId, CloseReason)>,
}

impl TorrentState {
    /// Keeps `conn`'s pipeline full and serves its queued requests; borrows the connection
    /// and the torrent state at the same time (disjoint fields of the Session).
    fn pump(&mut self, conn: &mut PeerConn, now: Instant) -> Result<(), CloseReason> {
        for _ in 0..conn.request_slots(now) {
            let Some(b) = self.todo.pop_front() else {
                break;
            };
            if !conn.send_request(now, b)? {
                self.todo.push_front(b);
                break;
            }
        }
        while let Some(req) = conn.poll_upload() {
            if !self.have.get(req.index) {
                conn.reject_request(now, req)?;
                continue;
            }
            let at = offset(&self.info, req);
            conn.send_block(
                now,
                req,
                Bytes::copy_from_slice(&self.data[at..at + req.length as usize]),
            )?;
        }
        Ok(())
    }
}

impl Session {
    fn new(info: TorrentInfo, seed: bool) -> Self {
        let n = info.piece_count();
        Session {
            conns: BTreeMap::new(),
            peer_ids: BTreeMap::new(),
            torrent: TorrentState {
                info,
                have: if seed {
                    Bitfield::full(n)
                } else {
                    Bitfield::new(n)
                },
                data: if seed {
                    content(info.total_length())
                } else {
                    vec![0; info.total_length() as usize]
                },
                todo: if seed {
                    VecDeque::new()
                } else {
                    all_blocks(&info)
                },
                blocks_written: 0,
            },
            dropped: Vec::new(),
        }
    }

    fn on_received(&mut self, id: ConnId, now: Instant, mut data: &[u8]) {
        if let Err(reason) = self.drain(id, now, &mut data) {
            self.conns.remove(&id);
            self.peer_ids.retain(|_, c| *c != id);
            self.dropped.push((id, reason));
        }
    }

    /// Exactly the loop the lead writes: `while let Some(ev) = conn.handle_bytes(..)? {..}`.
    fn drain(&mut self, id: ConnId, now: Instant, data: &mut &[u8]) -> Result<(), CloseReason> {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        while let Some(ev) = conn.handle_bytes(now, data)? {
            match ev {
                PeerEvent::InfoHash { info_hash, .. } => {
                    if info_hash != self.torrent.info.info_hash {
                        return Err(conn.reject());
                    }
                    conn.accept(now, self.torrent.info)?;
                }
                PeerEvent::HandshakeDone { peer_id, .. } => {
                    // Duplicate-peer detection sees every connection (an index beside them).
                    if self.peer_ids.insert(peer_id, id).is_some() {
                        return Err(CloseReason::Misuse {
                            what: "duplicate peer",
                        });
                    }
                    conn.send_bitfield(now, &self.torrent.have)?;
                }
                PeerEvent::HaveAll | PeerEvent::Bitfield(_) | PeerEvent::Have(_)
                    if !self.torrent.todo.is_empty() =>
                {
                    conn.send_interested(now)?;
                }
                PeerEvent::Interested => conn.send_unchoke(now)?,
                PeerEvent::Block { block, data } => {
                    // Block data borrowed from the connection, written into another field.
                    let at = offset(&self.torrent.info, block);
                    self.torrent.data[at..at + data.len()].copy_from_slice(data);
                    self.torrent.blocks_written += 1;
                }
                PeerEvent::Choked { released } | PeerEvent::RequestsTimedOut(released) => {
                    self.torrent.todo.extend(released.iter().copied());
                }
                PeerEvent::Rejected(b) => self.torrent.todo.push_back(b),
                PeerEvent::UnrequestedBlock { .. } => {
                    return Err(CloseReason::Misuse {
                        what: "unrequested block",
                    });
                }
                _ => {}
            }
            // The event is dead here: the connection and the torrent state are both usable.
            self.torrent.pump(conn, now)?;
        }
        Ok(())
    }

    fn transmit(&mut self, id: ConnId) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.poll_transmit(&mut out);
        }
        out
    }

    fn on_timeout(&mut self, now: Instant) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            let result = match conn.handle_timeout(now) {
                Ok(Some(PeerEvent::RequestsTimedOut(blocks))) => {
                    self.torrent.todo.extend(blocks.iter().copied());
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(r) => Err(r),
            };
            if let Err(r) = result {
                self.conns.remove(&id);
                self.dropped.push((id, r));
            }
        }
    }
}

#[test]
fn session_shaped_borrow_pattern() {
    let info = TorrentInfo::new(HASH, 32 * 1024, 7 * 32 * 1024 + 999).unwrap();
    let mut leech = Session::new(info, false);
    let mut seed = Session::new(info, true);
    let ip = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    leech.conns.insert(
        1,
        PeerConn::new_outgoing(config(OUR_ID, BOTH), info, ip, at(0)),
    );
    seed.conns
        .insert(7, PeerConn::new_incoming(config(THEIR_ID, BOTH), ip, at(0)));
    let mut now = at(0);
    for _ in 0..1000 {
        let bytes = leech.transmit(1);
        seed.on_received(7, now, &bytes);
        let bytes = seed.transmit(7);
        leech.on_received(1, now, &bytes);
        leech.on_timeout(now);
        seed.on_timeout(now);
        if leech.torrent.blocks_written == all_blocks(&info).len() {
            break;
        }
        now = now + Duration::from_millis(20);
    }
    assert!(leech.dropped.is_empty(), "{:?}", leech.dropped);
    assert!(seed.dropped.is_empty(), "{:?}", seed.dropped);
    assert_eq!(leech.torrent.data, seed.torrent.data);
    let conn = &leech.conns[&1];
    assert_eq!(conn.client(), Some("Transmission 3.00"));
    // The seed is not interested in us: the choker ranks it by no rate.
    assert!(!conn.peer_interested());
    assert!(conn.download_rate(now) > 0);
    let stats = conn.choker_stats(1u32, now, Mode::Leech);
    assert_eq!((stats.download_rate, stats.upload_rate), (0, 0));
    assert!(stats.expecting_since.is_some());
    assert!(stats.last_block_at.is_some());

    // A second connection from the same peer id is the Session's to drop.
    seed.conns
        .insert(8, PeerConn::new_incoming(config(THEIR_ID, BOTH), ip, now));
    let mut dup = PeerConn::new_outgoing(config(OUR_ID, BOTH), info, ip, now);
    let mut bytes = Vec::new();
    dup.poll_transmit(&mut bytes);
    seed.on_received(8, now, &bytes);
    assert_eq!(
        seed.dropped,
        [(
            8,
            CloseReason::Misuse {
                what: "duplicate peer"
            }
        )]
    );
}

// ----- robustness ------------------------------------------------------------------------------

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn any_message() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0u8..25, proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(id, p)| {
                let mut v = ((p.len() + 1) as u32).to_be_bytes().to_vec();
                v.push(id);
                v.extend(p);
                v
            }),
            (0u32..12, 0u32..40_000, 0u32..20_000)
                .prop_map(|(i, b, l)| { frame(Message::Request(block(i, b, l))) }),
            (0u32..12, 0u32..40_000, 1usize..300).prop_map(|(i, b, l)| {
                let data = vec![0; l];
                frame(Message::Piece {
                    index: i,
                    begin: b,
                    data: &data,
                })
            }),
            (0u32..12).prop_map(|i| frame(Message::Have(i))),
            proptest::collection::vec(any::<u8>(), 0..8),
        ]
    }

    proptest! {
        /// Whatever the peer sends, in whatever chunks: no panic, either events or a close
        /// that sticks; the send buffer stays within its bound.
        #[test]
        fn arbitrary_peer_input_never_panics(
            fast in any::<bool>(),
            msgs in proptest::collection::vec(any_message(), 0..40),
            chunk in 1usize..50,
        ) {
            let reserved = if fast { BOTH } else { Reserved::EXTENSION_PROTOCOL };
            let mut conn = connect(reserved, reserved);
            conn.send_bitfield(at(0), &Bitfield::full(10)).unwrap();
            conn.send_unchoke(at(0)).unwrap();
            let bytes: Vec<u8> = msgs.concat();
            let mut closed = None;
            'outer: for piece in bytes.chunks(chunk) {
                let mut piece = piece;
                loop {
                    match conn.handle_bytes(at(1), &mut piece) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(r) => { closed = Some(r); break 'outer; }
                    }
                }
                while let Some(req) = conn.poll_upload() {
                    let data = vec![0; req.length as usize];
                    conn.send_block(at(1), req, Bytes::from(data.clone())).unwrap();
                }
            }
            if let Some(r) = closed {
                prop_assert_eq!(conn.handle_timeout(at(2)), Err(r));
            } else {
                prop_assert!(conn.pending_transmit().len() <= 4 << 20);
                prop_assert!(conn.queued_requests().count() <= 250);
            }
        }
    }
}

// ----- a scripted conversation, as a readable log ------------------------------------------------

/// A hand-written conversation with a libtorrent-like peer that touches most events; the log
/// shows what came in (`<-`), what went out (`->`) and the timers.
#[test]
fn scripted_exchange_event_log() {
    struct Script {
        conn: PeerConn,
        log: Vec<String>,
    }
    impl Script {
        fn recv(&mut self, now: Instant, msgs: &[Message<'_>]) {
            let bytes = frames(msgs);
            match feed(&mut self.conn, now, &bytes) {
                Ok(events) => self
                    .log
                    .extend(events.into_iter().map(|e| format!("<- {e}"))),
                Err(r) => self.log.push(format!("closed: {r}")),
            }
            self.flush();
        }
        fn flush(&mut self) {
            for m in sent(&mut self.conn) {
                self.log.push(format!("-> {m}"));
            }
        }
        fn timer(&mut self, now: Instant) {
            let line = match self.conn.handle_timeout(now) {
                Ok(Some(ev)) => format!("timer {now:?}: {ev}"),
                Ok(None) => format!("timer {now:?}: nothing due"),
                Err(r) => format!("timer {now:?}: closed: {r}"),
            };
            self.log.push(line);
            self.flush();
        }
    }
    let mut conn = PeerConn::new_outgoing(config(OUR_ID, BOTH), torrent(), Some(PEER_IP), at(0));
    sent(&mut conn);
    let lt_id = *b"-LT2090-abcdefghijkl";
    let events = feed(&mut conn, at(0), &handshake(BOTH, HASH, lt_id)).unwrap();
    let mut s = Script {
        conn,
        log: events.into_iter().map(|e| format!("<- {e}")).collect(),
    };
    s.flush();
    let b = |i, begin| block(i, begin, 16384);
    s.recv(
        at(1),
        &[
            Message::Extended {
                id: 0,
                payload: b"d1:md11:ut_metadatai2ee4:reqqi500e1:v16:libtorrent 2.0.9e",
            },
            Message::Bitfield(&[0xf8, 0x00]),
            Message::AllowedFast(7),
            Message::Unchoke,
        ],
    );
    let mut ours = Bitfield::new(10);
    ours.set(8);
    s.conn.send_bitfield(at(1), &ours).unwrap();
    s.conn.send_interested(at(1)).unwrap();
    let slots = s.conn.request_slots(at(1));
    s.log.push(format!("request slots: {slots}"));
    for r in [b(0, 0), b(0, 16384), b(1, 0), b(1, 16384)] {
        s.conn.send_request(at(1), r).unwrap();
    }
    s.flush();
    s.recv(
        ms(1200),
        &[
            Message::Piece {
                index: 0,
                begin: 0,
                data: &[0; 16384],
            },
            Message::Reject(b(0, 16384)),
            Message::Have(5),
            Message::Suggest(5),
            Message::Choke,
            Message::Piece {
                index: 1,
                begin: 0,
                data: &[0; 16384],
            },
        ],
    );
    s.conn.send_cancel(ms(1300), b(1, 16384)).unwrap();
    s.flush();
    s.recv(
        ms(1400),
        &[
            Message::Reject(b(1, 16384)),
            Message::Interested,
            Message::Request(b(8, 0)),
        ],
    );
    s.conn.send_unchoke(ms(1500)).unwrap();
    s.flush();
    s.recv(
        ms(1600),
        &[Message::Request(b(8, 0)), Message::Request(b(8, 16384))],
    );
    s.recv(ms(1700), &[Message::Cancel(b(8, 16384))]);
    let up = s.conn.poll_upload().unwrap();
    s.conn
        .send_block(ms(1800), up, Bytes::from_static(&[9; 16384]))
        .unwrap();
    s.flush();
    s.conn.send_request(at(2), b(7, 0)).unwrap();
    s.flush();
    s.recv(
        at(3),
        &[
            Message::Unknown {
                id: 99,
                payload: b"hi",
            },
            Message::KeepAlive,
        ],
    );
    let next = s.conn.next_deadline().unwrap();
    s.log.push(format!(
        "next deadline {next:?} (request timeout {:?})",
        s.conn.request_timeout()
    ));
    s.timer(next);
    s.timer(at(142));
    s.recv(at(130), &[Message::Have(900)]);
    insta::assert_snapshot!(s.log.join("\n"));
}
