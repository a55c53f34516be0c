//! The torrent's list of known peer addresses: where to connect next, and whom to leave alone.
//!
//! Addresses arrive from trackers (and later PEX, the DHT, `--peer`); the list de-duplicates
//! them by `SocketAddr` (an IPv4-mapped IPv6 address is the IPv4 one), drops unusable ones
//! (port 0, unspecified, multicast, broadcast, our own listen addresses, banned IPs) and stays
//! within [`PeerListConfig::max_peers`].
//!
//! Per address: never tried → connecting → connected → (disconnected) waiting → ..., or after a
//! failed connect, waiting with a backoff of `30 s · 2^(failures-1)` (capped at 1 h) until
//! [`PeerListConfig::max_failures`] failures, when the address is given up. A given-up address
//! is kept (not forgotten) so that a tracker handing it out again on every announce does not
//! restart its retries; it is the first to go when the list is full.
//!
//! [`PeerList::next_to_connect`] picks in a deterministic, fair order: never-tried addresses
//! first, oldest first (each source's peers get their turn in arrival order), then waiting
//! addresses by the time their backoff ends (ties: arrival order). No randomness is needed:
//! the sources already give the order.
//!
//! When the list is full, a new address evicts the worst idle entry: given up first, then the
//! most failures, then never tried before known-good, oldest first. Connecting and connected
//! entries are never evicted; if every entry is busy the new address is refused.
//!
//! Bans are by IP (every port): a misbehaving peer reconnecting from another port is still the
//! same host, as libtorrent's ip filter treats it. They live in their own bounded set, so
//! eviction never unbans anyone.

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::time::Instant;

/// Most own addresses remembered (listen addresses, external IPs learned from peers).
const MAX_OWN_ADDRESSES: usize = 16;

/// Tunables of a [`PeerList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerListConfig {
    /// Most addresses kept.
    pub max_peers: usize,
    /// Most banned IPs kept; the oldest ban is forgotten beyond it.
    pub max_banned: usize,
    /// Wait after the first failure; doubles with each further one.
    pub base_backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
    /// Failures (connect failures and failed connections) after which an address is given up.
    pub max_failures: u32,
    /// Wait before reconnecting to a peer after a normal disconnect.
    pub reconnect_delay: Duration,
}

impl PeerListConfig {
    /// The defaults: 2000 peers (libtorrent's `max_peerlist_size` is 3000, Transmission keeps
    /// a few hundred), 1000 bans, backoff 30 s doubling to 1 h, give up after 6 failures
    /// (~15 min of trying; libtorrent's `max_failcount` is 3), reconnect after 2 min.
    pub const DEFAULT: PeerListConfig = PeerListConfig {
        max_peers: 2000,
        max_banned: 1000,
        base_backoff: Duration::from_secs(30),
        max_backoff: Duration::from_secs(60 * 60),
        max_failures: 6,
        reconnect_delay: Duration::from_secs(120),
    };
}

impl Default for PeerListConfig {
    fn default() -> Self {
        PeerListConfig::DEFAULT
    }
}

/// Where an address came from (kept for statistics and future policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerSource {
    /// A tracker announce reply.
    Tracker,
    /// Peer exchange (BEP 11).
    Pex,
    /// The DHT (BEP 5).
    Dht,
    /// Given by the user (`--peer`).
    Manual,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// An orderly end (we or they closed, nothing to trade): reconnect later, no penalty.
    Normal,
    /// The connection broke (timeout, reset, handshake failure): counts as a failure.
    Failed,
}

/// What [`PeerList::add`] did with an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddResult {
    /// New entry (possibly evicting the worst idle one).
    Added,
    /// Already known; its state is unchanged.
    Known,
    /// Unusable: port 0, unspecified, multicast or broadcast.
    Unusable,
    /// One of our own addresses.
    Own,
    /// Its IP is banned.
    Banned,
    /// The list is full of connecting/connected peers.
    Full,
}

/// What [`PeerList::add_many`] did, in totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AddSummary {
    /// New entries.
    pub added: usize,
    /// Already known.
    pub known: usize,
    /// Refused (unusable, own, banned, full).
    pub refused: usize,
}

