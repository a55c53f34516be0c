//! `hive-smol create` end to end, and against Transmission's `transmission-create` and
//! `transmission-show` (package `transmission-cli`) on the same data: same info hash, and our
//! torrent loads in Transmission with the same name, size, files and trackers.
//!
//! Without the Transmission tools these comparisons print "skipped: ..." and pass, except when
//! `CI` is set: CI installs them, so a missing tool fails there.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use hive_core::bencode::{self, Value};
use hive_core::piece_hash::{PiecesBuilder, hash_piece};

const HIVE: &str = env!("CARGO_BIN_EXE_hive-smol");
const TRACKERS: [&str; 3] = [
    "http://tracker.example/announce",
    "udp://backup.example:6969/announce",
    "https://third.example/ann",
];

/// A directory under the system temp dir, unique per process and test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("hive-cli-create-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(root: &Path, rel: &str, len: usize, seed: u64) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes(seed, len)).unwrap();
}

/// A tree with nested directories, mixed case, UTF-8 names, names that sort differently by
/// byte and case-insensitively, files smaller than a piece, and a last short piece. No empty
/// files: transmission-create leaves them out (see `empty_files_are_kept`).
fn make_tree(root: &Path) {
    write(root, "Zeta.txt", 5000, 1);
    write(root, "alpha.txt", 70_001, 2);
    write(root, "B/b.bin", 20, 3);
    write(root, "a/a", 30, 4);
    write(root, "sub/deeper/x.bin", 100_000, 5);
    write(root, "sub/Capital", 50, 6);
    write(root, "sub-dash", 60, 7);
    write(root, "sub.dot", 70, 8);
    write(root, "\u{fc}n\u{ef} c\u{f6}d\u{e9}.txt", 40, 9);
    write(root, "abc", 3, 10);
    write(root, "abc\u{e9}", 4, 11);
    write(root, "Abc_", 5, 12);
    // Hidden: skipped by both tools.
    write(root, ".hidden", 3000, 13);
    write(root, ".git/config", 10, 14);
}

fn run(args: &[&OsStr]) -> Output {
    Command::new(HIVE).args(args).output().unwrap()
}

/// `hive-smol create PATH -o OUT [extra...]`, which must succeed.
fn hive_create(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec!["create".as_ref(), input.as_os_str(), "-o".as_ref()];
    args.push(out.as_os_str());
    args.extend(extra.iter().map(OsStr::new));
    let o = run(&args);
    assert!(
        o.status.success(),
        "hive-smol create failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Finds a Transmission tool, or says why the test is skipped (fails under CI).
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} not found (install transmission-cli); CI must have it");
        }
        eprintln!("skipped: {name} not found (install transmission-cli)");
    }
    found
}

fn transmission_tools() -> Option<(PathBuf, PathBuf)> {
    Some((tool("transmission-create")?, tool("transmission-show")?))
}

fn transmission_create(
    tc: &Path,
    input: &Path,
    out: &Path,
    piece_kib: Option<u32>,
    trackers: &[&str],
) {
    let mut cmd = Command::new(tc);
    cmd.arg("-o").arg(out);
    if let Some(k) = piece_kib {
        cmd.arg("-s").arg(k.to_string());
    }
    for t in trackers {
        cmd.arg("-t").arg(t);
    }
    let o = cmd.arg(input).output().unwrap();
    // transmission-create 3.00 exits 0 even on failure: check the file instead.
    assert!(
        out.is_file(),
        "transmission-create wrote nothing: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn show(ts: &Path, torrent: &Path) -> String {
    let o = Command::new(ts).arg(torrent).output().unwrap();
    assert!(
        o.status.success(),
        "transmission-show failed on {torrent:?}"
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The value of `  Key: value` in transmission-show output.
fn field<'a>(shown: &'a str, key: &str) -> &'a str {
    let prefix = format!("  {key}: ");
    shown
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{shown}"))
}

/// The lines of a section (`TRACKERS`, `FILES`) of transmission-show output, trimmed.
fn section(shown: &str, name: &str) -> Vec<String> {
    shown
        .lines()
        .skip_while(|l| *l != name)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| !l.is_empty())
        .map(|l| l.trim().to_owned())
        .collect()
}

