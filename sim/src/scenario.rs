//! Scenarios: what a run simulates. Read from TOML (see `scenarios/*.toml` and the README) or
//! built in ([`builtin`]); the built-ins take the main knobs as [`Knobs`].
//!
//! Units: sizes and rates take binary suffixes (`16K` = 16 KiB, `2M` = 2 MiB; a rate is bytes
//! per second, or `20mbit` = 20 000 000 bits per second); durations are `25ms`, `3s`, `10m`,
//! `1h` or a number of seconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// A whole scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in the summary.
    pub name: String,
    /// The run's seed when `--seed` is not given.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The torrent every node shares.
    pub torrent: TorrentSpec,
    /// The simulated tracker.
    #[serde(default)]
    pub tracker: TrackerSpec,
    /// Groups of nodes; the first node of the first `seed = true` group is "the original seed".
    #[serde(rename = "group")]
    pub groups: Vec<GroupSpec>,
    /// Limits, checks and recording.
    #[serde(default)]
    pub run: RunSpec,
}

/// The torrent: one file of deterministic pseudo-random bytes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TorrentSpec {
    /// Piece length (a power of two, at least 16 KiB).
    pub piece_length: Size,
    /// Number of pieces (the last one is full); or give `size`.
    #[serde(default)]
    pub pieces: Option<u32>,
    /// Total size in bytes (the last piece may be short); or give `pieces`.
    #[serde(default)]
    pub size: Option<Size>,
    /// Hash every piece with SHA-1 at every node instead of comparing written bytes with the
    /// payload (slower; both must agree).
    #[serde(default)]
    pub real_hash: bool,
}

/// How nodes reach the tracker.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    /// BEP 3 HTTP announces (bencoded replies, compact peers).
    #[default]
    Http,
    /// BEP 15 UDP announces (connect + announce), with packet loss and duplication.
    Udp,
}

/// The simulated tracker.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSpec {
    /// HTTP or UDP.
    pub kind: TrackerKind,
    /// `interval` in replies.
    pub interval: Dur,
    /// Most peers in one reply (the node's `numwant` may ask for fewer).
    pub numwant: u32,
    /// One-way latency between the tracker and any node's access link.
    pub latency: Dur,
    /// UDP only: chance that a datagram (either way) is lost, 0..=1.
    pub loss: f64,
    /// UDP only: chance that a datagram is delivered twice.
    pub duplicate: f64,
    /// UDP only: extra random delay, uniform in 0..=this (may reorder datagrams).
    pub jitter: Dur,
}

impl Default for TrackerSpec {
    fn default() -> Self {
        TrackerSpec {
            kind: TrackerKind::Http,
            interval: Dur::secs(300),
            numwant: 50,
            latency: Dur::millis(10),
            loss: 0.0,
            duplicate: 0.0,
            jitter: Dur::ZERO,
        }
    }
}

/// When the nodes of a group arrive.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArrivalSpec {
    /// First arrival.
    pub at: Dur,
    /// Spread arrivals uniformly over `at ..= at + spread`.
    pub spread: Dur,
    /// Poisson arrivals at this many nodes per second from `at` (overrides `spread`).
    pub poisson: Option<f64>,
}

impl Default for ArrivalSpec {
    fn default() -> Self {
        ArrivalSpec {
            at: Dur::ZERO,
            spread: Dur::ZERO,
            poisson: None,
        }
    }
}

/// When the nodes of a group leave (the earliest rule that fires).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DepartSpec {
    /// Leave this long after completing (0: at once); unset: stay.
    pub after_complete: Option<Dur>,
    /// Make `after_complete` random: exponential with that mean instead of fixed.
    pub random_linger: bool,
    /// Leave this long after arriving, complete or not; unset: no limit.
    pub after: Option<Dur>,
    /// Make `after` random: exponential with that mean (churn: some leave early).
    pub random_after: bool,
    /// Leave once this many torrent sizes were uploaded (a seed leaving after one copy: 1.0).
    pub after_upload: Option<f64>,
    /// Vanish without closing connections or telling the tracker (a crash, a cable pulled).
    pub crash: bool,
}

/// How a node behaves (through its Session's public configuration and the simulated disk).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// A plain Hive node.
    #[default]
    Normal,
    /// Never uploads: no upload slots, no optimistic unchoke, no allowed-fast pieces.
    FreeRider,
    /// Serves every block with its bytes flipped (its disk lies); peers' hash checks fail.
    CorruptData,
    /// Its link starts at a tenth of its rates and ramps to full over `slow_start` (a peer
    /// on a congested or warming-up line).
    SlowStart,
}

