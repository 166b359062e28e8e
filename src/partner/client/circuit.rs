//! The circuit of one partner site: after `threshold` consecutive calls that ended transient
//! (after their retries) it opens and rejects calls at once for `open_for`; then it half-opens and
//! lets one probe call through (a single attempt). The probe's answer closes it (any answer from
//! the site that is not transient) or opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The circuit breaker of one site. `threshold == 0` disables it.
#[derive(Debug)]
pub struct Circuit {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed circuit: the call runs with its retries.
    Pass,
    /// Half-open: this call is the single probe (one attempt, no retries).
    Probe,
    /// Open (or a probe is in flight): reject, asking callers to come back after this long.
    Reject { retry_after: Duration },
}

/// What a finished call tells the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The site answered (2xx or a non-transient error).
    Answered,
    /// The call ended transient after its retries.
    Failed,
    /// Nothing learnt about the site (rejected locally, cancelled).
    Neutral,
}

/// An admitted call's hold on the circuit (see [`Circuit::ticket`]).
#[derive(Debug)]
pub struct Ticket<'c> {
    circuit: &'c Circuit,
    admission: Admission,
    recorded: bool,
}

impl Ticket<'_> {
    pub fn admission(&self) -> Admission {
        self.admission
    }

    /// Records how the call ended.
    pub fn record(mut self, outcome: Outcome, now: Instant) {
        self.recorded = true;
        self.circuit.record(self.admission, outcome, now);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.circuit
                .record(self.admission, Outcome::Neutral, Instant::now());
        }
    }
}

impl Circuit {
    pub fn new(threshold: u32, open_for: Duration) -> Circuit {
        Circuit {
            threshold,
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    /// Decides whether a call starting now may go ahead.
    pub fn admit(&self, now: Instant) -> Admission {
        if self.threshold == 0 {
            return Admission::Pass;
        }
        self.with_state(|state| match *state {
            State::Closed { .. } => Admission::Pass,
            State::Open { until } if now < until => Admission::Reject {
                retry_after: until - now,
            },
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Admission::Probe
            }
            State::HalfOpen { probing: true } => Admission::Reject {
                retry_after: self.open_for,
            },
        })
    }

    /// Records how an admitted call ended.
    pub fn record(&self, admission: Admission, outcome: Outcome, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        self.with_state(|state| match (admission, outcome, *state) {
            (Admission::Probe, Outcome::Answered, _) => *state = State::Closed { failures: 0 },
            (Admission::Probe, Outcome::Failed, _) => {
                *state = State::Open {
                    until: now + self.open_for,
                }
            }
            (Admission::Probe, Outcome::Neutral, _) => *state = State::HalfOpen { probing: false },
            (Admission::Pass, Outcome::Answered, State::Closed { .. }) => {
                *state = State::Closed { failures: 0 }
            }
            (Admission::Pass, Outcome::Failed, State::Closed { failures }) => {
                let failures = failures.saturating_add(1);
                *state = if failures >= self.threshold {
                    State::Open {
                        until: now + self.open_for,
                    }
                } else {
                    State::Closed { failures }
                };
            }
            _ => {}
        })
    }

    /// [`Circuit::admit`], held by a [`Ticket`] that tells the circuit how the call ended:
    /// dropped without [`Ticket::record`] (the call's future was cancelled, as when the IdP's
    /// request times out or its connection closes), it counts as [`Outcome::Neutral`], so a
    /// cancelled probe never leaves the circuit waiting for it.
    pub fn ticket(&self, now: Instant) -> Ticket<'_> {
        Ticket {
            circuit: self,
            admission: self.admit(now),
            recorded: false,
        }
    }

    /// How long calls are still rejected; `None` unless open.
    pub fn open_for(&self, now: Instant) -> Option<Duration> {
        self.with_state(|state| match *state {
            State::Open { until } if now < until => Some(until - now),
            _ => None,
        })
    }

    /// True while calls are being rejected (for health reporting).
    pub fn is_open(&self, now: Instant) -> bool {
        self.with_state(|state| matches!(*state, State::Open { until } if now < until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_dropped_unrecorded_lets_the_next_call_probe() {
        let c = Circuit::new(1, Duration::from_millis(10));
        let t0 = Instant::now();
        c.record(Admission::Pass, Outcome::Failed, t0);
        let later = t0 + Duration::from_millis(20);
        let probe = c.ticket(later);
        assert_eq!(probe.admission(), Admission::Probe);
        assert!(matches!(c.admit(later), Admission::Reject { .. }));
        drop(probe);
        let again = c.ticket(later);
        assert_eq!(again.admission(), Admission::Probe);
        again.record(Outcome::Answered, later);
        assert_eq!(c.admit(later), Admission::Pass);
    }

    #[test]
    fn opens_after_consecutive_failures_then_half_opens_for_one_probe() {
        let open_for = Duration::from_secs(30);
        let c = Circuit::new(3, open_for);
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(c.admit(t0), Admission::Pass);
            c.record(Admission::Pass, Outcome::Failed, t0);
        }
        // A success in between resets the count.
        c.record(Admission::Pass, Outcome::Answered, t0);
        for _ in 0..3 {
            c.record(Admission::Pass, Outcome::Failed, t0);
        }
        assert!(c.is_open(t0));
        assert_eq!(
            c.admit(t0 + Duration::from_secs(10)),
            Admission::Reject {
                retry_after: Duration::from_secs(20)
            }
        );
        let t1 = t0 + open_for;
        assert_eq!(c.admit(t1), Admission::Probe);
        assert!(
            matches!(c.admit(t1), Admission::Reject { .. }),
            "one probe at a time"
        );
        c.record(Admission::Probe, Outcome::Failed, t1);
        assert!(c.is_open(t1));
        let t2 = t1 + open_for;
        assert_eq!(c.admit(t2), Admission::Probe);
        c.record(Admission::Probe, Outcome::Answered, t2);
        assert_eq!(c.admit(t2), Admission::Pass);
    }

    #[test]
    fn a_cancelled_probe_lets_the_next_call_probe() {
        let c = Circuit::new(1, Duration::ZERO);
        let t = Instant::now();
        c.record(Admission::Pass, Outcome::Failed, t);
        assert_eq!(c.admit(t), Admission::Probe);
        c.record(Admission::Probe, Outcome::Neutral, t);
        assert_eq!(c.admit(t), Admission::Probe);
    }

    #[test]
    fn threshold_zero_disables_the_circuit() {
        let c = Circuit::new(0, Duration::from_secs(1));
        let t = Instant::now();
        for _ in 0..10 {
            c.record(Admission::Pass, Outcome::Failed, t);
        }
        assert_eq!(c.admit(t), Admission::Pass);
    }
}
