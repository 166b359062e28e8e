//! The local limits of one partner site, taken before every attempt: a concurrency limit (a
//! tokio semaphore) and a token bucket (governor). Both waits are bounded by the call's remaining
//! time; when a slot or token cannot be had in time the call fails `Unavailable` instead of
//! queueing without bound (the bridge then answers the IdP 429/503 with `Retry-After`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why no slot was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saturated {
    /// All concurrency slots stayed busy until the deadline.
    Concurrency,
    /// The token bucket would refill only after the deadline; the wait it asked for.
    Rate(Duration),
}

/// Concurrency slots and a token bucket, shared by all clones of a site's client.
#[derive(Debug)]
pub struct Limiter {
    slots: Arc<Semaphore>,
    bucket: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
}

impl Limiter {
    /// `rate_per_second <= 0` disables the bucket; `burst` is at least 1.
    pub fn new(max_concurrency: usize, rate_per_second: f64, burst: u32) -> Limiter {
        let bucket = (rate_per_second.is_finite() && rate_per_second > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / rate_per_second).ok())
            .flatten()
            .and_then(Quota::with_period)
            .map(|q| q.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
            .map(RateLimiter::direct);
        Limiter {
            slots: Arc::new(Semaphore::new(max_concurrency.max(1))),
            bucket,
            clock: DefaultClock::default(),
        }
    }

    /// Waits (at most `within`) for a concurrency slot, then for a token. The permit is held for
    /// the attempt and released when dropped.
    pub async fn acquire(&self, within: Duration) -> Result<OwnedSemaphorePermit, Saturated> {
        self.acquire_paced(within, within).await
    }

    /// [`Limiter::acquire`] waiting at most `within` for a slot and at most `rate_within` in
    /// all for a token (an IdP's request waits for tokens only briefly: a saturated partner
    /// should answer it 503 at once, while a slot frees as soon as a call in flight ends).
    pub async fn acquire_paced(
        &self,
        within: Duration,
        rate_within: Duration,
    ) -> Result<OwnedSemaphorePermit, Saturated> {
        let start = Instant::now();
        let permit = tokio::time::timeout(within, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Saturated::Concurrency)?
            .map_err(|_| Saturated::Concurrency)?;
        if let Some(bucket) = &self.bucket {
            let tokens_from = Instant::now();
            loop {
                match bucket.check() {
                    Ok(()) => break,
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(self.clock.now());
                        if start.elapsed().saturating_add(wait) >= within
                            || tokens_from.elapsed().saturating_add(wait) >= rate_within
                        {
                            return Err(Saturated::Rate(wait));
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        Ok(permit)
    }

    /// Slots free right now (for health reporting and tests).
    pub fn available_slots(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_bucket_is_waited_for_within_the_deadline() {
        let l = Limiter::new(4, 50.0, 1);
        let t = Instant::now();
        drop(l.acquire(Duration::from_secs(1)).await.unwrap());
        drop(l.acquire(Duration::from_secs(1)).await.unwrap());
        assert!(
            t.elapsed() >= Duration::from_millis(15),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn a_bucket_that_refills_too_late_saturates() {
        let l = Limiter::new(4, 0.5, 1);
        drop(l.acquire(Duration::from_millis(100)).await.unwrap());
        assert!(matches!(
            l.acquire(Duration::from_millis(100)).await,
            Err(Saturated::Rate(w)) if w > Duration::from_secs(1)
        ));
    }

    #[tokio::test]
    async fn busy_slots_saturate_after_the_deadline() {
        let l = Limiter::new(1, 0.0, 0);
        let held = l.acquire(Duration::from_millis(10)).await.unwrap();
        assert_eq!(l.available_slots(), 0);
        assert_eq!(
            l.acquire(Duration::from_millis(20)).await.unwrap_err(),
            Saturated::Concurrency
        );
        drop(held);
        assert!(l.acquire(Duration::from_millis(20)).await.is_ok());
    }
}
