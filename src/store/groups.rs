//! Groups and the memberships index (the group -> members map both `GET /Groups/{id}` and a
//! user's `groups` attribute read), and the membership transaction of the engine
//! (DESIGN.md section 4, step 1): memberships and outbox marks change together or not at all.

use super::error::Fail;
use super::outbox::mark_rows;
use super::types::{group_columns, lc, resource_text, rows, GroupRecord, MemberGroupRecord};
use super::{dedup, placeholders, retrying, Store, StoreError, CHUNK};
use super::{GroupRow, IndexTerm, MembershipChange, OutboxMark};
use std::collections::HashSet;

const INSERT_GROUP: &str = "INSERT INTO groups (tenant, id, display_name, display_name_lc, \
    external_id, partner_name, access, resource, created_ms, last_modified_ms, version) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const UPDATE_GROUP: &str = "UPDATE groups SET display_name = $3, display_name_lc = $4, \
    external_id = $5, partner_name = $6, access = $7, resource = $8, last_modified_ms = $9, \
    version = $10 WHERE tenant = $1 AND id = $2 AND version = $11";

/// Updates a group row inside transaction `$tx` if its version is still `$expected`; returns
/// from the enclosing function with `VersionMismatch` or `NotFound` otherwise.
macro_rules! update_group_in {
    ($tx:ident, $v:expr, $expected:expr) => {{
        let v: &GroupValues<'_> = $v;
        let expected: i64 = $expected;
        let updated = sqlx::query(UPDATE_GROUP)
            .bind(v.row.tenant.as_str())
            .bind(v.row.id.as_str())
            .bind(v.row.display_name.as_str())
            .bind(v.display_name_lc.as_str())
            .bind(v.row.external_id.as_deref())
            .bind(v.row.partner_name.as_str())
            .bind(v.row.access.as_deref())
            .bind(v.resource.as_str())
            .bind(v.row.last_modified_ms)
            .bind(expected.saturating_add(1))
            .bind(expected)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
        if updated == 0 {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT version FROM groups WHERE tenant = $1 AND id = $2")
                    .bind(v.row.tenant.as_str())
                    .bind(v.row.id.as_str())
                    .fetch_optional(&mut *$tx)
                    .await?;
            return Err(Fail::Store(match exists {
                Some(_) => StoreError::VersionMismatch,
                None => StoreError::NotFound,
            }));
        }
    }};
}

/// The values of a group row as the statements bind them.
struct GroupValues<'a> {
    row: &'a GroupRow,
    display_name_lc: String,
    resource: String,
}

impl<'a> GroupValues<'a> {
    fn of(row: &'a GroupRow) -> Result<Self, Fail> {
        Ok(GroupValues {
            row,
            display_name_lc: lc(&row.display_name),
            resource: resource_text(&row.resource, "members")?,
        })
    }
}

