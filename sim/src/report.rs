//! What a run reports: a [`Summary`] (printed as a table, written as JSON) and an SVG chart.

use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::{RunResult, Sample};
use crate::scenario::{Behaviour, TrackerKind};

/// A distribution: nearest-rank percentiles.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Dist {
    /// Values.
    pub count: usize,
    /// Smallest.
    pub min: f64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Largest.
    pub max: f64,
}

impl Dist {
    /// `None` for no values.
    pub fn of(mut v: Vec<f64>) -> Option<Dist> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let at = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Some(Dist {
            count: n,
            min: v[0],
            p10: at(0.10),
            p50: at(0.50),
            p90: at(0.90),
            max: v[n - 1],
        })
    }
}

/// One group's results.
#[derive(Clone, Debug, Serialize)]
pub struct GroupSummary {
    /// Name.
    pub name: String,
    /// Nodes.
    pub nodes: u32,
    /// Started with the data.
    pub seed: bool,
    /// Behaviour.
    pub behaviour: Behaviour,
    /// Leechers that completed.
    pub completed: u32,
    /// Leechers that left before completing.
    pub left_incomplete: u32,
    /// Leechers still downloading at the end.
    pub unfinished: u32,
    /// Seconds from arrival to completion.
    pub completion_s: Option<Dist>,
    /// Piece payload uploaded, all nodes of the group.
    pub uploaded_bytes: u64,
    /// Piece payload sent to the group.
    pub downloaded_bytes: u64,
}

/// The original seed's contribution.
#[derive(Clone, Debug, Serialize)]
pub struct SeedSummary {
    /// Node index.
    pub node: u32,
    /// Piece payload it uploaded.
    pub uploaded_bytes: u64,
    /// That, in torrent sizes.
    pub copies: f64,
    /// When it left, if it did (seconds).
    pub departed_s: Option<f64>,
}

/// Bytes that did not help.
#[derive(Clone, Debug, Serialize)]
pub struct WasteSummary {
    /// Piece payload carried on all connections.
    pub payload_on_wire_bytes: u64,
    /// Payload the cores accepted and kept (their `downloaded`).
    pub useful_bytes: u64,
    /// Received payload thrown away (duplicates, unrequested, failed pieces), the cores' count.
    pub wasted_bytes: u64,
    /// Of which in pieces that failed their hash check.
    pub hash_failed_bytes: u64,
    /// All bytes carried minus piece payload (handshakes, messages, headers).
    pub protocol_bytes: u64,
}

/// Connection counts.
#[derive(Clone, Debug, Serialize)]
pub struct ConnSummary {
    /// Connections established.
    pub established: u64,
    /// Outgoing attempts that failed.
    pub failed: u64,
    /// Most simultaneous connections any node had.
    pub peak_max: u32,
    /// Mean of the nodes' peaks.
    pub peak_mean: f64,
    /// The most common reasons nodes closed connections, most frequent first.
    pub close_reasons: Vec<(String, u64)>,
}

/// Everything a run reports; also its JSON form (`seed` first, `trace_hash` last).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Scenario name.
    pub scenario: String,
    /// Torrent bytes.
    pub torrent_bytes: u64,
    /// Pieces.
    pub pieces: u32,
    /// Piece length.
    pub piece_length: u64,
    /// HTTP or UDP.
    pub tracker: TrackerKind,
    /// Every leecher completed or left.
    pub finished: bool,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Virtual seconds simulated.
    pub sim_time_s: f64,
    /// Events processed.
    pub events: u64,
    /// Per group.
    pub groups: Vec<GroupSummary>,
    /// The original seed.
    pub original_seed: SeedSummary,
    /// Leechers' uploaded / downloaded.
    pub share_ratio: Option<Dist>,
    /// Waste.
    pub waste: WasteSummary,
    /// Hash checks that failed, all nodes.
    pub hash_failures: u64,
    /// Bans issued, all nodes.
    pub bans: u64,
    /// Nodes banned by at least one peer.
    pub banned_nodes: u32,
    /// Connections.
    pub connections: ConnSummary,
    /// Announces the tracker answered.
    pub tracker_announces: u64,
    /// Checks that ran.
    pub checks: Vec<String>,
    /// Checks that failed (empty: passed).
    pub failures: Vec<String>,
    /// Distinct pieces held by live nodes at the end (less than `pieces`: data was lost).
    pub pieces_available_at_end: u32,
    /// Piece availability over time (at most 200 points).
    pub availability: Vec<Sample>,
    /// The trace hash.
    pub trace_hash: String,
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Thins a series to at most `n` points (keeps the first and the last).
fn thin(series: &[Sample], n: usize) -> Vec<Sample> {
    if series.len() <= n || n < 2 {
        return series.to_vec();
    }
    let step = (series.len() - 1) as f64 / (n - 1) as f64;
    (0..n)
        .map(|k| series[((k as f64 * step).round() as usize).min(series.len() - 1)])
        .collect()
}

