//! Reading a record ([`crate::record`]) back: the state of any node at any virtual time, as
//! the swarm view's schema-1 messages (`source: "replay"`), for `hive-sim view`.
//!
//! The whole record is loaded; a snapshot folds the chosen node's lines up to the time asked
//! (O(its lines)), and peers' progress and piece availability come from one table of when
//! each node verified each piece (nodes x pieces entries). Peers' progress is the simulator's
//! ground truth (when each node verified each piece), not what the node had been told by
//! `have` messages, which lags by a round trip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use hive_core::session::{
    ConnId, Event, LeaveReason, PeerSnapshot, PieceView, TorrentId, TorrentState, TorrentStats,
};
use hive_core::time::Instant;
use hive_live::schema;
use serde_json::{Value, json};

use crate::record::{FORMAT, VERSION, flags};

/// How far back the rate graph of a snapshot reaches, and its resolution.
const HISTORY_POINTS: u64 = 240;
const HISTORY_STEP: u64 = 250_000;
/// Events sent with one step of a page at most (a page shows the most recent ones).
pub const MAX_EVENTS: usize = 8;

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Not a record, or a newer version.
    #[error("{0}")]
    Header(String),
    /// A line that is not what the format says.
    #[error("line {line}: {what}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        what: String,
    },
}

/// One node group of the scenario.
#[derive(Clone, Debug)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its nodes started with every piece.
    pub seed: bool,
    /// Its first node's index.
    pub first: u32,
    /// Its number of nodes.
    pub count: u32,
}

#[derive(Clone, Debug)]
enum Line {
    Join {
        c: u64,
        peer: Option<u32>,
        addr: SocketAddr,
    },
    Leave {
        c: u64,
        why: String,
    },
    Complete,
    HashFailed(u32),
    Ban(SocketAddr),
    Tracker {
        status: String,
        url: String,
        msg: String,
    },
    Error(String),
    Sample {
        dl: Option<Vec<u32>>,
        tot: Option<[u64; 7]>,
        conns: Vec<(u64, u8, u64, u64)>,
    },
}

#[derive(Clone, Debug, Default)]
struct NodeLog {
    arrived: Option<u64>,
    departed: Option<u64>,
    completed: Option<u64>,
    seed: bool,
    lines: Vec<(u64, Line)>,
    /// (t, download rate, upload rate) whenever the totals changed.
    rates: Vec<(u64, u64, u64)>,
}

#[derive(Clone, Debug)]
struct Conn {
    peer: Option<u32>,
    addr: SocketAddr,
    flags: u8,
    down: u64,
    up: u64,
}

/// A node's state at one instant, folded from its lines.
#[derive(Default)]
struct At {
    conns: BTreeMap<u64, Conn>,
    dl: Vec<u32>,
    tot: [u64; 7],
    tracker: Value,
}

/// A loaded record.
pub struct Replay {
    /// The scenario's name.
    pub scenario: String,
    /// The run's seed.
    pub seed: u64,
    /// Nodes in the run.
    pub nodes: u32,
    /// The node groups.
    pub groups: Vec<Group>,
    /// Virtual time of the last line (µs).
    pub end: u64,
    /// Every leecher completed or left.
    pub finished: bool,
    torrent: Value,
    pieces: u32,
    piece_length: u64,
    size: u64,
    log: Vec<NodeLog>,
    /// `done_at[node * pieces + piece]`: when the node verified the piece (µs), or `u64::MAX`.
    done_at: Vec<u64>,
}

fn u(v: &Value, k: &str) -> Result<u64, String> {
    v[k].as_u64()
        .ok_or_else(|| format!("`{k}` is not a number"))
}

fn list(v: &Value) -> Result<Vec<u32>, String> {
    v.as_array()
        .ok_or("not a list")?
        .iter()
        .map(|x| {
            x.as_u64()
                .map(|x| x as u32)
                .ok_or_else(|| "not a number".into())
        })
        .collect()
}