impl Store {
    /// Inserts a new group; `Conflict { what: "displayName" }` when its displayName is taken in
    /// the tenant (case-insensitively), `Conflict { what: "id" }` when its id is.
    pub async fn insert_group(&self, row: &GroupRow) -> Result<(), StoreError> {
        let v = &GroupValues::of(row)?;
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(INSERT_GROUP)
                    .bind(row.tenant.as_str())
                    .bind(row.id.as_str())
                    .bind(row.display_name.as_str())
                    .bind(v.display_name_lc.as_str())
                    .bind(row.external_id.as_deref())
                    .bind(row.partner_name.as_str())
                    .bind(row.access.as_deref())
                    .bind(v.resource.as_str())
                    .bind(row.created_ms)
                    .bind(row.last_modified_ms)
                    .bind(row.version)
                    .execute(pool)
                    .await
                    .map(|_| ())
            })?;
            Ok(())
        })
        .await
    }

    /// The group with this id in this tenant.
    pub async fn get_group(&self, tenant: &str, id: &str) -> Result<Option<GroupRow>, StoreError> {
        let found = self
            .find_groups(tenant, &[IndexTerm::Id(id.to_owned())])
            .await?;
        Ok(found.into_iter().next())
    }

    /// The group whose displayName equals `display_name` case-insensitively.
    pub async fn get_group_by_display_name(
        &self,
        tenant: &str,
        display_name: &str,
    ) -> Result<Option<GroupRow>, StoreError> {
        let found = self
            .find_groups(tenant, &[IndexTerm::DisplayName(display_name.to_owned())])
            .await?;
        Ok(found.into_iter().next())
    }

    /// Test support: replaces a group row (not its members). Same version rules as
    /// [`Store::update_user`]: the stored version must be `expected_version` and becomes
    /// `expected_version + 1`.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn update_group(
        &self,
        row: &GroupRow,
        expected_version: i64,
    ) -> Result<(), StoreError> {
        let v = &GroupValues::of(row)?;
        let begin = self.begin_write();
        retrying(move || async move {
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                update_group_in!(tx, v, expected_version);
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// Deletes a group and its memberships; returns the former member ids. `NotFound` when
    /// there is no such group.
    pub async fn delete_group(&self, tenant: &str, id: &str) -> Result<Vec<String>, StoreError> {
        let (members, _) = self.delete_group_in(tenant, id, &[], 0).await?;
        Ok(members)
    }

    /// Test support: deletes a group and its memberships and, in the same transaction, marks every former
    /// member for every site, so the workers take the group off them at the partner.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn delete_group_marking(
        &self,
        tenant: &str,
        id: &str,
        sites: &[String],
        now_ms: i64,
    ) -> Result<(Vec<String>, Vec<OutboxMark>), StoreError> {
        self.delete_group_in(tenant, id, sites, now_ms).await
    }

    /// Deletes a group and its memberships; marks every former member for every one of
    /// `sites` in the same transaction.
    async fn delete_group_in(
        &self,
        tenant: &str,
        id: &str,
        sites: &[String],
        now_ms: i64,
    ) -> Result<(Vec<String>, Vec<OutboxMark>), StoreError> {
        let sites = &dedup(sites);
        let begin = self.begin_write();
        retrying(move || async move {
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                let members: Vec<String> = sqlx::query_scalar(
                    "SELECT user_id FROM memberships WHERE tenant = $1 AND group_id = $2 \
                     ORDER BY user_id",
                )
                .bind(tenant)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM memberships WHERE tenant = $1 AND group_id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // Its roles at RBAC sites are no longer its: a later group of the name must
                // not be given them (`partner_links`).
                sqlx::query(
                    "DELETE FROM partner_links WHERE tenant = $1 AND kind = 'role' AND link_key \
                     IN (SELECT display_name_lc FROM groups WHERE tenant = $1 AND id = $2)",
                )
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let deleted = sqlx::query("DELETE FROM groups WHERE tenant = $1 AND id = $2")
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Err(Fail::Store(StoreError::NotFound));
                }
                let marks = mark_rows!(tx, tenant, sites, &members, now_ms);
                tx.commit().await?;
                Ok((members, marks))
            })
        })
        .await
    }

    /// The groups of the tenant matching every term, ordered by (created, id). No terms: every
    /// group of the tenant. `UserName` and `EmailValue` are not group indexes and answer
    /// `Other`.
    pub async fn find_groups(
        &self,
        tenant: &str,
        terms: &[IndexTerm],
    ) -> Result<Vec<GroupRow>, StoreError> {
        let select = concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups g WHERE g.tenant = $1"
        );
        let order = " ORDER BY g.created_ms, g.id";
        let records: Vec<GroupRecord> = self
            .find_where(select, tenant, terms, order, |term, n| {
                Ok(match term {
                    IndexTerm::Id(v) => (format!("g.id = ${n}"), v.clone()),
                    IndexTerm::DisplayName(v) => (format!("g.display_name_lc = ${n}"), lc(v)),
                    IndexTerm::ExternalId(v) => (format!("g.external_id = ${n}"), v.clone()),
                    IndexTerm::MemberValue(v) => (
                        format!(
                            "EXISTS (SELECT 1 FROM memberships m WHERE m.tenant = g.tenant \
                     AND m.group_id = g.id AND m.user_id = ${n})"
                        ),
                        v.clone(),
                    ),
                    IndexTerm::UserName(_) | IndexTerm::EmailValue(_) => {
                        return Err(StoreError::Other(format!(
                            "{term:?} is not an index of groups"
                        )))
                    }
                })
            })
            .await?;
        Ok(rows(records)?)
    }

    /// How many groups the tenant has.
    pub async fn count_groups(&self, tenant: &str) -> Result<u64, StoreError> {
        self.count_of("groups", tenant).await
    }

    /// One page of the tenant's groups in a stable order: (created, id).
    pub async fn list_groups_page(
        &self,
        tenant: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<GroupRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            group_columns!(),
            " FROM groups WHERE tenant = $1 ",
            "ORDER BY created_ms, id LIMIT $2 OFFSET $3"
        );
        let records: Vec<GroupRecord> = self.fetch_page(sql, tenant, offset, limit).await?;
        Ok(rows(records)?)
    }

    /// The partner group name of every group of the tenant: the groups the bridge manages.
    pub async fn managed_group_names(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        retrying(move || async move {
            let names: Vec<String> = with_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT partner_name FROM groups WHERE tenant = $1 \
                     UNION SELECT name FROM group_known_names WHERE tenant = $1 \
                     ORDER BY 1",
                )
                .bind(tenant)
                .fetch_all(pool)
                .await
            })?;
            Ok(names)
        })
        .await
    }

    /// Records partner names the bridge is about to give a group (a rename's old and new
    /// name), committed before the partner calls: from then on they count as managed
    /// ([`Store::managed_group_names`]) for as long as the group exists.
    pub async fn add_group_known_names(
        &self,
        tenant: &str,
        group_id: &str,
        names: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let begin = self.begin_write();
        retrying(move || async move {
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                for name in names {
                    // A name belongs to one group at a time: another group's claim on it (a
                    // name that group had before) ends here.
                    sqlx::query(
                        "DELETE FROM group_known_names WHERE tenant = $1 AND name_lc = $2 \
                         AND group_id <> $3",
                    )
                    .bind(tenant)
                    .bind(lc(name))
                    .bind(group_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO group_known_names (tenant, group_id, name, name_lc, \
                         since_ms) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (tenant, group_id, name_lc) \
                         DO UPDATE SET since_ms = excluded.since_ms",
                    )
                    .bind(tenant)
                    .bind(group_id)
                    .bind(name.as_str())
                    .bind(lc(name))
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// The other partner names the bridge has given the group whose partner name is now
    /// `partner_name` (a rename that half-happened at some site may have left one there), each
    /// with when the latest rename that gave or took it began. A name another group carries
    /// now is that group's, never a former name to rename back.
    pub async fn former_names_of(
        &self,
        tenant: &str,
        partner_name: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let name_lc = lc(partner_name);
        // Compared in Rust (`lc`), not with SQL `LOWER()`: SQLite's folds ASCII only, so a
        // non-ASCII name would find no former name, or another group's current one.
        let rows: Vec<(String, String, i64)> = retrying(move || async move {
            let rows = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT g.partner_name, k.name, k.since_ms FROM group_known_names k \
                     JOIN groups g ON g.tenant = k.tenant AND g.id = k.group_id \
                     WHERE g.tenant = $1 ORDER BY k.name_lc",
                )
                .bind(tenant)
                .fetch_all(pool)
                .await
            })?;
            Ok(rows)
        })
        .await?;
        let current: HashSet<String> = self
            .current_group_names(tenant)
            .await?
            .iter()
            .map(|n| lc(n))
            .collect();
        Ok(rows
            .into_iter()
            .filter(|(group_name, name, _)| {
                lc(group_name) == name_lc && lc(name) != name_lc && !current.contains(&lc(name))
            })
            .map(|(_, name, since)| (name, since))
            .collect())
    }

    /// The partner name of every group of the tenant (current names only).
    pub async fn current_group_names(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        retrying(move || async move {
            let names: Vec<String> = with_pool!(self, pool => {
                sqlx::query_scalar("SELECT partner_name FROM groups WHERE tenant = $1")
                    .bind(tenant)
                    .fetch_all(pool)
                    .await
            })?;
            Ok(names)
        })
        .await
    }

    /// The members of a group, sorted by id, each with what SCIM shows as its `display`: the
    /// user's displayName, or its userName when it has none. One statement whatever the
    /// group's size (a join of the membership index and the users; every member is a user of
    /// the tenant, the foreign key holds it).
    pub async fn group_members_shown(
        &self,
        tenant: &str,
        group_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // The displayName lives in the stored resource (JSON text).
        let display_name = match self.backend() {
            super::Backend::Sqlite => "CAST(json_extract(u.resource, '$.displayName') AS TEXT)",
            super::Backend::Postgres => "(CAST(u.resource AS jsonb) ->> 'displayName')",
        };
        let sql = format!(
            "SELECT m.user_id, COALESCE(NULLIF({display_name}, ''), u.user_name) \
             FROM memberships m JOIN users u ON u.tenant = m.tenant AND u.id = m.user_id \
             WHERE m.tenant = $1 AND m.group_id = $2 ORDER BY m.user_id"
        );
        let sql = sql.as_str();
        retrying(move || async move {
            let members: Vec<(String, String)> = with_pool!(self, pool => {
                sqlx::query_as(sql)
                    .bind(tenant)
                    .bind(group_id)
                    .fetch_all(pool)
                    .await
            })?;
            Ok(members)
        })
        .await
    }

    /// The member user ids of a group, sorted.
    pub async fn group_member_ids(
        &self,
        tenant: &str,
        group_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        retrying(move || async move {
            let ids: Vec<String> = with_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT user_id FROM memberships WHERE tenant = $1 AND group_id = $2 \
                     ORDER BY user_id",
                )
                .bind(tenant)
                .bind(group_id)
                .fetch_all(pool)
                .await
            })?;
            Ok(ids)
        })
        .await
    }

    /// Which of `user_ids` are members of the group, sorted: what a PATCH that names its
    /// members needs to know, at a cost that depends on the names, not on the group's size
    /// (one statement per 1000 names).
    pub async fn members_among(
        &self,
        tenant: &str,
        group_id: &str,
        user_ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let ids = dedup(user_ids);
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT user_id FROM memberships WHERE tenant = $1 AND group_id = $2 \
                 AND user_id IN ({})",
                placeholders(3, chunk.len())
            );
            let sql = sql.as_str();
            let found: Vec<String> = retrying(move || async move {
                let found: Vec<String> = with_pool!(self, pool => {
                    let mut query = sqlx::query_scalar(sql).bind(tenant).bind(group_id);
                    for id in chunk {
                        query = query.bind(id.as_str());
                    }
                    query.fetch_all(pool).await
                })?;
                Ok(found)
            })
            .await?;
            out.extend(found);
        }
        out.sort();
        Ok(out)
    }

    /// Test support: how many members a group has.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn member_count(&self, tenant: &str, group_id: &str) -> Result<u64, StoreError> {
        retrying(move || async move {
            let n: i64 = with_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM memberships WHERE tenant = $1 AND group_id = $2",
                )
                .bind(tenant)
                .bind(group_id)
                .fetch_one(pool)
                .await
            })?;
            Ok(super::to_u64(n))
        })
        .await
    }

    /// The groups a user is a member of, ordered by displayName (case-insensitively): a user's
    /// `groups` attribute and the engine's desired set.
    pub async fn groups_of_user(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<GroupRow>, StoreError> {
        retrying(move || async move {
            let records: Vec<GroupRecord> = with_pool!(self, pool => {
                sqlx::query_as(concat!(
                    "SELECT ", group_columns!("g"), " FROM groups g JOIN memberships m ",
                    "ON m.tenant = g.tenant AND m.group_id = g.id ",
                    "WHERE m.tenant = $1 AND m.user_id = $2 ORDER BY g.display_name_lc, g.id"
                ))
                .bind(tenant)
                .bind(user_id)
                .fetch_all(pool)
                .await
            })?;
            rows(records)
        })
        .await
    }

    /// [`Store::groups_of_user`] for many users in one statement per 1000 users: user id ->
    /// its groups, ordered by displayName. Users without groups are absent.
    pub async fn groups_of_users(
        &self,
        tenant: &str,
        user_ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<GroupRow>>, StoreError> {
        let ids = dedup(user_ids);
        let mut out: std::collections::HashMap<String, Vec<GroupRow>> =
            std::collections::HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                concat!(
                    "SELECT m.user_id AS member_id, ",
                    group_columns!("g"),
                    " FROM groups g JOIN memberships m ",
                    "ON m.tenant = g.tenant AND m.group_id = g.id ",
                    "WHERE m.tenant = $1 AND m.user_id IN ({}) ",
                    "ORDER BY m.user_id, g.display_name_lc, g.id"
                ),
                placeholders(2, chunk.len())
            );
            let sql = sql.as_str();
            let found = retrying(move || async move {
                let records: Vec<MemberGroupRecord> = with_pool!(self, pool => {
                    let mut query = sqlx::query_as(sql).bind(tenant);
                    for id in chunk {
                        query = query.bind(id.as_str());
                    }
                    query.fetch_all(pool).await
                })?;
                let mut pairs = Vec::with_capacity(records.len());
                for r in records {
                    let user = r.member_id;
                    let row: GroupRow = r.group.try_into()?;
                    pairs.push((user, row));
                }
                Ok(pairs)
            })
            .await?;
            for (user, row) in found {
                out.entry(user).or_default().push(row);
            }
        }
        Ok(out)
    }

    /// The membership transaction: in one database transaction, optionally update the group
    /// row (version check), insert the `add` memberships (ignoring present ones), delete the
    /// `remove` ones, and mark one outbox row per (site, user) for every user in
    /// add ∪ remove ∪ also_mark. Nothing is written when any step fails. `NotFound` when the
    /// group is missing or `add` names a user that does not exist.
    ///
    /// Cost: one statement per 1000 users per step, whatever the size of the group.
    pub async fn change_memberships(
        &self,
        change: &MembershipChange<'_>,
    ) -> Result<Vec<OutboxMark>, StoreError> {
        let c = *change;
        let group = match c.group {
            Some((row, expected)) => {
                if row.id != c.group_id || row.tenant != c.tenant {
                    return Err(StoreError::Other(
                        "the group row does not match the membership change".into(),
                    ));
                }
                Some((GroupValues::of(row)?, expected))
            }
            None => None,
        };
        let group = &group;
        let add = &dedup(c.add);
        let remove = &dedup(c.remove);
        let users = &dedup(c.add.iter().chain(c.remove).chain(c.also_mark));
        let sites = &dedup(c.sites);
        let begin = self.begin_write();
        retrying(move || async move {
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                match group {
                    Some((v, expected)) => update_group_in!(tx, v, *expected),
                    None => {
                        let exists: Option<i64> = sqlx::query_scalar(
                            "SELECT version FROM groups WHERE tenant = $1 AND id = $2",
                        )
                        .bind(c.tenant)
                        .bind(c.group_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if exists.is_none() {
                            return Err(Fail::Store(StoreError::NotFound));
                        }
                    }
                }
                for chunk in add.chunks(CHUNK) {
                    let values: Vec<String> =
                        (0..chunk.len()).map(|i| format!("($1, $2, ${})", i + 3)).collect();
                    let sql = format!(
                        "INSERT INTO memberships (tenant, group_id, user_id) VALUES {} \
                         ON CONFLICT DO NOTHING",
                        values.join(", ")
                    );
                    let mut query = sqlx::query(&sql).bind(c.tenant).bind(c.group_id);
                    for user in chunk {
                        query = query.bind(user.as_str());
                    }
                    query.execute(&mut *tx).await?;
                }
                for chunk in remove.chunks(CHUNK) {
                    let sql = format!(
                        "DELETE FROM memberships WHERE tenant = $1 AND group_id = $2 \
                         AND user_id IN ({})",
                        placeholders(3, chunk.len())
                    );
                    let mut query = sqlx::query(&sql).bind(c.tenant).bind(c.group_id);
                    for user in chunk {
                        query = query.bind(user.as_str());
                    }
                    query.execute(&mut *tx).await?;
                }
                let marks = mark_rows!(tx, c.tenant, sites, users, c.now_ms);
                tx.commit().await?;
                Ok(marks)
            })
        })
        .await
    }
}
