//! Users: the id map (SCIM id -> partner email), the last accepted SCIM resource, the `active`
//! state, and the indexes behind `userName`, `externalId` and `emails.value` filters.

use super::error::Fail;
use super::types::{lc, resource_text, rows, user_columns, UserRecord};
use super::{dedup, placeholders, retrying, Store, StoreError, CHUNK};
use super::{IndexTerm, UserRow};

/// How long a converged tombstone is kept (when the deletion of that user converged).
const TOMBSTONE_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// Writes a tombstone ($1 tenant, $2 id, $3 email, $4 lowercased, $5 kind, $6 now), pending.
const UPSERT_TOMBSTONE: &str = "INSERT INTO user_tombstones (tenant, id, partner_email, \
    partner_email_lc, kind, deleted_ms) VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (tenant, id, partner_email_lc) DO UPDATE SET partner_email = excluded.partner_email, \
    kind = excluded.kind, deleted_ms = excluded.deleted_ms, converged_ms = NULL, answered_ms = NULL";

const INSERT_USER: &str = "INSERT INTO users (tenant, id, user_name, user_name_lc, external_id, \
    active, partner_email, partner_email_lc, emails, resource, created_ms, last_modified_ms, \
    version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

const UPDATE_USER: &str = "UPDATE users SET user_name = $3, user_name_lc = $4, external_id = $5, \
    active = $6, partner_email = $7, partner_email_lc = $8, emails = $9, resource = $10, \
    last_modified_ms = $11, version = $12 \
    WHERE tenant = $1 AND id = $2 AND version = $13";

/// Writes the lowercased emails of one user into `user_emails`, one statement per chunk.
macro_rules! insert_emails {
    ($tx:ident, $tenant:expr, $user_id:expr, $emails_lc:expr) => {
        for chunk in $emails_lc.chunks(CHUNK) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("($1, $2, ${})", i + 3))
                .collect();
            let sql = format!(
                "INSERT INTO user_emails (tenant, user_id, value_lc) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql).bind($tenant).bind($user_id);
            for email in chunk {
                query = query.bind(email.as_str());
            }
            query.execute(&mut *$tx).await?;
        }
    };
}

/// Inserts one user row and its emails inside transaction `$tx`.
macro_rules! insert_user_in {
    ($tx:ident, $v:expr) => {{
        let v: &UserValues<'_> = $v;
        let row = v.row;
        sqlx::query(INSERT_USER)
            .bind(row.tenant.as_str())
            .bind(row.id.as_str())
            .bind(row.user_name.as_str())
            .bind(v.user_name_lc.as_str())
            .bind(row.external_id.as_deref())
            .bind(row.active)
            .bind(row.partner_email.as_str())
            .bind(v.partner_email_lc.as_str())
            .bind(v.emails.as_str())
            .bind(v.resource.as_str())
            .bind(row.created_ms)
            .bind(row.last_modified_ms)
            .bind(row.version)
            .execute(&mut *$tx)
            .await?;
        insert_emails!($tx, row.tenant.as_str(), row.id.as_str(), v.emails_lc);
    }};
}

/// The values of a user row as the statements bind them.
struct UserValues<'a> {
    row: &'a UserRow,
    user_name_lc: String,
    partner_email_lc: String,
    emails: String,
    emails_lc: Vec<String>,
    resource: String,
}

impl<'a> UserValues<'a> {
    fn of(row: &'a UserRow) -> Result<Self, Fail> {
        Ok(UserValues {
            row,
            user_name_lc: lc(&row.user_name),
            partner_email_lc: lc(&row.partner_email),
            emails: serde_json::to_string(&row.emails)?,
            emails_lc: dedup(row.emails.iter().map(|e| lc(e))),
            resource: resource_text(&row.resource, "groups")?,
        })
    }
}

impl Store {
    /// Inserts a new user; `Conflict { what: "userName" }` when its userName is taken in the
    /// tenant (case-insensitively), `Conflict { what: "id" }` when its id is.
    pub async fn insert_user(&self, row: &UserRow) -> Result<(), StoreError> {
        let values = UserValues::of(row)?;
        retrying(|| self.insert_user_once(&values)).await
    }

