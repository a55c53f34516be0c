//! Metainfo (`.torrent` files, BEP 3) parsed into an owned, validated [`Metainfo`].
//!
//! The outer file is decoded leniently ([`Limits::lenient`]): real torrents have unsorted keys
//! and some end with a stray newline, which libtorrent and Transmission both ignore, so bytes
//! after the top-level dictionary are ignored too. The info hash is the SHA-1 of the *raw*
//! bytes of the `info` value ([`Value::raw`]), never of a re-encoding; those bytes are kept
//! ([`Metainfo::info_bytes`]) for BEP 9 metadata exchange, and the piece hashes are read in
//! place from them (stored once).
//!
//! Supported: BEP 3 single- and multi-file torrents, BEP 12 `announce-list`, BEP 19 `url-list`,
//! BEP 27 `private`, BEP 47 attributes (pad files, symlinks, executable, hidden), and hybrid
//! v1+v2 torrents (BEP 52) through their v1 part. v2-only torrents are refused with
//! [`MetainfoError::V2Only`]. `httpseeds` (BEP 17) is ignored.
//!
//! # Path sanitisation
//!
//! Nothing a torrent says can make a path resolve outside the download directory. Every file
//! path is `[name, components...]` (multi-file) or `[name]` (single file), each component run
//! through the same platform-independent rules (Transmission also applies the Windows rules
//! on every OS; we do too, so the same torrent gives the same names everywhere):
//!
//! | input                                         | decision   | result / reason                                        |
//! |-----------------------------------------------|------------|--------------------------------------------------------|
//! | `..` component                                | sanitise   | dropped: it is the escape itself                       |
//! | `.` or empty component                        | sanitise   | dropped: it names nothing (`a//b` is `a/b`)            |
//! | only dots and spaces (`...`, `. .`)           | sanitise   | dropped (trailing dots/spaces are stripped, see below) |
//! | every component dropped                       | sanitise   | file named `_` (libtorrent does the same)              |
//! | absolute path, leading `/` (`/foobar`)        | sanitise   | `/` becomes `_`: `_foobar`                             |
//! | `/` or `\` inside a component                 | sanitise   | `_` (`\` separates on Windows): `foo_.._bar` stays one name |
//! | `:` (drive `C:x`, NTFS streams) `<>"\|?*`      | sanitise   | `_` (Windows-reserved characters)                      |
//! | control characters (C0, DEL, C1), NUL         | sanitise   | `_`                                                    |
//! | bidi overrides/isolates (U+202A–E, U+2066–9, U+200E/F) | sanitise | removed: they disguise extensions (libtorrent too) |
//! | trailing dots or spaces (`foobar `)           | sanitise   | stripped: Windows drops them, aliasing two names       |
//! | Windows device names (`CON`, `nul.txt`, `COM1`, `LPT¹`…) | sanitise | prefixed with `_`: they open devices on Windows |
//! | component longer than 255 bytes               | sanitise   | stem truncated at a char boundary, extension kept (libtorrent) |
//! | invalid UTF-8                                 | sanitise   | each invalid sequence becomes `_` (libtorrent); names are `String`s |
//! | `name` (top directory or single file name)    | sanitise   | same rules; if nothing is left, the hex info hash (libtorrent) |
//! | `name.utf-8` / `path.utf-8` present           | prefer     | used instead of `name`/`path` when well-formed (libtorrent) |
//! | path element that is not a byte string        | reject     | [`MetainfoError::WrongType`] (libtorrent: invalid name) |
//! | `path` missing or empty list                  | reject     | [`MetainfoError::MissingKey`]/`EmptyPath`, except pad files: `.pad/<len>` (BEP 47) |
//! | symlink target (BEP 47 `symlink path`)        | sanitise   | same rules, relative to the download directory         |
//!
//! Collisions, checked after sanitising, case-insensitively (Windows and macOS are):
//!
//! | case                                                   | decision | result / reason |
//! |--------------------------------------------------------|----------|-----------------|
//! | same raw path listed twice, same length                | rename   | second becomes `bar.1.txt` (libtorrent's duplicate_files.torrent) |
//! | same raw path listed twice, different lengths (and the path names something) | reject | [`MetainfoError::DuplicatePath`]: no single file can be both (Transmission's dup-files.torrent; also libtorrent's duplicate_files2) |
//! | names equal only after sanitising or case-folding       | rename   | `bar.1.txt`, `bar.2.txt`… the torrent itself is fine; a new name never takes one the torrent uses |
//! | a file where another file needs a directory (`a` and `a/b`) | rename | the file becomes `a.1` |
//! | more than [`MAX_RENAMES`] renames, or [`MAX_RENAME_TRIES`] names tried | reject | [`MetainfoError::TooManyDuplicates`]: bounds the work a hostile torrent can cause |
//! | pad files                                              | ignored  | never written to disk, so their names cannot collide |
//!
//! # Limits
//!
//! - [`MAX_PIECE_LENGTH`] = 1 GiB: a piece is hashed and verified as a unit and a failed piece
//!   is re-downloaded whole; libtorrent's cap is `INT_MAX / 2`, about the same. Its
//!   `large_piece_size.torrent` (32767 × 16 KiB) loads. At 1 GiB a piece is 65536 blocks of
//!   16 KiB, so per-piece block bitmaps stay at 8 KiB.
//! - [`MAX_PIECES`] = 2^21 (libtorrent's default `max_pieces`): 40 MiB of hashes, a 256 KiB
//!   bitfield message, and per-piece state in the picker that stays in the low megabytes.
//!   Real torrents have a few thousand pieces; `many_pieces.torrent` (107 million) is refused.
//! - [`MAX_METAINFO_BYTES`] = 80 MiB of input (libtorrent's `max_buffer_size` is 80 MB).

