//! A token bucket for upload and download rate limits.
//!
//! Exact integer arithmetic: tokens are counted in micro-bytes (10⁻⁶ byte), so `rate` bytes/s
//! over `dt` µs adds exactly `rate * dt` micro-bytes, with no rounding to drift over hours. The
//! products are taken in `i128` (saturating), so a 10 GB/s limit over days cannot overflow, and
//! the bucket never holds more than `burst` bytes, so a long idle spell (or a simulator jumping
//! hours ahead) grants at most one burst.
//!
//! The core never polls: when a transfer has to wait, [`TokenBucket::next_available`] gives the
//! exact instant at which the bytes will be there, for the caller's `poll_timeout`.
//!
//! Bytes that have already moved (a received block cannot be refused) are charged with
//! [`TokenBucket::charge`], which may leave the bucket in debt; nothing is granted until the
//! debt is paid back at the configured rate.

use crate::time::Instant;

/// Micro-bytes per byte.
const SCALE: i128 = 1_000_000;

/// A token bucket: `rate` bytes/s refill (or unlimited), at most `burst` bytes banked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Refill in bytes per second; `None` is unlimited.
    rate: Option<u64>,
    /// Capacity in bytes, at least 1.
    burst: u64,
    /// Banked micro-bytes as of `last`: at most `burst * SCALE`, negative when in debt.
    tokens: i128,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

impl TokenBucket {
    /// A bucket at `now` refilling at `rate` bytes/s (`None`: unlimited) holding at most
    /// `burst` bytes (at least 1: a zero burst could never grant anything, and a caller waiting
    /// on it would spin). It starts full. A burst of at least one block (16 KiB) lets a whole
    /// block go at once.
    pub fn new(now: Instant, rate: Option<u64>, burst: u64) -> Self {
        let burst = burst.max(1);
        TokenBucket {
            rate,
            burst,
            tokens: cap(burst),
            last: now,
        }
    }

    /// An unlimited bucket (grants everything at once; `burst` is 64 KiB if a limit is set later).
    pub fn unlimited(now: Instant) -> Self {
        Self::new(now, None, 64 * 1024)
    }

    /// The refill rate in bytes/s; `None` means unlimited.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// The capacity in bytes.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Whole bytes that could be taken at `now` (`u64::MAX` when unlimited; 0 while in debt).
    pub fn available(&self, now: Instant) -> u64 {
        if self.rate.is_none() {
            return u64::MAX;
        }
        whole_bytes(self.tokens_at(now))
    }

    /// Takes up to `n` bytes at `now` and returns how many were granted (`n` when unlimited).
    pub fn try_take(&mut self, now: Instant, n: u64) -> u64 {
        self.refill(now);
        if self.rate.is_none() {
            return n;
        }
        let granted = n.min(whole_bytes(self.tokens));
        self.tokens -= i128::from(granted) * SCALE;
        granted
    }

    /// Takes exactly `n` bytes at `now` if they are all available; otherwise takes nothing.
    /// (`n` above the burst can never succeed: use [`TokenBucket::try_take`] for those.)
    pub fn take(&mut self, now: Instant, n: u64) -> bool {
        self.refill(now);
        if self.rate.is_none() {
            return true;
        }
        if whole_bytes(self.tokens) < n {
            return false;
        }
        self.tokens -= i128::from(n) * SCALE;
        true
    }

    /// Charges `n` bytes that have already been transferred at `now`, going into debt if the
    /// bucket does not hold them (free when unlimited).
    pub fn charge(&mut self, now: Instant, n: u64) {
        self.refill(now);
        if self.rate.is_some() {
            self.tokens = self.tokens.saturating_sub(i128::from(n) * SCALE);
        }
    }

    /// The earliest instant at or after `now` when `min(n, burst)` bytes are available (one
    /// take can never grant more than the burst). `now` if they already are or the bucket is
    /// unlimited; [`Instant::MAX`] if the rate is zero and they are not.
    pub fn next_available(&self, now: Instant, n: u64) -> Instant {
        let Some(rate) = self.rate else {
            return now;
        };
        let now = now.max(self.last);
        let want = i128::from(n.min(self.burst)) * SCALE;
        let have = self.tokens_at(now);
        if have >= want {
            return now;
        }
        if rate == 0 {
            return Instant::MAX;
        }
        // Smallest dt with have + rate * dt >= want: the ceiling of the deficit over the rate.
        let deficit = want.saturating_sub(have); // > 0; saturates only under absurd debt
        let rate = i128::from(rate);
        let dt = deficit / rate + i128::from(deficit % rate != 0);
        let dt = u64::try_from(dt).unwrap_or(u64::MAX);
        Instant::from_micros(now.as_micros().saturating_add(dt))
    }

