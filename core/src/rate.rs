//! A rolling-window transfer rate meter, and the lifetime byte total beside it.
//!
//! The choker (BEP 3, "Choking and optimistic unchoking") ranks peers by their download rate
//! "over a rolling 20-second average" in mainline BitTorrent; libtorrent uses a similar window.
//! [`RateMeter`] keeps a fixed ring of [`BUCKETS`] buckets, so its memory is constant whatever
//! the window, and [`RateMeter::record`] is O(1) (advancing past stale buckets clears at most
//! [`BUCKETS`] of them, however far time jumped: a simulator may jump hours).
//!
//! What the rate means, exactly: the bytes recorded in the span from the start of the oldest
//! bucket still in the window (or the meter's creation, if later) up to `now`, divided by that
//! span. A steady stream therefore reads as its true rate (within one sample), with no sawtooth
//! when the oldest bucket drops out.
//!
//! The very start: the span is never taken shorter than one bucket (window / [`BUCKETS`], 1 s for
//! the default 20 s window). Dividing 16 KiB received 1 µs after connecting by 1 µs would claim
//! 16 GB/s and win a choke slot on noise; with the floor the meter under-reads during its first
//! bucket and is exact after it. Mainline BitTorrent's `RateMeasure` does the same with its
//! one-second "fudge".

use crate::time::Instant;
use std::time::Duration;

/// Number of buckets in every meter's ring; a bucket spans `window / BUCKETS`.
pub const BUCKETS: usize = 20;

/// The default window: 20 s, what mainline BitTorrent averages over for choking.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(20);

// `BUCKETS` as a u64 for epoch arithmetic (20 fits; the cast is checked at compile time below).
const BUCKETS_U64: u64 = BUCKETS as u64;
const _: () = assert!(BUCKETS > 0 && BUCKETS_U64 as usize == BUCKETS);

/// Bytes per second over a rolling window, plus the lifetime total; constant memory.
///
/// The scalars come first (`repr(C)`), with the ring's sum beside them in the first 64 bytes:
/// reading the rate of a meter written in the current bucket touches those, not the ring (a
/// peer's download rate is read for every request it is sent). Not aligned to a cache line:
/// the padding grew a connection by 256 bytes and cost far more misses than it saved.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct RateMeter {
    /// Microseconds per bucket, at least 1.
    width: u64,
    /// Epoch (`micros / width`) of the newest bucket written or cleared.
    epoch: u64,
    /// When the meter was created: nothing before it can have been recorded.
    start: Instant,
    /// The latest `now` seen, so that a clock stepping backwards cannot corrupt the ring.
    last: Instant,
    /// Every byte ever recorded (saturating).
    total: u64,
    /// The sum of `buckets`: the window's bytes while `now` is still in bucket `epoch`.
    in_ring: u128,
    /// Bytes per bucket; bucket for epoch `e` lives at `e % BUCKETS`.
    buckets: [u64; BUCKETS],
}

impl RateMeter {
    /// A meter created at `now`, averaging over [`DEFAULT_WINDOW`].
    pub fn new(now: Instant) -> Self {
        Self::with_window(now, DEFAULT_WINDOW)
    }

    /// A meter created at `now`, averaging over `window` (rounded down to a multiple of
    /// [`BUCKETS`] microseconds, and at least [`BUCKETS`] µs).
    pub fn with_window(now: Instant, window: Duration) -> Self {
        let micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        let width = (micros / BUCKETS_U64).max(1);
        RateMeter {
            width,
            epoch: now.as_micros() / width,
            start: now,
            last: now,
            total: 0,
            in_ring: 0,
            buckets: [0; BUCKETS],
        }
    }

    /// The effective window: [`BUCKETS`] buckets.
    pub fn window(&self) -> Duration {
        Duration::from_micros(self.width.saturating_mul(BUCKETS_U64))
    }

    /// Records `bytes` transferred at `now` (a `now` earlier than one already seen counts as
    /// that later time).
    pub fn record(&mut self, now: Instant, bytes: u64) {
        let now = now.max(self.last);
        self.last = now;
        let e = now.as_micros() / self.width;
        self.advance(e);
        if let Some(b) = self.buckets.get_mut(slot(e)) {
            let before = *b;
            *b = b.saturating_add(bytes);
            self.in_ring += u128::from(*b - before);
        }
        self.total = self.total.saturating_add(bytes);
    }