mod layout;
mod sanitize;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha1::{Digest, Sha1};

use crate::bencode::{self, Dict, Limits, Value};

pub use layout::{FileEntry, FileLayout, FileSlice, FileSlices};

/// Largest accepted piece length: 1 GiB (see the module doc).
pub const MAX_PIECE_LENGTH: u64 = 1 << 30;
/// Largest accepted piece count: 2^21 (see the module doc).
pub const MAX_PIECES: u32 = 1 << 21;
/// Largest accepted `.torrent` file (or info dictionary): 80 MiB.
pub const MAX_METAINFO_BYTES: usize = 80 << 20;
/// Most files renamed to resolve duplicate names before the torrent is refused.
pub const MAX_RENAMES: usize = 100;
/// Most candidate names tried, over all renames, before the torrent is refused.
pub const MAX_RENAME_TRIES: usize = 10_000;

/// A v1 info hash: the SHA-1 of the bencoded `info` dictionary, exactly as it appears in the
/// file (BEP 3).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// The 20 raw bytes (as sent in handshakes and tracker requests).
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The SHA-1 of `info_bytes`.
    pub fn of(info_bytes: &[u8]) -> InfoHash {
        InfoHash(Sha1::digest(info_bytes).into())
    }
}

impl fmt::Display for InfoHash {
    /// Lowercase hex, 40 characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

/// Why a torrent file was refused. Each message names the key and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// The input is larger than [`MAX_METAINFO_BYTES`].
    #[error("the torrent is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Input size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not valid bencode.
    #[error(transparent)]
    Bencode(#[from] bencode::DecodeError),
    /// The top-level value is not a dictionary.
    #[error("the torrent is not a bencoded dictionary (found {found})")]
    NotADict {
        /// Type of the top-level value.
        found: &'static str,
    },
    /// A required key is absent.
    #[error("{key} is missing")]
    MissingKey {
        /// Dotted key path, such as `info.piece length` or `info.files[2].length`.
        key: String,
    },
    /// A key holds the wrong type.
    #[error("{key} is not {expected} (found {found})")]
    WrongType {
        /// Dotted key path.
        key: String,
        /// What BEP 3 wants there.
        expected: &'static str,
        /// What the file holds.
        found: &'static str,
    },
    /// Transmission's `magnet-info` form: a magnet link saved as a file, without metadata.
    #[error(
        "there is no info dictionary, only a saved magnet link (magnet-info, info hash \
         {info_hash}); open it as a magnet link instead"
    )]
    MagnetInfoOnly {
        /// The info hash it names, in hex (or `unknown`).
        info_hash: String,
    },
    /// A BitTorrent v2-only torrent.
    #[error(
        "this is a BitTorrent v2-only torrent (BEP 52: info.meta version 2 and no info.pieces); \
         Hive supports v1 and hybrid torrents"
    )]
    V2Only,
    /// `piece length` is zero or negative.
    #[error("info.piece length must be positive, found {0}")]
    NonPositivePieceLength(i64),
    /// `piece length` is above [`MAX_PIECE_LENGTH`].
    #[error("info.piece length {0} is larger than the maximum {MAX_PIECE_LENGTH} (1 GiB)")]
    PieceLengthTooLarge(i64),
    /// `pieces` is not a whole number of SHA-1 hashes.
    #[error("info.pieces length {0} is not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    /// A length is negative.
    #[error("{key} is negative ({value})")]
    NegativeLength {
        /// Dotted key path.
        key: String,
        /// The value found.
        value: i64,
    },
    /// A list that must not be empty is.
    #[error("{key} is empty")]
    Empty {
        /// Dotted key path (`info.files`, `info.files[3].path`).
        key: String,
    },
    /// Neither `length` nor `files`.
    #[error("info has neither length (single-file torrent) nor files (multi-file torrent)")]
    NoLengthNorFiles,
    /// The file lengths add up to more than `u64::MAX`.
    #[error("{key} makes the total length overflow 64 bits")]
    TotalLengthOverflow {
        /// The length that overflowed the sum.
        key: String,
    },
    /// All files are empty.
    #[error("total length is 0: the torrent has no data")]
    ZeroTotalLength,
    /// More pieces than [`MAX_PIECES`].
    #[error(
        "total length {total} / piece length {piece_length} = {pieces} pieces, more than the \
         maximum {MAX_PIECES}"
    )]
    TooManyPieces {
        /// Total length in bytes.
        total: u64,
        /// Piece length in bytes.
        piece_length: u64,
        /// The piece count it implies.
        pieces: u64,
    },
    /// `pieces` holds a different number of hashes than the lengths imply.
    #[error(
        "piece count {hashes} (info.pieces) does not match total length {total} / piece length \
         {piece_length} = {expected} pieces"
    )]
    PieceCountMismatch {
        /// Hashes in `pieces`.
        hashes: usize,
        /// Total length in bytes.
        total: u64,
        /// Piece length in bytes.
        piece_length: u64,
        /// Pieces the lengths imply.
        expected: u64,
    },
    /// One path is listed twice with different lengths.
    #[error(
        "info.files[{second}] repeats the path of info.files[{first}] ({path}) with a different \
         length ({second_length} vs {first_length} bytes)"
    )]
    DuplicatePath {
        /// Path as sanitised, joined with `/`.
        path: String,
        /// Index of the first occurrence.
        first: usize,
        /// Its length.
        first_length: u64,
        /// Index of the repeat.
        second: usize,
        /// Its length.
        second_length: u64,
    },
    /// Too many duplicate names to rename.
    #[error(
        "too many duplicate file names (more than {MAX_RENAMES} renames or {MAX_RENAME_TRIES} \
         names tried)"
    )]
    TooManyDuplicates,
}

