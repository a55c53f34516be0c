//! The torrent's files on disk: created under the output directory, written and read with
//! positional I/O through the core's [`FileLayout`], pieces hashed from what is on disk.
//!
//! Every method is blocking; the driver runs them on the blocking pool (`smol::unblock`), never
//! on its own task. Files are sparse: they are created empty and grow as blocks land, so
//! nothing is preallocated and a disk that fills up fails a block write (an error the Session
//! turns into a stopped torrent), not the start. Pad files (BEP 47) are never created, written
//! or read: their bytes are zeros by definition.
//!
//! Every file is created (and its path checked) at start, but at most [`MAX_OPEN_FILES`] stay
//! open: a torrent of thousands of files would otherwise run into the per-process descriptor
//! limit (often 1,024). The least recently used handle is closed first, as libtorrent's file
//! pool (40 by default) and Transmission's open-file cache (32) do. A reopened path is checked
//! again, so a symlink planted while it was closed cannot lead writes out of the directory.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::UNIX_EPOCH;

use hive_core::bitfield::Bitfield;
use hive_core::metainfo::{FileLayout, Metainfo};
use sha1::{Digest, Sha1};

/// What went wrong with the files, with the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A torrent path would leave the output directory (never happens with a sanitised
    /// metainfo; checked anyway, also against symlinked folders).
    #[error("refusing to write {0}: it is outside the output directory")]
    Outside(PathBuf),
    /// Creating a folder or a file failed.
    #[error("cannot create {path}: {source}")]
    Create {
        /// Which one.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// File handles kept open at most; more are reopened on demand, least recently used first out.
pub const MAX_OPEN_FILES: usize = 64;

/// One file of the torrent.
#[derive(Debug)]
struct DiskFile {
    /// False for pad files and symlinks: never on disk.
    on_disk: bool,
    path: PathBuf,
    offset: u64,
    length: u64,
}

/// The open handles (a bounded LRU over the torrent's files) and which files hold data not
/// yet synced. Held only to look up or swap a handle, never across I/O.
#[derive(Debug, Default)]
struct Handles {
    /// Per file: its open handle and when it was last used (`tick`).
    open: Vec<Option<(Arc<File>, u64)>>,
    tick: u64,
    /// Per file: written since the last `sync`.
    dirty: Vec<bool>,
}

/// Size and modification time of one file, as recorded in the resume file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes (0 if missing).
    pub len: u64,
    /// Modification time in nanoseconds since the Unix epoch (0 if missing).
    pub mtime_ns: u64,
}

/// The torrent's files, open for positional reads and writes.
#[derive(Debug)]
pub struct Storage {
    files: Vec<DiskFile>,
    /// The canonical output directory, to re-check paths on reopen.
    root: PathBuf,
    handles: Mutex<Handles>,
    layout: FileLayout,
    hashes: Vec<[u8; 20]>,
}

