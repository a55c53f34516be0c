//! `session`: one whole `Session` — a leecher of an 8-piece torrent with two pieces on disk and
//! an HTTP tracker — driven by a sequence of operations decoded with `arbitrary`: up to four
//! fake peers connect, handshake (right or wrong torrent, with or without the fast extension),
//! send any message or raw bytes, and leave; time passes; the disk answers reads, writes and
//! hash checks (sometimes failing); the tracker answers with arbitrary bodies or fails.
//!
//! After every input the harness drains the session as the drain contract says and asserts:
//! no panic and no `SessionError` (the harness never misuses the API); the session's own
//! invariants hold (`Session::check_invariants`: picker, pending writes and verifications,
//! connection bookkeeping); the deadline is never in the past; at most `MAX_CONNS` connections.
//! It also keeps a small reference model of each fake peer, built only from what that peer
//! said and what the session sent it, and checks the session against it: every request goes to
//! a peer that announced the piece, that is not choking us (BEP 3), and never asks for a block
//! that is already outstanding at that same peer; a block the peer sends is written only if it
//! was requested.

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use hive_core::announce::{FailureKind, RequestId};
use hive_core::bitfield::Bitfield;
use hive_core::create::{Content, TorrentBuilder};
use hive_core::metainfo::Metainfo;
use hive_core::piece_hash::hash_piece;
use hive_core::rng::Rng;
use hive_core::session::{ConnId, Input, Output, Session, SessionConfig, TorrentId};
use hive_core::time::Instant;
use hive_core::wire::{
    BlockRequest, FrameDecoder, Handshake, HandshakeDecoder, HandshakeEvent, Message, Reserved,
};

const PIECE: u32 = 32 * 1024;
const BLOCK: u32 = 16 * 1024;
/// 7 whole pieces and a short last one of 10,000 bytes (a single, short block).
const TOTAL: u64 = 7 * PIECE as u64 + 10_000;
const PIECES: u32 = 8;
/// Pieces 0 and 1 are on disk at the start, so peers can ask for them.
const ON_DISK: [u32; 2] = [0, 1];
const PEERS: usize = 4;
const MAX_CONNS: usize = 3;
const MAX_OPS: usize = 300;

/// One thing that happens to the session.
#[derive(Arbitrary, Debug)]
enum Op {
    Connect(u8),
    Handshake {
        peer: u8,
        right_torrent: bool,
        fast: bool,
    },
    Send {
        peer: u8,
        msg: Msg,
    },
    Raw {
        peer: u8,
        bytes: Vec<u8>,
    },
    Close(u8),
    Advance(u16),
    Disk {
        fail: u8,
    },
    Tracker {
        fail: bool,
        body: Vec<u8>,
    },
}

/// A message a fake peer sends (well formed; `Raw` covers the rest).
#[derive(Arbitrary, Debug)]
enum Msg {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u8),
    Bitfield(u8),
    HaveAll,
    HaveNone,
    Request { piece: u8, block: u8 },
    Piece { piece: u8, block: u8, good: bool },
    Cancel { piece: u8, block: u8 },
    Reject { piece: u8, block: u8 },
    AllowedFast(u8),
    Suggest(u8),
}

/// What the harness knows of one fake peer's connection.
struct Fake {
    conn: ConnId,
    fast: bool,
    handshake: HandshakeDecoder,
    got_handshake: bool,
    frames: FrameDecoder,
    /// Pieces this peer announced (only grows: a conservative model).
    has: BTreeSet<u32>,
    has_all: bool,
    /// This peer chokes the session (BEP 3: connections start choked).
    choking: bool,
    /// Blocks the session asked this peer for and has not cancelled or got.
    outstanding: BTreeSet<(u32, u32)>,
}

struct Harness {
    session: Session,
    torrent: TorrentId,
    now: Instant,
    fakes: [Option<Fake>; PEERS],
    disk: VecDeque<Output>,
    announces: VecDeque<RequestId>,
    connect_failures: Vec<ConnId>,
    /// Pieces with a written block whose bytes differ from the payload.
    bad: BTreeSet<u32>,
    /// Counts deliveries and transmits, to alternate between the borrowed and the shared
    /// (chunked) forms of `Received` and `poll_transmit` without changing the input format.
    turns: usize,
}