fn addr(v: &Value) -> Result<SocketAddr, String> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{v} is not an address"))
}

fn string(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

impl Replay {
    /// Parses a record (the text of a `--record` file).
    pub fn parse(text: &str) -> Result<Replay, ReplayError> {
        let mut lines = text.lines();
        let header: Value = lines
            .next()
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| ReplayError::Header("not a hive-sim record: the first line is not a JSON header; write one with hive-sim run ... --record FILE".into()))?;
        if header["format"] != FORMAT {
            return Err(ReplayError::Header(format!(
                "not a hive-sim record (the header's format is {}, not {FORMAT:?})",
                header["format"]
            )));
        }
        if header["version"] != VERSION {
            return Err(ReplayError::Header(format!(
                "record format version {} is not supported by this hive-sim (it reads version {VERSION}); view it with the hive-sim that wrote it",
                header["version"]
            )));
        }
        let bad = |what: String| ReplayError::Header(format!("record header: {what}"));
        let torrent = header["torrent"].clone();
        let pieces = u(&torrent, "pieces").map_err(bad)? as u32;
        let piece_length = u(&torrent, "piece_length").map_err(bad)?;
        let size = u(&torrent, "size").map_err(bad)?;
        let nodes = u(&header, "nodes").map_err(bad)? as u32;
        let groups = header["groups"]
            .as_array()
            .ok_or_else(|| bad("no groups".into()))?
            .iter()
            .map(|g| {
                Ok(Group {
                    name: string(&g["name"]),
                    seed: g["seed"].as_bool().unwrap_or(false),
                    first: u(g, "first")? as u32,
                    count: u(g, "count")? as u32,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(bad)?;
        let mut r = Replay {
            scenario: string(&header["scenario"]),
            seed: header["seed"].as_u64().unwrap_or(0),
            nodes,
            groups,
            end: 0,
            finished: false,
            torrent,
            pieces,
            piece_length,
            size,
            log: vec![NodeLog::default(); nodes as usize],
            done_at: vec![u64::MAX; nodes as usize * pieces as usize],
        };
        for (k, text) in lines.enumerate() {
            let line = k + 2;
            if text.is_empty() {
                continue;
            }
            r.line(text)
                .map_err(|what| ReplayError::Line { line, what })?;
        }
        Ok(r)
    }

    fn line(&mut self, text: &str) -> Result<(), String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let t = u(&v, "t")?;
        self.end = self.end.max(t);
        let kind = v["k"].as_str().ok_or("no `k`")?;
        if kind == "end" {
            self.finished = v["finished"].as_bool().unwrap_or(false);
            return Ok(());
        }
        let n = u(&v, "n")? as u32;
        if n >= self.nodes {
            return Err(format!("node {n} of {}", self.nodes));
        }
        let pieces = self.pieces as usize;
        let row = n as usize * pieces;
        let log = &mut self.log[n as usize];
        let l = match kind {
            "arrive" => {
                log.arrived = Some(t);
                log.seed = v["seed"].as_bool().unwrap_or(false);
                if log.seed {
                    log.completed = Some(t);
                    self.done_at[row..row + pieces].fill(t);
                }
                return Ok(());
            }
            "depart" => {
                log.departed = Some(t);
                return Ok(());
            }
            "join" => Line::Join {
                c: u(&v, "c")?,
                peer: v["peer"].as_u64().map(|p| p as u32),
                addr: addr(&v["addr"])?,
            },
            "leave" => Line::Leave {
                c: u(&v, "c")?,
                why: string(&v["why"]),
            },
            "complete" => {
                log.completed = Some(t);
                Line::Complete
            }
            "hash_failed" => Line::HashFailed(u(&v, "p")? as u32),
            "ban" => Line::Ban(addr(&v["addr"])?),
            "tracker" => Line::Tracker {
                status: string(&v["status"]),
                url: string(&v["url"]),
                msg: string(&v["msg"]),
            },
            "error" => Line::Error(string(&v["msg"])),
            "s" => {
                if !v["got"].is_null() {
                    for p in list(&v["got"])? {
                        if p >= self.pieces {
                            return Err(format!("piece {p} of {}", self.pieces));
                        }
                        self.done_at[row + p as usize] = t;
                    }
                }
                let tot = if v["tot"].is_null() {
                    None
                } else {
                    let a = v["tot"].as_array().ok_or("`tot` is not a list")?;
                    let mut tot = [0u64; 7];
                    for (k, x) in tot.iter_mut().enumerate() {
                        *x = a.get(k).and_then(Value::as_u64).ok_or("`tot` too short")?;
                    }
                    log.rates.push((t, tot[3], tot[4]));
                    Some(tot)
                };
                let conns = match v["c"].as_array() {
                    None => Vec::new(),
                    Some(a) => {
                        a.iter()
                            .map(|c| {
                                let c: Vec<u64> = c
                                    .as_array()
                                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                                    .unwrap_or_default();
                                match c[..] {
                                    [id, f, d, u] => Ok((id, f as u8, d, u)),
                                    _ => Err("a connection entry is not [conn, flags, down, up]"
                                        .to_owned()),
                                }
                            })
                            .collect::<Result<_, String>>()?
                    }
                };
                Line::Sample {
                    dl: if v["dl"].is_null() {
                        None
                    } else {
                        Some(list(&v["dl"])?)
                    },
                    tot,
                    conns,
                }
            }
            other => return Err(format!("unknown kind {other:?}")),
        };
        log.lines.push((t, l));
        Ok(())
    }

    /// The group of node `n`.
    pub fn group(&self, n: u32) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| n >= g.first && n < g.first + g.count)
    }

    /// The first node that did not start as a seed (the most interesting to watch), else 0.
    pub fn default_node(&self) -> u32 {
        (0..self.nodes)
            .find(|&n| self.log[n as usize].arrived.is_some() && !self.log[n as usize].seed)
            .unwrap_or(0)
    }

    fn has(&self, n: u32, p: u32, t: u64) -> bool {
        self.done_at[n as usize * self.pieces as usize + p as usize] <= t
    }

    fn have_count(&self, n: u32, t: u64) -> u32 {
        let row = n as usize * self.pieces as usize;
        self.done_at[row..row + self.pieces as usize]
            .iter()
            .filter(|&&d| d <= t)
            .count() as u32
    }

    fn state(&self, n: u32, t: u64) -> At {
        let mut at = At {
            tracker: Value::Null,
            ..At::default()
        };
        let Some(log) = self.log.get(n as usize) else {
            return at;
        };
        for (lt, l) in &log.lines {
            if *lt > t {
                break;
            }
            match l {
                Line::Join { c, peer, addr } => {
                    at.conns.insert(
                        *c,
                        Conn {
                            peer: *peer,
                            addr: *addr,
                            flags: flags::AM_CHOKING | flags::PEER_CHOKING,
                            down: 0,
                            up: 0,
                        },
                    );
                }
                Line::Leave { c, .. } => {
                    at.conns.remove(c);
                }
                Line::Tracker { status, url, msg } => {
                    at.tracker = json!({"url": url, "status": status, "message": msg});
                }
                Line::Sample { dl, tot, conns } => {
                    if let Some(dl) = dl {
                        at.dl.clone_from(dl);
                    }
                    if let Some(tot) = tot {
                        at.tot = *tot;
                    }
                    for (c, f, d, u) in conns {
                        if let Some(conn) = at.conns.get_mut(c) {
                            (conn.flags, conn.down, conn.up) = (*f, *d, *u);
                        }
                    }
                }
                _ => {}
            }
        }
        if log.departed.is_some_and(|d| d <= t) {
            at.conns.clear();
            at.dl.clear();
            at.tot[3] = 0;
            at.tot[4] = 0;
        }
        at
    }

    fn alive(&self, n: u32, t: u64) -> bool {
        self.log
            .get(n as usize)
            .is_some_and(|l| l.arrived.is_some_and(|a| a <= t) && l.departed.is_none_or(|d| t < d))
    }

    fn rates_at(&self, n: u32, t: u64) -> (u64, u64) {
        let Some(log) = self.log.get(n as usize) else {
            return (0, 0);
        };
        if !self.alive(n, t) {
            return (0, 0);
        }
        let k = log.rates.partition_point(|(rt, _, _)| *rt <= t);
        k.checked_sub(1)
            .map_or((0, 0), |k| (log.rates[k].1, log.rates[k].2))
    }

    /// The `hello` of a replay: the torrent, and `replay` (the run: scenario, seed, nodes,
    /// groups, end time).
    pub fn hello(&self) -> Value {
        let mut h = schema::hello_of(
            self.torrent.clone(),
            "replay",
            Duration::from_micros(HISTORY_STEP),
        );
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|g| json!({"name": g.name, "seed": g.seed, "first": g.first, "count": g.count}))
            .collect();
        h["replay"] = json!({
            "scenario": self.scenario,
            "seed": self.seed,
            "nodes": self.nodes,
            "groups": groups,
            "end": self.end as f64 / 1e6,
            "finished": self.finished,
        });
        h
    }

    /// The schema-1 snapshot of node `n` at virtual time `t` (µs), with `replay` (the node,
    /// its group and life) and `history` (its rates over the last 60 s, oldest first).
    pub fn snapshot(&self, n: u32, t: u64) -> Value {
        let at = self.state(n, t);
        let alive = self.alive(n, t);
        let log = self.log.get(n as usize);
        let pieces = self.pieces;
        let have = self.have_count(n, t);
        let peers: Vec<Value> = at
            .conns
            .iter()
            .map(|(c, conn)| {
                let f = |bit| conn.flags & bit != 0;
                let p = PeerSnapshot {
                    conn: ConnId(*c),
                    addr: conn.addr,
                    client: conn.peer.map(|j| {
                        let g = self.group(j).map_or("", |g| g.name.as_str());
                        format!("node {j} · {g}")
                    }),
                    outgoing: f(flags::OUTGOING),
                    am_choking: f(flags::AM_CHOKING),
                    am_interested: f(flags::AM_INTERESTED),
                    peer_choking: f(flags::PEER_CHOKING),
                    peer_interested: f(flags::PEER_INTERESTED),
                    snubbed: f(flags::SNUBBED),
                    download_rate: conn.down,
                    upload_rate: conn.up,
                    pieces: conn.peer.map_or(0, |j| self.have_count(j, t)),
                };
                let mut v = schema::peer(&p, pieces);
                v["node"] = conn.peer.map_or(Value::Null, Value::from);
                v
            })
            .collect();
        let views: Vec<(PieceView, u32)> = (0..pieces)
            .map(|p| {
                let view = if self.has(n, p, t) {
                    PieceView::Have
                } else if at.dl.binary_search(&p).is_ok() {
                    PieceView::Downloading
                } else {
                    PieceView::Missing
                };
                let avail = at
                    .conns
                    .values()
                    .filter(|c| c.peer.is_some_and(|j| self.has(j, p, t)))
                    .count() as u32;
                (view, avail)
            })
            .collect();
        let last = self.size - self.piece_length * u64::from(pieces.saturating_sub(1));
        let left = if have == pieces {
            0
        } else {
            let have_last = pieces > 0 && self.has(n, pieces - 1, t);
            let full = u64::from(pieces - have) - u64::from(!have_last);
            full * self.piece_length + if have_last { 0 } else { last }
        };
        let [
            downloaded,
            uploaded,
            wasted,
            download_rate,
            upload_rate,
            known,
            failures,
        ] = at.tot;
        let stats = TorrentStats {
            torrent: TorrentId(0),
            state: if alive {
                TorrentState::Running
            } else {
                TorrentState::Removing
            },
            pieces_have: have,
            pieces_total: pieces,
            left,
            downloaded,
            uploaded,
            wasted,
            download_rate,
            upload_rate,
            peers_connected: at.conns.len(),
            peers_known: known as usize,
            hash_failures: failures as u32,
        };
        let now = Instant::from_micros(t);
        let mut s = schema::snapshot_of(
            now,
            Some(schema::totals(&stats, self.size)),
            peers,
            schema::pieces(&views),
            &at.tracker,
        );
        let secs = |x: Option<u64>| x.map_or(Value::Null, |x| (x as f64 / 1e6).into());
        let g = self.group(n);
        s["replay"] = json!({
            "node": n,
            "group": g.map(|g| g.name.clone()),
            "seed": log.is_some_and(|l| l.seed),
            "alive": alive,
            "arrived": secs(log.and_then(|l| l.arrived)),
            "completed": secs(log.and_then(|l| l.completed)),
            "departed": secs(log.and_then(|l| l.departed)),
            "end": self.end as f64 / 1e6,
        });
        let history: Vec<Value> = (0..HISTORY_POINTS)
            .rev()
            .filter_map(|k| t.checked_sub(k * HISTORY_STEP))
            .map(|ht| {
                let (d, u) = self.rates_at(n, ht);
                json!([d, u])
            })
            .collect();
        s["history"] = Value::Array(history);
        s
    }

    /// The events of node `n` in the virtual time interval `(from, to]`, as schema-1 event
    /// messages, the latest [`MAX_EVENTS`] at most.
    pub fn events(&self, n: u32, from: u64, to: u64) -> Vec<Value> {
        let Some(log) = self.log.get(n as usize) else {
            return Vec::new();
        };
        let torrent = TorrentId(0);
        let start = log.lines.partition_point(|(t, _)| *t <= from);
        let mut addrs: BTreeMap<u64, SocketAddr> = BTreeMap::new();
        let mut out: Vec<Value> = Vec::new();
        // Addresses of connections that leave in the window may have joined before it.
        for (_, l) in &log.lines[..start] {
            if let Line::Join { c, addr, .. } = l {
                addrs.insert(*c, *addr);
            }
        }
        for (t, l) in &log.lines[start..] {
            if *t > to {
                break;
            }
            let e = match l {
                Line::Join { c, peer, addr } => {
                    addrs.insert(*c, *addr);
                    Event::PeerJoined {
                        torrent,
                        conn: ConnId(*c),
                        addr: *addr,
                        client: peer.map(|j| format!("node {j}")),
                    }
                }
                Line::Leave { c, why } => Event::PeerLeft {
                    torrent,
                    conn: ConnId(*c),
                    addr: addrs
                        .get(c)
                        .copied()
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                    reason: LeaveReason::Closed(why.clone()),
                },
                Line::Complete => Event::TorrentComplete { torrent },
                Line::HashFailed(piece) => Event::HashFailed {
                    torrent,
                    piece: *piece,
                },
                Line::Ban(addr) => Event::PeerBanned {
                    torrent,
                    addr: *addr,
                },
                Line::Tracker { status, url, msg } if status == "error" => Event::TrackerError {
                    torrent,
                    url: url.clone(),
                    message: msg.clone(),
                },
                Line::Tracker { url, msg, .. } => Event::TrackerWarning {
                    torrent,
                    url: url.clone(),
                    message: msg.clone(),
                },
                Line::Error(msg) => Event::TorrentError {
                    torrent,
                    message: msg.clone(),
                },
                Line::Sample { .. } => continue,
            };
            if let Some(v) = schema::event(Instant::from_micros(*t), &e) {
                out.push(v);
            }
        }
        let skip = out.len().saturating_sub(MAX_EVENTS);
        out.drain(..skip);
        out
    }
}
