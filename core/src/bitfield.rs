//! An owned bitfield over a torrent's pieces, in the wire layout of BEP 3's `bitfield` message.
//!
//! BEP 3: "The first byte of the bitfield corresponds to indices 0 - 7 from high bit to low bit,
//! respectively. The next one 8-15, etc. Spare bits at the end are set to zero." The bytes are
//! kept in exactly that layout so [`Bitfield::as_bytes`] is the payload to send, and
//! [`Bitfield::from_bytes`] refuses anything a client should drop the connection for: a length
//! other than `ceil(pieces / 8)` or a spare bit set. The number of set bits is cached, so
//! [`Bitfield::count_ones`], [`Bitfield::all`] and [`Bitfield::none`] are O(1).
//!
//! Out-of-range indices never panic: [`Bitfield::get`] answers `false`, [`Bitfield::set`] and
//! [`Bitfield::clear`] change nothing and answer `false`.

use core::fmt;

/// Why a received bitfield was refused (BEP 3: drop the peer).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    /// The payload is not exactly `ceil(piece_count / 8)` bytes.
    #[error(
        "bitfield is {got} bytes but a torrent of {piece_count} pieces needs exactly {expected}"
    )]
    WrongLength {
        /// Bytes received.
        got: usize,
        /// Bytes required.
        expected: usize,
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A bit past the last piece is set.
    #[error("bitfield sets spare bits past piece {piece_count} (last byte {last_byte:#04x})")]
    SpareBitsSet {
        /// Pieces in the torrent.
        piece_count: u32,
        /// The offending last byte.
        last_byte: u8,
    },
}

/// One bit per piece, high bit of byte 0 first (BEP 3 layout), with a cached count of set bits.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

/// Bytes needed for `len` bits.
fn byte_len(len: u32) -> usize {
    // u32 -> usize is lossless on every supported target (16-bit targets are not supported).
    (len as usize).div_ceil(8)
}

/// The mask of the bit for piece `i` inside its byte.
fn mask(i: u32) -> u8 {
    0x80 >> (i % 8)
}

impl Bitfield {
    /// A bitfield of `len` pieces, all clear.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; byte_len(len)],
            len,
            ones: 0,
        }
    }

    /// A bitfield of `len` pieces, all set (spare bits stay clear).
    pub fn full(len: u32) -> Self {
        let mut bytes = vec![0xFF; byte_len(len)];
        if let Some(last) = bytes.last_mut() {
            *last = last_byte_mask(len);
        }
        Bitfield {
            bytes,
            len,
            ones: len,
        }
    }

    /// Parses a received `bitfield` payload for a torrent of `piece_count` pieces.
    ///
    /// BEP 3: clients should drop a peer whose bitfield has the wrong size or a spare bit set;
    /// both are typed errors here.
    pub fn from_bytes(bytes: &[u8], piece_count: u32) -> Result<Self, BitfieldError> {
        let expected = byte_len(piece_count);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                got: bytes.len(),
                expected,
                piece_count,
            });
        }
        if let Some(&last) = bytes.last() {
            if last & !last_byte_mask(piece_count) != 0 {
                return Err(BitfieldError::SpareBitsSet {
                    piece_count,
                    last_byte: last,
                });
            }
        }
        let ones: u32 = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len: piece_count,
            ones,
        })
    }

    /// Number of pieces (bits) covered.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True for a bitfield of zero pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether piece `i` is set; `false` when `i` is out of range.
    pub fn get(&self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        self.bytes
            .get((i / 8) as usize)
            .is_some_and(|b| b & mask(i) != 0)
    }

    /// Sets piece `i`; returns whether it changed (`false` if already set or out of range).
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        match self.bytes.get_mut((i / 8) as usize) {
            Some(b) if *b & mask(i) == 0 => {
                *b |= mask(i);
                self.ones += 1;
                true
            }
            _ => false,
        }
    }

    /// Clears piece `i`; returns whether it changed (`false` if already clear or out of range).
    pub fn clear(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        match self.bytes.get_mut((i / 8) as usize) {
            Some(b) if *b & mask(i) != 0 => {
                *b &= !mask(i);
                self.ones -= 1;
                true
            }
            _ => false,
        }
    }

    /// Number of set pieces (O(1): cached).
    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    /// Number of clear pieces.
    pub fn count_zeros(&self) -> u32 {
        self.len - self.ones
    }

    /// True when every piece is set (true for an empty bitfield).
    pub fn all(&self) -> bool {
        self.ones == self.len
    }

    /// True when no piece is set.
    pub fn none(&self) -> bool {
        self.ones == 0
    }

    /// The set piece indices in ascending order; skips clear words 64 bits at a time.
    pub fn iter_ones(&self) -> IterOnes<'_> {
        IterOnes {
            rest: &self.bytes,
            other: None,
            word: 0,
            base: 0,
            next_base: 0,
        }
    }

    /// The indices set in both `self` and `other`, ascending (up to the shorter length),
    /// a word at a time.
    pub fn iter_common<'a>(&'a self, other: &'a Bitfield) -> IterOnes<'a> {
        IterOnes {
            other: Some(&other.bytes),
            ..self.iter_ones()
        }
    }

    /// Sets every index set in `other` (up to the shorter length), a byte at a time.
    pub fn union_with(&mut self, other: &Bitfield) {
        for (mine, theirs) in self.bytes.iter_mut().zip(&other.bytes) {
            let before = mine.count_ones();
            *mine |= theirs;
            self.ones += mine.count_ones() - before;
        }
        // `other` may be longer: its bits past our length are not ours.
        if let Some(last) = self.bytes.last_mut() {
            let spare = !last_byte_mask(self.len);
            if *last & spare != 0 {
                self.ones -= (*last & spare).count_ones();
                *last &= !spare;
            }
        }
    }

    /// Whether `self` and `other` share a set index (a word at a time).
    pub fn intersects(&self, other: &Bitfield) -> bool {
        self.bytes
            .chunks(8)
            .zip(other.bytes.chunks(8))
            .any(|(a, b)| word(a) & word(b) != 0)
    }

    /// The wire payload (BEP 3 layout, spare bits zero), ready to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The bits of the last byte that belong to pieces (the rest are spare and must be zero).