/// A parsed, validated torrent. Owned: it outlives the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    info_hash: InfoHash,
    info_bytes: Vec<u8>,
    /// Where the concatenated piece hashes sit inside `info_bytes`.
    pieces_at: usize,
    name: String,
    multi_file: bool,
    hybrid: bool,
    private: bool,
    layout: FileLayout,
    trackers: Vec<Vec<String>>,
    web_seeds: Vec<String>,
    creation_date: Option<i64>,
    created_by: Option<String>,
    comment: Option<String>,
    encoding: Option<String>,
}

impl Metainfo {
    /// Parses a `.torrent` file.
    pub fn from_bytes(input: &[u8]) -> Result<Metainfo, MetainfoError> {
        check_size(input)?;
        // Trailing bytes after the dictionary (a newline, usually) are ignored, as libtorrent
        // and Transmission do: they are outside the info hash, so they cannot change the data.
        let (root, _used) = bencode::decode_prefix(input, Limits::lenient())?;
        let dict = root.as_dict().ok_or(MetainfoError::NotADict {
            found: root.type_name(),
        })?;
        let Some(info) = dict.get(b"info") else {
            return Err(missing_info(dict));
        };
        let mut meta = parse_info(info)?;
        meta.trackers = parse_trackers(dict);
        meta.web_seeds = parse_web_seeds(dict.get(b"url-list"));
        meta.creation_date = dict
            .get(b"creation date")
            .and_then(Value::as_int)
            .filter(|t| *t >= 0);
        meta.created_by = text(dict, b"created by");
        meta.comment = text(dict, b"comment.utf-8").or_else(|| text(dict, b"comment"));
        meta.encoding = text(dict, b"encoding");
        Ok(meta)
    }