    /// Bytes per second over the window ending at `now` (see the module docs for the span and
    /// the start-up floor). Zero when nothing arrived within the window.
    pub fn rate(&self, now: Instant) -> u64 {
        let now = now.max(self.last);
        let e = now.as_micros() / self.width;
        // The window holds epochs `oldest..=e`.
        let oldest = e.saturating_sub(BUCKETS_U64 - 1);
        let sum = if e == self.epoch {
            // Every bucket of the ring is in the window (those of epochs before the meter
            // existed were never written).
            self.in_ring
        } else {
            self.sum_since(oldest)
        };
        if sum == 0 {
            return 0;
        }
        let span_start = self
            .start
            .as_micros()
            .max(oldest.saturating_mul(self.width));
        let span = now.as_micros().saturating_sub(span_start).max(self.width);
        u64::try_from(sum * 1_000_000 / u128::from(span)).unwrap_or(u64::MAX)
    }

    /// Every byte recorded since creation (saturating at `u64::MAX`).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The bytes in the buckets of epochs `oldest..=self.epoch`.
    fn sum_since(&self, oldest: u64) -> u128 {
        let mut sum: u128 = 0;
        for k in 0..BUCKETS_U64 {
            let Some(be) = self.epoch.checked_sub(k) else {
                break;
            };
            if be < oldest {
                break;
            }
            sum += u128::from(self.buckets.get(slot(be)).copied().unwrap_or(0));
        }
        sum
    }

    /// Moves the ring forward to epoch `e`, zeroing the buckets it passes over.
    fn advance(&mut self, e: u64) {
        if e <= self.epoch {
            return;
        }
        let gap = e - self.epoch;
        if gap >= BUCKETS_U64 {
            self.buckets = [0; BUCKETS];
            self.in_ring = 0;
        } else {
            for k in 1..=gap {
                if let Some(b) = self.buckets.get_mut(slot(self.epoch + k)) {
                    self.in_ring = self.in_ring.saturating_sub(u128::from(*b));
                    *b = 0;
                }
            }
        }
        self.epoch = e;
    }
}

