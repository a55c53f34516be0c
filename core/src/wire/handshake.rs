//! The 68-byte handshake (BEP 3) and its reserved extension bits (BEP 5, 6, 10).

use std::fmt;
use std::ops::{BitAnd, BitOr};

use bytes::BufMut;

use super::WireError;

/// The protocol string that follows the length byte 19 (BEP 3).
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// Bytes in a handshake: 1 + 19 + 8 reserved + 20 info hash + 20 peer id.
pub const HANDSHAKE_LEN: usize = 68;

/// Bytes up to and including the info hash: enough for a listener to find the torrent.
pub const HANDSHAKE_PREFIX_LEN: usize = 48;

/// The 8 reserved handshake bytes: extension bits, unknown bits kept as received.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// No bits set.
    pub const NONE: Reserved = Reserved([0; 8]);
    /// DHT support (BEP 5): the last bit of the last byte, `reserved[7] & 0x01`.
    pub const DHT: Reserved = Reserved([0, 0, 0, 0, 0, 0, 0, 0x01]);
    /// Fast extension (BEP 6): `reserved[7] & 0x04`; in force only if both ends set it.
    pub const FAST: Reserved = Reserved([0, 0, 0, 0, 0, 0, 0, 0x04]);
    /// Extension protocol (BEP 10): bit 20 from the right, `reserved[5] & 0x10`.
    pub const EXTENSION_PROTOCOL: Reserved = Reserved([0, 0, 0, 0, 0, 0x10, 0, 0]);
    /// Every bit this crate gives a name to.
    pub const KNOWN: Reserved = Self::DHT.union(Self::FAST).union(Self::EXTENSION_PROTOCOL);

    /// The raw bytes, as sent on the wire.
    pub const fn bytes(self) -> [u8; 8] {
        self.0
    }

    /// The bits set in either.
    pub const fn union(self, other: Reserved) -> Reserved {
        let (a, b) = (u64::from_be_bytes(self.0), u64::from_be_bytes(other.0));
        Reserved((a | b).to_be_bytes())
    }

    /// The bits set in both: what two peers agree on (BEP 6 needs both ends to set FAST).
    pub const fn intersection(self, other: Reserved) -> Reserved {
        let (a, b) = (u64::from_be_bytes(self.0), u64::from_be_bytes(other.0));
        Reserved((a & b).to_be_bytes())
    }

    /// The bits of `self` that are not in `other`.
    pub const fn difference(self, other: Reserved) -> Reserved {
        let (a, b) = (u64::from_be_bytes(self.0), u64::from_be_bytes(other.0));
        Reserved((a & !b).to_be_bytes())
    }

    /// Whether every bit of `flags` is set.
    pub const fn contains(self, flags: Reserved) -> bool {
        let (a, b) = (u64::from_be_bytes(self.0), u64::from_be_bytes(flags.0));
        a & b == b
    }

    /// Sets (`on`) or clears the bits of `flags`, leaving every other bit as it was.
    pub fn set(&mut self, flags: Reserved, on: bool) {
        *self = if on {
            self.union(flags)
        } else {
            self.difference(flags)
        };
    }

    /// BEP 5: the peer runs a DHT node and may send a port message.
    pub const fn dht(self) -> bool {
        self.contains(Self::DHT)
    }

    /// BEP 6: the peer supports have-all/none, suggest, reject and allowed-fast.
    pub const fn fast(self) -> bool {
        self.contains(Self::FAST)
    }

    /// BEP 10: the peer understands extended messages (id 20).
    pub const fn extension_protocol(self) -> bool {
        self.contains(Self::EXTENSION_PROTOCOL)
    }

    /// The bits this crate does not name (other clients' extensions), for logging.
    pub const fn unknown(self) -> Reserved {
        self.difference(Self::KNOWN)
    }
}

impl BitOr for Reserved {
    type Output = Reserved;
    fn bitor(self, rhs: Reserved) -> Reserved {
        self.union(rhs)
    }
}

impl BitAnd for Reserved {
    type Output = Reserved;
    fn bitand(self, rhs: Reserved) -> Reserved {
        self.intersection(rhs)
    }
}

impl fmt::Debug for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reserved({:016x}", u64::from_be_bytes(self.0))?;
        let names = [
            (self.dht(), "dht"),
            (self.fast(), "fast"),
            (self.extension_protocol(), "extension protocol"),
            (self.unknown() != Reserved::NONE, "unknown bits"),
        ];
        let mut sep = " [";
        for (on, name) in names {
            if on {
                write!(f, "{sep}{name}")?;
                sep = ", ";
            }
        }
        if sep == ", " {
            f.write_str("]")?;
        }
        f.write_str(")")
    }
}

