//! A growable array of large records in fixed chunks that never move.
//!
//! A `Vec` of 1.5 KiB connection records copies all of them into fresh pages at every
//! doubling. In a 1,000-node simulated flash crowd that growth (the copies, the page faults,
//! the allocator's search for large free pages) was about 3 % of the run, and the doubled
//! capacity kept pages resident for slots never used. Here a record stays where it was put;
//! an index costs one more load, from a short vector of chunk headers that stays in cache.

/// Records per chunk.
pub const CHUNK: usize = 16;

/// Records addressed by index, stored in chunks of [`CHUNK`] that are allocated once and never
/// moved or grown.
#[derive(Debug)]
pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new() }
    }
}

impl<T> Chunked<T> {
    /// The record at `index`, if pushed.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    /// The record at `index`, mutably, if pushed.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// Appends `value` (a new chunk when the last is full); returns its index.
    pub fn push(&mut self, value: T) -> usize {
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

    /// How many records were pushed.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{CHUNK, Chunked};

    #[test]
    fn indices_are_dense_and_records_never_move() {
        let mut c = Chunked::default();
        assert!(c.is_empty());
        let n = 3 * CHUNK + 5;
        for i in 0..n {
            assert_eq!(c.push(i * 10), i);
        }
        assert_eq!(c.len(), n);
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
