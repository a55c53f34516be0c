//! SHA-1 piece hashing (BEP 3 `pieces`): the one hashing path Hive uses for pieces, when a
//! torrent is created and when a downloaded piece is verified.
//!
//! Three shapes of the same thing:
//! - [`hash_piece`]: a whole piece that is already in one buffer.
//! - [`PieceHasher`]: one piece fed in several chunks, as it arrives (16 KiB blocks from peers)
//!   or as it is read (a piece of a multi-file torrent spans the end of one file and the start
//!   of the next). No copy into a piece-sized buffer is needed.
//! - [`PiecesBuilder`]: a whole torrent's bytes, fed as a stream of any chunking, turned into the
//!   concatenated 20-byte hashes of the `pieces` key.
//!
//! All of them are thin over the `sha1` crate, whose x86 backend picks the SHA-NI instructions at
//! run time (`cpufeatures`) and falls back to portable code; see `benches/hashing.rs`.

use sha1::{Digest, Sha1};

/// Length of one SHA-1 piece hash in bytes (BEP 3: `pieces` is a multiple of 20).
pub const HASH_LEN: usize = 20;

/// A piece's SHA-1 hash.
pub type PieceHash = [u8; HASH_LEN];

/// Misuse of [`PiecesBuilder`]: the stream did not match the announced sizes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PieceHashError {
    /// A piece length of zero cannot split anything into pieces.
    #[error("piece length must be greater than zero")]
    ZeroPieceLength,
    /// More bytes were fed than the total length announced up front.
    #[error("fed {fed} bytes but the content is only {total} bytes long")]
    TooManyBytes {
        /// Bytes fed so far, including the chunk that overflowed.
        fed: u64,
        /// The total length given to [`PiecesBuilder::new`].
        total: u64,
    },
    /// The stream ended before the announced total length.
    #[error("content ended after {fed} of {total} bytes")]
    MissingBytes {
        /// Bytes fed before `finish`.
        fed: u64,
        /// The total length given to [`PiecesBuilder::new`].
        total: u64,
    },
}

/// The SHA-1 hash of one whole piece.
pub fn hash_piece(data: &[u8]) -> PieceHash {
    Sha1::digest(data).into()
}

/// Number of pieces needed for `total_length` bytes: the last piece may be short (BEP 3).
/// Zero when `piece_length` is zero.
pub fn piece_count(total_length: u64, piece_length: u64) -> u64 {
    if piece_length == 0 {
        return 0;
    }
    total_length.div_ceil(piece_length)
}

/// Length of piece `index` of a torrent of `total_length` bytes; zero past the last piece.
pub fn piece_size(index: u64, total_length: u64, piece_length: u64) -> u64 {
    let start = index.saturating_mul(piece_length);
    total_length.saturating_sub(start).min(piece_length)
}

/// Hashes one piece fed in chunks of any size; gives the same hash as [`hash_piece`] on the
/// concatenation.
#[derive(Clone, Debug, Default)]
pub struct PieceHasher {
    sha: Sha1,
    len: u64,
}

impl PieceHasher {
    /// A hasher for a new piece.
    pub fn new() -> Self {
        PieceHasher::default()
    }

    /// Feeds the next bytes of the piece.
    pub fn update(&mut self, chunk: &[u8]) {
        self.sha.update(chunk);
        self.len = self.len.saturating_add(chunk.len() as u64);
    }

    /// Bytes fed since the piece began.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hash of everything fed.
    pub fn finish(self) -> PieceHash {
        self.sha.finalize().into()
    }

    /// The hash of everything fed; the hasher starts over for the next piece (no reallocation).
    pub fn finish_reset(&mut self) -> PieceHash {
        self.len = 0;
        self.sha.finalize_reset().into()
    }

    /// Whether the bytes fed hash to `expected` (verification of a downloaded piece).
    pub fn matches(self, expected: &PieceHash) -> bool {
        self.finish() == *expected
    }
}

/// Turns the whole content of a torrent, fed as a byte stream of known total length, into the
/// concatenated piece hashes of the `pieces` key. Pure: the caller reads the files and feeds
/// them in torrent order.
#[derive(Clone, Debug)]
pub struct PiecesBuilder {
    piece_length: u64,
    total_length: u64,
    fed: u64,
    hasher: PieceHasher,
    out: Vec<u8>,
}

/// Up-front reservation limit for the output: a caller's huge announced length must not
/// allocate before any byte arrives; past this the vector grows as pieces complete.
const MAX_PREALLOC: u64 = 1 << 20;

impl PiecesBuilder {
    /// A builder for `total_length` bytes cut into pieces of `piece_length` bytes.
    pub fn new(piece_length: u64, total_length: u64) -> Result<Self, PieceHashError> {
        if piece_length == 0 {
            return Err(PieceHashError::ZeroPieceLength);
        }
        let wanted = piece_count(total_length, piece_length).saturating_mul(HASH_LEN as u64);
        let capacity = usize::try_from(wanted.min(MAX_PREALLOC)).unwrap_or(0);
        Ok(PiecesBuilder {
            piece_length,
            total_length,
            fed: 0,
            hasher: PieceHasher::new(),
            out: Vec::with_capacity(capacity),
        })
    }

