//! Magnet links (BEP 9): parse `magnet:?xt=urn:btih:...` and write a canonical one back.
//!
//! Parsing decisions, where BEP 9 is silent:
//! - `xt`: the first `urn:btih:` topic gives the v1 info hash, 40 hex or 32 base32 characters
//!   (RFC 4648 alphabet, case-insensitive). A second, *different* btih is an error (which
//!   torrent would we fetch?); a repeat of the same one is fine. Other urns (`urn:sha1:`,
//!   `urn:ed2k:`...) are ignored. A link with only `urn:btmh:` (BEP 52, v2) is refused with an
//!   error that says so; a hybrid link (btih and btmh) is used through its btih.
//! - Values are percent-decoded; a `%` not followed by two hex digits is kept literally (as
//!   browsers do). `+` means a space in `dn` only: a URL cannot hold a literal space, so in
//!   `tr`, `ws` and `x.pe` a `+` is kept as a `+` (trackers put it in passkeys).
//! - `tr` and `ws` keep their order, lose exact duplicates and empty values. The first non-empty
//!   `dn` wins.
//! - `x.pe` becomes a [`PeerAddress`]: an IP socket address (IPv6 in brackets) or a host name
//!   and port, which the I/O layer resolves. Malformed entries (no port, port 0, bare IPv6) are
//!   skipped rather than failing the whole link: they are hints, the info hash is what matters.
//! - Parameter names are matched case-insensitively; unknown ones are ignored. Input longer
//!   than [`MAX_MAGNET_LEN`] is refused, which bounds every list in the result.

use core::net::SocketAddr;
use std::fmt;
use std::str::FromStr;

use crate::metainfo::InfoHash;
use crate::tracker::http::percent_encode;

/// Longest magnet link accepted (links with a hundred trackers are ~10 KB).
pub const MAX_MAGNET_LEN: usize = 64 * 1024;

/// Why a magnet link cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// The text does not start with `magnet:?`.
    #[error("not a magnet link: it must start with 'magnet:?'")]
    NotMagnet,
    /// The link is longer than [`MAX_MAGNET_LEN`].
    #[error("magnet link is {0} bytes, longer than the 65536 accepted")]
    TooLong(usize),
    /// No `xt=urn:btih:` parameter.
    #[error("magnet link has no 'xt=urn:btih:' info hash")]
    MissingInfoHash,
    /// Only a BEP 52 (v2) info hash.
    #[error(
        "magnet link has only a v2 info hash ('urn:btmh', BEP 52); Hive needs a v1 'urn:btih' hash"
    )]
    V2Only,
    /// A btih that is neither 40 hex nor 32 base32 characters.
    #[error("magnet info hash '{0}' is neither 40 hex nor 32 base32 characters")]
    BadInfoHash(String),
    /// Two different v1 info hashes.
    #[error("magnet link names two different v1 info hashes")]
    ConflictingInfoHashes,
}

/// A peer address from `x.pe`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerAddress {
    /// An IP literal and port (`1.2.3.4:6881`, `[2001:db8::1]:6881`).
    Socket(SocketAddr),
    /// A host name and port, to be resolved by the I/O layer.
    Host {
        /// The host name as written.
        name: String,
        /// The port (never 0).
        port: u16,
    },
}

