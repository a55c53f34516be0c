//! `hive-smol info`: describe a torrent file or magnet URI.
//!
//! The text form is for people (aligned columns, binary units next to exact byte counts); the
//! `--json` form is one JSON object for scripts. JSON is written by hand: the shapes are flat
//! and every string goes through [`json_str`], which escapes per RFC 8259, so a JSON crate
//! would add a dependency for nothing (the tests check the output with `serde_json`).

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::PathBuf;

use hive_core::magnet::Magnet;
use hive_core::metainfo::{FileEntry, MAX_METAINFO_BYTES, Metainfo};

use super::CliError;

/// Arguments of `hive-smol info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// A .torrent file, or a magnet URI.
    pub torrent: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hive-smol info`.
pub fn run(args: &InfoArgs) -> Result<(), CliError> {
    if let Some(uri) = args.torrent.to_str().filter(|s| {
        s.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
    }) {
        let magnet = Magnet::parse(uri)
            .map_err(|e| CliError::Input(format!("not a usable magnet URI: {e}")))?;
        let out = if args.json {
            render_magnet_json(&magnet)
        } else {
            render_magnet_text(&magnet)
        };
        return print(&out);
    }
    let bytes = read_torrent(&args.torrent)?;
    let meta = Metainfo::from_bytes(&bytes).map_err(|e| {
        CliError::Input(format!(
            "{}: not a usable torrent: {e}",
            args.torrent.display()
        ))
    })?;
    let out = if args.json {
        render_json(&meta)
    } else {
        render_text(&meta)
    };
    print(&out)
}

fn print(out: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Output(format!("cannot write to standard output: {e}")))
}

/// Reads the file, refusing anything larger than the metainfo limit before reading it all.
pub fn read_torrent(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    let fail = |e: std::io::Error| CliError::Input(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(fail)?;
    let limit = u64::try_from(MAX_METAINFO_BYTES).unwrap_or(u64::MAX);
    let mut bytes = Vec::new();
    // Read one byte past the limit to tell "at the limit" from "over it" without trusting
    // the file's reported size (pipes and /proc files report 0).
    file.take(limit + 1).read_to_end(&mut bytes).map_err(fail)?;
    if bytes.len() > MAX_METAINFO_BYTES {
        return Err(CliError::Input(format!(
            "{}: larger than {MAX_METAINFO_BYTES} bytes, too large for a torrent file",
            path.display()
        )));
    }
    Ok(bytes)
}

/// `1536` → `1.50 KiB`; whole numbers drop the decimals (`256 KiB`); below 1 KiB, `425 B`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss, reason = "two decimals are shown")]
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

/// Unix seconds as UTC ISO 8601 (`2022-02-24T20:30:50Z`), proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`), without a time crate.
pub fn iso8601_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Text from a torrent (comment, created by) made safe for a terminal: control characters
/// other than newlines are shown escaped, so a comment cannot move the cursor or recolour the
/// terminal; newlines continue on an indented line.
fn display_text(s: &str, indent: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim_end().chars() {
        match c {
            '\n' => {
                out.push('\n');
                out.push_str(indent);
            }
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn file_flags(f: &FileEntry) -> String {
    let mut flags = String::new();
    if f.is_pad() {
        flags.push_str(" [pad]");
    }
    if f.is_executable() {
        flags.push_str(" [executable]");
    }
    if f.is_hidden() {
        flags.push_str(" [hidden]");
    }
    if let Some(t) = f.symlink_target() {
        let _ = write!(flags, " -> {}", t.join("/"));
    }
    flags
}

/// The human-readable description printed by `hive-smol info`.
pub fn render_text(m: &Metainfo) -> String {
    const INDENT: &str = "              ";
    let mut o = String::new();
    let _ = writeln!(o, "Name:         {}", m.name());
    let _ = writeln!(o, "Info hash:    {}", m.info_hash());
    let _ = writeln!(
        o,
        "Total size:   {} ({} bytes)",
        human_size(m.total_length()),
        m.total_length()
    );
    let _ = writeln!(
        o,
        "Pieces:       {} of {} ({} bytes)",
        m.piece_count(),
        human_size(m.piece_length()),
        m.piece_length()
    );
    let _ = writeln!(o, "Private:      {}", yes_no(m.is_private()));
    let format = if m.is_hybrid() {
        "hybrid v1+v2 (Hive uses the v1 part)"
    } else {
        "v1"
    };
    let _ = writeln!(o, "Format:       {format}");
    let created = m
        .creation_date()
        .map_or_else(|| "unknown".to_owned(), iso8601_utc);
    let _ = writeln!(o, "Created:      {created}");
    if let Some(by) = m.created_by() {
        let _ = writeln!(o, "Created by:   {}", display_text(by, INDENT));
    }
    if let Some(c) = m.comment() {
        let _ = writeln!(o, "Comment:      {}", display_text(c, INDENT));
    }

    let _ = writeln!(o, "\nTrackers:");
    if m.trackers().is_empty() {
        let _ = writeln!(o, "  none");
    }
    for (i, tier) in m.trackers().iter().enumerate() {
        let label = format!("tier {}", i + 1);
        for (j, url) in tier.iter().enumerate() {
            let shown = if j == 0 { label.as_str() } else { "" };
            let _ = writeln!(o, "  {shown:<8}  {url}");
        }
    }

    let _ = writeln!(o, "\nWeb seeds:");
    if m.web_seeds().is_empty() {
        let _ = writeln!(o, "  none");
    }
    for url in m.web_seeds() {
        let _ = writeln!(o, "  {url}");
    }

    let files = m.files();
    let _ = writeln!(o, "\nFiles ({}):", files.len());
    let exact: Vec<String> = files.iter().map(|f| f.length().to_string()).collect();
    let human: Vec<String> = files.iter().map(|f| human_size(f.length())).collect();
    let w_exact = exact.iter().map(String::len).max().unwrap_or(0);
    let w_human = human.iter().map(String::len).max().unwrap_or(0);
    for ((f, e), h) in files.iter().zip(&exact).zip(&human) {
        let _ = writeln!(
            o,
            "  {e:>w_exact$}  {h:>w_human$}  {}{}",
            f.display_path(),
            file_flags(f)
        );
    }
    o
}

/// What `hive-smol info` shows for a magnet URI: only what the link itself carries (the
/// metadata, with sizes and files, comes from peers once downloading starts, BEP 9).
pub fn render_magnet_text(m: &Magnet) -> String {
    let mut o = String::new();
    let name = m.display_name.as_deref().unwrap_or("(not given)");
    let _ = writeln!(o, "Name:         {}", display_text(name, ""));
    let _ = writeln!(o, "Info hash:    {}", m.info_hash);
    let _ = writeln!(
        o,
        "Format:       magnet link (size and files arrive with the metadata)"
    );
    let _ = writeln!(o, "\nTrackers:");
    if m.trackers.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for (i, url) in m.trackers.iter().enumerate() {
        // A magnet's `tr` parameters are independent trackers: one tier each (BEP 9, BEP 12).
        let _ = writeln!(
            o,
            "  {:<8}  {}",
            format!("tier {}", i + 1),
            display_text(url, "")
        );
    }
    let _ = writeln!(o, "\nWeb seeds:");
    if m.web_seeds.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for url in &m.web_seeds {
        let _ = writeln!(o, "  {}", display_text(url, ""));
    }
    if !m.peers.is_empty() {
        let _ = writeln!(o, "\nPeers:");
        for p in &m.peers {
            let _ = writeln!(o, "  {p}");
        }
    }
    o
}

/// The JSON object printed by `hive-smol info --json` for a magnet URI.
pub fn render_magnet_json(m: &Magnet) -> String {
    let peers: Vec<String> = m.peers.iter().map(ToString::to_string).collect();
    let trackers: Vec<String> = m
        .trackers
        .iter()
        .map(|t| json_str_list(std::slice::from_ref(t)))
        .collect();
    let mut o = String::from("{");
    let _ = write!(o, "\"name\":{}", json_opt_str(m.display_name.as_deref()));
    let _ = write!(o, ",\"info_hash\":\"{}\"", m.info_hash);
    let _ = write!(o, ",\"magnet\":true");
    let _ = write!(o, ",\"trackers\":[{}]", trackers.join(","));
    let _ = write!(o, ",\"web_seeds\":{}", json_str_list(&m.web_seeds));
    let _ = write!(o, ",\"peers\":{}", json_str_list(&peers));
    o.push_str("}\n");
    o
}

/// `s` as a JSON string literal (RFC 8259: quote, backslash and controls escaped).
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_opt_str(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), json_str)
}

fn json_str_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| json_str(s.as_ref())).collect();
    format!("[{}]", parts.join(","))
}

