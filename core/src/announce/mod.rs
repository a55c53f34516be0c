//! The announce state machine: when to announce, to which tracker, with which event.
//!
//! One [`Announcer`] per torrent. It owns the tracker list (BEP 12 tiers), every timer
//! (re-announce interval, `min interval`, per-tracker failure backoff, HTTP timeouts, BEP 15
//! retransmits and connection ids) and the `started` / `completed` / `stopped` bookkeeping. It
//! builds the bytes with the [`crate::tracker`] codecs; the driver only carries them.
//!
//! # Driving it (the drain contract)
//!
//! 1. Feed what happened: [`Announcer::on_http_response`], [`Announcer::on_failure`],
//!    [`Announcer::on_udp_packet`], [`Announcer::torrent_completed`],
//!    [`Announcer::want_more_peers`], [`Announcer::stop`].
//! 2. Drain: call [`Announcer::poll_action`]`(now, &stats)` until it returns `None`, carrying
//!    out each [`Action`] (an HTTP GET, a UDP datagram); then [`Announcer::poll_outcome`] until
//!    `None` (peers, swarm counts, errors and warnings for the user).
//! 3. Sleep until [`Announcer::next_deadline`] or the next input, whichever is first, then go
//!    to 2 with the new `now`. `poll_action` also runs the timers, so calling it at or after the
//!    deadline is how time advances; calling it early, or more often, is harmless.
//!
//! After [`Announcer::stop`], keep driving until [`Announcer::is_done`]: the `stopped`
//! announces are then sent (one attempt each, bounded by [`AnnounceConfig::stop_timeout`]) and
//! the driver may exit.
//!
//! Inputs that match nothing in flight (a reply after the request timed out, a datagram with a
//! wrong transaction id, garbage) are ignored and counted in [`AnnounceCounters`]; they are
//! normal on the Internet, not errors.
//!
//! # Policy (and why)
//!
//! - **Tiers (BEP 12).** Each tier is shuffled once at construction with the seeded [`Rng`].
//!   Every announce walks the tiers in order, and each tier in its current order, and sends to
//!   the first tracker that is not backing off; on failure the walk goes on at once to the next
//!   one, so a dead first tier falls through to the second. The tracker that answers moves to
//!   the front of its tier and stays there. One tracker is asked at a time, as BEP 12 says
//!   ("all URLs in each tier must be checked before the client goes on to the next tier"); with
//!   [`AnnounceConfig::announce_to_all_tiers`] each tier runs that walk on its own instead, as
//!   libtorrent's `announce_to_all_tiers` does (for torrents whose tiers are separate
//!   swarms-in-name, such as several public trackers, one per tier).
//! - **Events.** A tracker's first announce is `started` (again after failing over to a tracker
//!   that never answered one). [`Announcer::torrent_completed`] sends `completed` once, to the
//!   working tracker (`started` goes first if that tracker never accepted one). A torrent that is
//!   complete from the start sends `started` with `left=0` and never `completed`: the driver
//!   simply never calls `torrent_completed`, and a call made before any announce was sent is
//!   dropped for the same reason. [`Announcer::stop`] sends `stopped` (with `numwant=0`) to each
//!   tracker that accepted a `started`, or to which a `started` was sent without an answer yet
//!   (it has likely registered us; a stray `stopped` costs nothing).
//! - **Intervals.** After a successful announce the next one is due after the reply's
//!   `interval` (already clamped by the codec to 60 s .. 24 h), but never before its
//!   `min interval`. Anything early ([`Announcer::want_more_peers`], `completed`) waits for
//!   `min interval`, which defaults to 120 s when the tracker gave none (Transmission's
//!   `DEFAULT_ANNOUNCE_MIN_INTERVAL_SEC`). `stopped` is not held back: we are leaving.
//! - **Failures.** Network errors, timeouts, HTTP errors (503...), `failure reason` replies, BEP
//!   15 error packets and malformed replies all count as one failure of that tracker, which then
//!   backs off for `15 s · 2^(failures-1)`, capped at 30 min, minus up to 25 % random jitter so
//!   that many clients do not return to a recovering tracker in the same second. libtorrent
//!   grows quadratically from 5 s (tracker_backoff 250 %) up to an hour and Transmission steps
//!   20 s, 5 min, 15 min, 30 min, 1 h...; we start near libtorrent's first retries and cap at
//!   the 30 min interval most trackers ask for, since retrying a dead tracker less often than a
//!   live one is asked to announce gains nothing. A tracker that is backing off is skipped;
//!   when every tracker is backing off the next attempt is at the earliest retry time.
//! - **UDP (BEP 15).** connect → connection id (reused for [`udp::CONNECTION_ID_LIFETIME`],
//!   then renewed) → announce. A request is retransmitted with the same transaction id after
//!   `15 · 2^n` s; after [`AnnounceConfig::udp_max_retransmits`] retransmits the exchange
//!   fails. BEP 15 allows 8 (about two hours in all); the default 2 gives up after 105 s, close
//!   to libtorrent's and Transmission's ~30-60 s budgets, so that failing over to the next
//!   tracker does not wait hours. The `n` of the schedule restarts after a connect reply, and
//!   an announce retransmit whose connection id expired meanwhile becomes a new connect (the
//!   BEP's "announce times out" example).
//! - **HTTP.** The announcer times out an HTTP request itself after
//!   [`AnnounceConfig::http_timeout`] (30 s, libtorrent's `tracker_completion_timeout`); a reply
//!   after that is stale. The reply's `tracker id` is kept and echoed as `trackerid` (BEP 3);
//!   `key` is one random value per announcer (BEP 7); `numwant` is the configured value, 0 with
//!   `stopped`.

