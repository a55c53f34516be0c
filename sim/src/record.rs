//! `hive-sim run --record FILE`: the per-node event stream of a run, for `hive-sim view`.
//!
//! # Format (version 1)
//!
//! JSON lines. The first line is the header, an object with `"format":"hive-sim-record"` and
//! `"version":1` (a reader refuses other versions), the scenario name, the seed, the sampling
//! cadence, the torrent (as the view's `hello` shows it) and the node groups. Every other line
//! is an object whose first keys are `t` (virtual time, integer microseconds), `n` (the node
//! index; absent on `end`) and `k` (the kind):
//!
//! | `k` | fields | when |
//! |---|---|---|
//! | `arrive` | `seed` (it starts with every piece) | the node starts |
//! | `depart` | | the node leaves (or crashes) |
//! | `join` | `c` (connection id, per node), `peer` (node index or `null`), `addr` | a handshake completes |
//! | `leave` | `c`, `why` | a joined connection ends |
//! | `complete` | | the node has every piece |
//! | `hash_failed` | `p` (piece) | a piece failed its check |
//! | `ban` | `addr`, `peer` | the node banned a peer |
//! | `tracker` | `status` (`error`, `warning`), `url`, `msg` | a tracker problem |
//! | `error` | `msg` | a torrent error |
//! | `s` | `got`, `dl`, `tot`, `c` (each only when it changed) | see below |
//! | `end` | `finished` | the last line |
//!
//! `s` (sample) lines carry what changed for one node since its previous `s` line, written at
//! every multiple of the cadence (`sample_every_us`) and just before `complete`: `got`, the
//! pieces verified since (in order); `dl`, the pieces now being downloaded or verified; `tot`,
//! `[downloaded, uploaded, wasted, download_rate, upload_rate, peers_known, hash_failures]`
//! (bytes, bytes/s, counts, as the node's core reports them); `c`, one `[conn, flags,
//! download_rate, upload_rate]` per joined connection whose flags or rates changed (flags: 1
//! outgoing, 2 we choke, 4 we are interested, 8 it chokes us, 16 it is interested, 32
//! snubbed). A node with nothing new writes no line, so an idle swarm costs nothing and the
//! size grows with activity (pieces, connections, transfers), not with bytes moved.
//!
//! Recording only reads the Sessions (statistics and snapshots) between steps: a run with
//! `--record` has the same trace hash as one without, and the same scenario and seed give a
//! byte-identical file, with any number of threads. Each shard of the engine writes its nodes'
//! lines (`RecShard`); at the end of every window the lines are merged by time (at one
//! instant: samples in node order, then events in shard order).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use hive_core::metainfo::Metainfo;
use hive_core::session::{Event, LeaveReason, PieceView, Session, TorrentId};
use serde_json::json;

use crate::scenario::Scenario;

/// The format's name in the header.
pub const FORMAT: &str = "hive-sim-record";
/// The format version this build writes and reads.
pub const VERSION: u64 = 1;

/// Connection flag bits of `s` lines.
pub mod flags {
    /// We opened the connection.
    pub const OUTGOING: u8 = 1;
    /// We choke the peer.
    pub const AM_CHOKING: u8 = 2;
    /// We are interested in the peer.
    pub const AM_INTERESTED: u8 = 4;
    /// The peer chokes us.
    pub const PEER_CHOKING: u8 = 8;
    /// The peer is interested in us.
    pub const PEER_INTERESTED: u8 = 16;
    /// A request to the peer timed out.
    pub const SNUBBED: u8 = 32;
}

/// What the last `s` line of a node said, to write only changes.
#[derive(Default)]
struct NodeState {
    /// The next sampling instant (µs).
    due: u64,
    got: Vec<u32>,
    dl: Vec<u32>,
    tot: [u64; 7],
    conns: BTreeMap<u64, (u8, u64, u64)>,
}

