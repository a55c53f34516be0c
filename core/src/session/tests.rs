//! Session tests on an in-memory network with a virtual clock (quinn's `Pair`, grown to N
//! nodes): every node is a real `Session`; bytes travel through in-memory pipes with a
//! latency, disk requests are answered from each node's own buffer, pieces are verified with
//! real SHA-1. Time jumps to the next event; a step limit turns a livelock into a failure.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;
use std::time::Duration;

use sha1::{Digest, Sha1};

use super::*;
use crate::announce::FailureKind;
use crate::bencode::OwnedValue;
use crate::create::{Content, TorrentBuilder};
use crate::piece_hash::hash_piece;

/// An input owned by the harness until it is delivered.
#[derive(Debug, Clone)]
enum Delivery {
    Connected(ConnId),
    ConnectFailed(ConnId),
    Received(ConnId, Vec<u8>),
    Closed(ConnId),
    BlockRead(ConnId, TorrentId, BlockRequest, Result<Bytes, String>),
    BlockWritten(TorrentId, BlockRequest, Result<(), String>),
    PieceVerified(TorrentId, u32, bool),
    TrackerResponse(TorrentId, crate::announce::RequestId, Vec<u8>),
    TrackerFailed(TorrentId, crate::announce::RequestId, FailureKind),
}

struct Node {
    session: Session,
    addr: SocketAddr,
    torrent: Option<TorrentId>,
    data: Vec<u8>,
    /// Serve flipped bytes (a liar).
    corrupt: bool,
    /// Refuse disk writes (a full disk).
    disk_full: bool,
    /// Accept no incoming connections and answer nothing (vanished).
    dead: bool,
    deadline: Instant,
    events: Vec<Event>,
    complete_at: Option<Instant>,
    /// Bytes served per remote node (by our ReadBlock outputs).
    served_to: BTreeMap<usize, u64>,
    /// Added to the latency of everything this node sends (a slow link).
    extra_latency: Duration,
}

/// The in-memory network.
struct Net {
    nodes: Vec<Node>,
    now: Instant,
    seq: u64,
    queue: BTreeMap<(Instant, u64), (usize, Delivery)>,
    /// (node, conn) -> (node, conn) of the other end.
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    latency: Duration,
    meta: Metainfo,
    payload: Vec<u8>,
    trace: Sha1,
    steps: u64,
    /// Tracker URLs that fail; others answer with every registered node.
    dead_trackers: Vec<String>,
    tracker_hits: BTreeMap<String, u32>,
    announced: Vec<usize>,
    /// Node i's session seed is `seed_base + i`.
    seed_base: u64,
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

fn make_torrent(payload: &[u8], piece_length: u64, trackers: Vec<Vec<String>>) -> Metainfo {
    let pieces: Vec<u8> = payload
        .chunks(piece_length as usize)
        .flat_map(hash_piece)
        .collect();
    let built = TorrentBuilder::new(
        "payload.bin",
        Content::SingleFile {
            length: payload.len() as u64,
        },
        Some(piece_length),
    )
    .unwrap()
    .trackers(trackers)
    .creation_date(Some(0))
    .build(&pieces)
    .unwrap();
    Metainfo::from_bytes(&built.bytes).unwrap()
}

fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7000 + i as u16)
}

impl Net {
    fn new(len: usize, piece_length: u64, trackers: Vec<Vec<String>>) -> Net {
        let payload = payload(len, 99);
        let meta = make_torrent(&payload, piece_length, trackers);
        Net {
            nodes: Vec::new(),
            now: Instant::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            links: BTreeMap::new(),
            latency: Duration::from_millis(20),
            meta,
            payload,
            trace: Sha1::new(),
            steps: 0,
            dead_trackers: Vec::new(),
            tracker_hits: BTreeMap::new(),
            announced: Vec::new(),
            seed_base: 1000,
        }
    }

    /// Adds a node; `seed` nodes start with the whole payload.
    fn add_node(&mut self, seed: bool, config: SessionConfig) -> usize {
        let i = self.nodes.len();
        let mut config = config;
        config.listen_port = addr_of(i).port();
        let mut session = Session::new(config, self.seed_base + i as u64, self.now);
        let have = seed.then(|| Bitfield::full(self.meta.piece_count()));
        let torrent = session
            .add_torrent(self.now, self.meta.clone(), have.as_ref())
            .unwrap();
        let data = if seed {
            self.payload.clone()
        } else {
            vec![0; self.payload.len()]
        };
        self.nodes.push(Node {
            session,
            addr: addr_of(i),
            torrent: Some(torrent),
            data,
            corrupt: false,
            disk_full: false,
            dead: false,
            deadline: Instant::ZERO,
            events: Vec::new(),
            complete_at: seed.then_some(self.now),
            served_to: BTreeMap::new(),
            extra_latency: Duration::ZERO,
        });
        self.drain(i);
        i
    }

    /// Every leecher dials the seed and every leecher before it: a full mesh.
    fn mesh(&mut self, seed: usize, leechers: &[usize]) {
        for &l in leechers {
            self.connect(l, seed);
            for &o in leechers {
                if o < l {
                    self.connect(l, o);
                }
            }
        }
    }

    fn connect(&mut self, from: usize, to: usize) {
        let t = self.nodes[from].torrent.unwrap();
        let addr = self.nodes[to].addr;
        self.nodes[from]
            .session
            .add_peer(self.now, t, addr)
            .unwrap();
        self.drain(from);
    }

    fn push(&mut self, at: Instant, node: usize, d: Delivery) {
        self.seq += 1;
        self.queue.insert((at, self.seq), (node, d));
    }

