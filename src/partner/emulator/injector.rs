//! Fault injection at run time: turns a site's [`Faults`] into a decision for each call.
//!
//! Every authenticated call of a site takes exactly one draw from the site's generator (plus one
//! for a uniform latency, plus one to pick a status when the draw says "error"), so the n-th call
//! under a given seed always gets the same fate. Precedence: a matching scripted fault, then the
//! rate limit, then the random shares (error, hang, drop; exclusive, in that order).

use std::collections::VecDeque;
use std::time::Duration;

use http::StatusCode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::faults::{FaultAction, Faults, Latency, RateLimit, ScriptedFault};
use crate::partner::CallKind;

/// Statuses drawn from when `error_statuses` is empty.
const DEFAULT_ERROR_STATUSES: [u16; 3] = [500, 502, 503];

/// What happens to one call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Waited before anything else.
    pub latency: Duration,
    pub action: Option<Action>,
}

/// A fault that replaces or disturbs the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Answer with this status and `{"error": ...}` instead of running the call.
    Status {
        status: StatusCode,
        retry_after_secs: Option<u64>,
        message: String,
    },
    /// Wait this long, then run the call and answer normally.
    Hang(Duration),
    /// Run the call, then close the connection in the middle of the answer.
    Drop,
    /// Run the call, then answer with this status as if it had failed.
    Applied(StatusCode),
}

/// A token bucket.
#[derive(Debug, Clone)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(limit: RateLimit, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(limit.burst),
            limit,
            last: now,
        }
    }

    /// Takes a token, or says in how many whole seconds (at least 1) one will be there.
    fn take(&mut self, now: Instant) -> Result<(), u64> {
        let rate = if self.limit.per_second.is_finite() {
            self.limit.per_second.max(0.0)
        } else {
            0.0
        };
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if rate <= 0.0 || self.limit.burst == 0 {
            return Err(60);
        }
        let wait = ((1.0 - self.tokens) / rate).ceil();
        Err(if wait.is_finite() && wait >= 1.0 {
            wait.min(86_400.0) as u64
        } else {
            1
        })
    }
}

/// The run-time fault state of one site.
#[derive(Debug)]
pub(crate) struct Injector {
    faults: Faults,
    rng: SmallRng,
    bucket: Option<Bucket>,
    script: VecDeque<ScriptedFault>,
}

