//! The discrete-event engine: a virtual clock, nodes that are plain
//! `hive_core::session::Session`s, and the links between them, run on every core with results
//! that do not depend on how many.
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
//! - reaches the receiver's downlink from `start + path latency + jitter` (first byte) to
//!   `up_end + path latency + jitter` (last byte; never before the previous segment of the
//!   same pipe: jitter never reorders a connection);
//! - goes through the receiver's downlink from `max(first byte, down_busy)` for
//!   `n / download`, and is delivered when both its last byte arrived and the downlink is
//!   through with it. The receiver keeps its own downlink: segments from all its peers queue
//!   there in the order their last bytes arrive, and a pipe's segments never overtake each
//!   other.
//!
//! So the slower end sets the pace, a node's connections share its links, and latency adds.
//! A short write (at most `COALESCE`, 1 KiB) to a connection whose last segment has not
//! started to leave the uplink yet joins that segment instead (its bytes are still charged to
//! both links), as TCP sends bytes that wait in one socket buffer together: a node whose
//! uplink is busy with blocks sends its `have`s in batches, not one segment each. The sender
//! holds such a segment until it starts to leave (or a later segment of the pipe is cut, or
//! the connection closes), so joining never touches anything but the sender.
//!
//! A connection's socket buffer holds the bytes that have not yet left the sender's uplink;
//! while it holds `send_buffer` bytes or more the sender's `Transmit` is not answered (the
//! bytes stay in the Session, whose own watermark then stops disk reads), and when it drains to
//! half the engine says `Input::Writable`. What waits at a busy downlink is not in any socket
//! buffer, and it needs no bound of its own: BitTorrent is request-driven, so what is in
//! flight to a node is bounded by the requests the node itself has outstanding (plus a few
//! protocol messages). Connection setup costs a round trip (the acceptor's Session accepts
//! when the SYN arrives, the initiator hears `Connected` a path latency later); a refused
//! connection fails after a round trip, one to a vanished host after `connect_timeout` (never
//! sooner than a round trip). A close reaches the other end after the bytes sent before it;
//! one made while connecting reaches the acceptor after the SYN-ACK.
//!
//! Tracker traffic is not rate-limited: an HTTP announce is answered after a round trip to the
//! tracker; UDP datagrams may be lost, duplicated or delayed (and so reordered). A departing
//! node's `stopped` is taken as delivered: the tracker forgets it a one-way latency later.
//!
//! # Disk and hashing
//!
//! One payload (`Bytes`) is shared by every node: a block read is a slice of it. Written
//! blocks are compared with the payload when written and only a per-piece set of bad blocks is
//! kept, so a piece verifies iff none of its blocks is bad (with `real_hash`, the written
//! piece is also assembled and hashed with SHA-1, and the two verdicts must agree). A
//! corrupt-data node serves flipped bytes, so its victims' hash checks really fail.
//!
//! # Shards, windows and threads
//!
//! The run is a conservative parallel discrete-event simulation. Node `i` belongs to shard
//! `i % S` (`S` = 64, or the node count if smaller, or 1 with a zero lookahead: a function
//! of the scenario only); the tracker is one more shard. A shard owns its nodes (Sessions,
//! connection halves, links, disks, random generators, and per node an event queue keyed by
//! time and a shard-local sequence, and the Session's deadline: the queue wins a tie), a
//! trace and counters; the tracker's events wait in a radix heap (`queue.rs`).
//!
//! Two lookaheads bound how soon anything reaches another entity: `L` between nodes (the
//! smallest sum of two nodes' latencies) and `Lt` between a node and the tracker (the smallest
//! node latency plus the tracker's; jitter only adds). The run proceeds in windows. With `N`
//! the earliest time any node can still act (what is pending at nodes, or the earliest the
//! tracker's answer to what is pending there can arrive) and `Tt` the same for the tracker,
//! node shards process everything before `min(N + L, Tt + Lt)` and the tracker's shard
//! everything before `N + Lt` (both also end at the next availability sample and at
//! `max_time`), each in its own (time, sequence) order, including what it schedules for itself
//! in that window (timers, wake-ups, departures). Whatever a node causes at another node or the
//! tracker lands after the window: a shard runs its window node by node (all of one node's
//! events, then the next node's), which keeps a Session in cache while it works through its
//! batch (10-15 % faster than time order across the shard's nodes, 1,000 nodes), and lets the
//! shard read ahead what the batch's deliveries will touch, so that their cache misses overlap
//! (`Shard::prefetch_node`); what goes to another shard waits in mailboxes, and the next window
//! starts with each shard taking its mail in source-shard order. With a zero lookahead the
//! windows are rounds at one instant. Everything global (pieces available, completions,
//! failures, the series, the record's lines) is merged at the barrier between windows, in shard
//! order. Checks that need another node's state use what was true when the window began: a
//! leecher completing in a window cannot hold a piece the original seed sent in it (that takes
//! `L`). The request check needs no other node: each node's half of a connection records what
//! the other end's bytes announced as they are delivered, and a request must name a piece
//! announced there.
//!
//! Worker threads (`RunOptions::threads`) take shards one by one in each window and wait at
//! a barrier; the leader merges between windows. Which thread runs a shard changes nothing:
//! each shard's events, random draws and trace are its own, and the trace hash is the SHA-1 of
//! the shards' trace digests in shard order. A run gives the same hash and summary with any
//! number of threads.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hive_core::create::{Content, TorrentBuilder};
use hive_core::metainfo::Metainfo;
use hive_core::piece_hash::hash_piece;
use hive_core::rng::Rng;
use hive_core::session::TorrentStats;
use hive_core::wire::DecoderLimits;

