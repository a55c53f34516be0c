//! The run's trace hash: every input given to a node and every output it produced (kind,
//! ids, lengths, virtual time) folded into SHA-1. Each shard of the engine keeps its own trace
//! (its events in its own order, whichever thread ran it); the run's hash is the SHA-1 of the
//! shards' digests in shard order. Two runs with the same scenario and seed give the same hash
//! on any machine and with any number of threads; the first differing event changes it.

use sha1::{Digest, Sha1};

/// Accumulates trace words; hashed in batches (one SHA-1 update per 8 KiB, not per event).
pub struct Trace {
    buf: Vec<u8>,
    sha: Sha1,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            buf: Vec::with_capacity(8192 + 64),
            sha: Sha1::new(),
        }
    }
}

impl Trace {
    /// Adds one record. Each word is written as a LEB128 varint (most are small: kinds,
    /// node and connection ids, lengths), which about halves what SHA-1 has to hash.
    #[inline]
    pub fn add(&mut self, words: &[u64]) {
        for &w in words {
            let mut w = w;
            while w >= 0x80 {
                self.buf.push((w as u8) | 0x80);
                w >>= 7;
            }
            self.buf.push(w as u8);
        }
        if self.buf.len() >= 8192 {
            self.sha.update(&self.buf);
            self.buf.clear();
        }
    }

    /// Adds a string (URLs; rare).
    pub fn add_str(&mut self, s: &str) {
        self.add(&[s.len() as u64]);
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// The SHA-1 of everything added.
    pub fn digest(&self) -> [u8; 20] {
        let mut sha = self.sha.clone();
        sha.update(&self.buf);
        sha.finalize().into()
    }

    /// The run's hash from the shards' traces, in shard order: the SHA-1 of their digests,
    /// as 16 hex digits.
    pub fn combine<'a>(parts: impl IntoIterator<Item = &'a Trace>) -> String {
        let mut sha = Sha1::new();
        for t in parts {
            sha.update(t.digest());
        }
        sha.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Trace;

    /// Words are LEB128: seven bits a byte, low first, the top bit set on all but the last.
    #[test]
    fn words_are_leb128() {
        let mut t = Trace::default();
        t.add(&[0, 127, 128, 300, u64::MAX]);
        let mut want = vec![0x00, 0x7f, 0x80, 0x01, 0xac, 0x02];
        want.extend([0xff; 9]);
        want.push(0x01);
        assert_eq!(t.buf, want);
    }
}
