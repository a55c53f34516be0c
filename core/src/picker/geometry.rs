//! Piece and block arithmetic of one torrent: which bytes each piece and block covers.

use super::{BLOCK_SIZE, BlockRequest, PickerError};

/// Largest accepted piece length: 256 MiB (16384 blocks). BEP 3 pieces are "almost always a
/// power of two"; real torrents stay far below this, and the bound caps per-piece block state.
pub const MAX_PIECE_LENGTH: u32 = 256 * 1024 * 1024;

/// A torrent's piece layout: `piece_count` pieces of `piece_length` bytes, the last one shorter
/// when `total_length` is not a multiple. Blocks are [`BLOCK_SIZE`] bytes, the last block of a
/// piece shorter when the piece length is not a multiple of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    piece_count: u32,
    piece_length: u32,
    total_length: u64,
    last_piece_length: u32,
}

impl Geometry {
    /// Checks that the three numbers describe one torrent (`piece_count == ceil(total / length)`).
    pub fn new(
        piece_count: u32,
        piece_length: u32,
        total_length: u64,
    ) -> Result<Self, PickerError> {
        if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
            return Err(PickerError::BadPieceLength(piece_length));
        }
        let expected = total_length.div_ceil(u64::from(piece_length));
        if total_length == 0 || expected != u64::from(piece_count) {
            return Err(PickerError::GeometryMismatch {
                piece_count,
                piece_length,
                total_length,
            });
        }
        // total > 0 and count == ceil(total / len) >= 1, so this is in 1..=piece_length.
        let before_last = u64::from(piece_count - 1) * u64::from(piece_length);
        let last_piece_length = u32::try_from(total_length - before_last).map_err(|_| {
            PickerError::GeometryMismatch {
                piece_count,
                piece_length,
                total_length,
            }
        })?;
        Ok(Geometry {
            piece_count,
            piece_length,
            total_length,
            last_piece_length,
        })
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Nominal piece length (every piece but possibly the last).
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Total bytes of the torrent.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Blocks in a full-length piece.
    pub fn blocks_per_piece(&self) -> u32 {
        self.piece_length.div_ceil(BLOCK_SIZE)
    }

    /// Byte length of `piece`, `None` out of range.
    pub fn piece_size(&self, piece: u32) -> Option<u32> {
        if piece + 1 == self.piece_count {
            Some(self.last_piece_length)
        } else if piece < self.piece_count {
            Some(self.piece_length)
        } else {
            None
        }
    }

    /// Byte offset of `piece` in the torrent, `None` out of range.
    pub fn piece_offset(&self, piece: u32) -> Option<u64> {
        (piece < self.piece_count).then(|| u64::from(piece) * u64::from(self.piece_length))
    }

    /// Number of blocks in `piece`, `None` out of range.
    pub fn block_count(&self, piece: u32) -> Option<u32> {
        self.piece_size(piece).map(|s| s.div_ceil(BLOCK_SIZE))
    }

    /// The request for block `index` of `piece`, `None` out of range.
    pub fn block(&self, piece: u32, index: u32) -> Option<BlockRequest> {
        let size = self.piece_size(piece)?;
        let offset = index.checked_mul(BLOCK_SIZE)?;
        if offset >= size {
            return None;
        }
        Some(BlockRequest {
            index: piece,
            begin: offset,
            length: (size - offset).min(BLOCK_SIZE),
        })
    }

    /// The block index of `req` if it is exactly one of this torrent's blocks (aligned offset,
    /// exact length); `None` for anything else, e.g. a malformed `piece` message from a peer.
    pub fn block_index(&self, req: &BlockRequest) -> Option<u32> {
        if req.begin % BLOCK_SIZE != 0 {
            return None;
        }
        let index = req.begin / BLOCK_SIZE;
        (self.block(req.index, index)? == *req).then_some(index)
    }

    /// The pieces overlapping bytes `offset..offset + len` of the torrent (empty for `len == 0`).
    pub fn pieces_for_bytes(&self, offset: u64, len: u64) -> core::ops::Range<u32> {
        if len == 0 || offset >= self.total_length {
            return 0..0;
        }
        let pl = u64::from(self.piece_length);
        let end = offset.saturating_add(len).min(self.total_length);
        // Both are < piece_count <= u32::MAX because offset < end <= total_length.
        let first = u32::try_from(offset / pl).unwrap_or(u32::MAX);
        let last = u32::try_from((end - 1) / pl).unwrap_or(u32::MAX);
        first..last.saturating_add(1)
    }
}
