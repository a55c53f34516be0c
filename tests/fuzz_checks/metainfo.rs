//! `metainfo`: `Metainfo::from_bytes` and `from_info_bytes` on any bytes; whatever loads
//! must keep every promise of the module docs: the info hash is the SHA-1 of the raw `info`
//! bytes, the layout invariants of `metainfo/layout.rs`, the path sanitisation table (no
//! component can escape or misbehave on any OS) and the collision rules (no two files share a
//! case-folded path, no file sits where another needs a directory).

use hive_core::metainfo::{MAX_PIECE_LENGTH, MAX_PIECES, Metainfo};
use sha1::{Digest, Sha1};

/// Longest path component (bytes), as `FileEntry::path` documents.
const MAX_COMPONENT_BYTES: usize = 255;

/// Pieces whose file slices are walked: the first and last few (the work stays bounded).
const PIECES_WALKED: u32 = 8;

/// The fuzz target's body: the input as a whole `.torrent`, and as a bare info dictionary.
pub fn check(data: &[u8]) {
    if let Ok(m) = Metainfo::from_bytes(data) {
        check_loaded(&m);
        let bare = Metainfo::from_info_bytes(m.info_bytes())
            .expect("the info bytes of a loaded torrent load on their own (BEP 9)");
        check_same_info(&m, &bare);
    }
    if let Ok(m) = Metainfo::from_info_bytes(data) {
        assert_eq!(m.info_bytes(), data);
        check_loaded(&m);
    }
}

/// Everything that depends only on the info dictionary must match.
fn check_same_info(a: &Metainfo, b: &Metainfo) {
    assert_eq!(a.info_hash(), b.info_hash());
    assert_eq!(a.name(), b.name());
    assert_eq!(a.layout(), b.layout());
    assert_eq!(a.piece_hashes(), b.piece_hashes());
    assert_eq!(a.is_multi_file(), b.is_multi_file());
    assert_eq!(a.is_private(), b.is_private());
    assert_eq!(a.is_hybrid(), b.is_hybrid());
    assert!(b.trackers().is_empty() && b.web_seeds().is_empty());
}

/// The invariants of one loaded torrent.
pub fn check_loaded(m: &Metainfo) {
    let digest: [u8; 20] = Sha1::digest(m.info_bytes()).into();
    assert_eq!(
        m.info_hash().as_bytes(),
        &digest,
        "info hash is not SHA-1(info bytes)"
    );

    // Pieces (layout.rs invariants).
    let plen = m.piece_length();
    assert!(plen > 0 && plen <= MAX_PIECE_LENGTH);
    let count = m.piece_count();
    assert!(count > 0 && count <= MAX_PIECES);
    let total = m.total_length();
    assert!(total > 0);
    assert_eq!(u64::from(count), total.div_ceil(plen));
    assert_eq!(m.piece_hashes().len(), count as usize * 20);
    assert_eq!(m.piece_hash(0).map(|h| &h[..]), m.piece_hashes().get(..20));
    assert!(m.piece_hash(count - 1).is_some() && m.piece_hash(count).is_none());
    assert_eq!(m.piece_len(0), Some(plen.min(total)));
    let last = m.piece_len(count - 1).expect("last piece has a length");
    assert!(last > 0 && last <= plen);
    assert_eq!(u64::from(count - 1) * plen + last, total);
    assert_eq!(m.piece_len(count), None);

    // Files: contiguous, summing to the total.
    let files = m.files();
    assert!(!files.is_empty());
    let mut offset = 0u64;
    for f in files {
        assert_eq!(f.offset(), offset, "files are not laid end to end");
        offset = offset.checked_add(f.length()).expect("total fits u64");
        if f.symlink_target().is_some() {
            assert_eq!(f.length(), 0, "BEP 47: a symlink owns no bytes");
        }
    }
    assert_eq!(offset, total);
    let layout = m.layout();
    assert_eq!(layout.file_at_offset(total), None);
    let first_nonempty = files.iter().position(|f| f.length() > 0);
    assert_eq!(layout.file_at_offset(0), first_nonempty);

    // Piece → file slices for the first and last pieces.
    let walked = (0..count.min(PIECES_WALKED)).chain(count.saturating_sub(PIECES_WALKED)..count);
    for piece in walked {
        let mut pos = layout.piece_offset(piece).expect("piece in range");
        let mut sum = 0u64;
        for s in layout.file_slices(piece) {
            let f = &files[s.file];
            assert!(s.len > 0 && f.length() > 0, "a slice of nothing");
            assert_eq!(f.offset() + s.offset, pos, "slices are not contiguous");
            assert!(
                s.offset + s.len <= f.length(),
                "slice past the end of its file"
            );
            pos += s.len;
            sum += s.len;
        }
        assert_eq!(
            Some(sum),
            m.piece_len(piece),
            "slices do not cover piece {piece}"
        );
    }
    for (i, f) in files.iter().enumerate().take(64) {
        let range = layout.piece_range_of_file(i).expect("file in range");
        if f.length() == 0 {
            assert!(range.is_empty());
        } else {
            assert_eq!(u64::from(range.start), f.offset() / plen);
            assert_eq!(u64::from(range.end), (f.end() - 1) / plen + 1);
        }
    }

    // Paths: sanitised, rooted at the name.
    check_component(m.name());
    for f in files {
        let path = f.path();
        assert_eq!(path.first().map(String::as_str), Some(m.name()));
        if m.is_multi_file() {
            assert!(
                path.len() >= 2,
                "a multi-file path is name/..., got {path:?}"
            );
        } else {
            assert_eq!(path.len(), 1);
        }
        path.iter().for_each(|c| check_component(c));
        if let Some(target) = f.symlink_target() {
            assert_eq!(target.first().map(String::as_str), Some(m.name()));
            target.iter().for_each(|c| check_component(c));
        }
    }
    check_collisions(m);

    for url in m.trackers().iter().flatten().chain(m.web_seeds()) {
        assert!(!url.is_empty() && url.trim() == url);
        assert!(!url.chars().any(|c| c.is_control() || c == ' '), "{url:?}");
    }
    assert!(m.trackers().iter().all(|tier| !tier.is_empty()));
    assert!(m.creation_date().is_none_or(|t| t >= 0));
}

