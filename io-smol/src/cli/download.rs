//! `hive-smol FILE.torrent`: download, verify and seed one torrent.
//!
//! This file holds the command line and the three ways to show progress (a progress bar on a
//! terminal, a line every few seconds otherwise, JSON lines for scripts); the work is the
//! driver's ([`crate::driver`]).

use std::io::{IsTerminal, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant as StdInstant};

use hive_core::metainfo::Metainfo;
use hive_core::session::{Event, LeaveReason, TorrentState, TorrentStats};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::CliError;
use super::info::{human_size, json_str};
use crate::driver::{self, Finish, Options, Report, RunError, SeedPolicy, Ui};

/// Arguments of the download command (`hive-smol FILE.torrent ...`).
#[derive(Debug, Default, clap::Args)]
pub struct DownloadArgs {
    /// The .torrent file to download and seed.
    #[arg(value_name = "FILE.torrent")]
    pub torrent: Option<PathBuf>,
    /// Folder that holds (or will hold) the torrent's file or top folder.
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// TCP port to listen on and announce; the next free one if taken (0: any).
    #[arg(long, default_value_t = 6881)]
    pub port: u16,
    /// Address to listen on (default: every IPv6 and IPv4 address).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// Exit as soon as every piece is downloaded and verified.
    #[arg(long, conflicts_with_all = ["seed_ratio", "seed_time"])]
    pub no_seed: bool,
    /// Stop seeding when uploaded bytes reach R times the torrent's size.
    #[arg(long, value_name = "R", conflicts_with = "seed_time", value_parser = parse_ratio)]
    pub seed_ratio: Option<f64>,
    /// Stop seeding this long after completion (e.g. 90, 30s, 10m, 2h).
    #[arg(long, value_name = "S", value_parser = parse_duration)]
    pub seed_time: Option<Duration>,
    /// Connections at most.
    #[arg(long, value_name = "N")]
    pub max_peers: Option<usize>,
    /// Hold each `have` up to this long and send the held ones together (e.g. 250ms), as
    /// Transmission and Vuze do; default: each goes at once.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub have_batch: Option<Duration>,
    /// A peer to connect to, without a tracker (repeatable), e.g. `127.0.0.1:51413` or `[::1]:6881`.
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    pub peers: Vec<SocketAddr>,
    /// Download limit in bytes per second (suffixes K, M, G: 200K, 5M).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub download_limit: Option<u64>,
    /// Upload limit in bytes per second (suffixes K, M, G: 200K, 5M).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub upload_limit: Option<u64>,
    /// Log connections, trackers and disk activity (also with RUST_LOG set).
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// No progress bar: a status line every few seconds.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print one JSON object per line (progress and events) on standard output.
    #[arg(long)]
    pub json: bool,
    /// Serve a live view of the swarm (a web page) on ADDR (default 127.0.0.1:8080); read-only.
    /// Put it after FILE.torrent or write --ui=ADDR.
    #[arg(long, value_name = "ADDR", num_args = 0..=1,
          default_missing_value = "127.0.0.1:8080", value_parser = parse_ui_addr)]
    pub ui: Option<SocketAddr>,
    /// The token the live view asks for; required when --ui is not a loopback address.
    #[arg(long, value_name = "TOKEN", requires = "ui")]
    pub ui_token: Option<String>,
}

