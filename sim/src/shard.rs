//! One shard of the engine: a fixed set of nodes (or the tracker) with their own event
//! queues and deadlines, and the shard's trace and counters. A shard runs a window on its own (see the module docs
//! of [`crate::engine`]): nothing it does reaches another shard before the window ends, so
//! shards run in parallel and the leader merges what they report at the barrier.

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hive_core::announce::{RequestId, TrackerId};
use hive_core::bitfield::Bitfield;
use hive_core::metainfo::Metainfo;
use hive_core::piece_hash::hash_piece;
use hive_core::rng::Rng;
use hive_core::session::{ConnId, Event, Input, Output, Session, SessionConfig, TorrentId};
use hive_core::time::Instant;
use hive_core::wire::{BlockRequest, DecoderLimits, FrameDecoder, Message};

use crate::engine::{LISTEN_PORT, NodeRecord, node_ip, node_of_ip};
use crate::link::{COALESCE, Half, Halves, NO_CONN, Payload, Tail, runs};
use crate::queue::Queue;
use crate::record::RecShard;
use crate::scenario::{Behaviour, GroupSpec, RunSpec, Scenario};
use crate::trace::Trace;
use crate::tracker::{TRACKER_IP, Tracker, UDP_PORT};

/// Segments are cut at the first frame boundary past this many bytes.
const SEGMENT: usize = 16 * 1024;
const BLOCK: u32 = 16 * 1024;
pub(crate) const NONE: u32 = u32::MAX;

/// What every shard reads and none writes during a run.
pub(crate) struct Ctx {
    pub sc: Scenario,
    pub payload: Bytes,
    pub meta: Metainfo,
    pub piece_len: u64,
    pub piece_count: u32,
    pub limits: DecoderLimits,
    /// Node shards (the tracker's shard comes after them).
    pub shards: usize,
    /// The least time anything takes from one node to another (`u64::MAX`: one node).
    pub lookahead_nodes: u64,
    /// The least time anything takes between a node and the tracker.
    pub lookahead_tracker: u64,
    pub original_seed: u32,
    pub nodes: u32,
    /// Per node: one-way latency and jitter of its access link.
    pub latency: Vec<u64>,
    pub jitter: Vec<u64>,
    pub seed: u64,
}

impl Ctx {
    pub(crate) fn shard_of(&self, node: u32) -> usize {
        node as usize % self.shards
    }

    pub(crate) fn local(&self, node: u32) -> usize {
        node as usize / self.shards
    }

    pub(crate) fn tracker_shard(&self) -> usize {
        self.shards
    }

    fn path(&self, a: u32, b: u32) -> u64 {
        self.latency[a as usize] + self.latency[b as usize]
    }

    fn to_tracker(&self, node: u32) -> u64 {
        self.latency[node as usize] + self.sc.tracker.latency.0
    }
}

/// One window, as the leader set it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// The window's number (its parity picks the mailboxes).
    pub index: u64,
    /// Node shards process the events strictly before this.
    pub end: u64,
    /// The tracker's shard processes the events strictly before this.
    pub tracker_end: u64,
    /// Events processed before the window (the step limit).
    pub steps: u64,
}

/// Events crossing shards wait here between windows: box (parity, destination, source).
/// A window's events go into the boxes of its parity and are taken by the destination at the
/// start of the next window, in source order, so the order of delivery never depends on which
/// thread ran which shard.
pub(crate) struct Mail {
    n: usize,
    boxes: Vec<Mutex<Vec<(u64, Ev)>>>,
    /// Per (parity, destination): a bit per source whose box holds mail, so that a shard
    /// locks only those. With a short lookahead most windows carry little mail, and locking
    /// every box of every shard (65 x 64 of them) was most of a window's cost.
    full: Vec<AtomicU64>,
}

impl Mail {
    pub(crate) fn new(n: usize) -> Mail {
        Mail {
            n,
            boxes: (0..2 * n * n).map(|_| Mutex::new(Vec::new())).collect(),
            full: (0..2 * n * n.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn slot(&self, parity: u64, dst: usize, src: usize) -> &Mutex<Vec<(u64, Ev)>> {
        &self.boxes[(parity as usize * self.n + dst) * self.n + src]
    }

    /// The flag words of (parity, destination).
    fn flags(&self, parity: u64, dst: usize) -> &[AtomicU64] {
        let words = self.n.div_ceil(64);
        let at = (parity as usize * self.n + dst) * words;
        self.full.get(at..at + words).unwrap_or(&[])
    }

    /// Notes that box (parity, dst, src) holds mail.
    fn mark(&self, parity: u64, dst: usize, src: usize) {
        if let Some(w) = self.flags(parity, dst).get(src / 64) {
            w.fetch_or(1 << (src % 64), Ordering::AcqRel);
        }
    }

    /// The sources with mail for (parity, dst), in increasing order; clears their flags.
    fn take_sources(&self, parity: u64, dst: usize, out: &mut Vec<usize>) {
        out.clear();
        for (k, w) in self.flags(parity, dst).iter().enumerate() {
            let mut bits = w.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                out.push(k * 64 + b);
                bits &= bits - 1;
            }
        }
    }
}

#[derive(Debug)]
pub(crate) enum Ev {
    Arrive(u32),
    Depart(u32),
    /// The SYN reaches the acceptor `to`.
    Syn {
        to: u32,
        from: u32,
        conn: u64,
        port: u16,
        started: u64,
    },
    /// The SYN-ACK reaches the initiator.
    SynAck {
        to: u32,
        conn: u64,
        peer_conn: u64,
    },
    /// The initiator learns the connection failed (RST or timeout).
    Refused {
        to: u32,
        conn: u64,
    },
    /// A segment's last byte reaches the receiver's downlink (its first byte reached it at
    /// `first`).
    Data {
        to: u32,
        conn: u64,
        first: u64,
        data: Payload,
    },
    /// A segment that waited behind the receiver's downlink is through it.
    Deliver {
        to: u32,
        conn: u64,
        data: Payload,
    },
    Fin {
        to: u32,
        conn: u64,
    },
    Wake {
        node: u32,
        conn: u64,
    },
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
    /// A departing node's `stopped`, taken as delivered: the tracker forgets it.
    Forget(u32),
}

impl Ev {
    /// The node the event is for (`None`: the tracker).
    fn dest(&self) -> Option<u32> {
        match *self {
            Ev::Arrive(i) | Ev::Depart(i) => Some(i),
            Ev::Syn { to, .. }
            | Ev::SynAck { to, .. }
            | Ev::Refused { to, .. }
            | Ev::Data { to, .. }
            | Ev::Deliver { to, .. }
            | Ev::Fin { to, .. } => Some(to),
            Ev::Wake { node, .. } | Ev::HttpReply { node, .. } | Ev::UdpReply { node, .. } => {
                Some(node)
            }
            Ev::TrackerHttp { .. } | Ev::TrackerUdp { .. } | Ev::Forget(_) => None,
        }
    }
}

/// An event in a node's queue, ordered by (time, sequence), earliest first.
#[derive(Debug)]
struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: `BinaryHeap` is a max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A node's pending events: a heap, plus a FIFO for the segments through its downlink.
/// The downlink serialises them, so they come due in the order they are queued; keeping them
/// out of the heap saves a push and a pop of a large entry for one event in eight of a flash
/// crowd. Both hold (time, sequence) keys from the shard's one counter, and `peek`/`pop`
/// take the smaller of the two heads: the order is that of one heap.
#[derive(Debug, Default)]
struct Inbox {
    heap: BinaryHeap<Queued>,
    fifo: VecDeque<Queued>,
}

impl Inbox {
    fn push(&mut self, q: Queued) {
        self.heap.push(q);
    }

    /// Queues `q`, due no earlier than everything queued here before.
    fn push_in_order(&mut self, q: Queued) {
        debug_assert!(
            self.fifo
                .back()
                .is_none_or(|b| (b.at, b.seq) < (q.at, q.seq))
        );
        self.fifo.push_back(q);
    }

    /// Whether the FIFO's head comes before the heap's.
    fn fifo_first(&self) -> bool {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(h)) => (f.at, f.seq) < (h.at, h.seq),
            (f, _) => f.is_some(),
        }
    }