    /// Parses a bare info dictionary, as received through BEP 9 metadata exchange. There are
    /// no trackers, web seeds or creation details: those live outside `info`.
    pub fn from_info_bytes(info: &[u8]) -> Result<Metainfo, MetainfoError> {
        check_size(info)?;
        let value = bencode::decode_with(info, Limits::lenient())?;
        parse_info(&value)
    }

    /// The v1 info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The raw bencoded `info` dictionary, byte for byte as in the file (for BEP 9).
    pub fn info_bytes(&self) -> &[u8] {
        &self.info_bytes
    }

    /// The torrent's sanitised name: the top directory (multi-file) or the file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the torrent uses the multi-file form (`files`), even with a single file: then
    /// every path starts with the name as a directory.
    pub fn is_multi_file(&self) -> bool {
        self.multi_file
    }

    /// A hybrid v1+v2 torrent (BEP 52 `meta version` 2 with v1 `pieces`), used through its
    /// v1 part; its v2 hashes are ignored.
    pub fn is_hybrid(&self) -> bool {
        self.hybrid
    }

    /// BEP 27 private flag: peers only from the torrent's trackers (no DHT, PEX, LSD).
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// The file layout and piece mapping.
    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    /// Shortcut for `layout().files()`.
    pub fn files(&self) -> &[FileEntry] {
        self.layout.files()
    }

    /// Nominal piece length in bytes.
    pub fn piece_length(&self) -> u64 {
        self.layout.piece_length()
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.layout.piece_count()
    }

    /// Length of piece `piece` (the last one may be short).
    pub fn piece_len(&self, piece: u32) -> Option<u64> {
        self.layout.piece_len(piece)
    }

    /// Total length in bytes, pad files included.
    pub fn total_length(&self) -> u64 {
        self.layout.total_length()
    }

    /// All piece hashes, concatenated (20 bytes each).
    pub fn piece_hashes(&self) -> &[u8] {
        let len = usize::try_from(self.piece_count())
            .unwrap_or(usize::MAX)
            .saturating_mul(20);
        self.info_bytes
            .get(self.pieces_at..self.pieces_at.saturating_add(len))
            .unwrap_or_default()
    }

    /// The SHA-1 hash of piece `piece`.
    pub fn piece_hash(&self, piece: u32) -> Option<&[u8; 20]> {
        let i = usize::try_from(piece).ok()?;
        self.piece_hashes()
            .chunks_exact(20)
            .nth(i)
            .and_then(|h| h.try_into().ok())
    }

    /// Tracker tiers (BEP 12), in file order, URLs trimmed, deduplicated, invalid ones
    /// dropped; from `announce-list` if it yields any URL, else from `announce`. Shuffling
    /// within a tier is the announcer's job (it owns the seeded RNG).
    pub fn trackers(&self) -> &[Vec<String>] {
        &self.trackers
    }

    /// Web seed URLs (BEP 19 `url-list`, string or list), deduplicated, invalid ones dropped.
    pub fn web_seeds(&self) -> &[String] {
        &self.web_seeds
    }

    /// `creation date`, seconds since the Unix epoch (absent if missing or negative).
    pub fn creation_date(&self) -> Option<i64> {
        self.creation_date
    }

    /// `created by`.
    pub fn created_by(&self) -> Option<&str> {
        self.created_by.as_deref()
    }

    /// `comment` (`comment.utf-8` preferred).
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// `encoding` (informational: names are decoded as UTF-8 whatever it says).
    pub fn encoding(&self) -> Option<&str> {
        self.encoding.as_deref()
    }
}

fn check_size(input: &[u8]) -> Result<(), MetainfoError> {
    if input.len() > MAX_METAINFO_BYTES {
        return Err(MetainfoError::TooLarge {
            size: input.len(),
            max: MAX_METAINFO_BYTES,
        });
    }
    Ok(())
}

/// The error for a file without `info`: a saved magnet link, or simply missing.
fn missing_info(dict: &Dict<'_>) -> MetainfoError {
    let Some(magnet) = dict.get(b"magnet-info") else {
        return missing("info");
    };
    let info_hash = magnet
        .get(b"info_hash")
        .and_then(Value::as_bytes)
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .map_or_else(|| "unknown".to_owned(), |h| InfoHash(h).to_string());
    MetainfoError::MagnetInfoOnly { info_hash }
}

