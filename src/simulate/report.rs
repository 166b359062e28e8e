//! What one seed found, and its one-line report.

use std::time::Duration;

/// What one seed found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// The run's shape, for the report.
    pub plan: String,
    pub violations: Vec<String>,
    /// Acknowledged IdP changes, attempts sent again, requests cancelled, instances killed.
    pub acknowledged: usize,
    pub retried: usize,
    pub cancelled: usize,
    pub kills: usize,
    /// Outbox rows under a live claim when an instance was killed hard (the killed one's,
    /// which the other must take over once their lease runs out, and the survivor's).
    pub claims_at_kills: i64,
    pub user_writes: usize,
    pub took: Duration,
    /// The IdP's history of the users a violation names, and their partner writes.
    pub details: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// One line: the seed, the verdict and the counts.
    pub fn line(&self) -> String {
        format!(
            "seed {}: {} ({} changes acknowledged, {} attempts retried, {} cancelled, {} \
             kills ({} live claims at hard kills), {} partner user writes, {:.1} s)",
            self.seed,
            if self.passed() {
                "ok".to_owned()
            } else {
                format!("{} VIOLATION(S)", self.violations.len())
            },
            self.acknowledged,
            self.retried,
            self.cancelled,
            self.kills,
            self.claims_at_kills,
            self.user_writes,
            self.took.as_secs_f64()
        )
    }
}