use crate::record::Recorder;
use crate::scenario::{Scenario, TrackerKind};
use crate::shard::{Ctx, Ev, Life, Mail, NONE, Node, Plan, Shard, fail};
use crate::trace::Trace;
use crate::tracker::{TRACKER_IP, Tracker, UDP_PORT};

/// Every node listens here.
pub const LISTEN_PORT: u16 = 6881;
/// How long data must stay lost before the run gives up (a piece whose blocks all arrived is
/// verified within moments; this is far longer).
const LOST_GRACE: u64 = 60_000_000;
/// Shards for nodes (fewer when there are fewer nodes). A constant, so that a run does not
/// depend on the machine.
const SHARDS: usize = 64;

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
    /// Worker threads (0: one per core). The results are the same with any number.
    pub threads: usize,
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

/// The simulator.
pub struct Engine {
    ctx: Ctx,
    opts: RunOptions,
    shards: Vec<Shard>,
    recorder: Option<Box<Recorder>>,
    open_leechers: u32,
    pending_seeds: u32,
}

/// The lookaheads: the least latency between two distinct nodes (`u64::MAX` with one node),
/// and between a node and the tracker.
fn lookahead(latency: &[u64], tracker: u64) -> (u64, u64) {
    let (mut a, mut b) = (u64::MAX, u64::MAX);
    for &l in latency {
        if l < a {
            b = a;
            a = l;
        } else if l < b {
            b = l;
        }
    }
    (a.saturating_add(b), a.saturating_add(tracker))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Engine {
    /// Sets up a run: payload, torrent, nodes and their arrival times.
    pub fn new(sc: Scenario, opts: RunOptions) -> Result<Engine, String> {
        sc.validate()?;
        let (payload, meta) = make_torrent(&sc, opts.seed)?;
        let mut rng = Rng::new(opts.seed);
        let tracker = Tracker::new(sc.tracker.interval.0, sc.tracker.numwant, rng.fork());
        let mut arrivals_rng = rng.fork();
        let net_rng = rng.fork();
        let piece_count = meta.piece_count();
        let limits = DecoderLimits::DEFAULT.with_piece_count(piece_count);
        let (mut latency, mut jitter) = (Vec::new(), Vec::new());
        let mut original_seed = NONE;
        for g in &sc.groups {
            for _ in 0..g.count {
                if g.seed && original_seed == NONE {
                    original_seed = latency.len() as u32;
                }
                latency.push(g.latency.0);
                jitter.push(g.jitter.0);
            }
        }
        let nodes = latency.len() as u32;
        let (lookahead_nodes, lookahead_tracker) = lookahead(&latency, sc.tracker.latency.0);
        // With a zero lookahead every window is a single instant with a few events: more
        // shards would only add their per-window cost (mail, merging, barriers) to each one
        // (a 200-node crowd ran 60 times slower per event than with 10 ms links).
        let shards = if lookahead_nodes == 0 {
            1
        } else {
            SHARDS.min(latency.len()).max(1)
        };
        let ctx = Ctx {
            piece_len: meta.piece_length(),
            piece_count,
            limits,
            shards,
            lookahead_nodes,
            lookahead_tracker,
            original_seed,
            nodes,
            latency,
            jitter,
            seed: opts.seed,
            payload,
            meta,
            sc,
        };
        let mut all: Vec<Shard> = (0..=shards)
            .map(|k| Shard::new(k, shards + 1, Rng::new(0)))
            .collect();
        all[shards] = Shard::new(shards, shards + 1, net_rng);
        all[shards].tracker = Some(Box::new(tracker));
        let (mut open_leechers, mut pending_seeds) = (0, 0);
        let mut i = 0u32;
        for (gi, g) in ctx.sc.groups.iter().enumerate() {
            let mut t = g.arrival.at.0;
            for k in 0..g.count {
                let at = if let Some(rate) = g.arrival.poisson {
                    if k > 0 {
                        let mean = (1e6 / rate).round() as u64;
                        t += crate::shard::random_exp(&mut arrivals_rng, mean);
                    }
                    t
                } else if g.arrival.spread.0 > 0 {
                    g.arrival.at.0 + arrivals_rng.below(g.arrival.spread.0 + 1)
                } else {
                    g.arrival.at.0
                };
                if g.seed {
                    pending_seeds += 1;
                } else {
                    open_leechers += 1;
                }
                let s = &mut all[ctx.shard_of(i)];
                s.nodes.push(Node::new(i, gi, g, &ctx.sc.run, &ctx));
                s.push(&ctx, at, Ev::Arrive(i));
                i += 1;
            }
        }
        for s in &mut all {
            s.report_next();
        }
        Ok(Engine {
            ctx,
            opts,
            shards: all,
            recorder: None,
            open_leechers,
            pending_seeds,
        })
    }

    /// Writes the run's per-node event stream to `r` (see [`crate::record`]); call before
    /// [`Engine::run`]. Observing does not change the run (same trace hash).
    pub fn record(&mut self, mut r: Recorder) {
        r.header(&self.ctx.sc, self.opts.seed, &self.ctx.meta);
        for (k, s) in self.shards.iter_mut().enumerate() {
            s.rec = Some(crate::record::RecShard::new(k, r.every()));
        }
        self.recorder = Some(Box::new(r));
    }

    /// Runs to the end: every leecher completed or left, or the time limit.
    pub fn run(self) -> Result<RunResult, String> {
        let Engine {
            ctx,
            opts,
            shards,
            recorder,
            open_leechers,
            pending_seeds,
        } = self;
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        // One thread per node shard at most (the tracker's shard is light).
        .min(shards.len().saturating_sub(1))
        .max(1);
        let mut lead = Leader {
            progress: opts.progress,
            wall: std::time::Instant::now(),
            last_print: std::time::Instant::now(),
            recorder,
            copies: vec![0; ctx.piece_count as usize],
            available: 0,
            total_copies: 0,
            completed: 0,
            open_leechers,
            pending_seeds,
            lost_since: None,
            seed_sent: 0,
            first_leecher_done: false,
            series: Vec::new(),
            steps: 0,
            connections: 0,
            hash_failed_bytes: 0,
            failures: Vec::new(),
            now: 0,
            next_sample: 0,
            windows: 0,
            finished: false,
        };
        let shards: Vec<Mutex<Shard>> = shards.into_iter().map(Mutex::new).collect();
        let mail = Mail::new(shards.len());
        let first = lead.barrier(&ctx, &shards)?;
        if threads == 1 {
            let mut plan = first;
            while let Some(p) = plan {
                for s in &shards {
                    lock(s).window(&ctx, &p, &mail);
                }
                plan = lead.barrier(&ctx, &shards)?;
            }
        } else {
            let cell: Mutex<Option<Plan>> = Mutex::new(first);
            let claim = AtomicUsize::new(0);
            let barrier = Barrier::new(threads);
            let panicked: Mutex<Option<Box<dyn std::any::Any + Send>>> = Mutex::new(None);
            let mut outcome = Ok(());
            // Each window: every thread takes shards until none is left, then all wait; the
            // leader (this thread) merges and sets the next window, then all wait again.
            let work = |plan: &Plan| {
                loop {
                    let k = claim.fetch_add(1, Ordering::Relaxed);
                    let Some(s) = shards.get(k) else { break };
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        lock(s).window(&ctx, plan, &mail);
                    }));
                    if let Err(p) = r {
                        lock(&panicked).get_or_insert(p);
                    }
                }
            };
            std::thread::scope(|scope| {
                for _ in 1..threads {
                    scope.spawn(|| {
                        loop {
                            barrier.wait();
                            let Some(plan) = *lock(&cell) else { break };
                            work(&plan);
                            barrier.wait();
                        }
                    });
                }
                loop {
                    barrier.wait();
                    let Some(plan) = *lock(&cell) else { break };
                    work(&plan);
                    barrier.wait();
                    let next = if lock(&panicked).is_some() {
                        Ok(None)
                    } else {
                        lead.barrier(&ctx, &shards)
                    };
                    claim.store(0, Ordering::Relaxed);
                    *lock(&cell) = match next {
                        Ok(p) => p,
                        Err(e) => {
                            outcome = Err(e);
                            None
                        }
                    };
                }
            });
            if let Some(p) = lock(&panicked).take() {
                std::panic::resume_unwind(p);
            }
            outcome?;
        }
        if opts.progress && lead.wall.elapsed() >= Duration::from_secs(1) {
            eprintln!();
        }
        let shards = shards
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect();
        Ok(lead.finish(ctx, opts, shards))
    }
}