/// Writes a record; the engine calls it (see [`crate::Engine::record`]). The lines themselves
/// are formatted by each shard of the engine (`RecShard`) and merged here in time order.
pub struct Recorder {
    out: Box<dyn Write>,
    every: u64,
    line: String,
    error: Option<String>,
}

/// Where a line goes among the lines of the same instant: samples (in node order) first, then
/// events (in shard order, then in the order the shard produced them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LineKey {
    t: u64,
    class: u8,
    order: u64,
}

/// One shard's part of a record: the state of its nodes' last `s` lines, and the lines it
/// wrote since the last merge.
pub(crate) struct RecShard {
    every: u64,
    /// By the node's index within the shard.
    nodes: Vec<NodeState>,
    shard: u64,
    text: String,
    lines: Vec<(LineKey, usize, usize)>,
    /// Start of the line being written.
    open: usize,
    events: u64,
}

impl Recorder {
    /// A recorder writing to `out`, sampling every `every_us` microseconds of virtual time.
    pub fn new(out: Box<dyn Write>, every_us: u64) -> Recorder {
        Recorder {
            out,
            every: every_us.max(1),
            line: String::with_capacity(256),
            error: None,
        }
    }

    /// The sampling cadence (µs).
    pub(crate) fn every(&self) -> u64 {
        self.every
    }

    /// The header line.
    pub(crate) fn header(&mut self, sc: &Scenario, seed: u64, meta: &Metainfo) {
        let mut first = 0;
        let groups: Vec<_> = sc
            .groups
            .iter()
            .map(|g| {
                let v = json!({"name": g.name, "count": g.count, "seed": g.seed, "first": first});
                first += g.count;
                v
            })
            .collect();
        let h = json!({
            "format": FORMAT,
            "version": VERSION,
            "scenario": sc.name,
            "seed": seed,
            "nodes": first,
            "sample_every_us": self.every,
            "torrent": {
                "name": meta.name(),
                "info_hash": hive_live::schema::hex(meta.info_hash().as_bytes()),
                "size": meta.total_length(),
                "piece_length": meta.piece_length(),
                "pieces": meta.piece_count(),
                "files": meta.files().len(),
                "private": meta.is_private(),
            },
            "groups": groups,
        });
        self.line = h.to_string();
        self.flush_line();
    }

    fn flush_line(&mut self) {
        if self.error.is_none() {
            self.line.push('\n');
            if let Err(e) = self.out.write_all(self.line.as_bytes()) {
                self.error = Some(e.to_string());
            }
        }
        self.line.clear();
    }

    /// Writes the lines the shards wrote since the last merge, in time order (every line of
    /// a later merge is later: the engine merges at the end of each window).
    pub(crate) fn merge<'a>(&mut self, shards: impl IntoIterator<Item = &'a mut RecShard>) {
        let shards: Vec<&mut RecShard> = shards.into_iter().collect();
        let mut all: Vec<(LineKey, usize, usize, usize)> = Vec::new();
        for (k, s) in shards.iter().enumerate() {
            all.extend(s.lines.iter().map(|&(key, a, b)| (key, k, a, b)));
        }
        all.sort_unstable_by_key(|x| (x.0, x.1));
        if self.error.is_none() {
            for &(_, k, a, b) in &all {
                let line = &shards[k].text[a..b];
                if let Err(e) = self.out.write_all(line.as_bytes()) {
                    self.error = Some(e.to_string());
                    break;
                }
            }
        }
        for s in shards {
            s.text.clear();
            s.lines.clear();
        }
    }

    /// The `end` line; flushes. The first write error, if any.
    pub(crate) fn finish(&mut self, t: u64, finished: bool) -> Option<String> {
        self.line.clear();
        let _ = write!(self.line, r#"{{"t":{t},"k":"end","finished":{finished}}}"#);
        self.flush_line();
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e.to_string());
            }
        }
        self.error.clone()
    }
}

