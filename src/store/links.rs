//! Partner links (`partner_links`, migration `0005_partner_links.sql`): the ids an RBAC site
//! addresses its users and roles by, per tenant and site, keyed by what the bridge addresses
//! them by (a partner email, a SCIM group's displayName; any case).
//!
//! A role link counts only while a group of the tenant carries its name: one written for a
//! name the store never committed (a rename whose commit failed and whose undo did not finish,
//! a create that crashed before its row) is not read, so it can neither hold a role against
//! the group that has it by name nor hand that role to a group made later under the name. A
//! group's role links go with its row ([`Store::delete_group`]).

use super::types::lc;
use super::{retrying, Store, StoreError};

/// One link: `name` (as the bridge last wrote it) is the partner object `partner_id`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PartnerLink {
    pub name: String,
    pub partner_id: String,
    /// Found at the partner rather than created by the bridge.
    pub adopted: bool,
}

impl Store {
    /// The link of `key` (any case), if any (a role link only while a group carries its
    /// name).
    pub async fn partner_link(
        &self,
        tenant: &str,
        site: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<PartnerLink>, StoreError> {
        let key = &lc(key);
        retrying(move || async move {
            Ok(with_pool!(self, pool => {
                sqlx::query_as::<_, PartnerLink>(
                    "SELECT name, partner_id, adopted FROM partner_links \
                     WHERE tenant = $1 AND site = $2 AND kind = $3 AND link_key = $4 \
                     AND (kind <> 'role' OR EXISTS (SELECT 1 FROM groups g \
                     WHERE g.tenant = partner_links.tenant \
                     AND (g.display_name_lc = partner_links.link_key \
                     OR g.partner_name = partner_links.name)))",
                )
                .bind(tenant)
                .bind(site)
                .bind(kind)
                .bind(key.as_str())
                .fetch_optional(pool)
                .await?
            }))
        })
        .await
    }

    /// Every link of `kind` at `site`, by name (role links only while a group carries their
    /// name).
    pub async fn partner_links(
        &self,
        tenant: &str,
        site: &str,
        kind: &str,
    ) -> Result<Vec<PartnerLink>, StoreError> {
        retrying(move || async move {
            Ok(with_pool!(self, pool => {
                sqlx::query_as::<_, PartnerLink>(
                    "SELECT name, partner_id, adopted FROM partner_links \
                     WHERE tenant = $1 AND site = $2 AND kind = $3 \
                     AND (kind <> 'role' OR EXISTS (SELECT 1 FROM groups g \
                     WHERE g.tenant = partner_links.tenant \
                     AND (g.display_name_lc = partner_links.link_key \
                     OR g.partner_name = partner_links.name))) \
                     ORDER BY link_key",
                )
                .bind(tenant)
                .bind(site)
                .bind(kind)
                .fetch_all(pool)
                .await?
            }))
        })
        .await
    }

    /// Links `link.name` (any case) to `link.partner_id`, replacing what it was linked to;
    /// `replacing` (any case), when given and another key, is unlinked in the same transaction
    /// (a rename moves the link), and so is any other name linked to the same partner object
    /// (one object is one name's: a role is one group's, an id one email's).
    pub async fn put_partner_link(
        &self,
        tenant: &str,
        site: &str,
        kind: &str,
        link: &PartnerLink,
        replacing: Option<&str>,
    ) -> Result<(), StoreError> {
        let key = &lc(&link.name);
        let old = &replacing.map(lc).filter(|o| o != key);
        let begin = self.begin_write();
        retrying(move || async move {
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                sqlx::query(
                    "DELETE FROM partner_links WHERE tenant = $1 AND site = $2 AND kind = $3 \
                     AND partner_id = $4 AND link_key <> $5",
                )
                .bind(tenant)
                .bind(site)
                .bind(kind)
                .bind(link.partner_id.as_str())
                .bind(key.as_str())
                .execute(&mut *tx)
                .await?;
                if let Some(old) = old {
                    sqlx::query(
                        "DELETE FROM partner_links \
                         WHERE tenant = $1 AND site = $2 AND kind = $3 AND link_key = $4",
                    )
                    .bind(tenant)
                    .bind(site)
                    .bind(kind)
                    .bind(old.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO partner_links \
                     (tenant, site, kind, link_key, name, partner_id, adopted) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant, site, kind, link_key) DO UPDATE \
                     SET name = excluded.name, partner_id = excluded.partner_id, \
                     adopted = excluded.adopted",
                )
                .bind(tenant)
                .bind(site)
                .bind(kind)
                .bind(key.as_str())
                .bind(link.name.as_str())
                .bind(link.partner_id.as_str())
                .bind(link.adopted)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// Unlinks `key` (any case); nothing when it is not linked.
    pub async fn delete_partner_link(
        &self,
        tenant: &str,
        site: &str,
        kind: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        let key = &lc(key);
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(
                    "DELETE FROM partner_links \
                     WHERE tenant = $1 AND site = $2 AND kind = $3 AND link_key = $4",
                )
                .bind(tenant)
                .bind(site)
                .bind(kind)
                .bind(key.as_str())
                .execute(pool)
                .await?;
            });
            Ok(())
        })
        .await
    }
}