/// The state of the whole run, merged from the shards at each barrier.
struct Leader {
    progress: bool,
    wall: std::time::Instant,
    last_print: std::time::Instant,
    /// `--record`: an observer only; it reads Sessions, never feeds them.
    recorder: Option<Box<Recorder>>,
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
    /// Pieces the original seed had sent when the current window began.
    seed_sent: u32,
    first_leecher_done: bool,
    series: Vec<Sample>,
    steps: u64,
    connections: u64,
    hash_failed_bytes: u64,
    failures: Vec<String>,
    /// The last event processed (or sample taken).
    now: u64,
    next_sample: u64,
    windows: u64,
    finished: bool,
}

impl Leader {
    /// No live node holds some piece and no seed is still to arrive: the open leechers can
    /// never complete, so running on to the time limit would only burn time.
    fn data_lost(&self, pc: u32) -> bool {
        self.pending_seeds == 0 && self.available < pc && self.open_leechers > 0
    }

    fn sample(&mut self, alive: u32, pc: u32) {
        self.series.push(Sample {
            t: self.now as f64 / 1e6,
            available: self.available,
            copies: self.total_copies as f64 / f64::from(pc.max(1)),
            nodes: alive,
            completed: self.completed,
        });
    }

    /// Merges what the shards did in the window that ended, takes the samples due, and plans
    /// the next window (`None`: the run is over).
    fn barrier(&mut self, ctx: &Ctx, shards: &[Mutex<Shard>]) -> Result<Option<Plan>, String> {
        let pc = ctx.piece_count;
        let mut guards: Vec<MutexGuard<'_, Shard>> = shards.iter().map(lock).collect();
        let (mut next_nodes, mut next_tracker, mut alive) = (u64::MAX, u64::MAX, 0u32);
        let mut first: Option<(u64, u32)> = None;
        let mut seed_sent = self.seed_sent;
        for g in guards.iter_mut() {
            let sh: &mut Shard = g;
            if let Some(e) = sh.error.take() {
                return Err(e);
            }
            let r = &mut sh.rep;
            self.steps += std::mem::take(&mut r.steps);
            self.completed += std::mem::take(&mut r.completed);
            self.open_leechers -= std::mem::take(&mut r.closed);
            self.pending_seeds -= std::mem::take(&mut r.seeds_arrived);
            for (p, gained) in r.copies.drain(..) {
                if let Some(c) = self.copies.get_mut(p as usize) {
                    if gained {
                        *c += 1;
                        self.total_copies += 1;
                        if *c == 1 {
                            self.available += 1;
                        }
                    } else {
                        *c -= 1;
                        self.total_copies -= 1;
                        if *c == 0 {
                            self.available -= 1;
                        }
                    }
                }
            }
            self.connections += std::mem::take(&mut r.connections);
            self.hash_failed_bytes += std::mem::take(&mut r.hash_failed_bytes);
            for f in r.failures.drain(..) {
                fail(&mut self.failures, f);
            }
            if let Some(f) = r.first_leecher.take() {
                first = Some(first.map_or(f, |x| x.min(f)));
            }
            if let Some(c) = r.seed_sent {
                seed_sent = c;
            }
            next_nodes = next_nodes.min(r.next_nodes);
            next_tracker = next_tracker.min(r.next_tracker);
            self.now = self.now.max(r.now);
            alive += sh.alive;
        }
        if let Some((_, i)) = first {
            if !self.first_leecher_done {
                self.first_leecher_done = true;
                // Every piece that reached it left the seed before this window began.
                if ctx.sc.run.check_seed_copy && self.seed_sent < pc {
                    let sent = self.seed_sent;
                    fail(
                        &mut self.failures,
                        format!(
                            "flash crowd: node {i} completed before the original seed had sent every piece ({sent} of {pc})"
                        ),
                    );
                }
            }
        }
        self.seed_sent = seed_sent;
        if let Some(r) = self.recorder.as_mut() {
            r.merge(guards.iter_mut().filter_map(|g| g.rec.as_mut()));
        }
        drop(guards);
        if self.steps > ctx.sc.run.max_steps {
            return Err(format!(
                "step limit: {} events without finishing at t={:.3}s (a livelock? raise run.max_steps)",
                ctx.sc.run.max_steps,
                self.now as f64 / 1e6
            ));
        }
        if self.open_leechers == 0 {
            self.finished = true;
            return Ok(None);
        }
        let max_time = ctx.sc.run.max_time.0;
        let next = next_nodes.min(next_tracker);
        loop {
            if next.min(self.next_sample) > max_time {
                self.now = max_time;
                return Ok(None);
            }
            if self.next_sample > next {
                break;
            }
            // Nothing happens between the window's end and the sample: it sees the state
            // before the events at its instant.
            self.now = self.next_sample;
            self.steps += 1;
            self.sample(alive, pc);
            if !self.data_lost(pc) {
                self.lost_since = None;
            } else if self.lost_since.is_none() {
                self.lost_since = Some(self.now);
            }
            self.next_sample += ctx.sc.run.sample_every.0;
            if self.lost_since.is_some_and(|t| self.now >= t + LOST_GRACE) {
                return Ok(None);
            }
        }
        // Nodes hear from nodes and from the tracker, the tracker only from nodes. No node
        // acts before `at_nodes` (what is pending at nodes, or the earliest the tracker's
        // answer to what is pending there can arrive), and the tracker not before
        // `at_tracker`; each window ends where the earliest of those could first reach it.
        let (lnn, lnt) = (ctx.lookahead_nodes, ctx.lookahead_tracker);
        let (end, tracker_end) = if lnn > 0 && lnt > 0 {
            let limit = self.next_sample.min(max_time + 1);
            let at_nodes = next_nodes.min(next_tracker.saturating_add(lnt));
            let at_tracker = next_tracker.min(next_nodes.saturating_add(lnt));
            let nodes = at_nodes
                .saturating_add(lnn)
                .min(at_tracker.saturating_add(lnt));
            (nodes.min(limit), at_nodes.saturating_add(lnt).min(limit))
        } else {
            (next + 1, next + 1)
        };
        if self.progress && self.last_print.elapsed() >= Duration::from_secs(1) {
            self.last_print = std::time::Instant::now();
            eprint!(
                "\r[hive-sim] t={:.1}s  events={}  {:.0} events/s  completed={}  open={}   ",
                self.now as f64 / 1e6,
                self.steps,
                self.steps as f64 / self.wall.elapsed().as_secs_f64().max(1e-9),
                self.completed,
                self.open_leechers
            );
        }
        let plan = Plan {
            index: self.windows,
            end,
            tracker_end,
            steps: self.steps,
        };
        self.windows += 1;
        Ok(Some(plan))
    }

