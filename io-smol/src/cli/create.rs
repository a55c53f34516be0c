//! `hive-smol create`: write a new torrent file.
//!
//! Walk the input ([`walk`]), let the core's [`TorrentBuilder`] validate and order the files,
//! hash the pieces on every core ([`hash`]), and write the result atomically ([`output`]).
//! The choices that make the info hash equal `transmission-create`'s for the same tree are
//! documented in `hive_core::create`; the disk-side ones in [`walk`].

mod hash;
mod output;
mod walk;

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use hive_core::create::{CreateError, TorrentBuilder, valid_piece_length, valid_tracker};

use super::CliError;

/// Arguments of `hive-smol create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The file or directory to describe.
    pub path: PathBuf,
    /// Where to write the .torrent file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// A tracker announce URL; repeat for backups (each gets its own tier, like
    /// transmission-create). The first one is `announce`.
    #[arg(short = 't', long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Piece length: a power of two from 16K to 128M (suffixes K, M; e.g. 256K, 1M).
    /// Default: chosen from the total size, as transmission-create does.
    #[arg(short = 's', long = "piece-length", value_name = "N", value_parser = parse_piece_length)]
    pub piece_length: Option<u64>,
    /// Mark the torrent private (BEP 27): peers only from its trackers.
    #[arg(short = 'p', long)]
    pub private: bool,
    /// A free-text comment.
    #[arg(short = 'c', long)]
    pub comment: Option<String>,
    /// A `source` tag inside the info dictionary (private trackers ask for one; it changes the
    /// info hash).
    #[arg(long)]
    pub source: Option<String>,
    /// Overwrite OUTPUT if it exists.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Also include files and directories whose names start with '.' (skipped by default, as
    /// transmission-create does).
    #[arg(long)]
    pub include_hidden: bool,
    /// Hashing threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
}

/// Inputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

/// Runs `hive-smol create`.
pub fn run(args: &CreateArgs) -> Result<(), CliError> {
    for url in &args.trackers {
        if !valid_tracker(url) {
            return Err(CliError::Usage(
                CreateError::InvalidTracker(url.clone()).to_string(),
            ));
        }
    }
    // Fail before hashing for minutes, not after.
    output::check_target(&args.output, args.force)?;

    let input = walk::walk(&args.path, args.include_hidden)?;
    let builder = TorrentBuilder::new(&input.name, input.content, args.piece_length)
        .map_err(|e| builder_error(e, args))?
        .tracker_urls(args.trackers.clone())
        .private(args.private)
        .comment(args.comment.clone())
        .source(args.source.clone())
        .created_by(Some(
            concat!("hive-smol/", env!("CARGO_PKG_VERSION")).to_owned(),
        ))
        .creation_date(Some(creation_date()));

    let files: Vec<hash::DiskFile> = builder
        .files()
        .iter()
        .map(|f| hash::DiskFile {
            path: if builder.is_single_file() {
                input.root.clone()
            } else {
                input.root.join(f.path.iter().collect::<PathBuf>())
            },
            length: f.length,
        })
        .collect();
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    let show_progress =
        builder.total_length() >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal();
    let pieces = hash::hash_pieces(
        &files,
        builder.piece_length(),
        builder.total_length(),
        threads,
        show_progress,
    )?;

    let torrent = builder.build(&pieces).map_err(|e| builder_error(e, args))?;
    output::write_atomically(&args.output, &torrent.bytes, args.force)?;

    println!("info hash: {}", hex(&torrent.info_hash));
    let count = files.len() as u64;
    println!(
        "wrote {}: {:?}, {}, {} in {} of {}, {}{}",
        args.output.display(),
        builder.name(),
        plural(count, "file"),
        human_size(builder.total_length()),
        plural(builder.piece_count(), "piece"),
        human_size(builder.piece_length()),
        plural(args.trackers.len() as u64, "tracker"),
        if args.private { ", private" } else { "" },
    );
    Ok(())
}

/// Turns a builder refusal into a message about this command line.
fn builder_error(e: CreateError, args: &CreateArgs) -> CliError {
    let path = args.path.display();
    match e {
        CreateError::NoFiles if args.include_hidden => {
            CliError::Input(format!("{path} contains no files: nothing to share"))
        }
        CreateError::NoFiles => CliError::Input(format!(
            "{path} contains no files: nothing to share (names starting with '.' are skipped; \
             pass --include-hidden to include them)"
        )),
        CreateError::EmptyContent => CliError::Input(format!(
            "{path}: all files are empty; a torrent needs at least one byte of content"
        )),
        e @ (CreateError::InvalidPieceLength(_) | CreateError::InvalidTracker(_)) => {
            CliError::Usage(e.to_string())
        }
        e => CliError::Input(format!("{path}: {e}")),
    }
}

/// Seconds since the epoch for `creation date`; `SOURCE_DATE_EPOCH` (the reproducible-builds
/// convention) overrides the clock so that two runs can give identical files.
fn creation_date() -> i64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        return t;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Parses `--piece-length`: bytes, or a number with a K/M suffix (KiB/MiB accepted too),
/// and checks it is a piece length Hive writes.
fn parse_piece_length(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => {
            return Err(format!(
                "{t:?}: use a number with an optional K or M suffix, e.g. 256K"
            ));
        }
    };
    let n = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{t:?}: use a number with an optional K or M suffix, e.g. 256K"))?;
    if !valid_piece_length(n) {
        return Err(format!(
            "{t} ({n} bytes) is not a power of two from 16K to 128M, e.g. 256K or 1M"
        ));
    }
    Ok(n)
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `1.5 GiB`-style sizes for the summary line.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in UNITS.iter().skip(1) {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_suffixes() {
        assert_eq!(parse_piece_length("16K"), Ok(16384));
        assert_eq!(parse_piece_length("16k"), Ok(16384));
        assert_eq!(parse_piece_length("256KiB"), Ok(256 << 10));
        assert_eq!(parse_piece_length("1M"), Ok(1 << 20));
        assert_eq!(parse_piece_length("4 MiB"), Ok(4 << 20));
        assert_eq!(parse_piece_length("32768"), Ok(32768));
        for bad in [
            "",
            "K",
            "8K",
            "48K",
            "256M",
            "1G",
            "1.5M",
            "-16K",
            "99999999999999999999M",
        ] {
            assert!(parse_piece_length(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_for_humans() {
        assert_eq!(human_size(5), "5 B");
        assert_eq!(human_size(16384), "16 KiB");
        assert_eq!(human_size(224_560), "219.3 KiB");
        assert_eq!(human_size(3 << 30), "3 GiB");
    }
}
