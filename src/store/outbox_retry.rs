//! The operator's "retry now" (`scim-bridge retry`, the console's failing page): outbox rows
//! whose last run failed, or that are parked, become due at once instead of at their backoff
//! time. One statement on both back ends. A row under a live claim is left alone: its worker
//! records the outcome under its claim token (see `outbox.rs`), and moving its due time would
//! not make it run sooner anyway; nothing else about a row (generation, attempts, last error,
//! claim) changes, so the fencing rules of the workers hold as they are.

use super::{retrying, Store, StoreError};

/// Which rows an operator's retry covers; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryFilter {
    pub tenant: Option<String>,
    pub site: Option<String>,
    /// A SCIM user id, or a partner email (any case) of a user or a deleted user's tombstone.
    pub user: Option<String>,
}

impl Store {
    /// Makes the failing and parked rows that `filter` matches, that no worker holds and that
    /// are not due yet, due at `now_ms`. Returns how many rows it moved.
    pub async fn retry_outbox_now(
        &self,
        filter: &RetryFilter,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let tenant = filter.tenant.as_deref();
        let site = filter.site.as_deref();
        let user = filter.user.as_deref();
        let user_lc = user.map(str::to_lowercase);
        let user_lc = user_lc.as_deref();
        retrying(move || async move {
            let done = with_pool!(self, pool => {
                sqlx::query(
                    "UPDATE outbox SET due_ms = $1 \
                     WHERE (attempts > 0 OR parked_ms IS NOT NULL) AND due_ms > $1 \
                     AND (claimed_until_ms IS NULL OR claimed_until_ms < $1) \
                     AND (CAST($2 AS TEXT) IS NULL OR tenant = $2) \
                     AND (CAST($3 AS TEXT) IS NULL OR site = $3) \
                     AND (CAST($4 AS TEXT) IS NULL OR user_id = $4 \
                          OR EXISTS (SELECT 1 FROM users u WHERE u.tenant = outbox.tenant \
                             AND u.id = outbox.user_id AND u.partner_email_lc = $5) \
                          OR EXISTS (SELECT 1 FROM user_tombstones t \
                             WHERE t.tenant = outbox.tenant AND t.id = outbox.user_id \
                             AND t.partner_email_lc = $5))",
                )
                .bind(now_ms)
                .bind(tenant)
                .bind(site)
                .bind(user)
                .bind(user_lc)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
            })?;
            Ok(done)
        })
        .await
    }
}
