//! Building a new torrent file (BEP 3 metainfo, BEP 12 `announce-list`, BEP 27 `private`).
//!
//! [`TorrentBuilder`] is pure: the caller walks the disk, hands in the file list, hashes the
//! content in the order [`TorrentBuilder::files`] gives (with [`crate::piece_hash`]) and passes
//! the hashes to [`TorrentBuilder::build`], which returns the canonical bencoded bytes.
//!
//! # Same info hash as `transmission-create`
//!
//! For the same content, piece length and private flag, the `info` dictionary is byte for byte
//! the one Transmission 3.00's `transmission-create` writes, so both tools give the same info
//! hash. What Transmission writes (checked against `transmission-create` 3.00 output, and its
//! `libtransmission/makemeta.c`):
//! - `info` keys: `files` (a directory, even with one file) or `length` (a single file),
//!   `name`, `piece length`, `pieces`, and always `private` — `i1e`, or `i0e` when public
//!   (BEP 27 only needs the key when it is 1, but leaving it out would change the hash). No
//!   `source`: Transmission 3.00 cannot set one; Hive writes it only when asked.
//! - `files` sorted by the full path with libevent's `evutil_ascii_strcasecmp`: ASCII letters
//!   compared case-insensitively, bytes compared as *signed* chars (so UTF-8 bytes >= 0x80 sort
//!   before everything, even before the end of a shorter name), `/` joining components.
//!   [`transmission_order`] reproduces it; ties (names equal but for ASCII case) are broken by
//!   the raw bytes, where Transmission's `qsort` order is unspecified.
//! - Path components are the names as found on disk (UTF-8 here), one list entry each.
//! - Outside `info`: `announce` (first tracker), `announce-list` only with more than one
//!   tracker and then one tier per URL in the order given, `comment` when non-empty,
//!   `created by`, `creation date`, `encoding` = `UTF-8`. Keys sorted (canonical bencode).
//!
//! Differences, on purpose: Transmission leaves zero-length files out; Hive keeps them (as
//! libtorrent and qBittorrent do), because they are part of the content the user asked to
//! share (an empty `__init__.py` or marker file matters). For trees with empty files the info
//! hashes therefore differ from Transmission's.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::bencode::OwnedValue;
use crate::piece_hash::{self, HASH_LEN, PieceHash};

/// Smallest piece length Hive writes: one 16 KiB block (BEP 3 requests are 16 KiB).
pub const MIN_PIECE_LENGTH: u64 = 16 * 1024;

/// Largest piece length Hive writes: a verifier holds a piece's blocks until the whole piece
/// is checked, so this bounds memory per piece in flight (libtorrent's limit is 128 MiB too).
pub const MAX_PIECE_LENGTH: u64 = 128 * 1024 * 1024;

/// What the torrent describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// One file; the torrent's `name` is its file name (BEP 3 single-file mode).
    SingleFile {
        /// Its length in bytes.
        length: u64,
    },
    /// A directory named after the torrent; its files in any order (the builder sorts them).
    Directory {
        /// The files, with paths relative to the directory.
        files: Vec<FileEntry>,
    },
}

/// One file of a multi-file torrent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    /// Path components below the torrent's directory, e.g. `["sub", "file.txt"]`.
    pub path: Vec<String>,
    /// Length in bytes (zero-length files are kept, unlike Transmission).
    pub length: u64,
}