    fn finish(mut self, ctx: Ctx, opts: RunOptions, mut shards: Vec<Shard>) -> RunResult {
        let pc = ctx.piece_count;
        let alive = shards.iter().map(|s| s.alive).sum();
        self.sample(alive, pc);
        let finished = self.finished;
        let stop = if finished {
            None
        } else if self.lost_since.is_some() && self.data_lost(pc) {
            Some(format!(
                "data lost: only {} of {} pieces are held by a live node",
                self.available, pc
            ))
        } else {
            Some(format!(
                "time limit ({}s)",
                ctx.sc.run.max_time.0 / 1_000_000
            ))
        };
        if let Some(why) = &stop {
            if !ctx.sc.run.allow_incomplete {
                let open = self.open_leechers;
                fail(
                    &mut self.failures,
                    format!("{open} leecher(s) neither completed nor left: {why}"),
                );
            }
        }
        for s in &mut shards {
            for n in &mut s.nodes {
                if let Some(sess) = &n.session {
                    n.rec.stats = sess.stats(n.torrent);
                }
            }
        }
        let now = self.now;
        let record_error = self.recorder.take().and_then(|mut r| {
            for s in &mut shards {
                s.record_samples(&ctx, now);
            }
            r.merge(shards.iter_mut().filter_map(|s| s.rec.as_mut()));
            r.finish(now, finished)
        });
        let trace_hash = Trace::combine(shards.iter().map(|s| &s.trace));
        let mut nodes: Vec<NodeRecord> = (0..ctx.nodes)
            .map(|i| {
                let n = &mut shards[ctx.shard_of(i)].nodes[ctx.local(i)];
                debug_assert!(n.life != Life::Pending || n.rec.arrived.is_none());
                std::mem::take(&mut n.rec)
            })
            .collect();
        let mut close_reasons = BTreeMap::new();
        let mut announces = 0;
        for s in &shards {
            for &j in &s.banned {
                if let Some(n) = nodes.get_mut(j as usize) {
                    n.banned_by += 1;
                }
            }
            for (k, v) in &s.close_reasons {
                *close_reasons.entry(k.clone()).or_insert(0) += v;
            }
            if let Some(t) = &s.tracker {
                announces = t.announces;
            }
        }
        RunResult {
            record_error,
            trace_hash,
            nodes,
            series: self.series,
            failures: self.failures,
            finished,
            stopped: stop,
            end_time: now,
            events: self.steps,
            connections: self.connections,
            announces,
            hash_failed_bytes: self.hash_failed_bytes,
            close_reasons,
            total_length: ctx.meta.total_length(),
            piece_count: pc,
            original_seed: ctx.original_seed,
            seed: opts.seed,
            scenario: ctx.sc,
        }
    }
}