/// A group of identical nodes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Shown in the summary.
    pub name: String,
    /// Number of nodes.
    pub count: u32,
    /// Starts with the whole torrent.
    #[serde(default)]
    pub seed: bool,
    /// Upload rate (bytes/s; 0 = unlimited).
    pub upload: Rate,
    /// Download rate (bytes/s; 0 = unlimited).
    pub download: Rate,
    /// One-way latency of the node's access link; a path's latency is the sum of both ends'.
    #[serde(default = "default_latency")]
    pub latency: Dur,
    /// Extra random delay per segment, uniform in 0..=this; never reorders a connection.
    #[serde(default)]
    pub jitter: Dur,
    /// Behaviour.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// Arrival process.
    #[serde(default)]
    pub arrival: ArrivalSpec,
    /// Departure rules.
    #[serde(default)]
    pub depart: DepartSpec,
    /// Refuse every incoming connection (behind a NAT).
    #[serde(default)]
    pub refuse_incoming: bool,
    /// Session-wide connection limit (the core's default if unset).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Per-torrent connection limit (the core's default if unset).
    #[serde(default)]
    pub max_connections_per_torrent: Option<usize>,
    /// Upload slots of the choker (the core's default, 4, if unset).
    #[serde(default)]
    pub upload_slots: Option<usize>,
    /// `slow-start` behaviour: how long the ramp to full rate takes.
    #[serde(default = "default_slow_start")]
    pub slow_start: Dur,
}

fn default_slow_start() -> Dur {
    Dur::secs(60)
}

fn default_latency() -> Dur {
    Dur::millis(20)
}

/// Limits, checks and recording.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSpec {
    /// Stop here (virtual time); a run that has not finished by then failed, unless
    /// `allow_incomplete`.
    pub max_time: Dur,
    /// Events at most; more is a livelock and fails the run.
    pub max_steps: u64,
    /// Events at most at one virtual instant (a tighter livelock guard).
    pub max_steps_per_instant: u64,
    /// A leecher may end incomplete (pieces lost, free-riders starved) without failing the run.
    pub allow_incomplete: bool,
    /// Check that the original seed uploads every piece before any leecher completes (true for
    /// a flash crowd, where no other node has data).
    pub check_seed_copy: bool,
    /// Bytes a connection may hold unsent in its socket buffer before the sender must wait.
    pub send_buffer: Size,
    /// The nodes' `upload_watermark` (the core's read-ahead of blocks for a peer). Disk reads
    /// are instant here, so a deep read-ahead buys nothing and costs memory; the core's own
    /// default is 1 MiB.
    pub upload_watermark: Size,
    /// The nodes' `have_batch` (how long a `have` may wait to leave with others); unset:
    /// the core's default.
    pub have_batch: Option<Dur>,
    /// How long a connection attempt to a vanished host takes to fail.
    pub connect_timeout: Dur,
    /// Sampling period of the swarm's piece availability (the chart).
    pub sample_every: Dur,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            max_time: Dur::secs(6 * 3600),
            max_steps: 4_000_000_000,
            max_steps_per_instant: 2_000_000,
            allow_incomplete: false,
            check_seed_copy: false,
            send_buffer: Size(32 * 1024),
            upload_watermark: Size(32 * 1024),
            have_batch: None,
            connect_timeout: Dur::secs(5),
            sample_every: Dur::secs(1),
        }
    }
}

/// Bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Size(pub u64);

/// Bytes per second (0 = unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rate(pub u64);

/// A virtual duration, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Dur(pub u64);

impl Dur {
    /// Zero.
    pub const ZERO: Dur = Dur(0);
    /// Whole seconds.
    pub const fn secs(s: u64) -> Dur {
        Dur(s * 1_000_000)
    }
    /// Whole milliseconds.
    pub const fn millis(ms: u64) -> Dur {
        Dur(ms * 1_000)
    }
    /// As a `Duration`.
    pub fn duration(self) -> Duration {
        Duration::from_micros(self.0)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_micros(f, self.0)
    }
}

/// Formats microseconds the way durations are written in scenarios.
pub fn fmt_micros(f: &mut impl fmt::Write, us: u64) -> fmt::Result {
    if us == 0 {
        write!(f, "0s")
    } else if us % 1_000_000 == 0 {
        write!(f, "{}s", us / 1_000_000)
    } else if us >= 1_000_000 {
        write!(f, "{:.3}s", us as f64 / 1e6)
    } else {
        write!(f, "{}ms", us as f64 / 1e3)
    }
}

/// Parses `16K`, `2M`, `1G`, `100`, `1.5M` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_lowercase();
            let mult: u64 = match unit.as_str() {
                "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                _ => return Err(format!("unknown size unit '{unit}' in '{s}' (use K, M, G)")),
            };
            (&t[..i], mult)
        }
        None => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 16K, 2M, 1048576)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}' is not a size"));
    }
    Ok((v * mult as f64).round() as u64)
}