    fn node_by_addr(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr)
    }

    /// Drains one node's outputs into network and disk events.
    fn drain(&mut self, i: usize) {
        loop {
            let out = self.nodes[i].session.poll_output();
            self.trace.update(format!("{i}:{out:?}\n").as_bytes());
            match out {
                Output::Timeout(t) => {
                    self.nodes[i].deadline = t;
                    return;
                }
                Output::Connect { conn, addr } => {
                    let now = self.now;
                    match self.node_by_addr(addr) {
                        Some(j) if !self.nodes[j].dead => {
                            let from_addr = SocketAddr::new(
                                self.nodes[i].addr.ip(),
                                40000 + (self.seq % 20000) as u16,
                            );
                            match self.nodes[j].session.accept(now, from_addr) {
                                Ok(remote) => {
                                    self.drain(j);
                                    self.links.insert((i, conn), (j, remote));
                                    self.links.insert((j, remote), (i, conn));
                                    self.push(now + self.latency, i, Delivery::Connected(conn));
                                }
                                Err(_) => {
                                    self.push(now + self.latency, i, Delivery::ConnectFailed(conn))
                                }
                            }
                        }
                        _ => self.push(now + self.latency * 10, i, Delivery::ConnectFailed(conn)),
                    }
                }
                Output::Transmit(conn) => {
                    let mut buf = Vec::new();
                    self.nodes[i].session.poll_transmit(conn, &mut buf);
                    if let Some(&(j, remote)) = self.links.get(&(i, conn)) {
                        if !buf.is_empty() && !self.nodes[j].dead {
                            let at = self.now + self.latency + self.nodes[i].extra_latency;
                            self.push(at, j, Delivery::Received(remote, buf));
                        }
                    }
                }
                Output::Close { conn, .. } => {
                    if let Some((j, remote)) = self.links.remove(&(i, conn)) {
                        self.links.remove(&(j, remote));
                        self.push(self.now + self.latency, j, Delivery::Closed(remote));
                    }
                }
                Output::HttpAnnounce {
                    torrent,
                    request,
                    url,
                } => {
                    let base = url.split('?').next().unwrap_or("").to_owned();
                    *self.tracker_hits.entry(base.clone()).or_default() += 1;
                    let at = self.now + self.latency;
                    if self.dead_trackers.contains(&base) {
                        self.push(
                            at,
                            i,
                            Delivery::TrackerFailed(torrent, request, FailureKind::HttpStatus(503)),
                        );
                    } else {
                        if !self.announced.contains(&i) {
                            self.announced.push(i);
                        }
                        let mut compact = Vec::new();
                        for &j in &self.announced {
                            if j != i {
                                if let SocketAddr::V4(a) = self.nodes[j].addr {
                                    compact.extend_from_slice(&a.ip().octets());
                                    compact.extend_from_slice(&a.port().to_be_bytes());
                                }
                            }
                        }
                        let mut d = BTreeMap::new();
                        d.insert(b"interval".to_vec(), OwnedValue::Int(1800));
                        d.insert(b"peers".to_vec(), OwnedValue::Bytes(compact));
                        let body = OwnedValue::Dict(d).to_bytes();
                        self.push(at, i, Delivery::TrackerResponse(torrent, request, body));
                    }
                }
                Output::UdpSend { .. } => {}
                Output::ReadBlock {
                    conn,
                    torrent,
                    block,
                } => {
                    let node = &mut self.nodes[i];
                    let start = block.index as usize * self.meta.piece_length() as usize
                        + block.begin as usize;
                    let mut bytes = node.data[start..start + block.length as usize].to_vec();
                    if node.corrupt {
                        for b in &mut bytes {
                            *b ^= 0x5a;
                        }
                    }
                    if let Some(&(j, _)) = self.links.get(&(i, conn)) {
                        *self.nodes[i].served_to.entry(j).or_default() += block.length as u64;
                    }
                    let now = self.now;
                    self.push(
                        now,
                        i,
                        Delivery::BlockRead(conn, torrent, block, Ok(Bytes::from(bytes))),
                    );
                }
                Output::WriteBlock {
                    torrent,
                    block,
                    data,
                } => {
                    let node = &mut self.nodes[i];
                    let result = if node.disk_full {
                        Err("no space left on device".to_owned())
                    } else {
                        let start = block.index as usize * self.meta.piece_length() as usize
                            + block.begin as usize;
                        node.data[start..start + data.len()].copy_from_slice(&data);
                        Ok(())
                    };
                    let now = self.now;
                    self.push(now, i, Delivery::BlockWritten(torrent, block, result));
                }
                Output::VerifyPiece { torrent, piece } => {
                    let node = &self.nodes[i];
                    let pl = self.meta.piece_length() as usize;
                    let start = piece as usize * pl;
                    let end = (start + pl).min(node.data.len());
                    let ok =
                        hash_piece(&node.data[start..end]) == *self.meta.piece_hash(piece).unwrap();
                    let now = self.now;
                    self.push(now, i, Delivery::PieceVerified(torrent, piece, ok));
                }
                Output::Event(e) => {
                    if matches!(e, Event::TorrentComplete { .. }) {
                        self.nodes[i].complete_at = Some(self.now);
                    }
                    self.nodes[i].events.push(e);
                }
            }
        }
    }

    fn deliver(&mut self, i: usize, d: Delivery) {
        let now = self.now;
        let s = &mut self.nodes[i].session;
        let r = match d {
            Delivery::Connected(c) => s.handle_input(now, Input::Connected(c)),
            Delivery::ConnectFailed(c) => s.handle_input(now, Input::ConnectFailed(c)),
            Delivery::Received(c, bytes) => s.handle_input(now, Input::Received(c, &bytes)),
            Delivery::Closed(c) => {
                self.links.remove(&(i, c));
                s.handle_input(now, Input::Closed(c))
            }
            Delivery::BlockRead(conn, torrent, block, data) => s.handle_input(
                now,
                Input::BlockRead {
                    conn,
                    torrent,
                    block,
                    data,
                },
            ),
            Delivery::BlockWritten(torrent, block, result) => s.handle_input(
                now,
                Input::BlockWritten {
                    torrent,
                    block,
                    result,
                },
            ),
            Delivery::PieceVerified(torrent, piece, ok) => {
                s.handle_input(now, Input::PieceVerified { torrent, piece, ok })
            }
            Delivery::TrackerResponse(torrent, request, body) => s.handle_input(
                now,
                Input::TrackerResponse {
                    torrent,
                    request,
                    body: &body,
                },
            ),
            Delivery::TrackerFailed(torrent, request, kind) => s.handle_input(
                now,
                Input::TrackerFailed {
                    torrent,
                    request,
                    kind,
                },
            ),
        };
        r.unwrap();
        self.drain(i);
        if let Err(e) = self.nodes[i].session.check_invariants() {
            panic!("node {i} at {now:?}: {e}");
        }
    }

    /// One event: the earliest of the queue head and every node's deadline.
    fn step(&mut self) -> bool {
        self.steps += 1;
        let queue_next = self.queue.keys().next().map(|(t, _)| *t);
        let node_next = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.dead)
            .min_by_key(|(_, n)| n.deadline)
            .map(|(i, n)| (i, n.deadline));
        match (queue_next, node_next) {
            (Some(q), Some((_, d))) if q <= d => self.pop_queue(),
            (Some(_), None) => self.pop_queue(),
            (_, Some((i, d))) if d < Instant::MAX => {
                self.now = self.now.max(d);
                let now = self.now;
                self.nodes[i]
                    .session
                    .handle_input(now, Input::Timeout)
                    .unwrap();
                self.drain(i);
            }
            _ => return false,
        }
        true
    }

    fn pop_queue(&mut self) {
        let Some((&(t, seq), _)) = self.queue.iter().next() else {
            return;
        };
        let (i, d) = self.queue.remove(&(t, seq)).unwrap();
        self.now = self.now.max(t);
        if !self.nodes[i].dead {
            self.deliver(i, d);
        }
    }

    /// Runs until `done` or the step limit / time limit (which fail the test).
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) {
        let end = Instant::ZERO + limit;
        while !done(self) {
            assert!(self.steps < 2_000_000, "step limit: livelock?");
            assert!(self.now <= end, "not done after {limit:?} of virtual time");
            if !self.step() {
                panic!("nothing left to do and not done");
            }
        }
    }

    fn all_complete(&self, nodes: &[usize]) -> bool {
        nodes.iter().all(|i| self.nodes[*i].complete_at.is_some())
    }

    fn assert_data(&self, i: usize) {
        assert!(
            self.nodes[i].data == self.payload,
            "node {i} holds different bytes"
        );
    }

    fn stats(&self, i: usize) -> TorrentStats {
        let n = &self.nodes[i];
        n.session.stats(n.torrent.unwrap()).unwrap()
    }

    fn trace_hash(self) -> String {
        self.trace
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Haves go at once here, whatever the default: `Net` links have latency but no bandwidth
/// limit, so a whole torrent crosses in a few round trips, sooner than a have batch would be
/// due (leechers would never hear of each other's pieces). Batching has tests of its own.
fn config() -> SessionConfig {
    let mut c = SessionConfig {
        stats_interval: Duration::ZERO,
        ..SessionConfig::default()
    };
    c.peer.have_batch = Duration::ZERO;
    c
}

#[test]
fn one_seed_one_leecher() {
    let mut net = Net::new(300_000, 32 * 1024, vec![]);
    let seed = net.add_node(true, config());
    let leech = net.add_node(false, config());
    net.connect(leech, seed);
    net.run_until(Duration::from_secs(120), |n| n.all_complete(&[leech]));
    net.assert_data(leech);
    let s = net.stats(leech);
    assert_eq!(s.pieces_have, s.pieces_total);
    assert_eq!(s.left, 0);
    assert_eq!(s.downloaded, 300_000);
    let done: Vec<u32> = net.nodes[leech]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::PieceDone { piece, .. } => Some(*piece),
            _ => None,
        })
        .collect();
    assert_eq!(
        done.len() as u32,
        s.pieces_total,
        "every piece verified once"
    );
    assert_eq!(net.stats(seed).uploaded, 300_000);
}

