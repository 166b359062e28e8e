//! The last credential check of each partner site (`site_credentials`, migration
//! `0006_site_credentials.sql`): written by the processes that serve the site, read by
//! `scim-bridge status` (a process of its own, which sees only the store).

use super::{retrying, Store, StoreError};

/// A site's last known credential state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SiteCredentials {
    pub tenant: String,
    pub site: String,
    /// `ok` or `refused`.
    pub state: String,
    /// When a check or a partner answer last found it.
    pub checked_ms: i64,
    /// Since when it holds.
    pub since_ms: i64,
}

impl Store {
    /// Records that the partner accepted (`refused == false`) or refused the site's key at
    /// `at_ms`; `since_ms` moves only when the state changes. An answer older than the one
    /// recorded (a worker's late write, another replica's) changes nothing.
    pub async fn record_site_credentials(
        &self,
        tenant: &str,
        site: &str,
        refused: bool,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let state = if refused { "refused" } else { "ok" };
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(
                    "INSERT INTO site_credentials (tenant, site, state, checked_ms, since_ms) \
                     VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (tenant, site) DO UPDATE SET \
                     since_ms = CASE WHEN site_credentials.state = excluded.state \
                         THEN site_credentials.since_ms ELSE excluded.since_ms END, \
                     state = excluded.state, \
                     checked_ms = excluded.checked_ms \
                     WHERE excluded.checked_ms >= site_credentials.checked_ms",
                )
                .bind(tenant)
                .bind(site)
                .bind(state)
                .bind(at_ms)
                .execute(pool)
                .await
                .map(|_| ())
            })?;
            Ok(())
        })
        .await
    }

    /// Every site's last known credential state (of `tenant` only, when given).
    pub async fn site_credentials(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<SiteCredentials>, StoreError> {
        retrying(move || async move {
            Ok(with_pool!(self, pool => {
                sqlx::query_as::<_, SiteCredentials>(
                    "SELECT tenant, site, state, checked_ms, since_ms FROM site_credentials \
                     WHERE $1 IS NULL OR tenant = $1 ORDER BY tenant, site",
                )
                .bind(tenant)
                .fetch_all(pool)
                .await?
            }))
        })
        .await
    }
}
