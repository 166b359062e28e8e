//! The outbox of the membership engine (DESIGN.md section 4): one row per (tenant, site, user)
//! that must be brought in line with the store. Marks collapse: marking a present row bumps its
//! `generation` and makes it due now, without touching an active claim. Workers claim due rows
//! for a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never share a row), then
//! complete them (deleted unless re-marked meanwhile) or fail them (retried later).
//!
//! Generations: a new row starts at the marking time in milliseconds with
//! `done_generation = generation - 1`; each mark sets `generation = max(generation + 1, now)`.
//! So generations of one (tenant, site, user) only grow, even across a delete and a new mark,
//! and a mark is done exactly when its row is gone or `done_generation >= mark.generation`.

use std::collections::HashMap;
use std::time::Duration;

use super::{placeholders, retrying, to_u64, Backend, Store, StoreError, CHUNK};
use super::{OutboxAges, OutboxItem, OutboxMark, OutboxStats};

/// The upsert that marks `count` users of one (tenant = $1, site = $2) at time $3; user ids
/// from $4 on. Returns (tenant, site, user_id, generation) per row.
pub(super) fn mark_sql(count: usize) -> String {
    let values: Vec<String> = (0..count)
        .map(|i| format!("($1, $2, ${}, $3, $3 - 1, $3, 0, $3)", i + 4))
        .collect();
    format!(
        "INSERT INTO outbox (tenant, site, user_id, generation, done_generation, due_ms, \
         attempts, marked_ms) VALUES {} \
         ON CONFLICT (tenant, site, user_id) DO UPDATE SET \
         generation = CASE WHEN outbox.generation + 1 > excluded.generation \
             THEN outbox.generation + 1 ELSE excluded.generation END, \
         due_ms = CASE WHEN excluded.due_ms < outbox.due_ms \
             THEN excluded.due_ms ELSE outbox.due_ms END, \
         marked_ms = excluded.marked_ms \
         RETURNING tenant, site, user_id, generation",
        values.join(", ")
    )
}

/// Marks every user of `$users` for every site of `$sites` inside transaction `$tx`, one
/// statement per site and chunk; evaluates to the marks written.
///
/// Rows are marked in one global order (site, then user id): two transactions that mark
/// overlapping users in different orders deadlock on PostgreSQL, each holding a row the other
/// waits for, until the deadlock detector aborts one (seen in bench S1 on PostgreSQL: PATCHes
/// waiting up to 37 s, some answered 503).
macro_rules! mark_rows {
    ($tx:ident, $tenant:expr, $sites:expr, $users:expr, $now_ms:expr) => {{
        let tenant: &str = $tenant;
        let now_ms: i64 = $now_ms;
        let mut marks: Vec<$crate::store::OutboxMark> = Vec::new();
        let mut sites: Vec<&str> = $sites.iter().map(|s| s.as_str()).collect();
        sites.sort_unstable();
        sites.dedup();
        let mut users: Vec<&str> = $users.iter().map(|u| u.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        for site in sites {
            for chunk in users.chunks($crate::store::CHUNK) {
                let sql = $crate::store::outbox::mark_sql(chunk.len());
                let mut query = sqlx::query_as::<_, (String, String, String, i64)>(&sql)
                    .bind(tenant)
                    .bind(site)
                    .bind(now_ms);
                for user in chunk {
                    query = query.bind(*user);
                }
                for (tenant, site, user_id, generation) in query.fetch_all(&mut *$tx).await? {
                    marks.push($crate::store::OutboxMark {
                        tenant,
                        site,
                        user_id,
                        generation,
                    });
                }
            }
        }
        marks
    }};
}
pub(super) use mark_rows;

/// Which due rows are quiet enough to claim. A row is claimed once it has had no mark for `quiet` (more
/// marks for the same user are likely to follow, and one write will cover them all) and its
/// tenant is not in `busy` (tenants in the middle of a burst of changes), unless it fell due
/// `max_delay` ago. The default claims every due row.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet<'a> {
    pub quiet: Duration,
    pub max_delay: Duration,
    pub busy: &'a [String],
    /// When not empty, only rows of these tenants are claimed: the tenants the claiming
    /// process serves (replicas on one database may be configured differently for a while,
    /// e.g. during a rolling change that adds a tenant; a row is never claimed by a process
    /// that does not know its tenant).
    pub served: &'a [String],
}