#[test]
fn one_seed_five_leechers_trade_among_themselves() {
    let mut net = Net::new(2 * 1024 * 1024, 32 * 1024, vec![]);
    let seed = net.add_node(true, config());
    let leechers: Vec<usize> = (0..5).map(|_| net.add_node(false, config())).collect();
    net.mesh(seed, &leechers);
    net.run_until(Duration::from_secs(600), |n| n.all_complete(&leechers));
    for &l in &leechers {
        net.assert_data(l);
    }
    let uploaded_by_leechers: u64 = leechers.iter().map(|&l| net.stats(l).uploaded).sum();
    assert!(
        uploaded_by_leechers > 0,
        "leechers must upload to each other"
    );
}

#[test]
fn finished_leechers_drop_each_other() {
    // Leechers do not send `have` for pieces a peer already has, so a finished leecher's
    // peers cannot tell from haves alone that it is a seed; BEP 21 `upload_only` tells them,
    // and two seeds have nothing to trade.
    let mut net = Net::new(1024 * 1024, 16 * 1024, vec![]);
    let seed = net.add_node(true, config());
    let leechers: Vec<usize> = (0..4).map(|_| net.add_node(false, config())).collect();
    net.mesh(seed, &leechers);
    net.run_until(Duration::from_secs(600), |n| n.all_complete(&leechers));
    // Let the last closes travel.
    let settle = net.now + Duration::from_secs(5);
    net.run_until(Duration::from_secs(700), |n| n.now >= settle);
    for &l in &leechers {
        assert_eq!(
            net.nodes[l].session.connection_count(),
            0,
            "node {l} still has connections after everyone finished"
        );
    }
}

#[test]
fn corrupt_peer_is_banned_and_pieces_refetched() {
    let mut net = Net::new(1024 * 1024, 16 * 1024, vec![]);
    let good = net.add_node(true, config());
    let liar = net.add_node(true, config());
    net.nodes[liar].corrupt = true;
    let leech = net.add_node(false, config());
    net.connect(leech, liar);
    net.connect(leech, good);
    net.run_until(Duration::from_secs(600), |n| n.all_complete(&[leech]));
    net.assert_data(leech);
    let events = &net.nodes[leech].events;
    assert!(events.iter().any(|e| matches!(e, Event::HashFailed { .. })));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::PeerBanned { addr, .. } if *addr == addr_of(liar))),
        "the liar must be banned: {events:?}"
    );
    assert!(net.stats(leech).hash_failures >= 1);
}

#[test]
fn peer_vanishing_mid_piece_does_not_stall() {
    let mut net = Net::new(1024 * 1024, 64 * 1024, vec![]);
    let a = net.add_node(true, config());
    let b = net.add_node(true, config());
    let leech = net.add_node(false, config());
    net.connect(leech, a);
    net.connect(leech, b);
    // Let the download start, then make `a` vanish without a word.
    net.run_until(Duration::from_secs(60), |n| {
        n.stats(leech).downloaded > 200_000
    });
    net.nodes[a].dead = true;
    net.run_until(Duration::from_secs(900), |n| n.all_complete(&[leech]));
    net.assert_data(leech);
}

#[test]
fn seed_rotation_serves_every_interested_peer() {
    // A slow seed (64 KiB/s) and 10 leechers: 5 unchoke slots, so only rotation (seed-mode
    // round robin and the optimistic unchoke) lets every leecher get data from the seed.
    let mut net = Net::new(2 * 1024 * 1024, 64 * 1024, vec![]);
    let mut slow = config();
    slow.upload_limit = Some(64 * 1024);
    let seed = net.add_node(true, slow);
    let leechers: Vec<usize> = (0..10).map(|_| net.add_node(false, config())).collect();
    for &l in &leechers {
        net.connect(l, seed);
    }
    net.run_until(Duration::from_secs(900), |n| n.all_complete(&leechers));
    for &l in &leechers {
        assert!(
            net.nodes[seed].served_to.get(&l).copied().unwrap_or(0) > 0,
            "the seed never served node {l}: {:?}",
            net.nodes[seed].served_to
        );
    }
}

#[test]
fn tracker_failover_to_second_tier() {
    let dead = "http://dead.example/announce".to_owned();
    let good = "http://good.example/announce".to_owned();
    let mut net = Net::new(
        256 * 1024,
        32 * 1024,
        vec![vec![dead.clone()], vec![good.clone()]],
    );
    net.dead_trackers.push(dead.clone());
    let seed = net.add_node(true, config());
    let leech = net.add_node(false, config());
    let _ = seed;
    net.run_until(Duration::from_secs(300), |n| n.all_complete(&[leech]));
    net.assert_data(leech);
    assert!(net.tracker_hits.get(&dead).copied().unwrap_or(0) >= 1);
    assert!(net.tracker_hits.get(&good).copied().unwrap_or(0) >= 2);
    assert!(
        net.nodes[leech]
            .events
            .iter()
            .any(|e| matches!(e, Event::TrackerError { url, .. } if *url == dead))
    );
}

