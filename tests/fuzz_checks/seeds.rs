//! The seed corpora committed under `fuzz/corpus/<target>/`, built here so that they can be
//! regenerated and checked: `HIVE_WRITE_SEEDS=1 cargo test -p hive-tests --test fuzz_corpus`
//! writes them, and the same test without the variable fails when a committed seed differs.
//!
//! Torrents are copied from `shared/vectors/` (every file up to [`MAX_VECTOR_BYTES`], for both
//! `bencode` and `metainfo`); wire streams, tracker replies and UDP packets are built with
//! Hive's own encoders; the announcer's seeds are pseudo-random bytes (its input is decoded
//! with `arbitrary`, so any bytes make a valid operation sequence).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hive_core::bencode::OwnedValue;
use hive_core::rng::Rng;
use hive_core::tracker::udp::{
    self, AnnounceRequest, ConnectRequest, ConnectResponse, ErrorResponse,
};
use hive_core::tracker::{self, AddressFamily, Event, ScrapeStats};
use hive_core::wire::{BlockRequest, Handshake, Message, Reserved};

use super::chunks;

/// Largest vector torrent copied into the corpora (the largest few are skipped so that all
/// corpora together stay well under 2 MB).
pub const MAX_VECTOR_BYTES: u64 = 64 * 1024;

/// One seed file.
#[derive(Clone, Debug)]
pub struct Seed {
    /// The target (its corpus folder).
    pub target: &'static str,
    /// The file name in that folder.
    pub name: String,
    /// The contents.
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed {
        target,
        name: name.into(),
        bytes: bytes.into(),
    }
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    out.extend(torrents());
    out.extend(bencode());
    out.extend(magnets());
    out.extend(wire());
    out.extend(handshakes());
    out.extend(extension_handshakes());
    out.extend(tracker_http());
    out.extend(tracker_udp());
    out.extend(announcer());
    out
}

