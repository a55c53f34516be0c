//! The discrete-event engine: a virtual clock, a priority queue of (time, sequence, event)
//! (a radix heap, `queue.rs`),
//! node deadlines in an ordered set keyed by (deadline, node), and nodes that are plain
//! `hive_core::session::Session`s. Each step takes the earliest of the queue head and the
//! first node deadline (the queue wins a tie), so a step costs O(log n) whatever the number
//! of nodes.
//!
//! # The link model
//!
//! Every node has an access link: an upload rate, a download rate, a one-way latency and an
//! optional jitter. The latency of a path is the sum of both ends' latencies. A connection is
//! a pair of ordered byte pipes. Bytes a node sends are cut at frame boundaries into segments
//! of about 16 KiB; a segment of `n` bytes sent at `t`:
//!
//! - occupies the sender's uplink from `start = max(t, up_busy)` for `n / upload` (the uplink
//!   serialises all of the node's connections in the order they sent);
//! - occupies the receiver's downlink from `max(start, down_busy)` for `n / download`;
//! - arrives when both are done plus the path latency plus a random jitter, but never before
//!   the previous segment of the same pipe (jitter never reorders a connection).
//!
//! So the slower end sets the pace, a node's connections share its links, and latency adds.
//! A short write (at most `COALESCE`, 1 KiB) to a connection whose last segment has not
//! started to leave the uplink yet joins that segment instead (its bytes are still charged to
//! both links), as TCP sends bytes that wait in one socket buffer together: a node whose
//! uplink is busy with blocks sends its `have`s in batches, not one segment each.
//! A connection's socket buffer holds the bytes that have not yet left the slower link; while
//! it holds `send_buffer` bytes or more the sender's `Transmit` is not answered (the bytes stay
//! in the Session, whose own watermark then stops disk reads), and when it drains to half the
//! engine says `Input::Writable`. Connection setup costs a round trip (the acceptor's Session
//! accepts when the SYN arrives, the initiator hears `Connected` a path latency later); a
//! refused connection fails after a round trip, one to a vanished host after
//! `connect_timeout`. A close reaches the other end after the bytes sent before it.
//!
//! Tracker traffic is not rate-limited: an HTTP announce is answered after a round trip to the
//! tracker; UDP datagrams may be lost, duplicated or delayed (and so reordered).
//!
//! # Disk and hashing
//!
//! One payload (`Bytes`) is shared by every node: a block read is a slice of it. Written
//! blocks are compared with the payload when written and only a per-piece set of bad blocks is
//! kept, so a piece verifies iff none of its blocks is bad (with `real_hash`, the written
//! piece is also assembled and hashed with SHA-1, and the two verdicts must agree). A
//! corrupt-data node serves flipped bytes, so its victims' hash checks really fail.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use bytes::Bytes;
use hive_core::announce::{RequestId, TrackerId};
use hive_core::bitfield::Bitfield;
use hive_core::create::{Content, TorrentBuilder};
use hive_core::metainfo::Metainfo;
use hive_core::piece_hash::hash_piece;
use hive_core::rng::Rng;
use hive_core::session::{
    ConnId, Event, Input, Output, Session, SessionConfig, TorrentId, TorrentStats,
};
use hive_core::time::Instant;
use hive_core::wire::{BlockRequest, DecoderLimits, FrameDecoder, HANDSHAKE_LEN, Message};

use crate::queue::Queue;
use crate::record::Recorder;
use crate::scenario::{Behaviour, GroupSpec, RunSpec, Scenario, TrackerKind};
use crate::trace::Trace;
use crate::tracker::{TRACKER_IP, Tracker, UDP_PORT};

/// Every node listens here.
pub const LISTEN_PORT: u16 = 6881;
/// Segments are cut at the first frame boundary past this many bytes.
const SEGMENT: usize = 16 * 1024;
const BLOCK: u32 = 16 * 1024;
const NONE: u32 = u32::MAX;
/// How long data must stay lost before the run gives up (a piece whose blocks all arrived is
/// verified within moments; this is far longer).
const LOST_GRACE: u64 = 60_000_000;

/// Node `i`'s address: 10.0.0.1 upward.
pub fn node_ip(i: u32) -> Ipv4Addr {
    let n = i + 1;
    Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

pub(crate) fn node_of_ip(ip: IpAddr) -> Option<u32> {
    let IpAddr::V4(v4) = ip else { return None };
    let [a, b, c, d] = v4.octets();
    if a != 10 || v4 == TRACKER_IP {
        return None;
    }
    let n = (u32::from(b) << 16) | (u32::from(c) << 8) | u32::from(d);
    n.checked_sub(1)
}

/// A stable handle to a link slot (slots are reused; the generation tells stale events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LinkRef {
    id: u32,
    generation: u32,
}

#[derive(Debug)]
enum Ev {
    Arrive(u32),
    Depart(u32),
    /// The SYN reaches the acceptor.
    Syn(LinkRef),
    /// The SYN-ACK reaches the initiator.
    SynAck(LinkRef),
    /// The initiator learns the connection failed (RST or timeout).
    Refused(LinkRef),
    Data(LinkRef, u8, Payload),
    Fin(LinkRef, u8),
    Wake(LinkRef, u8),
    TrackerHttp {
        node: u32,
        torrent: TorrentId,
        request: RequestId,
        url: String,
    },
    HttpReply {
        node: u32,
        torrent: TorrentId,
        request: RequestId,
        body: Vec<u8>,
    },
    TrackerUdp {
        node: u32,
        torrent: TorrentId,
        tracker: TrackerId,
        packet: Vec<u8>,
    },
    UdpReply {
        node: u32,
        torrent: TorrentId,
        tracker: TrackerId,
        data: Vec<u8>,
    },
    Sample,
}

/// Bytes in flight. Most segments are a have or a few requests: those travel inline, so that
/// they cost no allocation.
#[derive(Debug)]
enum Payload {
    Inline(u8, [u8; INLINE]),
    Shared(Bytes),
    /// Short writes coalesced into one segment (see [`COALESCE`]).
    Joined(Vec<u8>),
}

const INLINE: usize = 38;

/// A write of at most this many bytes joins the connection's previous segment when that one
/// has not started to leave the sender yet and stays this small: the bytes wait in the same
/// socket buffer, and TCP would send them in the same packets. Without this, every `have` a
/// node sends while its uplink is busy with blocks (a flash crowd: all the time) would be a
/// segment and an event of its own.
const COALESCE: usize = 1024;

impl Payload {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Inline(n, b) => &b[..usize::from(*n)],
            Payload::Shared(b) => b,
            Payload::Joined(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn append(&mut self, more: &[u8]) {
        match self {
            Payload::Inline(n, b) if usize::from(*n) + more.len() <= INLINE => {
                let at = usize::from(*n);
                b[at..at + more.len()].copy_from_slice(more);
                *n += more.len() as u8;
            }
            Payload::Joined(v) => v.extend_from_slice(more),
            other => {
                let mut v = Vec::with_capacity(2 * (other.len() + more.len()));
                v.extend_from_slice(other.as_slice());
                v.extend_from_slice(more);
                *other = Payload::Joined(v);
            }
        }
    }
}

/// The last segment of a pipe, while more bytes may still join it.
#[derive(Clone, Copy, Debug)]
struct Tail {
    /// Its event's slab slot.
    slot: u32,
    /// When it starts to leave the sender's uplink.
    start: u64,
}

/// One direction of a connection, owned by the sending end.
#[derive(Debug)]
struct End {
    node: u32,
    conn: u64,
    /// That node's Session knows the connection.
    alive: bool,
    /// (time the bytes leave the slower link, bytes): the socket buffer.
    unsent: VecDeque<(u64, u32)>,
    unsent_bytes: u64,
    /// A `Transmit` waits for buffer room.
    blocked: bool,
    /// A wake-up is queued for this time (`u64::MAX`: none).
    wake_at: u64,
    last_arrival: u64,
    /// The pipe's last segment (joinable while `start` is in the future).
    tail: Option<Tail>,
    /// Handshake bytes still to skip before frames.
    skip: usize,
    decoder: FrameDecoder,
    /// Pieces this end announced to the other (bitfield, have, have all).
    announced: Option<Bitfield>,
}

impl End {
    fn new(node: u32, conn: u64, limits: DecoderLimits) -> End {
        End {
            node,
            conn,
            alive: false,
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            blocked: false,
            wake_at: u64::MAX,
            last_arrival: 0,
            tail: None,
            skip: HANDSHAKE_LEN,
            decoder: FrameDecoder::new(limits),
            announced: None,
        }
    }