impl RecShard {
    /// Shard `shard`'s part of a record sampled every `every` µs.
    pub(crate) fn new(shard: usize, every: u64) -> RecShard {
        RecShard {
            every: every.max(1),
            nodes: Vec::new(),
            shard: shard as u64,
            text: String::new(),
            lines: Vec::new(),
            open: 0,
            events: 0,
        }
    }

    /// The next sampling instant of the shard's node `local` (µs).
    pub(crate) fn due(&self, local: usize) -> u64 {
        self.nodes.get(local).map_or(0, |n| n.due)
    }

    /// Node `local`'s sampling instant is done: the next is the first multiple of the
    /// cadence after `t` (the node does not change between two of its steps, so the
    /// instants in between would find nothing new).
    pub(crate) fn done_until(&mut self, local: usize, t: u64) {
        let every = self.every;
        self.node(local).due = (t / every + 1) * every;
    }

    fn node(&mut self, local: usize) -> &mut NodeState {
        if self.nodes.len() <= local {
            self.nodes.resize_with(local + 1, NodeState::default);
        }
        &mut self.nodes[local]
    }

    fn start(&mut self, t: u64, i: u32, kind: &str) {
        self.open = self.text.len();
        let _ = write!(self.text, r#"{{"t":{t},"n":{i},"k":"{kind}""#);
    }

    /// Ends an event line (ordered after the samples of its instant, in shard order).
    fn end_event(&mut self, t: u64) {
        self.text.push_str("}\n");
        self.events += 1;
        let key = LineKey {
            t,
            class: 1,
            order: (self.shard << 40) | self.events,
        };
        self.lines.push((key, self.open, self.text.len()));
    }

    /// Node `i` (`local` in the shard) arrived.
    pub(crate) fn arrive(&mut self, t: u64, i: u32, local: usize, seed: bool) {
        self.node(local);
        self.start(t, i, "arrive");
        let _ = write!(self.text, r#","seed":{seed}"#);
        self.end_event(t);
    }

    /// Node `i` left.
    pub(crate) fn depart(&mut self, t: u64, i: u32, local: usize) {
        self.start(t, i, "depart");
        self.end_event(t);
        if let Some(n) = self.nodes.get_mut(local) {
            *n = NodeState {
                due: n.due,
                ..NodeState::default()
            };
        }
    }

    /// A Session event of node `i` (`peer` maps an address to a node index).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn event(
        &mut self,
        t: u64,
        i: u32,
        local: usize,
        s: &Session,
        torrent: TorrentId,
        ev: &Event,
        peer: impl Fn(std::net::IpAddr) -> Option<u32>,
    ) {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let opt = |p: Option<u32>| p.map_or("null".to_owned(), |p| p.to_string());
        match ev {
            Event::PieceDone { piece, .. } => self.node(local).got.push(*piece),
            Event::PeerJoined { conn, addr, .. } => {
                self.start(t, i, "join");
                let _ = write!(
                    self.text,
                    r#","c":{},"peer":{},"addr":"{addr}""#,
                    conn.0,
                    opt(peer(addr.ip()))
                );
                self.end_event(t);
            }
            Event::PeerLeft { conn, reason, .. } => {
                self.node(local).conns.remove(&conn.0);
                let why = match reason {
                    LeaveReason::Closed(why) => why.as_str(),
                    LeaveReason::Remote => "closed by the peer",
                    LeaveReason::ConnectFailed => "connect failed",
                };
                self.start(t, i, "leave");
                let _ = write!(self.text, r#","c":{},"why":{}"#, conn.0, q(why));
                self.end_event(t);
            }
            Event::TorrentComplete { .. } => {
                // The pieces that completed it first, so a reader sees 100 % with `complete`.
                self.sample_line(t, i, local, s, torrent, 1);
                self.start(t, i, "complete");
                self.end_event(t);
            }
            Event::HashFailed { piece, .. } => {
                self.start(t, i, "hash_failed");
                let _ = write!(self.text, r#","p":{piece}"#);
                self.end_event(t);
            }
            Event::PeerBanned { addr, .. } => {
                self.start(t, i, "ban");
                let _ = write!(
                    self.text,
                    r#","addr":"{addr}","peer":{}"#,
                    opt(peer(addr.ip()))
                );
                self.end_event(t);
            }
            Event::TrackerError { url, message, .. }
            | Event::TrackerWarning { url, message, .. } => {
                let status = if matches!(ev, Event::TrackerError { .. }) {
                    "error"
                } else {
                    "warning"
                };
                self.start(t, i, "tracker");
                let _ = write!(
                    self.text,
                    r#","status":"{status}","url":{},"msg":{}"#,
                    q(url),
                    q(message)
                );
                self.end_event(t);
            }
            Event::TorrentError { message, .. } => {
                self.start(t, i, "error");
                let _ = write!(self.text, r#","msg":{}"#, q(message));
                self.end_event(t);
            }
            _ => {}
        }
    }

    /// An `s` line for node `i` at `t` if anything changed since its last one, among the
    /// instant's samples (in node order).
    pub(crate) fn sample(&mut self, t: u64, i: u32, local: usize, s: &Session, torrent: TorrentId) {
        self.sample_line(t, i, local, s, torrent, 0);
    }

    fn sample_line(
        &mut self,
        t: u64,
        i: u32,
        local: usize,
        s: &Session,
        torrent: TorrentId,
        class: u8,
    ) {
        let Some(st) = s.stats(torrent) else { return };
        let tot = [
            st.downloaded,
            st.uploaded,
            st.wasted,
            st.download_rate,
            st.upload_rate,
            st.peers_known as u64,
            u64::from(st.hash_failures),
        ];
        let dl: Vec<u32> = s
            .piece_snapshots(torrent)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(|(_, (v, _))| *v == PieceView::Downloading)
            .map(|(p, _)| p as u32)
            .collect();
        let mut changed = Vec::new();
        let peers = s.peer_snapshots(torrent).unwrap_or_default();
        let node = self.node(local);
        for p in &peers {
            let f = [
                (p.outgoing, flags::OUTGOING),
                (p.am_choking, flags::AM_CHOKING),
                (p.am_interested, flags::AM_INTERESTED),
                (p.peer_choking, flags::PEER_CHOKING),
                (p.peer_interested, flags::PEER_INTERESTED),
                (p.snubbed, flags::SNUBBED),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .fold(0u8, |acc, (_, bit)| acc | bit);
            let v = (f, p.download_rate, p.upload_rate);
            if node.conns.insert(p.conn.0, v) != Some(v) {
                changed.push((p.conn.0, v));
            }
        }
        let got = std::mem::take(&mut node.got);
        let new_dl = node.dl != dl;
        let new_tot = node.tot != tot;
        if got.is_empty() && !new_dl && !new_tot && changed.is_empty() {
            return;
        }
        if new_dl {
            node.dl.clone_from(&dl);
        }
        node.tot = tot;
        let list = |v: &[u32]| {
            let mut s = String::from("[");
            for (k, x) in v.iter().enumerate() {
                if k > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{x}");
            }
            s.push(']');
            s
        };
        self.start(t, i, "s");
        if !got.is_empty() {
            let _ = write!(self.text, r#","got":{}"#, list(&got));
        }
        if new_dl {
            let _ = write!(self.text, r#","dl":{}"#, list(&dl));
        }
        if new_tot {
            let [a, b, c, d, e, f, g] = tot;
            let _ = write!(self.text, r#","tot":[{a},{b},{c},{d},{e},{f},{g}]"#);
        }
        if !changed.is_empty() {
            self.text.push_str(r#","c":["#);
            for (k, (c, (f, dr, ur))) in changed.iter().enumerate() {
                if k > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "[{c},{f},{dr},{ur}]");
            }
            self.text.push(']');
        }
        if class == 0 {
            self.text.push_str("}\n");
            let key = LineKey {
                t,
                class: 0,
                order: u64::from(i),
            };
            self.lines.push((key, self.open, self.text.len()));
        } else {
            self.end_event(t);
        }
    }
}