mod url;

#[cfg(test)]
mod tests;

use core::net::SocketAddr;
use std::cell::Cell;
use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use crate::rng::Rng;
use crate::time::Instant;
use crate::tracker::{self, AddressFamily, AnnounceResponse, Event, ResponseLimits, http, udp};

pub use url::{TrackerUrl, UrlError, parse_tracker_url};

/// Tunables of an [`Announcer`]; see the module docs for the reasons behind the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Peers asked for in each announce (`numwant`; 0 is sent with `stopped`).
    pub num_want: u32,
    /// `min interval` assumed when a tracker gives none.
    pub default_min_interval: Duration,
    /// Backoff after a tracker's first failure; doubles with each further failure.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_cap: Duration,
    /// How long an HTTP announce may take before it counts as failed.
    pub http_timeout: Duration,
    /// BEP 15 retransmits before a UDP exchange fails (at most 8 are meaningful).
    pub udp_max_retransmits: u32,
    /// How long the `stopped` announces may take in all, per tracker.
    pub stop_timeout: Duration,
    /// Announce to one tracker in every tier instead of one tracker in all (libtorrent option).
    pub announce_to_all_tiers: bool,
    /// Most trackers kept from a torrent; the rest are refused with [`UrlError::TooMany`].
    pub max_trackers: usize,
    /// Most undrained [`Outcome`]s kept; the oldest is dropped (and counted) beyond it.
    pub max_outcomes: usize,
    /// Bounds applied to tracker replies.
    pub limits: ResponseLimits,
}

impl AnnounceConfig {
    /// The defaults (numwant 50, min interval 120 s, backoff 15 s..30 min, HTTP timeout 30 s,
    /// 2 UDP retransmits, stop timeout 5 s, one tier at a time, 128 trackers, 256 outcomes).
    pub const DEFAULT: AnnounceConfig = AnnounceConfig {
        num_want: 50,
        default_min_interval: Duration::from_secs(120),
        backoff_base: Duration::from_secs(15),
        backoff_cap: Duration::from_secs(30 * 60),
        http_timeout: Duration::from_secs(30),
        udp_max_retransmits: 2,
        // Transmission's STOP_TIMEOUT_INTERVAL_SEC and libtorrent's stop_tracker_timeout.
        stop_timeout: Duration::from_secs(5),
        announce_to_all_tiers: false,
        max_trackers: 128,
        max_outcomes: 256,
        limits: ResponseLimits::DEFAULT,
    };
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig::DEFAULT
    }
}

/// What the session reports about the torrent at announce time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AnnounceStats {
    /// SHA-1 of the torrent's `info` dictionary.
    pub info_hash: [u8; 20],
    /// Our peer id.
    pub peer_id: [u8; 20],
    /// Our TCP listen port.
    pub port: u16,
    /// Bytes uploaded this session.
    pub uploaded: u64,
    /// Bytes downloaded this session.
    pub downloaded: u64,
    /// Bytes still missing (0 for a seed).
    pub left: u64,
}

/// A tracker of this announcer; stable for its whole life (an index in construction order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackerId(u32);

impl TrackerId {
    /// The index in construction order (kept trackers only).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One announce exchange (an HTTP GET, or the datagrams of one BEP 15 exchange); never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u64);

/// Something the driver must do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// GET `url`, then report [`Announcer::on_http_response`] with the body of a 200 reply,
    /// or [`Announcer::on_failure`] (any other status, network error, timeout).
    Http {
        /// The tracker.
        tracker: TrackerId,
        /// Quote it when reporting back.
        request: RequestId,
        /// The complete announce URL.
        url: String,
        /// The event it carries (for logs; it is already in the URL).
        event: Event,
    },
    /// Send `packet` to `host:port` over UDP and feed datagrams from that address to
    /// [`Announcer::on_udp_packet`]; report an unresolvable host or a send error with
    /// [`Announcer::on_failure`]. Retransmits come as further `UdpSend`s.
    UdpSend {
        /// The tracker.
        tracker: TrackerId,
        /// Quote it when reporting a failure.
        request: RequestId,
        /// Host name or IP literal (IPv6 without brackets).
        host: String,
        /// UDP port.
        port: u16,
        /// The datagram (a BEP 15 connect or announce request, at most 98 bytes).
        packet: Vec<u8>,
    },
}

/// Something that happened, for the session and the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Peers from a successful announce (de-duplicated and filtered by the codec; never empty).
    Peers {
        /// Who sent them.
        tracker: TrackerId,
        /// The addresses.
        peers: Vec<SocketAddr>,
    },
    /// Swarm counts from a successful announce (those the tracker gave).
    Swarm {
        /// Who sent them.
        tracker: TrackerId,
        /// Seeders.
        complete: Option<u32>,
        /// Leechers.
        incomplete: Option<u32>,
        /// Completed downloads ever.
        downloaded: Option<u32>,
    },
    /// A tracker's `warning message` (the announce itself succeeded).
    Warning {
        /// The tracker.
        tracker: TrackerId,
        /// Its URL.
        url: String,
        /// The text.
        message: String,
    },
    /// An announce failed; the tracker is backing off.
    TrackerError {
        /// The tracker.
        tracker: TrackerId,
        /// Its URL.
        url: String,
        /// What went wrong, for the user.
        message: String,
    },
}