fn payload() -> &'static [u8] {
    static PAYLOAD: OnceLock<Vec<u8>> = OnceLock::new();
    PAYLOAD.get_or_init(|| {
        let mut v = vec![0u8; TOTAL as usize];
        Rng::new(1).fill_bytes(&mut v);
        v
    })
}

fn metainfo() -> &'static Metainfo {
    static META: OnceLock<Metainfo> = OnceLock::new();
    META.get_or_init(|| {
        let pieces: Vec<u8> = payload()
            .chunks(PIECE as usize)
            .flat_map(hash_piece)
            .collect();
        let built = TorrentBuilder::new(
            "fuzz.bin",
            Content::SingleFile { length: TOTAL },
            Some(u64::from(PIECE)),
        )
        .and_then(|b| {
            b.trackers(vec![vec!["http://t.example/announce".into()]])
                .creation_date(Some(0))
                .build(&pieces)
        })
        .expect("the fuzz torrent builds");
        Metainfo::from_bytes(&built.bytes).expect("the fuzz torrent loads")
    })
}

/// Block `block` of `piece` (the fuzzer's small numbers folded into range; the last piece's
/// second block does not exist and makes a hostile message).
fn block_of(piece: u8, block: u8) -> BlockRequest {
    let index = u32::from(piece) % PIECES;
    let begin = u32::from(block % 2) * BLOCK;
    let size = if index == PIECES - 1 { 10_000 } else { PIECE };
    BlockRequest {
        index,
        begin,
        length: size.saturating_sub(begin).clamp(1, BLOCK),
    }
}

fn block_bytes(b: BlockRequest) -> Option<&'static [u8]> {
    let start = b.index as usize * PIECE as usize + b.begin as usize;
    payload().get(start..start + b.length as usize)
}

fn frame(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.encoded_len());
    msg.encode(&mut out).expect("a fuzz message encodes");
    out
}

impl Harness {
    fn new() -> Harness {
        let config = SessionConfig {
            max_connections: MAX_CONNS,
            max_connections_per_torrent: MAX_CONNS,
            stats_interval: Duration::from_secs(5),
            ..SessionConfig::default()
        };
        let mut session = Session::new(config, 7, Instant::ZERO);
        let mut on_disk = Bitfield::new(PIECES);
        for p in ON_DISK {
            on_disk.set(p);
        }
        let torrent = session
            .add_torrent(Instant::ZERO, metainfo().clone(), Some(&on_disk))
            .expect("a valid torrent is added");
        let mut h = Harness {
            session,
            torrent,
            now: Instant::ZERO,
            fakes: Default::default(),
            disk: VecDeque::new(),
            announces: VecDeque::new(),
            connect_failures: Vec::new(),
            bad: BTreeSet::new(),
            turns: 0,
        };
        h.drain();
        h
    }

    fn input(&mut self, input: Input<'_>) {
        if let Err(e) = self.session.handle_input(self.now, input) {
            panic!("the session refused a well-formed input: {e}");
        }
        self.drain();
    }

