//! Inbound limits: the per-tenant request rate, and failed authentications per (client address,
//! tenant). Both are token buckets (governor); their refusals are 429 with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;

/// Failures between two sweeps of refilled buckets, and the most (address, scope) pairs
/// remembered as over budget before expired ones are swept.
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
    limit: RateLimitConfig,
}

impl TenantLimiter {
    /// `None` when the limit is off.
    pub fn new(c: &RateLimitConfig) -> Option<Self> {
        Some(Self {
            bucket: RateLimiter::direct(quota(c)?),
            clock: DefaultClock::default(),
            limit: *c,
        })
    }

    /// The SCIM error detail of a refusal: the limit, and the setting that raises it (the
    /// operator reads it in the IdP's provisioning log, far from the configuration).
    pub fn refusal_detail(&self) -> String {
        format!(
            "Too many requests for this tenant (its limit is {} requests per second, {} at \
             once); retry later. To raise the limit set http.rate_limit.per_second and \
             http.rate_limit.burst (environment: SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND, \
             SCIM_BRIDGE_HTTP__RATE_LIMIT__BURST); per_second = 0 turns it off.",
            self.limit.per_second, self.limit.burst
        )
    }

    /// Takes one request from the budget, or tells how long until one is available.
    pub fn check(&self) -> Result<(), Duration> {
        self.bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// Failed authentications per (client address, scope) (an IPv6 address counts as its /64),
/// where the scope is the tenant a request
/// is for (its SCIM routes and its token endpoint share one budget) or [`ADMIN_SCOPE`]. Each
/// failure takes a token; an (address, scope) whose bucket is empty is *over budget* until a
/// token is back.
///
/// Being over budget never refuses a request by itself: the caller still checks the
/// credential, lets a valid one through and answers a wrong one 429 instead of 401 (see
/// `http/auth.rs` for why). So failures of one tenant never touch another tenant's budget,
/// and nobody who does not hold a credential can make the bridge refuse one that is valid.
/// What the [`Standing`] decides besides the answer is the priority of the request's password
/// hashing (`basic::HashLane`): clients whose address failed recently queue as guessers;
/// clients of a network (an IPv4 /24, an IPv6 /48: what one party usually holds) in which
/// another address failed recently queue as neighbours, apart from both the guessers and the
/// clean. So an attacker who guesses from a new address each time competes only with other
/// neighbours after the first guess from each network, an IdP from a clean network waits
/// behind at most one guesser and one neighbour, and an IdP beside a guesser in its /24 waits
/// behind the guesser's fresh addresses at most (an IPv4 /24 has 254).
#[derive(Debug)]
pub struct AuthFailureThrottle {
    buckets: Option<DefaultKeyedRateLimiter<Key>>,
    /// Per (address, scope) with a failure in the last [`RECENT`]: the last failure, and when
    /// an over-budget pair is back within its budget.
    seen: Mutex<Memory>,
    failures: AtomicU64,
    clock: DefaultClock,
}

/// The scope of the admin endpoints' budget (no tenant is named with an empty string).
pub const ADMIN_SCOPE: &str = "";

/// How long a failure counts as recent (see [`Standing::Failed`]).
pub const RECENT: Duration = Duration::from_secs(60);

/// Most (address, scope) pairs remembered; past it (a flood from more addresses than that
/// within [`RECENT`]), the memory is cleared and the pairs count as clean again.
const MAX_SEEN: usize = 16 * SWEEP_AT;

type Key = (IpAddr, Arc<str>);

/// The recent failures: per (address, scope), and the last one per (network, scope).
#[derive(Debug, Default)]
struct Memory {
    addresses: HashMap<Key, Seen>,
    networks: HashMap<Key, Instant>,
}

/// The network of a client at a scope: an IPv4 /24, an IPv6 /48.
fn network_key(addr: IpAddr, scope: &str) -> Key {
    let (addr, scope) = key(addr, scope);
    let net = match addr {
        IpAddr::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & !0xff)),
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 80) - 1),
        )),
    };
    (net, scope)
}

/// The key of a client at a scope. An IPv6 client counts as its /64: one site or one host
/// usually holds a whole /64, so per-address budgets would let it guess without end.
fn key(addr: IpAddr, scope: &str) -> Key {
    let addr = match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
        v4 => v4,
    };
    (addr, Arc::from(scope))
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    last_failure: Instant,
    over_budget_until: Option<Instant>,
}

