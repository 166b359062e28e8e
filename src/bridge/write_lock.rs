//! [`WriteLock`]: the bridge's hold on store write locks (`Store::take_write_locks`), so one
//! writer at a time acts on a name at the partner, across every replica: the names of a group
//! (a rename, a delete, a repair) and the userName and email a user takes (a create, a change).

use super::{now_ms, Site, Tenant};
use crate::store::{Store, StoreError};

/// Write locks held by one writer. Let go by [`WriteLock::release`]; when dropped without it
/// (a request cancelled midway, an error), they linger for the time a write already sent
/// takes to land; a holder that died lets go when the lease ends.
pub struct WriteLock {
    store: Store,
    tenant: String,
    keys: Vec<String>,
    holder: String,
    held: bool,
    linger_ms: i64,
}

impl WriteLock {
    /// The locks `keys` of `tenant` for `lease_ms`, lingering `linger_ms` when dropped, when
    /// no other holder has one of them (`None` then).
    pub async fn take(
        store: &Store,
        tenant: &str,
        keys: Vec<String>,
        (lease_ms, linger_ms): (u64, u64),
    ) -> Result<Option<Self>, StoreError> {
        let holder = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
        let taken = store
            .take_write_locks(tenant, &keys, &holder, now, until)
            .await?;
        Ok(taken.then(|| Self {
            store: store.clone(),
            tenant: tenant.to_owned(),
            keys,
            holder,
            held: true,
            linger_ms: i64::try_from(linger_ms).unwrap_or(i64::MAX),
        }))
    }

    /// Lets go: every partner call of the holder has ended.
    pub async fn release(mut self) {
        self.held = false;
        if let Err(e) = self
            .store
            .release_write_locks(&self.tenant, &self.keys, &self.holder)
            .await
        {
            tracing::warn!(error = %e, "letting go of a write lock failed; it ends with its lease");
        }
    }
}

/// Whether a partner write of a lock's holder may still land after the holder is done: a
/// call it sent whose last attempt got no answer (timed out, connection lost). A call the
/// partner answered, even with an error, has ended there.
#[derive(Debug, Default)]
pub struct InFlight(std::sync::atomic::AtomicBool);

impl InFlight {
    /// Notes the per-site results of the holder's partner calls.
    pub fn note<T>(&self, results: &[(&Site, Result<T, crate::partner::error::PartnerError>)]) {
        if results
            .iter()
            .any(|(_, r)| matches!(r, Err(e) if e.attempts > 0 && e.status.is_none()))
        {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn may_land(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Ends a hold with the outcome of the work it guarded: let go, unless the work failed with a
/// partner write that may still land ([`InFlight`]): then the locks linger for the time that
/// takes, so nobody acts on the name before it has.
pub async fn end<T, E>(
    lock: Option<WriteLock>,
    result: Result<T, E>,
    in_flight: &InFlight,
) -> Result<T, E> {
    match lock {
        Some(lock) if result.is_err() && in_flight.may_land() => drop(lock),
        Some(lock) => lock.release().await,
        None => {}
    }
    result
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, tenant, keys, holder) = (
            self.store.clone(),
            std::mem::take(&mut self.tenant),
            std::mem::take(&mut self.keys),
            std::mem::take(&mut self.holder),
        );
        // Cut off midway: a partner write it sent may still land, so the locks are not let
        // go but shortened to the time such a write takes.
        let linger = self.linger_ms;
        runtime.spawn(async move {
            let now = now_ms();
            let until = now.saturating_add(linger);
            let _ = store
                .take_write_locks(&tenant, &keys, &holder, now, until)
                .await;
        });
    }
}

/// How long a [`WriteLock`] lasts unless let go: `at_least_ms` (for a group's names, the time a
/// rename may still be under way), and at least the few partner calls its holder makes at
/// `site`, plus 2 s for the clocks of replicas (another replica decides by its own clock
/// whether the lease has ended); and how long it lingers after a holder is cut off (a cancelled request, a lapsing
/// claim): one HTTP attempt's timeout plus 2 s of clock skew, so a write it had sent has
/// landed before another writer takes the lock.
pub fn lease_ms(at_least_ms: u64, site: &Site) -> (u64, u64) {
    let options = site.client.options();
    (
        at_least_ms
            .max(options.call_deadline_ms.saturating_mul(4))
            .saturating_add(2_000),
        options.request_timeout_ms.saturating_add(2_000),
    )
}

/// [`lease_ms`] for a writer that acts at every site of `tenant`.
pub fn tenant_lease_ms(at_least_ms: u64, tenant: &Tenant) -> (u64, u64) {
    tenant
        .sites
        .iter()
        .map(|site| lease_ms(at_least_ms, site))
        .fold((at_least_ms.saturating_add(2_000), 0), |(a, b), (c, d)| {
            (a.max(c), b.max(d))
        })
}