impl Storage {
    /// Creates (or opens) every file of `meta` under `root`, creating folders as needed.
    /// Existing data is kept: a restart re-uses it.
    pub fn open(root: &Path, meta: &Metainfo) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(root).map_err(|source| StorageError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        let canonical_root = root.canonicalize().map_err(|source| StorageError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        let mut files = Vec::with_capacity(meta.files().len());
        let mut handles = Handles::default();
        let mut kept_open = 0;
        for entry in meta.files() {
            let mut path = root.to_path_buf();
            for part in entry.path() {
                let component = Path::new(part);
                // Exactly one normal component each: no `..`, no root, no separators.
                let mut comps = component.components();
                match (comps.next(), comps.next()) {
                    (Some(Component::Normal(_)), None) => path.push(part),
                    _ => return Err(StorageError::Outside(path.join(part))),
                }
            }
            if entry.is_pad() || entry.symlink_target().is_some() {
                files.push(DiskFile {
                    on_disk: false,
                    path,
                    offset: entry.offset(),
                    length: if entry.is_pad() { entry.length() } else { 0 },
                });
                handles.push(None);
                continue;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| StorageError::Create {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            let file = open_inside(&canonical_root, &path, true)?;
            // Keep the first handles open; the rest are reopened when first used.
            let keep = kept_open < MAX_OPEN_FILES;
            kept_open += usize::from(keep);
            handles.push(keep.then(|| Arc::new(file)));
            files.push(DiskFile {
                on_disk: true,
                path,
                offset: entry.offset(),
                length: entry.length(),
            });
        }
        let hashes = (0..meta.piece_count())
            .map(|p| meta.piece_hash(p).copied().unwrap_or([0; 20]))
            .collect();
        Ok(Storage {
            files,
            root: canonical_root,
            handles: Mutex::new(handles),
            layout: meta.layout().clone(),
            hashes,
        })
    }

    /// Calls `f(file, offset_in_file, range_in_buffer)` for each file span of the torrent
    /// bytes `offset..offset+len`, in order. Zero-length files own no bytes and never appear.
    fn spans(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(usize, &DiskFile, u64, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = offset.saturating_add(len as u64);
        let mut i = self
            .files
            .partition_point(|d| d.offset + d.length <= offset);
        let mut pos = offset;
        while pos < end {
            let Some(d) = self.files.get(i) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("byte {pos} is past the end of the torrent"),
                ));
            };
            i += 1;
            if d.length == 0 || d.offset + d.length <= pos {
                continue;
            }
            let stop = (d.offset + d.length).min(end);
            let from = (pos - offset) as usize;
            let to = (stop - offset) as usize;
            f(i - 1, d, pos - d.offset, from..to)?;
            pos = stop;
        }
        Ok(())
    }

    /// Writes `data` at byte `begin` of piece `piece`. Pad-file bytes are skipped.
    pub fn write(&self, piece: u32, begin: u32, data: &[u8]) -> io::Result<()> {
        let offset = self.piece_offset(piece)? + u64::from(begin);
        self.spans(offset, data.len(), |i, d, at, range| {
            if !d.on_disk {
                return Ok(());
            }
            let file = self.handle(i, true)?;
            file.write_all_at(&data[range], at)
                .map_err(|e| with_path(e, &d.path))
        })
    }

    /// Reads `len` bytes at byte `begin` of piece `piece` (pad bytes read as zeros). A file
    /// shorter than the torrent says is an `UnexpectedEof` error.
    pub fn read(&self, piece: u32, begin: u32, buf: &mut [u8]) -> io::Result<()> {
        let offset = self.piece_offset(piece)? + u64::from(begin);
        let len = buf.len();
        self.spans(offset, len, |i, d, at, range| {
            if !d.on_disk {
                buf[range].fill(0);
                return Ok(());
            }
            let file = self.handle(i, false)?;
            file.read_exact_at(&mut buf[range], at)
                .map_err(|e| with_path(e, &d.path))
        })
    }

    fn piece_offset(&self, piece: u32) -> io::Result<u64> {
        self.layout.piece_offset(piece).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("piece {piece} is out of range"),
            )
        })
    }

    /// Whether piece `piece` on disk matches its SHA-1 (`Ok(false)` if a file is too short).
    pub fn verify(&self, piece: u32, buf: &mut Vec<u8>) -> io::Result<bool> {
        let len = self.layout.piece_len(piece).unwrap_or(0) as usize;
        buf.resize(len, 0);
        match self.read(piece, 0, buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        let digest: [u8; 20] = Sha1::digest(&buf[..]).into();
        Ok(self.hashes.get(piece as usize) == Some(&digest))
    }

    /// Whether every byte of the piece lies inside the files as they are now (a cheap check
    /// before hashing: a piece past a file's end cannot be there).
    fn present(&self, piece: u32, sizes: &[u64]) -> bool {
        let Some(range) = self.layout.piece_byte_range(piece) else {
            return false;
        };
        let len = (range.end - range.start) as usize;
        self.spans(range.start, len, |i, d, at, r| {
            let have = if !d.on_disk {
                u64::MAX
            } else {
                sizes.get(i).copied().unwrap_or(0)
            };
            if at + (r.end - r.start) as u64 <= have {
                Ok(())
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            }
        })
        .is_ok()
    }

    /// Hashes every piece on disk with `threads` threads; the pieces that match. Pieces whose
    /// bytes are not all in the files yet are skipped without reading.
    pub fn check_all(&self, threads: usize) -> io::Result<Bitfield> {
        let count = self.layout.piece_count();
        let sizes: Vec<u64> = self.stamps().iter().map(|s| s.len).collect();
        let next = AtomicU32::new(0);
        let results: Vec<io::Result<Vec<u32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut good = Vec::new();
                        let mut buf = Vec::new();
                        loop {
                            let piece = next.fetch_add(1, Ordering::Relaxed);
                            if piece >= count {
                                return Ok(good);
                            }
                            if self.present(piece, &sizes) && self.verify(piece, &mut buf)? {
                                good.push(piece);
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))
                })
                .collect()
        });
        let mut bits = Bitfield::new(count);
        for r in results {
            for piece in r? {
                bits.set(piece);
            }
        }
        Ok(bits)
    }

    /// Flushes written data to the disk (before a resume file claims it). Only files written
    /// since the last sync are synced; one closed in the meantime is reopened for it (on
    /// Linux, `fsync` on any descriptor flushes the file's dirty pages).
    pub fn sync(&self) -> io::Result<()> {
        let dirty: Vec<usize> = {
            let mut h = self.lock();
            let list = (0..h.dirty.len()).filter(|&i| h.dirty[i]).collect();
            h.dirty.iter_mut().for_each(|d| *d = false);
            list
        };
        for (n, &i) in dirty.iter().enumerate() {
            let result = self
                .handle(i, false)
                .and_then(|f| f.sync_data().map_err(|e| with_path(e, &self.files[i].path)));
            if let Err(e) = result {
                // Still unsynced: the next sync tries these again.
                let mut h = self.lock();
                for &j in &dirty[n..] {
                    h.dirty[j] = true;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// The open handle of file `i`, reopening it (and closing the least recently used one
    /// when [`MAX_OPEN_FILES`] are open) if needed; `write` marks the file unsynced.
    fn handle(&self, i: usize, write: bool) -> io::Result<Arc<File>> {
        {
            let mut h = self.lock();
            h.tick += 1;
            let tick = h.tick;
            if write {
                h.dirty[i] = true;
            }
            if let Some((file, used)) = h.open[i].as_mut() {
                *used = tick;
                return Ok(file.clone());
            }
        }
        // Open outside the lock: other threads' I/O goes on meanwhile.
        let path = &self.files[i].path;
        let file = Arc::new(open_inside(&self.root, path, false).map_err(|e| match e {
            StorageError::Create { path, source } => with_path(source, &path),
            StorageError::Outside(path) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} now leads outside the output directory; refusing to use it",
                    path.display()
                ),
            ),
        })?);
        let mut h = self.lock();
        h.tick += 1;
        let tick = h.tick;
        if let Some((existing, used)) = h.open[i].as_mut() {
            // Another thread opened it first; use that one.
            *used = tick;
            return Ok(existing.clone());
        }
        // One scan on a reopen (a syscall anyway): how many are open, and the oldest.
        let open = h
            .open
            .iter()
            .enumerate()
            .filter_map(|(j, slot)| slot.as_ref().map(|(_, used)| (*used, j)));
        let (count, oldest) = open.fold((0, None), |(n, old): (usize, Option<(u64, usize)>), e| {
            (n + 1, Some(old.map_or(e, |o| o.min(e))))
        });
        if count >= MAX_OPEN_FILES {
            if let Some((_, j)) = oldest {
                // Closed when the last thread using it drops its clone.
                h.open[j] = None;
            }
        }
        h.open[i] = Some((file.clone(), tick));
        Ok(file)
    }

    /// The handle table; a thread that panicked while holding it left nothing half-updated
    /// that matters (at worst a stale LRU tick), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Handles> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Size and modification time of every file, in torrent order (zeros for pad files).
    pub fn stamps(&self) -> Vec<FileStamp> {
        self.files
            .iter()
            .map(|d| {
                let meta = d.on_disk.then(|| std::fs::metadata(&d.path).ok()).flatten();
                match meta {
                    Some(m) => FileStamp {
                        len: m.len(),
                        mtime_ns: m
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_nanos() as u64),
                    },
                    None => FileStamp {
                        len: 0,
                        mtime_ns: 0,
                    },
                }
            })
            .collect()
    }
}

