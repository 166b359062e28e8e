//! Read-only views of the outbox for operators (`scim-bridge status`, `/readyz`, metrics): its
//! gauges per (tenant, site), the rows whose last run failed, with the user they are about,
//! the deletions still pending per tenant (tombstones), and whether the outbox is *stuck* (DESIGN.md section 7: the bridge is then degraded, never
//! unready). The workers never read these; [`Store::outbox_stats`] stays the process-wide gauge
//! for metrics.

use std::time::Duration;

use serde::Serialize;

use super::{retrying, to_u64, OutboxAges, OutboxStats, Store, StoreError};

/// How the outbox fares as a whole: the one assessment behind `/readyz`'s `outbox` check, the
/// `scim_bridge_degraded` gauge and `scim-bridge status`, so the three never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutboxHealth {
    /// Rows whose last run failed.
    pub failing: u64,
    /// Seconds since the longest-failing row was (last) marked; `None` when nothing fails.
    pub oldest_failing_age_s: Option<u64>,
    /// The limit past which a failing row makes the outbox stuck (`None`: never stuck).
    pub stuck_after_s: Option<u64>,
    /// A row has kept failing for longer than the limit: the bridge is degraded.
    pub stuck: bool,
}

impl OutboxHealth {
    /// Assesses the outbox from its gauges as of `now_ms`; `stuck_after` `None` never calls it
    /// stuck.
    pub fn assess(
        stats: &OutboxStats,
        ages: &OutboxAges,
        now_ms: i64,
        stuck_after: Option<Duration>,
    ) -> Self {
        let age_ms = ages
            .oldest_failing_marked_ms
            .map(|at| u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0));
        let stuck = match (age_ms, stuck_after) {
            (Some(age), Some(limit)) => Duration::from_millis(age) > limit,
            _ => false,
        };
        Self {
            failing: stats.failing,
            oldest_failing_age_s: age_ms.map(|ms| ms / 1000),
            stuck_after_s: stuck_after.map(|d| d.as_secs()),
            stuck,
        }
    }

    /// One sentence for operators: what fails and for how long. Names no user, site or
    /// address, so it may go into an unauthenticated answer.
    pub fn describe(&self) -> String {
        let rows = if self.failing == 1 {
            "1 membership change is".to_owned()
        } else {
            format!("{} membership changes are", self.failing)
        };
        let age = self
            .oldest_failing_age_s
            .map(|s| format!(", the oldest for {s} s"))
            .unwrap_or_default();
        let limit = self
            .stuck_after_s
            .map(|s| format!(" (limit {s} s)"))
            .unwrap_or_default();
        format!(
            "{rows} failing at the partner{age}{limit}; requests are still served and the \
             changes retried. See `scim-bridge status` and the log."
        )
    }
}

/// The outbox of one (tenant, site).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxSiteStats {
    pub tenant: String,
    pub site: String,
    /// Rows waiting (due or not, claimed or not).
    pub depth: u64,
    /// Rows whose last run failed (parked rows aside).
    pub failing: u64,
    /// Rows parked because no process that claimed them serves their site.
    pub parked: u64,
    /// Rows whose claim's lease ran out without an outcome (a worker died or lost the
    /// store): taken over by the next claim.
    pub overdue_claims: u64,
    /// The earliest due time among them.
    pub oldest_due_ms: Option<i64>,
}

/// An outbox row whose last run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxFailure {
    pub tenant: String,
    pub site: String,
    pub user_id: String,
    /// The partner email of the user, when the user is still in the store.
    pub email: Option<String>,
    /// Failed runs since the last mark that succeeded.
    pub attempts: i32,
    pub last_error: Option<String>,
    /// When the row was last marked.
    pub marked_ms: i64,
    /// When the next run is due.
    pub due_ms: i64,
}