    /// Drains outputs (answering connects at once), then checks the invariants.
    fn drain(&mut self) {
        loop {
            match self.session.poll_output() {
                Output::Timeout(t) => {
                    assert!(t >= self.now, "deadline {t:?} is before now {:?}", self.now);
                    break;
                }
                Output::Transmit(conn) => {
                    self.turns += 1;
                    let buf = if self.turns % 2 == 0 {
                        let mut buf = Vec::new();
                        self.session.poll_transmit(conn, &mut buf);
                        buf
                    } else {
                        let (mut ctrl, mut blocks) = (Vec::new(), Vec::new());
                        self.session
                            .poll_transmit_parts(conn, &mut ctrl, &mut blocks);
                        let mut buf = Vec::new();
                        let mut prev = 0;
                        for (at, block) in blocks {
                            buf.extend_from_slice(&ctrl[prev..at]);
                            buf.extend_from_slice(&block);
                            prev = at;
                        }
                        buf.extend_from_slice(&ctrl[prev..]);
                        buf
                    };
                    self.observe(conn, &buf);
                }
                Output::Close { conn, .. } => self.forget(conn),
                Output::Connect { conn, .. } => self.connect_failures.push(conn),
                Output::HttpAnnounce { request, .. } => {
                    if self.announces.len() < 16 {
                        self.announces.push_back(request);
                    }
                }
                out @ (Output::ReadBlock { .. }
                | Output::WriteBlock { .. }
                | Output::VerifyPiece { .. }) => self.disk.push_back(out),
                Output::UdpSend { .. } | Output::Event(_) => {}
            }
        }
        if let Err(e) = self.session.check_invariants() {
            panic!("session invariant broken: {e}");
        }
        assert!(self.session.connection_count() <= MAX_CONNS);
        if let Some(conn) = self.connect_failures.pop() {
            self.input(Input::ConnectFailed(conn));
        }
    }

    fn fake_index(&self, conn: ConnId) -> Option<usize> {
        self.fakes
            .iter()
            .position(|f| f.as_ref().is_some_and(|f| f.conn == conn))
    }

    fn forget(&mut self, conn: ConnId) {
        if let Some(i) = self.fake_index(conn) {
            self.fakes[i] = None;
        }
    }

    /// Bytes the session sent to a fake peer: checked against the reference model.
    fn observe(&mut self, conn: ConnId, mut bytes: &[u8]) {
        let Some(i) = self.fake_index(conn) else {
            return;
        };
        let Some(fake) = self.fakes[i].as_mut() else {
            return;
        };
        while !fake.got_handshake {
            match fake.handshake.decode(&mut bytes) {
                Ok(Some(HandshakeEvent::Complete(_))) => fake.got_handshake = true,
                Ok(Some(HandshakeEvent::InfoHash { .. })) => {}
                Ok(None) => return,
                Err(e) => panic!("the session sent a bad handshake: {e}"),
            }
        }
        while let Some(msg) = fake
            .frames
            .decode(&mut bytes)
            .unwrap_or_else(|e| panic!("the session sent a bad frame: {e}"))
        {
            match msg {
                Message::Request(b) => {
                    assert!(
                        fake.has_all || fake.has.contains(&b.index),
                        "requested piece {} from a peer that never announced it",
                        b.index
                    );
                    assert!(
                        !fake.choking,
                        "requested {b:?} from a peer that chokes us (no allowed-fast use)"
                    );
                    assert!(
                        fake.outstanding.insert((b.index, b.begin)),
                        "requested {b:?} twice from the same peer"
                    );
                }
                Message::Cancel(b) => {
                    fake.outstanding.remove(&(b.index, b.begin));
                }
                _ => {}
            }
        }
    }