    fn prune(&mut self, now: u64) {
        while let Some(&(t, n)) = self.unsent.front() {
            if t > now {
                break;
            }
            self.unsent.pop_front();
            self.unsent_bytes -= u64::from(n);
        }
    }

    /// When the buffer will have drained to `low` bytes.
    fn drained_at(&self, low: u64) -> u64 {
        let mut left = self.unsent_bytes;
        for &(t, n) in &self.unsent {
            left -= u64::from(n);
            if left <= low {
                return t;
            }
        }
        0
    }
}

#[derive(Debug)]
struct Link {
    generation: u32,
    ends: [End; 2],
    /// The initiator has not heard `Connected` or a failure yet.
    connecting: bool,
    started: u64,
    in_use: bool,
}

/// Per-node state of the simulated disk.
#[derive(Debug, Default)]
struct Disk {
    /// Pieces with bad blocks: piece -> bitmask of bad blocks.
    bad: BTreeMap<u32, Vec<u64>>,
    /// Pieces whose written bytes passed verification (the truth, not the core's view).
    verified: Option<Bitfield>,
    /// `real_hash` only: pieces being written, assembled for SHA-1.
    partial: BTreeMap<u32, Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Pending,
    Alive,
    Gone,
}

/// What the run learned about one node.
#[derive(Clone, Debug, Default)]
pub struct NodeRecord {
    /// Its group's index.
    pub group: usize,
    /// Started with the data.
    pub seed: bool,
    /// Arrival time (µs).
    pub arrived: Option<u64>,
    /// Completion time (µs).
    pub completed: Option<u64>,
    /// Departure time (µs).
    pub departed: Option<u64>,
    /// Piece payload bytes it sent (observed on the wire).
    pub uploaded: u64,
    /// Piece payload bytes sent to it (observed on the wire).
    pub downloaded: u64,
    /// All bytes it sent.
    pub bytes_sent: u64,
    /// The core's final statistics.
    pub stats: Option<TorrentStats>,
    /// Peers it banned.
    pub bans_issued: u32,
    /// Nodes that banned it.
    pub banned_by: u32,
    /// Hash failures it saw.
    pub hash_failures: u32,
    /// Connections established (either way).
    pub connections: u32,
    /// Outgoing attempts that failed.
    pub connect_failures: u32,
    /// Most simultaneous connections.
    pub peak_connections: u32,
}

struct Node {
    session: Option<Box<Session>>,
    torrent: TorrentId,
    life: Life,
    deadline: u64,
    group: usize,
    corrupt: bool,
    refuse: bool,
    up_rate: u64,
    down_rate: u64,
    /// Slow-start nodes: their rates ramp from a tenth to full over this long after arrival.
    ramp: u64,
    latency: u64,
    jitter: u64,
    up_busy: u64,
    down_busy: u64,
    /// ConnId -> link slot.
    conns: Vec<u32>,
    live: u32,
    half_open: u32,
    max_connections: usize,
    max_per_torrent: usize,
    max_half_open: usize,
    ephemeral: u16,
    disk: Disk,
    depart_scheduled: bool,
    upload_limit_bytes: Option<u64>,
    rec: NodeRecord,
}

/// A disk answer to feed back at the same instant.
enum Answer {
    Read(ConnId, TorrentId, BlockRequest, Bytes),
    Written(TorrentId, BlockRequest),
    Verified(TorrentId, u32, bool),
}

/// One point of the availability series.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sample {
    /// Virtual time, seconds.
    pub t: f64,
    /// Distinct pieces held by at least one live node.
    pub available: u32,
    /// Copies of the torrent in the swarm (sum of pieces held / piece count).
    pub copies: f64,
    /// Live nodes.
    pub nodes: u32,
    /// Nodes completed so far.
    pub completed: u32,
}

/// Options that are not part of the scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The run's seed.
    pub seed: u64,
    /// Print a progress line on stderr on long runs.
    pub progress: bool,
}

/// Everything a finished run hands to the report.
pub struct RunResult {
    /// The scenario.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// Per node.
    pub nodes: Vec<NodeRecord>,
    /// Availability over time.
    pub series: Vec<Sample>,
    /// Broken checks (empty: the run passed).
    pub failures: Vec<String>,
    /// Every leecher completed or left.
    pub finished: bool,
    /// Why the run stopped early (the time limit, or data lost for good).
    pub stopped: Option<String>,
    /// Virtual time at the end (µs).
    pub end_time: u64,
    /// Events processed.
    pub events: u64,
    /// Connections established in all.
    pub connections: u64,
    /// Announces the tracker answered.
    pub announces: u64,
    /// Bytes of pieces that failed a hash check, all nodes.
    pub hash_failed_bytes: u64,
    /// Why nodes closed connections (digits replaced by `#`), with counts.
    pub close_reasons: BTreeMap<String, u64>,
    /// Torrent size.
    pub total_length: u64,
    /// Pieces.
    pub piece_count: u32,
    /// Index of the original seed.
    pub original_seed: u32,
    /// The trace hash.
    pub trace_hash: String,
    /// Why the record (`--record`) could not be written, if it could not.
    pub record_error: Option<String>,
}

/// The simulator.
pub struct Engine {
    sc: Scenario,
    opts: RunOptions,
    now: u64,
    seq: u64,
    /// (time, sequence) -> slab slot; the events themselves wait in the slab.
    heap: Queue,
    slab: Vec<Option<Ev>>,
    free_slots: Vec<u32>,
    deadlines: BTreeSet<(u64, u32)>,
    nodes: Vec<Node>,
    links: Vec<Link>,
    free_links: Vec<u32>,
    payload: Bytes,
    meta: Metainfo,
    piece_len: u64,
    piece_count: u32,
    total: u64,
    limits: DecoderLimits,
    tracker: Tracker,
    trace: Trace,
    rng: Rng,
    answers: VecDeque<Answer>,
    bounds: Vec<usize>,
    segs: Vec<(usize, usize)>,
    tx_buf: Vec<u8>,
    failures: Vec<String>,
    /// Copies of each piece among live nodes (the cores' view: PieceDone / seeds).
    copies: Vec<u32>,
    available: u32,
    total_copies: u64,
    completed: u32,
    /// Leechers not yet completed or departed (including those still to arrive).
    open_leechers: u32,
    /// Seeds still to arrive.
    pending_seeds: u32,
    /// Since when the samples found data lost (the run stops after `LOST_GRACE`).
    lost_since: Option<u64>,
    original_seed: u32,
    /// Pieces the original seed has sent at least once (the flash-crowd check).
    seed_sent: Bitfield,
    seed_sent_count: u32,
    first_leecher_done: bool,
    series: Vec<Sample>,
    steps: u64,
    instant_steps: u64,
    instant: u64,
    connections: u64,
    hash_failed_bytes: u64,
    close_reasons: BTreeMap<String, u64>,
    /// `--record`: an observer only; it reads Sessions, never feeds them.
    recorder: Option<Box<Recorder>>,
}

/// Records a broken check (the first 100; the count of the rest is not interesting).
fn fail(failures: &mut Vec<String>, msg: String) {
    if failures.len() < 100 {
        failures.push(msg);
    }
}

fn tx_time(bytes: u64, rate: u64) -> u64 {
    if rate == 0 {
        0
    } else {
        (bytes * 1_000_000).div_ceil(rate)
    }
}

/// An exponential-looking random duration with mean `mean` µs, in integer arithmetic only (a
/// geometric number of slots of mean/1000), so that runs agree bit for bit on any machine.
fn random_exp(rng: &mut Rng, mean: u64) -> u64 {
    let slot = (mean / 1000).max(1);
    let mut k = 1u64;
    while k < 20_000 && rng.below(1000) != 0 {
        k += 1;
    }
    k * slot
}

fn session_config(g: &GroupSpec, run: &RunSpec) -> SessionConfig {
    let mut c = SessionConfig {
        stats_interval: Duration::ZERO,
        listen_port: LISTEN_PORT,
        ..SessionConfig::default()
    };
    c.peer.upload_watermark = run.upload_watermark.0 as usize;
    if let Some(m) = g.max_connections {
        c.max_connections = m;
    }
    if let Some(m) = g.max_connections_per_torrent {
        c.max_connections_per_torrent = m;
    }
    if let Some(s) = g.upload_slots {
        c.choker.regular_slots = s;
    }
    if g.behaviour == Behaviour::FreeRider {
        // Never unchoke anyone and give away no allowed-fast pieces: nothing is ever served.
        c.choker.regular_slots = 0;
        c.choker.optimistic_slots = 0;
        c.peer.allowed_fast_count = 0;
    }
    c
}

