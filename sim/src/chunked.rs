//! A growable array of large records in fixed chunks that never move: the simulator's
//! connection halves (448 bytes each).
//!
//! A doubling `Vec` copies every record into fresh pages at each growth and keeps up to half
//! its capacity resident unused; here a record stays where it was put, and an index costs one
//! more load, from a short vector of chunk headers. For the halves this cut a 1,000-node flash
//! crowd's peak memory and, in cachegrind, its last-level misses. (The core's 1.7 KiB
//! connections went the other way: in chunks their last-level read misses rose by a quarter,
//! so they stay in one `Vec`.)

/// Records per chunk.
pub(crate) const CHUNK: usize = 16;

/// Records addressed by index, stored in chunks of [`CHUNK`] that are allocated once and never
/// moved or grown.
#[derive(Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new() }
    }
}

impl<T> Chunked<T> {
    /// The record at `index`, if pushed.
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    /// The record at `index`, mutably, if pushed.
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// Appends `value` (a new chunk when the last is full); returns its index.
    pub(crate) fn push(&mut self, value: T) -> usize {
        let n = self.chunks.len();
        if let Some(last) = self.chunks.last_mut().filter(|c| c.len() < CHUNK) {
            last.push(value);
            return (n - 1) * CHUNK + last.len() - 1;
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        chunk.push(value);
        self.chunks.push(chunk);
        n * CHUNK
    }
}

#[cfg(test)]
mod tests {
    use super::{CHUNK, Chunked};

    #[test]
    fn indices_are_dense_and_records_never_move() {
        let mut c = Chunked::default();
        assert_eq!(c.get(0), None);
        let n = 3 * CHUNK + 5;
        for i in 0..n {
            assert_eq!(c.push(i * 10), i);
        }
        let first: *const usize = c.get(0).unwrap();
        for i in 0..n {
            assert_eq!(c.get(i), Some(&(i * 10)));
        }
        // Pushing more fills new chunks: the first record stays where it was.
        for i in n..4 * n {
            c.push(i);
        }
        assert!(std::ptr::eq(first, c.get(0).unwrap()));
        *c.get_mut(CHUNK).unwrap() = 7;
        assert_eq!(c.get(CHUNK), Some(&7));
        assert_eq!(c.get(4 * n), None);
        assert_eq!(c.get_mut(4 * n), None);
    }
}
