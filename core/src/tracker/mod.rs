//! Tracker protocol codecs: HTTP announce/scrape (BEP 3, 7, 23, 48) and UDP (BEP 15).
//!
//! Pure encoders and decoders, no I/O. The caller (the announce state machine, `hive-smol`'s
//! tracker client, the simulator's test tracker) owns sockets, timers and buffers; this module
//! turns requests into bytes and bytes into typed, bounded responses.
//!
//! - [`http`]: announce and scrape URLs, bencoded announce and scrape replies.
//! - [`udp`]: every BEP 15 packet in both directions, plus the retransmit schedule.
//!
//! Both transports meet in [`AnnounceRequest`] (what we ask) and [`AnnounceResponse`] (what we
//! keep of the answer), so the announce state machine does not care which one was used.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::collections::BTreeSet;
use std::time::Duration;

pub mod http;
pub mod udp;

/// Why we are announcing (BEP 3 `event`; BEP 15 gives each a number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Event {
    /// A regular re-announce: HTTP omits `event`, UDP sends 0.
    #[default]
    None,
    /// The download just finished (never sent if we started complete).
    Completed,
    /// The first announce of a session.
    Started,
    /// We are leaving the swarm.
    Stopped,
}

impl Event {
    /// The HTTP `event` value, `None` for a regular announce (the key is then omitted; BEP 3
    /// allows `empty`, but libtorrent and Transmission omit it and so do we).
    pub fn http_value(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Completed => Some("completed"),
            Event::Started => Some("started"),
            Event::Stopped => Some("stopped"),
        }
    }

    /// The BEP 15 event number: 0 none, 1 completed, 2 started, 3 stopped.
    pub fn udp_code(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }

    /// The event for a BEP 15 event number, if it is one of the four.
    pub fn from_udp_code(code: u32) -> Option<Event> {
        match code {
            0 => Some(Event::None),
            1 => Some(Event::Completed),
            2 => Some(Event::Started),
            3 => Some(Event::Stopped),
            _ => None,
        }
    }
}

/// One announce, independent of the transport (HTTP builds a URL from it, UDP a packet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest<'a> {
    /// SHA-1 of the torrent's `info` dictionary.
    pub info_hash: [u8; 20],
    /// Our peer id.
    pub peer_id: [u8; 20],
    /// The TCP port we listen on for peers.
    pub port: u16,
    /// Bytes uploaded this session.
    pub uploaded: u64,
    /// Bytes downloaded this session.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// Why we announce.
    pub event: Event,
    /// Peers wanted; `None` lets the tracker choose (HTTP omits `numwant`, UDP sends -1).
    pub num_want: Option<u32>,
    /// Per-torrent session key (BEP 7: lets a tracker match our v4 and v6 announces).
    pub key: Option<u32>,
    /// Ask for compact peer lists (BEP 23 `compact=1`); every real client does.
    pub compact: bool,
    /// The `tracker id` the tracker gave us last time, echoed back as `trackerid`.
    pub tracker_id: Option<&'a [u8]>,
    /// Address to announce instead of the connection's source (BEP 3 `ip`). BEP 7 discourages
    /// it (it lets one host announce another), so the `ipv4=`/`ipv6=` forms are not offered.
    pub ip: Option<IpAddr>,
}

impl<'a> AnnounceRequest<'a> {
    /// A regular announce with compact peers and everything optional left out.
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20], port: u16, left: u64) -> Self {
        AnnounceRequest {
            info_hash,
            peer_id,
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event: Event::None,
            num_want: None,
            key: None,
            compact: true,
            tracker_id: None,
            ip: None,
        }
    }
}

/// Swarm counts for one torrent (BEP 48 scrape; the UDP scrape carries the same three).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    /// Seeders now in the swarm (`complete`; UDP "seeders").
    pub complete: u32,
    /// Times the torrent was completed (`downloaded`; UDP "completed").
    pub downloaded: u32,
    /// Leechers now in the swarm (`incomplete`; UDP "leechers").
    pub incomplete: u32,
}