/// Why a torrent cannot be built from the given inputs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// The torrent name is empty, `.`, `..`, or holds `/` or NUL.
    #[error("torrent name {0:?} is not usable: it must be a plain non-empty file name")]
    InvalidName(String),
    /// A path component is empty, `.`, `..`, or holds `/` or NUL (so it could escape the
    /// download directory or be absolute).
    #[error("file path {0:?} is not usable: every component must be a plain non-empty name")]
    InvalidPath(String),
    /// A directory with no files in it.
    #[error("there are no files to put in the torrent")]
    NoFiles,
    /// The total length is zero: there would be no pieces.
    #[error("all files are empty: a torrent needs at least one byte of content")]
    EmptyContent,
    /// The same path twice.
    #[error("file path {0:?} appears twice")]
    DuplicatePath(String),
    /// A path used both as a file and as a directory of other files.
    #[error("{0:?} is listed as a file and as a directory")]
    FileDirConflict(String),
    /// Lengths that do not fit a bencode integer (i64).
    #[error("total size is larger than 2^63-1 bytes")]
    TooLarge,
    /// A piece length outside the allowed set.
    #[error(
        "piece length {0} is not allowed: use a power of two from 16 KiB to 128 MiB (e.g. 256K, 1M)"
    )]
    InvalidPieceLength(u64),
    /// The piece hashes do not match the content size.
    #[error("got {got} bytes of piece hashes, expected {expected} (20 per piece)")]
    WrongPiecesLength {
        /// 20 x the number of pieces.
        expected: u64,
        /// What was passed in.
        got: u64,
    },
    /// A tracker URL that no client could announce to.
    #[error("tracker URL {0:?} is not usable: it must be http://, https:// or udp:// with a host")]
    InvalidTracker(String),
}

/// A finished torrent file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torrent {
    /// The canonical bencoded `.torrent` bytes.
    pub bytes: Vec<u8>,
    /// SHA-1 of the bencoded `info` dictionary (BEP 3).
    pub info_hash: PieceHash,
}

/// Collects everything a `.torrent` holds and writes it; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentBuilder {
    name: String,
    piece_length: u64,
    single_file: bool,
    files: Vec<FileEntry>,
    total_length: u64,
    trackers: Vec<Vec<String>>,
    private: bool,
    comment: Option<String>,
    creation_date: Option<i64>,
    created_by: Option<String>,
    source: Option<String>,
}

impl TorrentBuilder {
    /// Validates the name, files and piece length and puts the files in torrent order. With no
    /// `piece_length`, [`default_piece_length`] chooses one.
    pub fn new(
        name: &str,
        content: Content,
        piece_length: Option<u64>,
    ) -> Result<Self, CreateError> {
        if !valid_component(name) {
            return Err(CreateError::InvalidName(name.to_owned()));
        }
        let (single_file, mut files) = match content {
            Content::SingleFile { length } => (
                true,
                vec![FileEntry {
                    path: vec![name.to_owned()],
                    length,
                }],
            ),
            Content::Directory { files } => (false, files),
        };
        if files.is_empty() {
            return Err(CreateError::NoFiles);
        }
        let mut total: u64 = 0;
        for f in &files {
            if f.path.is_empty() || !f.path.iter().all(|c| valid_component(c)) {
                return Err(CreateError::InvalidPath(f.path.join("/")));
            }
            total = total.checked_add(f.length).ok_or(CreateError::TooLarge)?;
        }
        if i64::try_from(total).is_err() {
            return Err(CreateError::TooLarge);
        }
        if total == 0 {
            return Err(CreateError::EmptyContent);
        }
        check_paths(&files)?;
        files.sort_by_cached_key(|f| (transmission_sort_key(&f.path), f.path.clone()));
        let piece_length = piece_length.unwrap_or_else(|| default_piece_length(total));
        if !valid_piece_length(piece_length) {
            return Err(CreateError::InvalidPieceLength(piece_length));
        }
        Ok(TorrentBuilder {
            name: name.to_owned(),
            piece_length,
            single_file,
            files,
            total_length: total,
            trackers: Vec::new(),
            private: false,
            comment: None,
            creation_date: None,
            created_by: None,
            source: None,
        })
    }

    /// The files in torrent order: hash the content in exactly this order. In single-file
    /// mode the one entry's path is `[name]`.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// The torrent's name (the file or directory name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a single-file torrent (`length`) rather than a directory (`files`).
    pub fn is_single_file(&self) -> bool {
        self.single_file
    }

    /// Sum of all file lengths.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// The piece length, given or chosen.
    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    /// Number of pieces; [`TorrentBuilder::build`] wants 20 bytes of hash for each.
    pub fn piece_count(&self) -> u64 {
        piece_hash::piece_count(self.total_length, self.piece_length)
    }