    /// Changes the rate at `now`: tokens earned so far at the old rate are kept, the new rate
    /// applies from `now` on. Any debt is forgiven when the limit is lifted (`None`).
    pub fn set_rate(&mut self, now: Instant, rate: Option<u64>) {
        self.refill(now);
        self.rate = rate;
        if rate.is_none() {
            self.tokens = cap(self.burst);
        }
    }

    /// Changes the capacity at `now` (at least 1 byte); banked tokens above it are dropped.
    pub fn set_burst(&mut self, now: Instant, burst: u64) {
        self.refill(now);
        self.burst = burst.max(1);
        self.tokens = self.tokens.min(cap(self.burst));
    }

    /// Tokens (micro-bytes) the bucket would hold at `now`, without changing it.
    fn tokens_at(&self, now: Instant) -> i128 {
        let Some(rate) = self.rate else {
            return cap(self.burst);
        };
        let dt = now.as_micros().saturating_sub(self.last.as_micros());
        let earned = i128::from(rate).saturating_mul(i128::from(dt));
        self.tokens.saturating_add(earned).min(cap(self.burst))
    }

    /// Brings `tokens` up to date at `now` (a `now` in the past changes nothing).
    fn refill(&mut self, now: Instant) {
        if now <= self.last {
            return;
        }
        self.tokens = self.tokens_at(now);
        self.last = now;
    }
}

/// A full bucket of `burst` bytes, in micro-bytes.
fn cap(burst: u64) -> i128 {
    i128::from(burst) * SCALE
}

