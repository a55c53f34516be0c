//! Cutting a fuzz input into a byte stream and the chunk sizes it arrives in.
//!
//! Layout: byte 0 gives `n = byte0 % 9` pattern bytes, the next `n` bytes are chunk sizes
//! (used in turn, cyclically; 0 is an empty read), and the rest is the stream. With no pattern,
//! or only zeros, the stream arrives whole. `byte0 / 9` is left to the target (a choice of
//! limits, say). So a seed is `[0]` followed by the stream, and the fuzzer explores chunkings
//! by mutating the first few bytes.

/// A fuzz input seen as a stream and the sizes of the reads that deliver it.
#[derive(Clone, Copy, Debug)]
pub struct Split<'a> {
    /// The bytes a socket would deliver.
    pub stream: &'a [u8],
    /// `byte0 / 9` (0..=28), for the target to choose a variant with.
    pub variant: u8,
    pattern: &'a [u8],
}

/// Most pattern bytes (so the head of the input stays small).
pub const MAX_PATTERN: usize = 8;

/// Reads the chunk pattern from the front of `data`.
pub fn split(data: &[u8]) -> Split<'_> {
    let Some((&n, rest)) = data.split_first() else {
        return Split {
            stream: &[],
            variant: 0,
            pattern: &[],
        };
    };
    let variant = n / (MAX_PATTERN as u8 + 1);
    let n = usize::from(n) % (MAX_PATTERN + 1);
    let (pattern, stream) = rest.split_at(n.min(rest.len()));
    Split {
        stream,
        variant,
        pattern,
    }
}

/// A fuzz input for [`split`]: the variant and pattern, then the stream.
pub fn join(variant: u8, pattern: &[u8], stream: &[u8]) -> Vec<u8> {
    assert!(pattern.len() <= MAX_PATTERN && variant <= 27);
    let mut out = vec![variant * (MAX_PATTERN as u8 + 1) + pattern.len() as u8];
    out.extend_from_slice(pattern);
    out.extend_from_slice(stream);
    out
}

impl<'a> Split<'a> {
    /// The stream cut as the pattern says (empty reads included).
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        if self.pattern.iter().all(|&b| b == 0) {
            return vec![self.stream];
        }
        let mut out = Vec::new();
        let mut rest = self.stream;
        for &size in self.pattern.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at(usize::from(size).min(rest.len()));
            out.push(head);
            rest = tail;
        }
        out
    }
}

/// The stream one byte per read: the hardest chunking for an incremental decoder.
pub fn bytewise(stream: &[u8]) -> Vec<&[u8]> {
    stream.chunks(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_cut_the_stream() {
        let data = join(5, &[2, 0, 3], b"abcdefgh");
        let s = split(&data);
        assert_eq!(s.stream, b"abcdefgh");
        assert_eq!(s.variant, 5);
        let chunks: Vec<&[u8]> = vec![b"ab", b"", b"cde", b"fg", b"", b"h"];
        assert_eq!(s.chunks(), chunks);
        assert_eq!(split(&join(0, &[], b"xy")).chunks(), vec![&b"xy"[..]]);
        assert_eq!(split(&join(0, &[0, 0], b"xy")).chunks(), vec![&b"xy"[..]]);
        assert!(split(&[]).stream.is_empty());
    }
}