    fn send(&mut self, peer: usize, bytes: &[u8]) {
        let Some(conn) = self.fakes[peer].as_ref().map(|f| f.conn) else {
            return;
        };
        self.turns += 1;
        if self.turns % 2 == 0 {
            self.input(Input::Received(conn, bytes));
        } else {
            // The same bytes as shared chunks, cut at a point that moves from turn to turn.
            let at = self.turns % (bytes.len() + 1);
            let (a, b) = bytes.split_at(at);
            let chunks = [Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)];
            self.input(Input::ReceivedChunks(conn, &chunks));
        }
    }

    fn op(&mut self, op: Op) {
        match op {
            Op::Connect(p) => {
                let p = usize::from(p) % PEERS;
                if let Some(old) = self.fakes[p].take() {
                    self.input(Input::Closed(old.conn));
                }
                let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, p as u8 + 1)), 6881);
                if let Ok(conn) = self.session.accept(self.now, addr) {
                    self.fakes[p] = Some(Fake {
                        conn,
                        fast: false,
                        handshake: HandshakeDecoder::new(),
                        got_handshake: false,
                        frames: FrameDecoder::default(),
                        has: BTreeSet::new(),
                        has_all: false,
                        choking: true,
                        outstanding: BTreeSet::new(),
                    });
                }
                self.drain();
            }
            Op::Handshake {
                peer,
                right_torrent,
                fast,
            } => {
                let p = usize::from(peer) % PEERS;
                let Some(fake) = self.fakes[p].as_mut() else {
                    return;
                };
                fake.fast = fast;
                let mut reserved = Reserved::EXTENSION_PROTOCOL;
                reserved.set(Reserved::FAST, fast);
                let info_hash = if right_torrent {
                    *metainfo().info_hash().as_bytes()
                } else {
                    [0xee; 20]
                };
                let mut peer_id = *b"-FZ0001-fuzzpeer000_";
                peer_id[19] = b'0' + p as u8;
                let hs = Handshake {
                    reserved,
                    info_hash,
                    peer_id,
                }
                .to_bytes();
                self.send(p, &hs);
            }
            Op::Send { peer, msg } => {
                let p = usize::from(peer) % PEERS;
                self.send_msg(p, msg);
            }
            Op::Raw { peer, bytes } => {
                let p = usize::from(peer) % PEERS;
                // Raw bytes may say anything: the model can no longer tell what the peer
                // announced or answered, so this peer's later requests are not checked.
                if let Some(f) = self.fakes[p].as_mut() {
                    f.has_all = true;
                    f.choking = false;
                    f.outstanding.clear();
                }
                self.send(p, &bytes);
                if let Some(f) = self.fakes[p].as_mut() {
                    f.outstanding.clear();
                }
            }
            Op::Close(p) => {
                let p = usize::from(p) % PEERS;
                if let Some(old) = self.fakes[p].take() {
                    self.input(Input::Closed(old.conn));
                }
            }
            Op::Advance(ms) => {
                self.now = self.now + Duration::from_millis(u64::from(ms) * 20);
                self.input(Input::Timeout);
            }
            Op::Disk { fail } => self.answer_disk(fail == u8::MAX),
            Op::Tracker { fail, body } => {
                let Some(request) = self.announces.pop_front() else {
                    return;
                };
                let torrent = self.torrent;
                if fail {
                    self.input(Input::TrackerFailed {
                        torrent,
                        request,
                        kind: FailureKind::Timeout,
                    });
                } else {
                    self.input(Input::TrackerResponse {
                        torrent,
                        request,
                        body: &body,
                    });
                }
            }
        }
    }

    fn send_msg(&mut self, p: usize, msg: Msg) {
        let Some(fake) = self.fakes[p].as_mut() else {
            return;
        };
        let bytes = match msg {
            Msg::KeepAlive => frame(&Message::KeepAlive),
            Msg::Choke => {
                fake.choking = true;
                if !fake.fast {
                    // BEP 3: a choke discards every request; BEP 6 keeps them until answered.
                    fake.outstanding.clear();
                }
                frame(&Message::Choke)
            }
            Msg::Unchoke => {
                fake.choking = false;
                frame(&Message::Unchoke)
            }
            Msg::Interested => frame(&Message::Interested),
            Msg::NotInterested => frame(&Message::NotInterested),
            Msg::Have(i) => {
                let i = u32::from(i) % PIECES;
                fake.has.insert(i);
                frame(&Message::Have(i))
            }
            Msg::Bitfield(mask) => {
                fake.has
                    .extend((0..PIECES).filter(|i| mask & (0x80 >> i) != 0));
                frame(&Message::Bitfield(&[mask]))
            }
            Msg::HaveAll => {
                if fake.fast {
                    fake.has_all = true;
                }
                frame(&Message::HaveAll)
            }
            Msg::HaveNone => frame(&Message::HaveNone),
            Msg::Request { piece, block } => frame(&Message::Request(block_of(piece, block))),
            Msg::Piece { piece, block, good } => {
                let b = block_of(piece, block);
                fake.outstanding.remove(&(b.index, b.begin));
                let mut data = block_bytes(b).map(<[u8]>::to_vec).unwrap_or_default();
                if !good {
                    for byte in &mut data {
                        *byte ^= 0x33;
                    }
                }
                if data.is_empty() {
                    data.push(0);
                }
                frame(&Message::Piece {
                    index: b.index,
                    begin: b.begin,
                    data: &data,
                })
            }
            Msg::Cancel { piece, block } => frame(&Message::Cancel(block_of(piece, block))),
            Msg::Reject { piece, block } => {
                let b = block_of(piece, block);
                if fake.fast {
                    fake.outstanding.remove(&(b.index, b.begin));
                }
                frame(&Message::Reject(b))
            }
            Msg::AllowedFast(i) => frame(&Message::AllowedFast(u32::from(i) % PIECES)),
            Msg::Suggest(i) => frame(&Message::Suggest(u32::from(i) % PIECES)),
        };
        self.send(p, &bytes);
    }

    fn answer_disk(&mut self, fail: bool) {
        let Some(out) = self.disk.pop_front() else {
            return;
        };
        let torrent = self.torrent;
        match out {
            Output::ReadBlock { conn, block, .. } => {
                let data = match block_bytes(block) {
                    Some(bytes) if !fail => Ok(Bytes::from_static(bytes)),
                    _ => Err("input/output error".to_owned()),
                };
                self.input(Input::BlockRead {
                    conn,
                    torrent,
                    block,
                    data,
                });
            }
            Output::WriteBlock { block, data, .. } => {
                if block_bytes(block) != Some(&data[..]) {
                    self.bad.insert(block.index);
                }
                let result = if fail {
                    Err("no space left on device".to_owned())
                } else {
                    Ok(())
                };
                self.input(Input::BlockWritten {
                    torrent,
                    block,
                    result,
                });
            }
            Output::VerifyPiece { piece, .. } => {
                // A piece is good iff every block written for it was the payload's.
                let ok = !self.bad.remove(&piece);
                self.input(Input::PieceVerified { torrent, piece, ok });
            }
            _ => {}
        }
    }
}