/// The JSON object printed by `hive-smol info --json`.
pub fn render_json(m: &Metainfo) -> String {
    let trackers: Vec<String> = m.trackers().iter().map(|t| json_str_list(t)).collect();
    let files: Vec<String> = m
        .files()
        .iter()
        .map(|f| {
            format!(
                "{{\"path\":{},\"length\":{},\"offset\":{},\"pad\":{},\"executable\":{},\
                 \"hidden\":{},\"symlink_target\":{}}}",
                json_str_list(f.path()),
                f.length(),
                f.offset(),
                f.is_pad(),
                f.is_executable(),
                f.is_hidden(),
                f.symlink_target()
                    .map_or_else(|| "null".to_owned(), json_str_list),
            )
        })
        .collect();
    let created = m.creation_date();
    let mut o = String::from("{");
    let _ = write!(o, "\"name\":{}", json_str(m.name()));
    let _ = write!(o, ",\"info_hash\":\"{}\"", m.info_hash());
    let _ = write!(o, ",\"total_size\":{}", m.total_length());
    let _ = write!(o, ",\"piece_length\":{}", m.piece_length());
    let _ = write!(o, ",\"piece_count\":{}", m.piece_count());
    let _ = write!(o, ",\"private\":{}", m.is_private());
    let _ = write!(o, ",\"hybrid\":{}", m.is_hybrid());
    let _ = write!(o, ",\"multi_file\":{}", m.is_multi_file());
    let _ = write!(
        o,
        ",\"creation_date\":{}",
        created.map_or_else(|| "null".to_owned(), |t| json_str(&iso8601_utc(t)))
    );
    let _ = write!(
        o,
        ",\"creation_date_unix\":{}",
        created.map_or_else(|| "null".to_owned(), |t| t.to_string())
    );
    let _ = write!(o, ",\"created_by\":{}", json_opt_str(m.created_by()));
    let _ = write!(o, ",\"comment\":{}", json_opt_str(m.comment()));
    let _ = write!(o, ",\"encoding\":{}", json_opt_str(m.encoding()));
    let _ = write!(o, ",\"trackers\":[{}]", trackers.join(","));
    let _ = write!(o, ",\"web_seeds\":{}", json_str_list(m.web_seeds()));
    let _ = write!(o, ",\"files\":[{}]", files.join(","));
    o.push_str("}\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1 KiB");
        assert_eq!(human_size(1536), "1.50 KiB");
        assert_eq!(human_size(262_144), "256 KiB");
        assert_eq!(human_size(3_379_068_928), "3.15 GiB");
        assert_eq!(human_size(u64::MAX), "16 EiB");
    }

    #[test]
    fn dates() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(1_645_734_650), "2022-02-24T20:30:50Z");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(iso8601_utc(-1), "1969-12-31T23:59:59Z");
        // Must not panic at the extremes.
        let _ = iso8601_utc(i64::MAX);
        let _ = iso8601_utc(i64::MIN);
    }

    #[test]
    fn json_escaping() {
        assert_eq!(json_str("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_str("\n\t\u{1}\u{7f}é"), "\"\\n\\t\\u0001\u{7f}é\"");
    }

    #[test]
    fn terminal_text_is_defused() {
        assert_eq!(display_text("a\u{1b}[31mb\nc", "  "), "a\\u{1b}[31mb\n  c");
    }
}