impl Summary {
    /// Builds the summary of a run.
    pub fn of(r: &RunResult) -> Summary {
        let sc = &r.scenario;
        let mut groups = Vec::new();
        for (gi, g) in sc.groups.iter().enumerate() {
            let nodes: Vec<_> = r.nodes.iter().filter(|n| n.group == gi).collect();
            let mut times = Vec::new();
            let (mut completed, mut left, mut unfinished) = (0, 0, 0);
            for n in &nodes {
                if g.seed {
                    continue;
                }
                match (n.arrived, n.completed, n.departed) {
                    (Some(a), Some(c), _) => {
                        completed += 1;
                        times.push(secs(c - a));
                    }
                    (_, None, Some(_)) => left += 1,
                    _ => unfinished += 1,
                }
            }
            groups.push(GroupSummary {
                name: g.name.clone(),
                nodes: g.count,
                seed: g.seed,
                behaviour: g.behaviour,
                completed,
                left_incomplete: left,
                unfinished,
                completion_s: Dist::of(times),
                uploaded_bytes: nodes.iter().map(|n| n.uploaded).sum(),
                downloaded_bytes: nodes.iter().map(|n| n.downloaded).sum(),
            });
        }
        let total = r.total_length;
        let seed = &r.nodes[r.original_seed as usize];
        let ratios: Vec<f64> = r
            .nodes
            .iter()
            .filter(|n| !n.seed && n.downloaded > 0)
            .map(|n| n.uploaded as f64 / n.downloaded as f64)
            .collect();
        let stats = || r.nodes.iter().filter_map(|n| n.stats.as_ref());
        let payload: u64 = r.nodes.iter().map(|n| n.uploaded).sum();
        let sent: u64 = r.nodes.iter().map(|n| n.bytes_sent).sum();
        let peaks: Vec<u32> = r
            .nodes
            .iter()
            .filter(|n| n.arrived.is_some())
            .map(|n| n.peak_connections)
            .collect();
        let mut checks = vec![
            "completed nodes hold the original data (every piece verified, no bad block)".into(),
            "no node exceeds its connection limits".into(),
            "no block is requested from a peer that did not announce it".into(),
            "no node serves a piece it has not verified".into(),
        ];
        if sc.run.check_seed_copy {
            checks.push("the original seed sends every piece before any leecher completes".into());
        }
        if sc.torrent.real_hash {
            checks.push("SHA-1 of every written piece agrees with the byte comparison".into());
        }
        if !sc.run.allow_incomplete {
            checks.push("every leecher completes or leaves within run.max_time".into());
        }
        Summary {
            seed: r.seed,
            scenario: sc.name.clone(),
            torrent_bytes: total,
            pieces: r.piece_count,
            piece_length: sc.torrent.piece_length.0,
            tracker: sc.tracker.kind,
            finished: r.finished,
            stopped: r.stopped.clone(),
            sim_time_s: secs(r.end_time),
            events: r.events,
            groups,
            original_seed: SeedSummary {
                node: r.original_seed,
                uploaded_bytes: seed.uploaded,
                copies: seed.uploaded as f64 / total.max(1) as f64,
                departed_s: seed.departed.map(secs),
            },
            share_ratio: Dist::of(ratios),
            waste: WasteSummary {
                payload_on_wire_bytes: payload,
                useful_bytes: stats().map(|s| s.downloaded).sum(),
                wasted_bytes: stats().map(|s| s.wasted).sum(),
                hash_failed_bytes: r.hash_failed_bytes,
                protocol_bytes: sent.saturating_sub(payload),
            },
            hash_failures: r.nodes.iter().map(|n| u64::from(n.hash_failures)).sum(),
            bans: r.nodes.iter().map(|n| u64::from(n.bans_issued)).sum(),
            banned_nodes: r.nodes.iter().filter(|n| n.banned_by > 0).count() as u32,
            connections: ConnSummary {
                established: r.connections,
                failed: r.nodes.iter().map(|n| u64::from(n.connect_failures)).sum(),
                peak_max: peaks.iter().copied().max().unwrap_or(0),
                close_reasons: {
                    let mut v: Vec<(String, u64)> = r
                        .close_reasons
                        .iter()
                        .map(|(k, n)| (k.clone(), *n))
                        .collect();
                    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    v.truncate(6);
                    v
                },
                peak_mean: if peaks.is_empty() {
                    0.0
                } else {
                    peaks.iter().map(|p| f64::from(*p)).sum::<f64>() / peaks.len() as f64
                },
            },
            tracker_announces: r.announces,
            checks,
            failures: r.failures.clone(),
            pieces_available_at_end: r.series.last().map_or(0, |p| p.available),
            availability: thin(&r.series, 200),
            trace_hash: r.trace_hash.clone(),
        }
    }