/// What we keep of a successful announce reply, whichever transport carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Time until the next regular announce, clamped to the [`ResponseLimits`] range.
    pub interval: Duration,
    /// Earliest time before any re-announce (`min interval`), clamped like `interval`.
    pub min_interval: Option<Duration>,
    /// Opaque id to echo back as `trackerid` (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
    /// `warning message` to show the user; the reply is still valid (HTTP only).
    pub warning: Option<String>,
    /// Seeders, if the tracker said.
    pub complete: Option<u32>,
    /// Leechers, if the tracker said.
    pub incomplete: Option<u32>,
    /// Completed downloads ever, if the tracker said (HTTP `downloaded`, a common extension).
    pub downloaded: Option<u32>,
    /// Usable, de-duplicated peer addresses: `peers` then `peers6`, each in tracker order.
    pub peers: Vec<SocketAddr>,
    /// Peer entries dropped: malformed, unusable (port 0, unspecified or multicast address,
    /// host names), duplicates, a partial trailing compact entry, or beyond `max_peers`.
    pub peers_ignored: usize,
}

/// Bounds applied to tracker replies, so a hostile or broken tracker cannot make us store
/// unbounded data or announce in a tight loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Most peers kept from one reply.
    pub max_peers: usize,
    /// Floor for `interval` and `min interval`.
    pub min_interval: Duration,
    /// Ceiling for `interval` and `min interval`.
    pub max_interval: Duration,
    /// `interval` used when the reply has none or a negative one.
    pub default_interval: Duration,
    /// Largest HTTP body we parse at all.
    pub max_body: usize,
    /// Most torrents kept from one scrape reply.
    pub max_scrape_files: usize,
    /// Longest `tracker id` kept; a longer one is dropped (it is echoed in every URL).
    pub max_tracker_id: usize,
    /// Longest `failure reason` / `warning message` kept, in bytes; longer text is cut.
    pub max_message: usize,
}

impl ResponseLimits {
    /// The defaults, with the reasons:
    ///
    /// - `max_peers` 1000: honest trackers send at most ~200 (opentracker's cap; libtorrent asks
    ///   for 200, Transmission for 80), and we never hold that many connections, so 1000 loses
    ///   nothing while keeping one reply's peer list near 30 KB of `SocketAddr`s.
    /// - interval floor 60 s: an `interval` of 0 or 1 from a buggy tracker must not turn into an
    ///   announce loop (libtorrent's floor, `min_announce_interval`, is even 300 s).
    /// - interval ceiling 24 h: an absurd interval (say `i99999999999e`) must not silence a
    ///   tracker forever; trackers drop peers that have not announced for ~2 intervals anyway.
    /// - default interval 30 min: opentracker's and most public trackers' value.
    /// - `max_body` 512 KiB: a dictionary-form reply with 1000 peers is ~75 KB; decoding is
    ///   O(input), so this also bounds the transient memory of a hostile body (~10 MB).
    /// - `max_scrape_files` 1000: we scrape at most a few dozen torrents per request.
    pub const DEFAULT: ResponseLimits = ResponseLimits {
        max_peers: 1000,
        min_interval: Duration::from_secs(60),
        max_interval: Duration::from_secs(24 * 60 * 60),
        default_interval: Duration::from_secs(30 * 60),
        max_body: 512 * 1024,
        max_scrape_files: 1000,
        max_tracker_id: 256,
        max_message: 1024,
    };

    /// A tracker's interval in seconds, validated: negative means "not given" (`None`), and
    /// anything else is clamped into `[min_interval, max_interval]`.
    pub fn clamp_interval(&self, secs: i64) -> Option<Duration> {
        let secs = u64::try_from(secs).ok()?;
        let d = Duration::from_secs(secs);
        Some(d.clamp(self.min_interval, self.max_interval.max(self.min_interval)))
    }
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits::DEFAULT
    }
}

/// Which compact address layout a peer list uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressFamily {
    /// 4-byte address + 2-byte port (BEP 23 `peers`; BEP 15 over IPv4).
    V4,
    /// 16-byte address + 2-byte port (BEP 7 `peers6`; BEP 15 over IPv6).
    V6,
}

impl AddressFamily {
    /// Bytes per compact entry: 6 or 18.
    pub const fn entry_len(self) -> usize {
        match self {
            AddressFamily::V4 => 6,
            AddressFamily::V6 => 18,
        }
    }

    /// The family of an address, as a UDP tracker decides the reply layout (BEP 15: "packets
    /// from a v4 address use the v4 format"). A v4-mapped IPv6 address counts as IPv4.
    pub fn of(addr: &SocketAddr) -> AddressFamily {
        match addr.ip().to_canonical() {
            IpAddr::V4(_) => AddressFamily::V4,
            IpAddr::V6(_) => AddressFamily::V6,
        }
    }
}

