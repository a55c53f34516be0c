//! Our requests to the peer: what is outstanding, what we gave up on, and how deep to queue.

use std::collections::VecDeque;
use std::time::Duration;

use super::config::{BLOCK_LEN, PeerConfig};
use crate::time::Instant;
use crate::wire::BlockRequest;

/// A request we sent and still expect an answer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Outstanding {
    pub block: BlockRequest,
    pub sent_at: Instant,
}

/// Outstanding requests in send order, plus a bounded memory of requests we gave up on
/// (cancelled, timed out, released by a choke) so that their late answers are recognised.
///
/// `repr(C)`: what the deadline and the queue depth read comes first, the abandoned list last.
#[derive(Clone, Debug)]
#[repr(C)]
pub(super) struct Pipeline {
    outstanding: VecDeque<Outstanding>,
    pub last_block_at: Option<Instant>,
    /// Smoothed block latency (request sent → block received), microseconds.
    srtt: Option<u64>,
    slow_start_depth: usize,
    slow_start: bool,
    /// A request timed out and no block came since: the depth stays at its floor.
    snubbed: bool,
    /// Given-up requests, oldest first; bounded by `abandoned_cap`, oldest forgotten.
    abandoned: VecDeque<BlockRequest>,
    abandoned_cap: usize,
}

impl Pipeline {
    pub fn new(cfg: &PeerConfig) -> Self {
        let cap = cfg.max_outstanding.max(1);
        Pipeline {
            outstanding: VecDeque::new(),
            abandoned: VecDeque::new(),
            abandoned_cap: cap,
            srtt: None,
            slow_start: true,
            slow_start_depth: cfg.initial_queue_depth.max(1),
            snubbed: false,
            last_block_at: None,
        }
    }

    pub fn len(&self) -> usize {
        self.outstanding.len()
    }

    /// Given-up requests remembered, and their cap.
    pub fn abandoned_len(&self) -> (usize, usize) {
        (self.abandoned.len(), self.abandoned_cap)
    }

