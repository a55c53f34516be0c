//! Checks that need the torrent's shape, which the frame decoder does not know.

use super::{BlockRequest, WireError};

/// Bytes in a bitfield for `piece_count` pieces: one bit per piece, rounded up (BEP 3).
pub fn bitfield_len(piece_count: u32) -> usize {
    (piece_count as usize).div_ceil(8)
}

/// Checks a received bitfield: exactly `ceil(piece_count / 8)` bytes and the spare bits after
/// the last piece zero (BEP 3). libtorrent and Transmission drop peers that fail either.
pub fn validate_bitfield(bits: &[u8], piece_count: u32) -> Result<(), WireError> {
    let expected = bitfield_len(piece_count);
    if bits.len() != expected {
        return Err(WireError::BitfieldLength {
            len: bits.len(),
            expected,
            piece_count,
        });
    }
    let spare = (expected * 8 - piece_count as usize) as u32;
    let mask = 0xffu8.checked_shr(8 - spare).unwrap_or(0);
    if bits.last().is_some_and(|&last| last & mask != 0) {
        return Err(WireError::BitfieldSpareBits { piece_count });
    }
    Ok(())
}

/// Whether bit `index` is set (byte 0's high bit is piece 0); false past the end.
pub fn has_piece(bits: &[u8], index: u32) -> bool {
    bits.get((index / 8) as usize)
        .is_some_and(|byte| byte & (0x80 >> (index % 8)) != 0)
}

/// Checks a piece index from have, suggest or allowed-fast against the piece count.
pub fn validate_index(index: u32, piece_count: u32) -> Result<(), WireError> {
    if index >= piece_count {
        return Err(WireError::IndexOutOfRange { index, piece_count });
    }
    Ok(())
}

/// Checks a block (from request, cancel, reject, or a piece message via
/// [`super::Message::block`]) against its piece: length in `1..=max_block_len` and
/// `begin + length <= piece_len`. The caller checks the index first and passes that piece's
/// length (the last piece is usually shorter).
pub fn validate_block(
    block: BlockRequest,
    piece_len: u32,
    max_block_len: u32,
) -> Result<(), WireError> {
    let end = u64::from(block.begin) + u64::from(block.length);
    if block.length == 0 || block.length > max_block_len || end > u64::from(piece_len) {
        return Err(WireError::InvalidBlock {
            index: block.index,
            begin: block.begin,
            length: block.length,
            piece_len,
            max_block_len,
        });
    }
    Ok(())
}