/// transmission-show's file lines without the size: `d/sub/x.bin (100.0 kB)` -> `d/sub/x.bin`.
fn shown_files(shown: &str) -> Vec<String> {
    section(shown, "FILES")
        .into_iter()
        .map(|l| l.rsplit_once(" (").map_or(l.clone(), |(p, _)| p.to_owned()))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-1 of the raw `info` bytes of a torrent file.
fn info_hash_of(torrent: &[u8]) -> String {
    let v = bencode::decode(torrent).expect("hive-smol writes canonical bencode");
    hex(&hash_piece(v.get(b"info").unwrap().raw))
}

/// The `info hash: <hex>` line hive-smol prints.
fn printed_hash(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .find_map(|l| l.strip_prefix("info hash: "))
        .unwrap_or_else(|| panic!("no info hash line in {out}"))
        .to_owned()
}

/// Builds the same torrent with both tools and checks the info hashes agree three ways:
/// transmission-show on each file, and our own computation on our bytes.
fn compare_with_transmission(input: &Path, piece: Option<(&str, u32)>, trackers: &[&str]) {
    let Some((tc, ts)) = transmission_tools() else {
        return;
    };
    let out = TempDir::new("out");
    let ours = out.path().join("hive.torrent");
    let theirs = out.path().join("transmission.torrent");
    let mut extra = Vec::new();
    if let Some((p, _)) = piece {
        extra.extend(["--piece-length", p]);
    }
    for t in trackers {
        extra.extend(["-t", t]);
    }
    let o = hive_create(input, &ours, &extra);
    transmission_create(&tc, input, &theirs, piece.map(|(_, k)| k), trackers);

    let our_bytes = fs::read(&ours).unwrap();
    let their_bytes = fs::read(&theirs).unwrap();
    let shown_ours = show(&ts, &ours);
    let shown_theirs = show(&ts, &theirs);
    let their_hash = field(&shown_theirs, "Hash");
    assert_eq!(
        field(&shown_ours, "Hash"),
        their_hash,
        "transmission-show disagrees"
    );
    assert_eq!(info_hash_of(&our_bytes), their_hash);
    assert_eq!(info_hash_of(&their_bytes), their_hash);
    assert_eq!(printed_hash(&o), their_hash);
    // Vice versa: Transmission's torrent loads in Hive's own loader with the same hash.
    let loaded = hive_core::metainfo::Metainfo::from_bytes(&their_bytes).unwrap();
    assert_eq!(loaded.info_hash().to_string(), their_hash);
    // And the info dictionaries are the same bytes, not merely the same hash.
    let info = |b: &[u8]| {
        bencode::decode_with(b, bencode::Limits::lenient())
            .unwrap()
            .get(b"info")
            .unwrap()
            .raw
            .to_vec()
    };
    assert_eq!(info(&our_bytes), info(&their_bytes));
}

#[test]
fn single_file_same_info_hash_as_transmission() {
    let dir = TempDir::new("single");
    // 100_001 bytes: 6 full 16 KiB pieces and a short last one.
    write(dir.path(), "movie.mkv", 100_001, 42);
    let file = dir.path().join("movie.mkv");
    compare_with_transmission(&file, Some(("16K", 16)), &TRACKERS[..1]);
    // Default piece length: both choose 32 KiB for small inputs.
    compare_with_transmission(&file, None, &TRACKERS);
}

#[test]
fn multi_file_same_info_hash_as_transmission() {
    let dir = TempDir::new("multi");
    let root = dir.path().join("My Tree");
    make_tree(&root);
    compare_with_transmission(&root, Some(("16K", 16)), &TRACKERS);
    compare_with_transmission(&root, Some(("32K", 32)), &TRACKERS[..1]);
    compare_with_transmission(&root, None, &[]);
}

#[test]
fn directory_with_one_file_same_info_hash_as_transmission() {
    let dir = TempDir::new("onefile");
    let root = dir.path().join("one");
    write(&root, "only.bin", 40_000, 3);
    compare_with_transmission(&root, Some(("16K", 16)), &TRACKERS[1..2]);
}

#[test]
fn transmission_show_reads_our_torrent() {
    let Some((tc, ts)) = transmission_tools() else {
        return;
    };
    let dir = TempDir::new("show");
    let root = dir.path().join("shared");
    make_tree(&root);
    let ours = dir.path().join("hive.torrent");
    let theirs = dir.path().join("transmission.torrent");
    let mut extra = vec!["--piece-length", "16K", "--private", "--comment", "hello"];
    for t in TRACKERS {
        extra.extend(["-t", t]);
    }
    hive_create(&root, &ours, &extra);
    transmission_create(&tc, &root, &theirs, Some(16), &TRACKERS);
    let shown = show(&ts, &ours);
    let shown_theirs = show(&ts, &theirs);

    assert_eq!(field(&shown, "Name"), "shared");
    assert_eq!(field(&shown, "Comment"), "hello");
    assert_eq!(field(&shown, "Privacy"), "Private torrent");
    assert_eq!(field(&shown, "Piece Size"), "16.00 KiB");
    assert_eq!(
        field(&shown, "Created by"),
        concat!("hive-smol/", env!("CARGO_PKG_VERSION"))
    );
    for key in ["Name", "Total Size", "Piece Count", "Piece Size"] {
        assert_eq!(field(&shown, key), field(&shown_theirs, key), "{key}");
    }
    let trackers = section(&shown, "TRACKERS");
    assert_eq!(
        trackers,
        [
            "Tier #1",
            TRACKERS[0],
            "Tier #2",
            TRACKERS[1],
            "Tier #3",
            TRACKERS[2]
        ]
    );
    assert_eq!(trackers, section(&shown_theirs, "TRACKERS"));
    let mut files = shown_files(&shown);
    files.sort();
    let mut expected: Vec<String> = [
        "Zeta.txt",
        "alpha.txt",
        "B/b.bin",
        "a/a",
        "sub/deeper/x.bin",
        "sub/Capital",
        "sub-dash",
        "sub.dot",
        "\u{fc}n\u{ef} c\u{f6}d\u{e9}.txt",
        "abc",
        "abc\u{e9}",
        "Abc_",
    ]
    .iter()
    .map(|p| format!("shared/{p}"))
    .collect();
    expected.sort();
    assert_eq!(files, expected);
    let mut their_files = shown_files(&shown_theirs);
    their_files.sort();
    assert_eq!(files, their_files);
}

#[test]
fn empty_files_are_kept_unlike_transmission() {
    let Some((tc, ts)) = transmission_tools() else {
        return;
    };
    let dir = TempDir::new("empty");
    let root = dir.path().join("t");
    write(&root, "data.bin", 50_000, 1);
    write(&root, "sub/empty.txt", 0, 0);
    let ours = dir.path().join("hive.torrent");
    let theirs = dir.path().join("transmission.torrent");
    hive_create(&root, &ours, &["-s", "16K"]);
    transmission_create(&tc, &root, &theirs, Some(16), &[]);
    let (shown, shown_theirs) = (show(&ts, &ours), show(&ts, &theirs));
    let mut files = shown_files(&shown);
    files.sort();
    assert_eq!(files, ["t/data.bin", "t/sub/empty.txt"]);
    assert_eq!(shown_files(&shown_theirs), ["t/data.bin"]);
    assert_ne!(field(&shown, "Hash"), field(&shown_theirs, "Hash"));
    // Same pieces: empty files add no bytes.
    let pieces = |b: &[u8]| {
        let v = bencode::decode_with(b, bencode::Limits::lenient()).unwrap();
        v.get(b"info").unwrap().get(b"pieces").unwrap().raw.to_vec()
    };
    assert_eq!(
        pieces(&fs::read(&ours).unwrap()),
        pieces(&fs::read(&theirs).unwrap())
    );
}

/// The file lengths and paths of a multi-file torrent, in torrent order.
fn torrent_files(v: &Value<'_>) -> Vec<(String, u64)> {
    v.get(b"info")
        .unwrap()
        .get(b"files")
        .unwrap()
        .as_list()
        .unwrap()
        .iter()
        .map(|f| {
            let path: Vec<&str> = f
                .get(b"path")
                .unwrap()
                .as_list()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            (
                path.join("/"),
                f.get(b"length").unwrap().as_int().unwrap() as u64,
            )
        })
        .collect()
}

#[test]
fn pieces_are_right_across_files_and_threads() {
    // Many small files (some empty) with tiny pieces: most pieces span several files, and
    // three threads take them in an unpredictable order. The hashes must equal a plain
    // sequential hash of the concatenated content in torrent order.
    let dir = TempDir::new("threads");
    let root = dir.path().join("many");
    for i in 0..60u64 {
        let len = ((i * 7919) % 9000) as usize * usize::from(i % 5 != 0);
        write(&root, &format!("d{}/f{i:02}.bin", i % 4), len, i);
    }
    write(&root, "big.bin", 200_000, 99);
    let out = dir.path().join("many.torrent");
    for threads in ["1", "3"] {
        let o = hive_create(&root, &out, &["-s", "16K", "--threads", threads, "--force"]);
        let bytes = fs::read(&out).unwrap();
        let v = bencode::decode(&bytes).unwrap();
        let files = torrent_files(&v);
        assert_eq!(files.len(), 61);
        assert!(files.iter().any(|(_, l)| *l == 0), "empty files are listed");
        let total: u64 = files.iter().map(|(_, l)| l).sum();
        let mut expected = PiecesBuilder::new(16384, total).unwrap();
        for (path, _) in &files {
            expected
                .update(&fs::read(root.join(path)).unwrap())
                .unwrap();
        }
        let info = v.get(b"info").unwrap();
        assert_eq!(
            info.get(b"pieces").unwrap().as_bytes().unwrap(),
            expected.finish().unwrap()
        );
        assert_eq!(printed_hash(&o), hex(&hash_piece(info.raw)));
    }
}

#[test]
fn refuses_to_overwrite_without_force_and_leaves_no_temp_files() {
    let dir = TempDir::new("force");
    write(dir.path(), "in/file.bin", 1000, 1);
    let input = dir.path().join("in");
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("x.torrent");
    fs::write(&out, b"precious").unwrap();

    let o = run(&[
        "create".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(fs::read(&out).unwrap(), b"precious");

    hive_create(&input, &out, &["--force", "--source", "HIVE"]);
    let bytes = fs::read(&out).unwrap();
    let v = bencode::decode(&bytes).unwrap();
    assert_eq!(
        v.get(b"info").unwrap().get(b"source").unwrap().as_str(),
        Some("HIVE")
    );
    let names: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["x.torrent"], "no temporary file left behind");
}

#[test]
fn same_inputs_same_bytes_with_source_date_epoch() {
    let dir = TempDir::new("repro");
    write(dir.path(), "f.bin", 70_000, 5);
    let input = dir.path().join("f.bin");
    let make = |name: &str| {
        let out = dir.path().join(name);
        let o = Command::new(HIVE)
            .args([
                "create".as_ref(),
                input.as_os_str(),
                "-o".as_ref(),
                out.as_os_str(),
            ])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(o.status.success());
        fs::read(out).unwrap()
    };
    let a = make("a.torrent");
    assert_eq!(a, make("b.torrent"));
    let v = bencode::decode(&a).unwrap();
    assert_eq!(
        v.get(b"creation date").unwrap().as_int(),
        Some(1_700_000_000)
    );
    assert_eq!(
        v.get(b"info").unwrap().get(b"length").unwrap().as_int(),
        Some(70_000)
    );
}

#[test]
fn errors_have_exit_codes_and_say_what_to_do() {
    let dir = TempDir::new("errors");
    let out = dir.path().join("x.torrent");
    let empty = dir.path().join("empty");
    let missing = dir.path().join("missing");
    fs::create_dir(&empty).unwrap();
    write(&empty, ".only-hidden", 10, 1);
    let cases: [(Vec<&OsStr>, i32, &str); 5] = [
        (vec![empty.as_os_str()], 3, "--include-hidden"),
        (vec![missing.as_os_str()], 3, "cannot read"),
        (
            vec![empty.as_os_str(), "-s".as_ref(), "3K".as_ref()],
            2,
            "power of two",
        ),
        (
            vec![empty.as_os_str(), "-t".as_ref(), "ftp://x/".as_ref()],
            2,
            "http://",
        ),
        (
            vec![
                empty.as_os_str(),
                "--include-hidden".as_ref(),
                "-t".as_ref(),
                "udp://t:1".as_ref(),
            ],
            0,
            "",
        ),
    ];
    for (extra, code, needle) in cases {
        let mut args: Vec<&OsStr> = vec!["create".as_ref()];
        args.extend(extra);
        args.extend(["-o".as_ref(), out.as_os_str()]);
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