fn missing(key: impl Into<String>) -> MetainfoError {
    MetainfoError::MissingKey { key: key.into() }
}

fn wrong(key: impl Into<String>, expected: &'static str, v: &Value<'_>) -> MetainfoError {
    MetainfoError::WrongType {
        key: key.into(),
        expected,
        found: v.type_name(),
    }
}

/// An optional text field, decoded lossily (it is only shown, never used as a path).
fn text(dict: &Dict<'_>, key: &[u8]) -> Option<String> {
    dict.get(key)
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// What the info dictionary says about one file, before sanitising.
struct RawFile<'a> {
    /// Path components as in the file (empty for a single-file torrent).
    components: Vec<&'a [u8]>,
    /// Raw bencoded `path` list, identifying exact duplicates.
    raw_path: &'a [u8],
    length: u64,
    pad: bool,
    executable: bool,
    hidden: bool,
    symlink: Option<Vec<&'a [u8]>>,
}

fn parse_info(info: &Value<'_>) -> Result<Metainfo, MetainfoError> {
    let dict = info
        .as_dict()
        .ok_or_else(|| wrong("info", "a dictionary", info))?;

    // BEP 52: v2-only torrents have `meta version` 2 and no v1 `pieces`. Checked first so that
    // every v2-only torrent gets this message, whatever else is wrong with it.
    let meta_version = dict.get(b"meta version").and_then(Value::as_int);
    if meta_version.is_some_and(|v| v >= 2) && dict.get(b"pieces").is_none() {
        return Err(MetainfoError::V2Only);
    }
    let hybrid = meta_version == Some(2);

    let piece_length = parse_piece_length(dict)?;
    let pieces = match dict.get(b"pieces") {
        None => return Err(missing("info.pieces")),
        Some(v) => v
            .as_bytes()
            .ok_or_else(|| wrong("info.pieces", "a byte string", v))?,
    };
    if pieces.len() % 20 != 0 {
        return Err(MetainfoError::PiecesNotMultipleOf20(pieces.len()));
    }
    // `pieces` borrows from `info.raw`, so its position there is a pointer difference; found
    // safely, as the offset of the string's tail in the raw bytes.
    let pieces_at = dict
        .get(b"pieces")
        .map(|v| {
            (v.offset + v.raw.len())
                .saturating_sub(pieces.len())
                .saturating_sub(info.offset)
        })
        .unwrap_or_default();

    let name_raw = parse_name(dict)?;
    let (multi_file, raw_files) = parse_files(dict)?;

    let mut total: u64 = 0;
    for (i, f) in raw_files.iter().enumerate() {
        total = total
            .checked_add(f.length)
            .ok_or_else(|| MetainfoError::TotalLengthOverflow {
                key: if multi_file {
                    format!("info.files[{i}].length")
                } else {
                    "info.length".to_owned()
                },
            })?;
    }
    if total == 0 {
        return Err(MetainfoError::ZeroTotalLength);
    }
    let expected = total.div_ceil(piece_length);
    let piece_count = u32::try_from(expected)
        .ok()
        .filter(|n| *n <= MAX_PIECES)
        .ok_or(MetainfoError::TooManyPieces {
            total,
            piece_length,
            pieces: expected,
        })?;
    let hashes = pieces.len() / 20;
    if u64::try_from(hashes).ok() != Some(expected) {
        return Err(MetainfoError::PieceCountMismatch {
            hashes,
            total,
            piece_length,
            expected,
        });
    }

    let info_hash = InfoHash::of(info.raw);
    let name = sanitize::component(name_raw).unwrap_or_else(|| info_hash.to_string());
    let files = lay_out(&name, multi_file, raw_files)?;

    let private = match dict.get(b"private") {
        None => false,
        Some(v) => match v.as_int() {
            Some(n) => n != 0,
            // A `private` key of the wrong type: fail safe and keep the torrent off DHT/PEX.
            None => true,
        },
    };

    Ok(Metainfo {
        info_hash,
        info_bytes: info.raw.to_vec(),
        pieces_at,
        name,
        multi_file,
        hybrid,
        private,
        layout: FileLayout::from_parts(files, piece_length, total, piece_count),
        trackers: Vec::new(),
        web_seeds: Vec::new(),
        creation_date: None,
        created_by: None,
        comment: None,
        encoding: None,
    })
}