    /// Feeds the next bytes of the content; a chunk may span piece boundaries.
    pub fn update(&mut self, mut bytes: &[u8]) -> Result<(), PieceHashError> {
        let fed = self.fed.saturating_add(bytes.len() as u64);
        if fed > self.total_length {
            return Err(PieceHashError::TooManyBytes {
                fed,
                total: self.total_length,
            });
        }
        while !bytes.is_empty() {
            let room = self.piece_length.saturating_sub(self.hasher.len());
            let take = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
            let (now, rest) = bytes.split_at(take);
            self.hasher.update(now);
            self.fed += take as u64;
            bytes = rest;
            if self.hasher.len() == self.piece_length {
                let hash = self.hasher.finish_reset();
                self.out.extend_from_slice(&hash);
            }
        }
        Ok(())
    }

    /// Number of complete piece hashes so far.
    pub fn pieces_done(&self) -> u64 {
        (self.out.len() / HASH_LEN) as u64
    }

    /// Bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// The concatenated piece hashes, the last (short) piece included; fails when fewer bytes
    /// than announced were fed.
    pub fn finish(mut self) -> Result<Vec<u8>, PieceHashError> {
        if self.fed != self.total_length {
            return Err(PieceHashError::MissingBytes {
                fed: self.fed,
                total: self.total_length,
            });
        }
        if !self.hasher.is_empty() {
            let hash = self.hasher.finish_reset();
            self.out.extend_from_slice(&hash);
        }
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_vectors() {
        // FIPS 180-1 test vectors.
        assert_eq!(
            hex(&hash_piece(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&hash_piece(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        let mut h = PieceHasher::new();
        for _ in 0..1000 {
            h.update(&[b'a'; 1000]);
        }
        assert_eq!(h.len(), 1_000_000);
        assert_eq!(hex(&h.finish()), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    }

    #[test]
    fn hasher_reset_and_matches() {
        let mut h = PieceHasher::new();
        h.update(b"ab");
        h.update(b"c");
        let first = h.finish_reset();
        assert!(h.is_empty());
        assert_eq!(first, hash_piece(b"abc"));
        h.update(b"abc");
        assert!(h.clone().matches(&first));
        h.update(b"d");
        assert!(!h.matches(&first));
    }

    #[test]
    fn counts_and_sizes() {
        assert_eq!(piece_count(0, 16), 0);
        assert_eq!(piece_count(1, 16), 1);
        assert_eq!(piece_count(32, 16), 2);
        assert_eq!(piece_count(33, 16), 3);
        assert_eq!(piece_count(33, 0), 0);
        assert_eq!(piece_size(0, 33, 16), 16);
        assert_eq!(piece_size(2, 33, 16), 1);
        assert_eq!(piece_size(3, 33, 16), 0);
        assert_eq!(piece_size(u64::MAX, u64::MAX, 16), 0);
    }

    #[test]
    fn builder_checks_lengths() {
        assert_eq!(
            PiecesBuilder::new(0, 10).unwrap_err(),
            PieceHashError::ZeroPieceLength
        );
        let mut b = PiecesBuilder::new(4, 6).unwrap();
        b.update(b"abcde").unwrap();
        assert_eq!(
            b.clone().finish().unwrap_err(),
            PieceHashError::MissingBytes { fed: 5, total: 6 }
        );
        assert_eq!(
            b.update(b"fg").unwrap_err(),
            PieceHashError::TooManyBytes { fed: 7, total: 6 }
        );
        b.update(b"f").unwrap();
        assert_eq!(b.pieces_done(), 1);
        let pieces = b.finish().unwrap();
        assert_eq!(pieces, [hash_piece(b"abcd"), hash_piece(b"ef")].concat());
        // Empty content: no pieces at all.
        assert_eq!(PiecesBuilder::new(4, 0).unwrap().finish().unwrap(), b"");
    }

    /// Cuts `data` at the given (sorted, deduplicated) offsets.
    fn split_at_points<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p % (data.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut out = Vec::new();
        let mut start = 0;
        for c in cuts {
            out.push(&data[start..c]);
            start = c;
        }
        out.push(&data[start..]);
        out
    }

    proptest! {
        #[test]
        fn hasher_any_split_equals_hash_piece(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            points in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut h = PieceHasher::new();
            for chunk in split_at_points(&data, &points) {
                h.update(chunk);
            }
            prop_assert_eq!(h.len(), data.len() as u64);
            prop_assert_eq!(h.finish(), hash_piece(&data));
        }

        #[test]
        fn builder_any_split_equals_per_piece_hashes(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            points in proptest::collection::vec(any::<usize>(), 0..20),
            piece_shift in 4u32..10,
        ) {
            let piece_length = 1usize << piece_shift;
            let mut b = PiecesBuilder::new(piece_length as u64, data.len() as u64).unwrap();
            for chunk in split_at_points(&data, &points) {
                b.update(chunk).unwrap();
            }
            let expected: Vec<u8> = data.chunks(piece_length).flat_map(hash_piece).collect();
            prop_assert_eq!(b.finish().unwrap(), expected);
        }
    }
}