/// Runs the download. `Ok` for a complete download and for an interruption (Ctrl-C).
pub fn run(args: &DownloadArgs) -> Result<(), CliError> {
    let Some(path) = &args.torrent else {
        return Err(CliError::Usage(
            "no torrent given: hive-smol FILE.torrent [-o DIR] (see hive-smol --help)".into(),
        ));
    };
    let bytes = super::info::read_torrent(path)?;
    let meta = Metainfo::from_bytes(&bytes).map_err(|e| {
        CliError::Input(format!(
            "{}: not a usable torrent: {e}; check that the file is a complete .torrent",
            path.display()
        ))
    })?;
    if args.output.exists() && !args.output.is_dir() {
        return Err(CliError::Output(format!(
            "{} is not a directory; give a folder with -o",
            args.output.display()
        )));
    }
    let live = match args.ui {
        None => None,
        Some(addr) => {
            hive_live::check_access(addr, args.ui_token.as_deref())
                .map_err(|e| CliError::Usage(e.to_string()))?;
            Some((addr, args.ui_token.clone()))
        }
    };
    let seed = if args.no_seed {
        SeedPolicy::No
    } else if let Some(r) = args.seed_ratio {
        SeedPolicy::Ratio(r)
    } else if let Some(t) = args.seed_time {
        SeedPolicy::Time(t)
    } else {
        SeedPolicy::Forever
    };
    let name = meta.name().to_owned();
    let total = meta.total_length();
    let opts = Options {
        meta,
        root: args.output.clone(),
        bind: args.bind,
        port: args.port,
        peers: args.peers.clone(),
        seed,
        max_peers: args.max_peers,
        have_batch: args.have_batch,
        upload_limit: args.upload_limit,
        download_limit: args.download_limit,
        live,
    };
    let verbose = args.verbose || std::env::var_os("RUST_LOG").is_some();
    let mut ui: Box<dyn Ui> = if args.json {
        Box::new(JsonUi)
    } else if !args.quiet && std::io::stderr().is_terminal() {
        Box::new(BarUi::new(&name, total, verbose))
    } else {
        Box::new(LineUi::new(&name, verbose))
    };
    let result = driver::run(opts, ui.as_mut());
    drop(ui);
    match result {
        Ok(Finish::Done) | Ok(Finish::Interrupted) => Ok(()),
        Err(RunError::Disk(m)) => Err(CliError::Output(m)),
        Err(RunError::Network(m)) => Err(CliError::Network(m)),
        Err(RunError::Internal(m)) => Err(CliError::Internal(m)),
    }
}

/// `200K`, `5M`, `1G`, `1500` (bytes per second; K = 1024).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix("/s").unwrap_or(&t);
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| {
        format!("{s:?}: use bytes per second with an optional K, M or G suffix, e.g. 200K")
    })?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("{s:?}: a rate must be more than 0"));
    }
    Ok(((n * mult as f64) as u64).max(1))
}

/// `--ui`: `ADDR:PORT`, `[V6]:PORT`, or a bare port on 127.0.0.1.
fn parse_ui_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!(
            "{s:?} is not an address for the live view: use ADDR:PORT or PORT \
             (e.g. 127.0.0.1:8080), and put --ui after FILE.torrent"
        )
    })
}

/// `90`, `90s`, `250ms`, `10m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last() {
        _ if t.ends_with("ms") => (&t[..t.len() - 2], 0.001),
        Some('s') => (&t[..t.len() - 1], 1.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('h') => (&t[..t.len() - 1], 3600.0),
        Some('d') => (&t[..t.len() - 1], 86400.0),
        _ => (t.as_str(), 1.0),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: use seconds or a suffix ms, s, m, h, d, e.g. 30m"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("{s:?}: a duration cannot be negative"));
    }
    Ok(Duration::from_secs_f64(n * mult))
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{s:?}: a ratio is a number such as 1.5")),
    }
}

fn rate(n: u64) -> String {
    format!("{}/s", human_size(n))
}

fn eta(s: &TorrentStats) -> Option<u64> {
    (s.left > 0 && s.download_rate > 0).then(|| s.left.div_ceil(s.download_rate))
}

fn eta_text(s: &TorrentStats) -> String {
    match eta(s) {
        None if s.left == 0 => "done".into(),
        None => "?".into(),
        Some(secs) if secs >= 3600 => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
        Some(secs) => format!("{}m{:02}s", secs / 60, secs % 60),
    }
}

fn percent(s: &TorrentStats) -> f64 {
    if s.pieces_total == 0 {
        return 100.0;
    }
    f64::from(s.pieces_have) * 100.0 / f64::from(s.pieces_total)
}

