//! The store behind an RBAC site's links (`partner_links`): every replica resolves a user's
//! id and a group's role through the same rows.

use std::sync::Arc;

use crate::partner::client::{Link, LinkFuture, LinkKind, SiteLinks};
use crate::store::{PartnerLink, Store};

/// One site's links in the store.
#[derive(Debug)]
pub struct StoreLinks {
    store: Store,
    tenant: String,
    site: String,
}

impl StoreLinks {
    pub fn new(store: Store, tenant: &str, site: &str) -> Arc<StoreLinks> {
        Arc::new(StoreLinks {
            store,
            tenant: tenant.to_owned(),
            site: site.to_owned(),
        })
    }
}

fn from_row(row: PartnerLink) -> Link {
    Link {
        name: row.name,
        partner_id: row.partner_id,
        adopted: row.adopted,
    }
}

impl SiteLinks for StoreLinks {
    fn get<'a>(&'a self, kind: LinkKind, name: &'a str) -> LinkFuture<'a, Option<Link>> {
        Box::pin(async move {
            self.store
                .partner_link(&self.tenant, &self.site, kind.as_str(), name)
                .await
                .map(|row| row.map(from_row))
                .map_err(|e| e.to_string())
        })
    }

    fn all(&self, kind: LinkKind) -> LinkFuture<'_, Vec<Link>> {
        Box::pin(async move {
            self.store
                .partner_links(&self.tenant, &self.site, kind.as_str())
                .await
                .map(|rows| rows.into_iter().map(from_row).collect())
                .map_err(|e| e.to_string())
        })
    }

    fn put<'a>(
        &'a self,
        kind: LinkKind,
        link: &'a Link,
        replacing: Option<&'a str>,
    ) -> LinkFuture<'a, ()> {
        Box::pin(async move {
            let row = PartnerLink {
                name: link.name.clone(),
                partner_id: link.partner_id.clone(),
                adopted: link.adopted,
            };
            self.store
                .put_partner_link(&self.tenant, &self.site, kind.as_str(), &row, replacing)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn remove<'a>(&'a self, kind: LinkKind, name: &'a str) -> LinkFuture<'a, ()> {
        Box::pin(async move {
            self.store
                .delete_partner_link(&self.tenant, &self.site, kind.as_str(), name)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