fn last_byte_mask(len: u32) -> u8 {
    match len % 8 {
        0 => 0xFF,
        r => !(0xFF >> r),
    }
}

impl fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Summarise: a 100k-piece bitfield printed bit by bit helps nobody.
        write!(f, "Bitfield({}/{} set", self.ones, self.len)?;
        if self.len <= 64 {
            f.write_str(": ")?;
            for i in 0..self.len {
                f.write_str(if self.get(i) { "1" } else { "0" })?;
            }
        }
        f.write_str(")")
    }
}

/// Up to 8 bytes of a bitfield as a word, the first piece in the top bit (missing bytes 0).
fn word(bytes: &[u8]) -> u64 {
    // Whole words are all but the last: a plain load, where the byte loop below compiled to a
    // `memcpy` call per word (the picker intersects bitfields on every pick).
    if let Ok(whole) = <[u8; 8]>::try_from(bytes) {
        return u64::from_be_bytes(whole);
    }
    let mut buf = [0u8; 8];
    for (dst, src) in buf.iter_mut().zip(bytes) {
        *dst = *src;
    }
    u64::from_be_bytes(buf)
}

/// Iterator over the set indices of a [`Bitfield`], from [`Bitfield::iter_ones`] (or of
/// two, from [`Bitfield::iter_common`]).
#[derive(Clone, Debug)]
pub struct IterOnes<'a> {
    rest: &'a [u8],
    /// The other bitfield's bytes still to come, for `iter_common`.
    other: Option<&'a [u8]>,
    word: u64,
    base: u64,
    next_base: u64,
}