/// The state of one address, for display and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Known, never tried.
    NeverTried,
    /// Tried before; may be tried again at `until`.
    Waiting {
        /// Failures so far.
        failures: u32,
        /// When it becomes a candidate.
        until: Instant,
    },
    /// Handed out by [`PeerList::next_to_connect`]; the outcome is pending.
    Connecting,
    /// Connected.
    Connected,
    /// Failed [`PeerListConfig::max_failures`] times; not tried again.
    GivenUp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle { tried: bool },
    Connecting,
    Connected,
    GivenUp,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    state: State,
    failures: u32,
    /// Waiting until then (meaningful when idle and tried).
    retry_at: Instant,
    /// Arrival order; the tie-breaker everywhere.
    seq: u64,
    source: PeerSource,
}

/// Candidate order: (0 never tried | 1 waiting, retry time, arrival, address).
type CandidateKey = (u8, Instant, u64, SocketAddr);
/// Eviction order: (0 given up | 1 failed | 2 never tried | 3 known good, fewer failures
/// last, arrival, address).
type EvictKey = (u8, u32, u64, SocketAddr);

/// The bounded list of known peer addresses of one torrent.
#[derive(Clone, Debug)]
pub struct PeerList {
    config: PeerListConfig,
    entries: BTreeMap<SocketAddr, Entry>,
    candidates: BTreeSet<CandidateKey>,
    /// `candidates.first()`, kept by `index` and `unindex`: a Session asks for the next
    /// address after every input while a torrent has a free connection slot, and the tree
    /// walk to the first key was a few cache misses each time.
    first: Option<CandidateKey>,
    evictable: BTreeSet<EvictKey>,
    banned: BTreeMap<IpAddr, u64>,
    ban_order: BTreeMap<u64, IpAddr>,
    own: Vec<SocketAddr>,
    next_seq: u64,
}