fn parse_piece_length(dict: &Dict<'_>) -> Result<u64, MetainfoError> {
    const KEY: &str = "info.piece length";
    let v = dict.get(b"piece length").ok_or_else(|| missing(KEY))?;
    let n = v.as_int().ok_or_else(|| wrong(KEY, "an integer", v))?;
    if n <= 0 {
        return Err(MetainfoError::NonPositivePieceLength(n));
    }
    let n64 = n.unsigned_abs();
    if n64 > MAX_PIECE_LENGTH {
        return Err(MetainfoError::PieceLengthTooLarge(n));
    }
    Ok(n64)
}

fn parse_name<'a>(dict: &Dict<'a>) -> Result<&'a [u8], MetainfoError> {
    // `name.utf-8` (BitComet and others, for torrents whose `name` is in a legacy code page)
    // wins when it is a well-formed string, as in libtorrent.
    if let Some(n) = dict
        .get(b"name.utf-8")
        .and_then(Value::as_bytes)
        .filter(|n| !n.is_empty())
    {
        return Ok(n);
    }
    let v = dict.get(b"name").ok_or_else(|| missing("info.name"))?;
    v.as_bytes()
        .ok_or_else(|| wrong("info.name", "a byte string", v))
}

fn parse_length(v: Option<&Value<'_>>, key: &str) -> Result<u64, MetainfoError> {
    let v = v.ok_or_else(|| missing(key))?;
    let n = v.as_int().ok_or_else(|| wrong(key, "an integer", v))?;
    u64::try_from(n).map_err(|_| MetainfoError::NegativeLength {
        key: key.to_owned(),
        value: n,
    })
}

/// BEP 47 `attr`: characters in any order, unknown ones ignored.
fn attrs<'a>(dict: &Dict<'a>) -> &'a [u8] {
    dict.get(b"attr")
        .and_then(Value::as_bytes)
        .unwrap_or_default()
}

fn parse_files<'a>(dict: &Dict<'a>) -> Result<(bool, Vec<RawFile<'a>>), MetainfoError> {
    let Some(files) = dict.get(b"files") else {
        // Single-file form.
        if dict.get(b"length").is_none() {
            return Err(MetainfoError::NoLengthNorFiles);
        }
        let length = parse_length(dict.get(b"length"), "info.length")?;
        let a = attrs(dict);
        return Ok((
            false,
            vec![RawFile {
                components: Vec::new(),
                raw_path: &[],
                length,
                // A lone pad file or symlink makes no sense; only x and h apply here.
                pad: false,
                executable: a.contains(&b'x'),
                hidden: a.contains(&b'h'),
                symlink: None,
            }],
        ));
    };
    let list = files
        .as_list()
        .ok_or_else(|| wrong("info.files", "a list", files))?;
    if list.is_empty() {
        return Err(MetainfoError::Empty {
            key: "info.files".to_owned(),
        });
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        out.push(parse_file(i, entry)?);
    }
    Ok((true, out))
}

fn parse_file<'a>(i: usize, entry: &Value<'a>) -> Result<RawFile<'a>, MetainfoError> {
    let key = |k: &str| format!("info.files[{i}]{k}");
    let d = entry
        .as_dict()
        .ok_or_else(|| wrong(key(""), "a dictionary", entry))?;
    let a = attrs(d);
    let mut pad = a.contains(&b'p');
    let symlink_flag = a.contains(&b'l');

    // BEP 47: "symlink path" is required for a symlink; without it libtorrent drops the flag.
    let symlink = match (symlink_flag, d.get(b"symlink path")) {
        (true, Some(v)) => Some(string_list(v, &key(".symlink path"))?),
        _ => None,
    };
    // BEP 47: a symlink occupies no bytes in the piece space and need not have `length`.
    let length = if symlink.is_some() {
        0
    } else {
        parse_length(d.get(b"length"), &key(".length"))?
    };

    let path_value = match d.get(b"path.utf-8") {
        Some(v) if is_string_list(v) => Some(v),
        _ => d.get(b"path"),
    };
    let (components, raw_path) = match path_value {
        Some(v) => {
            let comps = string_list(v, &key(".path"))?;
            if comps.is_empty() && !pad {
                return Err(MetainfoError::Empty { key: key(".path") });
            }
            (comps, v.raw)
        }
        // BEP 47: pad files need not have a path.
        None if pad => (Vec::new(), &[][..]),
        None => return Err(missing(key(".path"))),
    };
    // BitComet marks pad files by name only; libtorrent recognises them the same way.
    if components
        .last()
        .is_some_and(|c| c.starts_with(b"_____padding_file_"))
    {
        pad = true;
    }
    Ok(RawFile {
        components,
        raw_path,
        length,
        pad,
        executable: a.contains(&b'x'),
        hidden: a.contains(&b'h'),
        symlink,
    })
}