    fn peek(&self) -> Option<&Queued> {
        if self.fifo_first() {
            self.fifo.front()
        } else {
            self.heap.peek()
        }
    }

    /// Every queued event, in no particular order.
    fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.heap.iter().chain(&self.fifo)
    }

    fn pop(&mut self) -> Option<Queued> {
        if self.fifo_first() {
            self.fifo.pop_front()
        } else {
            self.heap.pop()
        }
    }
}

/// Per-node state of the simulated disk.
#[derive(Debug, Default)]
pub(crate) struct Disk {
    /// Pieces with bad blocks: piece -> bitmask of bad blocks.
    bad: BTreeMap<u32, Vec<u64>>,
    /// Pieces whose written bytes passed verification (the truth, not the core's view).
    verified: Option<Bitfield>,
    /// `real_hash` only: pieces being written, assembled for SHA-1.
    partial: BTreeMap<u32, Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    Pending,
    Alive,
    Gone,
}

pub(crate) struct Node {
    pub session: Option<Box<Session>>,
    pub torrent: TorrentId,
    pub life: Life,
    /// Its events, earliest first (inline: popping one touches only this node's memory).
    queue: Inbox,
    /// The Session's next deadline (`u64::MAX`: none); a queued event at the same time
    /// comes first.
    deadline: u64,
    /// Tails that may still be joined: (start, serial, conn), in start order (the uplink
    /// serialises them).
    held: VecDeque<(u64, u64, u64)>,
    /// The livelock check: the last instant and the events at it.
    instant: u64,
    instant_steps: u64,
    group: usize,
    corrupt: bool,
    refuse: bool,
    up_rate: u64,
    down_rate: u64,
    /// Slow-start nodes: their rates ramp from a tenth to full over this long after arrival.
    ramp: u64,
    up_busy: u64,
    down_busy: u64,
    /// ConnId -> slot in `halves`.
    conns: Vec<u32>,
    halves: Halves,
    free_halves: Vec<u32>,
    live: u32,
    half_open: u32,
    max_connections: usize,
    max_per_torrent: usize,
    max_half_open: usize,
    ephemeral: u16,
    disk: Disk,
    depart_scheduled: bool,
    upload_limit_bytes: Option<u64>,
    /// Jitter, linger and UDP loss draws: the node's own, forked from the run's seed.
    rng: Rng,
    /// The original seed only: pieces it has sent at least once.
    seed_sent: Option<Bitfield>,
    pub rec: NodeRecord,
}

impl Node {
    /// A node of group `g` (`gi`) that has not arrived yet.
    pub(crate) fn new(i: u32, gi: usize, g: &GroupSpec, run: &RunSpec, ctx: &Ctx) -> Node {
        let cfg = session_config(g, run);
        let total = ctx.meta.total_length();
        Node {
            session: None,
            torrent: TorrentId(0),
            life: Life::Pending,
            queue: Inbox::default(),
            deadline: u64::MAX,
            held: VecDeque::new(),
            instant: 0,
            instant_steps: 0,
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
            up_busy: 0,
            down_busy: 0,
            conns: Vec::new(),
            halves: Halves::default(),
            free_halves: Vec::new(),
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
                .map(|m| (m * total as f64).ceil() as u64),
            rng: Rng::new(
                ctx.seed
                    ^ 0x6c69_6e6b_7367_0000
                    ^ (u64::from(i) + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
            ),
            seed_sent: (i == ctx.original_seed).then(|| Bitfield::new(ctx.piece_count)),
            rec: NodeRecord {
                group: gi,
                seed: g.seed,
                ..NodeRecord::default()
            },
        }
    }
}

/// A disk answer to feed back at the same instant.
enum Answer {
    Read(ConnId, TorrentId, BlockRequest, Bytes),
    Written(TorrentId, BlockRequest),
    Verified(TorrentId, u32, bool),
}

/// What a shard hands the leader at a barrier (the leader resets it).
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub steps: u64,
    /// Leechers that completed.
    pub completed: u32,
    /// Leechers that completed or left before completing, and when the last did.
    pub closed: u32,
    pub last_closed: u64,
    pub seeds_arrived: u32,
    /// Copies gained (true) and lost (false) per piece, in order.
    pub copies: Vec<(u32, bool)>,
    pub connections: u64,
    pub hash_failed_bytes: u64,
    pub failures: Vec<String>,
    /// The earliest leecher completion in the window: (time, node).
    pub first_leecher: Option<(u64, u32)>,
    /// Pieces the original seed has sent, if it is here.
    pub seed_sent: Option<u32>,
    /// The earliest time anything is pending here or was sent from here, at node shards
    /// and at the tracker.
    pub next_nodes: u64,
    pub next_tracker: u64,
    /// The time of the last event processed.
    pub now: u64,
}

