//! Writing the torrent file atomically: a reader (a client watching a folder) sees either no
//! file or the whole file, never a half-written one, and an existing file is replaced only with
//! `--force`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::cli::CliError;

fn write_error(path: &Path, e: &std::io::Error) -> CliError {
    CliError::Output(format!(
        "cannot write {}: {e}; check the directory exists and you may write there",
        path.display()
    ))
}

fn exists_error(path: &Path) -> CliError {
    CliError::Output(format!(
        "{} already exists; pass --force to overwrite it",
        path.display()
    ))
}

/// Refuses early (before hashing) an output that exists without `--force`, or is a directory.
pub fn check_target(path: &Path, force: bool) -> Result<(), CliError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(CliError::Output(format!(
            "{} is a directory; give the path of the .torrent file to write",
            path.display()
        ))),
        Ok(_) if !force => Err(exists_error(path)),
        Ok(_) => Ok(()),
        Err(_) => {
            let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
            match parent.map(fs::metadata) {
                Some(Ok(m)) if !m.is_dir() => Err(CliError::Output(format!(
                    "cannot write {}: its parent is not a directory",
                    path.display()
                ))),
                Some(Err(e)) => Err(write_error(path, &e)),
                _ => Ok(()),
            }
        }
    }
}

/// The temporary file beside `target` (same directory, so the rename cannot cross devices).
fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "torrent".to_owned());
    target.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to `target` through a temporary file and a rename (or, without `--force`, a
/// hard link, which fails instead of replacing a file that appeared meanwhile).
pub fn write_atomically(target: &Path, bytes: &[u8], force: bool) -> Result<(), CliError> {
    let tmp = temp_path(target);
    let result = write_then_publish(&tmp, target, bytes, force);
    // Whatever happened, the temporary file must not stay behind.
    let _ = fs::remove_file(&tmp);
    result
}

fn write_then_publish(
    tmp: &Path,
    target: &Path,
    bytes: &[u8],
    force: bool,
) -> Result<(), CliError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| write_error(target, &e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| write_error(target, &e))?;
    drop(file);
    if force {
        fs::rename(tmp, target).map_err(|e| write_error(target, &e))?;
    } else {
        match fs::hard_link(tmp, target) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(exists_error(target)),
            // File systems without hard links (FAT, some network mounts): check, then rename.
            Err(_) => {
                if fs::symlink_metadata(target).is_ok() {
                    return Err(exists_error(target));
                }
                fs::rename(tmp, target).map_err(|e| write_error(target, &e))?;
            }
        }
    }
    // Make the new directory entry durable too (best effort: not every platform allows it).
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