/// A borrowed compact peer list (BEP 23 / BEP 7 / BEP 15), decoded lazily.
///
/// A length that is not a multiple of the entry size is not an error: the whole entries are
/// used and the partial one is ignored ([`CompactPeers::trailing_bytes`]), as libtorrent and
/// Transmission do, so a few stray bytes do not cost us every good peer in the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactPeers<'a> {
    bytes: &'a [u8],
    family: AddressFamily,
}

impl<'a> CompactPeers<'a> {
    /// A view of `bytes` as compact entries of `family`.
    pub fn new(bytes: &'a [u8], family: AddressFamily) -> Self {
        CompactPeers { bytes, family }
    }

    /// The raw bytes, partial trailing entry included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The entry layout.
    pub fn family(&self) -> AddressFamily {
        self.family
    }

    /// Number of whole entries.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.family.entry_len()
    }

    /// Whether there is no whole entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes after the last whole entry (0 for a well-formed list).
    pub fn trailing_bytes(&self) -> usize {
        self.bytes.len() % self.family.entry_len()
    }

    /// The addresses exactly as encoded (no filtering; see [`AnnounceResponse::peers`]).
    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> + 'a {
        let family = self.family;
        self.bytes
            .chunks_exact(family.entry_len())
            .filter_map(move |entry| decode_compact(entry, family))
    }
}

/// One compact entry; `None` only if `entry` has the wrong length (cannot happen from `iter`).
fn decode_compact(entry: &[u8], family: AddressFamily) -> Option<SocketAddr> {
    match family {
        AddressFamily::V4 => {
            let (ip, port) = entry.split_first_chunk::<4>()?;
            let port: [u8; 2] = port.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(*ip),
                u16::from_be_bytes(port),
            )))
        }
        AddressFamily::V6 => {
            let (ip, port) = entry.split_first_chunk::<16>()?;
            let port: [u8; 2] = port.try_into().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(*ip),
                u16::from_be_bytes(port),
                0,
                0,
            )))
        }
    }
}

/// Appends `peers` of `family` to `out` in compact form and returns how many were written.
///
/// Addresses of the other family are skipped (a v4-mapped IPv6 address is written as IPv4 in
/// the V4 layout), since `peers` and `peers6` each hold one family (BEP 7).
pub fn write_compact_peers<I>(out: &mut Vec<u8>, peers: I, family: AddressFamily) -> usize
where
    I: IntoIterator<Item = SocketAddr>,
{
    let mut written = 0;
    for peer in peers {
        match (family, peer.ip()) {
            (AddressFamily::V4, ip) => {
                let IpAddr::V4(v4) = ip.to_canonical() else {
                    continue;
                };
                out.extend_from_slice(&v4.octets());
            }
            (AddressFamily::V6, IpAddr::V6(v6)) => out.extend_from_slice(&v6.octets()),
            (AddressFamily::V6, IpAddr::V4(_)) => continue,
        }
        out.extend_from_slice(&peer.port().to_be_bytes());
        written += 1;
    }
    written
}

/// Gathers peers from one reply: filters unusable ones, de-duplicates, caps the count.
pub(crate) struct PeerCollector {
    peers: Vec<SocketAddr>,
    seen: BTreeSet<SocketAddr>,
    ignored: usize,
    max: usize,
}

impl PeerCollector {
    pub(crate) fn new(max: usize) -> Self {
        PeerCollector {
            peers: Vec::new(),
            seen: BTreeSet::new(),
            ignored: 0,
            max,
        }
    }

    /// Offers one address; IPv4-mapped IPv6 becomes IPv4 so the two spellings de-duplicate.
    pub(crate) fn offer(&mut self, addr: SocketAddr) {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if !usable(&addr) || self.peers.len() >= self.max || !self.seen.insert(addr) {
            self.ignored += 1;
            return;
        }
        self.peers.push(addr);
    }

    /// Counts entries that were dropped before they became addresses.
    pub(crate) fn ignore(&mut self, n: usize) {
        self.ignored = self.ignored.saturating_add(n);
    }

    pub(crate) fn offer_compact(&mut self, peers: CompactPeers<'_>) {
        for addr in peers.iter() {
            self.offer(addr);
        }
        if peers.trailing_bytes() != 0 {
            self.ignore(1);
        }
    }

    pub(crate) fn finish(self) -> (Vec<SocketAddr>, usize) {
        (self.peers, self.ignored)
    }
}

