//! Read-only views of the outbox for operators (`scim-bridge status`): its gauges per
//! (tenant, site), and the rows whose last run failed, with the user they are about. The
//! workers never read these; [`Store::outbox_stats`] stays the process-wide gauge for metrics.

use serde::Serialize;

use super::{retrying, to_u64, Store, StoreError};

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