/// Why an announce failed, as reported by the driver (or found by the announcer itself).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FailureKind {
    /// No reply in time.
    #[error("tracker did not answer in time")]
    Timeout,
    /// DNS, connect, TLS or socket error.
    #[error("could not reach tracker: {0}")]
    Network(String),
    /// An HTTP status other than 200.
    #[error("tracker answered http status {0}")]
    HttpStatus(u16),
    /// The tracker refused (`failure reason`, BEP 15 error packet).
    #[error("tracker refused the announce: {0}")]
    Tracker(String),
    /// The reply could not be understood; the text says how (the codec's errors already
    /// start with "tracker reply ...").
    #[error("{0}")]
    Malformed(String),
}

/// A read-only view of one tracker, for the user interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackerStatus<'a> {
    /// The announce URL.
    pub url: &'a str,
    /// Its tier (0 first).
    pub tier: usize,
    /// Failures since its last success.
    pub failures: u32,
    /// When it may be tried again, if it failed.
    pub backoff_until: Option<Instant>,
    /// Whether it accepted a `started` this session.
    pub started: bool,
    /// Whether a request to it is in flight.
    pub in_flight: bool,
    /// The last failure, for display.
    pub last_error: Option<&'a str>,
}

/// Inputs ignored and outcomes lost; for diagnostics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AnnounceCounters {
    /// UDP datagrams that did not decode, carried a wrong transaction id, or did not fit the
    /// exchange's step.
    pub ignored_packets: u64,
    /// Replies and failures for a request no longer in flight (timed out, or stopped).
    pub stale_inputs: u64,
    /// Outcomes dropped because the queue was full (the caller does not drain).
    pub dropped_outcomes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping,
    Done,
}

/// A set of tiers that keeps one tracker active: all tiers in BEP 12 mode, one each in
/// announce-to-all-tiers mode.
#[derive(Clone, Debug)]
struct Lane {
    tiers: Range<usize>,
    /// When the next announce is due (regular, early or event).
    next_announce: Instant,
    /// The tracker with a request in flight.
    busy: Option<usize>,
    /// When the last announce succeeded, and the `min interval` that came with it.
    last_success: Option<Instant>,
    min_interval: Duration,
    /// Whether a request was ever started (decides whether `completed` makes sense).
    sent_any: bool,
    /// `completed` is owed to the next tracker that already accepted `started`.
    completed_pending: bool,
}

#[derive(Clone, Debug)]
struct Tracker {
    url: String,
    transport: TrackerUrl,
    tier: usize,
    lane: usize,
    started: bool,
    tracker_id: Option<Vec<u8>>,
    failures: u32,
    /// Backing off until then (`ZERO` when not).
    retry_at: Instant,
    /// BEP 15 connection id and when it was received.
    udp_connection: Option<(u64, Instant)>,
    request: Option<Request>,
    last_error: Option<String>,
}

#[derive(Clone, Debug)]
struct Request {
    id: RequestId,
    event: Event,
    /// A `stopped` announce during shutdown: one attempt, no backoff, no outcomes.
    stopping: bool,
    /// Unsent: when to send. Sent: when it times out (or is retransmitted).
    wake: Instant,
    sent: bool,
    exchange: Exchange,
}

#[derive(Clone, Debug)]
enum Exchange {
    Http,
    Udp(UdpExchange),
}