impl PeerAddress {
    /// Parses `host:port`, `ipv4:port` or `[ipv6]:port` (BEP 9); `None` if malformed or port 0.
    pub fn parse(s: &str) -> Option<PeerAddress> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return (addr.port() != 0).then_some(PeerAddress::Socket(addr));
        }
        let (name, port) = s.rsplit_once(':')?;
        // Digits only: `u16::from_str` also takes a leading `+`, and `1.2.3.4:+80` would then
        // become a host named `1.2.3.4`, a second spelling of the socket address `1.2.3.4:80`
        // (found by fuzzing: the canonical link parsed back differently).
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        // An IPv4 literal is never a host name, however the port was spelled (`0080`).
        if let Ok(ip) = name.parse::<core::net::Ipv4Addr>() {
            return Some(PeerAddress::Socket(SocketAddr::from((ip, port))));
        }
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        valid.then(|| PeerAddress::Host {
            name: name.to_owned(),
            port,
        })
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddress::Socket(addr) => write!(f, "{addr}"),
            PeerAddress::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// A parsed magnet link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// The v1 info hash.
    pub info_hash: InfoHash,
    /// `dn`: a name to show until the metadata arrives.
    pub display_name: Option<String>,
    /// `tr`: tracker URLs, in link order, without duplicates.
    pub trackers: Vec<String>,
    /// `ws`: web seed URLs (BEP 19), in link order, without duplicates.
    pub web_seeds: Vec<String>,
    /// `x.pe`: peers to contact directly, in link order, without duplicates.
    pub peers: Vec<PeerAddress>,
}

impl Magnet {
    /// A magnet with only an info hash.
    pub fn new(info_hash: InfoHash) -> Self {
        Magnet {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// Parses a magnet link (see the module notes for the decisions taken).
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong(uri.len()));
        }
        let query = uri
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .and_then(|_| uri.get(8..))
            .ok_or(MagnetError::NotMagnet)?;
        let mut info_hash: Option<[u8; 20]> = None;
        let mut saw_v2 = false;
        let mut magnet = Magnet::new(InfoHash([0; 20]));
        for param in query.split('&') {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let is = |name: &str| key.eq_ignore_ascii_case(name);
            if is("xt") {
                let topic = percent_decode(value, false);
                if let Some(hash) = strip_prefix_ci(&topic, "urn:btih:") {
                    let hash = decode_info_hash(hash)?;
                    if info_hash.is_some_and(|h| h != hash) {
                        return Err(MagnetError::ConflictingInfoHashes);
                    }
                    info_hash = Some(hash);
                } else if strip_prefix_ci(&topic, "urn:btmh:").is_some() {
                    saw_v2 = true;
                }
            } else if is("dn") {
                let name = percent_decode(value, true);
                if magnet.display_name.is_none() && !name.is_empty() {
                    magnet.display_name = Some(name);
                }
            } else if is("tr") {
                push_unique(&mut magnet.trackers, percent_decode(value, false));
            } else if is("ws") {
                push_unique(&mut magnet.web_seeds, percent_decode(value, false));
            } else if is("x.pe") {
                if let Some(peer) = PeerAddress::parse(&percent_decode(value, false)) {
                    if !magnet.peers.contains(&peer) {
                        magnet.peers.push(peer);
                    }
                }
            }
        }
        magnet.info_hash = match info_hash {
            Some(hash) => InfoHash(hash),
            None if saw_v2 => return Err(MagnetError::V2Only),
            None => return Err(MagnetError::MissingInfoHash),
        };
        Ok(magnet)
    }

    /// The info hash as 40 lowercase hex digits.
    pub fn info_hash_hex(&self) -> String {
        self.info_hash.to_string()
    }

    /// Appends the canonical link to `out`: `xt` (lowercase hex), then `dn`, every `tr`, `ws`
    /// and `x.pe`, each value percent-encoded like a tracker URL parameter (only unreserved
    /// characters literal), so that [`Magnet::parse`] gives back exactly `self`.
    pub fn write_uri(&self, out: &mut String) {
        out.push_str("magnet:?xt=urn:btih:");
        out.push_str(&self.info_hash_hex());
        if let Some(name) = &self.display_name {
            out.push_str("&dn=");
            percent_encode(out, name.as_bytes());
        }
        for (key, values) in [("&tr=", &self.trackers), ("&ws=", &self.web_seeds)] {
            for value in values {
                out.push_str(key);
                percent_encode(out, value.as_bytes());
            }
        }
        for peer in &self.peers {
            out.push_str("&x.pe=");
            percent_encode(out, peer.to_string().as_bytes());
        }
    }

    /// The canonical link as a new string (see [`Magnet::write_uri`]).
    pub fn to_uri(&self) -> String {
        let mut out = String::new();
        self.write_uri(&mut out);
        out
    }
}

