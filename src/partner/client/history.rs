//! The last hour of partner calls per (tenant, site), in memory, for the console's chart: a
//! ring of 60 one-minute buckets counting attempts and failed attempts (calls rejected before
//! any attempt, by an open circuit or the client's own limits, count as failed). Fed by an
//! observer wrapped around the metrics one, so it sees exactly what the metrics count; it
//! costs a short lock per attempt and never grows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{CallEvent, CallObserver, CallOutcome};

/// Buckets kept: one per minute of the last hour.
pub const BUCKETS: usize = 60;
const MINUTE_MS: i64 = 60_000;

/// One minute's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteCalls {
    pub calls: u32,
    pub errors: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    minute: i64,
    counts: MinuteCalls,
}

#[derive(Debug)]
struct Ring([Bucket; BUCKETS]);

impl Ring {
    fn slot(minute: i64) -> usize {
        usize::try_from(minute.rem_euclid(BUCKETS as i64)).unwrap_or(0)
    }

    fn add(&mut self, now_ms: i64, failed: bool) {
        let minute = now_ms.div_euclid(MINUTE_MS);
        let b = &mut self.0[Self::slot(minute)];
        if b.minute != minute {
            *b = Bucket {
                minute,
                counts: MinuteCalls::default(),
            };
        }
        b.counts.calls = b.counts.calls.saturating_add(1);
        if failed {
            b.counts.errors = b.counts.errors.saturating_add(1);
        }
    }

    fn last_hour(&self, now_ms: i64) -> Vec<MinuteCalls> {
        let now = now_ms.div_euclid(MINUTE_MS);
        (now - BUCKETS as i64 + 1..=now)
            .map(|m| {
                let b = self.0[Self::slot(m)];
                if b.minute == m {
                    b.counts
                } else {
                    MinuteCalls::default()
                }
            })
            .collect()
    }
}

/// The rings of every (tenant, site). Cheap to clone; clones share the rings.
#[derive(Debug, Clone, Default)]
pub struct CallHistory {
    rings: Arc<Mutex<HashMap<(String, String), Ring>>>,
}

impl CallHistory {
    /// Counts one attempt of `tenant`'s client of `site` at `now_ms`.
    pub fn record(&self, tenant: &str, site: &str, now_ms: i64, failed: bool) {
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_owned(), site.to_owned());
        rings
            .entry(key)
            .or_insert_with(|| Ring([Bucket::default(); BUCKETS]))
            .add(now_ms, failed);
    }

    /// The last 60 minutes up to `now_ms` of one site, oldest first (always 60 entries).
    pub fn last_hour(&self, tenant: &str, site: &str, now_ms: i64) -> Vec<MinuteCalls> {
        let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        match rings.get(&(tenant.to_owned(), site.to_owned())) {
            Some(r) => r.last_hour(now_ms),
            None => vec![MinuteCalls::default(); BUCKETS],
        }
    }

    /// An observer that counts `tenant`'s attempts here, then hands them to `inner`.
    pub fn observer(&self, tenant: &str, inner: Arc<dyn CallObserver>) -> Arc<dyn CallObserver> {
        Arc::new(HistoryObserver {
            history: self.clone(),
            tenant: tenant.to_owned(),
            inner,
        })
    }
}

struct HistoryObserver {
    history: CallHistory,
    tenant: String,
    inner: Arc<dyn CallObserver>,
}

impl CallObserver for HistoryObserver {
    fn observe(&self, event: &CallEvent<'_>) {
        let failed = !matches!(event.outcome, CallOutcome::Success);
        self.history
            .record(&self.tenant, event.site, crate::clock::now_ms(), failed);
        self.inner.observe(event);
    }

    fn credentials(&self, site: &str, accepted: bool) {
        self.inner.credentials(site, accepted);
    }

    fn circuit(&self, site: &str, open: bool) {
        self.inner.circuit(site, open);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_the_last_hour_per_minute_and_forget_older_minutes() {
        let h = CallHistory::default();
        let t0 = 1_000 * MINUTE_MS;
        h.record("t", "s", t0, false);
        h.record("t", "s", t0 + 1, true);
        h.record("t", "s", t0 + 5 * MINUTE_MS, false);
        h.record("t", "other", t0, true);
        let hour = h.last_hour("t", "s", t0 + 5 * MINUTE_MS);
        assert_eq!(hour.len(), BUCKETS);
        assert_eq!(
            hour[BUCKETS - 1],
            MinuteCalls {
                calls: 1,
                errors: 0
            }
        );
        assert_eq!(
            hour[BUCKETS - 6],
            MinuteCalls {
                calls: 2,
                errors: 1
            }
        );
        assert_eq!(hour.iter().map(|m| m.calls).sum::<u32>(), 3);
        // An hour later the first minute's slot is taken by a new minute: counted afresh.
        h.record("t", "s", t0 + 60 * MINUTE_MS, false);
        let later = h.last_hour("t", "s", t0 + 60 * MINUTE_MS);
        assert_eq!(
            later[BUCKETS - 1],
            MinuteCalls {
                calls: 1,
                errors: 0
            }
        );
        assert_eq!(
            later.iter().map(|m| m.calls).sum::<u32>(),
            2,
            "t0's minute is gone"
        );
        assert!(h.last_hour("t", "none", t0).iter().all(|m| m.calls == 0));
    }
}