/// Builds the payload and its torrent.
fn make_torrent(sc: &Scenario, seed: u64) -> Result<(Bytes, Metainfo), String> {
    let total = sc.total_length();
    let len = usize::try_from(total).map_err(|_| "torrent too large".to_string())?;
    let mut data = vec![0u8; len];
    Rng::new(seed ^ 0x7061_796c_6f61_6400).fill_bytes(&mut data);
    let pl = sc.torrent.piece_length.0 as usize;
    let mut pieces = Vec::with_capacity(len.div_ceil(pl) * 20);
    for chunk in data.chunks(pl) {
        pieces.extend_from_slice(&hash_piece(chunk));
    }
    let url = match sc.tracker.kind {
        TrackerKind::Http => format!("http://{TRACKER_IP}/announce"),
        TrackerKind::Udp => format!("udp://{TRACKER_IP}:{UDP_PORT}/announce"),
    };
    let built = TorrentBuilder::new(
        "payload.bin",
        Content::SingleFile { length: total },
        Some(sc.torrent.piece_length.0),
    )
    .map_err(|e| e.to_string())?
    .trackers(vec![vec![url]])
    .creation_date(Some(0))
    .build(&pieces)
    .map_err(|e| e.to_string())?;
    let meta = Metainfo::from_bytes(&built.bytes).map_err(|e| e.to_string())?;
    Ok((Bytes::from(data), meta))
}

impl Engine {
    /// Sets up a run: payload, torrent, nodes and their arrival times.
    pub fn new(sc: Scenario, opts: RunOptions) -> Result<Engine, String> {
        sc.validate()?;
        let (payload, meta) = make_torrent(&sc, opts.seed)?;
        let mut rng = Rng::new(opts.seed);
        let tracker = Tracker::new(sc.tracker.interval.0, sc.tracker.numwant, rng.fork());
        let mut arrivals_rng = rng.fork();
        let piece_count = meta.piece_count();
        let limits = DecoderLimits::DEFAULT.with_piece_count(piece_count);
        let mut e = Engine {
            now: 0,
            seq: 0,
            heap: Queue::default(),
            slab: Vec::new(),
            free_slots: Vec::new(),
            deadlines: BTreeSet::new(),
            nodes: Vec::new(),
            links: Vec::new(),
            free_links: Vec::new(),
            piece_len: meta.piece_length(),
            piece_count,
            total: meta.total_length(),
            limits,
            payload,
            meta,
            tracker,
            trace: Trace::default(),
            rng,
            answers: VecDeque::new(),
            bounds: Vec::new(),
            segs: Vec::new(),
            tx_buf: Vec::new(),
            failures: Vec::new(),
            copies: vec![0; piece_count as usize],
            available: 0,
            total_copies: 0,
            completed: 0,
            open_leechers: 0,
            pending_seeds: 0,
            lost_since: None,
            original_seed: NONE,
            seed_sent: Bitfield::new(piece_count),
            seed_sent_count: 0,
            first_leecher_done: false,
            series: Vec::new(),
            steps: 0,
            instant_steps: 0,
            instant: 0,
            connections: 0,
            hash_failed_bytes: 0,
            close_reasons: BTreeMap::new(),
            recorder: None,
            opts,
            sc,
        };
        let groups = e.sc.groups.clone();
        for (gi, g) in groups.iter().enumerate() {
            let cfg = session_config(g, &e.sc.run);
            let mut t = g.arrival.at.0;
            for k in 0..g.count {
                let i = e.nodes.len() as u32;
                let at = if let Some(rate) = g.arrival.poisson {
                    if k > 0 {
                        let mean = (1e6 / rate).round() as u64;
                        t += random_exp(&mut arrivals_rng, mean);
                    }
                    t
                } else if g.arrival.spread.0 > 0 {
                    g.arrival.at.0 + arrivals_rng.below(g.arrival.spread.0 + 1)
                } else {
                    g.arrival.at.0
                };
                if g.seed && e.original_seed == NONE {
                    e.original_seed = i;
                }
                if g.seed {
                    e.pending_seeds += 1;
                } else {
                    e.open_leechers += 1;
                }
                e.nodes.push(Node {
                    session: None,
                    torrent: TorrentId(0),
                    life: Life::Pending,
                    deadline: u64::MAX,
                    group: gi,
                    corrupt: g.behaviour == Behaviour::CorruptData,
                    refuse: g.refuse_incoming,
                    up_rate: g.upload.0,
                    down_rate: g.download.0,
                    ramp: if g.behaviour == Behaviour::SlowStart {
                        g.slow_start.0.max(1)
                    } else {
                        0
                    },
                    latency: g.latency.0,
                    jitter: g.jitter.0,
                    up_busy: 0,
                    down_busy: 0,
                    conns: Vec::new(),
                    live: 0,
                    half_open: 0,
                    max_connections: cfg.max_connections,
                    max_per_torrent: cfg.max_connections_per_torrent,
                    max_half_open: cfg.max_half_open,
                    ephemeral: 0,
                    disk: Disk::default(),
                    depart_scheduled: false,
                    upload_limit_bytes: g
                        .depart
                        .after_upload
                        .map(|m| (m * e.total as f64).ceil() as u64),
                    rec: NodeRecord {
                        group: gi,
                        seed: g.seed,
                        ..NodeRecord::default()
                    },
                });
                e.push(at, Ev::Arrive(i));
            }
        }
        e.push(0, Ev::Sample);
        Ok(e)
    }