#[derive(Clone, Debug)]
struct UdpExchange {
    step: UdpStep,
    /// The datagram of the current step; empty until an announce is built from the stats.
    packet: Vec<u8>,
    /// `n` of the `15 · 2^n` schedule.
    attempt: u32,
    /// Timeouts over the whole exchange (never reset: bounds connect/announce ping-pong).
    timeouts: u32,
    max_timeouts: u32,
    give_up_at: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UdpStep {
    Connect { tid: u32 },
    Announce { tid: u32, connection_id: u64 },
}

impl UdpStep {
    fn tid(self) -> u32 {
        match self {
            UdpStep::Connect { tid } | UdpStep::Announce { tid, .. } => tid,
        }
    }
}

/// What a request's timer calls for.
enum Timer {
    Idle,
    GiveUp,
    Retransmit { reconnect: bool },
}

/// The id of the tracker at index `idx` (indices are bounded by `max_trackers`).
fn tracker_id(idx: usize) -> TrackerId {
    TrackerId(u32::try_from(idx).unwrap_or(u32::MAX))
}

/// What a UDP datagram means for the exchange in flight.
enum UdpVerdict {
    Ignore,
    Connected(u64),
    Announced(AnnounceResponse),
    Refused(String),
}

/// The per-torrent tracker announce machine. See the module docs for the drain contract.
#[derive(Clone, Debug)]
pub struct Announcer {
    config: AnnounceConfig,
    rng: Rng,
    /// BEP 7 `key`: one per announcer, so a tracker can match our v4 and v6 announces.
    key: u32,
    trackers: Vec<Tracker>,
    /// Tracker indices per tier, in current order (shuffled, then promotions).
    tiers: Vec<Vec<TrackerId>>,
    lanes: Vec<Lane>,
    phase: Phase,
    completed_seen: bool,
    next_request: u64,
    outcomes: VecDeque<Outcome>,
    counters: AnnounceCounters,
    /// [`Announcer::next_deadline`] as last computed, until a call that can change it (every
    /// `&mut` entry point clears it): a session asks after every input, and the answer walks
    /// every tracker and lane.
    wake: Cell<Option<Option<Instant>>>,
    /// A call other than `poll_action` ran since `poll_action` last said there was nothing
    /// to do (see [`Announcer::wants_poll`]).
    poked: bool,
}

impl Announcer {
    /// An announcer for the torrent's `announce-list` tiers (pass `vec![vec![announce]]` when
    /// there is only `announce`). Unusable, duplicate and excess URLs are dropped and returned
    /// with the reason; empty tiers disappear. The first announce is due at `now`.
    pub fn new(
        tiers: Vec<Vec<String>>,
        config: AnnounceConfig,
        mut rng: Rng,
        now: Instant,
    ) -> (Announcer, Vec<UrlError>) {
        let mut rejected = Vec::new();
        let mut trackers: Vec<Tracker> = Vec::new();
        let mut tier_ids: Vec<Vec<TrackerId>> = Vec::new();
        for tier in tiers {
            let mut ids = Vec::new();
            for raw in tier {
                let url = raw.trim();
                if trackers.iter().any(|t| t.url == url) {
                    rejected.push(UrlError::Duplicate {
                        url: url::shorten(url),
                    });
                    continue;
                }
                let transport = match parse_tracker_url(url) {
                    Ok(t) => t,
                    Err(e) => {
                        rejected.push(e);
                        continue;
                    }
                };
                if trackers.len() >= config.max_trackers {
                    rejected.push(UrlError::TooMany {
                        url: url::shorten(url),
                        max: config.max_trackers,
                    });
                    continue;
                }
                let id = tracker_id(trackers.len());
                trackers.push(Tracker {
                    url: url.to_owned(),
                    transport,
                    tier: tier_ids.len(),
                    lane: 0,
                    started: false,
                    tracker_id: None,
                    failures: 0,
                    retry_at: Instant::ZERO,
                    udp_connection: None,
                    request: None,
                    last_error: None,
                });
                ids.push(id);
            }
            if !ids.is_empty() {
                // BEP 12: "the list will be shuffled when first read".
                rng.shuffle(&mut ids);
                tier_ids.push(ids);
            }
        }
        let lane = |tiers: Range<usize>| Lane {
            tiers,
            next_announce: now,
            busy: None,
            last_success: None,
            min_interval: config.default_min_interval,
            sent_any: false,
            completed_pending: false,
        };
        let lanes: Vec<Lane> = if tier_ids.is_empty() {
            Vec::new()
        } else if config.announce_to_all_tiers {
            (0..tier_ids.len()).map(|t| lane(t..t + 1)).collect()
        } else {
            vec![lane(0..tier_ids.len())]
        };
        for t in &mut trackers {
            t.lane = if config.announce_to_all_tiers {
                t.tier
            } else {
                0
            };
        }
        let key = (rng.next_u64() >> 32) as u32;
        let announcer = Announcer {
            config,
            rng,
            key,
            trackers,
            tiers: tier_ids,
            lanes,
            phase: Phase::Running,
            completed_seen: false,
            next_request: 0,
            outcomes: VecDeque::new(),
            counters: AnnounceCounters::default(),
            wake: Cell::new(None),
            poked: true,
        };
        (announcer, rejected)
    }

    /// The tiers, each in its current order (after the shuffle and any promotions).
    pub fn tiers(&self) -> &[Vec<TrackerId>] {
        &self.tiers
    }

    /// A tracker's URL.
    pub fn url(&self, tracker: TrackerId) -> Option<&str> {
        self.trackers.get(tracker.index()).map(|t| t.url.as_str())
    }

    /// A tracker's state, for display.
    pub fn status(&self, tracker: TrackerId) -> Option<TrackerStatus<'_>> {
        let t = self.trackers.get(tracker.index())?;
        Some(TrackerStatus {
            url: &t.url,
            tier: t.tier,
            failures: t.failures,
            backoff_until: (t.failures > 0).then_some(t.retry_at),
            started: t.started,
            in_flight: t.request.is_some(),
            last_error: t.last_error.as_deref(),
        })
    }

    /// The BEP 7 `key` sent with every announce.
    pub fn key(&self) -> u32 {
        self.key
    }

    /// Ignored inputs and dropped outcomes so far.
    pub fn counters(&self) -> AnnounceCounters {
        self.counters
    }

