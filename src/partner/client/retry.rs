//! Retry timing for partner calls: exponential backoff with full jitter (a random wait between 0
//! and `min(max, base * 2^n)` before retry `n`), driven by the client's own retry loop, and the
//! per-call time budget that keeps every wait inside the call's deadline.
//!
//! The budget counts the time attempts really took plus the waits the sleeper was *asked* for,
//! so a test's recording sleeper (which returns at once) sees the same deadline decisions as the
//! real one.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The backoff sequence of one call: `max_retries` waits, then `None`.
#[derive(Debug)]
pub struct FullJitter {
    base: Duration,
    max: Duration,
    retry: u32,
    max_retries: u32,
    rng: SmallRng,
}

impl FullJitter {
    /// `max_retries` is `max_attempts - 1`.
    pub fn new(base: Duration, max: Duration, max_retries: u32) -> FullJitter {
        FullJitter::with_rng(base, max, max_retries, SmallRng::from_rng(&mut rand::rng()))
    }

    /// A reproducible sequence, for tests.
    pub fn seeded(base: Duration, max: Duration, max_retries: u32, seed: u64) -> FullJitter {
        FullJitter::with_rng(base, max, max_retries, SmallRng::seed_from_u64(seed))
    }

    fn with_rng(base: Duration, max: Duration, max_retries: u32, rng: SmallRng) -> FullJitter {
        FullJitter {
            base,
            max,
            retry: 0,
            max_retries,
            rng,
        }
    }

    /// The upper bound of the wait before retry `n` (0-based).
    pub fn cap(base: Duration, max: Duration, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        base.saturating_mul(factor).min(max)
    }
}

impl Iterator for FullJitter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.retry >= self.max_retries {
            return None;
        }
        let cap = FullJitter::cap(self.base, self.max, self.retry);
        self.retry += 1;
        let cap_us = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
        Some(Duration::from_micros(self.rng.random_range(0..=cap_us)))
    }
}

/// The time one call has used against its deadline.
#[derive(Debug)]
pub struct Budget {
    deadline: Duration,
    used: Mutex<Duration>,
}

impl Budget {
    pub fn new(deadline: Duration) -> Budget {
        Budget {
            deadline,
            used: Mutex::new(Duration::ZERO),
        }
    }

    fn with_used<R>(&self, f: impl FnOnce(&mut Duration) -> R) -> R {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut used)
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.with_used(|used| self.deadline.saturating_sub(*used))
    }

    /// Adds time an attempt really took.
    pub fn spend(&self, d: Duration) {
        self.with_used(|used| *used = used.saturating_add(d));
    }

    /// Reserves a wait if it ends before the deadline, leaving room for at least a short attempt;
    /// false when it does not fit (the call then gives up with its last error).
    pub fn reserve_wait(&self, d: Duration) -> bool {
        self.with_used(|used| {
            let after = used.saturating_add(d);
            if after < self.deadline {
                *used = after;
                true
            } else {
                false
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_the_exponential_cap_and_stops() {
        let base = Duration::from_millis(200);
        let max = Duration::from_millis(1_000);
        let waits: Vec<_> = FullJitter::seeded(base, max, 5, 7).collect();
        assert_eq!(waits.len(), 5);
        for (n, w) in waits.iter().enumerate() {
            assert!(*w <= FullJitter::cap(base, max, n as u32), "{n}: {w:?}");
        }
        assert_eq!(FullJitter::cap(base, max, 0), Duration::from_millis(200));
        assert_eq!(FullJitter::cap(base, max, 1), Duration::from_millis(400));
        assert_eq!(FullJitter::cap(base, max, 2), Duration::from_millis(800));
        assert_eq!(FullJitter::cap(base, max, 3), max);
        assert_eq!(FullJitter::cap(base, max, 60), max);
        assert_eq!(FullJitter::seeded(base, max, 0, 1).next(), None);
    }

    #[test]
    fn full_jitter_spreads_its_waits() {
        let base = Duration::from_millis(100);
        let waits: Vec<_> = (0..50)
            .filter_map(|s| FullJitter::seeded(base, base, 1, s).next())
            .collect();
        let min = waits.iter().min().copied().unwrap_or_default();
        let max = waits.iter().max().copied().unwrap_or_default();
        assert!(
            min < Duration::from_millis(30) && max > Duration::from_millis(70),
            "{min:?} {max:?}"
        );
    }

    #[test]
    fn budget_refuses_waits_that_end_past_the_deadline() {
        let b = Budget::new(Duration::from_secs(10));
        b.spend(Duration::from_secs(2));
        assert!(b.reserve_wait(Duration::from_secs(5)));
        assert_eq!(b.remaining(), Duration::from_secs(3));
        assert!(!b.reserve_wait(Duration::from_secs(3)));
        assert_eq!(b.remaining(), Duration::from_secs(3));
    }
}