/// A non-empty list of byte strings (what a usable `path.utf-8` looks like).
fn is_string_list(v: &Value<'_>) -> bool {
    v.as_list()
        .is_some_and(|l| !l.is_empty() && l.iter().all(|e| e.as_bytes().is_some()))
}

fn string_list<'a>(v: &Value<'a>, key: &str) -> Result<Vec<&'a [u8]>, MetainfoError> {
    let list = v.as_list().ok_or_else(|| wrong(key, "a list", v))?;
    list.iter()
        .enumerate()
        .map(|(j, e)| {
            e.as_bytes()
                .ok_or_else(|| wrong(format!("{key}[{j}]"), "a byte string", e))
        })
        .collect()
}

/// Sanitised components of a path list (dropped components removed).
fn sanitize_path(components: &[&[u8]]) -> Vec<String> {
    components
        .iter()
        .filter_map(|c| sanitize::component(c))
        .collect()
}

/// Sanitises paths, assigns offsets and resolves name collisions.
fn lay_out(
    name: &str,
    multi_file: bool,
    raw: Vec<RawFile<'_>>,
) -> Result<Vec<FileEntry>, MetainfoError> {
    let mut files = Vec::with_capacity(raw.len());
    // Whether the torrent gave the file a name that survived sanitising.
    let mut named = Vec::with_capacity(raw.len());
    let mut offset: u64 = 0;
    for f in &raw {
        let mut path = vec![name.to_owned()];
        if multi_file {
            let rest = if f.components.is_empty() && f.pad {
                vec![".pad".to_owned(), f.length.to_string()]
            } else {
                sanitize_path(&f.components)
            };
            named.push(!rest.is_empty());
            if rest.is_empty() {
                path.push("_".to_owned());
            } else {
                path.extend(rest);
            }
        }
        let symlink_target = f.symlink.as_ref().and_then(|t| {
            let t = sanitize_path(t);
            // A target that sanitises to nothing would point at the torrent root itself.
            (!t.is_empty()).then(|| {
                let mut full = vec![name.to_owned()];
                full.extend(t);
                full
            })
        });
        files.push(FileEntry {
            path,
            length: f.length,
            offset,
            pad: f.pad,
            executable: f.executable,
            hidden: f.hidden,
            symlink_target,
        });
        // The caller checked that the sum fits.
        offset = offset.saturating_add(f.length);
    }
    if multi_file {
        resolve_collisions(&mut files, &raw, &named)?;
    }
    Ok(files)
}

fn folded(path: &[String]) -> Vec<String> {
    path.iter().map(|c| sanitize::fold(c)).collect()
}

