//! The resume file: which pieces were verified, and the size and modification time of every
//! file at that moment. If the files are exactly as recorded, the pieces are trusted without
//! hashing; otherwise (missing, stale, damaged) the data on disk is re-hashed.
//!
//! Written atomically: a temporary file in the same folder, synced, then renamed over the old
//! one, so a crash (even `kill -9`) leaves either the old or the new file, never half of one.
//! It is bencoded (the core's codec): `{version, info_hash, pieces, files: [[len, mtime_ns]]}`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use hive_core::bencode::{self, OwnedValue};
use hive_core::bitfield::Bitfield;
use hive_core::metainfo::InfoHash;

use crate::storage::FileStamp;

const VERSION: i64 = 1;

/// Where the resume file of a torrent lives: `DIR/.hive/<info hash>.resume`.
pub fn path_for(root: &Path, info_hash: &InfoHash) -> PathBuf {
    let hex: String = info_hash
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    root.join(".hive").join(format!("{hex}.resume"))
}

/// What a resume file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The torrent.
    pub info_hash: [u8; 20],
    /// Verified pieces.
    pub pieces: Bitfield,
    /// Every file's stamp when the pieces were recorded, in torrent order.
    pub files: Vec<FileStamp>,
}

/// Why a resume file is not used (the data is then re-hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// There is none.
    Missing,
    /// It cannot be read or parsed, or is for another torrent.
    Damaged(String),
    /// The files changed since it was written.
    Stale(String),
}

impl Resume {
    /// The encoded file.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        d.insert(b"version".to_vec(), OwnedValue::Int(VERSION));
        d.insert(
            b"info_hash".to_vec(),
            OwnedValue::Bytes(self.info_hash.to_vec()),
        );
        d.insert(
            b"piece_count".to_vec(),
            OwnedValue::Int(i64::from(self.pieces.len())),
        );
        d.insert(
            b"pieces".to_vec(),
            OwnedValue::Bytes(self.pieces.as_bytes().to_vec()),
        );
        let files = self
            .files
            .iter()
            .map(|f| {
                OwnedValue::List(vec![
                    OwnedValue::Int(f.len as i64),
                    OwnedValue::Int(f.mtime_ns as i64),
                ])
            })
            .collect();
        d.insert(b"files".to_vec(), OwnedValue::List(files));
        OwnedValue::Dict(d).to_bytes()
    }

    /// Parses a resume file.
    pub fn decode(bytes: &[u8]) -> Result<Resume, String> {
        let v = bencode::decode(bytes).map_err(|e| e.to_string())?;
        let int = |k: &[u8]| v.get(k).and_then(|x| x.as_int());
        if int(b"version") != Some(VERSION) {
            return Err("unknown version".into());
        }
        let info_hash: [u8; 20] = v
            .get(b"info_hash")
            .and_then(|x| x.as_bytes())
            .and_then(|b| b.try_into().ok())
            .ok_or("no info_hash")?;
        let count = int(b"piece_count")
            .and_then(|n| u32::try_from(n).ok())
            .ok_or("no piece_count")?;
        let bits = v
            .get(b"pieces")
            .and_then(|x| x.as_bytes())
            .ok_or("no pieces")?;
        let pieces = Bitfield::from_bytes(bits, count).map_err(|e| e.to_string())?;
        let mut files = Vec::new();
        for f in v
            .get(b"files")
            .and_then(|x| x.as_list())
            .ok_or("no files")?
        {
            let pair = f.as_list().ok_or("bad file entry")?;
            let get = |i: usize| {
                pair.get(i)
                    .and_then(|x| x.as_int())
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or("bad file entry")
            };
            files.push(FileStamp {
                len: get(0)?,
                mtime_ns: get(1)?,
            });
        }
        Ok(Resume {
            info_hash,
            pieces,
            files,
        })
    }

    /// Reads the resume file at `path` and checks it against the torrent and the files as
    /// they are now: the verified pieces, or why they cannot be trusted.
    pub fn load(
        path: &Path,
        info_hash: &InfoHash,
        piece_count: u32,
        now: &[FileStamp],
    ) -> Result<Bitfield, Rejected> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Rejected::Missing),
            Err(e) => return Err(Rejected::Damaged(e.to_string())),
        };
        let r = Resume::decode(&bytes).map_err(Rejected::Damaged)?;
        if r.info_hash != *info_hash.as_bytes() || r.pieces.len() != piece_count {
            return Err(Rejected::Damaged("it is for another torrent".into()));
        }
        if r.files.len() != now.len() {
            return Err(Rejected::Damaged("it lists other files".into()));
        }
        for (i, (was, is)) in r.files.iter().zip(now).enumerate() {
            if was != is {
                return Err(Rejected::Stale(format!(
                    "file {i} changed since it was written"
                )));
            }
        }
        Ok(r.pieces)
    }

    /// Writes the file atomically (temporary file, sync, rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("resume.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&self.encode())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Resume {
        let mut pieces = Bitfield::new(11);
        pieces.set(0);
        pieces.set(10);
        Resume {
            info_hash: [7; 20],
            pieces,
            files: vec![
                FileStamp {
                    len: 5,
                    mtime_ns: 1_700_000_000_123_456_789,
                },
                FileStamp {
                    len: 0,
                    mtime_ns: 0,
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path(), &InfoHash([7; 20]));
        let r = sample();
        assert_eq!(
            Resume::load(&path, &InfoHash([7; 20]), 11, &r.files),
            Err(Rejected::Missing)
        );
        r.save(&path).unwrap();
        assert_eq!(Resume::decode(&r.encode()).unwrap(), r);
        assert_eq!(
            Resume::load(&path, &InfoHash([7; 20]), 11, &r.files).unwrap(),
            r.pieces
        );
        let mut changed = r.files.clone();
        changed[0].mtime_ns += 1;
        assert!(matches!(
            Resume::load(&path, &InfoHash([7; 20]), 11, &changed),
            Err(Rejected::Stale(_))
        ));
        assert!(matches!(
            Resume::load(&path, &InfoHash([8; 20]), 11, &r.files),
            Err(Rejected::Damaged(_))
        ));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            Resume::load(&path, &InfoHash([7; 20]), 11, &r.files),
            Err(Rejected::Damaged(_))
        ));
    }
}