#[test]
fn disk_full_stops_the_torrent_with_a_clear_error() {
    let mut net = Net::new(256 * 1024, 32 * 1024, vec![]);
    let seed = net.add_node(true, config());
    let leech = net.add_node(false, config());
    net.nodes[leech].disk_full = true;
    net.connect(leech, seed);
    net.run_until(Duration::from_secs(60), |n| {
        n.nodes[leech]
            .events
            .iter()
            .any(|e| matches!(e, Event::TorrentError { .. }))
    });
    let msg = net.nodes[leech]
        .events
        .iter()
        .find_map(|e| match e {
            Event::TorrentError { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(msg.contains("no space left on device"), "{msg}");
    assert_eq!(net.stats(leech).state, TorrentState::Errored);
    assert_eq!(net.nodes[leech].session.connection_count(), 0);
}

fn run_swarm(seed_offset: u64) -> String {
    let mut net = Net::new(512 * 1024, 32 * 1024, vec![]);
    net.seed_base = seed_offset;
    let s = net.add_node(true, config());
    let l1 = net.add_node(false, config());
    let l2 = net.add_node(false, config());
    net.connect(l1, s);
    net.connect(l2, s);
    net.connect(l2, l1);
    net.run_until(Duration::from_secs(300), |n| n.all_complete(&[l1, l2]));
    net.trace_hash()
}

#[test]
fn same_seed_same_outputs() {
    assert_eq!(run_swarm(5), run_swarm(5));
    assert_ne!(run_swarm(5), run_swarm(6));
}

/// A raw, hostile peer: the test writes bytes to the session by hand.
struct Raw {
    session: Session,
    conn: ConnId,
    now: Instant,
    closes: Vec<String>,
    fast: bool,
}

impl Raw {
    /// A seed of a `len`-byte torrent in 16 KiB pieces, with one incoming connection.
    fn new(len: usize) -> (Raw, [u8; 20]) {
        Self::with_pieces(len, true)
    }

    /// As [`Raw::new`], but the session has no piece (so it wants what the peer has).
    fn leecher(len: usize) -> (Raw, [u8; 20]) {
        Self::with_pieces(len, false)
    }

    fn with_pieces(len: usize, seed: bool) -> (Raw, [u8; 20]) {
        let payload = payload(len, 1);
        let meta = make_torrent(&payload, 16 * 1024, vec![]);
        let info_hash = *meta.info_hash().as_bytes();
        let now = Instant::ZERO;
        let mut session = Session::new(config(), 7, now);
        let have = seed.then(|| Bitfield::full(meta.piece_count()));
        session
            .add_torrent(now, meta.clone(), have.as_ref())
            .unwrap();
        drain_all(&mut session);
        let conn = session.accept(now, addr_of(50)).unwrap();
        drain_all(&mut session);
        (
            Raw {
                session,
                conn,
                now,
                closes: Vec::new(),
                fast: true,
            },
            info_hash,
        )
    }

    fn send(&mut self, bytes: &[u8]) {
        self.now = self.now + Duration::from_millis(1);
        self.session
            .handle_input(self.now, Input::Received(self.conn, bytes))
            .unwrap();
        loop {
            match self.session.poll_output() {
                Output::Timeout(_) => break,
                Output::Close { reason, .. } => self.closes.push(reason),
                Output::Transmit(c) => {
                    let mut b = Vec::new();
                    self.session.poll_transmit(c, &mut b);
                }
                _ => {}
            }
        }
    }

    fn handshake(&mut self, info_hash: [u8; 20]) {
        let mut hs = Vec::new();
        hs.push(19);
        hs.extend_from_slice(b"BitTorrent protocol");
        let fast = if self.fast { 0x04 } else { 0 };
        hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, fast]);
        hs.extend_from_slice(&info_hash);
        hs.extend_from_slice(b"-XX0001-abcdefghijkl");
        self.send(&hs);
    }
}

fn drain_all(s: &mut Session) {
    while !matches!(s.poll_output(), Output::Timeout(_)) {}
}

fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    v.push(id);
    v.extend_from_slice(payload);
    v
}

#[test]
fn hostile_peers_are_dropped_with_a_reason() {
    // 100_000 bytes in 16 KiB pieces: 7 pieces, a 1-byte bitfield with 1 spare bit.
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("oversized frame", vec![0xff, 0xff, 0xff, 0xff, 7], "frame"),
        ("bitfield too long", frame(5, &[0xfe, 0]), "bitfield"),
        ("spare bits", frame(5, &[0xff]), "spare"),
        ("have out of range", frame(4, &900u32.to_be_bytes()), "900"),
        (
            "request beyond piece",
            frame(
                6,
                &[
                    0u32.to_be_bytes(),
                    16_000u32.to_be_bytes(),
                    16_384u32.to_be_bytes(),
                ]
                .concat(),
            ),
            "",
        ),
        (
            "unrequested piece (fast extension)",
            frame(
                7,
                &[&0u32.to_be_bytes()[..], &0u32.to_be_bytes(), &[1, 2, 3]].concat(),
            ),
            "never requested",
        ),
    ];
    for (name, bytes, needle) in cases {
        let (mut raw, ih) = Raw::new(100_000);
        raw.handshake(ih);
        assert!(raw.closes.is_empty(), "{name}: closed at handshake");
        raw.send(&bytes);
        assert_eq!(
            raw.closes.len(),
            1,
            "{name}: expected one close, got {:?}",
            raw.closes
        );
        assert!(
            raw.closes[0].contains(needle),
            "{name}: reason {:?} lacks {needle:?}",
            raw.closes[0]
        );
        assert_eq!(raw.session.connection_count(), 0, "{name}");
    }
}

#[test]
fn wrong_info_hash_and_request_flood_are_dropped() {
    let (mut raw, _) = Raw::new(100_000);
    raw.handshake([9; 20]);
    assert_eq!(raw.closes.len(), 1);
    assert!(raw.closes[0].contains("do not serve"), "{:?}", raw.closes);

    // 8 MiB in 16 KiB pieces: 512 distinct blocks to ask for, twice the queue bound.
    let (mut raw, ih) = Raw::new(8 << 20);
    raw.handshake(ih);
    raw.send(&frame(2, &[])); // interested: the seed unchokes us at once (free slots)
    let mut flood = Vec::new();
    for i in 0..512u32 {
        let request = [i.to_be_bytes(), 0u32.to_be_bytes(), 16384u32.to_be_bytes()];
        flood.extend(frame(6, &request.concat()));
    }
    raw.send(&flood);
    // With the fast extension the excess is rejected: the connection stays, bounded.
    assert!(raw.closes.is_empty(), "{:?}", raw.closes);
    let conn = raw.session.conns.get(&raw.conn).unwrap();
    assert!(conn.peer.queued_requests().count() <= 250);
    assert!(conn.reads_in_flight <= 8);

    // Without it there is no way to refuse politely: the peer is dropped.
    let (mut raw, ih) = Raw::new(8 << 20);
    raw.fast = false;
    raw.handshake(ih);
    raw.send(&frame(2, &[]));
    raw.send(&flood);
    assert_eq!(raw.closes.len(), 1, "{:?}", raw.closes);
    assert!(raw.closes[0].contains("request"), "{:?}", raw.closes);
}

#[test]
fn misuse_is_an_error() {
    let mut s = Session::new(config(), 1, Instant::from_secs(10));
    assert!(matches!(
        s.handle_input(Instant::from_secs(5), Input::Timeout),
        Err(SessionError::TimeWentBackwards { .. })
    ));
    assert!(matches!(
        s.handle_input(Instant::from_secs(10), Input::Received(ConnId(42), b"x")),
        Err(SessionError::UnknownConnection(ConnId(42)))
    ));
    let payload = payload(50_000, 3);
    let meta = make_torrent(&payload, 16 * 1024, vec![]);
    s.add_torrent(Instant::from_secs(10), meta.clone(), None)
        .unwrap();
    // Outputs (stats, announces) may be pending: not draining is misuse.
    let id = s.accept(Instant::from_secs(10), addr_of(3));
    if let Err(e) = id {
        assert_eq!(e, SessionError::NotDrained);
    }
    drain_all(&mut s);
    assert!(matches!(
        s.add_torrent(Instant::from_secs(10), meta, None),
        Err(SessionError::DuplicateTorrent(_))
    ));
}