/// Runs the operations decoded from `data` against a fresh session.
pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut h = Harness::new();
    let mut ops = 0;
    while !u.is_empty() && ops < MAX_OPS {
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        h.op(op);
        ops += 1;
    }
    // Whatever happened, time passing and the disk catching up leave a consistent session.
    for _ in 0..8 {
        h.answer_disk(false);
    }
    h.now = h.now + Duration::from_secs(600);
    h.input(Input::Timeout);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model is not vacuous: a scripted exchange makes the session request blocks from a
    /// fake peer, fetch them, verify the piece and serve what it has.
    #[test]
    fn a_scripted_exchange_reaches_requests_and_verification() {
        let mut h = Harness::new();
        h.op(Op::Connect(0));
        h.op(Op::Handshake {
            peer: 0,
            right_torrent: true,
            fast: true,
        });
        h.op(Op::Send {
            peer: 0,
            msg: Msg::HaveAll,
        });
        h.op(Op::Send {
            peer: 0,
            msg: Msg::Unchoke,
        });
        let asked = h.fakes[0].as_ref().unwrap().outstanding.clone();
        assert!(!asked.is_empty(), "the session requested nothing");
        for (index, begin) in asked {
            let (piece, block) = (index as u8, (begin / BLOCK) as u8);
            h.op(Op::Send {
                peer: 0,
                msg: Msg::Piece {
                    piece,
                    block,
                    good: true,
                },
            });
        }
        while !h.disk.is_empty() {
            h.answer_disk(false);
        }
        assert!(h.session.have(h.torrent).unwrap().count_ones() > ON_DISK.len() as u32);
        // A peer asking for a piece we have is served from disk.
        h.op(Op::Send {
            peer: 0,
            msg: Msg::Interested,
        });
        h.op(Op::Send {
            peer: 0,
            msg: Msg::Request { piece: 0, block: 0 },
        });
        assert!(
            h.disk
                .iter()
                .any(|o| matches!(o, Output::ReadBlock { block, .. } if block.index == 0)),
            "no disk read for a request: {:?}",
            h.disk
        );
    }
}
