//! The run's trace hash: every input given to a node and every output it produced (kind,
//! ids, lengths, virtual time) folded into one SHA-1. Two runs with the same scenario and
//! seed give the same hash on any machine; the first differing event changes it.

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
    /// Adds one record.
    #[inline]
    pub fn add(&mut self, words: &[u64]) {
        for w in words {
            self.buf.extend_from_slice(&w.to_le_bytes());
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

    /// The hash so far, as 16 hex digits (the first 8 bytes of the SHA-1).
    pub fn hex(&self) -> String {
        let mut sha = self.sha.clone();
        sha.update(&self.buf);
        sha.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