impl Iterator for IterOnes<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            if self.word != 0 {
                let lz = self.word.leading_zeros();
                self.word &= !((1u64 << 63) >> lz);
                // Spare bits are zero, so every hit is < len <= u32::MAX.
                return u32::try_from(self.base + u64::from(lz)).ok();
            }
            if self.rest.is_empty() {
                return None;
            }
            let take = self.rest.len().min(8);
            let (chunk, rest) = self.rest.split_at_checked(take)?;
            self.word = word(chunk);
            if let Some(other) = self.other {
                if other.is_empty() {
                    return None;
                }
                let (theirs, after) = other.split_at_checked(other.len().min(8))?;
                self.word &= word(theirs);
                self.other = Some(after);
            }
            self.base = self.next_base;
            self.next_base += 64;
            self.rest = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_high_bit_first() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0));
        assert!(b.set(9));
        assert!(!b.set(9));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count_ones(), 2);
        assert!(b.clear(0));
        assert!(!b.clear(0));
        assert_eq!(b.as_bytes(), &[0x00, 0x40]);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![9]);
    }

    #[test]
    fn out_of_range_is_harmless() {
        let mut b = Bitfield::new(3);
        assert!(!b.get(3));
        assert!(!b.set(3));
        assert!(!b.set(u32::MAX));
        assert!(!b.clear(100));
        assert_eq!(b.count_ones(), 0);
        assert_eq!(b.as_bytes(), &[0]);
    }

    #[test]
    fn from_bytes_checks_length_and_spare_bits() {
        assert_eq!(
            Bitfield::from_bytes(&[0xFF], 10),
            Err(BitfieldError::WrongLength {
                got: 1,
                expected: 2,
                piece_count: 10
            })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0xFF, 0xC0, 0x00], 10),
            Err(BitfieldError::WrongLength {
                got: 3,
                expected: 2,
                piece_count: 10
            })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0xFF, 0xE0], 10),
            Err(BitfieldError::SpareBitsSet {
                piece_count: 10,
                last_byte: 0xE0
            })
        );
        let b = Bitfield::from_bytes(&[0xFF, 0xC0], 10).unwrap();
        assert!(b.all());
        assert_eq!(b, Bitfield::full(10));
        assert_eq!(Bitfield::from_bytes(&[0xFF], 8).unwrap(), Bitfield::full(8));
        assert!(Bitfield::from_bytes(&[], 0).unwrap().all());
        assert!(Bitfield::from_bytes(&[], 0).unwrap().none());
        let msg = Bitfield::from_bytes(&[0x01], 7).unwrap_err().to_string();
        assert_eq!(
            msg,
            "bitfield sets spare bits past piece 7 (last byte 0x01)"
        );
    }

    #[test]
    fn full_and_debug() {
        let f = Bitfield::full(13);
        assert_eq!(f.as_bytes(), &[0xFF, 0xF8]);
        assert_eq!(f.count_zeros(), 0);
        assert_eq!(format!("{f:?}"), "Bitfield(13/13 set: 1111111111111)");
        assert_eq!(format!("{:?}", Bitfield::new(100)), "Bitfield(0/100 set)");
    }

    proptest! {
        #[test]
        fn iter_ones_matches_get(bits in proptest::collection::vec(any::<bool>(), 0..300)) {
            let n = bits.len() as u32;
            let mut b = Bitfield::new(n);
            for (i, on) in bits.iter().enumerate() {
                if *on { b.set(i as u32); }
            }
            let want: Vec<u32> = (0..n).filter(|&i| bits[i as usize]).collect();
            prop_assert_eq!(b.iter_ones().collect::<Vec<_>>(), want.clone());
            prop_assert_eq!(b.count_ones() as usize, want.len());
            prop_assert_eq!(b.all(), want.len() == bits.len());
            prop_assert_eq!(b.none(), want.is_empty());
            // Round trip through the wire form.
            let back = Bitfield::from_bytes(b.as_bytes(), n).unwrap();
            prop_assert_eq!(back, b);
        }

        /// `iter_common`, `intersects` and `union_with` agree with `get` on both, lengths
        /// unequal too.
        #[test]
        fn common_indices_match_get(
            a in proptest::collection::vec(any::<bool>(), 0..300),
            b in proptest::collection::vec(any::<bool>(), 0..300),
        ) {
            let build = |bits: &[bool]| {
                let mut f = Bitfield::new(bits.len() as u32);
                for (i, on) in bits.iter().enumerate() {
                    if *on { f.set(i as u32); }
                }
                f
            };
            let (x, y) = (build(&a), build(&b));
            let n = a.len().min(b.len()) as u32;
            let want: Vec<u32> = (0..n).filter(|&i| x.get(i) && y.get(i)).collect();
            prop_assert_eq!(x.iter_common(&y).collect::<Vec<_>>(), want.clone());
            prop_assert_eq!(y.iter_common(&x).collect::<Vec<_>>(), want.clone());
            prop_assert_eq!(x.intersects(&y), !want.is_empty());
            // The union: every index set in either (within our length), counted right.
            let mut u = x.clone();
            u.union_with(&y);
            let want: Vec<u32> = (0..a.len() as u32).filter(|&i| x.get(i) || y.get(i)).collect();
            prop_assert_eq!(u.iter_ones().collect::<Vec<_>>(), want.clone());
            prop_assert_eq!(u.count_ones() as usize, want.len());
            prop_assert_eq!(u.len(), x.len());
        }
    }
}
