//! Fault injection for the partner emulator: the data model (set at start from flags or at run
//! time through the admin endpoint). Every random choice is drawn from a generator seeded with
//! [`Faults::seed`], so a run is reproducible.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::partner::CallKind;

/// All faults of one site. `Faults::default()` injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added before every answer.
    pub latency: Option<Latency>,
    /// A token bucket; a request that finds it empty gets 429 (with `Retry-After` when asked).
    pub rate_limit: Option<RateLimit>,
    /// A share (0.0..=1.0) of requests answered with one of `error_statuses` (default 500/502/503).
    pub error_share: f64,
    pub error_statuses: Vec<u16>,
    /// A share of requests that hang for `hang_for_ms` (default 120 s) before answering.
    pub hang_share: f64,
    pub hang_for_ms: Option<u64>,
    /// A share of requests whose connection is closed in the middle of the response body.
    pub drop_share: f64,
    /// Scripted faults, consumed in order: each applies to the next `count` matching calls.
    pub script: Vec<ScriptedFault>,
    /// Seed of the generator behind every share above.
    pub seed: u64,
}

/// Latency added to every answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always this long.
    FixedMs(u64),
    /// Uniformly between the two bounds (inclusive), drawn from the seeded generator.
    UniformMs { min: u64, max: u64 },
}

/// A token-bucket rate limit on all calls of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
    /// Send `Retry-After` (whole seconds, at least 1) with each 429.
    #[serde(default = "yes")]
    pub retry_after: bool,
}

fn yes() -> bool {
    true
}

/// "Fail the next `count` calls of kind `call` (any call when absent) with `action`".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    #[serde(default)]
    pub call: Option<CallKind>,
    pub count: u32,
    pub action: FaultAction,
}

/// What a scripted fault does to a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer with this status and `{"error": ...}`; a 429 or 503 carries `Retry-After` when
    /// `retry_after_secs` is set.
    Status {
        status: u16,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Hang for the site's `hang_for_ms` before answering normally.
    Hang,
    /// Close the connection in the middle of the response body.
    Drop,
    /// Carry the call out, then answer with this status and `{"error": ...}` as if it had
    /// failed: a partner that answers 5xx after applying the change.
    Applied { status: u16 },
}

impl Faults {
    /// How long a hanging request hangs.
    pub fn hang_for(&self) -> Duration {
        Duration::from_millis(self.hang_for_ms.unwrap_or(120_000))
    }

    /// Checks the values a person may get wrong: shares within `0.0..=1.0`, statuses that are
    /// HTTP statuses, a sane rate limit and latency range. (Out-of-range shares set through the
    /// Rust API are clamped instead.)
    pub fn validate(&self) -> Result<(), String> {
        for (name, share) in [
            ("error_share", self.error_share),
            ("hang_share", self.hang_share),
            ("drop_share", self.drop_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be between 0.0 and 1.0, got {share}"));
            }
        }
        if let Some(status) = self
            .error_statuses
            .iter()
            .chain(self.script.iter().filter_map(|s| match &s.action {
                FaultAction::Status { status, .. } | FaultAction::Applied { status } => {
                    Some(status)
                }
                FaultAction::Hang | FaultAction::Drop => None,
            }))
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(format!("{status} is not an HTTP status"));
        }
        if let Some(limit) = &self.rate_limit {
            if !limit.per_second.is_finite() || limit.per_second < 0.0 {
                return Err("rate_limit.per_second must be a non-negative number".to_owned());
            }
        }
        if let Some(Latency::UniformMs { min, max }) = &self.latency {
            if min > max {
                return Err(format!("latency min {min} is above max {max}"));
            }
        }
        Ok(())
    }
}
