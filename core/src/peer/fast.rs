//! The canonical allowed-fast set (BEP 6, "Allowed Fast Set Generation").

use core::net::Ipv4Addr;

use sha1::{Digest, Sha1};

/// Upper bound on SHA-1 rounds, so that no input can loop for long. Each round yields 5
/// candidates; with `k <= piece_count` the expected rounds are far below this even when k
/// equals the piece count (coupon collector: about `n ln n / 5`).
const MAX_ROUNDS: usize = 100_000;

/// The first `k` pieces of the allowed-fast set of the peer at `ip`, exactly as BEP 6
/// specifies: `x = (ip & 0xFFFFFF00) ++ info_hash`, then repeatedly `x = SHA1(x)` and each of
/// its five big-endian 4-byte words modulo `piece_count` is added unless already present.
///
/// `k` is capped at `piece_count` (the set cannot hold more distinct pieces). BEP 6 has no
/// provision for IPv6; map an IPv4-mapped IPv6 address to IPv4 first.
pub fn allowed_fast_set(ip: Ipv4Addr, info_hash: &[u8; 20], piece_count: u32, k: u32) -> Vec<u32> {
    let k = k.min(piece_count) as usize;
    let mut set = Vec::with_capacity(k);
    if k == 0 {
        return set;
    }
    // Step (1): keep the three most significant octets, so several addresses on one /24 get
    // one set between them. Step (2): append the info hash.
    let masked = (u32::from(ip) & 0xFFFF_FF00).to_be_bytes();
    let mut x = [0u8; 24];
    for (dst, src) in x.iter_mut().zip(masked.iter().chain(info_hash.iter())) {
        *dst = *src;
    }
    let mut digest: [u8; 20] = Sha1::digest(x).into();
    for _ in 0..MAX_ROUNDS {
        for word in digest.chunks_exact(4) {
            if set.len() >= k {
                return set;
            }
            let y = word.try_into().map(u32::from_be_bytes).unwrap_or_default();
            let index = y % piece_count;
            if !set.contains(&index) {
                set.push(index);
            }
        }
        if set.len() >= k {
            break;
        }
        // Step (3): the next 20 pseudo-random bytes hash the previous 20.
        digest = Sha1::digest(digest).into();
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two example results printed in BEP 6.
    #[test]
    fn bep6_example_vectors() {
        let ip = Ipv4Addr::new(80, 4, 4, 200);
        let hash = [0xaa; 20];
        assert_eq!(
            allowed_fast_set(ip, &hash, 1313, 7),
            [1059, 431, 808, 1217, 287, 376, 1188]
        );
        assert_eq!(
            allowed_fast_set(ip, &hash, 1313, 9),
            [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]
        );
    }

    #[test]
    fn same_slash_24_same_set_and_k_plus_one_extends_k() {
        let hash = [7; 20];
        let a = allowed_fast_set(Ipv4Addr::new(10, 1, 2, 3), &hash, 500, 10);
        let b = allowed_fast_set(Ipv4Addr::new(10, 1, 2, 250), &hash, 500, 10);
        assert_eq!(a, b);
        let c = allowed_fast_set(Ipv4Addr::new(10, 1, 2, 3), &hash, 500, 11);
        assert_eq!(c.get(..10), Some(a.as_slice()));
        assert_eq!(c.len(), 11);
    }

    #[test]
    fn small_torrents_terminate() {
        let ip = Ipv4Addr::new(1, 2, 3, 4);
        assert!(allowed_fast_set(ip, &[0; 20], 0, 10).is_empty());
        assert_eq!(allowed_fast_set(ip, &[0; 20], 1, 10), [0]);
        let mut all = allowed_fast_set(ip, &[0; 20], 10, 10);
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }
}