/// Whether we could ever connect to `addr`: port 0, the unspecified address, multicast and
/// broadcast are junk that some trackers hand out (or that a hostile one uses to aim us).
fn usable(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// Saturating conversion of a tracker count; negative counts are nonsense and become `None`.
pub(crate) fn count(n: i64) -> Option<u32> {
    if n < 0 {
        None
    } else {
        Some(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn events_map_both_ways() {
        for e in [
            Event::None,
            Event::Completed,
            Event::Started,
            Event::Stopped,
        ] {
            assert_eq!(Event::from_udp_code(e.udp_code()), Some(e));
        }
        assert_eq!(Event::from_udp_code(4), None);
        assert_eq!(Event::None.http_value(), None);
        assert_eq!(Event::Started.http_value(), Some("started"));
    }

    #[test]
    fn intervals_are_clamped() {
        let l = ResponseLimits::DEFAULT;
        assert_eq!(l.clamp_interval(-1), None);
        assert_eq!(l.clamp_interval(0), Some(Duration::from_secs(60)));
        assert_eq!(l.clamp_interval(1800), Some(Duration::from_secs(1800)));
        assert_eq!(l.clamp_interval(i64::MAX), Some(Duration::from_secs(86400)));
    }

    #[test]
    fn compact_partial_entry_is_ignored() {
        let bytes = [10, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0];
        let peers = CompactPeers::new(&bytes, AddressFamily::V4);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers.trailing_bytes(), 3);
        let addrs: Vec<_> = peers.iter().collect();
        assert_eq!(addrs, ["10.0.0.1:6881".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn collector_filters_dedupes_and_caps() {
        let mut c = PeerCollector::new(2);
        for s in [
            "1.2.3.4:1",
            "0.0.0.0:5",
            "1.2.3.4:0",
            "224.0.0.1:5",
            "255.255.255.255:5",
            "[::ffff:1.2.3.4]:1",
            "[2001:db8::1]:2",
            "5.6.7.8:3",
        ] {
            c.offer(s.parse().unwrap());
        }
        let (peers, ignored) = c.finish();
        assert_eq!(
            peers,
            [
                "1.2.3.4:1".parse().unwrap(),
                "[2001:db8::1]:2".parse().unwrap()
            ] as [SocketAddr; 2]
        );
        assert_eq!(ignored, 6);
    }

    #[test]
    fn writer_skips_other_family() {
        let addrs: Vec<SocketAddr> = ["1.2.3.4:1", "[::ffff:5.6.7.8]:2", "[2001:db8::1]:3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut v4 = Vec::new();
        assert_eq!(
            write_compact_peers(&mut v4, addrs.clone(), AddressFamily::V4),
            2
        );
        assert_eq!(v4, [1, 2, 3, 4, 0, 1, 5, 6, 7, 8, 0, 2]);
        let mut v6 = Vec::new();
        assert_eq!(write_compact_peers(&mut v6, addrs, AddressFamily::V6), 2);
        assert_eq!(v6.len(), 36);
    }

    pub(crate) fn v4_addr() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port))
    }

    pub(crate) fn v6_addr() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
    }

    proptest! {
        #[test]
        fn compact_v4_round_trip(addrs in proptest::collection::vec(v4_addr(), 0..50)) {
            let mut buf = Vec::new();
            prop_assert_eq!(write_compact_peers(&mut buf, addrs.clone(), AddressFamily::V4), addrs.len());
            let back: Vec<_> = CompactPeers::new(&buf, AddressFamily::V4).iter().collect();
            prop_assert_eq!(back, addrs);
        }

        #[test]
        fn compact_v6_round_trip(addrs in proptest::collection::vec(v6_addr(), 0..50)) {
            let mut buf = Vec::new();
            prop_assert_eq!(write_compact_peers(&mut buf, addrs.clone(), AddressFamily::V6), addrs.len());
            let peers = CompactPeers::new(&buf, AddressFamily::V6);
            prop_assert_eq!(peers.trailing_bytes(), 0);
            let back: Vec<_> = peers.iter().collect();
            prop_assert_eq!(back, addrs);
        }

        #[test]
        fn compact_any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            for family in [AddressFamily::V4, AddressFamily::V6] {
                let peers = CompactPeers::new(&bytes, family);
                prop_assert_eq!(peers.iter().count(), peers.len());
                let mut c = PeerCollector::new(1000);
                c.offer_compact(peers);
                let (kept, ignored) = c.finish();
                prop_assert_eq!(kept.len() + ignored, peers.len() + usize::from(peers.trailing_bytes() != 0));
            }
        }
    }
}