/// Parses a rate: a size per second, or `20mbit` / `512kbit` (decimal bits per second).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    for (suffix, bits) in [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)] {
        if let Some(num) = t.strip_suffix(suffix) {
            let v: f64 = num
                .trim()
                .parse()
                .map_err(|_| format!("'{s}' is not a rate"))?;
            return Ok((v * bits / 8.0).round() as u64);
        }
    }
    parse_size(t.trim_end_matches("/s"))
}

/// Parses `25ms`, `3s`, `1.5s`, `10m`, `1h`, `250us` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
        .map_or(t.len(), |(i, _)| i);
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit {
        "" | "s" => 1e6,
        "ms" => 1e3,
        "us" => 1.0,
        "m" | "min" => 60e6,
        "h" => 3600e6,
        _ => {
            return Err(format!(
                "unknown duration unit '{unit}' in '{s}' (us, ms, s, m, h)"
            ));
        }
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (examples: 25ms, 3s, 10m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}' is not a duration"));
    }
    Ok((v * mult).round() as u64)
}

/// A number or a string, as TOML gives it.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Int(u64),
    Float(f64),
    Str(String),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Int(v) => Ok(Size(v)),
            NumOrStr::Float(v) => Ok(Size(v.round() as u64)),
            NumOrStr::Str(s) => parse_size(&s).map(Size).map_err(de::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Int(v) => Ok(Rate(v)),
            NumOrStr::Float(v) => Ok(Rate(v.round() as u64)),
            NumOrStr::Str(s) => parse_rate(&s).map(Rate).map_err(de::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Int(v) => Ok(Dur::secs(v)),
            NumOrStr::Float(v) => Ok(Dur((v * 1e6).round() as u64)),
            NumOrStr::Str(s) => parse_duration(&s).map(Dur).map_err(de::Error::custom),
        }
    }
}

impl Scenario {
    /// Parses a scenario file's text.
    pub fn from_toml(text: &str) -> Result<Scenario, String> {
        let sc: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        sc.validate()?;
        Ok(sc)
    }

    /// Total bytes of the torrent.
    pub fn total_length(&self) -> u64 {
        match (self.torrent.size, self.torrent.pieces) {
            (Some(s), _) => s.0,
            (None, Some(p)) => u64::from(p) * self.torrent.piece_length.0,
            (None, None) => 0,
        }
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        let pl = self.torrent.piece_length.0;
        if pl < 16 * 1024 || !pl.is_power_of_two() {
            return Err(format!(
                "torrent.piece_length {pl} must be a power of two of at least 16K"
            ));
        }
        if self.torrent.size.is_some() == self.torrent.pieces.is_some() {
            return Err("torrent: give exactly one of `pieces` and `size`".into());
        }
        let total = self.total_length();
        if total == 0 {
            return Err("torrent: the torrent is empty".into());
        }
        if total > 64 << 30 {
            return Err(format!(
                "torrent: {total} bytes is more than the 64 GiB the simulator holds in memory"
            ));
        }
        if self.groups.is_empty() {
            return Err("no [[group]]: a swarm needs nodes".into());
        }
        if !self.groups.iter().any(|g| g.seed && g.count > 0) {
            return Err("no group with `seed = true`: nobody has the data".into());
        }
        let nodes: u64 = self.groups.iter().map(|g| u64::from(g.count)).sum();
        if nodes > 1 << 22 {
            return Err(format!(
                "{nodes} nodes is more than the 4M the address plan allows"
            ));
        }
        for g in &self.groups {
            for (what, p) in [
                ("tracker.loss", self.tracker.loss),
                ("tracker.duplicate", self.tracker.duplicate),
            ] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("{what} {p} is not a probability (0..=1)"));
                }
            }
            if let Some(rate) = g.arrival.poisson {
                if !rate.is_finite() || rate <= 0.0 {
                    return Err(format!("group '{}': arrival.poisson must be > 0", g.name));
                }
            }
            if g.depart
                .after_upload
                .is_some_and(|m| !m.is_finite() || m <= 0.0)
            {
                return Err(format!(
                    "group '{}': depart.after_upload must be > 0",
                    g.name
                ));
            }
        }
        if self.run.sample_every.0 == 0 {
            return Err("run.sample_every must be positive".into());
        }
        Ok(())
    }
}

/// The knobs of the built-in scenarios (command-line flags).
#[derive(Clone, Debug)]
pub struct Knobs {
    /// Leechers (`--peers`).
    pub peers: u32,
    /// Pieces (`--pieces`).
    pub pieces: u32,
    /// Piece length (`--piece-length`).
    pub piece_length: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            peers: 50,
            pieces: 128,
            piece_length: 256 * 1024,
        }
    }
}