/// The ring index of epoch `e`.
fn slot(e: u64) -> usize {
    // < BUCKETS, so the cast cannot truncate.
    (e % BUCKETS_U64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `rate` on a current meter reads only the first 64 bytes.
    #[test]
    fn scalars_fit_64_bytes() {
        assert!(std::mem::offset_of!(RateMeter, buckets) <= 64);
    }

    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }
    fn ms(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    #[test]
    fn empty_meter_reads_zero() {
        let m = RateMeter::new(s(5));
        assert_eq!(m.rate(s(5)), 0);
        assert_eq!(m.rate(s(500)), 0);
        assert_eq!(m.total(), 0);
        assert_eq!(m.window(), Duration::from_secs(20));
    }

    #[test]
    fn steady_stream_reads_its_true_rate_at_any_phase() {
        // 1000 bytes every 100 ms = 10_000 B/s, read at many sub-bucket phases: within one
        // sample (1000 B over >= 19 s, ~53 B/s) of the truth, with no sawtooth at bucket edges.
        let mut m = RateMeter::new(Instant::ZERO);
        for i in 1..=600u64 {
            m.record(ms(i * 100), 1000);
            if i < 200 {
                continue; // the young meter is checked below
            }
            for probe in [0, 37, 99] {
                let r = m.rate(ms(i * 100 + probe));
                assert!((9_940..=10_060).contains(&r), "at {i}+{probe}ms: {r}");
            }
        }
        // During the first window the span is the meter's age, so the reading is exact.
        let mut young = RateMeter::new(Instant::ZERO);
        for i in 1..=100u64 {
            young.record(ms(i * 100), 1000);
            if i >= 10 {
                assert_eq!(young.rate(ms(i * 100)), 10_000);
            }
        }
        assert_eq!(m.total(), 600_000);
    }

    #[test]
    fn start_up_floor_is_one_bucket() {
        let mut m = RateMeter::new(s(100));
        // 16 KiB one microsecond after creation: divided by 1 s, not 1 µs.
        m.record(Instant::from_micros(100_000_001), 16_384);
        assert_eq!(m.rate(Instant::from_micros(100_000_001)), 16_384);
        // After 4 s the span is the real 4 s.
        assert_eq!(m.rate(s(104)), 4096);
    }

    #[test]
    fn young_meter_divides_by_its_age_not_the_window() {
        let mut m = RateMeter::new(s(10));
        m.record(s(12), 5000);
        m.record(s(15), 5000);
        // 10_000 bytes over the 5 s since creation.
        assert_eq!(m.rate(s(15)), 2000);
    }

    #[test]
    fn old_bytes_leave_the_window() {
        let mut m = RateMeter::new(Instant::ZERO);
        m.record(s(30), 20_000);
        // Window at t=40 covers [21, 40]: span 19 s + 0.
        assert_eq!(m.rate(s(40)), 20_000 / 19);
        // At t=49.999 the 30 s bucket is still the oldest one in the window.
        assert_eq!(m.rate(ms(49_999)), 20_000_000 / 19_999);
        // At t=50 it has gone.
        assert_eq!(m.rate(s(50)), 0);
    }

    #[test]
    fn time_jump_of_hours_clears_everything() {
        let mut m = RateMeter::new(Instant::ZERO);
        for i in 0..20 {
            m.record(s(i), 1_000_000);
        }
        let later = s(5 * 3600);
        assert_eq!(m.rate(later), 0);
        m.record(later, 2000);
        assert_eq!(m.rate(later + Duration::from_secs(1)), 2000 / 19);
        assert_eq!(m.total(), 20_002_000);
        // And the ring was not left with stale buckets that come back.
        assert_eq!(m.rate(later + Duration::from_secs(21)), 0);
    }

    #[test]
    fn partial_jump_clears_only_the_skipped_buckets() {
        let mut m = RateMeter::new(Instant::ZERO);
        m.record(s(20), 1900);
        m.record(s(25), 1900); // 5 buckets skipped and zeroed
        m.record(s(38), 1900);
        // Window at 39 covers [20, 39]: 3 * 1900 over 19 s.
        assert_eq!(m.rate(s(39)), 300);
        // At 40, the t=20 bucket is out.
        assert_eq!(m.rate(s(40)), 2 * 1900 / 19);
    }

    #[test]
    fn clock_stepping_back_is_treated_as_no_time() {
        let mut m = RateMeter::new(Instant::ZERO);
        m.record(s(30), 1000);
        m.record(s(10), 1000); // counts at t=30
        assert_eq!(m.rate(s(5)), m.rate(s(30)));
        assert_eq!(m.rate(s(30)), 2000 / 19);
    }

    #[test]
    fn custom_window_and_tiny_window() {
        let mut m = RateMeter::with_window(Instant::ZERO, Duration::from_secs(5));
        assert_eq!(m.window(), Duration::from_secs(5));
        m.record(s(10), 5000);
        assert_eq!(m.rate(ms(10_250)), 5000 * 1_000_000 / 4_750_000);
        assert_eq!(m.rate(ms(15_000)), 0);
        let t = RateMeter::with_window(Instant::ZERO, Duration::ZERO);
        assert_eq!(t.window(), Duration::from_micros(20));
    }

    #[test]
    fn huge_values_saturate() {
        let mut m = RateMeter::new(Instant::ZERO);
        m.record(s(1), u64::MAX);
        m.record(s(1), u64::MAX);
        m.record(s(2), u64::MAX);
        assert_eq!(m.total(), u64::MAX);
        assert_eq!(m.rate(s(2)), u64::MAX);
        let mut end = RateMeter::new(Instant::MAX);
        end.record(Instant::MAX, 10);
        assert_eq!(end.rate(Instant::MAX), 10);
    }

    proptest! {
        /// The meter agrees with a naive model that keeps every sample.
        #[test]
        fn matches_naive_model(
            window_s in 1u64..40,
            samples in proptest::collection::vec((0u64..5_000_000, 0u64..100_000), 0..60),
            probe in 0u64..20_000_000,
        ) {
            let window = Duration::from_secs(window_s);
            let mut m = RateMeter::with_window(Instant::ZERO, window);
            let width = window_s * 1_000_000 / 20;
            let mut t = 0u64;
            let mut log = Vec::new();
            for (dt, bytes) in samples {
                t += dt;
                m.record(Instant::from_micros(t), bytes);
                log.push((t, bytes));
            }
            let naive = |now: u64| {
                let oldest = (now / width).saturating_sub(19);
                let sum: u128 = log
                    .iter()
                    .filter(|(ts, _)| ts / width >= oldest)
                    .map(|(_, b)| u128::from(*b))
                    .sum();
                let span = (now - oldest * width).max(width);
                if sum == 0 { 0 } else { (sum * 1_000_000 / u128::from(span)) as u64 }
            };
            // At the last sample (the ring's running sum) and later (the buckets summed).
            for now in [t, t + probe] {
                prop_assert_eq!(m.rate(Instant::from_micros(now)), naive(now));
            }
        }
    }
}