    pub fn iter(&self) -> impl Iterator<Item = BlockRequest> + '_ {
        self.outstanding.iter().map(|o| o.block)
    }

    pub fn contains(&self, block: BlockRequest) -> bool {
        self.outstanding.iter().any(|o| o.block == block)
    }

    pub fn push(&mut self, block: BlockRequest, now: Instant) {
        self.outstanding.push_back(Outstanding {
            block,
            sent_at: now,
        });
        // A re-request of something we gave up on stays in `abandoned` too: the peer may still
        // answer the old request (a reject for our cancel, or the block) before the new one,
        // and that first answer takes the outstanding entry; the second must then be
        // recognised as late, not as an answer to a request we never sent.
    }

    /// Removes and returns the outstanding request for `block` (answered by a piece or a
    /// reject). Blocks usually arrive in request order, so the scan ends at the front.
    pub fn take(&mut self, block: BlockRequest) -> Option<Outstanding> {
        let i = self.outstanding.iter().position(|o| o.block == block)?;
        let taken = self.outstanding.remove(i);
        crate::fifo::rewind_if_empty(&mut self.outstanding);
        taken
    }

    /// Forgets a given-up request whose late answer arrived; whether it was remembered.
    pub fn take_abandoned(&mut self, block: BlockRequest) -> bool {
        match self.abandoned.iter().position(|b| *b == block) {
            Some(i) => {
                self.abandoned.remove(i);
                true
            }
            None => false,
        }
    }

    fn abandon(&mut self, block: BlockRequest) {
        if self.abandoned.len() >= self.abandoned_cap {
            self.abandoned.pop_front();
        }
        self.abandoned.push_back(block);
    }

    /// Gives up on an outstanding request (we cancel it); whether it was outstanding.
    pub fn cancel(&mut self, block: BlockRequest) -> bool {
        match self.take(block) {
            Some(_) => {
                self.abandon(block);
                true
            }
            None => false,
        }
    }

    /// Gives up on every outstanding request (choke without the fast extension), appending
    /// them to `out` in send order.
    pub fn release_all(&mut self, out: &mut Vec<BlockRequest>) {
        while let Some(o) = self.outstanding.pop_front() {
            out.push(o.block);
            self.abandon(o.block);
        }
        // BEP 3 choke: the pipeline restarts small when the peer unchokes again.
        self.end_slow_start();
    }

    /// A requested block arrived: feed the latency estimate and the slow start.
    pub fn on_block(&mut self, now: Instant, sent_at: Instant) {
        let sample = micros(now.saturating_duration_since(sent_at));
        // RFC 6298-style smoothing (1/8 gain) of the request-to-block latency.
        self.srtt = Some(match self.srtt {
            None => sample,
            Some(s) => s - s / 8 + sample / 8,
        });
        self.last_block_at = Some(now);
        self.snubbed = false;
        if self.slow_start {
            self.slow_start_depth = self.slow_start_depth.saturating_add(1);
        }
    }

    pub fn end_slow_start(&mut self) {
        self.slow_start = false;
    }

    pub fn latency(&self) -> Option<Duration> {
        self.srtt.map(Duration::from_micros)
    }

    pub fn is_snubbed(&self) -> bool {
        self.snubbed
    }

    /// How many requests to keep outstanding (libtorrent's `desired_queue_size`): the
    /// bandwidth-delay product `rate × target_queue_time / 16 KiB`, within
    /// `[min_queue_depth, min(max_outstanding, peer's reqq)]`. During slow start the depth
    /// grows by one per block received (doubling per round trip), until the rate-based value
    /// catches up; a snubbed peer gets the floor.
    pub fn desired_depth(&mut self, cfg: &PeerConfig, rate: u64, peer_reqq: usize) -> usize {
        let max = cfg.max_outstanding.min(peer_reqq).max(1);
        let min = cfg.min_queue_depth.clamp(1, max);
        if self.snubbed {
            return min;
        }
        let target = u128::from(micros(cfg.target_queue_time));
        let by_rate = u128::from(rate) * target / 1_000_000 / u128::from(BLOCK_LEN);
        let by_rate = usize::try_from(by_rate).unwrap_or(usize::MAX);
        if self.slow_start && by_rate >= self.slow_start_depth {
            self.slow_start = false;
        }
        let depth = if self.slow_start {
            self.slow_start_depth
        } else {
            by_rate
        };
        depth.clamp(min, max)
    }

    /// The current request timeout: `factor ×` smoothed latency, within min..=max.
    pub fn timeout(&self, cfg: &PeerConfig) -> Duration {
        let by_latency = self
            .latency()
            .unwrap_or(Duration::ZERO)
            .saturating_mul(cfg.request_timeout_latency_factor);
        let max = cfg.request_timeout_max.max(cfg.request_timeout_min);
        by_latency.clamp(cfg.request_timeout_min, max)
    }

    /// When the oldest outstanding request times out. A request times out after `timeout`
    /// without progress: counted from its sending or from the peer's last block, whichever is
    /// later, so a deep queue served steadily never times out, and a stalled peer times out
    /// all at once.
    pub fn deadline(&self, cfg: &PeerConfig) -> Option<Instant> {
        let oldest = self.outstanding.front()?;
        let since = self
            .last_block_at
            .map_or(oldest.sent_at, |b| b.max(oldest.sent_at));
        Some(since + self.timeout(cfg))
    }

    /// Gives up on every request whose deadline passed, appending them to `out`; marks the
    /// peer snubbed if any did.
    pub fn expire(&mut self, now: Instant, cfg: &PeerConfig, out: &mut Vec<BlockRequest>) {
        let timeout = self.timeout(cfg);
        let progress = self.last_block_at.unwrap_or(Instant::ZERO);
        let mut i = 0;
        while let Some(o) = self.outstanding.get(i).copied() {
            if o.sent_at.max(progress) + timeout <= now {
                self.outstanding.remove(i);
                self.abandon(o.block);
                out.push(o.block);
            } else {
                i += 1;
            }
        }
        if !out.is_empty() {
            self.snubbed = true;
            self.slow_start = false;
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
