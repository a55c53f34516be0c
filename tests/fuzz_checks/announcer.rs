//! `announcer`: the per-torrent `Announcer` driven by a sequence of inputs decoded from the fuzz
//! input with `arbitrary` (a tracker list and config, then operations: time advances, HTTP
//! bodies, UDP datagrams built as replies to what was sent, driver failures, completion, more
//! peers, stop), with the peers it reports fed into a `PeerList` that is exercised too.
//!
//! After every step the harness drains `poll_action` as the drain contract says and asserts:
//! no panic; the drain ends (no livelock); the next deadline is never in the past (after a full
//! drain at `now` it is `None` or later than `now`); every action is well-formed (a UDP datagram
//! decodes as a BEP 15 connect or announce request for that tracker's host and port; after
//! `stop` only `stopped` announces go out, UDP ones with `numwant` 0); at most one request per
//! lane is in flight; the policy of the module docs holds: a tracker's first announce is
//! `started` (and only the first, until it answers), nothing but `stopped` goes to a lane
//! before `min interval` has passed since its last success, a tracker that failed is not
//! contacted before its backoff ends, and that backoff is `base · 2^(failures-1)` (capped)
//! minus at most 25 % jitter; outcomes stay within `max_outcomes`, error texts within `max_message`;
//! the counters only grow; the peer list stays within `max_peers` and its deadline agrees with
//! `next_to_connect`. At the end it stops the announcer and drives it on virtual time alone: it
//! must be done within `stop_timeout`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use hive_core::announce::{
    Action, AnnounceConfig, AnnounceCounters, AnnounceStats, Announcer, FailureKind, Outcome,
    RequestId, TrackerId, TrackerUrl, parse_tracker_url,
};
use hive_core::bencode::OwnedValue;
use hive_core::peer_list::{DisconnectReason, PeerList, PeerListConfig, PeerSource};
use hive_core::rng::Rng;
use hive_core::time::Instant;
use hive_core::tracker::http;
use hive_core::tracker::udp::{self, ConnectResponse, ErrorResponse, Request};
use hive_core::tracker::{AddressFamily, CompactPeers, Event, ResponseLimits};

/// Most operations taken from one input.
const MAX_OPS: usize = 256;
/// Requests remembered for replies (older ones are forgotten; replies to them are stale anyway).
const RECENT: usize = 16;
/// Peer addresses remembered for peer-list operations.
const KNOWN_PEERS: usize = 64;
/// Own addresses a `PeerList` remembers (`MAX_OWN_ADDRESSES` in peer_list.rs).
const MAX_OWN_ADDRESSES: usize = 16;

/// The tracker list and configuration, from the front of the input.
#[derive(Arbitrary, Debug)]
pub struct Setup {
    seed: u64,
    tiers: Vec<Vec<UrlChoice>>,
    all_tiers: bool,
    num_want: u8,
    min_interval_s: u16,
    backoff_base_s: u8,
    backoff_cap_s: u16,
    http_timeout_s: u8,
    udp_retransmits: u8,
    stop_timeout_s: u8,
    max_trackers: u8,
    max_outcomes: u8,
    max_peers: u8,
}

/// A tracker URL: from a small palette (so that trackers repeat across tiers), or any text.
#[derive(Arbitrary, Debug)]
pub enum UrlChoice {
    /// `http://tN.example/announce`.
    Http(u8),
    /// `udp://uN.example:PORT`.
    Udp(u8),
    /// `udp://[::1]:PORT`.
    UdpV6(u8),
    /// Anything (mostly refused, which is the point).
    Raw(String),
}

impl UrlChoice {
    fn url(&self) -> String {
        match self {
            UrlChoice::Http(n) => format!("http://t{}.example/announce", n % 4),
            UrlChoice::Udp(n) => format!("udp://u{}.example:{}", n % 4, 6969 + u16::from(n % 2)),
            UrlChoice::UdpV6(n) => format!("udp://[::1]:{}", 1 + u16::from(*n)),
            UrlChoice::Raw(s) => s.clone(),
        }
    }
}

