//! Inbound limits: the per-tenant request rate, and failed authentications per client address.
//! Both are token buckets (governor) answered with 429 and `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;

/// Most addresses remembered as blocked before expired ones are swept.
const SWEEP_AT: usize = 4096;

fn quota(c: &RateLimitConfig) -> Option<Quota> {
    if !(c.per_second.is_finite() && c.per_second > 0.0) {
        return None;
    }
    let period = Duration::try_from_secs_f64(1.0 / c.per_second).ok()?;
    Quota::with_period(period)
        .map(|q| q.allow_burst(NonZeroU32::new(c.burst).unwrap_or(NonZeroU32::MIN)))
}

/// One tenant's inbound request budget.
#[derive(Debug)]
pub struct TenantLimiter {
    bucket: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl TenantLimiter {
    /// `None` when the limit is off.
    pub fn new(c: &RateLimitConfig) -> Option<Self> {
        Some(Self {
            bucket: RateLimiter::direct(quota(c)?),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one request from the budget, or tells how long until one is available.
    pub fn check(&self) -> Result<(), Duration> {
        self.bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// Failed authentications per client address. Each failure takes a token; an address whose
/// bucket is empty is blocked until a token is back, and every request from it (whatever its
/// credentials) is answered 429 meanwhile, so guessing costs time without costing the server
/// a password hash per guess.
#[derive(Debug)]
pub struct AuthFailureThrottle {
    buckets: Option<DefaultKeyedRateLimiter<IpAddr>>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

impl AuthFailureThrottle {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            buckets: quota(c).map(RateLimiter::keyed),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` while `addr` is blocked.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        let Ok(mut blocked) = self.blocked.lock() else {
            return Ok(());
        };
        match blocked.get(&addr) {
            Some(until) => {
                let now = Instant::now();
                if *until > now {
                    Err(*until - now)
                } else {
                    blocked.remove(&addr);
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Records a failure from `addr`; blocks it when its budget is spent.
    pub fn failed(&self, addr: IpAddr) {
        let Some(buckets) = &self.buckets else {
            return;
        };
        if let Err(not_until) = buckets.check_key(&addr) {
            let wait = not_until.wait_time_from(self.clock.now());
            if let Ok(mut blocked) = self.blocked.lock() {
                let now = Instant::now();
                if blocked.len() >= SWEEP_AT {
                    blocked.retain(|_, until| *until > now);
                    buckets.retain_recent();
                }
                blocked.insert(addr, now + wait);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_budget_runs_out_and_names_the_wait() {
        let l = TenantLimiter::new(&RateLimitConfig {
            per_second: 1.0,
            burst: 3,
        })
        .unwrap();
        for _ in 0..3 {
            assert!(l.check().is_ok());
        }
        let wait = l.check().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(TenantLimiter::new(&RateLimitConfig {
            per_second: 0.0,
            burst: 1
        })
        .is_none());
    }

    #[test]
    fn failures_block_one_address_only() {
        let t = AuthFailureThrottle::new(&RateLimitConfig {
            per_second: 0.1,
            burst: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        t.failed(a);
        t.failed(a);
        assert!(t.check(a).is_ok(), "the burst is not spent yet");
        t.failed(a);
        let wait = t.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(5), "{wait:?}");
        assert!(t.check(b).is_ok());
    }

    #[test]
    fn off_means_never_blocked() {
        let t = AuthFailureThrottle::new(&RateLimitConfig {
            per_second: 0.0,
            burst: 1,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            t.failed(a);
        }
        assert!(t.check(a).is_ok());
    }
}