/// Text for an event worth a line, or `None` (verbose-only events return `Some((true, ..))`).
fn event_text(e: &Event) -> Option<(bool, String)> {
    Some(match e {
        Event::TorrentComplete { .. } => (false, "download complete: every piece verified".into()),
        Event::TrackerError { url, message, .. } => (false, format!("tracker {url}: {message}")),
        Event::TrackerWarning { url, message, .. } => {
            (false, format!("tracker {url} warns: {message}"))
        }
        Event::TorrentError { message, .. } => (false, format!("error: {message}")),
        Event::PeerBanned { addr, .. } => (false, format!("banned {addr}: it sent corrupt data")),
        Event::HashFailed { piece, .. } => (true, format!("piece {piece} failed its hash check")),
        Event::PeerJoined { addr, client, .. } => (
            true,
            format!(
                "peer {addr} joined ({})",
                client.as_deref().unwrap_or("unknown client")
            ),
        ),
        Event::PeerLeft { addr, reason, .. } => (
            true,
            format!(
                "peer {addr} left: {}",
                match reason {
                    LeaveReason::Closed(r) => r.as_str(),
                    LeaveReason::Remote => "closed by the peer",
                    LeaveReason::ConnectFailed => "could not connect",
                }
            ),
        ),
        Event::PieceDone { .. }
        | Event::Stats(_)
        | Event::TorrentRemoved { .. }
        | Event::ShutdownComplete => return None,
    })
}

fn common_text(r: &Report<'_>) -> Option<(bool, String)> {
    Some(match r {
        Report::Listening(a) => (false, format!("listening on port {} ({a})", a.port())),
        Report::LiveView(a) => (false, format!("live view: http://{a}/")),
        Report::Checking(why) => (false, why.to_string()),
        Report::OnDisk {
            have,
            total,
            source,
        } => (false, format!("on disk: {have}/{total} pieces ({source})")),
        Report::Event(e) => return event_text(e),
        Report::Note(n) => (true, n.to_string()),
        Report::Stopping(why) => (false, format!("stopping: {why}")),
        Report::Stats(_) => return None,
    })
}

/// A progress bar on a terminal.
struct BarUi {
    bar: ProgressBar,
    verbose: bool,
}

impl BarUi {
    fn new(name: &str, total: u64, verbose: bool) -> BarUi {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let short: String = name.chars().take(30).collect();
        bar.set_prefix(short);
        BarUi { bar, verbose }
    }
}

impl Ui for BarUi {
    fn report(&mut self, r: Report<'_>) {
        if let Report::Stats(s) = r {
            let len = self.bar.length().unwrap_or(0);
            self.bar.set_position(len.saturating_sub(s.left));
            self.bar.set_message(transfer_text(s));
            return;
        }
        if let Some((verbose_only, text)) = common_text(&r) {
            if !verbose_only || self.verbose {
                self.bar.println(text);
            }
        }
    }
}

impl Drop for BarUi {
    fn drop(&mut self) {
        self.bar.abandon();
    }
}

/// Rates, peers and ETA, as both the progress bar and the status line show them.
fn transfer_text(s: &TorrentStats) -> String {
    format!(
        "down {} up {} peers {}/{} eta {}",
        rate(s.download_rate),
        rate(s.upload_rate),
        s.peers_connected,
        s.peers_known,
        eta_text(s)
    )
}

/// A status line every few seconds (not a terminal, or `-q`).
struct LineUi {
    name: String,
    verbose: bool,
    last: Option<StdInstant>,
}

impl LineUi {
    fn new(name: &str, verbose: bool) -> LineUi {
        LineUi {
            name: name.to_owned(),
            verbose,
            last: None,
        }
    }
}

/// How often [`LineUi`] prints a status line.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl Ui for LineUi {
    fn report(&mut self, r: Report<'_>) {
        let mut err = std::io::stderr().lock();
        if let Report::Stats(s) = r {
            // The one place the UI reads the clock: only to space out lines for people.
            // The last report (after the stop) is always shown.
            let due = self.last.is_none_or(|t| t.elapsed() >= LINE_EVERY)
                || s.state != TorrentState::Running;
            if due {
                self.last = Some(StdInstant::now());
                let _ = writeln!(
                    err,
                    "{}: {:.1}% ({}/{} pieces) {}",
                    self.name,
                    percent(s),
                    s.pieces_have,
                    s.pieces_total,
                    transfer_text(s)
                );
            }
            return;
        }
        if let Some((verbose_only, text)) = common_text(&r) {
            if !verbose_only || self.verbose {
                let _ = writeln!(err, "{text}");
            }
        }
    }
}