/// The one spelling of an address: IPv4-mapped IPv6 becomes IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether we could ever connect to `addr`.
fn usable(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

impl PeerList {
    /// An empty list.
    pub fn new(config: PeerListConfig) -> Self {
        PeerList {
            config,
            entries: BTreeMap::new(),
            candidates: BTreeSet::new(),
            first: None,
            evictable: BTreeSet::new(),
            banned: BTreeMap::new(),
            ban_order: BTreeMap::new(),
            own: Vec::new(),
            next_seq: 0,
        }
    }

    /// Number of known addresses (given-up ones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The state of `addr`, if known.
    pub fn state(&self, addr: SocketAddr) -> Option<PeerState> {
        let e = self.entries.get(&canonical(addr))?;
        Some(match e.state {
            State::Idle { tried: false } => PeerState::NeverTried,
            State::Idle { tried: true } => PeerState::Waiting {
                failures: e.failures,
                until: e.retry_at,
            },
            State::Connecting => PeerState::Connecting,
            State::Connected => PeerState::Connected,
            State::GivenUp => PeerState::GivenUp,
        })
    }

    /// Where `addr` came from, if known.
    pub fn source(&self, addr: SocketAddr) -> Option<PeerSource> {
        self.entries.get(&canonical(addr)).map(|e| e.source)
    }

    /// Whether `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains_key(&ip.to_canonical())
    }

    /// Marks `addr` as ours (a listen address, or our external address as a peer saw it), and
    /// forgets it if known. A listen address with an unspecified IP (`0.0.0.0:p`, `[::]:p`)
    /// also covers loopback on that port: a tracker on the same host hands us back
    /// `127.0.0.1:p`. At most 16 are kept.
    pub fn add_own_address(&mut self, addr: SocketAddr) {
        let addr = canonical(addr);
        if self.own.len() < MAX_OWN_ADDRESSES && !self.own.contains(&addr) {
            self.own.push(addr);
        }
        let mine: Vec<SocketAddr> = self
            .entries
            .keys()
            .filter(|a| self.is_own(a))
            .copied()
            .collect();
        for a in mine {
            self.remove(a);
        }
    }

    fn is_own(&self, addr: &SocketAddr) -> bool {
        self.own.iter().any(|own| {
            own == addr
                || (own.ip().is_unspecified()
                    && own.port() == addr.port()
                    && addr.ip().is_loopback()
                    && own.is_ipv4() == addr.is_ipv4())
        })
    }

    /// Adds one address (see [`AddResult`]).
    pub fn add(&mut self, addr: SocketAddr, source: PeerSource) -> AddResult {
        let addr = canonical(addr);
        if !usable(&addr) {
            return AddResult::Unusable;
        }
        if self.is_own(&addr) {
            return AddResult::Own;
        }
        if self.banned.contains_key(&addr.ip()) {
            return AddResult::Banned;
        }
        if self.entries.contains_key(&addr) {
            return AddResult::Known;
        }
        if self.entries.len() >= self.config.max_peers {
            let Some(&(_, _, _, victim)) = self.evictable.first() else {
                return AddResult::Full;
            };
            self.remove(victim);
        }
        let entry = Entry {
            state: State::Idle { tried: false },
            failures: 0,
            retry_at: Instant::ZERO,
            seq: self.next_seq,
            source,
        };
        self.next_seq += 1;
        self.entries.insert(addr, entry);
        self.index(addr, &entry);
        AddResult::Added
    }

    /// Adds many addresses (e.g. one tracker reply) and sums up what happened.
    pub fn add_many<I>(&mut self, addrs: I, source: PeerSource) -> AddSummary
    where
        I: IntoIterator<Item = SocketAddr>,
    {
        let mut summary = AddSummary::default();
        for addr in addrs {
            match self.add(addr, source) {
                AddResult::Added => summary.added += 1,
                AddResult::Known => summary.known += 1,
                _ => summary.refused += 1,
            }
        }
        summary
    }

    /// The next address to dial, now marked connecting; `None` when no candidate is ready.
    /// Report the result with [`PeerList::connected`] or [`PeerList::connect_failed`].
    pub fn next_to_connect(&mut self, now: Instant) -> Option<SocketAddr> {
        if !self.has_candidate(now) {
            return None;
        }
        let (_, _, _, addr) = self.first?;
        self.set_state(addr, |e| e.state = State::Connecting);
        Some(addr)
    }

    /// Whether [`PeerList::next_to_connect`] would give an address now.
    pub fn has_candidate(&self, now: Instant) -> bool {
        self.first
            .is_some_and(|(class, at, _, _)| class == 0 || at <= now)
    }

    /// When a waiting address becomes a candidate; a time at or before now means a candidate
    /// is ready (call [`PeerList::next_to_connect`] when there is a free connection slot).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.first.map(|(_, at, _, _)| at)
    }

    /// Dialling `addr` failed: wait `base · 2^(failures-1)` (capped), or give it up.
    pub fn connect_failed(&mut self, addr: SocketAddr, now: Instant) {
        self.failure(canonical(addr), now, |s| s == State::Connecting);
    }

    /// A connection to `addr` is up (handshake done): its failures are forgiven. An incoming
    /// connection from a known idle address counts too. Returns whether `addr` is known.
    pub fn connected(&mut self, addr: SocketAddr) -> bool {
        let addr = canonical(addr);
        match self.entries.get(&addr).map(|e| e.state) {
            None => false,
            Some(State::Connected) => true,
            Some(_) => {
                self.set_state(addr, |e| {
                    e.state = State::Connected;
                    e.failures = 0;
                });
                true
            }
        }
    }

    /// The connection to `addr` ended; see [`DisconnectReason`].
    pub fn disconnected(&mut self, addr: SocketAddr, now: Instant, reason: DisconnectReason) {
        let addr = canonical(addr);
        let busy = |s| matches!(s, State::Connected | State::Connecting);
        match reason {
            DisconnectReason::Failed => self.failure(addr, now, busy),
            DisconnectReason::Normal => {
                if self.entries.get(&addr).is_some_and(|e| busy(e.state)) {
                    let at = now + self.config.reconnect_delay;
                    self.set_state(addr, |e| {
                        e.state = State::Idle { tried: true };
                        e.retry_at = at;
                    });
                }
            }
        }
    }

    /// Bans `addr`'s IP (every port): its entries are forgotten and it is never added again.
    /// The caller closes any connection to it.
    pub fn ban(&mut self, addr: SocketAddr) {
        let ip = canonical(addr).ip();
        let gone: Vec<SocketAddr> = self
            .entries
            .range(SocketAddr::new(ip, 0)..=SocketAddr::new(ip, u16::MAX))
            .map(|(a, _)| *a)
            .collect();
        for a in gone {
            self.remove(a);
        }
        if self.banned.contains_key(&ip) || self.config.max_banned == 0 {
            return;
        }
        while self.banned.len() >= self.config.max_banned {
            let Some((_, old)) = self.ban_order.pop_first() else {
                break;
            };
            self.banned.remove(&old);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.banned.insert(ip, seq);
        self.ban_order.insert(seq, ip);
    }

    /// Forgets `addr` (it may be added again later).
    pub fn remove(&mut self, addr: SocketAddr) {
        let addr = canonical(addr);
        if let Some(entry) = self.entries.remove(&addr) {
            self.unindex(addr, &entry);
        }
    }

    fn failure(&mut self, addr: SocketAddr, now: Instant, allowed: impl Fn(State) -> bool) {
        let Some(entry) = self.entries.get(&addr) else {
            return;
        };
        if !allowed(entry.state) {
            return;
        }
        let failures = entry.failures.saturating_add(1);
        let doublings = failures.saturating_sub(1).min(31);
        let wait = self
            .config
            .base_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.config.max_backoff);
        let give_up = failures >= self.config.max_failures;
        self.set_state(addr, |e| {
            e.failures = failures;
            if give_up {
                e.state = State::GivenUp;
            } else {
                e.state = State::Idle { tried: true };
                e.retry_at = now + wait;
            }
        });
    }

    /// Changes an entry and keeps both indices in step.
    fn set_state(&mut self, addr: SocketAddr, change: impl FnOnce(&mut Entry)) {
        let Some(entry) = self.entries.get(&addr).copied() else {
            return;
        };
        self.unindex(addr, &entry);
        let mut updated = entry;
        change(&mut updated);
        self.entries.insert(addr, updated);
        self.index(addr, &updated);
    }

    fn keys(addr: SocketAddr, e: &Entry) -> (Option<CandidateKey>, Option<EvictKey>) {
        let inverse_failures = u32::MAX - e.failures;
        match e.state {
            State::Idle { tried: false } => (
                Some((0, Instant::ZERO, e.seq, addr)),
                Some((2, inverse_failures, e.seq, addr)),
            ),
            State::Idle { tried: true } => {
                let class = if e.failures > 0 { 1 } else { 3 };
                (
                    Some((1, e.retry_at, e.seq, addr)),
                    Some((class, inverse_failures, e.seq, addr)),
                )
            }
            State::GivenUp => (None, Some((0, inverse_failures, e.seq, addr))),
            State::Connecting | State::Connected => (None, None),
        }
    }

    fn index(&mut self, addr: SocketAddr, e: &Entry) {
        let (candidate, evict) = Self::keys(addr, e);
        if let Some(k) = candidate {
            self.candidates.insert(k);
            if self.first.is_none_or(|f| k < f) {
                self.first = Some(k);
            }
        }
        if let Some(k) = evict {
            self.evictable.insert(k);
        }
    }

    fn unindex(&mut self, addr: SocketAddr, e: &Entry) {
        let (candidate, evict) = Self::keys(addr, e);
        if let Some(k) = candidate {
            self.candidates.remove(&k);
            if self.first == Some(k) {
                self.first = self.candidates.first().copied();
            }
        }
        if let Some(k) = evict {
            self.evictable.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn t(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    fn list() -> PeerList {
        PeerList::new(PeerListConfig::DEFAULT)
    }

    #[test]
    fn dedupes_and_filters() {
        let mut l = list();
        assert_eq!(l.add(a("1.2.3.4:1"), PeerSource::Tracker), AddResult::Added);
        assert_eq!(l.add(a("1.2.3.4:1"), PeerSource::Pex), AddResult::Known);
        assert_eq!(
            l.add(a("[::ffff:1.2.3.4]:1"), PeerSource::Dht),
            AddResult::Known
        );
        assert_eq!(l.add(a("1.2.3.4:2"), PeerSource::Tracker), AddResult::Added);
        for bad in [
            "1.2.3.4:0",
            "0.0.0.0:5",
            "[::]:5",
            "224.0.0.1:5",
            "255.255.255.255:5",
        ] {
            assert_eq!(
                l.add(a(bad), PeerSource::Tracker),
                AddResult::Unusable,
                "{bad}"
            );
        }
        assert_eq!(l.len(), 2);
        assert_eq!(l.source(a("1.2.3.4:1")), Some(PeerSource::Tracker));
        let s = l.add_many(
            [a("5.5.5.5:5"), a("1.2.3.4:1"), a("0.0.0.0:1")],
            PeerSource::Tracker,
        );
        assert_eq!(
            s,
            AddSummary {
                added: 1,
                known: 1,
                refused: 1
            }
        );
    }

    #[test]
    fn own_addresses_are_filtered() {
        let mut l = list();
        l.add(a("10.0.0.1:6881"), PeerSource::Tracker);
        l.add(a("127.0.0.1:6881"), PeerSource::Tracker);
        l.add(a("127.0.0.1:6882"), PeerSource::Tracker);
        l.add_own_address(a("10.0.0.1:6881"));
        assert_eq!(l.state(a("10.0.0.1:6881")), None);
        assert_eq!(l.add(a("10.0.0.1:6881"), PeerSource::Pex), AddResult::Own);
        // A wildcard listen address covers loopback on that port, not other ports.
        l.add_own_address(a("0.0.0.0:6881"));
        assert_eq!(l.state(a("127.0.0.1:6881")), None);
        assert_eq!(
            l.add(a("127.0.0.1:6881"), PeerSource::Tracker),
            AddResult::Own
        );
        assert_eq!(l.state(a("127.0.0.1:6882")), Some(PeerState::NeverTried));
        assert_eq!(
            l.add(a("10.0.0.2:6881"), PeerSource::Tracker),
            AddResult::Added
        );
    }

    #[test]
    fn order_is_never_tried_first_then_backoff_expiry() {
        let mut l = list();
        for p in ["9.0.0.1:1", "1.0.0.1:1", "5.0.0.1:1"] {
            l.add(a(p), PeerSource::Tracker);
        }
        // Arrival order, not address order.
        assert_eq!(l.next_to_connect(t(0)), Some(a("9.0.0.1:1")));
        assert_eq!(l.next_to_connect(t(0)), Some(a("1.0.0.1:1")));
        l.connect_failed(a("9.0.0.1:1"), t(0)); // waits 30 s
        l.connect_failed(a("1.0.0.1:1"), t(1)); // waits until 31 s
        assert_eq!(l.next_to_connect(t(2)), Some(a("5.0.0.1:1")));
        assert_eq!(l.next_to_connect(t(2)), None);
        assert_eq!(l.next_deadline(), Some(t(30)));
        l.add(a("7.0.0.1:1"), PeerSource::Pex);
        assert_eq!(l.next_deadline(), Some(Instant::ZERO));
        // A new address goes before those whose backoff has ended.
        assert_eq!(l.next_to_connect(t(40)), Some(a("7.0.0.1:1")));
        assert_eq!(l.next_to_connect(t(40)), Some(a("9.0.0.1:1")));
        assert_eq!(l.next_to_connect(t(40)), Some(a("1.0.0.1:1")));
        assert_eq!(l.next_to_connect(t(40)), None);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn backoff_doubles_caps_and_gives_up() {
        let config = PeerListConfig {
            max_failures: 10,
            ..PeerListConfig::DEFAULT
        };
        let mut l = PeerList::new(config);
        let p = a("1.1.1.1:1");
        l.add(p, PeerSource::Tracker);
        let mut now = t(0);
        let mut waits = Vec::new();
        for _ in 0..9 {
            assert_eq!(l.next_to_connect(now), Some(p));
            l.connect_failed(p, now);
            let Some(PeerState::Waiting { until, .. }) = l.state(p) else {
                panic!("{:?}", l.state(p));
            };
            assert_eq!(
                l.next_to_connect(Instant::from_micros(until.as_micros() - 1)),
                None
            );
            waits.push((until - now).as_secs());
            now = until;
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(l.next_to_connect(now), Some(p));
        l.connect_failed(p, now);
        assert_eq!(l.state(p), Some(PeerState::GivenUp));
        assert_eq!(l.next_to_connect(t(1_000_000)), None);
        // A tracker handing it out again does not revive it.
        assert_eq!(l.add(p, PeerSource::Tracker), AddResult::Known);
        assert_eq!(l.state(p), Some(PeerState::GivenUp));
    }

    #[test]
    fn connect_and_disconnect() {
        let mut l = list();
        let p = a("2.2.2.2:2");
        l.add(p, PeerSource::Tracker);
        assert!(!l.connected(a("3.3.3.3:3")));
        assert_eq!(l.next_to_connect(t(0)), Some(p));
        l.connect_failed(p, t(0));
        assert_eq!(l.next_to_connect(t(30)), Some(p));
        assert!(l.connected(p));
        assert_eq!(l.state(p), Some(PeerState::Connected));
        // Stray reports do not change a connected peer.
        l.connect_failed(p, t(31));
        assert_eq!(l.state(p), Some(PeerState::Connected));
        l.disconnected(p, t(100), DisconnectReason::Normal);
        assert_eq!(
            l.state(p),
            Some(PeerState::Waiting {
                failures: 0,
                until: t(220)
            })
        );
        assert_eq!(l.next_to_connect(t(219)), None);
        assert_eq!(l.next_to_connect(t(220)), Some(p));
        assert!(l.connected(p));
        l.disconnected(p, t(300), DisconnectReason::Failed);
        assert_eq!(
            l.state(p),
            Some(PeerState::Waiting {
                failures: 1,
                until: t(330)
            })
        );
        // A disconnect for an idle peer is stale and ignored.
        l.disconnected(p, t(301), DisconnectReason::Failed);
        assert_eq!(
            l.state(p),
            Some(PeerState::Waiting {
                failures: 1,
                until: t(330)
            })
        );
    }

    #[test]
    fn ban_is_by_ip_and_bounded() {
        let config = PeerListConfig {
            max_banned: 2,
            ..PeerListConfig::DEFAULT
        };
        let mut l = PeerList::new(config);
        l.add(a("4.4.4.4:1"), PeerSource::Tracker);
        l.add(a("4.4.4.4:2"), PeerSource::Tracker);
        l.add(a("4.4.4.5:1"), PeerSource::Tracker);
        assert_eq!(l.next_to_connect(t(0)), Some(a("4.4.4.4:1")));
        l.ban(a("[::ffff:4.4.4.4]:9"));
        assert_eq!(l.len(), 1);
        assert!(l.is_banned("4.4.4.4".parse().unwrap()));
        assert_eq!(l.add(a("4.4.4.4:3"), PeerSource::Pex), AddResult::Banned);
        // Stale reports about a banned peer do nothing.
        l.connect_failed(a("4.4.4.4:1"), t(1));
        assert_eq!(l.next_to_connect(t(0)), Some(a("4.4.4.5:1")));
        l.ban(a("6.6.6.6:1"));
        l.ban(a("7.7.7.7:1"));
        assert!(
            !l.is_banned("4.4.4.4".parse().unwrap()),
            "oldest ban dropped"
        );
        assert!(l.is_banned("6.6.6.6".parse().unwrap()));
        assert!(l.is_banned("7.7.7.7".parse().unwrap()));
    }

    #[test]
    fn full_list_evicts_the_worst_idle_entry() {
        let config = PeerListConfig {
            max_peers: 4,
            max_failures: 2,
            ..PeerListConfig::DEFAULT
        };
        let mut l = PeerList::new(config);
        for p in ["1.0.0.1:1", "1.0.0.2:1", "1.0.0.3:1"] {
            l.add(a(p), PeerSource::Tracker);
        }
        // 1: connected (never evicted); 2: one failure; 3: given up; 4: never tried.
        assert_eq!(l.next_to_connect(t(0)), Some(a("1.0.0.1:1")));
        assert_eq!(l.next_to_connect(t(0)), Some(a("1.0.0.2:1")));
        assert_eq!(l.next_to_connect(t(0)), Some(a("1.0.0.3:1")));
        l.connected(a("1.0.0.1:1"));
        l.connect_failed(a("1.0.0.2:1"), t(1)); // until 31 s
        l.connect_failed(a("1.0.0.3:1"), t(0)); // until 30 s
        assert_eq!(l.next_to_connect(t(30)), Some(a("1.0.0.3:1")));
        l.connect_failed(a("1.0.0.3:1"), t(100));
        assert_eq!(l.state(a("1.0.0.3:1")), Some(PeerState::GivenUp));
        assert_eq!(l.add(a("1.0.0.4:1"), PeerSource::Tracker), AddResult::Added);

        assert_eq!(l.add(a("2.0.0.1:1"), PeerSource::Pex), AddResult::Added);
        assert_eq!(l.state(a("1.0.0.3:1")), None, "given up goes first");
        assert_eq!(l.add(a("2.0.0.2:1"), PeerSource::Pex), AddResult::Added);
        assert_eq!(l.state(a("1.0.0.2:1")), None, "then the failed one");
        assert_eq!(l.add(a("2.0.0.3:1"), PeerSource::Pex), AddResult::Added);
        assert_eq!(l.state(a("1.0.0.4:1")), None, "then the oldest never tried");
        assert_eq!(l.len(), 4);
        assert_eq!(l.state(a("1.0.0.1:1")), Some(PeerState::Connected));
        // All busy: a new address is refused.
        for _ in 0..3 {
            l.next_to_connect(t(0));
        }
        assert_eq!(l.add(a("3.0.0.1:1"), PeerSource::Pex), AddResult::Full);
        assert_eq!(l.len(), 4);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(u8, u16),
        Next(u32),
        Fail(u8, u16, u32),
        Connected(u8, u16),
        Disconnect(u8, u16, u32, bool),
        Ban(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, 0u16..4).prop_map(|(i, p)| Op::Add(i, p)),
            (0u32..5000).prop_map(Op::Next),
            (0u8..8, 0u16..4, 0u32..5000).prop_map(|(i, p, t)| Op::Fail(i, p, t)),
            (0u8..8, 0u16..4).prop_map(|(i, p)| Op::Connected(i, p)),
            (0u8..8, 0u16..4, 0u32..5000, any::<bool>())
                .prop_map(|(i, p, t, ok)| Op::Disconnect(i, p, t, ok)),
            (0u8..8).prop_map(Op::Ban),
        ]
    }

    fn addr_of(i: u8, p: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::from([10, 0, 0, i]), p)
    }

    proptest! {
        /// Whatever happens, the list stays within its bound and its indices agree with it.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 0..200)) {
            let config = PeerListConfig { max_peers: 10, max_banned: 3, max_failures: 3, ..PeerListConfig::DEFAULT };
            let mut l = PeerList::new(config);
            for op in ops {
                match op {
                    Op::Add(i, p) => { l.add(addr_of(i, p), PeerSource::Tracker); }
                    Op::Next(s) => { l.next_to_connect(t(u64::from(s))); }
                    Op::Fail(i, p, s) => l.connect_failed(addr_of(i, p), t(u64::from(s))),
                    Op::Connected(i, p) => { l.connected(addr_of(i, p)); }
                    Op::Disconnect(i, p, s, ok) => {
                        let r = if ok { DisconnectReason::Normal } else { DisconnectReason::Failed };
                        l.disconnected(addr_of(i, p), t(u64::from(s)), r);
                    }
                    Op::Ban(i) => l.ban(addr_of(i, 1)),
                }
                prop_assert!(l.len() <= 10);
                prop_assert!(l.banned.len() <= 3);
                prop_assert_eq!(l.banned.len(), l.ban_order.len());
                let mut candidates = BTreeSet::new();
                let mut evictable = BTreeSet::new();
                for (addr, e) in &l.entries {
                    prop_assert!(!l.banned.contains_key(&addr.ip()));
                    let (c, v) = PeerList::keys(*addr, e);
                    candidates.extend(c);
                    evictable.extend(v);
                }
                prop_assert_eq!(&candidates, &l.candidates);
                prop_assert_eq!(l.first, l.candidates.first().copied());
                prop_assert_eq!(&evictable, &l.evictable);
            }
        }
    }
}