/// A complete handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Extension bits.
    pub reserved: Reserved,
    /// SHA-1 of the torrent's info dictionary.
    pub info_hash: [u8; 20],
    /// The sender's peer id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// The 68 bytes on the wire.
    pub fn to_bytes(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        let parts: [&[u8]; 5] = [
            &[19],
            PROTOCOL,
            &self.reserved.0,
            &self.info_hash,
            &self.peer_id,
        ];
        let mut rest = out.as_mut_slice();
        for part in parts {
            rest.put_slice(part);
        }
        out
    }

    /// Appends the 68 bytes to `out`.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), WireError> {
        if out.remaining_mut() < HANDSHAKE_LEN {
            return Err(WireError::BufferTooSmall {
                needed: HANDSHAKE_LEN,
                available: out.remaining_mut(),
            });
        }
        out.put_slice(&self.to_bytes());
        Ok(())
    }

    /// Parses a whole handshake; `bytes` must hold at least 68 bytes, extra bytes are ignored.
    /// Returns `Ok(None)` if fewer than 68 bytes are given and they are a valid beginning.
    pub fn parse(bytes: &[u8]) -> Result<Option<Handshake>, WireError> {
        let mut decoder = HandshakeDecoder::new();
        let mut input = bytes;
        loop {
            match decoder.decode(&mut input)? {
                Some(HandshakeEvent::Complete(h)) => return Ok(Some(h)),
                Some(HandshakeEvent::InfoHash { .. }) => {}
                None => return Ok(None),
            }
        }
    }
}

/// What [`HandshakeDecoder::decode`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeEvent {
    /// The first 48 bytes arrived: a listener looks up the torrent by `info_hash` and sends its
    /// own handshake before the peer id comes (some initiators wait for it).
    InfoHash {
        /// Extension bits.
        reserved: Reserved,
        /// The torrent the peer wants.
        info_hash: [u8; 20],
    },
    /// All 68 bytes arrived.
    Complete(Handshake),
}

/// Reads a handshake from input that may arrive in pieces of any size, down to 1 byte.
///
/// Yields [`HandshakeEvent::InfoHash`] after byte 48 and [`HandshakeEvent::Complete`] after
/// byte 68, each exactly once and in that order, whatever the chunking. It never consumes past
/// byte 68: what follows in the same input belongs to the [`super::FrameDecoder`].
#[derive(Clone, Debug)]
pub struct HandshakeDecoder {
    buf: [u8; HANDSHAKE_LEN],
    filled: usize,
    prefix_reported: bool,
    failed: bool,
}

impl Default for HandshakeDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HandshakeDecoder {
    /// A decoder waiting for the first byte.
    pub const fn new() -> Self {
        HandshakeDecoder {
            buf: [0; HANDSHAKE_LEN],
            filled: 0,
            prefix_reported: false,
            failed: false,
        }
    }

    /// Consumes bytes from the front of `input` (advancing it) and reports progress.
    ///
    /// `Ok(None)`: `input` is used up (more bytes are needed), or the handshake was already
    /// complete (then `input` is left untouched). The protocol string is checked byte by byte as
    /// it arrives, so a non-BitTorrent (e.g. encrypted) stream fails at its first byte.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<HandshakeEvent>, WireError> {
        if self.failed {
            return Err(WireError::Failed);
        }
        // Stop at the prefix boundary so that InfoHash is reported before Complete even when
        // all 68 bytes arrive together.
        let stop = if self.prefix_reported {
            HANDSHAKE_LEN
        } else {
            HANDSHAKE_PREFIX_LEN
        };
        let want = stop.saturating_sub(self.filled);
        let take = want.min(input.len());
        let (head, tail) = input.split_at(take);
        let start = self.filled;
        if let Some(dst) = self.buf.get_mut(start..start + take) {
            dst.copy_from_slice(head);
        }
        *input = tail;
        self.filled += take;
        if let Err(e) = self.check_protocol(start) {
            self.failed = true;
            return Err(e);
        }
        if self.filled == HANDSHAKE_PREFIX_LEN && !self.prefix_reported {
            self.prefix_reported = true;
            return Ok(Some(HandshakeEvent::InfoHash {
                reserved: self.reserved(),
                info_hash: self.info_hash(),
            }));
        }
        if self.filled == HANDSHAKE_LEN && take > 0 {
            return Ok(Some(HandshakeEvent::Complete(Handshake {
                reserved: self.reserved(),
                info_hash: self.info_hash(),
                peer_id: self.field::<20>(48),
            })));
        }
        Ok(None)
    }

    /// Bytes of the handshake received so far (0..=68).
    pub fn received(&self) -> usize {
        self.filled
    }

    /// Whether all 68 bytes have been received.
    pub fn is_complete(&self) -> bool {
        self.filled == HANDSHAKE_LEN
    }

    /// Checks the newly received bytes of `buf[..20]` (length byte and protocol string).
    fn check_protocol(&self, from: usize) -> Result<(), WireError> {
        let expected = [19u8].iter().chain(PROTOCOL.iter());
        let received = self.buf.iter().take(self.filled);
        for (offset, (&byte, &want)) in received.zip(expected).enumerate().skip(from) {
            if byte != want {
                return Err(WireError::BadProtocol { offset, byte });
            }
        }
        Ok(())
    }

    fn field<const N: usize>(&self, at: usize) -> [u8; N] {
        self.buf
            .get(at..at + N)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }

    fn reserved(&self) -> Reserved {
        Reserved(self.field::<8>(20))
    }

    fn info_hash(&self) -> [u8; 20] {
        self.field::<20>(28)
    }
}