impl FromStr for Magnet {
    type Err = MagnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Magnet::parse(s)
    }
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !value.is_empty() && !list.contains(&value) {
        list.push(value);
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` (lossy UTF-8 afterwards); `+` becomes a space if `plus_is_space`.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.as_bytes();
    while let Some((&b, rest)) = bytes.split_first() {
        bytes = rest;
        match b {
            b'%' => {
                let escaped = rest
                    .split_first_chunk::<2>()
                    .and_then(|([h, l], tail)| Some((hex_value(*h)? << 4 | hex_value(*l)?, tail)));
                match escaped {
                    Some((byte, tail)) => {
                        out.push(byte);
                        bytes = tail;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A btih value: 40 hex or 32 base32 characters.
fn decode_info_hash(s: &str) -> Result<[u8; 20], MagnetError> {
    let bytes = s.as_bytes();
    let decoded = match bytes.len() {
        40 => decode_hex(bytes),
        32 => decode_base32(bytes),
        _ => None,
    };
    decoded.ok_or_else(|| MagnetError::BadInfoHash(s.chars().take(64).collect()))
}

fn decode_hex(s: &[u8]) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let [h, l] = pair else { return None };
        *byte = hex_value(*h)? << 4 | hex_value(*l)?;
    }
    Some(out)
}

/// RFC 4648 base32 (A-Z, 2-7; case-insensitive, no padding): 32 characters are exactly 160
/// bits, so there is no partial byte to worry about.
fn decode_base32(s: &[u8]) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut slots = out.iter_mut();
    let (mut acc, mut bits) = (0u16, 0u32);
    for &c in s {
        let value = match c.to_ascii_uppercase() {
            u @ b'A'..=b'Z' => u - b'A',
            d @ b'2'..=b'7' => d - b'2' + 26,
            _ => return None,
        };
        // acc holds at most 7 + 5 = 12 pending bits.
        acc = acc << 5 | u16::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *slots.next()? = (acc >> bits) as u8;
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ARCH: [u8; 20] = [
        0x2e, 0x34, 0x98, 0x9b, 0x1c, 0x60, 0xdf, 0x82, 0x1b, 0x2d, 0x04, 0x6c, 0x88, 0x4d, 0x8f,
        0x4d, 0x18, 0x58, 0xb9, 0x7a,
    ];

    #[test]
    fn hex_and_base32_agree() {
        // Base32 forms from Python's base64.b32encode.
        let hex =
            Magnet::parse("magnet:?xt=urn:btih:2E34989B1C60DF821B2D046C884D8F4D1858B97A").unwrap();
        let b32 = Magnet::parse("magnet:?xt=urn:btih:FY2JRGY4MDPYEGZNARWIQTMPJUMFROL2").unwrap();
        let lower = Magnet::parse("MAGNET:?XT=URN:BTIH:fy2jrgy4mdpyegznarwiqtmpjumfrol2").unwrap();
        assert_eq!(hex.info_hash.0, ARCH);
        assert_eq!(b32.info_hash.0, ARCH);
        assert_eq!(lower.info_hash.0, ARCH);
        let counting: [u8; 20] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            decode_base32(b"AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT"),
            Some(counting)
        );
        assert_eq!(
            hex.info_hash_hex(),
            "2e34989b1c60df821b2d046c884d8f4d1858b97a"
        );
    }

    #[test]
    fn every_parameter() {
        let m = Magnet::parse(
            "magnet:?xt=urn%3Abtih%3A2e34989b1c60df821b2d046c884d8f4d1858b97a\
             &dn=Arch+Linux%20%E2%9C%93&dn=second&tr=udp%3A%2F%2Ft1.example%3A1337%2Fannounce\
             &tr=http://t2.example/announce?pk=a+b&tr=udp%3A%2F%2Ft1.example%3A1337%2Fannounce&tr=\
             &ws=https%3A%2F%2Fmirror.example%2Farch.iso&x.pe=10.0.0.1%3A6881&x.pe=[2001:db8::1]:51413\
             &x.pe=peer.example:80&x.pe=10.0.0.1:6881&x.pe=nope&x.pe=1.2.3.4:0&x.pe=::1:80\
             &xt=urn:btmh:1220abcd&xl=123&so=0-3&&flag",
        )
        .unwrap();
        assert_eq!(m.info_hash.0, ARCH);
        assert_eq!(m.display_name.as_deref(), Some("Arch Linux ✓"));
        assert_eq!(
            m.trackers,
            [
                "udp://t1.example:1337/announce",
                "http://t2.example/announce?pk=a+b"
            ]
        );
        assert_eq!(m.web_seeds, ["https://mirror.example/arch.iso"]);
        assert_eq!(
            m.peers,
            [
                PeerAddress::Socket("10.0.0.1:6881".parse().unwrap()),
                PeerAddress::Socket("[2001:db8::1]:51413".parse().unwrap()),
                PeerAddress::Host {
                    name: "peer.example".into(),
                    port: 80
                },
            ]
        );
        insta::assert_snapshot!(m.to_uri());
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "http://example.com/?xt=urn:btih:2e34989b1c60df821b2d046c884d8f4d1858b97a",
                MagnetError::NotMagnet,
            ),
            ("magnet:", MagnetError::NotMagnet),
            ("magnet:?dn=x&tr=udp://t", MagnetError::MissingInfoHash),
            (
                "magnet:?xt=urn:sha1:YNCKHTQCWBTRNJIV4WNAE52SJUQCZO5C",
                MagnetError::MissingInfoHash,
            ),
            (
                "magnet:?xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e&dn=v2",
                MagnetError::V2Only,
            ),
            (
                "magnet:?xt=urn:btih:2e34",
                MagnetError::BadInfoHash("2e34".into()),
            ),
            (
                "magnet:?xt=urn:btih:2e34989b1c60df821b2d046c884d8f4d1858b97g",
                MagnetError::BadInfoHash("2e34989b1c60df821b2d046c884d8f4d1858b97g".into()),
            ),
            (
                "magnet:?xt=urn:btih:FY2JRGY4MDPYEGZNARWIQTMPJUMFROL1",
                MagnetError::BadInfoHash("FY2JRGY4MDPYEGZNARWIQTMPJUMFROL1".into()),
            ),
            (
                "magnet:?xt=urn:btih:2e34989b1c60df821b2d046c884d8f4d1858b97a&xt=urn:btih:0000000000000000000000000000000000000000",
                MagnetError::ConflictingInfoHashes,
            ),
        ];
        for (uri, err) in cases {
            assert_eq!(Magnet::parse(uri), Err(err), "{uri}");
        }
        assert_eq!(
            MagnetError::V2Only.to_string(),
            "magnet link has only a v2 info hash ('urn:btmh', BEP 52); Hive needs a v1 'urn:btih' hash"
        );
        let long = format!(
            "magnet:?xt=urn:btih:{}&dn={}",
            "a".repeat(40),
            "x".repeat(MAX_MAGNET_LEN)
        );
        assert!(matches!(Magnet::parse(&long), Err(MagnetError::TooLong(_))));
        // Hybrid: btih + btmh is fine, and the same btih twice (in two spellings) too.
        let hybrid = "magnet:?xt=urn:btmh:1220aa&xt=urn:btih:2e34989b1c60df821b2d046c884d8f4d1858b97a\
                      &xt=urn:btih:FY2JRGY4MDPYEGZNARWIQTMPJUMFROL2";
        assert_eq!(Magnet::parse(hybrid).unwrap().info_hash.0, ARCH);
    }

    #[test]
    fn percent_decoding_edge_cases() {
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
        assert_eq!(percent_decode("%", true), "%");
        assert_eq!(percent_decode("a+b%2B", true), "a b+");
        assert_eq!(percent_decode("%ff", false), "\u{fffd}");
        assert_eq!(percent_decode("%C3%A9", false), "é");
    }

    #[test]
    fn peer_addresses() {
        let ok = [
            "1.2.3.4:1",
            "[::1]:2",
            "host-1.example:3",
            "localhost:65535",
        ];
        for s in ok {
            assert_eq!(PeerAddress::parse(s).unwrap().to_string(), s);
        }
        // One address, one spelling: an IPv4 literal is a socket address whatever the port's
        // leading zeros.
        assert_eq!(
            PeerAddress::parse("1.2.3.4:0080"),
            Some(PeerAddress::Socket(SocketAddr::from(([1, 2, 3, 4], 80))))
        );
        for s in [
            "1.2.3.4",
            ":80",
            "::1:80",
            "host:0",
            "host:65536",
            "ho st:1",
            "[::1]",
            "a/b:1",
            "",
            "1.2.3.4:+80",
            "host:+80",
            "host:-1",
        ] {
            assert_eq!(PeerAddress::parse(s), None, "{s}");
        }
    }

    fn peer() -> impl Strategy<Value = PeerAddress> {
        prop_oneof![
            (any::<[u8; 4]>(), 1u16..)
                .prop_map(|(ip, p)| PeerAddress::Socket(SocketAddr::from((ip, p)))),
            (any::<[u16; 8]>(), 1u16..)
                .prop_map(|(ip, p)| PeerAddress::Socket(SocketAddr::from((ip, p)))),
            ("[a-z][a-z0-9.-]{0,20}", 1u16..)
                .prop_map(|(name, port)| PeerAddress::Host { name, port }),
        ]
    }

    fn unique<T: PartialEq>(items: Vec<T>) -> Vec<T> {
        let mut out = Vec::new();
        for item in items {
            if !out.contains(&item) {
                out.push(item);
            }
        }
        out
    }

    prop_compose! {
        fn magnet()(
            info_hash in any::<[u8; 20]>(),
            display_name in proptest::option::of(".{1,30}"),
            trackers in proptest::collection::vec(".{1,40}", 0..5),
            web_seeds in proptest::collection::vec(".{1,40}", 0..3),
            peers in proptest::collection::vec(peer(), 0..5),
        ) -> Magnet {
            Magnet {
                info_hash: InfoHash(info_hash),
                display_name,
                trackers: unique(trackers),
                web_seeds: unique(web_seeds),
                peers: unique(peers),
            }
        }
    }

    proptest! {
        #[test]
        fn to_uri_parse_round_trip(m in magnet()) {
            let uri = m.to_uri();
            prop_assert!(uri.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert_eq!(Magnet::parse(&uri), Ok(m));
        }

        #[test]
        fn base32_matches_a_reference_encoder(hash in any::<[u8; 20]>()) {
            // Encode bit by bit (a different algorithm from the decoder's) and decode back.
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
            let bits: Vec<u8> = hash.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
            let text: Vec<u8> = bits.chunks(5).map(|c| alphabet[c.iter().fold(0, |a, b| a << 1 | *b as usize)]).collect();
            prop_assert_eq!(decode_base32(&text), Some(hash));
            prop_assert_eq!(decode_base32(&text.to_ascii_lowercase()), Some(hash));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "magnet:\\?(xt|dn|tr|ws|x\\.pe|[a-z]{1,3})=.{0,60}(&(xt|dn|tr|x\\.pe)=.{0,60}){0,4}") {
            let _ = Magnet::parse(&s);
        }

        #[test]
        fn arbitrary_btih_never_panics(s in "[a-zA-Z0-9%+]{0,50}") {
            let _ = Magnet::parse(&format!("magnet:?xt=urn:btih:{s}"));
        }
    }
}