#[test]
fn endgame_does_not_wait_for_a_slow_peer() {
    let mut net = Net::new(1024 * 1024, 64 * 1024, vec![]);
    let fast = net.add_node(true, config());
    let slow = net.add_node(true, config());
    net.nodes[slow].extra_latency = Duration::from_secs(10);
    // (With `endgame_max_requesters: 1` this takes the full 10 s round trip.)
    let leech = net.add_node(false, config());
    net.connect(leech, slow);
    // The slow seed gets the download going and holds a full pipeline of requests...
    net.run_until(Duration::from_secs(120), |n| n.stats(leech).downloaded > 0);
    // ...then a fast seed appears: it takes over, and in endgame it also fetches what is
    // still outstanding at the slow one instead of waiting a 10 s round trip for it.
    net.connect(leech, fast);
    let joined = net.now;
    net.run_until(Duration::from_secs(600), |n| n.all_complete(&[leech]));
    net.assert_data(leech);
    let took = net.nodes[leech].complete_at.unwrap() - joined;
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} after the fast seed joined"
    );
}

#[test]
fn skipped_files_are_not_downloaded() {
    // Two files of 96 KiB and 160 KiB in 32 KiB pieces: pieces 0..3 hold the first file only.
    let mut net = Net::new(256 * 1024, 32 * 1024, vec![]);
    let files = vec![
        crate::create::FileEntry {
            path: vec!["a.bin".into()],
            length: 96 * 1024,
        },
        crate::create::FileEntry {
            path: vec!["b.bin".into()],
            length: 160 * 1024,
        },
    ];
    let pieces: Vec<u8> = net.payload.chunks(32 * 1024).flat_map(hash_piece).collect();
    let built = TorrentBuilder::new("dir", Content::Directory { files }, Some(32 * 1024))
        .unwrap()
        .build(&pieces)
        .unwrap();
    net.meta = Metainfo::from_bytes(&built.bytes).unwrap();
    let seed = net.add_node(true, config());
    let leech = net.add_node(false, config());
    let (t, now) = (net.nodes[leech].torrent.unwrap(), net.now);
    net.nodes[leech]
        .session
        .set_file_priorities(now, t, &[4, 0])
        .unwrap();
    net.drain(leech);
    net.connect(leech, seed);
    net.run_until(Duration::from_secs(120), |n| n.all_complete(&[leech]));
    let s = net.stats(leech);
    assert_eq!(s.pieces_have, 3, "only the first file's pieces");
    assert_eq!(s.left, 0);
    assert_eq!(net.nodes[leech].data[..96 * 1024], net.payload[..96 * 1024]);
}

#[test]
fn pause_resume_remove_and_shutdown() {
    let mut net = Net::new(1024 * 1024, 32 * 1024, vec![]);
    let seed = net.add_node(true, config());
    let leech = net.add_node(false, config());
    net.connect(leech, seed);
    net.run_until(Duration::from_secs(60), |n| {
        n.stats(leech).downloaded > 100_000
    });
    let (t, now) = (net.nodes[leech].torrent.unwrap(), net.now);
    net.nodes[leech].session.pause(now, t).unwrap();
    net.drain(leech);
    assert_eq!(net.stats(leech).state, TorrentState::Paused);
    assert_eq!(net.nodes[leech].session.connection_count(), 0);
    // Paused torrents make no connections, whatever time passes.
    net.run_until(Duration::from_secs(200), |n| {
        n.now >= Instant::from_secs(150)
    });
    assert_eq!(net.nodes[leech].session.connection_count(), 0);
    let have_before = net.stats(leech).pieces_have;
    let now = net.now;
    net.nodes[leech].session.resume(now, t).unwrap();
    net.drain(leech);
    net.run_until(Duration::from_secs(900), |n| n.all_complete(&[leech]));
    net.assert_data(leech);
    assert!(net.stats(leech).pieces_have >= have_before);

    let (t, now) = (net.nodes[seed].torrent.unwrap(), net.now);
    net.nodes[seed].session.remove(now, t).unwrap();
    net.drain(seed);
    net.run_until(Duration::from_secs(1000), |n| {
        n.nodes[seed]
            .events
            .iter()
            .any(|e| matches!(e, Event::TorrentRemoved { .. }))
    });
    assert_eq!(net.nodes[seed].session.torrents().count(), 0);

    let now = net.now;
    net.nodes[leech].session.shutdown(now).unwrap();
    net.drain(leech);
    net.run_until(Duration::from_secs(1100), |n| {
        n.nodes[leech]
            .events
            .iter()
            .any(|e| matches!(e, Event::ShutdownComplete))
    });
    let now = net.now;
    assert!(matches!(
        net.nodes[leech].session.accept(now, addr_of(9)),
        Err(SessionError::ShuttingDown)
    ));
}

#[test]
fn taking_bytes_frees_the_upload_watermark() {
    // A seed whose watermark is one block: it hands out one read at a time and no more until
    // its driver takes the queued bytes with poll_transmit (a socket that can take more).
    let payload = payload(8 << 20, 1);
    let meta = make_torrent(&payload, 16 * 1024, vec![]);
    let mut cfg = config();
    cfg.peer.upload_watermark = 16 * 1024;
    let mut now = Instant::ZERO;
    let mut s = Session::new(cfg, 7, now);
    let t = s
        .add_torrent(now, meta.clone(), Some(&Bitfield::full(meta.piece_count())))
        .unwrap();
    drain_all(&mut s);
    let conn = s.accept(now, addr_of(50)).unwrap();
    drain_all(&mut s);
    let mut hs = vec![19];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
    hs.extend_from_slice(meta.info_hash().as_bytes());
    hs.extend_from_slice(b"-XX0001-abcdefghijkl");
    hs.extend(frame(2, &[]));
    now = now + Duration::from_millis(1);
    s.handle_input(now, Input::Received(conn, &hs)).unwrap();
    drain_all(&mut s); // interested: the seed unchokes us at once (free slots)
    s.poll_transmit(conn, &mut Vec::new()); // the socket takes the handshake and unchoke
    drain_all(&mut s);
    let mut requests = Vec::new();
    for i in 0..20u32 {
        let request = [i.to_be_bytes(), 0u32.to_be_bytes(), 16384u32.to_be_bytes()];
        requests.extend(frame(6, &request.concat()));
    }
    s.handle_input(now, Input::Received(conn, &requests))
        .unwrap();
    // Drain without taking bytes; answer every read at once.
    let mut reads = 0;
    let mut pending: Vec<BlockRequest> = Vec::new();
    let drain = |s: &mut Session, pending: &mut Vec<BlockRequest>| loop {
        match s.poll_output() {
            Output::Timeout(_) => break,
            Output::ReadBlock { block, .. } => pending.push(block),
            _ => {}
        }
    };
    drain(&mut s, &mut pending);
    while let Some(block) = pending.pop() {
        reads += 1;
        let data = Bytes::from(vec![0u8; block.length as usize]);
        s.handle_input(
            now,
            Input::BlockRead {
                conn,
                torrent: t,
                block,
                data: Ok(data),
            },
        )
        .unwrap();
        drain(&mut s, &mut pending);
    }
    assert_eq!(reads, 1, "the watermark holds back further reads");
    let mut buf = Vec::new();
    assert!(s.poll_transmit(conn, &mut buf) > 16 * 1024);
    drain(&mut s, &mut pending);
    assert_eq!(
        pending.len(),
        1,
        "room in the send buffer: the next block is read"
    );
}