    fn push(&mut self, at: u64, ev: Ev) -> u32 {
        self.seq += 1;
        let slot = match self.free_slots.pop() {
            Some(k) => {
                self.slab[k as usize] = Some(ev);
                k
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(at, self.seq, slot);
        slot
    }

    fn pop(&mut self) -> Option<Ev> {
        let (_, slot) = self.heap.pop()?;
        self.free_slots.push(slot);
        self.slab[slot as usize].take()
    }

    fn peek_event(&mut self) -> Option<&Ev> {
        let (_, slot) = self.heap.peek()?;
        self.slab[slot as usize].as_ref()
    }

    fn done(&self) -> bool {
        self.open_leechers == 0
    }

    /// Writes the run's per-node event stream to `r` (see [`crate::record`]); call before
    /// [`Engine::run`]. Observing does not change the run (same trace hash).
    pub fn record(&mut self, mut r: Recorder) {
        r.header(&self.sc, self.opts.seed, &self.meta);
        self.recorder = Some(Box::new(r));
    }

    /// Samples every live node into the record at the instants due up to `t` (the state
    /// cannot change between two steps, so one sample covers a quiet stretch).
    fn record_samples(&mut self, t: u64) {
        let Some(r) = self.recorder.as_mut() else {
            return;
        };
        let due = r.due();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(s) = &n.session {
                r.sample(due, i as u32, s, n.torrent);
            }
        }
        r.advance();
        r.skip_to(t);
    }

    /// Runs to the end: every leecher completed or left, or the time limit.
    pub fn run(mut self) -> Result<RunResult, String> {
        let wall = std::time::Instant::now();
        let mut last_print = wall;
        let max_time = self.sc.run.max_time.0;
        let mut finished = false;
        loop {
            if self.done() {
                finished = true;
                break;
            }
            if self.lost_since.is_some_and(|t| self.now >= t + LOST_GRACE) {
                break;
            }
            let q = self.heap.peek().map(|k| k.0);
            let d = self.deadlines.first().copied();
            let from_queue = match (q, d) {
                (Some(q), Some((d, _))) => q <= d,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let t = if from_queue {
                q.unwrap_or(0)
            } else {
                d.map_or(0, |x| x.0)
            };
            if t > max_time {
                self.now = max_time;
                break;
            }
            self.steps += 1;
            if self.steps > self.sc.run.max_steps {
                return Err(format!(
                    "step limit: {} events without finishing at t={:.3}s (a livelock? raise run.max_steps)",
                    self.sc.run.max_steps,
                    self.now as f64 / 1e6
                ));
            }
            if t == self.instant {
                self.instant_steps += 1;
                if self.instant_steps > self.sc.run.max_steps_per_instant {
                    let what = if from_queue {
                        format!("{:?}", self.peek_event())
                    } else {
                        format!("node {:?}'s deadline", d.map(|x| x.1))
                    };
                    return Err(format!(
                        "livelock: {} events at the same virtual instant t={:.6}s (the last: {what})",
                        self.instant_steps,
                        t as f64 / 1e6
                    ));
                }
            } else {
                self.instant = t;
                self.instant_steps = 0;
            }
            if self.recorder.as_ref().is_some_and(|r| r.due() <= t) {
                self.record_samples(t);
            }
            self.now = t;
            if from_queue {
                if let Some(ev) = self.pop() {
                    self.dispatch(ev);
                }
            } else if let Some((_, node)) = self.deadlines.pop_first() {
                self.nodes[node as usize].deadline = u64::MAX;
                self.trace.add(&[t, u64::from(node), 0xF0]);
                self.input(node, |s, now| s.handle_input(now, Input::Timeout));
            }
            if self.opts.progress && self.steps % 65536 == 0 {
                let el = wall.elapsed();
                if last_print.elapsed() >= Duration::from_secs(1) {
                    last_print = std::time::Instant::now();
                    eprint!(
                        "\r[hive-sim] t={:.1}s  events={}  {:.0} events/s  completed={}  open={}   ",
                        self.now as f64 / 1e6,
                        self.steps,
                        self.steps as f64 / el.as_secs_f64().max(1e-9),
                        self.completed,
                        self.open_leechers
                    );
                }
            }
        }
        if self.opts.progress && wall.elapsed() >= Duration::from_secs(1) {
            eprintln!();
        }
        Ok(self.finish(finished))
    }

    /// No live node holds some piece and no seed is still to arrive: the open leechers can
    /// never complete, so running on to the time limit would only burn time.
    fn data_lost(&self) -> bool {
        self.pending_seeds == 0 && self.available < self.piece_count && self.open_leechers > 0
    }

    fn finish(mut self, finished: bool) -> RunResult {
        self.sample();
        let stop = if finished {
            None
        } else if self.lost_since.is_some() && self.data_lost() {
            Some(format!(
                "data lost: only {} of {} pieces are held by a live node",
                self.available, self.piece_count
            ))
        } else {
            Some(format!(
                "time limit ({}s)",
                self.sc.run.max_time.0 / 1_000_000
            ))
        };
        if let Some(why) = &stop {
            if !self.sc.run.allow_incomplete {
                let open = self.open_leechers;
                fail(
                    &mut self.failures,
                    format!("{open} leecher(s) neither completed nor left: {why}"),
                );
            }
        }
        for n in &mut self.nodes {
            if let Some(s) = &n.session {
                n.rec.stats = s.stats(n.torrent);
            }
        }
        let record_error = self.recorder.take().and_then(|mut r| {
            for (i, n) in self.nodes.iter().enumerate() {
                if let Some(s) = &n.session {
                    r.sample(self.now, i as u32, s, n.torrent);
                }
            }
            r.finish(self.now, finished)
        });
        RunResult {
            record_error,
            trace_hash: self.trace.hex(),
            nodes: self.nodes.into_iter().map(|n| n.rec).collect(),
            series: self.series,
            failures: self.failures,
            finished,
            stopped: stop,
            end_time: self.now,
            events: self.steps,
            connections: self.connections,
            announces: self.tracker.announces,
            hash_failed_bytes: self.hash_failed_bytes,
            close_reasons: self.close_reasons,
            total_length: self.total,
            piece_count: self.piece_count,
            original_seed: self.original_seed,
            seed: self.opts.seed,
            scenario: self.sc,
        }
    }

    // ----- driving one node ---------------------------------------------------------------

    /// Takes node `i`'s Session out (to call it while the engine is borrowed); `None` if the
    /// node is not alive. Give it back with [`Engine::settle`].
    fn take(&mut self, i: u32) -> Option<Box<Session>> {
        let node = &mut self.nodes[i as usize];
        if node.life != Life::Alive {
            return None;
        }
        node.session.take()
    }

    /// Drains node `i`'s Session and feeds the disk answers back at the same instant until it
    /// is quiet; updates its deadline and puts the Session back.
    fn settle(&mut self, i: u32, mut s: Box<Session>) {
        let now = Instant::from_micros(self.now);
        self.drain(i, &mut s);
        while let Some(a) = self.answers.pop_front() {
            let res = match &a {
                Answer::Read(conn, torrent, block, data) => s.handle_input(
                    now,
                    Input::BlockRead {
                        conn: *conn,
                        torrent: *torrent,
                        block: *block,
                        data: Ok(data),
                    },
                ),
                Answer::Written(torrent, block) => s.handle_input(
                    now,
                    Input::BlockWritten {
                        torrent: *torrent,
                        block: *block,
                        result: Ok(()),
                    },
                ),
                Answer::Verified(torrent, piece, ok) => s.handle_input(
                    now,
                    Input::PieceVerified {
                        torrent: *torrent,
                        piece: *piece,
                        ok: *ok,
                    },
                ),
            };
            if let Err(e) = res {
                panic!("simulator misused node {i}'s Session: {e}");
            }
            self.drain(i, &mut s);
        }
        self.nodes[i as usize].session = Some(s);
    }

    /// Runs `f` (an input or a command) on node `i`'s Session, then settles it.
    fn input<R>(
        &mut self,
        i: u32,
        f: impl FnOnce(&mut Session, Instant) -> Result<R, hive_core::session::SessionError>,
    ) -> Option<R> {
        let mut s = self.take(i)?;
        let r = match f(&mut s, Instant::from_micros(self.now)) {
            Ok(r) => Some(r),
            Err(e) => panic!("simulator misused node {i}'s Session: {e}"),
        };
        self.settle(i, s);
        r
    }

    fn set_deadline(&mut self, i: u32, t: u64) {
        let node = &mut self.nodes[i as usize];
        if node.deadline == t {
            return;
        }
        if node.deadline != u64::MAX {
            self.deadlines.remove(&(node.deadline, i));
        }
        node.deadline = t;
        if t != u64::MAX {
            self.deadlines.insert((t, i));
        }
    }

    fn drain(&mut self, i: u32, s: &mut Session) {
        let now = self.now;
        loop {
            match s.poll_output() {
                Output::Timeout(t) => {
                    let t = t.as_micros().max(now);
                    self.set_deadline(i, t);
                    return;
                }
                Output::Connect { conn, addr } => {
                    self.trace.add(&[now, u64::from(i), 1, conn.0]);
                    self.on_connect(i, conn, addr);
                }
                Output::Transmit(conn) => self.on_transmit(i, s, conn),
                Output::Close { conn, reason } => {
                    self.trace.add(&[now, u64::from(i), 3, conn.0]);
                    // Numbers (pieces, counts) out, so that reasons group.
                    let key: String = reason
                        .chars()
                        .map(|c| if c.is_ascii_digit() { '#' } else { c })
                        .collect();
                    *self.close_reasons.entry(key).or_insert(0) += 1;
                    self.on_close(i, conn);
                }
                Output::HttpAnnounce {
                    torrent,
                    request,
                    url,
                } => {
                    self.trace.add(&[now, u64::from(i), 4]);
                    self.trace.add_str(&url);
                    let lat = self.nodes[i as usize].latency + self.sc.tracker.latency.0;
                    self.push(
                        now + lat,
                        Ev::TrackerHttp {
                            node: i,
                            torrent,
                            request,
                            url,
                        },
                    );
                }
                Output::UdpSend {
                    torrent,
                    tracker,
                    packet,
                    ..
                } => {
                    self.trace.add(&[now, u64::from(i), 5, packet.len() as u64]);
                    self.udp_to_tracker(i, torrent, tracker, packet);
                }
                Output::ReadBlock {
                    conn,
                    torrent,
                    block,
                } => {
                    self.trace.add(&[
                        now,
                        u64::from(i),
                        6,
                        conn.0,
                        u64::from(block.index),
                        u64::from(block.begin),
                    ]);
                    let data = self.read_block(i, block);
                    self.answers
                        .push_back(Answer::Read(conn, torrent, block, data));
                }
                Output::WriteBlock {
                    torrent,
                    block,
                    data,
                } => {
                    self.trace.add(&[
                        now,
                        u64::from(i),
                        7,
                        u64::from(block.index),
                        u64::from(block.begin),
                    ]);
                    self.write_block(i, block, &data);
                    self.answers.push_back(Answer::Written(torrent, block));
                }
                Output::VerifyPiece { torrent, piece } => {
                    let ok = self.verify_piece(i, piece);
                    self.trace
                        .add(&[now, u64::from(i), 8, u64::from(piece), u64::from(ok)]);
                    self.answers.push_back(Answer::Verified(torrent, piece, ok));
                }
                Output::Event(ev) => self.on_event(i, s, ev),
            }
        }
    }

    // ----- disk -------------------------------------------------------------------------

    fn block_range(&self, block: BlockRequest) -> (usize, usize) {
        let start = (u64::from(block.index) * self.piece_len + u64::from(block.begin)) as usize;
        (start, start + block.length as usize)
    }

    fn read_block(&mut self, i: u32, block: BlockRequest) -> Bytes {
        let node = &self.nodes[i as usize];
        let has = node
            .disk
            .verified
            .as_ref()
            .is_some_and(|v| v.get(block.index));
        if !has {
            let msg = format!(
                "node {i} read piece {} for a peer but never verified it",
                block.index
            );
            fail(&mut self.failures, msg);
        }
        let (a, b) = self.block_range(block);
        if b > self.payload.len() {
            fail(
                &mut self.failures,
                format!("node {i} read past the end of the torrent: {block:?}"),
            );
            return Bytes::new();
        }
        if node.corrupt {
            let mut v = self.payload[a..b].to_vec();
            for x in &mut v {
                *x ^= 0x5a;
            }
            Bytes::from(v)
        } else {
            self.payload.slice(a..b)
        }
    }

    fn write_block(&mut self, i: u32, block: BlockRequest, data: &[u8]) {
        let (a, b) = self.block_range(block);
        if b > self.payload.len() || data.len() != block.length as usize {
            fail(
                &mut self.failures,
                format!("node {i} wrote an impossible block {block:?}"),
            );
            return;
        }
        let good = self.payload[a..b] == *data;
        let real_hash = self.sc.torrent.real_hash;
        let piece_len = self.meta.piece_len(block.index).unwrap_or(0) as usize;
        let disk = &mut self.nodes[i as usize].disk;
        if disk.verified.as_ref().is_some_and(|v| v.get(block.index)) {
            if !good {
                let msg = format!(
                    "node {i} overwrote verified piece {} with different bytes",
                    block.index
                );
                fail(&mut self.failures, msg);
            }
            return;
        }
        let bit = (block.begin / BLOCK) as usize;
        if good {
            if let Some(mask) = disk.bad.get_mut(&block.index) {
                if let Some(w) = mask.get_mut(bit / 64) {
                    *w &= !(1u64 << (bit % 64));
                }
                if mask.iter().all(|w| *w == 0) {
                    disk.bad.remove(&block.index);
                }
            }
        } else {
            let words = (piece_len.div_ceil(BLOCK as usize)).div_ceil(64);
            let mask = disk
                .bad
                .entry(block.index)
                .or_insert_with(|| vec![0; words]);
            if let Some(w) = mask.get_mut(bit / 64) {
                *w |= 1u64 << (bit % 64);
            }
        }
        if real_hash {
            let buf = disk
                .partial
                .entry(block.index)
                .or_insert_with(|| vec![0; piece_len]);
            let off = block.begin as usize;
            if let Some(dst) = buf.get_mut(off..off + data.len()) {
                dst.copy_from_slice(data);
            }
        }
    }

    fn verify_piece(&mut self, i: u32, piece: u32) -> bool {
        let pc = self.piece_count;
        let disk = &mut self.nodes[i as usize].disk;
        let ok = !disk.bad.contains_key(&piece);
        if self.sc.torrent.real_hash {
            let buf = disk.partial.remove(&piece).unwrap_or_default();
            let hashed = self.meta.piece_hash(piece) == Some(&hash_piece(&buf));
            if hashed != ok {
                let msg = format!(
                    "node {i} piece {piece}: SHA-1 says {hashed}, the written bytes say {ok}"
                );
                fail(&mut self.failures, msg);
            }
        }
        if ok {
            disk.verified
                .get_or_insert_with(|| Bitfield::new(pc))
                .set(piece);
        }
        ok
    }

    // ----- events from the Session ---------------------------------------------------------

    fn on_event(&mut self, i: u32, s: &Session, ev: Event) {
        let now = self.now;
        if let Some(r) = self.recorder.as_mut() {
            r.event(now, i, s, self.nodes[i as usize].torrent, &ev, node_of_ip);
        }
        match ev {
            Event::PieceDone { piece, .. } => {
                self.trace.add(&[now, u64::from(i), 9, u64::from(piece)]);
                self.add_copy(piece);
            }
            Event::HashFailed { piece, .. } => {
                self.trace.add(&[now, u64::from(i), 10, u64::from(piece)]);
                self.nodes[i as usize].rec.hash_failures += 1;
                self.hash_failed_bytes += self.meta.piece_len(piece).unwrap_or(0);
            }
            Event::TorrentComplete { .. } => {
                self.trace.add(&[now, u64::from(i), 11]);
                self.on_complete(i);
            }
            Event::PeerJoined { torrent, conn, .. } => {
                self.trace.add(&[now, u64::from(i), 12, conn.0]);
                let joined = s.stats(torrent).map_or(0, |st| st.peers_connected);
                let max = self.nodes[i as usize].max_per_torrent;
                if joined > max {
                    fail(
                        &mut self.failures,
                        format!(
                            "node {i} has {joined} peers on its torrent, over its limit of {max}"
                        ),
                    );
                }
            }
            Event::PeerLeft { conn, .. } => {
                self.trace.add(&[now, u64::from(i), 13, conn.0]);
            }
            Event::PeerBanned { addr, .. } => {
                self.trace.add(&[now, u64::from(i), 14]);
                self.nodes[i as usize].rec.bans_issued += 1;
                if let Some(j) = node_of_ip(addr.ip()) {
                    if let Some(n) = self.nodes.get_mut(j as usize) {
                        n.rec.banned_by += 1;
                    }
                }
            }
            Event::TorrentError { message, .. } => {
                fail(
                    &mut self.failures,
                    format!("node {i}: torrent error: {message}"),
                );
            }
            Event::TrackerError { .. } | Event::TrackerWarning { .. } => {
                self.trace.add(&[now, u64::from(i), 15]);
            }
            Event::TorrentRemoved { .. } | Event::Stats(_) | Event::ShutdownComplete => {}
        }
    }

    fn add_copy(&mut self, piece: u32) {
        if let Some(c) = self.copies.get_mut(piece as usize) {
            *c += 1;
            self.total_copies += 1;
            if *c == 1 {
                self.available += 1;
            }
        }
    }

    fn on_complete(&mut self, i: u32) {
        let now = self.now;
        let pc = self.piece_count;
        let node = &mut self.nodes[i as usize];
        if node.rec.completed.is_some() {
            return;
        }
        node.rec.completed = Some(now);
        let verified = node.disk.verified.as_ref().map_or(0, Bitfield::count_ones);
        let bad = node.disk.bad.keys().next().copied();
        let seed = node.rec.seed;
        let depart = self.sc.groups[node.group].depart.clone();
        if !seed {
            self.completed += 1;
            self.open_leechers -= 1;
        }
        if verified != pc {
            fail(
                &mut self.failures,
                format!("node {i} completed holding {verified} verified pieces of {pc}"),
            );
        }
        if let Some(p) = bad {
            fail(
                &mut self.failures,
                format!("node {i} completed with bad bytes in piece {p}"),
            );
        }
        if !seed && !self.first_leecher_done {
            self.first_leecher_done = true;
            if self.sc.run.check_seed_copy && self.seed_sent_count < pc {
                let sent = self.seed_sent_count;
                fail(
                    &mut self.failures,
                    format!(
                        "flash crowd: node {i} completed before the original seed had sent every piece ({sent} of {pc})"
                    ),
                );
            }
        }
        if let Some(linger) = depart.after_complete {
            let wait = if depart.random_linger {
                random_exp(&mut self.rng, linger.0)
            } else {
                linger.0
            };
            self.schedule_depart(i, now + wait);
        }
    }

    fn schedule_depart(&mut self, i: u32, at: u64) {
        let node = &mut self.nodes[i as usize];
        if node.depart_scheduled || node.life == Life::Gone {
            return;
        }
        node.depart_scheduled = true;
        self.push(at, Ev::Depart(i));
    }

    // ----- connections ----------------------------------------------------------------

    fn alloc_link(&mut self, a: End, b: End) -> LinkRef {
        let now = self.now;
        if let Some(id) = self.free_links.pop() {
            let l = &mut self.links[id as usize];
            l.generation = l.generation.wrapping_add(1);
            l.ends = [a, b];
            l.connecting = true;
            l.started = now;
            l.in_use = true;
            LinkRef {
                id,
                generation: l.generation,
            }
        } else {
            let id = self.links.len() as u32;
            self.links.push(Link {
                generation: 0,
                ends: [a, b],
                connecting: true,
                started: now,
                in_use: true,
            });
            LinkRef { id, generation: 0 }
        }
    }

    fn link(&mut self, r: LinkRef) -> Option<&mut Link> {
        self.links
            .get_mut(r.id as usize)
            .filter(|l| l.in_use && l.generation == r.generation)
    }

    /// Frees the slot once neither end knows the connection.
    fn maybe_free(&mut self, r: LinkRef) {
        if let Some(l) = self.link(r) {
            if !l.ends[0].alive && !l.ends[1].alive {
                l.in_use = false;
                // Drop the heavy parts now; the slot is reused with fresh ends.
                for e in &mut l.ends {
                    e.unsent = VecDeque::new();
                    e.announced = None;
                    e.decoder = FrameDecoder::default();
                }
                self.free_links.push(r.id);
            }
        }
    }

    fn map_conn(&mut self, i: u32, conn: u64, link: u32) {
        let conns = &mut self.nodes[i as usize].conns;
        let k = conn as usize;
        if conns.len() <= k {
            conns.resize(k + 1, NONE);
        }
        conns[k] = link;
    }

    fn link_of(&self, i: u32, conn: ConnId) -> Option<LinkRef> {
        let id = *self.nodes[i as usize].conns.get(conn.0 as usize)?;
        if id == NONE {
            return None;
        }
        let generation = self.links[id as usize].generation;
        Some(LinkRef { id, generation })
    }

    /// An end stops knowing its connection.
    fn end_dead(&mut self, r: LinkRef, side: usize) {
        let Some(l) = self.link(r) else { return };
        let e = &mut l.ends[side];
        if !e.alive {
            return;
        }
        e.alive = false;
        let (node, conn) = (e.node, e.conn);
        let connecting = side == 0 && l.connecting;
        let n = &mut self.nodes[node as usize];
        if let Some(slot) = n.conns.get_mut(conn as usize) {
            *slot = NONE;
        }
        n.live -= 1;
        if connecting {
            n.half_open -= 1;
        }
    }

    fn path(&self, a: u32, b: u32) -> u64 {
        self.nodes[a as usize].latency + self.nodes[b as usize].latency
    }

    fn on_connect(&mut self, i: u32, conn: ConnId, addr: SocketAddr) {
        let now = self.now;
        let limits = self.limits;
        let mut a = End::new(i, conn.0, limits);
        a.alive = true;
        let target = node_of_ip(addr.ip()).filter(|j| (*j as usize) < self.nodes.len() && *j != i);
        let b = End::new(target.unwrap_or(NONE), u64::MAX, limits);
        let r = self.alloc_link(a, b);
        self.map_conn(i, conn.0, r.id);
        let n = &mut self.nodes[i as usize];
        n.live += 1;
        n.half_open += 1;
        n.rec.peak_connections = n.rec.peak_connections.max(n.live);
        if n.half_open as usize > n.max_half_open {
            let (h, m) = (n.half_open, n.max_half_open);
            fail(
                &mut self.failures,
                format!("node {i} has {h} connection attempts in flight, over its limit of {m}"),
            );
        }
        if n.live as usize > n.max_connections {
            let (l, m) = (n.live, n.max_connections);
            fail(
                &mut self.failures,
                format!("node {i} has {l} connections, over its limit of {m}"),
            );
        }
        match target {
            Some(j) if addr.port() == LISTEN_PORT => {
                let at = now + self.path(i, j);
                self.push(at, Ev::Syn(r));
            }
            _ => {
                // Nobody there: the attempt times out.
                let at = now + self.sc.run.connect_timeout.0;
                self.push(at, Ev::Refused(r));
            }
        }
    }

    fn on_syn(&mut self, r: LinkRef) {
        let now = self.now;
        let Some(l) = self.link(r) else { return };
        if !l.ends[0].alive {
            // The initiator gave up before the SYN arrived.
            self.maybe_free(r);
            return;
        }
        let (i, j, started) = (l.ends[0].node, l.ends[1].node, l.started);
        let target = &self.nodes[j as usize];
        let path = self.path(i, j);
        if target.life != Life::Alive {
            let at = (started + self.sc.run.connect_timeout.0).max(now);
            self.push(at, Ev::Refused(r));
            return;
        }
        if target.refuse {
            self.push(now + path, Ev::Refused(r));
            return;
        }
        let n = &mut self.nodes[i as usize];
        n.ephemeral = n.ephemeral.wrapping_add(1);
        let port = 49152 + (n.ephemeral % 16384);
        let from = SocketAddr::V4(SocketAddrV4::new(node_ip(i), port));
        self.trace.add(&[now, u64::from(j), 0xF1, u64::from(i)]);
        let Some(mut s) = self.take(j) else { return };
        let accepted = s.accept(Instant::from_micros(now), from);
        match accepted {
            Ok(id) => {
                // Map the connection before the drain, which may already use it.
                self.map_conn(j, id.0, r.id);
                let synack = now + path;
                if let Some(l) = self.link(r) {
                    let e = &mut l.ends[1];
                    e.conn = id.0;
                    e.alive = true;
                    e.last_arrival = synack;
                }
                let n = &mut self.nodes[j as usize];
                n.live += 1;
                n.rec.peak_connections = n.rec.peak_connections.max(n.live);
                if n.live as usize > n.max_connections {
                    let (l, m) = (n.live, n.max_connections);
                    fail(
                        &mut self.failures,
                        format!("node {j} has {l} connections, over its limit of {m}"),
                    );
                }
                self.push(synack, Ev::SynAck(r));
            }
            Err(_) => {
                self.push(now + path, Ev::Refused(r));
            }
        }
        self.settle(j, s);
    }

    fn on_synack(&mut self, r: LinkRef) {
        let Some(l) = self.link(r) else { return };
        l.connecting = false;
        let e = &l.ends[0];
        if !e.alive {
            return;
        }
        let (i, conn) = (e.node, ConnId(e.conn));
        let j = l.ends[1].node;
        self.nodes[i as usize].half_open -= 1;
        self.nodes[i as usize].rec.connections += 1;
        self.nodes[j as usize].rec.connections += 1;
        self.connections += 1;
        self.trace.add(&[self.now, u64::from(i), 0xF2, conn.0]);
        self.input(i, |s, now| s.handle_input(now, Input::Connected(conn)));
    }

    fn on_refused(&mut self, r: LinkRef) {
        let Some(l) = self.link(r) else { return };
        let e = &l.ends[0];
        if !e.alive {
            self.maybe_free(r);
            return;
        }
        let (i, conn) = (e.node, ConnId(e.conn));
        self.end_dead(r, 0);
        if let Some(l) = self.link(r) {
            l.connecting = false;
        }
        self.maybe_free(r);
        self.nodes[i as usize].rec.connect_failures += 1;
        self.trace.add(&[self.now, u64::from(i), 0xF3, conn.0]);
        self.input(i, |s, now| s.handle_input(now, Input::ConnectFailed(conn)));
    }

    fn on_close(&mut self, i: u32, conn: ConnId) {
        let Some(r) = self.link_of(i, conn) else {
            return;
        };
        let now = self.now;
        let side = usize::from(self.links[r.id as usize].ends[0].node != i);
        self.end_dead(r, side);
        let other = 1 - side;
        let Some(l) = self.link(r) else { return };
        if l.ends[other].alive {
            let j = l.ends[other].node;
            let last = l.ends[side].last_arrival;
            let at = (now + self.path(i, j)).max(last);
            self.push(at, Ev::Fin(r, other as u8));
        } else {
            self.maybe_free(r);
        }
    }

    fn on_fin(&mut self, r: LinkRef, to: usize) {
        let Some(l) = self.link(r) else { return };
        let e = &l.ends[to];
        if !e.alive {
            return;
        }
        let (j, conn) = (e.node, ConnId(e.conn));
        self.end_dead(r, to);
        self.maybe_free(r);
        self.trace.add(&[self.now, u64::from(j), 0xF4, conn.0]);
        self.input(j, |s, now| s.handle_input(now, Input::Closed(conn)));
    }

    fn on_transmit(&mut self, i: u32, s: &mut Session, conn: ConnId) {
        let now = self.now;
        let Some(r) = self.link_of(i, conn) else {
            // Not ours (cannot happen): take the bytes so the Session does not grow.
            let mut sink = Vec::new();
            s.poll_transmit(conn, &mut sink);
            return;
        };
        let side = usize::from(self.links[r.id as usize].ends[0].node != i);
        let sndbuf = self.sc.run.send_buffer.0;
        {
            let e = &mut self.links[r.id as usize].ends[side];
            e.prune(now);
            if e.unsent_bytes >= sndbuf {
                e.blocked = true;
                self.schedule_wake(r, side);
                return;
            }
        }
        let mut buf = std::mem::take(&mut self.tx_buf);
        buf.clear();
        let n = s.poll_transmit(conn, &mut buf);
        if n == 0 {
            self.tx_buf = buf;
            return;
        }
        self.trace.add(&[now, u64::from(i), 2, conn.0, n as u64]);
        self.observe(r, side, &buf);
        let j = self.links[r.id as usize].ends[1 - side].node;
        let path = self.path(i, j);
        let jitter = self.nodes[i as usize].jitter + self.nodes[j as usize].jitter;
        let (up_rate, down_rate) = (
            self.rate_now(i, self.nodes[i as usize].up_rate),
            self.rate_now(j, self.nodes[j as usize].down_rate),
        );
        self.nodes[i as usize].rec.bytes_sent += n as u64;
        // Segments: cut at the first frame boundary at or past SEGMENT bytes (or the end).
        let bounds = std::mem::take(&mut self.bounds);
        let mut segs = std::mem::take(&mut self.segs);
        segs.clear();
        let (mut cut, mut k) = (0usize, 0usize);
        while cut < n {
            let mut end = n;
            while let Some(&b) = bounds.get(k) {
                k += 1;
                if b >= cut + SEGMENT {
                    end = b;
                    break;
                }
            }
            segs.push((cut, end));
            cut = end;
        }
        self.bounds = bounds;
        // The payload of each segment: inline when small, else the buffer itself (one
        // segment) or slices of it.
        let mut shared = None;
        if n <= INLINE {
            self.tx_buf = buf;
        } else {
            shared = Some(Bytes::from(buf));
        }
        let single = segs.len() == 1;
        for &(cut, end) in &segs {
            let len = (end - cut) as u64;
            let start = now.max(self.nodes[i as usize].up_busy);
            let up_end = start + tx_time(len, up_rate);
            self.nodes[i as usize].up_busy = up_end;
            let dstart = start.max(self.nodes[j as usize].down_busy);
            let down_end = dstart + tx_time(len, down_rate);
            self.nodes[j as usize].down_busy = down_end;
            let left_at = up_end.max(down_end);
            let extra = if jitter > 0 {
                self.rng.below(jitter + 1)
            } else {
                0
            };
            let e = &mut self.links[r.id as usize].ends[side];
            e.unsent.push_back((left_at, len as u32));
            e.unsent_bytes += len;
            if single && n <= COALESCE {
                // Join the previous segment if it still waits for the uplink (then its event
                // is still queued: it arrives after it starts) and stays small.
                let joined = e.tail.filter(|t| t.start > now).and_then(|t| {
                    match self.slab.get_mut(t.slot as usize) {
                        Some(Some(Ev::Data(to, _, p))) if *to == r && p.len() + n <= COALESCE => {
                            Some(p)
                        }
                        _ => None,
                    }
                });
                if let Some(p) = joined {
                    let bytes = match &shared {
                        None => &self.tx_buf[..n],
                        Some(data) => &data[..],
                    };
                    p.append(bytes);
                    continue;
                }
            }
            let at = (left_at + path + extra).max(e.last_arrival);
            e.last_arrival = at;
            let payload = match &mut shared {
                None => {
                    let mut b = [0u8; INLINE];
                    b[..n].copy_from_slice(&self.tx_buf[..n]);
                    Payload::Inline(n as u8, b)
                }
                Some(data) if single => Payload::Shared(std::mem::take(data)),
                Some(data) => Payload::Shared(data.slice(cut..end)),
            };
            let slot = self.push(at, Ev::Data(r, (1 - side) as u8, payload));
            self.links[r.id as usize].ends[side].tail = Some(Tail { slot, start });
        }
        self.segs = segs;
        if let Some(limit) = self.nodes[i as usize].upload_limit_bytes {
            if self.nodes[i as usize].rec.uploaded >= limit {
                self.schedule_depart(i, now);
            }
        }
    }

    /// A node's rate now: slow-start nodes ramp linearly from 10 % to 100 % (integer
    /// arithmetic, so every machine agrees).
    fn rate_now(&self, i: u32, rate: u64) -> u64 {
        let n = &self.nodes[i as usize];
        if n.ramp == 0 || rate == 0 {
            return rate;
        }
        let since = self
            .now
            .saturating_sub(n.rec.arrived.unwrap_or(0))
            .min(n.ramp);
        let permille = 100 + (900 * u128::from(since) / u128::from(n.ramp)) as u64;
        (rate * permille / 1000).max(1)
    }

    fn schedule_wake(&mut self, r: LinkRef, side: usize) {
        let low = self.sc.run.send_buffer.0 / 2;
        let e = &mut self.links[r.id as usize].ends[side];
        let at = e.drained_at(low).max(self.now);
        if e.wake_at <= at {
            return;
        }
        e.wake_at = at;
        self.push(at, Ev::Wake(r, side as u8));
    }

    fn on_wake(&mut self, r: LinkRef, side: usize) {
        let now = self.now;
        let low = self.sc.run.send_buffer.0 / 2;
        let Some(l) = self.link(r) else { return };
        let e = &mut l.ends[side];
        if e.wake_at != now {
            return; // superseded by an earlier wake-up
        }
        e.wake_at = u64::MAX;
        if !e.alive || !e.blocked {
            return;
        }
        e.prune(now);
        if e.unsent_bytes > low {
            self.schedule_wake(r, side);
            return;
        }
        e.blocked = false;
        let (i, conn) = (e.node, ConnId(e.conn));
        self.trace.add(&[now, u64::from(i), 0xF5, conn.0]);
        self.input(i, |s, now| s.handle_input(now, Input::Writable(conn)));
    }

    fn on_data(&mut self, r: LinkRef, to: usize, data: Payload) {
        let Some(l) = self.link(r) else { return };
        let e = &l.ends[to];
        if !e.alive {
            return;
        }
        let (j, conn) = (e.node, ConnId(e.conn));
        self.trace.add(&[
            self.now,
            u64::from(j),
            0xF6,
            conn.0,
            data.as_slice().len() as u64,
        ]);
        self.input(j, |s, now| {
            s.handle_input(now, Input::Received(conn, data.as_slice()))
        });
    }

    /// Decodes what `side` sends (the simulator's own view of the wire, independent of the
    /// core): records announcements, checks requests against them, counts payload, and
    /// collects frame boundaries for segmentation.
    fn observe(&mut self, r: LinkRef, side: usize, buf: &[u8]) {
        self.bounds.clear();
        let pc = self.piece_count;
        let [e0, e1] = &mut self.links[r.id as usize].ends;
        let (me, them) = if side == 0 { (e0, e1) } else { (e1, e0) };
        let (i, j) = (me.node, them.node);
        let mut input = buf;
        let skip = me.skip.min(input.len());
        me.skip -= skip;
        input = &input[skip..];
        if skip > 0 {
            self.bounds.push(skip);
        }
        let mut payload = 0u64;
        let mut problems: Vec<String> = Vec::new();
        let mut seed_pieces: Vec<u32> = Vec::new();
        let from_seed = i == self.original_seed;
        loop {
            let msg = match me.decoder.decode(&mut input) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    problems.push(format!("node {i} sent bytes that do not decode: {e}"));
                    break;
                }
            };
            match msg {
                Message::Have(p) => {
                    me.announced.get_or_insert_with(|| Bitfield::new(pc)).set(p);
                }
                Message::Bitfield(bits) => match Bitfield::from_bytes(bits, pc) {
                    Ok(b) => me.announced = Some(b),
                    Err(e) => problems.push(format!("node {i} sent a bad bitfield: {e}")),
                },
                Message::HaveAll => me.announced = Some(Bitfield::full(pc)),
                Message::Request(b) => {
                    let has = them.announced.as_ref().is_some_and(|a| a.get(b.index));
                    if !has {
                        problems.push(format!(
                            "node {i} requested piece {} from node {j}, which never announced it",
                            b.index
                        ));
                    }
                }
                Message::Piece { index, data, .. } => {
                    payload += data.len() as u64;
                    if from_seed {
                        seed_pieces.push(index);
                    }
                }
                _ => {}
            }
            self.bounds.push(buf.len() - input.len());
        }
        self.nodes[i as usize].rec.uploaded += payload;
        if let Some(n) = self.nodes.get_mut(j as usize) {
            n.rec.downloaded += payload;
        }
        for p in seed_pieces {
            if self.seed_sent.set(p) {
                self.seed_sent_count += 1;
            }
        }
        for p in problems {
            fail(&mut self.failures, p);
        }
    }