/// The built-in scenarios' names, with one line each.
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "flash-crowd",
        "1 seed, N leechers arriving at once; checks the seed uploads a full copy first",
    ),
    (
        "churn",
        "Poisson arrivals over 10 min; some leave early, others linger after completing",
    ),
    (
        "mixed-links",
        "a DSL / cable / fibre mix of leechers (50/35/15 %) and one seed",
    ),
    (
        "free-riders",
        "a quarter of the leechers never upload; tit-for-tat should slow them down",
    ),
    (
        "corrupt-peer",
        "a second seed serves corrupt data; it must be banned and the swarm complete",
    ),
    (
        "seed-leaves",
        "flash crowd whose only seed leaves after uploading one copy",
    ),
];

fn group(name: &str, count: u32, seed: bool, up: u64, down: u64, latency_ms: u64) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        count,
        seed,
        upload: Rate(up),
        download: Rate(down),
        latency: Dur::millis(latency_ms),
        jitter: Dur::ZERO,
        behaviour: Behaviour::Normal,
        arrival: ArrivalSpec::default(),
        depart: DepartSpec::default(),
        refuse_incoming: false,
        max_connections: None,
        max_connections_per_torrent: None,
        upload_slots: None,
        slow_start: default_slow_start(),
    }
}

const K: u64 = 1024;
const M: u64 = 1024 * 1024;

/// A built-in scenario by name.
pub fn builtin(name: &str, k: &Knobs) -> Result<Scenario, String> {
    let torrent = TorrentSpec {
        piece_length: Size(k.piece_length),
        pieces: Some(k.pieces),
        size: None,
        real_hash: false,
    };
    let mut run = RunSpec::default();
    let seed = group("seed", 1, true, 2 * M, 8 * M, 10);
    let leechers = |count| group("leechers", count, false, 512 * K, 4 * M, 20);
    let groups = match name {
        "flash-crowd" => {
            run.check_seed_copy = true;
            vec![seed, leechers(k.peers)]
        }
        "churn" => {
            let mut l = leechers(k.peers);
            l.arrival.poisson = Some(f64::from(k.peers.max(1)) / 600.0);
            l.depart.after_complete = Some(Dur::secs(60));
            l.depart.random_linger = true;
            // Some give up before completing: exponential patience with a 30 min mean.
            l.depart.after = Some(Dur::secs(1800));
            l.depart.random_after = true;
            run.allow_incomplete = true;
            vec![seed, l]
        }
        "mixed-links" => {
            let n = k.peers;
            let fibre = n * 15 / 100;
            let cable = n * 35 / 100;
            let dsl = n - fibre - cable;
            let mut g = vec![seed];
            let mut d = group("dsl", dsl, false, 128 * K, M, 30);
            d.jitter = Dur::millis(10);
            g.push(d);
            let mut c = group("cable", cable, false, M, 8 * M, 15);
            c.jitter = Dur::millis(5);
            g.push(c);
            g.push(group("fibre", fibre, false, 8 * M, 8 * M, 3));
            g
        }
        "free-riders" => {
            let riders = (k.peers / 4).max(1);
            let mut f = leechers(riders);
            f.name = "free-riders".into();
            f.behaviour = Behaviour::FreeRider;
            let mut s = seed;
            // A slow seed: most data must come from the leechers themselves, and contributors
            // leave once done, so that free-riders cannot live on finished leechers.
            s.upload = Rate(512 * K);
            let mut l = leechers(k.peers.saturating_sub(riders).max(1));
            l.depart.after_complete = Some(Dur::ZERO);
            vec![s, l, f]
        }
        "corrupt-peer" => {
            let mut liar = group("liar", 1, true, 2 * M, 8 * M, 10);
            liar.behaviour = Behaviour::CorruptData;
            vec![seed, liar, leechers(k.peers)]
        }
        "seed-leaves" => {
            let mut s = seed;
            s.depart.after_upload = Some(1.0);
            run.allow_incomplete = true;
            vec![s, leechers(k.peers)]
        }
        _ => {
            let names: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "no scenario file or built-in named '{name}' (built-ins: {})",
                names.join(", ")
            ));
        }
    };
    let sc = Scenario {
        name: name.into(),
        seed: None,
        torrent,
        tracker: TrackerSpec::default(),
        groups,
        run,
    };
    sc.validate()?;
    Ok(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("16K"), Ok(16384));
        assert_eq!(parse_size("1.5M"), Ok(1572864));
        assert_eq!(parse_rate("8mbit"), Ok(1_000_000));
        assert_eq!(parse_rate("1M/s"), Ok(1 << 20));
        assert_eq!(parse_duration("25ms"), Ok(25_000));
        assert_eq!(parse_duration("2"), Ok(2_000_000));
        assert_eq!(parse_duration("10m"), Ok(600_000_000));
        assert!(parse_size("12Q").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn builtins_validate() {
        for (name, _) in BUILTINS {
            builtin(name, &Knobs::default()).unwrap();
        }
    }
}
