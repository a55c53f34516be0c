//! Finding the files to put in a torrent.
//!
//! Choices, and why:
//! - The input path is resolved first (symlinks, `.`, `..`) and the torrent is named after the
//!   real file or directory, as `transmission-create` does (it calls `realpath`).
//! - Names starting with `.` are skipped at every level below the input, as
//!   `transmission-create` does: it keeps `.git`, editor swap files and `.DS_Store` out of
//!   shared content, and keeps info hashes equal. `--include-hidden` keeps them.
//! - Symbolic links are followed (the torrent holds what a reader of the tree sees), like
//!   `transmission-create`; a link to a directory that leads back to one of its own ancestors
//!   is an error, where Transmission would recurse until the path grows too long. A broken
//!   link is an error too: leaving it out silently would share less than was asked.
//! - Zero-length files are kept (Transmission drops them); see `hive_core::create`.
//! - Other file types (FIFOs, sockets, devices) are skipped with a warning: reading them would
//!   block or never end.
//! - The walk order does not matter: the core's builder sorts the files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use hive_core::create::{Content, FileEntry};

use crate::cli::CliError;

/// What the walk found.
#[derive(Debug)]
pub struct Input {
    /// The torrent's name: the real file or directory name.
    pub name: String,
    /// The resolved input path.
    pub root: PathBuf,
    /// The file or the directory's files.
    pub content: Content,
}

fn unreadable(path: &Path, e: &std::io::Error) -> CliError {
    CliError::Input(format!(
        "cannot read {}: {e}; check that it exists and that you may read it",
        path.display()
    ))
}

/// Walks `path` (a file or a directory).
pub fn walk(path: &Path, include_hidden: bool) -> Result<Input, CliError> {
    let root = fs::canonicalize(path).map_err(|e| unreadable(path, &e))?;
    let name = root
        .file_name()
        .ok_or_else(|| {
            CliError::Input(format!(
                "{} has no name to give the torrent; pick a directory below it",
                path.display()
            ))
        })?
        .to_str()
        .ok_or_else(|| not_utf8(&root))?
        .to_owned();
    let meta = fs::metadata(&root).map_err(|e| unreadable(path, &e))?;
    let content = if meta.is_file() {
        Content::SingleFile { length: meta.len() }
    } else if meta.is_dir() {
        let mut files = Vec::new();
        let mut ancestors = BTreeSet::new();
        ancestors.insert(dir_id(&meta));
        walk_dir(
            &root,
            &mut Vec::new(),
            &mut ancestors,
            include_hidden,
            &mut files,
        )?;
        Content::Directory { files }
    } else {
        return Err(CliError::Input(format!(
            "{} is neither a regular file nor a directory",
            path.display()
        )));
    };
    Ok(Input {
        name,
        root,
        content,
    })
}

fn not_utf8(path: &Path) -> CliError {
    CliError::Input(format!(
        "{}: the name is not valid UTF-8, which torrent paths must be; rename it",
        path.display()
    ))
}

/// Identifies a directory for loop detection.
#[cfg(unix)]
fn dir_id(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Without inode numbers there is no loop detection; the OS path length limit ends a loop.
#[cfg(not(unix))]
fn dir_id(_meta: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

fn walk_dir(
    dir: &Path,
    rel: &mut Vec<String>,
    ancestors: &mut BTreeSet<(u64, u64)>,
    include_hidden: bool,
    files: &mut Vec<FileEntry>,
) -> Result<(), CliError> {
    let entries = fs::read_dir(dir).map_err(|e| unreadable(dir, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| unreadable(dir, &e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| not_utf8(&path))?;
        if name.starts_with('.') && !include_hidden {
            continue;
        }
        // metadata() follows symbolic links; a broken one fails here.
        let meta = fs::metadata(&path).map_err(|e| {
            if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                CliError::Input(format!(
                    "{} is a broken symbolic link ({e}); fix or remove it",
                    path.display()
                ))
            } else {
                unreadable(&path, &e)
            }
        })?;
        rel.push(name.to_owned());
        if meta.is_dir() {
            let id = dir_id(&meta);
            if cfg!(unix) && !ancestors.insert(id) {
                return Err(CliError::Input(format!(
                    "{} is a symbolic link back to a directory that contains it; remove it or \
                     create the torrent from a directory without the loop",
                    path.display()
                )));
            }
            walk_dir(&path, rel, ancestors, include_hidden, files)?;
            ancestors.remove(&id);
        } else if meta.is_file() {
            files.push(FileEntry {
                path: rel.clone(),
                length: meta.len(),
            });
        } else {
            eprintln!(
                "hive-smol: skipping {}: not a regular file or directory",
                path.display()
            );
        }
        rel.pop();
    }
    Ok(())
}