#[derive(sqlx::FromRow)]
struct ItemRecord {
    tenant: String,
    site: String,
    user_id: String,
    generation: i64,
    attempts: i32,
    last_error: Option<String>,
    claim_token: Option<String>,
}

impl From<ItemRecord> for OutboxItem {
    fn from(r: ItemRecord) -> Self {
        OutboxItem {
            tenant: r.tenant,
            site: r.site,
            user_id: r.user_id,
            generation: r.generation,
            attempts: r.attempts,
            last_error: r.last_error,
            token: r.claim_token.unwrap_or_default(),
        }
    }
}

/// A fresh claim token: every claim gets its own, so an outcome recorded with an older one
/// (a worker whose lease ran out) changes nothing.
fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Store {
    /// Marks (site, user) rows for the workers without a membership change (user reactivated,
    /// group renamed, reconcile...), in one transaction. Returns the marks written.
    pub async fn mark_outbox(
        &self,
        tenant: &str,
        sites: &[String],
        user_ids: &[String],
    ) -> Result<Vec<OutboxMark>, StoreError> {
        self.mark_outbox_at(tenant, sites, user_ids, now_ms()).await
    }

    /// [`Store::mark_outbox`] at a given time (the rows become due at `now_ms`).
    pub async fn mark_outbox_at(
        &self,
        tenant: &str,
        sites: &[String],
        user_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<OutboxMark>, StoreError> {
        let sites = &super::dedup(sites);
        let users = &super::dedup(user_ids);
        if sites.is_empty() || users.is_empty() {
            return Ok(Vec::new());
        }
        let begin = self.begin_write();
        retrying(move || async move {
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                let marks = mark_rows!(tx, tenant, sites, users, now_ms);
                tx.commit().await?;
                Ok(marks)
            })
        })
        .await
    }

    /// Test support: claims up to `limit` rows that are due (`due_ms <= now_ms`) and not under a live lease,
    /// for `lease` from `now_ms`, in due order. On PostgreSQL rows locked by another claimer
    /// are skipped, so concurrent claimers (also in other replicas) never get the same row.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn claim_outbox(
        &self,
        worker: &str,
        limit: u32,
        lease: Duration,
        now_ms: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.claim_quiet_outbox(worker, limit, lease, now_ms, &Quiet::default())
            .await
    }

    /// [`Store::claim_outbox`] for rows that are quiet (see [`Quiet`]).
    pub async fn claim_quiet_outbox(
        &self,
        worker: &str,
        limit: u32,
        lease: Duration,
        now_ms: i64,
        quiet_rows: &Quiet<'_>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let Quiet {
            quiet,
            max_delay,
            busy,
            served,
        } = *quiet_rows;
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // A busy tenant is in the middle of a burst of changes: its rows wait until the
        // burst pauses, unless they are overdue (which also covers rows marked due early).
        let burst = if busy.is_empty() {
            String::new()
        } else {
            format!(
                " AND (tenant NOT IN ({}) OR due_ms <= $6)",
                placeholders(7, busy.len())
            )
        };
        let serving = if served.is_empty() {
            String::new()
        } else {
            format!(
                " AND tenant IN ({})",
                placeholders(7 + busy.len(), served.len())
            )
        };
        let token = 7 + busy.len() + served.len();
        let claim_token = &new_token();
        let sql = &format!(
            "WITH picked AS MATERIALIZED ( \
                SELECT tenant AS p_tenant, site AS p_site, user_id AS p_user FROM outbox \
                WHERE due_ms <= $3 AND (claimed_until_ms IS NULL OR claimed_until_ms < $3) \
                AND (marked_ms <= $5 OR due_ms <= $6){burst}{serving} \
                ORDER BY due_ms LIMIT $4{lock}) \
             UPDATE outbox SET claimed_by = $1, claimed_until_ms = $2, claim_token = ${token}, \
             parked_ms = NULL FROM picked \
             WHERE tenant = p_tenant AND site = p_site AND user_id = p_user \
             RETURNING tenant, site, user_id, generation, attempts, last_error, claim_token"
        );
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let until = now_ms.saturating_add(lease_ms);
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let quiet_before = now_ms.saturating_sub(ms(quiet));
        let overdue_before = now_ms.saturating_sub(ms(max_delay));
        retrying(move || async move {
            let records: Vec<ItemRecord> = with_pool!(self, pool => {
                let mut query = sqlx::query_as(sql)
                    .bind(worker)
                    .bind(until)
                    .bind(now_ms)
                    .bind(i64::from(limit))
                    .bind(quiet_before)
                    .bind(overdue_before);
                for tenant in busy.iter().chain(served) {
                    query = query.bind(tenant.as_str());
                }
                query.bind(claim_token.as_str()).fetch_all(pool).await
            })?;
            Ok(records.into_iter().map(OutboxItem::from).collect())
        })
        .await
    }

    /// Claims the rows of `marks` that are due and not under a live lease, whatever their
    /// quiet time: the rows of a write that stands alone, whose request works them itself.
    /// Rows another worker holds are skipped (an `UPDATE` re-checks the lease under the row
    /// lock, so two claimers never both get a row).
    pub async fn claim_outbox_marks(
        &self,
        worker: &str,
        marks: &[OutboxMark],
        lease: Duration,
        now_ms: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let until = now_ms.saturating_add(lease_ms);
        let mut groups: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
        for m in marks {
            groups
                .entry((m.tenant.as_str(), m.site.as_str()))
                .or_default()
                .push(m.user_id.as_str());
        }
        let mut items = Vec::new();
        let claim_token = &new_token();
        for ((tenant, site), users) in &groups {
            for chunk in users.chunks(CHUNK) {
                let sql = format!(
                    "UPDATE outbox SET claimed_by = $1, claimed_until_ms = $2, claim_token = $6, \
                     parked_ms = NULL \
                     WHERE tenant = $4 AND site = $5 AND due_ms <= $3 \
                     AND (claimed_until_ms IS NULL OR claimed_until_ms < $3) \
                     AND user_id IN ({}) \
                     RETURNING tenant, site, user_id, generation, attempts, last_error, \
                     claim_token",
                    placeholders(7, chunk.len())
                );
                let sql = &sql;
                let records: Vec<ItemRecord> = retrying(move || async move {
                    let records: Vec<ItemRecord> = with_pool!(self, pool => {
                        let mut query = sqlx::query_as(sql)
                            .bind(worker)
                            .bind(until)
                            .bind(now_ms)
                            .bind(*tenant)
                            .bind(*site)
                            .bind(claim_token.as_str());
                        for user in chunk {
                            query = query.bind(*user);
                        }
                        query.fetch_all(pool).await
                    })?;
                    Ok(records)
                })
                .await?;
                items.extend(records.into_iter().map(OutboxItem::from));
            }
        }
        Ok(items)
    }

    /// Releases every claim, for a process that starts on a SQLite store: SQLite serves one
    /// process, so any claim in it belongs to a process that is gone (crashed or killed), and
    /// its rows need not wait for their leases to run out. Returns how many were released.
    /// On PostgreSQL claims may belong to live replicas: nothing is released there.
    pub async fn release_stale_claims(&self) -> Result<u64, StoreError> {
        if self.backend() != Backend::Sqlite {
            return Ok(0);
        }
        retrying(move || async move {
            let done = with_pool!(self, pool => {
                sqlx::query(
                    "UPDATE outbox SET claimed_by = NULL, claimed_until_ms = NULL, claim_token = NULL \
                     WHERE claimed_by IS NOT NULL",
                )
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
            })?;
            Ok(done)
        })
        .await
    }

    /// Finishes a claimed row. `true`: the row is done (deleted, or already gone). `false`: it
    /// was marked again since the claim, so it stays, unclaimed and due, for another run (its
    /// `done_generation` records the generation this run completed), or the claim was lost
    /// (its lease ran out and another worker holds the row now): then nothing changes.
    pub async fn complete_outbox(&self, item: &OutboxItem) -> Result<bool, StoreError> {
        let begin = self.begin_write();
        // SQLite writes one transaction at a time (BEGIN IMMEDIATE); PostgreSQL needs the lock.
        let lock_tombstone = self.backend() == Backend::Postgres;
        retrying(move || async move {
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                if lock_tombstone {
                    // Two sites completing at once must not both see the other's row and both
                    // keep the tombstone: the second waits here for the first to commit.
                    sqlx::query(
                        "SELECT 1 FROM user_tombstones WHERE tenant = $1 AND id = $2 \
                         AND converged_ms IS NULL FOR UPDATE",
                    )
                    .bind(item.tenant.as_str())
                    .bind(item.user_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                let deleted = sqlx::query(
                    "DELETE FROM outbox WHERE tenant = $1 AND site = $2 AND user_id = $3 \
                     AND generation = $4 AND claim_token = $5",
                )
                .bind(item.tenant.as_str())
                .bind(item.site.as_str())
                .bind(item.user_id.as_str())
                .bind(item.generation)
                .bind(item.token.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let done = if deleted > 0 {
                    // A deleted user's tombstone is converged with its last row: every site
                    // has carried out the deletion (its partner account is gone). Not an email
                    // an email change in flight claims: that change's commit or release
                    // decides it (the convergence retires it once the change is surely over).
                    sqlx::query(
                        "UPDATE user_tombstones SET converged_ms = $3 WHERE tenant = $1 \
                         AND id = $2 AND converged_ms IS NULL AND kind <> 'claimed' \
                         AND NOT EXISTS (SELECT 1 FROM outbox WHERE tenant = $1 AND user_id = $2)",
                    )
                    .bind(item.tenant.as_str())
                    .bind(item.user_id.as_str())
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                    true
                } else {
                    let kept = sqlx::query(
                        // Its unworked marks came after the claim: due from the latest, so
                        // the coalescing delay counts from them, not from the first mark the
                        // run just finished (that would make the row overdue at once again).
                        "UPDATE outbox SET done_generation = CASE WHEN done_generation < $4 \
                         THEN $4 ELSE done_generation END, claimed_by = NULL, \
                         claimed_until_ms = NULL, claim_token = NULL, attempts = 0, \
                         last_error = NULL, \
                         due_ms = CASE WHEN due_ms < marked_ms THEN marked_ms ELSE due_ms END \
                         WHERE tenant = $1 AND site = $2 AND user_id = $3 AND claim_token = $5",
                    )
                    .bind(item.tenant.as_str())
                    .bind(item.site.as_str())
                    .bind(item.user_id.as_str())
                    .bind(item.generation)
                    .bind(item.token.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if kept == 0 {
                        // Gone (done), or held by a newer claim (not this run's to record).
                        let exists: Option<i64> = sqlx::query_scalar(
                            "SELECT generation FROM outbox WHERE tenant = $1 AND site = $2 \
                             AND user_id = $3",
                        )
                        .bind(item.tenant.as_str())
                        .bind(item.site.as_str())
                        .bind(item.user_id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                        exists.is_none()
                    } else {
                        false
                    }
                };
                tx.commit().await?;
                Ok(done)
            })
        })
        .await
    }

    /// Records a failed run: one more attempt, the error, due again at `retry_at_ms`, claim
    /// released. Changes nothing when the claim was lost (another worker holds the row).
    pub async fn fail_outbox(
        &self,
        item: &OutboxItem,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $4, due_ms = $5, \
                     claimed_by = NULL, claimed_until_ms = NULL, claim_token = NULL \
                     WHERE tenant = $1 AND site = $2 AND user_id = $3 AND claim_token = $6",
                )
                .bind(item.tenant.as_str())
                .bind(item.site.as_str())
                .bind(item.user_id.as_str())
                .bind(error)
                .bind(retry_at_ms)
                .bind(item.token.as_str())
                .execute(pool)
                .await
                .map(|_| ())
            })?;
            Ok(())
        })
        .await
    }

    /// Parks a claimed row of a site the claiming process does not serve: kept and reported,
    /// not counted as failing, looked at again at `retry_at_ms` (by a process that serves the
    /// site, if one does by then). Changes nothing when the claim was lost.
    pub async fn park_outbox(
        &self,
        item: &OutboxItem,
        reason: &str,
        retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(
                    "UPDATE outbox SET last_error = $4, due_ms = $5, parked_ms = $7, \
                     claimed_by = NULL, claimed_until_ms = NULL, claim_token = NULL \
                     WHERE tenant = $1 AND site = $2 AND user_id = $3 AND claim_token = $6",
                )
                .bind(item.tenant.as_str())
                .bind(item.site.as_str())
                .bind(item.user_id.as_str())
                .bind(reason)
                .bind(retry_at_ms)
                .bind(item.token.as_str())
                .bind(now)
                .execute(pool)
                .await
                .map(|_| ())
            })?;
            Ok(())
        })
        .await
    }

    /// Parks a claimed row of a site whose partner refused the API key: one more attempt (a
    /// request waiting for the row hears of the failure at once), the error, looked at again
    /// at `retry_at_ms` unless [`Store::resume_parked`] makes it due sooner. Parked rows are
    /// reported as such, not as failing. Changes nothing when the claim was lost.
    pub async fn park_refused(
        &self,
        item: &OutboxItem,
        reason: &str,
        retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $4, due_ms = $5, \
                     parked_ms = $7, claimed_by = NULL, claimed_until_ms = NULL, claim_token = NULL \
                     WHERE tenant = $1 AND site = $2 AND user_id = $3 AND claim_token = $6",
                )
                .bind(item.tenant.as_str())
                .bind(item.site.as_str())
                .bind(item.user_id.as_str())
                .bind(reason)
                .bind(retry_at_ms)
                .bind(item.token.as_str())
                .bind(now)
                .execute(pool)
                .await
                .map(|_| ())
            })?;
            Ok(())
        })
        .await
    }

    /// Makes the parked rows of a site due at `now_ms` (its key was found accepted again):
    /// they stay marked parked until a worker claims them. Returns how many.
    pub async fn resume_parked(
        &self,
        tenant: &str,
        site: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        retrying(move || async move {
            let n = with_pool!(self, pool => {
                sqlx::query(
                    "UPDATE outbox SET due_ms = $3 \
                     WHERE tenant = $1 AND site = $2 AND parked_ms IS NOT NULL AND due_ms > $3",
                )
                .bind(tenant)
                .bind(site)
                .bind(now_ms)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
            })?;
            Ok(n)
        })
        .await
    }

    /// Gives a claimed row back unworked: unclaimed and due as it was, for a worker to take.
    /// Changes nothing when the claim was lost.
    pub async fn release_outbox(&self, item: &OutboxItem) -> Result<(), StoreError> {
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(
                    "UPDATE outbox SET claimed_by = NULL, claimed_until_ms = NULL, \
                     claim_token = NULL \
                     WHERE tenant = $1 AND site = $2 AND user_id = $3 AND claim_token = $4",
                )
                .bind(item.tenant.as_str())
                .bind(item.site.as_str())
                .bind(item.user_id.as_str())
                .bind(item.token.as_str())
                .execute(pool)
                .await
                .map(|_| ())
            })?;
            Ok(())
        })
        .await
    }

    /// Extends to `until_ms` the claims of `worker` held under `tokens` (a worker renews what
    /// it still works on). Returns the rows renewed, as (tenant, site, user id, token): a claim
    /// missing from the answer is lost (completed, or taken over after its lease ran out).
    pub async fn renew_outbox_claims(
        &self,
        worker: &str,
        tokens: &[String],
        until_ms: i64,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let tokens = super::dedup(tokens);
        let mut renewed = Vec::new();
        for chunk in tokens.chunks(CHUNK) {
            let sql = &format!(
                "UPDATE outbox SET claimed_until_ms = $2 WHERE claimed_by = $1 \
                 AND claim_token IN ({}) RETURNING tenant, site, user_id, claim_token",
                placeholders(3, chunk.len())
            );
            let rows: Vec<(String, String, String, String)> = retrying(move || async move {
                let rows = with_pool!(self, pool => {
                    let mut query = sqlx::query_as(sql).bind(worker).bind(until_ms);
                    for token in chunk {
                        query = query.bind(token.as_str());
                    }
                    query.fetch_all(pool).await
                })?;
                Ok(rows)
            })
            .await?;
            renewed.extend(rows);
        }
        Ok(renewed)
    }

    /// How many of `marks` are not done yet: a mark is done when its row is gone or a worker
    /// completed its generation (`done_generation >= mark.generation`).
    pub async fn outbox_pending(&self, marks: &[OutboxMark]) -> Result<usize, StoreError> {
        let mut by_site: HashMap<(&str, &str), Vec<&OutboxMark>> = HashMap::new();
        for mark in marks {
            by_site
                .entry((mark.tenant.as_str(), mark.site.as_str()))
                .or_default()
                .push(mark);
        }
        let mut pending = 0;
        for ((tenant, site), marks) in by_site {
            let users = super::dedup(marks.iter().map(|m| m.user_id.as_str()));
            let mut done: HashMap<String, i64> = HashMap::new();
            for chunk in users.chunks(CHUNK) {
                let sql = &format!(
                    "SELECT user_id, done_generation FROM outbox WHERE tenant = $1 AND site = $2 \
                     AND user_id IN ({})",
                    placeholders(3, chunk.len())
                );
                let found: Vec<(String, i64)> = retrying(move || async move {
                    let found = with_pool!(self, pool => {
                        let mut query = sqlx::query_as(sql).bind(tenant).bind(site);
                        for user in chunk {
                            query = query.bind(user.as_str());
                        }
                        query.fetch_all(pool).await
                    })?;
                    Ok(found)
                })
                .await?;
                done.extend(found);
            }
            pending += marks
                .iter()
                .filter(|m| done.get(&m.user_id).is_some_and(|d| *d < m.generation))
                .count();
        }
        Ok(pending)
    }

    /// The marks of `marks` not done yet, each with its row's failed attempts and last error.
    /// For a request that waits on a few marks (one per site) and answers with their outcome.
    pub async fn outbox_outcomes(
        &self,
        marks: &[OutboxMark],
    ) -> Result<Vec<(OutboxMark, i32, Option<String>)>, StoreError> {
        let mut out = Vec::new();
        for mark in marks {
            let found: Option<(i64, i32, Option<String>)> = retrying(move || async move {
                let found = with_pool!(self, pool => {
                    sqlx::query_as(
                        "SELECT done_generation, attempts, last_error FROM outbox WHERE tenant = $1 \
                         AND site = $2 AND user_id = $3",
                    )
                    .bind(mark.tenant.as_str())
                    .bind(mark.site.as_str())
                    .bind(mark.user_id.as_str())
                    .fetch_optional(pool)
                    .await
                })?;
                Ok(found)
            })
            .await?;
            if let Some((done, attempts, error)) = found {
                if done < mark.generation {
                    out.push((mark.clone(), attempts, error));
                }
            }
        }
        Ok(out)
    }

    /// Outbox gauges: rows waiting, the earliest due time, rows whose last run failed.
    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        retrying(move || async move {
            let (depth, oldest_due_ms, failing): (i64, Option<i64>, i64) =
                with_pool!(self, pool => {
                    sqlx::query_as(
                        "SELECT COUNT(*), MIN(due_ms), \
                         COUNT(CASE WHEN attempts > 0 AND parked_ms IS NULL THEN 1 END) \
                         FROM outbox",
                    )
                    .fetch_one(pool)
                    .await
                })?;
            Ok(OutboxStats {
                depth: to_u64(depth),
                oldest_due_ms,
                failing: to_u64(failing),
            })
        })
        .await
    }

    /// When the longest-waiting rows were marked: the oldest of all, and the oldest of those
    /// whose last try failed. A row's mark time is its latest mark, so a row marked again
    /// while it fails looks younger than the change that first failed.
    pub async fn outbox_ages(&self) -> Result<OutboxAges, StoreError> {
        retrying(move || async move {
            let (oldest_marked_ms, oldest_failing_marked_ms): (Option<i64>, Option<i64>) =
                with_pool!(self, pool => {
                    sqlx::query_as(
                        "SELECT MIN(marked_ms), \
                         MIN(CASE WHEN attempts > 0 AND parked_ms IS NULL THEN marked_ms END) \
                         FROM outbox",
                    )
                    .fetch_one(pool)
                    .await
                })?;
            Ok(OutboxAges {
                oldest_marked_ms,
                oldest_failing_marked_ms,
            })
        })
        .await
    }
}

pub(super) use crate::clock::now_ms;
