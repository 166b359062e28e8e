//! Audit retention (`audit.retention_days`): `serve` deletes the audit entries older than the
//! retention shortly after it starts and every hour after, logging how many and counting them
//! in `scim_bridge_audit_pruned_total`. The store deletes in chunks (see
//! [`Store::prune_audit`]), so a large backlog does not hold the database for long. Every
//! replica runs the job; the deletes are idempotent, so running it twice costs a query.

use std::time::Duration;

use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;

/// How long after start the first run comes: past start-up, yet soon enough that a bridge
/// restarted often still prunes.
pub const FIRST_RUN_AFTER: Duration = Duration::from_secs(60);
/// Time between runs.
pub const RUN_EVERY: Duration = Duration::from_secs(3600);

const DAY_MS: i64 = 86_400_000;

/// Deletes the audit entries older than `retention_days` as of `now_ms` (0: keeps them all
/// and deletes nothing); returns how many it deleted, after logging and counting them.
pub async fn prune_audit(
    store: &Store,
    metrics: &Metrics,
    retention_days: u32,
    now_ms: i64,
) -> Result<u64, StoreError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let before_ms = now_ms.saturating_sub(i64::from(retention_days) * DAY_MS);
    let deleted = store.prune_audit(before_ms).await?;
    metrics.audit_pruned(deleted);
    if deleted > 0 {
        tracing::info!(
            deleted,
            retention_days,
            "audit: deleted the entries older than the retention"
        );
    } else {
        tracing::debug!(retention_days, "audit: no entry older than the retention");
    }
    Ok(deleted)
}

/// Starts the periodic pruning: a first run after `first_after`, then one every `every`.
/// `None` when `retention_days` is 0 (keep forever). The task ends when the handle is
/// aborted; a failed run is logged and the next one tries again.
pub fn start(
    store: Store,
    metrics: Metrics,
    retention_days: u32,
    first_after: Duration,
    every: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    if retention_days == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        tokio::time::sleep(first_after).await;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await; // the first tick fires at once
            let now = crate::bridge::now_ms();
            if let Err(e) = prune_audit(&store, &metrics, retention_days, now).await {
                tracing::warn!(error = %e, "audit: pruning failed; retrying at the next run");
            }
        }
    }))
}