/// One JSON object per line on standard output.
struct JsonUi;

impl Ui for JsonUi {
    fn report(&mut self, r: Report<'_>) {
        let line = match r {
            Report::Listening(a) => format!(
                r#"{{"event":"listening","addr":{},"port":{}}}"#,
                json_str(&a.to_string()),
                a.port()
            ),
            Report::LiveView(a) => format!(
                r#"{{"event":"live_view","addr":{},"url":{}}}"#,
                json_str(&a.to_string()),
                json_str(&format!("http://{a}/"))
            ),
            Report::Checking(why) => {
                format!(r#"{{"event":"checking","reason":{}}}"#, json_str(why))
            }
            Report::OnDisk {
                have,
                total,
                source,
            } => format!(
                r#"{{"event":"on_disk","have":{have},"total":{total},"source":{}}}"#,
                json_str(source)
            ),
            Report::Stats(s) => format!(
                r#"{{"event":"progress","state":"{:?}","percent":{:.2},"pieces":{},"pieces_total":{},"left":{},"downloaded":{},"uploaded":{},"download_rate":{},"upload_rate":{},"peers":{},"peers_known":{},"hash_failures":{},"eta":{}}}"#,
                s.state,
                percent(s),
                s.pieces_have,
                s.pieces_total,
                s.left,
                s.downloaded,
                s.uploaded,
                s.download_rate,
                s.upload_rate,
                s.peers_connected,
                s.peers_known,
                s.hash_failures,
                eta(s).map_or("null".to_owned(), |e| e.to_string())
            ),
            Report::Event(e) => match e {
                Event::TorrentComplete { .. } => r#"{"event":"complete"}"#.to_owned(),
                Event::PieceDone { piece, .. } => {
                    format!(r#"{{"event":"piece","piece":{piece}}}"#)
                }
                Event::HashFailed { piece, .. } => {
                    format!(r#"{{"event":"hash_failed","piece":{piece}}}"#)
                }
                Event::PeerJoined { addr, client, .. } => format!(
                    r#"{{"event":"peer_joined","addr":{},"client":{}}}"#,
                    json_str(&addr.to_string()),
                    client.as_deref().map_or("null".to_owned(), json_str)
                ),
                Event::PeerLeft { addr, .. } => format!(
                    r#"{{"event":"peer_left","addr":{}}}"#,
                    json_str(&addr.to_string())
                ),
                Event::PeerBanned { addr, .. } => format!(
                    r#"{{"event":"peer_banned","addr":{}}}"#,
                    json_str(&addr.to_string())
                ),
                Event::TrackerError { url, message, .. } => format!(
                    r#"{{"event":"tracker_error","url":{},"message":{}}}"#,
                    json_str(url),
                    json_str(message)
                ),
                Event::TrackerWarning { url, message, .. } => format!(
                    r#"{{"event":"tracker_warning","url":{},"message":{}}}"#,
                    json_str(url),
                    json_str(message)
                ),
                Event::TorrentError { message, .. } => format!(
                    r#"{{"event":"torrent_error","message":{}}}"#,
                    json_str(message)
                ),
                Event::Stats(_) | Event::TorrentRemoved { .. } | Event::ShutdownComplete => {
                    return;
                }
            },
            Report::Note(_) => return,
            Report::Stopping(why) => {
                format!(r#"{{"event":"stopping","reason":{}}}"#, json_str(why))
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations() {
        assert_eq!(parse_rate("200K"), Ok(200 * 1024));
        assert_eq!(parse_rate("5M"), Ok(5 << 20));
        assert_eq!(parse_rate("1.5m"), Ok(3 << 19));
        assert_eq!(parse_rate("1500"), Ok(1500));
        assert_eq!(parse_rate("2MB/s"), Ok(2 << 20));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_ratio("1.5"), Ok(1.5));
        assert!(parse_ratio("-1").is_err());
    }
}