    // ----- trackers -------------------------------------------------------------------

    fn udp_hop(&mut self, i: u32) -> Option<u64> {
        let t = &self.sc.tracker;
        let (loss, jitter) = (t.loss, t.jitter.0);
        let base = self.nodes[i as usize].latency + t.latency.0;
        if loss > 0.0 && self.rng.below(1_000_000) < (loss * 1e6) as u64 {
            return None;
        }
        let extra = if jitter > 0 {
            self.rng.below(jitter + 1)
        } else {
            0
        };
        Some(self.now + base + extra)
    }

    fn duplicated(&mut self) -> bool {
        let d = self.sc.tracker.duplicate;
        d > 0.0 && self.rng.below(1_000_000) < (d * 1e6) as u64
    }

    fn udp_to_tracker(&mut self, i: u32, torrent: TorrentId, tracker: TrackerId, packet: Vec<u8>) {
        let copies = if self.duplicated() { 2 } else { 1 };
        for _ in 0..copies {
            if let Some(at) = self.udp_hop(i) {
                self.push(
                    at,
                    Ev::TrackerUdp {
                        node: i,
                        torrent,
                        tracker,
                        packet: packet.clone(),
                    },
                );
            }
        }
    }

    // ----- arrivals and departures -------------------------------------------------------

