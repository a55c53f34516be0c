//! The torrent's byte space: files laid end to end, cut into pieces (BEP 3).
//!
//! Invariants (checked when a [`FileLayout`] is built, relied on everywhere else):
//! - files are in torrent order; `files[i].offset == sum(files[..i].length)`;
//! - `total_length == sum(length) > 0` and fits a `u64`;
//! - `piece_length > 0`, `piece_count == ceil(total_length / piece_length) <= MAX_PIECES`;
//! - every piece but the last is `piece_length` long; the last is the remainder (or full);
//! - zero-length files have an offset but own no bytes, so no piece maps to them;
//! - pad files (BEP 47) own bytes like any file: those bytes are zeros, they are hashed, they
//!   are never written to disk.

use std::ops::Range;

/// One file of a torrent, as it will be laid out under the download directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub(crate) path: Vec<String>,
    pub(crate) length: u64,
    pub(crate) offset: u64,
    pub(crate) pad: bool,
    pub(crate) executable: bool,
    pub(crate) hidden: bool,
    pub(crate) symlink_target: Option<Vec<String>>,
}

impl FileEntry {
    /// Sanitised path relative to the download directory, one component per element. For a
    /// multi-file torrent the first component is the torrent's (sanitised) name. No component
    /// is empty, `.`, `..`, contains `/` or `\`, or is longer than 255 bytes.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The path joined with `/`, for display.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }

    /// Length in bytes (0 for symlinks, whatever the torrent said, as BEP 47 prescribes).
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Offset of the file's first byte in the torrent's byte space.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// One past the file's last byte in the torrent's byte space.
    pub fn end(&self) -> u64 {
        // Cannot overflow: the layout checked that the total length fits a u64.
        self.offset.saturating_add(self.length)
    }

    /// A BEP 47 padding file (`attr` contains `p`, or BitComet's `_____padding_file_` name):
    /// its bytes are zeros, it must not be written to disk, nor requested from peers.
    pub fn is_pad(&self) -> bool {
        self.pad
    }

    /// BEP 47 `x` attribute.
    pub fn is_executable(&self) -> bool {
        self.executable
    }

    /// BEP 47 `h` attribute.
    pub fn is_hidden(&self) -> bool {
        self.hidden
    }

    /// BEP 47 `l` attribute: the sanitised target, relative to the download directory like
    /// [`FileEntry::path`]. Targets are not checked to exist in the torrent.
    pub fn symlink_target(&self) -> Option<&[String]> {
        self.symlink_target.as_deref()
    }
}

/// One part of a piece that falls in one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSlice {
    /// Index into [`FileLayout::files`].
    pub file: usize,
    /// Offset of the slice within that file.
    pub offset: u64,
    /// Length of the slice in bytes (never 0).
    pub len: u64,
}

/// Files, piece length and the mapping between pieces and file byte ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLayout {
    files: Vec<FileEntry>,
    piece_length: u64,
    total_length: u64,
    piece_count: u32,
}

impl FileLayout {
    /// Builds a layout from files whose offsets are already set. The parser guarantees the
    /// invariants listed in the module doc; this only assembles.
    pub(crate) fn from_parts(
        files: Vec<FileEntry>,
        piece_length: u64,
        total_length: u64,
        piece_count: u32,
    ) -> FileLayout {
        FileLayout {
            files,
            piece_length,
            total_length,
            piece_count,
        }
    }

    /// All files in torrent order, zero-length and pad files included.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// Nominal piece length in bytes (BEP 3 `piece length`).
    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    /// Sum of all file lengths, pad files included.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Number of pieces: `ceil(total_length / piece_length)`.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Byte offset of piece `piece` in the torrent's byte space.
    pub fn piece_offset(&self, piece: u32) -> Option<u64> {
        if piece >= self.piece_count {
            return None;
        }
        u64::from(piece).checked_mul(self.piece_length)
    }

    /// Length of piece `piece`: `piece_length`, except the last piece, which holds the rest.
    pub fn piece_len(&self, piece: u32) -> Option<u64> {
        let start = self.piece_offset(piece)?;
        let rest = self.total_length.checked_sub(start)?;
        Some(rest.min(self.piece_length))
    }

    /// Byte range of piece `piece` in the torrent's byte space.
    pub fn piece_byte_range(&self, piece: u32) -> Option<Range<u64>> {
        let start = self.piece_offset(piece)?;
        let len = self.piece_len(piece)?;
        Some(start..start.saturating_add(len))
    }

    /// The parts of files that piece `piece` covers, in order; zero-length files never appear.
    /// Pad files do appear (their bytes are zeros): storage must not read or write them.
    /// Empty for a piece index out of range.
    pub fn file_slices(&self, piece: u32) -> FileSlices<'_> {
        let range = self.piece_byte_range(piece).unwrap_or(0..0);
        // First file that ends after the piece's start (binary search: files are sorted by
        // offset and ends are non-decreasing).
        let first = self.files.partition_point(|f| f.end() <= range.start);
        FileSlices {
            files: &self.files,
            next: first,
            pos: range.start,
            end: range.end,
        }
    }

    /// The pieces that hold bytes of file `file`. Empty (but positioned at the piece where the
    /// file would start) for a zero-length file; `None` for an index out of range.
    pub fn piece_range_of_file(&self, file: usize) -> Option<Range<u32>> {
        let f = self.files.get(file)?;
        let piece_of = |byte: u64| -> u32 {
            u32::try_from(byte / self.piece_length)
                .unwrap_or(u32::MAX)
                .min(self.piece_count)
        };
        let start = piece_of(f.offset);
        if f.length == 0 {
            return Some(start..start);
        }
        let last = piece_of(f.end() - 1);
        Some(start..last.saturating_add(1))
    }

    /// Index of the file that holds byte `offset` of the torrent (zero-length files never do).
    pub fn file_at_offset(&self, offset: u64) -> Option<usize> {
        if offset >= self.total_length {
            return None;
        }
        let i = self.files.partition_point(|f| f.end() <= offset);
        (i < self.files.len()).then_some(i)
    }
}

/// Iterator over the [`FileSlice`]s of one piece; see [`FileLayout::file_slices`].
#[derive(Clone, Debug)]
pub struct FileSlices<'a> {
    files: &'a [FileEntry],
    next: usize,
    pos: u64,
    end: u64,
}

impl Iterator for FileSlices<'_> {
    type Item = FileSlice;

    fn next(&mut self) -> Option<FileSlice> {
        while self.pos < self.end {
            let index = self.next;
            let f = self.files.get(index)?;
            self.next += 1;
            if f.length == 0 || f.end() <= self.pos {
                continue;
            }
            let stop = f.end().min(self.end);
            let slice = FileSlice {
                file: index,
                offset: self.pos - f.offset,
                len: stop - self.pos,
            };
            self.pos = stop;
            return Some(slice);
        }
        None
    }
}
