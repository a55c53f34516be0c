//! Hashing a torrent's pieces on every core.
//!
//! Workers take whole pieces from a shared counter and read them with positional reads, so no
//! file offset is shared and no piece is read twice; a piece of a multi-file torrent is read
//! from the end of one file and the start of the next. Each worker feeds the core's
//! [`PieceHasher`] from a bounded buffer (at most [`READ_CHUNK`] bytes), whatever the piece
//! length.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hive_core::piece_hash::{HASH_LEN, PieceHash, PieceHasher, piece_count, piece_size};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::CliError;

/// One file of the torrent, in torrent order.
#[derive(Debug)]
pub struct DiskFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its length when the tree was walked.
    pub length: u64,
}

/// The largest read a worker makes (and the size of its buffer).
const READ_CHUNK: u64 = 1 << 20;

/// Hashes `total` bytes spread over `files` into the concatenated piece hashes.
pub fn hash_pieces(
    files: &[DiskFile],
    piece_length: u64,
    total: u64,
    threads: usize,
    show_progress: bool,
) -> Result<Vec<u8>, CliError> {
    let count = piece_count(total, piece_length);
    // offsets[i] = where file i starts in the torrent's byte stream.
    let offsets: Vec<u64> = files
        .iter()
        .scan(0u64, |acc, f| {
            let start = *acc;
            *acc = acc.saturating_add(f.length);
            Some(start)
        })
        .collect();
    let job = Job {
        files,
        offsets: &offsets,
        piece_length,
        total,
        count,
        next: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        progress: progress_bar(total, show_progress),
    };
    let workers = u64::try_from(threads.max(1)).unwrap_or(1).min(count.max(1));
    let results: Vec<Result<Vec<(u64, PieceHash)>, CliError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(|| job.work())).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CliError::Input("a hashing thread crashed".to_owned())))
            })
            .collect()
    });
    job.progress.finish_and_clear();

    let len = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(HASH_LEN))
        .ok_or_else(|| CliError::Input("too many pieces for this machine's memory".into()))?;
    let mut pieces = vec![0u8; len];
    let mut done = 0u64;
    for r in results {
        for (index, hash) in r? {
            let slot = usize::try_from(index)
                .ok()
                .and_then(|i| i.checked_mul(HASH_LEN))
                .and_then(|start| pieces.get_mut(start..start.checked_add(HASH_LEN)?));
            if let Some(slot) = slot {
                slot.copy_from_slice(&hash);
                done += 1;
            }
        }
    }
    if done != count {
        return Err(CliError::Input(format!(
            "hashed {done} of {count} pieces; this is a bug in hive-smol"
        )));
    }
    Ok(pieces)
}

fn progress_bar(total: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "hashing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

struct Job<'a> {
    files: &'a [DiskFile],
    offsets: &'a [u64],
    piece_length: u64,
    total: u64,
    count: u64,
    next: AtomicU64,
    failed: AtomicBool,
    progress: ProgressBar,
}

/// The file a worker read last, kept open: consecutive pieces mostly hit the same file.
struct OpenFile {
    index: usize,
    file: File,
}

impl Job<'_> {
    fn work(&self) -> Result<Vec<(u64, PieceHash)>, CliError> {
        let mut out = Vec::new();
        let buf_len = usize::try_from(READ_CHUNK.min(self.piece_length)).unwrap_or(1 << 20);
        let mut buf = vec![0u8; buf_len];
        let mut open: Option<OpenFile> = None;
        let mut hasher = PieceHasher::new();
        loop {
            if self.failed.load(Ordering::Relaxed) {
                break;
            }
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            if index >= self.count {
                break;
            }
            match self.hash_one(index, &mut buf, &mut open, &mut hasher) {
                Ok(hash) => out.push((index, hash)),
                Err(e) => {
                    self.failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn hash_one(
        &self,
        index: u64,
        buf: &mut [u8],
        open: &mut Option<OpenFile>,
        hasher: &mut PieceHasher,
    ) -> Result<PieceHash, CliError> {
        let mut pos = index * self.piece_length;
        let end = pos + piece_size(index, self.total, self.piece_length);
        // The first file that ends after `pos` (zero-length files end where they start).
        let mut fi = self
            .offsets
            .partition_point(|&start| start <= pos)
            .saturating_sub(1);
        while pos < end {
            let (Some(file), Some(&start)) = (self.files.get(fi), self.offsets.get(fi)) else {
                return Err(CliError::Input(format!(
                    "piece {index} runs past the last file; this is a bug in hive-smol"
                )));
            };
            let file_end = start + file.length;
            if pos >= file_end {
                fi += 1;
                continue;
            }
            let handle = match open {
                Some(o) if o.index == fi => &o.file,
                _ => {
                    &open
                        .insert(OpenFile {
                            index: fi,
                            file: open_checked(file)?,
                        })
                        .file
                }
            };
            let want = (end.min(file_end) - pos).min(buf.len() as u64);
            let chunk = buf
                .get_mut(..usize::try_from(want).unwrap_or(buf.len()))
                .unwrap_or_default();
            read_at(handle, chunk, pos - start).map_err(|e| read_error(&file.path, file, &e))?;
            hasher.update(chunk);
            self.progress.inc(want);
            pos += want;
        }
        Ok(hasher.finish_reset())
    }
}

/// Opens a file and checks it still has the length the walk saw.
fn open_checked(file: &DiskFile) -> Result<File, CliError> {
    let f = File::open(&file.path).map_err(|e| {
        CliError::Input(format!(
            "cannot open {}: {e}; check that you may read it",
            file.path.display()
        ))
    })?;
    let now = f.metadata().map(|m| m.len()).unwrap_or(file.length);
    if now != file.length {
        return Err(changed(&file.path, file.length, now));
    }
    Ok(f)
}

fn changed(path: &Path, was: u64, now: u64) -> CliError {
    CliError::Input(format!(
        "{} changed size while the torrent was being made ({was} -> {now} bytes); run again \
         when nothing is writing to it",
        path.display()
    ))
}

fn read_error(path: &Path, file: &DiskFile, e: &std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        let now = std::fs::metadata(path).map_or(0, |m| m.len());
        return changed(path, file.length, now);
    }
    CliError::Input(format!("cannot read {}: {e}", path.display()))
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