    /// Tracker tiers (BEP 12): the first URL of the first tier becomes `announce`.
    pub fn trackers(mut self, tiers: Vec<Vec<String>>) -> Self {
        self.trackers = tiers;
        self
    }

    /// Trackers as `transmission-create -t URL -t URL` writes them: one tier per URL.
    pub fn tracker_urls(self, urls: Vec<String>) -> Self {
        self.trackers(urls.into_iter().map(|u| vec![u]).collect())
    }

    /// Sets BEP 27 `private` (peers only from the trackers: no DHT, PEX or LSD).
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// A free-text `comment` (left out when empty).
    pub fn comment(mut self, comment: Option<String>) -> Self {
        self.comment = comment.filter(|c| !c.is_empty());
        self
    }

    /// `creation date` in seconds since the Unix epoch (the caller reads the clock).
    pub fn creation_date(mut self, seconds: Option<i64>) -> Self {
        self.creation_date = seconds;
        self
    }

    /// `created by`, e.g. `hive-smol/0.1.0` (left out when empty).
    pub fn created_by(mut self, created_by: Option<String>) -> Self {
        self.created_by = created_by.filter(|c| !c.is_empty());
        self
    }

    /// `source` inside `info` (private trackers use it to give a re-upload its own info hash);
    /// left out when empty.
    pub fn source(mut self, source: Option<String>) -> Self {
        self.source = source.filter(|s| !s.is_empty());
        self
    }

    /// Writes the torrent with the given concatenated piece hashes (20 bytes per piece, in
    /// order).
    pub fn build(&self, pieces: &[u8]) -> Result<Torrent, CreateError> {
        let expected = self.piece_count().saturating_mul(HASH_LEN as u64);
        if pieces.len() as u64 != expected {
            return Err(CreateError::WrongPiecesLength {
                expected,
                got: pieces.len() as u64,
            });
        }
        let tiers = self.clean_trackers()?;
        let info = self.info_dict(pieces);
        let info_bytes = info.to_bytes();
        let info_hash = piece_hash::hash_piece(&info_bytes);

        let mut top = BTreeMap::new();
        let urls: Vec<&String> = tiers.iter().flatten().collect();
        if let Some(first) = urls.first() {
            top.insert(b"announce".to_vec(), OwnedValue::str(first));
        }
        // Transmission writes announce-list only with more than one tracker; BEP 12 clients
        // that see announce-list ignore announce, so a single URL needs no list.
        if urls.len() > 1 {
            let list = tiers
                .iter()
                .map(|tier| OwnedValue::List(tier.iter().map(|u| OwnedValue::str(u)).collect()))
                .collect();
            top.insert(b"announce-list".to_vec(), OwnedValue::List(list));
        }
        if let Some(c) = &self.comment {
            top.insert(b"comment".to_vec(), OwnedValue::str(c));
        }
        if let Some(c) = &self.created_by {
            top.insert(b"created by".to_vec(), OwnedValue::str(c));
        }
        if let Some(d) = self.creation_date {
            top.insert(b"creation date".to_vec(), OwnedValue::Int(d));
        }
        // Paths are Rust strings, so always UTF-8; old clients read this key to know it.
        top.insert(b"encoding".to_vec(), OwnedValue::str("UTF-8"));
        top.insert(b"info".to_vec(), info);
        Ok(Torrent {
            bytes: OwnedValue::Dict(top).to_bytes(),
            info_hash,
        })
    }

    /// Validated tiers: empty tiers dropped, exact duplicate URLs kept only the first time.
    fn clean_trackers(&self) -> Result<Vec<Vec<String>>, CreateError> {
        let mut seen = BTreeSet::new();
        let mut tiers = Vec::new();
        for tier in &self.trackers {
            let mut kept = Vec::new();
            for url in tier {
                if !valid_tracker(url) {
                    return Err(CreateError::InvalidTracker(url.clone()));
                }
                if seen.insert(url.as_str()) {
                    kept.push(url.clone());
                }
            }
            if !kept.is_empty() {
                tiers.push(kept);
            }
        }
        Ok(tiers)
    }