fn share(value: f64) -> f64 {
    if value.is_finite() {
        value.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn status_action(status: u16, retry_after_secs: Option<u64>) -> Action {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Action::Status {
        status,
        retry_after_secs,
        message: format!(
            "injected fault: {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        ),
    }
}

impl Injector {
    /// A fresh generator, a full bucket and the whole script.
    pub fn new(faults: Faults) -> Self {
        let now = Instant::now();
        Injector {
            rng: SmallRng::seed_from_u64(faults.seed),
            bucket: faults.rate_limit.clone().map(|l| Bucket::new(l, now)),
            script: faults
                .script
                .iter()
                .filter(|s| s.count > 0)
                .cloned()
                .collect(),
            faults,
        }
    }

    /// The faults as set (the script as it was set, not as consumed).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Decides the fate of the next call of kind `call`.
    pub fn plan(&mut self, call: CallKind, now: Instant) -> Plan {
        let latency = match &self.faults.latency {
            None => Duration::ZERO,
            Some(Latency::FixedMs(ms)) => Duration::from_millis(*ms),
            Some(Latency::UniformMs { min, max }) => {
                let (lo, hi) = if min <= max {
                    (*min, *max)
                } else {
                    (*max, *min)
                };
                Duration::from_millis(self.rng.random_range(lo..=hi))
            }
        };
        let (error, hang, drop) = (
            share(self.faults.error_share),
            share(self.faults.hang_share),
            share(self.faults.drop_share),
        );
        let roll: f64 = self.rng.random();

        if let Some(action) = self.next_scripted(call) {
            return Plan {
                latency,
                action: Some(action),
            };
        }
        if let Some(bucket) = &mut self.bucket {
            if let Err(wait) = bucket.take(now) {
                let retry_after_secs = bucket.limit.retry_after.then_some(wait);
                return Plan {
                    latency,
                    action: Some(Action::Status {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        retry_after_secs,
                        message: "rate limit exceeded".to_owned(),
                    }),
                };
            }
        }
        let action = if roll < error {
            let statuses: &[u16] = if self.faults.error_statuses.is_empty() {
                &DEFAULT_ERROR_STATUSES
            } else {
                &self.faults.error_statuses
            };
            let pick = self.rng.random_range(0..statuses.len());
            let status = statuses.get(pick).copied().unwrap_or(500);
            Some(status_action(status, None))
        } else if roll < error + hang {
            Some(Action::Hang(self.faults.hang_for()))
        } else if roll < error + hang + drop {
            Some(Action::Drop)
        } else {
            None
        };
        Plan { latency, action }
    }

    /// Consumes one use of the first script entry that matches `call`.
    fn next_scripted(&mut self, call: CallKind) -> Option<Action> {
        let index = self
            .script
            .iter()
            .position(|s| s.call.is_none_or(|c| c == call))?;
        let entry = self.script.get_mut(index)?;
        entry.count = entry.count.saturating_sub(1);
        let action = match &entry.action {
            FaultAction::Status {
                status,
                retry_after_secs,
            } => status_action(*status, *retry_after_secs),
            FaultAction::Hang => Action::Hang(self.faults.hang_for()),
            FaultAction::Drop => Action::Drop,
            FaultAction::Applied { status } => Action::Applied(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            ),
        };
        if entry.count == 0 {
            self.script.remove(index);
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(injector: &mut Injector, n: usize) -> Vec<u16> {
        let now = Instant::now();
        (0..n)
            .map(|_| match injector.plan(CallKind::ListUsers, now).action {
                Some(Action::Status { status, .. }) => status.as_u16(),
                Some(Action::Hang(_)) => 1,
                Some(Action::Drop) => 2,
                Some(Action::Applied(status)) => 1000 + status.as_u16(),
                None => 200,
            })
            .collect()
    }

    #[test]
    fn same_seed_same_sequence() {
        let faults = Faults {
            error_share: 0.3,
            hang_share: 0.1,
            drop_share: 0.1,
            seed: 7,
            ..Faults::default()
        };
        let a = statuses(&mut Injector::new(faults.clone()), 200);
        let b = statuses(&mut Injector::new(faults.clone()), 200);
        assert_eq!(a, b);
        for s in [200, 500, 502, 503, 1, 2] {
            assert!(a.contains(&s), "{s} never drawn");
        }
        let c = statuses(&mut Injector::new(Faults { seed: 8, ..faults }), 200);
        assert_ne!(a, c);
    }

    #[test]
    fn script_applies_to_matching_calls_in_order() {
        let mut injector = Injector::new(Faults {
            script: vec![
                ScriptedFault {
                    call: Some(CallKind::CreateUser),
                    count: 2,
                    action: FaultAction::Status {
                        status: 503,
                        retry_after_secs: Some(3),
                    },
                },
                ScriptedFault {
                    call: None,
                    count: 1,
                    action: FaultAction::Drop,
                },
            ],
            ..Faults::default()
        });
        let now = Instant::now();
        let mut next = |call| injector.plan(call, now).action;
        assert_eq!(next(CallKind::ListUsers), Some(Action::Drop));
        assert_eq!(next(CallKind::ListUsers), None);
        assert!(matches!(
            next(CallKind::CreateUser),
            Some(Action::Status {
                retry_after_secs: Some(3),
                ..
            })
        ));
        assert!(matches!(
            next(CallKind::CreateUser),
            Some(Action::Status { .. })
        ));
        assert_eq!(next(CallKind::CreateUser), None);
    }

    #[test]
    fn bucket_refills_and_reports_retry_after() {
        let start = Instant::now();
        let mut bucket = Bucket::new(
            RateLimit {
                per_second: 0.5,
                burst: 2,
                retry_after: true,
            },
            start,
        );
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Err(2));
        assert_eq!(bucket.take(start + Duration::from_secs(2)), Ok(()));
    }
}