#[test]
fn peer_and_piece_snapshots_show_flags_and_availability() {
    let (mut raw, ih) = Raw::new(100_000);
    let t = raw.session.torrents().next().unwrap();
    // Before the handshake the peer has not joined: not shown.
    assert_eq!(raw.session.peer_snapshots(t), Some(vec![]));
    raw.handshake(ih);
    // Pieces 0 and 1 (7 pieces, 1 spare bit), then interested.
    raw.send(&frame(5, &[0b1100_0000]));
    raw.send(&frame(2, &[]));
    assert!(raw.closes.is_empty(), "{:?}", raw.closes);
    let peers = raw.session.peer_snapshots(t).unwrap();
    assert_eq!(peers.len(), 1);
    let p = &peers[0];
    assert_eq!((p.conn, p.addr), (raw.conn, addr_of(50)));
    assert!(!p.outgoing);
    assert!(p.peer_interested && p.peer_choking && !p.am_interested);
    assert!(!p.snubbed);
    assert_eq!(p.pieces, 2);
    assert_eq!(p.download_rate, 0);
    let pieces = raw.session.piece_snapshots(t).unwrap();
    assert_eq!(pieces.len(), 7);
    assert!(pieces.iter().all(|(v, _)| *v == PieceView::Have));
    let avail: Vec<u32> = pieces.iter().map(|(_, a)| *a).collect();
    assert_eq!(avail, vec![1, 1, 0, 0, 0, 0, 0]);
    assert_eq!(raw.session.peer_snapshots(TorrentId(99)), None);
    assert_eq!(raw.session.piece_snapshots(TorrentId(99)), None);
}

/// The picker is the only record of a peer's pieces: a late bitfield (aria2 sends one instead
/// of a burst of haves) adds to the haves before it, and a repeated have leads to nothing.
#[test]
fn late_bitfield_merges_and_a_repeated_have_does_nothing() {
    let (mut raw, ih) = Raw::leecher(100_000);
    let t = raw.session.torrents().next().unwrap();
    raw.handshake(ih);
    // Have 1, then a bitfield of piece 0 alone (7 pieces, 1 spare bit).
    raw.send(&frame(4, &1u32.to_be_bytes()));
    raw.send(&frame(5, &[0b1000_0000]));
    assert!(raw.closes.is_empty(), "{:?}", raw.closes);
    let peers = raw.session.peer_snapshots(t).unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].pieces, 2);
    assert!(peers[0].am_interested);
    let avail: Vec<u32> = raw
        .session
        .piece_snapshots(t)
        .unwrap()
        .iter()
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(avail, vec![1, 1, 0, 0, 0, 0, 0]);

    // Applied by hand to see what the session would do next: a repeat of piece 1 (wanted,
    // announced twice now) is nothing, not even a look at interest or requests.
    let key = raw.session.conns.get(&raw.conn).unwrap().key;
    let torrent = raw.session.torrents.get_mut(&t).unwrap();
    let before = torrent.picker.clone();
    let mut outputs = VecDeque::new();
    let repeat = PeerEvent::Have(1);
    let follow = apply_event(
        raw.now,
        Some(torrent),
        key,
        true,
        &repeat,
        None,
        &mut outputs,
    );
    assert!(matches!(follow, FollowUp::Nothing), "{follow:?}");
    assert!(
        torrent.picker == before,
        "a repeated have changed the picker"
    );
    assert!(outputs.is_empty());
    // A new wanted piece, by contrast, does ask for them.
    let new = PeerEvent::Have(2);
    let follow = apply_event(raw.now, Some(torrent), key, true, &new, None, &mut outputs);
    assert!(matches!(follow, FollowUp::Availability), "{follow:?}");
    assert_eq!(torrent.picker.peer_piece_count(key), 3);
}

/// Feeds `input`, then drains, answering disk reads from `payload` but never taking the
/// transmit bytes (a socket that is full); returns how many blocks were read.
fn drain_without_transmit(s: &mut Session, payload: &[u8], now: Instant) -> usize {
    let mut reads = Vec::new();
    let mut count = 0;
    loop {
        loop {
            match s.poll_output() {
                Output::Timeout(_) => break,
                Output::ReadBlock {
                    conn,
                    torrent,
                    block,
                } => reads.push((conn, torrent, block)),
                _ => {}
            }
        }
        let Some((conn, torrent, block)) = reads.pop() else {
            return count;
        };
        count += 1;
        let start = block.index as usize * 16 * 1024 + block.begin as usize;
        let data = Bytes::copy_from_slice(&payload[start..start + block.length as usize]);
        s.handle_input(
            now,
            Input::BlockRead {
                conn,
                torrent,
                block,
                data: Ok(data),
            },
        )
        .unwrap();
    }
}

#[test]
fn full_dial_slots_do_not_make_the_deadline_now() {
    // More known peers than half-open slots: the rest wait, and the deadline must not be
    // "now" (a driver would feed Timeout at the same instant forever).
    let payload = payload(64 * 1024, 5);
    let meta = make_torrent(&payload, 16 * 1024, vec![]);
    let now = Instant::from_secs(1);
    let mut s = Session::new(
        SessionConfig {
            max_half_open: 2,
            ..config()
        },
        1,
        now,
    );
    let t = s.add_torrent(now, meta, None).unwrap();
    drain_all(&mut s);
    for i in 0..5 {
        s.add_peer(now, t, addr_of(i)).unwrap();
        drain_all(&mut s);
    }
    s.handle_input(now, Input::Timeout).unwrap();
    let mut connects = 0;
    let deadline = loop {
        match s.poll_output() {
            Output::Connect { .. } => connects += 1,
            Output::Timeout(d) => break d,
            _ => {}
        }
    };
    assert_eq!(connects, 0, "both slots were taken by add_peer already");
    assert!(deadline > now, "deadline {deadline:?} is not after {now:?}");
    assert_eq!(s.connection_count(), 2);
}

