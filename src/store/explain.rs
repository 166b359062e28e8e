//! Read-only views for `scim-bridge explain` and `GET /admin/explain`: the outbox rows of one
//! user (one per site) and the tombstones of a deleted user, found by id or former email. The
//! workers never read these.

use serde::Serialize;

use super::types::lc;
use super::{retrying, Store, StoreError};

/// One outbox row of a user at a site, as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OutboxRow {
    pub site: String,
    /// Bumped by every change to the user; the row is in line when `done_generation` equals
    /// it.
    pub generation: i64,
    pub done_generation: i64,
    pub due_ms: i64,
    /// Failed runs since the last one that succeeded.
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The worker holding the row now, and until when.
    pub claimed_by: Option<String>,
    pub claimed_until_ms: Option<i64>,
    pub marked_ms: i64,
    /// Set while the row waits for a process that serves its site.
    pub parked_ms: Option<i64>,
}

/// A partner account of a user that SCIM deleted, or an email a user no longer has, whose
/// removal is (or was) carried out at the sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Tombstone {
    pub id: String,
    pub partner_email: String,
    /// `deleted` (the SCIM user was deleted), `retired` (a former email of a live user) or
    /// `claimed` (an email change in flight is taking it).
    pub kind: String,
    pub deleted_ms: i64,
    /// When every site had the account removed; `None` while that is still being done.
    pub converged_ms: Option<i64>,
}

impl Store {
    /// The outbox rows of user `user_id`, by site.
    pub async fn outbox_rows_of_user(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        retrying(move || async move {
            Ok(with_pool!(self, pool => {
                sqlx::query_as::<_, OutboxRow>(
                    "SELECT site, generation, done_generation, due_ms, attempts, last_error, \
                     claimed_by, claimed_until_ms, marked_ms, parked_ms FROM outbox \
                     WHERE tenant = $1 AND user_id = $2 ORDER BY site",
                )
                .bind(tenant)
                .bind(user_id)
                .fetch_all(pool)
                .await?
            }))
        })
        .await
    }

    /// The tombstones whose user id is `id_or_email`, or whose partner email is it (any
    /// case), newest first.
    pub async fn tombstones_matching(
        &self,
        tenant: &str,
        id_or_email: &str,
    ) -> Result<Vec<Tombstone>, StoreError> {
        let email_lc = &lc(id_or_email);
        retrying(move || async move {
            Ok(with_pool!(self, pool => {
                sqlx::query_as::<_, Tombstone>(
                    "SELECT id, partner_email, kind, deleted_ms, converged_ms \
                     FROM user_tombstones WHERE tenant = $1 \
                     AND (id = $2 OR partner_email_lc = $3) \
                     ORDER BY deleted_ms DESC, id",
                )
                .bind(tenant)
                .bind(id_or_email)
                .bind(email_lc.as_str())
                .fetch_all(pool)
                .await?
            }))
        })
        .await
    }
}