/// One step of the driver.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Time passes (milliseconds, up to ~50 days).
    Advance(u32),
    /// A little time passes (milliseconds, up to ~65 s).
    AdvanceSmall(u16),
    /// Sleep until the announcer's deadline, as a driver does.
    ToDeadline,
    /// An HTTP 200 body for a recent HTTP request.
    Http {
        /// Which recent request.
        pick: u8,
        /// The body.
        body: Body,
    },
    /// A datagram from a recent UDP request's tracker, built as a reply to it.
    Udp {
        /// Which recent request.
        pick: u8,
        /// What to answer.
        reply: UdpReply,
        /// The tracker's address is IPv6 (18-byte peers).
        v6: bool,
        /// Answer with another transaction id.
        wrong_tid: bool,
    },
    /// The driver reports a failure of a recent request.
    Fail {
        /// Which recent request (HTTP and UDP together).
        pick: u8,
        /// What failed.
        kind: Failure,
    },
    /// The download finished.
    Completed,
    /// The session wants more peers.
    WantMorePeers,
    /// Pause or shutdown.
    Stop,
    /// The driver drains the outcomes.
    DrainOutcomes,
    /// The session uses the peer list.
    Peer(PeerOp),
}

/// An HTTP reply body.
#[derive(Arbitrary, Debug)]
pub enum Body {
    /// Any bytes.
    Raw(Vec<u8>),
    /// A well-formed reply with these keys.
    Reply(Reply),
}

/// The keys of a bencoded announce reply.
#[derive(Arbitrary, Debug)]
pub struct Reply {
    failure: Option<Vec<u8>>,
    interval: Option<i32>,
    min_interval: Option<i32>,
    tracker_id: Option<Vec<u8>>,
    warning: Option<Vec<u8>>,
    complete: Option<i32>,
    incomplete: Option<i32>,
    peers: Vec<[u8; 6]>,
    peers6: Vec<[u8; 18]>,
}

impl Reply {
    fn encode(&self) -> Vec<u8> {
        let mut d = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: OwnedValue| {
            d.insert(k.as_bytes().to_vec(), v);
        };
        if let Some(f) = &self.failure {
            put("failure reason", OwnedValue::Bytes(f.clone()));
        }
        for (k, v) in [
            ("interval", self.interval),
            ("min interval", self.min_interval),
            ("complete", self.complete),
            ("incomplete", self.incomplete),
        ] {
            if let Some(v) = v {
                put(k, OwnedValue::Int(i64::from(v)));
            }
        }
        if let Some(id) = &self.tracker_id {
            put("tracker id", OwnedValue::Bytes(id.clone()));
        }
        if let Some(w) = &self.warning {
            put("warning message", OwnedValue::Bytes(w.clone()));
        }
        put("peers", OwnedValue::Bytes(self.peers.concat()));
        if !self.peers6.is_empty() {
            put("peers6", OwnedValue::Bytes(self.peers6.concat()));
        }
        OwnedValue::Dict(d).to_bytes()
    }
}

/// A UDP reply.
#[derive(Arbitrary, Debug)]
pub enum UdpReply {
    /// A connect response with this connection id.
    Connect(u64),
    /// An announce response.
    Announce {
        /// Seconds.
        interval: u32,
        /// Leechers.
        leechers: u32,
        /// Seeders.
        seeders: u32,
        /// Compact peers (any length).
        peers: Vec<u8>,
    },
    /// A scrape response (nobody asked).
    Scrape(Vec<u8>),
    /// An error response with this message.
    Error(Vec<u8>),
    /// Any bytes.
    Raw(Vec<u8>),
}

/// A failure as the driver reports it.
#[derive(Arbitrary, Debug)]
pub enum Failure {
    /// No reply in time.
    Timeout,
    /// Network error with this text.
    Network(String),
    /// HTTP status.
    HttpStatus(u16),
    /// Refused.
    Tracker(String),
    /// Unreadable.
    Malformed(String),
}