/// The vector torrents, for `bencode` and `metainfo`.
fn torrents() -> Vec<Seed> {
    let root = crate::shared_dir().join("vectors");
    let mut files = Vec::new();
    for client in ["libtorrent", "transmission"] {
        let dir = root.join(client);
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("readable vectors").path();
            let is_torrent = path.extension().is_some_and(|e| e == "torrent");
            let small = fs::metadata(&path).is_ok_and(|m| m.len() <= MAX_VECTOR_BYTES);
            if is_torrent && small {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("utf-8 name");
                files.push((format!("{client}-{name}"), path));
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for (name, path) in files {
        let bytes = fs::read(&path).expect("readable vector");
        out.push(seed("bencode", name.clone(), bytes.clone()));
        out.push(seed("metainfo", name, bytes));
    }
    out
}

fn bencode() -> Vec<Seed> {
    let deep = [vec![b'l'; 100], vec![b'e'; 100]].concat();
    let cases: [(&str, &[u8]); 9] = [
        ("int", b"i42e"),
        ("int-min", b"i-9223372036854775808e"),
        ("int-u64", b"i18446744073709551615e"),
        ("leading-zero", b"li03e03:abce"),
        ("unsorted", b"d1:bi1e1:ai2ee"),
        ("duplicate", b"d1:ai1e1:ai2ee"),
        ("nested", b"d4:listli1e4:spamd0:leee3:numi-7ee"),
        ("trailing", b"de\n"),
        ("deep-100", &deep),
    ];
    cases
        .iter()
        .map(|(n, b)| seed("bencode", format!("seed-{n}"), *b))
        .collect()
}

fn magnets() -> Vec<Seed> {
    let vector =
        crate::shared_dir().join("vectors/transmission/archlinux-2025.05.01-x86_64.iso.magnet");
    let arch = fs::read(&vector).expect("the vector magnet link");
    let links = [
        (
            "hex-all-params",
            "magnet:?xt=urn:btih:2E34989B1C60DF821B2D046C884D8F4D1858B97A&dn=Some+Name%20here&tr=http%3A%2F%2Ft.example%2Fannounce%3Fpasskey%3Da%2Bb&tr=udp://u.example:6969&ws=https://w.example/f&x.pe=1.2.3.4:6881&x.pe=[2001:db8::1]:51413&x.pe=peer.example:1",
        ),
        (
            "base32",
            "magnet:?xt=urn:btih:FY2JRGY4MDPYEGZNARWIRTMPJUMFROL2&dn=b32",
        ),
        (
            "hybrid",
            "magnet:?xt=urn:btih:2e34989b1c60df821b2d046c884d8f4d1858b97a&xt=urn:btmh:1220d2474e86c95b19b8bcfdb92bc12c9d44667cfa36d2474e86c95b19b8bcfdb92b",
        ),
        (
            "v2-only",
            "magnet:?xt=urn:btmh:1220d2474e86c95b19b8bcfdb92bc12c9d44667cfa36d2474e86c95b19b8bcfdb92b&dn=v2",
        ),
        (
            "conflict",
            "magnet:?xt=urn:btih:2e34989b1c60df821b2d046c884d8f4d1858b97a&xt=urn:btih:0000000000000000000000000000000000000000",
        ),
        (
            "odd-escapes",
            "MAGNET:?XT=urn:BTIH:2e34989b1c60df821b2d046c884d8f4d1858b97a&DN=%zz%4&tr=&tr=%00&x.pe=::1:80&x.pe=h:0&unknown=1&&=",
        ),
    ];
    let mut out = vec![seed("magnet", "transmission-archlinux.magnet", arch)];
    out.extend(
        links
            .iter()
            .map(|(n, l)| seed("magnet", format!("seed-{n}"), *l)),
    );
    out
}

/// Every message type once, in a plausible order.
fn every_message() -> Vec<u8> {
    let block = BlockRequest {
        index: 1,
        begin: 16384,
        length: 16384,
    };
    let ext_handshake = OwnedValue::Dict(
        [
            (
                b"m".to_vec(),
                OwnedValue::Dict([(b"ut_metadata".to_vec(), OwnedValue::Int(3))].into()),
            ),
            (b"v".to_vec(), OwnedValue::str("Hive 0.1")),
        ]
        .into(),
    )
    .to_bytes();
    let data = vec![0x5a; 64];
    let messages = [
        Message::Bitfield(&[0xff, 0x80]),
        Message::HaveAll,
        Message::HaveNone,
        Message::Extended {
            id: 0,
            payload: &ext_handshake,
        },
        Message::Port(6881),
        Message::Unchoke,
        Message::Interested,
        Message::AllowedFast(7),
        Message::Suggest(3),
        Message::Request(block),
        Message::Piece {
            index: 1,
            begin: 16384,
            data: &data,
        },
        Message::Cancel(block),
        Message::Reject(block),
        Message::Have(9),
        Message::KeepAlive,
        Message::NotInterested,
        Message::Choke,
        Message::Unknown {
            id: 42,
            payload: b"??",
        },
    ];
    let mut out = Vec::new();
    for m in messages {
        m.encode(&mut out).expect("encodes");
    }
    out
}

fn wire() -> Vec<Seed> {
    let stream = every_message();
    let mut big_piece = Vec::new();
    let block = vec![7u8; 16 * 1024];
    Message::Piece {
        index: 0,
        begin: 0,
        data: &block,
    }
    .encode(&mut big_piece)
    .expect("encodes");
    let mut bad = every_message();
    bad.extend_from_slice(&[0, 0, 0, 3, 4, 0, 0]); // a have of the wrong length
    let mut too_long = Vec::new();
    Message::Interested.encode(&mut too_long).expect("encodes");
    too_long.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut partial = every_message();
    partial.extend_from_slice(&[0, 0, 0, 13, 6, 0, 0]); // a request cut short
    vec![
        seed(
            "wire_frames",
            "seed-every-message-whole",
            chunks::join(0, &[], &stream),
        ),
        seed(
            "wire_frames",
            "seed-every-message-chunked",
            chunks::join(0, &[1, 3, 0, 7, 64], &stream),
        ),
        seed(
            "wire_frames",
            "seed-every-message-tiny-limits",
            chunks::join(3, &[5, 2], &stream),
        ),
        seed(
            "wire_frames",
            "seed-every-message-exact-bitfield",
            chunks::join(2, &[17], &stream),
        ),
        seed(
            "wire_frames",
            "seed-piece-16k",
            chunks::join(0, &[200, 255, 13], &big_piece),
        ),
        seed(
            "wire_frames",
            "seed-wrong-length",
            chunks::join(0, &[4, 1], &bad),
        ),
        seed(
            "wire_frames",
            "seed-frame-too-long",
            chunks::join(0, &[2], &too_long),
        ),
        seed(
            "wire_frames",
            "seed-partial-frame",
            chunks::join(1, &[9], &partial),
        ),
    ]
}

fn handshakes() -> Vec<Seed> {
    let h = Handshake {
        reserved: Reserved::DHT | Reserved::FAST | Reserved::EXTENSION_PROTOCOL,
        info_hash: [0x2e; 20],
        peer_id: *b"-TR3000-0123456789ab",
    };
    let mut with_frames = h.to_bytes().to_vec();
    with_frames.extend_from_slice(&every_message());
    let mut bad = h.to_bytes().to_vec();
    bad[5] = b'x';
    vec![
        seed(
            "handshake",
            "seed-with-frames",
            chunks::join(0, &[], &with_frames),
        ),
        seed(
            "handshake",
            "seed-with-frames-chunked",
            chunks::join(0, &[1, 47, 20, 3], &with_frames),
        ),
        seed(
            "handshake",
            "seed-prefix-only",
            chunks::join(0, &[30], &h.to_bytes()[..48]),
        ),
        seed(
            "handshake",
            "seed-bad-protocol",
            chunks::join(0, &[3], &bad),
        ),
    ]
}

/// Extension handshakes (BEP 10) shaped like real clients' (key sets and orders as they send
/// them), plus a few the decoder must tolerate: unsorted keys, wrong types, a disabled name.
fn extension_handshakes() -> Vec<Seed> {
    let cases: [(&str, &[u8]); 7] = [
        (
            "libtorrent",
            b"d1:md11:ut_metadatai2e6:ut_pexi1e12:ut_holepunchi4ee13:metadata_sizei31235e\
              1:pi6881e4:reqqi500e11:upload_onlyi0e1:v17:libtorrent/2.0.96:yourip4:\x7f\x00\x00\x01e",
        ),
        (
            "transmission",
            b"d1:ei0e4:ipv416:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\
              12:complete_agoi-1e1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei4321e\
              1:pi51413e4:reqqi512e1:v17:Transmission 3.006:yourip4:\x7f\x00\x00\x01e",
        ),
        (
            "unsorted-keys",
            b"d1:v4:Hive1:md6:ut_pexi0e11:ut_metadatai1ee1:pi6881ee",
        ),
        (
            "wrong-types",
            b"d1:mi5e1:pi70000e4:reqqi-3e1:vi7e6:yourip3:abc13:metadata_sizei0ee",
        ),
        ("empty", b"de"),
        ("trailing-bytes", b"d1:md6:ut_pexi2eee-trailing"),
        ("not-a-dict", b"li1ei2ee"),
    ];
    cases
        .into_iter()
        .map(|(name, bytes)| seed("extension_handshake", format!("seed-{name}"), bytes))
        .collect()
}

fn dict(pairs: Vec<(&str, OwnedValue)>) -> OwnedValue {
    OwnedValue::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

fn tracker_http() -> Vec<Seed> {
    let v4: Vec<SocketAddr> = vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 6881),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 51413),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 6881),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 1),
    ];
    let v6: Vec<SocketAddr> = vec![
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            6881,
        ),
        SocketAddr::new(IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped()), 80),
    ];
    let mut compact = Vec::new();
    tracker::write_compact_peers(&mut compact, v4.iter().copied(), AddressFamily::V4);
    let mut compact6 = Vec::new();
    tracker::write_compact_peers(&mut compact6, v6.iter().copied(), AddressFamily::V6);
    let peer = |ip: &str, port: i64| {
        dict(vec![
            ("ip", OwnedValue::str(ip)),
            ("peer id", OwnedValue::Bytes(vec![b'p'; 20])),
            ("port", OwnedValue::Int(port)),
        ])
    };
    let replies = [
        (
            "compact",
            dict(vec![
                ("complete", OwnedValue::Int(5)),
                ("incomplete", OwnedValue::Int(12)),
                ("interval", OwnedValue::Int(1800)),
                ("min interval", OwnedValue::Int(900)),
                ("peers", OwnedValue::Bytes(compact.clone())),
            ]),
        ),
        (
            "dict-peers",
            dict(vec![
                ("interval", OwnedValue::Int(30)),
                (
                    "peers",
                    OwnedValue::List(vec![
                        peer("10.1.2.3", 6881),
                        peer("[2001:db8::2]", 6882),
                        peer("tracker.example", 1),
                        peer("10.1.2.4", 70000),
                        OwnedValue::Int(3),
                    ]),
                ),
            ]),
        ),
        (
            "peers6",
            dict(vec![
                ("interval", OwnedValue::Int(999_999)),
                ("peers", OwnedValue::Bytes(compact[..8].to_vec())),
                ("peers6", OwnedValue::Bytes(compact6.clone())),
                ("tracker id", OwnedValue::str("abc123")),
                (
                    "warning message",
                    OwnedValue::Bytes(b"slow \xff down".to_vec()),
                ),
            ]),
        ),
        (
            "failure",
            dict(vec![(
                "failure reason",
                OwnedValue::str("unregistered torrent"),
            )]),
        ),
        (
            "scrape",
            dict(vec![(
                "files",
                OwnedValue::Dict(
                    [
                        (
                            vec![0xaa; 20],
                            dict(vec![
                                ("complete", OwnedValue::Int(3)),
                                ("downloaded", OwnedValue::Int(40)),
                                ("incomplete", OwnedValue::Int(-1)),
                            ]),
                        ),
                        (b"short".to_vec(), dict(vec![])),
                    ]
                    .into(),
                ),
            )]),
        ),
    ];
    let mut out: Vec<Seed> = replies
        .iter()
        .map(|(n, v)| seed("tracker_http", format!("seed-{n}"), v.to_bytes()))
        .collect();
    // Real trackers: unsorted keys and a trailing newline.
    out.push(seed(
        "tracker_http",
        "seed-unsorted-newline",
        &b"d8:intervali1800e5:peers6:\x0a\x00\x00\x01\x1a\xe1\x08completei1ee\n"[..],
    ));
    out
}