/// The deletions of one tenant not yet carried out at every site (pending tombstones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingDeletions {
    pub tenant: String,
    pub count: u64,
    /// When the oldest of them was deleted in SCIM.
    pub oldest_deleted_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct SiteRecord {
    tenant: String,
    site: String,
    depth: i64,
    failing: i64,
    parked: i64,
    overdue_claims: i64,
    oldest_due_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct FailureRecord {
    tenant: String,
    site: String,
    user_id: String,
    email: Option<String>,
    attempts: i32,
    last_error: Option<String>,
    marked_ms: i64,
    due_ms: i64,
}

impl Store {
    /// The outbox as a whole as of `now_ms` (two aggregate queries); see [`OutboxHealth`].
    pub async fn outbox_health(
        &self,
        now_ms: i64,
        stuck_after: Option<Duration>,
    ) -> Result<OutboxHealth, StoreError> {
        let stats = self.outbox_stats().await?;
        let ages = self.outbox_ages().await?;
        Ok(OutboxHealth::assess(&stats, &ages, now_ms, stuck_after))
    }

    /// The outbox gauges of every (tenant, site) that has rows, of one tenant or of all, in
    /// (tenant, site) order.
    pub async fn outbox_by_site(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<OutboxSiteStats>, StoreError> {
        retrying(move || async move {
            let records: Vec<SiteRecord> = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT tenant, site, COUNT(*) AS depth, \
                     COUNT(CASE WHEN attempts > 0 AND parked_ms IS NULL THEN 1 END) AS failing, \
                     COUNT(CASE WHEN parked_ms IS NOT NULL THEN 1 END) AS parked, \
                     COUNT(CASE WHEN claimed_until_ms < $2 THEN 1 END) AS overdue_claims, \
                     MIN(due_ms) AS oldest_due_ms FROM outbox \
                     WHERE (CAST($1 AS TEXT) IS NULL OR tenant = $1) \
                     GROUP BY tenant, site ORDER BY tenant, site",
                )
                .bind(tenant)
                .bind(super::outbox::now_ms())
                .fetch_all(pool)
                .await
            })?;
            Ok(records
                .into_iter()
                .map(|r| OutboxSiteStats {
                    tenant: r.tenant,
                    site: r.site,
                    depth: to_u64(r.depth),
                    failing: to_u64(r.failing),
                    parked: to_u64(r.parked),
                    overdue_claims: to_u64(r.overdue_claims),
                    oldest_due_ms: r.oldest_due_ms,
                })
                .collect())
        })
        .await
    }

    /// The pending deletions (tombstones not yet converged at every site) of every tenant that
    /// has some, of one tenant or of all, in tenant order.
    pub async fn pending_deletions(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<PendingDeletions>, StoreError> {
        retrying(move || async move {
            let records: Vec<(String, i64, Option<i64>)> = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT tenant, COUNT(*), MIN(deleted_ms) FROM user_tombstones \
                     WHERE converged_ms IS NULL AND (CAST($1 AS TEXT) IS NULL OR tenant = $1) \
                     GROUP BY tenant ORDER BY tenant",
                )
                .bind(tenant)
                .fetch_all(pool)
                .await
            })?;
            Ok(records
                .into_iter()
                .map(|(tenant, count, oldest_deleted_ms)| PendingDeletions {
                    tenant,
                    count: to_u64(count),
                    oldest_deleted_ms,
                })
                .collect())
        })
        .await
    }

    /// Up to `limit` rows whose last run failed, of one tenant or of all, the longest-marked
    /// first, with the partner email of their user.
    pub async fn outbox_failures(
        &self,
        tenant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxFailure>, StoreError> {
        retrying(move || async move {
            let records: Vec<FailureRecord> = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT o.tenant, o.site, o.user_id, \
                     COALESCE(u.partner_email, t.partner_email) AS email, o.attempts, \
                     o.last_error, o.marked_ms, o.due_ms FROM outbox o \
                     LEFT JOIN users u ON u.tenant = o.tenant AND u.id = o.user_id \
                     LEFT JOIN user_tombstones t ON t.tenant = o.tenant AND t.id = o.user_id \
                     AND t.kind = 'deleted' \
                     WHERE o.attempts > 0 AND o.parked_ms IS NULL \
                     AND (CAST($1 AS TEXT) IS NULL OR o.tenant = $1) \
                     ORDER BY o.marked_ms, o.tenant, o.site, o.user_id LIMIT $2",
                )
                .bind(tenant)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
            })?;
            Ok(records
                .into_iter()
                .map(|r| OutboxFailure {
                    tenant: r.tenant,
                    site: r.site,
                    user_id: r.user_id,
                    email: r.email,
                    attempts: r.attempts,
                    last_error: r.last_error,
                    marked_ms: r.marked_ms,
                    due_ms: r.due_ms,
                })
                .collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ages(failing_since: Option<i64>) -> OutboxAges {
        OutboxAges {
            oldest_marked_ms: Some(0),
            oldest_failing_marked_ms: failing_since,
        }
    }

    #[test]
    fn the_outbox_is_stuck_only_past_the_limit_and_never_without_one() {
        let stats = OutboxStats {
            depth: 3,
            oldest_due_ms: Some(0),
            failing: 2,
        };
        let limit = Some(Duration::from_secs(900));
        let at = |now_ms| OutboxHealth::assess(&stats, &ages(Some(0)), now_ms, limit);
        assert!(!at(900_000).stuck, "at the limit is not past it");
        let past = at(900_001);
        assert!(past.stuck);
        assert_eq!(
            (past.failing, past.oldest_failing_age_s, past.stuck_after_s),
            (2, Some(900), Some(900))
        );
        assert!(past
            .describe()
            .starts_with("2 membership changes are failing"));
        assert!(past
            .describe()
            .contains("the oldest for 900 s (limit 900 s)"));
        // Nothing failing, or no limit: never stuck.
        let calm = OutboxHealth::assess(&stats, &ages(None), i64::MAX, limit);
        assert_eq!((calm.stuck, calm.oldest_failing_age_s), (false, None));
        assert!(!OutboxHealth::assess(&stats, &ages(Some(0)), i64::MAX, None).stuck);
        // A clock behind the mark time counts as no age at all.
        assert_eq!(at(-5).oldest_failing_age_s, Some(0));
    }
}