/// Every rule of the sanitisation table in `metainfo/mod.rs` that a component must satisfy.
fn check_component(c: &str) {
    assert!(!c.is_empty(), "empty path component");
    assert!(
        c.len() <= MAX_COMPONENT_BYTES,
        "component of {} bytes",
        c.len()
    );
    assert!(c != "." && c != "..", "dot component {c:?}");
    assert!(
        !c.ends_with(['.', ' ']),
        "component {c:?} ends with a dot or space (Windows drops them)"
    );
    for ch in c.chars() {
        assert!(
            !matches!(ch, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*'),
            "reserved character {ch:?} in {c:?}"
        );
        assert!(!ch.is_control(), "control character in {c:?}");
        assert!(
            !matches!(ch, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'),
            "bidi control in {c:?}"
        );
    }
    assert!(!is_windows_device_name(c), "Windows device name {c:?}");
}

/// Windows opens a device for these stems (before the first dot, trailing spaces ignored,
/// any case), with or without an extension; `COM¹`-style superscripts count too.
fn is_windows_device_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_uppercase();
    let numbered = |prefix: &str| {
        upper.strip_prefix(prefix).is_some_and(|n| {
            matches!(n, "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9")
                || matches!(n, "\u{b9}" | "\u{b2}" | "\u{b3}")
        })
    };
    matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CLOCK$" | "CONIN$" | "CONOUT$"
    ) || numbered("COM")
        || numbered("LPT")
}

/// Case-insensitively (Windows, macOS), no two non-pad files share a path and no file takes
/// the name of a directory another file needs.
fn check_collisions(m: &Metainfo) {
    let mut paths: Vec<Vec<String>> = m
        .files()
        .iter()
        .filter(|f| !f.is_pad())
        .map(|f| f.path().iter().map(|c| c.to_lowercase()).collect())
        .collect();
    paths.sort();
    for pair in paths.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_ne!(a, b, "two files share the path {a:?}");
        // Sorted order puts a directory's files right after a file of the same name.
        assert!(
            !b.starts_with(a),
            "file {a:?} is a directory of another file {b:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        for n in [
            "CON",
            "nul.txt",
            "com1.tar.gz",
            "LPT9 .x",
            "com\u{b9}",
            "Aux ",
        ] {
            assert!(is_windows_device_name(n), "{n}");
        }
        for n in ["CONSOLE", "aux_", "_CON", "COM10", "LPT"] {
            assert!(!is_windows_device_name(n), "{n}");
        }
    }
}