fn tracker_udp() -> Vec<Seed> {
    let mut packets: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut p = Vec::new();
    ConnectRequest {
        transaction_id: 0x1234_5678,
    }
    .encode(&mut p);
    packets.push(("connect-request", p));
    let mut req = tracker::AnnounceRequest::new([0x11; 20], *b"-HV0001-abcdefghijkl", 6881, 1000);
    req.event = Event::Started;
    req.num_want = Some(50);
    req.key = Some(0xdead_beef);
    let mut p = Vec::new();
    AnnounceRequest::new(0x0417_2710_1980_0001, 7, &req).encode(&mut p);
    packets.push(("announce-request", p.clone()));
    p.extend_from_slice(&[2, 9, b'/', b'a', b'n', b'n', b'o', b'u', b'n', b'c']); // BEP 41
    packets.push(("announce-request-bep41", p));
    let mut p = Vec::new();
    udp::encode_scrape_request(&mut p, 42, 9, &[[1; 20], [2; 20], [3; 20]]).expect("encodes");
    packets.push(("scrape-request", p));
    let mut p = Vec::new();
    ConnectResponse {
        transaction_id: 0x1234_5678,
        connection_id: 0x0102_0304_0506_0708,
    }
    .encode(&mut p);
    packets.push(("connect-response", p));
    let peers = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 6881),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 6882),
    ];
    for (name, family) in [
        ("announce-response-v4", AddressFamily::V4),
        ("announce-response-v6", AddressFamily::V6),
    ] {
        let mut p = Vec::new();
        udp::encode_announce_response(&mut p, 7, 1800, 3, 4, peers, family);
        packets.push((name, p));
    }
    let mut p = Vec::new();
    let stats = ScrapeStats {
        complete: 1,
        downloaded: 2,
        incomplete: 3,
    };
    udp::encode_scrape_response(&mut p, 9, &[stats, stats]);
    packets.push(("scrape-response", p));
    let mut p = Vec::new();
    ErrorResponse {
        transaction_id: 7,
        message: b"connection id mismatch\0",
    }
    .encode(&mut p);
    packets.push(("error-response", p));
    packets
        .into_iter()
        .map(|(n, p)| seed("tracker_udp", format!("seed-{n}"), p))
        .collect()
}

fn announcer() -> Vec<Seed> {
    let mut rng = Rng::new(0x4856_4655_5a5a);
    [64usize, 256, 512, 1024, 2048, 4096]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            seed("announcer", format!("seed-random-{i}-{len}"), bytes)
        })
        .collect()
}