    async fn insert_user_once(&self, v: &UserValues<'_>) -> Result<(), Fail> {
        let begin = self.begin_write();
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            insert_user_in!(tx, v);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Test support: inserts many new users in one transaction; all or none.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn insert_users(&self, rows: &[UserRow]) -> Result<(), StoreError> {
        let values = &rows
            .iter()
            .map(UserValues::of)
            .collect::<Result<Vec<_>, Fail>>()?;
        let begin = self.begin_write();
        retrying(move || async move {
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                for v in values {
                    insert_user_in!(tx, v);
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// The user with this id in this tenant.
    pub async fn get_user(&self, tenant: &str, id: &str) -> Result<Option<UserRow>, StoreError> {
        let found = self
            .find_users(tenant, &[IndexTerm::Id(id.to_owned())])
            .await?;
        Ok(found.into_iter().next())
    }

    /// The user whose userName equals `user_name` case-insensitively.
    pub async fn get_user_by_user_name(
        &self,
        tenant: &str,
        user_name: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        let found = self
            .find_users(tenant, &[IndexTerm::UserName(user_name.to_owned())])
            .await?;
        Ok(found.into_iter().next())
    }

    /// The users whose partner email equals `email` case-insensitively (adoption, reconcile).
    pub async fn users_by_partner_email(
        &self,
        tenant: &str,
        email: &str,
    ) -> Result<Vec<UserRow>, StoreError> {
        let email_lc = &lc(email);
        retrying(move || async move {
            let records: Vec<UserRecord> = with_pool!(self, pool => {
                sqlx::query_as(concat!(
                    "SELECT ", user_columns!(), " FROM users ",
                    "WHERE tenant = $1 AND partner_email_lc = $2 ORDER BY created_ms, id"
                ))
                .bind(tenant)
                .bind(email_lc.as_str())
                .fetch_all(pool)
                .await
            })?;
            rows(records)
        })
        .await
    }

    /// Replaces a user. The stored version must be `expected_version` (else `VersionMismatch`;
    /// `NotFound` when the user is gone); it becomes `expected_version + 1`, whatever
    /// `row.version` says, so callers set `row.version = expected_version + 1` for the response.
    /// `created_ms` is kept. `Conflict` on a taken userName.
    pub async fn update_user(
        &self,
        row: &UserRow,
        expected_version: i64,
    ) -> Result<(), StoreError> {
        self.update_user_marking(row, expected_version, &[], None)
            .await
            .map(|_| ())
    }

    /// [`Store::update_user`] that also marks the user at `sites` in the outbox, in the same
    /// transaction: the change and the work it causes are committed together or not at all.
    ///
    /// `retired`: the user's former partner email after an email change; it becomes a
    /// `retired` tombstone in the same transaction, so the user's convergence at each site
    /// removes that account wherever the change did not remove it. The new email's own
    /// tombstone of this user, if any (an email changed back), goes.
    pub async fn update_user_marking(
        &self,
        row: &UserRow,
        expected_version: i64,
        sites: &[String],
        retired: Option<&str>,
    ) -> Result<Vec<super::OutboxMark>, StoreError> {
        let values = UserValues::of(row)?;
        let sites = &dedup(sites);
        retrying(|| self.update_user_once(&values, expected_version, sites, retired)).await
    }

    async fn update_user_once(
        &self,
        v: &UserValues<'_>,
        expected: i64,
        sites: &[String],
        retired: Option<&str>,
    ) -> Result<Vec<super::OutboxMark>, Fail> {
        let row = v.row;
        let begin = self.begin_write();
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let updated = sqlx::query(UPDATE_USER)
                .bind(row.tenant.as_str())
                .bind(row.id.as_str())
                .bind(row.user_name.as_str())
                .bind(v.user_name_lc.as_str())
                .bind(row.external_id.as_deref())
                .bind(row.active)
                .bind(row.partner_email.as_str())
                .bind(v.partner_email_lc.as_str())
                .bind(v.emails.as_str())
                .bind(v.resource.as_str())
                .bind(row.last_modified_ms)
                .bind(expected.saturating_add(1))
                .bind(expected)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM users WHERE tenant = $1 AND id = $2")
                        .bind(row.tenant.as_str())
                        .bind(row.id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                return Err(Fail::Store(match exists {
                    Some(_) => StoreError::VersionMismatch,
                    None => StoreError::NotFound,
                }));
            }
            sqlx::query("DELETE FROM user_emails WHERE tenant = $1 AND user_id = $2")
                .bind(row.tenant.as_str())
                .bind(row.id.as_str())
                .execute(&mut *tx)
                .await?;
            insert_emails!(tx, row.tenant.as_str(), row.id.as_str(), v.emails_lc);
            let now = super::outbox::now_ms();
            sqlx::query(
                "DELETE FROM user_tombstones WHERE tenant = $1 AND id = $2 \
                 AND partner_email_lc = $3",
            )
            .bind(row.tenant.as_str())
            .bind(row.id.as_str())
            .bind(v.partner_email_lc.as_str())
            .execute(&mut *tx)
            .await?;
            if let Some(email) = retired.filter(|e| !e.is_empty()) {
                sqlx::query(UPSERT_TOMBSTONE)
                    .bind(row.tenant.as_str())
                    .bind(row.id.as_str())
                    .bind(email)
                    .bind(lc(email))
                    .bind("retired")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            let users = [row.id.clone()];
            let marks = if sites.is_empty() {
                Vec::new()
            } else {
                super::outbox::mark_rows!(tx, row.tenant.as_str(), sites, users, super::outbox::now_ms())
            };
            tx.commit().await?;
            Ok(marks)
        })
    }

    /// Deletes a user with its memberships and email index, in one transaction that also
    /// records the deletion as the IdP's intent: when the user has a partner email and
    /// `sites` is not empty, a tombstone (the partner email to remove) and an outbox mark for
    /// each site, so the convergence of each (site, user) removes the partner account and the
    /// tombstone goes once every site has converged. `expected_version`: the delete happens
    /// only at that version (`VersionMismatch` otherwise). Returns the ids of the groups the
    /// user was a member of and the marks written; `NotFound` when there is no such user.
    pub async fn delete_user(
        &self,
        tenant: &str,
        id: &str,
        expected_version: Option<i64>,
        sites: &[String],
    ) -> Result<(Vec<String>, Vec<super::OutboxMark>), StoreError> {
        let sites = &dedup(sites);
        retrying(|| self.delete_user_once(tenant, id, expected_version, sites)).await
    }

    async fn delete_user_once(
        &self,
        tenant: &str,
        id: &str,
        expected_version: Option<i64>,
        sites: &[String],
    ) -> Result<(Vec<String>, Vec<super::OutboxMark>), Fail> {
        let begin = self.begin_write();
        let now = super::outbox::now_ms();
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let group_ids: Vec<String> = sqlx::query_scalar(
                "SELECT group_id FROM memberships WHERE tenant = $1 AND user_id = $2 \
                 ORDER BY group_id",
            )
            .bind(tenant)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            // The row goes first, at the version checked, and says which partner email it held:
            // a change committed meanwhile is either before (its email is the one tombstoned)
            // or refused (version mismatch), never lost between a read and the delete.
            let version = expected_version.unwrap_or(-1);
            let email: Option<String> = sqlx::query_scalar(
                "DELETE FROM users WHERE tenant = $1 AND id = $2 \
                 AND (CAST($3 AS BIGINT) < 0 OR version = $3) RETURNING partner_email",
            )
            .bind(tenant)
            .bind(id)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(email) = email else {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM users WHERE tenant = $1 AND id = $2")
                        .bind(tenant)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                return Err(Fail::Store(match exists {
                    Some(_) => StoreError::VersionMismatch,
                    None => StoreError::NotFound,
                }));
            };
            for sql in [
                "DELETE FROM memberships WHERE tenant = $1 AND user_id = $2",
                "DELETE FROM user_emails WHERE tenant = $1 AND user_id = $2",
            ] {
                sqlx::query(sql).bind(tenant).bind(id).execute(&mut *tx).await?;
            }
            let marks = if sites.is_empty() {
                sqlx::query("DELETE FROM outbox WHERE tenant = $1 AND user_id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                Vec::new()
            } else {
                if !email.is_empty() {
                    sqlx::query(UPSERT_TOMBSTONE)
                        .bind(tenant)
                        .bind(id)
                        .bind(email.as_str())
                        .bind(lc(&email))
                        .bind("deleted")
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                // Marked also without an email: former emails may still wait for removal.
                let users = [id.to_owned()];
                super::outbox::mark_rows!(tx, tenant, sites, users, now)
            };
            // Converged tombstones are kept a week as a record, then go.
            sqlx::query(
                "DELETE FROM user_tombstones WHERE tenant = $1 AND converged_ms < $2",
            )
            .bind(tenant)
            .bind(now.saturating_sub(TOMBSTONE_KEPT_MS))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok((group_ids, marks))
        })
    }

    /// A deleted user's tombstone as a retried DELETE needs it: `None` without one (never
    /// deleted, or longer ago than a week), else whether its deletion was already answered
    /// with success.
    pub async fn user_deletion(&self, tenant: &str, id: &str) -> Result<Option<bool>, StoreError> {
        retrying(move || async move {
            let found: Option<Option<i64>> = with_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT answered_ms FROM user_tombstones WHERE tenant = $1 AND id = $2 \
                     AND kind = 'deleted'",
                )
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await
            })?;
            Ok(found.map(|answered| answered.is_some()))
        })
        .await
    }

    /// Records that the deletion of the user was answered with success: a later DELETE of
    /// the id is answered 404.
    pub async fn answer_user_deletion(&self, tenant: &str, id: &str) -> Result<(), StoreError> {
        let now = super::outbox::now_ms();
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(
                    "UPDATE user_tombstones SET answered_ms = $3 WHERE tenant = $1 AND id = $2 \
                     AND kind = 'deleted'",
                )
                .bind(tenant)
                .bind(id)
                .bind(now)
                .execute(pool)
                .await
                .map(|_| ())
            })?;
            Ok(())
        })
        .await
    }

    /// The partner email of a deleted user whose deletion has not yet converged at every site.
    pub async fn user_tombstone(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        retrying(move || async move {
            let found: Option<String> = with_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT partner_email FROM user_tombstones WHERE tenant = $1 AND id = $2 \
                     AND kind = 'deleted' AND converged_ms IS NULL",
                )
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await
            })?;
            Ok(found)
        })
        .await
    }

    /// Whether a removal of the partner account `email` is still being carried out (a pending
    /// tombstone of another user than `except_id` holds it): a user taking that email must wait
    /// for it, or its convergence would race the removal at the partner. A removal left only
    /// at sites no process serves (rows parked at a site not in `served`, e.g. one taken out
    /// of the configuration) does not hold the email: nothing is carrying it out, and it would
    /// hold it for ever. A row parked at a served site (its API key refused: it resumes once
    /// the key is accepted) still holds it.
    pub async fn email_tombstoned(
        &self,
        tenant: &str,
        email: &str,
        except_id: Option<&str>,
        served: &[String],
    ) -> Result<bool, StoreError> {
        let email_lc = &lc(email);
        let except = except_id.unwrap_or_default();
        retrying(move || async move {
            let rows: Vec<(String, Option<i64>)> = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT o.site, o.parked_ms FROM user_tombstones t \
                     JOIN outbox o ON o.tenant = t.tenant AND o.user_id = t.id \
                     WHERE t.tenant = $1 AND t.partner_email_lc = $2 \
                     AND t.converged_ms IS NULL AND t.id <> $3",
                )
                .bind(tenant)
                .bind(email_lc.as_str())
                .bind(except)
                .fetch_all(pool)
                .await
            })?;
            Ok(rows
                .iter()
                .any(|(site, parked)| parked.is_none() || served.iter().any(|s| s == site)))
        })
        .await
    }

    /// The partner emails of a user (deleted, or live with former emails, or one an email
    /// change in flight is taking) whose removal has not converged at every site yet, as
    /// (email, kind, since when).
    pub async fn pending_tombstones(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        retrying(move || async move {
            let found: Vec<(String, String, i64)> = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT partner_email, kind, deleted_ms FROM user_tombstones \
                     WHERE tenant = $1 AND id = $2 AND converged_ms IS NULL \
                     ORDER BY partner_email_lc",
                )
                .bind(tenant)
                .bind(id)
                .fetch_all(pool)
                .await
            })?;
            Ok(found)
        })
        .await
    }

    /// Records, before its partner calls, the email an email change of user `id` is taking
    /// (kind `claimed`): no other user takes it meanwhile, and if the change never commits
    /// (the process dies mid-way) the account it may have made is removed once the claim is
    /// older than a rename can run. The commit of the change clears it.
    pub async fn claim_new_email(
        &self,
        tenant: &str,
        id: &str,
        email: &str,
    ) -> Result<(), StoreError> {
        let now = super::outbox::now_ms();
        let email_lc = &lc(email);
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(UPSERT_TOMBSTONE)
                    .bind(tenant)
                    .bind(id)
                    .bind(email)
                    .bind(email_lc.as_str())
                    .bind("claimed")
                    .bind(now)
                    .execute(pool)
                    .await
                    .map(|_| ())
            })?;
            Ok(())
        })
        .await
    }

    /// An email change that did not commit: the email it claimed becomes a `retired`
    /// tombstone, marked at `sites` in the same transaction, so each site's convergence
    /// removes whatever account the change left there.
    pub async fn release_claimed_email(
        &self,
        tenant: &str,
        id: &str,
        email: &str,
        sites: &[String],
    ) -> Result<Vec<super::OutboxMark>, StoreError> {
        let email_lc = &lc(email);
        let sites = &dedup(sites);
        let begin = self.begin_write();
        retrying(move || async move {
            let marks = with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                sqlx::query(
                    "UPDATE user_tombstones SET kind = 'retired', converged_ms = NULL \
                     WHERE tenant = $1 AND id = $2 AND partner_email_lc = $3 AND kind = 'claimed'",
                )
                .bind(tenant)
                .bind(id)
                .bind(email_lc.as_str())
                .execute(&mut *tx)
                .await?;
                let users = [id.to_owned()];
                let marks = super::outbox::mark_rows!(tx, tenant, sites, users, super::outbox::now_ms());
                tx.commit().await?;
                marks
            });
            Ok(marks)
        })
        .await
    }

    /// The tombstones of a tenant not yet converged, as (user id, partner email).
    pub async fn user_tombstones(&self, tenant: &str) -> Result<Vec<(String, String)>, StoreError> {
        retrying(move || async move {
            let found: Vec<(String, String)> = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT id, partner_email FROM user_tombstones WHERE tenant = $1 \
                     AND converged_ms IS NULL ORDER BY id",
                )
                .bind(tenant)
                .fetch_all(pool)
                .await
            })?;
            Ok(found)
        })
        .await
    }

    /// The users of the tenant matching every term (equality on indexed attributes), ordered by
    /// (created, id). No terms: every user of the tenant. `DisplayName` and `MemberValue` are
    /// not user indexes and answer `Other`.
    pub async fn find_users(
        &self,
        tenant: &str,
        terms: &[IndexTerm],
    ) -> Result<Vec<UserRow>, StoreError> {
        let select = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.tenant = $1"
        );
        let order = " ORDER BY u.created_ms, u.id";
        let records: Vec<UserRecord> = self
            .find_where(select, tenant, terms, order, |term, n| {
                Ok(match term {
                    IndexTerm::Id(v) => (format!("u.id = ${n}"), v.clone()),
                    IndexTerm::UserName(v) => (format!("u.user_name_lc = ${n}"), lc(v)),
                    IndexTerm::ExternalId(v) => (format!("u.external_id = ${n}"), v.clone()),
                    IndexTerm::EmailValue(v) => (
                        format!(
                            "EXISTS (SELECT 1 FROM user_emails e WHERE e.tenant = u.tenant \
                     AND e.user_id = u.id AND e.value_lc = ${n})"
                        ),
                        lc(v),
                    ),
                    IndexTerm::DisplayName(_) | IndexTerm::MemberValue(_) => {
                        return Err(StoreError::Other(format!(
                            "{term:?} is not an index of users"
                        )))
                    }
                })
            })
            .await?;
        Ok(rows(records)?)
    }

    /// How many users the tenant has.
    pub async fn count_users(&self, tenant: &str) -> Result<u64, StoreError> {
        self.count_of("users", tenant).await
    }

    /// One page of the tenant's users in a stable order: (created, id).
    pub async fn list_users_page(
        &self,
        tenant: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<UserRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant = $1 ",
            "ORDER BY created_ms, id LIMIT $2 OFFSET $3"
        );
        let records: Vec<UserRecord> = self.fetch_page(sql, tenant, offset, limit).await?;
        Ok(rows(records)?)
    }

    /// The users of the tenant with these ids (missing ones are left out), ordered by
    /// (created, id). Large lists are read in chunks.
    pub async fn users_by_ids(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> Result<Vec<UserRow>, StoreError> {
        let ids = dedup(ids);
        let mut out: Vec<UserRow> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE tenant = $1 AND id IN ({})"
                ),
                placeholders(2, chunk.len())
            );
            let sql = sql.as_str();
            let found = retrying(move || async move {
                let records: Vec<UserRecord> = with_pool!(self, pool => {
                    let mut query = sqlx::query_as(sql).bind(tenant);
                    for id in chunk {
                        query = query.bind(id.as_str());
                    }
                    query.fetch_all(pool).await
                })?;
                rows::<_, UserRow>(records)
            })
            .await?;
            out.extend(found);
        }
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }
}
