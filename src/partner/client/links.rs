//! What an RBAC site's ids are linked to: the bridge's store keeps them for every replica
//! (`partner_links`); a client without one keeps them in memory.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

/// What a link is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// A partner email -> the user's id.
    User,
    /// A SCIM group's displayName -> the id of its role.
    Role,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::User => "user",
            LinkKind::Role => "role",
        }
    }
}

/// `name` (any case) is the partner object `partner_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub partner_id: String,
    /// Found at the partner rather than created by the bridge.
    pub adopted: bool,
}

/// A future of a link store; its error is a message (the store's, never a secret).
pub type LinkFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where an RBAC site's links are kept, keyed by name in any case.
pub trait SiteLinks: Send + Sync + std::fmt::Debug {
    fn get<'a>(&'a self, kind: LinkKind, name: &'a str) -> LinkFuture<'a, Option<Link>>;
    fn all(&self, kind: LinkKind) -> LinkFuture<'_, Vec<Link>>;
    /// Links `link.name`, and unlinks at once `replacing` (another name) and any other name
    /// linked to the same partner object.
    fn put<'a>(
        &'a self,
        kind: LinkKind,
        link: &'a Link,
        replacing: Option<&'a str>,
    ) -> LinkFuture<'a, ()>;
    fn remove<'a>(&'a self, kind: LinkKind, name: &'a str) -> LinkFuture<'a, ()>;
}

/// Links in memory, for a client the bridge's store does not back (its own tests, tools).
#[derive(Debug, Default)]
pub struct MemoryLinks(std::sync::Mutex<HashMap<(LinkKind, String), Link>>);

impl MemoryLinks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(LinkKind, String), Link>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SiteLinks for MemoryLinks {
    fn get<'a>(&'a self, kind: LinkKind, name: &'a str) -> LinkFuture<'a, Option<Link>> {
        let found = self.map().get(&(kind, name.to_lowercase())).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn all(&self, kind: LinkKind) -> LinkFuture<'_, Vec<Link>> {
        let mut all: Vec<Link> = self
            .map()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, l)| l.clone())
            .collect();
        all.sort_by_key(|l| l.name.to_lowercase());
        Box::pin(async move { Ok(all) })
    }

    fn put<'a>(
        &'a self,
        kind: LinkKind,
        link: &'a Link,
        replacing: Option<&'a str>,
    ) -> LinkFuture<'a, ()> {
        let mut map = self.map();
        if let Some(old) = replacing {
            map.remove(&(kind, old.to_lowercase()));
        }
        map.retain(|(k, _), l| *k != kind || l.partner_id != link.partner_id);
        map.insert((kind, link.name.to_lowercase()), link.clone());
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, kind: LinkKind, name: &'a str) -> LinkFuture<'a, ()> {
        self.map().remove(&(kind, name.to_lowercase()));
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_put_replacing_another_name_moves_the_link() {
        let links = MemoryLinks::default();
        let link = |name: &str| Link {
            name: name.into(),
            partner_id: "r1".into(),
            adopted: false,
        };
        links
            .put(LinkKind::Role, &link("Analysts"), None)
            .await
            .unwrap();
        assert_eq!(
            links.get(LinkKind::Role, "ANALYSTS").await.unwrap(),
            Some(link("Analysts"))
        );
        assert_eq!(links.get(LinkKind::User, "analysts").await.unwrap(), None);
        links
            .put(LinkKind::Role, &link("Finance"), Some("analysts"))
            .await
            .unwrap();
        assert_eq!(links.get(LinkKind::Role, "Analysts").await.unwrap(), None);
        assert_eq!(
            links.all(LinkKind::Role).await.unwrap(),
            vec![link("Finance")]
        );
        // One object, one name: linking another name to it unlinks the first.
        links
            .put(LinkKind::Role, &link("Ledger"), None)
            .await
            .unwrap();
        assert_eq!(
            links.all(LinkKind::Role).await.unwrap(),
            vec![link("Ledger")]
        );
        links.remove(LinkKind::Role, "LEDGER").await.unwrap();
        assert!(links.all(LinkKind::Role).await.unwrap().is_empty());
    }
}