/// Records a broken check (the first 100; the count of the rest is not interesting).
pub(crate) fn fail(failures: &mut Vec<String>, msg: String) {
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
pub(crate) fn random_exp(rng: &mut Rng, mean: u64) -> u64 {
    let slot = (mean / 1000).max(1);
    let mut k = 1u64;
    while k < 20_000 && rng.below(1000) != 0 {
        k += 1;
    }
    k * slot
}

pub(crate) fn session_config(g: &GroupSpec, run: &RunSpec) -> SessionConfig {
    let mut c = SessionConfig {
        stats_interval: Duration::ZERO,
        listen_port: LISTEN_PORT,
        ..SessionConfig::default()
    };
    c.peer.upload_watermark = run.upload_watermark.0 as usize;
    if let Some(d) = run.have_batch {
        c.peer.have_batch = Duration::from_micros(d.0);
    }
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

/// A UDP datagram's arrival time between a node and the tracker, or `None` if it is lost.
fn udp_hop(rng: &mut Rng, ctx: &Ctx, node: u32, now: u64) -> Option<u64> {
    let t = &ctx.sc.tracker;
    let (loss, jitter) = (t.loss, t.jitter.0);
    if loss > 0.0 && rng.below(1_000_000) < (loss * 1e6) as u64 {
        return None;
    }
    let extra = if jitter > 0 { rng.below(jitter + 1) } else { 0 };
    Some(now + ctx.to_tracker(node) + extra)
}

fn duplicated(rng: &mut Rng, ctx: &Ctx) -> bool {
    let d = ctx.sc.tracker.duplicate;
    d > 0.0 && rng.below(1_000_000) < (d * 1e6) as u64
}

/// One shard: its nodes (node `i` of the run is `nodes[i / shards]` of shard `i % shards`), or
/// the tracker.
pub(crate) struct Shard {
    id: usize,
    pub nodes: Vec<Node>,
    pub tracker: Option<Box<Tracker>>,
    /// The tracker's network draws (loss, duplication, jitter of its replies).
    net_rng: Rng,
    now: u64,
    seq: u64,
    /// The tracker's events (the tracker shard only): (time, sequence) -> slab slot.
    heap: Queue,
    /// Events wait here; queues hold their slots.
    slab: Vec<Option<Ev>>,
    free_slots: Vec<u32>,
    serial: u64,
    /// Events for other shards, per destination, in creation order.
    outbox: Vec<Vec<(u64, Ev)>>,
    /// Reused by `window`: the shards that sent mail.
    sources: Vec<usize>,
    /// The earliest event sent to another node shard, and to the tracker, in the window.
    out_nodes: u64,
    out_tracker: u64,
    pub trace: Trace,
    answers: VecDeque<Answer>,
    bounds: Vec<usize>,
    segs: Vec<(usize, usize)>,
    tx_ctrl: Vec<u8>,
    tx_blocks: Vec<(usize, Bytes)>,
    pub rep: Report,
    pub close_reasons: BTreeMap<String, u64>,
    /// Nodes banned by a node of this shard (one entry per ban).
    pub banned: Vec<u32>,
    /// Live nodes.
    pub alive: u32,
    /// A livelock or a step limit: the run stops with this.
    pub error: Option<String>,
    pub rec: Option<RecShard>,
}

impl Shard {
    pub(crate) fn new(id: usize, total_shards: usize, net_rng: Rng) -> Shard {
        Shard {
            id,
            nodes: Vec::new(),
            tracker: None,
            net_rng,
            now: 0,
            seq: 0,
            heap: Queue::default(),
            slab: Vec::new(),
            free_slots: Vec::new(),
            serial: 0,
            outbox: (0..total_shards).map(|_| Vec::new()).collect(),
            sources: Vec::new(),
            out_nodes: u64::MAX,
            out_tracker: u64::MAX,
            trace: Trace::default(),
            answers: VecDeque::new(),
            bounds: Vec::new(),
            segs: Vec::new(),
            tx_ctrl: Vec::new(),
            tx_blocks: Vec::new(),
            rep: Report::default(),
            close_reasons: BTreeMap::new(),
            banned: Vec::new(),
            alive: 0,
            error: None,
            rec: None,
        }
    }

    fn global(&self, ctx: &Ctx, local: usize) -> u32 {
        (local * ctx.shards + self.id) as u32
    }

    /// Queues `ev` at `at` for its node (or the tracker), which must be in this shard.
    pub(crate) fn push(&mut self, ctx: &Ctx, at: u64, ev: Ev) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(i) = ev.dest() {
            let queue = &mut self.nodes[ctx.local(i)].queue;
            let q = Queued { at, seq, ev };
            // The node's downlink serialises its deliveries (`down_busy` and `now` only grow).
            if matches!(q.ev, Ev::Deliver { .. }) {
                queue.push_in_order(q);
            } else {
                queue.push(q);
            }
            return;
        }
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
        self.heap.push(at, seq, slot);
    }

    fn take_slot(&mut self, slot: u32) -> Option<Ev> {
        self.free_slots.push(slot);
        self.slab[slot as usize].take()
    }

    /// Queues `ev` at `at` in shard `dst`: here at once, elsewhere through the mail.
    fn send(&mut self, ctx: &Ctx, at: u64, dst: usize, ev: Ev) {
        if dst == self.id {
            self.push(ctx, at, ev);
        } else {
            if dst == ctx.tracker_shard() {
                self.out_tracker = self.out_tracker.min(at);
            } else {
                self.out_nodes = self.out_nodes.min(at);
            }
            self.outbox[dst].push((at, ev));
        }
    }

    /// The earliest time something is pending here (events, deadlines, held tails).
    pub(crate) fn pending(&mut self) -> u64 {
        let mut t = self.heap.peek().map_or(u64::MAX, |k| k.0);
        for n in &self.nodes {
            let q = n.queue.peek().map_or(u64::MAX, |k| k.at);
            let h = n.held.front().map_or(u64::MAX, |k| k.0);
            t = t.min(q).min(n.deadline).min(h);
        }
        t
    }

    // ----- a window ---------------------------------------------------------------------

    /// Fills in the report's earliest pending times.
    pub(crate) fn report_next(&mut self) {
        let own = self.pending();
        let (n, t) = if self.tracker.is_some() {
            (u64::MAX, own)
        } else {
            (own, u64::MAX)
        };
        self.rep.next_nodes = n.min(self.out_nodes);
        self.rep.next_tracker = t.min(self.out_tracker);
    }

    /// Runs one window: takes the mail, processes every event before `plan.end`, sends the
    /// tails that can no longer grow, posts the mail and fills in the report.
    pub(crate) fn window(&mut self, ctx: &Ctx, plan: &Plan, mail: &Mail) {
        let parity_in = (plan.index + 1) & 1;
        let mut sources = std::mem::take(&mut self.sources);
        mail.take_sources(parity_in, self.id, &mut sources);
        for &src in &sources {
            if src == self.id {
                continue;
            }
            let mut b = mail
                .slot(parity_in, self.id, src)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (t, ev) in b.drain(..) {
                self.push(ctx, t, ev);
            }
        }
        self.sources = sources;
        self.out_nodes = u64::MAX;
        self.out_tracker = u64::MAX;
        if self.error.is_none() {
            if let Err(e) = self.process(ctx, plan) {
                self.error = Some(e);
            }
        }
        let parity_out = plan.index & 1;
        for dst in 0..mail.n {
            if self.outbox[dst].is_empty() {
                continue;
            }
            let mut b = mail
                .slot(parity_out, dst, self.id)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            b.append(&mut self.outbox[dst]);
            mail.mark(parity_out, dst, self.id);
        }
        self.report_next();
        self.rep.now = self.rep.now.max(self.now);
    }

    /// Processes the window node by node: nothing a node does reaches another node within
    /// the window, so each node's events can run together while its Session is in cache.
    fn process(&mut self, ctx: &Ctx, plan: &Plan) -> Result<(), String> {
        let mut steps = plan.steps + self.rep.steps;
        while let Some((t, slot)) = self.heap.peek() {
            if t >= plan.tracker_end {
                break;
            }
            self.step(ctx, &mut steps)?;
            self.heap.pop();
            self.now = t;
            if let Some(ev) = self.take_slot(slot) {
                self.dispatch(ctx, ev);
            }
        }
        for l in 0..self.nodes.len() {
            self.run_node(ctx, l, plan.end, &mut steps)?;
        }
        Ok(())
    }

    /// Counts a step against the run's limit.
    fn step(&mut self, ctx: &Ctx, steps: &mut u64) -> Result<(), String> {
        self.rep.steps += 1;
        *steps += 1;
        if *steps > ctx.sc.run.max_steps {
            return Err(format!(
                "step limit: {} events without finishing at t={:.3}s (a livelock? raise run.max_steps)",
                ctx.sc.run.max_steps,
                self.now as f64 / 1e6
            ));
        }
        Ok(())
    }

    /// Reads the connection halves, connections and picker records that node `l`'s
    /// deliveries before `end` will use (see `Session::prefetch`): a node's batch is a
    /// handful of segments from as many peers, each one's half and connection cold, and the
    /// record of each piece they announce a random line; a delivery is a long chain of
    /// dependent work, so the misses of one never overlapped with those of the next.
    fn prefetch_node(&self, l: usize, end: u64) {
        let node = &self.nodes[l];
        let Some(s) = node.session.as_deref() else {
            return;
        };
        let mut sum = 0usize;
        for q in node.queue.iter() {
            let (conn, data) = match &q.ev {
                Ev::Data { conn, data, .. } | Ev::Deliver { conn, data, .. } if q.at < end => {
                    (*conn, data)
                }
                _ => continue,
            };
            if let Some(slot) = self.half_slot(l, conn) {
                let h = &node.halves[slot];
                sum += h.rx_pending as usize + h.rx.prefetch() + h.peer_announced.prefetch();
            }
            sum += s.prefetch(ConnId(conn));
            sum += s.prefetch_haves(node.torrent, data.parts().next().unwrap_or_default());
        }
        std::hint::black_box(sum);
    }

    /// Runs node `l`'s events and deadlines before `end`, then sends the tails that can no
    /// longer grow and takes the record's samples due.
    fn run_node(&mut self, ctx: &Ctx, l: usize, end: u64, steps: &mut u64) -> Result<(), String> {
        self.prefetch_node(l, end);
        loop {
            let node = &self.nodes[l];
            let d = node.deadline;
            let (t, from_queue) = match node.queue.peek() {
                Some(q) if q.at <= d => (q.at, true),
                _ => (d, false),
            };
            if t >= end {
                break;
            }
            self.step(ctx, steps)?;
            let i = self.global(ctx, l);
            let node = &mut self.nodes[l];
            if t == node.instant {
                node.instant_steps += 1;
                if node.instant_steps > ctx.sc.run.max_steps_per_instant {
                    let what = match node.queue.peek() {
                        Some(q) if from_queue => format!("{:?}", q.ev),
                        _ => format!("node {i}'s deadline"),
                    };
                    return Err(format!(
                        "livelock: {} events at the same virtual instant t={:.6}s (the last: {what})",
                        node.instant_steps,
                        t as f64 / 1e6
                    ));
                }
            } else {
                node.instant = t;
                node.instant_steps = 0;
            }
            if let Some(r) = self.rec.as_mut() {
                if r.due(l) <= t {
                    self.record_sample(ctx, l, t);
                }
            }
            self.now = t;
            if from_queue {
                if let Some(q) = self.nodes[l].queue.pop() {
                    self.dispatch(ctx, q.ev);
                }
            } else {
                self.nodes[l].deadline = u64::MAX;
                let i = self.global(ctx, l);
                self.trace.add(&[t, u64::from(i), 0xF0]);
                self.input(ctx, l, |s, now| s.handle_input(now, Input::Timeout));
            }
        }
        // The tails that start to leave before `end`: no write can join them now.
        while let Some(&(start, serial, conn)) = self.nodes[l].held.front() {
            if start >= end {
                break;
            }
            self.nodes[l].held.pop_front();
            if let Some(slot) = self.half_slot(l, conn) {
                let h = &self.nodes[l].halves[slot];
                if h.tail.as_ref().is_some_and(|t| t.serial == serial) {
                    self.flush_tail(ctx, l, slot);
                }
            }
        }
        if self.nodes[l].held.is_empty() {
            self.nodes[l].held.clear(); // back to the start of its buffer, as `answers`
        }
        if let Some(r) = self.rec.as_mut() {
            if r.due(l) < end {
                self.record_sample(ctx, l, end - 1);
            }
        }
        Ok(())
    }

    /// Samples node `l` into the record at its due instant (at most `t`), if it is live; the
    /// next instant is the first after `t` (nothing changes in between).
    fn record_sample(&mut self, ctx: &Ctx, l: usize, t: u64) {
        let i = self.global(ctx, l);
        let Some(r) = self.rec.as_mut() else { return };
        let n = &self.nodes[l];
        if let Some(s) = &n.session {
            r.sample(r.due(l), i, l, s, n.torrent);
        }
        r.done_until(l, t);
    }

    /// Samples this shard's live nodes into the record at `t`.
    pub(crate) fn record_samples(&mut self, ctx: &Ctx, t: u64) {
        let Some(r) = self.rec.as_mut() else { return };
        for (l, n) in self.nodes.iter().enumerate() {
            if let Some(s) = &n.session {
                r.sample(t, (l * ctx.shards + self.id) as u32, l, s, n.torrent);
            }
        }
    }

    // ----- driving one node ---------------------------------------------------------------

    /// Takes node `l`'s Session out (to call it while the shard is borrowed); `None` if the
    /// node is not alive. Give it back with [`Shard::settle`].
    fn take(&mut self, l: usize) -> Option<Box<Session>> {
        let node = &mut self.nodes[l];
        if node.life != Life::Alive {
            return None;
        }
        node.session.take()
    }

    /// Drains node `l`'s Session and feeds the disk answers back at the same instant until it
    /// is quiet; updates its deadline and puts the Session back.
    fn settle(&mut self, ctx: &Ctx, l: usize, mut s: Box<Session>) {
        let now = Instant::from_micros(self.now);
        self.drain(ctx, l, &mut s);
        while let Some(a) = self.answers.pop_front() {
            let res = match a {
                Answer::Read(conn, torrent, block, data) => s.handle_input(
                    now,
                    Input::BlockRead {
                        conn,
                        torrent,
                        block,
                        data: Ok(data),
                    },
                ),
                Answer::Written(torrent, block) => s.handle_input(
                    now,
                    Input::BlockWritten {
                        torrent,
                        block,
                        result: Ok(()),
                    },
                ),
                Answer::Verified(torrent, piece, ok) => {
                    s.handle_input(now, Input::PieceVerified { torrent, piece, ok })
                }
            };
            if let Err(e) = res {
                panic!(
                    "simulator misused node {}'s Session: {e}",
                    self.global(ctx, l)
                );
            }
            self.drain(ctx, l, &mut s);
        }
        // Empty: back to the start of its buffer, so the next answers reuse the same lines (a
        // deque used as a queue otherwise walks its whole capacity).
        self.answers.clear();
        self.nodes[l].session = Some(s);
    }

    /// Runs `f` (an input or a command) on node `l`'s Session, then settles it.
    fn input<R>(
        &mut self,
        ctx: &Ctx,
        l: usize,
        f: impl FnOnce(&mut Session, Instant) -> Result<R, hive_core::session::SessionError>,
    ) -> Option<R> {
        let mut s = self.take(l)?;
        let r = match f(&mut s, Instant::from_micros(self.now)) {
            Ok(r) => Some(r),
            Err(e) => panic!(
                "simulator misused node {}'s Session: {e}",
                self.global(ctx, l)
            ),
        };
        self.settle(ctx, l, s);
        r
    }

    fn set_deadline(&mut self, l: usize, t: u64) {
        self.nodes[l].deadline = t;
    }

    fn drain(&mut self, ctx: &Ctx, l: usize, s: &mut Session) {
        let now = self.now;
        let i = self.global(ctx, l);
        loop {
            match s.poll_output() {
                Output::Timeout(t) => {
                    let t = t.as_micros().max(now);
                    self.set_deadline(l, t);
                    return;
                }
                Output::Connect { conn, addr } => {
                    self.trace.add(&[now, u64::from(i), 1, conn.0]);
                    self.on_connect(ctx, l, conn, addr);
                }
                Output::Transmit(conn) => self.on_transmit(ctx, l, s, conn),
                Output::Close { conn, reason } => {
                    self.trace.add(&[now, u64::from(i), 3, conn.0]);
                    // Numbers (pieces, counts) out, so that reasons group.
                    let key: String = reason
                        .chars()
                        .map(|c| if c.is_ascii_digit() { '#' } else { c })
                        .collect();
                    *self.close_reasons.entry(key).or_insert(0) += 1;
                    self.on_close(ctx, l, conn.0);
                }
                Output::HttpAnnounce {
                    torrent,
                    request,
                    url,
                } => {
                    self.trace.add(&[now, u64::from(i), 4]);
                    self.trace.add_str(&url);
                    let at = now + ctx.to_tracker(i);
                    let ev = Ev::TrackerHttp {
                        node: i,
                        torrent,
                        request,
                        url,
                    };
                    self.send(ctx, at, ctx.tracker_shard(), ev);
                }
                Output::UdpSend {
                    torrent,
                    tracker,
                    packet,
                    ..
                } => {
                    self.trace.add(&[now, u64::from(i), 5, packet.len() as u64]);
                    let rng = &mut self.nodes[l].rng;
                    let copies = if duplicated(rng, ctx) { 2 } else { 1 };
                    for _ in 0..copies {
                        if let Some(at) = udp_hop(&mut self.nodes[l].rng, ctx, i, now) {
                            let ev = Ev::TrackerUdp {
                                node: i,
                                torrent,
                                tracker,
                                packet: packet.clone(),
                            };
                            self.send(ctx, at, ctx.tracker_shard(), ev);
                        }
                    }
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
                    let data = self.read_block(ctx, l, block);
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
                    self.write_block(ctx, l, block, &data);
                    self.answers.push_back(Answer::Written(torrent, block));
                }
                Output::VerifyPiece { torrent, piece } => {
                    let ok = self.verify_piece(ctx, l, piece);
                    self.trace
                        .add(&[now, u64::from(i), 8, u64::from(piece), u64::from(ok)]);
                    self.answers.push_back(Answer::Verified(torrent, piece, ok));
                }
                Output::Event(ev) => self.on_event(ctx, l, s, ev),
            }
        }
    }

    // ----- disk -------------------------------------------------------------------------

    fn block_range(ctx: &Ctx, block: BlockRequest) -> (usize, usize) {
        let start = (u64::from(block.index) * ctx.piece_len + u64::from(block.begin)) as usize;
        (start, start + block.length as usize)
    }

    fn read_block(&mut self, ctx: &Ctx, l: usize, block: BlockRequest) -> Bytes {
        let i = self.global(ctx, l);
        let node = &self.nodes[l];
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
            fail(&mut self.rep.failures, msg);
        }
        let (a, b) = Self::block_range(ctx, block);
        if b > ctx.payload.len() {
            fail(
                &mut self.rep.failures,
                format!("node {i} read past the end of the torrent: {block:?}"),
            );
            return Bytes::new();
        }
        if node.corrupt {
            let mut v = ctx.payload[a..b].to_vec();
            for x in &mut v {
                *x ^= 0x5a;
            }
            Bytes::from(v)
        } else {
            ctx.payload.slice(a..b)
        }
    }

    fn write_block(&mut self, ctx: &Ctx, l: usize, block: BlockRequest, data: &[u8]) {
        let i = self.global(ctx, l);
        let (a, b) = Self::block_range(ctx, block);
        if b > ctx.payload.len() || data.len() != block.length as usize {
            fail(
                &mut self.rep.failures,
                format!("node {i} wrote an impossible block {block:?}"),
            );
            return;
        }
        // Blocks that travelled without a copy are slices of the payload itself: equal
        // without reading 16 KiB twice (a flash crowd writes a block per event or so).
        let original = &ctx.payload[a..b];
        let good = std::ptr::eq(original.as_ptr(), data.as_ptr()) || *original == *data;
        let real_hash = ctx.sc.torrent.real_hash;
        let piece_len = ctx.meta.piece_len(block.index).unwrap_or(0) as usize;
        let disk = &mut self.nodes[l].disk;
        if disk.verified.as_ref().is_some_and(|v| v.get(block.index)) {
            if !good {
                let msg = format!(
                    "node {i} overwrote verified piece {} with different bytes",
                    block.index
                );
                fail(&mut self.rep.failures, msg);
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

    fn verify_piece(&mut self, ctx: &Ctx, l: usize, piece: u32) -> bool {
        let i = self.global(ctx, l);
        let pc = ctx.piece_count;
        let disk = &mut self.nodes[l].disk;
        let ok = !disk.bad.contains_key(&piece);
        if ctx.sc.torrent.real_hash {
            let buf = disk.partial.remove(&piece).unwrap_or_default();
            let hashed = ctx.meta.piece_hash(piece) == Some(&hash_piece(&buf));
            if hashed != ok {
                let msg = format!(
                    "node {i} piece {piece}: SHA-1 says {hashed}, the written bytes say {ok}"
                );
                fail(&mut self.rep.failures, msg);
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

    fn on_event(&mut self, ctx: &Ctx, l: usize, s: &Session, ev: Event) {
        let now = self.now;
        let i = self.global(ctx, l);
        if let Some(r) = self.rec.as_mut() {
            r.event(now, i, l, s, self.nodes[l].torrent, &ev, node_of_ip);
        }
        match ev {
            Event::PieceDone { piece, .. } => {
                self.trace.add(&[now, u64::from(i), 9, u64::from(piece)]);
                self.rep.copies.push((piece, true));
            }
            Event::HashFailed { piece, .. } => {
                self.trace.add(&[now, u64::from(i), 10, u64::from(piece)]);
                self.nodes[l].rec.hash_failures += 1;
                self.rep.hash_failed_bytes += ctx.meta.piece_len(piece).unwrap_or(0);
            }
            Event::TorrentComplete { .. } => {
                self.trace.add(&[now, u64::from(i), 11]);
                self.on_complete(ctx, l);
            }
            Event::PeerJoined { torrent, conn, .. } => {
                self.trace.add(&[now, u64::from(i), 12, conn.0]);
                let joined = s.stats(torrent).map_or(0, |st| st.peers_connected);
                let max = self.nodes[l].max_per_torrent;
                if joined > max {
                    fail(
                        &mut self.rep.failures,
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
                self.nodes[l].rec.bans_issued += 1;
                if let Some(j) = node_of_ip(addr.ip()) {
                    self.banned.push(j);
                }
            }
            Event::TorrentError { message, .. } => {
                fail(
                    &mut self.rep.failures,
                    format!("node {i}: torrent error: {message}"),
                );
            }
            Event::TrackerError { .. } | Event::TrackerWarning { .. } => {
                self.trace.add(&[now, u64::from(i), 15]);
            }
            Event::TorrentRemoved { .. } | Event::Stats(_) | Event::ShutdownComplete => {}
        }
    }

    fn on_complete(&mut self, ctx: &Ctx, l: usize) {
        let now = self.now;
        let i = self.global(ctx, l);
        let pc = ctx.piece_count;
        let node = &mut self.nodes[l];
        if node.rec.completed.is_some() {
            return;
        }
        node.rec.completed = Some(now);
        let verified = node.disk.verified.as_ref().map_or(0, Bitfield::count_ones);
        let bad = node.disk.bad.keys().next().copied();
        let seed = node.rec.seed;
        let depart = &ctx.sc.groups[node.group].depart;
        if !seed {
            self.rep.completed += 1;
            self.rep.closed += 1;
            self.rep.last_closed = now;
            if self.rep.first_leecher.is_none_or(|f| (now, i) < f) {
                self.rep.first_leecher = Some((now, i));
            }
        }
        if verified != pc {
            fail(
                &mut self.rep.failures,
                format!("node {i} completed holding {verified} verified pieces of {pc}"),
            );
        }
        if let Some(p) = bad {
            fail(
                &mut self.rep.failures,
                format!("node {i} completed with bad bytes in piece {p}"),
            );
        }
        if let Some(linger) = depart.after_complete {
            let wait = if depart.random_linger {
                random_exp(&mut self.nodes[l].rng, linger.0)
            } else {
                linger.0
            };
            self.schedule_depart(ctx, l, now + wait);
        }
    }

    fn schedule_depart(&mut self, ctx: &Ctx, l: usize, at: u64) {
        let i = self.global(ctx, l);
        let node = &mut self.nodes[l];
        if node.depart_scheduled || node.life == Life::Gone {
            return;
        }
        node.depart_scheduled = true;
        self.push(ctx, at, Ev::Depart(i));
    }

    // ----- connections ----------------------------------------------------------------

    fn half_slot(&self, l: usize, conn: u64) -> Option<usize> {
        let id = *self.nodes[l].conns.get(conn as usize)?;
        (id != NONE).then_some(id as usize)
    }

    fn alloc_half(&mut self, l: usize, h: Half) -> usize {
        let node = &mut self.nodes[l];
        let conn = h.conn as usize;
        let slot = match node.free_halves.pop() {
            Some(k) => {
                node.halves[k as usize] = h;
                k
            }
            None => node.halves.push(h) as u32,
        };
        if node.conns.len() <= conn {
            node.conns.resize(conn + 1, NONE);
        }
        node.conns[conn] = slot;
        slot as usize
    }

    fn free_half(&mut self, l: usize, slot: usize) {
        let node = &mut self.nodes[l];
        let h = &mut node.halves[slot];
        if let Some(c) = node.conns.get_mut(h.conn as usize) {
            *c = NONE;
        }
        // Drop the heavy parts now; the slot is reused with a fresh half.
        h.unsent = Default::default();
        h.peer_announced = Default::default();
        h.decoder = FrameDecoder::default();
        h.rx = Default::default();
        h.tail = None;
        h.alive = false;
        h.zombie = false;
        node.free_halves.push(slot as u32);
    }

    /// The node's Session stops knowing the connection.
    fn end_dead(&mut self, l: usize, slot: usize) {
        let n = &mut self.nodes[l];
        let h = &mut n.halves[slot];
        if !h.alive {
            return;
        }
        h.alive = false;
        n.live -= 1;
        if h.connecting {
            n.half_open -= 1;
        }
    }

    /// Sends the pipe's held tail, if any.
    fn flush_tail(&mut self, ctx: &Ctx, l: usize, slot: usize) {
        let h = &mut self.nodes[l].halves[slot];
        if let Some(t) = h.tail.take() {
            let (j, conn) = (h.peer, h.peer_conn);
            let ev = Ev::Data {
                to: j,
                conn,
                first: t.first,
                data: t.data,
            };
            self.send(ctx, t.at, ctx.shard_of(j), ev);
        }
    }

    fn on_connect(&mut self, ctx: &Ctx, l: usize, conn: ConnId, addr: SocketAddr) {
        let now = self.now;
        let i = self.global(ctx, l);
        let target = node_of_ip(addr.ip())
            .filter(|j| *j < ctx.nodes && *j != i)
            .filter(|_| addr.port() == LISTEN_PORT);
        let mut h = Half::new(conn.0, target.unwrap_or(NONE), NO_CONN, ctx.limits);
        h.connecting = true;
        self.alloc_half(l, h);
        let n = &mut self.nodes[l];
        n.live += 1;
        n.half_open += 1;
        n.rec.peak_connections = n.rec.peak_connections.max(n.live);
        if n.half_open as usize > n.max_half_open {
            let (h, m) = (n.half_open, n.max_half_open);
            fail(
                &mut self.rep.failures,
                format!("node {i} has {h} connection attempts in flight, over its limit of {m}"),
            );
        }
        if n.live as usize > n.max_connections {
            let (c, m) = (n.live, n.max_connections);
            fail(
                &mut self.rep.failures,
                format!("node {i} has {c} connections, over its limit of {m}"),
            );
        }
        match target {
            Some(j) => {
                n.ephemeral = n.ephemeral.wrapping_add(1);
                let port = 49152 + (n.ephemeral % 16384);
                let ev = Ev::Syn {
                    to: j,
                    from: i,
                    conn: conn.0,
                    port,
                    started: now,
                };
                self.send(ctx, now + ctx.path(i, j), ctx.shard_of(j), ev);
            }
            None => {
                // Nobody there: the attempt times out.
                let at = now + ctx.sc.run.connect_timeout.0;
                self.push(
                    ctx,
                    at,
                    Ev::Refused {
                        to: i,
                        conn: conn.0,
                    },
                );
            }
        }
    }

    fn on_syn(&mut self, ctx: &Ctx, j: u32, i: u32, conn: u64, port: u16, started: u64) {
        let now = self.now;
        let l = ctx.local(j);
        let path = ctx.path(i, j);
        let refused = Ev::Refused { to: i, conn };
        let target = &self.nodes[l];
        if target.life != Life::Alive {
            // Nobody answers: the initiator times out (never sooner than a round trip).
            let at = (started + ctx.sc.run.connect_timeout.0).max(now + path);
            self.send(ctx, at, ctx.shard_of(i), refused);
            return;
        }
        if target.refuse {
            self.send(ctx, now + path, ctx.shard_of(i), refused);
            return;
        }
        let from = SocketAddr::V4(SocketAddrV4::new(node_ip(i), port));
        self.trace.add(&[now, u64::from(j), 0xF1, u64::from(i)]);
        let Some(mut s) = self.take(l) else { return };
        match s.accept(Instant::from_micros(now), from) {
            Ok(id) => {
                // Map the connection before the drain, which may already use it.
                let synack = now + path;
                let mut h = Half::new(id.0, i, conn, ctx.limits);
                // Its bytes arrive after the SYN-ACK.
                h.last_arrival = synack;
                self.alloc_half(l, h);
                let n = &mut self.nodes[l];
                n.live += 1;
                n.rec.connections += 1;
                n.rec.peak_connections = n.rec.peak_connections.max(n.live);
                if n.live as usize > n.max_connections {
                    let (c, m) = (n.live, n.max_connections);
                    fail(
                        &mut self.rep.failures,
                        format!("node {j} has {c} connections, over its limit of {m}"),
                    );
                }
                let ev = Ev::SynAck {
                    to: i,
                    conn,
                    peer_conn: id.0,
                };
                self.send(ctx, synack, ctx.shard_of(i), ev);
            }
            Err(_) => self.send(ctx, now + path, ctx.shard_of(i), refused),
        }
        self.settle(ctx, l, s);
    }

    fn on_synack(&mut self, ctx: &Ctx, i: u32, conn: u64, peer_conn: u64) {
        let now = self.now;
        let l = ctx.local(i);
        let Some(slot) = self.half_slot(l, conn) else {
            return;
        };
        let h = &mut self.nodes[l].halves[slot];
        if h.zombie {
            // Closed while connecting: the acceptor hears a FIN (TCP would reset).
            let j = h.peer;
            self.free_half(l, slot);
            self.send(
                ctx,
                now + ctx.path(i, j),
                ctx.shard_of(j),
                Ev::Fin {
                    to: j,
                    conn: peer_conn,
                },
            );
            return;
        }
        if !h.alive {
            return;
        }
        h.connecting = false;
        h.peer_conn = peer_conn;
        let n = &mut self.nodes[l];
        n.half_open -= 1;
        n.rec.connections += 1;
        self.rep.connections += 1;
        self.trace.add(&[now, u64::from(i), 0xF2, conn]);
        self.input(ctx, l, |s, now| {
            s.handle_input(now, Input::Connected(ConnId(conn)))
        });
    }

    fn on_refused(&mut self, ctx: &Ctx, i: u32, conn: u64) {
        let l = ctx.local(i);
        let Some(slot) = self.half_slot(l, conn) else {
            return;
        };
        let h = &self.nodes[l].halves[slot];
        if h.zombie {
            self.free_half(l, slot);
            return;
        }
        if !h.alive {
            return;
        }
        self.end_dead(l, slot);
        self.free_half(l, slot);
        self.nodes[l].rec.connect_failures += 1;
        self.trace.add(&[self.now, u64::from(i), 0xF3, conn]);
        self.input(ctx, l, |s, now| {
            s.handle_input(now, Input::ConnectFailed(ConnId(conn)))
        });
    }

    fn on_close(&mut self, ctx: &Ctx, l: usize, conn: u64) {
        let Some(slot) = self.half_slot(l, conn) else {
            return;
        };
        if !self.nodes[l].halves[slot].alive {
            return;
        }
        let now = self.now;
        let i = self.global(ctx, l);
        self.end_dead(l, slot);
        self.flush_tail(ctx, l, slot);
        let h = &mut self.nodes[l].halves[slot];
        let (j, peer_conn, last) = (h.peer, h.peer_conn, h.last_arrival);
        if peer_conn != NO_CONN {
            // After the bytes sent before it.
            let at = (now + ctx.path(i, j)).max(last);
            self.free_half(l, slot);
            self.send(
                ctx,
                at,
                ctx.shard_of(j),
                Ev::Fin {
                    to: j,
                    conn: peer_conn,
                },
            );
        } else if h.connecting && j != NONE {
            // The SYN is out: wait for the answer, then reset.
            h.zombie = true;
        } else {
            self.free_half(l, slot);
        }
    }

    fn on_fin(&mut self, ctx: &Ctx, j: u32, conn: u64) {
        let l = ctx.local(j);
        let Some(slot) = self.half_slot(l, conn) else {
            return;
        };
        if !self.nodes[l].halves[slot].alive {
            return;
        }
        self.end_dead(l, slot);
        // The other end is gone: what this end still held for it would be dropped there.
        self.free_half(l, slot);
        self.trace.add(&[self.now, u64::from(j), 0xF4, conn]);
        self.input(ctx, l, |s, now| {
            s.handle_input(now, Input::Closed(ConnId(conn)))
        });
    }

    fn on_transmit(&mut self, ctx: &Ctx, l: usize, s: &mut Session, conn: ConnId) {
        let now = self.now;
        let i = self.global(ctx, l);
        let Some(slot) = self.half_slot(l, conn.0) else {
            // Not ours (cannot happen): take the bytes so the Session does not grow.
            let mut sink = Vec::new();
            s.poll_transmit(conn, &mut sink);
            return;
        };
        let sndbuf = ctx.sc.run.send_buffer.0;
        {
            let h = &mut self.nodes[l].halves[slot];
            h.unsent.prune(now);
            if h.unsent.bytes >= sndbuf {
                h.blocked = true;
                self.schedule_wake(ctx, l, slot);
                return;
            }
        }
        let mut ctrl = std::mem::take(&mut self.tx_ctrl);
        let mut blocks = std::mem::take(&mut self.tx_blocks);
        ctrl.clear();
        blocks.clear();
        let n = s.poll_transmit_parts(conn, &mut ctrl, &mut blocks);
        if n == 0 {
            self.tx_ctrl = ctrl;
            self.tx_blocks = blocks;
            return;
        }
        self.trace.add(&[now, u64::from(i), 2, conn.0, n as u64]);
        self.observe(ctx, l, slot, &ctrl, &blocks, n);
        let j = self.nodes[l].halves[slot].peer;
        let path = ctx.path(i, j);
        let jitter = ctx.jitter[i as usize] + ctx.jitter[j as usize];
        let up_rate = self.rate_now(l, self.nodes[l].up_rate);
        self.nodes[l].rec.bytes_sent += n as u64;
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
        let single = segs.len() == 1;
        for (x, &(cut, end)) in segs.iter().enumerate() {
            let len = (end - cut) as u64;
            let node = &mut self.nodes[l];
            let start = now.max(node.up_busy);
            let up_end = start + tx_time(len, up_rate);
            node.up_busy = up_end;
            let h = &mut node.halves[slot];
            h.unsent.push(up_end, len as u32);
            if single && n <= COALESCE {
                // Join the pipe's last segment if it still waits for the uplink and stays
                // small (its bytes are charged to the uplink all the same).
                if let Some(t) = h.tail.as_mut() {
                    if t.start > now && t.data.len() + n <= COALESCE {
                        for (run, _) in runs(&ctrl, &blocks) {
                            t.data.append(run);
                        }
                        continue;
                    }
                }
            }
            // A new segment: the held one goes first.
            self.flush_tail(ctx, l, slot);
            let node = &mut self.nodes[l];
            let extra = if jitter > 0 {
                node.rng.below(jitter + 1)
            } else {
                0
            };
            let h = &mut node.halves[slot];
            let first = start + path + extra;
            let at = (up_end + path + extra).max(h.last_arrival);
            h.last_arrival = at;
            let peer_conn = h.peer_conn;
            // The segment's bytes: inline when small; blocks are the disk reads' slices of
            // the payload, never copied.
            let data = Payload::cut(&ctrl, &blocks, cut, end);
            if x + 1 == segs.len() && len as usize <= COALESCE && start > now {
                // It may still grow: hold it until it starts to leave.
                self.serial += 1;
                let serial = self.serial;
                h.tail = Some(Tail {
                    serial,
                    start,
                    first,
                    at,
                    data,
                });
                node.held.push_back((start, serial, conn.0));
            } else {
                let ev = Ev::Data {
                    to: j,
                    conn: peer_conn,
                    first,
                    data,
                };
                self.send(ctx, at, ctx.shard_of(j), ev);
            }
        }
        blocks.clear();
        self.tx_ctrl = ctrl;
        self.tx_blocks = blocks;
        self.segs = segs;
        if let Some(limit) = self.nodes[l].upload_limit_bytes {
            if self.nodes[l].rec.uploaded >= limit {
                self.schedule_depart(ctx, l, now);
            }
        }
    }

    /// A node's rate now: slow-start nodes ramp linearly from 10 % to 100 % (integer
    /// arithmetic, so every machine agrees).
    fn rate_now(&self, l: usize, rate: u64) -> u64 {
        let n = &self.nodes[l];
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

    fn schedule_wake(&mut self, ctx: &Ctx, l: usize, slot: usize) {
        let low = ctx.sc.run.send_buffer.0 / 2;
        let i = self.global(ctx, l);
        let h = &mut self.nodes[l].halves[slot];
        let at = h.unsent.drained_at(low).max(self.now);
        if h.wake_at <= at {
            return;
        }
        h.wake_at = at;
        let conn = h.conn;
        self.push(ctx, at, Ev::Wake { node: i, conn });
    }

    fn on_wake(&mut self, ctx: &Ctx, i: u32, conn: u64) {
        let now = self.now;
        let low = ctx.sc.run.send_buffer.0 / 2;
        let l = ctx.local(i);
        let Some(slot) = self.half_slot(l, conn) else {
            return;
        };
        let h = &mut self.nodes[l].halves[slot];
        if h.wake_at != now {
            return; // superseded by an earlier wake-up
        }
        h.wake_at = u64::MAX;
        if !h.alive || !h.blocked {
            return;
        }
        h.unsent.prune(now);
        if h.unsent.bytes > low {
            self.schedule_wake(ctx, l, slot);
            return;
        }
        h.blocked = false;
        self.trace.add(&[now, u64::from(i), 0xF5, conn]);
        self.input(ctx, l, |s, now| {
            s.handle_input(now, Input::Writable(ConnId(conn)))
        });
    }

    /// A segment reaches node `j`'s downlink; it goes through after the segments before it.
    fn on_data(&mut self, ctx: &Ctx, j: u32, conn: u64, first: u64, data: Payload) {
        let now = self.now;
        let l = ctx.local(j);
        if self.nodes[l].life != Life::Alive {
            return;
        }
        let Some(slot) = self.half_slot(l, conn) else {
            return;
        };
        if !self.nodes[l].halves[slot].alive {
            return;
        }
        let down = self.rate_now(l, self.nodes[l].down_rate);
        let node = &mut self.nodes[l];
        let done = first.max(node.down_busy) + tx_time(data.len() as u64, down);
        node.down_busy = done;
        let h = &mut node.halves[slot];
        if done > now || h.rx_pending > 0 {
            h.rx_pending += 1;
            self.push(ctx, done.max(now), Ev::Deliver { to: j, conn, data });
            return;
        }
        self.deliver(ctx, l, slot, data);
    }

    fn on_deliver(&mut self, ctx: &Ctx, j: u32, conn: u64, data: Payload) {
        let l = ctx.local(j);
        let Some(slot) = self.half_slot(l, conn) else {
            return;
        };
        let h = &mut self.nodes[l].halves[slot];
        h.rx_pending -= 1;
        if h.alive && self.nodes[l].life == Life::Alive {
            self.deliver(ctx, l, slot, data);
        }
    }

    /// Hands a segment to the receiving Session, noting the announcements and payload in it.
    fn deliver(&mut self, ctx: &Ctx, l: usize, slot: usize, data: Payload) {
        let j = self.global(ctx, l);
        let node = &mut self.nodes[l];
        let h = &mut node.halves[slot];
        let conn = h.conn;
        let mut payload = 0;
        for part in data.parts() {
            payload += h.rx.scan(part, &mut h.peer_announced, ctx.piece_count);
        }
        node.rec.downloaded += payload;
        self.trace
            .add(&[self.now, u64::from(j), 0xF6, conn, data.len() as u64]);
        // Shared bytes go in as chunks, so that blocks reach the disk as slices of them.
        self.input(ctx, l, |s, now| {
            let conn = ConnId(conn);
            match &data {
                Payload::Inline(n, b) => {
                    s.handle_input(now, Input::Received(conn, &b[..usize::from(*n)]))
                }
                Payload::Joined(v) => s.handle_input(now, Input::Received(conn, v)),
                Payload::Chunks(c) => s.handle_input(now, Input::ReceivedChunks(conn, c)),
            }
        });
    }

    /// Decodes what node `l` sends on `slot` (the simulator's own view of the wire,
    /// independent of the core): checks requests against what the other end announced to
    /// this one, counts payload, and collects frame boundaries (stream offsets) for
    /// segmentation. Blocks are not copied: a piece's header ends a control run and its block
    /// is the next run, which the decoder borrows. `n` is the bytes in all.
    fn observe(
        &mut self,
        ctx: &Ctx,
        l: usize,
        slot: usize,
        ctrl: &[u8],
        blocks: &[(usize, Bytes)],
        n: usize,
    ) {
        self.bounds.clear();
        let pc = ctx.piece_count;
        let i = self.global(ctx, l);
        let node = &mut self.nodes[l];
        let me = &mut node.halves[slot];
        let j = me.peer;
        // Handshake bytes come first (one boundary after them), then frames.
        let mut skip = me.skip.min(n);
        me.skip -= skip;
        if skip > 0 {
            self.bounds.push(skip);
        }
        let mut payload = 0u64;
        let mut problems: Vec<String> = Vec::new();
        let mut base = 0;
        'chunks: for (chunk, _) in runs(ctrl, blocks) {
            let k = skip.min(chunk.len());
            skip -= k;
            let mut input = &chunk[k..];
            loop {
                let msg = match me.decoder.decode(&mut input) {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        problems.push(format!("node {i} sent bytes that do not decode: {e}"));
                        break 'chunks;
                    }
                };
                match msg {
                    Message::Bitfield(bits) => {
                        if let Err(e) = Bitfield::from_bytes(bits, pc) {
                            problems.push(format!("node {i} sent a bad bitfield: {e}"));
                        }
                    }
                    Message::Request(b) => {
                        let has = me.peer_announced.has(b.index);
                        if !has {
                            problems.push(format!(
                                "node {i} requested piece {} from node {j}, which never announced it",
                                b.index
                            ));
                        }
                    }
                    Message::Piece { index, data, .. } => {
                        payload += data.len() as u64;
                        if let Some(sent) = node.seed_sent.as_mut() {
                            sent.set(index);
                        }
                    }
                    _ => {}
                }
                self.bounds.push(base + chunk.len() - input.len());
            }
            base += chunk.len();
        }
        node.rec.uploaded += payload;
        if let Some(sent) = &node.seed_sent {
            self.rep.seed_sent = Some(sent.count_ones());
        }
        for p in problems {
            fail(&mut self.rep.failures, p);
        }
    }

    // ----- arrivals and departures -------------------------------------------------------

    fn arrive(&mut self, ctx: &Ctx, i: u32) {
        let now = self.now;
        let l = ctx.local(i);
        let g = &ctx.sc.groups[self.nodes[l].group];
        let seed_value =
            Rng::new(ctx.seed ^ (u64::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
        let mut s = Box::new(Session::new(
            session_config(g, &ctx.sc.run),
            seed_value,
            Instant::from_micros(now),
        ));
        let have = g.seed.then(|| Bitfield::full(ctx.piece_count));
        let torrent = s
            .add_torrent(Instant::from_micros(now), ctx.meta.clone(), have.as_ref())
            .map_err(|e| format!("node {i}: {e}"));
        let torrent = match torrent {
            Ok(t) => t,
            Err(e) => {
                fail(&mut self.rep.failures, e);
                return;
            }
        };
        self.alive += 1;
        let n = &mut self.nodes[l];
        n.torrent = torrent;
        n.life = Life::Alive;
        n.rec.arrived = Some(now);
        n.session = Some(s);
        if g.seed {
            self.rep.seeds_arrived += 1;
            n.disk.verified = have;
            n.rec.completed = Some(now);
            self.rep
                .copies
                .extend((0..ctx.piece_count).map(|p| (p, true)));
        }
        if let Some(after) = g.depart.after {
            let wait = if g.depart.random_after {
                random_exp(&mut n.rng, after.0)
            } else {
                after.0
            };
            self.schedule_depart(ctx, l, now + wait);
        }
        self.trace.add(&[now, u64::from(i), 0xF7]);
        if let Some(r) = self.rec.as_mut() {
            r.arrive(now, i, l, g.seed);
        }
        // The Session has announces queued: drain them.
        self.input(ctx, l, |_, _| Ok(()));
    }

    fn depart(&mut self, ctx: &Ctx, i: u32) {
        let now = self.now;
        let l = ctx.local(i);
        if self.nodes[l].life != Life::Alive {
            return;
        }
        self.trace.add(&[now, u64::from(i), 0xF8]);
        if let Some(r) = self.rec.as_mut() {
            r.depart(now, i, l);
        }
        let crash = ctx.sc.groups[self.nodes[l].group].depart.crash;
        if !crash {
            self.input(ctx, l, |s, now| s.shutdown(now));
        }
        // Whatever connections are left (all of them after a crash) die silently or with a
        // FIN, and the tracker forgets the node.
        let conns: Vec<u64> = self.nodes[l]
            .conns
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != NONE)
            .map(|(c, _)| c as u64)
            .collect();
        for c in conns {
            let Some(slot) = self.half_slot(l, c) else {
                continue;
            };
            if crash {
                // What was already on its way still arrives; nothing answers any more.
                self.end_dead(l, slot);
                self.flush_tail(ctx, l, slot);
                self.free_half(l, slot);
            } else {
                self.on_close(ctx, l, c);
            }
        }
        if !crash {
            self.send(
                ctx,
                now + ctx.to_tracker(i),
                ctx.tracker_shard(),
                Ev::Forget(i),
            );
        }
        self.alive -= 1;
        let n = &mut self.nodes[l];
        if let Some(s) = n.session.take() {
            n.rec.stats = s.stats(n.torrent);
        }
        n.life = Life::Gone;
        n.rec.departed = Some(now);
        n.deadline = u64::MAX;
        if n.rec.completed.is_none() && !n.rec.seed {
            self.rep.closed += 1;
            self.rep.last_closed = now;
        }
        // Its pieces leave the swarm (the core's view is what it announced: PieceDone).
        let verified = n.disk.verified.take();
        n.disk = Disk::default();
        if let Some(v) = verified {
            self.rep.copies.extend(v.iter_ones().map(|p| (p, false)));
        }
    }

    // ----- dispatch ---------------------------------------------------------------------

    fn dispatch(&mut self, ctx: &Ctx, ev: Ev) {
        match ev {
            Ev::Arrive(i) => self.arrive(ctx, i),
            Ev::Depart(i) => self.depart(ctx, i),
            Ev::Syn {
                to,
                from,
                conn,
                port,
                started,
            } => self.on_syn(ctx, to, from, conn, port, started),
            Ev::SynAck {
                to,
                conn,
                peer_conn,
            } => self.on_synack(ctx, to, conn, peer_conn),
            Ev::Refused { to, conn } => self.on_refused(ctx, to, conn),
            Ev::Data {
                to,
                conn,
                first,
                data,
            } => self.on_data(ctx, to, conn, first, data),
            Ev::Deliver { to, conn, data } => self.on_deliver(ctx, to, conn, data),
            Ev::Fin { to, conn } => self.on_fin(ctx, to, conn),
            Ev::Wake { node, conn } => self.on_wake(ctx, node, conn),
            Ev::TrackerHttp {
                node,
                torrent,
                request,
                url,
            } => {
                let Some(tracker) = self.tracker.as_mut() else {
                    return;
                };
                let body = tracker.http(Instant::from_micros(self.now), node, node_ip(node), &url);
                let ev = Ev::HttpReply {
                    node,
                    torrent,
                    request,
                    body,
                };
                self.send(ctx, self.now + ctx.to_tracker(node), ctx.shard_of(node), ev);
            }
            Ev::HttpReply {
                node,
                torrent,
                request,
                body,
            } => {
                self.trace
                    .add(&[self.now, u64::from(node), 0xF9, body.len() as u64]);
                self.input(ctx, ctx.local(node), |s, now| {
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
                let Some(t) = self.tracker.as_mut() else {
                    return;
                };
                let reply = t.udp(Instant::from_micros(self.now), node, node_ip(node), &packet);
                if let Some(data) = reply {
                    let copies = if duplicated(&mut self.net_rng, ctx) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        if let Some(at) = udp_hop(&mut self.net_rng, ctx, node, self.now) {
                            let ev = Ev::UdpReply {
                                node,
                                torrent,
                                tracker,
                                data: data.clone(),
                            };
                            self.send(ctx, at, ctx.shard_of(node), ev);
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
                self.input(ctx, ctx.local(node), |s, now| {
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
            Ev::Forget(node) => {
                if let Some(t) = self.tracker.as_mut() {
                    t.forget(node);
                }
            }
        }
    }
}