    /// Whether [`Announcer::stop`] was called and every `stopped` announce has finished.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether [`Announcer::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.phase != Phase::Running
    }

    /// The download finished during this session: owe `completed` to the working tracker
    /// (sent once, no earlier than `min interval` after the last announce). Later calls, and
    /// calls before any announce was sent (the `started` will carry `left=0`), do nothing.
    pub fn torrent_completed(&mut self, now: Instant) {
        self.wake.set(None);
        self.poked = true;
        if self.phase != Phase::Running || self.completed_seen {
            return;
        }
        self.completed_seen = true;
        for lane in &mut self.lanes {
            if lane.sent_any {
                lane.completed_pending = true;
                if let Some(last) = lane.last_success {
                    let allowed = now.max(last + lane.min_interval);
                    lane.next_announce = lane.next_announce.min(allowed);
                }
            }
        }
    }

    /// The session wants more peers: announce early, but not before the working tracker's
    /// `min interval` has passed since the last successful announce (then at that time). Does nothing
    /// while no tracker has answered yet, since we are announcing as fast as allowed anyway.
    pub fn want_more_peers(&mut self, now: Instant) {
        self.wake.set(None);
        self.poked = true;
        if self.phase != Phase::Running {
            return;
        }
        for lane in &mut self.lanes {
            if let Some(last) = lane.last_success {
                let allowed = now.max(last + lane.min_interval);
                lane.next_announce = lane.next_announce.min(allowed);
            }
        }
    }

    /// Pause, removal or shutdown: abandon requests in flight and send `stopped` to every
    /// tracker that accepted `started` (or has one in flight). Drive on until
    /// [`Announcer::is_done`].
    pub fn stop(&mut self, now: Instant) {
        self.wake.set(None);
        self.poked = true;
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Stopping;
        for idx in 0..self.trackers.len() {
            let Some(t) = self.trackers.get_mut(idx) else {
                continue;
            };
            // A `started` that left us may have registered us; a UDP exchange still at its
            // connect step has not told the tracker anything yet.
            let started_in_flight = t.request.as_ref().is_some_and(|r| {
                r.event == Event::Started
                    && match &r.exchange {
                        Exchange::Http => r.sent,
                        Exchange::Udp(x) => {
                            matches!(x.step, UdpStep::Announce { .. }) && !x.packet.is_empty()
                        }
                    }
            });
            t.request = None;
            if t.started || started_in_flight {
                self.begin(idx, Event::Stopped, true, now);
            }
        }
        for lane in &mut self.lanes {
            lane.busy = None;
        }
        self.finish_if_stopped();
    }

    /// The next action to carry out, after running every timer due at `now`; `None` when
    /// there is nothing to do until [`Announcer::next_deadline`] or the next input.
    pub fn poll_action(&mut self, now: Instant, stats: &AnnounceStats) -> Option<Action> {
        self.wake.set(None);
        self.expire(now);
        if self.phase == Phase::Running {
            self.start_due(now);
        }
        for idx in 0..self.trackers.len() {
            if let Some(action) = self.emit(idx, now, stats) {
                return Some(action);
            }
        }
        self.finish_if_stopped();
        self.poked = false;
        None
    }

    /// Whether [`Announcer::poll_action`] could have something to do at `now`: a deadline
    /// has come, or another call changed the announcer since `poll_action` last answered
    /// `None`. Otherwise that call would only answer `None` again, so a caller that asks
    /// after every input (a session does) can skip it and the [`AnnounceStats`] it needs.
    pub fn wants_poll(&self, now: Instant) -> bool {
        let wants = self.poked || self.next_deadline().is_some_and(|d| d <= now);
        #[cfg(debug_assertions)]
        if !wants {
            let stats = AnnounceStats {
                info_hash: [0; 20],
                peer_id: [0; 20],
                port: 0,
                uploaded: 0,
                downloaded: 0,
                left: 0,
            };
            let mut probe = self.clone();
            debug_assert!(
                probe.poll_action(now, &stats).is_none(),
                "an announcer that wants no poll had an action"
            );
        }
        wants
    }

    /// The next thing that happened, if any (drain after the actions).
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcomes.pop_front()
    }

    /// When [`Announcer::poll_action`] must be called next if no input arrives first; a time
    /// at or before now means "now". `None` when done or when there is no tracker.
    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(wake) = self.wake.get() {
            debug_assert_eq!(wake, self.compute_deadline(), "stale announce deadline");
            return wake;
        }
        let wake = self.compute_deadline();
        self.wake.set(Some(wake));
        wake
    }

    fn compute_deadline(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let requests = self
            .trackers
            .iter()
            .filter_map(|t| t.request.as_ref().map(|r| r.wake));
        let lanes = self
            .lanes
            .iter()
            .filter(|lane| self.phase == Phase::Running && lane.busy.is_none())
            .filter_map(|lane| {
                let earliest_retry = self.lane_trackers(lane).map(|i| self.retry_at(i)).min()?;
                Some(lane.next_announce.max(earliest_retry))
            });
        requests.chain(lanes).min()
    }

    /// The body of an HTTP 200 reply to `request`.
    pub fn on_http_response(&mut self, request: RequestId, body: &[u8], now: Instant) {
        self.wake.set(None);
        self.poked = true;
        let Some(idx) = self.find_request(request, true) else {
            self.counters.stale_inputs += 1;
            return;
        };
        match http::parse_announce_response(body, &self.config.limits) {
            Ok(response) => self.succeed(idx, response, now),
            Err(http::HttpError::Failure(reason)) => {
                self.fail(idx, FailureKind::Tracker(reason), now);
            }
            Err(e) => self.fail(idx, FailureKind::Malformed(e.to_string()), now),
        }
    }

    /// `request` failed in the driver (HTTP status, network error, DNS, its own timeout).
    pub fn on_failure(&mut self, request: RequestId, kind: FailureKind, now: Instant) {
        self.wake.set(None);
        self.poked = true;
        let Some(idx) = self.find_request(request, false) else {
            self.counters.stale_inputs += 1;
            return;
        };
        self.fail(idx, kind, now);
    }

    /// A UDP datagram from `from`, the address the driver resolved `tracker`'s host to (its
    /// family decides the size of the peer entries, BEP 15).
    pub fn on_udp_packet(
        &mut self,
        tracker: TrackerId,
        from: SocketAddr,
        packet: &[u8],
        now: Instant,
    ) {
        self.wake.set(None);
        self.poked = true;
        let idx = tracker.index();
        let limits = self.config.limits;
        let verdict = match self.trackers.get(idx).and_then(|t| t.request.as_ref()) {
            Some(Request {
                exchange: Exchange::Udp(x),
                ..
            }) => judge_udp(x.step, packet, AddressFamily::of(&from), &limits),
            _ => {
                self.counters.stale_inputs += 1;
                return;
            }
        };
        match verdict {
            UdpVerdict::Ignore => self.counters.ignored_packets += 1,
            UdpVerdict::Announced(response) => self.succeed(idx, response, now),
            UdpVerdict::Refused(message) => {
                if let Some(t) = self.trackers.get_mut(idx) {
                    // The error may be about the connection id ("connection id mismatch"
                    // from opentracker): never reuse it.
                    t.udp_connection = None;
                }
                self.fail(idx, FailureKind::Tracker(message), now);
            }
            UdpVerdict::Connected(connection_id) => {
                let tid = self.transaction_id();
                let Some(t) = self.trackers.get_mut(idx) else {
                    return;
                };
                t.udp_connection = Some((connection_id, now));
                if let Some(Request {
                    exchange: Exchange::Udp(x),
                    wake,
                    sent,
                    ..
                }) = &mut t.request
                {
                    x.step = UdpStep::Announce { tid, connection_id };
                    x.packet.clear();
                    // BEP 15's example restarts the schedule for the announce after a connect.
                    x.attempt = 0;
                    *sent = false;
                    *wake = now;
                }
            }
        }
    }

    // ---- internals ----

    fn retry_at(&self, idx: usize) -> Instant {
        self.trackers.get(idx).map_or(Instant::MAX, |t| t.retry_at)
    }

    /// The lane's trackers in walk order: tier by tier, each tier in its current order.
    fn lane_trackers<'a>(&'a self, lane: &Lane) -> impl Iterator<Item = usize> + 'a {
        self.tiers
            .get(lane.tiers.clone())
            .unwrap_or_default()
            .iter()
            .flatten()
            .map(|id| id.index())
    }

    fn transaction_id(&mut self) -> u32 {
        (self.rng.next_u64() >> 32) as u32
    }

    fn find_request(&self, request: RequestId, http_only: bool) -> Option<usize> {
        self.trackers.iter().position(|t| {
            t.request.as_ref().is_some_and(|r| {
                r.id == request && (!http_only || matches!(r.exchange, Exchange::Http))
            })
        })
    }

    fn push_outcome(&mut self, outcome: Outcome) {
        if self.config.max_outcomes == 0 {
            self.counters.dropped_outcomes += 1;
            return;
        }
        while self.outcomes.len() >= self.config.max_outcomes {
            self.outcomes.pop_front();
            self.counters.dropped_outcomes += 1;
        }
        self.outcomes.push_back(outcome);
    }

    /// Starts the announce of every idle lane that is due, with its first tracker not backing
    /// off (BEP 12 order).
    fn start_due(&mut self, now: Instant) {
        for l in 0..self.lanes.len() {
            let Some(lane) = self.lanes.get(l) else {
                continue;
            };
            if lane.busy.is_some() || now < lane.next_announce {
                continue;
            }
            let pick = self.lane_trackers(lane).find(|&i| self.retry_at(i) <= now);
            let Some(idx) = pick else {
                continue;
            };
            let event = match self.trackers.get(idx) {
                Some(t) if !t.started => Event::Started,
                Some(_) if lane.completed_pending => Event::Completed,
                _ => Event::None,
            };
            self.begin(idx, event, false, now);
            if let Some(lane) = self.lanes.get_mut(l) {
                lane.busy = Some(idx);
                lane.sent_any = true;
            }
        }
    }

    /// Creates a request (unsent, due now) to tracker `idx`.
    fn begin(&mut self, idx: usize, event: Event, stopping: bool, now: Instant) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let tid = self.transaction_id();
        let (max_timeouts, give_up_at) = if stopping {
            // One attempt: no retransmit, and the whole exchange within stop_timeout.
            (0, now + self.config.stop_timeout)
        } else {
            (self.config.udp_max_retransmits, Instant::MAX)
        };
        let Some(t) = self.trackers.get_mut(idx) else {
            return;
        };
        let exchange = match &t.transport {
            TrackerUrl::Http => Exchange::Http,
            TrackerUrl::Udp { .. } => {
                let step = match t.udp_connection {
                    Some((connection_id, at)) if now < at + udp::CONNECTION_ID_LIFETIME => {
                        UdpStep::Announce { tid, connection_id }
                    }
                    _ => UdpStep::Connect { tid },
                };
                Exchange::Udp(UdpExchange {
                    step,
                    packet: connect_packet(step),
                    attempt: 0,
                    timeouts: 0,
                    max_timeouts,
                    give_up_at,
                })
            }
        };
        t.request = Some(Request {
            id,
            event,
            stopping,
            wake: now,
            sent: false,
            exchange,
        });
    }

    /// Runs the timers of requests in flight: HTTP timeouts, UDP retransmits and give-ups.
    fn expire(&mut self, now: Instant) {
        for idx in 0..self.trackers.len() {
            match self.timer(idx, now) {
                Timer::Idle => {}
                Timer::GiveUp => self.fail(idx, FailureKind::Timeout, now),
                Timer::Retransmit { reconnect } => {
                    let tid = reconnect.then(|| self.transaction_id());
                    let Some(t) = self.trackers.get_mut(idx) else {
                        continue;
                    };
                    let Some(r) = &mut t.request else {
                        continue;
                    };
                    if let Exchange::Udp(x) = &mut r.exchange {
                        x.timeouts += 1;
                        x.attempt += 1;
                        if let Some(tid) = tid {
                            // BEP 15: "it is necessary to rerequest a connection ID when it
                            // has expired": the retransmit becomes a fresh connect.
                            t.udp_connection = None;
                            x.step = UdpStep::Connect { tid };
                            x.packet = connect_packet(x.step);
                        }
                    }
                    r.sent = false;
                    r.wake = now;
                }
            }
        }
    }

    /// What the timer of tracker `idx`'s request calls for at `now`.
    fn timer(&self, idx: usize, now: Instant) -> Timer {
        let Some(t) = self.trackers.get(idx) else {
            return Timer::Idle;
        };
        let Some(r) = &t.request else {
            return Timer::Idle;
        };
        if !r.sent || now < r.wake {
            return Timer::Idle;
        }
        match &r.exchange {
            Exchange::Http => Timer::GiveUp,
            Exchange::Udp(x) if x.timeouts >= x.max_timeouts || now >= x.give_up_at => {
                Timer::GiveUp
            }
            Exchange::Udp(x) => {
                let expired = t
                    .udp_connection
                    .is_none_or(|(_, at)| now >= at + udp::CONNECTION_ID_LIFETIME);
                Timer::Retransmit {
                    reconnect: matches!(x.step, UdpStep::Announce { .. }) && expired,
                }
            }
        }
    }

    /// The pending send of tracker `idx`, if one is due.
    fn emit(&mut self, idx: usize, now: Instant, stats: &AnnounceStats) -> Option<Action> {
        match self.build(idx, now, stats)? {
            Ok(action) => Some(action),
            Err(kind) => {
                self.fail(idx, kind, now);
                None
            }
        }
    }

    /// Builds (and marks sent) the pending send of tracker `idx`, if one is due.
    fn build(
        &mut self,
        idx: usize,
        now: Instant,
        stats: &AnnounceStats,
    ) -> Option<Result<Action, FailureKind>> {
        let key = self.key;
        let num_want = self.config.num_want;
        let timeout = self.config.http_timeout;
        let stop_timeout = self.config.stop_timeout;
        let tracker = tracker_id(idx);
        let t = self.trackers.get_mut(idx)?;
        let r = t.request.as_mut()?;
        if r.sent || now < r.wake {
            return None;
        }
        let mut req =
            tracker::AnnounceRequest::new(stats.info_hash, stats.peer_id, stats.port, stats.left);
        req.uploaded = stats.uploaded;
        req.downloaded = stats.downloaded;
        req.event = r.event;
        req.num_want = Some(if r.stopping { 0 } else { num_want });
        req.key = Some(key);
        req.tracker_id = t.tracker_id.as_deref();
        match (&mut r.exchange, &t.transport) {
            (Exchange::Http, _) => {
                let mut url = String::new();
                if let Err(e) = http::write_announce_url(&mut url, &t.url, &req) {
                    // Validated at construction, so this cannot happen; fail soft anyway.
                    return Some(Err(FailureKind::Malformed(e.to_string())));
                }
                r.sent = true;
                r.wake = now + if r.stopping { stop_timeout } else { timeout };
                Some(Ok(Action::Http {
                    tracker,
                    request: r.id,
                    url,
                    event: r.event,
                }))
            }
            (Exchange::Udp(x), TrackerUrl::Udp { host, port }) => {
                if let (true, UdpStep::Announce { tid, connection_id }) =
                    (x.packet.is_empty(), x.step)
                {
                    udp::AnnounceRequest::new(connection_id, tid, &req).encode(&mut x.packet);
                }
                r.sent = true;
                r.wake = (now + udp::retransmit_timeout(x.attempt)).min(x.give_up_at);
                Some(Ok(Action::UdpSend {
                    tracker,
                    request: r.id,
                    host: host.clone(),
                    port: *port,
                    packet: x.packet.clone(),
                }))
            }
            (Exchange::Udp(_), TrackerUrl::Http) => Some(Err(FailureKind::Malformed(
                "internal: udp exchange for an http tracker".to_owned(),
            ))),
        }
    }

    /// The backoff after a tracker's `failures`-th failure: doubling, capped, minus jitter.
    fn backoff(&mut self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let full = self
            .config
            .backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.config.backoff_cap);
        let micros = u64::try_from(full.as_micros()).unwrap_or(u64::MAX);
        let jitter = self.rng.below(micros / 4 + 1);
        Duration::from_micros(micros - jitter)
    }

    fn fail(&mut self, idx: usize, kind: FailureKind, now: Instant) {
        let Some(request) = self.trackers.get_mut(idx).and_then(|t| t.request.take()) else {
            return;
        };
        if request.stopping {
            self.finish_if_stopped();
            return;
        }
        let failures = self
            .trackers
            .get(idx)
            .map_or(1, |t| t.failures.saturating_add(1));
        let backoff = self.backoff(failures);
        let message = truncate(kind.to_string(), self.config.limits.max_message);
        let Some(t) = self.trackers.get_mut(idx) else {
            return;
        };
        t.failures = failures;
        t.retry_at = now + backoff;
        t.last_error = Some(message.clone());
        let (lane, url) = (t.lane, t.url.clone());
        if let Some(lane) = self.lanes.get_mut(lane) {
            lane.busy = None;
        }
        self.push_outcome(Outcome::TrackerError {
            tracker: tracker_id(idx),
            url,
            message,
        });
    }

    fn succeed(&mut self, idx: usize, response: AnnounceResponse, now: Instant) {
        let Some(request) = self.trackers.get_mut(idx).and_then(|t| t.request.take()) else {
            return;
        };
        if request.stopping {
            self.finish_if_stopped();
            return;
        }
        let default_min = self.config.default_min_interval;
        let Some(t) = self.trackers.get_mut(idx) else {
            return;
        };
        t.failures = 0;
        t.retry_at = Instant::ZERO;
        t.last_error = None;
        t.started = true;
        if response.tracker_id.is_some() {
            // BEP 3: keep the last one given; a reply without one does not clear it.
            t.tracker_id = response.tracker_id;
        }
        let (tier, lane_idx, url) = (t.tier, t.lane, t.url.clone());
        let tracker = tracker_id(idx);
        // BEP 12: "if a connection with a tracker is successful, it will be moved to the
        // front of the tier".
        if let Some(ids) = self.tiers.get_mut(tier) {
            if let Some(pos) = ids.iter().position(|&id| id == tracker) {
                if let Some(head) = ids.get_mut(..=pos) {
                    head.rotate_right(1);
                }
            }
        }
        if let Some(lane) = self.lanes.get_mut(lane_idx) {
            lane.busy = None;
            if request.event == Event::Completed {
                lane.completed_pending = false;
            }
            let min_interval = response.min_interval.unwrap_or(default_min);
            lane.last_success = Some(now);
            lane.min_interval = min_interval;
            lane.next_announce = now + response.interval.max(min_interval);
            if lane.completed_pending {
                // Completion happened while this announce was in flight.
                lane.next_announce = lane.next_announce.min(now + min_interval);
            }
        }
        if let Some(message) = response.warning {
            self.push_outcome(Outcome::Warning {
                tracker,
                url,
                message,
            });
        }
        if response.complete.is_some()
            || response.incomplete.is_some()
            || response.downloaded.is_some()
        {
            self.push_outcome(Outcome::Swarm {
                tracker,
                complete: response.complete,
                incomplete: response.incomplete,
                downloaded: response.downloaded,
            });
        }
        if !response.peers.is_empty() {
            self.push_outcome(Outcome::Peers {
                tracker,
                peers: response.peers,
            });
        }
    }

    fn finish_if_stopped(&mut self) {
        if self.phase == Phase::Stopping && self.trackers.iter().all(|t| t.request.is_none()) {
            self.phase = Phase::Done;
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary (driver-supplied error text is
/// stored per tracker, so it is bounded like the tracker's own messages).
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The connect request of a connect step; empty for an announce step (built at send time,
/// from the stats of that moment).
fn connect_packet(step: UdpStep) -> Vec<u8> {
    let mut packet = Vec::new();
    if let UdpStep::Connect { tid } = step {
        udp::ConnectRequest {
            transaction_id: tid,
        }
        .encode(&mut packet);
    }
    packet
}

/// Decides what a datagram means for an exchange at `step` (BEP 15: a wrong transaction id,
/// or a reply of the wrong kind, is ignored; an error for our transaction is a refusal).
fn judge_udp(
    step: UdpStep,
    packet: &[u8],
    family: AddressFamily,
    limits: &ResponseLimits,
) -> UdpVerdict {
    let Ok(response) = udp::Response::decode(packet, family) else {
        return UdpVerdict::Ignore;
    };
    if response.check_transaction(step.tid()).is_err() {
        return UdpVerdict::Ignore;
    }
    match (step, response) {
        (_, udp::Response::Error(e)) => UdpVerdict::Refused(e.message_text(limits.max_message)),
        (UdpStep::Connect { .. }, udp::Response::Connect(c)) => {
            UdpVerdict::Connected(c.connection_id)
        }
        (UdpStep::Announce { .. }, udp::Response::Announce(a)) => {
            UdpVerdict::Announced(a.to_response(limits))
        }
        _ => UdpVerdict::Ignore,
    }
}