/// The session's use of its peer list.
#[derive(Arbitrary, Debug)]
pub enum PeerOp {
    /// Ask for the next address to dial.
    Next,
    /// Dialling a known address failed.
    ConnectFailed(u8),
    /// A known address connected.
    Connected(u8),
    /// A known address disconnected (`true`: the connection failed).
    Disconnected(u8, bool),
    /// Ban a known address.
    Ban(u8),
    /// A known address turns out to be ours.
    AddOwn(u8),
}

struct Harness {
    now: Instant,
    announcer: Announcer,
    config: AnnounceConfig,
    stats: AnnounceStats,
    recent_http: Vec<(RequestId, TrackerId)>,
    recent_udp: Vec<(RequestId, TrackerId, Vec<u8>)>,
    counters: AnnounceCounters,
    stopped_at: Option<Instant>,
    peers: PeerList,
    peer_config: PeerListConfig,
    known: Vec<SocketAddr>,
    own: Vec<SocketAddr>,
    /// Per lane (tier in announce-to-all-tiers mode, else 0): the last success and the
    /// `min interval` that came with it.
    last_success: BTreeMap<usize, (Instant, Duration)>,
    /// Failures per tracker at the end of the previous step.
    failures: BTreeMap<TrackerId, u32>,
}

fn push_bounded<T>(list: &mut Vec<T>, item: T, max: usize) {
    if list.len() >= max {
        list.remove(0);
    }
    list.push(item);
}

fn pick<T>(list: &[T], n: u8) -> Option<&T> {
    if list.is_empty() {
        None
    } else {
        list.get(usize::from(n) % list.len())
    }
}

impl Harness {
    fn new(setup: &Setup) -> Harness {
        let secs = |s: u64| Duration::from_secs(s);
        let config = AnnounceConfig {
            num_want: u32::from(setup.num_want),
            // Durations stay positive: a zero timeout or backoff is a caller's bug that makes
            // any driver spin, not something a tracker or peer can cause.
            default_min_interval: secs(1 + u64::from(setup.min_interval_s % 600)),
            backoff_base: secs(1 + u64::from(setup.backoff_base_s % 60)),
            backoff_cap: secs(1 + u64::from(setup.backoff_cap_s % 7200)),
            http_timeout: secs(1 + u64::from(setup.http_timeout_s % 60)),
            udp_max_retransmits: u32::from(setup.udp_retransmits % 4),
            stop_timeout: secs(1 + u64::from(setup.stop_timeout_s % 10)),
            announce_to_all_tiers: setup.all_tiers,
            max_trackers: 1 + usize::from(setup.max_trackers % 8),
            max_outcomes: usize::from(setup.max_outcomes % 8),
            limits: ResponseLimits::DEFAULT,
        };
        let tiers: Vec<Vec<String>> = setup
            .tiers
            .iter()
            .take(4)
            .map(|t| t.iter().take(4).map(UrlChoice::url).collect())
            .collect();
        let now = Instant::from_secs(1_000_000);
        let (announcer, rejected) =
            Announcer::new(tiers.clone(), config.clone(), Rng::new(setup.seed), now);
        let kept: usize = announcer.tiers().iter().map(Vec::len).sum();
        let given: usize = tiers.iter().map(Vec::len).sum();
        assert_eq!(
            kept + rejected.len(),
            given,
            "trackers lost without a reason"
        );
        assert!(kept <= config.max_trackers);
        let peer_config = PeerListConfig {
            max_peers: 1 + usize::from(setup.max_peers % 16),
            max_banned: 4,
            ..PeerListConfig::DEFAULT
        };
        Harness {
            now,
            announcer,
            config,
            stats: AnnounceStats {
                info_hash: [0xab; 20],
                peer_id: *b"-HV0001-fuzzfuzzfuzz",
                port: 6881,
                uploaded: 0,
                downloaded: 0,
                left: 1 << 20,
            },
            recent_http: Vec::new(),
            recent_udp: Vec::new(),
            counters: AnnounceCounters::default(),
            stopped_at: None,
            peers: PeerList::new(peer_config),
            peer_config,
            known: Vec::new(),
            own: Vec::new(),
            last_success: BTreeMap::new(),
            failures: BTreeMap::new(),
        }
    }