/// Whole bytes in `tokens` micro-bytes (0 when in debt); never more than the burst, a u64.
fn whole_bytes(tokens: i128) -> u64 {
    u64::try_from(tokens.max(0) / SCALE).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn us(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }
    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    #[test]
    fn starts_full_and_grants_at_most_the_burst() {
        let mut b = TokenBucket::new(s(1), Some(1000), 500);
        assert_eq!(b.available(s(1)), 500);
        assert_eq!(b.try_take(s(1), 800), 500);
        assert_eq!(b.try_take(s(1), 1), 0);
        // A long idle spell refills to the burst, not beyond.
        assert_eq!(b.available(s(1000)), 500);
    }

    #[test]
    fn refill_is_exact_to_the_microsecond() {
        // 3 bytes/s: one byte every 333_333.33 µs. Empty the bucket first.
        let mut b = TokenBucket::new(Instant::ZERO, Some(3), 10);
        assert_eq!(b.try_take(Instant::ZERO, 10), 10);
        assert_eq!(b.next_available(Instant::ZERO, 1), us(333_334));
        assert_eq!(b.available(us(333_333)), 0);
        assert_eq!(b.available(us(333_334)), 1);
        assert_eq!(b.try_take(us(333_334), 1), 1);
        // The 2 micro-bytes left over are kept: 3 bytes by exactly t = 1 s, no drift.
        assert_eq!(b.next_available(us(333_334), 2), s(1));
        assert_eq!(b.available(us(999_999)), 1);
        assert_eq!(b.try_take(s(1), 5), 2);
        // After an hour of 1-µs-apart checks the total is still exact: 3 * 3600 + 10.
        let mut granted = 10 + 1 + 2;
        let mut t = 1_000_000u64;
        while t < 3_600_000_000 {
            t += 7_777; // an awkward step
            granted += b.try_take(us(t), u64::MAX);
        }
        assert_eq!(granted, 10 + (3 * t) / 1_000_000);
    }

    #[test]
    fn next_available_is_the_exact_deadline() {
        let mut b = TokenBucket::new(s(10), Some(16_384), 16_384);
        assert_eq!(b.next_available(s(10), 16_384), s(10));
        b.try_take(s(10), 16_384);
        // A full block again after exactly one second; half a block after half.
        assert_eq!(b.next_available(s(10), 16_384), s(11));
        assert_eq!(b.next_available(s(10), 8192), us(10_500_000));
        // Asking for more than the burst waits for the burst.
        assert_eq!(b.next_available(s(10), 1 << 40), s(11));
        assert!(!b.take(us(10_999_999), 16_384));
        assert!(b.take(s(11), 16_384));
        // Zero bytes are always available.
        assert_eq!(b.next_available(s(11), 0), s(11));
        // A `now` before the last update is treated as the last update.
        assert_eq!(b.next_available(s(5), 16_384), s(12));
    }

    #[test]
    fn unlimited_grants_everything() {
        let mut b = TokenBucket::unlimited(s(3));
        assert_eq!(b.try_take(s(3), u64::MAX), u64::MAX);
        assert!(b.take(s(3), u64::MAX));
        b.charge(s(3), u64::MAX);
        assert_eq!(b.available(s(3)), u64::MAX);
        assert_eq!(b.next_available(s(3), u64::MAX), s(3));
        assert_eq!(b.rate(), None);
    }

    #[test]
    fn zero_rate_pauses_and_zero_burst_is_one() {
        let mut b = TokenBucket::new(Instant::ZERO, Some(0), 0);
        assert_eq!(b.burst(), 1);
        assert_eq!(b.try_take(Instant::ZERO, 5), 1);
        assert_eq!(b.available(s(1_000_000)), 0);
        assert_eq!(b.next_available(s(1), 1), Instant::MAX);
    }

    #[test]
    fn charge_goes_into_debt_and_pays_it_back() {
        let mut b = TokenBucket::new(Instant::ZERO, Some(1000), 1000);
        b.charge(Instant::ZERO, 3000); // 2000 bytes of debt
        assert_eq!(b.available(s(1)), 0);
        assert_eq!(b.next_available(Instant::ZERO, 1), us(2_001_000));
        assert_eq!(b.available(s(3)), 1000);
    }

    #[test]
    fn huge_rates_and_long_jumps_do_not_overflow() {
        let ten_gb = 10_000_000_000u64;
        let mut b = TokenBucket::new(Instant::ZERO, Some(ten_gb), ten_gb);
        assert_eq!(b.try_take(Instant::ZERO, u64::MAX), ten_gb);
        assert_eq!(b.available(s(10 * 3600)), ten_gb);
        assert_eq!(b.available(Instant::MAX), ten_gb);
        let mut max = TokenBucket::new(Instant::ZERO, Some(u64::MAX), u64::MAX);
        assert_eq!(max.try_take(Instant::ZERO, u64::MAX), u64::MAX);
        assert_eq!(max.available(Instant::MAX), u64::MAX);
        max.charge(us(1), u64::MAX);
        max.charge(us(1), u64::MAX);
        assert_eq!(max.available(us(1)), 0);
        // 1 byte/s towards a u64::MAX burst: the deadline saturates rather than wraps.
        let mut slow = TokenBucket::new(Instant::ZERO, Some(1), u64::MAX);
        slow.try_take(Instant::ZERO, u64::MAX);
        assert_eq!(slow.next_available(Instant::ZERO, u64::MAX), Instant::MAX);
        assert_eq!(slow.next_available(Instant::ZERO, 1), s(1));
    }

    #[test]
    fn set_rate_keeps_earned_tokens_and_applies_from_now() {
        let mut b = TokenBucket::new(Instant::ZERO, Some(100), 10_000);
        b.try_take(Instant::ZERO, 10_000);
        // 2 s at 100 B/s = 200, then 1 s at 1000 B/s = 1000.
        b.set_rate(s(2), Some(1000));
        assert_eq!(b.available(s(3)), 1200);
        // Lifting the limit, then limiting again: starts from a full bucket.
        b.set_rate(s(3), None);
        assert_eq!(b.available(s(3)), u64::MAX);
        b.set_rate(s(4), Some(10));
        assert_eq!(b.available(s(4)), 10_000);
        // Pausing keeps what is banked.
        b.try_take(s(4), 9_000);
        b.set_rate(s(4), Some(0));
        assert_eq!(b.available(s(100)), 1000);
        // Shrinking the burst drops the excess.
        b.set_burst(s(100), 300);
        assert_eq!(b.available(s(100)), 300);
        b.set_rate(s(100), Some(300));
        assert_eq!(b.try_take(s(100), 1000), 300);
        assert_eq!(b.next_available(s(100), 300), s(101));
    }

    proptest! {
        /// Over any sequence of greedy takes, the bytes granted equal the exact refill (never
        /// more, never less) as long as the bucket never had to discard a full burst.
        #[test]
        fn greedy_takes_get_exactly_the_refill(
            rate in 1u64..20_000_000_000,
            steps in proptest::collection::vec(0u64..5_000_000, 1..50),
        ) {
            // Burst big enough that no step can fill it: nothing is ever discarded.
            let burst = rate.saturating_mul(6).max(1);
            let mut b = TokenBucket::new(Instant::ZERO, Some(rate), burst);
            let mut granted: u128 = u128::from(b.try_take(Instant::ZERO, u64::MAX));
            let mut t = 0u64;
            for dt in steps {
                t += dt;
                granted += u128::from(b.try_take(us(t), u64::MAX));
            }
            let want = u128::from(burst) + u128::from(rate) * u128::from(t) / 1_000_000;
            prop_assert_eq!(granted, want);
        }

        /// `next_available` is tight: at the deadline the bytes are there, a µs earlier not.
        #[test]
        fn deadline_is_tight(
            rate in 1u64..1_000_000_000,
            burst in 1u64..10_000_000,
            drain in 0u64..10_000_000,
            debt in 0u64..1_000_000,
            n in 0u64..20_000_000,
        ) {
            let t0 = s(7);
            let mut b = TokenBucket::new(t0, Some(rate), burst);
            b.try_take(t0, drain);
            b.charge(t0, debt);
            let at = b.next_available(t0, n);
            let want = n.min(burst);
            prop_assert!(b.available(at) >= want);
            if at > t0 {
                prop_assert!(b.available(us(at.as_micros() - 1)) < want);
            }
        }
    }
}