    fn info_dict(&self, pieces: &[u8]) -> OwnedValue {
        let mut info = BTreeMap::new();
        // Lengths were checked to fit an i64 in `new`.
        let int = |n: u64| OwnedValue::Int(i64::try_from(n).unwrap_or(i64::MAX));
        if self.single_file {
            info.insert(b"length".to_vec(), int(self.total_length));
        } else {
            let files = self
                .files
                .iter()
                .map(|f| {
                    let mut d = BTreeMap::new();
                    d.insert(b"length".to_vec(), int(f.length));
                    let path = f.path.iter().map(|c| OwnedValue::str(c)).collect();
                    d.insert(b"path".to_vec(), OwnedValue::List(path));
                    OwnedValue::Dict(d)
                })
                .collect();
            info.insert(b"files".to_vec(), OwnedValue::List(files));
        }
        info.insert(b"name".to_vec(), OwnedValue::str(&self.name));
        info.insert(b"piece length".to_vec(), int(self.piece_length));
        info.insert(b"pieces".to_vec(), OwnedValue::Bytes(pieces.to_vec()));
        // Transmission always writes `private`, as i0e when public: needed for the same hash.
        info.insert(
            b"private".to_vec(),
            OwnedValue::Int(i64::from(self.private)),
        );
        if let Some(s) = &self.source {
            info.insert(b"source".to_vec(), OwnedValue::str(s));
        }
        OwnedValue::Dict(info)
    }
}

/// The piece length chosen when the user gives none, for `total` bytes of content.
///
/// Up to 4 GiB this is Transmission 3.00's table (`bestPieceSize`), so a default
/// `hive-smol create` matches a default `transmission-create`: 32 KiB below 50 MiB, 64 KiB from
/// 50 MiB, 128 KiB from 150 MiB, 256 KiB from 350 MiB, 512 KiB from 512 MiB, 1 MiB from 1 GiB,
/// 2 MiB from 2 GiB. Above 4 GiB Transmission stays at 2 MiB and the piece count grows without
/// bound; Hive instead keeps it near 2048 pieces, as libtorrent does (smallest power of two
/// >= total / 2048), up to 16 MiB, the largest size common clients offer.
pub fn default_piece_length(total: u64) -> u64 {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    match total {
        t if t >= 4 * GIB => t
            .div_ceil(2048)
            .checked_next_power_of_two()
            .unwrap_or(16 * MIB)
            .clamp(2 * MIB, 16 * MIB),
        t if t >= 2 * GIB => 2 * MIB,
        t if t >= GIB => MIB,
        t if t >= 512 * MIB => 512 * KIB,
        t if t >= 350 * MIB => 256 * KIB,
        t if t >= 150 * MIB => 128 * KIB,
        t if t >= 50 * MIB => 64 * KIB,
        _ => 32 * KIB,
    }
}

/// Whether Hive accepts `n` as a piece length: a power of two in
/// [`MIN_PIECE_LENGTH`]..=[`MAX_PIECE_LENGTH`].
pub fn valid_piece_length(n: u64) -> bool {
    n.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&n)
}

/// Orders two relative paths the way `transmission-create` 3.00 orders a torrent's files (see
/// the module docs); raw bytes break ties so the order is total.
pub fn transmission_order(a: &[String], b: &[String]) -> Ordering {
    transmission_sort_key(a)
        .cmp(&transmission_sort_key(b))
        .then_with(|| a.cmp(b))
}