    fn arrive(&mut self, i: u32) {
        let now = self.now;
        let g = self.sc.groups[self.nodes[i as usize].group].clone();
        let seed_value =
            Rng::new(self.opts.seed ^ (u64::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .next_u64();
        let mut s = Box::new(Session::new(
            session_config(&g, &self.sc.run),
            seed_value,
            Instant::from_micros(now),
        ));
        let have = g.seed.then(|| Bitfield::full(self.piece_count));
        let torrent = s
            .add_torrent(Instant::from_micros(now), self.meta.clone(), have.as_ref())
            .map_err(|e| format!("node {i}: {e}"));
        let torrent = match torrent {
            Ok(t) => t,
            Err(e) => {
                fail(&mut self.failures, e);
                return;
            }
        };
        {
            let n = &mut self.nodes[i as usize];
            n.torrent = torrent;
            n.life = Life::Alive;
            n.rec.arrived = Some(now);
            n.session = Some(s);
        }
        if g.seed {
            self.pending_seeds -= 1;
            self.nodes[i as usize].disk.verified = have;
            for p in 0..self.piece_count {
                self.add_copy(p);
            }
            self.nodes[i as usize].rec.completed = Some(now);
        }
        if let Some(after) = g.depart.after {
            let wait = if g.depart.random_after {
                random_exp(&mut self.rng, after.0)
            } else {
                after.0
            };
            self.schedule_depart(i, now + wait);
        }
        self.trace.add(&[now, u64::from(i), 0xF7]);
        if let Some(r) = self.recorder.as_mut() {
            r.arrive(now, i, g.seed);
        }
        // The Session has announces queued: drain them.
        self.input(i, |_, _| Ok(()));
    }

    fn depart(&mut self, i: u32) {
        let now = self.now;
        if self.nodes[i as usize].life != Life::Alive {
            return;
        }
        self.trace.add(&[now, u64::from(i), 0xF8]);
        if let Some(r) = self.recorder.as_mut() {
            r.depart(now, i);
        }
        let g = &self.sc.groups[self.nodes[i as usize].group];
        let crash = g.depart.crash;
        if !crash {
            self.input(i, |s, now| s.shutdown(now));
        }
        // Whatever connections are left (all of them after a crash) die silently or with a
        // FIN, and the tracker forgets the node.
        let conns: Vec<(u64, u32)> = self.nodes[i as usize]
            .conns
            .iter()
            .enumerate()
            .filter(|(_, l)| **l != NONE)
            .map(|(c, l)| (c as u64, *l))
            .collect();
        for (c, _) in conns {
            if let Some(r) = self.link_of(i, ConnId(c)) {
                if crash {
                    let side = usize::from(self.links[r.id as usize].ends[0].node != i);
                    self.end_dead(r, side);
                    self.maybe_free(r);
                } else {
                    self.on_close(i, ConnId(c));
                }
            }
        }
        if !crash {
            self.tracker.forget(i);
        }
        let n = &mut self.nodes[i as usize];
        if let Some(s) = n.session.take() {
            n.rec.stats = s.stats(n.torrent);
        }
        n.life = Life::Gone;
        n.rec.departed = Some(now);
        let deadline = n.deadline;
        n.deadline = u64::MAX;
        if deadline != u64::MAX {
            self.deadlines.remove(&(deadline, i));
        }
        if n.rec.completed.is_none() && !n.rec.seed {
            self.open_leechers -= 1;
        }
        // Its pieces leave the swarm (the core's view is what it announced: PieceDone).
        let verified = n.disk.verified.take();
        n.disk = Disk::default();
        if let Some(v) = verified {
            for p in v.iter_ones() {
                if let Some(c) = self.copies.get_mut(p as usize) {
                    *c -= 1;
                    self.total_copies -= 1;
                    if *c == 0 {
                        self.available -= 1;
                    }
                }
            }
        }
    }

    fn sample(&mut self) {
        let alive = self.nodes.iter().filter(|n| n.life == Life::Alive).count() as u32;
        self.series.push(Sample {
            t: self.now as f64 / 1e6,
            available: self.available,
            copies: self.total_copies as f64 / f64::from(self.piece_count.max(1)),
            nodes: alive,
            completed: self.completed,
        });
    }

    // ----- dispatch ---------------------------------------------------------------------

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive(i) => self.arrive(i),
            Ev::Depart(i) => self.depart(i),
            Ev::Syn(r) => self.on_syn(r),
            Ev::SynAck(r) => self.on_synack(r),
            Ev::Refused(r) => self.on_refused(r),
            Ev::Data(r, to, data) => self.on_data(r, usize::from(to), data),
            Ev::Fin(r, to) => self.on_fin(r, usize::from(to)),
            Ev::Wake(r, side) => self.on_wake(r, usize::from(side)),
            Ev::TrackerHttp {
                node,
                torrent,
                request,
                url,
            } => {
                let body =
                    self.tracker
                        .http(Instant::from_micros(self.now), node, node_ip(node), &url);
                let at = self.now + self.nodes[node as usize].latency + self.sc.tracker.latency.0;
                self.push(
                    at,
                    Ev::HttpReply {
                        node,
                        torrent,
                        request,
                        body,
                    },
                );
            }
            Ev::HttpReply {
                node,
                torrent,
                request,
                body,
            } => {
                self.trace
                    .add(&[self.now, u64::from(node), 0xF9, body.len() as u64]);
                self.input(node, |s, now| {
                    s.handle_input(
                        now,
                        Input::TrackerResponse {
                            torrent,
                            request,
                            body: &body,
                        },
                    )
                });
            }
            Ev::TrackerUdp {
                node,
                torrent,
                tracker,
                packet,
            } => {
                let reply =
                    self.tracker
                        .udp(Instant::from_micros(self.now), node, node_ip(node), &packet);
                if let Some(data) = reply {
                    let copies = if self.duplicated() { 2 } else { 1 };
                    for _ in 0..copies {
                        if let Some(at) = self.udp_hop(node) {
                            self.push(
                                at,
                                Ev::UdpReply {
                                    node,
                                    torrent,
                                    tracker,
                                    data: data.clone(),
                                },
                            );
                        }
                    }
                }
            }
            Ev::UdpReply {
                node,
                torrent,
                tracker,
                data,
            } => {
                self.trace
                    .add(&[self.now, u64::from(node), 0xFA, data.len() as u64]);
                let from = SocketAddr::V4(SocketAddrV4::new(TRACKER_IP, UDP_PORT));
                self.input(node, |s, now| {
                    s.handle_input(
                        now,
                        Input::TrackerPacket {
                            torrent,
                            tracker,
                            from,
                            data: &data,
                        },
                    )
                });
            }
            Ev::Sample => {
                self.sample();
                if !self.data_lost() {
                    self.lost_since = None;
                } else if self.lost_since.is_none() {
                    self.lost_since = Some(self.now);
                }
                if !self.done() {
                    let at = self.now + self.sc.run.sample_every.0;
                    self.push(at, Ev::Sample);
                }
            }
        }
    }
}