/// Renames files whose (case-folded) path is taken by an earlier file or is a directory of
/// another file; refuses exact duplicates with different lengths. See the module doc.
fn resolve_collisions(
    files: &mut [FileEntry],
    raw: &[RawFile<'_>],
    named: &[bool],
) -> Result<(), MetainfoError> {
    // Every directory some non-pad file needs, so that no file may take its name.
    let mut dirs: BTreeSet<Vec<String>> = BTreeSet::new();
    // Every name the torrent itself uses: a rename never takes one, so a real `bar.1.txt`
    // keeps its name even when an earlier duplicate of `bar.txt` needs a new one.
    let mut originals: BTreeSet<Vec<String>> = BTreeSet::new();
    for f in files.iter().filter(|f| !f.pad) {
        let key = folded(&f.path);
        for n in 1..key.len() {
            if let Some(prefix) = key.get(..n) {
                dirs.insert(prefix.to_vec());
            }
        }
        originals.insert(key);
    }
    let mut taken: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut first_seen: BTreeMap<&[u8], (usize, u64)> = BTreeMap::new();
    let mut renames = 0usize;
    let mut tries = 0usize;
    for (i, ((f, r), named)) in files.iter_mut().zip(raw).zip(named).enumerate() {
        if f.pad {
            continue;
        }
        // A path that names nothing (all components empty, `.` or `..`) has no identity to
        // contradict: such files are numbered like any collision (libtorrent's
        // empty_path_multi.torrent loads).
        if *named {
            match first_seen.get(r.raw_path) {
                Some(&(first, first_length)) if first_length != f.length => {
                    return Err(MetainfoError::DuplicatePath {
                        path: f.display_path(),
                        first,
                        first_length,
                        second: i,
                        second_length: f.length,
                    });
                }
                Some(_) => {}
                None => {
                    first_seen.insert(r.raw_path, (i, f.length));
                }
            }
        }
        let mut key = folded(&f.path);
        if !dirs.contains(&key) && !taken.contains(&key) {
            taken.insert(key);
            continue;
        }
        renames += 1;
        if renames > MAX_RENAMES {
            return Err(MetainfoError::TooManyDuplicates);
        }
        let Some(last) = f.path.last().cloned() else {
            continue;
        };
        let mut counter = 1u64;
        loop {
            tries += 1;
            if tries > MAX_RENAME_TRIES {
                return Err(MetainfoError::TooManyDuplicates);
            }
            let candidate = sanitize::fit(&last, &format!(".{counter}"));
            if let Some(k) = key.last_mut() {
                *k = sanitize::fold(&candidate);
            }
            if !dirs.contains(&key) && !taken.contains(&key) && !originals.contains(&key) {
                if let Some(p) = f.path.last_mut() {
                    *p = candidate;
                }
                taken.insert(key);
                break;
            }
            counter += 1;
        }
    }
    Ok(())
}

/// Trims a URL and checks it is one Hive can use: a scheme from `schemes`, a host, and no
/// control characters. Inner spaces are percent-encoded (libtorrent's
/// url_seed_multi_space.torrent expects `test%20file`).
fn clean_url(raw: &[u8], schemes: &[&str]) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    if s.chars().any(char::is_control) {
        return None;
    }
    let (scheme, rest) = s.split_once("://")?;
    if !schemes.iter().any(|w| w.eq_ignore_ascii_case(scheme)) {
        return None;
    }
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest
        .get(..host_end)
        .is_none_or(|h| h.is_empty() || h.contains(' '))
    {
        return None;
    }
    Some(s.replace(' ', "%20"))
}

const TRACKER_SCHEMES: [&str; 3] = ["http", "https", "udp"];
const WEB_SEED_SCHEMES: [&str; 2] = ["http", "https"];

fn parse_trackers(dict: &Dict<'_>) -> Vec<Vec<String>> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut tiers: Vec<Vec<String>> = Vec::new();
    let mut add = |url: &Value<'_>, tier: &mut Vec<String>| {
        if let Some(u) = url.as_bytes().and_then(|b| clean_url(b, &TRACKER_SCHEMES)) {
            if seen.insert(u.clone()) {
                tier.push(u);
            }
        }
    };
    // BEP 12: if announce-list is present, ignore announce. libtorrent falls back to announce
    // when announce-list yields nothing usable; so do we.
    if let Some(list) = dict.get(b"announce-list").and_then(Value::as_list) {
        for tier_value in list {
            let mut tier = Vec::new();
            match tier_value.as_list() {
                Some(urls) => urls.iter().for_each(|u| add(u, &mut tier)),
                // A flat list of strings (seen in the wild): each string is its own tier.
                None => add(tier_value, &mut tier),
            }
            if !tier.is_empty() {
                tiers.push(tier);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(announce) = dict.get(b"announce") {
            let mut tier = Vec::new();
            add(announce, &mut tier);
            if !tier.is_empty() {
                tiers.push(tier);
            }
        }
    }
    tiers
}

fn parse_web_seeds(url_list: Option<&Value<'_>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut add = |v: &Value<'_>| {
        if let Some(u) = v.as_bytes().and_then(|b| clean_url(b, &WEB_SEED_SCHEMES)) {
            if seen.insert(u.clone()) {
                out.push(u);
            }
        }
    };
    if let Some(v) = url_list {
        match v.as_list() {
            Some(list) => list.iter().for_each(&mut add),
            None => add(v),
        }
    }
    out
}

#[cfg(test)]
mod tests;