/// A byte string whose plain lexicographic order is `evutil_ascii_strcasecmp` on the
/// `/`-joined path: ASCII lowercased, each byte XOR 0x80 so that unsigned order becomes
/// signed-`char` order, and the C string's NUL terminator (0, hence 0x80) appended.
fn transmission_sort_key(path: &[String]) -> Vec<u8> {
    let mut key = Vec::with_capacity(path.iter().map(|c| c.len() + 1).sum());
    for (i, component) in path.iter().enumerate() {
        if i > 0 {
            key.push(b'/' ^ 0x80);
        }
        key.extend(component.bytes().map(|b| b.to_ascii_lowercase() ^ 0x80));
    }
    key.push(0x80);
    key
}

/// A name that stays inside its directory on every platform we write to.
fn valid_component(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\0'])
}

/// No duplicate paths, and no path that is a file and also a directory of another file.
fn check_paths(files: &[FileEntry]) -> Result<(), CreateError> {
    let mut all: BTreeSet<&[String]> = BTreeSet::new();
    for f in files {
        if !all.insert(&f.path) {
            return Err(CreateError::DuplicatePath(f.path.join("/")));
        }
    }
    for f in files {
        for end in 1..f.path.len() {
            if let Some(prefix) = f.path.get(..end) {
                if all.contains(prefix) {
                    return Err(CreateError::FileDirConflict(prefix.join("/")));
                }
            }
        }
    }
    Ok(())
}