    /// The summary as a table (no seed and no trace hash: the CLI prints those around it).
    pub fn table(&self) -> String {
        let mut o = String::new();
        let leechers: u32 = self
            .groups
            .iter()
            .filter(|g| !g.seed)
            .map(|g| g.nodes)
            .sum();
        let seeds: u32 = self.groups.iter().filter(|g| g.seed).map(|g| g.nodes).sum();
        let _ = writeln!(
            o,
            "scenario {}: {} seed(s) + {} leecher(s); torrent {} ({} pieces of {}); {:?} tracker",
            self.scenario,
            seeds,
            leechers,
            bytes(self.torrent_bytes),
            self.pieces,
            bytes(self.piece_length),
            self.tracker
        );
        let how = match &self.stopped {
            None => "finished".to_string(),
            Some(why) => format!("STOPPED ({why})"),
        };
        let _ = writeln!(
            o,
            "{how} at {:.1} s of virtual time, {} events",
            self.sim_time_s, self.events
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<20} {:>6} {:>6} {:>5} {:>6}  {:>9} {:>9} {:>9}  {:>10} {:>10}",
            "group", "nodes", "done", "left", "open", "p50", "p90", "max", "uploaded", "received"
        );
        for g in &self.groups {
            let (p50, p90, max) = match &g.completion_s {
                Some(d) => (
                    format!("{:.1}s", d.p50),
                    format!("{:.1}s", d.p90),
                    format!("{:.1}s", d.max),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let name = match g.behaviour {
                Behaviour::Normal => g.name.clone(),
                Behaviour::FreeRider => format!("{} (free)", g.name),
                Behaviour::CorruptData => format!("{} (liar)", g.name),
                Behaviour::SlowStart => format!("{} (slow)", g.name),
            };
            let done = if g.seed {
                "seed".to_string()
            } else {
                g.completed.to_string()
            };
            let _ = writeln!(
                o,
                "{:<20} {:>6} {:>6} {:>5} {:>6}  {:>9} {:>9} {:>9}  {:>10} {:>10}",
                name,
                g.nodes,
                done,
                g.left_incomplete,
                g.unfinished,
                p50,
                p90,
                max,
                bytes(g.uploaded_bytes),
                bytes(g.downloaded_bytes)
            );
        }
        let _ = writeln!(o, "(p50/p90/max: time from arrival to completion)");
        let _ = writeln!(o);
        let s = &self.original_seed;
        let _ = write!(
            o,
            "original seed (node {}): uploaded {} = {:.2} copies of the torrent",
            s.node,
            bytes(s.uploaded_bytes),
            s.copies
        );
        match s.departed_s {
            Some(t) => {
                let _ = writeln!(o, "; left at {t:.1} s");
            }
            None => {
                let _ = writeln!(o);
            }
        }
        if self.pieces_available_at_end < self.pieces {
            let _ = writeln!(
                o,
                "DATA LOST: only {} of {} pieces are held by a live node at the end",
                self.pieces_available_at_end, self.pieces
            );
        }
        if let Some(d) = &self.share_ratio {
            let _ = writeln!(
                o,
                "share ratio (leechers, up/down): min {:.2}  p10 {:.2}  p50 {:.2}  p90 {:.2}  max {:.2}",
                d.min, d.p10, d.p50, d.p90, d.max
            );
        }
        let w = &self.waste;
        let _ = writeln!(
            o,
            "payload on the wire {}, kept {}; wasted {} ({} in failed pieces); protocol bytes {}",
            bytes(w.payload_on_wire_bytes),
            bytes(w.useful_bytes),
            bytes(w.wasted_bytes),
            bytes(w.hash_failed_bytes),
            bytes(w.protocol_bytes)
        );
        let _ = writeln!(
            o,
            "hash failures {}, bans {} ({} node(s) banned)",
            self.hash_failures, self.bans, self.banned_nodes
        );
        let c = &self.connections;
        let _ = writeln!(
            o,
            "connections: {} established, {} failed; peak per node: max {}, mean {:.1}; {} tracker announces",
            c.established, c.failed, c.peak_max, c.peak_mean, self.tracker_announces
        );
        for (reason, n) in &c.close_reasons {
            let _ = writeln!(o, "  {n:>7} closed: {reason}");
        }
        let _ = writeln!(o);
        if self.failures.is_empty() {
            let _ = writeln!(o, "checks: all {} passed", self.checks.len());
            for c in &self.checks {
                let _ = writeln!(o, "  ok  {c}");
            }
        } else {
            let _ = writeln!(o, "CHECKS FAILED ({}):", self.failures.len());
            for f in &self.failures {
                let _ = writeln!(o, "  FAIL  {f}");
            }
        }
        o
    }
}

/// `15.6 MiB`, `512 KiB`, `900 B`.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A two-panel SVG: the completion CDF per group, and piece availability over time.
pub fn svg(r: &RunResult, s: &Summary) -> String {
    let (w, h) = (900.0, 360.0);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="12">"#,
        2.0 * h + 40.0
    );
    let _ = writeln!(
        o,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="15">hive-sim {} · seed {} · trace {}</text>"#,
        esc(&s.scenario),
        s.seed,
        s.trace_hash
    );
    // Panel 1: completion CDF.
    let mut curves: Vec<(String, u32, Vec<f64>)> = Vec::new();
    for (gi, g) in r.scenario.groups.iter().enumerate() {
        if g.seed {
            continue;
        }
        let mut t: Vec<f64> = r
            .nodes
            .iter()
            .filter(|n| n.group == gi)
            .filter_map(|n| Some(secs(n.completed? - n.arrived?)))
            .collect();
        t.sort_by(f64::total_cmp);
        curves.push((format!("{} ({})", g.name, g.count), g.count, t));
    }
    let xmax = curves
        .iter()
        .filter_map(|(_, _, t)| t.last().copied())
        .fold(1.0, f64::max);
    let panel = Panel {
        x0: 70.0,
        y0: 40.0,
        w: w - 110.0,
        h: h - 70.0,
        xmax: nice(xmax),
        ymax: 1.0,
    };
    panel.axes(
        &mut o,
        "seconds from arrival to completion",
        "fraction of the group done",
    );
    for (k, (name, count, t)) in curves.iter().enumerate() {
        let count = *count;
        let mut pts = vec![(0.0, 0.0)];
        for (i, x) in t.iter().enumerate() {
            let y0 = i as f64 / f64::from(count.max(1));
            let y1 = (i + 1) as f64 / f64::from(count.max(1));
            pts.push((*x, y0));
            pts.push((*x, y1));
        }
        if let Some(&(_, y)) = pts.last() {
            pts.push((panel.xmax, y));
        }
        panel.line(&mut o, &pts, COLOURS[k % COLOURS.len()]);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" fill="{}">{}</text>"#,
            panel.x0 + 10.0,
            panel.y0 + 16.0 + 16.0 * k as f64,
            COLOURS[k % COLOURS.len()],
            esc(name)
        );
    }
    // Panel 2: availability.
    let tmax = r.series.last().map_or(1.0, |p| p.t).max(1.0);
    let panel = Panel {
        x0: 70.0,
        y0: h + 40.0,
        w: w - 110.0,
        h: h - 70.0,
        xmax: nice(tmax),
        ymax: f64::from(r.piece_count.max(1)),
    };
    panel.axes(&mut o, "virtual time (s)", "pieces in the swarm");
    let series = thin(&r.series, 2000);
    let avail: Vec<(f64, f64)> = series
        .iter()
        .map(|p| (p.t, f64::from(p.available)))
        .collect();
    panel.line(&mut o, &avail, COLOURS[0]);
    let maxc = series.iter().map(|p| p.copies).fold(1.0, f64::max);
    let scale = f64::from(r.piece_count.max(1)) / nice(maxc);
    let copies: Vec<(f64, f64)> = series.iter().map(|p| (p.t, p.copies * scale)).collect();
    panel.line(&mut o, &copies, COLOURS[1]);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" fill="{}">distinct pieces held by live nodes</text><text x="{}" y="{}" fill="{}">copies of the torrent in the swarm (0..{}, scaled)</text>"#,
        panel.x0 + 10.0,
        panel.y0 + 16.0,
        COLOURS[0],
        panel.x0 + 10.0,
        panel.y0 + 32.0,
        COLOURS[1],
        nice(maxc)
    );
    o.push_str("</svg>\n");
    o
}