impl Handles {
    /// Adds the next file, open or not.
    fn push(&mut self, file: Option<Arc<File>>) {
        self.open.push(file.map(|f| (f, 0)));
        self.dirty.push(false);
    }
}

/// Opens `path` for reading and writing (creating it if `create`), after checking that
/// neither its folder nor the file itself is a symlink leading out of `root` (canonical).
/// A dangling symlink is refused too: where it leads cannot be checked.
fn open_inside(root: &Path, path: &Path, create: bool) -> Result<File, StorageError> {
    if let Some(parent) = path.parent() {
        let real = parent
            .canonicalize()
            .map_err(|source| StorageError::Create {
                path: parent.to_path_buf(),
                source,
            })?;
        if !real.starts_with(root) {
            return Err(StorageError::Outside(path.to_path_buf()));
        }
    }
    // Checked before opening, which would follow the link and create its target.
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
        && !path.canonicalize().is_ok_and(|real| real.starts_with(root))
    {
        return Err(StorageError::Outside(path.to_path_buf()));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|source| StorageError::Create {
            path: path.to_path_buf(),
            source,
        })
}

/// Adds the file's path to an I/O error's message.
fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_core::create::{Content, FileEntry, TorrentBuilder};
    use hive_core::piece_hash::hash_piece;

    fn multi(payload: &[u8], lens: &[u64], piece: u64) -> Metainfo {
        let files = lens
            .iter()
            .enumerate()
            .map(|(i, l)| FileEntry {
                path: vec![format!("f{i}")],
                length: *l,
            })
            .collect();
        let pieces: Vec<u8> = payload
            .chunks(piece as usize)
            .flat_map(hash_piece)
            .collect();
        let built = TorrentBuilder::new("top", Content::Directory { files }, Some(piece))
            .unwrap()
            .build(&pieces)
            .unwrap();
        Metainfo::from_bytes(&built.bytes).unwrap()
    }

    #[test]
    fn writes_map_through_the_layout_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let meta = multi(&payload, &[30_000, 0, 50_000, 20_000], 16_384);
        let s = Storage::open(dir.path(), &meta).unwrap();
        assert!(
            dir.path().join("top/f1").exists(),
            "zero-length file created"
        );
        let mut buf = Vec::new();
        assert!(!s.verify(0, &mut buf).unwrap());
        for p in 0..meta.piece_count() {
            let r = meta.layout().piece_byte_range(p).unwrap();
            s.write(p, 0, &payload[r.start as usize..r.end as usize])
                .unwrap();
            assert!(s.verify(p, &mut buf).unwrap());
        }
        let joined: Vec<u8> = (0..4)
            .flat_map(|i| std::fs::read(dir.path().join(format!("top/f{i}"))).unwrap())
            .collect();
        assert_eq!(joined, payload);
        assert!(s.check_all(2).unwrap().all());
        let mut block = vec![0; 1000];
        s.read(1, 16_000, &mut block).unwrap();
        assert_eq!(&block[..], &payload[32_384..33_384]);
    }

    #[test]
    fn symlinks_out_of_the_output_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let payload = vec![1u8; 40_000];
        let meta = multi(&payload, &[40_000], 16_384);
        let root = dir.path().join("out");
        std::fs::create_dir_all(&root).unwrap();
        // The torrent's top folder is a symlink to elsewhere.
        std::os::unix::fs::symlink(outside.path(), root.join("top")).unwrap();
        let err = Storage::open(&root, &meta).unwrap_err();
        assert!(matches!(err, StorageError::Outside(_)), "{err}");
        // The file itself is a symlink to elsewhere.
        std::fs::remove_file(root.join("top")).unwrap();
        std::fs::create_dir(root.join("top")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), root.join("top/f0")).unwrap();
        let err = Storage::open(&root, &meta).unwrap_err();
        assert!(matches!(err, StorageError::Outside(_)), "{err}");
        assert!(
            !outside.path().join("x").exists(),
            "nothing created outside"
        );
    }

    #[test]
    fn check_all_finds_only_good_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 13) as u8).collect();
        let meta = multi(&payload, &[70_000], 16_384);
        let s = Storage::open(dir.path(), &meta).unwrap();
        s.write(1, 0, &payload[16_384..32_768]).unwrap();
        s.write(3, 0, &payload[49_152..65_536]).unwrap();
        let bits = s.check_all(3).unwrap();
        assert_eq!(bits.iter_ones().collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn many_files_keep_a_bounded_number_open() {
        let dir = tempfile::tempdir().unwrap();
        let count = MAX_OPEN_FILES * 3 + 5;
        let payload: Vec<u8> = (0..count * 1000).map(|i| (i % 241) as u8).collect();
        let meta = multi(&payload, &vec![1000; count], 16_384);
        let s = Storage::open(dir.path(), &meta).unwrap();
        let open = |s: &Storage| {
            let h = s.lock();
            h.open.iter().flatten().count()
        };
        assert!(open(&s) <= MAX_OPEN_FILES);
        for p in 0..meta.piece_count() {
            let r = meta.layout().piece_byte_range(p).unwrap();
            s.write(p, 0, &payload[r.start as usize..r.end as usize])
                .unwrap();
            assert!(open(&s) <= MAX_OPEN_FILES);
        }
        // Every file was written, most through reopened handles; all of them get synced.
        assert!(s.lock().dirty.iter().all(|&d| d));
        s.sync().unwrap();
        assert!(s.lock().dirty.iter().all(|&d| !d));
        assert!(s.check_all(2).unwrap().all());
        assert_eq!(open(&s), MAX_OPEN_FILES);
        let on_disk: Vec<u8> = meta
            .files()
            .iter()
            .flat_map(|f| {
                std::fs::read(
                    f.path()
                        .iter()
                        .fold(dir.path().to_path_buf(), |p, c| p.join(c)),
                )
                .unwrap()
            })
            .collect();
        assert!(on_disk == payload, "files hold the payload in layout order");
    }

    #[test]
    fn a_symlink_planted_while_a_file_was_closed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let count = MAX_OPEN_FILES + 1;
        let payload = vec![7u8; count * 100];
        let meta = multi(&payload, &vec![100; count], 16_384);
        let s = Storage::open(dir.path(), &meta).unwrap();
        // The last file in layout order was never kept open: swap it for a link to elsewhere.
        let parts = meta.files().last().unwrap().path();
        let last = parts
            .iter()
            .fold(dir.path().to_path_buf(), |p, c| p.join(c));
        std::fs::remove_file(&last).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), &last).unwrap();
        let err = s.write(0, 0, &payload).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(
            err.to_string().contains("outside the output directory"),
            "{err}"
        );
        assert!(
            !outside.path().join("x").exists(),
            "nothing written outside"
        );
    }
}