/// Where an (address, scope) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No failure in the last [`RECENT`], from the address or its network.
    Clean,
    /// No failure from the address, but one from another address of its network (an IPv4
    /// /24, an IPv6 /48) in the last [`RECENT`]: a neighbour of a guesser, or a guesser on a
    /// fresh address.
    Neighbour,
    /// A failure in the last [`RECENT`], the budget not spent.
    Failed,
    /// The budget is spent, for this long yet.
    OverBudget(Duration),
}

impl Standing {
    /// How long the budget stays spent, when it is.
    pub fn over_budget(self) -> Option<Duration> {
        match self {
            Standing::OverBudget(wait) => Some(wait),
            _ => None,
        }
    }
}

impl AuthFailureThrottle {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            buckets: quota(c).map(RateLimiter::keyed),
            seen: Mutex::new(Memory::default()),
            failures: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
    }

    /// Where `(addr, scope)` stands now.
    pub fn standing(&self, addr: IpAddr, scope: &str) -> Standing {
        // A panic elsewhere while holding the lock must not switch the throttle off.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let key = key(addr, scope);
        if let Some(s) = seen.addresses.get_mut(&key) {
            match s.over_budget_until {
                Some(until) if until > now => return Standing::OverBudget(until - now),
                Some(_) => s.over_budget_until = None,
                None => {}
            }
            if now.duration_since(s.last_failure) < RECENT {
                return Standing::Failed;
            }
            seen.addresses.remove(&key);
        }
        let net = network_key(addr, scope);
        match seen.networks.get(&net) {
            Some(last) if now.duration_since(*last) < RECENT => Standing::Neighbour,
            Some(_) => {
                seen.networks.remove(&net);
                Standing::Clean
            }
            None => Standing::Clean,
        }
    }

    /// `Some(wait)` while `(addr, scope)` is over budget: how long until it is not.
    pub fn over_budget(&self, addr: IpAddr, scope: &str) -> Option<Duration> {
        self.standing(addr, scope).over_budget()
    }

    /// Records a failure from `addr` at `scope`; puts the pair over budget when its budget is
    /// spent.
    pub fn failed(&self, addr: IpAddr, scope: &str) {
        let key = key(addr, scope);
        let sweep = self.failures.fetch_add(1, Ordering::Relaxed) % SWEEP_AT as u64 == 0;
        let mut over_budget_until = None;
        if let Some(buckets) = &self.buckets {
            if sweep {
                // Buckets that refilled hold nothing worth keeping; a flood from many
                // addresses must not grow the map without bound.
                buckets.retain_recent();
                buckets.shrink_to_fit();
            }
            if let Err(not_until) = buckets.check_key(&key) {
                over_budget_until =
                    Some(Instant::now() + not_until.wait_time_from(self.clock.now()));
            }
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if sweep || seen.addresses.len() >= MAX_SEEN || seen.networks.len() >= MAX_SEEN {
            seen.addresses.retain(|_, s| {
                now.duration_since(s.last_failure) < RECENT
                    || s.over_budget_until.is_some_and(|until| until > now)
            });
            seen.networks
                .retain(|_, last| now.duration_since(*last) < RECENT);
            if seen.addresses.len() >= MAX_SEEN {
                seen.addresses.clear();
            }
            if seen.networks.len() >= MAX_SEEN {
                seen.networks.clear();
            }
        }
        seen.networks.insert(network_key(addr, scope), now);
        let entry = seen.addresses.entry(key).or_insert(Seen {
            last_failure: now,
            over_budget_until: None,
        });
        entry.last_failure = now;
        if over_budget_until.is_some() {
            entry.over_budget_until = over_budget_until;
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
    fn failures_count_per_address_and_tenant() {
        let t = AuthFailureThrottle::new(&RateLimitConfig {
            per_second: 0.1,
            burst: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        t.failed(a, "acme");
        t.failed(a, "acme");
        assert!(
            t.over_budget(a, "acme").is_none(),
            "the burst is not spent yet"
        );
        t.failed(a, "acme");
        let wait = t.over_budget(a, "acme").unwrap();
        assert!(wait > Duration::from_secs(5), "{wait:?}");
        // Another address (its budget; the /24 queues as a guesser), another tenant, the admin endpoints: untouched.
        assert!(t.over_budget(b, "acme").is_none());
        assert_eq!(t.standing(a, "beta"), Standing::Clean);
        assert_eq!(t.standing(a, ADMIN_SCOPE), Standing::Clean);
        // Failures at another tenant spend that tenant's budget only.
        for _ in 0..3 {
            t.failed(a, "beta");
        }
        assert!(t.over_budget(a, "beta").is_some());
        assert!(t.over_budget(b, "beta").is_none());
    }

    #[test]
    fn an_ipv6_client_counts_as_its_64() {
        let t = AuthFailureThrottle::new(&RateLimitConfig {
            per_second: 0.1,
            burst: 2,
        });
        for host in 1..=3u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 7, 0, 0, 0, host]);
            t.failed(ip, "acme");
        }
        let same_64: IpAddr = "2001:db8:0:7:ffff::1".parse().unwrap();
        let next_64: IpAddr = "2001:db8:0:8::1".parse().unwrap();
        assert!(t.over_budget(same_64, "acme").is_some());
        assert!(t.over_budget(next_64, "acme").is_none());
        // IPv4, also written as IPv4-mapped IPv6, stays per address.
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        t.failed(v4, "acme");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(t.standing(mapped, "acme"), Standing::Failed);
        let v4_next: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(t.over_budget(v4_next, "acme").is_none());
    }

    #[test]
    fn a_failure_makes_its_network_a_guesser_but_spends_only_its_own_budget() {
        let t = AuthFailureThrottle::new(&RateLimitConfig {
            per_second: 0.1,
            burst: 1,
        });
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        t.failed(a, "acme");
        t.failed(a, "acme");
        assert!(t.over_budget(a, "acme").is_some());
        // The rest of the /24 queues as a guesser, within its own budget.
        let same_24: IpAddr = "198.51.100.200".parse().unwrap();
        assert_eq!(t.standing(same_24, "acme"), Standing::Neighbour);
        // Another /24, another tenant: clean.
        let next_24: IpAddr = "198.51.101.7".parse().unwrap();
        assert_eq!(t.standing(next_24, "acme"), Standing::Clean);
        assert_eq!(t.standing(same_24, "beta"), Standing::Clean);
        // IPv6: the /48.
        let v6: IpAddr = "2001:db8:5:1::1".parse().unwrap();
        t.failed(v6, "acme");
        let same_48: IpAddr = "2001:db8:5:ffff::9".parse().unwrap();
        let next_48: IpAddr = "2001:db8:6::1".parse().unwrap();
        assert_eq!(t.standing(same_48, "acme"), Standing::Neighbour);
        assert_eq!(t.standing(next_48, "acme"), Standing::Clean);
    }

    #[test]
    fn off_means_never_over_budget_but_failures_are_still_recent() {
        let t = AuthFailureThrottle::new(&RateLimitConfig {
            per_second: 0.0,
            burst: 1,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            t.failed(a, "acme");
        }
        assert!(t.over_budget(a, "acme").is_none());
        assert_eq!(t.standing(a, "acme"), Standing::Failed);
    }

    #[test]
    fn a_flood_from_many_addresses_is_swept() {
        // Buckets refill within a millisecond, so each sweep drops all but the newest.
        let t = AuthFailureThrottle::new(&RateLimitConfig {
            per_second: 1000.0,
            burst: 1,
        });
        // More addresses than the memory holds, all within RECENT: past MAX_SEEN it is
        // cleared (and counts up again from there), never grows past it.
        let most = MAX_SEEN as u32 + 100;
        for i in 0..most {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(ip, "acme");
            t.failed(ip, "acme");
        }
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        t.failed(a, "acme");
        let buckets = t.buckets.as_ref().unwrap();
        assert!(buckets.len() <= 2 * SWEEP_AT, "{}", buckets.len());
        let seen = t.seen.lock().unwrap();
        assert!(
            seen.addresses.len() < SWEEP_AT,
            "the memory was not cleared past MAX_SEEN: {}",
            seen.addresses.len()
        );
        assert!(seen.networks.len() <= MAX_SEEN);
    }

    #[test]
    fn a_poisoned_lock_keeps_counting_failures() {
        let t = std::sync::Arc::new(AuthFailureThrottle::new(&RateLimitConfig {
            per_second: 0.001,
            burst: 1,
        }));
        let poisoner = t.clone();
        let _ = std::thread::spawn(move || {
            let _held = poisoner.seen.lock().unwrap();
            panic!("poisoning the throttle's lock on purpose");
        })
        .join();
        assert!(t.seen.is_poisoned());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        t.failed(a, "acme");
        assert_eq!(t.standing(a, "acme"), Standing::Failed);
        t.failed(a, "acme");
        assert!(t.over_budget(a, "acme").is_some());
    }
}