struct Panel {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    xmax: f64,
    ymax: f64,
}

impl Panel {
    fn px(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.x0 + x / self.xmax * self.w,
            self.y0 + self.h - y / self.ymax * self.h,
        )
    }

    fn axes(&self, o: &mut String, xlabel: &str, ylabel: &str) {
        let _ = writeln!(
            o,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
            self.x0, self.y0, self.w, self.h
        );
        for k in 0..=5 {
            let f = f64::from(k) / 5.0;
            let (x, _) = self.px(self.xmax * f, 0.0);
            let (_, y) = self.px(0.0, self.ymax * f);
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                self.y0,
                self.y0 + self.h,
                self.y0 + self.h + 15.0,
                tick(self.xmax * f)
            );
            let _ = writeln!(
                o,
                r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                self.x0,
                self.x0 + self.w,
                self.x0 - 5.0,
                y + 4.0,
                tick(self.ymax * f)
            );
        }
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            self.x0 + self.w / 2.0,
            self.y0 + self.h + 30.0,
            esc(xlabel),
            self.x0 - 50.0,
            self.y0 + self.h / 2.0,
            esc(ylabel)
        );
    }

    fn line(&self, o: &mut String, pts: &[(f64, f64)], colour: &str) {
        let mut d = String::new();
        for &(x, y) in pts {
            let (px, py) = self.px(x.min(self.xmax), y.min(self.ymax));
            let _ = write!(d, "{px:.1},{py:.1} ");
        }
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            d.trim_end()
        );
    }
}

fn tick(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A round axis maximum at or above `v`: 1, 2 or 5 times a power of ten.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mut p = 1e-3;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * p >= v {
                return m * p;
            }
        }
        p *= 10.0;
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