/// Whether a tracker URL has a scheme Hive (and Transmission) can announce to (`http`, `https`,
/// `udp`) and a host; [`TorrentBuilder::build`] refuses any other.
pub fn valid_tracker(url: &str) -> bool {
    if url
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return false;
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let scheme_ok = ["http", "https", "udp"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host_name = if host.starts_with('[') {
        host.split_once(']')
            .map_or("", |(h, _)| h.trim_start_matches('['))
    } else {
        host.split(':').next().unwrap_or_default()
    };
    scheme_ok && !host_name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::{self, Value};
    use crate::piece_hash::{PiecesBuilder, hash_piece};

    fn entry(path: &str, length: u64) -> FileEntry {
        FileEntry {
            path: path.split('/').map(str::to_owned).collect(),
            length,
        }
    }

    fn dir(files: &[(&str, u64)]) -> Content {
        Content::Directory {
            files: files.iter().map(|(p, l)| entry(p, *l)).collect(),
        }
    }

    /// Fake content: file bytes are a function of the file's index in torrent order.
    fn content_bytes(b: &TorrentBuilder) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, f) in b.files().iter().enumerate() {
            out.extend((0..f.length).map(|j| (i as u64 * 31 + j) as u8));
        }
        out
    }

    fn pieces_for(b: &TorrentBuilder) -> Vec<u8> {
        let mut p = PiecesBuilder::new(b.piece_length(), b.total_length()).unwrap();
        p.update(&content_bytes(b)).unwrap();
        p.finish().unwrap()
    }

    fn info_raw(torrent: &[u8]) -> Vec<u8> {
        let top = bencode::decode(torrent).unwrap();
        top.get(b"info").unwrap().raw.to_vec()
    }

    fn paths(v: &Value<'_>) -> Vec<String> {
        v.get(b"info")
            .and_then(|i| i.get(b"files"))
            .and_then(Value::as_list)
            .unwrap()
            .iter()
            .map(|f| {
                f.get(b"path")
                    .and_then(Value::as_list)
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    }

    #[test]
    fn single_file_exact_bytes() {
        let b = TorrentBuilder::new("a.bin", Content::SingleFile { length: 20000 }, Some(16384))
            .unwrap()
            .tracker_urls(vec!["http://t.example/announce".into()])
            .creation_date(Some(1_700_000_000))
            .created_by(Some("Hive/0.1.0".into()));
        assert_eq!(b.files(), &[entry("a.bin", 20000)]);
        assert_eq!(b.piece_count(), 2);
        let pieces = [[1u8; 20], [2u8; 20]].concat();
        let t = b.build(&pieces).unwrap();
        let mut expected = b"d8:announce25:http://t.example/announce10:created by10:Hive/0.1.013:creation datei1700000000e8:encoding5:UTF-84:infod6:lengthi20000e4:name5:a.bin12:piece lengthi16384e6:pieces40:".to_vec();
        expected.extend_from_slice(&pieces);
        expected.extend_from_slice(b"7:privatei0eee");
        assert_eq!(t.bytes, expected);
        assert_eq!(t.info_hash, hash_piece(&info_raw(&t.bytes)));
    }

    #[test]
    fn files_sorted_like_transmission() {
        // The order transmission-create 3.00 wrote for these names (checked by hand):
        // signed-char, ASCII-case-insensitive strcmp on the joined path.
        let names = [
            "ab~",
            "abcd",
            "abc_dir/z",
            "Abc_",
            "abc",
            "abc\u{e9}",
            "ab_",
            "AB[",
            "ab c",
        ];
        let files: Vec<(&str, u64)> = names.iter().map(|n| (*n, 1)).collect();
        let b = TorrentBuilder::new("e", dir(&files), Some(16384)).unwrap();
        let got: Vec<String> = b.files().iter().map(|f| f.path.join("/")).collect();
        let mut want: Vec<&str> = names.to_vec();
        want.reverse();
        assert_eq!(got, want);

        let tree = [
            ("Zeta.txt", 1),
            ("sub/deeper/x.bin", 1),
            ("sub.dot", 1),
            ("sub-dash", 1),
            ("sub/Capital", 1),
            ("B/b", 1),
            ("alpha.txt", 1),
            ("a/a", 1),
            ("\u{fc}n\u{ef}.txt", 1),
            ("Thumbs.db", 1),
        ];
        let b = TorrentBuilder::new("d", dir(&tree), Some(16384)).unwrap();
        let got: Vec<String> = b.files().iter().map(|f| f.path.join("/")).collect();
        assert_eq!(
            got,
            [
                "\u{fc}n\u{ef}.txt",
                "a/a",
                "alpha.txt",
                "B/b",
                "sub-dash",
                "sub.dot",
                "sub/Capital",
                "sub/deeper/x.bin",
                "Thumbs.db",
                "Zeta.txt"
            ]
        );
        // Names equal but for case: raw bytes decide, so the order does not depend on input.
        let b1 = TorrentBuilder::new("c", dir(&[("a", 1), ("A", 1)]), Some(16384)).unwrap();
        let b2 = TorrentBuilder::new("c", dir(&[("A", 1), ("a", 1)]), Some(16384)).unwrap();
        assert_eq!(b1.files(), b2.files());
        assert_eq!(
            transmission_order(&["A".into()], &["a".into()]),
            Ordering::Less
        );
    }

    #[test]
    fn multi_file_layout_and_pieces_span_files() {
        let b = TorrentBuilder::new(
            "tree",
            dir(&[("b/deep/c.bin", 40000), ("a.txt", 10000), ("z", 1)]),
            Some(16384),
        )
        .unwrap();
        assert!(!b.is_single_file());
        assert_eq!(b.total_length(), 50001);
        assert_eq!(b.piece_count(), 4);
        let pieces = pieces_for(&b);
        let content = content_bytes(&b);
        // Piece 0 spans a.txt and the start of b/deep/c.bin.
        assert_eq!(pieces.get(..20).unwrap(), &hash_piece(&content[..16384]));
        let t = b.build(&pieces).unwrap();
        let v = bencode::decode(&t.bytes).unwrap();
        assert_eq!(paths(&v), ["a.txt", "b/deep/c.bin", "z"]);
        let info = v.get(b"info").unwrap();
        assert!(info.get(b"length").is_none());
        assert_eq!(info.get(b"name").unwrap().as_str(), Some("tree"));
        assert_eq!(info.get(b"private").unwrap().as_int(), Some(0));
        assert_eq!(v.get(b"announce"), None);
        assert_eq!(v.get(b"encoding").unwrap().as_str(), Some("UTF-8"));
        assert_eq!(t.info_hash, hash_piece(info.raw));
    }

    #[test]
    fn directory_with_one_file_stays_multi_file() {
        // Like transmission-create: a directory is always `files`, even with one file.
        let b = TorrentBuilder::new("one", dir(&[("Zeta.txt", 5000)]), None).unwrap();
        let t = b.build(&pieces_for(&b)).unwrap();
        let v = bencode::decode(&t.bytes).unwrap();
        assert_eq!(paths(&v), ["Zeta.txt"]);
    }

    #[test]
    fn zero_length_files_are_kept() {
        // Documented difference: transmission-create drops `empty.txt`, Hive keeps it, so the
        // info hashes differ for such trees.
        let with = TorrentBuilder::new("t", dir(&[("empty.txt", 0), ("a", 100)]), None).unwrap();
        let without = TorrentBuilder::new("t", dir(&[("a", 100)]), None).unwrap();
        let pieces = pieces_for(&without);
        assert_eq!(pieces, pieces_for(&with), "empty files add no bytes");
        let t_with = with.build(&pieces).unwrap();
        let t_without = without.build(&pieces).unwrap();
        assert_eq!(
            paths(&bencode::decode(&t_with.bytes).unwrap()),
            ["a", "empty.txt"]
        );
        assert_ne!(t_with.info_hash, t_without.info_hash);
    }

    #[test]
    fn trackers_private_comment_source() {
        let b = TorrentBuilder::new("x", Content::SingleFile { length: 1 }, None)
            .unwrap()
            .tracker_urls(vec![
                "http://a.example/ann".into(),
                "udp://c.example:6969".into(),
                "http://a.example/ann".into(),
            ])
            .private(true)
            .comment(Some("hello".into()))
            .source(Some("HIVE".into()));
        let t = b.build(&hash_piece(&[0])).unwrap();
        let v = bencode::decode(&t.bytes).unwrap();
        assert_eq!(
            v.get(b"announce").unwrap().as_str(),
            Some("http://a.example/ann")
        );
        let tiers: Vec<Vec<&str>> = v
            .get(b"announce-list")
            .and_then(Value::as_list)
            .unwrap()
            .iter()
            .map(|t| {
                t.as_list()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(
            tiers,
            [vec!["http://a.example/ann"], vec!["udp://c.example:6969"]]
        );
        assert_eq!(v.get(b"comment").unwrap().as_str(), Some("hello"));
        let info = v.get(b"info").unwrap();
        assert_eq!(info.get(b"private").unwrap().as_int(), Some(1));
        assert_eq!(info.get(b"source").unwrap().as_str(), Some("HIVE"));
        assert_eq!(v.get(b"creation date"), None);

        // Several URLs in one tier (BEP 12) stay together.
        let b = TorrentBuilder::new("x", Content::SingleFile { length: 1 }, None)
            .unwrap()
            .trackers(vec![vec!["http://a/1".into(), "http://b/1".into()], vec![]]);
        let v = b.build(&hash_piece(&[0])).unwrap().bytes;
        let v = bencode::decode(&v).unwrap();
        assert_eq!(
            v.get(b"announce-list").unwrap().raw,
            b"ll10:http://a/110:http://b/1ee"
        );
    }

    #[test]
    fn source_and_private_change_the_info_hash() {
        let base = TorrentBuilder::new("x", Content::SingleFile { length: 1 }, None).unwrap();
        let p = hash_piece(&[0]);
        let plain = base.build(&p).unwrap().info_hash;
        let outside_only = base
            .clone()
            .comment(Some("c".into()))
            .creation_date(Some(5))
            .tracker_urls(vec!["udp://t:1".into()])
            .build(&p)
            .unwrap()
            .info_hash;
        assert_eq!(plain, outside_only);
        assert_ne!(
            plain,
            base.clone().private(true).build(&p).unwrap().info_hash
        );
        assert_ne!(
            plain,
            base.source(Some("S".into())).build(&p).unwrap().info_hash
        );
    }

    #[test]
    fn invalid_inputs_are_typed_errors() {
        let one = || Content::SingleFile { length: 1 };
        for bad in ["", ".", "..", "a/b", "nul\0"] {
            assert_eq!(
                TorrentBuilder::new(bad, one(), None).unwrap_err(),
                CreateError::InvalidName(bad.into())
            );
        }
        for bad in ["../x", "a//b", "/abs", "a/./b", "a/.."] {
            assert_eq!(
                TorrentBuilder::new("t", dir(&[(bad, 1)]), None).unwrap_err(),
                CreateError::InvalidPath(bad.into()),
                "{bad}"
            );
        }
        let no_path = Content::Directory {
            files: vec![FileEntry {
                path: vec![],
                length: 1,
            }],
        };
        assert!(matches!(
            TorrentBuilder::new("t", no_path, None),
            Err(CreateError::InvalidPath(_))
        ));
        assert_eq!(
            TorrentBuilder::new("t", dir(&[]), None).unwrap_err(),
            CreateError::NoFiles
        );
        assert_eq!(
            TorrentBuilder::new("t", dir(&[("a", 0), ("b", 0)]), None).unwrap_err(),
            CreateError::EmptyContent
        );
        assert_eq!(
            TorrentBuilder::new("t", Content::SingleFile { length: 0 }, None).unwrap_err(),
            CreateError::EmptyContent
        );
        assert_eq!(
            TorrentBuilder::new("t", dir(&[("a", 1), ("a", 2)]), None).unwrap_err(),
            CreateError::DuplicatePath("a".into())
        );
        assert_eq!(
            TorrentBuilder::new("t", dir(&[("a/b/c", 1), ("a/b", 2)]), None).unwrap_err(),
            CreateError::FileDirConflict("a/b".into())
        );
        assert_eq!(
            TorrentBuilder::new("t", dir(&[("a", u64::MAX), ("b", 1)]), None).unwrap_err(),
            CreateError::TooLarge
        );
        assert_eq!(
            TorrentBuilder::new("t", Content::SingleFile { length: 1 << 63 }, None).unwrap_err(),
            CreateError::TooLarge
        );
        for bad in [0, 8192, 3 << 14, 256 << 20] {
            assert_eq!(
                TorrentBuilder::new("t", one(), Some(bad)).unwrap_err(),
                CreateError::InvalidPieceLength(bad)
            );
        }
        let b = TorrentBuilder::new("t", one(), None).unwrap();
        assert_eq!(
            b.build(&[0; 19]).unwrap_err(),
            CreateError::WrongPiecesLength {
                expected: 20,
                got: 19
            }
        );
        for bad in [
            "ftp://x/a",
            "http://",
            "http:///a",
            "udp://:80",
            "tracker.example",
            "http://a b/",
        ] {
            assert_eq!(
                b.clone()
                    .tracker_urls(vec![bad.into()])
                    .build(&[0; 20])
                    .unwrap_err(),
                CreateError::InvalidTracker(bad.into())
            );
        }
        for good in [
            "HTTP://x/announce",
            "https://u:p@x:443/a?k=v",
            "udp://[::1]:6969",
        ] {
            assert!(valid_tracker(good), "{good}");
        }
    }

    #[test]
    fn piece_length_chooser() {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        const GIB: u64 = 1024 * MIB;
        let cases = [
            (1, 32 * KIB),
            (50 * MIB - 1, 32 * KIB),
            (50 * MIB, 64 * KIB),
            (150 * MIB, 128 * KIB),
            (350 * MIB, 256 * KIB),
            (512 * MIB, 512 * KIB),
            (GIB, MIB),
            (2 * GIB, 2 * MIB),
            (4 * GIB, 2 * MIB),
            (4 * GIB + 1, 4 * MIB),
            (8 * GIB, 4 * MIB),
            (32 * GIB, 16 * MIB),
            (1 << 50, 16 * MIB),
            (u64::MAX, 16 * MIB),
        ];
        for (total, want) in cases {
            assert_eq!(default_piece_length(total), want, "{total}");
            assert!(valid_piece_length(want));
        }
        let b = TorrentBuilder::new("t", Content::SingleFile { length: 100 }, None).unwrap();
        assert_eq!(b.piece_length(), 32 * KIB);
    }
}