    fn trackers(&self) -> usize {
        self.announcer.tiers().iter().map(Vec::len).sum()
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.stats.uploaded += 1000;
        self.stats.downloaded += 1000;
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Advance(ms) => self.advance(Duration::from_millis(u64::from(ms))),
            Op::AdvanceSmall(ms) => self.advance(Duration::from_millis(u64::from(ms))),
            Op::ToDeadline => {
                if let Some(d) = self.announcer.next_deadline() {
                    self.now = self.now.max(d);
                }
            }
            Op::Http { pick: n, body } => {
                if let Some(&(request, tracker)) = pick(&self.recent_http, n) {
                    let body = match body {
                        Body::Raw(b) => b,
                        Body::Reply(r) => r.encode(),
                    };
                    let before = self.in_flight(tracker);
                    self.announcer.on_http_response(request, &body, now);
                    let min_interval = http::parse_announce_response(&body, &self.config.limits)
                        .ok()
                        .and_then(|r| r.min_interval);
                    self.note_success(tracker, before, min_interval);
                }
            }
            Op::Udp {
                pick: n,
                reply,
                v6,
                wrong_tid,
            } => {
                let Some((_, tracker, packet)) = pick(&self.recent_udp, n) else {
                    return;
                };
                let tid = Request::decode(packet)
                    .expect("sent packets decode")
                    .transaction_id()
                    ^ u32::from(wrong_tid);
                let family = if v6 {
                    AddressFamily::V6
                } else {
                    AddressFamily::V4
                };
                let mut out = Vec::new();
                match reply {
                    UdpReply::Connect(connection_id) => ConnectResponse {
                        transaction_id: tid,
                        connection_id,
                    }
                    .encode(&mut out),
                    UdpReply::Announce {
                        interval,
                        leechers,
                        seeders,
                        peers,
                    } => udp::AnnounceResponse {
                        transaction_id: tid,
                        interval,
                        leechers,
                        seeders,
                        peers: CompactPeers::new(&peers, family),
                    }
                    .encode(&mut out),
                    UdpReply::Scrape(entries) => {
                        udp::encode_scrape_response(&mut out, tid, &[]);
                        out.extend_from_slice(&entries);
                    }
                    UdpReply::Error(message) => ErrorResponse {
                        transaction_id: tid,
                        message: &message,
                    }
                    .encode(&mut out),
                    UdpReply::Raw(bytes) => out = bytes,
                }
                let from = if v6 {
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 6969)
                } else {
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6969)
                };
                let tracker = *tracker;
                let before = self.in_flight(tracker);
                self.announcer.on_udp_packet(tracker, from, &out, now);
                self.note_success(tracker, before, None);
            }
            Op::Fail { pick: n, kind } => {
                let all: Vec<RequestId> = self
                    .recent_http
                    .iter()
                    .map(|r| r.0)
                    .chain(self.recent_udp.iter().map(|r| r.0))
                    .collect();
                if let Some(&request) = pick(&all, n) {
                    let kind = match kind {
                        Failure::Timeout => FailureKind::Timeout,
                        Failure::Network(s) => FailureKind::Network(s),
                        Failure::HttpStatus(s) => FailureKind::HttpStatus(s),
                        Failure::Tracker(s) => FailureKind::Tracker(s),
                        Failure::Malformed(s) => FailureKind::Malformed(s),
                    };
                    self.announcer.on_failure(request, kind, now);
                }
            }
            Op::Completed => {
                self.stats.left = 0;
                self.announcer.torrent_completed(now);
            }
            Op::WantMorePeers => self.announcer.want_more_peers(now),
            Op::Stop => self.stop(),
            Op::DrainOutcomes => self.drain_outcomes(),
            Op::Peer(op) => self.peer_op(op),
        }
    }

    fn in_flight(&self, tracker: TrackerId) -> bool {
        self.announcer.status(tracker).is_some_and(|s| s.in_flight)
    }

    /// The lane a tracker announces in.
    fn lane(&self, tracker: TrackerId) -> usize {
        match self.announcer.status(tracker) {
            Some(s) if self.config.announce_to_all_tiers => s.tier,
            _ => 0,
        }
    }

    /// Records a success if the reply just given ended `tracker`'s request without a failure.
    fn note_success(&mut self, tracker: TrackerId, was_in_flight: bool, min: Option<Duration>) {
        let Some(s) = self.announcer.status(tracker) else {
            return;
        };
        if was_in_flight && !s.in_flight && s.failures == 0 && !self.announcer.is_stopping() {
            let min = min.unwrap_or(self.config.default_min_interval);
            let lane = self.lane(tracker);
            self.last_success.insert(lane, (self.now, min));
        }
    }

    fn stop(&mut self) {
        if self.stopped_at.is_none() {
            self.stopped_at = Some(self.now);
        }
        self.announcer.stop(self.now);
        assert!(self.announcer.is_stopping());
    }

    fn peer_op(&mut self, op: PeerOp) {
        let now = self.now;
        let known = |n: u8| pick(&self.known, n).copied();
        match op {
            PeerOp::Next => {
                let deadline = self.peers.next_deadline();
                let next = self.peers.next_to_connect(now);
                assert_eq!(
                    next.is_some(),
                    deadline.is_some_and(|d| d <= now),
                    "next_deadline {deadline:?} disagrees with next_to_connect {next:?} at {now:?}"
                );
                if let Some(addr) = next {
                    assert_eq!(
                        self.peers.state(addr),
                        Some(hive_core::peer_list::PeerState::Connecting)
                    );
                }
            }
            PeerOp::ConnectFailed(n) => {
                if let Some(a) = known(n) {
                    self.peers.connect_failed(a, now);
                }
            }
            PeerOp::Connected(n) => {
                if let Some(a) = known(n) {
                    self.peers.connected(a);
                }
            }
            PeerOp::Disconnected(n, failed) => {
                if let Some(a) = known(n) {
                    let reason = if failed {
                        DisconnectReason::Failed
                    } else {
                        DisconnectReason::Normal
                    };
                    self.peers.disconnected(a, now, reason);
                }
            }
            PeerOp::Ban(n) => {
                if let Some(a) = known(n) {
                    self.peers.ban(a);
                    assert!(self.peers.is_banned(a.ip()));
                    assert_eq!(self.peers.state(a), None);
                }
            }
            PeerOp::AddOwn(n) => {
                if let Some(a) = known(n) {
                    self.peers.add_own_address(a);
                    if !self.own.contains(&a) && self.own.len() < MAX_OWN_ADDRESSES {
                        self.own.push(a);
                    }
                    // Only the first 16 own addresses are remembered (peer_list.rs).
                    if self.own.contains(&a) {
                        assert_eq!(self.peers.state(a), None, "own address {a} still listed");
                    }
                }
            }
        }
        assert!(self.peers.len() <= self.peer_config.max_peers);
    }

    fn drain_outcomes(&mut self) {
        let mut n = 0;
        while let Some(outcome) = self.announcer.poll_outcome() {
            n += 1;
            assert!(
                n <= self.config.max_outcomes,
                "{n} outcomes queued, max {}",
                self.config.max_outcomes
            );
            match outcome {
                Outcome::Peers { peers, .. } => {
                    assert!(!peers.is_empty(), "an empty Peers outcome");
                    assert!(peers.len() <= self.config.limits.max_peers);
                    for p in &peers {
                        push_bounded(&mut self.known, *p, KNOWN_PEERS);
                    }
                    let summary = self
                        .peers
                        .add_many(peers.iter().copied(), PeerSource::Tracker);
                    assert_eq!(summary.added + summary.known + summary.refused, peers.len());
                    assert!(self.peers.len() <= self.peer_config.max_peers);
                }
                Outcome::TrackerError { message, .. } => {
                    assert!(message.len() <= self.config.limits.max_message);
                }
                Outcome::Warning { message, .. } => {
                    assert!(message.len() <= 3 * self.config.limits.max_message);
                }
                Outcome::Swarm { .. } => {}
            }
        }
    }

    /// Drains `poll_action` at `now` and checks everything that must hold after a drain.
    fn drain(&mut self) {
        let bound = 4 * self.trackers() + 4;
        let mut actions = 0;
        while let Some(action) = self.announcer.poll_action(self.now, &self.stats) {
            actions += 1;
            assert!(
                actions <= bound,
                "poll_action never returns None (livelock)"
            );
            self.check_action(&action);
            match action {
                Action::Http {
                    tracker, request, ..
                } => push_bounded(&mut self.recent_http, (request, tracker), RECENT),
                Action::UdpSend {
                    tracker,
                    request,
                    packet,
                    ..
                } => push_bounded(&mut self.recent_udp, (request, tracker, packet), RECENT),
            }
        }
        if let Some(deadline) = self.announcer.next_deadline() {
            assert!(
                deadline > self.now,
                "next deadline {deadline:?} is not after now {:?} after a full drain",
                self.now
            );
        }
        if self.announcer.is_done() {
            assert_eq!(self.announcer.next_deadline(), None);
        }
        if let Some(stopped_at) = self.stopped_at {
            // The stopped announces get one attempt within stop_timeout, then the driver may
            // exit: a drain at or after that time must find the announcer done.
            if self.now >= stopped_at + self.config.stop_timeout {
                assert!(
                    self.announcer.is_done(),
                    "still stopping {:?} after a stop at {stopped_at:?}",
                    self.now - stopped_at
                );
            }
        }
        let ids: Vec<TrackerId> = self.announcer.tiers().iter().flatten().copied().collect();
        let in_flight = ids
            .iter()
            .filter(|&&id| self.announcer.status(id).is_some_and(|s| s.in_flight))
            .count();
        if !self.announcer.is_stopping() {
            let lanes = if self.config.announce_to_all_tiers {
                self.announcer.tiers().len()
            } else {
                1
            };
            assert!(
                in_flight <= lanes,
                "{in_flight} requests in flight, {lanes} lanes"
            );
        }
        for id in ids {
            let s = self.announcer.status(id).expect("a tracker of the tiers");
            assert!(
                s.last_error
                    .is_none_or(|e| e.len() <= self.config.limits.max_message)
            );
        }
        self.check_backoffs();
        let c = self.announcer.counters();
        assert!(
            c.ignored_packets >= self.counters.ignored_packets
                && c.stale_inputs >= self.counters.stale_inputs
                && c.dropped_outcomes >= self.counters.dropped_outcomes,
            "counters went down"
        );
        self.counters = c;
    }

    /// A failure seen in this step (failures went up by one) set a backoff of
    /// `base · 2^(failures-1)`, capped, minus at most 25 % jitter, from now.
    fn check_backoffs(&mut self) {
        let ids: Vec<TrackerId> = self.announcer.tiers().iter().flatten().copied().collect();
        for id in ids {
            let s = self.announcer.status(id).expect("a tracker of the tiers");
            let before = self.failures.insert(id, s.failures).unwrap_or(0);
            if s.failures == 0 || s.failures == before {
                continue;
            }
            assert_eq!(s.failures, before + 1, "failures jumped within one step");
            let doublings = (s.failures - 1).min(31);
            let full = self
                .config
                .backoff_base
                .saturating_mul(1 << doublings)
                .min(self.config.backoff_cap);
            let until = s.backoff_until.expect("a failed tracker backs off");
            assert!(
                until <= self.now + full && until >= self.now + full * 3 / 4,
                "backoff after failure {} is {:?}, full {full:?}",
                s.failures,
                until - self.now
            );
        }
    }

    /// The announce policy for a request to `tracker` going out now with `event`.
    fn check_policy(&self, tracker: TrackerId, event: Event) {
        let s = self.announcer.status(tracker).expect("a known tracker");
        if self.announcer.is_stopping() {
            return;
        }
        assert_eq!(
            event == Event::Started,
            !s.started,
            "event {event:?} to a tracker that {} accepted started",
            if s.started { "has" } else { "never" }
        );
        if let Some(until) = s.backoff_until {
            assert!(
                until <= self.now,
                "tracker contacted {:?} before its backoff ends",
                until - self.now
            );
        }
        if let Some(&(at, min)) = self.last_success.get(&self.lane(tracker)) {
            assert!(
                self.now >= at + min,
                "announce {:?} after the last success, min interval {min:?}",
                self.now - at
            );
        }
    }

    fn check_action(&self, action: &Action) {
        let stopping = self.announcer.is_stopping();
        match action {
            Action::Http {
                tracker,
                url,
                event,
                ..
            } => {
                let status = self.announcer.status(*tracker).expect("a known tracker");
                assert!(status.in_flight);
                assert_eq!(
                    parse_tracker_url(status.url).expect("kept urls parse"),
                    TrackerUrl::Http
                );
                assert!(url.contains("info_hash=") && url.contains("&peer_id="));
                self.check_policy(*tracker, *event);
                if stopping {
                    assert_eq!(*event, Event::Stopped, "only stopped announces after stop");
                    assert!(url.contains("&numwant=0"));
                } else {
                    assert_ne!(*event, Event::Stopped);
                }
            }
            Action::UdpSend {
                tracker,
                host,
                port,
                packet,
                ..
            } => {
                let status = self.announcer.status(*tracker).expect("a known tracker");
                assert!(status.in_flight);
                assert_eq!(
                    parse_tracker_url(status.url).expect("kept urls parse"),
                    TrackerUrl::Udp {
                        host: host.clone(),
                        port: *port
                    }
                );
                assert!(packet.len() <= udp::AnnounceRequest::LEN);
                match Request::decode(packet).expect("a BEP 15 request") {
                    Request::Connect(_) => {}
                    Request::Announce(a) => {
                        assert_eq!(a.info_hash, self.stats.info_hash);
                        self.check_policy(*tracker, a.event);
                        if stopping {
                            assert_eq!(a.event, Event::Stopped);
                            assert_eq!(a.num_want, 0);
                        } else {
                            assert_ne!(a.event, Event::Stopped);
                        }
                    }
                    Request::Scrape(_) => panic!("the announcer never scrapes"),
                }
            }
        }
    }

    /// Stops (if the input did not) and drives on virtual time alone, as a driver that exits
    /// does: the announcer must get done (within `stop_timeout`, which `drain` checks).
    fn finish(&mut self) {
        if !self.announcer.is_stopping() {
            self.stop();
            self.drain();
        }
        for _ in 0..64 {
            if self.announcer.is_done() {
                break;
            }
            let deadline = self
                .announcer
                .next_deadline()
                .expect("a stopping announcer that is not done has a deadline");
            self.now = self.now.max(deadline);
            self.drain();
        }
        assert!(self.announcer.is_done(), "stop never finished");
        assert_eq!(self.announcer.poll_action(self.now, &self.stats), None);
        self.drain_outcomes();
    }
}

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let mut h = Harness::new(&setup);
    h.drain();
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        h.apply(op);
        h.drain();
    }
    h.finish();
}