#[test]
fn uploads_resume_when_the_send_buffer_drains() {
    let len = 8 << 20;
    let data = payload(len, 1);
    let (mut raw, ih) = Raw::new(len);
    raw.handshake(ih);
    raw.send(&frame(2, &[])); // interested: unchoked at once
    let mut asks = Vec::new();
    for i in 0..200u32 {
        let request = [i.to_be_bytes(), 0u32.to_be_bytes(), 16384u32.to_be_bytes()];
        asks.extend(frame(6, &request.concat()));
    }
    let now = raw.now + Duration::from_millis(1);
    raw.session
        .handle_input(now, Input::Received(raw.conn, &asks))
        .unwrap();
    let first = drain_without_transmit(&mut raw.session, &data, now);
    // The send buffer stops reads at the 1 MiB watermark: 64 blocks, not 200.
    assert!((60..=70).contains(&first), "{first} blocks read");
    // Nothing new arrives from the peer, so without `Writable` the upload would stall here.
    let now = now + Duration::from_millis(1);
    raw.session.handle_input(now, Input::Timeout).unwrap();
    assert_eq!(drain_without_transmit(&mut raw.session, &data, now), 0);
    // The socket becomes writable: the Session asks to transmit again.
    raw.session
        .handle_input(now, Input::Writable(raw.conn))
        .unwrap();
    let mut transmit = false;
    loop {
        match raw.session.poll_output() {
            Output::Transmit(c) if c == raw.conn => transmit = true,
            Output::Timeout(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(transmit, "Writable with bytes waiting must say Transmit");
    // Taking the bytes empties the send buffer: more blocks are read at once, even though
    // the peer sends nothing new (its requests are all queued already).
    let mut sent = Vec::new();
    assert!(raw.session.poll_transmit(raw.conn, &mut sent) > first * 16 * 1024);
    let second = drain_without_transmit(&mut raw.session, &data, now);
    assert!(
        (60..=70).contains(&second),
        "{second} blocks read after the transmit"
    );
    // A stale or unknown connection is handled like the other inputs.
    assert!(matches!(
        raw.session.handle_input(now, Input::Writable(ConnId(999))),
        Err(SessionError::UnknownConnection(_))
    ));
}

/// A leecher with two incoming peers: `a` has every piece and serves piece 0, `b` has none.
/// Returns the bytes the leecher sent to each after piece 0 verified.
/// With `batch`, haves are held that long: the bytes are taken once the batch is due.
fn have_traffic(redundant: bool, batch: Duration) -> (Vec<u8>, Vec<u8>) {
    let data = payload(2 * 16 * 1024, 1);
    let meta = make_torrent(&data, 16 * 1024, vec![]);
    let ih = *meta.info_hash().as_bytes();
    let mut now = Instant::ZERO;
    let mut cfg = SessionConfig {
        send_redundant_have: redundant,
        ..config()
    };
    cfg.peer.have_batch = batch;
    let mut s = Session::new(cfg, 7, now);
    let t = s.add_torrent(now, meta, None).unwrap();
    drain_all(&mut s);
    let mut hs = vec![19];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
    hs.extend_from_slice(&ih);
    let a = s.accept(now, addr_of(50)).unwrap();
    let b = s.accept(now, addr_of(51)).unwrap();
    let mut sent: BTreeMap<ConnId, Vec<u8>> = BTreeMap::new();
    let mut to_disk: Vec<Delivery> = Vec::new();
    let drain =
        |s: &mut Session, sent: &mut BTreeMap<ConnId, Vec<u8>>, to_disk: &mut Vec<Delivery>| loop {
            match s.poll_output() {
                Output::Timeout(_) => break,
                Output::Transmit(c) => {
                    let mut buf = Vec::new();
                    s.poll_transmit(c, &mut buf);
                    sent.entry(c).or_default().extend(buf);
                }
                Output::WriteBlock { torrent, block, .. } => {
                    to_disk.push(Delivery::BlockWritten(torrent, block, Ok(())));
                }
                Output::VerifyPiece { torrent, piece } => {
                    to_disk.push(Delivery::PieceVerified(torrent, piece, true));
                }
                _ => {}
            }
        };
    drain(&mut s, &mut sent, &mut to_disk);
    for (conn, id, first) in [
        (a, b"-XX0001-aaaaaaaaaaaa", frame(0x0e, &[])),
        (b, b"-XX0001-bbbbbbbbbbbb", frame(0x0f, &[])),
    ] {
        now = now + Duration::from_millis(1);
        let mut bytes = hs.clone();
        bytes.extend_from_slice(id);
        bytes.extend(first); // a: have all, b: have none
        s.handle_input(now, Input::Received(conn, &bytes)).unwrap();
        drain(&mut s, &mut sent, &mut to_disk);
    }
    // `a` unchokes us; we ask it for blocks (piece 0 is one block).
    now = now + Duration::from_millis(1);
    s.handle_input(now, Input::Received(a, &frame(1, &[])))
        .unwrap();
    drain(&mut s, &mut sent, &mut to_disk);
    let mut block = [0u32.to_be_bytes(), 0u32.to_be_bytes()].concat();
    block.extend_from_slice(&data[..16 * 1024]);
    now = now + Duration::from_millis(1);
    s.handle_input(now, Input::Received(a, &frame(7, &block)))
        .unwrap();
    drain(&mut s, &mut sent, &mut to_disk);
    // Answer the disk until the piece is verified.
    while let Some(d) = to_disk.pop() {
        let input = match &d {
            Delivery::BlockWritten(t, bl, _) => Input::BlockWritten {
                torrent: *t,
                block: *bl,
                result: Ok(()),
            },
            Delivery::PieceVerified(t, p, ok) => Input::PieceVerified {
                torrent: *t,
                piece: *p,
                ok: *ok,
            },
            _ => unreachable!(),
        };
        s.handle_input(now, input).unwrap();
        drain(&mut s, &mut sent, &mut to_disk);
    }
    assert_eq!(s.have(t).unwrap().count_ones(), 1, "piece 0 verified");
    if !batch.is_zero() {
        let have0 = frame(4, &0u32.to_be_bytes());
        let to_b = sent.get(&b).map_or(&[][..], Vec::as_slice);
        assert!(
            !to_b.windows(have0.len()).any(|w| w == have0.as_slice()),
            "the have waits for its batch"
        );
        let due = now + batch;
        assert!(s.next_deadline() <= due, "the batch's flush is a deadline");
        s.handle_input(due, Input::Timeout).unwrap();
        drain(&mut s, &mut sent, &mut to_disk);
    }
    (
        sent.remove(&a).unwrap_or_default(),
        sent.remove(&b).unwrap_or_default(),
    )
}

#[test]
fn have_goes_only_to_peers_without_the_piece() {
    let have0 = frame(4, &0u32.to_be_bytes());
    let contains = |hay: &[u8]| hay.windows(have0.len()).any(|w| w == have0.as_slice());
    for batch in [Duration::ZERO, Duration::from_millis(250)] {
        let (to_a, to_b) = have_traffic(false, batch);
        assert!(!contains(&to_a), "a has every piece: no have for it");
        assert!(contains(&to_b), "b lacks piece 0: it hears of it");
        // With redundant haves on, the peer that has the piece hears of it too.
        let (to_a, to_b) = have_traffic(true, batch);
        assert!(contains(&to_a));
        assert!(contains(&to_b));
    }
}

#[test]
fn a_slot_freed_between_rounds_goes_to_a_waiting_peer_at_once() {
    // One upload slot, no optimistic one: the first leecher to ask holds the seed's only slot,
    // the second waits. When the first finishes (and stops being interested, then leaves), the
    // interim choke call must hand the slot over at once, not at the next 10 s round.
    let mut net = Net::new(256 * 1024, 32 * 1024, vec![]);
    let mut one_slot = config();
    one_slot.choker.regular_slots = 1;
    one_slot.choker.optimistic_slots = 0;
    let seed = net.add_node(true, one_slot);
    let a = net.add_node(false, config());
    let b = net.add_node(false, config());
    net.connect(a, seed);
    net.connect(b, seed);
    net.run_until(Duration::from_secs(60), |n| n.all_complete(&[a, b]));
    let first = net.nodes[a]
        .complete_at
        .min(net.nodes[b].complete_at)
        .unwrap();
    let second = net.nodes[a]
        .complete_at
        .max(net.nodes[b].complete_at)
        .unwrap();
    assert!(
        second.saturating_duration_since(first) < Duration::from_secs(2),
        "the second leecher waited for a choke round: done at {first:?} and {second:?}"
    );
}

/// What the hand-wired pair in [`two_sessions`] carries.
enum Hop {
    Connect(ConnId),
    Bytes(usize, Vec<Bytes>),
    Input(usize, Delivery),
}

/// Two sessions wired by hand, a seed and a leecher, every byte carried either as shared
/// chunks (`poll_transmit_parts`, `Input::ReceivedChunks`) or copied (`poll_transmit`,
/// `Input::Received`); the disk answers with slices of one shared payload. Returns the bytes
/// each node sent, in order, the blocks written and how many of them are slices of the
/// payload (no copy anywhere on the way).
fn two_sessions(chunked: bool) -> ([Vec<u8>; 2], usize, usize) {
    let data = Bytes::from(payload(8 * 16 * 1024 + 1000, 3));
    let meta = make_torrent(&data, 32 * 1024, vec![]);
    let mut now = Instant::ZERO;
    let mut nodes = [
        Session::new(config(), 1, now),
        Session::new(config(), 2, now),
    ];
    let full = Bitfield::full(meta.piece_count());
    let ts = nodes[0]
        .add_torrent(now, meta.clone(), Some(&full))
        .unwrap();
    let tl = nodes[1].add_torrent(now, meta.clone(), None).unwrap();
    assert_eq!(ts, tl);
    nodes[1].add_peer(now, tl, addr_of(1)).unwrap();
    let mut conns = [None, None];
    let mut sent = [Vec::new(), Vec::new()];
    let (mut written, mut shared) = (0, 0);
    let mut hops = VecDeque::new();
    for step in 0..10_000 {
        for (i, s) in nodes.iter_mut().enumerate() {
            loop {
                match s.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Connect { conn, .. } => hops.push_back(Hop::Connect(conn)),
                    Output::Transmit(c) => {
                        let mut chunks = Vec::new();
                        if chunked {
                            let (mut ctrl, mut blocks) = (Vec::new(), Vec::new());
                            s.poll_transmit_parts(c, &mut ctrl, &mut blocks);
                            // Control runs copied, blocks as they are, as a simulator does.
                            let mut prev = 0;
                            for (at, block) in blocks {
                                chunks.push(Bytes::copy_from_slice(&ctrl[prev..at]));
                                chunks.push(block);
                                prev = at;
                            }
                            chunks.push(Bytes::copy_from_slice(&ctrl[prev..]));
                        } else {
                            let mut buf = Vec::new();
                            s.poll_transmit(c, &mut buf);
                            chunks.push(Bytes::from(buf));
                        }
                        for chunk in &chunks {
                            sent[i].extend_from_slice(chunk);
                        }
                        hops.push_back(Hop::Bytes(1 - i, chunks));
                    }
                    Output::ReadBlock {
                        conn,
                        torrent,
                        block,
                    } => {
                        let at = block.index as usize * 32 * 1024 + block.begin as usize;
                        let bytes = data.slice(at..at + block.length as usize);
                        let d = Delivery::BlockRead(conn, torrent, block, Ok(bytes));
                        hops.push_back(Hop::Input(i, d));
                    }
                    Output::WriteBlock {
                        torrent,
                        block,
                        data: got,
                    } => {
                        let at = block.index as usize * 32 * 1024 + block.begin as usize;
                        assert_eq!(got, data[at..at + block.length as usize]);
                        written += 1;
                        if data.as_ptr_range().contains(&got.as_ptr()) {
                            shared += 1;
                        }
                        let d = Delivery::BlockWritten(torrent, block, Ok(()));
                        hops.push_back(Hop::Input(i, d));
                    }
                    Output::VerifyPiece { torrent, piece } => {
                        let d = Delivery::PieceVerified(torrent, piece, true);
                        hops.push_back(Hop::Input(i, d));
                    }
                    _ => {}
                }
            }
        }
        if nodes[1].stats(tl).unwrap().left == 0 {
            return (sent, written, shared);
        }
        now = now + Duration::from_millis(1);
        let Some(hop) = hops.pop_front() else {
            for s in &mut nodes {
                s.handle_input(now, Input::Timeout).unwrap();
            }
            continue;
        };
        match hop {
            Hop::Connect(c) => {
                conns[0] = Some(nodes[0].accept(now, addr_of(2)).unwrap());
                conns[1] = Some(c);
                nodes[1].handle_input(now, Input::Connected(c)).unwrap();
            }
            Hop::Bytes(to, chunks) => {
                let conn = conns[to].unwrap();
                if chunked {
                    nodes[to]
                        .handle_input(now, Input::ReceivedChunks(conn, &chunks))
                        .unwrap();
                } else {
                    let bytes = chunks.concat();
                    nodes[to]
                        .handle_input(now, Input::Received(conn, &bytes))
                        .unwrap();
                }
            }
            Hop::Input(to, d) => {
                let input = match d {
                    Delivery::BlockRead(conn, torrent, block, data) => Input::BlockRead {
                        conn,
                        torrent,
                        block,
                        data,
                    },
                    Delivery::BlockWritten(torrent, block, result) => Input::BlockWritten {
                        torrent,
                        block,
                        result,
                    },
                    Delivery::PieceVerified(torrent, piece, ok) => {
                        Input::PieceVerified { torrent, piece, ok }
                    }
                    _ => unreachable!(),
                };
                nodes[to].handle_input(now, input).unwrap();
            }
        }
        assert!(step < 9_999, "the download did not finish");
    }
    unreachable!()
}

#[test]
fn blocks_travel_from_disk_to_disk_without_a_copy() {
    let (sent_chunked, written, shared) = two_sessions(true);
    assert_eq!(written, 8 + 1, "every block is written once");
    assert_eq!(shared, written, "a block was copied on the way");
    // The copying forms carry the same bytes, and the sessions do the same.
    let (sent_copied, written, shared) = two_sessions(false);
    assert_eq!(sent_copied, sent_chunked);
    assert_eq!((written, shared), (8 + 1, 0));
}

/// `prefetch` only reads: a joined connection gives a non-zero sum, an unknown one zero, and
/// neither leaves an output or changes what the peer sees.
#[test]
fn prefetch_reads_and_changes_nothing() {
    let (mut raw, ih) = Raw::leecher(100_000);
    let t = raw.session.torrents().next().unwrap();
    raw.handshake(ih);
    raw.send(&frame(4, &1u32.to_be_bytes()));
    let before = format!("{:?}", raw.session.peer_snapshots(t));
    assert!(raw.session.prefetch(raw.conn) > 0);
    assert_eq!(raw.session.prefetch(ConnId(u64::MAX)), 0);
    // Piece 1 is announced once: its availability is 1, and a have frame naming it reads that.
    let have = frame(4, &1u32.to_be_bytes());
    assert_eq!(raw.session.prefetch_haves(t, &have), 1);
    assert_eq!(raw.session.prefetch_haves(t, &frame(0, &[])), 0);
    assert!(matches!(raw.session.poll_output(), Output::Timeout(_)));
    assert_eq!(format!("{:?}", raw.session.peer_snapshots(t)), before);
}
